"""The vector executor's spatial sequencer (hw/rtl/vector_spatial.py) against the functional model.

Seeded random resizes, class maps and poolings (sizes up and down, channel counts below, at and
above the lanes, written operands rolled, cropped or with fewer channels, sources with any pitch),
resizes and poolings with a chain of element-wise stages after them (Swin's RESIZE->ADD) run in
Amaranth's simulator through ``SpatialUnit`` and through ``VectorExecutor``, their DRAM images
compared byte for byte with ``sim.vector_unit.execute_vec``'s and their cycles with the unit's
formula and the contract (``hw.timing.vec_cycles``); refusals with the functional model's code
(``cosim.accel_cases.rtl_machine``'s rule, ``hw.rtl.insn.vec_unsupported``).
"""

from __future__ import annotations

import dataclasses
import gc
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable

from hw import operators as op
from hw import vector as vec
from hw.config import get_config
from hw.isa import ErrorCode, StreamError, VecOp
from hw.rtl.buses import DRAM_READ_LATENCY, VEC_TIMING
from hw.rtl.insn import vec_unsupported
from hw.rtl.vector_descriptor import descriptor_slots
from hw.rtl.vector_executor import VectorExecutor
from hw.rtl.vector_spatial import SETUP_CYCLES, SpatialUnit, chain_stage_latency, kernel_latency
from hw.timing import VEC_FIELD_CHECK, VEC_SETUP, vec_cycles, vec_fetch_cycles
from test_rtl_vector_unit import first_difference, functional, run_on, selected_cases
from spatial_passes import ALIGNED, ALL_KINDS, POOLS, nearest_params, random_case, random_spatial, source_operand
from vec_passes import Dram, output_operand

SEED = 20261201
TINY = get_config("tiny")
#: Row lanes of the unit the random passes run on: not a power of two, so groups end part-full.
SWEEP_LANES = 3


def run_spatial(runs: list[tuple[vec.Descriptor, np.ndarray]]) -> list[dict]:
    """Each descriptor over its DRAM image (in place) on one SpatialUnit, one after the other."""
    dut = SpatialUnit(TINY, lanes=SWEEP_LANES)
    results = run_on(dut, [(dram, [(dut.desc.as_value(), descriptor_slots(d))]) for d, dram in runs])
    return [res | {"formula": dut.cycles(d)} for (d, _), res in zip(runs, results)]


#: Seeds of each kind in ``make test``; ``make regress`` runs eight.
FAST_SEEDS = 2
CASES = [(kind, seed) for kind in ALL_KINDS for seed in range(8)]
CASE_PARAMS = [pytest.param(k, s, id=f"{k}-{s}", marks=pytest.mark.slow if s >= FAST_SEEDS else ()) for k, s in CASES]


@pytest.fixture(scope="module")
def spatial_runs(request) -> dict:
    """The selected cases of CASES on one unit."""
    selected = selected_cases(request, "test_spatial_unit_writes_what_the_functional_model_writes", ("kind", "seed"),
                              CASE_PARAMS)
    passes = {}
    for kind, seed in [c for c in CASES if c in selected]:
        d, dram = random_case(np.random.default_rng([SEED, seed, ALL_KINDS.index(kind)]), kind)
        passes[kind, seed] = (d, dram, functional(d, dram))
    results = run_spatial([(d, dram) for d, dram, _ in passes.values()])
    return {key: (*run, res) for (key, run), res in zip(passes.items(), results)}


@pytest.mark.parametrize("kind,seed", CASE_PARAMS)
def test_spatial_unit_writes_what_the_functional_model_writes(spatial_runs, kind, seed):
    d, dram, want, res = spatial_runs[kind, seed]
    assert res["error"] == 0, f"{kind}: {res} for {d}"
    if not np.array_equal(dram, want):
        pytest.fail(f"{kind} seed {seed}: {first_difference(dram, want)} for {d}")


