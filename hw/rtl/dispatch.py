"""Fetch, decode and dispatch: one instruction per cycle into its unit's queue, malformed streams refused.

Four stages, so that the dispatch decision never waits for arithmetic on a word, no stage
multiplies more than two values, and no multiplication is followed by a comparison in the
same cycle:

fetch (F)
    the word at ``pc_f`` (``imem.addr``, answered in the same cycle) is registered into P with
    the products of two of its fields that ``hw.timing.legality_terms`` holds (its ``hold``).
products (P)
    the registered word's legality terms (``hw.timing.legality_terms``: the held products'
    products, and the terms of one product) are registered into T with the word.
terms (T)
    the registered word at ``pc_t`` is decoded: its opcode and the checks that need only the
    word (``hw.timing.legality`` on the registered terms, reserved bits, what this RTL does
    not build, the token flags per link: ``hw.timing.token_links``); the results are registered into D.
dispatch (D)
    the registered word at ``pc_d`` is dispatched: into its queue when the queue accepts
    it, NOP at once, FENCE/END when everything is quiet (every queue empty, every unit idle),
    END then raises ``done``.  The token counts in program order and the global buffer's
    write-port claims since the last FENCE are kept and checked here, against the registered
    flags (``hw.timing.token_links``), by ``hw.timing.token_dispatch``: the rule
    ``hw.timing.schedule`` evaluates on integers.

The stages move together, whenever D dispatches or is empty: T holds instruction ``pc_d + 1``,
P ``pc_d + 2`` and F fetches ``pc_d + 3`` while D holds ``pc_d``.  In the start cycle F fetches
instruction 0, P holds it in cycle 0, T in cycle 1 and D in cycle 2 (``hw.timing.DECODE_STAGES``:
instruction i at the earliest in cycle i + 2).  After an error ``imem.addr`` points at the culprit (``pc_f``
takes ``pc_d``).

Errors (``hw.isa.ErrorCode``, first that holds, in ``hw.rtl.insn.DISPATCH_ORDER``): OPCODE (no such
opcode, or the fetch reached ``imem_words``), RESERVED, UNSUPPORTED, RANGE, TOKEN (at END only once
everything is quiet),
DATA or UNSUPPORTED (``data_error`` with ``data_error_code``: found by a unit while running; the
vector executor refuses a descriptor it does not build with UNSUPPORTED).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import Fields, any_of
from ..isa import ADDR_BITS, DEP_FLAGS, INSN_BITS, INSN_BYTES, QUEUE_OF, ErrorCode, Op, Queue, opcode_bad, vec_op_bad
from ..timing import (DECODE_STAGES, TOKEN_FIFOS, TOKEN_LIMIT, gb_write_claims, legality, legality_terms, token_dispatch,
                      token_links)
from .buses import ImemSignature
from .insn import CYCLE_BITS, DISPATCH_ORDER, LAYOUTS, insn_view, rtl_unsupported
from .vector_executor import builds_vector_unit

__all__ = ["Dispatcher", "IMEM_WORDS", "QUEUE_NAMES"]

#: Instruction words the fetch addresses (32-bit byte addresses): running into word
#: ``imem_words`` raises ``error`` (OPCODE), as a stream without END does in hw.timing.schedule.
IMEM_WORDS = (1 << ADDR_BITS) // INSN_BYTES
#: The name of each unit's queue (a port of the dispatcher).
QUEUE_NAMES = {Queue.LOAD: "lq", Queue.COMPUTE: "cq", Queue.STORE: "sq"}


class _Stage:
    """What a decode stage registers for the next: the word, whether the fetch ran past the
    memory, and each opcode's values (``formed[op]``: a dict of name -> value of the word)."""

    def __init__(self, suffix: str, formed: dict):
        self.word = Signal(INSN_BITS, name=f"word{suffix}")
        self.past_end = Signal(name=f"past_end{suffix}")
        self._formed = formed
        self.values = {o: {k: Signal.like(v, name=f"{o.name.lower()}_{k}{suffix}") for k, v in t.items()}
                       for o, t in formed.items()}

    def updates(self, word, past_end) -> list:
        return [self.word.eq(word), self.past_end.eq(past_end),
                *(self.values[o][k].eq(v) for o, t in self._formed.items() for k, v in t.items())]


def _held_products(word) -> dict:
    """Per opcode, the products of two fields of ``word`` that ``legality_terms`` holds."""
    held = {o: {} for o in Op}
    for o in Op:
        legality_terms(o, Fields(insn_view(o, word)), hold=lambda value, name, o=o: held[o].setdefault(name, value))
    return held


def _terms_of(word, held: dict) -> dict:
    """Per opcode, ``legality_terms`` of ``word`` with the held products registered (``held``)."""
    return {o: legality_terms(o, Fields(insn_view(o, word)), hold=lambda value, name, o=o: held[o][name]) for o in Op}


