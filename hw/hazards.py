"""Memory hazards of a scheduled stream: the check that its units never race.

``sim.functional`` executes a stream in program order; the accelerator runs its three units
concurrently, ordered only by tokens and FENCEs (``hw.timing.schedule``).  The two agree when
every pair of instructions of *different* units that touch the same memory, one of them
writing it (read after write, write after read, write after write), is ordered in time: the
later one in program order starts no earlier than the earlier one ends.  Within a unit the
instructions take effect in program order (the load unit's in-flight data and the store unit's
posted writes land in order), so pairs of one unit need no check.

``accesses`` lists the memory an instruction reads and writes, from its fields and the rules
of ``hw.timing`` (the ranges are the bounding intervals of what it touches; where two intervals
meet, a LOAD_INP's gather and a STORE's tiles are compared byte by byte, so that a layer writing
some channels of a tensor while a load reads its other channels, as a concatenation built in
place does, is no race; the other accesses are compared as intervals, so the check may refuse a
stream that only interleaves within one, never pass a racing one):

* ``dram``, ``gb``: byte addresses; a VEC's from its descriptor in the DRAM image
  (``hw.vector.pass_extents``), or the whole DRAM when no image is given;
* ``inp``, ``wgt``, ``acc``, ``param``, ``table``: rows (entries) of every PE's input, weight,
  accumulator, parameter and table memories, with the set of PEs (a bit mask).

``hazards`` finds the racing pairs of a stream and its schedule; ``check_hazards`` raises
``HazardError`` naming the first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Callable, Optional

import numpy as np

from .config import AcceleratorConfig
from .isa import ADDR_MASK, FIELD_NAMES, Act, Insn, Op, Queue, fields_key
from .numerics import PARAM_ENTRY_BYTES, TABLE_ENTRIES, TABLE_PER_PARAM
from .timing import (Schedule, pe_grid, gemm_input_terms, gemm_steps, load_inp_lanes, load_inp_rows,
                     load_param_lane_addr, load_wgt_extent, load_wgt_lane_addr, pe_members, store_addr, store_pe_extent,
                     wrapped_ranges)
from .vector import (HEADER_BYTES, MAX_DESCRIPTOR_BYTES, NONE, decode_descriptor, descriptor_bytes,
                     descriptor_field_slots, pass_extents)

__all__ = ["Access", "Hazard", "HazardError", "MEMORIES", "accesses", "hazards", "check_hazards"]

#: The memories a stream addresses: shared (DRAM, global buffer: byte addresses) and per PE.
MEMORIES = ("dram", "gb", "inp", "wgt", "acc", "param", "table")
_SHARED = -1                       # the PE mask of a shared memory
_DRAM_TOP = ADDR_MASK              # a VEC whose descriptor is unknown may touch any DRAM byte


@dataclass(frozen=True, slots=True)
class Access:
    """Addresses ``lo .. hi`` (inclusive) of ``memory``, on the PEs of mask ``pes`` (-1: a shared
    memory), read or written."""

    memory: str
    lo: int
    hi: int
    write: bool
    pes: int = _SHARED
    #: The sorted addresses touched, where they are fewer than the interval's (asked only when
    #: two intervals meet).
    exact: Optional[Callable[[], np.ndarray]] = field(default=None, compare=False, repr=False)

    def meets(self, other: "Access") -> bool:
        """Whether the two touch a common address of one memory (on a common PE) and one writes."""
        if not (self.memory == other.memory and (self.write or other.write) and self.lo <= other.hi
                and other.lo <= self.hi and (self.pes & other.pes) != 0):
            return False
        if self.exact is None or other.exact is None:
            return True
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        mine, theirs = self.exact(), other.exact()
        mine = mine[np.searchsorted(mine, lo):np.searchsorted(mine, hi, side="right")]
        return bool(np.isin(mine, theirs, assume_unique=True).any())


@dataclass(frozen=True)
class Hazard:
    """Instructions ``earlier`` < ``later`` (stream indices) of different units whose accesses
    ``first`` and ``second`` race: ``later`` starts (``start``) before ``earlier`` ends (``end``)."""

    earlier: int
    later: int
    first: Access
    second: Access
    end: int
    start: int

    @property
    def kind(self) -> str:
        return ("WAW" if self.first.write and self.second.write else "RAW" if self.first.write else "WAR")

    def describe(self, insns: list[Insn]) -> str:
        lo, hi = max(self.first.lo, self.second.lo), min(self.first.hi, self.second.hi)
        return (f"{self.kind} on {self.first.memory} {lo}..{hi}: {insns[self.later].op.name} at {self.later} "
                f"starts in cycle {self.start}, before {insns[self.earlier].op.name} at {self.earlier} ends "
                f"({self.end}); no token or FENCE orders them")


class HazardError(ValueError):
    """A stream whose units race on a memory (``Hazard``); the message names the first pair."""

    def __init__(self, message: str, hazard: Hazard):
        super().__init__(message)
        self.hazard = hazard


def _mask(f: dict, num_pe: int) -> int:
    return sum(1 << p for p in pe_members(f, num_pe))


def _span(addr: np.ndarray) -> Optional[tuple[int, int]]:
    """The least and greatest of lane addresses (modulo 2**32 already: ``hw.timing.load_inp_lanes``)."""
    if addr.size == 0:
        return None
    return int(addr.min()), int(addr.max())


def _dram_reads(lo: int, hi: int) -> list[Access]:
    """Reads of DRAM addresses ``lo .. hi`` formed without the wrap: the ranges they reach
    modulo 2**32 (``hw.timing.wrapped_ranges``), as the functional model and the RTL read them."""
    return [Access("dram", a, b, False) for a, b in wrapped_ranges(lo, hi)]


def _load_inp(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    rows = load_inp_rows(f)
    out = [Access("inp", f["dst_addr"], f["dst_addr"] + rows - 1, True, _mask(f, cfg.num_pe))] if rows else []
    addr, valid = load_inp_lanes(f, cfg)
    read = addr[valid]
    span = _span(read)
    if span:
        out.append(Access("gb" if f["src_gb"] else "dram", *span, False, exact=cache(lambda: np.unique(read))))
    return out


def _load_wgt(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    if not f["rows"]:
        return []
    out = [Access("wgt", f["dst_addr"], f["dst_addr"] + f["rows"] - 1, True, _mask(f, cfg.num_pe))]
    n_out, chans = load_wgt_extent(f, cfg)
    if n_out and chans:
        out += _dram_reads(load_wgt_lane_addr(f, 0, 0), load_wgt_lane_addr(f, n_out - 1, chans - 1))
    return out


def _load_param(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    n = f["n_entries"]
    if not n:
        return []
    if f["table"]:      # an entry of PARAM_ENTRY_BYTES fills this many table entries
        per = TABLE_PER_PARAM
        dst = Access("table", per * f["dst_addr"], per * (f["dst_addr"] + n) - 1, True, _mask(f, cfg.num_pe))
    else:
        dst = Access("param", f["dst_addr"], f["dst_addr"] + n - 1, True, _mask(f, cfg.num_pe))
    return [dst, *_dram_reads(load_param_lane_addr(f, 0, 0), load_param_lane_addr(f, n - 1, PARAM_ENTRY_BYTES - 1))]


def _load_gb(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    n = f["n_bytes"]
    if not n:
        return []
    return [Access("gb", f["dst_addr"], f["dst_addr"] + n - 1, True), *_dram_reads(f["src_addr"], f["src_addr"] + n - 1)]


def _gemm(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    npix, steps = f["out_h"] * f["out_w"], gemm_steps(f)
    if not npix or not steps:            # writes nothing, reads nothing
        return []
    every = (1 << cfg.num_pe) - 1
    t = gemm_input_terms(f)
    return [Access("inp", f["inp_addr"], t["in_rest"] + t["in_rows"], False, every),
            Access("wgt", f["wgt_addr"], f["wgt_addr"] + steps - 1, False, every),
            Access("acc", f["acc_addr"], f["acc_addr"] + npix - 1, True, every)]


def _store(f: dict, cfg: AcceleratorConfig) -> list[Access]:
    pes = pe_members(f, cfg.num_pe)
    mask, npix = sum(1 << p for p in pes), f["out_h"] * f["out_w"]
    out = []
    if npix:
        out.append(Access("acc", f["acc_addr"], f["acc_addr"] + npix - 1, False, mask))
    if f["k_per_pe"]:
        out.append(Access("param", f["param_addr"], f["param_addr"] + f["k_per_pe"] - 1, False, mask))
    if f["act"] == Act.TABLE or f["ep_row"]:
        out.append(Access("table", 0, TABLE_ENTRIES - 1, False, mask))
    grid = pe_grid(cfg.num_pe, f["pe_k"])[pes]
    k, y, nk, ny, nx = np.broadcast_arrays(*store_pe_extent(f, grid[:, 0], grid[:, 1]))
    some = (nk > 0) & (ny > 0) & (nx > 0)
    if some.any():
        k, y, nk, ny, nx = k[some], y[some], nk[some], ny[some], nx[some]
        # each tile's first and last byte before the wrap: the ranges they reach modulo 2**32
        lo = int(store_addr(f, y, f["x0"], k).min())
        hi = int(store_addr(f, y + ny - 1, f["x0"] + nx - 1, k + nk - 1).max())
        tiles = list(zip(k.tolist(), y.tolist(), nk.tolist(), ny.tolist(), nx.tolist()))
        exact = cache(lambda: _stored(f, tiles))
        out += [Access("gb" if f["dst_gb"] else "dram", a, b, True, exact=exact) for a, b in wrapped_ranges(lo, hi)]
    return out


def _stored(f: dict, tiles: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """The sorted addresses a STORE writes: each PE tile's channels, rows and columns."""
    parts = []
    for k, y, nk, ny, nx in tiles:
        yy, xx, kk = np.meshgrid(np.arange(y, y + ny), np.arange(f["x0"], f["x0"] + nx), np.arange(k, k + nk),
                                 indexing="ij", sparse=True)
        parts.append(np.ravel(store_addr(f, yy, xx, kk)))
    return np.unique(np.concatenate(parts) & ADDR_MASK)


