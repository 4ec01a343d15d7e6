"""Activations kept in the global buffer between layers (issue 18): which, and where.

A *candidate* is the output of a MAC step (a convolution, a linear layer or a one-window
matrix product, its softmax epilogue included) that only MAC steps read through LOAD_INP (a
convolution's or linear layer's one input, a one-window product's first operand at its
start; a product's second operand is loaded as weights, from DRAM), that is no network
output and has a buffer of its own (not a concatenation's part).  Kept in the
global buffer, its producer STOREs into the buffer (``dst_gb``) and its readers gather from
it (``src_gb``), so its bytes cross DRAM neither way; it is stored with
``hw.timing.gb_resident_pitch`` bytes a pixel, so that the readers' gathers have no bank
conflict (a reader whose every tiling conflicts, or that splits into parts, makes the
tensor no candidate).

The cost model is the schedule itself: a step's cycles are its mapping's exact cycles
(``mapper.lower.map_layer``) with its input and output where they are.  Candidates are taken
by the cycles they save per byte (each timed alone), then placed first fit by lifetime (from
the producing step to the last reading step, as the DRAM activation region is) in
``global_buf_bytes``; a candidate is kept only when it fits and when the producer's and
readers' cycles together, timed again with the tensors kept so far, are not more than with
the tensor in DRAM.  The chains run in row bands (``mapper.bands``) are chosen first and hold
their slots from their first step to their last in the same first-fit allocator; a kept
tensor is placed around them (none is a chain's input, intermediate or output: a chain's
steps are no MAC steps here).
"""

from __future__ import annotations

from dataclasses import dataclass

from hw.config import AcceleratorConfig
from hw.timing import gb_holds_tensors, gb_resident_align, gb_resident_pitch

from .bands import plan_chains
from .fusion import Step, plan
from .ir import INPUT, Conv2d, Linear, MatMul, Model, reads_alone
from .layout import storage_plan
from .lower import MappingError, map_layer

__all__ = ["Resident", "planned", "plan_residency", "gb_fields"]


@dataclass(frozen=True)
class Resident:
    """A tensor kept in the global buffer: its byte address there, bytes per pixel and size."""

    addr: int
    pitch: int
    size: int


@dataclass
class _Candidate:
    tensor: str
    producer: int               # step index
    readers: tuple[int, ...]    # step indices
    pitch: int
    size: int
    saving: int = 0             # cycles saved, timed alone

    @property
    def steps(self) -> tuple[int, ...]:
        return (self.producer, *self.readers)


def gb_fields(step: Step, resident: dict[str, Resident]) -> dict:
    """``map_layer``'s ``in_gb`` and ``out_gb`` of a MAC step: the pitch of its input and output
    in the global buffer, 0 for those in DRAM."""
    src = resident.get(step.layer.inputs[0]) if step.layer.inputs else None
    dst = resident.get(step.output)
    return {"in_gb": src.pitch if src else 0, "out_gb": dst.pitch if dst else 0}


def planned(model: Model, cfg: AcceleratorConfig, *, mac_only: bool = False, fuse: bool = True,
            band_rows: int = 0) -> tuple[list[Step], dict[str, Resident]]:
    """The plan's steps (``mapper.fusion.plan``) with its band chains (``mapper.bands``; ``band_rows``
    as there) and the tensors kept in the global buffer: neither without fusion or for a MAC-only
    plan, nor on a global buffer that cannot hold them (``hw.timing.gb_holds_tensors``)."""
    steps = plan(model, cfg, mac_only=mac_only, fuse=fuse)
    if not fuse or mac_only or not gb_holds_tensors(cfg):
        return steps, {}
    for st in steps:        # a layer the search below would map that cannot be mapped at all: refused first
        if st.action == "mac" and _plain(st.layer):
            map_layer(st.layer, cfg, **st.map_args)
    steps, chains = plan_chains(model, cfg, steps, band_rows=band_rows)
    busy = [(c.steps[0], c.steps[-1], 0, c.gb_bytes) for c in chains]    # at 0: chains' lifetimes are disjoint
    return steps, plan_residency(model, cfg, steps, busy)


