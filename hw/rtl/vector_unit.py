"""The vector unit: executes a VEC descriptor from DRAM to DRAM, one element a cycle (``VectorUnit``).

A pass (``hw/vector.py``) is a chain of up to ``MAX_STAGES`` stages over ``h x w x c`` elements.
The unit streams the elements in raster order, channels innermost, through one *slot* per stage:

    issue -> DRAM read (operands, layernorm entry) -> slot 0 -> slot 1 -> ... -> DRAM writes

Every slot takes ``slot_latency`` cycles whatever its operation, so where each element is at
each cycle is fixed: each stage's operands are read when the element issues and delayed to their
slot, and each stage's result is written ``slot_latency`` cycles after the element enters its
slot.  A slot is an :class:`ElementwiseLane` (COPY, ADD, MUL); one slot of the chain may instead
use the shared row unit (:class:`SoftmaxUnit`, :class:`LayerNormUnit`).  A row unit streams each
row once per element operation the contract counts (``hw.vector.COST``: 3 for softmax, 2 for
layernorm), so the sequencer issues each row that many times, recomputing the stages before the
row stage from DRAM each time (no row buffer), and pauses ``gap_cycles`` before the last pass, as
the row unit does.  Results are written in the last pass only.

A stage's result is zero at pixels where its input operand is padding, and writes skip the
elements where the written operand is padding: ``sim.vector_unit``'s rules.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, ErrorCode, VecOp
from .accelerator import DRAM_READ_LATENCY, DramReadSignature, DramWriteSignature
from .axis_counter import AxisCounter
from .elementwise_lane import ElementwiseLane
from .kernel_unit import delayed
from .layernorm_unit import LayerNormUnit
from .softmax_unit import SoftmaxUnit
from .vector_descriptor import DESCRIPTOR, LN_ENTRY

__all__ = ["VectorUnit", "SUPPORTED_OPS", "ROW_OPS", "READ_LANES", "WRITE_LANES"]

#: Stage operations the unit executes; any other is refused (``ErrorCode.UNSUPPORTED``).
SUPPORTED_OPS = (VecOp.COPY, VecOp.ADD, VecOp.MUL, VecOp.LUT, VecOp.SOFTMAX, VecOp.LAYERNORM)
#: Operations on the shared row unit; a pass may have one.
ROW_OPS = (VecOp.SOFTMAX, VecOp.LAYERNORM)
#: Parameter ranges each stage's parameters are checked against (``ErrorCode.DATA``), as the
#: operators of ``hw/operators.py`` check them.
PARAM_RANGES = {VecOp.ADD: ops.AddParams.RANGES, VecOp.MUL: ops.MulParams.RANGES,
                VecOp.SOFTMAX: ops.SoftmaxParams.RANGES, VecOp.LAYERNORM: ops.LayerNormParams.RANGES}
_S = vec.MAX_STAGES
#: Entries of a LUT stage's table: one per int8 value.
LUT_ENTRIES = ops.INT8_MAX - ops.INT8_MIN + 1
#: Read lanes: each stage's ``src`` and ``src2`` (lanes ``2 i``, ``2 i + 1``), then the bytes of a
#: layernorm's per-channel entry.
TABLE_LANE = 2 * _S
READ_LANES = TABLE_LANE + vec.LN_ENTRY_BYTES
#: Write lanes: stage ``i``'s result on lane ``i``.
WRITE_LANES = _S
_BEAT = data.StructLayout({
    "valid": 1, "final": 1, "last": 1,
    "ok": data.ArrayLayout(1, _S),            # the stage's input pixel is not padding
    "wr": data.ArrayLayout(1, _S),            # the stage writes this element
    "wr_addr": data.ArrayLayout(ADDR_BITS, _S),
    "rd_ok": data.ArrayLayout(1, READ_LANES),  # the read lane's element is not padding
})


class VectorUnit(wiring.Component):
    """Executes one VEC descriptor (``hw/vector.py``) over the DRAM ports.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator it belongs to; its DRAM ports must be at least as wide as the unit's.
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
        ``sim.vector_unit``), or names an operation the unit does not build, two row stages or a
        row longer than ``max_row`` (``UNSUPPORTED``); nothing is written.
    overrun: Out(1)
        A row unit was sent an element it was not ready for (never, when the sequencer's pauses
        match the row units'); sticky until the next ``start``.
    dram_rd: Out(DramReadSignature(READ_LANES)), dram_wr: Out(DramWriteSignature(WRITE_LANES))
        The accelerator's DRAM port shapes, reads answered ``DRAM_READ_LATENCY`` cycles later.
    """

    def __init__(self, config: AcceleratorConfig, *, max_row: int = ops.MAX_ROW):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        # the unit's lanes map onto the accelerator's load (read) and store (write) port lanes
        ports = {"read": (config.gb_bus_bytes, READ_LANES), "write": (config.num_pe * config.k0, WRITE_LANES)}
        for port, (have, need) in ports.items():
            if have < need:
                raise ValueError(f"config {config.name!r}: the accelerator's DRAM {port} port has {have} lanes, "
                                 f"the vector unit needs {need}")
        self._config = config
        self._lanes = [ElementwiseLane() for _ in range(_S)]
        self._softmax, self._layernorm = SoftmaxUnit(max_row), LayerNormUnit(max_row)
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode), "overrun": Out(1),
            "dram_rd": Out(DramReadSignature(READ_LANES)), "dram_wr": Out(DramWriteSignature(WRITE_LANES)),
        })

    @property
    def slot_latency(self) -> int:
        """Cycles an element spends in each stage slot: the slowest of the lane and the row units."""
        return max(self._lanes[0].latency, self._softmax.out_latency, self._layernorm.out_latency)

    @property
    def max_row(self) -> int:
        return self._softmax.max_row

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for descriptor ``d`` the unit runs: one to check it, then
        ``LUT_ENTRIES`` to load the LUT stages' tables (all at once), per row ``passes * row +
        gap`` (one pass and no gap without a row stage, the row being the pixel's channels), then
        the last element's way through the read and its stages."""
        row_ops = [st for st in d.stages if st.op in ROW_OPS]
        row, passes, gap = d.c, 1, 0
        if row_ops:
            st = row_ops[0]
            row = st.params["row"] if st.op == VecOp.SOFTMAX else d.c
            passes, gap = vec.COST[st.op], self.gap_cycles(st.op)
        issue = d.h * d.w * (d.c // row) * (passes * row + gap)
        tables = LUT_ENTRIES if any(st.op == VecOp.LUT for st in d.stages) else 0
        return 1 + tables + issue + DRAM_READ_LATENCY + len(d.stages) * self.slot_latency

    def gap_cycles(self, op: VecOp) -> int:
        """Cycles the sequencer pauses before a row's last pass for row operation ``op``."""
        return {VecOp.SOFTMAX: self._softmax, VecOp.LAYERNORM: self._layernorm}[op].gap_cycles

    def elaborate(self, platform):
        m = Module()
        for i, lane in enumerate(self._lanes):
            m.submodules[f"lane{i}"] = lane
        m.submodules.softmax, m.submodules.layernorm = self._softmax, self._layernorm
        d = Signal(DESCRIPTOR)
        with m.If(self.start & ~self.busy):
            m.d.sync += d.eq(self.desc)
        plan = _Plan(m, d, self)
        seq = _Sequencer(m, d, plan, self)
        beats, taps = self._pipeline(m, seq.beat)
        self._slots(m, d, plan, beats, taps)
        self._load_tables(m, plan, seq)
        return m

    def _load_tables(self, m: Module, plan: "_Plan", seq: "_Sequencer") -> None:
        """Each LUT stage's table: the byte read on its ``src`` lane (``_Sequencer._beat``) is
        written at the entry read ``DRAM_READ_LATENCY`` cycles earlier (entry k holds x = k - 128)."""
        r = DRAM_READ_LATENCY
        entry = delayed(m, seq.entry, r, "table_entry")
        loading = delayed(m, seq.loading, r, "table_loading")
        for i, lane in enumerate(self._lanes):
            m.d.comb += [lane.table_w.en.eq(loading & plan.lut_at[i]), lane.table_w.addr.eq(entry),
                         lane.table_w.data.eq(self.dram_rd.data[2 * i])]

    def _pipeline(self, m: Module, beat) -> tuple[list, dict]:
        """The beat delayed 0 .. R + MAX_STAGES * slot_latency cycles, and the read bytes (padding
        zeroed) from R on."""
        r, depth = DRAM_READ_LATENCY, DRAM_READ_LATENCY + _S * self.slot_latency
        beats = [beat]
        for t in range(depth):
            reg = Signal(_BEAT, name=f"beat_{t + 1}")
            m.d.sync += reg.eq(beats[-1])
            beats.append(reg)
        first = Signal(data.ArrayLayout(8, READ_LANES), name=f"bytes_{r}")
        for k in range(READ_LANES):
            m.d.comb += first[k].eq(Mux(beats[r].rd_ok[k], self.dram_rd.data[k], 0))
        taps = {r: first}
        for t in range(r + 1, depth + 1):
            taps[t] = Signal(data.ArrayLayout(8, READ_LANES), name=f"bytes_{t}")
            m.d.sync += taps[t].eq(taps[t - 1])
        return beats, taps

    def _slots(self, m: Module, d, plan: "_Plan", beats: list, taps: dict) -> None:
        """The stage slots, the row units between them and the write lanes."""
        s, r = self.slot_latency, DRAM_READ_LATENCY
        sm, ln = self._softmax, self._layernorm
        row_y = Mux(plan.has[VecOp.SOFTMAX], delayed(m, sm.out.y, s - sm.out_latency, "softmax_y"),
                    delayed(m, ln.out.y, s - ln.out_latency, "layernorm_y"))
        row_in = {"x": [], "valid": [], "last": [], "entry": []}
        y_prev = None
        for i, lane in enumerate(self._lanes):
            t_in, stage = r + i * s, d.stages[i]
            x_read = taps[t_in][2 * i].as_signed()
            x_in = x_read if y_prev is None else Mux(stage.copy.src == vec.PREV, y_prev, x_read)
            self._drive_lane(m, lane, stage, x_in, taps[t_in][2 * i + 1].as_signed(), beats[t_in].valid)
            for key, value in (("x", x_in), ("valid", beats[t_in].valid), ("last", beats[t_in].last),
                               ("entry", Cat(*(taps[t_in][TABLE_LANE + k] for k in range(vec.LN_ENTRY_BYTES))))):
                row_in[key].append(value)
            result = Mux(plan.row_at[i], row_y, delayed(m, lane.y, s - lane.latency, f"lane{i}_y"))
            out = beats[t_in + s]
            y = Signal(8, name=f"y{i}")
            m.d.comb += [y.eq(Mux(out.ok[i], result, 0)),
                         self.dram_wr.en[i].eq(out.valid & out.final & out.wr[i]),
                         self.dram_wr.addr[i].eq(out.wr_addr[i]), self.dram_wr.data[i].eq(y)]
            y_prev = y.as_signed()
        self._drive_row_units(m, d, plan, {k: Array(v)[plan.row_slot] for k, v in row_in.items()})

    @staticmethod
    def _drive_lane(m: Module, lane: ElementwiseLane, stage, a, b, valid) -> None:
        add, mul = stage.add, stage.mul
        m.d.comb += [lane.op.eq(stage.copy.op), lane.a.eq(a), lane.b.eq(b), lane.valid.eq(valid),
                     lane.mult_a.eq(add.mult_a), lane.mult_b.eq(add.mult_b), lane.relu.eq(add.relu),
                     lane.mult.eq(mul.mult), lane.shift.eq(Mux(add.op == VecOp.ADD, add.shift, mul.shift)),
                     ]

    def _drive_row_units(self, m: Module, d, plan: "_Plan", row_in: dict) -> None:
        sm, ln = self._softmax, self._layernorm
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
        with m.If(self.start & ~self.busy):
            m.d.sync += self.overrun.eq(0)
        with m.Elif((sm.x.valid & ~sm.x.ready) | (ln.x.valid & ~ln.x.ready)):
            m.d.sync += self.overrun.eq(1)


class _Plan:
    """What the latched descriptor implies, combinationally: which stages are live and where the
    row stage is, the row length and passes, the pause, and whether the unit can run it."""

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
        row_stage = d.stages[self.row_slot]
        self.row_len = Signal.like(head.c)
        self.passes = Signal(range(max(vec.COST.values()) + 1))
        self.gap = Signal(range(max(unit.gap_cycles(op) for op in ROW_OPS) + 1))
        m.d.comb += [self.row_len.eq(head.c), self.passes.eq(1), self.gap.eq(0)]
        for op in ROW_OPS:
            with m.If(self.has[op]):
                m.d.comb += [self.passes.eq(vec.COST[op]), self.gap.eq(unit.gap_cycles(op))]
        with m.If(self.has[VecOp.SOFTMAX]):
            m.d.comb += self.row_len.eq(row_stage.softmax.row)
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
                outside = _any((getattr(view, n) < lo) | (getattr(view, n) > hi) for n, (lo, hi) in ranges.items())
                bad.append(self.live[i] & (ops_[i] == op) & outside)
        row, rows = self.row_len, _any(self.row_at)
        bad.append(rows & ((row == 0) | (row > ops.MAX_ROW)))
        bad.append(self.has[VecOp.SOFTMAX] & (row != 0) & (head.c % Mux(row == 0, 1, row) != 0))
        # what the operators refuse first (the functional model's code), then what is not built
        with m.If(_any(bad)):
            m.d.comb += code.eq(ErrorCode.DATA)
        with m.Elif(unsupported | two_rows | (rows & (row > max_row))):
            m.d.comb += code.eq(ErrorCode.UNSUPPORTED)
        return code


def _any(values):
    values = list(values)
    return Cat(*values).any() if values else 0


def _is_any(value, choices) -> object:
    return _any(value == c for c in choices)


class _Sequencer:
    """The FSM and the iteration counters; ``beat`` is the element issued this cycle."""

    def __init__(self, m: Module, d, plan: _Plan, unit: VectorUnit):
        self.m, self.d, self.plan, self.unit = m, d, plan, unit
        head = d.header
        self.j, self.p = Signal.like(plan.row_len), Signal.like(plan.passes)
        self.ch, self.ch0 = Signal.like(head.c), Signal.like(head.c)
        self.px, self.py = Signal.like(head.w), Signal.like(head.h)
        self.gap_left = Signal.like(plan.gap)
        self.drain = Signal(range(DRAM_READ_LATENCY + _S * unit.slot_latency + 1))
        self.load = Signal()
        self.issue = Signal()
        self.loading, self.entry = Signal(), Signal(range(LUT_ENTRIES))
        self.beat = Signal(_BEAT)
        self.operands = [_OperandPort(m, d.operands[k], self, k) for k in range(vec.MAX_OPERANDS)]
        self._fsm()
        self._beat()

    def _fsm(self) -> None:
        m, u, plan = self.m, self.unit, self.plan
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
                    m.d.sync += [self.j.eq(0), self.p.eq(0), self.ch.eq(0), self.ch0.eq(0), self.px.eq(0),
                                 self.py.eq(0), self.gap_left.eq(0), self.entry.eq(0)]
                    m.next = "RUN"
                    with m.If(_any(plan.lut_at)):
                        m.next = "TABLES"
            with m.State("TABLES"):
                m.d.comb += [u.busy.eq(1), self.loading.eq(1)]
                m.d.sync += self.entry.eq(self.entry + 1)
                with m.If(self.entry == LUT_ENTRIES - 1):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [u.busy.eq(1), self.issue.eq(self.gap_left == 0)]
                with m.If(self.gap_left != 0):
                    m.d.sync += self.gap_left.eq(self.gap_left - 1)
                with m.Else():
                    self._step()
            with m.State("DRAIN"):
                m.d.comb += u.busy.eq(1)
                m.d.sync += self.drain.eq(self.drain - 1)
                with m.If(self.drain == 0):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [u.busy.eq(1), u.done.eq(1), u.error.eq(u.error_code != ErrorCode.NONE)]
                m.next = "IDLE"

    def _step(self) -> None:
        """Advance to the next element: within the row, to the next pass, row, or pixel."""
        m, plan, head = self.m, self.plan, self.d.header
        last_j, last_p = self.j + 1 == plan.row_len, self.p + 1 == plan.passes
        with m.If(~last_j):
            m.d.sync += [self.j.eq(self.j + 1), self.ch.eq(self.ch + 1)]
            self._channels("step")
        with m.Elif(~last_p):
            m.d.sync += [self.j.eq(0), self.p.eq(self.p + 1), self.ch.eq(self.ch0)]
            self._channels("rewind")
            with m.If(self.p + 2 == plan.passes):
                m.d.sync += self.gap_left.eq(plan.gap)
        with m.Elif(self.ch + 1 != head.c):
            m.d.sync += [self.j.eq(0), self.p.eq(0), self.ch.eq(self.ch + 1), self.ch0.eq(self.ch + 1)]
            self._channels("step", keep=True)
        with m.Else():
            m.d.sync += [self.j.eq(0), self.p.eq(0), self.ch.eq(0), self.ch0.eq(0)]
            self._channels("reset")
            self._pixel()

    def _channels(self, how: str, keep: bool = False) -> None:
        for op in self.operands:
            op.channel(how, keep)

    def _pixel(self) -> None:
        m, head = self.m, self.d.header
        last_x = self.px + 1 == head.w
        with m.If(~last_x):
            m.d.sync += self.px.eq(self.px + 1)
            for op in self.operands:
                m.d.comb += op.x.step.eq(1)
        with m.Elif(self.py + 1 != head.h):
            m.d.sync += [self.px.eq(0), self.py.eq(self.py + 1)]
            for op in self.operands:
                m.d.comb += [op.x.load.eq(1), op.y.step.eq(1)]
        with m.Else():
            m.d.sync += self.drain.eq(DRAM_READ_LATENCY + head.n_stages * self.unit.slot_latency - 1)
            m.next = "DRAIN"

    def _beat(self) -> None:
        """The element issued this cycle: its reads, masks and write addresses."""
        m, d, plan, beat = self.m, self.d, self.plan, self.beat
        pix_ok = Cat(*(op.pixel_ok for op in self.operands))
        elem_ok = Cat(*(op.pixel_ok & op.channel_ok for op in self.operands))
        addr = Array(op.addr for op in self.operands)
        m.d.comb += [beat.valid.eq(self.issue), beat.final.eq(self.p + 1 == plan.passes),
                     beat.last.eq(self.j + 1 == plan.row_len)]
        ok_prev = 0
        for i in range(_S):
            st = d.stages[i].copy
            ok = Mux(st.src == vec.PREV, ok_prev, pix_ok.bit_select(st.src, 1))
            m.d.comb += [beat.ok[i].eq(ok),
                         beat.wr[i].eq(plan.live[i] & (st.out != vec.NONE) & elem_ok.bit_select(st.out, 1)),
                         beat.wr_addr[i].eq(addr[st.out])]
            ok_prev = ok
            for lane, ref in ((2 * i, st.src), (2 * i + 1, st.src2)):
                used = self.issue & plan.live[i] & (ref != vec.PREV) & (ref != vec.NONE)
                en = used & elem_ok.bit_select(ref, 1)
                m.d.comb += [beat.rd_ok[lane].eq(en), self.unit.dram_rd.en[lane].eq(en),
                             self.unit.dram_rd.addr[lane].eq(addr[ref])]
            # while the tables load, a LUT stage's src lane reads its table
            with m.If(self.loading):
                m.d.comb += [self.unit.dram_rd.en[2 * i].eq(plan.lut_at[i]),
                             self.unit.dram_rd.addr[2 * i].eq(d.stages[i].lut.table + self.entry)]
        table = d.stages[plan.row_slot].layernorm.table + self.ch * vec.LN_ENTRY_BYTES
        for k in range(vec.LN_ENTRY_BYTES):
            en = self.issue & plan.has[VecOp.LAYERNORM]
            m.d.comb += [beat.rd_ok[TABLE_LANE + k].eq(en), self.unit.dram_rd.en[TABLE_LANE + k].eq(en),
                         self.unit.dram_rd.addr[TABLE_LANE + k].eq(table + k)]


class _OperandPort:
    """One operand's address: its y and x axis counters and its channel counter (``ch mod c``
    when its channels repeat, kept as a counter saved at each row's first channel)."""

    def __init__(self, m: Module, op, seq: _Sequencer, k: int):
        self.m, self.op = m, op
        self.y, self.x = AxisCounter(), AxisCounter()
        m.submodules[f"operand{k}_y"], m.submodules[f"operand{k}_x"] = self.y, self.x
        for prefix, counter in (("y_", self.y), ("x_", self.x)):
            for name, _, _ in vec.AXIS_FIELDS:
                m.d.comb += getattr(counter, name).eq(getattr(op, prefix + name))
            m.d.comb += counter.load.eq(seq.load)
        self.cm, self.cm0 = Signal.like(op.c, name=f"operand{k}_cm"), Signal.like(op.c, name=f"operand{k}_cm0")
        self.pixel_ok = ~self.y.padding & ~self.x.padding
        self.channel_ok = op.repeat | (seq.ch < op.c)
        self.addr = Signal(ADDR_BITS, name=f"operand{k}_addr")
        m.d.comb += self.addr.eq(op.base + self.y.offset + self.x.offset + Mux(op.repeat, self.cm, seq.ch))
        with m.If(seq.load):
            m.d.sync += [self.cm.eq(0), self.cm0.eq(0)]

    def channel(self, how: str, keep: bool) -> None:
        """``step`` to the next channel (``keep``: and save it as the row's first), ``rewind`` to
        the row's first, ``reset`` to channel 0."""
        m = self.m
        nxt = Mux(self.cm + 1 == self.op.c, 0, self.cm + 1)
        if how == "step":
            m.d.sync += self.cm.eq(nxt)
            if keep:
                m.d.sync += self.cm0.eq(nxt)
        elif how == "rewind":
            m.d.sync += self.cm.eq(self.cm0)
        else:
            m.d.sync += [self.cm.eq(0), self.cm0.eq(0)]
