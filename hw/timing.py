"""Timing semantics of the ISA: the contract between the fast simulator and the RTL.

Every instruction's latency is a deterministic function of its fields and the
configuration (``latency``).  The accelerator fetches one instruction per cycle
and dispatches it, in order, into the queue of its unit (LOAD, COMPUTE, STORE;
``QUEUE_DEPTH`` entries each), the first in cycle ``DECODE_STAGES`` (its decode
stages fill before).  A unit starts an instruction one cycle after it
entered the queue at the earliest, when the unit is free and when every token
the instruction pops is available.  Tokens travel between neighbouring queues
of the ring LOAD -> COMPUTE -> STORE -> LOAD (and back from STORE and COMPUTE to
the queue before; ``TOKEN_LINKS``) and become available when the pushing instruction
ends.  The load unit is pipelined: it starts the next transfer while the data
of the previous one is still in flight (``occupancy`` < ``latency``); the store unit
posts its writes the same way.

``schedule`` runs a stream through these rules in one pass.  It requires every
popped token to be pushed by an earlier instruction of the stream, which the
mapper guarantees; a stream that violates it is malformed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .config import AcceleratorConfig
from .expr import any_of, cdiv, ceil_log2, is_int, lookup, sel, shifted_up, vmax, vmin
from .isa import (ADDR_MASK, DEP_FLAGS, FIELD_BITS, INSN_BYTES, QUEUE_OF, Act, ErrorCode, Insn, Op, Queue, StreamError,
                  decode, field_values, fields_key)
from .numerics import PARAM_ENTRY_BYTES, TABLE_PARAM_ENTRIES
from .vector import FIELD_HOLD_LEVELS, LUT_ENTRIES, MAX_DESCRIPTOR_BYTES, MAX_STAGES

__all__ = ["latency", "occupancy", "schedule", "Scheduler", "param_beat_bytes", "Schedule", "load_inp_dram_bytes", "store_bytes", "check_insn",
           "gb_banks", "load_inp_gb_conflict", "load_inp_gb_conflicts", "gemm_steps", "dw_gather_max", "dw_gather_ok", "load_inp_lanes",
           "load_inp_channel_ok", "load_wgt_lane_ok", "load_wgt_extent", "wrapped_ranges",
           "QUEUE_DEPTH", "TOKEN_LIMIT", "GEMM_PIPELINE", "GEMM_MIN_PIXELS", "POST_PIPELINE", "GB_LATENCY",
           "store_beats", "store_pipeline", "epilogue_latency",
           "epilogue_setup", "epilogue_reduce_latency", "EPILOGUE_RECIP_LATENCY", "EPILOGUE_NORMALISE_LATENCY", "TOKEN_LINKS", "TOKEN_FIFOS", "token_link", "token_links", "token_dispatch", "legality", "pe_set_bad",
           "schedule_encoded", "decode_until_end", "pe_positions", "pe_grid", "pe_hits", "pe_members", "store_pe_tile", "store_pe_extent", "store_pe_clip", "store_tile_bytes", "STORE_MIN_BUSY", "gemm_period", "gemm_input_terms", "legality_terms", "load_inp_rows", "load_inp_rows_bound", "gemm_steps_bound", "DECODE_STAGES", "RUN_OVERHEAD", "load_terms", "load_inp_folded", "load_inp_gb_unaligned", "FOLD_SETUP", "INP_START", "LANE_STAGE", "INP_COUNT_LAG", "gemm_cycles", "dram_transfer_cycles", "vec_cycles", "vec_row_cycles", "vec_walk_rows", "vec_first_walk", "VEC_WALK_ROWS", "VEC_WIDE_WALK_LANES", "VEC_WALK_SETUP", "vec_lane_floor",
           "VEC_SETUP", "VEC_CHECK", "VEC_FIELD_CHECK", "VEC_TABLE_ENTRIES", "VEC_TIMING_STAGES", "VEC_MIN_CYCLES", "VEC_STAGE_LATENCY", "VEC_FETCH_BYTES", "VEC_FETCH_EXTRA", "vec_fetch_cycles", "store_timing",
           "GB_WRITE_LATENCY", "store_gb_lanes", "store_gb_run", "gb_store_group", "gb_write_claims", "gb_resident_pitch", "gb_resident_align",
           "gb_holds_tensors", "gb_store_fits"]

QUEUE_DEPTH = 8          # instruction-queue entries per unit
TOKEN_LIMIT = 8          # tokens a FIFO may hold, counted in program order (pushes minus pops)
GEMM_PIPELINE = 4        # operand read, multiply, adder tree, accumulate
GEMM_MIN_PIXELS = 4      # an accumulator entry is re-read at least this many cycles after it was written
POST_PIPELINE = 5        # accumulator read, bias, multiply, round/shift, saturate (hw/rtl/postproc.py)
GB_LATENCY = 2           # global-buffer read latency
#: The shortest busy time of a STORE (``store_timing``: one pixel's beat, even with none, the
#: post-processing and the setup cycle): the RTL's store unit forms a STORE's busy time in the
#: cycles before (tile origins, clipped extents, pixels, bytes, their sum, the transfer time).
STORE_MIN_BUSY = 1 + POST_PIPELINE + 1
#: A STORE into the global buffer (``dst_gb``) writes one selected PE's pixel (its K0 channels,
#: contiguous bytes: one conflict-free write beat, ``hw/rtl/global_buffer.py``) a cycle; its last
#: write is in the bank this many cycles after its busy time, for any read after it.
GB_WRITE_LATENCY = 1
#: A folded LOAD_INP's address generator first divides each lane's first channel (``c_base`` +
#: lane, one bit more than the field) by ``t_c`` and the tap (below 2^12 whenever it is in the
#: kernel) by ``fold_kw``, ``FOLD_DIGIT_BITS`` quotient bits a cycle; one cycle passes the
#: quotient on, one forms the lane offsets (``hw/rtl/load_inp.py``).  Its first beat waits this long.
FOLD_CHANNEL_BITS = FIELD_BITS[Op.LOAD_INP]["c_base"] + 1
FOLD_TAP_BITS = FIELD_BITS[Op.LOAD_INP]["fold_kh"] + FIELD_BITS[Op.LOAD_INP]["fold_kw"]
FOLD_DIGIT_BITS = 2
FOLD_CHANNEL_DIGITS = -(-FOLD_CHANNEL_BITS // FOLD_DIGIT_BITS)
FOLD_TAP_DIGITS = -(-FOLD_TAP_BITS // FOLD_DIGIT_BITS)
FOLD_SETUP = FOLD_CHANNEL_DIGITS + 1 + FOLD_TAP_DIGITS + 1
#: Every LOAD_INP's address generator forms a beat in two registered stages, its rows (the
#: window's wraps) two cycles before the beat and its lanes (enables, addresses) one cycle
#: before, so the DRAM port starts at registers and no path runs from the row counters to the
#: lanes' outputs: the first beat waits these cycles after the (folded) setup.
LANE_STAGE = 2
#: Every LOAD_INP's address generator registers its fields at the start and forms the products
#: its row stage adds (a pixel's row and column byte steps, the window origin's offset) from
#: those registers a cycle later, so no product of products runs from the queue's head: the
#: row stage starts this many cycles after the start (after the folded setup, if any).
INP_START = 1
#: The generator counts a beat's enabled lanes (its DRAM bytes) from the beat's registered
#: enables, in the cycle of the beat, so the unit's DRAM balance takes them a cycle after the beat
#: (the count of 128 enables alone is 28 levels on E): a LOAD_INP from DRAM is free this many
#: cycles after its last beat at the earliest (``load_terms``' ``lag``).
INP_COUNT_LAG = 1
#: The dispatcher forms a word's legality products (``legality_terms``) in two stages, products
#: of two fields and then their products, before it checks and dispatches the word, so
#: instruction 0 is dispatched in cycle ``DECODE_STAGES`` at the earliest; the stages then stay
#: full, one instruction a cycle as before.
DECODE_STAGES = 2
#: Cycles of a run that belong to none of its layers: the decode's first stages and END's own cycle.
RUN_OVERHEAD = DECODE_STAGES + 1
#: A VEC on the row lanes first fetches its descriptor, at most ``MAX_DESCRIPTOR_BYTES`` at
#: ``VEC_FETCH_BYTES`` a cycle plus ``VEC_FETCH_EXTRA`` (:func:`vec_fetch_cycles`, which
#: ``hw/rtl/descriptor_fetch.py`` reports), checks the VEC's fields against those of its descriptor
#: (``VEC_FIELD_CHECK``: the check's registered terms, ``hw.vector.FIELD_HOLD_LEVELS``, then the
#: registered OR of its refusals), hands it to the vector unit (1) and checks it (1); its last row leaves
#: ``VEC_STAGE_LATENCY`` cycles per stage slot after its last read, through every slot.
VEC_FETCH_BYTES = 16
#: Cycles of a descriptor fetch beyond its beats: one to wait for the header, two for the last beat
#: and the check.
VEC_FETCH_EXTRA = 3


def vec_fetch_cycles(nbytes: int, lanes: int = VEC_FETCH_BYTES) -> int:
    """Cycles from a descriptor fetch's start to its end: a beat of ``lanes`` bytes a cycle for
    ``nbytes`` bytes, then ``VEC_FETCH_EXTRA``."""
    return cdiv(nbytes, lanes) + VEC_FETCH_EXTRA


VEC_STAGE_LATENCY = 7
VEC_FIELD_CHECK = FIELD_HOLD_LEVELS + 1
#: Cycles after the DRAM latency by which the executor has fetched the longest descriptor and
#: checked the VEC's fields against it: when a pass that cannot run (``rows`` = 0) is refused.
VEC_CHECK = vec_fetch_cycles(MAX_DESCRIPTOR_BYTES) + VEC_FIELD_CHECK
VEC_SETUP = VEC_CHECK + 1 + 1 + MAX_STAGES * VEC_STAGE_LATENCY
#: A LUT stage's table, loaded an entry a cycle before the rows (all LUT stages' at once).
VEC_TABLE_ENTRIES = LUT_ENTRIES
#: The registers through which the compute unit forms a VEC's cycles (``vec_cycles``' ``hold``
#: stages and the total: no product of 40-bit fields in front of its down-counter), so a VEC
#: takes at least ``VEC_TIMING_STAGES`` + 3 cycles (start, the stages, the counter's load, a last
#: cycle for the tokens); every VEC takes longer (``VEC_CHECK`` after the DRAM latency at least).
VEC_TIMING_STAGES = 5
VEC_MIN_CYCLES = VEC_TIMING_STAGES + 3
assert VEC_CHECK >= VEC_MIN_CYCLES, "every VEC takes its timing stages' cycles"
#: The low bits of a row's cycles multiplied apart from the high (``vec_row_cycles``).
ROW_TIME_SPLIT = 10
#: Rows the walkers hand to the row lanes a cycle, at most, on a unit of ``VEC_WIDE_WALK_LANES``
#: row lanes or more (``vec_walk_rows``; fewer lanes walk one a cycle): the contract's, and both
#: units' by default.  On E four take nearly all of what a wider walk saves (B2 4.601 -> 4.444 ms;
#: eight save under 1,000 cycles more: ``docs/rtl_vector.md``).
VEC_WALK_ROWS = 4
#: Below this many row lanes a group's walk is short beside its rows' work, and the wide walkers
#: would grow small units by half (tiny, small; ``make test`` elaborates them all the time).
VEC_WIDE_WALK_LANES = 64
#: Cycles a walker of several rows a cycle takes before its first row (``hw/rtl/vector_walker.py``:
#: each walker moved to its first row, then its axis counters).
VEC_WALK_SETUP = 2


#: The softmax epilogue's kernels after their reductions (``hw/rtl/softmax_epilogue.py``, which
#: checks them against ``hw.operators``' kernels on the hardware backend): ``recip_kernel`` of a
#: row's sum, ``softmax_out_kernel`` of an exponential and its row's reciprocal.
EPILOGUE_RECIP_LATENCY = 3
EPILOGUE_NORMALISE_LATENCY = 3


def epilogue_reduce_latency(cfg: AcceleratorConfig) -> int:
    """Cycles of a reduction across the ``num_pe * K0`` lanes (``hw/rtl/segmented_reduce.py``): a
    registered scan and a registered broadcast of ``ceil(log2(lanes))`` stages each."""
    return 2 * ceil_log2(cfg.num_pe * cfg.k0)


def epilogue_latency(cfg: AcceleratorConfig) -> int:
    """Cycles from a pixel's post-processed lanes to its softmax, in one pass (a pixel's rows lie on
    the lanes of one beat): the rows' maxima, the table's read of ``e = table[max - x]``, the rows'
    sums, the reciprocal and the normalisation, the values waiting in delay buffers meanwhile."""
    return 2 * epilogue_reduce_latency(cfg) + 1 + EPILOGUE_RECIP_LATENCY + EPILOGUE_NORMALISE_LATENCY


def epilogue_setup(cfg: AcceleratorConfig) -> int:
    """Cycles a softmax epilogue's first beat waits: the walk over the PEs that finds the rows'
    first lanes (``hw.epilogue``), one PE a cycle."""
    return cfg.num_pe


def _same(value, name):
    """A ``hold`` that holds nothing, the formulas' default: the value itself (the RTL passes a register)."""
    return value


