"""The top level: the dispatcher, three queues, three units, five token FIFOs, the PE array and the vector executor.

``Accelerator(config)`` executes an instruction stream (``hw/isa.py``) with the semantics of
``sim/functional.py`` and, cycle for cycle, the timing of ``hw/timing.py``: cycle 0 is the
first cycle after ``start`` was sampled high, and ``done`` reads 1 from cycle
``schedule(stream, config).total_cycles`` on.  ``docs/rtl.md`` describes the ports and the
micro-architecture; the top only instantiates the units and joins their buses::

    imem -> Dispatcher -lq-> InsnQueue -> LoadUnit ----ld---> PEArray <--gemm-- ComputeUnit <- InsnQueue <-cq-
                       -sq-> InsnQueue -> StoreUnit <--st-->                      |vec
                                                                       VectorExecutor <-> vec_rd, vec_wr
    tokens: LoadUnit -l2c-> ComputeUnit -c2l-> LoadUnit, ComputeUnit -c2s-> StoreUnit -s2c-> ComputeUnit,
            StoreUnit -s2l-> LoadUnit (hw.timing.TOKEN_LINKS)

Timing shell
    Every unit computes the contract's occupancy and latency of an instruction in hardware
    (from its fields, and for LOAD_INP from the in-bounds bytes its address generator counts)
    and counts them down.  Its datapath is never slower: the load unit moves
    ``gb_bus_bytes`` per cycle (the contract's bus term), GEMM one pixel per cycle, STORE one
    pixel of every PE per cycle.  DRAM bandwidth and latency are therefore enforced by the
    shell, and the DRAM ports are simple fixed-latency gather/scatter ports.  A VEC is counted
    down by the compute unit from its fields (``hw.timing.vec_cycles``) while the vector
    executor runs it; the executor is never slower (``docs/rtl_vector.md``).

Vector ports
    The vector executor gathers and scatters with an address per lane, more lanes than the
    load and store ports have (``read_lanes`` / ``write_lanes`` of ``vector_lanes``: 80 and 32 on
    ``tiny``), and it cannot stall.  It therefore has DRAM ports of its own, ``vec_rd`` and
    ``vec_wr``, with the protocol of ``dram_rd`` / ``dram_wr``; the DRAM serves all four.

Tokens
    A unit pushes a token when its instruction is done, with the cycles until its effects are
    complete (``hw.rtl.fifo.TokenFifo``); a popping instruction starts when the token is
    available.  The dispatcher counts tokens in program order, so a pop that no earlier
    instruction pushed, a flag naming a missing neighbour, or tokens left at END raise
    ``error`` at dispatch instead of hanging.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, INSN_BITS, ErrorCode, Queue
from ..timing import GB_LATENCY, TOKEN_FIFOS, TOKEN_LIMIT, TOKEN_LINKS
from .buses import DRAM_READ_LATENCY, DramReadSignature, DramWriteSignature, load_geometry
from .clock_gate import gate_clock
from .compute_unit import ComputeUnit
from .dispatch import IMEM_WORDS, QUEUE_NAMES, Dispatcher
from .fifo import InsnQueue, TokenFifo
from .insn import CYCLE_BITS, insn_layout, rtl_unsupported
from .load_unit import LoadUnit
from .pe_array import PEArray
from .pe_tile import PETile, check_rtl_config
from .store_unit import StoreUnit
from .vector_executor import VectorExecutor, builds_vector_unit, vector_ports

__all__ = ["Accelerator", "ErrorCode", "rtl_unsupported", "IMEM_WORDS", "DramReadSignature", "DramWriteSignature",
           "insn_layout", "CYCLE_BITS", "TOKEN_LIMIT", "DRAM_READ_LATENCY", "token_max_wait"]

_UNITS = {Queue.LOAD: LoadUnit, Queue.COMPUTE: ComputeUnit, Queue.STORE: StoreUnit}


def token_max_wait(fifo: str, config: AcceleratorConfig) -> int:
    """The longest wait a token of FIFO ``fifo`` is pushed with: what is left of the pusher's
    latency when it is done (loads: the DRAM or global-buffer latency; stores: the DRAM latency
    after the busy time; GEMMs push in their last cycle)."""
    pusher = next(q for q, links in TOKEN_LINKS.items() if fifo in (links["push_prev"], links["push_next"]))
    if pusher == Queue.LOAD:
        return max(config.dram_latency, GB_LATENCY) - 1
    if pusher == Queue.STORE:
        return config.dram_latency - 1
    return 0


class Accelerator(wiring.Component):
    """The accelerator of ``config``: executes ISA streams bit- and cycle-exactly.

    Parameters
    ----------
    config:
        The configuration; :func:`hw.rtl.pe_tile.check_rtl_config` lists what the RTL needs.
    factories:
        ``{name: factory}`` replacing how a block is built (``dispatcher``, ``queue``,
        ``token_fifo``, ``load_unit``, ``compute_unit``, ``store_unit``, ``pe_array``,
        ``vector_executor``; each is
        called like the class): the export passes black boxes.
    imem_words:
        Depth of the instruction memory in words: fetching word ``imem_words`` raises
        ``error`` (OPCODE), so a stream without END never runs on past it.
    gate_factory:
        Builds the clock gates (``hw.rtl.clock_gate.ClockGate``, the exporter's) that clock the
        load and store units only while they are ``active``; without one (Amaranth's simulator)
        their registers hold by a clock enable in the same cycles (``hw.rtl.clock_gate.gate_clock``).

    Members
    -------
    start: In(1)
        Pulse to start fetching at instruction 0; the next cycle is cycle 0.
    done, error: Out(1)
        ``done`` rises the cycle after END dispatched; ``error`` when the stream is
        malformed (``error_code`` says why, ``imem_addr`` points at the instruction).
    cycle: Out(CYCLE_BITS)
        Cycles since start (stops counting at done or error).
    imem_addr: Out(32), imem_data: In(256)
        Instruction fetch: byte address out, the 32-byte word answered combinationally.
    dram_rd: DramReadSignature(gb_bus_bytes)
        Byte gather, data one cycle after the request.
    dram_wr: DramWriteSignature(num_pe * K0)
        Byte scatter, written in the cycle the lanes are enabled.
    vec_rd, vec_wr: DramReadSignature(read_lanes), DramWriteSignature(write_lanes)
        The vector executor's gather and scatter (``hw.rtl.vector_executor.vector_ports``),
        the same protocol; absent when the accelerator has none (``builds_vector_unit``: E).
    """

    export_prefix = "accelerator"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"n": config.num_pe, "k": config.k0, "c": config.c0, "l": config.dram_latency,
                "b": config.dram_bytes_per_cycle}

    def __init__(self, config: AcceleratorConfig, *, factories: dict | None = None, imem_words: int = IMEM_WORDS,
                 gate_factory=None):
        check_rtl_config(config)
        if not 1 <= imem_words <= IMEM_WORDS:
            raise ValueError(f"imem_words must be between 1 and {IMEM_WORDS}, not {imem_words!r}")
        defaults = {"dispatcher": Dispatcher, "queue": InsnQueue, "token_fifo": TokenFifo,
                    "load_unit": LoadUnit, "compute_unit": ComputeUnit, "store_unit": StoreUnit,
                    "pe_array": PEArray, "vector_executor": VectorExecutor}
        unknown = set(factories or {}) - set(defaults)
        if unknown:
            raise ValueError(f"unknown factories {sorted(unknown)}; known: {', '.join(defaults)}")
        self._config = config
        self._factories = {**defaults, **(factories or {})}
        self._imem_words = imem_words
        self._gate_factory = gate_factory
        g, _, _ = load_geometry(config)
        n_rd, n_wr = vector_ports(config)
        super().__init__({
            "start": In(1), "done": Out(1), "error": Out(1), "error_code": Out(ErrorCode),
            "cycle": Out(CYCLE_BITS),
            "imem_addr": Out(ADDR_BITS), "imem_data": In(INSN_BITS),
            "dram_rd": Out(DramReadSignature(g)),
            "dram_wr": Out(DramWriteSignature(config.num_pe * config.k0)),
            **({"vec_rd": Out(DramReadSignature(n_rd)), "vec_wr": Out(DramWriteSignature(n_wr))} if n_rd else {}),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg, make = self._config, self._factories
        m.submodules.dispatcher = disp = make["dispatcher"](cfg, imem_words=self._imem_words)
        units, queues = {}, {}
        for q, name in QUEUE_NAMES.items():
            queues[q] = m.submodules[name] = make["queue"](cfg)
            units[q] = make[_UNITS[q].export_prefix](cfg)
            self._add_unit(m, _UNITS[q].export_prefix, units[q])
            wiring.connect(m, dispatcher=getattr(disp, name), queue=queues[q].w)
            wiring.connect(m, queue=queues[q].r, unit=units[q].insn)
            m.d.comb += units[q].enable.eq(disp.running)
        for fifo in TOKEN_FIFOS:
            tok = m.submodules[f"tok_{fifo}"] = make["token_fifo"](cfg, max_wait=token_max_wait(fifo, cfg))
            for q, links in TOKEN_LINKS.items():
                for flag, name in links.items():
                    if name == fifo:
                        wiring.connect(m, unit=getattr(units[q], flag), fifo=tok.r if flag.startswith("pop") else tok.w)
        m.submodules.pe_array = pes = make["pe_array"](cfg)
        load, comp, store = units[Queue.LOAD], units[Queue.COMPUTE], units[Queue.STORE]
        wiring.connect(m, load=load.ld, pe_array=pes.ld)
        wiring.connect(m, compute=comp.gemm, pe_array=pes.gemm)
        wiring.connect(m, store=store.st, pe_array=pes.st)
        wiring.connect(m, store=store.gb, load=load.gb_store)
        wiring.connect(m, wiring.flipped(self.dram_rd), load.dram)
        wiring.connect(m, wiring.flipped(self.dram_wr), store.dram)
        if builds_vector_unit(cfg):         # else the dispatcher refuses every VEC
            self._vector_executor(m, make["vector_executor"](cfg), comp)
        m.d.comb += [
            disp.start.eq(self.start), self.done.eq(disp.done), self.error.eq(disp.error),
            self.error_code.eq(disp.error_code), self.cycle.eq(disp.cycle),
            self.imem_addr.eq(disp.imem.addr), disp.imem.data.eq(self.imem_data),
            disp.quiet.eq(load.idle & comp.idle & store.idle & ~queues[Queue.LOAD].r.valid
                          & ~queues[Queue.COMPUTE].r.valid & ~queues[Queue.STORE].r.valid),
            disp.data_error.eq(load.error | comp.error | store.error),
            disp.data_error_code.eq(Mux(comp.error, comp.error_code, ErrorCode.DATA)),
        ]
        return m

    def _add_unit(self, m: Module, name: str, unit) -> None:
        """A unit as submodule ``name``; one that says when its registers may change (``active``:
        the load and store units) on a clock gated by that, so Verilator evaluates its decode,
        lane multiplexers and checks only in the cycles it works."""
        if "active" in unit.signature.members:
            gate_clock(m, name, unit, unit.active, self._gate_factory)
        else:
            m.submodules[name] = unit

    def _vector_executor(self, m: Module, vex, comp) -> None:
        """The vector executor on the compute unit's VEC control and the ``vec_rd`` / ``vec_wr`` ports."""
        m.submodules.vector_executor = vex
        wiring.connect(m, wiring.flipped(self.vec_rd), vex.dram_rd)
        wiring.connect(m, wiring.flipped(self.vec_wr), vex.dram_wr)
        m.d.comb += [vex.start.eq(comp.vec.start), vex.desc_addr.eq(comp.vec.desc_addr), vex.fields.eq(comp.vec.fields),
                     comp.vec.busy.eq(vex.busy), comp.vec.done.eq(vex.done), comp.vec.error.eq(vex.error),
                     comp.vec.error_code.eq(vex.error_code)]
