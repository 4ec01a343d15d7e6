"""Requantisation of one accumulator a cycle by ``hw.operators.requantize_kernel`` (``RequantizeLane``)."""

from __future__ import annotations

from ..config import AcceleratorConfig
from .postproc import PostProcessor

__all__ = ["RequantizeLane"]


class RequantizeLane(PostProcessor):
    """``y = requantize(acc, mult, shift, relu, bias=bias)`` of :mod:`hw.operators`, one a cycle:
    the PE's :class:`~hw.rtl.postproc.PostProcessor` without its table activation (the vector
    unit's view of the same lane).

    Parameters
    ----------
    config : AcceleratorConfig
        Only ``acc_bits`` is used.
    """

    def __init__(self, config: AcceleratorConfig):
        super().__init__(config, table=False)