def store_beats(f, cfg: AcceleratorConfig, hold=_same):
    """Cycles from a STORE's first beat slot to its last beat: its pixels (a STORE of none takes
    one's slot: ``STORE_MIN_BUSY``), one of every PE a cycle; with a softmax epilogue, the row walk
    first (on integers or Amaranth values).  The RTL passes ``hold`` to register the pixel count and
    the cycles a pixel (``hold(value, name)``), then their product, a stage each before the rest."""
    npix = hold(vmax(f["out_h"] * f["out_w"], 1), "npix")
    return hold(npix * hold(store_gb_lanes(f, cfg), "gb_lanes"), "slots") + sel(f["ep_row"] != 0, epilogue_setup(cfg), 0)


def gb_store_group(cfg: AcceleratorConfig) -> int:
    """The most PEs a STORE into the global buffer writes in one beat: ``G / K0`` (1 when that is
    no power of two)."""
    g = cfg.gb_bus_bytes // cfg.k0
    return g if g >= 1 and g & (g - 1) == 0 else 1


def store_gb_run(f, cfg: AcceleratorConfig):
    """PEs a STORE into the global buffer writes a beat (on integers or Amaranth values): runs of
    ``r`` consecutive PEs whose pixels are contiguous, ``r`` the largest power of two up to
    ``gb_store_group`` that divides ``pe_k`` (so a run stays in its row group; ``pe_k = 0`` is
    one row group) and ``pe_first``, when the PEs are consecutive (``pe_step`` 1) and each
    holds K0 channels right after its neighbour's (``k_step = k_per_pe = K0``); 1 otherwise.
    A wider bus never shortens a run."""
    contiguous = (f["pe_step"] == 1) & (f["k_step"] == cfg.k0) & (f["k_per_pe"] == cfg.k0)
    run, r = 1, 2
    while r <= gb_store_group(cfg):
        run = sel(((f["pe_k"] | f["pe_first"]) & (r - 1)) == 0, r, run)
        r *= 2
    return sel(contiguous, run, 1)


def store_gb_lanes(f, cfg: AcceleratorConfig):
    """Cycles a STORE spends on each pixel: 1 into DRAM (every PE's lanes at once); into the
    global buffer (``dst_gb``: its one write port takes ``G`` contiguous bytes a cycle) one beat
    per run of ``store_gb_run`` PEs, ``ceil(pe_count / run)``."""
    run = store_gb_run(f, cfg)
    beats, r = f["pe_count"], 2
    while r <= gb_store_group(cfg):
        beats = sel(run == r, cdiv(f["pe_count"], r), beats)
        r *= 2
    return sel(f["dst_gb"], beats, 1)


