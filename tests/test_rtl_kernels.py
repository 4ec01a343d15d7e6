"""The Amaranth backend of hw/operators' kernels (hw/rtl/operator_backend.py) and KernelUnit.

Each kernel runs as hardware in Amaranth's simulator and is compared bit for bit with the same
kernel on the numpy backend: exhaustively over its int8 inputs where it has only those, seeded
random and extreme values otherwise.  Long cross products are marked slow.
"""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal, UnusedElaboratable, signed, unsigned

from hw import operators as op
from hw.rtl.kernel_unit import KernelUnit, plan
from hw.rtl.operator_backend import AmaranthBackend, Table, range_shape
from rtl_sweep import check, kernel_sweep

SEED = 20250113
I8 = (op.INT8_MIN, op.INT8_MAX)
SOFTMAX = op.SoftmaxParams.RANGES
LN = op.LayerNormParams.RANGES
#: Parameter sets at the ends of their ranges and from the zoo's scales.
EXP_PARAMS = [op.SoftmaxParams(65535, 8), op.SoftmaxParams(65535, 31), op.SoftmaxParams(1, 31),
              op.softmax_params(1 / 16), op.softmax_params(0.2), op.softmax_params(177.0)]


EXP = dict(kernel=op.softmax_exp_kernel, inputs={"x": I8, "xmax": I8, "exp_mult": SOFTMAX["exp_mult"],
                                                  "exp_shift": SOFTMAX["exp_shift"]}, outputs=("e",))
E_RANGE = plan(**EXP).range("e")
RECIP = dict(kernel=op.recip_kernel, inputs={"v": (1, op.MAX_ROW * E_RANGE[1])},
             consts={"width": op.SOFTMAX_SUM_BITS}, outputs=("r", "k"))
_S1, _S2 = (op.MAX_ROW * op.INT8_MIN, op.MAX_ROW * op.INT8_MAX), (0, op.MAX_ROW * op.INT8_MIN ** 2)
LN_ROW = dict(kernel=op.layernorm_row_kernel, inputs={"s1": _S1, "s2": _S2, "n": (1, op.MAX_ROW), "eps": LN["eps"]},
              outputs=("r", "h"))
_RH = plan(**LN_ROW)
LN_ELEMENT = dict(kernel=op.layernorm_element_kernel, inputs={
    "x": I8, "s1": _S1, "n": (1, op.MAX_ROW), "r": _RH.range("r"), "h": _RH.range("h"),
    **op.LayerNormParams.ENTRY_RANGES, "shift": LN["shift"]})


def unit(spec: dict) -> KernelUnit:
    return KernelUnit(spec["kernel"], spec["inputs"], consts=spec.get("consts"), outputs=spec.get("outputs", ("y",)))


def pairs_below(limit: int = 256):
    """Every (x, xmax) of int8 values with x <= xmax."""
    x, xmax = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    keep = x <= xmax
    return x[keep], xmax[keep]


# ---- the backend ------------------------------------------------------------------------------

def test_widths_follow_from_the_kernels():
    """The widths the backend derives are those the kernels' docstrings state."""
    assert range_shape(*E_RANGE) == unsigned(op.SOFTMAX_E_BITS + 1) and E_RANGE == (0, 1 << op.SOFTMAX_E_BITS)
    r = plan(**RECIP)
    assert range_shape(*RECIP["inputs"]["v"]) == unsigned(op.SOFTMAX_SUM_BITS)
    assert r.range("r") == (int(op.RECIP_ROM.min()), int(op.RECIP_ROM.max()))
    assert range_shape(*r.range("r")) == unsigned(op.RECIP_FRAC_BITS + 1)
    assert r.range("k") == (0, op.SOFTMAX_SUM_BITS - 1)                 # v >= 1
    sq = plan(op.square_kernel, {"x": I8})
    assert sq.range("y") == (0, 1 << 14) and sq.latency == 1              # 15 bits unsigned
    assert range_shape(*_S1) == signed(20) and range_shape(*_S2) == unsigned(27)
    assert _RH.range("r") == (int(op.RSQRT_ROM.min()), int(op.RSQRT_ROM.max()))
    assert plan(**LN_ELEMENT).range("y") == I8
    add = plan(op.add_kernel, {"a": I8, "b": I8, **op.AddParams.RANGES, "relu": (0, 1)})
    assert add.range("y") == I8 and range_shape(*op.AddParams.RANGES["shift"]) == unsigned(5)


