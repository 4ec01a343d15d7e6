"""The STORE's softmax epilogue in the RTL, part by part: the segmented reductions across lanes
(hw/rtl/segmented_reduce.py) against numpy on random segments, and the streaming epilogue
(hw/rtl/softmax_epilogue.py) against the functional simulator's ``softmax_rows`` with the tables of
``mapper.program.exp_table``, on random pixels and rows of several lengths (49 among them, rows
spanning several PEs' lanes), bit- and cycle-exact."""

from __future__ import annotations

import gc
import sys
import warnings

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, UnusedElaboratable, signed, unsigned
from amaranth.sim import Simulator

from amaranth.lib import memory

from hw import operators as ops
from hw.numerics import TABLE_ENTRY_BITS
from hw.rtl.delay_buffer import DelayBuffer
from hw.rtl.segmented_reduce import SegmentedReduce
from hw.rtl.softmax_epilogue import SoftmaxEpilogue
from mapper.program import exp_table
from sim.vector_unit import softmax_rows

SEED = 1313


def segment_reference(x: np.ndarray, start: np.ndarray, member: np.ndarray, op: str, identity: int) -> np.ndarray:
    """Each lane's segment's maximum or sum (lanes not taking part count as ``identity``)."""
    v = np.where(member, x, identity)
    seg = np.cumsum(start | (np.arange(len(x)) == 0)) - 1
    reduce = np.maximum if op == "max" else np.add
    totals = np.full(seg[-1] + 1, identity, np.int64)
    reduce.at(totals, seg, v)
    return totals[seg]


def clocked(dut) -> Module:
    """``dut`` in a module with a sync domain (a unit of latency 0 has no registers)."""
    m = Module()
    m.submodules.dut = dut
    m.d.sync += Signal(name="tick").eq(1)
    return m


def run_reduce(dut: SegmentedReduce, beats: list) -> list:
    """Present ``beats`` (x, start, member), one a cycle; the ``y`` vectors when ``out_valid``."""
    got = []

    async def bench(ctx):
        for cycle in range(len(beats) + dut.latency + 1):
            if cycle < len(beats):
                x, start, member = beats[cycle]
                for i in range(dut.lanes):
                    ctx.set(dut.x[i], int(x[i]))
                ctx.set(dut.start, int(sum(int(b) << i for i, b in enumerate(start))))
                ctx.set(dut.member, int(sum(int(b) << i for i, b in enumerate(member))))
            ctx.set(dut.in_valid, cycle < len(beats))
            if ctx.get(dut.out_valid):
                got.append([ctx.get(dut.y[i]) for i in range(dut.lanes)])
            await ctx.tick()

    sim = Simulator(clocked(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lanes", [1, 2, 5, 8, 64])
@pytest.mark.parametrize("op", ["max", "sum"])
def test_segmented_reduce_matches_numpy(lanes, op):
    """Random values, segment starts and members, a vector a cycle: every lane gets its segment's
    reduction ``latency`` = 2 ceil(log2(lanes)) cycles later; segments of one lane and of all lanes."""
    rng = np.random.default_rng(SEED + lanes)
    shape, identity = (signed(8), -128) if op == "max" else (unsigned(23), 0)
    lo, hi = (-128, 128) if op == "max" else (0, 1 << 23)
    beats = [(rng.integers(lo, hi, lanes), rng.random(lanes) < p, rng.random(lanes) < q)
             for p, q in [(0.2, 0.9), (0.5, 0.5), (0.0, 1.0), (1.0, 1.0), (0.1, 0.0)] * 3]
    dut = SegmentedReduce(lanes, shape, op)
    assert dut.latency == 2 * (lanes - 1).bit_length()
    got = run_reduce(dut, beats)
    assert len(got) == len(beats)
    for b, ((x, start, member), y) in enumerate(zip(beats, got)):
        want = segment_reference(x, start, member, op, identity)
        bad = np.flatnonzero(np.asarray(y) != want)
        assert not bad.size, f"beat {b} lane {bad[0]}: RTL {y[bad[0]]}, want {want[bad[0]]}"


def test_units_refuse_bad_parameters():
    with warnings.catch_warnings():              # the refused units are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
            SegmentedReduce(0, signed(8), "max")
        with pytest.raises(ValueError, match="op must be one of .* not 'min'"):
            SegmentedReduce(4, signed(8), "min")
        with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
            SoftmaxEpilogue(0)
        with pytest.raises(ValueError, match="cycles must be a non-negative integer, not -1"):
            DelayBuffer(8, -1)
        gc.collect()


# ---- the streaming epilogue ------------------------------------------------------------------

def with_tables(dut: SoftmaxEpilogue, table: np.ndarray) -> Module:
    """``dut`` with every lane's table read port on a memory holding ``table`` (a PE's table memory)."""
    m = clocked(dut)
    for i in range(dut.lanes):
        mem = memory.Memory(shape=signed(TABLE_ENTRY_BITS), depth=len(table), init=[int(v) for v in table])
        m.submodules[f"table{i}"] = mem
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(dut.table_addr[i]), dut.table_data[i].eq(rd.data)]
    return m


def run_epilogue(dut: SoftmaxEpilogue, table, x: np.ndarray, start, member, out_shift, gaps=None):
    """The pixels of ``x`` [pixels, lanes], a pixel a cycle with ``gaps[p]`` idle cycles before pixel
    ``p`` (none by default); returns the results and the cycles from each beat to its result."""
    npix = len(x)
    gaps = [0] * npix if gaps is None else gaps
    beats = [c for p in range(npix) for c in [None] * gaps[p] + [p]]
    got, when, issued = [], [], []

    async def bench(ctx):
        ctx.set(dut.start, int(sum(int(b) << i for i, b in enumerate(start))))
        ctx.set(dut.member, int(sum(int(b) << i for i, b in enumerate(member))))
        for i in range(dut.lanes):
            ctx.set(dut.out_shift[i], int(out_shift[i]))
        for cycle in range(len(beats) + dut.latency + 2):
            pixel = beats[cycle] if cycle < len(beats) else None
            ctx.set(dut.valid, pixel is not None)
            for i in range(dut.lanes):        # idle cycles carry other values: they must not count
                ctx.set(dut.x[i], int(x[pixel, i]) if pixel is not None else (cycle * 37 + i) % 256 - 128)
            if pixel is not None:
                issued.append(cycle)
            if ctx.get(dut.y_valid):
                got.append([ctx.get(dut.y[i]) for i in range(dut.lanes)])
                when.append(cycle - issued[len(when)])
            await ctx.tick()

    sim = Simulator(with_tables(dut, table))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got), when


