"""Numeric contract of the datapath, shared by the RTL, the golden model and the simulator.

Data are int8; a vector MAC sums C0 int8 x int8 products into an ``acc_bits``
(two's complement, wrapping) partial sum.  Post-processing of an accumulated
value ``acc`` for output channel ``k``::

    x    = wrap_acc(acc + bias[k])                     # int32 bias, wraps like the accumulator
    p    = x * mult[k]                                 # mult: unsigned, MULT_BITS wide
    r    = (p + (1 << (shift[k] - 1))) >> shift[k]     # if shift > 0: round half up, arithmetic shift
    r    = p                                           # if shift == 0
    r    = max(r, 0)                                   # if ReLU is enabled
    y    = clamp(r, -128, 127)                         # saturate to int8

``p`` and ``r`` are computed exactly (no intermediate wrapping): at most
acc_bits + MULT_BITS + 1 bits.

Entry layouts (``PARAM_ENTRY``, the table's) are tuples of (name, bits, signed), packed
little-endian in order: :func:`pack_entries` / :func:`unpack_entries` on the Python side,
``hw.rtl.buses.entry_struct`` in the RTL.
"""

import numpy as np

#: Width of the unsigned per-channel requantisation multiplier.
MULT_BITS = 16
#: Largest right shift of the requantisation (the field is SHIFT_BITS wide).
SHIFT_BITS = 6
MAX_SHIFT = 47
INT8_MIN, INT8_MAX = -128, 127
#: One parameter entry per output channel: bias (int32), mult (uint16), shift (uint8), pad.
PARAM_ENTRY_BYTES = 8
#: Layout of a parameter entry, little-endian, in this order (name, bits, signed); ``ep_shift`` is the
#: output shift of a STORE's softmax epilogue (``hw.operators.SoftmaxParams.out_shift``).
PARAM_ENTRY = (("bias", 32, True), ("mult", 16, False), ("shift", 8, False), ("ep_shift", 8, False))
#: Each PE's table memory: 256 entries of 32 bits, loaded by LOAD_PARAM with ``table = 1``.  STORE
#: reads it as an activation (``act = TABLE``: entry ``y + 128`` holds the int8 result) or, with a
#: softmax epilogue, as the exponentials ``e(d)`` of ``d = rowmax - x`` (hw.operators' kernel).
TABLE_ENTRIES = 256
TABLE_ENTRY_BITS = 32
TABLE_BYTES = TABLE_ENTRIES * TABLE_ENTRY_BITS // 8
#: A LOAD_PARAM with ``table = 1`` moves parameter-sized entries: table entries in each, and
#: parameter-sized entries of the whole table.
TABLE_PER_PARAM = PARAM_ENTRY_BYTES * 8 // TABLE_ENTRY_BITS
TABLE_PARAM_ENTRIES = TABLE_ENTRIES // TABLE_PER_PARAM

TABLE_ENTRY = (("v", TABLE_ENTRY_BITS, True),)

assert sum(bits for _, bits, _ in PARAM_ENTRY) == 8 * PARAM_ENTRY_BYTES


def entry_bytes(layout) -> int:
    return sum(bits for _, bits, _ in layout) // 8


def entry_offset(layout, name: str) -> int:
    """Byte offset of field ``name`` in an entry of ``layout``."""
    pos = 0
    for field, bits, _ in layout:
        if field == name:
            return pos
        pos += bits // 8
    raise KeyError(name)


def pack_entries(layout, columns: dict, n: int) -> np.ndarray:
    """``n`` entries of ``layout`` [n, bytes] (uint8) from per-field values (absent: 0).
    ValueError names a field whose values do not fit its bits."""
    out = np.zeros((n, entry_bytes(layout)), dtype=np.uint8)
    for name, bits, signed in layout:
        v = np.broadcast_to(np.asarray(columns.get(name, 0), dtype=np.int64), (n,))
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"entry field {name} holds {int(v.min())}..{int(v.max())}, outside {lo}..{hi}")
        u, pos = v & ((1 << bits) - 1), entry_offset(layout, name)
        for b in range(bits // 8):
            out[:, pos + b] = (u >> (8 * b)) & 0xFF
    return out


def unpack_entries(raw: np.ndarray, layout) -> dict[str, np.ndarray]:
    """Per-field int64 values of entries ``raw`` [n, bytes] (uint8) of ``layout``."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1, entry_bytes(layout)).astype(np.int64)
    out = {}
    for name, bits, signed in layout:
        pos = entry_offset(layout, name)
        v = sum(raw[:, pos + b] << (8 * b) for b in range(bits // 8))
        out[name] = v - ((v >> (bits - 1)) << bits) if signed else v
    return out
