"""ONNX files end to end: ``make run``, ``make sim CHECK=1`` and ``sim.accuracy`` take a file's own
weights (and a QDQ file's own quantisation), bit-exact with the golden model built here from the
file; a file that cannot run is one line and status 2 with nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from hw.isa import Op
from mapper.calibrate import prepare, quantize
from mapper.images import calibration_image, preprocess, quantize_input, synthetic_image
from mapper.ir import Constant
from mapper.onnx_export import export_onnx
from mapper.onnx_import import OnnxImportError, load_onnx, qdq_qmodel
from mapper.reference import run_float
from mapper.weights import constant_data, init_weights
from mapper.workloads import build_model
from sim import accuracy, infer
from sim import run as sim_run
from sim.golden_network import class_map, run_network

from onnx_graphs import (align_corners_resize, elementwise_extreme, constant_where, resized_position_table, qk_norm_attention, rms_norm, computed_position_index, shared_kv_attention, spatial_attention, cross_covariance_attention, crnn_pools, space_to_depth, conformer_conv, wav2vec_features, keras_nhwc, mode_pad, large_kernel, constant_channels, constant_pad, constant_pixels, constant_queries, context_block, mixer, radix_softmax, conv_transpose, grouped_conv_transpose, deeplab, depth_to_space, dilated, elementwise_math, group_norm, channel_attention, coord_attention, eca, integral, interleaved_attention, split_attention, lrn, pre_activation, prelu, self_concat, shufflenet, spatial_slice, strided_conv, subtraction, unet, Graph, activation_graph, c2f, constant_concat, glu, dense_concat, dense_layer, image_input, long_softmax, nested_concat,
                         opaque_product, out, pruned_channel, qdq_cnn, same_padded_stem, token_slices, uneven_conv, vit,
                         yolo_detect, yolo_neck, yolo_v5_detect, anchor_levels)
from onnx_graphs import out as graph_output


def _write(path: Path, proto) -> Path:
    path.write_bytes(proto.SerializeToString())
    return path


def _runs_bit_exact_as_timed(proto, cfg_name: str, tmp_path: Path, seed: int = 5):
    """``make sim CHECK=1`` of the file runs bit-exact, and its program is timed as the simulator times
    it; the model, for more checks."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    path = _write(tmp_path / "graph.onnx", proto)
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", str(seed), "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    program = build_program(random_qmodel(model, seed), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles
    return model


def _status(main, argv: list[str]) -> int:
    """A command's ``main``, with argparse's exits turned into their status."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _run(path: Path, folder: Path, *extra: str) -> tuple[np.ndarray, dict]:
    """``make run`` of the file on E: its output logits and run.json."""
    assert _status(infer.main, ["--model", str(path), "--config", "E", "--out", str(folder), "--quiet", *extra]) == 0
    return np.load(folder / "output.npy"), json.loads((folder / "run.json").read_text())


def _golden_logits(qmodel, seed: int) -> np.ndarray:
    """The golden model's int8 output on ``make run``'s synthetic image of ``seed``."""
    h, w, _ = qmodel.model.input
    outs = dict(run_network(qmodel, quantize_input(preprocess(synthetic_image(h, w, seed)))))
    return outs[qmodel.model.layers[-1].name].reshape(-1).astype(np.int64)


def _float_file_qmodel(path: Path, seed: int):
    """The file's float weights, quantised here as any float model is (not through prepare)."""
    imp = load_onnx(path)
    h, w, _ = imp.model.input
    return quantize(imp.model, imp.weights, calibration_image(h, w, seed))


def test_float_file_runs_with_its_own_weights(tmp_path):
    """A class-token ViT (its Constant layers are the file's data): the run's logits are the golden
    model's of the file's weights, and other weights in the same graph give other logits."""
    runs = []
    for seed in (0, 1):
        path = _write(tmp_path / f"vit_{seed}.onnx", vit(cls_token=True, seed=seed)[0])
        logits, doc = _run(path, tmp_path / f"run_{seed}")
        expected = _golden_logits(_float_file_qmodel(path, 0), 0)
        np.testing.assert_array_equal(np.round(logits / doc["output"]["scale"]).astype(np.int64), expected)
        assert doc["bit_exact"]["verdict"] and doc["task"] == "classification"
        assert doc["model"] == load_onnx(path).model.name
        runs.append(logits)
    assert not np.array_equal(*runs)


def test_qdq_file_keeps_its_quantisation(tmp_path):
    """A QDQ CNN: the output scale is the file's QuantizeLinear scale (1/8), not a calibrated one, the
    logits are the golden model's of ``qdq_qmodel``, and negating the file's int8 weights of the
    last layer changes them."""
    proto, wq = qdq_cnn()
    path = _write(tmp_path / "qdq.onnx", proto)
    logits, doc = _run(path, tmp_path / "run")
    assert doc["output"]["scale"] == 1 / 8
    q = qdq_qmodel(load_onnx(path), calibration_image(16, 16, 0))
    np.testing.assert_array_equal(np.round(logits / (1 / 8)).astype(np.int64), _golden_logits(q, 0))

    init = next(t for t in proto.graph.initializer if t.name == "fc.weight.q")
    init.CopyFrom(numpy_helper.from_array(-wq["fc"][0], "fc.weight.q"))
    other, _ = _run(_write(tmp_path / "qdq_negated.onnx", proto), tmp_path / "run_negated")
    assert not np.array_equal(logits, other)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_qdq_file_with_a_pruned_channel_runs_bit_exact(cfg_name, tmp_path):
    """A weight scale of 0 over a channel of zeros (and its int32 bias's, s_in * s_w = 0) was refused
    at import; as scale 1 the file runs bit-exact with its own quantisation (``sim.run --check``)."""
    proto = pruned_channel(pruned_channel(qdq_cnn(int32_bias=True)[0], 5, 0.0), 5, 0.0, "conv.bias")
    _runs_bit_exact_as_timed(proto, cfg_name, tmp_path)


def test_a_zoo_model_exported_runs_as_the_zoo_model(tmp_path):
    """SegFormer-B0 written as ONNX with its seeded weights (``make onnx``) and run from the file gives
    the zoo model's class map bit for bit: the golden model of the zoo model and seed 0."""
    model = build_model("segformer_b0", size=(32, 32))
    path = _write(tmp_path / "b0.onnx", export_onnx(model, init_weights(model, 0)))
    folder = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(folder), "--quiet"]) == 0
    golden = dict(run_network(prepare(model, 0)[1], quantize_input(preprocess(synthetic_image(32, 32, 0)))))
    last = model.layers[-1]
    np.testing.assert_array_equal(np.load(folder / "output.npy"), class_map(golden[last.inputs[0]], 32, 32))
    doc = json.loads((folder / "run.json").read_text())
    assert doc["task"] == "segmentation"
    # the file's upsampled scores are an output too, which the accelerator does not write: said, not
    # saved from the class map's buffer (it was: NaNs and 1e38s under the scores' name)
    assert list(doc["output"]["unwritten"]) == [last.name] and not (folder / "output.npz").exists()


def test_a_class_map_beside_other_outputs_is_saved_as_argmax_gives_it(tmp_path):
    """Scores, their ArgMax (keepdims=0) and the logits before them as graph outputs: output.npz holds
    the logits and the classes in ArgMax's shape; the scores are named as not written."""
    g = Graph(11)
    x = g.op("Conv", ["pixel_values", g.weight("w", 5, 3, 4, 4)], "/conv", kernel_shape=[4, 4], strides=[4, 4])
    y = g.op("Resize", [x, "", g.const(np.array([1, 1, 4, 4], np.float32), np.float32)], "/up", mode="linear",
             coordinate_transformation_mode="half_pixel")
    c = g.op("ArgMax", [y], "", axis=1, keepdims=0)
    path = _write(tmp_path / "three.onnx", g.model([image_input(3, 16, 16)], [graph_output(n) for n in (x, y, c)]))
    run = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(run), "--quiet"]) == 0
    saved = np.load(run / "output.npz")
    assert sorted(saved) == sorted([x, c]) and saved[c].shape == (1, 16, 16) and saved[c].dtype == np.int64
    np.testing.assert_array_equal(saved[c][0], np.load(run / "output.npy"))
    assert json.loads((run / "run.json").read_text())["output"]["unwritten"] == {
        y: f"the accelerator writes their arg-max, {c!r}, as the class map instead"}


def test_a_class_map_of_scores_at_the_input_size_needs_no_resize(tmp_path):
    """A head whose logits are already at the input size takes each pixel's class with no Resize (an
    ArgMax right after the last convolution): it was refused as 'an arg-max other than over the
    channels (axis 1) of an NCHW resize', though it is over axis 1.  The import writes it as the class
    map of a bilinear resize of scale 1, which reads each pixel with weight 1: the run is bit-exact,
    its class map is the arg-max of the golden model's int8 logits themselves, and the float model's
    class map is onnxruntime's on every pixel."""
    g = Graph(5)
    x = g.op("Conv", ["pixel_values", g.weight("w", 5, 3, 3, 3)], "/conv", kernel_shape=[3, 3], pads=[1] * 4)
    c = g.op("ArgMax", [x], "", axis=1, keepdims=1)
    proto = g.model([image_input(3, 16, 16)], [graph_output(x), graph_output(c)])
    model = _runs_bit_exact_as_timed(proto, "small", tmp_path)
    path, run = tmp_path / "graph.onnx", tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(run), "--quiet"]) == 0
    assert json.loads((run / "run.json").read_text())["task"] == "segmentation"
    golden = dict(run_network(prepare(model, 0)[1], quantize_input(preprocess(synthetic_image(16, 16, 0)))))
    logits = golden[model.layers[-1].inputs[0]]
    np.testing.assert_array_equal(np.load(run / "output.npy"), logits.argmax(axis=-1))
    assert sorted(np.load(run / "output.npz")) == sorted([x, c])

    import onnxruntime as ort
    image = preprocess(synthetic_image(16, 16, 0))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        [c], {"pixel_values": image.transpose(2, 0, 1)[None]})[0]
    imported = load_onnx(path)
    scores = dict(run_float(model, imported.weights, image))[imported.class_maps[c]]
    np.testing.assert_array_equal(scores.argmax(axis=-1)[None, None], want)


