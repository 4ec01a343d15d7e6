"""Cosimulation benchmark: Verilator build time and simulation speed of the Accelerator.

``python tests/cosim/bench.py [--configs tiny,small,e_small] [--out build/bench]``

For each configuration (every test configuration and E by default): export the Accelerator
(``export_s``, ``verilog_bytes``), build it with the testbench wrapper through
:func:`cosim.runner.build_and_run` with the options the tests use (cached: ``build_s`` and
``build_cpu_s`` are the wall and CPU time recorded in the build directory's
``cosim_build.json`` when it was compiled, with the load average then; ``cached`` says whether
this call reused it), and run the benchmark layers (:data:`BENCH_CASES`), each checked bit-
and cycle-exactly like in the tests, and the whole-network programs (:data:`BENCH_PROGRAMS`,
``programs``: each one's cycles, wall time and cycles/s).  Speed is simulated cycles over the wall time between
``start`` and the DRAM dump, summed over the layers (Python's per-layer model and file I/O
excluded; ``run_s`` and ``run_cpu_s`` are the whole simulator process including them), and
over the CPU time of the simulator process in the same spans (``cycles_per_cpu_s``: what
the model costs, whatever else runs on the machine).  E is
built with the DRAM of ``make cosim-e`` (:data:`cosim.test_cosim_e.E_DRAM_BYTES`), so the two
share one build.  ``--options flat`` measures the tests' build without its hierarchical blocks
(every PE tile's code specialised apart), ``--options baseline`` cocotb's default build
(``--public-flat-rw``, no optimisation options) for comparison, ``--options threads`` the tests'
build with two Verilator threads (``cycles_per_cpu_s`` then counts both), ``--options native`` the
tests' build with the C++ compiled for this processor (``-march=native``).  Each stage (export,
mapping, build and run) is announced on stderr as it starts; each configuration's figures go to
stdout when it is done.  Writes ``<out>/cosim.json`` (or ``cosim_<options>.json``) atomically.

Schema of ``cosim.json``::

    {"verilator": "5.48.0", "python": ..., "machine": ..., "cpu": ..., "cpus": 2, "options": {"name"},
     "configs": [{"config", "top", "verilog_bytes", "export_s", "export_reused", "build_s", "build_cpu_s",
                  "build_load_average", "options" (the configuration's BuildOptions), "cached", "build_dir", "run_s", "run_cpu_s",
                  "load_average", "cycles", "sim_wall_s", "sim_cpu_s", "cycles_per_s",
                  "cycles_per_cpu_s",
                  "cases": [{"case", "layer", "cycles", "wall_s", "cpu_s", "span", "cycles_per_s"}],
                  "programs": [{"program", "instructions", "tensors", "cycles", "expected_cycles", "passed",
                                "wall_s", "cpu_s", "span", "cycles_per_s", "cycles_per_cpu_s"}],
                  "whole_network": {"program", "cycles", "passed", "cpu_s", "cycles_per_s",
                                    "cycles_per_cpu_s"}}]}

    ``cpu``: the processor (``runner.host_cpu``: its model and a hash of its flags), so that runs
    of different machines are told apart (the same processor shared with other work still ran the
    same model at half the speed on another day: docs/cosim.md, "Re-measured 2026-12-04").
    ``span``: [start, end] of the timed span in CLOCK_MONOTONIC seconds (what
    ``tests/cosim/profile_model.py`` cuts a profile to).  ``whole_network``: the longest program's
    figures (the configuration's speed on a whole network, VEC passes included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ for `cosim`

import hw  # noqa: E402,F401  first: its interrupt handling (hw/tool_start.py) covers numpy's import after it
from cosim.accel_cases import FIXED_BY_NAME, TB_TOP, accelerator_verilog, imem_words_for, layer_spec, tb_build  # noqa: E402
from cosim.runner import (DEFAULT_BUILD, NATIVE_ARCH, REPO_ROOT, build_and_run, host_cpu,  # noqa: E402
                          verilator_version)
from cosim.program_cases import WHOLE_NETWORKS, built_programs  # noqa: E402
from cosim.test_cosim_e import E_DRAM_BYTES  # noqa: E402

#: Long enough that the per-run load/start overhead does not matter.
BENCH_CASES = ("multi_chunk", "multi_tile", "conv3x3_relu")
#: Whole-network programs from the image to the output (``cosim.program_cases``), as the tests run
#: them: the MAC network everywhere; on tiny, where the run takes seconds, SegFormer-B0 whole and
#: fused (softmax epilogues, LAYERNORM->LAYERNORM, resizes and the class map) and its encoder
#: unfused (its layernorms, softmaxes and residual adds as VEC passes); on small and e_small the
#: zoo networks ``make regress`` runs whole (``WHOLE_NETWORKS``: minutes each).
BENCH_PROGRAMS = {"tiny": ({"model": "mac_cnn", "size": 16}, {"model": "segformer_b0", "size": 32},
                           {"model": "segformer_b0", "size": 32, "fuse": False, "until": "DecodeResize1"}),
                  **{c: ({"model": "mac_cnn", "size": 24},) + specs for c, specs in WHOLE_NETWORKS.items()}}
DEFAULT_PROGRAMS = ({"model": "mac_cnn", "size": 24},)
DEFAULT_CONFIGS = ("tiny", "small", "e_small", "E")
#: Build options to compare: what the tests use, the same with every module flat (no hierarchical
#: blocks), cocotb's default, the tests' with Verilator's multithreaded model (two threads;
#: docs/cosim.md: not the default on a shared 2-core machine), and the tests' with the C++ tuned for
#: this processor (``-march=native``: a build cached for this processor only, ``runner.host_cpu``).
def _tests_build_with(change):
    """Build options of a configuration: the tests' (``tb_build``) with ``change`` applied to them."""
    return lambda cfg: change(tb_build(cfg))


