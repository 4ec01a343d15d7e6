"""The vector executor's spatial sequencer: resizes, poolings and the class map (``SpatialUnit``).

A pass whose first stage is a ``RESIZE``, ``POOL`` or ``RESIZE_ARGMAX`` reads its source operand
over the source's own raster and writes ``h x w`` output pixels (``hw/vector.py``).  It runs on
``lanes`` row lanes like the row passes of ``VectorUnit`` (``hw.vector.row_schedule``): each lane
takes one output pixel (a pooling: one of the ``2**split`` rows of its channels), all lanes in
step over the channels, one channel (a pooling: one window tap of a channel) a cycle:

    walker (DDA) -> lane l: its pixel's four source offsets + base + channel -> DRAM reads (4 lanes)
                 -> resize_element_kernel -> write the element (resize) or fold the argmax (class map)
    walker (window counters) -> lane l: window address + tap offset + channel -> DRAM read (1 lane)
                 -> max_kernel / sum fold -> average_kernel -> write (pooling, nearest resize)
    either result -> chain slot 1 .. 3 (ElementwiseLane: COPY, ADD, MUL with a second operand read
                 with the element's last tap) -> write each stage's result (Swin's RESIZE->ADD)

* The *walker* (``hw/rtl/vector_spatial_walker.py``) steps the output raster ``walk_rows`` pixels
  a cycle (``PixelWalker``: one, the contract's below 64 lanes; ``WidePixelWalker``: ``k``
  interleaved walkers) and hands the next group's pixels to the lanes while they run the current
  group, so a group of ``lanes`` pixels takes ``max(row_cycles, lanes / walk_rows)`` cycles and the
  first waits for its walk (``hw.timing.vec_row_cycles``).  What follows is ``PixelWalker``'s; the
  wide one moves the same counters by per-pass multiples.
  A bilinear axis's source position is a DDA (``hw.operators.resize_axis_params``): ``start`` at
  the first output, plus ``step`` per output, one add per step.  ``bilinear_axis_kernel`` turns it
  into the indices ``i0, i1`` and the weight; the kernel is fed the position the walker steps to,
  so its registered result belongs to the walker's current pixel.  A pooling's windows come from
  a counter per axis (``_PoolAxis``: ``i·stride - padding``, or ``floor(i·n_in/n_out)`` stepped by
  the descriptor's witnesses), and so does a nearest resize's source index (a window of one tap).
  The source is a plain raster (``hw.vector.plain_axis``), so index ``i`` is at ``i * stride``: a
  product, no division; the walker hands out offsets from the source's base, which the lanes add
  with the channel (``base_j``, the tap offset), so that the walker's sum is one add shorter.
  The output pixel's address comes from the written operand's ``AxisCounter``s (any pattern).
* A lane reads its pixel's four source elements on its first four read lanes, interpolates them
  (``hw.operators.resize_element_kernel``) and writes the element on its first write lane (a
  resize: channels below the written operand's ``c``), or folds the unrounded sums with
  ``argmax_kernel`` and writes the class index's low byte with the last channel (the class map).
  A pooling reads a window tap a cycle on its first read lane and folds it (``max_kernel``, or the
  sum then ``average_kernel`` by the window's count).
* A chain after the spatial stage (``hw.vector.SPATIAL_CHAIN_OPS``) runs on ``CHAIN_SLOTS`` of the
  row lanes' element-wise slot a lane, one after the other, each ``chain_stage_latency`` cycles:
  stage ``i``'s second operand is read on read lane ``CORNERS + i - 1`` and held to the slot's
  input, its result written on write lane ``i``; the walker steps each chain operand's
  ``AxisCounter``s with the written operand's.

It refuses what the functional model refuses and then what it does not build, by one rule
(``hw.vector.spatial_refusals``): ``DATA`` (a DDA or witnesses that are not its sizes', a pooling
geometry that does not give ``h x w``, sizes beyond the operators' limits, a written operand of
another raster) before ``UNSUPPORTED`` (a chain of other than COPY, ADD and MUL on the previous
result, or reading what the pass writes; a source that is no plain raster, a result in place or
into an operand whose channels repeat within the source's).  What the chain's stages hold (their
parameters, channels and rasters, a stage after the class map) is ``hw.vector.pass_refusals``',
which the executor (``hw/rtl/vector_executor.py``) evaluates before it starts this unit.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Fragment, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..expr import Fields, any_of, sel
from ..isa import ADDR_BITS, ErrorCode, VecOp
from ..numerics import INT8_MAX, INT8_MIN
from ..timing import vec_row_cycles, vec_walk_rows
from .axis_counter import AxisCounter
from .buses import DRAM_READ_LATENCY, DramReadSignature, DramWriteSignature
from .elementwise_lane import ElementwiseLane, drive_params, stage_params
from .kernel_unit import KernelUnit, delay_line, delayed, plan
from .operator_backend import range_shape
from .vector_descriptor import DESCRIPTOR, OPERAND, element_at, field_slots
from .unit import level_held
from .vector_row_lane import LANE_READS
from .vector_spatial_walker import (AXIS_INPUTS, CHAIN_SLOTS, COMBINATIONAL, CORNERS, COUNT, COUNT_STAGE, PIXEL,
                                    TAPS_BITS, PixelWalker, WidePixelWalker)
from .vector_unit import finish_states, read_lanes, write_lanes

__all__ = ["SpatialUnit", "spatial_cycles", "runs_spatial", "kernel_latency", "chain_stage_latency"]

#: Cycles before the walk: latch the source and written operands, then check them.
SETUP_CYCLES = 2
_INT8 = (INT8_MIN, INT8_MAX)
_WEIGHT = (0, 1 << ops.RESIZE_WEIGHT_BITS)
_ELEMENT_INPUTS = {**{f"a{y}{x}": _INT8 for y in "01" for x in "01"}, "wy": _WEIGHT, "wx": _WEIGHT}
_AVERAGE_INPUTS = {"total": (INT8_MIN * ops.POOL_MAX_COUNT, INT8_MAX * ops.POOL_MAX_COUNT), "count": COUNT}
AXIS_PLAN = plan(ops.bilinear_axis_kernel, AXIS_INPUTS, outputs=("i0", "i1", "w"))
ELEMENT_PLAN = plan(ops.resize_element_kernel, _ELEMENT_INPUTS, outputs=("y", "s"))
AVERAGE_PLAN = plan(ops.average_kernel, _AVERAGE_INPUTS)
#: A pooling's window count's reciprocal (``hw.operators.recip_kernel``): the walker computes it
#: once a pixel, and each lane divides its channels' sums by it (``average_by_reciprocal_kernel``).
RECIP_PLAN = plan(ops.recip_kernel, {"v": COUNT}, consts={"width": ops.POOL_COUNT_BITS}, outputs=("r", "k"))
_BY_RECIP_INPUTS = {**_AVERAGE_INPUTS, "r": RECIP_PLAN.range("r"), "k": RECIP_PLAN.range("k")}
BY_RECIP_PLAN = plan(ops.average_by_reciprocal_kernel, _BY_RECIP_INPUTS)
#: A lane's sum waits for its pixel's reciprocal (which lags the pixel by the count's register and
#: the reciprocal's pipeline, the sum by the read); the quotient then waits out the rest of
#: ``average_kernel``'s latency, so that the pooling's cycles (:func:`kernel_latency`) are
#: average_kernel's.
_RECIP_LAG = COUNT_STAGE + RECIP_PLAN.latency
_RECIP_WAIT = _RECIP_LAG - DRAM_READ_LATENCY
_AVERAGE_PAD = AVERAGE_PLAN.latency - _RECIP_WAIT - BY_RECIP_PLAN.latency
assert _RECIP_WAIT >= 0 and _AVERAGE_PAD >= 0, (RECIP_PLAN, BY_RECIP_PLAN, AVERAGE_PLAN)
#: The longer of the two paths of the spatial stage (:func:`kernel_latency`).
_KERNEL_MAX = max(AVERAGE_PLAN.latency, ELEMENT_PLAN.latency)
#: The walker feeds the axis kernel the position it steps to: its result is one cycle later.
assert AXIS_PLAN.latency == 1, AXIS_PLAN


def runs_spatial(op) -> object:
    """Whether the executor hands a pass whose first stage is ``op`` to the spatial unit (a resize,
    a pooling or the class map: ``hw.vector.SPATIAL``).  On integers or Amaranth values."""
    return any_of(*(op == spatial for spatial in vec.SPATIAL))


def kernel_latency(stage: vec.Stage) -> int:
    """Cycles from an element's read to its write: a pooling's or a nearest resize's (the window
    path: ``average_kernel``, a maximum or the one source element delayed to match) or the bilinear
    interpolation's."""
    window = stage.op == VecOp.POOL or (stage.op == VecOp.RESIZE and stage.params["mode"] == vec.ResizeMode.NEAREST)
    return AVERAGE_PLAN.latency if window else ELEMENT_PLAN.latency


