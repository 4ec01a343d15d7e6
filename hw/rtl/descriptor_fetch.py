"""Reads a VEC descriptor from DRAM into its slots (``DescriptorFetch``).

What ``hw.vector.decode_descriptor`` does for the functional model: the header first, then the
``n_operands`` operands and ``n_stages`` stages it announces, a beat of ``lanes`` bytes a cycle;
the stages, which follow the given operands in DRAM, land in their slots of
:data:`vector_descriptor.DESCRIPTOR` (``descriptor_slots`` in Python).  A descriptor whose header
(``hw.vector.header_extent``) or whose bytes (``hw.vector.descriptor_extent``) leave the DRAM is
refused with ``ErrorCode.DATA`` before a byte past the DRAM is read, as
``sim.vector_unit.execute_vec`` refuses it before it reads.  What ``decode_descriptor`` refuses in
the bytes read (``hw.vector.descriptor_refusals``) the check after the fetch refuses
(``hw/rtl/vector_descriptor_check.py``), its products registered as the fields' check's are.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import vector as vec
from ..expr import Fields, wired
from ..isa import ADDR_BITS, ErrorCode
from ..timing import VEC_FETCH_BYTES, vec_fetch_cycles
from .buses import DRAM_READ_LATENCY, DramReadSignature
from .vector_descriptor import DESCRIPTOR

__all__ = ["DescriptorFetch"]


def _any(values):
    values = list(values)
    return Cat(*values).any() if values else 0


class DescriptorFetch(wiring.Component):
    """Fetch and check the descriptor at ``addr``.

    Parameters
    ----------
    lanes : int
        Bytes read a cycle; must divide the header, operand and stage sizes of ``hw.vector``.
    dram_bytes : int
        The DRAM's size (``AcceleratorConfig.dram_bytes``): a descriptor reaching past it is malformed.

    Members
    -------
    start: In(1)
        Fetch from ``addr`` (sampled with ``start``).
    addr: In(ADDR_BITS)
    desc: Out(DESCRIPTOR)
        The descriptor in its slots (unused slots zero), valid with ``done``.
    done, error, error_code: Out(1), Out(1), Out(ErrorCode)
        ``done`` for one cycle; ``error`` with ``DATA`` when the descriptor leaves the DRAM.
    dram_rd: Out(DramReadSignature(lanes))
    """

    def __init__(self, lanes: int = VEC_FETCH_BYTES, *, dram_bytes: int = 1 << ADDR_BITS):
        sizes = (vec.HEADER_BYTES, vec.OPERAND_BYTES, vec.STAGE_BYTES)
        if not isinstance(lanes, int) or lanes < 1 or any(size % lanes for size in sizes):
            raise ValueError(f"lanes must be a positive integer dividing {sizes}, not {lanes!r}")
        if not isinstance(dram_bytes, int) or not 1 <= dram_bytes <= 1 << ADDR_BITS:
            raise ValueError(f"dram_bytes must be an integer in 1..2**{ADDR_BITS}, not {dram_bytes!r}")
        self._lanes, self._dram_bytes = lanes, dram_bytes
        super().__init__({"start": In(1), "addr": In(ADDR_BITS), "desc": Out(DESCRIPTOR), "done": Out(1),
                          "error": Out(1), "error_code": Out(ErrorCode), "dram_rd": Out(DramReadSignature(lanes))})

    def cycles(self, d: vec.Descriptor) -> int:
        """Cycles from ``start`` to ``done``: ``hw.timing.vec_fetch_cycles`` of ``d``'s bytes."""
        return vec_fetch_cycles(vec.descriptor_bytes(d), self._lanes)

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats_of = {name: size // lanes for name, size in (("header", vec.HEADER_BYTES), ("operand", vec.OPERAND_BYTES),
                                                          ("stage", vec.STAGE_BYTES))}
        slots = DESCRIPTOR.size // (8 * lanes)
        base, beat = Signal(ADDR_BITS), Signal(range(slots + 1))
        head = self.desc.header
        # DRAM beat b lands in slot b, or, past the given operands, MAX_OPERANDS - n_operands operands on
        n_op = Mux(head.n_operands > vec.MAX_OPERANDS, vec.MAX_OPERANDS, head.n_operands)
        operand_end = beats_of["header"] + n_op * beats_of["operand"]
        got, got_beat = Signal(), Signal.like(beat)
        dest = Signal(range(slots))
        m.d.comb += dest.eq(Mux(got_beat >= operand_end, got_beat + (vec.MAX_OPERANDS - n_op) * beats_of["operand"],
                                got_beat))
        with m.If(got):
            m.d.sync += self.desc.as_value().word_select(dest, 8 * lanes).eq(Cat(*self.dram_rd.data))
        issue = Signal()
        m.d.comb += [self.dram_rd.en.eq(Mux(issue, (1 << lanes) - 1, 0))]
        for k in range(lanes):
            m.d.comb += self.dram_rd.addr[k].eq(base + beat * lanes + k)
        m.d.sync += [got.eq(issue), got_beat.eq(beat)]
        assert DRAM_READ_LATENCY == 1, "the fetch's beat bookkeeping assumes one-cycle reads"
        n_st = Mux(head.n_stages > vec.MAX_STAGES, vec.MAX_STAGES, head.n_stages)
        header_outside, body_outside = self._outside(m, base)
        with m.FSM(name="fetch"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [base.eq(self.addr), beat.eq(0), self.desc.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):     # read the header only if it lies in the DRAM
                with m.If(header_outside):
                    m.d.sync += self.error_code.eq(ErrorCode.DATA)
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += issue.eq(1)
                    m.d.sync += beat.eq(beat + 1)
                    m.next = "WAIT"
            with m.State("WAIT"):       # the header arrives
                m.next = "BODY"
            with m.State("BODY"):       # the header is in: it says how many beats follow, if they lie in the DRAM
                with m.If(body_outside):
                    m.d.sync += self.error_code.eq(ErrorCode.DATA)
                    m.next = "DONE"
                with m.Elif(beat < operand_end + n_st * beats_of["stage"]):
                    m.d.comb += issue.eq(1)
                    m.d.sync += beat.eq(beat + 1)
                with m.Elif(~got):
                    m.d.sync += self.error_code.eq(ErrorCode.NONE)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.error.eq(self.error_code != ErrorCode.NONE)]
                m.next = "IDLE"
        return m

    def _outside(self, m: Module, base) -> tuple:
        """(the header leaves the DRAM, the descriptor leaves it), each a signal.  Evaluated outside
        the FSM's states and wired (``hw.expr.wired``: each multiplexer of the rules a wire, emitted
        once)."""
        with wired(m):
            header_outside = _any(vec.extents_outside([vec.header_extent(base)], self._dram_bytes))
            body_outside = _any(vec.extents_outside([vec.descriptor_extent(base, Fields(self.desc.header))],
                                                    self._dram_bytes))
        return header_outside, body_outside
