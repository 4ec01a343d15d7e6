"""What the row units (``SoftmaxUnit``, ``LayerNormUnit``) share: the element streams, the row limit,
the signature and the sequencer's states."""

from __future__ import annotations

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from .kernel_unit import INT8, KernelUnit
from .operator_backend import range_shape

__all__ = ["ROW_IN", "ROW_OUT", "I8_RANGE", "check_max_row", "RowUnit"]

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


class RowUnit(wiring.Component):
    """A row operator fed one element a cycle, each row once per pass (``last`` on its final element).

    Between two passes a *row step* runs once: the sequencer waits until the last term of the
    running sums is in (``accumulate_latency`` cycles after the last element, plus one to add
    it), starts the step's kernel (``step``, a :class:`KernelUnit`) and latches its result;
    ``x.ready`` is low meanwhile (``gap_cycles``).

    Members
    -------
    <parameter>: In(range)
        The operator's parameters, held for the row.
    x: In(stream.Signature(payload))
    out: Out(ROW_OUT)
    out_valid: Out(1)
        A result (``out.y``, ``out.last``), ``out_latency`` cycles after its element went in of
        the last pass; nothing waits for it.
    """

    def __init__(self, max_row: int, params: dict, payload: data.StructLayout, *, step: KernelUnit,
                 accumulate_latency: int):
        self._max_row = check_max_row(max_row)
        self._step, self._accumulate_latency = step, accumulate_latency
        super().__init__({
            **{name: In(range_shape(*r)) for name, r in params.items()},
            "x": In(stream.Signature(payload)),
            "out": Out(ROW_OUT), "out_valid": Out(1),
        })

    @property
    def max_row(self) -> int:
        """The longest row (it sizes the sums); a longer one is the caller's error."""
        return self._max_row

    @property
    def gap_cycles(self) -> int:
        """Cycles ``x.ready`` is low before the last pass: the last term of the sums comes out,
        is added, and the row step runs."""
        return self._accumulate_latency + 1 + self._step.latency

    def _pass_state(self, m, state: str, flag, accept, next_state: str, at_last=()) -> None:
        """A pass: ``flag`` and ``x.ready`` high; after the row's last element, ``at_last`` and ``next_state``."""
        with m.State(state):
            m.d.comb += [flag.eq(1), self.x.ready.eq(1)]
            with m.If(accept & self.x.payload.last):
                m.d.sync += list(at_last)
                m.next = next_state

    def _step_states(self, m, sums_done, next_state: str) -> None:
        """The row step: wait for the sums (``sums_done``), start ``step`` once, wait for its result
        (which the unit latches on ``step.out_valid``), then ``next_state``."""
        with m.State("SUMS"):
            with m.If(sums_done):
                m.next = "STEP"
        with m.State("STEP"):
            m.d.comb += self._step.in_valid.eq(1)
            m.next = "LATCH"
        with m.State("LATCH"):
            with m.If(self._step.out_valid):
                m.next = next_state
