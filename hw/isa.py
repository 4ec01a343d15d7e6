"""The instruction set: field layout, binary encoding, assembler and disassembler.

One definition, imported by the mapper (which encodes), the simulators and the
RTL controller (which decode).  ``docs/isa.md`` describes the semantics and the
timing of every instruction; the timing functions themselves live in
``hw/timing.py`` and are the contract the RTL controller implements.

Every instruction is one 256-bit little-endian word.  Bits 0-3 hold the opcode,
bits 4-7 the dependency flags (VTA style)::

    bit 4  POP_PREV   wait for a token from the previous queue
    bit 5  POP_NEXT   wait for a token from the next queue
    bit 6  PUSH_PREV  signal the previous queue when done
    bit 7  PUSH_NEXT  signal the next queue when done

The queues form a ring LOAD -> COMPUTE -> STORE -> LOAD (``hw.timing.TOKEN_LINKS``: STORE's
next is LOAD, LOAD's previous STORE; LOAD pushes nothing to STORE).  The remaining fields
depend on the opcode and are listed in ``FIELDS``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Op", "Queue", "VecOp", "ErrorCode", "make", "Insn", "Fields", "share_fields", "fields_key", "field_values", "FIELD_NAMES", "DEP_FLAGS", "FIELDS", "INSN_BYTES", "encode", "decode",
           "encode_stream", "decode_stream", "disassemble", "StreamError", "QUEUE_OF", "Act", "ADDR_BITS", "ADDR_MASK", "HEADER", "HEADER_BITS", "FIELD_BITS",
           "opcode_bad", "vec_op_bad"]

INSN_BYTES = 32
INSN_BITS = 8 * INSN_BYTES
#: Byte addresses (DRAM, and global-buffer gathers) are ADDR_BITS wide: address arithmetic is
#: modulo 2**ADDR_BITS, as in the address generators.
ADDR_BITS = 32
ADDR_MASK = (1 << ADDR_BITS) - 1


class Op(enum.IntEnum):
    """Opcodes.  0 is none: a zero word (unwritten or erased instruction memory) is refused, so a
    stream without END cannot run on into zeros."""
    LOAD_INP = 1    # DRAM or global buffer -> PE input buffers: a window of an HWC tensor, optionally im2col-folded
    LOAD_WGT = 2    # DRAM -> the K0 weight buffers of each selected PE
    LOAD_PARAM = 3  # DRAM -> bias / multiplier / shift entries of each selected PE
    LOAD_GB = 4     # contiguous copy DRAM -> global buffer
    GEMM = 5        # one tile of the output-stationary, local-weight-stationary loop nest
    VEC = 6         # a non-MAC layer on the vector (post-processing) units
    STORE = 7       # accumulators -> bias, requantisation, ReLU -> DRAM or global buffer
    FENCE = 8       # dispatch waits until every queue is idle
    END = 9         # end of stream: the accelerator raises done
    NOP = 10


class ErrorCode(enum.IntEnum):
    """Why a stream is refused: the simulator (``StreamError.code``) and the RTL (``error_code``)
    give the same code for the same stream, at the same instruction (DATA: the instruction
    that found it), except that the RTL refuses what it does not build yet with UNSUPPORTED."""
    NONE = 0
    OPCODE = 1        # unknown opcode (a zero word included), or the stream runs off its end
    RESERVED = 2      # non-zero reserved bits, or an unknown VEC operation
    RANGE = 3         # a field, buffer range or PE set outside the configuration
    TOKEN = 4         # a token popped that no earlier instruction pushed, a missing neighbour,
                      # more than TOKEN_LIMIT outstanding, tokens left at END, or a LOAD_GB and a
                      # STORE to the global buffer with no FENCE between (hw.timing.gb_write_claims)
    DATA = 5          # found while running: a loaded parameter shift above MAX_SHIFT, a LOAD_INP
                      # global-buffer address outside the buffer, a malformed VEC descriptor
    UNSUPPORTED = 6   # a feature the RTL does not build (hw.rtl.insn.rtl_unsupported at dispatch,
                      # vec_unsupported while a VEC runs; docs/isa.md): without the vector executor
                      # (A to M) every VEC and every STORE softmax epilogue; with it a softmax
                      # epilogue with the table activation; a VEC pass of row stages other than one
                      # softmax or layernorm or two layernorms, with a resize or pooling after its
                      # first stage, or with an operand repeating its channels across softmax rows
                      # of other channels; a resize or pooling pass whose chain, source or written
                      # operand the spatial unit does not sequence (hw.vector.spatial_refusals)


class Queue(enum.IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2
    DISPATCH = 3   # handled by the dispatcher itself (NOP, FENCE, END)


QUEUE_OF = {Op.NOP: Queue.DISPATCH, Op.LOAD_INP: Queue.LOAD, Op.LOAD_WGT: Queue.LOAD,
            Op.LOAD_PARAM: Queue.LOAD, Op.LOAD_GB: Queue.LOAD, Op.GEMM: Queue.COMPUTE,
            Op.VEC: Queue.COMPUTE, Op.STORE: Queue.STORE, Op.FENCE: Queue.DISPATCH,
            Op.END: Queue.DISPATCH}


class VecOp(enum.IntEnum):
    """Operations of the vector unit: the stages of a VEC descriptor (``hw/vector.py``)."""
    COPY = 0              # data movement through address patterns (pad, roll, crop, windows, patch merge)
    ADD = 1               # requantised sum of two tensors, optional ReLU
    MUL = 2               # requantised product of two tensors
    LUT = 3               # any int8 -> int8 map by a 256-entry table (GELU, sigmoid, ReLU)
    LAYERNORM = 4
    SOFTMAX = 5
    RESIZE = 6            # bilinear or nearest
    POOL = 7              # max, average, adaptive average
    RESIZE_ARGMAX = 8     # bilinear upsampling of class logits and the per-pixel argmax (writes labels)
    CHAIN = 9             # VEC.vec_op only: several stages in one pass


def opcode_bad(v):
    """Whether an opcode field value ``v`` names no instruction (0, a zero word, or past the last
    opcode); on integers and Amaranth values: ``decode`` and the RTL's dispatcher refuse it (OPCODE)."""
    return (v == 0) | (v > max(Op))


