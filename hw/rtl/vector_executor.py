"""A VEC instruction from its descriptor address to its results in DRAM (``VectorExecutor``).

``DescriptorFetch``, the check of the VEC's fields against its descriptor's, then ``VectorUnit``
(row passes) or ``SpatialUnit`` (a pass whose first stage is a resize or the class map), sharing
the DRAM ports: what the accelerator's compute unit hands a VEC to (``docs/rtl_vector.md``).  The
check evaluates ``hw.vector.slot_fields`` (what ``vec_fields`` and so the simulator's
``execute_vec`` evaluate) on the fetched descriptor, its products registered at the levels the
rule names, then compares the fields, in ``hw.timing.VEC_FIELD_CHECK`` cycles after the fetch: a
VEC whose fields are not its descriptor's is refused with ``DATA`` before a unit starts, after the
fetch's own refusals and before the unit's, the simulator's order.  In the same cycles it
evaluates ``hw.vector.pass_extents`` and ``hw.vector.pass_refusals``: a pass whose operands or
tables leave the configuration's DRAM (``dram_bytes``), or one holding what the operators refuse
(any live stage's parameters, rows, channels or rasters), is refused with ``DATA`` too, before
anything is read or written, as ``execute_vec`` refuses it.
"""

from __future__ import annotations

import functools

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .. import vector as vec
from ..config import AcceleratorConfig
from ..expr import any_of, wired
from ..isa import ADDR_BITS, ErrorCode
from ..timing import VEC_FIELD_CHECK
from .buses import VEC_TIMING, DramReadSignature, DramWriteSignature
from .clock_gate import gate_clock
from .descriptor_fetch import DescriptorFetch
from .export import MAX_TOP_INPUT_BITS
from .vector_descriptor import field_slots
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
        Builds the clock gate (``hw.rtl.clock_gate.ClockGate``) that clocks the vector unit and the
        spatial unit each only from a ``start`` to its ``done`` (``busy``): the exporter's.  Without
        one (Amaranth's simulator), their registers hold by a clock enable in the same cycles
        (``hw.rtl.clock_gate.gate_clock``).

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
    #: Exported with its descriptor fetch as a module named under it; the vector unit is a module
    #: of its own (``unit_factory``).
    export_nested = True

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"v": config.vector_lanes, "m": config.dram_mib}

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None, max_row: int = ops.MAX_ROW,
                 unit_factory=VectorUnit, gate_factory=None):
        lanes = config.vector_lanes if lanes is None else lanes
        self._lanes, self._max_row = lanes, max_row
        self._dram_bytes = config.dram_bytes
        self._unit = unit_factory(config, lanes=lanes, max_row=max_row)
        self._spatial = SpatialUnit(config, lanes=lanes)
        self._fetch = DescriptorFetch(FETCH_LANES, dram_bytes=config.dram_bytes)
        self._gate_factory = gate_factory
        super().__init__(_members(lanes))

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for a descriptor that runs: the fetch, the fields'
        check, then the unit."""
        setup = self._fetch.cycles(d) + VEC_FIELD_CHECK + 1
        if runs_spatial(d.stages[0].op):
            return setup + spatial_cycles(d, self._lanes)
        return setup + unit_cycles(d, self._lanes, self._max_row)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch = fetch = self._fetch
        unit, spatial = self._unit, self._spatial
        # Each unit's registers advance only from its start to its done (its busy includes DRAIN,
        # the last elements' way to their writes): after it, what would still change is data whose
        # valid is low, rewritten before it is read.  So an idle unit's clock is gated.
        for name, which in (("unit", unit), ("spatial", spatial)):
            gate_clock(m, name, which, which.start | which.busy, self._gate_factory)
        # the unit is picked by the first stage's operation; its outputs while it is busy
        spatial_pick = runs_spatial(fetch.desc.stages[0].copy.op)
        fetching = Signal()
        with m.If(self.start & ~self.busy):
            m.d.sync += fetching.eq(1)
        with m.Elif(fetch.done):
            m.d.sync += fetching.eq(0)
        checking, checked, mismatch = self._check_fields(m, fetch.done & ~fetch.error)
        refused = (fetch.done & fetch.error) | (checked & mismatch)
        m.d.comb += [
            fetch.start.eq(self.start & ~self.busy), fetch.addr.eq(self.desc_addr),
            unit.desc.eq(fetch.desc), unit.start.eq(checked & ~mismatch & ~spatial_pick),
            spatial.desc.eq(fetch.desc), spatial.start.eq(checked & ~mismatch & spatial_pick),
            self.busy.eq(fetching | checking | unit.busy | spatial.busy), self.overrun.eq(unit.overrun),
            self.done.eq(unit.done | spatial.done | refused), self.error.eq(unit.error | spatial.error | refused),
            self.error_code.eq(Mux(fetch.done, fetch.error_code, Mux(checked, ErrorCode.DATA,
                                   Mux(spatial.busy, spatial.error_code, unit.error_code)))),
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

    def _check_fields(self, m: Module, fetched):
        """(checking, its last cycle ``VEC_FIELD_CHECK`` cycles after ``fetched``, whether the VEC's
        fields differ from ``hw.vector.slot_fields`` of the fetched descriptor, which holds still
        from ``fetched`` on, the pass touches bytes outside the DRAM, ``hw.vector.pass_extents``, or
        holds what the operators refuse, ``hw.vector.pass_refusals``)."""
        levels = []

        def hold(value, level: int):
            levels.append(level)
            held = Signal(Value.cast(value).shape(), name=f"field_term_l{level}_{len(levels)}")
            m.d.sync += held.eq(value)
            return held

        slots = field_slots(self._fetch.desc)
        with wired(m):
            want = vec.slot_fields(*slots, hold=hold)
            outside = vec.extents_outside(vec.pass_extents(*slots, hold=hold), self._dram_bytes)
            refused = [refused for _, _, _, refused in vec.pass_refusals(*slots)]
        assert max(levels) + 1 == VEC_FIELD_CHECK, "hw.timing.VEC_FIELD_CHECK counts the rules' levels"
        mismatch = Signal()         # fields, extents or the operators' refusals: all DATA, as execute_vec's
        m.d.sync += mismatch.eq(any_of(*(want[name] != getattr(self.fields, name) for name in vec.TIMING_FIELDS),
                                       *outside, *refused))
        steps = Signal(VEC_FIELD_CHECK)
        m.d.sync += steps.eq(Cat(fetched, steps[:-1]))
        return steps.any(), steps[-1], mismatch
