"""A VEC instruction from its descriptor address to its results in DRAM (``VectorExecutor``).

``DescriptorFetch`` then ``VectorUnit`` (row passes) or ``SpatialUnit`` (a pass whose first stage
is a resize or the class map), sharing the DRAM ports: what the accelerator's compute unit hands a
VEC to (``docs/rtl_vector.md``).
"""

from __future__ import annotations

import functools

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, ErrorCode
from .buses import DramReadSignature, DramWriteSignature
from .descriptor_fetch import DescriptorFetch
from .export import MAX_TOP_INPUT_BITS
from .vector_spatial import SpatialUnit, runs_spatial, spatial_cycles
from .vector_unit import VectorUnit, read_lanes, unit_cycles, write_lanes

#: Bytes the descriptor fetch reads a cycle, on the low lanes of the unit's read port.
FETCH_LANES = 16

__all__ = ["VectorExecutor", "vector_ports", "builds_vector_unit"]


def vector_ports(config: AcceleratorConfig) -> tuple[int, int]:
    """(read lanes, write lanes) of the accelerator's vector executor: ``config.vector_lanes`` row
    lanes; (0, 0) when it is not built (``builds_vector_unit``)."""
    if not builds_vector_unit(config):
        return 0, 0
    return read_lanes(config.vector_lanes), write_lanes(config.vector_lanes)


def _members(lanes: int) -> dict:
    return {
        "start": In(1), "desc_addr": In(ADDR_BITS),
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
    lanes, max_row : int
        As for :class:`VectorUnit`.
    unit_factory : callable
        Builds the vector unit (``VectorUnit``, or the exporter's black box of its module).

    Members
    -------
    start: In(1)
        Run the VEC whose descriptor is at ``desc_addr`` (sampled with ``start``).
    desc_addr: In(ADDR_BITS)
    busy, done, error, error_code, overrun: Out(...)
        As :class:`VectorUnit`'s; a malformed descriptor ends the VEC with ``DATA`` before it runs.
    dram_rd: Out(DramReadSignature(read_lanes(lanes))), dram_wr: Out(DramWriteSignature(write_lanes(lanes)))
        The unit's ports; the fetch reads on the low ``FETCH_LANES`` read lanes.
    """

    export_prefix = "vector_executor"
    #: Exported with its descriptor fetch as a module named under it; the vector unit is a module
    #: of its own (``unit_factory``).
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"v": config.vector_lanes}

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, max_row: int = ops.MAX_ROW,
                 unit_factory=VectorUnit):
        lanes = config.vector_lanes if lanes is None else lanes
        self._lanes, self._max_row = lanes, max_row
        self._unit = unit_factory(config, lanes=lanes, max_row=max_row)
        self._spatial = SpatialUnit(config, lanes=lanes)
        self._fetch = DescriptorFetch(FETCH_LANES)
        super().__init__(_members(lanes))

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for a descriptor that runs: the fetch, then the unit."""
        if runs_spatial(d.stages[0].op):
            return self._fetch.cycles(d) + 1 + spatial_cycles(d, self._lanes)
        return self._fetch.cycles(d) + 1 + unit_cycles(d, self._lanes, self._max_row)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch, m.submodules.unit = fetch, unit = self._fetch, self._unit
        m.submodules.spatial = spatial = self._spatial
        # the unit is picked by the first stage's operation; its outputs while it is busy
        spatial_pick = runs_spatial(fetch.desc.stages[0].copy.op)
        fetching = Signal()
        with m.If(self.start & ~self.busy):
            m.d.sync += fetching.eq(1)
        with m.Elif(fetch.done):
            m.d.sync += fetching.eq(0)
        refused = fetch.done & fetch.error
        m.d.comb += [
            fetch.start.eq(self.start & ~self.busy), fetch.addr.eq(self.desc_addr),
            unit.desc.eq(fetch.desc), unit.start.eq(fetch.done & ~fetch.error & ~spatial_pick),
            spatial.desc.eq(fetch.desc), spatial.start.eq(fetch.done & ~fetch.error & spatial_pick),
            self.busy.eq(fetching | unit.busy | spatial.busy), self.overrun.eq(unit.overrun),
            self.done.eq(unit.done | spatial.done | refused), self.error.eq(unit.error | spatial.error | refused),
            self.error_code.eq(Mux(refused, fetch.error_code, Mux(spatial.busy, spatial.error_code, unit.error_code))),
            # one read port: the fetch's (on the low lanes) while it fetches, the running unit's after
            self.dram_rd.en.eq(Mux(fetching, fetch.dram_rd.en, Mux(spatial.busy, spatial.dram_rd.en, unit.dram_rd.en))),
            self.dram_rd.addr.eq(Mux(fetching, fetch.dram_rd.addr.as_value(),
                                     Mux(spatial.busy, spatial.dram_rd.addr.as_value(), unit.dram_rd.addr.as_value()))),
            fetch.dram_rd.data.eq(Cat(*(self.dram_rd.data[k] for k in range(FETCH_LANES)))),
            unit.dram_rd.data.eq(self.dram_rd.data), spatial.dram_rd.data.eq(self.dram_rd.data),
        ]
        m.d.comb += [getattr(self.dram_wr, f).eq(Mux(spatial.busy, Value.cast(getattr(spatial.dram_wr, f)),
                                                     Value.cast(getattr(unit.dram_wr, f)))) for f in ("en", "addr", "data")]
        return m
