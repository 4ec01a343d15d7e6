"""Quantisation of a whole network: float weights and a calibration image -> a :class:`QModel`.

The scheme
----------
* Activations: int8 with one symmetric scale per tensor, ``real = q * s``.  ``s = r / 127``
  where ``r`` is the tensor's range on the calibration image (the rule below).
* Weights: int8 per output channel, ``s_w[k] = max |W[k]| / 127`` (symmetric, -127..127);
  bias int32 in accumulator units, ``round(b[k] / (s_in * s_w[k]))``.
* Requantisation (``hw/numerics.py``): ``mult[k] / 2**shift[k] ~= s_in * s_w[k] / s_out`` with
  a 16-bit ``mult`` holding 16 significant bits (:func:`requant_params`); products of two
  activations (attention) use ``s_a * s_b / s_out`` for every channel and a zero bias.
* Every other layer's parameters come from ``hw.operators``' derivations from its input
  and output scales (``add_params``, ``mul_params``, ``layernorm_params``, ``softmax_params``,
  ``lut_table`` for GELU, sigmoid and ReLU).

Constraints the hardware program relies on (:func:`check_constraints`, run by :func:`quantize`):

* layout layers (pad, roll, crop, window partition and reverse, patch merge), resizes,
  pooling and concatenations move or average values without rescaling, so their output
  has their input's scale, and all the inputs of a concatenation share one scale (their
  producers requantise straight to it): each such set of tensors is a *scale group*
  whose scale covers the largest range of its members;
* but a concatenation that no layer reads, only the host (a graph output, or a part of such a
  concatenation: YOLO's boxes in pixels beside confidences in 0..1), ties nothing: each part
  keeps its own scale where it is written, and the concatenation records each element's
  (``QLayer.part_scales``, :func:`host_read_concats`); the host dequantises slice by slice;
* a ReLU layer keeps its input's scale; its table is ``max(x, 0)``;
* a softmax's output scale is a power of two, ``2**-out_shift`` (``hw.operators.softmax``): the
  finest that holds the largest probability seen on the calibration image (1/128 when a row
  reaches a probability of 1/2 or more, finer when attention spreads); the input image's is the
  fixed :data:`mapper.images.INPUT_SCALE`; a group holding either takes that scale;
* constants are quantised per tensor, by the largest magnitude of their data.

The calibration rule (:func:`tensor_range`)
--------------------------------------------
``r`` is the largest magnitude of the tensor on the calibration image (max-abs), or,
with ``percentile=p``, the ``p``-th percentile of the magnitudes.  A tensor read only
by softmaxes needs less: values more than ``T = ln(256 n)`` below their row's maximum
(rows of ``n``) give outputs below half a step of 1/128 and together move the row's sum
by under 1/256, so they may saturate; ``r`` is then at most
``max over rows of max(rowmax, (T - rowmax) * 127/128)``, which keeps every row's
maximum and the ``T`` below it representable.  This is what lets Swin's shifted-window
scores keep their resolution despite the -100 of the attention mask.

A table with a pole at 0 (``1/x``, ``rsqrt(x + eps)``, ``x ** -a``: a normalisation's factor,
:func:`has_pole_at_zero`) takes ``r`` over the elements whose input is not 0 up to the rounding of
the float computation: ``|x| > u * max |x|``, ``u`` the input's machine epsilon (float32: 1.2e-7;
:func:`pole_table_range`).  A sum of squares or magnitudes of zeros is exactly 0, and a constant
channel's variance is the square of a few of its ulps, far below ``u`` times the largest.  Such a
row of zeros (a pixel a ReLU zeroed under an LpNormalization, a constant channel) has a factor
that scales zeros; its float value, ``1/sqrt(eps)``, would make the factor's scale so coarse that
the other rows' factors round to a step or none, or its product's ``s_a * s_b / s_out`` too large
for the multiplier (refused), so its table entry at 0 saturates instead.  Every other row sets ``r``
as in any tensor, however small its norm: on an image without such a row, ``r`` is max-abs.
``docs/quantization.md`` gives the measured effect of each choice.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from hw import operators as ops
from hw.numerics import MAX_SHIFT, MULT_BITS

from . import float_ops, views
from .images import IMAGE_CHANNELS, INPUT_SCALE, calibration_image, quantize_tensor, round_half_up
from .ir import INPUT, LAYOUT_KINDS, MAC_KINDS, VIEW_KINDS, Concat, Constant, Layer, MatMul, Model, Softmax
from .quantize import QLayer, QModel, requant_channels
from .reference import run_float
from .weights import batchnorm_folder, init_weights

__all__ = ["quantize", "prepare", "quantize_ranges", "calibrate_ranges", "scale_groups", "assign_scales",
           "host_read_concats", "part_scales",
           "tensor_range", "has_pole_at_zero", "pole_table_range", "readers_of", "softmax_row", "softmax_margin",
           "requant_params", "quantize_weights", "check_constraints",
           "softmax_out_shift", "KEEPS_SCALE"]

#: Layer kinds whose output has their input's scale (the module docstring's first constraint, and ReLU).
KEEPS_SCALE = frozenset(LAYOUT_KINDS) | {"resize", "pool", "concat", *VIEW_KINDS, "relu"}
#: Magnitudes sampled for a percentile of a larger tensor (seeded, with replacement).
_PERCENTILE_SAMPLES = 1 << 22


def quantize(model: Model, weights: dict, calib_image: np.ndarray, *,
             percentile: Optional[float] = None) -> QModel:
    """The integer parameters of every layer of ``model`` (module docstring).

    Parameters
    ----------
    model : Model
        The network (no opaque products).
    weights : dict
        Its float weights (:func:`mapper.weights.init_weights`).
    calib_image : np.ndarray
        The preprocessed calibration image (``mapper.images.preprocess``), ``model.input``
        shaped, or a batch of them (``[N, H, W, C]``: ranges over all of them).
    percentile : float, optional
        Calibrate activation ranges at this percentile of the magnitudes (e.g. 99.99)
        instead of their maximum.

    Raises
    ------
    ValueError
        A scale that an operator cannot represent (``hw.operators`` names it) or conflicting
        fixed scales in one scale group.
    """
    return quantize_ranges(model, weights, calibrate_ranges(model, weights, calib_image, percentile=percentile))


def check_image_input(model: Model) -> None:
    """Raise ``ValueError`` unless ``model`` takes an image (RGB, or its luma): what :func:`prepare`
    calibrates on and what ``make run``, ``make sim CHECK=1`` and ``sim.accuracy`` feed it, so a tool
    can refuse the network before its other work."""
    if model.input[2] not in IMAGE_CHANNELS:
        h, w, c = model.input
        raise ValueError(f"its input has {c} channels ({h}x{w} pixels or tokens of {c} channels each); images, "
                         f"and so make run, CHECK=1 and sim.accuracy, give 3 (RGB) or 1 (the luma)")


def prepare(model: Model, seed: int = 0, *, calib_images: int = 1,
            percentile: Optional[float] = None) -> tuple[dict, QModel]:
    """Every model's float weights and their quantisation: ``(weights, qmodel)``.

    The one place that chooses them, for ``make run``, ``make sim CHECK=1`` and ``sim.accuracy``:

    * a model imported from ONNX: the file's weights (``mapper.onnx_import.file_weights``) and,
      for a QDQ file, its own quantisation (``mapper.onnx_import.qdq_qmodel``: its scales and
      int8 weights; tensors without a QDQ pair, and every tensor of a float file, calibrated on
      ``calib_image``);
    * any other model: weights seeded with ``seed`` (``init_weights(model, seed, calib_image)``)
      and ``quantize(model, weights, calib_image)``, in one float pass: the pass that estimates
      the batch norms also calibrates the ranges (the float network after folding is the one
      that pass computes).

    ``calib_image`` is :func:`mapper.images.calibration_image` of ``seed``: ``calib_images`` synthetic
    images (``make run CALIB_IMAGES``, ``sim.accuracy --calib-images``).

    Raises
    ------
    ValueError
        A network that cannot be quantised or computed (an opaque product, an input that is
        not an image of ``model.input``'s shape), or a scale an operator cannot represent.
    """
    check_image_input(model)
    calib_image = calibration_image(*model.input[:2], seed, calib_images, model.input[2])
    from .onnx_import import imported_of, qdq_qmodel    # here: a zoo model's run need not import onnx (a second)

    imported = imported_of(model)
    if imported is not None:
        return imported.weights, qdq_qmodel(imported, calib_image, percentile=percentile)
    weights = init_weights(model, seed, calib_image, fold=False)
    outputs = run_float(model, weights, calib_image, adjust=batchnorm_folder(weights))
    return weights, quantize_ranges(model, weights, _ranges(model, outputs, percentile))


def quantize_ranges(model: Model, weights: dict, ranges: dict[str, float], *,
                    shared: frozenset = frozenset()) -> QModel:
    """The :class:`QModel` of ``model`` for calibrated ``ranges`` (:func:`calibrate_ranges`);
    the concatenations named in ``shared`` give their parts one scale even where only the host
    reads them (:func:`host_read_concats`)."""
    scales = assign_scales(model, ranges, shared)
    q = QModel(model, INPUT_SCALE)
    host_read = host_read_concats(model, shared)
    for layer in model.layers:
        try:
            q.layers[layer.name] = _quantize_layer(layer, weights.get(layer.name), scales)
        except ValueError as e:
            raise ValueError(f"layer {layer.name}: {e}{_wide_constant_hint(model, layer, weights, scales)}") from None
        if layer.name in host_read:            # after its parts, which come before it
            q.layers[layer.name] = _keeping_part_scales(q, layer)
    check_constraints(q)
    return q


def _wide_constant_hint(model: Model, layer: Layer, weights: dict, scales: dict[str, float]) -> str:
    """For an addition refused because a constant operand is far wider than the sum (Hugging Face's
    additive attention mask of ``finfo(float32).min``: the softmax reading the sum keeps its scale
    small), how to fix the model; otherwise nothing."""
    if layer.kind != "add":
        return ""
    for name in layer.inputs:
        if name != INPUT and isinstance(model.layer(name), Constant) and scales[name] > scales[layer.name]:
            data = np.asarray(weights[name]["data"], np.float64)
            extreme = float(data.flat[np.abs(data).argmax()])
            return (f"; its constant input {name!r} reaches {extreme:.6g} (an additive attention mask of "
                    f"finfo(float32).min?): clamp it in the model, e.g. to -1e4, which masks as well after the "
                    f"softmax and fits the int8 scale of the sum")
    return ""


# ---- ranges and scales ---------------------------------------------------------------------------

def readers_of(model: Model) -> dict[str, list[Layer]]:
    """``{tensor name: the layers that read it}``."""
    readers: dict[str, list[Layer]] = {}
    for layer in model.layers:
        for n in layer.inputs:
            readers.setdefault(n, []).append(layer)
    return readers


def softmax_row(readers: list[Layer]) -> Optional[int]:
    """The row length if every reader of a tensor is a softmax (of one row length), else None."""
    rows = {c.row_len() for c in readers if isinstance(c, Softmax)}
    return rows.pop() if readers and len(rows) == 1 and all(isinstance(c, Softmax) for c in readers) else None


def softmax_margin(row: int) -> float:
    """``T = ln(256 * row)``: how far below its row's maximum a softmax input still matters."""
    return math.log(256 * row)


def tensor_range(y: np.ndarray, readers: list[Layer], percentile: Optional[float] = None) -> float:
    """The calibrated range ``r`` of tensor ``y`` read by ``readers`` (module docstring)."""
    mag = np.abs(y)
    if percentile is None:
        r = float(mag.max()) if mag.size else 0.0
    else:
        flat = mag.reshape(-1)
        if flat.size > _PERCENTILE_SAMPLES:
            flat = flat[np.random.default_rng(0).integers(0, flat.size, _PERCENTILE_SAMPLES)]
        r = float(np.percentile(flat, percentile))
    row = softmax_row(readers)
    if row:
        rowmax = y.reshape(-1, row).max(axis=1).astype(np.float64)
        r = min(r, float(np.max(np.maximum(rowmax, (softmax_margin(row) - rowmax) * 127 / 128))))
    return r


def calibrate_ranges(model: Model, weights: dict, calib_image: np.ndarray, *,
                     percentile: Optional[float] = None) -> dict[str, float]:
    """``{tensor name: calibrated range}`` of every layer's output on ``calib_image`` (or a batch);
    constants by the largest magnitude of their data, whatever the rule."""
    return _ranges(model, run_float(model, weights, calib_image), percentile)


def _ranges(model: Model, outputs, percentile: Optional[float]) -> dict[str, float]:
    readers = readers_of(model)
    pole_inputs = {layer.inputs[0] for layer in model.layers if has_pole_at_zero(layer)}
    ranges, kept = {}, {}            # kept: the pole tables' inputs (the input image's is not: its scale is fixed)
    with np.errstate(over="ignore", invalid="ignore"):        # an overflow is refused below, by name
        for layer, (name, y) in zip(model.layers, outputs):
            if not np.all(np.isfinite(y)):
                nan, tables = bool(np.isnan(y).any()), ("sqrt", "log", "pow", "rsqrt", "reciprocal")
                why = (f"NaN: {layer.kind} of inputs outside its domain, e.g. a negative" if nan and layer.kind in tables
                       else f"infinite: {layer.kind} at its pole, an input of 0" if layer.kind in tables
                       else "NaN" if nan else "infinite: weights too large for float32?")
                raise ValueError(f"layer {name}: its float output on the calibration image is not finite ({why})")
            p = None if isinstance(layer, Constant) else percentile
            x = kept.get(layer.inputs[0]) if has_pole_at_zero(layer) else None
            ranges[name] = (tensor_range(y, readers.get(name, []), p) if x is None
                            else pole_table_range(x, y, readers.get(name, []), p))
            if name in pole_inputs:
                kept[name] = y
    return ranges


def has_pole_at_zero(layer: Layer) -> bool:
    """Whether ``layer`` is a table whose magnitude grows without bound toward an input of 0 (its eps
    aside): ``1/x``, ``rsqrt(x + eps)``, ``x ** -a``."""
    return layer.kind in ("reciprocal", "rsqrt") or (layer.kind == "pow" and layer.params[0] < 0)


def pole_table_range(x: np.ndarray, y: np.ndarray, readers: list[Layer], percentile: Optional[float] = None) -> float:
    """The calibrated range of a table with a pole at 0 (:func:`has_pole_at_zero`) of input ``x`` and
    output ``y`` read by ``readers`` (module docstring): :func:`tensor_range` of the elements whose
    input is not 0 up to the rounding of ``x``'s float type (``|x| > u * max |x|``; of all when
    none is)."""
    zero = np.abs(x) <= np.finfo(x.dtype).eps * np.abs(x).max()
    return tensor_range(y if zero.all() else np.where(zero, 0, y), readers, percentile)


def host_read_concats(model: Model, shared: frozenset = frozenset()) -> frozenset[str]:
    """The concatenations whose parts keep their own scales (module docstring): those that no
    layer reads but such concatenations, except those named in ``shared`` (a QDQ file's tensors,
    quantised at one scale of the file's)."""
    readers = readers_of(model)
    free: set[str] = set()
    for layer in reversed(model.layers):          # a reader after what it reads
        if (layer.kind == "concat" and layer.name not in shared
                and all(r.name in free for r in readers.get(layer.name, []))):
            free.add(layer.name)
    return frozenset(free)


def part_scales(q: QModel, layer: Concat) -> np.ndarray:
    """The scale of each element of concatenation ``layer`` (its ``(H, W, C)`` shape) when each part
    keeps its own: its parts' scales, placed as ``mapper.views.concat`` places their values."""
    parts = [np.broadcast_to(q.scales(n), q.model.shape(n)) for n in layer.inputs]
    return views.concat(parts, layer.along, layer.out_shape)


def _keeping_part_scales(q: QModel, layer: Concat) -> QLayer:
    """``layer``'s parameters when its parts keep their own scales: one scale when they have one,
    else the coarsest and each element's, kept only along the axes on which they vary."""
    scales = part_scales(q, layer)
    for axis in range(scales.ndim):
        if scales.shape[axis] > 1 and np.all(scales == scales.take([0], axis)):
            scales = scales.take([0], axis)
    coarsest = float(scales.max())
    return QLayer(coarsest) if scales.size == 1 else QLayer(coarsest, part_scales=np.ascontiguousarray(scales))


def scale_groups(model: Model, shared: frozenset = frozenset()) -> dict[str, str]:
    """``{tensor name: group representative}``: tensors that must share a scale (module docstring;
    ``shared``: :func:`host_read_concats`')."""
    parent = {INPUT: INPUT, **{layer.name: layer.name for layer in model.layers}}
    host_read = host_read_concats(model, shared)

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for layer in model.layers:
        if layer.kind in KEEPS_SCALE and layer.name not in host_read:
            for n in layer.inputs:
                parent[find(n)] = find(layer.name)
    return {n: find(n) for n in parent}


def softmax_out_shift(pmax: float) -> int:
    """The softmax output shift (``hw.operators.SOFTMAX_OUT_SHIFTS``) whose scale holds ``pmax``,
    the largest probability seen: the largest ``s`` with ``pmax * 2**s <= 127``."""
    shifts = ops.SOFTMAX_OUT_SHIFTS
    if pmax <= 0:
        return shifts[-1]
    return int(min(shifts[-1], max(shifts[0], math.floor(math.log2(127 / pmax)))))


def _fixed_scale(model: Model, name: str, ranges: dict[str, float]) -> Optional[float]:
    if name == INPUT:
        return INPUT_SCALE
    if model.layer(name).kind == "softmax":
        return 2.0 ** -softmax_out_shift(ranges.get(name, 1.0))
    return None


def assign_scales(model: Model, ranges: dict[str, float], shared: frozenset = frozenset()) -> dict[str, float]:
    """``{tensor name: scale}``: per scale group ``max range / 127``, or the group's fixed scale
    (``shared``: :func:`host_read_concats`').

    Raises
    ------
    ValueError
        A group holding two different fixed scales (naming both tensors).
    """
    groups = scale_groups(model, shared)
    fixed: dict[str, tuple[str, float]] = {}
    largest: dict[str, float] = {}
    for name, root in groups.items():
        f = _fixed_scale(model, name, ranges)
        if f is not None:
            if root in fixed and fixed[root][1] != f:
                raise ValueError(f"{model.name}: {name!r} (scale {f:.6g}) and {fixed[root][0]!r} (scale "
                                 f"{fixed[root][1]:.6g}) must share a scale but both are fixed")
            fixed[root] = (name, f)
        largest[root] = max(largest.get(root, 0.0), ranges.get(name, 0.0))
    scales = {}
    for name, root in groups.items():
        r = largest[root] if largest[root] > 0 else 1.0          # an all-zero tensor: any scale will do
        scales[name] = fixed[root][1] if root in fixed else r / 127
    return scales


def check_constraints(q: QModel) -> None:
    """Check the constraints the hardware program relies on (module docstring) on ``q``.

    Raises
    ------
    ValueError
        Naming the first layer that breaks one, and how.
    """
    relu_table = np.maximum(np.arange(-128, 128), 0)
    if q.input_scale != INPUT_SCALE:
        raise ValueError(f"input scale {q.input_scale!r} is not INPUT_SCALE = {INPUT_SCALE!r}")
    readers = readers_of(q.model)
    for layer in q.model.layers:
        ql = q.layers[layer.name]
        if ql.part_scales is not None:
            _check_part_scales(q, layer, readers.get(layer.name, []))
        elif layer.kind in KEEPS_SCALE:
            bad = [n for n in layer.inputs if q.scale(n) != ql.scale]
            if bad:
                raise ValueError(f"{layer.name}: a {layer.kind} layer must keep its inputs' scale, but {bad[0]!r} "
                                 f"has {q.scale(bad[0]):.6g} and the output {ql.scale:.6g}")
        if layer.kind == "relu" and not np.array_equal(ql.params, relu_table):
            raise ValueError(f"{layer.name}: a ReLU's table must be max(x, 0)")
        if layer.kind == "softmax" and ql.scale != 2.0 ** -ql.params.out_shift:
            raise ValueError(f"{layer.name}: a softmax's output scale must be 2**-{ql.params.out_shift}, "
                             f"not {ql.scale:.6g}")
        if layer.kind == "constant" and (ql.data is None or np.asarray(ql.data).dtype != np.int8):
            raise ValueError(f"{layer.name}: a constant needs int8 data")


def _check_part_scales(q: QModel, layer: Layer, readers: list[Layer]) -> None:
    """Scales per part: only a concatenation's, read by the host or such concatenations alone (the
    accelerator's operators take one scale a tensor), and its parts' own."""
    if layer.kind != "concat":
        raise ValueError(f"{layer.name}: only a concatenation's parts keep scales of their own, not a {layer.kind}'s")
    bad = [r.name for r in readers if q.layers[r.name].part_scales is None or r.kind != "concat"]
    if bad:
        raise ValueError(f"{layer.name}: its parts keep scales of their own, but {bad[0]!r} reads it as one tensor")
    if not np.array_equal(np.broadcast_to(q.layers[layer.name].part_scales, layer.out_shape), part_scales(q, layer)):
        raise ValueError(f"{layer.name}: its elements' scales are not those of its parts")


# ---- per-layer parameters ------------------------------------------------------------------------

def requant_params(ratio) -> tuple[np.ndarray, np.ndarray]:
    """``(mult, shift)`` int64 arrays with ``mult / 2**shift ~= ratio`` (per channel).

    ``mult`` has ``MULT_BITS`` = 16 significant bits (``2**15 <= mult < 2**16``) unless the
    shift would pass ``MAX_SHIFT`` = 47 (ratios below ``2**-32``).

    Raises
    ------
    ValueError
        A ratio that is not positive and finite, or so large that ``mult`` would need a negative shift.
    """
    r = np.atleast_1d(np.asarray(ratio, np.float64))
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"requantisation ratios must be positive and finite, got {r.min():.6g}..{r.max():.6g}")
    limit = (1 << MULT_BITS) - 1
    shift = np.minimum(np.floor(np.log2(limit / r)), MAX_SHIFT).astype(np.int64)
    mult = round_half_up(r * np.exp2(shift)).astype(np.int64)
    over = mult > limit                                   # log2's rounding, or rounding up to 2**16
    shift[over] -= 1
    mult[over] = round_half_up(r[over] * np.exp2(shift[over])).astype(np.int64)
    if shift.min() < 0:
        raise ValueError(f"requantisation ratio {r.max():.6g} is too large: at most {limit}")
    return mult, shift