def vec_op_bad(v):
    """Whether a ``vec_op`` value ``v`` names no vector operation (past the last); on integers and
    Amaranth values: ``make``, ``decode`` and the RTL's dispatcher refuse it (RESERVED)."""
    return v > max(VecOp)


# the two rules above are ranges: the enumerations have no gaps
assert [o.value for o in Op] == list(range(1, max(Op) + 1)) and [o.value for o in VecOp] == list(range(max(VecOp) + 1))


class Act(enum.IntEnum):
    """What STORE applies after requantisation (field ``act``)."""
    NONE = 0
    RELU = 1
    TABLE = 2             # y = table[y + 128] from the PE's table memory (GELU, sigmoid, ...)


# (name, bits, signed) after the 8-bit header, per opcode.  Widths are the
# architectural limits of one instruction; the mapper splits anything larger.
# PEs selected by a load or store: pe_first, pe_first + pe_step, ... (pe_count of them).
_PE_SET = [("pe_first", 6, False), ("pe_count", 7, False), ("pe_step", 6, False)]
_LOAD_INP_FIELDS = _PE_SET + [
    ("src_gb", 1, False),        # source is the global buffer instead of DRAM
    ("src_addr", 32, False),     # byte address of element (0, 0, 0) of the HWC tensor
    ("dst_addr", 16, False),     # first input-buffer row written
    ("t_h", 16, False), ("t_w", 16, False), ("t_c", 24, False),    # tensor shape (t_c: bytes per pixel)
    ("y0", 16, True), ("x0", 16, True),                            # window origin (may be negative: padding)
    ("win_h", 12, False), ("win_w", 12, False),                    # window extent (rows written per block)
    ("c_base", 24, False), ("n_cblk", 12, False),                  # (folded) channels c_base .. + n_cblk*C0
    ("fold_kh", 6, False), ("fold_kw", 6, False), ("fold_stride", 6, False),
    ("chan", 14, False),         # valid channels of a pixel (lanes at channel chan or beyond are zero
                                 # and read nothing; 0: all t_c), a part narrower than its pitch
]
_LOAD_WGT_FIELDS = _PE_SET + [
    ("src_addr", 32, False),     # byte address of output channel 0's first weight
    ("dst_addr", 16, False),     # first weight-buffer row written in every vector MAC
    ("rows", 12, False),         # rows of C0 weights per vector MAC
    ("n_out", 8, False),         # vector MACs that get data (the rest get zeros)
    ("chan", 16, False),         # valid weights per output channel (lanes beyond are zero)
    ("out_stride", 32, False),   # bytes between consecutive output channels in DRAM
    ("lane_stride", 24, False),  # bytes between consecutive weights of a channel (0 means 1: contiguous)
]
_LOAD_PARAM_FIELDS = _PE_SET + [
    ("src_addr", 32, False), ("dst_addr", 16, False),
    ("n_entries", 16, False),    # PARAM_ENTRY_BYTES-byte entries, one per output channel
    ("table", 1, False),         # the entries fill the PE's table memory instead (hw.numerics.TABLE_BYTES)
]
_LOAD_GB_FIELDS = [("src_addr", 32, False), ("dst_addr", 32, False), ("n_bytes", 32, False)]
_GEMM_FIELDS = [
    ("inp_addr", 16, False), ("wgt_addr", 16, False), ("acc_addr", 16, False),
    ("out_h", 12, False), ("out_w", 12, False), ("in_w", 12, False),
    ("kh", 8, False), ("kw", 8, False), ("stride", 8, False), ("n_cblk", 12, False),
    ("accumulate", 1, False),
    ("dw", 1, False),            # depthwise gather: one step per kernel row, kw taps on lanes 0..kw-1
]
_VEC_FIELDS = [
    ("vec_op", 8, False),        # the stage's operation (CHAIN for several), for the record
    ("work", 40, False),         # vector-unit element operations (hw.vector.vec_fields)
    ("bytes_in", 40, False), ("bytes_out", 40, False),              # DRAM traffic
    ("desc_addr", 32, False),    # DRAM byte address of the descriptor (hw/vector.py)
    # the pass on the vector unit's row lanes (hw.vector.row_schedule; 0 rows: a resize or pooling)
    ("rows", 40, False), ("row_cycles", 20, False),
    ("tables", 1, False),        # a LUT stage's table is loaded first
]
_STORE_FIELDS = _PE_SET + [
    ("dst_addr", 32, False),     # DRAM byte address of element (0, 0, 0) of the output tensor
    ("acc_addr", 12, False), ("param_addr", 12, False),
    ("out_h", 12, False), ("out_w", 12, False),                    # tile of one PE
    ("t_h", 12, False), ("t_w", 12, False), ("t_k", 16, False),    # output tensor shape (stores clip to it)
    ("k_pitch", 24, False),                                        # bytes per pixel in DRAM (>= t_k)
    ("y0", 12, False), ("x0", 12, False),                          # tile origin of pixel group 0
    ("k_base", 16, False), ("k_step", 16, False), ("k_per_pe", 7, False),
    ("pe_k", 7, False),          # PE p is column p % pe_k (channels k_base + col*k_step ...) of row p // pe_k
    ("act", 2, False),           # Act: nothing, ReLU, or the PE's table after requantisation
    ("ep_row", 12, False),       # > 0: softmax epilogue over rows of ep_row channels (exp table in table memory)
    ("dst_gb", 1, False),        # the tensor is in the global buffer (dst_addr a GB byte address), not in DRAM
]

