"""The STORE's softmax epilogue across the lanes of the PE array: ``SoftmaxEpilogue``.

A STORE with ``ep_row != 0`` normalises its pixels' channels in rows of ``ep_row`` as they
leave the PEs (``sim.functional``'s ``_softmax_epilogue``, ``sim.vector_unit.softmax_rows``).
A pixel's channels sit on the K0 lanes of the PEs of a row group, so a row is a segment of
consecutive lanes of one beat, and its maximum and sum are reductions across lanes
(:class:`~hw.rtl.segmented_reduce.SegmentedReduce`).  Each beat (the post-processed value ``x`` of
every lane) streams through once, a beat a cycle at most:

1. the rows' maxima, while ``x`` waits in a delay buffer;
2. ``e = table[max - x]`` (each lane's PE's table memory: the exponentials of
   ``mapper.program.exp_table``), the rows' sums and ``recip_kernel`` of each, while ``e`` waits;
3. ``softmax_out_kernel(e, r, k, out_shift)`` on ``y``, ``latency`` cycles after the beat
   (``hw.timing.epilogue_latency``).

The delay buffers are 1R1W memories as deep as the reductions are long
(:class:`~hw.rtl.delay_buffer.DelayBuffer`), one lane vector wide.  The arithmetic is
``hw.operators``' kernels on the hardware backend; the exponentials are the table entries' low
``hw.epilogue.EXP_BITS`` bits, as the functional simulator takes them.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from ..epilogue import EXP_BITS
from ..numerics import TABLE_ENTRIES, TABLE_ENTRY_BITS
from ..timing import EPILOGUE_NORMALISE_LATENCY, EPILOGUE_RECIP_LATENCY
from .delay_buffer import DelayBuffer
from .kernel_unit import INT8, KernelUnit, delayed, plan
from .operator_backend import range_shape
from .segmented_reduce import SegmentedReduce

__all__ = ["SoftmaxEpilogue"]

class SoftmaxEpilogue(wiring.Component):
    """Softmax over segments of lanes, a beat streaming through (module docstring).

    Parameters
    ----------
    lanes : int
        Lanes (``num_pe * K0`` in the store unit).

    Members
    -------
    x: In(ArrayLayout(int8, lanes))
        The post-processed values of a beat.
    valid: In(1)
    start, member: In(lanes)
        Held for the STORE: lane ``i`` starts a row; lane ``i`` takes part (otherwise it counts
        as -128 in the maximum, 0 in the sum).
    out_shift: In(ArrayLayout(range, lanes))
        Each lane's output shift (``SoftmaxParams.RANGES["out_shift"]``), held for the STORE.
    table_addr: Out(ArrayLayout(unsigned(8), lanes)), table_data: In(ArrayLayout(signed(32), lanes))
        Each lane's table read port: entry ``table_addr[i]`` on ``table_data[i]`` a cycle later.
    y: Out(ArrayLayout(unsigned(7), lanes)), y_valid: Out(1)
        A beat's results, ``latency`` cycles after it.
    """

    def __init__(self, lanes: int):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        self._max = SegmentedReduce(lanes, INT8, "max")
        self._sum = SegmentedReduce(lanes, unsigned(EXP_BITS), "sum")
        sums = (0, (1 << self._sum.out_shape.width) - 1)
        self._recip_args = ({"v": sums}, {"width": ops.SOFTMAX_SUM_BITS}, ("r", "k"))
        recip = plan(ops.recip_kernel, self._recip_args[0], consts=self._recip_args[1], outputs=("r", "k"))
        self._recip_latency = recip.latency
        self._out_inputs = {"e": (0, (1 << EXP_BITS) - 1), "r": recip.range("r"), "k": recip.range("k"),
                            "out_shift": ops.SoftmaxParams.RANGES["out_shift"]}
        normalise = plan(ops.softmax_out_kernel, self._out_inputs)
        self._out_latency, y_shape = normalise.latency, range_shape(*normalise.range("y"))
        super().__init__({
            "x": In(data.ArrayLayout(INT8, lanes)), "valid": In(1),
            "start": In(lanes), "member": In(lanes),
            "out_shift": In(data.ArrayLayout(range_shape(*ops.SoftmaxParams.RANGES["out_shift"]), lanes)),
            "table_addr": Out(data.ArrayLayout(unsigned(8), lanes)),
            "table_data": In(data.ArrayLayout(signed(TABLE_ENTRY_BITS), lanes)),
            "y": Out(data.ArrayLayout(y_shape, lanes)), "y_valid": Out(1)})
        assert TABLE_ENTRIES == 256
        assert (self._recip_latency, self._out_latency) == (EPILOGUE_RECIP_LATENCY, EPILOGUE_NORMALISE_LATENCY), \
            "hw.timing's kernel latencies are not the RTL's"

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        """Cycles from a beat to its ``y``: the maximum's reduction, the table read, the sum's
        reduction, the reciprocal, the normalisation."""
        return self._max.latency + 1 + self._sum.latency + self._recip_latency + self._out_latency

    def elaborate(self, platform):
        m = Module()
        n = self._lanes
        m.submodules.max = smax = self._max
        m.submodules.sum = ssum = self._sum
        for unit in (smax, ssum):
            m.d.comb += [unit.start.eq(self.start), unit.member.eq(self.member)]

        # the rows' maxima; x waits for them
        m.d.comb += [smax.x.eq(self.x), smax.in_valid.eq(self.valid)]
        m.submodules.x_wait = x_wait = DelayBuffer(data.ArrayLayout(INT8, n), smax.latency)
        m.d.comb += x_wait.d.eq(self.x)

        # e = table[max - x] (max >= x: the difference is its own low 8 bits), a cycle later
        e = data.ArrayLayout(unsigned(EXP_BITS), n)(Signal(EXP_BITS * n, name="e"))
        for i in range(n):
            m.d.comb += [self.table_addr[i].eq((smax.y[i] - x_wait.q[i])[:8]), e[i].eq(self.table_data[i][:EXP_BITS])]

        # the rows' sums and their reciprocals; e waits for them
        m.d.comb += [ssum.x.eq(e), ssum.in_valid.eq(delayed(m, smax.out_valid, 1, "e_valid"))]
        m.submodules.e_wait = e_wait = DelayBuffer(data.ArrayLayout(unsigned(EXP_BITS), n),
                                                   ssum.latency + self._recip_latency)
        m.d.comb += e_wait.d.eq(e)
        for i in range(n):
            inputs, consts, outputs = self._recip_args
            recip = KernelUnit(ops.recip_kernel, inputs, consts=consts, outputs=outputs)
            norm = KernelUnit(ops.softmax_out_kernel, self._out_inputs)
            m.submodules[f"recip{i}"], m.submodules[f"normalise{i}"] = recip, norm
            m.d.comb += [recip.v.eq(ssum.y[i]), recip.in_valid.eq(ssum.out_valid),
                         norm.e.eq(e_wait.q[i]), norm.r.eq(recip.r), norm.k.eq(recip.k),
                         norm.out_shift.eq(self.out_shift[i]), norm.in_valid.eq(recip.out_valid),
                         self.y[i].eq(norm.y)]
        m.d.comb += self.y_valid.eq(delayed(m, self.valid, self.latency, "y_valid"))
        return m