def test_spatial_unit_reads_only_inside_the_pass_extents(spatial_runs):
    """Every byte the unit reads lies in a range ``hw.vector.pass_extents`` gives its pass (what the
    simulator and the executor check against the DRAM): a pooling whose pixel's channels run as
    2**split rows reads no channel past the source's ``c``."""
    for key, (d, _, _, res) in spatial_runs.items():
        ranges = [(lo, hi) for _, touched, lo, hi in vec.pass_extents(*vec.descriptor_field_slots(d)) if touched]
        outside = sorted(a for a in res["reads"] if not any(lo <= a <= hi for lo, hi in ranges))
        assert not outside, f"{key}: reads {outside[:5]} outside {ranges} for {d}"


def test_spatial_unit_takes_its_documented_cycles(spatial_runs):
    got = {key: (res["cycles"], res["formula"]) for key, (_, _, _, res) in spatial_runs.items()}
    assert all(a == b for a, b in got.values()), got


# ---- several pixels a cycle -----------------------------------------------------------------------

#: Units whose walker hands out several output rows a cycle (``WidePixelWalker``), (lanes, walk_rows):
#: walks of two cycles of two and of three rows, one of a single cycle of four.
WIDE_UNITS = [(4, 2), (6, 3), (4, 4)]
#: The cases in ``make test``, the edges on the unit of one walk cycle: a class map (pixels not a
#: multiple of the walk, rasters narrower than it), an adaptive pooling (its floor counters composed),
#: a windowed average split into rows, a nearest resize with a chain after it; and one of each kind on
#: the unit of two walk cycles of three.  Every case of ``CASES`` on every unit is marked slow.
WIDE_FAST = {((4, 4), "class_map", 0), ((4, 4), "adaptive_pool", 1), ((4, 4), "avg_pool_chain", 2),
             ((4, 4), "nearest_chain", 3), ((6, 3), "resize", 4), ((6, 3), "max_pool", 5)}
WIDE_CASES = [pytest.param(unit, kind, seed, id=f"{unit[0]}x{unit[1]}-{kind}-{seed}",
                           marks=() if (unit, kind, seed) in WIDE_FAST else pytest.mark.slow)
              for unit in WIDE_UNITS for kind, seed in CASES]


@pytest.fixture(scope="module")
def wide_spatial_runs(request) -> dict:
    """The selected cases of WIDE_CASES run on their units, each unit's one after the other."""
    name = "test_a_walker_of_several_pixels_a_cycle_keeps_every_pass_exact"
    selected = selected_cases(request, name, ("unit", "kind", "seed"))
    kinds, out = ALL_KINDS, {}
    for unit in WIDE_UNITS:
        passes = {}
        for kind, seed in CASES:
            if (unit, kind, seed) in selected:
                d, dram = random_case(np.random.default_rng([SEED, seed, kinds.index(kind)]), kind)
                passes[kind, seed] = (d, dram, functional(d, dram))
        if passes:
            dut = SpatialUnit(TINY, lanes=unit[0], walk_rows=unit[1])
            assert dut.walk_rows == unit[1]
            results = run_on(dut, [(dram, [(dut.desc.as_value(), descriptor_slots(d))]) for d, dram, _ in passes.values()])
            out |= {(unit, *key): (*run, res | {"formula": dut.cycles(d)})
                    for (key, run), res, d in zip(passes.items(), results, (p[0] for p in passes.values()))}
    return out


@pytest.mark.parametrize("unit,kind,seed", WIDE_CASES)
def test_a_walker_of_several_pixels_a_cycle_keeps_every_pass_exact(wide_spatial_runs, unit, kind, seed):
    """Output pixels ``walk_rows`` at a time (``hw/rtl/vector_spatial_walker.py``): the image is the
    functional model's and the cycles ``spatial_cycles``' with the walk of ``lanes / walk_rows``
    cycles and the walker's setup (``hw.timing.vec_row_cycles``)."""
    d, dram, want, res = wide_spatial_runs[unit, kind, seed]
    assert res["error"] == 0, f"{unit} {kind}: {res} for {d}"
    if not np.array_equal(dram, want):
        pytest.fail(f"{unit} {kind} seed {seed}: {first_difference(dram, want)} for {d}")
    assert res["cycles"] == res["formula"], f"{unit} {kind} seed {seed}"


