"""The VEC executor's RTL (hw/rtl/vector_unit.py and its counters) against the functional model.

Each case draws a seeded random descriptor of a supported stage chain and random DRAM contents,
runs it through ``sim.vector_unit.execute_vec`` and through ``VectorUnit`` in Amaranth's
simulator (DRAM served from numpy, one-cycle reads), and compares the two DRAM images byte for
byte; the unit's cycles are compared with its own formula and, through ``VectorExecutor``, with
``hw.timing.vec_cycles``.
"""

from __future__ import annotations

import dataclasses
import gc
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hw import operators as op
from hw import vector as vec
from hw.config import get_config
from hw.timing import VEC_FETCH_BYTES, VEC_STAGE_LATENCY, vec_cycles
from hw.isa import ErrorCode, StreamError, VecOp
from hw.rtl.axis_counter import AxisCounter
from hw.rtl.accelerator import DRAM_READ_LATENCY
from hw.rtl.vector_descriptor import DESCRIPTOR, descriptor_slots
from hw.rtl.descriptor_fetch import DescriptorFetch
from hw.rtl.vector_executor import FETCH_LANES, VectorExecutor
from hw.rtl import vector_unit as vu
from hw.rtl.insn import vec_unsupported
from hw.rtl.vector_unit import VectorUnit
from sim.vector_unit import execute_vec
from vec_passes import CHAINS, IN_PLACE, Dram, add_params, layernorm_params, random_pass, softmax_params

SEED = 20261130


def random_axis(rng: np.random.Generator) -> vec.Axis:
    """An axis with a random start, wrap, window split, padding and strides of both signs."""
    n = int(rng.integers(1, 12))
    wrap = int(rng.integers(1, 16))
    return vec.Axis(n, int(rng.integers(-300, 300)), start=int(rng.integers(0, wrap)), wrap=wrap,
                    valid=int(rng.integers(1, wrap + 1)), win=int(rng.integers(1, wrap + 1)),
                    s_hi=int(rng.integers(-(1 << 20), 1 << 20)))


def test_axis_counter_steps_the_offsets_of_axis_offsets():
    rng = np.random.default_rng(SEED)
    axes = [random_axis(rng) for _ in range(20)]
    dut = AxisCounter()
    got = []

    async def bench(ctx):
        for ax in axes:
            for name, value in ax.fields().items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.step, 1)
            seen = []
            for _ in range(ax.n):
                seen.append((ctx.get(dut.offset), not ctx.get(dut.padding)))
                await ctx.tick()
            ctx.set(dut.step, 0)
            got.append(seen)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for case, (ax, seen) in enumerate(zip(axes, got)):
        offsets, valid = vec.axis_offsets(ax)
        want = [(int(o) % (1 << 32), bool(v)) for o, v in zip(offsets, valid)]
        assert seen == want, f"case {case} {ax}: offsets/valid {seen} != {want}"


def test_descriptor_layout_reads_the_encoded_fields():
    """``DESCRIPTOR`` over the encoded bytes gives back every field of the descriptor."""
    rng = np.random.default_rng(SEED)
    operands = [vec.Operand(int(rng.integers(0, 1 << 32)), 5, random_axis(rng), random_axis(rng), bool(k % 2))
           for k in range(3)]
    stages = (vec.Stage(VecOp.ADD, 0, 1, 2, {"mult_a": 65535, "mult_b": 3, "shift": 63, "relu": 1}),
              vec.Stage(VecOp.SOFTMAX, vec.PREV, vec.NONE, 0, {"row": 5, "heads": 1, "exp_mult": 40000,
                                                                "exp_shift": 20, "out_shift": 15}))
    d = vec.Descriptor(7, 9, 5, tuple(operands), stages)
    view = DESCRIPTOR.from_bits(descriptor_slots(d))
    assert (view.header.h, view.header.w, view.header.c, view.header.n_stages) == (7, 9, 5, 2)
    for k, o in enumerate(operands):
        want = {"base": o.base, "c": o.c, "repeat": int(o.repeat),
                **{p + n: v for p, ax in (("y_", o.y), ("x_", o.x)) for n, v in ax.fields().items()}}
        assert {n: int(getattr(view.operands[k], n)) for n in want} == want, f"operand {k}"
    for i, st in enumerate(stages):
        slot = getattr(view.stages[i], st.op.name.lower())
        got = {n: int(getattr(slot, n)) for n in ("op", "src", "src2", "out", *st.params)}
        assert got == {"op": int(st.op), "src": st.src, "src2": st.src2, "out": st.out, **st.params}, f"stage {i}"


