"""The vector unit: executes a VEC descriptor from DRAM to DRAM on ``lanes`` row lanes (``VectorUnit``).

A pass (``hw/vector.py``) is a chain of up to ``MAX_STAGES`` stages over ``h x w x c`` elements,
run as *rows* (``hw.vector.row_schedule``): a softmax row, or a pixel's ``c`` channels.  Each of
the unit's ``lanes`` row lanes runs one row; the lanes run a *group* of ``lanes`` consecutive rows
in step, one element of each a cycle, channels in order:

    walker -> row lane l: issue -> DRAM read (its operands) -> slot 0 -> ... -> slot 3 -> DRAM writes

* The *walker* steps the operands' axis counters one row a cycle and hands each lane the next
  group's row: every operand's pixel address and whether the pixel is padding, and the row's
  first channel.  It walks the next group while the lanes run the current one, so a group takes
  ``max(row_cycles, lanes)`` cycles; the first group waits for its walk.  Lanes past the last row
  idle.  No division anywhere: the address of an element is its row's pixel address plus its
  channel (or, for an operand whose channels repeat, a counter of the channel modulo its ``c``).
* Every slot takes ``slot_latency`` cycles whatever its operation, so where each element is at
  each cycle is fixed: each stage's operands are read when the element issues and delayed to
  their slot, and each stage's result is written ``slot_latency`` cycles after the element enters
  its slot.  A slot is an :class:`ElementwiseLane` (COPY, ADD, MUL, LUT); one slot of the chain
  may instead use the lane's row unit (:class:`SoftmaxUnit`, :class:`LayerNormUnit`).
* A row unit streams each row once per element operation of the contract (``hw.vector.COST``: 3
  for softmax, 2 for layernorm), so the lanes issue each row that many times, recomputing the
  stages before the row stage from DRAM each time (no row buffer), and pause ``ROW_GAP`` cycles
  before the last pass, as the row unit does.  Results are written in the last pass only.
* A layernorm's per-channel entry is read once per cycle for all lanes (their rows are pixels of
  the same channels, in step).  LUT tables are loaded once, into every lane's slot.

A stage's result is zero at pixels where its input operand is padding, and writes skip the
elements where the written operand is padding: ``sim.vector_unit``'s rules.  The cycles are
those of ``hw.timing.vec_row_cycles`` plus a fixed setup and fill (``VectorUnit.cycles``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, ErrorCode, VecOp
from ..timing import vec_row_cycles
from .buses import DRAM_READ_LATENCY, DramReadSignature, DramWriteSignature
from .axis_counter import AxisCounter
from .elementwise_lane import ElementwiseLane
from .kernel_unit import delayed
from .layernorm_unit import LayerNormUnit
from .softmax_unit import SoftmaxUnit
from .vector_descriptor import DESCRIPTOR, LN_ENTRY

__all__ = ["VectorUnit", "SUPPORTED_OPS", "ROW_OPS", "read_lanes", "write_lanes", "LUT_ENTRIES"]

#: Stage operations the unit executes; any other is refused (``ErrorCode.UNSUPPORTED``).
SUPPORTED_OPS = (VecOp.COPY, VecOp.ADD, VecOp.MUL, VecOp.LUT, VecOp.SOFTMAX, VecOp.LAYERNORM)
ROW_OPS = vec.ROW_OPS
#: Parameter ranges each stage's parameters are checked against (``ErrorCode.DATA``), as the
#: operators of ``hw/operators.py`` check them.
PARAM_RANGES = {VecOp.ADD: ops.AddParams.RANGES, VecOp.MUL: ops.MulParams.RANGES,
                VecOp.SOFTMAX: ops.SoftmaxParams.RANGES, VecOp.LAYERNORM: ops.LayerNormParams.RANGES}
_S = vec.MAX_STAGES
_K = vec.MAX_OPERANDS
#: Entries of a LUT stage's table: one per int8 value.
LUT_ENTRIES = ops.INT8_MAX - ops.INT8_MIN + 1
#: Read lanes of each row lane: each stage's ``src`` and ``src2`` (``2 i``, ``2 i + 1``).
LANE_READS = 2 * _S


def read_lanes(lanes: int) -> int:
    """Read lanes of a unit of ``lanes`` row lanes: row lane ``l``'s ``LANE_READS`` from
    ``l * LANE_READS``, then the layernorm entry's bytes, shared by all."""
    return LANE_READS * lanes + vec.LN_ENTRY_BYTES


