"""hw.vector: the VEC descriptor's address patterns (against the hardware's counters), layout and cost."""

import random

import numpy as np
import pytest

from hw.isa import ErrorCode, StreamError, VecOp
from vec_passes import any_axis
from hw.operators import adaptive_axis_windows, pool_out_size
from hw.vector import (NONE, PREV, Axis, Descriptor, Operand, PoolMode, Stage, axis_offsets, axis_refusals, axis_valid_count,
                       decode_descriptor, descriptor_field_slots, divides_as, encode_descriptor, first_refusal, laps_fit,
                       operand_addresses, operand_extent, overlapping_writes, pass_extents, pool_axis_fits, pool_taps, adaptive_window_above, vec_fields)


def counters(ax: Axis) -> tuple[list[int], list[bool]]:
    """The axis as the hardware steps it: u wraps at ``wrap``, (lo, hi) split u at ``win``."""
    f = ax.fields()
    u, lo, hi = f["start"], f["lo0"], f["hi0"]
    offs, ok = [], []
    for _ in range(ax.n):
        offs.append(lo * ax.stride + hi * ax.s_hi)
        ok.append(u < ax.valid)
        u, lo = u + 1, lo + 1
        if u == ax.wrap:
            u = lo = hi = 0
        elif lo == ax.win:
            lo, hi = 0, hi + 1
    return offs, ok


@pytest.mark.parametrize("seed", range(40))
def test_axis_offsets_are_those_of_the_counters(seed):
    rng = random.Random(seed)
    wrap = rng.randint(1, 40)
    ax = Axis(rng.randint(1, 60), rng.randint(-50, 200), rng.randrange(wrap), wrap, rng.randint(1, wrap),
              rng.randint(1, wrap), rng.randint(-100, 900))
    offs, ok = axis_offsets(ax)
    want_offs, want_ok = counters(ax)
    assert offs.tolist() == want_offs and ok.tolist() == want_ok


