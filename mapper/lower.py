"""Lowering of MAC layers to tiles and an instruction stream for one configuration.

Every MAC layer becomes a *grouped convolution problem* (``Problem``): groups of
``cg`` input and ``kg`` output channels, each group reading its own input tensor
(or channel range) and weights.  Dense convolutions and linear layers have one
group; attention products have one group per head (x window); depthwise
convolutions pack min(K0, C0) channels into one block-diagonal group, which is
how a vector MAC unit's C0 lanes can serve a one-input-channel convolution;
where the configuration allows (``hw.timing.dw_gather_ok``) their GEMMs gather
each kernel row's taps onto the lanes (ISA ``dw``), one step per kernel row
instead of one per tap.
Convolutions with few input channels fold their kernel taps into the channel
dimension (im2col by the load unit), so a 3-channel 7x7 stem uses 147 of
5 x 32 lanes instead of 3 of 32; only an input stored without gaps folds
(``may_fold``: not a concatenation's part), so the mapping depends on the input's pitch.

A *mapping* (``Tiling``) chooses a PE grid (``pe_k`` columns of output-channel
blocks x ``pe_p`` rows of pixel groups), an output tile per PE (``th`` x ``tw``)
and a number of input-channel blocks per chunk (``cbi``).  The stream is::

    for pass over output-channel blocks:          # pe_k blocks at once
        for tile of output pixels:                # pe_p x th rows, tw columns
            for chunk of input channels:          # double-buffered
                LOAD_WGT (per column; resident weights: first tile only), LOAD_INP
                GEMM
            STORE                                 # accumulators double-buffered per tile
    FENCE

with dependency tokens so that loads run ahead of compute by one chunk and the
store of a tile overlaps the next tile's compute.  Groups whose output channels
end in a partial block of K0 may hold every block of a group in one pass
(``whole_groups``: each group's input loaded once, a STORE per block).
``map_layer`` searches the mappings deterministically, ranks them with an
estimate built from one tile's instructions as ``hw.timing`` times them
(``_estimate``), schedules the best few exactly (``hw.timing.schedule``) and
keeps the fastest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import heapq
from functools import lru_cache
from typing import Iterator, Optional

from hw.config import AcceleratorConfig
from hw.isa import ADDR_BITS, FIELD_BITS, Act, Insn, Op, StreamError, make, share_fields
from hw.numerics import PARAM_ENTRY_BYTES, TABLE_BYTES, TABLE_PARAM_ENTRIES
from hw.timing import (RUN_OVERHEAD, cycles_floor, dw_gather_ok, forget_memos,
                       load_inp_gb_conflicts, load_inp_gb_unaligned, occupancy, occupancy_and_latency, schedule)

from . import tiling_cache
from .ir import Conv2d, Layer, Linear, MatMul, conv_out

__all__ = ["Problem", "Tiling", "Lowered", "MappingError", "Placement", "may_fold", "problem_of", "map_layer",
           "rows_complete", "build_stream", "layer_cycles", "default_placement", "map_problem", "token_shape",
           "refuse_beyond_isa", "PARAM_SLOTS"]

PARAM_SLOTS = 4          # parameter slots rotated per tile (see _build)
ALIGN = 64


class MappingError(ValueError):
    """A layer that cannot be mapped onto a configuration; the message names the layer and the buffer."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _align(x: int) -> int:
    return _cdiv(x, ALIGN) * ALIGN


@dataclass(frozen=True)
class Problem:
    """A MAC layer as a grouped convolution over HWC tensors in DRAM.

    ``c`` and ``k`` are the channels of the whole input and output tensors;
    group ``g`` reads input channels ``g*cg ...`` and writes output channels
    ``g*kg ...``.
    ``kind`` is ``dense``, ``depthwise`` (block-diagonal packing) or ``matmul``
    (the "weights" of group g are the rows of a ``[kg, cg]`` activation matrix).
    """

    name: str = field(compare=False)     # equal shapes map identically, whatever the layer's name
    kind: str = "dense"
    groups: int = 1
    h: int = 1
    w: int = 1
    c: int = 1
    k: int = 1
    cg: int = 1
    kg: int = 1
    kh: int = 1
    kw: int = 1
    stride: int = 1
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)     # zero padding (top, left, bottom, right)
    dil: int = 1               # > 1: a dilated kernel, run as one 1x1 product per tap on a shifted window
    kept_taps: tuple = ()      # ... its taps that read the image (``mapper.ir.Conv2d.taps_run``)
    fold: bool = False
    act: int = Act.NONE        # what the STOREs apply after requantisation
    dw_pack: int = 1           # depthwise channels packed per group
    gather: bool = False       # depthwise: GEMMs gather each kernel row's taps on lanes (ISA ``dw``)
    softmax_row: int = 0       # > 0: the STOREs' softmax epilogue over rows of this many channels
    heads: int = 1             # matmul: groups are (window, head) pairs, heads the faster
    row0: int = 0              # a band of output rows: its first ...
    rows: int = 0              # ... and how many (0: every row)
    in_pitch: int = 0          # > 0: the input is stored in DRAM with this pitch, wider than its channels (a
                               # concatenation's part; a product's row of windows, heads inside a wider
                               # tensor): its loads read, and are timed, as the program's
    in_gb: int = 0             # > 0: the input is kept in the global buffer with this pitch (``mapper.residency``)
    out_gb: int = 0            # > 0: the STOREs write the output into the global buffer with this pitch
    band_out: bool = False     # the output buffer holds only the band's rows (``mapper.bands``): the
                               # STOREs address it from the band's first row, not from row 0
    per_tap: bool = False      # a kernel of more taps than the weight buffer holds, run as a dilated one
                               # is (a 1x1 product per tap on a shifted window), every tap kept

    @property
    def table(self) -> bool:
        """The STOREs read the PE's table memory (an activation table or the exponentials)."""
        return self.act == Act.TABLE or self.softmax_row > 0

    @property
    def oh_full(self) -> int:
        return conv_out(self.h, self.kh, self.stride, self.pad[0], self.dil, padding_end=self.pad[2])

    @property
    def oh(self) -> int:
        """Output rows of the problem (of its band)."""
        return self.rows or self.oh_full

    @property
    def in_row0(self) -> int:
        """The input row a band of a layer (``_split``) addresses its input from: its loads' ``y0`` and
        ``t_h`` count from there, so that ``y0`` fits its field whatever the band's place (a band chain's
        input starts at its band already, ``band_out``)."""
        return 0 if self.band_out else max(0, self.row0 * self.stride - self.pad[0])

    @property
    def ow(self) -> int:
        return conv_out(self.w, self.kw, self.stride, self.pad[1], self.dil, padding_end=self.pad[3])

    @property
    def windows(self) -> int:
        """A product's windows: its groups are (window, head) pairs."""
        return self.groups // self.heads

    @property
    def shifted(self) -> bool:
        """Run as one 1x1 product per tap on a shifted window: dilated, or ``per_tap``."""
        return self.dil > 1 or self.per_tap

    @property
    def shifts(self) -> int:
        """Input windows a tile reads: one per kept tap when shifted (each its own 1x1 product), else one."""
        return len(self.kept_taps) if self.shifted else 1

    def shift_of(self, block: int, c0: int) -> tuple[int, int, int]:
        """(rows, columns, channel block) of a channel block counted over the shifts: its window's offset."""
        shift, cb = divmod(block, self.shift_blocks(c0))
        if not self.shifted:
            return 0, 0, cb
        ky, kx = self.kept_taps[shift]
        return self.dil * ky, self.dil * kx, cb

    @property
    def taps(self) -> int:
        """Weight rows per channel block: one per tap, per kernel row (gather) or one (folded, shifted)."""
        return 1 if self.fold or self.shifted else self.kh if self.gather else self.kh * self.kw

    @property
    def red_channels(self) -> int:
        """Channels reduced per tap by one vector MAC (folded channels if folded)."""
        return self.kh * self.kw * self.cg if self.fold else self.cg

    def shift_blocks(self, c0: int) -> int:
        """Channel blocks of one window (of one shift)."""
        return _cdiv(self.red_channels, c0)

    def n_cblk(self, c0: int) -> int:
        """Channel blocks a tile reduces, over every shift (a tap's weight rows, when taps are rows)."""
        return self.shifts * self.shift_blocks(c0)

    @property
    def macs(self) -> int:
        per_out = (self.cg if self.kind != "depthwise" else 1) * (self.shifts if self.shifted else self.kh * self.kw)
        return self.oh * self.ow * self.k * per_out


