"""Integer-only semantics of every non-MAC operator, defined once.

The golden model, the functional simulator and (issue 13) the RTL's vector unit
compute these operators exactly as written here.  Activations are int8 two's
complement with a symmetric per-tensor scale (real = q * s); tensors are HWC and
row operators (softmax, layernorm, argmax) work on the last axis.

Kernels and backends
--------------------
Each operator is a short composition of *kernels*: functions of integer values
that use only ``+ - * >> << &``, comparisons and three backend helpers,
``be.sel(cond, a, b)``, ``be.rom(table, index)`` and ``be.clz(x, width)``.  No
kernel divides, branches on a value or touches floating point, and every
multiplier has operands of at most 24 x 16 bits, so an Amaranth backend (``Mux``,
a ROM read, a priority encoder) can evaluate the same kernels on Amaranth values.
Kernels never loop over a row or a window: the operator functions below sequence
the passes (running maxima and sums, gathers, counters), as the RTL's sequencer
will.  Every kernel's docstring states the width of its intermediates; the tests
run the kernels with a tracing backend on extreme inputs and check those widths.

Rounding is always explicit: ``round_shift(x, s) = (x + ((1 << s) >> 1)) >> s``,
round half up with an arithmetic shift, as in :mod:`hw.numerics`.

ROMs
----
==============  =======  ============  ==============================================
ROM             entries  word          content
==============  =======  ============  ==============================================
``EXP2_ROM``    256      16 bit, uint  ``round(2**15 * 2**(-f / 256))``, f = 0..255
``RECIP_ROM``   513      16 bit, uint  ``round(2**15 * 512 / i)``, i = 512..1024
``RSQRT_ROM``   769      16 bit, uint  ``round(2**15 / sqrt(i / 256))``, i = 256..1024
==============  =======  ============  ==============================================

Parameter derivation (``*_params``, ``lut_table``, ``resize_axis_params``) runs at
compile time and may use floating point; it refuses scales it cannot represent.
``docs/operators.md`` gives each operator's formula, widths and measured error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, ClassVar

import numpy as np

from .numerics import INT8_MAX, INT8_MIN, MAX_SHIFT, MULT_BITS

__all__ = [
    # backend and shared kernels
    "NumpyBackend", "NUMPY", "round_shift", "saturate", "relu_saturate", "wrap", "check_acc_bits",
    # ROMs
    "exp2_rom", "recip_rom", "rsqrt_rom", "EXP2_ROM", "RECIP_ROM", "RSQRT_ROM",
    "recip_kernel", "rsqrt_kernel",
    # parameters
    "AddParams", "MulParams", "LayerNormParams", "SoftmaxParams", "ResizeAxis",
    "add_params", "mul_params", "lut_inputs", "lut_table", "layernorm_params", "softmax_params",
    "resize_axis_params", "dda_matches", "resize_element_kernel",
    # operators
    "requantize", "add", "mul", "lut", "layernorm", "softmax", "resize_bilinear",
    "resize_nearest", "resize_argmax", "argmax", "maxpool2d", "avgpool2d",
    "adaptive_avgpool2d",
    # window geometry shared with the float operators
    "nearest_indices", "pool_out_count", "pool_out_size", "pool_axis_windows", "pool_windows", "adaptive_axis_windows",
    "window_sums",
    # kernels
    "in_bits", "REQUANTIZE_RANGES", "MAX_ROW", "requantize_kernel", "add_kernel", "mul_kernel", "lut_kernel", "lut_index",
    "square_kernel", "layernorm_row_kernel", "layernorm_element_kernel", "softmax_exp_kernel",
    "softmax_out_kernel", "SOFTMAX_OUT_SHIFTS", "bilinear_axis_kernel", "lerp_kernel", "bilinear_kernel",
    "max_kernel", "argmax_kernel", "average_kernel", "average_by_reciprocal_kernel", "floor_counter_kernel",
    "ceil_kernel",
]

# ---- widths and limits ------------------------------------------------------------------

#: Bits of an int8 activation.
INT8_BITS = (INT8_MAX - INT8_MIN).bit_length()
#: Multipliers of ``add``/``mul``/``softmax`` parameters: unsigned, this many bits.
OP_MULT_BITS = 16
#: Largest right shift of ``add`` and ``mul`` (their sums are below 2**25 and 2**31).
OP_MAX_SHIFT = 31
#: ``exp2`` ROM: index = fraction bits of the exponent; words are 2**EXP_ONE_BITS at 0.
EXP_FRAC_BITS = 8
EXP_ONE_BITS = 15
#: Reciprocal ROM: index bits of the normalised value (rounded), fraction bits of a word.
RECIP_INDEX_BITS = 10
RECIP_FRAC_BITS = 15
#: Reciprocal square-root ROM: index bits of the normalised value, fraction bits of a word.
RSQRT_INDEX_BITS = 10
RSQRT_FRAC_BITS = 15
#: Longest row of softmax and layernorm.
MAX_ROW = 4096
#: Softmax's exponentials are ``2**SOFTMAX_E_BITS * exp(...)``, so that rounding each of
#: up to 4096 small terms moves their sum by at most 2**-12 of its least value (2**22).
SOFTMAX_E_BITS = 22
#: Width of softmax's row sum: n * 2**22 <= 2**34.
SOFTMAX_SUM_BITS = 35
#: Width of layernorm's n**2 * (variance + eps) (variance part < 2**38, eps < 2**39).
LN_VAR_BITS = 40
#: Fraction bits of layernorm's normalised value z = (x - mean) / std.
LN_Z_FRAC = 14
#: Width of layernorm's normalised value z (|z| < 64 * 2**LN_Z_FRAC, with a bit of margin).
LN_Z_BITS = 22
#: Largest output shift of layernorm (its accumulator stays below 2**39).
LN_MAX_SHIFT = 38
#: 1/sqrt(u) ~= r * 2**(h - 34) (rsqrt_kernel), so z = d * r * 2**(h - 34 + LN_Z_FRAC).
_LN_Z_SHIFT = (LN_VAR_BITS - 2) // 2 + RSQRT_FRAC_BITS - LN_Z_FRAC     # 20
#: Bilinear resize: fraction bits of the DDA position and of the interpolation weights.
RESIZE_POS_FRAC = 20
RESIZE_WEIGHT_BITS = 8
RESIZE_MAX_IN = 2048          # positions below 2**31
#: Longest output axis of a resize, and longest axis of an adaptive pooling or nearest resize.
AXIS_MAX = 8192
#: Largest pooling window (count below 2**17, window sums below 2**24 in magnitude).
POOL_MAX_COUNT = 1 << 16
POOL_COUNT_BITS = 17


# ---- backend ----------------------------------------------------------------------------

class NumpyBackend:
    """Evaluates kernels on numpy integer arrays (int64 unless an operator says otherwise).

    ``sel`` is a multiplexer, ``rom`` a table read, ``clz`` a priority encoder;
    ``run(kernel, *args)`` calls ``kernel(*args, be=self)`` (a tracing backend
    in the tests wraps the arguments first).
    """

    name = "numpy"

    def sel(self, cond, a, b):
        """``a`` where ``cond`` else ``b`` (a multiplexer)."""
        return np.where(cond, a, b)

    def rom(self, table, index):
        """``table[index]`` (a ROM read)."""
        return np.asarray(table)[index]

    def clz(self, x, width: int):
        """Leading zeros of ``0 <= x < 2**width`` in a ``width``-bit field (``width`` for 0)."""
        # frexp's exponent is the bit length of an integer (exact below 2**53).
        return width - np.frexp(np.asarray(x, np.float64))[1].astype(np.int64)

    def run(self, kernel: Callable, *args):
        """``kernel(*args, be=self)``: every kernel call of an operator goes through here."""
        return kernel(*args, be=self)


NUMPY = NumpyBackend()


# ---- shared kernels ---------------------------------------------------------------------

def round_shift(x, shift):
    """``x / 2**shift`` rounded half up: ``(x + ((1 << shift) >> 1)) >> shift``.

    ``shift`` may be an integer or a value (a variable shifter; the rounding
    constant is then a one-hot of ``shift + 1`` bits before its halving); 0
    returns ``x``.  The sum is at most one bit wider than the wider of ``x`` and
    the constant.
    """
    return (x + ((1 << shift) >> 1)) >> shift


def saturate(x, lo, hi, be):
    """``x`` clamped to ``[lo, hi]`` by two comparisons."""
    return be.sel(x < lo, lo, be.sel(x > hi, hi, x))


def relu_saturate(x, relu, be):
    """Optional ReLU (``relu`` a flag: the lower bound becomes 0) and saturation to int8."""
    return saturate(x, be.sel(relu, 0, INT8_MIN), INT8_MAX, be)


def in_bits(x, bits: int):
    """``x`` as a ``bits``-bit two's complement field: ``((x + 2**(bits-1)) & (2**bits - 1)) - 2**(bits-1)``.

    The identity for ``|x| < 2**(bits-1)``: a kernel uses it where its docstring bounds a value
    more tightly than the interval of its operands shows (layernorm's ``z``), so that the RTL's
    widths follow from the kernel itself.  In hardware it is wiring (bit ``bits-1`` inverted
    twice).
    """
    half = 1 << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def _mul_wide(a, b):
    """``a * b`` for ``0 <= a < 2**24`` and ``0 <= b < 2**32`` as two 24 x 16-bit products.

    Used once per row (layernorm's variance), where the vector unit can spend two
    multiplier cycles; products below 2**56.
    """
    return ((a * (b >> 16)) << 16) + a * (b & 0xFFFF)


def wrap(x, bits: int):
    """``x`` reduced to ``bits``-bit two's complement.

    A Python ``int`` gives an ``int``; anything else gives an int64 array.
    """
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 63:
        raise ValueError(f"bits must be an integer in 1..63, not {bits!r}")
    bits = int(bits)
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        x = int(x) & ((1 << bits) - 1)
        return x - (1 << bits) if x >> (bits - 1) else x
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"wrap needs integers, not dtype {a.dtype}")
    a = a.astype(np.int64)                       # a copy
    if a.size and -(1 << (bits - 1)) <= a.min() and a.max() < (1 << (bits - 1)):
        return a                                  # already in range (the common case)
    a &= np.int64((1 << bits) - 1)
    a -= ((a >> (bits - 1)) & 1) << bits
    return a


# ---- ROMs -------------------------------------------------------------------------------

def _round_half_up(v):
    """Compile-time rounding of floats, half up: the same rule as ``round_shift``."""
    return np.floor(np.asarray(v, np.float64) + 0.5).astype(np.int64)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a


def exp2_rom(frac_bits: int = EXP_FRAC_BITS, one_bits: int = EXP_ONE_BITS) -> np.ndarray:
    """``2**frac_bits`` words ``round(2**one_bits * 2**(-f / 2**frac_bits))``: 2 to a
    negative fraction, in ``(2**(one_bits-1), 2**one_bits]`` (``one_bits + 1``-bit words)."""
    f = np.arange(1 << frac_bits, dtype=np.float64)
    return _frozen(_round_half_up(2.0 ** (one_bits - f / (1 << frac_bits))))


def recip_rom(index_bits: int = RECIP_INDEX_BITS, frac_bits: int = RECIP_FRAC_BITS) -> np.ndarray:
    """``2**(index_bits-1) + 1`` words ``round(2**frac_bits / m)`` for ``m = i / 2**(index_bits-1)``,
    ``i = 2**(index_bits-1) .. 2**index_bits`` (m in [1, 2]); words in ``[2**(frac_bits-1), 2**frac_bits]``."""
    i = np.arange(1 << (index_bits - 1), (1 << index_bits) + 1, dtype=np.float64)
    return _frozen(_round_half_up(2.0 ** (frac_bits + index_bits - 1) / i))


def rsqrt_rom(index_bits: int = RSQRT_INDEX_BITS, frac_bits: int = RSQRT_FRAC_BITS) -> np.ndarray:
    """``3 * 2**(index_bits-2) + 1`` words ``round(2**frac_bits / sqrt(m))`` for
    ``m = i / 2**(index_bits-2)``, ``i = 2**(index_bits-2) .. 2**index_bits`` (m in [1, 4])."""
    i = np.arange(1 << (index_bits - 2), (1 << index_bits) + 1, dtype=np.float64)
    return _frozen(_round_half_up(2.0 ** frac_bits / np.sqrt(i / (1 << (index_bits - 2)))))


EXP2_ROM = exp2_rom()
RECIP_ROM = recip_rom()
RSQRT_ROM = rsqrt_rom()


def recip_kernel(v, width: int, be):
    """Reciprocal of ``1 <= v < 2**width`` by clz-normalisation and ``RECIP_ROM``.

    Returns ``(r, k)`` with ``1 / v ~= r * 2**(k - (width - 1) - RECIP_FRAC_BITS)``:
    ``k = clz(v)`` (``ceil(log2(width+1))`` bits), ``v << k`` in ``[2**(width-1), 2**width)``,
    the index its top ``RECIP_INDEX_BITS`` bits rounded (``width + 1`` bits before the
    shift), ``r`` a 16-bit word.  Relative error at most about 2**-10 (exact for
    ``v`` with at most ``RECIP_INDEX_BITS`` significant bits, apart from the word's
    rounding, 2**-16).
    """
    k = be.clz(v, width)
    drop = width - RECIP_INDEX_BITS
    index = round_shift(v << k, drop)
    return be.rom(RECIP_ROM, index - (1 << (RECIP_INDEX_BITS - 1))), k


def rsqrt_kernel(u, be):
    """Reciprocal square root of ``1 <= u < 2**LN_VAR_BITS`` (40 bits) by clz and ``RSQRT_ROM``.

    Returns ``(r, h)`` with ``1 / sqrt(u) ~= r * 2**(h - 19 - RSQRT_FRAC_BITS)``:
    ``h = clz(u) >> 1`` (5 bits), ``u << 2h`` in ``[2**38, 2**40)`` (40 bits), its top
    ``RSQRT_INDEX_BITS`` bits rounded (41 bits before the shift), ``r`` a 16-bit
    word.  Relative error at most about 2**-11.
    """
    h = be.clz(u, LN_VAR_BITS) >> 1
    drop = LN_VAR_BITS - RSQRT_INDEX_BITS
    index = round_shift(u << (h << 1), drop)
    return be.rom(RSQRT_ROM, index - (1 << (RSQRT_INDEX_BITS - 2))), h


# ---- input checks -----------------------------------------------------------------------

def _checked_int8(x, name: str) -> np.ndarray:
    """``x`` as an array of int8 values (not converted); ValueError naming the array otherwise."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold int8 values, not dtype {a.dtype}")
    if a.dtype != np.int8 and a.size and (a.min() < INT8_MIN or a.max() > INT8_MAX):
        raise ValueError(f"{name} must hold int8 values, found {a.min()}..{a.max()}")
    return a


def _int8(x, name: str) -> np.ndarray:
    """``x`` (int8 values) as int64, the kernels' working type."""
    return _checked_int8(x, name).astype(np.int64)


#: Elements per block of a row operator: blocks that stay in cache run ~8x faster
#: than whole tensors (measured on softmax over 16384 x 256).
_BLOCK_ELEMENTS = 1 << 16


def _elementwise(kernel: Callable, inputs: dict, params: tuple, be) -> np.ndarray:
    """int8 ``kernel(*inputs, *params)`` over the broadcast ``inputs`` (named int8 arrays), in blocks."""
    arrays = np.broadcast_arrays(*(_checked_int8(v, name) for name, v in inputs.items()))
    flat = [a.reshape(-1) for a in arrays]
    out = np.empty(flat[0].shape, np.int8)
    for i in range(0, out.size, _BLOCK_ELEMENTS):
        out[i:i + _BLOCK_ELEMENTS] = be.run(kernel, *(f[i:i + _BLOCK_ELEMENTS].astype(np.int64) for f in flat),
                                            *params)
    return out.reshape(arrays[0].shape)


def _by_rows(x, name: str, per_block: Callable, limit: int = MAX_ROW) -> np.ndarray:
    """int8 ``per_block(rows)`` of the rows of ``x`` (last axis, 1..``limit``), a block of rows at a time."""
    a = _checked_int8(x, name)
    if a.ndim == 0 or not 1 <= a.shape[-1] <= limit:
        raise ValueError(f"{name} needs a last axis of length 1..{limit}, got shape {a.shape}")
    rows = a.reshape(-1, a.shape[-1])
    out = np.empty(rows.shape, np.int8)
    step = max(1, _BLOCK_ELEMENTS // rows.shape[1])
    for r0 in range(0, rows.shape[0], step):
        out[r0:r0 + step] = per_block(rows[r0:r0 + step].astype(np.int64))
    return out.reshape(a.shape)


def _hwc(x, name: str) -> np.ndarray:
    a = _int8(x, name)
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"{name} must be a non-empty H x W x C tensor, got shape {a.shape}")
    return a


def _check_int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


def _check_ranges(params) -> None:
    """ValueError naming the first member of ``params`` outside its ``RANGES`` entry."""
    for name, (lo, hi) in params.RANGES.items():
        _check_int(getattr(params, name), name, lo, hi)


def _check_scale(s, name: str) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) \
            or not np.isfinite(s) or s <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {s!r}")
    return float(s)


