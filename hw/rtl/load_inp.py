"""The LOAD_INP address generator: the G lanes of each beat, ``G/C0`` input rows of C0 channels.

Rows are walked in (channel block, window row, window column) order, ``G/C0`` rows a beat, and
nothing is divided or multiplied per lane: every address is a sum of counters.

Position
    The beat's first row has registered window counters (yy, xx), its pixel (Y, X) = (y0 +
    yy*fs, x0 + xx*fs) and that pixel's byte offset ``pix`` from the window origin; each other
    row i of the beat (and the next beat's first, i = G/C0) is one jump from it, every row at
    once: its window rows and channel blocks wrapped are counted against multiples of win_w and
    win_h (i and the wraps are small), no ripple from row to row.
Channels
    Lane l of channel block cb reads folded channel fch = c_base + cb*C0 + l, which is channel
    c of kernel tap (r, s): fch = (r*fold_kw + s)*t_c + c.  Each lane keeps (c, s, r) and its
    byte offset off = (r*t_w + s)*t_c + c for the channel block of the beat's first row; block
    j of the beat (fch + j*C0, j = 1 .. G/C0) is one jump of additions with one carry each
    (``_jump``, carry-select), with j*C0 = qc*t_c + rc and qc + w = qa_w*fold_kw + ra_w
    (w = 0, 1) formed once per instruction for every j: the blocks side by side, not a ripple.
Setup
    A plain LOAD_INP (one tap) divides nothing: lane l of block 0 is channel c_base + l, valid
    while below t_c (r counts the taps past the first; a lane once invalid stays so).  A folded
    one divides c_base + l by t_c, then the tap by fold_kw, serially, two quotient bits a
    cycle, the lane's offset growing by each digit of r (no product per lane); every jump's qc
    is divided by fold_kw beside the first division; the load unit counts the
    ``hw.timing.FOLD_SETUP`` cycles down on ``setup_left``.
Row and lane stages (``hw.timing.LANE_STAGE`` = 2)
    A beat's rows are registered with the bounds of their lanes' taps (row stage), then its
    lanes, their count and its rows (lane stage): the generator forms the rows of beat i+2 and
    the lanes of beat i+1 while beat i is out; beat 0's rows when ``setup_left`` = 2, its lanes
    when 1.  Beat i's enabled lanes are counted while it is out, from its registers, and the count
    reaches the unit's DRAM balance a cycle later (``hw.timing.INP_COUNT_LAG``).  So no path runs
    from the row counters to the lanes' outputs, nor from the lanes' logic into their count.

Start (``hw.timing.INP_START`` = 1)
    The fields are registered at the start; the products the stages add (the pixel steps of a
    few columns and window rows, the window origin's offset ``base``) are formed from those
    registers in the cycles after it, so no product of products runs from the queue's head.

A lane's address is ``base + pix + off`` (``base`` = src_addr + (y0*t_w + x0)*t_c, a product a
cycle from registers); it is enabled when its row
is in the load, r < fold_kh, the pixel (Y + r, X + s) lies in the tensor and its channel c is
below the bound ``chan`` (``hw.timing.load_inp_channel_ok``, a comparison per lane): the gather of
``hw.timing.load_inp_lanes``.
"""

from __future__ import annotations

import operator

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, FIELD_BITS, INSN_BITS, Op
from ..expr import Fields, balanced
from ..timing import (FOLD_CHANNEL_DIGITS, FOLD_DIGIT_BITS, FOLD_SETUP, FOLD_TAP_BITS, FOLD_TAP_DIGITS, INP_COUNT_LAG,
                      INP_START, LANE_STAGE, load_inp_channel_ok, load_inp_rows, load_inp_rows_bound)
from .buses import load_geometry
from .insn import field_signal, insn_view

__all__ = ["LoadInpLanes"]

#: Bits of a lane's tap row r: at most 2^12 after the setup (or 1 when plain), plus qc + 2 <= C0 + 2
#: per channel block for at most 4095 blocks.
_R_BITS = 20
#: Bits of a lane's channel c: below 2^25 at start, and c grows only while its lane is invalid.
_CHANNEL_WIDTH = FOLD_CHANNEL_DIGITS * FOLD_DIGIT_BITS   # the dividend c_base + lane, padded
_TAP_WIDTH = FOLD_TAP_DIGITS * FOLD_DIGIT_BITS
_C_BITS = _CHANNEL_WIDTH + 1
#: The tap row a lane is given when its tap is 2^FOLD_TAP_BITS or more: beyond every kernel.
_R_BEYOND = 1 << FIELD_BITS[Op.LOAD_INP]["fold_kh"]


def _fold_field(view, name: str):
    """A fold field (``fold_kh``, ``fold_kw``, ``fold_stride``) of an instruction view, 0 read as 1."""
    return Mux(view[name] == 0, 1, view[name])