FIELDS: dict[Op, list[tuple[str, int, bool]]] = {
    Op.NOP: [], Op.FENCE: [], Op.END: [],
    Op.LOAD_INP: _LOAD_INP_FIELDS, Op.LOAD_WGT: _LOAD_WGT_FIELDS, Op.LOAD_PARAM: _LOAD_PARAM_FIELDS,
    Op.LOAD_GB: _LOAD_GB_FIELDS, Op.GEMM: _GEMM_FIELDS, Op.VEC: _VEC_FIELDS, Op.STORE: _STORE_FIELDS,
}
#: Per opcode, each field's width in bits.
FIELD_BITS = {op: {name: bits for name, bits, _ in spec} for op, spec in FIELDS.items()}
#: Per opcode, its fields' names in ``FIELDS`` order (the order ``make`` and ``decode`` hold them in).
FIELD_NAMES = {op: tuple(name for name, _, _ in spec) for op, spec in FIELDS.items()}
DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
#: The 8-bit header of every word, least significant bits first: the opcode and the token flags.
HEADER = (("opcode", 4, False),) + tuple((flag, 1, False) for flag in DEP_FLAGS)
HEADER_BITS = sum(bits for _, bits, _ in HEADER)
_ALL_FIELDS = sorted({name for spec in FIELDS.values() for name, _, _ in spec})