def test_dry_run_builds_no_hardware_and_agrees_with_elaboration():
    latency = plan(**EXP).latency
    m = Module()
    be = AmaranthBackend(m, "t")
    x, xmax = Signal(signed(8)), Signal(signed(8))
    mult, shift = Signal(range_shape(*SOFTMAX["exp_mult"])), Signal(range_shape(*SOFTMAX["exp_shift"]))
    e = be.run(op.softmax_exp_kernel, *(be.input(v, *r) for v, r in ((x, I8), (xmax, I8),
                                                                      (mult, SOFTMAX["exp_mult"]),
                                                                      (shift, SOFTMAX["exp_shift"]))))
    dry = AmaranthBackend(None)
    e_dry = dry.run(op.softmax_exp_kernel, *(dry.input(None, *r) for r in (I8, I8, SOFTMAX["exp_mult"],
                                                                           SOFTMAX["exp_shift"])))
    assert (e.lo, e.hi, e.stage) == (e_dry.lo, e_dry.hi, e_dry.stage)
    assert e_dry.value is None and e.stage + (not e.registered) == latency
    Fragment.get(m, None)                                # the hardware elaborates


def test_delays_are_built_once_and_stages_align():
    m = Module()
    be = AmaranthBackend(m, "t")
    a, b = be.input(Signal(signed(8)), *I8), be.input(Signal(signed(8)), *I8)
    p = a * b                                            # a multiplier ends its stage
    assert p.stage == 1 and p.registered and (p.lo, p.hi) == (-128 * 127, 128 * 128)
    assert be.at(a, 3) is be.at(a, 3) and be.at(a, 3).stage == 3
    s = p + a                                            # a is delayed to p's stage
    assert s.stage == 1 and not s.registered
    assert (a * a).lo == 0                               # a square is never negative
    with pytest.raises(ValueError, match="stage 1 cannot be used in stage 0"):
        be.at(p, 0)
    Fragment.get(m, None)


def test_sel_narrows_what_it_passes():
    be = AmaranthBackend(None)
    x = be.input(None, -(1 << 30), 1 << 30)
    assert (lambda y: (y.lo, y.hi))(op.saturate(x, op.INT8_MIN, op.INT8_MAX, be)) == I8
    relu = be.input(None, 0, 1)
    y = op.relu_saturate(x, relu, be)
    assert (y.lo, y.hi) == I8
    q = be.sel(x > 24, 24, x)
    assert (q.lo, q.hi) == (-(1 << 30), 24)
    a = be.sel(x < 0, -x, x)                             # |x|
    assert (a.lo, a.hi) == (0, 1 << 30)
    assert be.sel(1, x, 0) is x                          # a constant condition picks a side


def test_round_shift_of_a_variable_amount_stays_narrow():
    be = AmaranthBackend(None)
    x, s = be.input(None, 0, (1 << 22)), be.input(None, 0, 24)
    y = op.round_shift(x, s)
    assert (y.lo, y.hi) == (0, 1 << 22)                  # not 2**22 + 2**23


def test_backend_refuses_what_hardware_cannot_do():
    be = AmaranthBackend(None)
    x = be.input(None, -5, 5)
    with pytest.raises(TypeError, match="branched"):
        be.run(lambda v, be: v if v > 0 else -v, x)
    with pytest.raises(ValueError, match="may be negative"):
        be.run(lambda v, be: 1 << v, x)
    with pytest.raises(TypeError, match="an int or an HwValue"):
        x + 0.5
    with pytest.raises(ValueError, match="another backend"):
        x + AmaranthBackend(None).input(None, 0, 1)
    with pytest.raises(TypeError, match="Module or None"):
        AmaranthBackend("m")
    with warnings.catch_warnings():                      # the refused units are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="takes"):
            KernelUnit(op.square_kernel, {"y": I8})
        with pytest.raises(ValueError, match=r"port names \['m'\] are used twice"):
            KernelUnit(op.max_kernel, {"m": I8, "v": I8, "valid": (0, 1)}, outputs=("m",))
        gc.collect()


# ---- kernels as hardware against the same kernels on numpy ----------------------------------

