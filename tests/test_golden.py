"""Golden model: fast (BLAS) MAC layers against the loop references, requantisation
corner cases per hw/numerics.py, and the non-MAC reference layers."""

from __future__ import annotations

import numpy as np
import pytest

from hw.numerics import MAX_SHIFT, MULT_BITS
from sim import golden as g


def rand8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int8)


def check_conv(seed, h, w, c, k, kh, kw, stride, padding, groups, acc_bits=32, lo=-128, hi=127):
    rng = np.random.default_rng(seed)
    x = rand8(rng, (h, w, c), lo, hi)
    wt = rand8(rng, (k, kh, kw, c // groups), lo, hi)
    kw_ = dict(stride=stride, padding=padding, groups=groups, acc_bits=acc_bits)
    got = g.conv2d(x, wt, **kw_)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(
        got, g.conv2d_loops(x, wt, **kw_),
        err_msg=f"seed={seed} x={x.shape} w={wt.shape} {kw_}")
    return got


# ---- conv2d / linear / matmul against the loop references -------------------------

NAMED_CONVS = {
    #            h   w   c   k  kh kw  s  p  groups
    "1x1":      (5,  6,  8,  6, 1, 1,  1, 0, 1),
    "3x3s1p1":  (6,  5,  4,  5, 3, 3,  1, 1, 1),
    "3x3s2p1":  (9,  8,  6,  4, 3, 3,  2, 1, 1),
    "7x7s4p3":  (13, 11, 3,  4, 7, 7,  4, 3, 1),
    "c3_stem":  (8,  8,  3,  8, 3, 3,  2, 1, 1),
    "depthwise": (7, 6,  8,  8, 3, 3,  1, 1, 8),
    "dw_s2":    (9,  7,  6,  6, 5, 5,  2, 2, 6),
    "dw_mult2": (6,  6,  4,  8, 3, 3,  1, 1, 4),   # channel multiplier 2
    "groups2":  (6,  7,  8,  6, 3, 3,  1, 1, 2),
    "groups2_1x1": (4, 5, 6, 4, 1, 1, 1, 0, 2),
    "rect_kernel": (7, 8, 4, 3, 1, 3, 1, 1, 1),
    "no_pad_exact": (5, 5, 2, 3, 5, 5, 1, 0, 1),
}


@pytest.mark.parametrize("name", NAMED_CONVS)
def test_conv2d_named_shapes(name):
    check_conv(sum(map(ord, name)), *NAMED_CONVS[name])


@pytest.mark.parametrize("seed", range(40))
def test_conv2d_random_shapes(seed):
    rng = np.random.default_rng(1000 + seed)
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride, padding = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    groups = int(rng.choice([1, 1, 2, 3, 4]))
    c = groups * int(rng.integers(1, 4))
    k = groups * int(rng.integers(1, 4))
    h = int(rng.integers(max(1, kh - 2 * padding), 10))
    w = int(rng.integers(max(1, kw - 2 * padding), 10))
    check_conv(1000 + seed, h, w, c, k, kh, kw, stride, padding, groups)


def test_conv2d_im2col_chunks(monkeypatch):
    """Tiny im2col chunks: many row blocks, including a ragged last one."""
    monkeypatch.setattr(g, "_CHUNK_ELEMS", 500)
    check_conv(8000, 23, 17, 12, 6, 3, 3, 2, 1, 3)
    check_conv(8001, 11, 9, 4, 4, 1, 1, 1, 0, 1)


def test_conv2d_extreme_operands():
    """All -128 x -128 products: the largest accumulator magnitude."""
    x = np.full((5, 5, 16), -128, np.int8)
    w = np.full((4, 3, 3, 16), -128, np.int8)
    got = g.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(got, g.conv2d_loops(x, w, padding=1))
    assert got[2, 2, 0] == 9 * 16 * 2 ** 14 and got[0, 0, 0] == 4 * 16 * 2 ** 14


@pytest.mark.parametrize("seed", range(6))
def test_linear_and_matmul_random(seed):
    rng = np.random.default_rng(2000 + seed)
    t, c, k = (int(v) for v in rng.integers(1, 12, 3))
    x, w = rand8(rng, (t, c)), rand8(rng, (k, c))
    np.testing.assert_array_equal(g.linear(x, w), g.linear_loops(x, w), err_msg=f"seed={2000 + seed}")
    b, m, kk, n = (int(v) for v in rng.integers(1, 7, 4))
    a, bb = rand8(rng, (b, m, kk)), rand8(rng, (b, kk, n))
    np.testing.assert_array_equal(g.matmul(a, bb), g.matmul_loops(a, bb), err_msg=f"seed={2000 + seed}")


# ---- accumulator wrap-around ---------------------------------------------------------

def test_linear_wraps_at_acc_bits_24():
    x = np.full((2, 600), -128, np.int8)
    w = np.full((3, 600), -128, np.int8)
    got = g.linear(x, w, acc_bits=24)
    exact = 600 * 2 ** 14                     # 9830400 > 2**23 - 1
    np.testing.assert_array_equal(got, exact - 2 ** 24)
    np.testing.assert_array_equal(got, g.linear_loops(x, w, acc_bits=24))
    np.testing.assert_array_equal(g.linear(x, w), exact)          # no wrap at 32 bits
    assert (g.linear(np.full((1, 1024), -128, np.int8), np.full((1, 1024), -128, np.int8),
                     acc_bits=24) == 0).all()                     # 2**24 wraps to 0


@pytest.mark.parametrize("seed", range(3))
def test_conv2d_wraps_at_acc_bits_24(seed):
    # Products ~ 2**13.7: 9 taps x 128 channels cross 2**23 (interior), 4 taps do not (corners).
    got = check_conv(3000 + seed, 4, 4, 128, 3, 3, 3, 1, 1, 1, acc_bits=24, lo=-128, hi=-100)
    assert got.min() >= -2 ** 23 and got.max() < 2 ** 23
    exact = g.conv2d(*_operands(3000 + seed, 4, 4, 128, 3, 3, 3, 1, -128, -100), padding=1)
    assert (exact != got).any() and (exact == got).any(), "some outputs must wrap, some not"


def _operands(seed, h, w, c, k, kh, kw, groups, lo, hi):
    rng = np.random.default_rng(seed)
    return rand8(rng, (h, w, c), lo, hi), rand8(rng, (k, kh, kw, c // groups), lo, hi)


def test_depthwise_and_matmul_wrap():
    check_conv(4000, 5, 5, 4, 4, 3, 3, 1, 1, 4, acc_bits=16)      # 9 * 2**14 > 2**15
    a = np.full((2, 3, 700), -128, np.int8)
    b = np.full((2, 700, 2), -128, np.int8)
    np.testing.assert_array_equal(g.matmul(a, b, acc_bits=24), g.matmul_loops(a, b, acc_bits=24))


def test_wrap_helper():
    np.testing.assert_array_equal(g.wrap(np.array([2 ** 23, -2 ** 23 - 1, 5, -5, 2 ** 24 - 1]), 24),
                                  [-2 ** 23, 2 ** 23 - 1, 5, -5, -1])
    assert g.wrap(2 ** 31, 32) == -2 ** 31 and g.wrap(-1, 8) == -1 and g.wrap(128, 8) == -128
    assert g.wrap(np.array([3, -3]), 32).dtype == np.int64


# ---- the float64 exactness bound -------------------------------------------------

def test_blas_exact_bound():
    assert g.blas_exact(2 ** 39 - 1)        # (2**39 - 1) * 2**14 < 2**53
    assert not g.blas_exact(2 ** 39)        # 2**39 * 2**14 == 2**53: could round


def test_int64_fallback_when_bound_fails(monkeypatch):
    """Shrink the exact-float range so that small dot products take the int64 path."""
    calls = []
    real = g._int64_dot
    monkeypatch.setattr(g, "_int64_dot", lambda a, b: calls.append(a.shape) or real(a, b))
    rng = np.random.default_rng(5000)
    x, w = rand8(rng, (6, 6, 8)), rand8(rng, (4, 3, 3, 8))
    g.conv2d(x, w, padding=1)
    assert calls == [], "float64 BLAS path expected while the bound holds"

    monkeypatch.setattr(g, "FLOAT64_EXACT", 2 ** 20)   # exact only for L < 64
    assert not g.blas_exact(72) and g.blas_exact(63)
    np.testing.assert_array_equal(g.conv2d(x, w, padding=1), g.conv2d_loops(x, w, padding=1),
                                  err_msg="seed=5000")
    assert calls, "L = 72 >= 64 must fall back to int64"
    calls.clear()
    a, b = rand8(rng, (2, 3, 80)), rand8(rng, (2, 80, 4))
    np.testing.assert_array_equal(g.matmul(a, b), g.matmul_loops(a, b), err_msg="seed=5000")
    xl, wl = rand8(rng, (3, 100)), rand8(rng, (5, 100))
    np.testing.assert_array_equal(g.linear(xl, wl), g.linear_loops(xl, wl), err_msg="seed=5000")
    assert len(calls) == 2


def test_large_depthwise_matches_the_definition():
    # (its speed is measured by make bench, not asserted here: the machines are noisy)
    rng = np.random.default_rng(6000)
    x, w = rand8(rng, (128, 128, 256)), rand8(rng, (256, 3, 3, 1))
    y = g.conv2d(x, w, padding=1, groups=256)
    assert y.shape == (128, 128, 256)
    # spot-check one output against the definition
    oy, ox, ch = 0, 77, 200
    ref = sum(int(x[oy + i - 1, ox + j - 1, ch]) * int(w[ch, i, j, 0])
              for i in range(3) for j in range(3) if 0 <= oy + i - 1 < 128)
    assert y[oy, ox, ch] == ref


@pytest.mark.parametrize("stride,padding,groups", [(1, 2, 1), (2, 3, 1), (1, 2, 8), (1, (0, 2, 4, 1), 2)])
def test_dilated_conv2d_matches_the_definition(stride, padding, groups):
    """Taps ``dilation`` pixels apart, dense, grouped and depthwise, with padding alike or not."""
    rng = np.random.default_rng(6100)
    x, w = rand8(rng, (9, 11, 8)), rand8(rng, (8, 3, 3, 8 // groups))
    for dilation in (2, 3):
        got = g.conv2d(x, w, stride=stride, padding=padding, groups=groups, dilation=dilation)
        want = g.conv2d_loops(x, w, stride=stride, padding=padding, groups=groups, dilation=dilation)
        np.testing.assert_array_equal(got, want, err_msg=f"dilation {dilation}")


def test_conv2d_rejects_bad_shapes():
    x = np.zeros((4, 4, 6), np.int8)
    with pytest.raises(ValueError):
        g.conv2d(x, np.zeros((4, 3, 3, 4), np.int8), groups=2)   # C//groups = 3 != 4
    with pytest.raises(ValueError):
        g.conv2d(x, np.zeros((3, 3, 3, 3), np.int8), groups=2)   # K = 3 not divisible
    with pytest.raises(ValueError):
        g.conv2d(x, np.zeros((2, 5, 5, 6), np.int8))             # kernel does not fit
    with pytest.raises(ValueError):
        g.linear(np.full((1, 2), 300), np.zeros((1, 2), np.int8))  # not int8 values


# ---- requantisation --------------------------------------------------------------

def requant_ref(acc, bias, mult, shift, relu=False, acc_bits=32):
    """hw/numerics.py, literally, on Python ints."""
    x = g.wrap(int(acc) + int(bias), acc_bits)
    p = x * int(mult)
    r = (p + (1 << (shift - 1))) >> shift if shift > 0 else p
    if relu:
        r = max(r, 0)
    return min(max(r, -128), 127)


def rq(acc, bias=0, mult=1, shift=0, **kw):
    return g.requantize(np.atleast_1d(np.asarray(acc, np.int64)), bias, mult, shift, **kw)


@pytest.mark.parametrize("seed", range(4))
def test_requantize_random_against_definition(seed):
    rng = np.random.default_rng(7000 + seed)
    for acc_bits in (24, 32):
        k = 16
        acc = rng.integers(-2 ** (acc_bits - 1), 2 ** (acc_bits - 1), size=(5, k))
        bias = rng.integers(-2 ** 31, 2 ** 31, size=k)
        mult = rng.integers(0, 2 ** MULT_BITS, size=k)
        shift = rng.integers(0, MAX_SHIFT + 1, size=k)
        for relu in (False, True):
            got = g.requantize(acc, bias, mult, shift, relu=relu, acc_bits=acc_bits)
            assert got.dtype == np.int8
            ref = [[requant_ref(acc[t, c], bias[c], mult[c], shift[c], relu, acc_bits)
                    for c in range(k)] for t in range(5)]
            np.testing.assert_array_equal(got, ref, err_msg=f"seed={7000 + seed} acc_bits={acc_bits}")


def test_requantize_round_half_up():
    # p / 2**shift exactly at .5: positive rounds up, negative rounds towards +inf.
    cases = {(5, 1): 3, (-5, 1): -2, (-3, 1): -1, (-1, 1): 0, (1, 1): 1,
             (-10, 2): -2, (-6, 2): -1, (10, 2): 3, (6, 2): 2, (7, 2): 2, (-7, 2): -2}
    for (p, shift), want in cases.items():
        assert rq(p, shift=shift)[0] == want, (p, shift)
    # -2.5 -> -2 also through mult: acc = -5, mult = 3, shift = 1 -> -7.5 -> -7
    assert rq(-5, mult=3, shift=1)[0] == -7


def test_requantize_shift_limits():
    assert rq(100, shift=0)[0] == 100
    assert rq(-100, mult=1, shift=0)[0] == -100
    big, small = 2 ** 31 - 1, -2 ** 31
    # shift = MAX_SHIFT with the largest |p|: p = acc * 65535 ~ +-2**47
    assert rq(big, mult=65535, shift=MAX_SHIFT)[0] == requant_ref(big, 0, 65535, MAX_SHIFT) == 1
    assert rq(small, mult=65535, shift=MAX_SHIFT)[0] == requant_ref(small, 0, 65535, MAX_SHIFT) == -1
    assert rq(2 ** 31 - 1, mult=1, shift=MAX_SHIFT)[0] == 0
    assert rq(small, mult=65535, shift=39)[0] == -128               # ~ -256: saturates
    assert rq(small, mult=65535, shift=40)[0] == requant_ref(small, 0, 65535, 40) == -128


def test_requantize_mult_extremes_and_saturation():
    acc = np.array([[-2 ** 31, -1000, -1, 0, 1, 1000, 2 ** 31 - 1]])
    np.testing.assert_array_equal(g.requantize(acc, 0, 0, 0)[0], 0)
    np.testing.assert_array_equal(g.requantize(acc, 0, 0, 5, relu=True)[0], 0)
    np.testing.assert_array_equal(g.requantize(acc, 0, 65535, 0)[0], [-128, -128, -128, 0, 127, 127, 127])
    np.testing.assert_array_equal(g.requantize(acc, 0, 65535, 16)[0], [-128, -128, -1, 0, 1, 127, 127])
    np.testing.assert_array_equal(g.requantize(acc, 0, 1, 0, relu=True)[0], [0, 0, 0, 0, 1, 127, 127])
    np.testing.assert_array_equal(g.requantize(np.array([[-129, -128, 127, 128]]), 0, 1, 0)[0],
                                  [-128, -128, 127, 127])
    np.testing.assert_array_equal(g.requantize(np.array([[-3, 3]]), 0, 1, 0, relu=True)[0], [0, 3])


def test_requantize_bias_wraps_like_accumulator():
    assert rq(2 ** 31 - 1, bias=1)[0] == -128                    # wraps to -2**31
    assert rq(2 ** 31 - 1, bias=1, mult=1, shift=31)[0] == -1      # exactly -1 after wrap
    assert requant_ref(2 ** 31 - 1, 2 ** 31 - 1, 1, 0) == -2
    assert rq(2 ** 31 - 1, bias=2 ** 31 - 1)[0] == -2              # 2**32 - 2 wraps to -2
    assert rq(-2 ** 31, bias=-1, mult=1, shift=31)[0] == 1        # wraps to 2**31 - 1 -> 0.99.. -> 1
    assert rq(2 ** 23 - 1, bias=1, mult=1, shift=23, acc_bits=24)[0] == -1
    assert rq(2 ** 23 - 1, bias=1, mult=1, shift=23, acc_bits=32)[0] == 1


def test_requantize_most_negative_products():
    """A linear layer on -128 x -128 everywhere, then requantised per channel."""
    x = np.full((2, 64), -128, np.int8)
    w = np.full((3, 64), -128, np.int8)
    acc = g.linear(x, w)                         # 64 * 2**14 = 2**20 everywhere
    np.testing.assert_array_equal(acc, 2 ** 20)
    out = g.requantize(acc, bias=[0, -2 ** 20, 0], mult=[1, 1, 3], shift=[13, 0, 15])
    np.testing.assert_array_equal(out, [[127, 0, 96]] * 2)  # 128 -> 127, 0, 3*2**5 = 96


def test_requantize_per_channel_broadcast():
    acc = np.arange(-6, 6).reshape(3, 4)
    out = g.requantize(acc, bias=[0, 1, 2, 3], mult=[1, 2, 3, 4], shift=[0, 1, 2, 3])
    ref = [[requant_ref(acc[t, c], [0, 1, 2, 3][c], c + 1, c) for c in range(4)] for t in range(3)]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("field,value", [
    ("mult", -1), ("mult", 2 ** MULT_BITS), ("shift", -1), ("shift", MAX_SHIFT + 1),
    ("bias", 2 ** 31), ("bias", -2 ** 31 - 1)])
def test_requantize_rejects_out_of_range(field, value):
    params = {"bias": [0, 0], "mult": [1, 1], "shift": [0, 0]}
    params[field] = [0 if field != "mult" else 1, value]
    with pytest.raises(ValueError, match=rf"{field}\[1\] = {value}\b"):
        g.requantize(np.zeros((1, 2), np.int64), **params)
    with pytest.raises(ValueError, match=str(value)):
        g.requantize(np.zeros((1, 2), np.int64), **{**params, field: value})


def test_requantize_rejects_wrong_length_and_non_integers():
    with pytest.raises(ValueError, match="per output channel"):
        g.requantize(np.zeros((1, 3), np.int64), 0, [1, 1], 0)
    with pytest.raises(ValueError, match="integers"):
        g.requantize(np.zeros((1, 2), np.int64), 0, 1.5, 0)