def check_acc_bits(acc_bits: int) -> None:
    """ValueError unless ``acc_bits`` (an accumulator width) is an integer in 2..48."""
    if not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 48:
        raise ValueError(f"acc_bits must be an integer in 2..48, not {acc_bits!r}")


# ---- compile-time fixed point -----------------------------------------------------------

def _largest_shift(magnitude: float, limit: int, max_shift: int) -> int:
    """Largest ``s <= max_shift`` with ``round(magnitude * 2**s) <= limit`` (may be negative)."""
    if magnitude == 0:
        return max_shift
    # One above floor(log2(limit / m)): just below a power of two, m * 2**(that + 1) still rounds
    # to at most limit (m = 0.99999, limit 65535 -> 16, not 15).
    s = min(max_shift, int(np.floor(np.log2(limit / magnitude))) + 1)
    while int(_round_half_up(magnitude * 2.0 ** s)) > limit:
        s -= 1
    return s


def _multiplier(ratios: dict) -> tuple[dict, int]:
    """Unsigned ``OP_MULT_BITS``-bit multipliers sharing one shift: ``mult / 2**shift ~= ratio``.

    The shift is the largest (up to ``OP_MAX_SHIFT``) that keeps the largest
    multiplier in range, which then has 16 significant bits; a largest ratio that
    needs a negative shift, or cannot get 16 bits by shift 31, is refused by name.
    """
    name, largest = max(ratios.items(), key=lambda kv: kv[1])
    shift = _largest_shift(largest, (1 << OP_MULT_BITS) - 1, OP_MAX_SHIFT)
    if shift < 0:
        raise ValueError(f"{name} = {largest:.6g} is too large: at most {(1 << OP_MULT_BITS) - 1}")
    # the rounded multiplier: a ratio just below a power of two (0.999999) rounds up to 2**15 at the
    # shift below the one whose multiplier overflows
    if int(_round_half_up(largest * 2.0 ** shift)) < 1 << (OP_MULT_BITS - 1):
        raise ValueError(f"{name} = {largest:.6g} is too small: at least "
                         f"{2.0 ** (OP_MULT_BITS - 1 - OP_MAX_SHIFT):.6g} (every output would be 0)")
    mults = {k: int(_round_half_up(r * 2.0 ** shift)) for k, r in ratios.items()}
    return mults, shift