def write_lanes(lanes: int) -> int:
    """Write lanes of a unit of ``lanes`` row lanes: row lane ``l``'s stage ``i`` on ``l * MAX_STAGES + i``."""
    return _S * lanes


#: A row lane's element in the pipeline.
_BEAT = data.StructLayout({
    "valid": 1,
    "ok": data.ArrayLayout(1, _S),            # the stage's input pixel is not padding
    "wr": data.ArrayLayout(1, _S),            # the stage writes this element
    "wr_addr": data.ArrayLayout(ADDR_BITS, _S),
    "rd_ok": data.ArrayLayout(1, LANE_READS),  # the read lane's element is not padding
})
#: What all lanes share each cycle: the element is of the last pass, ends its row.
_STEP = data.StructLayout({"final": 1, "last": 1})
#: A row as the walker hands it to a lane: each operand's pixel address and validity, its first channel.
_ROW = data.StructLayout({
    "valid": 1, "ch0": 16,
    "pix": data.ArrayLayout(ADDR_BITS, _K), "pix_ok": data.ArrayLayout(1, _K),
})


class VectorUnit(wiring.Component):
    """Executes one VEC descriptor (``hw/vector.py``) over the DRAM ports, on ``lanes`` row lanes.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator it belongs to.
    lanes : int
        Row lanes (``config.vector_lanes`` by default, what the timing contract counts).
    max_row : int
        Longest softmax or layernorm row (sizes the row units), 1..``hw.operators.MAX_ROW``.

    Members
    -------
    start: In(1)
        Latch ``desc`` and run it.
    desc: In(vector_descriptor.DESCRIPTOR)
        The decoded descriptor, every operand and stage in its slot (``descriptor_slots``).
    busy, done: Out(1)
        ``done`` is high for one cycle when the last result is written (or the descriptor refused).
    error, error_code: Out(1), Out(ErrorCode)
        With ``done``: the descriptor has parameters its operator refuses (``DATA``, as
        ``sim.vector_unit``), or names an operation the unit does not build, two row stages, a row
        longer than ``max_row`` or an operand whose repeating channels do not restart with each
        row (``UNSUPPORTED``); nothing is written.
    overrun: Out(1)
        A row unit was sent an element it was not ready for (never, when the lanes' pauses match
        the row units'); sticky until the next ``start``.
    dram_rd: Out(DramReadSignature(read_lanes(lanes))), dram_wr: Out(DramWriteSignature(write_lanes(lanes)))
        Gather/scatter ports with an address per lane, reads answered ``DRAM_READ_LATENCY`` cycles later.
    """

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, max_row: int = ops.MAX_ROW):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        lanes = config.vector_lanes if lanes is None else lanes
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._config, self._n = config, lanes
        self._slots = [[ElementwiseLane() for _ in range(_S)] for _ in range(lanes)]
        self._softmax = [SoftmaxUnit(max_row) for _ in range(lanes)]
        self._layernorm = [LayerNormUnit(max_row) for _ in range(lanes)]
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode), "overrun": Out(1),
            "dram_rd": Out(DramReadSignature(read_lanes(lanes))), "dram_wr": Out(DramWriteSignature(write_lanes(lanes))),
        })

    @property
    def lanes(self) -> int:
        return self._n

    @property
    def slot_latency(self) -> int:
        """Cycles an element spends in each stage slot: the slowest of the lane and the row units."""
        return max(self._slots[0][0].latency, self._softmax[0].out_latency, self._layernorm[0].out_latency)

    @property
    def max_row(self) -> int:
        return self._softmax[0].max_row

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for descriptor ``d`` the unit runs: one to check it,
        ``LUT_ENTRIES`` to load the LUT stages' tables (all at once), the rows
        (``hw.timing.vec_row_cycles``), then the last element's way through the read and its stages."""
        rows, row, passes, gap = vec.row_schedule(d)
        tables = LUT_ENTRIES if any(st.op == VecOp.LUT for st in d.stages) else 0
        lane_cycles = vec_row_cycles({"rows": rows, "row_cycles": passes * row + gap}, self._n)
        return 1 + tables + lane_cycles + DRAM_READ_LATENCY + len(d.stages) * self.slot_latency

    def gap_cycles(self, op: VecOp) -> int:
        """Cycles the row unit of ``op`` needs between its row's last passes."""
        return {VecOp.SOFTMAX: self._softmax[0], VecOp.LAYERNORM: self._layernorm[0]}[op].gap_cycles

    def elaborate(self, platform):
        m = Module()
        for l in range(self._n):
            for i, lane in enumerate(self._slots[l]):
                m.submodules[f"l{l}_slot{i}"] = lane
            m.submodules[f"l{l}_softmax"], m.submodules[f"l{l}_layernorm"] = self._softmax[l], self._layernorm[l]
        d = Signal(DESCRIPTOR)
        with m.If(self.start & ~self.busy):
            m.d.sync += d.eq(self.desc)
        plan = _Plan(m, d, self)
        seq = _Sequencer(m, d, plan, self)
        steps, ln_taps = self._shared_pipeline(m, seq)
        overruns = []
        for l in range(self._n):
            beats, taps = self._lane_pipeline(m, seq.beats[l], l)
            overruns.append(self._lane_slots(m, d, plan, l, beats, taps, steps, ln_taps))
        with m.If(self.start & ~self.busy):
            m.d.sync += self.overrun.eq(0)
        with m.Elif(_any(overruns)):
            m.d.sync += self.overrun.eq(1)
        self._load_tables(m, plan, seq)
        return m

    @property
    def _depth(self) -> int:
        return DRAM_READ_LATENCY + _S * self.slot_latency

    def _load_tables(self, m: Module, plan: "_Plan", seq: "_Sequencer") -> None:
        """Each LUT stage's table: the byte read on row lane 0's ``src`` lane of the stage is
        written, into every lane's slot, at the entry read ``DRAM_READ_LATENCY`` cycles earlier
        (entry k holds x = k - 128)."""
        r = DRAM_READ_LATENCY
        entry = delayed(m, seq.entry, r, "table_entry")
        loading = delayed(m, seq.loading, r, "table_loading")
        for slots in self._slots:
            for i, lane in enumerate(slots):
                m.d.comb += [lane.table_w.en.eq(loading & plan.lut_at[i]), lane.table_w.addr.eq(entry),
                             lane.table_w.data.eq(self.dram_rd.data[2 * i])]

    def _shared_pipeline(self, m: Module, seq: "_Sequencer") -> tuple[list, dict]:
        """The shared step delayed 0 .. depth cycles, and the layernorm entry's bytes from R on."""
        r = DRAM_READ_LATENCY
        steps = [seq.step]
        for t in range(self._depth):
            reg = Signal(_STEP, name=f"step_{t + 1}")
            m.d.sync += reg.eq(steps[-1])
            steps.append(reg)
        first = Signal(data.ArrayLayout(8, vec.LN_ENTRY_BYTES), name=f"entry_{r}")
        m.d.comb += first.eq(Cat(*(self.dram_rd.data[LANE_READS * self._n + k] for k in range(vec.LN_ENTRY_BYTES))))
        taps = {r: first}
        for t in range(r + 1, self._depth + 1):
            taps[t] = Signal.like(first, name=f"entry_{t}")
            m.d.sync += taps[t].eq(taps[t - 1])
        return steps, taps

    def _lane_pipeline(self, m: Module, beat, l: int) -> tuple[list, dict]:
        """Row lane ``l``'s beat delayed 0 .. depth cycles, and its read bytes (padding zeroed) from R on."""
        r = DRAM_READ_LATENCY
        beats = [beat]
        for t in range(self._depth):
            reg = Signal(_BEAT, name=f"l{l}_beat_{t + 1}")
            m.d.sync += reg.eq(beats[-1])
            beats.append(reg)
        first = Signal(data.ArrayLayout(8, LANE_READS), name=f"l{l}_bytes_{r}")
        for k in range(LANE_READS):
            m.d.comb += first[k].eq(Mux(beats[r].rd_ok[k], self.dram_rd.data[LANE_READS * l + k], 0))
        taps = {r: first}
        for t in range(r + 1, self._depth + 1):
            taps[t] = Signal.like(first, name=f"l{l}_bytes_{t}")
            m.d.sync += taps[t].eq(taps[t - 1])
        return beats, taps

    def _lane_slots(self, m: Module, d, plan: "_Plan", l: int, beats: list, taps: dict, steps: list,
                    ln_taps: dict):
        """Row lane ``l``'s stage slots, its row units between them and its write lanes; returns
        its overrun condition."""
        s, r = self.slot_latency, DRAM_READ_LATENCY
        sm, ln = self._softmax[l], self._layernorm[l]
        row_y = Mux(plan.has[VecOp.SOFTMAX], delayed(m, sm.out.y, s - sm.out_latency, f"l{l}_softmax_y"),
                    delayed(m, ln.out.y, s - ln.out_latency, f"l{l}_layernorm_y"))
        row_in = {"x": [], "valid": [], "last": [], "entry": []}
        y_prev = None
        for i, lane in enumerate(self._slots[l]):
            t_in, stage = r + i * s, d.stages[i]
            x_read = taps[t_in][2 * i].as_signed()
            x_in = x_read if y_prev is None else Mux(stage.copy.src == vec.PREV, y_prev, x_read)
            self._drive_lane(m, lane, stage, x_in, taps[t_in][2 * i + 1].as_signed(), beats[t_in].valid)
            for key, value in (("x", x_in), ("valid", beats[t_in].valid), ("last", steps[t_in].last),
                               ("entry", ln_taps[t_in].as_value())):
                row_in[key].append(value)
            result = Mux(plan.row_at[i], row_y, delayed(m, lane.y, s - lane.latency, f"l{l}_slot{i}_y"))
            out, port = beats[t_in + s], l * _S + i
            y = Signal(8, name=f"l{l}_y{i}")
            m.d.comb += [y.eq(Mux(out.ok[i], result, 0)),
                         self.dram_wr.en[port].eq(out.valid & steps[t_in + s].final & out.wr[i]),
                         self.dram_wr.addr[port].eq(out.wr_addr[i]), self.dram_wr.data[port].eq(y)]
            y_prev = y.as_signed()
        return self._drive_row_units(m, d, plan, l, {k: Array(v)[plan.row_slot] for k, v in row_in.items()})

    @staticmethod
    def _drive_lane(m: Module, lane: ElementwiseLane, stage, a, b, valid) -> None:
        add, mul = stage.add, stage.mul
        m.d.comb += [lane.op.eq(stage.copy.op), lane.a.eq(a), lane.b.eq(b), lane.valid.eq(valid),
                     lane.mult_a.eq(add.mult_a), lane.mult_b.eq(add.mult_b), lane.relu.eq(add.relu),
                     lane.mult.eq(mul.mult), lane.shift.eq(Mux(add.op == VecOp.ADD, add.shift, mul.shift))]

    def _drive_row_units(self, m: Module, d, plan: "_Plan", l: int, row_in: dict):
        sm, ln = self._softmax[l], self._layernorm[l]
        stage = d.stages[plan.row_slot]
        entry = LN_ENTRY(row_in["entry"])
        m.d.comb += [
            sm.x.valid.eq(row_in["valid"] & plan.has[VecOp.SOFTMAX]), sm.x.payload.x.eq(row_in["x"]),
            sm.x.payload.last.eq(row_in["last"]), sm.exp_mult.eq(stage.softmax.exp_mult),
            sm.exp_shift.eq(stage.softmax.exp_shift), sm.out_shift.eq(stage.softmax.out_shift),
            ln.x.valid.eq(row_in["valid"] & plan.has[VecOp.LAYERNORM]), ln.x.payload.x.eq(row_in["x"]),
            ln.x.payload.last.eq(row_in["last"]), ln.x.payload.gamma.eq(entry.gamma),
            ln.x.payload.beta.eq(entry.beta), ln.eps.eq(stage.layernorm.eps), ln.shift.eq(stage.layernorm.shift),
        ]
        return (sm.x.valid & ~sm.x.ready) | (ln.x.valid & ~ln.x.ready)


