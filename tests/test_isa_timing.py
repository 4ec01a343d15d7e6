"""The ISA encoding round-trips, malformed streams are refused with their offset, and the
timing contract behaves as documented."""

import random

import pytest
from amaranth.hdl import Module, Signal, Value
from amaranth.sim import Simulator

from hw.config import get_config
from hw.isa import FIELDS, INSN_BYTES, Act, ErrorCode, Op, StreamError, VecOp, decode, decode_stream, disassemble, encode, encode_stream, make
from hw.timing import GEMM_PIPELINE, QUEUE_DEPTH, RUN_OVERHEAD, TOKEN_FIFOS, TOKEN_LIMIT, latency, schedule, token_dispatch
from mapper.ir import Conv2d
from mapper.lower import MappingError, map_layer, _insn
from mapper.workloads import build_model


def _random_insn(rng, op):
    f = {}
    for name, bits, signed in FIELDS[op]:
        f[name] = rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1)) if signed else rng.randrange(1 << bits)
    if op == Op.VEC:
        f["vec_op"] = rng.choice(list(VecOp))
    deps = " ".join(d for d in ("pop_prev", "pop_next", "push_prev", "push_next") if rng.random() < 0.5)
    return make(op, deps=deps, **f)


@pytest.mark.parametrize("op", list(Op))
def test_encoding_round_trips(op):
    rng = random.Random(int(op))
    for _ in range(50):
        insn = _random_insn(rng, op)
        word = encode(insn)
        assert len(word) == INSN_BYTES
        assert decode(word) == insn


def test_mapper_stream_round_trips_through_binary_and_listing():
    lowered, _ = map_layer(Conv2d("c", "encoder", 8, 8, 6, 6, kernel=3, padding=1), get_config("tiny"))[0]
    data = encode_stream(lowered.stream)
    assert decode_stream(data) == lowered.stream
    listing = disassemble(decode_stream(data))
    assert listing.count("\n") + 1 == len(lowered.stream)
    assert "GEMM" in listing and "LOAD_INP" in listing and "STORE" in listing


def test_malformed_streams_name_the_offset():
    good = encode_stream([make(Op.NOP), make(Op.END)])
    with pytest.raises(StreamError, match="truncated instruction at byte offset 32"):
        decode_stream(good[:-5])
    bad_op = bytearray(good)
    bad_op[32] = 0x0F
    with pytest.raises(StreamError, match="unknown opcode 15 at byte offset 32"):
        decode_stream(bytes(bad_op))
    reserved = bytearray(good)
    reserved[63] = 0x80
    with pytest.raises(StreamError, match="reserved bits"):
        decode_stream(bytes(reserved))
    with pytest.raises(StreamError, match=r"GEMM.out_h = 5000 does not fit 12 unsigned bits"):
        make(Op.GEMM, out_h=5000)
    with pytest.raises(ValueError, match="has no field 'bogus'"):
        make(Op.GEMM, bogus=1)


@pytest.mark.parametrize("fields, refusal", [
    (dict(out_w=1, kh=300, out_h=5000), r"^GEMM.kh = 300 does not fit 8 unsigned bits \(range 0..255\)$"),
    (dict(out_h=5000, bogus=1), r"^GEMM.out_h = 5000 does not fit"),
    (dict(kh=1, bogus=1, out_h=5000), r"^GEMM has no field 'bogus'; fields: acc_addr, accumulate, "),
    (dict(out_h=True), r"^GEMM.out_h = True does not fit"),
    (dict(stride="2"), r"^GEMM.stride = '2' does not fit"),
    (dict(out_h=-1), r"^GEMM.out_h = -1 does not fit"),
])
def test_make_refuses_the_first_bad_field_given(fields, refusal):
    """``make`` checks every field in FIELDS order, then names the first bad one in the order the
    caller gave them (unknown, not an int, a bool, or out of range), as it did field by field."""
    with pytest.raises((StreamError, ValueError), match=refusal):
        make(Op.GEMM, **fields)


def test_make_takes_int_subclasses_in_range():
    """An IntEnum field value (Act, VecOp) is an int in range: made, kept as given."""
    insn = make(Op.STORE, act=Act.RELU)
    assert insn.act is Act.RELU and encode(insn) == encode(make(Op.STORE, act=1))
    with pytest.raises(StreamError, match=r"^LOAD_INP.y0 = -40000 does not fit 16 signed bits"):
        make(Op.LOAD_INP, y0=-40000)


