"""The vector unit's walker of several rows a cycle (``VectorUnit(walk_rows=k)``, ``k`` > 1).

``k`` walkers run interleaved: walker ``i`` is at rows ``i, i + k, i + 2k, ...`` of the pass
(``hw.vector.row_schedule``: row ``r`` is head ``r mod heads`` of pixel ``r div heads``, pixels in
raster order) and hands one row a cycle, so the lanes of a walk cycle take ``k`` consecutive rows.
Each walker moves ``k`` rows in **one** step, no chain of single steps:

* its *digits* (head ``hd``, the positions left in the image row ``px_left`` and in the raster
  ``py_left``, the row's first channel ``ch0``) move by the per-pass splits of ``k`` (``k div heads``
  pixels and ``k mod heads`` heads; ``t div w``, ``t mod w`` of the small pixel sums ``t`` when the
  raster is narrower than ``k``), each a comparison and an add;
* the move of each operand's axis counters (``WideAxisCounter``: the x axis ``s`` positions on, or
  back to position ``s - 1 - px_left`` of the next image row; the y axis ``m`` rows on) is decided
  from the digits and *registered*: the counters take it a cycle later, when the row is handed out.

So the digits run a move ahead of the counters.  At ``load`` every walker is at row 0; ``prime``
(the cycle after) moves walker ``i``'s digits ``i`` rows on and ``settle`` (the next) moves its
counters there and its digits ``k`` rows further: ``SETUP_CYCLES`` before the first row is handed
out.  Each ``advance`` after that hands out the walkers' rows and moves everything ``k`` rows on.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Module, Mux, Signal

from .. import vector as vec
from ..timing import VEC_WALK_SETUP
from .axis_counter import WideAxisCounter, operand_axes, small_divmod
from .vector_row_lane import ROW

__all__ = ["RowWalker", "RowDigits", "drive_axes", "SETUP_CYCLES"]

#: Cycles between ``load`` and the first row handed out (``prime``, ``settle``): the contract's.
SETUP_CYCLES = VEC_WALK_SETUP


class RowDigits:
    """The digits of ``k`` interleaved walkers over a raster of ``h x w`` pixels of ``heads`` rows of
    ``row_len`` channels (``chan_shape``), built into ``m``, and the move each decides for its
    pixel's counters.  ``load``, ``prime``, ``settle``, ``advance``: the cycle's action (one at a
    time).  ``moves[i]``: walker ``i``'s registered move (``x_restart``, ``x_at``, ``x_by``,
    ``y_by``; the counters take it when ``take``) and its row's first channel and validity
    (``ch0``, ``valid``), both of the row it hands out."""

    def __init__(self, m: Module, h, w, heads, row_len, k: int, chan_shape):
        self.m, self.h, self.w, self.k, self.chan_shape = m, h, w, k, chan_shape
        self.load, self.prime, self.settle, self.advance = (Signal(name=f"walk_{n}") for n in
                                                           ("load", "prime", "settle", "advance"))
        #: the counters take the move registered in the cycle before (none at prime: they were loaded)
        self.take = Signal(name="walk_take")
        m.d.comb += self.take.eq(self.settle | self.advance)
        self._bits = max(k - 1, 1).bit_length()
        self._tables(heads, row_len)
        self.moves = [self._walker(i) for i in range(k)]

    def _reg(self, value, name: str, shape) -> Signal:
        r = Signal(shape, name=name)
        self.m.d.sync += r.eq(value)
        return r

    def _tables(self, heads, row_len) -> None:
        """Per pass, registered: ``k`` and each prologue move ``i < k`` split into pixels and heads,
        the channel multiples ``j * row_len``, the small pixel sums split by the raster's width."""
        k, c = self.k, self.chan_shape
        split = [small_divmod(r, heads) for r in range(k + 1)]
        self.hq = [self._reg(q, f"walk_hq{r}", range(k + 1)) for r, (q, _) in enumerate(split)]
        self.hr = [self._reg(x, f"walk_hr{r}", range(k + 1)) for r, (_, x) in enumerate(split)]
        self.hgap = [self._reg(heads - x, f"walk_hgap{r}", heads.shape()) for r, (_, x) in enumerate(split)]
        self.m_len = [self._reg(j * row_len, f"walk_len{j}", c) for j in range(k + 1)]
        self.narrow = self._reg(self.w < k, "walk_narrow", 1)
        wsplit = [small_divmod(t, self.w) for t in range(2 * k)]
        self.t_div = [self._reg(q, f"walk_tdiv{t}", range(2 * k)) for t, (q, _) in enumerate(wsplit)]
        self.t_mod = [self._reg(x, f"walk_tmod{t}", range(k)) for t, (_, x) in enumerate(wsplit)]

    def _walker(self, i: int) -> SimpleNamespace:
        """Walker ``i``: its digits, its registered move, its row."""
        m, k, bits = self.m, self.k, self._bits
        hd, ch0 = Signal(self.chan_shape, name=f"walk{i}_hd"), Signal(self.chan_shape, name=f"walk{i}_ch0")
        px_left, py_left = Signal.like(self.w, name=f"walk{i}_px_left"), Signal.like(self.h, name=f"walk{i}_py_left")
        px = Signal(range(k), name=f"walk{i}_px")          # the position in the image row, where narrow
        walked = Signal(name=f"walk{i}_walked")
        # the move of the counters, decided from the digits a cycle before
        x_restart, x_at = Signal(name=f"walk{i}_x_restart"), Signal(range(k), name=f"walk{i}_x_at")
        x_by, y_by = Signal(range(k + 1), name=f"walk{i}_x_by"), Signal(range(k + 1), name=f"walk{i}_y_by")
        row_ch0, row_walked = Signal.like(ch0, name=f"walk{i}_row_ch0"), Signal(name=f"walk{i}_row_walked")

        rows = Mux(self.prime, i, k)                        # rows this move goes on
        hq, hr, hgap = (Array(t)[rows] for t in (self.hq, self.hr, self.hgap))
        carry = hd >= hgap                                  # hd + hr >= heads: one pixel more
        s = Signal(range(k + 1), name=f"walk{i}_s")         # pixels on
        m.d.comb += s.eq(hq + carry)
        # a raster at least k wide: at most one image row on
        wide_cross = px_left < s
        wide_at = (s - 1 - px_left)[:bits]
        # a narrower one: the small sum's quotient and remainder by w
        t = Signal(range(2 * k), name=f"walk{i}_t")
        m.d.comb += t.eq(px + s)
        narrow_m, narrow_px = Array(self.t_div)[t], Array(self.t_mod)[t]
        m_rows = Signal(range(2 * k), name=f"walk{i}_m")   # image rows on
        new_px = Signal(range(k), name=f"walk{i}_new_px")
        m.d.comb += [m_rows.eq(Mux(self.narrow, narrow_m, wide_cross)),
                     new_px.eq(Mux(self.narrow, narrow_px, Mux(wide_cross, wide_at, (px + s)[:bits])))]
        moving = self.prime | self.settle | self.advance
        with m.If(self.load):
            m.d.sync += [hd.eq(0), ch0.eq(0), px.eq(0), px_left.eq(self.w - 1), py_left.eq(self.h - 1),
                         walked.eq(0)]
        with m.Elif(moving):
            m.d.sync += [hd.eq(Mux(carry, hd - hgap, hd + hr)),
                         ch0.eq(Mux(carry, Array(self.m_len)[(hd - hgap)[:bits]], ch0 + Array(self.m_len)[hr])),
                         px.eq(new_px),
                         px_left.eq(Mux(self.narrow, self.w - 1 - new_px,
                                        Mux(wide_cross, px_left - s + self.w, px_left - s))),
                         py_left.eq(py_left - m_rows),
                         walked.eq(walked | (py_left < m_rows)),
                         x_restart.eq(m_rows != 0), x_at.eq(new_px), x_by.eq(s), y_by.eq(m_rows)]
            with m.If(~self.prime):
                m.d.sync += [row_ch0.eq(ch0), row_walked.eq(walked)]
        return SimpleNamespace(x_restart=x_restart, x_at=x_at, x_by=x_by, y_by=y_by, ch0=row_ch0, valid=~row_walked)