class _Plan:
    """What the latched descriptor implies, combinationally: which stages are live and where the
    row stage is, the rows (length, heads per pixel, passes, pause), and whether the unit can run it."""

    def __init__(self, m: Module, d, unit: VectorUnit):
        head = d.header
        ops_ = [d.stages[i].copy.op for i in range(_S)]
        live = [i < head.n_stages for i in range(_S)]
        self.live = live
        self.row_at = [live[i] & _is_any(ops_[i], ROW_OPS) for i in range(_S)]
        self.has = {op: _any(live[i] & (ops_[i] == op) for i in range(_S)) for op in ROW_OPS}
        self.lut_at = [live[i] & (ops_[i] == VecOp.LUT) for i in range(_S)]
        self.row_slot = Signal(range(_S))
        for i in reversed(range(_S)):
            with m.If(self.row_at[i]):
                m.d.comb += self.row_slot.eq(i)
        softmax = d.stages[self.row_slot].softmax
        self.row_len, self.heads = Signal.like(head.c), Signal.like(softmax.heads)
        self.passes = Signal(range(max(vec.COST.values()) + 1))
        self.gap = Signal(range(max(vec.ROW_GAP.values()) + 1))
        m.d.comb += [self.row_len.eq(head.c), self.heads.eq(1), self.passes.eq(1), self.gap.eq(0)]
        for op in ROW_OPS:
            with m.If(self.has[op]):
                m.d.comb += [self.passes.eq(vec.COST[op]), self.gap.eq(vec.ROW_GAP[op])]
        with m.If(self.has[VecOp.SOFTMAX]):
            m.d.comb += [self.row_len.eq(softmax.row), self.heads.eq(softmax.heads)]
        self.error_code = self._check(m, d, ops_, unit.max_row)

    def _check(self, m: Module, d, ops_: list, max_row: int):
        """``ErrorCode.NONE``, or why the unit refuses the descriptor."""
        head = d.header
        code = Signal(ErrorCode)
        unsupported = _any(self.live[i] & ~_is_any(ops_[i], SUPPORTED_OPS) for i in range(_S))
        two_rows = _any(self.row_at[i] & self.row_at[j] for i in range(_S) for j in range(i))
        bad = []
        for i in range(_S):
            for op, ranges in PARAM_RANGES.items():
                view = getattr(d.stages[i], op.name.lower())
                outside = _any(_outside(getattr(view, n), lo, hi) for n, (lo, hi) in ranges.items())
                bad.append(self.live[i] & (ops_[i] == op) & outside)
        row, rows = self.row_len, _any(self.row_at)
        bad.append(rows & ((row == 0) | (row > ops.MAX_ROW)))
        # hw.vector.check_descriptor's rule, by a product: rows of `row` x `heads` are the pixel's c
        bad.append(self.has[VecOp.SOFTMAX] & (row * self.heads != head.c))
        # a repeating operand's channel restarts at 0 with each row (one row per pixel, or rows of its c)
        read = [_any(self.live[i] & ((d.stages[i].copy.src == k) | (d.stages[i].copy.src2 == k)) for i in range(_S))
                for k in range(_K)]
        repeat_across = _any(read[k] & d.operands[k].repeat & (self.heads != 1) & (d.operands[k].c != row)
                             for k in range(_K))
        # what the operators refuse first (the functional model's code), then what is not built
        with m.If(_any(bad)):
            m.d.comb += code.eq(ErrorCode.DATA)
        with m.Elif(unsupported | two_rows | (rows & (row > max_row)) | repeat_across):
            m.d.comb += code.eq(ErrorCode.UNSUPPORTED)
        return code