def test_upsampled_scores_without_argmax_are_no_class_map(tmp_path):
    """A file ending in a resize to the input size but no ArgMax: the accelerator writes the scores,
    so the run's output is them (task ``other``), not a class map."""
    g = Graph(9)
    x = g.op("Conv", ["pixel_values", g.weight("w", 5, 3, 4, 4)], "/conv", kernel_shape=[4, 4], strides=[4, 4])
    y = g.op("Resize", [x, "", g.const(np.array([1, 1, 4, 4], np.float32), np.float32)], "/up", mode="linear",
             coordinate_transformation_mode="half_pixel")
    path = _write(tmp_path / "scores.onnx", g.model([image_input(3, 16, 16)], [graph_output(y)]))
    run = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "E", "--out", str(run), "--quiet"]) == 0
    assert json.loads((run / "run.json").read_text())["task"] == "other"
    q = _float_file_qmodel(path, 0)
    name = q.model.layers[-1].name
    scores = np.load(run / "output.npz")[y]              # the graph output's name and NCHW shape
    assert scores.shape == (1, 5, 16, 16)
    np.testing.assert_array_equal(np.round(scores / q.layers[name].scale).astype(np.int64),
                                  _golden_logits(q, 0).reshape(16, 16, 5).transpose(2, 0, 1)[None])
    # its agreement with the float network, which run.json gave only for segmentation, classification
    # and detection: onnxruntime's scores of the same image, here
    import onnxruntime as ort
    image = preprocess(synthetic_image(16, 16, 0)).transpose(2, 0, 1)[None]
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": image})
    sqnr = 10 * np.log10(np.sum(want.astype(np.float64) ** 2) / np.sum((want - scores.astype(np.float64)) ** 2))
    agreement = json.loads((run / "run.json").read_text())["agreement"]
    assert agreement["sqnr_db"] == pytest.approx(sqnr, abs=0.05) and agreement["sqnr_db"] > 25
    assert agreement["correlation"] == pytest.approx(np.corrcoef(want.ravel(), scores.ravel())[0, 1], abs=1e-4)


def test_a_concatenation_as_a_graph_output_is_checked_and_saved(tmp_path):
    """A concatenation is written by its parts' steps, never whole, so the run's outputs missed it: a
    graph output that is one (YOLOv8's levels, ``Concat([box, cls])``) was left out of output.npz
    while the run said it wrote it.  It is read after the last step and compared like the others."""
    g = Graph(1)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("c1.w", 8, 3, 3, 3)], "/c1", kernel_shape=[3, 3], pads=[1] * 4)])
    a = g.op("Conv", [x, g.weight("c2.w", 6, 8, 1, 1)], "/c2", kernel_shape=[1, 1])
    b = g.op("Conv", [x, g.weight("c3.w", 4, 8, 1, 1)], "/c3", kernel_shape=[1, 1])
    cat = g.op("Concat", [a, b], "/head", axis=1)
    path = _write(tmp_path / "cat.onnx", g.model([image_input(3, 8, 8, "input")], [graph_output(a), graph_output(cat)]))
    run = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "E", "--out", str(run), "--quiet"]) == 0
    saved = np.load(run / "output.npz")
    assert sorted(saved) == sorted([a, cat]) and saved[cat].shape == (1, 10, 8, 8)
    np.testing.assert_array_equal(saved[cat][:, :6], saved[a])
    assert json.loads((run / "run.json").read_text())["bit_exact"]["tensors"] == 4     # three convolutions, the concatenation


def test_every_graph_output_is_computed_checked_and_saved(tmp_path, capsys):
    """A graph output that a later node also reads (a feature map and the ReLU after it) is an
    output as well: not fused away, compared by the check, saved under its name."""
    g = Graph(10)
    feat = g.op("Conv", ["pixel_values", g.weight("w", 4, 3, 3, 3)], "/conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Relu", [feat], "/relu")
    path = _write(tmp_path / "both.onnx", g.model([image_input(3, 8, 8)], [graph_output(feat), graph_output(y)]))
    run = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(run), "--quiet"]) == 0
    saved = np.load(run / "output.npz")
    assert sorted(saved) == sorted([feat, y]) and saved[feat].shape == saved[y].shape == (1, 4, 8, 8)
    assert saved[feat].min() < 0 and np.array_equal(saved[y], np.maximum(saved[feat], 0))
    assert sim_run.main(["--model", str(path), "--config", "small", "--check", "--seed", "1", "--quiet",
                         "--no-plots", "--out", str(tmp_path / "sim")]) == 0
    assert "2 tensors" in capsys.readouterr().out


def test_prepare_chooses_the_files_weights_whatever_the_seed(tmp_path):
    path = _write(tmp_path / "vit.onnx", vit(cls_token=True)[0])
    imp = load_onnx(path)
    for seed in (0, 4):
        weights, q = prepare(imp.model, seed)
        assert weights.keys() == imp.weights.keys()
        for name, arrays in imp.weights.items():
            for key, value in arrays.items():
                np.testing.assert_array_equal(weights[name][key], value)
        fc = imp.model.layers[-1].name
        np.testing.assert_array_equal(q.layers[fc].weight, prepare(imp.model, 0)[1].layers[fc].weight)
    # the file rewritten with other weights (and another modification time, which the import's cache
    # keys on): the model read before is no longer the file's, and its weights are not taken from it
    _write(path, vit(cls_token=True, seed=1)[0])
    os.utime(path, ns=(1, 1))
    with pytest.raises(OnnxImportError, match="the file changed since"):
        prepare(imp.model, 0)


def test_check_and_accuracy_take_the_files_weights(tmp_path, capsys):
    vit_path = _write(tmp_path / "vit.onnx", vit(cls_token=True)[0])
    for path in (vit_path, _write(tmp_path / "qdq.onnx", qdq_cnn()[0])):
        folder = tmp_path / f"sim_{path.stem}"
        assert sim_run.main(["--model", str(path), "--config", "tiny", "--check", "--seed", "3", "--no-plots",
                             "--quiet", "--out", str(folder)]) == 0
        assert json.loads((folder / "report.json").read_text())["check"]["tensors"] > 0
        assert "functional check passed" in capsys.readouterr().out

    report = tmp_path / "accuracy.json"
    assert _status(accuracy.main, ["--model", str(vit_path), "--seed", "2", "--output", str(report)]) == 0
    imp = load_onnx(vit_path)
    expected = accuracy.compare(_float_file_qmodel(vit_path, 2), imp.weights,
                                preprocess(synthetic_image(32, 32, 2))).to_json()
    got = json.loads(report.read_text())["images"][0]
    assert got["layers"] == json.loads(json.dumps(expected["layers"])) and got["output"] == expected["output"]


def test_an_onnx_constant_is_the_files_data_never_generated(tmp_path):
    imp = load_onnx(_write(tmp_path / "vit.onnx", vit(cls_token=True)[0]))
    const = next(l for l in imp.model.layers if isinstance(l, Constant))
    assert const.init == "onnx"
    with pytest.raises(ValueError, match=r"file_weights"):
        constant_data(const, np.random.default_rng(0))
    with pytest.raises(ValueError, match=rf"{const.name}: a constant of an ONNX file"):
        init_weights(imp.model, 0)


#: Files that import but cannot run, and what the message says.
CANNOT_RUN = {"opaque": (opaque_product, "opaque product"),
              "long_softmax": (long_softmax, "9000")}