def quantize_weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights: ``(q, s_w)`` with ``weight[k] ~= q[k] * s_w[k]``."""
    w = np.asarray(weight, np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    s_w = np.where(amax > 0, amax / 127, 1.0)
    q = np.clip(round_half_up(w / s_w.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
    return q, s_w


def _mac(layer: Layer, w: Optional[dict], s_in: list[float], s_out: float) -> QLayer:
    k = requant_channels(layer)
    if isinstance(layer, MatMul):
        mult, shift = requant_params(np.full(k, s_in[0] * s_in[1] / s_out))
        return QLayer(s_out, None, np.zeros(k, np.int64), mult, shift)
    q, s_w = quantize_weights(w["weight"])
    acc_scale = s_in[0] * s_w
    bias = np.asarray(w["bias"], np.float64) if layer.bias else np.zeros(k)
    bias_q = np.clip(round_half_up(bias / acc_scale), -(1 << 31), (1 << 31) - 1).astype(np.int64)
    mult, shift = requant_params(acc_scale / s_out)
    return QLayer(s_out, q, bias_q, mult, shift)


def _quantize_layer(layer: Layer, w: Optional[dict], scales: dict[str, float]) -> QLayer:
    s_out = scales[layer.name]
    s_in = [scales[n] for n in layer.inputs]
    kind = layer.kind
    if kind in MAC_KINDS:
        return _mac(layer, w, s_in, s_out)
    if kind == "add":
        return QLayer(s_out, params=ops.add_params(s_in[0], s_in[1], s_out, relu=layer.relu))
    if kind == "mul":
        return QLayer(s_out, params=ops.mul_params(s_in[0], s_in[1], s_out))
    if kind in float_ops.ACTIVATIONS:
        return QLayer(s_out, params=ops.lut_table(lambda v: float_ops.activation(kind, v, layer.params), s_in[0], s_out))
    if kind == "layernorm":
        return QLayer(s_out, params=ops.layernorm_params(w["gamma"], w["beta"], layer.eps, s_in[0], s_out))
    if kind == "softmax":
        return QLayer(s_out, params=ops.softmax_params(s_in[0], round(-math.log2(s_out))))
    if kind == "constant":
        data = quantize_tensor(np.asarray(w["data"], np.float64), s_out)
        return QLayer(s_out, data=data.reshape(layer.out_shape))
    return QLayer(s_out)