def _outside(value, lo: int, hi: int):
    """``value`` lies outside ``lo..hi``: only the comparisons its shape does not decide (a bound
    the field's width already implies would be a constant comparison)."""
    shape = Value.cast(value).shape()
    low, high = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else \
        (0, (1 << shape.width) - 1)
    return _any(([value < lo] if lo > low else []) + ([value > hi] if hi < high else []))


def _any(values):
    values = list(values)
    return Cat(*values).any() if values else 0


def _is_any(value, choices) -> object:
    return _any(value == c for c in choices)


class _Sequencer:
    """The FSM, the walker, the lanes' rows and the shared counters within a row; ``beats[l]`` is
    row lane ``l``'s element issued this cycle, ``step`` what the lanes share about it."""

    def __init__(self, m: Module, d, plan: _Plan, unit: VectorUnit):
        self.m, self.d, self.plan, self.unit, n = m, d, plan, unit, unit.lanes
        head = d.header
        self.j, self.p = Signal.like(plan.row_len), Signal.like(plan.passes)
        self.gap_left = Signal.like(plan.gap)
        self.running, self.walking = Signal(), Signal()
        self.wk = Signal(range(max(n, 2)))
        self.hd, self.ch0 = Signal.like(plan.heads), Signal.like(head.c)
        self.px, self.py = Signal.like(head.w), Signal.like(head.h)
        self.walked = Signal()                    # the walker is past the last row
        self.drain = Signal(range(unit._depth + 1))
        self.load = Signal()
        self.loading, self.entry = Signal(), Signal(range(LUT_ENTRIES))
        self.issue = Signal()
        self.cm = [Signal.like(d.operands[k].c, name=f"operand{k}_cm") for k in range(_K)]
        self.rows = [Signal(_ROW, name=f"l{l}_row") for l in range(n)]
        self.next_rows = [Signal(_ROW, name=f"l{l}_next_row") for l in range(n)]
        self.step = Signal(_STEP)
        self.beats = [Signal(_BEAT, name=f"l{l}_beat") for l in range(n)]
        self.axes = [self._axes(k) for k in range(_K)]
        self.walk_row = self._walk_row()
        self._fsm()
        for l in range(n):
            self._beat(l)
        self._shared_reads()

    def _axes(self, k: int) -> tuple[AxisCounter, AxisCounter]:
        m, op = self.m, self.d.operands[k]
        y, x = AxisCounter(), AxisCounter()
        m.submodules[f"operand{k}_y"], m.submodules[f"operand{k}_x"] = y, x
        for prefix, counter in (("y_", y), ("x_", x)):
            for name, _, _ in vec.AXIS_FIELDS:
                m.d.comb += getattr(counter, name).eq(getattr(op, prefix + name))
            m.d.comb += counter.load.eq(self.load)
        return y, x

    def _walk_row(self):
        """The row the walker is at: each operand's pixel address and validity, its first channel."""
        row = Signal(_ROW, name="walk_row")
        self.m.d.comb += [row.valid.eq(~self.walked), row.ch0.eq(self.ch0)]
        for k, (y, x) in enumerate(self.axes):
            self.m.d.comb += [row.pix[k].eq(self.d.operands[k].base + y.offset + x.offset),
                              row.pix_ok[k].eq(~y.padding & ~x.padding)]
        return row

    def _fsm(self) -> None:
        m, u, plan, n = self.m, self.unit, self.plan, self.unit.lanes
        walk_en = Signal()
        # a group of rows starts once the previous one issued its last element and the walker
        # handed over the next (both may end in this cycle)
        run_ends = ~self.running | (self.issue & (self.j + 1 == plan.row_len) & (self.p + 1 == plan.passes))
        walk_ends = ~walk_en | (self.wk == n - 1)
        begin = Signal()
        with m.FSM(name="vec"):
            with m.State("IDLE"):
                with m.If(u.start):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += u.busy.eq(1)
                m.d.sync += u.error_code.eq(plan.error_code)
                with m.If(plan.error_code != ErrorCode.NONE):
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += self.load.eq(1)
                    m.d.sync += [self.running.eq(0), self.wk.eq(0), self.hd.eq(0), self.ch0.eq(0), self.px.eq(0),
                                 self.py.eq(0), self.walked.eq(0), self.entry.eq(0)]
                    m.next = "WALK"
                    with m.If(_any(plan.lut_at)):
                        m.next = "TABLES"
            with m.State("TABLES"):
                m.d.comb += [u.busy.eq(1), self.loading.eq(1)]
                m.d.sync += self.entry.eq(self.entry + 1)
                with m.If(self.entry == LUT_ENTRIES - 1):
                    m.next = "WALK"
            with m.State("WALK"):
                m.d.comb += [u.busy.eq(1), walk_en.eq(1), begin.eq(walk_ends)]
                self._walk()
                with m.If(begin):
                    self._begin(walk_en)
            with m.State("RUN"):
                m.d.comb += [u.busy.eq(1), walk_en.eq(self.walking), begin.eq(run_ends & walk_ends)]
                self._run()
                with m.If(walk_en):
                    self._walk()
                with m.If(begin):
                    self._begin(walk_en)
            with m.State("DRAIN"):
                m.d.comb += u.busy.eq(1)
                m.d.sync += self.drain.eq(self.drain - 1)
                with m.If(self.drain == 0):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [u.busy.eq(1), u.done.eq(1), u.error.eq(u.error_code != ErrorCode.NONE)]
                m.next = "IDLE"

    def _begin(self, walk_en) -> None:
        """Hand the walked rows to the lanes (the last one straight from the walker if it is
        walked in this cycle) and start them, or drain when there are none."""
        m, n = self.m, self.unit.lanes
        handed = [Mux(walk_en & (self.wk == l), self.walk_row.as_value(), self.next_rows[l].as_value())
                  for l in range(n)]
        m.d.sync += [self.rows[l].eq(handed[l]) for l in range(n)]
        with m.If(_ROW(handed[0]).valid):
            m.d.sync += [self.running.eq(1), self.walking.eq(1), self.wk.eq(0), self.j.eq(0), self.p.eq(0),
                         self.gap_left.eq(0), *(cm.eq(0) for cm in self.cm)]
            m.next = "RUN"
        with m.Else():
            m.d.sync += [self.running.eq(0), self.walking.eq(0),
                         self.drain.eq(DRAM_READ_LATENCY + self.d.header.n_stages * self.unit.slot_latency - 1)]
            m.next = "DRAIN"

    def _walk(self) -> None:
        """Hand the walker's row to lane ``wk`` and step to the next row: the next head of the
        pixel, or the next pixel."""
        m, head, plan, n = self.m, self.d.header, self.plan, self.unit.lanes
        with m.Switch(self.wk):
            for l in range(n):
                with m.Case(l):
                    m.d.sync += self.next_rows[l].eq(self.walk_row)
        m.d.sync += self.wk.eq(self.wk + 1)
        with m.If(self.wk == n - 1):
            m.d.sync += [self.wk.eq(0), self.walking.eq(0)]
        with m.If(~self.walked):
            with m.If(self.hd + 1 != plan.heads):
                m.d.sync += [self.hd.eq(self.hd + 1), self.ch0.eq(self.ch0 + plan.row_len)]
            with m.Else():
                m.d.sync += [self.hd.eq(0), self.ch0.eq(0)]
                self._next_pixel()

    def _next_pixel(self) -> None:
        m, head = self.m, self.d.header
        with m.If(self.px + 1 != head.w):
            m.d.sync += self.px.eq(self.px + 1)
            for y, x in self.axes:
                m.d.comb += x.step.eq(1)
        with m.Elif(self.py + 1 != head.h):
            m.d.sync += [self.px.eq(0), self.py.eq(self.py + 1)]
            for y, x in self.axes:
                m.d.comb += [x.load.eq(1), y.step.eq(1)]
        with m.Else():
            m.d.sync += self.walked.eq(1)

    def _run(self) -> None:
        """The lanes' element within their rows: the next channel, or the next pass (pausing
        before the last), or the end of the group."""
        m, plan = self.m, self.plan
        m.d.comb += self.issue.eq(self.running & (self.gap_left == 0))
        with m.If(self.gap_left != 0):
            m.d.sync += self.gap_left.eq(self.gap_left - 1)
        with m.Elif(self.running):
            with m.If(self.j + 1 != plan.row_len):
                m.d.sync += self.j.eq(self.j + 1)
                for k, cm in enumerate(self.cm):
                    m.d.sync += cm.eq(Mux(cm + 1 == self.d.operands[k].c, 0, cm + 1))
            with m.Elif(self.p + 1 != plan.passes):
                m.d.sync += [self.j.eq(0), self.p.eq(self.p + 1), *(cm.eq(0) for cm in self.cm)]
                with m.If(self.p + 2 == plan.passes):
                    m.d.sync += self.gap_left.eq(plan.gap)
            with m.Else():
                m.d.sync += self.running.eq(0)

    def _beat(self, l: int) -> None:
        """Row lane ``l``'s element issued this cycle: its reads, masks and write addresses."""
        m, d, plan, beat, row = self.m, self.d, self.plan, self.beats[l], self.rows[l]
        rd = self.unit.dram_rd
        ch = Signal.like(self.ch0, name=f"l{l}_ch")
        m.d.comb += ch.eq(row.ch0 + self.j)
        addr = Array(Signal(ADDR_BITS, name=f"l{l}_operand{k}_addr") for k in range(_K))
        elem_ok = []
        for k in range(_K):
            op = d.operands[k]
            m.d.comb += addr[k].eq(row.pix[k] + Mux(op.repeat, self.cm[k], ch))
            elem_ok.append(row.pix_ok[k] & (op.repeat | (ch < op.c)))
        elem_ok = Cat(*elem_ok)
        issue = self.issue & row.valid
        m.d.comb += beat.valid.eq(issue)
        ok_prev = 0
        for i in range(_S):
            st = d.stages[i].copy
            ok = Mux(st.src == vec.PREV, ok_prev, row.pix_ok.as_value().bit_select(st.src, 1))
            m.d.comb += [beat.ok[i].eq(ok),
                         beat.wr[i].eq(plan.live[i] & (st.out != vec.NONE) & elem_ok.bit_select(st.out, 1)),
                         beat.wr_addr[i].eq(addr[st.out])]
            ok_prev = ok
            for lane, ref in ((2 * i, st.src), (2 * i + 1, st.src2)):
                en = issue & plan.live[i] & (ref != vec.PREV) & (ref != vec.NONE) & elem_ok.bit_select(ref, 1)
                port = LANE_READS * l + lane
                m.d.comb += [beat.rd_ok[lane].eq(en), rd.en[port].eq(en), rd.addr[port].eq(addr[ref])]
                # while the tables load, lane 0's src lane of a LUT stage reads its table
                if l == 0 and lane == 2 * i:
                    with m.If(self.loading):
                        m.d.comb += [rd.en[port].eq(plan.lut_at[i]),
                                     rd.addr[port].eq(d.stages[i].lut.table + self.entry)]

    def _shared_reads(self) -> None:
        """What the lanes share: pass and row end, and the layernorm entry of the channel (all
        lanes' rows are whole pixels at the same channel)."""
        m, plan, rd = self.m, self.plan, self.unit.dram_rd
        m.d.comb += [self.step.final.eq(self.p + 1 == plan.passes), self.step.last.eq(self.j + 1 == plan.row_len)]
        table = self.d.stages[plan.row_slot].layernorm.table + self.j * vec.LN_ENTRY_BYTES
        for k in range(vec.LN_ENTRY_BYTES):
            port = LANE_READS * self.unit.lanes + k
            m.d.comb += [rd.en[port].eq(self.issue & plan.has[VecOp.LAYERNORM]), rd.addr[port].eq(table + k)]