# ---- refusals ------------------------------------------------------------------------------------

#: An adaptive pooling's witnesses, each off by one in ``refused``.
WITNESSES = ("y_q", "y_r", "x_q", "x_r")


def refused(kind: str) -> vec.Descriptor:
    """A pass the unit refuses, built from a random resize (or pooling, for a pooling's refusals)."""
    if on_pool_image(kind):
        d, _ = pooling_refused()
        st = d.stages[0]
        if kind.startswith("nearest "):       # the same sizes, resized
            st = vec.Stage(VecOp.RESIZE, 0, vec.NONE, 1, nearest_params(7, 7, 3, 2))
        if kind == "nearest align_corners":         # a bit of bilinear resizes only
            return dataclasses.replace(d, stages=(dataclasses.replace(st, params={**st.params, "align_corners": 1}),))
        if kind == "pool raster":       # a 3x3/2 max pooling of the 7x7 source gives 3x3, not 3x2
            return dataclasses.replace(d, stages=(dataclasses.replace(st, params={
                **st.params, "mode": vec.PoolMode.MAX, "kernel": 3, "stride": 2}),))
        name, step = kind.split()[1], 1 if kind.endswith("+1") else -1
        return dataclasses.replace(d, stages=(dataclasses.replace(
            st, params={**st.params, name: st.params[name] + step}),))
    d, _ = random_spatial(np.random.default_rng([SEED, 99]), VecOp.RESIZE)
    st, src, out = d.stages[0], d.operands[0], d.operands[1]
    if kind in ("dda", "align_corners step"):
        if kind != "dda":           # the same sizes, align_corners' DDA
            st = random_spatial(np.random.default_rng([SEED, 99]), VecOp.RESIZE, align=True)[0].stages[0]
        return dataclasses.replace(d, stages=(dataclasses.replace(
            st, params={**st.params, "x_step": st.params["x_step"] + 1}),))
    if kind == "rolled source":
        return dataclasses.replace(d, operands=(dataclasses.replace(src, x=dataclasses.replace(
            src.x, start=1, wrap=src.x.n + 1)), out))
    # (a chain reading what the spatial stage writes is refused before the unit starts, DATA:
    # hw.vector.overlapping_writes, tests/test_rtl_vector_unit.py's "later stage" case)
    if kind == "chain of a table":              # a LUT's table is not loaded by the spatial unit
        return dataclasses.replace(d, stages=(st, vec.Stage(VecOp.LUT, vec.PREV, vec.NONE, 1, {"table": 0})))
    # (an output repeating fewer channels than the source is refused before the unit starts, DATA:
    # it reaches a byte twice, hw.vector.overlapping_writes; the unit's UNSUPPORTED rule stays behind it)
    if kind == "output raster":
        return dataclasses.replace(d, operands=(src, dataclasses.replace(out, x=dataclasses.replace(
            out.x, n=out.x.n + 1, wrap=out.x.n + 1, valid=0, win=0))))
    raise AssertionError(kind)


def adaptive_pooling(key: int, n_in: tuple, n_out: tuple, c: int, split: int) -> tuple[vec.Descriptor, np.ndarray]:
    """An adaptive pooling of an ``n_in`` (y, x) source of ``c`` channels to ``n_out``, its
    witnesses ``n_in div n_out`` and ``n_in mod n_out``, and its image."""
    rng = np.random.default_rng([SEED, key])
    dram = Dram(rng)
    src = source_operand(dram, rng, *n_in, c)
    out = output_operand(dram, rng, *n_out, c)
    witnesses = {f"{a}_{k}": v for a, i, o in zip("yx", n_in, n_out) for k, v in zip("qr", divmod(i, o))}
    params = {"mode": vec.PoolMode.ADAPTIVE_AVG, "kernel": 0, "stride": 0, "padding": 0, "ceil_mode": 0,
              "count_include_pad": 0, **witnesses, "split": split}
    return vec.Descriptor(*n_out, c, (src, out), (vec.Stage(VecOp.POOL, 0, vec.NONE, 1, params),)), dram.image()


