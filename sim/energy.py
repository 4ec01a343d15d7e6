"""Energy model: a cost in pJ for every architectural event of ``sim.events``.

The technology table :data:`TECH_45NM` holds Horowitz's 45 nm / 0.9 V figures
(ISSCC 2014, "Computing's energy problem (and what we can do about it)"),
scaled to a 5 nm-class node by two first-order factors computed from stated
inputs (:data:`SCALING`); DRAM and wire figures are taken directly at the
target node.  Sources and reasoning: ``docs/energy_area.md``.

SRAM energy per byte grows with the macro size as sqrt(size) (CACTI-style:
bit-line and word-line length grow with the square root of the capacity; the
Horowitz 8 KB -> 32 KB -> 1 MB figures follow the same law within 15 %).
The buffer sizes come from the configuration:

* weight buffer: one macro of ``weight_buf_bytes / K0`` per vector MAC unit;
* input buffer: ``input_buf_bytes`` (one per PE, read once for K0 vector MACs);
* accumulation buffer: ``accum_bytes`` (a K0 x acc_bits word per access);
* parameter memory: ``param_depth * PARAM_ENTRY_BYTES``;
* global buffer: ``global_buf_bytes``.

The vector-width effect is structural: the multiplier-lane cost includes its
share of the C0-input adder tree and of the accumulate adder (amortised over
C0 lanes), while the events already charge one input-buffer read per K0 vector
MACs and one accumulator read-modify-write per C0 lanes.  Narrower K0 = C0
therefore costs more per MAC without any fitted term.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping

from hw.config import AcceleratorConfig
from hw.numerics import MULT_BITS, PARAM_ENTRY_BYTES
from sim.events import EVENTS

__all__ = ["TECH_45NM", "SCALING", "S_LOGIC", "S_SRAM", "DRAM_PJ_PER_BIT",
           "WIRE_PJ_PER_BIT_MM", "EnergyModel", "dense_gemm_events", "add_pj", "mult_pj", "sram_pj_per_byte"]

#: Horowitz, ISSCC 2014 (45 nm, 0.9 V), pJ.
TECH_45NM = {
    "add8": 0.03,            # 8-bit integer add
    "add32": 0.1,            # 32-bit integer add
    "mult8": 0.2,            # 8-bit integer multiply
    "mult32": 3.1,           # 32-bit integer multiply
    "sram8k_64b": 10.0,      # 64-bit read of an 8 KB SRAM  -> 1.25 pJ/B
    "sram32k_64b": 20.0,     # 64-bit read of a 32 KB SRAM  -> 2.5 pJ/B   (sqrt law: 2.5)
    "sram1m_64b": 100.0,     # 64-bit read of a 1 MB SRAM   -> 12.5 pJ/B  (sqrt law: 14.1)
}

#: Inputs of the 45 nm -> 5 nm scaling factors (first-order: switched
#: capacitance ~ linear dimension, energy ~ C V^2).
SCALING = {
    # logic: contacted gate pitch x metal-1 pitch, nm (Intel 45 nm; TSMC N5 as published)
    "cpp_45": 160.0, "m1_45": 150.0, "cpp_5": 51.0, "m1_5": 28.0,
    # SRAM: high-density 6T bit-cell area, um^2 (Intel 45 nm; TSMC N5 as published)
    "cell_45": 0.346, "cell_5": 0.021,
    # supply: Horowitz's 0.9 V; 0.75 V nominal for N5 logic and SRAM
    "vdd_45": 0.9, "vdd_5": 0.75,
}

_V2 = (SCALING["vdd_5"] / SCALING["vdd_45"]) ** 2
#: Logic energy factor 45 nm -> 5 nm (~0.17).
S_LOGIC = math.sqrt(SCALING["cpp_5"] * SCALING["m1_5"] / (SCALING["cpp_45"] * SCALING["m1_45"])) * _V2
#: SRAM energy factor 45 nm -> 5 nm (~0.17).
S_SRAM = math.sqrt(SCALING["cell_5"] / SCALING["cell_45"]) * _V2

#: LPDDR5/5X-class DRAM access energy (device + interface), pJ/bit, at the target node.
DRAM_PJ_PER_BIT = 4.0
#: On-chip repeated global wire, pJ/bit/mm (Keckler et al., IEEE Micro 2011: ~0.08 at the
#: 10 nm-class projection; wires scale little).
WIRE_PJ_PER_BIT_MM = 0.08

#: Reference point of the SRAM law (Horowitz 8 KB, 64-bit access).
SRAM_REF_BYTES = 8 * 1024
SRAM_REF_PJ_PER_BYTE_45 = TECH_45NM["sram8k_64b"] / 8


def add_pj(bits: float) -> float:
    """Integer adder at 5 nm: linear in width through Horowitz's 8- and 32-bit points."""
    t = TECH_45NM
    return S_LOGIC * (t["add8"] + (t["add32"] - t["add8"]) * (bits - 8) / 24)


def mult_pj(a_bits: float, b_bits: float) -> float:
    """Integer multiplier at 5 nm: ~ a_bits * b_bits (array multiplier); 8x8 -> Horowitz's 0.2 pJ,
    32x32 -> 3.2 pJ (Horowitz: 3.1)."""
    return S_LOGIC * TECH_45NM["mult8"] * a_bits * b_bits / 64


def sram_pj_per_byte(size_bytes: float) -> float:
    """SRAM access energy per byte at 5 nm: ``e_ref * sqrt(size / 8 KB)``."""
    return S_SRAM * SRAM_REF_PJ_PER_BYTE_45 * math.sqrt(max(float(size_bytes), 1.0) / SRAM_REF_BYTES)


