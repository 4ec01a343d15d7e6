"""The buses between the accelerator's units, each a ``wiring.Signature`` (seen from its driver).

============================  ===============================  =====================================
signature                     driver -> receiver               carries
============================  ===============================  =====================================
:class:`ImemSignature`        dispatcher -> instruction memory  word address out, the word back
:class:`DramReadSignature`    load unit -> DRAM                 a byte gather, data one cycle later
:class:`DramWriteSignature`   store unit -> DRAM                a byte scatter
:class:`LoadBusSignature`     load unit -> PE array -> PE      a beat of ``G`` bytes into a buffer
:class:`GemmBusSignature`     compute unit -> PEs               one pixel of a GEMM per cycle
:class:`StoreBusSignature`    store unit -> PEs (y back)        one accumulator entry per cycle
``lib.stream.Signature``      queue -> unit                     the head instruction, taken on ready
:class:`TokenPushSignature`   unit -> token FIFO                a token and its wait
:class:`TokenPopSignature`    token FIFO -> unit                the oldest token is available; taken
============================  ===============================  =====================================
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from .. import vector as vec
from ..config import DEFAULT_BUS_RULE, AcceleratorConfig
from ..isa import ADDR_BITS, FIELD_BITS, INSN_BITS, ErrorCode, Op
from ..expr import ceil_log2
from ..numerics import PARAM_ENTRY, PARAM_ENTRY_BYTES, TABLE_ENTRIES, TABLE_ENTRY_BITS
from ..timing import param_beat_bytes
from .vector_mac import int8_vector

__all__ = ["LoadTarget", "load_geometry", "ImemSignature", "DramReadSignature", "DramWriteSignature",
           "LoadBusSignature", "GemmBusSignature", "StoreBusSignature", "VecControlSignature", "VEC_TIMING", "TokenPushSignature", "TokenPopSignature",
           "DRAM_READ_LATENCY", "entry_struct", "PARAM_STRUCT"]

#: Cycles from a DRAM read request to its data (fixed).
DRAM_READ_LATENCY = 1


def entry_struct(layout) -> data.StructLayout:
    """The Amaranth layout of an entry (``hw.numerics``: (name, bits, signed), low bits first)."""
    return data.StructLayout({name: signed(bits) if sgn else unsigned(bits) for name, bits, sgn in layout})


#: A parameter entry (``hw.numerics.PARAM_ENTRY``) as the RTL holds it.
PARAM_STRUCT = entry_struct(PARAM_ENTRY)


class LoadTarget(enum.Enum, shape=2):
    """Which buffer a load-bus beat writes."""
    INPUT = 0
    WEIGHT = 1
    PARAM = 2
    TABLE = 3             # the table memory (LOAD_PARAM with table = 1)


def load_geometry(config: AcceleratorConfig) -> tuple[int, int, int]:
    """(G bytes per load beat, input rows / weight vectors per beat, parameter entries per beat:
    ``hw.timing.param_beat_bytes``)."""
    g = config.gb_bus_bytes
    return g, g // config.c0, param_beat_bytes(config) // PARAM_ENTRY_BYTES


def bus_width_text(config: AcceleratorConfig) -> str:
    """The bus width G as the accelerator file names it, for errors (its default spelled out)."""
    default = "" if config.gb_bus_bytes_per_cycle else f", the default {DEFAULT_BUS_RULE}"
    return f"gb_bus_bytes_per_cycle = {config.gb_bus_bytes}{default}"


def check_bus_width(config: AcceleratorConfig) -> None:
    """ValueError unless G is a power-of-two multiple of C0: whole C0-byte rows a beat, and the
    banks (rows a beat, and twice that in the global buffer) addressed by bit fields."""
    g = config.gb_bus_bytes
    if g % config.c0 or (g // config.c0) & (g // config.c0 - 1):
        raise ValueError(f"{bus_width_text(config)} must be a power-of-two multiple of C0 = {config.c0}")


class ImemSignature(wiring.Signature):
    """Instruction fetch: the byte address of a word out, the 256-bit word back in the same cycle."""

    def __init__(self):
        super().__init__({"addr": Out(ADDR_BITS), "data": In(INSN_BITS)})


class DramReadSignature(wiring.Signature):
    """A byte-gather read port: ``lanes`` byte addresses with enables; the bytes come back
    ``DRAM_READ_LATENCY`` cycle(s) later on ``data`` (lanes not enabled: don't care)."""

    def __init__(self, lanes: int):
        super().__init__({"en": Out(lanes), "addr": Out(data.ArrayLayout(ADDR_BITS, lanes)),
                          "data": In(data.ArrayLayout(8, lanes))})


class DramWriteSignature(wiring.Signature):
    """A byte-scatter write port: the enabled lanes' bytes are written this cycle."""

    def __init__(self, lanes: int):
        super().__init__({"en": Out(lanes), "addr": Out(data.ArrayLayout(ADDR_BITS, lanes)),
                          "data": Out(data.ArrayLayout(8, lanes))})


class LoadBusSignature(wiring.Signature):
    """A load beat: ``count`` input rows / weight vectors / parameter entries of ``data`` written
    at row (entry) ``addr`` of the buffer ``target``; for weights ``sel`` is the group of
    ``G/C0`` vector MACs.  ``en`` has one bit per PE (``pes``; 1 for a single PE)."""

    def __init__(self, config: AcceleratorConfig, pes: int = 1):
        g, nb, ne = load_geometry(config)
        super().__init__({"en": Out(pes), "target": Out(LoadTarget), "addr": Out(16), "sel": Out(8),
                          "count": Out(range(max(nb, ne) + 1)), "data": Out(unsigned(8 * g))})


class GemmBusSignature(wiring.Signature):
    """One GEMM pixel: input row ``inp``, weight row ``wgt``, accumulator entry ``acc``; ``first``
    overwrites the accumulator instead of adding; ``dw``/``kw`` select the depthwise gather."""

    def __init__(self, config: AcceleratorConfig):
        super().__init__({"valid": Out(1), "first": Out(1), "inp": Out(config.input_addr_bits),
                          "wgt": Out(config.weight_addr_bits), "acc": Out(config.accum_addr_bits),
                          "dw": Out(1), "kw": Out(FIELD_BITS[Op.GEMM]["kw"])})


#: The VEC's fields that its descriptor decides (``hw.vector.TIMING_FIELDS``), as the word holds them.
VEC_TIMING = data.StructLayout({name: unsigned(FIELD_BITS[Op.VEC][name]) for name in vec.TIMING_FIELDS})


class VecControlSignature(wiring.Signature):
    """A VEC handed to the vector executor: ``start`` (one cycle) with the descriptor's address and
    the instruction's ``fields`` that the descriptor decides (held while it runs); ``busy`` until
    ``done`` (one cycle), with ``error`` and ``error_code`` when it refused the pass."""

    def __init__(self):
        super().__init__({"start": Out(1), "desc_addr": Out(ADDR_BITS), "fields": Out(VEC_TIMING),
                          "busy": In(1), "done": In(1),
                          "error": In(1), "error_code": In(ErrorCode)})


class StoreBusSignature(wiring.Signature):
    """A STORE pixel: post-process accumulator entry ``acc`` (``relu``, or ``table``: the table
    activation); ``param_load`` latches the K0 parameter entries from ``param_addr``.  ``y`` comes
    back four cycles after ``valid``, one vector per PE (``pes``; a single vector for one PE).
    A softmax epilogue (``ep``) reads each lane's table entry ``ep_addr`` (on ``ep_data`` a cycle
    later) and takes the output shift of entry ``param_addr`` (``ep_shift``)."""

    def __init__(self, config: AcceleratorConfig, pes: int | None = None):
        k0 = config.k0
        per_pe = {"y": int8_vector(k0), "ep_data": data.ArrayLayout(signed(TABLE_ENTRY_BITS), k0),
                  "ep_shift": PARAM_STRUCT["ep_shift"].shape}
        if pes is not None:
            per_pe = {name: data.ArrayLayout(shape, pes) for name, shape in per_pe.items()}
        ep_addr = data.ArrayLayout(unsigned(ceil_log2(TABLE_ENTRIES)), k0)      # a table entry per lane
        super().__init__({"param_load": Out(1), "param_addr": Out(range(config.param_depth)),
                          "valid": Out(1), "acc": Out(config.accum_addr_bits), "relu": Out(1), "table": Out(1),
                          "ep": Out(1), "ep_addr": Out(ep_addr if pes is None else data.ArrayLayout(ep_addr, pes)),
                          **{name: In(shape) for name, shape in per_pe.items()}})


class TokenPushSignature(wiring.Signature):
    """A token pushed (``valid``) that becomes available ``wait + 1`` cycles later (no ``wait``
    when ``max_wait`` is 0: available the next cycle)."""

    def __init__(self, max_wait: int):
        super().__init__({"valid": Out(1), **({"wait": Out(range(max_wait + 1))} if max_wait else {})})


class TokenPopSignature(wiring.Signature):
    """The oldest token of a FIFO is available (``valid``); the consumer takes it with ``ready``."""

    def __init__(self):
        super().__init__({"valid": Out(1), "ready": In(1)})