def test_window_partition_pattern():
    # a 14 x 14 image in 2 x 2 windows of 7: pixel (y, x) is token ((y%7)*7 + x%7) * 4 + (y//7)*2 + x//7
    y = Axis(14, 7 * 4, win=7, s_hi=2)
    x = Axis(14, 4, win=7, s_hi=1)
    oy, _ = axis_offsets(y)
    ox, _ = axis_offsets(x)
    got = oy[:, None] + ox[None, :]
    want = [[((yy % 7) * 7 + xx % 7) * 4 + (yy // 7) * 2 + xx // 7 for xx in range(14)] for yy in range(14)]
    assert got.tolist() == want


def _reaches_a_byte_twice(written: Operand, c: int) -> bool:
    """Whether the overlap rule refuses a COPY of a plain source into ``written`` (placed far from it)
    as writing through a pattern that may reach a byte twice (``hw.vector.overlapping_writes``)."""
    h, w = written.y.n, written.x.n
    d = Descriptor(h, w, c, (Operand(1 << 30, c, Axis(h, w * c), Axis(w, c)), written), (Stage(VecOp.COPY, 0, NONE, 1, {}),))
    slots = descriptor_field_slots(d)
    return any(cond for _, _, why, cond in overlapping_writes(*slots, pass_extents(*slots)) if "byte twice" in why)


#: Written patterns with window splits: (y, x, c, reaches a byte twice).  Swin's window partition
#: (each axis' blocks a token apart, between the other axis' rows: 4 windows of 2x2), rolled,
#: reversed; a depth-to-space (blocks of 2x2 pixels); the reviewer's copy whose window blocks' pixels
#: are a byte apart; blocks reaching into the next (s_hi below win · s_lo); blocks on one another (s_hi 0).
SPLIT_WRITES = [(Axis(4, 32, win=2, s_hi=8), Axis(4, 16, win=2, s_hi=4), 4, False),
                (Axis(4, 32, 1, 4, win=2, s_hi=8), Axis(4, 16, 3, 4, win=2, s_hi=4), 4, False),
                (Axis(4, -32, win=2, s_hi=-8), Axis(4, 16, win=2, s_hi=-4), 3, False),
                (Axis(4, 8, win=2, s_hi=64), Axis(4, 4, win=2, s_hi=16), 4, False),
                (Axis(1, 24), Axis(4, 1, win=2, s_hi=12), 6, True),
                (Axis(1, 24), Axis(4, 6, win=2, s_hi=6), 6, True),
                (Axis(1, 24), Axis(4, 6, win=2, s_hi=0), 6, True),
                (Axis(4, 6, win=2, s_hi=3), Axis(1, 6), 6, True)]


@pytest.mark.parametrize("y, x, c, twice", SPLIT_WRITES)
def test_a_written_window_split_reaching_a_byte_twice_is_refused(y, x, c, twice):
    """A pass that only writes an operand through window splits is refused where the pattern may
    reach a byte twice (the functional model and the RTL would write it in different orders), and
    admitted where it is one-to-one, as Swin's windows are."""
    addr, _ = operand_addresses(Operand(0, c, y, x), c)
    assert (addr.size != np.unique(addr).size) == twice
    assert _reaches_a_byte_twice(Operand(1000, c, y, x), c) == twice


@pytest.mark.parametrize("seed", range(4))
def test_a_pattern_the_overlap_rule_admits_reaches_each_byte_once(seed):
    """The overlap rule's one-to-one patterns (any rolls, crops, padding, laps, window splits and
    strides of either sign) reach each byte from one element at most: ``operand_addresses`` agrees."""
    rng = random.Random(seed)
    admitted = 0
    for _ in range(500):
        def axis(n):
            wrap = rng.choice([n, n, n + 1, max(1, n - 1)])
            return Axis(n, rng.choice([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, -4, -8, -24]), rng.randrange(wrap), wrap,
                        rng.randint(1, wrap), rng.randint(1, wrap), rng.choice([0, 1, 3, 4, 8, 12, 16, 32, 48, -12, -32]))
        c = rng.randint(1, 4)
        op = Operand(1000, rng.randint(1, 4), axis(rng.randint(1, 5)), axis(rng.randint(1, 6)), rng.random() < 0.2)
        if not _reaches_a_byte_twice(op, c):
            admitted += 1
            addr, valid = operand_addresses(op, c)
            assert addr[valid].size == np.unique(addr[valid]).size, op
    assert admitted > 50, admitted


def _desc():
    a = Operand(1000, 8, Axis(4, 24), Axis(3, 8))
    b = Operand(5000, 8, Axis(4, 0), Axis(3, 8), repeat=True)     # broadcast over rows
    out = Operand(9000, 8, Axis(4, 24), Axis(3, 8))
    stages = (Stage(VecOp.ADD, 0, 1, NONE, {"mult_a": 100, "mult_b": 200, "shift": 8, "relu": 1}),
              Stage(VecOp.LAYERNORM, PREV, NONE, 2, {"table": 77, "eps": 1 << 35, "shift": 20}))
    return Descriptor(4, 3, 8, (a, b, out), stages)


def test_descriptor_round_trip_and_fields():
    d = _desc()
    assert decode_descriptor(encode_descriptor(d)) == d
    f = vec_fields(d)
    assert f["vec_op"] == VecOp.CHAIN
    assert f["work"] == 4 * 3 * 8 * (1 + 2)
    assert f["bytes_in"] == 4 * 3 * 8 + 3 * 8 and f["bytes_out"] == 4 * 3 * 8


def test_a_descriptor_the_unit_cannot_run_is_refused():
    d = _desc()
    with pytest.raises(StreamError, match="stage 0: reads a previous stage"):
        Descriptor(d.h, d.w, d.c, d.operands, (Stage(VecOp.COPY, PREV, NONE, 2, {}),))
    with pytest.raises(StreamError, match="stage 1: a resize, pooling or class map must be a pass's first stage"):
        Descriptor(d.h, d.w, d.c, d.operands, d.stages[:1] + (Stage(VecOp.RESIZE, PREV, NONE, 2, {
            "mode": 1, "y_start": 0, "y_step": 0, "x_start": 0, "x_step": 0}),))
    raw = bytearray(encode_descriptor(d))
    raw[16 + 64 * 3] = 99                                       # stage 0's operation
    with pytest.raises(StreamError, match="operation 99 is not a stage operation"):
        decode_descriptor(bytes(raw))
    with pytest.raises(StreamError, match="shift = 99 does not fit 6 unsigned bits"):
        encode_descriptor(Descriptor(d.h, d.w, d.c, d.operands, (Stage(VecOp.MUL, 0, 1, 2, {"mult": 1, "shift": 99}),)))


def test_axis_valid_count_is_the_count_of_valid_positions():
    """The closed form over the laps witness (adds, min/max, one product) against the positions the
    counters step, over many random axes (1 for a broadcast axis, which reaches one pixel)."""
    rng = random.Random(13)
    for _ in range(3000):
        ax = any_axis(rng)
        brute = 1 if ax.stride == 0 and ax.s_hi == 0 else int(axis_offsets(ax)[1].sum())
        assert axis_valid_count(ax.fields()) == brute, ax


def test_the_laps_witness_is_checked_by_multiplying():
    """``laps`` is ``n div wrap``; decoding refuses any other value, above or below it."""
    rng = random.Random(14)
    for _ in range(200):
        ax = any_axis(rng)
        f = ax.fields()
        assert f["laps"] == ax.n // ax.wrap and laps_fit(f)
        assert Axis.from_fields(f) == ax
        for wrong in {f["laps"] + 1, f["laps"] - 1, f["laps"] + rng.randint(2, 50)} - {-1}:
            g = f | {"laps": wrong}
            assert not laps_fit(g)
            # what decode_descriptor refuses (descriptor_refusals holds each axis' axis_refusals)
            why = first_refusal([("axis", g, why, refused) for why, refused in axis_refusals(g).items()])
            assert why == f"axis: laps = {wrong} is not n = {ax.n} divided by wrap = {ax.wrap}"


# ---- the spatial unit's rules: pooling windows without a divider --------------------------------

def test_pool_axis_fits_is_pool_out_size():
    """``pool_axis_fits`` (one product, comparisons) holds for exactly the output size
    ``hw.operators.pool_out_size`` computes (with ``ceil_mode`` either way: a window up to
    ``stride - 1`` longer than the padded input gives one output), and for none, 0 included, when
    it refuses the window."""
    rng = random.Random(15)
    longer = 0
    for _ in range(3000):
        n, k, s = rng.randint(1, 40), rng.randint(1, 9), rng.randint(1, 6)
        p, ceil = rng.randint(0, k // 2), rng.random() < 0.5
        try:
            want = pool_out_size(n, k, s, p, ceil)
        except ValueError:
            want = None
        fits = [o for o in range(0, 60) if pool_axis_fits(n, o, k, s, p, ceil)]
        assert fits == ([] if want is None else [want]), (n, k, s, p, ceil)
        longer += want is not None and n + 2 * p < k
    assert longer > 0


def test_the_adaptive_window_bound_covers_every_window():
    """``pool_taps`` of an adaptive pooling (``q + (r > 0) + (r > 1)`` from the witnesses) is at least
    every window's extent and at most one more than the longest; exact where ``r`` is 0 or 1."""
    for n_in in range(1, 70):
        for n_out in range(1, 70):
            lo, hi = adaptive_axis_windows(n_in, n_out)
            stage = {"pool.mode": PoolMode.ADAPTIVE_AVG, "pool.kernel": 0, "pool.y_q": n_in // n_out,
                     "pool.y_r": n_in % n_out}
            bound, longest = pool_taps(stage, "y"), int((hi - lo).max())
            assert longest <= bound <= longest + (n_in % n_out > 1), (n_in, n_out, bound, longest)


def test_the_adaptive_window_count_bound_is_the_product_of_the_taps():
    """``adaptive_window_above`` (the taps' product multiplied out, for the RTL's one product of two
    fields) says what ``pool_taps`` y times x above the limit says, at and around the limit."""
    rng = random.Random(17)
    for _ in range(5000):
        q = {a: rng.choice([0, 1, 2, 255, 256, rng.randrange(1 << 16)]) for a in "yx"}
        r = {a: rng.choice([0, 1, 2, 3, rng.randrange(1 << 16)]) for a in "yx"}
        stage = {"pool.mode": PoolMode.ADAPTIVE_AVG, "pool.kernel": 0,
                 **{f"pool.{a}_{k}": v[a] for a in "yx" for k, v in (("q", q), ("r", r))}}
        taps = pool_taps(stage, "y") * pool_taps(stage, "x")
        for limit in (taps - 1, taps, taps + 1, 1 << 16):
            assert adaptive_window_above(stage, limit) == (taps > limit), (stage, limit)


def test_the_quotient_witnesses_are_checked_by_multiplying():
    """``divides_as`` holds for ``n div d`` and ``n mod d`` only: each off by one is refused."""
    rng = random.Random(16)
    for _ in range(500):
        n, d = rng.randint(1, 8192), rng.randint(1, 8192)
        q, r = divmod(n, d)
        assert divides_as(q, r, n, d)
        assert not any(divides_as(q + a, r + b, n, d) for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)))


def _axis_any_shape(rng) -> Axis:
    """``any_axis``, and one window in three wider than the wrap (a split the counter never reaches)."""
    ax = any_axis(rng)
    if rng.random() < 0.3:
        ax = Axis(ax.n, ax.stride, ax.start, ax.wrap, ax.valid, rng.randint(1, ax.wrap + 5), ax.s_hi)
    return ax


def test_operand_extent_is_the_span_of_its_valid_addresses():
    """The closed form over the descriptor's quotients (products, adds, min/max) against the
    addresses ``operand_addresses`` gives where valid, on thousands of random patterns: rolls,
    windows, padding, broadcast, strides of either sign, repeated or fewer channels."""
    rng = random.Random(15)
    differ = []
    for _ in range(4000):
        op = Operand(rng.randint(0, 1 << 20), rng.randint(1, 20), _axis_any_shape(rng), _axis_any_shape(rng),
                     rng.random() < 0.3)
        c = rng.randint(1, 25)
        addr, valid = operand_addresses(op, c)
        slot = {"base": op.base, **{p + k: v for p, ax in (("y_", op.y), ("x_", op.x)) for k, v in ax.fields().items()}}
        got = operand_extent(slot, min(op.c, c))
        want = (True, int(addr[valid].min()), int(addr[valid].max())) if valid.any() else (False,)
        if (bool(got[0]),) + (tuple(got[1:]) if got[0] else ()) != want:
            differ.append((op, c, got, want))
    assert not differ, f"{len(differ)} of 4000 differ; the first: {differ[0]}"


def decoded_axis(f: dict) -> Axis:
    """The axis of fields ``f`` as ``decode_descriptor`` reads it: refused (DATA) by its
    ``axis_refusals`` (part of ``descriptor_refusals``)."""
    why = first_refusal([("axis", f, why, refused) for why, refused in axis_refusals(f).items()])
    if why:
        raise StreamError(why, ErrorCode.DATA)
    return Axis.from_fields(f)


def test_the_last_positions_witnesses_are_checked_by_multiplying():
    """``hi_run`` and ``hi_turn`` split the last valid positions at ``win``; decoding refuses any
    other value, and an axis whose ``valid`` is 0 (the RTL's counter would make every position padding)."""
    rng = random.Random(16)
    for _ in range(300):
        f = _axis_any_shape(rng).fields()
        assert decoded_axis(f).fields() == f
        for name in ("hi_run", "hi_turn"):
            for wrong in {f[name] + 1, f[name] - 1, f[name] + rng.randint(2, 50)} - {-1}:
                with pytest.raises(StreamError, match=f"{name} = {wrong}.* do not split the last valid positions"):
                    decoded_axis(f | {name: wrong})
        with pytest.raises(StreamError, match="needs n, wrap, valid and win >= 1"):
            decoded_axis(f | {"valid": 0})


def _spatial_passes(rng) -> list:
    """A nearest resize, a max pooling and a nearest resize followed by a COPY (the chain over the
    source's channels, as ``hw.vector.spatial_refusals`` requires), over random source patterns,
    with their images."""
    from vec_passes import Dram, input_operand, output_operand
    out = []
    for kind in ("resize", "pool", "resize_copy"):
        dram = Dram(rng)
        n_y, n_x, c = (int(v) for v in rng.integers(1, 6, 3))
        h, w = (n_y, n_x) if kind == "pool" else (int(v) for v in rng.integers(1, 6, 2))
        src = input_operand(dram, rng, n_y, n_x, c)
        c = src.c if kind == "resize_copy" else c
        dst = output_operand(dram, rng, h, w, c)
        if kind == "pool":
            first = Stage(VecOp.POOL, 0, NONE, 1, {"mode": 0, "kernel": 1, "stride": 1, "padding": 0, "ceil_mode": 0,
                                                   "count_include_pad": 0, "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0,
                                                   "split": 0})
        else:     # a nearest resize carries its index counters' quotients (divides_as)
            first = Stage(VecOp.RESIZE, 0, NONE, 1 if kind == "resize" else NONE,
                          {"mode": 1, "y_start": 0, "y_step": 0, "x_start": 0, "x_step": 0,
                           "y_q": n_y // h, "y_r": n_y % h, "x_q": n_x // w, "x_r": n_x % w})
        stages = (first,) if kind != "resize_copy" else (first, Stage(VecOp.COPY, PREV, NONE, 1, {}))
        out.append((Descriptor(h, w, c, (src, dst), stages), dram.image()))
    return out


def test_pass_extents_are_what_the_functional_model_touches(monkeypatch):
    """``pass_extents`` of random passes (every chain of ``vec_passes``, rolled, windowed, padded and
    repeated operands, LUT and layernorm tables, resizes, a pooling) is exactly the span of the
    bytes ``execute_vec`` reads and writes of each operand and table."""
    import sim.vector_unit as sv
    from vec_passes import CHAINS, IN_PLACE, random_pass

    rng = np.random.default_rng(17)
    passes = [random_pass(rng, CHAINS[chain], in_place=chain in IN_PLACE) for chain in CHAINS for _ in range(6)]
    passes += [p for _ in range(6) for p in _spatial_passes(rng)]
    touched = {}

    def addresses(op, c):
        addr, valid = operand_addresses(op, c)
        if valid.any():
            lo, hi = touched.get(id(op), (np.inf, -np.inf))
            touched[id(op)] = (min(lo, int(addr[valid].min())), max(hi, int(addr[valid].max())))
        return addr, valid

    def table_bytes(self, addr, n):
        touched[addr] = (addr, addr + n - 1)
        return self.dram[addr:addr + n]

    monkeypatch.setattr(sv, "operand_addresses", addresses)
    monkeypatch.setattr(sv._Pass, "_bytes", table_bytes)
    from hw.vector import descriptor_field_slots, encode_descriptor, pass_extents
    for d, image in passes:
        touched.clear()
        dram = np.concatenate([image, np.frombuffer(encode_descriptor(d), np.uint8)])
        run = sv.execute_vec({"desc_addr": image.size, **vec_fields(d)}, dram, "test VEC", 1 << 32)
        want = {f"operand {k}": touched.get(id(op)) for k, op in enumerate(run.operands)}
        want |= {f"stage {i}'s table": touched.get(st.params.get("table"), None) for i, st in enumerate(d.stages)}
        got = {what: (lo, hi) if reached else None for what, reached, lo, hi in pass_extents(*descriptor_field_slots(d))}
        assert {k: v for k, v in got.items() if k in want} == want, d
