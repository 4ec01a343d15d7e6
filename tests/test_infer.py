"""``make run`` (``python -m sim.infer``): outputs, run.json, pictures, images and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hw.config import get_config
from hw.timing import schedule
from mapper.calibrate import prepare
from mapper.images import calibration_image, preprocess, quantize_input, synthetic_image
from mapper.program import build_program
from mapper.workloads import build_model
from sim import accuracy, infer
from sim.functional import CheckError
from sim.golden_network import class_map, run_network
from sim.inference import network_parameters
from sub_make import run_make

REPO = Path(__file__).resolve().parents[1]
B0 = ["--model", "segformer_b0", "--config", "small", "--size", "32x32"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv: list[str]) -> int:
    """``sim.infer.main``, with argparse's exits turned into their status."""
    try:
        return infer.main([*argv, "--quiet"])
    except SystemExit as e:
        return e.code


def golden_outputs(model, seed: int, rgb: np.ndarray) -> dict:
    """The golden whole-network model's outputs on ``rgb`` (independent of the program)."""
    _, q = prepare(model, seed)
    return {name: value for name, value in run_network(q, quantize_input(preprocess(rgb)))}


def files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def b0_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "b0"
    assert run([*B0, "--out", str(out)]) == 0
    return out, json.loads((out / "run.json").read_text())


def test_segmentation_outputs_are_the_golden_models_and_timed_as_the_program(b0_run):
    out, doc = b0_run
    assert sorted(p.name for p in out.iterdir()) == [".run", "output.npy", "output.png", "run.json"]
    model, cfg = build_model("segformer_b0", size=(32, 32)), get_config("small")
    rgb = synthetic_image(32, 32, 0)
    golden = golden_outputs(model, 0, rgb)
    last = model.layers[-1]
    classes = np.load(out / "output.npy")
    assert classes.dtype == np.uint8 and classes.shape == (32, 32)
    np.testing.assert_array_equal(classes, class_map(golden[last.inputs[0]], 32, 32))

    weights, q = prepare(model, 0)
    program = build_program(q, cfg, image=quantize_input(preprocess(rgb)))
    assert doc["cycles"] == schedule(program.stream, cfg).total_cycles
    assert doc["program"]["instructions"] == len(program.stream)
    assert doc["program"]["dram_bytes"] == program.footprint <= doc["program"]["dram_capacity_bytes"]
    assert doc["time_ms"] == pytest.approx(doc["cycles"] / (cfg.clock_ghz * 1e6))
    assert 0 < doc["energy_onchip_uj"] < doc["energy_uj"]
    expected = accuracy.compare(q, weights, preprocess(rgb)).output
    assert doc["agreement"] == pytest.approx(expected) and 0.5 < doc["agreement"]["pixel_agreement"] <= 1


def test_run_json_fields_and_picture(b0_run):
    out, doc = b0_run
    assert {"model", "variant", "size", "config", "task", "image", "seed", "cycles", "time_ms", "energy_uj",
            "bit_exact", "agreement", "program", "output", "wall_s"} <= set(doc)
    assert (doc["model"], doc["size"], doc["config"], doc["task"], doc["seed"], doc["calib_images"]) == \
        ("segformer_b0", [32, 32], "small", "segmentation", 0, 1)
    assert doc["saturated_outputs"] is None             # a class map: no int8 output values
    assert doc["image"] == {"source": "synthetic", "seed": 0}
    assert doc["bit_exact"]["verdict"] is True and doc["bit_exact"]["tensors"] > 100
    assert doc["bit_exact"]["elements"] > 32 * 32
    assert set(doc["wall_s"]) == {"weights", "program", "functional", "float_reference", "timing", "total"}
    assert doc["wall_s"]["total"] >= doc["wall_s"]["functional"] > 0
    classes = np.load(out / "output.npy")
    top = doc["output"]["top_classes"]
    assert [t["share"] for t in top] == sorted((t["share"] for t in top), reverse=True)
    assert top[0]["share"] == np.mean(classes == top[0]["class"])
    names = infer.class_names("segmentation", 150)
    assert names[:3] == ["wall", "building", "sky"] and len(names) == 150
    assert all(t["name"] == names[t["class"]] for t in top)
    assert (out / "output.png").read_bytes()[:8] == PNG_MAGIC
    from PIL import Image
    picture = np.asarray(Image.open(out / "output.png").convert("RGB"))
    assert picture.shape[0] > 300 and picture.shape[1] > 600 and picture.std() > 20


