"""How an ONNX tensor sits in an IR tensor: views, and the IR layout layers that move data.

The IR keeps every tensor as an ``(H, W, C)`` array in HWC order (:mod:`mapper.ir`); an ONNX
graph reshapes, transposes, slices and splits its tensors freely.  The importer
(:mod:`mapper.onnx_import`) therefore represents every ONNX value that is not a layer's own
output as a :class:`View` of an IR tensor: which element of the IR tensor's HWC buffer each
ONNX element is.  A view is *strided* (``offset + sum(i_k * strides[k])``, as a numpy view)
whenever it can be, else it holds the explicit index of every element.

Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice, Split, Gather with constant indices,
Expand, Tile and a Concat of parts of one tensor only change the view: they move no data.  A
consumer that needs its input laid out as an IR tensor (a convolution's NCHW input is the
HWC tensor itself, a linear layer's ``[.., tokens, C]`` input too) reads a view that is one;
otherwise the data must move, and :func:`layout_candidates` lists the IR layout layers
(crop, roll, window partition and reverse, patch merge) whose output the view is a strided
view of.  :func:`match_layout` checks a candidate exactly, element by element.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from . import views as ir_views

__all__ = ["View", "identity", "nchw", "tokens", "nhwc", "indices", "gather", "from_indices", "reshape", "transpose",
           "slice_axis", "take", "expand", "concat_same", "pixel_concat", "channel_rows", "covers", "is_form", "rows_view", "channels_read", "Candidate",
           "layout_candidates", "match_layout", "Shape3"]

Shape3 = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class View:
    """ONNX tensor of ``shape`` whose element ``i`` is element ``offset + i . strides`` (or
    ``index[i]``) of the HWC buffer of IR tensor ``source`` (shape ``src_shape``)."""

    source: str
    src_shape: Shape3
    shape: tuple[int, ...]
    strides: Optional[tuple[int, ...]] = None
    offset: int = 0
    index: Optional[np.ndarray] = None
    origin: Optional[str] = None       # the ONNX value where the view stopped being its whole tensor

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def strided(self) -> bool:
        return self.strides is not None

    def on(self, source: str, src_shape: Shape3) -> "View":
        """The same element pattern over another tensor of the same shape."""
        return View(source, tuple(src_shape), self.shape, self.strides, self.offset, self.index)

    def named(self, value: str, prior: Optional[str] = None) -> "View":
        """The view as ONNX value ``value`` holds it: ``origin`` is the first value in its chain that
        is not its whole tensor, strided (``prior``, the origin of the op's input, or ``value``)."""
        whole = self.strided and covers(self)
        return dataclasses.replace(self, origin=None if whole else (prior or value))


def _contiguous(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def identity(source: str, src_shape: Shape3, shape: Sequence[int], strides: Sequence[int]) -> View:
    return View(source, tuple(src_shape), tuple(shape), tuple(strides), 0)


def nchw(source: str, s: Shape3) -> View:
    """``[1, C, H, W]``: the IR tensor as an NCHW image."""
    h, w, c = s
    return identity(source, s, (1, c, h, w), (h * w * c, 1, w * c, c))


def nhwc(source: str, s: Shape3) -> View:
    """``[1, H, W, C]``."""
    h, w, c = s
    return identity(source, s, (1, h, w, c), (h * w * c, w * c, c, 1))


def tokens(source: str, s: Shape3) -> View:
    """``[1, H*W, C]``: the IR tensor as a token sequence."""
    h, w, c = s
    return identity(source, s, (1, h * w, c), (h * w * c, c, 1))


def indices(v: View) -> np.ndarray:
    """The HWC-buffer index of every element of ``v`` (int64, ``v.shape``)."""
    if v.index is not None:
        return v.index
    idx = _strided_offsets(v)
    idx += v.offset
    return idx


def _strided_offsets(v: View) -> np.ndarray:
    """``sum(i_k * strides[k])`` over the view's shape, built one axis at a time (outer sums)."""
    out = np.zeros((), dtype=np.int64)
    for n, s in zip(v.shape, v.strides):
        out = np.add.outer(out, np.arange(n, dtype=np.int64) * s)
    return np.ascontiguousarray(out)


def gather(v: View, data: np.ndarray) -> np.ndarray:
    """The elements of ``data`` (the source's HWC buffer, flat) that ``v`` holds, in ``v``'s shape."""
    if v.index is not None:
        return data[v.index]
    item = data.itemsize
    return np.lib.stride_tricks.as_strided(data[v.offset:], v.shape, [s * item for s in v.strides]).copy()


def from_indices(source: str, src_shape: Shape3, idx: np.ndarray) -> View:
    """The view whose elements are ``idx``: strided when ``idx`` is affine in the element's position."""
    shape = tuple(idx.shape)
    if idx.size == 0:
        return View(source, tuple(src_shape), shape, (0,) * len(shape), 0)
    offset = int(idx.flat[0])
    strides = []
    for axis, n in enumerate(shape):
        if n > 1:
            step = [0] * len(shape)
            step[axis] = 1
            strides.append(int(idx[tuple(step)]) - offset)
        else:
            strides.append(0)
    candidate = View(source, tuple(src_shape), shape, tuple(strides), offset)
    if np.array_equal(indices(candidate), idx):
        return candidate
    return View(source, tuple(src_shape), shape, None, 0, np.ascontiguousarray(idx, dtype=np.int64))


def _nocopy_strides(shape: Sequence[int], strides: Sequence[int], new: Sequence[int]) -> Optional[list[int]]:
    """Strides of ``new`` as a view of a strided array (numpy's no-copy reshape), or None."""
    old = [(n, s) for n, s in zip(shape, strides) if n != 1]
    out: list[int] = []
    i = 0
    for n in new:
        if n == 1:
            out.append(0)
            continue
        # consume old dims until their product equals n; they must be contiguous with each other
        prod, group = 1, []
        while prod < n and i < len(old):
            group.append(old[i])
            prod *= old[i][0]
            i += 1
        if prod != n:
            if n % prod == 0 or prod % n:
                return None
            # split one old dimension into several new ones
            size, stride = group[-1]
            if size % (prod // n):
                return None
            inner = prod // n
            old.insert(i, (inner, stride))
            group[-1] = (size // inner, stride * inner)
            prod = n
        for (a, sa), (b, sb) in zip(group, group[1:]):
            if sa != b * sb:
                return None
        out.append(group[-1][1])
    if i != len(old):
        return None
    return out


def reshape(v: View, shape: Sequence[int]) -> View:
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) != v.size:
        raise ValueError(f"cannot reshape {list(v.shape)} to {list(shape)}")
    if v.strided:
        strides = _nocopy_strides(v.shape, v.strides, shape)
        if strides is not None:
            return View(v.source, v.src_shape, shape, tuple(strides), v.offset)
    return from_indices(v.source, v.src_shape, indices(v).reshape(shape))


def transpose(v: View, perm: Sequence[int]) -> View:
    shape = tuple(v.shape[p] for p in perm)
    if v.strided:
        return View(v.source, v.src_shape, shape, tuple(v.strides[p] for p in perm), v.offset)
    return View(v.source, v.src_shape, shape, None, 0, np.ascontiguousarray(v.index.transpose(perm)))


def slice_axis(v: View, axis: int, start: int, stop: int, step: int) -> View:
    """``v[..., start:stop:step, ...]`` along ``axis`` (indices already clamped as ONNX Slice does)."""
    n = len(range(start, stop, step))
    if v.strided and step > 0:
        shape = list(v.shape)
        strides = list(v.strides)
        offset = v.offset + start * strides[axis]
        shape[axis] = n
        strides[axis] *= step
        return View(v.source, v.src_shape, tuple(shape), tuple(strides), offset)
    sl = [slice(None)] * len(v.shape)
    sl[axis] = slice(start, stop if stop >= 0 else None, step)
    return from_indices(v.source, v.src_shape, indices(v)[tuple(sl)])


def take(v: View, axis: int, which: np.ndarray) -> View:
    """ONNX Gather with constant indices (negative ones count from the end)."""
    which = np.where(which < 0, which + v.shape[axis], which)
    if which.ndim == 0 and v.strided:
        shape = v.shape[:axis] + v.shape[axis + 1:]
        strides = v.strides[:axis] + v.strides[axis + 1:]
        return View(v.source, v.src_shape, shape, strides, v.offset + int(which) * v.strides[axis])
    return from_indices(v.source, v.src_shape, np.take(indices(v), which, axis=axis))


def expand(v: View, shape: Sequence[int]) -> View:
    """numpy broadcasting of ``v`` to ``shape`` (expanded axes get stride 0)."""
    shape = tuple(np.broadcast_shapes(v.shape, tuple(shape)))
    if v.strided:
        pad = len(shape) - len(v.shape)
        old = (1,) * pad + v.shape
        strides = (0,) * pad + v.strides
        return View(v.source, v.src_shape, shape,
                    tuple(0 if o == 1 and n != 1 else s for o, n, s in zip(old, shape, strides)), v.offset)
    return View(v.source, v.src_shape, shape, None, 0, np.broadcast_to(v.index, shape))


def concat_same(views: Sequence[View], axis: int) -> View:
    """A Concat of parts of one tensor: again a view of it."""
    v0 = views[0]
    return from_indices(v0.source, v0.src_shape, np.concatenate([indices(v) for v in views], axis=axis))


def pixel_concat(views: Sequence[View], axis: int) -> Optional[np.ndarray]:
    """When every part holds its whole tensor, ``C`` channels like the others, and its elements along
    ``axis`` are consecutive blocks of its HWC buffer laid out alike in every part (detection
    levels ``Concat([x_i.view(1, C, -1)], 2)``, token sequences one after the other): the index of
    every element of the concatenation in the parts' buffers placed one after the other; else None."""
    out, start, pattern = [], 0, None
    for v in views:
        if not covers(v) or v.src_shape[2] != views[0].src_shape[2]:
            return None
        moved = np.moveaxis(indices(v), axis, 0)
        blocks = moved.reshape(moved.shape[0], -1)
        step = np.arange(blocks.shape[0])[:, None] * blocks.shape[1]
        if pattern is None:
            pattern = blocks[0]
        if blocks.shape[1] != pattern.size or not np.array_equal(blocks, step + pattern):
            return None
        out.append(moved + start)
        start += v.size
    return np.moveaxis(np.concatenate(out), 0, axis)


def channel_rows(v: View, axis: int, k: int) -> Optional[np.ndarray]:
    """When ``v``'s elements along ``axis`` are rows of ``k`` consecutive channels of its tensor, each
    starting at a multiple of ``k`` (a pixel's channels cut into rows): the row each position reads
    (``pixel * C / k + r``), in ``v``'s shape without ``axis``; else None."""
    if v.shape[axis] != k or v.src_shape[2] % k:
        return None
    moved = np.moveaxis(indices(v), axis, -1)
    if (moved[..., 0] % k).any() or not np.array_equal(moved, moved[..., :1] + np.arange(k)):
        return None
    return moved[..., 0] // k


def _bijective(shape, strides, n: int) -> bool:
    """Strided positions ``i . strides`` over ``shape`` are ``0 .. n-1``, each once."""
    step = 1
    for s, k in sorted((s, k) for k, s in zip(shape, strides) if k > 1):
        if s != step:
            return False
        step *= k
    return step == n


def covers(v: View) -> bool:
    """Whether ``v`` holds every element of its tensor exactly once (in any order)."""
    n = math.prod(v.src_shape)
    if v.size != n:
        return False
    if v.strided:
        return v.offset == 0 and _bijective(v.shape, v.strides, n)
    return reads_every_element(v)                  # as many elements as the tensor's: each once


def reads_every_element(v: View) -> bool:
    """Whether ``v`` holds every element of its tensor, some perhaps more than once (a broadcast)."""
    n = math.prod(v.src_shape)
    if v.strided and v.offset == 0:
        kept = [(k, s) for k, s in zip(v.shape, v.strides) if s and k > 1]       # broadcast axes aside
        if _bijective([k for k, _ in kept], [s for _, s in kept], n):
            return True
    flat = indices(v).ravel()
    if flat.size < n or flat.min() < 0 or flat.max() >= n:
        return False
    seen = np.zeros(n, bool)
    seen[flat] = True
    return bool(seen.all())


def rows_view(v: View, k: int, n: int, name: str, out_shape: Shape3) -> Optional[View]:
    """When ``v`` is rows of the first ``k`` channels of every token of its tensor once (what a linear
    layer reads), the view of the linear's ``n``-channel output (``name``) in the same order; else None."""
    h, w, c = v.src_shape
    if not v.shape or v.shape[-1] != k or k > c:
        return None
    if v.strided and v.offset == 0 and (k == 1 or v.strides[-1] == 1) and all(s % c == 0 for s in v.strides[:-1]):
        tok = [s // c for s in v.strides[:-1]]
        if not _bijective(v.shape[:-1], tok, h * w):
            return None
        return View(name, out_shape, v.shape[:-1] + (n,), tuple(t * n for t in tok) + (1,), 0)
    rows = indices(v).reshape(-1, k)
    if rows.shape[0] != h * w or (rows[:, 0] % c).any() or not np.array_equal(rows, rows[:, :1] + np.arange(k)):
        return None
    tok = rows[:, 0] // c
    if not np.array_equal(np.sort(tok), np.arange(h * w)):
        return None
    return from_indices(name, out_shape, tok.reshape(v.shape[:-1])[..., None] * n + np.arange(n))


def is_form(v: View, form: View) -> bool:
    """Whether ``v`` has the same elements in the same places as ``form`` (axes of size 1 aside)."""
    if v.shape != form.shape:
        return False
    if v.strided and form.strided:
        return v.offset == form.offset and all(n == 1 or a == b for n, a, b in zip(v.shape, v.strides, form.strides))
    return np.array_equal(indices(v), indices(form))


def channels_read(v: View) -> tuple[int, int]:
    """The range ``[lo, hi)`` of channels of its tensor that ``v`` reads."""
    c = v.src_shape[2]
    idx = indices(v) % c
    return int(idx.min()), int(idx.max()) + 1


# ---- the IR layout layers that move data -------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """An IR layout layer ``kind`` with ``params`` (its constructor's keywords) reading ``source``."""

    kind: str
    source: str
    src_shape: Shape3
    params: dict


def _layout_out(c: Candidate, base: np.ndarray) -> np.ndarray:
    """The candidate's output, computed on ``base`` (the source's elements as numbers; 0 = padding)."""
    if c.kind == "crop":
        return ir_views.crop(base, **c.params)
    if c.kind == "roll":
        return ir_views.roll(base, c.params["shift"], c.params.get("shift_x"))
    if c.kind == "window_partition":
        return ir_views.window_partition(base, c.params["window"])
    if c.kind == "window_reverse":
        return ir_views.window_reverse(base, c.params["window"], c.params["out_h"], c.params["out_w"])
    if c.kind == "patch_merge":
        return ir_views.patch_merge(base)
    if c.kind == "depth_to_space":
        return ir_views.depth_to_space(base, c.params["block"])
    if c.kind == "channel_shuffle":
        return ir_views.channel_shuffle(base, c.params["groups"])
    if c.kind == "channel_slice":
        return ir_views.channel_slice(base, c.params["start"], c.params["channels"])
    if c.kind == "pixel_reshape":
        return ir_views.pixel_reshape(base, c.params["out_h"], c.params["out_w"], c.params["start"])
    raise ValueError(f"unknown layout layer {c.kind!r}")


def match_layout(v: View, c: Candidate, name: str) -> Optional[View]:
    """The strided view of the candidate's output (named ``name``) that holds what ``v`` holds
    (``v`` over the candidate's source), or None when there is none."""
    n = math.prod(c.src_shape)
    out = _layout_out(c, np.arange(1, n + 1, dtype=np.int64).reshape(c.src_shape)) - 1   # -1 = padding
    where = np.full(n, -1, dtype=np.int64)
    flat = out.ravel()
    real = flat >= 0
    where[flat[real]] = np.flatnonzero(real)
    pos = where[indices(v).ravel()]
    if (pos < 0).any():
        return None
    found = from_indices(name, out.shape, pos.reshape(v.shape))
    return found if found.strided else None


def _present(values: np.ndarray, n: int) -> np.ndarray:
    """The distinct values of ``values`` (each in ``0 .. n-1``), sorted: ``np.unique`` in linear time."""
    return np.flatnonzero(np.bincount(values.ravel(), minlength=n))


def _crop_params(rows: np.ndarray, cols: np.ndarray) -> Optional[dict]:
    """A crop's parameters when ``rows`` and ``cols`` (sorted) are each evenly spaced, else None."""
    steps = [int(a[1] - a[0]) if len(a) > 1 else 1 for a in (rows, cols)]
    if any(len(a) > 1 and not np.all(np.diff(a) == s) for a, s in zip((rows, cols), steps)):
        return None
    return {"out_h": len(rows), "out_w": len(cols), "y0": int(rows[0]), "x0": int(cols[0]), "step": tuple(steps)}


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


def layout_candidates(v: View, crop_first: bool = False) -> Iterator[Candidate]:
    """IR layout layers whose output ``v`` might be a strided view of: a channel slice, the pixels as
    another image, crop, roll, window partition and reverse, patch merge (parameters guessed from
    ``v``; :func:`match_layout` decides).  Consecutive pixels are both a pixel reshape (a view, no
    copy) and a crop; the crop comes first with ``crop_first`` (of a layout layer's output, whose
    vector pass takes the crop along, where a pixel reshape would end that pass)."""
    src, (h, w, c) = v.source, v.src_shape
    lo, hi = channels_read(v)
    if (lo, hi) != (0, c):
        yield Candidate("channel_slice", src, v.src_shape, {"start": lo, "channels": hi - lo})
    idx = indices(v)
    ys, xs = idx // (w * c), (idx // c) % w
    yield from _pixel_candidates(v, idx, ys, xs, crop_first)
    y0, x0 = int(ys.flat[0]), int(xs.flat[0])
    signed = lambda s, n: s if s <= n // 2 else s - n          # noqa: E731
    if 0 < y0 and (y0 - x0) % math.gcd(h, w) == 0:
        yield Candidate("roll", src, v.src_shape, {"shift": signed(y0, h)})
    if y0 or x0:            # each axis its own shift (timm's Swin: the rows alone of a map one window wide)
        yield Candidate("roll", src, v.src_shape, {"shift": signed(y0, h), "shift_x": signed(x0, w)})
    yield from _window_candidates(v)
    if 4 * c in v.shape:
        yield Candidate("patch_merge", src, v.src_shape, {})
    for b in range(2, math.isqrt(c) + 1):
        if c % (b * b) == 0 and h * b in v.shape and w * b in v.shape:
            yield Candidate("depth_to_space", src, v.src_shape, {"block": b})
    # the channels of a whole tensor regrouped; of one pixel (SKNet's attention), also some of them,
    # in groups the view's shape shows
    for g in _divisors(c)[:-1]:
        if (v.size == h * w * c and c in v.shape) or (h * w == 1 and (g in v.shape or c // g in v.shape)):
            yield Candidate("channel_shuffle", src, v.src_shape, {"groups": g})
    # a window partition whose side the shape does not show, last: windows as wide as the image (one
    # column of them) are its raster order as PyTorch's [windows, 49, C], so the data moves only
    # where the windows are interleaved in the tokens ([1, 49 * windows, C], Swin at 129x97)
    if v.size == h * w * c:
        for win in sorted(set(_divisors(math.gcd(h, w))) - set(_shown_windows(v)), reverse=True):
            yield Candidate("window_partition", src, v.src_shape, {"window": win})


def _pixel_candidates(v: View, idx, ys, xs, crop_first: bool) -> Iterator[Candidate]:
    """Consecutive pixels of ``v`` as another image (a view) and as a crop, the crop first with
    ``crop_first`` (:func:`layout_candidates`); ``idx``, ``ys``, ``xs``: its elements and their pixels."""
    src, (h, w, c) = v.source, v.src_shape
    crop = _crop_params(_present(ys, h), _present(xs, w))
    crop = [Candidate("crop", src, v.src_shape, crop)] if crop is not None and (crop["out_h"], crop["out_w"]) != (h, w) else []
    if crop_first:
        yield from crop
    first = int(idx.min()) // c if v.size else 0
    sides = [(a, b) for a in v.shape for b in v.shape]
    if 1 in (h, w) and len(v.shape) == 3 and v.shape[:2] == (1, h * w):    # a row of tokens: any image of them
        sides += [(a, h * w // a) for a in _divisors(h * w)]
    for a, b in dict.fromkeys(sides):                                      # some pixels as another image
        if first + a * b <= h * w and (a, b, first) != (h, w, 0):
            yield Candidate("pixel_reshape", src, v.src_shape, {"out_h": a, "out_w": b, "start": first})
    if not crop_first:
        yield from crop


def _shown_windows(v: View) -> list[int]:
    """Window sides ``v``'s shape shows (a side, or the root of a square count) that tile its source, largest first."""
    h, w, _ = v.src_shape
    sides = set(v.shape) | {math.isqrt(n) for n in v.shape if math.isqrt(n) ** 2 == n}
    return sorted({n for n in sides if n > 1 and h % n == 0 and w % n == 0}, reverse=True)


def _window_candidates(v: View) -> Iterator[Candidate]:
    """Window partitions of the sides ``v``'s shape shows, and reverses of square windows of its source's
    height into images whose sides the view (or, for tokens ``[1, H*W, C]``, the windows' tiling) gives."""
    src, (h, w, _) = v.source, v.src_shape
    for win in _shown_windows(v):
        yield Candidate("window_partition", src, v.src_shape, {"window": win})
    win = math.isqrt(h)
    if win > 1 and win * win == h:
        tokens = len(v.shape) == 3 and v.shape[:2] == (1, h * w)
        sides = [(a, b) for a in v.shape for b in v.shape] + \
            [(a, h * w // a) for a in range(win, h * w + 1, win) if tokens and h * w % a == 0]
        for a, b in dict.fromkeys(sides):
            if a * b == h * w and a % win == 0 and b % win == 0:
                yield Candidate("window_reverse", src, v.src_shape, {"window": win, "out_h": a, "out_w": b})