@functools.cache
def chain_stage_latency() -> int:
    """Cycles an element spends in each stage of a chain after the spatial stage: the element-wise
    slot's (``ElementwiseLane.latency``)."""
    slot = ElementwiseLane(ops=vec.SPATIAL_CHAIN_OPS)
    Fragment.get(slot, None)        # built for its latency: elaborated so that it is not reported unused
    return slot.latency


def spatial_cycles(d: vec.Descriptor, lanes: int, walk_rows: int | None = None) -> int:
    """Cycles from ``start`` to ``done`` of the unit for a descriptor it runs: its setup, the rows
    (``hw.timing.vec_row_cycles`` of ``hw.vector.row_schedule``, walked up to ``walk_rows`` a
    cycle: a chain's stages overlap along the row), then the last element's read, kernel (:func:`kernel_latency`), chain stages
    (:func:`chain_stage_latency` each) and write (the ``done`` cycle follows the write)."""
    rows, row, passes, gap = vec.row_schedule(d)
    return SETUP_CYCLES + vec_row_cycles({"rows": rows, "row_cycles": passes * row + gap}, lanes,
                                          walk_rows=walk_rows) + \
        DRAM_READ_LATENCY + kernel_latency(d.stages[0]) + (len(d.stages) - 1) * chain_stage_latency()


def _members(lanes: int) -> dict:
    return {"start": In(1), "desc": In(DESCRIPTOR), "busy": Out(1), "done": Out(1), "error": Out(1),
            "error_code": Out(ErrorCode), "overrun": Out(1),
            "dram_rd": Out(DramReadSignature(read_lanes(lanes))), "dram_wr": Out(DramWriteSignature(write_lanes(lanes)))}


