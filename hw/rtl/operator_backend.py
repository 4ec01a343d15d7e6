"""An Amaranth backend for the kernels of :mod:`hw.operators`: the same functions, as hardware.

The kernels of ``hw/operators.py`` use only ``+ - * >> << &``, comparisons and three backend
helpers (``sel``, ``rom``, ``clz``).  :class:`AmaranthBackend` evaluates them on
:class:`HwValue` objects, so a unit of the vector unit is the golden kernel called with this
backend rather than a second copy of its arithmetic.

Widths
------
Each :class:`HwValue` carries the interval ``[lo, hi]`` its value lies in, computed from the
intervals of the inputs by interval arithmetic (the inputs' intervals are the parameter ranges
and port types the caller gives, e.g. ``hw.operators.SoftmaxParams.RANGES``).  Every result is
cut to the narrowest shape holding its interval, which is exact because the interval is sound,
and a variable shift amount is therefore as narrow as its range (``1 << q`` with ``q <= 24``
is 25 bits, not ``2**len(q)``).  Two refinements keep common idioms tight: ``x * x`` is
non-negative, and ``sel(x > c, c, x)`` knows that the ``x`` it passes is at most ``c``.  No
width is typed: a kernel's widths follow from its inputs' ranges.  Where interval arithmetic
is looser than a kernel's docstring (values that depend on each other, such as ``v << clz(v)``),
the extra high bits are dead and synthesis removes them; correctness never depends on them.

ROM indices are taken modulo the next power of two of the table size: the kernels keep them in
range (``tests/test_operators.py`` checks every index on extreme inputs).  A ``clz`` operand
is taken as its low ``width`` bits, as its kernel requires ``0 <= x < 2**width``.

Pipelining
----------
Every value has a *stage*: the clock cycle, counted from the inputs, in which it is valid.
A multiply of two non-constant values, a ROM read, a priority encoder (``clz``) and a barrel
shift of a non-constant value end their stage: their result is registered (a ROM is a
synchronous ``lib.memory.Memory`` read port).  An operation on values of different stages
first delays the earlier ones through registers (each delay is built once per value and
stage), so a kernel becomes a pipeline with one result per clock and a latency that follows
from its structure.  No stage holds more than one multiplier, ROM, encoder or barrel shifter
with the adds and constant shifts around it.

Dry runs
--------
``AmaranthBackend(None)`` builds no hardware: it computes only intervals and stages, so a
component can size its ports and state its latency in its constructor, before elaboration.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from amaranth.hdl import Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import memory

__all__ = ["HwValue", "AmaranthBackend", "Table", "TablePort", "shape_of", "range_shape"]


def range_shape(lo: int, hi: int) -> Shape:
    """The narrowest shape of at least one bit holding every integer of ``[lo, hi]`` (as
    ``Shape.cast(range(lo, hi + 1))``, for integers of any size)."""
    if lo >= 0:
        return unsigned(max(hi.bit_length(), 1))
    return signed(max(hi.bit_length(), (-lo - 1).bit_length()) + 1)


def shape_of(v: "HwValue") -> Shape:
    """The shape of a port or register that holds ``v``."""
    return range_shape(v.lo, v.hi)


@dataclass(frozen=True)
class Table:
    """A table written at run time (a LUT layer's 256 entries): its word shape and depth.

    ``rom`` reads a ``lib.memory.Memory`` in hardware; in a dry run this description stands
    in for it.
    """

    shape: Shape
    depth: int


@dataclass(frozen=True, eq=False)
class TablePort:
    """A table of ``depth`` words read through ports outside the module (a memory shared by
    several lanes): ``rom`` drives ``addr`` with the index and takes ``data``, the word the cycle
    after, whose shape is the word's."""

    addr: Value
    data: Value
    depth: int


def _is_const(x) -> bool:
    return isinstance(x, (int, np.integer))          # bool is an int


class HwValue:
    """An integer of a kernel in hardware: an Amaranth value (None in a dry run), the interval
    ``[lo, hi]`` it lies in, its pipeline stage (None for a constant) and, for a comparison,
    the relation it tests (used by ``sel`` to narrow the values it passes)."""

    __array_ufunc__ = None          # numpy never takes it for an array
    __slots__ = ("be", "value", "lo", "hi", "stage", "registered", "relation", "negates", "choice", "rounding",
                 "origin", "_delays")

    def __init__(self, be: "AmaranthBackend", value: Optional[Value], lo: int, hi: int, stage: Optional[int],
                 *, registered: bool = False):
        if lo > hi:
            raise ValueError(f"empty interval [{lo}, {hi}]")
        self.be, self.value, self.lo, self.hi, self.stage = be, value, int(lo), int(hi), stage
        self.registered, self._delays = registered, {}
        self.relation = None        # (a, op, b) of a comparison
        self.negates = None         # x, for -x
        self.choice = None          # (a, interval of a, b, interval of b), for sel(cond, a, b)
        self.rounding = None        # round_shift's parts: ("one", s) for 1 << s, ("half", s) for
                                    # (1 << s) >> 1, ("sum", x, s) for x + ((1 << s) >> 1)
        self.origin = self          # the value this one is a delayed copy of

    def __repr__(self) -> str:
        return f"HwValue([{self.lo}, {self.hi}], stage {self.stage})"

    @property
    def shape(self) -> Shape:
        return range_shape(self.lo, self.hi)

    def __bool__(self):
        raise TypeError("a kernel branched on a hardware value (use be.sel)")

    # arithmetic: each returns a new HwValue (module docstring)
    def __add__(self, o):
        return self.be._add(self, o)

    def __radd__(self, o):
        return self.be._add(o, self)

    def __sub__(self, o):
        return self.be._binary(self, o, operator.sub, lambda a, b: (a.lo - b.hi, a.hi - b.lo))

    def __rsub__(self, o):
        return self.be._binary(o, self, operator.sub, lambda a, b: (a.lo - b.hi, a.hi - b.lo))

    def __neg__(self):
        out = self.be._binary(0, self, operator.sub, lambda a, b: (-b.hi, -b.lo))
        out.negates = self.origin
        return out

    def __mul__(self, o):
        return self.be._mul(self, o)

    def __rmul__(self, o):
        return self.be._mul(o, self)

    def __lshift__(self, o):
        return self.be._shift(self, o, left=True)

    def __rlshift__(self, o):
        return self.be._shift(o, self, left=True)

    def __rshift__(self, o):
        return self.be._shift(self, o, left=False)

    def __rrshift__(self, o):
        return self.be._shift(o, self, left=False)

    def __and__(self, o):
        return self.be._and(self, o)

    def __rand__(self, o):
        return self.be._and(o, self)

    def __lt__(self, o):
        return self.be._compare(self, o, "<")

    def __le__(self, o):
        return self.be._compare(self, o, "<=")

    def __gt__(self, o):
        return self.be._compare(self, o, ">")

    def __ge__(self, o):
        return self.be._compare(self, o, ">=")


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_DECIDE = {"<": lambda a, b: (a.hi < b.lo, a.lo >= b.hi), "<=": lambda a, b: (a.hi <= b.lo, a.lo > b.hi),
           ">": lambda a, b: (a.lo > b.hi, a.hi <= b.lo), ">=": lambda a, b: (a.lo >= b.hi, a.hi < b.lo)}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class AmaranthBackend:
    """Evaluates ``hw.operators`` kernels on :class:`HwValue` objects into the Module ``m``.

    Parameters
    ----------
    m : Module or None
        The module the hardware goes into; None for a dry run (intervals and stages only).
    prefix : str
        Prefix of the names of the signals and memories it creates.
    stage_valid : sequence of Value, optional
        ``stage_valid[s]``: stage ``s`` holds a beat.  Given, a pipeline register leaving stage
        ``s`` loads only then and has no reset (it holds an idle beat's value, which no valid
        output depends on); Verilator then evaluates its logic only for valid beats.

    ``sel`` is a ``Mux``, ``rom`` a synchronous ``lib.memory.Memory`` read port (a constant
    table becomes a ROM initialised from it), ``clz`` a registered priority encoder.
    """

    name = "amaranth"

    def __init__(self, m: Optional[Module], prefix: str = "k", stage_valid: Optional[Sequence[Value]] = None):
        if m is not None and not isinstance(m, Module):
            raise TypeError(f"m must be an Amaranth Module or None, not {m!r}")
        self.m, self.prefix, self._count = m, prefix, 0
        self._stage_valid = None if stage_valid is None else tuple(stage_valid)

    @property
    def dry(self) -> bool:
        return self.m is None

    # ---- values ----------------------------------------------------------------------------

    def input(self, value: Optional[Value], lo: int, hi: int, stage: int = 0) -> HwValue:
        """A kernel input in ``[lo, hi]`` (a port or register), valid in ``stage``."""
        if value is not None and self.dry:
            raise ValueError("a dry run takes no hardware values")
        if not self.dry:
            value = self._cut(Value.cast(value), lo, hi)
        return HwValue(self, value, lo, hi, stage)

    def const(self, c) -> HwValue:
        c = int(c)
        return HwValue(self, None if self.dry else Const(c, range_shape(c, c)), c, c, None)

    def lift(self, x) -> HwValue:
        if isinstance(x, HwValue):
            if x.be is not self:
                raise ValueError("a value of another backend")
            return x
        if _is_const(x):
            return self.const(x)
        raise TypeError(f"a kernel gave the hardware backend {x!r} (an int or an HwValue is needed)")

    def _name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}_{what}{self._count}"

    def _cut(self, v: Value, lo: int, hi: int) -> Value:
        """``v`` (whose value lies in ``[lo, hi]``) in the narrowest shape that holds it (exact)."""
        shape, vs = range_shape(lo, hi), v.shape()
        if shape.signed and vs.signed:
            return v[:min(shape.width, vs.width)].as_signed()
        width = shape.width - 1 if shape.signed else shape.width     # an unsigned v is >= 0
        return v[:min(width, vs.width)]

    def _make(self, expr, lo: int, hi: int, stage, *, register: bool = False) -> HwValue:
        if self.dry:
            return HwValue(self, None, lo, hi, None if stage is None else stage + register, registered=register)
        expr = self._cut(Value.cast(expr), lo, hi)
        if register and stage is not None:
            reg = Signal(range_shape(lo, hi), name=self._name("r"), reset_less=self._stage_valid is not None)
            if self._stage_valid is None:
                self.m.d.sync += reg.eq(expr)
            else:
                with self.m.If(self._stage_valid[stage]):
                    self.m.d.sync += reg.eq(expr)
            return HwValue(self, reg, lo, hi, stage + 1, registered=True)
        return HwValue(self, expr, lo, hi, stage)

    def at(self, v: HwValue, stage: Optional[int]) -> HwValue:
        """``v`` delayed to ``stage`` (a register per stage, built once per value)."""
        v = self.lift(v)
        if v.stage is None or stage is None or v.stage == stage:
            return v
        if v.stage > stage:
            raise ValueError(f"a value of stage {v.stage} cannot be used in stage {stage}")
        v = v.origin
        if stage not in v._delays:
            prev = self.at(v, stage - 1)
            d = self._make(prev.value, v.lo, v.hi, prev.stage, register=True)
            d.origin, d.negates, d.relation, d.choice, d.rounding = v, v.negates, v.relation, v.choice, v.rounding
            v._delays[stage] = d
        return v._delays[stage]

    def align(self, *values) -> tuple:
        """``values`` delayed to the latest stage among them."""
        vals = [self.lift(v) for v in values]
        stages = [v.stage for v in vals if v.stage is not None]
        stage = max(stages) if stages else None
        return tuple(self.at(v, stage) for v in vals)

    # ---- operations ------------------------------------------------------------------------

    def _binary(self, a, b, fn: Callable, interval: Callable, *, register: bool = False) -> HwValue:
        a, b = self.align(a, b)
        lo, hi = interval(a, b)
        expr = None if self.dry else fn(a.value, b.value)
        return self._make(expr, lo, hi, a.stage if a.stage is not None else b.stage, register=register)

    def _add(self, a, b) -> HwValue:
        a, b = self.lift(a), self.lift(b)
        out = self._binary(a, b, operator.add, lambda x, y: (x.lo + y.lo, x.hi + y.hi))
        for x, half in ((a, b), (b, a)):
            if half.rounding and half.rounding[0] == "half":
                out.rounding = ("sum", x.origin, half.rounding[1])
        return out

    def _mul(self, a, b) -> HwValue:
        a, b = self.lift(a), self.lift(b)
        if a is b:                              # a square is never negative
            m = max(a.lo * a.lo, a.hi * a.hi)
            lo = 0 if a.lo <= 0 <= a.hi else min(a.lo * a.lo, a.hi * a.hi)
            interval = lambda x, y: (lo, m)
        else:
            def interval(x, y):
                corners = [x.lo * y.lo, x.lo * y.hi, x.hi * y.lo, x.hi * y.hi]
                return min(corners), max(corners)
        variable = a.stage is not None and b.stage is not None
        return self._binary(a, b, operator.mul, interval, register=variable)

    def _shift(self, x, amount, *, left: bool) -> HwValue:
        x, amount = self.lift(x), self.lift(amount)
        if amount.stage is None:                              # a constant shift: wiring
            s = amount.lo
            if s < 0:
                raise ValueError(f"a kernel shifts by {s}")
            lo, hi = ((x.lo << s, x.hi << s) if left else (x.lo >> s, x.hi >> s))
            expr = None if self.dry else (x.value.shift_left(s) if left else x.value.shift_right(s))
            out = self._make(expr, lo, hi, x.stage)
            if not left and s == 1 and x.rounding and x.rounding[0] == "one":
                out.rounding = ("half", x.rounding[1])
            return out
        if amount.lo < 0:
            raise ValueError(f"a kernel shifts by a value that may be negative ({amount.lo}..{amount.hi})")
        op = operator.lshift if left else operator.rshift
        ends = [op(v, s) for v in (x.lo, x.hi) for s in (amount.lo, amount.hi)]
        lo, hi = min(ends), max(ends)
        if not left and x.rounding and x.rounding[0] == "sum" and x.rounding[2] is amount.origin:
            # round_shift(x0, s): the rounding constant and the shift move together
            x0, amounts = x.rounding[1], range(amount.lo, amount.hi + 1)
            lo = min((x0.lo + ((1 << s) >> 1)) >> s for s in amounts)
            hi = max((x0.hi + ((1 << s) >> 1)) >> s for s in amounts)
        # a barrel shifter ends its stage; shifting a constant is a decoder
        out = self._binary(x, amount, op, lambda a, b: (lo, hi), register=x.stage is not None)
        if left and x.stage is None and x.lo == 1:
            out.rounding = ("one", amount.origin)
        return out

    def _and(self, a, b) -> HwValue:
        a, b = self.lift(a), self.lift(b)

        def interval(x, y):
            if x.lo >= 0 or y.lo >= 0:
                return 0, min(v.hi for v in (x, y) if v.lo >= 0)
            return min(x.lo, y.lo, -(1 << max(x.shape.width, y.shape.width))), max(x.hi, y.hi)
        return self._binary(a, b, operator.and_, interval)

    def _compare(self, a, b, op: str) -> HwValue:
        a, b = self.align(a, b)
        always, never = _DECIDE[op](a, b)
        if always or never:                 # decided by the intervals: a constant
            return self.const(int(always))
        expr = None if self.dry else _COMPARE[op](a.value, b.value)
        out = self._make(expr, 0, 1, a.stage if a.stage is not None else b.stage)
        out.relation = (a.origin, op, b.origin)
        return out

    # ---- the three helpers of hw.operators -------------------------------------------------

    def sel(self, cond, a, b) -> HwValue:
        """``a`` where ``cond`` else ``b``: a ``Mux``; each side's interval narrowed by ``cond``."""
        cond = self.lift(cond)
        if cond.stage is None:                                  # a constant condition
            return self.lift(a if cond.lo else b)
        cond, a, b = self.align(cond, a, b)
        ra, rb = _narrowed(a, cond.relation, True), _narrowed(b, cond.relation, False)
        lo, hi = _hull(ra, rb)
        expr = None if self.dry else Mux(cond.value, a.value, b.value)
        out = self._make(expr, lo, hi, cond.stage)
        out.choice = (a, ra, b, rb)
        return out

    def rom(self, table, index) -> HwValue:
        """``table[index]``, registered: a ROM initialised from a constant table, a read port
        of the ``lib.memory.Memory`` (a :class:`Table` in a dry run) written at run time, or the
        ports of a :class:`TablePort`."""
        index = self.lift(index)
        if isinstance(table, (Table, memory.Memory)):
            depth, lo, hi = table.depth, *_shape_range(Shape.cast(table.shape))
            words = None
        elif isinstance(table, TablePort):
            depth, lo, hi = table.depth, *_shape_range(Value.cast(table.data).shape())
            words = None
        else:
            words = np.asarray(table)
            if words.ndim != 1 or words.dtype.kind not in "iu":
                raise ValueError(f"a ROM must be a vector of integers, not {words.dtype} {words.shape}")
            depth, lo, hi = len(words), int(words.min()), int(words.max())
        addr_bits = max(1, (depth - 1).bit_length())
        if self.dry:
            return HwValue(self, None, lo, hi, None if index.stage is None else index.stage + 1, registered=True)
        if index.stage is None:
            raise ValueError("a ROM read at a constant index")
        if isinstance(table, TablePort):
            self.m.d.comb += table.addr.eq(index.value.as_unsigned()[:addr_bits])
            return HwValue(self, self._cut(Value.cast(table.data), lo, hi), lo, hi, index.stage + 1, registered=True)
        if words is not None:
            table = memory.Memory(shape=range_shape(lo, hi), depth=depth, init=[int(w) for w in words])
        if isinstance(table, Table):
            raise TypeError("a run-time table must be a lib.memory.Memory outside a dry run")
        port = table.read_port(domain="sync")
        if words is not None:
            self.m.submodules[self._name("rom")] = table
        self.m.d.comb += port.addr.eq(index.value.as_unsigned()[:addr_bits])
        return HwValue(self, self._cut(Value.cast(port.data), lo, hi), lo, hi, index.stage + 1, registered=True)

    def clz(self, x, width: int) -> HwValue:
        """Leading zeros of ``0 <= x < 2**width`` in ``width`` bits: a registered priority encoder."""
        x = self.lift(x)
        lo = max(0, width - max(x.hi, 0).bit_length())
        hi = width - max(x.lo, 0).bit_length() if x.lo > 0 else width
        if x.stage is None:
            raise ValueError("clz of a constant")
        expr = None
        if not self.dry:
            bits = x.value.as_unsigned()[:width]
            # the bits above the value's own are zeros
            expr = (width - len(bits)) + _leading_zeros(bits)[1]
        return self._make(expr, lo, max(lo, hi), x.stage, register=True)

    def run(self, kernel: Callable, *args):
        """``kernel(*args, be=self)``, as the numpy backend does."""
        return kernel(*args, be=self)


