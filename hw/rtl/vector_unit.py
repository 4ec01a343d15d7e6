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
  idle.  With ``walk_rows`` > 1 the walk is ``hw/rtl/vector_walker.py``'s: ``walk_rows`` interleaved
  walkers, each moving that many rows in one step, so a group takes ``max(row_cycles, lanes /
  walk_rows)`` cycles (``hw.timing.vec_row_cycles``).  No division anywhere: the address of an element is its row's pixel address plus its
  channel (or, for an operand whose channels repeat, a counter of the channel modulo its ``c``).
* Every slot takes ``slot_latency`` cycles whatever its operation, so where each element is at
  each cycle is fixed: each stage's operands are read when the element issues and delayed to
  their slot, and each stage's result is written ``slot_latency`` cycles after the element enters
  its slot.  A slot is an :class:`ElementwiseLane` (COPY, ADD, MUL, LUT); the chain's first row
  stage uses the lane's row unit instead (:class:`SoftmaxUnit`, :class:`LayerNormUnit`), a
  second layernorm the lane's second :class:`LayerNormUnit`.
* A row unit streams each row once per element operation of the contract (``hw.vector.COST``: 3
  for softmax, 2 for layernorm), so the lanes issue each row that many times, recomputing the
  stages before the row stage from DRAM each time (no row buffer), and pause ``ROW_GAP`` cycles
  before the last pass, as the row unit does.  Two layernorms run the first one's passes twice;
  the second unit sums in the first's first normalising pass and normalises in its second
  (``4 n + 2 ROW_GAP``: ``hw.vector.row_schedule``).  Results are written in the last pass only.
* A layernorm's per-channel entry is read once per cycle for all lanes (their rows are pixels of
  the same channels, in step), each layernorm unit's.  LUT tables are loaded once, into every
  lane's slot.