def test_classification_logits_and_top5(tmp_path):
    out = tmp_path / "rn"
    assert run(["--model", "resnet50", "--config", "E", "--size", "32x32", "--seed", "3", "--out", str(out)]) == 0
    doc = json.loads((out / "run.json").read_text())
    model = build_model("resnet50", size=(32, 32))
    golden = golden_outputs(model, 3, synthetic_image(32, 32, 3))["fc"].reshape(-1).astype(np.int64)
    logits = np.load(out / "output.npy")
    assert logits.shape == (1000,) and logits.dtype == np.float32
    scale = doc["output"]["scale"]
    np.testing.assert_array_equal(np.round(logits / scale).astype(np.int64), golden)
    at_limit = int(np.count_nonzero((golden == -128) | (golden == 127)))
    assert doc["saturated_outputs"] == {"values": at_limit, "share": at_limit / 1000}
    top5 = doc["output"]["top5"]
    assert [t["class"] for t in top5] == list(np.argsort(-golden, kind="stable")[:5])
    names = infer.class_names("classification", 1000)
    assert (names[0], names[999]) == ("tench", "toilet tissue")
    assert all(t["name"] == names[t["class"]] for t in top5)
    assert set(doc["agreement"]) == {"top1_agrees", "top5_overlap"} and doc["task"] == "classification"
    assert (out / "output.png").read_bytes()[:8] == PNG_MAGIC


def test_detection_logits_boxes_and_top_queries(tmp_path):
    out = tmp_path / "detr"
    # at tests/test_program.py's size on E, so that make test searches DETR's tilings there once
    assert run(["--model", "detr", "--config", "E", "--size", "64x96", "--out", str(out)]) == 0
    doc = json.loads((out / "run.json").read_text())
    with np.load(out / "output.npz") as npz:
        logits, boxes = npz["class_logits"], npz["boxes"]
    assert logits.shape == (100, 81) and boxes.shape == (100, 4)
    assert np.all((boxes >= 0) & (boxes <= 1))
    queries = doc["output"]["top_queries"]
    assert len(queries) == infer.TOP_QUERIES
    assert [q["score"] for q in queries] == sorted((q["score"] for q in queries), reverse=True)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)                 # DETR: softmax over 80 classes and "no object"
    best = queries[0]
    assert best["score"] == pytest.approx(probs[:, :80].max(), rel=1e-5)
    assert best["name"] == infer.class_names("detection", 81)[best["class"]] and best["class"] < 80
    assert infer.class_names("detection", 81)[80] == "no object"
    assert set(doc["agreement"]) == {"query_class_agreement", "box_l1"}
    assert (out / "output.png").read_bytes()[:8] == PNG_MAGIC


def test_png_and_npy_images_of_the_same_pixels_give_the_same_output(tmp_path):
    from PIL import Image
    rgb = synthetic_image(40, 64, 11)
    Image.fromarray(rgb).save(tmp_path / "scene.png")
    np.save(tmp_path / "scene.npy", rgb.astype(np.float32) / 255)
    results = []
    for name in ("scene.png", "scene.npy"):
        out = tmp_path / f"out_{name}"
        assert run([*B0, "--image", str(tmp_path / name), "--out", str(out)]) == 0
        results.append((np.load(out / "output.npy"), json.loads((out / "run.json").read_text())))
    (a, doc_a), (b, doc_b) = results
    np.testing.assert_array_equal(a, b)
    assert doc_a["image"]["original_size"] == [40, 64] and "bilinear" in doc_a["image"]["fitted"]
    assert doc_a["image"]["sha256_8"] != doc_b["image"]["sha256_8"]
    model = build_model("segformer_b0", size=(32, 32))
    fitted, _ = infer.fit_image(rgb, 32, 32, "segmentation")
    golden = golden_outputs(model, 0, fitted)
    np.testing.assert_array_equal(a, class_map(golden[model.layers[-1].inputs[0]], 32, 32))


