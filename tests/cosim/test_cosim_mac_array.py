"""Cosimulation of the exported MacArray Verilog (Verilator + cocotb) against numpy.

The fast case (config ``tiny``, one seed) runs in ``make test``; its Verilator build
is cached under ``build/cosim/``.  More seeds and longer streams are marked slow and
run by ``make regress``.  ``COSIM_SEED=<n>`` replaces the default seed;
``WAVES=1`` writes ``dump.fst`` (path printed).
"""

from __future__ import annotations

import os

import pytest

from cosim.runner import build_and_run
from hw.config import get_config
from hw.rtl.export import export_mac_array

TESTBENCH = "cosim.tb_mac_array"


def run_mac_array(config_name: str, seed: int, sums: int, timeout_s: float = 300):
    export = export_mac_array(get_config(config_name))
    print(f"cosim {export.top}: seed {seed}, {sums} sums per case "
          f"(rerun with COSIM_SEED={seed})")
    result = build_and_run(export.verilog, export.top, TESTBENCH,
                           params={"config": config_name, "seed": seed, "sums": sums},
                           timeout_s=timeout_s)
    print(f"cosim {export.top}: build {'cached' if result.cached else 'compiled'} in "
          f"{result.build_s:.1f} s ({result.build_dir}), run {result.run_s:.1f} s, "
          f"Verilator {result.verilator}, tests "
          f"{', '.join(f'{t.name} ({t.sim_time_ns:g} ns)' for t in result.tests)}")
    if result.waves:
        print(f"waves: {result.waves}")
    assert {t.name for t in result.tests} == {"random_sums", "extremes", "back_to_back"}
    return result


def default_seed(fallback: int) -> int:
    return int(os.environ.get("COSIM_SEED", fallback))


def test_mac_array_tiny():
    run_mac_array("tiny", seed=default_seed(1), sums=60, timeout_s=120)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_mac_array_tiny_long(seed):
    run_mac_array("tiny", seed=default_seed(seed), sums=2000)


@pytest.mark.slow
def test_mac_array_small():
    run_mac_array("small", seed=default_seed(5), sums=500)