def pooling_refused() -> tuple[vec.Descriptor, np.ndarray]:
    """An adaptive pooling (7x7 to 3x2: remainders 1 and 1, no witness 0) and its image."""
    return adaptive_pooling(98, (7, 7), (3, 2), 3, split=1)


def adaptive_window_too_large() -> tuple[vec.Descriptor, np.ndarray]:
    """An adaptive pooling of a 302x643 source to 3x1, its witnesses right (remainders 2 and 0) but
    its longest window bound, ``pool_taps`` 102 x 643, above ``POOL_MAX_COUNT``: refused before a
    read (``hw.vector.adaptive_window_above``, the terms of ``q + e`` multiplied out)."""
    return adaptive_pooling(97, (302, 643), (3, 1), 1, split=0)


def refusal_case(kind: str) -> tuple[vec.Descriptor, np.ndarray]:
    """Refusal ``kind``'s descriptor and the image it runs on."""
    if kind == "adaptive window count":
        return adaptive_window_too_large()
    _, image = pooling_refused() if on_pool_image(kind) else random_spatial(np.random.default_rng([SEED, 99]),
                                                                             VecOp.RESIZE)
    return refused(kind), image


#: What the unit refuses (a chain's parameters, channels and operand rasters are
#: ``hw.vector.pass_refusals``', which the executor evaluates before the unit starts:
#: ``test_vector_executor_refuses_a_spatial_chains_bad_parameters``, ``tests/test_rtl_vector_unit.py``).
REFUSALS = {"dda": ErrorCode.DATA, "align_corners step": ErrorCode.DATA, "nearest align_corners": ErrorCode.DATA,
            "rolled source": ErrorCode.UNSUPPORTED,
            "chain of a table": ErrorCode.UNSUPPORTED,
            "output raster": ErrorCode.DATA, "pool raster": ErrorCode.DATA, "adaptive window count": ErrorCode.DATA,
            **{f"{kind} {w} {s}": ErrorCode.DATA for kind in ("adaptive", "nearest") for w in WITNESSES
               for s in ("+1", "-1")}}


def on_pool_image(kind: str) -> bool:
    """Whether refusal ``kind`` is built from ``pooling_refused`` (else from a random resize)."""
    return kind.startswith(("adaptive ", "nearest ")) or kind == "pool raster"


def functional_code(d: vec.Descriptor, dram: np.ndarray) -> ErrorCode:
    """The code ``cosim.accel_cases.rtl_machine`` gives: the functional model's, then the RTL's rule."""
    try:
        functional(d, dram)
    except StreamError as e:
        return e.code
    return ErrorCode.UNSUPPORTED if vec_unsupported(d) else ErrorCode.NONE


def test_spatial_unit_refuses_with_the_functional_models_code_and_writes_nothing():
    cases = {kind: refusal_case(kind) for kind in REFUSALS}
    images = {kind: dram.copy() for kind, (_, dram) in cases.items()}
    assert functional_code(*pooling_refused()) == ErrorCode.NONE, "the witnesses' pooling runs"
    results = run_spatial([(d, images[kind]) for kind, (d, _) in cases.items()])
    for (kind, (d, dram)), res in zip(cases.items(), results):
        assert functional_code(d, dram) == REFUSALS[kind], kind
        assert (res["error"], res["code"]) == (1, REFUSALS[kind]), f"{kind}: {res}"
        assert np.array_equal(images[kind], dram), f"{kind}: written before refusing"


