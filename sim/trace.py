"""A simulation as a Chrome / Perfetto trace (``make sim ARGS=--trace``, ``trace.json``).

The Trace Event Format requires the complete events (``ph: "X"``) of one track
(``pid``, ``tid``) to nest or not overlap at all; Perfetto drops the slices that
partly overlap an earlier one.  The tracks are laid out so that they cannot:

* process 1, "<model> on <config>", thread 1 "layers": one event per layer with
  cycles, from its first instruction's dispatch (``LayerResult.start_cycle``) to its
  FENCE's end; layers run one after another (FENCE between them);
* process 2, "units", threads 1-3 "LOAD unit", "COMPUTE unit", "STORE unit":
  one event per instruction for the cycles it occupies its unit (start to
  start + occupancy, ``hw.timing.occupancy_and_latency``); a unit takes the
  next instruction only once it is free, so these never overlap;
* process 2, threads 10 and up, one per unit and PE group ("LOAD -> PE 0,8",
  "STORE <- PE 0-15", "LOAD -> global buffer"): one event per instruction from
  its start to the end of its effects (data in the PE group's buffers, or a
  store's data in DRAM), which includes the DRAM latency; when two such
  instructions of one group are in flight at once the later one goes to a
  second lane of that group ("... (2)").

Times are in microseconds at the configuration's clock, given to the
nanosecond: every event boundary is a cycle turned into whole nanoseconds
(``ns``), so a reader that rounds ``ts * 1000`` and ``dur * 1000`` to
nanoseconds (as Perfetto does) gets back exactly the boundaries written.

Instruction events are written for the layers asked for (``layers``; every
layer by default when the network has at most ``DETAIL_CAP`` instructions,
otherwise the layers with the most cycles that fit in it).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

from hw.config import AcceleratorConfig
from hw.isa import Insn, Op, Queue
from hw.timing import DECODE_STAGES, RUN_OVERHEAD, occupancy_and_latency, schedule
from mapper.ir import Model
from mapper.residency import planned
from mapper.lower import _insn

from .outputs import config_tag
from .simulator import SimResult
from .streams import step_parts

__all__ = ["build_trace", "default_detail", "DETAIL_CAP"]

#: Instructions detailed by default (about 2.5 events each, ~100 bytes per event).
DETAIL_CAP = 300_000
_UNITS = (Queue.LOAD, Queue.COMPUTE, Queue.STORE)
_UNIT_TID = {q: i + 1 for i, q in enumerate(_UNITS)}
_FIRST_GROUP_TID = 10


def ns(cycle: int, cfg: AcceleratorConfig) -> int:
    """Whole nanoseconds at ``cycle`` (a non-decreasing function of the cycle)."""
    return math.floor(cycle / cfg.clock_ghz + 0.5)


def _us(nanoseconds: int) -> float:
    return round(nanoseconds / 1000, 3)


def _span(name: str, pid: int, tid: int, t0: int, t1: int, cfg: AcceleratorConfig, **fields) -> dict:
    a, b = ns(t0, cfg), ns(t1, cfg)
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": _us(a), "dur": _us(b - a), **fields}


def default_detail(res: SimResult, cap: int = DETAIL_CAP) -> list[str]:
    """Every layer with instructions if they are at most ``cap`` in all; otherwise the layers with
    the most cycles whose instructions fit in ``cap``."""
    layers = [r for r in res.layers if r.instructions]
    if sum(r.instructions for r in layers) <= cap:
        return [r.name for r in layers]
    chosen, used = [], 0
    for r in sorted(layers, key=lambda r: r.cycles, reverse=True):
        if used + r.instructions <= cap:
            chosen.append(r.name)
            used += r.instructions
    return chosen


def _group(insn: Insn) -> Optional[tuple]:
    """The PE group an instruction moves data to or from, as a sortable key (None: none)."""
    f = insn.f
    if insn.op == Op.LOAD_GB:
        return (_UNIT_TID[insn.queue], -1, 0, 0)
    if "pe_first" in f and insn.queue in _UNIT_TID:
        count = f["pe_count"]
        step = f.get("pe_step", 1) if count > 1 else 1       # one PE: the step says nothing
        return (_UNIT_TID[insn.queue], f["pe_first"], step or 1, count)
    return None


def _group_name(key: tuple) -> str:
    unit, first, step, count = key
    q = _UNITS[unit - 1]
    arrow = "<-" if q == Queue.STORE else "->"
    if first < 0:
        return f"{q.name} {arrow} global buffer"
    last = first + step * (count - 1)
    pes = (f"{first}" if count == 1 else f"{first}-{last}" if step == 1 else f"{first},{last}" if count == 2
           else f"{first},{first + step},...,{last}")
    return f"{q.name} {arrow} PE {pes}"


class _Lanes:
    """Per PE group, lanes whose events do not overlap (greedy: the first lane free at the start)."""

    def __init__(self):
        self.ends: dict[tuple, list[int]] = {}

    def place(self, key: tuple, a: int, b: int) -> int:
        ends = self.ends.setdefault(key, [])
        for lane, end in enumerate(ends):
            if end <= a:
                ends[lane] = b
                return lane
        ends.append(b)
        return len(ends) - 1


def _layer_events(step, cfg: AcceleratorConfig, start: int, lanes: _Lanes, mapped_for=None,
                  resident: dict | None = None) -> Iterable[dict]:
    """Unit and group events of one layer timed on ``cfg`` (mapped for ``mapped_for``, by default
    ``cfg``) that starts in cycle ``start`` (``tid`` of group events is the key ``(group, lane)``,
    numbered later)."""
    offset = start - DECODE_STAGES      # a stream scheduled alone dispatches its first at DECODE_STAGES
    for stream, repeat, _ in step_parts(step, mapped_for or cfg, resident):
        sched = schedule(stream + [_insn(Op.END)], cfg)
        cycles = sched.total_cycles - RUN_OVERHEAD
        for _ in range(repeat):
            for k, insn in enumerate(stream):
                q = insn.queue
                if q not in _UNIT_TID:
                    continue
                s, e = offset + int(sched.start[k]), offset + int(sched.end[k])
                busy = occupancy_and_latency(insn, cfg)[0]
                args = {"layer": step.layer.name, "index": k}
                yield _span(insn.op.name, 2, _UNIT_TID[q], s, s + busy, cfg, args=args)
                key = _group(insn)
                if key is not None:
                    lane = lanes.place(key, ns(s, cfg), ns(e, cfg))
                    yield _span(insn.op.name, 2, (key, lane), s, e, cfg, args=args)
            offset += cycles


def _metadata(pid: int, tid: int, kind: str, name: str) -> dict:
    return {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}}


def _thread(pid: int, tid: int, name: str) -> list[dict]:
    """A track's name, and its place: tracks are shown in the order of their ``tid``."""
    return [_metadata(pid, tid, "thread_name", name),
            {"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}}]


def build_trace(res: SimResult, model: Model, cfg: AcceleratorConfig, detail: Iterable[str]) -> dict:
    """The trace document (``{"traceEvents": [...], "otherData": {...}}``); instruction events for
    the layers named in ``detail``."""
    ev = [_metadata(1, 1, "process_name", f"{res.model} on {config_tag(cfg)}"), *_thread(1, 1, "layers")]
    for r in res.layers:
        if r.cycles:
            ev.append(_span(r.name, 1, 1, r.start_cycle, r.start_cycle + r.cycles, cfg, cat=r.kind,
                            args={"macs": r.macs, "cycles": r.cycles, "utilization": round(r.utilization, 4),
                                  "energy_pj": round(r.energy_pj, 1), "mapping": r.mapping}))
    detail = set(detail)
    starts = {r.name: r.start_cycle for r in res.layers}
    every, resident = planned(model, cfg, mac_only=res.extra.get("mac_only", False), fuse=res.extra.get("fuse", True))
    steps = [st for st in every if st.layer.name in detail]
    lanes = _Lanes()
    insn_events = [e for st in steps for e in _layer_events(st, res.config, starts[st.layer.name], lanes, cfg, resident)]
    if insn_events:
        ev.append(_metadata(2, 1, "process_name", "units"))
        ev += [e for q, tid in _UNIT_TID.items() for e in _thread(2, tid, f"{q.name} unit")]
    group_tids = {}
    for key in sorted({(g, lane) for g, ends in lanes.ends.items() for lane in range(len(ends))}):
        group_tids[key] = _FIRST_GROUP_TID + len(group_tids)
        name = _group_name(key[0]) + (f" ({key[1] + 1})" if key[1] else "")
        ev += _thread(2, group_tids[key], name)
    for e in insn_events:
        if isinstance(e["tid"], tuple):
            e["tid"] = group_tids[e["tid"]]
        ev.append(e)
    return {"traceEvents": ev,
            "otherData": {"model": res.model, "variant": res.variant, "config": config_tag(cfg), "clock_ghz": cfg.clock_ghz,
                          "instruction_detail": [st.layer.name for st in steps]}}
