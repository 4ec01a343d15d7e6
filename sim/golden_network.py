"""The golden whole-network integer model: every layer of a quantised model, from the IR's semantics.

``run_network(qmodel, x)`` computes each layer's int8 output from its inputs' with the
accelerator's arithmetic (``sim.golden``'s exact MAC layers and requantisation,
``hw.operators``' non-MAC operators), the layer's attributes (``mapper.ir``) and the IR's
data movement (``mapper.views``, shared with the float reference), knowing
nothing of tilings, programs or DRAM: the functional simulator's results are compared
with it tensor by tensor.  A segmentation model's final resize of its class scores is,
in addition, the class map ``hw.operators.resize_argmax`` gives (:func:`class_map`).
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from hw import operators as ops
from mapper import views
from mapper.float_ops import ACTIVATIONS
from mapper.ir import INPUT, Layer, Model
from mapper.quantize import QLayer, QModel

from . import golden

__all__ = ["run_network", "layer_output", "class_map"]


def run_network(qmodel: QModel, x: np.ndarray, *, acc_bits: int = 32,
                keep: Optional[Callable[[str], bool]] = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(layer name, int8 output)`` in order; a tensor is dropped once no later layer reads
    it unless ``keep(name)``."""
    model = qmodel.model
    last_use = _last_use(model)
    values: dict[str, np.ndarray] = {INPUT: np.asarray(x, np.int8)}
    for i, layer in enumerate(model.layers):
        ins = [values[n] for n in layer.inputs]
        out = layer_output(layer, ins, qmodel.layers[layer.name], acc_bits)
        values[layer.name] = out
        yield layer.name, out
        for n in layer.inputs:
            if last_use.get(n) == i and not (keep and keep(n)):
                values.pop(n, None)


def _last_use(model: Model) -> dict[str, int]:
    last = {}
    for i, layer in enumerate(model.layers):
        for n in layer.inputs:
            last[n] = i
    return last


def class_map(logits: np.ndarray, out_h: int, out_w: int, align_corners: bool = False) -> np.ndarray:
    """The segmentation output: the per-pixel class of the bilinearly upsampled scores."""
    return ops.resize_argmax(logits, out_h, out_w, align_corners=align_corners)


def layer_output(layer: Layer, ins: list[np.ndarray], q: QLayer, acc_bits: int = 32) -> np.ndarray:
    """One layer's int8 output (HWC) from its int8 inputs."""
    fn = _LAYERS.get(layer.kind)
    if fn is None:
        raise NotImplementedError(f"{layer.name}: no integer semantics for a {layer.kind} layer")
    out = fn(layer, ins, q, acc_bits)
    assert out.shape == tuple(layer.out_shape), (layer.name, out.shape, layer.out_shape)
    return out


def _requant(acc: np.ndarray, q: QLayer, relu: bool, acc_bits: int) -> np.ndarray:
    return golden.requantize(acc, q.bias, q.mult, q.shift, relu=relu, acc_bits=acc_bits)


def _conv(layer, ins, q, acc_bits):
    x = ins[0][:, :, :layer.in_ch]
    acc = golden.conv2d(x, q.weight, stride=layer.stride, padding=layer.padding, groups=layer.groups,
                        dilation=layer.dilation,
                        acc_bits=acc_bits)
    return _requant(acc, q, layer.relu, acc_bits)


def _linear(layer, ins, q, acc_bits):
    h, w, _ = ins[0].shape
    x = ins[0].reshape(h * w, -1)[:, :layer.in_features]
    return _requant(golden.linear(x, q.weight, acc_bits=acc_bits), q, layer.relu, acc_bits).reshape(h, w, -1)


def _matmul(layer, ins, q, acc_bits):
    a, b = views.matmul_operands(layer, *ins)
    acc = golden.matmul(a, b, acc_bits=acc_bits)                                      # [B, M, N]
    # the accelerator's [M, windows * heads * N]: one parameter entry per column
    cols = views.matmul_output(layer, acc).reshape(layer.m, -1)
    return _requant(cols, q, False, acc_bits).reshape(layer.out_shape)


def _add(layer, ins, q, acc_bits):
    a, b = (views.broadcast_input(t, layer.out_shape) for t in ins)
    return ops.add(a, b, q.params)


def _mul(layer, ins, q, acc_bits):
    a, b = (views.broadcast_input(t, layer.out_shape) for t in ins)
    return ops.mul(a, b, q.params)


def _softmax(layer, ins, q, acc_bits):
    x = ins[0]
    row = layer.row_len()
    return ops.softmax(x.reshape(*x.shape[:2], -1, row), q.params).reshape(x.shape)


def _resize(layer, ins, q, acc_bits):
    if layer.mode == "nearest":
        return ops.resize_nearest(ins[0], layer.out_h, layer.out_w)
    return ops.resize_bilinear(ins[0], layer.out_h, layer.out_w, align_corners=layer.align_corners)


def _pool(layer, ins, q, acc_bits):
    x = ins[0]
    if layer.mode == "max":
        return ops.maxpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if layer.mode == "avg":
        return ops.avgpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode, layer.count_include_pad)
    return ops.adaptive_avgpool2d(x, layer.out_h, layer.out_w)


_LAYERS = {
    "conv2d": _conv, "linear": _linear, "matmul": _matmul,
    "add": _add, "mul": _mul,
    **{func: (lambda l, ins, q, b: ops.lut(ins[0], q.params)) for func in ACTIVATIONS},     # tables
    "layernorm": lambda l, ins, q, b: ops.layernorm(ins[0], q.params),
    "softmax": _softmax, "resize": _resize, "pool": _pool,
    "concat": lambda l, ins, q, b: views.concat(ins, l.along, l.out_shape),
    "channel_slice": lambda l, ins, q, b: views.channel_slice(ins[0], l.start, l.channels),
    "pixel_reshape": lambda l, ins, q, b: views.pixel_reshape(ins[0], l.out_h, l.out_w, l.start),
    "pad": lambda l, ins, q, b: views.pad(ins[0], l.out_h, l.out_w),
    "roll": lambda l, ins, q, b: views.roll(ins[0], *l.shifts),
    "crop": lambda l, ins, q, b: views.crop(ins[0], l.out_h, l.out_w, l.y0, l.x0, l.step),
    "window_partition": lambda l, ins, q, b: views.window_partition(ins[0], l.window),
    "window_reverse": lambda l, ins, q, b: views.window_reverse(ins[0], l.window, l.out_h, l.out_w),
    "depth_to_space": lambda l, ins, q, b: views.depth_to_space(ins[0], l.block),
    "space_to_depth": lambda l, ins, q, b: views.space_to_depth(ins[0], l.block),
    "channel_shuffle": lambda l, ins, q, b: views.channel_shuffle(ins[0], l.groups),
    "patch_merge": lambda l, ins, q, b: views.patch_merge(ins[0]),
    "constant": lambda l, ins, q, b: np.asarray(q.data, np.int8),
}
