"""Execution-path exploration: the paper's Figures 10 to 13 on the accelerator.

An execution path is a model and one of its variants (encoder blocks kept,
decoder channels kept, an OFA subnet).  ``explore`` simulates candidate paths
on a configuration and joins them with accuracies from a CSV (the paper's
published figures by default, ``data/accuracy_paper.csv``): accuracy cannot be
measured here, as no weights or datasets are available.  Paths are matched to
accuracy rows by structure (two spellings of the same layers are one path), and
the Pareto front of accuracy against time and against energy is marked.

Run as ``python -m sim.paths --model segformer_b2 --config E``; writes ``paths.json``,
``paths.csv`` and ``paths.<fmt>`` (``--format``; ``sim.plots.paths``) into a folder named by
the models, the configuration, ``--paths`` and the accuracy file (``build/paths/...``, or
``--out``), written as a whole (``hw.cli.StagedDir``) once every path is simulated.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from hw.cli import (OneLineParser, StagedDir, UsageError, aligned_table, ascii_float, column_texts, counted, fail,
                    file_tag, not_a_file, read_input, run_main, short_hash)
from hw.config import AcceleratorConfig
from mapper.ir import Model
from mapper.lower import MappingError
from mapper.program import DramCapacityError
from mapper.flops import MODEL_HELP, refuse_flops_only
from mapper.workloads import build_model, check_model, is_onnx_path, model_label
from mapper.workloads.resnet import OFA_NAMED_POINTS
from mapper.workloads.segformer import NAMED_POINTS
from mapper.workloads.variants import is_full

from . import plots
from .accuracy import task_of
from .config_args import add_override_options, config_from_args
from .refused_options import add_refused_options
from .outputs import add_plot_options, config_tag, parse_formats, run_name
from .progress import Progress, layer_weights
from .simulator import IDEAL_MEMORY, mapping_refusal, require_dram_fit, simulate

__all__ = ["PathPoint", "AccuracyTable", "AccuracyError", "candidate_paths", "explore", "structure_key",
           "parse_paths", "simulate_paths", "check_models", "weight_bytes", "pareto_mask", "cost_at_accuracy",
           "retrained_vs_pruned", "DEFAULT_ACCURACY"]

DEFAULT_ACCURACY = Path(__file__).resolve().parents[1] / "data" / "accuracy_paper.csv"
#: What a run leaves in its folder (an existing folder holding anything else is not replaced).
OWNED = ("paths.json", "paths.csv", "paths.*")


class AccuracyError(ValueError):
    """A malformed accuracy CSV; the message names the file, the line and the problem."""


def structure_key(model: Model) -> str:
    """Identity of a path: its model name and the shapes of its layers."""
    h = hashlib.sha256(model.name.encode())
    for layer in model.layers:
        h.update(f"{layer.name}|{layer.kind}|{layer.shape_str};".encode())
    return h.hexdigest()[:16]


def weight_bytes(model: Model) -> int:
    """int8 weight bytes of a path (matmul operands are activations, not weights)."""
    total = 0
    for layer in model.layers:
        if layer.kind == "conv2d":
            kh, kw = layer.kernel
            total += layer.out_ch * (layer.in_ch // layer.groups) * kh * kw
        elif layer.kind == "linear":
            total += layer.in_features * layer.out_features
    return total


def data_lines(file: str, error: type[ValueError], empty: str) -> list[tuple[int, str]]:
    """(line number, text) of a CSV's non-blank lines that are not ``#`` comments.

    Raises ``error`` naming the file when it cannot be read or has no such line (``empty``
    says what was expected).
    """
    data = read_input(file, "CSV file", error)
    try:
        text = data.decode("utf-8-sig").splitlines()     # -sig: a leading BOM is no text
    except UnicodeDecodeError as e:
        raise error(f"{file}: not a text CSV file (byte {e.object[e.start]:#04x} at offset {e.start} "
                    f"is not UTF-8 text)") from None
    lines = [(i + 1, line) for i, line in enumerate(text) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise error(f"{file}: {empty}")
    return lines


@dataclass
class AccuracyRow:
    model: str
    path: str
    accuracy: float
    weight_set: str
    source: str
    line: int


class AccuracyTable:
    """Accuracies keyed by path structure, read from a CSV with columns model, path, accuracy
    (and optionally weight_set, source); lines starting with ``#`` are comments."""

    def __init__(self, rows: list[AccuracyRow], file: str):
        self.file = file
        self.rows = rows
        self._by_key: dict[str, AccuracyRow] = {}
        for row in rows:
            try:
                model = build_model(row.model, variant=row.path)
            except (KeyError, ValueError) as e:
                raise AccuracyError(f"{file}:{row.line}: unknown path {row.model}:{row.path}: "
                                    f"{e.args[0] if e.args else e}") from None
            key = structure_key(model)
            first = self._by_key.get(key)
            if first is not None:
                raise AccuracyError(f"{file}:{row.line}: {row.model}:{row.path} is the network of line {first.line} "
                                    f"({first.model}:{first.path}) again; give each path once")
            self._by_key[key] = row

    @classmethod
    def read(cls, file: os.PathLike | str) -> "AccuracyTable":
        file = str(file)
        lines = data_lines(file, AccuracyError, "no header line (need columns model,path,accuracy)")
        reader = csv.reader([line for _, line in lines])
        header = [h.strip() for h in next(reader)]
        missing = [c for c in ("model", "path", "accuracy") if c not in header]
        if missing:
            raise AccuracyError(f"{file}:{lines[0][0]}: missing column(s) {', '.join(missing)}; "
                                f"the header must name model,path,accuracy[,weight_set,source]")
        rows = []
        for (lineno, _), values in zip(lines[1:], reader):
            rec = dict(zip(header, (v.strip() for v in values)))
            if len(values) != len(header):
                raise AccuracyError(f"{file}:{lineno}: {counted(len(values), 'field')}, the header has {len(header)}")
            try:
                acc = ascii_float(rec["accuracy"])
            except ValueError:
                raise AccuracyError(f"{file}:{lineno}: accuracy {rec['accuracy']!r} is not a number in the digits "
                                    f"0-9") from None
            if not 0.0 <= acc <= 1.0:
                raise AccuracyError(f"{file}:{lineno}: accuracy {acc} outside 0..1")
            model = _beside(file, lineno, rec["model"])
            try:
                check_model(model)
            except KeyError as e:
                raise AccuracyError(f"{file}:{lineno}: {e.args[0]}") from None
            rows.append(AccuracyRow(model, rec["path"], acc, rec.get("weight_set") or model,
                                    rec.get("source", ""), lineno))
        return cls(rows, file)

    def lookup(self, model: Model) -> Optional[AccuracyRow]:
        return self._by_key.get(structure_key(model))

    def rows_of(self, models: list[str]) -> list[AccuracyRow]:
        """The rows of ``models`` (an ONNX file by the file it names, however its path is spelt)."""
        wanted = {_identity(m) for m in models}
        return [row for row in self.rows if _identity(row.model) in wanted]

    def unused(self, models: list[str], paths: Optional[list[str]]) -> list[AccuracyRow]:
        """The rows of ``models`` whose paths are none of those simulated (``paths``, or each
        model's candidates)."""
        simulated = {structure_key(build_model(m, variant=v)) for m in models for v in (paths or candidate_paths(m))}
        wanted = {_identity(m) for m in models}
        return [row for key, row in self._by_key.items() if _identity(row.model) in wanted and key not in simulated]


