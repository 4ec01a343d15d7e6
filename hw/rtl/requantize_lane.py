"""Requantisation of one accumulator a cycle by ``hw.operators.requantize_kernel`` (``RequantizeLane``)."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as ops
from ..config import AcceleratorConfig
from .kernel_unit import INT8, KernelUnit
from .operator_backend import range_shape

__all__ = ["RequantizeLane"]


class RequantizeLane(wiring.Component):
    """``y = requantize(acc, mult, shift, relu, bias=bias)`` of :mod:`hw.operators`, one a cycle.

    ``acc + bias`` is wrapped to ``acc_bits`` (two's complement, as the accumulator wraps;
    ``hw.operators.wrap``), then ``requantize_kernel`` (multiply, round half up, shift, ReLU,
    saturate) runs as a :class:`KernelUnit`.  The same arithmetic as ``PostProcessor``, from
    the kernel instead of a second copy; its latency is the kernel's.

    Parameters
    ----------
    config : AcceleratorConfig
        Only ``acc_bits`` is used.

    Members
    -------
    acc: In(signed(acc_bits))
    bias, mult, shift: In(...)
        Ranges from ``hw.operators.REQUANTIZE_RANGES``.
    relu: In(1)
    valid: In(1)
    y: Out(signed(8))
    y_valid: Out(1)
        ``y`` is the result for the inputs presented ``latency`` cycles earlier.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        ops.check_acc_bits(config.acc_bits)
        self._acc_bits = config.acc_bits
        acc = (-(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1)
        r = ops.REQUANTIZE_RANGES
        self._unit = KernelUnit(ops.requantize_kernel, {"x": acc, "mult": r["mult"], "shift": r["shift"],
                                                        "relu": (0, 1)})
        super().__init__({
            "acc": In(signed(config.acc_bits)),
            **{n: In(range_shape(*r[n])) for n in ("bias", "mult", "shift")},
            "relu": In(1), "valid": In(1),
            "y": Out(INT8), "y_valid": Out(1),
        })

    @property
    def latency(self) -> int:
        return self._unit.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.kernel = k = self._unit
        m.d.comb += [
            k.x.eq((self.acc + self.bias)[:self._acc_bits].as_signed()),      # wrap(acc + bias, acc_bits)
            k.mult.eq(self.mult), k.shift.eq(self.shift), k.relu.eq(self.relu), k.in_valid.eq(self.valid),
            self.y.eq(k.y), self.y_valid.eq(k.out_valid),
        ]
        return m