OPTIONS = {"default": tb_build,
           "flat": _tests_build_with(lambda o: dataclasses.replace(o, hier_blocks=())),
           "baseline": lambda cfg: DEFAULT_BUILD,
           "threads": _tests_build_with(lambda o: dataclasses.replace(
               o, verilator_args=o.verilator_args + ("--threads", "2"))),
           "native": _tests_build_with(lambda o: dataclasses.replace(
               o, make_variables=o.make_variables + (f"USER_CPPFLAGS={NATIVE_ARCH}",)))}


def bench_config(config_name: str, seed: int = 1, options=tb_build,
                 sim_prefix: tuple[str, ...] = (), reuse_export: bool = False) -> dict:
    """Export, build (cached) and run :data:`BENCH_CASES` on ``config_name``: one ``configs`` entry
    of ``cosim.json``.  ``sim_prefix``: a command the simulator runs under (a profiler).
    ``reuse_export``: take the export the tests keep for this version of ``hw/``
    (``tests/shared_exports.py``; ``export_s`` is then the time that export took).  ``options``: the
    configuration's build options (a function of it, as :data:`OPTIONS` holds them)."""
    from hw.config import get_config
    from hw.rtl.export import export_accelerator

    cfg = get_config(config_name)
    options = options(cfg)
    if reuse_export:
        _say(f"{config_name}: the tests' export (made now if none is kept: minutes for e_small and E)")
        from shared_exports import exported
        export = exported(cfg)
        export_s = export.seconds
    else:
        _say(f"{config_name}: exporting the accelerator (minutes for e_small and E)")
        t0 = time.perf_counter()
        export = export_accelerator(cfg)
        export_s = time.perf_counter() - t0
    dram = {"dram_bytes": E_DRAM_BYTES} if cfg.name == "E" else {}
    _say(f"{config_name}: mapping the benchmark programs")
    programs = built_programs([{**p, "seed": seed} for p in bench_programs(cfg)], cfg)
    imem_words = imem_words_for(length for _, length in programs)
    verilog, _ = accelerator_verilog(cfg, export=export, imem_words=imem_words, **dram)
    specs = [{**layer_spec(FIXED_BY_NAME[name]), "seed": seed} for name in BENCH_CASES]
    _say(f"{config_name}: Verilator build (cached per Verilog: the first takes minutes, e_small's about "
         f"10 on two cores) and run")
    result = build_and_run(verilog, TB_TOP, "cosim.tb_accelerator",
                           params={"config": config_name, "seed": seed, "layers": specs,
                                   "programs": [p for p, _ in programs],
                                   "bench": True},
                           timeout_s=3600, options=options, sim_prefix=sim_prefix)
    stamp = json.loads((result.build_dir / "cosim_build.json").read_text())
    records = [json.loads(line) for line in
               (result.run_dir / "accel_results.jsonl").read_text().splitlines()]
    cases = [{"case": r["case"], "layer": r["layer"], "cycles": r["rtl_cycles"], "wall_s": r["wall_s"],
              "cpu_s": r.get("cpu_s"), "span": r.get("span"),
              "cycles_per_s": round(r["rtl_cycles"] / r["wall_s"]) if r["wall_s"] else None}
             for r in records if r["kind"] == "layer"]
    programs = [{"program": r["case"], "instructions": r["instructions"], "tensors": r["tensors"],
                 "cycles": r["rtl_cycles"], "expected_cycles": r["expected_cycles"], "passed": r["passed"],
                 "wall_s": r["wall_s"], "cpu_s": r.get("cpu_s"), "span": r.get("span"),
                 "cycles_per_s": round(r["rtl_cycles"] / r["wall_s"]) if r["wall_s"] and r["rtl_cycles"] else None,
                 "cycles_per_cpu_s": round(r["rtl_cycles"] / r["cpu_s"]) if r.get("cpu_s") and r["rtl_cycles"] else None}
                for r in records if r["kind"] == "program"]
    cycles = sum(c["cycles"] for c in cases)
    wall = sum(c["wall_s"] for c in cases)
    cpu = sum(c["cpu_s"] or 0 for c in cases)
    return {"config": config_name, "top": export.top, "verilog_bytes": len(export.verilog),
            "export_s": round(export_s, 2), "export_reused": reuse_export, "build_s": stamp.get("build_s"),
            "build_cpu_s": stamp.get("build_cpu_s"), "build_load_average": stamp.get("load_average"),
            "options": dataclasses.asdict(options),
            "cached": result.cached, "build_dir": str(result.build_dir.relative_to(REPO_ROOT)),
            "run_s": round(result.run_s, 2), "run_cpu_s": result.run_cpu_s,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "cycles": cycles, "sim_wall_s": round(wall, 3), "sim_cpu_s": round(cpu, 3),
            "cycles_per_s": round(cycles / wall) if wall else None,
            "cycles_per_cpu_s": round(cycles / cpu) if cpu else None, "cases": cases, "programs": programs,
            "whole_network": whole_network(programs)}


