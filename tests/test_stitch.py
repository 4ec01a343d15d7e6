"""mapper.stitch: layers' streams joined by tokens instead of the FENCE between them (issue 18).

The joins of a band chain race on no memory and take fewer cycles than its fenced parts; a race
that no token can order keeps its FENCE; the joints found once apply to the same streams again.
"""

import numpy as np
import pytest

from hw.config import FIELD_MAX, get_config
from hw.hazards import hazards
from hw.isa import Op, Queue, make
from hw.timing import TOKEN_LINKS, Scheduler, schedule, token_link
from mapper import stitch
from mapper.bands import _slot_placement
from mapper.ir import Conv2d, Model
from mapper.lower import build_stream
from mapper.program import build_program
from mapper.quantize import random_qmodel
from mapper.residency import planned
from sim.functional import check_program

TINY = get_config("tiny")


def _model(h: int = 8) -> Model:
    """1x1 -> 3x3 depthwise -> 1x1 on an h x 6 grid: one band chain (``mapper.bands``)."""
    a = Conv2d("a", "encoder", 8, 16, h, 6, relu=True, inputs=("input",))
    dw = Conv2d("dw", "encoder", 16, 16, h, 6, kernel=3, padding=1, groups=16, inputs=("a",))
    b = Conv2d("b", "encoder", 16, 8, h, 6, inputs=("dw",))
    return Model("chain", "full", (h, 6, 8), (a, dw, b))


def _chain_streams(rows: int = 2):
    steps, _ = planned(_model(), TINY, band_rows=rows)
    [chain] = [s.chain for s in steps if s.action == "chain"]
    return chain, [build_stream(lo.problem, lo.tiling, TINY, _slot_placement(chain, lo, part))
                   for lo, part in zip(chain.lowered, chain.parts)]


def _end(stream):
    return list(stream) + [make(Op.END)]


def test_every_unit_pair_has_at_most_one_link_and_store_reaches_load():
    assert token_link(Queue.STORE, Queue.LOAD) == ("push_next", "pop_prev")
    assert token_link(Queue.LOAD, Queue.STORE) is None
    for a in TOKEN_LINKS:
        link = token_link(a, a)
        assert link is None


def test_a_band_chains_joined_streams_race_on_nothing_and_run_faster():
    chain, streams = _chain_streams()
    joined, joints = stitch.join_all(streams, TINY)
    fenced = [i for s in streams for i in s]
    assert joints.dropped and len(joined) == len(fenced) - len(joints.dropped)
    for timing in stitch.memory_timings(TINY):      # ordered by tokens under other memories too
        sched = schedule(_end(joined), timing)
        assert [h for h in hazards(_end(joined), sched, timing, limit=None) if h.first.memory in stitch.ON_CHIP] == []
    assert schedule(_end(joined), TINY).total_cycles < schedule(_end(fenced), TINY).total_cycles
    # a STORE's token reaches a later part's load: the gathers wait for the rows they read
    assert any(i.op == Op.STORE and i.push_next for i in joined)
    assert stitch.apply(fenced, joints) == joined
    with pytest.raises(ValueError, match="not the one its joints were found on"):
        stitch.apply(fenced[1:], joints)


def test_a_race_no_token_orders_keeps_the_fence(monkeypatch):
    """Where no FIFO links the racing units, or the races are more than ``MOST_TOKENS``, the
    streams stay fenced: the concatenation, unchanged."""
    _, streams = _chain_streams()
    fenced = [i for s in streams for i in s]
    monkeypatch.setattr(stitch, "token_link", lambda earlier, later: None)
    assert stitch.join_all(streams, TINY) == (fenced, stitch.Joints())
    monkeypatch.undo()
    monkeypatch.setattr(stitch, "MOST_TOKENS", 0)
    assert stitch.join_all(streams, TINY) == (fenced, stitch.Joints())


@pytest.mark.parametrize("most", [2, 3])
def test_joins_that_keep_some_fences_still_race_on_nothing(monkeypatch, most):
    """With few tokens allowed some joins keep their FENCE and others drop it: each join times
    only what follows its split, from the state the kept ones left."""
    _, streams = _chain_streams()
    monkeypatch.setattr(stitch, "MOST_TOKENS", most)
    joined, joints = stitch.join_all(streams + streams, TINY)
    assert 0 < len(joints.dropped) < 2 * len(streams) - 1
    for timing in stitch.memory_timings(TINY):
        sched = schedule(_end(joined), timing)
        assert [h for h in hazards(_end(joined), sched, timing, limit=None) if h.first.memory in stitch.ON_CHIP] == []
    assert stitch.apply([i for s in streams + streams for i in s], joints) == joined


def test_a_schedule_in_pieces_with_rewinds_is_the_whole_streams():
    _, streams = _chain_streams()
    whole = _end([i for s in streams for i in s])
    run = Scheduler(TINY)
    run.extend(streams[0])
    mark = run.mark()
    run.extend(streams[2] + streams[1])          # timed, then forgotten
    run.rewind(mark)
    for s in streams[1:]:
        run.extend(s)
    run.extend(whole[-1:])
    got, want = run.schedule(), schedule(whole, TINY)
    assert got.total_cycles == want.total_cycles
    for a, b in ((got.dispatch, want.dispatch), (got.start, want.start), (got.end, want.end)):
        assert np.array_equal(a, b)


def test_memory_timings_stay_within_the_configurations_bounds():
    cfg = TINY.replace(dram_bytes_per_cycle=FIELD_MAX["dram_bytes_per_cycle"], dram_latency=FIELD_MAX["dram_latency"])
    for timing in stitch.memory_timings(cfg):
        assert timing.dram_bytes_per_cycle <= FIELD_MAX["dram_bytes_per_cycle"]
        assert timing.dram_latency <= FIELD_MAX["dram_latency"]


def test_a_first_stream_without_its_fence_is_refused():
    _, streams = _chain_streams()
    with pytest.raises(ValueError, match="must end with FENCE"):
        stitch.join(streams[0][:-1], streams[1], TINY)


def test_programs_with_joined_chains_are_bit_exact():
    model = _model(7)
    q = random_qmodel(model, 3)
    x = np.random.default_rng(3).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, TINY, image=x, band_rows=2)
    [chain] = [c.step.chain for c in program.steps if c.step.action == "chain"]
    assert chain.joints.dropped
    assert check_program(program, q, x)["tensors"] >= 1