#: Output rows and columns a STORE addresses (its t_h, t_w, y0, x0).
MAX_OUT_SIDE = (1 << min(FIELD_BITS[Op.STORE][name] for name in ("t_h", "t_w", "y0", "x0"))) - 1


def token_shape(t: int) -> tuple[int, int]:
    """A T-token sequence as an h x w image (the same bytes in DRAM whatever the shape).

    As many rows as the STORE's fields allow: PE rows split the image by rows, so a
    sequence laid out as 2 x 2048 could keep at most two PE rows busy.  A count with no
    such factors (a prime above 4095) is a column of T rows, which the mapper splits
    into bands of rows (``_split``).
    """
    for h in range(min(t, MAX_OUT_SIDE), 0, -1):
        if t % h == 0 and t // h <= 2048:
            return h, t // h
    return t, 1


def may_fold(channels: int, in_pitch: int) -> bool:
    """Whether an input of ``channels`` channels stored ``in_pitch`` bytes a pixel may be
    im2col-folded: only without gaps (``in_pitch`` 0 or ``channels``), as a folded LOAD_INP's
    ``t_c`` is both the pixel's pitch and the channels its gather folds.  A part of a
    concatenation (its pitch) or a tensor kept in the global buffer at a wider pitch is not."""
    return in_pitch in (0, channels)


#: The most channels a LOAD_INP's bound (its field ``chan``) names.
MAX_CHANNEL_BOUND = (1 << FIELD_BITS[Op.LOAD_INP]["chan"]) - 1


def channel_bound(p: Problem, c0: int) -> int:
    """LOAD_INP's ``chan`` for ``p``: the input's channels when it is gapped in DRAM (a part of a
    concatenation, or a one-window product's heads inside a wider tensor) and a load's whole channel
    blocks would reach past it, so that no lane reads the bytes beside it, which another layer (or
    this one) writes, or past the DRAM image (``docs/program.md``); else 0, the pitch."""
    reach = (p.groups - 1) * p.cg + p.shift_blocks(c0) * c0      # past the last channel a load's lanes read
    if not p.in_pitch or p.in_gb or reach <= p.c:
        return 0
    if p.kind == "matmul" and p.windows > 1:
        return 0            # windows: a row's heads are no prefix of it, the gaps lie between them
    if p.c > MAX_CHANNEL_BOUND:
        raise MappingError(f"{p.name}: an input of {p.c} channels stored at a pitch of {p.in_pitch} (a part of a "
                           f"wider tensor), more than LOAD_INP.chan bounds (at most {MAX_CHANNEL_BOUND})")
    return p.c


