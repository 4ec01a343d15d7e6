"""One row lane of the vector unit (``VectorRowLane``): a row's elements from their operand
addresses to their DRAM writes.

The vector unit (``vector_unit.py``) walks the rows and hands each of its ``lanes`` row lanes one;
all lanes run in step, so what they share (the descriptor, which stages are live, the element's
channel within the row, the pass and row ends, the layernorm entries) comes in from the unit, and
each lane holds only what is its own: its reads' addresses, its pipeline, its ``MAX_STAGES`` stage
slots, its row units and its writes.  Being a component of its own, it is exported once as a
Verilog module and instantiated ``lanes`` times (``hw.rtl.export``).

    row -> issue (addresses, masks) -> DRAM read -> slot 0 -> ... -> slot 3 -> DRAM writes
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Fragment, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, VecOp
from .buses import DRAM_READ_LATENCY
from .elementwise_lane import ElementwiseLane, drive_stage
from .kernel_unit import delay_line, delayed
from .layernorm_unit import LayerNormUnit
from .softmax_unit import SoftmaxUnit
from .vector_descriptor import DESCRIPTOR, LN_ENTRY

__all__ = ["VectorRowLane", "RowLaneTiming", "row_lane_timing", "LANE_READS", "ROW", "STEP", "PLAN",
           "LUT_ENTRIES"]

_S = vec.MAX_STAGES
_K = vec.MAX_OPERANDS
#: Read lanes of each row lane: each stage's ``src`` and ``src2`` (``2 i``, ``2 i + 1``).
LANE_READS = 2 * _S
#: Entries of a LUT stage's table (``hw.vector``).
LUT_ENTRIES = vec.LUT_ENTRIES

#: Bits of a pixel's channel count and of an operand's (``hw.vector``'s field widths).
_C = {name: bits for name, bits, _ in vec.HEADER_FIELDS}["c"]
_OPERAND_C = {name: bits for name, bits, _ in vec.OPERAND_FIELDS}["c"]
#: A row as the walker hands it to a lane: each operand's pixel address and validity, its first channel.
ROW = data.StructLayout({
    "valid": 1, "ch0": _C,
    "pix": data.ArrayLayout(ADDR_BITS, _K), "pix_ok": data.ArrayLayout(1, _K),
})
#: What all lanes share about the element issued in a cycle: it is of the last pass, it ends its row,
#: it is of a pass in which the first row unit gives results (which the second layernorm unit takes).
STEP = data.StructLayout({"final": 1, "last": 1, "fed": 1})
#: What the latched descriptor implies (``vector_unit._Plan``), as the lanes need it.
#: ``row_at``: the row stages; ``row2_at``: the second one (a layernorm), run by the second layernorm unit;
#: ``prev_at``: the stages whose input is the previous stage's result.
PLAN = data.StructLayout({
    "live": data.ArrayLayout(1, _S), "row_at": data.ArrayLayout(1, _S), "row2_at": data.ArrayLayout(1, _S),
    "prev_at": data.ArrayLayout(1, _S),
    "lut_at": data.ArrayLayout(1, _S), "softmax": 1, "layernorm": 1, "row_slot": range(_S), "row2_slot": range(_S),
})
#: A lane's element in its pipeline.
_BEAT = data.StructLayout({
    "valid": 1,
    "ok": data.ArrayLayout(1, _S),            # the stage's input pixel is not padding
    "wr": data.ArrayLayout(1, _S),            # the stage writes this element
    "wr_addr": data.ArrayLayout(ADDR_BITS, _S),
    "rd_ok": data.ArrayLayout(1, LANE_READS),  # the read lane's element is not padding
})


class RowLaneTiming:
    """Cycles of a row lane's parts (what the unit's schedule and ``cycles`` are built on)."""

    def __init__(self, max_row: int):
        slot, softmax, layernorm = ElementwiseLane(), SoftmaxUnit(max_row), LayerNormUnit(max_row)
        # built for their latencies only: elaborated (and dropped) so that Amaranth does not
        # warn of components never used
        for unit in (slot, softmax, layernorm):
            Fragment.get(unit, None)
        self.max_row = softmax.max_row
        #: Cycles an element spends in each stage slot: the slowest of the slot and the row units.
        self.slot_latency = max(slot.latency, softmax.out_latency, layernorm.out_latency)
        #: Cycles each row unit needs between its row's last passes.
        self.gap_cycles = {VecOp.SOFTMAX: softmax.gap_cycles, VecOp.LAYERNORM: layernorm.gap_cycles}
        #: Cycles from an element's issue to its last slot's result.
        self.depth = DRAM_READ_LATENCY + _S * self.slot_latency

    def slot_in(self, i: int) -> int:
        """Cycles from an element's issue to its entering slot ``i``."""
        return DRAM_READ_LATENCY + i * self.slot_latency


