"""docs/outputs.md against the files the tools write: each tool is run once on small inputs
(tiny ONNX networks, SegFormer-B0 at 64x64 on E as tests/test_sweep.py runs it) and every JSON
key and CSV column the page lists must be exactly those written, with the types it gives."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import onnx
import pytest

import mapper.flops as flops
import sim.paths as paths
import sim.rdd as rdd
import sim.sweep as sweep
from onnx_graphs import cnn

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "outputs.md"
JSON_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "null": type(None), "list": list,
              "object": dict, "map": dict}


def doc_tables() -> dict[str, list[list[str]]]:
    """Each ``###`` heading of the page -> the rows of its table (cells, backticks removed)."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            heading = line[4:].strip().strip("`")
            tables[heading] = []
        elif heading and line.startswith("| `"):
            tables[heading].append([c.strip().replace("`", "") for c in line.strip("|").split("|")])
    return tables


def _types(doc_type: str) -> tuple[type, ...]:
    """The Python types a documented type allows (``map ...`` is one object, whatever it says of its values)."""
    doc_type = doc_type.removeprefix("optional ")
    if doc_type.startswith("map"):
        return (dict,)
    return tuple(JSON_TYPES[alt.split()[0]] for alt in doc_type.split(" or "))


def _fits(value, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):                     # a bool is an int to Python, not to JSON
        return bool in allowed
    return isinstance(value, allowed)


def written_keys(doc: dict, spec: dict[str, str], prefix: str = "") -> dict[str, list]:
    """Every key of ``doc`` written as the page writes it (``a.b``, ``a[].b``) -> its values; a key
    the page calls a map is not looked into."""
    out: dict[str, list] = {}
    for k, v in doc.items():
        key = prefix + k
        out.setdefault(key, []).append(v)
        if spec.get(key, "").removeprefix("optional ").startswith("map"):
            continue
        inner = [(v, key + ".")] if isinstance(v, dict) else \
            [(e, key + "[].") for e in v] if isinstance(v, list) and v and all(isinstance(e, dict) for e in v) else []
        for sub, sub_prefix in inner:
            for sk, values in written_keys(sub, spec, sub_prefix).items():
                out.setdefault(sk, []).extend(values)
    return out


def check_json(heading: str, doc: dict) -> None:
    spec = {row[0]: row[1] for row in doc_tables()[heading]}
    assert spec, f"docs/outputs.md has no table under '### {heading}'"
    written = written_keys(doc, spec)
    assert sorted(set(written) - set(spec)) == [], f"{heading}: keys written but not in docs/outputs.md"
    required = {k for k, t in spec.items() if not t.startswith("optional")}
    assert sorted(required - set(written)) == [], f"{heading}: keys in docs/outputs.md but not written"
    for key, values in written.items():
        bad = [v for v in values if not _fits(v, _types(spec[key]))]
        assert not bad, f"{heading}: {key} is documented as {spec[key]!r} but written as {bad[0]!r}"