def windowed_pooling(key: int, n_in: tuple, mode: str, k: int, s: int, p: int, ceil: bool, counted: bool,
                     n_out: tuple | None = None) -> tuple[vec.Descriptor, np.ndarray]:
    """A max or avg pooling of an ``n_in`` (y, x) source of 3 channels to ``n_out`` (default: the
    operator's ``pool_out_size``), each pixel's channels in two rows, and its image."""
    rng = np.random.default_rng([SEED, key])
    dram = Dram(rng)
    n_out = n_out or tuple(op.pool_out_size(n, k, s, p, ceil) for n in n_in)
    src, out = source_operand(dram, rng, *n_in, 3), output_operand(dram, rng, *n_out, 3)
    params = {"mode": getattr(vec.PoolMode, mode.upper()), "kernel": k, "stride": s, "padding": p,
              "ceil_mode": int(ceil), "count_include_pad": int(counted), "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0,
              "split": 1}
    return vec.Descriptor(*n_out, 3, (src, out), (vec.Stage(VecOp.POOL, 0, vec.NONE, 1, params),)), dram.image()


#: ``ceil_mode`` windows longer than the source, which PyTorch takes as one window (``windowed_pooling``'s
#: arguments after the key): OFA-ResNet's downsample of a 1-pixel side, padded ones, one past both axes.
LONG_WINDOWS_TAKEN = {"1x1 avg k2 s2 (OFA)": ((1, 1), "avg", 2, 2, 0, True, False),
                      "1x4 max k2 s2": ((1, 4), "max", 2, 2, 0, True, False),
                      "1x1 avg k3 s3 p1 counted": ((1, 1), "avg", 3, 3, 1, True, True),
                      "1x2 avg k4 s4 p1 counted": ((1, 2), "avg", 4, 4, 1, True, True),
                      "2x1 max k3 s3": ((2, 1), "max", 3, 3, 0, True, False)}
#: Windows PyTorch refuses (longer than the source without ``ceil_mode``, or by ``stride`` or more),
#: given a 1x1 output raster.
LONG_WINDOWS_REFUSED = {"1x1 avg k2 s2 without ceil_mode": ((1, 1), "avg", 2, 2, 0, False, False, (1, 1)),
                        "1x1 max k3 s2": ((1, 1), "max", 3, 2, 0, True, False, (1, 1)),
                        "2x1 avg k6 s4 p0": ((2, 1), "avg", 6, 4, 0, True, True, (1, 1))}


def test_spatial_unit_takes_a_ceil_mode_window_longer_than_its_input():
    """Windows of ``LONG_WINDOWS_TAKEN`` are clamped to the source (``hw.vector.pool_axis_fits``
    lets them through): byte for byte the functional model's, in the unit's cycles; those of
    ``LONG_WINDOWS_REFUSED`` are refused by both (DATA, the pooling rule), nothing written."""
    cases = {name: windowed_pooling(i, *args) for i, (name, args) in
             enumerate({**LONG_WINDOWS_TAKEN, **LONG_WINDOWS_REFUSED}.items())}
    wants = {}
    for name, (d, dram) in cases.items():
        try:
            wants[name] = functional(d, dram)
        except StreamError as e:
            assert name in LONG_WINDOWS_REFUSED and e.code == ErrorCode.DATA, f"{name}: {e}"
            assert str(e).endswith("a pooling window that does not give the pass's raster"), f"{name}: {e}"
            wants[name] = dram.copy()
    assert set(LONG_WINDOWS_TAKEN) <= set(wants) and len(wants) == len(cases)
    results = run_spatial([(d, dram) for d, dram in cases.values()])
    for (name, (d, dram)), res in zip(cases.items(), results):
        refused = name in LONG_WINDOWS_REFUSED
        want_code = (1, ErrorCode.DATA) if refused else (0, ErrorCode.NONE)
        assert (res["error"], res["code"]) == want_code, f"{name}: {res}"
        assert refused or res["cycles"] == res["formula"], f"{name}: {res['cycles']} cycles, formula {res['formula']}"
        if not np.array_equal(dram, wants[name]):
            pytest.fail(f"{name}: {first_difference(dram, wants[name])}")


