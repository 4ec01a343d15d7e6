"""Functional mode runs the mapper's streams and equals the golden model bit for bit."""

import os
import random

import numpy as np
import pytest

from hw.config import get_config
from mapper.ir import Conv2d, Linear, MatMul
from mapper.lower import map_layer
from sim.functional import CheckError, Machine, check_layer

SEED = int(os.environ.get("SEED", random.SystemRandom().randrange(1 << 30)))
CONFIGS = ["tiny", "small", "e_small"]

FIXED = [
    Conv2d("conv1x1", "encoder", 16, 12, 5, 6),
    Conv2d("conv3x3_relu", "encoder", 8, 8, 7, 7, kernel=3, padding=1, relu=True),
    Conv2d("conv3x3_s2", "encoder", 8, 12, 9, 9, kernel=3, stride=2, padding=1),
    Conv2d("patch7x7_s4", "encoder", 3, 8, 17, 17, kernel=7, stride=4, padding=3),
    Conv2d("reduction4x4_s4", "encoder", 16, 16, 12, 12, kernel=4, stride=4),   # folded: patches do not overlap
    Conv2d("depthwise", "encoder", 12, 12, 6, 6, kernel=3, padding=1, groups=12),
    Conv2d("grouped", "encoder", 8, 8, 5, 5, kernel=3, padding=1, groups=2),
    Conv2d("conv1x5_uneven", "encoder", 6, 8, 5, 7, kernel=(1, 5), padding=(0, 2, 0, 2)),
    Conv2d("conv3x3_s2_same", "encoder", 8, 8, 8, 8, kernel=3, stride=2, padding=(0, 0, 1, 1)),
    Conv2d("dw3x3_s2_same", "encoder", 8, 8, 7, 8, kernel=3, stride=2, padding=(1, 0, 1, 1), groups=8),
    Linear("linear", "encoder", 10, 20, 9),
    MatMul("attn_qk", "encoder", 3, 10, 8, 7),
    MatMul("attn_av", "encoder", 2, 9, 7, 8),
    # big enough for several passes, tiles and input-channel chunks with streamed weights
    Conv2d("multi_tile", "decoder", 70, 40, 20, 20, kernel=3, padding=1, relu=True),
    Linear("multi_chunk", "decoder", 300, 200, 36),
]


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("layer", FIXED, ids=lambda l: l.name)
def test_layer_matches_golden(layer, cfg_name):
    check_layer(layer, get_config(cfg_name), seed=SEED)