def check_csv(heading: str, file: Path) -> None:
    with open(file, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == [row[0] for row in doc_tables()[heading]], f"{file.name}: columns differ from docs/outputs.md"


def test_every_documented_file_has_a_table():
    assert set(doc_tables()) == {"flops JSON", "paths.json", "paths.csv", "rdd.json", "frames.csv", "sweep.json",
                                 "sweep.csv"}


def test_flops_json_matches_doc(tmp_path):
    out = tmp_path / "flops.json"
    assert flops.main(["--model", "segformer_b0", "--out", str(out), "--json-only"]) == 0
    check_json("flops JSON", json.loads(out.read_text()))


@pytest.fixture
def two_networks(tmp_path, monkeypatch):
    """Two small classifiers of their own weights (so paths.json compares a retrained path with
    pruning), with accuracies, and a budget trace whose second frame no path fits."""
    monkeypatch.chdir(tmp_path)
    onnx.save(cnn(width=16)[0], "wide.onnx")
    onnx.save(cnn(width=8, seed=3)[0], "narrow.onnx")
    Path("acc.csv").write_text("model,path,accuracy,weight_set,source\n"
                               "wide.onnx,full,0.6,wide,test\nnarrow.onnx,full,0.5,narrow,test\n")
    Path("trace.csv").write_text("frame,time_ms\n0,1\n1,0.000001\n2,1\n")
    return ["--model", "wide.onnx", "--model", "narrow.onnx", "--config", "E", "--accuracy", "acc.csv"]


def test_paths_outputs_match_doc(two_networks, capsys):
    assert paths.main([*two_networks, "--out", "p", "--no-plot"]) == 0
    assert sorted(p.name for p in Path("p").iterdir()) == [".run", "paths.csv", "paths.json"]
    doc = json.loads(Path("p/paths.json").read_text())
    assert [r["path"] for r in doc["retrained_vs_pruned"]] == ["narrow.onnx:full"]     # its keys are checked too
    check_json("paths.json", doc)
    check_csv("paths.csv", Path("p/paths.csv"))
    captured = capsys.readouterr()
    err = captured.err
    assert "simulating path 1/2 wide.onnx:full" in err and "simulating path 2/2 narrow.onnx:full" in err
    # no pruned path beside the base: said so, not "out of the pruned paths' range" (a new user's reading)
    assert "% retrained (no pruned path of wide.onnx:full spans its accuracy)" in captured.out


def test_rdd_outputs_match_doc(two_networks, capsys):
    assert rdd.main([*two_networks, "--budgets", "trace.csv", "--out", "r", "--quiet"]) == 0
    assert sorted(p.name for p in Path("r").iterdir()) == [".run", "frames.csv", "rdd.json"]
    doc = json.loads(Path("r/rdd.json").read_text())
    assert [f["miss"] for f in doc["frames"]] == [False, True, False]
    check_json("rdd.json", doc)
    check_csv("frames.csv", Path("r/frames.csv"))
    assert capsys.readouterr().err == ""                 # --quiet: no progress


def test_paths_and_rdd_name_a_file_called_like_a_preset_by_its_tag(two_networks):
    """A file naming small's fields "E" was reported as config E; both tools write the folder's
    tag (``sim.outputs.config_tag``), E and a hash of its fields."""
    Path("fake_e.toml").write_text('base = "small"\nname = "E"\n')
    args = [*two_networks[:-4], "--config", "fake_e.toml", *two_networks[-2:]]
    assert paths.main([*args, "--out", "p", "--no-plots", "--quiet"]) == 0
    assert rdd.main([*args, "--budgets", "trace.csv", "--out", "r", "--quiet"]) == 0
    for doc in (json.loads(Path(f).read_text()) for f in ("p/paths.json", "r/rdd.json")):
        assert doc["config"].startswith("E-") and doc["config"] != "E", doc["config"]


def test_sweep_outputs_match_doc(tmp_path):
    """A grid (its keys are written only then) with an invalid point, over E at 64x64."""
    out = tmp_path / "s"
    assert sweep.main(["--model", "segformer_b0", "--size", "64x64", "--grid", "num_pe=16,0", "--base", "E",
                       "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-plot"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".run", "sweep.csv", "sweep.json"]
    doc = json.loads((out / "sweep.json").read_text())
    assert [i["config"] for i in doc["invalid"]] == ["num_pe=0"]
    check_json("sweep.json", doc)
    check_csv("sweep.csv", out / "sweep.csv")


def test_checker_catches_an_undocumented_or_missing_key():
    """The check is not vacuous: a key the page does not list, or one it lists but missing, fails it."""
    doc = {"kind": "time_ms", "frames": [], "summary": {}, "surprise": 1}
    with pytest.raises(AssertionError, match="not in docs"):
        check_json("rdd.json", doc)
    with pytest.raises(AssertionError, match="but not written"):
        check_json("rdd.json", {"kind": "time_ms"})
    assert re.search(r"\| `kind` \| str \|", DOC.read_text())
