"""How layers read and move tensors: the IR's data-movement semantics, for any dtype.

These functions are what :mod:`mapper.ir`'s docstrings say, written once for int8
and float tensors alike (HWC numpy arrays): which elements a :class:`~mapper.ir.MatMul`
multiplies, how :class:`~mapper.ir.Add` and :class:`~mapper.ir.Mul` broadcast, and
concatenations, the layout layers (pad, channel slice, crop, roll, window partition and reverse, patch merge).  The
float reference (:mod:`mapper.reference`) computes with them; the integer golden
model must agree with them element for element (``tests/test_quantization.py``
checks it).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .ir import MatMul

__all__ = ["matmul_operands", "matmul_output", "broadcast_input", "concat", "pad", "channel_slice", "pixel_reshape", "crop", "roll",
           "window_partition", "window_reverse", "patch_merge", "depth_to_space", "space_to_depth", "channel_shuffle"]


def _heads_view(t: np.ndarray, rows: int, cols: int, offset: int, windows: int, heads: int) -> np.ndarray:
    """``[windows * heads, rows, cols]`` of a tensor holding ``rows * windows`` tokens (row ``r`` of
    window ``w`` is token ``r * windows + w``) with head ``h``'s columns at ``offset + h * cols``."""
    tok = t.reshape(rows, windows, -1)[:, :, offset:offset + heads * cols]
    return tok.reshape(rows, windows, heads, cols).transpose(1, 2, 0, 3).reshape(windows * heads, rows, cols)


def matmul_operands(layer: MatMul, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batched operands ``[B, M, K]`` and ``[B, K, N]`` (batch ``(window, head)``) a product reads.

    Raises
    ------
    ValueError
        For an ``"opaque"`` product, which has no element-level semantics.
    """
    if layer.b_layout == "opaque":
        raise ValueError(f"{layer.name}: an opaque product (b_layout 'opaque') cannot be executed")
    wins, heads = layer.windows, layer.heads
    lhs = _heads_view(a, layer.m, layer.k, layer.a_offset, wins, heads)
    if layer.b_layout == "nk":
        rhs = _heads_view(b, layer.n, layer.k, layer.b_offset, wins, layer.b_heads).transpose(0, 2, 1)
    else:
        rhs = _heads_view(b, layer.k, layer.n, layer.b_offset, wins, layer.b_heads)
    return lhs, np.repeat(rhs, layer.b_repeat, axis=0)      # (window, b head) items, each b_repeat times


def matmul_output(layer: MatMul, prod: np.ndarray) -> np.ndarray:
    """The product ``[B, M, N]`` laid out as the layer's output tensor (the tokens of ``a``, heads' columns side by side)."""
    wins = layer.windows
    out = prod.reshape(wins, layer.heads, layer.m, layer.n).transpose(2, 0, 1, 3)
    return out.reshape(layer.out_shape)


def broadcast_input(t: np.ndarray, shape) -> np.ndarray:
    """An input of :class:`~mapper.ir.Add`/:class:`~mapper.ir.Mul` at the output ``shape``: numpy
    broadcasting of H and W; channels repeated when their count divides the output's."""
    reps = shape[2] // t.shape[2]
    return np.broadcast_to(np.tile(t, (1, 1, reps)) if reps > 1 else t, tuple(shape))


def concat(xs, along: str, out_shape) -> np.ndarray:
    """A :class:`~mapper.ir.Concat`: the channels side by side, or the pixels one after the other."""
    if along == "channels":
        return np.concatenate(xs, axis=-1)
    return np.concatenate([x.reshape(-1, x.shape[-1]) for x in xs]).reshape(out_shape)


def pad(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Zeros at the bottom and the right up to ``out_h x out_w``."""
    return np.pad(x, ((0, out_h - x.shape[0]), (0, out_w - x.shape[1]), (0, 0)))


def channel_slice(x: np.ndarray, start: int, channels: int) -> np.ndarray:
    """Channels ``start .. start + channels`` of every pixel."""
    return x[:, :, start:start + channels].copy()


def pixel_reshape(x: np.ndarray, out_h: int, out_w: int, start: int = 0) -> np.ndarray:
    """``out_h * out_w`` pixels from pixel ``start``, in order, as ``out_h x out_w`` (``mapper.ir.PixelReshape``)."""
    return x.reshape(-1, x.shape[2])[start:start + out_h * out_w].reshape(out_h, out_w, x.shape[2]).copy()


def crop(x: np.ndarray, out_h: int, out_w: int, y0: int = 0, x0: int = 0, step=(1, 1)) -> np.ndarray:
    """``out_h x out_w`` pixels from ``(y0, x0)``, every ``step``-th of each axis (``mapper.ir.Crop``)."""
    return x[y0::step[0], x0::step[1]][:out_h, :out_w].copy()


def roll(x: np.ndarray, shift: int, shift_x: Optional[int] = None) -> np.ndarray:
    """``out[y, x] = in[(y + shift) mod H, (x + shift_x) mod W]`` (``torch.roll(x, (-shift, -shift_x), (1, 2))``;
    ``shift_x`` None: ``shift``)."""
    return np.roll(x, (-shift, -(shift if shift_x is None else shift_x)), axis=(0, 1))


def window_partition(x: np.ndarray, window: int) -> np.ndarray:
    """``H x W x C`` -> ``window**2 x windows x C``: row ``(y % win) * win + x % win`` of window
    ``(y // win) * (W // win) + x // win``."""
    h, w, c = x.shape
    t = x.reshape(h // window, window, w // window, window, c).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(t).reshape(window * window, (h // window) * (w // window), c)


def window_reverse(x: np.ndarray, window: int, out_h: int, out_w: int) -> np.ndarray:
    """The inverse of :func:`window_partition`, back to ``out_h x out_w``."""
    c = x.shape[2]
    t = x.reshape(window, window, out_h // window, out_w // window, c).transpose(2, 0, 3, 1, 4)
    return np.ascontiguousarray(t).reshape(out_h, out_w, c)


def depth_to_space(x: np.ndarray, block: int) -> np.ndarray:
    """``H x W x (b*b*C)`` -> ``bH x bW x C``: pixel ``(y*b + i, x*b + j)`` is channel block ``i*b + j`` of ``(y, x)``."""
    h, w, c = x.shape
    t = x.reshape(h, w, block, block, c // block ** 2).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(t).reshape(h * block, w * block, c // block ** 2)


def space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    """``H x W x C`` -> ``H/b x W/b x (b*b*C)``, the inverse of :func:`depth_to_space`."""
    h, w, c = x.shape
    t = x.reshape(h // block, block, w // block, block, c).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(t).reshape(h // block, w // block, block * block * c)


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """Channel ``j`` of the output is channel ``(j % groups) * (C / groups) + j // groups`` of ``x``."""
    h, w, c = x.shape
    return np.ascontiguousarray(x.reshape(h, w, groups, c // groups).transpose(0, 1, 3, 2)).reshape(h, w, c)


def patch_merge(x: np.ndarray) -> np.ndarray:
    """Swin's 2x2 gather: channels ``[x(0,0), x(1,0), x(0,1), x(1,1)]`` (row, column); odd sides zero-padded."""
    h, w, _ = x.shape
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)))
    return np.concatenate([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], axis=-1)
