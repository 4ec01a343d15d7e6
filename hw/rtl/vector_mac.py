"""The vector MAC unit: a C0-wide int8 dot product with a registered output."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig

__all__ = ["VectorMAC", "int8_vector", "adder_tree"]


def int8_vector(lanes: int) -> data.ArrayLayout:
    """The layout of ``lanes`` packed int8 values (lane ``i`` in bits ``[8i, 8i+8)``)."""
    return data.ArrayLayout(signed(8), lanes)


def adder_tree(terms):
    """Sum ``terms`` with a balanced binary tree of adders.

    Amaranth widens every ``+`` by one bit, so the result is exact; the depth is
    ``ceil(log2(len(terms)))`` adders rather than ``len(terms) - 1`` in a chain.
    """
    terms = list(terms)
    if not terms:
        raise ValueError("adder_tree needs at least one term")
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = pairs
    return terms[0]


class VectorMAC(wiring.Component):
    """Dot product of C0 int8 inputs with C0 int8 weights, registered once.

    ``sum`` = sum over ``i`` of ``a[i] * w[i]``, exact in two's complement
    (``config.product_bits`` is wide enough for C0 products of -128 x -128).
    The result and ``sum_valid`` appear one clock cycle after ``valid``; the register
    holds its value while ``valid`` is low and is not reset (``sum`` means something
    only with ``sum_valid``).

    Parameters
    ----------
    config:
        Only ``c0`` and ``product_bits`` are used.

    Members
    -------
    a, w: In(ArrayLayout(signed(8), C0))
        Input and weight vectors.
    valid: In(1)
        ``a`` and ``w`` carry a pair to multiply this cycle.
    sum: Out(signed(product_bits))
        Registered dot product.
    sum_valid: Out(1)
        ``sum`` holds the dot product of the pair presented one cycle earlier.
    """

    #: Clock cycles from ``valid`` to ``sum_valid``.
    LATENCY = 1
    #: Prefix of the Verilog module name (see :mod:`hw.rtl.export`).
    export_prefix = "vector_mac"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        """The configuration fields that determine this block's hardware."""
        return {"c": config.c0, "p": config.product_bits}

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._c0 = config.c0
        self._product_bits = config.product_bits
        super().__init__({
            "a": In(int8_vector(config.c0)),
            "w": In(int8_vector(config.c0)),
            "valid": In(1),
            "sum": Out(signed(config.product_bits)),
            "sum_valid": Out(1),
        })

    @property
    def c0(self) -> int:
        return self._c0

    @property
    def product_bits(self) -> int:
        return self._product_bits

    def elaborate(self, platform):
        m = Module()
        total = adder_tree(self.a[i] * self.w[i] for i in range(self._c0))
        assert len(total) <= self._product_bits, (len(total), self._product_bits)
        # Registered at the tree's own width (sign-extended to product_bits after the register),
        # without a reset (sum_valid qualifies it) and only for valid pairs: the tree then feeds
        # nothing but this enabled register, so Verilator evaluates it inside ``if (valid)`` and
        # an idle MAC costs a branch (a wider register or a reset made it evaluate the tree every
        # cycle: docs/cosim.md, "Where the time goes").
        dot = Signal(signed(len(total)), reset_less=True)
        with m.If(self.valid):
            m.d.sync += dot.eq(total)
        m.d.comb += self.sum.eq(dot)
        m.d.sync += self.sum_valid.eq(self.valid)
        return m