for _op, _spec in FIELDS.items():
    assert HEADER_BITS + sum(b for _, b, _ in _spec) <= INSN_BITS, _op


class StreamError(ValueError):
    """A malformed instruction or stream: the message gives the offset, ``code`` the ErrorCode and
    ``index`` the culprit instruction (when known)."""

    def __init__(self, message: str, code: "ErrorCode" = None, index: int | None = None):
        super().__init__(message)
        self.code = ErrorCode.RANGE if code is None else code
        self.index = index


class Fields(dict):
    """An instruction's field values shared with every equal instruction of a stream that is kept
    (``share_fields``): a program repeats its GEMMs and weight loads thousands of times, and a dict
    a word was most of a large program's memory.  It refuses to change in place; give an
    instruction other values with a new dict: ``insn.f = {**insn.f, name: value}``."""

    __slots__ = ()

    def _shared(self, *args, **kwargs):
        raise TypeError("an instruction's fields are shared with its equals (hw.isa.Fields): "
                        "give it a new dict instead, insn.f = {**insn.f, name: value}")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _shared

    def __reduce__(self):           # pickle and copy build it whole, not an item at a time
        return Fields, (dict(self),)


def field_values(op: "Op", f: dict) -> tuple | None:
    """The values of ``f``, the fields of an ``op``, if it holds them in ``FIELDS`` order (as ``make``
    and ``decode`` build them), else None."""
    return tuple(f.values()) if tuple(f) == FIELD_NAMES[op] else None


def fields_key(insn: "Insn") -> tuple | None:
    """What makes two instructions the same, apart from their token flags: the opcode and the
    fields' values (``field_values``), or None for fields held otherwise (a test's own dict)."""
    values = field_values(insn.op, insn.f)
    return None if values is None else (insn.op, values)


def share_fields(insns: list["Insn"], shared: dict | None = None) -> None:
    """Give the instructions of ``insns`` with equal opcodes and field values (``fields_key``) one
    ``Fields`` (the values unchanged), from ``shared`` (a table kept across calls: one program's
    streams)."""
    shared = {} if shared is None else shared
    for insn in insns:
        key = fields_key(insn)
        if key is None:
            continue
        one = shared.get(key)
        if one is None:
            f = insn.f
            one = shared[key] = f if f.__class__ is Fields else Fields(f)
        insn.f = one


@dataclass(slots=True)
class Insn:
    """One decoded instruction.  Fields not used by ``op`` stay 0."""

    op: Op
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False
    f: dict = field(default_factory=dict)

    def __getattr__(self, name):          # field access: insn.out_h
        if name == "f":                   # not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        try:
            return self.f[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def queue(self) -> Queue:
        return QUEUE_OF[self.op]

    def get(self, name: str) -> int:
        return self.f.get(name, 0)


#: Per opcode: the zero value of every field, and each field's (low, high) bound.
_ZEROS = {op: {n: 0 for n, _, _ in spec} for op, spec in FIELDS.items()}
_BOUNDS = {op: {n: ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if sg else (0, (1 << b) - 1)) for n, b, sg in spec}
           for op, spec in FIELDS.items()}


