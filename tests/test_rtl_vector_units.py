"""The vector unit's RTL (hw/rtl: ElementwiseLane, RequantizeLane, SoftmaxUnit, LayerNormUnit) against
hw/operators' operator functions, bit for bit, in Amaranth's simulator; the row units' cycles against
their documented formulas.

Element-wise operations run over every int8 input (every pair for ADD and MUL, each pair with one of
the parameter sets in turn; every pair with every set is marked slow).  Row operators run on seeded
random rows and on the corners: equal values, all -128 and single elements for softmax, constant rows
and extreme parameters for layernorm, the longest rows the zoo uses and MAX_ROW.
"""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable

from hw import operators as op
from hw import vector as vec
from hw.config import get_config
from hw.isa import VecOp
from hw.rtl.elementwise_lane import ElementwiseLane
from hw.rtl.layernorm_unit import LayerNormUnit
from hw.rtl.requantize_lane import RequantizeLane
from hw.rtl.softmax_unit import SoftmaxUnit
from mapper import float_ops as F
from rtl_sweep import check, kernel_sweep, sweep

SEED = 20250114
ADD_PARAMS = [op.add_params(0.05, 0.03, 0.07), op.add_params(0.1, 0.1, 0.01, relu=True),
              op.add_params(3.0, 1e-4, 2.0), op.add_params(2e-3, 1e-3, 1.0, relu=True),
              op.AddParams(65535, 65535, 31), op.AddParams(65535, 65535, 0, True), op.AddParams(0, 1, 0)]
MUL_PARAMS = [op.mul_params(0.05, 0.02, 0.01), op.mul_params(0.01, 0.01, 1e-5), op.MulParams(65535, 31),
              op.MulParams(65535, 0), op.MulParams(1, 31)]


def every_pair():
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    return a.ravel(), b.ravel()


@pytest.fixture(scope="module")
def zoo_rows() -> dict:
    """The longest softmax and layernorm rows of the zoo's networks at their default sizes."""
    from mapper.ir import LayerNorm, Softmax
    from mapper.workloads import MODEL_NAMES, build_model
    longest = {"softmax": 1, "layernorm": 1}
    for name in MODEL_NAMES:
        for layer in build_model(name).layers:
            if isinstance(layer, Softmax):
                longest["softmax"] = max(longest["softmax"], layer.row_len())
            elif isinstance(layer, LayerNorm):
                longest["layernorm"] = max(longest["layernorm"], layer.out_shape[2])
    return longest


# ---- ElementwiseLane --------------------------------------------------------------------------

def lane_case(a, b, cases: list) -> None:
    """Pair ``i`` runs ``cases[i % len(cases)]``, an (operation, parameters) pair; the pairs of one
    case go in one after another (the simulator is quicker when the parameter ports stay put)."""
    lane = ElementwiseLane()
    idx = np.arange(a.size) % len(cases)
    order = np.argsort(idx, kind="stable")
    a, b, idx = a[order], b[order], idx[order]
    ports = {name: np.zeros(a.size, np.int64) for name in ("op", "mult_a", "mult_b", "mult", "shift", "relu")}
    want = np.zeros(a.size, np.int64)
    for j, (code, p) in enumerate(cases):
        sel = idx == j
        ports["op"][sel] = code
        for name in type(p).RANGES if p is not None else ():
            ports[name][sel] = getattr(p, name)
        if isinstance(p, op.AddParams):
            ports["relu"][sel] = p.relu
            want[sel] = op.add(a[sel], b[sel], p)
        elif isinstance(p, op.MulParams):
            want[sel] = op.mul(a[sel], b[sel], p)
        else:
            want[sel] = a[sel]                                   # COPY
    got = kernel_sweep(lane, {"a": a, "b": b, **ports})
    check("ElementwiseLane", got["y"], want, {"a": a, "b": b, "op": ports["op"], "shift": ports["shift"]})
    assert got.last_cycle == a.size - 1 + lane.latency


def test_lane_every_pair():
    """Every int8 pair, the operations and parameter sets taking turns."""
    cases = [(VecOp.ADD, p) for p in ADD_PARAMS] + [(VecOp.MUL, p) for p in MUL_PARAMS] + [(VecOp.COPY, None)]
    lane_case(*every_pair(), cases)