def test_schedule_refuses_broken_token_protocols():
    cfg = get_config("tiny")
    with pytest.raises(StreamError, match="pops a l2c token that no earlier instruction pushed"):
        schedule([make(Op.GEMM, deps="pop_prev", out_h=1, out_w=1, kh=1, kw=1, n_cblk=1), make(Op.END)], cfg)
    with pytest.raises(StreamError, match="unconsumed tokens"):
        schedule([make(Op.GEMM, deps="push_next", out_h=1, out_w=1, kh=1, kw=1, n_cblk=1), make(Op.END)], cfg)
    with pytest.raises(StreamError, match="has no END"):
        schedule([make(Op.NOP)], cfg)
    with pytest.raises(StreamError, match="LOAD queue has no such neighbour"):
        schedule([make(Op.LOAD_GB, deps="push_prev", n_bytes=8), make(Op.END)], cfg)


def _token_rule_inputs(count, flag) -> dict:
    """``token_dispatch``'s arguments, each count made by ``count()`` and each flag by ``flag()``."""
    return {"counts": {n: count() for n in TOKEN_FIFOS}, "writers": (flag(), flag()),
            "pops": {n: flag() for n in TOKEN_FIFOS}, "pushes": {n: flag() for n in TOKEN_FIFOS},
            "unlinked": flag(), "claims": (flag(), flag()), "is_end": flag(), "clears": flag()}


def _leaves(inputs: dict) -> list:
    return [x for v in inputs.values() for x in (v.values() if isinstance(v, dict) else v if isinstance(v, tuple) else [v])]


def _token_rule_outputs(inputs: dict) -> list:
    after, held, refusals = token_dispatch(**inputs)
    return [*after.values(), *held, *(bad for bad, _ in refusals)]


def test_token_rule_is_the_same_on_integers_and_signals():
    """``token_dispatch``, which ``schedule`` evaluates on integers and the RTL's dispatcher on its
    registers, gives the same counts, claims and refusals both ways (an operator that meant
    something else on a Python bool than on a 1-bit value would show here), at the limits."""
    rng = random.Random(72)
    cases = [_token_rule_inputs(lambda: rng.choice([0, 1, TOKEN_LIMIT - 1, TOKEN_LIMIT]), lambda: rng.random() < 0.3)
             for _ in range(300)]
    signals = _token_rule_inputs(lambda: Signal(range(TOKEN_LIMIT + 1)), Signal)
    values = _token_rule_outputs(signals)
    outs = [Signal(Value.cast(v).shape()) for v in values]
    m = Module()
    m.d.comb += [o.eq(v) for o, v in zip(outs, values)]
    got = []

    async def bench(ctx):
        for case in cases:
            for sig, v in zip(_leaves(signals), _leaves(case)):
                ctx.set(sig, v)
            got.append([ctx.get(o) for o in outs])

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    want = [[int(v) for v in _token_rule_outputs(case)] for case in cases]
    assert got == want
    refused = [w[len(TOKEN_FIFOS) + 2:] for w in want]
    assert all(map(any, zip(*refused))) and not all(map(any, refused)), "each refusal holds somewhere, none somewhere"


def test_tokens_order_units_and_loads_pipeline():
    cfg = get_config("tiny")
    ld = make(Op.LOAD_GB, deps="push_next", n_bytes=64)
    gemm = make(Op.GEMM, deps="pop_prev", out_h=4, out_w=4, kh=1, kw=1, n_cblk=2)
    s = schedule([ld, gemm, make(Op.END)], cfg)
    assert s.start[1] == s.end[0]                          # the GEMM waited for the load's token
    assert s.end[1] - s.start[1] == latency(gemm, cfg)
    # two loads back to back overlap their DRAM latency: the second starts when the first's transfer ends
    s2 = schedule([make(Op.LOAD_GB, n_bytes=64), make(Op.LOAD_GB, n_bytes=64), make(Op.END)], cfg)
    assert s2.start[1] - s2.start[0] == 64 // cfg.dram_bytes_per_cycle
    assert s2.end[1] - s2.end[0] == 64 // cfg.dram_bytes_per_cycle