# ---- VectorUnit against sim.vector_unit ---------------------------------------------------------

TINY = get_config("tiny")
#: Row lanes of the unit the random passes run on: fewer than the passes' rows, not a power of
#: two, so that groups end part-full (the executor's tests run tiny's own eight).
SWEEP_LANES = 3


async def serve_dram(ctx, dut, dram: np.ndarray, inputs: list[tuple], max_cycles: int) -> dict:
    """Start ``dut`` (a VectorUnit or VectorExecutor) with ``inputs`` ((signal, value)) and serve
    its DRAM ports from ``dram`` until ``done``: writes land at the clock edge, reads answer
    DRAM_READ_LATENCY (one) cycle later."""
    assert DRAM_READ_LATENCY == 1
    for signal, value in inputs:
        ctx.set(signal, value)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    cycle, overrun = 0, False
    while not ctx.get(dut.done):
        if cycle == max_cycles:
            raise AssertionError(f"no done after {max_cycles} cycles")
        en = ctx.get(dut.dram_wr.en)
        if en:
            addr, wdata = ctx.get(dut.dram_wr.addr), ctx.get(dut.dram_wr.data)
            for lane in range(len(dut.dram_wr.en)):
                if en >> lane & 1:
                    dram[addr[lane]] = wdata[lane]
        rdata = read_lanes(ctx, dut.dram_rd, dram)
        overrun |= bool(ctx.get(dut.overrun))
        await ctx.tick()
        ctx.set(dut.dram_rd.data.as_value(), rdata)
        cycle += 1
    return {"cycles": cycle, "error": ctx.get(dut.error), "code": ctx.get(dut.error_code), "overrun": overrun}


def read_lanes(ctx, port, dram: np.ndarray) -> int:
    """The bytes the enabled lanes of read port ``port`` ask for, packed as ``port.data``."""
    en, rdata = ctx.get(port.en), 0
    if en:
        addr = ctx.get(port.addr)
        for lane in range(len(port.en)):
            if en >> lane & 1:
                rdata |= int(dram[addr[lane]]) << 8 * lane
    return rdata


def run_on(dut, runs: list[tuple[np.ndarray, list]], max_cycles: int = 50_000) -> list[dict]:
    """Serve each run (a DRAM image, changed in place, and the inputs that start it) on ``dut``,
    one after the other (one elaboration; the state carries over from run to run)."""
    results = []

    async def bench(ctx):
        for dram, inputs in runs:
            results.append(await serve_dram(ctx, dut, dram, inputs, max_cycles))
            await ctx.tick()                 # leave the done cycle

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def run_units(runs: list[tuple[vec.Descriptor, np.ndarray]], max_row: int = 64) -> list[dict]:
    """Run each descriptor over its DRAM image (in place), one after the other on one VectorUnit:
    per run the cycles from start to done, and those of the unit's own formula (``formula``)."""
    dut = VectorUnit(TINY, lanes=SWEEP_LANES, max_row=max_row)
    results = run_on(dut, [(dram, [(dut.desc.as_value(), descriptor_slots(d))]) for d, dram in runs])
    return [res | {"formula": dut.cycles(d)} for (d, _), res in zip(runs, results)]


def functional(d: vec.Descriptor, dram: np.ndarray) -> np.ndarray:
    """The functional model's DRAM image after ``d`` (the descriptor placed after the image)."""
    raw = np.frombuffer(vec.encode_descriptor(d), np.uint8)
    image = np.concatenate([dram, raw])
    execute_vec({"desc_addr": dram.size, **vec.vec_fields(d)}, image, "test VEC")
    return image[:dram.size]


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    i = int(np.flatnonzero(got != want)[0])
    return f"first differing byte {i}: RTL {got[i]:#04x} ({got[i].view(np.int8)}), functional {want[i]:#04x} " \
           f"({want[i].view(np.int8)}); {int((got != want).sum())} bytes differ"


CASES = [(chain, seed) for chain in CHAINS for seed in range(3)]