def _leading_zeros(bits: Value) -> tuple[Value, Value]:
    """``(any, count)``: whether ``bits`` has a set bit, and how many bits lie above its highest
    one (``len(bits)`` if none).  A tree of halves, so its depth grows with the log of the width
    (a chain of multiplexers from the top bit down was as deep as the word is wide)."""
    if len(bits) == 1:
        return bits[0], ~bits[0]
    low = len(bits) // 2
    any_hi, count_hi = _leading_zeros(bits[low:])
    any_lo, count_lo = _leading_zeros(bits[:low])
    return any_hi | any_lo, Mux(any_hi, count_hi, (len(bits) - low) + count_lo)


def _shape_range(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _bound(lo: int, hi: int, rel: str, other: HwValue) -> tuple[int, int]:
    """``[lo, hi]`` narrowed by ``value rel other``."""
    if rel == "<":
        return lo, min(hi, other.hi - 1)
    if rel == "<=":
        return lo, min(hi, other.hi)
    if rel == ">":
        return max(lo, other.lo + 1), hi
    return max(lo, other.lo), hi


def _hull(*intervals) -> tuple[int, int]:
    live = [iv for iv in intervals if iv is not None]
    return min(lo for lo, _ in live), max(hi for _, hi in live)


def _meet(p: tuple[int, int], q: tuple[int, int]):
    """The intersection of two intervals, None if empty."""
    lo, hi = max(p[0], q[0]), min(p[1], q[1])
    return (lo, hi) if lo <= hi else None


def _narrowed(v: HwValue, relation, holds: bool) -> tuple[int, int]:
    """The interval of ``v`` where ``relation`` (``(a, op, b)`` of a comparison) is ``holds``:
    ``v`` is one side of the comparison, its negation (``sel(x < 0, -x, x)``), or a ``sel``
    between such values (``saturate``: ``sel(x < lo, lo, sel(x > hi, hi, x))``)."""
    lo, hi = v.lo, v.hi
    if relation is None:
        return lo, hi
    if v.choice is not None:
        a, ra, b, rb = v.choice
        sides = [_meet(r, _narrowed(side, relation, holds)) for side, r in ((a, ra), (b, rb))]
        if any(sides):
            lo, hi = _meet((lo, hi), _hull(*sides)) or (lo, hi)
    a, op, b = relation
    if not holds:
        op = _NEGATE[op]
    for this, rel, other in ((a, op, b), (b, _FLIP[op], a)):
        if v.origin is this.origin:
            lo, hi = _bound(lo, hi, rel, other)
        elif v.negates is this.origin:
            t_lo, t_hi = _bound(this.lo, this.hi, rel, other)
            lo, hi = max(lo, -t_hi), min(hi, -t_lo)
    return (lo, hi) if lo <= hi else (v.lo, v.hi)
