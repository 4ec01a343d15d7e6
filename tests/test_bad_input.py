"""Bad input to every tool: exit status 2, one line naming the value and what is allowed, no traceback,
no file changed.  The rows of the issue "Results users can trust and show" and others like them
(each tool's own tests have more)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import get_config
from hw.isa import Op, encode_stream
from mapper.flops import smallest_size
from mapper.ir import Conv2d, Linear
from mapper.lower import MappingError, _insn, map_layer
from mapper.workloads import build_model
from sub_make import PARENT_MAKE, run_make

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")

FILES = {
    "nan.csv": b"frame,time_ms\n0,3\n1,nan\n",
    "inf.csv": b"frame,time_ms\n0,inf\n",
    "binary.csv": bytes(range(256)) * 4,
    "existing/report.json": b"{}\n",          # an earlier result that must stay as it is
    "partial.bin": bytes(16),
    "ones.bin": b"\xff" * 64,           # no zero byte, yet no text: the ISA's own error, not "is text"
    "partial.json": b'{"config": {"num_pe": -3}}\n',     # a sidecar lacking most fields
}
SIM = ["sim.run", "--model", "segformer_b0", "--config", "small", "--out", "existing"]


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def run_tool(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # catches a hang, not a loaded machine: a --check run of B0 32x32 on small passed 120 s under load
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600)


def assert_refused(r: subprocess.CompletedProcess, *needles: str, absent: str = "") -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    if absent:
        assert absent not in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("argv, needles, absent", [
    # a budget trace with nan or inf (rdd.json would not be valid JSON)
    (["sim.rdd", "--model", "segformer_b2", "--budgets", "nan.csv", "--out", "existing"],
     ["nan.csv:3", "'nan'", "finite"], ""),
    (["sim.rdd", "--model", "segformer_b2", "--budgets", "inf.csv"], ["inf.csv:2", "'inf'", "finite"], ""),
    # a clock out of range
    ([*SIM, "--clock-ghz", "1e-300"], ["1e-300", "between 0.01 and 20"], ""),
    ([*SIM, "--clock-ghz", "1e308"], ["1e+308", "between 0.01 and 20"], ""),
    ([*SIM, "--clock-ghz", "nan"], ["nan", "between 0.01 and 20"], ""),
    ([*SIM, "--dram-latency", "99999999999999999999"], ["dram_latency", "at most"], ""),
    # not a number: what the option is, not argparse's "invalid int value" (helper-116)
    ([*SIM, "--dram-latency", "2.5"], ["--dram-latency", "'2.5' is not a whole number", "DRAM latency in cycles"],
     "invalid int value"),
    # a binary CSV: the file and what is wrong, not "utf-8"
    (["sim.rdd", "--model", "segformer_b2", "--budgets", "binary.csv"], ["binary.csv", "not a text CSV"], ""),
    (["sim.paths", "--model", "segformer_b2", "--accuracy", "binary.csv"], ["binary.csv", "not a text CSV"], ""),
    # a negative size: the size is wrong, not the command line
    ([*SIM, "--size", "-512x512"], ["'-512x512'", "HxW"], "expected one argument"),
    (["mapper.flops", "--model", "segformer_b2", "--size", "-512x512"], ["'-512x512'", "HxW"], ""),
    (["sim.sweep", "--model", "segformer_b2", "--size", "-512x512"], ["'-512x512'", "HxW"], ""),
    # a size the model cannot take names the size, then the layer
    # ... and the smallest size it takes (sim.run and mapper.flops alike: test_smallest_size_...)
    ([*SIM, "--size", "7x7"], ["--size 7x7", "segformer_b0 cannot take", "attn.sr", "the smallest input it takes is"],
     ""),
    (["mapper.flops", "--model", "segformer_b0", "--size", "64x8", "--out", "existing"],
     ["--size 64x8", "the smallest input it takes is"], ""),
    # a bad variant with a good size blames the variant
    ([*SIM, "--size", "64x64", "--variant", "B2_a"], ["unknown variant 'B2_a'"], "--size"),
    # verilog --set with an unknown field blames the field
    (["hw.rtl.export", "--config", "tiny", "--set", "foo=1", "--out", "existing"], ["--set", "'foo'", "choose from"],
     "--config"),
    # others like them
    ([*SIM, "--format", "jpg"], ["'jpg'", "png, pdf, svg"], ""),
    ([*SIM, "--trace-layers", "stage0.block0.attn.q,nope"], ["'nope'", "--trace-layers"], ""),
    ([*SIM, "--trace-layers", "all,nope"], ["'all,nope'", "'all' alone"], ""),
    (["sim.paths", "--model", "segformer_b2", "--format", "gif", "--paths", "full"], ["'gif'"], ""),
    (["sim.replay", "missing.bin"], ["missing.bin", "No such file"], ""),
    # an empty name: named as such (the line started ": cannot read")
    (["sim.rdd", "--model", "segformer_b2", "--budgets", ""], ["error: '': cannot read the CSV file: No such file"], ""),
    (["sim.replay", "binary.csv"], ["binary.json", "--config"], ""),
    (["sim.replay", "partial.bin"], ["partial.json", "lacks acc_bits, accum_depth, c0"], "positional"),
    (["sim.replay", "ones.bin", "--config", "tiny"], ["ones.bin", "at instruction 0", "unknown opcode"], "is text"),
    (["sim.run", "--model", "segformer_b0", "--config", "small", "--out", "binary.csv"], ["binary.csv", "a file"], ""),
    (["sim.run", "--model", "segformer_b0", "--config", "small", "--out", "binary.csv/out"], ["binary.csv/out"], ""),
    # a file where the export's folder must be: named as such, not "File exists"
    (["mapper.onnx_export", "--model", "segformer_b0", "--out", "binary.csv"], ["binary.csv is a file, not a folder"],
     "File exists"),
    # a file where the named file's folder must be: named as such, not "exists and cannot be read"
    (["mapper.flops", "--model", "segformer_b0", "--out", "binary.csv/f.json"], ["binary.csv is a file, not a folder"],
     "cannot be read"),
    (["hw.config_file", "--config", "E", "--out", "binary.csv/e.toml"], ["binary.csv is a file, not a folder"],
     "cannot be read"),
])
def test_refused_with_one_line_and_nothing_changed(tmp_path, argv, needles, absent):
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    before = snapshot(tmp_path)
    assert_refused(run_tool(argv, tmp_path), *needles, absent=absent)
    assert snapshot(tmp_path) == before


def _make(*args: str) -> subprocess.CompletedProcess:
    return run_make(["--no-print-directory", "-n", "-C", str(REPO), *args], timeout=60)


def test_a_parent_makes_variables_do_not_reach_the_make_under_test(monkeypatch):
    """``make regress ARGS=--durations=9`` exports ARGS (and MAKEFLAGS) to the makes its tests start."""
    monkeypatch.setenv("ARGS", "--durations=9")
    monkeypatch.setenv("MAKEFLAGS", "ARGS=--durations=9")
    r = _make("sim", "MODEL=resnet50", "CFG=E")
    assert r.returncode == 0, r.stderr
    assert "--durations" not in r.stdout and "sim.run" in r.stdout, r.stdout


def _sim_line(r: subprocess.CompletedProcess) -> str:
    return next(line for line in r.stdout.splitlines() if "-m sim.run" in line)


def test_make_check_is_on_only_for_1():
    assert "--check" not in _sim_line(_make("sim", "CHECK=0"))
    assert "--check" not in _sim_line(_make("sim", "CHECK="))
    assert "--check" in _sim_line(_make("sim", "CHECK=1"))
    r = _make("sim", "CHECK=yes")
    line = assert_refused(r, "CHECK must be 1", "'yes'")
    assert "-m sim.run" not in r.stdout and line


def test_make_passes_a_negative_size_to_the_tool(tmp_path):
    command = shlex.split(_sim_line(_make("sim", "MODEL=segformer_b0", "SIZE=-512x512", "OUT=o")))
    assert command[1:3] == ["-m", "sim.run"]
    r = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=60)
    assert_refused(r, "bad --size '-512x512'")
    assert list(tmp_path.iterdir()) == []


def test_replay_into_head_ends_quietly(tmp_path):
    lowered, _ = map_layer(Conv2d("c", "encoder", 64, 64, 32, 32, kernel=3, padding=1), get_config("small"))[0]
    stream = tmp_path / "s.bin"
    stream.write_bytes(encode_stream(lowered.stream * 20 + [_insn(Op.END)]))   # a listing far beyond a pipe's buffer
    r = subprocess.run(f"{shlex.quote(sys.executable)} -m sim.replay s.bin --config small --listing | head -2",
                       shell=True, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.stderr == "" and len(r.stdout.splitlines()) == 2


# ---- sizes, dimensions, make targets and output folders (QA round 26) -------------------------------

def _builds(model: str, size: tuple[int, int]) -> bool:
    try:
        build_model(model, size=size)
    except ValueError:
        return False
    return True


def test_smallest_size_is_where_the_model_starts_to_build(tmp_path):
    """The size the refusal names: the model builds there and at the next sizes up, and not one
    row or one column less (found from the model itself, by bisection)."""
    h, w = smallest_size("segformer_b0")
    assert h > 1 and w > 1
    assert _builds("segformer_b0", (h, w)) and not _builds("segformer_b0", (h - 1, w))
    assert not _builds("segformer_b0", (h, w - 1))
    assert all(_builds("segformer_b0", (h + d, w + d)) for d in (1, 2, 3))
    r = run_tool([*SIM[:-2], "--size", "7x7"], tmp_path)
    assert f"the smallest input it takes is {h}x{w}" in assert_refused(r)


def test_a_dimension_beyond_the_isa_names_the_layer_dimension_and_limit():
    err = pytest.raises(MappingError, map_layer, Linear("head", "decoder", 16, 64, 70_000), get_config("small"))
    assert str(err.value) == ("head: 70000 output channels, more than the ISA addresses "
                              "(at most 65535: STORE.t_k is 16 bits)")


def test_a_70000_channel_convolution_is_refused_in_one_line(tmp_path):
    """Through the simulator's command line, from an ONNX file (what a user brings)."""
    import onnx
    from onnx_graphs import Graph, image_input, out

    g = Graph(3)
    y = g.op("Conv", ["pixel_values", g.weight("w", 70_000, 3, 1, 1)], "/wide", kernel_shape=[1, 1])
    onnx.save(g.model([image_input(3, 2, 2)], [out(y)]), tmp_path / "wide.onnx")
    before = snapshot(tmp_path)
    r = run_tool(["sim.run", "--model", "wide.onnx", "--config", "small", "--no-plots"], tmp_path)
    assert_refused(r, "wide.Conv_", "70000 output channels", "at most 65535", absent="does not fit")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["paths", "rdd"])
