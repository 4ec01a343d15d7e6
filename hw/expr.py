"""Arithmetic that evaluates on Python integers and on Amaranth values alike.

The contract's rules (``hw.timing``: legality, latencies, the PE positions of a set) are
written once with these helpers, so the simulator evaluates them on an instruction's
integer fields (or numpy arrays of them) and the RTL on the fields of the instruction word
it decodes: the same expression, not a second copy.  Fields are read with ``f["name"]`` from a dict (the
simulator's ``Insn.f``) or from :class:`Fields` (a view of an instruction word).

Hardware builds no divider: :func:`cdiv` divides only by a constant power of two (a
shift) when it is given a value.
"""

from __future__ import annotations

import operator
from contextlib import contextmanager

import numpy as np

__all__ = ["Fields", "is_int", "vmax", "vmin", "sel", "cdiv", "any_of", "all_of", "not_", "negative", "outside", "largest", "balanced", "held_tree", "excess", "wire_source", "shifted_up", "lookup", "log2_exact", "ceil_log2", "wired"]


class Fields:
    """``f["name"]`` access to the fields of an Amaranth ``data.View`` of an instruction."""

    def __init__(self, view):
        self._view = view

    def __getitem__(self, name: str):
        return getattr(self._view, name)


def is_int(*xs) -> bool:
    for x in xs:            # a loop, not all() over a generator: the rules on integers call it most
        if not isinstance(x, int):      # bool is an int too
            return False
    return True


def _is_array(*xs) -> bool:
    return any(isinstance(x, np.ndarray) for x in xs)


#: The Amaranth modules whose comb domain names each multiplexer's output (:func:`wired`), each with
#: the values its wires carry (by the wire's id).
_WIRING: list = []


@contextmanager
def wired(module):
    """Within it, the multiplexers these helpers build on Amaranth values drive named wires of
    ``module`` (comb).  ``vmax`` names each input twice, and Amaranth's netlist builder emits an
    expression once per reference, so a nest of them grows exponentially in elaboration time; a
    wire is emitted once.  The logic is the same."""
    _WIRING.append((module, {}))
    try:
        yield
    finally:
        _WIRING.pop()


def wire_source(signal):
    """The value a wire of an open :func:`wired` block carries, or None for any other signal."""
    for _, sources in reversed(_WIRING):
        if id(signal) in sources:
            return sources[id(signal)][1]
    return None


def _mux(cond, a, b, name: str = "t_mux"):
    from amaranth.hdl import Mux, Signal, Value
    value = Mux(cond, a, b)
    if not _WIRING:
        return value
    module, sources = _WIRING[-1]
    wire = Signal(Value.cast(value).shape(), name=name)
    module.d.comb += wire.eq(value)
    sources[id(wire)] = (wire, value)
    return wire


def excess(a, b):
    """How far ``a`` lies above ``b``, 0 if not: ``max(a, b) - b``, in hardware the comparison beside
    the subtraction rather than before it, and unsigned (as wide as the largest difference), so
    that the products it feeds are not signed ones."""
    if is_int(a, b) or _is_array(a, b):
        return np.maximum(a - b, 0) if _is_array(a, b) else max(a - b, 0)
    from amaranth.hdl import Value
    a, b = Value.cast(a), Value.cast(b)
    top = (1 << len(a) - a.shape().signed) - 1 + (1 << len(b) - 1 if b.shape().signed else 0)
    return sel(a > b, (a - b)[:top.bit_length()], 0)       # the largest difference's bits


def held_tree(op, values: list, hold, levels: int = 2):
    """``values`` joined by the binary ``op`` as a balanced tree (:func:`balanced`) whose every
    ``levels`` levels are registered by ``hold`` (``hold(value)``: the value itself on integers)."""
    values = list(values)
    depth = 0
    while len(values) > 1:
        values = _paired(op, values)
        depth += 1
        if depth % levels == 0 and len(values) > 1:
            values = [hold(v) for v in values]
    return values[0]


def vmax(a, b):
    if isinstance(a, int) and isinstance(b, int):       # is_int inline: the rules call these most
        return max(a, b)
    return np.maximum(a, b) if _is_array(a, b) else _mux(a > b, a, b, "t_max")


