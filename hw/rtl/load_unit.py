"""The load unit: LOAD_INP / LOAD_WGT / LOAD_PARAM / LOAD_GB, a beat of ``G`` gathered bytes per cycle.

The global buffer is its child (LOAD_GB writes it, LOAD_INP may gather from it).  A beat
requested at cycle c returns at c+1 and is written into the selected PEs (or the global
buffer) then.  Timing shell: the unit is free after
``T = setup + max(1, beats + lag, ceil(bytes / dram_bw))`` cycles (``hw.timing.load_terms``: a
LOAD_INP's address generator sets up first and registers each beat's lanes a cycle ahead; its bytes are the in-bounds lanes its
address generator finds, counted beat by beat, each beat's the cycle after it: ``lag``) and pushes its token then, available ``first`` cycles
later (the DRAM or global-buffer latency), which is also when ``idle`` rises.

The DRAM port starts at registers: a LOAD_INP's lanes are its generator's, the other loads'
lane addresses are registers of the unit, set at the start and stepped each beat.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import Fields, ceil_log2
from ..isa import ADDR_BITS, INSN_BITS, Op, Queue
from ..numerics import MAX_SHIFT, PARAM_ENTRY, PARAM_ENTRY_BYTES, entry_offset
from ..timing import (FOLD_SETUP, GB_LATENCY, INP_START, LANE_STAGE, load_inp_rows, load_inp_rows_bound, load_param_lane_addr,
                      load_terms, load_wgt_lane_addr, load_wgt_lane_ok)
from .buses import PARAM_STRUCT, DramReadSignature, LoadBusSignature, LoadTarget, load_geometry
from .clock_gate import gate_clock
from .global_buffer import GbWriteSignature, GlobalBuffer, check_global_buffer
from .insn import field_signal, insn_view
from .load_inp import LoadInpLanes
from .pe_tile import check_rtl_config
from .unit import pe_mask, push_when, start_when, unit_members

__all__ = ["LoadUnit"]

#: Bits of the DRAM byte balance (bytes of one load: 32-bit fields).
_CREDIT_BITS = 48


def _min(a, b):
    return Mux(a < b, a, b)


class _Beat:
    """What the address generators give the shell and the write stage for the beat of this cycle."""

    def __init__(self, config: AcceleratorConfig):
        g, nb, ne = load_geometry(config)
        self.lane_en = Signal(g)
        self.lane_addr = data.ArrayLayout(ADDR_BITS, g)(Signal(ADDR_BITS * g, name="lane_addr"))
        self.dram_bytes = Signal(range(g + 1))
        self.target = Signal(LoadTarget)
        self.addr, self.sel, self.count = Signal(16), Signal(8), Signal(range(max(nb, ne) + 1))


class LoadUnit(wiring.Component):
    """The load unit (see the module docstring).

    Parameters
    ----------
    config:
        The configuration (:func:`~hw.rtl.pe_tile.check_rtl_config`,
        :func:`~hw.rtl.global_buffer.check_global_buffer`).
    gb_factory, lanes_factory:
        Build the global buffer and the LOAD_INP address generator (black boxes in the export).
    gate_factory:
        Builds the clock gate (``hw.rtl.clock_gate.ClockGate``, the exporter's) that clocks the
        address generator only while a LOAD_INP starts or runs and the global buffer only while it
        is read or written; without one (Amaranth's simulator) their registers hold by a clock
        enable in the same cycles (``hw.rtl.clock_gate.gate_clock``).

    Members
    -------
    insn, enable, idle, pop_prev, pop_next, push_next:
        The unit's queue and token ports (:mod:`hw.rtl.unit`).
    error: Out(1)
        Sticky: a loaded parameter shift above MAX_SHIFT, a LOAD_INP global-buffer address
        outside the buffer or a bank conflict (ErrorCode.DATA).
    active: Out(1)
        Low in the cycles after which no register of the unit would change (nothing starts, no
        load runs or is written or in its tail, no store beat into the global buffer, no error to
        raise): the enable of the unit's clock gate (``Accelerator``).  What the unit's registers
        hold then feeds nothing but idle outputs.
    dram: Out(DramReadSignature(G))
    ld: Out(LoadBusSignature(config, pes=num_pe))
    gb_store: In(GbWriteSignature(config))
        The store unit's beats into the global buffer (STORE with ``dst_gb``): the buffer's one
        write port is theirs whenever ``en`` is high (the stream never runs a LOAD_GB then:
        ``hw.timing.gb_write_claims``).
    """

    export_prefix = "load_unit"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, "k": config.k0, "c": config.c0, "g": config.gb_bus_bytes,
                "b": config.dram_bytes_per_cycle, "l": config.dram_latency, "m": config.global_buf_bytes}

    def __init__(self, config: AcceleratorConfig, *, gb_factory=GlobalBuffer, lanes_factory=LoadInpLanes,
                 gate_factory=None):
        check_rtl_config(config)
        check_global_buffer(config)
        self._config = config
        self._gb_factory = gb_factory
        self._lanes_factory = lanes_factory
        self._gate_factory = gate_factory
        g, _, _ = load_geometry(config)
        super().__init__({
            **unit_members(Queue.LOAD, max_wait=max(config.dram_latency, GB_LATENCY) - 1),
            "error": Out(1), "active": Out(1), "dram": Out(DramReadSignature(g)),
            "ld": Out(LoadBusSignature(config, pes=config.num_pe)), "gb_store": In(GbWriteSignature(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        cur = Signal(INSN_BITS)
        op = insn_view(Op.NOP, cur).opcode
        busy, beats_left = Signal(), Signal(32)
        setup_left = Signal(range(FOLD_SETUP + INP_START + LANE_STAGE + 1))     # a LOAD_INP's setup (hw.timing.load_terms)
        ready = busy & (setup_left == 0)
        issue = ready & (beats_left != 0)
        free = Signal()
        start = start_when(m, self, Queue.LOAD, free=~busy | free)
        beat = _Beat(cfg)
        # The generator's registers matter from a LOAD_INP's start to its end (its last beat's count
        # is taken in the cycle the unit is free); what they hold after it, no beat reads: a
        # LOAD_INP's start sets them up again.  So its clock is gated in between.
        inp = self._lanes_factory(cfg)
        gate_clock(m, "inp", inp, inp.start | (busy & (op == Op.LOAD_INP)), self._gate_factory)
        m.d.comb += [inp.insn.eq(self.insn.payload), inp.start.eq(start & (insn_view(Op.NOP, self.insn.payload).opcode
                                                                          == Op.LOAD_INP)),
                     inp.step.eq(issue & (op == Op.LOAD_INP)), inp.setup_left.eq(setup_left)]
        counters = self._counters(m, cur, start, issue)
        m.d.comb += beat.lane_addr.eq(self._lane_registers(m, start, issue, counters["last"]))
        with m.Switch(op):
            with m.Case(Op.LOAD_INP):
                m.d.comb += [beat.lane_en.eq(inp.lane_en), beat.lane_addr.eq(inp.lane_addr),
                             beat.target.eq(LoadTarget.INPUT), beat.addr.eq(inp.row_addr), beat.count.eq(inp.rows)]
            with m.Case(Op.LOAD_WGT):
                self._wgt_lanes(m, insn_view(Op.LOAD_WGT, cur), counters, issue, beat)
            with m.Case(Op.LOAD_PARAM):
                self._param_lanes(m, insn_view(Op.LOAD_PARAM, cur), counters, issue, beat)
            with m.Case(Op.LOAD_GB):
                self._gb_lanes(m, insn_view(Op.LOAD_GB, cur), counters, issue, beat)
        # a LOAD_INP from DRAM counts its DRAM bytes beat by beat (load_terms gives none): a flag
        # decoded at the start, so the DRAM balance behind it starts at registers, not at the opcode
        per_beat, h = Signal(), self.insn.payload
        with m.If(start):
            m.d.sync += per_beat.eq((insn_view(Op.NOP, h).opcode == Op.LOAD_INP) & ~insn_view(Op.LOAD_INP, h).src_gb)
        m.d.comb += beat.dram_bytes.eq(Mux(per_beat, inp.lane_en_count, 0))
        gb, gb_bad, from_gb = self._global_buffer(m, cur, inp, busy)
        m.d.comb += [self.dram.en.eq(Mux(from_gb, 0, beat.lane_en)), self.dram.addr.eq(beat.lane_addr)]
        wv = self._write_stage(m, cur, start, issue, beat, gb, gb_bad, from_gb, counters)
        tail = self._shell(m, cur, start, (busy, ready, setup_left), beats_left, issue, free, beat)
        # the write stage's registers follow the beat each cycle, but only a written beat (wv) reads
        # them, and the last beat's own cycle (busy) registers it
        m.d.comb += self.active.eq(start | busy | wv | (tail != 0) | self.gb_store.en | gb_bad)
        return m

    # ---- counters of LOAD_WGT / LOAD_PARAM / LOAD_GB ------------------------------------------

    def _counters(self, m, cur, start, issue) -> dict:
        """LOAD_WGT weight row and MAC group, LOAD_PARAM first entry, LOAD_GB byte offset of the beat."""
        cfg = self._config
        g, nb, ne = load_geometry(cfg)
        op = insn_view(Op.NOP, cur).opcode
        c = {"row": field_signal(Op.LOAD_WGT, "rows", "wgt_row"), "group": Signal(range(max(2, cfg.k0 // nb))),
             "entry": Signal(16), "offset": Signal(32)}
        # the beat's MAC group is the last of its weight row: the next beat starts the next row
        c["last"] = c["group"] == cfg.k0 // nb - 1
        with m.If(start):
            m.d.sync += [c["row"].eq(0), c["group"].eq(0), c["entry"].eq(0), c["offset"].eq(0)]
        with m.Elif(issue):
            with m.Switch(op):
                with m.Case(Op.LOAD_WGT):
                    last = c["last"]
                    m.d.sync += [c["group"].eq(Mux(last, 0, c["group"] + 1)), c["row"].eq(c["row"] + last)]
                with m.Case(Op.LOAD_PARAM):
                    m.d.sync += c["entry"].eq(c["entry"] + ne)
                with m.Case(Op.LOAD_GB):
                    m.d.sync += c["offset"].eq(c["offset"] + g)
        return c

    def _lane_registers(self, m, start, issue, last):
        """The DRAM address of every lane of a LOAD_WGT / LOAD_PARAM / LOAD_GB beat, in registers
        (the DRAM port starts at registers, as the LOAD_INP generator's does): set at the start from
        the queue's head with the beat's step, then stepped each beat, an add per lane (the lane
        addresses are affine in the counters; no product of a counter and a field).  A LOAD_WGT
        steps ``nb`` outputs a beat, and after a row's last MAC group back to output 0 of the
        next row of C0 channels (``wrap``); the rules are ``hw.timing``'s, evaluated at the lanes'
        first counters and, from a zero source address, at the steps."""
        cfg = self._config
        g, nb, ne = load_geometry(cfg)
        lanes = data.ArrayLayout(ADDR_BITS, g)(Signal(ADDR_BITS * g, name="lane_reg"))
        step, wrap = Signal(ADDR_BITS), Signal(ADDR_BITS)
        h = self.insn.payload
        with m.If(start):
            with m.Switch(insn_view(Op.NOP, h).opcode):
                with m.Case(Op.LOAD_WGT):
                    f = Fields(insn_view(Op.LOAD_WGT, h))
                    rel = {"src_addr": 0, "out_stride": f["out_stride"], "lane_stride": f["lane_stride"]}
                    m.d.sync += [lanes[v * cfg.c0 + ln].eq(load_wgt_lane_addr(f, v, ln))
                                 for v in range(nb) for ln in range(cfg.c0)]
                    m.d.sync += [step.eq(load_wgt_lane_addr(rel, nb, 0)),
                                 wrap.eq(load_wgt_lane_addr(rel, nb - cfg.k0 // nb * nb, cfg.c0))]
                with m.Case(Op.LOAD_PARAM):
                    f = Fields(insn_view(Op.LOAD_PARAM, h))
                    m.d.sync += [lanes[e * PARAM_ENTRY_BYTES + byte].eq(load_param_lane_addr(f, e, byte))
                                 for e in range(ne) for byte in range(PARAM_ENTRY_BYTES)]
                    beat_step = load_param_lane_addr({"src_addr": 0}, ne, 0)
                    m.d.sync += [step.eq(beat_step), wrap.eq(beat_step)]
                with m.Case(Op.LOAD_GB):
                    src = insn_view(Op.LOAD_GB, h).src_addr
                    m.d.sync += [lanes[i].eq(src + i) for i in range(g)]
                    m.d.sync += [step.eq(g), wrap.eq(g)]
        with m.Elif(issue):
            m.d.sync += [lanes[i].eq(lanes[i] + Mux(last, wrap, step)) for i in range(g)]
        return lanes

    def _wgt_lanes(self, m, cw, c, issue, beat):
        cfg = self._config
        _, nb, _ = load_geometry(cfg)
        en_bits = []
        for v in range(nb):
            j = c["group"] * nb + v
            for ln in range(cfg.c0):
                idx = c["row"] * cfg.c0 + ln
                en_bits.append(load_wgt_lane_ok(Fields(cw), j, idx, issued=issue))
        m.d.comb += [beat.lane_en.eq(Cat(*en_bits)), beat.target.eq(LoadTarget.WEIGHT),
                     beat.addr.eq(cw.dst_addr + c["row"]), beat.sel.eq(c["group"]), beat.count.eq(nb)]

    def _param_lanes(self, m, cp, c, issue, beat):
        _, _, ne = load_geometry(self._config)
        en_bits = []
        for e in range(ne):
            en_bits += [issue & (c["entry"] + e < cp.n_entries)] * PARAM_ENTRY_BYTES
        m.d.comb += [beat.lane_en.eq(Cat(*en_bits)),
                     beat.target.eq(Mux(cp.table, LoadTarget.TABLE, LoadTarget.PARAM)),
                     beat.addr.eq(cp.dst_addr + c["entry"]), beat.count.eq(_min(cp.n_entries - c["entry"], ne))]

    def _gb_lanes(self, m, cgb, c, issue, beat):
        g, _, _ = load_geometry(self._config)
        en_bits = []
        for i in range(g):
            en_bits.append(issue & (c["offset"] + i < cgb.n_bytes))
        m.d.comb += beat.lane_en.eq(Cat(*en_bits))

    # ---- global buffer, write stage, shell -------------------------------------------------------

    def _global_buffer(self, m, cur, inp, busy):
        """2G/C0 banks (hw/rtl/global_buffer.py): LOAD_GB beats never conflict, a LOAD_INP gather
        that needs two rows of one bank raises error (DATA).  Reads are transparent, so a
        LOAD_INP right after the LOAD_GB that fills it sees the last beat.  Only a LOAD_INP reads
        the buffer: its lanes come straight from the address generator's registers."""
        cfg = self._config
        g, _, _ = load_geometry(cfg)
        from_gb = Signal()
        m.d.comb += from_gb.eq((insn_view(Op.NOP, cur).opcode == Op.LOAD_INP) & insn_view(Op.LOAD_INP, cur).src_gb)
        gb = self._gb_factory(cfg)
        # Its registers (the read ports' words, the lanes' byte offsets) matter only the cycle after
        # a read, and its banks change only by a write: its clock is gated on the other cycles.
        gate_clock(m, "gb", gb, (from_gb & busy) | gb.w_en, self._gate_factory)
        # A gather from the buffer reads whole words (hw.timing.load_inp_gb_unaligned): a beat
        # row's first lane names its word, and the row is enabled when any of its lanes is.
        c0, lw = cfg.c0, ceil_log2(cfg.c0)
        bad = [gb.conflict]
        for k in range(g // c0):
            en = Signal(name=f"gb_row{k}_en")
            first = inp.lane_addr[k * c0]
            m.d.comb += [en.eq(inp.lane_en[k * c0:(k + 1) * c0].any() & from_gb),
                         gb.r_row[k].eq(first[lw:]), gb.r_en[k].eq(en)]
            bad.append(en & (first >= cfg.global_buf_bytes))
        return gb, Cat(*bad).any(), from_gb

    def _write_stage(self, m, cur, start, issue, beat, gb, gb_bad, from_gb, counters):
        """The gathered bytes arrive one cycle after the beat: into the PEs or the global buffer.
        Returns the stage's valid (a beat is written this cycle)."""
        cfg = self._config
        g, _, ne = load_geometry(cfg)
        op = insn_view(Op.NOP, cur).opcode
        wv, w_mask, w_pes = Signal(), Signal(g), Signal(cfg.num_pe)
        w_gb, w_from_gb, w_gbaddr = Signal(), Signal(), Signal(32)
        # the PE set is decoded from the registered instruction, never from the queue's head: a beat
        # of cycle c writes at c+1 into the set of the instruction it belongs to
        m.d.sync += [wv.eq(issue), w_mask.eq(beat.lane_en), w_pes.eq(pe_mask(insn_view(Op.LOAD_INP, cur), cfg.num_pe)),
                     w_gb.eq(op == Op.LOAD_GB),
                     w_from_gb.eq(from_gb), w_gbaddr.eq(insn_view(Op.LOAD_GB, cur).dst_addr + counters["offset"])]
        ld = self.ld
        m.d.sync += [ld.target.eq(beat.target), ld.addr.eq(beat.addr), ld.sel.eq(beat.sel), ld.count.eq(beat.count)]
        bytes_in = [Mux(w_mask[i], Mux(w_from_gb, gb.r_data[i], self.dram.data[i]), 0) for i in range(g)]
        m.d.comb += [ld.data.eq(Cat(*bytes_in)), ld.en.eq(Mux(wv & ~w_gb, w_pes, 0)),
                     gb.w_en.eq((wv & w_gb) | self.gb_store.en)]
        # the store unit's beat, or a LOAD_GB's: never both (hw.timing.gb_write_claims)
        with m.If(self.gb_store.en):
            m.d.comb += [gb.w_addr.eq(self.gb_store.addr), gb.w_mask.eq(self.gb_store.mask),
                         gb.w_data.eq(self.gb_store.data)]
        with m.Else():
            m.d.comb += [gb.w_addr.eq(w_gbaddr), gb.w_mask.eq(w_mask), gb.w_data.eq(self.dram.data)]
        bad_shift = Const(0, 1)
        # each entry's shift field: its bytes (PARAM_ENTRY) at its offset
        at, n_bytes = entry_offset(PARAM_ENTRY, "shift"), PARAM_STRUCT["shift"].shape.width // 8
        for e in range(ne):
            first = e * PARAM_ENTRY_BYTES + at
            shift = Cat(*bytes_in[first:first + n_bytes])
            bad_shift = bad_shift | ((e < ld.count) & (shift > MAX_SHIFT))
        with m.If(gb_bad | (wv & (ld.target == LoadTarget.PARAM) & bad_shift)):
            m.d.sync += self.error.eq(1)
        return wv

    def _shell(self, m, cur, start, state, beats_left, issue, free, beat):
        """The setup, then the beats and the DRAM byte balance count down; free when all are done;
        the token and ``idle`` wait ``first`` more cycles (the tail, the longest of the loads in
        flight).  Returns the tail's down-counter."""
        cfg = self._config
        busy, ready, setup_left = state
        h = self.insn.payload
        credit, first = Signal(signed(_CREDIT_BITS)), Signal(range(max(cfg.dram_latency, GB_LATENCY) + 1))
        credit_now = Signal(signed(_CREDIT_BITS))
        tail = Signal(range(max(cfg.dram_latency, GB_LATENCY)))
        lag = Signal()          # load_terms' lag: the bytes of a beat are counted the cycle after it
        # the balance from registers only (beat.dram_bytes: the previous beat's count, a register),
        # so free does not wait for the issue logic before a 48-bit sum
        m.d.comb += [credit_now.eq(credit + cfg.dram_bytes_per_cycle - beat.dram_bytes),
                     free.eq(ready & (credit_now >= 0) & Mux(issue, (beats_left == 1) & ~lag, beats_left == 0))]
        with m.If(ready):
            m.d.sync += [beats_left.eq(beats_left - issue), credit.eq(credit_now)]
        with m.Elif(setup_left != 0):
            m.d.sync += setup_left.eq(setup_left - 1)
        with m.If(free):
            m.d.sync += [busy.eq(0), tail.eq(Mux(tail > first - 1, tail - 1, first - 1))]
        with m.Elif(tail != 0):
            m.d.sync += tail.eq(tail - 1)
        m.d.comb += self.idle.eq(~busy & (tail == 0))
        push_when(m, self, Queue.LOAD, free, insn_view(Op.NOP, cur), first - 1)
        # a LOAD_INP's rows in the bits the dispatcher's legality check allows (load_inp_rows_bound):
        # the low bits of the product of three fields, not all 36
        inp_rows = Signal(range(load_inp_rows_bound(cfg) + 1))
        m.d.comb += inp_rows.eq(load_inp_rows(Fields(insn_view(Op.LOAD_INP, h))))
        with m.If(start):
            m.d.sync += [cur.eq(h), busy.eq(1)]
            with m.Switch(insn_view(Op.NOP, h).opcode):
                for o in (Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM, Op.LOAD_GB):
                    with m.Case(o):
                        # hw.timing's terms; a LOAD_INP's DRAM bytes are counted per beat instead
                        n_beats, n_bytes, first_data, setup, late = load_terms(
                            o, Fields(insn_view(o, h)), cfg, rows=inp_rows if o == Op.LOAD_INP else None)
                        m.d.sync += [beats_left.eq(n_beats), credit.eq(0 if n_bytes is None else -n_bytes),
                                     first.eq(first_data), setup_left.eq(setup), lag.eq(late)]
        return tail
