"""mapper.bands: chains of MAC layers run in row bands through the global buffer (issue 18).

The rule that finds chains, the bands' rows at the grid's edges, programs that run chains in
bands bit-exactly and are timed by the simulator cycle for cycle, and the cost model's choice.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from hw.config import get_config
from hw.isa import Op
from hw.timing import schedule
from mapper import bands
from mapper.bands import band_parts, find_chains, plan_chains
from mapper.fusion import plan
from mapper.ir import Activation, Add, Conv2d, Linear, MatMul, Model, Softmax
from mapper.program import build_program
from mapper.quantize import random_qmodel
from mapper.residency import planned
from mapper.workloads import build_model
from sim.functional import check_program
from sim.simulator import simulate

TINY, E_SMALL, E = get_config("tiny"), get_config("e_small"), get_config("E")


def _convs(h: int, *, stride: int = 1, peek: bool = False, output: bool = False, width: int = 6) -> Model:
    """3x3 dense -> 3x3 depthwise (+GELU) -> 1x1 over an h x width grid, then an add: one chain
    unless ``stride`` breaks the depthwise's rows, ``peek`` reads the first output twice or
    ``output`` makes it a network output."""
    a = Conv2d("a", "encoder", 8, 16, h, width, kernel=3, padding=1, relu=True, inputs=("input",))
    dh = (h + 2 - 3) // stride + 1
    dw = Conv2d("dw", "encoder", 16, 16, h, width, kernel=3, padding=1, stride=stride, groups=16, inputs=("a",))
    gelu = Activation("gelu", "encoder", "gelu", inputs=("dw",))
    pw = Conv2d("pw", "encoder", 16, 8, dh, (width + 2 - 3) // stride + 1, inputs=("gelu",))
    layers = [a, dw, gelu, pw]
    if peek:
        layers.append(Conv2d("peek", "encoder", 16, 8, h, width, inputs=("a",)))
    layers.append(Add("sum", "encoder", inputs=("pw", "pw")))
    return Model("convs", "full", (h, width, 8), tuple(layers), outputs=("a",) if output else ())


def _chain_names(model, cfg=TINY):
    steps = plan(model, cfg)
    return [[steps[i].layer.name for i in idx] for idx in find_chains(model, cfg, steps)]


def test_chains_follow_the_rule_not_names():
    assert _chain_names(_convs(7)) == [["a", "dw", "pw"]]
    # a stride-2 depthwise keeps no rows: the chain ends before it, and the 1x1 after it is alone
    assert _chain_names(_convs(8, stride=2)) == []
    # an intermediate read twice, or a network output, stays in DRAM: the chain starts after it
    assert _chain_names(_convs(7, peek=True)) == [["dw", "pw"]]
    assert _chain_names(_convs(7, output=True)) == [["dw", "pw"]]


def test_a_kernel_run_a_tap_at_a_time_is_in_no_chain():
    """A depthwise 13x13 on tiny (169 taps, 128 weight rows: ``Problem.per_tap``) keeps rows like a
    3x3 but runs on shifted windows, as a dilated kernel does: no chain holds it."""
    a = Conv2d("a", "encoder", 8, 16, 7, 6, kernel=3, padding=1, relu=True, inputs=("input",))
    big = Conv2d("dw", "encoder", 16, 16, 7, 6, kernel=13, padding=6, groups=16, inputs=("a",))
    pw = Conv2d("pw", "encoder", 16, 8, 7, 6, inputs=("dw",))
    model = Model("big", "full", (7, 6, 8), (a, big, pw, Add("sum", "encoder", inputs=("pw", "pw"))))
    assert _chain_names(model) == []
    assert _chain_names(_convs(7)) == [["a", "dw", "pw"]]          # the 3x3 in its place chains


def test_segformer_chains_are_its_attention_its_mlps_and_its_decoder_head():
    model = build_model("segformer_b0", size=(64, 64))
    names = _chain_names(model, E)
    blocks = [l.name.removesuffix(".mlp.fc1") for l in model.layers if l.name.endswith("mlp.fc1")]
    per_block = [[[f"{b}.attn.qk", f"{b}.attn.av", f"{b}.attn.proj"], [f"{b}.mlp.fc1", f"{b}.mlp.dwconv",
                                                                       f"{b}.mlp.fc2"]] for b in blocks]
    assert names[:-1] == [chain for pair in per_block for chain in pair]
    fuse = model.layer(names[-1][0])
    assert names[-1] == [fuse.name, next(l.name for l in model.layers if fuse.name in l.inputs)]


@pytest.mark.parametrize("h,rows", [(7, 1), (7, 2), (7, 3), (7, 7), (7, 9), (8, 4), (1, 1)])
def test_bands_cover_the_grid_with_their_halos(h, rows):
    """The last layer's bands partition the rows; each layer writes what the next one reads (its
    output band widened by the next layer's halo, clipped to the grid); a k x k layer's problem
    reads its slot's rows and computes the band's rows in the slot's coordinates."""
    model = _convs(h)
    steps = plan(model, TINY)
    members = [steps[i] for i in find_chains(model, TINY, steps)[0]]
    bands = band_parts(members, TINY, (h, 6), rows, [32, 32])
    last = [(b[-1].out_row0, b[-1].out_row0 + b[-1].problem.oh) for b in bands]
    assert last == [(a, min(a + rows, h)) for a in range(0, h, rows)]
    for band in bands:
        for part in band:
            p = part.problem
            if p.kh == 3:
                assert (p.h, p.row0) == (min(part.out_row0 + p.oh + 1, h) - part.in_row0,
                                          part.out_row0 - part.in_row0)
                assert part.in_row0 == max(part.out_row0 - 1, 0) and p.band_out
            else:
                assert (part.in_row0, p.h) == (part.out_row0, p.oh)
        for prev, nxt in zip(band, band[1:]):        # the slot holds exactly the next layer's input
            assert (prev.out_row0, prev.problem.oh) == (nxt.in_row0, nxt.problem.h)


