"""Resource-dependent dynamic (RDD) inference: pick an execution path per frame.

Given a trace of per-frame budgets (a CSV with a ``frame`` column and a
``time_ms`` or ``energy_uj`` column), the runtime picks for each frame the most
accurate path whose cost fits the budget, including the cost of switching
weights: a path whose ``weight_set`` differs from the one in use must first
copy its weights into the accelerator's working DRAM region (every weight
byte read and written, the two streams at once at the configuration's DRAM
bandwidth, and the DRAM energy of those bytes).  Paths that share a weight set (SegFormer's pruned
paths all run on the B2 weights) switch for free.  A frame that no path fits
is a miss: the runtime runs the cheapest path anyway and counts it.

The baseline is the static choice a designer would make for the worst case:
the most accurate single path that fits every frame's budget that some path fits.
A frame no path fits (``impossible`` in the summary) is missed by either policy,
so it does not decide the static path: one such frame would otherwise make the
baseline the cheapest path and flatter RDD.

Run as ``python -m sim.rdd --model segformer_b2 --config E --budgets trace.csv``; writes
``rdd.json`` and ``frames.csv`` into a folder named by the models, the
configuration and the budget and accuracy files (``build/rdd/...``, or ``--out``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hw.cli import OneLineParser, StagedDir, UsageError, ascii_float, ascii_int, column_texts, counted, fail, file_tag, run_main
from hw.config import AcceleratorConfig
from hw.timing import dram_transfer_cycles
from mapper.flops import MODEL_HELP
from mapper.lower import MappingError
from mapper.program import DramCapacityError
from mapper.workloads import build_model, model_label

from .config_args import add_override_options, config_from_args
from .refused_options import add_refused_options
from .energy import EnergyModel
from .outputs import config_tag, run_name
from .paths import DEFAULT_ACCURACY, AccuracyTable, PathPoint, check_models, data_lines, simulate_paths
from .simulator import mapping_refusal

__all__ = ["Budget", "BudgetError", "read_budgets", "run_trace", "switch_cost"]

EXAMPLE_TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / "segformer_b2_E_time.csv"
#: What a run leaves in its folder (an existing folder holding anything else is not replaced).
OWNED = ("rdd.json", "frames.csv")


class BudgetError(ValueError):
    """A malformed budget trace; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Budget:
    frame: int
    value: float


def _frame(file: str, lineno: int, text: str, previous: int | None) -> int:
    """A trace's frame number: a whole number >= 0, after the previous row's (a trace is in order)."""
    try:
        frame = ascii_int(text)
    except ValueError:
        raise BudgetError(f"{file}:{lineno}: frame {text!r}: expected a whole number >= 0 in the digits 0-9") from None
    if frame < 0:
        raise BudgetError(f"{file}:{lineno}: frame {text!r}: expected a whole number >= 0")
    if previous is not None and frame <= previous:
        raise BudgetError(f"{file}:{lineno}: frame {frame} after frame {previous}: frames must increase "
                          f"(one budget per frame, in order)")
    return frame


def read_budgets(file: str) -> tuple[str, list[Budget]]:
    """(``time_ms`` or ``energy_uj``, budgets) from a trace CSV."""
    lines = data_lines(file, BudgetError, "empty; need a header frame,time_ms or frame,energy_uj")
    reader = csv.reader([line for _, line in lines])         # a quoted field ("frame","time_ms") as sim.paths reads it
    header = [h.strip() for h in next(reader)]
    kinds = [k for k in ("time_ms", "energy_uj") if k in header]
    if "frame" not in header or len(kinds) != 1:
        raise BudgetError(f"{file}:{lines[0][0]}: header {','.join(header)!r} must have a 'frame' column and "
                          f"exactly one of 'time_ms' or 'energy_uj'")
    kind = kinds[0]
    out = []
    for (lineno, _), row in zip(lines[1:], reader):
        values = [v.strip() for v in row]
        if len(values) != len(header):
            raise BudgetError(f"{file}:{lineno}: {counted(len(values), 'field')}, the header has {len(header)}")
        rec = dict(zip(header, values))
        frame = _frame(file, lineno, rec["frame"], out[-1].frame if out else None)
        try:
            value = ascii_float(rec[kind])
        except ValueError:
            raise BudgetError(f"{file}:{lineno}: {kind} {rec[kind]!r} is not a number in the digits 0-9") from None
        if not math.isfinite(value) or value < 0:
            raise BudgetError(f"{file}:{lineno}: budget {rec[kind]!r} {kind}: expected a finite number >= 0")
        out.append(Budget(frame, value))
    if not out:
        raise BudgetError(f"{file}: no frames")
    return kind, out


