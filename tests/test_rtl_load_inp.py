"""The LOAD_INP address generator (counters, no divider) against the contract's gather.

``hw.rtl.load_inp.LoadInpLanes`` is driven as the load unit drives it (start, the setup count of
``hw.timing.load_terms``, then a beat a cycle) and every beat's enables and enabled addresses are
compared with ``hw.timing.load_inp_lanes``: plain and folded windows, padding, channel bases past
``t_c``, ``t_c`` below and above C0, windows smaller than a beat (several channel blocks in one),
channel bounds ``chan`` (a part of a concatenation narrower than its pitch).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import get_config
from hw.isa import Op, encode, make
from hw.timing import load_inp_dram_bytes, load_inp_gb_conflict, load_inp_lanes, load_terms
from hw.rtl.load_inp import LoadInpLanes

def expected_beats(fields: dict, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(enable, address) of every lane of every beat, shaped (beats, G)."""
    addr, valid = load_inp_lanes(fields, cfg)
    nb = cfg.gb_bus_bytes // cfg.c0
    rows = valid.size // cfg.c0
    beats = -(-rows // nb)
    pad = beats * nb * cfg.c0 - valid.size
    valid = np.concatenate([valid.reshape(-1), np.zeros(pad, bool)]).reshape(beats, -1)
    addr = np.concatenate([np.asarray(addr).reshape(-1), np.zeros(pad, np.int64)]).reshape(beats, -1)
    return valid, addr


def simulate_beats(cfg, fields_list: list[dict]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run each LOAD_INP on the generator back to back; (enable, address) per beat of each and
    each beat's enabled-lane count as the generator gives it (``hw.timing.INP_COUNT_LAG`` later)."""
    dut = LoadInpLanes(cfg)
    out = []

    async def tb(ctx):
        for fields in fields_list:
            insn = make(Op.LOAD_INP, **fields)
            beats, _, _, setup, _ = load_terms(Op.LOAD_INP, insn.f, cfg)
            ctx.set(dut.insn, int.from_bytes(encode(insn), "little"))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for left in range(setup, 0, -1):
                ctx.set(dut.setup_left, left)
                await ctx.tick()
            ctx.set(dut.setup_left, 0)
            en, addr, counts = [], [], []
            for _ in range(beats):
                ctx.set(dut.step, 1)
                bits = ctx.get(dut.lane_en)
                en.append([(bits >> i) & 1 for i in range(cfg.gb_bus_bytes)])
                addr.append(list(ctx.get(dut.lane_addr)))
                await ctx.tick()
                counts.append(ctx.get(dut.lane_en_count))      # the beat's count, the cycle after it
            ctx.set(dut.step, 0)
            out.append((np.array(en, bool).reshape(beats, -1), np.array(addr, np.int64).reshape(beats, -1),
                        np.array(counts, np.int64)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


def random_fields(rng, cfg) -> dict:
    """A LOAD_INP of mostly in-bounds lanes, folded or not, ``t_c`` around C0, a third of them
    with a channel bound ``chan`` (below, at or above ``t_c``)."""
    folded = rng.random() < 0.6
    t_c = int(rng.choice([1, 2, 3, cfg.c0 - 1, cfg.c0, cfg.c0 + 1, 3 * cfg.c0 + 5, int(rng.integers(1, 200))]))
    fk = (int(rng.integers(1, 5)), int(rng.integers(1, 5))) if folded else (0, 0)
    taps = max(1, fk[0] * fk[1])
    return dict(src_addr=int(rng.integers(0, 1 << 20)), dst_addr=0, t_h=int(rng.integers(3, 12)),
                t_w=int(rng.integers(3, 12)), t_c=t_c, y0=int(rng.integers(-2, 3)), x0=int(rng.integers(-2, 3)),
                win_h=int(rng.integers(1, 5)), win_w=int(rng.integers(1, 5)),
                c_base=int(rng.choice([0, cfg.c0, int(rng.integers(0, taps * t_c + 8))])),
                n_cblk=int(rng.integers(1, 5)), fold_kh=fk[0], fold_kw=fk[1], fold_stride=int(rng.integers(0, 3)),
                chan=int(rng.choice([0, 0, int(rng.integers(1, t_c + 3))])))


def _wrapping_gather(cfg, fold: int) -> dict:
    """A gather from the global buffer whose second row is 2**32 bytes past its first: the same
    address modulo 2**32 (hw.isa), as the load unit's 32-bit lanes give it."""
    t_c = 1 << 20
    return dict(pe_first=0, pe_count=1, pe_step=1, src_gb=1, src_addr=0, dst_addr=0, t_h=2, t_w=(1 << 32) // t_c,
                t_c=t_c, y0=0, x0=0, win_h=2, win_w=1, c_base=0, n_cblk=1, fold_kh=fold, fold_kw=fold and 1,
                fold_stride=0, chan=0)


def test_a_gather_wrapping_past_2_32_reads_one_row_without_conflict():
    """The bank-conflict rule took the unwrapped addresses (rows 0 and 2**32: one bank, a conflict)
    and refused a gather that the load unit, on 32-bit addresses, reads as one row twice."""
    cfg = get_config("tiny")
    fields = _wrapping_gather(cfg, 0)
    addr, valid = load_inp_lanes(fields, cfg)
    assert (addr.reshape(2, -1)[0] == addr.reshape(2, -1)[1]).all()
    assert load_inp_gb_conflict(fields, cfg) is None


@pytest.mark.parametrize("cfg_name", ["tiny"])
def test_load_inp_lanes_match_the_contract_gather(cfg_name):
    cfg = get_config(cfg_name)
    rng = np.random.default_rng(14)
    cases = [random_fields(rng, cfg) for _ in range(150)]
    # a large channel base and a large tap (beyond the kernel: every lane off)
    cases.append(dict(random_fields(rng, cfg), c_base=(1 << 24) - 3, t_c=5, fold_kh=3, fold_kw=3))
    cases += [_wrapping_gather(cfg, fold) for fold in (0, 2)]
    enabled = 0
    for fields, (en, addr, counts) in zip(cases, simulate_beats(cfg, cases)):
        enabled += int(en.sum())
        want_en, want_addr = expected_beats(fields, cfg)
        assert (en == want_en).all(), f"enables differ for {fields}"
        assert (counts == want_en.sum(axis=1)).all(), f"lane counts {counts} differ for {fields}"
        # the timing's byte count (hw.timing.load_terms) is the gather's, bound and all
        assert load_inp_dram_bytes(make(Op.LOAD_INP, **fields), cfg) == want_en.sum(), f"DRAM bytes for {fields}"
        assert (np.where(en, addr, 0) == np.where(want_en, want_addr, 0)).all(), f"addresses differ for {fields}"
    assert enabled > 0.15 * sum(expected_beats(f, cfg)[0].size for f in cases), "mostly padding: nothing checked"
