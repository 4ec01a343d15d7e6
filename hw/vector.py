"""The vector unit's contract: the VEC descriptor, its address patterns, and what a VEC costs.

A VEC instruction (``hw/isa.py``) runs one *pass* of the vector unit, described by a
descriptor in DRAM at ``desc_addr``: an iteration space of ``h x w`` pixels of ``c``
channels, up to :data:`MAX_OPERANDS` operands (tensors in DRAM, each seen through an
address pattern) and up to :data:`MAX_STAGES` stages.  Stage ``i`` computes one
operation (:class:`hw.isa.VecOp`) of the pass's pixels; its input is an operand or the
previous stage's result (:data:`PREV`), and it may write its result to an operand.
A chain of element-wise and row operations (residual add then layernorm, bias and mask
adds then softmax) is one pass: the intermediate results stay in the unit.

Address patterns
----------------
Element ``(y, x, ch)`` of an operand is the byte ``base + Y(y) + X(x) + ch`` (``ch mod c``
when the operand's channels repeat, as a bias shared by the heads does).  Each axis is a
counter ``u = (start + i) mod wrap`` (``i`` the pixel's row or column), split at ``win``:
``offset = (u mod win) * s_lo + (u div win) * s_hi``; ``u >= valid`` is padding (it reads
as zero and is not written).  The hardware keeps ``u``, ``u mod win`` and ``u div win`` as
counters stepped once per row or column, starting from ``lo0 = start mod win`` and
``hi0 = start div win`` that the descriptor carries (no division at run time).  One form
covers a plain tensor with a pixel pitch, zero padding, a cyclic shift (Swin's roll), a
crop, Swin's window partition and reverse (``win`` = window, the offsets of
``m * windows + w``), a 2x2 patch-merge gather (stride 2) and broadcasting (stride 0).

Operations whose input is an image of another size (``RESIZE``, ``POOL``,
``RESIZE_ARGMAX``) are the first stage of a pass and read their source operand over its
own ``y.n x x.n`` raster.

Cost
----
``vec_fields`` gives the timing fields of the VEC instruction: ``work`` (element
operations of the vector unit, which the energy model counts), the DRAM bytes read and
written, and how the vector unit's row lanes run the pass (:func:`row_schedule`):
``rows``, ``row_cycles`` (a lane's cycles per row) and ``tables`` (LUT tables to load
first).  ``hw.timing.vec_cycles`` turns them into the VEC's cycles.  Element operations
per stage follow how the stage is computed (``COST``, ``RESIZE_COST``, pooling windows); each distinct byte of an
operand crosses the DRAM interface once.  ``vec_fields`` is written over the descriptor's
fields (:func:`slot_fields`), so that the RTL evaluates the same rule on the fetched descriptor
and refuses a VEC whose fields are not its descriptor's, as the simulator does.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Iterable, Optional

import numpy as np

from .expr import all_of, any_of, balanced, excess, held_tree, is_int, lookup, negative, not_, outside, sel, vmax, vmin
from . import operators as ops
from .isa import ErrorCode, StreamError, VecOp

__all__ = ["LN_ENTRY", "LN_ENTRY_BYTES", "Axis", "Operand", "Stage", "Descriptor", "PREV", "NONE", "MAX_OPERANDS", "MAX_STAGES",
           "STAGE_PARAMS", "STAGE_DEFAULTS", "HEADER_FIELDS", "OPERAND_SPEC", "AXIS_FIELDS", "STAGE_HEAD", "HEADER_BYTES",
           "OPERAND_BYTES", "STAGE_BYTES", "MAX_DESCRIPTOR_BYTES", "PoolMode", "ResizeMode", "axis_offsets", "axis_valid_count", "slot_fields", "descriptor_field_slots", "operand_addresses", "vec_fields", "laps_fit", "FIELD_HOLD_LEVELS", "TIMING_FIELDS", "row_schedule", "ROW_OPS", "ROW_GAP",
           "encode_descriptor", "decode_descriptor", "decode_header", "descriptor_bytes", "descriptor_span", "descriptor_extent", "RESIZE_COST", "COST", "SPATIAL",
           "row_lane_refusals", "row_too_long", "row_and_heads", "plain_axis", "plain_raster", "spatial_refusals", "spatial_slots", "SPATIAL_CHAIN_OPS",
           "divides_as", "pool_taps", "adaptive_window_above", "pool_axis_fits", "split_chunk", "pool_split", "LUT_TABLE_BYTES", "LUT_ENTRIES", "axis_refusals",
           "axis_last_positions", "axis_extent", "operand_extent", "pass_extents", "extents_outside", "overlapping_writes",
           "header_extent", "descriptor_refusals", "PARAM_RANGES", "params_outside", "pass_refusals", "first_refusal"]

#: A layernorm's per-channel entry in DRAM (its stage's ``table``), little-endian.
LN_ENTRY = (("beta", 32, True), ("gamma", 16, True), ("pad", 16, False))
LN_ENTRY_BYTES = 8
#: A LUT stage's table: an int8 entry per int8 input, ``table[x + 128]``, a byte each in DRAM.
LUT_ENTRIES = ops.INT8_MAX - ops.INT8_MIN + 1
LUT_TABLE_BYTES = LUT_ENTRIES
PREV = 0xF         # stage input: the previous stage's result
NONE = 0xF         # stage second input / output: none
MAX_OPERANDS = 8
MAX_STAGES = 4
HEADER_BYTES, OPERAND_BYTES, STAGE_BYTES = 16, 64, 32
#: The largest descriptor: the most operands and stages.
MAX_DESCRIPTOR_BYTES = HEADER_BYTES + OPERAND_BYTES * MAX_OPERANDS + STAGE_BYTES * MAX_STAGES


def _malformed(message: str) -> StreamError:
    """A descriptor that is none: found by the vector unit while running (``ErrorCode.DATA``)."""
    return StreamError(message, ErrorCode.DATA)


class PoolMode:
    MAX, AVG, ADAPTIVE_AVG = 0, 1, 2


class ResizeMode(IntEnum):
    """A RESIZE stage's ``mode`` field: how it interpolates."""
    BILINEAR = 0
    NEAREST = 1


#: Element operations per output element, per stage operation: one lane does one operation a
#: cycle.  A layernorm makes two passes over its row (sums, then normalise), a softmax three
#: (maximum, exponentials and their sum, normalise); the rest one.  Bilinear resizing costs two
#: (a vertical then a horizontal interpolation); pooling one per window element.
COST = {VecOp.COPY: 1, VecOp.ADD: 1, VecOp.MUL: 1, VecOp.LUT: 1, VecOp.LAYERNORM: 2, VecOp.SOFTMAX: 3}
RESIZE_COST = {ResizeMode.BILINEAR: 2, ResizeMode.NEAREST: 1}
#: Operations over whole rows (softmax, layernorm): the row lanes run them (:func:`row_schedule`).
ROW_OPS = (VecOp.SOFTMAX, VecOp.LAYERNORM)
#: Cycles a row lane pauses per row between a row operation's passes: what its row unit needs
#: between its running sums and the pass that uses them (``hw/rtl/softmax_unit.py``: exponential
#: 4, adding the last term 1, reciprocal 3; ``layernorm_unit.py``: square 1, add 1, row kernel 4).
ROW_GAP = {VecOp.SOFTMAX: 8, VecOp.LAYERNORM: 6}

#: Parameters of each stage operation: (name, bits, signed), packed after the stage header.
STAGE_PARAMS: dict[VecOp, list[tuple[str, int, bool]]] = {
    VecOp.COPY: [],
    VecOp.ADD: [("mult_a", 16, False), ("mult_b", 16, False), ("shift", 6, False), ("relu", 1, False)],
    VecOp.MUL: [("mult", 16, False), ("shift", 6, False)],
    VecOp.LUT: [("table", 32, False)],                       # DRAM address of 256 int8 entries
    # per-channel entries of 8 bytes: int32 beta, int16 gamma, pad (hw.numerics.LN_ENTRY)
    VecOp.LAYERNORM: [("table", 32, False), ("eps", 40, False), ("shift", 6, False)],
    # rows of ``row`` channels, ``heads`` of them per pixel (heads * row = the pass's c, checked by
    # multiplying: the hardware builds no divider)
    VecOp.SOFTMAX: [("row", 13, False), ("exp_mult", 16, False), ("exp_shift", 5, False), ("out_shift", 4, False),
                    ("heads", 16, False)],
    # the fixed-point DDA of each axis (hw.operators.resize_axis_params); mode: a ResizeMode
    # a nearest resize's witnesses of each axis' n_in div n_out and n_in mod n_out (as a pooling's),
    # 0 and not read for a bilinear one; align_corners: the DDA is PyTorch's align_corners=True one
    # (bilinear only), last so that a half-pixel descriptor encodes as it did before the field
    VecOp.RESIZE: [("mode", 1, False), ("y_start", 32, True), ("y_step", 32, False),
                   ("x_start", 32, True), ("x_step", 32, False),
                   ("y_q", 16, False), ("y_r", 16, False), ("x_q", 16, False), ("x_r", 16, False),
                   ("align_corners", 1, False)],
    VecOp.RESIZE_ARGMAX: [("y_start", 32, True), ("y_step", 32, False), ("x_start", 32, True),
                          ("x_step", 32, False), ("align_corners", 1, False)],
    # a windowed pooling's kernel, stride and padding; an adaptive pooling's witnesses of each axis'
    # ``n_in div n_out`` and ``n_in mod n_out`` (``q``, ``r``: checked by products, :func:`divides_as`;
    # the hardware builds no divider), 0 and not read for a windowed pooling
    VecOp.POOL: [("mode", 2, False), ("kernel", 8, False), ("stride", 8, False), ("padding", 8, False),
                 ("ceil_mode", 1, False), ("count_include_pad", 1, False),
                 ("y_q", 16, False), ("y_r", 16, False), ("x_q", 16, False), ("x_r", 16, False),
                 # each output pixel's channels run as 2**split rows of split_chunk(c, split) channels,
                 # on as many row lanes (the mapper picks it for its vector lanes: pool_split)
                 ("split", 4, False)],
}
#: Parameters a stage may leave out, and the value they then hold (:class:`Stage`): the fields added
#: after the others, packed last, whose 0 is what descriptors without them meant.
STAGE_DEFAULTS: dict[VecOp, dict] = {VecOp.RESIZE: {"align_corners": 0}, VecOp.RESIZE_ARGMAX: {"align_corners": 0}}
#: Stage operations by code (``CHAIN`` is none).
_STAGE_OPS = {int(op): op for op in STAGE_PARAMS}
AXIS_FIELDS = [("n", 16, False), ("start", 16, False), ("wrap", 16, False), ("valid", 16, False),
                ("win", 16, False), ("lo0", 16, False), ("hi0", 16, False), ("s_lo", 32, True),
                ("s_hi", 32, True), ("laps", 16, False), ("hi_run", 16, False), ("hi_turn", 16, False)]