class _Decoded:
    """What the terms stage finds in a word (comb in T, the same signals registered in D)."""

    def __init__(self, suffix: str):
        self.word = Signal(INSN_BITS, name=f"word{suffix}")
        self.bad_opcode = Signal(name=f"bad_opcode{suffix}")
        self.bad_reserved = Signal(name=f"bad_reserved{suffix}")
        self.unsupported = Signal(name=f"unsupported{suffix}")
        # per opcode, its legality on the word viewed as that opcode: the opcode chooses in D
        self.bad_range = {o: Signal(name=f"bad_range_{o.name.lower()}{suffix}") for o in Op}
        self.queue = {q: Signal(name=f"to_{name}{suffix}") for q, name in QUEUE_NAMES.items()}
        # per token FIFO: a flag of this word pushes / pops it; a flag naming no neighbour
        self.pushes = {n: Signal(name=f"push_{n}{suffix}") for n in TOKEN_FIFOS}
        self.pops = {n: Signal(name=f"pop_{n}{suffix}") for n in TOKEN_FIFOS}
        self.no_link = Signal(name=f"no_link{suffix}")

    def signals(self) -> list:
        return [self.word, self.bad_opcode, self.bad_reserved, self.unsupported, *self.bad_range.values(), self.no_link,
                *self.queue.values(), *self.pushes.values(), *self.pops.values()]