def problem_of(layer: Layer, cfg: AcceleratorConfig, in_pitch: int = 0, in_gb: int = 0) -> Problem:
    """The grouped-convolution problem of a MAC layer on ``cfg`` whose input is stored ``in_pitch``
    bytes a pixel in DRAM (0: its own channels, no gaps), or ``in_gb`` in the global buffer."""
    p = _problem(layer, cfg)
    if p.fold and not may_fold(p.c, in_gb or in_pitch):
        p = replace(p, fold=False)
    if p.kind == "matmul":
        # the first operand's rows hold its windows one after the other (``Placement.a_window``): a
        # row is ``windows`` pixels of the tensor's buffer, gapped when it holds more than the heads
        gapped = p.windows * in_pitch if in_pitch and in_pitch * p.windows != p.c else 0
    else:
        gapped = in_pitch if in_pitch != p.c else 0
    p = replace(p, in_pitch=gapped, in_gb=in_gb)
    if isinstance(layer, Conv2d) and not p.fold and not p.shifted and (
            p.taps > cfg.weight_rows                      # RepLKNet's 31x31: a tap at a time
            or p.kh * p.kw > cfg.input_rows // 2):        # one pixel's window overfills an input buffer half
        p = replace(p, per_tap=True, gather=False, kept_taps=layer.taps_run)
    return p


def _problem(layer: Layer, cfg: AcceleratorConfig) -> Problem:
    """``problem_of`` as if its input were stored without gaps."""
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        if layer.depthwise:
            pack = min(cfg.k0, cfg.c0, layer.in_ch)
            return Problem(layer.name, "depthwise", _cdiv(layer.in_ch, pack), layer.in_h, layer.in_w,
                           layer.in_ch, layer.out_ch, pack, pack, kh, kw, layer.stride, layer.pads, layer.dilation,
                           _kept(layer), act=_act(layer), dw_pack=pack, gather=layer.dilation == 1 and dw_gather_ok(cfg, kw))
        cg, kg = layer.in_ch // layer.groups, layer.out_ch // layer.groups
        # Fold taps into channels (im2col in the load unit) when it saves channel blocks, when the
        # patches do not overlap (stride >= kernel: no extra DRAM reads), or when the taps of one
        # channel block would not fit half a weight buffer otherwise.
        folded, plain = _cdiv(kh * kw * cg, cfg.c0), kh * kw * _cdiv(cg, cfg.c0)
        fold = layer.groups == 1 and kh * kw > 1 and layer.dilation == 1 and (
            folded < plain or (folded == plain and layer.stride >= kh) or kh * kw > cfg.weight_rows // 2)
        return Problem(layer.name, "dense", layer.groups, layer.in_h, layer.in_w, layer.in_ch,
                       layer.out_ch, cg, kg, kh, kw, layer.stride, layer.pads, layer.dilation, _kept(layer), fold,
                       _act(layer))
    if isinstance(layer, Linear):
        h, w = token_shape(layer.tokens)
        return Problem(layer.name, "dense", 1, h, w, layer.in_features, layer.out_features,
                       layer.in_features, layer.out_features, act=_act(layer))
    if isinstance(layer, MatMul):
        # Each batch item is a group: its rows of A are channels g*k.. of an [m, batch*k] tensor.
        h, w = token_shape(layer.m)
        return Problem(layer.name, "matmul", layer.batch, h, w, layer.batch * layer.k,
                       layer.batch * layer.n, layer.k, layer.n, heads=layer.heads)
    raise MappingError(f"{layer.name}: {layer.kind} is not a MAC layer")


def _kept(layer: Conv2d) -> tuple:
    """A dilated convolution's taps that read the image (every band of it runs the same: its
    weights serve them all); none otherwise."""
    return layer.taps_run if layer.dilation > 1 else ()


def _act(layer: Layer) -> int:
    return Act.RELU if getattr(layer, "relu", False) else Act.NONE


@dataclass(frozen=True)
class Tiling:
    pe_k: int
    pe_p: int
    th: int
    tw: int
    cbi: int
    resident: bool          # all weights of a pass stay in the weight buffer for the whole pass
    fenced: bool = False    # ... in the whole buffer (not one half): a FENCE separates the passes
    whole_groups: bool = False  # a pass holds every output block of its groups (``_passes``)


@dataclass
class Lowered:
    """A mapped layer: its problem, tiling, DRAM layout, stream and exact cycles."""

    problem: Problem
    tiling: Tiling
    layout: Placement
    stream: list
    cycles: int
    candidates: int


# ---- DRAM layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """Where a problem's tensors are in DRAM (byte addresses and strides).

    ``input``/``output`` address element (0, 0, 0) of the tensor (its channel offset included),
    ``in_pitch``/``out_pitch`` the bytes per pixel.  Dense and depthwise weights sit at
    ``weights``, pre-arranged per output channel as ``rows_per_oc`` rows of C0 bytes.  For a
    matmul, group ``g`` (window ``g // heads``, head ``g % heads``) reads channels
    ``a_window * (g // heads) + a_head * (g % heads)`` of each input row, and its second operand
    row ``j``, element ``i`` at ``weights + b_window * (g // heads) + b_head * (g % heads // b_repeat) +
    j * b_row + i * b_lane`` (``b_repeat`` heads read each head of a shared second operand).  ``table`` holds the 256 x 32-bit table of the STOREs (or -1).
    """

    input: int
    in_pitch: int
    weights: int
    params: int
    output: int
    out_pitch: int
    rows_per_oc: int = 0
    table: int = -1
    a_window: int = 0
    a_head: int = 0
    b_window: int = 0
    b_head: int = 0
    b_row: int = 0
    b_lane: int = 1
    b_repeat: int = 1
    end: int = 0


def default_placement(p: Problem, cfg: AcceleratorConfig) -> Placement:
    """Every tensor of a problem in its own contiguous region (the problem run on its own).

    Inputs and outputs are HWC (for matmul the batch items are channel groups of an [m, batch*k]
    input and an [m, batch*n] output; the second operand is ``groups`` consecutive [kg, cg]
    matrices, i.e. B transposed).
    """
    in_bytes = p.h * p.w * (p.in_pitch or p.c)
    out_bytes = p.oh * p.ow * p.k
    if p.kind == "matmul":
        rows_per_oc = p.n_cblk(cfg.c0)
        w_bytes = p.groups * p.kg * p.cg
    else:
        rows_per_oc = p.n_cblk(cfg.c0) * p.taps
        w_bytes = p.k * rows_per_oc * cfg.c0
    weights = _align(in_bytes)
    params = weights + _align(w_bytes)
    table = params + _align(p.k * PARAM_ENTRY_BYTES)
    output = table + (_align(TABLE_BYTES) if p.table else 0)
    end = output + _align(out_bytes)
    if end >= 1 << ADDR_BITS:
        raise MappingError(f"{p.name}: needs {end} bytes of DRAM, more than the {ADDR_BITS}-bit address space")
    # a tensor kept in the global buffer is at its address 0 (as aligned there: the same bank conflicts)
    return Placement(0, p.in_gb or p.in_pitch or p.c, weights, params, 0 if p.out_gb else output, p.out_gb or p.k, rows_per_oc, table if p.table else -1,
                     a_window=p.in_pitch // p.windows if p.in_pitch and p.kind == "matmul" else p.heads * p.cg,
                     a_head=p.cg, b_window=p.heads * p.kg * p.cg, b_head=p.kg * p.cg,
                     b_row=p.cg, b_lane=1, end=end)


# ---- the stream ---------------------------------------------------------------------------------

#: An instruction through the ISA's range-checked constructor (``hw.isa.make`` itself: a wrapper
#: function would collect every instruction's keyword arguments twice).
_insn = make


def _passes(p: Problem, t: "Tiling", cfg: AcceleratorConfig) -> list[tuple[tuple[int, int], ...]]:
    """Work units (group, output block) per pass, one per PE column.

    A pass holds units of one output block of consecutive groups (or
    consecutive blocks of the single group), so the output channels of its
    columns are evenly spaced and one STORE describes them.  With
    ``whole_groups`` a pass holds every block of m consecutive groups, block
    major (column ``b*m + i`` is block b of the pass's group i): each group's
    input is loaded once for all its blocks (one multicast), and each block's
    columns are evenly spaced, a STORE per block (``_Stream._stores``).
    """
    blocks = _cdiv(p.kg, cfg.k0)
    if t.whole_groups:
        per = t.pe_k // blocks
        return [tuple((g, b) for b in range(blocks) for g in range(g0, min(p.groups, g0 + per)))
                for g0 in range(0, p.groups, per)]
    if p.groups == 1 or p.kg % cfg.k0 == 0:
        # channel of unit (g, b) is (g * blocks + b) * K0: evenly spaced in any order
        units = tuple((g, b) for g in range(p.groups) for b in range(blocks))
        return [units[i:i + t.pe_k] for i in range(0, len(units), t.pe_k)]
    return [tuple((g, b) for g in range(g0, min(p.groups, g0 + t.pe_k)))
            for b in range(blocks) for g0 in range(0, p.groups, t.pe_k)]


def _contiguous(p: Problem, cfg: AcceleratorConfig) -> bool:
    return p.groups == 1 or p.kg % cfg.k0 == 0


@lru_cache(maxsize=4096)
def _input_sets(units: tuple) -> tuple[tuple[int, int, int, int], ...]:
    """(group, first column, columns, column step) of the columns each LOAD_INP of a row group
    feeds: the columns of one group share a multicast (consecutive runs, or, when a pass holds
    several blocks of each group, block-major, every m-th column).  Remembered: every load group
    of a pass and every tiling's estimate asks for the same pass's sets again."""
    cols: dict[int, list[int]] = {}
    for col, (g, _) in enumerate(units):
        cols.setdefault(g, []).append(col)
    sets = []
    for g, cs in cols.items():
        step = cs[1] - cs[0] if len(cs) > 1 else 1
        if all(b - a == step for a, b in zip(cs, cs[1:])):
            sets.append((g, cs[0], len(cs), step))
        else:                       # not one progression: a load per run of consecutive columns
            run0 = 0
            for i in range(1, len(cs) + 1):
                if i == len(cs) or cs[i] != cs[i - 1] + 1:
                    sets.append((g, cs[run0], i - run0, 1))
                    run0 = i
    return tuple(sets)


def _geometry(p: Problem, t: "Tiling") -> dict:
    """Input window and GEMM loop parameters of one PE's tile."""
    if p.fold:   # im2col by the load unit: a 1x1 convolution over folded channels
        return dict(win_h=t.th, win_w=t.tw, fold_kh=p.kh, fold_kw=p.kw, fold_stride=p.stride, in_w=t.tw,
                    kh=1, kw=1, stride=1)
    if p.shifted:   # one strided 1x1 product per tap, its window shifted (``_Stream._inputs``)
        win_h, win_w = (t.th - 1) * p.stride + 1, (t.tw - 1) * p.stride + 1
        return dict(win_h=win_h, win_w=win_w, fold_kh=0, fold_kw=0, fold_stride=0, in_w=win_w,
                    kh=1, kw=1, stride=p.stride)
    return dict(win_h=(t.th - 1) * p.stride + p.kh, win_w=(t.tw - 1) * p.stride + p.kw, fold_kh=0, fold_kw=0,
                fold_stride=0, in_w=(t.tw - 1) * p.stride + p.kw, kh=p.kh, kw=p.kw, stride=p.stride)


def build_stream(p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement) -> list[Insn]:
    """The instruction stream of problem ``p`` under tiling ``t`` with its tensors at ``pl``
    (ends with FENCE).

    Buffer halves alternate per chunk (inputs, streamed weights), per pass
    (resident weights) and per tile (accumulators); parameter slots rotate
    over ``PARAM_SLOTS`` tiles.  Tokens: load group j waits for GEMM j-2,
    GEMM j for load group j, STORE of tile i for its last GEMM, and the first
    GEMM of tile i for STORE i-2.  With four parameter slots, the loads of tile
    i can only overwrite the slot of tile i-4, whose STORE finished before
    tile i-2's first GEMM started.  A table the STOREs read is loaded once, first.
    """
    if p.fold and not may_fold(p.c, pl.in_pitch):
        raise MappingError(f"{p.name}: an im2col-folded input must be stored without gaps "
                           f"({pl.in_pitch} bytes per pixel for {p.c} channels)")
    return _Stream(p, t, cfg, pl).build()


def _step(t: Tiling) -> int:
    """PE step of a column's multicast (every pe_k-th PE; any step for a single PE, and a step of
    pe_k = 64 would not fit its field)."""
    return t.pe_k if t.pe_p > 1 else 1


class _Stream:
    """The loop nest of ``build_stream``, one method per instruction kind."""

    def __init__(self, p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement):
        self.p, self.t, self.cfg, self.pl = p, t, cfg, pl
        self.geo = _geometry(p, t)
        self.chan = channel_bound(p, cfg.c0)
        per = p.shift_blocks(cfg.c0)       # chunks stay within one shift's window
        self.chunks = [(s * per + c, min(t.cbi, per - c)) for s in range(p.shifts) for c in range(0, per, t.cbi)]
        self.across = _cdiv(p.ow, t.tw)         # tiles in a row of tiles (built when the stream is)
        self.n_tiles = _cdiv(p.oh, t.pe_p * t.th) * self.across
        self.passes = _passes(p, t, cfg)
        self.halves = (cfg.input_rows // 2, cfg.weight_rows // 2, cfg.accum_depth // 2)
        self.j = 0            # load group / GEMM index within the layer
        self.tile_i = 0
        # what every load group's LOAD_INPs read of the problem, its properties evaluated once
        self.oh, self.in_row0, self.taps = p.oh, p.in_row0, p.taps
        self.in_src = self.pl.input + self.in_row0 * p.w * self.pl.in_pitch
        self.shift_at: dict[int, tuple[int, int, int]] = {}     # p.shift_of per channel block

    def tile(self, i: int) -> tuple[int, int]:
        """(first row, first column) of tile ``i``, the tiles row-major (an estimate asks for one)."""
        row, col = divmod(i, self.across)
        return row * self.t.pe_p * self.t.th, col * self.t.tw

    def build(self) -> list[Insn]:
        out: list[Insn] = []
        n_groups = len(self.passes) * self.n_tiles * len(self.chunks)
        tiles = [self.tile(i) for i in range(self.n_tiles)]
        for pi, units in enumerate(self.passes):
            for ti, tile in enumerate(tiles):
                for ci, chunk in enumerate(self.chunks):
                    if self.t.fenced and pi > 0 and ti == 0 and ci == 0:
                        out.append(_insn(Op.FENCE))      # the next pass's weights overwrite the whole buffer
                    group = self._loads(pi, units, ti, tile, ci, chunk)
                    group[0].pop_next = self.j >= 2
                    group[-1].push_next = True
                    out.extend(group)
                    out.append(self._gemm(pi, ci, chunk, n_groups))
                    self.j += 1
                out.extend(self._stores(units, tile))
                self.tile_i += 1
        out.append(_insn(Op.FENCE))
        return out

    def _loads(self, pi, units, ti, tile, ci, chunk) -> list[Insn]:
        group: list[Insn] = []
        if self.j == 0 and self.p.table:
            group.append(_insn(Op.LOAD_PARAM, pe_first=0, pe_count=self.cfg.num_pe, pe_step=1,
                               src_addr=self.pl.table, dst_addr=0, n_entries=TABLE_PARAM_ENTRIES,
                               table=1))
        if ci == 0:
            group += self._params(units)
        if not self.t.resident or ti == 0:
            # resident weights arrive chunk by chunk with the pass's first tile, so its first
            # GEMM waits for one chunk's weights, not the whole pass's
            group += self._weights(pi, units, chunk)
        inputs = self._inputs(units, tile, chunk)
        if self.p.in_gb:
            # a gather from the global buffer is done GB_LATENCY cycles after its beats, before
            # the DRAM data of a load issued earlier: it goes first, so that the group's last
            # load, whose token the GEMM pops, is also the last to land (hw.hazards)
            return inputs + group
        return group + inputs

    def _first_channels(self, units) -> list[int]:
        return [g * self.p.kg + bb * self.cfg.k0 for g, bb in units]

    def _k_per_pe(self, unit) -> int:
        """Output channels of a unit's block (K0 but in a group's last, partial block)."""
        return min(self.cfg.k0, self.p.kg - unit[1] * self.cfg.k0)

    def _params(self, units) -> list[Insn]:
        t, k0 = self.t, self.cfg.k0
        return [_insn(Op.LOAD_PARAM, pe_first=col, pe_count=t.pe_p, pe_step=_step(t),
                      src_addr=self.pl.params + ch * PARAM_ENTRY_BYTES, dst_addr=(self.tile_i % PARAM_SLOTS) * k0,
                      n_entries=min(self._k_per_pe(unit), self.p.k - ch))
                for col, (unit, ch) in enumerate(zip(units, self._first_channels(units)))]

    def _wbuf(self, pi: int) -> int:
        if self.t.fenced:
            return 0
        return (pi % 2 if self.t.resident else self.j % 2) * self.halves[1]

    def _weights(self, pi, units, chunk) -> list[Insn]:
        p, t, pl, c0, k0 = self.p, self.t, self.pl, self.cfg.c0, self.cfg.k0
        cb0, ncb = chunk
        rows, roff = ncb * self.taps, cb0 * self.taps
        first_ch, wbuf = self._first_channels(units), self._wbuf(pi)
        out = []
        for col, (g, bb) in enumerate(units):
            if p.kind == "matmul":
                win, head = divmod(g, p.heads)
                base = (pl.weights + win * pl.b_window + head // pl.b_repeat * pl.b_head + bb * k0 * pl.b_row
                        + roff * c0 * pl.b_lane)
                chan, stride, lane = min(p.cg - roff * c0, rows * c0), pl.b_row, pl.b_lane
            else:
                base = pl.weights + (first_ch[col] * pl.rows_per_oc + roff) * c0
                chan, stride, lane = rows * c0, pl.rows_per_oc * c0, 1
            out.append(_insn(Op.LOAD_WGT, pe_first=col, pe_count=t.pe_p, pe_step=_step(t), src_addr=base,
                             dst_addr=wbuf + (roff if t.resident else 0), rows=rows,
                             n_out=min(self._k_per_pe((g, bb)), p.k - first_ch[col]), chan=chan, out_stride=stride,
                             lane_stride=lane))
        return out

    def _group_channel(self, g: int) -> int:
        """First input channel (byte in the pixel) group ``g`` reads."""
        if self.p.kind == "matmul":
            win, head = divmod(g, self.p.heads)
            return win * self.pl.a_window + head * self.pl.a_head
        return g * self.p.cg

    def _inputs(self, units, tile, chunk, sample: bool = False) -> list[Insn]:
        """The LOAD_INPs of a load group (``sample``: only the first, for ``_estimate``)."""
        p, t, geo, c0 = self.p, self.t, self.geo, self.cfg.c0
        (ty, tx), (block, ncb) = tile, chunk
        shift = self.shift_at.get(block)
        if shift is None:
            shift = self.shift_at[block] = p.shift_of(block, c0)
        dy, dx, cb0 = shift
        out = []
        for pg in range(1 if sample else t.pe_p):
            oy = ty + pg * t.th
            if oy >= self.oh:
                break
            common = dict(src_gb=int(p.in_gb > 0), src_addr=self.in_src,
                          dst_addr=(self.j % 2) * self.halves[0], t_h=p.h - self.in_row0, t_w=p.w,
                          t_c=self.pl.in_pitch, y0=(p.row0 + oy) * p.stride - p.pad[0] + dy - self.in_row0,
                          x0=tx * p.stride - p.pad[1] + dx,
                          win_h=geo["win_h"], win_w=geo["win_w"], n_cblk=ncb, chan=self.chan,
                          fold_kh=geo["fold_kh"], fold_kw=geo["fold_kw"], fold_stride=geo["fold_stride"])
            # columns reducing the same group's channels share one multicast load
            for g, col0, ncol, step in _input_sets(units):
                out.append(_insn(Op.LOAD_INP, pe_first=pg * t.pe_k + col0, pe_count=ncol, pe_step=step,
                                 c_base=self._group_channel(g) + cb0 * c0, **common))
                if sample:
                    return out
        return out

    def _gemm(self, pi, ci, chunk, n_groups) -> Insn:
        p, t, geo = self.p, self.t, self.geo
        cb0, ncb = chunk
        gemm = _insn(Op.GEMM, inp_addr=(self.j % 2) * self.halves[0],
                     wgt_addr=self._wbuf(pi) + (cb0 * self.taps if t.resident else 0),
                     acc_addr=(self.tile_i % 2) * self.halves[2], out_h=t.th, out_w=t.tw, in_w=geo["in_w"],
                     kh=geo["kh"], kw=geo["kw"], stride=geo["stride"], n_cblk=ncb, accumulate=int(ci > 0),
                     dw=int(p.gather))
        gemm.pop_prev = True
        gemm.push_prev = self.j + 2 < n_groups
        gemm.pop_next = ci == 0 and self.tile_i >= 2
        gemm.push_next = ci == len(self.chunks) - 1
        return gemm

    def _stores(self, units, tile) -> list[Insn]:
        """The STOREs of a tile: one, or with ``whole_groups`` one per output block, the first
        popping the tile's last GEMM's token and the last pushing the token its accumulator
        half's next GEMM pops."""
        if not self.t.whole_groups:
            stores = [self._store(units, tile, 0, units)]
        else:
            per = len(units) // _cdiv(self.p.kg, self.cfg.k0)
            stores = [self._store(units, tile, col0, units[col0:col0 + per]) for col0 in range(0, len(units), per)]
        stores[0].pop_prev = True
        stores[-1].push_prev = self.tile_i + 2 < len(self.passes) * self.n_tiles
        return stores

    def _store(self, units, tile, col0: int, cols) -> Insn:
        """The STORE of columns ``col0 ...`` (units ``cols``, evenly spaced output channels)."""
        p, t, k0 = self.p, self.t, self.cfg.k0
        ty, tx = tile
        first_ch = self._first_channels(cols)
        k_per_pe = self._k_per_pe(cols[0])
        k_step = k0 if _contiguous(p, self.cfg) else p.kg
        # column c writes channels from k_base + c * k_step; a block whose columns do not start
        # at column 0 would need a negative k_base: its addresses move down instead
        k_base = first_ch[0] - col0 * k_step
        shift = max(0, -k_base)
        # a band's rows are numbered from its first (the output address moves to it, unless the
        # output buffer holds the band alone)
        dst = self.pl.output + (0 if p.band_out else p.row0 * p.ow * self.pl.out_pitch) - shift
        # the shift is below num_pe x kg bytes; an output sits after the program's static data
        # (mapper.program: the input image, weights, parameters) or after the layer's inputs,
        # weights and parameters (default_placement), so this is not expected to refuse
        if dst < 0:
            raise MappingError(f"{p.name}: the output at DRAM byte {self.pl.output} lies below the {shift} bytes "
                               f"a whole-groups STORE addresses before it")
        return _insn(Op.STORE, pe_first=col0, pe_count=len(cols) if t.whole_groups else t.pe_k * t.pe_p, pe_step=1,
                     dst_addr=dst, acc_addr=(self.tile_i % 2) * self.halves[2],
                     param_addr=(self.tile_i % PARAM_SLOTS) * k0,
                     out_h=t.th, out_w=t.tw, t_h=p.oh, t_w=p.ow, k_pitch=self.pl.out_pitch, y0=ty, x0=tx,
                     k_base=k_base + shift, k_step=k_step, k_per_pe=k_per_pe,
                     pe_k=t.pe_k, act=int(p.act), ep_row=p.softmax_row, dst_gb=int(p.out_gb > 0),
                     # columns beyond this pass's units hold no work: clip them with t_k
                     t_k=min(p.k, first_ch[-1] + k_per_pe) + shift)


# ---- the search ---------------------------------------------------------------------------------

def _extents(n: int) -> list[int]:
    """Tile extents worth trying along an axis of n: ceil(n / parts) for every part count."""
    return sorted({_cdiv(n, parts) for parts in range(1, n + 1)}, reverse=True)


def _grids(p: Problem, cfg: AcceleratorConfig) -> list[tuple[int, int, bool]]:
    """(PE columns, PE rows, whole groups) of the PE grids worth trying.

    Whole-groups passes (every output block of m groups, ``_passes``) serve groups whose output
    channels are no multiple of K0 (a 49-token window's scores: two blocks, the second of 17):
    otherwise each block is a pass of its own, which loads every group's input once per block.
    They take one row of PEs (a block's columns are then one evenly spaced PE set for its
    STORE), write DRAM (their STOREs address from below the output), and need the channel
    field room for that offset (``_Stream._store``).
    """
    blocks = _cdiv(p.kg, cfg.k0)
    max_units = p.groups * blocks if _contiguous(p, cfg) else p.groups
    grids = [(pe_k, cfg.num_pe // pe_k, False) for pe_k in range(1, min(cfg.num_pe, max_units) + 1)]
    if not _contiguous(p, cfg) and blocks > 1 and not p.out_gb:
        for per in range(1, min(p.groups, cfg.num_pe // blocks) + 1):
            pe_k = per * blocks
            if cfg.num_pe // pe_k == 1 and p.k + (blocks - 1) * pe_k * p.kg <= MAX_OUT_CHANNELS:
                grids.append((pe_k, 1, True))
    return grids


def _candidates(p: Problem, cfg: AcceleratorConfig):
    in_half, w_half, acc_half = cfg.input_rows // 2, cfg.weight_rows // 2, cfg.accum_depth // 2
    n_cb, per = p.n_cblk(cfg.c0), p.shift_blocks(cfg.c0)     # a chunk stays within a shift's blocks
    for pe_k, pe_p, whole in _grids(p, cfg):
        for th in _extents(_cdiv(p.oh, pe_p)):
            for tw in _extents(p.ow):
                if th * tw > acc_half:
                    continue
                geo = _geometry(p, Tiling(pe_k, pe_p, th, tw, 1, False))
                plane = geo["win_h"] * geo["win_w"]
                if plane > in_half:
                    continue
                resident = n_cb * p.taps <= w_half
                cbi = min(per, in_half // plane)
                if not resident and n_cb * p.taps <= cfg.weight_rows:
                    # the pass's weights fit the whole buffer: keep them, fencing between passes
                    yield Tiling(pe_k, pe_p, th, tw, _cdiv(per, _cdiv(per, cbi)), True, True, whole)
                if not resident:
                    cbi = min(cbi, w_half // p.taps)
                if cbi < 1:
                    continue
                cbi = _cdiv(per, _cdiv(per, cbi))      # balance the chunks
                yield Tiling(pe_k, pe_p, th, tw, cbi, resident, whole_groups=whole)


def rows_complete(p: Problem, t: Tiling, cfg: AcceleratorConfig) -> bool:
    """Whether every STORE of the tiling holds whole output rows (all channels of each of its groups),
    as a fused row epilogue (softmax, layernorm) needs (a whole-groups pass stores a block at a time)."""
    if t.whole_groups:
        return False
    for units in _passes(p, t, cfg):
        blocks: dict[int, int] = {}
        for g, _ in units:
            blocks[g] = blocks.get(g, 0) + 1
        if any(n != _cdiv(p.kg, cfg.k0) for n in blocks.values()):
            return False
    return True


def _busy(insns: list[Insn], cfg: AcceleratorConfig) -> int:
    """Cycles a unit is busy with ``insns`` (``hw.timing.occupancy``, the schedule's own rule)."""
    return sum(occupancy(i, cfg) for i in insns)


def _per_column(build, units, cfg: AcceleratorConfig) -> int:
    """Busy cycles of a per-column load (``build(units)``) over a pass's columns: the first
    column's for all but the last, which may hold a partial block (fewer instructions to build)."""
    if len(units) == 1:
        return _busy(build(units), cfg)
    return _busy(build(units[:1]), cfg) * (len(units) - 1) + _busy(build(units[-1:]), cfg)


def _sampled_inputs(p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement | None):
    """(the stream, the sampled pass's units, tile and chunk, its first LOAD_INP's busy and landed
    cycles, the busy cycles of the chunk's inputs) of an estimate: a tile in the middle of the
    first pass, its first chunk (``_estimate``).  Remembered: the search takes every tiling's
    floor (``_estimate_floor``), then the estimates of some, from the same sample (which they
    only read); by the layer's name too, which equal problems do not share and a refusal names."""
    return _sample(p, p.name, t, cfg, pl)


@lru_cache(maxsize=1024)
def _sample(p: Problem, name: str, t: Tiling, cfg: AcceleratorConfig, pl: Placement | None):
    s = _Stream(p, t, cfg, default_placement(p, cfg) if pl is None else pl)
    units, tile, chunk = s.passes[0], s.tile(s.n_tiles // 2), s.chunks[0]
    # one LOAD_INP stands for the group's (its row groups and input sets cost alike but at edges)
    [first] = s._inputs(units, tile, chunk, sample=True)
    first_busy, first_landed = occupancy_and_latency(first, cfg)
    row_groups = min(t.pe_p, _cdiv(p.oh - tile[0], t.th))
    return s, units, tile, chunk, first_busy, first_landed, first_busy * row_groups * len(_input_sets(units))


def _estimate(p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement | None = None) -> float:
    """Cycle estimate used to rank tilings before exact scheduling: a tile in the middle of the
    first pass, its first chunk, built as the stream builds it and timed by ``hw.timing``'s
    occupancy of each instruction (setup, bus beats, DRAM bytes, padding), then scaled to the
    layer with the loop nest's counts (load and compute overlap chunk by chunk, a tile's STOREs
    the next tile)."""
    s, units, tile, chunk, first_busy, first_landed, inputs = _sampled_inputs(p, t, cfg, pl)
    weights = _per_column(lambda us: s._weights(0, us, chunk), units, cfg)
    gemm = occupancy(s._gemm(0, 0, chunk, 1), cfg)
    n_passes, n_tiles, n_chunks = len(s.passes), s.n_tiles, len(s.chunks)
    load = inputs + (0 if t.resident else weights)
    landed = load + first_landed - first_busy     # a group's data in the buffers
    stores = [occupancy_and_latency(i, cfg) for i in s._stores(units, tile)]
    store = sum(busy for busy, _ in stores)
    # two halves: load group j waits for GEMM j-2, whose GEMM waits for its data; the first GEMM
    # of tile i waits for STORE i-2's writes (its DRAM latency included)
    chunk_cycles = max(gemm, load, (landed + gemm) / 2)
    store_wait = (store - stores[-1][0] + stores[-1][1] + n_chunks * gemm) / 2
    per_tile = max(n_chunks * chunk_cycles + _per_column(s._params, units, cfg), store, store_wait)
    fill = 2 * cfg.dram_latency + load + store
    if t.resident:     # the first tile of a pass loads the weights chunk by chunk, with its inputs
        fill += n_passes * n_chunks * (max(gemm, inputs + weights) - max(gemm, inputs))
    if t.fenced:   # every pass drains the pipeline, then loads its first chunk's weights before computing
        fill += n_passes * (2 * cfg.dram_latency + load + store + weights)
    return n_passes * n_tiles * per_tile + fill


def _estimate_floor(p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement | None = None) -> int:
    """A floor on ``_estimate`` from two of its instructions (a quarter of its work): each chunk
    takes at least its GEMM's or its inputs' cycles, and the fill at least two DRAM latencies.
    Every term it drops is >= 0 and floating point rounding is monotonic, so the floor is never
    above the estimate as computed.  Raises StreamError only when the estimate does (the same two
    instructions, built there too)."""
    s, _, _, chunk, _, _, inputs = _sampled_inputs(p, t, cfg, pl)
    gemm = occupancy(s._gemm(0, 0, chunk, 1), cfg)
    return len(s.passes) * s.n_tiles * (len(s.chunks) * max(gemm, inputs)) + 2 * cfg.dram_latency


#: Channels a STORE can address (its channel field t_k) and input bytes per pixel (LOAD_INP's t_c).
MAX_OUT_CHANNELS = (1 << FIELD_BITS[Op.STORE]["t_k"]) - 1
MAX_IN_PITCH = (1 << FIELD_BITS[Op.LOAD_INP]["t_c"]) - 1


def _max_channels_ok(p: Problem) -> bool:
    return p.c <= MAX_IN_PITCH and p.k <= MAX_OUT_CHANNELS


def _split_groups(p: Problem) -> list[tuple[Problem, int]]:
    """Split a problem with too many channels for the STORE's fields into equal batches of groups
    (whole windows of heads for a matmul, so that every batch starts at a window).  Batch ``r``
    of part ``i`` starts at the groups of the batches before it (``mapper.program``)."""
    if _max_channels_ok(p):
        return [(p, 1)]
    per = max(1, MAX_OUT_CHANNELS // max(p.cg, p.kg))
    if p.kind == "matmul":
        per = per // p.heads * p.heads
        if per == 0:
            raise MappingError(f"{p.name}: one window of {p.heads} heads has {p.heads * p.kg} output channels, "
                               f"more than a STORE addresses ({MAX_OUT_CHANNELS})")
    full, rest = divmod(p.groups, per)
    parts = [(replace(p, groups=per, c=per * p.cg, k=per * p.kg), full)]
    if rest:
        parts.append((replace(p, groups=rest, c=rest * p.cg, k=rest * p.kg), 1))
    return parts


def _split(p: Problem) -> list[tuple[Problem, int]]:
    """Parts that fit the STORE's fields: batches of groups (``_split_groups``), each in bands of at
    most MAX_OUT_SIDE output rows (every band its own part: its first rows may pad differently)."""
    if p.ow > MAX_OUT_SIDE:
        raise MappingError(f"{p.name}: {p.ow} output columns, more than a STORE addresses ({MAX_OUT_SIDE})")
    out = []
    for part, n in _split_groups(p):
        if part.oh <= MAX_OUT_SIDE:
            out.append((part, n))
            continue
        bands = [replace(part, row0=r, rows=min(MAX_OUT_SIDE, part.oh - r)) for r in range(0, part.oh, MAX_OUT_SIDE)]
        out += [(band, 1) for band in bands] * n
    return out


def check_fits(p: Problem, cfg: AcceleratorConfig) -> None:
    """Raise MappingError naming the buffer that cannot hold the smallest tile of ``p`` (its weights
    always fit: ``problem_of`` runs a kernel of more taps than the weight buffer holds a tap at a time)."""
    t = Tiling(1, cfg.num_pe, 1, 1, 1, False)
    geo = _geometry(p, t)
    if geo["win_h"] * geo["win_w"] > cfg.input_rows // 2:
        raise MappingError(f"{p.name}: the input buffer ({cfg.input_buf_bytes} bytes, half = "
                           f"{cfg.input_rows // 2} rows of C0) cannot hold the {geo['win_h']}x{geo['win_w']} "
                           f"input window of one output pixel")
    if cfg.accum_depth // 2 < 1:
        raise MappingError(f"{p.name}: the accumulation buffer ({cfg.accum_depth} entries) is too small")


#: Exact scheduling effort per problem: at least EXACT_MIN of the best-estimated tilings, and more
#: (up to EXACT_MAX) while their streams total fewer than EXACT_BUDGET instructions, so small
#: layers, where the estimate's fill and drain terms weigh most, get the most exact evaluations.
#: A first stream of EXACT_ALONE instructions (twice the budget) or more is the only one timed
#: (unless ``exact_top`` asks for more than EXACT_MIN): such a layer, a tiny buffer's tens of
#: thousands of tiles, is where those terms weigh least, and a second stream took seconds.
EXACT_MIN, EXACT_MAX, EXACT_BUDGET = 2, 12, 40_000
EXACT_ALONE = 2 * EXACT_BUDGET


def forget_searches() -> None:
    """Forget every search this process made (its mappings, input sets and the timing rules'
    memos): the next mapping is as cold as a new process's, bar the tilings on disk."""
    _map_problem.cache_clear()
    _input_sets.cache_clear()
    _sample.cache_clear()
    forget_memos()


@lru_cache(maxsize=4096)
def _map_problem(p: Problem, cfg: AcceleratorConfig, exact_top: int) -> Lowered | str:
    """The fastest mapping of ``p`` found, or why there is none (without the layer's name, which
    equal shapes do not share); remembered per process and on disk (``mapper.tiling_cache``)."""
    check_fits(p, cfg)
    known = tiling_cache.lookup(p, cfg, exact_top)
    if known is not None and "refused" in known and known.get("config") != cfg.name:
        known = None                   # its reason names another configuration: refuse again (cheap)
    if known is not None and "refused" in known:
        return known["refused"]
    if known is not None:              # an earlier run's answer: rebuild its stream, skip the search
        pl, t = default_placement(p, cfg), Tiling(**known["tiling"])
        best = Lowered(p, t, pl, build_stream(p, t, cfg, pl), known["cycles"], known["candidates"])
    else:
        try:
            best = _search(p, cfg, exact_top)
        except MappingError as e:
            why = str(e).removeprefix(f"{p.name}: ")
            tiling_cache.remember(p, cfg, exact_top, {"refused": why, "config": cfg.name})
            return why
        tiling_cache.remember(p, cfg, exact_top, {"tiling": asdict(best.tiling), "cycles": best.cycles,
                                                  "candidates": best.candidates})
    # the stream is the one the accelerator reads, unchanged by an encode/decode round trip (~13 s
    # a million instructions): ``make`` range-checked every field, and each is a plain int
    share_fields(best.stream)        # remembered for the process: equal words share their fields
    return best


def _search(p: Problem, cfg: AcceleratorConfig, exact_top: int) -> Lowered:
    """The fastest of the best-estimated tilings of ``p``, timed exactly (``EXACT_MIN`` ...)."""
    beyond = _dimension_beyond_isa(p)
    if beyond:                           # refused before every tiling's instructions are built
        raise MappingError(f"{p.name}: {beyond}")
    pl = default_placement(p, cfg)
    cands = list(_candidates(p, cfg))
    if p.softmax_row:
        cands = [t for t in cands if rows_complete(p, t, cfg)]
        if not cands:
            raise MappingError(f"{p.name}: no tiling of configuration {cfg.name} stores whole rows of {p.kg} "
                               f"channels at once, as a fused row epilogue needs")
    if not cands:
        raise MappingError(f"{p.name}: no tiling fits the buffers of configuration {cfg.name}")
    unencodable, best, best_key, spent, timed = None, None, None, 0, 0
    for t in _ranked(p, cfg, pl, cands):
        if _timed_enough(timed, spent, exact_top):
            break
        try:
            stream = build_stream(p, t, cfg, pl)
        except StreamError as e:
            unencodable = unencodable or e
            continue
        gathers = _gathers(stream) if p.in_gb else []
        if _gb_unaligned(gathers, cfg):               # refused (RANGE), and so is every other tiling's
            raise MappingError(f"{p.name}: {_UNALIGNED_GATHERS.format(c0=cfg.c0)}")
        if _gb_conflicting(gathers, cfg):             # refused when run (DATA): not a mapping
            continue
        spent += len(stream)
        timed += 1
        # a floor above the best's cycles: slower whatever its schedule (layer_cycles adds the decode's
        # start and END, which the floor leaves out), so not scheduled, but counted as timed
        if best is not None and cycles_floor(stream, cfg) > best_key[0]:
            continue
        key = (layer_cycles(stream, cfg), _traffic(p, t, cfg))
        if best is None or key < best_key:
            best, best_key = Lowered(p, t, pl, stream, key[0], len(cands)), key
    if best is None:        # every tiling ranked: the first one whose estimate raised, else the first built
        unencodable = _first_unestimable(p, cfg, pl, cands) or unencodable
    if best is None and unencodable is not None:
        raise MappingError(f"{p.name}: {_unencodable(p, unencodable)}")
    if best is None:
        raise MappingError(f"{p.name}: every tiling's LOAD_INP from the global buffer has a bank conflict")
    return best


def _timed_enough(timed: int, spent: int, exact_top: int) -> bool:
    """Whether a search that has timed ``timed`` tilings, whose streams total ``spent`` instructions,
    stops there (``EXACT_MIN`` ...)."""
    if timed >= max(exact_top, EXACT_MAX):
        return True
    if timed >= max(exact_top, EXACT_MIN) and spent >= EXACT_BUDGET:
        return True
    return timed == 1 and exact_top <= EXACT_MIN and spent >= EXACT_ALONE


def _rank_key(p: Problem, t: Tiling, cfg: AcceleratorConfig, pl: Placement) -> tuple:
    """How the search orders tilings: by the estimate, then by DRAM traffic (energy), then by the
    tiling itself (determinism)."""
    return _estimate(p, t, cfg, pl), _traffic(p, t, cfg), t.pe_k, -t.th, -t.tw


def _ranked(p: Problem, cfg: AcceleratorConfig, pl: Placement, cands: list[Tiling]) -> Iterator[Tiling]:
    """The tilings of ``cands`` in ``_rank_key`` order, equal keys in ``cands``' order, each estimated
    only when the order reaches its floor (``_estimate_floor``): a tiling whose floor is above an
    estimated one's estimate ranks after it, so the search, which times the first few, estimates
    a fraction of them.  A tiling with a field the ISA cannot encode is left out (its estimate
    raises StreamError; the layer's own dimensions: none is)."""
    floors = []
    for i, t in enumerate(cands):
        try:
            floors.append((_estimate_floor(p, t, cfg, pl), i))
        except StreamError:
            continue
    floors.sort()
    heap: list[tuple[tuple, int]] = []
    k = 0
    while heap or k < len(floors):
        # estimate every tiling whose floor is not above the least estimate so far
        while k < len(floors) and (not heap or floors[k][0] <= heap[0][0][0]):
            i = floors[k][1]
            k += 1
            try:
                heapq.heappush(heap, (_rank_key(p, cands[i], cfg, pl), i))
            except StreamError:
                continue
        if heap:
            yield cands[heapq.heappop(heap)[1]]


def _first_unestimable(p: Problem, cfg: AcceleratorConfig, pl: Placement, cands: list[Tiling]) -> Optional[StreamError]:
    """The StreamError of the first tiling of ``cands`` whose estimate raises one, if any."""
    for t in cands:
        try:
            _estimate(p, t, cfg, pl)
        except StreamError as e:
            return e
    return None


#: The instruction fields that hold a whole dimension of a layer: (the dimension, the Problem's
#: attribute, opcode, field).  A layer too large for one is refused naming the dimension.
_DIMENSION_FIELDS = (("output channels", "k", Op.STORE, "t_k"), ("input channels", "c", Op.LOAD_INP, "t_c"),
                     ("input rows", "h", Op.LOAD_INP, "t_h"), ("input columns", "w", Op.LOAD_INP, "t_w"))


#: Why a problem whose input is in the global buffer has no mapping when its first stream's gathers
#: are not of whole words: every tiling's are not (:func:`_gb_unaligned`).
_UNALIGNED_GATHERS = ("its LOAD_INPs from the global buffer read other than whole words of C0 = {c0} bytes "
                      "(hw.timing.load_inp_gb_unaligned), whatever the tiling")


def _gathers(stream: list[Insn]) -> list[dict]:
    """The fields of the LOAD_INPs of ``stream`` that read the global buffer."""
    return [i.f for i in stream if i.op == Op.LOAD_INP and i.f["src_gb"]]


def _gb_unaligned(gathers: list[dict], cfg: AcceleratorConfig) -> bool:
    """Whether a gather of a stream (``_gathers``) reads the global buffer other than in whole words (RANGE:
    a head's scores of fewer channels than C0, a depthwise layer's groups, say).  The same for
    every tiling of a problem: what decides it (the tensor's address and pixel pitch, each group's
    and channel block's first channel, folding) is the problem's, and every stream loads every
    group's every block; the tiling changes the windows and the PEs only.  So the search refuses
    the problem at its first stream, rather than building every tiling's to refuse each."""
    return any(load_inp_gb_unaligned(f, cfg) for f in gathers)


def _gb_conflicting(gathers: list[dict], cfg: AcceleratorConfig) -> bool:
    """Whether a gather of a stream (``_gathers``) has a bank conflict (DATA when run), which depends
    on the tiling's windows; found together (``hw.timing.load_inp_gb_conflicts``)."""
    return any(beat is not None for beat in load_inp_gb_conflicts(gathers, cfg))


def _dimension_beyond_isa(p: Problem) -> Optional[str]:
    """The dimension of ``p`` beyond its instruction field's range (no tiling encodes it), if any."""
    for what, attr, op, name in _DIMENSION_FIELDS:
        bits = FIELD_BITS[op][name]
        if getattr(p, attr) > (1 << bits) - 1:
            return (f"{getattr(p, attr)} {what}, more than the ISA addresses (at most {(1 << bits) - 1}: "
                    f"{op.name}.{name} is {bits} bits)")
    return None


def refuse_beyond_isa(layers, cfg: AcceleratorConfig) -> None:
    """MappingError naming the first MAC layer of ``layers`` a dimension of which no instruction
    field addresses (the search's own refusal, made before anything is mapped or allocated: a
    network at a huge input size is refused at once)."""
    for layer in layers:
        if not isinstance(layer, (Conv2d, Linear, MatMul)):
            continue
        forms = (layer, *_transposed(layer))
        reasons = [_form_beyond_isa(form, cfg) for form in forms]
        if all(reasons):                    # (a 1-D convolution maps in either form: map_layer)
            raise _neither_form(layer, forms, [MappingError(f"{layer.name}: {r}") for r in reasons])


def _form_beyond_isa(layer: Layer, cfg: AcceleratorConfig) -> Optional[str]:
    return next(filter(None, (_dimension_beyond_isa(part) for part, _ in _split_groups(problem_of(layer, cfg)))),
                None)


def _neither_form(layer: Layer, forms: tuple, refused: list[MappingError]) -> MappingError:
    """The refusal of a layer no form of which maps: its own form's reason, then the other's."""
    if len(forms) == 1:
        return refused[0]
    other, why = forms[1], str(refused[1]).removeprefix(f"{layer.name}: ")
    return MappingError(f"{refused[0]}; nor as the same convolution of {other.in_h}x{other.in_w} pixels by "
                        f"{other.kernel[0]}x{other.kernel[1]}: {why}")


def _unencodable(p: Problem, error: StreamError) -> str:
    """Why ``p``'s stream cannot be encoded: the dimension beyond its field's range, or ``error``."""
    return _dimension_beyond_isa(p) or str(error)


def _traffic(p: Problem, t: Tiling, cfg: AcceleratorConfig) -> int:
    """DRAM bytes a tiling moves (inputs with halos and re-reads, weights, outputs), to break ties."""
    passes = _passes(p, t, cfg)
    n_passes = len(passes)
    n_tiles = _cdiv(p.oh, t.pe_p * t.th) * _cdiv(p.ow, t.tw)
    geo = _geometry(p, t)
    n_cb = p.n_cblk(cfg.c0)
    per_group_in = (t.pe_p * geo["win_h"] * geo["win_w"] * p.shifts
                    * min(p.red_channels, p.shift_blocks(cfg.c0) * cfg.c0))
    inputs = n_passes * n_tiles * per_group_in * (1 if p.groups == 1 else len(_input_sets(passes[0])))
    w_pass = t.pe_k * n_cb * p.taps * cfg.c0 * min(cfg.k0, p.kg)
    weights = n_passes * w_pass * (1 if t.resident else n_tiles)
    return inputs + weights + p.oh * p.ow * p.k


def layer_cycles(stream: list[Insn], cfg: AcceleratorConfig) -> int:
    """Exact cycles of a layer's stream (ending with FENCE) when run on its own."""
    sched = schedule(stream + [_insn(Op.END)], cfg)
    return sched.total_cycles - RUN_OVERHEAD     # the decode's start and END's cycle belong to the whole network


def map_problem(p: Problem, cfg: AcceleratorConfig, exact_top: int = EXACT_MIN) -> Lowered:
    """The fastest mapping found for problem ``p`` as one part (``mapper.bands``' band problems);
    MappingError when it needs several parts or none fits."""
    if _split(p) != [(p, 1)]:
        raise MappingError(f"{p.name}: a band of {p.oh} x {p.ow} pixels and {p.k} channels does not fit one "
                           f"STORE's fields")
    lowered = _map_problem(p, cfg, exact_top)
    if isinstance(lowered, str):
        raise MappingError(f"{p.name}: {lowered}")
    return lowered


def map_layer(layer: Layer, cfg: AcceleratorConfig, exact_top: int = EXACT_MIN, *, softmax_row: int = 0,
              act: Optional[int] = None, in_pitch: int = 0, in_gb: int = 0,
              out_gb: int = 0) -> list[tuple[Lowered, int]]:
    """The fastest mapping found for a MAC layer: [(lowered part, repeat count)].

    ``softmax_row`` > 0 fuses a softmax epilogue over rows of that many channels into every
    STORE (``mapper.fusion``); only tilings whose stores hold whole rows qualify, and
    MappingError says when none does.  ``act`` overrides the activation the STOREs apply.
    ``in_pitch`` is the bytes per pixel of the input in DRAM (0: its own channels; a
    concatenation's part has the concatenation's), ``in_gb`` those in the global buffer: an
    input with gaps is not folded (``may_fold``).  A plan's step gives all but ``in_gb``
    (``mapper.fusion.Step.map_args``).

    A convolution of one row of pixels by a ``1 x k`` kernel (an imported 1-D one) is also the
    convolution of one column by ``k x 1``, whose tensors and weights are the same bytes: it maps
    as the faster of the two forms (neither is faster on every shape and configuration), as its own
    when they tie; the parts' problems are those of the form chosen.
    """
    kw = dict(softmax_row=softmax_row, act=act, in_pitch=in_pitch, in_gb=in_gb, out_gb=out_gb)
    best, refused = None, []
    forms = (layer, *_transposed(layer))
    for form in forms:
        try:
            found = _map_form(form, cfg, exact_top, **kw)
        except MappingError as e:
            refused.append(e)
            continue
        if best is None or _cycles(found) < _cycles(best):
            best = found
    if best is None:
        raise _neither_form(layer, forms, refused)
    return best


def _transposed(layer: Layer) -> tuple[Conv2d, ...]:
    """The convolution of one row (``1 x W`` by ``1 x k``, no padding above or below) as the one of
    a column (``W x 1`` by ``k x 1``), or the reverse; none for any other layer."""
    if not isinstance(layer, Conv2d) or layer.in_h == layer.in_w == 1:
        return ()
    top, left, bottom, right = layer.pads
    row = (layer.in_h, layer.kernel[0], top, bottom) == (1, 1, 0, 0)
    column = (layer.in_w, layer.kernel[1], left, right) == (1, 1, 0, 0)
    if not (row or column):
        return ()
    return (replace(layer, in_h=layer.in_w, in_w=layer.in_h, kernel=layer.kernel[::-1], padding=(left, top, right, bottom)),)


def _cycles(parts: list[tuple[Lowered, int]]) -> int:
    return sum(lowered.cycles * n for lowered, n in parts)


def _map_form(layer: Layer, cfg: AcceleratorConfig, exact_top: int, *, softmax_row: int, act: Optional[int],
              in_pitch: int, in_gb: int, out_gb: int) -> list[tuple[Lowered, int]]:
    """``map_layer`` of ``layer`` in its own form."""
    p = problem_of(layer, cfg, in_pitch, in_gb)
    p = replace(p, softmax_row=softmax_row, act=p.act if act is None else act, out_gb=out_gb)
    beyond = _form_beyond_isa(layer, cfg)   # before _split cuts a huge layer into bands
    if beyond:
        raise MappingError(f"{layer.name}: {beyond}")
    parts = _split(p)
    if (in_gb or out_gb) and parts != [(p, 1)]:
        raise MappingError(f"{p.name}: a layer split into parts does not read or write the global buffer")
    found = [(_map_problem(part, cfg, exact_top), n) for part, n in parts]
    for (part, _), (lowered, _) in zip(parts, found):
        if isinstance(lowered, str):
            raise MappingError(f"{part.name}: {lowered}")
    return found