def store_pipeline(f, cfg: AcceleratorConfig):
    """Cycles from a STORE's beat to its write: the post-processing, and the softmax epilogue's."""
    return POST_PIPELINE + sel(f["ep_row"] != 0, epilogue_latency(cfg), 0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _count_valid(start: int, n: int, step: int, limit: int) -> int:
    """How many of start, start+step, ..., start+(n-1)*step lie in [0, limit)."""
    lo = max(0, _cdiv(-start, step))
    hi = min(n - 1, (limit - 1 - start) // step)
    return max(0, hi - lo + 1)


def load_inp_dram_bytes(insn: Insn, cfg: AcceleratorConfig) -> int:
    """Bytes a LOAD_INP reads from its source: only in-bounds elements (padding is free)."""
    f = insn.f
    fkh, fkw, fs = f["fold_kh"] or 1, f["fold_kw"] or 1, f["fold_stride"] or 1
    c_lo, c_hi = f["c_base"], f["c_base"] + f["n_cblk"] * cfg.c0
    tc = f["t_c"]
    valid_c = min(tc, f["chan"]) if f["chan"] else tc        # load_inp_channel_ok's channels of a tap
    if fkh == fkw == 1:      # a plain window (the common case): one tap
        nc = max(0, min(c_hi, valid_c) - max(c_lo, 0))
        return nc and nc * _count_valid(f["y0"], f["win_h"], fs, f["t_h"]) * _count_valid(f["x0"], f["win_w"], fs, f["t_w"])
    total = 0
    for r in range(fkh):
        ny = _count_valid(f["y0"] + r, f["win_h"], fs, f["t_h"])
        if not ny:
            continue
        for s in range(fkw):
            base = (r * fkw + s) * tc
            nc = max(0, min(c_hi, base + valid_c) - max(c_lo, base))
            if nc:
                total += ny * _count_valid(f["x0"] + s, f["win_w"], fs, f["t_w"]) * nc
    return total


def store_tile_origin(f, col, grp):
    """(first channel, first row) of the tile a STORE's PE at (column, row group) writes:
    channels from ``k_base + col * k_step``, rows from ``y0 + grp * out_h`` (integers, arrays or
    Amaranth values)."""
    return f["k_base"] + col * f["k_step"], f["y0"] + grp * f["out_h"]


def store_addr(f, y, x, k, hold=_same):
    """The DRAM address a STORE writes channel ``k`` of pixel (``y``, ``x``) of its tensor to.  The
    RTL passes ``hold`` to register each product (``hold(value, name)``), a stage apiece."""
    return f["dst_addr"] + hold(hold(y * f["t_w"] + x, "pixel") * f["k_pitch"], "pixel_bytes") + k


def store_pe_clip(f, k_first, y_first):
    """(in-bounds channels, rows, columns) of a STORE's PE tile from its origin
    (``store_tile_origin``): ``k_per_pe`` channels, ``out_h`` rows and ``out_w`` columns from
    ``x0``, clipped to the tensor."""
    nk = vmax(vmin(f["t_k"] - k_first, f["k_per_pe"]), 0)
    ny = vmax(vmin(f["t_h"] - y_first, f["out_h"]), 0)
    nx = vmax(vmin(f["t_w"] - f["x0"], f["out_w"]), 0)
    return nk, ny, nx


def store_pe_extent(f, col, grp):
    """(first channel, first row, in-bounds channels, rows, columns) of the tile a STORE's PE at
    (column, row group) writes (``store_tile_origin``, ``store_pe_clip``)."""
    k_first, y_first = store_tile_origin(f, col, grp)
    return (k_first, y_first, *store_pe_clip(f, k_first, y_first))


def store_tile_bytes(nk, ny, nx, hold=_same):
    """In-bounds bytes of a STORE's PE tile of extents (``nk``, ``ny``, ``nx``): its pixels times
    its channels.  The RTL passes ``hold`` to register the pixel count (``hold(value, name)``), so
    no stage multiplies three values."""
    return hold(ny * nx, "pixels") * nk


def store_pe_tile(f, col, grp):
    """(first channel, first row, in-bounds bytes) of a STORE's PE tile (``store_pe_extent``)."""
    k_first, y_first, nk, ny, nx = store_pe_extent(f, col, grp)
    return k_first, y_first, store_tile_bytes(nk, ny, nx)


@lru_cache(maxsize=4096)
def pe_grid(num_pe: int, pe_k: int) -> np.ndarray:
    """``pe_positions`` as an array: row ``p`` is PE ``p``'s (column, row group)."""
    return np.array(pe_positions(num_pe, pe_k), dtype=np.int64).reshape(num_pe, 2)


def store_bytes(insn: Insn, cfg: AcceleratorConfig) -> int:
    """Bytes a STORE writes: the in-bounds outputs of every selected PE."""
    f = insn.f
    cols, groups = _member_positions(cfg.num_pe, f["pe_k"], f["pe_first"], f["pe_count"], f["pe_step"])
    return int(store_pe_tile(f, cols, groups)[2].sum())


@lru_cache(maxsize=4096)
def _member_positions(num_pe: int, pe_k: int, first: int, count: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, row groups) of the PEs of a set (``pe_grid`` at ``pe_members``), read-only:
    remembered, as every STORE of a tiling selects the same PEs."""
    grid = pe_grid(num_pe, pe_k)[list(_members(first, count, step, num_pe))]
    cols, groups = grid[:, 0].copy(), grid[:, 1].copy()
    cols.setflags(write=False)
    groups.setflags(write=False)
    return cols, groups


def gemm_steps(f, hold=_same):
    """Weight rows (steps of one pass over the tile's pixels) of a GEMM: one per channel block,
    kernel row and kernel column, or per channel block and kernel row with ``dw``.  ``hold``:
    see :func:`legality_terms`."""
    return hold(f["n_cblk"] * f["kh"], "cblk_kh") * sel(f["dw"], 1, f["kw"])


def dw_gather_max(config: AcceleratorConfig) -> int:
    """The most kernel columns a depthwise-gather GEMM (``dw = 1``) can take on ``config``:
    vector MAC j takes lane j of each of ``kw`` consecutive input rows, which the ``G/C0``
    input banks deliver in one read, on its C0 lanes; 0 when K0 > C0 (no lane j)."""
    return min(config.gb_bus_bytes // config.c0, config.c0) if config.k0 <= config.c0 else 0


def dw_gather_ok(config: AcceleratorConfig, kw: int) -> bool:
    """Whether a depthwise-gather GEMM with ``kw`` kernel columns can run on ``config``."""
    return 1 <= kw <= dw_gather_max(config)


def pe_set_last(f):
    """The last PE of a set ``pe_first + i * pe_step``, ``i < pe_count``."""
    return f["pe_first"] + (f["pe_count"] - 1) * f["pe_step"]


def pe_set_bad(f, num_pe: int, last):
    """A PE set (``pe_first + i * pe_step``, ``i < pe_count``) outside the array: no PE, a PE beyond the
    last, or one PE selected several times (``pe_step = 0``).  ``last``: its :func:`pe_set_last`, which
    :func:`legality_terms` holds, so that the dispatcher's check stage compares it and multiplies nothing."""
    return any_of(f["pe_count"] == 0, last >= num_pe, (f["pe_step"] == 0) & (f["pe_count"] > 1))


@lru_cache(maxsize=64)
def _divisor_pairs(span: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """For every offset ``d < span``: the (divisor, quotient) pairs of ``d`` (none for 0)."""
    return tuple(tuple((s, d // s) for s in range(1, d + 1) if d % s == 0) for d in range(span))


def pe_hits(f, num_pe: int) -> list:
    """Whether each PE ``0 .. num_pe-1`` is in the set ``pe_first + i * pe_step``, ``i < pe_count``
    (any fields: exact for illegal sets too, which select only the members inside the array).

    PE ``p`` is a member when its offset ``d = p - pe_first`` is ``i * pe_step`` with ``i < pe_count``.
    Each offset the array can hold is a constant, so the steps that divide it are known: the offset
    is a member when ``pe_step`` is one of them and the quotient is below ``pe_count`` (a comparison
    per divisor, no multiplier, no chain along the array); the offsets then move up by
    ``pe_first`` (a shifter in hardware)."""
    count, step = f["pe_count"], f["pe_step"]
    offsets = [any_of(*[(step == s) & (count > q) for s, q in pairs]) if d else count != 0
               for d, pairs in enumerate(_divisor_pairs(num_pe))]
    return shifted_up(offsets, f["pe_first"], num_pe)


@lru_cache(maxsize=4096)
def _members(first: int, count: int, step: int, num_pe: int) -> tuple[int, ...]:
    return tuple(p for p, hit in enumerate(pe_hits({"pe_first": first, "pe_count": count, "pe_step": step}, num_pe))
                 if hit)


def pe_members(f, num_pe: int) -> list[int]:
    """The PEs of the set ``pe_first + i * pe_step``, ``i < pe_count`` (integer fields, a legal set):
    ``pe_hits`` on integers."""
    return list(_members(f["pe_first"], f["pe_count"], f["pe_step"], num_pe))


def pe_positions(num_pe: int, pe_k) -> list:
    """(column, row group) of every PE of the array for a STORE of ``pe_k`` columns: PE ``p`` is
    column ``p mod pe_k`` (channels ``k_base + column * k_step ...``) of row group ``p div pe_k``
    (rows ``y0 + group * out_h ...``).  ``p`` is a constant, so both are a table of ``pe_k`` (1 .. p;
    a wider ``pe_k``, or 0, leaves PE ``p`` in column ``p`` of group 0): no divider in hardware and
    no chain along the array."""
    return [(lookup(pe_k, [p % k if k else p for k in range(p + 1)], p),
             lookup(pe_k, [p // k if k else 0 for k in range(p + 1)], 0)) for p in range(num_pe)]


def gb_banks(config: AcceleratorConfig) -> tuple[int, int, int]:
    """(banks B = 2 G / C0, bytes per bank word = C0, words per bank)."""
    g = config.gb_bus_bytes
    banks = 2 * g // config.c0
    return banks, config.c0, config.global_buf_bytes // (2 * g)


def load_wgt_lane_addr(f, out, chan):
    """The DRAM address of channel ``chan`` of output ``out`` in a LOAD_WGT, on integers, arrays or
    Amaranth values: ``lane_stride`` 0 reads a row's channels from consecutive bytes, any other
    value strides them (a transposed operand)."""
    return f["src_addr"] + out * f["out_stride"] + chan * sel(f["lane_stride"] == 0, 1, f["lane_stride"])


def param_beat_bytes(config: AcceleratorConfig) -> int:
    """Bytes a LOAD_PARAM beat carries: the bus's ``gb_bus_bytes``, at most K0 entries (a PE's
    parameter memory takes K0 entries a cycle, one per output channel of its block), so that a
    bus wider than that (512 bytes on E: 64 entries) needs no wider parameter memory."""
    return min(config.gb_bus_bytes, config.k0 * PARAM_ENTRY_BYTES)


def load_param_lane_addr(f, entry, byte):
    """The DRAM address of byte ``byte`` of entry ``entry`` in a LOAD_PARAM (entries of
    ``PARAM_ENTRY_BYTES`` bytes, parameter sets and table words alike)."""
    return f["src_addr"] + entry * PARAM_ENTRY_BYTES + byte


def load_wgt_lane_ok(f, out, ch, issued=True):
    """Whether a LOAD_WGT's lane of vector MAC ``out`` (of the K0) at channel ``ch`` (of the
    ``rows * C0`` it fills) reads DRAM: below ``n_out`` and ``chan``; the others are written zero
    (integers, arrays or Amaranth values).  ``issued``: the load unit's beat enable, ANDed first so
    that its lane enable is this one expression."""
    return issued & (out < f["n_out"]) & (ch < f["chan"])


def wrapped_ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """The byte ranges (inclusive) that addresses ``lo .. hi``, formed without the wrap, reach
    modulo 2**32 (``hw.isa.ADDR_MASK``), as the address generators' 32-bit sums do (and
    :func:`_lanes_of`'s lanes): one range; two, the top of the space and its bottom, when they
    cross a multiple of 2**32; all of it when they span 2**32 bytes or more."""
    if hi - lo >= ADDR_MASK:
        return [(0, ADDR_MASK)]
    lo, hi = lo & ADDR_MASK, hi & ADDR_MASK
    return [(lo, hi)] if lo <= hi else [(lo, ADDR_MASK), (0, hi)]


def load_wgt_extent(f, cfg: AcceleratorConfig):
    """(vector MACs, channels) whose lanes :func:`load_wgt_lane_ok` lets read DRAM: the first
    ``n_out`` (at most K0, :func:`legality`) and the first ``chan`` of the ``rows * C0`` it fills."""
    return f["n_out"], _min(f["chan"], f["rows"] * cfg.c0)


def load_inp_channel_ok(f, c):
    """Whether a LOAD_INP's lane at channel ``c`` of its pixel (below ``t_c``) reads it: below the
    bound ``chan``, or any channel when ``chan`` is 0.  A part of a concatenation is stored at the
    whole's pitch; its bound keeps the lanes of its last channel block off the next part's bytes
    (integers, arrays or Amaranth values: a comparison per lane, no divider)."""
    return (f["chan"] == 0) | (c < f["chan"])


def load_inp_lanes(fields: dict, config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(source byte address modulo 2**32, validity) of every lane a LOAD_INP writes, shaped
    (n_cblk, win_h, win_w, C0): the gather of ``docs/isa.md`` (im2col when folded); an invalid
    lane (padding, a tap beyond the kernel, a channel at or past ``chan``) is written as zero and
    reads nothing."""
    addr, valid = _lanes_of([fields], config)
    return addr[0], valid[0]


#: The fields that give a LOAD_INP's lanes their shape: gathers equal in these are evaluated together.
_GATHER_EXTENT = ("n_cblk", "win_h", "win_w", "fold_kh", "fold_kw", "fold_stride")


def _lanes_of(gathers: list[dict], config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """``load_inp_lanes`` of ``gathers``, equal in their ``_GATHER_EXTENT``, stacked: shaped
    (gather, n_cblk, win_h, win_w, C0).  Unfolded gathers are evaluated together (numpy's cost
    per call, not per lane, dominates a small gather's)."""
    f, c0 = gathers[0], config.c0
    fkh, fkw, fs = f["fold_kh"] or 1, f["fold_kw"] or 1, f["fold_stride"] or 1
    if fkh * fkw == 1:
        addr, valid = _plain_lanes(gathers, c0, fs)
    else:
        lanes = [_folded_lanes(f, c0, fkh, fkw, fs) for f in gathers]
        addr, valid = np.stack([a for a, _ in lanes]), np.stack([v for _, v in lanes])
    return addr & ADDR_MASK, valid          # modulo 2**32 (hw.isa), as the load unit's lane addresses


def _folded_lanes(f: dict, c0: int, fkh: int, fkw: int, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """``load_inp_lanes`` of a folded gather (im2col: channel ``fch`` of the folded pixel is channel
    ``fch % t_c`` of kernel tap ``fch // t_c``)."""
    cb, yy, xx, lane = np.meshgrid(np.arange(f["n_cblk"]), np.arange(f["win_h"]), np.arange(f["win_w"]),
                                   np.arange(c0), indexing="ij")
    fch = f["c_base"] + cb * c0 + lane
    tap, c = fch // f["t_c"], fch % f["t_c"]
    y = f["y0"] + yy * fs + tap // fkw
    x = f["x0"] + xx * fs + tap % fkw
    valid = (tap < fkh * fkw) & (y >= 0) & (y < f["t_h"]) & (x >= 0) & (x < f["t_w"]) & load_inp_channel_ok(f, c)
    return f["src_addr"] + (y * f["t_w"] + x) * f["t_c"] + c, valid


def _plain_lanes(gathers: list[dict], c0: int, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """``_lanes_of`` without folding: lane ``l`` of row (cb, yy, xx) is channel
    ``c_base + cb*C0 + l`` of pixel ``(y0 + yy*fs, x0 + xx*fs)``, valid below ``t_c`` (and ``chan``).
    Each field is a column over the gathers, shaped [gather, 1, 1] to broadcast."""
    f = {k: np.array([g[k] for g in gathers])[:, None, None]
         for k in ("src_addr", "t_h", "t_w", "t_c", "y0", "x0", "c_base", "chan")}
    n_cblk, win_h, win_w = gathers[0]["n_cblk"], gathers[0]["win_h"], gathers[0]["win_w"]
    ch = f["c_base"] + np.arange(n_cblk)[:, None] * c0 + np.arange(c0)[None, :]           # [g, cb, lane]
    y = f["y0"][:, :, 0] + np.arange(win_h) * fs                                           # [g, yy]
    x = f["x0"][:, :, 0] + np.arange(win_w) * fs                                           # [g, xx]
    pix = (y[:, :, None] * f["t_w"] + x[:, None, :]) * f["t_c"]                            # [g, yy, xx]
    ok = (((y >= 0) & (y < f["t_h"][:, :, 0]))[:, :, None]
          & ((x >= 0) & (x < f["t_w"][:, :, 0]))[:, None, :])
    addr = (f["src_addr"] + pix)[:, None, :, :, None] + ch[:, :, None, None, :]
    valid = ok[:, None, :, :, None] & ((ch < f["t_c"]) & load_inp_channel_ok(f, ch))[:, :, None, None, :]
    return addr, valid


def load_inp_gb_conflict(fields: dict, config: AcceleratorConfig) -> int | None:
    """The first beat of a LOAD_INP (``src_gb = 1``) whose gather has a bank conflict, or None.

    ``fields`` are the instruction's fields (``Insn.f``).  The beats are those of the load
    unit: rows in (channel block, window row, window column) order, ``G / C0`` rows per
    beat, lane addresses and validity as in ``sim.functional``.  Out-of-buffer addresses
    are not considered here (they raise ``error`` anyway).
    """
    return load_inp_gb_conflicts([fields], config)[0]


def load_inp_gb_conflicts(gathers: list[dict], config: AcceleratorConfig) -> list[int | None]:
    """``load_inp_gb_conflict`` of each of ``gathers`` (LOAD_INPs' fields), remembered by their
    fields' values; those not remembered are evaluated together, those of one extent in one pass
    (a stream's gathers are many, and small: numpy's cost per call would dominate)."""
    known = _memos_of(config).conflicts          # a stream's passes repeat its gathers
    keys = [field_values(Op.LOAD_INP, f) for f in gathers]
    out: list = [None] * len(gathers)
    todo: dict[tuple, list[int]] = {}            # extent -> the gathers to evaluate
    for i, key in enumerate(keys):
        if key is not None and key in known:
            out[i] = known[key][0]
        else:
            todo.setdefault(tuple(gathers[i][k] for k in _GATHER_EXTENT), []).append(i)
    for group in todo.values():
        for i, beat in zip(group, _load_inp_gb_conflicts([gathers[i] for i in group], config)):
            out[i] = beat
            if keys[i] is not None:
                _remember(known, keys[i], (beat,))
    return out


def _load_inp_gb_conflicts(gathers: list[dict], config: AcceleratorConfig) -> list[int | None]:
    """``load_inp_gb_conflict`` of gathers of one extent (``_GATHER_EXTENT``)."""
    c0 = config.c0
    nbank, width, _ = gb_banks(config)
    nb = config.gb_bus_bytes // c0
    addr, valid = _lanes_of(gathers, config)
    n = len(gathers)
    rows_of = addr.size // (n * c0)              # input rows of each gather
    if not rows_of:                              # no row (n_cblk, win_h or win_w 0): no beat, no conflict
        return [None] * n
    words = _row_words(addr.reshape(-1, c0), valid.reshape(-1, c0), width)      # per input row's lanes
    beats = -(-rows_of // nb)
    # per gather and beat: its valid lanes' buffer rows (-1 for the rest), each distinct row once, then their banks
    words = words.reshape(n, rows_of, -1)
    row = np.concatenate([words, np.full((n, beats * nb - rows_of, words.shape[2]), -1)], axis=1)
    rows = _distinct_per_beat(row.reshape(n * beats, -1))
    banks = _distinct_per_beat(np.where(rows >= 0, rows % nbank, -1))
    bad = ((rows >= 0).sum(axis=1) != (banks >= 0).sum(axis=1)).reshape(n, beats)
    first = bad.argmax(axis=1)
    return [int(b) if any_bad else None for b, any_bad in zip(first.tolist(), bad.any(axis=1).tolist())]


def _row_words(addr: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """The buffer words (-1: none) of each input row's lanes (``addr``, ``valid``: [row, lane]); one
    column when every row's valid lanes read one word (whole-word gathers), which a beat's distinct
    words do not change, and sorting them is C0 times less work.  Found from each row's least and
    greatest valid address (division is monotonic): C0 times fewer divisions."""
    last = np.where(valid, addr, -1).max(axis=1)
    first = np.where(valid, addr, last[:, None]).min(axis=1)
    last //= width
    return last[:, None] if np.array_equal(first // width, last) else np.where(valid, addr // width, -1)


def _distinct_per_beat(values: np.ndarray) -> np.ndarray:
    """Each row of ``values`` (non-negative, -1 for none) sorted with its repeats replaced by -1."""
    v = np.sort(values, axis=1)
    v[:, 1:][v[:, 1:] == v[:, :-1]] = -1
    return v


def gb_store_fits(config: AcceleratorConfig) -> bool:
    """Whether a STORE may write the global buffer (``dst_gb``): one PE's K0 lanes within a write beat."""
    return config.k0 <= config.gb_bus_bytes


def gb_holds_tensors(config: AcceleratorConfig) -> bool:
    """Whether a program may keep a tensor in the global buffer for LOAD_INPs to gather: its banks
    hold whole C0 rows only on a bus of at least C0 bytes a cycle (a narrower one no RTL builds,
    ``hw.config_file.rtl_support``), and STOREs write it there only if K0 fits a write beat
    (``gb_store_fits``).  Otherwise every tensor goes through DRAM."""
    return config.gb_bus_bytes >= config.c0 and gb_store_fits(config)


def gb_resident_pitch(channels: int, config: AcceleratorConfig) -> int:
    """Bytes per pixel of a tensor a STORE (``dst_gb``) keeps in the global buffer for the next
    layers' LOAD_INPs: its channels in whole C0 rows, and one row more while the pixel's row count
    shares a factor above ``B / (G/C0)`` with the ``B`` banks.  Then the ``G/C0`` rows of a beat
    inside one window line (one channel block, stride 1), ``k`` pixels apart, fall in distinct
    banks (``load_inp_gb_conflict``): a pitch of a multiple of ``4 C0`` would put every beat's
    rows in two banks."""
    nbank, _, _ = gb_banks(config)
    limit = nbank // (config.gb_bus_bytes // config.c0)
    rows = -(-channels // config.c0)
    while math.gcd(rows, nbank) > limit:
        rows += 1
    return rows * config.c0


def gb_resident_align(config: AcceleratorConfig) -> int:
    """The alignment of a tensor kept in the global buffer: one row of every bank (``2 G`` bytes),
    so its bank conflicts are those of the same tensor at address 0."""
    nbank, width, _ = gb_banks(config)
    return nbank * width


def gemm_in_h(f):
    """The rows of input a GEMM's tile window spans: ``(out_h - 1) * stride + kh``; a channel
    block's plane in the input buffer is ``gemm_in_h * in_w`` rows."""
    return (f["out_h"] - 1) * f["stride"] + f["kh"]


def gemm_input_terms(f, hold=_same) -> dict:
    """The last input-buffer row a GEMM reads (its tile's window, every channel block) is
    ``in_rest + in_rows``, ``in_rows = in_h * cblk_w``: row ``(out_w - 1) * stride + kw - 1`` of
    the window's last line, ``(n_cblk * in_h - 1) * in_w`` rows past ``inp_addr``.  ``hold``:
    see :func:`legality_terms`."""
    return {"in_rows": hold(gemm_in_h(f), "in_h") * hold(f["n_cblk"] * f["in_w"], "cblk_w"),
            "in_rest": f["inp_addr"] - f["in_w"] + (f["out_w"] - 1) * f["stride"] + f["kw"] - 1}


def load_inp_rows(f, hold=_same):
    """The input-buffer rows a LOAD_INP writes: its channel blocks of its window's pixels.
    ``hold``: see :func:`legality_terms`."""
    return hold(f["n_cblk"] * f["win_h"], "cblk_h") * f["win_w"]


def load_inp_rows_bound(cfg: AcceleratorConfig) -> int:
    """The most rows (:func:`load_inp_rows`) of a LOAD_INP that :func:`legality` lets run: it
    writes them into the input buffer.  The units hold a running LOAD_INP's rows in the bits of
    this bound (the low bits of the product, a far shallower multiplier than the fields' 36
    bits), as every LOAD_INP that reaches a unit passed the dispatcher's check."""
    return cfg.input_rows


def gemm_steps_bound(cfg: AcceleratorConfig) -> int:
    """The most steps (:func:`gemm_steps`) of a GEMM that :func:`legality` lets run, with pixels or
    without (a GEMM of no pixels still takes its steps' cycles): each reads a weight-buffer row.
    The compute unit counts a GEMM's steps in the bits of this bound (the fields' product has 28)."""
    return cfg.weight_rows


#: The instructions that name a set of PEs (``pe_first``, ``pe_count``, ``pe_step``): the loads and STORE.
PE_SET_OPS = tuple(o for o in Op if "pe_first" in FIELD_BITS[o])


def legality_terms(op: Op, f, hold=_same) -> dict:
    """The products and sums :func:`legality` compares, each of fields only.  The RTL's
    dispatcher forms them in two stages and registers them a stage before it compares them
    (``DECODE_STAGES``): ``hold(value, name)`` is a product of two fields that its first stage
    registers for its second (the simulator's holds nothing), so no stage multiplies more than
    two values (products of products, sums and comparisons in one cycle were the deepest path
    of the design: 119 logic levels on E; a product of three fields alone 52 on small)."""
    # a PE set's last PE, held: pe_set_bad (and STORE's alias rule) compares it, multiplies nothing
    pe_set = {"last_pe": hold(pe_set_last(f), "last_pe")} if op in PE_SET_OPS else {}
    if op == Op.LOAD_INP:
        return {"rows": load_inp_rows(f, hold), **pe_set}
    if op == Op.GEMM:
        return {"npix": f["out_h"] * f["out_w"], "steps": gemm_steps(f, hold), **gemm_input_terms(f, hold)}
    if op == Op.STORE:
        return {"npix": f["out_h"] * f["out_w"], "gb_span": hold(f["t_h"] * f["t_w"], "gb_pixels") * f["k_pitch"],
                "first_k": hold(f["pe_first"] * f["k_step"], "first_k"), **pe_set}
    return pe_set


_PE_SET_TEXT = "PE set pe_first {pe_first} pe_count {pe_count} pe_step {pe_step} ({cfg.num_pe} PEs)"
_ACC_TEXT = "accumulator entries {acc_addr} + {out_h}x{out_w} (depth {cfg.accum_depth})"


def legality(op: Op, f, cfg: AcceleratorConfig, terms: dict | None = None) -> list[tuple[object, str]]:
    """The conditions under which an instruction leaves the configuration, each with a template
    of its description (``str.format`` with the fields, ``cfg`` and ``dw_max``): ``check_insn``
    raises on the first that holds, the RTL's dispatcher raises ``ErrorCode.RANGE`` on their OR.
    Evaluates on integers and on Amaranth values (``hw.expr``); ``terms`` are the products
    (:func:`legality_terms`, computed here when not given)."""
    t = legality_terms(op, f) if terms is None else terms
    if op in PE_SET_OPS:
        pe_set = pe_set_bad(f, cfg.num_pe, t["last_pe"])
    if op == Op.LOAD_INP:
        return [(pe_set, _PE_SET_TEXT),
                (f["dst_addr"] + t["rows"] > cfg.input_rows,
                 "input-buffer rows {dst_addr} + {n_cblk}x{win_h}x{win_w} (depth {cfg.input_rows})"),
                (f["t_c"] == 0, "t_c 0: a tensor of no channels"),
                (load_inp_gb_unaligned(f, cfg), "a gather from the global buffer not of whole words: src_addr "
                 "{src_addr}, t_c {t_c} and c_base {c_base} must be multiples of C0 = {cfg.c0}, unfolded (fold "
                 "{fold_kh}x{fold_kw})")]
    if op == Op.LOAD_WGT:
        return [(pe_set, _PE_SET_TEXT),
                (f["dst_addr"] + f["rows"] > cfg.weight_rows, "weight-buffer rows {dst_addr} + {rows} "
                 "(depth {cfg.weight_rows})"),
                (f["n_out"] > cfg.k0, "n_out {n_out} above K0 = {cfg.k0}")]
    if op == Op.LOAD_PARAM:
        return [(pe_set, _PE_SET_TEXT),
                (f["dst_addr"] + f["n_entries"] > sel(f["table"], TABLE_PARAM_ENTRIES, cfg.param_depth),
                 "entries {dst_addr} + {n_entries} (table {table}: depth {cfg.param_depth}, or "
                 f"{TABLE_PARAM_ENTRIES} in the table memory)")]
    if op == Op.LOAD_GB:
        return [(f["dst_addr"] + f["n_bytes"] > cfg.global_buf_bytes,
                 "global-buffer bytes {dst_addr} + {n_bytes} (size {cfg.global_buf_bytes})")]
    if op == Op.GEMM:
        npix, steps = t["npix"], t["steps"]
        work = (steps != 0) & (npix != 0)
        return [(f["acc_addr"] + npix > cfg.accum_depth, _ACC_TEXT),
                # the last input row (gemm_input_terms) at or past the buffer's end; the
                # product compared with what is left of it, not added to the rest first
                (work & (t["in_rows"] >= cfg.input_rows - t["in_rest"]),
                 "input-buffer rows (depth {cfg.input_rows})"),
                # every GEMM with steps, pixels or not: the compute unit counts them (gemm_steps_bound)
                ((steps != 0) & (f["wgt_addr"] + steps > cfg.weight_rows), "weight-buffer rows (depth {cfg.weight_rows})"),
                (f["dw"] & ((f["kw"] == 0) | (f["kw"] > dw_gather_max(cfg))),
                 "depthwise gather of kw = {kw} columns (needs 1 <= kw <= {dw_max}: min(G/C0, C0) input "
                 "banks and lanes, none when K0 > C0; here K0 {cfg.k0}, C0 {cfg.c0})")]
    if op == Op.STORE:
        return _store_legality(f, cfg, t, pe_set)
    return []


def _store_legality(f, cfg: AcceleratorConfig, t: dict, pe_set) -> list:
    """``legality`` of a STORE (``pe_set``: ``pe_set_bad`` of its fields)."""
    return [(pe_set | (f["pe_k"] == 0), _PE_SET_TEXT + " or pe_k {pe_k}"),
            (f["k_per_pe"] > cfg.k0, "k_per_pe {k_per_pe} above K0 = {cfg.k0}"),
            (f["param_addr"] + f["k_per_pe"] > cfg.param_depth,
             "parameter entries {param_addr} + {k_per_pe} (depth {cfg.param_depth})"),
            (f["acc_addr"] + t["npix"] > cfg.accum_depth, _ACC_TEXT),
            (f["act"] > max(Act), "act {act} (valid: " + ", ".join(f"{a.value}={a.name}" for a in Act) + ")"),
            *_store_alias_legality(f, t),
            *_store_gb_legality(f, cfg, t)]


def _store_alias_legality(f, t: dict) -> list:
    """No two writes of one STORE to the same byte: the simulator writes its PEs one after
    another, the RTL's at once, so which write wins would be undefined.  The channels it writes
    lie within a pixel's pitch, and columns' channel ranges (``k_base + col * k_step``,
    ``k_per_pe`` wide) do not overlap; row groups never do.  The written channels are below
    ``t_k`` and from ``k_base`` on, or from ``pe_first``'s column's first when every member is in
    row group 0 (PE ``p < pe_k`` is column ``p``): a block of columns not from column 0, whose
    STORE moves its address down rather than take a negative ``k_base`` (``mapper.lower``)."""
    # both sums beside the choice, not after it: with the product of pe_set_last before them they
    # were the dispatcher's deepest path (62 levels on small against its MAC's 48)
    end = f["k_base"] + f["k_pitch"]
    wide = sel(t["last_pe"] < f["pe_k"], f["t_k"] > end + t["first_k"], f["t_k"] > end)
    return [(wide, "channels from k_base {k_base} (column of PE {pe_first}: k_step "
             "{k_step}) to t_k {t_k} wider than k_pitch {k_pitch} (writes into the next pixel's bytes)"),
            ((f["pe_k"] > 1) & (f["k_step"] < f["k_per_pe"]), "k_step {k_step} below k_per_pe {k_per_pe} with pe_k "
             "{pe_k} (columns writing the same channels)")]


def _store_gb_legality(f, cfg: AcceleratorConfig, t: dict) -> list:
    """A STORE into the global buffer: its whole tensor (``t_h x t_w`` pixels of ``k_pitch``
    bytes, a pixel's ``t_k`` channels within its pitch) inside the buffer; one PE's K0 lanes
    within a write beat of ``gb_bus_bytes``."""
    gb = f["dst_gb"]
    return [(gb & ((f["t_k"] > f["k_pitch"]) | (f["dst_addr"] + t["gb_span"] > cfg.global_buf_bytes)),
             "global-buffer bytes {dst_addr} + {t_h}x{t_w}x{k_pitch} with t_k {t_k} <= k_pitch "
             "(size {cfg.global_buf_bytes})"),
            (gb & (not gb_store_fits(cfg)), "dst_gb with K0 = {cfg.k0} lanes above the global buffer's "
             "write beat of {cfg.gb_bus_bytes} bytes")]


def gb_write_claims(op, dst_gb):
    """(a LOAD_GB, a STORE into the global buffer): the two users of the buffer's one write port
    (an SRAM macro's 1R1W: the read port is LOAD_INP's).  The port is not arbitrated cycle by
    cycle: a stream separates the two by a FENCE (after which every earlier instruction is
    done), so they never run together; one claimed after the other since the last FENCE is a
    TOKEN error at its dispatch (``schedule``, the RTL's dispatcher).  On integers or Amaranth
    values (``op`` the opcode, ``dst_gb`` the STORE's field of the word)."""
    return op == Op.LOAD_GB, (op == Op.STORE) & dst_gb


def check_insn(insn: Insn, cfg: AcceleratorConfig, offset: int) -> None:
    """Refuse an instruction that leaves the configuration (``legality``): StreamError with
    ``ErrorCode.RANGE``, as the RTL raises."""
    for bad, what in legality(insn.op, insn.f, cfg):
        if bad:
            raise StreamError(f"{insn.op.name} at byte offset {offset}: {what.format(**insn.f, cfg=cfg, dw_max=dw_gather_max(cfg))} outside "
                              f"the configuration {cfg.name}", ErrorCode.RANGE, offset // INSN_BYTES)


def load_inp_gb_unaligned(f, cfg: AcceleratorConfig):
    """Whether a LOAD_INP from the global buffer gathers other than whole C0-byte words: folded,
    or its tensor's address, pixel pitch or first channel not a multiple of C0.  The buffer's
    read port hands each lane the byte at the lane's own position in a word (a bank multiplexer
    per lane, not a crossbar from every byte of every bank: ``hw/rtl/global_buffer.py``), so such
    a gather is refused (RANGE).  On integers or Amaranth values (C0 is a power of two)."""
    return f["src_gb"] & (load_inp_folded(f) | (((f["src_addr"] | f["t_c"] | f["c_base"]) & (cfg.c0 - 1)) != 0))


def load_inp_folded(f):
    """Whether a LOAD_INP is folded (im2col): a kernel of more than one tap (0 counts as 1)."""
    return (f["fold_kh"] > 1) | (f["fold_kw"] > 1)


def load_terms(op: Op, f, cfg: AcceleratorConfig, rows=None):
    """(bus beats, DRAM bytes, first-data latency, setup cycles, lag) of a load: after its setup
    the unit moves one beat of the bus a cycle and ``dram_bytes_per_cycle`` from DRAM, and its DRAM
    balance takes a beat's bytes ``lag`` cycles after the beat, so it is busy
    ``setup + max(1, beats + lag, ceil(bytes / bw))`` cycles.  A LOAD_INP's DRAM
    bytes are the in-bounds lanes its address generator finds (``load_inp_dram_bytes``; None
    here), counted ``INP_COUNT_LAG`` cycles after their beat, none from the global buffer (lag 0);
    a LOAD_INP's setup is ``INP_START + LANE_STAGE``, after ``FOLD_SETUP`` if it is folded.  The other loads'
    bytes are known at their start (lag 0).  ``rows``: a LOAD_INP's :func:`load_inp_rows`, when
    the caller holds them already (the RTL: in the bits of :func:`load_inp_rows_bound`)."""
    bus, c0 = cfg.gb_bus_bytes, cfg.c0
    if op == Op.LOAD_INP:
        rows = load_inp_rows(f) if rows is None else rows
        return (cdiv(rows * c0, bus), None, sel(f["src_gb"], GB_LATENCY, cfg.dram_latency),
                sel(load_inp_folded(f), FOLD_SETUP, 0) + INP_START + LANE_STAGE, sel(f["src_gb"], 0, INP_COUNT_LAG))
    if op == Op.LOAD_WGT:
        outs, chans = load_wgt_extent(f, cfg)
        return cdiv(f["rows"] * c0 * cfg.k0, bus), outs * chans, cfg.dram_latency, 0, 0
    if op == Op.LOAD_PARAM:
        n = f["n_entries"] * PARAM_ENTRY_BYTES
        return cdiv(n, param_beat_bytes(cfg)), n, cfg.dram_latency, 0, 0
    if op == Op.LOAD_GB:
        return cdiv(f["n_bytes"], bus), f["n_bytes"], cfg.dram_latency, 0, 0
    raise ValueError(f"{op.name} is no load")


def _min(a, b):
    return a if is_int(a, b) and a <= b else b if is_int(a, b) else vmin(a, b)


def gemm_period(f):
    """Cycles of one GEMM step: a pixel a cycle, at least GEMM_MIN_PIXELS."""
    return vmax(f["out_h"] * f["out_w"], GEMM_MIN_PIXELS)


def gemm_cycles(f):
    """A GEMM's cycles (busy and until its results are in the accumulators)."""
    return gemm_steps(f) * gemm_period(f) + GEMM_PIPELINE


def vec_walk_rows(lanes: int, walk_rows: int | None = None) -> int:
    """Rows handed out a cycle on ``lanes`` row lanes: the most, up to ``walk_rows``, that divide
    ``lanes`` (every walk cycle then hands out as many; every preset's ``vector_lanes`` is a power
    of two).  ``walk_rows`` defaults to the contract's: ``VEC_WALK_ROWS`` on ``VEC_WIDE_WALK_LANES``
    lanes or more, else one."""
    if walk_rows is None:
        walk_rows = VEC_WALK_ROWS if lanes >= VEC_WIDE_WALK_LANES else 1
    if not isinstance(walk_rows, int) or isinstance(walk_rows, bool) or walk_rows < 1:
        raise ValueError(f"walk_rows must be a positive integer, not {walk_rows!r}")
    return max(r for r in range(1, min(walk_rows, lanes) + 1) if lanes % r == 0)


def vec_first_walk(lanes: int, walk_rows: int | None = None) -> int:
    """Cycles before the first group of rows starts: its walk, and ``VEC_WALK_SETUP`` before it
    when the walker hands out several rows a cycle."""
    rows = vec_walk_rows(lanes, walk_rows)
    return lanes // rows + (VEC_WALK_SETUP if rows > 1 else 0)


def vec_row_cycles(f, lanes: int, hold=_same, walk_rows: int | None = None):
    """Cycles of a VEC's rows on ``lanes`` row lanes (``hw.vector.row_schedule``): the walker
    gathers the lanes' row addresses, :func:`vec_walk_rows` rows a cycle, while the lanes run the
    previous group of ``lanes`` rows in step, ``row_cycles`` each; the first group waits for its walk
    (:func:`vec_first_walk`).  The RTL passes ``hold`` to register the factors, their product by
    halves of ``per`` (``ROW_TIME_SPLIT`` bits: two narrower multipliers) and the product's sum, a
    stage each."""
    walk = lanes // vec_walk_rows(lanes, walk_rows)
    groups, per = hold(cdiv(f["rows"], lanes), "groups"), hold(vmax(f["row_cycles"], walk), "per")
    low = hold(groups * (per & ((1 << ROW_TIME_SPLIT) - 1)), "row_time_low")
    high = hold(groups * (per >> ROW_TIME_SPLIT), "row_time_high")
    return vec_first_walk(lanes, walk_rows) + hold(low + (high << ROW_TIME_SPLIT), "row_time")


def vec_lane_floor(f, lanes: int) -> float:
    """The fewest cycles a VEC's vector work can take on ``lanes`` lanes: its rows' lane cycles
    spread evenly over the row lanes (no group rounding, walk or setup), or, with ``rows`` = 0
    (fields no descriptor gives: every pass has rows, spatial ones included), its ``work`` at a
    lane per element operation.  A floor of :func:`vec_cycles`, not a time."""
    return (f["rows"] * f["row_cycles"] if f["rows"] else f["work"]) / lanes


def dram_transfer_cycles(bytes_in, bytes_out, bw):
    """Cycles to read ``bytes_in`` and write ``bytes_out`` at ``bw`` bytes a cycle each way:
    reads and writes stream at the same time (at least one cycle)."""
    return vmax(vmax(cdiv(bytes_in, bw), cdiv(bytes_out, bw)), 1)


def vec_cycles(f, cfg: AcceleratorConfig, hold=_same):
    """A VEC's cycles.  On the row lanes (``rows`` > 0, spatial passes included: an output pixel a lane,
    ``hw.vector.row_schedule``): the DRAM latency, ``VEC_SETUP``, the LUT tables (``tables``),
    then its rows (:func:`vec_row_cycles`) or its DRAM bytes at the DRAM rate, whichever takes
    longer.  With ``rows`` = 0 (fields no descriptor gives, refused as DATA when the VEC runs, but
    timed until then): the DRAM latency, then its ``work`` at ``vector_lanes`` a cycle or its DRAM
    bytes at the DRAM rate, at least ``VEC_CHECK`` (the refusal comes within the VEC's time).  The RTL passes ``hold`` to
    register each step (``VEC_TIMING_STAGES`` - 1 stages on the longest chain; the sum after them
    is the last)."""
    bw, lanes = cfg.dram_bytes_per_cycle, cfg.vector_lanes
    dram = hold(dram_transfer_cycles(f["bytes_in"], f["bytes_out"], bw), "dram")
    spatial = hold(vmax(vmax(cdiv(f["work"], lanes), dram), VEC_CHECK), "spatial")
    rows = hold(vmax(vec_row_cycles(f, lanes, hold), dram), "rows")
    return cfg.dram_latency + sel(f["rows"] == 0, spatial, VEC_SETUP + f["tables"] * VEC_TABLE_ENTRIES + rows)


def store_timing(f, nbytes, cfg: AcceleratorConfig, hold=_same):
    """(busy cycles, cycles until the writes are done) of a STORE writing ``nbytes``: its beats
    (``store_beats``: one pixel of every PE a cycle) through its pipeline
    (``store_pipeline``), or its bytes at the DRAM rate.  Posted writes: the unit is free once its last pixel is written
    (one setup cycle more than the beats and the pipeline); the DRAM latency only delays the token.  Into the global buffer (``dst_gb``) no DRAM term: the beats
    (``store_gb_lanes`` a pixel) and ``GB_WRITE_LATENCY`` after the busy time.  The RTL passes
    ``hold`` to register the pixel count (``store_beats``), the beat count and the transfer time
    (``hold(value, name)``), a stage each."""
    pixels = hold(store_beats(f, cfg, hold) + store_pipeline(f, cfg), "pixels")
    transfer = hold(vmax(pixels, sel(f["dst_gb"], 0, cdiv(nbytes, cfg.dram_bytes_per_cycle))), "transfer")
    busy = vmax(transfer, pixels + 1)
    return busy, sel(f["dst_gb"], busy + GB_WRITE_LATENCY, cfg.dram_latency + transfer)


#: Results of the pure per-instruction rules (``occupancy_and_latency``, ``check_insn`` passed,
#: ``load_inp_gb_conflict``), per configuration, by the fields' values: a mapping times the same
#: instructions again and again (a stream's GEMMs, weight and parameter loads; every tiling's
#: estimate; a transformer's repeated blocks).  Each memo is emptied when ``_MEMO_LIMIT`` entries
#: are held, and only the last ``_MEMO_CONFIGS`` configurations' are kept (a sweep's process maps
#: many configurations one after the other).
_MEMO_LIMIT = 1 << 16
_MEMO_CONFIGS = 4
_memos: dict = {}


@dataclass
class _Memos:
    timed: dict            # (op, values) -> (busy, latency)
    checked: dict          # (op, values) that check_insn passed -> (busy, latency): one lookup a schedule
    conflicts: dict        # LOAD_INP values -> (load_inp_gb_conflict,)


def _memos_of(cfg: AcceleratorConfig) -> _Memos:
    memos = _memos.get(cfg)
    if memos is None:
        if len(_memos) >= _MEMO_CONFIGS:
            del _memos[next(iter(_memos))]          # the configuration remembered first
        memos = _memos[cfg] = _Memos({}, {}, {})
    return memos


def forget_memos() -> None:
    """Empty the rules' memos (a benchmark's cold run)."""
    _memos.clear()
    _member_positions.cache_clear()


def _remember(memo, key, value=None) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    if value is None:
        memo.add(key)
    else:
        memo[key] = value


def occupancy_and_latency(insn: Insn, cfg: AcceleratorConfig) -> tuple[int, int]:
    """(cycles the unit is busy, cycles until the instruction's effects are complete)."""
    return _occupancy_and_latency_of(insn, cfg, fields_key(insn), _memos_of(cfg).timed)


def _occupancy_and_latency_of(insn: Insn, cfg: AcceleratorConfig, key, timed: dict) -> tuple[int, int]:
    """``occupancy_and_latency``, remembered in ``timed`` under ``key`` (``hw.isa.fields_key``; None: not)."""
    if key is None:
        return _occupancy_and_latency(insn, cfg)
    got = timed.get(key)
    if got is None:
        got = _occupancy_and_latency(insn, cfg)
        _remember(timed, key, got)
    return got


def _occupancy_and_latency(insn: Insn, cfg: AcceleratorConfig) -> tuple[int, int]:
    op, f = insn.op, insn.f
    if op in (Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM, Op.LOAD_GB):
        beats, nbytes, first, setup, lag = load_terms(op, f, cfg)
        if nbytes is None:
            nbytes = 0 if f["src_gb"] else load_inp_dram_bytes(insn, cfg)
        busy = setup + max(1, beats + lag, _cdiv(nbytes, cfg.dram_bytes_per_cycle))
        return busy, first + busy
    if op == Op.GEMM:
        cycles = gemm_cycles(f)
        return cycles, cycles
    if op == Op.VEC:
        cycles = vec_cycles(f, cfg)
        return cycles, cycles
    if op == Op.STORE:
        return store_timing(f, store_bytes(insn, cfg), cfg)
    return 1, 1   # NOP, FENCE, END: handled by the dispatcher


def latency(insn: Insn, cfg: AcceleratorConfig) -> int:
    return occupancy_and_latency(insn, cfg)[1]


def occupancy(insn: Insn, cfg: AcceleratorConfig) -> int:
    return occupancy_and_latency(insn, cfg)[0]


@dataclass
class Schedule:
    """Per-instruction dispatch, start and end cycles of a stream, and its total."""

    dispatch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    total_cycles: int


#: The token FIFO each flag of an instruction pops or pushes, per queue (None: the queue has no
#: such neighbour, and setting the flag is a TOKEN error).  FIFO "l2c" carries load-to-compute
#: tokens, "c2l" compute-to-load, and so on.  The queues form a ring: STORE's next is LOAD ("s2l"),
#: so that a LOAD_INP reading global-buffer rows a STORE wrote (or a LOAD_PARAM overwriting entries
#: a STORE still reads) waits for that STORE alone, not for a FENCE.  LOAD does not push to STORE (``push_prev``) nor STORE pop from LOAD (``pop_next``).
TOKEN_LINKS = {
    Queue.LOAD: {"pop_prev": "s2l", "pop_next": "c2l", "push_prev": None, "push_next": "l2c"},
    Queue.COMPUTE: {"pop_prev": "l2c", "pop_next": "s2c", "push_prev": "c2l", "push_next": "c2s"},
    Queue.STORE: {"pop_prev": "c2s", "pop_next": None, "push_prev": "s2c", "push_next": "s2l"},
}
#: Every FIFO once, in the order its pusher's flags name it (the RTL's FIFOs and the dispatcher's
#: counters are built in this order; an error's leftover tokens are listed in it).
TOKEN_FIFOS = tuple(fifo for links in TOKEN_LINKS.values() for flag, fifo in links.items()
                    if fifo is not None and flag.startswith("push"))


def token_links(q: Queue, flags) -> tuple[dict, dict, list]:
    """What the dependency flags of an instruction of queue ``q`` do (``TOKEN_LINKS``): per token
    FIFO its queue reaches, whether it pops it and whether it pushes it, and (flag, whether set)
    for each flag that names no neighbour (setting one is a TOKEN error).  ``flags[name]`` for each
    of ``hw.isa.DEP_FLAGS``: on integers or Amaranth values (an Insn's flags, a decoded word's)."""
    pops, pushes, unlinked = {}, {}, []
    for flag, fifo in TOKEN_LINKS[q].items():
        if fifo is None:
            unlinked.append((flag, flags[flag]))
        else:
            (pops if flag.startswith("pop") else pushes)[fifo] = flags[flag]
    return pops, pushes, unlinked


def token_link(earlier: Queue, later: Queue) -> Optional[tuple[str, str]]:
    """The flags by which an instruction of unit ``earlier`` orders one of unit ``later``: the
    first's push and the second's pop of one FIFO (``TOKEN_LINKS``); None when none links them."""
    for push, fifo in TOKEN_LINKS[earlier].items():
        for pop, other in TOKEN_LINKS[later].items():
            if fifo is not None and fifo == other and push.startswith("push") and pop.startswith("pop"):
                return push, pop
    return None


def token_dispatch(counts, writers, pops, pushes, unlinked, claims, is_end, clears):
    """The dispatcher's token rule for one instruction, in program order: per token FIFO its tokens
    outstanding after it, the global buffer's write-port claims after it, and its TOKEN refusals
    as (condition, what) (``schedule`` names the first that holds; the RTL's dispatcher ORs them).

    ``counts``: per FIFO of ``TOKEN_FIFOS``, the tokens outstanding before it (pushes minus pops);
    ``pops``, ``pushes``: per FIFO, whether it pops / pushes it (``token_links``; one left out: no);
    ``unlinked``: it sets a flag naming no neighbour; ``claims``: its ``gb_write_claims``;
    ``writers``: the claims since the last FENCE; ``is_end``: it is END, which finds every FIFO
    empty; ``clears``: it is FENCE or END (every earlier instruction is done: the claims start
    over).  On integers or Amaranth values (the schedule's counts, the dispatcher's registers)."""
    after = {n: counts[n] + pushes.get(n, 0) - pops.get(n, 0) for n in TOKEN_FIFOS}
    held = tuple(sel(clears, 0, w | c) for w, c in zip(writers, claims))
    port = "writes the global buffer while a {} may still write it: no FENCE between them"
    refusals = [(unlinked, "sets {unlinked} but the {queue} queue has no such neighbour"),
                *((pops.get(n, 0) & (counts[n] == 0), f"pops a {n} token that no earlier instruction pushed")
                  for n in TOKEN_FIFOS),
                *((after[n] > TOKEN_LIMIT, f"leaves more than {TOKEN_LIMIT} {n} tokens outstanding") for n in TOKEN_FIFOS),
                *((is_end & (counts[n] != 0), "with unconsumed tokens {left}") for n in TOKEN_FIFOS),
                (claims[0] & writers[1], port.format("STORE")), (claims[1] & writers[0], port.format("LOAD_GB"))]
    return after, held, refusals


class _Links(NamedTuple):
    """The token FIFOs an instruction's flags pop and push (``token_links``), for its timing."""
    pops: tuple
    pushes: tuple


@lru_cache(maxsize=128)
def _links_of(q: Queue, flags: tuple) -> _Links:
    """``_Links`` of an instruction of queue ``q`` whose flags (``hw.isa.DEP_FLAGS`` order) are ``flags``:
    a handful of combinations, which a schedule asks for per instruction."""
    pops, pushes, _ = token_links(q, dict(zip(DEP_FLAGS, flags)))
    return _Links(tuple(n for n, v in pops.items() if v), tuple(n for n, v in pushes.items() if v))


def _flags(insn: Insn) -> tuple:
    return insn.pop_prev, insn.pop_next, insn.push_prev, insn.push_next


#: The dispatcher's token state before the first instruction (``token_dispatch``): no token
#: outstanding per FIFO (``TOKEN_FIFOS`` order), no write-port claim.
_NO_TOKENS = ((0,) * len(TOKEN_FIFOS), (False, False))


def _token_rule(op: Op, flags: tuple, dst_gb: int, state: tuple):
    """``token_dispatch`` on integers, for an instruction with opcode ``op``, flags ``flags`` and
    STORE field ``dst_gb``, in token state ``state`` (the dispatcher's own ops pop and push nothing)."""
    q = QUEUE_OF[op]
    pops, pushes, unlinked = ({}, {}, []) if q == Queue.DISPATCH else token_links(q, dict(zip(DEP_FLAGS, flags)))
    counts, writers = state
    return token_dispatch(dict(zip(TOKEN_FIFOS, counts)), writers, pops, pushes, any_of(0, *(v for _, v in unlinked)),
                          gb_write_claims(op, dst_gb), op == Op.END, op == Op.FENCE or op == Op.END)


@lru_cache(maxsize=1 << 14)
def _tokens_after(op: Op, flags: tuple, dst_gb: int, state: tuple) -> tuple | None:
    """The token state after an instruction (``_token_rule``), None when it is refused: a few
    states and instructions recur, which a schedule asks for per instruction."""
    after, held, refusals = _token_rule(op, flags, dst_gb, state)
    if any_of(*(bad for bad, _ in refusals)):
        return None
    return tuple(after[n] for n in TOKEN_FIFOS), held


def _token_refusal(insn: Insn, state: tuple, off: int, i: int) -> StreamError:
    """The TOKEN error of ``insn``, refused in token state ``state``: the first refusal that holds."""
    q, flags = QUEUE_OF[insn.op], _flags(insn)
    _, _, refusals = _token_rule(insn.op, flags, insn.f.get("dst_gb", 0), state)
    unlinked = [] if q == Queue.DISPATCH else token_links(q, dict(zip(DEP_FLAGS, flags)))[2]
    what = next(what for bad, what in refusals if bad).format(
        unlinked=next((flag for flag, v in unlinked if v), None), queue=q.name,
        left={n: c for n, c in zip(TOKEN_FIFOS, state[0]) if c})
    return StreamError(f"{insn.op.name} at byte offset {off} {what}", ErrorCode.TOKEN, i)


class _Tokens:
    """The token FIFOs' timing: each token's ready cycle in push order (``token_dispatch``
    refuses a pop of an empty one before ``pop`` looks)."""

    def __init__(self):
        self.ready = {name: [] for name in TOKEN_FIFOS}
        self.head = dict.fromkeys(TOKEN_FIFOS, 0)

    def pop(self, links: _Links, t: int) -> int:
        """The cycle the instruction may start, no earlier than ``t``, once its tokens are ready."""
        for name in links.pops:
            head = self.head[name]
            ready = self.ready[name][head]
            if ready > t:
                t = ready
            self.head[name] = head + 1
        return t

    def push(self, links: _Links, ready: int) -> None:
        for name in links.pushes:
            self.ready[name].append(ready)


def schedule(insns: list[Insn], cfg: AcceleratorConfig, *, require_end: bool = True) -> Schedule:
    """Cycle-exact timing of a stream under the rules in this module's docstring.

    ``require_end=False`` times a stream prefix (no END needed; ``total_cycles`` is then the
    last end, 0 when empty).

    Raises
    ------
    StreamError
        An instruction outside the configuration (``check_insn``), a token popped that no
        earlier instruction pushed, a flag that names a queue the unit has no link to, tokens
        left over at END, or a missing END.
    """
    run = Scheduler(cfg)
    run.extend(insns)
    return run.schedule(require_end=require_end)


class Scheduler:
    """``schedule`` a piece at a time: ``extend`` times the next instructions from the state the
    earlier ones left, ``mark`` and ``rewind`` return to a point (an instruction's timing depends
    only on those before it, so ``mapper.stitch`` times each try of a join past a fixed prefix)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg, self._memos = cfg, _memos_of(cfg)
        self.dispatch, self.start, self.end = [], [], []
        self.tokens, self.token_state = _Tokens(), _NO_TOKENS   # ready cycles; counts and claims
        self.unit_free = [0, 0, 0]                  # per queue (LOAD, COMPUTE, STORE)
        self.history = ([], [], [])                 # start cycles per queue, for its occupancy
        self.last_end, self.fetch, self.ended = 0, DECODE_STAGES, False

    def mark(self) -> tuple:
        """The state after the instructions timed so far, for ``rewind``."""
        t = self.tokens
        return (len(self.start), dict(t.head), {n: len(r) for n, r in t.ready.items()}, self.token_state,
                tuple(self.unit_free), tuple(len(h) for h in self.history), self.last_end, self.fetch, self.ended)

    def rewind(self, mark: tuple) -> None:
        """Back to ``mark``, forgetting every instruction timed after it."""
        n, head, ready, self.token_state, free, hist, self.last_end, self.fetch, self.ended = mark
        for cycles in (self.dispatch, self.start, self.end):
            del cycles[n:]
        self.tokens.head = dict(head)
        for name, k in ready.items():
            del self.tokens.ready[name][k:]
        self.unit_free = list(free)
        for h, k in zip(self.history, hist):
            del h[k:]

    def schedule(self, *, require_end: bool = True) -> Schedule:
        """The ``Schedule`` of the instructions timed so far (``schedule``'s ``require_end``)."""
        if not self.ended and require_end:
            n = len(self.start)
            raise StreamError(f"stream of {n} instructions has no END: the accelerator would run on into the word "
                              f"after it", ErrorCode.OPCODE, n)
        total = self.end[-1] if self.ended else max(self.end, default=0)
        return Schedule(*(np.array(c, dtype=np.int64) for c in (self.dispatch, self.start, self.end)), total)

    def extend(self, insns: list[Insn]) -> None:
        """Time ``insns`` after those timed so far, up to an END (the accelerator stops there)."""
        if self.ended:
            return
        dispatch, start, end, history, unit_free = self.dispatch, self.start, self.end, self.history, self.unit_free
        tokens, token_state, last_end, fetch = self.tokens, self.token_state, self.last_end, self.fetch
        try:
            for i, insn in enumerate(insns, len(start)):
                op = insn.op
                q = QUEUE_OF[op]
                if q == Queue.DISPATCH:             # NOP, FENCE, END: the dispatcher's own
                    if op == Op.FENCE or op == Op.END:
                        fetch = max(fetch, last_end)
                        token_state = _dispatch_tokens(insn, token_state, i)
                    dispatch.append(fetch)
                    start.append(fetch)
                    end.append(fetch + 1)
                    fetch += 1
                    if op == Op.END:                # the accelerator stops here: the rest is not run
                        self.ended = True
                        return
                    continue
                busy, lat = self._checked_timing(insn, i)
                flags = _flags(insn)
                links = _links_of(q, flags)
                token_state = _dispatch_tokens(insn, token_state, i, flags)
                hist = history[q]
                enter = fetch if len(hist) < QUEUE_DEPTH else max(fetch, hist[-QUEUE_DEPTH])
                dispatch.append(enter)
                fetch = enter + 1
                t = tokens.pop(links, max(fetch, unit_free[q]))
                start.append(t)
                end.append(t + lat)
                unit_free[q] = t + busy
                hist.append(t)
                if t + lat > last_end:
                    last_end = t + lat
                tokens.push(links, t + lat)
        finally:
            self.token_state, self.last_end, self.fetch = token_state, last_end, fetch

    def _checked_timing(self, insn: Insn, i: int) -> tuple[int, int]:
        """(occupancy, latency) of ``insn``, the ``i``-th instruction, checked against the
        configuration (``check_insn``) the first time its fields are seen."""
        key = fields_key(insn)
        timing = self._memos.checked.get(key) if key is not None else None     # the same fields pass again
        if timing is None:
            check_insn(insn, self.cfg, i * INSN_BYTES)
            timing = _occupancy_and_latency_of(insn, self.cfg, key, self._memos.timed)
            if key is not None:
                _remember(self._memos.checked, key, timing)
        return timing


def _dispatch_tokens(insn: Insn, state: tuple, i: int, flags: tuple = (0, 0, 0, 0)) -> tuple:
    """The token state after dispatching ``insn``, the ``i``-th instruction (``_tokens_after``;
    ``flags``: its own, which the dispatcher's own ops ignore); a TOKEN StreamError if refused."""
    after = _tokens_after(insn.op, flags, insn.f.get("dst_gb", 0), state)
    if after is None:
        raise _token_refusal(insn, state, i * INSN_BYTES, i)
    return after


def cycles_floor(insns: list[Insn], cfg: AcceleratorConfig) -> int:
    """A floor on the last end of ``schedule(insns, cfg)`` (its ``total_cycles`` without END's,
    less ``RUN_OVERHEAD``): the schedule without its dispatcher (one instruction fetched a cycle
    from ``DECODE_STAGES`` on, the queues' depth, a FENCE's wait), each instruction starting as
    soon as its unit is free and the tokens it pops are ready.  Each start is a maximum of which
    this drops terms, and the dispatcher starts nothing before ``DECODE_STAGES + 1``, so every
    start is at least that much earlier here.  Cheap (the memoised occupancies, no checks): a
    search skips the exact schedule of a candidate whose floor is above its best.  A token popped
    that no earlier instruction pushed (which ``schedule`` refuses) is not waited for."""
    timed = _memos_of(cfg).timed
    free = [0, 0, 0]
    ready: dict[str, list[int]] = {name: [] for name in TOKEN_FIFOS}
    head = dict.fromkeys(TOKEN_FIFOS, 0)
    last = 0
    for insn in insns:
        q = QUEUE_OF[insn.op]
        if q == Queue.DISPATCH:
            continue
        busy, lat = _occupancy_and_latency_of(insn, cfg, fields_key(insn), timed)
        links, t = _links_of(q, _flags(insn)), free[q]
        for name in links.pops:
            if head[name] < len(ready[name]):
                t = max(t, ready[name][head[name]])
                head[name] += 1
        free[q] = t + busy
        last = max(last, t + lat)
        for name in links.pushes:
            ready[name].append(t + lat)
    return last


def decode_until_end(data: bytes) -> tuple[list[Insn], StreamError | None]:
    """The instructions of an encoded stream up to its END, as the accelerator fetches them,
    and the decode error (OPCODE, RESERVED) of the first word that is none, if any."""
    insns = []
    for off in range(0, len(data), INSN_BYTES):
        try:
            insn = decode(data, off)
        except StreamError as e:
            return insns, e
        insns.append(insn)
        if insn.op == Op.END:
            break
    return insns, None


def schedule_encoded(data: bytes, cfg: AcceleratorConfig) -> tuple[list[Insn], Schedule]:
    """Decode and time an encoded stream, refusing it as the RTL does: the first instruction in
    program order that is malformed (a word that is none, a range, a token rule) raises its
    StreamError; a stream without END raises OPCODE at the word after its last."""
    insns, bad_word = decode_until_end(data)
    try:
        return insns, schedule(insns, cfg)
    except StreamError as e:
        if bad_word is not None and e.code == ErrorCode.OPCODE and e.index == len(insns):
            raise bad_word from None        # every instruction before the bad word was fine
        raise
