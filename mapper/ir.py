"""The workload IR: a model is a dataflow graph of layers in execution order, with full tensor semantics.

Every tensor is int8 (at run time) and has a shape ``(H, W, C)``: an image in HWC
order, or ``H * W`` tokens (the pixels in raster order) of ``C`` channels.  Each
layer names its input tensors (the producing layers, ``"input"`` for the model's
input image, or a :class:`Constant`) and carries the attributes its computation
needs.  Building a :class:`Model` infers every layer's input and output shapes
from its producers and refuses a layer whose input does not match what its
attributes say, naming both shapes (:class:`ShapeError`).

MAC layers (:class:`Conv2d`, :class:`Linear`, :class:`MatMul`) carry everything
the mapper needs to tile them; every multiply-accumulate of a model belongs to
exactly one of them.  The other layers cost no MACs:

* row operators: :class:`LayerNorm` (over the channels of each token),
  :class:`Softmax` (over rows of ``row`` channels);
* element-wise: :class:`Activation` (``relu``, ``gelu``, ``sigmoid``, ``tanh``, ``clip``, ...:
  ``mapper.float_ops.ACTIVATIONS``),
  :class:`Add` and :class:`Mul` (numpy broadcasting of ``H`` and ``W``, and a
  channel count that divides the output's is repeated, as a relative-position
  bias is over the windows of all heads);
* spatial: :class:`Resize`, :class:`Pool`, :class:`Concat` (channels or pixels), :class:`ChannelSlice` (a
  view of channels of its input), :class:`PixelReshape` (its input's pixels in another ``H x W``);
* layout: :class:`Pad`, :class:`Roll` (cyclic shift), :class:`Crop`,
  :class:`WindowPartition`, :class:`WindowReverse` and :class:`PatchMerge` (Swin),
  :class:`DepthToSpace`, :class:`SpaceToDepth`, :class:`ChannelShuffle`;
* data: :class:`Constant` (learned embeddings, positional encodings, bias tables,
  attention masks), generated with the weights.

A token sequence keeps its producer's ``(H, W)``: a :class:`Linear` over the
tokens of an ``h x w`` image outputs an ``h x w`` image, so a depthwise
convolution can follow it.  Window attention (Swin) works on ``(49, windows, C)``
tensors: row ``m`` of window ``w`` is token ``m * windows + w``
(:class:`WindowPartition`), which is what a :class:`MatMul` with ``windows > 1``
reads and writes.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Optional, Union

from hw.operators import check_pool_padding, pool_out_count

from .float_ops import ACTIVATIONS

__all__ = ["Conv2d", "Linear", "MatMul", "LayerNorm", "Softmax", "Activation", "Add", "Mul", "Resize",
           "Pool", "Concat", "ChannelSlice", "PixelReshape", "Pad", "Roll", "Crop", "WindowPartition", "WindowReverse", "PatchMerge", "DepthToSpace", "SpaceToDepth",
           "ChannelShuffle",
           "Constant", "Layer", "Model", "Shape", "ShapeError", "PARTS", "MAC_KINDS", "ELEMENTWISE_KINDS",
           "LAYOUT_KINDS", "VIEW_KINDS", "INPUT", "conv_out", "min_dram_bytes", "weight_bytes", "operand_bytes", "reads_alone", "tokens_of"]

PARTS = ("encoder", "decoder", "backbone", "transformer", "head")
MAC_KINDS = ("conv2d", "linear", "matmul")
#: Kinds of the non-MAC layers that compute (the vector unit's operations).
#: (Activations beyond the first three come last, so that each kind keeps its colour in the figures.)
ELEMENTWISE_KINDS = ("softmax", "layernorm", "gelu", "relu", "sigmoid", "add", "mul", "resize", "concat", "pool",
                     *(f for f in ACTIVATIONS if f not in ("gelu", "relu", "sigmoid")))
#: Kinds of the layers that are views of their input's buffer (``mapper.layout``): they move no data.
VIEW_KINDS = ("channel_slice", "pixel_reshape")
#: Kinds of the layers that only move data.
LAYOUT_KINDS = ("pad", "roll", "crop", "window_partition", "window_reverse", "patch_merge", "depth_to_space",
                "channel_shuffle", "space_to_depth")
#: The name by which layers read the model's input image.
INPUT = "input"

Shape = tuple[int, int, int]


class ShapeError(ValueError):
    """A layer whose inputs do not match its attributes; the message names both shapes."""


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, padding_end: Optional[int] = None) -> int:
    """Output extent of a convolution along one axis (PyTorch's formula); ``padding_end``
    (default ``padding``) pads after the last pixel."""
    end = padding if padding_end is None else padding_end
    return (size + padding + end - dilation * (kernel - 1) - 1) // stride + 1


Padding = Union[int, tuple[int, int, int, int]]


def conv_pads(padding) -> tuple[int, int, int, int]:
    """A convolution's zero padding as (top, left, bottom, right): an int pads every side
    alike, a pair (height, width) both sides of an axis alike, four values are ONNX's
    ``pads`` order.  Raises ValueError for anything else or a negative value."""
    def whole(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if whole(padding):
        pads = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) in (2, 4) and all(whole(p) for p in padding):
        pads = tuple(int(p) for p in (padding if len(padding) == 4 else (*padding, *padding)))
    else:
        raise ValueError(f"padding {padding!r}: expected an int, (height, width) or (top, left, bottom, right)")
    if min(pads) < 0:
        raise ValueError(f"padding {padding!r}: must be at least 0 on every side")
    return pads


def tokens_of(shape: Shape) -> int:
    return shape[0] * shape[1]


def _elements(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


@lru_cache(maxsize=1024)
def kept_taps(k: int, dil: int, stride: int, pad: int, n_in: int, n_out: int) -> tuple[int, ...]:
    """The taps of one axis of a dilated kernel that read an input pixel for some output (the others
    read padding alone)."""
    return tuple(t for t in range(k) if any(0 <= o * stride - pad + dil * t < n_in for o in range(n_out)))


def _rows_read(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Input rows (or columns) of ``size`` that some output's window touches (padding excluded)."""
    return len({o * stride + k * dilation - padding for o in range(out) for k in range(kernel)} & set(range(size)))


def weight_bytes(layer: "Layer") -> int:
    """The int8 weights of a MAC layer (none for a product of two activations)."""
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        return layer.out_ch * (layer.in_ch // layer.groups) * kh * kw
    if isinstance(layer, Linear):
        return layer.in_features * layer.out_features
    if isinstance(layer, MatMul):
        return 0
    raise TypeError(f"{layer.name}: not a MAC layer (kind {layer.kind!r})")


def operand_bytes(layer: "Layer") -> int:
    """Bytes of a MAC layer's second operand: its weights, or a product's second activation
    (``b``), which every band of a chain (``mapper.bands``) reads whole."""
    if isinstance(layer, MatMul):
        return layer.batch // layer.b_repeat * layer.n * layer.k
    return weight_bytes(layer)


def reads_alone(layer: "Layer", tensor: str) -> bool:
    """Whether a MAC layer reads ``tensor`` as what a buffer holding that tensor alone (a tensor
    kept in the global buffer, a band chain's slot) can give it: its only input, or a product's
    first operand from channel 0 (its second operand read from elsewhere)."""
    if isinstance(layer, MatMul):
        return layer.inputs[0] == tensor and layer.inputs[1] != tensor and layer.a_offset == 0
    return tuple(layer.inputs) == (tensor,)


def min_dram_bytes(layer: "Layer") -> tuple[int, int]:
    """(bytes read, bytes written) of a MAC layer run on its own: every input element some
    output uses and every weight read once, the output written once (int8).  No mapping of
    the layer moves less, so ``max(read, written) / DRAM rate`` bounds its time."""
    if isinstance(layer, Conv2d):
        (kh, kw), s, d, (top, left, _, _) = layer.kernel, layer.stride, layer.dilation, layer.pads
        inp = (_rows_read(layer.in_h, layer.out_h, kh, s, top, d) * _rows_read(layer.in_w, layer.out_w, kw, s, left, d)
               * layer.in_ch)
        return inp + weight_bytes(layer), layer.out_h * layer.out_w * layer.out_ch
    if isinstance(layer, Linear):
        return layer.tokens * layer.in_features + weight_bytes(layer), layer.tokens * layer.out_features
    if isinstance(layer, MatMul):
        return layer.batch * layer.m * layer.k + operand_bytes(layer), layer.batch * layer.m * layer.n
    raise TypeError(f"{layer.name}: not a MAC layer (kind {layer.kind!r})")


def _padding_str(padding) -> str:
    return str(padding) if isinstance(padding, int) else "(" + ",".join(map(str, padding)) + ")"


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")


def _positive(layer, *names: str) -> None:
    for f in names:
        v = getattr(layer, f)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{layer.name}: {f} must be a positive integer, not {v!r}")


def _shape_error(layer, what: str, got: Shape, want: str) -> ShapeError:
    return ShapeError(f"{layer.name}: {what} has shape {got[0]}x{got[1]}x{got[2]}, but the layer needs {want}")


def _hwc(shape: Shape) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[2]}"


class _Base:
    """Shared behaviour: shapes are filled in by :class:`Model` (``out_shape``, ``in_shapes``)."""

    name: str
    inputs: tuple
    out_shape: Optional[Shape]
    in_shapes: tuple

    @property
    def macs(self) -> int:
        return 0

    @property
    def elements(self) -> int:
        """Output elements (0 until the layer is part of a Model)."""
        return _elements(self.out_shape) if self.out_shape else 0

    @property
    def in_elements(self) -> int:
        """Input elements read, constants included."""
        return sum(_elements(s) for s in self.in_shapes)

    @property
    def shape_str(self) -> str:
        ins = ", ".join(_hwc(s) for s in self.in_shapes)
        return f"{ins} -> {_hwc(self.out_shape)}" if self.out_shape else ""

    def infer(self, in_shapes: list[Shape]) -> Shape:     # pragma: no cover - every class overrides
        raise NotImplementedError

    def _arity(self, in_shapes: list, n: int) -> None:
        if len(in_shapes) != n:
            raise ShapeError(f"{self.name}: takes {n} input(s), not {len(in_shapes)} ({', '.join(self.inputs)})")


# ---- MAC layers ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv2d(_Base):
    """2-D convolution over an ``in_h x in_w x in_ch`` input (groups = in_ch is depthwise).

    ``dilation`` spaces the kernel's taps (PyTorch's, one value for both axes).  ``in_ch`` may be fewer than the producer's channels: the convolution then reads the
    first ``in_ch`` of them (an execution path that bypasses the last channels).
    """

    name: str
    part: str
    in_ch: int
    out_ch: int
    in_h: int
    in_w: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: Padding = 0        # an int, or (top, left, bottom, right) where the sides differ
    groups: int = 1
    bias: bool = True
    relu: bool = False
    inputs: tuple[str, ...] = ()
    dilation: int = 1
    kind: str = field(default="conv2d", init=False)
    out_shape: Optional[Shape] = field(default=None, compare=False)
    in_shapes: tuple = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        if isinstance(self.kernel, int):
            object.__setattr__(self, "kernel", (self.kernel, self.kernel))
        kernel = tuple(self.kernel) if isinstance(self.kernel, (tuple, list)) else ()
        if len(kernel) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in kernel):
            raise ValueError(f"{self.name}: kernel must be a positive integer or two (height, width), "
                             f"not {self.kernel!r}")
        object.__setattr__(self, "kernel", kernel)
        _positive(self, "in_ch", "out_ch", "in_h", "in_w", "stride", "groups", "dilation")
        try:
            pads = conv_pads(self.padding)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None
        # one form per padding, so that equal layers compare equal: an int when every side is alike
        object.__setattr__(self, "padding", pads[0] if len(set(pads)) == 1 else pads)
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide in_ch={self.in_ch} "
                             f"and out_ch={self.out_ch}")
        if self.out_h <= 0 or self.out_w <= 0:
            raise ValueError(f"{self.name}: kernel {self.kernel} does not fit input {self.in_h}x{self.in_w}")

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """The zero padding as (top, left, bottom, right)."""
        return conv_pads(self.padding)

    @property
    def out_h(self) -> int:
        top, _, bottom, _ = self.pads
        return conv_out(self.in_h, self.kernel[0], self.stride, top, self.dilation, padding_end=bottom)

    @property
    def out_w(self) -> int:
        _, left, _, right = self.pads
        return conv_out(self.in_w, self.kernel[1], self.stride, left, self.dilation, padding_end=right)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_ch == self.out_ch

    @property
    def macs(self) -> int:
        """The products of every tap, but a dilated kernel's taps that read only padding (``kept_taps``:
        a rate-36 tap on a 16x16 map), which are not run."""
        return self.out_h * self.out_w * self.out_ch * (self.in_ch // self.groups) * len(self.taps_run)

    @property
    def taps_run(self) -> tuple[tuple[int, int], ...]:
        """The kernel's taps (row, column) the layer computes: all, or a dilated kernel's kept ones."""
        kh, kw = self.kernel
        if self.dilation == 1:
            return tuple((r, c) for r in range(kh) for c in range(kw))
        (top, left, _, _), d, s = self.pads, self.dilation, self.stride
        rows, cols = kept_taps(kh, d, s, top, self.in_h, self.out_h), kept_taps(kw, d, s, left, self.in_w, self.out_w)
        return tuple((r, c) for r in rows for c in cols) or ((0, 0),)

    @property
    def shape_str(self) -> str:
        kh, kw = self.kernel
        g = f" g{self.groups}" if self.groups > 1 else ""
        d = f" d{self.dilation}" if self.dilation > 1 else ""
        return (f"{self.in_h}x{self.in_w}x{self.in_ch} -> {self.out_h}x{self.out_w}x{self.out_ch} "
                f"k{kh}x{kw} s{self.stride} p{_padding_str(self.padding)}{d}{g}")

    def infer(self, in_shapes: list[Shape]) -> Shape:
        self._arity(in_shapes, 1)
        s = in_shapes[0]
        full = self.groups == 1 and s[2] >= self.in_ch
        if s[:2] != (self.in_h, self.in_w) or not (s[2] == self.in_ch or full):
            raise _shape_error(self, f"input {self.inputs[0]!r}", s, f"{self.in_h}x{self.in_w}x{self.in_ch}")
        return (self.out_h, self.out_w, self.out_ch)


@dataclass(frozen=True)
class Linear(_Base):
    """Fully connected layer applied to each of ``tokens`` rows: ``[T, in] x [in, out]``.

    ``in_features`` may be fewer than the producer's channels (the first ones are read).
    """

    name: str
    part: str
    tokens: int
    in_features: int
    out_features: int
    bias: bool = True
    relu: bool = False
    inputs: tuple[str, ...] = ()
    kind: str = field(default="linear", init=False)
    out_shape: Optional[Shape] = field(default=None, compare=False)
    in_shapes: tuple = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "tokens", "in_features", "out_features")

    @property
    def macs(self) -> int:
        return self.tokens * self.in_features * self.out_features

    @property
    def shape_str(self) -> str:
        return f"{self.tokens}x{self.in_features} -> {self.tokens}x{self.out_features}"

    def infer(self, in_shapes: list[Shape]) -> Shape:
        self._arity(in_shapes, 1)
        s = in_shapes[0]
        if tokens_of(s) != self.tokens or s[2] < self.in_features:
            raise _shape_error(self, f"input {self.inputs[0]!r}", s,
                               f"{self.tokens} tokens of at least {self.in_features} channels")
        return (s[0], s[1], self.out_features)


