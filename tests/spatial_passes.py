"""Random spatial VEC passes (resizes, class maps, poolings, a chain after them) and their DRAM
images: the spatial unit's tests (``test_rtl_vector_spatial``) run them in Amaranth's simulator,
the differential fuzzer (``cosim.fuzz``'s ``vec_spatial``) inserts them in streams on the
Verilated accelerator.  ``wide`` draws sizes beyond the unit tests' (pixels, channels past a
pixel's lanes, windows as large as the source with padding at both edges)."""

from __future__ import annotations

import dataclasses

import numpy as np

from hw import operators as op
from hw import vector as vec
from hw.isa import VecOp
from vec_passes import Dram, input_operand, output_operand, stage_params

__all__ = ["source_operand", "dda", "nearest_params", "random_spatial", "pool_params", "random_pool", "with_chain",
           "random_case", "ties", "KINDS", "POOLS", "CHAINS", "ALIGNED", "LONG_WINDOWS", "ALL_KINDS", "SIZES"]

#: Ranges (low, high exclusive) the sizes are drawn from: the unit tests' (``False``) and the wide
#: ones (``True``): sources of one pixel to a dozen a side, channels past the row lanes and a
#: pooling's split, windows up to 7 (as large as the padded source, a window in padding at the edges).
SIZES = {False: {"src": (1, 6), "out": (1, 8), "c": (1, 9), "pool_src": (4, 9), "adaptive_out": (1, 7),
                 "kernel": (1, 5), "stride": (1, 4)},
         True: {"src": (1, 10), "out": (1, 13), "c": (1, 41), "pool_src": (1, 13), "adaptive_out": (1, 13),
                "kernel": (1, 8), "stride": (1, 6)}}


def source_operand(dram: Dram, rng, n_y: int, n_x: int, c: int) -> vec.Operand:
    """A plain raster of ``c`` channels (``hw.vector.plain_axis``) with a random pitch (padding
    between pixels, rows in either order)."""
    pitch_x = c + int(rng.integers(0, 3))
    pitch_y = pitch_x * n_x + int(rng.integers(0, 5))
    if rng.integers(0, 3) == 0:
        pitch_y = -pitch_y                     # rows bottom up
    size = abs(pitch_y) * (n_y - 1) + pitch_x * (n_x - 1) + c
    base = dram.alloc(size) + (abs(pitch_y) * (n_y - 1) if pitch_y < 0 else 0)
    return vec.Operand(base, c, vec.Axis(n_y, pitch_y), vec.Axis(n_x, pitch_x))


def dda(n_in_y: int, n_in_x: int, h: int, w: int, align: bool = False) -> dict:
    ay, ax = op.resize_axis_params(n_in_y, h, align), op.resize_axis_params(n_in_x, w, align)
    return {"y_start": ay.start, "y_step": ay.step, "x_start": ax.start, "x_step": ax.step, "align_corners": int(align)}


