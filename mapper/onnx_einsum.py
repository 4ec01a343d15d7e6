"""ONNX ``Einsum`` (``torch.einsum`` in attention and projections) as the nodes it stands for.

An equation of one operand that only reorders its axes is a ``Transpose``; one of two operands is a
batched product: each operand's axes are transposed to (batch, kept, contracted) and reshaped to
``[batch..., M, K]`` and ``[batch..., K, N]``, multiplied by ``MatMul`` and the result reshaped and
transposed to the equation's output.  These nodes are imported by their own handlers
(:mod:`mapper.onnx_ops`), so a constant operand is a linear layer's weight and two activations are a
product the IR holds; what they refuse is refused.  An axis of one operand that the output does not
keep is summed first (``ReduceSum``: ``bnc->bn``).  Repeated letters (diagonals) are refused here.
"""

from __future__ import annotations

import math
import string

import numpy as np
from onnx import helper

from .onnx_ops import _attrs, _op, _reading, _reduce_axes

__all__: list[str] = []

#: Letters standing for an ellipsis' axes (the equation's own letters are ASCII letters).
_ELLIPSIS_AXES = string.digits


@_op("Einsum")
def _einsum(imp, node) -> None:
    operands = [imp.value(name) for name in node.input]
    terms, out = _terms(imp, _attrs(node)["equation"], [len(v.shape) for v in operands])
    sizes = _letter_sizes(imp, terms, [v.shape for v in operands])
    if len(terms) > 2:
        raise imp.fail(f"an equation of {len(terms)} operands; supported: one or two")
    names = list(node.input)
    for k, term in enumerate(terms):
        alone = [c for c in term if c not in out and "".join(terms).count(c) == 1]
        if alone and len(alone) < len(term):
            names[k], terms[k] = _summed(imp, node, names[k], term, alone, k)
        elif alone:
            raise imp.fail(f"it sums every axis of operand {k} ({term!r}); supported: sums that keep an axis")
    if len(terms) == 1:
        if terms[0] == out:
            return _emit(imp, node, "Identity", names, node.output[0])
        return _emit(imp, node, "Transpose", names, node.output[0], perm=[terms[0].index(c) for c in out])
    pairs = [(terms, names), (terms[::-1], names[::-1])]
    weight = [imp.is_const(name) for name in names]
    if weight[0] != weight[1]:                  # the weight second: a linear layer
        pairs = pairs[weight[0]:][:1]
    else:                                       # the order whose product is the output's, if one is
        pairs.sort(key=lambda pair: _product_order(*pair[0], out) != list(out))
    _product(imp, node, *pairs[0], out, sizes)


def _summed(imp, node, name: str, term: str, letters: list[str], k: int) -> tuple[str, str]:
    """Operand ``k``, ``name`` (axes ``term``), summed over the axes of ``letters`` (a ``ReduceSum``: over
    an image's channels a convolution of ones, over its pixels, rows or columns a pooling); the sum
    and its letters."""
    summed = f"{node.output[0]}/einsum_sum{k}"
    if imp.is_const(name):                      # a weight's sum: the file's data, summed here
        imp._set_const(summed, imp.array(name).sum(axis=tuple(term.index(c) for c in letters)))
        return summed, "".join(c for c in term if c not in letters)
    made = helper.make_node("ReduceSum", [name], [summed], name=f"{node.name or node.output[0]}/ReduceSum{k}",
                            axes=[term.index(c) for c in letters], keepdims=0)
    with _reading(imp, made):
        _reduce_axes(imp, made)
    return summed, "".join(c for c in term if c not in letters)


