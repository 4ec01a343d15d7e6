"""Write an IR model as ONNX with its float weights: ``make onnx MODEL=segformer_b2 [VARIANT=...] [SIZE=...]``.

``export_onnx(model, weights)`` returns an ``onnx.ModelProto`` (opset 17) that computes what the
IR model computes in float, written as PyTorch's exporter writes such networks: NCHW images
for convolutions, resizes and pooling, ``[1, tokens, C]`` sequences for linears, layer norms
and attention, ``Reshape``/``Transpose``/``Slice`` between them and for the attention heads,
Swin's window partition as reshapes and a transpose, GELU as its ``Erf`` pattern.  Weights
are initializers; a :class:`~mapper.ir.Constant` is a ``Constant`` node where the IR has it.
Every graph value that holds a layer's output is named after the layer, and the model's
metadata stores each layer's part (``vitaccel.parts``), so that importing the file
(:mod:`mapper.onnx_import`) gives the same layers, MACs and cycles.

Two IR layers have no standard ONNX operator: an adaptive average pool whose windows do not
tile the image (UPerNet's pyramid pooling at most sizes) and Anchor DETR's reshaped value
aggregation (``b_layout="opaque"``, no element semantics in the IR).  They are written as
``com.vitaccel.AdaptiveAveragePool`` and ``com.vitaccel.OpaqueMatMul``, which the importer
reads and onnxruntime cannot run.

The command writes ``<out>/<model>[_<variant>][_<H>x<W>][_seed<n>].onnx`` (default ``build/onnx``; the seed
only when it is not 0), or ``--out`` itself when it names a ``.onnx`` file (``hw.cli.output_file``),
weights from ``mapper.weights.init_weights`` with ``--seed`` (default 0), to a temporary name
renamed into place; bad input is one line on stderr and exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from .float_ops import ACTIVATIONS
from .fusion import is_class_map
from .ir import Model
from .onnx_import import CUSTOM_DOMAIN, PARTS_KEY

__all__ = ["export_onnx", "custom_operators", "OPSET", "main"]

OPSET = 17


def _shape_tag(shape) -> str:
    return "x".join(str(int(d)) for d in shape).replace("-", "m")


class _Writer:
    """Collects nodes and initializers; tracks each IR tensor's ONNX values by form."""

    def __init__(self, model: Model):
        from onnx import TensorProto, helper

        self.helper, self.tp = helper, TensorProto
        self.model = model
        self.nodes: list = []
        self.inits: dict[str, object] = {}
        self.values: dict[tuple[str, str], str] = {}      # (IR tensor, form) -> ONNX value
        self.native: dict[str, str] = {}                  # IR tensor -> its form as written by its layer
        self.shapes = {"input": tuple(model.input)}
        self.shapes.update({l.name: tuple(l.out_shape) for l in model.layers})

    # -- building blocks
    def init(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        return name

    def ints(self, values) -> str:
        arr = np.asarray(values, np.int64)
        return self.init(f"const_i64_{_shape_tag(arr.ravel())}" if arr.ndim else f"const_i64_{int(arr)}", arr)

    def floats(self, value: float) -> str:
        return self.init(f"const_f32_{value!r}", np.asarray(value, np.float32))

    def node(self, op: str, inputs: list, output: str, domain: str = "", **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def reshape(self, x: str, shape, out: str) -> str:
        return self.node("Reshape", [x, self.ints(shape)], out)

    def transpose(self, x: str, perm, out: str) -> str:
        return self.node("Transpose", [x], out, perm=list(perm))

    def slice(self, x: str, axes, starts, ends, out: str, steps=None) -> str:
        ins = [x, self.ints(starts), self.ints(ends), self.ints(axes)] + ([self.ints(steps)] if steps else [])
        return self.node("Slice", ins, out)

    # -- forms
    def put(self, tensor: str, form: str, value: str) -> None:
        self.values[(tensor, form)] = value
        self.native.setdefault(tensor, form)

    def get(self, tensor: str, form: str) -> str:
        """The ONNX value holding IR tensor ``tensor`` in ``form`` (``nchw`` or ``tokens``), converting once."""
        if (tensor, form) in self.values:
            return self.values[(tensor, form)]
        h, w, c = self.shapes[tensor]
        if form == "tokens":
            x = self.reshape(self.values[(tensor, "nchw")], [1, c, h * w], f"{tensor}/flat")
            value = self.transpose(x, (0, 2, 1), f"{tensor}/tokens")
        else:
            x = self.transpose(self.values[(tensor, "tokens")], (0, 2, 1), f"{tensor}/channels_first")
            value = self.reshape(x, [1, c, h, w], f"{tensor}/nchw")
        self.values[(tensor, form)] = value
        return value

    def first_channels(self, x: str, axis: int, have: int, want: int, name: str) -> str:
        return x if want == have else self.slice(x, [axis], [0], [want], f"{name}/in")


# ---- layers ---------------------------------------------------------------------------------------

def _conv(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "nchw")
    x = wr.first_channels(x, 1, wr.shapes[layer.inputs[0]][2], layer.in_ch, layer.name)
    weight = wr.init(f"{layer.name}.weight", np.asarray(w["weight"], np.float32).transpose(0, 3, 1, 2))
    ins = [x, weight] + ([wr.init(f"{layer.name}.bias", np.asarray(w["bias"], np.float32))] if layer.bias else [])
    out = wr.node("Conv", ins, f"{layer.name}/conv" if layer.relu else layer.name, kernel_shape=list(layer.kernel),
                  strides=[layer.stride] * 2, pads=list(layer.pads), group=layer.groups,
                  dilations=[layer.dilation] * 2)
    if layer.relu:
        out = wr.node("Relu", [out], layer.name)
    wr.put(layer.name, "nchw", out)


def _linear(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "tokens")
    x = wr.first_channels(x, 2, wr.shapes[layer.inputs[0]][2], layer.in_features, layer.name)
    weight = wr.init(f"{layer.name}.weight", np.ascontiguousarray(np.asarray(w["weight"], np.float32).T))
    steps = ["matmul"] + (["bias"] if layer.bias else []) + (["relu"] if layer.relu else [])
    names = {s: (layer.name if s == steps[-1] else f"{layer.name}/{s}") for s in steps}
    out = wr.node("MatMul", [x, weight], names["matmul"])
    if layer.bias:
        out = wr.node("Add", [out, wr.init(f"{layer.name}.bias", np.asarray(w["bias"], np.float32))], names["bias"])
    if layer.relu:
        out = wr.node("Relu", [out], names["relu"])
    wr.put(layer.name, "tokens", out)


def _heads(wr: _Writer, tensor: str, rows: int, windows: int, heads: int, cols: int, offset: int, perm,
           name: str) -> str:
    """``[windows, heads, .., ..]``: head ``h`` of window ``w`` is channels ``offset + h*cols ..`` of the
    tokens ``r * windows + w`` (:class:`~mapper.ir.MatMul`), ``perm`` ordering the last two axes."""
    x = wr.get(tensor, "tokens")
    c = wr.shapes[tensor][2]
    if (offset, heads * cols) != (0, c):
        x = wr.slice(x, [2], [offset], [offset + heads * cols], f"{name}/cols")
    x = wr.reshape(x, [rows, windows, heads, cols], f"{name}/split")
    return wr.transpose(x, perm, f"{name}/heads")


def _matmul(wr: _Writer, layer, w: dict) -> None:
    if layer.b_layout == "opaque":
        a, b = (wr.get(t, "tokens") for t in layer.inputs)
        out = wr.node("OpaqueMatMul", [a, b], layer.name, domain=CUSTOM_DOMAIN, batch=layer.batch, m=layer.m,
                      k=layer.k, n=layer.n)
        return wr.put(layer.name, "tokens", out)
    win, heads, m, k, n = layer.windows, layer.heads, layer.m, layer.k, layer.n
    a = _heads(wr, layer.inputs[0], m, win, heads, k, layer.a_offset, (1, 2, 0, 3), f"{layer.name}/a")
    if layer.b_layout == "nk":
        b = _heads(wr, layer.inputs[1], n, win, layer.b_heads, k, layer.b_offset, (1, 2, 3, 0), f"{layer.name}/b")
    else:
        b = _heads(wr, layer.inputs[1], k, win, layer.b_heads, n, layer.b_offset, (1, 2, 0, 3), f"{layer.name}/b")
    if layer.b_repeat > 1:                  # each head of b read by b_repeat heads of a: broadcast
        a = wr.reshape(a, [win, layer.b_heads, layer.b_repeat, m, k], f"{layer.name}/a_shared")
        b = wr.reshape(b, [win, layer.b_heads, 1, k, n], f"{layer.name}/b_shared")
    y = wr.node("MatMul", [a, b], layer.name)                       # [windows, heads, m, n]
    if layer.b_repeat > 1:
        y = wr.reshape(y, [win, heads, m, n], f"{layer.name}/heads")
    y = wr.transpose(y, (2, 0, 1, 3), f"{layer.name}/rows")
    wr.put(layer.name, "tokens", wr.reshape(y, [1, m * win, heads * n], f"{layer.name}/tokens"))


def _layernorm(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "tokens")
    g = wr.init(f"{layer.name}.weight", np.asarray(w["gamma"], np.float32))
    b = wr.init(f"{layer.name}.bias", np.asarray(w["beta"], np.float32))
    wr.put(layer.name, "tokens", wr.node("LayerNormalization", [x, g, b], layer.name, axis=-1, epsilon=layer.eps))


def _softmax(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "tokens")
    h, wd, c = layer.out_shape
    row = layer.row_len()
    if row == c:
        return wr.put(layer.name, "tokens", wr.node("Softmax", [x], layer.name, axis=-1))
    x = wr.reshape(x, [1, h * wd, c // row, row], f"{layer.name}/rows")
    y = wr.node("Softmax", [x], layer.name, axis=-1)
    wr.put(layer.name, "tokens", wr.reshape(y, [1, h * wd, c], f"{layer.name}/tokens"))


#: ONNX operator and attributes (the parameters, in order) of each activation but GELU and clip.
_ONNX_ACTIVATIONS = {"relu": ("Relu", ()), "sigmoid": ("Sigmoid", ()), "tanh": ("Tanh", ()),
                     "hardswish": ("HardSwish", ()), "hardsigmoid": ("HardSigmoid", ("alpha", "beta")),
                     "leaky_relu": ("LeakyRelu", ("alpha",)), "elu": ("Elu", ("alpha",)),
                     "celu": ("Celu", ("alpha",)), "thresholded_relu": ("ThresholdedRelu", ("alpha",)),
                     "softplus": ("Softplus", ()), "softsign": ("Softsign", ()), "selu": ("Selu", ("alpha", "gamma")),
                     "erf": ("Erf", ()), "exp": ("Exp", ()), "log": ("Log", ()), "sqrt": ("Sqrt", ()),
                     "reciprocal": ("Reciprocal", ()), "abs": ("Abs", ())}


def _activation(wr: _Writer, layer, w: dict) -> None:
    form = wr.native[layer.inputs[0]]
    x = wr.get(layer.inputs[0], form)
    if layer.func == "clip":
        bounds = [wr.floats(v) if math.isfinite(v) else "" for v in layer.params]
        return wr.put(layer.name, form, wr.node("Clip", [x, *bounds], layer.name))
    if layer.func == "mish":        # the Mish operator needs opset 18: x * tanh(softplus(x))
        t = wr.node("Tanh", [wr.node("Softplus", [x], f"{layer.name}/softplus")], f"{layer.name}/tanh")
        return wr.put(layer.name, form, wr.node("Mul", [x, t], layer.name))
    if layer.func == "gelu_tanh":   # Gelu's approximate attribute needs opset 20: the formula
        cube = wr.node("Pow", [x, wr.floats(3.0)], f"{layer.name}/cube")
        inner = wr.node("Add", [x, wr.node("Mul", [cube, wr.floats(0.044715)], f"{layer.name}/cubic")], f"{layer.name}/inner")
        t = wr.node("Tanh", [wr.node("Mul", [inner, wr.floats(math.sqrt(2 / math.pi))], f"{layer.name}/scaled")],
                    f"{layer.name}/tanh")
        half = wr.node("Mul", [x, wr.node("Add", [t, wr.floats(1.0)], f"{layer.name}/one_plus")], f"{layer.name}/times")
        return wr.put(layer.name, form, wr.node("Mul", [half, wr.floats(0.5)], layer.name))
    if layer.func == "swish":       # the Swish operator needs opset 24: x * sigmoid(alpha * x)
        alpha = layer.params[0]
        u = x if alpha == 1 else wr.node("Mul", [x, wr.floats(alpha)], f"{layer.name}/scaled")
        return wr.put(layer.name, form, wr.node("Mul", [x, wr.node("Sigmoid", [u], f"{layer.name}/gate")], layer.name))
    if layer.func == "pow":
        return wr.put(layer.name, form, wr.node("Pow", [x, wr.floats(layer.params[0])], layer.name))
    if layer.func == "rsqrt":
        biased = wr.node("Add", [x, wr.floats(layer.params[0])], f"{layer.name}/eps")
        root = wr.node("Sqrt", [biased], f"{layer.name}/sqrt")
        return wr.put(layer.name, form, wr.node("Reciprocal", [root], layer.name))
    if layer.func != "gelu":
        op, attrs = _ONNX_ACTIVATIONS[layer.func]
        return wr.put(layer.name, form, wr.node(op, [x], layer.name, **dict(zip(attrs, layer.params))))
    # PyTorch's exact GELU below opset 20: x * (1 + erf(x / sqrt(2))) * 0.5
    d = wr.node("Div", [x, wr.floats(float(np.float32(math.sqrt(2))))], f"{layer.name}/div")
    e = wr.node("Erf", [d], f"{layer.name}/erf")
    a = wr.node("Add", [e, wr.floats(1.0)], f"{layer.name}/add")
    m = wr.node("Mul", [x, a], f"{layer.name}/mul")
    wr.put(layer.name, form, wr.node("Mul", [m, wr.floats(0.5)], layer.name))


def _binary(wr: _Writer, layer, w: dict) -> None:
    op = {"add": "Add", "mul": "Mul"}[layer.kind]
    h, wd, c = layer.out_shape
    shapes = [wr.shapes[t] for t in layer.inputs]
    relu = getattr(layer, "relu", False)
    out_name = f"{layer.name}/sum" if relu else layer.name
    if all(s == layer.out_shape for s in shapes):
        form = wr.native[layer.inputs[0]]
        out = wr.node(op, [wr.get(t, form) for t in layer.inputs], out_name)
        if relu:
            out = wr.node("Relu", [out], layer.name)
    else:
        # IR broadcasting: rows and columns of size 1, channels repeated ([.., r, cb] against [.., 1, cb])
        cb = min(s[2] for s in shapes)
        ins = []
        for t, (ht, wt, ct) in zip(layer.inputs, shapes):
            shape = [1, h, wd, c // cb, cb] if (ht, wt, ct) == layer.out_shape else [1, ht, wt, ct // cb, cb]
            ins.append(wr.reshape(wr.get(t, "tokens"), shape, f"{layer.name}/{t}/broadcast"))
        out = wr.node(op, ins, out_name)
        if relu:
            out = wr.node("Relu", [out], layer.name)
        out = wr.reshape(out, [1, h * wd, c], f"{layer.name}/tokens")
        form = "tokens"
    wr.put(layer.name, form, out)


def _resize(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "nchw")
    sizes = wr.ints([1, layer.out_shape[2], layer.out_h, layer.out_w])
    # as PyTorch's exporter writes it, except to an axis of one pixel, where ONNX's pytorch_half_pixel
    # reads the first pixel and half_pixel (and the IR) the centre
    ctm = "align_corners" if layer.align_corners else "half_pixel" if 1 in (layer.out_h, layer.out_w) \
        else "pytorch_half_pixel"
    attrs = ({"mode": "linear", "coordinate_transformation_mode": ctm} if layer.mode == "bilinear"
             else {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})
    wr.put(layer.name, "nchw", wr.node("Resize", [x, "", "", sizes], layer.name, **attrs))


def _pool(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "nchw")
    h, wd, _ = wr.shapes[layer.inputs[0]]
    if layer.mode != "adaptive_avg":
        k, s, p = [layer.kernel] * 2, [layer.stride] * 2, [layer.padding] * 4
        extra = {"count_include_pad": int(layer.count_include_pad)} if layer.mode == "avg" else {}
        out = wr.node("MaxPool" if layer.mode == "max" else "AveragePool", [x], layer.name, kernel_shape=k,
                      strides=s, pads=p, ceil_mode=int(layer.ceil_mode), **extra)
    elif (layer.out_h, layer.out_w) == (1, 1):
        out = wr.node("GlobalAveragePool", [x], layer.name)
    elif (layer.out_h, layer.out_w) in ((1, wd), (h, 1)):
        out = wr.node("ReduceMean", [x], layer.name, axes=[2 if layer.out_h == 1 else 3], keepdims=1)
    elif h % layer.out_h == 0 and wd % layer.out_w == 0:
        k = [h // layer.out_h, wd // layer.out_w]
        out = wr.node("AveragePool", [x], layer.name, kernel_shape=k, strides=k, count_include_pad=0)
    else:
        out = wr.node("AdaptiveAveragePool", [x], layer.name, domain=CUSTOM_DOMAIN,
                      output_size=[layer.out_h, layer.out_w])
    wr.put(layer.name, "nchw", out)


def _concat(wr: _Writer, layer, w: dict) -> None:
    if layer.along == "pixels":              # tokens one after the other, as [1, N, C]
        ins = [wr.get(t, "tokens") for t in layer.inputs]
        wr.put(layer.name, "tokens", wr.node("Concat", ins, layer.name, axis=1))
        return
    form = wr.native[layer.inputs[0]]
    ins = [wr.get(t, form) for t in layer.inputs]
    wr.put(layer.name, form, wr.node("Concat", ins, layer.name, axis=1 if form == "nchw" else 2))


def _channel_slice(wr: _Writer, layer, w: dict) -> None:
    form = wr.native[layer.inputs[0]]
    axis = 1 if form == "nchw" else 2
    x = wr.get(layer.inputs[0], form)
    wr.put(layer.name, form, wr.slice(x, [axis], [layer.start], [layer.start + layer.channels], layer.name))


def _pixel_reshape(wr: _Writer, layer, w: dict) -> None:
    """As tokens, the pixels in order: some of the input's ``[1, H*W, C]``."""
    x, (h, wd, _) = wr.get(layer.inputs[0], "tokens"), wr.shapes[layer.inputs[0]]
    n = layer.out_h * layer.out_w
    wr.put(layer.name, "tokens", x if (layer.start, n) == (0, h * wd) else
           wr.slice(x, [1], [layer.start], [layer.start + n], layer.name))


def _pad(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "nchw")
    h, wd, _ = wr.shapes[layer.inputs[0]]
    pads = wr.ints([0, 0, 0, 0, 0, 0, layer.out_h - h, layer.out_w - wd])
    wr.put(layer.name, "nchw", wr.node("Pad", [x, pads], layer.name, mode="constant"))


def _crop(wr: _Writer, layer, w: dict) -> None:
    x = wr.get(layer.inputs[0], "nchw")
    (sy, sx), ends = layer.step, [layer.y0 + (layer.out_h - 1) * layer.step[0] + 1, layer.x0 + (layer.out_w - 1) * layer.step[1] + 1]
    steps = [sy, sx] if (sy, sx) != (1, 1) else None
    wr.put(layer.name, "nchw", wr.slice(x, [2, 3], [layer.y0, layer.x0], ends, layer.name, steps=steps))


def _roll(wr: _Writer, layer, w: dict) -> None:
    """``out[y, x] = in[(y + s) mod H, (x + s_x) mod W]``: two slices and a concatenation per axis (torch.roll)."""
    x = wr.get(layer.inputs[0], "nchw")
    h, wd, _ = wr.shapes[layer.inputs[0]]
    moved = [(axis, shift % n, n) for axis, n, shift in zip((2, 3), (h, wd), layer.shifts) if shift % n]
    for axis, s, n in moved:            # the last concatenation is the layer's value
        top = wr.slice(x, [axis], [s], [n], f"{layer.name}/{axis}a")
        bottom = wr.slice(x, [axis], [0], [s], f"{layer.name}/{axis}b")
        x = wr.node("Concat", [top, bottom], layer.name if axis == moved[-1][0] else f"{layer.name}/{axis}", axis=axis)
    wr.put(layer.name, "nchw", x if x == layer.name else wr.node("Identity", [x], layer.name))


def _window_partition(wr: _Writer, layer, w: dict) -> None:
    h, wd, c = wr.shapes[layer.inputs[0]]
    win = layer.window
    n = (h // win) * (wd // win)
    x = wr.reshape(wr.get(layer.inputs[0], "tokens"), [1, h // win, win, wd // win, win, c], f"{layer.name}/grid")
    x = wr.transpose(x, (0, 1, 3, 2, 4, 5), f"{layer.name}/windows")
    # the layer's name on the value where the data moves: PyTorch's [windows, 49, C], unless the
    # windows are as wide as the image (their raster order), then where they are interleaved
    across = wd // win > 1
    x = wr.reshape(x, [n, win * win, c], layer.name if across else f"{layer.name}/raster")
    x = wr.transpose(x, (1, 0, 2), f"{layer.name}/interleaved")
    wr.put(layer.name, "tokens", wr.reshape(x, [1, win * win * n, c], f"{layer.name}/tokens" if across else layer.name))


def _window_reverse(wr: _Writer, layer, w: dict) -> None:
    win, h, wd = layer.window, layer.out_h, layer.out_w
    c = layer.out_shape[2]
    n = (h // win) * (wd // win)
    x = wr.reshape(wr.get(layer.inputs[0], "tokens"), [win * win, n, c], f"{layer.name}/interleaved")
    x = wr.transpose(x, (1, 0, 2), f"{layer.name}/per_window")
    x = wr.reshape(x, [1, h // win, wd // win, win, win, c], f"{layer.name}/windows")
    x = wr.transpose(x, (0, 1, 3, 2, 4, 5), f"{layer.name}/grid")
    x = wr.reshape(x, [1, h, wd, c], layer.name)                # the image again: the data moved
    wr.put(layer.name, "tokens", wr.reshape(x, [1, h * wd, c], f"{layer.name}/tokens"))


def _patch_merge(wr: _Writer, layer, w: dict) -> None:
    h, wd, c = wr.shapes[layer.inputs[0]]
    x = wr.reshape(wr.get(layer.inputs[0], "tokens"), [1, h, wd, c], f"{layer.name}/image")
    if h % 2 or wd % 2:
        x = wr.node("Pad", [x, wr.ints([0, 0, 0, 0, 0, h % 2, wd % 2, 0])], f"{layer.name}/pad", mode="constant")
    big = 1 << 30
    parts = [wr.slice(x, [1, 2], [dy, dx], [big, big], f"{layer.name}/x{i}", steps=[2, 2])
             for i, (dy, dx) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1)))]
    x = wr.node("Concat", parts, layer.name, axis=3)
    h2, w2 = (h + h % 2) // 2, (wd + wd % 2) // 2
    wr.put(layer.name, "tokens", wr.reshape(x, [1, h2 * w2, 4 * c], f"{layer.name}/tokens"))


def _depth_to_space(wr: _Writer, layer, w: dict) -> None:
    wr.put(layer.name, "nchw", wr.node("DepthToSpace", [wr.get(layer.inputs[0], "nchw")], layer.name,
                                      blocksize=layer.block, mode="DCR"))


def _space_to_depth(wr: _Writer, layer, w: dict) -> None:
    wr.put(layer.name, "nchw", wr.node("SpaceToDepth", [wr.get(layer.inputs[0], "nchw")], layer.name,
                                      blocksize=layer.block))


def _channel_shuffle(wr: _Writer, layer, w: dict) -> None:
    h, wd, c = layer.out_shape
    g = layer.groups
    x = wr.reshape(wr.get(layer.inputs[0], "nchw"), [1, g, c // g, h, wd], f"{layer.name}/groups")
    x = wr.transpose(x, (0, 2, 1, 3, 4), f"{layer.name}/shuffled")
    wr.put(layer.name, "nchw", wr.reshape(x, [1, c, h, wd], layer.name))


def _constant(wr: _Writer, layer, w: dict) -> None:
    from onnx import numpy_helper

    h, wd, c = layer.out_shape
    data = np.asarray(w["data"], np.float32).reshape(h, wd, c)
    if wd == 1:
        arr, form = data.reshape(1, h, c), "tokens"
    else:
        arr, form = data.transpose(2, 0, 1)[None], "nchw"
    wr.nodes.append(wr.helper.make_node("Constant", [], [layer.name], name=layer.name,
                                        value=numpy_helper.from_array(np.ascontiguousarray(arr), layer.name)))
    wr.put(layer.name, form, layer.name)


_LAYERS = {"conv2d": _conv, "linear": _linear, "matmul": _matmul, "layernorm": _layernorm, "softmax": _softmax,
           **{func: _activation for func in ACTIVATIONS}, "add": _binary, "mul": _binary,
           "resize": _resize, "pool": _pool, "concat": _concat, "channel_slice": _channel_slice,
           "pixel_reshape": _pixel_reshape, "pad": _pad, "crop": _crop, "roll": _roll,
           "window_partition": _window_partition, "window_reverse": _window_reverse, "patch_merge": _patch_merge,
           "depth_to_space": _depth_to_space, "space_to_depth": _space_to_depth,
           "channel_shuffle": _channel_shuffle, "constant": _constant}


def _form_shape(wr: _Writer, tensor: str, form: str) -> list[int]:
    h, w, c = wr.shapes[tensor]
    return [1, c, h, w] if form == "nchw" else [1, h * w, c]


def export_onnx(model: Model, weights: dict, *, doc: str = "", metadata: Optional[dict] = None):
    """``model`` with ``weights`` (``mapper.weights`` format) as an ``onnx.ModelProto`` (module docstring).

    Raises
    ------
    ValueError
        A layer kind the exporter does not know (none of the zoo's).
    """
    from onnx import helper

    wr = _Writer(model)
    h, w, c = model.input
    wr.put("input", "nchw", "input")
    for layer in model.layers:
        fn = _LAYERS.get(layer.kind)
        if fn is None:
            raise ValueError(f"{layer.name}: no ONNX form for a {layer.kind} layer")
        fn(wr, layer, weights.get(layer.name, {}))
    outputs = [helper.make_tensor_value_info(wr.get(n, wr.native[n]), wr.tp.FLOAT, _form_shape(wr, n, wr.native[n]))
               for n in model.output_names]
    for layer in model.layers:
        if is_class_map(layer, model):          # the accelerator writes the class of each pixel
            out = wr.node("ArgMax", [wr.get(layer.name, "nchw")], f"{layer.name}/class", axis=1, keepdims=1)
            outputs.append(helper.make_tensor_value_info(out, wr.tp.INT64, [1, 1, *layer.out_shape[:2]]))
    graph = helper.make_graph(wr.nodes, model.name, [helper.make_tensor_value_info("input", wr.tp.FLOAT, [1, c, h, w])],
                              outputs, initializer=list(wr.inits.values()), doc_string=doc)
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == CUSTOM_DOMAIN for n in wr.nodes):
        opsets.append(helper.make_opsetid(CUSTOM_DOMAIN, 1))
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="vitaccel")
    proto.ir_version = 8
    meta = {PARTS_KEY: json.dumps({l.name: l.part for l in model.layers}), **(metadata or {})}
    helper.set_model_props(proto, meta)
    return proto


def custom_operators(proto) -> list[str]:
    """The operators of ``proto``'s graph in the project's own domain (``com.vitaccel``), which
    this project's importer reads and onnxruntime cannot run; empty for standard ONNX."""
    return sorted({n.op_type for n in proto.graph.node if n.domain == CUSTOM_DOMAIN})


# ---- command line -----------------------------------------------------------------------------------

DEFAULT_OUT = Path("build") / "onnx"


def _parser() -> argparse.ArgumentParser:
    from hw.cli import OneLineParser, seed

    from .workloads import MODEL_NAMES

    p = OneLineParser(prog="python -m mapper.onnx_export",
                      description="Write a zoo model as ONNX (opset 17) with its seeded float weights.")
    p.add_argument("--model", required=True, help=f"one of: {', '.join(MODEL_NAMES)}")
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights (mapper.weights.init_weights; default 0)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"output directory (default {DEFAULT_OUT}), or the file: --out my.onnx")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    from hw.cli import UsageError, atomic_write_bytes, fail, output_file, refuse_replacing

    from .flops import build_model_or_usage_error, model_tag, parse_size, refuse_beyond_every_config
    from .weights import init_weights
    from .workloads import MODEL_NAMES, did_you_mean

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.model not in MODEL_NAMES:
            raise UsageError(f"unknown model {args.model!r}{did_you_mean(args.model)}; choose one of {', '.join(MODEL_NAMES)} "
                             f"(an ONNX file is already ONNX)")
        size = parse_size(args.size) if args.size is not None else None
        model = build_model_or_usage_error(args.model, args.variant, size)
        if size is not None:                # the file would be of a network nothing maps (and its weights'
            refuse_beyond_every_config(model, size)     # calibration image petabytes)
        seed = args.seed
        path = output_file(args.out, f"{model_tag(model, size is not None)}{f'_seed{seed}' if seed else ''}.onnx")
        proto = export_onnx(model, init_weights(model, seed),
                            metadata={"vitaccel.model": model.name, "vitaccel.variant": model.variant,
                                      "vitaccel.seed": str(seed)})
        blob = proto.SerializeToString()
        refuse_replacing(args.out, path, blob)
        try:
            atomic_write_bytes(path, blob)
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
    except UsageError as e:
        return fail(parser.prog, e)
    weights = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == 1)   # FLOAT, not shapes
    print(f"wrote {path}: {len(proto.graph.node)} nodes, {weights:,} weights, {model.total_macs:,} MACs")
    custom = custom_operators(proto)
    if custom:
        print(f"note: it uses {CUSTOM_DOMAIN} operators ({', '.join(custom)}) for layers ONNX has no operator for: "
              f"this project's importer reads it, onnxruntime cannot run it (docs/onnx.md)")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(main)