def _beside(csv_file: str, lineno: int, model: str) -> str:
    """The accuracy CSV's ``model``: an ONNX file's relative path is read from the CSV's folder, so
    that the CSV works from any working directory (a missing file: AccuracyError naming both paths)."""
    if not is_onnx_path(model) or Path(model).is_absolute():
        return model
    path = os.path.normpath(Path(csv_file).parent / model)
    why = not_a_file(path)
    if why is not None:
        raise AccuracyError(f"{csv_file}:{lineno}: model file {model!r} not found: {path}: {why} (a relative path "
                            f"in the accuracy CSV is read from the CSV's folder)")
    return path


def _identity(model: str) -> str:
    """What identifies a model: a zoo name, or the ONNX file a path names."""
    return str(Path(model).resolve()) if is_onnx_path(model) else model


def candidate_paths(model: str) -> list[str]:
    """Variants worth simulating for ``model`` (named points first, then a grid)."""
    if model.startswith("segformer_b2"):
        named = ["full"] + ([f"B2_{c}" for c in "abcdef"] if model == "segformer_b2" else [])
        grid = [f"blocks={s0}-{s1}-{s2}-3,fuse={fuse}"
                for s0, s1, s2 in itertools.product((3, 2), (4, 3), (6, 5))
                for fuse in (3072, 2560, 1920, 1664, 1408, 1024, 896, 768, 512)]
        return named + grid
    if model.startswith("segformer_"):
        return ["full"] + [f"fuse={f}" for f in (768, 512, 384, 256)]
    if model.startswith("swin_"):
        depth2 = {"swin_tiny": (6, 5, 4), "swin_small": (18, 16, 14), "swin_base": (18, 16, 14)}[model]
        return ["full"] + [f"blocks=2-2-{d2}-{d3},fpn={fpn}" for d2 in depth2 for d3 in (2, 1)
                           for fpn in (2048, 1792, 1536, 1024)]
    if model == "ofa_resnet50":
        grid = [f"d={d},e={e},w={w}" for d in (0, 1, 2) for e in (0.2, 0.25, 0.35) for w in (0.65, 0.8, 1.0)]
        return ["full", *OFA_NAMED_POINTS] + grid
    return ["full"]