@dataclass(frozen=True)
class MatMul(_Base):
    """Batched product of two activations: ``[B, M, K] x [B, K, N] -> [B, M, N]``.

    Used for attention: Q.K^T (M = queries, K = head dim, N = keys) and A.V (M =
    queries, K = keys, N = head dim).  ``B = windows x heads``.  How the operands
    sit in their tensors:

    * ``a`` (inputs[0]): ``M * windows`` tokens; batch ``(w, h)`` reads window column
      ``w`` (with ``windows > 1`` the tensor is ``M x windows``) and channels
      ``a_offset + h*K ...``;
    * ``b`` (inputs[1]): ``b_layout = "nk"`` stores ``B^T`` (``N * windows`` tokens of
      ``K`` channels per head, at ``b_offset + h*K``: keys), ``"kn"`` stores ``B``
      (``K * windows`` tokens of ``N`` channels per head, at ``b_offset + h*N``: values);
    * the output has ``M * windows`` tokens (the shape of ``a``) of ``heads * N`` channels;
    * ``b_repeat`` consecutive heads read one head of ``b`` (multi- and grouped-query attention's
      shared keys and values): ``b`` holds ``heads / b_repeat`` heads, head ``h`` reads its head
      ``h // b_repeat``.

    ``b_layout = "opaque"`` (Anchor DETR's reshaped value aggregation): the operands only
    need as many elements as the product reads; such a product is counted and timed but
    cannot be executed.
    """

    name: str
    part: str
    batch: int
    m: int
    k: int
    n: int
    inputs: tuple[str, ...] = ()
    windows: int = 1
    a_offset: int = 0
    b_offset: int = 0
    b_layout: str = "nk"
    b_repeat: int = 1
    kind: str = field(default="matmul", init=False)
    out_shape: Optional[Shape] = field(default=None, compare=False)
    in_shapes: tuple = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "batch", "m", "k", "n", "windows", "b_repeat")
        if self.batch % self.windows:
            raise ValueError(f"{self.name}: windows={self.windows} must divide batch={self.batch}")
        if self.heads % self.b_repeat or (self.b_repeat > 1 and self.b_layout == "opaque"):
            raise ValueError(f"{self.name}: b_repeat={self.b_repeat} must divide heads={self.heads} "
                             f"(of a product that is not opaque)")
        if self.b_layout not in ("nk", "kn", "opaque"):
            raise ValueError(f"{self.name}: b_layout must be 'nk', 'kn' or 'opaque', not {self.b_layout!r}")

    @property
    def heads(self) -> int:
        return self.batch // self.windows

    @property
    def b_heads(self) -> int:
        """The heads ``b`` holds (each read by ``b_repeat`` heads of the product)."""
        return self.heads // self.b_repeat

    @property
    def plain(self) -> bool:
        """Its operands and output are plain token tensors: one window (its heads side by side in
        the channels), not opaque; token ``t`` of its output needs token ``t`` of ``a`` alone."""
        return self.windows == 1 and self.b_layout != "opaque"

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def shape_str(self) -> str:
        return f"{self.batch}x[{self.m}x{self.k}]x[{self.k}x{self.n}]"

    def _check_operand(self, which: str, s: Shape, rows: int, cols: int, offset: int, heads: int) -> None:
        wins_ok = self.windows == 1 or s[1] == self.windows
        if tokens_of(s) != rows * self.windows or not wins_ok or s[2] < offset + heads * cols:
            layout = f"{rows} x {self.windows}" if self.windows > 1 else f"{rows} tokens"
            raise _shape_error(self, which, s, f"{layout} with channels {offset}..{offset + heads * cols - 1}")

    def infer(self, in_shapes: list[Shape]) -> Shape:
        self._arity(in_shapes, 2)
        a, b = in_shapes
        if self.b_layout == "opaque":
            for which, s, need in ((self.inputs[0], a, self.batch * self.m * self.k),
                                   (self.inputs[1], b, self.batch * self.k * self.n)):
                if _elements(s) < need:
                    raise _shape_error(self, f"operand {which!r}", s, f"at least {need} elements")
            return _opaque_out(self, a)
        self._check_operand(f"operand a {self.inputs[0]!r}", a, self.m, self.k, self.a_offset, self.heads)
        if self.b_layout == "nk":
            self._check_operand(f"operand b {self.inputs[1]!r}", b, self.n, self.k, self.b_offset, self.b_heads)
        else:
            self._check_operand(f"operand b {self.inputs[1]!r}", b, self.k, self.n, self.b_offset, self.b_heads)
        return (a[0], a[1], self.heads * self.n)