@pytest.mark.parametrize("var, value, needles", [("SIZE", "256x256", ["no SIZE", "'256x256'", "make sim SIZE="]),
                                                ("VARIANT", "B2_a", ["no VARIANT", "'B2_a'"])])
def test_make_paths_and_rdd_refuse_a_size_or_variant(target, var, value, needles):
    r = _make(target, f"{var}={value}")
    assert_refused(r, f"make {target}", *needles)
    assert "-m sim." not in r.stdout
    assert f"-m sim.{target}" in _make(target, f"{var}=").stdout


@pytest.mark.parametrize("argv, said", [
    (["sim.run", "--config", "tiny", "--global-buf-kib", "99999999"],
     "--global-buf-kib 99999999: bad configuration override: global_buf_kib must be at most 4194304 KiB, not 99999999"),
    (["sim.run", "--config", "tiny", "--global-buf-kib", "-1"], "global_buf_kib must be a positive integer, not -1"),
    (["sim.sweep", "--grid", "global_buf_kib=99999999"], "global_buf_kib must be at most 4194304 KiB, not 99999999")])
def test_a_kib_option_is_refused_in_kib(argv, said, tmp_path, capsys):
    """``--global-buf-kib 99999999`` was refused as "global_buf_bytes must be at most 4294967296, not
    102399998976": bytes the user never wrote."""
    import importlib

    tool, *rest = argv
    assert importlib.import_module(tool).main(["--model", "segformer_b0", *rest, "--out", str(tmp_path / "o")]) == 2
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and said in line and "global_buf_bytes" not in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tool, argv", [("run", ["--config", "E"]), ("infer", ["--config", "E"]),
                                        ("sweep", ["--configs", "E"]), ("paths", []), ("rdd", [])])
