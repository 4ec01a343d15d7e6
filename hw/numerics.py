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
"""

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

assert sum(bits for _, bits, _ in PARAM_ENTRY) == 8 * PARAM_ENTRY_BYTES