def switch_cost(point: PathPoint, cfg: AcceleratorConfig, energy: EnergyModel) -> tuple[float, float]:
    """(ms, uJ) to bring a path's weights into the working region: every byte read and written,
    the two streams at once as every transfer of the timing contract (``dram_transfer_cycles``)."""
    moved = point.weight_bytes
    cycles = cfg.dram_latency + dram_transfer_cycles(moved, moved, cfg.dram_bytes_per_cycle)
    pj = energy.cost_pj("dram_read_bytes") * moved + energy.cost_pj("dram_write_bytes") * moved
    return cycles / (cfg.clock_ghz * 1e6), pj * 1e-6


def run_trace(points: list[PathPoint], kind: str, budgets: list[Budget], cfg: AcceleratorConfig) -> dict:
    """Per-frame choices and the summary against the static worst-case choice."""
    energy = EnergyModel(cfg)
    usable = [p for p in points if p.accuracy is not None]
    if not usable:
        raise ValueError("no path has accuracy data: supply an accuracy CSV naming some of the simulated paths")
    cost = (lambda p: p.time_ms) if kind == "time_ms" else (lambda p: p.energy_uj)
    sw = {id(p): switch_cost(p, cfg, energy) for p in usable}
    sw_cost = (lambda p: sw[id(p)][0]) if kind == "time_ms" else (lambda p: sw[id(p)][1])
    by_acc = sorted(usable, key=lambda p: (-p.accuracy, cost(p)))
    cheapest = min(usable, key=cost)                        # what a frame no path fits runs
    frames = []
    current: Optional[str] = by_acc[0].weight_set          # the most accurate path's weights start loaded
    for b in budgets:
        choice, switched = None, False
        for p in by_acc:
            extra = sw_cost(p) if p.weight_set != current else 0.0
            if cost(p) + extra <= b.value:
                choice, switched = p, p.weight_set != current
                break
        miss = choice is None
        if miss:
            choice = cheapest
            switched = choice.weight_set != current
        t = choice.time_ms + (sw[id(choice)][0] if switched else 0)
        e = choice.energy_uj + (sw[id(choice)][1] if switched else 0)
        current = choice.weight_set
        frames.append({"frame": b.frame, "budget": b.value, "path": f"{choice.model}:{choice.path}",
                       "accuracy": choice.accuracy, "time_ms": t, "energy_uj": e, "switched": switched,
                       "miss": miss})
    summary = {
        "frames": len(frames),
        "mean_accuracy": sum(f["accuracy"] for f in frames) / len(frames),
        "misses": sum(f["miss"] for f in frames),
        "switches": sum(f["switched"] for f in frames),
        "energy_uj": sum(f["energy_uj"] for f in frames),
        "time_ms": sum(f["time_ms"] for f in frames),
    }
    summary["impossible"] = sum(cost(cheapest) > b.value for b in budgets)
    summary["static"] = _static_choice(cheapest, by_acc, cost, budgets)
    return {"kind": kind, "frames": frames, "summary": summary}


def _static_choice(cheapest: PathPoint, by_acc: list[PathPoint], cost, budgets: list[Budget]) -> dict:
    """The one path a static system would run on every frame: the most accurate (``by_acc``) within
    the tightest budget that some path fits, else (no frame fits any path) the ``cheapest``; it
    misses the frames it exceeds, the impossible ones among them."""
    meetable = [b.value for b in budgets if cost(cheapest) <= b.value]
    static = next(p for p in by_acc if cost(p) <= min(meetable)) if meetable else cheapest
    n = len(budgets)
    return {"path": f"{static.model}:{static.path}", "accuracy": static.accuracy,
            "energy_uj": static.energy_uj * n, "time_ms": static.time_ms * n,
            "misses": sum(cost(static) > b.value for b in budgets)}


def _run_name(args, cfg: AcceleratorConfig) -> str:
    """``<models>_<config>[_budgets-<file>-<hash>][_accuracy-<file>-<hash>]``, the folder under
    ``build/rdd`` (without ``--out``): named by everything that changes the results."""
    default = {"budgets": EXAMPLE_TRACE, "accuracy": DEFAULT_ACCURACY}
    files = [file_tag(getattr(args, k), k) for k, path in default.items() if Path(getattr(args, k)).resolve() != path]
    return run_name("+".join(model_label(m) for m in args.model), config_tag(cfg), *files)


def _write(folder: Path, res: dict, args, cfg: AcceleratorConfig, points: list[PathPoint]) -> None:
    doc = dict(res, models=args.model, config=config_tag(cfg), config_params=cfg.to_dict(), budgets_file=args.budgets,
               accuracy_file=args.accuracy, paths=[p.to_dict() for p in points])
    (folder / "rdd.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    with open(folder / "frames.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(res["frames"][0]))
        w.writeheader()
        w.writerows(res["frames"])