def test_fit_image_follows_each_pipeline():
    rgb = synthetic_image(60, 90, 2)
    for task in ("segmentation", "classification", "detection"):
        fitted, how = infer.fit_image(rgb, 32, 48, task)
        assert fitted.shape == (32, 48, 3) and fitted.dtype == np.uint8 and how
        same, _ = infer.fit_image(fitted, 32, 48, task) if task != "classification" else (fitted, "")
        np.testing.assert_array_equal(same, fitted)                    # the size already fits: unchanged
    flat = np.full((50, 70, 3), 77, np.uint8)
    for task in ("segmentation", "classification", "detection"):
        assert np.all(infer.fit_image(flat, 20, 20, task)[0] == 77)
    # classification: resize to cover 256/224 of the crop, then the centre crop
    stripes = np.zeros((64, 256, 3), np.uint8)
    stripes[:, 128:] = 255                                        # left half black, right half white
    crop, _ = infer.fit_image(stripes, 56, 56, "classification")  # resized to 64 x 256, centre 56 x 56
    assert np.all(crop[:, :20] == 0) and np.all(crop[:, -20:] == 255)


def test_more_calibration_images_set_other_ranges():
    """CALIB_IMAGES=k calibrates on k images (a new user's ViT logits, saturated at one): the
    ranges differ from one image's, and the first of the k is the one image."""
    model = build_model("segformer_b0", size=(32, 32))
    one, four = (network_parameters(model, 0, k)[1] for k in (1, 4))
    assert any(one.scale(n) != four.scale(n) for n in one.layers)
    assert np.array_equal(calibration_image(32, 32, 0, 4)[0], calibration_image(32, 32, 0))


def test_logits_at_the_int8_limits_are_noted(tmp_path, capsys):
    """A new user's ViT block, calibrated on one image, saturated its top logit at 127 x scale and
    make run printed top1_agrees True from the clipped logits without a word: run.json counts the
    output values at the int8 limits and the summary suggests more calibration images."""
    import onnx
    from onnx_graphs import vit
    onnx.save(vit(classes=5)[0], tmp_path / "vit.onnx")
    out = tmp_path / "vit"
    assert run(["--model", str(tmp_path / "vit.onnx"), "--config", "E", "--seed", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "run.json").read_text())
    ints = np.round(np.load(out / "output.npy") / doc["output"]["scale"]).astype(np.int64)
    at_limit = int(np.count_nonzero((ints == -128) | (ints == 127)))
    assert at_limit > 0 and doc["saturated_outputs"] == {"values": at_limit, "share": at_limit / ints.size}
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "at the int8 limits" in note[0] and "CALIB_IMAGES=8 (--calib-images 8)" in note[0]


def test_run_dir_names_everything_that_changes_the_result():
    model, cfg = build_model("segformer_b0", size=(32, 32)), get_config("small")
    assert infer.run_dir(model, cfg, True, "synthetic", 0) == "segformer_b0_small_32x32_synthetic_seed0"
    assert infer.run_dir(model, cfg.replace(dram_mib=64), False, "image-cat-0123abcd", 5) == \
        "segformer_b0_small_dram_mib64_image-cat-0123abcd_seed5"
    assert infer.run_dir(model, cfg, True, "synthetic", 0, calib_images=8) == \
        "segformer_b0_small_32x32_synthetic_seed0_calib8"