def _opaque_out(layer: "MatMul", a: Shape) -> Shape:
    """Output of an opaque product: the tokens of ``a`` when they hold the M rows of every batch
    item's outputs, else M tokens of ``batch * N`` channels."""
    total = layer.batch * layer.m * layer.n
    if total % tokens_of(a) == 0:
        return (a[0], a[1], total // tokens_of(a))
    return (layer.m, 1, layer.batch * layer.n)


# ---- non-MAC layers ---------------------------------------------------------------------------------------

def _same(layer, in_shapes: list[Shape]) -> Shape:
    layer._arity(in_shapes, 1)
    return in_shapes[0]


def _nonmac(kind: str):
    """Decorator: a frozen dataclass with the common non-MAC fields appended."""
    def wrap(cls):
        ann = cls.__dict__.get("__annotations__", {})
        ann.update({"kind": "str", "out_shape": "Optional[Shape]", "in_shapes": "tuple"})
        cls.__annotations__ = ann
        cls.kind = field(default=kind, init=False)
        cls.out_shape = field(default=None, compare=False)
        cls.in_shapes = field(default=(), compare=False)
        return dataclass(frozen=True)(cls)
    return wrap


@_nonmac("layernorm")
class LayerNorm(_Base):
    """Normalise each token over its channels (population variance), then ``gamma * x + beta``."""

    name: str
    part: str
    inputs: tuple[str, ...]
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_part(self.part)
        if not isinstance(self.eps, (int, float)) or not 0 <= self.eps < 1:
            raise ValueError(f"{self.name}: eps must be in [0, 1), not {self.eps!r}")

    def infer(self, in_shapes):
        return _same(self, in_shapes)


@_nonmac("softmax")
class Softmax(_Base):
    """Softmax over consecutive rows of ``row`` channels (``row = 0``: all channels)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    row: int = 0

    def __post_init__(self) -> None:
        _check_part(self.part)
        if not isinstance(self.row, int) or isinstance(self.row, bool) or self.row < 0:
            raise ValueError(f"{self.name}: row must be 0 (all channels) or a positive integer, not {self.row!r}")

    def row_len(self) -> int:
        return self.row or self.out_shape[2]

    def infer(self, in_shapes):
        s = _same(self, in_shapes)
        if self.row and s[2] % self.row:
            raise _shape_error(self, f"input {self.inputs[0]!r}", s, f"channels in rows of {self.row}")
        return s


@_nonmac("activation")
class Activation(_Base):
    """An activation of ``mapper.float_ops.ACTIVATIONS`` (``relu``, ``gelu`` exact, ``sigmoid``,
    ``tanh``, ``clip``, ...) element by element, with its ``params`` (``clip``: low, high).

    ``fused`` marks an activation that the preceding layer's vector pass applies.
    """

    name: str
    part: str
    func: str
    inputs: tuple[str, ...]
    fused: bool = False
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_part(self.part)
        if self.func not in ACTIVATIONS:
            raise ValueError(f"{self.name}: func must be one of {', '.join(ACTIVATIONS)}, not {self.func!r}")
        names = ACTIVATIONS[self.func][1]
        if len(self.params) != len(names) or not all(isinstance(p, (int, float)) and not math.isnan(p)
                                                     for p in self.params):
            raise ValueError(f"{self.name}: {self.func} takes {len(names)} numbers "
                             f"({', '.join(names) or 'none'}), not {self.params!r}")
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        object.__setattr__(self, "kind", self.func)

    def infer(self, in_shapes):
        return _same(self, in_shapes)


def _broadcast(layer, in_shapes: list[Shape]) -> Shape:
    """numpy broadcasting of H and W; a channel count dividing the largest is repeated."""
    out = tuple(max(s[i] for s in in_shapes) for i in range(3))
    for name, s in zip(layer.inputs, in_shapes):
        if any(s[i] not in (1, out[i]) for i in range(2)) or out[2] % s[2]:
            shapes = " and ".join(_hwc(t) for t in in_shapes)
            raise ShapeError(f"{layer.name}: input {name!r} of shape {_hwc(s)} does not broadcast "
                             f"({shapes})")
    return out


@_nonmac("add")
class Add(_Base):
    """Element-wise sum of two tensors (broadcast as the module docstring says), optional ReLU."""

    name: str
    part: str
    inputs: tuple[str, ...]
    relu: bool = False

    def __post_init__(self) -> None:
        _check_part(self.part)

    def infer(self, in_shapes):
        self._arity(in_shapes, 2)
        return _broadcast(self, in_shapes)


@_nonmac("mul")
class Mul(_Base):
    """Element-wise product of two tensors (broadcast as :class:`Add`)."""

    name: str
    part: str
    inputs: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_part(self.part)

    def infer(self, in_shapes):
        self._arity(in_shapes, 2)
        return _broadcast(self, in_shapes)


@_nonmac("resize")
class Resize(_Base):
    """Resize to ``out_h x out_w``: ``bilinear`` or ``nearest``.  A bilinear one maps coordinates as
    PyTorch's ``align_corners`` says (False: half-pixel centres; True: the corner pixels' centres
    meet, ``src = dst * (in - 1) / (out - 1)``)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    out_h: int
    out_w: int
    mode: str = "bilinear"
    align_corners: bool = False

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "out_h", "out_w")
        if self.mode not in ("bilinear", "nearest"):
            raise ValueError(f"{self.name}: mode must be bilinear or nearest, not {self.mode!r}")
        if self.align_corners and self.mode != "bilinear":
            raise ValueError(f"{self.name}: align_corners is a bilinear resize's, not a {self.mode} one's")

    def infer(self, in_shapes):
        s = _same(self, in_shapes)
        return (self.out_h, self.out_w, s[2])


