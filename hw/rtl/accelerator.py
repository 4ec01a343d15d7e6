"""The top-level accelerator: fetch, dispatch, three units with timing shells, and the PE array.

``Accelerator(config)`` executes an instruction stream (``hw/isa.py``) with the
semantics of ``sim/functional.py`` and, cycle for cycle, the timing of
``hw/timing.py``: cycle 0 is the first cycle after ``start`` was sampled high,
and ``done`` reads 1 from cycle ``schedule(stream, config).total_cycles`` on.
``docs/rtl.md`` describes the ports and the micro-architecture.

Timing shell
    Every unit computes the contract's occupancy/latency of an instruction in
    hardware (from its fields, and for LOAD_INP from the in-bounds bytes its
    address generator counts) and holds completion until that cycle.  Its
    datapath is never slower: the load unit moves ``gb_bus_bytes`` per cycle
    (the contract's bus term), GEMM one pixel per cycle, STORE one pixel of
    every PE per cycle.  DRAM bandwidth and latency are therefore enforced by
    the shell, and the DRAM ports are simple fixed-latency gather/scatter ports.

Tokens
    Each token FIFO holds the cycle at which the token becomes available (the
    pushing instruction's end); a popping instruction starts when the head
    time has been reached.  The dispatcher counts tokens in program order, so a
    pop that no earlier instruction pushed, a flag naming a missing neighbour,
    or tokens left at END raise ``error`` at dispatch instead of hanging.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import Fields, any_of
from ..isa import ADDR_BITS, FIELDS, HEADER, INSN_BITS, QUEUE_OF, Act, ErrorCode, Op, Queue, VecOp
from ..numerics import MAX_SHIFT, PARAM_ENTRY, PARAM_ENTRY_BYTES, entry_offset
from ..timing import (GB_LATENCY, QUEUE_DEPTH, TOKEN_FIFOS, TOKEN_LIMIT, TOKEN_LINKS, gemm_cycles, gemm_period, gemm_steps,
                      legality, load_terms, pe_positions, pe_selected, store_pe_tile, store_timing)
from .global_buffer import GlobalBuffer, check_global_buffer
from .pe_tile import LoadTarget, PETile, check_rtl_config, load_geometry
from .vector_mac import int8_vector

__all__ = ["Accelerator", "ErrorCode", "rtl_unsupported", "IMEM_WORDS", "DramReadSignature", "DramWriteSignature", "insn_layout",
           "CYCLE_BITS", "TOKEN_LIMIT", "DRAM_READ_LATENCY"]

#: Width of the cycle counter and of token timestamps.
CYCLE_BITS = 48
#: More than hw.timing.TOKEN_LIMIT tokens in program order raises ``error`` (ErrorCode.TOKEN).
#: The FIFO itself has TOKEN_LIMIT + QUEUE_DEPTH entries: at most QUEUE_DEPTH dispatched
#: pops can still be waiting in their queue.
TOKEN_FIFO_DEPTH = TOKEN_LIMIT + QUEUE_DEPTH
#: Cycles from a DRAM read request to its data (fixed).
DRAM_READ_LATENCY = 1


#: Instruction words the fetch addresses (32-bit byte addresses): running into word
#: ``imem_words`` raises ``error`` (OPCODE), as a stream without END does in hw.timing.schedule.
IMEM_WORDS = 1 << 27
#: The RTL's ``error_code`` is ``hw.isa.ErrorCode``, the simulator's.
assert max(ErrorCode) < 8, "error_code is 3 bits wide"
#: Queue name of each unit's instruction queue.
_QUEUE_NAMES = {Queue.LOAD: "lq", Queue.COMPUTE: "cq", Queue.STORE: "sq"}


def rtl_unsupported(op: Op, f):
    """Whether this RTL refuses an instruction (``ErrorCode.UNSUPPORTED``) that the contract
    defines and ``sim.functional`` runs: VEC, a STORE's table activation or softmax epilogue, a
    LOAD_PARAM into the table memory.  On integers (``Insn.f``) or the fields of a word."""
    if op == Op.VEC:
        return 1
    if op == Op.LOAD_PARAM:
        return f["table"] != 0
    if op == Op.STORE:
        return (f["act"] == Act.TABLE) | (f["ep_row"] != 0)
    return 0


def insn_layout(op: Op) -> data.StructLayout:
    """The bit layout of ``op``'s 256-bit word, from ``hw.isa.FIELDS``."""
    fields, used = {}, 0
    for name, bits, sgn in HEADER + tuple(FIELDS[op]):
        fields[name] = signed(bits) if sgn else unsigned(bits)
        used += bits
    if used < INSN_BITS:
        fields["reserved"] = unsigned(INSN_BITS - used)
    return data.StructLayout(fields)


_LAYOUTS = {op: insn_layout(op) for op in Op}


def _view(op: Op, value):
    return data.View(_LAYOUTS[op], value)


def _min(a, b):
    return Mux(a < b, a, b)


def _like(op: Op, field: str, name: str | None = None) -> Signal:
    """A counter as wide as ``op``'s field ``field`` (hw.isa.FIELDS)."""
    return Signal(_LAYOUTS[op].members[field], name=name)


def _pe_mask(v, num_pe: int):
    """The PEs of the set ``pe_first + i * pe_step``, ``i < pe_count`` (hw.timing.pe_selected)."""
    return Cat(*(pe_selected(Fields(v), p, num_pe) for p in range(num_pe)))


