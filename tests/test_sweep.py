"""sim.sweep: cache hits and resume, Pareto marking, the Dask path, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hw.config import get_config

import sim.sweep as sweep

ROOT = Path(__file__).resolve().parent.parent
MODEL = ["--model", "segformer_b0", "--size", "32x32"]      # small: the sweep's bookkeeping is tested, not its figures
CFGS = "E,K,M"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    # A fixed code version, so that another developer saving a file mid-test does not void the cache.
    monkeypatch.setattr(sweep, "code_version", lambda root=None: "test-version")
    monkeypatch.setattr(sweep, "_WORKER_VERSION", "test-version")
    return tmp_path / "cache", tmp_path / "out"


def _run(dirs, *extra, configs=CFGS):
    cache, out = dirs
    return sweep.main(MODEL + ["--configs", configs, "--cache", str(cache), "--out", str(out), "--no-plot", *extra])


def _spy_simulate(monkeypatch):
    calls = []
    real = sweep.simulate

    def spy(model, cfg, **kw):
        calls.append(cfg.name)
        return real(model, cfg, **kw)

    monkeypatch.setattr(sweep, "simulate", spy)
    return calls


def _points(out: Path) -> list[dict]:
    return json.loads((out / "sweep.json").read_text())["points"]


def test_cache_hit_on_rerun(dirs, monkeypatch, capsys):
    calls = _spy_simulate(monkeypatch)
    assert _run(dirs, "--workers", "1") == 0
    assert sorted(calls) == ["E", "K", "M"]
    first = _points(dirs[1])
    assert len(list(dirs[0].glob("*.json"))) == 3
    calls.clear()

    def no_pool(*a, **k):
        raise AssertionError("a process pool was started although every point is cached")

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", no_pool)
    capsys.readouterr()
    assert _run(dirs) == 0
    assert calls == []
    assert "3 cached, 0 to compute" in capsys.readouterr().err
    assert _points(dirs[1]) == first
    assert _run(dirs, "--quiet") == 0                     # the table and the summary only
    assert "to compute" not in capsys.readouterr().err


def test_resume_after_partial_run(dirs, monkeypatch, capsys):
    # A "killed" run: one point finished and cached, plus a stray temporary file of an interrupted write.
    assert _run((dirs[0], dirs[1].with_name("partial")), "--workers", "1", configs="K") == 0
    (dirs[0] / ".deadbeef.json.123.tmp").write_text('{"key": ')
    calls = _spy_simulate(monkeypatch)
    capsys.readouterr()
    assert _run(dirs, "--workers", "1") == 0
    assert sorted(calls) == ["E", "M"]
    assert "1 cached, 2 to compute" in capsys.readouterr().err
    assert [p["config"] for p in _points(dirs[1])] == ["E", "K", "M"]


def test_corrupt_or_foreign_cache_entry_is_recomputed(dirs, monkeypatch):
    assert _run(dirs, "--workers", "1", configs="E") == 0
    (entry,) = dirs[0].glob("*.json")
    entry.write_text("{not json")
    calls = _spy_simulate(monkeypatch)
    assert _run(dirs, "--workers", "1", configs="E") == 0
    assert calls == ["E"]
    # A different code version is a different key: everything is recomputed.
    monkeypatch.setattr(sweep, "code_version", lambda root=None: "other-version")
    monkeypatch.setattr(sweep, "_WORKER_VERSION", "other-version")
    calls.clear()
    assert _run(dirs, "--workers", "1", configs="E") == 0
    assert calls == ["E"]


def test_pareto_flags_synthetic():
    pts = [
        {"energy_per_mac_pj": 1.0, "macs_per_s_per_mm2": 10.0},   # best energy
        {"energy_per_mac_pj": 2.0, "macs_per_s_per_mm2": 30.0},   # best throughput
        {"energy_per_mac_pj": 1.5, "macs_per_s_per_mm2": 20.0},   # in between, optimal
        {"energy_per_mac_pj": 1.6, "macs_per_s_per_mm2": 19.0},   # dominated by the previous
        {"energy_per_mac_pj": 1.0, "macs_per_s_per_mm2": 9.0},    # equal energy, lower throughput
        {"energy_per_mac_pj": 2.0, "macs_per_s_per_mm2": 30.0},   # a tie with an optimal point
    ]
    assert sweep.pareto_flags(pts) == [True, True, True, False, False, True]
    assert sweep.pareto_flags([]) == []


def test_vector_width_pairs_differ_only_in_vector_width():
    from hw.config import PAPER_PRESETS, PRESETS
    points = [{"config": n, "k0": PRESETS[n].k0, "c0": PRESETS[n].c0} for n in PAPER_PRESETS]
    assert sweep.matched_pairs(points, PRESETS) == [("J", "G")]      # E's bus is twice H's
    e_at_h_bus = dict(PRESETS, E=dataclasses.replace(PRESETS["E"], gb_bus_bytes_per_cycle=PRESETS["H"].gb_bus_bytes))
    assert sweep.matched_pairs(points, e_at_h_bus) == [("H", "E"), ("J", "G")]
    fake = {"energy_per_mac_pj": 1.0, "energy_per_mac_onchip_pj": 1.0, "area_mm2": 1.0,
            "macs_per_s_per_mm2": 1.0, "time_ms": 1.0}
    pts = [dict(fake, config="H", k0=16, c0=16, area_mm2=4.0), dict(fake, config="E", k0=32, c0=32),
           dict(fake, config="J", k0=16, c0=16, area_mm2=2.25), dict(fake, config="G", k0=32, c0=32),
           dict(fake, config="A", k0=32, c0=32, area_mm2=100.0)]      # no twin: left out
    r = sweep.vector_width_ratios(pts, e_at_h_bus)
    assert r["pairs"] == [["H", "E"], ["J", "G"]]
    assert r["area_per_pair"] == [4.0, 2.25] and r["area"] == pytest.approx(3.0)     # geometric mean
    assert r["time"] == pytest.approx(1.0)


def test_outputs_and_process_pool(dirs):
    cache, out = dirs
    assert sweep.main(MODEL + ["--configs", CFGS, "--cache", str(cache), "--out", str(out), "--workers", "2"]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["model"] == "segformer_b0" and doc["input"][:2] == [32, 32]
    assert [p["config"] for p in doc["points"]] == ["E", "K", "M"]
    for p in doc["points"]:
        assert p["energy_per_mac_pj"] > 0 and p["macs_per_s_per_mm2"] > 0
        assert p["energy_per_mac_pj"] == pytest.approx(p["energy_uj"] * 1e6 / p["total_macs"])
        assert p["macs_per_s_per_mm2"] == pytest.approx(p["total_macs"] / (p["time_ms"] * 1e-3) / p["area_mm2"])
    front = [p["config"] for p in doc["points"] if p["pareto"]]
    assert sorted(doc["pareto_front"]) == sorted(front) and front
    assert doc["k16_vs_k32"]["pairs"] == [] and doc["k16_vs_k32"]["area"] is None   # K, M have no K0=32 twin
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(sweep.CSV_COLUMNS) and len(csv_lines) == 4
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp")) and not list(cache.glob("*.tmp"))


def test_unmappable_config_is_listed_not_fatal(dirs):
    # A DRAM of 1 MiB cannot hold the network's weights (a 3x3 conv behind a small input buffer, the
    # earlier example here, now runs a tap at a time).
    starved = get_config("E").replace(name="starved", dram_mib=1)
    doc = sweep.run_sweep("segformer_b0", None, (64, 64), [get_config("E"), starved], cache_dir=dirs[0],
                          workers=1, log=lambda s: None)
    assert [p["config"] for p in doc["points"]] == ["E"]
    assert [u["config"] for u in doc["unmappable"]] == ["starved"]
    assert "dram_mib = 1" in doc["unmappable"][0]["error"], doc["unmappable"]
    assert doc["pareto_front"] == ["E"]


def test_an_input_size_beyond_the_isa_is_unmappable_not_an_internal_error(dirs):
    """The ISA's field check before the DRAM check, as make sim makes it: that check's layout of a
    99999999x99999999 network raised MemoryError, a point "failed with an internal error"."""
    doc = sweep.run_sweep("segformer_b0", None, (99_999_999, 99_999_999), [get_config("tiny")], cache_dir=dirs[0],
                          workers=1, log=lambda s: None)
    assert doc["points"] == [] and doc["failed"] == []
    assert "99999999 input rows, more than the ISA addresses" in doc["unmappable"][0]["error"], doc["unmappable"]
    # with no point mapped the summary says the front is empty and why, not a line that ends blank
    assert "Pareto front (lower energy/MAC, higher throughput/mm^2): none (no configuration of the sweep maps" \
        in sweep.format_table(doc)


def test_the_table_keeps_four_significant_digits_of_a_small_networks_time_and_energy():
    """A small network's 0.0045 and 0.0052 ms both printed as 0.005 (and its energies as 0.0): the
    time and energy columns take the decimals that give their smallest value four significant digits,
    the same in every row; a SegFormer's milliseconds and microjoules keep their 3 and 1 decimals."""
    def cells(points):
        doc = {"points": [dict(config=c, k0=32, c0=32, num_pe=16, area_mm2=1.0, time_ms=t, energy_uj=e,
                               energy_per_mac_pj=1.0, macs_per_s_per_mm2=1e9, utilization=0.5, pareto=False)
                          for c, t, e in points],
               "unmappable": [], "pareto_front": [], "k16_vs_k32": {"energy_per_mac": None}}
        return [row.split()[4:6] for row in sweep.format_table(doc).splitlines()[2:2 + len(points)]]

    assert cells([("A", 0.0052, 0.0433), ("B", 0.0045, 0.0371)]) == [["0.005200", "0.04330"], ["0.004500", "0.03710"]]
    assert cells([("A", 4.3338, 36535.03), ("B", 2.054, 16293.71)]) == [["4.334", "36535.0"], ["2.054", "16293.7"]]


