"""Where each tensor of a model is stored, and how a vector pass sees a tensor through layout layers.

Storage
-------
Every tensor is int8 HWC in a *buffer*: element ``(y, x, ch)`` is byte
``buffer + (pixel + y * W + x) * pitch + offset + ch``.  A tensor has a buffer of its own
(``pitch = C``, ``pixel = offset = 0``), except the inputs of a :class:`~mapper.ir.Concat`,
which their producers write straight into the concatenation's buffer at their channel
offset, or from their first pixel for a concatenation of pixels (zero-copy; consumers read
them there with its pitch); a constant part is in that buffer from the start
(``mapper.program`` makes it static data).  A :class:`~mapper.ir.ChannelSlice` and a
:class:`~mapper.ir.PixelReshape` are views of their input's buffer (from a channel, from a pixel).  A concatenation that is itself an input of
another lives in the outer one's buffer, and so do its parts: offsets and first pixels add
up and every part has the outermost pitch (DenseNet's ``Concat([c1, conv(c1)])``).

Views
-----
A vector pass (``mapper.fusion``) iterates over a raster of pixels and reads or writes
every operand through an address pattern (``hw.vector.Axis``).  :func:`view_of` gives the
pattern of a stored tensor; :func:`through` composes it with a layout layer, read in
the forward direction (the pattern of the layer's *output* coordinates): zero padding,
a cyclic shift, a crop, Swin's window reverse.  :func:`partition_view` is the write
pattern of a window partition or a space to depth over its input's raster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hw.vector import Axis

from .ir import (INPUT, VIEW_KINDS, ChannelSlice, Concat, Crop, DepthToSpace, Layer, Model, Pad, Roll, Shape,
                 SpaceToDepth, WindowPartition, WindowReverse)

__all__ = ["Storage", "View", "storage_plan", "view_of", "through", "partition_view", "LayoutError"]


class LayoutError(ValueError):
    """A graph whose tensors cannot be laid out (the message names the layer)."""


@dataclass(frozen=True)
class Storage:
    """Where a tensor lives: its buffer, the bytes per pixel there and its first channel."""

    buffer: str
    pitch: int
    offset: int
    shape: Shape
    pixel: int = 0

    @property
    def start(self) -> int:
        """Its first byte's offset in the buffer."""
        return self.pixel * self.pitch + self.offset

    def cells(self, buffer):
        """Its elements as ``[H*W, C]``: a view of its buffer's bytes as a ``[pixels, pitch]`` array."""
        h, w, c = self.shape
        return buffer[self.pixel:self.pixel + h * w, self.offset:self.offset + c]

    @property
    def buffer_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.pitch


def storage_plan(model: Model) -> dict[str, Storage]:
    """The storage of every tensor of ``model`` (its input and every layer's output)."""
    plan = {INPUT: Storage(INPUT, model.input[2], 0, tuple(model.input))}
    for layer in model.layers:
        plan[layer.name] = Storage(layer.name, layer.out_shape[2], 0, layer.out_shape)
    views = {layer.name for layer in model.layers if layer.kind in VIEW_KINDS}
    for layer in model.layers:
        if layer.kind in VIEW_KINDS:        # a view: its input's buffer, from its first channel or pixel
            src = plan[layer.inputs[0]]
            slice_ = isinstance(layer, ChannelSlice)
            plan[layer.name] = Storage(src.buffer, src.pitch, src.offset + (layer.start if slice_ else 0), layer.out_shape,
                                       src.pixel + (0 if slice_ else layer.start))
            continue
        if not isinstance(layer, Concat):
            continue
        offset = pixel = 0
        for src, shape in zip(layer.inputs, layer.in_shapes):
            if plan[src].buffer != src:
                where = (f"a view of {plan[src].buffer!r}" if src in views
                         else f"already part of the concatenation {plan[src].buffer!r}")
                raise LayoutError(f"{layer.name}: input {src!r} is {where}")
            if src == INPUT:
                raise LayoutError(f"{layer.name}: input {src!r} is not computed, so it cannot be written "
                                  f"into the concatenation")
            # ``src`` may itself be a concatenation (layers come in order, so it is placed already):
            # its parts move with it, their offsets and pitch composed with its own
            for name, st in list(plan.items()):
                if st.buffer == src:
                    plan[name] = Storage(layer.name, layer.out_shape[2], offset + st.offset, st.shape, pixel + st.pixel)
            if layer.along == "pixels":
                pixel += shape[0] * shape[1]
            else:
                offset += shape[2]
    return plan


@dataclass(frozen=True)
class View:
    """A pattern over a raster: ``(y, x)`` -> ``base_offset + Y(y) + X(x)`` in ``buffer``."""

    buffer: str
    offset: int
    c: int
    y: Axis
    x: Axis


