"""The STORE's softmax epilogue in the RTL, part by part: the segmented reductions across lanes
(hw/rtl/segmented_reduce.py) against numpy on random segments, bit- and cycle-exact."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hw.rtl.segmented_reduce import SegmentedReduce

SEED = 1313


def segment_reference(x: np.ndarray, start: np.ndarray, member: np.ndarray, op: str, identity: int) -> np.ndarray:
    """Each lane's segment's maximum or sum (lanes not taking part count as ``identity``)."""
    v = np.where(member, x, identity)
    seg = np.cumsum(start | (np.arange(len(x)) == 0)) - 1
    reduce = np.maximum if op == "max" else np.add
    totals = np.full(seg[-1] + 1, identity, np.int64)
    reduce.at(totals, seg, v)
    return totals[seg]


def clocked(dut) -> Module:
    """``dut`` in a module with a sync domain (a unit of latency 0 has no registers)."""
    m = Module()
    m.submodules.dut = dut
    m.d.sync += Signal(name="tick").eq(1)
    return m


def run_reduce(dut: SegmentedReduce, beats: list) -> list:
    """Present ``beats`` (x, start, member), one a cycle; the ``y`` vectors when ``out_valid``."""
    got = []

    async def bench(ctx):
        for cycle in range(len(beats) + dut.latency + 1):
            if cycle < len(beats):
                x, start, member = beats[cycle]
                for i in range(dut.lanes):
                    ctx.set(dut.x[i], int(x[i]))
                ctx.set(dut.start, int(sum(int(b) << i for i, b in enumerate(start))))
                ctx.set(dut.member, int(sum(int(b) << i for i, b in enumerate(member))))
            ctx.set(dut.in_valid, cycle < len(beats))
            if ctx.get(dut.out_valid):
                got.append([ctx.get(dut.y[i]) for i in range(dut.lanes)])
            await ctx.tick()

    sim = Simulator(clocked(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lanes", [1, 2, 5, 8, 64])
@pytest.mark.parametrize("op", ["max", "sum"])
def test_segmented_reduce_matches_numpy(lanes, op):
    """Random values, segment starts and members, a vector a cycle: every lane gets its segment's
    reduction ``latency`` = 2 ceil(log2(lanes)) cycles later; segments of one lane and of all lanes."""
    rng = np.random.default_rng(SEED + lanes)
    shape, identity = (signed(8), -128) if op == "max" else (unsigned(23), 0)
    lo, hi = (-128, 128) if op == "max" else (0, 1 << 23)
    beats = [(rng.integers(lo, hi, lanes), rng.random(lanes) < p, rng.random(lanes) < q)
             for p, q in [(0.2, 0.9), (0.5, 0.5), (0.0, 1.0), (1.0, 1.0), (0.1, 0.0)] * 3]
    dut = SegmentedReduce(lanes, shape, op)
    assert dut.latency == 2 * (lanes - 1).bit_length()
    got = run_reduce(dut, beats)
    assert len(got) == len(beats)
    for b, ((x, start, member), y) in enumerate(zip(beats, got)):
        want = segment_reference(x, start, member, op, identity)
        bad = np.flatnonzero(np.asarray(y) != want)
        assert not bad.size, f"beat {b} lane {bad[0]}: RTL {y[bad[0]]}, want {want[bad[0]]}"


def test_segmented_reduce_refuses_bad_parameters():
    with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
        SegmentedReduce(0, signed(8), "max")
    with pytest.raises(ValueError, match="op must be one of .* not 'min'"):
        SegmentedReduce(4, signed(8), "min")
