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
modules            Verilog modules (``module`` statements), one per unique block
area_mm2           ``sim.area.area_mm2`` (the model calibrated to Table II)
synth              ``make synth`` of the configuration, or null when not run (below)
error              why the export failed (only present then)
=================  ===========================================================

``synth`` (with ``--synth``, for the configurations listed there, default small and E) is
the hierarchical Yosys synthesis of :mod:`hw.rtl.synth` (its report is written to
``build/synth/<config>/`` as by ``make synth``): the design-wide cells, gates, flip-flops
and memory bits, the deepest register-to-register path and the vector MAC's path in logic
levels, and its wall and CPU seconds.

``--pe-array`` (default A to M) synthesises the PE array of each preset (``make synth
ARGS="--part pe-array"``: ``num_pe`` PE tiles, only the tile exported) and writes
``build/bench/synth_pe_array.json``, :func:`pe_array_comparison` of them with ``sim.area`` and
the paper's Table II.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from ..cli import OneLineParser, UsageError, atomic_write_json, number_type, output_json_file, run_main
from ..config import PRESETS, get_config

__all__ = ["bench_config", "synth_record", "pe_array_comparison", "main"]

DEFAULT_CONFIGS = ("tiny", "small", "e_small", *"ABCDEFGHIJKLM")
DEFAULT_SYNTH = ("small", "E")
PRESETS_AM = tuple("ABCDEFGHIJKLM")


def synth_record(config, export, out_root: Path, parallel: int, part: str = "accelerator") -> dict:
    """Synthesise ``part`` of an exported configuration (:func:`hw.rtl.synth.run`, into
    ``out_root/<config>[_<part>]``) and summarise the report."""
    from .synth import run

    folder = config.name if part == "accelerator" else f"{config.name}_{part}"
    doc = run(config, Path(out_root) / folder, parallel=parallel, export=export, part=part)
    totals, crit = doc["totals"], doc["critical"]
    return {"cells": totals["cells"], "gates": totals["gates"], "flip_flops": totals["flip_flops"],
            "memory_bits": totals["memory_bits"], "memories": totals["memories"],
            "deepest_levels": crit["deepest"]["levels"] if crit["deepest"] else None,
            "deepest_module": crit["deepest"]["module"] if crit["deepest"] else None,
            "mac_levels": crit["mac"]["levels"] if crit["mac"] else None,
            "deeper_than_mac": len(crit["deeper_than_mac"]), "seconds": doc["seconds"]}


def bench_config(name: str, out_root: Path, with_synth: bool, synth_root: Path = Path("build/synth"),
                 parallel: int = 2) -> dict:
    """Export ``name`` into ``out_root/<name>`` and measure it; synthesise it (``with_synth``)."""
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
                  synth=None)
    if with_synth:
        record["synth"] = _synth_or_error(config, result, synth_root, parallel, "accelerator")
    return record


def _synth_or_error(config, export, synth_root: Path, parallel: int, part: str) -> dict:
    try:
        return synth_record(config, export, synth_root, parallel, part)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}


def bench_pe_array(name: str, synth_root: Path = Path("build/synth"), parallel: int = 2) -> dict:
    """Synthesise the PE array of ``name`` (its PE tile alone is exported) and summarise it."""
    from sim.area import area_mm2

    config = get_config(name)
    return {"config": config.name, "area_mm2": round(area_mm2(config), 4),
            "pe_array": _synth_or_error(config, None, synth_root, parallel, "pe-array")}


