"""``trace.json`` obeys the Trace Event Format: on one track, complete events nest or do not overlap.

Perfetto drops a slice that partly overlaps an earlier one on its track, so a
trace that breaks the rule does not display in full.  The check reads times as
Perfetto does: ``ts`` and ``dur`` in microseconds, each rounded to nanoseconds.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict

from hw.config import get_config
from mapper.workloads import build_model
from sim.simulator import simulate
from sim.trace import build_trace, default_detail


def partial_overlaps(events: list[dict]) -> list[tuple]:
    """Pairs of complete events on one (pid, tid) that overlap without nesting."""
    tracks = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            start = round(e["ts"] * 1000)
            tracks[e["pid"], e["tid"]].append((start, start + round(e["dur"] * 1000), e["name"]))
    bad = []
    for key, spans in tracks.items():
        spans.sort(key=lambda s: (s[0], -s[1]))      # at a common start, the longer one encloses
        open_spans: list[tuple] = []                 # the enclosing events, innermost last
        for span in spans:
            while open_spans and open_spans[-1][1] <= span[0]:
                open_spans.pop()
            if open_spans and span[1] > open_spans[-1][1]:
                bad.append((key, open_spans[-1], span))
            else:
                open_spans.append(span)
    return bad


def test_checker_finds_partial_overlap():
    ev = [{"ph": "X", "pid": 1, "tid": 1, "name": n, "ts": ts, "dur": dur}
          for n, ts, dur in (("a", 0.0, 1.0), ("b", 0.2, 0.3), ("c", 0.5, 0.5), ("d", 0.9, 0.5))]
    # b and c nest in a; d starts inside c and ends after it (and after a)
    assert [(b[1][2], b[2][2]) for b in partial_overlaps(ev)] == [("c", "d")]
    ev[3]["tid"] = 2
    assert partial_overlaps(ev) == []


@functools.lru_cache(maxsize=None)
def _simulated(model_name: str, cfg_name: str, size=None) -> tuple:
    """(model, configuration, result): mapped once for the tests that trace it at different details
    (build_trace only reads the result)."""
    model, cfg = build_model(model_name, size=size), get_config(cfg_name)
    return model, cfg, simulate(model, cfg)


def _trace(model_name: str, cfg_name: str, size=None, detail=None) -> tuple[dict, object]:
    model, cfg, res = _simulated(model_name, cfg_name, size)
    doc = build_trace(res, model, cfg, default_detail(res) if detail is None else detail)
    return json.loads(json.dumps(doc, separators=(",", ":"))), res     # as written to trace.json


def _check(doc: dict, res) -> None:
    events = doc["traceEvents"]
    assert partial_overlaps(events) == []
    insns = [e for e in events if e["ph"] == "X" and e["pid"] == 2]
    detailed = set(doc["otherData"]["instruction_detail"])
    # one event per instruction on its unit's track (FENCE and END are the dispatcher's own)
    on_units = [e for e in insns if e["tid"] in (1, 2, 3)]
    expected = sum(r.instructions for r in res.layers if r.name in detailed)
    # one FENCE per step, and per layer and band of a band chain (mapper.bands) but those dropped
    # where its streams are joined (mapper.stitch)
    parts = {c["layers"][0]: c["bands"] * len(c["layers"]) - c["fences_dropped"]
             for c in res.extra.get("band_chains", [])}
    fences = sum(parts.get(r.name, 1) for r in res.layers if r.name in detailed and r.instructions)
    assert len(on_units) == expected - fences
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
             and e["pid"] == 2}
    assert all(names[e["tid"]].startswith(("LOAD", "STORE")) for e in insns if e["tid"] >= 10)


#: SegFormer-B0 at 32x32 on small, which make test maps for other tests too (test_fusion, test_infer):
#: its tilings are cached by then, where 64x64 was a search of its own (about 50 CPU s from CI's cold
#: cache).  It has no band chain; the full SegFormer-B2 trace below checks those (20 on E).
SMALL_NETWORK = ("segformer_b0", "small", (32, 32))


def test_small_network_trace_nests():
    doc, res = _trace(*SMALL_NETWORK)
    assert set(doc["otherData"]["instruction_detail"]) == {r.name for r in res.layers if r.instructions}
    _check(doc, res)


def test_trace_layers_choose_the_detail():
    doc, res = _trace(*SMALL_NETWORK, detail=["stage0.block0.attn.q"])
    layers = {e["args"]["layer"] for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 2}
    assert layers == {"stage0.block0.attn.q"}
    _check(doc, res)


def test_full_segformer_b2_trace_nests():       # about 10 s: worth running on every change
    doc, res = _trace("segformer_b2", "E")
    # the whole network is detailed: about 100 000 instructions, band chains among them
    assert res.extra.get("band_chains")
    assert set(doc["otherData"]["instruction_detail"]) == {r.name for r in res.layers if r.instructions}
    _check(doc, res)


def test_layer_bars_hold_their_instructions_as_the_program_runs_them():
    """Layer bars began at the sum of earlier layers' cycles, instruction events DECODE_STAGES
    later, so a layer's last instructions ran into the next layer's bar.  Timed as the whole
    program runs: a bar spans its first instruction's dispatch to its FENCE's end, and its unit
    events are the instructions' starts (1 GHz: a nanosecond is a cycle)."""
    from hw.isa import Queue
    from hw.timing import schedule
    from mapper.ir import Activation, Add, Conv2d, Model
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    layers = (Conv2d("c1", "encoder", 24, 20, 12, 12, kernel=3, padding=1),
              Activation("relu", "encoder", "relu", inputs=("c1",)),
              Conv2d("c2", "encoder", 20, 20, 12, 12, kernel=3, padding=1, inputs=("relu",)),
              Add("sum", "encoder", inputs=("c2", "relu")))
    model, cfg = Model("m", "full", (12, 12, 24), layers), get_config("small", clock_ghz=1.0)
    res = simulate(model, cfg)
    events = build_trace(res, model, cfg, default_detail(res))["traceEvents"]
    bars = {e["name"]: (round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000))
            for e in events if e["ph"] == "X" and e["pid"] == 1}
    program = build_program(random_qmodel(model), cfg)
    sched = schedule(program.stream, cfg)
    assert sched.total_cycles == res.total_cycles
    for code in program.steps:
        name, run = code.step.layer.name, range(code.start, code.end)
        assert bars[name] == (sched.dispatch[code.start], sched.end[code.end - 1]), name
        units = sorted(round(e["ts"] * 1000) for e in events if e["ph"] == "X" and e["pid"] == 2
                       and e["tid"] in (1, 2, 3) and e["args"]["layer"] == name)
        assert units == sorted(sched.start[i] for i in run if program.stream[i].queue != Queue.DISPATCH), name
    assert {r.name: r.start_cycle for r in res.layers if r.cycles} == {n: a for n, (a, _) in bars.items()}