@pytest.mark.slow
@pytest.mark.parametrize("case", [(VecOp.ADD, p) for p in ADD_PARAMS] + [(VecOp.MUL, p) for p in MUL_PARAMS],
                         ids=str)
def test_lane_every_pair_every_parameter_set(case):
    lane_case(*every_pair(), [case])


def test_lane_without_lut_has_no_table_and_the_same_latency():
    """The spatial unit's chain slot (``hw.vector.SPATIAL_CHAIN_OPS``): no table memory to load,
    the full lane's latency (``chain_stage_latency`` is the contract's 4 cycles a stage)."""
    full, chain = ElementwiseLane(), ElementwiseLane(ops=vec.SPATIAL_CHAIN_OPS)
    assert "table_w" in full.signature.members and "table_w" not in chain.signature.members
    assert chain.latency == full.latency
    assert "$mem" in rtlil.convert(full) and "$mem" not in rtlil.convert(chain)
    with warnings.catch_warnings():                      # the refused lane is never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=r"ops must be .* not \(<VecOp.ADD"):
            ElementwiseLane(ops=(VecOp.ADD, VecOp.MUL))
        gc.collect()


@pytest.mark.parametrize("fn,s_in,s_out", [(F.gelu, 1 / 16, 1 / 16), (F.sigmoid, 0.1, 1 / 128)])
def test_lane_lut_every_int8(fn, s_in, s_out):
    table = op.lut_table(fn, s_in, s_out)
    x = np.arange(-128, 128)
    lane = ElementwiseLane()
    got = kernel_sweep(lane, {"a": x}, {"op": VecOp.LUT, "b": 0}, tables={"table_w": table})
    check(f"LUT {fn.__name__}", got["y"], op.lut(x, table), {"x": x})


# ---- RequantizeLane ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small"])
def test_requantize_lane(cfg_name):
    cfg = get_config(cfg_name)
    rng = np.random.default_rng(SEED)
    n, top = 6000, 1 << (cfg.acc_bits - 1)
    ranges = op.REQUANTIZE_RANGES
    acc = rng.integers(-top, top, n) >> rng.integers(0, cfg.acc_bits, n)       # every magnitude
    bias = rng.integers(*ranges["bias"], n, endpoint=True) >> rng.integers(0, 32, n)
    mult = rng.integers(*ranges["mult"], n, endpoint=True)
    shift = rng.integers(*ranges["shift"], n, endpoint=True)
    relu = rng.integers(0, 2, n)
    acc[:4], bias[:4], mult[:4], shift[:4] = [-top, top - 1, -top, top - 1], ranges["bias"] * 2, \
        ranges["mult"][1], [0, 0, ranges["shift"][1], ranges["shift"][1]]
    lane = RequantizeLane(cfg)
    vec = {"acc": acc, "bias": bias, "mult": mult, "shift": shift, "relu": relu}
    got = kernel_sweep(lane, vec)
    want = np.concatenate([op.requantize(acc[relu == r][None, :], mult[relu == r], shift[relu == r], bool(r),
                                         bias=bias[relu == r], acc_bits=cfg.acc_bits)[0] for r in (0, 1)])
    order = np.concatenate([np.flatnonzero(relu == r) for r in (0, 1)])
    expected = np.empty(n, np.int64)
    expected[order] = want
    check(f"RequantizeLane {cfg_name}", got["y"], expected, vec)


# ---- row units --------------------------------------------------------------------------------

def row_stream(rows: list, passes: int, per_element: dict = None, per_row: dict = None) -> dict:
    """The stream a row unit is fed: each row ``passes`` times, ``last`` on its final element each
    time; ``per_element`` columns (e.g. gamma) follow the row's elements, ``per_row`` values (the
    parameters) are repeated over the row's passes."""
    cols = {"x": [], "last": []}
    cols |= {k: [] for k in (per_element or {})} | {k: [] for k in (per_row or {})}
    for i, row in enumerate(rows):
        for _ in range(passes):
            cols["x"].append(row)
            cols["last"].append(np.arange(len(row)) == len(row) - 1)
            for k, v in (per_element or {}).items():
                cols[k].append(v[i])
            for k, v in (per_row or {}).items():
                cols[k].append(np.full(len(row), v[i]))
    return {k: np.concatenate(v).astype(np.int64) for k, v in cols.items()}


