"""Where a Verilated model's time goes: ``perf`` samples of the simulator, summed per Verilog module.

Runs the benchmark layers of ``make cosim-bench`` (:func:`cosim.bench.bench_config`, the same
cached build) with the simulator under ``perf record``, then attributes every sample::

    .venv/bin/python tests/cosim/profile_model.py --config E       # -> build/bench/cosim_profile_E.json

Verilator emits one C++ class per Verilog module it keeps (``Vtop_vector_mac_c32_p22``: its
functions ``Vtop_vector_mac_c32_p22___nba_sequent__...``); modules it inlines land in the top
class ``Vtop___024root`` with the wrapper.  Samples are grouped by that class; the model's helper
functions (``VL_SHIFTR_WWI``, ``VlUnpacked``...) form ``verilator runtime``, and what runs
outside the executable (the cocotb testbench's Python, libc, the kernel) ``outside the model``.
Shares are of the model's samples (the executable), so they do not depend on how long the
testbench's Python took.  ``perf`` stamps its samples with ``CLOCK_MONOTONIC`` and the testbench
records each run's timed span (start sampled .. DRAM dumped) on that clock, so ``spans`` gives the
same grouping for each whole-network program's span alone, and the bench layers' spans together:
what the speed of ``make cosim-bench`` is measured over, without the testbench's set-up (programs,
golden models, image files) before and after it.

Schema of ``cosim_profile_<config>.json``::

    {"config", "options", "frequency_hz", "samples", "model_samples",
     "bench": {...the cosim.json entry of the run...},
     "groups": [{"group", "samples", "share_of_model"}],   # most samples first
     "outside": [{"dso", "samples"}],                      # outside the model, per shared object
     "hot_symbols": [{"symbol", "group", "samples"}],      # the model's hottest functions
     "spans": [{"span", "cycles", "cpu_s", "samples", "model_samples", "groups", "outside",
                "hot_symbols"}]}                         # the same within each timed span

Exit status 2, with a one-line message, when ``perf`` is missing or cannot record.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ for `cosim`

import hw  # noqa: E402,F401  first: its interrupt handling (hw/tool_start.py) covers numpy's import after it
from cosim.accel_cases import TB_TOP  # noqa: E402
from cosim.bench import DEFAULT_CONFIGS, OPTIONS, bench_config  # noqa: E402
from cosim.runner import REPO_ROOT  # noqa: E402

#: The Verilator prefix cocotb's runner builds with (``--prefix Vtop``).
MODEL_PREFIX = "Vtop"
#: Group of the top class: the wrapper and every module Verilator inlined into it.
TOP_GROUP = "top (wrapper and inlined modules)"
RUNTIME_GROUP = "verilator runtime"
OUTSIDE_GROUP = "outside the model"
#: How many of the model's hottest functions the JSON lists.
HOT_SYMBOLS = 40
_CLASS_RE = re.compile(rf"^{MODEL_PREFIX}_(?P<module>[A-Za-z0-9_]+?)___")


def symbol_group(dso: str, symbol: str, executable: str) -> str:
    """The group a sample of ``symbol`` in ``dso`` counts for (see the module docstring)."""
    if dso != executable:
        return OUTSIDE_GROUP
    if symbol.startswith(f"{MODEL_PREFIX}___024root"):
        return TOP_GROUP
    match = _CLASS_RE.match(symbol)
    return match["module"] if match else RUNTIME_GROUP


def report_rows(report: str) -> Iterator[tuple[int, str, str]]:
    """(samples, dso, symbol) of each line of ``perf report -F sample,dso,sym -t ';'`` output."""
    for line in report.splitlines():
        fields = [f.strip() for f in line.split(";")]
        if line.startswith("#") or len(fields) != 3 or not fields[0].isdigit():
            continue
        yield int(fields[0]), fields[1], fields[2].split("] ", 1)[-1]      # "[.] name" -> name


def group_samples(report: str, executable: str) -> collections.Counter:
    """Samples per group from ``perf report -F sample,dso,sym -t ';'`` output."""
    groups: collections.Counter = collections.Counter()
    for samples, dso, symbol in report_rows(report):
        groups[symbol_group(dso, symbol, executable)] += samples
    return groups


def outside_samples(report: str, executable: str) -> collections.Counter:
    """Samples outside the model per shared object (``libpython3.11.so.1.0``: the testbench's Python,
    ``libcocotbvpi_verilator.so``: cocotb's callbacks, ``[kernel.kallsyms]``...)."""
    return collections.Counter({dso: n for dso, n in _by_dso(report).items() if dso != executable})


def _by_dso(report: str) -> collections.Counter:
    dsos: collections.Counter = collections.Counter()
    for samples, dso, _ in report_rows(report):
        dsos[dso] += samples
    return dsos


def hot_symbols(report: str, executable: str, count: int) -> list[dict]:
    """The ``count`` functions of the model with the most samples: symbol, group, samples."""
    rows = sorted(((n, symbol) for n, dso, symbol in report_rows(report) if dso == executable), reverse=True)
    return [{"symbol": symbol, "group": symbol_group(executable, symbol, executable), "samples": n}
            for n, symbol in rows[:count]]


def perf_report(data: Path, spans: list | None = None) -> str:
    """The per-symbol sample counts of a ``perf.data`` file, one ``samples;dso;symbol`` a line;
    with ``spans`` ([start, end] pairs in the recording's clock, seconds), only the samples in them."""
    window = ["--time", " ".join(f"{start:.9f},{end:.9f}" for start, end in spans)] if spans else []
    return subprocess.run(["perf", "report", "-i", str(data), "--stdio", *window,
                           "--sort", "dso,sym", "-F", "sample,dso,sym", "-t", ";"],
                          capture_output=True, text=True, check=True).stdout


def grouped(report: str) -> dict:
    """Samples of ``report`` per group (shares of the model's), per shared object outside it, and
    the model's hottest functions."""
    groups = group_samples(report, executable=TB_TOP)
    model = sum(n for g, n in groups.items() if g != OUTSIDE_GROUP)
    rows = [{"group": g, "samples": n, "share_of_model": round(n / model, 4) if g != OUTSIDE_GROUP and model else None}
            for g, n in groups.most_common()]
    outside = [{"dso": d, "samples": n} for d, n in outside_samples(report, TB_TOP).most_common()]
    return {"samples": sum(groups.values()), "model_samples": model, "groups": rows, "outside": outside,
            "hot_symbols": hot_symbols(report, TB_TOP, HOT_SYMBOLS)}


def timed_spans(bench: dict) -> list[dict]:
    """The spans a profile is cut to: each whole-network program's, and the bench layers' together."""
    spans = [{"span": p["program"], "cycles": p["cycles"], "cpu_s": p["cpu_s"], "ranges": [p["span"]]}
             for p in bench["programs"] if p.get("span")]
    layers = [c for c in bench["cases"] if c.get("span")]
    if layers:
        spans.append({"span": "bench layers", "cycles": sum(c["cycles"] for c in layers),
                      "cpu_s": round(sum(c["cpu_s"] or 0 for c in layers), 4), "ranges": [c["span"] for c in layers]})
    return spans


def profile_config(config: str, frequency: int, reuse_export: bool = False, options: str = "default") -> dict:
    """Run the bench layers and programs of ``config`` under ``perf record`` and group the samples,
    over the whole process and within each timed span."""
    with tempfile.TemporaryDirectory(prefix="cosim-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        bench = bench_config(config, sim_prefix=("perf", "record", "-q", "-k", "CLOCK_MONOTONIC",
                                                 "-F", str(frequency), "-o", str(data), "--"),
                             options=OPTIONS[options], reuse_export=reuse_export)
        if not data.is_file():
            raise RuntimeError(f"perf wrote no {data}: see the run's sim.log in {bench['build_dir']}")
        whole = grouped(perf_report(data))
        spans = [{**{k: v for k, v in span.items() if k != "ranges"}, **grouped(perf_report(data, span["ranges"]))}
                 for span in timed_spans(bench)]
    return {"config": config, "options": options, "frequency_hz": frequency, **whole, "bench": bench, "spans": spans}