def test_a_point_that_raises_unexpectedly_is_reported_not_cached_and_the_sweep_exits_1(dirs, monkeypatch, capsys):
    """A bug in one point (any exception but a mapping error) used to kill the whole sweep: the other
    points finish, the failed one is listed with its exception, kept out of the cache, and the exit
    status says so."""
    real = sweep.simulate

    def broken_on_k(model, cfg, **kw):
        if cfg.name == "K":
            raise RuntimeError("a bug in  the model\nof K")
        return real(model, cfg, **kw)

    monkeypatch.setattr(sweep, "simulate", broken_on_k)
    assert _run(dirs, "--workers", "1") == 1
    doc = json.loads((dirs[1] / "sweep.json").read_text())
    assert [p["config"] for p in doc["points"]] == ["E", "M"] and doc["unmappable"] == []
    assert doc["failed"] == [{"config": "K", "error": "RuntimeError: a bug in the model of K"}]
    captured = capsys.readouterr()
    assert "K     " in captured.out and "FAILED (internal error): RuntimeError: a bug" in captured.out
    assert "1 point failed with an internal error" in captured.err
    assert len(list(dirs[0].glob("*.json"))) == 2          # E and M cached; K is computed again next time


def test_a_dram_too_small_for_the_program_is_not_a_point(dirs):
    # SegFormer-B0's weights alone are 3.7 MB: 1 MiB of DRAM cannot hold its program (make sim refuses it)
    small_dram = get_config("E").replace(name="small_dram", dram_mib=1)
    doc = sweep.run_sweep("segformer_b0", None, (64, 64), [get_config("E"), small_dram], cache_dir=dirs[0],
                          workers=1, log=lambda s: None)
    assert [p["config"] for p in doc["points"]] == ["E"]
    assert [u["config"] for u in doc["unmappable"]] == ["small_dram"]
    assert "bytes of DRAM configured (dram_mib = 1)" in doc["unmappable"][0]["error"]


