"""The float forward pass of any IR model: the reference the integer pipeline is measured against.

``run_float(model, weights, image)`` computes every layer from its inputs in numpy
float32 (or float64) with the IR's semantics (:mod:`mapper.ir`, :mod:`mapper.views`)
and PyTorch's operators (:mod:`mapper.float_ops`): the same network the golden integer
model (``sim.golden_network``) computes in integers, layer for layer.  Weights are
those of :func:`mapper.weights.init_weights`: per layer a dict of float arrays
(``weight`` ``[K, kh, kw, C/groups]`` for a convolution and ``[K, C]`` for a linear,
``bias``, ``gamma``/``beta``, a constant's ``data``).  A tensor is dropped once no
later layer reads it, so SegFormer-B2 at 512x512 needs a few hundred MB at most.

Convolutions accumulate one kernel tap at a time (a BLAS product per tap), so no
im2col copy of the input is ever made: 3x3 convolutions over 2048 channels at 128x128
need no more memory than their input.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from . import float_ops, views
from .ir import INPUT, Conv2d, Layer, Model, conv_out, conv_pads

__all__ = ["run_float", "layer_output", "conv2d", "Adjust"]

#: ``adjust(layer, y) -> y``: called with a MAC layer's output before its ReLU (weights.py folds batch norms).
Adjust = Callable[[Layer, np.ndarray], np.ndarray]


def run_float(model: Model, weights: dict, image: np.ndarray, *, dtype=np.float32,
              keep: Optional[Callable[[str], bool]] = None,
              adjust: Optional[Adjust] = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(layer name, float output)`` in execution order.

    Parameters
    ----------
    model : Model
        Any zoo model except those with opaque products (Anchor DETR).
    weights : dict
        Layer name -> dict of float arrays (:func:`mapper.weights.init_weights`).
    image : np.ndarray
        The preprocessed input, ``model.input`` shaped (``mapper.images.preprocess``), or a
        batch of them (``[N, H, W, C]``: every output then has a leading batch axis too).
    dtype : numpy float type
        float32 (PyTorch's and onnxruntime's precision, the default) or float64.
    keep : callable, optional
        ``keep(name)`` true keeps a tensor alive after its last reader (else it is dropped).
    adjust : callable, optional
        ``adjust(layer, y)`` returns the MAC output to use in place of ``y`` (before the ReLU;
        for a batch, ``y`` holds every image's).

    Raises
    ------
    ValueError
        An image of the wrong shape; an opaque product (Anchor DETR's), when the pass reaches it.
    """
    batched = _check(model, image)
    last_use = {n: i for i, layer in enumerate(model.layers) for n in layer.inputs}
    values = {INPUT: np.asarray(image, dtype)}
    for i, layer in enumerate(model.layers):
        ins = [values[n] for n in layer.inputs]
        w = weights.get(layer.name, {})
        if batched:
            out = _finish(layer, np.stack([_compute(layer, [t[b] for t in ins], w, dtype)
                                           for b in range(len(image))]), adjust)
        else:
            out = layer_output(layer, ins, w, dtype, adjust)
        values[layer.name] = out
        yield layer.name, out
        for n in layer.inputs:
            if last_use.get(n) == i and not (keep and keep(n)):
                values.pop(n, None)


def _check(model: Model, image) -> bool:
    """Whether ``image`` is a batch; ValueError for a wrong shape."""
    shape = np.shape(image)
    if shape[-3:] != tuple(model.input) or len(shape) not in (3, 4) or 0 in shape:
        want = "x".join(map(str, model.input))
        raise ValueError(f"{model.name}: the image has shape {'x'.join(map(str, shape))}, the model takes {want} "
                         f"(or a batch N x {want})")
    return len(shape) == 4


def layer_output(layer: Layer, ins: list[np.ndarray], w: dict, dtype=np.float32,
                 adjust: Optional[Adjust] = None) -> np.ndarray:
    """One layer's float output (HWC) from its inputs and its weights ``w``."""
    out = _finish(layer, _compute(layer, ins, w, dtype), adjust)
    assert out.shape == tuple(layer.out_shape), (layer.name, out.shape, layer.out_shape)
    return out


def _compute(layer: Layer, ins: list[np.ndarray], w: dict, dtype) -> np.ndarray:
    """The layer's output, a MAC layer's before ``adjust`` and its ReLU."""
    fn = _LAYERS.get(layer.kind)
    if fn is None:
        raise NotImplementedError(f"{layer.name}: no float semantics for a {layer.kind} layer")
    return fn(layer, ins, w, dtype)


def _finish(layer: Layer, y: np.ndarray, adjust: Optional[Adjust]) -> np.ndarray:
    """A MAC layer's ``adjust`` and ReLU (its output, in place); any other layer's ``y`` as is."""
    if layer.kind not in ("conv2d", "linear"):
        return y
    y = adjust(layer, y) if adjust else y
    return np.maximum(y, 0, out=y) if layer.relu else y


def _param(w: dict, key: str, dtype) -> np.ndarray:
    return np.asarray(w[key], dtype)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], stride: int, padding,
           groups: int, dilation: int = 1) -> np.ndarray:
    """PyTorch ``conv2d`` on HWC: ``x`` ``[H, W, C]``, ``weight`` ``[K, kh, kw, C/groups]`` -> ``[OH, OW, K]``.

    One product of the im2col matrix when its copy is small (windows that overlap little:
    ``kh*kw <= 4 * stride**2``, patch embeddings and spatial reductions), else one product
    per kernel tap (no copy larger than the input); depthwise taps multiply element-wise.
    """
    k, kh, kw, cg = weight.shape
    top, left, bottom, right = conv_pads(padding)
    xp = np.pad(x, ((top, bottom), (left, right), (0, 0))) if any((top, left, bottom, right)) else x
    oh, ow = conv_out(xp.shape[0], kh, stride, 0, dilation), conv_out(xp.shape[1], kw, stride, 0, dilation)
    if groups == 1 and kh * kw <= 4 * stride * stride and dilation == 1:
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(0, 1))[::stride, ::stride][:oh, :ow]
        cols = win.transpose(0, 1, 3, 4, 2).reshape(oh * ow, kh * kw * cg)      # [y, x, (ky, kx, c)]
        out = cols @ weight.reshape(k, -1).T
    else:
        out = _conv_by_taps(xp, weight, oh, ow, stride, groups, dilation)
    if bias is not None:
        out += bias
    return out.reshape(oh, ow, k)