A stage's result is zero at pixels where its input operand is padding, and writes skip the
elements where the written operand is padding: ``sim.vector_unit``'s rules.  The cycles are
those of ``hw.timing.vec_row_cycles`` plus a fixed setup and fill (``VectorUnit.cycles``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, ErrorCode, VecOp
from ..timing import vec_row_cycles, vec_walk_rows
from .buses import DRAM_READ_LATENCY, DramReadSignature, DramWriteSignature
from .axis_counter import operand_axes
from .kernel_unit import delay_line, delayed
from .vector_descriptor import DESCRIPTOR, field_slots, stage_fields
from .vector_row_lane import LANE_READS, LUT_ENTRIES, PLAN, ROW, STEP, VectorRowLane, row_lane_timing
from .vector_walker import RowWalker

__all__ = ["VectorUnit", "unit_cycles", "ROW_OPS", "read_lanes", "write_lanes", "LUT_ENTRIES"]

ROW_OPS = vec.ROW_OPS
_S = vec.MAX_STAGES
_K = vec.MAX_OPERANDS
#: Read lanes of the layernorm entries, shared by all row lanes: the first layernorm unit's entry,
#: then the second's.
ENTRY_READS = 2 * vec.LN_ENTRY_BYTES


def read_lanes(lanes: int) -> int:
    """Read lanes of a unit of ``lanes`` row lanes: row lane ``l``'s ``LANE_READS`` from
    ``l * LANE_READS``, then the layernorm units' entries (``ENTRY_READS``), shared by all."""
    return LANE_READS * lanes + ENTRY_READS


def write_lanes(lanes: int) -> int:
    """Write lanes of a unit of ``lanes`` row lanes: row lane ``l``'s stage ``i`` on ``l * MAX_STAGES + i``."""
    return _S * lanes


def unit_cycles(d: vec.Descriptor, lanes: int, max_row: int = ops.MAX_ROW, walk_rows: int | None = None) -> int:
    """Cycles from ``start`` to ``done`` of a unit of ``lanes`` row lanes walking up to ``walk_rows``
    rows a cycle, for descriptor ``d`` it runs: one to check it, ``LUT_ENTRIES`` to load the LUT
    stages' tables (all at once), the rows (``hw.timing.vec_row_cycles``, the walker's setup
    included), then the last element's way through the read and its stages."""
    rows, row, passes, gap = vec.row_schedule(d)
    tables = LUT_ENTRIES if any(st.op == VecOp.LUT for st in d.stages) else 0
    lane_cycles = vec_row_cycles({"rows": rows, "row_cycles": passes * row + gap}, lanes, walk_rows=walk_rows)
    return 1 + tables + lane_cycles + DRAM_READ_LATENCY + len(d.stages) * row_lane_timing(max_row).slot_latency


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
    walk_rows : int | None
        Rows the walker hands out a cycle, at most (``hw.timing.vec_walk_rows``: the most that
        divide ``lanes``; by default the contract's for ``lanes``).  Above
        one, ``hw/rtl/vector_walker.py``'s interleaved walkers.

    Members
    -------
    start: In(1)
        Latch ``desc`` and run it.
    desc: In(vector_descriptor.DESCRIPTOR)
        The decoded descriptor, every operand and stage in its slot (``descriptor_slots``).
    busy, done: Out(1)
        ``done`` is high for one cycle when the last result is written (or the descriptor refused).
    error, error_code: Out(1), Out(ErrorCode)
        With ``done``: the descriptor holds what the unit does not build
        (``hw.vector.row_lane_refusals``) or a row longer than ``max_row`` (``row_too_long``):
        ``UNSUPPORTED``;
        nothing is written.  What the operators refuse (``DATA``, ``hw.vector.pass_refusals``) the
        executor refuses before it starts the unit, as ``sim.vector_unit.execute_vec`` does.
    overrun: Out(1)
        A row unit was sent an element it was not ready for (never, when the lanes' pauses match
        the row units'); sticky until the next ``start``.
    dram_rd: Out(DramReadSignature(read_lanes(lanes))), dram_wr: Out(DramWriteSignature(write_lanes(lanes)))
        Gather/scatter ports with an address per lane, reads answered ``DRAM_READ_LATENCY`` cycles later.
    """

    export_prefix = "vector_unit"
    #: Exported with its axis counters as modules named under it; its row lanes are one module
    #: of their own (``lane_factory``), instantiated ``lanes`` times.
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig, lanes: int | None = None, max_row: int = ops.MAX_ROW,
                      walk_rows: int | None = None) -> dict:
        lanes = config.vector_lanes if lanes is None else lanes
        rows = vec_walk_rows(lanes, walk_rows)
        return {"v": lanes, "r": max_row} | ({"w": rows} if rows > 1 else {})

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, max_row: int = ops.MAX_ROW,
                 walk_rows: int | None = None, lane_factory=VectorRowLane):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        lanes = config.vector_lanes if lanes is None else lanes
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._config, self._n, self._walk_rows = config, lanes, vec_walk_rows(lanes, walk_rows)
        self._timing = row_lane_timing(max_row)
        self._lanes = [lane_factory(config, max_row=max_row) for _ in range(lanes)]
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode), "overrun": Out(1),
            "dram_rd": Out(DramReadSignature(read_lanes(lanes))), "dram_wr": Out(DramWriteSignature(write_lanes(lanes))),
        })

    @property
    def lanes(self) -> int:
        return self._n

    @property
    def walk_rows(self) -> int:
        """Rows the walker hands out a cycle (``hw.timing.vec_walk_rows``)."""
        return self._walk_rows

    @property
    def slot_latency(self) -> int:
        """Cycles an element spends in each stage slot: the slowest of the lane and the row units."""
        return self._timing.slot_latency

    @property
    def max_row(self) -> int:
        return self._timing.max_row

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for descriptor ``d`` the unit runs (``unit_cycles``)."""
        return unit_cycles(d, self._n, self.max_row, self._walk_rows)

    def gap_cycles(self, op: VecOp) -> int:
        """Cycles the row unit of ``op`` needs between its row's last passes."""
        return self._timing.gap_cycles[op]

    def elaborate(self, platform):
        m = Module()
        for l, lane in enumerate(self._lanes):
            m.submodules[f"lane{l}"] = lane
        d = Signal(DESCRIPTOR)
        with m.If(self.start & ~self.busy):
            m.d.sync += d.eq(self.desc)
        plan = _Plan(m, d, self)
        seq = _Sequencer(m, d, plan, self)
        shared = self._shared_lane_inputs(m, d, plan, seq)
        ports = [self._connect_lane(m, l, lane, shared, seq) for l, lane in enumerate(self._lanes)]
        self._table_reads(ports[0], plan, seq)
        self._drive_dram(m, ports, seq)
        with m.If(self.start & ~self.busy):
            m.d.sync += self.overrun.eq(0)
        with m.Elif(_any(lane.overrun for lane in self._lanes)):
            m.d.sync += self.overrun.eq(1)
        return m

    @property
    def _rd_data(self):
        """All read lanes' bytes as one value (row lane ``l``'s from byte ``LANE_READS * l``)."""
        return self.dram_rd.data.as_value()

    @property
    def _depth(self) -> int:
        return self._timing.depth

    def _shared_lane_inputs(self, m: Module, d, plan: "_Plan", seq: "_Sequencer") -> dict:
        """What every lane gets alike: the descriptor and its plan, the element's channel, the
        steps and layernorm entries at each slot's entry and exit, the LUT tables' writes."""
        r, t = DRAM_READ_LATENCY, self._timing
        steps = delay_line(m, seq.step, self._depth, "step")
        first = Signal(data.ArrayLayout(data.ArrayLayout(8, vec.LN_ENTRY_BYTES), 2), name=f"entries_{r}")
        entry_bytes = 8 * LANE_READS * self._n
        m.d.comb += first.eq(self._rd_data[entry_bytes:entry_bytes + 8 * ENTRY_READS])
        entries = delay_line(m, first, t.slot_in(_S - 1) - r, "entries")
        # registered: the lanes decode their row stages' parameters by it (``d.stages[row_slot]``)
        # into their row units' first stages, too deep behind the plan's own decode in one cycle;
        # the lanes first issue an element cycles after the latch (``CHECK``, the walk)
        plan_bits = Signal(PLAN)
        m.d.sync += [plan_bits.live.eq(Cat(*plan.live)), plan_bits.row_at.eq(Cat(*plan.row_at)),
                     plan_bits.row2_at.eq(Cat(*plan.row2_at)), plan_bits.lut_at.eq(Cat(*plan.lut_at)),
                     plan_bits.prev_at.eq(Cat(*(d.stages[i].copy.src == vec.PREV for i in range(_S)))),
                     plan_bits.softmax.eq(plan.has[VecOp.SOFTMAX]), plan_bits.layernorm.eq(plan.has[VecOp.LAYERNORM]),
                     plan_bits.row_slot.eq(plan.row_slot), plan_bits.row2_slot.eq(plan.row2_slot)]
        # each LUT stage's table: the byte read on row lane 0's src lane of the stage, written at
        # the entry read DRAM_READ_LATENCY cycles earlier (entry k holds x = k - 128)
        loading = delayed(m, seq.loading, r, "table_loading")
        values = {
            "d": d, "plan": plan_bits, "flush": self.start & ~self.busy, "issue": seq.issue, "j": seq.j, "cm": Cat(*seq.cm),
            "step_in": Cat(*(steps[t.slot_in(i)] for i in range(_S))),
            "step_out": Cat(*(steps[t.slot_in(i) + t.slot_latency] for i in range(_S))),
            "entry_in": Cat(*(Mux(plan.row2_at[i], entries[t.slot_in(i) - r][1], entries[t.slot_in(i) - r][0])
                              for i in range(_S))),
            "table_en": Cat(*(loading & plan.lut_at[i] for i in range(_S))),
            "table_addr": delayed(m, seq.entry, r, "table_entry"),
            "table_data": Cat(*(self._rd_data.word_select(2 * i, 8) for i in range(_S))),
        }
        # each computed once, not once per lane
        shared = {name: Signal(len(Value.cast(value)), name=f"lanes_{name}") for name, value in values.items()}
        m.d.comb += [shared[name].eq(value) for name, value in values.items()]
        return shared

    def _connect_lane(self, m: Module, l: int, lane, shared: dict, seq: "_Sequencer") -> dict:
        """Row lane ``l``: its row and the shared inputs, its read data; returns its DRAM lanes'
        enables, addresses and write data (``_drive_dram`` joins them)."""
        lp = VectorRowLane.ports(lane)
        m.d.comb += [getattr(lp, name).eq(value) for name, value in shared.items()]
        k = self._walk_rows
        m.d.comb += [lp.walk_row.eq(seq.rows[l % k]), lp.take.eq(seq.walk_en & (seq.wk == l // k)),
                     lp.start_row.eq(seq.begin),
                     lp.rd_data.eq(self._rd_data.word_select(l, 8 * LANE_READS))]
        return {"rd_en": [lp.rd_en[k] for k in range(LANE_READS)], "rd_addr": [lp.rd_addr[k] for k in range(LANE_READS)],
                "wr_en": lp.wr_en.as_value(), "wr_addr": lp.wr_addr.as_value(), "wr_data": lp.wr_data.as_value()}

    @staticmethod
    def _table_reads(lane0: dict, plan: "_Plan", seq: "_Sequencer") -> None:
        """While the tables load, row lane 0's ``src`` read lane of each LUT stage reads its table."""
        for i in range(_S):
            k = 2 * i
            lane0["rd_en"][k] = Mux(seq.loading, plan.lut_at[i], lane0["rd_en"][k])
            lane0["rd_addr"][k] = Mux(seq.loading, seq.d.stages[i].lut.table + seq.entry, lane0["rd_addr"][k])

    def _drive_dram(self, m: Module, ports: list, seq: "_Sequencer") -> None:
        """Each DRAM port field in one assignment: the lanes' in order, then the layernorm entry's
        reads (one statement per field: Amaranth's netlist cost grows with the statements per signal)."""
        rd, wr = self.dram_rd, self.dram_wr
        rd_en = [v for p in ports for v in p["rd_en"]] + [en for en in seq.entry_rd_en for _ in range(vec.LN_ENTRY_BYTES)]
        rd_addr = [v for p in ports for v in p["rd_addr"]] + seq.entry_rd_addr
        m.d.comb += [rd.en.eq(Cat(*rd_en)), rd.addr.eq(Cat(*(Value.cast(a)[:ADDR_BITS] for a in rd_addr)))]
        m.d.comb += [getattr(wr, f).eq(Cat(*(p[f"wr_{f}"] for p in ports))) for f in ("en", "addr", "data")]


class _Plan:
    """What the latched descriptor implies, combinationally: which stages are live and where the
    row stages are, the rows (length, heads per pixel, passes, pause), and whether the unit can run it.

    A row lane has a row unit (``SoftmaxUnit`` or ``LayerNormUnit``) for the first row stage and a
    second ``LayerNormUnit`` for a second layernorm (``hw.vector.row_lane_refusals``)."""

    def __init__(self, m: Module, d, unit: VectorUnit):
        head = d.header
        ops_ = [d.stages[i].copy.op for i in range(_S)]
        live = [i < head.n_stages for i in range(_S)]
        self.live = live
        self.row_at = [live[i] & _is_any(ops_[i], ROW_OPS) for i in range(_S)]
        # the second row stage: the second layernorm unit's
        self.row2_at = [self.row_at[i] & _any(self.row_at[:i]) for i in range(_S)]
        self.has = {op: _any(live[i] & (ops_[i] == op) for i in range(_S)) for op in ROW_OPS}
        self.two_rows = _any(self.row2_at)
        self.lut_at = [live[i] & (ops_[i] == VecOp.LUT) for i in range(_S)]
        self.row_slot, self.row2_slot = _first(m, self.row_at, "row_slot"), _first(m, self.row2_at, "row2_slot")
        self.row_len, self.heads = Signal.like(head.c), Signal.like(d.stages[0].softmax.heads)
        self.passes = Signal(range(2 * max(vec.COST.values()) + 1))
        self.gap = Signal(range(max(vec.ROW_GAP.values()) + 1))
        # one row stage: its passes, pausing before the last; two layernorms: the first one's
        # passes twice, the second unit summing in the first's first output pass, normalising in
        # its second (hw.vector.row_schedule: the sum of both COSTs and both pauses)
        self.row_cost = Signal.like(self.passes)
        m.d.comb += [self.row_cost.eq(1), self.gap.eq(0)]
        for op in ROW_OPS:
            with m.If(self.has[op]):
                m.d.comb += [self.row_cost.eq(vec.COST[op]), self.gap.eq(vec.ROW_GAP[op])]
        m.d.comb += self.passes.eq(Mux(self.two_rows, 2 * self.row_cost, self.row_cost))
        head_fields, _, stage_fields_ = field_slots(d)
        row_len, heads = vec.row_and_heads(head_fields, stage_fields_)
        m.d.comb += [self.row_len.eq(row_len), self.heads.eq(heads)]
        self.error_code = self._check(m, d, ops_, unit.max_row)

    def output_pass(self, p):
        """Pass ``p`` is one in which the first row unit gives its results (and is preceded by its pause)."""
        return _any(p == k * self.row_cost - 1 for k in (1, 2))

    def _check(self, m: Module, d, ops_: list, max_row: int):
        """``ErrorCode.NONE``, or ``UNSUPPORTED`` for what the unit does not build.  What the
        operators refuse (``DATA``: ``hw.vector.pass_refusals``) the executor refused before."""
        code = Signal(ErrorCode)
        row, rows = self.row_len, _any(self.row_at)
        refusals = vec.row_lane_refusals(
            [(self.live[i], ops_[i], d.stages[i].copy.src, d.stages[i].copy.src2, d.stages[i].copy.out)
             for i in range(_S)],
            [(d.operands[k].repeat, d.operands[k].c) for k in range(_K)], self.heads, row)
        with m.If(_any(refusals.values()) | vec.row_too_long(rows, row, max_row)):
            m.d.comb += code.eq(ErrorCode.UNSUPPORTED)
        return code


def params_outside(stage) -> Value:
    """``hw.vector.params_outside`` of a stage slot (a ``vector_descriptor.STAGE`` view)."""
    return vec.params_outside(stage_fields(stage))


def _first(m: Module, flags: list, name: str) -> Signal:
    """The index of the first set flag (0 if none)."""
    index = Signal(range(len(flags)), name=name)
    for i in reversed(range(len(flags))):
        with m.If(flags[i]):
            m.d.comb += index.eq(i)
    return index


def finish_states(m: Module, unit, drain: Signal) -> None:
    """A VEC unit FSM's last states: ``DRAIN`` counts ``drain`` down to 0 (the last elements'
    way to their writes), then ``DONE`` raises ``done`` for a cycle, and ``error`` with a
    refusal's ``error_code``.  ``VectorUnit`` and ``SpatialUnit`` alike."""
    with m.State("DRAIN"):
        m.d.comb += unit.busy.eq(1)
        m.d.sync += drain.eq(drain - 1)
        with m.If(drain == 0):
            m.next = "DONE"
    with m.State("DONE"):
        m.d.comb += [unit.busy.eq(1), unit.done.eq(1), unit.error.eq(unit.error_code != ErrorCode.NONE)]
        m.next = "IDLE"


def _any(values):
    values = list(values)
    return Cat(*values).any() if values else 0


def _is_any(value, choices) -> object:
    return _any(value == c for c in choices)


class _Sequencer:
    """The FSM, the walker (``walk_row``, handed to lane ``wk`` when ``walk_en``; the lanes start
    their rows on ``begin``) and the shared counters within a row; ``issue`` says the lanes issue
    an element this cycle, ``step`` what they share about it."""

    def __init__(self, m: Module, d, plan: _Plan, unit: VectorUnit):
        self.m, self.d, self.plan, self.unit, n = m, d, plan, unit, unit.lanes
        head = d.header
        self.j, self.p = Signal.like(plan.row_len), Signal.like(plan.passes)
        self.gap_left = Signal.like(plan.gap)
        self.running, self.walking = Signal(), Signal()
        self.walk_cycles = n // unit.walk_rows
        self.wk = Signal(range(max(self.walk_cycles, 2)))
        self.hd, self.ch0 = Signal.like(plan.heads), Signal.like(head.c)
        self.px, self.py = Signal.like(head.w), Signal.like(head.h)
        self.walked = Signal()                    # the walker is past the last row
        self.drain = Signal(range(unit._depth + 1))
        self.load = Signal()
        self.loading, self.entry = Signal(), Signal(range(LUT_ENTRIES))
        self.issue = Signal()
        self.cm = [Signal.like(d.operands[k].c, name=f"operand{k}_cm") for k in range(_K)]
        # the lanes hold their rows; the unit only what lane 0's next row says about the group
        self.first_valid = Signal()
        self.step = Signal(STEP)
        self.walk_en = Signal()
        if unit.walk_rows > 1:
            self.walker = RowWalker(m, d, plan.heads, plan.row_len, unit.walk_rows)
            m.d.comb += [self.walker.load.eq(self.load), self.walker.advance.eq(self.walk_en)]
            self.rows = self.walker.rows
        else:
            self.walker = None
            self.axes = [operand_axes(m, f"operand{k}", d.operands[k], self.load) for k in range(_K)]
            self.rows = [self._walk_row()]
        self._fsm()
        self._shared_reads()

    def _walk_row(self):
        """The row the walker is at: each operand's pixel address and validity, its first channel."""
        row = Signal(ROW, name="walk_row")
        self.m.d.comb += [row.valid.eq(~self.walked), row.ch0.eq(self.ch0)]
        for k, (y, x) in enumerate(self.axes):
            self.m.d.comb += [row.pix[k].eq(self.d.operands[k].base + y.offset + x.offset),
                              row.pix_ok[k].eq(~y.padding & ~x.padding)]
        return row

    def _fsm(self) -> None:
        m, u, plan = self.m, self.unit, self.plan
        walk_en = self.walk_en
        # a group of rows starts once the previous one issued its last element and the walker
        # handed over the next (both may end in this cycle)
        run_ends = ~self.running | (self.issue & (self.j + 1 == plan.row_len) & (self.p + 1 == plan.passes))
        walk_ends = ~walk_en | (self.wk == self.walk_cycles - 1)
        self.begin = begin = Signal()
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
                    if self.walker is not None:
                        m.next = "PRIME"
            if self.walker is not None:
                # the walker's setup (SETUP_CYCLES): each walker to its first row
                with m.State("PRIME"):
                    m.d.comb += [u.busy.eq(1), self.walker.prime.eq(1)]
                    m.next = "SETTLE"
                with m.State("SETTLE"):
                    m.d.comb += [u.busy.eq(1), self.walker.settle.eq(1)]
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
            finish_states(m, u, self.drain)

    def _begin(self, walk_en) -> None:
        """Start the lanes on their walked rows (each lane takes its row, the last one straight from
        the walker if it is walked in this cycle: ``VectorRowLane``), or drain when there are none."""
        m = self.m
        with m.If(Mux(walk_en & (self.wk == 0), self.rows[0].valid, self.first_valid)):
            m.d.sync += [self.running.eq(1), self.walking.eq(1), self.wk.eq(0), self.j.eq(0), self.p.eq(0),
                         self.gap_left.eq(0), *(cm.eq(0) for cm in self.cm)]
            m.next = "RUN"
        with m.Else():
            m.d.sync += [self.running.eq(0), self.walking.eq(0),
                         self.drain.eq(DRAM_READ_LATENCY + self.d.header.n_stages * self.unit.slot_latency - 1)]
            m.next = "DRAIN"

    def _walk(self) -> None:
        """Hand the walker's row to lane ``wk`` (the lane takes it) and step to the next row: the
        next head of the pixel, or the next pixel."""
        m, head, plan = self.m, self.d.header, self.plan
        with m.If(self.wk == 0):
            m.d.sync += self.first_valid.eq(self.rows[0].valid)
        m.d.sync += self.wk.eq(self.wk + 1)
        with m.If(self.wk == self.walk_cycles - 1):
            m.d.sync += [self.wk.eq(0), self.walking.eq(0)]
        if self.walker is not None:
            return          # the walkers move on with walk_en (RowWalker.advance)
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
                with m.If(plan.output_pass(self.p + 1)):
                    m.d.sync += self.gap_left.eq(plan.gap)
            with m.Else():
                m.d.sync += self.running.eq(0)

    def _shared_reads(self) -> None:
        """What the lanes share: pass and row end, and the layernorm entry of the channel (all
        lanes' rows are whole pixels at the same channel)."""
        m, plan = self.m, self.plan
        m.d.comb += [self.step.final.eq(self.p + 1 == plan.passes), self.step.last.eq(self.j + 1 == plan.row_len),
                     self.step.fed.eq(plan.output_pass(self.p))]
        # each layernorm unit's entry of the channel: the first's, then the second's
        self.entry_rd_en = [self.issue & plan.has[VecOp.LAYERNORM], self.issue & plan.two_rows]
        self.entry_rd_addr = []
        for slot in (plan.row_slot, plan.row2_slot):
            table = self.d.stages[slot].layernorm.table + self.j * vec.LN_ENTRY_BYTES
            self.entry_rd_addr += [table + k for k in range(vec.LN_ENTRY_BYTES)]
