"""The VEC executor's RTL (hw/rtl/vector_unit.py and its counters) against the functional model.

Each case draws a seeded random descriptor of a supported stage chain and random DRAM contents,
runs it through ``sim.vector_unit.execute_vec`` and through ``VectorUnit`` in Amaranth's
simulator (DRAM served from numpy, one-cycle reads), and compares the two DRAM images byte for
byte; the unit's cycles are compared with its own formula and, through ``VectorExecutor``, with
``hw.timing.vec_cycles``.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import re
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Fragment, Module, Signal, UnusedElaboratable, Value
from amaranth.sim import Simulator

from hw import operators as op
from hw import vector as vec
from hw.expr import vmax, vmin, wired
from hw.config import get_config
from hw.timing import (VEC_STAGE_LATENCY, VEC_WALK_ROWS, VEC_WALK_SETUP, VEC_WIDE_WALK_LANES, vec_cycles,
                       vec_fetch_cycles, vec_first_walk, vec_walk_rows)
from hw.isa import ErrorCode, StreamError, VecOp
from hw.rtl.axis_counter import AxisCounter, WideAxisCounter
from hw.rtl.buses import VEC_TIMING
from hw.rtl.accelerator import DRAM_READ_LATENCY
from hw.rtl.vector_descriptor import DESCRIPTOR, descriptor_slots, field_slots
from hw.rtl.descriptor_fetch import DescriptorFetch
from hw.rtl.vector_descriptor_check import DescriptorCheck
from hw.rtl.unit import level_held
from hw.rtl.vector_executor import VectorExecutor
from hw.rtl import vector_unit as vu
from hw.rtl.insn import vec_unsupported
from hw.rtl.vector_spatial import SpatialUnit
from hw.rtl.vector_unit import VectorUnit
from sim.vector_unit import execute_vec
from cosim.accel_cases import run_vec_as_rtl
from vec_passes import (CHAINS, IN_PLACE, Dram, add_params, any_axis, input_operand, layernorm_params, leaving_dram,
                        output_operand, random_pass, softmax_params, stage_params)

SEED = 20261130


def random_axis(rng: np.random.Generator) -> vec.Axis:
    """An axis with a random start, wrap, window split, padding and strides of both signs."""
    n = int(rng.integers(1, 12))
    wrap = int(rng.integers(1, 16))
    return vec.Axis(n, int(rng.integers(-300, 300)), start=int(rng.integers(0, wrap)), wrap=wrap,
                    valid=int(rng.integers(1, wrap + 1)), win=int(rng.integers(1, wrap + 1)),
                    s_hi=int(rng.integers(-(1 << 20), 1 << 20)))


def test_axis_counter_steps_the_offsets_of_axis_offsets():
    rng = np.random.default_rng(SEED)
    axes = [random_axis(rng) for _ in range(20)]
    dut = AxisCounter()
    got = []

    async def bench(ctx):
        for ax in axes:
            for name, value in ax.fields().items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.step, 1)
            seen = []
            for _ in range(ax.n):
                seen.append((ctx.get(dut.offset), not ctx.get(dut.padding)))
                await ctx.tick()
            ctx.set(dut.step, 0)
            got.append(seen)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for case, (ax, seen) in enumerate(zip(axes, got)):
        offsets, valid = vec.axis_offsets(ax)
        want = [(int(o) % (1 << 32), bool(v)) for o, v in zip(offsets, valid)]
        assert seen == want, f"case {case} {ax}: offsets/valid {seen} != {want}"


@pytest.mark.parametrize("max_step", [2, 3, 4])
def test_wide_axis_counter_moves_several_positions_in_one_step(max_step):
    """``WideAxisCounter``: each walker's position moves by 0 .. ``max_step`` positions a cycle, or
    restarts at a position below ``max_step``, at random (axes whose wrap and window are shorter
    than a move among them); its offsets and padding are ``axis_offsets``'."""
    rng = np.random.default_rng([SEED, max_step])
    axes = [random_axis(rng) for _ in range(20)]
    dut = WideAxisCounter(max_step, 2)
    plans = [[(int(rng.integers(0, 6)) == 0, int(rng.integers(0, max_step + 1)), int(rng.integers(0, max_step)))
              for _ in range(16)] for _ in axes]
    got = []

    async def bench(ctx):
        for ax, plan in zip(axes, plans):
            for name, value in ax.fields().items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()                 # the per-pass tables: two cycles after the fields
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.move, 0b11)
            seen = []
            for restart, d, at in plan:      # walker 1 moves as planned, walker 0 by max_step
                seen.append((ctx.get(dut.offset[1]), not ctx.get(dut.padding[1])))
                ctx.set(dut.restart, 2 * restart)
                ctx.set(dut.step_by[0], max_step)
                ctx.set(dut.step_by[1], d)
                ctx.set(dut.restart_at[1], at)
                await ctx.tick()
            seen.append((ctx.get(dut.offset[1]), not ctx.get(dut.padding[1])))
            ctx.set(dut.move, 0)
            ctx.set(dut.restart, 0)
            got.append(seen)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for case, (ax, plan, seen) in enumerate(zip(axes, plans, got)):
        i, want = 0, []
        for restart, d, at in plan + [(False, 0, 0)]:
            u = (ax.start + i) % ax.wrap
            want.append((((u % ax.win) * ax.stride + (u // ax.win) * ax.s_hi) % (1 << 32), u < ax.valid))
            i = at if restart else i + d
        assert seen == want, f"case {case} {ax}: moves {plan}"


def test_descriptor_layout_reads_the_encoded_fields():
    """``DESCRIPTOR`` over the encoded bytes gives back every field of the descriptor."""
    rng = np.random.default_rng(SEED)
    operands = [vec.Operand(int(rng.integers(0, 1 << 32)), 5, random_axis(rng), random_axis(rng), bool(k % 2))
           for k in range(3)]
    stages = (vec.Stage(VecOp.ADD, 0, 1, 2, {"mult_a": 65535, "mult_b": 3, "shift": 63, "relu": 1}),
              vec.Stage(VecOp.SOFTMAX, vec.PREV, vec.NONE, 0, {"row": 5, "heads": 1, "exp_mult": 40000,
                                                                "exp_shift": 20, "out_shift": 15}))
    d = vec.Descriptor(7, 9, 5, tuple(operands), stages)
    view = DESCRIPTOR.from_bits(descriptor_slots(d))
    assert (view.header.h, view.header.w, view.header.c, view.header.n_stages) == (7, 9, 5, 2)
    for k, o in enumerate(operands):
        want = {"base": o.base, "c": o.c, "repeat": int(o.repeat),
                **{p + n: v for p, ax in (("y_", o.y), ("x_", o.x)) for n, v in ax.fields().items()}}
        assert {n: int(getattr(view.operands[k], n)) for n in want} == want, f"operand {k}"
    for i, st in enumerate(stages):
        slot = getattr(view.stages[i], st.op.name.lower())
        got = {n: int(getattr(slot, n)) for n in ("op", "src", "src2", "out", *st.params)}
        assert got == {"op": int(st.op), "src": st.src, "src2": st.src2, "out": st.out, **st.params}, f"stage {i}"


# ---- VectorUnit against sim.vector_unit ---------------------------------------------------------

TINY = get_config("tiny")
#: Row lanes of the unit the random passes run on: fewer than the passes' rows, not a power of
#: two, so that groups end part-full (the executor's tests run tiny's own eight).
SWEEP_LANES = 3


async def serve_dram(ctx, dut, dram: np.ndarray, inputs: list[tuple], max_cycles: int) -> dict:
    """Start ``dut`` (a VectorUnit or VectorExecutor) with ``inputs`` ((signal, value)) and serve
    its DRAM ports from ``dram`` until ``done``: writes land at the clock edge, reads answer
    DRAM_READ_LATENCY (one) cycle later."""
    assert DRAM_READ_LATENCY == 1
    for signal, value in inputs:
        ctx.set(signal, value)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    cycle, overrun, reads = 0, False, set()
    while not ctx.get(dut.done):
        if cycle == max_cycles:
            raise AssertionError(f"no done after {max_cycles} cycles")
        en = ctx.get(dut.dram_wr.en)
        if en:
            addr, wdata = ctx.get(dut.dram_wr.addr), ctx.get(dut.dram_wr.data)
            for lane in range(len(dut.dram_wr.en)):
                if en >> lane & 1:
                    dram[addr[lane]] = wdata[lane]
        rdata = read_lanes(ctx, dut.dram_rd, dram, reads)
        overrun |= bool(ctx.get(dut.overrun))
        await ctx.tick()
        ctx.set(dut.dram_rd.data.as_value(), rdata)
        cycle += 1
    return {"cycles": cycle, "error": ctx.get(dut.error), "code": ctx.get(dut.error_code), "overrun": overrun,
            "reads": reads}


def read_lanes(ctx, port, dram: np.ndarray, reads: set = None) -> int:
    """The bytes the enabled lanes of read port ``port`` ask for, packed as ``port.data`` (their
    addresses added to ``reads``)."""
    en, rdata = ctx.get(port.en), 0
    if en:
        addr = ctx.get(port.addr)
        for lane in range(len(port.en)):
            if en >> lane & 1:
                rdata |= int(dram[addr[lane]]) << 8 * lane
                if reads is not None:
                    reads.add(int(addr[lane]))
    return rdata


def run_on(dut, runs: list[tuple[np.ndarray, list]], max_cycles: int = 50_000) -> list[dict]:
    """Serve each run (a DRAM image, changed in place, and the inputs that start it) on ``dut``,
    one after the other (one elaboration; the state carries over from run to run)."""
    results = []

    async def bench(ctx):
        for dram, inputs in runs:
            results.append(await serve_dram(ctx, dut, dram, inputs, max_cycles))
            await ctx.tick()                 # leave the done cycle

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def run_units(runs: list[tuple[vec.Descriptor, np.ndarray]], max_row: int = 64, lanes: int = SWEEP_LANES,
              walk_rows: int = 1) -> list[dict]:
    """Run each descriptor over its DRAM image (in place), one after the other on one VectorUnit:
    per run the cycles from start to done, and those of the unit's own formula (``formula``)."""
    dut = VectorUnit(TINY, lanes=lanes, max_row=max_row, walk_rows=walk_rows)
    results = run_on(dut, [(dram, [(dut.desc.as_value(), descriptor_slots(d))]) for d, dram in runs])
    return [res | {"formula": dut.cycles(d)} for (d, _), res in zip(runs, results)]


def functional(d: vec.Descriptor, dram: np.ndarray) -> np.ndarray:
    """The functional model's DRAM image after ``d`` (the descriptor placed after the image)."""
    raw = np.frombuffer(vec.encode_descriptor(d), np.uint8)
    image = np.concatenate([dram, raw])
    execute_vec({"desc_addr": dram.size, **vec.vec_fields(d)}, image, "test VEC", TINY.dram_bytes)
    return image[:dram.size]


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    i = int(np.flatnonzero(got != want)[0])
    return f"first differing byte {i}: RTL {got[i]:#04x} ({got[i].view(np.int8)}), functional {want[i]:#04x} " \
           f"({want[i].view(np.int8)}); {int((got != want).sum())} bytes differ"


def selected_cases(request, test_name: str, params: tuple[str, ...], cases=()) -> set[tuple]:
    """The parameters of the session's items of ``test_name`` (``make test`` leaves out the slow
    ones): what a fixture that runs every case on one unit at once has to run.  When none is
    selected (another test of the fixture run alone), the cases of ``cases`` not marked slow."""
    selected = {tuple(item.callspec.params[k] for k in params) for item in request.session.items
                if getattr(item, "originalname", None) == test_name}
    return selected or {case.values for case in cases if not any(m.name == "slow" for m in case.marks)}


#: Every chain with seed 0 in ``make test``, seeds 1 and 2 in ``make regress`` as well.
CASES = [pytest.param(chain, seed, id=f"{chain}-{seed}", marks=pytest.mark.slow if seed else ())
         for chain in CHAINS for seed in range(3)]


@pytest.fixture(scope="module")
def chain_runs(request) -> dict:
    """The selected cases of CASES run on one unit: (descriptor, RTL image, functional image, result)."""
    selected = selected_cases(request, "test_vector_unit_writes_what_the_functional_model_writes", ("chain", "seed"),
                              CASES)
    passes = {}
    for chain, seed in [case.values for case in CASES if case.values in selected]:
        rng = np.random.default_rng([SEED, seed, list(CHAINS).index(chain)])
        d, dram = random_pass(rng, CHAINS[chain], in_place=chain in IN_PLACE)
        passes[chain, seed] = (d, dram, functional(d, dram))
    results = run_units([(d, dram) for d, dram, _ in passes.values()])
    return {key: (*run, res) for (key, run), res in zip(passes.items(), results)}


@pytest.mark.parametrize("chain,seed", CASES)
def test_vector_unit_writes_what_the_functional_model_writes(chain_runs, chain, seed):
    d, dram, want, res = chain_runs[chain, seed]
    assert (res["error"], res["overrun"]) == (0, False), f"{chain}: {res} for {d}"
    assert vec_unsupported(d) is None, chain       # the accelerator's expectations say it runs
    if not np.array_equal(dram, want):
        pytest.fail(f"{chain} seed {seed}, {d}: {first_difference(dram, want)}")


def test_vector_unit_takes_its_documented_cycles(chain_runs):
    """The unit's cycles are ``VectorUnit.cycles``: tables, passes x row + gap per row, fill."""
    for (chain, seed), (_, _, _, res) in chain_runs.items():
        assert res["cycles"] == res["formula"], f"{chain} seed {seed}"


#: Units whose walker hands out several rows a cycle, (lanes, walk_rows): walks of two cycles of two
#: and of three rows, one of a single cycle of four.
WIDE_UNITS = [(4, 2), (6, 3), (4, 4)]
#: Rasters of their passes: one row; the lanes and one more (a second group of one pixel); rows not
#: a multiple of the walk; rasters narrower than the walk (several image rows a step); a softmax's
#: heads multiply the rows.
WIDE_RASTERS = {(4, 2): [(1, 1), (1, 5), (3, 3)], (6, 3): [(1, 1), (7, 1), (2, 5), (4, 2)],
                (4, 4): [(1, 1), (5, 1), (3, 3), (2, 6)]}
#: The cases in ``make test``, the edges: one row; a raster one pixel wide (each walker several image
#: rows a step) and one narrower than the walk; rows not a multiple of the walk and an image row
#: crossed within a step; the lanes and one more; a softmax's heads; two layernorms after a shorter
#: pass (the slots it does not use are emptied); in place.  Every chain on every raster is marked slow.
WIDE_FAST = {((4, 4), (1, 1), "copy"), ((4, 4), (5, 1), "softmax"), ((4, 4), (3, 3), "add_layernorm_layernorm"),
             ((4, 4), (2, 6), "add_in_place"), ((6, 3), (7, 1), "add_layernorm_layernorm"),
             ((6, 3), (2, 5), "softmax")}
WIDE_CASES = [pytest.param(unit, raster, chain, id=f"{unit[0]}x{unit[1]}-{raster[0]}x{raster[1]}-{chain}",
                           marks=() if (unit, raster, chain) in WIDE_FAST else pytest.mark.slow)
              for unit in WIDE_UNITS for raster in WIDE_RASTERS[unit] for chain in CHAINS
              if raster != (1, 1) or chain in ("copy", "softmax", "add_layernorm_layernorm")]


@pytest.fixture(scope="module")
def wide_runs(request) -> dict:
    """The selected cases of WIDE_CASES run on their units, each unit's one after the other."""
    selected = selected_cases(request, "test_a_walker_of_several_rows_a_cycle_keeps_every_pass_exact",
                              ("unit", "raster", "chain"))
    out = {}
    for unit in WIDE_UNITS:
        passes = {}
        for i, (u, raster, chain) in enumerate(case.values for case in WIDE_CASES):
            if u == unit and (u, raster, chain) in selected:
                rng = np.random.default_rng([SEED, 7, i])
                d, dram = random_pass(rng, CHAINS[chain], in_place=chain in IN_PLACE, raster=raster)
                passes[unit, raster, chain] = (d, dram, functional(d, dram))
        if passes:
            results = run_units([(d, dram) for d, dram, _ in passes.values()], lanes=unit[0], walk_rows=unit[1])
            out |= {key: (*run, res) for (key, run), res in zip(passes.items(), results)}
    return out


@pytest.mark.parametrize("unit,raster,chain", WIDE_CASES)
def test_a_walker_of_several_rows_a_cycle_keeps_every_pass_exact(wide_runs, unit, raster, chain):
    """Row lanes ``walk_rows`` at a time (``hw/rtl/vector_walker.py``): the image is the functional
    model's and the cycles ``hw.timing.vec_row_cycles``' with the walk of ``lanes / walk_rows``
    cycles and the walker's setup."""
    d, dram, want, res = wide_runs[unit, raster, chain]
    assert (res["error"], res["overrun"]) == (0, False), f"{chain}: {res} for {d}"
    if not np.array_equal(dram, want):
        pytest.fail(f"{unit} {chain} {raster}, {d}: {first_difference(dram, want)}")
    assert res["cycles"] == res["formula"], f"{unit} {chain} {raster}"


#: A nearest resize of a 1x2 source to 1x2 pixels (witnesses 1 and 0).
NEAREST_1X2 = {"mode": 1, **{f"{a}_{n}": 0 for a in "yx" for n in ("start", "step", "r")}, "y_q": 1, "x_q": 1}


#: Parameters of stages ``_refused`` does not mean to refuse (an ADD of unit factors, a softmax of rows
#: of 3 in 2 heads, a layernorm, an ADD of Q14 factors).
ADD_1 = {"mult_a": 1, "mult_b": 1, "shift": 1, "relu": 0}
GOOD_SM = {"row": 3, "heads": 2, "exp_mult": 1000, "exp_shift": 12, "out_shift": 7}
GOOD_LN = {"table": 0, "eps": 5, "shift": 10}
ADD_Q14 = {"mult_a": 1 << 14, "mult_b": 1 << 14, "shift": 14, "relu": 0}


def _parameter_refusals() -> dict:
    """Stages whose parameters, or rows, the unit refuses."""
    return {
        "add shift": [vec.Stage(VecOp.ADD, 0, 0, 1, {**ADD_1, "shift": op.OP_MAX_SHIFT + 1})],
        "softmax exp_shift": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**GOOD_SM, "exp_shift": 3})],
        "softmax row": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**GOOD_SM, "row": 4, "heads": 1})],
        "row beyond max_row": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 1, {**GOOD_SM, "row": 6, "heads": 1})],
        "repeat across rows": [vec.Stage(VecOp.ADD, 0, 2, vec.NONE, ADD_1),
                               vec.Stage(VecOp.SOFTMAX, vec.PREV, vec.NONE, 1, GOOD_SM)],
        # the unit wrote head 1's row over head 0's channels (fuzz seed 7530, case 357 of
        # vec_desc_field on small, a softmax whose written operand's repeat was set)
        "repeat across rows, written": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, 7, GOOD_SM)],
        "layernorm shift": [vec.Stage(VecOp.LAYERNORM, 0, vec.NONE, 1, {**GOOD_LN, "shift": 0})],
        # stage 0 writes its result before stage 1's parameters would be met, were they checked late
        "later layernorm shift": [vec.Stage(VecOp.ADD, 0, 0, 1, ADD_1),
                                  vec.Stage(VecOp.LAYERNORM, vec.PREV, vec.NONE, 1, {**GOOD_LN, "shift": 0})],
        "two rows": [vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, vec.NONE, GOOD_SM),
                     vec.Stage(VecOp.LAYERNORM, vec.PREV, vec.NONE, 1, GOOD_LN)],
        "three rows": [vec.Stage(VecOp.LAYERNORM, 0 if i == 0 else vec.PREV, vec.NONE, 1, GOOD_LN) for i in range(3)],
    }