def pe_array_comparison(records: list[dict]) -> dict:
    """The synthesised PE arrays against ``sim.area`` and the paper's Table II.

    Per preset: the PE array's gates, flip-flops and memory bits, the memory bits the
    configuration's buffers hold (weight, input, accumulator and parameter bytes of every
    PE), ``sim.area``'s area and Table II's.  Then least-squares fits of Table II's area on
    the synthesised counts (``a * gates + b * memory_bits``, and each alone), minimising the
    relative error as ``sim.area``'s calibration does, with their RMS relative errors beside
    ``sim.area``'s own.
    """
    import numpy as np

    from sim.area import COEFFS, TABLE_II_AREA_MM2

    from ..numerics import PARAM_ENTRY_BYTES

    rows = []
    for rec in records:
        pe = rec.get("pe_array")
        if not pe or "error" in pe or rec["config"] not in TABLE_II_AREA_MM2:
            continue
        cfg = get_config(rec["config"])
        buffer_bytes = (cfg.weight_buf_bytes + cfg.input_buf_bytes + cfg.accum_bytes
                        + cfg.param_depth * PARAM_ENTRY_BYTES)
        rows.append({"config": cfg.name, "gates": pe["gates"], "flip_flops": pe["flip_flops"],
                     "memory_bits": pe["memory_bits"], "buffer_bits": 8 * buffer_bytes * cfg.num_pe,
                     "sim_area_mm2": rec["area_mm2"], "table2_mm2": TABLE_II_AREA_MM2[cfg.name]})
    if len(rows) < 3:
        return {"presets": rows, "fits": None}
    paper = np.array([r["table2_mm2"] for r in rows])
    columns = {"gates": [r["gates"] for r in rows], "memory_bits": [r["memory_bits"] for r in rows]}
    fits = {}
    for name, used in (("gates+memory_bits", ("gates", "memory_bits")), ("gates", ("gates",)),
                       ("memory_bits", ("memory_bits",))):
        x = np.array([columns[c] for c in used], dtype=float).T
        coef, *_ = np.linalg.lstsq(x / paper[:, None], np.ones_like(paper), rcond=None)
        model = x @ coef
        fits[name] = {"mm2_per": dict(zip(used, map(float, coef))),
                      "rms_rel_err": float(np.sqrt(np.mean((model / paper - 1) ** 2))),
                      "area_mm2": dict(zip((r["config"] for r in rows), map(float, model.round(3))))}
    sim_err = np.array([r["sim_area_mm2"] for r in rows]) / paper - 1
    fits["sim.area"] = {"rms_rel_err": float(np.sqrt(np.mean(sim_err ** 2))),
                        "calibrated_rms_rel_err": COEFFS["rms_rel_err"]}
    return {"presets": rows, "fits": fits}


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m hw.rtl.bench",
                           description="Export every configuration, time it and measure the Verilog.")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"comma-separated presets (default all: {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--synth", default=",".join(DEFAULT_SYNTH),
                        help="presets to synthesise with make synth's flow ('' for none)")
    parser.add_argument("--pe-array", default=",".join(PRESETS_AM),
                        help="presets whose PE array to synthesise, compared with sim.area and Table II "
                             "(build/bench/synth_pe_array.json; '' for none)")
    parser.add_argument("--jobs", type=number_type(int, "Yosys runs at a time"), default=2, help="Yosys runs at a time (synthesis)")
    parser.add_argument("--verilog-dir", type=Path, default=Path("build/verilog"),
                        help="folder the exported Verilog is written to and synthesised from (default build/verilog)")
    parser.add_argument("--output", default="build/bench/verilog.json",
                        help="JSON file of the timings and sizes (default build/bench/verilog.json)")
    args = parser.parse_args(argv)
    try:            # a folder or another name found now, not when the first result is written
        args.output = output_json_file(args.output)
    except UsageError as e:
        parser.error(str(e))
    def presets(text: str) -> list[str]:        # names as get_config reads them (case-insensitive)
        try:
            return [get_config(n).name for n in text.split(",") if n]
        except KeyError as e:
            parser.error(f"--configs/--synth/--pe-array: {e.args[0]}")

    names, with_synth, with_pe_array = presets(args.configs), set(presets(args.synth)), set(presets(args.pe_array))
    records = []
    for n in names:
        rec = bench_config(n, args.verilog_dir, n in with_synth, parallel=args.jobs)
        records.append(rec)
        atomic_write_json(args.output, records)     # partial results survive an interrupt
        print(json.dumps(rec), flush=True)
    pe_records = []
    for n in [n for n in PRESETS if n in with_pe_array]:
        pe_records.append(bench_pe_array(n, parallel=args.jobs))
        comparison = pe_array_comparison(pe_records)
        atomic_write_json(args.output.with_name("synth_pe_array.json"), comparison)
        print(json.dumps(pe_records[-1]), flush=True)
    if pe_records:
        print(json.dumps(comparison["fits"]), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