# ---- requantisation (MAC outputs, hw/numerics.py) ---------------------------------------

def _per_channel(v, name: str, k: int, lo: int, hi: int) -> np.ndarray:
    """``v`` (scalar or ``[k]``) as int64 ``[k]``; ValueError naming the value if out of range."""
    a = np.asarray(v)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.floor(a)):
        a = np.vectorize(int, otypes=[object])(a)
    if a.dtype.kind not in "iubO":
        raise ValueError(f"{name} must be integers, got {v!r}")
    try:
        a = np.broadcast_to(a, (k,))
    except ValueError:
        raise ValueError(f"{name} must be a scalar or have one entry per output channel "
                         f"({k}), got shape {a.shape}") from None
    for i, t in enumerate(a.tolist()):
        if not isinstance(t, int) or not lo <= int(t) <= hi:
            raise ValueError(f"{name}[{i}] = {t!r} out of range {lo}..{hi}")
    return a.astype(np.int64)


#: Ranges of the requantisation parameters (``hw/numerics.py``), inclusive.
REQUANTIZE_RANGES = {"bias": (-(1 << 31), (1 << 31) - 1), "mult": (0, (1 << MULT_BITS) - 1),
                     "shift": (0, MAX_SHIFT)}


def requantize_kernel(x, mult, shift, relu, be):
    """``relu_saturate(round_shift(x * mult, shift))``: the post-processor of :mod:`hw.numerics`.

    ``x`` is the wrapped ``acc + bias`` (``acc_bits``), ``mult`` unsigned ``MULT_BITS``,
    ``shift`` 0..``MAX_SHIFT``; the product is ``acc_bits + MULT_BITS + 1`` bits (the
    post-processor's own multiplier, not the vector unit's 24 x 16).
    """
    return relu_saturate(round_shift(x * mult, shift), relu, be)