#: Per opcode: the zero value of every field and each field's (low, high) bound, in ``FIELDS`` order.
_CHECKS = {op: (_ZEROS[op], tuple(_BOUNDS[op].values())) for op in FIELDS}


def make(op: Op, *, deps: str = "", **fields) -> Insn:
    """Assemble one instruction, every field range-checked (StreamError names the field);
    ``deps`` is any of 'pop_prev pop_next push_prev push_next'."""
    flags = _dep_flags(deps) if deps else None      # None: all clear (the mapper sets them later)
    zeros, bounds = _CHECKS[op]
    full = zeros.copy()
    full.update(fields)
    if len(full) != len(zeros):                   # a name that is no field of op
        _refuse_fields(op, fields)
    # every field (in FIELDS order, as full holds them) an int, not a bool, within its bounds;
    # else the first of ``fields`` that is not, in the order given, is refused
    for v, (lo, hi) in zip(full.values(), bounds):
        if v.__class__ is not int or not lo <= v <= hi:
            _refuse_fields(op, fields)      # returns if every value is an int (an IntEnum, say) in range
            break
    if op == Op.VEC and vec_op_bad(full["vec_op"]):
        raise StreamError(f"VEC.vec_op = {fields['vec_op']!r} is no vector operation; "
                          f"valid: {', '.join(f'{v.value}={v.name}' for v in VecOp)}", ErrorCode.RESERVED)
    if flags is None:                               # (a constant tuple unpacked costs more)
        return Insn(op, False, False, False, False, full)
    return Insn(op, *flags, full)


def _refuse_fields(op: Op, fields: dict) -> None:
    """Raise for the first of ``fields`` (in their order) that ``op`` does not have or that does not fit."""
    bounds = _BOUNDS[op]
    for k, v in fields.items():
        if k not in bounds:
            raise ValueError(f"{op.name} has no field {k!r}; fields: {', '.join(sorted(bounds))}")
        lo, hi = bounds[k]
        if v.__class__ is not int or not lo <= v <= hi:
            _check_field(op, k, v, None)


def _dep_flags(deps: str) -> tuple[bool, bool, bool, bool]:
    """``make``'s ``deps`` as the four flags, in ``DEP_FLAGS`` order."""
    flags = {d: False for d in DEP_FLAGS}
    for d in deps.split():
        if d not in flags:
            raise ValueError(f"unknown dependency flag {d!r}; allowed: {', '.join(DEP_FLAGS)}")
        flags[d] = True
    return tuple(flags.values())


def _check_field(op: Op, name: str, v, offset) -> None:
    lo, hi = _BOUNDS[op][name]
    bits = next(b for n, b, _ in FIELDS[op] if n == name)
    signed = lo < 0
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        where = f" at byte offset {offset}" if offset is not None else ""
        raise StreamError(f"{op.name}.{name} = {v!r} does not fit {bits} "
                          f"{'signed' if signed else 'unsigned'} bits (range {lo}..{hi}){where}")


def _check_ranges(insn: Insn, offset) -> None:
    for name in _BOUNDS[insn.op]:
        _check_field(insn.op, name, insn.f.get(name, 0), offset)


def _positions(spec, pos: int) -> tuple:
    """(name, first bit, mask, signed, low, high) of each field of ``spec`` packed from bit ``pos``."""
    out = []
    for name, bits, signed in spec:
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        out.append((name, pos, (1 << bits) - 1, signed, lo, hi))
        pos += bits
    return tuple(out)