def _say(message: str) -> None:
    """Progress on stderr (the results go to stdout and the JSON)."""
    print(message, file=sys.stderr, flush=True)


def whole_network(programs: list[dict]) -> dict | None:
    """The configuration's whole-network figure: its longest program (most cycles; on e_small
    SegFormer-B0 64x64, whose VEC passes the bench layers do not run), or None without one."""
    longest = max(programs, key=lambda p: p["cycles"] or 0, default=None)
    if longest is None:
        return None
    return {k: longest[k] for k in ("program", "cycles", "passed", "cpu_s", "cycles_per_s", "cycles_per_cpu_s")}


def bench_programs(cfg) -> tuple[dict, ...]:
    """The whole-network programs benchmarked on ``cfg`` (:data:`BENCH_PROGRAMS`)."""
    return BENCH_PROGRAMS.get(cfg.name, DEFAULT_PROGRAMS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests/cosim/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help="comma-separated presets (default: %(default)s)")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "bench"),
                   help="output directory (default build/bench)")
    p.add_argument("--reuse-export", action="store_true",
                   help="take the export the tests keep for this version of hw/ (build/cache/export) "
                        "instead of exporting afresh (minutes for e_small and E)")
    p.add_argument("--options", default="default", choices=tuple(OPTIONS),
                   help="build options: the tests' (default), the same without hierarchical blocks (flat), "
                        "cocotb's default (baseline), the tests' with two Verilator threads (threads), or the "
                        "tests' compiled for this processor (native: -march=native)")
    args = p.parse_args(argv)
    from hw.cli import atomic_write_json
    from hw.config import get_config

    names = [name for name in args.configs.split(",") if name]
    for name in names:      # every name checked before the first (minutes-long) export
        try:
            get_config(name)
        except KeyError as error:
            print(f"error: --configs: {error.args[0]}", file=sys.stderr)
            return 2
    options = OPTIONS[args.options]
    configs = []
    for name in names:
        r = bench_config(name, options=options, reuse_export=args.reuse_export)
        configs.append(r)
        print(f"{name:<8} {r['top']}: {r['verilog_bytes'] / 1e6:.2f} MB Verilog, export {r['export_s']:.1f} s, "
              f"Verilator build {r['build_s']:.0f} s{' (cached)' if r['cached'] else ''}, "
              f"{r['cycles']} cycles in {r['sim_wall_s']:.2f} s = {r['cycles_per_s']} cycles/s "
              f"({r['cycles_per_cpu_s']} per CPU second)",
              flush=True)
        if r["whole_network"]:
            net = r["whole_network"]
            print(f"{'':<8} whole network {net['program']}: {net['cycles']} cycles, {net['cycles_per_s']} cycles/s "
                  f"({net['cycles_per_cpu_s']} per CPU second)", flush=True)
        for prog in r["programs"]:
            print(f"{'':<8} program {prog['program']}: {prog['instructions']} instructions, {prog['cycles']} cycles "
                  f"(schedule {prog['expected_cycles']}{'' if prog['passed'] else ', FAILED'}) in {prog['wall_s']:.2f} s "
                  f"= {prog['cycles_per_s']} cycles/s ({prog['cycles_per_cpu_s']} per CPU second)", flush=True)
    doc = {"verilator": verilator_version(), "python": platform.python_version(),
           "machine": platform.machine(), "cpu": host_cpu(), "cpus": os.cpu_count(),
           "options": {"name": args.options}, "configs": configs}
    out = Path(args.out) / ("cosim.json" if args.options == "default" else f"cosim_{args.options}.json")
    atomic_write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(main)