def bad_chain_parameters() -> tuple[vec.Descriptor, np.ndarray]:
    """A resize, then an ADD of its result whose shift is beyond the operator's range, and its image."""
    d, image = random_spatial(np.random.default_rng([SEED, 99]), VecOp.RESIZE)
    st, src = d.stages[0], d.operands[0]
    bad = {"mult_a": 1 << 14, "mult_b": 1 << 14, "shift": op.AddParams.RANGES["shift"][1] + 1, "relu": 0}
    return dataclasses.replace(d, c=src.c, stages=(st, vec.Stage(VecOp.ADD, vec.PREV, 1, 1, bad))), image


def test_vector_executor_refuses_a_spatial_chains_bad_parameters(executor_runs):
    """A chain stage's parameters out of range are refused by the one rule of every live stage,
    ``hw.vector.pass_refusals`` (the executor's, before the spatial unit starts), with the
    functional model's code, and nothing is written."""
    d, dram = bad_chain_parameters()
    assert any(bool(refused) for *_, refused in vec.pass_refusals(*vec.descriptor_field_slots(d)))
    assert functional_code(d, dram) == ErrorCode.DATA
    _, _, image, want, res = executor_runs[BAD_CHAIN]
    assert (res["error"], res["code"]) == (1, ErrorCode.DATA), res
    assert np.array_equal(image, want), "written before refusing"


# ---- through the executor, against the contract ---------------------------------------------------

#: The refused pass among ``executor_runs``' (one simulation for all: its compile is most of the time).
BAD_CHAIN = "bad_chain_parameters"


@pytest.fixture(scope="module")
def executor_runs() -> dict:
    """Resizes, a class map and poolings with their descriptors in DRAM, on tiny's executor (eight
    lanes), and ``BAD_CHAIN``, which it refuses: ``{name: (kind, descriptor, image, want, result)}``."""
    rng = np.random.default_rng([SEED, 7])
    dut = VectorExecutor(TINY, max_row=64)
    runs = {}
    for i, kind in enumerate(("resize", "class_map", "resize", "nearest", *POOLS, "resize_chain", "max_pool_chain",
                              *ALIGNED)):
        d, dram = random_case(rng, kind)
        runs[f"{kind}-{i}"] = (kind, d, dram, functional(d, dram))
    d, dram = bad_chain_parameters()
    runs[BAD_CHAIN] = ("resize", d, dram, dram)
    images, wants = {}, {}
    for name, (_, d, dram, want) in runs.items():
        raw = np.frombuffer(vec.encode_descriptor(d), np.uint8)
        images[name], wants[name] = np.concatenate([dram, raw]), np.concatenate([want, raw])
    results = run_on(dut, [(images[name], [(dut.desc_addr, dram.size), (dut.fields, VEC_TIMING.const(vec.vec_fields(d)))])
                           for name, (_, d, dram, _) in runs.items()])
    return {name: (kind, d, images[name], wants[name], res | {"formula": dut.cycles(d)})
            for (name, (kind, d, _, _)), res in zip(runs.items(), results)}


def test_vector_executor_runs_spatial_passes(executor_runs):
    for name, (kind, d, image, want, res) in executor_runs.items():
        if name == BAD_CHAIN:
            continue
        assert (res["error"], res["cycles"]) == (0, res["formula"]), name
        if not np.array_equal(image, want):
            pytest.fail(f"{name}: {first_difference(image, want)}")


