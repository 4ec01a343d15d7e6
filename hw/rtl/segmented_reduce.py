"""A reduction over segments of consecutive lanes, every lane getting its segment's result: ``SegmentedReduce``.

The STORE's softmax epilogue holds a pixel's channels on the K0 lanes of the PEs of a row
group, and its rows (``ep_row`` channels, any length) start at lanes set at the STORE's setup.
Its maximum and its sum are therefore reductions across lanes with segment boundaries that
are data, not wiring.  This unit computes them with two scans of ``levels = ceil(log2(lanes))``
registered stages each:

* forward (a segmented Hillis-Steele scan): stage ``s`` combines lane ``i`` with lane
  ``i - 2**s`` unless a segment starts in between; afterwards a segment's last lane holds the
  reduction of the whole segment;
* backward (the same scan with "take the right neighbour's value"): stage ``s`` copies lane
  ``i + 2**s`` into lane ``i`` unless a segment ends in between; afterwards every lane holds
  its segment's last lane's value.

A stage is one operation per lane (a compare and a multiplexer for ``max``, an adder for
``sum``) and a multiplexer, so no stage is deeper than an add (issue 14).  Lanes that do not
take part (``member`` low) enter as the reduction's identity and still belong to the segment
they lie in.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..expr import ceil_log2
from .kernel_unit import delayed

__all__ = ["SegmentedReduce", "REDUCTIONS"]

#: The reductions built: (combine two values, the widening of the result in bits per level).
REDUCTIONS = {"max": (lambda a, b: Mux(a > b, a, b), 0), "sum": (lambda a, b: a + b, 1)}



class SegmentedReduce(wiring.Component):
    """Each lane's segment's maximum or sum, ``latency`` cycles after the lanes' values.

    Parameters
    ----------
    lanes : int
        Lanes, at least 1.
    shape : Shape
        The shape of a lane's value.
    op : str
        ``"max"`` or ``"sum"`` (``REDUCTIONS``); the sum is ``ceil(log2(lanes))`` bits wider.

    Members
    -------
    x: In(ArrayLayout(shape, lanes))
    start: In(lanes)
        Lane ``i`` starts a segment (lane 0 always does).
    member: In(lanes)
        Lane ``i`` takes part; otherwise it enters as the identity (the smallest value, or 0).
    in_valid: In(1)
    y: Out(ArrayLayout(result shape, lanes))
        Every lane's segment's reduction for the values presented ``latency`` cycles earlier.
    out_valid: Out(1)

    Raises
    ------
    ValueError
        If ``lanes`` is not a positive integer or ``op`` is not a reduction of ``REDUCTIONS``.
    """

    def __init__(self, lanes: int, shape, op: str):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if op not in REDUCTIONS:
            raise ValueError(f"op must be one of {sorted(REDUCTIONS)}, not {op!r}")
        shape = Shape.cast(shape)
        self._lanes, self._shape, self._op = lanes, shape, op
        widen = REDUCTIONS[op][1] * ceil_log2(lanes)
        self._out_shape = Shape(shape.width + widen, shape.signed)
        super().__init__({"x": In(data.ArrayLayout(shape, lanes)), "start": In(lanes), "member": In(lanes),
                          "in_valid": In(1), "y": Out(data.ArrayLayout(self._out_shape, lanes)),
                          "out_valid": Out(1)})

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def out_shape(self) -> Shape:
        return self._out_shape

    @property
    def latency(self) -> int:
        """Registered stages from the inputs to ``y``: two scans of ``ceil(log2(lanes))``."""
        return 2 * ceil_log2(self._lanes)

    def _identity(self) -> int:
        if self._op == "sum":
            return 0
        return -(1 << (self._shape.width - 1)) if self._shape.signed else 0

    def _stage(self, m: Module, values: list, flags: list, step: int, combine, name: str) -> tuple[list, list]:
        """One registered scan stage: lane ``i`` takes ``combine(values[i], values[i + step])``
        (``step`` may be negative) unless its flag says a boundary lies in between."""
        new_v = [Signal(self._out_shape, name=f"{name}_v{i}") for i in range(self._lanes)]
        new_f = [Signal(name=f"{name}_f{i}") for i in range(self._lanes)]
        for i in range(self._lanes):
            j = i + step
            if 0 <= j < self._lanes:
                m.d.sync += [new_v[i].eq(Mux(flags[i], values[i], combine(values[i], values[j]))),
                             new_f[i].eq(flags[i] | flags[j])]
            else:
                m.d.sync += [new_v[i].eq(values[i]), new_f[i].eq(flags[i])]
        return new_v, new_f

    def elaborate(self, platform):
        m = Module()
        n, levels = self._lanes, ceil_log2(self._lanes)
        combine = REDUCTIONS[self._op][0]
        values = [Mux(self.member[i], self.x[i], self._identity()) for i in range(n)]
        flags = [self.start[i] | (i == 0) for i in range(n)]
        ends = [self.start[i + 1] if i + 1 < n else 1 for i in range(n)]
        # the segment boundaries travel with their values through the forward scan
        for s in range(levels):
            values, flags = self._stage(m, values, flags, -(1 << s), combine, f"fwd{s}")
            ends_d = [Signal(name=f"fwd{s}_end{i}") for i in range(n)]
            m.d.sync += [ends_d[i].eq(ends[i]) for i in range(n)]
            ends = ends_d
        for s in range(levels):
            values, ends = self._stage(m, values, ends, 1 << s, lambda mine, right: right, f"bwd{s}")
        m.d.comb += [self.y[i].eq(values[i]) for i in range(n)]
        m.d.comb += self.out_valid.eq(delayed(m, self.in_valid, self.latency, "valid"))
        return m
