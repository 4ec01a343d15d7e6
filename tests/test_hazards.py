"""hw.hazards: the memory each instruction touches, and the check that a scheduled stream's units never race."""

from dataclasses import replace

import numpy as np
import pytest

from hw.config import get_config
from hw.hazards import HazardError, accesses, check_hazards, hazards
from hw.isa import Op, make
from hw.timing import schedule
from mapper.ir import Conv2d
from mapper.lower import build_stream, map_layer
from mapper.program import build_program
from mapper.quantize import random_qmodel
from mapper.workloads import build_model
from sim.functional import Machine

from cosim.program_cases import mac_cnn


def _two_layers(cfg, size: int = 12):
    """Two 3x3 convolutions, the second reading the first's output in DRAM: each layer's stream
    (ending with FENCE) with real addresses, the second's tensors after the first's."""
    a = map_layer(Conv2d("a", "encoder", 8, 16, size, size, kernel=(3, 3), padding=1), cfg)[0][0]
    b = map_layer(Conv2d("b", "encoder", 16, 8, size, size, kernel=(3, 3), padding=1), cfg)[0][0]
    pa, top = a.layout, a.layout.end
    pb = b.layout
    pb = replace(pb, input=pa.output, weights=pb.weights + top, params=pb.params + top, output=pb.output + top,
                 end=pb.end + top)
    return (build_stream(a.problem, a.tiling, cfg, pa), build_stream(b.problem, b.tiling, cfg, pb))


def test_two_fenced_layers_do_not_race():
    cfg = get_config("tiny")
    first, second = _two_layers(cfg)
    stream = first + second + [make(Op.END)]
    assert hazards(stream, schedule(stream, cfg), cfg) == []


def test_the_fence_between_a_producer_and_its_reader_matters():
    """Without the FENCE after the first layer, the second's loads read its output before its
    STOREs have written it: a read after write on DRAM between the store and the load unit (on
    4x4 pixels, where the second layer's first loads read what the first's last STOREs write)."""
    cfg = get_config("tiny")
    first, second = _two_layers(cfg, size=4)
    assert first[-1].op == Op.FENCE
    stream = first[:-1] + second + [make(Op.END)]
    sched = schedule(stream, cfg)                       # well formed: the tokens balance per layer
    found = hazards(stream, sched, cfg, limit=None)
    raw = [h for h in found if h.kind == "RAW" and h.first.memory == "dram"]
    assert raw and all(stream[h.earlier].op == Op.STORE and stream[h.later].op == Op.LOAD_INP for h in raw)
    assert all(h.earlier < len(first) <= h.later and sched.start[h.later] < sched.end[h.earlier] for h in found)
    with pytest.raises(HazardError, match=r"^the units race: (RAW|WAR|WAW) on \w+ \d+\.\.\d+: \w+ at \d+ starts "
                                          r"in cycle \d+, before \w+ at \d+ ends \(\d+\); no token or FENCE"):
        check_hazards(stream, sched, cfg)


def _changed(before: dict, after: dict) -> dict:
    """Per memory, the (PE, address) pairs (PE -1 for DRAM and the buffer) whose contents changed."""
    out = {}
    for name in before:
        diff = before[name] != after[name]
        if name in ("dram", "gb"):
            out[name] = {(-1, int(a)) for a in np.flatnonzero(diff)}
        elif name == "wgt":                          # [PE, vector MAC, row, lane]
            out[name] = {(int(p), int(r)) for p, _, r, _ in np.argwhere(diff)}
        else:                                        # [PE, row or entry, ...]
            out[name] = {(int(i[0]), int(i[1])) for i in np.argwhere(diff)}
    return out


def _memories(m: Machine) -> dict:
    return {"dram": m.dram.copy(), "gb": m.gb.copy(), "inp": m.inp.copy(), "wgt": m.wgt.copy(), "acc": m.acc.copy(),
            "param": np.stack([m.bias, m.mult, m.shift, m.ep_shift], axis=-1), "table": m.table.copy()}


def test_accesses_cover_what_the_functional_model_writes():
    """Every value an instruction of a layer's stream changes (from a random power-on state) lies
    in one of the ranges ``accesses`` says it writes, on one of its PEs."""
    cfg = get_config("tiny")
    first, _ = _two_layers(cfg)
    layout = map_layer(Conv2d("a", "encoder", 8, 16, 12, 12, kernel=(3, 3), padding=1), cfg)[0][0].layout
    rng = np.random.default_rng(5)
    dram = rng.integers(0, 256, size=layout.end, dtype=np.uint8)
    dram[layout.params:layout.output] = 0          # parameter entries of shift 0 (a random one may be refused)
    m = Machine(cfg, dram, power_on=rng)
    seen = set()
    for i, insn in enumerate(first):
        before = _memories(m)
        m.execute(insn, i * 32)
        writes = [a for a in accesses(insn, cfg) if a.write]
        for memory, cells in _changed(before, _memories(m)).items():
            for pe, addr in cells:
                assert any(a.memory == memory and a.lo <= addr <= a.hi and (pe < 0 or a.pes >> pe & 1)
                           and (a.exact is None or addr in a.exact()) for a in writes), (i, insn.op.name, memory, pe, addr)
            if cells:
                seen.add(memory)
    assert seen == {"dram", "inp", "wgt", "acc", "param"}


