"""Float semantics of the non-MAC operators, as PyTorch defines them (numpy).

These are the reference the integer operators of :mod:`hw.operators` are measured
against, and the operators of the float reference forward pass of whole
networks.  Tensors are HWC (spatial operators) or rows on the last axis; inputs
of a float dtype keep it (float32 stays float32), anything else becomes float64.
Window geometry (pooling windows, nearest-resize indices) is the one rule in
:mod:`hw.operators`, shared with the integer operators.

``erf`` is computed here (numpy has none): piecewise Chebyshev interpolants of
degree 12 on 12 intervals of [0, 6], fitted at import time to an everywhere
positive series, ``erf(x) = 2/sqrt(pi) * exp(-x**2) * sum_n 2**n x**(2n+1) /
(1*3*...*(2n+1))`` (no cancellation); ``|x| >= 6`` gives +-1 (``erfc(6) < 3e-17``).
Its largest error against ``math.erf`` is about 2e-15 (tested: <= 1e-7 is required).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import chebyshev

from hw.operators import adaptive_axis_windows, nearest_indices, pool_windows, window_sums

__all__ = ["erf", "gelu", "gelu_tanh", "sigmoid", "relu", "tanh", "clip", "leaky_relu", "elu", "celu", "thresholded_relu",
           "hardsigmoid", "hardswish",
           "softplus", "softsign", "selu", "mish", "swish", "exp", "log", "sqrt", "rsqrt", "reciprocal", "absolute", "power",
           "ACTIVATIONS", "activation", "softmax", "layernorm", "resize_bilinear",
           "resize_nearest", "maxpool2d", "avgpool2d", "adaptive_avgpool2d"]

_ERF_PIECE = 0.5          # width of one Chebyshev interval
_ERF_END = 6.0            # erf(x) == 1 in float64 beyond (erfc(6) ~ 2.2e-17)
_ERF_DEGREE = 12
#: Elements per block of the element-wise and resize loops (temporaries stay in cache).
_BLOCK_ELEMENTS = 1 << 16


def _float(x) -> np.ndarray:
    a = np.asarray(x)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf of ``0 <= x <= 6`` by the positive series (slow, ~1e-16 relative): fitting only."""
    term, total = x.copy(), x.copy()
    for n in range(1, 220):               # terms fall below 1e-17 of the sum well before n = 220 at x = 6
        term = term * (2.0 * x * x) / (2 * n + 1)
        total += term
    return 2.0 / math.sqrt(math.pi) * np.exp(-x * x) * total


def _erf_pieces() -> np.ndarray:
    """Chebyshev coefficients ``[degree + 1, piece]`` of erf on ``[i*0.5, (i+1)*0.5]``;
    a last piece, the constant 1, serves ``|x| >= 6``."""
    def on_piece(i):
        return lambda t: _erf_series(_ERF_PIECE * (i + (t + 1.0) / 2.0))
    pieces = [chebyshev.chebinterpolate(on_piece(i), _ERF_DEGREE) for i in range(int(_ERF_END / _ERF_PIECE))]
    return np.array(pieces + [np.eye(1, _ERF_DEGREE + 1)[0]]).T.copy()


_ERF_COEF = _erf_pieces()


def erf(x) -> np.ndarray:
    """The error function, elementwise (max abs error about 1e-14; float64 inside).

    Clenshaw's recurrence with each element's coefficients gathered from its piece,
    a block of elements at a time (temporaries that stay in cache: ~4x faster).
    """
    a = _float(x)
    flat = a.reshape(-1)
    out = np.empty(flat.shape, a.dtype)
    for i in range(0, flat.size, _BLOCK_ELEMENTS):
        out[i:i + _BLOCK_ELEMENTS] = _erf_block(flat[i:i + _BLOCK_ELEMENTS])
    return out.reshape(a.shape)


def _erf_block(a: np.ndarray) -> np.ndarray:
    ax = np.minimum(np.abs(a.astype(np.float64)), _ERF_END)     # NaN stays NaN
    piece = (np.nan_to_num(ax) * (1 / _ERF_PIECE)).astype(np.intp)
    t2 = ax * (4 / _ERF_PIECE) - (4.0 * piece + 2.0)      # 2t, t in [-1, 1] on the piece
    b1, b2 = _ERF_COEF[-1].take(piece), np.zeros_like(ax)
    for k in range(_ERF_COEF.shape[0] - 2, 0, -1):
        b = t2 * b1
        b -= b2
        b += _ERF_COEF[k].take(piece)
        b1, b2 = b, b1
    out = 0.5 * t2 * b1 - b2 + _ERF_COEF[0].take(piece)
    return np.copysign(out, a).astype(a.dtype)


def gelu(x) -> np.ndarray:
    """Exact GELU (PyTorch's default ``approximate="none"``): ``x/2 * (1 + erf(x/sqrt(2)))``."""
    a = _float(x)
    return (0.5 * a * (1.0 + erf(a / np.sqrt(2.0).astype(a.dtype)))).astype(a.dtype)


