"""The PE array: ``num_pe`` PE tiles behind the three broadcast buses.

The load unit's beat goes to the PEs whose bit of ``ld.en`` is set; the GEMM and STORE beats
go to every PE (a PE outside a STORE's set computes, the store unit does not write its bytes);
``st.y`` gathers the PEs' outputs.

Each PE is clocked only in the cycles a beat is on its buses (its bit of ``ld.en``, a GEMM or
STORE beat, a parameter read, an epilogue's table read) or still in its pipelines (its
``busy``): between GEMMs, during a long VEC pass or a load into other PEs, a tile holds and
Verilator does not evaluate it (``hw.rtl.clock_gate``).
"""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..config import AcceleratorConfig
from .buses import GemmBusSignature, LoadBusSignature, StoreBusSignature
from .clock_gate import gate_clock
from .pe_tile import PETile, check_rtl_config

__all__ = ["PEArray"]


class PEArray(wiring.Component):
    """``num_pe`` :class:`~hw.rtl.pe_tile.PETile` s.

    Parameters
    ----------
    config:
        The configuration (:func:`~hw.rtl.pe_tile.check_rtl_config`).
    pe_factory:
        Builds each PE from ``config`` (default :class:`PETile`); the export passes black boxes.
    gate_factory:
        Builds the clock gate of each PE (``hw.rtl.clock_gate.ClockGate``, the exporter's); without
        one (Amaranth's simulator) a PE's registers hold by a clock enable in the same cycles
        (``hw.rtl.clock_gate.gate_clock``).

    Members
    -------
    ld: In(LoadBusSignature(config, pes=num_pe))
    gemm: In(GemmBusSignature(config))
    st: In(StoreBusSignature(config, pes=num_pe))
    """

    export_prefix = "pe_array"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, **PETile.export_params(config)}

    def __init__(self, config: AcceleratorConfig, *,
                 pe_factory: Callable[[AcceleratorConfig], wiring.Component] = PETile, gate_factory=None):
        check_rtl_config(config)
        self._config = config
        self._pe_factory = pe_factory
        self._gate_factory = gate_factory
        n = config.num_pe
        super().__init__({"ld": In(LoadBusSignature(config, pes=n)), "gemm": In(GemmBusSignature(config)),
                          "st": In(StoreBusSignature(config, pes=n))})

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        for p in range(cfg.num_pe):
            pe = self._pe_factory(cfg)
            st = self.st
            # a PE's registers change only for a beat on its buses or one in its pipelines (busy)
            gate_clock(m, f"pe{p}", pe, self.ld.en[p] | self.gemm.valid | st.valid | st.param_load | st.ep | pe.busy,
                       self._gate_factory)
            m.d.comb += [pe.ld.en.eq(self.ld.en[p]), pe.ld.target.eq(self.ld.target), pe.ld.addr.eq(self.ld.addr),
                         pe.ld.sel.eq(self.ld.sel), pe.ld.count.eq(self.ld.count), pe.ld.data.eq(self.ld.data),
                         self.st.y[p].eq(pe.st.y), self.st.ep_data[p].eq(pe.st.ep_data),
                         self.st.ep_shift[p].eq(pe.st.ep_shift), pe.st.ep_addr.eq(self.st.ep_addr[p])]
            wiring.connect(m, gemm=wiring.flipped(self.gemm), pe=pe.gemm)
            for name in ("param_load", "param_addr", "valid", "acc", "relu", "table", "ep"):
                m.d.comb += getattr(pe.st, name).eq(getattr(self.st, name))
        return m
