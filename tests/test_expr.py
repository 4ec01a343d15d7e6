"""hw.expr: a rule gives the same value on integers and on Amaranth values, wired or not."""

from __future__ import annotations

import random

from amaranth.hdl import Fragment, Module, Signal
from amaranth.sim import Simulator

from hw.expr import largest, lookup, sel, vmax, vmin, wired

TABLE = [5, 17, 2, 99]


def rule(a, b, c, d):
    """A nest of multiplexers: each level names its inputs twice."""
    top = vmax(vmin(a, b), vmin(c, d))
    return sel(a > c, largest([top, a + 1, b, lookup(d, TABLE, 7)]), vmin(top, vmax(b, c)))


def _module(wire: bool):
    m = Module()
    ins = [Signal(8, name=n) for n in "abcd"]
    out = Signal(10)
    if wire:
        with wired(m):
            value = rule(*ins)
    else:
        value = rule(*ins)
    m.d.comb += out.eq(value)
    return m, ins, out


def test_wired_and_unwired_rules_compute_the_integers_value():
    rng = random.Random(4)
    cases = [[rng.randrange(256) for _ in range(4)] for _ in range(60)] + [[0, 0, 0, 0], [255] * 4, [1, 2, 3, 2]]
    for wire in (False, True):
        m, ins, out = _module(wire)
        got = []

        async def bench(ctx):
            for case in cases:
                for sig, v in zip(ins, case):
                    ctx.set(sig, v)
                got.append(ctx.get(out))

        sim = Simulator(m)
        sim.add_testbench(bench)
        sim.run()
        assert got == [rule(*case) for case in cases], f"wired={wire}"


def test_wired_multiplexers_drive_wires_and_only_within_the_context():
    m = Module()
    a, b = Signal(4), Signal(4)
    with wired(m):
        inside = vmax(a, b)
    assert isinstance(inside, Signal) and inside.name == "t_max"
    assert not isinstance(vmax(a, b), Signal)
    assert vmax(3, 5) == 5 and sel(0, 1, 2) == 2
    Fragment.get(m, None)       # elaborated: the wire is driven