def requantize(acc, mult, shift, relu: bool = False, *, bias=0, acc_bits: int = 32,
               be=NUMPY) -> np.ndarray:
    """int8 outputs from MAC accumulators, exactly per ``hw/numerics.py``.

    ``bias`` (int32), ``mult`` (0..2**MULT_BITS-1) and ``shift`` (0..MAX_SHIFT) are
    scalars or one entry per output channel (the last axis of ``acc``)::

        x = wrap(acc + bias, acc_bits); p = x * mult
        r = (p + 2**(shift-1)) >> shift  if shift > 0 else p   # round half up
        r = max(r, 0) if relu;  y = clamp(r, -128, 127)

    Raises
    ------
    ValueError
        Naming the offending value, for out-of-range parameters or accumulators
        that are not integers.
    """
    check_acc_bits(acc_bits)
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise ValueError(f"acc must be integers, not dtype {acc.dtype}")
    if acc.ndim == 0:
        raise ValueError("acc needs a channel axis (the last one)")
    k = acc.shape[-1]
    bias, mult, shift = (_per_channel(v, name, k, *REQUANTIZE_RANGES[name])
                         for v, name in ((bias, "bias"), (mult, "mult"), (shift, "shift")))
    if acc.size == 0:
        return np.zeros(acc.shape, np.int8)
    rows = acc.reshape(-1, k)
    out = np.empty(rows.shape, np.int8)
    step = max(1, _BLOCK_ELEMENTS // k)
    for r0 in range(0, rows.shape[0], step):
        # |x| <= 2**47, |p| < 2**63: no int64 overflow in the kernel.
        x = wrap(wrap(rows[r0:r0 + step], acc_bits) + bias, acc_bits)     # == wrap(acc + bias)
        out[r0:r0 + step] = be.run(requantize_kernel, x, mult, shift, bool(relu))
    return out.reshape(acc.shape)


# ---- add, mul, lut ----------------------------------------------------------------------

@dataclass(frozen=True)
class AddParams:
    """``y = sat8(round_shift(a * mult_a + b * mult_b, shift))``, then optional ReLU.

    Members
    -------
    mult_a, mult_b : int
        Unsigned ``OP_MULT_BITS``-bit multipliers, ``~= s_a / s_out * 2**shift``.
    shift : int
        0..``OP_MAX_SHIFT``.
    relu : bool
        Clamp negative results to 0 before saturating.
    """

    mult_a: int
    mult_b: int
    shift: int
    relu: bool = False
    #: Inclusive range of each integer member (the checks here and the RTL's ports).
    RANGES: ClassVar[dict] = {"mult_a": (0, (1 << OP_MULT_BITS) - 1), "mult_b": (0, (1 << OP_MULT_BITS) - 1),
                              "shift": (0, OP_MAX_SHIFT)}

    def __post_init__(self):
        _check_ranges(self)


@dataclass(frozen=True)
class MulParams:
    """``y = sat8(round_shift(a * b * mult, shift))``; ``mult`` unsigned 16 bit, ``shift`` 0..31."""

    mult: int
    shift: int
    RANGES: ClassVar[dict] = {"mult": (0, (1 << OP_MULT_BITS) - 1), "shift": (0, OP_MAX_SHIFT)}

    def __post_init__(self):
        _check_ranges(self)


def add_params(s_a: float, s_b: float, s_out: float, relu: bool = False) -> AddParams:
    """Multipliers of ``add`` for input scales ``s_a``, ``s_b`` and output scale ``s_out``.

    The shift is the largest keeping the larger multiplier within 16 bits, so the
    larger ratio has 16 significant bits and the smaller one as many as its size
    allows.  Refuses a ratio above 65535 or one whose largest is below 2**-16
    (every output would be 0).
    """
    s_a, s_b, s_out = (_check_scale(s, n) for s, n in ((s_a, "s_a"), (s_b, "s_b"), (s_out, "s_out")))
    m, shift = _multiplier({"s_a/s_out": s_a / s_out, "s_b/s_out": s_b / s_out})
    return AddParams(m["s_a/s_out"], m["s_b/s_out"], shift, bool(relu))


def mul_params(s_a: float, s_b: float, s_out: float) -> MulParams:
    """``mult / 2**shift ~= s_a * s_b / s_out`` with a 16-bit ``mult`` (same limits as ``add_params``)."""
    s_a, s_b, s_out = (_check_scale(s, n) for s, n in ((s_a, "s_a"), (s_b, "s_b"), (s_out, "s_out")))
    m, shift = _multiplier({"s_a*s_b/s_out": s_a * s_b / s_out})
    return MulParams(m["s_a*s_b/s_out"], shift)


def add_kernel(a, b, mult_a, mult_b, shift, relu, be):
    """``relu_saturate(round_shift(a * mult_a + b * mult_b, shift))``.

    Widths: ``a``, ``b`` 8 bits; products 24 bits (8 x 16); sum 25 bits; with the
    rounding constant (``shift <= 31``) 32 bits; result 8 bits.
    """
    return relu_saturate(round_shift(a * mult_a + b * mult_b, shift), relu, be)


def mul_kernel(a, b, mult, shift, be):
    """``saturate(round_shift(a * b * mult, shift))``.

    Widths: ``a * b`` 16 bits (8 x 8); ``* mult`` 32 bits (16 x 16); with the
    rounding constant (``shift <= 31``) 33 bits; result 8 bits.
    """
    return saturate(round_shift(a * b * mult, shift), INT8_MIN, INT8_MAX, be)


def add(a, b, p: AddParams, *, be=NUMPY) -> np.ndarray:
    """Scaled int8 sum ``sat8((a*p.mult_a + b*p.mult_b + round) >> p.shift)``, ReLU if ``p.relu``.

    ``a`` and ``b`` broadcast like numpy arrays (a bias table over windows, a
    positional constant).
    """
    return _elementwise(add_kernel, {"a": a, "b": b}, (p.mult_a, p.mult_b, p.shift, p.relu), be)


def mul(a, b, p: MulParams, *, be=NUMPY) -> np.ndarray:
    """Scaled int8 product ``sat8((a*b*p.mult + round) >> p.shift)`` (numpy broadcasting)."""
    return _elementwise(mul_kernel, {"a": a, "b": b}, (p.mult, p.shift), be)


def lut_inputs(s_in: float) -> np.ndarray:
    """The inputs a table of input scale ``s_in`` holds ``fn`` of (:func:`lut_table`): ``q * s_in`` for
    every int8 ``q``, in the table's order (float64)."""
    return np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.float64) * s_in


def lut_table(fn: Callable, s_in: float, s_out: float) -> np.ndarray:
    """The 256-entry int8 table of ``y = fn(x)``: ``table[q + 128] = sat8(round(fn(q * s_in) / s_out))``.

    ``fn`` is a float numpy function (``mapper.float_ops.gelu``, ``sigmoid``, ...);
    rounding is half up, like every run-time rounding.  A pole saturates (``1/x`` at 0, ``log``
    at 0); an input outside ``fn``'s domain (NaN: ``log`` or ``sqrt`` of a negative) takes the
    entry of the nearest input inside it, so that one quantisation step below a domain's edge
    is its edge's value.
    """
    s_in, s_out = _check_scale(s_in, "s_in"), _check_scale(s_out, "s_out")
    v = np.asarray(fn(lut_inputs(s_in)), np.float64)
    inside = ~np.isnan(v) if v.shape == (256,) else np.zeros(0, bool)
    if not inside.any():
        raise ValueError(f"fn must map 256 inputs to 256 values, some defined, got shape {v.shape}")
    nearest = np.flatnonzero(inside)
    v = v[nearest[np.abs(np.arange(256)[:, None] - nearest[None, :]).argmin(axis=1)]]
    with np.errstate(invalid="ignore"):
        return _frozen(np.clip(np.floor(v / s_out + 0.5), INT8_MIN, INT8_MAX).astype(np.int8))


def lut_index(x):
    """The entry of a table (:func:`lut_table`) that holds the result for int8 ``x``: ``x + 128``."""
    return x - INT8_MIN


def lut_kernel(x, table, be):
    """``table[x + 128]`` (:func:`lut_index`): a 256-word ROM of 8 bits; index 8 bits."""
    return be.rom(table, lut_index(x))


def lut(x, table, *, be=NUMPY) -> np.ndarray:
    """Any unary int8 -> int8 map (GELU, sigmoid, ...) as a 256-entry table lookup."""
    t = np.asarray(table)
    if t.shape != (256,) or t.dtype.kind not in "iu" or t.min() < INT8_MIN or t.max() > INT8_MAX:
        raise ValueError(f"table must be 256 int8 values, got shape {t.shape} dtype {t.dtype}")
    return _elementwise(lut_kernel, {"x": x}, (t.astype(np.int8),), be)


# ---- layernorm --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LayerNormParams:
    """Integer layernorm over rows of ``n = len(gamma)``.

    Members
    -------
    gamma : np.ndarray
        int16 ``[n]``: ``gamma_real / s_out * 2**(shift - LN_Z_FRAC)``.
    beta : np.ndarray
        int32 ``[n]``: ``beta_real / s_out * 2**shift``.
    eps : int
        ``n**2 * eps_real / s_in**2`` rounded, at least 1, below 2**39.
    shift : int
        Output shift, 1..``LN_MAX_SHIFT``.
    """

    gamma: np.ndarray
    beta: np.ndarray
    eps: int
    shift: int
    #: Inclusive ranges: of ``eps`` and ``shift``, and of every entry of ``gamma`` and ``beta``.
    RANGES: ClassVar[dict] = {"eps": (1, (1 << (LN_VAR_BITS - 1)) - 1), "shift": (1, LN_MAX_SHIFT)}
    ENTRY_RANGES: ClassVar[dict] = {"gamma": (-(1 << 15), (1 << 15) - 1), "beta": (-(1 << 31), (1 << 31) - 1)}

    def __post_init__(self):
        gamma, beta = np.asarray(self.gamma), np.asarray(self.beta)
        n = gamma.shape[0] if gamma.ndim == 1 else 0
        if not 1 <= n <= MAX_ROW or gamma.dtype.kind not in "iu" or beta.shape != gamma.shape \
                or beta.dtype.kind not in "iu":
            raise ValueError(f"gamma and beta must be integer vectors of one length 1..{MAX_ROW}, "
                             f"got shapes {gamma.shape}, {beta.shape}")
        for name, v in (("gamma", gamma), ("beta", beta)):
            lo, hi = self.ENTRY_RANGES[name]
            if v.min() < lo or v.max() > hi:
                raise ValueError(f"{name} must fit int{(hi - lo).bit_length()}, found {v.min()}..{v.max()}")
        _check_ranges(self)
        object.__setattr__(self, "gamma", _frozen(gamma.astype(np.int64)))
        object.__setattr__(self, "beta", _frozen(beta.astype(np.int64)))

    @property
    def n(self) -> int:
        """Row length."""
        return self.gamma.shape[0]


