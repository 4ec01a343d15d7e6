"""Simulate a network on one accelerator configuration: ``python -m sim.run --model M --config CFG``.

``make sim MODEL=segformer_b2 CFG=E [VARIANT=...] [SIZE=HxW] [CHECK=1] [OUT=dir] [FORMAT=pdf]`` runs it.

Prints a per-layer table (name, kind, MACs, cycles, utilisation, stall cycles,
energy, energy per MAC) and the totals: cycles, time at the clock, energy,
energy per MAC, throughput per mm^2 of PE array (``sim.area.area_mm2``), the
shares of time and energy per layer kind and per part, and the five largest
layers by time.  Writes into ``--out`` (default ``build/sim/<name>``, a name
made of everything that changes the results: ``run_dir``): ``report.json``,
``layers.csv``, ``time_energy.<fmt>`` and ``energy_per_mac.<fmt>`` (unless
``--no-plots``; ``sim.plots``), ``trace.json`` with ``--trace`` or
``--trace-layers`` (``sim.trace``) and ``streams/<layer>.bin|.lst|.json`` with
``--dump-layer`` (``sim.streams``).  ``docs/sim_report.md`` describes the files.

The folder is written as a whole (``hw.cli.StagedDir``): into a hidden staging
folder beside it, created before the simulation starts (an unwritable location
is refused at once), and renamed into place only once everything has been
produced; a folder of an earlier run with the same name is replaced as a whole.
Bad input (unknown model, configuration, variant, size or layer, an override
out of range, an output folder that cannot be written, a layer no tiling of
the configuration's buffers can hold) prints one line on stderr and exits with
status 2 without writing anything; a functional-check mismatch (``--check``)
exits with status 1, prints the seed to replay it with, and writes nothing either.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from hw.cli import OneLineParser, StagedDir, StageTicker, UsageError, aligned_table, counted, fail, human_bytes, kib_text, run_main, seed
from hw.config import PRESETS, AcceleratorConfig
from mapper.flops import MODEL_HELP, build_model_or_usage_error, known_model, model_parts, parse_size, refuse_flops_only
from mapper.ir import MAC_KINDS, PARTS, Model
from mapper.lower import MappingError, refuse_beyond_isa
from mapper.program import DramCapacityError
from mapper.workloads import is_onnx_path

from . import plots
from .area import area_mm2, extrapolation
from .config_args import add_override_options, config_from_args
from .outputs import add_plot_options, config_parts, config_tag, parse_formats, run_name
from .progress import Progress, layer_weights
from .simulator import SimResult, mapping_refusal, require_dram_fit, simulate
from .streams import dump_layer, layer_stream
from .trace import DETAIL_CAP, build_trace, default_detail

__all__ = ["main", "build_report", "format_table", "format_totals", "run_dir", "layer_stream", "CSV_COLUMNS", "OWNED"]

DEFAULT_ROOT = Path("build") / "sim"
KIND_GROUPS = ("conv2d", "linear", "matmul", "non_mac")
CSV_COLUMNS = ("name", "kind", "part", "shape", "macs", "cycles", "compute_cycles", "stall_cycles",
               "utilization", "energy_pj", "energy_onchip_pj", "energy_per_mac_pj", "start_cycle", "instructions",
               "bound", "mapping")
DETAIL_CAP_TEXT = f"{DETAIL_CAP:,}"
#: What a run leaves in its folder (an existing folder holding anything else is not replaced).
OWNED = ("report.json", "layers.csv", "trace.json", "streams", "time_energy.*", "energy_per_mac.*")


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


def run_dir(model: Model, cfg: AcceleratorConfig, size_given: bool, *, mac_only: bool = False,
            fuse: bool = True, ideal_memory: bool = False, check_seed: int | None = None) -> str:
    """``<model>_<config>[_<variant>][_<H>x<W>][_<overrides>][_ideal_memory][_mac_only][_no_fusion]
    [_check_seed<n>]``: the folder name of a run, made of everything that changes its results
    (``sim.outputs.config_tag`` names the configuration with its overrides); a functional check's
    result is one, so a checked run (with its seed) never replaces an unchecked one, nor another seed's."""
    name, variant, size = model_parts(model, size_given)
    preset, overrides = config_parts(cfg)
    return run_name(name, preset, variant, size, overrides, "ideal_memory" if ideal_memory else "",
                    "mac_only" if mac_only else "", "no_fusion" if not fuse and not mac_only else "",
                    f"check_seed{check_seed}" if check_seed is not None else "")


