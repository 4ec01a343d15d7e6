"""Post-processing of accumulated partial sums: bias, requantisation, ReLU or a table activation, int8 saturation."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from ..config import AcceleratorConfig
from ..expr import ceil_log2
from ..numerics import MULT_BITS, SHIFT_BITS, TABLE_ENTRIES, TABLE_ENTRY_BITS
from .buses import PARAM_STRUCT
from .kernel_unit import INT8, delay_line
from .operator_backend import AmaranthBackend, TablePort

__all__ = ["PostProcessor"]


class PostProcessor(wiring.Component):
    """One lane of the requantisation of :mod:`hw.numerics`, then optionally a table activation.

    The arithmetic is ``hw.operators.requantize_kernel`` (and ``lut_kernel`` for the table)
    evaluated by :class:`~hw.rtl.operator_backend.AmaranthBackend`, never a copy of it::

        stage 1:  x = wrap(acc + bias, acc_bits)                      -> register x
        stage 2:  p = x * mult                                        -> register p, shift
        stage 3:  r = (p + rnd(shift)) >> shift                       -> register r
        stage 4:  y = relu_saturate(r); table: read entry y + 128     -> register y / the table's read

    The sum has a stage of its own: behind the accumulator memory's read, an adder and the
    multiplier in one stage made the deepest path of a PE of few lanes (C0 <= 8), deeper than
    the vector MAC's multiply-add tree.

    With ``act_table`` set the result is the low byte of the table entry ``y + 128`` (as
    ``sim.functional`` takes it: ``astype(int8)``), read through ``table_addr``/``table_data``
    from the PE's :class:`~hw.rtl.table_memory.TableMemory`, whose synchronous read is stage 4's
    register; otherwise ``y``.  Shift amounts above ``MAX_SHIFT`` are outside the contract (the
    load unit refuses them with ``ErrorCode.DATA``).

    Parameters
    ----------
    config : AcceleratorConfig
        Only ``acc_bits`` is used.
    table : bool
        Build the table activation (the ``act_table`` flag and the table's read ports).

    Members
    -------
    acc: In(signed(acc_bits))
    bias: In(signed(32))
    mult: In(unsigned(MULT_BITS))
    shift: In(unsigned(SHIFT_BITS))
    relu: In(1)
    act_table: In(1)
        The activation is the table (``Act.TABLE``); only with ``table=True``.
    table_addr: Out(unsigned(8)), table_data: In(signed(TABLE_ENTRY_BITS))
        The table's read port: the entry at ``table_addr`` the cycle after; only with ``table=True``.
    valid: In(1)
    y: Out(signed(8))
    y_valid: Out(1)
        ``y`` is the result for the inputs presented ``LATENCY`` cycles earlier.
    """

    #: Clock cycles from ``valid`` to ``y_valid`` (the backend's pipeline; checked when built).
    LATENCY = 4
    export_prefix = "postproc"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"a": config.acc_bits}

    def __init__(self, config: AcceleratorConfig, *, table: bool = True):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        ops.check_acc_bits(config.acc_bits)
        self._acc_bits, self._table = config.acc_bits, bool(table)
        ports = {"acc": In(signed(config.acc_bits)), "bias": In(PARAM_STRUCT["bias"].shape), "mult": In(unsigned(MULT_BITS)),
                 "shift": In(unsigned(SHIFT_BITS)), "relu": In(1), "valid": In(1),
                 "y": Out(INT8), "y_valid": Out(1)}
        if self._table:
            ports |= {"act_table": In(1), "table_addr": Out(unsigned(ceil_log2(TABLE_ENTRIES))),
                      "table_data": In(signed(TABLE_ENTRY_BITS))}
        super().__init__(ports)

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        # valid of each stage; a stage's registers load only for a valid beat (see AmaranthBackend)
        valid = delay_line(m, self.valid, self.LATENCY, "valid")
        be = AmaranthBackend(m, "post", stage_valid=valid)
        top = 1 << (self._acc_bits - 1)
        x = be.input((self.acc + self.bias)[:self._acc_bits].as_signed(), -top, top - 1)   # wraps like the accumulator
        x = be.at(x, 1)
        # every shift the port holds, so that one beyond MAX_SHIFT still gives the formula's value
        mult, shift = (be.input(p, 0, (1 << len(p)) - 1) for p in (self.mult, self.shift))
        # the shift registered with the product: its rounding constant (a one-hot as wide as the
        # largest shift) is then decoded where it is added instead of registered
        shift = be.at(shift, 2)
        y = ops.requantize_kernel(x, mult, shift, be.input(self.relu, 0, 1), be)
        if self._table:
            # the activation is the entry's low byte, as sim.functional's astype(int8)
            port = TablePort(self.table_addr, self.table_data[:8].as_signed(), TABLE_ENTRIES)
            y = be.sel(be.input(self.act_table, 0, 1), ops.lut_kernel(y, port, be), y)
        y = be.at(y, self.LATENCY)
        assert y.stage == self.LATENCY and y.lo >= -128 and y.hi <= 127, (y, self.LATENCY)
        m.d.comb += [self.y.eq(y.value), self.y_valid.eq(valid[self.LATENCY])]
        return m