@pytest.mark.parametrize("command", ["run", "check", "accuracy"])
@pytest.mark.parametrize("graph", sorted(CANNOT_RUN))
def test_a_file_that_cannot_run_is_one_line_and_writes_nothing(graph, command, tmp_path, capsys):
    build, needle = CANNOT_RUN[graph]
    path = _write(tmp_path / f"{graph}.onnx", build())
    folder = tmp_path / ("out.json" if command == "accuracy" else "out")      # accuracy writes one JSON file
    argv = {"run": (infer.main, ["--config", "E", "--out", str(folder), "--quiet"]),
            "check": (sim_run.main, ["--config", "E", "--check", "--seed", "0", "--quiet", "--out", str(folder)]),
            "accuracy": (accuracy.main, ["--output", str(folder)])}
    main, args = argv[command]
    assert _status(main, ["--model", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not folder.exists()


def test_external_data_is_read_beside_the_file_not_the_current_folder(tmp_path, monkeypatch):
    import onnx
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "vit.onnx"
    proto = vit(seed=3)[0]
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="vit.bin", size_threshold=0)
    monkeypatch.chdir(tmp_path)                 # not the file's folder
    loaded = load_onnx(path)
    inline = load_onnx(_write(tmp_path / "inline.onnx", vit(seed=3)[0]))
    assert loaded.weights.keys() == inline.weights.keys()
    for name, tensors in inline.weights.items():
        for key, value in tensors.items():
            assert np.array_equal(loaded.weights[name][key], value), (name, key)
    alone = tmp_path / "alone"                  # the graph without the file of its weights
    alone.mkdir()
    (alone / "vit.onnx").write_bytes(path.read_bytes())
    with pytest.raises(OnnxImportError, match="alone/vit.bin: cannot read the external data of .*No such file"):
        load_onnx(alone / "vit.onnx")
    if hasattr(os, "mkfifo"):                   # a named pipe in its place: refused, not waited on
        os.mkfifo(alone / "vit.bin")
        with pytest.raises(OnnxImportError, match=r"vit.bin: cannot read the external data .*: a named pipe \(FIFO\)"):
            load_onnx(alone / "vit.onnx")


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_network_of_one_input_channel_runs_on_the_luma_bit_exact(cfg_name, tmp_path):
    """The ONNX model zoo's super-resolution (ESPCN on the Y channel) was refused by CHECK=1 and make
    run: they feed a one-channel network the image's luma."""
    g = Graph(43)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("w", 8, 1, 5, 5), g.weight("b", 8)], "", kernel_shape=[5, 5],
                           pads=[2] * 4)], "")
    x = g.op("Conv", [x, g.weight("w2", 9, 8, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    _runs_bit_exact_as_timed(g.model([image_input(1, 12, 10, "input")], [out(g.op("DepthToSpace", [x], "", blocksize=3))]),
                             cfg_name, tmp_path)


def test_the_luma_of_an_image_is_normalised_as_its_channels_are():
    from mapper.images import GRAY_MEAN, GRAY_STD, preprocess
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], np.uint8)
    y = preprocess(rgb, 1)
    assert y.shape == (1, 3, 1)
    np.testing.assert_allclose(y[0, :, 0], (np.array([1.0, 0.0, 0.299]) - GRAY_MEAN) / GRAY_STD, rtol=1e-5)
    with pytest.raises(ValueError, match="3 input channels \\(RGB\\) or 1 \\(its luma\\), not 2"):
        preprocess(rgb, 2)


def test_an_input_that_is_no_rgb_image_is_refused_for_what_it_is(tmp_path, capsys, monkeypatch):
    """By make run, and by make sim CHECK=1 before it times the network (it times it without CHECK)."""
    from onnx import TensorProto, helper
    w = numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [w])
    path = _write(tmp_path / "four.onnx", helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    folder = tmp_path / "out"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "its input has 4 channels" in err and err.count("\n") == 1, err
    assert not folder.exists()
    monkeypatch.setattr(sim_run, "simulate", _no_timing)
    assert _status(sim_run.main, ["--model", str(path), "--config", "small", "--check", "--out", str(folder),
                                  "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot run four" in err and "its input has 4 channels" in err and err.count("\n") == 1, err
    assert not folder.exists()


def _no_timing(*args, **kwargs):
    raise AssertionError("timed a network it should have refused first")


def test_a_classifications_other_graph_outputs_are_saved_beside_its_logits(tmp_path):
    """Logits and a feature map as two graph outputs: output.npy holds the logits, output.npz every
    graph output (the feature map was computed and checked, then dropped)."""
    g = Graph(11)
    feat = g.op("Relu", [g.op("Conv", ["pixel_values", g.weight("w", 4, 3, 1, 1)], "/conv", kernel_shape=[1, 1])], "/relu")
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [feat], "/pool")], "", axis=1)
    logits = g.op("Gemm", [pooled, g.weight("fc.weight", 5, 4), g.weight("fc.bias", 5)], "/fc", transB=1)
    path = _write(tmp_path / "two.onnx", g.model([image_input(3, 8, 8)], [graph_output(logits), graph_output(feat)]))
    run = tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", "small", "--out", str(run), "--quiet"]) == 0
    saved = np.load(run / "output.npz")
    assert sorted(saved) == sorted([logits, feat]) and saved[feat].shape == (1, 4, 8, 8)
    assert np.array_equal(saved[logits].reshape(-1), np.load(run / "output.npy"))


#: ``Concat([x, conv1x1(x)])`` built in place, then a 3x3 convolution (``onnx_graphs.dense_concat``):
#: (graph arguments, configuration, whether the 3x3 convolution folds its taps).  Reading ``x``, stored
#: with the concatenation's pitch, it cannot fold (QA found it refused after timing had mapped it
#: folded); reading the whole concatenation, stored without gaps, it still folds.
DENSE_CONCAT = {"member-tiny": (dict(width=6, grow=10), "tiny", False),
                "member-small": (dict(width=6, grow=10), "small", False),
                "member-e_small": (dict(width=6, grow=10), "e_small", False),
                "qa16-e_small": (dict(), "e_small", False),
                "member-second-e_small": (dict(x_first=False), "e_small", False),
                "stride2-e_small": (dict(width=6, grow=10, stride=2), "e_small", False),
                "whole-e_small": (dict(width=6, grow=7, read="whole"), "e_small", True),
                "member-second-small": (dict(width=6, grow=10, x_first=False), "small", False)}


@pytest.mark.parametrize("case", DENSE_CONCAT)
def test_a_convolution_reading_a_concatenation_part_is_mapped_as_stored(case, tmp_path):
    """``make sim CHECK=1`` runs it bit-exact, the stream the simulator times for the 3x3
    convolution is the program's (the same instructions but for addresses; folded or not alike),
    and the simulator's cycles are the program's schedule's (its loads read at the part's pitch)."""
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from mapper.residency import planned
    from hw.config import get_config
    from hw.timing import schedule
    from sim.simulator import simulate
    from sim.streams import step_parts

    kwargs, cfg_name, folded = DENSE_CONCAT[case]
    path = _write(tmp_path / "dense.onnx", dense_concat(**kwargs))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    steps, resident = planned(model, cfg)
    step = next(st for st in steps if st.layer.name.startswith("read"))
    [(timed, _, _)] = step_parts(step, cfg, resident)
    program = build_program(random_qmodel(model, 3), cfg)
    code = next(c for c in program.steps if c.step.layer.name == step.layer.name)
    ran = program.stream[code.start:code.end]
    assert [i.op for i in ran] == [i.op for i in timed]
    fold = ("fold_kh", "fold_kw", "fold_stride")
    loads = [(i, j) for i, j in zip(ran, timed) if i.op == Op.LOAD_INP]
    assert loads and all(i.f[k] == j.f[k] for i, j in loads for k in fold)
    assert all((i.f["fold_kh"] > 1) == folded for i, _ in loads)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


#: DenseNet layers whose convolutions read a part of odd channels (``onnx_graphs.dense_layer``) while
#: their STOREs write the parts beside it: ``x`` first, between two grown parts, last (its lanes
#: would run past the DRAM image), and nested (the inner concatenation a part of the outer).
DENSE_LAYERS = {"w6-first": dict(width=6), "w10-first": dict(width=10), "w6-middle": dict(width=6, position="middle"),
                "w10-middle": dict(width=10, position="middle"), "w6-last": dict(width=6, position="last"),
                "w10-last": dict(width=10, position="last"), "w6-1x1-last": dict(width=6, kernel=1, position="last"),
                "nested-w6": dict(width=6, depth=2), "nested-w10": dict(width=10, depth=2)}


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small", "E"])
@pytest.mark.parametrize("case", DENSE_LAYERS)
def test_a_convolution_reading_a_part_reads_none_of_the_bytes_beside_it(case, cfg_name, tmp_path):
    """``make sim CHECK=1`` runs it bit-exact: the grown parts' LOAD_INPs bound their lanes to the
    part's channels (``chan``), so their last channel block reads neither the next part's bytes,
    which the same layer's STOREs write (refused as a race before), nor past the last pixel (the
    DRAM image's end); timed as the program's schedule."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    kwargs = DENSE_LAYERS[case]
    path = _write(tmp_path / "dense.onnx", dense_layer(**kwargs))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    program = build_program(random_qmodel(model, 3), cfg)
    bounds = {i.f["chan"] for i in program.stream if i.op == Op.LOAD_INP}
    assert kwargs["width"] in bounds
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("cfg_name", ["tiny", "small"])
def test_nested_concatenations_compose_offset_and_pitch(cfg_name, tmp_path):
    """DenseNet's ``c1 = Concat([x, conv1x1(x)])``, ``c2 = Concat([c1, conv1x1(c1)])``: ``c1`` and
    its parts live in ``c2``'s buffer at ``c2``'s pitch (QA: ``x`` was written into a buffer of
    ``c1``'s own that nothing read); ``make sim CHECK=1`` runs it bit-exact, timed as the program's
    schedule."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.layout import storage_plan
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    path = _write(tmp_path / "nested.onnx", nested_concat(depth=2))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    outer = next(l for l in reversed(model.layers) if l.kind == "concat")
    stem = next(l for l in model.layers if l.name.startswith("read")).inputs[0]
    storage = storage_plan(model)
    assert (storage[stem].buffer, storage[stem].pitch, storage[stem].offset) == (outer.name, 24, 0)
    assert sorted(storage[s].offset for s in (*outer.inputs, *model.layer(outer.inputs[0]).inputs)) == [0, 0, 8, 16]
    program = build_program(random_qmodel(model, 3), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "E"])
