"""On-chip buffers: one synchronous read port and one write port around ``lib.memory.Memory``.

The factories size each buffer from the configuration:

=====================  =========================  ==============================
buffer                 depth                      word
=====================  =========================  ==============================
weight (per vector MAC) ``config.weight_rows``     C0 x int8
input (per PE)         ``config.input_rows``      C0 x int8
accumulator (per PE)   ``config.accum_depth``     K0 x signed(acc_bits)
=====================  =========================  ==============================
"""

from __future__ import annotations

from amaranth.hdl import Module, ShapeCastable, Shape, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from .vector_mac import int8_vector

__all__ = ["SyncRAM", "weight_buffer", "input_buffer", "accum_buffer"]


class SyncRAM(wiring.Component):
    """A ``depth`` x ``shape`` RAM with one synchronous read port and one write port.

    Read data appear one cycle after ``raddr`` is presented with ``ren`` high and hold
    while ``ren`` is low.  The read port is not transparent: reading the address
    being written in the same cycle returns the old word.

    Parameters
    ----------
    shape:
        Shape of one word (e.g. an ``ArrayLayout`` for packed vectors).
    depth:
        Number of words.

    Members
    -------
    raddr, ren: In
    rdata: Out(shape)
    waddr, wdata, wen: In
    """

    def __init__(self, *, shape, depth: int):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if not isinstance(shape, (ShapeCastable, Shape, int)):
            raise TypeError(f"shape must be a shape-like object, not {shape!r}")
        self._shape = shape
        self._depth = depth
        self._addr_bits = max(1, (depth - 1).bit_length())
        super().__init__({
            "raddr": In(self._addr_bits),
            "ren": In(1),
            "rdata": Out(shape),
            "waddr": In(self._addr_bits),
            "wdata": In(shape),
            "wen": In(1),
        })

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def shape(self):
        return self._shape

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._shape, depth=self._depth, init=[])
        rd = mem.read_port(domain="sync")
        wr = mem.write_port(domain="sync")
        m.d.comb += [
            rd.addr.eq(self.raddr),
            rd.en.eq(self.ren),
            self.rdata.eq(rd.data),
            wr.addr.eq(self.waddr),
            wr.data.eq(self.wdata),
            wr.en.eq(self.wen),
        ]
        return m


def weight_buffer(config: AcceleratorConfig) -> SyncRAM:
    """The weight buffer of one vector MAC: ``weight_rows`` words of C0 x int8."""
    return SyncRAM(shape=int8_vector(config.c0), depth=config.weight_rows)


def input_buffer(config: AcceleratorConfig) -> SyncRAM:
    """The input buffer of one PE: ``input_rows`` words of C0 x int8."""
    return SyncRAM(shape=int8_vector(config.c0), depth=config.input_rows)


def accum_buffer(config: AcceleratorConfig) -> SyncRAM:
    """The accumulation buffer of one PE: ``accum_depth`` words of K0 partial sums."""
    return SyncRAM(shape=data.ArrayLayout(signed(config.acc_bits), config.k0),
                   depth=config.accum_depth)
