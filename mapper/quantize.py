"""An int8 network: the integer parameters of every layer of a model (``QModel``).

Activations are int8 with one symmetric scale per tensor (``real = q * scale``).  Per layer:

* ``conv2d`` and ``linear``: per-output-channel int8 weights (``[K, kh, kw, C/groups]`` and
  ``[K, C]``), int32 bias and the requantisation multiplier and shift of ``hw/numerics.py``;
  ``matmul``: the multiplier and shift only (both operands are activations);
* ``add``/``mul``/``layernorm``/``softmax``: ``hw.operators``' parameters;
* ``relu``/``gelu``/``sigmoid``: a 256-entry int8 table (``hw.operators.lut_table``);
* ``constant``: its int8 data;
* resizes, pooling, concatenations and layout layers keep their input's scale and need none;
  a concatenation that only the host reads (a graph output, or a part of such a concatenation)
  keeps its parts' scales instead: ``part_scales`` holds each element's (``QModel.scales``).

The values come from calibration (``mapper.calibrate``) or, for tests of the data path,
:func:`random_qmodel` (arbitrary but valid parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hw import operators as ops

from .float_ops import ACTIVATIONS, activation
from .ir import MAC_KINDS, Conv2d, Linear, MatMul, Model

__all__ = ["QLayer", "QModel", "random_qmodel", "requant_channels"]


@dataclass
class QLayer:
    """The integer parameters of one layer (module docstring); ``scale`` is its output's.

    ``part_scales``: for a concatenation whose parts keep their own scales, the scale of each
    element, an array broadcastable to the layer's ``(H, W, C)`` output (size 1 along an axis on
    which it does not vary); ``scale`` is then the coarsest of them, and no layer reads the tensor.
    """

    scale: float
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    mult: Optional[np.ndarray] = None
    shift: Optional[np.ndarray] = None
    params: Any = None
    data: Optional[np.ndarray] = None
    part_scales: Optional[np.ndarray] = None


@dataclass
class QModel:
    """A model and its integer parameters; ``input_scale`` quantises the input image."""

    model: Model
    input_scale: float
    layers: dict[str, QLayer] = field(default_factory=dict)

    def scale(self, name: str) -> float:
        return self.input_scale if name == "input" else self.layers[name].scale

    def scales(self, name: str):
        """The scale of each element of tensor ``name``: its one scale (a float), or for a
        concatenation of parts that keep their own scales (``QLayer.part_scales``) an array
        broadcastable to its ``(H, W, C)`` shape."""
        part = None if name == "input" else self.layers[name].part_scales
        return self.scale(name) if part is None else part

    def dequantise(self, name: str, values: np.ndarray) -> np.ndarray:
        """``values`` (tensor ``name``'s int8, in its ``(H, W, C)`` layout or flattened) as float64
        reals, each element times its own scale (:meth:`scales`), in ``values``' shape."""
        values = np.asarray(values)
        scales = self.scales(name)
        if np.ndim(scales) == 0:
            return values.astype(np.float64) * scales
        shape = self.model.shape(name)
        return (values.reshape(shape).astype(np.float64) * scales).reshape(values.shape)


def requant_channels(layer) -> int:
    """Output channels a MAC layer requantises (one parameter entry each): for a product, every
    column of its ``[M, batch * N]`` output (the same multiplier for all)."""
    if isinstance(layer, MatMul):
        return layer.batch * layer.n
    return layer.out_ch if isinstance(layer, Conv2d) else layer.out_features


def random_qmodel(model: Model, seed: int = 0) -> QModel:
    """Arbitrary valid integer parameters (seeded), for tests of the data path: outputs spread
    over the int8 range without saturating everywhere."""
    rng = np.random.default_rng(seed)
    q = QModel(model, 1 / 32)
    for layer in model.layers:
        q.layers[layer.name] = _random_layer(layer, rng)
    return q


def _random_layer(layer, rng: np.random.Generator) -> QLayer:
    i8 = lambda *shape: rng.integers(-128, 128, size=shape).astype(np.int8)
    kind = layer.kind
    if kind in MAC_KINDS:
        k = requant_channels(layer)
        if isinstance(layer, Conv2d):
            w = i8(layer.out_ch, *layer.kernel, layer.in_ch // layer.groups)
            red = w[0].size
        elif isinstance(layer, Linear):
            w = i8(layer.out_features, layer.in_features)
            red = layer.in_features
        else:
            w, red = None, layer.k
        shift = 16 + max(0, int(np.log2(max(1, red))) // 2)
        return QLayer(1 / 32, w, rng.integers(-(1 << 12), 1 << 12, size=k).astype(np.int64),
                      rng.integers(1 << 13, 1 << 15, size=k).astype(np.int64), np.full(k, shift, np.int64))
    if kind == "add":
        return QLayer(1 / 32, params=ops.add_params(1 / 32, 1 / 32 * rng.uniform(0.5, 2), 1 / 32 * rng.uniform(1, 2),
                                                   relu=layer.relu))
    if kind == "mul":
        return QLayer(1 / 32, params=ops.mul_params(1 / 32, 1 / 32, 1 / 32 * rng.uniform(8, 32)))
    if kind in ACTIVATIONS:
        fn = {"relu": lambda v: np.maximum(v, 0), "gelu": lambda v: v / (1 + np.exp(-1.702 * v)),
              "sigmoid": lambda v: 1 / (1 + np.exp(-v))}.get(kind, lambda v: activation(kind, v, layer.params))
        # a function with values in [0, 1] (sigmoid, hard sigmoid) gets an output scale of 1/128
        values = fn(np.arange(-128, 128) / 32)
        unit = 0 <= values.min() and values.max() <= 1
        return QLayer(1 / 32, params=ops.lut_table(fn, 1 / 32, 1 / 128 if unit else 1 / 32))
    if kind == "layernorm":
        c = layer.out_shape[2]
        return QLayer(1 / 32, params=ops.layernorm_params(rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c),
                                                          layer.eps, 1 / 32, 1 / 32))
    if kind == "softmax":
        out_shift = int(rng.integers(7, 10))
        return QLayer(2.0 ** -out_shift, params=ops.softmax_params(1 / 32 * rng.uniform(0.5, 4), out_shift))
    if kind == "constant":
        return QLayer(1 / 32, data=i8(*layer.out_shape))
    return QLayer(1 / 32)