def gelu_tanh(x) -> np.ndarray:
    """GELU's tanh approximation (``approximate="tanh"``):
    ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``."""
    a = _float(x)
    return (0.5 * a * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (a + 0.044715 * a ** 3)))).astype(a.dtype)


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))``, evaluated without overflow for either sign."""
    a = _float(x)
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype)


def relu(x) -> np.ndarray:
    """``max(x, 0)``."""
    a = _float(x)
    return np.maximum(a, 0).astype(a.dtype)


def tanh(x) -> np.ndarray:
    a = _float(x)
    return np.tanh(a)


def clip(x, low: float, high: float) -> np.ndarray:
    """``min(max(x, low), high)`` (ReLU6 is ``clip(x, 0, 6)``)."""
    a = _float(x)
    return np.clip(a, low, high).astype(a.dtype)


def leaky_relu(x, alpha: float) -> np.ndarray:
    a = _float(x)
    return np.where(a >= 0, a, alpha * a).astype(a.dtype)


def elu(x, alpha: float) -> np.ndarray:
    a = _float(x)
    return np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0))).astype(a.dtype)


def celu(x, alpha: float) -> np.ndarray:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` (ONNX's ``Celu``)."""
    a = _float(x)
    return np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0) / alpha)).astype(a.dtype)


def thresholded_relu(x, alpha: float) -> np.ndarray:
    """``x`` above ``alpha``, else 0 (ONNX's ``ThresholdedRelu``, Keras' ``ThresholdedReLU``)."""
    a = _float(x)
    return np.where(a > alpha, a, 0).astype(a.dtype)


def hardsigmoid(x, alpha: float, beta: float) -> np.ndarray:
    """ONNX's ``max(0, min(1, alpha * x + beta))`` (PyTorch's: alpha 1/6, beta 1/2)."""
    a = _float(x)
    return np.clip(alpha * a + beta, 0, 1).astype(a.dtype)


def hardswish(x) -> np.ndarray:
    """``x * hardsigmoid(x, 1/6, 1/2)`` (MobileNetV3)."""
    a = _float(x)
    return (a * hardsigmoid(a, 1 / 6, 0.5)).astype(a.dtype)


def softplus(x) -> np.ndarray:
    """``log(1 + exp(x))``, without overflow (Mish is ``x * tanh(softplus(x))``)."""
    a = _float(x)
    return (np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))).astype(a.dtype)


def mish(x) -> np.ndarray:
    """``x * tanh(softplus(x))`` (YOLOv4)."""
    a = _float(x)
    return (a * np.tanh(softplus(a))).astype(a.dtype)


def swish(x, alpha: float) -> np.ndarray:
    """``x * sigmoid(alpha * x)``: SiLU at alpha 1 (YOLOv5/v8, EfficientNet), CLIP's QuickGELU at 1.702."""
    a = _float(x)
    return (a * sigmoid(alpha * a)).astype(a.dtype)


def softsign(x) -> np.ndarray:
    a = _float(x)
    return (a / (1 + np.abs(a))).astype(a.dtype)


def selu(x, alpha: float, gamma: float) -> np.ndarray:
    a = _float(x)
    return (gamma * np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0)))).astype(a.dtype)


def exp(x) -> np.ndarray:
    a = _float(x)
    with np.errstate(over="ignore"):            # inf, as ONNX's Exp gives
        return np.exp(a)


def log(x) -> np.ndarray:
    """The natural logarithm (-inf at 0 and NaN below, as ONNX's ``Log``)."""
    a = _float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a)


def sqrt(x) -> np.ndarray:
    a = _float(x)
    with np.errstate(invalid="ignore"):
        return np.sqrt(a)


def rsqrt(x, eps: float) -> np.ndarray:
    """``1 / sqrt(x + eps)``: a normalisation's factor from its variance."""
    a = _float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1 / np.sqrt(a + np.asarray(eps, a.dtype))).astype(a.dtype)


def reciprocal(x) -> np.ndarray:
    a = _float(x)
    with np.errstate(divide="ignore"):
        return (1 / a).astype(a.dtype)


def absolute(x) -> np.ndarray:
    a = _float(x)
    return np.abs(a)