def _parser() -> OneLineParser:
    ap = OneLineParser(prog="python -m sim.rdd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True,
                    help=f"the model whose paths are candidates: {MODEL_HELP} (repeat to join models of one benchmark)")
    ap.add_argument("--config", default="E", help="a preset or a .toml accelerator file (default E)")
    add_override_options(ap)
    add_refused_options(ap, "rdd")
    ap.add_argument("--budgets", default=str(EXAMPLE_TRACE),
                    help="trace CSV: frame,time_ms or frame,energy_uj (default data/traces/segformer_b2_E_time.csv)")
    ap.add_argument("--accuracy", default=str(DEFAULT_ACCURACY),
                    help="CSV model,path,accuracy[,weight_set,source] whose rows for the models are the candidate "
                         "paths (default data/accuracy_paper.csv: the paper's published accuracies)")
    ap.add_argument("--out", default=None, help="output folder (default build/rdd/<name of the run>)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        check_models(args.model)
        cfg = config_from_args(args)
        table = AccuracyTable.read(args.accuracy)
        kind, budgets = read_budgets(args.budgets)
        # candidates: every path of the accuracy table that belongs to the chosen models
        rows = table.rows_of(args.model)
        if not rows:
            raise ValueError(f"{args.accuracy}: no accuracy rows for {', '.join(args.model)}; give ACCURACY=your.csv "
                             f"(--accuracy) with rows model,path,accuracy")
        name = _run_name(args, cfg)
        stage = StagedDir(Path(args.out) if args.out else Path("build/rdd") / name, OWNED, run=name)
    except (KeyError, ValueError, UsageError) as e:
        return fail(ap.prog, e)
    with stage:
        try:
            points = simulate_paths([(r.model, build_model(r.model, variant=r.path)) for r in rows], cfg, table,
                                    quiet=args.quiet)
        except MappingError as e:           # as make sim refuses it; nothing written
            return fail(ap.prog, mapping_refusal(cfg.name, e))
        except DramCapacityError as e:
            return fail(ap.prog, e)
        try:
            res = run_trace(points, kind, budgets, cfg)
        except ValueError as e:
            return fail(ap.prog, e)
        _write(stage.path, res, args, cfg, points)
        out = stage.commit()
    _print_summary(points, res, args.budgets)
    print(f"wrote rdd.json, frames.csv to {out}")
    return 0


def _print_summary(points: list[PathPoint], res: dict, budgets_file: str) -> None:
    """The candidate paths, most accurate first, and the RDD choice against the static one."""
    s, st = res["summary"], res["summary"]["static"]
    unit = "ms" if res["kind"] == "time_ms" else "uJ"
    print(f"{counted(len(points), 'path')}, {counted(s['frames'], 'frame')}, budgets in {unit} from {budgets_file}")
    width = max(len(f"{p.model}:{p.path}") for p in points)
    ordered = sorted(points, key=lambda p: -p.accuracy)
    times = _column([p.time_ms for p in ordered], 3, 7)
    energies = _column([p.energy_uj for p in ordered], 1, 9)
    weights = _column([p.weight_bytes / 1e6 for p in ordered], 1, 5, digits=2)     # 27.4 MB, 0.012 MB
    for p, time_ms, energy_uj, weight_mb in zip(ordered, times, energies, weights):
        print(f"  {p.model + ':' + p.path:{width}s} acc {p.accuracy:.4f}  {time_ms} ms  {energy_uj} uJ"
              f"  weights {weight_mb} MB ({p.weight_set})")
    print(f"RDD:    mean accuracy {s['mean_accuracy']:.4f}, misses {s['misses']}, switches {s['switches']}, "
          f"energy {s['energy_uj'] / 1e3:.4g} mJ, time {s['time_ms']:.4g} ms")
    print(f"static: {st['path']} mean accuracy {st['accuracy']:.4f}, misses {st['misses']}, "
          f"energy {st['energy_uj'] / 1e3:.4g} mJ, time {st['time_ms']:.4g} ms")
    if s["impossible"]:
        print(f"        {counted(s['impossible'], 'frame')} no path fits: missed by both, not deciding the static path")


def _column(values: list[float], decimals: int, least_width: int, digits: int = 4) -> list[str]:
    """A column of the summary's path lines: one number of decimals (``column_texts``), right-aligned."""
    texts = column_texts(values, decimals, digits)
    return [t.rjust(max(least_width, *map(len, texts))) for t in texts]


if __name__ == "__main__":
    run_main(main)