def rows_of(groups: list, lanes: int):
    """Segment starts and members for groups of (lanes, row): each group's first ``lanes`` lanes
    take part, in rows of ``row`` from the group's first lane; lanes left over take no part."""
    start, member = np.zeros(lanes, bool), np.zeros(lanes, bool)
    first = 0
    for used, row, span in groups:
        start[first] = True
        start[first:first + used:row] = True
        member[first:first + used] = True
        first += span
    return start, member


def epilogue_reference(x, start, member, table, out_shift) -> np.ndarray:
    """``softmax_rows`` on every row (a segment's member lanes) of every pixel; -1 elsewhere."""
    want = np.full(x.shape, -1, np.int64)
    bounds = [*np.flatnonzero(start), x.shape[1]]
    for a, b in zip(bounds, bounds[1:]):
        lanes = a + np.flatnonzero(member[a:b])
        if lanes.size:
            want[:, lanes] = softmax_rows(x[:, lanes], table, int(out_shift[a]))
    return want


@pytest.mark.parametrize("lanes, groups, npix", [
    (1, [(1, 1, 1)], 4),                      # one lane: no reduction stages, x waits no cycle
    (2, [(2, 2, 2)], 5),                      # two lanes: x waits two cycles, the shallowest memory
    (8, [(8, 4, 8)], 3),                      # tiny: two PEs of K0 = 4, rows of 4, fewer pixels than the latency
    (8, [(6, 3, 8)], 20),                     # lanes left over at the group's end
    (16, [(8, 8, 8), (5, 5, 8)], 7),          # small: two row groups, the second clipped
    (16, [(16, 1, 16)], 2),                   # rows of one channel
    (64, [(49, 49, 64)], 5),                  # e_small: a row of 49 across both PEs
    (64, [(32, 16, 32), (21, 7, 32)], 30),    # one row group a PE, rows of 16 and 7
])
def test_softmax_epilogue_matches_the_functional_model(lanes, groups, npix):
    """Random int8 pixels, random softmax parameters (exp table and output shifts), a beat a cycle
    or with idle cycles between: ``softmax_rows`` bit for bit, ``latency`` cycles after each beat."""
    rng = np.random.default_rng(SEED + lanes + npix)
    params = ops.softmax_params(float(rng.uniform(0.01, 0.5)), int(rng.integers(7, 15)))
    table = exp_table(params)
    x = rng.integers(-128, 128, (npix, lanes))
    x[0] = -128                                                     # a pixel of equal values
    start, member = rows_of(groups, lanes)
    out_shift = np.full(lanes, params.out_shift)
    dut = SoftmaxEpilogue(lanes)
    gaps = [0] * npix if npix % 2 else list(rng.integers(0, 3, npix))
    got, when = run_epilogue(dut, table, x, start, member, out_shift, gaps)
    want = epilogue_reference(x, start, member, table, out_shift)
    assert got.shape == x.shape and set(when) == {dut.latency}
    bad = np.argwhere(member[None, :] & (got != want))
    assert not bad.size, f"pixel {bad[0][0]} lane {bad[0][1]}: RTL {got[tuple(bad[0])]}, want {want[tuple(bad[0])]}"


