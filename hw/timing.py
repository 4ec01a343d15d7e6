"""Timing semantics of the ISA: the contract between the fast simulator and the RTL.

Every instruction's latency is a deterministic function of its fields and the
configuration (``latency``).  The accelerator fetches one instruction per cycle
and dispatches it, in order, into the queue of its unit (LOAD, COMPUTE, STORE;
``QUEUE_DEPTH`` entries each).  A unit starts an instruction one cycle after it
entered the queue at the earliest, when the unit is free and when every token
the instruction pops is available.  Tokens travel between neighbouring queues
(LOAD <-> COMPUTE <-> STORE) and become available when the pushing instruction
ends.  The load unit is pipelined: it starts the next transfer while the data
of the previous one is still in flight (``occupancy`` < ``latency``); the store unit
posts its writes the same way.

``schedule`` runs a stream through these rules in one pass.  It requires every
popped token to be pushed by an earlier instruction of the stream, which the
mapper guarantees; a stream that violates it is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import AcceleratorConfig
from .isa import INSN_BYTES, Act, ErrorCode, Insn, Op, Queue, StreamError
from .numerics import PARAM_ENTRY_BYTES, TABLE_BYTES

__all__ = ["latency", "occupancy", "schedule", "Schedule", "load_inp_dram_bytes", "store_bytes", "check_insn",
           "gb_banks", "load_inp_gb_conflict", "gemm_steps", "dw_gather_max", "dw_gather_ok", "load_inp_lanes",
           "QUEUE_DEPTH", "TOKEN_LIMIT", "GEMM_PIPELINE", "GEMM_MIN_PIXELS", "POST_PIPELINE", "GB_LATENCY",
           "EPILOGUE_PASSES", "store_passes"]

QUEUE_DEPTH = 8          # instruction-queue entries per unit
TOKEN_LIMIT = 8          # tokens a FIFO may hold, counted in program order (pushes minus pops)
GEMM_PIPELINE = 4        # operand read, multiply, adder tree, accumulate
GEMM_MIN_PIXELS = 4      # an accumulator entry is re-read at least this many cycles after it was written
POST_PIPELINE = 4        # bias, multiply, round/shift, saturate
GB_LATENCY = 2           # global-buffer read latency
#: Extra post-processing passes of a STORE's softmax epilogue: the first pass (requantisation)
#: also finds each row's maximum; one pass looks up the exponentials and sums them, one normalises.
EPILOGUE_PASSES = 2


def store_passes(f) -> object:
    """Passes of a STORE over its pixels (1, or 3 with a softmax epilogue); ``f`` holds the fields
    as integers or as Amaranth values."""
    return 1 + EPILOGUE_PASSES * (f["ep_row"] != 0)


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
    if fkh == fkw == 1:      # a plain window (the common case): one tap
        nc = max(0, min(c_hi, tc) - max(c_lo, 0))
        return nc and nc * _count_valid(f["y0"], f["win_h"], fs, f["t_h"]) * _count_valid(f["x0"], f["win_w"], fs, f["t_w"])
    total = 0
    for r in range(fkh):
        ny = _count_valid(f["y0"] + r, f["win_h"], fs, f["t_h"])
        if not ny:
            continue
        for s in range(fkw):
            base = (r * fkw + s) * tc
            nc = max(0, min(c_hi, base + tc) - max(c_lo, base))
            if nc:
                total += ny * _count_valid(f["x0"] + s, f["win_w"], fs, f["t_w"]) * nc
    return total


def store_bytes(insn: Insn, cfg: AcceleratorConfig) -> int:
    """Bytes a STORE writes: the in-bounds outputs of every selected PE."""
    f = insn.f
    total = 0
    for i in range(f["pe_count"]):
        p = f["pe_first"] + i * f["pe_step"]
        kc, pg = p % f["pe_k"], p // f["pe_k"]
        k0 = f["k_base"] + kc * f["k_step"]
        nk = max(0, min(f["k_per_pe"], f["t_k"] - k0))
        y0 = f["y0"] + pg * f["out_h"]
        ny = max(0, min(f["out_h"], f["t_h"] - y0))
        nx = max(0, min(f["out_w"], f["t_w"] - f["x0"]))
        total += nk * ny * nx
    return total


def gemm_steps(f: dict) -> int:
    """Weight rows (steps of one pass over the tile's pixels) of a GEMM: one per channel block,
    kernel row and kernel column, or per channel block and kernel row with ``dw``."""
    return f["n_cblk"] * f["kh"] * (1 if f["dw"] else f["kw"])


def dw_gather_max(config: AcceleratorConfig) -> int:
    """The most kernel columns a depthwise-gather GEMM (``dw = 1``) can take on ``config``:
    vector MAC j takes lane j of each of ``kw`` consecutive input rows, which the ``G/C0``
    input banks deliver in one read, on its C0 lanes; 0 when K0 > C0 (no lane j)."""
    return min(config.gb_bus_bytes // config.c0, config.c0) if config.k0 <= config.c0 else 0


def dw_gather_ok(config: AcceleratorConfig, kw: int) -> bool:
    """Whether a depthwise-gather GEMM with ``kw`` kernel columns can run on ``config``."""
    return 1 <= kw <= dw_gather_max(config)


def _pe_set_ok(f: dict, cfg: AcceleratorConfig) -> bool:
    return f["pe_count"] >= 1 and f["pe_first"] + (f["pe_count"] - 1) * f["pe_step"] < cfg.num_pe \
        and (f["pe_step"] >= 1 or f["pe_count"] == 1)


def gb_banks(config: AcceleratorConfig) -> tuple[int, int, int]:
    """(banks B = 2 G / C0, bytes per bank word = C0, words per bank)."""
    g = config.gb_bus_bytes
    banks = 2 * g // config.c0
    return banks, config.c0, config.global_buf_bytes // (2 * g)


def load_inp_lanes(fields: dict, config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(source byte address, validity) of every lane a LOAD_INP writes, shaped
    (n_cblk, win_h, win_w, C0): the gather of ``docs/isa.md`` (im2col when folded); an invalid
    lane (padding, a tap beyond the kernel) is written as zero and reads nothing."""
    f, c0 = fields, config.c0
    fkh, fkw, fs = f["fold_kh"] or 1, f["fold_kw"] or 1, f["fold_stride"] or 1
    if fkh * fkw == 1:
        return _plain_lanes(f, c0, fs)
    cb, yy, xx, lane = np.meshgrid(np.arange(f["n_cblk"]), np.arange(f["win_h"]), np.arange(f["win_w"]),
                                   np.arange(c0), indexing="ij")
    fch = f["c_base"] + cb * c0 + lane
    tap, c = fch // f["t_c"], fch % f["t_c"]
    y = f["y0"] + yy * fs + tap // fkw
    x = f["x0"] + xx * fs + tap % fkw
    valid = (tap < fkh * fkw) & (y >= 0) & (y < f["t_h"]) & (x >= 0) & (x < f["t_w"])
    return f["src_addr"] + (y * f["t_w"] + x) * f["t_c"] + c, valid


def _plain_lanes(f: dict, c0: int, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """``load_inp_lanes`` without folding: lane ``l`` of row (cb, yy, xx) is channel
    ``c_base + cb*C0 + l`` of pixel ``(y0 + yy*fs, x0 + xx*fs)``, valid below ``t_c``."""
    ch = f["c_base"] + np.arange(f["n_cblk"])[:, None] * c0 + np.arange(c0)[None, :]      # [cb, lane]
    y = f["y0"] + np.arange(f["win_h"]) * fs
    x = f["x0"] + np.arange(f["win_w"]) * fs
    pix = (y[:, None] * f["t_w"] + x[None, :]) * f["t_c"]                                 # [yy, xx]
    ok = ((y >= 0) & (y < f["t_h"]))[:, None] & ((x >= 0) & (x < f["t_w"]))[None, :]
    addr = f["src_addr"] + pix[None, :, :, None] + ch[:, None, None, :]
    valid = ok[None, :, :, None] & (ch < f["t_c"])[:, None, None, :]
    return addr, valid


def load_inp_gb_conflict(fields: dict, config: AcceleratorConfig) -> int | None:
    """The first beat of a LOAD_INP (``src_gb = 1``) whose gather has a bank conflict, or None.

    ``fields`` are the instruction's fields (``Insn.f``).  The beats are those of the load
    unit: rows in (channel block, window row, window column) order, ``G / C0`` rows per
    beat, lane addresses and validity as in ``sim.functional``.  Out-of-buffer addresses
    are not considered here (they raise ``error`` anyway).
    """
    c0 = config.c0
    nbank, width, _ = gb_banks(config)
    nb = config.gb_bus_bytes // c0
    addr, valid = load_inp_lanes(fields, config)
    row = addr // width
    n_rows = valid.size // c0
    beats = -(-n_rows // nb)
    pad = beats * nb * c0 - valid.size
    valid = np.concatenate([valid.reshape(-1), np.zeros(pad, bool)]).reshape(beats, nb * c0)
    row = np.concatenate([row.reshape(-1), np.zeros(pad, row.dtype)]).reshape(beats, nb * c0)
    for k in range(beats):
        rows = np.unique(row[k][valid[k]])
        if np.unique(rows % nbank).size != rows.size:
            return k
    return None


def check_insn(insn: Insn, cfg: AcceleratorConfig, offset: int) -> None:
    """Refuse an instruction whose buffer ranges or PE set leave the configuration.

    The RTL raises ``error`` (RANGE) on exactly these conditions.
    """
    op, f = insn.op, insn.f
    bad = None
    if op == Op.LOAD_INP:
        if not _pe_set_ok(f, cfg):
            bad = "PE set"
        elif f["dst_addr"] + f["n_cblk"] * f["win_h"] * f["win_w"] > cfg.input_rows:
            bad = f"input-buffer rows (depth {cfg.input_rows})"
        elif f["src_gb"] and (beat := load_inp_gb_conflict(f, cfg)) is not None:
            bad = f"global-buffer bank conflict in beat {beat} of the gather"
    elif op == Op.LOAD_WGT:
        if not _pe_set_ok(f, cfg):
            bad = "PE set"
        elif f["dst_addr"] + f["rows"] > cfg.weight_rows:
            bad = f"weight-buffer rows (depth {cfg.weight_rows})"
        elif f["n_out"] > cfg.k0:
            bad = f"n_out {f['n_out']} above K0 = {cfg.k0}"
    elif op == Op.LOAD_PARAM:
        depth = TABLE_BYTES // PARAM_ENTRY_BYTES if f["table"] else cfg.param_depth
        if not _pe_set_ok(f, cfg):
            bad = "PE set"
        elif f["dst_addr"] + f["n_entries"] > depth:
            bad = f"{'table' if f['table'] else 'parameter'} entries (depth {depth})"
    elif op == Op.LOAD_GB:
        if f["dst_addr"] + f["n_bytes"] > cfg.global_buf_bytes:
            bad = f"global-buffer bytes (size {cfg.global_buf_bytes})"
    elif op == Op.GEMM:
        npix = f["out_h"] * f["out_w"]
        steps = gemm_steps(f)
        in_h = (f["out_h"] - 1) * f["stride"] + f["kh"]
        last = (f["inp_addr"] + (f["n_cblk"] - 1) * in_h * f["in_w"] + (in_h - 1) * f["in_w"]
                + (f["out_w"] - 1) * f["stride"] + f["kw"] - 1)
        if f["acc_addr"] + npix > cfg.accum_depth:
            bad = f"accumulator entries (depth {cfg.accum_depth})"
        elif steps and npix and last >= cfg.input_rows:
            bad = f"input-buffer rows (depth {cfg.input_rows})"
        elif steps and npix and f["wgt_addr"] + steps > cfg.weight_rows:
            bad = f"weight-buffer rows (depth {cfg.weight_rows})"
        elif f["dw"] and not dw_gather_ok(cfg, f["kw"]):
            bad = (f"depthwise gather of kw = {f['kw']} columns (needs K0 <= C0, here {cfg.k0} and {cfg.c0})"
                   if cfg.k0 > cfg.c0 else f"depthwise gather of kw = {f['kw']} columns (needs 1 <= kw <= "
                   f"{dw_gather_max(cfg)})")
    elif op == Op.STORE:
        if not _pe_set_ok(f, cfg) or f["pe_k"] == 0:
            bad = "PE set"
        elif f["k_per_pe"] > cfg.k0:
            bad = f"k_per_pe {f['k_per_pe']} above K0 = {cfg.k0}"
        elif f["param_addr"] + f["k_per_pe"] > cfg.param_depth:
            bad = f"parameter entries (depth {cfg.param_depth})"
        elif f["acc_addr"] + f["out_h"] * f["out_w"] > cfg.accum_depth:
            bad = f"accumulator entries (depth {cfg.accum_depth})"
        elif f["act"] > max(Act):
            bad = f"act {f['act']} (valid: {', '.join(f'{a.value}={a.name}' for a in Act)})"
    if bad:
        raise StreamError(f"{op.name} at byte offset {offset}: {bad} outside the configuration {cfg.name}",
                          ErrorCode.RANGE, offset // INSN_BYTES)


def occupancy_and_latency(insn: Insn, cfg: AcceleratorConfig) -> tuple[int, int]:
    """(cycles the unit is busy, cycles until the instruction's effects are complete)."""
    op, f = insn.op, insn.f
    bw, bus = cfg.dram_bytes_per_cycle, cfg.gb_bus_bytes
    if op == Op.LOAD_INP:
        rows = f["n_cblk"] * f["win_h"] * f["win_w"]
        src = load_inp_dram_bytes(insn, cfg)
        transfer = max(1, _cdiv(rows * cfg.c0, bus), 0 if f["src_gb"] else _cdiv(src, bw))
        first = GB_LATENCY if f["src_gb"] else cfg.dram_latency
        return transfer, first + transfer
    if op == Op.LOAD_WGT:
        src = f["n_out"] * min(f["chan"], f["rows"] * cfg.c0)
        transfer = max(1, _cdiv(f["rows"] * cfg.c0 * cfg.k0, bus), _cdiv(src, bw))
        return transfer, cfg.dram_latency + transfer
    if op == Op.LOAD_PARAM:
        transfer = max(1, _cdiv(f["n_entries"] * PARAM_ENTRY_BYTES, min(bw, bus)))
        return transfer, cfg.dram_latency + transfer
    if op == Op.LOAD_GB:
        transfer = max(1, _cdiv(f["n_bytes"], bw))
        return transfer, cfg.dram_latency + transfer
    if op == Op.GEMM:
        steps = gemm_steps(f)
        cycles = steps * max(f["out_h"] * f["out_w"], GEMM_MIN_PIXELS) + GEMM_PIPELINE
        return cycles, cycles
    if op == Op.VEC:
        work = _cdiv(f["work"], cfg.vector_lanes)
        cycles = cfg.dram_latency + max(work, _cdiv(f["bytes_in"], bw), _cdiv(f["bytes_out"], bw), 1)
        return cycles, cycles
    if op == Op.STORE:
        pixels = f["out_h"] * f["out_w"] * int(store_passes(f))
        transfer = max(pixels + POST_PIPELINE, _cdiv(store_bytes(insn, cfg), bw))
        # posted writes: the unit is free once its last pixel is written (one setup cycle more
        # than the pixels and the pipeline); the DRAM latency only delays the token
        return max(transfer, pixels + POST_PIPELINE + 1), cfg.dram_latency + transfer
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


# Which token FIFO a flag refers to, per queue: (fifo popped/pushed, or None).
_PREV = {Queue.LOAD: None, Queue.COMPUTE: "l2c", Queue.STORE: "c2s"}      # tokens arriving from prev
_NEXT = {Queue.LOAD: "c2l", Queue.COMPUTE: "s2c", Queue.STORE: None}      # tokens arriving from next
_TO_PREV = {Queue.LOAD: None, Queue.COMPUTE: "c2l", Queue.STORE: "s2c"}
_TO_NEXT = {Queue.LOAD: "l2c", Queue.COMPUTE: "c2s", Queue.STORE: None}


def schedule(insns: list[Insn], cfg: AcceleratorConfig) -> Schedule:
    """Cycle-exact timing of a stream under the rules in this module's docstring.

    Raises
    ------
    StreamError
        A token popped that no earlier instruction pushed, a flag that names a
        queue the unit has no link to, tokens left over at END, or a missing END.
    """
    n = len(insns)
    dispatch = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    fifo = {"l2c": [], "c2l": [], "c2s": [], "s2c": []}
    heads = dict.fromkeys(fifo, 0)
    unit_free = {Queue.LOAD: 0, Queue.COMPUTE: 0, Queue.STORE: 0}
    history = {Queue.LOAD: [], Queue.COMPUTE: [], Queue.STORE: []}   # start cycles, for queue occupancy
    last_end = 0
    fetch = 0
    ended = False
    outstanding = dict.fromkeys(fifo, 0)       # tokens in program order, as the dispatcher counts them
    for i, insn in enumerate(insns):
        off = i * INSN_BYTES
        if ended:
            break                                   # the accelerator stops at END: the rest is not run
        q = insn.queue
        if q == Queue.DISPATCH:
            if insn.op in (Op.FENCE, Op.END):
                fetch = max(fetch, last_end)
            dispatch[i] = start[i] = fetch
            end[i] = fetch + 1
            fetch += 1
            if insn.op == Op.END:
                left = {k: len(v) - heads[k] for k, v in fifo.items() if len(v) > heads[k]}
                if left:
                    raise StreamError(f"END at byte offset {off} with unconsumed tokens {left}", ErrorCode.TOKEN, i)
                ended = True
                n = i + 1
            continue
        check_insn(insn, cfg, off)
        for flag, table, delta in (("pop_prev", _PREV, -1), ("pop_next", _NEXT, -1),
                                   ("push_prev", _TO_PREV, 1), ("push_next", _TO_NEXT, 1)):
            name = table[q] if getattr(insn, flag) else None
            if name is not None:
                outstanding[name] += delta
        over = [k for k, v in outstanding.items() if v > TOKEN_LIMIT]
        if over:
            raise StreamError(f"{insn.op.name} at byte offset {off} leaves more than {TOKEN_LIMIT} "
                              f"{over[0]} tokens outstanding", ErrorCode.TOKEN, i)
        hist = history[q]
        enter = fetch
        if len(hist) >= QUEUE_DEPTH:
            enter = max(enter, int(hist[-QUEUE_DEPTH]))
        dispatch[i] = enter
        fetch = enter + 1
        t = max(enter + 1, unit_free[q])
        for flag, table in (("pop_prev", _PREV), ("pop_next", _NEXT)):
            if getattr(insn, flag):
                name = table[q]
                if name is None:
                    raise StreamError(f"{insn.op.name} at byte offset {off} sets {flag} but the "
                                      f"{q.name} queue has no such neighbour", ErrorCode.TOKEN, i)
                if heads[name] >= len(fifo[name]):
                    raise StreamError(f"{insn.op.name} at byte offset {off} pops a {name} token "
                                      f"that no earlier instruction pushed", ErrorCode.TOKEN, i)
                t = max(t, fifo[name][heads[name]])
                heads[name] += 1
        busy, lat = occupancy_and_latency(insn, cfg)
        start[i] = t
        end[i] = t + lat
        unit_free[q] = t + busy
        hist.append(t)
        last_end = max(last_end, t + lat)
        for flag, table in (("push_prev", _TO_PREV), ("push_next", _TO_NEXT)):
            if getattr(insn, flag):
                name = table[q]
                if name is None:
                    raise StreamError(f"{insn.op.name} at byte offset {off} sets {flag} but the "
                                      f"{q.name} queue has no such neighbour", ErrorCode.TOKEN, i)
                fifo[name].append(t + lat)
    if not ended:
        raise StreamError(f"stream of {n} instructions has no END: the accelerator would run on into the word "
                          f"after it", ErrorCode.OPCODE, n)
    return Schedule(dispatch[:n], start[:n], end[:n], int(end[n - 1]))
