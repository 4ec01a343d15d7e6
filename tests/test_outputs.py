"""Result folders: named by everything that changes them, written as a whole, checked before any work."""

from __future__ import annotations

import re

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import sim.paths as paths
import sim.rdd as rdd
import sim.run as run
import sim.sweep as sweep
from hw.cli import StagedDir
from hw.config import PRESETS, get_config
from mapper.workloads import build_model
from sim.outputs import config_tag
from sim.progress import Progress, layer_weights
from sim.simulator import IDEAL_MEMORY

#: E maps SegFormer-B0 at 64x64 in 6 s from a cold cache, small in 40.
TINY_RUN = ["--model", "segformer_b0", "--size", "32x32", "--config", "E", "--no-plots", "--quiet"]


def test_config_tag_names_every_override():
    e = get_config("E")
    assert config_tag(e) == "E"
    assert config_tag(get_config("E", dram_bytes_per_cycle=384, dram_latency=200)) == "E_dram384B_lat200"
    assert config_tag(get_config("E", clock_ghz=1.5, global_buf_bytes=512 * 1024)) == "E_gb512KiB_1.5GHz"
    # the values of the ideal-memory mode, given as overrides: named as they are, not as the mode
    assert config_tag(get_config("E", **IDEAL_MEMORY)) == "E_dram65536B_lat2_gbbus65536B"
    assert config_tag(get_config("E", dram_latency=100)) == "E"          # the preset's own value
    mine = e.replace(name="mine")
    assert config_tag(mine).startswith("mine-") and config_tag(mine) != config_tag(mine.replace(k0=16, c0=16))
    variations = [get_config(n, **o) for n in ("E", "G") for o in ({}, {"clock_ghz": 1.0}, {"clock_ghz": 1.0000001},
                                                                   {"dram_latency": 50}, dict(IDEAL_MEMORY),
                                                                   dict(IDEAL_MEMORY, dram_latency=50))]
    assert len({config_tag(c) for c in variations}) == len(variations)
    # a file that only calls itself E (based on small, 8 fields differ): a short name and a hash,
    # not 8 overrides that push the run's size and seed out of its folder name
    small_e = get_config("small").replace(name="E")
    assert re.fullmatch(r"E-[0-9a-f]{8}", config_tag(small_e)), config_tag(small_e)


def test_run_dir_names_model_size_and_modes():
    b2 = build_model("segformer_b2")
    e = get_config("E")
    assert run.run_dir(b2, e, False) == "segformer_b2_E"
    assert run.run_dir(build_model("segformer_b2", size=(256, 256)), e, True) == "segformer_b2_E_256x256"
    assert run.run_dir(build_model("segformer_b2", "B2_c"), e, False, ideal_memory=True,
                       mac_only=True) == "segformer_b2_E_B2_c_ideal_memory_mac_only"
    # the mode (a real memory's mappings timed with IDEAL_MEMORY) and a configuration of those values
    # (mapped for them) give other results, so other folders
    assert run.run_dir(b2, e, False, ideal_memory=True) != run.run_dir(b2, get_config("E", **IDEAL_MEMORY), False)
    assert run.run_dir(b2, get_config("E", dram_bytes_per_cycle=384), False, fuse=False) == \
        "segformer_b2_E_dram384B_no_fusion"
    # a configuration whose name holds "_" keeps it whole, before the size
    b0 = build_model("segformer_b0", size=(32, 32))
    assert run.run_dir(b0, get_config("e_small", dram_bytes_per_cycle=64), True) == \
        "segformer_b0_e_small_32x32_dram64B"


def test_runs_that_differ_leave_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run.main(TINY_RUN) == 0
    assert run.main([*TINY_RUN, "--clock-ghz", "2"]) == 0          # (the clock maps no layer differently)
    assert run.main([*TINY_RUN[:3], "64x64", *TINY_RUN[4:]]) == 0
    names = sorted(p.name for p in (tmp_path / "build" / "sim").iterdir())
    assert names == ["segformer_b0_E_32x32", "segformer_b0_E_32x32_2.0GHz", "segformer_b0_E_64x64"]
    docs = [json.loads((tmp_path / "build" / "sim" / n / "report.json").read_text()) for n in names]
    assert docs[1]["config_params"]["clock_ghz"] == 2 and docs[0]["config_params"]["clock_ghz"] == 1.25
    assert docs[1]["total_cycles"] == docs[0]["total_cycles"] and docs[1]["time_ms"] < docs[0]["time_ms"]


