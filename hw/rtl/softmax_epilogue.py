"""The STORE's softmax epilogue across the lanes of the PE array: ``SoftmaxEpilogue``.

A STORE with ``ep_row != 0`` normalises its pixels' channels in rows of ``ep_row`` as they
leave the PEs (``sim.functional``'s ``_softmax_epilogue``, ``sim.vector_unit.softmax_rows``).
A pixel's channels sit on the K0 lanes of the PEs of a row group, so a row is a segment of
consecutive lanes, and its maximum and sum are reductions across lanes
(:class:`~hw.rtl.segmented_reduce.SegmentedReduce`).  The store unit presents every pixel three
times (``hw.timing.store_beats``), a pixel of every lane a cycle, each time the post-processed
value ``x`` of every lane:

1. pass 1: each lane's row maximum, written to the *maximum buffer* at the pixel;
2. pass 2: ``e = table[max - x]`` (each lane's PE's table memory: the exponentials of
   ``mapper.program.exp_table``), the row sums, ``recip_kernel`` of the sum on every lane, the
   ``(r, k)`` written to the *reciprocal buffer* at the pixel;
3. pass 3: ``e`` again and ``softmax_out_kernel(e, r, k, out_shift)`` on ``y``.

The buffers are as deep as the most pixels a STORE has (``accum_depth``) and one lane-vector
wide, each a 1R1W memory (pass 1 writes the maximum while pass 2 reads it for earlier pixels).
A pixel's next pass may start ``turnaround`` cycles after its previous one at the earliest: the
cycles its row state takes to reach its buffer.  The arithmetic is ``hw.operators``' kernels on
the hardware backend; the exponentials are the table entries' low ``hw.epilogue.EXP_BITS``
bits, as the functional simulator takes them.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from ..epilogue import EXP_BITS
from ..numerics import TABLE_ENTRIES, TABLE_ENTRY_BITS
from .kernel_unit import INT8, KernelUnit, delayed, plan
from .operator_backend import range_shape
from .segmented_reduce import SegmentedReduce

__all__ = ["SoftmaxEpilogue"]

#: Cycles from a pass-2/3 beat to its exponential: the buffer read (with ``x`` registered), then
#: the table's read of entry ``max - x``.
_EXP_DELAY = 2


class SoftmaxEpilogue(wiring.Component):
    """Softmax over segments of lanes, in three passes over a STORE's pixels (module docstring).

    Parameters
    ----------
    lanes : int
        Lanes (``num_pe * K0`` in the store unit).
    depth : int
        Pixels the row-state buffers hold (a STORE's ``out_h * out_w`` is at most ``accum_depth``).

    Members
    -------
    x: In(ArrayLayout(int8, lanes))
        The post-processed values of a beat.
    valid: In(1)
    phase: In(2)
        The beat's pass: 0, 1 or 2 (passes 1 to 3).
    pixel: In(range(depth))
        The beat's pixel, the row-state buffers' address.
    start, member: In(lanes)
        Held for the STORE: lane ``i`` starts a row; lane ``i`` takes part (otherwise it counts
        as -128 in the maximum, 0 in the sum).
    out_shift: In(ArrayLayout(range, lanes))
        Each lane's output shift (``SoftmaxParams.RANGES["out_shift"]``), held for the STORE.
    table_addr: Out(ArrayLayout(unsigned(8), lanes)), table_data: In(ArrayLayout(signed(32), lanes))
        Each lane's table read port: entry ``table_addr[i]`` on ``table_data[i]`` a cycle later.
    y: Out(ArrayLayout(unsigned(7), lanes)), y_valid: Out(1)
        A pass-3 beat's results, ``latency`` cycles after it.
    """

    def __init__(self, lanes: int, depth: int):
        for name, v in (("lanes", lanes), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._lanes, self._depth = lanes, depth
        self._max = SegmentedReduce(lanes, INT8, "max")
        self._sum = SegmentedReduce(lanes, unsigned(EXP_BITS), "sum")
        sums = (0, (1 << self._sum.out_shape.width) - 1)
        self._recip_args = ({"v": sums}, {"width": ops.SOFTMAX_SUM_BITS}, ("r", "k"))
        recip = plan(ops.recip_kernel, self._recip_args[0], consts=self._recip_args[1], outputs=("r", "k"))
        self._rk_layout = data.StructLayout({"r": range_shape(*recip.range("r")), "k": range_shape(*recip.range("k"))})
        self._recip_latency = recip.latency
        self._out_inputs = {"e": (0, (1 << EXP_BITS) - 1), "r": recip.range("r"), "k": recip.range("k"),
                            "out_shift": ops.SoftmaxParams.RANGES["out_shift"]}
        normalise = plan(ops.softmax_out_kernel, self._out_inputs)
        self._out_latency, y_shape = normalise.latency, range_shape(*normalise.range("y"))
        super().__init__({
            "x": In(data.ArrayLayout(INT8, lanes)), "valid": In(1), "phase": In(2), "pixel": In(range(depth)),
            "start": In(lanes), "member": In(lanes),
            "out_shift": In(data.ArrayLayout(range_shape(*ops.SoftmaxParams.RANGES["out_shift"]), lanes)),
            "table_addr": Out(data.ArrayLayout(unsigned(8), lanes)),
            "table_data": In(data.ArrayLayout(signed(TABLE_ENTRY_BITS), lanes)),
            "y": Out(data.ArrayLayout(y_shape, lanes)), "y_valid": Out(1)})
        assert TABLE_ENTRIES == 256

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def latency(self) -> int:
        """Cycles from a pass-3 beat to its ``y``."""
        return _EXP_DELAY + self._out_latency

    @property
    def turnaround(self) -> int:
        """The fewest cycles from a pixel's beat of one pass to its beat of the next: its row state
        written (pass 1: the maximum; pass 2: exponential, sum, reciprocal) before it is read."""
        return max(self._max.latency, _EXP_DELAY + self._sum.latency + self._recip_latency) + 1

    def elaborate(self, platform):
        m = Module()
        n = self._lanes
        m.submodules.max = smax = self._max
        m.submodules.sum = ssum = self._sum
        for unit in (smax, ssum):
            m.d.comb += [unit.start.eq(self.start), unit.member.eq(self.member)]
        max_rd, rk_rd = self._buffers(m)
        phase_d = delayed(m, self.phase, 1, "phase")
        x_d = delayed(m, self.x, 1, "x")
        valid_d = delayed(m, self.valid, 1, "valid")

        # pass 1: the rows' maxima into the maximum buffer (the write port, in _buffers)
        m.d.comb += [smax.x.eq(self.x), smax.in_valid.eq(self.valid & (self.phase == 0))]

        # passes 2 and 3: e = table[max - x] (max >= x: the difference is its own low 8 bits)
        row_max = data.ArrayLayout(INT8, n)(max_rd.data)
        e = data.ArrayLayout(unsigned(EXP_BITS), n)(Signal(EXP_BITS * n, name="e"))
        for i in range(n):
            m.d.comb += [self.table_addr[i].eq((row_max[i] - x_d[i])[:8]), e[i].eq(self.table_data[i][:EXP_BITS])]
        phase_e = delayed(m, phase_d, 1, "phase_e")
        valid_e = delayed(m, valid_d, 1, "valid_e")

        # pass 2: the rows' sums, their reciprocals into the reciprocal buffer
        m.d.comb += [ssum.x.eq(e), ssum.in_valid.eq(valid_e & (phase_e == 1))]
        self._reciprocals(m, ssum)

        # pass 3: normalise
        rk = data.ArrayLayout(self._rk_layout, n)(rk_rd.data)
        rk_e = delayed(m, rk, 1, "rk_e")
        for i in range(n):
            norm = KernelUnit(ops.softmax_out_kernel, self._out_inputs)
            m.submodules[f"normalise{i}"] = norm
            m.d.comb += [norm.e.eq(e[i]), norm.r.eq(rk_e[i].r), norm.k.eq(rk_e[i].k),
                         norm.out_shift.eq(self.out_shift[i]), norm.in_valid.eq(valid_e & (phase_e == 2)),
                         self.y[i].eq(norm.y)]
        m.d.comb += self.y_valid.eq(delayed(m, valid_e & (phase_e == 2), self._out_latency, "y_valid"))
        return m

    def _buffers(self, m):
        """The maximum buffer (written by pass 1's reductions) and the reciprocal buffer (written
        by pass 2's), both read at the beat's pixel; returns their read ports."""
        n = self._lanes
        rk_bits = self._rk_layout.size
        self._max_mem = memory.Memory(shape=unsigned(8 * n), depth=self._depth, init=[])
        self._rk_mem = memory.Memory(shape=unsigned(rk_bits * n), depth=self._depth, init=[])
        m.submodules.max_buffer, m.submodules.rk_buffer = self._max_mem, self._rk_mem
        max_wr, rk_wr = self._max_mem.write_port(), self._rk_mem.write_port()
        max_rd, rk_rd = (mem.read_port(transparent_for=()) for mem in (self._max_mem, self._rk_mem))
        m.d.comb += [max_rd.addr.eq(self.pixel), rk_rd.addr.eq(self.pixel)]
        m.d.comb += [max_wr.addr.eq(delayed(m, self.pixel, self._max.latency, "max_pixel")),
                     max_wr.data.eq(self._max.y.as_value()), max_wr.en.eq(self._max.out_valid)]
        self._rk_write = rk_wr
        return max_rd, rk_rd

    def _reciprocals(self, m, ssum):
        """``recip_kernel`` of every lane's row sum, written with the pixel to the reciprocal buffer."""
        n, wr = self._lanes, self._rk_write
        rk = data.ArrayLayout(self._rk_layout, n)(Signal(wr.data.shape(), name="rk_w"))
        valid = None
        for i in range(n):
            inputs, consts, outputs = self._recip_args
            recip = KernelUnit(ops.recip_kernel, inputs, consts=consts, outputs=outputs)
            m.submodules[f"recip{i}"] = recip
            m.d.comb += [recip.v.eq(ssum.y[i]), recip.in_valid.eq(ssum.out_valid),
                         rk[i].r.eq(recip.r), rk[i].k.eq(recip.k)]
            valid = recip.out_valid
        pixel = delayed(m, self.pixel, _EXP_DELAY + ssum.latency + self._recip_latency, "rk_pixel")
        m.d.comb += [wr.addr.eq(pixel), wr.data.eq(rk.as_value()), wr.en.eq(valid)]
