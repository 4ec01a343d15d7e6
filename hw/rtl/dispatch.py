"""Fetch, decode and dispatch: one instruction per cycle into its unit's queue, malformed streams refused.

Two stages, so that the dispatch decision never waits for arithmetic on a word that has just
come out of the instruction memory:

decode (F)
    the word at ``pc_f`` (``imem.addr``, answered in the same cycle) is decoded: its opcode
    and the checks that need only the word (``hw.timing.legality`` with its products, reserved
    bits, what this RTL does not build, the token flags per link); the results are registered
    into the dispatch stage when it takes the next word.
dispatch (D)
    the registered word at ``pc_d`` is dispatched: into its queue when the queue accepts
    it, NOP at once, FENCE/END when everything is quiet (every queue empty, every unit idle),
    END then raises ``done``.  The token counts in program order (``hw.timing.TOKEN_LINKS``,
    as ``hw.timing.schedule`` counts them) are checked here, against the registered flags.

The decode stage works on instruction ``pc_d + 1`` while D holds ``pc_d``; in the start cycle
it decodes instruction 0, so D holds it in cycle 0 and the timing is that of a dispatcher
reading the memory in the dispatch cycle (``hw.timing``: instruction i at the earliest in
cycle i).  After an error ``imem.addr`` points at the culprit (``pc_f`` takes ``pc_d``).

Errors (``hw.isa.ErrorCode``, first that holds): OPCODE (no such opcode, or the fetch reached
``imem_words``), RESERVED, UNSUPPORTED, RANGE, TOKEN (at END only once everything is quiet),
DATA or UNSUPPORTED (``data_error`` with ``data_error_code``: found by a unit while running; the
vector executor refuses a descriptor it does not build with UNSUPPORTED).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import Fields, any_of
from ..isa import INSN_BITS, INSN_BYTES, QUEUE_OF, ErrorCode, Op, Queue, VecOp
from ..timing import TOKEN_FIFOS, TOKEN_LIMIT, TOKEN_LINKS, legality
from .buses import ImemSignature
from .insn import CYCLE_BITS, LAYOUTS, insn_view, rtl_unsupported
from .vector_executor import builds_vector_unit

__all__ = ["Dispatcher", "IMEM_WORDS", "QUEUE_NAMES"]

#: Instruction words the fetch addresses (32-bit byte addresses): running into word
#: ``imem_words`` raises ``error`` (OPCODE), as a stream without END does in hw.timing.schedule.
IMEM_WORDS = 1 << 27
#: The name of each unit's queue (a port of the dispatcher).
QUEUE_NAMES = {Queue.LOAD: "lq", Queue.COMPUTE: "cq", Queue.STORE: "sq"}


class _Decoded:
    """What the decode stage finds in a word (comb in F, the same signals registered in D)."""

    def __init__(self, suffix: str):
        self.word = Signal(INSN_BITS, name=f"word{suffix}")
        self.bad_opcode = Signal(name=f"bad_opcode{suffix}")
        self.bad_reserved = Signal(name=f"bad_reserved{suffix}")
        self.unsupported = Signal(name=f"unsupported{suffix}")
        self.bad_range = Signal(name=f"bad_range{suffix}")
        self.queue = {q: Signal(name=f"to_{name}{suffix}") for q, name in QUEUE_NAMES.items()}
        # per token FIFO: a flag of this word pushes / pops it; a flag naming no neighbour
        self.pushes = {n: Signal(name=f"push_{n}{suffix}") for n in TOKEN_FIFOS}
        self.pops = {n: Signal(name=f"pop_{n}{suffix}") for n in TOKEN_FIFOS}
        self.no_link = Signal(name=f"no_link{suffix}")

    def signals(self) -> list:
        return [self.word, self.bad_opcode, self.bad_reserved, self.unsupported, self.bad_range, self.no_link,
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
        m = Module()
        running, halted = self.running, Signal()
        pc_f, pc_d = Signal(32), Signal(32)
        with m.If(running):
            m.d.sync += self.cycle.eq(self.cycle + 1)
        begin = self.start & ~running & ~self.done & ~halted
        with m.If(begin):
            m.d.sync += [running.eq(1), self.cycle.eq(0)]
        m.d.comb += self.imem.addr.eq(pc_f * INSN_BYTES)

        f = self._decode(m, pc_f)
        d = _Decoded("_d")
        err, dispatch, is_end = self._dispatch(m, d)
        # D takes the next word in the start cycle and whenever it dispatches (but not past END).
        with m.If(begin | (dispatch & ~is_end)):
            m.d.sync += [dst.eq(src) for dst, src in zip(d.signals(), f.signals())]
            m.d.sync += [pc_d.eq(pc_f), pc_f.eq(pc_f + 1)]
        with m.If(dispatch & is_end):
            m.d.sync += [running.eq(0), self.done.eq(1)]
        with m.If(err != ErrorCode.NONE):
            m.d.sync += [running.eq(0), halted.eq(1), self.error.eq(1), self.error_code.eq(err), pc_f.eq(pc_d)]
        return m

    def _decode(self, m, pc_f) -> _Decoded:
        """The decode stage: everything about the word at ``pc_f`` that needs only the word."""
        cfg = self._config
        f = _Decoded("_f")
        word = self.imem.data
        op = insn_view(Op.NOP, word).opcode
        m.d.comb += [f.word.eq(word),
                     f.bad_opcode.eq((op == 0) | (op > max(Op)) | (pc_f == self._imem_words))]
        with m.Switch(op):
            for o in Op:
                with m.Case(o):
                    v = insn_view(o, word)
                    reserved = v.reserved != 0 if "reserved" in LAYOUTS[o].members else 0
                    if o == Op.VEC:
                        reserved = reserved | (v.vec_op > max(VecOp))
                    m.d.comb += [f.bad_reserved.eq(reserved), f.unsupported.eq(rtl_unsupported(o, Fields(v), builds_vector_unit(cfg))),
                                 f.bad_range.eq(any_of(0, *(bad for bad, _ in legality(o, Fields(v), cfg))))]
                    if QUEUE_OF[o] in QUEUE_NAMES:
                        m.d.comb += f.queue[QUEUE_OF[o]].eq(1)
        hdr = insn_view(Op.NOP, word)
        no_link = []
        for q in QUEUE_NAMES:
            for flag, name in TOKEN_LINKS[q].items():
                used = f.queue[q] & hdr[flag]
                if name is None:
                    no_link.append(used)
                else:
                    m.d.comb += (f.pops if flag.startswith("pop") else f.pushes)[name].eq(used)
        m.d.comb += f.no_link.eq(any_of(0, *no_link))
        return f

    def _dispatch(self, m, d: _Decoded):
        """The dispatch stage: the error of the word in D, and whether it dispatches this cycle."""
        running = self.running
        op = insn_view(Op.NOP, d.word).opcode
        is_end = Signal()
        m.d.comb += is_end.eq(op == Op.END)
        # Tokens in program order (hw.timing.TOKEN_LINKS), counted as hw.timing.schedule does.
        counts = {name: Signal(range(TOKEN_LIMIT + 1), name=f"tokens_{name}") for name in TOKEN_FIFOS}
        new_counts = {name: counts[name] + d.pushes[name] - d.pops[name] for name in TOKEN_FIFOS}
        token_bad = any_of(d.no_link, *(d.pops[n] & (counts[n] == 0) for n in TOKEN_FIFOS),
                           *(new_counts[n] > TOKEN_LIMIT for n in TOKEN_FIFOS),
                           *(is_end & (counts[n] != 0) for n in TOKEN_FIFOS))
        err = Signal(ErrorCode)
        with m.If(running):
            with m.If(d.bad_opcode):
                m.d.comb += err.eq(ErrorCode.OPCODE)
            with m.Elif(d.bad_reserved):
                m.d.comb += err.eq(ErrorCode.RESERVED)
            with m.Elif(d.unsupported):
                m.d.comb += err.eq(ErrorCode.UNSUPPORTED)
            with m.Elif(d.bad_range):
                m.d.comb += err.eq(ErrorCode.RANGE)
            with m.Elif(token_bad & (~is_end | self.quiet)):
                m.d.comb += err.eq(ErrorCode.TOKEN)
            with m.Elif(self.data_error):
                m.d.comb += err.eq(self.data_error_code)

        dispatch = Signal()
        queues = {q: getattr(self, name) for q, name in QUEUE_NAMES.items()}
        with m.If(running & (err == ErrorCode.NONE)):
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
        return err, dispatch, is_end
