"""The ONNX operators the importer understands, one handler each (see :mod:`mapper.onnx_import`).

A handler reads its inputs from the importer (views of IR tensors, or constants), appends the
IR layers the node needs and records a view for each of its outputs; it raises the importer's
one-line error (``imp.fail``) for anything the IR cannot express.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
from fractions import Fraction
from typing import Callable, Optional, Union

import numpy as np
from onnx import helper

from hw.operators import AXIS_MAX, POOL_MAX_COUNT, check_pool_padding, nearest_indices, pool_out_count, pool_out_size
from hw.vector import STAGE_PARAMS, VecOp

from . import onnx_layout as L
from . import views as ir_views
from .ir import (INPUT, VIEW_KINDS, Activation, Add, Concat, Conv2d, Crop, DepthToSpace, LayerNorm, Linear, MatMul, Mul, Pad,
                 PixelReshape, Pool, Resize, Roll, Softmax, SpaceToDepth, conv_out, conv_pads)
from .fusion import is_class_map_resize
from .onnx_layout import View
from .onnx_patterns import constant_value

__all__ = ["HANDLERS", "SUPPORTED_OPS", "VIEW_OPS", "NEVER_FOLD"]

HANDLERS: dict[tuple[str, str], Callable] = {}
#: Operators that only change a view (evaluated on constants as views too, to keep their layout).
VIEW_OPS = frozenset({"Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice",
                      "Split", "Gather", "Expand", "Tile"})
#: Operators never evaluated on constant inputs.
NEVER_FOLD = frozenset({"Constant", "DequantizeLinear", "QuantizeLinear"})
_CUSTOM = "com.vitaccel"


def _op(*names: str, domain: str = ""):
    def register(fn):
        for n in names:
            HANDLERS[(domain, n)] = fn
        return fn
    return register


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _axis(imp, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise imp.fail(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


def _view(imp, name: str) -> View:
    v = imp.value(name)
    if isinstance(v, np.ndarray):
        raise imp.fail(f"input {name!r} is a {v.dtype} tensor; supported: float32 and int8 data")
    return v


def _out(imp, node, v: View, k: int = 0, prior: Optional[View] = None) -> None:
    """Record output ``k`` of a view operator reading view ``prior`` (None: a Concat, where the data
    movement starts anew); a folded scale travels with the values."""
    imp.views[node.output[k]] = v.named(node.output[k], prior.origin if prior is not None else None)
    if node.input and node.input[0] in imp.fold_of:
        imp.fold_of[node.output[k]] = imp.fold_of[node.input[0]]


def _input_list(imp, node, k: int, attr: str) -> Optional[list]:
    """An operand given as input ``k`` (newer opsets) or attribute ``attr`` (older ones; an input that
    the file's opset does not define, an opset-11 ``Split`` given its sizes, is refused with the
    schema's checks, ``onnx_import._check_schema``)."""
    if len(node.input) > k and node.input[k]:
        return [int(x) for x in imp.array(node.input[k]).ravel()]
    a = _attrs(node).get(attr)
    return None if a is None else [int(x) for x in np.ravel(a)]


# ---- constants and layout ----------------------------------------------------------------------

@_op("Constant")
def _constant(imp, node) -> None:
    a = node.attribute[0]
    if a.name == "value":
        arr = imp.tensor_array(a.t, "its value")
    elif a.name in ("value_float", "value_floats"):
        arr = np.array(a.f if a.name == "value_float" else list(a.floats), np.float32)
    elif a.name in ("value_int", "value_ints"):
        arr = np.array(a.i if a.name == "value_int" else list(a.ints), np.int64)
    else:
        raise imp.fail(f"attribute {a.name!r} is not supported; supported: value, value_float(s), value_int(s)")
    imp._set_const(node.output[0], arr, after=imp.layers[-1].name if imp.layers else "")


@_op("Identity", "Dropout")
def _alias(imp, node) -> None:
    if len(node.output) > 1 and node.output[1] in imp.consumers:
        raise imp.fail("its mask output is read; supported: inference (the data output only)")
    if node.op_type == "Dropout" and imp.opset >= 12:
        _check_dropout(imp, node)
    v = _view(imp, node.input[0])
    _out(imp, node, v, prior=v)
    _pass_quantised(imp, node)


def _check_dropout(imp, node) -> None:
    """A Dropout's ``ratio`` in [0, 1) (onnxruntime refuses others when it runs) and its
    ``training_mode`` off, or on with ratio 0: an identity either way, where a ratio above 0 in
    training mode drops elements at random."""
    for k, name in ((1, "ratio"), (2, "training_mode")):
        if len(node.input) > k and node.input[k] and not imp.is_const(node.input[k]):
            raise imp.fail(f"a {name} computed in the network ({node.input[k]!r}); supported: a constant {name}")
    ratio, training = (imp.optional_array(node, k) for k in (1, 2))
    ratio = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
    if not 0 <= ratio < 1:
        raise imp.fail(f"ratio {ratio}; supported: a ratio in [0, 1)")
    if training is not None and bool(np.asarray(training).reshape(-1)[0]) and ratio != 0:
        raise imp.fail(f"training_mode true with ratio {ratio} (it drops elements at random); supported: inference "
                       f"(training_mode false), or ratio 0")


@_op("Cast")
def _cast(imp, node) -> None:
    """To float32, or float16 (a mixed-precision export's): the network computes in float32, int8
    on the accelerator, so a cast between floats changes nothing."""
    if _attrs(node).get("to") not in (1, 10):
        raise imp.fail("a cast of a tensor to a type other than float32 or float16; supported: float32, float16 "
                       "and int8 data")
    v = _view(imp, node.input[0])
    _out(imp, node, v, prior=v)


@_op("Shape")
def _shape(imp, node) -> None:
    a = _attrs(node)
    shape = _view(imp, node.input[0]).shape
    imp.consts[node.output[0]] = np.array(shape[a.get("start", 0):a.get("end", len(shape))], np.int64)


@_op("Reshape")
def _reshape(imp, node) -> None:
    v = _view(imp, node.input[0])
    target = [int(x) for x in imp.array(node.input[1]).ravel()]
    if not _attrs(node).get("allowzero", 0) and 0 in target[len(v.shape):]:
        raise imp.fail(f"shape {target}: a 0 copies the input's dimension at its position, and the input "
                       f"{list(v.shape)} has {len(v.shape)}; supported: zeros within the input's rank")
    if not _attrs(node).get("allowzero", 0):
        target = [v.shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) == 1:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = v.size // known if known else 0
    shuffled = _pixel_shuffle_of(imp, L.reshape(v, target)) if len(target) == 4 else None
    if shuffled is not None:            # PyTorch's pixel_shuffle written out: as its DepthToSpace (CRD)
        return _depth_to_space_of(imp, node, *shuffled, "CRD")
    unshuffled = _pixel_unshuffle_of(L.reshape(v, target)) if len(target) == 4 else None
    if unshuffled is not None and _conv_readers_only(imp, node.output[0]):
        # PyTorch's pixel_unshuffle written out, read by convolutions (an activation or an output
        # takes the view as it is)
        return _space_to_depth_of(imp, node, *unshuffled, channel_major=True)
    _reshape_to(imp, node, v, target)


def _pixel_shuffle_of(imp, v: View) -> Optional[tuple[View, int]]:
    """(the NCHW view of a convolution's or linear layer's whole output, block) when ``v`` is its
    pixel shuffle in mode CRD (the reshape, transpose and reshape of ``torch.pixel_shuffle``)."""
    src = imp.by_name.get(v.source)
    if not isinstance(src, (Conv2d, Linear)) or v.strided:
        return None
    (h, w, c), (_, oc, oh, ow) = v.src_shape, v.shape
    b = oh // h if h and oh % h == 0 else 0
    if b < 2 or (oc, ow) != (c // (b * b), w * b) or c % (b * b):
        return None
    whole = L.nchw(src.name, v.src_shape)
    crd = L.reshape(L.transpose(L.reshape(whole, [1, oc, b, b, h, w]), [0, 1, 4, 2, 5, 3]), list(v.shape))
    return (whole, b) if np.array_equal(L.indices(crd), L.indices(v)) else None


def _pixel_unshuffle_of(v: View) -> Optional[tuple[View, int]]:
    """(the NCHW view of its tensor, block) when ``v`` is its tensor's ``torch.pixel_unshuffle`` (the
    reshape, transpose and reshape of its export)."""
    (h, w, c), (_, oc, oh, ow) = v.src_shape, v.shape
    b = h // oh if oh and h % oh == 0 else 0
    if b < 2 or (oc, ow * b) != (c * b * b, w):
        return None
    whole = L.nchw(v.source, v.src_shape)
    blocks = L.transpose(L.reshape(whole, [1, c, oh, b, ow, b]), [0, 1, 3, 5, 2, 4])
    return (whole, b) if np.array_equal(L.indices(L.reshape(blocks, list(v.shape))), L.indices(v)) else None


def _reshape_to(imp, node, v: View, shape) -> None:
    try:
        _out(imp, node, _settle(imp, L.reshape(v, shape).named(node.output[0], v.origin)), prior=v)
    except ValueError as e:
        raise imp.fail(str(e)) from None
    _pass_quantised(imp, node)


def _settle(imp, v: View) -> View:
    """A view that a Reshape or Concat left unstrided: the layout layer that makes it strided, if
    there is one now (where PyTorch's patterns of roll, window partition and reverse and patch
    merging end; slices are left for their consumer to settle)."""
    if v.strided or imp.sources[v.source].kind == "const":
        return v
    return imp.materialise(v, lambda u: True) or v


@_op("DepthToSpace")
def _depth_to_space(imp, node) -> None:
    """A view, as the reshape, transpose and reshape the operator is defined by (mode DCR, or CRD as
    PyTorch's ``pixel_shuffle``); what moves data is then an IR layer's (``DepthToSpace``: DCR)."""
    a = _attrs(node)
    b, mode = int(a.get("blocksize", 0)), a.get("mode", "DCR")
    if b < 1 or mode not in ("DCR", "CRD"):
        raise imp.fail(f"blocksize {a.get('blocksize')}, mode {mode!r}; supported: a blocksize of at least 1, mode DCR or CRD")
    _depth_to_space_of(imp, node, _view(imp, node.input[0]), b, mode)


def _depth_to_space_of(imp, node, v: View, b: int, mode: str) -> None:
    """``node``'s output: DepthToSpace of ``v`` (NCHW) by ``b`` in ``mode``."""
    if len(v.shape) != 4 or v.shape[1] % (b * b):
        raise imp.fail(f"an input of shape {list(v.shape)}; supported: NCHW with channels a multiple of {b * b}")
    n, c, h, w = v.shape
    reordered = mode == "CRD" and _crd_as_dcr(imp, node, v, b)
    if mode == "DCR" or reordered:
        t = L.transpose(L.reshape(v, [n, b, b, c // (b * b), h, w]), [0, 3, 4, 1, 5, 2])
    else:
        t = L.transpose(L.reshape(v, [n, c // (b * b), b, b, h, w]), [0, 1, 4, 2, 5, 3])
    _reshape_to(imp, node, t, [n, c // (b * b), h * b, w * b])
    if reordered:           # the layer that settled the view reads the reordered rows
        imp.folds[imp.fold_of[node.output[0]]].readers.add(imp.views[node.output[0]].source)


def _crd_as_dcr(imp, node, v: View, b: int) -> bool:
    """Mode CRD (PyTorch's ``pixel_shuffle``) of a convolution's or linear layer's whole output:
    its output channels reordered so that it is DCR, the IR layer's (``onnx_import.reorder_rows``)."""
    src = imp.by_name.get(v.source)
    if not isinstance(src, (Conv2d, Linear)) or not _nchw_full(v) or node.input[0] in imp.fold_of:
        return False
    c = v.shape[1] // (b * b)
    q = np.arange(b * b * c)
    return imp.reorder_rows(src.name, (q % c) * b * b + q // c, node.output[0])


@_op("SpaceToDepth")
def _space_to_depth(imp, node) -> None:
    """Each ``b x b`` block of pixels as channels, block-major (channel ``(i * b + j) * C + c``)."""
    b = int(_attrs(node).get("blocksize", 0))
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    _, _, h, w = x.shape
    if b < 1 or h % b or w % b:
        raise imp.fail(f"blocksize {b} of a {h}x{w} image; supported: a blocksize of at least 1 that divides the "
                       f"height and the width")
    if b == 1:
        return _out(imp, node, x, prior=x)
    _space_to_depth_of(imp, node, x, b, channel_major=False)


def _space_to_depth_of(imp, node, x: View, b: int, channel_major: bool) -> None:
    """``node``'s output: SpaceToDepth of the NCHW image ``x`` by ``b``, its channels block-major (ONNX's)
    or channel-major (``c * b * b + i * b + j``: PyTorch's ``pixel_unshuffle``, for convolutions only)."""
    _, c, h, w = x.shape
    # one pass: a COPY whose write pattern splits each axis at the block (``mapper.layout.partition_view``)
    name = _emit_after(imp, SpaceToDepth, node.output[0], x.source, block=b)
    blocks = L.reshape(L.nchw(name, imp.by_name[name].out_shape), [1, b, b, c, h // b, w // b])
    # channel-major: an order other than the layer's, which the convolutions reading it take in their weights
    order = [0, 3, 1, 2, 4, 5] if channel_major else [0, 1, 2, 3, 4, 5]
    _out(imp, node, L.reshape(L.transpose(blocks, order), [1, b * b * c, h // b, w // b]))


def _conv_readers_only(imp, value: str) -> bool:
    """Whether only ungrouped convolutions of float weights read ``value``, as their input (they can
    take its channels in any order)."""
    readers = imp.consumers.get(value, [])
    return bool(readers) and all(
        j >= 0 and imp.nodes[j].op_type == "Conv" and list(imp.nodes[j].input).index(value) == 0 and
        list(imp.nodes[j].input).count(value) == 1 and _attrs(imp.nodes[j]).get("group", 1) == 1 and
        imp.nodes[j].input[1] not in imp.qconst for j in readers)


@_op("Flatten")
def _flatten(imp, node) -> None:
    v = _view(imp, node.input[0])
    axis = _axis(imp, _attrs(node).get("axis", 1), len(v.shape) + 1)
    _reshape_to(imp, node, v, [math.prod(v.shape[:axis]), math.prod(v.shape[axis:])])


@_op("Squeeze")
def _squeeze(imp, node) -> None:
    v = _view(imp, node.input[0])
    axes = _input_list(imp, node, 1, "axes")
    drop = {_axis(imp, a, len(v.shape)) for a in axes} if axes else {i for i, n in enumerate(v.shape) if n == 1}
    _reshape_to(imp, node, v, [n for i, n in enumerate(v.shape) if i not in drop])


@_op("Unsqueeze")
def _unsqueeze(imp, node) -> None:
    v = _view(imp, node.input[0])
    axes = _input_list(imp, node, 1, "axes") or []
    rank = len(v.shape) + len(axes)
    new = sorted(_axis(imp, a, rank) for a in axes)
    if len(set(new)) != len(new):
        raise imp.fail(f"axes {axes} name an axis twice; supported: distinct axes")
    shape, rest = [], iter(v.shape)
    for i in range(rank):
        shape.append(1 if i in new else next(rest))
    _reshape_to(imp, node, v, shape)


@_op("Transpose")
def _transpose(imp, node) -> None:
    v = _view(imp, node.input[0])
    perm = _attrs(node).get("perm") or list(reversed(range(len(v.shape))))
    if sorted(int(p) for p in perm) != list(range(len(v.shape))):
        raise imp.fail(f"perm {list(perm)} of a {list(v.shape)} tensor; supported: a permutation of its "
                       f"{len(v.shape)} axes")
    _out(imp, node, L.transpose(v, [int(p) for p in perm]), prior=v)
    _pass_quantised(imp, node)


@_op("Slice")
def _slice(imp, node) -> None:
    v = v0 = _view(imp, node.input[0])
    starts = _input_list(imp, node, 1, "starts")
    ends = _input_list(imp, node, 2, "ends")
    axes = _input_list(imp, node, 3, "axes") or list(range(len(starts)))
    steps = _input_list(imp, node, 4, "steps") or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise imp.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps}; supported: one of each "
                       f"per axis sliced")
    if len(axes) == 1:
        v = v0 = _split_axis_outermost(imp, node.input[0], _axis(imp, axes[0], len(v.shape)))
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise imp.fail("a slice with step 0")
        a = _axis(imp, a, len(v.shape))
        start, stop, step = slice(s, e, st).indices(v.shape[a])
        v = L.slice_axis(v, a, start, stop, step)
    _out(imp, node, v, prior=v0)
    _heads_together(imp, node.output[0])
    _pass_quantised(imp, node)


@_op("Split")
def _split(imp, node) -> None:
    v = _view(imp, node.input[0])
    a = _attrs(node)
    axis = _axis(imp, a.get("axis", 0), len(v.shape))
    v = _split_axis_outermost(imp, node.input[0], axis)
    sizes = _input_list(imp, node, 1, "split")
    if "num_outputs" in a and (sizes or a["num_outputs"] != len(node.output)):     # opset 18's
        raise imp.fail(f"num_outputs {a['num_outputs']} for {len(node.output)} outputs"
                       f"{' and split sizes' if sizes else ''}; supported: num_outputs the number of outputs, "
                       f"without split sizes")
    if not sizes:
        n = len(node.output)
        chunk = -(-v.shape[axis] // n)
        sizes = [min(chunk, v.shape[axis] - i * chunk) for i in range(n)]
    if sum(sizes) != v.shape[axis] or len(sizes) != len(node.output) or min(sizes) < 0:
        raise imp.fail(f"split {sizes} into {len(node.output)} outputs of an axis of {v.shape[axis]}; supported: "
                       f"a size for each output, not negative, summing to the axis")
    start = 0
    for k, size in enumerate(sizes):
        v = _view(imp, node.input[0])           # (its channels may have moved for the part before)
        _out(imp, node, L.slice_axis(v, axis, start, start + size, 1), k, prior=v)
        _heads_together(imp, node.output[k])
        start += size


def _heads_together(imp, name: str) -> None:
    """q, k and v interleaved per head (timm's ``AttentionCl`` in MaxViT and CoAtNet,
    EfficientFormer, LeViT: a linear layer's rows ``[head][q k v][d]``), pulled apart as they are
    split: when ONNX value ``name``, a slice of such a layer's output that no layer reads yet, holds
    the same channels of every head along an axis of heads and one of channels, the layer's rows
    are reordered so that those channels of all heads are consecutive, as the IR's products read
    them.  (A strided slice of channels, ``x[:, ::2]``, shows no such axes and is left alone.)"""
    v = imp.views[name]
    src, c = _unread_producer(imp, v), v.src_shape[2]
    if len(v.shape) < 4 or src is None or getattr(src, "groups", 1) != 1:
        return
    ch = L.indices(v) % c
    blocks = _head_blocks(np.unique(ch))
    order = _heads_order(*blocks, c) if blocks is not None and _split_by_heads(ch, *blocks) else None
    if order is not None:
        imp.permute_channels(v.source, order)


def _split_axis_outermost(imp, name: str, axis: int) -> View:
    """ONNX value ``name`` once its channels are reordered so that ``axis``, one of the axes that run
    through each pixel's channels, is the outermost of them: YOLOv5's and YOLOv7's Detect
    (``sigmoid(conv(x))`` viewed ``[1, na, ny, nx, no]``, split along ``no``), whose parts are then
    channel slices (channels ``(c, a)`` in place of ``(a, c)``).  The convolution's rows are
    reordered, and the activations after it compute each channel alike; only when they are read by
    nothing else (``_heads_together`` reorders a producer itself)."""
    v = _view(imp, name)
    chain = _activations_chain(imp, v.source)
    h, w, c = v.src_shape
    if chain is None or not L.covers(v):
        return v
    idx = L.indices(v)
    through_channels = [a for a in range(idx.ndim) if idx.shape[a] > 1 and not np.diff(idx // c, axis=a).any()]
    if axis not in through_channels:
        return v
    order = [a for a in range(idx.ndim) if a not in through_channels] + \
        [axis] + [a for a in through_channels if a != axis]
    rows = idx.transpose(order).reshape(h * w, c)
    old_of = rows[0] % c
    if np.array_equal(old_of, np.arange(c)) or not np.array_equal(rows, np.arange(h * w)[:, None] * c + old_of):
        return v                    # in that order already, or not the same order in every pixel
    imp.permute_channels(chain[0], old_of, also=chain[1:])
    return _view(imp, name)


def _activations_chain(imp, source: str) -> Optional[list[str]]:
    """``[producer, activation, ...]`` ending at layer ``source`` (one activation or more), when the
    producer is a linear or ungrouped convolution whose rows no fold holds and each layer is read
    by the next alone, ``source`` by none yet; else None."""
    chain = [source]
    while isinstance(imp.by_name.get(chain[0]), Activation):
        chain.insert(0, imp.by_name[chain[0]].inputs[0])
    prod = imp.by_name.get(chain[0])
    if len(chain) < 2 or not isinstance(prod, (Linear, Conv2d)) or getattr(prod, "groups", 1) != 1 \
            or imp._folded(prod.name, 0, prod.out_shape[2]):
        return None
    readers = {n: [layer.name for layer in imp.layers if n in layer.inputs] for n in chain}
    if readers[source] or any(readers[a] != [b] for a, b in zip(chain, chain[1:])):
        return None
    return chain


def _unread_producer(imp, v: View) -> Optional[Union[Linear, Conv2d]]:
    """The linear or convolution writing ``v``'s tensor when its rows may still be reordered: no
    layer reads it yet and no fold holds its rows; else None."""
    src = imp.by_name.get(v.source)
    if (not isinstance(src, (Linear, Conv2d)) or imp._folded(v.source, 0, v.src_shape[2])
            or any(v.source in l.inputs for l in imp.layers)):
        return None
    return src


def _head_blocks(chans: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """(first channel, heads, width, period) when channels ``chans`` (sorted) are two or more blocks
    of two or more consecutive channels at a constant period, else None."""
    starts = np.concatenate([chans[:1], chans[1:][np.diff(chans) != 1]])
    heads, width = len(starts), len(chans) // max(len(starts), 1)
    if heads < 2 or width < 2 or width * heads != len(chans):
        return None
    period = int(starts[1] - starts[0])
    if not np.array_equal(chans, (starts[:, None] + np.arange(width)).ravel()) \
            or not np.array_equal(starts, starts[0] + period * np.arange(heads)):
        return None
    return int(starts[0]), heads, width, period


def _split_by_heads(ch: np.ndarray, first: int, heads: int, width: int, period: int) -> bool:
    """Whether the channels ``ch`` of a view step by ``period`` along an axis of ``heads`` and by one
    along an axis of ``width``: a split of each head's block, not any strided set of channels."""
    def steps(n: int, step: int) -> bool:
        return any(ch.shape[a] == n and np.all(np.diff(ch, axis=a) == step) for a in range(ch.ndim))
    return steps(heads, period) and steps(width, 1)


def _heads_order(first: int, heads: int, width: int, period: int, c: int) -> Optional[np.ndarray]:
    """The order of ``c`` channels that puts ``heads`` blocks of ``width`` channels at ``period``
    from channel ``first`` together: within the region the heads span, every channel by (before,
    in or after its head's block; head; place in the head), the order of the parts kept."""
    base = min(first, c - heads * period)        # the latest region holding every block
    if base < 0 or base + period < first + width:
        return None
    r = np.arange(heads * period)
    lo = first - base
    part = (r % period >= lo).astype(int) + (r % period >= lo + width)
    region = base + r[np.lexsort((r % period, r // period, part))]
    return np.concatenate([np.arange(base), region, np.arange(base + heads * period, c)])


@_op("Gather")
def _gather(imp, node) -> None:
    v = _view(imp, node.input[0])
    axis = _axis(imp, _attrs(node).get("axis", 0), len(v.shape))
    if not imp.is_const(node.input[1]):
        raise imp.fail("gathering with computed indices; supported: constant indices (a view)")
    idx = imp.array(node.input[1]).astype(np.int64)
    n = v.shape[axis]
    if idx.size and not (-n <= idx.min() and idx.max() < n):
        raise imp.fail(f"indices from {idx.min()} to {idx.max()} along an axis of {n}; supported: -{n} to {n - 1}")
    _out(imp, node, L.take(v, axis, idx), prior=v)
    _heads_together(imp, node.output[0])
    _pass_quantised(imp, node)


@_op("Tile")
def _tile(imp, node) -> None:
    """``Tile`` by constant repeats (``k.repeat(1, r, 1, 1)``: GQA's kv heads repeated): a view."""
    v = _view(imp, node.input[0])
    if not imp.is_const(node.input[1]):
        raise imp.fail("computed repeats; supported: constant repeats (a view)")
    reps = [int(x) for x in imp.array(node.input[1]).ravel()]
    if len(reps) != len(v.shape) or min(reps) < 1:
        raise imp.fail(f"repeats {reps} of a {list(v.shape)} tensor; supported: one repeat of at least 1 for each axis")
    _out(imp, node, L.from_indices(v.source, v.src_shape, np.tile(L.indices(v), reps)), prior=v)


@_op("Expand")
def _expand(imp, node) -> None:
    v = _view(imp, node.input[0])
    try:
        _out(imp, node, L.expand(v, [int(x) for x in imp.array(node.input[1]).ravel()]), prior=v)
    except ValueError as e:
        raise imp.fail(str(e)) from None


# ---- MAC layers ------------------------------------------------------------------------------------

def _nchw_prefix(v: View) -> bool:
    """``v`` is ``[1, C', H, W]``: the first ``C'`` channels of its HWC tensor as an NCHW image."""
    h, w, c = v.src_shape
    return (len(v.shape) == 4 and v.shape[0] == 1 and v.shape[2:] == (h, w) and v.shape[1] <= c
            and L.is_form(v, View(v.source, v.src_shape, v.shape, (h * w * c, 1, w * c, c), 0)))


def _nchw_full(v: View) -> bool:
    return _nchw_prefix(v) and v.shape[1] == v.src_shape[2]


def _conv_padding(imp, a: dict, kernel, size, stride):
    """The node's zero padding: one int, or (top, left, bottom, right) where the sides differ
    (``stride`` one, or one per axis)."""
    mode = a.get("auto_pad", "NOTSET")
    strides = stride if isinstance(stride, (list, tuple)) else (stride, stride)
    if mode in ("NOTSET", "VALID"):
        pads = list(a.get("pads", [0, 0, 0, 0])) if mode == "NOTSET" else [0, 0, 0, 0]
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for k, n, stride in zip(kernel, size, strides):
            total = max((-(-n // stride) - 1) * stride + k - n, 0)
            pads.append((total // 2, total - total // 2) if mode == "SAME_UPPER" else (total - total // 2, total // 2))
        pads = [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
    else:
        raise imp.fail(f"auto_pad {mode!r}; supported: NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if len(pads) != 4 or min(pads) < 0:
        raise imp.fail(f"pads {pads}; supported: four values (top, left, bottom, right), none negative")
    return int(pads[0]) if len(set(pads)) == 1 else tuple(int(p) for p in pads)


def _equal_pair(imp, values, what: str) -> int:
    values = list(values)
    if len(set(values)) != 1:
        raise imp.fail(f"{what} {values} differ between height and width; supported: equal {what}")
    return int(values[0])


def _fold_batchnorm(imp, node, w: np.ndarray, b: Optional[np.ndarray]):
    """Fold a BatchNormalization that alone reads the convolution's output into its weights: (its
    output, the weights, the bias, the factor per output channel or None)."""
    out = node.output[0]
    j, bn = imp.only_consumer(out, "BatchNormalization")
    if bn is None or not all(imp.known(n) for n in bn.input[1:5]):
        return out, w, b, None
    inv, offset = _batchnorm_affine(imp, bn, w.shape[0])
    bias = b.astype(np.float64) if b is not None else np.zeros(w.shape[0])
    imp.done.add(j)
    folded = (w * inv[:, None, None, None]).astype(np.float32)
    return bn.output[0], folded, (bias * inv + offset).astype(np.float32), inv


def _batchnorm_affine(imp, bn, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """An inference BatchNormalization ``bn`` over ``channels`` as ``x * a + b`` per channel: (a, b);
    refusals name ``bn``, not the convolution it folds into."""
    with _reading(imp, bn):
        return _checked_batchnorm_affine(imp, bn, channels)


def _checked_batchnorm_affine(imp, bn, channels: int) -> tuple[np.ndarray, np.ndarray]:
    if len(bn.output) > 1 and any(bn.output[1:]):
        raise imp.fail("a BatchNormalization in training mode; supported: inference")
    scale, shift, mean, var = (imp.array(n).astype(np.float64) for n in bn.input[1:5])
    eps = _attrs(bn).get("epsilon", 1e-5)
    if any(p.shape != (channels,) for p in (scale, shift, mean, var)):
        raise imp.fail(f"scale, bias, mean and variance of shapes {[list(p.shape) for p in (scale, shift, mean, var)]} "
                       f"for {channels} channels; supported: one value a channel")
    low = np.flatnonzero(~(var + eps > 0))      # a negative epsilon too, as onnxruntime computes it, where this holds
    if low.size:
        c = low[0]
        raise imp.fail(f"variance {var[c]:g} of channel {c} plus epsilon {eps:g} is {var[c] + eps:g}, not above 0 (the "
                       f"normalisation divides by its square root); supported: variances above -epsilon")
    a = scale / np.sqrt(var + eps)
    return a, shift - mean * a


def _fold_into_weight_q(imp, layer: str, inv: Optional[np.ndarray]) -> None:
    """A folded BatchNormalization's factors ``inv`` (per output channel, repeated over the layer's
    when it has more) in a QDQ weight of ``layer``: their sizes to its scales, their signs to its
    int8 values (a -128 negated is 127)."""
    if inv is None or layer not in imp.weight_q:
        return
    wq, s_w = imp.weight_q[layer]
    inv = np.tile(inv, wq.shape[0] // len(inv))
    sign = np.sign(inv).reshape([-1] + [1] * (wq.ndim - 1))             # a factor 0 zeroes its channel
    flipped = np.clip(wq.astype(np.int16) * sign, -127, 127).astype(np.int8)
    imp.weight_q[layer] = (flipped, np.asarray(s_w, np.float64) * np.where(inv == 0, 1, np.abs(inv)))


@_op("BatchNormalization")
def _batchnorm(imp, node) -> None:
    """One that no convolution before it takes (DenseNet's and pre-activation ResNets', after a
    concatenation or an add): ``x * a + b`` per channel, a product and an add by constants."""
    if not all(imp.is_const(n) for n in node.input[1:5]):
        raise imp.fail("computed statistics or parameters; supported: constants")
    if _batchnorm_into_producer(imp, node):
        return
    shape, y = _view(imp, node.input[0]).shape, node.output[0]
    rank = len(shape)
    a, offset = _batchnorm_affine(imp, node, shape[1] if rank > 1 else 0)
    for suffix, values in (("scale", a), ("shift", offset)):
        imp._set_const(f"{y}.{suffix}", values.reshape([-1] + [1] * (rank - 2)).astype(np.float32))
    _binary(imp, helper.make_node("Mul", [node.input[0], f"{y}.scale"], [f"{y}.scaled"], name=f"{node.name}.scale"))
    _binary(imp, helper.make_node("Add", [f"{y}.scaled", f"{y}.shift"], [y], name=node.name))


def _batchnorm_into_producer(imp, node) -> bool:
    """A BatchNormalization of a linear layer's or convolution's whole output, reached only through
    view operators (LeViT's ``LinearNorm``: ``Linear``, a reshape to ``[N, C]``, ``BatchNorm1d``, a
    reshape back) and read by nothing else, folded into its weights and bias; False otherwise."""
    v = _view(imp, node.input[0])
    src, c = imp.by_name.get(v.source), v.src_shape[2]
    # a ReLU folded into the layer comes before the norm: relu(x) * a + b is no relu(x * a + b)
    if not isinstance(src, (Linear, Conv2d)) or src.relu or len(v.shape) < 2 or v.shape[1] != c \
            or not L.covers(v) or imp._folded(src.name, 0, c) or any(src.name in l.inputs for l in imp.layers):
        return False
    ch = np.moveaxis(L.indices(v) % c, 1, -1)
    if not np.array_equal(ch, np.broadcast_to(np.arange(c), ch.shape)) or not _read_only_through_views(imp, node.input[0]):
        return False
    a, offset = _batchnorm_affine(imp, node, c)
    w = imp.weights[src.name]
    w["weight"] = (w["weight"] * a.reshape([-1] + [1] * (w["weight"].ndim - 1))).astype(np.float32)
    w["bias"] = (w["bias"] * a + offset).astype(np.float32)
    _fold_into_weight_q(imp, src.name, a)
    if not src.bias:
        folded = dataclasses.replace(src, bias=True)
        imp.layers[imp.layers.index(src)], imp.by_name[src.name] = folded, folded
    _out(imp, node, v, prior=v)
    return True


def _read_only_through_views(imp, value: str) -> bool:
    """Whether ONNX value ``value`` comes from the node that computed its tensor through view
    operators only, each value on the way read by one node and no graph output."""
    while True:
        if len(imp.consumers.get(value, [])) != 1:
            return False
        j = imp.producer(value)
        if j is None or imp.nodes[j].op_type not in VIEW_OPS:
            return j is not None
        value = imp.nodes[j].input[0]


@_op("InstanceNormalization")
def _instance_norm(imp, node) -> None:
    """Each channel normalised over its pixels; of a ``[N, G, -1]`` reshape of an image, each group of
    its channels over their pixels (PyTorch's GroupNorm export): :func:`_normalised` of the image."""
    v = imp.act(node.input[0])
    if _attrs(node).get("unit_affine"):             # an inlined GroupNormalization's (mapper.onnx_patterns)
        scale, bias = np.ones(v.shape[1], np.float32), np.zeros(v.shape[1], np.float32)
    else:
        scale, bias = _norm_params(imp, node, v.shape[1] if len(v.shape) > 1 else 0)
    group = _channel_groups(v)
    if group is None:
        raise imp.fail(f"an input of shape {list(v.shape)} that is not an image's channels, or groups of "
                       f"consecutive channels, each with all its pixels; supported: an NCHW image or its "
                       f"reshape to [N, groups, -1]")
    out = _normalised(imp, node, _image_of(imp, node.input[0], v), group, np.repeat(scale, group),
                      np.repeat(bias, group), float(_attrs(node).get("epsilon", 1e-5)))
    imp.views[node.output[0]] = v.on(_view(imp, out).source, v.src_shape)


@_op("GroupNormalization")
def _group_norm(imp, node) -> None:
    """ONNX's own GroupNorm (opset 18: a scale and a bias per group; 21: per channel)."""
    v = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    c, groups = v.shape[1], int(_attrs(node).get("num_groups", 0))
    if groups < 1 or c % groups:
        raise imp.fail(f"num_groups {groups} for {c} channels; supported: a divisor of the channels")
    per = groups if len(imp.array(node.input[1]).reshape(-1)) == groups and groups != c else c
    scale, bias = _norm_params(imp, node, per)
    out = _normalised(imp, node, _image_of(imp, node.input[0], v), c // groups, np.repeat(scale, c // per),
                      np.repeat(bias, c // per), float(_attrs(node).get("epsilon", 1e-5)))
    imp.views[node.output[0]] = _view(imp, out).named(node.output[0])


@_op("LRN")
def _lrn(imp, node) -> None:
    """AlexNet's and GoogLeNet's local response normalisation, ``x / (bias + alpha/size * sum of x^2
    over size neighbouring channels) ** beta``, from existing layers: the square (a table), the sum
    over the neighbours (a 1x1 convolution of a band of weights ``alpha/size``, ``bias`` its bias),
    the power ``-beta`` (a table) and a product."""
    a, y = _attrs(node), node.output[0]
    v = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    size, alpha, beta, bias = int(a.get("size", 0)), a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    if size < 1 or bias <= 0 or alpha < 0:
        raise imp.fail(f"size {size}, bias {bias}, alpha {alpha}; supported: a size of at least 1, a positive bias, "
                       f"alpha not negative")
    c, below = v.shape[1], (size - 1) // 2          # ONNX's window: floor((size-1)/2) channels below, ceil above
    band = _channel_band(np.full(size, alpha / size, np.float32), c, below, size - 1 - below)
    imp._set_const(f"{y}.band", band.reshape(c, c, 1, 1))
    imp._set_const(f"{y}.bias", np.full(c, bias, np.float32))
    x = _image_of(imp, node.input[0], v)
    square = _part(imp, node, "Pow", [x, _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square")
    summed = _part(imp, node, "Conv", [square, f"{y}.band", f"{y}.bias"], f"{y}.sum")
    factor = _part(imp, node, "Pow", [summed, _scalar_const(imp, f"{y}.beta", -float(beta))], f"{y}.factor")
    out = _part(imp, node, "Mul", [x, factor], f"{y}.normalised")
    imp.views[y] = _view(imp, out).named(y)


#: Added to a sum of magnitudes before its reciprocal, and to a sum of squares under its root: an
#: all-zero row (a pixel that a ReLU zeroed) then gives 0, as onnxruntime's LpNormalization does,
#: not 0 * inf = NaN; far below any int8 step, it changes no other value.
LP_NORM_EPS = 1e-24


@_op("LpNormalization")
def _lp_norm(imp, node) -> None:
    """``x / ||x||_p`` along ``axis`` (p 1 or 2), from existing layers: ``|x|`` or ``x ** 2`` (tables),
    the sum along the axis (``ReduceSum``: over an image's channels a 1x1 convolution of ones, over its
    rows or columns a pooling), ``1 / (sum + eps)`` or ``rsqrt(sum + eps)`` (tables; ``LP_NORM_EPS``)
    and the product, the factor broadcast along the axis."""
    a, x, y = _attrs(node), node.input[0], node.output[0]
    p, rank = int(a.get("p", 2)), len(imp.act(x).shape)
    if p not in (1, 2):
        raise imp.fail(f"p {p}; supported: 1 and 2")
    axis = _axis(imp, a.get("axis", -1), rank)
    if p == 1:
        powered = _part(imp, node, "Abs", [x], f"{y}.magnitude", handler=_table_function)
    else:
        powered = _part(imp, node, "Pow", [x, _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square")
    summed = powered if imp.act(x).shape[axis] == 1 else \
        _part(imp, node, "ReduceSum", [powered], f"{y}.sum", axes=[axis], keepdims=1, handler=_reduce_axes)
    if p == 1:
        summed = _part(imp, node, "Add", [summed, _scalar_const(imp, f"{y}.eps", LP_NORM_EPS)], f"{y}.sum_eps")
        factor = _part(imp, node, "Reciprocal", [summed], f"{y}.factor", handler=_table_function)
    else:
        factor = _part(imp, node, "Rsqrt", [summed], f"{y}.factor",
                       handler=lambda imp, n: _elementwise_unary(imp, n, "rsqrt", (LP_NORM_EPS,)))
    _part(imp, node, "Mul", [x, factor], y)


def _norm_params(imp, node, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not all(imp.is_const(x) for x in node.input[1:3]):
        raise imp.fail("a computed scale or bias; supported: constants")
    scale, bias = (imp.array(x).astype(np.float32).reshape(-1) for x in node.input[1:3])
    if scale.shape != (n,) or bias.shape != (n,):
        raise imp.fail(f"a scale of shape {list(scale.shape)} and a bias of shape {list(bias.shape)} for {n} "
                       f"channels or groups; supported: one value each")
    return scale, bias


def _channel_groups(v: View) -> Optional[int]:
    """``k`` when channel ``j`` of ``v`` (axis 1) is channels ``j*k .. (j+1)*k - 1`` of its image at
    every pixel, each element once, else None."""
    h, w, c = v.src_shape
    if len(v.shape) < 2 or v.shape[0] != 1 or c % v.shape[1] or not L.covers(v):
        return None
    k = c // v.shape[1]
    idx = L.indices(v).reshape(v.shape[1], -1)
    ok = idx.shape[1] == k * h * w and np.all(idx % c // k == np.arange(v.shape[1])[:, None])
    return k if ok else None


def _image_of(imp, name: str, v: View) -> str:
    """An ONNX value, ``name`` with ``.image`` appended, holding ``v``'s tensor as an NCHW image (a
    folded scale travels with it)."""
    image = f"{name}.image"
    imp.views[image] = L.nchw(v.source, v.src_shape)
    if name in imp.fold_of:
        imp.fold_of[image] = imp.fold_of[name]
    return image


def _normalised(imp, node, x: str, k: int, scale: np.ndarray, bias: np.ndarray, eps: float,
                pixels: bool = True) -> str:
    """Image ``x`` normalised over each group of ``k`` channels and their pixels, then ``* scale +
    bias`` per channel, from the vector unit's layers: the mean over the pixels (pooling), over the
    group (a 1x1 convolution of weights 1/k), ``x - mean``, its square (a table), their mean alike,
    ``1 / sqrt(var + eps)`` (a table) and products.  Each step is int8, so a channel whose variance
    is far below the largest one's loses precision (an int8 variance): ``make run`` says how much.
    Without ``pixels``, each pixel's groups on their own (no pooling; the group's mean a grouped
    1x1 convolution, ``c k`` MACs a pixel).  Returns the value holding the result."""
    y, c = node.output[0], len(scale)

    def mean(value: str, what: str) -> str:
        if not pixels:
            imp._set_const(f"{y}.{what}.group_weight", np.full((c, k, 1, 1), 1 / k, np.float32))
            return _part(imp, node, "Conv", [value, f"{y}.{what}.group_weight"], f"{y}.{what}.group", group=c // k)
        m = _part(imp, node, "ReduceMean", [value], f"{y}.{what}", axes=[2, 3], keepdims=1, handler=_reduce_axes)
        if k == 1:
            return m
        group = f"{y}.{what}.group_weight"
        imp._set_const(group, np.kron(np.eye(c // k), np.full((k, k), 1 / k)).reshape(c, c, 1, 1).astype(np.float32))
        return _part(imp, node, "Conv", [m, group], f"{y}.{what}.group")

    centred = _part(imp, node, "Sub", [x, mean(x, "mean")], f"{y}.centred")
    var = mean(_part(imp, node, "Pow", [centred, _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square"), "variance")
    factor = _part(imp, node, "Rsqrt", [var], f"{y}.rsqrt",
                   handler=lambda imp, n: _elementwise_unary(imp, n, "rsqrt", (eps,)))
    out = _part(imp, node, "Mul", [centred, factor], f"{y}.normalised")
    for what, op, values, neutral in (("scale", "Mul", scale, 1), ("shift", "Add", bias, 0)):
        if np.any(values != neutral):
            imp._set_const(f"{y}.{what}", values.reshape(c, 1, 1))
            out = _part(imp, node, op, [out, f"{y}.{what}"], f"{y}.{what}.out")
    return out


def _fold_relu(imp, out: str) -> tuple[str, bool]:
    j, relu = imp.only_consumer(out, "Relu")
    if relu is None:
        return out, False
    imp.done.add(j)
    return relu.output[0], True


def _check_kernel_shape(imp, node, w: np.ndarray) -> None:
    """Refuse a ``kernel_shape`` attribute other than the weights' spatial dims (onnxruntime does)."""
    given = _attrs(node).get("kernel_shape")
    if given is not None and [int(k) for k in given] != list(w.shape[2:]):
        raise imp.fail(f"kernel_shape {[int(k) for k in given]} contradicts its weights {node.input[1]!r} of shape "
                       f"{list(w.shape)} (a kernel of {list(w.shape[2:])}); kernel_shape must be the weights' "
                       f"spatial dims, or left out")


@_op("Conv")
def _conv(imp, node) -> None:
    a = _attrs(node)
    w = imp.array(node.input[1]).astype(np.float32)
    _check_kernel_shape(imp, node, w)
    b = imp.optional_array(node, 2)
    if w.ndim == 3:
        if _along_one_pixel(imp.act(node.input[0])):
            return _conv_along_channels(imp, node, w, b)
        return _conv_of_sequence(imp, node, w)
    if w.ndim != 4:
        raise imp.fail(f"a {w.ndim - 2}-D convolution; supported: 2-D convolutions, 1-D ones along a pixel's channels")
    dilation = _equal_pair(imp, a.get("dilations", [1, 1]), "dilations")
    if b is not None and b.shape != (w.shape[0],):
        raise imp.fail(f"a bias of shape {list(b.shape)} for {w.shape[0]} output channels; supported: one value "
                       f"per output channel")
    v = imp.act(node.input[0])
    groups = a.get("group", 1)
    image = _nchw_prefix if groups == 1 else _nchw_full      # a grouped convolution reads all its input's channels
    x, w = _conv_input(imp, node, v, w, image, groups)
    if x is None:
        if _conv_of_rows(imp, node, v, w, b, a):
            return
        x = imp.need(v, image, "an NCHW image")            # refused: names the layout
    h, wd, _ = x.src_shape
    strides = [int(v) for v in a.get("strides", [1, 1])]
    if len(strides) != 2 or min(strides) < 1:
        raise imp.fail(f"strides {strides}; supported: two strides of at least 1")
    # strides that differ: the convolution at their common divisor, then every (sh/t, sw/t)-th pixel
    stride = math.gcd(*strides)
    pad = _conv_padding(imp, a, [dilation * (k - 1) + 1 for k in w.shape[2:]], (h, wd), strides)
    if w.shape[1] * groups != x.shape[1]:
        raise imp.fail(f"weights of shape {list(w.shape)} with group {groups} do not match {x.shape[1]} input channels")
    out, w, b, inv = _fold_batchnorm(imp, node, w, b)
    out, relu = _fold_relu(imp, out)
    name = imp.layer_name(out if stride == max(strides) else f"{out}/stride{stride}")
    shape = imp.emit(Conv2d, name, in_ch=x.shape[1], out_ch=w.shape[0], in_h=h, in_w=wd, kernel=tuple(w.shape[2:]),
                     stride=stride, padding=pad, groups=groups, bias=b is not None, relu=relu, inputs=(x.source,),
                     dilation=dilation)
    _conv_weights(imp, node, name, w, b, inv)
    if stride != max(strides):
        (sy, sx), (top, left, bottom, right), (kh, kw) = strides, conv_pads(pad), w.shape[2:]
        size = (conv_out(h, kh, sy, top, dilation, padding_end=bottom), conv_out(wd, kw, sx, left, dilation, padding_end=right))
        name = _emit_after(imp, Crop, out, name, out_h=size[0], out_w=size[1], step=(sy // stride, sx // stride))
        shape = imp.by_name[name].out_shape
    imp.views[out] = L.nchw(name, shape)


def _conv_input(imp, node, v: View, w: np.ndarray, image: Callable[[View], bool], groups: int):
    """(the image a convolution reads, as ``image`` accepts it, or None; its OIHW weights over that
    image's channels).  Channels picked from an image (BGR to RGB, pixel_unshuffle's order) are
    picked by the float weights of an ungrouped convolution: every channel in another order always
    (no layout layer, a channel shuffle, copies them), a subset where no layout layer lays it out."""
    if image(v):
        return v, w
    gathered = _channel_gather(v) if groups == 1 and node.input[1] not in imp.qconst else None
    reordered = gathered is not None and sorted(gathered[1]) == list(range(gathered[0].shape[1]))
    x = None if reordered else imp.materialise(v, image)
    if x is None and gathered is not None:
        return gathered[0], _gathered_weights(w, gathered[1], gathered[0].shape[1])
    return x, w


def _conv_weights(imp, node, name: str, w: np.ndarray, b: Optional[np.ndarray], inv, repeat: int = 1) -> None:
    """Layer ``name``'s weights (OIHW ``w`` as the IR's OHWI), bias and QDQ weight from a Conv node's,
    a folded BatchNormalization's factors ``inv`` in the QDQ weight; all ``repeat`` times along the
    output channels (a grouped convolution applying them to each group)."""
    def tile(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.tile(a, (repeat,) + (1,) * (a.ndim - 1)))

    imp.weights[name] = {"weight": tile(w.transpose(0, 2, 3, 1)),
                         "bias": tile((b if b is not None else np.zeros(w.shape[0])).astype(np.float32))}
    wq = _weight_q(imp, node.input[1], lambda q: q.transpose(0, 2, 3, 1), axis=0)
    if wq is not None:
        imp.weight_q[name] = (tile(wq[0]), tile(wq[1]))
    _fold_into_weight_q(imp, name, inv)


def _channel_gather(v: View) -> Optional[tuple[View, np.ndarray]]:
    """(its image, the image's channel each channel of ``v`` is) when ``v`` is an NCHW image's
    pixels with channels picked from it in any order (``x[:, ::-1]``, a Gather of channels), else None."""
    h, w, c = v.src_shape
    if len(v.shape) != 4 or v.shape[0] != 1 or tuple(v.shape[2:]) != (h, w):
        return None
    idx = L.indices(v).reshape(v.shape[1], h * w)
    if not np.array_equal(idx // c, np.broadcast_to(np.arange(h * w), idx.shape)) or (idx % c != idx[:, :1] % c).any():
        return None
    return L.nchw(v.source, v.src_shape), idx[:, 0] % c


def _gathered_weights(w: np.ndarray, picked: np.ndarray, c: int) -> np.ndarray:
    """OIHW weights over channels ``picked`` of a ``c``-channel image as weights over the image."""
    out = np.zeros((w.shape[0], c) + w.shape[2:], np.float32)
    np.add.at(out, (slice(None), picked), w)
    return out


def _conv_along_channels(imp, node, w: np.ndarray, b: Optional[np.ndarray]) -> None:
    """A 1-D convolution of one channel along the channels of one pixel (ECA's ``Conv1d(1, 1, k)``
    over a pooled ``[1, 1, C]``): a 1x1 ``Conv2d`` of the pixel whose ``C' x C`` weights hold the
    kernel on a band (C' C MACs instead of C' k, on one pixel)."""
    a, v = _attrs(node), imp.act(node.input[0])
    c = v.src_shape[2]
    if w.shape[:2] != (1, 1) or a.get("group", 1) != 1:
        raise imp.fail(f"a 1-D convolution of weights {list(w.shape)} along the channels of one pixel; supported: "
                       f"one channel in, one out (ECA's)")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise imp.fail(f"auto_pad {a['auto_pad']!r} on a 1-D convolution; supported: NOTSET (explicit pads), VALID")
    (stride,), (dilation,) = a.get("strides", [1]), a.get("dilations", [1])
    lo, hi = a.get("pads", [0, 0]) if a.get("auto_pad", "NOTSET") == "NOTSET" else (0, 0)
    k, y = w.shape[2], node.output[0]
    if min(stride, dilation) < 1 or min(lo, hi) < 0 or conv_out(c, k, stride, lo, dilation, padding_end=hi) < 1:
        raise imp.fail(f"strides {stride}, dilations {dilation}, pads {[lo, hi]} over {c} channels; supported: "
                       f"positive strides and dilations, pads not negative, room for one output")
    band = _channel_band(w[0, 0], c, lo, hi, stride, dilation)
    n = len(band)
    imp._set_const(f"{y}.band", band.reshape(n, c, 1, 1))
    imp._set_const(f"{y}.bias", np.full(n, b[0] if b is not None else 0, np.float32))
    o = _view(imp, _part(imp, node, "Conv", [_image_of(imp, node.input[0], v), f"{y}.band", f"{y}.bias"],
                         f"{y}.image"))
    imp.views[y] = L.from_indices(o.source, o.src_shape, np.arange(n).reshape(1, 1, n)).named(y)


def _along_one_pixel(v: View) -> bool:
    """Whether ``v`` is ``[1, 1, C]``: the channels of a tensor of one pixel as one sequence (ECA's)."""
    h, w, c = v.src_shape
    return len(v.shape) == 3 and tuple(v.shape[:2]) == (1, 1) and h * w == 1 and \
        np.array_equal(L.indices(v).ravel(), np.arange(c))


def _conv_of_sequence(imp, node, w: np.ndarray) -> None:
    """A 1-D convolution over ``[1, C, L]`` (wav2vec's feature extractor, a conformer's depthwise
    convolution): the 2-D convolution of the sequence as the image it is, ``1 x L`` (kernel ``1 x k``)
    or ``L x 1`` (tokens: kernel ``k x 1``), the node's attributes given the other axis' identity."""
    v = imp.act(node.input[0])
    image = _sequence_image(imp, v) if len(v.shape) == 3 else None
    if image is None:
        raise imp.fail(f"a 1-D convolution of weights {list(w.shape)} over a {list(v.shape)} input; supported: "
                       f"[1, C, L] whose C are a tensor's channels and L a row or column of its pixels (tokens "
                       f"transposed, a [1, C, L] input), [1, 1, C] along one pixel's channels (ECA's)")
    x, axis = image
    a = _attrs(node)
    # the other axis has one pixel in and out whatever its stride and dilation: the same as the
    # sequence's, a convolution of equal strides (no crop) and one dilation
    unit = {"kernel_shape": 1, "strides": int(a.get("strides", [1])[0]), "dilations": int(a.get("dilations", [1])[0])}
    attrs = {k: _on_axis(axis, a.get(k, [w.shape[2] if k == "kernel_shape" else 1])[0], unit[k]) for k in unit}
    lo, hi = a.get("pads", [0, 0])
    attrs["pads"] = [lo, 0, hi, 0] if axis == 2 else [0, lo, 0, hi]
    attrs.update({k: a[k] for k in ("auto_pad", "group") if k in a})
    ins = [f"{node.input[0]}#2d", f"{node.input[1]}#2d", *node.input[2:]]
    imp.views[ins[0]] = x
    imp._set_const(ins[1], np.expand_dims(w, 2 if axis == 3 else 3))
    if node.input[1] in imp.qconst:     # a QDQ weight's int8 values, as the 2-D weights
        q, scale, q_axis = imp.qconst[node.input[1]]
        imp.qconst[ins[1]] = (np.expand_dims(q, 2 if axis == 3 else 3), scale, q_axis)
    before = set(imp.views)
    _conv(imp, helper.make_node("Conv", ins, list(node.output), name=node.name, **attrs))
    for name in set(imp.views) - before:    # the output (or a folded norm's or ReLU's) as a sequence again
        o = imp.views[name]
        imp.views[name] = L.reshape(o, [1, o.shape[1], o.shape[axis]]).named(name, o.origin)


def _on_axis(axis: int, value: int, other: int) -> list[int]:
    """A 1-D attribute's ``value`` on image axis ``axis`` (2: height, 3: width), ``other`` on the other."""
    return [int(value), other] if axis == 2 else [other, int(value)]


def _sequence_image(imp, v: View) -> Optional[tuple[View, int]]:
    """(the NCHW image ``[1, C, L]`` is, the axis its length runs along) when it is a row ``1 x L`` or a
    column ``L x 1`` of a tensor's, as it lies or as a layout layer lays it, else None."""
    _, c, n = v.shape
    forms = [(L.reshape(v, [1, c, 1, n]), 3), (L.reshape(v, [1, c, n, 1]), 2)]
    for u, axis in forms:
        if _nchw_prefix(u):
            return u, axis
    for u, axis in forms:
        found = imp.materialise(u, _nchw_prefix)
        if found is not None:
            return found, axis
    return None


def _channel_band(kernel: np.ndarray, c: int, lo: int, hi: int, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """A 1-D convolution by ``kernel`` along ``c`` channels (zero-padded by ``lo`` and ``hi``) as the
    ``[outputs, c]`` matrix a 1x1 convolution applies: ECA's, LRN's sum over neighbours."""
    n = conv_out(c, len(kernel), stride, lo, dilation, padding_end=hi)
    band = np.zeros((n, c), np.float32)
    for o in range(n):
        for j, weight in enumerate(kernel):
            if 0 <= o * stride + j * dilation - lo < c:
                band[o, o * stride + j * dilation - lo] += weight
    return band


def _conv_of_rows(imp, node, v: View, w: np.ndarray, b: Optional[np.ndarray], a: dict, linear: bool = False) -> bool:
    """A pointwise convolution whose input channels (axis 1) are rows of consecutive channels of a
    tensor, G rows a pixel (YOLOv8's DFL reads ``[1, 16, 4, A]`` of an ``A x 64`` tensor), or a
    ``linear`` layer of such rows (its last axis: NanoDet's integral, ``softmax(x.reshape(1, A, 4,
    8)) @ project``, GFL's of ``x.reshape(-1, 8)``): a 1x1 ``Conv2d`` of that tensor in G groups that
    each apply the weights, viewed as the node's output.  False when the node is no such convolution."""
    pointwise = w.shape[2:] == (1, 1) and a.get("group", 1) == 1 and not any(a.get("pads", [])) \
        and set(a.get("strides", [1])) == {1}
    k, conv, axis = w.shape[1], not linear, len(v.shape) - 1 if linear else 1
    rank_ok = len(v.shape) == 4 if conv else len(v.shape) >= 2 and node.input[1] not in imp.qconst
    if not pointwise or not rank_ok:
        return False
    rows = L.channel_rows(v, axis, k)
    if rows is None or not L.reads_every_element(v):     # some rows: through the channel slice holding them
        sliced = imp.materialise(v, lambda u: L.covers(u) and L.channel_rows(u, axis, k) is not None)
        if sliced is not None:
            v, rows = sliced, L.channel_rows(sliced, axis, k)
    if rows is None:
        return False
    h, wd, c = v.src_shape
    out, w, b, inv = _fold_batchnorm(imp, node, w, b) if conv else (node.output[0], w, b, None)
    out, relu = _fold_relu(imp, out)
    n, groups = w.shape[0], c // k
    name = imp.layer_name(out)
    shape = imp.emit(Conv2d, name, in_ch=c, out_ch=groups * n, in_h=h, in_w=wd, kernel=(1, 1), stride=1, padding=0,
                     groups=groups, bias=b is not None, relu=relu, inputs=(v.source,))
    _conv_weights(imp, node, name, w, b, inv, repeat=groups)
    idx = rows[..., None] * n + np.arange(n)
    imp.views[out] = L.from_indices(name, shape, np.moveaxis(idx, -1, 1) if conv else idx)
    return True


@_op("ConvTranspose")
def _conv_transpose(imp, node) -> None:
    """A sub-pixel convolution: output phase ``(ry, rx)`` (pixels ``(q*s + ry, p*s + rx)``) is a
    convolution of the input with some of the kernel's taps, so the s*s phases are one ``Conv2d`` to
    ``s*s*K`` channels (a phase's missing taps zero), a ``DepthToSpace(s)`` and a ``Crop``.  Grouped
    (a depthwise upsampler's), a grouped convolution per phase, concatenated phase-major instead."""
    w = imp.array(node.input[1]).astype(np.float32)                 # [C, K/group, kh, kw]
    _check_kernel_shape(imp, node, w)
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    a = _attrs(node)
    s, top, left, out_h, out_w = _transposed_geometry(imp, a, w, x.src_shape)
    (h, wd, c), (kh, kw), g = x.src_shape, w.shape[2:], int(a.get("group", 1))
    k = w.shape[1] * g
    (th, ph, rows), (tw, pw, cols) = _phases(kh, s, top, h, out_h), _phases(kw, s, left, wd, out_w)
    # a BatchNormalization and a ReLU that alone read it fold into the phases' convolutions, as into a Conv
    y, wk, b, inv = _fold_batchnorm(imp, node, _transposed_oihw(w, g), imp.optional_array(node, 2))
    y, relu = _fold_relu(imp, y)
    b = np.zeros(k, np.float32) if b is None else b
    q = imp.qconst.get(node.input[1])
    if q is not None and q[1].size > 1 and q[2] != 1:
        raise imp.fail("weight scales along an axis other than the output channels; supported: per output channel")
    # a QDQ weight: its int8 values, its scales per output channel (the file's along axis 1, per group)
    wq = None if q is None else (_transposed_oihw(q[0], g), np.tile(np.broadcast_to(q[1], (k // g,)), g))
    geometry = dict(in_ch=c, in_h=h, in_w=wd, relu=relu, inputs=(x.source,))
    if g == 1:
        last = imp.layer_name(f"{y}/phases")
        imp.emit(Conv2d, last, out_ch=s * s * k, kernel=(th, tw), padding=(ph[0], pw[0], ph[1], pw[1]), **geometry)
        every = [(ry, rx, (0, th), (0, tw)) for ry, rx in np.ndindex(s, s)]
        _phase_weights(imp, last, wk, b, wq, inv, rows, cols, every)
    else:
        last = _grouped_phases(imp, y, wk, b, wq, inv, (s, g, (th, ph, rows), (tw, pw, cols)), geometry)
    if s > 1:
        last = _emit_after(imp, DepthToSpace, f"{y}/shuffle", last, block=s)
    if imp.by_name[last].out_shape[:2] != (out_h, out_w):
        last = _emit_after(imp, Crop, y, last, out_h=out_h, out_w=out_w)
    imp.views[y] = L.nchw(last, imp.by_name[last].out_shape)


def _transposed_oihw(w: np.ndarray, g: int) -> np.ndarray:
    """A transposed convolution's ``[C, K/g, kh, kw]`` weights as a convolution's ``[K, C/g, kh, kw]``."""
    c, kg, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(g, c // g, kg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * kg, c // g, kh, kw))


def _phase_weights(imp, layer: str, w: np.ndarray, b: np.ndarray, wq, inv, rows, cols, phases) -> None:
    """Layer ``layer``'s weights: for each phase ``(ry, rx, (y0, y1), (x0, x1))``, in order, the
    taps of OIHW ``w`` at that phase's kernel rows ``y0..y1-1`` and columns ``x0..x1-1`` (the others
    zero); QDQ ``wq`` (int8 OIHW, a scale per output channel) alike."""
    def phased(kernel: np.ndarray) -> np.ndarray:    # [K, C', kh, kw] -> [phases * K, y1 - y0, x1 - x0, C']
        (_, (y0, y1), (x0, x1)), n = phases[0][1:], kernel.shape[0]
        out = np.zeros((len(phases) * n, y1 - y0, x1 - x0, kernel.shape[1]), kernel.dtype)
        for i, (ry, rx, (oy, _), (ox, _)) in enumerate(phases):
            for (ty, ky), (tx, kx) in ((r, t) for r in rows[ry].items() for t in cols[rx].items()):
                out[i * n:(i + 1) * n, ty - oy, tx - ox] = kernel[:, :, ky, kx]
        return out

    imp.weights[layer] = {"weight": phased(w), "bias": np.tile(b, len(phases)).astype(np.float32)}
    if wq is not None:
        imp.weight_q[layer] = (phased(wq[0]), np.tile(wq[1], len(phases)).astype(np.float64))
        _fold_into_weight_q(imp, layer, inv)


def _grouped_phases(imp, y: str, w: np.ndarray, b: np.ndarray, wq, inv, geo, conv: dict) -> str:
    """A grouped transposed convolution's phases: a grouped ``Conv2d`` per phase (the group keeps
    each output channel's inputs, which one convolution to ``s*s*K`` phase-major channels cannot),
    each of only its taps, their outputs concatenated phase-major (what ``DepthToSpace`` reads); the
    last layer's name."""
    s, g, (th, ph, rows), (tw, pw, cols) = geo
    names = []
    for ry, rx in np.ndindex(s, s):
        (y0, y1, top, bottom), (x0, x1, left, right) = _phase_span(rows[ry], th, ph), _phase_span(cols[rx], tw, pw)
        name = imp.layer_name(f"{y}/phase{ry}_{rx}" if s > 1 else y)
        imp.emit(Conv2d, name, out_ch=len(b), kernel=(y1 - y0, x1 - x0), padding=(top, left, bottom, right), groups=g,
                 **conv)
        _phase_weights(imp, name, w, b, wq, inv, rows, cols, [(ry, rx, (y0, y1), (x0, x1))])
        names.append(name)
    if len(names) == 1:
        return names[0]
    name = imp.layer_name(f"{y}/phases")
    imp.emit(Concat, name, inputs=tuple(names))
    return name


def _phase_span(taps: dict, t: int, pad: tuple[int, int]) -> tuple[int, int, int, int]:
    """One phase's kernel along an axis, only its taps: (first tap, past the last, padding before,
    after) of the phases' common ``t`` taps and padding ``pad``; all of them when fewer would need a
    negative padding (or the phase has no tap)."""
    if taps:
        lo, hi = min(taps), max(taps) + 1
        if pad[0] - lo >= 0 and pad[1] - (t - hi) >= 0:
            return lo, hi, pad[0] - lo, pad[1] - (t - hi)
    return 0, t, pad[0], pad[1]


def _emit_after(imp, cls, tensor: str, source: str, **kw) -> str:
    """A layer of ``cls`` named after ``tensor`` reading layer ``source``; its name."""
    name = imp.layer_name(tensor)
    imp.emit(cls, name, inputs=(source,), **kw)
    return name


def _transposed_geometry(imp, a: dict, w: np.ndarray, src_shape) -> tuple[int, int, int, int, int]:
    """(stride, top and left padding, output height and width) of a transposed convolution, or its refusal."""
    if w.ndim != 4:
        raise imp.fail(f"a {w.ndim - 2}-D transposed convolution; supported: 2-D")
    for what, bad in (("dilations", any(d != 1 for d in a.get("dilations", [1]))),
                      ("output_shape", "output_shape" in a), ("auto_pad", a.get("auto_pad", "NOTSET") != "NOTSET")):
        if bad:
            raise imp.fail(f"{what} {a.get(what)}; supported: dilation 1, pads and output_padding")
    (h, wd, c), (kh, kw), g = src_shape, w.shape[2:], a.get("group", 1)
    if w.shape[0] != c:
        raise imp.fail(f"weights of shape {list(w.shape)} for {c} input channels")
    if g < 1 or c % g:
        raise imp.fail(f"group {g} for {c} input channels; supported: a divisor of the input channels")
    s = _equal_pair(imp, a.get("strides", [1, 1]), "strides")
    pads, extra = list(a.get("pads", [0, 0, 0, 0])), list(a.get("output_padding", [0, 0]))
    if s < 1 or len(pads) != 4 or min(pads) < 0 or len(extra) != 2 or min(extra) < 0:
        raise imp.fail(f"strides {a.get('strides')}, pads {pads}, output_padding {extra}; supported: strides of at "
                       f"least 1, four pads and two output paddings, none negative")
    top, left, bottom, right = pads
    out_h, out_w = (h - 1) * s - top - bottom + kh + extra[0], (wd - 1) * s - left - right + kw + extra[1]
    if out_h < 1 or out_w < 1 or max(extra) >= s:
        raise imp.fail(f"an output of {out_h}x{out_w} pixels (pads {[top, left, bottom, right]}, output_padding "
                       f"{extra}, stride {s}); supported: at least one pixel, output_padding below the stride")
    return s, top, left, out_h, out_w


def _phases(k: int, s: int, pad: int, n_in: int, n_out: int) -> tuple[int, tuple[int, int], list[dict]]:
    """Along one axis of a transposed convolution: the phase convolution's kernel, its padding
    (before, after) and, per output phase ``r``, ``{its tap: the kernel tap}``.  Output ``q*s + r`` is
    ``sum_m x[q + a - m] * w[m*s + b]`` with ``(a, b) = divmod(r + pad, s)``: input offsets ``a - m``."""
    offsets = []
    for r in range(s):
        a, b = divmod(r + pad, s)
        offsets.append({a - m: m * s + b for m in range(max(0, -(-(k - b) // s)))})
    lo = min(0, *(d for o in offsets for d in o))
    taps = max(d for o in offsets for d in o) - lo + 1
    after = max(0, -(-n_out // s) - 1 + taps - n_in + lo)
    return taps, (-lo, after), [{d - lo: kk for d, kk in o.items()} for o in offsets]


def _fold_bias(imp, out: str, n: int, rank: int) -> tuple[str, Optional[np.ndarray]]:
    """A per-channel constant Add that alone reads a linear's output: its bias."""
    j, add = imp.only_consumer(out, "Add")
    if add is None:
        return out, None
    other = add.input[1] if add.input[0] == out else add.input[0]
    if not imp.known(other) or not imp.is_const(other):
        return out, None
    arr = imp.array(other)
    if arr.shape[-1:] != (n,) or any(d != 1 for d in arr.shape[:-1]) or arr.ndim > rank:
        return out, None
    imp.done.add(j)
    return add.output[0], arr.reshape(n).astype(np.float32)


def _linear(imp, node, x_name: str, weight: np.ndarray, bias: Optional[np.ndarray], wq=None) -> None:
    """A linear layer ``x @ weight.T + bias`` over the rows of ``x`` (weight ``[N, K]``); of a
    flattened image (VGG's classifier), :func:`_dense_over_image`."""
    n, k = weight.shape
    v = imp.act(x_name)
    order = _flattened_order(v)
    if order:
        return _dense_over_image(imp, node, x_name, weight, bias, wq, order)
    rows_ok = lambda u: L.rows_view(u, k, n, "?", u.src_shape) is not None     # noqa: E731
    x = v if rows_ok(v) else imp.materialise(v, rows_ok)
    if x is None:
        if bias is None and _conv_of_rows(imp, node, v, weight[:, :, None, None], None, {}, linear=True):
            return
        if _tokens_mixed(imp, node, v, weight, bias, wq):
            return
        x = imp.need(v, rows_ok, f"rows of {k} channels, every token once")       # refused: names the layout
    h, w, _ = x.src_shape
    out = node.output[0]
    if bias is None:
        out, bias = _fold_bias(imp, out, n, len(x.shape))
    out, relu = _fold_relu(imp, out)
    name = imp.layer_name(out)
    shape = imp.emit(Linear, name, tokens=h * w, in_features=k, out_features=n, bias=bias is not None, relu=relu,
                     inputs=(x.source,))
    imp.weights[name] = {"weight": np.ascontiguousarray(weight, np.float32),
                         "bias": (bias if bias is not None else np.zeros(n)).astype(np.float32)}
    if wq is not None:
        imp.weight_q[name] = wq
    imp.views[out] = L.rows_view(x, k, n, name, shape)


def _tokens_mixed(imp, node, v: View, weight: np.ndarray, bias: Optional[np.ndarray], wq=None) -> bool:
    """A linear over the tokens (MLP-Mixer's, ResMLP's and gMLP's ``linear(x^T)^T``): ``v``
    transposed is a token tensor, so ``(v @ weight.T)^T = weight @ v^T`` is a product of a Constant
    (``weight``: N tokens of K channels) and that tensor; False if ``v^T`` is none."""
    if len(v.shape) < 2:
        return False
    perm = tuple(range(len(v.shape) - 2)) + (len(v.shape) - 1, len(v.shape) - 2)
    def ok(u: View) -> bool:                # the whole token tensor, in its order
        return u.size == math.prod(u.src_shape) and L.is_form(u, L.reshape(L.tokens(u.source, u.src_shape), u.shape))

    vt = L.transpose(v, perm)
    vt = vt if ok(vt) else imp.materialise(vt, ok)
    if vt is None:
        return False
    y = L.transpose(_constant_times(imp, node, weight, vt, _one_scale(imp, wq and wq[1])), perm)
    if bias is not None:
        const = imp.constant_layer(node.output[0] + ".bias", _aligned_constant(y, bias), None)
        name = imp.layer_name(node.output[0])
        y = y.on(name, imp.emit(Add, name, inputs=(y.source, const)))
    imp.views[node.output[0]] = y.named(node.output[0])
    return True


def _flattened_order(v: View) -> Optional[str]:
    """``"chw"`` when ``v`` is ``[1, C*H*W]`` (or ``[C*H*W]``), an NCHW image of more than one pixel
    flattened (PyTorch's ``Flatten``); ``"hwc"`` when it is an NHWC one (Keras' ``Flatten`` after
    tf2onnx); else None."""
    h, w, c = v.src_shape
    if h * w == 1 or v.shape not in ((1, h * w * c), (h * w * c,)) or not L.covers(v):
        return None
    idx = L.indices(v).ravel()
    if np.array_equal(idx, np.arange(h * w * c).reshape(h * w, c).T.ravel()):
        return "chw"
    return "hwc" if np.array_equal(idx, np.arange(h * w * c)) else None


def _dense_over_image(imp, node, x_name: str, weight: np.ndarray, bias: Optional[np.ndarray], wq,
                      order: str = "chw") -> None:
    """``flatten(x) @ weight.T + bias`` of an image flattened in ``order`` (``"chw"``, ``"hwc"``): a
    convolution whose kernel is the image (no padding), to a 1x1 image of N channels."""
    v = imp.act(x_name)
    (h, w, c), n = v.src_shape, weight.shape[0]
    if weight.shape[1] != h * w * c:
        raise imp.fail(f"weights of shape {list(weight.shape)} for {h * w * c} inputs (a flattened {c}x{h}x{w} image); "
                       f"supported: [N, {h * w * c}]")
    image = _image_of(imp, x_name, v)
    kernel = f"{node.output[0]}.kernel"
    def to_nchw(a: np.ndarray) -> np.ndarray:          # the weights as an [N, C, H, W] kernel
        return a.reshape(n, c, h, w) if order == "chw" else a.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    imp._set_const(kernel, np.ascontiguousarray(to_nchw(weight), np.float32))
    inputs = [image, kernel] + ([f"{node.output[0]}.bias"] if bias is not None else [])
    if bias is not None:
        imp._set_const(inputs[2], np.asarray(bias, np.float32).reshape(n))
    # the convolution computes the node's output, so that a BatchNormalization (ArcFace's features) and
    # a ReLU alone reading it fold in as into a Conv; ``out`` is the last value it then computes
    _, bn = imp.only_consumer(node.output[0], "BatchNormalization")
    _part(imp, node, "Conv", inputs, node.output[0], kernel_shape=[h, w])
    conv = imp.layers[-1].name
    out = imp.last_value_of(conv)
    if wq is not None:
        q, scale = wq
        imp.weight_q[conv] = (np.ascontiguousarray(to_nchw(q).transpose(0, 2, 3, 1)), scale)
        if bn is not None and out != node.output[0]:
            _fold_into_weight_q(imp, conv, _batchnorm_affine(imp, bn, n)[0])
    imp.views[out] = L.reshape(_view(imp, out), v.shape[:-1] + (n,)).named(out)


@_op("Gemm")
def _gemm(imp, node) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise imp.fail("transA=1; supported: an activation times constant weights (transA=0)")
    if not imp.is_const(node.input[1]):
        raise imp.fail("a product of two activations; supported: constant weights (use MatMul for attention)")
    b = imp.array(node.input[1]).astype(np.float32)
    shapes = [list(imp.value(node.input[0]).shape), list(b.shape)]
    if any(len(shape) != 2 for shape in shapes):
        raise imp.fail(f"A and B of shapes {shapes[0]} and {shapes[1]}; supported: 2-D A and B, as Gemm defines them "
                       f"(MatMul multiplies tensors of more dimensions)")
    weight = (b if a.get("transB", 0) else b.T) * np.float32(a.get("alpha", 1.0))
    bias = imp.optional_array(node, 2)
    if bias is not None:
        bias = np.asarray(bias, np.float32) * np.float32(a.get("beta", 1.0))
        if bias.size not in (1, weight.shape[0]) or any(d != 1 for d in bias.shape[:-1]):
            raise imp.fail(f"a bias of shape {list(bias.shape)}; supported: one value per output channel")
        bias = np.broadcast_to(bias.reshape(-1), (weight.shape[0],)).copy()
    wq = _weight_q(imp, node.input[1], (lambda q: q) if a.get("transB", 0) else (lambda q: q.T),
                   axis=0 if a.get("transB", 0) else 1)
    _linear(imp, node, node.input[0], weight, bias, wq)


@_op("MatMul")
def _matmul(imp, node) -> None:
    if imp.is_const(node.input[1]):
        b = imp.array(node.input[1]).astype(np.float32)
        while b.ndim > 2 and b.shape[0] == 1:
            b = b[0]
        vector = b.ndim == 1                # x @ v (NanoDet's integral): x @ v[:, None], that axis dropped
        if b.ndim not in (1, 2) or (vector and node.input[1] in imp.qconst):
            raise imp.fail(f"constant weights of shape {list(b.shape)}; supported: a [K, N] matrix or a float [K] vector")
        b = b.reshape(-1, 1) if vector else b
        _linear(imp, node, node.input[0], np.ascontiguousarray(b.T), None,
                _weight_q(imp, node.input[1], lambda q: q.reshape(b.shape).T, axis=1))
        if vector:
            layer = imp.layers[-1].name
            out = imp.last_value_of(layer)
            imp.views[out] = L.reshape(imp.views[out], imp.views[out].shape[:-1]).named(out)
        return
    b = imp.act(node.input[1])
    if imp.is_const(node.input[0]):
        qc = imp.qconst.get(node.input[0])
        scale = _one_scale(imp, qc and qc[1])
        imp.views[node.output[0]] = _constant_times(imp, node, imp.array(node.input[0]), b, scale)
        return
    imp.views[node.output[0]] = _product(imp, node, imp.act(node.input[0]), b)


def _one_scale(imp, scales) -> Optional[float]:
    """The scale of a QDQ weight that a product reads as its constant operand (an int8 tensor of one
    scale, so the file's int8 values are kept only with one scale), None for a float weight."""
    if scales is None:
        return None
    distinct = np.unique(np.asarray(scales, np.float64))
    if distinct.size > 1:
        raise imp.fail(f"a QDQ weight of {distinct.size} scales (per channel) read as a product's constant operand; "
                       f"supported: one scale (the operand is an int8 tensor of one scale), or float weights")
    return float(distinct[0])


def _constant_times(imp, node, const: np.ndarray, b: View, scale: Optional[float] = None) -> View:
    """``const @ b``: a product whose first operand is a Constant layer of ``M`` tokens, each batch
    item's ``K`` values side by side in its channels (as a product reads per-head operands); a QDQ
    weight's one ``scale`` is kept, so its int8 values are the file's."""
    if const.ndim < 2 or len(b.shape) < 2 or const.shape[-1] != b.shape[-2]:
        raise imp.fail(f"operands of shapes {list(const.shape)} and {list(b.shape)}; supported: [..., M, K] x "
                       f"[..., K, N]")
    try:
        a = np.broadcast_to(np.asarray(const, np.float32), b.shape[:-2] + const.shape[-2:])
    except ValueError:
        raise imp.fail(f"a constant of shape {list(const.shape)} times an activation of shape {list(b.shape)}; "
                       f"supported: a constant whose batch dimensions broadcast to the activation's") from None
    m, k = a.shape[-2:]
    items = a.reshape(-1, m, k)
    h, w, _ = b.src_shape
    rows = (h, w) if m == h * w else (m, 1)         # an image like b's when as many tokens (token mixing)
    data = np.ascontiguousarray(items.transpose(1, 0, 2).reshape(rows + (-1,)))
    name = imp.constant_layer(node.output[0] + ".constant", data, None)
    if scale is not None:
        imp.act_scales[name] = scale
    idx = np.arange(m)[None, :, None] * data.shape[2] + np.arange(len(items))[:, None, None] * k + np.arange(k)
    return _product(imp, node, L.from_indices(name, data.shape, idx.reshape(a.shape)), b)


def _product(imp, node, a: View, b: View, swap: bool = True) -> View:
    """``a @ b``, or ``(b^T @ a^T)^T`` when the operands are laid out as the IR's products read the
    transposed ones (GCNet's ``x @ softmax``: an image's channels times a row of pixel weights), or
    when both orders can be read and the output is transposed so that its rows vary fastest (XCiT's
    ``(attn @ v)`` of ``[heads, d, N]``, permuted to tokens: its transposed product's rows are the
    tokens)."""
    a, b = _batch_broadcast(imp, a, b)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    ia, ib = L.indices(a).reshape(-1, m, k), L.indices(b).reshape(-1, k, n)
    plan = _product_plan(a.src_shape, b.src_shape, ia, ib)
    perm = tuple(range(len(a.shape) - 2)) + (len(a.shape) - 1, len(a.shape) - 2)
    if (plan is None or _rows_read_innermost(imp, node, len(a.shape))) and swap and \
            _product_plan(b.src_shape, a.src_shape, ib.transpose(0, 2, 1), ia.transpose(0, 2, 1)) is not None:
        bt_at = _product(imp, node, L.transpose(b, perm), L.transpose(a, perm), swap=False)
        return L.transpose(bt_at, perm)                                     # (b^T a^T)^T
    if plan is None:
        done = _product_by_runs(imp, node, a, b, ia, ib)
        done = done if done is not None or not swap else _product_of_transposed(imp, node, a, b, ia, ib)
        if done is not None:
            return done
        a, b = _windows_interleaved(imp, a, b) or (a, b)
        ia, ib = L.indices(a).reshape(-1, m, k), L.indices(b).reshape(-1, k, n)
        plan = _product_plan(a.src_shape, b.src_shape, ia, ib)
    if plan is None:
        raise imp.fail("its operands are not laid out as the IR's products read them (per head, K contiguous "
                       "channels of the tokens; windows interleaved in the tokens; mapper/ir.py MatMul)")
    windows, heads, wi, hi, a_off, b_off, layout, b_repeat = plan
    name = imp.layer_name(node.output[0])
    shape = imp.emit(MatMul, name, batch=windows * heads, m=m, k=k, n=n, inputs=(a.source, b.source),
                     windows=windows, a_offset=a_off, b_offset=b_off, b_layout=layout, b_repeat=b_repeat)
    rows = np.arange(m)[None, :, None] * windows + wi[:, None, None]
    idx = rows * (heads * n) + hi[:, None, None] * n + np.arange(n)[None, None, :]
    return L.from_indices(name, shape, idx.reshape(a.shape[:-1] + (n,)))


def _windows_interleaved(imp, a: View, b: View) -> Optional[tuple[View, View]]:
    """``a`` and ``b``, each read instead from a layout layer of its tensor where that makes the pair
    readable by a product (the layers made then), or None.  Windows in a column, one window wide: a
    PyTorch window partition leaves them in the map's raster order, one after another (timm's and
    Hugging Face's Swin at 56x28 export no data moved), where the IR's products read them interleaved
    in the tokens; a ``WindowPartition`` of the tensor (the linear's output) interleaves them."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    first_ok = lambda u: _first_operand_plan(u.src_shape, L.indices(u).reshape(-1, m, k)) is not None  # noqa: E731
    def second_ok(first: View) -> Callable[[View], bool]:
        ia = L.indices(first).reshape(-1, m, k)
        return lambda u: _product_plan(first.src_shape, u.src_shape, ia, L.indices(u).reshape(-1, k, n)) is not None

    found_a = a if first_ok(a) else imp.layout_match(a, first_ok)
    if found_a is None or (b if second_ok(found_a)(b) else imp.layout_match(b, second_ok(found_a))) is None:
        return None
    if found_a is not a:
        a, b = _linear_on_windows(imp, [a, b], first_ok) or (imp.materialise(a, first_ok, f"{a.source}.windows"), b)
    ok = second_ok(a)
    if not ok(b):
        b = (_linear_on_windows(imp, [b], ok) or [imp.materialise(b, ok, f"{b.source}.windows")])[0]
    return a, b


def _linear_on_windows(imp, views: list[View], ok: Callable[[View], bool]) -> Optional[list[View]]:
    """``views`` of a linear layer's output (the first one's), which no layer reads yet, once that
    linear reads a window partition of its input instead, if the first is then ``ok`` (every view of
    its output moves alike): the partition moves the linear's input, as the zoo's Swin does (timm's C
    channels, not the qkv's 3C; one for HF's query, key and value linears, whose scale then folds
    into the query rows).  None otherwise, nothing changed."""
    lin = imp.by_name.get(views[0].source)
    if not isinstance(lin, Linear) or any(lin.name in l.inputs for l in imp.layers):
        return None
    h, w, _ = shape = imp.sources[lin.name].shape
    for win in (d for d in range(math.gcd(h, w), 1, -1) if math.gcd(h, w) % d == 0):
        cand = L.Candidate("window_partition", lin.name, shape, {"window": win})
        moved = [L.match_layout(u, cand, lin.name) if u.source == lin.name else u for u in views]
        if moved[0] is None or not ok(moved[0]):
            continue
        held = {name: L.match_layout(u, cand, lin.name) for name, u in imp.views.items() if u.source == lin.name}
        if None in moved or None in held.values():
            return None
        _partition_input(imp, lin, win)
        imp.views.update({name: dataclasses.replace(u, origin=imp.views[name].origin) for name, u in held.items()})
        return moved
    return None


def _partition_input(imp, lin: Linear, win: int) -> None:
    """Linear layer ``lin`` reading a window partition (of side ``win``) of its input, made before it."""
    x = lin.inputs[0]
    xs = imp.sources[x].shape
    windows = L.from_indices(x, xs, ir_views.window_partition(np.arange(math.prod(xs)).reshape(xs), win))
    with _reading(imp, helper.make_node("Identity", [], [f"{x}.windows"], name=f"{x}.windows")):   # reads no fold
        part = imp.materialise(windows, lambda u: np.array_equal(L.indices(u).ravel(), np.arange(u.size)),
                               f"{x}.windows").source                  # its output in the partition's order
    moved = dataclasses.replace(lin, inputs=(part,))
    moved = dataclasses.replace(moved, out_shape=tuple(moved.infer([imp.sources[part].shape])))
    layers = imp.layers
    at = next(i for i, l in enumerate(layers) if l.name == lin.name)
    layers[at] = moved
    made = next(i for i, l in enumerate(layers) if l.name == part)
    if made > at:                       # just made (else made for an earlier linear of the same input)
        layers.insert(at, layers.pop(made))
    imp.by_name[lin.name] = moved
    imp.sources[lin.name] = dataclasses.replace(imp.sources[lin.name], shape=moved.out_shape)


def _rows_read_innermost(imp, node, rank: int) -> bool:
    """Whether the product ``node``'s output is read by one ``Transpose`` alone that makes its rows
    (axis ``rank - 2``) the innermost axis."""
    _, t = imp.only_consumer(node.output[0], "Transpose")
    perm = _attrs(t).get("perm") if t is not None else None
    return perm is not None and len(perm) == rank and perm[-1] == rank - 2


def _product_of_transposed(imp, node, a: View, b: View, ia: np.ndarray, ib: np.ndarray) -> Optional[View]:
    """``a @ b`` where each of ``a``'s heads is laid out transposed, its rows a head's channels and
    its columns the tokens, the product summing over the tokens (XCiT's cross-covariance ``q @ k^T``
    of ``[heads, d, N]`` views): ``a`` first transposed per head by the product of an identity
    Constant and ``a`` read as keys (``M x M x K`` MACs a head, as many as the product's own when
    ``M = N``), then the product.  None when neither product reads its operands so."""
    nb, m, k = ia.shape
    eye = np.arange(m)[None, :, None] * (nb * m) + np.arange(nb)[:, None, None] * m + np.arange(m)
    moved = np.arange(m)[None, :, None] * (nb * k) + np.arange(nb)[:, None, None] * k + np.arange(k)
    if _product_plan((m, 1, nb * m), a.src_shape, eye, ia) is None or \
            _product_plan((m, 1, nb * k), b.src_shape, moved, ib) is None:
        return None
    part = helper.make_node("MatMul", [], [f"{node.output[0]}.transposed"], name=node.name)   # names its layers
    transposed = _constant_times(imp, part, np.eye(m, dtype=np.float32), a)
    return _product(imp, node, transposed, b, swap=False)


def _batch_broadcast(imp, a: View, b: View) -> tuple[View, View]:
    """``a`` and ``b`` with their batch dimensions broadcast as ONNX's MatMul broadcasts them (MQA's one
    key head of ``[1, 1, N, d]`` times queries of ``[1, heads, N, d]``): views, no data moved."""
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise imp.fail(f"operands of shapes {list(a.shape)} and {list(b.shape)}; supported: [..., M, K] x [..., K, N]")
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise imp.fail(f"operands of shapes {list(a.shape)} and {list(b.shape)}; supported: [..., M, K] x [..., K, N] "
                       f"with batch dimensions that broadcast") from None
    return (L.expand(a, batch + a.shape[-2:]) if a.shape[:-2] != batch else a,
            L.expand(b, batch + b.shape[-2:]) if b.shape[:-2] != batch else b)


#: The most products one ``MatMul`` node of shared heads becomes (``_product_by_runs``).
SHARED_HEADS_MAX_PRODUCTS = 64


def _product_by_runs(imp, node, a: View, b: View, ia: np.ndarray, ib: np.ndarray) -> Optional[View]:
    """A product whose heads share an operand's head (MQA's and GQA's keys and values, repeated by an
    ``Expand``, a ``Tile`` or the product's broadcast): one IR product for each run of consecutive
    batch items that one reads (each q head alone where a kv head is shared), every run reading the
    shared head where it is (no copy), their outputs one ``Concat`` of channels, which they write in
    place.  None when no item repeats another's operand or a run of tokens in one window fails."""
    nb, m, k = ia.shape
    n = ib.shape[2]
    if min(len(np.unique(ia.reshape(nb, -1), axis=0)), len(np.unique(ib.reshape(nb, -1), axis=0))) == nb:
        return None
    runs, i = [], 0
    while i < nb:               # the longest run from item i (a run's first items are one too)
        plan = _one_window_plan(a.src_shape, b.src_shape, ia[i:i + 1], ib[i:i + 1])
        if plan is None:
            return None
        if len(runs) == SHARED_HEADS_MAX_PRODUCTS:
            raise imp.fail(f"{nb} heads that share their operands' heads (multi- or grouped-query attention) would be "
                           f"more than {SHARED_HEADS_MAX_PRODUCTS} products; supported: at most "
                           f"{SHARED_HEADS_MAX_PRODUCTS} runs of consecutive heads whose shared heads are consecutive")
        j = i + 1
        while j < nb and (longer := _one_window_plan(a.src_shape, b.src_shape, ia[i:j + 1], ib[i:j + 1])) is not None:
            plan, j = longer, j + 1
        runs.append((i, j, plan))
        i = j
    name = imp.layer_name(node.output[0])
    parts = []
    for i, j, (_, heads, _, _, a_off, b_off, layout, b_repeat) in runs:
        part = imp.layer_name(f"{node.output[0]}.heads{i}")
        imp.emit(MatMul, part, batch=heads, m=m, k=k, n=n, inputs=(a.source, b.source), a_offset=a_off,
                 b_offset=b_off, b_layout=layout, b_repeat=b_repeat)
        parts.append(part)
    shape = imp.emit(Concat, name, inputs=tuple(parts))
    imp.shared_products.add(name)
    idx = np.arange(m)[None, :, None] * (nb * n) + np.arange(nb)[:, None, None] * n + np.arange(n)
    return L.from_indices(name, shape, idx.reshape(a.shape[:-1] + (n,)))


def _one_window_plan(sa, sb, ia: np.ndarray, ib: np.ndarray):
    """``_product_plan`` of batch items that one product of one window reads in their order, or None."""
    plan = _product_plan(sa, sb, ia, ib)
    return plan if plan is not None and plan[0] == 1 and np.array_equal(plan[3], np.arange(len(ia))) else None


def _product_plan(sa, sb, ia: np.ndarray, ib: np.ndarray):
    """(windows, heads, window and head of each batch item, a_offset, b_offset, b_layout, b_repeat), or
    None; ``b_repeat`` > 1 when consecutive heads read one head of ``b`` (MQA's and GQA's keys and
    values), the fewest that do."""
    first = _first_operand_plan(sa, ia)
    if first is None:
        return None
    windows, wi, hi, a_off = first
    nb, k, n = ib.shape
    cb, heads = sb[2], nb // windows
    w3, h3 = wi[:, None, None], hi[:, None, None]
    kk, nn = np.arange(k)[None, :, None], np.arange(n)[None, None, :]
    for r in (r for r in range(1, heads + 1) if heads % r == 0):
        for layout, tok, col, width, rows in (("nk", nn, kk, k, n), ("kn", kk, nn, n, k)):
            b_off = int(ib[0, 0, 0] % cb - hi[0] // r * width)
            # (the tokens counted too: with one column, both layouts give the same flat indices)
            if b_off >= 0 and sb[0] * sb[1] == rows * windows and \
                    np.array_equal(ib, (tok * windows + w3) * cb + b_off + h3 // r * width + col):
                return windows, heads, wi, hi, a_off, b_off, layout, r
    return None


def _first_operand_plan(sa, ia: np.ndarray):
    """(windows, window and head of each batch item, a_offset) when the batch items ``ia`` are read
    as a product's first operand reads them (per head, ``K`` contiguous channels of each token; the
    windows interleaved in the tokens), or None."""
    nb, m, k = ia.shape
    ca = sa[2]
    if (sa[0] * sa[1]) % m:
        return None
    windows = sa[0] * sa[1] // m
    first = ia[:, 0, 0]
    wi, ch = first // ca, first % ca
    a_off = int(ch.min())
    if nb % windows or ((ch - a_off) % k).any():
        return None
    hi, heads = (ch - a_off) // k, nb // windows
    if wi.max() >= windows or hi.max() >= heads or len(set(zip(wi.tolist(), hi.tolist()))) != nb:
        return None
    mm, kk = np.arange(m)[None, :, None], np.arange(k)[None, None, :]
    if not np.array_equal(ia, (mm * windows + wi[:, None, None]) * ca + a_off + hi[:, None, None] * k + kk):
        return None
    return windows, wi, hi, a_off


@_op("OpaqueMatMul", domain=_CUSTOM)
def _opaque(imp, node) -> None:
    a = _attrs(node)
    x, y = imp.act(node.input[0]), imp.act(node.input[1])
    name = imp.layer_name(node.output[0])
    shape = imp.emit(MatMul, name, batch=a["batch"], m=a["m"], k=a["k"], n=a["n"], inputs=(x.source, y.source),
                     b_layout="opaque")
    imp.views[node.output[0]] = L.tokens(name, shape)


# ---- quantisation (QDQ) ---------------------------------------------------------------------------

def _qparams(imp, node, zero_point_type=np.int8, values: Optional[tuple[np.ndarray, int]] = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) of a QDQ node; ``values``: the constant it dequantises and the axis of its
    scales, whose channels of zeros (pruned ones) may have a scale of 0."""
    scale = imp.array(node.input[1]).astype(np.float64)
    if values is not None:
        scale = _pruned_scales_as_one(imp, node, scale, *values)
    _check_scales(imp, node, scale)
    zp = imp.optional_array(node, 2)
    if zp is not None and zp.dtype != zero_point_type:
        raise imp.fail(f"a {zp.dtype} zero point; supported: symmetric int8 (QInt8, zero point 0), as the "
                       f"accelerator's int8 tensors are, and int32 biases (zero point 0)")
    if zp is not None and np.any(zp != 0):
        raise imp.fail("a zero point other than 0 (asymmetric); supported: symmetric int8")
    return scale, zp


def _pruned_scales_as_one(imp, node, scale: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
    """``scale`` with a scale of 0 whose channel of ``q`` (along ``axis``; all of ``q`` for one scale)
    is all zeros, a pruned channel's, as 1: its values are 0 at any scale, as calibration gives a
    channel of zeros.  Refused: a scale of 0 or below whose channel has values (naming it)."""
    if scale.size not in (1, q.shape[axis] if q.ndim else 1):
        return scale                        # blocked quantisation: refused by the caller
    nonzero = (np.moveaxis(q, axis, 0).reshape(scale.size, -1) != 0).any(axis=1) if q.ndim else q.ravel() != 0
    flat = scale.ravel()
    bad = np.flatnonzero((flat <= 0) & nonzero)
    if bad.size:
        which = f" for channel {bad[0]} of {flat.size} (axis {axis}; {bad.size} such)" if flat.size > 1 else ""
        raise imp.fail(f"scale {node.input[1]!r} of {node.input[0]!r} is {flat[bad[0]]:g}{which}, whose values are "
                       f"not all 0; a scale must be positive and finite (0 only for a channel of zeros, a pruned one)")
    return np.where((flat == 0) & ~nonzero, 1.0, flat).reshape(scale.shape)


def _check_scales(imp, node, scale: np.ndarray) -> None:
    """Refuse a QDQ scale of 0, below 0, NaN or infinite (one line naming the scale and the tensor it
    scales): else an activation's would be calibrated instead, or a weight's fail in the simulator."""
    bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0)))
    if bad.size:
        at = f" (element {bad[0]} of {scale.size}; {bad.size} bad)" if scale.size > 1 else ""
        raise imp.fail(f"scale {node.input[1]!r} of {node.input[0]!r} is {scale.ravel()[bad[0]]:g}{at}; a scale "
                       f"must be positive and finite")


@_op("QuantizeLinear")
def _quantize(imp, node) -> None:
    scale, _ = _qparams(imp, node)
    if imp.is_const(node.input[0]):
        return imp._fold(node)
    if scale.size != 1:
        raise imp.fail("per-channel scales on an activation; supported: one scale per activation tensor")
    _out(imp, node, imp.act(node.input[0]))
    imp.quantised[node.output[0]] = float(scale.ravel()[0])


def _pass_quantised(imp, node) -> None:
    if node.input[0] in imp.quantised:
        imp.quantised[node.output[0]] = imp.quantised[node.input[0]]


@_op("DequantizeLinear")
def _dequantize(imp, node) -> None:
    x = node.input[0]
    int32_const = x in imp.consts and imp.consts[x].dtype == np.int32     # a bias, as quantisers store it
    const = x not in imp.quantised and x in imp.consts and imp.consts[x].dtype in (np.int8, np.int32)
    q = imp.consts[x] if const else None
    axis = _attrs(node).get("axis", 1) % max(q.ndim, 1) if const else 0
    scale, _ = _qparams(imp, node, np.int32 if int32_const else np.int8, (q, axis) if const else None)
    if x in imp.quantised:
        v = _view(imp, x)
        s = imp.quantised[x] or float(scale.ravel()[0])
        if L.covers(v):
            imp.act_scales[v.source] = s
        return _out(imp, node, v)
    if x not in imp.consts or imp.consts[x].dtype not in (np.int8, np.int32):
        raise imp.fail(f"input {x!r} is neither a QuantizeLinear output nor an int8/int32 constant")
    if _attrs(node).get("block_size", 0) or scale.size not in (1, q.shape[axis] if q.ndim else 1):
        raise imp.fail(f"{scale.size} scales for {list(q.shape)} values along axis {axis} (blocked quantisation); "
                       f"supported: one scale, or one per output channel")
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis] = scale.size
    imp._set_const(node.output[0], (q.astype(np.float64) * scale.reshape(shape)).astype(np.float32))
    if q.dtype == np.int8:
        imp.qconst[node.output[0]] = (q, scale.ravel(), axis)


def _weight_q(imp, tensor: str, to_layout: Callable, axis: int):
    """(int8 weight in the layer's layout, per-output-channel scales) of a QDQ weight, or None."""
    if tensor not in imp.qconst:
        return None
    q, scale, q_axis = imp.qconst[tensor]
    if scale.size > 1 and q_axis != axis:
        raise imp.fail("weight scales along an axis other than the output channels; supported: per output channel")
    qq = to_layout(q)
    return np.ascontiguousarray(qq), np.broadcast_to(scale, (qq.shape[0],)).astype(np.float64)


# ---- element-wise and row operators -------------------------------------------------------------

def _aligned_constant(full: View, values: np.ndarray) -> np.ndarray:
    """``values`` (broadcast to ``full.shape``) placed as ``full``'s tensor holds them, then cut to the
    smallest HWC block that IR broadcasting (1 row, 1 column, repeated channels) repeats back."""
    h, w, c = full.src_shape
    data = np.zeros(h * w * c, np.float32)
    data[L.indices(full).ravel()] = np.broadcast_to(values, full.shape).ravel()
    data = data.reshape(h, w, c)
    if np.all(data == data[:1]):
        data = data[:1]
    if np.all(data == data[:, :1]):
        data = data[:, :1]
    for d in range(1, c):
        if c % d == 0 and np.array_equal(np.tile(data[..., :d], (1, 1, c // d)), data):
            return np.ascontiguousarray(data[..., :d])
    return np.ascontiguousarray(data)


def _broadcasts(full: View, other: View, shape) -> bool:
    """Whether IR broadcasting of ``other``'s tensor to ``full``'s gives what ONNX broadcasting gives."""
    h, w, c = full.src_shape
    ho, wo, co = other.src_shape
    if ho not in (1, h) or wo not in (1, w) or c % co:
        return False
    if other.src_shape == full.src_shape and other.shape == tuple(shape) and L.is_form(other, full):
        return True
    io, ib = L.indices(full), L.indices(L.expand(other, shape))
    y, x, ch = io // (w * c), (io // c) % w, io % c
    want = ((y if ho == h else 0) * wo + (x if wo == w else 0)) * co + ch % co
    return np.array_equal(want, ib)


def _whole(imp, v: View) -> Optional[View]:
    return v if L.covers(v) else imp.materialise(v)


@_op("Sum", "Mean")
def _sum(imp, node) -> None:
    """The variadic add (TensorFlow's ``AddN``, old converters'): adds one after the other; a mean
    then the product by ``1 / n``."""
    ins, y = [n for n in node.input if n], node.output[0]
    if len(ins) == 1:
        return _alias(imp, node)
    last = y if node.op_type == "Sum" else f"{y}.sum"
    total = ins[0]
    for k, x in enumerate(ins[1:], 1):
        total = _part(imp, node, "Add", [total, x], last if k == len(ins) - 1 else f"{y}.{k}")
    if node.op_type == "Mean":
        _part(imp, node, "Mul", [total, _scalar_const(imp, f"{y}.inverse", 1 / len(ins))], y)


@_op("Add", "Sub", "Mul", "Div")
def _binary(imp, node) -> None:
    names = list(node.input)
    cls = Add if node.op_type in ("Add", "Sub") else Mul
    if node.op_type == "Div" and imp.is_const(names[1]) and not np.all(imp.array(names[1])):
        raise imp.fail(f"a division by a constant {names[1]!r} holding 0 (infinities and NaNs); supported: "
                       f"divisors without zeros")
    if cls is Mul and _fold_scale(imp, node, names):
        return
    if node.op_type == "Sub" and not imp.is_const(names[1]):
        names[1] = _negated(imp, node, names[1])
        with _reading(imp, helper.make_node("Sub", names, list(node.output), name=node.name)) as sub:
            return _elementwise(imp, sub, cls, names)   # the add reads -b: a reader of the fold that negated b
    if node.op_type == "Div" and not imp.is_const(names[1]):
        names[1] = _reciprocal(imp, node, names[1])
        with _reading(imp, helper.make_node("Div", names, list(node.output), name=node.name)) as div:
            return _elementwise(imp, div, Mul, names)     # a / b is a * (1 / b)
    if node.op_type in ("Sub", "Div"):
        c = imp.array(names[1]).astype(np.float32)
        synthetic = f"{node.output[0]}.{'neg' if cls is Add else 'inv'}"
        imp._set_const(synthetic, -c if cls is Add else (1 / c).astype(np.float32))
        names[1] = synthetic
    _elementwise(imp, node, cls, names)


def _negated(imp, node, name: str, neg: Optional[str] = None) -> str:
    """``-name`` for ``node``'s subtraction (``a - b`` is ``a + (-b)``) or negation, as ``neg`` (else
    the node's output with ``.neg``): -1 folded into the weights that compute ``b``, as a product
    by a constant scalar is, else a ``Mul`` by a constant -1."""
    neg = neg or f"{node.output[0]}.neg"
    minus = _scalar_const(imp, f"{node.output[0]}.minus_one", -1.0)
    product = helper.make_node("Mul", [name, minus], [neg], name=neg)
    if not _fold_scale(imp, product, [name, minus]):
        with _reading(imp, product):            # the product reads b alone (not the subtraction's a)
            _elementwise(imp, product, Mul, [name, minus])
    return neg


def _reciprocal(imp, node, name: str) -> str:
    """``1 / name`` for ``node``'s division: the vector unit's table of ``1 / x``."""
    out = f"{node.output[0]}.reciprocal"
    with _reading(imp, helper.make_node("Reciprocal", [name], [out], name=out)) as part:
        _elementwise_unary(imp, part, "reciprocal")
    return out


@contextlib.contextmanager
def _reading(imp, node):
    """``node`` (one the importer makes) as the node being imported: the inputs its layers read, for
    the folds' readers (``onnx_import.emit``), and the name its refusals give."""
    saved, imp.node = imp.node, node
    try:
        yield node
    finally:
        imp.node = saved


def _fold_scale(imp, node, names: list[str]) -> bool:
    """Fold a product by a constant scalar into the weights that compute the other operand
    (``onnx_import.import_onnx`` says when); True when folded."""
    which = [i for i in range(2) if imp.is_const(names[i]) and imp.array(names[i]).size == 1]
    if len(which) != 1 or imp.is_const(names[1 - which[0]]):
        return False
    v = _view(imp, names[1 - which[0]])
    s = float(imp.array(names[which[0]]).ravel()[0])
    s = 1 / s if node.op_type == "Div" else s
    if node.op_type == "Div" and which[0] == 0:
        return False
    target, lo, hi, readers, through = _fold_target(imp, v)
    if target is None or (s < 0 and target.relu):       # relu(-x) is not -relu(x): a Mul layer
        return False
    if not imp.fold_rows(target.name, lo, hi, s, readers, node.output[0], through):
        return False
    imp.views[node.output[0]] = v.named(node.output[0], v.origin)
    return True


def _fold_target(imp, v: View):
    """(layer whose weight rows ``lo:hi`` compute ``v``'s values, lo, hi, the layers that already read
    them through ``v``, the layer between them and ``v`` whose output the fold scales), or Nones."""
    src = imp.by_name.get(v.source)
    if isinstance(src, (Linear, Conv2d)):
        lo, hi = L.channels_read(v)
        return src, lo, hi, set(), ""
    products = [imp.by_name[p] for p in src.inputs] if src is not None and src.name in imp.shared_products else [src]
    if not L.covers(v) or not all(isinstance(p, MatMul) and p.b_layout != "opaque" for p in products):
        return None, 0, 0, set(), ""
    a = {imp.by_name.get(p.inputs[0]) for p in products}
    lo = min(p.a_offset for p in products)
    hi = max(p.a_offset + p.heads * p.k for p in products)
    for p in products:
        b_lo = p.b_offset
        b_hi = b_lo + p.b_heads * (p.k if p.b_layout == "nk" else p.n)
        if p.inputs[1] == p.inputs[0] and b_lo < hi and lo < b_hi:
            return None, 0, 0, set(), ""        # q @ q^T: the second operand reads the scaled rows too
    if len(a) == 1 and isinstance(next(iter(a)), (Linear, Conv2d)):
        return next(iter(a)), lo, hi, {p.name for p in products}, src.name
    return None, 0, 0, set(), ""


def _elementwise(imp, node, cls, names: list[str]) -> None:
    vals = [_view(imp, n) for n in names]
    try:
        shape = tuple(np.broadcast_shapes(*(v.shape for v in vals)))
    except ValueError:
        raise imp.fail(f"inputs of shapes {[list(v.shape) for v in vals]} do not broadcast; supported: "
                       f"numpy broadcasting") from None
    order = sorted(range(2), key=lambda i: imp.is_const(names[i]))      # activations first
    full_i = full = None
    for i in order:
        if vals[i].shape == shape:
            full = _whole(imp, imp.act(names[i]))
            if full is not None:
                full_i = i
                break
    if full is None:
        viewed = " (one has it, but as a strided or reordered view of its tensor that no layout layer makes " \
                 "whole: channels picked, reversed or interleaved)" if any(v.shape == shape for v in vals) else ""
        raise imp.fail(f"neither input (shapes {[list(v.shape) for v in vals]}) holds a whole tensor of the output's "
                       f"shape{viewed}; supported: one input of the output's shape, the other broadcast to it")
    o = 1 - full_i
    if imp.is_const(names[o]):
        src = imp.sources[vals[o].source]
        other = imp.constant_layer(src.name, _aligned_constant(full, imp.array(names[o])), src.after, src.seq)
    else:
        ov = imp.act(names[o])
        # some channels of a tensor (a slice of it), or its values in a layout layer's order (a
        # window reverse written straight to tokens), on either side
        if not _broadcasts(full, ov, shape):
            ov = imp.materialise(ov, lambda f: _broadcasts(full, f, shape)) or ov
        if not _broadcasts(full, ov, shape):
            full = imp.materialise(full, lambda f: _broadcasts(f, ov, shape)) or full
        if not _broadcasts(full, ov, shape):
            if ov.shape == shape:
                raise imp.fail("its inputs read their tensors' elements in different orders (one a strided or "
                               "reordered view: channels picked or reversed) that no layout layer reconciles; "
                               "supported: both in the IR's layout, or one broadcast to the other")
            raise imp.fail("its inputs broadcast in a way IR broadcasting (rows, columns, repeated channels of one "
                           "tensor) does not; supported: numpy broadcasting that is also IR broadcasting")
        other = ov.source
    inputs = (full.source, other) if full_i == 0 else (other, full.source)
    name = imp.layer_name(node.output[0])
    out = imp.emit(cls, name, inputs=inputs)
    imp.views[node.output[0]] = full.on(name, out)


def _elementwise_unary(imp, node, func: str, params: tuple = ()) -> None:
    """``func`` of every element of a whole tensor; of a view reading each element of one (an
    ``Expand``), of that tensor, with the view kept."""
    x = imp.act(node.input[0])
    if not L.reads_every_element(x):
        x = imp.need(x, L.covers, "a whole tensor")
    prod = imp.by_name.get(x.source)
    fused = func == "relu" and isinstance(prod, Add) and len(imp.consumers.get(node.input[0], [])) == 1
    name = imp.layer_name(node.output[0])
    out = imp.emit(Activation, name, func=func, inputs=(x.source,), fused=fused, params=params)
    # the view kept names where the data was moved, for a reader that cannot take it ("arranged by ...")
    imp.views[node.output[0]] = dataclasses.replace(x.on(name, out), origin=x.origin)


@_op("Tanh")
def _tanh(imp, node) -> None:
    _elementwise_unary(imp, node, "tanh")


@_op("HardSwish")
def _hardswish(imp, node) -> None:
    _elementwise_unary(imp, node, "hardswish")


@_op("HardSigmoid")
def _hardsigmoid(imp, node) -> None:
    a = _attrs(node)
    _elementwise_unary(imp, node, "hardsigmoid", (float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))))


@_op("LeakyRelu")
def _leaky_relu(imp, node) -> None:
    _elementwise_unary(imp, node, "leaky_relu", (float(_attrs(node).get("alpha", 0.01)),))


@_op("PRelu")
def _prelu(imp, node) -> None:
    """One slope ``s`` (``nn.PReLU()``): a leaky ReLU's table.  A slope per channel (a table maps
    every channel alike): ``(1 - s) * relu(x) + s * x``, products by per-channel constants."""
    if not imp.is_const(node.input[1]):
        raise imp.fail("a computed slope; supported: a constant slope")
    slope = imp.array(node.input[1]).astype(np.float32)
    shape = tuple(_view(imp, node.input[0]).shape)
    if slope.ndim > len(shape) or any(d not in (1, n) for d, n in zip(slope.shape[::-1], shape[::-1])) or not slope.size:
        raise imp.fail(f"a slope of shape {list(slope.shape)} for an input of shape {list(shape)}; supported: a slope "
                       f"that broadcasts to the input")
    if np.all(slope == slope.ravel()[0]):
        return _elementwise_unary(imp, node, "leaky_relu", (float(slope.ravel()[0]),))
    x, y = node.input[0], node.output[0]
    imp._set_const(f"{y}.keep", (1 - slope).astype(np.float32))
    parts = [("Relu", [x], "relu"), ("Mul", [f"{y}.relu", f"{y}.keep"], "kept"), ("Mul", [x, node.input[1]], "leak")]
    for op, inputs, suffix in parts:
        part = helper.make_node(op, inputs, [f"{y}.{suffix}"], name=f"{node.name}.{suffix}")
        if op == "Relu":
            _elementwise_unary(imp, part, "relu")
        else:
            _binary(imp, part)
    _binary(imp, helper.make_node("Add", [f"{y}.kept", f"{y}.leak"], [y], name=node.name))


@_op("Elu")
def _elu(imp, node) -> None:
    _elementwise_unary(imp, node, "elu", (float(_attrs(node).get("alpha", 1.0)),))


@_op("Celu", "ThresholdedRelu")
def _alpha_activation(imp, node) -> None:
    """Celu and ThresholdedRelu, each a table of its one parameter (both default to 1)."""
    func = "celu" if node.op_type == "Celu" else "thresholded_relu"
    _elementwise_unary(imp, node, func, (float(_attrs(node).get("alpha", 1.0)),))


@_op("Softplus")
def _softplus(imp, node) -> None:
    _elementwise_unary(imp, node, "softplus")


@_op("Mish")
def _mish(imp, node) -> None:
    _elementwise_unary(imp, node, "mish")


@_op("Swish")
def _swish(imp, node) -> None:
    """``x * sigmoid(alpha * x)`` (ONNX's Swish from opset 24; SiLU's pattern in any opset)."""
    _elementwise_unary(imp, node, "swish", (_float32_value(_attrs(node).get("alpha", 1.0)),))


@_op("Softsign")
def _softsign(imp, node) -> None:
    _elementwise_unary(imp, node, "softsign")


@_op("Selu")
def _selu(imp, node) -> None:
    a = _attrs(node)
    _elementwise_unary(imp, node, "selu", (float(a.get("alpha", 1.67326319217681884765625)),
                                           float(a.get("gamma", 1.05070102214813232421875))))


@_op("Exp", "Log", "Sqrt", "Reciprocal", "Abs", "Erf")
def _table_function(imp, node) -> None:
    """A function of one element: a table of the vector unit (a pole saturates, ``hw.operators.lut_table``)."""
    _elementwise_unary(imp, node, node.op_type.lower())


@_op("Pow")
def _pow(imp, node) -> None:
    if not imp.is_const(node.input[1]) or imp.array(node.input[1]).size != 1:
        raise imp.fail(f"an exponent {node.input[1]!r} that is not a constant scalar; supported: x ** c, c a constant")
    exponent = float(imp.array(node.input[1]).ravel()[0])
    if exponent == 1:
        return _alias(imp, node)
    if not math.isfinite(exponent):
        raise imp.fail(f"exponent {exponent}; supported: finite exponents")
    _elementwise_unary(imp, node, "pow", (exponent,))


@_op("Neg")
def _neg(imp, node) -> None:
    """``-x``, as a subtraction's ``-b`` is."""
    _negated(imp, node, node.input[0], node.output[0])


@_op("Clip")
def _clip(imp, node) -> None:
    """Bounds from the inputs (opset 11 on) or the attributes; a bound left out is none (ReLU6 is
    Clip(x, 0, 6); Clip(x, 0) is a ReLU)."""
    low, high = _clip_bounds(imp, node)
    if low > high:
        raise imp.fail(f"min {low} above max {high}; supported: min <= max")
    if low == 0 and high == math.inf:
        return _elementwise_unary(imp, node, "relu")
    _elementwise_unary(imp, node, "clip", (float(low), float(high)))


def _clip_bounds(imp, node) -> tuple[float, float]:
    """A Clip's (min, max): from its inputs (opset 11 on) or its attributes, a bound left out none."""
    a = _attrs(node)
    if imp.opset < 11:
        return a.get("min", -math.inf), a.get("max", math.inf)
    for k in (1, 2):
        if len(node.input) > k and node.input[k] and not imp.is_const(node.input[k]):
            raise imp.fail(f"a bound computed in the network ({node.input[k]!r}); supported: constant bounds")
    bounds = [imp.optional_array(node, k) for k in (1, 2)]
    if any(b is not None and b.size != 1 for b in bounds):
        raise imp.fail(f"bounds of shapes {[list(b.shape) for b in bounds if b is not None]}; supported: scalars")
    low, high = (float(b.reshape(-1)[0]) if b is not None else d for b, d in zip(bounds, (-math.inf, math.inf)))
    return low, high


@_op("Relu")
def _relu(imp, node) -> None:
    _elementwise_unary(imp, node, "relu")


@_op("Sigmoid")
def _sigmoid(imp, node) -> None:
    _elementwise_unary(imp, node, "sigmoid")


@_op("Gelu")
def _gelu(imp, node) -> None:
    approx = _attrs(node).get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise imp.fail(f"approximate={approx!r}; supported: 'none' (the erf form) and 'tanh'")
    _elementwise_unary(imp, node, "gelu" if approx == "none" else "gelu_tanh")


def _rows_of(v: View, axis: int, c_must: Optional[int] = None) -> bool:
    """Each line along ``axis`` is consecutive channels starting at a multiple of its length."""
    n = v.shape[axis]
    c = v.src_shape[2]
    if c % n or (c_must is not None and n != c_must):
        return False
    if v.strided:
        return (n == 1 or v.strides[axis] == 1) and v.offset % n == 0 and \
            all(s % n == 0 for i, s in enumerate(v.strides) if i != axis)
    rows = np.moveaxis(L.indices(v), axis, -1).reshape(-1, n)
    return not (rows[:, 0] % n).any() and np.array_equal(rows, rows[:, :1] + np.arange(n))


@_op("Softmax")
def _softmax(imp, node) -> None:
    v = imp.act(node.input[0])
    rank = len(v.shape)
    axis = _axis(imp, _attrs(node).get("axis", -1 if imp.opset >= 13 else 1), rank)
    if imp.opset < 13 and math.prod(v.shape[axis + 1:]) != 1:
        raise imp.fail(f"axis {axis} of a {list(v.shape)} tensor before opset 13 (a softmax over the flattened "
                       f"trailing axes); supported: the last axis, or one followed by axes of size 1")
    ok = lambda u: L.covers(u) and _rows_of(u, axis)      # noqa: E731
    x = v if ok(v) else _producer_reordered(imp, node, v, axis, ok) or imp.materialise(v, ok) \
        or _pixels_as_channels(imp, node, v, ok)
    if x is None:
        x = imp.need(v, ok, "rows of consecutive channels")        # refused: names the layout
    name = imp.layer_name(node.output[0])
    out = imp.emit(Softmax, name, inputs=(x.source,), row=x.shape[axis])
    imp.views[node.output[0]] = x.on(name, out)


def _producer_reordered(imp, node, v: View, axis: int, ok) -> Optional[View]:
    """``v`` once its producer's output channels are in the order that makes its ``axis`` the
    consecutive channels of each pixel, if that is ``ok``: ``v`` the same channel permutation of
    every pixel, within a convolution's groups (ResNeSt's softmax over the radix of a grouped
    convolution's ``[cardinality, radix, C]`` logits).  Held as a fold (``reorder_rows``): when
    another layer reads the rows, the import starts again without it."""
    src, (h, w, c) = _unread_producer(imp, v), v.src_shape
    if src is None or v.size != h * w * c:
        return None
    perm = [a for a in range(len(v.shape)) if a != axis] + [axis]
    idx = L.indices(L.transpose(v, perm)).reshape(h * w, c)
    old_of = idx[0] % c
    group = c // getattr(src, "groups", 1)
    if (not np.array_equal(idx, np.arange(h * w)[:, None] * c + old_of) or np.array_equal(old_of, np.arange(c))
            or np.any(old_of // group != np.arange(c) // group)):
        return None
    moved = np.arange(v.size).reshape([v.shape[a] for a in perm])
    plain = L.from_indices(v.source, v.src_shape, np.ascontiguousarray(moved.transpose(np.argsort(perm))))
    if not ok(plain) or not imp.reorder_rows(src.name, old_of, node.input[0]):
        return None
    return plain


#: A map of at most this many channels is transposed when a softmax reads it over its pixels: a
#: product by an identity, ``C * C * HW`` multiply-accumulates (GCNet's map has one channel).
TRANSPOSED_MAX_CHANNELS = 16


def _pixels_as_channels(imp, node, v: View, ok) -> Optional[View]:
    """``v`` over the transpose of its map (a token per channel, holding the map's pixels), if that
    is ``ok``: the product of an identity Constant and the map read as keys (``nk``), so that
    ``out[c, p] = map[p, c]``; GCNet's softmax over the pixels of its one-channel attention map."""
    h, w, c = v.src_shape
    if h * w == 1:
        return None
    idx = L.indices(v)
    transposed = L.from_indices("?", (c, 1, h * w), (idx % c) * (h * w) + idx // c)
    if not ok(transposed):
        return None
    if c > TRANSPOSED_MAX_CHANNELS:
        raise imp.fail(f"a softmax over the pixels of a map of {c} channels; supported: over the pixels of a map of at "
                       f"most {TRANSPOSED_MAX_CHANNELS} (transposed by a product of C x C x H x W multiply-accumulates), "
                       f"or over channels")
    identity = imp.constant_layer(node.output[0] + ".identity", np.eye(c, dtype=np.float32)[:, None, :], None)
    name = imp.layer_name(node.output[0] + ".transposed")
    shape = imp.emit(MatMul, name, batch=1, m=c, k=c, n=h * w, inputs=(identity, v.source), b_layout="nk")
    return transposed.on(name, shape)


@_op("LogSoftmax")
def _log_softmax(imp, node) -> None:
    """``log(softmax(x))``: the softmax, then the table of ``log`` of its int8 probabilities (a
    class far below the largest one saturates at the table's lowest entry)."""
    axis = {k: v for k, v in _attrs(node).items() if k == "axis"}
    probabilities = _part(imp, node, "Softmax", [node.input[0]], f"{node.output[0]}.softmax", **axis)
    _part(imp, node, "Log", [probabilities], node.output[0])


def _float32_value(v: float) -> float:
    """A float32 attribute as the shortest decimal that is the same float32 (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


@_op("LayerNormalization")
def _layernorm(imp, node) -> None:
    """Over the last axes from ``axis``; with the importer's own ``channels_first`` (``onnx_patterns``:
    ConvNeXt's decomposed LayerNorm over axis 1), over the channels of an NCHW image."""
    v = imp.act(node.input[0])
    a = _attrs(node)
    if a.get("channels_first"):
        if len(v.shape) != 4:
            raise imp.fail(f"a normalisation over axis 1 of a {list(v.shape)} tensor; supported: over the "
                           f"channels of an NCHW image, or over the last axis")
        _layernorm_rows(imp, node, L.transpose(v, [0, 2, 3, 1]), -1, a)
        imp.views[node.output[0]] = L.transpose(imp.views[node.output[0]], [0, 3, 1, 2])
        return
    _layernorm_rows(imp, node, v, _axis(imp, a.get("axis", -1), len(v.shape)), a)


def _layernorm_rows(imp, node, v: View, axis: int, a: dict) -> None:
    axis = axis % len(v.shape)
    n = math.prod(v.shape[axis:])
    flat = lambda u: L.reshape(u, u.shape[:axis] + (n,)) if axis < len(u.shape) - 1 else u
    tokens = lambda u: L.covers(u) and _rows_of(flat(u), len(u.shape[:axis]), u.src_shape[2])
    gamma, beta = (imp.optional_array(node, k) for k in (1, 2))

    def fit(p: Optional[np.ndarray]) -> np.ndarray:
        """A value per element of a row as it is (channels_first's ``[C, 1, 1]``), else broadcast to the
        rows' axes as ONNX broadcasts it (a scale of the last axis over several normalised axes)."""
        if p is None:
            return np.zeros(n, np.float32)
        p = p.astype(np.float32)
        return np.broadcast_to(p.reshape(-1), (n,)) if p.size in (1, n) else np.broadcast_to(p, v.shape[axis:]).reshape(-1)

    try:
        gamma, beta = fit(gamma), fit(beta)
    except ValueError:
        raise imp.fail(f"a scale of shape {list(imp.array(node.input[1]).shape)}" + (
            f" and a bias of shape {list(beta.shape)}" if beta is not None else "") + f" for rows of shape "
            f"{list(v.shape[axis:])}; supported: shapes that broadcast to the rows'") from None
    eps = _float32_value(a.get("epsilon", 1e-5))
    x = v if tokens(v) else imp.materialise(v, tokens)
    if x is None:       # rows of some of each token's channels: a head's (qk-norm), composed
        rows = lambda u: L.covers(u) and _rows_of(flat(u), len(u.shape[:axis]))
        part = v if rows(v) else imp.materialise(v, rows)
        if part is not None:
            return _layernorm_of_groups(imp, node, part, n, gamma, beta, eps)
        if _layernorm_of_image(imp, node, v, axis, gamma, beta, eps):
            return
        if axis < len(v.shape) - 1:
            _refuse_rows_across_axes(imp, v, axis)
        x = imp.need(v, tokens, "rows of all the channels of each token, or of consecutive channels")
    name = imp.layer_name(node.output[0])
    out = imp.emit(LayerNorm, name, inputs=(x.source,), eps=eps)
    imp.weights[name] = {"gamma": gamma.copy(), "beta": beta.astype(np.float32)}
    imp.views[node.output[0]] = x.on(name, out)


def _layernorm_of_image(imp, node, v: View, axis: int, gamma: np.ndarray, beta: np.ndarray, eps: float) -> bool:
    """LayerNorm over the pixels of an NCHW image from ``axis``: over its channels and pixels (axis 0
    or 1) it is GroupNormalization with one group, over each channel's pixels (axis 2)
    InstanceNormalization (:func:`_normalised`), when the scale and bias are per channel (the same
    at every pixel; at axis 2 the same everywhere).  False when ``v`` is no such image; refused,
    naming the values, when the scale or bias varies over the pixels."""
    if len(v.shape) != 4 or axis > 2:
        return False
    x = v if _nchw_full(v) else imp.materialise(v, _nchw_full)
    if x is None:
        return False
    c = v.shape[1]
    per = {what: p.reshape(-1, v.shape[2] * v.shape[3]) for what, p in (("scale", gamma), ("bias", beta))}
    varying = [f"{what} {node.input[k]!r}" for k, (what, p) in enumerate(per.items(), 1) if np.any(p != p[:, :1])]
    if varying:
        over = "channels and pixels (GroupNormalization with one group)" if axis < 2 else "pixels (InstanceNormalization)"
        raise imp.fail(f"a normalisation over the {over} of a {list(v.shape)} image whose {' and '.join(varying)} "
                       f"{'vary' if len(varying) > 1 else 'varies'} over the pixels; supported: a scale and a bias "
                       + ("per channel (shape [C, 1, 1], or constant over H and W)" if axis < 2 else
                          "constant over H and W"))
    scale, bias = (np.broadcast_to(p[:, 0], (c,)) for p in per.values())
    out = _normalised(imp, node, _image_of(imp, node.input[0], x), c if axis < 2 else 1, scale, bias, eps)
    imp.views[node.output[0]] = _view(imp, out).named(node.output[0])
    return True


def _refuse_rows_across_axes(imp, v: View, axis: int) -> None:
    """A LayerNormalization whose rows span several axes that are not each token's channels (over
    the tokens and channels together; an NCHW image's channels and pixels are
    :func:`_layernorm_of_image`'s): no IR layer normalises such rows, and the generic layout refusal
    did not say that the axes were the cause."""
    rank = len(v.shape)
    whole_image = (" (not laid out as an NCHW image, whose channels and pixels would import as GroupNormalization "
                   "with one group)" if rank == 4 and axis == 1 else "")
    raise imp.fail(f"a normalisation over axes {list(range(axis, rank))} of a {list(v.shape)} tensor, rows of "
                   f"{math.prod(v.shape[axis:])} elements across several axes that are not each token's channels"
                   f"{whole_image}; supported: over the last axis (the channels of each token or NHWC pixel), or "
                   f"over several axes that together are each token's channels")


@_op("RMSNormalization")
def _rms_norm(imp, node) -> None:
    """ONNX's RMSNormalization (opset 23; PyTorch's ``nn.RMSNorm``): ``x * rsqrt(mean(x^2) + eps) *
    scale`` over the axes from ``axis``, from the layers its decomposition imports as: the square (a
    table), the mean, ``rsqrt`` (a table) and products."""
    a, x, y = _attrs(node), node.input[0], node.output[0]
    rank = len(imp.act(x).shape)
    axis, eps = _axis(imp, a.get("axis", -1), rank), _float32_value(a.get("epsilon", 1e-5))
    square = _part(imp, node, "Pow", [x, _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square")
    mean = _part(imp, node, "ReduceMean", [square], f"{y}.mean", axes=list(range(axis, rank)), keepdims=1,
                 handler=_reduce_axes)
    factor = _part(imp, node, "Rsqrt", [mean], f"{y}.rsqrt",
                   handler=lambda imp, n: _elementwise_unary(imp, n, "rsqrt", (eps,)))
    _part(imp, node, "Mul", [_part(imp, node, "Mul", [x, factor], f"{y}.normalised"), node.input[1]], y)


def _layernorm_of_groups(imp, node, x: View, k: int, gamma: np.ndarray, beta: np.ndarray, eps: float) -> None:
    """LayerNorm over each token's groups of ``k`` consecutive channels (ViT-22B's and EVA's qk-norm:
    q and k viewed ``[1, heads, N, d]``, normalised over ``d``), which the IR's LayerNorm (all the
    channels of a token) does not do: each pixel's groups normalised as :func:`_normalised` does."""
    c = x.src_shape[2]
    out = _view(imp, _normalised(imp, node, _image_of(imp, node.input[0], x), k, np.tile(gamma, c // k),
                                 np.tile(beta, c // k), eps, pixels=False))
    imp.views[node.output[0]] = x.on(out.source, out.src_shape)


# ---- spatial operators ------------------------------------------------------------------------------

@_op("Resize", "Upsample")
def _resize(imp, node) -> None:
    a = _attrs(node)
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    _, c, h, w = x.shape
    out_h, out_w, scales = _resize_size(imp, node, x.shape)
    mode, ctm, nearest = _resize_modes(imp, node, out_h < h or out_w < w)
    aa = a.get("antialias", 0)
    if aa and mode == "nearest":
        # ONNX defines antialias for linear and cubic only; onnxruntime refuses the model
        raise imp.fail(f"antialias={aa} with mode='nearest'; supported: antialias=0 there (ONNX defines "
                       f"antialias for linear and cubic only)")
    if aa and mode == "linear" and (out_h < h or out_w < w):
        raise imp.fail("antialias=1 on a shrinking resize (a filter wider than a pixel); supported: antialias=0, "
                       "or any when enlarging (where it changes nothing)")
    if mode == "linear" and ctm == "pytorch_half_pixel" and 1 in (out_h, out_w) and (h, w) != (out_h, out_w):
        # ONNX's pytorch_half_pixel reads coordinate 0 for an axis of one output pixel, not its centre
        raise imp.fail(f"pytorch_half_pixel to {out_h}x{out_w}: an axis of one pixel takes the first input pixel "
                       f"(ONNX), not the centre the accelerator takes; supported: half_pixel there")
    picks = [_onnx_nearest_sources(n_in, n_out, scale, ctm, nearest)
             for n_in, n_out, scale in zip((h, w), (out_h, out_w), scales)] if mode == "nearest" else []
    corners = mode == "linear" and ctm == "align_corners"
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel"):
        kind = "bilinear"
        for n_in, n_out, scale in zip((h, w), (out_h, out_w), scales):
            _check_scale(imp, kind, n_in, n_out, scale)
    elif corners:
        kind = "bilinear"           # its coordinates are the sizes', whatever the scale: no check
    elif picks and all(p is not None and np.array_equal(p, nearest_indices(n_in, n_out))
                       for p, n_in, n_out in zip(picks, (h, w), (out_h, out_w))):
        kind = "nearest"            # any coordinates and rounding that pick the accelerator's pixels
    else:
        if mode == "nearest" and ctm == "asymmetric":       # a scale that is the cause says so
            for n_in, n_out, scale in zip((h, w), (out_h, out_w), scales):
                _check_scale(imp, "nearest", n_in, n_out, scale)
        raise imp.fail(f"mode={mode!r}, coordinate_transformation_mode={ctm!r}, nearest_mode={nearest!r}"
                       f"{' (the semantics of its opset)' if _before_resize_11(imp, node) else ''}; supported: "
                       f"bilinear as PyTorch (linear, half_pixel, pytorch_half_pixel or align_corners), and nearest where its "
                       f"source pixels are floor(i * {h}/{out_h}) and floor(j * {w}/{out_w}) (asymmetric and floor do "
                       f"that)")
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Resize, name, inputs=(x.source,), out_h=out_h, out_w=out_w, mode=kind, align_corners=corners)
    imp.views[node.output[0]] = L.nchw(name, shape)


def _onnx_nearest_sources(n_in: int, n_out: int, scale: Optional[float], ctm: str, rounding: str) -> Optional[np.ndarray]:
    """The source pixel of each of ``n_out`` outputs of ONNX's nearest resize of an axis of ``n_in``
    (``scale`` given, or ``n_out / n_in``), in exact arithmetic; None for a transformation not here."""
    s = Fraction(scale).limit_denominator(1 << 20) if scale is not None else Fraction(n_out, n_in)
    coordinate = {"half_pixel": lambda x: (x + Fraction(1, 2)) / s - Fraction(1, 2),
                  "pytorch_half_pixel": lambda x: (x + Fraction(1, 2)) / s - Fraction(1, 2) if n_out > 1 else Fraction(0),
                  "asymmetric": lambda x: x / s,
                  "tf_half_pixel_for_nn": lambda x: (x + Fraction(1, 2)) / s,
                  "align_corners": lambda x: x * Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)}.get(ctm)
    rounded = {"round_prefer_floor": lambda v: math.ceil(v - Fraction(1, 2)),
               "round_prefer_ceil": lambda v: math.floor(v + Fraction(1, 2)),
               "floor": math.floor, "ceil": math.ceil}.get(rounding)
    if coordinate is None or rounded is None:
        return None
    return np.array([min(max(rounded(coordinate(Fraction(x))), 0), n_in - 1) for x in range(n_out)], np.int64)


def _check_scale(imp, kind: str, n_in: int, n_out: int, scale: Optional[float]) -> None:
    """Refuse a scale whose coordinates are not the accelerator's: ONNX maps them by the scale, the
    accelerator by ``n_out / n_in``.  They agree when the scale gives a whole number of pixels, and
    for nearest whenever every output takes the same source pixel either way."""
    if scale is None or abs(n_out - n_in * scale) <= 1e-6 * max(1.0, n_out):
        return
    by_scale = np.minimum(np.floor(np.arange(n_out, dtype=np.float32) / np.float32(scale)), n_in - 1)
    if kind == "nearest" and np.array_equal(by_scale.astype(np.int64), nearest_indices(n_in, n_out)):
        return
    raise imp.fail(f"scale {scale:g} of an axis of {n_in} gives {n_in * scale:g}, no whole number of pixels, and "
                   f"{'other source pixels' if kind == 'nearest' else 'other weights'} than {n_out} / {n_in}; "
                   f"supported: scales whose product with the size is whole, or sizes")


def _before_resize_11(imp, node) -> bool:
    """Upsample, or Resize before opset 11: no transformation attributes, one fixed semantics."""
    return node.op_type == "Upsample" or imp.opset < 11


def _resize_modes(imp, node, shrinks: bool) -> tuple[str, str, str]:
    """(mode, coordinate_transformation_mode, nearest_mode) of a resize node.  Before opset 11 the
    coordinates are asymmetric and nearest takes the pixel below when enlarging and above when
    shrinking (onnxruntime's "simple" rule); from 11 the attributes say, with ONNX's defaults."""
    a = _attrs(node)
    mode = a.get("mode", "nearest")
    if _before_resize_11(imp, node):
        return mode, "asymmetric", "ceil" if shrinks else "floor"
    return mode, a.get("coordinate_transformation_mode", "half_pixel"), a.get("nearest_mode", "round_prefer_floor")


def _resize_size(imp, node, shape) -> tuple[int, int, list]:
    """(out_h, out_w, the scale of each of them, or None where sizes give them)."""
    a = _attrs(node)
    policy = a.get("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        raise imp.fail(f"keep_aspect_ratio_policy={policy!r}; supported: 'stretch' (the sizes as given)")
    axes = a.get("axes") or list(range(len(shape)))
    ins = list(node.input)
    if _before_resize_11(imp, node):
        sizes, scales = None, imp.array(ins[1]).astype(np.float64) if len(ins) > 1 else np.array(a["scales"])
    else:
        sizes = imp.array(ins[3]).astype(np.int64) if len(ins) > 3 and ins[3] else None
        scales = imp.array(ins[2]).astype(np.float64) if len(ins) > 2 and ins[2] else None
    given = sizes if sizes is not None else scales
    if given is None or given.size != len(axes):
        what = "neither scales nor sizes" if given is None else \
            f"{'sizes' if sizes is not None else 'scales'} of {given.size} values for {len(axes)} axes"
        raise imp.fail(f"{what}; supported: a scale or a size for each axis")
    full, by = list(shape), [None] * len(shape)
    for i, ax in enumerate(axes):
        full[ax] = int(sizes[i]) if sizes is not None else int(math.floor(shape[ax] * scales[i]))
        by[ax] = None if sizes is not None else float(scales[i])
    if min(full) < 1:
        raise imp.fail(f"an output of {full} from {list(shape)}; supported: every dimension at least 1")
    if tuple(full[:2]) != tuple(shape[:2]):
        raise imp.fail(f"a resize of the batch or channel axis ({list(shape)} -> {full}); supported: height and width")
    return full[2], full[3], by[2:]


def _tiling_windows(node, size) -> Optional[tuple[int, int]]:
    """The windows' count down and across when a pooling's windows tile the image exactly (stride
    the kernel, no padding, no dilation), else None."""
    a = _attrs(node)
    kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
    flat = not any(a.get("pads", [0] * 4)) and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and \
        not a.get("ceil_mode", 0) and all(d == 1 for d in a.get("dilations", [1, 1]))
    if len(kernel) != 2 or min(kernel) < 1 or kernel != strides or not flat or any(n % k for n, k in zip(size, kernel)):
        return None
    return size[0] // kernel[0], size[1] // kernel[1]


def _pool_params(imp, node, x: View) -> dict:
    a = _attrs(node)
    kernel = list(a["kernel_shape"])
    if len(kernel) != 2:
        raise imp.fail(f"a {len(kernel)}-D pooling window {kernel}; supported: 2-D pooling")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise imp.fail(f"dilations {list(a['dilations'])} of an {node.op_type}; supported: dilation 1 (MaxPool: any)")
    strides = list(a.get("strides", [1, 1]))
    stride = _equal_pair(imp, strides, "strides")
    pad, ceil_mode = _conv_padding(imp, a, kernel, x.shape[2:], stride), bool(a.get("ceil_mode", 0))
    crop = None
    if isinstance(pad, tuple):
        pad, ceil_mode, crop = _uneven_pool_padding(imp, node, pad, kernel, stride, x.shape[2:])
    return {"kernel": kernel, "stride": strides, "padding": pad, "ceil_mode": ceil_mode, "crop": crop,
            "count_include_pad": bool(a.get("count_include_pad", 0))}


def _uneven_pool_padding(imp, node, pads, kernel, stride: int, size) -> tuple[int, bool, Optional[dict]]:
    """Pads that differ between sides as PyTorch's (padding, ceil_mode) and a crop of its windows,
    or None: TensorFlow's SAME (one more at the bottom and right) is the same windows with
    ceil_mode, where the padding never counts (a maximum, or an average without
    ``count_include_pad``); else, the largest pad on every side then a crop of the windows ONNX
    has (Darknet's 2x2 max pool of stride 1, padded at the bottom and right), when they fall on
    the stride."""
    a, (top, left, bottom, right) = _attrs(node), pads
    counted = node.op_type == "AveragePool" and a.get("count_include_pad", 0)
    want = [pool_out_count(n, kernel[0], stride, lo, hi) for n, lo, hi in zip(size, (top, left), (bottom, right))]
    if kernel[0] == kernel[1] and not a.get("ceil_mode", 0):
        if top == left and _pool_padding_ok(kernel[0], top) and not counted:
            for ceil_mode in (False, True):
                probe = Pool("probe", "encoder", ("x",), "max", kernel=kernel[0], stride=stride, padding=top,
                             ceil_mode=ceil_mode)
                if [probe.window_out(n) for n in size] == want:
                    return top, ceil_mode, None
        p = max(pads)
        if _pool_padding_ok(kernel[0], p) and (p - top) % stride == 0 and (p - left) % stride == 0:
            probe = Pool("probe", "encoder", ("x",), "max", kernel=kernel[0], stride=stride, padding=p)
            y0, x0 = (p - top) // stride, (p - left) // stride
            if all(o + w <= probe.window_out(n) for o, w, n in zip((y0, x0), want, size)):
                return p, False, {"y0": y0, "x0": x0, "out_h": want[0], "out_w": want[1]}
    raise imp.fail(f"padding {list(pads)} differs between sides; supported: the same padding on every side, or pads "
                   f"of at most half the window whose windows fall on the stride (ceil_mode 0)")


def _pool_padding_ok(kernel: int, padding: int) -> bool:
    """Whether the IR's pooling takes ``padding`` (``hw.operators.check_pool_padding``)."""
    try:
        check_pool_padding(kernel, padding)
    except ValueError:
        return False
    return True


def _pool_layer(imp, node, x: View, **kw) -> None:
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Pool, name, inputs=(x.source,), **kw)
    imp.views[node.output[0]] = L.nchw(name, shape)


@_op("MaxPool", "AveragePool")
def _pool(imp, node) -> None:
    if len(node.output) > 1 and node.output[1]:
        raise imp.fail("its indices output; supported: the pooled values only")
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    is_avg = node.op_type == "AveragePool"
    if not is_avg and any(d != 1 for d in _attrs(node).get("dilations", [])):
        return _dilated_max_pool(imp, node, x)
    tiles = _tiling_windows(node, x.shape[2:])
    if is_avg and tiles:
        # windows that tile the image exactly: an adaptive average pool (the form the exporter writes,
        # PSPNet's bins of a map that is not square too)
        return _pool_layer(imp, node, x, mode="adaptive_avg", out_h=tiles[0], out_w=tiles[1])
    a = _attrs(node)
    kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
    if len(kernel) == 2 and (kernel[0] != kernel[1] or strides[0] != strides[1]):
        return _pool_composed(imp, node, x)
    p = _pool_params(imp, node, x)
    kh, sh = p["kernel"][0], p["stride"][0]
    if kh > _pool_side_max():
        raise imp.fail(f"a {kh}x{kh} window; supported: at most {_pool_side_max()} a side (the pooling stage's "
                       f"kernel field; GlobalMaxPool takes a whole image of any size)")
    kw_ = {"count_include_pad": p["count_include_pad"]} if is_avg else {}
    _pool_layer(imp, node, x, mode="avg" if is_avg else "max", kernel=kh, stride=sh, padding=p["padding"],
                ceil_mode=p["ceil_mode"], **kw_)
    if p["crop"]:                       # the windows ONNX has, among those of the padding on every side
        y = node.output[0]
        name = _emit_after(imp, Crop, y, imp.views[y].source, **p["crop"])
        imp.views[y] = L.nchw(name, imp.by_name[name].out_shape)


def _dilated_max_pool(imp, node, x: View) -> None:
    """A max pooling whose window has holes (``dilations``), from existing layers: the image padded,
    each axis, by copies of the edge of its own phase (the last element a whole number of dilations
    away: it is in every window that reaches the padding, so the maximum is ONNX's, whose padding
    never wins), then each output row the largest of the ``kh`` rows its window reads (strided
    slices, compared pairwise by ``_larger``), and the same over columns."""
    y, v = node.output[0], node.input[0]
    for axis, (n, k, d, st, before, out) in enumerate(_dilated_pool_axes(imp, node, x.shape[2:]), 2):
        after = max(0, (out - 1) * st + (k - 1) * d + 1 - before - n)       # the padding some window reads
        if before or after:
            pad = _pad_columns if axis == 3 else _pad_axis_by_concat
            v = pad(imp, node, v, axis, before, after, "edge", f"{y}.padded{axis}", period=d)
        taps = [_part(imp, node, "Slice", [v], f"{y}.axis{axis}.tap{t}", starts=[d * t],
                      ends=[d * t + st * (out - 1) + 1], axes=[axis], steps=[st]) for t in range(k)]
        for tap in taps:
            _as_crop(imp, tap)
        v = taps[0]
        for t in range(1, k):
            v = _larger(imp, node, v, taps[t], y if (t, axis) == (k - 1, 3) else f"{y}.axis{axis}.max{t}")
    if v != y:                                  # a kernel of one along the columns: the rows' maximum
        imp.views[y] = _view(imp, v).named(y)


def _as_crop(imp, name: str) -> None:
    """Value ``name`` (a slice of an image) viewed as an NCHW image of its own (a crop), not as the
    first layout that holds its pixels."""
    imp.views[name] = imp.need(imp.act(name), _nchw_full, "an NCHW image")


def _dilated_pool_axes(imp, node, size) -> list[tuple[int, int, int, int, int, int]]:
    """(length, kernel, dilation, stride, padding before, outputs) of each axis of a dilated max
    pooling; refused where a window reads padding alone (ONNX gives the lowest float there) or
    the padding would need a phase the axis does not have."""
    a = _attrs(node)
    kernel, strides = [int(k) for k in a["kernel_shape"]], [int(v) for v in a.get("strides", [1, 1])]
    dilations = [int(d) for d in a["dilations"]]
    if len(kernel) != 2 or len(strides) != 2 or len(dilations) != 2 or a.get("ceil_mode", 0) or min(dilations) < 1:
        raise imp.fail(f"kernel {kernel}, strides {strides}, dilations {dilations}, ceil_mode {a.get('ceil_mode', 0)}; "
                       f"supported for a dilated max pooling: 2-D, dilations of at least 1, ceil_mode 0")
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = _conv_padding(imp, a, extent, size, strides)
    pads = (pads,) * 4 if isinstance(pads, int) else pads
    axes = []
    for i, (n, k, d, st) in enumerate(zip(size, kernel, dilations, strides)):
        out = pool_out_count(n, extent[i], st, pads[i], pads[i + 2])
        empty = [o for o in range(max(out, 0)) if not any(0 <= o * st - pads[i] + d * t < n for t in range(k))]
        if out < 1 or empty or (d > n and pads[i] + pads[i + 2]):
            raise imp.fail(f"kernel {kernel}, strides {strides}, dilations {dilations}, pads {list(pads)} of a "
                           f"{list(size)} image (axis {i + 2}: {n} long, {max(out, 0)} windows, those reading padding "
                           f"alone {empty}); supported: at least one window, each reading a pixel, and padding only "
                           f"along axes at least one dilation long")
        axes.append((n, k, d, st, pads[i], out))
    return axes


def _pool_composed(imp, node, x: View) -> None:
    """A window that is not square or strides that differ (CRNN's 2x2 max pool of strides (2, 1)), from
    the IR's square pooling: a nearest upsample of the shorter window's axis makes the window square
    (each pixel repeated alike, so the maximum and the mean are the same), the pool runs at the
    strides' common divisor, and a crop keeps the windows ONNX has."""
    a = _attrs(node)
    kernel, strides = [int(k) for k in a["kernel_shape"]], [int(s) for s in a.get("strides", [1, 1])]
    if len(strides) != 2 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise imp.fail(f"kernel {kernel}, strides {strides}, dilations {a.get('dilations')}; supported: 2-D "
                       f"pooling, dilation 1")
    pads = _conv_padding(imp, a, kernel, x.shape[2:], strides)
    pads = (pads,) * 4 if isinstance(pads, int) else pads
    plan = _square_pool_plan(kernel, strides, pads, bool(a.get("ceil_mode", 0)), x.shape[2:],
                             node.op_type == "AveragePool" and bool(a.get("count_include_pad", 0)))
    if plan is None:
        raise imp.fail(f"kernel {kernel}, strides {strides}, pads {list(pads)}, ceil_mode {a.get('ceil_mode', 0)}; "
                       f"supported: a square window lcm(kh, kw) of at most {_pool_side_max()} and an image "
                       f"upsampled to it of at most {AXIS_MAX} a side, pads of at most half that window, and where "
                       f"the padding counts (count_include_pad 1) the same on every side of it, ceil_mode 0")
    y, source = node.output[0], x.source
    if plan["up"] != tuple(x.shape[2:]):        # the window made square
        source = _emit_after(imp, Resize, f"{y}/square", source, out_h=plan["up"][0], out_w=plan["up"][1],
                             mode="nearest")
    mode = {"mode": "avg", "count_include_pad": plan["counted"]} if node.op_type == "AveragePool" else {"mode": "max"}
    name = _emit_after(imp, Pool, f"{y}/pool" if plan["crop"] else y, source, kernel=plan["kernel"],
                       stride=plan["stride"], padding=plan["padding"], ceil_mode=plan["ceil_mode"], **mode)
    if plan["crop"]:                    # the windows ONNX has, every step-th of those at the common stride
        name = _emit_after(imp, Crop, y, name, **plan["crop"])
    imp.views[y] = L.nchw(name, imp.by_name[name].out_shape)


def _pool_side_max() -> int:
    """The largest window side a pooling stage encodes (its field in ``hw.vector.STAGE_PARAMS``)."""
    return (1 << next(bits for name, bits, _ in STAGE_PARAMS[VecOp.POOL] if name == "kernel")) - 1


def _square_pool_plan(kernel, strides, pads, ceil_mode: bool, size, counted: bool) -> Optional[dict]:
    """The upsampled size, square window, common stride, padding and crop that give ONNX's windows
    (the same pixels each, each pixel the same times), or None.  Window ``j`` of an axis upsampled
    by ``f`` starts at ``f * (j * s - lo)``; the IR's window ``y0 + j * step`` at ``(y0 + j * step) * t - p``."""
    side = math.lcm(*kernel)
    f = [side // k for k in kernel]
    big = [fa * s for fa, s in zip(f, strides)]
    lo = [f[0] * pads[0], f[1] * pads[1]]
    t = math.gcd(big[0], big[1], abs(lo[0] - lo[1]))
    p = max(lo)
    want = [pool_out_count(n, k, s, pads[i], pads[i + 2], ceil_mode) for i, (n, k, s) in enumerate(zip(size, kernel, strides))]
    if counted and (ceil_mode or len({f[0] * pads[0], f[0] * pads[2], f[1] * pads[1], f[1] * pads[3]}) != 1):
        return None                     # a counted padding must be the IR's, on every side
    up = (f[0] * size[0], f[1] * size[1])
    if min(want) < 1 or side > _pool_side_max() or max(up) > AXIS_MAX:
        return None
    # more padding than the start needs gives windows further right and down (a pad at the end)
    for p, ceil in itertools.product(range(p, side // 2 + 1, t), (False, True)):
        if counted and p != max(lo):
            break
        origin, step = [(p - lo_a) // t for lo_a in lo], [b // t for b in big]
        need = [o + (w - 1) * st + 1 for o, w, st in zip(origin, want, step)]
        probe = Pool("probe", "encoder", ("x",), "max", kernel=side, stride=t, padding=p, ceil_mode=ceil)
        have = [probe.window_out(n) for n in up]
        if all(h >= n for h, n in zip(have, need)):
            crop = None if have == want and origin == [0, 0] and step == [1, 1] else \
                {"y0": origin[0], "x0": origin[1], "out_h": want[0], "out_w": want[1], "step": tuple(step)}
            return {"up": up, "kernel": side, "stride": t, "padding": p, "ceil_mode": ceil, "crop": crop,
                    "counted": counted}
    return None


@_op("GlobalAveragePool")
def _global_pool(imp, node) -> None:
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    name = _whole_mean(imp, node.output[0], x.source, x.src_shape)
    imp.views[node.output[0]] = L.nchw(name, imp.by_name[name].out_shape)


def _whole_mean(imp, y: str, source: str, src_shape) -> str:
    """Layers giving the mean of each channel of layer ``source`` over every pixel: one adaptive
    average pool, or, over more pixels than a window of the pooling stage holds
    (``POOL_MAX_COUNT``), the mean of each column first (a mean of equal columns' means is the
    mean; a column, ``AXIS_MAX`` pixels at most, fits a window); the last layer's name."""
    h, w, _ = src_shape
    if h * w > POOL_MAX_COUNT:
        source = _emit_after(imp, Pool, f"{y}/columns", source, mode="adaptive_avg", out_h=1, out_w=w)
    return _emit_after(imp, Pool, y, source, mode="adaptive_avg", out_h=1, out_w=1)


@_op("GlobalMaxPool")
def _global_max_pool(imp, node) -> None:
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    name = _whole_max(imp, node.output[0], x.source, x.src_shape)
    imp.views[node.output[0]] = L.nchw(name, imp.by_name[name].out_shape)


def _whole_max(imp, y: str, source: str, src_shape) -> str:
    """Layers giving the largest value of each channel of layer ``source`` over every pixel: one
    window of the whole image, or, beyond the largest window a pooling stage encodes, windows of
    at most that side (each ``ceil_mode``: a last window past the image takes what it holds) until
    one pixel is left; the last layer's name.  The IR's windows are square: an image that is not is
    first made so by a nearest upsample of its shorter axis (every pixel kept, some repeated, which
    leaves the maximum as it was)."""
    h, w, _ = src_shape
    n = max(h, w)
    if h != w:
        source = _emit_after(imp, Resize, f"{y}/square", source, out_h=n, out_w=n, mode="nearest")
    while n > _pool_side_max():
        k = -(-n // -(-n // _pool_side_max()))          # the fewest windows, of sides as equal as can be
        source = _emit_after(imp, Pool, f"{y}/max_of_{k}", source, mode="max", kernel=k, stride=k, ceil_mode=True)
        n = pool_out_size(n, k, k, 0, True)             # the windows of that pool
    return _emit_after(imp, Pool, y, source, mode="max", kernel=n, stride=n)


@_op("AdaptiveAveragePool", domain=_CUSTOM)
def _adaptive_pool(imp, node) -> None:
    x = imp.need(imp.act(node.input[0]), _nchw_full, "an NCHW image")
    oh, ow = _attrs(node)["output_size"]
    _pool_layer(imp, node, x, mode="adaptive_avg", out_h=int(oh), out_w=int(ow))


@_op("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceMax")
def _reduce(imp, node) -> None:
    """A mean or sum over every pixel, row or column of each channel (average pooling, times their
    count for a sum), or over every channel of each pixel (a product by constant weights of ones);
    ``ReduceSumSquare`` squares first and ``ReduceL2`` also takes the square root (tables); a max
    over every pixel of a square image is a max pooling, one over every channel a tree of comparisons."""
    v, a, op, y = imp.act(node.input[0]), _attrs(node), node.op_type, node.output[0]
    axes = _input_list(imp, node, 1, "axes") if imp.opset >= (13 if op == "ReduceSum" else 18) else a.get("axes")
    if not axes and a.get("noop_with_empty_axes", 0):       # ONNX: no axes then means no reduction
        if op in ("ReduceSumSquare", "ReduceL2"):
            raise imp.fail("no axes with noop_with_empty_axes; supported: a reduction over some axes")
        return _out(imp, node, v)
    axes = sorted({_axis(imp, x, len(v.shape)) for x in (axes or range(len(v.shape)))})
    x = node.input[0]
    if op == "ReduceL2" and _normalised_rows(imp, node, v, axes, a.get("keepdims", 1)):
        return
    if op in ("ReduceSumSquare", "ReduceL2"):
        x = _part(imp, node, "Pow", [x, _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square")
    summed = f"{y}.sum" if op == "ReduceL2" else y
    reduced = _part(imp, node, op if op in ("ReduceMean", "ReduceMax") else "ReduceSum", [x], summed, axes=axes,
                    keepdims=a.get("keepdims", 1), handler=_reduce_axes)
    if op == "ReduceL2":
        _part(imp, node, "Sqrt", [reduced], y)


def _normalised_rows(imp, node, v: View, axes: list[int], keep: int) -> bool:
    """``F.normalize`` along rows of consecutive channels of a tensor (SwinV2's cosine attention: q
    and k, each head's channels of a token), ``x / expand(clip(ReduceL2(x), eps))`` read by that
    division alone: the square (a table), each row's sum of squares repeated over the row (a 1x1
    convolution of ones in a group per row, so the factor lies as x does: IR broadcasting repeats
    whole channel sets, not each channel), ``1 / sqrt(sum + eps**2)`` (a table) and the product.
    True when ``node`` (the ``ReduceL2``) is such a normalisation's and it is imported."""
    chain = _normalize_chain(imp, node, v, axes, keep)
    k = v.shape[-1]
    if chain is None or L.channel_rows(v, len(v.shape) - 1, k) is None:
        return False
    eps, members, div = chain
    x = _whole(imp, v)
    if x is None or L.channel_rows(x, len(x.shape) - 1, k) is None:
        return False
    y = node.output[0]
    imp.views[f"{y}.rows"] = x
    square = _part(imp, node, "Pow", [f"{y}.rows", _scalar_const(imp, f"{y}.two", 2.0)], f"{y}.square")
    imp._set_const(f"{y}.ones", np.ones((k, k), np.float32))
    summing = helper.make_node("MatMul", [square, f"{y}.ones"], [f"{y}.sums"], name=f"{node.name}.sums")
    with _reading(imp, summing):
        if not _conv_of_rows(imp, summing, _view(imp, square), np.ones((k, k, 1, 1), np.float32), None, {}, linear=True):
            raise imp.fail(f"the sums of squares of rows of {k} channels of a {list(v.shape)} tensor could not be "
                           f"laid out as its rows")
    factor = _part(imp, node, "Rsqrt", [f"{y}.sums"], f"{y}.rsqrt",
                   handler=lambda imp, n: _elementwise_unary(imp, n, "rsqrt", (eps * eps,)))
    imp.done.update(members)
    _part(imp, div, "Mul", [f"{y}.rows", factor], div.output[0])
    return True


def _normalize_chain(imp, node, v: View, axes: list[int], keep: int):
    """(eps, the nodes after it, the division) when the ``ReduceL2`` ``node`` over the last axis of
    ``v`` is read by ``Clip(min=eps)``, an optional ``Expand`` to ``v``'s shape and ``x / that`` alone
    (``F.normalize(x, dim=-1)``'s export), else None."""
    j_clip, clip = imp.only_consumer(node.output[0], "Clip")
    if axes != [len(v.shape) - 1] or not keep or clip is None or imp.opset < 11:
        return None
    # (the nodes come after this one: their constants and the Shape of x not imported yet)
    low, high = (constant_value(imp, clip.input[k]) if len(clip.input) > k and clip.input[k] else None for k in (1, 2))
    j_exp, expand = imp.only_consumer(clip.output[0], "Expand")
    after = clip.output[0] if expand is None else expand.output[0]
    j_div, div = imp.only_consumer(after, "Div")
    if low is None or np.size(low) != 1 or not 0 < float(np.ravel(low)[0]) < 1e-3 or high is not None or \
            div is None or list(div.input) != [node.input[0], after]:
        return None
    if expand is not None:                  # to x's shape: the Shape of x, or a constant it broadcasts to
        j_shape = imp.producer(expand.input[1])
        shape = imp.nodes[j_shape] if j_shape is not None else None
        to = constant_value(imp, expand.input[1])
        of_x = shape is not None and shape.op_type == "Shape" and list(shape.input) == [node.input[0]] and \
            not shape.attribute
        if not of_x and (to is None or tuple(np.broadcast_shapes(v.shape, tuple(np.ravel(to)))) != v.shape):
            return None
    return float(np.ravel(low)[0]), {j for j in (j_clip, j_exp, j_div) if j is not None}, div


def _scalar_const(imp, name: str, value: float) -> str:
    imp._set_const(name, np.array(value, np.float32))
    return name


def _part(imp, node, op: str, inputs: list, out: str, handler=None, **attrs) -> str:
    """Import ``op``, one step of ``node`` computing ``out``, as the importer imports a node of the
    file (``handler``: other than ``op``'s); returns ``out``."""
    # named as the file's node where it is that node's operator, so that a refusal names that node
    part = helper.make_node(op, inputs, [out], name=node.name if op == node.op_type else f"{node.name}.{op}", **attrs)
    with _reading(imp, part):
        (handler or HANDLERS[("", op)])(imp, part)
    return out


def _reduce_axes(imp, node) -> None:
    """A ``ReduceMean``, ``ReduceSum`` or ``ReduceMax`` whose axes are an attribute (``_reduce``'s steps)."""
    v, a = imp.act(node.input[0]), _attrs(node)
    axes, keep, y = list(a["axes"]), a["keepdims"], node.output[0]
    plan = _mean_plan(v, axes)
    if plan is None and not L.covers(v):        # some tokens or pixels (x[:, 1:] after a class token): a crop's
        whole = imp.materialise(v, lambda u: _mean_plan(u, axes) is not None)
        if whole is not None:
            v, plan = whole, _mean_plan(whole, axes)
    total, peak = node.op_type == "ReduceSum", node.op_type == "ReduceMax"
    if peak and plan is None and _channel_max(imp, node, v, axes, keep):
        return
    if peak and plan is None:
        raise imp.fail(f"a max over axes {axes} of a {list(v.shape)} tensor; supported: over all pixels of each "
                       f"channel (max pooling), all rows or all columns of each channel, or over all channels of "
                       f"each pixel")
    if plan is None:
        if _channel_reduction(imp, node, v, axes, keep, 1.0 if total else 1.0 / math.prod(v.shape[i] for i in axes)):
            return
        raise imp.fail(f"a {node.op_type[6:].lower()} over axes {axes} of a {list(v.shape)} tensor; supported: over "
                       f"all pixels, all rows or all columns of each channel (average pooling), or over all "
                       f"channels of each pixel")
    (oh, ow), out_idx = plan
    if peak:
        name = _whole_max(imp, y, v.source, v.src_shape) if (oh, ow) == (1, 1) else _line_max(imp, node, v, oh, y)
        shape = imp.by_name[name].out_shape
    elif (oh, ow) == (1, 1):
        name = _whole_mean(imp, f"{y}.mean" if total else y, v.source, v.src_shape)
        shape = imp.by_name[name].out_shape
    else:
        name = imp.layer_name(f"{y}.mean" if total else y)
        shape = imp.emit(Pool, name, inputs=(v.source,), mode="adaptive_avg", out_h=oh, out_w=ow)
    out_shape = tuple(1 if i in axes else n for i, n in enumerate(v.shape))
    idx = out_idx.reshape(out_shape)
    mean = L.from_indices(name, shape, idx if keep else idx.reshape([n for i, n in enumerate(out_shape) if i not in axes]))
    if not total:
        imp.views[y] = mean
        return
    imp.views[f"{y}.mean"] = mean
    count = math.prod(v.shape[i] for i in axes)
    _binary(imp, helper.make_node("Mul", [f"{y}.mean", _scalar_const(imp, f"{y}.count", count)], [y],
                                  name=f"{node.name}.count"))


def _channel_reduction(imp, node, v: View, axes: list[int], keep: int, weight: float) -> bool:
    """A sum over every channel of each pixel of a whole tensor (some channels of one: a slice of
    it), times ``weight``: a product by constant weights (exact: one int8 weight repeated); False
    when ``axes`` are not its channels."""
    formed = _formed(imp, v)
    form = _form_of(formed) if formed is not None else None
    if form is None or axes != [_FORMS[form][1]]:
        return False
    c, y = v.shape[axes[0]], node.output[0]
    summed = y if keep else f"{y}.kept"
    image = form in ("nchw", "channels_first")          # channels on axis 1: a convolution of the image
    if not image and axes[0] != len(v.shape) - 1:
        return False
    w = f"{y}.ones"
    imp._set_const(w, np.full((1, c, 1, 1) if image else (c, 1), weight, np.float32))
    if form == "channels_first":                        # [1, C, H*W]: the image's, then the same form
        o = _view(imp, _part(imp, node, "Conv", [_image_of(imp, node.input[0], formed), w], f"{y}.image"))
        imp.views[summed] = _FORMS[form][0](o.source, o.src_shape).named(summed)
    else:
        _part(imp, node, "Conv" if image else "MatMul", [node.input[0], w], summed)
    if not keep:
        kept = _view(imp, summed)
        _reshape_to(imp, node, kept, [n for i, n in enumerate(kept.shape) if i != axes[0]])
    return True


def _channel_max(imp, node, v: View, axes: list[int], keep: int) -> bool:
    """The largest of every channel of each pixel (CBAM's spatial attention, ``amax(x, 1)``) of a whole
    tensor: its first and last ``ceil(C / 2)`` channels compared until one channel is left (the
    halves overlap by a channel when C is odd; a max is the same), each step ``_larger`` of two
    channel slices (views); False when ``axes`` are not its channels."""
    formed = _formed(imp, v)
    form = _form_of(formed) if formed is not None else None
    if form is None or axes != [_FORMS[form][1]]:
        return False
    axis, y = axes[0], node.output[0]
    x = _halving_max(imp, node, node.input[0], axis, v.shape[axis], y, y if keep else None)
    if not keep:
        kept = _view(imp, x)
        _reshape_to(imp, node, kept, [k for i, k in enumerate(kept.shape) if i != axis])
    elif x != y:                                 # one channel already: the tensor itself
        _out(imp, node, _view(imp, x))
    return True


def _halving_max(imp, node, x: str, axis: int, n: int, base: str, last: Optional[str], image: bool = False) -> str:
    """The largest of the ``n`` elements along ``axis`` of value ``x``: its first and last ``ceil(n / 2)``
    compared (they overlap by one when n is odd; a max is the same) until one is left, each step
    ``_larger`` of two slices (with ``image``, each made an NCHW image: a crop, not the first layout
    that holds its pixels); the value holding it (``x`` when n is 1), the last step's named ``last``
    (else ``base.max<step>``, as the others)."""
    step = 0
    while n > 1:
        half, step = -(-n // 2), step + 1
        halves = [_slice_part(imp, node, x, axis, lo, lo + half, f"{base}.max{step}.{end}")
                  for lo, end in ((0, "low"), (n - half, "high"))]
        for part in halves if image else ():
            _as_crop(imp, part)
        x, n = _larger(imp, node, *halves, last if half == 1 and last else f"{base}.max{step}"), half
    return x


def _line_max(imp, node, v: View, out_h: int, y: str) -> str:
    """The largest of each column's rows (``out_h`` 1) or of each row's columns of the image ``v``'s
    values are (``amax`` over H or W of NCHW): :func:`_halving_max` along that axis, ``ceil(log2)``
    steps of three vector passes; the layer holding the ``1 x W`` or ``H x 1`` maxima."""
    h, w, _ = v.src_shape
    axis, n = (2, h) if out_h == 1 else (3, w)
    line = _halving_max(imp, node, _image_of(imp, node.input[0], v), axis, n, f"{y}.line", None, image=True)
    return imp.act(line).source


def _larger(imp, node, a: str, b: str, out: str, smaller: bool = False) -> str:
    """``max(a, b)`` element by element as ``b + relu(a - b)``: the subtraction (``a + (-b)``: a product
    by -1 and an add, whose pass applies the ReLU) and an add, three vector passes of the halves'
    size.  Exact in float; each step int8 at its own scale on the accelerator.  (A linear layer of
    weights +1 and -1 for ``relu(a - b)`` instead costs as much on E and 3x on tiny, in MACs.)
    With ``smaller``, ``min(a, b)`` as ``a - relu(a - b)`` (one negation more)."""
    diff = _view(imp, _part(imp, node, "Sub", [a, b], f"{out}.diff"))
    name = imp.layer_name(f"{out}.relu")
    shape = imp.emit(Activation, name, func="relu", inputs=(diff.source,),
                     fused=isinstance(imp.by_name.get(diff.source), Add))
    imp.views[f"{out}.relu"] = diff.on(name, shape)
    if smaller:
        return _part(imp, node, "Sub", [a, f"{out}.relu"], out)
    return _part(imp, node, "Add", [f"{out}.relu", b], out)


@_op("Where")
def _where(imp, node) -> None:
    """``where(cond, x, y)`` of a constant condition (a mask the model holds): each operand that is an
    activation times the mask of the elements it gives (``cond`` for ``x``, ``not cond`` for ``y``),
    plus the constant operand where it is taken, zeros elsewhere: products and an add by constants."""
    if not imp.is_const(node.input[0]):
        raise imp.fail(f"a condition computed in the network ({node.input[0]!r}); supported: a constant "
                       f"condition")
    cond = imp.array(node.input[0]).astype(bool)
    y, terms, fill = node.output[0], [], np.float32(0)
    for k, taken in ((1, cond), (2, ~cond)):
        name = node.input[k]
        if imp.is_const(name):
            fill = np.where(taken, imp.array(name).astype(np.float32), fill)
        elif taken.all():
            terms.append(name)
        elif taken.any():
            mask = f"{y}.mask{k}"
            imp._set_const(mask, taken.astype(np.float32))
            terms.append(_part(imp, node, "Mul", [name, mask], f"{y}.{k}"))
    if len(terms) == 2:
        terms = [_part(imp, node, "Add", terms, y if not np.any(fill) else f"{y}.sum")]
    if np.any(fill):
        imp._set_const(f"{y}.fill", np.asarray(fill, np.float32))
        _part(imp, node, "Add", [terms[0], f"{y}.fill"], y)
    elif terms[0] != y:
        with _reading(imp, helper.make_node("Identity", [terms[0]], [y], name=node.name)) as same:
            _alias(imp, same)


@_op("Max", "Min")
def _max_min(imp, node) -> None:
    """The largest (smallest) of activations and scalar constants (``torch.maximum(x, c)``,
    ``torch.max(a, b)``): the activations pairwise by :func:`_larger`, then a clip by the constants'
    bound (a ``Max`` by 0 is a ReLU, as ``Clip`` is)."""
    ins = [n for n in node.input if n]
    consts = [n for n in ins if imp.is_const(n)]
    acts = [n for n in ins if n not in consts]
    shaped = [list(imp.array(n).shape) for n in consts if imp.array(n).size != 1]
    if shaped:
        raise imp.fail(f"constant operands of shapes {shaped}; supported: activations and scalar constants")
    smaller = node.op_type == "Min"
    y = node.output[0]
    last = y if not consts else f"{y}.{node.op_type.lower()}"
    total = acts[0]
    for k, x in enumerate(acts[1:], 1):
        total = _larger(imp, node, total, x, last if k == len(acts) - 1 else f"{y}.{k}", smaller)
    if not consts:
        return None if len(acts) > 1 else _alias(imp, node)
    values = [float(imp.array(n).reshape(-1)[0]) for n in consts]
    low, high = (-math.inf, min(values)) if smaller else (max(values), math.inf)
    func, params = ("relu", ()) if (low, high) == (0, math.inf) else ("clip", (low, high))
    with _reading(imp, helper.make_node("Clip", [total], [y], name=node.name)) as clip:
        _elementwise_unary(imp, clip, func, params)


def _mean_plan(v: View, axes: list[int]):
    """((out_h, out_w), index of each mean in the pooled tensor) when the mean over ``axes`` is an
    adaptive average pool to 1 x 1, 1 x W or H x 1 of ``v``'s tensor, else None."""
    if not L.covers(v):
        return None
    h, w, c = v.src_shape
    idx = np.moveaxis(L.indices(v), axes, list(range(-len(axes), 0)))
    groups = idx.reshape(-1, math.prod(v.shape[a] for a in axes))
    y, x, ch = groups // (w * c), (groups // c) % w, groups % c
    for oh, ow in ((1, 1), (1, w), (h, 1)):
        if groups.shape[1] != (h // oh) * (w // ow) or (ch != ch[:, :1]).any():
            continue
        if (oh == h and (y != y[:, :1]).any()) or (ow == w and (x != x[:, :1]).any()):
            continue
        yo, xo = (y[:, 0] if oh == h else 0), (x[:, 0] if ow == w else 0)
        return (oh, ow), (yo * ow + xo) * c + ch[:, 0]
    return None


# ---- concatenation and padding ---------------------------------------------------------------------

#: Whole-tensor forms with their channel axis: how a Concat along channels reads its inputs.
_FORMS: dict[str, tuple[Callable, int]] = {
    "nchw": (L.nchw, 1), "nhwc": (L.nhwc, 3), "tokens": (L.tokens, 2),
    "rows": (lambda s, sh: L.identity(s, sh, (sh[0] * sh[1], sh[2]), (sh[2], 1)), 1),
    "seq": (lambda s, sh: L.identity(s, sh, (sh[0] * sh[1], 1, sh[2]), (sh[2], sh[2], 1)), 2),
    # [1, C, H*W]: an NCHW image's flattened pixels (YOLOv8's decoded anchors)
    "channels_first": (lambda s, sh: L.identity(s, sh, (1, sh[2], sh[0] * sh[1]), (sh[0] * sh[1] * sh[2], 1, sh[2])), 1),
}


def _form_of(v: View) -> Optional[str]:
    for name, (make, _) in _FORMS.items():
        if L.is_form(v, make(v.source, v.src_shape)):
            return name
    return None


@_op("Concat")
def _concat(imp, node) -> None:
    views = [_view(imp, n) for n in node.input if n]
    axis = _axis(imp, _attrs(node)["axis"], len(views[0].shape))
    single = len(views) == 1 and _form_of(views[0]) is not None and _FORMS[_form_of(views[0])][1] == axis
    if len({v.source for v in views}) == 1 and not imp.is_const(node.input[0]) and not single:
        joined = _settle(imp, L.concat_same(views, axis).named(node.output[0]))
        if joined.strided or not (_whole_channel_parts(views, axis) or _nchw_channels(views, axis)):
            return _out(imp, node, joined)
        # parts of one tensor repeated along the channels (Concat([x, x]), of a crop too): a
        # concatenation, its parts formed (layout layers) and copies made
    _concat_layers(imp, node, views, axis)


def _concat_layers(imp, node, views: list[View], axis: int) -> None:
    """A concatenation of pixels or channels, its parts made whole tensors (layout layers, copies)."""
    if _pixel_concat(imp, node, views, axis) or _concat_viewed(imp, node, views, axis):
        return
    # a concatenation of channels is a layer (of one input too: it moves no data, fusion makes it zero-copy)
    views = _own_parts(imp, node, _channel_parts(imp, node, axis))
    forms = {_form_of(v) for v in views}
    form = forms.pop() if len(forms) == 1 else None
    if form is None or _FORMS[form][1] != axis:
        raise imp.fail(f"a concatenation along axis {axis} of tensors in different layouts or not along their "
                       f"channels; supported: channels of whole tensors (and parts of one tensor, a view), or "
                       f"the pixels of tensors of equal channels one after the other, each in raster order")
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Concat, name, inputs=tuple(v.source for v in views))
    imp.views[node.output[0]] = _FORMS[form][0](name, shape)


def _pixel_concat(imp, node, views: list[View], axis: int) -> bool:
    """Whole tensors of equal channels whose pixels ``axis`` runs through in blocks (YOLOv8's and
    SSD's levels of anchors, token sequences one after the other; a part that is some of a tensor's
    pixels, a layout layer's output): a concatenation of pixels, viewed as the parts are.  False
    when the node is no such concatenation, or one of channels."""
    if _whole_channel_parts(views, axis):
        return False
    whole = [v if L.covers(v) else imp.layout_match(v) for v in views]    # some tokens: a crop's (DINOv2's
    if None in whole:                                                      # cat(x[:, :1], registers, x[:, 1:]))
        return False
    index, laid = L.pixel_concat(whole, axis), {}
    if index is None:           # constants laid out as a computed part's pixels, when theirs do not fit
        laid = _constants_as_pixels(imp, views, whole, axis)
        index = L.pixel_concat([laid.get(i, w) for i, w in enumerate(whole)], axis) if laid else None
    if index is None:
        return False
    names = [n for n in node.input if n]
    parts = [_constant_layer_of(imp, n, laid[i]) if i in laid else imp.act(n) for i, n in enumerate(names)]
    parts = _own_parts(imp, node, [p if L.covers(p) else imp.materialise(p) for p in parts])
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Concat, name, inputs=tuple(v.source for v in parts), along="pixels")
    imp.views[node.output[0]] = L.from_indices(name, shape, index)
    return True


def _concat_viewed(imp, node, views: list[View], axis: int) -> bool:
    """Whole tensors in an order no form or layout layer gives (YOLOv5's decoded xy, wh and conf,
    ``[1, na, ny, nx, k]`` of channels ``(k, na)``; its levels ``[1, na * ny * nx, no]``): a
    concatenation of their channels when ``axis`` runs through each pixel's channels, else of their
    pixels (equal channels), viewed where it holds each part's elements; a part that is some
    channels of a tensor copied (``_requantised_copy``).  False when a form or layout layer suits a
    part (the concatenations above), or for constant parts."""
    if any(_constant_values(imp, v) is not None for v in views) or \
            not any(L.covers(v) and not _is_formed(v) and imp.layout_match(v, _is_formed) is None for v in views):
        return False
    whole = [v if L.covers(v) else imp.layout_match(v) for v in views]
    if None in whole:
        return False
    shapes = [v.src_shape for v in whole]
    within = all(not np.diff(L.indices(v) // v.src_shape[2], axis=axis).any() for v in whole)
    if within and len({s[:2] for s in shapes}) == 1:
        along, starts = "channels", np.cumsum([0] + [s[2] for s in shapes])
        index = [(L.indices(v) // s[2]) * starts[-1] + start + L.indices(v) % s[2]
                 for v, s, start in zip(whole, shapes, starts)]
    elif not within and len({s[2] for s in shapes}) == 1:
        along, starts = "pixels", np.cumsum([0] + [math.prod(s) for s in shapes])
        index = [L.indices(v) + start for v, start in zip(whole, starts)]
    else:
        return False
    parts = _own_parts(imp, node, [v if L.covers(v) else _requantised_copy(imp, node, v, i)
                                   for i, v in enumerate(views)])
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Concat, name, inputs=tuple(v.source for v in parts), along=along)
    imp.views[node.output[0]] = L.from_indices(name, shape, np.concatenate(index, axis))
    return True


def _requantised_copy(imp, node, v: View, i: int) -> View:
    """Part ``i`` of a concatenation, some channels of a tensor (a view), copied into it by the table of
    ``x ** 1``, which requantises: a copy that keeps its scale (a ``Pad``) would put the whole tensor
    in the concatenation's scale group wherever a layer reads the concatenation (one only the host
    reads ties none, ``mapper.calibrate.host_read_concats``, but its readers are not imported yet:
    the import makes the copy a plain one there, ``onnx_import._plain_host_copies``), and YOLOv5's
    sigmoid, read for xy and wh too, would be quantised at the step of the boxes' pixels (a product
    by 1 would be refused where the part's values are all below half that step, as a confidence is
    at 640x640)."""
    part = imp.materialise(v)
    if imp.by_name[part.source].kind not in VIEW_KINDS:       # a layout layer's output: written in place
        return part
    name = imp.layer_name(f"{node.output[0]}.copy{i}")
    imp.requantised_copies.add(name)
    return part.on(name, imp.emit(Activation, name, func="pow", inputs=(part.source,), params=(1.0,)))


def _constants_as_pixels(imp, views: list[View], whole: list[View], axis: int) -> dict[int, View]:
    """For each constant part, a view of a placeholder tensor ``?`` whose elements along ``axis`` are
    blocks laid out as those of the first computed part (whole, ``whole``) are: rows of an NHWC map,
    pixels of a ``[1, C, H*W]`` one; its values go there (``_constant_layer_of``)."""
    const = [_constant_values(imp, v) is not None for v in views]
    model = next((w for w, k in zip(whole, const) if not k), None)
    if model is None or (_form_of(model) is not None and _FORMS[_form_of(model)][1] == axis):
        return {}                       # along a computed part's channels: a concatenation of channels
    blocks = np.moveaxis(L.indices(model), axis, 0)
    first, c, rest = blocks[0].ravel(), model.src_shape[2], blocks.shape[1:]
    if first.size % c or not np.array_equal(np.sort(first), np.arange(first.size)):
        return {}                       # the blocks below are laid out from the placeholder's start
    laid = {}
    for i, v in enumerate(views):
        if const[i] and np.delete(v.shape, axis).tolist() == list(rest):
            n = v.shape[axis]
            idx = (np.arange(n)[:, None] * first.size + first).reshape((n, *rest))
            laid[i] = L.from_indices("?", (n * first.size // c, 1, c), np.moveaxis(idx, 0, axis))
    return laid


def _constant_layer_of(imp, name: str, laid: View) -> View:
    """``laid`` (a view of a placeholder) on a Constant layer that holds constant ``name``'s values
    where ``laid`` reads them."""
    values = _constant_values(imp, _view(imp, name))
    data = np.empty(math.prod(laid.src_shape), np.float32)
    data[L.indices(laid).ravel()] = values.ravel()
    v = imp.value(name)
    base = v.source if imp.sources[v.source].kind == "const" else name
    return laid.on(imp.constant_layer(base, data.reshape(laid.src_shape), None), laid.src_shape)


def _channel_parts(imp, node, axis: int) -> list[View]:
    """The parts of a concatenation of channels: computed ones whole tensors in one of the forms
    (``_joined_slices``), a constant one laid out as they are (NHWC, tokens, ...: an initializer
    takes the NCHW form by default, ``onnx_import._default_layout``)."""
    names = [n for n in node.input if n]
    values = {n: _constant_values(imp, _view(imp, n)) for n in names}
    parts: list = []                    # views of computed parts; constants' names, laid out below
    for computed, run in itertools.groupby(names, lambda n: values[n] is None):
        parts += _joined_slices(imp, [imp.act(n) for n in run], axis) if computed else list(run)
    first = next((p for p in parts if isinstance(p, View)), None)
    form = _form_of(first) if first is not None else None
    if form is None or _FORMS[form][1] != axis:         # refused by the caller unless all are constants
        return [p if isinstance(p, View) else imp.act(p) for p in parts]
    return [p if isinstance(p, View) else _constant_in_form(imp, p, form, first.src_shape[:2]) for p in parts]


def _constant_values(imp, v: View) -> Optional[np.ndarray]:
    """The values ``v`` holds when its tensor is a constant (an initializer, a Constant layer), else None."""
    src, layer = imp.sources[v.source], imp.by_name.get(v.source)
    if src.kind == "const":
        return L.gather(v, src.data.ravel())
    if layer is not None and layer.kind == "constant":
        return L.gather(v, np.ascontiguousarray(imp.weights[v.source]["data"]).ravel())
    return None


def _constant_in_form(imp, name: str, form: str, hw: tuple[int, int]) -> View:
    """Constant part ``name`` as a whole tensor of ``hw`` pixels in ``form``: its view as it is
    when it is one already (its layer, shared), else a Constant layer holding its values in the
    places that form reads them."""
    make, axis = _FORMS[form]
    v = imp.value(name)
    shape = (*hw, v.shape[axis] if len(v.shape) > axis else 0)
    if tuple(v.src_shape) == shape and L.is_form(v, make(v.source, shape)):
        return imp.act(name)
    laid = make("?", shape)
    if laid.shape != v.shape:
        raise imp.fail(f"constant part {name!r} of shape {list(v.shape)} cannot be laid out as the other "
                       f"parts are ({form}, {hw[0]}x{hw[1]} pixels, {list(laid.shape)} for its channels); "
                       f"supported: a constant of the other parts' shape but along the concatenation's axis {axis}")
    return _constant_layer_of(imp, name, laid)


def _nchw_channels(views: list[View], axis: int) -> bool:
    """Whether the parts are NCHW images (of some layout) concatenated along their channels: along
    axis 1 each part's pixel stays (an NHWC tensor's rows, Swin's roll, are no channels)."""
    def along_channels(v: View) -> bool:
        pixel = L.indices(v) // v.src_shape[2]
        return bool(np.all(pixel[:, 1:] == pixel[:, :-1]))
    return axis == 1 and all(len(v.shape) == 4 and v.shape[0] == 1 and along_channels(v) for v in views)


def _whole_channel_parts(views: list[View], axis: int) -> bool:
    """Whether every part is a whole tensor in one form whose channels ``axis`` is."""
    forms = {_form_of(v) for v in views}
    return len(forms) == 1 and None not in forms and _FORMS[forms.pop()][1] == axis


def _joined_slices(imp, views: list[View], axis: int) -> list[View]:
    """The parts with neighbours from one tensor joined when they hold its channels in order
    (YOLOv8's ``Concat([*x.chunk(2, 1), m1(x_b), ...])`` reads all of ``x`` first), and a part that
    is some channels of its tensor a :class:`~mapper.ir.ChannelSlice` of it."""
    runs: list[list[View]] = []
    for v in views:
        if runs and runs[-1][0].source == v.source:
            runs[-1].append(v)
        else:
            runs.append([v])
    out = []
    for run in runs:
        whole = _formed(imp, L.concat_same(run, axis)) if len(run) > 1 else None
        out += [whole] if whole is not None else \
            [imp.need(v, _is_formed, "whole channels of a tensor, in order") for v in run]
    return out


def _is_formed(v: View) -> bool:
    return _form_of(v) is not None


def _formed(imp, v: View) -> Optional[View]:
    """``v`` when it is a whole tensor in one of the forms, else a layout layer's output that is."""
    return v if _is_formed(v) else imp.materialise(v, _is_formed)


def _own_parts(imp, node, views: list[View]) -> list[View]:
    """Each concatenation's parts its own: a tensor lives in one concatenation's buffer
    (``mapper.layout``), so a part that another concatenation, or this one, holds already is
    copied: a constant into a Constant layer of its own, a computed tensor by a Pad to its own
    size (a copy on the vector unit); so is the model's input, which no layer computes."""
    taken = {s for layer in imp.layers if layer.kind == "concat" for s in layer.inputs} | \
        {layer.name for layer in imp.layers if layer.kind in VIEW_KINDS} | {INPUT}  # a view of another buffer
    own = []
    for i, v in enumerate(views):
        if v.source in taken:
            layer, base = imp.by_name.get(v.source), f"{node.output[0]}.copy{i}"
            h, w, _ = imp.sources[v.source].shape
            if layer is not None and layer.kind == "constant":
                copy = imp.constant_layer(base, imp.weights[v.source]["data"], None)
            else:
                copy = imp.layer_name(base)
                imp.emit(Pad, copy, inputs=(v.source,), out_h=h, out_w=w)
            v = v.on(copy, imp.sources[v.source].shape)
        taken.add(v.source)
        own.append(v)
    return own


@_op("Pad")
def _pad(imp, node) -> None:
    """Zeros after an NCHW or NHWC image's last row and column: a ``Pad`` layer; zeros that only
    convolutions read: their own padding; any other constant along one axis: a concatenation;
    modes ``reflect`` and ``edge``: copies of the input's rows, columns or channels (``_pad_by_copies``)."""
    v = imp.act(node.input[0])
    v = _formed(imp, v) or v                 # some channels of a tensor: a slice of it
    rank = len(v.shape)
    pads = _pads_of_every_axis(imp, node, _input_list(imp, node, 1, "pads"), rank)
    if not any(pads):
        return _out(imp, node, v)
    mode = _pad_mode(imp, node)
    if mode != "constant":
        return _pad_by_copies(imp, node, v, pads[:rank], pads[rank:], mode)
    value = _pad_value(imp, node)
    if value == 0 and _pad_into_convolutions(imp, node, pads):
        return
    form = _form_of(v)
    spatial = {"nchw": (2, 3), "nhwc": (1, 2)}.get(form)
    begin, end = pads[:rank], pads[rank:]
    if value != 0 or spatial is None or any(begin) or any(e for i, e in enumerate(end) if i not in spatial) or min(end) < 0:
        return _pad_by_concat(imp, node, v, begin, end, value)
    h, w, _ = v.src_shape
    name = imp.layer_name(node.output[0])
    shape = imp.emit(Pad, name, inputs=(v.source,), out_h=h + end[spatial[0]], out_w=w + end[spatial[1]])
    imp.views[node.output[0]] = _FORMS[form][0](name, shape)


def _pad_mode(imp, node) -> str:
    """The ``Pad``'s mode; ``wrap`` (opset 19) and anything else is refused."""
    mode = _attrs(node).get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise imp.fail(f"mode {mode!r}; supported: modes 'constant', 'reflect' and 'edge'")
    return mode


def _pad_value(imp, node) -> float:
    """The value a ``Pad`` of mode ``constant`` pads with (input 3 from opset 11, else ``value``)."""
    a = _attrs(node)
    value = imp.optional_array(node, 2) if imp.opset >= 11 else np.array(a.get("value", 0.0))
    if value is not None and np.asarray(value).size != 1:
        raise imp.fail(f"mode 'constant' with value {value}; supported: one value")
    return 0.0 if value is None else float(np.asarray(value).ravel()[0])


def _pads_of_every_axis(imp, node, pads: list[int], rank: int) -> list[int]:
    """``pads`` (begins, then ends) of the axes opset 18's ``axes`` input lists, as pads of every axis."""
    axes = _input_list(imp, node, 3, "axes") if len(node.input) > 3 and node.input[3] else None
    if axes is None:
        return pads
    axes = [_axis(imp, ax, rank) for ax in axes]
    if len(set(axes)) != len(axes) or len(pads) != 2 * len(axes):
        raise imp.fail(f"pads {pads} for axes {axes}; supported: two pads (begin, end) for each of distinct axes")
    full = [0] * (2 * rank)
    for i, ax in enumerate(axes):
        full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
    return full


def _pad_by_concat(imp, node, v: View, begin: list[int], end: list[int], value: float) -> None:
    """Padding by any constant (a channel of ones appended to an image) along axes other than the
    batch, one after the other: the columns of an NCHW or NHWC image first (``_pad_columns``, no
    concatenation joins columns), any other axis by a concatenation with constants before and
    after, laid out as the tensor is (``_pad_axis_by_constants``)."""
    axes = [i for i, (b, e) in enumerate(zip(begin, end)) if b or e]
    if 0 in axes or min(begin + end) < 0:
        raise imp.fail(f"pads {begin + end} with value {value} of a {list(v.shape)} tensor; supported: pads not "
                       f"negative, along axes other than the batch")
    columns = {"nchw": 3, "nhwc": 2}.get(_form_of(v))
    x = node.input[0]
    for k, i in enumerate(sorted(axes, key=lambda i: i != columns)):
        out = node.output[0] if k == len(axes) - 1 else f"{node.output[0]}.constant{i}"
        if i == columns:
            x = _pad_columns(imp, node, x, i, begin[i], end[i], "constant", out, value)
        else:
            x = _pad_axis_by_constants(imp, node, x, i, begin[i], end[i], value, out)


def _pad_axis_by_constants(imp, node, x: str, axis: int, before: int, after: int, value: float, out: str) -> str:
    """``x`` padded by ``value`` along one axis other than an image's columns: a concatenation with
    constants before and after (``_concat``)."""
    v, parts = _view(imp, x), []
    for side, n in (("before", before), ("input", 0), ("after", after)):
        if side == "input":
            parts.append(x)
        elif n:
            shape = list(v.shape)
            shape[axis] = n
            parts.append(f"{out}.{side}")
            imp._set_const(parts[-1], np.full(shape, value, np.float32))
    try:
        return _part(imp, node, "Concat", parts, out, axis=axis)
    except ValueError as e:                     # the concatenation's refusal, as this node's
        reason = str(e).split("(Concat): ", 1)[-1]
        raise imp.fail(f"pads ({before}, {after}) with value {value} along axis {axis} of a {list(v.shape)} tensor, "
                       f"a concatenation with constants there: {reason}") from None


def _pad_into_convolutions(imp, node, pads: list[int]) -> bool:
    """Zeros around an NCHW image's rows and columns that only convolutions read (``nn.ZeroPad2d``,
    TensorFlow's explicit padding before a VALID convolution): added to each convolution's own
    padding, the convolution reading the image.  False when the padding is not such."""
    readers = imp.consumers.get(node.output[0], [])
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0 or not readers or \
            any(j < 0 or imp.nodes[j].op_type != "Conv" or list(imp.nodes[j].input).count(node.output[0]) != 1 or
                imp.nodes[j].input[0] != node.output[0] or
                _attrs(imp.nodes[j]).get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") for j in readers):
        return False
    extra = [pads[2], pads[3], pads[6], pads[7]]
    for j in readers:
        conv = imp.nodes[j]
        attrs = {k: v for k, v in _attrs(conv).items() if k not in ("pads", "auto_pad")}
        own = _attrs(conv).get("pads", [0, 0, 0, 0])
        if len(own) != 4:
            return False
        imp.nodes[j] = helper.make_node("Conv", [node.input[0], *conv.input[1:]], list(conv.output), name=conv.name,
                                        pads=[p + e for p, e in zip(own, extra)], **attrs)
    for j in readers:
        imp.consumers.setdefault(node.input[0], []).append(j)
    return True


# ---- reflect and edge padding: copies of rows, columns and channels ------------------------------

def _pad_by_copies(imp, node, v: View, begin: list[int], end: list[int], mode: str) -> None:
    """``Pad`` of mode ``reflect`` (``nn.ReflectionPad2d``) or ``edge`` (``nn.ReplicationPad2d``),
    one axis after the other: the columns of an NCHW or NHWC image by ``_pad_columns`` (no
    concatenation joins columns), any other axis by a concatenation of one-wide slices and the tensor."""
    axes = [i for i, (b, e) in enumerate(zip(begin, end)) if b or e]
    for i in axes:
        if i == 0 or min(begin[i], end[i]) < 0 or (mode == "reflect" and max(begin[i], end[i]) >= v.shape[i]):
            below = ", each below its axis' length" if mode == "reflect" else ""
            raise imp.fail(f"mode {mode!r} pads {begin + end} of a {list(v.shape)} tensor (axis {i}); supported: "
                           f"pads not negative, not along the batch{below}")
    columns = {"nchw": 3, "nhwc": 2}.get(_form_of(v))
    x = node.input[0]
    order = sorted(axes, key=lambda i: i != columns)        # the columns first: the fewest rows to copy
    for k, i in enumerate(order):
        out = node.output[0] if k == len(order) - 1 else f"{node.output[0]}.{mode}{i}"
        pad = _pad_columns if i == columns else _pad_axis_by_concat
        x = pad(imp, node, x, i, begin[i], end[i], mode, out)


def _copied_indices(n: int, before: int, after: int, mode: str, period: int = 1) -> tuple[list[int], list[int]]:
    """The indices of an axis of ``n`` that the padding copies before and after it, in order:
    reflect ``before .. 1`` and ``n-2 .. n-1-after`` (the edge itself not repeated), edge 0 and n-1
    (with a ``period``, the edge of each of the ``period`` interleaved phases: the element a whole
    number of periods away, a dilated window's own)."""
    if mode == "edge":
        return [t % period for t in range(-before, 0)], [n - period + j % period for j in range(after)]
    return list(range(before, 0, -1)), list(range(n - 2, n - 2 - after, -1))


def _slice_part(imp, node, x: str, axis: int, start: int, stop: int, out: str) -> str:
    """Elements ``start .. stop`` of ``x`` along ``axis`` (a Slice, its operands as attributes: any opset)."""
    if not imp.known(out):
        _part(imp, node, "Slice", [x], out, starts=[start], ends=[stop], axes=[axis])
    return out


def _pad_axis_by_concat(imp, node, x: str, axis: int, before: int, after: int, mode: str, out: str,
                        period: int = 1) -> str:
    """The copies of one axis other than an image's columns: ``Concat`` of one-wide slices and ``x``
    (rows of an image: a concatenation of pixels; channels: of channels)."""
    v = _view(imp, x)
    first, last = _copied_indices(v.shape[axis], before, after, mode, period)
    parts = [_slice_part(imp, node, x, axis, i, i + 1, f"{out}.at{i}") for i in first] + [x] + \
            [_slice_part(imp, node, x, axis, i, i + 1, f"{out}.at{i}") for i in last]
    try:                                        # a concatenation even of one tensor's parts: copies
        return _part(imp, node, "Concat", parts, out, axis=axis, handler=lambda i, n: _concat_layers(
            i, n, [_view(i, p) for p in parts], axis))
    except ValueError as e:                     # the concatenation's refusal, as this node's
        reason = str(e).split("(Concat): ", 1)[-1]
        raise imp.fail(f"mode {mode!r} pads ({before}, {after}) along axis {axis} of a {list(v.shape)} tensor, a "
                       f"concatenation of its slices there: {reason}") from None


def _pad_columns(imp, node, x: str, axis: int, before: int, after: int, mode: str, out: str, value: float = 0.0,
                 period: int = 1) -> str:
    """The padded columns of an NCHW image: the image framed by zero columns, plus the copied
    columns on zeros at their places (``_placed``, ``_placed_ends``; modes ``reflect`` and ``edge``)
    or a constant row of ``value`` in the padded columns and zeros elsewhere (mode ``constant``,
    broadcast over rows and channels), summed by ``Add`` layers (bit-exact: one term is nonzero at
    each element, and the sum's range is the image's, or the value's where larger)."""
    if axis == 2:                       # an NHWC image's: those of its NCHW transpose (views both ways)
        t = _part(imp, node, "Transpose", [x], f"{out}.nchw", perm=[0, 3, 1, 2])
        padded = _pad_columns(imp, node, t, 3, before, after, mode, f"{out}.nchw_padded", value, period)
        return _part(imp, node, "Transpose", [padded], out, perm=[0, 2, 3, 1])
    _, _, _, w = _view(imp, x).shape
    wide = w + before + after
    first, last = _copied_indices(w, before, after, mode, period) if mode != "constant" else ([], [])
    copies = [*enumerate(first), *((before + w + j, s) for j, s in enumerate(last))]     # (column, source)
    terms = [_placed(imp, node, x, before, wide, f"{out}.framed")]
    if mode == "constant" and value:
        row = np.full((1, 1, 1, wide), value, np.float32)
        row[..., before:before + w] = 0.0
        imp._set_const(f"{out}.value", row)
        terms.append(f"{out}.value")
    if first and last and first[0] < last[-1]:          # the outermost two: one term
        terms.append(_placed_ends(imp, node, x, first[0], last[-1], wide, f"{out}.ends"))
        copies = copies[1:-1]
    for t, s in copies:
        col = _slice_part(imp, node, x, 3, s, s + 1, f"{out}.col{s}")
        terms.append(_placed(imp, node, col, t, wide, f"{out}.at{t}"))
    total = terms[0]
    for k, term in enumerate(terms[1:], 1):
        total = _part(imp, node, "Add", [total, term], out if k == len(terms) - 1 else f"{out}.sum{k}")
    if total != out:                            # zeros alone: the framed image is the output
        imp.views[out] = _view(imp, total).named(out)
    return out


def _placed(imp, node, x: str, left: int, wide: int, out: str) -> str:
    """``x`` ([1, C, H, W]) at columns ``left .. left+W-1`` of zeros ``wide`` columns wide: a ``Pad``
    at the right, then its pixels ``left`` later in raster order (``_raster_moved``)."""
    _, _, h, w = _view(imp, x).shape
    padded = f"{x}.wide{wide}"
    if not imp.known(padded):
        _part(imp, node, "Pad", [x], padded, pads=[0, 0, 0, 0, 0, 0, 0, wide - w])
    return _raster_moved(imp, node, padded, left, h, out) if left else padded


def _placed_ends(imp, node, x: str, l: int, r: int, wide: int, out: str) -> str:
    """Column ``l`` of each row of ``x`` at column 0 and column ``r`` at column ``wide-1`` of zeros:
    neighbours in raster order (``r`` of row y-1, then ``l`` of row y), so one ``Crop`` by steps of
    the image moved ``W - r`` pixels later takes both, which a ``Pad`` and a pixel reshape place."""
    _, c, h, w = _view(imp, x).shape
    step = w - r + l                                        # (y, 0) holds x[y-1, r], (y, step) x[y, l]
    moved = _raster_moved(imp, node, x, w - r, h + 1, f"{out}.moved")
    both = f"{out}.both"
    _part(imp, node, "Slice", [moved], both, starts=[0], ends=[step + 1], axes=[3], steps=[step])
    padded = _part(imp, node, "Pad", [both], f"{out}.wide", pads=[0, 0, 0, 0, 0, 0, 0, wide - 2])
    return _pixels_as_image(imp, node, padded, 1, h, wide, out)


def _raster_moved(imp, node, x: str, k: int, rows: int, out: str) -> str:
    """``x`` ([1, C, H, W]) as ``rows`` rows of W, its pixels ``k`` later in raster order: zero pixels
    before it and after it (static data, ``x`` written between them), the last ones past the rows
    dropped."""
    _, c, h, w = _view(imp, x).shape
    imp._set_const(f"{out}.flat_shape", np.array([1, c, h * w], np.int64))
    flat = _part(imp, node, "Reshape", [x, f"{out}.flat_shape"], f"{out}.flat")
    return _pixels_as_image(imp, node, _part(imp, node, "Pad", [flat], f"{out}.moved", pads=[0, 0, k, 0, 0, max(
        0, rows * w - k - h * w)]), 0, rows, w, out)


def _pixels_as_image(imp, node, flat: str, start: int, h: int, w: int, out: str) -> str:
    """Pixels ``start .. start + h*w`` of ``flat`` (a [1, C, N] tensor or an NCHW image, in raster
    order) as an ``h x w`` image: a ``PixelReshape`` (a reshape would settle on the first layout that
    fits, not necessarily this one)."""
    v = _view(imp, flat)
    c = v.shape[1]
    if not np.array_equal(L.indices(v).reshape(c, -1), L.indices(L.nchw("?", (v.size // c, 1, c))).reshape(c, -1)):
        raise imp.fail(f"{flat!r} is not laid out as pixels one after the other, which its pixel reshape reads")
    name = imp.layer_name(out)
    imp.views[out] = L.nchw(name, imp.emit(PixelReshape, name, inputs=(v.source,), out_h=h, out_w=w, start=start))
    if flat in imp.fold_of:
        imp.fold_of[out] = imp.fold_of[flat]
    return out


@_op("ArgMax")
def _argmax(imp, node) -> None:
    """The class map of a segmentation network: the arg-max over the channels of its output resize
    (the accelerator writes the class of each pixel instead of its scores: ``mapper.fusion``)."""
    v = imp.act(node.input[0])
    a = _attrs(node)
    if a.get("select_last_index", 0):
        raise imp.fail("select_last_index=1 (ties to the last class); supported: ties to the first class, "
                       "as the accelerator's class map takes")
    h, w, _ = imp.sources[INPUT].shape
    resize = _class_scores(imp, node, v, _axis(imp, a.get("axis", 0), len(v.shape)), (h, w))
    imp.class_maps[node.output[0]] = resize
    imp.class_map_shapes[node.output[0]] = (1, 1, h, w) if a.get("keepdims", 1) else (1, h, w)


def _class_scores(imp, node, v: View, axis: int, input_hw: tuple[int, int]) -> str:
    """The resize whose arg-max over the channels the accelerator writes as the class map: the
    bilinear resize to the input size that produces ``v``, or for scores already at the input size
    (a head that takes the class of each pixel at its logits' own size) a resize of scale 1, which
    reads each pixel with weight 1 and so changes no score."""
    h, w = input_hw
    supported = (f"supported: a segmentation network's class map, the arg-max over the channels (axis 1) of a "
                 f"bilinear resize to the input size ({h}x{w}) or of NCHW scores of that size")
    if not (_nchw_full(v) and axis == 1):
        what = ("a classifier's logits (without the ArgMax a run writes them and lists their top classes)"
                if len(v.shape) == 2 else "not the channels of an NCHW image")
        raise imp.fail(f"an arg-max over axis {axis} of a {list(v.shape)} tensor, {what}; {supported}")
    prod = imp.by_name.get(v.source)
    if isinstance(prod, Resize):
        if not is_class_map_resize(prod, input_hw):
            raise imp.fail(f"an arg-max of a {prod.mode} resize to {prod.out_shape[0]}x{prod.out_shape[1]}; "
                           f"{supported}")
        return v.source
    if tuple(v.shape[2:]) != input_hw:
        raise imp.fail(f"an arg-max over the channels of a {v.shape[2]}x{v.shape[3]} image that no Resize "
                       f"produces; {supported}")
    name = imp.layer_name(f"{node.output[0]}.scores")
    imp.emit(Resize, name, inputs=(v.source,), out_h=h, out_w=w, mode="bilinear")
    return name


from . import onnx_einsum  # noqa: E402,F401  (registers Einsum, written with the handlers above)

SUPPORTED_OPS = tuple(sorted(op for (dom, op) in HANDLERS if dom == ""))