def walk_lanes(f: dict, num_pe: int, k0: int):
    """(row starts, members) of every lane as the store unit feeds them to the epilogue: the walk of
    ``hw.epilogue`` over the PEs, and each selected PE's first ``nk`` lanes."""
    from hw.epilogue import WalkState, row_multiples, walk_end_bad, walk_pe
    from hw.timing import pe_members, pe_positions, store_pe_extent

    chosen, state, multiples = set(pe_members(f, num_pe)), WalkState(), row_multiples(f["ep_row"], k0)
    start, member = np.zeros((num_pe, k0), bool), np.zeros((num_pe, k0), bool)
    for p, (col, grp) in enumerate(pe_positions(num_pe, f["pe_k"])):
        nk = store_pe_extent(f, col, grp)[2] if p in chosen else 0
        lane_starts, state = walk_pe(state, col, store_pe_extent(f, col, grp)[0], nk, multiples, k0)
        start[p], member[p, :nk] = lane_starts, True
    assert not walk_end_bad(state), f
    return start.ravel(), member.ravel()


#: STOREs whose rows straddle two PEs' partial lane sets, lanes past a PE's members inside a row.
STRADDLING = [   # (PEs, K0, fields)
    (2, 32, {"pe_k": 2, "k_per_pe": 25, "t_k": 50, "ep_row": 10}),     # e_small's fuzz case 9200:355
    (2, 4, {"pe_k": 2, "k_per_pe": 1, "t_k": 2, "ep_row": 2}),         # tiny: a lane a PE
    (4, 4, {"pe_k": 4, "k_per_pe": 2, "t_k": 6, "ep_row": 3}),         # small: rows over three PEs, the last empty
]


