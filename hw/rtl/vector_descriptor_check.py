"""A VEC's descriptor fetched from DRAM and checked against the VEC's fields (``DescriptorCheck``).

``DescriptorFetch``, then the check of the descriptor and of the VEC's fields against it: what the
vector executor does before it starts a unit (``hw.rtl.vector_executor``).  On the fetched slots the
check evaluates ``hw.vector.descriptor_refusals`` (what ``decode_descriptor`` refuses),
``hw.vector.slot_fields`` (what ``vec_fields`` and so the simulator's ``execute_vec`` evaluate),
``hw.vector.pass_extents``, ``hw.vector.pass_refusals`` and ``hw.vector.overlapping_writes``: a
malformed descriptor, a VEC whose fields are not its descriptor's, a pass whose operands or tables
leave the configuration's DRAM (``dram_bytes``), one holding what the operators refuse (any live
stage's parameters, rows, channels or rasters) or one writing bytes it also reads through another
operand, or through a pattern that is not one-to-one, is refused with ``DATA``,
``hw.timing.VEC_FIELD_CHECK`` cycles after the fetch, before anything is read or written and before
the unit's own refusals, as ``execute_vec`` refuses it.  The rules' terms are registered at ``hw.vector.FIELD_HOLD_LEVELS`` levels
(``hw.rtl.unit.level_held``), so that no cycle of the check is deeper than about a product.

Its registers change only from a ``start`` to the end of the check (``busy``), so the executor
clocks it through a clock gate (``hw.rtl.clock_gate``): the check's wide logic on the descriptor
is then evaluated by Verilator only while a VEC is being fetched and checked.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import vector as vec
from ..expr import any_of, wired
from ..isa import ADDR_BITS, ErrorCode
from ..timing import VEC_FETCH_BYTES, VEC_FIELD_CHECK
from .buses import VEC_TIMING, DramReadSignature
from .descriptor_fetch import DescriptorFetch
from .unit import level_held
from .vector_descriptor import DESCRIPTOR, field_slots

#: Bytes the descriptor fetch reads a cycle, on the low lanes of the executor's read port.
FETCH_LANES = VEC_FETCH_BYTES

__all__ = ["DescriptorCheck", "FETCH_LANES"]


class DescriptorCheck(wiring.Component):
    """Fetch the descriptor at ``addr`` and check it against ``fields``.

    Parameters
    ----------
    dram_bytes : int
        The DRAM's size (``AcceleratorConfig.dram_bytes``): bounds the descriptor and the bytes a
        pass may touch (``hw.vector.pass_extents``).

    Members
    -------
    start: In(1)
        Fetch from ``addr`` (sampled with ``start``).
    addr: In(ADDR_BITS)
    fields: In(VEC_TIMING)
        The VEC's fields that its descriptor decides, held from ``start`` to ``done``.
    desc: Out(DESCRIPTOR)
        The fetched descriptor, held from the end of the fetch to the next ``start``.
    busy, fetching: Out(1)
        From the cycle after ``start`` to ``done``; ``fetching`` while the fetch owns ``dram_rd``.
    done, run, error, error_code: Out(1), Out(1), Out(1), Out(ErrorCode)
        ``done`` for one cycle, with ``run`` when the descriptor passed every check, or ``error``
        and ``DATA`` when the fetch refused it (it leaves the DRAM; ``error_code`` the fetch's) or
        the check did (in its last cycle).
    dram_rd: Out(DramReadSignature(FETCH_LANES))
    """

    def __init__(self, *, dram_bytes: int = 1 << ADDR_BITS):
        self._fetch = DescriptorFetch(FETCH_LANES, dram_bytes=dram_bytes)
        self._dram_bytes = dram_bytes
        super().__init__({
            "start": In(1), "addr": In(ADDR_BITS), "fields": In(VEC_TIMING), "desc": Out(DESCRIPTOR),
            "busy": Out(1), "fetching": Out(1), "done": Out(1), "run": Out(1), "error": Out(1),
            "error_code": Out(ErrorCode), "dram_rd": Out(DramReadSignature(FETCH_LANES))})

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done`` for a descriptor that passes: the fetch, the check."""
        return self._fetch.cycles(d) + VEC_FIELD_CHECK

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch = fetch = self._fetch
        wiring.connect(m, wiring.flipped(self.dram_rd), fetch.dram_rd)
        with m.If(self.start):
            m.d.sync += self.fetching.eq(1)
        with m.Elif(fetch.done):
            m.d.sync += self.fetching.eq(0)
        checking, checked, mismatch = self._check_fields(m, fetch.done & ~fetch.error)
        m.d.comb += [
            fetch.start.eq(self.start), fetch.addr.eq(self.addr), self.desc.eq(fetch.desc),
            self.busy.eq(self.fetching | checking), self.done.eq((fetch.done & fetch.error) | checked),
            self.run.eq(checked & ~mismatch), self.error.eq((fetch.done & fetch.error) | (checked & mismatch)),
            self.error_code.eq(Mux(fetch.done, fetch.error_code, ErrorCode.DATA)),
        ]
        return m

    def _check_fields(self, m: Module, fetched):
        """(checking, its last cycle ``VEC_FIELD_CHECK`` cycles after ``fetched``, whether the fetched
        descriptor, which holds still from ``fetched`` on, is malformed, ``hw.vector.descriptor_refusals``,
        its fields differ from the VEC's, ``hw.vector.slot_fields``, the pass touches bytes outside the
        DRAM, ``hw.vector.pass_extents``, holds what the operators refuse, ``hw.vector.pass_refusals``,
        or writes over bytes it reads, or through a pattern that is not one-to-one,
        ``hw.vector.overlapping_writes``).
        Each rule's terms are registered (``level_held``) so that no cycle holds more than about a
        product or two adds; the groups' ORs are the last level."""
        hold, levels = level_held(m, "field_term")
        slots = field_slots(self._fetch.desc)
        with wired(m):
            want = vec.slot_fields(*slots, hold=hold)
            extents = vec.pass_extents(*slots, hold=hold)
            groups = [
                [refused for _, _, _, refused in vec.descriptor_refusals(*slots, hold=hold)],
                [want[name] != getattr(self.fields, name) for name in vec.TIMING_FIELDS],
                vec.extents_outside(extents, self._dram_bytes),
                [refused for _, _, _, refused in vec.pass_refusals(*slots, hold=hold)],
                [refused for _, _, _, refused in vec.overlapping_writes(*slots, extents, hold=hold)],
            ]
            refusals = [hold(any_of(*group)) for group in groups]
        assert max(levels) + 1 == VEC_FIELD_CHECK, \
            f"hw.timing.VEC_FIELD_CHECK counts the rules' levels: {max(levels)} and the last OR"
        mismatch = Signal()         # malformed, fields, extents or the operators' refusals: all DATA, as execute_vec's
        m.d.sync += mismatch.eq(any_of(*refusals))
        steps = Signal(VEC_FIELD_CHECK)
        m.d.sync += steps.eq(Cat(fetched, steps[:-1]))
        return steps.any(), steps[-1], mismatch