def s2l_stream(cfg) -> list:
    """A STORE into the global buffer pushing its token to LOAD (FIFO s2l, ``push_next``) and a
    LOAD_INP gathering those bytes from the buffer that pops it (``pop_prev``): no FENCE between."""
    k = cfg.k0
    store = make(Op.STORE, deps="push_next", pe_count=1, pe_k=1, out_h=1, out_w=2, t_h=1, t_w=2, t_k=k, k_pitch=k,
                 k_per_pe=k, dst_gb=1, dst_addr=0)
    load = make(Op.LOAD_INP, deps="pop_prev", pe_count=1, src_gb=1, src_addr=0, t_h=1, t_w=1, t_c=cfg.c0, n_cblk=1,
                win_h=1, win_w=1)
    return [store, load, make(Op.END)]


def test_store_token_orders_a_later_load():
    """The ring's link STORE -> LOAD: the LOAD_INP starts in the cycle the STORE ends (its data in
    the buffer), not when the load unit is free; popping s2l with none pushed, or leaving one at
    END, is a TOKEN error at the instruction as for the other FIFOs."""
    cfg = get_config("tiny")
    stream = s2l_stream(cfg)
    s = schedule(stream, cfg)
    assert s.start[1] == s.end[0] > schedule([make(Op.LOAD_INP, **stream[1].f), make(Op.END)], cfg).start[0]
    with pytest.raises(StreamError, match="LOAD_INP at byte offset 0 pops a s2l token that no earlier instruction pushed") as e:
        schedule(stream[1:], cfg)
    assert (e.value.code, e.value.index) == (ErrorCode.TOKEN, 0)
    with pytest.raises(StreamError, match=r"END at byte offset 32 with unconsumed tokens \{'s2l': 1\}") as e:
        schedule([stream[0], make(Op.END)], cfg)
    assert (e.value.code, e.value.index) == (ErrorCode.TOKEN, 1)


def test_queue_depth_stalls_dispatch():
    cfg = get_config("tiny")
    gemms = [make(Op.GEMM, out_h=4, out_w=4, kh=1, kw=1, n_cblk=4) for _ in range(QUEUE_DEPTH + 2)]
    s = schedule(gemms + [make(Op.LOAD_GB, n_bytes=8), make(Op.END)], cfg)
    # the load is fetched only once the compute queue has room for every GEMM before it
    assert s.dispatch[-2] >= s.start[1]


def test_network_time_is_sum_of_fenced_layers():
    """Fences drain the machine, so scheduling a whole stream equals the sum of its layers (and
    the cycles of a run outside them: the decode's first stage and END)."""
    cfg = get_config("small")
    model = build_model("segformer_b0", size=(64, 64))
    whole, total = [], 0
    for layer in model.mac_layers[:6]:
        for lowered, n in map_layer(layer, cfg):
            for _ in range(n):
                whole += lowered.stream
                total += lowered.cycles
    assert schedule(whole + [_insn(Op.END)], cfg).total_cycles == total + RUN_OVERHEAD   # decode start, END


def test_configuration_validation_names_the_value():
    with pytest.raises(ValueError, match="c0 must be one of .* not 24"):
        get_config("E", c0=24)
    with pytest.raises(ValueError, match="num_pe must be a positive integer, not 0"):
        get_config("E", num_pe=0)
    with pytest.raises(ValueError, match="dram_bytes_per_cycle must be a positive integer, not -4"):
        get_config("E", dram_bytes_per_cycle=-4)
    with pytest.raises(KeyError, match="unknown configuration 'Z'; choose one of A, B"):
        get_config("Z")
    assert get_config("e") is get_config("E")
    assert get_config("E").macs_per_cycle == 16384