def _vec(f: dict, cfg: AcceleratorConfig, dram: Optional[np.ndarray]) -> list[Access]:
    """A VEC's descriptor and tables (read) and operands (read, or written by a stage), from its
    descriptor in ``dram``; without an image (or a descriptor past it) any DRAM byte."""
    addr = f["desc_addr"]
    if dram is None or addr + HEADER_BYTES > dram.size:
        return [Access("dram", 0, _DRAM_TOP, True)]
    d = decode_descriptor(bytes(dram[addr:addr + MAX_DESCRIPTOR_BYTES]))
    head, operands, stages = descriptor_field_slots(d)
    written = {st.out for st in d.stages if st.out != NONE}
    out = [Access("dram", addr, addr + descriptor_bytes(d) - 1, False)]
    for what, touched, lo, hi in pass_extents(head, operands, stages):
        if touched and lo <= hi:
            k = int(what.split()[1]) if what.startswith("operand") else -1
            out.append(Access("dram", int(lo), int(hi), k in written))
    return out


_BY_OP = {Op.LOAD_INP: _load_inp, Op.LOAD_WGT: _load_wgt, Op.LOAD_PARAM: _load_param, Op.LOAD_GB: _load_gb,
          Op.GEMM: _gemm, Op.STORE: _store}


def accesses(insn: Insn, cfg: AcceleratorConfig, dram: Optional[np.ndarray] = None) -> list[Access]:
    """The memory ``insn`` reads and writes (module docstring); ``dram`` is the image that holds
    the VEC descriptors.  NOP, FENCE and END touch none."""
    if insn.op == Op.VEC:
        return _vec(insn.f, cfg, dram)
    rule = _BY_OP.get(insn.op)
    if rule is None:
        return []
    key = fields_key(insn)
    return rule(insn.f, cfg) if key is None else list(_accesses_of(key, cfg))