def plan_residency(model: Model, cfg: AcceleratorConfig, steps: list[Step],
                   busy: list[tuple[int, int, int, int]] = ()) -> dict[str, Resident]:
    """The tensors of ``model`` kept in the global buffer under plan ``steps`` (module docstring),
    around the regions ``busy`` (first step, last step, address, bytes: the chains' slots)."""
    cands = _candidates(model, cfg, steps)
    if not cands:
        return {}
    pitches: dict[str, int] = {}
    for c in cands:
        c.saving = _cycles(steps, cfg, c.steps, {}) - _cycles(steps, cfg, c.steps, {c.tensor: c.pitch})
    placed: dict[str, tuple[int, int, int, int]] = {f"chain {i}": b for i, b in enumerate(busy)}
    for c in sorted(cands, key=lambda c: (-c.saving / c.size, c.producer)):
        if c.saving < 0:
            continue
        addr = _first_fit(placed.values(), c.producer, max(c.readers), c.size, cfg.global_buf_bytes)
        if addr is None:
            continue
        with_it = {**pitches, c.tensor: c.pitch}
        if _cycles(steps, cfg, c.steps, with_it) > _cycles(steps, cfg, c.steps, pitches):
            continue
        pitches = with_it
        placed[c.tensor] = (c.producer, max(c.readers), addr, c.size)
    return {t: Resident(addr, pitches[t], size) for t, (_, _, addr, size) in placed.items() if t in pitches}


def _candidates(model: Model, cfg: AcceleratorConfig, steps: list[Step]) -> list[_Candidate]:
    storage = storage_plan(model)
    aliased = {s.buffer for name, s in storage.items() if s.buffer != name}
    readers: dict[str, list[int]] = {}
    for i, st in enumerate(steps):
        for t in st.layer.inputs:
            readers.setdefault(t, []).append(i)
        if st.vpass is not None:
            for b in st.vpass.buffers:
                readers.setdefault(b, []).append(-1)           # a vector pass reads it: stays in DRAM
    align = gb_resident_align(cfg)
    outputs = set(model.output_names) | {INPUT}
    out = []
    for i, st in enumerate(steps):
        t = st.output
        if (st.action != "mac" or not _plain(st.layer) or t in outputs
                or t in aliased or storage[t].buffer != t or storage[t].offset != 0 or not readers.get(t)):
            continue
        rs = readers[t]
        if any(j < 0 or not _reads_by_load(steps[j], t) for j in rs):
            continue
        h, w, c = storage[t].shape
        pitch = gb_resident_pitch(c, cfg)
        size = -(-h * w * pitch // align) * align
        if size <= cfg.global_buf_bytes:
            out.append(_Candidate(t, i, tuple(rs), pitch, size))
    return out


def _plain(layer) -> bool:
    """A MAC layer whose input and output are plain HWC tensors: a convolution, a linear layer,
    or a matrix product over one window (its operands' heads side by side in the channels)."""
    return isinstance(layer, (Conv2d, Linear)) or (isinstance(layer, MatMul) and layer.plain)


def _reads_by_load(step: Step, tensor: str) -> bool:
    """Whether ``step`` reads ``tensor`` through LOAD_INP only, from its first channel."""
    return step.action == "mac" and _plain(step.layer) and reads_alone(step.layer, tensor)


def _cycles(steps: list[Step], cfg: AcceleratorConfig, which: tuple[int, ...], pitches: dict[str, int]) -> float:
    """Cycles of steps ``which`` with the tensors ``pitches`` in the global buffer (inf when a
    step cannot be mapped so: a part split, or every tiling's gathers conflict)."""
    total = 0
    for i in dict.fromkeys(which):
        st = steps[i]
        src = pitches.get(st.layer.inputs[0], 0)
        try:
            parts = map_layer(st.layer, cfg, **st.map_args, in_gb=src,
                              out_gb=pitches.get(st.output, 0))
        except MappingError:
            return float("inf")
        total += sum(lo.cycles * n for lo, n in parts)
    return total


def _first_fit(placed, first: int, last: int, size: int, capacity: int) -> int | None:
    """The lowest address where ``size`` bytes are free from step ``first`` to ``last``, or None."""
    busy = sorted((a, a + s) for f, l, a, s in placed if f <= last and first <= l)
    addr = 0
    for lo, hi in busy:
        if addr + size <= lo:
            break
        addr = max(addr, hi)
    return addr if addr + size <= capacity else None
