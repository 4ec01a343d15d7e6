"""A bare MAC datapath: a PE of K0 vector MACs with accumulators, and an array of NumPE PEs.

Not part of ``Accelerator`` (whose PE is ``pe_tile.PETile``, with its memories and
post-processing); kept as the smallest complete datapath for the Amaranth unit tests and
the first Verilator cosimulation test.
"""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from .vector_mac import VectorMAC, int8_vector

__all__ = ["PE", "MacArray", "acc_vector"]


def acc_vector(config: AcceleratorConfig) -> data.ArrayLayout:
    """K0 partial sums of ``acc_bits`` each."""
    return data.ArrayLayout(signed(config.acc_bits), config.k0)


def _check_config(config) -> None:
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")


class PE(wiring.Component):
    """K0 vector MACs sharing one input vector, each with its own weight vector and
    a wrapping ``acc_bits`` accumulator.

    Control travels with the data: a beat is presented with ``valid`` and carries
    ``clear`` (load the new dot products instead of adding them: starts a sum) and
    ``last`` (this beat completes the sum).  ``LATENCY`` cycles after a beat with
    ``last``, ``acc`` holds the completed sums and ``acc_valid`` is high for one cycle.
    ``acc`` keeps its value until the next valid beat reaches the accumulators.

    Parameters
    ----------
    config:
        Uses ``k0``, ``c0``, ``acc_bits`` and ``product_bits``.
    mac_factory:
        Builds each vector MAC from ``config``; the default is :class:`VectorMAC`.
        :mod:`hw.rtl.export` passes a black box here so that the vector MAC is
        emitted as a separate Verilog module.

    Members
    -------
    x: In(ArrayLayout(signed(8), C0))
        The input vector, broadcast to all K0 vector MACs.
    w: In(ArrayLayout(ArrayLayout(signed(8), C0), K0))
        One weight vector per vector MAC.
    valid, clear, last: In(1)
    acc: Out(ArrayLayout(signed(acc_bits), K0))
    acc_valid: Out(1)
    """

    #: Cycles from a beat with ``last`` to ``acc_valid``: the vector MAC register
    #: plus the accumulator register.
    LATENCY = VectorMAC.LATENCY + 1
    export_prefix = "pe"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"k": config.k0, "c": config.c0, "a": config.acc_bits}

    def __init__(self, config: AcceleratorConfig, *,
                 mac_factory: Callable[[AcceleratorConfig], wiring.Component] = VectorMAC):
        _check_config(config)
        self._config = config
        self._mac_factory = mac_factory
        super().__init__({
            "x": In(int8_vector(config.c0)),
            "w": In(data.ArrayLayout(int8_vector(config.c0), config.k0)),
            "valid": In(1),
            "clear": In(1),
            "last": In(1),
            "acc": Out(acc_vector(config)),
            "acc_valid": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config

        # Control delayed by the vector MAC latency (1), to meet its sum.
        clear_d = Signal()
        last_d = Signal()
        m.d.sync += [clear_d.eq(self.clear), last_d.eq(self.last)]

        sum_valid = None
        for k in range(cfg.k0):
            mac = self._mac_factory(cfg)
            m.submodules[f"mac{k}"] = mac
            m.d.comb += [
                mac.a.eq(self.x),
                mac.w.eq(self.w[k]),
                mac.valid.eq(self.valid),
            ]
            if sum_valid is None:
                sum_valid = mac.sum_valid  # all MACs run in lockstep; use the first
            with m.If(mac.sum_valid):
                with m.If(clear_d):
                    m.d.sync += self.acc[k].eq(mac.sum)
                with m.Else():
                    # Wraps to acc_bits on assignment, like the accumulator in hw.numerics.
                    m.d.sync += self.acc[k].eq(self.acc[k] + mac.sum)
        m.d.sync += self.acc_valid.eq(sum_valid & last_d)
        return m


class MacArray(wiring.Component):
    """NumPE PEs in lockstep: one broadcast input vector and control, per-PE weights.

    Parameters
    ----------
    config:
        Uses ``num_pe`` plus what :class:`PE` uses.
    pe_factory:
        Builds each PE from ``config``; the default is :class:`PE` with its default
        vector MAC.

    Members
    -------
    x: In(ArrayLayout(signed(8), C0))
    w: In(ArrayLayout(PE weights, NumPE))
    valid, clear, last: In(1)
    acc: Out(ArrayLayout(ArrayLayout(signed(acc_bits), K0), NumPE))
    acc_valid: Out(1)
    """

    LATENCY = PE.LATENCY
    export_prefix = "mac_array"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, "k": config.k0, "c": config.c0, "a": config.acc_bits}

    def __init__(self, config: AcceleratorConfig, *,
                 pe_factory: Callable[[AcceleratorConfig], wiring.Component] = PE):
        _check_config(config)
        self._config = config
        self._pe_factory = pe_factory
        pe_weights = data.ArrayLayout(int8_vector(config.c0), config.k0)
        super().__init__({
            "x": In(int8_vector(config.c0)),
            "w": In(data.ArrayLayout(pe_weights, config.num_pe)),
            "valid": In(1),
            "clear": In(1),
            "last": In(1),
            "acc": Out(data.ArrayLayout(acc_vector(config), config.num_pe)),
            "acc_valid": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        acc_valid = None
        for n in range(self._config.num_pe):
            pe = self._pe_factory(self._config)
            m.submodules[f"pe{n}"] = pe
            m.d.comb += [
                pe.x.eq(self.x),
                pe.w.eq(self.w[n]),
                pe.valid.eq(self.valid),
                pe.clear.eq(self.clear),
                pe.last.eq(self.last),
                self.acc[n].eq(pe.acc),
            ]
            if acc_valid is None:
                acc_valid = pe.acc_valid
        m.d.comb += self.acc_valid.eq(acc_valid)
        return m
