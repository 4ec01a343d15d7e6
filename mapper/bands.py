"""Chains of MAC layers run in row bands through the global buffer (issue 18).

**Which layers.**  A *chain* is a run of MAC steps L1 -> L2 -> ... -> Ln (n >= 2), consecutive
among the plan's steps that have instructions (``mapper.fusion``), where

* each intermediate output is read by the next layer alone: no network output, no
  concatenation part (a buffer of its own); a layer may apply a softmax epilogue (a band holds
  whole rows);
* every layer keeps rows over one spatial grid: a linear layer, a 1x1 stride-1 convolution or
  a product over one window (``MatMul.plain``: output token t needs token t of its first
  operand; its second is read whole by every band), or a stride-1 k x k convolution padded by
  k // 2, dense or depthwise (output row y needs input rows y - k//2 .. y + k//2: a halo of
  k // 2 rows).  The grid is the convolutions' (all the same, and ``H x W`` tokens for the
  token layers), or a column of tokens for a chain of token layers only;
* a later layer takes the previous output as its only input, or as a product's first operand
  from channel 0 (the chain's slot holds that tensor alone);
* a layer after the first does not fold its kernel taps into channels (an im2col gather reads
  its input at the tensor's own pitch, not the buffer's).

SegFormer's ``mlp.fc1 -> mlp.dwconv (+GELU in its STOREs) -> mlp.fc2`` is one, and its
``attn.qk (+ the softmax epilogue) -> attn.av -> attn.proj``, which keeps a band of queries'
scores in the buffer; Swin's ``mlp.fc1 (+GELU) -> mlp.fc2`` and a decoder's ``linear_fuse ->
linear_pred`` others.

**The band program.**  The last layer's output rows are cut in bands of ``rows`` rows (the
last band may be shorter).  For band ``b`` every layer computes the rows the next one needs:
its output band widened by the next layer's halo, clipped to the grid.  The halo rows are
*recomputed* by each band, not kept from the previous one: a band's input rows must be
contiguous in the buffer for LOAD_INP's window, and the ISA has no copy within the global
buffer to move the previous band's last rows in front of the next band's (a ring of slots
would wrap inside a window).  Each intermediate tensor has one *slot* in the global buffer,
holding only the rows of one band (``gb_resident_pitch`` bytes a pixel, placed at
``gb_resident_align``, so that gathers from it have no bank conflict, as for
``mapper.residency``); the first layer reads DRAM, each next layer its predecessor's slot,
and the last writes DRAM.  A layer's band is a problem of its own (``Part``): a k x k layer's
input is the slot's ``h`` rows, its output rows ``row0 .. row0 + rows`` of the slot's
coordinates (``mapper.lower.Problem``; ``band_out``: its output buffer holds the band's rows
alone), so the first band's top padding and the last band's bottom padding are the slot's
edges, which are the grid's there.  Every layer's stream ends with FENCE, so a band's layers
run one after the other and the next band's first layer overwrites slots that are read.

**Cost model.**  A chain's cycles are the exact cycles of its band streams (each band
problem mapped by ``mapper.lower.map_problem`` and timed by ``hw.timing.schedule``; streams
separated by FENCEs add).  Band heights are tried from the largest whose slots fit the global
buffer down (``BAND_COUNTS`` bands), stopping at the first that is slower than the best so
far, or at the first when it does not pay (smaller bands only add fill, drain and halo rows;
on E every chain's cycles grow as its bands shrink); the chain is taken when its best is
faster than its layers one by one with the intermediates in DRAM; a run that does not pay whole
gives its longest parts that pay (``_paying``).  A band of the whole grid is
not taken: it is the intermediates kept whole in the buffer, which ``mapper.residency`` does
with the same streams and may keep the chain's input and output beside them.  Chains are
chosen before the residency, and their slots are placed in the same allocator
(``mapper.residency``'s first fit by lifetime): a chain holds its slots from its first step
to its last, and a kept tensor is placed around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from hw.cli import counted
from hw.config import AcceleratorConfig
from hw.isa import Insn
from hw.timing import gb_resident_align, gb_resident_pitch

from .fusion import Step
from .ir import Conv2d, Linear, MatMul, Model, reads_alone
from .layout import storage_plan
from .lower import (Lowered, MappingError, Problem, build_stream, layer_cycles, map_layer, map_problem, problem_of,
                    token_shape)
from . import tiling_cache
from .stitch import Joints, apply, join_all

__all__ = ["Chain", "Part", "Slot", "find_chains", "plan_chains", "band_parts", "BAND_COUNTS"]

#: Band counts tried (band height ``ceil(H / n)``, each distinct height once), largest band first:
#: every count, since the largest that fits the buffer is often the fastest (it was 1, 2, 3, 4, 6,
#: 8, 12, ... 64: SegFormer-B2's stage-0 MLP took 12 bands of 11 rows where 10 of 13 fit).
BAND_COUNTS = tuple(range(1, 65))


@dataclass(frozen=True)
class Slot:
    """An intermediate tensor's place in the global buffer: one band's rows of it."""

    tensor: str
    addr: int
    pitch: int
    size: int


@dataclass(frozen=True)
class Part:
    """One layer of a chain in one band: its problem and the grid rows it reads and writes."""

    member: int            # index of the layer in the chain
    problem: Problem
    in_row0: int           # grid row at the start of the input it reads (a slot, or the DRAM tensor)
    out_row0: int          # grid row of its first output row


@dataclass(frozen=True)
class Chain:
    """A chain run in bands (module docstring): its plan steps, bands and slots."""

    members: tuple[Step, ...]          # the plan's steps of its layers, as planned alone
    steps: tuple[int, ...]             # their indices in the plan
    grid: tuple[int, int]
    rows: int                          # the band height of the last layer's output
    bands: tuple[tuple[Part, ...], ...]
    slots: tuple[Slot, ...]            # one per intermediate tensor, in chain order
    cycles: int                        # the band streams' exact cycles
    layer_cycles: int                  # the layers one by one, intermediates in DRAM
    lowered: tuple[Lowered, ...] = field(default=(), compare=False, repr=False)   # every part, in stream order
    #: the parts' streams joined (``mapper.stitch``; DRAM at the parts' own addresses) and where
    stream: tuple[Insn, ...] = field(default=(), compare=False, repr=False)
    joints: Joints = field(default=Joints(), compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.layer.name for m in self.members)

    @property
    def output(self) -> str:
        return self.members[-1].output

    @property
    def parts(self) -> tuple[Part, ...]:
        """Every layer of every band, in stream order (``lowered``'s)."""
        return tuple(p for band in self.bands for p in band)

    @property
    def gb_bytes(self) -> int:
        return sum(s.size for s in self.slots)

    @property
    def macs(self) -> int:
        return sum(m.layer.macs for m in self.members)

    def describe(self) -> str:
        last = self.grid[0] - (len(self.bands) - 1) * self.rows
        chain = " -> ".join(n.rsplit(".", 1)[-1] for n in self.names)
        return (f"band chain {chain}: {counted(len(self.bands), 'band')} of {counted(self.rows, 'row')}"
                f"{f' (last {last})' if last != self.rows else ''}, {self.gb_bytes:,} B in the buffer, "
                f"{len(self.joints.dropped)} of {len(self.lowered) - 1} FENCEs between parts dropped")


def _halo(layer) -> Optional[int]:
    """Rows a layer reads beyond each side of an output band, or None when it does not keep rows."""
    if isinstance(layer, Linear) or (isinstance(layer, MatMul) and layer.plain):
        return 0
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        if layer.stride != 1 or layer.dilation != 1 or kh != kw or kh % 2 == 0 or layer.padding != kh // 2:
            return None
        if layer.groups != 1 and not layer.depthwise:
            return None
        return kh // 2
    return None


def _grid_of(layer) -> tuple[Optional[tuple[int, int]], int]:
    """(the convolution's grid or None for a token layer, its tokens)."""
    if isinstance(layer, Conv2d):
        return (layer.in_h, layer.in_w), layer.in_h * layer.in_w
    if isinstance(layer, MatMul):
        return None, layer.m
    return None, layer.tokens


def _member(step: Step) -> bool:
    return step.action == "mac" and _halo(step.layer) is not None


class _Finder:
    def __init__(self, model: Model, cfg: AcceleratorConfig, steps: list[Step]):
        self.model, self.cfg, self.steps = model, cfg, steps
        self.storage = storage_plan(model)
        self.users: dict[str, list[str]] = {}
        for layer in model.layers:
            for src in layer.inputs:
                self.users.setdefault(src, []).append(layer.name)
        self.outputs = set(model.output_names)

    def member(self, step: Step) -> bool:
        """``_member``, but not a kernel run a tap at a time (``Problem.per_tap``, as dilated ones are
        not: shifted windows are not run in bands)."""
        return _member(step) and not problem_of(step.layer, self.cfg, step.in_pitch).per_tap

    def links(self, a: Step, b: Step, tokens: int, grid) -> bool:
        """Whether ``b`` can follow ``a`` in a chain over ``tokens`` tokens on ``grid``."""
        t = a.output
        st = self.storage[t]
        if (not self.member(b) or not reads_alone(b.layer, t) or self.users.get(t) != [b.layer.name]
                or t in self.outputs or st.buffer != t or st.offset != 0):
            return False
        g, n = _grid_of(b.layer)
        if n != tokens or (g is not None and grid is not None and g != grid):
            return False
        return not problem_of(b.layer, self.cfg, b.in_pitch).fold

    def chains(self) -> list[list[int]]:
        code = [i for i, st in enumerate(self.steps) if st.action in ("mac", "vector")]
        found, cur, tokens, grid = [], [], 0, None
        for i in code:
            st = self.steps[i]
            if cur and self.links(self.steps[cur[-1]], st, tokens, grid):
                cur.append(i)
                grid = grid or _grid_of(st.layer)[0]
                continue
            if len(cur) >= 2:
                found.append(cur)
            cur, (grid, tokens) = ([i], _grid_of(st.layer)) if self.member(st) else ([], (None, 0))
        if len(cur) >= 2:
            found.append(cur)
        return found


def find_chains(model: Model, cfg: AcceleratorConfig, steps: list[Step]) -> list[list[int]]:
    """The chains of the plan ``steps`` (module docstring), as lists of step indices."""
    return _Finder(model, cfg, steps).chains()


def _chain_grid(members: list[Step]) -> tuple[int, int]:
    for m in members:
        g, _ = _grid_of(m.layer)
        if g is not None:
            return g
    return _grid_of(members[0].layer)[1], 1


def _band_problem(step: Step, cfg: AcceleratorConfig, out_rows: tuple[int, int], in_rows: tuple[int, int],
                  width: int, in_gb: int, out_gb: int) -> Problem:
    """The problem of one layer over one band: output grid rows ``out_rows``, reading ``in_rows``."""
    layer = step.layer
    base = replace(problem_of(layer, cfg, step.in_pitch, in_gb), act=step.act, softmax_row=step.softmax_row,
                   out_gb=out_gb)
    (o0, o1), (s, e) = out_rows, in_rows
    if isinstance(layer, (Linear, MatMul)):
        h, w = token_shape((o1 - o0) * width)
        return replace(base, h=h, w=w)
    if _halo(layer) == 0:
        return replace(base, h=o1 - o0)
    return replace(base, h=e - s, row0=o0 - s, rows=o1 - o0, band_out=True)


def band_parts(members: list[Step], cfg: AcceleratorConfig, grid: tuple[int, int], rows: int,
               pitches: list[int]) -> list[list[Part]]:
    """Every band's parts, layer by layer (module docstring); ``pitches`` are the slots'."""
    height, width = grid
    halos = [_halo(m.layer) for m in members]
    n = len(members)
    bands = []
    for a in range(0, height, rows):
        out = [(0, 0)] * n
        out[-1] = (a, min(a + rows, height))
        for i in range(n - 1, 0, -1):        # each layer writes what the next one reads
            o0, o1 = out[i]
            out[i - 1] = (max(o0 - halos[i], 0), min(o1 + halos[i], height))
        parts = []
        for i, m in enumerate(members):
            o0, o1 = out[i]
            ins = (max(o0 - halos[i], 0), min(o1 + halos[i], height))
            p = _band_problem(m, cfg, out[i], ins, width, pitches[i - 1] if i else 0, pitches[i] if i < n - 1 else 0)
            parts.append(Part(i, p, ins[0], o0))
        bands.append(parts)
    return bands


def _slots(members: list[Step], bands: list[list[Part]], cfg: AcceleratorConfig) -> list[Slot]:
    align = gb_resident_align(cfg)
    slots, addr = [], 0
    for i, m in enumerate(members[:-1]):
        pitch = gb_resident_pitch(m.layer.out_shape[2], cfg)
        pixels = max(band[i].problem.oh * band[i].problem.ow for band in bands)   # of its largest band
        size = -(-pixels * pitch // align) * align
        slots.append(Slot(m.output, addr, pitch, size))
        addr += size
    return slots


def _timed(members, cfg, grid, rows) -> Optional[tuple[list, list, int, list]]:
    """(bands, slots, cycles, lowered parts) of a chain at band height ``rows``, or None when its
    slots do not fit the global buffer or a band cannot be mapped so."""
    pitches = [gb_resident_pitch(m.layer.out_shape[2], cfg) for m in members[:-1]]
    bands = band_parts(members, cfg, grid, rows, pitches)
    slots = _slots(members, bands, cfg)
    if sum(s.size for s in slots) > cfg.global_buf_bytes:
        return None
    try:
        lowered = [map_problem(part.problem, cfg) for band in bands for part in band]
    except MappingError:
        return None
    return bands, slots, sum(lo.cycles for lo in lowered), lowered


def _best(members: list[Step], idx: list[int], cfg: AcceleratorConfig, band_rows: int = 0) -> Optional[Chain]:
    """The chain at its fastest band height, or None when it does not fit or does not pay; with
    ``band_rows`` the chain at that height whenever it fits, paying or not."""
    grid = _chain_grid(members)
    alone = sum(lo.cycles * n for m in members
                for lo, n in map_layer(m.layer, cfg, **m.map_args))
    heights = [min(band_rows, grid[0])] if band_rows else \
        sorted({-(-grid[0] // n) for n in BAND_COUNTS if n <= grid[0]}, reverse=True)
    best = None
    for rows in heights:
        got = _timed(members, cfg, grid, rows)
        if got is None:
            continue
        bands, slots, cycles, lowered = got
        if (best is not None and cycles > best.cycles) or (best is None and cycles >= alone and not band_rows):
            break           # smaller bands add fill, drain and halo rows: not tried further
        best = Chain(tuple(members), tuple(idx), grid, rows, tuple(tuple(b) for b in bands), tuple(slots),
                     cycles, alone, tuple(lowered))
    if best is not None and len(best.bands) == 1 and not band_rows:
        return None         # intermediates kept whole: the residency's, which may keep the input and output too
    return best if best is not None and (band_rows or best.cycles < alone) else None


def _paying(steps: list[Step], run: list[int], cfg: AcceleratorConfig, band_rows: int) -> list[Chain]:
    """The chains taken from a run of chainable steps: the whole run when it pays, else its
    longest part that pays (the later layers first among equals) and the same again on either
    side of it."""
    for n in range(len(run), 1, -1):
        for a in range(len(run) - n, -1, -1):
            chain = _best([steps[i] for i in run[a:a + n]], run[a:a + n], cfg, band_rows)
            if chain is not None:
                return _paying(steps, run[:a], cfg, band_rows) + [chain] + \
                    _paying(steps, run[a + n:], cfg, band_rows)
    return []


def plan_chains(model: Model, cfg: AcceleratorConfig, steps: list[Step], *,
                band_rows: int = 0) -> tuple[list[Step], list[Chain]]:
    """The plan with its chains taken (the first layer's step ``chain``, the others ``banded``
    into it), and the chains.  ``band_rows`` > 0 takes every chain that fits in bands of that
    many rows (at most the grid's), whether it pays or not: how the tests reach the band edges."""
    steps = list(steps)
    taken = []
    for chain in (c for run in find_chains(model, cfg, steps) for c in _paying(steps, run, cfg, band_rows)):
        chain = _joined(chain, cfg)
        idx = chain.steps
        first = steps[idx[0]]
        steps[idx[0]] = Step(first.layer, "chain", first.act, first.act_layer, output=chain.output, chain=chain,
                             in_pitch=first.in_pitch)
        for i in idx[1:]:
            steps[i] = Step(steps[i].layer, "banded", into=first.layer.name)
        taken.append(chain)
    return steps, taken


def _joined(chain: Chain, cfg: AcceleratorConfig) -> Chain:
    """``chain`` with its parts' streams joined (``mapper.stitch``) and timed so, remembered per
    process and on disk (``mapper.tiling_cache``: the parts' streams are rebuilt, the joints
    applied).  The parts are built with the slots at their addresses in the global buffer, as the
    program has them (a lowered part has every tensor kept there at address 0)."""
    key = (tuple((lo.problem, lo.tiling, part.member) for lo, part in zip(chain.lowered, chain.parts)),
           tuple((s.addr, s.pitch) for s in chain.slots))
    got = _JOINED.get((cfg, key))
    if got is None:
        streams = [build_stream(lo.problem, lo.tiling, cfg, _slot_placement(chain, lo, part))
                   for lo, part in zip(chain.lowered, chain.parts)]
        known = tiling_cache.lookup(key, cfg, 0)
        if known is not None:
            joints = Joints(frozenset(known["dropped"]), tuple((k, f) for k, f in known["flags"]))
            stream, cycles = apply([i for s in streams for i in s], joints), known["cycles"]
        else:
            stream, joints = join_all(streams, cfg)
            cycles = layer_cycles(stream, cfg)
            tiling_cache.remember(key, cfg, 0, {"dropped": sorted(joints.dropped), "flags": list(joints.flags),
                                                "cycles": cycles})
        got = _JOINED[(cfg, key)] = (tuple(stream), joints, cycles)
    stream, joints, cycles = got
    return replace(chain, stream=stream, joints=joints, cycles=cycles)


def _slot_placement(chain: Chain, lo: Lowered, part: Part):
    """A part's placement (``lo.layout``) with the slots it reads and writes at their addresses."""
    pl = lo.layout
    if part.member > 0:
        pl = replace(pl, input=pl.input + chain.slots[part.member - 1].addr)
    if part.member < len(chain.members) - 1:
        pl = replace(pl, output=pl.output + chain.slots[part.member].addr)
    return pl


#: Chains joined in this process, by configuration, parts and slots (a network repeats its blocks).
_JOINED: dict = {}
