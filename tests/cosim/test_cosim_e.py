"""Configuration E (16 PEs, K0 = C0 = 32) in Verilator: representative layers, bit- and
cycle-exact.  Run by ``make cosim-e`` (``COSIM_E=1``); skipped otherwise, because exporting
and compiling E takes far longer than the rest of the cosimulation.

Layers: a tile of SegFormer's Conv2DFuse (1x1, 3072 -> 768 channels on a 4x4 pixel tile,
several weight passes over 14 of the 16 PEs), a depthwise 3x3 (64 channels, 16x16), and an
attention product (QK^T of 64 tokens, head dimension 32).

Before the Verilator build the test measures the export (time, Verilog size) and stops with
an explicit message when the export fails or exceeds :data:`MAX_EXPORT_S`.

Cost measured on the 2-core development machine (docs/cosim.md, "Configuration E"):
export 109-112 s (14.0 MB Verilog at E's 256 B/cycle bus, c855d93's RTL, recorded in be8da94;
46-84 s and 6.7 MB at 128 B/cycle, 53c9817 on 2026-11-26, many RTL changes before), and the
first full build (Verilator and g++) 510-780 s (cached afterwards).  The run is about 21,000
cycles at about 540 cycles/s.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from cosim.accel_cases import BAD_STREAMS, TB_TOP, accelerator_verilog, layer_spec, tb_build
from cosim.runner import REPO_ROOT, build_and_run
from hw.cli import atomic_write_json
from mapper.ir import Conv2d, MatMul

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("COSIM_E") != "1",
                                 reason="configuration E cosimulation: run `make cosim-e` (COSIM_E=1)")]

E_LAYERS = (
    Conv2d("fuse_tile_1x1_3072_768", "decoder", 3072, 768, 4, 4),
    Conv2d("depthwise_3x3_64", "encoder", 64, 64, 16, 16, kernel=3, padding=1, groups=64),
    MatMul("attn_qk_64x32x64", "encoder", 1, 64, 32, 64),
    MatMul("attn_qk_2heads", "encoder", 2, 64, 32, 64),
)
#: The Conv2DFuse tile's image (2.4 MB of weights) needs a larger DRAM than the default.
E_DRAM_BYTES = 1 << 22
#: Limits of a run on the 2-core development machine.
MAX_EXPORT_S = float(os.environ.get("COSIM_E_MAX_EXPORT_S", 1800))


def test_configuration_e_layers():
    from hw.config import get_config
    from hw.rtl.export import export_accelerator

    cfg = get_config("E")
    seed = int(os.environ.get("COSIM_SEED", 7))
    t0 = time.perf_counter()
    try:
        export = export_accelerator(cfg)
    except Exception as error:       # report what stopped the export, with its cost so far
        pytest.fail(f"configuration E: the Accelerator export failed after "
                    f"{time.perf_counter() - t0:.0f} s: {type(error).__name__}: {error}")
    export_s = time.perf_counter() - t0
    print(f"configuration E: export {export_s:.0f} s, {len(export.verilog) / 1e6:.1f} MB Verilog "
          f"({', '.join(export.modules)})")
    if export_s > MAX_EXPORT_S:
        pytest.fail(f"configuration E: export took {export_s:.0f} s > {MAX_EXPORT_S:.0f} s")
    verilog, _ = accelerator_verilog(cfg, export=export, dram_bytes=E_DRAM_BYTES)
    print("configuration E: a first (uncached) Verilator build takes 2 to 7 minutes on 2 cores "
          "(docs/cosim.md); it is cached under build/cosim/ afterwards", flush=True)
    specs = [{**layer_spec(layer), "seed": seed * 1000 + i} for i, layer in enumerate(E_LAYERS)]
    result = build_and_run(verilog, TB_TOP, "cosim.tb_accelerator",
                           params={"config": "E", "seed": seed, "layers": specs,
                                   "bad": ["unknown_opcode"]},
                           timeout_s=3600, options=tb_build(cfg))
    print(f"configuration E: Verilator build {'cached' if result.cached else 'compiled'} in "
          f"{result.build_s:.0f} s ({result.build_dir}), run {result.run_s:.0f} s; tests "
          f"{', '.join(t.name for t in result.tests)}")
    assert len(result.tests) == len(specs) + 1
    assert "unknown_opcode" in BAD_STREAMS
    # make bench's record of E: the build (as stamped when it was compiled) and the run speed
    stamp = json.loads((result.build_dir / "cosim_build.json").read_text())
    records = [json.loads(line) for line in (result.run_dir / "accel_results.jsonl").read_text().splitlines()]
    cases = [{"case": r["case"], "cycles": r["rtl_cycles"], "wall_s": r["wall_s"], "cpu_s": r.get("cpu_s")}
             for r in records if r["kind"] == "layer"]
    cycles, wall = sum(c["cycles"] for c in cases), sum(c["wall_s"] for c in cases)
    cpu = sum(c["cpu_s"] or 0 for c in cases)
    atomic_write_json(REPO_ROOT / "build" / "bench" / "cosim_e.json", {
        "config": "E", "verilog_bytes": len(export.verilog), "export_s": round(export_s, 1),
        "build_s": stamp.get("build_s"), "build_cpu_s": stamp.get("build_cpu_s"),
        "build_load_average": stamp.get("load_average"), "cached": result.cached, "cycles": cycles,
        "sim_wall_s": round(wall, 2), "sim_cpu_s": round(cpu, 3), "cycles_per_s": round(cycles / wall) if wall else None,
        "cycles_per_cpu_s": round(cycles / cpu) if cpu else None,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cases": cases})
