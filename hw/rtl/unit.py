"""What the three units share: their ports to the queue and the token FIFOs, and when they start.

A unit takes the head of its queue (``insn``, a stream) in the cycle it *starts* it: the unit is
free, the dispatcher runs (``enable``) and every token the instruction pops is available (the
heads of the ``pop_*`` token FIFOs).  It pushes its tokens (``push_*``) when it is done
(``push_when``), with the number of cycles after which they become available
(``hw.rtl.fifo.TokenFifo``).  Which FIFO a flag pops or
pushes is ``hw.timing.TOKEN_LINKS``; a flag naming no neighbour has no port (the dispatcher
refuses it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Signal, Value
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from ..isa import INSN_BITS, Op, Queue
from ..expr import Fields, wire_source
from ..timing import TOKEN_LINKS, pe_hits
from .buses import TokenPopSignature, TokenPushSignature
from .insn import insn_view

__all__ = ["unit_members", "pop_flags", "push_flags", "start_when", "push_when", "pe_mask", "held"]


def pop_flags(queue: Queue) -> list[str]:
    return [flag for flag, fifo in TOKEN_LINKS[queue].items() if fifo is not None and flag.startswith("pop")]


def push_flags(queue: Queue) -> list[str]:
    return [flag for flag, fifo in TOKEN_LINKS[queue].items() if fifo is not None and flag.startswith("push")]


def unit_members(queue: Queue, max_wait: int) -> dict:
    """The ports every unit has: its queue's head, ``enable``, ``idle`` (nothing queued in the unit
    and every effect complete) and its token streams; pushes carry a wait up to ``max_wait``."""
    members = {"insn": In(stream.Signature(INSN_BITS)), "enable": In(1), "idle": Out(1)}
    for flag in pop_flags(queue):
        members[flag] = In(TokenPopSignature())
    for flag in push_flags(queue):
        members[flag] = Out(TokenPushSignature(max_wait))
    return members


def start_when(m, unit, queue: Queue, free) -> Signal:
    """The unit's start strobe: ``free`` (it can take an instruction), enabled, a head in the
    queue and the head's popped tokens available; takes the head and the tokens."""
    head = insn_view(Op.NOP, unit.insn.payload)
    tokens_ok = 1
    for flag in pop_flags(queue):
        tokens_ok = tokens_ok & (~head[flag] | getattr(unit, flag).valid)
    start = Signal(name="start")
    m.d.comb += [start.eq(unit.enable & unit.insn.valid & free & tokens_ok), unit.insn.ready.eq(start)]
    for flag in pop_flags(queue):
        m.d.comb += getattr(unit, flag).ready.eq(start & head[flag])
    return start


def push_when(m, unit, queue: Queue, done, head, wait=None) -> None:
    """Push a token on every FIFO the instruction ``head`` (a view of its header) flags, in the
    cycle ``done``, available ``wait`` + 1 cycles later (a unit whose pushes carry a wait): each
    token of an instruction at the same time, whichever neighbour it is for."""
    for flag in push_flags(queue):
        port = getattr(unit, flag)
        m.d.comb += port.valid.eq(done & head[flag])
        if wait is not None:
            m.d.comb += port.wait.eq(wait)


def held(m, shape, prefix: str = "", domain: str = "comb"):
    """A ``hold(value, name)`` for the formulas of ``hw.timing`` that take one (``store_addr``,
    ``store_timing``): each step in a signal of ``shape``, so a step that uses the previous one
    twice does not double it; with ``domain="sync"`` a register, a pipeline stage of a formula
    whose inputs hold still."""
    def hold(value, name):
        sig = Signal(shape, name=prefix + name)
        m.d[domain] += sig.eq(value)
        return sig
    return hold


def level_held(m, prefix: str):
    """``(hold, levels)``: a ``hold(value, level=None)`` for the rules of ``hw.vector`` that take one
    (``slot_fields``, ``pass_extents``, ``spatial_refusals``, ...): each term a register of its own
    shape, so that a rule's products and its comparisons after them are in different cycles;
    ``levels`` lists the levels of the terms held, for the caller's check of its cycles.  A term's
    level is one more than the deepest held term it reads (through ``hw.expr.wired``'s wires), or
    ``level`` where the rule names it (which must be above those it reads): its inputs hold still
    from the start, so it holds its final value ``level`` cycles after it."""
    levels = []
    held = {}                   # id of a held term's register or of a wire -> its level

    def level_of(signal) -> int:
        if id(signal) not in held:
            source = wire_source(signal)
            held[id(signal)] = 0 if source is None else reads(source)
        return held[id(signal)]

    def reads(value) -> int:
        return max((level_of(s) for s in Value.cast(value)._rhs_signals()), default=0)

    def hold(value, level: int | None = None):
        if isinstance(value, int):          # a constant: nothing to register
            return value
        below = reads(value)
        level = below + 1 if level is None else level
        if below >= level:
            raise ValueError(f"{prefix}: a term held at level {level} reads one held at level {below}")
        levels.append(level)
        sig = Signal(Value.cast(value).shape(), name=f"{prefix}_l{level}_{len(levels)}")
        m.d.sync += sig.eq(value)
        held[id(sig)] = level
        return sig
    return hold, levels


def pe_mask(view, num_pe: int):
    """The PE set of an instruction word (its ``pe_first``, ``pe_count``, ``pe_step``) as a mask
    (``hw.timing.pe_hits``: a comparison per divisor of each offset, then a shifter by ``pe_first``)."""
    return Cat(*pe_hits(Fields(view), num_pe))
