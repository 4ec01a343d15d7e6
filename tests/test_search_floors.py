"""The mapper's search skips work by two floors, and finds what it finds without them.

``mapper.lower._estimate_floor`` lets the search estimate a tiling only when the rank order
reaches it; ``hw.timing.cycles_floor`` lets it skip the exact schedule of a tiling that cannot
beat the best.  Each must be below what it bounds, and a network's program must not change.
"""

import pytest

from hw.config import get_config
from hw.isa import StreamError, encode_stream
from hw.timing import cycles_floor
from mapper import lower, tiling_cache
from mapper.ir import Conv2d, Linear
from mapper.lower import (_candidates, _estimate_floor, _rank_key, _ranked, build_stream, default_placement,
                          layer_cycles, problem_of)
from mapper.program import build_program
from mapper.quantize import random_qmodel
from mapper.workloads import build_model

E, E_SMALL = get_config("E"), get_config("e_small")


@pytest.fixture(scope="module")
def problems():
    """The problems SegFormer-B0 (32 x 32) searches on e_small: dense, depthwise and product layers,
    band problems of its chains and layers reading or writing the global buffer among them."""
    seen = []
    real = lower._search

    def search(p, cfg, exact_top):
        seen.append(p)
        return real(p, cfg, exact_top)

    lower.forget_searches()
    lower._search = search
    try:
        with tiling_cache.disabled():
            build_program(random_qmodel(build_model("segformer_b0", size=(32, 32)), 0), E_SMALL)
    finally:
        lower._search = real
        lower.forget_searches()
    assert {p.kind for p in seen} == {"dense", "depthwise", "matmul"}
    assert any(p.in_gb for p in seen) and any(p.band_out for p in seen) and any(p.softmax_row for p in seen)
    return seen


def _rankable(p):
    cands = list(_candidates(p, E_SMALL))
    return [t for t in cands if not p.softmax_row or lower.rows_complete(p, t, E_SMALL)]


def test_the_estimate_floor_is_below_the_estimate(problems):
    """For every candidate tiling: the floor at most the estimate; a floor refuses a tiling (its
    instructions' fields) only when the estimate does."""
    checked = 0
    for p in problems[::3]:
        pl = default_placement(p, E_SMALL)
        for t in _rankable(p):
            try:
                floor = _estimate_floor(p, t, E_SMALL, pl)
            except StreamError:
                with pytest.raises(StreamError):
                    _rank_key(p, t, E_SMALL, pl)
                continue
            try:
                estimate = _rank_key(p, t, E_SMALL, pl)[0]
            except StreamError:
                continue
            assert floor <= estimate, (p, t)
            checked += 1
    assert checked > 300


def test_the_lazy_order_is_the_sorted_order(problems):
    """``_ranked`` yields every tiling in the order of a stable sort of all of them by ``_rank_key``
    (what the search ranked before), though it estimates only some of them when taken in part."""
    for p in problems[::5]:
        pl = default_placement(p, E_SMALL)
        scored = []
        for t in _rankable(p):
            try:
                scored.append((_rank_key(p, t, E_SMALL, pl), t))
            except StreamError:
                pass
        assert list(_ranked(p, E_SMALL, pl, _rankable(p))) == [t for _, t in sorted(scored, key=lambda kt: kt[0])]


@pytest.mark.parametrize("layer", [Linear("fc1", "encoder", 16384, 64, 256),
                                   Conv2d("conv", "encoder", 64, 128, 64, 64, kernel=3, padding=1)],
                         ids=lambda l: l.name)
def test_the_lazy_order_estimates_a_part(layer, monkeypatch):
    """On E, taking the first dozen of a layer's hundreds of tilings (as the search takes its first
    few) estimates fewer than three quarters of them: the floor is of use."""
    estimated = []
    real = lower._rank_key
    monkeypatch.setattr(lower, "_rank_key", lambda p, t, cfg, pl: estimated.append(t) or real(p, t, cfg, pl))
    p = problem_of(layer, E)
    cands = list(_candidates(p, E))
    ranked = _ranked(p, E, default_placement(p, E), cands)
    first = [next(ranked) for _ in range(12)]
    assert len(first) == 12 and len(estimated) < 0.75 * len(cands), (len(estimated), len(cands))


def test_the_cycles_floor_is_below_the_schedule(problems):
    """``hw.timing.cycles_floor`` is at most the exact cycles of the streams of the best-ranked
    tilings the search would time (band problems and gathers from the global buffer among them)."""
    for p in problems[::7]:
        pl = default_placement(p, E_SMALL)
        for t in list(_ranked(p, E_SMALL, pl, _rankable(p)))[:4]:
            stream = build_stream(p, t, E_SMALL, pl)
            gathers = lower._gathers(stream) if p.in_gb else []
            if lower._gb_unaligned(gathers, E_SMALL) or lower._gb_conflicting(gathers, E_SMALL):
                continue                                            # refused by the search, and when run
            assert cycles_floor(stream, E_SMALL) <= layer_cycles(stream, E_SMALL), (p, t)


def test_the_floors_change_no_program(monkeypatch):
    """SegFormer-B0's program (its chains' band heights and every layer's tiling) is the same byte for
    byte with the floors and with floors of 0 (every tiling estimated, every counted one scheduled)."""
    def program():
        lower.forget_searches()
        with tiling_cache.disabled():
            p = build_program(random_qmodel(build_model("segformer_b0", size=(32, 32)), 0), E_SMALL)
        return encode_stream(p.stream)

    with_floors = program()
    monkeypatch.setattr(lower, "_estimate_floor", lambda p, t, cfg, pl: 0)
    monkeypatch.setattr(lower, "cycles_floor", lambda stream, cfg: 0)
    without = program()
    lower.forget_searches()
    assert with_floors == without


def test_whole_word_gathers_do_not_depend_on_the_tiling(problems):
    """Whether a stream's gathers from the global buffer read whole words (``hw.timing.
    load_inp_gb_unaligned``) is the problem's, the same for each of its tilings: the search refuses a
    problem whose first stream's are not (``mapper.lower._gb_unaligned``).  Both kinds are among
    SegFormer-B0's problems that read the global buffer (its depthwise layers' groups are not
    whole words)."""
    verdicts = {}
    for p in (p for p in problems if p.in_gb):
        pl, seen = default_placement(p, E_SMALL), set()
        for t in _rankable(p):
            try:
                seen.add(lower._gb_unaligned(lower._gathers(build_stream(p, t, E_SMALL, pl)), E_SMALL))
            except StreamError:
                continue
        assert len(seen) == 1, p
        verdicts[p] = seen.pop()
    assert set(verdicts.values()) == {False, True}


def test_an_unaligned_gather_is_refused_at_the_first_stream(monkeypatch):
    """SegFormer-B0's first depthwise layer on small, its input kept in the global buffer: every
    tiling's gathers read single channels (no whole words), so the search refuses it after one
    stream, where it built all of its tilings' (a configuration of K0 = 2 and C0 = 64 spent 35 of
    its 42 s of search for B0 at 32x32 so)."""
    cfg = get_config("small")
    layer = build_model("segformer_b0", size=(32, 32)).layer("stage0.block0.mlp.dwconv")
    built = []
    monkeypatch.setattr(lower, "build_stream", lambda *a: built.append(a) or build_stream(*a))
    lower.forget_searches()
    with tiling_cache.disabled(), pytest.raises(lower.MappingError, match="read other than whole words of C0 = 8"):
        lower.map_layer(layer, cfg, in_gb=136)
    lower.forget_searches()
    assert len(built) == 1 and len(list(_candidates(built[0][0], cfg))) > 1
