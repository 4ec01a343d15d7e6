"""The instruction word as the RTL sees it: bit layouts from ``hw.isa.FIELDS`` and views of a word.

Every unit decodes the 256-bit word with these layouts, so the field positions are written once
(``hw.isa``) for the encoder, the decoder, the simulator and the RTL.
"""

from __future__ import annotations

from amaranth.hdl import Signal, signed, unsigned
from amaranth.lib import data

from .. import operators as ops
from .. import vector as vec
from ..isa import FIELDS, HEADER, INSN_BITS, Act, ErrorCode, Op, StreamError

__all__ = ["insn_layout", "insn_view", "field_signal", "rtl_unsupported", "vec_unsupported", "CYCLE_BITS",
           "DISPATCH_ORDER", "refused_before_unsupported", "first_unsupported"]

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


#: The codes the dispatcher (``hw/rtl/dispatch.py``) checks at a word, in its order: what it finds
#: before it knows the instruction, then what the RTL does not build (:func:`rtl_unsupported`),
#: then ranges and tokens (``docs/isa.md``, "Order").
DISPATCH_ORDER = (ErrorCode.OPCODE, ErrorCode.RESERVED, ErrorCode.UNSUPPORTED, ErrorCode.RANGE, ErrorCode.TOKEN)


def refused_before_unsupported(code: ErrorCode) -> bool:
    """Whether the dispatcher refuses a word with ``code`` before it asks :func:`rtl_unsupported`
    (the cosimulation's expectations: a word the simulator refuses with a later code, or one that
    fails while it runs, is UNSUPPORTED first when the RTL does not build it)."""
    return code in DISPATCH_ORDER[:DISPATCH_ORDER.index(ErrorCode.UNSUPPORTED)]


def rtl_unsupported(op: Op, f, vector_unit: bool = True):
    """Whether this RTL refuses an instruction at dispatch (``ErrorCode.UNSUPPORTED``) that the
    contract defines and ``sim.functional`` runs.  ``vector_unit`` says whether the accelerator
    builds its non-MAC units (``hw.rtl.vector_executor.builds_vector_unit``: the vector executor
    and the STORE's softmax epilogue, both across every lane of the array).  Without them every
    VEC and every softmax epilogue; with them no VEC (the spatial unit builds every spatial
    operation) and a softmax epilogue with the table activation (both read the PEs' table ports).  On integers
    (``Insn.f``) or the fields of a word.  What a CHAIN or a resize holds is in its descriptor:
    the executor refuses it while running (:func:`vec_unsupported`)."""
    if op == Op.VEC:
        return int(not vector_unit)
    if op == Op.STORE:
        return (f["ep_row"] != 0) & ((f["act"] == Act.TABLE) | (not vector_unit))
    return 0


def first_unsupported(insns, refused: StreamError | None, vector_unit: bool = True) -> int | None:
    """The instruction the dispatcher refuses with UNSUPPORTED (:func:`rtl_unsupported`) before it
    meets ``refused`` (the stream's first malformed word, ``hw.timing.schedule_encoded``'s error, or
    None), or None.  ``insns``: the stream as decoded up to its END.  A word that is RANGE or TOKEN
    is UNSUPPORTED first when the RTL does not build it (``DISPATCH_ORDER``); OPCODE and RESERVED
    come before the question."""
    stop = len(insns) if refused is None else refused.index
    asked = refused is None or not refused_before_unsupported(refused.code)
    return next((i for i, insn in enumerate(insns[:stop + asked]) if rtl_unsupported(insn.op, insn.f, vector_unit)),
                None)


def vec_unsupported(d: vec.Descriptor, max_row: int = ops.MAX_ROW) -> str | None:
    """Why the RTL's vector executor refuses a descriptor that the functional model runs
    (``ErrorCode.UNSUPPORTED``, raised when the VEC runs, after the ``DATA`` checks of its
    descriptor, its fields and the operators), or None.  Its spatial unit
    (``hw.rtl.vector_spatial``, a pass whose first stage is spatial): the ``UNSUPPORTED`` part of
    ``hw.vector.spatial_refusals``, the rule the unit evaluates.  Its vector unit (``hw.rtl.vector_unit``,
    built for rows of ``max_row``): ``hw.vector.row_lane_refusals`` and ``row_too_long``, the rules the
    unit evaluates."""
    if d.stages[0].op in vec.SPATIAL:
        return _spatial_unsupported(d)
    head, _, stages = vec.descriptor_field_slots(d)
    row, heads = vec.row_and_heads(head, stages)
    refusals = vec.row_lane_refusals([(True, st.op, st.src, st.src2, st.out) for st in d.stages],
                                     [(o.repeat, o.c) for o in d.operands], heads, row)
    refusals[f"rows longer than max_row = {max_row}"] = vec.row_too_long(
        any(st.op in vec.ROW_OPS for st in d.stages), row, max_row)
    chain = "->".join(st.op.name for st in d.stages)
    return next((f"{why}: {chain}" for why, refused in refusals.items() if refused), None)


def _spatial_unsupported(d: vec.Descriptor) -> str | None:
    _, unsupported = vec.spatial_refusals(*vec.spatial_slots(d))
    first = d.stages[0]
    return next((f"{first.op.name}: {why}" for why, refused in unsupported.items() if refused), None)
