"""The workload IR: a model is an ordered list of layers with full shapes.

MAC layers (``Conv2d``, ``Linear``, ``MatMul``) carry everything the mapper needs
to tile them; non-MAC layers (``Elementwise``) carry element counts so that the
whole network is timed.  Every multiply-accumulate of a model belongs to exactly
one layer.  Activations are int8 in HWC order; a token sequence of length T is a
T x 1 image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

__all__ = ["Conv2d", "Linear", "MatMul", "Elementwise", "Layer", "Model", "PARTS",
           "ELEMENTWISE_KINDS", "MAC_KINDS", "conv_out", "min_dram_bytes"]

PARTS = ("encoder", "decoder", "backbone", "transformer", "head")
MAC_KINDS = ("conv2d", "linear", "matmul")
ELEMENTWISE_KINDS = ("softmax", "layernorm", "gelu", "relu", "add", "mul", "resize",
                     "concat", "pool", "batchnorm", "copy")


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output extent of a convolution along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _rows_read(size: int, out: int, kernel: int, stride: int, padding: int) -> int:
    """Input rows (or columns) of ``size`` that some output's window touches (padding excluded)."""
    return len({o * stride + k - padding for o in range(out) for k in range(kernel)} & set(range(size)))


def min_dram_bytes(layer: "Layer") -> tuple[int, int]:
    """(bytes read, bytes written) of a MAC layer run on its own: every input element some
    output uses and every weight read once, the output written once (int8).  No mapping of
    the layer moves less, so ``max(read, written) / DRAM rate`` bounds its time."""
    if isinstance(layer, Conv2d):
        (kh, kw), s, p = layer.kernel, layer.stride, layer.padding
        inp = (_rows_read(layer.in_h, layer.out_h, kh, s, p) * _rows_read(layer.in_w, layer.out_w, kw, s, p)
               * layer.in_ch)
        wgt = layer.out_ch * (layer.in_ch // layer.groups) * kh * kw
        return inp + wgt, layer.out_h * layer.out_w * layer.out_ch
    if isinstance(layer, Linear):
        return layer.tokens * layer.in_features + layer.in_features * layer.out_features, \
            layer.tokens * layer.out_features
    if isinstance(layer, MatMul):
        return layer.batch * (layer.m + layer.n) * layer.k, layer.batch * layer.m * layer.n
    raise TypeError(f"{layer.name}: not a MAC layer (kind {layer.kind!r})")


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution over an ``in_h x in_w x in_ch`` input (groups = in_ch is depthwise)."""

    name: str
    part: str
    in_ch: int
    out_ch: int
    in_h: int
    in_w: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = True
    relu: bool = False
    inputs: tuple[str, ...] = ()
    kind: str = field(default="conv2d", init=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        if isinstance(self.kernel, int):
            object.__setattr__(self, "kernel", (self.kernel, self.kernel))
        for f in ("in_ch", "out_ch", "in_h", "in_w", "stride", "groups"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{self.name}: {f} must be positive, not {getattr(self, f)!r}")
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide in_ch={self.in_ch} "
                             f"and out_ch={self.out_ch}")
        if self.out_h <= 0 or self.out_w <= 0:
            raise ValueError(f"{self.name}: kernel {self.kernel} does not fit input {self.in_h}x{self.in_w}")

    @property
    def out_h(self) -> int:
        return conv_out(self.in_h, self.kernel[0], self.stride, self.padding)

    @property
    def out_w(self) -> int:
        return conv_out(self.in_w, self.kernel[1], self.stride, self.padding)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_ch == self.out_ch

    @property
    def macs(self) -> int:
        kh, kw = self.kernel
        return self.out_h * self.out_w * self.out_ch * (self.in_ch // self.groups) * kh * kw

    @property
    def shape_str(self) -> str:
        kh, kw = self.kernel
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (f"{self.in_h}x{self.in_w}x{self.in_ch} -> {self.out_h}x{self.out_w}x{self.out_ch} "
                f"k{kh}x{kw} s{self.stride} p{self.padding}{g}")


@dataclass(frozen=True)
class Linear:
    """Fully connected layer applied to each of ``tokens`` rows: ``[T, in] x [in, out]``."""

    name: str
    part: str
    tokens: int
    in_features: int
    out_features: int
    bias: bool = True
    relu: bool = False
    inputs: tuple[str, ...] = ()
    kind: str = field(default="linear", init=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        for f in ("tokens", "in_features", "out_features"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{self.name}: {f} must be positive, not {getattr(self, f)!r}")

    @property
    def macs(self) -> int:
        return self.tokens * self.in_features * self.out_features

    @property
    def shape_str(self) -> str:
        return f"{self.tokens}x{self.in_features} -> {self.tokens}x{self.out_features}"


@dataclass(frozen=True)
class MatMul:
    """Batched product of two activations: ``[B, M, K] x [B, K, N] -> [B, M, N]``.

    Used for attention: Q.K^T (M = queries, K = head dim, N = keys) and A.V
    (M = queries, K = keys, N = head dim), with B = heads (x windows for Swin).
    """

    name: str
    part: str
    batch: int
    m: int
    k: int
    n: int
    inputs: tuple[str, ...] = ()
    kind: str = field(default="matmul", init=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        for f in ("batch", "m", "k", "n"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{self.name}: {f} must be positive, not {getattr(self, f)!r}")

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def shape_str(self) -> str:
        return f"{self.batch}x[{self.m}x{self.k}]x[{self.k}x{self.n}]"


@dataclass(frozen=True)
class Elementwise:
    """A non-MAC layer: ``elements`` outputs computed from ``in_elements`` inputs.

    ``kind`` is one of ``ELEMENTWISE_KINDS``; ``fused`` marks an operation that
    the post-processing unit applies on the fly to the preceding MAC layer's
    output (for example ReLU), so it costs no separate pass.
    """

    name: str
    part: str
    op: str
    elements: int
    in_elements: int = 0
    fused: bool = False
    inputs: tuple[str, ...] = ()
    kind: str = field(default="", init=False)

    def __post_init__(self) -> None:
        _check_part(self.part)
        if self.op not in ELEMENTWISE_KINDS:
            raise ValueError(f"{self.name}: op must be one of {ELEMENTWISE_KINDS}, not {self.op!r}")
        if self.elements <= 0:
            raise ValueError(f"{self.name}: elements must be positive, not {self.elements!r}")
        object.__setattr__(self, "kind", self.op)
        if self.in_elements == 0:
            object.__setattr__(self, "in_elements", self.elements)

    @property
    def macs(self) -> int:
        return 0

    @property
    def shape_str(self) -> str:
        return f"{self.in_elements} -> {self.elements} elems"


Layer = Union[Conv2d, Linear, MatMul, Elementwise]


@dataclass(frozen=True)
class Model:
    """A workload: its layers in execution order and how it was built."""

    name: str
    variant: str
    input: tuple[int, int, int]          # (H, W, C) of the input image
    layers: tuple[Layer, ...]
    params: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{self.name}: duplicate layer names {dup[:5]}")

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