def _program(model, cfg, rows, seed=5):
    q = random_qmodel(model, seed)
    x = np.random.default_rng(seed).integers(-128, 128, size=model.input).astype(np.int8)
    return q, x, build_program(q, cfg, image=x, band_rows=rows)


@pytest.mark.parametrize("h,rows", [(7, 1), (7, 3), (7, 7), (8, 3), (8, 8), (1, 1)])
def test_band_chains_are_bit_exact_and_timed_as_they_run(h, rows):
    """First and last bands (padding at the slot's edges), one band, bands not dividing the rows,
    odd heights: every tensor the program writes equals the golden model's, the intermediates
    never touch DRAM, and the simulator times the program cycle for cycle."""
    model = _convs(h)
    q, x, program = _program(model, TINY, rows)
    [chain] = [c.step.chain for c in program.steps if c.step.action == "chain"]
    assert chain.names == ("a", "dw", "pw") and len(chain.bands) == -(-h // min(rows, h))
    assert "a" not in program.buffers and "gelu" not in program.buffers
    stores = [i for i in program.stream if i.op == Op.STORE]
    assert sum(s.f["dst_gb"] for s in stores) > 0
    assert check_program(program, q, x)["tensors"] >= 2
    assert schedule(program.stream, TINY).total_cycles == simulate(model, TINY, band_rows=rows).total_cycles
    # the report's mapping text counts in the singular for one ("1 band(s) of 1 row(s)" before)
    said = {(7, 1): "7 bands of 1 row,", (8, 8): "1 band of 8 rows,", (1, 1): "1 band of 1 row,"}.get((h, rows))
    assert said is None or f": {said}" in chain.describe(), chain.describe()


def test_linear_chains_band_tokens():
    """A chain of linear layers (Swin's MLP) is banded over its tokens."""
    fc1 = Linear("fc1", "encoder", 10, 16, 64, inputs=("input",))
    gelu = Activation("gelu", "encoder", "gelu", inputs=("fc1",))
    fc2 = Linear("fc2", "encoder", 10, 64, 16, inputs=("gelu",))
    model = Model("mlp", "full", (10, 1, 16), (fc1, gelu, fc2, Add("sum", "encoder", inputs=("fc2", "input"))))
    q, x, program = _program(model, TINY, 3)
    [chain] = [c.step.chain for c in program.steps if c.step.action == "chain"]
    assert chain.grid == (10, 1) and [b[-1].problem.oh * b[-1].problem.ow for b in chain.bands] == [3, 3, 3, 1]
    assert check_program(program, q, x)["tensors"] >= 2


def _attention(tokens: int, heads: int = 2, d: int = 8) -> Model:
    """SegFormer's attention on ``tokens`` queries (as many keys; a head's scores are whole C0
    words when they are 32, as gathers from the buffer read): q and kv, q.k^T with its softmax,
    .v and the projection, then a residual add."""
    dim, keys = heads * d, tokens
    q = Linear("q", "encoder", tokens, dim, dim, inputs=("input",))
    kv = Linear("kv", "encoder", keys, dim, 2 * dim, inputs=("input",))
    qk = MatMul("qk", "encoder", heads, tokens, d, keys, inputs=("q", "kv"), b_layout="nk")
    sm = Softmax("softmax", "encoder", inputs=("qk",), row=keys)
    av = MatMul("av", "encoder", heads, tokens, keys, d, inputs=("softmax", "kv"), b_offset=dim, b_layout="kn")
    proj = Linear("proj", "encoder", tokens, dim, dim, inputs=("av",))
    return Model("attn", "full", (tokens, 1, dim), (q, kv, qk, sm, av, proj, Add("sum", "encoder", inputs=("proj", "input"))))


@pytest.mark.parametrize("tokens,rows", [(32, 5), (32, 32), (32, 1), (64, 24)])
def test_attention_is_banded_over_its_queries(tokens, rows):
    """q.k^T with its softmax epilogue, .v and the projection run band by band of query rows: the
    scores never touch DRAM, the keys and values are read whole by every band, every tensor the
    program writes equals the golden model's and the simulator times it cycle for cycle."""
    model = _attention(tokens)
    q, x, program = _program(model, E_SMALL, rows)     # tiny and small take the softmax as a VEC pass
    [chain] = [c.step.chain for c in program.steps if c.step.action == "chain"]
    assert chain.names == ("qk", "av", "proj") and chain.grid == (tokens, 1)
    assert [b[-1].problem.oh * b[-1].problem.ow for b in chain.bands] == \
        [min(rows, tokens - a) for a in range(0, tokens, rows)]
    assert "softmax" not in program.buffers and "av" not in program.buffers
    assert any(i.op == Op.STORE and i.f["ep_row"] and i.f["dst_gb"] for i in program.stream)
    assert check_program(program, q, x)["tensors"] >= 2
    assert schedule(program.stream, E_SMALL).total_cycles == simulate(model, E_SMALL, band_rows=rows).total_cycles


def test_a_later_products_second_operand_lives_in_dram_through_the_chain():
    """Keys and values of their own, computed before q, which joins the chain: only the chain's
    later products read them, band after band, so their DRAM buffers must outlive its last band
    (they were freed after their producers, and the chain's output written over the values)."""
    t, dim = 32, 64             # heads of 32 channels: whole words, as gathers from a slot read them
    layers = (Linear("v", "encoder", t, dim, dim, inputs=("input",)),
              Linear("k", "encoder", t, dim, dim, inputs=("input",)),
              Linear("q", "encoder", t, dim, dim, inputs=("input",)),
              MatMul("qk", "encoder", 2, t, 32, t, inputs=("q", "k"), b_layout="nk"),
              Softmax("softmax", "encoder", inputs=("qk",), row=t),
              MatMul("av", "encoder", 2, t, t, 32, inputs=("softmax", "v"), b_layout="kn"),
              Linear("proj", "encoder", t, dim, dim, inputs=("av",)),
              Add("sum", "encoder", inputs=("proj", "input")))
    model = Model("qkv", "full", (t, 1, dim), layers)
    q, x, program = _program(model, E_SMALL, 5)
    assert [c.step.chain.names for c in program.steps if c.step.action == "chain"] == [("q", "qk", "av", "proj")]
    assert check_program(program, q, x)["tensors"] >= 2


def test_a_product_joins_a_chain_only_reading_its_operand_from_channel_0():
    """A chain hands a product its first operand in a slot from channel 0: a product reading it
    from a later channel (q beside another tensor's channels) starts a chain instead."""
    def model(a_offset):
        k = Linear("k", "encoder", 32, 16, 16, inputs=("input",))
        qx = Linear("qx", "encoder", 32, 16, 32, inputs=("input",))
        qk = MatMul("qk", "encoder", 2, 32, 8, 32, inputs=("qx", "k"), a_offset=a_offset, b_layout="nk")
        proj = Linear("proj", "encoder", 32, 64, 16, inputs=("qk",))
        return Model("q", "full", (32, 1, 16), (k, qx, qk, proj))
    assert _chain_names(model(0), E) == [["qx", "qk", "proj"]]
    assert _chain_names(model(16), E) == [["qk", "proj"]]
    q, x, program = _program(model(16), E_SMALL, 5)     # the first member reads DRAM from its channel
    assert [c.step.chain.names for c in program.steps if c.step.action == "chain"] == [("qk", "proj")]
    assert check_program(program, q, x)["tensors"] >= 2


def test_a_run_that_does_not_pay_whole_gives_its_longest_paying_parts(monkeypatch):
    """A run of chainable layers is taken whole when it pays, else its longest parts that pay (on
    SegFormer-B2's stage 1, fc1 -> dwconv of fc1 -> dwconv -> fc2), and again on either side."""
    pays = {(1, 2), (3, 4), (2, 3, 4)}
    monkeypatch.setattr(bands, "_best", lambda members, idx, cfg, band_rows=0:
                        SimpleNamespace(steps=tuple(idx)) if tuple(idx) in pays else None)
    assert [c.steps for c in bands._paying([None] * 6, [0, 1, 2, 3, 4, 5], E, 0)] == [(2, 3, 4)]
    pays.discard((2, 3, 4))
    assert [c.steps for c in bands._paying([None] * 6, [0, 1, 2, 3, 4, 5], E, 0)] == [(1, 2), (3, 4)]
    pays.add((0, 1, 2, 3, 4, 5))
    assert [c.steps for c in bands._paying([None] * 6, [0, 1, 2, 3, 4, 5], E, 0)] == [(0, 1, 2, 3, 4, 5)]


def test_chains_are_taken_only_when_they_pay():
    """The cost model: a chain is taken at its fastest band height when that beats its layers one by
    one, and ``fuse=False`` takes none (today's layer-by-layer program)."""
    model = build_model("segformer_b0", size=(64, 64))
    steps, _ = planned(model, E_SMALL)
    chains = [st.chain for st in steps if st.action == "chain"]
    assert chains and all(c.cycles < c.layer_cycles for c in chains)
    assert all(c.gb_bytes <= E_SMALL.global_buf_bytes for c in chains)
    # one band of the whole grid is left to the residency (its streams, and it may keep more)
    assert all(len(c.bands) > 1 for c in chains)
    found = find_chains(model, E_SMALL, plan(model, E_SMALL))
    assert len(chains) <= len(found)
    # a buffer too small for any slot: no chain
    small = E.replace(global_buf_bytes=1024)
    assert plan_chains(model, small, plan(model, small))[1] == []
    assert not any(st.action in ("chain", "banded") for st in planned(model, E, fuse=False)[0])


def test_the_report_times_chains_as_their_rows_with_memory_no_limit():
    """``band_chains`` gives the cycles the chain's row has and its layers one by one timed the
    same way, with memory no limit too (the planner's figures are for the configured DRAM)."""
    model = build_model("segformer_b0", size=(32, 32))
    for ideal in (False, True):
        res = simulate(model, get_config("tiny"), band_rows=3, ideal_memory=ideal)
        rows = {r.name: r.cycles for r in res.layers}
        chains = res.extra["band_chains"]
        assert chains and all(c["cycles"] == rows[c["layers"][0]] for c in chains)
        if ideal:
            assert all(c["layer_by_layer_cycles"] < plain["layer_by_layer_cycles"] for c, plain in zip(chains, real))
        real = chains


@pytest.mark.parametrize("bus", [1, pytest.param(2, marks=pytest.mark.slow)])     # 2: the same rule, 14 s
def test_a_bus_narrower_than_c0_keeps_every_tensor_in_dram(bus):
    """The global buffer's banks hold whole C0 rows only on a bus of C0 bytes or more
    (``hw.timing.gb_holds_tensors``): on a narrower one (timed, not built) no chain and no resident
    tensor is planned, and the network is timed instead of dividing by zero."""
    cfg = get_config("tiny", gb_bus_bytes_per_cycle=bus)
    model = build_model("segformer_b0", size=(32, 32))
    steps, resident = planned(model, cfg)
    assert resident == {} and not any(st.action in ("chain", "banded") for st in steps)
    assert simulate(model, cfg).total_cycles > simulate(model, get_config("tiny")).total_cycles


def test_the_text_table_marks_a_chains_row_as_the_whole_chain():
    """``make sim``'s table showed a chain's first layer (SegFormer's attn.qk, with qk + av + proj's
    MACs) as an ordinary row whose bound said ``compute``; only the CSV's mapping said "band chain".
    Its row is marked now, and a line under the table says the mark's row carries the whole chain."""
    from sim.run import CHAIN_MARK, build_report, format_table
    for model, rows in ((build_model("segformer_b0", size=(32, 32)), 3), (_convs(7), 2)):
        doc = build_report(simulate(model, TINY, band_rows=rows), "tiny")
        chains = doc["band_chains"]
        assert chains
        lines = format_table(doc).splitlines()
        marked = [line.split()[0] for line in lines[2:] if line.split()[1:2] == [CHAIN_MARK]]
        assert marked == [c["layers"][0] for c in chains]
        note = lines[-1]
        assert note.startswith(f"{CHAIN_MARK} first layer of a band chain") and "carries the whole chain" in note
        sizes = {len(c["layers"]) for c in chains}
        assert (f"{len(chains)} chain" in note) and all(str(n) in note for n in sizes), note
        if len(chains) == 1:
            assert " -> ".join(chains[0]["layers"]) in note, note


def test_rows_without_cycles_start_where_their_work_is_done():
    """A banded layer's row (and a GELU's fused into one) gave the chain's end as its
    ``start_cycle``: the plan's order puts it after the chain's row, which carries the cycles.
    Such rows start where the step that does their work starts."""
    model, rows = _convs(7), 2
    res = simulate(model, TINY, band_rows=rows)
    start = {r.name: r.start_cycle for r in res.layers}
    steps = {st.layer.name: st for st in planned(model, TINY, band_rows=rows)[0]}
    assert steps["dw"].action == "banded" and steps["gelu"].into == "dw"
    assert start["dw"] == start["gelu"] == start["pw"] == start["a"] < start["sum"]
    for r in res.layers:
        doer = steps[r.name]
        while doer.into:
            doer = steps[doer.into]
        assert r.start_cycle == start[doer.layer.name], r.name