#: The bounds of a row's taps (``LoadInpLanes._row_stage``).
_BOUNDS = ("ny", "hy", "nx", "hx")


def _bounds_y(ci, ys: list):
    """ny = -Y and hy = t_h - Y for each of the pixel rows ``ys``."""
    return [-y for y in ys], [ci.t_h - y for y in ys]


def _bounds_x(ci, xs: list):
    """nx = -X and hx = t_w - X for each of the pixel columns ``xs``."""
    return [-x for x in xs], [ci.t_w - x for x in xs]


def _bounds_of(ci, y, x) -> dict:
    (ny,), (hy,) = _bounds_y(ci, [y])
    (nx,), (hx,) = _bounds_x(ci, [x])
    return {"ny": ny, "hy": hy, "nx": nx, "hx": hx}


def _formed(m, values: list, shape, name: str) -> list:
    """A signal for each of ``values`` (the outcomes a choice picks from)."""
    sigs = [Signal(shape, name=f"{name}{v}") for v in range(len(values))]
    m.d.comb += [s.eq(v) for s, v in zip(sigs, values)]
    return sigs


def _chosen(m, wrapped, at_wrapped, at_plain, wrapped_outcomes: list, plain_outcomes: list, name: str):
    """``wrapped_outcomes[at_wrapped]`` when ``wrapped``, else ``plain_outcomes[at_plain]``."""
    def pick(outcomes, at):
        return outcomes[0] if len(outcomes) == 1 else Array(outcomes)[at]
    out = Signal.like(plain_outcomes[0], name=name)
    m.d.comb += out.eq(Mux(wrapped, pick(wrapped_outcomes, at_wrapped), pick(plain_outcomes, at_plain)))
    return out


class _Lane:
    """A lane's channel state: channel c, tap column s, tap row r, byte offset off."""

    def __init__(self, name: str):
        self.c = Signal(_C_BITS, name=f"{name}_c")
        self.s = Signal(6, name=f"{name}_s")
        self.r = Signal(_R_BITS, name=f"{name}_r")
        self.off = Signal(ADDR_BITS, name=f"{name}_off")

    def fields(self):
        return (self.c, self.s, self.r, self.off)


class _Divider:
    """A restoring divider of ``FOLD_DIGIT_BITS`` quotient bits a cycle: ``quo`` shifts the
    dividend out at the top and the quotient in at the bottom, ``rem`` is the partial remainder.
    Each cycle compares the partial remainder with 1, 2 and 3 times the divisor (``ge``; the
    digit is the number of them that hold), from registers only: ``multiples`` are registers
    of the instruction, shared by every divider of the same divisor, and the comparisons do not
    wait for the conditions of ``step`` (the start, the setup count), which only choose what the
    registers take."""

    def __init__(self, m, name: str, width: int, multiples):
        assert FOLD_DIGIT_BITS == 2 and width % FOLD_DIGIT_BITS == 0
        self.width = width
        self.quo = Signal(width, name=f"{name}_quo")
        self.rem = Signal(width + 1, name=f"{name}_rem")
        self._multiples = multiples
        self._partial = Signal(width + 3, name=f"{name}_partial")
        self.ge = [Signal(name=f"{name}_ge{k}") for k in (1, 2, 3)]
        m.d.comb += [self._partial.eq(Cat(self.quo[-2:], self.rem)),
                     *(g.eq(self._partial >= d) for d, g in zip(multiples, self.ge))]

    def step(self, m):
        """One digit."""
        ge, partial, d = self.ge, self._partial, self._multiples
        m.d.sync += [self.rem.eq(Mux(ge[2], partial - d[2], Mux(ge[1], partial - d[1], Mux(ge[0], partial - d[0], partial)))),
                     self.quo.eq(Cat(ge[0] ^ ge[1] ^ ge[2], ge[1], self.quo[:-2]))]

    def load(self, m, dividend):
        m.d.sync += [self.quo.eq(dividend), self.rem.eq(0)]


class _Gap:
    """gap = row_bytes - fold_kw*t_c, the offset a lane's tap row r adds beyond its folded channel
    (``LoadInpLanes._setup``), a register of the instruction's registers formed every cycle; and
    gap and 3 gap at the weight of the tap divider's next quotient digit: 4^(FOLD_TAP_DIGITS-1)
    from the cycle after ``load``, a quarter of it after each cycle of ``shift``."""

    def __init__(self, m, ci, k, *, load, shift):
        top = 2 * (FOLD_TAP_DIGITS - 1)
        self.gap, gap3 = Signal(ADDR_BITS, name="fold_gap"), Signal(ADDR_BITS, name="fold_gap3")
        self._w1, self._w3 = Signal(ADDR_BITS + top, name="fold_gap_digit"), Signal(ADDR_BITS + top, name="fold_gap3_digit")
        m.d.sync += [self.gap.eq(k["row_bytes"] - k["fold_kw"] * ci.t_c), gap3.eq(self.gap + (self.gap << 1))]
        with m.If(load):
            m.d.sync += [self._w1.eq(self.gap << top), self._w3.eq(gap3 << top)]
        with m.Elif(shift):
            m.d.sync += [self._w1.eq(self._w1 >> 2), self._w3.eq(self._w3 >> 2)]

    def times(self, ge):
        """digit*gap at the digit's weight (the digit: how many of the divider's comparisons ``ge`` hold)."""
        return Mux(ge[2], self._w3, Mux(ge[1], self._w1 << 1, Mux(ge[0], self._w1, 0)))[:ADDR_BITS]


