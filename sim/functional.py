"""Functional mode: execute an instruction stream on real int8 data.

``Machine`` holds the DRAM image, the global buffer and every PE's input,
weight, accumulation, parameter and table memories, and executes instructions
with the semantics of ``docs/isa.md`` (in stream order: the dependency tokens
only decide *when* an instruction runs, never *what* it computes, for a stream
the mapper emits); VEC runs the vector unit (``sim.vector_unit``).

``run_program`` executes a whole-network program (``mapper.program``) from its
DRAM image; ``check_program`` compares every tensor it writes, as soon as it is
written, with the golden whole-network model (``sim.golden_network``) and names
the first layer and element that differ.  ``check_layer`` runs one MAC layer's
stream on random data against the golden model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hw.cli import counted
from hw.config import AcceleratorConfig
from hw.epilogue import WalkState, member_bad, row_multiples, shift_bad, walk_end_bad, walk_pe
from hw.hazards import HazardError, check_hazards
from hw.isa import ADDR_MASK, Act, ErrorCode, Insn, StreamError, INSN_BYTES
from hw.numerics import (MAX_SHIFT, MULT_BITS, PARAM_ENTRY, PARAM_ENTRY_BYTES, TABLE_ENTRIES, TABLE_ENTRY,
                         TABLE_PER_PARAM, unpack_entries)
from hw.timing import (check_insn, load_inp_gb_conflict, load_inp_lanes, load_param_lane_addr, load_wgt_lane_addr, load_wgt_lane_ok,
                       gemm_in_h, load_inp_rows, pe_grid, pe_members, pe_positions, schedule, store_addr, store_pe_extent,
                       store_pe_clip, store_tile_origin)
from mapper.ir import Conv2d, Layer, Linear, MatMul
from mapper.lower import map_layer
from mapper.program import Program, pack_params, pack_weights

from hw import operators as ops

from . import golden
from .vector_unit import execute_vec, softmax_rows

__all__ = ["Machine", "DramBoundsError", "CheckError", "UndefinedUse", "ON_CHIP", "check_layer", "layer_data",
           "run_program", "check_program", "check_races"]

#: The on-chip memories (``Machine`` attributes), none cleared at start (``docs/isa.md``).
ON_CHIP = ("gb", "inp", "wgt", "acc", "bias", "mult", "shift", "ep_shift", "table")


class CheckError(AssertionError):
    """Functional mode disagrees with the golden model; the message names layer, index and values."""


class DramBoundsError(StreamError):
    """An access outside the DRAM image (``ErrorCode.DATA``).  The architecture's DRAM is the
    whole address space, so the RTL does not refuse it; a testbench flags it instead."""

    def __init__(self, message: str):
        super().__init__(message, ErrorCode.DATA)


@dataclass(frozen=True)
class UndefinedUse:
    """Instruction ``index`` used entry ``entry`` of on-chip memory ``memory`` (an index into that
    ``Machine`` array), which held no value the stream defined, to write DRAM (its data are then
    undefined) or, with ``decides``, to decide whether it refuses the stream (then so is that)."""
    index: int
    memory: str
    entry: tuple[int, ...]
    decides: bool

    def __str__(self) -> str:
        use = "decides a check from" if self.decides else "writes DRAM from"
        return f"instruction {self.index} {use} {self.memory}{list(self.entry)}, which the stream never defined"


@lru_cache(maxsize=1024)
def _weight_lanes(k0: int, rows: int, c0: int) -> tuple[np.ndarray, np.ndarray]:
    """(vector MAC, channel) of each weight byte a LOAD_WGT of ``rows`` rows writes, ``[K0, rows, C0]``
    (read-only: remembered, as a stream's LOAD_WGTs repeat a few shapes)."""
    j, r, lane = np.meshgrid(np.arange(k0), np.arange(rows), np.arange(c0), indexing="ij")
    return _frozen(j), _frozen(r * c0 + lane)


@lru_cache(maxsize=1024)
def _gemm_pixels(oh: int, ow: int, stride: int, in_w: int) -> np.ndarray:
    """The input-buffer row offset of each output pixel of a GEMM's tile (read-only, remembered)."""
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    return _frozen((oy * stride * in_w + ox * stride).ravel())


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class _PeTables(ops.NumpyBackend):
    """Runs a kernel on the values of several PEs (axis 0), each reading its own ROM: ``rom``'s
    table is ``[PE, entries]``."""

    def rom(self, table, index):
        flat = index.reshape(len(table), -1)
        return np.take_along_axis(np.asarray(table), flat, axis=1).reshape(index.shape)


_PE_TABLES = _PeTables()


class Machine:
    """Architectural state of one accelerator and an executor for instructions.

    Each on-chip memory has a mask in ``defined`` of the entries holding a value the stream
    defined (loaded from DRAM, or computed from defined values only); ``undefined`` lists the
    uses of any other entry (``UndefinedUse``) that reach DRAM or a refusal: the exact form of
    running a stream from two power-on states."""

    def __init__(self, cfg: AcceleratorConfig, dram: np.ndarray, power_on: np.random.Generator | None = None):
        """``power_on`` fills the on-chip memories with random contents instead of zeros: what a
        stream reads before writing it is undefined (SRAMs are not cleared), which running it
        from two power-on states reveals."""
        self.cfg = cfg
        self.dram = dram
        p = cfg.num_pe
        self.gb = np.zeros(cfg.global_buf_bytes, dtype=np.uint8)
        # int8 values kept as float32, the form the products take (exact for C0 lanes)
        self.inp = np.zeros((p, cfg.input_rows, cfg.c0), dtype=np.float32)
        self.wgt = np.zeros((p, cfg.k0, cfg.weight_rows, cfg.c0), dtype=np.float32)
        self.acc = np.zeros((p, cfg.accum_depth, cfg.k0), dtype=np.int64)
        self.bias = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.mult = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.shift = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.ep_shift = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.table = np.zeros((p, TABLE_ENTRIES), dtype=np.int64)       # 32-bit signed entries
        self.defined = {name: np.zeros(getattr(self, name).shape, bool) for name in ON_CHIP}
        self.undefined: list[UndefinedUse] = []
        if power_on is not None:
            self._fill(power_on)

    def _fill(self, rng: np.random.Generator) -> None:
        acc_half = 1 << (self.cfg.acc_bits - 1)
        for mem, lo, hi in ((self.gb, 0, 256), (self.inp, -128, 128), (self.wgt, -128, 128),
                            (self.acc, -acc_half, acc_half), (self.bias, -(1 << 31), 1 << 31),
                            (self.mult, 0, 1 << MULT_BITS), (self.shift, 0, MAX_SHIFT + 1),
                            (self.ep_shift, 0, 256), (self.table, -(1 << 31), 1 << 31)):
            mem[...] = rng.integers(lo, hi, mem.shape)

    # ---- helpers -----------------------------------------------------------------------------
    def _pes(self, f: dict, off: int) -> np.ndarray:
        return np.array(pe_members(f, self.cfg.num_pe))

    def _dram(self, addr: np.ndarray, off: int) -> np.ndarray:
        addr = addr & ADDR_MASK
        if addr.size and (addr.min() < 0 or addr.max() >= self.dram.size):
            raise DramBoundsError(f"DRAM address {int(addr.max())} outside the {self.dram.size}-byte image "
                                  f"at byte offset {off}")
        return self.dram[addr]

    def _sources_defined(self, sources, shape) -> np.ndarray:
        """Where all of ``sources`` hold defined values: (memory name, index arrays broadcast to
        ``shape``, where that memory is read there or None: everywhere)."""
        ok = np.ones(shape, bool)
        for name, idx, where in sources:
            ok &= self.defined[name][idx] | (False if where is None else ~where)
        return ok

    def _note_use(self, off: int, sources, used: np.ndarray, decides: bool = False) -> bool:
        """Note the first entry of ``sources`` not defined where ``used``; whether there was one."""
        for name, idx, where in sources:
            bad = used & ~self.defined[name][idx] & (True if where is None else where)
            if bad.any():
                at = tuple(np.argwhere(bad)[0])
                entry = tuple(int(np.broadcast_to(a, bad.shape)[at]) for a in idx)
                self.undefined.append(UndefinedUse(off // INSN_BYTES, name, entry, decides))
                return True
        return False

    # ---- instructions ------------------------------------------------------------------------
    def execute(self, insn: Insn, off: int = 0) -> None:
        """Execute one instruction (StreamError RANGE when it leaves the configuration: ``check_insn``)."""
        check_insn(insn, self.cfg, off)
        handler = getattr(self, f"_{insn.op.name.lower()}", None)
        if handler is not None:
            handler(insn.f, off)

    def run(self, stream: list[Insn]) -> None:
        """Execute ``stream`` in order; a StreamError carries the index of its instruction."""
        for i, insn in enumerate(stream):
            try:
                self.execute(insn, i * INSN_BYTES)
            except StreamError as e:
                if e.index is None:
                    e.index = i
                raise

    def _load_inp(self, f: dict, off: int) -> None:
        c0 = self.cfg.c0
        n_rows = load_inp_rows(f)
        addr, valid = load_inp_lanes(f, self.cfg)
        src = self.gb if f["src_gb"] else self.dram
        data = np.zeros(addr.shape, dtype=np.uint8)
        ok = np.ones(addr.shape, bool)          # padding lanes are zeros, DRAM bytes the image's
        if valid.any():
            a = addr[valid]
            if a.min() < 0 or a.max() >= src.size:
                if not f["src_gb"]:
                    raise DramBoundsError(f"LOAD_INP source address {int(a.max())} outside the DRAM image at "
                                          f"byte offset {off}")
                raise StreamError(f"LOAD_INP source address {int(a.max())} outside the global buffer at byte "
                                  f"offset {off}", ErrorCode.DATA)
            data[valid] = src[a]
            if f["src_gb"]:
                ok[valid] = self.defined["gb"][a]
        if f["src_gb"] and (beat := load_inp_gb_conflict(f, self.cfg)) is not None:
            raise StreamError(f"LOAD_INP at byte offset {off}: global-buffer bank conflict in beat {beat} of "
                              f"the gather (two rows of one bank)", ErrorCode.DATA)
        rows = data.reshape(n_rows, c0).view(np.int8)
        self.inp[self._pes(f, off), f["dst_addr"]:f["dst_addr"] + n_rows] = rows
        self.defined["inp"][self._pes(f, off), f["dst_addr"]:f["dst_addr"] + n_rows] = ok.reshape(n_rows, c0)

    def _load_wgt(self, f: dict, off: int) -> None:
        c0, k0 = self.cfg.c0, self.cfg.k0
        j, idx = _weight_lanes(k0, f["rows"], c0)
        valid = load_wgt_lane_ok(f, j, idx)
        data = np.zeros(j.shape, dtype=np.uint8)
        data[valid] = self._dram(load_wgt_lane_addr(f, j[valid], idx[valid]), off)
        self.wgt[self._pes(f, off)[:, None], np.arange(k0)[None, :], f["dst_addr"]:f["dst_addr"] + f["rows"]] = \
            data.view(np.int8)[None]
        self.defined["wgt"][self._pes(f, off), :, f["dst_addr"]:f["dst_addr"] + f["rows"]] = True

    def _load_param(self, f: dict, off: int) -> None:
        n = f["n_entries"]
        if f["table"]:
            return self._load_table(f, off)
        e = unpack_entries(self._dram(self._param_addresses(f), off), PARAM_ENTRY)
        bias, mult, shift, ep_shift = e["bias"], e["mult"], e["shift"], e["ep_shift"]
        if (shift > MAX_SHIFT).any():
            raise StreamError(f"parameter shift {int(shift.max())} above {MAX_SHIFT} at byte offset {off}",
                              ErrorCode.DATA)
        pes = self._pes(f, off)
        sl = slice(f["dst_addr"], f["dst_addr"] + n)
        self.bias[pes, sl], self.mult[pes, sl], self.shift[pes, sl] = bias, mult, shift
        self.ep_shift[pes, sl] = ep_shift
        for name in ("bias", "mult", "shift", "ep_shift"):
            self.defined[name][pes, sl] = True

    @staticmethod
    def _param_addresses(f: dict) -> np.ndarray:
        entry, byte = np.divmod(np.arange(f["n_entries"] * PARAM_ENTRY_BYTES), PARAM_ENTRY_BYTES)
        return load_param_lane_addr(f, entry, byte)

    def _load_table(self, f: dict, off: int) -> None:
        """LOAD_PARAM with ``table``: entries of PARAM_ENTRY_BYTES bytes fill the table memory."""
        per = TABLE_PER_PARAM
        raw = self._dram(self._param_addresses(f), off)
        vals = unpack_entries(raw, TABLE_ENTRY)["v"]
        first = f["dst_addr"] * per
        self.table[self._pes(f, off), first:first + vals.size] = vals
        self.defined["table"][self._pes(f, off), first:first + vals.size] = True

    def _load_gb(self, f: dict, off: int) -> None:
        n = f["n_bytes"]
        self.gb[f["dst_addr"]:f["dst_addr"] + n] = self._dram(f["src_addr"] + np.arange(n), off)
        self.defined["gb"][f["dst_addr"]:f["dst_addr"] + n] = True

    def _gemm(self, f: dict, off: int) -> None:
        """All steps of a GEMM as one batched product (exact in float64: |sum| < 2**53)."""
        kh, kw, st = f["kh"], f["kw"], f["stride"]
        oh, ow, in_w = f["out_h"], f["out_w"], f["in_w"]
        in_h = gemm_in_h(f)
        npix = oh * ow
        pix = _gemm_pixels(oh, ow, st, in_w)
        taps = [(cb, r, s) for cb in range(f["n_cblk"]) for r in range(kh) for s in range(1 if f["dw"] else kw)]
        if not taps or not npix:
            return
        t = np.array(taps)
        rows = (f["inp_addr"] + t[:, 0] * in_h * in_w + t[:, 1] * in_w + t[:, 2])[:, None] + pix[None, :]
        wrows = f["wgt_addr"] + (t[:, 0] * kh + t[:, 1] if f["dw"] else (t[:, 0] * kh + t[:, 1]) * kw + t[:, 2])
        x, w = self._gemm_operands(f, rows, wrows, self.inp, self.wgt)
        if f["dw"]:
            prod = np.einsum("psnjt,pstj->pnj", x, w, dtype=np.float64)
        else:
            # one product per step: exact in float32 (C0 products below 2**14 each), summed in float64
            prod = np.matmul(x, w).sum(axis=1, dtype=np.float64)
        acc = self.acc[:, f["acc_addr"]:f["acc_addr"] + npix]
        if f["accumulate"]:
            acc += prod.astype(np.int64)
        else:
            acc[...] = prod
        ok = self.defined["acc"][:, f["acc_addr"]:f["acc_addr"] + npix]
        ok[...] = self._gemm_defined(f, rows, wrows) & (ok if f["accumulate"] else True)

    def _gemm_operands(self, f: dict, rows: np.ndarray, wrows: np.ndarray, inp: np.ndarray, wgt: np.ndarray):
        """A GEMM's operands in ``inp`` and ``wgt`` (the buffers or their ``defined`` masks), x
        ``(P, S, npix, C0)`` and w ``(P, S, C0, K0)``; depthwise, where vector MAC j's lane t holds
        lane j of input row (pixel's row + t), t < kw: x ``(P, S, npix, K0, kw)``, w ``(P, S, kw, K0)``."""
        w = wgt[:, :, wrows].transpose(0, 2, 3, 1)
        if not f["dw"]:
            return inp[:, rows], w
        return np.stack([inp[:, rows + d, :self.cfg.k0] for d in range(f["kw"])], axis=-1), w[:, :, :f["kw"]]

    def _gemm_defined(self, f: dict, rows: np.ndarray, wrows: np.ndarray) -> np.ndarray:
        """Which sums ``[P, pixel, K0]`` of a GEMM are defined: each of their products has two
        defined operands, or one defined zero (a lane past a tensor's channels, zero in its
        weights, leaves what the input buffer holds there unused)."""
        span = slice(int(rows.min()), int(rows.max()) + (f["kw"] if f["dw"] else 1))
        if self.defined["inp"][:, span].all() and self.defined["wgt"][:, :, wrows].all():     # the usual case
            return np.ones((self.cfg.num_pe, rows.shape[1], self.cfg.k0), bool)
        x, w = self._gemm_operands(f, rows, wrows, self.inp, self.wgt)
        xu, wu = (~a for a in self._gemm_operands(f, rows, wrows, self.defined["inp"], self.defined["wgt"]))
        xnz, wnz = xu | (x != 0), wu | (w != 0)         # not a defined zero
        if f["dw"]:                                     # product (s, n, j, t): x[..., j, t] * w[s, t, j]
            wu, wnz = (a.transpose(0, 1, 3, 2)[:, :, None] for a in (wu, wnz))
            return ~((xu & wnz) | (wu & xnz)).any(axis=(1, 4))
        f32 = lambda a: a.astype(np.float32)
        return (np.matmul(f32(xu), f32(wnz)) + np.matmul(f32(xnz), f32(wu))).sum(axis=1) == 0

    def _vec(self, f: dict, off: int) -> None:
        execute_vec(f, self.dram, f"VEC at byte offset {off}", self.cfg.dram_bytes)

    def _store(self, f: dict, off: int) -> None:
        pes = self._pes(f, off)
        k, y, x, valid, q, sources = self._store_values(f, pes)
        rows = self._softmax_epilogue(f, pes, q, off, sources) if f["ep_row"] else None
        ok = self._sources_defined(sources, q.shape)
        if rows is not None:        # a softmax row is defined only if all its lanes are
            member, row = rows
            lanes = ok.transpose(1, 2, 0, 3)[:, :, member]
            whole = lanes.reshape(*lanes.shape[:2], lanes.shape[2] // row, row).all(axis=-1, keepdims=True)
            ok.transpose(1, 2, 0, 3)[:, :, member] = np.broadcast_to(whole, (*whole.shape[:3], row)).reshape(lanes.shape)
        if not valid.any():
            return
        addr = store_addr(f, y[:, :, None, None], x[None, None, :, None], k[:, None, None, :])
        a_valid = addr[valid] & ADDR_MASK
        if f.get("dst_gb"):         # inside the buffer: check_insn's legality
            self.gb[a_valid] = q[valid].view(np.uint8)
            self.defined["gb"][a_valid] = ok[valid]
            return
        if a_valid.max() >= self.dram.size:
            raise DramBoundsError(f"STORE writes past the {self.dram.size}-byte DRAM image at byte offset {off}")
        self.dram[a_valid] = q[valid].view(np.uint8)
        if not ok[valid].all():     # a softmax row may mix in a lane that is not written: then any read
            self._note_use(off, sources, valid & ~ok) or self._note_use(off, sources, np.ones(q.shape, bool))

    def _pe_grid(self, f: dict, pes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(column, row group) of each PE of a STORE (``hw.timing.pe_positions``)."""
        grid = pe_grid(self.cfg.num_pe, f["pe_k"])[pes]
        return grid[:, 0], grid[:, 1]

    def _store_values(self, f: dict, pes: np.ndarray):
        """Channels ``[P, K]``, rows ``[P, oh]``, columns ``[ow]``, valid ``[P, oh, ow, K]``, the
        requantised int8 values ``[P, oh, ow, K]`` of the selected PEs' tiles and the entries they
        are computed from (``_sources_defined``)."""
        oh, ow, kp = f["out_h"], f["out_w"], f["k_per_pe"]
        kc, pg = self._pe_grid(f, pes)
        k_first, y_first = store_tile_origin(f, kc[:, None], pg[:, None])
        k, y = k_first + np.arange(kp)[None, :], y_first + np.arange(oh)[None, :]
        x = f["x0"] + np.arange(ow)
        nk, ny, nx = store_pe_clip(f, k_first, y_first)          # each PE's tile inside the tensor
        valid = ((np.arange(oh) < ny)[:, :, None, None] & (np.arange(ow) < nx)[None, None, :, None]
                 & (np.arange(kp) < nk)[:, None, None, :])
        a = self.acc[pes, f["acc_addr"]:f["acc_addr"] + oh * ow, :kp]                # [P, npix, K]
        ps = slice(f["param_addr"], f["param_addr"] + kp)
        flat = a.transpose(1, 0, 2).reshape(oh * ow, len(pes) * kp)       # (explicit: a STORE may have no pixels)
        q = ops.requantize(flat, self.mult[pes, ps].ravel(), self.shift[pes, ps].ravel(), f["act"] == Act.RELU,
                           bias=self.bias[pes, ps].ravel(), acc_bits=self.cfg.acc_bits)
        q = q.reshape(oh, ow, len(pes), kp).transpose(2, 0, 1, 3)
        p4, lane = pes[:, None, None, None], np.arange(kp)[None, None, None, :]
        pix = f["acc_addr"] + np.arange(oh * ow).reshape(1, oh, ow, 1)
        sources = [("acc", (p4, pix, lane), None)] + \
            [(name, (p4, f["param_addr"] + lane), None) for name in ("bias", "mult", "shift")]
        if f["act"] == Act.TABLE:       # each PE reads its own table (hw.operators.lut_kernel)
            sources.append(("table", (p4, ops.lut_index(q.astype(np.int64))), None))
            q = ops.lut_kernel(q.astype(np.int64), self.table[pes], _PE_TABLES).astype(np.int8)
        return k, y, x, valid, np.ascontiguousarray(q), sources

    def _softmax_epilogue(self, f: dict, pes: np.ndarray, q: np.ndarray, off: int, sources: list):
        """Softmax over rows of ``ep_row`` channels of each pixel, in place on ``q``: the rows of
        ``hw.epilogue`` (consecutive member lanes of a row group), each lane's exponentials from
        its PE's table and its output shift its PE's (entry ``param_addr``).  Adds the table
        entries it reads to ``sources``; returns the member lanes ``[P, K]`` and the row length
        (None when there is no member)."""
        row, where = f["ep_row"], f"STORE at byte offset {off}"
        nk = self._epilogue_members(f, pes, where)
        lanes = np.concatenate([np.full(n, i) for i, n in enumerate(nk)]).astype(np.int64)
        if lanes.size == 0:
            return None
        owner = pes[lanes]
        self._note_use(off, [("ep_shift", (owner, f["param_addr"]), None), ("table", (owner, 0), None)],
                       np.ones(owner.shape, bool), decides=True)
        out_shift = self.ep_shift[owner, f["param_addr"]]
        bad = [s for s in np.unique(out_shift) if shift_bad(s)]
        if bad:
            lo, hi = ops.SoftmaxParams.RANGES["out_shift"]
            raise StreamError(f"{where}: softmax output shift {int(bad[0])} outside {lo}..{hi}", ErrorCode.DATA)
        if np.any(member_bad(out_shift, self.table[owner, 0].astype(np.int64))):
            raise StreamError(f"{where}: the exponential of 0 (table entry 0) is 0: a row's sum could be 0",
                              ErrorCode.DATA)
        member = np.arange(q.shape[3])[None, :] < np.asarray(nk)[:, None]          # [P, K]
        vals = q.transpose(1, 2, 0, 3)[:, :, member]                              # [oh, ow, members]
        shape = (*vals.shape[:2], vals.shape[2] // row, row)        # (no -1: a STORE may hold no pixel)
        sources.append(("table", (pes[:, None, None, None], self._exp_entries(q, member, row)), member[:, None, None]))
        out = softmax_rows(vals.reshape(shape), self.table[owner].reshape(-1, row, TABLE_ENTRIES),
                           out_shift.reshape(-1, row))
        q.transpose(1, 2, 0, 3)[:, :, member] = out.reshape(vals.shape)        # a view: writes q
        return member, row

    @staticmethod
    def _exp_entries(q: np.ndarray, member: np.ndarray, row: int) -> np.ndarray:
        """The table entry ``[P, oh, ow, K]`` each member lane's exponential is (``softmax_rows``:
        its row's maximum minus its value; 0 elsewhere)."""
        vals = q.transpose(1, 2, 0, 3)[:, :, member].astype(np.int64)
        rows = vals.reshape(*vals.shape[:2], vals.shape[2] // row, row)
        entry = np.zeros(q.shape, np.int64)
        entry.transpose(1, 2, 0, 3)[:, :, member] = (rows.max(axis=-1, keepdims=True) - rows).reshape(vals.shape)
        return entry

    def _epilogue_members(self, f: dict, pes: np.ndarray, where: str) -> list[int]:
        """The member lanes of each selected PE (``hw.epilogue``'s walk over every PE, which
        refuses channels that are not whole rows of each row group with ``ErrorCode.DATA``)."""
        n, k0 = self.cfg.num_pe, self.cfg.k0
        selected = np.zeros(n, bool)
        selected[pes] = True
        multiples = row_multiples(f["ep_row"], k0)
        state, members = WalkState(), []
        for p, (col, grp) in enumerate(pe_positions(n, f["pe_k"])):
            k_first, _, nk, _, _ = store_pe_extent(f, col, grp)
            members.append(nk if selected[p] else 0)
            _, state = walk_pe(state, col, k_first, members[-1], multiples, k0)
        if walk_end_bad(state):
            raise StreamError(f"{where}: the channels of a row group are not consecutive whole softmax rows of "
                              f"{f['ep_row']}", ErrorCode.DATA)
        return [members[p] for p in pes]


# ---- checking layers against the golden model ----------------------------------------------------

def layer_data(layer: Layer, rng: np.random.Generator) -> dict:
    """Random int8 operands and requantisation parameters for a MAC layer."""
    i8 = lambda *shape: rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        x = i8(layer.in_h, layer.in_w, layer.in_ch)
        w = i8(layer.out_ch, kh, kw, layer.in_ch // layer.groups)
        n_out, red = layer.out_ch, kh * kw * layer.in_ch // layer.groups
    elif isinstance(layer, Linear):
        x, w = i8(layer.tokens, layer.in_features), i8(layer.out_features, layer.in_features)
        n_out, red = layer.out_features, layer.in_features
    elif isinstance(layer, MatMul):
        x, w = i8(layer.batch, layer.m, layer.k), i8(layer.batch, layer.k, layer.n)
        n_out, red = layer.batch * layer.n, layer.k
    else:
        raise TypeError(f"{layer.name} is not a MAC layer")
    # scale so outputs spread over int8 without saturating everywhere: |acc| ~ 128*128*sqrt(red)/3
    shift = int(min(MAX_SHIFT, 16 + max(0, int(np.log2(max(1, red))) // 2)))
    return {"x": x, "w": w,
            "bias": rng.integers(-(1 << 12), 1 << 12, size=n_out).astype(np.int64),
            "mult": rng.integers(1 << 13, 1 << 15, size=n_out).astype(np.int64),
            "shift": np.full(n_out, shift, dtype=np.int64),
            "relu": bool(getattr(layer, "relu", False))}


def golden_output(layer: Layer, d: dict, cfg: AcceleratorConfig) -> np.ndarray:
    """Golden int8 output in the accelerator's DRAM layout (HWC; matmul: [m, batch*n])."""
    if isinstance(layer, Conv2d):
        acc = golden.conv2d(d["x"], d["w"], stride=layer.stride, padding=layer.padding, groups=layer.groups,
                            dilation=layer.dilation,
                            acc_bits=cfg.acc_bits)
    elif isinstance(layer, Linear):
        acc = golden.linear(d["x"], d["w"], acc_bits=cfg.acc_bits)
    else:
        acc = golden.matmul(d["x"], d["w"], acc_bits=cfg.acc_bits)       # [B, M, N]
        acc = acc.transpose(1, 0, 2).reshape(layer.m, -1)                 # [M, B*N]
    return golden.requantize(acc, d["bias"], d["mult"], d["shift"], relu=d["relu"], acc_bits=cfg.acc_bits)


def _place(lowered, layer: Layer, d: dict, cfg: AcceleratorConfig) -> np.ndarray:
    """The DRAM image the mapper's stream expects for this layer's operands (``default_placement``)."""
    p, pl = lowered.problem, lowered.layout
    dram = np.zeros(pl.end, dtype=np.uint8)

    def put(addr: int, arr: np.ndarray) -> None:
        b = np.ascontiguousarray(arr).view(np.uint8).ravel()
        dram[addr:addr + b.size] = b

    if isinstance(layer, MatMul):
        put(pl.input, d["x"].transpose(1, 0, 2).reshape(layer.m, -1))       # [M, B*K]
        put(pl.weights, d["w"].transpose(0, 2, 1))                           # [B, N, K]
    else:
        put(pl.input, d["x"])
        put(pl.weights, pack_weights(p, d["w"], cfg, pl.rows_per_oc))
    put(pl.params, pack_params(d["bias"], d["mult"], d["shift"]))
    return dram


def run_layer(layer: Layer, cfg: AcceleratorConfig, d: dict) -> np.ndarray:
    """Run the mapper's stream for ``layer`` on data ``d``; the int8 output in DRAM layout."""
    parts = map_layer(layer, cfg)
    if len(parts) != 1 or parts[0][1] != 1:
        raise CheckError(f"{layer.name}: functional mode runs layers the mapper does not split "
                         f"(this one is split into {sum(n for _, n in parts)} batches)")
    lowered = parts[0][0]
    dram = _place(lowered, layer, d, cfg)
    Machine(cfg, dram).run(lowered.stream)
    p, pl = lowered.problem, lowered.layout
    out = dram[pl.output:pl.output + p.oh * p.ow * p.k].view(np.int8)
    if isinstance(layer, MatMul):
        return out.reshape(layer.m, p.k)
    if isinstance(layer, Linear):
        return out.reshape(layer.tokens, p.k)
    return out.reshape(layer.out_h, layer.out_w, p.k)      # a row mapped as a column: the same bytes


def _first_difference(name: str, got: np.ndarray, want: np.ndarray, what: str) -> str:
    if got.shape != want.shape:
        return f"{what} {name}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    i = tuple(int(v) for v in bad[0])
    g, w = int(got[i]), int(want[i])
    differ = "differs" if len(bad) == 1 else "differ"
    return (f"{what} {name}: {len(bad)} of {counted(want.size, 'element')} {differ}; first at index {i}: "
            f"got {g} ({g & 0xff:#04x}), expected {w} ({w & 0xff:#04x})")


def check_layer(layer: Layer, cfg: AcceleratorConfig, seed: int) -> int:
    """Compare functional mode with the golden model on random data; returns the outputs compared."""
    d = layer_data(layer, np.random.default_rng(seed))
    want = golden_output(layer, d, cfg)
    got = run_layer(layer, cfg, d)
    if got.shape != want.shape or not np.array_equal(got, want):
        raise CheckError(_first_difference(f"{layer.name} on {cfg.name} (seed {seed})", got, want, "layer"))
    return want.size


# ---- whole networks -------------------------------------------------------------------------------

def run_program(program: Program, on_step=None) -> np.ndarray:
    """Execute ``program`` from its DRAM image; ``on_step(step_code, dram, gb)`` after each step
    (``gb`` the global buffer, where the tensors ``program.resident`` are).  Returns the final
    DRAM image."""
    dram = program.image.copy()
    machine = Machine(program.cfg, dram)
    for code in program.steps:
        for i in range(code.start, code.end):
            machine.execute(program.stream[i], i * INSN_BYTES)
        if on_step:
            on_step(code, dram, machine.gb)
    return dram


def check_program(program: Program, qmodel, x: np.ndarray, progress=None) -> dict:
    """Check that the program's units do not race (``check_races``), run ``program`` and compare
    every tensor it writes with the golden whole-network model (``sim.golden_network``) as soon as
    it is written; CheckError names the first layer and element that differ.  Returns the counts
    compared and the outputs (class maps for segmentation)."""
    from .golden_network import class_map, run_network

    model = program.model
    class_inputs = {model.layer(t).inputs[0]: t for t in program.class_maps}
    golden_iter = run_network(qmodel, x, acc_bits=program.cfg.acc_bits, keep=lambda n: n in class_inputs)
    have: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    needed = {t for code in program.steps for t in code.writes} | set(class_inputs) | set(model.output_names)
    counts = {"tensors": 0, "elements": 0}
    last_gb: list = []

    def want(name: str) -> np.ndarray:
        while name not in have:
            n, v = next(golden_iter)
            if n in needed:
                have[n] = v
        if name in program.class_maps:
            layer = model.layer(name)
            return class_map(have[layer.inputs[0]], *layer.out_shape[:2], layer.align_corners)
        return have[name]

    def compare(tensor: str, dram, gb, where: str) -> None:
        got, expected = program.read(dram, tensor, gb), want(tensor)
        if got.shape != expected.shape or not np.array_equal(got, expected.astype(got.dtype)):
            raise CheckError(_first_difference(tensor, got, expected.astype(got.dtype), where))
        counts["tensors"] += 1
        counts["elements"] += got.size
        if tensor in model.output_names:
            outputs[tensor] = got
        if tensor not in class_inputs:
            have.pop(tensor, None)

    def on_step(code, dram, gb) -> None:
        if progress:
            progress(code.step.layer.name)
        for tensor in code.writes:
            compare(tensor, dram, gb, f"step {code.step.layer.name}: tensor")
        last_gb[:] = [gb]

    check_races(program)
    dram = run_program(program, on_step)
    # an output no step writes whole (a concatenation, written by its parts' steps): as the run left it
    for tensor in model.output_names:
        if tensor not in outputs and tensor in program.storage:
            compare(tensor, dram, last_gb[0] if last_gb else None, "after the last step: output")
    return {**counts, "outputs": outputs}


def check_races(program: Program) -> None:
    """CheckError when the program's units race on a memory under its schedule
    (``hw.hazards``): then the accelerator, which runs them concurrently, need not compute what
    this model computes in program order.  The message names the steps of both instructions."""
    try:
        check_hazards(program.stream, schedule(program.stream, program.cfg), program.cfg, program.image)
    except HazardError as e:
        h = e.hazard
        step = {i: code.step.layer.name for code in program.steps for i in (h.earlier, h.later)
                if code.start <= i < code.end}
        raise CheckError(f"steps {step.get(h.earlier)} and {step.get(h.later)}: {e}") from None
