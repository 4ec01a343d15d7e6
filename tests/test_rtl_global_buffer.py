"""The banked global buffer: writes at any alignment, conflict-free gathers, conflicts flagged,
and the Python conflict rule agrees with the RTL inside the Accelerator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import get_config
from hw.isa import Op, make
from hw.rtl.accelerator import ErrorCode
from hw.rtl.global_buffer import GlobalBuffer, check_global_buffer, gb_banks, load_inp_gb_conflict
from hw.timing import forget_memos, load_inp_gb_conflicts, load_inp_lanes
from mapper.lower import map_layer
from test_rtl_accelerator import LAYERS, TINY, run_accelerator


def _pack(values, bits):
    return sum(int(v) << bits * i for i, v in enumerate(values))


def test_writes_any_alignment_and_gathers():
    cfg = TINY
    g = cfg.gb_bus_bytes
    nbank, width, _ = gb_banks(cfg)
    size = cfg.global_buf_bytes
    rng = np.random.default_rng(3)
    ref = np.zeros(size, dtype=np.uint8)
    dut = GlobalBuffer(cfg)
    writes = []
    for _ in range(40):
        addr = int(rng.integers(0, size - g))
        mask = int(rng.integers(1, 1 << g))
        beat = rng.integers(0, 256, g, dtype=np.uint8)
        writes.append((addr, mask, beat))
    gathers = []
    rows = g // width
    for _ in range(40):
        # One word per bank, each beat row a word of a random bank: never a conflict.
        words = rng.integers(0, size // (width * nbank), nbank)
        gathers.append([int(words[b]) * nbank + b for b in rng.integers(0, nbank, rows)])

    async def tb(ctx):
        for addr, mask, beat in writes:
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_mask, mask)
            ctx.set(dut.w_data.as_value(), _pack(beat, 8))
            await ctx.tick()
            for i in range(g):
                if mask >> i & 1:
                    ref[addr + i] = beat[i]
        ctx.set(dut.w_en, 0)
        row_bits = len(dut.r_row[0])
        for picked in gathers:
            ctx.set(dut.r_en, (1 << rows) - 1)
            ctx.set(dut.r_row.as_value(), _pack(picked, row_bits))
            assert ctx.get(dut.conflict) == 0, f"unexpected conflict for rows {picked}"
            await ctx.tick()
            got = ctx.get(dut.r_data.as_value())
            for i in range(g):
                a = picked[i // width] * width + i % width
                assert got >> 8 * i & 0xFF == ref[a], f"lane {i} address {a:#x}: got {got >> 8 * i & 0xFF:#04x}, expected {ref[a]:#04x}"
        # Two rows of bank 0 in one gather: conflict.
        picked = [0] * rows
        picked[rows - 1] = nbank
        ctx.set(dut.r_row.as_value(), _pack(picked, row_bits))
        assert ctx.get(dut.conflict) == 1
        ctx.set(dut.r_en, 1)               # the beat row with the other word disabled: fine
        assert ctx.get(dut.conflict) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_check_global_buffer_refuses_unbankable_sizes():
    with pytest.raises(ValueError, match=r"global_buf_bytes \(16400\) must be a multiple of 2 x G = 32 bytes, "
                       r"G being gb_bus_bytes_per_cycle = 16, the default"):
        check_global_buffer(TINY.replace(global_buf_bytes=16 * 1024 + 16))
    # the accelerator file's key, not the property the RTL reads
    with pytest.raises(ValueError, match="gb_bus_bytes_per_cycle = 12 must be a power-of-two multiple of C0 = 4"):
        check_global_buffer(TINY.replace(gb_bus_bytes_per_cycle=12))


def _gb_stream(layer, cfg, t_c_scale: int = 1):
    lowered = map_layer(layer, cfg)[0][0]
    p, lay = lowered.problem, lowered.layout
    stream = [make(Op.LOAD_GB, src_addr=lay.input, dst_addr=100, n_bytes=p.h * p.w * p.c)]
    for insn in lowered.stream:
        insn = dataclasses.replace(insn, f=dict(insn.f))
        if insn.op == Op.LOAD_INP:
            insn.f.update(src_gb=1, src_addr=insn.f["src_addr"] - lay.input + 100)
            insn.f["t_c"] *= t_c_scale
        stream.append(insn)
    return stream + [make(Op.END)]


def _conflicting_gb_stream() -> list:
    """LAYERS[1] (3x3 conv, t_c = C0: rows of consecutive pixels) gathering from the global buffer
    at t_c = 4 x C0: the rows of a beat are 4 GB rows apart, two of them share a bank."""
    layer = LAYERS[1]
    ok = _gb_stream(layer, TINY)
    assert all(load_inp_gb_conflict(i.f, TINY) is None for i in ok if i.op == Op.LOAD_INP)
    bad = _gb_stream(layer, TINY, t_c_scale=4)
    first = next(k for k, i in enumerate(bad) if i.op == Op.LOAD_INP)
    assert load_inp_gb_conflict(bad[first].f, TINY) is not None
    return bad


def test_python_rule_flags_a_mapped_layers_conflicting_gather():
    """The rule alone: make test's tiny cosimulation runs a conflicting gather through the RTL
    (``gb_bank_conflict``); the slow test below runs this layer's through it."""
    _conflicting_gb_stream()