def test_multi_tile_case_exercises_every_loop_level():
    lowered, _ = map_layer(FIXED[-2], get_config("tiny"))[0]
    t = lowered.tiling
    p = lowered.problem
    passes = -(-p.kg // 4) / t.pe_k
    tiles = -(-p.oh // (t.pe_p * t.th)) * -(-p.ow // t.tw)
    chunks = -(-p.n_cblk(4) // t.cbi)
    assert passes > 1 and tiles > 2 and chunks > 2 and not t.resident, t


def _random_layer(rng: random.Random):
    kind = rng.choice(["conv", "dw", "linear", "matmul"])
    if kind == "conv":
        k = rng.choice([1, 3, 5, 7])
        s = rng.choice([1, 2]) if k < 7 else 4
        h = rng.randint(k, 14)
        return Conv2d("rand_conv", "encoder", rng.randint(1, 40), rng.randint(1, 40), h, rng.randint(k, 14),
                      kernel=k, stride=s, padding=rng.randint(0, k // 2), relu=rng.random() < 0.5)
    if kind == "dw":
        c = rng.randint(1, 48)
        return Conv2d("rand_dw", "encoder", c, c, rng.randint(3, 12), rng.randint(3, 12), kernel=3,
                      stride=rng.choice([1, 2]), padding=1, groups=c)
    if kind == "linear":
        return Linear("rand_linear", "encoder", rng.randint(1, 60), rng.randint(1, 70), rng.randint(1, 50))
    return MatMul("rand_matmul", "encoder", rng.randint(1, 4), rng.randint(1, 30), rng.randint(1, 40),
                  rng.randint(1, 30))


@pytest.mark.parametrize("case", range(12))
def test_random_shapes(case):
    rng = random.Random(SEED * 100 + case)
    layer = _random_layer(rng)
    cfg = get_config(CONFIGS[case % len(CONFIGS)])
    try:
        check_layer(layer, cfg, seed=SEED + case)
    except CheckError as e:
        raise AssertionError(f"SEED={SEED} case {case} {layer}: {e}") from None


def test_a_wrong_stream_is_caught():
    """The checker is not vacuous: corrupting one GEMM changes the output."""
    layer = FIXED[0]
    cfg = get_config("tiny")
    lowered, _ = map_layer(layer, cfg)[0]
    gemm = next(i for i in lowered.stream if i.op.name == "GEMM")
    old = gemm.f
    gemm.f = {**old, "n_cblk": max(0, old["n_cblk"] - 1) if old["n_cblk"] > 1 else 0}
    try:
        with pytest.raises(CheckError):
            check_layer(layer, cfg, seed=SEED)
    finally:
        gemm.f = old


def test_out_of_range_addresses_raise_with_offset():
    from hw.isa import StreamError, make, Op
    cfg = get_config("tiny")
    m = Machine(cfg, np.zeros(64, dtype=np.uint8))
    bad = make(Op.LOAD_WGT, pe_first=0, pe_count=1, pe_step=1, src_addr=60, rows=2, n_out=4, chan=8, out_stride=8)
    with pytest.raises(StreamError, match="byte offset 32"):
        m.run([make(Op.NOP), bad])


@pytest.mark.parametrize("out_h, out_w", [(1, 0), (0, 2)])
def test_a_store_of_no_pixels_writes_nothing(out_h, out_w):
    """The contract times a STORE of no pixels (``hw.timing.schedule`` accepts it): the functional
    model runs it as writing nothing (a fuzzed stream with a flipped ``out_w`` bit crashed it)."""
    from hw.isa import Op, make
    from hw.timing import schedule
    cfg = get_config("tiny")
    stream = [make(Op.STORE, pe_count=1, pe_k=1, out_h=out_h, out_w=out_w, t_h=1, t_w=2, t_k=4, k_pitch=4,
                   k_per_pe=4), make(Op.END)]
    assert schedule(stream, cfg).total_cycles > 0
    machine = Machine(cfg, np.zeros(256, np.uint8))
    machine.run(stream)
    assert not machine.dram.any()


@pytest.mark.parametrize("out_h, out_w", [(0, 1), (1, 0), (0, 0)])
def test_a_store_of_no_pixels_with_a_softmax_epilogue_writes_nothing(out_h, out_w):
    """The same with a softmax epilogue (``ep_row``): its rows were reshaped with a -1, which numpy
    cannot resolve for no pixel, and the model raised a ValueError where the RTL runs to the end
    (helper-112)."""
    from hw.isa import Op, make
    from hw.numerics import TABLE_BYTES, TABLE_PARAM_ENTRIES
    from mapper.program import pack_params
    cfg = get_config("tiny")
    dram = np.zeros(1 << 16, np.uint8)
    dram[0x9000:0x9000 + TABLE_BYTES:8] = 1         # an exponential table whose entry 0 is not 0
    params = pack_params(np.zeros(32, int), np.ones(32, int), np.full(32, 8), np.full(32, 9)).ravel()
    dram[0x8000:0x8000 + params.size] = params
    stream = [make(Op.LOAD_PARAM, pe_count=2, pe_step=1, src_addr=0x9000, n_entries=TABLE_PARAM_ENTRIES,
                   table=1),
              make(Op.LOAD_PARAM, pe_count=2, pe_step=1, src_addr=0x8000, n_entries=32), make(Op.FENCE),
              make(Op.STORE, pe_count=1, pe_k=1, out_h=out_h, out_w=out_w, t_h=1, t_w=1, t_k=4, k_pitch=4, k_per_pe=4,
                   k_step=4, dst_addr=0x4000, ep_row=4), make(Op.END)]
    machine = Machine(cfg, dram.copy())
    machine.run(stream)
    assert np.array_equal(machine.dram, dram)


def _layer_stream(cfg):
    layer = Conv2d("c", "encoder", 3, 4, 3, 3)          # 3 channels of C0 = 4 lanes: lane 3 is padding
    from sim.functional import _place, layer_data
    lowered = map_layer(layer, cfg)[0][0]
    return lowered.stream, _place(lowered, layer, layer_data(layer, np.random.default_rng(0)), cfg)


def test_a_store_of_parameters_never_loaded_is_an_undefined_use():
    """SRAMs are not cleared: a STORE whose parameter entries no LOAD_PARAM wrote writes undefined
    data, whatever the power-on state (random states often quantise to what zeros give: the fuzz
    missed tiny seed 205 case 159 so); the machine names the instruction and the entry."""
    from hw.isa import Op
    cfg = get_config("tiny")
    stream, dram = _layer_stream(cfg)
    whole = Machine(cfg, dram.copy())
    whole.run(stream)
    assert whole.undefined == []
    cut = [insn for insn in stream if insn.op != Op.LOAD_PARAM]
    machine = Machine(cfg, dram.copy())
    machine.run(cut)
    first = next(i for i, insn in enumerate(cut) if insn.op == Op.STORE)
    use = machine.undefined[0]
    assert (use.index, use.memory, use.decides) == (first, "bias", False), use


@pytest.mark.parametrize("lane, undefined", [(3, False), (0, True)])
def test_an_input_lane_never_loaded_is_used_unless_its_weights_are_zero(lane, undefined):
    """Input-buffer lanes a stream never wrote (stale, here: a LOAD_INP that leaves lane ``lane``
    as it was) leave the sums undefined, except in a lane past the layer's channels, whose weights
    are loaded zeros (the mapper's padded tensors in the global buffer read so)."""
    cfg = get_config("tiny")
    stream, dram = _layer_stream(cfg)

    class Stale(Machine):
        def _load_inp(self, f, off):
            super()._load_inp(f, off)
            self.defined["inp"][:, :, lane] = False

    machine = Stale(cfg, dram)
    machine.run(stream)
    assert bool(machine.undefined) == undefined and all(u.memory == "acc" for u in machine.undefined)


def test_a_table_activation_reads_each_pe_table_by_the_operators_rule(monkeypatch):
    """A STORE with ``act = TABLE`` looks each requantised value up in its PE's own table by
    ``hw.operators.lut_kernel``, the rule the RTL's post-processing builds (the model spelled
    ``q + 128`` again).  With the rule's index reversed (``127 - q``, still an entry of the table)
    the model follows: each PE's output is ``ops.lut`` of its ACT-NONE output with its table."""
    from hw import operators as ops
    from hw.isa import Act, Op, make
    monkeypatch.setattr(ops, "lut_index", lambda x: ops.INT8_MAX - x)
    cfg, rng = get_config("tiny"), np.random.default_rng(5)
    machine = Machine(cfg, np.zeros(1 << 12, np.uint8), power_on=rng)
    for name in machine.defined:
        machine.defined[name][...] = True
    machine.table[:, :256] = rng.integers(-128, 128, (cfg.num_pe, 256))       # an int8 table per PE
    out = {}
    for act in (Act.NONE, Act.TABLE):
        machine.run([make(Op.STORE, pe_count=2, pe_step=1, pe_k=2, out_h=2, out_w=3, t_h=2, t_w=3, t_k=8, k_pitch=8,
                          k_per_pe=4, k_step=4, dst_addr=0x100 * (1 + act), act=int(act)), make(Op.END)])
        out[act] = machine.dram[0x100 * (1 + act):][:2 * 3 * 8].view(np.int8).reshape(2, 3, 2, 4)
    for pe in range(2):
        expected = ops.lut(out[Act.NONE][:, :, pe], machine.table[pe, :256])
        np.testing.assert_array_equal(out[Act.TABLE][:, :, pe], expected, err_msg=f"PE {pe}")
    assert machine.undefined == []
