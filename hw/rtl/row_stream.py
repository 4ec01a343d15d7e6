"""What the row units (``SoftmaxUnit``, ``LayerNormUnit``) share: the element streams and the row limit."""

from __future__ import annotations

from amaranth.lib import data

from .. import operators as ops
from .kernel_unit import INT8

__all__ = ["ROW_IN", "ROW_OUT", "I8_RANGE", "check_max_row"]

#: A row element on its way in and out: the value and whether it ends the row.
ROW_IN = data.StructLayout({"x": INT8, "last": 1})
ROW_OUT = data.StructLayout({"y": INT8, "last": 1})
#: The inclusive range of an int8 activation.
I8_RANGE = (ops.INT8_MIN, ops.INT8_MAX)


def check_max_row(max_row: int) -> int:
    """``max_row`` if it is an integer in 1..``hw.operators.MAX_ROW``, else ValueError naming it."""
    if isinstance(max_row, bool) or not isinstance(max_row, int) or not 1 <= max_row <= ops.MAX_ROW:
        raise ValueError(f"max_row must be an integer in 1..{ops.MAX_ROW}, not {max_row!r}")
    return max_row