@dataclass
class PathPoint:
    model: str
    path: str
    macs: int
    time_ms: float
    energy_uj: float
    conv_time_share: float
    conv_mac_share: float
    weight_bytes: int
    accuracy: Optional[float] = None
    weight_set: Optional[str] = None
    source: str = ""
    pareto_time: bool = False
    pareto_energy: bool = False
    largest: dict = field(default_factory=dict)
    energy_onchip_uj: float = 0.0      # without DRAM: what the paper's power analysis measures
    benchmark: str = ""                # task and label count: accuracies compare only within one

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def pareto_mask(costs: list[float], accuracies: list[Optional[float]]) -> list[bool]:
    """Points with an accuracy that no other point beats in both lower cost and higher accuracy."""
    out = []
    for i, (c, a) in enumerate(zip(costs, accuracies)):
        if a is None:
            out.append(False)
            continue
        dominated = any(a2 is not None and c2 <= c and a2 >= a and (c2 < c or a2 > a)
                        for j, (c2, a2) in enumerate(zip(costs, accuracies)) if j != i)
        out.append(not dominated)
    return out


def simulate_path(model_name: str, model: Model, cfg: AcceleratorConfig,
                  accuracy: Optional[AccuracyTable] = None, mac_only: bool = False,
                  ideal_memory: bool = False, progress: Optional[Callable[[str], None]] = None) -> PathPoint:
    """The path ``model`` (of network ``model_name``) simulated; ``progress(layer name)`` is called
    per layer (``sim.simulator.simulate``)."""
    r = simulate(model, cfg, mac_only=mac_only, ideal_memory=ideal_memory, progress=progress)
    conv_t = sum(l.cycles for l in r.layers if l.kind == "conv2d")
    conv_m = sum(l.macs for l in r.layers if l.kind == "conv2d")
    biggest = max(r.layers, key=lambda l: l.macs)
    row = accuracy.lookup(model) if accuracy else None
    return PathPoint(model_name, model.variant, r.total_macs, r.time_ms, r.energy_uj,
                     conv_t / r.total_cycles, conv_m / r.total_macs, weight_bytes(model),
                     row.accuracy if row else None, row.weight_set if row else model_name,
                     row.source if row else "",
                     largest={"name": biggest.name, "mac_share": biggest.macs / r.total_macs,
                              "time_share": biggest.cycles / r.total_cycles},
                     energy_onchip_uj=r.energy_onchip_pj * 1e-6, benchmark=benchmark_of(model))