def vmin(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return np.minimum(a, b) if _is_array(a, b) else _mux(a < b, a, b, "t_min")


def largest(values: list):
    """The largest of ``values``, by a balanced tree of :func:`vmax`: on Amaranth values each
    multiplexer names its inputs twice, so a chain would repeat the first input in every level."""
    values = list(values)
    if not values:
        raise ValueError("largest() of no values")
    return balanced(vmax, values, None)


def negative(x):
    """``x < 0``; an unsigned Amaranth value never is (a constant 0, not a comparison that
    Verilator's lint calls constant)."""
    if is_int(x) or _is_array(x):
        return x < 0
    from amaranth.hdl import Const, Value
    v = Value.cast(x)
    return v < 0 if v.shape().signed else Const(0, 1)


def outside(x, lo: int, hi: int):
    """``x`` lies outside ``lo..hi``.  On an Amaranth value only the comparisons its shape does not
    decide (a bound the width already implies would be a constant comparison, which Verilator's
    lint refuses)."""
    if is_int(x) or _is_array(x):
        return (x < lo) | (x > hi)
    from amaranth.hdl import Const, Value
    shape = Value.cast(x).shape()
    low, high = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else \
        (0, (1 << shape.width) - 1)
    return any_of(Const(0, 1), *([x < lo] if lo > low else []), *([x > hi] if hi < high else []))


def sel(cond, a, b):
    """``a if cond else b``: a multiplexer in hardware, ``numpy.where`` on arrays."""
    if isinstance(cond, int):
        return a if cond else b
    return np.where(cond, a, b) if _is_array(cond, a, b) else _mux(cond, a, b, "t_sel")


def ceil_log2(n: int) -> int:
    """``ceil(log2(n))`` for ``n >= 1``: the bits that number ``n`` things, the levels of a tree of ``n``."""
    return (n - 1).bit_length()


def log2_exact(c: int) -> int:
    if c <= 0 or c & (c - 1):
        raise ValueError(f"the hardware divides only by powers of two, not by {c}")
    return c.bit_length() - 1


def cdiv(x, c: int):
    """``ceil(x / c)`` for a positive constant ``c``; a shift in hardware (``c`` a power of two)."""
    if is_int(x):
        return -(-x // c)
    return (x + (c - 1)) >> log2_exact(c)


def balanced(op, values: list, empty):
    """``values`` joined by the binary ``op`` as a balanced tree (``empty`` if there are none): in
    hardware a chain of n gates is n levels deep, a tree log2(n); Yosys and ABC keep the structure."""
    values = list(values)
    if not values:
        return empty
    while len(values) > 1:
        values = _paired(op, values)
    return values[0]


def _paired(op, values: list) -> list:
    """One level of a balanced tree: neighbours joined by ``op``, an odd last one carried up."""
    return [op(*values[i:i + 2]) if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]


def any_of(*conds):
    """The OR of conditions (Python truth values or 1-bit values), a balanced tree in hardware."""
    if is_int(*conds):
        return any(conds)
    return balanced(operator.or_, conds, 0)


def not_(cond):
    """The negation of a condition (a Python truth value or a 1-bit value)."""
    return not cond if is_int(cond) else ~cond


def all_of(*conds):
    """The AND of conditions (Python truth values or 1-bit values), a balanced tree in hardware."""
    if is_int(*conds):
        return all(conds)
    return balanced(operator.and_, conds, 1)


def shifted_up(bits: list, amount, width: int) -> list:
    """Bits ``0 .. width-1`` of ``bits`` moved up by ``amount`` places (``bits[p - amount]``, false
    below ``amount`` and past the end): a shifter in hardware."""
    if is_int(amount):
        return [bool(bits[p - amount]) if 0 <= p - amount < len(bits) else False for p in range(width)]
    from amaranth.hdl import Cat
    moved = Cat(*bits) << amount
    return [moved[p] if p < len(moved) else 0 for p in range(width)]


def lookup(index, table: list, default):
    """``table[index]``, or ``default`` past its end: a read-only table of constants in hardware."""
    if is_int(index):
        return table[index] if 0 <= index < len(table) else default
    from amaranth.hdl import Array
    return _mux(index < len(table), Array(table)[index], default, "t_lookup")