def test_dask_matches_process_pool(tmp_path, dirs):
    import distributed
    pool_dirs = (tmp_path / "c1", tmp_path / "o1")
    dask_dirs = (tmp_path / "c2", tmp_path / "o2")
    assert _run(pool_dirs, "--workers", "2") == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1",
                                  protocol="tcp://", dashboard_address=":0") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert _run(dask_dirs, "--scheduler", cluster.scheduler_address) == 0
    assert len(list(dask_dirs[0].glob("*.json"))) == 3
    assert (dask_dirs[1] / "sweep.json").read_text() == (pool_dirs[1] / "sweep.json").read_text()
    assert (dask_dirs[1] / "sweep.csv").read_text() == (pool_dirs[1] / "sweep.csv").read_text()


@pytest.mark.parametrize("argv, needle", [
    (["--model", "segformer_b0", "--configs", "E,Z"], "'Z'"),
    (["--model", "segformer_b0", "--configs", "E,,K"], "--configs"),
    # a value twice is a typo for another one, most likely: refused, not swept once (nor twice)
    (["--model", "segformer_b0", "--configs", "tiny,tiny"], "'tiny,tiny': tiny and tiny are one configuration (tiny); give each"),
    (["--model", "segformer_b0", "--configs", "E, e"], "E and e are one configuration (E)"),
    (["--model", "segformer_b0", "--grid", "num_pe=8,8"], "'num_pe=8,8': num_pe=8 is given twice; give each value"),
    (["--model", "segformer_b0", "--grid", "clock_ghz=1,1.0"], "clock_ghz=1 and clock_ghz=1.0 are one value"),
    (["--model", "nosuchnet"], "'nosuchnet'"),
    (["--model", "segformer_b0", "--variant", "zz"], "'zz'"),
    (["--model", "segformer_b0", "--size", "64by64"], "--size"),
    (["--model", "segformer_b0", "--workers", "0"], "--workers"),
    (["--model", "segformer_b0", "--scheduler", "localhost"], "--scheduler"),
    (["--model", "segformer_b0", "--scheduler", "tcp://localhost:99999"], "port 99999 is no TCP port (1 to 65535)"),
    (["--model", "segformer_b0", "--scheduler", "tcp://localhost:٨٧٨٦"], "expected an address such as tcp://host:port"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert sweep.main(argv + ["--cache", str(cache), "--out", str(out)]) == 2
    printed = capsys.readouterr()
    err = printed.err
    assert err.count("\n") == 1 and err.startswith("python -m sim.sweep: error:") and needle in err
    assert printed.out == ""                # refused before any progress line
    if "--configs" in argv and needle == "'Z'":
        assert "choose from" in err and "A, B, C" in err
    if "nosuchnet" in argv:
        assert "segformer_b2" in err
    assert list(tmp_path.iterdir()) == []


def test_unreachable_scheduler_exits_2(tmp_path, capsys, monkeypatch):
    import distributed  # noqa: F401  (a project dependency)
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
    import socket
    with socket.socket() as s:      # a free loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = MODEL + ["--configs", "E", "--scheduler", f"tcp://127.0.0.1:{port}", "--cache", str(cache), "--out", str(out)]
    assert sweep.main(argv) == 2
    assert "cannot connect" in capsys.readouterr().err
    assert not out.exists() and not list(cache.glob("*"))


def test_a_cached_sweep_says_it_did_not_contact_the_scheduler(dirs, capsys):
    """With every point cached a sweep given --scheduler exited 0 silently, never having contacted it: a
    user could think it ran there (or that the address works).  It says so, even with --quiet."""
    import socket
    assert _run(dirs, "--workers", "1", "--quiet", configs="E") == 0
    capsys.readouterr()
    with socket.socket() as s:      # a free loopback port nobody listens on: connecting would fail
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    assert _run(dirs, "--scheduler", address, "--quiet", configs="E") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "note: every point was cached" in err
    assert f"the scheduler {address} was not contacted" in err


def test_dask_worker_processes_match_process_pool(tmp_path):
    # Workers in separate processes: tasks and results cross a real pickle + TCP boundary, and each
    # worker checks its own code version (the real one here, not the fixture's constant).
    import distributed
    pool_dirs = (tmp_path / "c1", tmp_path / "o1")
    dask_dirs = (tmp_path / "c2", tmp_path / "o2")
    assert _run(pool_dirs, "--workers", "2", configs="E,M") == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster:
        # As `make sweep SCHEDULER=...` runs it: `python -m sim.sweep`, whose module is __main__.
        cmd = [sys.executable, "-m", "sim.sweep", *MODEL, "--configs", "E,M", "--no-plot",
               "--scheduler", cluster.scheduler_address, "--cache", str(dask_dirs[0]), "--out", str(dask_dirs[1])]
        proc = subprocess.run(cmd, cwd=Path(sweep.__file__).parent.parent, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert (dask_dirs[1] / "sweep.json").read_text() == (pool_dirs[1] / "sweep.json").read_text()


def test_paper_comparable_mode_is_its_own_run(dirs, monkeypatch):
    """--paper-comparable times the MAC layers only with memory no limit (as sim.run --ideal-memory
    --mac-only does), caches apart from the default mode and says so in sweep.json and the folder name."""
    from mapper.workloads import build_model
    from sim.simulator import simulate
    cache, out = dirs
    assert _run((cache, out / "default"), "--workers", "1", configs="E") == 0
    assert _run((cache, out / "paper"), "--workers", "1", "--paper-comparable", configs="E") == 0
    default = json.loads((out / "default" / "sweep.json").read_text())
    paper = json.loads((out / "paper" / "sweep.json").read_text())
    assert (default["mode"], paper["mode"]) == ("default", sweep.PAPER_COMPARABLE)
    assert len(list(cache.glob("*.json"))) == 2
    want = simulate(build_model("segformer_b0", size=(32, 32)), get_config("E"), mac_only=True, ideal_memory=True)
    assert paper["points"][0]["total_cycles"] == want.total_cycles < default["points"][0]["total_cycles"]
    model = build_model("segformer_b0", size=(32, 32))
    assert sweep.out_dir_name(model, True, [get_config("E")], None, True).endswith("_paper-comparable")


def test_a_long_point_does_not_leave_the_sweep_silent():
    """Every period without a finished point, a line says how many are done and for how long none
    has finished; none after the sweep ends."""

    from sim.sweep import _Heartbeat
    lines: list[str] = []
    with _Heartbeat(lines.append, 3, period=0.1) as beat:
        assert beat.finished() == 1
        time.sleep(0.45)
    end = len(lines)
    time.sleep(0.2)
    assert len(lines) == end and end >= 2, lines
    assert all(line.startswith("[1/3] ") and "since a point finished" in line for line in lines), lines
    lines.clear()
    with _Heartbeat(lines.append, 2, period=0.1):
        time.sleep(0.25)
    assert lines and all(line.startswith("[0/2] ") and "none finished yet" in line for line in lines), lines


def test_a_kill_keeps_run_mains_handler():
    """Under run_main a SIGTERM keeps its handler (which raises a lost interrupt again); alone, the sweep
    turns it into a KeyboardInterrupt itself."""
    def mine(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, mine)
    try:
        assert sweep._interruptible(lambda: signal.getsignal(signal.SIGTERM)) is mine
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert sweep._interruptible(lambda: signal.getsignal(signal.SIGTERM)) not in (mine, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old)


# A sweep whose points never end: each worker sits inside an atomic write (its temporary file
# made) until stopped.  The workers are forked, so they run the patched compute_point too.
_ENDLESS_SWEEP = """
import os, sys, time
from pathlib import Path
import sim.sweep as sweep
from hw.cli import atomic_write, run_main
marks = Path(sys.argv[1])

def endless(model_name, variant, size, cfg, paper_comparable=False):
    def write(tmp):
        (marks / f"{os.getpid()}.started").touch()
        time.sleep(600)
    atomic_write(marks / f"{cfg.name}.json", write)

sweep.compute_point = endless
run_main(lambda: sweep.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_parent_alone_stops_the_running_points(tmp_path, signum):
    """A SIGINT or SIGTERM sent to the sweep's process alone (not its group) stops its workers at
    once, as Ctrl-C does: no waiting for their points, no temporary file left, nothing written."""
    marks, cache, out = tmp_path / "marks", tmp_path / "cache", tmp_path / "out"
    marks.mkdir()
    argv = MODEL + ["--configs", "E,K", "--workers", "2", "--no-plot", "--cache", str(cache), "--out", str(out)]
    # SIGINT as a terminal's foreground process has it: run in the background of a shell without
    # job control (CI started with '&'), pytest and its children inherit it ignored
    proc = subprocess.Popen([sys.executable, "-c", _ENDLESS_SWEEP, str(marks), *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.glob("*.started"))) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the workers never started their points"
            time.sleep(0.05)
        workers = [int(p.stem) for p in marks.glob("*.started")]
        t0 = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err, err
    assert stopped_in < 15, f"{stopped_in:.1f} s to stop"
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the sweep"
    assert sorted(p.suffix for p in marks.iterdir()) == [".started", ".started"], list(marks.iterdir())
    assert not out.exists() and not list(cache.glob("*.json"))


def test_a_second_sigterm_does_not_cut_the_first_ones_cleanup(monkeypatch):
    """Our SIGTERM unwinds a worker's point; the pool's own SIGTERM to the remaining workers (when
    the first exits, ``concurrent.futures`` calls the pool broken) came during that unwinding and
    raised again inside ``atomic_write``'s cleanup, leaving its temporary file (seen once in CI)."""
    from sim import sweep

    monkeypatch.setattr(sweep, "_in_point", True)
    monkeypatch.setattr(sweep, "_unwinding", False)
    with pytest.raises(sweep._WorkerStopped):
        sweep._stop_worker(signal.SIGTERM, None)
    assert sweep._stop_worker(signal.SIGTERM, None) is None


def test_an_edited_copy_of_a_preset_sweeps_beside_it(tmp_path):
    """make config CFG=E writes name = "E"; an edited copy swept beside E was refused ("two
    configurations ... are named 'E'"). It takes its file's stem (or its name and a hash of its fields
    when the stem is taken), and the preset keeps its name."""
    from hw.config_file import config_toml, hashed_label
    copy = get_config("E").replace(num_pe=32)
    (tmp_path / "my_accel.toml").write_text(config_toml(copy))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "E.toml").write_text(config_toml(get_config("E").replace(num_pe=64)))
    got = sweep._parse_configs(f"{tmp_path / 'my_accel.toml'},E,{tmp_path / 'a' / 'E.toml'}")
    assert [c.name for c in got] == ["my_accel", "E", hashed_label(get_config("E").replace(num_pe=64))]
    assert [c.num_pe for c in got] == [32, 16, 64]
    (tmp_path / "A.toml").write_text(config_toml(get_config("E").replace(num_pe=8)))
    named = sweep._parse_configs(f"E,{tmp_path / 'A.toml'}")          # an edited E is not preset A
    assert [c.name for c in named] == ["E", hashed_label(get_config("E").replace(num_pe=8))]
    with pytest.raises(sweep.UsageError, match=r"my_accel.toml and .*copy.toml are one configuration \(E\)"):
        (tmp_path / "copy.toml").write_text(config_toml(copy))
        sweep._parse_configs(f"{tmp_path / 'my_accel.toml'},{tmp_path / 'copy.toml'}")