def build_report(res: SimResult, cfg_key: str, input_shape=None) -> dict:
    """The report.json document of a simulation (``docs/sim_report.md``); ``input_shape``: the
    model's (H, W, C) input, which tells reports of one model at two sizes apart."""
    cfg = res.config
    area = area_mm2(cfg)
    seconds = res.time_ms * 1e-3
    largest = sorted(res.layers, key=lambda r: r.cycles, reverse=True)[:5]
    return {
        "model": res.model,
        "config": cfg_key,
        "variant": res.variant,
        **({"input": list(input_shape)} if input_shape is not None else {}),
        "clock_ghz": cfg.clock_ghz,
        "total_cycles": res.total_cycles,
        "time_ms": res.time_ms,
        "energy_uj": res.energy_uj,
        "energy_onchip_uj": res.energy_onchip_pj * 1e-6,
        "total_macs": res.total_macs,
        "energy_per_mac_pj": res.energy_pj / res.total_macs if res.total_macs else None,
        "utilization": res.utilization,
        "area_mm2": area,
        "area_extrapolated": extrapolation(cfg),
        "macs_per_s_per_mm2": res.total_macs / seconds / area if seconds and area else None,
        "config_params": cfg.to_dict(),
        "mac_only": bool(res.extra.get("mac_only")),
        "fusion": bool(res.extra.get("fuse", True)) and not res.extra.get("mac_only"),
        "gb_resident_tensors": int(res.extra.get("gb_resident", 0)),
        "band_chains": list(res.extra.get("band_chains", [])),
        "dram_bytes": sum(r.events.get(k, 0) for r in res.layers for k in ("dram_read_bytes", "dram_write_bytes")),
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
    MACs, DRAM, bus or vector unit); and what the schedule adds (fill, drain, stalls).  The
    fused floor is the layer-by-layer floor with every tensor that fits in the global buffer
    kept on chip (``sim.simulator.fused_least_cycles``): what cross-layer fusion could reach."""
    mac_floor = res.total_macs / res.config.macs_per_cycle
    resource = sum(max(r.floors.values()) for r in res.layers if r.cycles)
    return {"mac_floor_cycles": mac_floor,
            "layer_floor_mac_layers_cycles": sum(r.least_cycles for r in res.layers if r.macs),
            "layer_floor_cycles": sum(r.least_cycles for r in res.layers),
            "fused_floor_cycles": sum(r.fused_least_cycles for r in res.layers),
            "resource_floor_cycles": resource,
            "schedule_overhead_cycles": res.total_cycles - resource}


def _eng(x: float, unit: str) -> str:
    for f, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= f:
            return f"{x / f:.3f} {p}{unit}"
    return f"{x:.3f} {unit}"


def assumptions_line(cfg: AcceleratorConfig) -> str:
    # four significant digits, not one decimal: 1 B/cycle at 0.01 GHz is 0.01 GB/s, not 0.0
    return (f"assumptions: DRAM {cfg.dram_bytes_per_cycle} B/cycle "
            f"({cfg.dram_bytes_per_cycle * cfg.clock_ghz:.4g} GB/s), DRAM latency {cfg.dram_latency} cycles, "
            f"clock {cfg.clock_ghz:g} GHz, global buffer {kib_text(cfg.global_buf_bytes)} "
            f"on a {cfg.gb_bus_bytes} B/cycle bus")


#: What marks a band chain's first layer in the table: its row carries the whole chain.
CHAIN_MARK = "*"


def format_table(doc: dict) -> str:
    # the last column: the binding resource, or where a layer without cycles of its own went
    head = ("layer", "kind", "MACs", "cycles", "util %", "stall", "energy nJ", "pJ/MAC", "bound / fused")
    chains = doc.get("band_chains", [])
    heads = {c["layers"][0] for c in chains}
    rows = []
    for l in doc["layers"]:
        epm = l["energy_per_mac_pj"]
        name = f"{l['name']} {CHAIN_MARK}" if l["name"] in heads else l["name"]
        rows.append((name, l["kind"], f"{l['macs']:,}", f"{l['cycles']:,}", f"{100 * l['utilization']:.1f}",
                     f"{l['stall_cycles']:,}", f"{l['energy_pj'] / 1e3:,.1f}", f"{epm:.3f}" if epm else "-",
                     l.get("bound", "") if l["cycles"] else l.get("mapping", "")))
    return "\n".join([*aligned_table(head, rows, "<<>>>>>><"), *([_chain_footnote(chains)] if chains else [])])


def _chain_footnote(chains: list) -> str:
    """The table's line under its rows on the chain heads' mark: a head's row is its whole chain."""
    sizes = sorted({len(c["layers"]) for c in chains})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    named = f": {' -> '.join(chains[0]['layers'])}" if len(chains) == 1 else ""
    return (f"{CHAIN_MARK} first layer of a band chain ({counted(len(chains), 'chain')} of {size} layers{named}): "
            f"its row carries the whole chain's MACs, cycles, energy and bound; the chain's other layers' rows "
            f"say 'in band chain of' it and carry none")