def test_presets_match_table_ii():
    table = {"A": (32, 32, 1024, 64), "E": (16, 32, 128, 32), "M": (64, 16, 32, 16)}
    for name, (pe, k, w, i) in table.items():
        c = get_config(name)
        assert (c.num_pe, c.k0, c.c0, c.weight_buf_bytes // 1024, c.input_buf_bytes // 1024) == (pe, k, k, w, i)


@pytest.mark.parametrize("layer", [Conv2d("big3x3", "encoder", 8, 8, 8, 8, kernel=3, padding=1),
                                   Conv2d("dw3x3", "encoder", 8, 8, 7, 6, kernel=3, padding=1, groups=8),
                                   Conv2d("grouped3x3_s2", "encoder", 8, 4, 7, 7, kernel=3, stride=2, groups=2)],
                         ids=lambda l: l.name)
def test_a_window_wider_than_half_the_input_buffer_runs_a_tap_at_a_time(layer):
    """One output pixel's 3x3 window is 9 rows of C0; half of a 16-row input buffer holds 8.  Such a
    layer was refused ("the input buffer cannot hold the 3x3 input window"): it runs as a dilated
    kernel does, a 1x1 product per tap on a shifted window, bit-exact."""
    from sim.functional import check_layer
    tiny_inp = get_config("tiny", input_buf_bytes=64)          # 16 rows of C0: half holds 8 < 3x3 window
    lowered, _ = map_layer(layer, tiny_inp)[0]
    assert lowered.problem.per_tap and lowered.problem.shifts == 9
    assert check_layer(layer, tiny_inp, seed=5) == layer.out_ch * lowered.problem.oh * lowered.problem.ow


def test_a_kernel_of_more_taps_than_the_weight_buffer_runs_a_tap_at_a_time():
    small_w = get_config("tiny", weight_buf_bytes=256)         # 16 rows per vector MAC < 25 taps
    # 5 columns are more than tiny's 4 input banks can gather, so each tap would be a weight row:
    # more than the buffer holds, the kernel runs a tap at a time (it was refused)
    lowered, _ = map_layer(Conv2d("dw5x5", "encoder", 8, 8, 8, 8, kernel=5, padding=2, groups=8), small_w)[0]
    assert lowered.problem.per_tap and lowered.problem.taps == 1 and lowered.problem.shifts == 25
    # a 3x3 depthwise gathers each kernel row: 3 weight rows fit
    lowered, _ = map_layer(Conv2d("dw3x3", "encoder", 8, 8, 8, 8, kernel=3, padding=1, groups=8), small_w)[0]
    assert lowered.problem.gather and lowered.problem.taps == 3
    # a dense conv folds its taps into channels instead, so it still maps
    lowered, _ = map_layer(Conv2d("w3x3", "encoder", 8, 8, 8, 8, kernel=3, padding=1), small_w)[0]
    assert lowered.problem.fold


def test_mapping_is_deterministic_and_respects_capacities():
    cfg = get_config("E")
    layer = build_model("segformer_b2").layer("Conv2DFuse")
    from mapper import tiling_cache
    from mapper.lower import _map_problem
    with tiling_cache.disabled():          # two searches, not one and a remembered answer
        a = map_layer(layer, cfg)[0][0]
        _map_problem.cache_clear()
        b = map_layer(layer, cfg)[0][0]
    assert a.tiling == b.tiling and a.cycles == b.cycles
    for insn in a.stream:
        if insn.op == Op.GEMM:
            assert insn.acc_addr + insn.out_h * insn.out_w <= cfg.accum_depth
        if insn.op == Op.LOAD_INP:
            assert insn.dst_addr + insn.n_cblk * insn.win_h * insn.win_w <= cfg.input_rows
        if insn.op == Op.LOAD_WGT:
            assert insn.dst_addr + insn.rows <= cfg.weight_rows


def test_contract_refuses_what_the_rtl_refuses():
    cfg = get_config("tiny")
    with pytest.raises(StreamError, match=r"LOAD_WGT at byte offset 0: n_out 5 above K0 = 4"):
        schedule([make(Op.LOAD_WGT, pe_first=0, pe_count=1, pe_step=1, rows=1, n_out=5, chan=4), make(Op.END)], cfg)
    with pytest.raises(StreamError, match=r"GEMM at byte offset 32: accumulator entries 120 \+ 3x3 \(depth 128\)"):
        schedule([make(Op.NOP), make(Op.GEMM, acc_addr=120, out_h=3, out_w=3, kh=1, kw=1, n_cblk=1),
                  make(Op.END)], cfg)
    with pytest.raises(StreamError, match=r"GEMM at byte offset 0: depthwise gather of kw = 5 columns"):
        schedule([make(Op.GEMM, out_h=1, out_w=1, kh=5, kw=5, n_cblk=1, dw=1), make(Op.END)], cfg)
    # a gather makes one step per kernel row: 2 blocks x 3 rows of 4 pixels, plus the pipeline
    assert latency(make(Op.GEMM, out_h=2, out_w=2, kh=3, kw=3, n_cblk=2, dw=1), cfg) == 2 * 3 * 4 + GEMM_PIPELINE
    assert latency(make(Op.GEMM, out_h=2, out_w=2, kh=3, kw=3, n_cblk=2), cfg) == 2 * 9 * 4 + GEMM_PIPELINE
    with pytest.raises(StreamError, match="STORE at byte offset 0: PE set"):
        schedule([make(Op.STORE, pe_first=0, pe_count=2, pe_step=0, pe_k=1), make(Op.END)], cfg)
    pushes = [make(Op.GEMM, deps="push_prev", out_h=1, out_w=1, kh=1, kw=1, n_cblk=1) for _ in range(9)]
    with pytest.raises(StreamError, match="more than 8 c2l tokens outstanding"):
        schedule(pushes + [make(Op.END)], cfg)
    with pytest.raises(ValueError, match="dram_latency must be an integer of at least 2"):
        get_config("tiny", dram_latency=1)


@pytest.mark.parametrize("num_pe", [1, 2, 5, 16, 64])
def test_pe_hits_counts_exactly_the_legal_sets(num_pe):
    """The counted PE set (``hw.timing.pe_hits``, the RTL's decode) is ``pe_first + i * pe_step``,
    ``i < pe_count``, for every legal set of the array."""
    from hw.timing import pe_hits, pe_members, pe_set_bad, pe_set_last

    checked = 0
    for first in range(num_pe):
        for step in range(num_pe):
            for count in range(1, num_pe + 1):
                f = {"pe_first": first, "pe_count": count, "pe_step": step}
                if pe_set_bad(f, num_pe, pe_set_last(f)):
                    continue
                want = {first + i * step for i in range(count)}
                assert {p for p, hit in enumerate(pe_hits(f, num_pe)) if hit} == want, f
                assert pe_members(f, num_pe) == sorted(want)
                checked += 1
    assert checked >= num_pe


@pytest.mark.parametrize("num_pe", [1, 5, 64])
def test_pe_positions_are_column_and_row_group(num_pe):
    """PE ``p`` of a STORE of ``pe_k`` columns is column ``p mod pe_k`` of row group ``p div pe_k``."""
    from hw.timing import pe_positions

    for pe_k in range(1, num_pe + 3):
        assert pe_positions(num_pe, pe_k) == [(p % pe_k, p // pe_k) for p in range(num_pe)], pe_k


@pytest.mark.parametrize("num_pe", [1, 3, 16])
def test_pe_hits_of_any_fields_are_the_members_inside_the_array(num_pe):
    """Illegal sets too (a member past the last PE, ``pe_step`` 0 with several members, no member):
    ``pe_hits`` selects exactly the members that are PEs of the array."""
    from hw.timing import pe_hits

    for first in range(num_pe + 2):
        for step in range(num_pe + 2):
            for count in range(num_pe + 3):
                f = {"pe_first": first, "pe_count": count, "pe_step": step}
                want = {first + i * step for i in range(count)} & set(range(num_pe))
                assert {p for p, hit in enumerate(pe_hits(f, num_pe)) if hit} == want, f


@pytest.mark.parametrize("config", ["tiny", "E"])
def test_no_store_is_free_sooner_than_its_setup(config):
    """A STORE of no pixel still takes a beat's slot: it is busy ``STORE_MIN_BUSY`` cycles, and no
    STORE is busy fewer (the RTL forms the busy time in the cycles before it)."""
    from hw.timing import STORE_MIN_BUSY, occupancy

    cfg = get_config(config)
    rng = random.Random(7)
    empty = dict(pe_count=1, pe_k=1, out_w=3, t_h=4, t_w=4, t_k=4, k_pitch=4, k_per_pe=min(4, cfg.k0))
    assert occupancy(make(Op.STORE, out_h=0, **empty), cfg) == STORE_MIN_BUSY
    assert occupancy(make(Op.STORE, out_h=1, **empty), cfg) > STORE_MIN_BUSY
    for _ in range(300):
        f = {name: rng.randrange(1 << min(bits, 4)) for name, bits, _ in FIELDS[Op.STORE]}
        assert occupancy(make(Op.STORE, **f), cfg) >= STORE_MIN_BUSY, f


def _gb_load_inp(cfg, **over):
    """A LOAD_INP gathering one whole-word block (channels c0 .. 2*c0 of a 2*c0-channel pixel at a
    word's address) from the global buffer, with ``over`` changed."""
    c0 = cfg.c0
    f = dict(pe_count=1, src_gb=1, src_addr=c0, t_h=1, t_w=1, t_c=2 * c0, c_base=c0, n_cblk=1, win_h=1, win_w=1)
    return make(Op.LOAD_INP, **{**f, **over})


@pytest.mark.parametrize("term", ["t_c", "c_base", "fold_kh", "fold_kw"])
def test_gb_gather_refuses_each_unaligned_term_alone(term):
    """``load_inp_gb_unaligned``: besides src_addr (the cosim's ``gb_source_unaligned``), a pixel
    pitch or first channel off a C0 word, or a fold, alone makes a global-buffer gather RANGE; the
    same fields from DRAM stay legal (the rule is the buffer's read port's, not the lanes')."""
    from hw.isa import ErrorCode
    from hw.timing import check_insn, load_inp_gb_unaligned
    cfg = get_config("tiny")
    assert cfg.global_buf_bytes and cfg.c0 > 2
    ok = _gb_load_inp(cfg)
    check_insn(ok, cfg, 0)
    assert not load_inp_gb_unaligned(ok.f, cfg)
    c0 = cfg.c0
    change = {"t_c": {"t_c": 2 * c0 + c0 // 2}, "c_base": {"c_base": c0 // 2},
              "fold_kh": {"fold_kh": 2, "fold_stride": 1}, "fold_kw": {"fold_kw": 2, "fold_stride": 1}}[term]
    bad = _gb_load_inp(cfg, **change)
    with pytest.raises(StreamError, match="not of whole words") as err:
        check_insn(bad, cfg, INSN_BYTES)
    assert err.value.code == ErrorCode.RANGE and err.value.index == 1
    check_insn(_gb_load_inp(cfg, src_gb=0, **change), cfg, 0)


def test_the_timing_memos_keep_the_last_few_configurations():
    """A sweep's process times many configurations: the rules' memos keep only the last few."""
    from hw import timing
    from mapper.lower import forget_searches
    for latency in range(40, 40 + timing._MEMO_CONFIGS + 3):
        schedule([make(Op.END)], get_config("tiny", dram_latency=latency))
    assert len(timing._memos) == timing._MEMO_CONFIGS
    forget_searches()
    assert not timing._memos


def _store_aliases(insn, cfg) -> bool:
    """Whether a STORE writes some byte twice: fewer distinct addresses (``hw.hazards``' exact set)
    than bytes written (``hw.timing.store_bytes``)."""
    from hw.hazards import accesses
    from hw.timing import store_bytes
    written = next((a for a in accesses(insn, cfg) if a.write), None)
    return written is not None and len(written.exact()) < store_bytes(insn, cfg)


@pytest.mark.parametrize("config", ["tiny", "e_small"])
def test_a_legal_store_writes_no_byte_twice(config):
    """``_store_alias_legality`` is enough: of random small STOREs, every one the contract accepts
    writes each byte once (the simulator writes PE after PE, the RTL's PEs at once), and the rule
    refuses some whose writes do alias (so the check can fail)."""
    from hw.timing import check_insn
    cfg, rng = get_config(config), random.Random(67)
    legal = refused_aliasing = 0
    for _ in range(3000):
        f = dict(pe_first=rng.randrange(cfg.num_pe), pe_count=rng.randint(1, cfg.num_pe), pe_step=rng.randint(1, 2),
                 pe_k=rng.randint(1, cfg.num_pe + 1), out_h=rng.randint(1, 3), out_w=rng.randint(1, 3),
                 t_h=rng.randint(1, 6), t_w=rng.randint(1, 4), t_k=rng.randint(0, 40), k_pitch=rng.randint(0, 24),
                 y0=rng.randint(0, 2), x0=rng.randint(0, 2), k_base=rng.randint(0, 8), k_step=rng.randint(0, 12),
                 k_per_pe=rng.randint(1, min(cfg.k0, 12)), dst_addr=64)
        f["pe_count"] = min(f["pe_count"], (cfg.num_pe - 1 - f["pe_first"]) // f["pe_step"] + 1)
        insn = make(Op.STORE, **f)
        aliased = _store_aliases(insn, cfg)
        try:
            check_insn(insn, cfg, 0)
        except StreamError:
            refused_aliasing += aliased
            continue
        legal += 1
        assert not aliased, f"a legal STORE writes a byte twice: {insn.f}"
    assert legal > 300 and refused_aliasing > 50, (legal, refused_aliasing)