def test_a_flops_only_model_is_refused_as_such(tool, argv, tmp_path, capsys):
    """``make sim MODEL=anchor_detr`` failed on a mapping detail (a STORE's channel field): it is for
    ``make flops`` only, as its opaque products have no layout the accelerator maps."""
    import importlib

    assert importlib.import_module(f"sim.{tool}").main(["--model", "anchor_detr", *argv, "--quiet",
                                                       "--out", str(tmp_path / "o")]) == 2
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "anchor_detr is for FLOP counting only" in line, line
    assert "opaque product" in line and line.rstrip().endswith("make flops MODEL=anchor_detr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tool", ["paths", "rdd"])
def test_python_paths_and_rdd_say_why_they_take_no_size(tool, tmp_path, capsys):
    """``python -m sim.rdd --size 64x64`` said only "unrecognized arguments"; it gives make's reason,
    from the one text both read (``sim.refused_options``)."""
    import importlib
    from sim.refused_options import WHY_NOT

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"sim.{tool}").main(["--model", "segformer_b0", "--size", "64x64",
                                                     "--out", str(tmp_path / "o")])
    line = capsys.readouterr().err
    assert exit_.value.code == 2 and line.count("\n") == 1, line
    assert f"--size 64x64: python -m sim.{tool} takes no --size: {WHY_NOT[tool, 'size']}" in line
    assert WHY_NOT[tool, "size"] in _make(tool, "SIZE=64x64").stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("target", ["paths", "rdd"])
def test_make_paths_and_rdd_take_one_file_with_spaces_or_several_models(target, tmp_path):
    one = tmp_path / "with space.onnx"
    one.write_bytes(b"")
    assert f"--model='{one}'" in _make(target, f"MODEL={one}").stdout
    assert "--model='segformer_b2' --model='swin_tiny'" in _make(target, "MODEL=segformer_b2 swin_tiny").stdout