def layernorm_params(gamma, beta, eps: float, s_in: float, s_out: float) -> LayerNormParams:
    """Integer parameters of ``LayerNorm(gamma, beta, eps)`` from int8 input scale ``s_in``
    to int8 output scale ``s_out``.

    ``(x - mean) / std`` does not depend on ``s_in`` except through eps, which
    becomes ``n**2 * eps / s_in**2`` in the integer variance units.  The output
    shift is the largest that keeps ``gamma`` within int16 and ``beta`` within
    int32.  Refuses an eps that large (its square root is over 2**19.5 / n input
    steps: every output would be beta) and gamma/beta that need a shift below 1.
    """
    s_in, s_out = _check_scale(s_in, "s_in"), _check_scale(s_out, "s_out")
    g = np.asarray(gamma, np.float64) / s_out
    b = np.broadcast_to(np.asarray(beta, np.float64), g.shape) / s_out
    if g.ndim != 1 or not 1 <= g.size <= MAX_ROW or not np.all(np.isfinite(g)) or not np.all(np.isfinite(b)):
        raise ValueError(f"gamma and beta must be finite vectors of one length 1..{MAX_ROW}, "
                         f"got shapes {np.shape(gamma)}, {np.shape(beta)}")
    if isinstance(eps, bool) or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, not {eps!r}")
    n = g.size
    eps_int = max(1, int(_round_half_up(n * n * eps / (s_in * s_in))))
    if eps_int >= 1 << (LN_VAR_BITS - 1):
        raise ValueError(f"eps/s_in**2 = {eps / s_in ** 2:.6g} is too large for rows of {n}: "
                         f"below {2.0 ** (LN_VAR_BITS - 1) / n ** 2:.6g}")
    shift = min(_largest_shift(float(np.abs(g).max()), (1 << 15) - 1, LN_MAX_SHIFT - LN_Z_FRAC) + LN_Z_FRAC,
                _largest_shift(float(np.abs(b).max()), (1 << 31) - 1, LN_MAX_SHIFT))
    if shift < 1:
        raise ValueError(f"gamma/s_out up to {np.abs(g).max():.6g} and beta/s_out up to "
                         f"{np.abs(b).max():.6g} cannot be represented (output shift {shift} < 1)")
    return LayerNormParams(_round_half_up(g * 2.0 ** (shift - LN_Z_FRAC)),
                           _round_half_up(b * 2.0 ** shift), eps_int, shift)


def square_kernel(x, be):
    """``x * x`` for layernorm's sum of squares: 15 bits unsigned (8 x 8)."""
    return x * x


def layernorm_row_kernel(s1, s2, n: int, eps, be):
    """Per row: ``(r, h)`` with ``1 / sqrt(n**2 * var + eps) ~= r * 2**(h - 34)``.

    ``s1 = sum(x)`` (20 bits signed), ``s2 = sum(x*x)`` (27 bits unsigned);
    ``n**2 * var = n*s2 - s1**2`` exactly (38 bits unsigned; products below 2**40
    as two 24 x 16 multiplies each); plus ``eps`` (below 2**39): 40 bits; then
    ``rsqrt_kernel``.
    """
    a1 = be.sel(s1 < 0, -s1, s1)
    var = _mul_wide(n, s2) - _mul_wide(a1, a1)
    return rsqrt_kernel(var + eps, be)


def layernorm_element_kernel(x, s1, n: int, r, h, gamma, beta, shift, be):
    """``sat8(round_shift(z * gamma + beta, shift))`` with ``z = (x - mean) / std``.

    ``d = n*x - s1 = n * (x - mean)``: 21 bits signed (13 x 8 product);
    ``d * r``: 36 bits, formed as ``(n*x)*r - s1*r`` (two 21 x 16 products, so that no stage holds
    a difference and a product after it); ``z = round_shift(d * r, 20 - h)``: 22 bits with
    ``LN_Z_FRAC`` = 14 fraction bits (``|z| <= sqrt(n - 1) < 64``, held as ``in_bits(z, 22)``,
    the identity, so that hardware sizes the multiplier from it); ``z * gamma``: 37 bits
    (22 x 16); ``+ beta`` and the rounding constant (``shift <= 38``): 39 bits; result 8 bits.
    """
    # (n*x - s1)*r as two products: the difference before the product was one stage too deep
    z = in_bits(round_shift((n * x) * r - s1 * r, _LN_Z_SHIFT - h), LN_Z_BITS)
    return saturate(round_shift(z * gamma + beta, shift), INT8_MIN, INT8_MAX, be)


def layernorm(x, p: LayerNormParams, *, be=NUMPY) -> np.ndarray:
    """Integer layernorm over the last axis (length ``p.n``, up to 4096).

    Pass 1 accumulates ``sum(x)`` and ``sum(x*x)``; one per-row step turns them
    into ``1/std`` (``layernorm_row_kernel``); pass 2 normalises, scales by
    ``gamma``, adds ``beta`` and rounds (``layernorm_element_kernel``).  A constant
    row gives ``round(beta)`` (``eps >= 1``, so never a division by zero).
    """
    if np.ndim(x) and np.shape(x)[-1] != p.n:
        raise ValueError(f"x rows have {np.shape(x)[-1]} elements but the parameters are for {p.n}")

    def block(v):
        s1 = v.sum(axis=-1, keepdims=True)
        s2 = be.run(square_kernel, v).sum(axis=-1, keepdims=True)
        r, h = be.run(layernorm_row_kernel, s1, s2, p.n, p.eps)
        return be.run(layernorm_element_kernel, v, s1, p.n, r, h, p.gamma, p.beta, p.shift)
    return _by_rows(x, "x", block)


# ---- softmax ----------------------------------------------------------------------------

#: Output shifts a softmax may use: output scales 1/128 (probabilities up to 127/128) .. 1/16384.
SOFTMAX_OUT_SHIFTS = range(7, 15)


@dataclass(frozen=True)
class SoftmaxParams:
    """``exp_mult / 2**exp_shift ~= s_in * log2(e)``: 16-bit ``exp_mult``, ``exp_shift`` 8..31;
    the output scale is ``2**-out_shift`` (``SOFTMAX_OUT_SHIFTS``): a row whose largest probability
    stays below 1/2 keeps a bit more with 1/256, and so on (calibration chooses it)."""

    exp_mult: int
    exp_shift: int
    out_shift: int = 7
    RANGES: ClassVar[dict] = {"exp_mult": (0, (1 << OP_MULT_BITS) - 1), "exp_shift": (EXP_FRAC_BITS, OP_MAX_SHIFT),
                              "out_shift": (SOFTMAX_OUT_SHIFTS[0], SOFTMAX_OUT_SHIFTS[-1])}

    def __post_init__(self):
        _check_ranges(self)



def softmax_params(s_in: float, out_shift: int = 7) -> SoftmaxParams:
    """Fixed-point ``s_in * log2(e)`` with the largest shift up to 31 that keeps 16 bits.

    Refuses ``s_in`` above about 177 (``s_in * log2(e) >= 256``: one input step
    would already scale an exponential by 2**-256).  Below ``s_in`` ~= 1e-5 the
    multiplier has fewer than 16 significant bits, but its absolute error (2**-32)
    stays negligible.
    """
    s_in = _check_scale(s_in, "s_in")
    ratio = s_in / np.log(2.0)
    shift = _largest_shift(ratio, (1 << OP_MULT_BITS) - 1, OP_MAX_SHIFT)
    if shift < EXP_FRAC_BITS:
        raise ValueError(f"s_in = {s_in:.6g} is too large for softmax: at most "
                         f"{((1 << OP_MULT_BITS) - 1) / 2.0 ** EXP_FRAC_BITS * np.log(2.0):.6g}")
    return SoftmaxParams(int(_round_half_up(ratio * 2.0 ** shift)), shift, out_shift)


def softmax_exp_kernel(x, xmax, exp_mult, exp_shift, be):
    """``e = 2**22 * exp(s_in * (x - xmax))`` rounded, as ``2**(-t)`` from ``EXP2_ROM``.

    ``t = (xmax - x) * exp_mult``: 24 bits unsigned (8 x 16; ``xmax >= x``, so the difference
    is its own low 8 bits, which is how hardware sizes it); rounded to
    ``EXP_FRAC_BITS`` = 8 fraction bits (25 bits with the rounding constant); its
    fraction (8 bits) picks a ROM word (16 bits, scaled to 2**22: 23 bits), its
    integer part ``q`` (16 bits, clamped to 24: 5 bits) shifts the word right;
    ``e`` in ``[0, 2**22]``: 23 bits.
    """
    t = round_shift(((xmax - x) & (INT8_MAX - INT8_MIN)) * exp_mult, exp_shift - EXP_FRAC_BITS)
    q = t >> EXP_FRAC_BITS
    q = be.sel(q > SOFTMAX_E_BITS + 2, SOFTMAX_E_BITS + 2, q)     # the word is gone by then
    word = be.rom(EXP2_ROM, t & ((1 << EXP_FRAC_BITS) - 1))
    return round_shift(word << (SOFTMAX_E_BITS - EXP_ONE_BITS), q)


