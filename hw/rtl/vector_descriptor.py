"""A VEC descriptor as an Amaranth layout, generated from ``hw/vector.py``'s field tables.

The descriptor's bytes (``hw.vector.encode_descriptor``) pack each field least significant bit
first, little-endian, so a layout with the same fields at the same bit offsets *is* the byte
image: nothing here restates a width or an offset.  The vector unit holds a descriptor with
every operand and stage slot (``DESCRIPTOR``): operand ``i`` at ``HEADER_BYTES + i *
OPERAND_BYTES``, stage ``i`` after the ``MAX_OPERANDS`` operand slots.  In DRAM the stages follow
the ``n_operands`` operands given; :func:`descriptor_slots` moves them into their slots (what a
descriptor fetch does while reading them).
"""

from __future__ import annotations

from amaranth.hdl import Array, Value, signed, unsigned
from amaranth.lib import data

from .. import vector as vec
from ..expr import Fields
from ..isa import VecOp

__all__ = ["HEADER", "OPERAND", "STAGE", "DESCRIPTOR", "LN_ENTRY", "packed_layout", "descriptor_slots", "field_slots",
           "stage_fields", "STAGE_OPS"]

#: Stage operations, in VecOp order (CHAIN is no stage operation).
STAGE_OPS = tuple(op for op in VecOp if op in vec.STAGE_PARAMS)


def packed_layout(spec: list[tuple[str, int, bool]], nbytes: int) -> data.FlexibleLayout:
    """The layout of ``spec`` ((name, bits, signed) packed from bit 0, as ``hw.vector`` packs it)
    in ``nbytes`` bytes."""
    fields, pos = {}, 0
    for name, bits, is_signed in spec:
        fields[name] = data.Field(signed(bits) if is_signed else unsigned(bits), pos)
        pos += bits
    if pos > 8 * nbytes:
        raise ValueError(f"fields of {pos} bits do not fit {nbytes} bytes")
    return data.FlexibleLayout(8 * nbytes, fields)


HEADER = packed_layout(vec.HEADER_FIELDS, vec.HEADER_BYTES)
OPERAND = packed_layout(vec.OPERAND_SPEC, vec.OPERAND_BYTES)
#: A stage slot: the stage head and one operation's parameters, seen as any operation (``.add``,
#: ``.softmax``, ...); ``.copy.op`` says which applies.
STAGE = data.UnionLayout({op.name.lower(): packed_layout(vec.STAGE_HEAD + vec.STAGE_PARAMS[op], vec.STAGE_BYTES)
                          for op in STAGE_OPS})
DESCRIPTOR = data.StructLayout({"header": HEADER, "operands": data.ArrayLayout(OPERAND, vec.MAX_OPERANDS),
                                "stages": data.ArrayLayout(STAGE, vec.MAX_STAGES)})
#: A layernorm's per-channel entry (beta, gamma), as its stage's table holds it.
LN_ENTRY = packed_layout(list(vec.LN_ENTRY), vec.LN_ENTRY_BYTES)


class _StageFields:
    """``f["op"]``, ``f["softmax.row"]``: a stage slot's fields as ``hw.vector.slot_fields`` names them."""

    def __init__(self, view: data.View):
        self._view = view

    def __getitem__(self, name: str):
        operation, _, field = name.rpartition(".")
        return getattr(getattr(self._view, operation or "copy"), field)


def element_at(array: data.View, index: Value) -> data.View:
    """``array[index]`` of an array view whose length is two to the bits of ``index`` (every value
    an element), as a multiplexer over the elements.  Amaranth's own dynamic index is a shifter
    over the whole array, whose netlist check walks every output bit against every bit of the
    array: the operand picks were nine tenths of the edges an export of tiny checked."""
    layout = array.shape()
    assert 1 << len(Value.cast(index)) == layout.length
    return layout.elem_shape(Array(array[k].as_value() for k in range(layout.length))[index])


def field_slots(desc: data.View) -> tuple:
    """(header, operand slots, stage slots) of a ``DESCRIPTOR`` view, read with ``f["name"]``: what
    ``hw.vector.slot_fields`` evaluates (``hw.vector.descriptor_field_slots`` on integers)."""
    return (Fields(desc.header), [Fields(desc.operands[k]) for k in range(vec.MAX_OPERANDS)],
            [stage_fields(desc.stages[i]) for i in range(vec.MAX_STAGES)])


def stage_fields(stage: data.View) -> "_StageFields":
    """A ``STAGE`` view read with ``f["name"]`` (``f["softmax.row"]``), as ``hw.vector``'s rules read a stage slot."""
    return _StageFields(stage)


def descriptor_slots(d: vec.Descriptor) -> int:
    """The value of ``DESCRIPTOR`` holding descriptor ``d``, from its encoded bytes."""
    raw = vec.encode_descriptor(d)
    n_op = len(d.operands)
    split = vec.HEADER_BYTES + vec.OPERAND_BYTES * n_op
    operands = raw[vec.HEADER_BYTES:split].ljust(vec.OPERAND_BYTES * vec.MAX_OPERANDS, b"\0")
    return int.from_bytes(raw[:vec.HEADER_BYTES] + operands + raw[split:], "little")
