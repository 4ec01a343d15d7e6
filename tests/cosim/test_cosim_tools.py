"""The cosimulation tools without Verilator: the profiler's grouping of samples, the build key of a
``-march=native`` build, and bad input to ``tests/cosim/bench.py`` and ``tests/cosim/profile_model.py``."""

from __future__ import annotations

import dataclasses
import gc
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


def test_bench_reuses_the_tests_export_only_when_asked(monkeypatch, capsys):
    """``--reuse-export`` takes the tests' cached export and reports the time it took; without it the
    bench exports afresh.  Exports and the build are stand-ins: this checks which one is asked, and
    that each minutes-long stage is announced on stderr before it starts."""
    from types import SimpleNamespace
    from cosim import bench
    import shared_exports
    from hw.rtl import export

    class Built(Exception):
        pass

    calls = []

    def fake(kind):
        return lambda cfg: calls.append(kind) or SimpleNamespace(top="t", verilog="", seconds=12.5)

    def stop_at_the_build(*args, **kwargs):
        raise Built

    monkeypatch.setattr(shared_exports, "exported", fake("cache"))
    monkeypatch.setattr(export, "export_accelerator", fake("fresh"))
    monkeypatch.setattr(bench, "built_programs", lambda programs, cfg: [])
    monkeypatch.setattr(bench, "accelerator_verilog", lambda cfg, **kwargs: ("", 0.0))
    monkeypatch.setattr(bench, "build_and_run", stop_at_the_build)
    for reuse in (True, False):
        with pytest.raises(Built):
            bench.bench_config("tiny", reuse_export=reuse)
    assert calls == ["cache", "fresh"]
    said = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in said] == [
        "tiny: the tests' export", "tiny: mapping the benchmark programs", "tiny: Verilator build",
        "tiny: exporting the accelerator", "tiny: mapping the benchmark programs", "tiny: Verilator build"]


def test_simulator_prefix_with_whitespace_is_refused():
    # cocotb splits SIM_CMD_PREFIX at whitespace: such an argument would run something else
    with pytest.raises(ValueError, match="without whitespace"):
        build_and_run("module m; endmodule", "m", "cosim.tb_none", sim_prefix=("perf record",))


def test_a_native_build_is_cached_for_its_processor_only(monkeypatch):
    # a -march=native model may use instructions another processor lacks: its key names this one
    native = dataclasses.replace(FAST_BUILD,
                                 make_variables=FAST_BUILD.make_variables + (f"USER_CPPFLAGS={NATIVE_ARCH}",))
    plan = runner._BuildPlan.of("module m; endmodule", "m", native, (), False)
    assert plan.flags["host_cpu"] == runner.host_cpu() and runner.host_cpu()
    assert "host_cpu" not in runner._BuildPlan.of("module m; endmodule", "m", FAST_BUILD, (), False).flags
    monkeypatch.setattr(runner, "host_cpu", lambda: "another processor")
    assert runner._BuildPlan.of("module m; endmodule", "m", native, (), False).key != plan.key


def test_hierarchical_blocks_are_the_cells_not_their_submodules():
    verilog = ("module pe_tile_k4(a);\nendmodule\nmodule \\pe_tile_k4.sub (a);\nendmodule\n"
               "module top(a);\n  pe_tile_k4 pe0 (\n  );\n  pe_tile_k4 pe1 (\n  );\nendmodule\n")
    options = dataclasses.replace(FAST_BUILD, hier_blocks=("pe_tile",), hier_min_instances=2)
    plan = runner._BuildPlan.of(verilog, "top", options, (), False)
    assert "--hierarchical" in plan.build_args and plan.config == ['hier_block -module "pe_tile_k4"']
    with warnings.catch_warnings():                 # a waves build without lz4 warns: VCD then
        warnings.simplefilter("ignore")
        flat = runner._BuildPlan.of(verilog, "top", options, (), True)   # waves: left flat
    assert "--hierarchical" not in flat.build_args and not flat.config
    few = runner._BuildPlan.of(verilog, "top", dataclasses.replace(options, hier_min_instances=3), (), False)
    assert "--hierarchical" not in few.build_args and not few.config


