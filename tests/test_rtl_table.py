"""The PE's table memory and the table activation in the RTL (hw/rtl/table_memory.py, postproc.py)
against sim.functional: LOAD_PARAM with ``table = 1`` fills it, a STORE with ``act = TABLE``
reads it after requantisation, bit- and cycle-exact."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from cosim.accel_cases import FIXED_BY_NAME, TABLE_ACTIVATIONS, expected_run
from hw import operators as ops
from hw.config import get_config
from hw.numerics import PARAM_ENTRY_BYTES, TABLE_BYTES, TABLE_ENTRIES, TABLE_ENTRY_BITS, TABLE_PARAM_ENTRIES
from hw.rtl.buses import LoadTarget, load_geometry
from hw.rtl.postproc import PostProcessor
from hw.rtl.table_memory import TableMemory
from hw.isa import Op, make
from sim.functional import Machine
from rtl_sweep import check, sweep
from test_rtl_accelerator import first_mismatch, run_accelerator

SEED = 13


def table_entries(rng, n: int = TABLE_ENTRIES) -> np.ndarray:
    """Random signed 32-bit table entries."""
    return rng.integers(-(1 << (TABLE_ENTRY_BITS - 1)), 1 << (TABLE_ENTRY_BITS - 1), n)


def beats_of(cfg, dst: int, n_entries: int):
    """The load beats of a LOAD_PARAM of ``n_entries`` at entry ``dst``: (entry address, count)."""
    _, _, per_beat = load_geometry(cfg)
    return [(dst + e, min(per_beat, n_entries - e)) for e in range(0, n_entries, per_beat)]


@pytest.mark.parametrize("cfg_name, bus", [("tiny", 0), ("small", 0), ("e_small", 0), ("E", 0), ("E", 512)])
def test_table_memory_loads_at_any_alignment(cfg_name, bus):
    """Loads at every kind of alignment, then every entry read back on every lane; compared with
    sim.functional's ``_load_table`` on the same bytes.  On E with a 512-byte bus a beat carries
    K0 = 32 entries, not 64 (``hw.timing.param_beat_bytes``)."""
    cfg = get_config(cfg_name, **({"gb_bus_bytes_per_cycle": bus} if bus else {}))
    g, _, per_beat = load_geometry(cfg)
    rng = np.random.default_rng(SEED)
    lanes = 3
    dut = TableMemory(cfg, lanes=lanes)
    half = TABLE_PARAM_ENTRIES // 2                     # parameter-sized entries of half the table
    loads = [(0, TABLE_PARAM_ENTRIES), (1, per_beat + 1), (half - 1, 3), (half + 2, min(2 * per_beat + 1, half - 2)),
             (TABLE_PARAM_ENTRIES - 1, 1)]
    dram = rng.integers(0, 256, TABLE_BYTES * len(loads), dtype=np.uint8)
    machine = Machine(cfg, dram)
    stream = [make(Op.LOAD_PARAM, pe_count=1, table=1, src_addr=i * TABLE_BYTES, dst_addr=dst, n_entries=n)
              for i, (dst, n) in enumerate(loads)]
    machine.run(stream)
    want = machine.table[0]
    got = np.zeros((lanes, TABLE_ENTRIES), np.int64)

    async def bench(ctx):
        for insn, (dst, n) in zip(stream, loads):
            src = insn.f["src_addr"]
            for addr, count in beats_of(cfg, dst, n):
                raw = dram[src + (addr - dst) * PARAM_ENTRY_BYTES:][:count * PARAM_ENTRY_BYTES]
                ctx.set(dut.ld.en, 1)
                ctx.set(dut.ld.target, LoadTarget.TABLE)
                ctx.set(dut.ld.addr, addr)
                ctx.set(dut.ld.count, count)
                ctx.set(dut.ld.data, int.from_bytes(raw.tobytes() + bytes(g - raw.size), "little"))
                await ctx.tick()
        ctx.set(dut.ld.en, 0)
        ctx.set(dut.rd_en, 1)
        for i in range(TABLE_ENTRIES):
            for j in range(lanes):
                ctx.set(dut.rd_addr[j], (i + 97 * j) % TABLE_ENTRIES)
            await ctx.tick()                # the entry the cycle after its address
            for j in range(lanes):
                got[j, (i + 97 * j) % TABLE_ENTRIES] = ctx.get(dut.rd_data[j])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for j in range(lanes):
        check(f"TableMemory {cfg_name} lane {j}", got[j], want, {"entry": np.arange(TABLE_ENTRIES)})


def test_table_memory_ignores_other_targets():
    """Beats for the parameter banks do not write the table."""
    cfg = get_config("tiny")
    dut = TableMemory(cfg, lanes=1)

    async def bench(ctx):
        ctx.set(dut.ld.en, 1)
        ctx.set(dut.ld.target, LoadTarget.PARAM)
        ctx.set(dut.ld.count, 2)
        ctx.set(dut.ld.data, (1 << 128) - 1)
        await ctx.tick()
        ctx.set(dut.ld.en, 0)
        ctx.set(dut.rd_en, 1)
        ctx.set(dut.rd_addr[0], 1)
        await ctx.tick()
        assert ctx.get(dut.rd_data[0]) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


class _LaneWithTable(Elaboratable):
    """A PostProcessor whose table port reads a memory initialised with ``entries``."""

    def __init__(self, cfg, entries: np.ndarray):
        self.post = PostProcessor(cfg)
        self.mem = memory.Memory(shape=self.post.table_data.shape(), depth=TABLE_ENTRIES,
                                 init=[int(v) for v in entries])

    def elaborate(self, platform):
        m = Module()
        m.submodules.post, m.submodules.mem = self.post, self.mem
        rd = self.mem.read_port()
        m.d.comb += [rd.addr.eq(self.post.table_addr), self.post.table_data.eq(rd.data)]
        return m


@pytest.mark.parametrize("cfg_name", ["tiny", "e_small"])
def test_postprocessor_table_activation(cfg_name):
    """Every int8 result of the requantisation through a table of random 32-bit entries (the low
    byte is the activation, as sim.functional's ``astype(int8)``), ReLU and saturation before the
    lookup, and the table off in between; against ``hw.operators.requantize`` and the table."""
    cfg = get_config(cfg_name)
    rng = np.random.default_rng(SEED)
    entries = table_entries(rng)
    y = np.arange(-128, 128)
    acc = np.concatenate([y, rng.integers(-4000, 4000, 500), [-(1 << 20), 1 << 20]])
    n = acc.size
    mult, shift = np.ones(n, np.int64), np.zeros(n, np.int64)
    mult[256:], shift[256:] = rng.integers(1, 1 << 12, n - 256), rng.integers(0, 14, n - 256)
    relu, table = rng.integers(0, 2, n), rng.integers(0, 4, n) != 0
    relu[:256], table[:256] = 0, True
    h = _LaneWithTable(cfg, entries)
    lane = h.post
    vec = {"acc": acc, "bias": np.zeros(n, np.int64), "mult": mult, "shift": shift, "relu": relu, "act_table": table}
    got = sweep(h, {k: (getattr(lane, k), np.asarray(v, np.int64)) for k, v in vec.items()}, {"y": lane.y},
                valid=lane.valid, out_valid=lane.y_valid, n_out=n, max_cycles=n + 16)
    q = np.array([ops.requantize(np.array([[a]]), int(m_), int(s), bool(r), acc_bits=cfg.acc_bits)[0, 0]
                  for a, m_, s, r in zip(acc, mult, shift, relu)], np.int64)
    want = np.where(table, entries[q + 128].astype(np.int8), q)
    check(f"PostProcessor table {cfg_name}", got["y"], want, vec)


def assert_table_layer_exact(cfg, name: str) -> None:
    """The cosimulation case ``name`` (a table activation) on ``cfg`` in Amaranth's simulator:
    DRAM == sim.functional, output == golden with the table, done at hw.timing.schedule's cycle."""
    exp = expected_run(FIXED_BY_NAME[name], cfg, SEED)
    assert any(i.op == Op.LOAD_PARAM and i.f["table"] for i in exp.stream)
    dram = exp.dram_in.copy()
    res = run_accelerator(cfg, exp.stream, dram, max_cycles=exp.cycles + 50)
    assert res["error"] == 0, f"{name}: error {res['code']} at instruction {res['pc']}"
    assert res["done"] == 1 and res["cycle"] == exp.cycles, \
        f"{name}: done {res['done']} at cycle {res['cycle']}, timing contract says {exp.cycles}"
    if not np.array_equal(dram, exp.dram_out):
        pytest.fail(first_mismatch(f"{name} vs sim.functional", dram, exp.dram_out))
    lo, hi = exp.output_range
    np.testing.assert_array_equal(dram[lo:hi], exp.golden, err_msg=f"{name} vs golden")


#: ``slow``: the tiny cosimulation runs both layers in make test (FAST_CASES, same Verilog).
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TABLE_ACTIVATIONS))
def test_table_activation_layer_bit_and_cycle_exact(name):
    """A mapper stream with a table activation (its LOAD_PARAM fills the table, its STOREs read
    it) on tiny in Amaranth's simulator: DRAM == sim.functional, output == golden with the
    table, done at hw.timing.schedule's cycle."""
    cfg = get_config("tiny")
    assert_table_layer_exact(cfg, name)


def test_a_bus_wider_than_k0_entries_loads_parameters_k0_a_beat():
    """A 64-byte bus on 4-lane PEs: a LOAD_PARAM beat carries K0 = 4 entries, not the bus's 8
    (``hw.timing.param_beat_bytes``), into the parameter banks and the table memory.  A mapper
    stream with a table activation, bit- and cycle-exact in Amaranth's simulator."""
    cfg = get_config("tiny", c0=16, gb_bus_bytes_per_cycle=64)
    assert load_geometry(cfg)[2] == cfg.k0 < cfg.gb_bus_bytes // PARAM_ENTRY_BYTES
    assert_table_layer_exact(cfg, "linear_gelu")   # the shorter of the two table cases in Amaranth
