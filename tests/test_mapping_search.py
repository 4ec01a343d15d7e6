"""The mapper's search: its estimate ranks tilings as the exact schedule times them."""

import pytest

from hw.config import get_config
from hw.timing import cycles_floor
from mapper.ir import Conv2d, Linear
from mapper.lower import (Tiling, _estimate, build_stream, default_placement, layer_cycles, map_layer, map_problem,
                          problem_of)

E = get_config("E")
#: SegFormer-B2's stem (a folded 7x7 of stride 4: small tiles pay each gather's setup) and a
#: 64 -> 256 linear layer of 16,384 tokens (small tiles wait for their STOREs' writes), each
#: with tilings of a small and of a large tile on the same PE grid.
LAYERS = {
    "stem": (Conv2d("stem", "encoder", 3, 64, 512, 512, kernel=7, stride=4, padding=3),
             [Tiling(2, 8, 16, 2, 5, True), Tiling(2, 8, 3, 32, 5, True), Tiling(2, 8, 16, 6, 5, True)]),
    "fc1": (Linear("fc1", "encoder", 16384, 64, 256),
            [Tiling(8, 2, 16, 1, 2, True), Tiling(8, 2, 54, 4, 2, True), Tiling(8, 2, 128, 2, 2, True)]),
}


def _exact(layer, tiling) -> int:
    p = problem_of(layer, E)
    return layer_cycles(build_stream(p, tiling, E, default_placement(p, E)), E)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_estimate_follows_the_schedule(name):
    """Within 15 % of the exact cycles, small tiles included (the closed form it replaced was
    37 % low on the stem's 16x2 tiles, so the search timed larger ones only after them)."""
    layer, tilings = LAYERS[name]
    p = problem_of(layer, E)
    for t in tilings:
        exact, estimate = _exact(layer, t), _estimate(p, t, E)
        assert abs(estimate - exact) <= 0.15 * exact, (name, t, estimate, exact)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_chosen_tiling_is_as_fast_as_the_alternatives(name):
    """The mapping found is within 2 % of the fastest of the listed tilings, timed exactly."""
    layer, tilings = LAYERS[name]
    [(lowered, _)] = map_layer(layer, E)
    assert lowered.cycles <= 1.02 * min(_exact(layer, t) for t in tilings), lowered.tiling


def _row_and_column(depthwise: bool, length: int, channels: int, k: int) -> tuple[Conv2d, Conv2d]:
    """A 1-D convolution (an imported ``Conv1d``) as the 2-D one of a row and of a column."""
    groups, pad = channels if depthwise else 1, k // 2
    return (Conv2d("row", "backbone", channels, channels, 1, length, kernel=(1, k), padding=(0, pad, 0, pad),
                   groups=groups),
            Conv2d("column", "backbone", channels, channels, length, 1, kernel=(k, 1), padding=(pad, 0, pad, 0),
                   groups=groups))


# each shape: one form is the faster on E (a 31-tap depthwise one over 100 pixels of 16 channels:
# the column; 7 taps over 512 channels: the row)
@pytest.mark.parametrize("depthwise, length, channels, k", [(True, 100, 16, 31), (True, 100, 512, 7),
                                                            (False, 1000, 144, 3)])
def test_a_1d_convolution_maps_as_the_faster_of_row_and_column(depthwise, length, channels, k):
    """The importer lowers a ``Conv1d`` as the convolution of a row or of a column, whichever its
    tensor is; the two are the same bytes, and map_layer now maps either as the faster form (before,
    the row's form cost up to five times the column's, or the column's twice the row's)."""
    row, column = _row_and_column(depthwise, length, channels, k)
    alone = [map_problem(problem_of(layer, E), E).cycles for layer in (row, column)]     # each form's own
    assert alone[0] != alone[1]         # the shape tells them apart
    for layer in (row, column):
        parts = map_layer(layer, E)
        assert sum(lo.cycles * n for lo, n in parts) == min(alone)
        kh = parts[0][0].problem.kh
        assert kh == (1 if alone[0] < alone[1] else k)


SMALL = get_config("small")
#: Layers whose search on ``small`` times several tilings, some of which the floor skips.
FLOOR_LAYERS = (Conv2d("conv", "encoder", 16, 32, 12, 12, kernel=3, stride=1, padding=1),
                Linear("fc", "encoder", 64, 32, 48))


@pytest.mark.parametrize("layer", FLOOR_LAYERS, ids=lambda l: l.name)
def test_the_cycles_floor_is_below_the_schedule(layer):
    """``hw.timing.cycles_floor`` never exceeds a stream's exact cycles (the search skips a
    tiling's schedule by it), and it is no trivial floor (at least half of them)."""
    from mapper.lower import _candidates
    p = problem_of(layer, SMALL)
    pl = default_placement(p, SMALL)
    for t in list(_candidates(p, SMALL))[:12]:
        stream = build_stream(p, t, SMALL, pl)
        exact, floor = layer_cycles(stream, SMALL), cycles_floor(stream, SMALL)
        assert exact / 2 <= floor <= exact, (t, floor, exact)


def test_skipping_by_the_floor_changes_no_mapping(monkeypatch):
    """The search with the floor's skips finds what it finds scheduling every tiling it counts."""
    from mapper import lower, tiling_cache

    skipped = []
    real = lower.cycles_floor

    def counted(stream, cfg):
        floor = real(stream, cfg)
        skipped.append(floor)
        return floor

    def mapped():
        lower.forget_searches()
        with tiling_cache.disabled():
            return [map_layer(layer, SMALL, exact_top=6) for layer in FLOOR_LAYERS]

    monkeypatch.setattr(lower, "cycles_floor", counted)
    with_floor = mapped()
    monkeypatch.setattr(lower, "cycles_floor", lambda stream, cfg: 0)
    without = mapped()
    lower.forget_searches()
    assert skipped, "the floor was never asked"
    key = lambda found: [(lo.tiling, lo.cycles, lo.candidates, lo.stream, n) for lo, n in found]
    assert [key(f) for f in with_floor] == [key(f) for f in without]


def test_a_first_stream_of_exact_alone_instructions_is_the_only_one_timed(monkeypatch):
    """A search whose first stream has EXACT_ALONE instructions or more builds no second (a tiny
    buffer's 1x1 layer of a million instructions took seconds a stream); one a single instruction
    shorter builds EXACT_MIN or more, as does a search asked for more (``exact_top``)."""
    from mapper import lower, tiling_cache

    built = []
    real = lower.build_stream

    def counted(p, t, cfg, pl):
        stream = real(p, t, cfg, pl)
        built.append(len(stream))
        return stream

    def builds(exact_top):
        built.clear()
        lower.forget_searches()
        with tiling_cache.disabled():
            map_layer(FLOOR_LAYERS[1], SMALL, exact_top=exact_top)
        return list(built)

    monkeypatch.setattr(lower, "build_stream", counted)
    plain = builds(lower.EXACT_MIN)
    assert len(plain) >= lower.EXACT_MIN
    monkeypatch.setattr(lower, "EXACT_ALONE", plain[0])
    assert builds(lower.EXACT_MIN) == plain[:1]
    assert len(builds(lower.EXACT_MIN + 1)) >= lower.EXACT_MIN + 1
    monkeypatch.setattr(lower, "EXACT_ALONE", plain[0] + 1)
    assert builds(lower.EXACT_MIN) == plain
    lower.forget_searches()