@pytest.mark.parametrize("config_name", ["tiny", "E"])
def test_bad_streams_codes_are_what_the_simulator_derives(config_name):
    """The malformed streams' expected codes (``BAD_STREAMS``, ``bad_stream_code``) are what the
    fuzz's simulator-derived expectation gives for the same words and image: a typed code that
    drifted from the contract would fail here, not only in a Verilator run."""
    from cosim.accel_cases import BAD_STREAMS, bad_dram, bad_stream, bad_stream_code
    from cosim.fuzz import expected_outcome
    from hw.config import get_config

    cfg = get_config(config_name)
    for name in BAD_STREAMS:
        words, _ = bad_stream(name, cfg)
        got = expected_outcome(words, bad_dram(name, cfg), cfg)
        assert (got.kind, got.code) == ("error", bad_stream_code(name, cfg)), f"{name} on {config_name}: {got}"


def test_built_programs_are_reused_and_replaced_not_accumulated(tmp_path, monkeypatch):
    """A rerun from the same inputs reuses the saved program; a changed build (here: other code)
    replaces its file; another seed is another case's file."""
    from hw.config import get_config
    from cosim import program_cases as pc

    cfg = get_config("tiny")
    monkeypatch.setattr(pc, "PROGRAMS_DIR", tmp_path)
    builds = []
    real_build = pc.build_case
    monkeypatch.setattr(pc, "build_case", lambda spec, c: builds.append(spec["seed"]) or real_build(spec, c))
    spec = {"model": "mac_cnn", "size": 8, "seed": 1}
    (first, length), = pc.built_programs([spec], cfg)
    assert pc.load_built(first["built"]).program.stream and builds == [1]
    again, = pc.built_programs([spec], cfg)
    assert again == (first, length) and builds == [1], "a rerun from the same inputs builds again"
    monkeypatch.setattr(pc, "_builders_digest", lambda: "other code")
    pc.built_programs([spec], cfg)
    assert builds == [1, 1] and sorted(p.name for p in tmp_path.iterdir()) == [Path(first["built"]).name]
    pc.built_programs([{**spec, "seed": 2}], cfg)
    assert builds == [1, 1, 2] and len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("config_name", ["tiny", "E"])
def test_the_tests_build_keeps_the_global_buffers_read_words_apart(config_name):
    """``GB_READ_WORDS`` (the tests' Verilator configuration) names the exported global buffer's
    module and its read-word port: a rename would silently put its crossbar back on every cycle."""
    import fnmatch
    import re

    from cosim.accel_cases import GB_READ_WORDS, QUICK_BUILD, TB_BUILD
    from hw.config import get_config
    from hw.rtl.export import module_name
    from amaranth.hdl import UnusedElaboratable

    from hw.rtl.global_buffer import GlobalBuffer

    module, var = re.fullmatch(r'public_flat_rd -module "(.+)" -var "(.+)"', GB_READ_WORDS).groups()
    cfg = get_config(config_name)
    assert fnmatch.fnmatchcase(module_name(GlobalBuffer, cfg), module)
    with warnings.catch_warnings():                      # built for its signature, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert var in GlobalBuffer(cfg).signature.members
        gc.collect()
    assert GB_READ_WORDS in TB_BUILD.config and GB_READ_WORDS in QUICK_BUILD.config


def test_the_fuzz_expects_nothing_of_a_run_time_error_after_a_race():
    """Fuzz case 889 of seed 104 on tiny (a bit flip moves a LOAD_PARAM onto the bytes a running
    STORE writes, no token between): sim.functional, in program order, reads the stored shift of
    127 and refuses it (DATA); the RTL reads the bytes before the store and runs on.  A campaign
    found it as a disagreement; the race makes it ambiguous, not compared."""
    from cosim.fuzz import expected_outcome, fuzz_case
    from hw.config import get_config

    cfg = get_config("tiny")
    case = fuzz_case(104, 889, cfg, mutation="bit_flip")
    exp = expected_outcome(case.words, case.dram, cfg)
    assert exp.kind == "ambiguous" and "race" in exp.why, exp


