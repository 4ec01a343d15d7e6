"""Integer non-MAC operators (hw/operators.py) and their float counterparts (mapper/float_ops.py).

Four kinds of check:

* each integer operator against plain loop-level Python-int references (below, written
  from the documented formulas, one element at a time), bit for bit;
* each integer operator against its float operator, with an error bound stated per
  case (``CASES``; ``python tests/test_operators.py --report`` prints the measured
  errors that docs/operators.md quotes);
* the kernels under a tracing backend that allows only ``+ - * >> << &``,
  comparisons, ``sel``, ``rom`` and ``clz``, checks ROM indices and clz ranges, and
  records the widest intermediate and every multiplier's operand widths, on
  extreme inputs;
* the float operators against loop-level references of PyTorch's definitions.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw import operators as op                      # noqa: E402
from mapper import float_ops as F                   # noqa: E402

SEED = 20240611


# ---- loop-level references (Python ints, one element at a time) -------------------------

def rh(value: int, shift: int) -> int:
    """Round half up of value / 2**shift, from exact fractions."""
    return math.floor(Fraction(value, 1 << shift) + Fraction(1, 2))


def clamp(v: int, lo: int = -128, hi: int = 127) -> int:
    return min(max(v, lo), hi)


def ref_add(a: int, b: int, p: op.AddParams) -> int:
    r = rh(a * p.mult_a + b * p.mult_b, p.shift)
    return clamp(r, 0 if p.relu else -128)


def ref_mul(a: int, b: int, p: op.MulParams) -> int:
    return clamp(rh(a * b * p.mult, p.shift))


def ref_rsqrt(u: int) -> tuple[int, int]:
    """(word, h): u normalised by an even shift into [2**38, 2**40), top 10 bits rounded."""
    h = (40 - u.bit_length()) // 2
    index = rh(u << (2 * h), 30)
    return int(op.RSQRT_ROM[index - 256]), h


def ref_recip(v: int, width: int) -> tuple[int, int]:
    k = width - v.bit_length()
    index = rh(v << k, width - 10)
    return int(op.RECIP_ROM[index - 512]), k


def ref_layernorm_row(row: list[int], p: op.LayerNormParams) -> list[int]:
    n = len(row)
    s1, s2 = sum(row), sum(x * x for x in row)
    word, h = ref_rsqrt(n * s2 - s1 * s1 + p.eps)
    out = []
    for x, g, b in zip(row, p.gamma.tolist(), p.beta.tolist()):
        z = rh((n * x - s1) * word, 20 - h)
        out.append(clamp(rh(z * g + b, p.shift)))
    return out


def ref_softmax_row(row: list[int], p: op.SoftmaxParams) -> list[int]:
    m = max(row)
    e = []
    for x in row:
        t = rh((m - x) * p.exp_mult, p.exp_shift - 8)
        q, f = t // 256, t % 256
        e.append(rh(int(op.EXP2_ROM[f]) << 7, min(q, 24)))
    word, k = ref_recip(sum(e), 35)
    return [min(rh(v * word, 42 - k), 127) for v in e]


def ref_axis(n_in: int, n_out: int) -> list[tuple[int, int, int]]:
    """(i0, i1, weight) per output, from the DDA start/step (the mapper's integers)."""
    a = op.resize_axis_params(n_in, n_out)
    out = []
    for i in range(n_out):
        pos = max(a.start + i * a.step, 0)
        i0 = pos >> 20
        out.append((i0, min(i0 + 1, n_in - 1), rh(pos % (1 << 20), 12)))
    return out


def ref_bilinear_sums(x: np.ndarray, out_h: int, out_w: int) -> list:
    """Unrounded integer interpolation sums [oy][ox][c] (horizontal first: the order must not matter)."""
    xs = x.tolist()
    ys, xw = ref_axis(x.shape[0], out_h), ref_axis(x.shape[1], out_w)
    out = []
    for (y0, y1, wy) in ys:
        row = []
        for (x0, x1, wx) in xw:
            row.append([(xs[y0][x0][c] * (256 - wx) + xs[y0][x1][c] * wx) * (256 - wy)
                        + (xs[y1][x0][c] * (256 - wx) + xs[y1][x1][c] * wx) * wy
                        for c in range(x.shape[2])])
        out.append(row)
    return out


def ref_argmax(values: list) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def ref_pool_size(n, k, s, p, ceil_mode):
    """PyTorch's pooling_output_shape, transcribed."""
    num = n + 2 * p - k + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def ref_pool(x: np.ndarray, k, s, p, ceil_mode, reduce, count_include_pad=True):
    """Pooling as PyTorch's CPU kernels loop: window [start, start + k) clipped; ``reduce(values,
    divisor)`` per window and channel."""
    h, w, c = x.shape
    oh, ow = ref_pool_size(h, k, s, p, ceil_mode), ref_pool_size(w, k, s, p, ceil_mode)
    xs = x.tolist()
    out = np.zeros((oh, ow, c), dtype=object)
    for oy in range(oh):
        for ox in range(ow):
            hs, ws = oy * s - p, ox * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            divisor = pool_size if count_include_pad else (he - hs) * (we - ws)
            for ch in range(c):
                vals = [xs[i][j][ch] for i in range(hs, he) for j in range(ws, we)]
                out[oy, ox, ch] = reduce(vals, divisor)
    return out


def ref_adaptive(x: np.ndarray, oh: int, ow: int, reduce):
    h, w, c = x.shape
    xs = x.tolist()
    out = np.zeros((oh, ow, c), dtype=object)
    for oy in range(oh):
        hs, he = (oy * h) // oh, -((-(oy + 1) * h) // oh)
        for ox in range(ow):
            ws, we = (ox * w) // ow, -((-(ox + 1) * w) // ow)
            for ch in range(c):
                vals = [xs[i][j][ch] for i in range(hs, he) for j in range(ws, we)]
                out[oy, ox, ch] = reduce(vals, (he - hs) * (we - ws))
    return out


def int_average(vals, divisor):
    return math.floor(Fraction(sum(vals), divisor) + Fraction(1, 2))


def exact_average(vals, divisor):
    return Fraction(sum(vals), divisor)


def int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def grid() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(-128, 128, dtype=np.int8)
    return np.repeat(a, 256).reshape(256, 256), np.tile(a, 256).reshape(256, 256)


# ---- integer operators against the loop references, bit for bit ------------------------

@pytest.mark.parametrize("scales,relu", [((0.05, 0.03, 0.07), False), ((0.1, 0.1, 0.01), True),
                                         ((3.0, 1e-4, 2.0), False), ((2e-3, 1e-3, 1.0), True)])
def test_add_bit_exact_on_every_pair(scales, relu):
    p = op.add_params(*scales, relu=relu)
    a, b = grid()
    want = np.array([ref_add(x, y, p) for x, y in zip(a.ravel().tolist(), b.ravel().tolist())]).reshape(a.shape)
    np.testing.assert_array_equal(op.add(a, b, p), want)


def test_add_broadcasts():
    p = op.add_params(0.05, 0.05, 0.05)
    table = np.arange(-3, 3, dtype=np.int8).reshape(2, 3)
    x = np.zeros((4, 2, 3), np.int8)
    np.testing.assert_array_equal(op.add(x, table, p), np.broadcast_to(table, (4, 2, 3)))


@pytest.mark.parametrize("scales", [(0.05, 0.02, 0.01), (0.5, 0.5, 4.0), (1e-2, 1e-2, 1e-5)])
def test_mul_bit_exact_on_every_pair(scales):
    p = op.mul_params(*scales)
    a, b = grid()
    want = np.array([ref_mul(x, y, p) for x, y in zip(a.ravel().tolist(), b.ravel().tolist())]).reshape(a.shape)
    np.testing.assert_array_equal(op.mul(a, b, p), want)


def test_lut_is_the_table():
    table = op.lut_table(F.gelu, 1 / 16, 1 / 16)
    x = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(op.lut(x, table), [table[v + 128] for v in x.tolist()])


def test_a_table_saturates_poles_and_extends_a_domain_from_its_edge():
    """``1/x`` at 0 and ``log`` at 0 saturate; ``log`` and ``sqrt`` of a negative (NaN) take the entry of
    the nearest input inside their domain, 0; a function defined nowhere is refused."""
    recip = op.lut_table(F.reciprocal, 1 / 16, 1 / 4)
    assert (recip[128 - 1], recip[128], recip[128 + 1]) == (-64, 127, 64)
    log = op.lut_table(F.log, 1 / 16, 1 / 16)
    assert np.all(log[:129] == -128) and log[129] == round(math.log(1 / 16) * 16)
    root = op.lut_table(F.sqrt, 1 / 16, 1 / 16)
    assert np.all(root[:129] == 0) and root[128 + 16] == 16
    with pytest.raises(ValueError, match="some defined"):
        op.lut_table(lambda v: np.full_like(v, np.nan), 1 / 16, 1 / 16)


def layernorm_case(rng, n: int, rows: int, s_in: float, eps: float = 1e-5, s_out: float = 1 / 16):
    gamma, beta = rng.normal(1.0, 0.3, n), rng.normal(0.0, 0.5, n)
    mean = rng.uniform(-60, 60, (rows, 1))
    std = rng.uniform(0.5, 50, (rows, 1))
    x = np.clip(np.rint(rng.normal(mean, std, (rows, n))), -128, 127).astype(np.int8)
    return x, gamma, beta, eps, s_in, s_out


@pytest.mark.parametrize("n,s_in", [(1, 0.1), (2, 0.1), (7, 0.02), (64, 0.02), (384, 1.0)])
def test_layernorm_bit_exact(n, s_in):
    rng = np.random.default_rng(SEED + n)
    x, gamma, beta, eps, s_in, s_out = layernorm_case(rng, n, 6, s_in)
    x[0] = 17                                      # a constant row
    x[1] = np.where(np.arange(n) % 2, 127, -128)   # the largest variance
    p = op.layernorm_params(gamma, beta, eps, s_in, s_out)
    np.testing.assert_array_equal(op.layernorm(x, p), [ref_layernorm_row(r, p) for r in x.tolist()])


@pytest.mark.parametrize("n,s_in", [(1, 0.05), (2, 1 / 16), (49, 0.2), (197, 1.0), (300, 1e-3)])
def test_softmax_bit_exact(n, s_in):
    rng = np.random.default_rng(SEED + n)
    x = int8(rng, (5, n))
    x[0] = -128
    x[1, :] = -128
    x[1, 0] = 127
    p = op.softmax_params(s_in)
    np.testing.assert_array_equal(op.softmax(x, p), [ref_softmax_row(r, p) for r in x.tolist()])


@pytest.mark.parametrize("shape,out", [((4, 4, 3), (8, 8)), ((3, 5, 2), (16, 7)), ((6, 2, 1), (16, 16)),
                                       ((5, 7, 2), (3, 4)), ((1, 1, 2), (4, 3))])
def test_resize_bit_exact(shape, out):
    rng = np.random.default_rng(SEED)
    x = int8(rng, shape)
    sums = ref_bilinear_sums(x, *out)
    want = [[[rh(v, 16) for v in px] for px in row] for row in sums]
    np.testing.assert_array_equal(op.resize_bilinear(x, *out), want)
    classes = [[ref_argmax(px) for px in row] for row in sums]
    got = op.resize_argmax(x, *out)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, classes)
    iy = [(i * shape[0]) // out[0] for i in range(out[0])]
    ix = [(i * shape[1]) // out[1] for i in range(out[1])]
    np.testing.assert_array_equal(op.resize_nearest(x, *out), x[iy][:, ix])


def test_resize_axis_params_formula():
    """start/step: src = (dst + 1/2) * in/out - 1/2 in 20 fraction bits, rounded half up."""
    half = Fraction(1, 2)
    for n_in, n_out in ((1, 16), (2, 16), (3, 16), (6, 16), (128, 512), (25, 38), (100, 7)):
        a = op.resize_axis_params(n_in, n_out)
        assert a.step == math.floor(Fraction(n_in << 20, n_out) + half)
        assert a.start == math.floor((Fraction(n_in, n_out) * half - half) * (1 << 20) + half)


ALIGN_SIZES = ((7, 13), (7, 14), (64, 512), (2, 7), (3, 4), (100, 3), (1, 5), (5, 1), (2048, 4095), (1, 1))


def test_align_corners_dda_formula_and_exact_corners():
    """align_corners: start 0, step = round((in - 1) / (out - 1) 2**20) (0 for one output); the axis
    kernel samples the last output at exactly source n_in - 1 whether the step rounded up (its
    position a little past n_in - 1: i1 is clamped to i0) or down (weight 256 on i1)."""
    half = Fraction(1, 2)
    for n_in, n_out in ALIGN_SIZES:
        a = op.resize_axis_params(n_in, n_out, align_corners=True)
        exact = Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
        assert (a.start, a.step) == (0, math.floor(exact * (1 << 20) + half))
        i0, i1, w = (np.asarray(v) for v in op.NUMPY.run(op.bilinear_axis_kernel, a.positions(), n_in))
        source = np.where(w == 0, i0, np.where(w == 256, i1, -1))       # whole-pixel samples
        assert source[0] == 0 and (n_out == 1 or source[-1] == n_in - 1), (n_in, n_out)
        assert i1.max() <= n_in - 1
    # among them steps rounded up (2 -> 7: the last position past 1) and down (64 -> 512)
    assert 6 * op.resize_axis_params(2, 7, True).step > 1 << 20 and 511 * op.resize_axis_params(64, 512, True).step < 63 << 20


@pytest.mark.parametrize("align", [False, True])
def test_dda_matches_accepts_its_modes_dda_and_refuses_off_by_one(align):
    """``dda_matches`` (the descriptor check, products only) accepts exactly ``resize_axis_params``' DDA
    of the mode its bit names: not the other mode's, nor a start or step one off."""
    for n_in, n_out in ALIGN_SIZES + ((16, 64), (25, 38)):
        a = op.resize_axis_params(n_in, n_out, align)
        assert op.dda_matches(a.start, a.step, n_in, n_out, align_corners=align), (n_in, n_out)
        for ds, dt in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            assert not op.dda_matches(a.start + ds, a.step + dt, n_in, n_out, align_corners=align), (n_in, n_out, ds, dt)
        b = op.resize_axis_params(n_in, n_out, not align)
        assert (b.start, b.step) == (a.start, a.step) or not op.dda_matches(b.start, b.step, n_in, n_out,
                                                                             align_corners=align)


def test_align_corners_resize_matches_the_real_interpolation():
    """An align-corners bilinear resize of 7 x 7 to 13 x 14 (step 1/2 exact, 6/13 rounded) is within
    one of the real interpolation, and its corners are the source's."""
    x = np.random.default_rng(SEED).integers(-128, 128, size=(7, 7, 3)).astype(np.int8)
    got = op.resize_bilinear(x, 13, 14, align_corners=True).astype(np.float64)
    ys, xs = np.arange(13) * 6 / 12, np.arange(14) * 6 / 13
    y0, x0 = np.minimum(ys.astype(int), 5), np.minimum(xs.astype(int), 5)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    v = x.astype(np.float64)
    rows = v[y0] * (1 - fy) + v[y0 + 1] * fy
    want = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx
    assert np.max(np.abs(got - want)) <= 1
    for cy, cx in ((0, 0), (-1, -1), (0, -1), (-1, 0)):
        np.testing.assert_array_equal(got[cy, cx], x[cy, cx])
    classes = op.resize_argmax(x, 13, 14, align_corners=True)
    assert classes.shape == (13, 14) and classes[-1, -1] == np.argmax(x[-1, -1])


def test_argmax_ties_take_the_lowest_index():
    x = np.array([[3, 7, 7, -1], [-128, -128, -128, -128], [5, 1, 5, 5]], np.int8)
    np.testing.assert_array_equal(op.argmax(x), [ref_argmax(r) for r in x.tolist()])
    assert op.argmax(np.zeros((2, 300), np.int8)).dtype == np.int16
    rng = np.random.default_rng(SEED)
    x = rng.integers(-2, 2, size=(50, 9)).astype(np.int8)       # many ties
    np.testing.assert_array_equal(op.argmax(x), [ref_argmax(r) for r in x.tolist()])


POOL_CASES = [  # shape, kernel, stride, padding, ceil_mode, count_include_pad
    ((9, 9, 2), 3, 2, 1, False, True),      # ResNet's max pool
    ((7, 5, 2), 2, 2, 0, True, True),       # OFA's AvgPool2d(stride, stride, ceil_mode=True)
    ((8, 8, 1), 3, 2, 1, True, False),
    ((6, 7, 2), 3, 3, 1, True, True),
    ((5, 5, 1), 5, 1, 2, False, False),
    # ceil_mode windows longer than the input, which PyTorch takes as one window (OFA's 1-pixel side)
    ((1, 1, 3), 2, 2, 0, True, True),
    ((1, 2, 2), 4, 4, 1, True, True),
    ((2, 1, 2), 3, 3, 0, True, False),
    ((3, 2, 2), 5, 4, 1, True, False),
    ((2, 3, 1), 5, 4, 1, True, True),
]


def test_pool_out_size_is_pytorchs():
    """``pool_out_size`` gives PyTorch's output size wherever PyTorch gives one (at least 1, its
    ``pool2d_shape_check``) and refuses the rest, windows longer than the input included."""
    longer = 0
    for n in range(1, 13):
        for k in range(1, 10):
            for s in range(1, 6):
                for p in range(k // 2 + 1):
                    for ceil_mode in (False, True):
                        want = ref_pool_size(n, k, s, p, ceil_mode)
                        longer += want >= 1 and n + 2 * p < k
                        if want >= 1:
                            assert op.pool_out_size(n, k, s, p, ceil_mode) == want, (n, k, s, p, ceil_mode)
                        else:
                            with pytest.raises(ValueError, match=f"gives no output from an extent of {n}"):
                                op.pool_out_size(n, k, s, p, ceil_mode)
    assert longer > 0                       # the grid holds windows longer than the padded input


@pytest.mark.parametrize("shape,k,s,p,ceil_mode,count_pad", POOL_CASES)
def test_pools_bit_exact(shape, k, s, p, ceil_mode, count_pad):
    x = int8(np.random.default_rng(SEED), shape)
    np.testing.assert_array_equal(op.maxpool2d(x, k, s, p, ceil_mode),
                                  ref_pool(x, k, s, p, ceil_mode, lambda v, d: max(v)).astype(np.int64))
    np.testing.assert_array_equal(op.avgpool2d(x, k, s, p, ceil_mode, count_pad),
                                  ref_pool(x, k, s, p, ceil_mode, int_average, count_pad).astype(np.int64))


@pytest.mark.parametrize("shape,out", [((16, 16, 2), (6, 6)), ((16, 16, 1), (3, 2)), ((7, 9, 2), (1, 1)),
                                       ((5, 3, 1), (5, 7)), ((25, 38, 1), (1, 38))])
def test_adaptive_avgpool_bit_exact(shape, out):
    x = int8(np.random.default_rng(SEED), shape)
    np.testing.assert_array_equal(op.adaptive_avgpool2d(x, *out),
                                  ref_adaptive(x, *out, int_average).astype(np.int64))


def test_average_is_exact_for_every_count():
    """floor(total / count + 1/2) for every count up to 2**16, at the extremes and at ties."""
    count = np.arange(1, op.POOL_MAX_COUNT + 1, dtype=np.int64)
    for total in (-128 * count, 127 * count, -count // 2, count // 2, (count - 1) // 2,
                  -(count + 1) // 2, 5 * count + count // 2, -7 * count - 1):
        got = op.NUMPY.run(op.average_kernel, total, count)
        want = np.floor_divide(2 * total + count, 2 * count)      # exact integer reference
        np.testing.assert_array_equal(got, want)


# ---- integer operators against the float operators ---------------------------------------

def _clipped(y_ref, lo=-128, hi=127):
    return np.clip(np.asarray(y_ref, np.float64), lo, hi)


def case_add(scales, relu=False):
    """Bound: rounding (1/2) + each multiplier's rounding (2**-(shift+1)) times |a| and |b|."""
    def run():
        p = op.add_params(*scales, relu=relu)
        a, b = grid()
        real = (a * scales[0] + b * scales[1]) / scales[2]
        bound = 0.5 + (np.abs(a.astype(int)) + np.abs(b.astype(int))) * 2.0 ** -(p.shift + 1)
        return op.add(a, b, p), _clipped(np.maximum(real, 0) if relu else real), bound
    return run


def case_mul(scales):
    """Bound: rounding (1/2) + the multiplier's rounding (2**-(shift+1)) times |a*b|."""
    def run():
        p = op.mul_params(*scales)
        a, b = grid()
        ab = a.astype(np.int64) * b
        return op.mul(a, b, p), _clipped(ab * (scales[0] * scales[1] / scales[2])), 0.5 + np.abs(ab) * 2.0 ** -(p.shift + 1)
    return run


def case_lut(fn, s_in, s_out):
    """Bound: rounding (1/2): the table is the rounded float function."""
    def run():
        x = np.arange(-128, 128, dtype=np.int8)
        return op.lut(x, op.lut_table(fn, s_in, s_out)), _clipped(fn(x * s_in) / s_out), 0.5
    return run


def case_layernorm(n, s_in, rows=64, eps=1e-5):
    """Bound: rounding (1/2) + |gamma/s_out| * (|z| * 2**-9 + 2**-14) + 2**-8 (1/std from a
    10-bit ROM index: relative error 2**-10, doubled for margin; z's 14 fraction bits;
    gamma's and beta's quantisation)."""
    def run():
        x, gamma, beta, eps_, s_in_, s_out = layernorm_case(np.random.default_rng(SEED + n), n, rows, s_in, eps)
        x[0] = 5
        p = op.layernorm_params(gamma, beta, eps_, s_in_, s_out)
        v = x * s_in_
        z = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps_)
        bound = 0.5 + np.abs(gamma / s_out) * (np.abs(z) * 2.0 ** -9 + 2.0 ** -14) + 2.0 ** -8
        return op.layernorm(x, p), _clipped(F.layernorm(v, gamma, beta, eps_) / s_out), bound
    return run


def softmax_rows(rng, n, rows):
    """Uniform rows, peaked rows, rows with a long tail far below the maximum, equal rows."""
    x = int8(rng, (rows, n))
    q = rows // 4
    x[q:2 * q] = np.clip(rng.normal(-40, 12, (q, n)), -128, 127)
    x[q:2 * q, 0] = 127
    x[2 * q:3 * q] = np.clip(rng.normal(-100, 4, (q, n)), -128, 127)
    x[2 * q:3 * q, 0] = 75
    x[-1] = -128
    return x


def case_softmax(n, s_in, rows=32):
    """Bound: rounding (1/2) + y * 2**-7 (the exponent's 8 fraction bits: 2 * ln2 * 2**-9 for a
    quotient of exponentials; the reciprocal's 10-bit index, 2**-10) + 0.02 (rounding every e)."""
    def run():
        x = softmax_rows(np.random.default_rng(SEED + n), n, rows)
        ref = _clipped(F.softmax(x * s_in) * 128, 0, 127)
        return op.softmax(x, op.softmax_params(s_in)), ref, 0.5 + ref * 2.0 ** -7 + 0.02
    return run


def case_resize(shape, out, exact):
    """Bound: rounding (1/2) when the ratio is exact, else + 2 * 255 * 2**-8 (a weight off by
    at most 2**-8 on each axis)."""
    def run():
        x = int8(np.random.default_rng(SEED), shape)
        return op.resize_bilinear(x, *out), _clipped(F.resize_bilinear(x, *out)), 0.5 + (0 if exact else 2 * 255 / 256)
    return run


def case_pool(kind, shape, *args):
    """Bound: 0 for the maximum, rounding (1/2) for averages (exact quotients)."""
    def run():
        x = int8(np.random.default_rng(SEED), shape)
        return getattr(op, kind)(x, *args), _clipped(getattr(F, kind)(x, *args)), 0.0 if kind == "maxpool2d" else 0.5
    return run


#: (operator, case, measure): ``measure()`` returns (integer result, float result in output
#: steps clipped to the output range, error bound in output steps).
CASES = [
    ("add", "s 0.05 + 0.03 -> 0.07", case_add((0.05, 0.03, 0.07))),
    ("add", "s 1e-3 + 2e-3 -> 2.5e-3, ReLU", case_add((1e-3, 2e-3, 2.5e-3), relu=True)),
    ("add", "s 0.1 + 0.1 -> 0.01 (saturates)", case_add((0.1, 0.1, 0.01))),
    ("add", "s 3 + 1e-4 -> 2", case_add((3.0, 1e-4, 2.0))),
    ("mul", "s 0.05 * 0.02 -> 0.01", case_mul((0.05, 0.02, 0.01))),
    ("mul", "s 0.01 * 0.01 -> 1e-5", case_mul((0.01, 0.01, 1e-5))),
    ("lut", "GELU, s 1/16 -> 1/16", case_lut(F.gelu, 1 / 16, 1 / 16)),
    ("lut", "GELU, s 0.05 -> 0.02", case_lut(F.gelu, 0.05, 0.02)),
    ("lut", "sigmoid, s 0.1 -> 1/128", case_lut(F.sigmoid, 0.1, 1 / 128)),
    ("layernorm", "n 64, s_in 0.02", case_layernorm(64, 0.02)),
    ("layernorm", "n 768, s_in 0.05", case_layernorm(768, 0.05)),
    ("layernorm", "n 3072, s_in 1.0, eps 1e-6", case_layernorm(3072, 1.0, rows=16, eps=1e-6)),
    ("softmax", "n 49, s_in 1/16", case_softmax(49, 1 / 16)),
    ("softmax", "n 256, s_in 0.2", case_softmax(256, 0.2)),
    ("softmax", "n 1024, s_in 0.05", case_softmax(1024, 0.05)),
    ("softmax", "n 4096, s_in 1/16", case_softmax(4096, 1 / 16, rows=8)),
    ("softmax", "n 4096, s_in 1.0", case_softmax(4096, 1.0, rows=8)),
    ("resize_bilinear", "16x16 -> 64x64 (x4)", case_resize((16, 16, 8), (64, 64), True)),
    ("resize_bilinear", "6x6 -> 16x16 (UPerNet PPM)", case_resize((6, 6, 8), (16, 16), True)),
    ("resize_bilinear", "3x3 -> 16x16 (UPerNet PPM)", case_resize((3, 3, 8), (16, 16), True)),
    ("resize_bilinear", "25x38 -> 100x151", case_resize((25, 38, 4), (100, 151), False)),
    ("resize_bilinear", "53x71 -> 16x9 (down)", case_resize((53, 71, 4), (16, 9), False)),
    ("maxpool2d", "k3 s2 p1 (ResNet)", case_pool("maxpool2d", (32, 32, 8), 3, 2, 1)),
    ("avgpool2d", "k2 s2 ceil_mode (OFA)", case_pool("avgpool2d", (15, 15, 8), 2, 2, 0, True)),
    ("avgpool2d", "k3 s2 p1 ceil, no pad count", case_pool("avgpool2d", (15, 14, 8), 3, 2, 1, True, False)),
    ("adaptive_avgpool2d", "7x7 -> 1x1 (ResNet)", case_pool("adaptive_avgpool2d", (7, 7, 64), 1, 1)),
] + [("adaptive_avgpool2d", f"16x16 -> {s}x{s} (PPM)", case_pool("adaptive_avgpool2d", (16, 16, 16), s, s))
     for s in (2, 3, 6)]


def measured(measure):
    """(errors, bounds, share exactly rounded) of one case."""
    y, ref, bound = measure()
    err = np.abs(np.asarray(y, np.float64) - ref)
    return err, np.broadcast_to(bound, err.shape) + 1e-9, np.mean(y == np.floor(ref + 0.5))


@pytest.mark.parametrize("name,case,measure", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_against_float(name, case, measure):
    err, bound, _ = measured(measure)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{name} {case}: error {err[worst]:.4f} > bound {bound[worst]:.4f} at {worst}"


def test_resize_argmax_matches_float_argmax_at_exact_ratios():
    rng = np.random.default_rng(SEED)
    x = rng.integers(-3, 3, size=(16, 16, 19)).astype(np.int8)        # many near-ties
    for out in ((64, 64), (16, 16), (128, 32)):
        np.testing.assert_array_equal(op.resize_argmax(x, *out), np.argmax(F.resize_bilinear(x, *out), -1))


def test_layernorm_corners():
    n = 3072
    gamma, beta = np.linspace(0.5, 1.5, n), np.linspace(-2, 2, n)
    p = op.layernorm_params(gamma, beta, 1e-5, 0.05, 1 / 16)
    const = np.full((3, n), 9, np.int8)
    const[1], const[2] = -128, 127
    want = np.clip(np.floor(beta * 16 + 0.5), -128, 127)            # beta, as the float operator gives
    np.testing.assert_array_equal(op.layernorm(const, p), np.broadcast_to(want, const.shape))
    p0 = op.layernorm_params(gamma, beta, 0.0, 0.05, 1 / 16)          # eps = 0: still no division by zero
    assert p0.eps == 1
    np.testing.assert_array_equal(op.layernorm(const, p0), np.broadcast_to(want, const.shape))
    spike = np.full((1, n), -128, np.int8)
    spike[0, 7] = 127                                                 # |z| = sqrt(n - 1): saturates
    y = op.layernorm(spike, p)
    assert y[0, 7] == 127 and np.all(np.abs(y[0, :7] - np.floor(16 * (beta[:7] - gamma[:7] / np.sqrt(n - 1)) + .5)) <= 1)


def test_softmax_corners():
    p = op.softmax_params(1 / 16)
    for n in (1, 2, 3, 256, 4096):
        for value in (-128, 0, 127):
            y = op.softmax(np.full((2, n), value, np.int8), p)
            np.testing.assert_array_equal(y, min(math.floor(128 / n + 0.5), 127), err_msg=f"n={n} x={value}")
    x = np.full((1, 4096), -128, np.int8)
    x[0, 5] = 127
    y = op.softmax(x, op.softmax_params(1.0))
    assert y[0, 5] == 127 and y.sum() == 127


# ---- the kernels use only the allowed operations, and their widths --------------------------

def width(v: np.ndarray) -> int:
    """Bits of a two's complement (if negative values occur) or unsigned field holding ``v``."""
    v = np.asarray(v)
    if v.dtype == bool or v.size == 0:
        return 1
    lo, hi = int(v.min()), int(v.max())
    if lo >= 0:
        return max(hi.bit_length(), 1)
    return max(max(hi, 0).bit_length(), (-lo - 1).bit_length()) + 1


class Traced:
    """An integer array that allows only the operations a vector unit has."""

    __array_ufunc__ = None          # numpy functions refuse it: kernels may not call them
    __hash__ = None

    def __init__(self, v, log):
        self.v, self.log = np.asarray(v), log
        if self.v.dtype.kind not in "iub":
            raise TypeError(f"a kernel produced dtype {self.v.dtype}")
        log.value(self.v)

    def __bool__(self):
        raise TypeError("a kernel branched on a value")

    def _op(self, other, fn, name, swap=False):
        a, b = self.v, unwrap(other)
        if swap:
            a, b = b, a
        if name == "*":
            self.log.mult(a, b)
        self.log.used.add(name)
        return Traced(fn(a, b), self.log)

    def __neg__(self):
        self.log.used.add("-")
        return Traced(-self.v, self.log)


_BINARY = {"add": ("+", np.add), "sub": ("-", np.subtract), "mul": ("*", np.multiply),
           "rshift": (">>", np.right_shift), "lshift": ("<<", np.left_shift), "and": ("&", np.bitwise_and)}
_COMPARE = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
for _n, (_sym, _fn) in _BINARY.items():
    setattr(Traced, f"__{_n}__", lambda self, o, f=_fn, s=_sym: self._op(o, f, s))
    setattr(Traced, f"__r{_n}__", lambda self, o, f=_fn, s=_sym: self._op(o, f, s, swap=True))
for _n, _fn in _COMPARE.items():
    setattr(Traced, f"__{_n}__", lambda self, o, f=_fn, s=_n: self._op(o, f, "cmp"))


def unwrap(v):
    return v.v if isinstance(v, Traced) else v


class KernelLog:
    def __init__(self):
        self.used, self.widest, self.mults = set(), 0, []

    def value(self, v):
        self.widest = max(self.widest, width(v))

    def mult(self, a, b):
        self.mults.append(tuple(sorted((width(a), width(b)))))


class TracingBackend:
    """Runs kernels on ``Traced`` values, one ``KernelLog`` per kernel."""

    def __init__(self):
        self.logs = defaultdict(KernelLog)
        self.log = None

    def sel(self, cond, a, b):
        self.log.used.add("sel")
        return Traced(np.where(unwrap(cond), unwrap(a), unwrap(b)), self.log)

    def rom(self, table, index):
        i, table = unwrap(index), unwrap(table)
        assert np.all((0 <= i) & (i < len(table))), f"ROM index {i.min()}..{i.max()} outside 0..{len(table) - 1}"
        self.log.used.add("rom")
        return Traced(np.asarray(table)[i], self.log)

    def clz(self, x, width_: int):
        v = unwrap(x)
        assert np.all((0 <= v) & (v < 1 << width_)), f"clz of {v.min()}..{v.max()} in {width_} bits"
        self.log.used.add("clz")
        return Traced(op.NUMPY.clz(v, width_), self.log)

    def run(self, kernel, *args):
        self.log = self.logs[kernel.__name__]
        wrapped = [Traced(a, self.log) if isinstance(a, (np.ndarray, np.generic)) else a for a in args]
        out = kernel(*wrapped, be=self)
        return tuple(unwrap(o) for o in out) if isinstance(out, tuple) else unwrap(out)


ALLOWED = {"+", "-", "*", ">>", "<<", "&", "cmp", "sel", "rom", "clz"}
#: Widest intermediate each kernel's docstring states (bits).
WIDEST = {
    "add_kernel": 32, "mul_kernel": 33, "lut_kernel": 8, "square_kernel": 15, "layernorm_row_kernel": 41,
    "layernorm_element_kernel": 39, "softmax_exp_kernel": 25, "recip_kernel": 36,
    "softmax_out_kernel": 43, "bilinear_axis_kernel": 32, "lerp_kernel": 24, "bilinear_kernel": 24,
    "floor_counter_kernel": 14, "ceil_kernel": 14, "max_kernel": 8, "average_kernel": 40,
    "argmax_kernel": 9, "requantize_kernel": 49,     # acc_bits (32 here) + MULT_BITS + 1
}


def extreme_runs(be):
    """Every operator on inputs that drive its intermediates to their extremes."""
    a, b = grid()
    for p in (op.AddParams(65535, 65535, 31), op.AddParams(65535, 65535, 0, True), op.AddParams(0, 1, 0)):
        yield op.add(a, b, p, be=be), op.add(a, b, p)
    for p in (op.MulParams(65535, 31), op.MulParams(65535, 0)):
        yield op.mul(a, b, p, be=be), op.mul(a, b, p)
    table = op.lut_table(F.sigmoid, 0.1, 1 / 128)
    yield op.lut(a, table, be=be), op.lut(a, table)
    n = op.MAX_ROW
    rows = np.full((5, n), -128, np.int8)
    rows[1, ::2] = 127
    rows[2, 3] = 127
    rows[3] = 127
    rows[4, :n // 2] = 127
    for g, b_, eps, shift in ((32767, 2 ** 31 - 1, 1, 38), (-32768, -2 ** 31, 2 ** 39 - 1, 1)):
        p = op.LayerNormParams(np.full(n, g), np.full(n, b_), eps, shift)
        yield op.layernorm(rows, p, be=be), op.layernorm(rows, p)
    for p in (op.SoftmaxParams(65535, 8), op.SoftmaxParams(65535, 31), op.SoftmaxParams(1, 31)):
        yield op.softmax(rows, p, be=be), op.softmax(rows, p)
    img = np.full((2048, 1, 2), -128, np.int8)
    img[::2, 0, 1] = 127
    for out in ((8192, 1), (1, 1), (3000, 1)):
        yield op.resize_bilinear(img[:, :, :1], *out, be=be), op.resize_bilinear(img[:, :, :1], *out)
        yield op.resize_argmax(img, *out, be=be), op.resize_argmax(img, *out)
    yield op.resize_nearest(img, 8192, 1, be=be), op.resize_nearest(img, 8192, 1)
    big = np.full((256, 256, 2), -128, np.int8)
    big[:, :, 1] = 127
    yield op.adaptive_avgpool2d(big, 1, 1, be=be), op.adaptive_avgpool2d(big, 1, 1)
    yield op.adaptive_avgpool2d(big, 3, 7, be=be), op.adaptive_avgpool2d(big, 3, 7)
    yield op.avgpool2d(big[:20, :20], 3, 2, 1, True, be=be), op.avgpool2d(big[:20, :20], 3, 2, 1, True)
    yield op.maxpool2d(big[:20, :20], 3, 2, 1, be=be), op.maxpool2d(big[:20, :20], 3, 2, 1)
    acc = np.array([[-2 ** 31, 2 ** 31 - 1]] * 2)
    yield op.requantize(acc, 65535, [0, 47], True, be=be), op.requantize(acc, 65535, [0, 47], True)


@pytest.fixture(scope="module")
def traced():
    be = TracingBackend()
    for got, want in extreme_runs(be):
        np.testing.assert_array_equal(got, want)
    rows = np.array([[3, 7, 7, -1, 7], [-128] * 5, [127, -128, 127, 0, 127], [-5, -4, -4, -3, -3]])
    best, index = rows[:, 0], np.zeros(len(rows), np.int64)
    for i in range(1, rows.shape[1]):                      # argmax() is the fold of argmax_kernel
        best, index = be.run(op.argmax_kernel, best, index, rows[:, i], np.int64(i))
    np.testing.assert_array_equal(index, op.argmax(rows))
    return be


def test_tracing_backend_catches_what_a_vector_unit_lacks():
    be = TracingBackend()
    with pytest.raises(TypeError):
        be.run(lambda x, be: x / 3, np.arange(4))           # no divider
    with pytest.raises(TypeError):
        be.run(lambda x, be: np.maximum(x, 0), np.arange(4))  # numpy functions refused
    with pytest.raises(TypeError):
        be.run(lambda x, be: x if x > 0 else -x, np.arange(4))  # no branching on values
    be.run(lambda x, be: x * x, np.array([1 << 20]))
    assert be.logs["<lambda>"].mults == [(21, 21)]          # a 21 x 21 multiply is recorded as such


def test_kernels_use_only_allowed_operations(traced):
    for name, log in traced.logs.items():
        assert log.used <= ALLOWED, f"{name} used {log.used - ALLOWED}"
    assert set(WIDEST) == set(traced.logs), "every kernel ran, and has a stated width"


def test_kernel_widths_fit_their_docstrings(traced):
    for name, log in traced.logs.items():
        assert log.widest <= WIDEST[name], f"{name}: an intermediate of {log.widest} bits > {WIDEST[name]}"


def test_multipliers_are_at_most_24_by_16(traced):
    for name, log in traced.logs.items():
        if name == "requantize_kernel":      # the post-processor's acc_bits x 16 multiplier (hw/numerics.py)
            continue
        for small, large in log.mults:
            assert small <= 16 and large <= 24, f"{name}: a {large} x {small}-bit multiply"


def test_rom_contents_and_sizes():
    assert op.EXP2_ROM.shape == (256,) and op.EXP2_ROM.max() == 1 << 15 and op.EXP2_ROM.min() > 1 << 14
    assert op.RECIP_ROM.shape == (513,) and op.RECIP_ROM[0] == 1 << 15 and op.RECIP_ROM[-1] == 1 << 14
    assert op.RSQRT_ROM.shape == (769,) and op.RSQRT_ROM[0] == 1 << 15 and op.RSQRT_ROM[-1] == 1 << 14
    f = np.arange(256)
    assert np.all(np.abs(op.EXP2_ROM - 2.0 ** (15 - f / 256)) <= 0.5)
    assert not op.EXP2_ROM.flags.writeable


@pytest.mark.parametrize("ratio", [0.999999, 0.9999995, 0.49999999, 0.2499999999, 1.9999999])
def test_a_ratio_just_below_a_power_of_two_rounds_up_to_it(ratio):
    """``var + eps`` adds ``eps/s_out`` ~ 1e-6 to a ratio 1: its multiplier overflows at shift 16 and
    rounds to 2**15 at shift 15.  It was refused as 'too small' (its unrounded 32767.97 < 2**15),
    which stopped ConvNeXt's decomposed LayerNorm."""
    for p, m in ((op.mul_params(1.0, ratio, 1.0), "mult"), (op.add_params(ratio, ratio / 2, 1.0), "mult_a")):
        assert getattr(p, m) == 1 << 15 and getattr(p, m) / 2 ** p.shift == pytest.approx(ratio, rel=1e-5)


# ---- parameter derivation refuses what it cannot represent --------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: op.add_params(1.0, 1.0, 1e-5), "s_a/s_out = 100000 is too large"),
    (lambda: op.add_params(1e-6, 1e-6, 1.0), "too small"),
    (lambda: op.add_params(0.1, -0.1, 1.0), "s_b must be a positive finite number, not -0.1"),
    (lambda: op.mul_params(1.0, 1.0, float("nan")), "s_out must be a positive finite number"),
    (lambda: op.softmax_params(200.0), "s_in = 200 is too large"),
    (lambda: op.layernorm_params(np.ones(8), np.zeros(8), 1.0, 1e-6, 0.1), "eps/s_in\\*\\*2 = 1e\\+12"),
    (lambda: op.layernorm_params(np.ones(5000), np.zeros(5000), 1e-5, 0.1, 0.1), "length 1..4096"),
    (lambda: op.resize_axis_params(4096, 8), "n_in must be an integer in 1..2048, not 4096"),
    (lambda: op.resize_bilinear(np.zeros((2, 2, 1), np.int8), 0, 4), "out_h must be an integer in 1..8192, not 0"),
    (lambda: op.maxpool2d(np.zeros((4, 4, 1), np.int8), 3, 1, 2), r"padding must be 0 .. 1 \(at most half the 3x3 window, as PyTorch requires\), not 2"),
    (lambda: op.avgpool2d(np.zeros((4, 4, 1), np.int8), 9), "pooling window 9"),
    (lambda: op.avgpool2d(np.zeros((1, 1, 1), np.int8), 2, 2, 0, False),
     r"gives no output from an extent of 1: at most 1 \(extent \+ 2\*padding\)"),
    (lambda: op.maxpool2d(np.zeros((1, 1, 1), np.int8), 3, 2, 0, True),
     r"ceil_mode True\) gives no output from an extent of 1: at most 2 \(extent \+ 2\*padding \+ stride - 1\)"),
    (lambda: op.softmax(np.zeros((2, 5000), np.int8), op.softmax_params(0.1)), "length 1..4096"),
    (lambda: op.softmax(np.full(4, 200), op.softmax_params(0.1)), "int8 values, found 200..200"),
    (lambda: op.layernorm(np.zeros((2, 7), np.int8), op.layernorm_params(np.ones(8), np.zeros(8), 1e-5, 1, 1)),
     "rows have 7 elements but the parameters are for 8"),
    (lambda: op.lut(np.zeros(3, np.int8), np.zeros(255, np.int8)), "table must be 256 int8 values"),
    (lambda: op.AddParams(70000, 1, 3), "mult_a must be an integer in 0..65535, not 70000"),
    (lambda: op.LayerNormParams(np.ones(4), np.zeros(4), 1, 3), "integer vectors"),
])
def test_refusals_name_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_derived_parameters_are_precise():
    for s_a, s_b, s_out in ((0.05, 0.03, 0.07), (1e-4, 3e-4, 2e-4), (7.0, 0.5, 1.3)):
        p = op.add_params(s_a, s_b, s_out)
        assert 1 << 15 <= max(p.mult_a, p.mult_b) < 1 << 16              # 16 significant bits
        assert abs(p.mult_a / 2 ** p.shift - s_a / s_out) <= 2.0 ** -(p.shift + 1)
    for s in (1e-4, 1 / 16, 1.0, 100.0):
        p = op.softmax_params(s)
        assert abs(p.exp_mult / 2 ** p.exp_shift - s * math.log2(math.e)) <= 2.0 ** -(p.exp_shift + 1)
    p = op.layernorm_params([0.01, 2.0], [0.1, -3.0], 1e-5, 0.1, 1 / 32)
    assert max(abs(p.gamma)) >= 1 << 14 or max(abs(p.beta)) >= 1 << 30


# ---- float operators against PyTorch's definitions ------------------------------------------

def test_erf_against_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 140001), [0.0, 0.5, 1.0, 5.999, 6.0, 6.001, 30.0, -1e-12]])
    want = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(F.erf(x) - want)) <= 1e-7
    assert np.max(np.abs(F.erf(x) - want)) <= 1e-13         # what it actually achieves
    assert np.isnan(F.erf(np.array([np.nan])))[0] and F.erf(np.array([np.inf]))[0] == 1.0