def _chain_refusals() -> dict:
    """Chains whose stages disagree on channels or rasters, or that the spatial unit does not build."""
    return {
        # a resize of the 2-channel operand, then an ADD with an operand over the pass's 6 channels
        "channels disagree": [vec.Stage(VecOp.RESIZE, 2, vec.NONE, vec.NONE, NEAREST_1X2),
                              vec.Stage(VecOp.ADD, vec.PREV, 0, 1, ADD_1)],
        # the same resize, then a COPY of its 2 channels over the pass's 6 (hw.vector.pass_refusals,
        # the rule for every stage reading a previous result, COPY too)
        "copy of other channels": [vec.Stage(VecOp.RESIZE, 2, vec.NONE, vec.NONE, NEAREST_1X2),
                                   vec.Stage(VecOp.COPY, vec.PREV, vec.NONE, 1, {})],
        # the class map of the 6-channel operand, copied: class indices are no stage's input (DATA,
        # whatever the pass's c; the RTL refused it as a chain the spatial unit does not build before)
        "class map chain": [vec.Stage(VecOp.RESIZE_ARGMAX, 0, vec.NONE, vec.NONE,
                                      {f"{a}_{n}": 0 for a in "yx" for n in ("start", "step")}),
                            vec.Stage(VecOp.COPY, vec.PREV, vec.NONE, 1, {})],
        # the resize's result unread (the ADD reads operand 0): no previous result of other channels,
        # a chain the spatial unit does not build (UNSUPPORTED; DATA before the rule was pass_refusals')
        "resize result unread": [vec.Stage(VecOp.RESIZE, 2, vec.NONE, vec.NONE, NEAREST_1X2),
                                 vec.Stage(VecOp.ADD, 0, 0, 1, ADD_1)],
        # an ADD whose second operand covers 2x2 pixels, the pass 1x2
        "raster": [vec.Stage(VecOp.COPY, 0, vec.NONE, 1, {}), vec.Stage(VecOp.ADD, vec.PREV, 3, 1, ADD_1)],
        # the same after a resize: a spatial pass's later stages are pass_refusals' too
        "resize chain raster": [vec.Stage(VecOp.RESIZE, 0, vec.NONE, vec.NONE, NEAREST_1X2),
                                vec.Stage(VecOp.ADD, vec.PREV, 3, 1, ADD_1)],
        # a nearest resize (1x2 to 1x2: witnesses 1, 0) then an ADD reading the operand it writes: a
        # chain the spatial unit does not build (hw.vector.spatial_refusals), and no spatial unit here
        "resize": [vec.Stage(VecOp.RESIZE, 0, vec.NONE, vec.NONE, NEAREST_1X2),
                   vec.Stage(VecOp.ADD, vec.PREV, 1, 1, ADD_1)],
        # an ADD (a MUL after a resize) whose second operand is NONE: a malformed descriptor (the
        # simulator read operand slot 15 and failed with an IndexError: fuzz seed 1, case 36 of
        # vec_desc_field on tiny, a max pool's chain whose COPY became an ADD)
        "add without a second operand": [vec.Stage(VecOp.COPY, 0, vec.NONE, vec.NONE, {}),
                                         vec.Stage(VecOp.ADD, vec.PREV, vec.NONE, 1, ADD_1)],
        "resize then a mul without a second operand": [
            vec.Stage(VecOp.RESIZE, 0, vec.NONE, vec.NONE, NEAREST_1X2),
            vec.Stage(VecOp.MUL, vec.PREV, vec.NONE, 1, {"mult": 1 << 14, "shift": 14})],
    }