BAD = [
    (["--image", "{tmp}/missing.png"], "missing.png: cannot read the image: No such file or directory"),
    (["--image", "{tmp}"], "cannot read the image: a folder, not a regular file"),
    (["--image", "{tmp}/text.png"], "text.png' is in no picture format Pillow recognises"),
    (["--image", "{tmp}/two_channels.npy"], "holds (8, 8, 2), not H x W x 3"),
    (["--image", "{tmp}/range.npy"], "outside [0, 1]"),
    (["--image", "{tmp}/ints.npy"], "holds int32 values"),
    (["--image", "{tmp}/nan.npy"], "NaN or infinite"),
    (["--image", "{tmp}/png_named.npy"], "is no readable .npy array (it is no .npy or .npz file)"),
    (["--image", "{tmp}/objects.npy"], "is no readable .npy array (it holds Python objects (dtype object), stored pickled"),
    (["--image", "{tmp}/huge_header.npy"], "its header declares (100000, 100000, 3) of uint8, 30,000,000,000 bytes, "
                                           "but the file holds 64 bytes of data"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--config", "Q"], "unknown configuration 'Q'"),
    (["--size", "32"], "bad --size '32'"),
    (["--variant", "blocks=9"], "segformer_b0"),
    (["--seed", "-1"], "--seed: bad seed '-1'"),
    (["--seed", "one"], "--seed: bad seed 'one'"),
    (["--calib-images", "0"], "0 calibration images: give 1 to 64"),
    (["--calib-images", "x"], "'x' is not a whole number in the digits 0-9 (calibration images)"),
    (["--dram-mib", "1"], "more than the 1,048,576 bytes of DRAM configured (dram_mib = 1)"),
    (["--dram-mib", "0"], "--dram-mib 0: bad configuration override: dram_mib must be a positive integer"),
    (["--model", "anchor_detr"], "opaque product"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "text.png").write_text("not an image")
    np.save(tmp / "two_channels.npy", np.zeros((8, 8, 2), np.uint8))
    np.save(tmp / "range.npy", np.full((8, 8, 3), 2.0, np.float32))
    np.save(tmp / "ints.npy", np.zeros((8, 8, 3), np.int32))
    np.save(tmp / "nan.npy", np.full((8, 8, 3), np.nan))
    (tmp / "png_named.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    np.save(tmp / "objects.npy", np.full((8, 8, 3), 0.5, object), allow_pickle=True)
    with open(tmp / "huge_header.npy", "wb") as f:     # numpy allocated 30 GB before reading: a MemoryError
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (100000, 100000, 3)})
        f.write(bytes(64))
    return tmp


@pytest.mark.parametrize("extra, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(extra, needle, b0_run, bad_files, capsys):
    out, _ = b0_run                                       # an earlier run's results, beside
    before, around = files(out), sorted(p.name for p in out.parent.iterdir())
    args = dict(zip(B0[::2], B0[1::2]))
    args.update(dict(zip(extra[::2], (v.format(tmp=bad_files) for v in extra[1::2]))))
    argv = [s for kv in args.items() for s in kv]
    assert run([*argv, "--out", str(out.parent / "bad")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert files(out) == before and sorted(p.name for p in out.parent.iterdir()) == around


def test_a_dram_too_small_names_the_model_once(tmp_path, capsys):
    """``make run`` with too small a DRAM said "cannot run segformer_b0 on small: segformer_b0: ..."."""
    assert run([*B0, "--dram-mib", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot run segformer_b0 on small: its weights alone need" in err and err.count("segformer_b0") == 1, err
    assert not any(tmp_path.iterdir())


def test_unwritable_output_and_a_check_mismatch_write_nothing(b0_run, tmp_path, capsys, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert run([*B0, "--out", str(foreign)]) == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out, _ = b0_run
    before, around = files(out), sorted(p.name for p in out.parent.iterdir())

    def mismatch(program, qmodel, x, progress=None):
        raise CheckError("stage0.block0.attn.q: element (0, 0, 3) is 0x05 (5), the golden model says 0x07 (7)")

    monkeypatch.setattr(infer, "check_program", mismatch)
    assert run([*B0, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs from the golden model" in err and "element (0, 0, 3)" in err and err.count("\n") == 1
    assert files(out) == before and sorted(p.name for p in out.parent.iterdir()) == around


def test_the_weights_phase_reports_while_it_runs(monkeypatch):
    """make run MODEL=segformer_b2 logged nothing for the 20 s of its weights and calibration (float
    passes that report nothing): a log's line comes every period during that phase too."""
    import functools
    import io
    import time
    from hw.cli import StageTicker

    class Done(Exception):
        pass

    def slow_parameters(*args):
        time.sleep(0.4)
        raise Done

    log = io.StringIO()
    monkeypatch.setattr(infer, "StageTicker", functools.partial(StageTicker, stream=log, period=0.1))
    monkeypatch.setattr(infer, "network_parameters", slow_parameters)
    model = build_model("segformer_b0", size=(32, 32))
    with pytest.raises(Done):
        infer.infer(model, get_config("small"), np.zeros((32, 32, 3), np.float32), 3, progress=True)
    assert "segformer_b0 on small: weights and calibration (seed 3, 1 image), 0 s elapsed" in log.getvalue()


def test_command_line_and_make_target(tmp_path):
    """The real entry point: one line and status 2 for a bad image, no traceback; make passes
    IMAGE and SEED through."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "sim.infer", *B0, "--image", "nowhere.png"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nowhere.png: cannot read the image: No such file" in r.stderr
    assert not (tmp_path / "build").exists()
    r = run_make(["-n", "run", "MODEL=resnet50", "CFG=E", "IMAGE=cat.jpg", "SEED=4", "SIZE=64x64"], cwd=REPO, timeout=60)
    assert "-m sim.infer --model='resnet50'" in r.stdout and "--image='cat.jpg'" in r.stdout
    assert "--seed='4'" in r.stdout and "--size='64x64'" in r.stdout and "--config='E'" in r.stdout


def test_a_16_bit_grey_picture_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from sim.infer import read_image
    grey = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 100], [255, 7]] and (rgb[..., 0] == rgb[..., 2]).all()


def test_a_float_tiff_follows_the_rule_of_float_arrays(tmp_path):
    """Pillow's convert("RGB") would clip floats in [0, 1] to black; they are scaled like a float .npy,
    and floats outside [0, 1] or integers beyond 16 bits are refused, not clipped."""
    from PIL import Image

    from hw.cli import UsageError
    from sim.infer import read_image
    Image.fromarray(np.array([[0, 0.5], [1, 100 / 255]], np.float32), mode="F").save(tmp_path / "f.tif")
    rgb = read_image(tmp_path / "f.tif")
    assert rgb.dtype == np.uint8 and rgb[..., 1].tolist() == [[0, 128], [255, 100]]
    Image.fromarray(np.full((2, 2), 3.0, np.float32), mode="F").save(tmp_path / "hdr.tif")
    with pytest.raises(UsageError, match=r"floats from 3 to 3, outside \[0, 1\]"):
        read_image(tmp_path / "hdr.tif")
    Image.fromarray(np.full((2, 2), 1 << 20, np.int32), mode="I").save(tmp_path / "i32.tif")
    with pytest.raises(UsageError, match="32-bit integer samples"):
        read_image(tmp_path / "i32.tif")


def test_an_integer_picture_is_judged_by_its_declared_depth_not_its_values(tmp_path):
    """A 32-bit integer TIFF whose values fit in 16 bits is still a 32-bit image: refused, naming
    its depth, where a 16-bit PGM (which Pillow reads as 32-bit integers too) is scaled."""
    from PIL import Image

    from hw.cli import UsageError
    from sim.infer import read_image
    values = np.array([[0, 257 * 100], [65535, 257 * 7]])
    Image.fromarray(values.astype(np.int32), mode="I").save(tmp_path / "i32.tif")
    with pytest.raises(UsageError, match="has 32-bit integer samples; integer images of 8 or 16 bits are read"):
        read_image(tmp_path / "i32.tif")
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "g16.pgm")
    assert Image.open(tmp_path / "g16.pgm").mode == "I"
    assert read_image(tmp_path / "g16.pgm")[..., 1].tolist() == [[0, 100], [255, 7]]


def test_a_file_in_no_picture_format_is_refused_naming_it_not_a_file_object(tmp_path):
    """A TOML given as --image was refused with Pillow's 'cannot identify image file
    <_io.BufferedReader name=3>': a descriptor number, not the file; now it says what is wrong."""
    from hw.cli import UsageError
    from sim.infer import read_image
    (tmp_path / "accel.png").write_text('num_pe = 4\n')
    with pytest.raises(UsageError) as e:
        read_image(tmp_path / "accel.png")
    assert "accel.png' is in no picture format Pillow recognises; give a PNG" in str(e.value)
    assert "BufferedReader" not in str(e.value)