def view_of(st: Storage, raster: tuple[int, int] | None = None) -> View:
    """The plain pattern of a stored tensor; over ``raster`` (default its own), a dimension of
    one broadcasts (stride 0)."""
    h, w, c = st.shape
    rh, rw = raster or (h, w)
    if (h not in (1, rh)) or (w not in (1, rw)):
        raise LayoutError(f"tensor of shape {h}x{w} does not broadcast to {rh}x{rw}")
    return View(st.buffer, st.start, c, Axis(rh, 0 if h == 1 and rh > 1 else w * st.pitch),
                Axis(rw, 0 if w == 1 and rw > 1 else st.pitch))


def _plain(ax: Axis) -> bool:
    return ax.start == 0 and ax.win == ax.wrap and ax.wrap == ax.n


def through(view: View, layer: Layer) -> View:
    """The view of ``layer``'s output coordinates, given the view of its input's."""
    if isinstance(layer, Crop):
        if (layer.y0, layer.x0, layer.step) == (0, 0, (1, 1)):
            return replace(view, y=replace(view.y, n=layer.out_h), x=replace(view.x, n=layer.out_w))
        if not (_plain(view.y) and _plain(view.x)):
            raise LayoutError(f"{layer.name}: cropping from ({layer.y0}, {layer.x0}) or by steps a shifted or windowed view")
        return replace(view, offset=view.offset + layer.y0 * view.y.stride + layer.x0 * view.x.stride,
                       y=_stepped_axis(view.y, layer.y0, layer.step[0], layer.out_h, layer.name),
                       x=_stepped_axis(view.x, layer.x0, layer.step[1], layer.out_w, layer.name))
    if isinstance(layer, Pad):
        if not (_plain(view.y) and _plain(view.x)):
            raise LayoutError(f"{layer.name}: padding a shifted or windowed view")
        return replace(view, y=_pad(view.y, layer.out_h), x=_pad(view.x, layer.out_w))
    if isinstance(layer, Roll):
        if view.y.start or view.x.start or view.y.n != view.y.wrap or view.x.n != view.x.wrap:
            raise LayoutError(f"{layer.name}: shifting a shifted or cropped view")
        sy, sx = layer.shifts
        return replace(view, y=replace(view.y, start=sy % view.y.n), x=replace(view.x, start=sx % view.x.n))
    if isinstance(layer, WindowReverse):
        return _window_view(view, layer.out_h, layer.out_w, layer.window, layer.name)
    if isinstance(layer, DepthToSpace):
        return _depth_view(view, layer)
    raise LayoutError(f"{layer.name}: a {layer.kind} layer is not a view")


def _stepped_axis(ax: Axis, first: int, step: int, n: int, name: str) -> Axis:
    """``n`` positions of a plain axis from ``first``, ``step`` apart; those past its valid ones
    (the zeros of a padding before the crop) stay padding."""
    valid = -(-(ax.valid - first) // step)
    if valid < 1:
        raise LayoutError(f"{name}: a crop of padding alone")
    return Axis(n, ax.stride * step, valid=valid if valid < n else 0)


def _pad(ax: Axis, n: int) -> Axis:
    return Axis(n, ax.stride, 0, n, ax.valid, n, ax.s_hi)


def _window_view(view: View, h: int, w: int, win: int, name: str) -> View:
    """Pixel (y, x) of an h x w image stored window-partitioned (row ``m`` of window ``wi`` is
    token ``m * windows + wi``): offsets ``(y%win)*win*windows*P + (y//win)*(w//win)*P`` and
    ``(x%win)*windows*P + (x//win)*P``, P the bytes per token."""
    if not (_plain(view.y) and _plain(view.x)) or view.x.n * view.y.n != h * w:
        raise LayoutError(f"{name}: window layout over a non-plain view")
    pitch = view.x.stride
    windows = (h // win) * (w // win)
    return replace(view, y=Axis(h, win * windows * pitch, win=win, s_hi=(w // win) * pitch),
                   x=Axis(w, windows * pitch, win=win, s_hi=pitch))


def _depth_view(view: View, layer: DepthToSpace | SpaceToDepth) -> View:
    """Pixel (v, u) of a depth-to-space output (or of a space-to-depth input): pixel (v // b, u // b)
    of ``view``, channel block ``(v % b) * b + u % b`` (each axis split at the block, its low part
    stepping channel blocks)."""
    if not (_plain(view.y) and _plain(view.x)):
        raise LayoutError(f"{layer.name}: {layer.kind.replace('_', ' ')} over a non-plain view")
    b = layer.block
    c = view.c // b ** 2
    return View(view.buffer, view.offset, c, Axis(view.y.n * b, b * c, win=b, s_hi=view.y.stride),
                Axis(view.x.n * b, c, win=b, s_hi=view.x.stride))


def partition_view(out: View, layer: WindowPartition | SpaceToDepth, in_shape: Shape) -> View:
    """The write pattern of ``layer`` over its input's raster, given the view of its output tensor."""
    if isinstance(layer, SpaceToDepth):
        return _depth_view(out, layer)
    return _window_view(out, in_shape[0], in_shape[1], layer.window, layer.name)