def test_the_fuzz_compares_only_the_timing_of_a_store_of_parameters_never_loaded():
    """Fuzz case 159 of seed 205 on tiny (field_extreme: a LOAD_PARAM made a table load): a later
    STORE reads parameter entries nothing wrote.  The RTL read what case 158 left there; the four
    random power-on states the oracle sampled all gave the zero state's image, so it expected that
    image.  The functional model's record of undefined reads finds it whatever the states."""
    from cosim.fuzz import expected_outcome, fuzz_case
    from hw.config import get_config

    cfg = get_config("tiny")
    case = fuzz_case(205, 159, cfg, mutation="field_extreme")
    exp = expected_outcome(case.words, case.dram, cfg)
    assert exp.kind == "done" and exp.dram is None and "bias" in exp.why, exp


def test_the_fuzz_vec_mutations_descriptor_is_inside_the_image():
    """The ``vec`` mutation's descriptor is the image's first bytes: the image grows to hold all
    of it, so no case reads undefined bytes past the image as a descriptor (seed 107's images
    were 576 bytes, the descriptor 656)."""
    from cosim.fuzz import MUTATIONS, fuzz_case
    from hw.config import get_config
    from hw.vector import MAX_DESCRIPTOR_BYTES

    cfg = get_config("tiny")
    index = MUTATIONS.index("vec")
    for i in range(index, index + 8 * len(MUTATIONS), len(MUTATIONS)):
        assert fuzz_case(107, i, cfg).dram.size >= MAX_DESCRIPTOR_BYTES


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


@pytest.mark.parametrize("argv, said", [(["--seeds", "١٠٠-١٠٣"], "bad SEEDS '١٠٠-١٠٣'"),
                                        (["--seeds", "1_0"], "bad SEEDS '1_0'"),
                                        (["--case", "١:2"], "bad CASE '١:2'"),
                                        (["--seeds", "1", "--cases", "٣"], "--cases: '٣' is not a whole number"),
                                        (["--seeds", "1", "--cases", "x"], "'x' is not a whole number in the digits "
                                                                          "0-9 (cases per seed)")])
def test_a_campaign_reads_the_digits_0_to_9_only(argv, said, tmp_path, capsys, monkeypatch):
    """``--seeds ١٠٠-١٠٣`` ran seeds 100-103 and ``--cases ٣`` three cases (int() reads every script's
    digits); a --cases that is no number said only argparse's "invalid int value"."""
    from cosim import campaign

    monkeypatch.setattr(campaign, "_run_one", lambda *a, **k: pytest.fail(f"ran {argv}"))
    try:
        status = campaign.main([*argv, "--out", str(tmp_path / "o")])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and said in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_fuzz_case_done_with_another_dram_says_how_it_differs():
    """A case done in the right cycle with another DRAM image was reported as "expected done, RTL
    done": the reason names the bytes that differ, the first address and both bytes."""
    import logging
    from types import SimpleNamespace

    import numpy as np
    from cosim import tb_accelerator as tb

    want = np.arange(64, dtype=np.uint8)
    got = want.copy()
    got[[0x21, 0x30]] = [24, 7]
    exp = SimpleNamespace(kind="done", cycles=50, dram=want, code=None, index=None, why="", limit=90)
    checker = tb.Checker(logging.getLogger("test"))
    why = checker.check_fuzz("fuzz case x", exp, tb.Outcome(finished=True, done=1, tb_cycles=50, cycle=50, dram=got))
    assert why == ("done in the right cycle, but 2 DRAM bytes differ from sim.functional; first at 0x21: "
                   "expected 0x21 (33), RTL 0x18 (24)"), why
    assert checker.errors == [f"fuzz case x: {why}"]
    assert checker.check_fuzz("y", exp, tb.Outcome(finished=True, done=1, tb_cycles=50, cycle=50, dram=want)) == ""


