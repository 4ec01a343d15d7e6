"""Layers' streams joined without the FENCEs between them (issue 18).

A layer's stream ends with FENCE: every instruction of it is done before the next layer's first
one is dispatched, so the next layer's loads, the pipelines' fill and the last STOREs' drain
follow one another.  ``join`` drops that FENCE and orders by tokens only the pairs of the two
streams that touch the same on-chip memory (``hw.hazards``: a load overwriting a buffer half
that a GEMM still reads, a gather from the global buffer reading rows a STORE writes, a GEMM
writing accumulators a STORE still reads): the earlier instruction pushes a token to the later
one on the link between their units (``hw.timing.token_link``; STORE -> LOAD is ``s2l``).  The
joined stream is timed under each of ``memory_timings``; the first race found is ordered, from
the last instruction of its unit that meets it, and the stream is timed again, until none of
the timings shows one (a stream ordered for one memory alone races on another).  Where a race
cannot be ordered (no link, a flag already set, a token that another pop would take, a token
rule broken, more than ``MOST_TOKENS`` races), the FENCE stays.  Only what follows the dropped
FENCE is timed again (``hw.timing.Scheduler``): the instructions before it keep their timing.

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

from hw.config import FIELD_MAX, IDEAL_MEMORY, AcceleratorConfig
from hw.hazards import MEMORIES, Hazard, accesses, hazards
from hw.isa import DEP_FLAGS, Insn, Op, Queue, StreamError
from hw.timing import TOKEN_LINKS, Scheduler, token_link, token_links

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
    four times faster (each within its ``hw.config.FIELD_MAX``)."""
    bw, lat = cfg.dram_bytes_per_cycle, cfg.dram_latency
    most_bw, most_lat = FIELD_MAX["dram_bytes_per_cycle"], FIELD_MAX["dram_latency"]
    slow = dict(dram_bytes_per_cycle=max(1, bw // 4), dram_latency=min(most_lat, 4 * lat))
    return cfg, cfg.replace(**IDEAL_MEMORY), cfg.replace(**slow), cfg.replace(dram_bytes_per_cycle=min(most_bw, 4 * bw))


def join(first: list[Insn], second: list[Insn], cfg: AcceleratorConfig) -> list[Insn]:
    """``first`` and ``second`` (each ending with FENCE) as one stream (module docstring);
    ``first + second`` when their races cannot all be ordered by tokens."""
    return _join(first, second, _Timed(cfg, first))


class _Timed:
    """A stream being joined (from ``first``, ending with FENCE), timed under each of
    ``memory_timings`` (``hw.timing.Scheduler``) up to its last FENCE, with the state at each
    join's split kept (``states``, by index, in order): a join times only what follows its split,
    and a token pushed before it re-times from the split before the pusher."""

    def __init__(self, cfg: AcceleratorConfig, first: list[Insn]):
        if not first or first[-1].op != Op.FENCE:
            raise ValueError("join: the first stream must end with FENCE")
        self.cfg = cfg
        self.runs = [Scheduler(t) for t in memory_timings(cfg)]
        self.states = {0: [run.mark() for run in self.runs]}
        self.extend(first[:-1])

    def extend(self, insns: list[Insn]) -> None:
        for run in self.runs:
            run.extend(insns)

    def split_here(self) -> int:
        """Keep the state here as a split; its index."""
        split = len(self.runs[0].start)
        self.states[split] = [run.mark() for run in self.runs]
        return split

    def retime(self, insns: list[Insn], changed: int, split: int) -> None:
        """Time ``insns`` again from the last split at or before index ``changed`` up to ``split``
        (StreamError: a token rule the change broke)."""
        points = [p for p in self.states if p <= split]
        k = max(i for i, p in enumerate(points) if p <= changed)
        for run, mark in zip(self.runs, self.states[points[k]]):
            run.rewind(mark)
        for a, b in zip(points[k:], points[k + 1:]):
            self.extend(insns[a:b])
            self.states[b] = [run.mark() for run in self.runs]

    def first_race(self, joined: list[Insn], split: int) -> Optional[Hazard]:
        """The first race on chip of an instruction from ``split`` on, under the first timing that
        shows one.  None leaves the stream timed up to its final FENCE; a race (or a StreamError)
        leaves it at ``split``."""
        clean = False
        try:
            for run in self.runs:
                race = _race_after(run, joined, split)
                if race is not None:
                    return race
            clean = True
            return None
        finally:
            if not clean:
                for run, mark in zip(self.runs, self.states[split]):
                    run.rewind(mark)


def _race_after(run: Scheduler, joined: list[Insn], split: int) -> Optional[Hazard]:
    """The first race on chip of ``joined`` from ``split`` on, timed by ``run`` (timed up to
    ``split``, and left timed up to the final FENCE, whose token rule is checked)."""
    run.extend(joined[split:-1])
    before_fence = run.mark()
    run.extend(joined[-1:])
    run.rewind(before_fence)
    found = hazards(joined, run.schedule(require_end=False), run.cfg, limit=None, since=split)
    return next((h for h in found if h.first.memory in ON_CHIP), None)


def _join(first: list[Insn], second: list[Insn], timed: _Timed) -> list[Insn]:
    """``join`` on ``timed``, which has timed ``first`` up to its FENCE and is left timed up to
    the result's final FENCE."""
    if not second or second[-1].op != Op.FENCE:
        raise ValueError("join: the second stream must end with FENCE")
    split = timed.split_here()
    joined, changed = first[:-1] + second, split
    try:
        for _ in range(MOST_TOKENS + 1):
            race = timed.first_race(joined, split)
            if race is None:
                return joined
            pusher = _order(joined, race, split, timed.cfg)
            if pusher is None:
                break
            changed = min(changed, pusher)
            timed.retime(joined, pusher, split)
    except StreamError:             # a token rule (more than TOKEN_LIMIT outstanding, ...)
        pass
    timed.retime(first, changed, split)
    timed.extend(first[-1:] + second[:-1])
    return first + second


def _order(insns: list[Insn], race: Hazard, split: int, cfg: AcceleratorConfig) -> Optional[int]:
    """Order ``race`` by a token from the last instruction of the first stream in its earlier
    instruction's unit that meets the later one (which covers the earlier ones: a unit finishes
    in program order); that instruction's index, None when no token can.  Sets the flags on
    copies in ``insns``."""
    if race.earlier >= split:
        return None
    unit, later = insns[race.earlier].queue, insns[race.later]
    link = token_link(unit, later.queue)
    if link is None:
        return None
    push, pop = link
    mine = [a for a in accesses(later, cfg) if a.memory in ON_CHIP]
    pusher = next(i for i in range(split - 1, race.earlier - 1, -1) if insns[i].queue == unit
                  and any(a.meets(b) for a in accesses(insns[i], cfg) for b in mine))
    fifo = TOKEN_LINKS[unit][push]
    # the k-th pop of a FIFO takes its k-th push: the new pop takes the new token, and every other
    # pop its own, when as many tokens are pushed before the one as popped before the other
    if getattr(insns[pusher], push) or getattr(later, pop) or _counts(insns, fifo, pusher, race.later) != 0:
        return None
    for i, flag in ((pusher, push), (race.later, pop)):
        insns[i] = copy(insns[i])
        setattr(insns[i], flag, True)
    return pusher


def _counts(insns: list[Insn], fifo: str, pusher: int, popper: int) -> int:
    """The tokens of ``fifo`` pushed before ``pusher`` less those popped before ``popper``."""
    n = 0
    for i, insn in enumerate(insns[:max(pusher, popper)]):
        flags = {f: getattr(insn, f) for f in DEP_FLAGS}
        if insn.queue != Queue.DISPATCH and any(flags.values()):
            pops, pushes, _ = token_links(insn.queue, flags)
            n += (i < pusher and bool(pushes.get(fifo))) - (i < popper and bool(pops.get(fifo)))
    return n


def join_all(streams: list[list[Insn]], cfg: AcceleratorConfig) -> tuple[list[Insn], Joints]:
    """The streams (each ending with FENCE) joined one after the other, and where (``Joints``)."""
    joined, origin = list(streams[0]), list(range(len(streams[0])))
    timed = _Timed(cfg, joined)
    for s in streams[1:]:
        base = origin[-1] + 1
        was = len(joined) + len(s)
        joined = _join(joined, s, timed)
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
