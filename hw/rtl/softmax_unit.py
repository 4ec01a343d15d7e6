"""Softmax over rows, one lane: the row sequencer around ``hw.operators``' softmax kernels (``SoftmaxUnit``)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal

from .. import operators as ops
from .kernel_unit import INT8, KernelUnit, delayed
from .operator_backend import AmaranthBackend, range_shape
from .row_unit import I8_RANGE, ROW_IN, RowUnit, check_max_row

__all__ = ["SoftmaxUnit"]


class SoftmaxUnit(RowUnit):
    """``hw.operators.softmax`` of rows streamed in three times, one element a cycle.

    The caller sends each row three times on ``x`` (``last`` on its final element each time):

    1. pass 1: the running maximum (``max_kernel``) from -128;
    2. pass 2: ``e = softmax_exp_kernel(x, max)`` and their sum;
    3. after the sum, ``recip_kernel(sum, SOFTMAX_SUM_BITS)`` once, while ``x.ready`` is low;
    4. pass 3: ``e`` again and ``y = softmax_out_kernel(e, r, k)`` on ``out`` (``last`` on the row's
       final element), ``out_latency`` cycles after each element of pass 3 went in.

    The exponential unit serves passes 2 and 3 (the contract's three element operations per
    element: maximum, exponential and sum, normalisation); no row buffer.  The next row's pass 1
    may start while the last results still come out.  The parameter ports must hold the row's
    values from its first element until its last has gone in (each element takes them along).
    ``x.ready`` is low for ``gap_cycles`` cycles between passes 2 and 3, so a row of ``n`` takes
    ``3 n + gap_cycles`` cycles when the caller never waits.

    Parameters
    ----------
    max_row : int
        Longest row (sizes the sum), 1..``hw.operators.MAX_ROW``.

    Members
    -------
    exp_mult, exp_shift, out_shift: In(...)
        ``hw.operators.SoftmaxParams`` fields (ranges from its ``RANGES``); ``x`` carries
        ``ROW_IN``, the rest as in :class:`RowUnit`.
    """

    def __init__(self, max_row: int = ops.MAX_ROW):
        n = check_max_row(max_row)
        p = ops.SoftmaxParams.RANGES
        self._exp = KernelUnit(ops.softmax_exp_kernel, {"x": I8_RANGE, "xmax": I8_RANGE, "exp_mult": p["exp_mult"],
                                                        "exp_shift": p["exp_shift"]}, outputs=("e",))
        e_lo, e_hi = self._exp.output_range("e")
        self._sum_range = (n * e_lo, n * e_hi)
        self._recip = KernelUnit(ops.recip_kernel, {"v": self._sum_range}, consts={"width": ops.SOFTMAX_SUM_BITS},
                                 outputs=("r", "k"))
        self._normalise = KernelUnit(ops.softmax_out_kernel, {
            "e": (e_lo, e_hi), "r": self._recip.output_range("r"), "k": self._recip.output_range("k"),
            "out_shift": p["out_shift"]})
        super().__init__(n, p, ROW_IN, step=self._recip, accumulate_latency=self._exp.latency)

    @property
    def out_latency(self) -> int:
        """Cycles from an element of pass 3 going in to its result on ``out``."""
        return self._exp.latency + self._normalise.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.exp, m.submodules.recip, m.submodules.normalise = exp, recip, norm = \
            self._exp, self._recip, self._normalise
        accept = self.x.valid & self.x.ready
        pass1, pass2, pass3 = Signal(), Signal(), Signal()

        # pass 1: the running maximum, by the same kernel as max pooling
        xmax = Signal(INT8, init=ops.INT8_MIN)
        be = AmaranthBackend(m, "max")
        new_max = be.run(ops.max_kernel, be.input(xmax, *I8_RANGE), be.input(self.x.payload.x, *I8_RANGE),
                         be.input(accept & pass1, 0, 1))
        m.d.sync += xmax.eq(new_max.value)

        # passes 2 and 3: the exponential of each element, tagged with its pass, row end and out_shift
        m.d.comb += [exp.x.eq(self.x.payload.x), exp.xmax.eq(xmax), exp.exp_mult.eq(self.exp_mult),
                     exp.exp_shift.eq(self.exp_shift), exp.in_valid.eq(accept & (pass2 | pass3))]
        tag_pass3 = delayed(m, pass3, exp.latency, "tag_pass3")
        tag_last = delayed(m, self.x.payload.last, exp.latency, "tag_last")
        tag_out_shift = delayed(m, self.out_shift, exp.latency, "tag_out_shift")
        e_sum = Signal(range_shape(*self._sum_range))
        with m.If(exp.out_valid & ~tag_pass3):
            m.d.sync += e_sum.eq(e_sum + exp.e)

        # the reciprocal of the sum, once per row, latched for pass 3
        r, k = Signal.like(recip.r), Signal.like(recip.k)
        m.d.comb += recip.v.eq(e_sum)
        with m.If(recip.out_valid):
            m.d.sync += [r.eq(recip.r), k.eq(recip.k)]
        m.d.comb += [norm.e.eq(exp.e), norm.r.eq(r), norm.k.eq(k), norm.out_shift.eq(tag_out_shift),
                     norm.in_valid.eq(exp.out_valid & tag_pass3)]
        m.d.comb += [self.out_valid.eq(norm.out_valid), self.out.y.eq(norm.y),
                     self.out.last.eq(delayed(m, tag_last, norm.latency, "out_last"))]

        with m.FSM(name="row"):
            self._pass_state(m, "PASS1", pass1, accept, "PASS2", [e_sum.eq(0)])
            self._pass_state(m, "PASS2", pass2, accept, "SUMS")
            self._step_states(m, exp.out_valid & ~tag_pass3 & tag_last, "PASS3")
            self._pass_state(m, "PASS3", pass3, accept, "PASS1", [xmax.eq(ops.INT8_MIN)])
        return m
