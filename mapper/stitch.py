"""Layers' streams joined without the FENCEs between them (issue 18).

A layer's stream ends with FENCE: every instruction of it is done before the next layer's first
one is dispatched, so the next layer's loads, the pipelines' fill and the last STOREs' drain
follow one another.  ``join`` drops that FENCE and orders by tokens only the pairs of the two
streams that touch the same on-chip memory (``hw.hazards``: a load overwriting a buffer half
that a GEMM still reads, a gather from the global buffer reading rows a STORE writes, a GEMM
writing accumulators a STORE still reads): the earlier instruction pushes a token to the later
one on the link between their units (``hw.timing.token_link``; STORE -> LOAD is ``s2l``).  The
first race of the joined stream's schedule is ordered, from the last instruction of its unit
that meets it, and the stream is timed again, until none is left.  Where a race cannot be
ordered (no link, a flag already set, a token that another pop would take, a token rule broken,
more than ``MOST_TOKENS`` races), the FENCE stays.

DRAM is left out of the races: ``join`` serves a band chain (``mapper.bands``), whose layers
read only DRAM that none of them writes (the chain's input, keys and values, weights) and whose
last layer alone writes DRAM (the chain's output, which no layer of it reads).  The program's
whole-stream check (``hw.hazards`` with DRAM, ``make sim CHECK=1``) still covers it.

``join_all`` joins a run of streams and says where (``Joints``: the FENCEs dropped and the
flags set, by index in the streams' concatenation), so that the program builder applies the
same joints to the same streams at other DRAM addresses (``apply``).
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass
from typing import Optional

from hw.config import IDEAL_MEMORY, AcceleratorConfig
from hw.hazards import MEMORIES, Hazard, accesses, hazards
from hw.isa import DEP_FLAGS, Insn, Op, Queue, StreamError
from hw.timing import TOKEN_LINKS, schedule, token_link

__all__ = ["Joints", "join", "join_all", "apply", "memory_timings", "ON_CHIP", "MOST_TOKENS"]

#: The memories whose races ``join`` orders: all but DRAM.
ON_CHIP = tuple(m for m in MEMORIES if m != "dram")

#: Races ordered at most per join; streams needing more keep their FENCE.
MOST_TOKENS = 16


@dataclass(frozen=True)
class Joints:
    """Where a run of fenced streams was joined, by index in their concatenation: the FENCEs
    dropped and the (instruction, flag) set."""

    dropped: frozenset = frozenset()
    flags: tuple = ()


def memory_timings(cfg: AcceleratorConfig) -> tuple[AcceleratorConfig, ...]:
    """``cfg`` and the memories ``join`` orders its races under too: memory no limit
    (``hw.config.IDEAL_MEMORY``), a DRAM four times slower with four times the latency, and one
    four times faster."""
    slow = dict(dram_bytes_per_cycle=max(1, cfg.dram_bytes_per_cycle // 4), dram_latency=4 * cfg.dram_latency)
    return cfg, cfg.replace(**IDEAL_MEMORY), cfg.replace(**slow), cfg.replace(dram_bytes_per_cycle=4 * cfg.dram_bytes_per_cycle)


def join(first: list[Insn], second: list[Insn], cfg: AcceleratorConfig) -> list[Insn]:
    """``first`` (ending with FENCE) and ``second`` as one stream (module docstring); ``first +
    second`` when their races cannot all be ordered by tokens."""
    if not first or first[-1].op != Op.FENCE:
        raise ValueError("join: the first stream must end with FENCE")
    joined = first[:-1] + second
    split = len(first) - 1
    timings = memory_timings(cfg)
    for _ in range(MOST_TOKENS + 1):
        try:
            race = next((r for t in timings for r in [_first_race(joined, split, t)] if r is not None), None)
        except StreamError:            # a token rule (more than TOKEN_LIMIT outstanding, ...)
            break
        if race is None:
            return joined
        if race.earlier >= split or not _order(joined, race, split, cfg):
            break
    return first + second


def _first_race(insns: list[Insn], split: int, timing: AcceleratorConfig) -> Optional[Hazard]:
    """The first race on chip of an instruction from ``split`` on, ``insns`` timed on ``timing``."""
    found = hazards(insns, schedule(insns, timing, require_end=False), timing, limit=None, since=split)
    return next((h for h in found if h.first.memory in ON_CHIP), None)


def _order(insns: list[Insn], race: Hazard, split: int, cfg: AcceleratorConfig) -> bool:
    """Order ``race`` by a token from the last instruction of the first stream in its earlier
    instruction's unit that meets the later one (which covers the earlier ones: a unit finishes
    in program order); False when no token can.  Sets the flags on copies in ``insns``."""
    unit, later = insns[race.earlier].queue, insns[race.later]
    link = token_link(unit, later.queue)
    if link is None:
        return False
    push, pop = link
    mine = [a for a in accesses(later, cfg) if a.memory in ON_CHIP]
    pusher = next(i for i in range(split - 1, race.earlier - 1, -1) if insns[i].queue == unit
                  and any(a.meets(b) for a in accesses(insns[i], cfg) for b in mine))
    fifo = TOKEN_LINKS[unit][push]
    # the k-th pop of a FIFO takes its k-th push: the new pop takes the new token, and every other
    # pop its own, when as many tokens are pushed before the one as popped before the other
    if getattr(insns[pusher], push) or getattr(later, pop) or _counts(insns, fifo, pusher, race.later) != 0:
        return False
    for i, flag in ((pusher, push), (race.later, pop)):
        insns[i] = copy(insns[i])
        setattr(insns[i], flag, True)
    return True


def _counts(insns: list[Insn], fifo: str, pusher: int, popper: int) -> int:
    """The tokens of ``fifo`` pushed before ``pusher`` less those popped before ``popper``."""
    n = 0
    for i, insn in enumerate(insns[:max(pusher, popper)]):
        if insn.queue != Queue.DISPATCH:
            for flag, f in TOKEN_LINKS[insn.queue].items():
                if f == fifo and getattr(insn, flag):
                    if flag.startswith("push"):
                        n += i < pusher
                    else:
                        n -= i < popper
    return n


def join_all(streams: list[list[Insn]], cfg: AcceleratorConfig) -> tuple[list[Insn], Joints]:
    """The streams (each ending with FENCE) joined one after the other, and where (``Joints``)."""
    joined, origin = list(streams[0]), list(range(len(streams[0])))
    for s in streams[1:]:
        base = origin[-1] + 1
        was = len(joined) + len(s)
        joined = join(joined, s, cfg)
        origin = (origin[:-1] if len(joined) < was else origin) + list(range(base, base + len(s)))
    dropped = frozenset(set(range(origin[-1] + 1)) - set(origin))
    concat = [i for s in streams for i in s]
    flags = tuple((k, f) for insn, k in zip(joined, origin) for f in DEP_FLAGS
                  if getattr(insn, f) and not getattr(concat[k], f))
    return joined, Joints(dropped, flags)


def apply(stream: list[Insn], joints: Joints) -> list[Insn]:
    """``stream`` (the concatenation ``join_all`` joined, at other DRAM addresses) joined alike.
    ValueError when it is not that concatenation: a joint's FENCE or flag is elsewhere."""
    if any(k >= len(stream) or stream[k].op != Op.FENCE for k in joints.dropped) or \
            any(k >= len(stream) or TOKEN_LINKS.get(stream[k].queue, {}).get(f) is None for k, f in joints.flags):
        raise ValueError("stitch.apply: the stream is not the one its joints were found on")
    out = list(stream)
    for k, flag in joints.flags:
        out[k] = copy(out[k])
        setattr(out[k], flag, True)
    return [insn for k, insn in enumerate(out) if k not in joints.dropped]