def test_a_checked_run_leaves_the_unchecked_one_alone(tmp_path):
    """make sim ... CHECK=1 writes a folder of its own, named with the check's seed, which it
    prints and records with the check's summary (make test's one checked run of sim.run)."""
    base = ["sim.run", "--model", "segformer_b0", "--config", "small", "--size", "32x32", "--no-plots", "--quiet"]
    assert run_tool(base, tmp_path).returncode == 0
    plain = tmp_path / "build" / "sim" / "segformer_b0_small_32x32"
    report = (plain / "report.json").read_bytes()
    r = run_tool([*base, "--check", "--seed", "3"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seed: 3" in r.stdout and "functional check passed" in r.stdout
    assert "--seed 3" in r.stdout and "SEED=3" in r.stdout      # the replay hint, for both spellings
    checked = tmp_path / "build" / "sim" / "segformer_b0_small_32x32_check_seed3"
    assert str(checked.relative_to(tmp_path)) in r.stdout
    assert (plain / "report.json").read_bytes() == report
    doc = json.loads((checked / "report.json").read_text())
    assert doc["check"]["seed"] == 3 and doc["check"]["tensors"] > 0


def test_a_seed_without_check_is_refused(tmp_path):
    """The seed chooses the weights and images of --check only; without it the seed would be silently ignored."""
    before = snapshot(tmp_path)
    r = run_tool(["sim.run", "--model", "segformer_b0", "--config", "small", "--size", "32x32", "--seed", "3",
                  "--no-plots"], tmp_path)
    assert_refused(r, "--seed 3", "--check", "CHECK=1", "weights")
    assert snapshot(tmp_path) == before


def test_a_seed_without_check_names_what_it_draws_for_an_onnx_file(tmp_path):
    """An ONNX file brings its own weights: its seed draws only --check's calibration and input images."""
    import onnx
    from onnx_graphs import cnn
    onnx.save(cnn(size=16)[0], tmp_path / "my.onnx")
    before = snapshot(tmp_path)
    r = run_tool(["sim.run", "--model", "my.onnx", "--config", "small", "--seed", "5", "--no-plots"], tmp_path)
    line = assert_refused(r, "--seed 5", "calibration and input images", "CHECK=1")
    assert "seeds the weights" not in line
    assert snapshot(tmp_path) == before


def test_make_run_refuses_fusion():
    """FUSION is make sim's; make run would silently ignore it."""
    r = _make("run", "FUSION=0")
    assert_refused(r, "make run takes no FUSION (not '0')", "FUSION is make sim's")
    assert "-m sim.infer" not in r.stdout
    assert "-m sim.infer" in _make("run", "FUSION=").stdout


def _takes() -> dict[str, list[str]]:
    """The Makefile's table: target -> the variables it takes."""
    text = (REPO / "Makefile").read_text()
    return {t: v.split() for t, v in re.findall(r"^TAKES\.(\S+)\s*:=(.*)$", text, re.M)}


def test_every_target_of_make_help_is_in_the_table_of_variables():
    lines = run_make(["--no-print-directory", "-C", str(REPO), "help"], timeout=60).stdout.splitlines()
    targets = {line.split()[1] for line in lines if line.startswith("make ")}
    assert targets and targets <= set(_takes()), targets - set(_takes())


@pytest.mark.parametrize("target, var, value", [("run", "FORMAT", "pdf"), ("sim", "IMAGE", "x.npy"),
                                                ("paths", "CHECK", "1"), ("config", "MODEL", "resnet50"),
                                                ("test", "CFG", "tiny"), ("cosim", "SEED", "3")])
def test_a_variable_the_target_does_not_take_is_refused(target, var, value):
    """``make run FORMAT=pdf`` ran without a word about FORMAT: the user believed it took effect."""
    r = _make(target, f"{var}={value}")
    line = assert_refused(r, f"make {target} takes no {var} (not '{value}')", "its variables are ")
    assert ", ".join(_takes()[target]) in line
    assert r.stdout == ""


def test_every_target_takes_its_own_variables_and_refuses_the_others():
    """From the one table: each variable some target takes, given to every target of the table."""
    takes = _takes()
    checked = sorted({v for vs in takes.values() for v in vs})
    for target, own in takes.items():
        other = next(v for v in checked if v not in own)
        assert_refused(_make(target, f"{other}=1"), f"make {target} takes no {other} (not '1')")
        if own:
            r = _make(target, *(f"{v}=1" for v in own))
            assert "takes no" not in r.stderr, r.stderr


def test_only_the_command_line_is_checked():
    """An empty value, the environment's, make's own and a user's other variables pass."""
    assert _make("run", "FORMAT=").returncode == 0
    assert _make("run", "V=1", "MAKE_TERMOUT=1").returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in PARENT_MAKE}
    r = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(REPO), "run"], env=dict(env, FORMAT="pdf"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "-m sim.infer" in r.stdout, r.stderr


@pytest.mark.parametrize("tool", [["sim.run", "--config", "tiny"], ["sim.infer", "--config", "tiny"], ["mapper.flops"],
                                  ["mapper.onnx_export"]])
@pytest.mark.parametrize("model, size, layer", [("segformer_b0", "100000x100000", "stage0.patch_embed"),
                                                ("resnet50", "99999999999999999999x64", "conv1")])
def test_an_input_size_beyond_the_isa_is_refused_before_anything_is_allocated(tmp_path, tool, model, size, layer):
    """The first layer too large for the ISA's fields, named in one line, before the DRAM check lays
    the network out (which allocated per-token arrays and hung on such sizes); make run's too (its input
    image was a traceback of 213 PiB); make flops and make onnx (its calibration image, the same) refuse
    the sizes the simulator refuses on every configuration, with the same reason."""
    r = run_tool([*tool, "--model", model, "--size", size], tmp_path)
    assert_refused(r, f"{layer}: ", "input rows, more than the ISA addresses (at most 65535")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("tool", [["sim.run", "--config", "E"], ["mapper.flops"], ["mapper.onnx_export"]])
def test_a_pooling_window_beyond_the_isa_is_refused_by_every_tool(tmp_path, tool):
    """ResNet-50 at 20000x20000: every MAC layer's fields hold it, but its adaptive average pooling's
    625x625 window is above the vector unit's ``POOL_MAX_COUNT`` on every configuration.  The
    simulator refused it, make flops wrote its JSON (it checked the MAC layers only); now all refuse
    with the vector unit's reason, writing nothing."""
    r = run_tool([*tool, "--model", "resnet50", "--size", "20000x20000"], tmp_path)
    assert_refused(r, "avgpool (625x625x2048 -> 1x1x2048)", "POOL_MAX_COUNT = 65,536")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, name", [
    (["mapper.onnx_export", "--model", "segformer_b0", "--size", "64x64"], "user.onnx"),
    (["mapper.flops", "--model", "segformer_b0"], "mine.json")])
def test_a_named_output_file_that_exists_is_never_overwritten(tmp_path, argv, name):
    """A user's own file (or another run's) named as the output is refused, left as it was; the
    same command writing a new file works, and again when the file holds what it would write."""
    (tmp_path / name).write_text("my own file\n")
    r = run_tool([*argv, "--out", name], tmp_path)
    assert_refused(r, name, "never overwritten")
    assert (tmp_path / name).read_text() == "my own file\n"
    for _ in range(2):
        assert run_tool([*argv, "--out", f"new_{name}"], tmp_path).returncode == 0


@pytest.mark.parametrize("argv, out, allowed", [
    (["mapper.flops", "--model", "segformer_b0"], "flops.csv", "writes a .json file"),
    (["hw.config_file", "--config", "E"], "E.json", "writes a .toml file"),
    (["mapper.onnx_export", "--model", "segformer_b0"], "model.json", "writes a .onnx file")])
def test_an_output_named_as_a_file_of_another_kind_is_refused_before_any_work(tmp_path, argv, out, allowed):
    """``--out flops.csv`` for a tool that writes a JSON is a mistake: refused in one line, no
    folder of that name made."""
    r = run_tool([*argv, "--out", out], tmp_path)
    assert_refused(r, f"--out {out}", allowed)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["mapper.flops", "--model", "segformer_b0"],
                                  ["mapper.onnx_export", "--model", "segformer_b0"]])
def test_a_file_is_never_added_to_another_tools_run_folder(tmp_path, argv):
    """A folder ``make sim`` wrote as a whole (its ``.run`` mark) takes no file of another tool:
    ``make sim`` would then refuse to replace its own folder (a foreign file in it)."""
    run = tmp_path / "segformer_b0_E"
    run.mkdir()
    (run / ".run").write_text("segformer_b0_E\n")
    r = run_tool([*argv, "--out", run.name], tmp_path)
    assert_refused(r, f"output folder {run.name}", "results of the run segformer_b0_E")
    assert sorted(p.name for p in run.iterdir()) == [".run"]