class EnergyModel:
    """Per-event energy costs (pJ) of one accelerator configuration.

    Parameters
    ----------
    cfg:
        The configuration; buffer sizes and K0/C0 set the per-event costs.
    bus_length_mm:
        Length of the global-buffer-to-PE multicast bus; default the side of
        a square PE array of :func:`sim.area.area_mm2` (the bus spans the array).
    """

    def __init__(self, cfg: AcceleratorConfig, bus_length_mm: float | None = None) -> None:
        self.cfg = cfg
        if bus_length_mm is None:
            from sim.area import area_mm2
            bus_length_mm = math.sqrt(area_mm2(cfg))
        self.bus_length_mm = float(bus_length_mm)
        self._costs = self._build()

    def _build(self) -> dict[str, float]:
        cfg = self.cfg
        c0 = cfg.c0
        # one lane: 8x8 multiplier, its share of the (C0-1)-adder tree (average width
        # 16 + log2(C0)/2 bits), and 1/C0 of the acc_bits accumulate adder.
        tree_bits = 2 * cfg.data_bits + math.log2(c0) / 2
        mac = (mult_pj(cfg.data_bits, cfg.data_bits)
               + (c0 - 1) / c0 * add_pj(tree_bits)
               + add_pj(cfg.acc_bits) / c0)
        # weight register file: Eyeriss (Chen et al., ISCA 2016) puts a small RF access at
        # ~1x the energy of the MAC operation; charge one 8-bit MAC (mult8 + add8) per byte.
        reg = mult_pj(8, 8) + add_pj(8)
        wbuf = sram_pj_per_byte(cfg.weight_buf_bytes / cfg.k0)
        ibuf = sram_pj_per_byte(cfg.input_buf_bytes)
        acc = sram_pj_per_byte(cfg.accum_bytes)
        gb = sram_pj_per_byte(cfg.global_buf_bytes)
        param = sram_pj_per_byte(cfg.param_depth * PARAM_ENTRY_BYTES)
        dram = 8 * DRAM_PJ_PER_BIT
        bus = 8 * WIRE_PJ_PER_BIT_MM * self.bus_length_mm
        # requantisation per output: acc_bits x MULT_BITS multiply, bias add, rounding add
        post = mult_pj(cfg.acc_bits, MULT_BITS) + 2 * add_pj(cfg.acc_bits)
        # one vector-unit element operation: a 16x16 multiply and a 32-bit add
        vec = mult_pj(16, 16) + add_pj(32)
        costs = {
            "mac": mac, "reg_read_bytes": reg,
            "wbuf_read_bytes": wbuf, "wbuf_write_bytes": wbuf,
            "ibuf_read_bytes": ibuf, "ibuf_write_bytes": ibuf,
            "acc_read_bytes": acc, "acc_write_bytes": acc,
            "param_bytes": param,
            "gb_read_bytes": gb, "gb_write_bytes": gb,
            "bus_bytes": bus,
            "dram_read_bytes": dram, "dram_write_bytes": dram,
            "post_ops": post, "vec_ops": vec,
        }
        assert set(costs) == set(EVENTS), set(costs) ^ set(EVENTS)
        return costs

    @property
    def costs(self) -> dict[str, float]:
        """Event -> pJ per unit (a copy)."""
        return dict(self._costs)

    def cost_pj(self, event: str) -> float:
        """Energy of one unit of ``event`` (pJ)."""
        try:
            return self._costs[event]
        except KeyError:
            raise KeyError(f"unknown event {event!r}; choose one of {', '.join(EVENTS)}") from None

    def breakdown(self, events: Mapping[str, float]) -> dict[str, float]:
        """Event -> pJ for the counted ``events`` (only events present)."""
        return {e: n * self.cost_pj(e) for e, n in events.items()}

    def energy_pj(self, events: Mapping[str, float]) -> float:
        """Total energy of ``events`` (a Counter over ``sim.events.EVENTS``), pJ."""
        return float(sum(self.breakdown(events).values()))


def dense_gemm_events(cfg: AcceleratorConfig, cycles: int) -> Counter:
    """Steady-state events of ``cycles`` cycles of a dense GEMM (large 1x1 conv) on
    every PE, as :func:`sim.events.count_events` counts them for an accumulating
    GEMM with many pixels per reduction step (weight-buffer reads are per step and
    vanish per MAC; no loads/stores)."""
    pes, acc_bytes = cfg.num_pe, cfg.acc_bits // 8
    return Counter({
        "mac": cycles * pes * cfg.k0 * cfg.c0,
        "reg_read_bytes": cycles * pes * cfg.k0 * cfg.c0,
        "ibuf_read_bytes": cycles * pes * cfg.c0,
        "acc_read_bytes": cycles * pes * cfg.k0 * acc_bytes,
        "acc_write_bytes": cycles * pes * cfg.k0 * acc_bytes,
    })


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.energy``: the scaling factors and each paper preset's energy per MAC."""
    from hw.cli import OneLineParser
    from hw.config import PAPER_PRESETS, get_config
    OneLineParser(prog="python -m sim.energy",
                  description="Print the energy model's technology scaling factors and the energy per MAC "
                              "of a dense GEMM on every paper preset (docs/energy_area.md).").parse_args(argv)
    print(f"S_LOGIC = {S_LOGIC:.3f}, S_SRAM = {S_SRAM:.3f}")
    print(f"{'config':>6} {'pJ/MAC':>8}  (dense GEMM, equal MACs)")
    for name in PAPER_PRESETS:
        cfg = get_config(name)
        m = EnergyModel(cfg)
        ev = dense_gemm_events(cfg, 1000)
        print(f"{name:>6} {m.energy_pj(ev) / ev['mac']:8.4f}")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(main)
