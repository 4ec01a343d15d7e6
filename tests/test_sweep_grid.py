"""Design-space grids in the sweep (sim.sweep --grid): the points a grid makes, refusals, and a
24-point grid on a small network (an ONNX file) that completes, and resumes after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim.sweep as sweep
from hw.config import get_config
from hw.cli import UsageError

from onnx_graphs import cnn

ROOT = Path(__file__).resolve().parent.parent
GRID = "num_pe=8,16,32 k0=16,32 weight_kib=64,128 input_kib=32,64"


def test_grid_points_names_and_aliases():
    g = sweep.parse_grid(GRID, get_config("E"))
    assert len(g.configs) == 24 and not g.invalid
    first = g.configs[0]
    assert first.name == "num_pe=8,k0=16,weight_kib=64,input_kib=32"
    assert (first.num_pe, first.k0, first.c0, first.weight_buf_bytes, first.input_buf_bytes) == (8, 16, 32, 65536, 32768)
    g = sweep.parse_grid("k0c0=16,32 clock_ghz=1,1.5", get_config("E"))
    assert [(c.k0, c.c0, c.clock_ghz) for c in g.configs] == [(16, 16, 1.0), (16, 16, 1.5), (32, 32, 1.0),
                                                             (32, 32, 1.5)]


def test_points_the_configuration_refuses_are_listed():
    g = sweep.parse_grid("k0=16,32,64 param_depth=128", get_config("E"))      # param_depth >= 4 x K0
    assert [c.k0 for c in g.configs] == [16, 32]
    assert [n for n, _ in g.invalid] == ["k0=64,param_depth=128"]
    assert "param_depth (128) must be at least 4 x K0 = 256" in g.invalid[0][1]


@pytest.mark.parametrize("text, needle", [("num_pes=8,16", "'num_pes': it is no configuration field"),
                                          ("name=a", "'name': it is no number to vary"),
                                          ("base=E", "'base': it is no number to vary"),
                                          ("num_pe=eight", "'eight'"),
                                          ("num_pe=8,16 num_pe=32", "given twice"),
                                          ("weight_kib=64 weight_buf_bytes=65536",
                                           r"^bad --grid: key 'weight_buf_bytes' sets weight_buf_bytes, which "
                                           r"'weight_kib' already sets$"),
                                          ("num_pe=", "FIELD=V1,V2"),
                                          ("num_pe=8,,16", "FIELD=V1,V2"),
                                          ("k0=3", "every point"),
                                          ("", "FIELD=V1,V2")])
def test_bad_grids(text, needle):
    with pytest.raises(UsageError, match=needle):
        sweep.parse_grid(text, get_config("E"))


def test_too_many_points(monkeypatch):
    monkeypatch.setattr(sweep, "MAX_GRID_POINTS", 10)
    with pytest.raises(UsageError, match="24 points, more than 10"):
        sweep.parse_grid(GRID, get_config("E"))


def test_grid_and_configs_exclude_each_other(tmp_path, capsys):
    argv = ["--model", "segformer_b0", "--grid", "num_pe=8", "--configs", "E", "--out", str(tmp_path / "o"),
            "--cache", str(tmp_path / "c")]
    assert sweep.main(argv) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_bad_base_names_the_make_variable_that_sets_it(tmp_path, capsys):
    """``make sweep CFG=bad.toml GRID=...`` reached the user as "bad --base", an option they never typed."""
    (tmp_path / "bad.toml").write_text('base = "E"\nnum_pes = 8\n')
    argv = ["--model", "segformer_b0", "--grid", "num_pe=8", "--base", str(tmp_path / "bad.toml"),
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert "bad --base (make sweep: CFG=)" in err and "unknown key 'num_pes'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_a_base_without_a_grid_is_refused(tmp_path, capsys):
    """``make sweep CFG=G`` without GRID= swept the presets and said nothing of G."""
    from sub_make import run_make
    r = run_make(["--no-print-directory", "-n", "-C", str(ROOT), "sweep", "CFG=G"], timeout=60)
    assert "--base='G'" in r.stdout, r.stdout
    argv = ["--model", "segformer_b0", "--base", "G", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert "--base G (make sweep: CFG=) is the configuration a grid varies" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option, value", [("dram_mib", "8"), ("global_buf_kib", "512"), ("clock_ghz", "1.5"),
                                           ("dram_latency", "200"), ("dram_bytes_per_cycle", "64")])
def test_an_override_option_points_to_the_grid(tmp_path, capsys, option, value):
    """``make sweep ARGS="--dram-mib 8"`` was an unrecognized option; a sweep sets fields by its grid."""
    argv = ["--model", "segformer_b0", f"--{option.replace('_', '-')}", value, "--out", str(tmp_path / "o"),
            "--cache", str(tmp_path / "c")]
    with pytest.raises(SystemExit) as info:
        sweep.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert f'GRID="{option}={value}"' in err and "CFG=" in err, err
    assert sweep.parse_grid(f"{option}={value}", get_config("E")).configs     # the grid it names works
    assert not list(tmp_path.iterdir())


def _sweep(model: Path, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sim.sweep", "--model", str(model), "--grid", GRID,
                             "--workers", "1", "--no-plot", "--cache", str(tmp_path / "cache"),
                             "--out", str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_24_point_grid_completes_and_resumes_after_a_kill(tmp_path):
    proto, _ = cnn(size=64, width=32)
    model = tmp_path / "small_cnn.onnx"
    model.write_bytes(proto.SerializeToString())
    first = _sweep(model, tmp_path)
    deadline = time.monotonic() + 300
    while len(list((tmp_path / "cache").glob("*.json"))) < 4:
        assert first.poll() is None, "the sweep ended before it could be killed: " + first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)                 # no chance to clean up
    first.wait()
    cached = len(list((tmp_path / "cache").glob("*.json")))
    assert 4 <= cached < 24 and not (tmp_path / "out").exists()
    second = _sweep(model, tmp_path)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert f"24 points, {cached} cached, {24 - cached} to compute" in stderr
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert len(doc["points"]) == 24 and doc["invalid"] == [] and doc["pareto_front"]
    assert doc["grid"] == {"base": "E", "axes": {"num_pe": [8, 16, 32], "k0": [16, 32], "weight_kib": [64, 128],
                                                  "input_kib": [32, 64]}}
    for p in doc["points"]:
        inside = p["num_pe"] >= 16 and p["k0"] == 32          # Table II: 16..64 PEs, K0 = C0
        assert (p["area_extrapolated"] == []) == inside, p
    assert "area extrapolated beyond Table II" in stdout


def test_sweep_json_says_what_each_configuration_was():
    """Two sweeps over accelerator files both named 'same' (dram_latency 20 and 30) wrote the same
    names and k0/c0/num_pe, so sweep.json could not tell which base a grid had varied: it now lists
    every configuration's fields, which an accelerator file takes back."""
    from types import SimpleNamespace
    from hw.config_file import config_from_mapping
    base = get_config("tiny").replace(name="same", dram_latency=30)
    grid = sweep.parse_grid("num_pe=2,4", base)
    results = {cfg.name: {"point": None, "error": "not mapped here"} for cfg in grid.configs}
    model = SimpleNamespace(variant="full", input=(32, 32, 3))
    doc = sweep._document("m", model, list(grid.configs), results, paper_comparable=False)
    assert sorted(doc["configurations"]) == ["num_pe=2", "num_pe=4"]
    for cfg in grid.configs:
        fields = doc["configurations"][cfg.name]
        assert fields["dram_latency"] == 30 and fields["num_pe"] == cfg.num_pe
        assert config_from_mapping(json.loads(json.dumps(fields)), where="sweep.json", default_name="x") == cfg
