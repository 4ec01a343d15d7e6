"""hw.epilogue: the rows of a STORE's softmax epilogue, found by a walk over the PEs without a
division, against the rule stated with channel numbers and ``%`` (random STOREs, every row length
up to past K0, PE sets with gaps, channels clipped by t_k)."""

from __future__ import annotations

import numpy as np
import pytest

from hw.config import get_config
from hw.epilogue import WalkState, pe_row_starts, row_multiples, walk_end_bad, walk_pe
from hw.timing import pe_members, pe_positions, store_pe_extent

SEED = 1313


def reference(f: dict, num_pe: int, k0: int):
    """(lane starts [num_pe, K0], whether the channels are whole rows): within each row group the
    member lanes in order must hold consecutive channels, a whole number of rows of ``ep_row``
    counted from the group's first member."""
    row, chosen = f["ep_row"], set(pe_members(f, num_pe))
    starts, ok, groups = np.zeros((num_pe, k0), bool), True, {}
    for p, (col, grp) in enumerate(pe_positions(num_pe, f["pe_k"])):
        k_first, _, nk, _, _ = store_pe_extent(f, col, grp)
        groups.setdefault(grp, []).extend(
            (p, j, k_first + j) for j in range(nk if p in chosen else 0))
    for lanes in groups.values():
        channels = [k for _, _, k in lanes]
        ok &= all(b == a + 1 for a, b in zip(channels, channels[1:])) and len(lanes) % row == 0
        for rank, (p, j, _) in enumerate(lanes):
            starts[p, j] = rank % row == 0
    return starts, ok


def walk(f: dict, num_pe: int, k0: int):
    chosen, state = set(pe_members(f, num_pe)), WalkState()
    starts = np.zeros((num_pe, k0), bool)
    multiples = row_multiples(f["ep_row"], k0)
    for p, (col, grp) in enumerate(pe_positions(num_pe, f["pe_k"])):
        k_first, _, nk, _, _ = store_pe_extent(f, col, grp)
        nk = nk if p in chosen else 0
        lane_starts, state = walk_pe(state, col, k_first, nk, multiples, k0)
        starts[p] = lane_starts
    return starts, not walk_end_bad(state)


def test_pe_row_starts_is_a_counter_modulo_the_row():
    for row in (1, 2, 3, 5, 7, 8, 31, 32, 33, 49, 4095):
        multiples = row_multiples(row, 32)
        for pos in {0, row // 2, row - 1, min(1, row - 1)}:
            for nk in range(33):
                starts, after = pe_row_starts(pos, nk, multiples, 32)
                assert after == (pos + nk) % row
                assert starts == [j < nk and (pos + j) % row == 0 for j in range(32)]


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "e_small", "E"])
def test_walk_finds_the_rows_of_the_channel_rule(cfg_name):
    """On random STOREs the walk and the rule by channel numbers agree on every lane's row start
    (none past a PE's members, where a row straddling two PEs continues) and on whether the STORE
    is malformed; about half are whole rows."""
    cfg = get_config(cfg_name)
    n, k0 = cfg.num_pe, cfg.k0
    rng = np.random.default_rng(SEED + n)
    verdicts = set()
    for _ in range(300):
        pe_k = int(rng.integers(1, n + 1))
        k_per_pe = int(rng.integers(1, k0 + 1))
        row = int(rng.choice([1, 2, 3, k_per_pe, pe_k * k_per_pe, int(rng.integers(1, 2 * k0 + 2))]))
        f = {"pe_first": 0, "pe_count": n, "pe_step": 1, "pe_k": pe_k, "k_per_pe": k_per_pe, "ep_row": row,
             "k_base": int(rng.integers(0, 3)) * row, "k_step": k_per_pe + int(rng.random() < 0.2),
             "t_k": int(rng.integers(1, pe_k * k_per_pe + 4)), "y0": 0, "out_h": 1, "t_h": 4, "x0": 0,
             "out_w": 1, "t_w": 1}
        if rng.random() < 0.2:
            f.update(pe_first=int(rng.integers(0, n)), pe_count=1)
            f["pe_count"] = int(rng.integers(1, n - f["pe_first"] + 1))
        want_starts, want_ok = reference(f, n, k0)
        got_starts, got_ok = walk(f, n, k0)
        assert got_ok == want_ok, f
        if want_ok:
            np.testing.assert_array_equal(got_starts, want_starts, err_msg=str(f))
        verdicts.add(want_ok)
    assert verdicts == {True, False}