def _overlap_refusals() -> dict:
    """Results over bytes the pass reads or writes otherwise (hw.vector.overlapping_writes): the
    functional model reads a pass before it writes, the RTL streams, so only disjoint ranges have
    one outcome."""
    return {
        "result ahead of its source": [vec.Stage(VecOp.ADD, 0, 1, 4, ADD_1)],
        "result behind its source": [vec.Stage(VecOp.COPY, 4, vec.NONE, 0, {})],
        "result over its table": [vec.Stage(VecOp.LAYERNORM, 0, vec.NONE, 1, {**GOOD_LN, "table": 60})],
        "resize over its source": [vec.Stage(VecOp.RESIZE, 0, vec.NONE, 4, NEAREST_1X2)],
        # operands 5 and 6: channels 0-2 and 4-6 of a raster of 6-byte pixels, so they meet at byte 6
        "result over a slice wider than its pixel": [vec.Stage(VecOp.COPY, 5, vec.NONE, 6, {})],
        "a later stage reading an earlier one's result": [vec.Stage(VecOp.COPY, 0, vec.NONE, 1, {}),
                                                          vec.Stage(VecOp.ADD, vec.PREV, 1, 5, ADD_1)],
        # results written in place through a pattern reaching a byte twice: the functional model reads
        # the whole operand first, the RTL a pixel's bytes after an earlier pixel wrote them
        **{f"a result written in place through {how}": [vec.Stage(VecOp.ADD, 7, 0, 7, ADD_Q14)]
           for how in IN_PLACE_TWICE},
        "a result written in place through repeating channels": [vec.Stage(VecOp.ADD, 2, 0, 2, ADD_Q14)],
        # the two write in different orders: the functional model pixel after pixel, the RTL its row lanes
        **{f"a result written only, through {how}": [vec.Stage(VecOp.COPY, 0, vec.NONE, 7, {})]
           for how in WRITTEN_ONLY_TWICE},
    }