@_nonmac("pool")
class Pool(_Base):
    """Pooling over each channel (PyTorch semantics).

    ``mode``: ``max`` and ``avg`` (``kernel``, ``stride``, ``padding``, ``ceil_mode``,
    ``count_include_pad``), or ``adaptive_avg`` to ``out_h x out_w`` (windows
    ``floor(i*in/out) .. ceil((i+1)*in/out)``; ``1 x 1`` is global average pooling).
    """

    name: str
    part: str
    inputs: tuple[str, ...]
    mode: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    out_h: int = 0
    out_w: int = 0

    def __post_init__(self) -> None:
        _check_part(self.part)
        if self.mode not in ("max", "avg", "adaptive_avg"):
            raise ValueError(f"{self.name}: mode must be max, avg or adaptive_avg, not {self.mode!r}")
        if self.mode == "adaptive_avg":
            _positive(self, "out_h", "out_w")
        else:
            _positive(self, "kernel", "stride")
            try:
                check_pool_padding(self.kernel, self.padding)
            except ValueError as e:
                raise ValueError(f"{self.name}: {e}") from None

    def window_out(self, size: int) -> int:
        """Output extent along an axis of ``size`` (``max``/``avg``; PyTorch's rule,
        ``hw.operators.pool_out_count``): below 1 where PyTorch refuses the window."""
        return pool_out_count(size, self.kernel, self.stride, self.padding, self.padding, self.ceil_mode)

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if self.mode == "adaptive_avg":
            return (self.out_h, self.out_w, c)
        oh, ow = self.window_out(h), self.window_out(w)
        if oh <= 0 or ow <= 0:
            past = f"; with ceil_mode at most stride - 1 = {self.stride - 1} past it" if self.ceil_mode else ""
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c), f"room for a {self.kernel}x"
                               f"{self.kernel} window padded by {self.padding} (PyTorch's rule{past})")
        return (oh, ow, c)