def _terms(imp, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operands' and the output's letters, an ellipsis spelled out as digits (right-aligned, as
    it broadcasts) and an implicit output (no ``->``) as ONNX defines it."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise imp.fail(f"equation {equation!r} names {len(terms)} operands but the node has {len(ranks)} inputs")
    terms = [_spelled_out(imp, t, r, equation) for t, r in zip(terms, ranks)]
    dots = max(sum(c in _ELLIPSIS_AXES for c in t) for t in terms)
    if not arrow:
        once = sorted(c for c in set("".join(terms)) if "".join(terms).count(c) == 1 and c.isalpha())
        out = "..." * ("..." in lhs) + "".join(once)
    out = out.replace("...", _ELLIPSIS_AXES[len(_ELLIPSIS_AXES) - dots:])
    for t in terms + [out]:
        if len(set(t)) != len(t) or not all(c.isalpha() or c in _ELLIPSIS_AXES for c in t):
            raise imp.fail(f"equation {equation!r}: a term repeats a letter (a diagonal) or holds other than "
                           f"letters and '...'; supported: each axis named once")
    if not set(out) <= set("".join(terms)):
        raise imp.fail(f"equation {equation!r}: the output names a letter no operand has")
    return terms, out


def _spelled_out(imp, term: str, rank: int, equation: str) -> str:
    """``term`` with its ``...`` replaced by one digit per axis it covers (the last ones of
    :data:`_ELLIPSIS_AXES`, so that the operands' ellipses align on the right)."""
    dots = rank - (len(term) - 3) if "..." in term else 0
    if dots < 0 or (dots == 0 and len(term) != rank) or dots > len(_ELLIPSIS_AXES):
        raise imp.fail(f"equation {equation!r}: term {term!r} does not match an operand of rank {rank}")
    return term.replace("...", _ELLIPSIS_AXES[len(_ELLIPSIS_AXES) - dots:])


def _letter_sizes(imp, terms: list[str], shapes: list) -> dict[str, int]:
    """Each letter's axis size; a letter of two sizes is refused (broadcasting one of them included)."""
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            if sizes.setdefault(c, n) != n:
                raise imp.fail(f"axis {c!r} has sizes {sizes[c]} and {n}; supported: equal sizes (no broadcasting)")
    return sizes


def _product(imp, node, terms: tuple[str, str], names: list[str], out: str, sizes: dict[str, int]) -> None:
    """``MatMul`` of the two operands as ``[batch..., M, K] x [batch..., K, N]``, then the output's order."""
    a, b = terms
    batch, rows, cols = _product_axes(a, b, out)
    inner = [c for c in a if c in b and c not in out]
    dims = [sizes[c] for c in batch]
    left = _arranged(imp, node, names[0], a, batch + rows + inner, dims + [_prod(rows, sizes), _prod(inner, sizes)], "a")
    right = _arranged(imp, node, names[1], b, batch + inner + cols, dims + [_prod(inner, sizes), _prod(cols, sizes)],
                      "b")
    order = _product_order(a, b, out)
    kept = [sizes[c] for c in order]
    last = [] if order == list(out) else ["Transpose"]
    steps = (["Reshape"] if len(rows) != 1 or len(cols) != 1 else []) + last
    product = f"{node.output[0]}/einsum" if steps else node.output[0]
    _emit(imp, node, "MatMul", [left, right], product)
    if "Reshape" in steps:
        product = _emit_reshape(imp, node, product, kept, node.output[0] if not last else f"{product}/kept")
    if last:
        _emit(imp, node, "Transpose", [product], node.output[0], perm=[order.index(c) for c in out])


def _product_axes(a: str, b: str, out: str) -> tuple[list[str], list[str], list[str]]:
    """The output's letters of both operands (batch), of ``a`` only (rows) and of ``b`` only (columns)."""
    return ([c for c in out if c in a and c in b], [c for c in out if c in a and c not in b],
            [c for c in out if c in b and c not in a])


def _product_order(a: str, b: str, out: str) -> list[str]:
    """The letters of ``a x b``'s result, in the order :func:`_product` computes them."""
    return [c for axes in _product_axes(a, b, out) for c in axes]


def _prod(letters: list[str], sizes: dict[str, int]) -> int:
    return math.prod(sizes[c] for c in letters)


def _arranged(imp, node, name: str, term: str, order: list[str], shape: list[int], tag: str) -> str:
    """Operand ``name`` (axes ``term``) transposed to ``order`` and reshaped to ``shape``."""
    if list(term) != order:
        name = _emit(imp, node, "Transpose", [name], f"{node.output[0]}/einsum_{tag}", perm=[term.index(c) for c in order])
    if list(imp.value(name).shape) != shape:
        name = _emit_reshape(imp, node, name, shape, f"{node.output[0]}/einsum_{tag}_rows")
    return name


def _emit_reshape(imp, node, name: str, shape: list[int], out: str) -> str:
    target = f"{out}/shape"
    imp.consts[target] = np.asarray(shape, np.int64)
    return _emit(imp, node, "Reshape", [name, target], out)


def _emit(imp, node, op: str, inputs: list[str], out: str, **attrs) -> str:
    """Import one node the equation stands for (named after the Einsum, so that a refusal names it)."""
    made = helper.make_node(op, inputs, [out], name=f"{node.name or node.output[0]}/{op}", **attrs)
    with _reading(imp, made):
        imp._dispatch(made)
    return out