@functools.cache
def row_lane_timing(max_row: int = ops.MAX_ROW) -> RowLaneTiming:
    return RowLaneTiming(max_row)


def _slots(layout) -> data.ArrayLayout:
    return data.ArrayLayout(layout, _S)


#: The lane's ports and their layouts (``VectorRowLane``'s members).
_PORTS = {
    "d": (In, DESCRIPTOR), "plan": (In, PLAN), "walk_row": (In, ROW), "take": (In, 1), "start_row": (In, 1), "flush": (In, 1),
    "issue": (In, 1), "j": (In, _C), "cm": (In, data.ArrayLayout(_OPERAND_C, _K)),
    "step_in": (In, _slots(STEP)), "step_out": (In, _slots(STEP)), "entry_in": (In, _slots(LN_ENTRY)),
    "table_en": (In, _slots(1)), "table_addr": (In, 8), "table_data": (In, _slots(8)),
    "rd_en": (Out, data.ArrayLayout(1, LANE_READS)), "rd_addr": (Out, data.ArrayLayout(ADDR_BITS, LANE_READS)),
    "rd_data": (In, data.ArrayLayout(8, LANE_READS)),
    "wr_en": (Out, _slots(1)), "wr_addr": (Out, _slots(ADDR_BITS)), "wr_data": (Out, _slots(8)),
    "overrun": (Out, 1),
}


def _bits(layout) -> int:
    return layout.size if isinstance(layout, data.Layout) else layout