def test_a_rerun_replaces_its_folder_as_a_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    assert run.main([*TINY_RUN, "--out", str(out), "--trace"]) == 0
    assert (out / "trace.json").exists()
    (out / "report.json").chmod(0o444)                    # an unwritable file does not matter: the folder goes
    assert run.main([*TINY_RUN, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".run", "layers.csv", "report.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_another_runs_folder_is_never_replaced(tmp_path, monkeypatch, capsys):
    """OUT= naming the folder of another run (here another configuration) is refused, one line, the
    earlier results left as they were; the same run again replaces it."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    assert run.main([*TINY_RUN, "--out", str(out)]) == 0
    report = (out / "report.json").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(run, "simulate", _no_work)
    other = [*TINY_RUN[:-3], "tiny", *TINY_RUN[-2:]]
    assert run.main([*other, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segformer_b0_E_32x32" in err and "segformer_b0_tiny_32x32" in err
    assert (out / "report.json").read_bytes() == report
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert run.main([*TINY_RUN, "--out", str(out)]) == 0


def test_a_failed_check_exits_1_in_one_line_and_keeps_the_earlier_folder(tmp_path, monkeypatch, capsys):
    """--check that disagrees with the golden model: status 1 (not a usage error), one line naming
    the seed, and the earlier run's folder as it was (nothing of the failed run written)."""
    import sim.functional
    import sim.inference
    out = tmp_path / "o"
    argv = [*TINY_RUN, "--check", "--seed", "5", "--out", str(out)]
    monkeypatch.setattr(sim.inference, "check_network", lambda *a, **k: {"tensors": 1, "elements": 1})
    assert run.main(argv) == 0                                # (the check's summary, not its minute of work)
    report = (out / "report.json").read_bytes()
    capsys.readouterr()

    def disagree(*args, **kwargs):
        raise sim.functional.CheckError("tensor x:\n  3 elements differ")
    monkeypatch.setattr(sim.inference, "check_network", disagree)
    assert run.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "functional check FAILED (seed 5): tensor x: 3 elements differ" in err
    assert (out / "report.json").read_bytes() == report
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_a_folder_with_foreign_files_is_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    monkeypatch.setattr(run, "simulate", _no_work)
    assert run.main([*TINY_RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "thesis.tex" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and (out / "thesis.tex").read_text() == "precious"


def test_a_folder_without_the_mark_of_a_run_is_not_replaced(tmp_path):
    """A folder holding a file named like a tool's own but no ``.run`` (the user's own report.json) was
    replaced, "replacing the earlier run of the same name" of which there was none."""
    from hw.cli import OutputError
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.json").write_text("precious")
    with pytest.raises(OutputError, match=r"holds files \(report.json\) but no \.run naming the run"):
        StagedDir(out, ("report.json",), run="segformer_b2_E")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and (out / "report.json").read_text() == "precious"


def test_failure_inside_leaves_the_previous_folder(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with StagedDir(out, ("report.json",)) as stage:
            (stage.path / "report.json").write_text("new")
            raise KeyboardInterrupt
    assert (out / "report.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["o"]
    with StagedDir(out, ("report.json",)) as stage:
        (stage.path / "report.json").write_text("new")
        stage.commit()
    assert (out / "report.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["o"]


def test_an_interrupt_before_the_with_leaves_no_staging(tmp_path, capsys):
    """A kill between a staging folder's making and the ``with`` that removes it (a loaded CI
    machine's SIGTERM once landed there): run_main removes it all the same."""
    from hw.cli import run_main

    def main():
        StagedDir(tmp_path / "o", ("report.json",))
        raise KeyboardInterrupt

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}   # run_main installs its own
    try:
        with pytest.raises(SystemExit) as ended:
            run_main(main)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert ended.value.code == 130 and list(tmp_path.iterdir()) == [] and not StagedDir.open
    assert capsys.readouterr().err == "interrupted; no result written\n"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupt_lost_on_the_way_is_raised_again(sig):
    """A KeyboardInterrupt raised inside an extension module's import can vanish (numpy.random's lazy
    import did: the killed run went on to the end, CI's timeout): run_main raises it again."""
    tool = f"""
import os, signal, time
from hw.cli import run_main
def main():
    try:
        os.kill(os.getpid(), signal.{sig})
        time.sleep(30)
    except KeyboardInterrupt:
        pass                    # lost, as in that import
    time.sleep(30)
    return 0
run_main(main)
"""
    env = dict(os.environ, PYTHONPATH=str(Path(run.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", tool], env=env, capture_output=True, text=True, timeout=50)
    assert (done.returncode, done.stderr) == (130, "interrupted; no result written\n")


def _tool(script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(run.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=50)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupt_after_the_result_is_written_ends_with_its_status(sig):
    """A kill while the process exits (main returned, its result written): the run's status, no
    'no result written', no KeyboardInterrupt traceback from an exit handler."""
    done = _tool(f"""
import atexit, os, signal, time
from hw.cli import run_main
atexit.register(lambda: (os.kill(os.getpid(), signal.{sig}), time.sleep(30)))
def main():
    print("wrote the result")
    return 0
run_main(main)
""")
    assert (done.returncode, done.stdout, done.stderr) == (0, "wrote the result\n", "")


def test_a_second_interrupt_does_not_stop_the_clean_up(tmp_path):
    """Ctrl-C pressed again (or a kill after it) while the staging folders are removed: they all go."""
    done = _tool(f"""
import os, signal
from hw.cli import StagedDir, run_main
discard = StagedDir.discard
def discard_interrupted(stage):
    os.kill(os.getpid(), signal.SIGTERM)
    discard(stage)
StagedDir.discard = discard_interrupted
def main():
    StagedDir({str(tmp_path / "a")!r}, ("x",))
    StagedDir({str(tmp_path / "b")!r}, ("x",))
    raise KeyboardInterrupt
run_main(main)
""")
    assert (done.returncode, done.stderr) == (130, "interrupted; no result written\n")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_lost_in_a_finaliser_is_raised_again_without_a_word():
    """A kill landing inside a ``__del__`` (amaranth's MustUse, in the kill campaign): Python printed
    "Exception ignored in" with the KeyboardInterrupt's traceback before run_main raised it again."""
    done = _tool("""
import os, signal, time
from hw.cli import run_main
class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
def main():
    Finalised()
    time.sleep(30)
    return 0
run_main(main)
""")
    assert (done.returncode, done.stderr) == (130, "interrupted; no result written\n")


def test_what_an_interrupted_run_leaves_does_not_warn_at_exit():
    """An export interrupted while it builds the design: amaranth warned at exit of every component never
    elaborated ("created but never used", 69 lines after the interrupted line)."""
    done = _tool("""
import warnings
from hw.cli import run_main
class Unused:
    def __del__(self):
        warnings.warn("created but never used")
kept = []
def main():
    kept.append(Unused())
    raise KeyboardInterrupt
run_main(main)
""")
    assert (done.returncode, done.stderr) == (130, "interrupted; no result written\n")


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="a process's children are found in Linux's /proc")
def test_an_interrupt_stops_the_subprocesses_left_running():
    """A library's subprocess an interrupt leaves waiting (amaranth's Yosys: ``Popen.communicate`` waits a
    quarter of a second, then leaves it) is stopped, not left running after the tool."""
    done = _tool("""
import subprocess, sys
from hw.cli import run_main
def main():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
    raise KeyboardInterrupt
run_main(main)
""")
    assert (done.returncode, done.stderr) == (130, "interrupted; no result written\n")
    deadline = time.monotonic() + 10
    while _running(int(done.stdout)) and time.monotonic() < deadline:
        time.sleep(0.05)        # reparented, then ended (a zombie until its new parent reaps it)
    assert not _running(int(done.stdout))


#: A stand-in for numpy (amaranth) that says it is being imported, then takes its time: a tool
#: interrupted there is interrupted while it imports, before its ``run_main``.
_SLOW_IMPORT = "import os, time\nos.write(1, b'importing\\n')\ntime.sleep(30)\n"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("tool", ["sim.run", "mapper.flops", "hw.rtl.export"])
def test_an_interrupt_while_importing_is_one_line(tmp_path, sig, tool):
    """Ctrl-C or a kill before the tool's ``run_main`` (numpy, amaranth: up to a second of imports): the
    same line and status as after it, no traceback (hw/tool_start.py)."""
    assert _interrupted_while_importing(tmp_path, sig, ["-m", tool]) == (130, "", "interrupted; no result written\n")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("script", ["bench.py", "profile_model.py"])
def test_an_interrupt_while_a_cosim_script_imports_is_one_line(tmp_path, sig, script):
    """The scripts of tests/cosim import ``hw`` before numpy: bench.py and profile_model.py imported
    numpy first (through cosim.accel_cases), where a kill ended them without a word, Ctrl-C with a
    traceback."""
    argv = [str(Path(run.__file__).resolve().parents[1] / "tests" / "cosim" / script)]
    assert _interrupted_while_importing(tmp_path, sig, argv) == (130, "", "interrupted; no result written\n")


def _interrupted_while_importing(tmp_path, sig: str, argv: list[str]) -> tuple[int, str, str]:
    """The status, stdout and stderr of ``python argv --help`` sent ``sig`` while it imports numpy."""
    for slow in ("numpy", "amaranth"):
        (tmp_path / f"{slow}.py").write_text(_SLOW_IMPORT)
    root = Path(run.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(root)]))
    tool = subprocess.Popen([sys.executable, *argv, "--help"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert tool.stdout.readline() == "importing\n"
        tool.send_signal(getattr(signal, sig))
        out, err = tool.communicate(timeout=20)
    finally:
        tool.kill()
    return tool.returncode, out, err


def test_a_project_script_is_a_tool(monkeypatch):
    """``python tests/cosim/campaign.py`` (make fuzz) is covered from its first import of ``hw``; a script
    of the virtual environment (``.venv/bin/pytest``) or ``python -c`` is not."""
    from hw import tool_start

    root = Path(run.__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["script"])
    for path, tool in ((root / "tests" / "cosim" / "campaign.py", True), (Path(sys.prefix) / "bin" / "pytest", False),
                       (None, False)):
        main = types.ModuleType("__main__")
        if path:
            main.__file__ = str(path)
        monkeypatch.setitem(sys.modules, "__main__", main)
        assert tool_start._tool_starting() is tool, path


def test_a_library_user_keeps_its_signal_handlers():
    """Importing the packages (pytest, a notebook, ``python -c``) installs no handler: only a tool does.
    The handlers are compared with the interpreter's own before the imports (a job started in the
    background by a shell without job control starts with SIGINT ignored, not Python's default)."""
    probe = "import signal; before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]; " \
            "import sim, mapper, hw.cli; " \
            "print([signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == before)"
    env = dict(os.environ, PYTHONPATH=str(Path(run.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr


def _no_work(*args, **kwargs):
    raise AssertionError("simulated although the output cannot be written")


@pytest.mark.parametrize("module, attr, argv", [
    (run, "simulate", TINY_RUN),
    (paths, "explore", ["--model", "segformer_b0", "--config", "small", "--paths", "full"]),
    (rdd, "simulate_paths", ["--model", "segformer_b2", "--config", "E"]),
    (sweep, "run_sweep", ["--model", "segformer_b0", "--size", "32x32", "--configs", "small"]),
])
def test_unwritable_output_is_refused_before_any_simulation(tmp_path, monkeypatch, capsys, module, attr, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, attr, _no_work)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert module.main([*argv, "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(blocker) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_rdd_and_paths_folders_name_their_input_files(tmp_path):
    budgets = tmp_path / "peak.csv"
    budgets.write_text("frame,time_ms\n0,3\n")
    e = get_config("E")
    ns = argparse.Namespace(out=None, model=["segformer_b2"], budgets=str(rdd.EXAMPLE_TRACE),
                            accuracy=str(paths.DEFAULT_ACCURACY))
    assert rdd._run_name(ns, e) == "segformer_b2_E"
    ns.budgets = str(budgets)
    first = rdd._run_name(ns, e)
    assert first.startswith("segformer_b2_E_budgets-peak-")
    budgets.write_text("frame,time_ms\n0,4\n")                # same name, other content: another folder
    assert rdd._run_name(ns, e) != first
    ns = argparse.Namespace(out=None, model=["segformer_b2"], paths="full;B2_c", accuracy=str(paths.DEFAULT_ACCURACY),
                            mac_only=True, ideal_memory=True)
    assert paths._run_name(ns, get_config("E"), paths.parse_paths(ns.model, ns.paths)).startswith(
        "segformer_b2_E_ideal_memory_paths-")


def test_sweep_folder_names_a_subset_of_configurations():
    b2 = build_model("segformer_b2")
    assert sweep.out_dir_name(b2, False, [PRESETS[n] for n in "ABCDEFGHIJKLM"]) == "segformer_b2"
    assert sweep.out_dir_name(b2, False, [PRESETS[n] for n in "AEG"]) == "segformer_b2_cfgs-A-E-G"


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_prints_lines_when_not_a_terminal_and_waits_before_estimating(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("sim.progress.time.monotonic", clock)
    stream = io.StringIO()
    bar = Progress("net on E", 100, stream=stream, period=10.0)
    clock.t = 3.0
    bar.update(1)                    # the first step starts after 3 s of set-up, which is no step's
    clock.t = 11.0
    bar.update(4)                    # 5 % of the work: no estimate yet
    clock.t = 23.0
    bar.update(45)                   # half the work in the 20 s since the first step: about 20 s left
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["net on E: 5/100 layers, 11 s elapsed, estimating the time left",
                     "net on E: 50/100 layers, 23 s elapsed, about 20 s left"]


def test_progress_keeps_printing_while_a_long_step_runs():
    """One layer of a minute (a large layer's functional check) does not leave the log silent: the
    line comes again each period with how long the step under way has run, and stops at close."""
    stream = io.StringIO()
    bar = Progress("net on E", 3, stream=stream, period=0.05)
    bar.set_postfix_str("stage0.fc1")
    bar.update(1)
    time.sleep(0.5)                  # the second layer runs long
    bar.close()
    after = stream.getvalue()
    time.sleep(0.2)
    assert stream.getvalue() == after, "a line after close"
    beats = [line for line in after.splitlines() if "layer 2 running for" in line]
    assert beats and all(line.startswith("net on E: 1/3 layers") and line.endswith("(after stage0.fc1)")
                         for line in beats), after


class _ScriptedStop:
    """A heartbeat's stop event on ``clock``: each wait advances the clock, running the steps
    ``script`` schedules (time, call) on the way, and the run stops at ``end``."""

    def __init__(self, clock: _Clock, script: list, end: float):
        self.clock, self.script, self.end = clock, script, end

    def wait(self, timeout: float) -> bool:
        target = self.clock.t + timeout
        while self.script and self.script[0][0] <= min(target, self.end):
            self.clock.t, call = self.script.pop(0)
            call()
        self.clock.t = min(target, self.end)
        return target > self.end

    def is_set(self) -> bool:
        return False


def test_progress_prints_a_line_every_period_also_when_a_step_printed_just_before_a_beat(monkeypatch):
    """make run's functional run went from a line at 30 s to one at 47 s (a period of 10 s): its
    heartbeat woke on a fixed grid of periods from the first step, found a step's line a moment old
    and slept a whole period more.  It wakes a period after the last line now, whoever printed it."""
    clock = _Clock()
    monkeypatch.setattr("sim.progress.time.monotonic", clock)
    stream = io.StringIO()
    times = []
    stream.write = lambda text: times.append(clock.t)
    bar = Progress("net on E", 100, stream=stream, period=10.0)
    bar._heartbeat = threading.Thread(target=lambda: None)         # the test runs the heartbeat itself
    clock.t = 0.5
    bar.update(1)                    # the first step: the heartbeat starts
    # a step's line at 10.0 s, just before the heartbeat's wake at 10.5 s; then one step runs 40 s
    bar._stop = _ScriptedStop(clock, [(10.0, lambda: bar.update(1))], end=50.0)
    bar._beat()
    assert times == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_layer_weights_count_a_repeated_shape_little():
    w = layer_weights(build_model("segformer_b2"))
    assert w["stage0.block0.attn.q"] == 1.0 and w["stage0.block1.attn.q"] < 0.1


def test_paths_table_prints_full_names(capsys):
    point = paths.PathPoint("segformer_b2", "blocks3-4-6-3_fuse2560_a_much_longer_name", 1, 1.0, 1.0, 0.5, 0.5, 1)
    paths._print_table([point], point)
    assert "segformer_b2:blocks3-4-6-3_fuse2560_a_much_longer_name " in capsys.readouterr().out


def test_a_killed_run_leaves_the_earlier_folder_and_no_staging(tmp_path):
    from hw.cli import RUN_MARK
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("earlier")
    (out / RUN_MARK).write_text(run.run_dir(build_model("segformer_b2"), get_config("E"), False, check_seed=1) + "\n")
    env = dict(os.environ, PYTHONPATH=str(Path(run.__file__).resolve().parents[1]))
    # --check: after the timing the whole network executes (minutes), so the signal finds the run
    # still going; a timing-only run with its tilings cached can commit within the poll (CI saw rc 0)
    proc = subprocess.Popen([sys.executable, "-m", "sim.run", "--model", "segformer_b2", "--config", "E", "--quiet",
                             "--check", "--seed", "1", "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600       # a loaded machine can take minutes to import and start
    while not list(tmp_path.glob(".o.*.tmp")) and time.monotonic() < deadline:     # staging made: running
        time.sleep(0.05)
    assert list(tmp_path.glob(".o.*.tmp")), "the run made no staging folder in 600 s"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr.strip().splitlines() == ["interrupted; no result written"]
    assert [p.name for p in tmp_path.iterdir()] == ["o"] and (out / "report.json").read_text() == "earlier"
