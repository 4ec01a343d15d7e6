"""Layernorm over rows, one lane: the row sequencer around ``hw.operators``' layernorm kernels (``LayerNormUnit``)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data

from .. import operators as ops
from .kernel_unit import INT8, KernelUnit, delayed
from .operator_backend import range_shape
from .row_unit import I8_RANGE, RowUnit, check_max_row

__all__ = ["LayerNormUnit", "LN_ROW_IN"]

_ENTRY = ops.LayerNormParams.ENTRY_RANGES
#: A row element on its way in: the value, its channel's gamma and beta (read in pass 2), the row's end.
LN_ROW_IN = data.StructLayout({"x": INT8, "gamma": range_shape(*_ENTRY["gamma"]),
                               "beta": range_shape(*_ENTRY["beta"]), "last": 1})


class LayerNormUnit(RowUnit):
    """``hw.operators.layernorm`` of rows streamed in twice, one element a cycle.

    The caller sends each row twice on ``x`` (``last`` on its final element each time):

    1. pass 1: ``s1 = sum(x)``, ``s2 = sum(square_kernel(x))`` and the row length ``n``;
    2. after the sums, ``layernorm_row_kernel(s1, s2, n, eps)`` once, while ``x.ready`` is low;
    3. pass 2, with each channel's ``gamma`` and ``beta``:
       ``y = layernorm_element_kernel(x, s1, n, r, h, gamma, beta, shift)`` on ``out``
       (``last`` on the row's final element), ``out_latency`` cycles after the element went in.

    The contract's two element operations per element; no row buffer.  The next row's pass 1 may
    start while the last results still come out.  ``eps`` and ``shift`` must hold the row's values
    from its first element until its last has gone in (each element takes ``shift`` along).
    ``x.ready`` is low for ``gap_cycles`` cycles between the passes, so a row of ``n`` takes
    ``2 n + gap_cycles`` cycles when the caller never waits.

    Parameters
    ----------
    max_row : int
        Longest row (sizes the sums and the count), 1..``hw.operators.MAX_ROW``.

    Members
    -------
    eps, shift: In(...)
        ``hw.operators.LayerNormParams`` fields (ranges from its ``RANGES``); ``x`` carries
        ``LN_ROW_IN``, the rest as in :class:`RowUnit`.
    """

    def __init__(self, max_row: int = ops.MAX_ROW):
        n = check_max_row(max_row)
        p = ops.LayerNormParams.RANGES
        self._square = KernelUnit(ops.square_kernel, {"x": I8_RANGE})
        sq_lo, sq_hi = self._square.output_range("y")
        self._s1_range = (n * ops.INT8_MIN, n * ops.INT8_MAX)
        self._s2_range = (n * sq_lo, n * sq_hi)
        self._row = KernelUnit(ops.layernorm_row_kernel, {"s1": self._s1_range, "s2": self._s2_range, "n": (1, n),
                                                          "eps": p["eps"]}, outputs=("r", "h"))
        self._element = KernelUnit(ops.layernorm_element_kernel, {
            "x": I8_RANGE, "s1": self._s1_range, "n": (1, n), "r": self._row.output_range("r"),
            "h": self._row.output_range("h"), **_ENTRY, "shift": p["shift"]})
        super().__init__(n, p, LN_ROW_IN, step=self._row, accumulate_latency=self._square.latency)

    @property
    def out_latency(self) -> int:
        """Cycles from an element of pass 2 going in to its result on ``out``."""
        return self._element.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.square, m.submodules.row, m.submodules.element = sq, row, el = \
            self._square, self._row, self._element
        accept = self.x.valid & self.x.ready
        pass1, pass2 = Signal(), Signal()
        x = self.x.payload

        # pass 1: the sums and the count
        s1, s2 = Signal(range_shape(*self._s1_range)), Signal(range_shape(*self._s2_range))
        n = Signal(range(self.max_row + 1))
        m.d.comb += [sq.x.eq(x.x), sq.in_valid.eq(accept & pass1)]
        with m.If(accept & pass1):
            m.d.sync += [s1.eq(s1 + x.x), n.eq(n + 1)]
        with m.If(sq.out_valid):
            m.d.sync += s2.eq(s2 + sq.y)

        # the row step, latched for pass 2
        r, h = Signal.like(row.r), Signal.like(row.h)
        m.d.comb += [row.s1.eq(s1), row.s2.eq(s2), row.n.eq(n), row.eps.eq(self.eps)]
        with m.If(row.out_valid):
            m.d.sync += [r.eq(row.r), h.eq(row.h)]

        # pass 2
        m.d.comb += [el.x.eq(x.x), el.s1.eq(s1), el.n.eq(n), el.r.eq(r), el.h.eq(h), el.gamma.eq(x.gamma),
                     el.beta.eq(x.beta), el.shift.eq(self.shift), el.in_valid.eq(accept & pass2)]
        m.d.comb += [self.out_valid.eq(el.out_valid), self.out.y.eq(el.y),
                     self.out.last.eq(delayed(m, x.last, el.latency, "out_last"))]

        with m.FSM(name="row"):
            self._pass_state(m, "PASS1", pass1, accept, "SUMS")
            self._step_states(m, sq.out_valid & delayed(m, x.last, sq.latency, "sq_last"), "PASS2")
            self._pass_state(m, "PASS2", pass2, accept, "PASS1", [s.eq(0) for s in (s1, s2, n)])
        return m