def simulate_paths(jobs: list[tuple[str, Model]], cfg: AcceleratorConfig, accuracy: Optional[AccuracyTable],
                   *, quiet: bool = False, mac_only: bool = False, ideal_memory: bool = False) -> list[PathPoint]:
    """Each (network name, path's model) of ``jobs`` simulated in turn.  Unless ``quiet``, each path
    is announced on stderr as ``path i/N`` and its layers' progress shown as ``make sim`` shows it
    (``sim.progress.Progress``: a line every 10 s in a log, with the time left of that path).
    DramCapacityError for a path whose program does not fit the configuration's DRAM."""
    points = []
    for i, (model_name, model) in enumerate(jobs, 1):
        desc = f"path {i}/{len(jobs)} {model_name}:{model.variant}"
        if not quiet:
            print(f"  simulating {desc}", file=sys.stderr, flush=True)
        require_dram_fit(model, cfg, mac_only=mac_only, announce=None if quiet else f"  {desc}")
        weights = layer_weights(model)
        bar = Progress(desc, len(model.layers), total_weight=sum(weights.values()), enabled=not quiet)

        def step(name: str) -> None:
            bar.set_postfix_str(name[-40:])
            bar.update(1, weights.get(name, 1.0))

        try:
            points.append(simulate_path(model_name, model, cfg, accuracy, mac_only, ideal_memory, progress=step))
        finally:
            bar.close()
    return points


def benchmark_of(model: Model) -> str:
    """The task and its label count (``segmentation/150``): accuracies of two models compare only
    when these are equal (an ImageNet top-1 is no ADE20K mIoU, nor a Cityscapes one)."""
    return f"{task_of(model)}/{model.layers[-1].out_shape[-1]}"


def check_models(names: list[str]) -> None:
    """Refuse, before anything is simulated, a model that is unknown, for FLOP counting only, or an
    ONNX file that does not import, and models whose accuracies do not compare (:func:`benchmark_of`):
    their paths would share one accuracy axis and Pareto front (make paths) and one ranking by
    accuracy (make rdd).  UsageError or ValueError."""
    benchmarks: dict[str, str] = {}
    for name in names:
        check_model(name)
        model = build_model(name)
        refuse_flops_only(model, name)
        benchmarks[name] = benchmark_of(model)
    first, *others = benchmarks
    for name in others:
        if benchmarks[name] != benchmarks[first]:
            raise UsageError(f"--model {first} ({benchmarks[first]}) and --model {name} ({benchmarks[name]}) "
                             f"are measured on different benchmarks (task/labels), so their accuracies do not "
                             f"compare; give models of one benchmark (run the others apart)")


def explore(models: list[str], cfg: AcceleratorConfig, accuracy: Optional[AccuracyTable],
            paths: Optional[list[str]] = None, quiet: bool = True, mac_only: bool = False,
            ideal_memory: bool = False) -> list[PathPoint]:
    """Simulate every candidate path of ``models`` (each network once) and mark the Pareto fronts;
    progress on stderr unless ``quiet`` (``simulate_paths``)."""
    jobs: list[tuple[str, Model]] = []
    seen: set[str] = set()
    for m in models:
        for variant in paths or candidate_paths(m):
            model = build_model(m, variant=variant)
            key = structure_key(model)
            if key not in seen:
                seen.add(key)
                jobs.append((m, model))
    points = simulate_paths(jobs, cfg, accuracy, quiet=quiet, mac_only=mac_only, ideal_memory=ideal_memory)
    acc = [p.accuracy for p in points]
    for p, t in zip(points, pareto_mask([p.time_ms for p in points], acc)):
        p.pareto_time = t
    for p, e in zip(points, pareto_mask([p.energy_uj for p in points], acc)):
        p.pareto_energy = e
    return points