def _ms_text(ms: float) -> str:
    """A time as the report prints it: three decimals, or four significant digits below 1 ms (a small
    network's floors were all '0.001 ms')."""
    return f"{ms:.3f} ms" if ms >= 1 or ms == 0 else f"{ms:#.4g} ms"


def _bounds_line(doc: dict) -> str:
    b, ms = doc["bounds"], doc["time_ms"] / doc["total_cycles"]
    t = lambda key: _ms_text(b[key] * ms)
    return "\n".join([
        f"time floors:       MACs at full rate {t('mac_floor_cycles')}",
        f"                   layer by layer with least DRAM traffic: MAC layers alone "
        f"{t('layer_floor_mac_layers_cycles')}, every layer {t('layer_floor_cycles')}",
        f"                   with every tensor that fits the global buffer kept on chip (fused) "
        f"{t('fused_floor_cycles')}",
        f"                   each layer at its busiest resource {t('resource_floor_cycles')}; "
        f"schedule overhead {t('schedule_overhead_cycles')}"])


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
        *([f"DRAM traffic:      {human_bytes(doc['dram_bytes'])}; {counted(doc['gb_resident_tensors'], 'tensor')} kept in the "
           f"global buffer between layers"] if "dram_bytes" in doc else []),
        *([_band_chains_line(doc["band_chains"])] if doc.get("band_chains") else []),
        f"MAC utilisation:   {100 * doc['utilization']:.1f} %",
        f"PE-array area:     {doc['area_mm2']:.3f} mm^2" + _extrapolated(doc),
        "throughput/area:   " + (_eng(doc["macs_per_s_per_mm2"], "MAC/s") + " per mm^2"
                                 + (" (as uncertain as the area)" if doc.get("area_extrapolated") else "")
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


# ---- command line ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sim.run", description="Simulate a network on one accelerator configuration.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--config", required=True, help=f"one of: {', '.join(PRESETS)}; or a .toml accelerator file")
    p.add_argument("--check", action="store_true",
                   help="also run the whole network in functional mode and compare every tensor with the golden model")
    p.add_argument("--seed", type=seed, default=None, help="seed of --check (default: from the time; printed)")
    add_override_options(p)
    p.add_argument("--ideal-memory", action="store_true",
                   help="time the mappings chosen for the configured DRAM with unlimited DRAM and bus bandwidth "
                        "and no DRAM latency (the paper's apparent assumption)")
    p.add_argument("--mac-only", action="store_true",
                   help="leave non-MAC layers out of time and energy (as the paper's accelerator figures); "
                        "implies --no-fusion: the MAC layers run one by one")
    p.add_argument("--no-fusion", action="store_true",
                   help="run every non-MAC layer as its own vector pass (see mapper/fusion.py), to measure fusion")
    p.add_argument("--out", default=None, help="output folder (default build/sim/<name of the run>)")
    add_plot_options(p, "the plots")
    p.add_argument("--dump-layer", action="append", default=None, metavar="NAME",
                   help="write streams/<NAME>.bin, .lst and .json (repeatable: one set of files per layer)")
    p.add_argument("--trace", action="store_true",
                   help="write trace.json (Chrome trace events, Perfetto), instructions of every layer "
                        f"if the network has at most {DETAIL_CAP_TEXT} of them, else of the longest layers")
    p.add_argument("--trace-layers", default=None, metavar="NAME[,NAME...]",
                   help="write trace.json with the instructions of these layers ('all': every layer)")
    p.add_argument("--quiet", action="store_true", help="no progress and no per-layer table")
    return p


def _setup(args) -> tuple[Model, AcceleratorConfig, str]:
    """Model, configuration and the name the report gives it from the arguments; UsageError on bad input."""
    known_model(args.model)
    size = parse_size(args.size) if args.size is not None else None
    cfg = config_from_args(args)
    # its tag, as the folder's name has it: a file that calls G's fields "E" (or E with overrides)
    # is not reported as the preset E
    key = config_tag(cfg)
    model = build_model_or_usage_error(args.model, args.variant, size, progress=not args.quiet)
    refuse_flops_only(model, args.model)
    if args.dump_layer is not None:
        _known_layers(model, args.dump_layer, "--dump-layer")
    return model, cfg, key


def _known_layers(model: Model, names: list[str], option: str) -> None:
    known = {l.name for l in model.layers}
    for name in names:
        if name not in known:
            examples = [l.name for l in model.mac_layers][:8]
            raise UsageError(f"unknown layer {name!r} in {option} for {model.name}; e.g. {', '.join(examples)} "
                             f"({len(model.layers)} layers; see the table or layers.csv)")


def _trace_layers(args, model: Model) -> list[str] | None:
    """The layers whose instructions ``trace.json`` shows (None: the default choice)."""
    if args.trace_layers is None:
        return None
    if args.trace_layers.strip() == "all":
        return [l.name for l in model.layers]
    names = [n.strip() for n in args.trace_layers.split(",")]
    if not all(names) or "all" in names:
        raise UsageError(f"bad --trace-layers {args.trace_layers!r}: expected NAME[,NAME...] or 'all' alone")
    _known_layers(model, names, "--trace-layers")
    return names


def _bar(args, total: int, desc: str, weights: dict | None = None) -> Progress:
    return Progress(desc, total, total_weight=sum(weights.values()) if weights else None, enabled=not args.quiet)


def _write_files(stage: Path, args, doc: dict, res: SimResult, model: Model, cfg: AcceleratorConfig,
                 detail: list[str] | None, formats: tuple[str, ...]) -> list[str]:
    """Every output file of the run into ``stage``; notes for the user."""
    notes = []
    with open(stage / "report.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    _write_csv(doc, stage / "layers.csv")
    if not args.no_plots:
        plots.time_energy(doc, stage, formats)
        plots.energy_per_mac(doc, stage, formats)
    if args.trace or detail is not None:
        chosen = detail if detail is not None else default_detail(res)
        if detail is None and len(chosen) < sum(1 for r in res.layers if r.instructions):
            notes.append(f"trace.json details the instructions of the {len(chosen)} longest layers only "
                         f"(more than {DETAIL_CAP_TEXT} instructions in all); --trace-layers NAME,... or all "
                         f"chooses others")
        with open(stage / "trace.json", "w") as f:
            json.dump(build_trace(res, model, cfg, chosen), f, separators=(",", ":"))
    if args.dump_layer is not None:
        (stage / "streams").mkdir()
        mappings = {r.name: r.mapping for r in res.layers}
        for name in dict.fromkeys(args.dump_layer):          # each layer once, in the order given
            dumped = dump_layer(model, name, cfg, stage / "streams", mac_only=args.mac_only,
                                fuse=not args.no_fusion, mappings=mappings)
            if dumped.note:
                notes.append(f"--dump-layer: {dumped.note} (streams/{dumped.files[0].name})")
    return notes


def _extrapolated(doc: dict) -> str:
    """The note on an area the model extrapolates beyond the Table II presets it is fitted on."""
    why = doc.get("area_extrapolated")
    if not why:
        return ""
    more = f"; {len(why) - 2} more in report.json" if len(why) > 2 else ""
    return f" (extrapolated beyond Table II, on which sim/area.py is fitted: {'; '.join(why[:2])}{more})"


def _band_chains_line(chains: list) -> str:
    """The totals' line on band chains: what they saved against their layers one by one (they
    are chosen for the configured DRAM; timed with memory no limit they may cost instead)."""
    saved = sum(c["layer_by_layer_cycles"] - c["cycles"] for c in chains)
    return (f"band chains:       {len(chains)} (layers run in row bands through the global buffer: "
            f"{sum(len(c['layers']) for c in chains)} layers, {sum(c['fences_dropped'] for c in chains):,} FENCEs "
            f"between their band streams replaced by tokens; "
            + (f"{saved:,} cycles saved against layer by layer)" if saved >= 0
               else f"{-saved:,} cycles more than layer by layer)"))


def _rtl_notes(cfg: AcceleratorConfig, res) -> list[str]:
    """The note that no RTL runs what was simulated, when the RTL cannot build ``cfg``
    (``hw.rtl.export.unbuildable``, what make config's RTL line and make verilog say), or builds it
    without the vector executor that the program's VEC passes and softmax epilogues need (E).
    Imported here, once the simulation is done: the RTL's import (amaranth) adds 0.1-0.2 s of CPU
    time, which a refused run does not pay."""
    from hw.config_file import rtl_support
    from hw.rtl.export import unbuildable
    from hw.rtl.vector_executor import builds_vector_unit
    why = unbuildable(cfg)
    if why is not None:
        return [f"the RTL cannot build {cfg.name} (make verilog refuses it): {why}; "
                f"these figures are the simulator's alone"]
    passes = sum(r.mapping.startswith("vector unit") for r in res.layers)
    epilogues = sum(r.mapping.startswith("epilogue of") for r in res.layers)
    if builds_vector_unit(cfg) or not (passes or epilogues):
        return []
    return [f"the RTL of {cfg.name}: make verilog {rtl_support(cfg)}: this program's {counted(passes, 'vector pass', 'vector passes')} "
            f"and {counted(epilogues, 'softmax epilogue')} are timed by the simulator alone"]


def _dram_too_small(args, model: Model, cfg: AcceleratorConfig) -> str:
    """Why the network's DRAM image does not fit ``dram_mib`` (empty if it does)."""
    try:
        require_dram_fit(model, cfg, fuse=not args.no_fusion, mac_only=args.mac_only,
                         announce=None if args.quiet else f"{model.name} on {cfg.name}")
    except DramCapacityError as e:
        return str(e)
    return ""


def _seed_without_check(args) -> str:
    """Why ``--seed`` without ``--check`` is refused: it would be silently ignored.  The seed draws the
    check's calibration and input images, and a zoo model's weights; an ONNX file has its own."""
    drawn = ("calibration and input images (the file's weights are its own)" if is_onnx_path(args.model)
             else "weights, calibration images and input image")
    return (f"--seed {args.seed} draws only --check's {drawn}, which the timing does not depend on; "
            "add --check (make sim CHECK=1 SEED=...) or leave the seed out")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        model, cfg, key = _setup(args)
        formats = parse_formats(args.format, args.no_plots)
        detail = _trace_layers(args, model)
        if args.check and args.mac_only:
            raise UsageError("--check runs the whole network, so it cannot be combined with --mac-only")
        if args.seed is not None and not args.check:
            raise UsageError(_seed_without_check(args))
        check_seed = None
        if args.check:
            from .inference import runs_on_images
            runs_on_images(model)
            check_seed = args.seed if args.seed is not None else int(time.time() * 1000) % (1 << 31)
        name = run_dir(model, cfg, args.size is not None, mac_only=args.mac_only, fuse=not args.no_fusion,
                       ideal_memory=args.ideal_memory, check_seed=check_seed)
        stage = StagedDir(Path(args.out) if args.out else DEFAULT_ROOT / name, OWNED, run=name)
    except UsageError as e:
        return fail(prog, e)
    with stage:
        return _run(args, prog, model, cfg, key, stage, formats, detail, check_seed)


class _CheckFailed(Exception):
    """The functional check disagreed with the golden model: exit status 1, not a usage error."""


def _run(args, prog, model, cfg, key, stage: StagedDir, formats, detail, seed: int | None) -> int:
    try:
        res, wall = _simulated(args, model, cfg, key)
        check, check_s = _checked(args, model, cfg, key, seed) if args.check else (None, 0.0)
    except MappingError as e:
        return fail(prog, mapping_refusal(key, e))
    except UsageError as e:
        return fail(prog, e)
    except _CheckFailed as e:
        print(f"{prog}: functional check FAILED (seed {seed}): {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    doc = build_report(res, key, model.input)
    if check is not None:
        doc["check"] = check
    notes = _write_files(stage.path, args, doc, res, model, cfg, detail, formats) + _rtl_notes(cfg, res)
    written = sum(1 for p in stage.path.rglob("*") if p.is_file())
    out = stage.commit()
    _print_summary(args, doc, res, check, notes)
    print(f"simulated in {wall:.2f} s" + (f", checked in {check_s:.2f} s" if check is not None else "")
          + f"; wrote {written} files to {out}"
          + stage.replaced_note())
    return 0


def _simulated(args, model: Model, cfg: AcceleratorConfig, key: str) -> tuple[SimResult, float]:
    """The timing simulation and its wall time, with a progress bar; refusals before any work."""
    t0 = time.perf_counter()                         # the check maps the layers the simulation times
    refuse_beyond_isa(model.layers, cfg)             # a huge input size: before anything is allocated
    too_big = _dram_too_small(args, model, cfg)      # before the simulation: it fails in a second
    if too_big:
        raise UsageError(too_big)
    weights = layer_weights(model)
    bar = _bar(args, len(model.layers), f"{model.name} on {key}", weights)

    def step(name: str) -> None:
        bar.set_postfix_str(name[-40:], refresh=False)
        bar.update(1, weights.get(name, 1.0))

    try:                                             # (a terminal's bar cleared before any error line)
        res = simulate(model, cfg, progress=step, mac_only=args.mac_only, fuse=not args.no_fusion,
                       ideal_memory=args.ideal_memory)
    finally:
        bar.close()
    return res, time.perf_counter() - t0


def _checked(args, model: Model, cfg: AcceleratorConfig, key: str, seed: int) -> tuple[dict, float]:
    """The functional check of the whole network (its summary) and its wall time."""
    from .functional import CheckError
    from .inference import check_network
    t_check = time.perf_counter()
    print(f"functional check seed: {seed} (replay with --seed {seed}; in make: SEED={seed})", flush=True)
    bar = _bar(args, len(model.layers), "functional check")
    # the program is built before the first step reports (a minute for a large network)
    ticker = StageTicker(f"{model.name} on {key}", enabled=not args.quiet)
    ticker.stage("functional check: building the whole-network program")

    def cstep(*a, **k) -> None:
        ticker.stop()
        if a:
            bar.set_postfix_str(str(a[0])[-40:], refresh=False)
        bar.update(1)

    try:
        with ticker:
            check = check_network(model, cfg, seed=seed, fuse=not args.no_fusion, progress=cstep)
    except CheckError as e:
        raise _CheckFailed(str(e)) from e
    finally:
        bar.close()
    check = dict(check) if isinstance(check, dict) else {"result": check}
    check.setdefault("seed", seed)
    return check, time.perf_counter() - t_check


def _print_summary(args, doc: dict, res: SimResult, check: dict | None, notes: list[str]) -> None:
    if not args.quiet:
        print(format_table(doc))
        print()
    print(format_totals(doc, res.config))
    if check is not None:
        print(f"functional check passed: the whole network from input to output, {counted(check['tensors'], 'tensor')} "
              f"({check['elements']:,} elements) bit-exact with the golden model, seed {check['seed']}")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    run_main(main)
