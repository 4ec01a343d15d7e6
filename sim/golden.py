"""Golden (reference) model of the accelerator's arithmetic, in numpy.

MAC layers
----------
``conv2d``, ``linear`` and ``matmul`` return the *raw accumulator* values, wrapped
to ``acc_bits`` two's complement and stored in int64; ``requantize`` turns them
into int8 exactly as ``hw/numerics.py`` specifies.  Wrapping the exact sum once
at the end equals wrapping after every addition (reduction modulo ``2**acc_bits``
is a ring homomorphism), so the result does not depend on the order in which the
hardware accumulates.

The fast path runs the dot products as float64 BLAS matrix products (im2col,
batched over groups) and is exact: an int8 x int8 product has magnitude at most
``128 * 128 = 2**14``, so every partial sum of a length-``L`` dot product, in any
order and with or without FMA, is an integer of magnitude at most ``L * 2**14``.
While ``L * 2**14 < 2**53`` all of them are representable in float64, hence no
rounding ever happens.  ``blas_exact(L)`` is that check; when it fails the same
products are computed with int64 (non-BLAS) matmuls instead.  Convolutions with
one input channel per group (depthwise, channel multiplier) skip im2col and
multiply-accumulate per kernel tap elementwise in int32 (exact by the same
argument while ``L * 2**14 < 2**31``, else int64).  ``conv2d_loops``,
``linear_loops`` and ``matmul_loops`` are plain Python-int references for tests.

The other operators (softmax, layernorm, GELU, resizes, pooling, ...) are ``hw.operators``, the one
statement of their integer arithmetic that the simulator and the RTL share; ``sim.golden_network``
runs a whole network with them.  (Float approximations of them that lived here were used by nothing
but their own tests and restated rules, pooling's among them, differently.)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hw import operators
from hw.numerics import INT8_MAX, INT8_MIN
from hw.operators import check_acc_bits, wrap
from mapper.ir import conv_out, conv_pads

__all__ = [
    "wrap", "blas_exact", "conv2d", "linear", "matmul", "requantize",
    "conv2d_loops", "linear_loops", "matmul_loops",
]

#: Largest magnitude of an int8 x int8 product: (-128) * (-128).
MAX_PRODUCT = INT8_MIN * INT8_MIN
#: Integers of magnitude below 2**53 are exact in float64.
FLOAT64_EXACT = 1 << 53
#: Target size (elements) of one im2col chunk of the fast path.
_CHUNK_ELEMS = 1 << 21


# ---- helpers -------------------------------------------------------------------

def blas_exact(length: int) -> bool:
    """True if a length-``length`` int8 dot product is exact in float64 (any order)."""
    return length * MAX_PRODUCT < FLOAT64_EXACT


def _int8(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.int8:
        if a.dtype.kind not in "iu" or (a.size and (a.min() < INT8_MIN or a.max() > INT8_MAX)):
            raise ValueError(f"{name} must hold int8 values (dtype {a.dtype})")
        a = a.astype(np.int8)
    return a



def _batched_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` (stacked), ``a``/``b`` holding int8 values; int64 result."""
    length = a.shape[-1]
    if blas_exact(length):
        r = np.matmul(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False))
        return r.astype(np.int64)      # integers exactly: no rounding happened
    return _int64_dot(a, b)