class Dispatcher(wiring.Component):
    """Fetch, decode and dispatch (see the module docstring).

    Parameters
    ----------
    config:
        The configuration (the legality rules use it).
    imem_words:
        Instruction words the fetch may address: fetching word ``imem_words`` is an OPCODE error.

    Members
    -------
    start: In(1)
        Pulse: the next cycle is cycle 0 (accepted once after reset).
    done, error: Out(1); error_code: Out(ErrorCode); cycle: Out(CYCLE_BITS)
    running: Out(1)
        Between start and done or error: the units may start instructions.
    imem: Out(ImemSignature())
    lq, cq, sq: Out(stream.Signature(INSN_BITS))
        The load, compute and store queues.
    quiet: In(1)
        Every queue empty and every unit idle (all effects complete).
    data_error: In(1), data_error_code: In(ErrorCode)
        A unit found an error while running (DATA, or UNSUPPORTED from the vector executor).
    """

    export_prefix = "dispatcher"

    @classmethod
    def export_params(cls, config: AcceleratorConfig, imem_words: int = IMEM_WORDS) -> dict:
        params = {"n": config.num_pe, "k": config.k0, "c": config.c0, "i": config.input_rows,
                  "w": config.weight_rows, "d": config.accum_depth, "p": config.param_depth,
                  "m": config.global_buf_bytes, "g": config.gb_bus_bytes}
        return params if imem_words == IMEM_WORDS else {**params, "words": imem_words}

    def __init__(self, config: AcceleratorConfig, *, imem_words: int = IMEM_WORDS):
        if not 1 <= imem_words <= IMEM_WORDS:
            raise ValueError(f"imem_words must be between 1 and {IMEM_WORDS}, not {imem_words!r}")
        self._config = config
        self._imem_words = imem_words
        super().__init__({
            "start": In(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode),
            "cycle": Out(CYCLE_BITS), "running": Out(1), "imem": Out(ImemSignature()),
            **{name: Out(stream.Signature(INSN_BITS)) for name in QUEUE_NAMES.values()},
            "quiet": In(1), "data_error": In(1), "data_error_code": In(ErrorCode),
        })

    def elaborate(self, platform):
        assert DECODE_STAGES == 2, "two stages (P, T) between the fetch and the dispatch below"
        m = Module()
        running, halted, d_full = self.running, Signal(), Signal()
        pc_f, pc_p, pc_t, pc_d = Signal(ADDR_BITS), Signal(ADDR_BITS), Signal(ADDR_BITS), Signal(ADDR_BITS)
        t_full = Signal()
        with m.If(running):
            m.d.sync += self.cycle.eq(self.cycle + 1)
        begin = self.start & ~running & ~self.done & ~halted
        with m.If(begin):
            m.d.sync += [running.eq(1), self.cycle.eq(0)]
        m.d.comb += self.imem.addr.eq(pc_f * INSN_BYTES)

        p = _Stage("_p", _held_products(self.imem.data))
        t = _Stage("_t", _terms_of(p.word, p.values))
        f = self._decode(m, t)
        d = _Decoded("_d")
        err, dispatch, is_end = self._dispatch(m, d, d_full)
        # The stages move in the start cycle (F fetches instruction 0), while D is empty and
        # whenever D dispatches (but not past END).
        with m.If(begin | (running & ~d_full) | (dispatch & ~is_end)):
            m.d.sync += p.updates(self.imem.data, pc_f == self._imem_words)
            m.d.sync += t.updates(p.word, p.past_end)
            m.d.sync += [dst.eq(src) for dst, src in zip(d.signals(), f.signals())]
            # in the start cycle P and T are still empty: T takes a word from cycle 0 on, D from cycle 1
            m.d.sync += [pc_p.eq(pc_f), pc_t.eq(pc_p), pc_d.eq(pc_t), pc_f.eq(pc_f + 1),
                         t_full.eq(running), d_full.eq(t_full)]
        with m.If(dispatch & is_end):
            m.d.sync += [running.eq(0), self.done.eq(1)]
        with m.If(err != ErrorCode.NONE):
            m.d.sync += [running.eq(0), halted.eq(1), self.error.eq(1), self.error_code.eq(err), pc_f.eq(pc_d)]
        return m

    def _decode(self, m, t: _Stage) -> _Decoded:
        """The terms stage: everything about the word in T that needs only the word."""
        cfg = self._config
        f = _Decoded("_dec")
        word = t.word
        op = insn_view(Op.NOP, word).opcode
        m.d.comb += [f.word.eq(word), f.bad_opcode.eq(opcode_bad(op) | t.past_end)]
        with m.Switch(op):
            for o in Op:
                with m.Case(o):
                    v = insn_view(o, word)
                    reserved = v.reserved != 0 if "reserved" in LAYOUTS[o].members else 0
                    if o == Op.VEC:
                        reserved = reserved | vec_op_bad(v.vec_op)
                    m.d.comb += [f.bad_reserved.eq(reserved), f.unsupported.eq(rtl_unsupported(o, Fields(v), builds_vector_unit(cfg)))]
                    if QUEUE_OF[o] in QUEUE_NAMES:
                        m.d.comb += f.queue[QUEUE_OF[o]].eq(1)
        for o in Op:
            bad = legality(o, Fields(insn_view(o, word)), cfg, t.values[o])
            m.d.comb += f.bad_range[o].eq(any_of(0, *(b for b, _ in bad)))
        hdr = insn_view(Op.NOP, word)
        no_link = []
        for q in QUEUE_NAMES:
            pops, pushes, unlinked = token_links(q, {flag: f.queue[q] & hdr[flag] for flag in DEP_FLAGS})
            m.d.comb += [*(f.pops[n].eq(v) for n, v in pops.items()), *(f.pushes[n].eq(v) for n, v in pushes.items())]
            no_link += [used for _, used in unlinked]
        m.d.comb += f.no_link.eq(any_of(0, *no_link))
        return f

    def _dispatch(self, m, d: _Decoded, d_full):
        """The dispatch stage: the error of the word in D (when D holds one), and whether it
        dispatches this cycle."""
        running = self.running
        op = insn_view(Op.NOP, d.word).opcode
        is_end = Signal()
        m.d.comb += is_end.eq(op == Op.END)
        # Tokens in program order and the global buffer's write-port claims since the last FENCE:
        # hw.timing.token_dispatch, the rule hw.timing.schedule evaluates on integers.
        counts = {name: Signal(range(TOKEN_LIMIT + 1), name=f"tokens_{name}") for name in TOKEN_FIFOS}
        held = [Signal(name="gb_loaded"), Signal(name="gb_stored")]
        new_counts, new_held, refusals = token_dispatch(
            counts, held, d.pops, d.pushes, d.no_link, gb_write_claims(op, insn_view(Op.STORE, d.word).dst_gb),
            is_end, (op == Op.FENCE) | is_end)
        token_bad = any_of(*(bad for bad, _ in refusals))
        found = {ErrorCode.OPCODE: d.bad_opcode, ErrorCode.RESERVED: d.bad_reserved,
                 ErrorCode.UNSUPPORTED: d.unsupported,
                 ErrorCode.RANGE: any_of(0, *((op == o) & d.bad_range[o] for o in Op)),
                 ErrorCode.TOKEN: token_bad & (~is_end | self.quiet)}
        assert set(found) == set(DISPATCH_ORDER), "a condition for each code of hw.rtl.insn.DISPATCH_ORDER"
        err = Signal(ErrorCode)
        with m.If(running & d_full):
            # the first that holds, in DISPATCH_ORDER (what bad_stream_code and the fuzz expect)
            for i, code in enumerate(DISPATCH_ORDER):
                with (m.Elif if i else m.If)(found[code]):
                    m.d.comb += err.eq(code)
            with m.Elif(self.data_error):
                m.d.comb += err.eq(self.data_error_code)

        dispatch = Signal()
        queues = {q: getattr(self, name) for q, name in QUEUE_NAMES.items()}
        with m.If(running & d_full & (err == ErrorCode.NONE)):
            with m.Switch(op):
                with m.Case(Op.NOP):
                    m.d.comb += dispatch.eq(1)
                with m.Case(Op.FENCE, Op.END):
                    m.d.comb += dispatch.eq(self.quiet)
                with m.Default():
                    for q, port in queues.items():
                        with m.If(d.queue[q]):
                            m.d.comb += [dispatch.eq(port.ready), port.valid.eq(1)]
        for port in queues.values():
            m.d.comb += port.payload.eq(d.word)
        with m.If(dispatch):
            m.d.sync += [counts[n].eq(new_counts[n]) for n in TOKEN_FIFOS]
            m.d.sync += [h.eq(v) for h, v in zip(held, new_held)]
        return err, dispatch, is_end