def run_rows(unit, rows: list, passes: int, params: dict, per_element: dict = None) -> dict:
    """Feed ``rows`` to a row unit (parameters per row); check ``last`` and the cycles; return ``y``."""
    cols = row_stream(rows, passes, per_element, params)
    payload = unit.x.payload
    inputs = {k: (getattr(payload, k), v) for k, v in cols.items() if k not in params}
    inputs |= {k: (getattr(unit, k), cols[k]) for k in params}
    n_out = sum(len(r) for r in rows)
    got = sweep(unit, inputs, {"y": unit.out.y, "last": unit.out.last}, valid=unit.x.valid,
                ready=unit.x.ready, out_valid=unit.out_valid, n_out=n_out,
                max_cycles=len(cols["x"]) + len(rows) * unit.gap_cycles + unit.out_latency + 64)
    check("row ends", got["last"], np.concatenate([np.arange(len(r)) == len(r) - 1 for r in rows]), {})
    # the caller never waits: passes * n + gap_cycles per row, then the pipeline
    assert got.last_cycle == sum(passes * len(r) + unit.gap_cycles for r in rows) - 1 + unit.out_latency
    return got["y"]


def softmax_case(rows: list, params: list, max_row: int = op.MAX_ROW) -> None:
    unit = SoftmaxUnit(max_row)
    per_row = {name: np.array([getattr(p, name) for p in params]) for name in op.SoftmaxParams.RANGES}
    got = run_rows(unit, rows, 3, per_row)
    want = np.concatenate([op.softmax(np.asarray(r, np.int8), p) for r, p in zip(rows, params)])
    check("SoftmaxUnit", got, want, {})


def softmax_params_of(rng, count: int) -> list:
    scales = np.exp(rng.uniform(np.log(0.01), np.log(2.0), count))
    return [op.softmax_params(float(s), int(rng.integers(7, 15))) for s in scales]


def test_softmax_unit_random_rows():
    rng = np.random.default_rng(SEED)
    rows = [rng.integers(-128, 128, int(n)) for n in rng.integers(1, 65, 24)]
    rows += [np.minimum(rng.normal(-40, 12, 49).round(), 127).clip(-128, 127).astype(int) for _ in range(4)]
    softmax_case(rows, softmax_params_of(rng, len(rows)), max_row=64)


def test_softmax_unit_corners():
    """Equal values (all -128 alike) give round(128 / n); one element gives 127; extreme parameters."""
    rows = [np.full(n, v) for n, v in ((1, 0), (1, -128), (2, -128), (3, 127), (7, -128), (64, 5))]
    rows += [np.array([127] + [-128] * 10), np.array([-128] * 10 + [127]), np.resize([-128, 127], 33)]
    params = [op.softmax_params(1.0)] * 9
    params += [op.SoftmaxParams(65535, 8), op.SoftmaxParams(65535, 31), op.SoftmaxParams(1, 31)]
    rows += [np.arange(-128, 128, 4)] * 3
    softmax_case(rows, params, max_row=64)


def test_softmax_unit_longest_zoo_row(zoo_rows):
    """The zoo's longest row: random, and all -128."""
    rng = np.random.default_rng(SEED)
    n = zoo_rows["softmax"]
    softmax_case([rng.integers(-128, 128, n), np.full(n, -128)], [op.softmax_params(1 / 16), op.softmax_params(1.0)])


@pytest.mark.slow
def test_softmax_unit_max_row():
    """MAX_ROW: random, peaked, and all -128 (every output 0)."""
    rng = np.random.default_rng(SEED)
    rows = [rng.integers(-128, 128, op.MAX_ROW), np.minimum(rng.normal(-100, 4, op.MAX_ROW).round(), 75)
            .clip(-128, 127).astype(int), np.full(op.MAX_ROW, -128)]
    softmax_case(rows, [op.softmax_params(1 / 16), op.softmax_params(1.0), op.softmax_params(1.0)])


def layernorm_case(rows: list, params: list, max_row: int = op.MAX_ROW) -> None:
    unit = LayerNormUnit(max_row)
    per_row = {name: np.array([getattr(p, name) for p in params]) for name in op.LayerNormParams.RANGES}
    per_element = {name: [getattr(p, name) for p in params] for name in op.LayerNormParams.ENTRY_RANGES}
    got = run_rows(unit, rows, 2, per_row, per_element)
    want = np.concatenate([op.layernorm(np.asarray(r, np.int8), p) for r, p in zip(rows, params)])
    check("LayerNormUnit", got, want, {})