@pytest.fixture(scope="module")
def chain_runs() -> dict:
    """Every case of CASES run on one unit: (descriptor, RTL image, functional image, result)."""
    passes = {}
    for chain, seed in CASES:
        rng = np.random.default_rng([SEED, seed, list(CHAINS).index(chain)])
        d, dram = random_pass(rng, CHAINS[chain], in_place=chain in IN_PLACE)
        passes[chain, seed] = (d, dram, functional(d, dram))
    results = run_units([(d, dram) for d, dram, _ in passes.values()])
    return {key: (*run, res) for (key, run), res in zip(passes.items(), results)}


@pytest.mark.parametrize("chain,seed", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_vector_unit_writes_what_the_functional_model_writes(chain_runs, chain, seed):
    d, dram, want, res = chain_runs[chain, seed]
    assert (res["error"], res["overrun"]) == (0, False), f"{chain}: {res} for {d}"
    assert vec_unsupported(d) is None, chain       # the accelerator's expectations say it runs
    if not np.array_equal(dram, want):
        pytest.fail(f"{chain} seed {seed}, {d}: {first_difference(dram, want)}")


def test_vector_unit_takes_its_documented_cycles(chain_runs):
    """The unit's cycles are ``VectorUnit.cycles``: tables, passes x row + gap per row, fill."""
    for (chain, seed), (_, _, _, res) in chain_runs.items():
        assert res["cycles"] == res["formula"], f"{chain} seed {seed}"


def _refused(kind: str) -> vec.Descriptor:
    """A one- or two-stage pass over 1x2x6 elements whose stage ``kind`` names what is refused."""
    plain = vec.Operand(0, 6, vec.Axis(1, 12), vec.Axis(2, 6))
    good_sm = {"row": 3, "heads": 2, "exp_mult": 1000, "exp_shift": 12, "out_shift": 7}
    good_ln = {"table": 0, "eps": 5, "shift": 10}
    stages = {
        "add shift": [vec.Stage(VecOp.ADD, 0, 0, 1, {"mult_a": 1, "mult_b": 1, "shift": op.OP_MAX_SHIFT + 1,
                                                     "relu": 0})],
        "softmax exp_shift": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**good_sm, "exp_shift": 3})],
        "softmax row": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**good_sm, "row": 4, "heads": 1})],
        "row beyond max_row": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**good_sm, "row": 6, "heads": 1})],
        "repeat across rows": [vec.Stage(VecOp.ADD, 0, 2, vec.NONE, {"mult_a": 1, "mult_b": 1, "shift": 1,
                                                                     "relu": 0}),
                               vec.Stage(VecOp.SOFTMAX, vec.PREV, vec.NONE, 1, good_sm)],
        "layernorm shift": [vec.Stage(VecOp.LAYERNORM, 0, vec.NONE, 1, {**good_ln, "shift": 0})],
        "resize": [vec.Stage(VecOp.RESIZE, 0, vec.NONE, 1, {"mode": 1, **{f"{a}_{n}": 0 for a in "yx"
                                                                          for n in ("start", "step")}})],
        "two rows": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, vec.NONE, good_sm),
                     vec.Stage(VecOp.LAYERNORM, vec.PREV, vec.NONE, 1, good_ln)],
    }[kind]
    out = dataclasses.replace(plain, base=64)
    # a bias of 2 channels repeated across rows of 3: its channel would not restart with each row
    bias = dataclasses.replace(plain, base=128, c=2, repeat=True)
    return unchecked(vec.Descriptor, h=1, w=2, c=6, operands=(plain, out, bias), stages=tuple(stages))