@lru_cache(maxsize=4096)
def _accesses_of(key: tuple, cfg: AcceleratorConfig) -> tuple[Access, ...]:
    """``accesses`` of the instructions whose opcode and fields are ``key`` (``hw.isa.fields_key``):
    a stream repeats its loads and GEMMs, and ``mapper.stitch`` asks again at each of its tries."""
    op, values = key
    return tuple(_BY_OP[op](dict(zip(FIELD_NAMES[op], values)), cfg))


def hazards(insns: list[Insn], sched: Schedule, cfg: AcceleratorConfig, dram: Optional[np.ndarray] = None,
            limit: int = 1, since: int = 0) -> list[Hazard]:
    """The racing pairs (``Hazard``) of ``insns`` under ``sched`` (``hw.timing.schedule`` of it), at
    most ``limit`` (None: all), in the order of their later instruction; with ``since`` only those
    whose later instruction is at index ``since`` or after.

    An instruction starts no earlier than a cycle after its dispatch, and dispatch follows program
    order, so an earlier instruction that ends by then is ordered with every later one: only the
    instructions still running are compared."""
    found: list[Hazard] = []
    running: list[tuple[int, int, Queue, list[Access]]] = []     # (index, end, unit, accesses)
    first = int(sched.dispatch[since]) + 1 if since < len(sched.start) else 0
    still = np.flatnonzero(sched.end[:since] > first).tolist()      # the others are over before any compared
    for j in itertools.chain(still, range(since, len(sched.start))):
        insn = insns[j]
        q = insn.queue
        if q == Queue.DISPATCH:
            continue
        earliest = int(sched.dispatch[j]) + 1
        running = [r for r in running if r[1] > earliest]
        mine = accesses(insn, cfg, dram)
        if j >= since:
            found += _races(j, int(sched.start[j]), q, mine, running)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        if mine:
            running.append((j, int(sched.end[j]), q, mine))
    return found


def _races(j: int, start: int, q: Queue, mine: list[Access], running: list) -> list[Hazard]:
    """The hazards of instruction ``j`` (unit ``q``, starting at ``start``, touching ``mine``)
    with the instructions ``running``, one per earlier instruction, in their order."""
    found = []
    for i, end, unit, theirs in running:
        if unit == q or end <= start:
            continue
        for a in theirs:
            b = next((b for b in mine if a.meets(b)), None)
            if b is not None:
                found.append(Hazard(i, j, a, b, end, start))
                break
    return found


def check_hazards(insns: list[Insn], sched: Schedule, cfg: AcceleratorConfig,
                  dram: Optional[np.ndarray] = None) -> None:
    """Raise ``HazardError`` naming the first racing pair of ``insns`` under ``sched``, if any."""
    found = hazards(insns, sched, cfg, dram)
    if found:
        raise HazardError(f"the units race: {found[0].describe(insns)}", found[0])
