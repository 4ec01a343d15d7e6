"""Input images: the preprocessing the zoo's models expect, a synthetic calibration image,
and the int8 quantisation of the model input.

Every model of the zoo (SegFormer and Swin/UPerNet in mmseg, torchvision's ResNet-50,
OFA, detrex's DETR family) is trained on RGB images normalised per channel with the
ImageNet statistics: ``(rgb / 255 - mean) / std``, mean ``(0.485, 0.456, 0.406)`` and
std ``(0.229, 0.224, 0.225)`` (mmseg writes them as ``mean=[123.675, 116.28, 103.53]``,
``std=[58.395, 57.12, 57.375]`` on 0..255; ``to_rgb=True``).

A network of one input channel (the ONNX model zoo's super-resolution, on the Y channel)
takes the image's luma, ITU-R BT.601's ``0.299 R + 0.587 G + 0.114 B`` (PIL's ``"L"``),
normalised alike with the means of those statistics (:data:`GRAY_MEAN`, :data:`GRAY_STD`).

The quantised input has one fixed scale, :data:`INPUT_SCALE`, that covers every value
the normalisation can produce (the blue channel at 255 is the largest, 2.64), so any
image quantises without saturation and no calibration image decides it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GRAY_MEAN", "GRAY_STD", "IMAGE_CHANNELS", "INPUT_SCALE", "preprocess",
           "synthetic_image",
           "calibration_image", "quantize_input", "quantize_tensor", "round_half_up"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A one-channel input's luma weights (ITU-R BT.601) and normalisation (the means of ImageNet's).
LUMA = (0.299, 0.587, 0.114)
GRAY_MEAN, GRAY_STD = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
#: The input channels an image gives: RGB, or its luma.
IMAGE_CHANNELS = (3, 1)
#: Last word of the calibration images' seeds (a non-zero last word: numpy ignores trailing zeros).
CALIBRATION_TAG = 0xCA11B
#: Scale of the int8 input: the largest magnitude ``preprocess`` can give, over 127.
INPUT_SCALE = max(max(m, 1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)) / 127


def round_half_up(v) -> np.ndarray:
    """``floor(v + 1/2)``: the project's rounding rule (``hw/numerics.py``), on floats."""
    return np.floor(np.asarray(v, np.float64) + 0.5)


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise ValueError(f"an image must be H x W x 3 (RGB), not shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"an RGB image must be uint8 (0..255), not dtype {a.dtype}")
    return a


def preprocess(rgb, channels: int = 3) -> np.ndarray:
    """The model input of an RGB ``uint8`` image ``H x W x 3``: ``(rgb/255 - mean) / std``, float32 HWC;
    for ``channels`` 1, of its luma, ``H x W x 1``.

    Raises
    ------
    ValueError
        If ``rgb`` is not a non-empty ``H x W x 3`` uint8 array (the message names its shape or dtype),
        or ``channels`` is not one an image gives (:data:`IMAGE_CHANNELS`).
    """
    if channels not in IMAGE_CHANNELS:
        raise ValueError(f"an image gives 3 input channels (RGB) or 1 (its luma), not {channels}")
    a = _check_rgb(rgb).astype(np.float32) / np.float32(255)
    if channels == 1:
        return (a @ np.float32(LUMA)[:, None] - np.float32(GRAY_MEAN)) / np.float32(GRAY_STD)
    return (a - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)


def quantize_input(image) -> np.ndarray:
    """int8 ``clip(round(image / INPUT_SCALE), -128, 127)`` of a preprocessed float image (HWC)."""
    a = np.asarray(image)
    if a.ndim != 3 or 0 in a.shape or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
        raise ValueError(f"the input must be a finite float H x W x C image (see preprocess), "
                         f"not {a.dtype} of shape {a.shape}")
    return quantize_tensor(a, INPUT_SCALE)


def quantize_tensor(x, scale: float) -> np.ndarray:
    """int8 ``clip(round(x / scale), -128, 127)``, rounding half up: any activation or constant."""
    return np.clip(round_half_up(np.asarray(x) / scale), -128, 127).astype(np.int8)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Noise in [-1, 1] that varies over about ``h / cells`` pixels: a coarse grid, bilinearly upsampled."""
    grid = rng.uniform(-1, 1, (cells + 2, cells + 2))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A colour as natural scenes have them: a brightness and a moderate tint (RGB, 0..255)."""
    return rng.uniform(30, 225) + rng.normal(0, 35, 3)


def synthetic_image(height: int, width: int, seed=0, *, objects: int = 12) -> np.ndarray:
    """A seeded ``height x width x 3`` uint8 RGB image that looks like a natural scene, not noise.

    A sky-to-ground colour gradient, ``objects`` soft-edged ellipses of random colours
    and sizes (regions with edges, as objects give), low-frequency shading and texture
    at two scales, and a little sensor noise.  Neighbouring pixels are strongly
    correlated, as in photographs, so a network's activations are in a natural range.
    ``seed`` is anything ``numpy.random.default_rng`` takes (an integer or a sequence of them).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, not {height}x{width}")
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    top, bottom = _colour(rng), _colour(rng)
    img = np.broadcast_to(top * (1 - y) + bottom * y, (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    for _ in range(objects):
        cy, cx = rng.uniform(0, height / max(height, width)), rng.uniform(0, width / max(height, width))
        ry, rx = rng.uniform(0.04, 0.3, 2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        edge = rng.uniform(0.02, 0.15)                        # edge softness, in radii
        alpha = np.clip((1 - np.sqrt(u * u + v * v)) / edge, 0, 1)[:, :, None]
        colour = _colour(rng) * (1 + 0.25 * _smooth_noise(rng, height, width, 3)[:, :, None])
        img = img * (1 - alpha) + colour * alpha
    shading = 1 + 0.2 * _smooth_noise(rng, height, width, 2)
    texture = 12 * _smooth_noise(rng, height, width, max(2, min(height, width) // 8))
    img = img * shading[:, :, None] + texture[:, :, None] + rng.normal(0, 2, img.shape)
    return np.clip(round_half_up(img), 0, 255).astype(np.uint8)


def calibration_image(height: int, width: int, seed: int = 0, count: int = 1, channels: int = 3) -> np.ndarray:
    """The preprocessed calibration input of ``seed``: ``count`` synthetic images drawn from
    their own seeds ``(seed, i, CALIBRATION_TAG)`` (never equal to ``synthetic_image(h, w, s)``
    for an integer ``s``, the test images), ``H x W x channels`` for one, ``[count, H, W, channels]``
    for more."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    images = [preprocess(synthetic_image(height, width, (seed, i, CALIBRATION_TAG)), channels) for i in range(count)]
    return images[0] if count == 1 else np.stack(images)