def unchecked(cls, **fields):
    """A dataclass instance without its ``__post_init__`` check: a descriptor the mapper would not
    build (``check_descriptor`` refuses it), to send the RTL and the functional model as bytes."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


REFUSED = [("add shift", ErrorCode.DATA), ("softmax exp_shift", ErrorCode.DATA), ("softmax row", ErrorCode.DATA),
           ("layernorm shift", ErrorCode.DATA), ("resize", ErrorCode.UNSUPPORTED),
           ("two rows", ErrorCode.UNSUPPORTED), ("row beyond max_row", ErrorCode.UNSUPPORTED),
           ("repeat across rows", ErrorCode.UNSUPPORTED)]


@pytest.fixture(scope="module")
def refused_runs() -> dict:
    """Every REFUSED case on one unit built for rows up to 4: (descriptor, image before, after, result)."""
    runs = {kind: (_refused(kind), np.random.default_rng(SEED).integers(0, 256, 200, dtype=np.uint8))
            for kind, _ in REFUSED}
    before = {kind: dram.copy() for kind, (_, dram) in runs.items()}
    results = run_units(list(runs.values()), max_row=4)
    return {kind: (d, before[kind], dram, res) for (kind, (d, dram)), res in zip(runs.items(), results)}


@pytest.mark.parametrize("kind,code", REFUSED)
def test_vector_unit_refuses_what_it_cannot_run_and_writes_nothing(refused_runs, kind, code):
    """Parameters the operators refuse: DATA, as the functional model; what the unit does not
    build: UNSUPPORTED (the functional model runs it; the unit here is built for rows up to 4)."""
    d, before, dram, res = refused_runs[kind]
    if code == ErrorCode.DATA:
        with pytest.raises(StreamError) as err:
            functional(d, before.copy())
        assert err.value.code == ErrorCode.DATA
    else:
        functional(d, before.copy())
    assert (res["error"], ErrorCode(res["code"])) == (1, code), kind
    np.testing.assert_array_equal(dram, before)
    if kind != "row beyond max_row":        # the accelerator's unit is built for MAX_ROW
        assert (vec_unsupported(d) is not None) == (code == ErrorCode.UNSUPPORTED), kind


@pytest.mark.parametrize("name", ["tiny", "small", "e_small"])
def test_vector_unit_has_the_contracts_lanes_and_latencies(name):
    """By default a row lane per ``vector_lanes`` of the configuration, ports of an address per
    lane; the slot latency, the row units' pauses and the fetch width are the contract's
    (``hw.timing.VEC_STAGE_LATENCY``, ``hw.vector.ROW_GAP``, ``VEC_FETCH_BYTES``); a lane count
    that is none is refused, naming it."""
    cfg = get_config(name)
    with warnings.catch_warnings():                       # built or refused, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        unit = VectorUnit(cfg, max_row=4)
        assert unit.lanes == cfg.vector_lanes
        assert (len(unit.dram_rd.en), len(unit.dram_wr.en)) == (vu.read_lanes(cfg.vector_lanes),
                                                                 vu.write_lanes(cfg.vector_lanes))
        assert unit.slot_latency == VEC_STAGE_LATENCY and FETCH_LANES == VEC_FETCH_BYTES
        assert {op: unit.gap_cycles(op) for op in vec.ROW_OPS} == vec.ROW_GAP
        with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
            VectorUnit(cfg, lanes=0)
        del unit
        gc.collect()


def test_vector_unit_converts_to_rtlil():
    """The unit elaborates for synthesis (RTLIL, what Yosys reads), with its default row limit
    (two row lanes: every lane is the same hardware)."""
    text = rtlil.convert(VectorUnit(TINY, lanes=2))
    assert "module" in text and "dram_rd__addr" in text


@pytest.mark.slow
def test_vector_unit_runs_the_zoos_longest_rows():
    """The longest rows of the zoo's defaults: softmax rows of 1024 (SegFormer at Cityscapes size)
    and layernorm rows of 2048 (Swin-B), after a residual add, each over two pixels."""
    rng = np.random.default_rng([SEED, 2048])
    runs = []
    for chain, c in ((CHAINS["add_softmax_copy"], 1024), (CHAINS["add_layernorm"], 2048)):
        dram = Dram(rng)
        operands = [vec.Operand(dram.alloc(2 * c), c, vec.Axis(1, 2 * c), vec.Axis(2, c)) for _ in range(4)]
        row = softmax_params(rng, c, c) if VecOp.SOFTMAX in chain else layernorm_params(rng, dram, c)
        stages = [vec.Stage(VecOp.ADD, 0, 1, vec.NONE, add_params(rng)),
                  vec.Stage(chain[1], vec.PREV, vec.NONE, 2, row)]
        if len(chain) == 3:
            stages.append(vec.Stage(VecOp.COPY, vec.PREV, vec.NONE, 3, {}))
        d = vec.Descriptor(1, 2, c, tuple(operands), tuple(stages))
        image = dram.image()
        runs.append((d, image, functional(d, image)))
    results = run_units([(d, image) for d, image, _ in runs], max_row=op.MAX_ROW)
    for (d, image, want), res in zip(runs, results):
        assert (res["error"], res["overrun"], res["cycles"]) == (0, False, res["formula"])
        if not np.array_equal(image, want):
            pytest.fail(f"rows of {d.c}: {first_difference(image, want)}")


# ---- DescriptorFetch against hw.vector.decode_descriptor ------------------------------------------

def patched(raw: bytes, n_operands: int, part: str, index: int, name: str, value: int) -> bytes:
    """``raw`` with field ``name`` of the header, operand ``index`` or stage ``index`` set to ``value``
    (bit offsets from hw.vector's field tables)."""
    spec, at = {"header": (vec.HEADER_FIELDS, 0),
                "operand": (vec.OPERAND_SPEC, vec.HEADER_BYTES + index * vec.OPERAND_BYTES),
                "stage": (vec.STAGE_HEAD, vec.HEADER_BYTES + n_operands * vec.OPERAND_BYTES
                          + index * vec.STAGE_BYTES)}[part]
    pos = 0
    for field, bits, _ in spec:
        if field == name:
            break
        pos += bits
    word = int.from_bytes(raw, "little")
    word = word & ~(((1 << bits) - 1) << (8 * at + pos)) | (value & ((1 << bits) - 1)) << (8 * at + pos)
    return word.to_bytes(len(raw), "little")


#: Malformations decode_descriptor refuses: (part, index, field, value), or a list of them.
MALFORMED = {
    "lo0 past win": [("operand", 0, f"y_{name}", v) for name, v in
                     (("start", 1), ("wrap", 2), ("win", 1), ("lo0", 1), ("hi0", 0))],
    "no stages": ("header", 0, "n_stages", 0), "five stages": ("header", 0, "n_stages", 5),
    "nine operands": ("header", 0, "n_operands", 9), "h = 0": ("header", 0, "h", 0),
    "operand c = 0": ("operand", 0, "c", 0), "split": ("operand", 1, "x_hi0", 7),
    "start = wrap": ("operand", 0, "y_start", 65535), "CHAIN stage": ("stage", 0, "op", int(VecOp.CHAIN)),
    "unknown op": ("stage", 1, "op", 200), "stage 0 reads PREV": ("stage", 0, "src", vec.PREV),
    "operand beyond": ("stage", 1, "out", 9), "resize not first": ("stage", 1, "op", int(VecOp.RESIZE)),
}


def fetch_all(images: list[tuple[np.ndarray, int]]) -> tuple[list[dict], DescriptorFetch]:
    """Fetch the descriptor at each (image, address) on one DescriptorFetch: the slots, error and
    cycles of each, and the fetch unit."""
    dut = DescriptorFetch()
    results = []

    async def bench(ctx):
        for dram, addr in images:
            ctx.set(dut.addr, addr)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for cycle in range(100):
                if ctx.get(dut.done):
                    break
                rdata = read_lanes(ctx, dut.dram_rd, dram)
                await ctx.tick()
                ctx.set(dut.dram_rd.data.as_value(), rdata)
            results.append({"done": ctx.get(dut.done), "desc": ctx.get(dut.desc.as_value()), "cycles": cycle,
                            "code": ErrorCode(ctx.get(dut.error_code)), "error": ctx.get(dut.error)})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, dut


def test_descriptor_fetch_reads_what_decode_descriptor_reads():
    """Well-formed descriptors land in their slots (``descriptor_slots``); every malformation
    decode_descriptor refuses with DATA is refused with DATA."""
    rng = np.random.default_rng([SEED, 7])
    good = [random_pass(rng, CHAINS[chain])[0] for chain in CHAINS]
    images, wants = [], []
    for d in good:
        raw = vec.encode_descriptor(d)
        cases = [(raw, "well-formed")]
        for kind, patches in MALFORMED.items():
            patches = patches if isinstance(patches, list) else [patches]
            if any(index >= {"stage": len(d.stages), "operand": len(d.operands)}.get(part, 1)
                   for part, index, _, _ in patches):
                continue
            bad = raw
            for part, index, name, value in patches:
                bad = patched(bad, len(d.operands), part, index, name, value)
            with pytest.raises(StreamError) as err:
                vec.decode_descriptor(bad + bytes(vec.MAX_DESCRIPTOR_BYTES))
            assert err.value.code == ErrorCode.DATA, kind
            cases.append((bad, kind))
        for raw_bytes, kind in cases:
            addr = int(rng.integers(0, 300))
            image = rng.integers(0, 256, addr + vec.MAX_DESCRIPTOR_BYTES + 64, dtype=np.uint8)
            image[addr:addr + len(raw_bytes)] = np.frombuffer(raw_bytes, np.uint8)
            images.append((image, addr))
            wants.append((kind, d))
    results, dut = fetch_all(images)
    for res, (kind, d) in zip(results, wants):
        assert res["done"], kind
        if kind == "well-formed":
            assert (res["error"], res["desc"]) == (0, descriptor_slots(d)), d
            assert res["cycles"] == dut.cycles(d), d
        else:
            assert (res["error"], res["code"]) == (1, ErrorCode.DATA), f"{kind} in {d}"


# ---- VectorExecutor: a VEC from its descriptor address ---------------------------------------------

@pytest.fixture(scope="module")
def executor_runs() -> list:
    """Each chain's pass with its descriptor in DRAM, and one malformed descriptor, on one
    VectorExecutor of tiny's eight row lanes: (chain, descriptor, RTL image, functional image, result)."""
    rng = np.random.default_rng([SEED, 11])
    dut = VectorExecutor(TINY, max_row=64)
    runs = []
    for chain in CHAINS:
        d, dram = random_pass(rng, CHAINS[chain])
        image = np.concatenate([dram, np.frombuffer(vec.encode_descriptor(d), np.uint8)])
        want = image.copy()
        execute_vec({"desc_addr": dram.size, **vec.vec_fields(d)}, want, "test VEC")
        runs.append((chain, d, image, dram.size, want))
    bad = runs[0][2].copy()
    bad[runs[0][3] + 6] = 0                          # header byte 6: n_operands = n_stages = 0
    runs.append(("malformed", None, bad, runs[0][3], bad.copy()))
    results = run_on(dut, [(image, [(dut.desc_addr, addr)]) for _, _, image, addr, _ in runs])
    return [(chain, d, image, want, res | {"formula": dut.cycles(d) if d else None})
            for (chain, d, image, _, want), res in zip(runs, results)]


def test_vector_executor_runs_a_vec_from_its_descriptor_address(executor_runs):
    """The functional model's image (descriptor included) and the fetch's plus the unit's cycles;
    the malformed descriptor refused with DATA, nothing written."""
    for chain, d, image, want, res in executor_runs:
        if d is None:
            assert (res["error"], res["code"]) == (1, ErrorCode.DATA), chain
        else:
            assert (res["error"], res["overrun"], res["cycles"]) == (0, False, res["formula"]), chain
        if not np.array_equal(image, want):
            pytest.fail(f"{chain}: {first_difference(image, want)}")


def test_vector_executor_takes_the_contracts_cycles(executor_runs):
    """``hw.timing.vec_cycles`` on tiny is the executor's cycles plus exactly the contract's
    allowances for the worst case: the DRAM latency beyond the RTL's one-cycle reads, the
    descriptor beats a largest descriptor has more, the stage slots a longest chain has more, and
    the cycles the DRAM bytes take beyond the rows.  Under the accelerator's timing shell the
    executor is never slower than the contract and waits out the difference."""
    differ = {}
    for chain, d, _, _, res in executor_runs:
        if d is None:
            continue
        f = vec.vec_fields(d)
        rows = f["rows"] and vec_cycles({**f, "bytes_in": 0, "bytes_out": 0}, TINY)
        allowance = (TINY.dram_latency - DRAM_READ_LATENCY
                     + (vec.MAX_DESCRIPTOR_BYTES - vec.descriptor_bytes(d)) // VEC_FETCH_BYTES
                     + (vec.MAX_STAGES - len(d.stages)) * VEC_STAGE_LATENCY + vec_cycles(f, TINY) - rows)
        if (res["cycles"] + allowance, res["cycles"] <= vec_cycles(f, TINY)) != (vec_cycles(f, TINY), True):
            differ[chain] = (res["cycles"], allowance, vec_cycles(f, TINY))
    assert not differ, f"(RTL, allowance, contract) cycles: {differ}"
