"""The golden whole-network integer model: every layer of a quantised model, from the IR's semantics.

``run_network(qmodel, x)`` computes each layer's int8 output from its inputs' with the
accelerator's arithmetic (``sim.golden``'s exact MAC layers and requantisation,
``hw.operators``' non-MAC operators) and the layer's attributes (``mapper.ir``), knowing
nothing of tilings, programs or DRAM: the functional simulator's results are compared
with it tensor by tensor.  A segmentation model's final resize of its class scores is,
in addition, the class map ``hw.operators.resize_argmax`` gives (:func:`class_map`).
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from hw import operators as ops
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


def class_map(logits: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """The segmentation output: the per-pixel class of the bilinearly upsampled scores."""
    return ops.resize_argmax(logits, out_h, out_w)


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
                        acc_bits=acc_bits)
    return _requant(acc, q, layer.relu, acc_bits)


def _linear(layer, ins, q, acc_bits):
    h, w, _ = ins[0].shape
    x = ins[0].reshape(h * w, -1)[:, :layer.in_features]
    return _requant(golden.linear(x, q.weight, acc_bits=acc_bits), q, layer.relu, acc_bits).reshape(h, w, -1)


def _operand(t: np.ndarray, rows: int, cols: int, offset: int, windows: int, heads: int) -> np.ndarray:
    """``[windows * heads, rows, cols]`` of a tensor holding ``rows * windows`` tokens (row ``r`` of
    window ``w`` is token ``r * windows + w``) with head ``h``'s columns at ``offset + h * cols``."""
    tok = t.reshape(rows, windows, -1)[:, :, offset:offset + heads * cols]
    return tok.reshape(rows, windows, heads, cols).transpose(1, 2, 0, 3).reshape(windows * heads, rows, cols)


def _matmul(layer, ins, q, acc_bits):
    a_t, b_t = ins
    wins, heads = layer.windows, layer.heads
    a = _operand(a_t, layer.m, layer.k, layer.a_offset, wins, heads)                 # [B, M, K]
    if layer.b_layout == "nk":
        b = _operand(b_t, layer.n, layer.k, layer.b_offset, wins, heads).transpose(0, 2, 1)
    else:
        b = _operand(b_t, layer.k, layer.n, layer.b_offset, wins, heads)              # [B, K, N]
    acc = golden.matmul(a, b, acc_bits=acc_bits)                                      # [B, M, N]
    acc = acc.reshape(wins, heads, layer.m, layer.n).transpose(2, 0, 1, 3).reshape(layer.m * wins, -1)
    h, w, _ = a_t.shape
    return _requant(acc, q, False, acc_bits).reshape(h, w, -1)


def _broadcast(t: np.ndarray, shape) -> np.ndarray:
    """numpy broadcasting of H and W; channels repeated when they divide the output's."""
    reps = shape[2] // t.shape[2]
    return np.broadcast_to(np.tile(t, (1, 1, reps)) if reps > 1 else t, shape)


def _add(layer, ins, q, acc_bits):
    a, b = (_broadcast(t, layer.out_shape) for t in ins)
    return ops.add(a, b, q.params)


def _mul(layer, ins, q, acc_bits):
    a, b = (_broadcast(t, layer.out_shape) for t in ins)
    return ops.mul(a, b, q.params)


def _softmax(layer, ins, q, acc_bits):
    x = ins[0]
    row = layer.row_len()
    return ops.softmax(x.reshape(*x.shape[:2], -1, row), q.params).reshape(x.shape)


def _resize(layer, ins, q, acc_bits):
    f = ops.resize_bilinear if layer.mode == "bilinear" else ops.resize_nearest
    return f(ins[0], layer.out_h, layer.out_w)


def _pool(layer, ins, q, acc_bits):
    x = ins[0]
    if layer.mode == "max":
        return ops.maxpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if layer.mode == "avg":
        return ops.avgpool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode, layer.count_include_pad)
    return ops.adaptive_avgpool2d(x, layer.out_h, layer.out_w)


def _pad(layer, ins, q, acc_bits):
    x = ins[0]
    return np.pad(x, ((0, layer.out_h - x.shape[0]), (0, layer.out_w - x.shape[1]), (0, 0)))


def _roll(layer, ins, q, acc_bits):
    return np.roll(ins[0], (-layer.shift, -layer.shift), axis=(0, 1))


def _partition(layer, ins, q, acc_bits):
    x, win = ins[0], layer.window
    h, w, c = x.shape
    t = x.reshape(h // win, win, w // win, win, c).transpose(1, 3, 0, 2, 4)   # [iy, ix, wy, wx, c]
    return np.ascontiguousarray(t).reshape(win * win, (h // win) * (w // win), c)


def _reverse(layer, ins, q, acc_bits):
    x, win = ins[0], layer.window
    h, w, c = layer.out_h, layer.out_w, x.shape[2]
    t = x.reshape(win, win, h // win, w // win, c).transpose(2, 0, 3, 1, 4)
    return np.ascontiguousarray(t).reshape(h, w, c)


def _merge(layer, ins, q, acc_bits):
    x = ins[0]
    h, w, _ = x.shape
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)))
    return np.concatenate([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], axis=-1)


_LAYERS = {
    "conv2d": _conv, "linear": _linear, "matmul": _matmul,
    "add": _add, "mul": _mul,
    "relu": lambda l, ins, q, b: ops.lut(ins[0], q.params),
    "gelu": lambda l, ins, q, b: ops.lut(ins[0], q.params),
    "sigmoid": lambda l, ins, q, b: ops.lut(ins[0], q.params),
    "layernorm": lambda l, ins, q, b: ops.layernorm(ins[0], q.params),
    "softmax": _softmax, "resize": _resize, "pool": _pool,
    "concat": lambda l, ins, q, b: np.concatenate(ins, axis=-1),
    "pad": _pad, "roll": _roll, "crop": lambda l, ins, q, b: ins[0][:l.out_h, :l.out_w].copy(),
    "window_partition": _partition, "window_reverse": _reverse, "patch_merge": _merge,
    "constant": lambda l, ins, q, b: np.asarray(q.data, np.int8),
}