def nearest_params(n_in_y: int, n_in_x: int, h: int, w: int) -> dict:
    """A nearest resize's parameters: no DDA, each axis' witnesses ``n_in div n_out``, ``n_in mod n_out``."""
    return {"mode": 1, "y_start": 0, "y_step": 0, "x_start": 0, "x_step": 0,
            "y_q": n_in_y // h, "y_r": n_in_y % h, "x_q": n_in_x // w, "x_r": n_in_x % w}


def random_spatial(rng, kind: VecOp, nearest: bool = False, align: bool = False, prefix: np.ndarray | None = None,
                   wide: bool = False) -> tuple[vec.Descriptor, np.ndarray]:
    """A resize (bilinear, or nearest) or class map of random sizes, channels and patterns, and its
    DRAM image (after ``prefix``); ``align``: a bilinear one's DDA is align_corners' (the same draws:
    the same sizes); ``wide``: sizes of ``SIZES[True]``."""
    dram, size = Dram(rng, prefix), SIZES[wide]
    n_y, n_x = (int(v) for v in rng.integers(*size["src"], 2))
    h, w = (int(v) for v in rng.integers(*size["out"], 2))
    c = int(rng.integers(*size["c"]))
    src = source_operand(dram, rng, n_y, n_x, c)
    if kind == VecOp.RESIZE:
        out = output_operand(dram, rng, h, w, c)
        params = nearest_params(n_y, n_x, h, w) if nearest else \
            {"mode": 0, **dda(n_y, n_x, h, w, align), "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0}
        stage = vec.Stage(VecOp.RESIZE, 0, vec.NONE, 1, params)
    else:
        out = output_operand(dram, rng, h, w, 1)
        stage = vec.Stage(VecOp.RESIZE_ARGMAX, 0, vec.NONE, 1, dda(n_y, n_x, h, w, align))
    return vec.Descriptor(h, w, c if kind == VecOp.RESIZE else 1, (src, out), (stage,)), dram.image()


def pool_params(rng, mode: int, n_y: int, n_x: int, wide: bool = False) -> tuple[dict, int, int]:
    """A pooling's parameters over an ``n_y x n_x`` source (witnesses for an adaptive one) and its
    output raster: windowed with padding, ``ceil_mode`` and ``count_include_pad`` either way;
    adaptive to sizes that mostly do not divide the source's; output pixels split into 1 to 16 rows.
    ``wide``: sizes of ``SIZES[True]``, a window redrawn until it fits the padded source."""
    split = int(rng.choice([0, 0, 1, 2, 4]))        # rows a pixel: 1, 2, 4 or 16 (more than c)
    size = SIZES[wide]
    if mode == vec.PoolMode.ADAPTIVE_AVG:
        h, w = (int(v) for v in rng.integers(*size["adaptive_out"], 2))
        return ({"mode": mode, "kernel": 0, "stride": 0, "padding": 0, "ceil_mode": 0, "count_include_pad": 0,
                 "y_q": n_y // h, "y_r": n_y % h, "x_q": n_x // w, "x_r": n_x % w, "split": split}, h, w)
    while True:
        k = int(rng.integers(*size["kernel"]))
        p = int(rng.integers(0, k // 2 + 1))
        stride, ceil = int(rng.integers(*size["stride"])), int(rng.integers(0, 2))
        if min(n_y, n_x) + 2 * p >= k:
            break
    params = {"mode": mode, "kernel": k, "stride": stride, "padding": p, "ceil_mode": ceil,
              "count_include_pad": int(rng.integers(0, 2)), "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0, "split": split}
    return params, *(op.pool_out_size(n, k, stride, p, bool(ceil)) for n in (n_y, n_x))


def long_window_params(rng) -> tuple[dict, int, int, int, int]:
    """A ``ceil_mode`` max or average pooling whose window is longer than the padded source along
    one axis, by 1 to ``stride - 1`` (PyTorch's one window there: OFA-ResNet's 2x2/2 of a 1-pixel
    side), the other axis any size the window gives an output: ``(params, n_y, n_x, h, w)``."""
    stride, p, short = int(rng.integers(2, 5)), int(rng.integers(0, 2)), int(rng.integers(1, 4))
    k = short + 2 * p + int(rng.integers(1, stride))
    other = int(rng.integers(max(1, k - 2 * p - stride + 1), 9))
    n_y, n_x = (short, other) if rng.integers(0, 2) else (other, short)
    params = {"mode": int(rng.choice([vec.PoolMode.MAX, vec.PoolMode.AVG])), "kernel": k, "stride": stride,
              "padding": p, "ceil_mode": 1, "count_include_pad": int(rng.integers(0, 2)),
              "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0, "split": int(rng.choice([0, 1, 2]))}
    return params, n_y, n_x, *(op.pool_out_size(n, k, stride, p, True) for n in (n_y, n_x))


def random_pool(rng, mode: int | None, prefix: np.ndarray | None = None,
                wide: bool = False) -> tuple[vec.Descriptor, np.ndarray]:
    """A pooling of random sizes, channels, geometry and patterns, and its DRAM image (after ``prefix``;
    ``wide``: sizes of ``SIZES[True]``); mode ``None``: a window longer than the source (``long_window_params``)."""
    dram, size = Dram(rng, prefix), SIZES[wide]
    if mode is None:
        params, n_y, n_x, h, w = long_window_params(rng)
        c = int(rng.integers(*size["c"]))
    else:
        n_y, n_x = (int(v) for v in rng.integers(*size["pool_src"], 2))
        c = int(rng.integers(*size["c"]))
        params, h, w = pool_params(rng, mode, n_y, n_x, wide)
    src = source_operand(dram, rng, n_y, n_x, c)
    out = output_operand(dram, rng, h, w, c)
    return vec.Descriptor(h, w, c, (src, out), (vec.Stage(VecOp.POOL, 0, vec.NONE, 1, params),)), dram.image()


def with_chain(rng, d: vec.Descriptor, image: np.ndarray) -> tuple[vec.Descriptor, np.ndarray]:
    """``d`` (a resize or pooling) followed by 1 to 3 random stages of ``hw.vector.SPATIAL_CHAIN_OPS``
    on the previous result: an ADD's or MUL's second operand read through a random pattern (roll,
    window split, padding, fewer channels), results written through random one-to-one patterns (the
    last stage's always, the spatial stage's by chance: Swin's RESIZE->ADD writes only the sum)."""
    dram = Dram(rng, image)
    first = d.stages[0]
    if rng.integers(0, 2):
        first = dataclasses.replace(first, out=vec.NONE)
    operands, stages = list(d.operands), [first]
    n = int(rng.integers(1, vec.MAX_STAGES))
    for i in range(n):
        kind = VecOp(int(rng.choice([int(k) for k in vec.SPATIAL_CHAIN_OPS])))
        src2 = out = vec.NONE
        if kind in (VecOp.ADD, VecOp.MUL):
            # a repeating operand of fewer channels is refused (UNSUPPORTED): read it plainly
            src2 = len(operands)
            operands.append(dataclasses.replace(input_operand(dram, rng, d.h, d.w, d.c), repeat=False))
        if i == n - 1 or rng.integers(0, 2):
            out = len(operands)
            operands.append(output_operand(dram, rng, d.h, d.w, d.c))
        stages.append(vec.Stage(kind, vec.PREV, src2, out, stage_params(kind, rng, dram, d.c, d.c)))
    return dataclasses.replace(d, operands=tuple(operands), stages=tuple(stages)), dram.image()


def random_case(rng, kind: str, prefix: np.ndarray | None = None, wide: bool = False) -> tuple[vec.Descriptor, np.ndarray]:
    """A random pass of ``kind`` (one of ``ALL_KINDS``) and its DRAM image (after ``prefix``;
    ``wide``: sizes of ``SIZES[True]``)."""
    base = kind.removesuffix("_chain").removesuffix("_align")
    d, dram = random_pool(rng, KINDS.get(base), prefix, wide) if base in POOLS + LONG_WINDOWS else \
        random_spatial(rng, KINDS[base], nearest=base == "nearest", align=kind.endswith("_align"), prefix=prefix,
                       wide=wide)
    if kind.endswith("_chain"):
        d, dram = with_chain(rng, d, dram)
    if kind == "class_map_ties":
        dram = ties(rng, d, dram)
    return d, dram


def ties(rng, d: vec.Descriptor, dram: np.ndarray) -> np.ndarray:
    """The class map's source with few distinct values, so that classes tie (lowest index wins)."""
    src = d.operands[0]
    addr, _ = vec.operand_addresses(src, src.c)
    dram = dram.copy()
    dram[addr.ravel()] = rng.choice(np.array([0x80, 0x7F, 0x00, 0x01], np.uint8), addr.size)
    return dram


KINDS = {"resize": VecOp.RESIZE, "nearest": VecOp.RESIZE, "class_map": VecOp.RESIZE_ARGMAX,
         "class_map_ties": VecOp.RESIZE_ARGMAX,
         "max_pool": vec.PoolMode.MAX, "avg_pool": vec.PoolMode.AVG, "adaptive_pool": vec.PoolMode.ADAPTIVE_AVG}
POOLS = ("max_pool", "avg_pool", "adaptive_pool")
#: Resizes and poolings with a chain after them (``with_chain``).
CHAINS = ("resize_chain", "nearest_chain", "max_pool_chain", "avg_pool_chain", "adaptive_pool_chain")
#: Bilinear resizes and class maps of align_corners' DDA (its descriptor bit set).
ALIGNED = ("resize_align", "class_map_align")
#: Max and average poolings of a ``ceil_mode`` window longer than the source (``long_window_params``).
LONG_WINDOWS = ("long_window_pool",)
#: Every kind, in the order that seeds its cases (kinds added later go last: the others' cases stay).
ALL_KINDS = [*KINDS, *CHAINS, *ALIGNED, *LONG_WINDOWS]