@pytest.mark.parametrize("position", ["first", "last", "both"])
def test_a_concatenation_with_a_constant_part_runs_bit_exact(position, cfg_name, tmp_path):
    """An activation and an initializer concatenated (``onnx_graphs.constant_concat``): the constant is
    written into the concatenation's buffer in the DRAM image, the convolution stores beside it.  It
    was refused at mapping ("input 'map0' is not computed").  ``make sim CHECK=1`` runs it bit-exact
    (the check compares the computed parts; the 1x1 convolution reads the constant ones), the image
    holds the constant's int8 data at its offset, and it is timed as the program's schedule."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    path = _write(tmp_path / "cc.onnx", constant_concat(position=position))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    q = random_qmodel(model, 3)
    program = build_program(q, cfg)
    cat = next(l for l in model.layers if l.kind == "concat")
    const = next(l for l in model.layers if l.kind == "constant")
    st = program.storage[const.name]
    h, w, c = cat.out_shape
    stored = program.image[program.buffers[cat.name]:][:h * w * c].view(np.int8).reshape(h, w, c)
    np.testing.assert_array_equal(stored[:, :, st.offset:st.offset + st.shape[2]], q.layers[const.name].data)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("case", [{"kernel": (1, 5), "pads": (0, 2, 0, 2)}, {"kernel": (3, 3), "stride": 2,
                                                                           "auto_pad": "SAME_UPPER"}],
                         ids=["1x5", "same_upper_s2"])
def test_padding_that_differs_between_sides_runs_bit_exact(case, cfg_name, tmp_path):
    """A convolution padded (0, 2, 0, 2) or TensorFlow's SAME at stride 2 (0, 0, 1, 1): its loads start
    the windows at the top and left padding; ``make sim CHECK=1`` runs the program bit-exact."""
    path = _write(tmp_path / "uneven.onnx", uneven_conv(**case))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "4", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("class_map", [False, True])
def test_align_corners_resizes_run_bit_exact(class_map, tmp_path):
    """Bilinear resizes of align_corners=True (x2, 7 -> 13; and a class map of them) run bit-exact as
    timed: their descriptors carry the align-corners DDA and its bit, which the vector unit checks."""
    _runs_bit_exact_as_timed(align_corners_resize(class_map=class_map), "tiny", tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small", "E"])
@pytest.mark.parametrize("graph", ["dilated", "deeplab"])
def test_dilated_convolutions_run_bit_exact(graph, cfg_name, tmp_path):
    """DeepLab's atrous convolutions (dense, depthwise, strided; DeepLabV3's head with its pooled
    branch) run as one 1x1 product per tap, each tap's window shifted by the dilation and accumulated
    (``mapper.lower``): ``make sim CHECK=1`` runs them bit-exact and the program is timed as the
    simulator times it."""
    from hw.config import get_config
    from hw.timing import schedule
    from hw.config import get_config
    from mapper.lower import map_layer
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    model = _runs_bit_exact_as_timed({"dilated": dilated, "deeplab": deeplab}[graph](), cfg_name, tmp_path, seed=3)
    layer = next(l for l in model.layers if getattr(l, "dilation", 1) == 3)
    [(lowered, _)] = map_layer(layer, get_config(cfg_name))
    origins = {(i.f["y0"], i.f["x0"]) for i in lowered.stream if i.op == Op.LOAD_INP}
    assert {(y, x) for y in (-3, 0, 3) for x in (-3, 0, 3)} <= origins       # the first tile's nine taps


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small", "E"])
@pytest.mark.parametrize("rate", [4, 6])
def test_dilated_taps_that_read_only_padding_are_not_run(rate, cfg_name, tmp_path):
    """DeepLab's rate-24/36 branches on a small feature map: a 3x3 at dilation 6 on 5x6 pixels reads
    only padding but through its centre tap, so one window a tile is loaded and multiplied (at
    dilation 4, the rows' outer taps still read pixels: all nine).  Bit-exact and timed as it runs."""
    from hw.config import get_config
    from mapper.lower import map_layer

    g = Graph(27)
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    y = g.op("Conv", [x, g.weight("w2", 8, 8, 3, 3)], "", kernel_shape=[3, 3], pads=[rate] * 4, dilations=[rate] * 2)
    model = _runs_bit_exact_as_timed(g.model([image_input(3, 5, 6, "x")], [graph_output(y)]), cfg_name, tmp_path)
    [(lowered, _)] = map_layer(model.layers[-1], get_config(cfg_name))
    assert lowered.problem.shifts == (1 if rate == 6 else 9)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("case", ["pad_then_stepped_slice", "crop_after_a_shared_add", "pool_then_crop",
                                  "crop_added_to_itself"])
def test_crops_that_meet_padding_or_a_shared_result_run_bit_exact(case, cfg_name, tmp_path):
    """Found by review: a crop by steps of a padded tensor read past the tensor where the padding's
    zeros are (its pattern dropped the pad's valid pixels: 22 of 200 elements off); an add whose sum
    another layer reads, fused with the crop after it, wrote only the cropped pixels of the sum (413
    of 512 off; a top-left crop did so before this stop too).  A user's tries: an average pool fused
    with the crop after it, a pass the spatial unit refuses (timed, then refused by CHECK=1), and a
    crop added to itself, whose second operand was read as the crop's tensor, never written."""
    g = Graph(7)

    def conv(x, cin, cout):
        return g.op("Conv", [x, g.weight(f"w{g.count}", cout, cin, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)

    def crop(x, starts, ends, steps):
        return g.op("Slice", [x, g.const(starts), g.const(ends), g.const([2, 3]), g.const(steps)], "")

    if case == "pad_then_stepped_slice":
        padded = g.op("Pad", [g.op("Relu", [conv("x", 3, 8)], ""), g.const([0, 0, 0, 0, 0, 0, 2, 2])], "", mode="constant")
        outs = [conv(crop(padded, [0, 0], [9, 9], [2, 2]), 8, 4)]
    elif case == "crop_after_a_shared_add":
        total = g.op("Add", [conv("x", 3, 8), conv("x", 3, 8)], "")
        outs = [conv(crop(total, [1, 1], [8, 8], [2, 3]), 8, 4), conv(total, 8, 4)]
    elif case == "pool_then_crop":
        blur = g.op("AveragePool", [conv("x", 3, 8)], "", kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4)
        outs = [conv(crop(blur, [1, 2], [7, 8], [2, 2]), 8, 4)]
    else:
        cropped = crop(conv("x", 3, 8), [1, 2], [7, 8], [2, 2])
        outs = [conv(g.op("Add", [cropped, cropped], ""), 8, 4)]
    _runs_bit_exact_as_timed(g.model([image_input(3, 8, 8, "x")], [graph_output(o) for o in outs]), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("case", ["conv", "read_twice", "relu", "mean", "const"])
def test_a_subtraction_runs_bit_exact(case, cfg_name, tmp_path):
    """``a - b`` of two activations as ``a + (-b)`` (-1 folded into b's weights, or a product by -1):
    ``make sim CHECK=1`` runs it bit-exact."""
    path = _write(tmp_path / "sub.onnx", subtraction(case))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("op, operands", [("Max", "aa"), ("Min", "aac")])
def test_a_maximum_or_minimum_runs_bit_exact(op, operands, cfg_name, tmp_path):
    """``Max``/``Min`` of activations (``b + relu(a - b)``) and of a scalar constant (a clip): bit-exact."""
    _runs_bit_exact_as_timed(elementwise_extreme(op, operands), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("other", ["value", "act"])
def test_a_where_of_a_constant_mask_runs_bit_exact(other, cfg_name, tmp_path):
    """``Where`` of a constant condition: products by the mask and an add; bit-exact."""
    _runs_bit_exact_as_timed(constant_where(other), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_position_table_resized_bicubically_runs_bit_exact(cfg_name, tmp_path):
    """The resized table is the file's constant, evaluated at import; bit-exact."""
    _runs_bit_exact_as_timed(resized_position_table("cubic"), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_qk_norm_attention_runs_bit_exact(cfg_name, tmp_path):
    """A LayerNorm over each head's channels, composed per pixel: bit-exact."""
    _runs_bit_exact_as_timed(qk_norm_attention(), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_an_rms_normalization_runs_bit_exact(cfg_name, tmp_path):
    """ONNX's RMSNormalization as its decomposition: bit-exact."""
    _runs_bit_exact_as_timed(rms_norm("op"), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_position_index_computed_in_float_runs_bit_exact(cfg_name, tmp_path):
    """The computed relative position bias is the file's constant; bit-exact."""
    _runs_bit_exact_as_timed(computed_position_index("float"), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["one_slope", "per_channel"])
def test_prelu_runs_bit_exact(per_channel, cfg_name, tmp_path):
    """``PRelu``: a leaky ReLU's table, or its decomposition over per-channel slopes; bit-exact."""
    path = _write(tmp_path / "prelu.onnx", prelu(per_channel))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small", "E"])
@pytest.mark.parametrize("mode,block,after", [("DCR", 2, "conv"), ("CRD", 3, "relu_add"), ("CRD", 2, "output"),
                                              ("DCR", 2, "tanh")])
def test_depth_to_space_runs_bit_exact(mode, block, after, cfg_name, tmp_path):
    """``DepthToSpace``: one COPY of the vector unit, its source pattern's axes split at the block
    (``mapper.layout``), alone or leading a computing pass; bit-exact and timed as it runs."""
    _runs_bit_exact_as_timed(depth_to_space(mode, block, after), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small", "E"])
@pytest.mark.parametrize("graph", ["unet", "dcgan", "k3s2_crop"])
def test_transposed_convolutions_run_bit_exact(graph, cfg_name, tmp_path):
    """A U-Net (its 2x2 stride-2 up-convolution concatenated with the skip connection), DCGAN's 4x4
    stride-2 with its BatchNormalization and ReLU folded in, and one with a crop: bit-exact, timed
    as they run."""
    proto = {"unet": unet, "dcgan": lambda: conv_transpose(4, 2, (1, 1, 1, 1), bn_relu=True),
             "k3s2_crop": lambda: conv_transpose(3, 2)}[graph]()
    _runs_bit_exact_as_timed(proto, cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("graph", ["depthwise_k4s2", "groups4_k3s2_crop", "depthwise_k5s3_bn_relu"])
def test_grouped_transposed_convolutions_run_bit_exact(graph, cfg_name, tmp_path):
    """Grouped ``ConvTranspose``: a depthwise 4x4 stride-2 upsampler, 4 groups to 12 channels with a
    crop, a depthwise 5x5 stride-3 with its BatchNormalization and ReLU: a grouped convolution per
    phase, concatenated, shuffled to pixels; bit-exact, timed as they run."""
    proto = {"depthwise_k4s2": grouped_conv_transpose,
             "groups4_k3s2_crop": lambda: grouped_conv_transpose(3, group=4, out_ch=12),
             "depthwise_k5s3_bn_relu": lambda: grouped_conv_transpose(5, 3, (2, 2, 2, 2), bn_relu=True,
                                                                      output_padding=2)}[graph]()
    _runs_bit_exact_as_timed(proto, cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("graph", ["group_norm_op18", "group_norm_op21", "cpvt"])
def test_graphs_after_quant_pre_process_run_bit_exact(graph, cfg_name, tmp_path):
    """After onnxruntime's ``quant_pre_process``: a GroupNormalization it inlined (refused before), a
    class token and PEG whose class token it concatenates channels-first; bit-exact, timed as they run."""
    from onnx_graphs import cpvt, quant_pre_processed

    proto = {"group_norm_op18": lambda: group_norm("op18"), "group_norm_op21": lambda: group_norm("op21"),
             "cpvt": cpvt}[graph]()
    _runs_bit_exact_as_timed(quant_pre_processed(proto), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("size, shift, qkv", [((56, 28), (3, 3), "gather"), ((84, 28), (0, 0), "separate"),
                                            ((56, 28), (3, 0), "split")])
def test_swin_windows_in_one_column_run_bit_exact(size, shift, qkv, cfg_name, tmp_path):
    """timm's and HF's Swin block with one column of windows (refused before): the window partition
    of the qkv linear's output (or of each of HF's three) the products read, timm 1.x's roll of the
    rows alone (3, 0); bit-exact, timed."""
    from onnx_graphs import swin_block

    _runs_bit_exact_as_timed(swin_block(*size, shift=shift, qkv=qkv)[0], cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_swin_windows_in_one_column_partitioned_after_the_linear_run_bit_exact(cfg_name, tmp_path):
    """The one-column block whose q is scaled per channel: window partitions of the linear's output
    and of the scaled q (the linear was read before the products); bit-exact, timed."""
    from onnx_graphs import swin_block

    _runs_bit_exact_as_timed(swin_block(q_scale="per_channel")[0], cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_swinv2_cosine_attention_runs_bit_exact(cfg_name, tmp_path):
    """SwinV2's cosine attention: q and k normalised per head (square, a grouped convolution of ones,
    rsqrt, product), the evaluated per-head logit scale, a relative position bias; bit-exact, timed."""
    from onnx_graphs import cosine_attention

    _runs_bit_exact_as_timed(cosine_attention(), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kind", ["densenet", "resnet"])
def test_pre_activation_batchnorms_run_bit_exact(kind, cfg_name, tmp_path):
    """DenseNet's and a pre-activation ResNet's BatchNormalization (a product and an add by
    per-channel constants, then the ReLU): ``make sim CHECK=1`` runs them bit-exact."""
    path = _write(tmp_path / "preact.onnx", pre_activation(kind))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small", "E"])
def test_a_channel_shuffle_runs_bit_exact(cfg_name, tmp_path):
    """ShuffleNetV2's units: the shuffle is one COPY over pixels by channels (the source's channel
    axis split at the groups); bit-exact, and timed as it runs."""
    _runs_bit_exact_as_timed(shufflenet(), cfg_name, tmp_path)


def test_einsum_attention_runs_bit_exact_as_timed(tmp_path):
    """A ViT written with ``Einsum`` (its qkv projection and attention products) runs as its products."""
    model = _runs_bit_exact_as_timed(vit(einsum=True)[0], "tiny", tmp_path)
    assert sum(l.kind == "matmul" for l in model.layers) == 4


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_tensor_concatenated_with_itself_runs_bit_exact(cfg_name, tmp_path):
    """``Concat([x, x, x])``: x's producer writes the first part in place, copies the others."""
    path = _write(tmp_path / "twice.onnx", self_concat(3))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small", "E"])
@pytest.mark.parametrize("graph", ["centre_crop_relu", "every_other_add", "strides_2_1", "strides_2_4"])
def test_crops_from_an_origin_by_steps_run_bit_exact(graph, cfg_name, tmp_path):
    """A crop from an origin, by steps (a slice of rows and columns; a convolution whose strides
    differ): its source pattern starts at the origin and steps by the steps; bit-exact."""
    proto = {"centre_crop_relu": lambda: spatial_slice([1, 1], [7, 7], [1, 1], "relu"),
             "every_other_add": lambda: spatial_slice([0, 1], [8, 8], [2, 2], "add"),
             "strides_2_1": lambda: strided_conv([2, 1]),
             "strides_2_4": lambda: strided_conv([2, 4], pads=(1, 0, 2, 1))}[graph]()
    path = _write(tmp_path / "crop.onnx", proto)
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_same_padded_stem_runs_bit_exact(cfg_name, tmp_path):
    """TensorFlow's SAME padding on a stride-2 convolution and max pool ((0, 0, 1, 1) on a 16x16 image):
    the pool is PyTorch's ceil_mode pool; ``make sim CHECK=1`` runs the whole stem bit-exact."""
    path = _write(tmp_path / "stem.onnx", same_padded_stem())
    model = load_onnx(path).model
    assert [l.out_shape[:2] for l in model.layers if l.kind in ("conv2d", "pool")] == [(8, 8), (4, 4), (4, 4)]
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "5", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("op, attrs", [("Clip", {"min": 0, "max": 6}), ("HardSwish", {}), ("LeakyRelu", {"alpha": 0.1}),
                                       ("Tanh", {}), ("Celu", {"alpha": 0.5}), ("ThresholdedRelu", {"alpha": 0.25}),
                                       ("ThresholdedRelu", {"alpha": float("inf")})],
                         ids=["relu6", "hardswish", "leaky_relu", "tanh", "celu", "thresholded_relu", "thresholded_inf"])
@pytest.mark.parametrize("residual", [False, True], ids=["after_conv", "after_add"])
def test_activations_run_bit_exact(op, attrs, residual, cfg_name, tmp_path):
    """An activation after a convolution (its STOREs' table) or after a residual add (a table stage of the
    vector unit) runs bit-exact (``make sim CHECK=1``), with its table from ``mapper.float_ops.ACTIVATIONS``."""
    path = _write(tmp_path / "act.onnx", activation_graph(op, residual=residual, **attrs))
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "6", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("case", ["log", "neg", "div", "const_div", "l2norm", "sum_dropped", "pixel_sum", "tokens_mean"])
def test_elementwise_math_and_reductions_run_bit_exact(case, cfg_name, tmp_path):
    """Tables of new functions (a pole's saturated entries among them), a division as a reciprocal's
    table and a product, sums over the channels as products by ones and over the pixels as poolings
    run bit-exact and are timed as the program runs."""
    _runs_bit_exact_as_timed(elementwise_math(case), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("form", ["export", "instance"])
def test_group_and_instance_norms_run_bit_exact(form, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(group_norm(form), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_attention_with_q_k_v_interleaved_per_head_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(interleaved_attention(key=4, value=8, scale_on="sdpa", norm=True)[0], cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kv_heads, form", [(1, "broadcast"), (2, "expand"), (2, "tile")])
def test_multi_and_grouped_query_attention_run_bit_exact(kv_heads, form, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(shared_kv_attention(kv_heads=kv_heads, form=form)[0], cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_xcit_s_cross_covariance_attention_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(cross_covariance_attention()[0], cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("pads, value", [([0, 0, 0, 1, 0, 0, 0, 2], 2.0), ([0, 1, 1, 1, 0, 0, 1, 1], -0.75)])
def test_padding_the_columns_by_a_constant_runs_bit_exact(pads, value, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(constant_pad(pads, value), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_channel_attention_with_a_global_max_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(channel_attention(size=12), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("width", [12, 5])
def test_cbam_s_max_over_the_channels_runs_bit_exact(width, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(spatial_attention(width=width), cfg_name, tmp_path)


def test_global_pools_wider_than_a_window_run_bit_exact(tmp_path):
    """260 pixels a side: a max of windows of 130, then of the two; more pixels than a window holds,
    so a mean of each column, then of the columns' means."""
    model = _runs_bit_exact_as_timed(channel_attention(size=260, width=4), "E", tmp_path)
    assert [(l.mode, l.out_shape[:2]) for l in model.layers if l.kind == "pool"] == [
        ("adaptive_avg", (1, 260)), ("adaptive_avg", (1, 1)), ("max", (2, 2)), ("max", (1, 1))]


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_eca_s_1d_convolution_along_the_channels_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(eca(kernel=5), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("h, w", [(6, 10), (5, 5)])
def test_coordinate_attention_runs_bit_exact_from_views_of_its_pixels(h, w, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(coord_attention(h, w), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_darknet_s_size_keeping_max_pool_runs_bit_exact(cfg_name, tmp_path):
    """A 2x2 max pool of stride 1 padded at the bottom and right: the evenly padded pool, then a crop."""
    g = Graph(38)
    x = g.op("LeakyRelu", [g.op("Conv", ["input", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)],
             "", alpha=0.1)
    y = g.op("MaxPool", [x], "", kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    y = g.op("Conv", [y, g.weight("w2", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    _runs_bit_exact_as_timed(g.model([image_input(3, 13, 13, "input")], [out(y)]), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_pooling_windows_not_square_run_bit_exact(cfg_name, tmp_path):
    """CRNN's 2x2 max pool of strides (2, 1), a 3x1 average and a 3x2 max pool: upsample, square pool, crop."""
    model = _runs_bit_exact_as_timed(crnn_pools(), cfg_name, tmp_path)
    assert [l.kind for l in model.layers if l.kind in ("resize", "pool", "crop")] == \
        ["pool", "crop", "resize", "pool", "crop", "resize", "pool", "crop"]


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("block, after, form", [(2, "conv", "op"), (2, "relu", "op"), (3, "conv", "op"),
                                                (6, "conv", "op"), (2, "conv", "unshuffle"), (3, "conv", "unshuffle")])
def test_space_to_depth_runs_bit_exact(block, after, form, cfg_name, tmp_path):
    _runs_bit_exact_as_timed(space_to_depth(block, after, form), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("graph", ["conformer_row", "conformer_column", "wav2vec"])
def test_1d_convolutions_run_bit_exact_as_2d_ones_of_a_row_or_column(graph, cfg_name, tmp_path):
    """A conformer's pointwise and depthwise Conv1d over its tokens, wav2vec's strided feature extractor."""
    proto = {"conformer_row": conformer_conv(), "conformer_column": conformer_conv(cols=1),
             "wav2vec": wav2vec_features()}[graph]
    model = _runs_bit_exact_as_timed(proto, cfg_name, tmp_path)
    kernels = {l.kernel for l in model.layers if l.kind == "conv2d"}
    assert {"conformer_row": (1, 7), "conformer_column": (7, 1), "wav2vec": (1, 10)}[graph] in kernels


def test_three_seconds_of_16_khz_audio_run_bit_exact_as_columns_in_bands(tmp_path):
    """wav2vec's feature extractor on 48,000 samples: its rows of 9,599 and 4,799 outputs are beyond a
    STORE's 4,095 columns, so each runs as a column in bands of 4,095 rows; a band's loads address
    the input from its own first row (``Problem.in_row0``): counted from the tensor's, the last
    band's ``y0`` (34,808 for ``k = 3``) was beyond LOAD_INP's 16 signed bits and neither form mapped."""
    model = _runs_bit_exact_as_timed(wav2vec_features(length=48000), "E", tmp_path)
    assert [l.out_w for l in model.layers if l.kind == "conv2d" and l.kernel[0] == 1][-2:] == [9599, 4799]


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_1d_convolution_of_a_row_mapped_as_a_column_runs_bit_exact(cfg_name, tmp_path):
    """A conformer's 31-tap depthwise Conv1d over the 40 tokens of a 10 x 4 image is a ``1 x 31``
    convolution of a row, which the mapper runs as the ``31 x 1`` one of a column where that is
    faster (``mapper.lower.map_layer``): the same bytes in and out, its weights packed as the column's."""
    from hw.config import get_config
    from mapper.lower import map_layer
    model = _runs_bit_exact_as_timed(conformer_conv(tokens=40, kernel=31, cols=4), cfg_name, tmp_path)
    [dw] = [l for l in model.layers if l.kind == "conv2d" and l.kernel == (1, 31)]
    assert map_layer(dw, get_config(cfg_name))[0][0].problem.kh == 31


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_an_input_flipped_to_rgb_runs_bit_exact_as_weights_over_the_image(cfg_name, tmp_path):
    g = Graph(41)
    x = g.op("Slice", ["input", g.const([-1]), g.const([-4]), g.const([1]), g.const([-1])], "")
    y = g.op("Conv", [x, g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    _runs_bit_exact_as_timed(g.model([image_input(3, 9, 7, "input")], [out(y)]), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_nanodet_s_integral_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(integral("vector"), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_sknet_s_softmax_over_branches_runs_bit_exact(cfg_name, tmp_path):
    _runs_bit_exact_as_timed(split_attention(radix=3), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("attrs", [{}, {"size": 4, "beta": -0.5}], ids=["alexnet", "even_negative_beta"])
def test_a_local_response_normalisation_runs_bit_exact(attrs, cfg_name, tmp_path):
    """AlexNet's; and an even size with a negative beta (ONNX, which onnxruntime refuses)."""
    _runs_bit_exact_as_timed(lrn(**attrs), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_channels_first_layernorm_runs_bit_exact(cfg_name, tmp_path):
    from onnx_graphs import channels_first_layernorm

    _runs_bit_exact_as_timed(channels_first_layernorm(), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kw", [{"axis": 1}, {"axis": 2, "affine": "scalar", "c": 5, "size": (7, 3)}, {"qdq": True}],
                         ids=["axis1", "axis2_odd", "qdq"])
def test_a_layernorm_over_an_image_s_pixels_runs_bit_exact(kw, cfg_name, tmp_path):
    """As a group normalisation with one group (over the channels and pixels) or an instance one."""
    from onnx_graphs import image_layernorm

    _runs_bit_exact_as_timed(image_layernorm(**kw), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kw", [{"p": 2}, {"p": 1, "c": 3}, {"p": 2, "axis": 2, "size": (7, 3)},
                                {"p": 2, "axis": -1, "tokens": True}, {"p": 1, "qdq": True}],
                         ids=["p2", "p1_3_channels", "p2_rows_odd", "p2_tokens", "p1_qdq"])
def test_an_lp_normalisation_runs_bit_exact(kw, cfg_name, tmp_path):
    """(A row of zeros on the calibration image: the test below.)"""
    from onnx_graphs import lp_norm

    _runs_bit_exact_as_timed(lp_norm(**kw), cfg_name, tmp_path)


def _agreement(path: Path, q, image: np.ndarray) -> tuple[float, float]:
    """SQNR (dB) and correlation of the golden model's dequantised output against onnxruntime's on
    the file, for the preprocessed ``image``."""
    import onnxruntime as ort

    from mapper import onnx_layout as L
    imported = load_onnx(path)
    [(name, view)] = imported.outputs.items()
    got = dict(run_network(q, quantize_input(image)))[view.source]
    got = L.gather(view, q.dequantise(view.source, got).ravel())
    [want] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        [name], {imported.input_name: L.gather(imported.input_view, image.astype(np.float32).ravel())})
    return accuracy.sqnr_db(want, got), float(np.corrcoef(want.ravel(), got.ravel())[0, 1])


#: Seed of the calibration image (``mapper.images.calibration_image``) on which a ReLU zeroes 2 of
#: ``lp_norm(c=8, relu=True)``'s 60 pixels whole; ``--check`` runs ``synthetic_image(seed + 1)``, none.
_ZERO_ROW_SEED = 2


@pytest.mark.parametrize("case", ["lp2", "lp1", "lp2_tokens", "rms_tokens", "instance", "group_export", "group_op21"])
def test_a_row_of_zeros_on_the_calibration_image_runs_and_matches_onnxruntime(case, tmp_path):
    """A normalisation whose row is all zero on the calibration image (pixels a ReLU zeroed under an
    LpNormalization or an RMSNormalization; a constant channel's or group's variance, 0, under an
    instance or group norm): its ``rsqrt`` or ``1/x`` factor there is ``1/sqrt(eps)``, its calibrated
    range made the product's ``s_a*s_b/s_out`` 1.7e10 (LpNormalization, refused) or the factor's
    scale so coarse that every other row's factor rounded to 0 (RMS: 1.1 dB against onnxruntime,
    group norms: 5.4-6.5 dB).  ``mapper.calibrate.pole_table_range`` leaves the inputs that are 0
    out: the file runs bit-exact, and agrees with onnxruntime on the calibration image and on
    the check's image, whose rows are not zero (the group norms' constant channels are constant
    on every image)."""
    from onnx_graphs import lp_norm

    proto = {"lp2": lambda: lp_norm(c=8, relu=True), "lp1": lambda: lp_norm(p=1, c=8, relu=True),
             "lp2_tokens": lambda: lp_norm(c=8, relu=True, tokens=True, axis=-1),
             "rms_tokens": lambda: lp_norm(c=8, relu=True, tokens=True, axis=-1, rms=True),
             "instance": lambda: group_norm("instance", constant_group=True),
             "group_export": lambda: group_norm("export", constant_group=True),
             "group_op21": lambda: group_norm("op21", constant_group=True)}[case]()
    seed = _ZERO_ROW_SEED
    model = _runs_bit_exact_as_timed(proto, "tiny", tmp_path, seed=seed)
    path, (h, w, _) = tmp_path / "graph.onnx", model.input
    calib, other = calibration_image(h, w, seed), preprocess(synthetic_image(h, w, seed + 1))
    factor = next(l for l in model.layers if l.kind in ("rsqrt", "reciprocal"))
    weights = load_onnx(path).weights
    sums = [dict(run_float(model, weights, image))[factor.inputs[0]] for image in (calib, other)]
    assert np.abs(sums[0]).min() <= 1e-20                     # a row of zeros (1e-24: p 1's eps) calibrates it
    if not case.startswith(("instance", "group")):
        assert np.abs(sums[1]).min() > 1e-3                   # no row of zeros on the other image
    q = prepare(model, seed)[1]
    (calib_db, calib_corr), (other_db, other_corr) = (_agreement(path, q, image) for image in (calib, other))
    assert calib_db > 20 and calib_corr > 0.99 and other_corr > 0.99
    assert other_db > (20 if case.startswith(("lp", "rms")) else 12)


@pytest.mark.parametrize("seed", [0, 1, 4])
@pytest.mark.parametrize("case", ["lp2", "rms_tokens"])
def test_a_normalisation_without_a_row_of_zeros_calibrates_as_any_tensor(case, seed, tmp_path):
    """Calibration images of ``lp_norm(c=8, relu=True)`` (and its RMSNormalization of tokens) on
    which the smallest row's sum is a thousandth or less of the largest (below half a step of the
    sum's int8 scale), but none is 0: every range is max-abs (``mapper.calibrate.tensor_range`` of
    every layer's float output), every scale as without the pole rule.  A rule that left out the
    rows whose sum rounds to 0 at its int8 scale made these factors saturate (lp2: 24.4/17.3/16.2
    dB against onnxruntime on the images of seeds 0, 1 and 4, against 28.2/27.4/21.2)."""
    from onnx_graphs import lp_norm

    from mapper.calibrate import assign_scales, calibrate_ranges, readers_of, tensor_range
    proto = lp_norm(c=8, relu=True, tokens=case == "rms_tokens", axis=-1 if case == "rms_tokens" else 1,
                    rms=case == "rms_tokens")
    path = tmp_path / "graph.onnx"
    path.write_bytes(proto.SerializeToString())
    imported = load_onnx(path)
    model, weights = imported.model, imported.weights
    image = calibration_image(*model.input[:2], seed)
    outputs = dict(run_float(model, weights, image))
    factor = next(l for l in model.layers if l.kind in ("rsqrt", "reciprocal"))
    sums = np.abs(outputs[factor.inputs[0]])
    assert 0 < sums.min() < sums.max() / 254       # no row of zeros; rows below half a step of the sum
    readers = readers_of(model)
    plain = {l.name: tensor_range(outputs[l.name], readers.get(l.name, [])) for l in model.layers}
    ranges = calibrate_ranges(model, weights, image)
    assert ranges == plain
    assert assign_scales(model, ranges) == assign_scales(model, plain)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kw", [{"pads": [2] * 4}, {"strides": [2, 2], "pads": [1, 2, 2, 1], "c": 5, "size": (7, 3)},
                                {"pads": [1] * 4, "qdq": True}], ids=["padded", "strided_odd", "qdq"])
def test_a_dilated_max_pool_runs_bit_exact(kw, cfg_name, tmp_path):
    from onnx_graphs import dilated_max_pool

    _runs_bit_exact_as_timed(dilated_max_pool(kernel_shape=[3, 3], dilations=[2, 2], **kw), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kw", [{"axes": [2]}, {"axes": [3], "keepdims": 0, "c": 5, "size": (7, 3)},
                                {"axes": [2], "nhwc": True}, {"axes": [3], "qdq": True}],
                         ids=["rows", "columns_odd_dropped", "nhwc_columns", "qdq"])
def test_a_max_over_an_image_s_rows_or_columns_runs_bit_exact(kw, cfg_name, tmp_path):
    from onnx_graphs import line_max

    _runs_bit_exact_as_timed(line_max(**kw), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("kw", [{"equation": "bnc->bn"}, {"equation": "bchw->bch", "tokens": False, "c": 5, "size": (7, 3)},
                                {"equation": "bnc,kc->bk", "weight": (4, 8)}],
                         ids=["channels", "image_columns_odd", "tokens_then_product"])
def test_an_einsum_summing_an_axis_of_one_operand_runs_bit_exact(kw, cfg_name, tmp_path):
    from onnx_graphs import einsum_sum

    _runs_bit_exact_as_timed(einsum_sum(**kw), cfg_name, tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_swin_layouts_as_timm_exports_them_run_bit_exact(cfg_name, tmp_path):
    """The roll of NHWC rows first and the window reverse written straight to tokens."""
    from onnx_graphs import nhwc_roll, window_reverse_to_tokens

    for i, proto in enumerate((nhwc_roll((1, 2)), window_reverse_to_tokens(True, True))):
        (tmp_path / str(i)).mkdir()
        _runs_bit_exact_as_timed(proto, cfg_name, tmp_path / str(i))


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_dense_layer_of_a_flattened_image_runs_bit_exact_as_a_classifier(cfg_name, tmp_path):
    """VGG's classifier: the convolution over the whole map runs bit-exact, and ``make run`` takes its
    one-pixel output for logits (a classification: top-5 and agreement), the file's QDQ weights too."""
    from onnx_graphs import dense_classifier

    _runs_bit_exact_as_timed(dense_classifier("flatten"), cfg_name, tmp_path)
    path, run = _write(tmp_path / "vgg_qdq.onnx", dense_classifier("reshape", qdq=True)), tmp_path / "run"
    assert _status(infer.main, ["--model", str(path), "--config", cfg_name, "--out", str(run), "--quiet"]) == 0
    doc = json.loads((run / "run.json").read_text())
    assert doc["task"] == "classification" and doc["agreement"]["top1_agrees"]


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_a_concatenation_of_the_input_image_runs_bit_exact(cfg_name, tmp_path):
    """``Concat([x, conv(x)])`` of the model's input imported, then was refused when mapped (no layer
    computes the input, so none writes it into the concatenation): the input is copied in, as a part
    another concatenation holds is."""
    g = Graph(12)
    y = g.op("Conv", ["input", g.weight("c.weight", 5, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    y = g.op("Concat", ["input", y], "/cat", axis=1)
    y = g.op("Conv", [y, g.weight("head.weight", 4, 8, 1, 1)], "/head", kernel_shape=[1, 1])
    model = _runs_bit_exact_as_timed(g.model([image_input(3, 8, 8, "input")], [graph_output(y)]), cfg_name, tmp_path)
    assert [l.kind for l in model.layers] == ["conv2d", "pad", "concat", "conv2d"]


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_zeros_padded_before_convolutions_run_bit_exact(cfg_name, tmp_path):
    from onnx_graphs import padded_convolutions

    _runs_bit_exact_as_timed(padded_convolutions([0, 0, 2, 1, 0, 0, 0, 3], 2), cfg_name, tmp_path)


@pytest.mark.parametrize("gate, func, params", [("silu", "swish", (1.0,)), ("quick_gelu", "swish", (1.702,)),
                                                 ("mish", "mish", ())])
@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_gated_activations_are_one_table_in_the_convolutions_stores(gate, func, params, cfg_name, tmp_path):
    """SiLU ``x * sigmoid(x)`` (YOLOv8, EfficientNet), CLIP's QuickGELU ``x * sigmoid(1.702 * x)`` and
    Mish below opset 18 ``x * tanh(softplus(x))``, as PyTorch exports them: one function of each
    element, so the convolution's STOREs apply its table (no vector pass); bit-exact, timed as it
    runs, and the float model agrees with onnxruntime."""
    from hw.config import get_config
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from test_onnx_import import RTOL, _max_rel_error

    g = Graph(17)
    x = g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3), g.weight("a.bias", 8, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if gate == "mish":
        y = g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x], "/act")], "/act")], "/act")
    else:
        u = x if gate == "silu" else g.op("Mul", [x, g.const(np.float32(1.702), np.float32)], "/act")
        y = g.op("Mul", [g.op("Sigmoid", [u], "/act"), x], "/act")
    proto = g.model([image_input(3, 8, 8, "input")], [graph_output(y)])
    model = _runs_bit_exact_as_timed(proto, cfg_name, tmp_path)
    assert [(l.kind, getattr(l, "params", ())) for l in model.layers] == [("conv2d", ()), (func, params)]
    program = build_program(random_qmodel(model, 5), get_config(cfg_name))
    assert not any(i.op == Op.VEC for i in program.stream)
    assert _max_rel_error(proto, load_onnx(tmp_path / "graph.onnx")) <= RTOL


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_one_constant_in_several_concatenations_runs_bit_exact(cfg_name, tmp_path):
    """The same initializer concatenated with two activations, and twice in one concatenation: each
    concatenation gets a copy of its own (a tensor lives in one concatenation's buffer)."""
    g = Graph(18)
    conv = [g.op("Conv", ["input", g.weight(f"c{i}.weight", 4, 3, 3, 3), g.weight(f"c{i}.bias", 4, scale=0.1)],
                 f"/c{i}", kernel_shape=[3, 3], pads=[1] * 4) for i in range(2)]
    k = g.init("map", g.rng.uniform(-2, 2, (1, 2, 8, 8)).astype(np.float32))
    cats = [g.op("Concat", [conv[0], k], "/cat0", axis=1), g.op("Concat", [k, conv[1], k], "/cat1", axis=1)]
    proto = g.model([image_input(3, 8, 8, "input")], [graph_output(c) for c in cats])
    path = _write(tmp_path / "shared.onnx", proto)
    model = load_onnx(path).model
    parts = [n for layer in model.layers if layer.kind == "concat" for n in layer.inputs
             if model.layer(n).kind == "constant"]
    assert len(parts) == len(set(parts)) == 3
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "8", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_one_activation_in_two_concatenations_runs_bit_exact(cfg_name, tmp_path):
    """A feature map concatenated in two places (a U-Net skip read twice): the second concatenation
    gets a copy (a Pad to its own size, run on the vector unit), since a tensor lives in one
    concatenation's buffer."""
    g = Graph(19)
    a, b, c = (g.op("Conv", ["input", g.weight(f"{n}.weight", 4, 3, 3, 3), g.weight(f"{n}.bias", 4, scale=0.1)],
                    f"/{n}", kernel_shape=[3, 3], pads=[1] * 4) for n in "abc")
    cats = [g.op("Concat", [a, b], "/cat0", axis=1), g.op("Concat", [c, a], "/cat1", axis=1)]
    path = _write(tmp_path / "skip.onnx", g.model([image_input(3, 8, 8, "input")], [graph_output(x) for x in cats]))
    model = load_onnx(path).model
    copy = next(layer for layer in model.layers if layer.kind == "pad")
    assert copy.out_shape == model.layer(copy.inputs[0]).out_shape and copy.name in model.layers[-1].inputs
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "9", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0


@pytest.mark.parametrize("cfg_name", ["e_small", "E"])
def test_a_product_reading_its_heads_inside_the_fused_qkv_is_timed_as_it_runs(cfg_name, tmp_path):
    """A ViT's ``q @ k^T`` reads ``q`` as channels of the fused ``qkv`` tensor (a pitch of three
    times the heads' channels).  The simulator timed its loads at the heads' own pitch while the
    program reads the wider one, 6 cycles apart with a class token on E (65 tokens: 10,290 against
    10,296); the problem now carries the row pitch, and the loads bound their lanes to the heads'
    channels (``chan``), as for a concatenation's part.  ``make sim CHECK=1`` runs it bit-exact."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    path = _write(tmp_path / "vit.onnx", vit(size=64, cls_token=True)[0])
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    program = build_program(random_qmodel(model, 3), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles
    qkv = {l.inputs[0] for l in model.layers if l.kind == "matmul"}
    heads = {program.storage[t].pitch for t in qkv}
    assert heads and all(p > 48 for p in heads)         # the case stays the gapped one
    assert any(i.f["chan"] == 48 for i in program.stream if i.op == Op.LOAD_INP)


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small", "E"])
@pytest.mark.parametrize("kw", [dict(blocks=2), dict(width=48, blocks=3, silu=False)], ids=["2-blocks", "3-blocks"])
def test_a_c2f_block_runs_bit_exact_from_its_channel_slices(kw, cfg_name, tmp_path):
    """``make sim CHECK=1`` on YOLOv8's C2f: the bottlenecks' convolutions and residual adds read
    the second half of the split where it lies, inside the concatenation's buffer (no copy), and
    the program is timed as the simulator times it."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    path = _write(tmp_path / "c2f.onnx", c2f(**kw)[0])
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    program = build_program(random_qmodel(model, 3), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles
    [sl] = [l for l in model.layers if l.kind == "channel_slice"]
    assert program.storage[sl.name].offset == sl.start and not any(l.kind == "pad" for l in model.layers)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("graph", ["token_slices", "glu"])
def test_channel_slices_run_bit_exact(graph, cfg_name, tmp_path):
    """A linear and an add reading channels of a token tensor from its middle, and a gated linear
    unit (``a * sigmoid(b)`` of a split's halves, refused before): :class:`~mapper.ir.ChannelSlice`
    layers, zero-copy, bit-exact and timed as they run."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    proto, macs = {"token_slices": token_slices, "glu": glu}[graph]()
    path = _write(tmp_path / "slices.onnx", proto)
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    assert [l.kind for l in model.layers].count("channel_slice") == 2 and model.total_macs == macs
    program = build_program(random_qmodel(model, 3), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("cfg_name", ["e_small", "E"])
def test_a_yolov8_style_backbone_and_neck_runs_bit_exact(cfg_name, tmp_path):
    """C2f blocks (split halves read in place), SPPF, a nearest upsample and the P3 concatenation,
    imported as Ultralytics exports them: the MACs counted by hand, ``make sim CHECK=1``
    bit-exact, timed as it runs."""
    from hw.config import get_config
    from hw.timing import schedule
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.simulator import simulate

    proto, macs = yolo_neck()
    path = _write(tmp_path / "yolo.onnx", proto)
    assert sim_run.main(["--model", str(path), "--config", cfg_name, "--check", "--seed", "3", "--no-plots",
                         "--quiet", "--out", str(tmp_path / "sim")]) == 0
    model, cfg = load_onnx(path).model, get_config(cfg_name)
    assert model.total_macs == macs and [l.kind for l in model.layers].count("channel_slice") == 4
    program = build_program(random_qmodel(model, 3), cfg)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("graph", [yolo_detect, anchor_levels])
@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_detection_levels_concatenated_along_their_anchors_run_bit_exact(graph, cfg_name, tmp_path):
    """Levels written from their first pixel into one buffer, DFL's grouped convolution of a channel
    slice's softmax, the decode: ``make sim CHECK=1`` bit-exact, timed as it runs."""
    _runs_bit_exact_as_timed(graph()[0], cfg_name, tmp_path)


@pytest.mark.parametrize("variant,cfg_name", [("split", "tiny"), ("split", "E"), ("slice", "tiny"), ("v7", "tiny"),
                                              ("seg", "tiny")])
def test_a_yolov5_or_yolov7_detect_head_with_its_decode_runs_bit_exact(variant, cfg_name, tmp_path):
    """The decode on channel slices of the reordered head convolutions, each level's channels
    concatenated in the levels' concatenation of pixels (nested: one buffer): ``make sim CHECK=1``
    bit-exact, timed as it runs (on E, 7,410 cycles for the 64x96 graph at 9e6b3ce, 1,878 with the
    sigmoids concatenated undecoded: three vector passes a level, the xy and the wh chains and the
    copy of conf)."""
    _runs_bit_exact_as_timed(yolo_v5_detect(variant)[0], cfg_name, tmp_path)


@pytest.mark.parametrize("graph,shape,axis", [(yolo_detect, (1, 7, 126), 1), (yolo_v5_detect, (1, 378, 8), 2)])
def test_make_run_of_a_yolo_detect_head_saves_its_output_as_onnx_shapes_it(graph, shape, axis, tmp_path):
    """``make run``: the decoded output (YOLOv8's ``[1, 4 + classes, A]``, YOLOv5's ``[1, A, 5 + classes]``)
    in ``output.npz`` under its ONNX name and shape, close to onnxruntime's on the same image: the boxes
    in pixels and the confidences in 0..1 each at their own scale (at one scale for the whole output,
    set by the boxes, every confidence came out as 0 or one step of 0.73)."""
    import onnxruntime as ort

    from mapper import onnx_layout as L
    proto, _ = graph()
    path = _write(tmp_path / "yolo.onnx", proto)
    assert infer.main(["--model", str(path), "--config", "E", "--seed", "0", "--out", str(tmp_path / "run"),
                       "--quiet"]) == 0
    [(name, got)] = np.load(tmp_path / "run" / "output.npz").items()
    imported = load_onnx(path)
    image = preprocess(synthetic_image(64, 96, 0))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    [want] = sess.run(None, {imported.input_name: L.gather(imported.input_view, image.astype(np.float32).ravel())})
    assert got.shape == want.shape == shape
    (got_boxes, got_conf), (boxes, conf) = (np.split(a, [4], axis=axis) for a in (got, want))
    assert np.corrcoef(got_boxes.ravel(), boxes.ravel())[0, 1] > 0.99
    assert np.abs(got_conf - conf).max() < 0.03                 # sigmoids at a step of about 1/127


def test_a_distilled_classifier_is_measured_as_a_classifier(tmp_path):
    """DeiT's and EfficientFormer's ``(head(x) + head_dist(x)) / 2``: the logits are a sum of two
    linears of one token, halved; ``make run`` reports top-1 and top-5 for it (it measured SQNR, as
    for a network of no known task)."""
    g = Graph(37)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [g.op("Relu", [g.op("Conv", ["input", g.weight("c.w", 16, 3, 3, 3)], "/c",
                                                                        kernel_shape=[3, 3], pads=[1] * 4)], "/c")], "/pool")],
             "/pool", axis=1)
    heads = [g.op("Gemm", [x, g.weight(f"{n}.w", 10, 16), g.weight(f"{n}.b", 10)], f"/{n}", transB=1)
             for n in ("head", "head_dist")]
    y = g.op("Div", [g.op("Add", heads, "/avg"), g.const(np.float32(2), np.float32)], "/avg")
    path = _write(tmp_path / "distilled.onnx", g.model([image_input(3, 16, 16, "input")], [graph_output(y)]))
    assert infer.main(["--model", str(path), "--config", "tiny", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["task"] == "classification" and set(doc["agreement"]) == {"top1_agrees", "top5_overlap"}


@pytest.mark.parametrize("graph", ["mixer", "resmlp", "gmlp", "queries", "gcnet"])
def test_products_of_a_constant_run_bit_exact(graph, tmp_path):
    """Token mixing (``W @ x``), learned queries (``q @ k^T``), GCNet's map transposed by an identity:
    the Constant operand is quantised as a tensor and read by the product like an activation; CHECK=1
    on tiny."""
    proto = {"queries": lambda: constant_queries(per_head=False), "gcnet": lambda: context_block(12, 32)}.get(
        graph, lambda: mixer(kind=graph, size=32, depth=2, token_hidden=24))()
    _runs_bit_exact_as_timed(proto, "tiny", tmp_path)


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
def test_resnest_split_attention_runs_bit_exact(cfg_name, tmp_path):
    """rSoftMax over grouped logits whose convolution's rows were reordered: CHECK=1."""
    _runs_bit_exact_as_timed(radix_softmax(radix=4, cardinality=2), cfg_name, tmp_path)


def test_a_channel_padded_by_ones_runs_bit_exact(tmp_path):
    _runs_bit_exact_as_timed(constant_pad([0, 2, 0, 0, 0, 1, 0, 0], 1.0), "tiny", tmp_path)


@pytest.mark.parametrize("form, op", [("nhwc", "Concat"), ("flat", "Concat"), ("tokens", "Concat"), ("nhwc", "Pad"),
                                      ("rows", "Pad")])
def test_constant_channels_laid_out_as_the_computed_part_run_bit_exact(form, op, tmp_path):
    """Constant channels on both sides of an NHWC map, a map's flattened pixels, a token tensor:
    their Constant layers' data, written in the layout the concatenation reads, runs bit-exact."""
    _runs_bit_exact_as_timed(constant_channels(form, op, "both"), "tiny", tmp_path)


@pytest.mark.parametrize("form", ["nhwc", "flat"])
def test_constant_pixels_laid_out_as_the_computed_part_run_bit_exact(form, tmp_path):
    """Constant rows before an NHWC map's, constant pixels before a ``[1, C, H*W]`` one's."""
    _runs_bit_exact_as_timed(constant_pixels(form), "tiny", tmp_path)


@pytest.mark.parametrize("kernel, groups, cfg_name", [(13, 0, "E"), pytest.param(31, 0, "E", marks=pytest.mark.slow),
                                                       (13, 4, "tiny")])      # 31x31: 16 s, the same path as 13x13
def test_kernels_of_more_taps_than_the_weight_buffer_holds_run_a_tap_at_a_time(kernel, groups, cfg_name, tmp_path):
    """A depthwise 13x13 on E (169 taps, 128 weight rows) and RepLKNet's 31x31, a grouped 13x13 on
    tiny: refused before; run as a dilated kernel is, a 1x1 product per tap on a shifted window
    (``Problem.per_tap``), bit-exact and timed as the program is."""
    from hw.config import get_config
    from mapper.lower import problem_of
    model = _runs_bit_exact_as_timed(large_kernel(kernel, size=32 if kernel > 16 else 16, groups=groups), cfg_name,
                                     tmp_path)
    layer = next(l for l in model.layers if l.kind == "conv2d" and l.kernel == (kernel, kernel))
    p = problem_of(layer, get_config(cfg_name))
    assert p.per_tap and p.shifts == kernel * kernel and p.macs == layer.macs


def test_a_keras_nhwc_classifier_runs_bit_exact(tmp_path):
    _runs_bit_exact_as_timed(keras_nhwc(), "tiny", tmp_path)


@pytest.mark.parametrize("pads, mode", [([0, 0, 1, 1, 0, 0, 1, 1], "reflect"), ([0, 0, 1, 0, 0, 0, 0, 2], "reflect"),
                                        ([0, 0, 2, 2, 0, 0, 2, 2], "edge")])
def test_reflect_and_edge_padding_run_bit_exact_as_copies_of_the_int8_values(pads, mode, tmp_path):
    """CHECK=1 passes, and the golden model's padded tensor is numpy's padding of the convolution's
    int8 output: the Adds that place the copied columns move them unchanged (their scale is the image's)."""
    model = _runs_bit_exact_as_timed(mode_pad(pads, mode), "tiny", tmp_path)
    q = _float_file_qmodel(tmp_path / "graph.onnx", 5)
    h, w, _ = model.input
    outs = dict(run_network(q, quantize_input(preprocess(synthetic_image(h, w, 5))), keep=lambda n: True))
    conv, padded = outs[model.layers[0].name], outs[model.layers[-1].inputs[0]]
    assert np.array_equal(padded, np.pad(conv, ((pads[2], pads[6]), (pads[3], pads[7]), (0, 0)), mode=mode))
