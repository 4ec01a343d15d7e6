"""The VEC executor's RTL (hw/rtl/vector_unit.py and its counters) against the functional model.

Each case draws a seeded random descriptor of a supported stage chain and random DRAM contents,
runs it through ``sim.vector_unit.execute_vec`` and through ``VectorUnit`` in Amaranth's
simulator (DRAM served from numpy, one-cycle reads), and compares the two DRAM images byte for
byte; the unit's cycles are compared with ``hw.timing.vec_cycles``.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import vector as vec
from hw.isa import VecOp
from hw.rtl.axis_counter import AxisCounter
from hw.rtl.vector_descriptor import DESCRIPTOR, descriptor_slots

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
    ops = [vec.Operand(int(rng.integers(0, 1 << 32)), 5, random_axis(rng), random_axis(rng), bool(k % 2))
           for k in range(3)]
    stages = (vec.Stage(VecOp.ADD, 0, 1, 2, {"mult_a": 65535, "mult_b": 3, "shift": 63, "relu": 1}),
              vec.Stage(VecOp.SOFTMAX, vec.PREV, vec.NONE, 0, {"row": 5, "exp_mult": 40000, "exp_shift": 20,
                                                                "out_shift": 15}))
    d = vec.Descriptor(7, 9, 5, tuple(ops), stages)
    view = DESCRIPTOR.from_bits(descriptor_slots(d))
    assert (view.header.h, view.header.w, view.header.c, view.header.n_stages) == (7, 9, 5, 2)
    for k, op in enumerate(ops):
        want = {"base": op.base, "c": op.c, "repeat": int(op.repeat),
                **{p + n: v for p, ax in (("y_", op.y), ("x_", op.x)) for n, v in ax.fields().items()}}
        assert {n: int(getattr(view.operands[k], n)) for n in want} == want, f"operand {k}"
    for i, st in enumerate(stages):
        slot = getattr(view.stages[i], st.op.name.lower())
        got = {n: int(getattr(slot, n)) for n in ("op", "src", "src2", "out", *st.params)}
        assert got == {"op": int(st.op), "src": st.src, "src2": st.src2, "out": st.out, **st.params}, f"stage {i}"
