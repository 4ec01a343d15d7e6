"""The vector MAC unit: a C0-wide int8 dot product with a registered output."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..numerics import INT8_MAX, INT8_MIN
from .operator_backend import range_shape

__all__ = ["VectorMAC", "int8_vector", "adder_tree"]


def int8_vector(lanes: int) -> data.ArrayLayout:
    """The layout of ``lanes`` packed int8 values (lane ``i`` in bits ``[8i, 8i+8)``)."""
    return data.ArrayLayout(signed(8), lanes)


def adder_tree(m: Module, terms, shape) -> Signal:
    """Sum ``terms`` with a balanced binary tree of adders, each node a signal of ``shape``.

    Every term and partial sum is truncated to ``shape`` (two's complement arithmetic modulo
    ``2**width``), so the result is exact when the true sum fits ``shape``: the caller's
    guarantee.  The depth is ``ceil(log2(len(terms)))`` adders.  Yosys narrows each adder to
    the bits its sign-extended inputs need (the netlist of Amaranth's widening ``+``: same
    cells and depth); Verilator's model of it runs about 20 % faster (docs/cosim.md).

    Parameters
    ----------
    m : Module
        The module the tree's signals are driven in (combinationally).
    terms : iterable of Value
        The addends.
    shape : Shape
        The shape of every node; the sum of ``terms`` must fit it.

    Returns
    -------
    Signal
        The root: the sum of ``terms``.
    """
    terms = list(terms)
    if not terms:
        raise ValueError("adder_tree needs at least one term")
    nodes = []
    for i, term in enumerate(terms):
        node = Signal(shape, name=f"term{i}")
        m.d.comb += node.eq(term)
        nodes.append(node)
    level = 0
    while len(nodes) > 1:
        pairs = []
        for i in range(0, len(nodes) - 1, 2):
            node = Signal(shape, name=f"sum{level}_{i // 2}")
            m.d.comb += node.eq(nodes[i] + nodes[i + 1])
            pairs.append(node)
        if len(nodes) % 2:
            pairs.append(nodes[-1])
        nodes, level = pairs, level + 1
    return nodes[0]


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
        # every product lies in [-128 * 127, 128 * 128]: the sum's exact shape
        shape = range_shape(self._c0 * INT8_MIN * INT8_MAX, self._c0 * INT8_MIN * INT8_MIN)
        assert shape.width <= self._product_bits, (shape, self._product_bits)
        total = adder_tree(m, (self.a[i] * self.w[i] for i in range(self._c0)), shape)
        # Registered at the sum's own width (sign-extended to product_bits after the register),
        # without a reset (sum_valid qualifies it) and only for valid pairs: the tree then feeds
        # nothing but this enabled register, so Verilator evaluates it inside ``if (valid)`` and
        # an idle MAC costs a branch (a wider register or a reset made it evaluate the tree every
        # cycle: docs/cosim.md, "Where the time goes").
        dot = Signal(shape, reset_less=True)
        with m.If(self.valid):
            m.d.sync += dot.eq(total)
        m.d.comb += self.sum.eq(dot)
        m.d.sync += self.sum_valid.eq(self.valid)
        return m