def _cycle(params: list, n: int) -> dict:
    """Parameter vectors of length ``n`` cycling through ``params`` (dataclasses with RANGES)."""
    idx = np.arange(n) % len(params)
    return {name: np.array([getattr(p, name) for p in params])[idx] for name in type(params[0]).RANGES}


def _exp_case(x, xmax, params):
    u = unit(EXP)
    vec = {"x": x, "xmax": xmax, **_cycle(params, len(x))}
    vec = {k: v for k, v in vec.items() if k != "out_shift"}
    got = kernel_sweep(u, vec)
    want = op.NUMPY.run(op.softmax_exp_kernel, x, xmax, vec["exp_mult"], vec["exp_shift"])
    check("softmax_exp_kernel", got["e"], want, vec)
    assert got.last_cycle == len(x) - 1 + u.latency


def test_softmax_exp_kernel_every_pair():
    """Every (x, xmax) with x <= xmax, each with one of the parameter sets in turn."""
    _exp_case(*pairs_below(), EXP_PARAMS)


@pytest.mark.slow
@pytest.mark.parametrize("p", EXP_PARAMS, ids=str)
def test_softmax_exp_kernel_every_pair_every_parameter_set(p):
    _exp_case(*pairs_below(), [p])


def recip_operands(rng) -> np.ndarray:
    """Softmax row sums: log-uniform over [2**22, 2**35), powers of two and their neighbours,
    values at the ROM index's rounding ties."""
    v = np.exp2(rng.uniform(22, op.SOFTMAX_SUM_BITS, 3000)).astype(np.int64)
    p2 = np.array([1 << b for b in range(22, op.SOFTMAX_SUM_BITS)], np.int64)
    ties = (np.arange(512, 1024, 7, dtype=np.int64) * 2 + 1) << (op.SOFTMAX_SUM_BITS - 11)
    v = np.concatenate([v, p2, p2 - 1, p2 + 1, ties, [1, 2, 3, (1 << op.SOFTMAX_SUM_BITS) - 1]])
    return v[(v >= 1) & (v < 1 << op.SOFTMAX_SUM_BITS)]


def test_recip_kernel():
    v = recip_operands(np.random.default_rng(SEED))
    got = kernel_sweep(unit(RECIP), {"v": v})
    r, k = op.NUMPY.run(op.recip_kernel, v, op.SOFTMAX_SUM_BITS)
    check("recip_kernel r", got["r"], r, {"v": v})
    check("recip_kernel k", got["k"], k, {"v": v})


def test_softmax_out_kernel():
    rng = np.random.default_rng(SEED)
    total = recip_operands(rng)
    e = np.minimum(rng.integers(0, 1 << op.SOFTMAX_E_BITS, total.size) * (rng.random(total.size) < 0.9),
                   total).astype(np.int64)
    e[:4] = [1 << op.SOFTMAX_E_BITS, 0, 1, (1 << op.SOFTMAX_E_BITS) - 1]
    total[:4] = 1 << op.SOFTMAX_E_BITS                   # a single element: saturates at 127
    r, k = op.NUMPY.run(op.recip_kernel, total, op.SOFTMAX_SUM_BITS)
    shifts = np.array(op.SOFTMAX_OUT_SHIFTS)[np.arange(total.size) % len(op.SOFTMAX_OUT_SHIFTS)]
    rr = plan(**RECIP)
    out = KernelUnit(op.softmax_out_kernel, {"e": E_RANGE, "r": rr.range("r"), "k": rr.range("k"),
                                             "out_shift": SOFTMAX["out_shift"]})
    vec = {"e": e, "r": r, "k": k, "out_shift": shifts}
    got = kernel_sweep(out, vec)
    check("softmax_out_kernel", got["y"], op.NUMPY.run(op.softmax_out_kernel, e, r, k, shifts), vec)


def sample_rows(rng) -> list:
    """Random rows of random lengths up to MAX_ROW, constant rows, rows alternating -128 and 127,
    one 127 among -128s, single elements."""
    rows = [rng.integers(-128, 128, int(n)) for n in rng.integers(1, op.MAX_ROW + 1, 60)]
    rows += [rng.normal(rng.uniform(-60, 60), rng.uniform(0.3, 3), 768).round().clip(-128, 127).astype(np.int64)
             for _ in range(8)]
    rows += [np.full(n, v) for n in (1, 2, 768, op.MAX_ROW) for v in (-128, 0, 127)]
    rows += [np.resize([-128, 127], n) for n in (2, 3, op.MAX_ROW - 1, op.MAX_ROW)]
    return rows + [np.where(np.arange(op.MAX_ROW) == 5, 127, -128)]