@pytest.mark.parametrize("num_pe, k0, fields", STRADDLING)
def test_softmax_epilogue_reduces_rows_across_pes(num_pe, k0, fields):
    """The epilogue fed the walk's row starts normalises the rows sim.functional normalises: ``ep_row``
    consecutive members of the row group, across the lanes a PE leaves empty."""
    f = {"pe_first": 0, "pe_count": num_pe, "pe_step": 1, "k_base": 0, "k_step": fields["k_per_pe"], "y0": 0,
         "out_h": 1, "t_h": 1, "x0": 0, "out_w": 1, "t_w": 1, **fields}
    start, member = walk_lanes(f, num_pe, k0)
    rng = np.random.default_rng(SEED + k0)
    params = ops.softmax_params(float(rng.uniform(0.01, 0.5)), int(rng.integers(7, 15)))
    table = exp_table(params)
    x = rng.integers(-128, 128, (6, num_pe * k0))
    out_shift = np.full(num_pe * k0, params.out_shift)
    dut = SoftmaxEpilogue(num_pe * k0)
    got, _ = run_epilogue(dut, table, x, start, member, out_shift)
    rows = np.flatnonzero(member).reshape(-1, f["ep_row"])
    assert any(len({lane // k0 for lane in row}) > 1 for row in rows)       # the case straddles
    for row in rows:
        np.testing.assert_array_equal(got[:, row], softmax_rows(x[:, row], table, params.out_shift), err_msg=str(row))


def test_softmax_epilogue_latency_is_the_contracts():
    """The RTL's latency is ``hw.timing.epilogue_latency`` on each configuration's lanes (the store
    unit asserts it too), and it grows with the reductions: two of ``2 ceil(log2(lanes))``."""
    from hw.config import get_config
    from hw.timing import epilogue_latency
    with warnings.catch_warnings():              # the units are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        for name in ("tiny", "small", "e_small", "E"):
            cfg = get_config(name)
            dut = SoftmaxEpilogue(cfg.num_pe * cfg.k0)
            assert dut.latency == epilogue_latency(cfg) == 4 * (cfg.num_pe * cfg.k0 - 1).bit_length() + 7, name
        del dut
        gc.collect()


@pytest.mark.parametrize("cycles", [0, 1, 2, 5])
def test_delay_buffer_delays_by_its_cycles(cycles):
    """A DelayBuffer's ``q`` is its ``d`` of ``cycles`` cycles ago, every cycle (a memory from 2)."""
    dut = DelayBuffer(unsigned(12), cycles)
    values = [(v * 2654435761) % 4096 for v in range(40)]
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(dut.d, v)
            got.append(ctx.get(dut.q))
            await ctx.tick()

    sim = Simulator(clocked(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got[cycles:] == values[:len(values) - cycles]


# ---- the store unit's epilogue in the accelerator ---------------------------------------------

def epilogue_case(layer, cfg, row: int, seed: int, table=None, ep_shift=None, ep_row=None):
    """(stream, DRAM image, sim.functional's image or its StreamError, the contract's cycles) of
    ``layer`` mapped with a softmax epilogue over rows of ``row`` (its exponentials' table and the
    output shift in every parameter entry); its STOREs' rows then changed to ``ep_row`` if given."""
    from dataclasses import replace

    from hw.isa import StreamError, make, Op
    from hw.timing import schedule
    from mapper.lower import map_layer
    from mapper.program import _table_bytes, pack_params
    from sim.functional import Machine, _place, layer_data

    lowered = map_layer(layer, cfg, softmax_row=row)[0][0]
    stream = lowered.stream + [make(Op.END)]
    assert any(i.op == Op.STORE and i.f["ep_row"] == row for i in stream)
    if ep_row is not None:
        stream = [replace(i, f={**i.f, "ep_row": ep_row}) if i.op == Op.STORE and i.f["ep_row"] else i
                  for i in stream]
    rng = np.random.default_rng(seed)
    d = layer_data(layer, rng)
    params = ops.softmax_params(float(rng.uniform(0.02, 0.3)), int(rng.integers(7, 15)))
    dram = _place(lowered, layer, d, cfg)
    pl = lowered.layout
    entries = pack_params(d["bias"], d["mult"], d["shift"], params.out_shift if ep_shift is None else ep_shift)
    dram[pl.params:pl.params + entries.size] = entries.ravel()
    tbl = _table_bytes(exp_table(params) if table is None else table)
    dram[pl.table:pl.table + tbl.size] = tbl
    want = dram.copy()
    try:
        Machine(cfg, want).run(stream)
    except StreamError as e:
        want = e
    return stream, dram, want, schedule(stream, cfg).total_cycles


#: The first case is ``slow``: make test meets rows of 8 on tiny in the tiny cosimulation
#: (attn_qk_softmax and SegFormer-B0's attention), and make test is near its 15 minutes.
EPILOGUE_LAYERS = [   # (configuration, Q.K^T of B heads: M queries, K head channels, N keys = row)
    pytest.param("tiny", 1, 6, 4, 8, marks=pytest.mark.slow),      # rows of 8 across both PEs' 4 lanes
    ("tiny", 2, 5, 4, 3),          # rows of 3, two heads
    pytest.param("small", 1, 4, 8, 7, marks=pytest.mark.slow),      # two row groups of two PEs, rows of 7
    pytest.param("e_small", 1, 3, 8, 49, marks=pytest.mark.slow),    # Swin's rows of 49 across both PEs' 32 lanes
]


REFUSALS = {"out_shift": {"ep_shift": 15}, "table": {"table": np.zeros(256, np.int64)}}


def refused_case(cfg, what: str):
    """An output shift outside 7..14, or a table whose exponential of 0 is 0: epilogue_case's."""
    from mapper.ir import MatMul
    return epilogue_case(MatMul("scores", "encoder", 1, 3, 4, 8), cfg, 8, SEED, **REFUSALS[what])


@pytest.mark.parametrize("cfg_name, batch, m, k, n", EPILOGUE_LAYERS)
def test_store_epilogue_bit_and_cycle_exact(cfg_name, batch, m, k, n, tiny_batch):
    """A Q.K^T product whose STOREs normalise its rows (the fused attention scores) runs in the
    accelerator in Amaranth's simulator: the DRAM image sim.functional writes, in the cycle the
    timing contract gives."""
    from hw.config import get_config
    from mapper.ir import MatMul
    from test_rtl_accelerator import first_mismatch

    cfg = get_config(cfg_name)
    layer = MatMul("scores", "encoder", batch, m, k, n)
    stream, dram, want, cycles = epilogue_case(layer, cfg, n, SEED + m)
    assert isinstance(want, np.ndarray), want
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)       # Amaranth's simulator writes e_small's widest values as decimal text
    try:
        res = tiny_batch.runner(("exact", cfg_name, batch, m, k, n))(cfg, stream, dram, max_cycles=cycles + 50)
    finally:
        sys.set_int_max_str_digits(previous)
    assert res["error"] == 0, f"error {res['code']} at instruction {res['pc']}"
    assert res["done"] == 1 and res["cycle"] == cycles, f"done {res['done']} at {res['cycle']}, contract {cycles}"
    if not np.array_equal(dram, want):
        pytest.fail(first_mismatch(f"{layer.name} vs sim.functional", dram, want))


#: Two heads of one key on tiny, a head a PE (k_per_pe 1 of K0 4), their STOREs' rows made 2: a row
#: straddles PE 0's lane 0 and PE 1's, PE 0's empty lanes between (the mapper keeps rows in a head).
STRADDLE = (2, 3, 4, 1, 2)      # (heads, queries, head channels, keys, the rows made)


def straddle_case(cfg):
    from mapper.ir import MatMul
    batch, m, k, n, row = STRADDLE
    return epilogue_case(MatMul("scores", "encoder", batch, m, k, n), cfg, n, SEED + m, ep_row=row)


def test_store_epilogue_rows_straddling_pes(tiny_batch):
    """Rows across two PEs' partial lane sets: the store unit's walk starts no row on the lanes a PE
    leaves empty, and the accelerator writes sim.functional's image in the contract's cycle."""
    from hw.config import get_config
    from hw.isa import Op
    from test_rtl_accelerator import first_mismatch

    cfg = get_config("tiny")
    stream, dram, want, cycles = straddle_case(cfg)
    assert isinstance(want, np.ndarray), want
    assert all(i.f["k_per_pe"] % i.f["ep_row"] and i.f["pe_count"] > 1 for i in stream if i.op == Op.STORE)
    res = tiny_batch.runner(("straddle",))(cfg, stream, dram, max_cycles=cycles + 50)
    assert res["error"] == 0, f"error {res['code']} at instruction {res['pc']}"
    assert res["done"] == 1 and res["cycle"] == cycles, f"done {res['done']} at {res['cycle']}, contract {cycles}"
    if not np.array_equal(dram, want):
        pytest.fail(first_mismatch("rows across PEs vs sim.functional", dram, want))


@pytest.mark.parametrize("what", list(REFUSALS))
def test_store_epilogue_refuses_what_the_simulator_refuses(what, tiny_batch):
    """An output shift outside 7..14, or a table whose exponential of 0 is 0: DATA, nothing written."""
    from hw.config import get_config
    from hw.isa import ErrorCode

    cfg = get_config("tiny")
    stream, dram, want, cycles = refused_case(cfg, what)
    assert not isinstance(want, np.ndarray) and want.code == ErrorCode.DATA
    before = dram.copy()
    res = tiny_batch.runner(("refused", what))(cfg, stream, dram, max_cycles=cycles + 50)
    assert res["error"] == 1 and res["code"] == ErrorCode.DATA, res
    np.testing.assert_array_equal(dram, before)


def attention_through_gb(cfg, batch: int, m: int, k: int, n: int, seed: int):
    """Q.K^T of ``batch`` heads whose STOREs normalise rows of ``n`` keys into the global buffer
    (``dst_gb`` with ``ep_row``), then .V reading those scores from there (``src_gb``), a FENCE
    between: (stream, DRAM image, where .V's output is, the same chain's output with the scores
    through DRAM, as ``sim.functional`` and the golden model compute it)."""
    from dataclasses import replace

    from hw.isa import Op, make
    from hw.timing import gb_resident_pitch
    from mapper.ir import MatMul
    from mapper.lower import map_layer
    from sim.functional import _place, golden_output, layer_data
    from test_rtl_accelerator import shifted_in_dram

    scores, context = MatMul("scores", "encoder", batch, m, k, n), MatMul("context", "encoder", batch, m, n, k)
    pitch = gb_resident_pitch(batch * n, cfg)
    (low1, n1), = map_layer(scores, cfg, softmax_row=n, out_gb=pitch)
    (low2, n2), = map_layer(context, cfg, in_gb=pitch)
    assert n1 == n2 == 1
    _, img1, through_dram, _ = epilogue_case(scores, cfg, n, seed)     # its operands; the scores into DRAM
    assert isinstance(through_dram, np.ndarray), through_dram
    in_dram = map_layer(scores, cfg, softmax_row=n)[0][0].layout
    assert replace(low1.layout, output=0, out_pitch=0) == replace(in_dram, output=0, out_pitch=0)
    d2 = layer_data(context, np.random.default_rng(seed + 1))
    img2 = _place(low2, context, d2, cfg)
    shift = img1.size
    stream = [*low1.stream, make(Op.FENCE), *(shifted_in_dram(i, shift) for i in low2.stream), make(Op.END)]
    stores = [i for i in low1.stream if i.op == Op.STORE]
    assert stores and all(i.dst_gb and i.ep_row == n for i in stores)
    assert all(i.src_gb for i in low2.stream if i.op == Op.LOAD_INP)
    probs = through_dram[in_dram.output:in_dram.output + m * batch * n]
    probs = probs.view(np.int8).reshape(m, batch, n).transpose(1, 0, 2)
    gold = golden_output(context, {**d2, "x": probs}, cfg)
    return stream, np.concatenate([img1, img2]), shift + low2.layout.output, gold


GB_EPILOGUE_LAYERS = [     # (configuration, heads, queries, head channels, keys = row); as above
    ("tiny", 2, 2, 4, 4),          # two heads of rows of 4, a pixel a beat: .V gathers the second's at a word
    ("tiny", 1, 5, 4, 4),          # rows of 4, a pixel in two beats
    # (rows of 3 of two heads: .V would gather the second head's scores at a byte that is no
    # word's first, which the global buffer refuses, hw.timing.load_inp_gb_unaligned)
    pytest.param("small", 1, 4, 8, 7, marks=pytest.mark.slow),     # two row groups of two PEs
]


@pytest.mark.parametrize("cfg_name, batch, m, k, n", GB_EPILOGUE_LAYERS)
def test_store_epilogue_into_the_global_buffer(cfg_name, batch, m, k, n, tiny_batch):
    """Attention's scores stay on chip: Q.K^T's STOREs normalise rows into the global buffer and .V
    gathers them from there.  The RTL writes what sim.functional writes, in the contract's cycle,
    and .V's output equals the same chain's with the scores through DRAM."""
    from hw.config import get_config
    from test_rtl_accelerator import assert_chain_exact

    cfg = get_config(cfg_name)
    stream, dram, out, gold = attention_through_gb(cfg, batch, m, k, n, SEED + m)
    assert_chain_exact(cfg, stream, dram, out, gold, "scores through the global buffer",
                       run=tiny_batch.runner(("gb", cfg_name, batch, m, k, n)))


def batch_keys() -> list[tuple]:
    """The cases make test runs on tiny (no marks), by key: each test's kind and parameters."""
    def fast(params):
        return [p for p in params if isinstance(p, tuple) and p[0] == "tiny"]
    exact = [("exact", *p) for p in fast(EPILOGUE_LAYERS)]
    return (exact + [("refused", what) for what in REFUSALS] + [("gb", *p) for p in fast(GB_EPILOGUE_LAYERS)]
            + [("straddle",), ("again", *exact[0][1:])])     # test_a_reset_starts_the_batchs_next_case_afresh


def tiny_program(key: tuple) -> tuple:
    """Case ``key`` of ``batch_keys`` as its test builds it: (stream, DRAM image, cycles allowed)."""
    from hw.config import get_config
    from mapper.ir import MatMul
    from test_rtl_accelerator import race_free_cycles

    cfg = get_config("tiny")
    if key[0] in ("refused", "straddle"):
        stream, dram, _, cycles = refused_case(cfg, key[1]) if key[0] == "refused" else straddle_case(cfg)
        return stream, dram, cycles + 50
    _, _, batch, m, k, n = key
    if key[0] in ("exact", "again"):
        stream, dram, _, cycles = epilogue_case(MatMul("scores", "encoder", batch, m, k, n), cfg, n, SEED + m)
        return stream, dram, cycles + 50
    stream, dram, _, _ = attention_through_gb(cfg, batch, m, k, n, SEED + m)
    return stream, dram, race_free_cycles(stream, cfg) + 50


class TinyBatch:
    """The cases of ``batch_keys`` on one Accelerator in one simulation
    (``test_rtl_accelerator.run_programs``, a reset between two): the simulator's compile is most
    of each case's time.  The first case asked for runs them all."""

    def __init__(self):
        self.results = None          # key -> (program, its result, its DRAM image after the run)

    def runner(self, key: tuple):
        """``run_accelerator`` for case ``key``: the batch's run when it is one of the batch's
        (after checking that the test's stream, image and cycles are the batch's), else its own."""
        from test_rtl_accelerator import run_accelerator

        if key not in batch_keys():
            return run_accelerator

        def run(cfg, stream, dram, max_cycles):
            (st, img, allowed), res, after = self._run()[key]
            assert cfg.name == "tiny" and stream == st and max_cycles == allowed and np.array_equal(dram, img)
            dram[:] = after
            return res
        return run

    def _run(self) -> dict:
        from hw.config import get_config
        from test_rtl_accelerator import run_programs

        if self.results is None:
            programs = {key: tiny_program(key) for key in batch_keys()}
            images = [img.copy() for _, img, _ in programs.values()]
            runs = run_programs(get_config("tiny"), [(st, image, allowed) for (st, _, allowed), image
                                                     in zip(programs.values(), images)])
            self.results = {key: (prog, res, image)
                            for (key, prog), res, image in zip(programs.items(), runs, images)}
        return self.results


@pytest.fixture(scope="module")
def tiny_batch() -> TinyBatch:
    return TinyBatch()


def test_a_reset_starts_the_batchs_next_case_afresh(tiny_batch):
    """The batch's last case is its first again, run after every other (the refusals among them,
    which leave the accelerator in error): the same result and DRAM image, so a case of the batch
    does not see its predecessors'."""
    first, again = batch_keys()[0], batch_keys()[-1]
    assert again == ("again", *first[1:])
    results = tiny_batch._run()
    _, res, image = results[first]
    _, res_again, image_again = results[again]
    assert res["done"] == 1 and {k: v for k, v in res.items() if k != "seconds"} == \
        {k: v for k, v in res_again.items() if k != "seconds"}
    np.testing.assert_array_equal(image, image_again)


def test_gb_epilogue_cases_take_several_beats_a_pixel():
    """The cases above cover a pixel written in one beat and in several (``store_gb_lanes``), where
    the epilogue's results are held for the later beats."""
    from hw.config import get_config
    from hw.isa import Op
    from hw.timing import store_gb_lanes

    beats = set()
    for case in GB_EPILOGUE_LAYERS:
        cfg_name, batch, m, k, n = getattr(case, "values", case)
        cfg = get_config(cfg_name)
        stream = attention_through_gb(cfg, batch, m, k, n, SEED + m)[0]
        beats |= {store_gb_lanes(i.f, cfg) for i in stream if i.op == Op.STORE and i.dst_gb}
    assert 1 in beats and max(beats) > 1, beats
