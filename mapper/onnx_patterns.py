"""Subgraphs that PyTorch's exporter writes for one operation, rewritten as that operation before
an import (:mod:`mapper.onnx_import`): GELU's ``Erf`` form, SiLU ``x * sigmoid(x)`` (and CLIP's
QuickGELU ``x * sigmoid(1.702 * x)``) as ``Swish``, Mish below opset 18 (``x * tanh(softplus(x))``),
and LayerNorm below opset 17
(``ReduceMean``, ``Sub``, ``Pow``, ``ReduceMean``, ``Add``, ``Sqrt``, ``Div``, then the scale
``Mul`` and the shift ``Add``; ConvNeXt's over the channels of an NCHW image too); and ONNX's
``GroupNormalization`` function body as onnxruntime's ``quant_pre_process`` inlines it (the
variance as ``mean(x*x) - mean(x)**2`` of a ``[N, groups, -1]`` reshape).  A pattern is
rewritten only when nothing outside it reads its intermediate values; otherwise its nodes are
imported one by one (and refused if the IR has no such operator).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = ["constant_value", "fuse_patterns"]


def fuse_patterns(imp) -> None:
    """Rewrite every GELU, gated (SiLU, Mish) and LayerNorm pattern of ``imp.nodes`` in place (matched
    nodes join ``imp.done``)."""
    _fuse_gelu(imp)
    _fuse_gated(imp)
    _fuse_layernorm(imp)
    _fuse_group_moments(imp)


def _fuse_gated(imp) -> None:
    """Replace ``x * sigmoid(alpha * x)`` by ``Swish(alpha)`` and ``x * tanh(softplus(x))`` by ``Mish``:
    one function of each element, one table of the vector unit (or of the producer's STOREs)."""
    from onnx import helper

    for j, node in enumerate(imp.nodes):
        if node.op_type != "Mul" or j in imp.done or len(node.input) != 2:
            continue
        for x, gate in (node.input, node.input[::-1]):
            match = _gate_match(imp, j, x, gate)
            if match is not None:
                op, members, attrs = match
                imp.done.update(members)
                imp.nodes[j] = helper.make_node(op, [x], [node.output[0]], name=node.name, **attrs)
                break


def _gate_match(imp, mul_index: int, x: str, gate: str):
    """(operator, the gate's nodes, attributes) when ``gate``, read by the product alone, is
    ``sigmoid(alpha * x)`` or ``tanh(softplus(x))``; else None."""
    k = imp.producer(gate)
    if k is None or _single_reader(imp, gate)[0] != mul_index:
        return None
    g = imp.nodes[k]
    if g.op_type == "Sigmoid" and g.input[0] == x:
        return "Swish", {k}, {"alpha": 1.0}
    p = imp.producer(g.input[0]) if g.op_type in ("Sigmoid", "Tanh") else None
    if p is None or _single_reader(imp, g.input[0])[0] != k:
        return None
    pre = imp.nodes[p]
    if g.op_type == "Tanh" and pre.op_type == "Softplus" and pre.input[0] == x:
        return "Mish", {k, p}, {}
    alpha = _scalar(imp, _other(pre, x)) if pre.op_type == "Mul" and x in pre.input else None
    if g.op_type == "Sigmoid" and alpha is not None:
        return "Swish", {k, p}, {"alpha": alpha}
    return None


def _fuse_gelu(imp) -> None:
    """Replace PyTorch's exact-GELU pattern ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (either order of the
    two products, ``/ sqrt(2)`` or ``* 1/sqrt(2)``) by one ``Gelu`` node."""
    from onnx import helper

    for i, node in enumerate(imp.nodes):
        if node.op_type != "Erf":
            continue
        match = _gelu_match(imp, i)
        if match is None:
            continue
        x, members, out = match
        imp.done.update(members - {max(members)})
        imp.nodes[max(members)] = helper.make_node("Gelu", [x], [out], name=imp.nodes[max(members)].name)


def _scalar(imp, name: str) -> Optional[float]:
    """The value of a one-element constant of rank 0 or 1, or None: a product by one of a higher rank
    (``[1, 1, 1, 1, 1]``) broadcasts its operand to that rank, which a rewritten node would not."""
    a = constant_value(imp, name)
    return float(np.ravel(a)[0]) if a is not None and np.size(a) == 1 and np.ndim(a) <= 1 else None


def _single_reader(imp, tensor: str):
    readers = imp.consumers.get(tensor, [])
    return (readers[0], imp.nodes[readers[0]]) if len(readers) == 1 and readers[0] >= 0 else (None, None)


def _other(node, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _gelu_match(imp, erf_index: int):
    """(x, indices of the pattern's nodes, its output) when the Erf at ``erf_index`` is a GELU's."""
    erf = imp.nodes[erf_index]
    pre = next((j for j, n in enumerate(imp.nodes) if erf.input[0] in n.output), None)
    if pre is None:
        return None
    div = imp.nodes[pre]
    c = _scalar(imp, div.input[1]) if len(div.input) == 2 else None
    if c is None or not ((div.op_type == "Div" and abs(c - math.sqrt(2)) < 1e-4)
                         or (div.op_type == "Mul" and abs(c - 1 / math.sqrt(2)) < 1e-4)):
        return None
    x = div.input[0]
    if _single_reader(imp, div.output[0])[0] != erf_index:
        return None
    j_add, add = _single_reader(imp, erf.output[0])
    if add is None or add.op_type != "Add" or _scalar(imp, _other(add, erf.output[0])) != 1.0:
        return None
    members = {pre, erf_index, j_add}
    # the remaining two products multiply (1 + erf) by x and by 0.5, in either order
    j1, m1 = _single_reader(imp, add.output[0])
    half = next((j for j, n in enumerate(imp.nodes) if n.op_type == "Mul" and x in n.input
                 and _scalar(imp, _other(n, x)) == 0.5), None)
    if m1 is None or m1.op_type != "Mul":
        return None
    partner = _other(m1, add.output[0])
    if half is not None and partner == imp.nodes[half].output[0] and _single_reader(imp, partner)[0] == j1:
        return x, members | {half, j1}, m1.output[0]
    j2, m2 = _single_reader(imp, m1.output[0])
    if partner == x and m2 is not None and m2.op_type == "Mul" and _scalar(imp, _other(m2, m1.output[0])) == 0.5:
        return x, members | {j1, j2}, m2.output[0]
    return None


def _axes(imp, node) -> Optional[list[int]]:
    from onnx import helper

    for a in node.attribute:
        if a.name == "axes":
            return list(helper.get_attribute_value(a))
    if len(node.input) > 1 and node.input[1]:
        v = constant_value(imp, node.input[1])
        return None if v is None else [int(x) for x in np.ravel(v)]
    return None


def _matches_at_sqrt(imp, match_at):
    """The match ``match_at(imp, index)`` gives at each ``Sqrt`` not yet rewritten (lazily: a rewrite
    marks the nodes it takes as done before the next one is tried)."""
    for i, node in enumerate(imp.nodes):
        if node.op_type == "Sqrt" and i not in imp.done:
            match = match_at(imp, i)
            if match is not None:
                yield match


def _fuse_layernorm(imp) -> None:
    from onnx import helper

    for x, members, out, eps, gamma, beta, channels_first in _matches_at_sqrt(imp, _layernorm_match):
        last = max(members)
        imp.done.update(members - {last})
        extra = {"channels_first": 1} if channels_first else {}     # the importer's own attribute
        imp.nodes[last] = helper.make_node("LayerNormalization", [x, gamma, beta], [out], name=imp.nodes[last].name,
                                           axis=-1, epsilon=eps, **extra)


def _layernorm_match(imp, sqrt_index: int):
    """(x, the pattern's nodes, its output, epsilon, scale and shift constants, whether over axis 1)
    when the Sqrt at ``sqrt_index`` is that of a LayerNorm over the last axis, or over axis 1 of an
    NCHW image (ConvNeXt's channels-first LayerNorm), else None."""
    sqrt = imp.nodes[sqrt_index]
    j_add = imp.producer(sqrt.input[0])
    add = imp.nodes[j_add] if j_add is not None else None
    if add is None or add.op_type != "Add":
        return None
    var_name = next((n for n in add.input if _scalar(imp, n) is None), None)
    eps = _scalar(imp, _other(add, var_name)) if var_name else None
    j_var = imp.producer(var_name) if var_name else None
    if eps is None or j_var is None or imp.nodes[j_var].op_type != "ReduceMean":
        return None
    j_pow = imp.producer(imp.nodes[j_var].input[0])
    pw = imp.nodes[j_pow] if j_pow is not None else None
    if pw is None or pw.op_type != "Pow" or _scalar(imp, pw.input[1]) != 2.0:
        return None
    j_sub = imp.producer(pw.input[0])
    sub = imp.nodes[j_sub] if j_sub is not None else None
    if sub is None or sub.op_type != "Sub":
        return None
    x, j_mean = sub.input[0], imp.producer(sub.input[1])
    mean = imp.nodes[j_mean] if j_mean is not None else None
    if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != x:
        return None
    axes = _axes(imp, mean)
    if axes not in ([-1], [1]) or _axes(imp, imp.nodes[j_var]) != axes or \
            not all(_keeps_dims(n) for n in (mean, imp.nodes[j_var])):
        return None
    j_div, div = _single_reader(imp, sqrt.output[0])
    if div is None or div.op_type != "Div" or list(div.input) != [sub.output[0], sqrt.output[0]] or \
            sorted(imp.consumers.get(sub.output[0], [])) != sorted([j_pow, j_div]):
        return None
    members = {j_mean, j_sub, j_pow, j_var, j_add, sqrt_index, j_div}
    inner = (mean.output[0], pw.output[0], imp.nodes[j_var].output[0], add.output[0])
    if any(len(imp.consumers.get(t, [])) != 1 for t in inner):
        return None
    match = _scale_shift(imp, x, members, div.output[0], eps)
    if match is None or not all(_along(np.shape(constant_value(imp, c)), axes[0]) for c in match[4:6] if "#" not in c):
        return None
    return (*match, axes == [1])


def _fuse_group_moments(imp) -> None:
    """Replace ``(x - mean(x)) / sqrt(mean(x*x) - mean(x)**2 + eps)`` over the last axis of a ``[N, G,
    -1]`` reshape (ONNX's GroupNormalization function, inlined) by an ``InstanceNormalization`` of unit
    scale and zero shift (the importer's own ``unit_affine``): its scale and shift follow as they are."""
    from onnx import helper

    for x, members, eps in _matches_at_sqrt(imp, _group_moments_match):
        last = max(members)
        imp.done.update(members - {last})
        out = imp.nodes[last].output[0]       # (a scale and a bias by name: the schema wants them; unread)
        imp.nodes[last] = helper.make_node("InstanceNormalization", [x, f"{out}#ones", f"{out}#zeros"], [out],
                                           name=imp.nodes[last].name, epsilon=eps, unit_affine=1)


def _group_moments_match(imp, sqrt_index: int):
    """(x, the pattern's nodes, epsilon) when the Sqrt at ``sqrt_index`` is that of ONNX's
    GroupNormalization function body (``x``: the ``[N, G, -1]`` reshape), else None."""
    j_add = imp.producer(imp.nodes[sqrt_index].input[0])
    add = imp.nodes[j_add] if j_add is not None else None
    if add is None or add.op_type != "Add":
        return None
    var_name = next((n for n in add.input if _scalar_cast(imp, n) is None), None)
    eps = _scalar_cast(imp, _other(add, var_name)) if var_name else None
    var = _made_by(imp, var_name, "Sub") if eps is not None else None
    mean_sq = _made_by(imp, var.input[0], "ReduceMean") if var is not None else None
    sq_mean = _made_by(imp, var.input[1], "Mul") if var is not None else None
    square = _made_by(imp, mean_sq.input[0], "Mul") if mean_sq is not None else None
    if square is None or sq_mean is None or len(set(square.input)) != 1 or len(set(sq_mean.input)) != 1:
        return None
    x, mean = square.input[0], _made_by(imp, sq_mean.input[0], "ReduceMean")
    j_div, div = _single_reader(imp, imp.nodes[sqrt_index].output[0])
    dev = _made_by(imp, div.input[0], "Sub") if div is not None and div.op_type == "Div" else None
    shaped = _made_by(imp, x, "Reshape")
    if mean is None or dev is None or list(dev.input) != [x, mean.output[0]] or mean.input[0] != x or \
            shaped is None or not np.array_equal(np.ravel(constant_value(imp, shaped.input[1])), [0, 0, -1]) or \
            div.input[1] != imp.nodes[sqrt_index].output[0]:
        return None
    if any(_axes(imp, m) not in ([2], [-1]) or not _keeps_dims(m) for m in (mean, mean_sq)):
        return None
    members = {imp.nodes.index(n) for n in (mean, sq_mean, square, mean_sq, var, add, dev)} | {sqrt_index, j_div}
    readers = {mean.output[0]: 2, sq_mean.output[0]: 1, square.output[0]: 1, mean_sq.output[0]: 1,
               var.output[0]: 1, add.output[0]: 1, dev.output[0]: 1}
    if any(len(set(imp.consumers.get(t, []))) != n or not set(imp.consumers[t]) <= members for t, n in readers.items()):
        return None
    return x, members, eps


def _made_by(imp, tensor: str, op: str):
    """The node of type ``op`` that writes ``tensor``, else None."""
    j = imp.producer(tensor)
    return imp.nodes[j] if j is not None and imp.nodes[j].op_type == op else None


def _scalar_cast(imp, name: str) -> Optional[float]:
    """:func:`_scalar` of ``name``, or of the constant a ``Cast`` to it reads."""
    cast = _made_by(imp, name, "Cast")
    return _scalar(imp, cast.input[0] if cast is not None else name)


def _keeps_dims(node) -> bool:
    from onnx import helper

    return all(helper.get_attribute_value(a) == 1 for a in node.attribute if a.name == "keepdims")


def _along(shape: tuple, axis: int) -> bool:
    """Whether a scale or shift of ``shape`` varies along the normalised axis alone: the last
    (``[C]``, ``[1, 1, C]``) or axis 1 of an NCHW image (``[C, 1, 1]``, ``[1, C, 1, 1]``), which
    also tells the pattern over axis 1 from one over tokens."""
    if axis == -1:
        return all(d == 1 for d in shape[:-1])
    return len(shape) in (3, 4) and shape[-2:] == (1, 1) and all(d == 1 for d in shape[:-3])


def _scale_shift(imp, x: str, members: set, out: str, eps: float):
    """Extend a normalisation by the constant ``Mul`` (scale) and ``Add`` (shift, else zeros) that alone
    follow it (without a scale, the channel count for unit weights is not known here: no match)."""
    j, mul = _single_reader(imp, out)
    if mul is None or mul.op_type != "Mul" or not _is_const(imp, _other(mul, out)):
        return None
    gamma = _other(mul, out)
    members.add(j)
    out = mul.output[0]
    j, add = _single_reader(imp, out)
    if add is not None and add.op_type == "Add" and _is_const(imp, _other(add, out)):
        beta = _other(add, out)
        members.add(j)
        out = add.output[0]
    else:
        beta = f"{gamma}#zeros"
        imp._set_const(beta, np.zeros(np.size(constant_value(imp, gamma)), np.float32))
    return x, members, out, float(eps), gamma, beta


def _is_const(imp, name: str) -> bool:
    return name in imp.consts or (name in imp.views and imp.sources[imp.views[name].source].kind == "const") or \
        any(n.op_type == "Constant" and n.output[0] == name for n in imp.nodes)


def constant_value(imp, name: str):
    """The value of a constant: an initializer, a folded value, or a Constant node's output (else
    None), a Constant node read before it is imported too."""
    if name in imp.views and imp.sources[imp.views[name].source].kind == "const":
        return imp.array(name)
    if name in imp.consts:
        return imp.consts[name]
    from onnx import numpy_helper

    node = next((n for n in imp.nodes if n.op_type == "Constant" and n.output[0] == name), None)
    if node is None or node.attribute[0].name not in ("value", "value_float", "value_floats", "value_ints"):
        return None
    at = node.attribute[0]
    if at.name == "value":
        try:
            return numpy_helper.to_array(at.t)
        except Exception:                       # unreadable: no pattern; the Constant's own import refuses it
            return None
    return np.array(at.f if at.name == "value_float" else (list(at.floats) or list(at.ints)))