class VectorRowLane(wiring.Component):
    """One row lane: issues its row's elements, runs them through the stage slots, writes them.

    Parameters
    ----------
    config : AcceleratorConfig
        Unused by the hardware (a lane is the same on every accelerator); taken for the exporter.
    max_row : int
        Longest softmax or layernorm row its row units take, 1..``hw.operators.MAX_ROW``.

    Members
    -------
    Each is plain bits of the layout named here (``ports(lane)`` gives them as views).

    d: In(DESCRIPTOR), plan: In(PLAN)
        The unit's latched descriptor and what it implies.
    walk_row: In(ROW), take: In(1), start_row: In(1)
        The walker's row, which the lane takes as its next when ``take``; on ``start_row`` the lane
        starts its next row (``walk_row`` itself if taken in that cycle) and holds it while it runs.
    flush: In(1)
        The unit latches a new pass: the elements still in flight are dropped (those of the
        previous pass in the slots it did not use, which would otherwise reach this pass's row units).
    issue: In(1), j: In(16), cm: In(ArrayLayout(16, MAX_OPERANDS))
        An element is issued this cycle, its channel within the row, and each repeating
        operand's channel (counted by the unit, shared by all lanes).
    step_in, step_out: In(ArrayLayout(STEP, MAX_STAGES))
        The shared ``STEP`` of the element entering slot ``i`` and of the one leaving it.
    entry_in: In(ArrayLayout(LN_ENTRY, MAX_STAGES))
        The layernorm entry of the element entering slot ``i``.
    table_en: In(ArrayLayout(1, MAX_STAGES)), table_addr: In(8), table_data: In(ArrayLayout(8, MAX_STAGES))
        Write ``table_data[i]`` into slot ``i``'s LUT table at ``table_addr``.
    rd_en, rd_addr: Out(...), rd_data: In(ArrayLayout(8, LANE_READS))
        The lane's ``LANE_READS`` DRAM read lanes (data ``DRAM_READ_LATENCY`` cycles after the address).
    wr_en, wr_addr, wr_data: Out(...)
        Slot ``i``'s DRAM write lane.
    overrun: Out(1)
        A row unit was sent an element it was not ready for this cycle.
    """

    export_prefix = "vector_row_lane"
    #: Its stage slots and row units are modules named under it (one lane module per accelerator).
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig, max_row: int = ops.MAX_ROW) -> dict:
        return {"r": max_row}

    def __init__(self, config: AcceleratorConfig | None = None, *, max_row: int = ops.MAX_ROW):
        self._timing = row_lane_timing(max_row)
        self._slots = [ElementwiseLane() for _ in range(_S)]
        self._softmax, self._layernorm = SoftmaxUnit(max_row), LayerNormUnit(max_row)
        # a pass's second layernorm (hw.vector.row_lane_refusals)
        self._layernorm2 = LayerNormUnit(max_row)
        # plain bits at the ports: the unit instantiates the lane up to hundreds of times, and a
        # port with a layout would be a named wire per field and instance in its Verilog
        super().__init__({name: flow(_bits(layout)) for name, (flow, layout) in _PORTS.items()})

    @property
    def timing(self) -> RowLaneTiming:
        return self._timing

    @staticmethod
    def ports(lane) -> SimpleNamespace:
        """The members of ``lane`` (this component or a black box of its module) seen through their layouts."""
        return SimpleNamespace(**{name: layout(getattr(lane, name)) if isinstance(layout, data.Layout)
                                  else getattr(lane, name) for name, (_, layout) in _PORTS.items()})

    def elaborate(self, platform):
        m, p = Module(), self.ports(self)
        for i, slot in enumerate(self._slots):
            m.submodules[f"slot{i}"] = slot
            m.d.comb += [slot.table_w.en.eq(p.table_en[i]), slot.table_w.addr.eq(p.table_addr),
                         slot.table_w.data.eq(p.table_data[i])]
        m.submodules.softmax, m.submodules.layernorm = self._softmax, self._layernorm
        m.submodules.layernorm2 = self._layernorm2
        beat = self._issue(m, p, self._row(m, p))
        beats = delay_line(m, beat, self._timing.depth, "beat")
        # the valids apart, emptied on a new pass: a pass drains only the slots it uses, and an element
        # of the previous one further on would reach this pass's row units (their state outlives it)
        valids = delay_line(m, beat.valid, self._timing.depth, "beat_valid", clear=p.flush)
        self._slots_and_writes(m, p, beats, valids, self._read_bytes(m, p, beats))
        return m

    def _row(self, m: Module, p):
        """The row the lane runs, and the next one it took from the walker."""
        row, next_row = Signal(ROW, name="row"), Signal(ROW, name="next_row")
        with m.If(p.take):
            m.d.sync += next_row.eq(p.walk_row)
        with m.If(p.start_row):
            m.d.sync += row.eq(Mux(p.take, p.walk_row.as_value(), next_row.as_value()))
        return row

    def _issue(self, m: Module, p, row):
        """The element of ``row`` issued this cycle: its reads, masks and write addresses."""
        d, plan = p.d, p.plan
        beat = Signal(_BEAT, name="beat")
        ch = Signal(_C)
        m.d.comb += ch.eq(row.ch0 + p.j)
        addr = Array(Signal(ADDR_BITS, name=f"operand{k}_addr") for k in range(_K))
        elem_ok = []
        for k in range(_K):
            op = d.operands[k]
            m.d.comb += addr[k].eq(row.pix[k] + Mux(op.repeat, p.cm[k], ch))
            elem_ok.append(row.pix_ok[k] & (op.repeat | (ch < op.c)))
        elem_ok = Cat(*elem_ok)
        issue = p.issue & row.valid
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
                m.d.comb += [beat.rd_ok[lane].eq(en), p.rd_en[lane].eq(en), p.rd_addr[lane].eq(addr[ref])]
        return beat

    def _read_bytes(self, m: Module, p, beats: list) -> dict:
        """The read bytes (padding zeroed) delayed from ``DRAM_READ_LATENCY`` to the last slot's entry."""
        r = DRAM_READ_LATENCY
        first = Signal(data.ArrayLayout(8, LANE_READS), name=f"bytes_{r}")
        for k in range(LANE_READS):
            m.d.comb += first[k].eq(Mux(beats[r].rd_ok[k], p.rd_data[k], 0))
        return {r + k: tap for k, tap in enumerate(delay_line(m, first, self._timing.slot_in(_S - 1) - r, "bytes"))}

    def _slots_and_writes(self, m: Module, p, beats: list, valids: list, taps: dict) -> None:
        """The stage slots, the row units between them and the write lanes (``valids``: the beats'
        valid, of this pass only)."""
        s, d, plan = self._timing.slot_latency, p.d, p.plan
        sm, ln, ln2 = self._softmax, self._layernorm, self._layernorm2
        row_y = Mux(plan.softmax, delayed(m, sm.out.y, s - sm.out_latency, "softmax_y"),
                    delayed(m, ln.out.y, s - ln.out_latency, "layernorm_y"))
        row2_y = delayed(m, ln2.out.y, s - ln2.out_latency, "layernorm2_y")
        # "x": what slot i takes; "x1": the same where no row stage comes before it, the first row
        # unit's input (its slot is the first row stage): it skips the row units' results, which
        # would add their choice to the row unit's first stage
        row_in = {"x": [], "x1": [], "valid": [], "last": [], "fed": [], "entry": []}
        y_prev = y1_prev = None
        for i, slot in enumerate(self._slots):
            t_in, stage = self._timing.slot_in(i), d.stages[i]
            x_read = taps[t_in][2 * i].as_signed()
            takes_prev = plan.prev_at[i]      # decoded by the unit: a comparison less before the row unit
            x_in = x_read if y_prev is None else Mux(takes_prev, y_prev, x_read)
            x1_in = x_read if y1_prev is None else Mux(takes_prev, y1_prev, x_read)
            drive_stage(m, slot, stage, x_in, taps[t_in][2 * i + 1].as_signed(), valids[t_in])
            for key, value in (("x", x_in), ("x1", x1_in), ("valid", valids[t_in]), ("last", p.step_in[i].last),
                               ("fed", p.step_in[i].fed), ("entry", p.entry_in[i].as_value())):
                row_in[key].append(value)
            slot_y = delayed(m, slot.y, s - slot.latency, f"slot{i}_y")
            result = Mux(plan.row2_at[i], row2_y, Mux(plan.row_at[i], row_y, slot_y))
            out = beats[t_in + s]
            y, y1 = Signal(8, name=f"y{i}"), Signal(8, name=f"y{i}_of_slot")
            m.d.comb += [y.eq(Mux(out.ok[i], result, 0)), y1.eq(Mux(out.ok[i], slot_y, 0)),
                         p.wr_en[i].eq(valids[t_in + s] & p.step_out[i].final & out.wr[i]),
                         p.wr_addr[i].eq(out.wr_addr[i]), p.wr_data[i].eq(y)]
            y_prev, y1_prev = y.as_signed(), y1.as_signed()
        first, second = ({k: Array(v)[at] for k, v in row_in.items()} for at in (plan.row_slot, plan.row2_slot))
        first["x"] = first.pop("x1")
        del second["x1"]
        self._drive_row_units(m, p, first, second)

    def _drive_row_units(self, m: Module, p, row_in: dict, row2_in: dict) -> None:
        """The first row stage's unit (softmax or layernorm) on ``row_in``, the second layernorm on
        ``row2_in``: it takes only the passes in which the first gives results, summing in the
        first of them and normalising in the second (``vector_unit._Plan``)."""
        sm, ln, plan = self._softmax, self._layernorm, p.plan
        stage = p.d.stages[plan.row_slot]
        m.d.comb += [
            sm.x.valid.eq(row_in["valid"] & plan.softmax), sm.x.payload.x.eq(row_in["x"]),
            sm.x.payload.last.eq(row_in["last"]), sm.exp_mult.eq(stage.softmax.exp_mult),
            sm.exp_shift.eq(stage.softmax.exp_shift), sm.out_shift.eq(stage.softmax.out_shift),
        ]
        self._drive_layernorm(m, ln, row_in, stage.layernorm, plan.layernorm)
        self._drive_layernorm(m, self._layernorm2, row2_in, p.d.stages[plan.row2_slot].layernorm,
                              plan.row2_at.as_value().any() & row2_in["fed"])
        units = (sm, ln, self._layernorm2)
        m.d.comb += p.overrun.eq(Cat(*(unit.x.valid & ~unit.x.ready for unit in units)).any())

    @staticmethod
    def _drive_layernorm(m: Module, ln: LayerNormUnit, row_in: dict, params, enable) -> None:
        entry = LN_ENTRY(row_in["entry"])
        m.d.comb += [
            ln.x.valid.eq(row_in["valid"] & enable), ln.x.payload.x.eq(row_in["x"]),
            ln.x.payload.last.eq(row_in["last"]), ln.x.payload.gamma.eq(entry.gamma),
            ln.x.payload.beta.eq(entry.beta), ln.eps.eq(params.eps), ln.shift.eq(params.shift),
        ]