def parse_paths(models: list[str], text: str) -> list[str]:
    """The variants of ``--paths`` (separated by ``;``), each network once: a variant naming the
    same layers as an earlier one for every model (``structure_key``) is dropped.  UsageError
    for an empty entry."""
    names = [p.strip() for p in text.split(";")]
    if not all(names):
        raise UsageError(f"bad --paths {text!r}: an empty path; expected one or more variants separated by "
                         f"';' (such as 'full;fuse=512;B2_a'), none of them empty")
    out, seen = [], set()
    for name in names:
        key = tuple(structure_key(build_model(m, variant=name)) for m in models)
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def path_names(models: list[str], paths: list[str]) -> list[str]:
    """Each path's own name (``Model.variant``: ``blocks=3-4-6-3`` of SegFormer-B2 is ``full``),
    joined with ``+`` where the models name it differently: two spellings give one name."""
    return ["+".join(dict.fromkeys(build_model(m, variant=p).variant for m in models)) for p in paths]


def _run_name(args, cfg: AcceleratorConfig, paths: Optional[list[str]]) -> str:
    """``<models>_<config>[_paths-<hash>][_accuracy-<file>-<hash>][_mac_only]``, the folder under
    ``build/paths`` (without ``--out``): named by everything that changes the results; ``paths`` are
    ``parse_paths``'."""
    # named by the networks asked for, not their spelling: 'full;full' and 'full' are one run
    paths = f"paths-{short_hash(';'.join(path_names(args.model, paths)))}" if paths is not None else ""
    accuracy = file_tag(args.accuracy, "accuracy") if Path(args.accuracy).resolve() != DEFAULT_ACCURACY else ""
    return run_name("+".join(model_label(m) for m in args.model), config_tag(cfg),
                                          "ideal_memory" if args.ideal_memory else "", paths, accuracy,
                                          "mac_only" if args.mac_only else "")


def savings(p: PathPoint, base: PathPoint) -> dict[str, float]:
    """What ``p`` saves against ``base`` (fractions; negative when it costs more): paths.json's
    ``time_saving``, ``energy_saving`` and ``mac_saving``, the table's "saved" columns."""
    return {"time_saving": 1 - p.time_ms / base.time_ms, "energy_saving": 1 - p.energy_uj / base.energy_uj,
            "mac_saving": 1 - p.macs / base.macs}


def _print_table(points: list[PathPoint], base: PathPoint) -> None:
    head = ("path", "GMACs", "time ms", "energy uJ", "saved t", "saved E", "conv t%", "accuracy", "front")
    rows = []
    ordered = sorted(points, key=lambda p: -p.time_ms)
    times = column_texts([p.time_ms for p in ordered], 3)
    energies = column_texts([p.energy_uj for p in ordered], 1)
    gmacs = column_texts([p.macs / 1e9 for p in ordered], 3)
    for p, g, time_ms, energy_uj in zip(ordered, gmacs, times, energies):
        saved = savings(p, base)
        rows.append((f"{p.model}:{p.path}", g, time_ms, energy_uj,
                     f"{100 * saved['time_saving']:.1f}%", f"{100 * saved['energy_saving']:.1f}%",
                     f"{100 * p.conv_time_share:.1f}%", "-" if p.accuracy is None else f"{p.accuracy:.4f}",
                     ("T" if p.pareto_time else "") + ("E" if p.pareto_energy else "")))
    print("\n".join(aligned_table(head, rows, "<>>>>>>><")))
    print(f"saved t, saved E: time and energy saved against {base.model}:{base.path}; T/E = on the time/energy "
          f"Pareto front (paths without accuracy data are not ranked)")