def _refused(kind: str) -> vec.Descriptor:
    """A one- or two-stage pass over 1x2x6 elements whose stage ``kind`` names what is refused."""
    plain = vec.Operand(0, 6, vec.Axis(1, 12), vec.Axis(2, 6))
    stages = {**_parameter_refusals(), **_chain_refusals(), **_overlap_refusals()}[kind]
    out = dataclasses.replace(plain, base=64)
    # a bias of 2 channels repeated across rows of 3: its channel would not restart with each row
    bias = dataclasses.replace(plain, base=128, c=2, repeat=True)
    square = vec.Operand(160, 6, vec.Axis(2, 12), vec.Axis(2, 6))
    ahead = dataclasses.replace(plain, base=2)          # operand 0's bytes 2.. and two more
    narrow, beside = dataclasses.replace(plain, base=80, c=3), dataclasses.replace(plain, base=84, c=3)
    operands = (plain, out, bias, square, ahead, narrow, beside)
    how = kind.rpartition("through ")[2]
    if how in IN_PLACE_TWICE:           # operand 7, only where named (a slot more is 4 more fetch beats)
        operands += (vec.Operand(180, 6, vec.Axis(1, 12), IN_PLACE_TWICE[how]),)
    if kind == "repeat across rows, written":       # the pass's 6 channels, repeating
        operands += (dataclasses.replace(out, repeat=True),)
    return unchecked(vec.Descriptor, h=1, w=2, c=6, operands=operands, stages=tuple(stages))


#: x axes of operand 7 of ``_refused`` by which its two pixels' 6 channels reach a byte twice.
IN_PLACE_TWICE = {"a stride 0": vec.Axis(2, 0), "pixels a byte apart": vec.Axis(2, 1),
                  "laps": vec.Axis(2, 6, wrap=1), "window blocks 3 bytes apart": vec.Axis(2, 6, win=1, s_hi=3)}
#: Those written only (not read by the pass) that were run unchecked by the functional model and the
#: unit and wrote different bytes (the window split's too: 3 bytes differ).
WRITTEN_ONLY_TWICE = ("pixels a byte apart", "window blocks 3 bytes apart")