def softmax_out_kernel(e, r, k, out_shift, be):
    """``y = min(round(e * 2**out_shift / sum), 127)`` with ``1/sum ~= r * 2**(k - 34 - 15)``.

    ``e * r``: 38 bits (23 x 16); shift ``49 - out_shift - k`` in 23..42 (the sum is at
    least 2**22, so ``k <= 12``; ``out_shift`` 7..14); the rounding one-hot ``1 << shift``
    up to 43 bits, the rounded sum 42 bits; result 0..127 (7 bits).
    """
    y = round_shift(e * r, SOFTMAX_SUM_BITS - 1 + RECIP_FRAC_BITS - out_shift - k)
    return be.sel(y > INT8_MAX, INT8_MAX, y)


def softmax(x, p: SoftmaxParams, *, be=NUMPY) -> np.ndarray:
    """Integer softmax over the last axis (up to 4096): output scale ``2**-p.out_shift``, values 0..127.

    Pass 1 finds the row maximum; pass 2 computes ``e = 2**22 * exp(s_in*(x-max))``
    per element (``softmax_exp_kernel``) and their sum (35 bits; at least 2**22,
    the maximum's own term); one per-row step takes the reciprocal of the sum
    (``recip_kernel``: clz + ROM, no Newton step); pass 3 scales each ``e``
    (kept in a 23-bit row buffer, or recomputed) by it.  A row of equal values
    (all -128 alike) gives ``round(128 / n)``, a row of one element 127.
    """
    def block(v):
        e = be.run(softmax_exp_kernel, v, v.max(axis=-1, keepdims=True), p.exp_mult, p.exp_shift)
        r, k = be.run(recip_kernel, e.sum(axis=-1, keepdims=True), SOFTMAX_SUM_BITS)
        return be.run(softmax_out_kernel, e, r, k, p.out_shift)
    return _by_rows(x, "x", block)


# ---- resize -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ResizeAxis:
    """Fixed-point DDA of one axis of a bilinear resize.

    Output ``i`` samples source position ``(start + i * step) / 2**RESIZE_POS_FRAC``
    (the RTL adds ``step`` once per output).  Half-pixel (PyTorch ``align_corners=False``):
    ``start = round((in/out - 1) / 2 * 2**20)``, ``step = round(in/out * 2**20)``, both exact
    when ``out`` divides ``in * 2**20`` (every power-of-two ratio, and 3 -> 16, 6 -> 16 of
    UPerNet's pyramid pooling).  Align corners: ``start = 0``, ``step = round((in - 1) / (out -
    1) * 2**20)`` (0 for one output, which takes source 0).
    """

    n_in: int
    n_out: int
    start: int
    step: int

    def positions(self) -> np.ndarray:
        """The DDA's positions, one per output (``start`` plus ``i`` steps)."""
        return self.start + self.step * np.arange(self.n_out, dtype=np.int64)


def resize_axis_params(n_in: int, n_out: int, align_corners: bool = False) -> ResizeAxis:
    """The DDA start and step of a bilinear resize from ``n_in`` to ``n_out`` samples.

    Half-pixel: ``src = (dst + 0.5) * n_in / n_out - 0.5``; align corners: ``src = dst * (n_in -
    1) / (n_out - 1)`` (0 for ``n_out = 1``).  Computed exactly (fractions) and rounded half up to
    ``RESIZE_POS_FRAC`` = 20 fraction bits.
    """
    n_in = _check_int(n_in, "n_in", 1, RESIZE_MAX_IN)
    n_out = _check_int(n_out, "n_out", 1, AXIS_MAX)
    one, half = 1 << RESIZE_POS_FRAC, Fraction(1, 2)
    if align_corners:
        step = Fraction(n_in - 1, n_out - 1) * one if n_out > 1 else Fraction(0)
        return ResizeAxis(n_in, n_out, 0, math.floor(step + half))
    scale = Fraction(n_in, n_out) * one
    start, step = (scale - one) / 2, scale
    return ResizeAxis(n_in, n_out, math.floor(start + half), math.floor(step + half))


def dda_matches(start, step, n_in, n_out, hold=None, align_corners=0):
    """Whether ``(start, step)`` is ``resize_axis_params(n_in, n_out, align_corners)``'s DDA, by
    products only (the RTL builds no divider).  The step is a rounded quotient ``floor(num / den)``,
    so ``step * den <= num < (step + 1) * den``: half-pixel ``num = 2 n_in 2**20 + n_out``, ``den
    = 2 n_out``; align corners the same of ``n_in - 1`` and ``n_out - 1`` (the two modes share
    the product: only its factor ``den`` is chosen).  A half-pixel start is likewise the quotient
    of ``(n_in - n_out) 2**20 + n_out`` by ``2 n_out``; an align-corners start is 0, and so is its
    step for one output (``den = 0``: no quotient).  The negative terms and ``den`` are moved to the
    sizes' side, so each bound is a comparison of a product with a sum of the sizes.  The products
    are of the fields alone, by ``2 n_out``: align corners' ``den = 2 n_out - 2`` moves its ``-2
    step`` to the sums' side too (a subtraction and a choice before the product would be the
    deepest logic of the RTL's spatial unit).  On integers or Amaranth values; ``hold(value,
    level)`` lets the RTL register the products and the sums (level 1)."""
    from .expr import all_of, sel
    hold = hold or (lambda value, level: value)
    one = 1 << RESIZE_POS_FRAC
    gaps_in, gaps_out = sel(align_corners, n_in - 1, n_in), sel(align_corners, n_out - 1, n_out)
    den, below = 2 * gaps_out, sel(align_corners, 2 * step, 0)      # step * den = step * 2 n_out - below
    step_num, start_num = 2 * gaps_in * one + gaps_out, n_in * one + n_out - n_out * one
    step_den, start_den = hold(step * (2 * n_out), 1), hold(start * (2 * n_out), 1)
    step_fits = all_of(step_den <= hold(step_num + below, 1), hold(step_num - den + below, 1) < step_den)
    # a half-pixel DDA's den is 2 n_out: its start needs no correction
    half_pixel = all_of(step_fits, start_den <= hold(start_num, 1), hold(start_num - 2 * n_out, 1) < start_den)
    corners = all_of(start == 0, sel(n_out == 1, step == 0, step_fits))
    return sel(align_corners, corners, half_pixel)


def bilinear_axis_kernel(pos, n_in: int, be):
    """Source indices and weight of one output coordinate: ``(i0, i1, w)``.

    ``pos`` (32 bits signed) is clamped below at 0; ``i0 = pos >> 20`` (11 bits),
    ``i1 = min(i0 + 1, n_in - 1)``, ``w`` = the fraction rounded to
    ``RESIZE_WEIGHT_BITS`` = 8 bits, in ``[0, 256]`` (9 bits unsigned).
    """
    pos = be.sel(pos < 0, 0, pos)
    i0 = pos >> RESIZE_POS_FRAC
    w = round_shift(pos & ((1 << RESIZE_POS_FRAC) - 1), RESIZE_POS_FRAC - RESIZE_WEIGHT_BITS)
    return i0, be.sel(i0 < n_in - 1, i0 + 1, i0), w


def lerp_kernel(a, b, w, be):
    """``a * (256 - w) + b * w``: int8 inputs give 16 bits (8 x 9), 16-bit inputs 24 bits (16 x 9)."""
    return a * ((1 << RESIZE_WEIGHT_BITS) - w) + b * w


