"""Seeded float weights for any IR model, initialised as the original models initialise them.

``init_weights(model, seed)`` returns ``{layer name: {tensor name: float32 array}}``:

* :class:`~mapper.ir.Conv2d`: ``weight`` ``[K, kh, kw, C/groups]`` (HWC order, as the
  accelerator stores it) and ``bias`` ``[K]``;
* :class:`~mapper.ir.Linear`: ``weight`` ``[K, C]`` (PyTorch's order) and ``bias`` ``[K]``;
* :class:`~mapper.ir.LayerNorm`: ``gamma`` and ``beta`` ``[C]`` (1 and 0: every model
  initialises its LayerNorms so: ``nn.LayerNorm``'s default, timm/NVlabs ``_init_weights``,
  mmcv ``constant_init(m, 1, bias=0)``);
* :class:`~mapper.ir.Constant`: ``data`` of the constant's shape, by its ``init``.

Each layer draws from its own generator, seeded by ``(seed, crc32(layer name))``: the
weights do not depend on the order of the layers or on the other layers of the model.

How each model initialises its layers (:func:`mac_init`)
---------------------------------------------------------
* PyTorch's default for ``nn.Linear`` and ``nn.Conv2d`` (``reset_parameters``:
  ``kaiming_uniform_(a=sqrt(5))``): weight and bias uniform in ``+-1/sqrt(fan_in)``.
* SegFormer (NVlabs ``mix_transformer.py``, ``MixVisionTransformer._init_weights``):
  encoder ``nn.Linear`` ``trunc_normal_(std=.02)`` (timm's, truncated at +-2), bias 0;
  encoder ``nn.Conv2d`` ``normal_(0, sqrt(2 / fan_out))`` with ``fan_out = kh*kw*K/groups``,
  bias 0.  Head (NVlabs ``segformer_head.py``): the ``MLP`` linears (``DecodeLinear*``) and
  ``linear_pred`` (``Conv2DPred``) keep PyTorch's default; ``linear_fuse`` is a ConvModule.
* Swin (mmseg ``swin.py``, ``SwinTransformer.init_weights`` without a checkpoint):
  ``nn.Linear`` ``trunc_normal_init(std=.02, bias=0)``, the patch-embedding conv PyTorch's
  default, ``relative_position_bias_table`` ``trunc_normal_(std=.02)`` (``WindowMSA.init_weights``).
  UPerNet (mmseg ``uper_head.py``): ConvModules, and ``conv_seg`` ``normal_init(std=0.01)``
  (``BaseDecodeHead``), bias 0.
* ConvModule (mmcv ``conv_module.py``, ``ConvModule.init_weights``):
  ``kaiming_init(a=0, mode="fan_out", nonlinearity="relu", distribution="normal")``,
  i.e. ``normal(0, sqrt(2 / (K*kh*kw)))``; its BatchNorm 1/0.
* ResNet-50 (torchvision ``resnet.py``, ``ResNet.__init__``): every conv
  ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, BN 1/0, ``fc`` PyTorch's default.
  OFA-ResNet-50 (``ofa.utils.init_models(net, "he_fout")``): the same convs, ``fc``
  uniform ``+-1/sqrt(fan_in)`` with bias 0.
* DETR (facebookresearch ``transformer.py``, ``Transformer._reset_parameters``):
  ``xavier_uniform_`` on every weight matrix of the transformer; ``nn.MultiheadAttention``
  draws q, k and v as one ``[3d, d]`` matrix (so ``fan_out = 3d``) with zero biases
  (``MultiheadAttention._reset_parameters``), other transformer biases keep PyTorch's
  default; ``input_proj`` and the heads (``class_embed``, ``bbox_embed``) PyTorch's default;
  the backbone as torchvision's.  detrex's DAB/Conditional DETR re-initialise their
  transformers the same way (``xavier_uniform_`` for every ``p.dim() > 1``).

Constants (:func:`constant_data`): ``normal`` is ``nn.Embedding``'s ``normal(0, 1)``
(DETR's ``query_embed``), ``zeros`` the decoder's zero target, ``sine_pos`` DETR's
``PositionEmbeddingSine(normalize=True, scale=2*pi, temperature=10000)``, ``sine_pos_1d``
Anchor DETR's ``pos2posemb1d`` of ``mask2pos``, ``rel_pos_bias`` Swin's relative position
bias table gathered by its relative position index, ``swin_mask`` Swin's shifted-window
attention mask (0 within a region, -100 across regions).  ``onnx`` is a constant of an ONNX
file (``mapper.onnx_import``): its data is the file's, which ``mapper.onnx_import.file_weights``
gives with the file's other weights, never generated here.

Batch norms and the attention scale
-----------------------------------
Batch norms are folded into the convolution before them (:func:`has_batchnorm` says
which).  With random weights their running statistics are meaningless, so they are
estimated as a BatchNorm in training mode would on the calibration image: per output
channel the mean and variance of the convolution's output there (the convolutions
before it already folded), ``gamma = 1``, ``beta = 0``, ``eps = 1e-5``.  A convolution
whose output has fewer than :data:`MIN_BN_PIXELS` pixels (UPerNet's pyramid-pooling
branches: 1, 4, 9, 36 pixels) pools the statistics over its channels too, since the
variance of one pixel is 0.  The attention scale ``1/sqrt(d)`` is folded into the rows
of the linears that produce each ``Q.K^T`` product's queries (:func:`fold_attention_scale`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import reference
from .images import calibration_image
from .ir import Add, ChannelSlice, Concat, Constant, Conv2d, Layer, LayerNorm, Linear, MatMul, Model, PixelReshape
from .views import window_partition

__all__ = ["init_weights", "has_batchnorm", "mac_init", "constant_data", "fold_attention_scale",
           "fold_batchnorms", "batchnorm_folder", "Init", "BN_EPS", "MIN_BN_PIXELS", "family_of",
           "relative_position_index"]

BN_EPS = 1e-5
#: Below this many output pixels a folded batch norm's statistics are pooled over the channels too.
MIN_BN_PIXELS = 64
#: Swin's mask value across regions (``attn_mask.masked_fill(attn_mask != 0, float(-100.0))``).
SWIN_MASK_VALUE = -100.0


@dataclass(frozen=True)
class Init:
    """How one tensor is drawn: ``normal`` / ``trunc_normal`` (std ``spread``, timm's
    truncation at +-2), ``uniform`` (in ``+-spread``) or ``zeros``."""

    kind: str
    spread: float = 0.0

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        if self.kind == "zeros":
            return np.zeros(shape)
        if self.kind == "uniform":
            return rng.uniform(-self.spread, self.spread, shape)
        v = rng.normal(0.0, self.spread, shape)
        if self.kind == "trunc_normal":                   # timm trunc_normal_(a=-2, b=2): absolute bounds
            out = np.abs(v) > 2.0
            while out.any():
                v[out] = rng.normal(0.0, self.spread, int(out.sum()))
                out = np.abs(v) > 2.0
        elif self.kind != "normal":
            raise ValueError(f"unknown initialisation {self.kind!r}")
        return v


ZEROS = Init("zeros")

_DETR_FAMILY = ("detr", "dab_detr", "anchor_detr", "conditional_detr")


def family_of(model: Model) -> str:
    """Which original code base initialises ``model``: segformer, swin, resnet, ofa, detr, or
    pytorch (any other model: PyTorch's defaults)."""
    name = model.name
    if name in _DETR_FAMILY:
        return "detr"
    for prefix in ("segformer", "swin", "ofa", "resnet"):
        if name.startswith(prefix):
            return prefix
    return "pytorch"


def has_batchnorm(layer: Layer) -> bool:
    """A convolution followed by a (folded) BatchNorm: every backbone convolution (ResNet-50,
    OFA, the DETR family's ResNet) and every decoder convolution with a ReLU (mmcv ConvModules:
    UPerNet's, SegFormer's ``linear_fuse`` = Conv2DFuse).  Classifiers (``conv_seg``,
    ``Conv2DPred``), patch embeddings, SegFormer's encoder convs and ``input_proj`` have none."""
    return isinstance(layer, Conv2d) and (layer.part == "backbone" or (layer.part == "decoder" and layer.relu))


def _fans(layer) -> tuple[int, int]:
    """PyTorch's ``_calculate_fan_in_and_fan_out``: (C/groups * kh*kw, K * kh*kw)."""
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        return layer.in_ch // layer.groups * kh * kw, layer.out_ch * kh * kw
    return layer.in_features, layer.out_features


def _torch_default(fan_in: int) -> tuple[Init, Init]:
    bound = 1 / math.sqrt(fan_in)
    return Init("uniform", bound), Init("uniform", bound)


def mac_init(model: Model, layer: Layer) -> tuple[Init, Init]:
    """(weight, bias) initialisation of a convolution or linear of ``model`` (module docstring)."""
    fan_in, fan_out = _fans(layer)
    family = family_of(model)
    if has_batchnorm(layer):                              # torchvision / mmcv / OFA: kaiming normal, fan_out
        return Init("normal", math.sqrt(2 / fan_out)), ZEROS
    if family == "segformer" and layer.part == "encoder":
        if isinstance(layer, Linear):
            return Init("trunc_normal", 0.02), ZEROS
        return Init("normal", math.sqrt(2 / (fan_out // layer.groups))), ZEROS
    if family == "swin":
        if isinstance(layer, Linear):
            return Init("trunc_normal", 0.02), ZEROS
        if layer.name == "conv_seg":
            return Init("normal", 0.01), ZEROS
    if family == "ofa" and isinstance(layer, Linear):
        return Init("uniform", 1 / math.sqrt(fan_in)), ZEROS
    if family == "detr" and layer.part == "transformer" and isinstance(layer, Linear):
        return _detr_init(model, layer, fan_in, fan_out)
    return _torch_default(fan_in)


def _detr_init(model: Model, layer: Linear, fan_in: int, fan_out: int) -> tuple[Init, Init]:
    """xavier_uniform weights; nn.MultiheadAttention's packed q/k/v ([3d, d]) and zero biases."""
    attn_proj = model.name == "detr" and layer.name.rsplit(".", 1)[-1] in ("q", "k", "v", "out")
    if attn_proj and not layer.name.endswith(".out"):
        fan_out *= 3
    weight = Init("uniform", math.sqrt(6 / (fan_in + fan_out)))
    return weight, (ZEROS if attn_proj else _torch_default(fan_in)[1])


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _layer_weights(model: Model, layer: Layer, seed: int) -> Optional[dict]:
    rng = _rng(seed, layer.name)
    if isinstance(layer, (Conv2d, Linear)):
        w_init, b_init = mac_init(model, layer)
        if isinstance(layer, Conv2d):          # drawn in PyTorch's [K, C/g, kh, kw] order, stored HWC
            shape = (layer.out_ch, layer.in_ch // layer.groups, *layer.kernel)
            weight = w_init.sample(rng, shape).transpose(0, 2, 3, 1)
        else:
            weight = w_init.sample(rng, (layer.out_features, layer.in_features))
        bias = b_init.sample(rng, weight.shape[0]) if layer.bias else np.zeros(weight.shape[0])
        return {"weight": np.ascontiguousarray(weight, np.float32), "bias": bias.astype(np.float32)}
    if isinstance(layer, LayerNorm):
        c = layer.out_shape[2]
        return {"gamma": np.ones(c, np.float32), "beta": np.zeros(c, np.float32)}
    if isinstance(layer, Constant):
        return {"data": constant_data(layer, rng).astype(np.float32)}
    return None


def init_weights(model: Model, seed: int = 0, calib_image: Optional[np.ndarray] = None, *,
                 fold: bool = True) -> dict:
    """Seeded float weights of every convolution, linear, layernorm and constant of ``model``.

    Parameters
    ----------
    model : Model
        Any model of the zoo (or any IR model: PyTorch's default initialisation).
    seed : int
        Seeds every layer's generator (with the layer's name) and the default calibration image.
    calib_image : np.ndarray, optional
        The preprocessed image (or ``[N, H, W, C]`` batch) on which folded batch norms
        estimate their statistics; default :func:`mapper.images.calibration_image` of ``seed``.
    fold : bool
        Fold the batch norms (a float pass); ``False`` leaves them for the caller
        (:func:`batchnorm_folder`, as ``mapper.calibrate.prepare`` does).

    Returns
    -------
    dict
        ``{layer name: {"weight", "bias"} | {"gamma", "beta"} | {"data"}}`` of float32 arrays,
        batch norms and the attention scale folded (module docstring).
    """
    weights = {}
    for layer in model.layers:
        w = _layer_weights(model, layer, seed)
        if w is not None:
            weights[layer.name] = w
    fold_attention_scale(model, weights)
    if fold and any(has_batchnorm(layer) for layer in model.layers):
        if calib_image is None:
            calib_image = calibration_image(*model.input[:2], seed, channels=model.input[2])
        fold_batchnorms(model, weights, calib_image)
    return weights


# ---- batch norms ---------------------------------------------------------------------------------

def fold_batchnorms(model: Model, weights: dict, images: np.ndarray) -> None:
    """Fold every :func:`has_batchnorm` convolution's BatchNorm, its statistics estimated on
    ``images`` (one preprocessed image or a batch; module docstring), into its weights, in
    place and in execution order."""
    last = max(i for i, layer in enumerate(model.layers) if has_batchnorm(layer))
    for i, _ in enumerate(reference.run_float(model, weights, images, adjust=batchnorm_folder(weights))):
        if i == last:
            break


def batchnorm_folder(weights: dict) -> reference.Adjust:
    """The ``adjust`` of :func:`mapper.reference.run_float` that folds each :func:`has_batchnorm`
    convolution's BatchNorm into ``weights`` and returns the normalised output."""
    def normalise(layer, y):
        if not has_batchnorm(layer):
            return y
        axes = tuple(range(y.ndim - 1))
        pooled = int(np.prod(y.shape[:-1])) < MIN_BN_PIXELS
        mean = y.mean(axis=None if pooled else axes, dtype=np.float64)
        var = y.var(axis=None if pooled else axes, dtype=np.float64)
        mean, inv = np.broadcast_to(mean, y.shape[-1:]), np.broadcast_to(1 / np.sqrt(var + BN_EPS), y.shape[-1:])
        w = weights[layer.name]
        w["weight"] = (w["weight"] * inv[:, None, None, None]).astype(np.float32)
        w["bias"] = ((w["bias"] - mean) * inv).astype(np.float32)
        y -= mean.astype(y.dtype)
        y *= inv.astype(y.dtype)
        return y
    return normalise


# ---- attention scale -----------------------------------------------------------------------------

def fold_attention_scale(model: Model, weights: dict) -> None:
    """Multiply the rows of the linears that produce each ``Q.K^T``'s queries by ``1/sqrt(d)``.

    A product's queries are channels ``a_offset ..`` of its first operand; they are traced
    back through adds (both operands), concatenations (the input holding the channels), channel
    slices (their input, from the slice's first channel) and pixel reshapes (their input)
    to the linears that compute them.

    Raises
    ------
    ValueError
        If the queries come from any other layer, or a linear's rows would be scaled twice.
    """
    done: set = set()
    for layer in model.layers:
        if isinstance(layer, MatMul) and layer.b_layout == "nk":
            lo = layer.a_offset
            _scale_rows(model, weights, layer, layer.inputs[0], lo, lo + layer.heads * layer.k,
                        1 / math.sqrt(layer.k), done)


def _scale_rows(model: Model, weights: dict, product: MatMul, name: str, lo: int, hi: int, factor: float,
                done: set) -> None:
    src = model.layer(name) if name != "input" else None
    if isinstance(src, Linear):
        for rows in done:
            if rows[0] == name and rows[1] < hi and lo < rows[2]:
                raise ValueError(f"{product.name}: the queries' rows {lo}..{hi - 1} of {name!r} are already scaled")
        done.add((name, lo, hi))
        for key in ("weight", "bias"):
            weights[name][key][lo:hi] *= np.float32(factor)
    elif isinstance(src, Add) and all(s[2] == src.out_shape[2] for s in src.in_shapes):
        for n in src.inputs:
            _scale_rows(model, weights, product, n, lo, hi, factor, done)
    elif isinstance(src, ChannelSlice):
        _scale_rows(model, weights, product, src.inputs[0], lo + src.start, hi + src.start, factor, done)
    elif isinstance(src, PixelReshape):
        _scale_rows(model, weights, product, src.inputs[0], lo, hi, factor, done)
    elif isinstance(src, Concat) and src.along == "pixels":
        for n in src.inputs:
            _scale_rows(model, weights, product, n, lo, hi, factor, done)
    elif isinstance(src, Concat):
        start = 0
        for n, s in zip(src.inputs, src.in_shapes):
            a, b = max(lo, start), min(hi, start + s[2])
            if a < b:
                _scale_rows(model, weights, product, n, a - start, b - start, factor, done)
            start += s[2]
    else:
        kind = src.kind if src else "the input image"
        raise ValueError(f"{product.name}: cannot fold the attention scale into {name!r} ({kind}); "
                         f"queries must come from linears, through adds, concatenations, channel slices and pixel reshapes")


# ---- constants -----------------------------------------------------------------------------------

def constant_data(layer: Constant, rng: np.random.Generator) -> np.ndarray:
    """The data of a :class:`~mapper.ir.Constant` (float64, its shape), by its ``init`` and ``args``.

    Raises
    ------
    ValueError
        An unknown ``init``, naming the allowed ones; ``onnx``, whose data only its file holds.
    """
    shape = tuple(layer.shape)
    h, w, c = shape
    if layer.init == "normal":
        return rng.normal(0.0, 1.0, shape)
    if layer.init == "zeros":
        return np.zeros(shape)
    if layer.init == "sine_pos":
        return _sine_pos_2d(h, w, c)
    if layer.init == "sine_pos_1d":
        n = max(h, w)
        return _sine_embed((np.arange(n) + 0.5) / n * 2 * math.pi, c).reshape(shape)
    if layer.init == "rel_pos_bias":
        return _rel_pos_bias(rng, *layer.args).reshape(shape)
    if layer.init == "swin_mask":
        return _swin_mask(*layer.args).reshape(shape)
    if layer.init == "onnx":
        raise ValueError(f"{layer.name}: a constant of an ONNX file: its data is the file's, not generated; "
                         f"take the model's weights from mapper.onnx_import.file_weights(model)")
    raise ValueError(f"{layer.name}: unknown constant init {layer.init!r}; allowed: normal, zeros, sine_pos, "
                     f"sine_pos_1d, rel_pos_bias, swin_mask (and onnx, an ONNX file's own data)")


def _sine_embed(pos: np.ndarray, feats: int, temperature: float = 10000.0) -> np.ndarray:
    """``[..., feats]``: ``sin`` of ``pos / dim_t`` at even features, ``cos`` at odd ones, with
    ``dim_t[i] = temperature ** (2 * (i // 2) / feats)`` (DETR's interleaved stack and flatten)."""
    dim_t = temperature ** (2 * (np.arange(feats) // 2) / feats)
    p = pos[..., None] / dim_t
    return np.where(np.arange(feats) % 2 == 0, np.sin(p), np.cos(p))


def _sine_pos_2d(h: int, w: int, c: int) -> np.ndarray:
    """DETR ``PositionEmbeddingSine(c/2, normalize=True)`` of an unmasked ``h x w`` map:
    ``cat(pos_y, pos_x)`` with ``y_embed = (1..h) / (h + 1e-6) * 2*pi``."""
    eps, scale = 1e-6, 2 * math.pi
    y = np.arange(1, h + 1) / (h + eps) * scale
    x = np.arange(1, w + 1) / (w + eps) * scale
    pos_y = np.broadcast_to(_sine_embed(y, c // 2)[:, None, :], (h, w, c // 2))
    pos_x = np.broadcast_to(_sine_embed(x, c // 2)[None, :, :], (h, w, c // 2))
    return np.concatenate([pos_y, pos_x], axis=-1)


def relative_position_index(window: int) -> np.ndarray:
    """Swin's ``relative_position_index`` ``[window**2, window**2]`` into the ``(2w-1)**2`` table."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def _rel_pos_bias(rng: np.random.Generator, window: int, heads: int) -> np.ndarray:
    """``[m, 1, h*49 + n]`` = ``table[index[m, n], h]``, the table ``trunc_normal_(std=.02)``."""
    table = Init("trunc_normal", 0.02).sample(rng, ((2 * window - 1) ** 2, heads))
    bias = table[relative_position_index(window)]                   # [m, n, heads]
    return bias.transpose(0, 2, 1).reshape(window * window, 1, heads * window * window)


def _swin_mask(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    """``[m, w, n]`` = Swin's ``attn_mask[w, m, n]``: 0 if tokens ``m`` and ``n`` of window ``w`` of
    the shifted ``hp x wp`` map come from the same region, else -100."""
    def regions(n):
        label = np.zeros(n, np.int64)
        label[n - window:n - shift] = 1
        label[n - shift:] = 2
        return label
    img = (regions(hp)[:, None] * 3 + regions(wp)[None, :])[:, :, None]
    labels = window_partition(img, window)[:, :, 0]                  # [m, windows]
    return np.where(labels[:, :, None] == labels.T[None, :, :], 0.0, SWIN_MASK_VALUE)
