"""Energy and area models: positive, monotonic costs; the K0=C0=16 vs 32 energy-per-MAC
ratio of a dense GEMM; the Table II area calibration error."""

from __future__ import annotations

from collections import Counter

import pytest

from hw.config import PAPER_PRESETS, get_config
from hw.isa import Op, make
from sim import area
from sim.energy import EnergyModel, dense_gemm_events, sram_pj_per_byte
from sim.events import EVENTS, count_events

AREA_BOUND_PCT = 10.0


@pytest.mark.parametrize("name", ["tiny", "small", "e_small", "E", "H"])
def test_costs_positive_and_complete(name):
    m = EnergyModel(get_config(name))
    for e in EVENTS:
        assert m.cost_pj(e) > 0, e
    with pytest.raises(KeyError):
        m.cost_pj("no_such_event")


def test_sram_energy_monotonic_in_size():
    sizes = [64, 1024, 8192, 65536, 1 << 20, 4 << 20]
    e = [sram_pj_per_byte(s) for s in sizes]
    assert all(a < b for a, b in zip(e, e[1:]))


def test_buffer_costs_monotonic_in_config_size():
    base = get_config("E")
    small, big = EnergyModel(base), EnergyModel(base.replace(
        weight_buf_bytes=4 * base.weight_buf_bytes, input_buf_bytes=4 * base.input_buf_bytes,
        accum_depth=4 * base.accum_depth, global_buf_bytes=4 * base.global_buf_bytes))
    for e in ("wbuf_read_bytes", "wbuf_write_bytes", "ibuf_read_bytes", "ibuf_write_bytes",
              "acc_read_bytes", "acc_write_bytes", "gb_read_bytes", "gb_write_bytes"):
        assert big.cost_pj(e) > small.cost_pj(e), e


def test_energy_is_sum_of_breakdown():
    cfg = get_config("E")
    m = EnergyModel(cfg)
    ev = Counter({e: i + 1 for i, e in enumerate(EVENTS)})
    bd = m.breakdown(ev)
    assert set(bd) == set(EVENTS)
    assert m.energy_pj(ev) == pytest.approx(sum(bd.values()))
    assert m.energy_pj(Counter()) == 0.0


def test_dense_gemm_events_match_count_events():
    """The hand-counted steady state equals count_events for an accumulating GEMM,
    apart from the per-step weight-buffer reads."""
    cfg = get_config("E")
    insn = make(Op.GEMM, out_h=32, out_w=32, in_w=32, kh=1, kw=1, stride=1, n_cblk=4, accumulate=1)
    ev = count_events(insn, cfg)
    hand = dense_gemm_events(cfg, cycles=4 * 32 * 32)
    assert {k: v for k, v in ev.items() if k != "wbuf_read_bytes"} == dict(hand)


def energy_per_mac(name: str) -> float:
    cfg = get_config(name)
    ev = dense_gemm_events(cfg, cycles=100_000 // cfg.num_pe)   # equal total MACs for C..M
    return EnergyModel(cfg).energy_pj(ev) / ev["mac"]


def test_vector_width_energy_ratio():
    # H (K0=C0=16) and E (K0=C0=32): same 128 KB weight and 32 KB input buffer per PE,
    # same MACs per cycle.
    ratio = energy_per_mac("H") / energy_per_mac("E")
    print(f"\nenergy/MAC dense GEMM: E {energy_per_mac('E'):.4f} pJ, H {energy_per_mac('H'):.4f} pJ, "
          f"H/E = {ratio:.3f}")
    assert 1.1 <= ratio <= 2.0
    for k16, k32 in (("I", "E"), ("J", "F"), ("K", "G"), ("H", "D")):
        assert energy_per_mac(k16) > energy_per_mac(k32)


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_area_matches_table_ii(name):
    model, paper = area.area_mm2(get_config(name)), area.TABLE_II_AREA_MM2[name]
    err = 100.0 * (model / paper - 1.0)
    print(f"{name}: model {model:.3f} mm2, paper {paper} mm2, error {err:+.1f} %")
    assert abs(err) <= AREA_BOUND_PCT


def test_area_breakdown_and_small_presets():
    for name in ("tiny", "small", "e_small", *PAPER_PRESETS):
        cfg = get_config(name)
        bd = area.area_breakdown(cfg)
        assert set(bd) == {"mac_arrays", "weight_buffers", "input_buffers", "accumulators", "other"}
        assert all(v >= 0 for v in bd.values())
        assert area.area_mm2(cfg) == pytest.approx(sum(bd.values()))
        assert area.area_mm2(cfg) > 0
    assert area.global_buffer_area_mm2(get_config("E")) > 0


def test_area_monotonic_in_buffers():
    e = get_config("E")
    assert area.area_mm2(e.replace(weight_buf_bytes=2 * e.weight_buf_bytes)) > area.area_mm2(e)
    assert area.area_mm2(e.replace(input_buf_bytes=2 * e.input_buf_bytes)) > area.area_mm2(e)


def test_calibration_deterministic_and_physical():
    c = area._calibrate()
    assert c == area.COEFFS
    assert 0.7 <= c["b"] <= 1.0
    assert c["a_sram"] > 0 and c["a_in"] > 0 and c["a_lane"] > 0
