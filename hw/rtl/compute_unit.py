"""The compute unit: a GEMM's loop nest, one pixel per cycle on every PE; a VEC handed to the vector executor.

Cycle t (start) takes the instruction and starts the loop nest: steps (channel block, kernel
row, kernel column) of ``hw.timing.gemm_period`` cycles, one pixel (oy, ox) per cycle from
t+1.  The contract's ``hw.timing.gemm_cycles`` (steps x period + ``GEMM_PIPELINE``) is kept by
the loop nest itself and a down-counter of the pipeline's rest, loaded in the nest's last cycle
(or at t+1 when it has no step): no product of the fields sits in front of a counter.  The unit
is free when the counter reaches 0 (cycle t + gemm_cycles), and it pushes its tokens the cycle
before, so that they are available from its end.

A VEC taken at cycle t starts the vector executor (``vec``) at t+1 with its ``desc_addr`` and the
fields its descriptor decides (which the executor checks); the
contract's ``hw.timing.vec_cycles`` of its fields is formed through ``VEC_TIMING_STAGES``
registers from t+1 (its ``hold`` stages: no product of fields in front of the counter) and loaded
into a down-counter at t+1+VEC_TIMING_STAGES, which reaches 0 at t + vec_cycles (free; tokens
pushed the cycle before).
The executor is never slower than the contract (``docs/rtl_vector.md``); the unit stays busy
while it runs all the same, so a refused pass never overlaps the next instruction.  A refusal
(``DATA``, or ``UNSUPPORTED`` for what the executor does not build: ``hw.rtl.insn.vec_unsupported``)
is held on ``error`` / ``error_code`` for the dispatcher.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .. import vector as vec
from ..config import AcceleratorConfig
from ..expr import Fields
from ..isa import INSN_BITS, ErrorCode, Op, Queue
from ..timing import (GEMM_MIN_PIXELS, GEMM_PIPELINE, VEC_TIMING_STAGES, gemm_in_h, gemm_period, gemm_steps,
                      gemm_steps_bound, vec_cycles)
from .buses import GemmBusSignature, VecControlSignature
from .insn import field_signal, insn_view
from .pe_tile import check_rtl_config
from .unit import held, push_when, start_when, unit_members

__all__ = ["ComputeUnit"]




class ComputeUnit(wiring.Component):
    """GEMM: the loop nest and the contract's timing (see the module docstring).

    Members
    -------
    insn, enable, idle, pop_prev, pop_next, push_prev, push_next:
        The unit's queue and token ports (:mod:`hw.rtl.unit`).
    gemm: Out(GemmBusSignature(config))
        One pixel per cycle to every PE.
    vec: Out(VecControlSignature())
        A VEC to the vector executor.
    error: Out(1), error_code: Out(ErrorCode)
        Set (and held) when the executor refused a VEC.
    """

    export_prefix = "compute_unit"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"i": config.input_rows, "w": config.weight_rows, "d": config.accum_depth}

    def __init__(self, config: AcceleratorConfig):
        check_rtl_config(config)
        self._config = config
        super().__init__({**unit_members(Queue.COMPUTE, max_wait=0), "gemm": Out(GemmBusSignature(config)),
                          "vec": Out(VecControlSignature()), "error": Out(1), "error_code": Out(ErrorCode)})

    def elaborate(self, platform):
        m = Module()
        cur = Signal(INSN_BITS)
        setup, active, left = Signal(), Signal(), Signal(range(GEMM_PIPELINE))
        is_vec, vec_busy, vec_last = Signal(), Signal(), Signal()
        done = ~setup & ~active & (left == 0) & ~vec_busy
        start = start_when(m, self, Queue.COMPUTE, free=done)
        m.d.comb += self.idle.eq(done)
        with m.If(start):
            m.d.sync += is_vec.eq(insn_view(Op.NOP, self.insn.payload).opcode == Op.VEC)
        last = self._loop_nest(m, cur, start, active)
        self._timing(m, cur, start, (setup, active, last), left, (is_vec, vec_last))
        self._vec(m, cur, setup & is_vec, vec_busy, vec_last)
        return m

    def _vec(self, m, cur, begin, busy, last):
        """The VEC at ``begin`` (cycle t+1): the executor starts, ``vec_cycles`` is registered, and
        the next cycle loads the down-counter ``left`` so that it reaches 0 at t + vec_cycles.
        ``busy`` until then and while the executor runs; ``last`` is the cycle before."""
        cv = Fields(insn_view(Op.VEC, cur))
        shape = vec_cycles(cv, self._config).shape()
        total, left = Signal(shape), Signal(shape)
        m.d.sync += total.eq(vec_cycles(cv, self._config, held(m, shape, "vec_", "sync")))
        forming = Signal(VEC_TIMING_STAGES)         # begin's way through the stages; the last loads
        load = forming[-1]
        m.d.sync += forming.eq(Cat(begin, forming[:-1]))
        m.d.comb += [self.vec.start.eq(begin), self.vec.desc_addr.eq(cv["desc_addr"]),
                     *(getattr(self.vec.fields, name).eq(cv[name]) for name in vec.TIMING_FIELDS),
                     busy.eq(forming.any() | (left != 0) | self.vec.busy), last.eq(left == 1)]
        with m.If(load):                            # t+1+S: the total formed from cur (held from t+1)
            m.d.sync += left.eq(total - (VEC_TIMING_STAGES + 2))    # 0 at t + vec_cycles
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        with m.If(self.vec.done & self.vec.error & ~self.error):
            m.d.sync += [self.error.eq(1), self.error_code.eq(self.vec.error_code)]

    def _timing(self, m, cur, start, nest, left, vec_state):
        """``left`` counts the pipeline's rest after the loop nest: GEMM_PIPELINE - 1 from the
        nest's last cycle (t + steps x period, at least t + GEMM_MIN_PIXELS), or GEMM_PIPELINE - 2
        from t+1 when the nest is empty, so it reaches 1 at the last cycle (tokens pushed, to be
        available at the end) and 0 at the end (free)."""
        setup, active, nest_last = nest
        is_vec, vec_last = vec_state
        hdr = insn_view(Op.NOP, cur)
        assert GEMM_MIN_PIXELS > 1 and GEMM_PIPELINE >= 2
        with m.If(start):
            m.d.sync += [cur.eq(self.insn.payload), setup.eq(1)]
        with m.Elif(setup):
            m.d.sync += [setup.eq(0), left.eq(Mux(active | is_vec, 0, GEMM_PIPELINE - 2))]
        with m.Elif(nest_last):
            m.d.sync += left.eq(GEMM_PIPELINE - 1)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        last = (~setup & ~active & (left == 1)) | vec_last
        push_when(m, self, Queue.COMPUTE, last, hdr)

    def _loop_nest(self, m, cur, start, active):
        """Steps (cb, r, s) of ``period`` cycles, pixel p = (oy, ox) per cycle; returns the
        strobe of the nest's last cycle."""
        h = self.insn.payload
        hg = Fields(insn_view(Op.GEMM, h))
        cg = insn_view(Op.GEMM, cur)
        g = self.gemm
        nest_last = Signal()
        steps, step = (Signal(range(gemm_steps_bound(self._config) + 1)) for _ in range(2))  # as legality allows
        period, npix, p = Signal(25), Signal(24), Signal(25)
        oy, ox, r, s = (field_signal(Op.GEMM, name) for name in ("out_h", "out_w", "kh", "kw"))
        row_off, col_off, r_off, cb_base = Signal(32), Signal(32), Signal(32), Signal(32)
        plane, st_in_w = Signal(32), Signal(32)
        pix = p < npix
        m.d.comb += [
            g.valid.eq(active & pix),
            g.first.eq(~cg.accumulate & (step == 0)),
            g.inp.eq(cg.inp_addr + cb_base + r_off + s + row_off + col_off),
            g.wgt.eq(cg.wgt_addr + step),
            g.acc.eq(cg.acc_addr + p),
            g.dw.eq(cg.dw), g.kw.eq(cg.kw),
        ]
        m.d.comb += nest_last.eq(active & (p == period - 1) & (step + 1 == steps))
        with m.If(active):
            with m.If(p == period - 1):
                m.d.sync += [p.eq(0), oy.eq(0), ox.eq(0), row_off.eq(0), col_off.eq(0), step.eq(step + 1)]
                with m.If(nest_last):
                    m.d.sync += active.eq(0)
                with m.If((s == cg.kw - 1) | cg.dw):          # a gather covers the row's kw taps at once
                    m.d.sync += s.eq(0)
                    with m.If(r == cg.kh - 1):
                        m.d.sync += [r.eq(0), r_off.eq(0), cb_base.eq(cb_base + plane)]
                    with m.Else():
                        m.d.sync += [r.eq(r + 1), r_off.eq(r_off + cg.in_w)]
                with m.Else():
                    m.d.sync += s.eq(s + 1)
            with m.Else():
                m.d.sync += p.eq(p + 1)
                with m.If(pix):
                    with m.If(ox == cg.out_w - 1):
                        m.d.sync += [ox.eq(0), col_off.eq(0), oy.eq(oy + 1), row_off.eq(row_off + st_in_w)]
                    with m.Else():
                        m.d.sync += [ox.eq(ox + 1), col_off.eq(col_off + cg.stride)]

        in_h = gemm_in_h(hg)
        # a product of fields is nonzero when every factor is: the steps' factors as 1-bit values
        has_steps = gemm_steps({"n_cblk": hg["n_cblk"] != 0, "kh": hg["kh"] != 0, "kw": hg["kw"] != 0, "dw": hg["dw"]})
        with m.If(start):
            m.d.sync += [active.eq((insn_view(Op.NOP, h).opcode == Op.GEMM) & (has_steps != 0)),
                         steps.eq(gemm_steps(hg)), step.eq(0), period.eq(gemm_period(hg)),
                         npix.eq(hg["out_h"] * hg["out_w"]), p.eq(0),
                         oy.eq(0), ox.eq(0), r.eq(0), s.eq(0), row_off.eq(0), col_off.eq(0),
                         r_off.eq(0), cb_base.eq(0), plane.eq(in_h * hg["in_w"]),
                         st_in_w.eq(hg["stride"] * hg["in_w"])]
        return nest_last