class SpatialUnit(wiring.Component):
    """Runs a VEC pass whose first stage is a resize, a pooling or the class map, on ``lanes`` row lanes.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator it belongs to.
    lanes : int
        Row lanes (``config.vector_lanes`` by default), with ``VectorUnit``'s DRAM lanes.
    walk_rows : int | None
        Output rows (pixels, or a pooling's parts of one) the walker hands out a cycle, at most
        (``hw.timing.vec_walk_rows``: the most that divide ``lanes``; by default the contract's
        for ``lanes``): one (``PixelWalker``) or
        more (``WidePixelWalker``, ``hw/rtl/vector_spatial_walker.py``).

    Members
    -------
    start: In(1)
        Latch ``desc`` and run it.
    desc: In(vector_descriptor.DESCRIPTOR)
        A descriptor ``DescriptorFetch`` accepted, whose first stage is a ``RESIZE``, ``POOL`` or ``RESIZE_ARGMAX``.
    busy, done: Out(1)
        ``done`` is high for one cycle when the last element is written (or the descriptor refused).
    error, error_code: Out(1), Out(ErrorCode)
        With ``done``: ``DATA`` where the functional model refuses the pass, else ``UNSUPPORTED``
        where the unit does not build it (module docstring); nothing is written.
    overrun: Out(1)
        Low: the unit has no row units to overrun (``VectorUnit``'s members, so that the executor
        treats the two alike).
    dram_rd: Out(DramReadSignature(read_lanes(lanes))), dram_wr: Out(DramWriteSignature(write_lanes(lanes)))
        As ``VectorUnit``'s: row lane ``l`` reads on lanes ``LANE_READS * l`` .. ``+ 3`` (its pixel's
        source elements) and ``+ 4`` .. ``+ 6`` (the chain stages' second operands), and writes on
        lanes ``MAX_STAGES * l`` (the spatial stage) .. ``+ 3`` (the chain stages).
    """

    export_prefix = "spatial_unit"
    #: Exported (``python -m hw.rtl.synth --part spatial-unit``) with its lanes' kernels and chain
    #: slots and its walker's counters as modules named under it; in the accelerator it is a
    #: module named under the vector executor's.
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig, lanes: int | None = None, walk_rows: int | None = None) -> dict:
        lanes = config.vector_lanes if lanes is None else lanes
        rows = vec_walk_rows(lanes, walk_rows)
        return {"v": lanes} | ({"w": rows} if rows > 1 else {})

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, walk_rows: int | None = None):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        lanes = config.vector_lanes if lanes is None else lanes
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._n, self._walk_rows = lanes, vec_walk_rows(lanes, walk_rows)
        super().__init__(_members(lanes))

    @property
    def lanes(self) -> int:
        return self._n

    @property
    def walk_rows(self) -> int:
        """Rows the walker hands out a cycle (``hw.timing.vec_walk_rows``)."""
        return self._walk_rows

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for descriptor ``d`` the unit runs (``spatial_cycles``)."""
        return spatial_cycles(d, self._n, self._walk_rows)

    def elaborate(self, platform):
        m = Module()
        d = Signal(DESCRIPTOR)
        with m.If(self.start & ~self.busy):
            m.d.sync += d.eq(self.desc)
        pas = _Pass(m, d)
        k = self._walk_rows
        walker = PixelWalker(m, pas) if k == 1 else WidePixelWalker(m, pas, k)
        lanes = [_Lane(m, l, pas, walker.pixels[l % k]) for l in range(self._n)]
        seq = _Sequencer(m, pas, walker, lanes, self)
        for lane in lanes:
            lane.run(seq)
        self._drive_dram(m, lanes)
        return m

    def _drive_dram(self, m: Module, lanes: list) -> None:
        """Each port field in one assignment: lane ``l``'s reads on its first ``CORNERS +
        CHAIN_SLOTS`` read lanes, its writes on its ``MAX_STAGES`` write lanes, every other lane idle."""
        rd, wr = self.dram_rd, self.dram_wr
        zero = Const(0, ADDR_BITS)
        idle_reads = LANE_READS - CORNERS - CHAIN_SLOTS
        assert idle_reads >= 0 and len(lanes[0].wr_en) == vec.MAX_STAGES
        rd_en = [b for ln in lanes for b in (*ln.rd_en, *[Const(0)] * idle_reads)]
        rd_addr = [a for ln in lanes for a in (*ln.rd_addr, *[zero] * idle_reads)]
        rd_en += [Const(0)] * (len(rd.en) - len(rd_en))
        rd_addr += [zero] * (len(rd.en) - len(rd_addr))
        m.d.comb += [rd.en.eq(Cat(*rd_en)), rd.addr.eq(Cat(*rd_addr))]
        m.d.comb += [wr.en.eq(Cat(*(b for ln in lanes for b in ln.wr_en))),
                     wr.addr.eq(Cat(*(a for ln in lanes for a in ln.wr_addr))),
                     wr.data.eq(Cat(*(b for ln in lanes for b in ln.wr_data)))]

    @property
    def _rd_data(self):
        return self.dram_rd.data.as_value()


class _Pass:
    """The latched descriptor's pass, the source and written operands latched a cycle later
    (``select``), and the checks on them (``error_code``)."""

    def __init__(self, m: Module, d):
        self.m, self.d = m, d
        stage = d.stages[0]
        self.head, _, stages = field_slots(d)
        self.stage = stages[0]
        self.argmax, self.pool_max, self.adaptive = Signal(), Signal(), Signal()
        self.nearest, self.window = Signal(), Signal()     # a nearest resize; it or a pooling
        self.dda = {k: Signal(signed(32) if k.endswith("start") else unsigned(32), name=k)
                    for k in ("y_start", "y_step", "x_start", "x_step")}
        self.src, self.out = Signal(OPERAND, name="src_operand"), Signal(OPERAND, name="out_operand")
        self.writes = Signal()
        self.h, self.w = Signal.like(d.header.h), Signal.like(d.header.w)
        self.taps = {a: Signal(TAPS_BITS, name=f"taps_{a}") for a in "yx"}
        self.split = Signal(4, name="pool_split")
        src = element_at(d.operands, stage.copy.src[:3])
        #: each axis's end of the padded input, ``n_in + padding`` (what a pooling window is clamped to)
        self.pad_end = {a: Signal(Value.cast(getattr(src, f"{a}_n") + stage.pool.padding).shape(), name=f"pad_end_{a}")
                        for a in "yx"}
        self.select = Signal()
        self.stages = stages
        #: each chain stage's second and written operands, latched with the others
        self.chain = [(Signal(OPERAND, name=f"chain{i}_second"), Signal(OPERAND, name=f"chain{i}_written"))
                      for i in range(1, vec.MAX_STAGES)]
        live = [i < d.header.n_stages for i in range(1, vec.MAX_STAGES)]
        chain_ops = [d.stages[i].copy for i in range(1, vec.MAX_STAGES)]
        #: whether each chain stage reads its second operand, writes its result (the live ones), and
        #: its slot's operation and parameters: decoded once a pass for every lane
        self.chain_reads = [Signal(name=f"chain{i}_reads") for i in range(1, vec.MAX_STAGES)]
        self.chain_writes = [Signal(name=f"chain{i}_writes") for i in range(1, vec.MAX_STAGES)]
        decoded = [stage_params(d.stages[i]) for i in range(1, vec.MAX_STAGES)]
        self.chain_params = [{k: Signal(Value.cast(v).shape(), name=f"chain{i + 1}_{k}") for k, v in p.items()}
                             for i, p in enumerate(decoded)]
        self.chain_length = sum(live)
        head = stage.copy
        argmax, pool = head.op == VecOp.RESIZE_ARGMAX, head.op == VecOp.POOL
        nearest = (head.op == VecOp.RESIZE) & (stage.resize.mode == vec.ResizeMode.NEAREST)
        with m.If(self.select):
            # a nearest resize walks a one-tap window at the adaptive counters' floor(i n_in / n_out)
            m.d.sync += [self.argmax.eq(argmax), self.nearest.eq(nearest), self.window.eq(pool | nearest),
                         self.pool_max.eq((pool & (stage.pool.mode == vec.PoolMode.MAX)) | nearest),
                         self.adaptive.eq((pool & (stage.pool.mode == vec.PoolMode.ADAPTIVE_AVG)) | nearest),
                         self.src.eq(element_at(d.operands, head.src[:3])), self.out.eq(element_at(d.operands, head.out[:3])),
                         self.writes.eq(head.out != vec.NONE),
                         self.h.eq(d.header.h), self.w.eq(d.header.w)]
            for (second, written), st in zip(self.chain, chain_ops):
                m.d.sync += [second.eq(element_at(d.operands, st.src2[:3])), written.eq(element_at(d.operands, st.out[:3]))]
            for on, st, reads, writes, params, values in zip(live, chain_ops, self.chain_reads, self.chain_writes,
                                                             self.chain_params, decoded):
                m.d.sync += [reads.eq(on & ((st.op == VecOp.ADD) | (st.op == VecOp.MUL)) & (st.src2 != vec.NONE)),
                             writes.eq(on & (st.out != vec.NONE)),
                             *(params[k].eq(v) for k, v in values.items())]
            m.d.sync += [self.taps[a].eq(Mux(pool, vec.pool_taps(self.stage, a), 1)) for a in "yx"]
            m.d.sync += self.split.eq(Mux(pool, stage.pool.split, 0))
            m.d.sync += [self.pad_end[a].eq(getattr(src, f"{a}_n") + stage.pool.padding) for a in "yx"]
            for k, reg in self.dda.items():
                m.d.sync += reg.eq(Mux(argmax, getattr(stage.resize_argmax, k), getattr(stage.resize, k)))
        #: channels a row runs: the source's, or a pooling's chunk of them
        self.chunk = vec.split_chunk(self.src.c, self.split)
        #: the check's verdict, valid in ``CHECK``
        self.code = self._checks()

    def _checks(self) -> Value:
        """``ErrorCode.NONE`` or why the pass is refused (``hw.vector.spatial_refusals``): the
        functional model's ``DATA`` first.  The later stages' own refusals are
        ``hw.vector.pass_refusals``', which the executor has evaluated before starting the unit.
        Evaluated on the latched descriptor ``d`` (its operands picked by the stages' fields), which
        holds from ``SELECT`` on: the rule's products are registered there (its ``hold``), its
        comparisons read them in ``CHECK``, so no path holds a product and the comparisons after it."""
        m, d, code = self.m, self.d, Signal(ErrorCode, name="spatial_check")
        hold, _ = level_held(m, "spatial_check_term")
        head = d.stages[0].copy
        src, out = (Fields(element_at(d.operands, k[:3])) for k in (head.src, head.out))
        chain = [(st, Fields(element_at(d.operands, d.stages[i].copy.src2[:3])), Fields(element_at(d.operands, d.stages[i].copy.out[:3])))
                 for i, st in enumerate(self.stages[1:], start=1)]
        data_error, unsupported = vec.spatial_refusals(self.head, self.stage, src, out, chain, hold)
        with m.If(Cat(*data_error.values()).any()):
            m.d.comb += code.eq(ErrorCode.DATA)
        with m.Elif(Cat(*unsupported.values()).any()):
            m.d.comb += code.eq(ErrorCode.UNSUPPORTED)
        return code


class _Lane:
    """Row lane ``l``: the pixel it runs (``cur``) and the one walked for the next group
    (``nxt``); its reads, its kernel and its write."""

    def __init__(self, m: Module, l: int, pas: _Pass, pixel):
        self.m, self.l, self.pas, self.pixel = m, l, pas, pixel
        # loaded before they are read (``begin``, ``take``): no reset
        self.cur, self.nxt = Signal(PIXEL, name=f"lane{l}_pixel", reset_less=True), \
            Signal(PIXEL, name=f"lane{l}_next", reset_less=True)
        reads, writes = CORNERS + CHAIN_SLOTS, 1 + CHAIN_SLOTS
        self.rd_en = [Signal(name=f"lane{l}_rd_en{k}") for k in range(reads)]
        self.rd_addr = [Signal(ADDR_BITS, name=f"lane{l}_rd_addr{k}") for k in range(reads)]
        # the spatial stage's write, then each chain stage's
        self.wr_en = [Signal(name=f"lane{l}_wr_en{i}") for i in range(writes)]
        self.wr_addr = [Signal(ADDR_BITS, name=f"lane{l}_wr_addr{i}") for i in range(writes)]
        self.wr_data = [Signal(8, name=f"lane{l}_wr_data{i}") for i in range(writes)]

    def take(self, take, begin) -> None:
        """The walker's pixel into ``nxt`` when handed (``take``); at a group's ``begin``, ``cur``
        from ``nxt`` (or straight from the walker when handed in that cycle)."""
        m, pixel = self.m, self.pixel
        with m.If(take):
            m.d.sync += self.nxt.eq(pixel)
        with m.If(begin):
            m.d.sync += self.cur.eq(Mux(take, pixel.as_value(), self.nxt.as_value()))

    def take_reciprocal(self, take, begin, recip) -> None:
        """The walker's reciprocal of its pixel's window count (``recip``, ``_RECIP_LAG`` cycles
        behind the pixel: the count's register and ``recip_kernel``), taken as :meth:`take` takes the pixel, with ``take`` and ``begin``
        as late: ``self.recip`` is ``cur``'s that many cycles ago."""
        m, value = self.m, Cat(recip.r, recip.k)
        nxt = Signal.like(value, name=f"lane{self.l}_recip_next", reset_less=True)
        self.recip = Signal.like(value, name=f"lane{self.l}_recip", reset_less=True)
        self.recip_r, self.recip_k = self.recip[:len(recip.r)], self.recip[len(recip.r):]
        with m.If(take):
            m.d.sync += nxt.eq(value)
        with m.If(begin):
            m.d.sync += self.recip.eq(Mux(take, value, nxt))

    def run(self, seq: "_Sequencer") -> None:
        """Issue channel ``j`` of the pixel: four reads (a resize), or the window tap ``seq.ty,
        seq.tx`` (a pooling); a read later the kernel; its result written (or folded into the
        argmax) ``kernel_latency`` cycles after that."""
        m, l, cur, pas = self.m, self.l, self.cur, self.pas
        # computed once for the lane's reads, writes and chain (Amaranth emits an expression
        # again wherever it is used)
        self.issue, self.chan, self.chan_in_src = Signal(name=f"lane{l}_issue"), \
            Signal.like(cur.chan0 + seq.j, name=f"lane{l}_chan"), Signal(name=f"lane{l}_chan_in_src")
        issue, tap_ok = self.issue, Signal(name=f"lane{l}_tap_in")
        m.d.comb += [issue.eq(seq.issue & cur.valid), self.chan.eq(cur.chan0 + seq.j),
                     self.chan_in_src.eq(self.chan < pas.src.c),
                     tap_ok.eq((seq.ty < cur.taps_y) & (seq.tx < cur.taps_x))]
        # a pixel's last row of channels may run past the source's c (2**split rows of a chunk):
        # read none of them, as the functional model (and pass_extents) reads none
        m.d.comb += self.rd_en[0].eq(issue & tap_ok & (~pas.window | self.chan_in_src))
        m.d.comb += [en.eq(issue & ~pas.window) for en in self.rd_en[1:CORNERS]]
        m.d.comb += self.rd_addr[0].eq(cur.src[0] + seq.tap_offset + self.chan)
        m.d.comb += [self.rd_addr[k].eq(cur.src[k] + seq.base_j) for k in range(1, CORNERS)]
        kernel = KernelUnit(ops.resize_element_kernel, _ELEMENT_INPUTS, outputs=("y", "s"), name=f"lane{l}_resize")
        m.submodules[f"lane{l}_resize"] = kernel
        data_ = seq.rd_data.word_select(l, 8 * LANE_READS)
        r = DRAM_READ_LATENCY
        m.d.comb += [kernel.a00.eq(data_[0:8].as_signed()), kernel.a01.eq(data_[8:16].as_signed()),
                     kernel.a10.eq(data_[16:24].as_signed()), kernel.a11.eq(data_[24:32].as_signed()),
                     kernel.wy.eq(delayed(m, cur.wy, r, f"lane{l}_wy", reset_less=True)),
                     kernel.wx.eq(delayed(m, cur.wx, r, f"lane{l}_wx", reset_less=True))]
        best = Signal(range_shape(*ELEMENT_PLAN.range("s")), name=f"lane{l}_best")
        best_i = Signal.like(seq.j, name=f"lane{l}_best_i")
        fold = ops.argmax_kernel(best, best_i, kernel.s, seq.out_j, COMBINATIONAL)
        new_best, new_i = Mux(seq.out_first, kernel.s, fold[0]), Mux(seq.out_first, 0, fold[1])
        with m.If(seq.out_valid):
            m.d.sync += [best.eq(new_best), best_i.eq(new_i)]
        pool_y = self._pool(seq, tap_ok, data_[0:8].as_signed())
        # the spatial stage's write (a pooling's with its window's last tap, a resize's for channels
        # of the written operand, the class map's with the last channel), carried to the result
        wants = Mux(pas.window, seq.tap_last & (self.chan < pas.out.c) & self.chan_in_src, seq.resize_wants)
        en, addr = self._after(issue & cur.out_ok & wants, r, f"lane{l}_write"), \
            self._after(Mux(pas.argmax, cur.out, cur.out + self.chan)[:ADDR_BITS], r, f"lane{l}_write_addr",
                        data=True)
        m.d.comb += [self.wr_en[0].eq(en), self.wr_addr[0].eq(addr),
                     self.wr_data[0].eq(Mux(pas.window, pool_y, Mux(pas.argmax, new_i[:8], kernel.y[:8])))]
        self._chain(seq, Mux(pas.window, pool_y, kernel.y[:8]).as_signed(), data_)

    def _after(self, value, cycles: int, name: str, *, data: bool = False):
        """``value`` delayed by the spatial stage's kernel (:func:`kernel_latency`: the window path's
        or the interpolation's, as the pass is) and ``cycles`` more: one delay line, tapped at both
        (:meth:`_line`); ``data`` (qualified by a valid) needs no reset and no clearing."""
        return self._tap(self._line(value, _KERNEL_MAX + cycles, name, data=data), cycles)

    def _line(self, value, cycles: int, name: str, *, data: bool = False) -> list:
        """A delay line tapped at both kernels' latencies.  A pass drains at its own tap, so what a
        bilinear pass leaves behind it would leave the window tap in the next pass: a valid line is
        emptied when a pass is latched (``select``)."""
        if data:
            return delay_line(self.m, value, cycles, name, reset_less=True)
        return delay_line(self.m, value, cycles, name, clear=self.pas.select)

    def _tap(self, line: list, cycles: int):
        """The tap of delay line ``line`` (:func:`delay_line`) ``cycles`` after the spatial stage's kernel."""
        return Mux(self.pas.window, line[AVERAGE_PLAN.latency + cycles], line[ELEMENT_PLAN.latency + cycles])

    def _chain(self, seq: "_Sequencer", y, data_) -> None:
        """The stages after the spatial one on its result ``y`` (``hw.vector.SPATIAL_CHAIN_OPS``), a
        channel's element at a time: an ``ElementwiseLane`` each, its second operand read with the
        element's last tap (on read lane ``CORNERS + i``) and held to the stage's input, its result
        written on write lane ``1 + i``."""
        m, l, cur, pas, r = self.m, self.l, self.cur, self.pas, DRAM_READ_LATENCY
        lat, chan = chain_stage_latency(), self.chan
        element = Signal(name=f"lane{l}_element")
        m.d.comb += element.eq(self.issue & seq.tap_last & self.chan_in_src)
        for i, (second, written) in enumerate(pas.chain):
            name = f"lane{l}_chain{i + 1}"
            slot = ElementwiseLane(ops=vec.SPATIAL_CHAIN_OPS)
            m.submodules[name] = slot
            read = element & pas.chain_reads[i] & cur.second_ok[i] & (chan < second.c)
            m.d.comb += [self.rd_en[CORNERS + i].eq(read), self.rd_addr[CORNERS + i].eq(cur.second[i] + chan)]
            b = Mux(delayed(m, read, r, f"{name}_read"), data_[8 * (CORNERS + i):][:8], 0)
            # no valid: the slot's y_valid is not read (each write carries its own enable)
            b = self._after(b, i * lat, f"{name}_b", data=True).as_signed()
            drive_params(m, slot, pas.chain_params[i], y, b, 0)
            cycles = r + (i + 1) * lat
            en = element & pas.chain_writes[i] & cur.written_ok[i] & (chan < written.c)
            addr = (cur.written[i] + chan)[:ADDR_BITS]
            m.d.comb += [self.wr_en[1 + i].eq(self._after(en, cycles, f"{name}_write")),
                         self.wr_addr[1 + i].eq(self._after(addr, cycles, f"{name}_write_addr", data=True)),
                         self.wr_data[1 + i].eq(slot.y)]
            y = slot.y

    def _pool(self, seq: "_Sequencer", tap_ok, v):
        """The pooling's fold over a channel's window taps as they arrive (``max_kernel`` from -128,
        or the sum), then ``average_kernel`` by the window's count; a maximum is delayed as long.
        Returns the result (its write is ``run``'s)."""
        m, l, cur, pas = self.m, self.l, self.cur, self.pas
        r, lat = DRAM_READ_LATENCY, AVERAGE_PLAN.latency
        ok, first = delayed(m, tap_ok, r, f"lane{l}_tap_ok"), seq.arrive_first
        acc = Signal(range_shape(*_AVERAGE_INPUTS["total"]), name=f"lane{l}_pool_acc")
        fold_max = ops.max_kernel(Mux(first, INT8_MIN, acc), v, ok, COMBINATIONAL)
        fold_sum = Mux(first, 0, acc) + Mux(ok, v, 0)
        folded = Signal.like(Mux(pas.pool_max, fold_max, fold_sum), name=f"lane{l}_pool_folded")
        m.d.comb += folded.eq(Mux(pas.pool_max, fold_max, fold_sum))
        with m.If(seq.arrive_valid):
            m.d.sync += acc.eq(folded)
        # average_kernel, its reciprocal the walker's: the sum waits for it (take_reciprocal)
        average = KernelUnit(ops.average_by_reciprocal_kernel, _BY_RECIP_INPUTS, name=f"lane{l}_average")
        m.submodules[f"lane{l}_average"] = average
        wait = _RECIP_WAIT
        m.d.comb += [average.total.eq(delayed(m, folded, wait, f"lane{l}_total", reset_less=True)),
                     average.count.eq(delayed(m, cur.count, r + wait, f"lane{l}_count", reset_less=True)),
                     average.r.eq(self.recip_r), average.k.eq(self.recip_k), average.in_valid.eq(1)]
        maximum = delayed(m, folded[:8], lat, f"lane{l}_max", reset_less=True)
        return Mux(pas.pool_max, maximum, delayed(m, average.y[:8], _AVERAGE_PAD, f"lane{l}_mean", reset_less=True))


class _Sequencer:
    """The FSM: latch the operands, check them, walk the first group, then run groups (each lane's
    pixel over the source's channels, ``j``) while walking the next; ``issue`` says the lanes
    issue channel ``j`` this cycle."""

    def __init__(self, m: Module, pas: _Pass, walker, lanes: list, unit: SpatialUnit):
        self.m, self.pas, self.walker, self.unit, n = m, pas, walker, unit, len(lanes)
        k = walker.walk_rows
        self.walk_cycles = n // k
        self.rd_data = unit._rd_data
        c = pas.src.c
        self.j = Signal.like(c, name="spatial_j")
        #: the source's base plus ``j``, counted beside it: the corners' reads add it to the
        #: walker's offsets (one add, as ``j`` was)
        self.base_j = Signal(ADDR_BITS, name="spatial_base_j")
        self.wk = Signal(range(max(self.walk_cycles, 2)), name="spatial_wk")
        self.running, self.walking, self.issue = Signal(), Signal(), Signal()
        self.first_valid = Signal()
        self.drain = Signal(range(DRAM_READ_LATENCY + max(ELEMENT_PLAN.latency, AVERAGE_PLAN.latency)
                                  + CHAIN_SLOTS * chain_stage_latency() + 2))
        self._taps()
        # what every lane uses, computed once (Amaranth emits an expression again wherever it is used)
        self.last, self.out_first, self.resize_wants = \
            Signal(name="spatial_last"), Signal(name="spatial_out_first"), Signal(name="spatial_resize_wants")
        m.d.comb += self.last.eq((self.j + 1 == pas.chunk) & self.tap_last)
        # a resize writes the channels of the written operand; the class map its index with the last
        m.d.comb += self.resize_wants.eq(Mux(pas.argmax, self.last, self.j < pas.out.c))
        self.arrive_valid = delayed(m, self.issue, DRAM_READ_LATENCY, "spatial_arrive_valid")
        self.arrive_first = delayed(m, self.tap_first, DRAM_READ_LATENCY, "spatial_arrive_first")
        # the element's position as it leaves the kernel
        lat = DRAM_READ_LATENCY + ELEMENT_PLAN.latency
        self.out_valid = delayed(m, self.issue, lat, "spatial_out_valid")
        self.out_j = delayed(m, self.j, lat, "spatial_out_j")
        m.d.comb += self.out_first.eq(self.out_j == 0)
        walk_en = Signal()
        run_ends = ~self.running | (self.issue & self.last)
        walk_ends = ~walk_en | (self.wk == self.walk_cycles - 1)
        begin = Signal()
        lag = _RECIP_LAG                # the walker's reciprocal lags its pixel by its count's register and pipeline
        recip_take, recip_wk, recip_begin = (delayed(m, v, lag, f"recip_{n}")
                                             for n, v in (("take", walk_en), ("wk", self.wk), ("begin", begin)))
        for l, lane in enumerate(lanes):
            lane.take(walk_en & (self.wk == l // k), begin)
            lane.take_reciprocal(recip_take & (recip_wk == l // k), recip_begin, walker.recips[l % k])
        m.d.comb += walker.step.eq(walk_en)
        self._fsm(walk_en, begin, run_ends, walk_ends, self.walk_cycles)

    def _taps(self) -> None:
        """A pooling's window taps for each channel (``ty``, ``tx`` below the pass's ``taps``; one tap
        for a resize) and their offset from the window's first element plus the source's base (the
        walker's pixels are offsets from it), ``base + ty·s_y + tx·s_x`` by adds; ``tap_first`` and
        ``tap_last`` bound a channel."""
        m, pas, s = self.m, self.pas, self.pas.src
        self.ty, self.tx = Signal(TAPS_BITS, name="spatial_ty"), Signal(TAPS_BITS, name="spatial_tx")
        row_off, col_off = Signal(ADDR_BITS, name="tap_row_off"), Signal(signed(ADDR_BITS), name="tap_col_off")
        self.tap_offset = Signal(signed(ADDR_BITS + 2), name="tap_offset")
        self.tap_first, self.tap_last = Signal(name="spatial_tap_first"), Signal(name="spatial_tap_last")
        end_x = self.tx + 1 == pas.taps["x"]
        m.d.comb += [self.tap_offset.eq(row_off + col_off), self.tap_first.eq((self.ty == 0) & (self.tx == 0)),
                     self.tap_last.eq(end_x & (self.ty + 1 == pas.taps["y"]))]
        self.tap_restart = Signal()
        with m.If(self.tap_restart):
            m.d.sync += [self.ty.eq(0), self.tx.eq(0), row_off.eq(s.base), col_off.eq(0)]
        with m.Elif(self.issue & ~end_x):
            m.d.sync += [self.tx.eq(self.tx + 1), col_off.eq(col_off + s.x_s_lo)]
        with m.Elif(self.issue & ~self.tap_last):
            m.d.sync += [self.tx.eq(0), col_off.eq(0), self.ty.eq(self.ty + 1), row_off.eq(row_off + s.y_s_lo)]
        with m.Elif(self.issue):
            m.d.sync += [self.ty.eq(0), self.tx.eq(0), row_off.eq(s.base), col_off.eq(0)]

    def _fsm(self, walk_en, begin, run_ends, walk_ends, n: int) -> None:
        m, u, pas, walker = self.m, self.unit, self.pas, self.walker
        with m.FSM(name="spatial"):
            with m.State("IDLE"):
                with m.If(u.start):
                    m.next = "SELECT"
            with m.State("SELECT"):
                m.d.comb += [u.busy.eq(1), pas.select.eq(1)]
                m.next = "CHECK"
            with m.State("CHECK"):
                code = pas.code
                # the walker loads whatever the check says (a refused pass walks nothing), so that
                # its counters do not wait for the check's verdict
                m.d.comb += [u.busy.eq(1), walker.load.eq(1)]
                m.d.sync += u.error_code.eq(code)
                with m.If(code != ErrorCode.NONE):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += [self.running.eq(0), self.wk.eq(0)]
                    m.next = "WALK" if walker.walk_rows == 1 else "PRIME"
            if walker.walk_rows > 1:
                # the walker's setup (hw.timing.VEC_WALK_SETUP): each walker to its first pixel
                with m.State("PRIME"):
                    m.d.comb += [u.busy.eq(1), walker.prime.eq(1)]
                    m.next = "SETTLE"
                with m.State("SETTLE"):
                    m.d.comb += [u.busy.eq(1), walker.settle.eq(1)]
                    m.next = "WALK"
            with m.State("WALK"):
                m.d.comb += [u.busy.eq(1), walk_en.eq(1), begin.eq(walk_ends)]
                self._walk(walk_en, n)
                with m.If(begin):
                    self._begin(walk_en)
            with m.State("RUN"):
                m.d.comb += [u.busy.eq(1), walk_en.eq(self.walking), begin.eq(run_ends & walk_ends),
                             self.issue.eq(self.running)]
                with m.If(self.running & self.tap_last):
                    m.d.sync += [self.j.eq(self.j + 1), self.base_j.eq(self.base_j + 1)]
                    with m.If(self.last):
                        m.d.sync += self.running.eq(0)
                with m.If(walk_en):
                    self._walk(walk_en, n)
                with m.If(begin):
                    self._begin(walk_en)
            finish_states(m, u, self.drain)

    def _walk(self, walk_en, n: int) -> None:
        """The lanes of walk cycle ``wk`` take the walker's pixels (``_Lane.take``); the walker steps."""
        m = self.m
        with m.If(self.wk == 0):
            m.d.sync += self.first_valid.eq(self.walker.pixels[0].valid)
        m.d.sync += self.wk.eq(self.wk + 1)
        with m.If(self.wk == n - 1):
            m.d.sync += [self.wk.eq(0), self.walking.eq(0)]

    def _begin(self, walk_en) -> None:
        """Start the lanes on their walked pixels, or drain when there are none."""
        m = self.m
        m.d.comb += self.tap_restart.eq(1)
        with m.If(Mux(walk_en & (self.wk == 0), self.walker.pixels[0].valid, self.first_valid)):
            m.d.sync += [self.running.eq(1), self.walking.eq(1), self.wk.eq(0), self.j.eq(0),
                         self.base_j.eq(self.pas.src.base)]
            m.next = "RUN"
        with m.Else():
            latency = Mux(self.pas.window, AVERAGE_PLAN.latency, ELEMENT_PLAN.latency)
            chain = self.pas.chain_length * chain_stage_latency()
            m.d.sync += [self.running.eq(0), self.walking.eq(0),
                         self.drain.eq(DRAM_READ_LATENCY + latency + chain - 1)]
            m.next = "DRAIN"