def test_float_elementwise_against_scalar_formulas():
    x = np.linspace(-20, 20, 2001)
    np.testing.assert_allclose(F.gelu(x), [v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x], atol=1e-12)
    np.testing.assert_allclose(F.sigmoid(x), [1 / (1 + math.exp(-v)) for v in x], rtol=1e-14)
    np.testing.assert_array_equal(F.relu(x), [max(v, 0.0) for v in x])
    assert F.gelu(x.astype(np.float32)).dtype == np.float32
    assert F.sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def test_float_softmax_and_layernorm_against_loops():
    rng = np.random.default_rng(SEED)
    x = rng.normal(0, 3, (4, 37))
    for row, got in zip(x.tolist(), F.softmax(x)):
        e = [math.exp(v - max(row)) for v in row]
        np.testing.assert_allclose(got, [v / sum(e) for v in e], rtol=1e-13)
    gamma, beta = rng.normal(size=37), rng.normal(size=37)
    for row, got in zip(x.tolist(), F.layernorm(x, gamma, beta, 1e-5)):
        mean = sum(row) / len(row)
        var = sum((v - mean) ** 2 for v in row) / len(row)
        np.testing.assert_allclose(got, [(v - mean) / math.sqrt(var + 1e-5) * g + b
                                         for v, g, b in zip(row, gamma, beta)], rtol=1e-12, atol=1e-12)