class LoadInpLanes(wiring.Component):
    """The lanes of a LOAD_INP's beats (see the module docstring).

    Members
    -------
    insn: In(INSN_BITS)
        The queue's head, taken when ``start``.
    start: In(1)
        A LOAD_INP starts: its fields are registered and its setup begins.
    setup_left: In(range(FOLD_SETUP + INP_START + LANE_STAGE + 1))
        The load unit's setup count (``hw.timing.load_terms``' setup in the cycle after a start,
        then down to 0).
    step: In(1)
        This cycle is a beat: ``lane_*``, ``row_addr`` and ``rows`` describe it (registers, computed
        the cycle before).
    lane_en, lane_addr:
        The beat's G lanes: enabled (in the load and in the tensor) and their byte addresses.
    lane_en_count:
        How many lanes the previous cycle's beat enabled (0 after a cycle that was no beat): a
        register, counted from the beat's enables, which the load unit's DRAM balance takes
        ``hw.timing.INP_COUNT_LAG`` = 1 cycle after the beat.
    row_addr, rows:
        The first input-buffer row the beat writes and how many rows it writes.
    """

    export_prefix = "load_inp_lanes"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"c": config.c0, "g": config.gb_bus_bytes}

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        g, nb, _ = load_geometry(config)
        super().__init__({"insn": In(INSN_BITS), "start": In(1), "setup_left": In(range(FOLD_SETUP + INP_START + LANE_STAGE + 1)),
                          "step": In(1),
                          "lane_en": Out(g), "lane_addr": Out(data.ArrayLayout(ADDR_BITS, g)),
                          "lane_en_count": Out(range(g + 1)), "row_addr": Out(16), "rows": Out(range(nb + 1))})

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        _, nb, _ = load_geometry(cfg)
        cur = Signal(INSN_BITS)
        ci = insn_view(Op.LOAD_INP, cur)
        with m.If(self.start):
            m.d.sync += cur.eq(self.insn)
        assert LANE_STAGE == 2, "two stages below: the beat's rows, then its lanes"
        assert INP_COUNT_LAG == 1, "the count below: a register of the beat's enables"
        left, rows_ahead = Signal.like(self.setup_left, name="fold_left"), Signal(name="rows_ahead")
        # rows_ahead: the row counters move to the beat after the one they hold (the two stages'
        # cycles before the first beat, then every beat); left: the fold's setup, before INP_START
        before_rows = INP_START + LANE_STAGE
        m.d.comb += [rows_ahead.eq(self.step | ((self.setup_left != 0) & (self.setup_left <= LANE_STAGE))),
                     left.eq(Mux(self.setup_left > before_rows, self.setup_left - before_rows, 0))]
        k = self._constants(m, ci)
        lanes = [_Lane(f"lane{ln}") for ln in range(cfg.c0)]
        self._setup(m, ci, k, lanes, left)
        # block j of the beat is one jump of j blocks from block 0, every block at once (no ripple)
        blocks = [lanes] + [[self._jump(m, k, j, lane, f"blk{j}_{ln}") for ln, lane in enumerate(lanes)]
                            for j in range(1, nb + 1)]
        slots = self._rows(m, ci, k, rows_ahead)
        en_bits, lane_en = [], Signal.like(self.lane_en)
        for i, slot in enumerate(slots):
            for ln in range(cfg.c0):
                lane = self._pick(m, blocks[:i + 1], slot["k"], ln, f"slot{i}_{ln}")
                ok, addr = self._lane_out(m, k, slot, lane, f"{i}_{ln}")
                en_bits.append(ok)
                m.d.sync += self.lane_addr[i * cfg.c0 + ln].eq(addr)
        m.d.sync += lane_en.eq(Cat(*en_bits))
        m.d.comb += self.lane_en.eq(Mux(self.step, lane_en, 0))
        # the beat's count from its registered enables, taken by the unit a cycle late
        # (hw.timing.INP_COUNT_LAG): the population count is not behind the enables' logic; an
        # adder tree, not a chain of G adds (a chain of E's 512 lanes at 43356a9's 512-byte bus was
        # too deep to elaborate; E's bus is 256 B/cycle since b972466)
        m.d.sync += self.lane_en_count.eq(balanced(operator.add, list(self.lane_en), 0))
        # the lane stage's beat: the cycle before a beat (the setup's last cycle, or a beat)
        with m.If((self.step | (self.setup_left == 1)) & ~self.start):
            for ln, lane in enumerate(lanes):
                nxt = self._pick(m, blocks, slots[-1]["k_next"], ln, f"next_{ln}")
                m.d.sync += [a.eq(b) for a, b in zip(lane.fields(), nxt.fields())]
        return m

    # ---- constants of the instruction ------------------------------------------------------------

    def _constants(self, m, ci) -> dict:
        """Registered at start from the head (plain values; a folded setup replaces qa, ra, step)
        and the defaults of the fold fields.  Jump j (1 .. G/C0) has its own: j*C0 = qc*t_c + rc,
        qc + w = qa_w*fold_kw + ra_w, the offset steps, and tcm = t_c - rc (a carry of c is
        c >= tcm, found beside the sum)."""
        c0, h = self._config.c0, insn_view(Op.LOAD_INP, self.insn)
        _, nb, _ = load_geometry(self._config)
        jumps = range(nb + 1)           # jump 0 is unused: index by the jump's blocks
        top = nb * c0
        k = {name: Signal(ADDR_BITS, name=name) for name in ("base", "row_bytes")}
        k.update(qc=[Signal(range(top + 2), name=f"qc_j{j}") for j in jumps],
                 rc=[Signal(range(top + 1), name=f"rc_j{j}") for j in jumps],
                 tcm=[Signal(ci.t_c.shape(), name=f"tcm_j{j}") for j in jumps],
                 qa=[[Signal(range(top + 2), name=f"qa{w}_j{j}") for w in range(2)] for j in jumps],
                 ra=[[Signal(6, name=f"ra{w}_j{j}") for w in range(2)] for j in jumps],
                 step=[[Signal(ADDR_BITS, name=f"off_step{w}_j{j}") for w in range(4)] for j in jumps])
        k["t_c"], k["chan"] = ci.t_c, ci.chan
        for name in ("fold_kh", "fold_kw", "fold_stride"):
            k[name] = field_signal(Op.LOAD_INP, name, name)
            m.d.comb += k[name].eq(_fold_field(ci, name))
        fs = _fold_field(h, "fold_stride")
        for name, divisor in (("t_c", h.t_c), ("fold_kw", _fold_field(h, "fold_kw"))):
            triple = Signal(len(divisor) + 2, name=f"{name}_x3")
            with m.If(self.start):
                m.d.sync += triple.eq(divisor + (divisor << 1))
            k[f"{name}_x"] = (k[name], k[name] << 1, triple)       # the dividers' multiples
        row_bytes, origin = Signal(ADDR_BITS), Signal(ADDR_BITS, name="origin")
        m.d.comb += row_bytes.eq(h.t_w * h.t_c)
        # j * win_w, j * win_h, j * fold_stride for the rows' jumps of j <= G/C0 rows (``_row_jump``)
        for key, value in (("win_w", h.win_w), ("win_h", h.win_h), ("fs", fs)):
            k[f"{key}_x"] = [Signal(len(value) + nb.bit_length(), name=f"{key}_x{j}") for j in range(nb + 1)]
            with m.If(self.start):
                m.d.sync += [mul.eq(value * j) for j, mul in enumerate(k[f"{key}_x"])]
        with m.If(self.start):
            m.d.sync += k["row_bytes"].eq(row_bytes)
        # the pixel byte steps of j <= G/C0 columns and window rows, j*fs*t_c and j*fs*row_bytes
        # (``_row_jump``), each a product of registers of the start, formed every cycle: ready
        # INP_START cycle(s) after the start, when the row stage first reads them
        k["pix_x_x"] = [Signal(ADDR_BITS, name=f"pix_x_x{j}") for j in range(nb + 1)]
        k["pix_y_x"] = [Signal(ADDR_BITS, name=f"pix_y_x{j}") for j in range(nb + 1)]
        m.d.sync += [*(px.eq(fs_j * ci.t_c) for px, fs_j in zip(k["pix_x_x"], k["fs_x"])),
                     *(py.eq(fs_j * k["row_bytes"]) for py, fs_j in zip(k["pix_y_x"], k["fs_x"]))]
        # base = src_addr + (y0*t_w + x0)*t_c: a product a cycle from registers (the lane stage
        # first reads it INP_START + LANE_STAGE - 1 cycles after the start)
        assert INP_START + LANE_STAGE - 1 >= 2, "origin, then base, a cycle each after the start"
        m.d.sync += [origin.eq(ci.y0 * ci.t_w + ci.x0), k["base"].eq(ci.src_addr + origin * ci.t_c)]
        for j in jumps[1:]:
            qc_now, rc_now = Signal.like(k["qc"][j]), Signal.like(k["rc"][j])
            with m.Switch(h.t_c):          # j*C0 = qc*t_c + rc: a table of the constant j*C0, no divider
                for t in range(1, j * c0 + 1):
                    with m.Case(t):
                        m.d.comb += [qc_now.eq(j * c0 // t), rc_now.eq(j * c0 % t)]
                with m.Default():
                    m.d.comb += [qc_now.eq(0), rc_now.eq(j * c0)]
            with m.If(self.start):
                # plain: fold_kw = 1, so qa_w = qc + w, ra_w = 0; only the step of no carry reaches a
                # valid lane (a carry of c moves past the only tap), so every step is rc
                m.d.sync += [k["qc"][j].eq(qc_now), k["rc"][j].eq(rc_now), k["tcm"][j].eq(h.t_c - rc_now),
                             k["qa"][j][0].eq(qc_now), k["qa"][j][1].eq(qc_now + 1),
                             k["ra"][j][0].eq(0), k["ra"][j][1].eq(0), *(s.eq(rc_now) for s in k["step"][j])]
        return k

    # ---- setup: the first channel block of every lane ---------------------------------------------

    def _setup(self, m, ci, k, lanes, left):
        """Plain: at start.  Folded: c_base + l divided by t_c (FOLD_CHANNEL_DIGITS cycles), a cycle
        to pass the tap on, the tap divided by fold_kw into (r, s) (FOLD_TAP_DIGITS), a cycle to
        take them; meanwhile every jump's qc is divided by fold_kw and its steps formed
        (``_fold_steps``), taken in that last cycle too.

        The lane's offset needs no product of its own: with fch = tap*t_c + c and tap = r*fold_kw
        + s, off = r*row_bytes + s*t_c + c = fch + r*gap, gap = row_bytes - fold_kw*t_c (a
        register of the instruction).  off starts at fch and adds digit*gap*4^k for each quotient
        digit of r the cycle after the divider gives it (``_Gap``: gap, 2 gap, 3 gap at the digit's
        weight), so the comparisons and the addition are in cycles of their own."""
        h = insn_view(Op.LOAD_INP, self.insn)
        p1_end = FOLD_SETUP - FOLD_CHANNEL_DIGITS        # the cycle that passes the tap on
        p2_end = p1_end - 1 - FOLD_TAP_DIGITS           # the cycle that takes r and s
        assert p2_end == 1, "hw.timing.FOLD_SETUP is the schedule below"
        _, nb, _ = load_geometry(self._config)
        # each digit is added the cycle after its step, the last one in the cycle that takes r and s
        gap = _Gap(m, ci, k, load=left == p1_end - 1, shift=(left >= p2_end) & (left < p1_end - 1))
        steps = [None] + [self._fold_steps(m, k, j, left, gap.gap) for j in range(1, nb + 1)]
        tap_phase = Signal()                # the dividers divide the tap by fold_kw (else c_base + l by t_c)
        with m.If(self.start):
            m.d.sync += tap_phase.eq(0)
        with m.Elif(left == p1_end):
            m.d.sync += tap_phase.eq(1)
        multiples = [Mux(tap_phase, a, b) for a, b in zip(k["fold_kw_x"], k["t_c_x"])]
        for ln, lane in enumerate(lanes):
            div = _Divider(m, f"div{ln}", _CHANNEL_WIDTH, multiples)
            digit = Signal(3, name=f"div{ln}_digit")        # the last step's comparisons
            first = h.c_base + ln
            with m.If(self.start):
                div.load(m, first)
                m.d.sync += [lane.c.eq(first), lane.s.eq(0), lane.r.eq(first >= h.t_c), lane.off.eq(first)]
            with m.Elif(left > p1_end):
                div.step(m)
            with m.Elif(left == p1_end):
                beyond = div.quo[FOLD_TAP_BITS:].any()
                m.d.sync += [lane.c.eq(div.rem), lane.r.eq(Mux(beyond, _R_BEYOND, 0)), digit.eq(0)]
                div.load(m, div.quo[:FOLD_TAP_BITS] << (_CHANNEL_WIDTH - _TAP_WIDTH))
            with m.Elif(left > p2_end):
                div.step(m)
                m.d.sync += [digit.eq(Cat(*div.ge)), lane.off.eq(lane.off + gap.times(digit))]
            with m.Elif(left == p2_end):
                # a tap beyond every kernel leaves the lane invalid (r = _R_BEYOND), its offset unused
                m.d.sync += [lane.r.eq(Mux(lane.r == _R_BEYOND, _R_BEYOND, div.quo[:FOLD_TAP_BITS])),
                             lane.s.eq(div.rem[:6]), lane.off.eq(lane.off + gap.times(digit))]
        with m.If(~self.start & (left == p2_end)):
            for j in range(1, nb + 1):
                qa, ra, step = steps[j]
                m.d.sync += [*(a.eq(b) for a, b in zip(k["qa"][j] + k["ra"][j], qa + ra)),
                             *(a.eq(b) for a, b in zip(k["step"][j], step))]

    def _fold_steps(self, m, k, j, left, gap):
        """Jump j's qc = qa_0*fold_kw + ra_0 (a divider from the cycle after the start, done
        FOLD_TAP_DIGITS cycles later), qc + 1 = qa_1*fold_kw + ra_1, and the offset step of each
        carry pair (w1: of c, w2: of s).  By ``_setup``'s identity the step to fch + j*C0 is
        j*C0 + (r' - r)*gap, and r moves by qa_w1 + w2 = qa_0 + n (n = w1*wrap + w2): the product
        qa_0*gap is a register of registers that hold still by then, formed every cycle (no start
        or setup condition in front of the multiplier), and the steps only add gap or 2 gap to it.
        Returns ([qa_0, qa_1], [ra_0, ra_1], the four steps)."""
        assert FOLD_SETUP - FOLD_TAP_DIGITS - 1 > 1, "qa_0 * gap is registered before the setup's last cycle"
        c0 = self._config.c0
        small = _Divider(m, f"qc_div_j{j}", _TAP_WIDTH, k["fold_kw_x"])
        with m.If(left == FOLD_SETUP):                   # the cycle after the start: qc is registered
            small.load(m, k["qc"][j])
        with m.Elif((left < FOLD_SETUP) & (left >= FOLD_SETUP - FOLD_TAP_DIGITS)):
            small.step(m)
        qa0, ra0 = small.quo, small.rem[:6]
        wrap = Signal(name=f"ra_wrap_j{j}")
        qa1, ra1 = Signal.like(k["qa"][j][1]), Signal.like(k["ra"][j][1])
        m.d.comb += [wrap.eq(ra0 + 1 == k["fold_kw"]), qa1.eq(qa0 + wrap), ra1.eq(Mux(wrap, 0, ra0 + 1))]
        moved = Signal(ADDR_BITS, name=f"fold_moved_j{j}")         # qa_0 * gap + j*C0
        m.d.sync += moved.eq(qa0 * gap + j * c0)
        # index 2*w1 + w2: r moves by qa_0 + w1*wrap + w2
        steps = [moved, moved + gap, moved + Mux(wrap, gap, 0), moved + Mux(wrap, gap << 1, gap)]
        return [qa0, qa1], [ra0, ra1], steps

    def _jump(self, m, k, j: int, lane: _Lane, name: str) -> _Lane:
        """The lane's state j channel blocks on (fch + j*C0): c + rc with a carry into the tap, the
        tap's s + ra_w with a carry into r.  Carry-select: every sum is formed for each carry at
        once, the carries (comparisons beside the sums) choose."""
        nxt = _Lane(name)
        w1, w2 = Signal(name=f"{name}_w1"), Signal(name=f"{name}_w2")
        s1 = [Signal(7, name=f"{name}_s1_{w}") for w in range(2)]
        wrap_s = [Signal(name=f"{name}_ws{w}") for w in range(2)]
        fkw, qa, ra, step = k["fold_kw"], k["qa"][j], k["ra"][j], k["step"][j]
        m.d.comb += [w1.eq(lane.c >= k["tcm"][j]),
                     nxt.c.eq(Mux(w1, lane.c - k["tcm"][j], lane.c + k["rc"][j])),
                     *(s.eq(lane.s + ra[w]) for w, s in enumerate(s1)),
                     *(ws.eq(s >= fkw) for s, ws in zip(s1, wrap_s)),
                     w2.eq(Mux(w1, wrap_s[1], wrap_s[0])),
                     nxt.s.eq(Mux(w1, Mux(wrap_s[1], s1[1] - fkw, s1[1]), Mux(wrap_s[0], s1[0] - fkw, s1[0]))),
                     nxt.r.eq(Mux(w1, Mux(w2, lane.r + qa[1] + 1, lane.r + qa[1]), Mux(w2, lane.r + qa[0] + 1, lane.r + qa[0]))),
                     nxt.off.eq(Mux(w1, Mux(w2, lane.off + step[3], lane.off + step[2]),
                                    Mux(w2, lane.off + step[1], lane.off + step[0])))]
        return nxt

    # ---- rows of the beat -----------------------------------------------------------------------

    def _rows(self, m, ci, k, ahead):
        """The row stage: registered counters of the beat's first row, a jump from it for each
        other row and the next beat's first (``_row_jump``), all registered for the lane stage (a
        cycle later) with the bounds their lanes' taps must meet; returns the registered rows
        (:meth:`_row_stage`), the last with ``k_next``, the channel block after the beat."""
        cfg = self._config
        _, nb, _ = load_geometry(cfg)
        h = insn_view(Op.LOAD_INP, self.insn)
        first = {"yy": field_signal(Op.LOAD_INP, "win_h", "yy"), "xx": field_signal(Op.LOAD_INP, "win_w", "xx"),
                 "y": Signal(signed(24), name="pix_yc"), "x": Signal(signed(24), name="pix_xc"),
                 "pix": Signal(ADDR_BITS, name="pix"), "pix_row": Signal(ADDR_BITS, name="pix_row"),
                 "k": 0}
        # the rows in the bits the dispatcher's legality check allows (hw.timing.load_inp_rows_bound)
        rows_left, row_addr = Signal(range(load_inp_rows_bound(cfg) + 1)), Signal(16)
        rows = [first] + [self._row_jump(m, ci, k, first, i, f"row{i}") for i in range(1, nb + 1)]
        slots = [self._row_stage(m, ci, row, rows_left > i, f"row{i}") for i, row in enumerate(rows[:nb])]
        after = rows[nb]                # the next beat's first row
        k_next = Signal.like(after["k"], name="k_next_l")
        m.d.sync += k_next.eq(after["k"])
        slots[-1]["k_next"] = k_next
        row_addr_l, rows_l = Signal.like(row_addr, name="row_addr_l"), Signal.like(self.rows, name="rows_l")
        m.d.sync += [row_addr_l.eq(row_addr), rows_l.eq(Mux(rows_left < nb, rows_left, nb)),
                     self.row_addr.eq(row_addr_l), self.rows.eq(rows_l)]
        with m.If(self.start):
            m.d.sync += [first["yy"].eq(0), first["xx"].eq(0), first["y"].eq(h.y0), first["x"].eq(h.x0),
                         first["pix"].eq(0), first["pix_row"].eq(0),
                         rows_left.eq(load_inp_rows(Fields(h))), row_addr.eq(h.dst_addr)]
        with m.Elif(ahead):
            m.d.sync += [first[name].eq(after[name]) for name in ("yy", "xx", "y", "x", "pix", "pix_row")]
            m.d.sync += [rows_left.eq(Mux(rows_left < nb, 0, rows_left - nb)), row_addr.eq(row_addr + nb)]
        return slots

    def _row_stage(self, m, ci, row: dict, valid, name: str) -> dict:
        """A row of the beat registered for the lane stage: in the load, its channel block above
        the beat's first (``k``), its pixel offset (``pix``) and the bounds of its lanes' taps:
        tap (r, s) is in the tensor when ny <= r < hy and nx <= s < hx (ny = -Y, hy = t_h - Y for
        the row's pixel (Y, X)), so the lane stage compares without adding first.  A jumped row
        brings its bounds chosen by its wraps (``_row_jump``); the first row's are its registers'."""
        first = isinstance(row["k"], int)         # the beat's first row: block 0, a constant
        out = {"valid": Signal(name=f"{name}_valid_l"), "pix": Signal.like(row["pix"], name=f"{name}_pix_l"),
               "k": row["k"] if first else Signal.like(row["k"], name=f"{name}_k_l"),
               **{b: Signal(signed(26), name=f"{name}_{b}_l") for b in _BOUNDS}}
        bounds = row.get("bounds") or _bounds_of(ci, row["y"], row["x"])
        m.d.sync += [out["valid"].eq(valid), out["pix"].eq(row["pix"]), *(out[b].eq(bounds[b]) for b in _BOUNDS)]
        if not first:
            m.d.sync += out["k"].eq(row["k"])
        return out

    def _row_jump(self, m, ci, k, first: dict, i: int, name: str) -> dict:
        """Row i of the beat (1 .. G/C0) from its first row in one jump, not a ripple of wraps:
        i columns on, qx = (xx + i) div win_w window rows down, qy = (yy + qx) div win_h channel
        blocks on (``_wraps``).  After a wrap the row's column (and after a block its window row)
        is below i, so its pixel, offset and tap bounds take one of a few values: each is formed
        from registers beside the wraps, which only choose (carry-select)."""
        qx, xx = self._wraps(m, first["xx"], i, k["win_w_x"], i, f"{name}_x")
        by_qx = [self._wraps(m, first["yy"], j, k["win_h_x"], i, f"{name}_y{j}") for j in range(i + 1)]
        qy, yy = Array(q for q, _ in by_qx)[qx], Array(r for _, r in by_qx)[qx]
        low = max(1, (i - 1).bit_length())
        xs, ys = xx[:low], yy[:low]         # below i after a wrap
        fs, px, py = k["fs_x"], k["pix_x_x"], k["pix_y_x"]
        # window row: wrapped into a new channel block (row ys of the window) or qx rows down
        y_w = _formed(m, [ci.y0 + fs[v] for v in range(i)], signed(24), f"{name}_yw")
        y_p = _formed(m, [first["y"] + fs[v] for v in range(i + 1)], signed(24), f"{name}_yp")
        # column: wrapped to column xs of the window, or i columns on
        x_w = _formed(m, [ci.x0 + fs[v] for v in range(i)], signed(24), f"{name}_xw")
        x_p = _formed(m, [first["x"] + fs[i]], signed(24), f"{name}_xp")
        prow_w = _formed(m, [py[v] for v in range(i)], ADDR_BITS, f"{name}_prow_w")
        prow_p = _formed(m, [first["pix_row"] + py[v] for v in range(i + 1)], ADDR_BITS, f"{name}_prow_p")
        by_y = {"y": (y_w, y_p), "pix_row": (prow_w, prow_p)}
        for b, bw, bp in zip(("ny", "hy"), _bounds_y(ci, y_w), _bounds_y(ci, y_p)):
            by_y[b] = (_formed(m, bw, signed(26), f"{name}_{b}w"), _formed(m, bp, signed(26), f"{name}_{b}p"))
        by_x = {"x": (x_w, x_p)}
        for b, bw, bp in zip(("nx", "hx"), _bounds_x(ci, x_w), _bounds_x(ci, x_p)):
            by_x[b] = (_formed(m, bw, signed(26), f"{name}_{b}w"), _formed(m, bp, signed(26), f"{name}_{b}p"))
        row = {key: _chosen(m, qy != 0, ys, qx, *pair, f"{name}_{key}") for key, pair in by_y.items()}
        row.update({key: _chosen(m, qx != 0, xs, 0, *pair, f"{name}_{key}") for key, pair in by_x.items()})
        # the pixel's offset: its row's and its column's for every pair of outcomes (no wrap: the
        # first row's offset i columns on); row v < i and column w < i after the wraps
        wrapped = [_formed(m, [py[v] + px[w] for w in range(i)], ADDR_BITS, f"{name}_pix_w{v}_") for v in range(i)]
        no_wrap = _formed(m, [first["pix"] + px[i]], ADDR_BITS, f"{name}_pix_n")
        # no wrap: the same offset for any column index (an Array reads 0 past its end)
        plain = [no_wrap * (1 << len(xs))] + [_formed(m, [first["pix_row"] + py[v] + px[w] for w in range(i)],
                                                      ADDR_BITS, f"{name}_pix_p{v}_") for v in range(1, i + 1)]
        pix = Signal(ADDR_BITS, name=f"{name}_pix")
        m.d.comb += pix.eq(Mux(qy != 0, Array(Array(c) for c in wrapped)[ys][xs], Array(Array(c) for c in plain)[qx][xs]))
        yy_s, xx_s = Signal.like(first["yy"], name=f"{name}_yy"), Signal.like(first["xx"], name=f"{name}_xx")
        blk = Signal(range(i + 1), name=f"{name}_k")
        m.d.comb += [yy_s.eq(yy), xx_s.eq(xx), blk.eq(qy)]
        bounds = {b: row.pop(b) for b in _BOUNDS}
        return {**row, "yy": yy_s, "xx": xx_s, "pix": pix, "k": blk, "bounds": bounds}

    @staticmethod
    def _wraps(m, pos, add: int, multiples: list, most: int, name: str):
        """(q, r) = divmod(pos + add, d) for pos < d and add <= most, from the multiples
        [0, d, 2d, ..] of d: q counts the multiples 1 .. most that pos + add reaches (a
        thermometer code), r subtracts the highest; no divider."""
        total = pos + add
        reached = [total >= multiples[j] for j in range(1, most + 1)]
        q, r = Signal(range(most + 1), name=f"{name}_q"), Signal.like(pos, name=f"{name}_r")
        q_now, r_now = 0, total
        for j in range(1, most + 1):
            q_now, r_now = Mux(reached[j - 1], j, q_now), Mux(reached[j - 1], total - multiples[j], r_now)
        m.d.comb += [q.eq(q_now), r.eq(r_now)]
        return q, r

    # ---- lanes ----------------------------------------------------------------------------------

    def _pick(self, m, blocks, which, ln: int, name: str) -> _Lane:
        """Lane ``ln`` of ``blocks[which]``."""
        if len(blocks) == 1 or isinstance(which, int):
            return blocks[which if isinstance(which, int) else 0][ln]
        out = _Lane(name)
        with m.Switch(which):
            for j, blk in enumerate(blocks):
                with m.Case(j):
                    m.d.comb += [a.eq(b) for a, b in zip(out.fields(), blk[ln].fields())]
        return out

    def _lane_out(self, m, k, slot, lane: _Lane, name: str):
        """(enabled, byte address) of a lane of a registered row (:meth:`_row_stage`)."""
        ok = Signal(name=f"ok{name}")
        m.d.comb += ok.eq(slot["valid"] & (lane.r < k["fold_kh"]) & (lane.r >= slot["ny"]) & (lane.r < slot["hy"])
                          & (lane.s >= slot["nx"]) & (lane.s < slot["hx"]) & load_inp_channel_ok(k, lane.c))
        return ok, k["base"] + slot["pix"] + lane.off