def test_a_campaign_lists_a_disagreement_and_a_failed_run_and_goes_on(tmp_path, monkeypatch, capsys):
    """A disagreeing case fails the cocotb test (CosimFailure): the campaign reads the run's records
    and lists it, exit 1 (it stopped with a traceback, its earlier seeds' tallies lost); a run that
    left no tally (a crash) is listed under failed_runs and the next seed still runs."""
    import json
    from cosim import campaign, test_cosim_accelerator
    from cosim.runner import CosimFailure

    why = ("done in the right cycle, but 3 DRAM bytes differ from sim.functional; first at 0x212: "
           "expected 0x1a (26), RTL 0x18 (24)")
    case = {"kind": "fuzz_case", "seed": 205, "index": 159, "case": "field_extreme_159", "description": "d",
            "expected": "done", "expected_index": None, "error_code": None, "pc": 36, "rtl_cycles": 314, "why": why}

    def fake_run(config, *, seed, fuzz, fuzz_cases, announce):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        records = [] if seed == 7 else [{**case, "passed": False},
                                         {"kind": "fuzz", "seed": seed, "cases": 1, "outcomes": {"done": 1}}]
        (run_dir / test_cosim_accelerator.RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
        failure = CosimFailure(f"seed {seed} failed\nits log")
        failure.run_dir = run_dir
        raise failure

    monkeypatch.setattr(test_cosim_accelerator, "run_accelerator", fake_run)
    out = tmp_path / "camp"
    assert campaign.main(["--seeds", "7,205", "--cases", "1", "--out", str(out)]) == 1
    doc = json.loads((out / "campaign.json").read_text())
    assert doc["failed_runs"] == [{"seed": 7, "error": "seed 7 failed"}]
    assert [(d["seed"], d["index"], d["why"], d["replay"]) for d in doc["disagreements"]] == \
        [(205, 159, why, "make fuzz CFG=tiny CASE=205:159:field_extreme")]
    printed = capsys.readouterr().out
    assert "1 disagreement;" in printed and "1 disagreements" not in printed and f"(d): {why}; make fuzz" in printed, printed


def test_a_layer_appended_runs_on_its_image_moved_past_the_first():
    """``two_layers``' second layer (``_append_layer``) reads and writes its own image moved past the
    first's: every DRAM address of its stream (``_DRAM_ADDRESS``) moved, so that the joined stream
    writes both layers' outputs as each alone writes them, with a FENCE between or without."""
    from cosim.accel_cases import stream_words
    from cosim.fuzz import _append_layer, _base, words_bytes
    from hw.config import get_config
    from hw.timing import decode_until_end
    from sim.functional import Machine

    cfg = get_config("small")
    for index in range(4):
        _, first = _base(3, index, cfg)
        _, second = _base(4, index, cfg)
        words = stream_words(first.stream)
        at, dram = _append_layer(words, first.dram_in, second, fence=index % 2 == 0)
        Machine(cfg, dram).run(decode_until_end(words_bytes(words))[0])
        assert (dram[:first.dram_in.size] == first.dram_out).all() and (dram[at:] == second.dram_out).all()


def test_the_pe_set_mutation_reaches_the_arrays_last_pe_and_past_it():
    """``pe_set`` draws sets whose last PE is the array's last (legal) and one past it (RANGE)."""
    from cosim.fuzz import expected_outcome, fuzz_case, words_bytes
    from hw.config import get_config
    from hw.isa import FIELDS, Op, decode

    cfg, lasts = get_config("small"), {}
    for i in range(40):
        case = fuzz_case(5, i, cfg, mutation="pe_set")
        index = int(case.description.split(": ")[1].split()[1])
        f = decode(words_bytes([case.words[index]])).f
        last = f["pe_first"] + (f["pe_count"] - 1) * f["pe_step"] if f["pe_count"] else None
        lasts.setdefault(last, set()).add(expected_outcome(case.words, case.dram, cfg).kind)
    assert "done" in lasts[cfg.num_pe - 1] and lasts[cfg.num_pe] == {"error"} and lasts[None] == {"error"}, lasts


ODD_BUILDABLE = """name = "odd1"
num_pe = 1
k0 = 8
c0 = 4
weight_buf_bytes = 160
input_buf_bytes = 48
accum_depth = 33
param_depth = 32
global_buf_bytes = 2048
dram_bytes_per_cycle = 4
dram_latency = 2
"""


def test_a_campaign_runs_on_an_accelerator_file_the_rtl_builds(tmp_path, monkeypatch):
    """``make fuzz CFG=my.toml``: a user's configuration (one PE, 5 weight rows, 12 input rows, 33
    accumulators: cosimulated bit- and cycle-exact with this file) is fuzzed as a test configuration
    is, its folder named by ``sim.outputs.config_tag``; it was refused ("runs on tiny, small, e_small")."""
    import json
    from cosim import campaign, test_cosim_accelerator
    from hw.config_file import load_config
    from sim.outputs import config_tag

    path = tmp_path / "odd1.toml"
    path.write_text(ODD_BUILDABLE)
    asked = []

    def fake_run(config, *, seed, fuzz, fuzz_cases, announce):
        asked.append(config)
        return None, [{"kind": "fuzz", "seed": seed, "cases": fuzz, "outcomes": {"done": fuzz}}]

    monkeypatch.setattr(test_cosim_accelerator, "run_accelerator", fake_run)
    monkeypatch.chdir(tmp_path)
    assert campaign.main(["--config", str(path), "--seeds", "3", "--cases", "2"]) == 0
    assert asked == [str(path)]
    doc = json.loads((tmp_path / "build" / "fuzz" / f"{config_tag(load_config(str(path)))}_seeds3_cases2"
                      / "campaign.json").read_text())
    assert doc["config"] == str(path) and doc["seeds"][0]["cases"] == 2


@pytest.mark.parametrize("change, why", [("num_pe = 3", "the RTL cannot build it: vector_lanes"),
                                         ("k0 = 3", "k0 must be one of"),
                                         ("num_pe = 64\nk0 = 32\nc0 = 32\nweight_buf_bytes = 4096\n"
                                          "input_buf_bytes = 1024\nparam_depth = 128\nglobal_buf_bytes = 8192\n"
                                          "dram_bytes_per_cycle = 64", "no vector executor")])
def test_a_campaign_refuses_an_accelerator_file_it_cannot_fuzz_in_one_line(change, why, tmp_path):
    """A file the RTL does not build, an invalid one, and one whose RTL has no vector executor (2,048
    row lanes): one line, exit 2, nothing written."""
    lines = {line.split(" = ")[0]: line for line in ODD_BUILDABLE.splitlines()}
    lines.update({line.split(" = ")[0]: line for line in change.splitlines()})
    path = tmp_path / "odd.toml"
    path.write_text("\n".join(lines.values()) + "\n")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(COSIM / "campaign.py"), "--config", str(path), "--seeds", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and why in done.stderr, done.stderr
    assert not out.exists()


def test_a_campaign_does_not_print_the_tests_cosim_seed_line(tmp_path, monkeypatch, capsys):
    """A campaign printed each run's pytest-style announcement ("cosim accelerator tiny: COSIM_SEED=1;
    0 layers (), networks [], ...") on stderr beside its own line for the seed; a test still prints it
    (its ``-s`` output names the COSIM_SEED that replays it).  The RTL build and run are stand-ins."""
    from types import SimpleNamespace
    from cosim import campaign, test_cosim_accelerator

    ran = SimpleNamespace(run_dir=tmp_path, cached=True, build_s=0.0, build_dir=tmp_path, run_s=0.0, waves=None,
                          tests=["fuzz"])
    monkeypatch.setattr(test_cosim_accelerator, "verilog_of", lambda *a: ("", 0.0))
    monkeypatch.setattr(test_cosim_accelerator, "build_and_run", lambda *a, **k: ran)
    assert campaign._run_one("tiny", 3, 2, [])[2] == ""
    said = capsys.readouterr()
    assert "COSIM_SEED" not in said.err + said.out and "build cached" in said.err, said
    test_cosim_accelerator.run_accelerator("tiny", seed=3, fuzz=2)
    assert "cosim accelerator tiny: COSIM_SEED=3;" in capsys.readouterr().out