OPERAND_FIELDS = [("base", 32, False), ("c", 16, False), ("repeat", 1, False)]
HEADER_FIELDS = [("h", 16, False), ("w", 16, False), ("c", 16, False), ("n_operands", 4, False),
                  ("n_stages", 4, False)]
STAGE_HEAD = [("op", 8, False), ("src", 4, False), ("src2", 4, False), ("out", 4, False)]
#: An operand's fields in the order they are packed: base, c, repeat, then its y and x axes.
OPERAND_SPEC = OPERAND_FIELDS + [(p + n, b, s) for p in ("y_", "x_") for n, b, s in AXIS_FIELDS]


# ---- address patterns ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """One axis of an address pattern (module docstring)."""

    n: int
    stride: int = 0           # s_lo: bytes per step below the split
    start: int = 0
    wrap: int = 0             # 0: n + start (no wrap)
    valid: int = 0            # 0: every position is valid
    win: int = 0              # 0: no split (every position below it)
    s_hi: int = 0             # bytes per step of u div win

    def __post_init__(self) -> None:
        # 0 means the natural value: no wrap, every position valid, no split
        wrap = self.wrap or self.n + self.start
        object.__setattr__(self, "wrap", wrap)
        object.__setattr__(self, "valid", self.valid or wrap)
        object.__setattr__(self, "win", self.win or wrap)

    def fields(self) -> dict:
        w = self.win
        f = {"n": self.n, "start": self.start, "wrap": self.wrap, "valid": self.valid, "win": w,
             "lo0": self.start % w, "hi0": self.start // w, "s_lo": self.stride, "s_hi": self.s_hi,
             "laps": self.n // self.wrap}
        run_last, turn_last = axis_last_positions(f)
        return f | {"hi_run": run_last // w, "hi_turn": turn_last // w}

    @classmethod
    def from_fields(cls, f: dict) -> "Axis":
        """The axis of well-formed fields ``f`` (:func:`axis_refusals` refuses none)."""
        return cls(f["n"], f["s_lo"], f["start"], f["wrap"], f["valid"], f["win"], f["s_hi"])


def _quotient_fits(q, x, d, hold=None) -> object:
    """Whether ``q`` is ``x div d`` (``d >= 1``): ``q * d <= x < q * d + d``, a product, no divider."""
    product = (hold or _no_hold)(q * d)
    return (product <= x) & (x < product + d)


def laps_fit(f, hold=None) -> object:
    """Whether an axis' ``laps`` is ``n div wrap``: ``laps * wrap <= n < (laps + 1) * wrap``, by
    multiplying (on integers or on Amaranth values; ``hold`` as in :func:`slot_fields`)."""
    return _quotient_fits(f["laps"], f["n"], f["wrap"], hold)


def axis_last_positions(f, hold=None) -> tuple:
    """(last run position, last turn position) of an axis with fields ``f``.  Its valid positions
    ``u`` are ``[start, run_end)``, the run from ``start`` before the counter wraps, and ``[0,
    turn_end)``, those from 0 it reaches after wrapping (all ``min(valid, wrap)`` once it makes a
    whole turn); the last positions are ``run_end - 1`` and ``turn_end - 1`` (0 for an empty turn).
    Adds and min/max, on integers or Amaranth values; their splits at ``win`` are in the descriptor
    (``hi_run``, ``hi_turn``), checked by products (:func:`axis_refusals`); ``hold`` as in
    :func:`slot_fields`."""
    hold = hold or _no_hold
    per_lap = hold(vmin(f["valid"], f["wrap"]))
    end = f["start"] + f["n"]
    turn_end = sel(f["n"] >= f["wrap"], per_lap, vmin(hold(excess(end, f["wrap"])), per_lap))
    return hold(vmin(hold(end), per_lap) - 1), hold(excess(turn_end, 1))


def axis_refusals(f, hold=None) -> dict:
    """What ``decode_descriptor`` refuses in an axis' fields ``f``: ``{why: condition}``, ``why`` a
    template over the fields' names.  Part of :func:`descriptor_refusals`, one rule on a
    descriptor's integers and on the RTL's fetched slots (``hw/rtl/descriptor_fetch.py``).  ``lo0``/``hi0``, ``laps``,
    ``hi_run`` and ``hi_turn`` are quotients the descriptor carries so that the hardware divides
    nothing; each is checked by a product (``hold`` as in :func:`slot_fields`)."""
    hold = hold or _no_hold
    run_last, turn_last = axis_last_positions(f, hold)
    lasts_fit = (_quotient_fits(f["hi_run"], run_last, f["win"], hold)
                 & _quotient_fits(f["hi_turn"], turn_last, f["win"], hold))
    return {
        "needs n, wrap, valid and win >= 1 and start < wrap":
            any_of(f["n"] < 1, f["wrap"] < 1, f["valid"] < 1, f["win"] < 1, f["start"] >= f["wrap"]),
        "lo0 = {lo0}, hi0 = {hi0} do not split start = {start} at win = {win}":
            (f["lo0"] >= f["win"]) | (f["lo0"] + hold(f["hi0"] * f["win"]) != f["start"]),
        "laps = {laps} is not n = {n} divided by wrap = {wrap}": not_(laps_fit(f, hold)),
        "hi_run = {hi_run}, hi_turn = {hi_turn} do not split the last valid positions at win = {win}":
            not_(lasts_fit),
    }


def axis_valid_count(f, hold=None) -> object:
    """Valid positions of an axis with fields ``f`` (``Axis.fields``; its ``laps`` checked), 1 when
    its strides are 0 (broadcast): ``laps`` whole turns of ``min(valid, wrap)`` valid positions, then
    the rest ``r = n - laps * wrap`` from ``start``, ``[start, start + r)`` below ``wrap`` and
    ``[0, start + r - wrap)`` past it.  Adds, min/max and one product: on integers or Amaranth values
    (``hold`` as in :func:`slot_fields`)."""
    hold = hold or _no_hold
    per_lap = hold(vmin(f["valid"], f["wrap"]))
    end = hold(f["start"] + (f["n"] - hold(f["laps"] * f["wrap"])))
    before_wrap = hold(excess(vmin(end, per_lap), f["start"]))
    after_wrap = hold(vmin(excess(end, f["wrap"]), per_lap))
    broadcast = (f["s_lo"] == 0) & (f["s_hi"] == 0)
    return sel(broadcast, 1, hold(f["laps"] * per_lap) + (before_wrap + after_wrap))


def axis_offsets(ax: Axis) -> tuple[np.ndarray, np.ndarray]:
    """(byte offset, valid) of every position of an axis, as the counters step them."""
    u = (ax.start + np.arange(ax.n, dtype=np.int64)) % ax.wrap
    return (u % ax.win) * ax.stride + (u // ax.win) * ax.s_hi, u < ax.valid


@dataclass(frozen=True)
class Operand:
    """A tensor in DRAM seen through an address pattern; ``c`` channels at each pixel."""

    base: int
    c: int
    y: Axis
    x: Axis
    repeat: bool = False      # channel ch of the pass reads channel ch mod c


def operand_addresses(op: Operand, c: int) -> tuple[np.ndarray, np.ndarray]:
    """(addresses ``[y.n, x.n, c]``, valid ``[y.n, x.n, c]``) of an operand over ``c`` channels."""
    oy, vy = axis_offsets(op.y)
    ox, vx = axis_offsets(op.x)
    ch = np.arange(c, dtype=np.int64)
    ch_ok = np.ones(c, bool)
    if op.repeat:
        ch = ch % op.c
    else:
        ch_ok = ch < op.c
    addr = op.base + oy[:, None, None] + ox[None, :, None] + ch[None, None, :]
    return addr, vy[:, None, None] & vx[None, :, None] & ch_ok[None, None, :]


# ---- extents: the bytes a pass may touch -------------------------------------------------------

def _interval_extent(first, last, top_s, s_hi, hold=None) -> tuple:
    """(lowest, highest) offset of an axis' positions ``u`` in ``[a, b]``: each end given as
    ``(q, q * s_hi, r * s_lo)`` of its split ``(q, r) = (u div win, u mod win)``, ``top_s`` =
    ``(win - 1) * s_lo``.  The offset ``r * s_lo + q * s_hi`` is linear in the row ``q`` and in the
    place ``r``, so its extremes lie at the ends, at the ends of the first and last rows and at
    the ends of the full rows next to them."""
    hold = hold or _no_hold
    (qa, qa_s, ra_s), (qb, qb_s, rb_s) = first, last
    ends = (ra_s + qa_s, rb_s + qb_s)
    row_ends = (top_s + qa_s, qb_s)                 # (qa, win - 1) and (qb, 0)
    full_rows = (hold(qa_s + s_hi), hold(qb_s - s_hi))      # rows qa + 1 and qb - 1, when they are full ones
    two_rows, three_rows = qa < qb, qa + 1 < qb

    def extreme(pick, zero_or_top):     # registered where a cycle would hold more than an add and a min
        full = sel(three_rows, hold(zero_or_top + pick(*full_rows)), ends[0])
        return hold(pick(hold(pick(*ends)), pick(hold(sel(two_rows, pick(*row_ends), ends[0])), hold(full))))
    return extreme(vmin, vmin(top_s, 0)), extreme(vmax, vmax(top_s, 0))


def axis_extent(f, hold=None) -> tuple:
    """(any valid position, lowest offset, highest offset) of the valid positions of an axis with
    fields ``f`` (``Axis.fields``, well formed): the run ``[start, run_last]`` and the turn ``[0,
    turn_last]`` (:func:`axis_last_positions`), their ends split by the descriptor's quotients.
    Products, adds and min/max: on integers or Amaranth values (``hold`` as in :func:`slot_fields`)."""
    hold = hold or _no_hold
    run_last, turn_last = axis_last_positions(f, hold)
    s_lo, s_hi, win = f["s_lo"], f["s_hi"], f["win"]
    top_s = hold(hold(win - 1) * s_lo)          # the subtraction a cycle before the signed product
    ends = [(q, hold(q * s_hi), hold(hold(last - hold(q * win)) * s_lo))
            for q, last in ((f["hi_run"], run_last), (f["hi_turn"], turn_last))]
    run = _interval_extent((f["hi0"], hold(f["hi0"] * s_hi), hold(f["lo0"] * s_lo)), ends[0], top_s, s_hi, hold)
    turn = _interval_extent((0, 0, 0), ends[1], top_s, s_hi, hold)
    in_run = run_last >= f["start"]
    in_turn = (f["n"] >= f["wrap"]) | (f["start"] + f["n"] > f["wrap"])      # valid >= 1: it reaches 0
    lo = hold(sel(in_run, sel(in_turn, vmin(run[0], turn[0]), run[0]), turn[0]))
    hi = hold(sel(in_run, sel(in_turn, vmax(run[1], turn[1]), run[1]), turn[1]))
    # held: the add and comparison would otherwise precede the overlap rule's last OR in one cycle
    return hold(in_run | in_turn), lo, hi


def operand_extent(op, chans, hold=None) -> tuple:
    """(any valid byte, lowest byte, highest byte) of operand slot ``op`` (its fields: ``base`` and
    the ``y_``/``x_`` axes) over channels ``0 .. chans - 1`` (``chans >= 1``): what
    ``operand_addresses`` reaches where valid, in closed form."""
    y, x = ({name: op[p + name] for name, _, _ in AXIS_FIELDS} for p in ("y_", "x_"))
    hold = hold or _no_hold
    y_any, y_lo, y_hi = axis_extent(y, hold)
    x_any, x_lo, x_hi = axis_extent(x, hold)
    return y_any & x_any, hold(op["base"] + y_lo + x_lo), hold(op["base"] + y_hi + x_hi + chans - 1)


def _value_channels(head, operands, stages) -> list:
    """Channels of each stage's result, as ``sim.vector_unit`` computes it: a resize's or pooling's
    are its source's, the class map's 1, an ADD's or MUL's the wider of its inputs; other stages
    keep their input's, an operand's being the pass's ``c``.  Once a later stage reads an operand
    they are ``c``; before, stage 0's, widened to ``c`` from the first ADD or MUL on (written so,
    not as a chain of multiplexers over the stages, each of which would repeat its input)."""
    c, first = head["c"], stages[0]
    source_c = lookup(first["src"], [op["c"] for op in operands], 0)
    start = sel(_is(first["op"], VecOp.RESIZE, VecOp.POOL), source_c, sel(first["op"] == VecOp.RESIZE_ARGMAX, 1, c))
    out = []
    for i in range(len(stages)):
        restarted = any_of(*(st["src"] != PREV for st in stages[1:i + 1]))
        widened = any_of(*(_is(st["op"], VecOp.ADD, VecOp.MUL) for st in stages[:i + 1]))
        out.append(sel(restarted, c, sel(widened, vmax(start, c), start)))
    return out


def pass_extents(head, operands, stages, hold=None) -> list[tuple]:
    """The byte ranges a pass may touch, from its descriptor's fields (:func:`slot_fields`' slots):
    ``(what, touched, lowest, highest)`` for each operand slot (over the most channels its stages use:
    a spatial source's ``c``, ``min(c, d.c)`` read in the pass's raster or as a second input, a
    written result's channels) and each stage's table (a LUT's 256 bytes, a layernorm's entry per
    channel).  One rule for ``execute_vec``, which refuses a pass that leaves the DRAM before it
    runs, and for the RTL's executor, which refuses it in the cycles of its fields' check."""
    hold = hold or _no_hold
    live, c = _live(head), head["c"]
    values = [hold(v) for v in _value_channels(head, operands, stages)]
    out = []
    for k, op in enumerate(operands):
        if is_int(head["n_operands"]) and k >= head["n_operands"]:      # an empty slot touches nothing
            out.append((f"operand {k}", False, 0, -1))
            continue
        # min(op.c, the widest use): a spatial source's own c, c read in the raster, a result's
        uses = [sel(_is(stages[0]["op"], *SPATIAL) & (stages[0]["src"] == k), op["c"], 0)]
        for on, st, value in zip(live, stages, values):
            uses += [sel(on & ((st["src"] == k) | (st["src2"] == k)), c, 0), sel(on & (st["out"] == k), value, 0)]
        chans = hold(vmin(op["c"], hold(held_tree(vmax, uses, hold))))
        valid, lo, hi = operand_extent(op, chans, hold)
        out.append((f"operand {k}", valid & (chans > 0), lo, hi))
    for i, (on, st) in enumerate(zip(live, stages)):
        lut, layernorm = st["op"] == VecOp.LUT, st["op"] == VecOp.LAYERNORM
        table = sel(lut, st["lut.table"], st["layernorm.table"])
        size = sel(lut, LUT_TABLE_BYTES, values[i] * LN_ENTRY_BYTES)
        out.append((f"stage {i}'s table", on & (lut | layernorm), table, hold(table + size - 1)))
    return out


def extents_outside(extents, dram_bytes: int) -> list:
    """Of :func:`pass_extents`, whether each touched range leaves DRAM bytes ``0 .. dram_bytes - 1``."""
    return [touched & (negative(lo) | (hi >= dram_bytes)) for _, touched, lo, hi in extents]


def overlapping_writes(head, operands, stages, extents, hold=None) -> list[tuple]:
    """Of :func:`pass_extents`, ``[(where, fields, why, condition)]`` as :func:`pass_refusals`:
    what makes the functional model, which runs a pass stage by stage, each stage reading its
    operands whole before it writes, and the RTL, which streams a pixel through every stage, read
    different bytes.  For each live stage: it reads an operand an earlier stage writes; it writes
    through a pattern that is not one-to-one (:func:`_one_to_one`), so that a pixel's write may land
    on a byte another element reads (in place) or writes (the two write in different orders); its
    written operand's range meets another range the pass touches (another operand, read or
    written, or a table), unless the two operands are channel slices of one raster
    (:func:`_slices_of_one_raster`: a concatenation's parts, Swin's patch merging), whose bytes are
    disjoint though their ranges meet.  One rule for ``execute_vec`` and the RTL's executor
    (``DATA``); the ranges are compared pair by pair (each slot with every other range), and a
    stage looks up its written slot's bits."""
    hold = hold or _no_hold
    n = MAX_OPERANDS
    live = _live(head)
    rasters = [_covering_raster(op, hold) for op in operands]
    cells = [hold(_raster_cell(r, hold)) for r in rasters]
    # per slot, registered: reaching a byte twice (the stages writing it look it up)
    cramped = [hold(not_(_one_to_one(op, r, head["c"], hold))) for op, r in zip(operands, rasters)]
    # per pair of a slot and another range: their ranges meet and they are not channel slices of one
    # raster (registered, the rasters' comparison), both symmetric, so a stage looks a bit up, not a
    # slot's fields (a multiplexer of fields before the comparisons was the check's deepest path)
    clash = {}
    for k in range(n):
        for j in range(k + 1, len(extents)):
            (_, _, k_lo, k_hi), (_, _, j_lo, j_hi) = extents[k], extents[j]
            apart = hold(_slices_of_one_raster(rasters[k], cells[k], rasters[j], cells[j], hold)) if j < n else False
            clash[k, j] = clash[j, k] = all_of(k_lo <= j_hi, j_lo <= k_hi, not_(apart))
    out = []
    for i, (on, st) in enumerate(zip(live, stages)):
        if on is False:             # on integers: an empty slot writes nothing
            continue
        out += [(f" stage {i}", {}, f"it reads the operand stage {k} writes (a later stage reads an earlier "
                 "one's result as its previous result only)",
                 all_of(on, earlier_on, earlier["out"] != NONE, any_of(st["src"] == earlier["out"],
                                                                       st["src2"] == earlier["out"])))
                for k, (earlier_on, earlier) in enumerate(zip(live[:i], stages[:i]))]
        target = st["out"]
        written = all_of(on, target != NONE, lookup(target, [e[1] for e in extents[:n]], False))
        out.append((f" stage {i}", {}, "it writes through a pattern that may reach a byte twice (a written "
                    "operand makes one turn at most an axis, its channels do not repeat short of the pass's, and "
                    "each step of its axes, below and above a window split, is at least its channels plus the "
                    "spans of the steps not longer)",
                    all_of(written, lookup(target, cramped, False))))
        for j, (what, touched, _, _) in enumerate(extents):
            other = all_of(touched, target != j) if j < n else touched
            out.append((f" stage {i}", {}, f"its result overlaps {what} (a pass's operands are disjoint, "
                        "channel slices of one raster, or one written in place through its own slot)",
                        all_of(written, other, lookup(target, [clash.get((k, j), False) for k in range(n)], False))))
    return out


def _read_by(live, stages, k) -> object:
    """Whether a live stage reads operand slot ``k`` (as its ``src`` or ``src2``)."""
    return any_of(*(all_of(on, any_of(st["src"] == k, st["src2"] == k)) for on, st in zip(live, stages)))


#: The fields :func:`_slices_of_one_raster` compares for equality (sizes and strides).
_RASTER_FIELDS = ("y_n", "x_n", "y_s_lo", "x_s_lo")


def _covering_raster(op, hold) -> dict:
    """What :func:`_raster_cell` and :func:`_slices_of_one_raster` read of operand slot ``op``, seen
    as the raster of the positions its axes may visit: an axis' positions ``(start + i) mod wrap``
    lie below ``min(start + n, wrap)``, those it reads or writes below ``valid`` too (the others are
    padding), so where it is unsplit below that (``win``) they are some of its positions from 0 at
    the same offsets (a roll, a crop, padding or laps choose among them) and the slot's bytes are
    some of the view's.  A plain axis' view is its own ``n`` positions (the cell of a plain raster is
    its own).  A split axis' ``below`` positions are ``lo + win · hi``, ``lo`` below ``min(win,
    below)``, ``hi`` up to ``hi_run`` (the descriptor's ``(below - 1) div win``).  ``hold`` registers
    the bound (an add and two mins) before the cell's product, and the channels' end (an add)."""
    view = {"base": op["base"], "c": op["c"], "end": hold(op["base"] + op["c"])}
    for a in ("y_", "x_"):
        below = hold(vmin(vmin(op[a + "start"] + op[a + "n"], op[a + "wrap"]), op[a + "valid"]))
        view |= {a + "n": below, a + "start": 0, a + "wrap": below, a + "valid": below, a + "win": op[a + "win"],
                 a + "s_lo": op[a + "s_lo"], a + "s_hi": op[a + "s_hi"], a + "hi_run": op[a + "hi_run"]}
    return view


def _raster_cell(op, hold) -> object:
    """The bytes of a pixel's cell of operand slot ``op`` when it is a plain raster whose pixels'
    cells do not meet (rows of ``x_n`` cells of ``x_s_lo`` bytes, a row's ``y_s_lo`` past them all),
    else 0: a pixel of a single column's is ``y_s_lo``, of a single pixel's any."""
    y_n, x_n, y_s, x_s = (op[name] for name in ("y_n", "x_n", "y_s_lo", "x_s_lo"))
    plain = plain_raster(op)
    row = hold(x_n * x_s)
    rows_apart = any_of(y_n == 1, all_of(x_n > 1, y_s >= row), all_of(x_n == 1, y_s > 0))
    size = sel(x_n > 1, x_s, sel(y_n > 1, y_s, 1 << 32))
    return sel(all_of(plain, rows_apart), size, 0)


def _one_to_one(op, view, c, hold=None) -> object:
    """Whether operand slot ``op``, whose covering raster is ``view`` (:func:`_covering_raster`),
    reaches each of its bytes from one element of a pass over ``c`` channels at most: no axis makes
    more than one turn (``n <= wrap``: laps revisit positions), its channels do not repeat short of
    ``c``, and its four steps (each axis' ``s_lo`` over ``lo`` and ``s_hi`` over ``hi``, the split of
    the view's positions, :func:`_covering_raster`) nest: each step taken (over more than one
    position) is, in bytes, at least the channels plus the spans of the other steps not longer
    than it.  Then two elements differing at their longest differing step differ by at least that
    step there and by less elsewhere, whatever the signs (a window split's blocks interleaved with
    the other axis' rows, as Swin's, a transposed or reversed raster).  Conservative where steps
    overlap but their lattices miss each other.  Products, adds and comparisons; ``hold`` registers
    the magnitudes before their products and comparisons, and the sums before theirs."""
    hold = hold or _no_hold
    steps = []          # (positions past the first, |step|, |span|)
    for a in ("y_", "x_"):
        lo_last = hold(vmin(view[a + "win"], view[a + "n"]) - 1)
        for last, step in ((lo_last, view[a + "s_lo"]), (view[a + "hi_run"], view[a + "s_hi"])):
            size = hold(_magnitude(step))
            steps.append((last, size, hold(last * size)))
    nested = []
    for k, (last, step, _) in enumerate(steps):
        spans = [sel(hold(other <= step), span, 0) for j, (_, other, span) in enumerate(steps) if j != k]
        nested.append((last == 0) | (step >= hold(balanced(operator.add, [op["c"], *spans], 0))))
    return all_of(op["y_n"] <= op["y_wrap"], op["x_n"] <= op["x_wrap"],
                  not_(all_of(op["repeat"], op["c"] < c)), *nested)


def _magnitude(x) -> object:
    """``|x|``, on integers or Amaranth values."""
    return vmax(x, -x)


def _slices_of_one_raster(a, a_cell, b, b_cell, hold=None) -> object:
    """Whether operand slots ``a`` and ``b`` hold disjoint channel windows ``[base, base + c)`` of
    the same plain raster (its sizes and strides), both within one pixel's cell: their bytes are
    disjoint though their ranges overlap.  ``hold`` registers their span (a max, a min and a
    subtraction of the windows' ends, :func:`_covering_raster`'s) before the comparison with it."""
    same = all_of(*(a[name] == b[name] for name in _RASTER_FIELDS), a_cell > 0, a_cell == b_cell)
    hold = hold or _no_hold
    a_end, b_end = a["end"], b["end"]
    span = hold(vmax(a_end, b_end) - vmin(a["base"], b["base"]))
    return all_of(same, any_of(a_end <= b["base"], b_end <= a["base"]), span <= a_cell)


# ---- stages and descriptors ----------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One operation of a pass: input ``src`` (an operand index or PREV), a second operand
    ``src2`` (or NONE), the operand written (``out``, or NONE) and its parameters."""

    op: VecOp
    src: int = PREV
    src2: int = NONE
    out: int = NONE
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        defaults = STAGE_DEFAULTS.get(self.op)
        if defaults:
            object.__setattr__(self, "params", defaults | self.params)


@dataclass(frozen=True)
class Descriptor:
    """A VEC pass: iteration space ``h x w x c``, operands and stages."""

    h: int
    w: int
    c: int
    operands: tuple[Operand, ...]
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        check_descriptor(self)

    @classmethod
    def checked(cls, h: int, w: int, c: int, operands: tuple, stages: tuple, slots: tuple) -> "Descriptor":
        """The descriptor whose slots (:func:`descriptor_field_slots`) are ``slots``, which
        :func:`descriptor_refusals` refused nothing in and whose stages hold their parameters (a
        decoded one): not checked again."""
        d = object.__new__(cls)
        for name, value in (("h", h), ("w", w), ("c", c), ("operands", operands), ("stages", stages),
                            ("_field_slots", slots)):
            object.__setattr__(d, name, value)
        return d

    def relocated(self, bases: list[int]) -> "Descriptor":
        return replace(self, operands=tuple(replace(o, base=b) for o, b in zip(self.operands, bases)))


def check_descriptor(d: Descriptor, where: str = "descriptor") -> None:
    """Refuse a descriptor the vector unit cannot run (StreamError naming the problem): what
    :func:`descriptor_refusals` refuses in its slots, or a stage without exactly its parameters."""
    _refuse(descriptor_refusals(*descriptor_field_slots(d)), where)
    for i, st in enumerate(d.stages):
        if set(st.params) != {n for n, _, _ in STAGE_PARAMS[st.op]}:
            raise _malformed(f"{where}: stage {i} ({st.op.name}) has parameters {sorted(st.params)}")


def _stage_op_is_one(code) -> object:
    """Whether ``code`` is a stage operation (``STAGE_PARAMS``: ``CHAIN`` is none)."""
    return any_of(*(code == op for op in STAGE_PARAMS))


def descriptor_refusals(head, operands, stages, hold=None) -> list[tuple]:
    """What makes a descriptor malformed: ``[(where, fields, why, condition)]``, ``why`` a
    template over ``fields``' names, ``condition`` true where refused.  One rule, on a descriptor's
    slots (:func:`descriptor_field_slots`; the raw ones ``decode_descriptor`` reads) and on the
    RTL's fetched slots (``hw/rtl/descriptor_fetch.py``): the numbers of stages and operands, an
    empty iteration space, an operand with ``c = 0`` or a malformed axis (:func:`axis_refusals`),
    an operation that is no stage's, stage 0 reading ``PREV``, a reference to a missing operand, an
    ADD or MUL without a second operand (``src2`` NONE: nothing to read it from), a spatial stage
    after the first and a softmax whose ``row · heads`` is not ``c`` (a product: the hardware builds
    no divider).  Slots past ``n_operands`` / ``n_stages`` are not checked; ``hold`` as
    in :func:`slot_fields`."""
    hold = hold or _no_hold
    n_op, n_st = head["n_operands"], head["n_stages"]
    out = [("", head, f"{{n_stages}} stages and {{n_operands}} operands (1..{MAX_STAGES}, 0..{MAX_OPERANDS})",
            any_of(n_st < 1, n_st > MAX_STAGES, n_op > MAX_OPERANDS)),
           ("", head, "iteration space {h}x{w}x{c}", any_of(head["h"] < 1, head["w"] < 1, head["c"] < 1))]
    for k, op in enumerate(operands):
        live = k < n_op
        if live is False:           # on integers: an empty slot holds nothing to refuse
            continue
        out.append((f" operand {k}", op, "c = 0", all_of(live, op["c"] < 1)))
        for p in ("y_", "x_"):
            axis = {name: op[p + name] for name, _, _ in AXIS_FIELDS}
            out += [(f" operand {k} {p[0]}", axis, f"axis {why}", all_of(live, refused))
                    for why, refused in axis_refusals(axis, hold).items()]
    for i, st in enumerate(stages):
        live = i < n_st
        if live is False:
            continue
        missing = any_of(*((st[r] != NONE) & (st[r] >= n_op) for r in ("src", "src2", "out")))
        softmax = st["op"] == VecOp.SOFTMAX
        out += [
            (f" stage {i}", st, "operation {op} is not a stage operation", all_of(live, not_(_stage_op_is_one(st["op"])))),
            (f" stage {i}", st, "reads a previous stage", all_of(live, i == 0, st["src"] == PREV)),
            (f" stage {i}", st, "names an operand beyond those given",
             all_of(live, missing)),
            (f" stage {i}", st, "an ADD or MUL without a second operand",
             all_of(live, _is(st["op"], VecOp.ADD, VecOp.MUL), st["src2"] == NONE)),
            (f" stage {i}", st, "a resize, pooling or class map must be a pass's first stage",
             all_of(live, i > 0, _is(st["op"], *SPATIAL))),
            (f" stage {i}", st, "softmax rows of row x heads are not the pass's c channels",
             all_of(live, softmax, hold(st["softmax.row"] * st["softmax.heads"]) != head["c"])),
        ]
    return out


def _refuse(refusals: list, where: str) -> None:
    """Raise ``DATA`` for the first refusal (``[(where, fields, why, condition)]``) whose condition holds."""
    bad = first_refusal(refusals)
    if bad is not None:
        raise _malformed(f"{where}{bad}")


def first_refusal(refusals: list) -> Optional[str]:
    """``"<where>: <why>"`` of the first of ``refusals`` (``[(where, fields, why, condition)]``, on
    integers) whose condition holds, its template filled from its fields; None if none holds."""
    for at, fields, why, refused in refusals:
        if refused:
            return f"{at}: {why.format_map(fields)}"
    return None


#: Parameter ranges of each stage operation, as its operator (``hw/operators.py``) checks them.
PARAM_RANGES = {VecOp.ADD: ops.AddParams.RANGES, VecOp.MUL: ops.MulParams.RANGES,
                VecOp.SOFTMAX: ops.SoftmaxParams.RANGES, VecOp.LAYERNORM: ops.LayerNormParams.RANGES}


def _param_refusals(st) -> list[tuple]:
    """``[(why, fields, condition)]``: each parameter of :data:`PARAM_RANGES` outside its range in
    stage slot ``st`` of that operation."""
    out = []
    for code, ranges in PARAM_RANGES.items():
        for name, (lo, hi) in ranges.items():
            value = st[f"{code.name.lower()}.{name}"]
            out.append((f"{code.name} {name} = {{value}} outside {lo}..{hi}", {"value": value},
                        all_of(st["op"] == code, outside(value, lo, hi))))
    return out


def params_outside(st) -> object:
    """Whether a stage slot's operation has a parameter outside the range its operator accepts
    (:data:`PARAM_RANGES`).  On integers or Amaranth values."""
    return any_of(*(refused for _, _, refused in _param_refusals(st)))


def pass_refusals(head, operands, stages, hold=None) -> list[tuple]:
    """What the operators refuse in a well-formed pass, before it runs: ``[(where, fields, why,
    condition)]`` as :func:`descriptor_refusals`.  One rule for ``sim.vector_unit.execute_vec`` and
    the RTL's executor (``hw/rtl/vector_executor.py``), both checking every live stage before
    anything is written (``DATA``), a spatial pass's before the spatial unit's own refusals
    (:func:`spatial_refusals`): a stage's parameters outside its operator's ranges
    (:func:`params_outside`); a softmax or layernorm row longer than ``MAX_ROW``; a stage after
    the class map (its result is class indices, which no stage operation takes); a stage reading
    a previous result whose channels are not the pass's ``c`` (only a spatial stage's can differ:
    a resize's or pooling's are its source's, :func:`_value_channels`); an operand that a stage
    other than a spatial one reads or writes over another raster than the pass's ``h x w`` (a
    spatial stage's are :func:`spatial_refusals`'); ``hold`` as in :func:`slot_fields`."""
    hold = hold or _no_hold
    live, c = _live(head), head["c"]
    values = [hold(v) for v in _value_channels(head, operands, stages)]
    out = []
    for i, (on, st) in enumerate(zip(live, stages)):
        if on is False:             # on integers: an empty slot holds nothing to refuse
            continue
        inputs = c if i == 0 else sel(st["src"] == PREV, values[i - 1], c)
        rows, softmax = _is(st["op"], *ROW_OPS), st["op"] == VecOp.SOFTMAX
        row = sel(softmax, st["softmax.row"], inputs)
        out += [(f" stage {i}", value, why, all_of(on, refused)) for why, value, refused in _param_refusals(st)]
        out.append((f" stage {i}", st, f"rows longer than MAX_ROW = {ops.MAX_ROW}", all_of(on, rows, row > ops.MAX_ROW)))
        if i > 0:
            out += [
                (f" stage {i}", st, "a stage after the class map", all_of(on, stages[0]["op"] == VecOp.RESIZE_ARGMAX)),
                (f" stage {i}", st, "a previous result of other channels than the pass's c", all_of(on, inputs != c)),
            ]
    for k, op in enumerate(operands):
        if is_int(head["n_operands"]) and k >= head["n_operands"]:      # no stage names an empty slot
            continue
        named = any_of(*(all_of(on, not_(_is(st["op"], *SPATIAL)),
                                any_of(st["src"] == k, st["src2"] == k, st["out"] == k))
                         for on, st in zip(live, stages)))
        out.append((f" operand {k}", op, "a raster of {y_n}x{x_n} pixels, not the pass's",
                    all_of(named, any_of(op["y_n"] != head["h"], op["x_n"] != head["w"]))))
    return out


SPATIAL = (VecOp.RESIZE, VecOp.POOL, VecOp.RESIZE_ARGMAX)
#: The VEC instruction's fields that :func:`vec_fields` gives (``hw.isa``): what the descriptor decides.
TIMING_FIELDS = ("vec_op", "work", "bytes_in", "bytes_out", "rows", "row_cycles", "tables")
#: Levels of registers through which the RTL evaluates the rules of a VEC's descriptor check on its
#: fetched slots (``hold``: :func:`descriptor_refusals`, :func:`slot_fields`, :func:`pass_extents`,
#: :func:`pass_refusals`), none of whose cycles holds more than about a product or an add and a
#: min: the deepest, the extents, take the last positions (2), their splits' remainders (3) and
#: offsets (4), the extremes (5, 6) of an axis (7) and of an operand (8), then each rule's OR (9).
FIELD_HOLD_LEVELS = 9


def _by_code(table: dict) -> list[int]:
    """``table`` (VecOp -> int) as a list indexed by operation code, 0 where it has no entry."""
    return [table.get(op, 0) for op in sorted(VecOp)]


_WORK_PER_OUTPUT = _by_code(COST)
_ROW_PASSES = _by_code({op: COST[op] for op in ROW_OPS})
_ROW_GAPS = _by_code(ROW_GAP)


class _Slot(dict):
    """A descriptor slot's fields on integers; a field it does not hold reads 0, as in the RTL's
    fetched descriptor, whose empty slots are zero."""

    def __missing__(self, key):
        return 0


def descriptor_field_slots(d: Descriptor) -> tuple[dict, list[dict], list[dict]]:
    """(header, ``MAX_OPERANDS`` operand slots, ``MAX_STAGES`` stage slots) of ``d`` as integer
    fields, named as the RTL's fetched descriptor names them: what :func:`slot_fields` reads.  A
    stage's parameters are named ``"<operation>.<parameter>"`` (``"softmax.row"``).  Built once per
    descriptor (its check, its fields, its extents and the simulator's refusals read them; treat
    them as read-only)."""
    slots = d.__dict__.get("_field_slots")
    if slots is None:
        slots = _field_slots(d)
        object.__setattr__(d, "_field_slots", slots)
    return slots


def _field_slots(d: Descriptor) -> tuple[dict, list[dict], list[dict]]:
    head = _Slot(h=d.h, w=d.w, c=d.c, n_operands=len(d.operands), n_stages=len(d.stages))
    operands = [_Slot() for _ in range(MAX_OPERANDS)]
    for slot, op in zip(operands, d.operands):
        slot.update(base=op.base, c=op.c, repeat=int(op.repeat),
                    **{p + k: v for p, ax in (("y_", op.y), ("x_", op.x)) for k, v in ax.fields().items()})
    stages = [_Slot() for _ in range(MAX_STAGES)]
    for slot, st in zip(stages, d.stages):
        slot.update(op=int(st.op), src=st.src, src2=st.src2, out=st.out,
                    **{f"{st.op.name.lower()}.{k}": v for k, v in st.params.items()})
    return head, operands, stages


def _no_hold(value, level: int | None = None):
    return value


def _is(code, *ops) -> object:
    return any_of(*(code == op for op in ops))


def _live(head) -> list:
    """Whether each stage slot holds a stage of the pass."""
    return [i < head["n_stages"] for i in range(MAX_STAGES)]


def row_and_heads(head, stages) -> tuple:
    """(row length, rows per pixel) of a pass on the row lanes: its first softmax's ``row`` and
    ``heads``, or the pass's ``c`` and 1 without a softmax.  One rule for :func:`row_schedule`,
    ``hw.rtl.insn.vec_unsupported`` and the RTL's vector unit, on a descriptor's slots
    (:func:`descriptor_field_slots`) or on the RTL's."""
    row, heads = head["c"], 1
    for on, st in reversed(list(zip(_live(head), stages))):
        softmax = on & (st["op"] == VecOp.SOFTMAX)
        row, heads = sel(softmax, st["softmax.row"], row), sel(softmax, st["softmax.heads"], heads)
    return row, heads


def _row_schedule(head, operands, stages, pixels, hold=_no_hold) -> tuple:
    """:func:`row_schedule` on the descriptor's fields; ``pixels`` is ``h * w``."""
    live = _live(head)
    first = stages[0]
    # the spatial unit: an output pixel a lane (a spatial stage is only ever the first:
    # check_descriptor, which a well-formed descriptor passes)
    on_lanes = _is(first["op"], *SPATIAL)
    pool = first["op"] == VecOp.POOL
    taps = sel(pool, hold(hold(pool_taps(first, "y")) * hold(pool_taps(first, "x"))), 1)
    split = sel(pool, first["pool.split"], 0)
    source_c = hold(hold(split_chunk(lookup(first["src"], [op["c"] for op in operands], 0), split)) * taps)
    row, heads = (hold(v) for v in row_and_heads(head, stages))
    passes = hold(sum(sel(on, lookup(st["op"], _ROW_PASSES, 0), 0) for on, st in zip(live, stages)))
    gap = hold(sum(sel(on, lookup(st["op"], _ROW_GAPS, 0), 0) for on, st in zip(live, stages)))
    rows = sel(on_lanes, pixels << split, hold(pixels * heads))
    return (rows, sel(on_lanes, source_c, row), sel(on_lanes, 1, sel(passes == 0, 1, passes)), sel(on_lanes, 0, gap))


def _stage_work(st, first: bool, operands, c, pixels, out, hold) -> object:
    """Element operations of a stage (module docstring).  The terms over the source operand's
    raster (an argmax's channels, an adaptive pooling's input) are built for the first stage only:
    a spatial operation is a pass's first stage (``check_descriptor``)."""
    code = st["op"]
    per_output = hold(lookup(code, _WORK_PER_OUTPUT, 0)
                      + sel(code == VecOp.RESIZE, lookup(st["resize.mode"], [RESIZE_COST[m] for m in ResizeMode], 0), 0)
                      + sel((code == VecOp.POOL) & (st["pool.mode"] != PoolMode.ADAPTIVE_AVG),
                            hold(st["pool.kernel"] * st["pool.kernel"]), 0))
    work = hold(per_output * out)
    if not first:
        return work
    source = [hold(lookup(st["src"], [op[name] for op in operands], 0)) for name in ("c", "y_n", "x_n")]
    argmax = hold(RESIZE_COST[ResizeMode.BILINEAR] * hold(pixels * source[0]))
    adaptive = hold(hold(source[1] * source[2]) * c)
    return hold(work + (sel(code == VecOp.RESIZE_ARGMAX, argmax, 0)
                        + sel((code == VecOp.POOL) & (st["pool.mode"] == PoolMode.ADAPTIVE_AVG), adaptive, 0)))


def _operand_bytes(head, operands, stages, hold) -> tuple:
    """(bytes read, bytes written) of the pass (:func:`vec_fields`)."""
    live = _live(head)
    n_st, c, first = head["n_stages"], head["c"], stages[0]
    argmax_writes = any_of(*((n_st == i + 1) & (st["op"] == VecOp.RESIZE_ARGMAX) for i, st in enumerate(stages)))
    spatial_source = _is(first["op"], *SPATIAL)
    read_in, written = [], []
    for k, op in enumerate(operands):
        reads = _read_by(live, stages, k)
        writes = any_of(*(on & (st["out"] == k) for on, st in zip(live, stages)))
        whole = (spatial_source & (first["src"] == k)) | op["repeat"]
        chans = hold(sel(whole, op["c"], sel(argmax_writes & writes, 1, vmin(op["c"], c))))
        counts = [hold(axis_valid_count({name: op[p + name] for name, _, _ in AXIS_FIELDS}, hold)) for p in ("y_", "x_")]
        nbytes = hold(hold(counts[0] * counts[1]) * chans)
        read_in.append(sel(reads, nbytes, 0))
        written.append(sel(writes, nbytes, 0))
    return tuple(hold(held_tree(operator.add, terms, hold)) for terms in (read_in, written))


def slot_fields(head, operands, stages, hold=_no_hold) -> dict:
    """The VEC's timing fields (:func:`vec_fields`) from its descriptor's fields: the header, the
    ``MAX_OPERANDS`` operand slots and the ``MAX_STAGES`` stage slots (empty past ``n_operands`` /
    ``n_stages``), on integers (:func:`descriptor_field_slots`) or on the RTL's fetched descriptor,
    which must be well formed (``decode_descriptor``).  ``hold(value)`` lets the RTL register a term
    (one level above the terms it reads; ``FIELD_HOLD_LEVELS``); the value itself on integers."""
    c, live = head["c"], _live(head)
    pixels = hold(head["h"] * head["w"])
    out = hold(pixels * c)
    work = hold(held_tree(operator.add, [sel(on, _stage_work(st, i == 0, operands, c, pixels, out, hold), 0)
                                         for i, (on, st) in enumerate(zip(live, stages))], hold))
    bytes_in, bytes_out = _operand_bytes(head, operands, stages, hold)
    rows, row, passes, gap = _row_schedule(head, operands, stages, pixels, hold)
    fields = {"vec_op": sel(head["n_stages"] == 1, stages[0]["op"], int(VecOp.CHAIN)), "work": work,
            "bytes_in": bytes_in, "bytes_out": bytes_out, "rows": hold(rows),
            "row_cycles": hold(hold(passes * row) + gap),
            "tables": any_of(*(on & (st["op"] == VecOp.LUT) for on, st in zip(live, stages)))}
    assert tuple(fields) == TIMING_FIELDS
    return fields


def plain_axis(n, start, wrap, valid, win):
    """Whether position ``i`` of an axis of ``n`` positions is at byte offset ``i * s_lo``, every
    position valid (no roll, no window split, no padding): the source of a spatial pass the RTL
    gathers from, whose positions the DDA jumps between.  On integers or Amaranth values."""
    return all_of(start == 0, wrap >= n, valid >= n, win >= n)


def plain_raster(op):
    """Whether both axes of operand slot ``op`` are plain (:func:`plain_axis`)."""
    return all_of(*(plain_axis(op[a + "n"], op[a + "start"], op[a + "wrap"], op[a + "valid"], op[a + "win"])
                    for a in ("y_", "x_")))


def divides_as(q, r, n, d, hold=None):
    """Whether ``q`` and ``r`` are ``n div d`` and ``n mod d`` (``d >= 1``): ``q·d + r = n`` and
    ``r < d``, by a product (the witnesses the mapper writes for what the hardware would divide),
    compared with ``n - r``; ``hold`` as in :func:`spatial_refusals` (the product and the
    difference, so that the comparison after them is alone in its cycle)."""
    hold = hold or _no_hold
    return all_of(hold(q * d, 1) == hold(n - r, 1), r < d)


def pool_taps(stage, axis: str):
    """Window positions the spatial unit walks along ``axis`` ("y" or "x") for each output of a
    pooling stage: a windowed pooling's ``kernel``; an adaptive pooling's longest window bound,
    ``q + (r > 0) + (r > 1)`` from its witnesses ``q = n_in div n_out``, ``r = n_in mod n_out``.

    Window ``i`` spans ``floor(i·n_in/n_out) .. ceil((i+1)·n_in/n_out)``: ``q`` plus 0, 1 or 2.
    It is 2 only where ``a + r > n_out`` for a remainder ``a = i·n_in mod n_out``, and those are
    multiples of ``g = gcd(n_in, n_out)`` up to ``n_out - g``, so only where ``r > g``: ``r >= 2``."""
    q = stage[f"pool.{axis}_q"]
    return sel(stage["pool.mode"] == PoolMode.ADAPTIVE_AVG, q + _extra_taps(stage, axis, 1), stage["pool.kernel"])


def _extra_taps(stage, axis: str, v):
    """``v`` times the positions an adaptive window along ``axis`` may hold beyond ``q``: ``(r > 0) +
    (r > 1)`` (:func:`pool_taps`), 0, 1 or 2, so a multiplexer of ``v`` shifted, no product."""
    r = stage[f"pool.{axis}_r"]
    return sel(r > 1, v * 2, sel(r > 0, v, 0))


def adaptive_window_above(stage, limit: int, hold=None):
    """Whether an adaptive pooling's longest window, ``pool_taps`` along y times along x, holds more
    than ``limit`` elements.  With ``taps = q + e`` (``e = (r > 0) + (r > 1)``, at most 2) the
    product is expanded, ``q_y·q_x > limit - (e_y·q_x + e_x·q_y + e_y·e_x)``, so that the RTL's
    one product is of two fields (the adds before it made it the spatial unit's deepest path)
    and the rest is a sum of multiplexed fields; ``hold`` as in :func:`spatial_refusals`."""
    hold = hold or _no_hold
    q = {a: stage[f"pool.{a}_q"] for a in "yx"}
    rest = (_extra_taps(stage, "y", q["x"]) + _extra_taps(stage, "x", q["y"])
            + _extra_taps(stage, "y", _extra_taps(stage, "x", 1)))
    return hold(q["y"] * q["x"], 1) > hold(limit - rest, 1)


def split_chunk(c, split):
    """Channels of each of the ``2**split`` rows a pooling's output pixel is split into (the pool
    stage's ``split``): ``ceil(c / 2**split)``, a shift; the last rows may hold fewer, or none."""
    return (c + (1 << split) - 1) >> split


def pool_axis_fits(n_in, n_out, kernel, stride, padding, ceil_mode, hold=None):
    """Whether ``n_out`` is ``hw.operators.pool_out_size(n_in, kernel, stride, padding, ceil_mode)``
    (PyTorch's count, at least 1), by one product ``n_out·stride`` and comparisons of sums.  With
    ``span = n_in + 2·padding - kernel``: without ``ceil_mode`` ``(n_out - 1)·stride <= span <
    n_out·stride``; with it ``n_out`` is ``ceil(span / stride) + 1`` if that window starts before
    ``n_in + padding``, else one less.  ``n_out >= 1`` refuses what PyTorch refuses: a window longer
    than the padded input (``span < 0``), which ``ceil_mode`` still takes as one window while
    ``span > -stride`` (OFA-ResNet's 2x2 average of a 1-pixel side; the window clamps to the input).
    Each bound compares the product with a sum of the sizes (``kernel`` moved to the sizes' side);
    ``hold`` as in :func:`spatial_refusals` (the product and the sums, so that the comparisons after
    them are alone in their cycle)."""
    hold = hold or _no_hold
    ns, room = hold(n_out * stride, 1), n_in + 2 * padding
    span = hold(room - kernel, 1)                       # room < ns + kernel: span < ns
    last = hold(room - kernel + stride, 1)              # ns + kernel <= room + stride: ns <= last
    floor_fit = all_of(ns <= last, span < ns)
    kept = all_of(ns < hold(room - kernel + 2 * stride, 1), last <= ns, ns < hold(n_in + padding + stride, 1))
    dropped = all_of(ns < last, span <= ns, ns >= hold(n_in + padding, 1))
    return all_of(n_out >= 1, sel(ceil_mode, any_of(kept, dropped), floor_fit))


def spatial_refusals(head, stage, src, out, chain=(), hold=None) -> tuple[dict, dict]:
    """Why a pass whose first stage is spatial is refused: ``(DATA, UNSUPPORTED)``, each
    ``{why: condition}``.  One rule: the functional model refuses the ``DATA`` ones before it runs
    the pass (``sim.vector_unit``), ``hw.rtl.insn.vec_unsupported`` gives the ``UNSUPPORTED`` ones,
    and the RTL's spatial unit evaluates both on its latched descriptor, ``DATA`` first.

    ``DATA``: what the operators refuse (a bilinear source above ``RESIZE_MAX_IN`` or a DDA that is
    not its sizes', ``hw.operators.dda_matches``; sizes above ``AXIS_MAX``; more than 2**15
    classes; a pooling mode beyond ``ADAPTIVE_AVG``; a windowed pooling whose geometry does not
    give the pass's ``h x w``, :func:`pool_axis_fits`; an adaptive pooling or a nearest resize
    whose witnesses are not its sizes' quotients, :func:`divides_as`, or an adaptive window bound
    above ``POOL_MAX_COUNT``) and a written operand whose raster is not ``h x w``.  What the
    stages after the spatial one hold (an operand of another raster, a previous result of other
    channels than the pass's ``c``, a stage after the class map) is :func:`pass_refusals`', which
    the simulator and the RTL's executor evaluate first.
    ``UNSUPPORTED``: what the spatial unit does not build (a chain after the spatial stage of
    other than :data:`SPATIAL_CHAIN_OPS` on the previous result; a source
    that is no plain raster, :func:`plain_axis`; a result written in place, or into an operand
    whose repeating channels are fewer than the source's; a later stage reading an operand the
    chain writes: the unit reads it with the spatial stage's element, before the write).

    Parameters
    ----------
    head, stage, src, out : field dicts
        The header, the first stage slot, its source operand's slot and its written operand's slot
        (any slot when it writes none), as :func:`descriptor_field_slots` names them (``f["name"]``),
        on integers or on the RTL's descriptor.
    chain : sequence of (stage, second, written) field dicts
        The later stage slots (1 .. ``MAX_STAGES - 1``; live below the header's ``n_stages``),
        each with its second operand's slot and its written operand's slot (any slot where it
        names none): :func:`spatial_slots`.
    hold : callable, optional
        ``hold(value, level)``: what the RTL registers, the rule's products (level 1), so that its
        check is a product in one cycle and comparisons in the next (as :func:`slot_fields`'); the
        value itself on integers.
    """
    hold = hold or _no_hold
    h, w, n_y, n_x = head["h"], head["w"], src["y_n"], src["x_n"]
    argmax = stage["op"] == VecOp.RESIZE_ARGMAX
    writes = stage["out"] != NONE
    windowed = all_of(stage["op"] == VecOp.POOL, stage["pool.mode"] != PoolMode.ADAPTIVE_AVG)
    data = {
        **_bilinear_refusals(stage, n_y, n_x, h, w, hold),
        "sizes above AXIS_MAX": all_of(not_(windowed), any_of(n_y > ops.AXIS_MAX, n_x > ops.AXIS_MAX,
                                                              h > ops.AXIS_MAX, w > ops.AXIS_MAX)),
        "more than 2**15 classes": all_of(argmax, src["c"] > 1 << 15),
        **_pool_refusals(stage, n_y, n_x, h, w, hold),
        **_nearest_refusals(stage, n_y, n_x, h, w, hold),
        "a written operand of another raster": all_of(writes, any_of(out["y_n"] != h, out["x_n"] != w)),
    }
    unsupported = {
        **_chain_unsupported(head, stage, chain),
        "a source that is no plain raster": not_(plain_raster(src)),
        "a result written in place": any_of(all_of(writes, stage["src"] == stage["out"]),
                                            *(all_of(on, st["out"] == stage["src"]) for on, st, _ in _chain_uses(head, chain))),
        "a written operand whose repeating channels are fewer than the source's":
            all_of(writes, not_(argmax), out["repeat"], out["c"] < src["c"]),
    }
    return data, unsupported


def _bilinear_refusals(stage, n_y, n_x, h, w, hold) -> dict:
    """The ``DATA`` part of :func:`spatial_refusals` for a bilinear resize (alone or the class
    map's): its source's size and its DDA (``hw.operators.dda_matches``)."""
    argmax = stage["op"] == VecOp.RESIZE_ARGMAX
    bilinear = any_of(argmax, all_of(stage["op"] == VecOp.RESIZE, stage["resize.mode"] == ResizeMode.BILINEAR))
    kind = {k: sel(argmax, stage[f"resize_argmax.{k}"], stage[f"resize.{k}"])
            for k in ("align_corners", "y_start", "y_step", "x_start", "x_step")}

    def dda(axis, n_in, n_out):
        return ops.dda_matches(kind[f"{axis}_start"], kind[f"{axis}_step"], n_in, n_out, hold, kind["align_corners"])
    return {
        "a bilinear source above RESIZE_MAX_IN": all_of(bilinear, any_of(n_y > ops.RESIZE_MAX_IN,
                                                                         n_x > ops.RESIZE_MAX_IN)),
        "a DDA that is not its sizes'": all_of(bilinear, not_(all_of(dda("y", n_y, h), dda("x", n_x, w)))),
    }


def _witnessed(stage, kind, n_y, n_x, h, w, hold):
    """Whether stage ``kind``'s (``pool`` or ``resize``) witnesses are ``n_in div`` and ``mod n_out``
    along both axes (:func:`divides_as`)."""
    return all_of(divides_as(stage[f"{kind}.y_q"], stage[f"{kind}.y_r"], n_y, h, hold),
                  divides_as(stage[f"{kind}.x_q"], stage[f"{kind}.x_r"], n_x, w, hold))


def _pool_refusals(stage, n_y, n_x, h, w, hold) -> dict:
    """The ``DATA`` part of :func:`spatial_refusals` for a pooling: its mode, a windowed pooling's
    geometry (:func:`pool_axis_fits`), an adaptive one's witnesses and longest window."""
    pool, mode = stage["op"] == VecOp.POOL, stage["pool.mode"]
    windowed, adaptive = all_of(pool, mode != PoolMode.ADAPTIVE_AVG), all_of(pool, mode == PoolMode.ADAPTIVE_AVG)
    k, s, p, ceil_mode = (stage[f"pool.{name}"] for name in ("kernel", "stride", "padding", "ceil_mode"))
    geometry = all_of(k >= 1, s >= 1, 2 * p <= k, pool_axis_fits(n_y, h, k, s, p, ceil_mode, hold),
                      pool_axis_fits(n_x, w, k, s, p, ceil_mode, hold))
    witnesses = _witnessed(stage, "pool", n_y, n_x, h, w, hold)
    return {
        "a pooling mode beyond ADAPTIVE_AVG": all_of(pool, mode > PoolMode.ADAPTIVE_AVG),
        "a pooling window that does not give the pass's raster": all_of(windowed, not_(geometry)),
        "adaptive witnesses that are not n_in div and mod n_out": all_of(adaptive, not_(witnesses)),
        f"adaptive windows of more than POOL_MAX_COUNT = {ops.POOL_MAX_COUNT:,} elements": all_of(adaptive, witnesses,
                                                         adaptive_window_above(stage, ops.POOL_MAX_COUNT, hold)),
    }


def _nearest_refusals(stage, n_y, n_x, h, w, hold) -> dict:
    """The ``DATA`` part of :func:`spatial_refusals` for a nearest resize: its witnesses, and no
    ``align_corners`` (a bilinear resize's)."""
    nearest = all_of(stage["op"] == VecOp.RESIZE, stage["resize.mode"] == ResizeMode.NEAREST)
    return {
        "nearest witnesses that are not n_in div and mod n_out":
            all_of(nearest, not_(_witnessed(stage, "resize", n_y, n_x, h, w, hold))),
        "a nearest resize with align_corners": all_of(nearest, stage["resize.align_corners"]),
    }


#: What the spatial unit applies after its spatial stage, to its result (``hw/rtl/vector_spatial.py``,
#: on the row lanes' element-wise slot): what the mapper fuses after a resize (Swin's UPerNet
#: top-down RESIZE->ADD).  A LUT needs its table loaded before the rows, which the spatial unit
#: does not do.
SPATIAL_CHAIN_OPS = (VecOp.COPY, VecOp.ADD, VecOp.MUL)


def _chain_uses(head, chain) -> list:
    """(live, stage, reads a second operand) of each later stage slot of a spatial pass."""
    return [(i + 1 < head["n_stages"], st, all_of(_is(st["op"], VecOp.ADD, VecOp.MUL), st["src2"] != NONE))
            for i, (st, _, _) in enumerate(chain)]


def _chain_unsupported(head, stage, chain) -> dict:
    """The ``UNSUPPORTED`` part of :func:`spatial_refusals` for the stages after the spatial one."""
    uses = _chain_uses(head, chain)
    writers = [stage["out"]] + [sel(on, st["out"], NONE) for on, st, _ in uses]

    def short(op):
        return all_of(op["repeat"], op["c"] < head["c"])
    return {
        "a chain after the spatial stage of other than COPY, ADD or MUL on the previous result": any_of(
            *(all_of(on, any_of(not_(_is(st["op"], *SPATIAL_CHAIN_OPS)), st["src"] != PREV))
              for on, st, _ in uses)),
        "a chain's operand whose repeating channels are fewer than the pass's":
            any_of(*(all_of(on, any_of(all_of(reads, short(second)), all_of(st["out"] != NONE, short(out))))
                     for (on, st, reads), (_, second, out) in zip(uses, chain))),
        "a chain stage reading an operand the pass writes":
            any_of(*(all_of(on, reads, any_of(*(all_of(k != NONE, st["src2"] == k) for k in writers)))
                     for on, st, reads in uses)),
    }


def spatial_slots(d: Descriptor) -> tuple:
    """(header, first stage, source operand, written operand, chain) slots of a spatial pass: the
    arguments of :func:`spatial_refusals` on integers."""
    head, operands, stages = descriptor_field_slots(d)

    def slot(k):
        return operands[k] if k < MAX_OPERANDS else _Slot()
    first = stages[0]
    chain = [(st, slot(st["src2"]), slot(st["out"])) for st in stages[1:]]
    return head, first, operands[first["src"]], slot(first["out"]), chain


def row_schedule(d: Descriptor) -> tuple[int, int, int, int]:
    """(rows, row length, passes over each row, pause per row) of a pass on the row lanes.

    The vector unit runs a pass as rows, one per lane (``docs/rtl_vector.md``): a softmax row,
    or a pixel's ``c`` channels.  A chain's stages overlap along the row, so each row takes the
    passes of its row operation (``COST``; one without) plus that operation's ``ROW_GAP``; two
    row operations in one pass take the sum of both.  A resize (and the class map's resize and
    argmax) runs on the row lanes too, an output pixel a lane and a source channel a cycle
    (``hw/rtl/vector_spatial.py``): ``h·w`` rows of the source's ``c``.  A pooling runs there too,
    an output pixel's channels split into ``2**split`` rows (the stage's ``split``), a row a lane
    and a window tap a cycle for each of its channels: ``h·w·2**split`` rows of
    ``split_chunk(c, split)·taps_y·taps_x`` (:func:`pool_taps`: the window walked whole, taps
    outside the input or the adaptive window masked)."""
    head, operands, stages = descriptor_field_slots(d)
    return tuple(int(v) for v in _row_schedule(head, operands, stages, d.h * d.w))


def pool_split(pixels: int, c: int, taps: int, lanes: int) -> int:
    """The ``split`` of a pooling (``STAGE_PARAMS``) on ``lanes`` row lanes that takes the fewest
    cycles (``hw.timing.vec_row_cycles`` of its rows; the fewest rows among equals): a global
    average of 2,048 channels on 512 lanes runs as 512 rows of 4 channels, not one row of 2,048."""
    from .timing import vec_row_cycles

    def cycles(split: int) -> int:
        return vec_row_cycles({"rows": pixels << split, "row_cycles": split_chunk(c, split) * taps}, lanes)
    return min(range(min(c.bit_length(), 16)), key=lambda split: (cycles(split), split))


def row_lane_refusals(stages, operands, heads, row) -> dict[str, object]:
    """What the vector unit's row lanes (``hw/rtl/vector_unit.py``) do not build, each a condition:
    the RTL refuses such a pass with ``UNSUPPORTED`` (the functional model runs it).  One rule,
    evaluated on a descriptor's integers (``hw.rtl.insn.vec_unsupported``, the cosimulation's
    expectations) and on the RTL's descriptor slots (``hw.expr``).

    A row lane has one row unit (a softmax's or a layernorm's) and a second layernorm unit, so
    a pass has at most one softmax, or up to two layernorms (SegFormer's and DETR's
    LAYERNORM->LAYERNORM).  It has no spatial sequencer.  An operand whose channels repeat
    restarts them with each row, so across the rows of a softmax with several heads it must
    have the row's channels, whether the pass reads or writes it.

    Parameters
    ----------
    stages : sequence of (live, op, src, src2, out)
        Each stage slot: whether the pass has it, its operation, inputs and output.
    operands : sequence of (repeat, c)
        Each operand slot.
    heads, row : int or value
        The softmax's heads and row length (1 and the pass's ``c`` without a softmax).

    Returns
    -------
    dict
        ``{why: condition}``, the conditions true (or 1) where refused.
    """
    def is_op(live, op, choices):
        return all_of(live, any_of(*(op == c for c in choices)))
    rows = [is_op(live, op, ROW_OPS) for live, op, *_ in stages]
    softmax = [is_op(live, op, (VecOp.SOFTMAX,)) for live, op, *_ in stages]
    n = len(stages)
    pairs = [(i, j) for j in range(n) for i in range(j)]
    triples = [(i, j, k) for k in range(n) for j in range(k) for i in range(j)]
    used = [any_of(*(all_of(live, any_of(src == k, src2 == k, out == k)) for live, _, src, src2, out in stages))
            for k in range(len(operands))]
    return {
        "a resize or pooling stage (no spatial sequencer)":
            any_of(*(is_op(live, op, SPATIAL) for live, op, *_ in stages)),
        "row stages other than one softmax or layernorm, or two layernorms":
            any_of(*(all_of(rows[i], rows[j], any_of(softmax[i], softmax[j])) for i, j in pairs),
                   *(all_of(rows[i], rows[j], rows[k]) for i, j, k in triples)),
        "an operand repeating its channels across softmax rows that are not its channels":
            any_of(*(all_of(used[k], repeat, heads != 1, c != row) for k, (repeat, c) in enumerate(operands))),
    }


def row_too_long(rows, row, max_row: int = ops.MAX_ROW):
    """Whether a pass with row stages (``rows``) has rows (``row``, :func:`row_and_heads`) longer
    than its row lanes hold, ``max_row`` (``UNSUPPORTED``; a unit built for ``MAX_ROW`` meets it
    after :func:`pass_refusals` has refused such rows as ``DATA``).  Integers or values."""
    return all_of(rows, row > max_row)


def vec_fields(d: Descriptor) -> dict:
    """The VEC instruction's timing fields for descriptor ``d``: one rule for the mapper, which
    writes them, the simulators, which check them, and the RTL, which checks them on the fetched
    descriptor (:func:`slot_fields`).  An operand read in the pass's raster brings ``min(c, d.c)``
    channels of each valid pixel (``c`` when its channels repeat); the source of a resize or
    pooling its ``c`` channels; the class map one byte a pixel."""
    return {name: int(value) for name, value in slot_fields(*descriptor_field_slots(d)).items()}


# ---- binary layout -------------------------------------------------------------------------------

def _pack(spec: list, values: dict, nbytes: int, where: str) -> bytes:
    word, pos = 0, 0
    for name, bits, signed in spec:
        v = values[name]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
            raise _malformed(f"{where}: {name} = {v!r} does not fit {bits} "
                              f"{'signed' if signed else 'unsigned'} bits (range {lo}..{hi})")
        word |= (int(v) & ((1 << bits) - 1)) << pos
        pos += bits
    assert pos <= 8 * nbytes, where
    return word.to_bytes(nbytes, "little")


def _unpack(spec: list, data: bytes) -> dict:
    word, pos, out = int.from_bytes(data, "little"), 0, {}
    for name, bits, signed in spec:
        v = (word >> pos) & ((1 << bits) - 1)
        out[name] = v - (1 << bits) if signed and v >> (bits - 1) else v
        pos += bits
    return out


def descriptor_span(head) -> object:
    """Bytes of a descriptor whose header has fields ``head``, as its fetch reads them: the header,
    then the operands and stages it announces, at most ``MAX_OPERANDS`` and ``MAX_STAGES`` (more is
    malformed).  On integers or Amaranth values."""
    return (HEADER_BYTES + OPERAND_BYTES * vmin(head["n_operands"], MAX_OPERANDS)
            + STAGE_BYTES * vmin(head["n_stages"], MAX_STAGES))


def header_extent(addr) -> tuple:
    """The bytes of the header of a descriptor at ``addr``, as :func:`descriptor_extent`'s range:
    what the simulator and the RTL's fetch check before they read it."""
    return ("its descriptor's header", True, addr, addr + HEADER_BYTES - 1)


def descriptor_extent(addr, head) -> tuple:
    """The bytes a descriptor at ``addr`` whose header has fields ``head`` occupies, as a range of
    :func:`pass_extents` (``what, touched, lowest, highest``) for :func:`extents_outside`: what the
    simulator and the RTL's fetch check against the DRAM.  On integers or Amaranth values."""
    return ("its descriptor", True, addr, addr + descriptor_span(head) - 1)


def descriptor_bytes(d: Descriptor) -> int:
    return descriptor_span({"n_operands": len(d.operands), "n_stages": len(d.stages)})


def decode_header(data: bytes) -> dict:
    """The header fields of the descriptor whose bytes start ``data`` (at least ``HEADER_BYTES``)."""
    return _unpack(HEADER_FIELDS, data[:HEADER_BYTES])


def encode_descriptor(d: Descriptor) -> bytes:
    """The descriptor's bytes (range-checked: StreamError names a field that does not fit)."""
    out = [_pack(HEADER_FIELDS, {"h": d.h, "w": d.w, "c": d.c, "n_operands": len(d.operands),
                                  "n_stages": len(d.stages)}, HEADER_BYTES, "VEC descriptor")]
    for i, op in enumerate(d.operands):
        where = f"VEC descriptor operand {i}"
        spec = OPERAND_SPEC
        vals = {"base": op.base, "c": op.c, "repeat": int(op.repeat),
                **{"y_" + k: v for k, v in op.y.fields().items()}, **{"x_" + k: v for k, v in op.x.fields().items()}}
        out.append(_pack(spec, vals, OPERAND_BYTES, where))
    for i, st in enumerate(d.stages):
        vals = {"op": int(st.op), "src": st.src, "src2": st.src2, "out": st.out, **st.params}
        out.append(_pack(STAGE_HEAD + STAGE_PARAMS[st.op], vals, STAGE_BYTES, f"VEC descriptor stage {i}"))
    return b"".join(out)


def _stage_slot(data: bytes) -> dict:
    """A stage's fields as :func:`descriptor_field_slots` names them; only the head when its
    operation is no stage operation (:func:`descriptor_refusals` refuses it)."""
    head = _unpack(STAGE_HEAD, data)
    op = _STAGE_OPS.get(head["op"])
    if op is None:
        return _Slot(head)
    params = _unpack(STAGE_HEAD + STAGE_PARAMS[op], data)
    return _Slot(head, **{f"{op.name.lower()}.{n}": params[n] for n, _, _ in STAGE_PARAMS[op]})


def decode_descriptor(data: bytes, where: str = "VEC descriptor") -> Descriptor:
    """Parse (and check) a descriptor; StreamError for one the vector unit cannot run
    (:func:`descriptor_refusals` on its slots, or too few bytes)."""
    if len(data) < HEADER_BYTES:
        raise _malformed(f"{where}: truncated header")
    head = _Slot(decode_header(data))
    n_op, n_st = min(head["n_operands"], MAX_OPERANDS), min(head["n_stages"], MAX_STAGES)
    if len(data) < HEADER_BYTES + OPERAND_BYTES * n_op + STAGE_BYTES * n_st:
        raise _malformed(f"{where}: truncated ({n_op} operands, {n_st} stages)")
    operands = [_Slot() for _ in range(MAX_OPERANDS)]
    stages = [_Slot() for _ in range(MAX_STAGES)]
    pos = HEADER_BYTES
    for k in range(n_op):
        operands[k].update(_unpack(OPERAND_SPEC, data[pos:pos + OPERAND_BYTES]))
        pos += OPERAND_BYTES
    for i in range(n_st):
        stages[i] = _stage_slot(data[pos:pos + STAGE_BYTES])
        pos += STAGE_BYTES
    _refuse(descriptor_refusals(head, operands, stages), where)
    ops_ = tuple(Operand(f["base"], f["c"], *(Axis.from_fields({n: f[p + n] for n, _, _ in AXIS_FIELDS})
                                              for p in ("y_", "x_")), bool(f["repeat"])) for f in operands[:n_op])
    sts = []
    for f in stages[:n_st]:
        op = VecOp(f["op"])
        prefix = op.name.lower() + "."
        sts.append(Stage(op, f["src"], f["src2"], f["out"], {k[len(prefix):]: v for k, v in f.items() if k.startswith(prefix)}))
    return Descriptor.checked(head["h"], head["w"], head["c"], ops_, tuple(sts), (head, operands, stages))
