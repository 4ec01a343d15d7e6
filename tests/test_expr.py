"""hw.expr: a rule gives the same value on integers and on Amaranth values, wired or not."""

from __future__ import annotations

import operator
import random

import numpy as np
from amaranth.hdl import Fragment, Module, Signal
from amaranth.sim import Simulator

from hw.expr import all_of, any_of, balanced, excess, held_tree, largest, lookup, sel, vmax, vmin, wired

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


def _depth(value) -> int:
    """Operators on the deepest path of an Amaranth expression (a signal or constant: 0)."""
    operands = getattr(value, "operands", None)
    return 1 + max(map(_depth, operands)) if operands else 0


def test_or_and_and_trees_are_balanced_and_keep_their_value():
    """``any_of`` / ``all_of`` of n conditions are log2(n) gates deep, not a chain of n (Yosys and ABC
    keep the structure they are given), and give Python's ``any`` / ``all``."""
    conds = [Signal(name=f"c{i}") for i in range(16)]
    assert _depth(any_of(*conds)) == 4 and _depth(all_of(*conds)) == 4
    assert _depth(balanced(operator.add, conds[:5], 0)) == 3
    for bits in ([0] * 7, [0, 0, 1, 0, 0], [1] * 5, [1, 1, 0]):
        assert any_of(*bits) == any(bits) and all_of(*bits) == all(bits)
    assert any_of() is False and all_of() is True and balanced(operator.add, [], 7) == 7


def _excess_in_hardware(sa, sb, cases: list) -> list:
    """``excess`` of Amaranth values of shapes ``sa`` and ``sb`` (unsigned) on each case."""
    m, x, y = Module(), Signal(sa), Signal(sb)
    value = excess(x, y)
    assert not value.shape().signed
    out = Signal(12)
    m.d.comb += out.eq(value)
    got = []

    async def bench(ctx):
        for u, v in cases:
            ctx.set(x, u)
            ctx.set(y, v)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_excess_is_max_minus_the_bound_on_integers_arrays_and_values():
    pairs = [(5, 3), (3, 5), (4, 4), (-2, -7), (0, 9)]
    assert [excess(a, b) for a, b in pairs] == [max(a, b) - b for a, b in pairs]
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    assert list(excess(a, b)) == [max(x, y) - y for x, y in pairs]
    assert _excess_in_hardware(8, 8, [(200, 3), (3, 200), (9, 9), (255, 0)]) == [197, 0, 0, 255]


def test_held_tree_registers_every_other_level():
    """``held_tree`` of 8 values: the pairs' sums of sums registered (2 levels), then the last sum;
    on integers (no hold) the plain sum."""
    held = []

    def hold(value):
        held.append(value)
        return value
    assert held_tree(operator.add, list(range(8)), hold) == 28 and held == [6, 22]
    assert held_tree(operator.add, [4], hold) == 4 and held_tree(max, [3, 9, 2], lambda v: v) == 9


def test_excess_of_any_signedness_is_unsigned_and_exact():
    """The largest difference fits: an unsigned 8-bit value above a signed 8-bit one by up to 383."""
    from amaranth.hdl import signed, unsigned
    for sa, sb in [(unsigned(8), signed(8)), (signed(8), unsigned(8)), (signed(8), signed(8)), (unsigned(8), unsigned(8))]:
        lo = [-128 if s.signed else 0 for s in (sa, sb)]
        hi = [127 if s.signed else 255 for s in (sa, sb)]
        cases = [(hi[0], lo[1]), (lo[0], hi[1]), (hi[0], hi[1]), (lo[0] + 1, lo[1])]
        assert _excess_in_hardware(sa, sb, cases) == [max(u - v, 0) for u, v in cases], (sa, sb)