_HEAD_POS = {name: pos for name, pos, *_ in _positions(HEADER, 0)}
_HEAD_PACKING = _positions(HEADER, 0)
_PACKING = {op: _positions(spec, HEADER_BITS) for op, spec in FIELDS.items()}
#: The first reserved bit of each opcode's word (above its last field).
_RESERVED_FROM = {op: HEADER_BITS + sum(bits for _, bits, _ in spec) for op, spec in FIELDS.items()}


def encode(insn: Insn) -> bytes:
    """The 32-byte word of ``insn`` (StreamError names a field outside its range)."""
    word = int(insn.op) << _HEAD_POS["opcode"]
    for flag in DEP_FLAGS:
        word |= bool(getattr(insn, flag)) << _HEAD_POS[flag]
    f = insn.f
    for name, pos, mask, _, lo, hi in _PACKING[insn.op]:
        v = f.get(name, 0)
        if v.__class__ is not int or not lo <= v <= hi:
            _check_field(insn.op, name, v, None)
        word |= (v & mask) << pos
    return word.to_bytes(INSN_BYTES, "little")


def decode(data: bytes, offset: int = 0) -> Insn:
    """The instruction at ``offset``: StreamError (OPCODE, RESERVED) for a word that is none."""
    index = offset // INSN_BYTES
    if len(data) - offset < INSN_BYTES:
        raise StreamError(f"truncated instruction at byte offset {offset}: "
                          f"{len(data) - offset} of {INSN_BYTES} bytes", ErrorCode.OPCODE, index)
    word = int.from_bytes(data[offset:offset + INSN_BYTES], "little")
    head = _fields(word, _HEAD_PACKING)
    if opcode_bad(head["opcode"]):
        raise StreamError(f"unknown opcode {head['opcode']} at byte offset {offset}"
                          f"{' (a zero word)' if word == 0 else ''}; "
                          f"valid: {', '.join(f'{o.value}={o.name}' for o in Op)}", ErrorCode.OPCODE, index)
    op = Op(head["opcode"])
    f = _fields(word, _PACKING[op])
    if word >> _RESERVED_FROM[op]:
        raise StreamError(f"{op.name} at byte offset {offset} has non-zero reserved bits", ErrorCode.RESERVED, index)
    if op == Op.VEC and vec_op_bad(f["vec_op"]):
        raise StreamError(f"VEC at byte offset {offset}: unknown vector operation {f['vec_op']}", ErrorCode.RESERVED,
                          index)
    return Insn(op, *(bool(head[flag]) for flag in DEP_FLAGS), f)


def _fields(word: int, packing) -> dict[str, int]:
    """The fields of ``packing`` (``_positions``) in ``word``."""
    out = {}
    for name, pos, mask, signed, _, hi in packing:
        v = (word >> pos) & mask
        out[name] = v - mask - 1 if signed and v > hi else v
    return out


def encode_stream(insns) -> bytes:
    return b"".join(encode(i) for i in insns)


def decode_stream(data: bytes) -> list[Insn]:
    if len(data) % INSN_BYTES:
        raise StreamError(f"stream length {len(data)} is not a multiple of {INSN_BYTES}: "
                          f"truncated instruction at byte offset {len(data) - len(data) % INSN_BYTES}",
                          ErrorCode.OPCODE, len(data) // INSN_BYTES)
    return [decode(data, off) for off in range(0, len(data), INSN_BYTES)]


def disassemble(insns, *, start: int = 0) -> str:
    """A human-readable listing, one instruction per line with its byte offset."""
    lines = []
    for i, insn in enumerate(insns):
        deps = " ".join(d for d in DEP_FLAGS if getattr(insn, d))
        op = insn.op.name
        args = []
        for name, _, _ in FIELDS[insn.op]:
            v = insn.f.get(name, 0)
            if name == "vec_op":
                args.append(f"op={VecOp(v).name if v in VecOp._value2member_map_ else v}")
            elif v or name in ("pe_first", "pe_count"):
                args.append(f"{name}={v}")
        lines.append(f"{(start + i) * INSN_BYTES:08x}  {op:<10} {' '.join(args)}" + (f"  [{deps}]" if deps else ""))
    return "\n".join(lines)
