"""The queues between the dispatcher and the units, and the token FIFOs between the units.

``InsnQueue``
    ``QUEUE_DEPTH`` instruction words; a full queue accepts a word in the cycle its head is
    taken (``hw.timing``: an instruction enters when the one ``QUEUE_DEPTH`` earlier started).
    A small register file, its head held in a register (the word at the next read position).

``TokenFifo``
    The tokens of one link (``hw.timing.TOKEN_LINKS``), in program order.  A pushed token
    carries ``wait``: it becomes available ``wait + 1`` cycles after the push (the pusher's
    end, the data latency of a load or a store); each entry counts its wait down.  A token is
    never available before the one pushed earlier (its wait is at least what is left of the
    previous one's): the consumer takes them in order and starts after the earlier one
    anyway, so this changes no start cycle of ``hw.timing.schedule`` and makes the head the
    only entry to look at.  With ``max_wait = 0`` (tokens available the cycle after the push)
    the FIFO is an up/down counter.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import INSN_BITS
from ..timing import QUEUE_DEPTH, TOKEN_LIMIT
from .buses import TokenPopSignature, TokenPushSignature

__all__ = ["InsnQueue", "TokenFifo", "TOKEN_FIFO_DEPTH", "wrap_inc"]

#: More than hw.timing.TOKEN_LIMIT tokens in program order raises ``error`` (ErrorCode.TOKEN) at
#: dispatch; a FIFO holds TOKEN_LIMIT + QUEUE_DEPTH: at most QUEUE_DEPTH dispatched pops can
#: still be waiting in their queue.
TOKEN_FIFO_DEPTH = TOKEN_LIMIT + QUEUE_DEPTH


def wrap_inc(value, depth: int):
    """``value + 1`` modulo ``depth``: a position counter of a ring, compared, not divided."""
    return Mux(value == depth - 1, 0, value + 1)


class InsnQueue(wiring.Component):
    """A unit's instruction queue (see the module docstring).

    Members
    -------
    w: In(stream.Signature(INSN_BITS))
        From the dispatcher; ``w.ready`` while not full, or full with the head taken.
    r: Out(stream.Signature(INSN_BITS))
        The head, to the unit; taken when ``r.valid & r.ready``.
    """

    export_prefix = "insn_queue"

    @classmethod
    def export_params(cls, config) -> dict:
        return {"d": QUEUE_DEPTH}

    def __init__(self, config=None):
        super().__init__({"w": In(stream.Signature(INSN_BITS)), "r": Out(stream.Signature(INSN_BITS))})

    def elaborate(self, platform):
        m = Module()
        depth = QUEUE_DEPTH
        m.submodules.mem = mem = memory.Memory(shape=INSN_BITS, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        wp, rp, level = Signal(range(depth)), Signal(range(depth)), Signal(range(depth + 1))
        after = Signal(range(depth), init=1)            # rp + 1, wrapped
        head = Signal(INSN_BITS)
        take = self.r.valid & self.r.ready
        put = self.w.valid & self.w.ready
        # the head is a register, so the units decode it without the register file's read
        # multiplexer in front: it takes the word at the next read position, or the word being
        # written there this cycle (an empty queue, or one whose only entry is taken)
        nxt = Mux(take, after, rp)
        m.d.comb += [
            self.w.ready.eq((level != depth) | take),
            self.r.valid.eq(level != 0),
            rd.addr.eq(nxt), self.r.payload.eq(head),
            wr.addr.eq(wp), wr.data.eq(self.w.payload), wr.en.eq(put),
        ]
        m.d.sync += head.eq(Mux(put & (wp == nxt), self.w.payload, rd.data))
        with m.If(put):
            m.d.sync += wp.eq(wrap_inc(wp, depth))
        with m.If(take):
            m.d.sync += [rp.eq(after), after.eq(wrap_inc(after, depth))]
        m.d.sync += level.eq(level + put - take)
        return m


class TokenFifo(wiring.Component):
    """The tokens of one link (see the module docstring).

    Parameters
    ----------
    max_wait:
        The largest ``wait`` a token is pushed with.

    Members
    -------
    w: In(TokenPushSignature(max_wait))
        A push: available ``w.wait + 1`` cycles later; always accepted (the dispatcher's token
        count keeps the FIFO from overflowing).
    r: Out(TokenPopSignature())
        ``r.valid``: the oldest token is available; it is taken when ``r.ready``.
    """

    export_prefix = "token_fifo"

    @classmethod
    def export_params(cls, config, max_wait: int) -> dict:
        return {"w": max_wait}

    def __init__(self, config=None, *, max_wait: int):
        if not isinstance(max_wait, int) or max_wait < 0:
            raise ValueError(f"max_wait must be a non-negative integer, not {max_wait!r}")
        self._max_wait = max_wait
        super().__init__({"w": In(TokenPushSignature(max_wait)), "r": Out(TokenPopSignature())})

    @property
    def max_wait(self) -> int:
        return self._max_wait

    def elaborate(self, platform):
        m = Module()
        depth = TOKEN_FIFO_DEPTH
        take = self.r.valid & self.r.ready
        level = Signal(range(depth + 1))
        m.d.sync += level.eq(level + self.w.valid - take)
        if self._max_wait == 0:
            m.d.comb += self.r.valid.eq(level != 0)
            return m
        left = [Signal(range(self._max_wait + 1), name=f"wait{i}") for i in range(depth)]
        wp, rp = Signal(range(depth)), Signal(range(depth))
        last = Signal(range(depth))                    # the entry pushed last
        tail = Signal(range(self._max_wait + 1))       # its wait after this cycle
        newest = Array(left)[last]
        m.d.comb += tail.eq(Mux((level != 0) & (newest != 0), newest - 1, 0))
        for i, entry in enumerate(left):
            with m.If(self.w.valid & (wp == i)):
                m.d.sync += entry.eq(Mux(self.w.wait > tail, self.w.wait, tail))
            with m.Elif(entry != 0):
                m.d.sync += entry.eq(entry - 1)
        m.d.comb += self.r.valid.eq((level != 0) & (Array(left)[rp] == 0))
        with m.If(self.w.valid):
            m.d.sync += [wp.eq(wrap_inc(wp, depth)), last.eq(wp)]
        with m.If(take):
            m.d.sync += rp.eq(wrap_inc(rp, depth))
        return m