def _conv_by_taps(xp: np.ndarray, weight: np.ndarray, oh: int, ow: int, stride: int, groups: int,
                  dilation: int = 1) -> np.ndarray:
    """``[OH*OW, K]``: the sum over kernel taps of the shifted input times the tap's weights."""
    k, kh, kw, cg = weight.shape
    out = np.zeros((oh * ow, k), xp.dtype)
    depthwise = cg == 1 and groups == xp.shape[2] == k
    kg = k // groups
    for ty in range(kh):
        for tx in range(kw):
            y, x = ty * dilation, tx * dilation
            tap = xp[y:y + stride * (oh - 1) + 1:stride, x:x + stride * (ow - 1) + 1:stride]
            tap = tap.reshape(oh * ow, -1)            # a copy unless the tap is the whole input
            if depthwise:
                out += tap * weight[:, ty, tx, 0]
                continue
            for g in range(groups):
                xs = tap[:, g * cg:(g + 1) * cg] if groups > 1 else tap
                out[:, g * kg:(g + 1) * kg] += xs @ weight[g * kg:(g + 1) * kg, ty, tx, :].T
    return out


def _conv(layer: Conv2d, ins, w, dtype):
    x = ins[0][:, :, :layer.in_ch]
    bias = _param(w, "bias", dtype) if layer.bias else None
    return conv2d(x, _param(w, "weight", dtype), bias, layer.stride, layer.padding, layer.groups, layer.dilation)


def _linear(layer, ins, w, dtype):
    h, wd, _ = ins[0].shape
    x = ins[0].reshape(h * wd, -1)[:, :layer.in_features]
    y = x @ _param(w, "weight", dtype).T
    if layer.bias:
        y += _param(w, "bias", dtype)
    return y.reshape(h, wd, -1)


def _matmul(layer, ins, w, dtype):
    a, b = views.matmul_operands(layer, *ins)
    return views.matmul_output(layer, np.matmul(a, b))


def _add(layer, ins, w, dtype):
    a, b = (views.broadcast_input(t, layer.out_shape) for t in ins)
    out = a + b
    return np.maximum(out, 0, out=out) if layer.relu else out


def _mul(layer, ins, w, dtype):
    a, b = (views.broadcast_input(t, layer.out_shape) for t in ins)
    return a * b


def _softmax(layer, ins, w, dtype):
    x = ins[0]
    return float_ops.softmax(x.reshape(*x.shape[:2], -1, layer.row_len())).reshape(x.shape)


def _pool(layer, ins, w, dtype):
    x = ins[0]
    if layer.mode == "max":
        return float_ops.maxpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if layer.mode == "avg":
        return float_ops.avgpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                                   layer.count_include_pad)
    return float_ops.adaptive_avgpool2d(x, layer.out_h, layer.out_w)


def _resize(layer, ins, w, dtype):
    if layer.mode == "nearest":
        return float_ops.resize_nearest(ins[0], layer.out_h, layer.out_w)
    return float_ops.resize_bilinear(ins[0], layer.out_h, layer.out_w, layer.align_corners)


_LAYERS = {
    "conv2d": _conv, "linear": _linear, "matmul": _matmul, "add": _add, "mul": _mul,
    **{k: (lambda l, ins, w, d: float_ops.activation(l.func, ins[0], l.params)) for k in float_ops.ACTIVATIONS},
    "layernorm": lambda l, ins, w, d: float_ops.layernorm(ins[0], _param(w, "gamma", d), _param(w, "beta", d),
                                                          l.eps),
    "softmax": _softmax, "resize": _resize, "pool": _pool,
    "concat": lambda l, ins, w, d: views.concat(ins, l.along, l.out_shape),
    "channel_slice": lambda l, ins, w, d: views.channel_slice(ins[0], l.start, l.channels),
    "pixel_reshape": lambda l, ins, w, d: views.pixel_reshape(ins[0], l.out_h, l.out_w, l.start),
    "pad": lambda l, ins, w, d: views.pad(ins[0], l.out_h, l.out_w),
    "crop": lambda l, ins, w, d: views.crop(ins[0], l.out_h, l.out_w, l.y0, l.x0, l.step),
    "roll": lambda l, ins, w, d: views.roll(ins[0], *l.shifts),
    "window_partition": lambda l, ins, w, d: views.window_partition(ins[0], l.window),
    "window_reverse": lambda l, ins, w, d: views.window_reverse(ins[0], l.window, l.out_h, l.out_w),
    "depth_to_space": lambda l, ins, w, d: views.depth_to_space(ins[0], l.block),
    "space_to_depth": lambda l, ins, w, d: views.space_to_depth(ins[0], l.block),
    "channel_shuffle": lambda l, ins, w, d: views.channel_shuffle(ins[0], l.groups),
    "patch_merge": lambda l, ins, w, d: views.patch_merge(ins[0]),
    "constant": lambda l, ins, w, d: _param(w, "data", d).reshape(l.out_shape),
}
