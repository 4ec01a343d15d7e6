"""Simulate a network on one accelerator configuration: ``python -m sim.run --model M --config CFG``.

``make sim MODEL=segformer_b2 CFG=E [VARIANT=...] [SIZE=HxW] [CHECK=1]`` runs it.

Prints a per-layer table (name, kind, MACs, cycles, utilisation, stall cycles,
energy, energy per MAC) and the totals: cycles, time at the clock, energy,
energy per MAC, throughput per mm^2 of PE array (``sim.area.area_mm2``), the
shares of time and energy per layer kind and per part, and the five largest
layers by time.  Writes into ``--out`` (default
``build/sim/<model>_<config>[_<variant>]``, the variant left out for the full
model): ``report.json``, ``layers.csv``, ``time_energy.png`` and
``energy_per_mac.png`` (unless ``--no-plots``), ``trace.json`` with
``--trace`` and ``streams/<layer>.bin|.lst`` with ``--dump-layer``.
``docs/sim_report.md`` describes the files.

Every file is written into a temporary directory next to the output directory
and renamed into place only once everything has been produced, so an error
leaves no half-written file.  Bad input (unknown model, configuration, variant
or size, a non-positive override, a layer no tiling of the configuration's
buffers can hold) prints one line on stderr and exits with status 2 without
writing anything; a functional-check mismatch (``--check``) exits with
status 1, prints the seed to replay it with, and writes nothing either.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hw.cli import OneLineParser
from hw.config import PRESETS, AcceleratorConfig, get_config
from hw.isa import Op, Queue, disassemble, encode_stream
from mapper.flops import UsageError, build_model_or_usage_error, parse_size
from mapper.ir import MAC_KINDS, PARTS, Model
from mapper.fusion import plan, vec_stream
from mapper.lower import MappingError, _insn, map_layer
from mapper.workloads import MODEL_NAMES

from .area import area_mm2
from .simulator import SimResult, layer_schedule, simulate

__all__ = ["main", "build_report", "format_report", "run_dir_name", "CSV_COLUMNS", "TRACE_EVENT_CAP"]

DEFAULT_ROOT = Path("build") / "sim"
KIND_GROUPS = ("conv2d", "linear", "matmul", "non_mac")
CSV_COLUMNS = ("name", "kind", "part", "shape", "macs", "cycles", "compute_cycles", "stall_cycles",
               "utilization", "energy_pj", "energy_onchip_pj", "energy_per_mac_pj", "start_cycle", "instructions",
               "bound", "mapping")
#: Upper bound on instruction-level events in ``trace.json`` (shared by the traced layers).
TRACE_EVENT_CAP = 200_000
TRACED_LAYERS = 3


# ---- report ---------------------------------------------------------------------------------------

def _group(kind: str) -> str:
    return kind if kind in MAC_KINDS else "non_mac"


def _shares(res: SimResult) -> dict:
    """Fractions of the summed layer cycles / energy per kind group and per part."""
    totals = {"time": sum(r.cycles for r in res.layers) or 1, "energy": res.energy_pj or 1.0,
              "energy_onchip": res.energy_onchip_pj or 1.0}
    value = {"time": lambda r: r.cycles, "energy": lambda r: r.energy_pj, "energy_onchip": lambda r: r.energy_onchip_pj}
    out = {}
    for key, fn in (("kind", lambda r: _group(r.kind)), ("part", lambda r: r.part)):
        sums: dict = {m: {} for m in totals}
        for r in res.layers:
            g = fn(r)
            for m, d in sums.items():
                d[g] = d.get(g, 0) + value[m](r)
        order = KIND_GROUPS if key == "kind" else [p for p in PARTS if p in sums["time"]]
        out[key] = {m: {g: d.get(g, 0) / totals[m] for g in order} for m, d in sums.items()}
    return out


def run_dir_name(model: Model, cfg_key: str) -> str:
    name = f"{model.name}_{cfg_key}"
    if model.variant not in ("", "full"):
        name += f"_{model.variant}"
    return name.replace(os.sep, "_")


def build_report(res: SimResult, cfg_key: str) -> dict:
    cfg = res.config
    area = area_mm2(cfg)
    seconds = res.time_ms * 1e-3
    largest = sorted(res.layers, key=lambda r: r.cycles, reverse=True)[:5]
    return {
        "model": res.model,
        "config": cfg_key,
        "variant": res.variant,
        "clock_ghz": cfg.clock_ghz,
        "total_cycles": res.total_cycles,
        "time_ms": res.time_ms,
        "energy_uj": res.energy_uj,
        "energy_onchip_uj": res.energy_onchip_pj * 1e-6,
        "total_macs": res.total_macs,
        "energy_per_mac_pj": res.energy_pj / res.total_macs if res.total_macs else None,
        "utilization": res.utilization,
        "area_mm2": area,
        "macs_per_s_per_mm2": res.total_macs / seconds / area if seconds and area else None,
        "config_params": cfg.to_dict(),
        "mac_only": bool(res.extra.get("mac_only")),
        "fusion": bool(res.extra.get("fuse", True)) and not res.extra.get("mac_only"),
        "shares": _shares(res),
        "bounds": _bounds(res),
        "largest_by_time": [r.name for r in largest],
        "layers": [r.to_dict() for r in res.layers],
    }


def _bounds(res: SimResult) -> dict:
    """Where the time goes, from the least to the simulated: the MAC floor (every MAC at the
    array's full rate); the layer-by-layer floors (each step as long as its MACs, vector work
    or least DRAM traffic need, whatever its mapping: ``sim.simulator.least_cycles``), over
    the MAC layers alone (as if every non-MAC layer were free) and over every step; the
    resource floor (each layer as long as its busiest resource needs for the chosen mapping:
    MACs, DRAM, bus or vector unit); and what the schedule adds (fill, drain, stalls)."""
    mac_floor = res.total_macs / res.config.macs_per_cycle
    resource = sum(max(r.floors.values()) for r in res.layers if r.cycles)
    return {"mac_floor_cycles": mac_floor,
            "layer_floor_mac_layers_cycles": sum(r.least_cycles for r in res.layers if r.macs),
            "layer_floor_cycles": sum(r.least_cycles for r in res.layers),
            "resource_floor_cycles": resource,
            "schedule_overhead_cycles": res.total_cycles - resource}


def _eng(x: float, unit: str) -> str:
    for f, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= f:
            return f"{x / f:.3f} {p}{unit}"
    return f"{x:.3f} {unit}"


def assumptions_line(cfg: AcceleratorConfig) -> str:
    return (f"assumptions: DRAM {cfg.dram_bytes_per_cycle} B/cycle "
            f"({cfg.dram_bytes_per_cycle * cfg.clock_ghz:.1f} GB/s), DRAM latency {cfg.dram_latency} cycles, "
            f"clock {cfg.clock_ghz:g} GHz, global buffer {cfg.global_buf_bytes // 1024} KiB")


def format_table(doc: dict) -> str:
    # the last column: the binding resource, or where a layer without cycles of its own went
    head = ("layer", "kind", "MACs", "cycles", "util %", "stall", "energy nJ", "pJ/MAC", "bound / fused")
    rows = []
    for l in doc["layers"]:
        epm = l["energy_per_mac_pj"]
        rows.append((l["name"], l["kind"], f"{l['macs']:,}", f"{l['cycles']:,}", f"{100 * l['utilization']:.1f}",
                     f"{l['stall_cycles']:,}", f"{l['energy_pj'] / 1e3:,.1f}", f"{epm:.3f}" if epm else "-",
                     l.get("bound", "") if l["cycles"] else l.get("mapping", "")))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    align = "<<>>>>>><"
    line = lambda r: "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _bounds_line(doc: dict) -> str:
    b, ms = doc["bounds"], doc["time_ms"] / doc["total_cycles"]
    return "\n".join([
        f"time floors:       MACs at full rate {b['mac_floor_cycles'] * ms:.3f} ms",
        f"                   layer by layer with least DRAM traffic: MAC layers alone "
        f"{b['layer_floor_mac_layers_cycles'] * ms:.3f} ms, every layer {b['layer_floor_cycles'] * ms:.3f} ms",
        f"                   each layer at its busiest resource {b['resource_floor_cycles'] * ms:.3f} ms; "
        f"schedule overhead {b['schedule_overhead_cycles'] * ms:.3f} ms"])


def format_totals(doc: dict, cfg: AcceleratorConfig) -> str:
    sh = doc["shares"]
    pct = lambda d: ", ".join(f"{k} {100 * v:.1f} %" for k, v in d.items())
    epm = doc["energy_per_mac_pj"]
    out = [
        f"model {doc['model']}  variant {doc['variant']}  config {doc['config']}",
        assumptions_line(cfg),
        *(["mode:              MAC layers only (non-MAC layers left out of time and energy)"]
          if doc.get("mac_only") else []),
        *(["mode:              no fusion (every non-MAC layer its own vector pass)"]
          if not doc.get("fusion", True) and not doc.get("mac_only") else []),
        f"total cycles:      {doc['total_cycles']:,}",
        f"time:              {doc['time_ms']:.4f} ms at {doc['clock_ghz']:g} GHz",
        f"energy:            {doc['energy_uj']:.2f} uJ ({doc['energy_uj'] / 1e3:.4f} mJ)",
        f"total MACs:        {doc['total_macs']:,}",
        f"energy per MAC:    {epm:.4f} pJ" if epm is not None else "energy per MAC:    -",
        f"MAC utilisation:   {100 * doc['utilization']:.1f} %",
        f"PE-array area:     {doc['area_mm2']:.3f} mm^2",
        "throughput/area:   " + (_eng(doc["macs_per_s_per_mm2"], "MAC/s") + " per mm^2"
                                 if doc["macs_per_s_per_mm2"] else "-"),
        *([_bounds_line(doc)] if "bounds" in doc else []),
        "time shares:       " + pct(sh["kind"]["time"]),
        "energy shares:     " + pct(sh["kind"]["energy"]),
        "  on chip:         " + pct(sh["kind"]["energy_onchip"]),
        "time per part:     " + pct(sh["part"]["time"]),
        "energy per part:   " + pct(sh["part"]["energy"]),
        "5 largest layers by time:",
    ]
    by_name = {l["name"]: l for l in doc["layers"]}
    tot = sum(l["cycles"] for l in doc["layers"]) or 1
    en, en_chip = doc["energy_uj"] * 1e6 or 1.0, doc["energy_onchip_uj"] * 1e6 or 1.0
    for name in doc["largest_by_time"]:
        l = by_name[name]
        out.append(f"  {name:<44} {l['kind']:<9} {l['cycles']:>12,} cycles  {100 * l['cycles'] / tot:5.1f} % of time, "
                   f"{100 * l['energy_pj'] / en:5.1f} % of energy ({100 * l['energy_onchip_pj'] / en_chip:.1f} % on chip)")
    return "\n".join(out)


# ---- files ----------------------------------------------------------------------------------------

def _write_csv(doc: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for l in doc["layers"]:
            w.writerow(["" if l.get(c) is None else l[c] for c in CSV_COLUMNS])


def _top_other(items: list[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    items = sorted(items, key=lambda x: x[1], reverse=True)
    head, rest = items[:n], sum(v for _, v in items[n:])
    return head + ([("other", rest)] if rest > 0 else [])


def _plots(doc: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = f"{doc['model']} ({doc['variant']}) on {doc['config']}"
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.5))
    for ax, key, label, total in ((axes[0], "cycles", "time", doc["total_cycles"]),
                                  (axes[1], "energy_pj", "energy", doc["energy_uj"] * 1e6)):
        parts = _top_other([(l["name"], l[key]) for l in doc["layers"] if l[key] > 0], 10)
        vals = [v for _, v in parts]
        s = sum(vals) or 1
        colors = [plt.cm.tab20(i % 20) for i in range(len(parts))]
        if parts and parts[-1][0] == "other":
            colors[-1] = (0.8, 0.8, 0.8, 1.0)
        wedges, _ = ax.pie(vals, colors=colors, startangle=90, counterclock=False,
                           wedgeprops={"linewidth": 0.5, "edgecolor": "white"})
        ax.legend(wedges, [f"{n} ({100 * v / s:.1f} %)" for n, v in parts], loc="upper center",
                  bbox_to_anchor=(0.5, 0.0), fontsize=7, ncol=1, frameon=False)
        ax.set_title(f"{label} distribution across layers")
        ax.set_aspect("equal")
    fig.suptitle(f"{title}: {doc['time_ms']:.3f} ms, {doc['energy_uj']:.1f} uJ", y=1.0)
    fig.tight_layout()
    # the legends hang below the axes: let the saved image grow to hold them
    fig.savefig(out / "time_energy.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    mac = [l for l in doc["layers"] if l["kind"] in MAC_KINDS and l["macs"] and l["energy_per_mac_pj"]]
    mac.sort(key=lambda l: l["energy_per_mac_pj"], reverse=True)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    if mac:
        ref = min(l["energy_per_mac_pj"] for l in mac)
        colors = {"conv2d": "tab:blue", "linear": "tab:orange", "matmul": "tab:green"}
        ax.bar(range(len(mac)), [l["energy_per_mac_pj"] / ref for l in mac],
               color=[colors[l["kind"]] for l in mac], width=0.85)
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color=c, label=k) for k, c in colors.items()], fontsize=8)
        top = mac[0]["energy_per_mac_pj"] / ref
        ax.set_ylim(0, top * 1.35)
        if len(mac) <= 60:
            ax.set_xticks(range(len(mac)), [l["name"] for l in mac], rotation=90, fontsize=6)
        else:
            ax.set_xticks([])
            for i, l in enumerate(mac[:5]):
                ax.annotate(l["name"], (i, l["energy_per_mac_pj"] / ref), fontsize=6, rotation=30,
                            xytext=(4, 2 + 9 * (4 - i)), textcoords="offset points")
        ax.set_ylabel(f"energy per MAC / lowest ({ref:.3f} pJ)")
        ax.set_xlabel(f"{len(mac)} MAC layers, sorted by energy per MAC")
    ax.set_title(f"{title}: normalised energy per MAC")
    fig.tight_layout()
    fig.savefig(out / "energy_per_mac.png", dpi=110)
    plt.close(fig)


def layer_stream(model: Model, name: str, cfg: AcceleratorConfig, *, mac_only: bool = False,
                 fuse: bool = True) -> list:
    """The instruction stream of layer ``name`` as the simulator times it (with the same
    ``mac_only`` and ``fuse``), ending with END.

    A MAC layer split into parts is each part's stream, repeated as often as the
    simulator counts it; a fused element-wise layer has no instruction of its own.
    """
    model.layer(name)       # a KeyError naming the model when it has no such layer
    step = next(st for st in plan(model, cfg, mac_only=mac_only, fuse=fuse) if st.layer.name == name)
    stream: list = []
    if step.action == "mac":
        for lowered, repeat in map_layer(step.layer, cfg, post_passes=step.post_passes):
            stream += lowered.stream * repeat
    else:
        stream = vec_stream(step)
    return stream + [_insn(Op.END)]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _trace(res: SimResult, model: Model, cfg: AcceleratorConfig, cap: int = TRACE_EVENT_CAP) -> dict:
    us = 1.0 / (cfg.clock_ghz * 1e3)       # microseconds per cycle
    ev = [{"ph": "M", "pid": 1, "tid": 0, "name": "process_name", "args": {"name": f"{res.model} on {cfg.name}"}},
          {"ph": "M", "pid": 1, "tid": 0, "name": "thread_name", "args": {"name": "layers"}}]
    for r in res.layers:
        if r.cycles:
            ev.append({"ph": "X", "pid": 1, "tid": 0, "name": r.name, "cat": r.kind, "ts": r.start_cycle * us,
                       "dur": r.cycles * us, "args": {"macs": r.macs, "cycles": r.cycles,
                                                      "utilization": round(r.utilization, 4),
                                                      "energy_pj": round(r.energy_pj, 1)}})
    top = sorted((r for r in res.layers if r.kind in MAC_KINDS and r.cycles), key=lambda r: r.cycles,
                 reverse=True)[:TRACED_LAYERS]
    budget = cap // max(1, len(top))
    post_passes = {st.layer.name: st.post_passes for st in plan(model, cfg, mac_only=res.extra.get("mac_only", False),
                                                                fuse=res.extra.get("fuse", True))}
    units = {Queue.LOAD: 0, Queue.COMPUTE: 1, Queue.STORE: 2}
    for i, r in enumerate(top):
        pid = 2 + i
        ev.append({"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": r.name}})
        for q, tid in units.items():
            ev.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": q.name}})
        n, offset, truncated = 0, r.start_cycle, False
        for lowered, repeat in map_layer(model.layer(r.name), cfg, post_passes=post_passes.get(r.name, 0)):
            sched = layer_schedule(lowered, res.config)
            for _ in range(repeat):
                for k, insn in enumerate(lowered.stream):
                    q = insn.queue
                    if q not in units:
                        continue
                    if n >= budget:
                        truncated = True
                        break
                    s, e = int(sched.start[k]), int(sched.end[k])
                    ev.append({"ph": "X", "pid": pid, "tid": units[q], "name": insn.op.name,
                               "ts": (offset + s) * us, "dur": (e - s) * us, "args": {"index": k}})
                    n += 1
                if truncated:
                    break
                offset += lowered.cycles
            if truncated:
                break
        if truncated:
            ev.append({"ph": "i", "pid": pid, "tid": 0, "s": "p", "name": f"trace truncated after {n} instructions",
                       "ts": (offset) * us})
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"model": res.model, "config": cfg.name, "clock_ghz": cfg.clock_ghz}}


def _commit(staging: Path, out: Path) -> list[Path]:
    """Move every file of ``staging`` into ``out`` (same layout), then remove ``staging``."""
    moved = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        dst = out / src.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        moved.append(dst)
    shutil.rmtree(staging, ignore_errors=True)
    return moved


# ---- command line ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sim.run", description="Simulate a network on one accelerator configuration.")
    p.add_argument("--model", required=True, help=f"one of: {', '.join(MODEL_NAMES)}")
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--config", required=True, help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--check", action="store_true", help="also run the functional check of every MAC layer")
    p.add_argument("--seed", type=int, default=None, help="seed of --check (default: from the time; printed)")
    p.add_argument("--dram-bytes-per-cycle", type=int, default=None)
    p.add_argument("--dram-latency", type=int, default=None)
    p.add_argument("--clock-ghz", type=float, default=None)
    p.add_argument("--global-buf-kib", type=int, default=None)
    p.add_argument("--ideal-memory", action="store_true",
                   help="time the mappings chosen for the configured DRAM with unlimited DRAM and bus bandwidth "
                        "and no DRAM latency (the paper's apparent assumption)")
    p.add_argument("--mac-only", action="store_true",
                   help="leave non-MAC layers out of time and energy (as the paper's accelerator figures)")
    p.add_argument("--no-fusion", action="store_true",
                   help="run every non-MAC layer as its own vector pass (see mapper/fusion.py), to measure fusion")
    p.add_argument("--out", default=None, help="output directory (default build/sim/<model>_<config>[_<variant>])")
    p.add_argument("--dump-layer", default=None, metavar="NAME", help="write streams/<NAME>.bin and .lst")
    p.add_argument("--trace", action="store_true", help="write trace.json (Chrome trace events, Perfetto)")
    p.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-layer table")
    return p


def _setup(args) -> tuple[Model, AcceleratorConfig, str]:
    """Model, configuration and preset key from the arguments; UsageError on bad input."""
    if args.model not in MODEL_NAMES:
        raise UsageError(f"unknown model {args.model!r}; choose one of {', '.join(MODEL_NAMES)}")
    size = parse_size(args.size) if args.size is not None else None
    overrides = {}
    if args.dram_bytes_per_cycle is not None:
        overrides["dram_bytes_per_cycle"] = args.dram_bytes_per_cycle
    if args.dram_latency is not None:
        overrides["dram_latency"] = args.dram_latency
    if args.clock_ghz is not None:
        if not math.isfinite(args.clock_ghz):
            raise UsageError(f"bad --clock-ghz {args.clock_ghz!r}: must be a finite positive number")
        overrides["clock_ghz"] = args.clock_ghz
    if args.global_buf_kib is not None:
        overrides["global_buf_bytes"] = args.global_buf_kib * 1024
    try:
        cfg = get_config(args.config, **overrides)
    except KeyError as e:
        raise UsageError(str(e.args[0]) if e.args else str(e)) from None
    except ValueError as e:
        raise UsageError(f"bad configuration override: {e}") from None
    key = args.config if args.config in PRESETS else args.config.upper()
    model = build_model_or_usage_error(args.model, args.variant, size)
    if args.dump_layer is not None and args.dump_layer not in {l.name for l in model.layers}:
        names = [l.name for l in model.mac_layers][:8]
        raise UsageError(f"unknown layer {args.dump_layer!r} in {model.name}; e.g. {', '.join(names)} "
                         f"({len(model.layers)} layers; see the table or layers.csv)")
    return model, cfg, key


def _bar(args, total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="layer", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=args.quiet or not sys.stderr.isatty())


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        model, cfg, key = _setup(args)
        check_model = CheckError = None
        if args.check:
            try:
                from .functional import CheckError, check_model
            except ImportError as e:
                raise UsageError(f"--check needs sim.functional.check_model, which cannot be imported ({e})") from None
    except UsageError as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    bar = _bar(args, len(model.layers), f"{model.name} on {key}")

    def step(name: str) -> None:
        bar.set_postfix_str(name[-40:], refresh=False)
        bar.update(1)

    try:
        res = simulate(model, cfg, progress=step, mac_only=args.mac_only, fuse=not args.no_fusion,
                       ideal_memory=args.ideal_memory)
    except MappingError as e:
        bar.close()
        print(f"{prog}: error: cannot map onto configuration {key}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    bar.close()
    wall = time.perf_counter() - t0

    check = None
    if args.check:
        seed = args.seed if args.seed is not None else int(time.time() * 1000) % (1 << 31)
        print(f"functional check seed: {seed} (replay with --seed {seed})", flush=True)
        bar = _bar(args, len(model.mac_layers), "functional check")

        def cstep(*a, **k) -> None:
            if a:
                bar.set_postfix_str(str(a[0])[-40:], refresh=False)
            bar.update(1)

        try:
            check = check_model(model, cfg, seed=seed, progress=cstep)
        except CheckError as e:
            bar.close()
            print(f"{prog}: functional check FAILED (seed {seed}): {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        bar.close()
        check = dict(check) if isinstance(check, dict) else {"result": check}
        check.setdefault("seed", seed)

    doc = build_report(res, key)
    if check is not None:
        doc["check"] = check
    mode = ("_ideal_memory" if args.ideal_memory else "") + ("_mac_only" if args.mac_only else "") \
        + ("_no_fusion" if args.no_fusion else "")
    out = Path(args.out) if args.out else DEFAULT_ROOT / (run_dir_name(model, key) + mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with open(staging / "report.json", "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        _write_csv(doc, staging / "layers.csv")
        if not args.no_plots:
            _plots(doc, staging)
        if args.trace:
            with open(staging / "trace.json", "w") as f:
                json.dump(_trace(res, model, cfg), f, separators=(",", ":"))
        if args.dump_layer is not None:
            stream = layer_stream(model, args.dump_layer, cfg, mac_only=args.mac_only, fuse=not args.no_fusion)
            (staging / "streams").mkdir()
            base = staging / "streams" / _safe(args.dump_layer)
            base.with_name(base.name + ".bin").write_bytes(encode_stream(stream))
            base.with_name(base.name + ".lst").write_text(disassemble(stream) + "\n")
        written = _commit(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    if not args.quiet:
        print(format_table(doc))
        print()
    print(format_totals(doc, res.config))
    if check is not None:
        print(f"functional check passed: {check.get('layers', '?')} MAC layers, "
              f"{check.get('outputs', '?')} outputs, seed {check['seed']}")
    print(f"simulated in {wall:.2f} s; wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
