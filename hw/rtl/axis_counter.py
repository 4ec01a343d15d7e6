"""One axis of a VEC operand's address pattern as counters (``AxisCounter``, ``hw/vector.py``)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import vector as vec
from ..isa import ADDR_BITS

__all__ = ["AxisCounter"]


class AxisCounter(wiring.Component):
    """The byte offset of position ``i`` of an axis, stepped once per position.

    ``u = (start + i) mod wrap`` is kept as ``u``, ``lo = u mod win`` and the running offsets
    ``lo * s_lo`` and ``(u div win) * s_hi``: one add per step, no division
    (``hw.vector.axis_offsets`` is the reference).  ``load`` sets position 0 from the fields;
    the initial offsets ``lo0 * s_lo`` and ``hi0 * s_hi`` are the only products, once per load.
    Offsets are modulo ``2**ADDR_BITS``, as every address.

    Members
    -------
    <field>: In(...)
        The axis fields of ``hw.vector.AXIS_FIELDS`` (``n`` is not used: the pass counts positions).
    load, step: In(1)
        Go to position 0 (``load`` wins), or to the next position, at the next clock edge.
    offset: Out(ADDR_BITS)
        The current position's byte offset.
    padding: Out(1)
        The current position is padding (``u >= valid``).
    """

    def __init__(self):
        fields = {name: In(signed(bits) if is_signed else unsigned(bits)) for name, bits, is_signed in vec.AXIS_FIELDS}
        super().__init__({**fields, "load": In(1), "step": In(1), "offset": Out(ADDR_BITS), "padding": Out(1)})

    def elaborate(self, platform):
        m = Module()
        u, lo = Signal.like(self.wrap), Signal.like(self.win)
        off_lo, off_hi = Signal(ADDR_BITS), Signal(ADDR_BITS)
        m.d.comb += [self.offset.eq(off_lo + off_hi), self.padding.eq(u >= self.valid)]
        with m.If(self.load):
            m.d.sync += [u.eq(self.start), lo.eq(self.lo0),
                         off_lo.eq(self.lo0 * self.s_lo), off_hi.eq(self.hi0 * self.s_hi)]
        with m.Elif(self.step):
            with m.If(u + 1 == self.wrap):
                m.d.sync += [u.eq(0), lo.eq(0), off_lo.eq(0), off_hi.eq(0)]
            with m.Elif(lo + 1 == self.win):
                m.d.sync += [u.eq(u + 1), lo.eq(0), off_lo.eq(0), off_hi.eq(off_hi + self.s_hi)]
            with m.Else():
                m.d.sync += [u.eq(u + 1), lo.eq(lo + 1), off_lo.eq(off_lo + self.s_lo)]
        return m
