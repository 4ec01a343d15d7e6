"""The instruction word as the RTL sees it: bit layouts from ``hw.isa.FIELDS`` and views of a word.

Every unit decodes the 256-bit word with these layouts, so the field positions are written once
(``hw.isa``) for the encoder, the decoder, the simulator and the RTL.
"""

from __future__ import annotations

from amaranth.hdl import Signal, signed, unsigned
from amaranth.lib import data

from ..isa import FIELDS, HEADER, INSN_BITS, ErrorCode, Op

__all__ = ["insn_layout", "insn_view", "field_signal", "rtl_unsupported", "CYCLE_BITS"]

#: Width of the cycle counter.
CYCLE_BITS = 48
#: The RTL's ``error_code`` is ``hw.isa.ErrorCode``, the simulator's.
assert max(ErrorCode) < 8, "error_code is 3 bits wide"


def insn_layout(op: Op) -> data.StructLayout:
    """The bit layout of ``op``'s 256-bit word, from ``hw.isa.FIELDS``."""
    fields, used = {}, 0
    for name, bits, sgn in HEADER + tuple(FIELDS[op]):
        fields[name] = signed(bits) if sgn else unsigned(bits)
        used += bits
    if used < INSN_BITS:
        fields["reserved"] = unsigned(INSN_BITS - used)
    return data.StructLayout(fields)


LAYOUTS = {op: insn_layout(op) for op in Op}


def insn_view(op: Op, value) -> data.View:
    """``value`` (a 256-bit word) viewed with ``op``'s fields."""
    return data.View(LAYOUTS[op], value)


def field_signal(op: Op, field: str, name: str | None = None) -> Signal:
    """A signal (a counter, a register) as wide as ``op``'s field ``field``."""
    return Signal(LAYOUTS[op].members[field], name=name)


def rtl_unsupported(op: Op, f):
    """Whether this RTL refuses an instruction (``ErrorCode.UNSUPPORTED``) that the contract
    defines and ``sim.functional`` runs: VEC, a STORE's softmax epilogue.  On integers
    (``Insn.f``) or the fields of a word."""
    if op == Op.VEC:
        return 1
    if op == Op.STORE:
        return f["ep_row"] != 0
    return 0
