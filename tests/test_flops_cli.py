"""``python -m mapper.flops``: JSON output and bad-input handling (run as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mapper.flops", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_writes_json_and_table(tmp_path):
    r = run(["--model", "detr", "--size", "512x640"], tmp_path)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "build" / "flops" / "detr_512x640.json"     # the size is in the name
    doc = json.loads(path.read_text())
    assert {"model", "variant", "input", "total_macs", "shares", "layers"} <= set(doc)
    assert doc["model"] == "detr" and doc["input"] == [512, 640, 3]
    assert doc["total_macs"] == sum(l["macs"] for l in doc["layers"])
    for layer in doc["layers"]:
        assert set(layer) == {"name", "kind", "part", "shape", "macs"}
    assert abs(sum(doc["shares"]["part"].values()) - 1) < 1e-9
    assert abs(sum(doc["shares"]["kind"].values()) - 1) < 1e-9
    assert doc["shares"]["part"]["backbone"] > 0.8
    assert "multiply-accumulate" in r.stdout
    assert "backbone.layer1.0.conv2" in r.stdout
    assert [p.name for p in path.parent.iterdir()] == ["detr_512x640.json"]    # no temp file left


def test_variant_in_file_name_and_json_only(tmp_path):
    out = tmp_path / "o"
    r = run(["--model", "ofa_resnet50", "--variant", "d=0,e=0.2,w=0.65", "--out", str(out), "--json-only"],
            tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "ofa_resnet50_d0_e0.2_w0.65.json").read_text())
    assert doc["variant"] == "d0_e0.2_w0.65"
    assert r.stdout.strip().splitlines() == [f"wrote {out / 'ofa_resnet50_d0_e0.2_w0.65.json'}"]


@pytest.mark.parametrize("args, needle, choice", [
    (["--model", "nosuch"], "'nosuch'", "resnet50"),
    (["--model", "detr", "--size", "12x"], "'12x'", "HxW"),
    (["--model", "detr", "--size", "0x5"], "'0x5'", "HxW"),
    (["--model", "ofa_resnet50", "--variant", "d=7"], "d=", "0, 1, 2"),
    (["--model", "ofa_resnet50", "--variant", "z=1"], "'z'", "d, e, w"),
    (["--model", "resnet50", "--variant", "fast"], "'fast'", "full"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle, choice):
    r = run(args, tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and choice in lines[0]
    assert not (tmp_path / "build").exists()
    assert r.stdout == ""


@pytest.mark.parametrize("tool, out, written", [
    # a file name with the tool's suffix is the file (not a folder called my.json holding the file)
    ("mapper.flops", "my.json", "my.json"),
    ("mapper.onnx_export", "sub/my.ONNX", "sub/my.ONNX"),
    # a folder, existing or not, gets the file named by the run
    ("mapper.flops", "res", "res/segformer_b0_32x32.json"),
    ("mapper.onnx_export", "res.d", "res.d/segformer_b0_32x32.onnx"),
])
def test_out_names_the_file_or_its_folder(tmp_path, tool, out, written):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", tool, "--model", "segformer_b0", "--size", "32x32", "--out", out],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote {written}" in r.stdout, r.stdout
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [written]