def unchecked(cls, **fields):
    """A dataclass instance without its ``__post_init__`` check: a descriptor the mapper would not
    build (``check_descriptor`` refuses it), to send the RTL and the functional model as bytes."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


#: What the unit does not build: refused by the unit (built here for rows up to 4) with UNSUPPORTED.
REFUSED = ["resize", "two rows", "three rows", "row beyond max_row", "repeat across rows", "repeat across rows, written"]
#: What the operators refuse (``hw.vector.pass_refusals``) or the descriptor is not
#: (``descriptor_refusals``): DATA, refused before anything is written by the simulator and, before
#: its unit starts, by the executor (``executor_runs``).
REFUSED_DATA = ["add shift", "softmax exp_shift", "softmax row", "layernorm shift", "later layernorm shift",
                "channels disagree", "copy of other channels", "class map chain", "raster", "resize chain raster",
                "result ahead of its source", "result behind its source", "result over its table", "resize over its source",
                "result over a slice wider than its pixel", "a later stage reading an earlier one's result",
                "add without a second operand", "resize then a mul without a second operand",
                *(f"a result written in place through {how}" for how in (*IN_PLACE_TWICE, "repeating channels")),
                *(f"a result written only, through {how}" for how in WRITTEN_ONLY_TWICE)]
#: What the executor's spatial unit does not build: the functional model runs it, the executor
#: refuses it with UNSUPPORTED (``executor_runs``).
REFUSED_SPATIAL = ["resize result unread"]


def refused_image() -> np.ndarray:
    """The 200 bytes a ``_refused`` pass runs on."""
    return np.random.default_rng(SEED).integers(0, 256, 200, dtype=np.uint8)


@pytest.mark.parametrize("kind", REFUSED_DATA)
def test_the_simulator_refuses_before_it_writes(kind):
    """What the operators refuse in any stage is refused (DATA) before the first stage writes:
    ``execute_vec`` checks every live stage up front (``hw.vector.pass_refusals``)."""
    d, dram = _refused(kind), refused_image()
    image = np.concatenate([dram, np.frombuffer(vec.encode_descriptor(d), np.uint8)])
    before = image.copy()
    with pytest.raises(StreamError) as err:
        execute_vec({"desc_addr": dram.size, **vec.vec_fields(d)}, image, "test VEC", TINY.dram_bytes)
    assert err.value.code == ErrorCode.DATA
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("kind", ["result ahead of its source", "add shift"])
def test_the_simulator_refuses_a_pass_past_its_image_as_the_rtl_does(kind):
    """A refused pass whose operands lie inside the DRAM but past the model's image is refused by
    the rules (DATA), as the RTL refuses it before it touches a byte, not taken for an access past
    the image (``DramBoundsError``, which the cosimulation expects the RTL to make): the simulator
    checked the image first (fuzz seed 7105, case 271 of vec_desc_field on tiny, a softmax whose
    source's stride grew to reach past the image and over its result)."""
    from sim.functional import DramBoundsError

    d = _refused(kind)
    far = unchecked(vec.Descriptor, h=d.h, w=d.w, c=d.c, stages=d.stages,
                    operands=tuple(dataclasses.replace(op, base=op.base + 10_000) for op in d.operands))
    image = np.frombuffer(vec.encode_descriptor(far), np.uint8).copy()
    with pytest.raises(StreamError) as err:
        execute_vec({"desc_addr": 0, **vec.vec_fields(far)}, image, "test VEC", TINY.dram_bytes)
    assert err.value.code == ErrorCode.DATA and not isinstance(err.value, DramBoundsError), err.value


@pytest.mark.parametrize("kind", [k for k in REFUSED_DATA if "result" in k])
def test_a_result_over_bytes_the_pass_reads_is_refused_as_an_overlap(kind):
    """The overlaps are refused by their own rule (``hw.vector.overlapping_writes``), not another."""
    d = _refused(kind)
    head, operands, stages = vec.descriptor_field_slots(d)
    assert vec.first_refusal(vec.pass_refusals(head, operands, stages)) is None
    why = vec.first_refusal(vec.overlapping_writes(head, operands, stages, vec.pass_extents(head, operands, stages)))
    want = (" stage 1: it reads the operand stage 0 writes" if "later" in kind
            else " stage 0: it writes through a pattern that may reach a byte twice"
            if "through" in kind else " stage 0: its result overlaps")
    assert why is not None and why.startswith(want), why


@pytest.fixture(scope="module")
def refused_runs() -> dict:
    """Every REFUSED case on one unit built for rows up to 4: (descriptor, image before, after, result)."""
    runs = {kind: (_refused(kind), refused_image()) for kind in REFUSED}
    before = {kind: dram.copy() for kind, (_, dram) in runs.items()}
    results = run_units(list(runs.values()), max_row=4)
    return {kind: (d, before[kind], dram, res) for (kind, (d, dram)), res in zip(runs.items(), results)}


@pytest.mark.parametrize("kind", REFUSED)
def test_vector_unit_refuses_what_it_cannot_run_and_writes_nothing(refused_runs, kind):
    """What the unit does not build: UNSUPPORTED (the functional model runs it; the unit here is
    built for rows up to 4), nothing written; ``vec_unsupported`` for that unit says so, and for
    the accelerator's (built for MAX_ROW) of every case but the row beyond 4."""
    d, before, dram, res = refused_runs[kind]
    functional(d, before.copy())
    assert (res["error"], ErrorCode(res["code"])) == (1, ErrorCode.UNSUPPORTED), kind
    np.testing.assert_array_equal(dram, before)
    assert vec_unsupported(d, max_row=4) is not None, kind
    assert (vec_unsupported(d) is None) == (kind == "row beyond max_row"), kind


@pytest.mark.parametrize("name", ["tiny", "small", "e_small"])
def test_vector_unit_has_the_contracts_lanes_and_latencies(name):
    """By default a row lane per ``vector_lanes`` of the configuration, ports of an address per
    lane; the slot latency and the row units' pauses are the contract's
    (``hw.timing.VEC_STAGE_LATENCY``, ``hw.vector.ROW_GAP``); a lane count
    that is none is refused, naming it."""
    cfg = get_config(name)
    with warnings.catch_warnings():                       # built or refused, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        unit = VectorUnit(cfg, max_row=4)
        assert unit.lanes == cfg.vector_lanes
        assert (len(unit.dram_rd.en), len(unit.dram_wr.en)) == (vu.read_lanes(cfg.vector_lanes),
                                                                 vu.write_lanes(cfg.vector_lanes))
        assert unit.slot_latency == VEC_STAGE_LATENCY
        assert {op: unit.gap_cycles(op) for op in vec.ROW_OPS} == vec.ROW_GAP
        assert unit.walk_rows == SpatialUnit(cfg).walk_rows == vec_walk_rows(cfg.vector_lanes)
        with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
            VectorUnit(cfg, lanes=0)
        del unit
        gc.collect()


def test_the_contract_walks_several_rows_only_on_many_lanes():
    """Four rows a cycle from ``VEC_WIDE_WALK_LANES`` row lanes up (E, e_small), one below (tiny,
    small: the wide walkers would grow them by half); an explicit width is capped by what divides
    the lanes."""
    assert [vec_walk_rows(n) for n in (8, 16, VEC_WIDE_WALK_LANES // 2)] == [1, 1, 1]
    assert [vec_walk_rows(n) for n in (VEC_WIDE_WALK_LANES, 512)] == [VEC_WALK_ROWS] * 2
    assert (vec_walk_rows(6, 4), vec_walk_rows(8, 1), vec_walk_rows(2, 8)) == (3, 1, 2)
    assert vec_first_walk(512) == 512 // VEC_WALK_ROWS + VEC_WALK_SETUP and vec_first_walk(16) == 16
    with pytest.raises(ValueError, match="walk_rows must be a positive integer, not 0"):
        vec_walk_rows(64, 0)


@pytest.mark.slow       # make test converts it within tiny's whole accelerator (tests/shared_exports.py)
def test_vector_unit_converts_to_rtlil():
    """The unit elaborates for synthesis (RTLIL, what Yosys reads), with its default row limit
    (two row lanes: every lane is the same hardware)."""
    text = rtlil.convert(VectorUnit(TINY, lanes=2))
    assert "module" in text and "dram_rd__addr" in text


@pytest.mark.slow
def test_vector_unit_runs_the_zoos_longest_rows():
    """The longest rows of the zoo's defaults: softmax rows of 1024 (SegFormer at Cityscapes size),
    layernorm rows of 2048 (Swin-B) and two layernorms over rows of 512 (SegFormer-B1/B2's last
    stage), after a residual add, each over two pixels."""
    rng = np.random.default_rng([SEED, 2048])
    runs = []
    for chain, c in ((CHAINS["add_softmax_copy"], 1024), (CHAINS["add_layernorm"], 2048),
                     (CHAINS["add_layernorm_layernorm"], 512)):
        dram = Dram(rng)
        operands = [vec.Operand(dram.alloc(2 * c), c, vec.Axis(1, 2 * c), vec.Axis(2, c)) for _ in range(4)]
        stages = [vec.Stage(VecOp.ADD, 0, 1, vec.NONE, add_params(rng))]
        stages += [vec.Stage(kind, vec.PREV, vec.NONE, 2 + i, stage_params(kind, rng, dram, c, c))
                   for i, kind in enumerate(chain[1:])]
        d = vec.Descriptor(1, 2, c, tuple(operands), tuple(stages))
        image = dram.image()
        runs.append((d, image, functional(d, image)))
    results = run_units([(d, image) for d, image, _ in runs], max_row=op.MAX_ROW)
    for (d, image, want), res in zip(runs, results):
        assert (res["error"], res["overrun"], res["cycles"]) == (0, False, res["formula"])
        if not np.array_equal(image, want):
            pytest.fail(f"rows of {d.c}: {first_difference(image, want)}")


# ---- the fields' rule on the fetched descriptor -----------------------------------------------------

def random_descriptor(rng: random.Random) -> vec.Descriptor:
    """Any descriptor that decodes: up to every operand and stage slot, axes with many laps, a
    resize, pooling or argmax first, several row stages; parameters anywhere in their ranges."""
    c = rng.randint(1, 64)
    operands = tuple(vec.Operand(0, rng.randint(1, 70), any_axis(rng), any_axis(rng), rng.random() < 0.3)
                     for _ in range(rng.randint(1, vec.MAX_OPERANDS)))
    spatial = rng.random() < 0.4
    kinds = [rng.choice(vec.SPATIAL)] if spatial else []
    kinds += [rng.choice([VecOp.COPY, VecOp.ADD, VecOp.MUL, VecOp.LUT, VecOp.LAYERNORM, VecOp.SOFTMAX])
              for _ in range(rng.randint(0 if spatial else 1, vec.MAX_STAGES - len(kinds)))]
    n = len(operands)
    stages = []
    for i, kind in enumerate(kinds):
        params = {name: rng.randint(-(1 << bits - 1) if signed else 0, (1 << bits - 1) - 1 if signed else (1 << bits) - 1)
                  for name, bits, signed in vec.STAGE_PARAMS[kind]}
        if kind == VecOp.SOFTMAX:
            params["heads"] = rng.choice([k for k in range(1, c + 1) if c % k == 0])
            params["row"] = c // params["heads"]
        # an ADD's or MUL's second operand is one (without, the descriptor is malformed)
        src2 = rng.randrange(n) if kind in (VecOp.ADD, VecOp.MUL) else rng.choice([vec.NONE, rng.randrange(n)])
        stages.append(vec.Stage(kind, rng.randrange(n) if i == 0 or rng.random() < 0.3 else vec.PREV,
                                src2, rng.choice([vec.NONE, rng.randrange(n)]), params))
    return vec.Descriptor(rng.randint(1, 40), rng.randint(1, 40), c, operands, tuple(stages))


def test_the_rtl_evaluates_vec_fields_on_the_fetched_descriptor():
    """``hw.vector.slot_fields`` on Amaranth values of the fetched descriptor's slots (what the
    executor compares with the VEC's fields) gives ``vec_fields`` (what the simulator compares
    them with) for random descriptors, spatial passes and several row stages included."""
    rng = random.Random(SEED)
    descriptors = [random_descriptor(rng) for _ in range(120)]
    m = Module()
    desc = Signal(DESCRIPTOR)
    got = {name: Signal(value.shape(), name=name)
           for name, value in vec.slot_fields(*field_slots(desc)).items()}
    for name, value in vec.slot_fields(*field_slots(desc)).items():
        m.d.comb += got[name].eq(value)
    differ = []

    async def bench(ctx):
        for d in descriptors:
            ctx.set(desc.as_value(), descriptor_slots(d))
            await ctx.delay(1e-6)
            rtl = {name: ctx.get(signal) for name, signal in got.items()}
            if rtl != vec.vec_fields(d):
                differ.append((d, rtl, vec.vec_fields(d)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not differ, f"{len(differ)} of {len(descriptors)} differ; the first: {differ[0]}"
    assert {vec.vec_fields(d)["vec_op"] for d in descriptors} >= set(vec.SPATIAL) | {VecOp.CHAIN}


def test_held_terms_take_the_level_above_what_they_read_through_wires():
    """``level_held``: a term without a level is one above the deepest held term it reads, through
    ``wired``'s multiplexer wires too; a term named at a level not above what it reads is refused
    (it would be sampled before it settles)."""
    m = Module()
    hold, levels = level_held(m, "t")
    a, b = Signal(8), Signal(8)
    with wired(m):
        one = hold(a * b)
        two = hold(vmax(one, a) + 1)            # reads `one` through the multiplexer's wire
        three = hold(vmin(two, b), 3)
        assert hold(5) == 5                     # a constant is not registered
        with pytest.raises(ValueError, match="held at level 2 reads one held at level 2"):
            hold(two + 1, 2)
    assert levels == [1, 2, 3] and three.name == "t_l3_3"
    Fragment.get(m, None)     # elaborated, so that Amaranth does not warn of an unused module


def relocated(d: vec.Descriptor, rng: random.Random) -> vec.Descriptor:
    """``d`` with its operands and tables anywhere in the 32-bit address space, near its ends often."""
    def address():
        return rng.choice([rng.randrange(1 << 32), rng.randrange(1 << 12), (1 << 32) - rng.randrange(1, 1 << 12)])
    stages = tuple(dataclasses.replace(st, params=st.params | {"table": address()}) if "table" in st.params else st
                   for st in d.stages)
    return dataclasses.replace(d.relocated([address() for _ in d.operands]), stages=stages)


def test_the_rtl_evaluates_pass_extents_on_the_fetched_descriptor():
    """``hw.vector.pass_extents`` on Amaranth values of the fetched descriptor's slots (what the
    executor refuses with DATA when it leaves the DRAM) gives what it gives on the descriptor's
    integers (what ``execute_vec`` refuses), for random descriptors placed anywhere."""
    rng = random.Random(SEED + 1)
    descriptors = [relocated(random_descriptor(rng), rng) for _ in range(120)]
    m = Module()
    desc = Signal(DESCRIPTOR)

    def named(value, level=None):       # what the executor registers, here a wire of its own
        wire = Signal(Value.cast(value).shape())
        m.d.comb += wire.eq(value)
        return wire

    extents = vec.pass_extents(*field_slots(desc), hold=named)
    got = []
    for k, (_, touched, lo, hi) in enumerate(extents):
        signals = (Signal(name=f"touched{k}"), Signal(Value.cast(lo).shape(), name=f"lo{k}"),
                   Signal(Value.cast(hi).shape(), name=f"hi{k}"))
        m.d.comb += [s.eq(v) for s, v in zip(signals, (touched, lo, hi))]
        got.append(signals)
    outside = Signal(len(extents))
    m.d.comb += outside.eq(Cat(*vec.extents_outside(extents, TINY.dram_bytes)))
    differ, refused = [], 0

    async def bench(ctx):
        nonlocal refused
        for d in descriptors:
            ctx.set(desc.as_value(), descriptor_slots(d))
            await ctx.delay(1e-6)
            want = vec.pass_extents(*vec.descriptor_field_slots(d))
            rtl = [(ctx.get(t), ctx.get(lo), ctx.get(hi)) if ctx.get(t) else None for t, lo, hi in got]
            ints = [(1, lo, hi) if touched else None for _, touched, lo, hi in want]
            flags = [bool(o) for o in vec.extents_outside(want, TINY.dram_bytes)]
            rtl_flags = [bool(ctx.get(outside) >> k & 1) for k in range(len(extents))]
            refused += any(flags)
            if rtl != ints or rtl_flags != flags:
                differ.append((d, rtl, ints, rtl_flags, flags))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not differ, f"{len(differ)} of {len(descriptors)} differ; the first: {differ[0]}"
    assert 10 < refused < len(descriptors) - 10, refused


# ---- DescriptorFetch against hw.vector.decode_descriptor ------------------------------------------

def patched(raw: bytes, n_operands: int, part: str, index: int, name: str, value: int) -> bytes:
    """``raw`` with field ``name`` of the header, operand ``index`` or stage ``index`` set to ``value``
    (bit offsets from hw.vector's field tables)."""
    spec, at = {"header": (vec.HEADER_FIELDS, 0),
                "operand": (vec.OPERAND_SPEC, vec.HEADER_BYTES + index * vec.OPERAND_BYTES),
                "stage": (vec.STAGE_HEAD, vec.HEADER_BYTES + n_operands * vec.OPERAND_BYTES
                          + index * vec.STAGE_BYTES)}[part]
    pos = 0
    for field, bits, _ in spec:
        if field == name:
            break
        pos += bits
    word = int.from_bytes(raw, "little")
    word = word & ~(((1 << bits) - 1) << (8 * at + pos)) | (value & ((1 << bits) - 1)) << (8 * at + pos)
    return word.to_bytes(len(raw), "little")


#: Malformations decode_descriptor refuses: (part, index, field, value), or a list of them.
MALFORMED = {
    "lo0 past win": [("operand", 0, f"y_{name}", v) for name, v in
                     (("start", 1), ("wrap", 2), ("win", 1), ("lo0", 1), ("hi0", 0))],
    "no stages": ("header", 0, "n_stages", 0), "five stages": ("header", 0, "n_stages", 5),
    "nine operands": ("header", 0, "n_operands", 9), "h = 0": ("header", 0, "h", 0),
    "operand c = 0": ("operand", 0, "c", 0), "split": ("operand", 1, "x_hi0", 7),
    "y laps past n": ("operand", 0, "y_laps", 0xFFFF), "x laps past n": ("operand", 1, "x_laps", 0xFFFF),
    "start = wrap": ("operand", 0, "y_start", 65535), "valid = 0": ("operand", 0, "x_valid", 0),
    "run's last split": ("operand", 0, "y_hi_run", 0x7FFF), "turn's last split": ("operand", 1, "x_hi_turn", 0x7FFF), "CHAIN stage": ("stage", 0, "op", int(VecOp.CHAIN)),
    "unknown op": ("stage", 1, "op", 200), "stage 0 reads PREV": ("stage", 0, "src", vec.PREV),
    "operand beyond": ("stage", 1, "out", 9), "resize not first": ("stage", 1, "op", int(VecOp.RESIZE)),
}


def fetch_all(images: list[tuple[np.ndarray, int]], dram_bytes: int = 1 << 32,
              fields: list[dict] | None = None) -> tuple[list[dict], DescriptorFetch | DescriptorCheck]:
    """Fetch the descriptor at each (image, address) on one DescriptorFetch of a DRAM of ``dram_bytes``,
    or with ``fields`` (a VEC's fields per image) fetch and check it on one DescriptorCheck: the slots,
    error, cycles and addresses read of each, and the unit."""
    dut = DescriptorFetch(dram_bytes=dram_bytes) if fields is None else DescriptorCheck(dram_bytes=dram_bytes)
    results = []

    async def bench(ctx):
        for k, (dram, addr) in enumerate(images):
            if fields is not None:
                ctx.set(dut.fields, VEC_TIMING.const(fields[k]))
            ctx.set(dut.addr, addr)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            reads = set()
            for cycle in range(100):
                if ctx.get(dut.done):
                    break
                rdata = read_lanes(ctx, dut.dram_rd, dram, reads)
                await ctx.tick()
                ctx.set(dut.dram_rd.data.as_value(), rdata)
            results.append({"done": ctx.get(dut.done), "desc": ctx.get(dut.desc.as_value()), "cycles": cycle,
                            "code": ErrorCode(ctx.get(dut.error_code)), "error": ctx.get(dut.error), "reads": reads})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, dut


@pytest.mark.parametrize("every", [pytest.param(False, id="each_malformation_once"),
                                   pytest.param(True, id="every_malformation_of_every_chain", marks=pytest.mark.slow)])
def test_descriptor_check_refuses_what_decode_descriptor_refuses(every):
    """Well-formed descriptors land in their slots (``descriptor_slots``) and pass the check after the
    fetch; every malformation decode_descriptor refuses with DATA the check refuses with DATA (the
    fetch reads it: it lies in the DRAM).  ``make test`` patches each malformation into one of the
    chains that have its stage or operand (in turn), ``make regress`` into each of them."""
    rng = np.random.default_rng([SEED, 7])
    good = [random_pass(rng, CHAINS[chain])[0] for chain in CHAINS]
    cases = [(d, "well-formed", vec.encode_descriptor(d)) for d in good]
    for k, (kind, patches) in enumerate(MALFORMED.items()):
        patches = patches if isinstance(patches, list) else [patches]
        targets = [d for d in good if all(index < {"stage": len(d.stages), "operand": len(d.operands)}.get(part, 1)
                                          for part, index, _, _ in patches)]
        for d in targets if every else [targets[k % len(targets)]]:
            bad = vec.encode_descriptor(d)
            for part, index, name, value in patches:
                bad = patched(bad, len(d.operands), part, index, name, value)
            with pytest.raises(StreamError) as err:
                vec.decode_descriptor(bad + bytes(vec.MAX_DESCRIPTOR_BYTES))
            assert err.value.code == ErrorCode.DATA, kind
            cases.append((d, kind, bad))
    images, wants = [], []
    for d, kind, raw_bytes in cases:
        addr = int(rng.integers(0, 300))
        image = rng.integers(0, 256, addr + vec.MAX_DESCRIPTOR_BYTES + 64, dtype=np.uint8)
        image[addr:addr + len(raw_bytes)] = np.frombuffer(raw_bytes, np.uint8)
        images.append((image, addr))
        wants.append((kind, d))
    results, dut = fetch_all(images, fields=[vec.vec_fields(d) for _, d in wants])
    for res, (kind, d) in zip(results, wants):
        assert res["done"], kind
        if kind == "well-formed":
            assert (res["error"], res["desc"]) == (0, descriptor_slots(d)), d
            assert res["cycles"] == dut.cycles(d), d
        else:
            assert (res["error"], res["code"]) == (1, ErrorCode.DATA), f"{kind} in {d}"


def test_descriptor_fetch_refuses_a_descriptor_past_the_dram():
    """A descriptor whose last byte is the DRAM's last is fetched; one a byte further, or whose
    header is past the DRAM's end, is refused with DATA, as ``execute_vec`` refuses it, without
    reading a byte past the DRAM (a DRAM of 4,096 bytes here, so that the image holds all; the
    passes' operands lie past it, which ``execute_vec`` refuses next)."""
    rng = np.random.default_rng([SEED, 8])
    dram_bytes, images, refusals = 4096, [], []
    for chain in ("add", "add_layernorm_layernorm", "mul_add_copy_copy"):
        d = random_pass(rng, CHAINS[chain])[0]
        raw = np.frombuffer(vec.encode_descriptor(d), np.uint8)
        for addr in (dram_bytes - raw.size, dram_bytes - raw.size + 1, dram_bytes - vec.HEADER_BYTES + 1):
            image = np.zeros(dram_bytes + raw.size, np.uint8)
            image[addr:addr + raw.size] = raw
            images.append((image, addr))
            with pytest.raises(StreamError) as err:
                execute_vec({"desc_addr": addr, **vec.vec_fields(d)}, image.copy(), "test VEC", dram_bytes)
            refusals.append(re.search(r"its descriptor('s header)? reaches", str(err.value)) is not None)
    results, _ = fetch_all(images, dram_bytes)
    assert refusals == [False, True, True] * 3
    assert [(r["error"], ErrorCode(r["code"])) for r in results] == \
        [(0, ErrorCode.NONE), (1, ErrorCode.DATA), (1, ErrorCode.DATA)] * 3
    assert max(max(r["reads"], default=0) for r in results) < dram_bytes


# ---- VectorExecutor: a VEC from its descriptor address ---------------------------------------------

def mismatched_fields(d: vec.Descriptor) -> dict:
    """For each of the VEC's fields that its descriptor decides, those fields with that one off by one
    bit (what ``execute_vec`` refuses with DATA)."""
    f = vec.vec_fields(d)
    return {f"{name} mismatched": f | {name: f[name] ^ 1} for name in vec.TIMING_FIELDS}


def refused_while_running(rng) -> dict:
    """Passes the executor refuses while running (``vec_unsupported``), each descriptor after its
    own image: a softmax and a layernorm in one pass (two row units), and a CHAIN whose first stage
    is a resize (nearest: no DDA to check)."""
    passes = {}
    for name in ("softmax_layernorm", "resize_copy"):
        dram = Dram(rng)
        h, w, c = 2, 3, 4
        out = output_operand(dram, rng, h, w, c)
        if name == "softmax_layernorm":
            src = input_operand(dram, rng, h, w, c)
            stages = (vec.Stage(VecOp.SOFTMAX, 0, vec.NONE, vec.NONE, softmax_params(rng, c, c)),
                      vec.Stage(VecOp.LAYERNORM, vec.PREV, vec.NONE, 1, layernorm_params(rng, dram, c)))
        else:
            src = input_operand(dram, rng, 1, 2, c)
            stages = (vec.Stage(VecOp.RESIZE, 0, vec.NONE, vec.NONE, {"mode": 1, "y_start": 0, "y_step": 0,
                                                                      "x_start": 0, "x_step": 0, "y_q": 0,
                                                                      "y_r": 1, "x_q": 0, "x_r": 2}),
                      vec.Stage(VecOp.COPY, vec.PREV, vec.NONE, 1, {}))
        passes[name] = (vec.Descriptor(h, w, c, (src, out), stages), dram.image())
    return passes


def slices_of_one_raster(rng) -> dict:
    """Passes whose written operands' ranges overlap other operands' but not their bytes: channel
    slices of one raster (``hw.vector.overlapping_writes``), a tensor concatenated with itself (its
    first part copied into the others) and Swin's patch merging (four sources into four slices)."""
    h, w, c = 2, 3, 4
    passes = {}
    for name, parts in (("concatenated with itself", 3), ("patch merging", 4)):
        dram = Dram(rng)
        base = dram.alloc(h * w * parts * c)
        slices = [vec.Operand(base + k * c, c, vec.Axis(h, w * parts * c), vec.Axis(w, parts * c)) for k in range(parts)]
        if parts == 3:
            operands, stages = slices, [vec.Stage(VecOp.COPY, 0, vec.NONE, k, {}) for k in (1, 2)]
        else:
            operands = [op for s in slices for op in (input_operand(dram, rng, h, w, c), s)]
            stages = [vec.Stage(VecOp.COPY, 2 * k, vec.NONE, 2 * k + 1, {}) for k in range(parts)]
        passes[name] = (vec.Descriptor(h, w, c, tuple(operands), tuple(stages)), dram.image())
    return passes


def written_in_place(rng) -> dict:
    """A pass whose add writes the operand it reads through a one-to-one pattern that is no plain
    raster (rolled on both axes, cropped): admitted in place by the overlap rule
    (``hw.vector.overlapping_writes``; the unit's tests run a layernorm after it too)."""
    h, w, c = 2, 3, 4
    dram = Dram(rng)
    rolled = vec.Operand(dram.alloc(h * w * c), c, vec.Axis(h, w * c, start=1, wrap=h),
                         vec.Axis(w, c, start=2, wrap=w, valid=2))
    operands = (rolled, input_operand(dram, rng, h, w, c))
    stages = (vec.Stage(VecOp.ADD, 0, 1, 0, add_params(rng)),)
    return {"add in place, rolled and cropped": (vec.Descriptor(h, w, c, operands, stages), dram.image())}


def written_through_windows(rng) -> dict:
    """Passes writing through window splits that are one-to-one, admitted by the overlap rule
    (``hw.vector.overlapping_writes``): a copy into Swin's window partition of a 4x4 image in 2x2
    windows (each axis' blocks a token apart, between the other axis' rows), rolled by a pixel (its
    shifted windows), into the same windows with their blocks in reverse (negative steps), and an
    add in place through the reversed windows."""
    h, w, c, win = 4, 4, 3, 2
    pitch, windows = c + 1, (h // win) * (w // win)        # a byte between tokens, never written

    def windowed(dram: Dram, sign: int, start: int) -> vec.Operand:
        op = vec.Operand(0, c, vec.Axis(h, win * windows * pitch, start, h, win=win, s_hi=sign * (w // win) * pitch),
                         vec.Axis(w, windows * pitch, start, w, win=win, s_hi=sign * pitch))
        addr, _ = vec.operand_addresses(op, c)
        return dataclasses.replace(op, base=dram.alloc(int(addr.max() - addr.min()) + 1) - int(addr.min()))
    passes = {}
    for name, sign, start in (("copy into rolled windows", 1, 1), ("copy into reversed windows", -1, 0)):
        dram = Dram(rng)
        operands = (input_operand(dram, rng, h, w, c), windowed(dram, sign, start))
        passes[name] = (vec.Descriptor(h, w, c, operands, (vec.Stage(VecOp.COPY, 0, vec.NONE, 1, {}),)), dram.image())
    dram = Dram(rng)
    operands = (windowed(dram, -1, 1), input_operand(dram, rng, h, w, c))
    passes["add in place through reversed windows"] = (
        vec.Descriptor(h, w, c, operands, (vec.Stage(VecOp.ADD, 0, 1, 0, add_params(rng)),)), dram.image())
    return passes


#: Passes moved out of tiny's DRAM by one byte (``vec_passes.leaving_dram``): (pass, how, operand:
#: -1 the last, an output; None the first it can move).
#: The softmax with a layernorm is one the unit does not build: DATA comes first.
LEAVING_CASES = [("add_lut", "operand_past_end", None), ("add_lut", "operand_past_end", -1),
                 ("add_lut", "operand_below_zero", None), ("add_lut", "table_past_end", None),
                 ("add_layernorm", "table_past_end", None), ("mul_add_copy_copy", "operand_below_zero", None),
                 ("softmax_layernorm", "operand_past_end", -1)]


#: Passes run with each of their timing fields mismatched (the check is the same for every pass),
#: and passes the unit does not build run with one (DATA comes before UNSUPPORTED).
MISMATCHED_EVERY_FIELD, MISMATCHED_ONE_FIELD = ("add_lut",), ("softmax_layernorm", "resize_copy")


@pytest.fixture(scope="module")
def executor_runs() -> list:
    """On one VectorExecutor of tiny's eight row lanes: each chain's pass with its descriptor in
    DRAM, passes of channel slices of one raster, one written in place and ones written through window
    splits, one malformed descriptor, one pass with each of its timing fields mismatched, the
    passes it refuses while running with their fields and with one of them mismatched, and passes whose
    operands or tables leave the DRAM (``LEAVING_CASES``): (case, descriptor,
    RTL image, expected image, result, expected error code or None).  The expectations come from
    the simulator (``cosim.accel_cases.run_vec_as_rtl``), in its order of refusals."""
    rng = np.random.default_rng([SEED, 11])
    dut = VectorExecutor(TINY, max_row=64)
    passes = {chain: random_pass(rng, CHAINS[chain]) for chain in CHAINS} | refused_while_running(rng)
    passes |= slices_of_one_raster(rng)
    passes |= written_in_place(rng)
    passes |= written_through_windows(rng)
    runs = []
    for name, (d, dram) in passes.items():
        image = np.concatenate([dram, np.frombuffer(vec.encode_descriptor(d), np.uint8)])
        cases = {name: vec.vec_fields(d)}
        if name in MISMATCHED_EVERY_FIELD:
            cases |= {f"{name}, {case}": fields for case, fields in mismatched_fields(d).items()}
        elif name in MISMATCHED_ONE_FIELD:
            case, fields = next(iter(mismatched_fields(d).items()))
            cases[f"{name}, {case}"] = fields
        runs += [(case, d, image, dram.size, fields) for case, fields in cases.items()]
    bad = runs[0][2].copy()
    bad[runs[0][3] + 6] = 0                          # header byte 6: n_operands = n_stages = 0
    runs.append(("malformed", runs[0][1], bad, runs[0][3], runs[0][4]))
    for kind in REFUSED_DATA + REFUSED_SPATIAL:       # refused (DATA) before the unit starts, or by it
        d, dram = _refused(kind), refused_image()
        runs.append((kind, d, np.concatenate([dram, np.frombuffer(vec.encode_descriptor(d), np.uint8)]), dram.size,
                     vec.vec_fields(d)))
    for name, how, k in LEAVING_CASES:                # refused (DATA) before anything is read or written
        d, dram = passes[name]
        moved = leaving_dram(d, how, TINY.dram_bytes, k)
        image = np.concatenate([dram, np.frombuffer(vec.encode_descriptor(moved), np.uint8)])
        runs.append((f"{name}, {how} {k}", moved, image, dram.size, vec.vec_fields(moved)))
    rams = [image.copy() for _, _, image, _, _ in runs]     # the RTL's images; ``image`` stays the simulator's
    results = run_on(dut, [(ram, [(dut.desc_addr, addr), (dut.fields, VEC_TIMING.const(fields))])
                           for ram, (_, _, _, addr, fields) in zip(rams, runs)])
    out = []
    for (case, d, image, addr, fields), ram, res in zip(runs, rams, results):
        want = image.copy()
        try:
            run_vec_as_rtl({"desc_addr": addr, **fields}, want, "test VEC", TINY.dram_bytes)
            code = None
        except StreamError as e:
            code = e.code
        out.append((case, d, ram, want, res | {"formula": dut.cycles(d)}, code))
    return out


def test_vector_executor_runs_a_vec_from_its_descriptor_address(executor_runs):
    """The simulator's image (descriptor included) and the fetch's plus the check's plus the
    unit's cycles; a malformed descriptor and each mismatched field refused with DATA, a pass the
    unit does not build with UNSUPPORTED unless its fields are off (DATA first, as the simulator
    checks them before it runs), nothing written."""
    codes = {}
    for chain, d, image, want, res, code in executor_runs:
        codes[code] = codes.get(code, 0) + 1
        if code is not None:
            assert (res["error"], ErrorCode(res["code"])) == (1, code), chain
        else:
            assert (res["error"], res["overrun"], res["cycles"]) == (0, False, res["formula"]), chain
        if not np.array_equal(image, want):
            pytest.fail(f"{chain}: {first_difference(image, want)}")
    mismatched = len(MISMATCHED_EVERY_FIELD) * len(vec.TIMING_FIELDS) + len(MISMATCHED_ONE_FIELD)
    assert codes == {None: len(CHAINS) + 6, ErrorCode.DATA: 1 + mismatched + len(LEAVING_CASES)
                     + len(REFUSED_DATA), ErrorCode.UNSUPPORTED: 2 + len(REFUSED_SPATIAL)}


def test_vector_executor_takes_the_contracts_cycles(executor_runs):
    """``hw.timing.vec_cycles`` on tiny is the executor's cycles plus exactly the contract's
    allowances for the worst case: the DRAM latency beyond the RTL's one-cycle reads, the
    descriptor beats a largest descriptor has more, the stage slots a longest chain has more, and
    the cycles the DRAM bytes take beyond the rows.  Under the accelerator's timing shell the
    executor is never slower than the contract and waits out the difference."""
    differ = {}
    for chain, d, _, _, res, code in executor_runs:
        if code is not None:
            continue
        f = vec.vec_fields(d)
        rows = f["rows"] and vec_cycles({**f, "bytes_in": 0, "bytes_out": 0}, TINY)
        allowance = (TINY.dram_latency - DRAM_READ_LATENCY
                     + vec_fetch_cycles(vec.MAX_DESCRIPTOR_BYTES) - vec_fetch_cycles(vec.descriptor_bytes(d))
                     + (vec.MAX_STAGES - len(d.stages)) * VEC_STAGE_LATENCY + vec_cycles(f, TINY) - rows)
        if (res["cycles"] + allowance, res["cycles"] <= vec_cycles(f, TINY)) != (vec_cycles(f, TINY), True):
            differ[chain] = (res["cycles"], allowance, vec_cycles(f, TINY))
    assert not differ, f"(RTL, allowance, contract) cycles: {differ}"
