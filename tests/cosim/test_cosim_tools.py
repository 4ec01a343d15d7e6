"""The cosimulation tools without Verilator: the profiler's grouping of samples, the build key of a
``-march=native`` build, and bad input to ``tests/cosim/bench.py`` and ``tests/cosim/profile_model.py``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cosim.profile_model import (OUTSIDE_GROUP, RUNTIME_GROUP, TOP_GROUP, group_samples, hot_symbols, outside_samples,
                                 timed_spans)
from cosim import runner
from cosim.runner import FAST_BUILD, NATIVE_ARCH, build_and_run

COSIM = Path(__file__).resolve().parent

# What `perf report -F sample,dso,sym -t ';'` prints (demangled names, padded fields).
REPORT = """\
# Samples: 30
#
 12 ;accel_tb_top ;[.] Vtop_vector_mac_c32_p22___nba_sequent__TOP__accel_tb_top__DOT__u_accel__DOT__pe1__mac9__0
  5 ;accel_tb_top ;[.] Vtop_vector_mac_c32_p22___nba_sequent__TOP__accel_tb_top__DOT__u_accel__DOT__pe0__mac1__0
  4 ;accel_tb_top ;[.] Vtop_pe_tile_k32_c32_a32___nba_sequent__TOP__0
  3 ;accel_tb_top ;[.] Vtop___024root___nba_sequent__TOP__2
  2 ;accel_tb_top ;[.] VL_SHIFTR_WWI(int, int, int, unsigned int*, unsigned int const*, unsigned int)
  4 ;libpython3.11.so.1.0 ;[.] _PyEval_EvalFrameDefault
"""


def test_samples_are_grouped_by_verilated_module():
    groups = group_samples(REPORT, executable="accel_tb_top")
    assert groups == {"vector_mac_c32_p22": 17, "pe_tile_k32_c32_a32": 4, TOP_GROUP: 3, RUNTIME_GROUP: 2,
                      OUTSIDE_GROUP: 4}


def test_samples_of_another_executable_are_outside_the_model():
    assert group_samples(REPORT, executable="other_top") == {OUTSIDE_GROUP: 30}


def test_samples_outside_the_model_are_counted_per_shared_object_and_hot_functions_listed():
    assert outside_samples(REPORT, executable="accel_tb_top") == {"libpython3.11.so.1.0": 4}
    hot = hot_symbols(REPORT, executable="accel_tb_top", count=2)
    assert [(h["samples"], h["group"]) for h in hot] == [(12, "vector_mac_c32_p22"), (5, "vector_mac_c32_p22")]
    assert hot[0]["symbol"].endswith("pe1__mac9__0")


def test_the_profile_is_cut_to_each_program_and_to_the_bench_layers_together():
    """Each whole-network program's timed span alone, the bench layers' spans as one window."""
    bench = {"programs": [{"program": "segformer_b0_64", "cycles": 900, "cpu_s": 0.5, "span": [10.0, 12.5]},
                          {"program": "old_record", "cycles": 5, "cpu_s": 0.1}],
             "cases": [{"case": "a", "cycles": 30, "cpu_s": 0.25, "span": [1.0, 1.5]},
                       {"case": "b", "cycles": 70, "cpu_s": 0.5, "span": [2.0, 3.0]}]}
    assert timed_spans(bench) == [
        {"span": "segformer_b0_64", "cycles": 900, "cpu_s": 0.5, "ranges": [[10.0, 12.5]]},
        {"span": "bench layers", "cycles": 100, "cpu_s": 0.75, "ranges": [[1.0, 1.5], [2.0, 3.0]]}]


def test_the_bench_whole_network_figure_is_the_longest_program():
    from cosim.bench import whole_network

    fields = {"passed": True, "cpu_s": 1.0, "cycles_per_s": 1}
    programs = [{"program": "mac_cnn_24", "cycles": 3_000, "cycles_per_cpu_s": 9, **fields},
                {"program": "segformer_b0_64", "cycles": 240_000, "cycles_per_cpu_s": 7, "span": [0, 1], **fields}]
    assert whole_network(programs) == {"program": "segformer_b0_64", "cycles": 240_000, "cycles_per_cpu_s": 7, **fields}
    assert whole_network([]) is None


@pytest.mark.parametrize("argv", [["bench.py", "--configs", "tiny,nope"], ["profile_model.py", "--config", "nope"],
                                  ["profile_model.py", "--frequency", "0"], ["campaign.py", "--config", "nope"],
                                  ["campaign.py", "--seeds", "9-nope"], ["campaign.py", "--seeds", "1", "--cases", "0"],
                                  ["campaign.py", "--case", "1:2:nope"], ["campaign.py", "--config", "E", "--seeds", "1"]])
def test_tools_refuse_bad_input_with_one_line(argv, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(COSIM / argv[0]), *argv[1:], "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert any(word in done.stderr for word in ("nope", " 0", "'E'"))
    assert not out.exists()


def test_a_campaigns_seeds_and_replayed_cases_are_parsed_and_name_its_folder():
    from cosim.campaign import _disagreements, _name, parse_case, parse_seeds

    assert parse_seeds("7,100-102,1,7") == [1, 7, 100, 101, 102]
    assert parse_case("104:889") == {"seed": 104, "index": 889, "mutation": None}
    assert parse_case("104:889:bit_flip")["mutation"] == "bit_flip"
    # named by what runs, not how it was spelled
    assert _name("tiny", parse_seeds("1-3,7"), 50, []) == _name("tiny", parse_seeds("7,3,2,1"), 50, []) \
        == "tiny_seeds1-3+7_cases50"
    record = {"kind": "fuzz_case", "seed": 5, "index": 12, "case": "vec_laps_12", "description": "d",
              "expected": "error DATA", "expected_index": 3, "error_code": "RANGE", "pc": 2, "rtl_cycles": 40}
    found = _disagreements("small", [{**record, "passed": True}, {**record, "passed": False}])
    assert [d["replay"] for d in found] == ["make fuzz CFG=small CASE=5:12:vec_laps"]
