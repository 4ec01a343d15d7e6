"""Execution-path exploration and the RDD runtime: accuracy joins, Pareto fronts, budgets, switching."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import get_config
from mapper.workloads import build_model
from sim.paths import (AccuracyError, AccuracyTable, PathPoint, cost_at_accuracy, pareto_mask, retrained_vs_pruned,
                       structure_key, weight_bytes)
from sim.rdd import Budget, BudgetError, read_budgets, run_trace, switch_cost
from sim.energy import EnergyModel

ROOT = Path(__file__).resolve().parents[1]


def test_pareto_mask():
    costs = [1.0, 2.0, 3.0, 2.5, 4.0]
    accs = [0.30, 0.40, 0.45, 0.39, None]
    assert pareto_mask(costs, accs) == [True, True, True, False, False]


def test_same_path_spelled_differently_has_one_key():
    keys = {structure_key(build_model("segformer_b2", v)) for v in ("full", "B2", "blocks=3-4-6-3,fuse=3072")}
    assert len(keys) == 1
    assert structure_key(build_model("segformer_b2", "B2_c")) == structure_key(
        build_model("segformer_b2", "blocks=2-4-6-3,fuse=1408"))
    assert structure_key(build_model("segformer_b2", "B2_c")) != structure_key(build_model("segformer_b2"))


def test_weight_bytes_shrink_with_pruning():
    full = weight_bytes(build_model("segformer_b2"))
    assert 25e6 < full < 30e6                      # SegFormer-B2 has about 27.5 M parameters
    assert weight_bytes(build_model("segformer_b2", "B2_f")) < full


def test_default_accuracy_table_joins_paper_points():
    table = AccuracyTable.read(ROOT / "data" / "accuracy_paper.csv")
    assert table.lookup(build_model("segformer_b2", "blocks=2-3-5-3,fuse=512")).accuracy == pytest.approx(0.3345)
    assert table.lookup(build_model("segformer_b2", "fuse=2000")) is None


@pytest.mark.parametrize("text, message", [
    ("model,path\nsegformer_b2,full\n", r"bad.csv:1: missing column\(s\) accuracy"),
    ("model,path,accuracy\nsegformer_b2,full,high\n", r"bad.csv:2: accuracy 'high' is not a number"),
    ("model,path,accuracy\nsegformer_b2,full,46.5\n", r"bad.csv:2: accuracy 46.5 outside 0..1"),
    ("model,path,accuracy\nsegformer_b2,B2_z,0.4\n", r"bad.csv:2: unknown path segformer_b2:B2_z"),
    ("model,path,accuracy\nvit,full,0.4\n", r"bad.csv:2: unknown model 'vit'"),
    # one network twice, under another spelling: which accuracy would count?
    ("model,path,accuracy\nsegformer_b2,full,0.46\nsegformer_b2,blocks=3-4-6-3,0.45\n",
     r"bad.csv:3: segformer_b2:blocks=3-4-6-3 is the network of line 2 \(segformer_b2:full\) again"),
])
def test_bad_accuracy_csv_names_file_and_line(tmp_path, text, message):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(AccuracyError, match=message):
        AccuracyTable.read(f)


@pytest.mark.parametrize("text, message", [
    ("frame,time_ms\n0,3\n1,-1\n", r"t.csv:3: budget .-1. time_ms: expected a finite number >= 0"),
    ("frame,budget\n0,3\n", r"t.csv:1: header .* must have a 'frame' column"),
    ("frame,time_ms\n0,abc\n", r"t.csv:2: .* is not a number"),
    ("frame,time_ms\n0,1,2\n", r"t.csv:2: 3 fields, the header has 2"),
    ("frame,time_ms\n0,5\n0,3\n", r"t.csv:3: frame 0 after frame 0: frames must increase"),
    ("frame,time_ms\n5,5\n1,3\n", r"t.csv:3: frame 1 after frame 5"),
    ("frame,time_ms\n-3,5\n", r"t.csv:2: frame '-3': expected a whole number >= 0"),
    ("frame,time_ms\n1.5,4\n", r"t.csv:2: frame '1.5': expected a whole number >= 0"),
])
def test_bad_budget_csv_names_file_and_line(tmp_path, text, message):
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(BudgetError, match=message):
        read_budgets(str(f))


def test_a_budget_csv_with_quoted_fields_is_read_as_csv(tmp_path):
    """A spreadsheet's export quotes its fields: ``"frame","time_ms"`` was split on commas and refused
    as having no 'frame' column."""
    f = tmp_path / "t.csv"
    f.write_text('"frame","time_ms"\n"0","3.5"\n1,4\n')
    assert read_budgets(str(f)) == ("time_ms", [Budget(0, 3.5), Budget(1, 4.0)])


def _point(path, t, acc, wset, wbytes=1_000_000):
    return PathPoint("m", path, 1, t, t * 10, 0.5, 0.5, wbytes, acc, wset)


def test_rows_for_paths_not_simulated_are_named(tmp_path):
    f = tmp_path / "acc.csv"
    f.write_text("model,path,accuracy\nsegformer_b0,full,0.37\nsegformer_b0,blocks=1-2-2-2,0.36\n")
    table = AccuracyTable.read(f)
    assert [(r.path, r.line) for r in table.unused(["segformer_b0"], None)] == [("blocks=1-2-2-2", 3)]
    assert table.unused(["segformer_b0"], ["full", "blocks=1-2-2-2"]) == []


def test_pruned_cost_at_an_accuracy_interpolates_on_the_front():
    pruned = [_point("full", 10.0, 0.46, "A"), _point("a", 8.0, 0.44, "A"), _point("b", 4.0, 0.40, "A"),
              _point("slow", 9.0, 0.40, "A")]                  # dominated: not on the front
    at = cost_at_accuracy(pruned, 0.43, "time_ms")
    assert at["value"] == pytest.approx(7.0) and at["between"] == ["b", "a"]     # 3/4 of the way from b to a
    assert cost_at_accuracy(pruned, 0.44, "time_ms")["value"] == pytest.approx(8.0)
    assert cost_at_accuracy(pruned, 0.30, "time_ms") is None


def test_retrained_model_against_pruning_to_its_accuracy():
    base = _point("full", 10.0, 0.46, "A")
    points = [base, _point("a", 8.0, 0.44, "A"), _point("b", 4.0, 0.40, "A"), _point("small", 3.0, 0.43, "B")]
    (row,) = retrained_vs_pruned(points, base)
    assert row["path"] == "m:small" and row["accuracy_loss"] == pytest.approx(0.03)
    assert row["time_ms"]["retrained_saving"] == pytest.approx(0.7)
    assert row["time_ms"]["pruned_saving"] == pytest.approx(0.3) and row["time_ms"]["pruned_between"] == ["b", "a"]


def test_models_of_another_benchmark_are_not_compared():
    """An ImageNet classifier or a Cityscapes model is no retrained ADE20K SegFormer."""
    from dataclasses import replace
    base = replace(_point("full", 10.0, 0.46, "A"), benchmark="segmentation/150")
    points = [base, replace(_point("b", 4.0, 0.40, "A"), benchmark="segmentation/150"),
              replace(_point("r50", 3.0, 0.43, "C"), benchmark="classification/1000"),
              replace(_point("city", 3.0, 0.43, "D"), benchmark="segmentation/19"),
              replace(_point("b1", 3.0, 0.43, "B"), benchmark="segmentation/150")]
    assert [row["path"] for row in retrained_vs_pruned(points, base)] == ["m:b1"]


def test_rdd_picks_most_accurate_fitting_path_and_counts_misses():
    cfg = get_config("E")
    pts = [_point("big", 5.0, 0.46, "A"), _point("mid", 4.0, 0.44, "A"), _point("small", 3.0, 0.40, "A")]
    res = run_trace(pts, "time_ms", [Budget(0, 6), Budget(1, 4.5), Budget(2, 3.2), Budget(3, 1.0)], cfg)
    assert [f["path"] for f in res["frames"]] == ["m:big", "m:mid", "m:small", "m:small"]
    assert [f["miss"] for f in res["frames"]] == [False, False, False, True]
    s = res["summary"]
    assert s["misses"] == 1 and s["mean_accuracy"] == pytest.approx((0.46 + 0.44 + 0.40 + 0.40) / 4)
    assert s["static"]["path"] == "m:small" and s["static"]["misses"] == 1 and s["impossible"] == 1


def test_a_frame_no_path_fits_does_not_decide_the_static_path():
    """A new user's finding: the shipped trace's two impossible frames made the static baseline the
    cheapest path (B2_f) and RDD's gain +11.7 points instead of +1.8.  Both policies miss such a
    frame; the static path is the most accurate one within the tightest budget some path fits."""
    pts = [_point("big", 5.0, 0.46, "A"), _point("mid", 4.0, 0.44, "A"), _point("small", 3.0, 0.40, "A")]
    res = run_trace(pts, "time_ms", [Budget(0, 6), Budget(1, 4.5), Budget(2, 4.2), Budget(3, 1.0)], get_config("E"))
    s = res["summary"]
    assert s["impossible"] == 1 and s["misses"] == 1
    assert s["static"]["path"] == "m:mid" and s["static"]["misses"] == 1


def test_rdd_charges_switching_between_weight_sets():
    cfg = get_config("E")
    big, other = _point("big", 5.0, 0.46, "A", 30_000_000), _point("other", 3.0, 0.44, "B", 30_000_000)
    sw_ms, sw_uj = switch_cost(other, cfg, EnergyModel(cfg))
    # read and written at once: the weights' bytes once at the DRAM rate
    assert sw_ms == pytest.approx((cfg.dram_latency + 30_000_000 / cfg.dram_bytes_per_cycle) / 1.25e6)
    assert sw_uj > 0
    # 3.0 ms + switch (0.19 ms) fits 3.5 but not 3.1
    res = run_trace([big, other], "time_ms", [Budget(0, 3.5), Budget(1, 3.1)], cfg)
    f0, f1 = res["frames"]
    assert f0["path"] == "m:other" and f0["switched"] and f0["time_ms"] == pytest.approx(3.0 + sw_ms)
    assert f1["path"] == "m:other" and not f1["switched"] and not f1["miss"]


def test_shipped_trace_comment_holds():
    # Its overloaded frames ask for less than the smallest path needs with every MAC at full rate.
    kind, budgets = read_budgets(str(ROOT / "data" / "traces" / "segformer_b2_E_time.csv"))
    cfg = get_config("E")
    smallest = min((build_model("segformer_b2", v) for v in ("B2_a", "B2_b", "B2_c", "B2_d", "B2_e", "B2_f")),
                   key=lambda m: m.total_macs)
    floor_ms = smallest.total_macs / cfg.macs_per_cycle / (cfg.clock_ghz * 1e6)
    assert kind == "time_ms"
    assert [b.frame for b in budgets if b.value < floor_ms] == [17, 43]
    assert min(b.value for b in budgets if b.frame not in (17, 43)) == 3.0


#: make regress (71 s of make test): tests/test_outputs_doc.py's rdd run covers the CLI in make test
@pytest.mark.slow
def test_rdd_cli_on_the_shipped_trace(tmp_path):
    """The shipped trace with two of the published paths (the full network, which other tests map
    too, and the smallest; all seven: make regress's test below)."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    rows = [line for line in (ROOT / "data" / "accuracy_paper.csv").read_text().splitlines()
            if line.startswith(("model,", "segformer_b2,full,", "segformer_b2,B2_f,"))]
    (tmp_path / "two.csv").write_text("\n".join(rows) + "\n")
    r = subprocess.run([sys.executable, "-m", "sim.rdd", "--model", "segformer_b2", "--config", "E",
                        "--accuracy", "two.csv", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "RDD:" in r.stdout and "static:" in r.stdout
    assert (tmp_path / "out" / "rdd.json").exists() and (tmp_path / "out" / "frames.csv").exists()
    doc = json.loads((tmp_path / "out" / "rdd.json").read_text())
    # what the trace's comment says: exactly its two overloaded frames are missed
    assert [f["frame"] for f in doc["frames"] if f["miss"]] == [17, 43]
    assert {f["path"] for f in doc["frames"]} == {"segformer_b2:full", "segformer_b2:B2_f"}
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,time_ms\n0,-3\n")
    r = subprocess.run([sys.executable, "-m", "sim.rdd", "--model", "segformer_b2", "--budgets", str(bad),
                        "--out", str(tmp_path / "none")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "bad.csv:2: budget '-3' time_ms" in r.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_rdd_cli_on_the_shipped_trace_with_every_published_path(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-m", "sim.rdd", "--model", "segformer_b2", "--config", "E",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "rdd.json").read_text())
    assert [f["frame"] for f in doc["frames"] if f["miss"]] == [17, 43]


def test_paths_plot_legend_names_where_accuracies_come_from(tmp_path):
    """A user's accuracy file is not 'published accuracy' (the legend says which file it is)."""
    from sim.paths import DEFAULT_ACCURACY, _accuracy_source
    from sim.plots import paths as plot_paths
    pts = [PathPoint("m", name, 10, t, e, 0.5, 0.5, 100, accuracy=a, pareto_time=True, pareto_energy=True)
           for name, t, e, a in (("full", 2.0, 20.0, 0.5), ("p", 1.0, 10.0, 0.4))]
    for source, words in ((str(DEFAULT_ACCURACY), "published accuracy"), (str(tmp_path / "mine.csv"), "mine.csv")):
        out = tmp_path / words.replace(" ", "_")
        out.mkdir()
        plot_paths(pts, "t", out, ("svg",), accuracy_from=_accuracy_source(source))
        text = (out / "paths.svg").read_text()
        assert f"paths with {_accuracy_source(source)} (2)" in text and words in text
    assert "published" not in _accuracy_source(str(tmp_path / "mine.csv"))


@pytest.mark.parametrize("given", [";", "full;", ";;", "", "full; ;B2_a"])
def test_paths_with_an_empty_path_are_refused(tmp_path, monkeypatch, capsys, given):
    from sim import paths
    monkeypatch.chdir(tmp_path)
    assert paths.main(["--model", "segformer_b2", "--paths", given, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"bad --paths {given!r}: an empty path" in err and "separated by ';'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tool", ["paths", "rdd"])
@pytest.mark.parametrize("other, benchmark", [("resnet50", "classification/1000"),
                                              ("segformer_b0_city", "segmentation/19")])
def test_models_of_different_benchmarks_are_refused(tmp_path, monkeypatch, capsys, tool, other, benchmark):
    """SegFormer-B0's ADE20K mIoU and ResNet-50's top-1 (or B0's Cityscapes mIoU) were put on one
    Pareto front, where ResNet-50 'dominated' B0, and one ranking by accuracy in make rdd; such
    models are refused before anything runs, as ``benchmark_of`` says they do not compare."""
    import importlib
    main = importlib.import_module(f"sim.{tool}").main
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "segformer_b0", "--model", other, "--config", "tiny", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segformer_b0 (segmentation/150)" in err and f"{other} ({benchmark})" in err
    assert list(tmp_path.iterdir()) == []


def test_the_table_prints_the_savings_it_says_are_relative_to_the_base(capsys):
    """The table ended "savings are relative to <base>" with no savings in it (only paths.json had
    them): each row now shows the time and energy it saves, as paths.json's ``*_saving`` say."""
    from sim.paths import _print_table, savings
    base, half = (PathPoint("m", name, 10, t, e, 0.5, 0.5, 100) for name, t, e in (("full", 2.0, 20.0),
                                                                                   ("p", 1.0, 15.0)))
    _print_table([base, half], base)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("m:p "))
    assert savings(half, base) == {"time_saving": 0.5, "energy_saving": 0.25, "mac_saving": 0.0}
    assert row.split()[4:6] == ["50.0%", "25.0%"], row


def test_the_table_stays_aligned_for_a_tiny_model(capsys):
    """A tiny network's paths (a few MACs, nanoseconds, a path named 'a') and a huge saving broke the
    table's fixed widths, each cell pushing the rest of its row right; columns are as wide as their
    widest cell now."""
    from sim.paths import _print_table
    base = PathPoint("t", "full", 12_345, 0.000123, 0.0042, 0.5, 0.5, 100, accuracy=0.5, pareto_time=True)
    tiny = PathPoint("t", "a", 123, 0.0000456, 0.0009, 0.25, 0.5, 100)
    slow = PathPoint("t", "b", 123, 12_345.678, 123_456_789.0, 0.25, 0.5, 100, accuracy=0.25, pareto_energy=True)
    _print_table([base, tiny, slow], base)
    head, rule, *rows = capsys.readouterr().out.splitlines()[:-1]       # the last line explains the columns
    ends = [head.index(label) + len(label) for label in ("GMACs", "time ms", "energy uJ", "saved t", "saved E",
                                                          "conv t%", "accuracy")]
    assert len(rows) == 3 and set(rule) == {"-", " "}
    for row in rows:
        assert [row[end - 1] != " " and not row[end:end + 2].strip() for end in ends] == [True] * len(ends), row


def test_small_times_and_energies_keep_four_significant_digits(capsys):
    """Two small networks' 0.0045 and 0.0052 ms both printed as 0.005 beside different savings: the
    time and energy columns take the decimals that give their smallest value four significant digits,
    the same in every row; a SegFormer's milliseconds and microjoules keep their 3 and 1 decimals."""
    from sim.paths import _print_table

    def cells(points):
        _print_table(points, points[0])
        return [row.split()[2:4] for row in capsys.readouterr().out.splitlines()[2:-1]]

    small = [PathPoint(m, "full", 10, t, e, 0.5, 0.5, 100) for m, t, e in (("a", 0.0052, 0.0433), ("b", 0.0045, 0.0371))]
    assert cells(small) == [["0.005200", "0.04330"], ["0.004500", "0.03710"]]
    b2 = [PathPoint("m", p, 10, t, e, 0.5, 0.5, 100) for p, t, e in (("full", 4.3338, 36535.03), ("B2_f", 2.054, 16293.71))]
    assert cells(b2) == [["4.334", "36535.0"], ["2.054", "16293.7"]]
    tiny = [PathPoint(m, "full", macs, 1.0, 1.0, 0.5, 0.5, 100) for m, macs in (("a", 2_345_678), ("b", 62_337_843_200))]
    _print_table(tiny, tiny[0])
    assert [row.split()[1] for row in capsys.readouterr().out.splitlines()[2:-1]] == ["0.002346", "62.337843"]


def test_rdd_summary_keeps_a_small_networks_digits(capsys):
    """make rdd's path lines printed 0.005 ms, 0.0 uJ and 0.0 MB for a small network's paths."""
    from sim.rdd import _print_summary
    pts = [PathPoint("m", p, 1, t, t * 10, 0.5, 0.5, w, acc, "A") for p, t, w, acc in
           (("big", 0.0052, 41_000, 0.46), ("small", 0.0045, 38_000, 0.40))]
    _print_summary(pts, run_trace(pts, "time_ms", [Budget(0, 0.005)], get_config("E")), "trace.csv")
    lines = capsys.readouterr().out.splitlines()[1:3]
    assert [[line.split()[i] for i in (3, 5, 8)] for line in lines] == [["0.005200", "0.05200", "0.041"],
                                                                         ["0.004500", "0.04500", "0.038"]]


def test_the_same_paths_collapse_and_name_one_folder():
    """A path given twice, or spelled differently (blocks=3-4-6-3 is B2's full network), is one path
    and the same paths give the same folder."""
    import argparse
    from sim.paths import DEFAULT_ACCURACY, _run_name, parse_paths
    assert parse_paths(["segformer_b2"], "full;blocks=3-4-6-3; B2_a;full;B2_a") == ["full", "B2_a"]

    def folder(given):
        return _run_name(argparse.Namespace(out=None, model=["segformer_b2"], ideal_memory=False,
                                           accuracy=str(DEFAULT_ACCURACY), mac_only=False), get_config("E"),
                        parse_paths(["segformer_b2"], given))

    assert folder("full") == folder("full;full") == folder("blocks=3-4-6-3") == folder(" full ;blocks=3-4-6-3")
    assert folder("full;B2_a") == folder("full;B2_a;blocks=3-4-6-3") != folder("full")
    assert folder("B2_a;full") != folder("full;B2_a")      # the order chooses the baseline


def test_each_path_is_numbered_and_its_layers_reported(tmp_path, monkeypatch, capsys):
    """'path i/N' per path, and the per-layer line of make sim (here every step, not every 10 s)."""
    import functools
    import onnx
    from onnx_graphs import cnn
    from sim import paths
    from sim.progress import Progress
    monkeypatch.chdir(tmp_path)
    onnx.save(cnn()[0], "net.onnx")
    monkeypatch.setattr(paths, "Progress", functools.partial(Progress, period=0.0))
    net = build_model("net.onnx")
    points = paths.simulate_paths([("net.onnx", net), ("net.onnx", net)], get_config("E"), None)
    assert len(points) == 2
    err = capsys.readouterr().err.splitlines()
    layers = len(net.layers)
    assert [line for line in err if "simulating" in line] == [f"  simulating path {i}/2 net.onnx:full" for i in (1, 2)]
    assert f"path 2/2 net.onnx:full: {layers}/{layers} layers" in "\n".join(err)
    paths.simulate_paths([("net.onnx", net)], get_config("E"), None, quiet=True)
    assert capsys.readouterr().err == ""
    # through the tool: 'full;full' is one path
    assert paths.main(["--model", "net.onnx", "--paths", "full;full", "--out", "o", "--no-plot", "--quiet"]) == 0
    assert len(json.loads(Path("o/paths.json").read_text())["points"]) == 1
    assert capsys.readouterr().err == ""


def test_an_onnx_file_in_the_accuracy_csv_is_read_from_the_csvs_folder(tmp_path, monkeypatch):
    """A relative path in the CSV names the file beside the CSV, from whatever folder the tool runs;
    MODEL may spell the same file otherwise; a missing file is named with the path it was looked for at."""
    import onnx
    from onnx_graphs import cnn
    (tmp_path / "nets").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)      # where '../nets' is no folder
    onnx.save(cnn()[0], tmp_path / "nets" / "net.onnx")
    csv_file = tmp_path / "results" / "acc.csv"
    csv_file.write_text("model,path,accuracy\n../nets/net.onnx,full,0.71\n")
    monkeypatch.chdir(tmp_path / "elsewhere" / "deeper")
    table = AccuracyTable.read("../../results/acc.csv")
    net = str(tmp_path / "nets" / "net.onnx")
    assert table.lookup(build_model(net)).accuracy == 0.71
    assert [r.line for r in table.rows_of([net])] == [2] and table.rows_of(["segformer_b0"]) == []
    assert table.unused([net], None) == []
    csv_file.write_text("model,path,accuracy\nnets/net.onnx,full,0.71\n")      # relative to tmp_path, not the CSV
    with pytest.raises(AccuracyError, match=r"acc.csv:2: model file 'nets/net.onnx' not found: "
                                            r"\.\./\.\./results/nets/net.onnx: No such file or directory \(a relative path in "
                                            r"the accuracy CSV is read from the CSV's folder\)"):
        AccuracyTable.read("../../results/acc.csv")


def test_onnx_files_of_one_stem_keep_their_own_folders_and_points(tmp_path, monkeypatch, capsys):
    """Two files named net.onnx in two folders: each run's folder is its own (named by content), and
    a run of both keeps a point of each under its own path; the same file twice is one network."""
    import onnx
    from onnx_graphs import cnn
    from sim import paths
    monkeypatch.chdir(tmp_path)
    for folder, seed in (("a", 1), ("b", 2)):
        Path(folder).mkdir()
        onnx.save(cnn(seed=seed)[0], f"{folder}/net.onnx")
    runs = {}
    for models in (["a/net.onnx"], ["b/net.onnx"], ["a/net.onnx", "b/net.onnx"], ["a/net.onnx", "a/net.onnx"]):
        argv = [arg for m in models for arg in ("--model", m)]
        assert paths.main(argv + ["--no-plot", "--quiet"]) == 0
        runs[tuple(models)] = Path(capsys.readouterr().out.splitlines()[-1].split(" to ", 1)[1])
    assert len(set(runs.values())) == 4
    both = json.loads((runs[("a/net.onnx", "b/net.onnx")] / "paths.json").read_text())
    assert [p["model"] for p in both["points"]] == ["a/net.onnx", "b/net.onnx"]
    twice = json.loads((runs[("a/net.onnx", "a/net.onnx")] / "paths.json").read_text())
    assert [p["model"] for p in twice["points"]] == ["a/net.onnx"]
    for models, folder in runs.items():
        assert json.loads((folder / "paths.json").read_text())["models"] == list(models)


def _unmappable_onnx(path: Path) -> Path:
    """A 1x1 convolution to 9,000 channels and a softmax over them: a row longer than the vector
    unit's rows (``hw.operators.MAX_ROW``), which no configuration maps."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((9000, 3, 1, 1), 0.01, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
         helper.make_node("Softmax", ["c"], ["y"], axis=1)], "wide_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 9000, 16, 16])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("tool", ["paths", "rdd"])
def test_a_model_no_configuration_maps_is_refused_in_one_line(tmp_path, capsys, tool):
    """make paths and make rdd refuse a network they cannot map as make sim does: one line naming
    the configuration and the layer, status 2, no folder (a user met a traceback)."""
    from sim import paths, rdd

    model = _unmappable_onnx(tmp_path / "wide.onnx")
    (tmp_path / "acc.csv").write_text("model,path,accuracy\nwide.onnx,full,0.5\n")
    out = tmp_path / "out"
    argv = ["--model", str(model), "--config", "tiny", "--accuracy", str(tmp_path / "acc.csv"), "--out", str(out),
            "--quiet"]
    code = (paths.main(argv + ["--no-plot"]) if tool == "paths" else rdd.main(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot map onto configuration tiny" in err and "softmax row" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


def _heavy_onnx(path: Path) -> Path:
    """A 1x1 convolution of 1,100 channels to 1,100: 1.2 MB of int8 weights, more than 1 MiB of DRAM."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1100, 1100, 1, 1), 0.001, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], "heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1100, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1100, 2, 2])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("tool", ["paths", "rdd"])
def test_a_program_larger_than_the_dram_is_refused_in_one_line(tmp_path, capsys, tool):
    """make paths and make rdd take make sim's configuration overrides, --dram-mib among them, and
    refuse a network whose program does not fit the DRAM as make sim does (they accepted any)."""
    from sim import paths, rdd

    model = _heavy_onnx(tmp_path / "heavy.onnx")
    (tmp_path / "acc.csv").write_text("model,path,accuracy\nheavy.onnx,full,0.5\n")
    out = tmp_path / "out"
    argv = ["--model", str(model), "--config", "tiny", "--accuracy", str(tmp_path / "acc.csv"), "--out", str(out),
            "--quiet", "--dram-mib", "1"]
    code = (paths.main(argv + ["--no-plot"]) if tool == "paths" else rdd.main(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bytes of DRAM configured (dram_mib = 1)" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()
    # with 2 MiB it fits, and the run is of the overridden configuration
    code = paths.main(argv[:-1] + ["2", "--dram-bytes-per-cycle", "16", "--no-plot"]) if tool == "paths" \
        else rdd.main(argv[:-1] + ["2", "--dram-bytes-per-cycle", "16"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / ("paths.json" if tool == "paths" else "rdd.json")).read_text())
    assert doc["config_params"]["dram_mib"] == 2 and doc["config_params"]["dram_bytes_per_cycle"] == 16
