"""A VEC instruction from its descriptor address to its results in DRAM (``VectorExecutor``).

``DescriptorCheck`` (the descriptor's fetch, then the check of the VEC's fields against it: a VEC
that fails either is refused with ``DATA`` before a unit starts), then ``VectorUnit`` (row passes)
or ``SpatialUnit`` (a pass whose first stage is a resize or the class map), sharing the DRAM ports:
what the accelerator's compute unit hands a VEC to (``docs/rtl_vector.md``).  Each of the three is
clocked through a clock gate of its own, enabled from its ``start`` to its ``done``.
"""

from __future__ import annotations

import functools

from amaranth.hdl import Cat, Module, Mux, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, ErrorCode
from .buses import VEC_TIMING, DramReadSignature, DramWriteSignature
from .clock_gate import gate_clock
from .export import MAX_TOP_INPUT_BITS
from .vector_descriptor_check import FETCH_LANES, DescriptorCheck
from .vector_spatial import SpatialUnit, runs_spatial, spatial_cycles
from .vector_unit import VectorUnit, read_lanes, unit_cycles, write_lanes

__all__ = ["VectorExecutor", "vector_ports", "builds_vector_unit", "FETCH_LANES"]


def vector_ports(config: AcceleratorConfig) -> tuple[int, int]:
    """(read lanes, write lanes) of the accelerator's vector executor: ``config.vector_lanes`` row
    lanes; (0, 0) when it is not built (``builds_vector_unit``)."""
    if not builds_vector_unit(config):
        return 0, 0
    return read_lanes(config.vector_lanes), write_lanes(config.vector_lanes)


def _members(lanes: int) -> dict:
    return {
        "start": In(1), "desc_addr": In(ADDR_BITS), "fields": In(VEC_TIMING),
        "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode), "overrun": Out(1),
        "dram_rd": Out(DramReadSignature(read_lanes(lanes))), "dram_wr": Out(DramWriteSignature(write_lanes(lanes))),
    }


@functools.cache
def builds_vector_unit(config: AcceleratorConfig) -> bool:
    """Whether the accelerator of ``config`` has a vector executor.  Its gather and scatter ports
    carry an address per byte lane, and Amaranth 0.5 numbers the output bits of an instance (and
    the input bits of a top module) with 16 bits: E's 512 row lanes need over 200,000 output bits.
    Without one, the dispatcher refuses every VEC (``UNSUPPORTED``, ``hw.rtl.insn.rtl_unsupported``);
    narrower ports (rows fetched by bursts) are the way to build it there (docs/rtl_vector.md)."""
    bits = {In: 0, Out: 0}
    for _, member in wiring.Signature(_members(config.vector_lanes)).members.flatten():
        if member.is_port:
            bits[member.flow] += Shape.cast(member.shape).width
    return bits[Out] < 1 << 16 and bits[In] <= MAX_TOP_INPUT_BITS