class DramReadSignature(wiring.Signature):
    """A byte-gather read port: ``lanes`` byte addresses with enables; the bytes come back
    ``DRAM_READ_LATENCY`` cycle(s) later on ``data`` (lanes not enabled: don't care)."""

    def __init__(self, lanes: int):
        super().__init__({"en": Out(lanes), "addr": Out(data.ArrayLayout(ADDR_BITS, lanes)),
                          "data": In(data.ArrayLayout(8, lanes))})


class DramWriteSignature(wiring.Signature):
    """A byte-scatter write port: the enabled lanes' bytes are written this cycle."""

    def __init__(self, lanes: int):
        super().__init__({"en": Out(lanes), "addr": Out(data.ArrayLayout(ADDR_BITS, lanes)),
                          "data": Out(data.ArrayLayout(8, lanes))})


class _Fifo(wiring.Component):
    """A FIFO whose full state accepts a write when it is read in the same cycle.

    ``r_data`` is the head (combinational read); a written entry is visible from the
    next cycle.
    """

    def __init__(self, width: int, depth: int):
        self._width, self._depth = width, depth
        super().__init__({"w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
                          "r_en": In(1), "r_data": Out(width), "r_valid": Out(1),
                          "level": Out(range(depth + 1))})

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.mem = mem = memory.Memory(shape=self._width, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        wp, rp = Signal(range(depth)), Signal(range(depth))
        do_w = self.w_en & self.w_rdy
        do_r = self.r_en & self.r_valid
        m.d.comb += [
            self.w_rdy.eq((self.level != depth) | self.r_en),
            self.r_valid.eq(self.level != 0),
            rd.addr.eq(rp), self.r_data.eq(rd.data),
            wr.addr.eq(wp), wr.data.eq(self.w_data), wr.en.eq(do_w),
        ]
        with m.If(do_w):
            m.d.sync += wp.eq(Mux(wp == depth - 1, 0, wp + 1))
        with m.If(do_r):
            m.d.sync += rp.eq(Mux(rp == depth - 1, 0, rp + 1))
        m.d.sync += self.level.eq(self.level + do_w - do_r)
        return m


def _unit_members() -> dict:
    return {"now": In(CYCLE_BITS), "insn": In(INSN_BITS), "start": In(1), "ready": Out(1),
            "idle": Out(1)}


# ---- load unit ------------------------------------------------------------------------------

class LoadUnit(wiring.Component):
    """LOAD_INP / LOAD_WGT / LOAD_PARAM / LOAD_GB: a beat of ``G`` gathered bytes per cycle.

    The global buffer lives here (LOAD_GB writes it, LOAD_INP may gather from it).

    A beat requested at cycle c returns at c+1 and is written into the selected PEs
    then; the unit is free after ``T = max(1, beats, ceil(bytes / dram_bw))`` cycles
    (``bytes`` counted by the address generator for LOAD_INP, from the fields otherwise)
    and pushes its token with availability ``now + first`` (DRAM latency).
    """

    def __init__(self, config: AcceleratorConfig):
        check_rtl_config(config)
        check_global_buffer(config)
        self._config = config
        g, nb, ne = load_geometry(config)
        super().__init__({
            **_unit_members(),
            "push_next": Out(1), "push_ts": Out(CYCLE_BITS), "error": Out(1),
            "dram": Out(DramReadSignature(g)),
            "pe_en": Out(config.num_pe), "ld_target": Out(LoadTarget), "ld_addr": Out(16),
            "ld_sel": Out(8), "ld_count": Out(range(max(nb, ne) + 1)), "ld_data": Out(unsigned(8 * g)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        g, nb, ne = load_geometry(cfg)
        c0, k0, bw = cfg.c0, cfg.k0, cfg.dram_bytes_per_cycle
        h = self.insn
        hop = _view(Op.NOP, h).opcode
        hi, hw_, hp = _view(Op.LOAD_INP, h), _view(Op.LOAD_WGT, h), _view(Op.LOAD_PARAM, h)
        hgb = _view(Op.LOAD_GB, h)

        cur = Signal(INSN_BITS)
        op = _view(Op.NOP, cur).opcode
        ci, cw, cp = _view(Op.LOAD_INP, cur), _view(Op.LOAD_WGT, cur), _view(Op.LOAD_PARAM, cur)
        cgb = _view(Op.LOAD_GB, cur)
        busy, push_flag = Signal(), Signal()
        beats, bi = Signal(32), Signal(32)
        rows = Signal(32)
        credit = Signal(signed(48))
        first = Signal(range(max(cfg.dram_latency, GB_LATENCY) + 1))
        mask = Signal(cfg.num_pe)
        last_end = Signal(CYCLE_BITS)
        # LOAD_INP row counters (of row bi*nb); LOAD_WGT row / MAC group; LOAD_PARAM first entry.
        cb, yy, xx = _like(Op.LOAD_INP, "n_cblk"), _like(Op.LOAD_INP, "win_h"), _like(Op.LOAD_INP, "win_w")
        wr_row, jb = _like(Op.LOAD_WGT, "rows"), Signal(range(max(2, k0 // nb)))
        pbase = Signal(16)
        gbase = Signal(32)

        # ---- per-beat address generation (combinational from the registered instruction)
        issue = Signal()
        m.d.comb += issue.eq(busy & (bi < beats))
        lane_en = Signal(g)
        lane_addr = data.ArrayLayout(ADDR_BITS, g)(Signal(ADDR_BITS * g))
        beat_bytes = Signal(range(g + 1))
        w_target = Signal(LoadTarget)
        w_addr, w_sel, w_count = Signal(16), Signal(8), Signal(range(max(nb, ne) + 1))
        nxt = {}
        with m.Switch(op):
            with m.Case(Op.LOAD_INP):
                fkh, fkw, fs = (_like(Op.LOAD_INP, name) for name in ("fold_kh", "fold_kw", "fold_stride"))
                m.d.comb += [fkh.eq(Mux(ci.fold_kh == 0, 1, ci.fold_kh)),
                             fkw.eq(Mux(ci.fold_kw == 0, 1, ci.fold_kw)),
                             fs.eq(Mux(ci.fold_stride == 0, 1, ci.fold_stride))]
                pos = (cb, yy, xx)
                en_bits = []
                for i in range(nb):
                    pcb, pyy, pxx = pos
                    rvalid = Signal(name=f"row_valid{i}")
                    m.d.comb += rvalid.eq(issue & (bi * nb + i < rows))
                    for ln in range(c0):
                        f, tap, r, s = (Signal(32, name=f"f{i}_{ln}"), Signal(32, name=f"tap{i}_{ln}"),
                                        Signal(32, name=f"r{i}_{ln}"), _like(Op.LOAD_INP, "fold_kw", f"s{i}_{ln}"))
                        c = Signal(16, name=f"c{i}_{ln}")
                        y, x = Signal(signed(34), name=f"y{i}_{ln}"), Signal(signed(34), name=f"x{i}_{ln}")
                        ok = Signal(name=f"ok{i}_{ln}")
                        m.d.comb += [
                            f.eq(ci.c_base + pcb * c0 + ln),
                            tap.eq(f // ci.t_c), c.eq(f % ci.t_c),
                            r.eq(tap // fkw), s.eq(tap % fkw),
                            y.eq(ci.y0 + pyy * fs + r), x.eq(ci.x0 + pxx * fs + s),
                            ok.eq(rvalid & (tap < fkh * fkw) & (y >= 0) & (y < ci.t_h) & (x >= 0) & (x < ci.t_w)),
                            lane_addr[i * c0 + ln].eq(ci.src_addr + (y * ci.t_w + x) * ci.t_c + c),
                        ]
                        en_bits.append(ok)
                    wrap_x, wrap_y = Signal(name=f"wrap_x{i}"), Signal(name=f"wrap_y{i}")
                    m.d.comb += [wrap_x.eq(pxx + 1 == ci.win_w), wrap_y.eq(wrap_x & (pyy + 1 == ci.win_h))]
                    npos = (_like(Op.LOAD_INP, "n_cblk", f"cb{i + 1}"), _like(Op.LOAD_INP, "win_h", f"yy{i + 1}"),
                            _like(Op.LOAD_INP, "win_w", f"xx{i + 1}"))
                    m.d.comb += [npos[0].eq(Mux(wrap_y, pcb + 1, pcb)),
                                 npos[1].eq(Mux(wrap_x, Mux(wrap_y, 0, pyy + 1), pyy)),
                                 npos[2].eq(Mux(wrap_x, 0, pxx + 1))]
                    pos = npos
                nxt["inp"] = pos
                m.d.comb += [
                    lane_en.eq(Cat(*en_bits)),
                    beat_bytes.eq(Mux(ci.src_gb, 0, sum(en_bits))),
                    w_target.eq(LoadTarget.INPUT),
                    w_addr.eq(ci.dst_addr + bi * nb),
                    w_count.eq(_min(rows - bi * nb, nb)),
                ]
            with m.Case(Op.LOAD_WGT):
                en_bits = []
                for v in range(nb):
                    j = jb * nb + v
                    for ln in range(c0):
                        idx = wr_row * c0 + ln
                        en_bits.append(issue & (j < cw.n_out) & (idx < cw.chan))
                        lane = Mux(cw.lane_stride == 0, 1, cw.lane_stride)
                        m.d.comb += lane_addr[v * c0 + ln].eq(cw.src_addr + j * cw.out_stride + idx * lane)
                m.d.comb += [
                    lane_en.eq(Cat(*en_bits)),
                    w_target.eq(LoadTarget.WEIGHT),
                    w_addr.eq(cw.dst_addr + wr_row), w_sel.eq(jb), w_count.eq(nb),
                ]
            with m.Case(Op.LOAD_PARAM):
                en_bits = []
                for e in range(ne):
                    for byte in range(PARAM_ENTRY_BYTES):
                        ent = pbase + e
                        en_bits.append(issue & (ent < cp.n_entries))
                        m.d.comb += lane_addr[e * PARAM_ENTRY_BYTES + byte].eq(
                            cp.src_addr + ent * PARAM_ENTRY_BYTES + byte)
                m.d.comb += [
                    lane_en.eq(Cat(*en_bits)),
                    w_target.eq(LoadTarget.PARAM),
                    w_addr.eq(cp.dst_addr + pbase),
                    w_count.eq(_min(cp.n_entries - pbase, ne)),
                ]
            with m.Case(Op.LOAD_GB):
                en_bits = []
                for i in range(g):
                    en_bits.append(issue & (gbase + i < cgb.n_bytes))
                    m.d.comb += lane_addr[i].eq(cgb.src_addr + gbase + i)
                m.d.comb += lane_en.eq(Cat(*en_bits))

        # The global buffer (hw/rtl/global_buffer.py): 2G/C0 banks; LOAD_GB beats never
        # conflict, a LOAD_INP gather that needs two rows of one bank raises error (DATA).
        # Reads are transparent so a LOAD_INP right after the LOAD_GB that fills it sees
        # the last beat.
        from_gb = Signal()
        m.d.comb += from_gb.eq((op == Op.LOAD_INP) & ci.src_gb)
        m.submodules.gb = gb = GlobalBuffer(cfg)
        gb_bad = gb.conflict
        for i in range(g):
            m.d.comb += [gb.r_addr[i].eq(lane_addr[i]), gb.r_en[i].eq(lane_en[i] & from_gb)]
            gb_bad = gb_bad | (lane_en[i] & from_gb & (lane_addr[i] >= cfg.global_buf_bytes))
        m.d.comb += [self.dram.en.eq(Mux(from_gb, 0, lane_en)), self.dram.addr.eq(lane_addr)]

        # ---- write stage: the gathered bytes arrive one cycle later -------------------------
        wv = Signal()
        w_mask = Signal(g)
        w_pes = Signal(cfg.num_pe)     # the next instruction may latch its PE set meanwhile
        w_gb, w_from_gb = Signal(), Signal()      # beat writes the global buffer / reads from it
        w_gbaddr = Signal(32)
        m.d.sync += [wv.eq(issue), w_mask.eq(lane_en), w_pes.eq(mask), w_gb.eq(op == Op.LOAD_GB),
                     w_from_gb.eq(from_gb), w_gbaddr.eq(cgb.dst_addr + gbase)]
        for name, sig, out in (("target", w_target, self.ld_target), ("addr", w_addr, self.ld_addr),
                               ("sel", w_sel, self.ld_sel), ("count", w_count, self.ld_count)):
            reg = Signal.like(sig, name=f"w_{name}_q")
            m.d.sync += reg.eq(sig)
            m.d.comb += out.eq(reg)
        bytes_in = [Mux(w_mask[i], Mux(w_from_gb, gb.r_data[i], self.dram.data[i]), 0) for i in range(g)]
        m.d.comb += [
            self.ld_data.eq(Cat(*bytes_in)),
            self.pe_en.eq(Mux(wv & ~w_gb, w_pes, 0)),
        ]
        m.d.comb += [gb.w_en.eq(wv & w_gb), gb.w_addr.eq(w_gbaddr), gb.w_mask.eq(w_mask),
                     gb.w_data.eq(self.dram.data)]
        with m.If(gb_bad):
            m.d.sync += self.error.eq(1)
        bad_shift = Const(0, 1)
        for e in range(ne):
            shift = bytes_in[e * PARAM_ENTRY_BYTES + entry_offset(PARAM_ENTRY, "shift")]
            bad_shift = bad_shift | ((e < self.ld_count) & (shift > MAX_SHIFT))
        with m.If(wv & (self.ld_target == LoadTarget.PARAM) & bad_shift):
            m.d.sync += self.error.eq(1)

        # ---- timing shell -------------------------------------------------------------------
        credit_now = Signal(signed(48))
        m.d.comb += credit_now.eq(credit + bw - beat_bytes)
        bi_next = bi + issue
        free = Signal()
        m.d.comb += [
            free.eq(busy & (bi_next >= beats) & (credit_now >= 0)),
            self.ready.eq(~busy | free),
            self.idle.eq(~busy & (self.now >= last_end)),
            self.push_next.eq(free & push_flag),
            self.push_ts.eq(self.now + first),
        ]
        with m.If(busy):
            m.d.sync += [bi.eq(bi_next), credit.eq(credit_now)]
        with m.If(issue):
            with m.Switch(op):
                with m.Case(Op.LOAD_INP):
                    m.d.sync += [cb.eq(nxt["inp"][0]), yy.eq(nxt["inp"][1]), xx.eq(nxt["inp"][2])]
                with m.Case(Op.LOAD_WGT):
                    last_j = jb == k0 // nb - 1
                    m.d.sync += [jb.eq(Mux(last_j, 0, jb + 1)), wr_row.eq(wr_row + last_j)]
                with m.Case(Op.LOAD_PARAM):
                    m.d.sync += pbase.eq(pbase + ne)
                with m.Case(Op.LOAD_GB):
                    m.d.sync += gbase.eq(gbase + g)
        with m.If(free):
            m.d.sync += [busy.eq(0), last_end.eq(self.now + first)]

        # ---- start: latch the instruction and what the shell needs -------------------------
        mask_h = _pe_mask(hi, cfg.num_pe)     # the PE set has the same position in all three
        with m.If(self.start):
            m.d.sync += [cur.eq(h), busy.eq(1), bi.eq(0), push_flag.eq(_view(Op.NOP, h).push_next),
                         mask.eq(mask_h), cb.eq(0), yy.eq(0), xx.eq(0), wr_row.eq(0), jb.eq(0), pbase.eq(0),
                         gbase.eq(0), rows.eq(hi.n_cblk * hi.win_h * hi.win_w)]
            with m.Switch(hop):
                for o in (Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM, Op.LOAD_GB):
                    with m.Case(o):
                        # hw.timing's terms; a LOAD_INP's DRAM bytes are counted per beat instead
                        n_beats, n_bytes, first_data = load_terms(o, Fields(_view(o, h)), cfg)
                        m.d.sync += [beats.eq(n_beats), credit.eq(0 if n_bytes is None else -n_bytes),
                                     first.eq(first_data)]
        return m


# ---- compute unit ---------------------------------------------------------------------------

class ComputeUnit(wiring.Component):
    """GEMM: the loop nest, one pixel per cycle on every PE."""

    def __init__(self, config: AcceleratorConfig):
        check_rtl_config(config)
        self._config = config
        super().__init__({
            **_unit_members(),
            "push_prev": Out(1), "push_next": Out(1), "push_ts": Out(CYCLE_BITS),
            "g_valid": Out(1), "g_first": Out(1), "g_inp": Out(config.input_addr_bits),
            "g_wgt": Out(config.weight_addr_bits), "g_acc": Out(config.accum_addr_bits),
            "g_dw": Out(1), "g_kw": Out(_LAYOUTS[Op.GEMM].members["kw"]),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        bw = cfg.dram_bytes_per_cycle
        h = self.insn
        hg = Fields(_view(Op.GEMM, h))
        hdr = _view(Op.NOP, h)
        # The contract's latency of the head GEMM (VEC is refused at dispatch: ErrorCode.UNSUPPORTED).
        lat = Signal(CYCLE_BITS)
        m.d.comb += lat.eq(gemm_cycles(hg))

        busy = Signal()
        end_at = Signal(CYCLE_BITS)
        m.d.comb += [
            self.ready.eq(~busy | (self.now >= end_at)),
            self.idle.eq(self.ready),
            self.push_prev.eq(self.start & hdr.push_prev),
            self.push_next.eq(self.start & hdr.push_next),
            self.push_ts.eq(self.now + lat),
        ]
        with m.If(busy & (self.now >= end_at)):
            m.d.sync += busy.eq(0)

        # GEMM loop nest: steps (cb, r, s) of `period` cycles, pixel p = (oy, ox) per cycle.
        cur = Signal(INSN_BITS)
        cg = _view(Op.GEMM, cur)
        active = Signal()
        steps, step = Signal(24), Signal(24)
        period, npix, p = Signal(25), Signal(24), Signal(25)
        oy, ox, r, s = (_like(Op.GEMM, name) for name in ("out_h", "out_w", "kh", "kw"))
        row_off, col_off, r_off, cb_base = Signal(32), Signal(32), Signal(32), Signal(32)
        plane, st_in_w = Signal(32), Signal(32)
        pix = p < npix
        m.d.comb += [
            self.g_valid.eq(active & pix),
            self.g_first.eq(~cg.accumulate & (step == 0)),
            self.g_inp.eq(cg.inp_addr + cb_base + r_off + s + row_off + col_off),
            self.g_wgt.eq(cg.wgt_addr + step),
            self.g_acc.eq(cg.acc_addr + p),
            self.g_dw.eq(cg.dw), self.g_kw.eq(cg.kw),
        ]
        with m.If(active):
            with m.If(p == period - 1):
                m.d.sync += [p.eq(0), oy.eq(0), ox.eq(0), row_off.eq(0), col_off.eq(0),
                             step.eq(step + 1)]
                with m.If(step + 1 == steps):
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

        in_h = (hg["out_h"] - 1) * hg["stride"] + hg["kh"]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), end_at.eq(self.now + lat), cur.eq(h),
                         active.eq((hdr.opcode == Op.GEMM) & (gemm_steps(hg) != 0)),
                         steps.eq(gemm_steps(hg)), step.eq(0), period.eq(gemm_period(hg)),
                         npix.eq(hg["out_h"] * hg["out_w"]), p.eq(0),
                         oy.eq(0), ox.eq(0), r.eq(0), s.eq(0), row_off.eq(0), col_off.eq(0),
                         r_off.eq(0), cb_base.eq(0), plane.eq(in_h * hg["in_w"]),
                         st_in_w.eq(hg["stride"] * hg["in_w"])]
        return m


# ---- store unit -----------------------------------------------------------------------------

class StoreUnit(wiring.Component):
    """STORE: every selected PE post-processes one pixel per cycle; bytes scattered to DRAM.

    Cycle t (start) latches the instruction and the PE set; t+1 computes per-PE channel
    and row origins, the in-bounds byte count and asks the PEs for their parameters;
    t+2 knows the contract latency (and pushes the token) and issues pixel 0; a pixel
    issued at c is written at c+4.
    """

    def __init__(self, config: AcceleratorConfig):
        check_rtl_config(config)
        self._config = config
        w = config.num_pe * config.k0
        super().__init__({
            **_unit_members(),
            "push_prev": Out(1), "push_ts": Out(CYCLE_BITS),
            "s_param_load": Out(1), "s_param_addr": Out(range(config.param_depth)),
            "s_valid": Out(1), "s_acc": Out(config.accum_addr_bits), "s_relu": Out(1),
            "s_y": In(data.ArrayLayout(int8_vector(config.k0), config.num_pe)),
            "dram": Out(DramWriteSignature(w)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        n, k0, bw = cfg.num_pe, cfg.k0, cfg.dram_bytes_per_cycle
        h = self.insn
        hs = _view(Op.STORE, h)
        cur = Signal(INSN_BITS)
        cs = _view(Op.STORE, cur)

        busy, timed, phase1, active, push_flag = Signal(), Signal(), Signal(), Signal(), Signal()
        t0, free_at, last_end = Signal(CYCLE_BITS), Signal(CYCLE_BITS), Signal(CYCLE_BITS)
        mask = Signal(n)
        col = [Signal(7, name=f"col{p}") for p in range(n)]
        pg = [Signal(7, name=f"pg{p}") for p in range(n)]
        kst = [Signal(32, name=f"kst{p}") for p in range(n)]      # first channel of PE p
        yst = [Signal(32, name=f"yst{p}") for p in range(n)]      # first output row of PE p
        base = [Signal(48, name=f"base{p}") for p in range(n)]    # DRAM address of its pixel 0
        nbytes = [Signal(40, name=f"nbytes{p}") for p in range(n)]
        row_pitch = Signal(32)
        npix = Signal(24)

        # Posted writes: the unit is free after the transfer (occupancy); the token and FENCE/END
        # wait for the DRAM latency on top (last_end).
        m.d.comb += [
            self.ready.eq(~busy | (timed & (self.now >= free_at))),
            self.idle.eq(~busy & (self.now >= last_end)),
        ]
        with m.If(busy & timed & (self.now >= free_at)):
            m.d.sync += [busy.eq(0), timed.eq(0)]

        # t: latch, PE set and (column, row group) of every PE (hw.timing.pe_positions).
        def hold(value, name):
            # Signals, not expressions: each step uses the previous column twice, so nesting
            # the expressions would double them at every PE (2**num_pe terms).
            sig = Signal(7, name=name)
            m.d.comb += sig.eq(value)
            return sig

        positions = pe_positions(n, hs.pe_k, hold)
        with m.If(self.start):
            m.d.sync += [cur.eq(h), busy.eq(1), timed.eq(0), phase1.eq(1), t0.eq(self.now),
                         mask.eq(_pe_mask(hs, n)), push_flag.eq(_view(Op.NOP, h).push_prev)]
            for p, (c, q) in enumerate(positions):
                m.d.sync += [col[p].eq(c), pg[p].eq(q)]

        # t+1: per-PE origins and in-bounds bytes (hw.timing.store_pe_tile); parameters into the lanes.
        m.d.comb += [self.s_param_load.eq(phase1), self.s_param_addr.eq(cs.param_addr)]
        with m.If(phase1):
            m.d.sync += [phase1.eq(0), active.eq(1), npix.eq(cs.out_h * cs.out_w),
                         row_pitch.eq(cs.t_w * cs.k_pitch)]
            for p in range(n):
                k_first, y_first, tile_bytes = store_pe_tile(Fields(cs), col[p], pg[p])
                m.d.sync += [kst[p].eq(k_first), yst[p].eq(y_first),
                             base[p].eq(cs.dst_addr + (y_first * cs.t_w + cs.x0) * cs.k_pitch + k_first),
                             nbytes[p].eq(tile_bytes)]

        # t+2: the contract's occupancy and latency from the byte count (hw.timing.store_timing;
        # a softmax epilogue's passes are refused at dispatch: ErrorCode.UNSUPPORTED).
        total = sum(Mux(mask[p], nbytes[p], 0) for p in range(n))
        occ, lat = store_timing(Fields(cs), total, cfg)
        starting_pixels = Signal()
        m.d.comb += [
            starting_pixels.eq(active & ~timed & busy),
            self.push_prev.eq(starting_pixels & push_flag),
            self.push_ts.eq(t0 + lat),
        ]
        with m.If(starting_pixels):
            m.d.sync += [timed.eq(1), free_at.eq(t0 + occ), last_end.eq(t0 + lat)]

        # Pixel beats from t+2: one pixel of every PE per cycle.
        p_i, oy, ox = Signal(24), _like(Op.STORE, "out_h"), _like(Op.STORE, "out_w")
        pix_off = Signal(48)
        beat = active & (p_i < npix)
        m.d.comb += [self.s_valid.eq(beat), self.s_acc.eq(cs.acc_addr + p_i), self.s_relu.eq(cs.act == Act.RELU)]
        with m.If(beat):
            m.d.sync += p_i.eq(p_i + 1)
            with m.If(ox == cs.out_w - 1):
                m.d.sync += [ox.eq(0), oy.eq(oy + 1), pix_off.eq(pix_off + row_pitch - (cs.out_w - 1) * cs.k_pitch)]
            with m.Else():
                m.d.sync += [ox.eq(ox + 1), pix_off.eq(pix_off + cs.k_pitch)]
        with m.Elif(active & timed):
            m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [p_i.eq(0), oy.eq(0), ox.eq(0), pix_off.eq(0), active.eq(0)]

        # Address pipeline: the PE results appear 4 cycles after the beat.
        dv, doy, dox, doff = beat, oy, ox, pix_off
        for stage in range(4):
            nv, noy, nox, noff = (Signal(name=f"dv{stage}"), _like(Op.STORE, "out_h", f"doy{stage}"),
                                  _like(Op.STORE, "out_w", f"dox{stage}"), Signal(48, name=f"doff{stage}"))
            m.d.sync += [nv.eq(dv), noy.eq(doy), nox.eq(dox), noff.eq(doff)]
            dv, doy, dox, doff = nv, noy, nox, noff
        x_ok = cs.x0 + dox < cs.t_w
        for p in range(n):
            row_ok = dv & mask[p] & x_ok & (yst[p] + doy < cs.t_h)
            for j in range(k0):
                lane = p * k0 + j
                m.d.comb += [
                    self.dram.en[lane].eq(row_ok & (j < cs.k_per_pe) & (kst[p] + j < cs.t_k)),
                    self.dram.addr[lane].eq(base[p] + doff + j),
                    self.dram.data[lane].eq(self.s_y[p][j]),
                ]
        return m


# ---- top level ------------------------------------------------------------------------------

class Accelerator(wiring.Component):
    """The accelerator of ``config``: executes ISA streams bit- and cycle-exactly.

    Parameters
    ----------
    config:
        The configuration; :func:`hw.rtl.pe_tile.check_rtl_config` lists what the RTL needs.
    pe_factory:
        Builds each PE (default :class:`PETile`); the export passes black boxes.
    imem_words:
        Depth of the instruction memory in words: fetching word ``imem_words`` raises
        ``error`` (OPCODE), so a stream without END never runs on past it.

    Members
    -------
    start: In(1)
        Pulse to start fetching at instruction 0; the next cycle is cycle 0.
    done, error: Out(1)
        ``done`` rises the cycle after END dispatched; ``error`` when the stream is
        malformed (``error_code`` says why, ``imem_addr`` points at the instruction).
    cycle: Out(CYCLE_BITS)
        Cycles since start (stops counting at done or error).
    imem_addr: Out(32), imem_data: In(256)
        Instruction fetch: byte address out, the 32-byte word answered combinationally.
    dram_rd: DramReadSignature(gb_bus_bytes)
        Byte gather, data one cycle after the request.
    dram_wr: DramWriteSignature(num_pe * K0)
        Byte scatter, written in the cycle the lanes are enabled.
    """

    export_prefix = "accelerator"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, "k": config.k0, "c": config.c0, "l": config.dram_latency,
                "b": config.dram_bytes_per_cycle}

    def __init__(self, config: AcceleratorConfig, *, pe_factory=PETile, imem_words: int = IMEM_WORDS):
        check_rtl_config(config)
        if not 1 <= imem_words <= IMEM_WORDS:
            raise ValueError(f"imem_words must be between 1 and {IMEM_WORDS}, not {imem_words!r}")
        self._config = config
        self._pe_factory = pe_factory
        self._imem_words = imem_words
        g, _, _ = load_geometry(config)
        super().__init__({
            "start": In(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode),
            "cycle": Out(CYCLE_BITS),
            "imem_addr": Out(32), "imem_data": In(INSN_BITS),
            "dram_rd": Out(DramReadSignature(g)),
            "dram_wr": Out(DramWriteSignature(config.num_pe * config.k0)),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        n = cfg.num_pe
        m.submodules.load = load = LoadUnit(cfg)
        m.submodules.compute = comp = ComputeUnit(cfg)
        m.submodules.store = store = StoreUnit(cfg)
        queues = {}
        for name in _QUEUE_NAMES.values():
            queues[name] = m.submodules[name] = _Fifo(INSN_BITS, QUEUE_DEPTH)
        tok = {}
        for name in TOKEN_FIFOS:
            tok[name] = m.submodules[f"tok_{name}"] = _Fifo(CYCLE_BITS, TOKEN_FIFO_DEPTH)
        pes = []
        for p in range(n):
            pe = self._pe_factory(cfg)
            m.submodules[f"pe{p}"] = pe
            pes.append(pe)

        running, halted = Signal(), Signal()
        pc = Signal(32)
        now = self.cycle
        with m.If(running):
            m.d.sync += now.eq(now + 1)
        with m.If(self.start & ~running & ~self.done & ~halted):
            m.d.sync += [running.eq(1), now.eq(0), pc.eq(0)]
        m.d.comb += self.imem_addr.eq(pc * (INSN_BITS // 8))

        # ---- units, queues and token FIFOs --------------------------------------------------
        # Each unit pops and pushes the token FIFOs hw.timing.TOKEN_LINKS names for its queue;
        # a unit's push strobe is named after its flag.
        units = {Queue.LOAD: load, Queue.COMPUTE: comp, Queue.STORE: store}
        for qid, unit in units.items():
            q = queues[_QUEUE_NAMES[qid]]
            head = _view(Op.NOP, q.r_data)
            links = {flag: name for flag, name in TOKEN_LINKS[qid].items() if name is not None}
            pops = {flag: name for flag, name in links.items() if flag.startswith("pop")}
            tok_ok = Const(1, 1)
            for flag, name in pops.items():
                f = tok[name]
                tok_ok = tok_ok & (~head[flag] | (f.r_valid & (f.r_data <= now)))
            start = Signal(name=f"start_{type(unit).__name__.lower()}")
            m.d.comb += [
                start.eq(running & q.r_valid & unit.ready & tok_ok),
                q.r_en.eq(start), unit.start.eq(start), unit.insn.eq(q.r_data), unit.now.eq(now),
            ]
            for flag, name in links.items():
                if flag in pops:
                    m.d.comb += tok[name].r_en.eq(start & head[flag])
                else:
                    m.d.comb += [tok[name].w_en.eq(getattr(unit, flag)), tok[name].w_data.eq(unit.push_ts)]

        # ---- PEs ----------------------------------------------------------------------------
        for p, pe in enumerate(pes):
            m.d.comb += [
                pe.ld_en.eq(load.pe_en[p]), pe.ld_target.eq(load.ld_target), pe.ld_addr.eq(load.ld_addr),
                pe.ld_sel.eq(load.ld_sel), pe.ld_count.eq(load.ld_count), pe.ld_data.eq(load.ld_data),
                pe.g_valid.eq(comp.g_valid), pe.g_first.eq(comp.g_first), pe.g_inp.eq(comp.g_inp),
                pe.g_wgt.eq(comp.g_wgt), pe.g_acc.eq(comp.g_acc), pe.g_dw.eq(comp.g_dw), pe.g_kw.eq(comp.g_kw),
                pe.s_param_load.eq(store.s_param_load), pe.s_param_addr.eq(store.s_param_addr),
                pe.s_valid.eq(store.s_valid), pe.s_acc.eq(store.s_acc), pe.s_relu.eq(store.s_relu),
                store.s_y[p].eq(pe.s_y),
            ]
        wiring.connect(m, wiring.flipped(self.dram_rd), load.dram)
        wiring.connect(m, wiring.flipped(self.dram_wr), store.dram)

        # ---- dispatch -----------------------------------------------------------------------
        word = self.imem_data
        op = _view(Op.NOP, word).opcode
        err = Signal(ErrorCode)
        views = {o: _view(o, word) for o in Op}
        hdr = views[Op.NOP]
        reserved_bad = Signal()
        range_bad = Signal()           # hw.timing.legality: the conditions check_insn refuses
        with m.Switch(op):
            for o in Op:
                with m.Case(o):
                    v = views[o]
                    if "reserved" in _LAYOUTS[o].members:
                        m.d.comb += reserved_bad.eq(v.reserved != 0)
                    if o == Op.VEC:
                        m.d.comb += reserved_bad.eq((v.reserved != 0) | (v.vec_op > max(VecOp)))
                    m.d.comb += range_bad.eq(any_of(0, *(bad for bad, _ in legality(o, Fields(v), cfg))))

        # Tokens in program order (hw.timing.TOKEN_LINKS), counted as hw.timing.schedule does.
        counts = {name: Signal(range(TOKEN_LIMIT + 1), name=f"tokens_{name}") for name in tok}
        queue_of = {o: QUEUE_OF[o] for o in Op}
        token_bad = Const(0, 1)
        pushes = {name: [] for name in tok}
        pops = {name: [] for name in tok}
        for qid in units:
            to_q = Signal(name=f"to_{_QUEUE_NAMES[qid]}")
            m.d.comb += to_q.eq(any_of(0, *((op == o) for o, x in queue_of.items() if x == qid)))
            for flag, name in TOKEN_LINKS[qid].items():
                if name is None:
                    token_bad = token_bad | (to_q & hdr[flag])          # no such neighbour
                elif flag.startswith("pop"):
                    token_bad = token_bad | (to_q & hdr[flag] & (counts[name] == 0))
                    pops[name].append(to_q & hdr[flag])
                else:
                    pushes[name].append(to_q & hdr[flag])
        new_counts = {}
        for name in tok:
            new_counts[name] = counts[name] + sum(pushes[name]) - sum(pops[name])
            token_bad = token_bad | (new_counts[name] > TOKEN_LIMIT)
        is_end = op == Op.END
        for name in tok:
            token_bad = token_bad | (is_end & (counts[name] != 0))

        all_idle = Signal()
        m.d.comb += all_idle.eq(load.idle & comp.idle & store.idle
                                & ~queues["lq"].r_valid & ~queues["cq"].r_valid & ~queues["sq"].r_valid)
        unsupported = Signal()
        with m.Switch(op):
            for o in Op:
                with m.Case(o):
                    m.d.comb += unsupported.eq(rtl_unsupported(o, Fields(views[o])))
        with m.If(running):
            with m.If((op == 0) | (op > max(Op)) | (pc == self._imem_words)):
                m.d.comb += err.eq(ErrorCode.OPCODE)
            with m.Elif(reserved_bad):
                m.d.comb += err.eq(ErrorCode.RESERVED)
            with m.Elif(unsupported):
                m.d.comb += err.eq(ErrorCode.UNSUPPORTED)
            with m.Elif(range_bad):
                m.d.comb += err.eq(ErrorCode.RANGE)
            with m.Elif(token_bad & (~is_end | all_idle)):
                m.d.comb += err.eq(ErrorCode.TOKEN)
            with m.Elif(load.error):
                m.d.comb += err.eq(ErrorCode.DATA)

        dispatch = Signal()
        with m.If(running & (err == ErrorCode.NONE)):
            with m.Switch(op):
                with m.Case(Op.NOP):
                    m.d.comb += dispatch.eq(1)
                with m.Case(Op.FENCE, Op.END):
                    m.d.comb += dispatch.eq(all_idle)
                for qid in units:
                    q = queues[_QUEUE_NAMES[qid]]
                    with m.Case(*[o for o, x in queue_of.items() if x == qid]):
                        m.d.comb += [dispatch.eq(q.w_rdy), q.w_en.eq(q.w_rdy)]
        for q in queues.values():
            m.d.comb += q.w_data.eq(word)
        with m.If(dispatch):
            m.d.sync += pc.eq(pc + 1)
            for name in tok:
                m.d.sync += counts[name].eq(new_counts[name])
            with m.If(is_end):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        with m.If(err != ErrorCode.NONE):
            m.d.sync += [running.eq(0), halted.eq(1), self.error.eq(1), self.error_code.eq(err)]
        return m