def _int64_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fallback when float64 could round: int64 matmul (no BLAS, exact for L < 2**49)."""
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


# ---- MAC layers (fast path) ----------------------------------------------------------

def _conv_shapes(x, w, stride, padding, groups, dilation=1):
    """(x, w, OH, OW, padding) checked; a padding that differs between sides (``conv_pads``)
    is applied to ``x`` here, and the padding returned is then 0."""
    x = _int8(x, "x")
    w = _int8(w, "w")
    if not isinstance(padding, int):
        top, left, bottom, right = conv_pads(padding)
        x, padding = np.pad(x, ((top, bottom), (left, right), (0, 0))), 0
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError(f"x must be [H, W, C] and w [K, kh, kw, C//groups]; got {x.shape}, {w.shape}")
    h, wd, c = x.shape
    k, kh, kw, cg = w.shape
    if groups < 1 or c % groups or k % groups or c // groups != cg:
        raise ValueError(f"groups={groups} incompatible with C={c}, K={k}, w channels={cg}")
    if stride < 1 or padding < 0 or dilation < 1:
        raise ValueError(f"stride and dilation must be >= 1 and padding >= 0, not {stride}, {dilation}, {padding}")
    oh, ow = conv_out(h, kh, stride, padding, dilation), conv_out(wd, kw, stride, padding, dilation)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"kernel {kh}x{kw} does not fit input {h}x{wd} with padding {padding}")
    return x, w, oh, ow, padding


def conv2d(x, w, *, stride: int = 1, padding: int = 0, groups: int = 1, dilation: int = 1,
           acc_bits: int = 32) -> np.ndarray:
    """2-D convolution accumulators ``[OH, OW, K]`` (int64 holding ``acc_bits`` values).

    ``x`` int8 ``[H, W, C]``, ``w`` int8 ``[K, kh, kw, C // groups]``; zero padding an int
    (every side) or (top, left, bottom, right); output channel ``k`` belongs to group ``k // (K // groups)``;
    ``dilation`` spaces the taps.
    """
    check_acc_bits(acc_bits)
    x, w, oh, ow, padding = _conv_shapes(x, w, stride, padding, groups, dilation)
    c = x.shape[2]
    k, kh, kw, cg = w.shape
    g, kg = groups, k // groups
    length = kh * kw * cg
    if cg == 1:
        return wrap(_conv_taps(x, w, oh, ow, stride, padding, g, dilation), acc_bits)
    dt = np.float64 if blas_exact(length) else np.int64
    xp = np.pad(x.astype(dt), ((padding, padding), (padding, padding), (0, 0)))
    # Windows [OH, OW, C, kh, kw] (a view), reduction order (cg, kh, kw).
    span = (dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    win = sliding_window_view(xp, span, axis=(0, 1))[::stride, ::stride][:oh, :ow, :, ::dilation, ::dilation]
    wm = (w.astype(dt).reshape(g, kg, kh, kw, cg).transpose(0, 4, 2, 3, 1)
          .reshape(g, length, kg))
    out = np.empty((oh, ow, g, kg), dtype=np.int64)
    rows = max(1, _CHUNK_ELEMS // (ow * c * kh * kw))
    for r0 in range(0, oh, rows):
        blk = win[r0:r0 + rows]
        n = blk.shape[0] * ow
        a = blk.reshape(n, g, cg, kh, kw).transpose(1, 0, 2, 3, 4).reshape(g, n, length)
        out[r0:r0 + rows] = _batched_dot(a, wm).transpose(1, 0, 2).reshape(blk.shape[0], ow, g, kg)
    return wrap(out.reshape(oh, ow, k), acc_bits)


def _conv_taps(x, w, oh, ow, stride, padding, g, dilation=1) -> np.ndarray:
    """One input channel per group (depthwise, channel multiplier): elementwise
    multiply-accumulate per kernel tap.  int32 is exact while ``L * 2**14 < 2**31``
    (same argument as ``blas_exact``), otherwise int64."""
    k, kh, kw, _ = w.shape
    length = kh * kw
    dt = np.int32 if length * MAX_PRODUCT < (1 << 31) else np.int64
    xp = np.pad(x.astype(dt), ((padding, padding), (padding, padding), (0, 0)))
    wd = w.astype(dt).reshape(g, k // g, kh, kw)
    out = np.zeros((oh, ow, g, k // g), dtype=dt)
    for i in range(kh):
        for j in range(kw):
            y, x0 = i * dilation, j * dilation
            tap = xp[y:y + stride * (oh - 1) + 1:stride, x0:x0 + stride * (ow - 1) + 1:stride]
            out += tap[:, :, :, None] * wd[:, :, i, j]
    return out.reshape(oh, ow, k)


def linear(x, w, *, acc_bits: int = 32) -> np.ndarray:
    """Fully connected accumulators: ``x`` int8 ``[T, C]``, ``w`` int8 ``[K, C]`` -> ``[T, K]``."""
    check_acc_bits(acc_bits)
    x, w = _int8(x, "x"), _int8(w, "w")
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x must be [T, C] and w [K, C]; got {x.shape}, {w.shape}")
    return wrap(_batched_dot(x, w.T), acc_bits)


def matmul(a, b, *, acc_bits: int = 32) -> np.ndarray:
    """Batched product accumulators: ``a`` int8 ``[B, M, K]``, ``b`` int8 ``[B, K, N]`` -> ``[B, M, N]``."""
    check_acc_bits(acc_bits)
    a, b = _int8(a, "a"), _int8(b, "b")
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"a must be [B, M, K] and b [B, K, N]; got {a.shape}, {b.shape}")
    return wrap(_batched_dot(a, b), acc_bits)


# ---- requantisation ------------------------------------------------------------------

def requantize(acc, bias, mult, shift, *, relu: bool = False, acc_bits: int = 32) -> np.ndarray:
    """int8 outputs from accumulators, exactly per ``hw/numerics.py``: :func:`hw.operators.requantize`
    (the one definition) with the bias as the second argument."""
    return operators.requantize(acc, mult, shift, relu, bias=bias, acc_bits=acc_bits)


# ---- loop references (tests only) -------------------------------------------------

def conv2d_loops(x, w, *, stride: int = 1, padding: int = 0, groups: int = 1, dilation: int = 1,
                 acc_bits: int = 32) -> np.ndarray:
    """``conv2d`` with Python ints, wrapping after every addition (slow, obvious)."""
    x, w, oh, ow, padding = _conv_shapes(x, w, stride, padding, groups, dilation)
    h, wd, c = x.shape
    k, kh, kw, cg = w.shape
    kg = k // groups
    xl, wl = x.tolist(), w.tolist()
    out = np.zeros((oh, ow, k), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for ko in range(k):
                c0 = (ko // kg) * cg
                acc = 0
                for i in range(kh):
                    iy = oy * stride - padding + i * dilation
                    if not 0 <= iy < h:
                        continue
                    for j in range(kw):
                        ix = ox * stride - padding + j * dilation
                        if not 0 <= ix < wd:
                            continue
                        for ci in range(cg):
                            acc = wrap(acc + xl[iy][ix][c0 + ci] * wl[ko][i][j][ci], acc_bits)
                out[oy, ox, ko] = acc
    return out


def linear_loops(x, w, *, acc_bits: int = 32) -> np.ndarray:
    """``linear`` with Python ints, wrapping after every addition."""
    xl, wl = _int8(x, "x").tolist(), _int8(w, "w").tolist()
    out = np.zeros((len(xl), len(wl)), dtype=np.int64)
    for t, row in enumerate(xl):
        for ko, wrow in enumerate(wl):
            acc = 0
            for xv, wv in zip(row, wrow, strict=True):
                acc = wrap(acc + xv * wv, acc_bits)
            out[t, ko] = acc
    return out


def matmul_loops(a, b, *, acc_bits: int = 32) -> np.ndarray:
    """``matmul`` with Python ints, wrapping after every addition."""
    al, bl = _int8(a, "a").tolist(), _int8(b, "b").tolist()
    bsz, m, kk, n = len(al), len(al[0]), len(bl[0]), len(bl[0][0])
    out = np.zeros((bsz, m, n), dtype=np.int64)
    for bi in range(bsz):
        for i in range(m):
            for j in range(n):
                acc = 0
                for q in range(kk):
                    acc = wrap(acc + al[bi][i][q] * bl[bi][q][j], acc_bits)
                out[bi, i, j] = acc
    return out