@_nonmac("concat")
class Concat(_Base):
    """Concatenation of its inputs ``along`` the ``channels`` (equal ``H`` and ``W``) or their
    ``pixels`` in raster order (equal ``C``: detection levels of ``H_i x W_i`` anchors one after
    the other), an ``sum(H) x W`` image when the inputs' widths are equal, else ``sum(H*W)``
    tokens in one column."""

    name: str
    part: str
    inputs: tuple[str, ...]
    along: str = "channels"

    def __post_init__(self) -> None:
        _check_part(self.part)
        if self.along not in ("channels", "pixels"):
            raise ValueError(f"{self.name}: along must be channels or pixels, not {self.along!r}")

    def infer(self, in_shapes):
        if not in_shapes:
            raise ShapeError(f"{self.name}: needs at least one input")
        i = 2 if self.along == "pixels" else slice(0, 2)
        for name, s in zip(self.inputs, in_shapes):
            if s[i] != in_shapes[0][i]:
                want = (f"{in_shapes[0][2]} channels" if self.along == "pixels"
                        else "{}x{} pixels".format(*in_shapes[0][:2]))
                raise _shape_error(self, f"input {name!r}", s, f"{want} like {self.inputs[0]!r}")
        h, w, c = in_shapes[0]
        if self.along == "channels":
            return (h, w, sum(s[2] for s in in_shapes))
        if all(s[1] == w for s in in_shapes):
            return (sum(s[0] for s in in_shapes), w, c)
        return (sum(s[0] * s[1] for s in in_shapes), 1, c)