@pytest.mark.parametrize("typed, meant", [("segformer_bb2", "segformer_b2"),
                                          ("segformer_bo", "segformer_b0"),     # o is next to 0, not to 2
                                          ("segfromer_b1", "segformer_b1"),     # two letters swapped
                                          ("resnet5", "resnet50")])
def test_a_mistyped_model_gets_a_suggestion(typed, meant):
    """The suggestion is the name fewest typos away (difflib alone rated segformer_b0 and _b2 alike for
    segformer_bo and said _b2)."""
    from mapper.workloads import check_model
    with pytest.raises(KeyError, match=rf"did you mean '{meant}'\?"):
        check_model(typed)
    with pytest.raises(KeyError) as e:
        check_model("xyz")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("name, said", [("smal", "small"), ("e_smal", "e_small"), ("tiny ", "tiny"), ("TINI", "tiny")])
def test_a_mistyped_configuration_gets_a_suggestion(name, said):
    """``CFG=smal`` listed the presets but, unlike a mistyped MODEL, suggested none."""
    from hw.config_file import ConfigError, load_config
    with pytest.raises(ConfigError, match=rf"unknown configuration {name!r} \(did you mean {said!r}\?\); choose one of"):
        load_config(name)
    with pytest.raises(ConfigError) as e:
        load_config("Z")
    assert "did you mean" not in str(e.value)


