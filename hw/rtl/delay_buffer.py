"""A fixed delay of a wide value in a 1R1W memory: ``DelayBuffer``.

A delay of ``cycles`` registers of a vector of hundreds of lanes costs that many flip-flops a
bit; a memory of ``cycles`` entries holds the same.  Each cycle writes the value at a position
counter and reads the entry after it (the oldest, never the one being written), whose data the
read port registers: out comes the value of ``cycles`` cycles ago.  Below two cycles, registers.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .fifo import wrap_inc
from .kernel_unit import delayed

__all__ = ["DelayBuffer"]


class DelayBuffer(wiring.Component):
    """``q`` is ``d`` of ``cycles`` cycles ago (the module docstring); every cycle moves it.

    Parameters
    ----------
    shape : shape-castable
        The delayed value's shape.
    cycles : int
        The delay, at least 0.

    Members
    -------
    d: In(shape)
    q: Out(shape)
    """

    def __init__(self, shape, cycles: int):
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        self._cycles = cycles
        super().__init__({"d": In(shape), "q": Out(shape)})

    @property
    def cycles(self) -> int:
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        n = self._cycles
        if n < 2:
            m.d.comb += self.q.eq(delayed(m, self.d, n, "q", reset_less=True))
            return m
        width = Shape.cast(self.d.shape()).width
        m.submodules.mem = mem = memory.Memory(shape=width, depth=n, init=[])
        wr, rd = mem.write_port(), mem.read_port(transparent_for=())
        at = Signal(range(n))
        after = wrap_inc(at, n)
        m.d.sync += at.eq(after)
        m.d.comb += [wr.addr.eq(at), wr.data.eq(Value.cast(self.d)), wr.en.eq(1), rd.addr.eq(after),
                     self.q.eq(rd.data)]
        return m