@pytest.mark.parametrize("empty", ["n_cblk", "win_h", "win_w"])
def test_python_rule_finds_no_conflict_in_a_gather_of_no_row(empty):
    """A gather from the global buffer of no row (a field 0) has no beat and so no conflict: the
    rule failed on it with a ValueError (numpy's reshape of no beat), a traceback where the
    simulator runs such a stream on (fuzz seed 7101, case 1154 of field_edge on tiny: a
    LOAD_INP's n_cblk set to 0 and src_gb to 1)."""
    bad = _conflicting_gb_stream()
    load = next(i for i in bad if i.op == Op.LOAD_INP)
    assert load_inp_gb_conflict({**load.f, empty: 0}, TINY) is None


def _random_gather(rng, cfg) -> dict:
    """A LOAD_INP's fields from the global buffer, of a small random extent (folded or not), at any
    alignment, padding and channel bound: many share an extent, so evaluated together, in groups."""
    c0 = cfg.c0
    kh, kw = [(0, 0), (1, 1), (2, 2), (3, 1)][rng.integers(4)]
    return dict(pe_first=0, pe_count=1, pe_step=1, src_gb=1, src_addr=int(rng.integers(0, 600)),
                dst_addr=int(rng.integers(0, 2)), t_h=int(rng.integers(1, 7)), t_w=int(rng.integers(1, 7)),
                t_c=int(rng.choice([c0, 2 * c0, 3 * c0, c0 + 1])), y0=int(rng.integers(-2, 4)),
                x0=int(rng.integers(-2, 4)), win_h=int(rng.integers(0, 4)), win_w=int(rng.integers(0, 5)),
                c_base=int(rng.choice([0, c0, 2 * c0, 1])), n_cblk=int(rng.integers(0, 4)), fold_kh=kh, fold_kw=kw,
                fold_stride=int(rng.integers(0, 3)), chan=int(rng.choice([0, 0, c0 - 1, c0 + 2])))


def _conflict_by_lanes(f: dict, cfg) -> int | None:
    """The rule read lane by lane: the first beat whose valid lanes' distinct words are not in
    distinct banks."""
    nbank, width, _ = gb_banks(cfg)
    addr, valid = load_inp_lanes(f, cfg)
    rows = [{int(a) // width for a, v in zip(ra, rv) if v}
            for ra, rv in zip(addr.reshape(-1, cfg.c0), valid.reshape(-1, cfg.c0))]
    per_beat = cfg.gb_bus_bytes // cfg.c0
    for b in range(0, len(rows), per_beat):
        words = set().union(*rows[b:b + per_beat])
        if len({w % nbank for w in words}) != len(words):
            return b // per_beat
    return None


def test_gathers_evaluated_together_get_each_ones_beat():
    """The mapper checks a stream's gathers together (``load_inp_gb_conflicts``: grouped by extent,
    one numpy pass per group, remembered): each gets the beat the rule, read lane by lane, gives it
    alone, evaluated cold and then from the memo, and ``load_inp_gb_conflict`` agrees."""
    rng = np.random.default_rng(5)
    gathers = [_random_gather(rng, TINY) for _ in range(300)]
    expected = [_conflict_by_lanes(f, TINY) for f in gathers]
    assert any(b is None for b in expected) and len({b for b in expected if b is not None}) > 1
    forget_memos()
    assert load_inp_gb_conflicts(gathers, TINY) == expected
    assert load_inp_gb_conflicts(gathers[::-1], TINY) == expected[::-1]        # remembered
    forget_memos()
    assert [load_inp_gb_conflict(f, TINY) for f in gathers] == expected


@pytest.mark.slow
def test_python_rule_matches_rtl():
    bad = _conflicting_gb_stream()
    res = run_accelerator(TINY, bad, np.zeros(8192, dtype=np.uint8), max_cycles=2000)
    assert res["error"] == 1 and res["code"] == ErrorCode.DATA
