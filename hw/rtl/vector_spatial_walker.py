"""The spatial unit's walkers of the output raster (``hw/rtl/vector_spatial.py``).

A walker hands the row lanes their output pixels (``PIXEL``): each pixel's source offsets and
interpolation weights (a bilinear axis's DDA, ``hw.operators.bilinear_axis_kernel``), or its
pooling window (``_PoolAxis``), the written and chain operands' addresses, and the row's first
channel (a pooling's pixel is ``2**split`` rows).

* ``PixelWalker`` steps one pixel (row) a cycle: the DDA adds ``step`` per output, the window
  counters their stride or witnesses, the operands' ``AxisCounter``s one position.
* ``WidePixelWalker`` is ``k`` of them interleaved (``SpatialUnit(walk_rows=k)``), as the vector
  unit's ``RowWalker``: walker ``i`` is at rows ``i, i + k, ...`` and moves ``k`` rows in **one**
  step.  Its digits (``RowDigits``: the part of the pixel, the position in the raster) decide each
  move a cycle ahead and register it (``x_restart``/``x_at``: to position ``x_at`` of a later image
  row; ``x_by``, ``y_by``: positions on); the counters take it: the DDA adds the registered multiple
  ``x_by · step`` (or restarts at ``start + x_at · step``), a windowed pooling its multiple of the
  stride, an adaptive one composes its floor counter with the per-pass ``(floor(j·n_in/n_out),
  j·n_in mod n_out)`` of ``j = x_by`` (``hw.operators.floor_counter_kernel`` of two counters), and
  the operands' ``WideAxisCounter``s their own move.  The multiples and the composed witnesses are
  made once per pass, in the two setup cycles (``hw.timing.VEC_WALK_SETUP``): no multiplier or
  divider in a move.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data

from .. import operators as ops
from .. import vector as vec
from ..expr import sel
from ..isa import ADDR_BITS, VecOp
from .axis_counter import AxisCounter, WideAxisCounter, operand_axes
from .kernel_unit import KernelUnit
from .vector_walker import RowDigits, drive_axes

__all__ = ["PixelWalker", "WidePixelWalker", "PIXEL", "CORNERS", "CHAIN_SLOTS", "TAPS_BITS", "COUNT", "COUNT_STAGE",
           "COMBINATIONAL"]

#: Read lanes a row lane uses: its pixel's four source elements (of its ``LANE_READS``), then one
#: for each chain stage's second operand.
CORNERS = 4
#: Stages a chain after the spatial stage may hold (``hw.vector.SPATIAL_CHAIN_OPS``): a slot each.
CHAIN_SLOTS = vec.MAX_STAGES - 1
#: Window positions along an axis a pooling walks at most (``hw.vector.pool_taps``), and its bits.
TAPS_BITS = ops.POOL_COUNT_BITS
#: A pooling window's element count (``hw.operators.POOL_MAX_COUNT`` at most).
COUNT = (1, ops.POOL_MAX_COUNT)
#: Bits of a resize's DDA position (as its start field), of a pass's channel count; a pooling's
#: largest ``split`` (``hw.vector``'s fields).
_POS_BITS = {name: bits for name, bits, _ in vec.STAGE_PARAMS[VecOp.RESIZE]}["y_start"]
_C_BITS = {name: bits for name, bits, _ in vec.HEADER_FIELDS}["c"]
_MAX_SPLIT = (1 << {name: bits for name, bits, _ in vec.STAGE_PARAMS[VecOp.POOL]}["split"]) - 1
AXIS_INPUTS = {"pos": (-(1 << _POS_BITS - 1), (1 << _POS_BITS - 1) - 1), "n_in": (1, ops.RESIZE_MAX_IN)}
#: Evaluates a kernel of ``hw.operators`` combinationally (a fold, a counter's step).
COMBINATIONAL = SimpleNamespace(sel=sel)
#: What the walker hands a lane: the four source elements' offsets from the source's base (which
#: the lanes add with the channel, ``_Sequencer``: the walker's sum is one add shorter), the
#: weights, the output pixel.
#: A pooling's row: its window's first element in ``src[0]``, the window's valid taps along each axis
#: (``taps_y``, ``taps_x``), the average's divisor (``count``) and the row's first channel (``chan0``).
#: A chain stage's second operand (``second``) and written operand (``written``) at the pixel, and
#: whether each is not padding there.
PIXEL = data.StructLayout({"src": data.ArrayLayout(ADDR_BITS, CORNERS), "wy": unsigned(9), "wx": unsigned(9),
                           "taps_y": TAPS_BITS, "taps_x": TAPS_BITS, "count": TAPS_BITS, "chan0": 17,
                           "out": ADDR_BITS, "out_ok": 1, "valid": 1,
                           **{f"{k}{suffix}": data.ArrayLayout(width, CHAIN_SLOTS)
                              for k in ("second", "written") for suffix, width in (("", ADDR_BITS), ("_ok", 1))}})
#: Bits of a pooling axis's floor counter (``hw.operators.floor_counter_kernel``).
_FLOOR_BITS = 17
#: Cycles by which a walker's reciprocal lags its pixel: the window count is registered (it is a
#: product of the window's sizes), then ``recip_kernel``'s pipeline.
COUNT_STAGE = 1


def _recip(m: Module, pixel, name: str) -> KernelUnit:
    """``hw.operators.recip_kernel`` of ``pixel``'s window count (the lanes' average divides by it),
    the count registered first (``COUNT_STAGE``): a product, then a priority encoder, is deeper
    than a cycle."""
    recip = KernelUnit(ops.recip_kernel, {"v": COUNT}, consts={"width": ops.POOL_COUNT_BITS},
                       outputs=("r", "k"), name=name)
    m.submodules[name] = recip
    count = Signal.like(pixel.count, name=f"{name}_count", reset_less=True)
    m.d.sync += count.eq(pixel.count)
    m.d.comb += [recip.v.eq(count), recip.in_valid.eq(1)]
    return recip


def _axis_kernels(m: Module, pas, pos: dict, suffix: str = "") -> dict:
    """Each axis's ``bilinear_axis_kernel`` of DDA position ``pos[a]`` (registered: fed the position
    the walker steps to, its result is the walker's pixel's): ``(i0·stride, i1·stride, weight)``."""
    idx = {}
    for a in "yx":
        k = KernelUnit(ops.bilinear_axis_kernel, AXIS_INPUTS, outputs=("i0", "i1", "w"), name=f"{a}_axis{suffix}")
        m.submodules[f"{a}_axis{suffix}"] = k
        m.d.comb += [k.pos.eq(pos[a]), k.n_in.eq(getattr(pas.src, f"{a}_n")), k.in_valid.eq(1)]
        stride = getattr(pas.src, f"{a}_s_lo")
        idx[a] = (k.i0 * stride, k.i1 * stride, k.w)       # a plain raster: index i at base + i * stride
    return idx


def _fill_pixel(m: Module, pas, p, idx: dict, pool: tuple, axes: tuple, at) -> None:
    """Pixel ``p`` from the DDA's indices ``idx``, the pooling's axes ``pool`` (y, x) and the
    operands' counters (``axes``: the written operand's (y, x) pair, each chain stage's ``second``
    and ``written`` pairs) at the pixel (``at(y, x)``: a pair's offset and padding)."""
    s = pas.src
    m.d.comb += [p.wy.eq(idx["y"][2]), p.wx.eq(idx["x"][2])]
    for y in range(2):
        for x in range(2):
            m.d.comb += p.src[2 * y + x].eq(idx["y"][y] + idx["x"][x])
    out_axes, chain_axes = axes
    offset, padding = at(*out_axes)
    m.d.comb += [p.out.eq(pas.out.base + offset), p.out_ok.eq(pas.writes & ~padding)]
    for i, (second, written) in enumerate(pas.chain):
        for key, operand in (("second", second), ("written", written)):
            offset, padding = at(*chain_axes[i][key])
            m.d.comb += [p[key][i].eq(operand.base + offset), p[f"{key}_ok"][i].eq(~padding)]
    # a pooling's window: its first element (a plain raster: lo_y·s_y + lo_x·s_x from the base), its
    # taps inside the input along each axis, the average's divisor (with count_include_pad: its
    # size within the padding).  A window of a pass the check accepts starts inside the input,
    # 0 <= lo < n_in: its index has n_in's bits, and its products are that narrow.
    py, px = pool
    include_pad = ~pas.adaptive & pas.stage["pool.count_include_pad"]
    (size_y, padded_y), (size_x, padded_x) = py.sizes(), px.sizes()
    with m.If(pas.window):
        lo_y, lo_x = py.lo.as_unsigned()[:len(s.y_n)], px.lo.as_unsigned()[:len(s.x_n)]
        m.d.comb += [p.src[0].eq(lo_y * s.y_s_lo + lo_x * s.x_s_lo),
                     p.taps_y.eq(size_y), p.taps_x.eq(size_x),
                     p.count.eq(Mux(include_pad, padded_y * padded_x, size_y * size_x))]
    with m.Else():
        m.d.comb += [p.taps_y.eq(1), p.taps_x.eq(1)]


class _Window:
    """A pooling axis's window from its counters: its first position ``lo``, the end of its taps
    inside the input ``hi`` and of its positions within the padding ``top`` (a windowed pooling's
    from its start ``i·stride - padding`` and end ``start + kernel``; an adaptive one's from
    ``floor(i·n_in/n_out)`` and the next).  They are registered with the counters, from the values
    the counters take (as the DDA feeds its kernel the position it steps to), so they are the
    current pixel's and the window's clamps are not on a path with the products the pixel makes of
    them (its first element, its count); each case's window is formed from its own values, so the
    walk's decision only picks one.  The sizes the pixel takes (:meth:`sizes`) are differences of
    those registers, cut to the count's bits."""

    def _geometry(self, pas, n_in, start, end, q0, q1, r1) -> dict:
        lo = Mux(start < 0, 0, start)
        return {"lo": Mux(pas.adaptive, q0, lo),
                "hi": Mux(pas.adaptive, ops.ceil_kernel(q1, r1, COMBINATIONAL), Mux(end < n_in, end, n_in)),
                "top": Mux(end < self.pad_end, end, self.pad_end)}

    def sizes(self) -> tuple:
        """The window's taps inside the input and its size within the padding (``count_include_pad``)."""
        return (self.hi - self.lo)[:TAPS_BITS], (self.top - self.start)[:TAPS_BITS]

    def _track(self, m: Module, pas, n_in, regs: tuple, cases: list, name: str) -> None:
        """The counters ``regs`` (:func:`_counters`) take the values of the case ``(condition,
        (start, end, q, r))`` that holds (they exclude each other), and the window of those values is
        registered with them; else all hold.  The callers list the deepest case (a step) first: an
        ``If``/``Elif`` chain puts the first case's value through one multiplexer, the last's through
        one a case."""
        self.start, end, q, r = regs
        windows = [self._geometry(pas, n_in, st, en, qs[0], qs[1], rs[1]) for _, (st, en, qs, rs) in cases]
        for key in windows[0]:
            values = [w[key] for w in windows]
            setattr(self, key, Signal(_common_shape(values), name=f"{name}_{key}"))
        for i, ((condition, (st, en, qs, rs)), window) in enumerate(zip(cases, windows)):
            with (m.If if i == 0 else m.Elif)(condition):
                m.d.sync += [self.start.eq(st), end.eq(en), *(a.eq(b) for a, b in zip(q + r, list(qs) + list(rs))),
                             *(getattr(self, key).eq(v) for key, v in window.items())]

    @staticmethod
    def witnesses(pas, axis: str) -> tuple:
        """``n_in div n_out`` and ``n_in mod n_out`` of the axis: a nearest resize's or the pooling's."""
        st = pas.stage
        return tuple(Mux(pas.nearest, st[f"resize.{axis}_{k}"], st[f"pool.{axis}_{k}"]) for k in "qr")


class _PoolAxis(_Window):
    """One axis of a pooling's windows, stepped with the walker (``reset`` to output 0, ``step`` to
    the next): a windowed pooling's start ``i·stride - padding`` (one add a step), or an adaptive
    pooling's ``floor(i·n_in/n_out)`` and ``floor((i+1)·n_in/n_out)`` with their remainders
    (``hw.operators.floor_counter_kernel`` on the descriptor's witnesses ``n_in div n_out`` and
    ``n_in mod n_out``): no division."""

    def __init__(self, m: Module, pas, axis: str, n_in, n_out, *, reset, step):
        st = pas.stage
        stride, k, pad = st["pool.stride"], st["pool.kernel"], st["pool.padding"]
        q_step, r_step = self.witnesses(pas, axis)
        self.pad_end = pas.pad_end[axis]
        regs = start, end, q, r = _counters(m, f"pool_{axis}")
        q_next, r_next = ops.floor_counter_kernel(q[1], r[1], q_step, r_step, n_out, COMBINATIONAL)
        self._track(m, pas, n_in, regs, [(step, (start + stride, end + stride, (q[1], q_next), (r[1], r_next))),
                                         (reset, (-pad, k - pad, (0, q_step), (0, r_step)))], f"pool_{axis}")


class PixelWalker:
    """The output raster, a pixel a cycle (``step``): the output counters, the ``AxisCounter``s of
    the written operand and of each chain stage's operands, the two DDAs and their
    ``bilinear_axis_kernel``s, and the pixel they give (``pixels[0]``, its window count's
    reciprocal ``recips[0]``).  ``load`` goes to the first pixel; no setup before the walk."""

    walk_rows = 1

    def __init__(self, m: Module, pas):
        self.m, self.pas = m, pas
        self.load, self.step = Signal(name="walk_load"), Signal(name="walk_step")
        self.px, self.py = Signal.like(pas.w, name="walk_x"), Signal.like(pas.h, name="walk_y")
        self.walked = Signal(name="walked")               # past the last pixel
        pixel = Signal(PIXEL, name="walk_pixel")
        # what the walk does this cycle, for the operands' and the pooling windows' counters
        self.x_step, self.x_reset, self.y_step = Signal(name="walk_x_step"), Signal(name="walk_x_reset"), \
            Signal(name="walk_y_step")
        axes = (self._counters("out", pas.out),
                [{key: self._counters(f"chain{i + 1}_{key}", operand)
                  for key, operand in (("second", second), ("written", written))}
                 for i, (second, written) in enumerate(pas.chain)])
        # a pooling's pixel is handed out as 2**split rows: whether this step hands out its next row
        self._part, self._more = Signal(16, name="walk_split_part"), Signal(name="walk_split_more")
        m.d.comb += self._more.eq(self._part + 1 != (1 << pas.split))
        idx = _axis_kernels(m, pas, self._dda())
        s = pas.src
        pool = (_PoolAxis(m, pas, "y", s.y_n, pas.h, reset=self.load, step=self.y_step),
                _PoolAxis(m, pas, "x", s.x_n, pas.w, reset=self.load | self.x_reset, step=self.x_step))
        _fill_pixel(m, pas, pixel, idx, pool, axes, lambda y, x: (y.offset + x.offset, y.padding | x.padding))
        m.d.comb += [pixel.valid.eq(~self.walked), pixel.chan0.eq(self._next_row_of_pixel())]
        self.pixels, self.recips = [pixel], [_recip(m, pixel, "pixel_recip")]

    def _counters(self, name: str, operand) -> tuple:
        """An operand's (y, x) ``AxisCounter``s, stepped with the output raster."""
        m, y, x = self.m, AxisCounter(), AxisCounter()
        m.submodules[f"{name}_y"], m.submodules[f"{name}_x"] = y, x
        for prefix, counter in (("y_", y), ("x_", x)):
            for field, _, _ in vec.AXIS_FIELDS:
                m.d.comb += getattr(counter, field).eq(getattr(operand, prefix + field))
        m.d.comb += [y.load.eq(self.load), y.step.eq(self.y_step),
                     x.load.eq(self.load | self.x_reset), x.step.eq(self.x_step)]
        return y, x

    def _dda(self) -> dict:
        """The DDA's positions the walker steps to (the axis kernels' inputs)."""
        m, pas = self.m, self.pas
        pos = {a: Signal(signed(32), name=f"{a}_pos") for a in "yx"}
        nxt = {a: Signal(signed(32), name=f"{a}_pos_next") for a in "yx"}
        end_x = self.px + 1 == pas.w
        more = self._more
        m.d.comb += [nxt["y"].eq(pos["y"]), nxt["x"].eq(pos["x"])]
        with m.If(self.load):
            m.d.comb += [nxt["y"].eq(pas.dda["y_start"]), nxt["x"].eq(pas.dda["x_start"])]
            m.d.sync += [self.px.eq(0), self.py.eq(0), self.walked.eq(0)]
        with m.Elif(self.step & ~self.walked & ~more):
            with m.If(~end_x):
                m.d.comb += [nxt["x"].eq(pos["x"] + pas.dda["x_step"]), self.x_step.eq(1)]
                m.d.sync += self.px.eq(self.px + 1)
            with m.Elif(self.py + 1 != pas.h):
                m.d.comb += [nxt["x"].eq(pas.dda["x_start"]), nxt["y"].eq(pos["y"] + pas.dda["y_step"]),
                             self.x_reset.eq(1), self.y_step.eq(1)]
                m.d.sync += [self.px.eq(0), self.py.eq(self.py + 1)]
            with m.Else():
                m.d.sync += self.walked.eq(1)
        m.d.sync += [pos["y"].eq(nxt["y"]), pos["x"].eq(nxt["x"])]
        return nxt

    def _next_row_of_pixel(self):
        """A pooling's pixel is handed out as ``2**split`` rows, its channels from ``chan0`` on in
        chunks (``hw.vector.split_chunk``): ``chan0`` steps by the chunk, one add."""
        m, pas = self.m, self.pas
        part, chan0, more = self._part, Signal(17, name="walk_chan0"), self._more
        with m.If(self.load):
            m.d.sync += [part.eq(0), chan0.eq(0)]
        with m.Elif(self.step & ~self.walked):
            m.d.sync += [part.eq(Mux(more, part + 1, 0)), chan0.eq(Mux(more, chan0 + pas.chunk, 0))]
        return chan0


def _reg(m: Module, value, name: str, shape) -> Signal:
    r = Signal(shape, name=name)
    m.d.sync += r.eq(value)
    return r


def _counters(m: Module, name: str) -> tuple:
    """A pooling axis's registers: the window's start and end (its start plus the kernel: stepped
    by the same stride, so that no add precedes the end's clamp), ``floor(i·n_in/n_out)`` of outputs
    ``i`` and ``i + 1`` (``q``) and their remainders (``r``)."""
    return (Signal(signed(26), name=f"{name}_start"), Signal(signed(26), name=f"{name}_end"),
            [Signal(_FLOOR_BITS, name=f"{name}_q{i}") for i in range(2)],
            [Signal(_FLOOR_BITS, name=f"{name}_r{i}") for i in range(2)])


class _WidePoolAxis(_Window):
    """Walker ``i``'s axis of a pooling's windows, moved as the walker's registered move says
    (``take``: ``restart`` to position ``at``, else ``by`` positions on) from the per-pass tables
    ``t`` (``WidePixelWalker._pool_tables``): one add, or a floor counter composed with another."""

    def __init__(self, m: Module, pas, axis: str, n_in, n_out, t: dict, *, load, take, restart, at, by, name: str):
        k, pad = pas.stage["pool.kernel"], pas.stage["pool.padding"]
        q_step, r_step = self.witnesses(pas, axis)
        self.pad_end = pas.pad_end[axis]
        regs = start, end, q, r = _counters(m, name)
        q_by, r_by = Array(t["q"])[by], Array(t["r"])[by]
        moved = [ops.floor_counter_kernel(q[j], r[j], q_by, r_by, n_out, COMBINATIONAL) for j in range(2)]
        table = lambda key, j: Array(t[key])[j]          # noqa: E731
        stride = table("stride", by)
        self._track(m, pas, n_in, regs, [
            (take & ~restart, (start + stride, end + stride, (moved[0][0], moved[1][0]), (moved[0][1], moved[1][1]))),
            (take & restart, (table("start", at), table("end", at), (table("q", at), table("q", at + 1)),
                              (table("r", at), table("r", at + 1)))),
            (load, (-pad, k - pad, (0, q_step), (0, r_step)))], name)


class WidePixelWalker:
    """``k`` interleaved walkers of the output raster (module docstring), ``k`` rows a cycle:
    ``pixels[i]`` is walker ``i``'s pixel, ``recips[i]`` its window count's reciprocal.  ``load``,
    ``prime``, ``settle``, ``step``: the cycle's action (``RowDigits``'; ``step`` hands the pixels
    out and moves on), ``prime`` and ``settle`` the ``VEC_WALK_SETUP`` cycles before the first."""

    def __init__(self, m: Module, pas, k: int):
        self.m, self.pas, self.k = m, pas, k
        self.walk_rows = k
        heads = Signal(range((1 << _MAX_SPLIT) + 1), name="walk_heads")       # a pooling's rows a pixel
        m.d.comb += heads.eq(Const(1, 1) << pas.split)
        # a pixel's channels as 2**split rows of a chunk: the last row may run past c (below 2 c)
        self.digits = dg = RowDigits(m, pas.h, pas.w, heads, pas.chunk, k, unsigned(_C_BITS + 1))
        self.load, self.prime, self.settle, self.step = dg.load, dg.prime, dg.settle, dg.advance
        wide = lambda: WideAxisCounter(k, k)                          # noqa: E731
        self.axes = (operand_axes(m, "out", pas.out, self.load, wide),
                     [{key: operand_axes(m, f"chain{i + 1}_{key}", operand, self.load, wide)
                       for key, operand in (("second", second), ("written", written))}
                      for i, (second, written) in enumerate(pas.chain)])
        axes = [self.axes[0], *(pair for stage in self.axes[1] for pair in stage.values())]
        dda = {a: [_reg(m, j * pas.dda[f"{a}_step"], f"dda_{a}_step{j}", 32) for j in range(k + 1)] for a in "yx"}
        pool = {a: self._pool_tables(a) for a in "yx"}
        self.pixels, self.recips = [], []
        for i, move in enumerate(dg.moves):
            drive_axes(m, axes, i, move, dg.take)
            self.pixels.append(self._pixel(i, move, dda, pool))
            self.recips.append(_recip(m, self.pixels[i], f"pixel_recip{i}"))

    def _pool_tables(self, axis: str) -> dict:
        """Per pass, for each move ``j`` in ``0 .. k``: the start and end of window ``j`` (``j·stride -
        padding``, plus the kernel) and the stride's multiple, and ``floor(j·n_in/n_out)`` with its remainder.  The
        latter composed from the witnesses by ``floor_counter_kernel`` in two registered stages (1
        and 2, then every ``j`` as a sum of those), so a composition is at most ``log2(k / 2)``
        counters deep."""
        m, pas, k = self.m, self.pas, self.k
        st, n_out = pas.stage, getattr(pas, "h" if axis == "y" else "w")
        stride, kernel, pad = st["pool.stride"], st["pool.kernel"], st["pool.padding"]
        q_step, r_step = _Window.witnesses(pas, axis)
        two = ops.floor_counter_kernel(q_step, r_step, q_step, r_step, n_out, COMBINATIONAL)
        bits = _FLOOR_BITS + k.bit_length()
        base = {0: (Const(0, bits), Const(0, _FLOOR_BITS)),
                1: (_reg(m, q_step, f"pool_{axis}_wq1", bits), _reg(m, r_step, f"pool_{axis}_wr1", _FLOOR_BITS)),
                2: (_reg(m, two[0], f"pool_{axis}_wq2", bits), _reg(m, two[1], f"pool_{axis}_wr2", _FLOOR_BITS))}

        def composed(j: int) -> tuple:
            if j in base:
                return base[j]
            a = 2 * -(-j // 4)                                    # an even part, the rest at most as large
            (qa, ra), (qb, rb) = composed(a), composed(j - a)
            return ops.floor_counter_kernel(qa, ra, qb, rb, n_out, COMBINATIONAL)
        floors = [composed(j) for j in range(k + 1)]
        return {"stride": [_reg(m, j * stride, f"pool_{axis}_stride{j}", signed(26)) for j in range(k + 1)],
                "start": [_reg(m, j * stride - pad, f"pool_{axis}_start{j}", signed(26)) for j in range(k + 1)],
                "end": [_reg(m, j * stride - pad + kernel, f"pool_{axis}_end{j}", signed(26)) for j in range(k + 1)],
                "q": [_reg(m, q, f"pool_{axis}_q_by{j}", bits) for j, (q, _) in enumerate(floors)],
                "r": [_reg(m, r, f"pool_{axis}_r_by{j}", _FLOOR_BITS) for j, (_, r) in enumerate(floors)]}

    def _pixel(self, i: int, move: SimpleNamespace, dda: dict, pool: dict):
        """Walker ``i``'s pixel: its DDA and window counters moved as ``move`` says, its operands'
        counters' positions ``i``."""
        m, pas, s, take = self.m, self.pas, self.pas.src, self.digits.take
        pos = {a: Signal(signed(32), name=f"w{i}_{a}_pos") for a in "yx"}
        nxt = {a: Signal(signed(32), name=f"w{i}_{a}_pos_next") for a in "yx"}
        with m.If(self.load):
            m.d.comb += [nxt[a].eq(pas.dda[f"{a}_start"]) for a in "yx"]
        with m.Elif(take):
            m.d.comb += [nxt["x"].eq(Mux(move.x_restart, pas.dda["x_start"] + Array(dda["x"])[move.x_at],
                                         pos["x"] + Array(dda["x"])[move.x_by])),
                         nxt["y"].eq(pos["y"] + Array(dda["y"])[move.y_by])]
        with m.Else():
            m.d.comb += [nxt[a].eq(pos[a]) for a in "yx"]
        m.d.sync += [pos[a].eq(nxt[a]) for a in "yx"]
        idx = _axis_kernels(m, pas, nxt, suffix=str(i))
        moves = {"y": (Const(0), Const(0), move.y_by), "x": (move.x_restart, move.x_at, move.x_by)}
        windows = tuple(_WidePoolAxis(m, pas, a, getattr(s, f"{a}_n"), getattr(pas, "h" if a == "y" else "w"),
                                      pool[a], load=self.load, take=take, restart=moves[a][0], at=moves[a][1],
                                      by=moves[a][2], name=f"w{i}_pool_{a}") for a in "yx")
        pixel = Signal(PIXEL, name=f"walk_pixel{i}")
        _fill_pixel(m, pas, pixel, idx, windows, self.axes, lambda y, x: (y.offset[i] + x.offset[i], y.padding[i] | x.padding[i]))
        m.d.comb += [pixel.valid.eq(move.valid), pixel.chan0.eq(move.ch0)]
        return pixel


def _common_shape(values):
    """The shape that holds each of ``values``: a multiplexer's between them (Amaranth's rule)."""
    return Value.cast(functools.reduce(lambda a, b: Mux(0, a, b), values)).shape()