def test_spatial_passes_take_the_contracts_cycles(executor_runs):
    """As for the row passes (``test_vector_executor_takes_the_contracts_cycles``): the contract is
    the executor's cycles plus its worst-case allowances: the DRAM latency beyond the RTL's
    one-cycle reads, the descriptor beats a largest descriptor has more, the cycles the DRAM bytes
    take beyond the rows, and what ``VEC_SETUP`` counts beyond the largest fetch and the fields'
    check (its hand-over, check and four stage slots) less what the spatial unit takes beyond its rows (the hand-over,
    its setup, the kernel, interpolation or window fold, and the chain's stages; its read is the DRAM latency's)."""
    for name, (kind, d, _, _, res) in executor_runs.items():
        if name == BAD_CHAIN:
            continue
        f = vec.vec_fields(d)
        contract = vec_cycles(f, TINY)
        rows = vec_cycles({**f, "bytes_in": 0, "bytes_out": 0}, TINY)
        largest_fetch = vec_fetch_cycles(vec.MAX_DESCRIPTOR_BYTES)
        unit_beyond_rows = 1 + SETUP_CYCLES + kernel_latency(d.stages[0]) + (len(d.stages) - 1) * chain_stage_latency()
        setup_slack = VEC_SETUP - largest_fetch - VEC_FIELD_CHECK - unit_beyond_rows
        allowance = (TINY.dram_latency - DRAM_READ_LATENCY
                     + largest_fetch - vec_fetch_cycles(vec.descriptor_bytes(d))
                     + setup_slack + contract - rows)
        assert res["cycles"] <= contract, (kind, res["cycles"], contract)
        assert res["cycles"] + allowance == contract, (kind, res["cycles"], allowance, contract)


@pytest.mark.slow       # make test converts it within tiny's whole accelerator (tests/shared_exports.py)
def test_spatial_unit_converts_to_rtlil():
    rtlil.convert(SpatialUnit(TINY, lanes=2))


# ---- SegFormer-B0's passes ---------------------------------------------------------------------------

#: SegFormer-B0's spatial passes at 32x32 on tiny, on the DRAM image its program has when it reaches
#: them: the decoder's first resize (4x4 to 8x8, 256 channels, 2 k cycles) and the class map (8x8 to
#: 32x32, 150 classes, 19 k cycles).  ``slow``: make test's cosimulation runs both within B0's whole
#: program on tiny's accelerator.
ZOO_PASSES = {"seg_resize": (("RESIZE",), True),
              "seg_class_map": (("RESIZE_ARGMAX",), True)}


def run_zoo_pass(name: str) -> tuple:
    """B0's pass ``name`` on a spatial unit of tiny's eight row lanes (the executor's fetch and hand-over
    are the random passes' above): (expectation, RTL image, result)."""
    from cosim.vec_cases import expected_vec, zoo_specs
    dut = SpatialUnit(TINY)
    exp = expected_vec(zoo_specs("segformer_b0", 32, {name: ZOO_PASSES[name]})[0], TINY)
    image = exp.dram_in.copy()
    [result] = run_on(dut, [(image, [(dut.desc.as_value(), descriptor_slots(exp.descriptor))])], 100_000)
    return exp, image, result | {"formula": dut.cycles(exp.descriptor)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_PASSES)
def test_spatial_unit_runs_segformers_spatial_passes(name):
    """Byte for byte what the functional model writes, in the unit's cycles, within the contract
    with the executor's fetch and hand-over."""
    exp, image, res = run_zoo_pass(name)
    assert exp.code is None, f"{name}: the expectations refuse it: {exp.why}"
    assert (res["error"], res["cycles"]) == (0, res["formula"]), name
    with warnings.catch_warnings():                       # built for its cycles, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        executor = VectorExecutor(TINY, max_row=4)
        cycles = executor.cycles(exp.descriptor)
        del executor
        gc.collect()
    assert cycles <= vec_cycles(exp.stream[0].f, TINY), name
    if not np.array_equal(image, exp.dram_out):
        pytest.fail(f"{name}: {first_difference(image, exp.dram_out)}")