def power(x, exponent: float) -> np.ndarray:
    """``x ** exponent`` (ONNX's ``Pow`` by a constant exponent: NaN for a negative base and a
    fractional exponent)."""
    a = _float(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.power(a, np.asarray(exponent, a.dtype))


#: The element-wise activations (``mapper.ir.Activation.func``): name -> (function of the tensor and
#: the activation's parameters, the parameters' names).  Each is a table of 256 entries on the
#: accelerator (``hw.operators.lut_table``), so any function of one element can join.
ACTIVATIONS: dict[str, tuple] = {
    "gelu": (gelu, ()), "relu": (relu, ()), "sigmoid": (sigmoid, ()), "tanh": (tanh, ()),
    "clip": (clip, ("low", "high")), "leaky_relu": (leaky_relu, ("alpha",)), "elu": (elu, ("alpha",)),
    "celu": (celu, ("alpha",)), "thresholded_relu": (thresholded_relu, ("alpha",)),
    "hardsigmoid": (hardsigmoid, ("alpha", "beta")), "hardswish": (hardswish, ()),
    "softplus": (softplus, ()), "softsign": (softsign, ()), "selu": (selu, ("alpha", "gamma")), "mish": (mish, ()),
    "swish": (swish, ("alpha",)),
    "gelu_tanh": (gelu_tanh, ()), "erf": (erf, ()), "exp": (exp, ()), "log": (log, ()), "sqrt": (sqrt, ()), "rsqrt": (rsqrt, ("eps",)),
    "reciprocal": (reciprocal, ()), "abs": (absolute, ()), "pow": (power, ("exponent",)),
}


def activation(func: str, x, params=()) -> np.ndarray:
    """The activation ``func`` of :data:`ACTIVATIONS` with its parameters, element by element."""
    return ACTIVATIONS[func][0](x, *params)


def softmax(x, axis: int = -1) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``."""
    a = _float(x)
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layernorm(x, gamma, beta, eps: float = 1e-5) -> np.ndarray:
    """PyTorch ``LayerNorm`` over the last axis: biased variance, ``(x - mean) / sqrt(var + eps) * gamma + beta``."""
    a = _float(x)
    mean = a.mean(axis=-1, keepdims=True)
    var = np.square(a - mean).mean(axis=-1, keepdims=True)
    return ((a - mean) / np.sqrt(var + eps) * np.asarray(gamma, a.dtype) + np.asarray(beta, a.dtype)).astype(a.dtype)


def _bilinear_axis(n_in: int, n_out: int, align_corners: bool = False):
    """PyTorch's ``area_pixel_compute_source_index`` and its weights."""
    if align_corners:
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def resize_bilinear(x, out_h: int, out_w: int, align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of an HWC tensor, PyTorch's ``align_corners``.

    The weights are in the input's precision (PyTorch's float kernel computes them in
    float); a block of output rows at a time (large temporaries are ~10x slower).
    """
    a = _float(x)
    y0, y1, fy = _bilinear_axis(a.shape[0], out_h, align_corners)
    x0, x1, fx = _bilinear_axis(a.shape[1], out_w, align_corners)
    fy, fx = fy.astype(a.dtype)[:, None, None], fx.astype(a.dtype)[None, :, None]
    out = np.empty((out_h, out_w, a.shape[2]), a.dtype)
    step = max(1, _BLOCK_ELEMENTS // (out_w * a.shape[2]))
    for r in range(0, out_h, step):
        s = slice(r, r + step)
        rows = a[y0[s]] * (1 - fy[s]) + a[y1[s]] * fy[s]
        out[s] = rows[:, x0] * (1 - fx) + rows[:, x1] * fx
    return out


def resize_nearest(x, out_h: int, out_w: int) -> np.ndarray:
    """Nearest resize of an HWC tensor (PyTorch ``mode="nearest"``: source ``floor(dst * in / out)``)."""
    a = _float(x)
    return a[nearest_indices(a.shape[0], out_h)][:, nearest_indices(a.shape[1], out_w)]


def maxpool2d(x, kernel, stride=None, padding=0, ceil_mode: bool = False) -> np.ndarray:
    """PyTorch ``MaxPool2d`` on an HWC tensor (padding never wins)."""
    a = _float(x)
    (ylo, yhi, _), (xlo, xhi, _) = pool_windows(*a.shape[:2], kernel, stride, padding, ceil_mode)
    out = np.full((ylo.size, xlo.size, a.shape[2]), -np.inf, a.dtype)
    for ty in range(int((yhi - ylo).max())):
        for tx in range(int((xhi - xlo).max())):
            iy, ix = ylo + ty, xlo + tx
            valid = (iy < yhi)[:, None, None] & (ix < xhi)[None, :, None]
            tap = a[np.minimum(iy, a.shape[0] - 1)][:, np.minimum(ix, a.shape[1] - 1)]
            out = np.where(valid, np.maximum(out, tap), out)
    return out


def avgpool2d(x, kernel, stride=None, padding=0, ceil_mode: bool = False,
              count_include_pad: bool = True) -> np.ndarray:
    """PyTorch ``AvgPool2d`` on an HWC tensor (zero padding counted if ``count_include_pad``)."""
    a = _float(x)
    (ylo, yhi, ypad), (xlo, xhi, xpad) = pool_windows(*a.shape[:2], kernel, stride, padding, ceil_mode)
    counts = np.outer(ypad, xpad) if count_include_pad else np.outer(yhi - ylo, xhi - xlo)
    return (window_sums(a, (ylo, yhi), (xlo, xhi)) / counts[:, :, None]).astype(a.dtype)


def adaptive_avgpool2d(x, out_h: int, out_w: int) -> np.ndarray:
    """PyTorch ``AdaptiveAvgPool2d`` on an HWC tensor: windows ``[floor(i*in/out), ceil((i+1)*in/out))``."""
    a = _float(x)
    ylo, yhi = adaptive_axis_windows(a.shape[0], out_h)
    xlo, xhi = adaptive_axis_windows(a.shape[1], out_w)
    counts = np.outer(yhi - ylo, xhi - xlo)
    return (window_sums(a, (ylo, yhi), (xlo, xhi)) / counts[:, :, None]).astype(a.dtype)