def row_statistics(rows: list) -> dict:
    """``s1``, ``s2`` and ``n`` of each row, as layernorm's pass 1 accumulates them."""
    return {"s1": np.array([r.sum() for r in rows], np.int64), "s2": np.array([(r * r).sum() for r in rows], np.int64),
            "n": np.array([len(r) for r in rows], np.int64)}


def test_layernorm_row_kernel():
    rng = np.random.default_rng(SEED)
    stats = row_statistics(sample_rows(rng))
    m = len(stats["n"])
    eps = np.where(np.arange(m) % 3 == 0, 1, rng.integers(1, 1 << (op.LN_VAR_BITS - 1), m))
    eps[1] = (1 << (op.LN_VAR_BITS - 1)) - 1
    vec = {**stats, "eps": eps}
    got = kernel_sweep(unit(LN_ROW), vec)
    r, h = op.NUMPY.run(op.layernorm_row_kernel, stats["s1"], stats["s2"], stats["n"], eps)
    check("layernorm_row_kernel r", got["r"], r, vec)
    check("layernorm_row_kernel h", got["h"], h, vec)


def test_layernorm_element_kernel():
    rng = np.random.default_rng(SEED)
    rows = sample_rows(rng)
    stats = row_statistics(rows)
    m = len(rows)
    eps = rng.integers(1, 1 << 20, m)
    r, h = op.NUMPY.run(op.layernorm_row_kernel, stats["s1"], stats["s2"], stats["n"], eps)
    pick = np.concatenate([rng.integers(0, m, 4000), np.arange(m)])   # an element of one of the rows
    x = np.array([rows[i][rng.integers(0, len(rows[i]))] for i in pick])
    lo, hi = op.LayerNormParams.ENTRY_RANGES["gamma"]
    gamma = rng.integers(lo, hi + 1, pick.size)
    gamma[:2] = [lo, hi]
    blo, bhi = op.LayerNormParams.ENTRY_RANGES["beta"]
    beta = rng.integers(blo, bhi + 1, pick.size) >> rng.integers(0, 31, pick.size)
    shift = rng.integers(LN["shift"][0], LN["shift"][1] + 1, pick.size)
    vec = {"x": x, "s1": stats["s1"][pick], "n": stats["n"][pick], "r": r[pick], "h": h[pick],
           "gamma": gamma, "beta": beta, "shift": shift}
    got = kernel_sweep(unit(LN_ELEMENT), vec)
    want = op.NUMPY.run(op.layernorm_element_kernel, *vec.values())
    check("layernorm_element_kernel", got["y"], want, vec)


def test_square_and_lut_kernels_every_int8():
    x = np.arange(-128, 128)
    sq = KernelUnit(op.square_kernel, {"x": I8})
    check("square_kernel", kernel_sweep(sq, {"x": x})["y"], x * x, {"x": x})
    table = np.random.default_rng(SEED).integers(-128, 128, 256)
    lut = KernelUnit(op.lut_kernel, {"x": I8}, tables={"table": Table(signed(8), 256)})
    got = kernel_sweep(lut, {"x": x}, tables={"table_w": table})
    check("lut_kernel", got["y"], op.lut(x, table), {"x": x})


# ---- the resize, pooling and argmax kernels (their sequencers are not built yet) -------------------