@_nonmac("channel_slice")
class ChannelSlice(_Base):
    """Channels ``start .. start + channels`` of its input (a channel Split or Slice of an ONNX
    graph).  It moves no data: the slice is a view of its input's buffer (``mapper.layout``)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    start: int
    channels: int

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "channels")
        if self.start < 0:
            raise ValueError(f"{self.name}: start must be at least 0, not {self.start}")

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if self.start + self.channels > c:
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c),
                               f"at least {self.start + self.channels} channels")
        return (h, w, self.channels)


@_nonmac("pixel_reshape")
class PixelReshape(_Base):
    """``out_h * out_w`` consecutive pixels of its input from pixel ``start`` (in raster order), as
    an ``out_h x out_w`` image: a ``W x 1`` column read as a ``1 x W`` row (CoordAtt's transposed
    pooling), the tokens after a class token as an image.  It moves no data: the pixels of a buffer
    are its rows whatever ``H x W`` they form, so it is a view of its input's (``mapper.layout``)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    out_h: int
    out_w: int
    start: int = 0

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "out_h", "out_w")
        if not isinstance(self.start, int) or self.start < 0:
            raise ValueError(f"{self.name}: start must be an integer of at least 0, not {self.start!r}")

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if self.start + self.out_h * self.out_w > h * w:
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c),
                               f"at least {self.start + self.out_h * self.out_w} pixels")
        return (self.out_h, self.out_w, c)