def print_groups(doc: dict) -> None:
    for row in doc["groups"]:
        share = f"{100 * row['share_of_model']:5.1f} %" if row["share_of_model"] is not None else "   --  "
        print(f"{share}  {row['samples']:>7}  {row['group']}")
    for row in doc["outside"][:6]:
        print(f"   --    {row['samples']:>7}  outside: {row['dso']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests/cosim/profile_model.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="E", help="preset to profile (default: %(default)s; "
                   f"the bench covers {', '.join(DEFAULT_CONFIGS)})")
    p.add_argument("--frequency", type=int, default=999, help="perf samples per second (default: %(default)s)")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "bench"),
                   help="output directory (default build/bench)")
    p.add_argument("--reuse-export", action="store_true",
                   help="take the export the tests keep for this version of hw/ (as tests/cosim/bench.py)")
    p.add_argument("--options", default="default", choices=tuple(OPTIONS),
                   help="build options, as tests/cosim/bench.py's (default: the tests')")
    args = p.parse_args(argv)
    from hw.cli import atomic_write_json
    from hw.config import get_config

    try:
        get_config(args.config)
    except KeyError as error:
        print(f"error: --config: {error.args[0]}", file=sys.stderr)
        return 2
    if args.frequency < 1:
        print(f"error: --frequency must be a positive number of samples per second, not {args.frequency}",
              file=sys.stderr)
        return 2
    if shutil.which("perf") is None:
        print("error: `perf` is not on PATH (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    try:
        doc = profile_config(args.config, args.frequency, reuse_export=args.reuse_export, options=args.options)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: profiling {args.config} failed: {error}", file=sys.stderr)
        return 2
    print(f"the whole simulator process: {doc['samples']} samples, {doc['model_samples']} in the model")
    print_groups(doc)
    for span in doc["spans"]:
        print(f"within {span['span']} ({span['cycles']} cycles, {span['cpu_s']} CPU s): {span['samples']} samples, "
              f"{span['model_samples']} in the model")
        print_groups(span)
    suffix = "" if args.options == "default" else f"_{args.options}"
    out = Path(args.out) / f"cosim_profile_{args.config}{suffix}.json"
    atomic_write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(main)