def test_float_resize_against_loops():
    x = np.random.default_rng(SEED).normal(size=(5, 7, 2))
    for out in ((10, 14), (3, 4), (16, 5)):
        def src(dst, n_in, n_out):
            s = max((dst + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = int(s)
            return i0, min(i0 + 1, n_in - 1), s - i0
        want = np.zeros(out + (2,))
        for oy in range(out[0]):
            y0, y1, ly = src(oy, 5, out[0])
            for ox in range(out[1]):
                x0, x1, lx = src(ox, 7, out[1])
                want[oy, ox] = ((1 - ly) * ((1 - lx) * x[y0, x0] + lx * x[y0, x1])
                                + ly * ((1 - lx) * x[y1, x0] + lx * x[y1, x1]))
        np.testing.assert_allclose(F.resize_bilinear(x, *out), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(F.resize_nearest(x, *out),
                                      x[[(i * 5) // out[0] for i in range(out[0])]][:, [(i * 7) // out[1]
                                                                                         for i in range(out[1])]])


@pytest.mark.parametrize("shape,k,s,p,ceil_mode,count_pad", POOL_CASES)
def test_float_pools_against_loops(shape, k, s, p, ceil_mode, count_pad):
    x = np.random.default_rng(SEED).normal(size=shape)
    np.testing.assert_array_equal(F.maxpool2d(x, k, s, p, ceil_mode),
                                  ref_pool(x, k, s, p, ceil_mode, lambda v, d: max(v)).astype(np.float64))
    np.testing.assert_allclose(F.avgpool2d(x, k, s, p, ceil_mode, count_pad),
                               ref_pool(x, k, s, p, ceil_mode, lambda v, d: sum(v) / d, count_pad).astype(np.float64),
                               rtol=1e-12, atol=1e-12)


def test_float_adaptive_avgpool_against_loops():
    x = np.random.default_rng(SEED).normal(size=(25, 38, 3))
    for out in ((1, 1), (6, 6), (25, 1), (4, 38)):
        np.testing.assert_allclose(F.adaptive_avgpool2d(x, *out),
                                   ref_adaptive(x, *out, lambda v, d: sum(v) / d).astype(np.float64),
                                   rtol=1e-12, atol=1e-12)


# ---- the error report docs/operators.md quotes ---------------------------------------------

def report() -> str:
    """One Markdown row per case: error in output steps against the float operator."""
    lines = ["| operator | case | max error | mean error | exactly rounded | bound |",
             "|---|---|---|---|---|---|"]
    for name, case, measure in CASES:
        err, bound, exact = measured(measure)
        lines.append(f"| {name} | {case} | {err.max():.3f} | {err.mean():.3f} | {100 * exact:.2f} % | "
                     f"{bound.max():.3f} |")
    return "\n".join(lines)


# Published anchors, re-implemented from their papers' formulas (and I-ViT's released code for
# the constants) only to measure them on the same inputs as ours; nothing else uses them.

def ivit_shiftmax(x: np.ndarray, s: float) -> np.ndarray:
    """I-ViT's Shiftmax, output scale 1/128: d*log2(e) as d + d/2 - d/16 (shifts), 2**-f as
    1 - f/2, 15 fraction bits, an integer division for the reciprocal of the sum."""
    d = x.astype(np.int64) - x.max(axis=-1, keepdims=True)
    t = d + np.floor_divide(d, 2) - np.floor_divide(d, 16)
    x0 = math.floor(-1 / s)
    t = np.maximum(t, 15 * x0)
    q = np.floor_divide(t, x0)
    e = ((t - x0 * q - 2 * x0) << (15 - q)) >> 1                 # floor((r/2 - x0) * 2**(15-q))
    factor = (2 ** 31 - 1) // e.sum(axis=-1, keepdims=True)
    return (e * factor) >> 24


def ivit_layernorm_z(x: np.ndarray) -> np.ndarray:
    """I-ViT's I-LayerNorm up to gamma/beta: integer mean (rounded), integer square root by 10
    Newton steps from 2**16, an integer division; returns z = (x - mean) / std as floats."""
    v = x.astype(np.int64)
    y = v - np.rint(v.mean(axis=-1, keepdims=True)).astype(np.int64)
    var = (y * y).sum(axis=-1, keepdims=True)
    k = np.full(var.shape, 1 << 16, np.int64)
    for _ in range(10):
        k = (k + var // k) // 2
    factor = (2 ** 31 - 1) // np.maximum(k, 1)
    return ((y * factor) >> 1) * (math.sqrt(x.shape[-1]) / 2 ** 30)


def anchors() -> str:
    """Our operators against I-ViT's and I-BERT's on the same inputs (errors in output steps)."""
    lines = ["| operator | inputs | ours: max / mean error | anchor | anchor: max / mean error |",
             "|---|---|---|---|---|"]
    for n, s in ((49, 1 / 16), (256, 0.2), (4096, 1 / 16)):
        x = softmax_rows(np.random.default_rng(SEED + n), n, 32 if n < 4096 else 8)
        ref = F.softmax(x * s) * 128
        ours = np.abs(op.softmax(x, op.softmax_params(s)) - np.clip(ref, 0, 127))
        theirs = np.abs(ivit_shiftmax(x, s) - ref)
        lines.append(f"| softmax | {x.shape[0]} rows of {n}, s_in {s:g} | {ours.max():.2f} / {ours.mean():.3f} | "
                     f"I-ViT Shiftmax | {theirs.max():.2f} / {theirs.mean():.3f} |")
    for n, s in ((64, 0.02), (768, 0.05)):
        x, *_ = layernorm_case(np.random.default_rng(SEED + n), n, 64, s)
        v = x * s
        z = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True))
        p = op.layernorm_params(np.ones(n), np.zeros(n), 0.0, s, 1 / 16)
        ours = np.abs(op.layernorm(x, p) - np.clip(16 * z, -128, 127))
        theirs = np.abs(np.clip(np.floor(16 * ivit_layernorm_z(x) + 0.5), -128, 127) - np.clip(16 * z, -128, 127))
        lines.append(f"| layernorm (gamma 1, beta 0, eps 0, s_out 1/16) | 64 rows of {n}, s_in {s:g} | "
                     f"{ours.max():.2f} / {ours.mean():.3f} | I-ViT I-LayerNorm | {theirs.max():.2f} / {theirs.mean():.3f} |")
    x = np.arange(-128, 128)
    exact = np.clip(F.gelu(x / 16) * 16, -128, 127)
    a, b = -0.2888, -1.769                                      # I-BERT's i-erf: a (min(|t|, -b) + b)**2 + 1
    t = x / 16 / math.sqrt(2)
    erf_poly = np.sign(t) * (a * (np.minimum(np.abs(t), -b) + b) ** 2 + 1)
    theirs = np.abs(np.clip(np.floor(16 * (x / 32) * (1 + erf_poly) + 0.5), -128, 127) - exact)
    ours = np.abs(op.lut(x, op.lut_table(F.gelu, 1 / 16, 1 / 16)) - exact)
    lines.append(f"| GELU (s 1/16 -> 1/16) | all 256 int8 values | {ours.max():.2f} / {ours.mean():.3f} | "
                 f"I-BERT i-GELU polynomial, rounded to the same int8 | {theirs.max():.2f} / {theirs.mean():.3f} |")
    return "\n".join(lines)


def _main() -> int:
    from hw.cli import OneLineParser
    parser = OneLineParser(description="Measured errors of the integer operators against the float ones.")
    parser.add_argument("--report", action="store_true", help="print the Markdown tables of docs/operators.md")
    args = parser.parse_args()
    if not args.report:
        parser.error("nothing to do: pass --report")
    print(report(), anchors(), sep="\n\n")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(_main)