def layernorm_params_of(rng, n: int):
    return op.layernorm_params(rng.normal(1, 0.5, n), rng.normal(0, 0.5, n), float(rng.choice([0, 1e-6, 1e-5])),
                               float(rng.uniform(0.01, 0.2)), float(rng.uniform(1 / 32, 1 / 4)))


def test_layernorm_unit_random_rows():
    rng = np.random.default_rng(SEED)
    rows, params = [], []
    for n in rng.integers(1, 65, 16):
        mean, std = rng.uniform(-60, 60), rng.uniform(0.5, 50)
        rows.append(rng.normal(mean, std, int(n)).round().clip(-128, 127).astype(int))
        params.append(layernorm_params_of(rng, int(n)))
    layernorm_case(rows, params, max_row=64)


def test_layernorm_unit_corners():
    """Constant rows give round(beta); alternating extremes; gamma and beta at their limits."""
    n = 16
    lo, hi = op.LayerNormParams.ENTRY_RANGES["gamma"]
    blo, bhi = op.LayerNormParams.ENTRY_RANGES["beta"]
    eps_hi, shift_hi = op.LayerNormParams.RANGES["eps"][1], op.LayerNormParams.RANGES["shift"][1]
    rows = ([np.full(n, v) for v in (-128, 0, 127)]
            + [np.resize([-128, 127], n), np.full(1, 3), np.where(np.arange(n) == 3, 127, -128)]) * 2
    beta = np.linspace(-3, 3, n) / 16
    p1 = op.layernorm_params(np.ones(n), beta, 1e-5, 0.05, 1 / 16)
    p_one = op.layernorm_params(np.ones(1), [0.4], 0.0, 0.05, 1 / 16)
    p_hi = op.LayerNormParams(np.full(n, hi), np.full(n, bhi), 1, shift_hi)
    p_lo = op.LayerNormParams(np.full(n, lo), np.full(n, blo), eps_hi, 1)
    p_one_hi = op.LayerNormParams(np.full(1, hi), np.full(1, bhi), 1, shift_hi)
    params = [p1, p1, p1, p1, p_one, p1, p_hi, p_lo, p_hi, p_lo, p_one_hi, p_hi]
    layernorm_case(rows, params, max_row=n)


def test_layernorm_unit_longest_zoo_row(zoo_rows):
    rng = np.random.default_rng(SEED)
    rows = [rng.normal(10, 30, zoo_rows["layernorm"]).round().clip(-128, 127).astype(int)]
    layernorm_case(rows, [layernorm_params_of(rng, len(r)) for r in rows])


@pytest.mark.slow
def test_layernorm_unit_max_row():
    """MAX_ROW: random, alternating extremes (the largest variance), and constant."""
    rng = np.random.default_rng(SEED)
    rows = [rng.normal(10, 30, op.MAX_ROW).round().clip(-128, 127).astype(int), np.resize([-128, 127], op.MAX_ROW),
            np.full(op.MAX_ROW, -128)]
    layernorm_case(rows, [layernorm_params_of(rng, len(r)) for r in rows])


def test_row_units_refuse_bad_max_row():
    for cls in (SoftmaxUnit, LayerNormUnit):
        for bad in (0, op.MAX_ROW + 1, 2.0, True):
            with warnings.catch_warnings():              # the refused unit is never elaborated
                warnings.simplefilter("ignore", UnusedElaboratable)
                with pytest.raises(ValueError, match=f"max_row must be an integer in 1..{op.MAX_ROW}"):
                    cls(bad)
                gc.collect()


@pytest.mark.parametrize("make", [ElementwiseLane, lambda: RequantizeLane(get_config("e_small")), SoftmaxUnit,
                                  LayerNormUnit], ids=["elementwise", "requantize", "softmax", "layernorm"])
def test_units_convert_to_a_netlist(make):
    """Every unit converts (RTLIL, the path to Verilog) with its ports and memories."""
    unit = make()
    text = rtlil.convert(unit)
    for name in unit.signature.members:
        assert name in text, f"port {name} missing from the netlist"