def bilinear_kernel(a, b, w, be):
    """The second (horizontal) interpolation and the rounding: 24 bits, then 8 bits.

    A convex combination of int8 values rounds into int8: no saturation needed (``in_bits``
    states the width for hardware).
    """
    return in_bits(round_shift(lerp_kernel(a, b, w, be), 2 * RESIZE_WEIGHT_BITS), INT8_BITS)


def resize_element_kernel(a00, a01, a10, a11, wy, wx, be):
    """One output element of a bilinear resize from its four source elements ``a<y><x>`` (``y``
    0 for row ``i0``, 1 for ``i1``; ``x`` likewise) and the two axes' weights, as
    ``_bilinear_blocks`` composes the kernels (vertical interpolation first): the rounded int8
    result (``resize_bilinear``) and the unrounded sum the class map compares (``resize_argmax``)."""
    col0, col1 = lerp_kernel(a00, a10, wy, be), lerp_kernel(a01, a11, wy, be)
    return bilinear_kernel(col0, col1, wx, be), lerp_kernel(col0, col1, wx, be)


def _axis(n_in: int, n_out: int, align_corners: bool, be):
    return be.run(bilinear_axis_kernel, resize_axis_params(n_in, n_out, align_corners).positions(), n_in)


def _bilinear_blocks(v: np.ndarray, out_h: int, out_w: int, finish: Callable, be, align_corners: bool = False):
    """Yield ``finish`` of the vertically interpolated rows of ``v``, a block of output rows at a time.

    int32 suffices: every intermediate is below 2**24 (the tests check it).
    """
    y0, y1, wy = _axis(v.shape[0], out_h, align_corners, be)
    x0, x1, wx = _axis(v.shape[1], out_w, align_corners, be)
    rows = max(1, _BLOCK_ELEMENTS // (out_w * v.shape[2]))
    v = v.astype(np.int32)
    for r0 in range(0, out_h, rows):
        sl = slice(r0, r0 + rows)
        col = be.run(lerp_kernel, v[y0[sl]], v[y1[sl]], wy[sl, None, None].astype(np.int32))
        yield finish(col[:, x0], col[:, x1], wx[None, :, None].astype(np.int32))


def resize_bilinear(x, out_h: int, out_w: int, *, align_corners: bool = False, be=NUMPY) -> np.ndarray:
    """Bilinear resize of an int8 HWC tensor (PyTorch's ``align_corners``), same scale.

    Per axis a DDA (``resize_axis_params``) gives source indices and 8-bit weights;
    the output is ``round((x00*(256-wx) + x01*wx)*(256-wy) + ...) / 2**16)`` in
    integers, exact (the correctly rounded real interpolation) for the
    power-of-two ratios the zoo uses.
    """
    v = _hwc(x, "x")
    _check_size(out_h, out_w)
    blocks = _bilinear_blocks(v, out_h, out_w, lambda a, b, w: be.run(bilinear_kernel, a, b, w), be, align_corners)
    return np.concatenate([blk.astype(np.int8) for blk in blocks], axis=0)


def resize_argmax(x, out_h: int, out_w: int, *, align_corners: bool = False, be=NUMPY) -> np.ndarray:
    """Class map of the bilinearly resized logits ``x`` (HWC, C classes): ``[out_h, out_w]``.

    Every class is interpolated as in ``resize_bilinear`` but the unrounded 24-bit
    sums are compared (ties go to the lowest class index), so rounding never
    decides a class.  ``np.uint8`` for up to 256 classes, else ``np.int16``.
    """
    v = _hwc(x, "x")
    _check_size(out_h, out_w)
    dtype = _class_dtype(v.shape[2])
    blocks = _bilinear_blocks(v, out_h, out_w, lambda a, b, w: _argmax(be.run(lerp_kernel, a, b, w)), be,
                              align_corners)
    return np.concatenate([blk.astype(dtype) for blk in blocks], axis=0)


def _check_size(out_h, out_w) -> None:
    _check_int(out_h, "out_h", 1, AXIS_MAX)
    _check_int(out_w, "out_w", 1, AXIS_MAX)


def floor_counter_kernel(q, r, q_step: int, r_step: int, n_out: int, be):
    """One step ``i -> i + 1`` of ``q = floor(i * n_in / n_out)``, ``r = i * n_in - q * n_out``.

    ``q_step = n_in // n_out`` and ``r_step = n_in % n_out`` are compile-time
    constants; ``q`` up to ``n_in <= 8192`` (14 bits), ``r`` below ``2 * n_out <= 2**14``
    (14 bits).
    """
    q, r = q + q_step, r + r_step
    over = r >= n_out
    return be.sel(over, q + 1, q), be.sel(over, r - n_out, r)


def ceil_kernel(q, r, be):
    """``ceil(i * n_in / n_out)`` from the counter: ``q + (r > 0)``."""
    return be.sel(r > 0, q + 1, q)


def _floor_counters(n_in: int, n_out: int, be) -> tuple[np.ndarray, np.ndarray]:
    """``floor(i * n_in / n_out)`` and the remainders for ``i = 0 .. n_out``, by counting."""
    q, r = np.zeros(n_out + 1, np.int64), np.zeros(n_out + 1, np.int64)
    for i in range(n_out):
        q[i + 1], r[i + 1] = be.run(floor_counter_kernel, q[i], r[i], n_in // n_out, n_in % n_out, n_out)
    return q, r


def nearest_indices(n_in: int, n_out: int, *, be=NUMPY) -> np.ndarray:
    """Source index ``floor(i * n_in / n_out)`` of each of ``n_out`` outputs (nearest resize)."""
    _check_int(n_in, "n_in", 1, AXIS_MAX)
    _check_int(n_out, "n_out", 1, AXIS_MAX)
    return _floor_counters(n_in, n_out, be)[0][:-1]


def resize_nearest(x, out_h: int, out_w: int, *, be=NUMPY) -> np.ndarray:
    """Nearest resize (PyTorch ``mode="nearest"``): source ``floor(dst * in / out)``, a gather.

    The source indices come from a counter (``floor_counter_kernel``), in exact
    integers (PyTorch computes ``dst * (in/out)`` in float, which agrees for every
    ratio whose float is exact, the zoo's included).
    """
    v = _hwc(x, "x")
    _check_size(out_h, out_w)
    return v[nearest_indices(v.shape[0], out_h, be=be)][:, nearest_indices(v.shape[1], out_w, be=be)] \
        .astype(np.int8)


# ---- argmax -----------------------------------------------------------------------------

def _class_dtype(n: int):
    if n > 1 << 15:
        raise ValueError(f"argmax over {n} classes: at most {1 << 15}")
    return np.uint8 if n <= 256 else np.int16


def argmax_kernel(best, best_i, v, i, be):
    """One step of a running argmax: a strictly greater value wins, so ties keep the lowest index."""
    better = v > best
    return be.sel(better, v, best), be.sel(better, i, best_i)


def _argmax(v: np.ndarray) -> np.ndarray:
    # numpy's argmax returns the first maximum: the fold of argmax_kernel over the axis.
    return np.argmax(v, axis=-1)


def argmax(x) -> np.ndarray:
    """Index of the largest element over the last axis (ties: lowest index); uint8 up to 256 classes, else int16."""
    v = _int8(x, "x")
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(f"x needs a non-empty last axis, got shape {v.shape}")
    return _argmax(v).astype(_class_dtype(v.shape[-1]))


# ---- pooling ----------------------------------------------------------------------------

def _pair(v, name: str, lo: int) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an integer or a pair, not {v!r}")
    return tuple(_check_int(e, name, lo, 1 << 16) for e in t)


def pool_out_count(n: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, ceil_mode: bool = False) -> int:
    """Windows along one axis by PyTorch's ``pooling_output_shape_pad_lr`` (ONNX's the same), which
    may be below 1: ``floor((n + pad_lo + pad_hi - kernel [+ stride - 1 with ceil_mode]) / stride) + 1``,
    less a last ``ceil_mode`` window that would start in the end padding.  With ``ceil_mode`` a
    window up to ``stride - 1`` longer than the padded input still gives one window."""
    span = n + pad_lo + pad_hi - kernel
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= n + pad_lo else out


def pool_out_size(n: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False) -> int:
    """Output extent of a pooling window along one axis (PyTorch's ``pooling_output_shape``):
    :func:`pool_out_count`, refused below 1 as PyTorch refuses it."""
    out = pool_out_count(n, kernel, stride, padding, padding, ceil_mode)
    if out < 1:
        longest, rule = n + 2 * padding + (stride - 1 if ceil_mode else 0), " + stride - 1" if ceil_mode else ""
        raise ValueError(f"pooling window {kernel} (stride {stride}, padding {padding}, ceil_mode {bool(ceil_mode)}) "
                         f"gives no output from an extent of {n}: at most {longest} (extent + 2*padding{rule})")
    return out


def check_pool_padding(kernel: int, padding: int) -> None:
    """PyTorch's rule, which a pooling window's start counter needs: ``0 <= padding <= kernel // 2``."""
    if not isinstance(padding, int) or isinstance(padding, bool) or not 0 <= padding <= kernel // 2:
        raise ValueError(f"padding must be 0 .. {kernel // 2} (at most half the {kernel}x{kernel} window, as "
                         f"PyTorch requires), not {padding!r}")


def pool_axis_windows(n: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False):
    """Windows of a pooling axis: ``(lo, hi, padded)`` int64 arrays, one entry per output.

    Output ``i``'s window starts at ``i*stride - padding`` (a counter stepping by
    ``stride``); ``[lo, hi)`` is its part inside the input and ``padded`` its size
    including zero padding but not beyond it (PyTorch's ``count_include_pad``
    divisor, which leaves out what ``ceil_mode`` adds past the padding).
    """
    check_pool_padding(kernel, padding)
    start = np.arange(pool_out_size(n, kernel, stride, padding, ceil_mode), dtype=np.int64) * stride - padding
    end = start + kernel
    return np.maximum(start, 0), np.minimum(end, n), np.minimum(end, n + padding) - start


def adaptive_axis_windows(n_in: int, n_out: int, *, be=NUMPY):
    """Windows of an adaptive pooling axis: ``(lo, hi)`` with ``lo = floor(i*n_in/n_out)`` and
    ``hi = ceil((i+1)*n_in/n_out)``, from a counter (``floor_counter_kernel``), never a division."""
    _check_int(n_in, "n_in", 1, AXIS_MAX)
    _check_int(n_out, "n_out", 1, AXIS_MAX)
    q, r = _floor_counters(n_in, n_out, be)
    return q[:-1], be.run(ceil_kernel, q[1:], r[1:])


def window_sums(x: np.ndarray, rows, cols) -> np.ndarray:
    """Sums of ``x`` (H x W x C, integer or float) over windows ``[rows[0][i], rows[1][i]) x
    [cols[0][j], cols[1][j])``: ``[len(rows[0]), len(cols[0]), C]``, by an integral image
    (the same sums the vector unit accumulates window by window)."""
    integral = np.zeros((x.shape[0] + 1, x.shape[1] + 1, x.shape[2]), np.result_type(x.dtype, np.int64))
    np.cumsum(np.cumsum(x, axis=0, dtype=integral.dtype), axis=1, out=integral[1:, 1:])
    (ylo, yhi), (xlo, xhi) = rows, cols
    return (integral[yhi][:, xhi] - integral[ylo][:, xhi]
            - integral[yhi][:, xlo] + integral[ylo][:, xlo])


def max_kernel(m, v, valid, be):
    """Running maximum over a window: ``v`` replaces ``m`` if valid and greater (8 bits)."""
    return be.sel(valid & (v > m), v, m)


def average_kernel(total, count, be):
    """``floor(total / count + 1/2)`` exactly, for ``1 <= count <= 2**16`` and ``|total| <= 128 * count``.

    An estimate from the reciprocal (``recip_kernel``, 17-bit count:
    ``total * r`` 40 bits, 24 x 16) is within 1 of the quotient; one remainder
    check against ``2*total + count`` (25 bits; ``q * 2 * count`` 9 x 18 bits, ``|q| <= 129``)
    corrects it.  Result 8 bits (``in_bits`` states both widths for hardware).
    """
    r, k = recip_kernel(count, POOL_COUNT_BITS, be)
    return average_by_reciprocal_kernel(total, count, r, k, be)


def average_by_reciprocal_kernel(total, count, r, k, be):
    """``average_kernel`` given the count's reciprocal ``(r, k) = recip_kernel(count,
    POOL_COUNT_BITS)``: the estimate and its correction.  Hardware that divides many sums by one
    count (a pooling's channels) computes the reciprocal once."""
    q = in_bits(round_shift(total * r, POOL_COUNT_BITS - 1 + RECIP_FRAC_BITS - k), INT8_BITS + 1)
    rem = (total << 1) + count - q * (count << 1)
    return in_bits(be.sel(rem < 0, q - 1, be.sel(rem >= count << 1, q + 1, q)), INT8_BITS)


def pool_windows(h: int, w: int, kernel, stride=None, padding=0, ceil_mode: bool = False):
    """Both axes' ``pool_axis_windows`` of an ``h x w`` input; ``kernel``, ``stride``
    (default: ``kernel``) and ``padding`` are integers or (y, x) pairs, as in PyTorch."""
    kh, kw = _pair(kernel, "kernel", 1)
    sh, sw = (kh, kw) if stride is None else _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    return pool_axis_windows(h, kh, sh, ph, ceil_mode), pool_axis_windows(w, kw, sw, pw, ceil_mode)


def _average(sums: np.ndarray, counts: np.ndarray, be) -> np.ndarray:
    if counts.max() > POOL_MAX_COUNT:
        raise ValueError(f"pooling windows of {counts.max()} elements: at most {POOL_MAX_COUNT}")
    return be.run(average_kernel, sums, counts[:, :, None]).astype(np.int8)


def maxpool2d(x, kernel, stride=None, padding=0, ceil_mode: bool = False, *, be=NUMPY) -> np.ndarray:
    """Max pooling of an int8 HWC tensor (PyTorch ``MaxPool2d``; padding never wins).

    The window's taps inside the input are visited in turn (``max_kernel``),
    starting from -128, which the window's at least one element ties or beats.
    """
    v = _hwc(x, "x")
    (ylo, yhi, _), (xlo, xhi, _) = pool_windows(*v.shape[:2], kernel, stride, padding, ceil_mode)
    m = np.full((ylo.size, xlo.size, v.shape[2]), INT8_MIN, np.int64)
    for ty in range(int((yhi - ylo).max())):
        for tx in range(int((xhi - xlo).max())):
            iy, ix = ylo + ty, xlo + tx
            valid = (iy < yhi)[:, None, None] & (ix < xhi)[None, :, None]
            tap = v[np.minimum(iy, v.shape[0] - 1)][:, np.minimum(ix, v.shape[1] - 1)]
            m = be.run(max_kernel, m, tap, valid)
    return m.astype(np.int8)


def avgpool2d(x, kernel, stride=None, padding=0, ceil_mode: bool = False,
              count_include_pad: bool = True, *, be=NUMPY) -> np.ndarray:
    """Average pooling of an int8 HWC tensor (PyTorch ``AvgPool2d``), same scale, rounded half up.

    The divisor counts zero padding if ``count_include_pad`` but never what
    ``ceil_mode`` adds beyond it; the average is exact (``average_kernel``).
    """
    v = _hwc(x, "x")
    (ylo, yhi, ypad), (xlo, xhi, xpad) = pool_windows(*v.shape[:2], kernel, stride, padding, ceil_mode)
    counts = np.outer(ypad, xpad) if count_include_pad else np.outer(yhi - ylo, xhi - xlo)
    return _average(window_sums(v, (ylo, yhi), (xlo, xhi)), counts, be)


def adaptive_avgpool2d(x, out_h: int, out_w: int, *, be=NUMPY) -> np.ndarray:
    """Adaptive average pooling (PyTorch ``AdaptiveAvgPool2d``), same scale, rounded half up.

    Window ``i`` spans ``[floor(i*in/out), ceil((i+1)*in/out))``, both from counters.
    """
    v = _hwc(x, "x")
    ylo, yhi = adaptive_axis_windows(v.shape[0], out_h, be=be)
    xlo, xhi = adaptive_axis_windows(v.shape[1], out_w, be=be)
    return _average(window_sums(v, (ylo, yhi), (xlo, xhi)), np.outer(yhi - ylo, xhi - xlo), be)
