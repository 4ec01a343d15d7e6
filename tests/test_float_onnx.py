"""The float reference's operators against onnxruntime (PyTorch's exported semantics), float32.

Skipped unless ``onnx`` and ``onnxruntime`` are installed (they are not project dependencies):
``pip install onnx onnxruntime`` in any environment with this checkout on the path runs it.
Measured with onnxruntime 1.32.0: largest relative error 9.2e-7 (bilinear 8x12 -> 128x200).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from mapper import float_ops, reference  # noqa: E402

RTOL = 2e-6           # relative to the output's largest magnitude


def _run(node, inputs: dict, inits=()) -> np.ndarray:
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()]
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def _nchw(x):
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _hwc(y):
    return y[0].transpose(1, 2, 0)


def _close(mine, ref):
    assert np.max(np.abs(mine - ref)) <= RTOL * np.max(np.abs(ref))


@pytest.mark.parametrize("h, w, c, k, ker, s, p, g", [(17, 13, 8, 6, 3, 2, 1, 1), (16, 16, 12, 12, 3, 1, 1, 12),
                                                      (32, 32, 5, 7, 8, 8, 0, 1), (29, 31, 3, 10, 7, 4, 3, 1),
                                                      (14, 14, 6, 9, 1, 2, 0, 3), (9, 9, 4, 8, 3, 1, 1, 4)])
def test_conv(h, w, c, k, ker, s, p, g):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(h, w, c)).astype(np.float32)
    wt = rng.normal(size=(k, ker, ker, c // g)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[s, s], pads=[p] * 4, group=g)
    ref = _hwc(_run(node, {"x": _nchw(x), "w": np.ascontiguousarray(wt.transpose(0, 3, 1, 2)), "b": b}))
    _close(reference.conv2d(x, wt, b, s, p, g), ref)


def test_row_and_elementwise_operators():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(7, 5, 64)) * 3 + 1).astype(np.float32)
    gamma, beta = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-6)
    _close(float_ops.layernorm(x, gamma, beta, 1e-6), _run(node, {"x": x, "g": gamma, "b": beta}))
    x = (rng.normal(size=(6, 49)) * 5).astype(np.float32)
    _close(float_ops.softmax(x), _run(helper.make_node("Softmax", ["x"], ["y"], axis=-1), {"x": x}))
    x = np.linspace(-8, 8, 4001, dtype=np.float32)
    _close(float_ops.gelu(x), _run(helper.make_node("Gelu", ["x"], ["y"]), {"x": x}))
    _close(float_ops.sigmoid(x), _run(helper.make_node("Sigmoid", ["x"], ["y"]), {"x": x}))


@pytest.mark.parametrize("h, w, oh, ow", [(16, 16, 64, 64), (3, 5, 16, 11), (7, 9, 3, 4), (1, 1, 16, 16),
                                          (8, 12, 128, 200)])
def test_resize(h, w, oh, ow):
    x = np.random.default_rng(2).normal(size=(h, w, 6)).astype(np.float32)
    sizes = [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 6, oh, ow])]
    bilinear = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                                coordinate_transformation_mode="pytorch_half_pixel")
    _close(float_ops.resize_bilinear(x, oh, ow), _hwc(_run(bilinear, {"x": _nchw(x)}, sizes)))
    nearest = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    np.testing.assert_array_equal(float_ops.resize_nearest(x, oh, ow), _hwc(_run(nearest, {"x": _nchw(x)}, sizes)))


@pytest.mark.parametrize("h, w, k, s, p, ceil, include_pad", [(15, 15, 3, 2, 1, False, True), (15, 15, 2, 2, 0, True, True),
                                                              (13, 11, 3, 2, 1, True, False), (14, 14, 3, 2, 1, True, True),
                                                              (7, 7, 2, 2, 0, True, False)])
def test_pooling(h, w, k, s, p, ceil, include_pad):
    x = np.random.default_rng(3).normal(size=(h, w, 5)).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                            ceil_mode=int(ceil))
    np.testing.assert_array_equal(float_ops.maxpool2d(x, k, s, p, ceil), _hwc(_run(node, {"x": _nchw(x)})))
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                            ceil_mode=int(ceil), count_include_pad=int(include_pad))
    _close(float_ops.avgpool2d(x, k, s, p, ceil, include_pad), _hwc(_run(node, {"x": _nchw(x)})))
    gap = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    _close(float_ops.adaptive_avgpool2d(x, 1, 1), _hwc(_run(gap, {"x": _nchw(x)})))


def _resize_model(tmp_path, op: str, opset: int, scale: float, scale_w: float = None, **attrs):
    """conv 1x1 -> relu -> ``op`` by ``scale`` (``scale_w`` across, default the same) on an 8x8
    image, as a file (old opsets: scales only)."""
    scale_w = scale if scale_w is None else scale_w
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], rng.normal(size=12).astype(np.float32)),
             helper.make_tensor("sc", TensorProto.FLOAT, [4], [1, 1, scale, scale_w])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node(op, ["r", "sc"], ["y"], **attrs)]
    oh, ow = int(np.floor(8 * scale)), int(np.floor(8 * scale_w))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, oh, ow])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / f"{op}{opset}.onnx"
    onnx.save(model, str(path))
    return path, model


# 1.4 on 8 rows gives 11.2: no whole number, but every output row takes the same source row by
# the scale as by 11 / 8, so it is the accelerator's resize
@pytest.mark.parametrize("op, opset, scale", [("Upsample", 9, 3.0), ("Resize", 10, 1.5), ("Resize", 10, 1.4),
                                              ("Resize", 10, 0.5)])
def test_resize_before_opset_11_is_asymmetric_nearest(tmp_path, op, opset, scale):
    """Before opset 11 a resize has no transformation attributes: asymmetric coordinates, the pixel
    below when enlarging (it was imported as opset 11's defaults, half_pixel, and refused or wrong),
    above when shrinking, which by a half is the pixel below too."""
    from mapper import onnx_layout
    from mapper.onnx_import import load_onnx

    path, model = _resize_model(tmp_path, op, opset, scale, mode="nearest")
    imp = load_onnx(path)
    x = np.random.default_rng(1).normal(size=imp.model.input).astype(np.float32)
    mine = dict(reference.run_float(imp.model, imp.weights, x))
    view = imp.outputs["y"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run(None, {imp.input_name: onnx_layout.gather(imp.input_view, x.ravel())})[0]
    _close(onnx_layout.gather(view, mine[view.source].ravel()), ref)


@pytest.mark.parametrize("op, opset, scales, attrs, refusal", [
    ("Upsample", 9, (2.0, 2.0), {"mode": "linear"}, "mode='linear', coordinate_transformation_mode='asymmetric'"),
    ("Resize", 10, (0.75, 0.75), {"mode": "nearest"}, "nearest_mode='ceil'"),     # shrinking: the pixel above
    ("Resize", 10, (2.0, 0.5), {"mode": "nearest"}, "nearest_mode='ceil'"),       # one axis shrinks
    ("Resize", 18, (2.0, 2.0), {"mode": "nearest", "keep_aspect_ratio_policy": "not_larger"}, "keep_aspect_ratio_policy"),
    # 8 x 1.7 = 13.6 rows: ONNX maps coordinates by 1.7, the accelerator by 13 / 8; output row 5 takes
    # source row 2 by the scale, 5 * 8 // 13 = 3 by the sizes (an independent check's case: such
    # resizes were computed the accelerator's way, and wrong)
    ("Resize", 10, (1.7, 1.7), {"mode": "nearest"}, "scale 1.7 of an axis of 8 gives 13.6, no whole number"),
])
def test_resize_semantics_it_does_not_compute_are_refused(tmp_path, op, opset, scales, attrs, refusal):
    from mapper.onnx_import import OnnxImportError, load_onnx

    path, _ = _resize_model(tmp_path, op, opset, *scales, **attrs)
    with pytest.raises(OnnxImportError, match=refusal):
        load_onnx(path)