def test_an_option_given_twice_is_refused_not_overridden(capsys):
    """``make sim CFG=E ARGS="--config tiny"`` ran tiny: argparse keeps the last value silently."""
    from hw.cli import OneLineParser

    p = OneLineParser(prog="tool")
    p.add_argument("--config")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--dump", action="append")
    p.add_argument("--dumps")           # "--dump" is an option of its own, no abbreviation of this one
    assert p.parse_args(["--config=E", "--quiet", "--quiet", "--dump", "a", "--dump", "b", "--dumps", "c"]).dump \
        == ["a", "b"]
    for argv in (["--config=E", "--config", "tiny"], ["--config", "E", "--conf=tiny"]):
        with pytest.raises(SystemExit) as info:
            p.parse_args(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1
        assert "--config given 2 times ('E', 'tiny'); give it once" in err, err


# ---- outputs checked by creating them, inputs read strictly (QA round 62) ----------------------------

@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_sweep_cache_that_cannot_be_created_is_refused_before_any_point(tmp_path):
    """``--cache /proc/x``: ``os.access`` says /proc is writable (for root), so the sweep computed every
    point and then died with a traceback storing the first; the folder is now tried, as ``--out`` is."""
    r = run_tool(["sim.sweep", "--model", "segformer_b0", "--size", "32x32", "--configs", "tiny", "--cache", "/proc/x",
                  "--quiet", "--no-plot", "--out", "sw"], tmp_path)
    assert_refused(r, "cannot write the cache folder /proc/x")
    assert r.stdout == "" and not any(tmp_path.iterdir())


@pytest.mark.parametrize("output, needles", [
    ("x.txt", ["--output x.txt", "writes a .json file"]),
    ("newdir2/", ["--output newdir2/", "a folder", "newdir2/report.json"]),
    (".", ["--output .", "a folder"]),
    ("binary.csv/r.json", ["cannot write --output binary.csv/r.json", "binary.csv is a file, not a folder"]),
    pytest.param("/proc/x.json", ["cannot write --output /proc/x.json"],
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc"))])
def test_an_accuracy_output_is_checked_before_any_work(tmp_path, output, needles):
    """``--output /proc/x.json`` computed and died with a traceback; ``x.txt`` held JSON; ``newdir2/``
    wrote a file named newdir2.  One .json file, in a folder that can be written, or one line."""
    (tmp_path / "binary.csv").write_bytes(FILES["binary.csv"])
    before = snapshot(tmp_path)
    r = run_tool(["sim.accuracy", "--model", "segformer_b0", "--size", "32x32", "--output", output], tmp_path)
    assert_refused(r, *needles)
    assert r.stdout == "" and snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, needles", [
    (["sim.run", "--model", "segformer_b0", "--config", "tiny", "--size", "٣٢x32"], ["bad --size '٣٢x32'", "0-9"]),
    (["mapper.flops", "--model", "segformer_b0", "--size", "３２x32"], ["bad --size '３２x32'", "0-9"]),
    (["sim.accuracy", "--model", "segformer_b0", "--size", "٣٢x32"], ["'٣٢x32'", "0-9"]),
    (["sim.run", "--model", "segformer_b0", "--check", "--seed", "٣"], ["bad seed '٣'"]),
    (["sim.run", "--model", "segformer_b0", "--dram-latency", "٣"], ["'٣' is not a whole number"]),
    (["sim.sweep", "--model", "segformer_b0", "--workers", "٣"], ["bad --workers '٣'"]),
    # and Python's 1_000 (helper-133)
    (["sim.run", "--model", "segformer_b0", "--dram-latency", "1_0"], ["'1_0' is not a whole number", "0-9"]),
    (["sim.sweep", "--model", "segformer_b0", "--grid", "num_pe=٣"], ["bad --grid value '٣' for num_pe", "0-9"]),
    (["sim.sweep", "--model", "segformer_b0", "--grid", "num_pe=1_6"], ["bad --grid value '1_6'", "0-9"]),
    (["hw.rtl.export", "--set", "num_pe=٣"], ["--set 'num_pe=٣'", "digits 0-9"]),
    (["hw.rtl.export", "--set", "num_pe=0x1_0"], ["--set 'num_pe=0x1_0'", "digits 0-9"]),
    (["sim.accuracy", "--model", "segformer_b0", "--images", "٣"], ["--images", "'٣' is not a whole number"]),
    (["sim.accuracy", "--model", "segformer_b0", "--percentile", "9_9"], ["--percentile", "'9_9' is not a number"])])
def test_digits_of_other_scripts_are_refused(tmp_path, argv, needles):
    """``--size ٣٢x32`` ran at 32x32: Python's int() reads the digits of every script (and isdigit()
    takes '²'); the tools read the digits 0-9 only."""
    assert_refused(run_tool([*argv, "--out", "o"], tmp_path), *needles)
    assert not any(tmp_path.iterdir())


# ---- input files that are no regular files (QA round 63) ---------------------------------------------

FIFO = "FIFO"           # made a named pipe by the test, under the name the tool reads
INFER = ["sim.infer", "--model", "segformer_b0", "--config", "tiny"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("argv, made, needles", [
    (["sim.run", "--model", "segformer_b0", "--config", "in.toml"], "in.toml", ["in.toml: cannot read the accelerator file"]),
    (["sim.sweep", "--model", "segformer_b0", "--configs", "tiny,in.toml"], "in.toml", ["in.toml: cannot read"]),
    (["mapper.flops", "--model", "in.onnx"], "in.onnx", ["in.onnx: cannot read the ONNX file"]),
    ([*INFER, "--image", "in.png"], "in.png", ["in.png: cannot read the image", "give a PNG"]),
    ([*INFER, "--image", "in.npy"], "in.npy", ["in.npy: cannot read the image", ".npy array"]),
    (["sim.rdd", "--model", "segformer_b2", "--budgets", "in.csv"], "in.csv", ["in.csv: cannot read the CSV file"]),
    (["sim.paths", "--model", "segformer_b2", "--accuracy", "in.csv"], "in.csv", ["in.csv: cannot read the CSV"]),
    (["sim.replay", "in.bin"], "in.bin", ["in.bin: cannot read the instruction stream"]),
    (["sim.replay", "partial.bin"], "partial.json", ["partial.json: cannot read the configuration file"])])
def test_a_named_pipe_as_an_input_file_is_refused_not_waited_on(tmp_path, argv, made, needles):
    """Opening a named pipe waits for a writer: the tools hung until killed.  Each input file is
    opened without waiting and read only when it is a regular file (``hw.cli.open_input``)."""
    (tmp_path / "partial.bin").write_bytes(FILES["partial.bin"])
    os.mkfifo(tmp_path / made)
    before = snapshot(tmp_path)
    r = subprocess.run([sys.executable, "-m", *argv, "--out", "o"] if argv[0] != "sim.replay" else
                       [sys.executable, "-m", *argv], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60)
    assert_refused(r, *needles, "a named pipe (FIFO), not a regular file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, needles", [
    (["sim.run", "--model", "segformer_b0", "--config", "/dev/zero"], ["/dev/zero", "a character device"]),
    (["sim.replay", "/dev/zero"], ["/dev/zero: cannot read the instruction stream", "a character device"]),
    (["sim.run", "--model", "folder.onnx", "--config", "tiny"], ["folder.onnx: cannot read the ONNX file", "a folder"]),
    (["sim.rdd", "--model", "segformer_b2", "--budgets", "folder.onnx"], ["folder.onnx: cannot read the CSV", "a folder"]),
    (["sim.run", "--model", "segformer_b0", "--config", "folder.toml"], ["folder.toml: cannot read", "a folder"])])
def test_a_device_or_folder_as_an_input_file_is_refused(tmp_path, argv, needles):
    """``/dev/zero`` read until memory ran out; a folder gave "Is a directory" or "does not exist"."""
    if "/dev/zero" in argv and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "folder.toml").mkdir()
    before = snapshot(tmp_path)
    assert_refused(run_tool(argv, tmp_path), *needles, "not a regular file")
    assert snapshot(tmp_path) == before


def test_input_file_names_what_stands_there(tmp_path):
    from hw.cli import UsageError, not_a_file, open_input, read_input

    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "p")
    assert not_a_file(tmp_path / "f") is None and not_a_file(tmp_path / "link") is None
    assert not_a_file(tmp_path / "p") == "a named pipe (FIFO), not a regular file"
    assert not_a_file(tmp_path) == "a folder, not a regular file"
    assert not_a_file(tmp_path / "gone") == os.strerror(2)
    assert not_a_file(tmp_path / "f" / "below") == os.strerror(20)      # a file where a folder must be
    assert not_a_file("a\0b") == "not a valid file name"
    assert read_input(tmp_path / "link", "thing") == b"x"
    with pytest.raises(ValueError, match=r"/p: cannot read the thing: a named pipe \(FIFO\), not a regular file; hint"):
        open_input(tmp_path / "p", "thing", ValueError, "hint")
    with pytest.raises(UsageError, match="cannot read the thing: No such file"):
        read_input(tmp_path / "gone", "thing")
    with pytest.raises(UsageError, match="cannot read the thing: a folder, not a regular file"):
        read_input(tmp_path, "thing")
    with pytest.raises(UsageError, match="cannot read the thing: not a valid file name"):
        read_input("a\0b", "thing")


def _read_config(path):
    from hw.config_file import load_config
    return load_config(str(path))


def _read_image(path):
    from sim.infer import read_image
    return read_image(path)


def _read_onnx(path):
    from mapper.onnx_import import load_onnx
    return load_onnx(path)


def _read_sweep_cache(path):
    from sim.sweep import _load_cached
    return _load_cached(path, {})


def _read_external_data(path):
    """A model whose first weight is stored in ``path`` (ONNX external data), beside it."""
    from onnx.external_data_helper import set_external_data
    from onnx_graphs import cnn
    from mapper.onnx_import import load_onnx

    proto = cnn()[0]
    weight = proto.graph.initializer[0]
    set_external_data(weight, path.name, 0, len(weight.raw_data))
    weight.ClearField("raw_data")
    (path.parent / "model.onnx").write_bytes(proto.SerializeToString())
    return load_onnx(path.parent / "model.onnx")


def _replace_named_output(path):
    from hw.cli import refuse_replacing
    return refuse_replacing(path, path, b"y")


def _write_config_file(path):
    import contextlib
    import io
    from hw.config_file import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["--config", "E", "--out", str(path)])
    if status:
        raise RuntimeError(err.getvalue())


