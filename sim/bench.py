"""Simulator benchmark for ``make bench``: ``python -m sim.bench [--out DIR] [--repeat N]``.

Times the timing-mode simulation (``sim.simulator.simulate``, model already
built) of segformer_b2, swin_tiny and resnet50 on configuration E: the median
wall time of ``--repeat`` runs (default 3), each with the mapper's
process-level caches cleared first (``mapper.lower.forget_searches``) and
the tilings remembered on disk unused (``mapper.tiling_cache.disabled``), so every run
maps from scratch, then one more run with them remembered.  Records each run's
simulated time, energy and MAC utilisation, the golden model's depthwise convolution at SegFormer's largest shape,
and the wall (and CPU) time of the whole-network functional check
(``CHECK=1``: calibrated network, program, golden comparison) of segformer_b0 at
64x64 on ``small`` and of segformer_b2 at 512x512 on E (seed 0), and of importing the exported ONNX files of
segformer_b2 and swin_tiny (``onnx_import``), and the memory a program of ResNet-50 on small (about a
million instructions) holds and peaks at while built (``program_memory``).  ``figures`` holds the issue's checks, computed from the runs: for
SegFormer-B2 and Swin-T on E, in the default model, with ``--no-fusion`` (time, cycles,
energy and DRAM bytes of both, and ``fusion_saving``: each of these, the unfused run's minus the
fused run's, and the energy of the DRAM accesses fusion removes) and in the
paper-comparable mode (``--ideal-memory --mac-only``), the time against the paper's, the
convolutions' share of time, the largest layer's shares of time and energy,
the time floors, and the five MAC layers with the highest energy per MAC.
Writes ``<out>/sim.json`` (default ``build/bench``) atomically and prints a
summary.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

from hw.cli import OneLineParser, UsageError, atomic_write_json, number_type, run_main, try_folder
from hw.config import get_config
from mapper import tiling_cache
from mapper.lower import forget_searches
from mapper.workloads import build_model

from .run import build_report
from .simulator import simulate

TIMING_CASES = (("segformer_b2", "E"), ("swin_tiny", "E"), ("resnet50", "E"))
#: Whole-network functional checks (CHECK=1): the issue's SegFormer-B2 at 512x512 on E, and a small case.
CHECK_CASES = (("segformer_b0", (64, 64), "small"), ("segformer_b2", None, "E"))
#: Mapping on a cramped accelerator file (tiny with K0 = C0 = 2 and 4 rows in every buffer): tiles of one
#: or two pixels, so each layer's search builds and times streams of tens of thousands of instructions.
CRAMPED = {"k0": 2, "c0": 2, "weight_buf_bytes": 16, "input_buf_bytes": 8, "accum_depth": 4, "param_depth": 8}
#: A program of about a million instructions whose memory is measured (``bench_program_memory``).
MEMORY_CASES = (("resnet50", "small"),)
MAPPING_CASES = (("segformer_b0", (32, 32), "tiny", CRAMPED),)
#: Networks whose exported ONNX file's import is timed.
IMPORT_CASES = ("segformer_b2", "swin_tiny")
#: The paper's figures on E (Section IV) that the issue checks against.
PAPER = {"segformer_b2": {"time_ms": 3.6, "largest": "Conv2DFuse", "conv_time_share": 0.74},
         "swin_tiny": {"time_ms": 12.0, "largest": "fpn_bottleneck", "conv_time_share": 0.87}}


def figures(res, paper: dict) -> dict:
    """The checked figures of one simulation, from its report."""
    doc = build_report(res, res.config.name)
    total_cycles = sum(l["cycles"] for l in doc["layers"]) or 1
    largest = next(l for l in doc["layers"] if l["name"] == paper["largest"])
    per_mac = sorted((l for l in doc["layers"] if l["macs"] and l["cycles"]),
                     key=lambda l: l["energy_per_mac_pj"], reverse=True)[:5]
    return {"time_ms": res.time_ms, "total_cycles": res.total_cycles, "energy_uj": res.energy_uj,
            "energy_dram_uj": (res.energy_pj - res.energy_onchip_pj) * 1e-6, "dram_bytes": doc["dram_bytes"], "gb_resident_tensors": doc["gb_resident_tensors"],
            "paper_time_ms": paper["time_ms"], "within_paper_time": res.time_ms <= paper["time_ms"],
            "conv_time_share": doc["shares"]["kind"]["time"]["conv2d"], "paper_conv_time_share": paper["conv_time_share"],
            "largest_layer": paper["largest"], "largest_time_share": largest["cycles"] / total_cycles,
            "largest_energy_share": largest["energy_pj"] / res.energy_pj,
            "largest_energy_onchip_share": largest["energy_onchip_pj"] / res.energy_onchip_pj,
            "conv_energy_onchip_share": doc["shares"]["kind"]["energy_onchip"]["conv2d"], "bounds_ms": {
                k.replace("_cycles", ""): v / (res.config.clock_ghz * 1e6) for k, v in doc["bounds"].items()},
            "highest_energy_per_mac": [{"name": l["name"], "shape": l["shape"], "pj": l["energy_per_mac_pj"]}
                                       for l in per_mac]}


def fusion_saving(fused: dict, unfused: dict) -> dict:
    """What fusion saves against ``--no-fusion``, each field the unfused figure minus the fused one
    (positive when fusion saves): time (``time_ms``, ``total_cycles``), DRAM bytes read and written,
    all the energy (``energy_uj``) and that of the DRAM accesses alone (``energy_dram_uj``: the
    bytes fusion removes, at the DRAM's cost per byte)."""
    keys = ("time_ms", "total_cycles", "dram_bytes", "energy_uj", "energy_dram_uj")
    return {k: unfused[k] - fused[k] for k in keys}


def bench_figures() -> dict:
    out = {}
    for name, paper in PAPER.items():
        model = build_model(name)
        fused, unfused = (figures(simulate(model, get_config("E"), fuse=f), paper) for f in (True, False))
        out[name] = {"default": fused, "no_fusion": unfused, "fusion_saving": fusion_saving(fused, unfused),
                     "paper_comparable": figures(simulate(model, get_config("E"), mac_only=True, ideal_memory=True),
                                                 paper)}
    return out


def bench_timing(name: str, cfg_name: str, repeat: int) -> dict:
    cfg = get_config(cfg_name)
    model = build_model(name)
    walls = []
    res = None
    for _ in range(repeat):
        forget_searches()
        t0 = time.perf_counter()
        with tiling_cache.disabled():
            res = simulate(model, cfg)
        walls.append(time.perf_counter() - t0)
    for _ in range(2):          # a run that remembers the tilings on disk, then one that reads them
        forget_searches()
        t0 = time.perf_counter()
        simulate(model, cfg)
    cached = time.perf_counter() - t0
    return {"model": name, "config": cfg_name, "layers": len(model.layers),
            "wall_s_median": statistics.median(walls), "wall_s_runs": walls, "wall_s_tilings_remembered": cached,
            "time_ms": res.time_ms, "energy_uj": res.energy_uj, "utilization": res.utilization,
            "total_cycles": res.total_cycles, "total_macs": res.total_macs}


def bench_mapping(name: str, size, base: str, overrides: dict) -> dict:
    """Wall and CPU time of one timing-mode simulation from scratch (no tilings remembered) of a
    network on ``base`` with ``overrides``: minutes, so run once."""
    cfg = get_config(base, **overrides).replace(name="cramped")
    model = build_model(name, size=size)
    forget_searches()
    t0, c0 = time.perf_counter(), time.process_time()
    with tiling_cache.disabled():
        res = simulate(model, cfg)
    return {"model": name, "size": f"{model.input[0]}x{model.input[1]}", "config": base, "overrides": overrides,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "instructions": sum(r.instructions for r in res.layers), "total_cycles": res.total_cycles}


def bench_program_memory(name: str, cfg_name: str) -> dict:
    """Memory of one whole-network program (``mapper.program.build_program``, random weights): the
    bytes its build allocated at the peak and those still held with the program, from ``tracemalloc``
    (Python allocations; it slows the build, so no time is recorded), and per instruction.  The
    tilings remembered on disk are used: the build, not the search, is measured."""
    import tracemalloc
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    qmodel = random_qmodel(build_model(name))
    forget_searches()
    tracemalloc.start()
    try:
        program = build_program(qmodel, get_config(cfg_name))
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = len(program.stream)
    return {"model": name, "config": cfg_name, "instructions": n, "held_mb": held / 1e6, "peak_mb": peak / 1e6,
            "held_bytes_per_instruction": held / n}


def bench_check(name: str, size, cfg_name: str) -> dict:
    """Wall time of the whole-network functional check (``CHECK=1``): the calibrated network's
    program run from the image to the output, every tensor compared with the golden model."""
    from .inference import check_network
    model = build_model(name, size=size)
    forget_searches()
    t0, c0 = time.perf_counter(), time.process_time()
    with tiling_cache.disabled():
        summary = check_network(model, get_config(cfg_name), seed=0)
    return {"model": name, "size": f"{model.input[0]}x{model.input[1]}", "config": cfg_name, "seed": 0,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "summary": summary}


def bench_import(name: str, repeat: int) -> dict:
    """Median wall time of importing the zoo network's exported ONNX file (``make sim MODEL=x.onnx``'s
    first step, before any mapping), at its default size."""
    from mapper.onnx_export import export_onnx
    from mapper.onnx_import import import_onnx
    from mapper.weights import init_weights
    model = build_model(name)
    proto = export_onnx(model, init_weights(model, 0, fold=False))
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        import_onnx(proto, name)
        walls.append(time.perf_counter() - t0)
    return {"model": name, "nodes": len(proto.graph.node), "wall_s_median": statistics.median(walls)}


def bench_golden_depthwise(repeat: int) -> dict:
    """Median wall time of the golden model's depthwise 3x3 convolution of 128x128x256 int8
    (SegFormer's largest Mix-FFN depthwise shape at 512x512), which the functional check runs often."""
    import numpy as np
    from . import golden
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (128, 128, 256), dtype=np.int8)
    w = rng.integers(-128, 128, (256, 3, 3, 1), dtype=np.int8)
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        golden.conv2d(x, w, padding=1, groups=256)
        walls.append(time.perf_counter() - t0)
    return {"shape": "128x128x256 k3x3 groups 256", "wall_s_median": statistics.median(walls)}


