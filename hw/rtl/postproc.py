"""Post-processing of accumulated partial sums: bias, requantisation, ReLU, int8 saturation."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..numerics import INT8_MAX, INT8_MIN, MULT_BITS, SHIFT_BITS

__all__ = ["PostProcessor"]


class PostProcessor(wiring.Component):
    """One lane of the requantisation of :mod:`hw.numerics`, pipelined in three stages.

    ::

        stage 1:  x = wrap_acc(acc + bias)                  -> register x, mult, shift, relu
        stage 2:  p = x * mult            (exact)           -> register p, shift, relu
        stage 3:  r = (p + rnd(shift)) >> shift, ReLU, clamp to int8 -> register y

    with ``rnd(0) = 0`` and ``rnd(s) = 1 << (s - 1)`` (round half up), computed as
    ``(1 << s) >> 1`` so that no negative shift amount is ever formed.  The shift is
    arithmetic.  Shift amounts above ``MAX_SHIFT`` are outside the contract but still
    give the exact formula's value (``p`` fits in ``acc_bits + MULT_BITS + 1`` bits).

    Parameters
    ----------
    config:
        Only ``acc_bits`` is used.

    Members
    -------
    acc: In(signed(acc_bits))
    bias: In(signed(32))
    mult: In(unsigned(MULT_BITS))
    shift: In(unsigned(SHIFT_BITS))
    relu: In(1)
    valid: In(1)
    y: Out(signed(8))
    y_valid: Out(1)
        ``y`` is the result for the inputs presented ``LATENCY`` cycles earlier.
    """

    #: Clock cycles from ``valid`` to ``y_valid``.
    LATENCY = 3
    export_prefix = "postproc"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"a": config.acc_bits}

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._acc_bits = config.acc_bits
        super().__init__({
            "acc": In(signed(config.acc_bits)),
            "bias": In(signed(32)),
            "mult": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "relu": In(1),
            "valid": In(1),
            "y": Out(signed(8)),
            "y_valid": Out(1),
        })

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def product_bits(self) -> int:
        """Width of the exact product ``x * mult`` (signed)."""
        return self._acc_bits + MULT_BITS + 1

    def elaborate(self, platform):
        m = Module()
        acc_bits = self._acc_bits

        # Stage 1: bias, wrapped to the accumulator width like the accumulator itself.
        x1 = Signal(signed(acc_bits))
        mult1 = Signal(unsigned(MULT_BITS))
        shift1 = Signal(unsigned(SHIFT_BITS))
        relu1 = Signal()
        valid1 = Signal()
        m.d.sync += [
            x1.eq((self.acc + self.bias)[:acc_bits].as_signed()),
            mult1.eq(self.mult),
            shift1.eq(self.shift),
            relu1.eq(self.relu),
            valid1.eq(self.valid),
        ]

        # Stage 2: the exact product (signed x unsigned widens by one bit; no wrap).
        p2 = Signal(signed(self.product_bits))
        shift2 = Signal(unsigned(SHIFT_BITS))
        relu2 = Signal()
        valid2 = Signal()
        m.d.sync += [
            p2.eq(x1 * mult1),
            shift2.eq(shift1),
            relu2.eq(relu1),
            valid2.eq(valid1),
        ]

        # Stage 3: round half up, arithmetic shift, ReLU, saturate.
        max_shift = (1 << SHIFT_BITS) - 1
        rnd = Signal(unsigned(max_shift))
        m.d.comb += rnd.eq((Const(1, max_shift + 1) << shift2) >> 1)
        rounded = Signal(signed(max(self.product_bits, max_shift) + 2))
        m.d.comb += rounded.eq(p2 + rnd)
        r = Signal(signed(self.product_bits + 1))
        m.d.comb += r.eq(rounded >> shift2)   # signed operand: arithmetic shift
        m.d.sync += [
            # ReLU before the clamp: a ReLU'd value below -128 must give 0, not -128.
            self.y.eq(Mux(relu2 & (r < 0), 0,
                      Mux(r < INT8_MIN, INT8_MIN,
                      Mux(r > INT8_MAX, INT8_MAX, r[:8].as_signed())))),
            self.y_valid.eq(valid2),
        ]
        return m