class RowWalker:
    """``k`` interleaved walkers over a latched descriptor ``d`` (its ``heads`` rows of ``row_len``
    channels a pixel), built into ``m``: their digits (``RowDigits``) and each operand's
    ``WideAxisCounter``s.  ``load``, ``prime``, ``settle``, ``advance``: the cycle's action (one
    at a time); ``rows[i]``: walker ``i``'s row (a ``ROW``)."""

    def __init__(self, m: Module, d, heads, row_len, k: int):
        self.m, self.d, self.k = m, d, k
        head = d.header
        self.digits = RowDigits(m, head.h, head.w, heads, row_len, k, head.c.shape())
        self.load, self.prime, self.settle, self.advance = \
            self.digits.load, self.digits.prime, self.digits.settle, self.digits.advance
        self.axes = [operand_axes(m, f"operand{op}", d.operands[op], self.load, lambda: WideAxisCounter(k, k))
                     for op in range(vec.MAX_OPERANDS)]
        self.rows = [self._row(i) for i in range(k)]

    def _row(self, i: int):
        """Walker ``i``'s row: its counters driven by its move, each operand's pixel address."""
        m, move = self.m, self.digits.moves[i]
        drive_axes(m, self.axes, i, move, self.digits.take)
        row = Signal(ROW, name=f"walk_row{i}")
        m.d.comb += [row.valid.eq(move.valid), row.ch0.eq(move.ch0)]
        for op, (y, x) in enumerate(self.axes):
            m.d.comb += [row.pix[op].eq(self.d.operands[op].base + y.offset[i] + x.offset[i]),
                         row.pix_ok[op].eq(~y.padding[i] & ~x.padding[i])]
        return row


def drive_axes(m: Module, axes, i: int, move: SimpleNamespace, take) -> None:
    """Walker ``i``'s position of each (y, x) ``WideAxisCounter`` pair of ``axes`` takes its
    registered ``move`` (``RowDigits.moves``) when ``take``."""
    for y, x in axes:
        m.d.comb += [x.move[i].eq(take), y.move[i].eq(take), x.restart[i].eq(move.x_restart),
                     x.restart_at[i].eq(move.x_at), x.step_by[i].eq(move.x_by), y.step_by[i].eq(move.y_by)]