W = (0, 1 << op.RESIZE_WEIGHT_BITS)
LERP16 = (op.INT8_MIN << op.RESIZE_WEIGHT_BITS, op.INT8_MAX << op.RESIZE_WEIGHT_BITS)
COUNT = (1, op.POOL_MAX_COUNT)
INDEX = (0, (1 << 15) - 1)                # argmax over up to 2**15 classes
SPATIAL = {
    "bilinear_axis": dict(kernel=op.bilinear_axis_kernel, inputs={
        "pos": (-(1 << 31), (1 << 31) - 1), "n_in": (1, op.RESIZE_MAX_IN)}, outputs=("i0", "i1", "w")),
    "lerp": dict(kernel=op.lerp_kernel, inputs={"a": I8, "b": I8, "w": W}),
    "bilinear": dict(kernel=op.bilinear_kernel, inputs={"a": LERP16, "b": LERP16, "w": W}),
    "average": dict(kernel=op.average_kernel, inputs={"total": (op.INT8_MIN * COUNT[1], op.INT8_MAX * COUNT[1]),
                                                      "count": COUNT}),
    "max": dict(kernel=op.max_kernel, inputs={"m": I8, "v": I8, "valid": (0, 1)}),
    "argmax": dict(kernel=op.argmax_kernel, inputs={"best": I8, "best_i": INDEX, "v": I8, "i": INDEX},
                   outputs=("new_best", "new_best_i")),
    "floor_counter": dict(kernel=op.floor_counter_kernel, inputs={
        "q": (0, op.AXIS_MAX), "r": (0, 2 * op.AXIS_MAX), "q_step": (0, op.AXIS_MAX), "r_step": (0, op.AXIS_MAX - 1),
        "n_out": (1, op.AXIS_MAX)}, outputs=("next_q", "next_r")),
    "ceil": dict(kernel=op.ceil_kernel, inputs={"q": (0, op.AXIS_MAX), "r": (0, 2 * op.AXIS_MAX)}),
}


def spatial_vectors(rng) -> dict:
    """Operands the operators give these kernels: DDA positions, interpolations, window sums and
    counts (extremes and rounding ties), running maxima, counter states."""
    n_in, n_out = rng.integers(1, op.RESIZE_MAX_IN + 1, 40), rng.integers(1, op.AXIS_MAX + 1, 40)
    pos = [(op.resize_axis_params(int(i), int(o)).positions()[::97], np.full(-(-int(o) // 97), i))
           for i, o in zip(n_in, n_out)]
    a, b = rng.integers(-128, 128, (2, 3000))
    w = rng.integers(0, W[1] + 1, 3000)
    w[:3] = [0, 1, W[1]]
    count = np.concatenate([rng.integers(1, COUNT[1] + 1, 2000), [1, 2, 3, COUNT[1] - 1, COUNT[1]] * 4])
    total = (rng.integers(-128, 128, count.size) * count + rng.integers(-count // 2, count // 2 + 1)) \
        .clip(-128 * count, 127 * count)
    total[-20:] = np.repeat([-128, 127, 0, 1], 5) * count[-20:] + np.tile([0, 0, 0, 0, 1], 4) * (count[-20:] // 2)
    q_in, o = rng.integers(1, op.AXIS_MAX + 1, (2, 2000))
    step_q, step_r = q_in // o, q_in % o
    q = rng.integers(0, op.AXIS_MAX - step_q + 1) * (rng.random(2000) < 0.5)
    r = rng.integers(0, o)
    return {
        "bilinear_axis": {"pos": np.concatenate([p for p, _ in pos]), "n_in": np.concatenate([n for _, n in pos])},
        "lerp": {"a": a, "b": b, "w": w},
        "bilinear": {"a": op.NUMPY.run(op.lerp_kernel, a, b, w), "b": op.NUMPY.run(op.lerp_kernel, b, a, w[::-1]),
                     "w": w},
        "average": {"total": total, "count": count},
        "max": {"m": a, "v": b, "valid": w & 1},
        "argmax": {"best": a, "best_i": rng.integers(0, INDEX[1] + 1, a.size), "v": np.where(w % 5, b, a),
                   "i": rng.integers(0, INDEX[1] + 1, a.size)},
        "floor_counter": {"q": q, "r": r, "q_step": step_q, "r_step": step_r, "n_out": o},
        "ceil": {"q": q, "r": r},
    }


def test_spatial_kernels():
    """Every kernel of resizing, pooling and argmax as hardware, against numpy."""
    vectors = spatial_vectors(np.random.default_rng(SEED))
    for name, spec in SPATIAL.items():
        vec = vectors[name]
        got = kernel_sweep(unit(spec), vec)
        want = op.NUMPY.run(spec["kernel"], *vec.values())
        for out, w in zip(spec.get("outputs", ("y",)), want if isinstance(want, tuple) else (want,)):
            check(f"{name}_kernel {out}", got[out], w, vec)
