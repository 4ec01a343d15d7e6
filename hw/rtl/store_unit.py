"""The store unit: every selected PE post-processes one pixel per cycle; the bytes are scattered to DRAM.

Cycle t (start) takes the instruction and the (column, row group) of every PE
(``hw.timing.pe_positions``); t+1 decodes its PE set into a register, computes each PE's channel
and row origin and asks the PEs for their parameters; t+2 issues pixel 0 and clips each PE's
extent to the tensor (``hw.timing.store_pe_extent``); t+3 and t+4 multiply it into the PE's bytes,
t+5 sums them; t+2 to t+4 form each PE's DRAM base, a product a cycle (``hw.timing.store_addr``);
t+6 has the contract's busy time and latency (``hw.timing.store_timing``, at least
``STORE_MIN_BUSY``), counted down from there; a pixel issued at c is written ``WRITE_DELAY``
cycles later.  Posted writes: the unit is free after the busy time (a down-counter), and
pushes its token then, with the rest of the latency as the token's wait; FENCE/END wait for
that rest too (``idle``).  A table activation is the PEs' (``st.table``).

Into the global buffer (``dst_gb``, ``hw.timing.store_gb_lanes``): a pixel's slot is a cycle per
beat (``ceil(pe_count / run)`` beats, runs of ``store_gb_run`` PEs' contiguous pixels), the
accumulators read in its first; ``WRITE_DELAY`` cycles later the member PEs' outputs leave on
``gb`` a beat a cycle in set order (one PE's K0 bytes, or a group's G), the first as they come,
the rest from a register that holds the pixel (``_gb_writes``); nothing goes to DRAM.

A softmax epilogue (``ep_row != 0``, ``hw.timing.store_beats``): from t+3 the row walk
(``hw.epilogue``, one PE a cycle; the beats wait ``epilogue_setup`` cycles from t+2) finds the lanes that start a row,
while every member PE's table entry 0 and output shift are checked; a broken rule raises
``error`` (DATA) and nothing is written.  Then the beats as without one, each pixel's lanes from the
PEs' post-processing streaming through the :class:`~hw.rtl.softmax_epilogue.SoftmaxEpilogue`
across all lanes, written ``store_pipeline`` cycles after its beat (into the global buffer the
epilogue's results held like the PEs' outputs); the beat's row and offset wait in a delay buffer
meanwhile.  With the table activation
the epilogue's table reads would meet the post-processing's, and it is built only where the
vector executor is (``hw.rtl.insn.rtl_unsupported``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..config import AcceleratorConfig
from ..epilogue import WalkState, member_bad, row_multiples, walk_end_bad, walk_pe
from ..expr import Fields
from ..isa import FIELD_BITS, INSN_BITS, Act, Op, Queue
from ..timing import (POST_PIPELINE, STORE_MIN_BUSY, epilogue_latency, epilogue_setup, gb_store_group, pe_positions,
                      store_addr, store_gb_lanes, store_gb_run, store_pe_clip, store_pipeline, store_tile_bytes,
                      store_tile_origin, store_timing)
from .buses import DramWriteSignature, StoreBusSignature
from .clock_gate import gate_clock
from .delay_buffer import DelayBuffer
from .global_buffer import GbWriteSignature
from .insn import field_signal, insn_view
from .kernel_unit import delay_line, delayed
from .pe_tile import check_rtl_config
from .postproc import PostProcessor
from .softmax_epilogue import SoftmaxEpilogue
from .unit import held, pe_mask, push_when, start_when, unit_members
from .vector_executor import builds_vector_unit

__all__ = ["StoreUnit"]

#: Cycles from a pixel's beat to its DRAM write: the PE's accumulator read and its
#: post-processing stages (within hw.timing.POST_PIPELINE).
WRITE_DELAY = 1 + PostProcessor.LATENCY
assert 3 <= WRITE_DELAY <= POST_PIPELINE    # 3: the stages of each PE's DRAM base (_pe_origins)
#: Bits of byte counts and busy times (out_h x out_w x k_per_pe x num_pe, clipped).
_COUNT_BITS = 48
#: The cycle after the start that loads the busy time (_pe_origins' stages come first): the busy
#: time's down-counter counts from the cycle after, and no STORE is free sooner.
_TIMED_AT = 6
assert STORE_MIN_BUSY >= _TIMED_AT + 1


def _byte(lane) -> Value:
    """A lane's value as the byte it is written as: the epilogue's probabilities (0..127) are
    narrower, and a lane packed beside another must be zero-extended first."""
    value = Value.cast(lane)
    return Cat(value, Const(0, 8 - len(value))) if len(value) < 8 else value


class StoreUnit(wiring.Component):
    """STORE (see the module docstring).

    Members
    -------
    insn, enable, idle, pop_prev, push_prev, push_next:
        The unit's queue and token ports (:mod:`hw.rtl.unit`).
    st: Out(StoreBusSignature(config, pes=num_pe))
        One accumulator entry per cycle to every PE; their outputs come back on ``st.y``.
    dram: Out(DramWriteSignature(num_pe * K0))
        The bytes of every selected PE's pixel.
    gb: Out(GbWriteSignature(config))
        With ``dst_gb``: one selected PE's pixel a cycle into the global buffer (its K0 bytes,
        contiguous), or a run of PEs' (``hw.timing.store_gb_run``: up to G contiguous bytes), the
        PEs of a pixel in set order (``hw.timing.store_gb_lanes``).
    error: Out(1)
        A softmax epilogue's rows, output shifts or table break the contract (ErrorCode.DATA), found
        before anything is written; held until the next STORE starts.
    active: Out(1)
        Low in the cycles after which no register of the unit would change: nothing starts, no
        STORE is busy, its latency's tail is over and its pipelines have settled (``settle``
        cycles after it was free).  The enable of the unit's clock gate (``Accelerator``).
    """

    export_prefix = "store_unit"
    #: its softmax epilogue (built once) is a module of its own Verilog, named under it
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, "k": config.k0, "l": config.dram_latency, "b": config.dram_bytes_per_cycle,
                "d": config.accum_depth, "p": config.param_depth}

    def __init__(self, config: AcceleratorConfig, *, gate_factory=None):
        check_rtl_config(config)
        self._config = config
        self._gate_factory = gate_factory
        super().__init__({
            **unit_members(Queue.STORE, max_wait=config.dram_latency - 1),
            "st": Out(StoreBusSignature(config, pes=config.num_pe)),
            "dram": Out(DramWriteSignature(config.num_pe * config.k0)),
            "gb": Out(GbWriteSignature(config)),
            "error": Out(1), "active": Out(1),
        })
        # built where the vector executor is (builds_vector_unit; the dispatcher refuses the
        # epilogue elsewhere): its Verilog grows with the lanes (e_small's 64: 4.7 MB)
        self._epilogue, self._ep_delay = None, 0
        if builds_vector_unit(config):
            self._epilogue = epi = SoftmaxEpilogue(config.num_pe * config.k0)
            assert epi.latency == epilogue_latency(config), "hw.timing's epilogue latency is not the RTL's"
            self._ep_delay = epi.latency
        assert store_pipeline({"ep_row": 0}, config) == POST_PIPELINE
        assert store_pipeline({"ep_row": 1}, config) >= WRITE_DELAY + self._ep_delay
        # cycles the unit stays clocked after it is free: its last pixel is written by then
        # (hw.timing.store_timing), and every register that follows another each cycle (the write
        # delay lines, the stages of each PE's origin and bytes) then holds what it holds while idle
        self._settle = WRITE_DELAY + self._ep_delay + _TIMED_AT

    def elaborate(self, platform):
        m = Module()
        n = self._config.num_pe
        cur = Signal(INSN_BITS)
        cs = insn_view(Op.STORE, cur)
        busy, timed, setup, active = Signal(), Signal(), Signal(), Signal()
        occ_left = Signal(_COUNT_BITS)
        free = busy & timed & (occ_left == 0)
        start = start_when(m, self, Queue.STORE, free=~busy | free)
        head = insn_view(Op.STORE, self.insn.payload)

        # t: the instruction and the (column, row group) of every PE; the PE set is decoded from
        # the registered instruction (never from the queue's head) and holds from t+2 on.
        mask = Signal(n)
        # a column below pe_k, a row group at most p: pe_k's field holds either
        col = [field_signal(Op.STORE, "pe_k", name=f"col{p}") for p in range(n)]
        grp = [field_signal(Op.STORE, "pe_k", name=f"group{p}") for p in range(n)]
        positions = pe_positions(n, head.pe_k)
        m.d.sync += mask.eq(pe_mask(cs, n))
        with m.If(start):
            m.d.sync += [cur.eq(self.insn.payload), busy.eq(1), timed.eq(0), setup.eq(1)]
            for p, (c, q) in enumerate(positions):
                m.d.sync += [col[p].eq(c), grp[p].eq(q)]
        with m.Elif(free):
            m.d.sync += [busy.eq(0), timed.eq(0)]

        kst, yst, base, total, clip, starting, ext_k = self._pe_origins(m, cs, setup, active, mask, col, grp)
        ep = Signal()               # a softmax epilogue (refused at dispatch where it is not built)
        m.d.comb += ep.eq((cs.ep_row != 0) if self._epilogue else 0)
        nk = [Mux(mask[p], ext_k[p], 0) for p in range(n)]
        waiting, rows = self._rows(m, cs, start, (setup, clip), ep, col, kst, nk) if self._epilogue else (0, None)
        beat = self._pixels(m, cs, start, setup, active, timed, waiting)
        self._writes(m, cs, beat, mask, kst, yst, base, ep, rows, nk, busy)
        tail = self._shell(m, cs, starting, free, occ_left, total, timed, busy)
        settle = Signal(range(self._settle + 1))
        with m.If(busy):
            m.d.sync += settle.eq(self._settle)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        m.d.comb += self.active.eq(start | busy | (tail != 0) | (settle != 0))
        return m

    def _pe_origins(self, m, cs, setup, active, mask, col, grp):
        """t+1: each PE's first channel and row (``store_tile_origin``); the parameters into the
        lanes; the pixels start.  t+2: each PE's in-bounds extents (``store_pe_clip``).  t+3, t+4:
        its bytes, its pixels then its channels (``store_tile_bytes``), a product a stage; t+5
        the selected PEs' sum (the PE set holds from t+2) into the busy time's stages (``_shell``).
        Returns (kst, yst, base, the sum, the extents' strobe (t+2), the strobe of cycle
        _TIMED_AT, the channel extents)."""
        n = self._config.num_pe
        kst = [Signal(32, name=f"kst{p}") for p in range(n)]
        yst = [Signal(32, name=f"yst{p}") for p in range(n)]
        base = [Signal(48, name=f"base{p}") for p in range(n)]
        # an extent is at most its field (k_per_pe, out_h, out_w): the products stay that narrow
        ext_k = [field_signal(Op.STORE, "k_per_pe", f"ext_k{p}") for p in range(n)]
        ext_y = [field_signal(Op.STORE, "out_h", f"ext_y{p}") for p in range(n)]
        ext_x = field_signal(Op.STORE, "out_w", "ext_x")
        nbytes = [Signal(40, name=f"nbytes{p}") for p in range(n)]
        strobes = [setup]                                   # t+1 ... t+_TIMED_AT
        for i in range(2, _TIMED_AT + 1):
            strobes.append(Signal(name=f"setup_t{i}"))
            m.d.sync += strobes[-1].eq(strobes[-2])
        clip, starting = strobes[1], strobes[-1]
        m.d.comb += [self.st.param_load.eq(setup), self.st.param_addr.eq(cs.param_addr)]
        with m.If(setup):
            m.d.sync += [setup.eq(0), active.eq(1)]
            for p in range(n):
                m.d.sync += [v.eq(e) for v, e in zip((kst[p], yst[p]), store_tile_origin(Fields(cs), col[p], grp[p]))]
        with m.If(clip):
            for p in range(n):
                nk, ny, nx = store_pe_clip(Fields(cs), kst[p], yst[p])
                m.d.sync += [ext_k[p].eq(nk), ext_y[p].eq(ny), ext_x.eq(nx)]
        # the DRAM address of each PE's pixel 0, a product a stage from t+2 (kst, yst hold from there
        # on): ready at t+5, before the first write at t+2+WRITE_DELAY
        for p in range(n):
            m.d.sync += base[p].eq(store_addr(Fields(cs), yst[p], cs.x0, kst[p], held(m, 48, f"pe{p}_", "sync")))
            m.d.sync += nbytes[p].eq(store_tile_bytes(ext_k[p], ext_y[p], ext_x, held(m, 24, f"pe{p}_tile_", "sync")))
        # the PE set chooses in the sum, not behind the products
        total = Signal(_COUNT_BITS)
        m.d.comb += total.eq(sum(Mux(mask[p], nbytes[p], 0) for p in range(n)))
        return kst, yst, base, total, clip, starting, ext_k

    def _shell(self, m, cs, starting, free, occ_left, total, timed, busy):
        """t + _TIMED_AT: the busy time (a down-counter reaching 0 at t + occupancy, which is at
        least ``STORE_MIN_BUSY`` > _TIMED_AT) and the rest of the latency after it, which the
        token waits and ``idle`` counts down.  The contract's pixel count and transfer time are
        registers (``store_timing``'s ``hold``): the pixel count from t+2, its slots from t+3, the
        beats from t+4, the transfer time formed at t+5 from them and the bytes' sum.  Returns the
        tail's down-counter."""
        occ, lat = store_timing(Fields(cs), total, self._config, held(m, _COUNT_BITS, "busy_", "sync"))
        rest = Signal(range(self._config.dram_latency))      # latency - occupancy - 1
        tail = Signal.like(rest)
        with m.If(starting):
            m.d.sync += [timed.eq(1), occ_left.eq(occ - _TIMED_AT - 1), rest.eq(lat - occ - 1)]
        with m.Elif(occ_left != 0):
            m.d.sync += occ_left.eq(occ_left - 1)
        with m.If(free):
            m.d.sync += tail.eq(Mux(tail > rest, tail - 1, rest))
        with m.Elif(tail != 0):
            m.d.sync += tail.eq(tail - 1)
        # every token the STORE pushes (to COMPUTE, to LOAD) is available when it ends
        push_when(m, self, Queue.STORE, free, insn_view(Op.NOP, cs.as_value()), rest)
        m.d.comb += self.idle.eq(~busy & (tail == 0))
        return tail

    def _rows(self, m, cs, start, strobes, ep, col, kst, nk):
        """A softmax epilogue's setup: the beats wait ``epilogue_setup`` cycles from t+2; the walk of
        ``hw.epilogue`` over the PEs, one a cycle from t+3 (the extents are in), into the lanes'
        row starts, which the first pass needs only after the post-processing; meanwhile every
        member PE's table entry 0 (through the table ports) and output shift are checked.
        ``error`` rises after the walk, before any write, if a rule is broken.  ``strobes``: t+1,
        t+2.  Returns (the beats wait, (row starts, the lanes' table addresses while checking))."""
        setup, clip = strobes
        n, k0 = self._config.num_pe, self._config.k0
        setup_cycles = epilogue_setup(self._config)
        walk, waiting = Signal(range(n + 2)), Signal(range(setup_cycles + 1))
        walking, checking = Signal(), Signal()
        m.d.comb += [walking.eq(walk < n), checking.eq(ep & (walk != 0) & (walk <= n))]
        multiples = [Signal(FIELD_BITS[Op.STORE]["ep_row"] + k.bit_length(), name=f"ep_mult{k}") for k in range(k0 + 1)]
        state = WalkState(*(Signal(shape, name=f"walk_{name}") for name, shape in
                            (("pos", len(multiples[0])), ("seen", 1), ("expect", 33), ("bad", 1))))
        starts = Signal(n * k0)
        step, after = walk_pe(state, Array(col)[walk], Array(kst)[walk], Array(nk)[walk], multiples, k0)
        with m.If(setup):
            m.d.sync += waiting.eq(Mux(ep, setup_cycles, 0))
        with m.Elif(waiting != 0):
            m.d.sync += waiting.eq(waiting - 1)
        with m.If(clip):
            m.d.sync += [walk.eq(Mux(ep, 0, n + 1)),
                         *(mult.eq(v) for mult, v in zip(multiples, row_multiples(cs.ep_row, k0))),
                         *(getattr(state, f).eq(0) for f in ("pos", "seen", "expect", "bad"))]
        with m.Else():
            with m.If(walk <= n):
                m.d.sync += walk.eq(walk + 1)
            with m.If(walking):
                m.d.sync += [getattr(state, f).eq(getattr(after, f)) for f in ("pos", "seen", "expect", "bad")]
                with m.Switch(walk):
                    for p in range(n):
                        with m.Case(p):
                            m.d.sync += starts[p * k0:(p + 1) * k0].eq(Cat(*step))
        # the checks of sim.functional: each member PE's output shift and exponential of 0
        table_bad = Signal()
        for p in range(n):
            wrong = member_bad(self.st.ep_shift[p], Value.cast(self.st.ep_data[p][0]))
            with m.If(checking & (nk[p] != 0) & wrong):
                m.d.sync += table_bad.eq(1)
        with m.If(start):
            m.d.sync += [table_bad.eq(0), self.error.eq(0)]
        with m.Elif(ep & (walk == n + 1)):          # the walk and every check are in
            m.d.sync += self.error.eq(walk_end_bad(state) | table_bad)
        return waiting, (starts, walking | checking)

    def _pixels(self, m, cs, start, setup, active, timed, waiting):
        """Pixel beats from t+2 (after the row walk with an epilogue), one pixel of every PE per cycle.
        Returns the beat (valid, pixel's row, column, DRAM offset, global-buffer slot, its beat)."""
        npix, slot = Signal(24), Signal(24)
        done = Signal()
        oy, ox = field_signal(Op.STORE, "out_h"), field_signal(Op.STORE, "out_w")
        # the pixel's DRAM offset (oy*t_w + ox)*k_pitch: its row's and its column's, each a counter
        # (row_pitch = t_w*k_pitch, a product of fields with no sum before it)
        row_pitch, row_off, col_off = Signal(48), Signal(48), Signal(48)
        pix_off = Signal(48)
        m.d.comb += pix_off.eq(row_off + col_off)
        running = active & (waiting == 0) & ~done
        # a pixel's slot: a cycle, or into the global buffer a cycle per beat of member PEs (``sub``,
        # ``gb_slots`` of them: store_gb_lanes), the accumulators read in its first
        sub = field_signal(Op.STORE, "pe_count", "gb_sub")
        gb_slots = field_signal(Op.STORE, "pe_count", "gb_slots")
        slot_on = running & (slot < npix)
        beat = slot_on & (sub == 0)
        to_gb = slot_on & cs.dst_gb
        more = to_gb & (sub + 1 != gb_slots)
        m.d.comb += [self.st.valid.eq(beat), self.st.acc.eq(cs.acc_addr + slot), self.st.relu.eq(cs.act == Act.RELU),
                     self.st.table.eq(cs.act == Act.TABLE)]
        with m.If(more):
            m.d.sync += sub.eq(sub + 1)
        with m.Elif(running):
            m.d.sync += sub.eq(0)
            with m.If(slot + 1 >= npix):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
                with m.If(ox == cs.out_w - 1):
                    m.d.sync += [ox.eq(0), oy.eq(oy + 1), row_off.eq(row_off + row_pitch), col_off.eq(0)]
                with m.Else():
                    m.d.sync += [ox.eq(ox + 1), col_off.eq(col_off + cs.k_pitch)]
        with m.Elif(active & timed & (waiting == 0)):          # every pixel done
            m.d.sync += active.eq(0)
        with m.If(start):
            m.d.sync += [slot.eq(0), done.eq(0), oy.eq(0), ox.eq(0), row_off.eq(0), col_off.eq(0), active.eq(0),
                         sub.eq(0)]
        with m.If(setup):
            m.d.sync += [npix.eq(cs.out_h * cs.out_w), row_pitch.eq(cs.t_w * cs.k_pitch),
                         gb_slots.eq(store_gb_lanes(Fields(cs), self._config))]
        return beat, oy, ox, pix_off, to_gb, sub

    def _writes(self, m, cs, issued, mask, kst, yst, base, ep, rows, nk, busy):
        """The lanes of the pixel issued ``WRITE_DELAY`` cycles before, or with an epilogue
        ``WRITE_DELAY`` + its latency before (its result from the epilogue), into DRAM or the global
        buffer."""
        n, k0 = self._config.num_pe, self._config.k0
        beat, oy, ox, off, gb_slot, sub = issued
        flags = list(zip(*(delay_line(m, v, WRITE_DELAY + self._ep_delay, f"issued_{name}") for v, name in
                           ((beat & ~cs.dst_gb, "valid"), (gb_slot, "gb_valid"), (ep, "ep")))))
        # a beat is written from the tap of its own STORE's delay: a STORE without an epilogue has
        # its last beats the epilogue's delay back when the next, with one, starts (written once already)
        at_ep, at_plain = flags[WRITE_DELAY + self._ep_delay], flags[WRITE_DELAY]
        mine = Mux(ep, at_ep[-1], ~at_plain[-1])
        where = (oy, ox, off, sub)
        plain = [delayed(m, v, WRITE_DELAY, f"issued_{name}") for v, name in zip(where, ("oy", "ox", "off", "gb_sub"))]
        waited = self._epilogue_wait(m, plain)
        dv, dgb = (Mux(ep, e, p) & mine for e, p in zip(at_ep[:-1], at_plain[:-1]))
        doy, dox, doff, dsub = (Mux(ep, e, p) for e, p in zip(waited, plain))
        y = self._epilogue_lanes(m, ep, rows, nk, beat, busy) if self._epilogue else None
        ys = [self.st.y[p].as_value() for p in range(n)]
        if y:
            ys = [Mux(ep, Cat(*(_byte(v) for v in y[p * k0:(p + 1) * k0])), ys[p]) for p in range(n)]
        x_ok = cs.x0 + dox < cs.t_w
        for p in range(n):
            row_ok = dv & mask[p] & x_ok & (yst[p] + doy < cs.t_h) & ~self.error
            for j in range(k0):
                lane = p * k0 + j
                m.d.comb += [
                    self.dram.en[lane].eq(row_ok & (j < cs.k_per_pe) & (kst[p] + j < cs.t_k)),
                    self.dram.addr[lane].eq(base[p] + doff + j),
                    self.dram.data[lane].eq(Mux(ep, y[lane], self.st.y[p][j]) if y else self.st.y[p][j]),
                ]
        self._gb_writes(m, cs, (dgb, dsub), (doy, doff), ys, x_ok, kst, yst, base)

    def _gb_writes(self, m, cs, slot, pixel, ys, x_ok, kst, yst, base):
        """With ``dst_gb``: the pixel's member PEs in set order, one beat a cycle, the write delay
        after their slot's cycles (``slot``: valid, beat index; ``pixel``: its row, DRAM offset;
        ``ys``: each PE's output, the epilogue's with one): a run of ``hw.timing.store_gb_run``
        PEs from PE ``pe``, their K0 bytes side by side (lane group ``i`` PE ``pe + i``, a
        multiplexer each; one PE when the run is 1).  The first beat takes the outputs as they
        come (and holds them), the rest the held copy."""
        cfg = self._config
        n, k0, most = cfg.num_pe, cfg.k0, gb_store_group(cfg)
        valid, index = slot
        doy, doff = pixel
        held_y = [Signal(8 * k0, name=f"gb_held{p}") for p in range(n)]
        run = Signal(range(most + 1))
        pe, next_pe = Signal(range(max(n, 2))), Signal(range(max(n, 2)))
        m.d.comb += pe.eq(Mux(index == 0, cs.pe_first, next_pe))
        with m.If(valid):
            m.d.sync += next_pe.eq(pe + Mux(run == 1, cs.pe_step, run))
            with m.If(index == 0):
                m.d.sync += [h.eq(y) for h, y in zip(held_y, ys)]
        m.d.sync += run.eq(store_gb_run(Fields(cs), cfg))           # the fields hold from t
        k_first, y_first, pixel_base = Array(kst)[pe], Array(yst)[pe], Array(base)[pe]
        row_ok = valid & x_ok & (y_first + doy < cs.t_h) & ~self.error
        zeros = [Signal(8 * k0)] * (most - 1)                       # past the last PE: never a member
        now, kept = Array(ys + zeros), Array(held_y + zeros)
        lanes = min(most * k0, cfg.gb_bus_bytes)        # legality refuses dst_gb with K0 above G
        mask, data = [], []
        for i in range(lanes // k0):
            # PE pe + i, in the run and in the set: K0 channels after PE pe + i - 1's
            member = ((i < run) & (pe + i < cs.pe_first + cs.pe_count)) if i else 1
            mask += [row_ok & member & (j < cs.k_per_pe) & (k_first + i * k0 + j < cs.t_k) for j in range(k0)]
            data.append(Mux(index == 0, now[pe + i], kept[pe + i]))
        # a signal: each byte's slice of it then reads the signal, not the PEs' multiplexers again
        values = Signal(8 * lanes, name="gb_values")
        m.d.comb += values.eq(Cat(*data))
        m.d.comb += [self.gb.en.eq(row_ok), self.gb.addr.eq(pixel_base + doff), self.gb.mask.eq(Cat(*mask)),
                     *(self.gb.data[j].eq(values[8 * j:8 * j + 8]) for j in range(lanes))]

    def _epilogue_wait(self, m, values: list) -> list:
        """``values`` (a beat's row, column, offset and slot at the plain write tap) as they were the
        epilogue's latency before, from a delay buffer: the same width as the write tap's registers."""
        if not self._epilogue:
            return values
        widths = [len(Value.cast(v)) for v in values]
        m.submodules.issued_wait = wait = DelayBuffer(sum(widths), self._ep_delay)
        m.d.comb += wait.d.eq(Cat(*values))
        bounds = [sum(widths[:i]) for i in range(len(widths) + 1)]
        return [wait.q[a:b] for a, b in zip(bounds, bounds[1:])]

    def _epilogue_lanes(self, m, ep, rows, nk, beat, busy):
        """The softmax epilogue on every PE's post-processed lanes (``WRITE_DELAY`` after the beat),
        its table reads through the PEs' table ports (entry 0 while the setup checks it).  Returns
        its results, lane by lane.

        Its registers advance only while a STORE with an epilogue is busy (a clock gate, or a clock
        enable in Amaranth's simulator: ``hw.rtl.clock_gate.gate_clock``): the unit is free only
        after its last pixel is written (``hw.timing.store_timing``), and what it holds when it
        stops is no beat's, each pass's state rewritten before it is read."""
        n, k0 = self._config.num_pe, self._config.k0
        starts, checking = rows
        epi = self._epilogue
        gate_clock(m, "epilogue", epi, ep & busy, self._gate_factory)
        member = Cat(*(j < nk[p] for p in range(n) for j in range(k0)))
        m.d.comb += [epi.x.as_value().eq(self.st.y.as_value()), epi.start.eq(starts), epi.member.eq(member),
                     epi.valid.eq(delayed(m, beat & ep, WRITE_DELAY, "ep_valid")),
                     self.st.ep.eq(ep & busy)]      # not after the STORE: st.ep keeps the PEs' clocks and tables on
        for p in range(n):
            for j in range(k0):
                lane = p * k0 + j
                m.d.comb += [epi.out_shift[lane].eq(self.st.ep_shift[p]), epi.table_data[lane].eq(self.st.ep_data[p][j]),
                             self.st.ep_addr[p][j].eq(Mux(checking, 0, epi.table_addr[lane]))]
        return [epi.y[lane] for lane in range(n * k0)]