def _print_figures(figs: dict) -> None:
    for name, modes in figs.items():
        saved = modes["fusion_saving"]
        print(f"{name:<14} fusion saves {saved['time_ms']:.3f} ms, {saved['dram_bytes'] / 1e6:.1f} MB of DRAM traffic, "
              f"{saved['energy_uj']:.1f} uJ ({saved['energy_dram_uj']:.1f} uJ of DRAM accesses)")
        for mode, f in ((m, f) for m, f in modes.items() if m != "fusion_saving"):
            print(f"{name:<14} {mode:<16} {f['time_ms']:.3f} ms (paper {f['paper_time_ms']} ms), "
                  f"DRAM {f['dram_bytes'] / 1e6:.1f} MB, {f['energy_uj']:.1f} uJ; convolutions "
                  f"{100 * f['conv_time_share']:.1f} % of time (paper {100 * f['paper_conv_time_share']:.0f} %); "
                  f"{f['largest_layer']} {100 * f['largest_time_share']:.1f} % of time, "
                  f"{100 * f['largest_energy_share']:.1f} % of energy")


def _arguments(argv: list[str] | None):
    p = OneLineParser(prog="python -m sim.bench",
                      description="Simulator benchmark (make bench): wall times of the simulator's timing, "
                                  "functional check and ONNX import on fixed cases, and the figures checked "
                                  "against the paper.")
    p.add_argument("--out", default=str(Path("build") / "bench"), help="folder of sim.json (default build/bench)")
    p.add_argument("--repeat", type=number_type(int, "runs of each case"), default=3,
                   help="timed runs of each case, whose median is reported (default 3)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, not {args.repeat}")
    try:            # found now, not after the benchmarks
        try_folder(args.out, f"--out {args.out}")
    except UsageError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    timing = []
    for name, cfg_name in TIMING_CASES:
        r = bench_timing(name, cfg_name, args.repeat)
        timing.append(r)
        print(f"{name:<14} on {cfg_name}: {r['wall_s_median']:6.2f} s wall (median of {args.repeat}; "
              f"{r['wall_s_tilings_remembered']:.2f} s with the tilings remembered)  "
              f"simulated {r['time_ms']:.4f} ms, {r['energy_uj']:.1f} uJ, utilisation {100 * r['utilization']:.1f} %",
              flush=True)
    mapping = [bench_mapping(*case) for case in MAPPING_CASES]
    for m in mapping:
        print(f"mapping {m['model']} {m['size']} on {m['config']} with {m['overrides']}: {m['wall_s']:.1f} s wall, "
              f"{m['cpu_s']:.1f} s CPU ({m['instructions']:,} instructions, {m['total_cycles']:,} cycles)", flush=True)
    memory = [bench_program_memory(*case) for case in MEMORY_CASES]
    for m in memory:
        print(f"program of {m['model']} on {m['config']}: {m['instructions']:,} instructions, {m['held_mb']:.0f} MB held "
              f"({m['held_bytes_per_instruction']:.0f} B an instruction), {m['peak_mb']:.0f} MB at the peak of its build",
              flush=True)
    check = [bench_check(*case) for case in CHECK_CASES]
    for c in check:
        print(f"whole-network check {c['model']} {c['size']} on {c['config']}: {c['wall_s']:.2f} s wall "
              f"({c['summary']['tensors']} tensors, {c['summary']['instructions']:,} instructions)", flush=True)
    imports = [bench_import(name, args.repeat) for name in IMPORT_CASES]
    for r in imports:
        print(f"ONNX import of {r['model']} ({r['nodes']} nodes): {r['wall_s_median']:.2f} s wall (median)", flush=True)
    depthwise = bench_golden_depthwise(args.repeat)
    print(f"golden depthwise {depthwise['shape']}: {depthwise['wall_s_median']:.3f} s wall (median)", flush=True)
    figs = bench_figures()
    _print_figures(figs)
    doc = {"python": platform.python_version(), "machine": platform.machine(), "repeat": args.repeat,
           "timing": timing, "mapping": mapping, "program_memory": memory, "functional_check": check, "onnx_import": imports, "golden_depthwise": depthwise, "figures": figs}
    out = Path(args.out)
    atomic_write_json(out / "sim.json", doc, default=str)
    print(f"wrote {out / 'sim.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