@_nonmac("pad")
class Pad(_Base):
    """Zero padding at the bottom and the right, to ``out_h x out_w``."""

    name: str
    part: str
    inputs: tuple[str, ...]
    out_h: int
    out_w: int

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "out_h", "out_w")

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if self.out_h < h or self.out_w < w:
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c),
                               f"at most {self.out_h}x{self.out_w} pixels")
        return (self.out_h, self.out_w, c)


@_nonmac("crop")
class Crop(_Base):
    """``out_h x out_w`` pixels from ``(y0, x0)``, every ``step``-th (``(step_y, step_x)``) of each axis:
    output ``(y, x)`` is input ``(y0 + y * step_y, x0 + x * step_x)``; the defaults are the top-left."""

    name: str
    part: str
    inputs: tuple[str, ...]
    out_h: int
    out_w: int
    y0: int = 0
    x0: int = 0
    step: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "out_h", "out_w")
        if self.y0 < 0 or self.x0 < 0 or len(self.step) != 2 or min(self.step) < 1:
            raise ValueError(f"{self.name}: origin ({self.y0}, {self.x0}) and step {self.step} must be >= 0 and >= 1")

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if self.y0 + (self.out_h - 1) * self.step[0] >= h or self.x0 + (self.out_w - 1) * self.step[1] >= w:
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c),
                               f"pixels up to ({self.y0 + (self.out_h - 1) * self.step[0]}, "
                               f"{self.x0 + (self.out_w - 1) * self.step[1]})")
        return (self.out_h, self.out_w, c)