def _export_over_earlier(path):
    from hw.rtl.export import export_to_directory
    return export_to_directory(get_config("tiny"), path.parent, "pe_tile")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("read, name", [(_read_config, "in.toml"), (_read_image, "in.png"), (_read_image, "in.npy"),
                                        (_read_onnx, "in.onnx"), (_read_sweep_cache, "point.json"),
                                        (_read_external_data, "weights.bin"), (_replace_named_output, "out.onnx"),
                                        (_write_config_file, "e.toml"), (_export_over_earlier, "files.f")])
def test_a_file_swapped_for_a_named_pipe_after_the_check_is_not_waited_on(tmp_path, monkeypatch, read, name):
    """The check by name (os.stat) and the open were two steps: a file swapped for a named pipe
    between them was opened, and the reader waited forever.  Here every look at the name by
    os.stat still sees the regular file that stood there; only an open sees the pipe.  So for
    input files, an ONNX model's external data (onnx's loader stats, then opens), and an existing
    output a tool reads before replacing it (a named --out, make config's file, an export's files.f)."""
    import threading

    before, fifo = tmp_path / "before", tmp_path / name
    before.write_bytes(b"x")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: real_stat(before if str(p) == str(fifo) else p, *a, **k))
    outcome = []

    def attempt():
        try:
            outcome.append(read(fifo))
        except Exception as e:              # each reader's own one-line error
            outcome.append(e)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():                   # release the reader: a writer that closes at once is its end of file
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(20)
        pytest.fail(f"{read.__name__} waited on the named pipe")
    assert outcome == [None] if read is _read_sweep_cache else \
        "a named pipe (FIFO), not a regular file" in str(outcome[0]), outcome


@pytest.mark.parametrize("row, needles", [("٣,3", ["frame '٣'", "0-9"]), ("1_0,3", ["frame '1_0'", "0-9"]),
                                          ("1,٣", ["time_ms '٣'", "0-9"]), ("1,1_0", ["time_ms '1_0'", "0-9"])])