class VectorExecutor(wiring.Component):
    """Fetch the descriptor at ``desc_addr``, check it, run it.

    Parameters
    ----------
    config : AcceleratorConfig
        Its ``dram_bytes`` bound the bytes a pass may touch (``hw.vector.pass_extents``).
    lanes, max_row : int
        As for :class:`VectorUnit`.
    unit_factory : callable
        Builds the vector unit (``VectorUnit``, or the exporter's black box of its module).
    gate_factory : callable or None
        Builds the clock gate (``hw.rtl.clock_gate.ClockGate``) that clocks the descriptor check,
        the vector unit and the spatial unit each only from a ``start`` to its ``done`` (``busy``):
        the exporter's.  Without one (Amaranth's simulator), their registers hold by a clock enable
        in the same cycles (``hw.rtl.clock_gate.gate_clock``).

    Members
    -------
    start: In(1)
        Run the VEC whose descriptor is at ``desc_addr`` (sampled with ``start``).
    desc_addr: In(ADDR_BITS)
    fields: In(VEC_TIMING)
        The VEC's fields that its descriptor decides, held while it runs.
    busy, done, error, error_code, overrun: Out(...)
        As :class:`VectorUnit`'s; a malformed descriptor, fields that are not its descriptor's,
        operands or tables outside the DRAM or what the operators refuse (``hw.vector.pass_refusals``)
        end the VEC with ``DATA`` before it runs.
    dram_rd: Out(DramReadSignature(read_lanes(lanes))), dram_wr: Out(DramWriteSignature(write_lanes(lanes)))
        The unit's ports; the fetch reads on the low ``FETCH_LANES`` read lanes.
    """

    export_prefix = "vector_executor"
    #: Exported with its descriptor check as a module named under it; the vector unit is a module
    #: of its own (``unit_factory``).
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"v": config.vector_lanes, "m": config.dram_mib}

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, max_row: int = ops.MAX_ROW,
                 unit_factory=VectorUnit, gate_factory=None):
        lanes = config.vector_lanes if lanes is None else lanes
        self._lanes, self._max_row = lanes, max_row
        self._unit = unit_factory(config, lanes=lanes, max_row=max_row)
        self._spatial = SpatialUnit(config, lanes=lanes)
        self._check = DescriptorCheck(dram_bytes=config.dram_bytes)
        self._gate_factory = gate_factory
        super().__init__(_members(lanes))

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for a descriptor that runs: the fetch, the fields'
        check, then the unit."""
        setup = self._check.cycles(d) + 1
        if runs_spatial(d.stages[0].op):
            return setup + spatial_cycles(d, self._lanes)
        return setup + unit_cycles(d, self._lanes, self._max_row)

    def elaborate(self, platform):
        m = Module()
        check, unit, spatial = self._check, self._unit, self._spatial
        # Each block's registers advance only from its start to its done (a unit's busy includes
        # DRAIN, the last elements' way to their writes; the check's, the fetch and the check):
        # after it, what would still change is data whose valid is low, rewritten before it is
        # read.  So an idle block's clock is gated.
        for name, which in (("check", check), ("unit", unit), ("spatial", spatial)):
            gate_clock(m, name, which, which.start | which.busy, self._gate_factory)
        # the unit is picked by the first stage's operation; its outputs while it is busy
        spatial_pick = runs_spatial(check.desc.stages[0].copy.op)
        refused = check.done & check.error
        m.d.comb += [
            check.start.eq(self.start & ~self.busy), check.addr.eq(self.desc_addr), check.fields.eq(self.fields),
            unit.desc.eq(check.desc), unit.start.eq(check.run & ~spatial_pick),
            spatial.desc.eq(check.desc), spatial.start.eq(check.run & spatial_pick),
            self.busy.eq(check.busy | unit.busy | spatial.busy), self.overrun.eq(unit.overrun),
            self.done.eq(unit.done | spatial.done | refused), self.error.eq(unit.error | spatial.error | refused),
            self.error_code.eq(Mux(check.done, check.error_code,
                                   Mux(spatial.busy, spatial.error_code, unit.error_code))),
            # one read port: the fetch's (on the low lanes) while it fetches, the running unit's after
            self.dram_rd.en.eq(Mux(check.fetching, check.dram_rd.en,
                                   Mux(spatial.busy, spatial.dram_rd.en, unit.dram_rd.en))),
            self.dram_rd.addr.eq(Mux(check.fetching, check.dram_rd.addr.as_value(),
                                     Mux(spatial.busy, spatial.dram_rd.addr.as_value(), unit.dram_rd.addr.as_value()))),
            check.dram_rd.data.eq(Cat(*(self.dram_rd.data[k] for k in range(FETCH_LANES)))),
            unit.dram_rd.data.eq(self.dram_rd.data), spatial.dram_rd.data.eq(self.dram_rd.data),
        ]
        m.d.comb += [getattr(self.dram_wr, f).eq(Mux(spatial.busy, Value.cast(getattr(spatial.dram_wr, f)),
                                                     Value.cast(getattr(unit.dram_wr, f)))) for f in ("en", "addr", "data")]
        return m