def _write(folder: Path, args, cfg: AcceleratorConfig, points: list[PathPoint], base: PathPoint,
           formats: tuple[str, ...], comparison: list[dict], paths: Optional[list[str]]) -> list[str]:
    doc = {"models": args.model, "config": config_tag(cfg), "config_params": cfg.to_dict(), "accuracy_file": args.accuracy,
           "baseline": f"{base.model}:{base.path}", "retrained_vs_pruned": comparison,
           "points": [dict(p.to_dict(), **savings(p, base)) for p in points]}
    (folder / "paths.json").write_text(json.dumps(doc, indent=1) + "\n")
    with open(folder / "paths.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "path", "macs", "time_ms", "energy_uj", "accuracy", "pareto_time", "pareto_energy"])
        for p in points:
            w.writerow([p.model, p.path, p.macs, f"{p.time_ms:.4f}", f"{p.energy_uj:.2f}",
                        "" if p.accuracy is None else p.accuracy, int(p.pareto_time), int(p.pareto_energy)])
    files = ["paths.json", "paths.csv"]
    if not args.no_plots and not any(p.accuracy is not None for p in points):
        print("no path has accuracy data: no plot drawn (give --accuracy)", file=sys.stderr)
    elif not args.no_plots:
        asked = paths if paths is not None else [v for m in args.model for v in candidate_paths(m)]
        named = [v for v in asked if _is_point_name(v)]        # full, B2_a, ...: labelled in the plot
        files += [f.name for f in plots.paths(points, f"{'+'.join(args.model)} on {config_tag(cfg)}", folder, formats,
                                              label_names=named, accuracy_from=_accuracy_source(args.accuracy))]
    return files


def _is_point_name(variant: str) -> bool:
    """``full`` or a family's named point (``B2_a``, ``MAC1.2B``): not a parameter spelling, nor
    its short name (``blocks1-1-1-1``)."""
    points = {p for family in NAMED_POINTS.values() for p in family} | set(OFA_NAMED_POINTS)
    return is_full(variant) or variant.strip() in points


def _accuracy_source(accuracy: str) -> str:
    """The plot legend's words for where the accuracies come from."""
    if Path(accuracy).resolve() == DEFAULT_ACCURACY:
        return "published accuracy"
    return f"accuracy from {Path(accuracy).name}"


#: The costs a path is compared by: PathPoint attribute -> label.
COSTS = {"time_ms": "time", "energy_uj": "energy", "energy_onchip_uj": "on-chip energy"}


def cost_at_accuracy(points: list[PathPoint], accuracy: float, cost: str) -> Optional[dict]:
    """The least ``cost`` (a PathPoint attribute) at which ``points`` reach ``accuracy``: on their
    Pareto front of cost against accuracy, linear in accuracy between the two front points around
    it (as a curve drawn through them, like the paper's Figure 11).  None outside the front's range."""
    known = [p for p in points if p.accuracy is not None]
    front = sorted((p for p, on in zip(known, pareto_mask([getattr(p, cost) for p in known],
                                                             [p.accuracy for p in known])) if on),
                   key=lambda p: p.accuracy)
    for lo, hi in zip(front, front[1:]):
        if lo.accuracy <= accuracy <= hi.accuracy:
            f = (accuracy - lo.accuracy) / (hi.accuracy - lo.accuracy)
            value = getattr(lo, cost) + f * (getattr(hi, cost) - getattr(lo, cost))
            return {"value": value, "between": [lo.path, hi.path]}
    exact = [p for p in front if p.accuracy == accuracy]
    return {"value": getattr(exact[0], cost), "between": [exact[0].path]} if exact else None


def retrained_vs_pruned(points: list[PathPoint], base: PathPoint) -> list[dict]:
    """For every less accurate path with weights of its own (a retrained model), its savings over
    ``base`` against those of ``base``'s own weight set pruned to the same accuracy without
    retraining (the paper's Section V-A comparison of SegFormer B1 with pruned B2).  Only paths
    of ``base``'s benchmark (:func:`benchmark_of`) compare."""
    pruned = [p for p in points if p.weight_set == base.weight_set]
    out = []
    for p in points:
        if p.accuracy is None or p.weight_set == base.weight_set or base.accuracy is None \
                or p.accuracy >= base.accuracy or p.benchmark != base.benchmark:
            continue
        row = {"path": f"{p.model}:{p.path}", "accuracy_loss": base.accuracy - p.accuracy}
        for cost in (c for c in COSTS if getattr(base, c)):        # a cost the base has (not 0)
            at = cost_at_accuracy(pruned, p.accuracy, cost)
            row[cost] = {"retrained_saving": 1 - getattr(p, cost) / getattr(base, cost),
                         "pruned_saving": None if at is None else 1 - at["value"] / getattr(base, cost),
                         "pruned_between": None if at is None else at["between"]}
        out.append(row)
    return out


def _comparison_lines(rows: list[dict], base: PathPoint) -> list[str]:
    lines = []
    for row in rows:
        parts = []
        for cost, label in ((c, l) for c, l in COSTS.items() if c in row):
            r = row[cost]
            retrained = f"{label} {100 * r['retrained_saving']:.1f} % retrained"
            parts.append(f"{retrained} (no pruned path of {base.model}:{base.path} spans its accuracy)"
                         if r["pruned_saving"] is None else
                         f"{retrained} vs {100 * r['pruned_saving']:.1f} % pruned ({'-'.join(r['pruned_between'])})")
        lines.append(f"{row['path']} against {base.model}:{base.path}, {100 * row['accuracy_loss']:.1f} points "
                     f"less accurate: savings " + "; ".join(parts))
    return lines


def _parser() -> OneLineParser:
    ap = OneLineParser(prog="python -m sim.paths", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True,
                    help=f"the model whose execution paths run: {MODEL_HELP} (repeat to join models of one benchmark)")
    ap.add_argument("--config", default="E", help="a preset or a .toml accelerator file (default E)")
    add_override_options(ap)
    add_refused_options(ap, "paths")
    ap.add_argument("--accuracy", default=str(DEFAULT_ACCURACY), help="CSV model,path,accuracy[,weight_set,source] of the paths' accuracies "
                                                               "(default data/accuracy_paper.csv: the paper's published ones)")
    ap.add_argument("--paths", help="variants separated by ';' instead of the built-in candidates, each network "
                                    "once (through make: PATHS='fuse=512;B2_a', which make quotes for the shell)")
    ap.add_argument("--out", default=None, help="output folder (default build/paths/<name of the run>)")
    add_plot_options(ap, "the plot")
    ap.add_argument("--ideal-memory", action="store_true",
                    help="time the mappings with unlimited DRAM and bus bandwidth and no DRAM latency "
                         "(as sim.run --ideal-memory)")
    ap.add_argument("--mac-only", action="store_true", help="leave non-MAC layers out of time and energy (as sim.run --mac-only)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        check_models(args.model)
        cfg = config_from_args(args)
        table = AccuracyTable.read(args.accuracy)
        paths = parse_paths(args.model, args.paths) if args.paths is not None else None   # a bad one: refused now
        formats = parse_formats(args.format, args.no_plots)
        name = _run_name(args, cfg, paths)
        stage = StagedDir(Path(args.out) if args.out else Path("build/paths") / name, OWNED, run=name)
    except (KeyError, ValueError, UsageError) as e:
        return fail(ap.prog, e)
    with stage:
        try:
            points = explore(args.model, cfg, table, paths, quiet=args.quiet, mac_only=args.mac_only,
                             ideal_memory=args.ideal_memory)
        except MappingError as e:           # as make sim refuses it; nothing written
            return fail(ap.prog, mapping_refusal(cfg.name, e))
        except DramCapacityError as e:
            return fail(ap.prog, e)
        base = next((p for p in points if p.path == "full"), points[0])
        comparison = retrained_vs_pruned(points, base)
        files = _write(stage.path, args, cfg, points, base, formats, comparison, paths)
        out = stage.commit()
    _print_table(points, base)
    for line in _comparison_lines(comparison, base):
        print(line)
    unused = table.unused(args.model, paths)
    if unused:
        print(f"{counted(len(unused), 'accuracy row')} of {args.accuracy} name paths that were not simulated: "
              f"{', '.join(f'{r.model}:{r.path}' for r in unused[:5])}{' ...' if len(unused) > 5 else ''} "
              f"(simulate them with --paths, in make: PATHS='...')")
    print(f"wrote {', '.join(files)} to {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