@_nonmac("roll")
class Roll(_Base):
    """Cyclic shift: ``out[y, x] = in[(y + shift) mod H, (x + shift_x) mod W]`` (``torch.roll(-shift)``);
    ``shift_x`` None is ``shift`` (Swin's), another the columns' own (timm's Swin shifts only the
    rows of a map no wider than a window: ``shift_x`` 0)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    shift: int
    shift_x: Optional[int] = None

    def __post_init__(self) -> None:
        _check_part(self.part)

    @property
    def shifts(self) -> tuple[int, int]:
        """(rows' shift, columns' shift)."""
        return self.shift, self.shift if self.shift_x is None else self.shift_x

    def infer(self, in_shapes):
        return _same(self, in_shapes)


def _tiled(layer, in_shapes, side: int, what: str) -> Shape:
    """The one input's shape, whose sides must be multiples of ``side`` (the layer's ``what``)."""
    h, w, c = _same(layer, in_shapes)
    if h % side or w % side:
        raise _shape_error(layer, f"input {layer.inputs[0]!r}", (h, w, c), f"sides that are multiples of "
                           f"the {what} {side}")
    return h, w, c


@_nonmac("window_partition")
class WindowPartition(_Base):
    """``H x W`` image -> ``window^2 x windows`` tokens: row ``m = (y % win) * win + x % win`` of
    window ``w = (y // win) * (W // win) + x // win`` (Swin's window partition)."""

    name: str
    part: str
    inputs: tuple[str, ...]
    window: int = 7

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "window")

    def infer(self, in_shapes):
        h, w, c = _tiled(self, in_shapes, self.window, "window")
        return (self.window * self.window, h * w // self.window ** 2, c)


@_nonmac("window_reverse")
class WindowReverse(_Base):
    """The inverse of :class:`WindowPartition`, back to an ``out_h x out_w`` image."""

    name: str
    part: str
    inputs: tuple[str, ...]
    out_h: int
    out_w: int
    window: int = 7

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "out_h", "out_w", "window")

    def infer(self, in_shapes):
        s = _same(self, in_shapes)
        want = (self.window ** 2, self.out_h * self.out_w // self.window ** 2)
        if self.out_h % self.window or self.out_w % self.window or s[:2] != want:
            raise _shape_error(self, f"input {self.inputs[0]!r}", s, f"{want[0]}x{want[1]} window rows")
        return (self.out_h, self.out_w, s[2])


@_nonmac("patch_merge")
class PatchMerge(_Base):
    """Swin's patch merging gather: each 2x2 neighbourhood into one token of 4C channels, in the
    order ``(0,0), (1,0), (0,1), (1,1)`` (row, column); odd sides are zero-padded."""

    name: str
    part: str
    inputs: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_part(self.part)

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        return (-(-h // 2), -(-w // 2), 4 * c)


@_nonmac("depth_to_space")
class DepthToSpace(_Base):
    """Channel blocks to pixels (ONNX's ``DepthToSpace`` in mode DCR): output pixel ``(y * block + i,
    x * block + j)`` holds channel block ``i * block + j`` of input pixel ``(y, x)``."""

    name: str
    part: str
    inputs: tuple[str, ...]
    block: int = 2

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "block")

    def infer(self, in_shapes):
        h, w, c = _same(self, in_shapes)
        if c % self.block ** 2:
            raise _shape_error(self, f"input {self.inputs[0]!r}", (h, w, c), f"channels a multiple of {self.block ** 2}")
        return (h * self.block, w * self.block, c // self.block ** 2)


@_nonmac("space_to_depth")
class SpaceToDepth(_Base):
    """Pixels to channel blocks, the inverse of :class:`DepthToSpace` (ONNX's ``SpaceToDepth``): channel
    block ``i * block + j`` of output pixel ``(y, x)`` is input pixel ``(y * block + i, x * block + j)``."""

    name: str
    part: str
    inputs: tuple[str, ...]
    block: int = 2

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "block")

    def infer(self, in_shapes):
        h, w, c = _tiled(self, in_shapes, self.block, "block")
        return (h // self.block, w // self.block, c * self.block ** 2)


@_nonmac("channel_shuffle")
class ChannelShuffle(_Base):
    """ShuffleNet's channel shuffle over ``groups`` groups: output channel ``j`` is input channel
    ``(j % groups) * (C / groups) + j // groups``."""

    name: str
    part: str
    inputs: tuple[str, ...]
    groups: int = 2

    def __post_init__(self) -> None:
        _check_part(self.part)
        _positive(self, "groups")

    def infer(self, in_shapes):
        s = _same(self, in_shapes)
        if s[2] % self.groups:
            raise _shape_error(self, f"input {self.inputs[0]!r}", s, f"channels a multiple of {self.groups}")
        return s


@_nonmac("constant")
class Constant(_Base):
    """A tensor known before the input: generated with the weights (``init`` says how,
    see ``mapper.weights``) and stored in the DRAM image."""

    name: str
    part: str
    shape: Shape
    init: str = "normal"
    args: tuple = ()
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_part(self.part)
        if len(self.shape) != 3 or any(not isinstance(v, int) or v <= 0 for v in self.shape):
            raise ValueError(f"{self.name}: shape must be three positive integers, not {self.shape!r}")

    def infer(self, in_shapes):
        self._arity(in_shapes, 0)
        return tuple(self.shape)


Layer = Union[Conv2d, Linear, MatMul, LayerNorm, Softmax, Activation, Add, Mul, Resize, Pool, Concat, ChannelSlice, PixelReshape, Pad,
              Crop, Roll, WindowPartition, WindowReverse, PatchMerge, DepthToSpace, SpaceToDepth, ChannelShuffle,
              Constant]


@dataclass(frozen=True)
class Model:
    """A workload: its layers in execution order and how it was built.

    Construction checks the graph (unique names, producers before consumers) and fills in
    every layer's ``in_shapes`` and ``out_shape`` (``ShapeError`` names both shapes when a
    layer's input does not match it).
    """

    name: str
    variant: str
    input: tuple[int, int, int]          # (H, W, C) of the input image
    layers: tuple[Layer, ...]
    params: dict = field(default_factory=dict, compare=False)
    #: Layers that are outputs although later layers read them (an ONNX graph's outputs);
    #: the layers nothing reads are outputs anyway.
    outputs: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(tuple(self.input)) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                  for v in self.input):
            raise ValueError(f"{self.name}: input must be (H, W, C), three positive integers, not {self.input!r}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{self.name}: duplicate layer names {dup[:5]}")
        if INPUT in names:
            raise ValueError(f"{self.name}: no layer may be called {INPUT!r} (the input image)")
        unknown = [n for n in self.outputs if n not in names]
        if unknown:
            raise ValueError(f"{self.name}: output {unknown[0]!r} is no layer of the model")
        object.__setattr__(self, "layers", tuple(self._infer_shapes()))

    def _infer_shapes(self) -> Iterator[Layer]:
        shapes: dict[str, Shape] = {INPUT: tuple(self.input)}
        for layer in self.layers:
            ins = layer.inputs or (() if isinstance(layer, Constant) else (INPUT,))
            missing = [n for n in ins if n not in shapes]
            if missing:
                raise ValueError(f"{self.name}: layer {layer.name!r} reads {missing[0]!r}, which no earlier "
                                 f"layer produces")
            in_shapes = [shapes[n] for n in ins]
            layer = dataclasses.replace(layer, inputs=tuple(ins))
            out = tuple(layer.infer(in_shapes))
            shapes[layer.name] = out
            yield dataclasses.replace(layer, out_shape=out, in_shapes=tuple(in_shapes))

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    @property
    def mac_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.kind in MAC_KINDS)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}")

    def shape(self, name: str) -> Shape:
        """Shape of tensor ``name`` (a layer's output, or ``"input"``)."""
        return tuple(self.input) if name == INPUT else self.layer(name).out_shape

    @property
    def output_names(self) -> tuple[str, ...]:
        """The model's outputs: the layers no other layer reads, and those named in ``outputs``."""
        read = {n for layer in self.layers for n in layer.inputs} - set(self.outputs)
        return tuple(layer.name for layer in self.layers
                     if layer.name not in read and not isinstance(layer, Constant))