def test_a_concatenation_built_in_place_does_not_race(tmp_path):
    """``Concat([x, conv(x)])``: the convolution's STOREs write channels 16..31 of the tensor whose
    channels 0..15 its later loads read, so the two touch no common byte although their bounding
    intervals meet (the check refused this program, found by QA); its run is bit-exact."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sim.functional import check_program
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
              for n, s in (("w1", (16, 3, 3, 3)), ("w2", (16, 16, 1, 1))))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]), helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Concat", ["r1", "c2"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 16, 16])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "cat.onnx")
    model = build_model(str(tmp_path / "cat.onnx"))
    cfg = get_config("tiny")
    q = random_qmodel(model, 3)
    x = np.random.default_rng(1).integers(-128, 128, model.input, dtype=np.int8)
    program = build_program(q, cfg, image=x)
    assert hazards(program.stream, schedule(program.stream, cfg), cfg, program.image, limit=None) == []
    check_program(program, q, x)


@pytest.mark.parametrize("name,cfg_name,size", [("segformer_b0", "tiny", 32), ("mac_cnn", "tiny", 16)])
def test_todays_fenced_programs_do_not_race(name, cfg_name, size):
    model = mac_cnn(size) if name == "mac_cnn" else build_model(name, size=(size, size))
    cfg = get_config(cfg_name)
    program = build_program(random_qmodel(model, 3), cfg)
    assert program.resident                    # tensors kept in the global buffer: its accesses are checked too
    check_hazards(program.stream, schedule(program.stream, cfg), cfg, program.image)


def _reaches(acc: list, memory: str, addr: int, write: bool) -> bool:
    return any(a.memory == memory and a.write == write and a.lo <= addr <= a.hi
               and (a.exact is None or addr in a.exact()) for a in acc)


TOP = 1 << 32


@pytest.mark.parametrize("insn, read", [
    # 2 outputs of 64 channels from 64 bytes below 2**32: the second output's row wraps to byte 0
    (make(Op.LOAD_WGT, pe_count=1, pe_step=1, src_addr=TOP - 64, rows=16, n_out=2, chan=64, out_stride=64),
     [*range(TOP - 64, TOP), *range(64)]),
    (make(Op.LOAD_PARAM, pe_count=1, pe_step=1, src_addr=TOP - 8, n_entries=2), [*range(TOP - 8, TOP), *range(8)]),
    (make(Op.LOAD_GB, src_addr=TOP - 4, n_bytes=12), [*range(TOP - 4, TOP), *range(8)]),
], ids=["LOAD_WGT", "LOAD_PARAM", "LOAD_GB"])
def test_a_load_whose_span_wraps_reads_the_bytes_it_wraps_to(insn, read):
    """Lane addresses are 32-bit (``hw.isa.ADDR_MASK``; the functional model reads ``addr & ADDR_MASK``,
    as ``hw.timing._lanes_of``'s lanes): a load whose bytes run past 2**32 reads DRAM from byte 0 on,
    which its accesses (``hw.timing.wrapped_ranges``) name, and no byte it does not read.  The
    accesses were one interval beyond 2**32, meeting no access to the bytes the load reads there."""
    acc = accesses(insn, get_config("tiny"))
    assert all(_reaches(acc, "dram", addr, False) for addr in read), [a for a in acc if a.memory == "dram"]
    assert not _reaches(acc, "dram", read[-1] + 1, False) and not _reaches(acc, "dram", TOP - len(read) // 2 - 1, False)


def test_a_store_whose_tile_wraps_writes_the_bytes_it_wraps_to():
    """A STORE of 4 pixels of 4 channels from 8 bytes below 2**32 writes bytes 2**32 - 8 .. 2**32 - 1
    and 0 .. 7 (the functional model writes ``addr & ADDR_MASK``).  Its range was that of its first
    and last bytes each wrapped, 7 .. 2**32 - 8, missing both ends: a load of bytes 0 .. 3 before it,
    unordered, did not race with it."""
    cfg = get_config("tiny")
    store = make(Op.STORE, pe_count=1, pe_step=1, pe_k=1, out_h=1, out_w=4, t_h=1, t_w=4, t_k=4, k_pitch=4,
                 k_per_pe=4, k_step=4, dst_addr=TOP - 8)
    acc = accesses(store, cfg)
    assert all(_reaches(acc, "dram", addr, True) for addr in [*range(TOP - 8, TOP), *range(8)])
    assert not _reaches(acc, "dram", 8, True) and not _reaches(acc, "dram", TOP - 9, True)
    load = make(Op.LOAD_GB, src_addr=0, n_bytes=4)
    stream = [store, load, make(Op.END)]
    found = hazards(stream, schedule(stream, cfg), cfg, limit=None)
    assert [(h.kind, h.first.memory, stream[h.later].op) for h in found] == [("RAW", "dram", Op.LOAD_GB)]