def test_a_budget_trace_reads_the_digits_0_to_9_only(tmp_path, row, needles):
    """A frame ``٣`` was frame 3 and ``1_0`` frame 10 (Python's int() and float() take both)."""
    (tmp_path / "t.csv").write_text(f"frame,time_ms\n{row}\n")
    assert_refused(run_tool(["sim.rdd", "--model", "segformer_b2", "--budgets", "t.csv", "--out", "o"], tmp_path),
                   "t.csv:2", *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_ascii_numbers():
    from hw.cli import ascii_float, ascii_int

    assert [ascii_int(t) for t in ("7", " -3 ", "+12", "007")] == [7, -3, 12, 7]
    assert [ascii_int(t, prefixed=True) for t in ("0x1f", "0o17", "0b101", "42")] == [31, 15, 5, 42]
    assert [ascii_float(t) for t in ("2.5", ".5", "5.", "1e-3", "-2E+2", "7")] == [2.5, 0.5, 5.0, 1e-3, -200.0, 7.0]
    assert ascii_float("inf") == float("inf") and ascii_float("nan") != ascii_float("nan")
    for bad in ("٣", "３", "1_000", "²", "", "0x10", "1.5", "1e3"):
        with pytest.raises(ValueError):
            ascii_int(bad)
    for bad in ("٣", "1_000.5", "1e", ".", "0x10", "infinit", "1,5"):
        with pytest.raises(ValueError):
            ascii_float(bad)


LONG = "x" * 300            # longer than a file name may be (255 bytes on Linux's file systems)


@pytest.mark.parametrize("argv, said", [
    (["sim.run", "--model", "segformer_b0", "--config", "tiny", "--out", f"a/{LONG}/b"], f"the output folder a/{LONG}/b"),
    (["mapper.flops", "--model", "segformer_b0", "--out", f"{LONG}.json"], f"--out {LONG}.json"),
    (["sim.accuracy", "--model", "segformer_b0", "--output", f"{LONG}.json"], f"--output {LONG}.json"),
    (["sim.sweep", "--model", "segformer_b0", "--configs", "tiny", "--cache", f"{LONG}/c"], f"the cache folder {LONG}/c")])
def test_an_output_name_too_long_is_refused_before_any_work(tmp_path, argv, said):
    """``Path.exists()`` raises for such a name (Python 3.11): a traceback, after the work for
    sim.accuracy, and sim.run had made the folder ``a``."""
    r = run_tool(argv, tmp_path)
    assert_refused(r, f"cannot write {said}: the name xxxx", "bytes long; the file system takes at most")
    assert not any(tmp_path.iterdir())


def test_an_output_name_near_the_limit_is_written(tmp_path):
    """The temporary name beside the output (``.<name>.<random>.tmp``) made a 245-byte name, which the
    file system takes, fail with "File name too long"."""
    name = "y" * 245 + ".json"
    r = run_tool(["mapper.flops", "--model", "segformer_b0", "--size", "64x64", "--out", name], tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_in_an_output_folder_is_not_read(tmp_path):
    """An output folder's run mark (``.run``) was read to tell whose folder it is: a named pipe in
    its place made the tool wait forever."""
    (tmp_path / "o").mkdir()
    os.mkfifo(tmp_path / "o" / ".run")
    r = subprocess.run([sys.executable, "-m", "mapper.flops", "--model", "segformer_b0", "--out", "o"], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr         # a folder of no run: the tool's file is added
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".run", "segformer_b0.json"]


@pytest.mark.parametrize("argv, needles", [
    (["hw.rtl.bench", "--output", "adir"], ["--output adir: a folder", "one .json file"]),
    (["hw.rtl.bench", "--output", "adir/v.txt"], ["--output adir/v.txt", "writes a .json file"]),
    (["sim.bench", "--out", "afile/x"], ["cannot write --out afile/x", "afile is a file, not a folder"]),
    (["sim.bench", "--repeat", "٣"], ["--repeat", "'٣' is not a whole number"])])
def test_the_benches_check_their_outputs_before_any_work(tmp_path, argv, needles):
    """hw.rtl.bench wrote its JSON after the first configuration's export (minutes): a folder as
    --output was a traceback then; sim.bench's --out likewise after every benchmark."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_bytes(b"")
    before = snapshot(tmp_path)
    assert_refused(run_tool(argv, tmp_path), *needles)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, made, said", [
    (["mapper.flops", "--model", "segformer_b0", "--out", "q"], "q/segformer_b0.json", "a folder"),
    (["mapper.flops", "--model", "segformer_b0", "--out", "p.json"], "p.json", "a named pipe (FIFO)"),
    (["hw.config_file", "--config", "E", "--out", "p.toml"], "p.toml", "a named pipe (FIFO)")])
def test_an_output_file_where_something_else_stands_is_refused(tmp_path, argv, made, said):
    """A folder where the tool's file goes was a traceback (os.replace onto a folder) after the work;
    a named pipe named as the file was silently replaced by it."""
    (tmp_path / "q").mkdir()
    if made.endswith("/segformer_b0.json"):
        (tmp_path / made).mkdir()
    elif hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / made)
    else:
        pytest.skip("needs named pipes")
    r = run_tool(argv, tmp_path)
    assert_refused(r, f"cannot write {made}: it exists and is {said}, not a regular file", "never replaced")
    assert (tmp_path / made).exists() and not (tmp_path / made).is_file()


def _external_model(folder: Path, **entry: str) -> Path:
    """cnn() with every weight in ``m.bin`` beside ``m.onnx``; ``entry`` overrides the first weight's
    external_data keys (location, offset, length)."""
    import onnx
    from onnx_graphs import cnn

    onnx.save_model(cnn()[0], str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.bin", size_threshold=0)
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    first = proto.graph.initializer[0]
    for e in first.external_data:
        e.value = entry.pop(e.key, e.value)
    for key, value in entry.items():
        first.external_data.add(key=key, value=value)
    (folder / "m.onnx").write_bytes(proto.SerializeToString())
    return folder / "m.onnx"


@pytest.mark.parametrize("entry, needles", [
    ({"offset": "٣"}, ["m.onnx: tensor 'conv1.weight'", "offset '٣'", "digits 0-9"]),       # int() read it as 3
    ({"offset": "abc"}, ["m.onnx: tensor 'conv1.weight'", "offset 'abc'"]),        # was "invalid literal for int()"
    ({"offset": "-5"}, ["m.onnx: tensor 'conv1.weight'", "offset '-5'", ">= 0"]),  # was onnx's line, naming no file
    ({"length": "1e9"}, ["m.onnx: tensor 'conv1.weight'", "length '1e9'"]),
    ({"offset": "99999999999"}, ["m.onnx: tensor 'conv1.weight' needs bytes 99999999999 to", "of m.bin, which holds"]),
    ({"location": ""}, ["m.onnx: tensor 'conv1.weight'", "names no file"]),
    ({"location": "/etc/hostname"}, ["/etc/hostname: cannot read the external data of", "an absolute path"]),
    ({"location": "../m.bin"}, ["m.bin: cannot read the external data of", "outside", "inside the model's folder"]),
    ({"location": "link.bin"}, ["link.bin: cannot read the external data", "a symbolic link, which is not followed"]),
    ({"location": "gone.bin"}, ["gone.bin: cannot read the external data", "No such file"])])
def test_bad_external_data_is_refused_in_one_line_naming_the_file(tmp_path, entry, needles):
    """An ONNX model's external data (its weights in a file beside it) is read by the project, as every
    input file is (onnx's loader waits on a named pipe): each bad entry one line naming the model."""
    (tmp_path / "model").mkdir()
    path = _external_model(tmp_path / "model", **entry)
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "model" / "m.bin")
    before = snapshot(tmp_path)
    assert_refused(run_tool(["mapper.flops", "--model", str(path), "--out", "o"], tmp_path), *needles)
    assert snapshot(tmp_path) == before


def test_a_short_external_data_file_is_refused_naming_the_tensor(tmp_path):
    path = _external_model(tmp_path)
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[:len(data) // 2])
    assert_refused(run_tool(["mapper.flops", "--model", "m.onnx", "--out", "o"], tmp_path),
                   "m.onnx: tensor", f"of m.bin, which holds {len(data) // 2} bytes")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("made, said", [("fifo", "fifo is a named pipe (FIFO), not a folder"),
                                        ("loop", "loop is a symbolic link that leads to no folder (Too many levels"),
                                        ("dangling", "dangling is a symbolic link that leads to no folder (No such")])
def test_an_output_folder_that_is_no_folder_is_named_as_what_it_is(tmp_path, made, said):
    """``--out`` a named pipe said "fifo is a file", a link in a loop or to nothing "File exists"."""
    if made == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("needs named pipes")
        os.mkfifo(tmp_path / made)
    else:
        (tmp_path / made).symlink_to(made if made == "loop" else "nowhere")
    before = snapshot(tmp_path)
    assert_refused(run_tool(["mapper.flops", "--model", "segformer_b0", "--out", made], tmp_path),
                   f"cannot write {made}/segformer_b0.json", said)
    assert snapshot(tmp_path) == before
