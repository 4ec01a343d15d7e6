"""Random VEC passes and their DRAM images: the chains the zoo's passes use, on random address
patterns and parameters (``random_pass``).  The vector unit's tests (``test_rtl_vector_unit``) run
them on the unit in Amaranth's simulator, the cosimulation (``cosim.vec_cases``) on the Verilated
accelerator."""

from __future__ import annotations

import dataclasses

import numpy as np

from hw import operators as op
from hw import vector as vec
from hw.isa import VecOp
from hw.numerics import pack_entries
from hw.rtl.vector_unit import LUT_ENTRIES

__all__ = ["Dram", "CHAINS", "IN_PLACE", "random_pass", "resize_chain_pass", "any_axis", "add_params", "softmax_params", "layernorm_params",
           "stage_params", "LEAVING", "leaving_dram"]


class Dram:
    """A DRAM image in numpy; ``alloc`` hands out disjoint regions after ``prefix`` (an image to
    keep) and a lead-in of random bytes (so that a pattern with negative strides has a base inside
    the image)."""

    LEAD_IN = 4096

    def __init__(self, rng: np.random.Generator, prefix: np.ndarray | None = None):
        self.rng, self.chunks, self.size = rng, [], 0
        if prefix is not None:
            self.alloc(prefix.size, prefix)
        self.alloc(self.LEAD_IN)

    def alloc(self, nbytes: int, content: np.ndarray | None = None) -> int:
        base = self.size
        self.chunks.append(self.rng.integers(0, 256, nbytes, dtype=np.uint8) if content is None
                           else np.asarray(content, np.uint8).ravel())
        self.size += nbytes
        return base

    def image(self) -> np.ndarray:
        return np.concatenate(self.chunks)


def input_operand(dram: Dram, rng, h: int, w: int, c: int, repeat_c: int | None = None) -> vec.Operand:
    """An operand read through a random pattern (roll, window split, padding, strides of either
    sign, fewer or repeating channels), placed in its own DRAM region.  ``repeat_c``: the channels
    of a repeating operand (a softmax's row when a pixel has several: the unit restarts them per row)."""
    def axis(n: int) -> vec.Axis:
        wrap = int(rng.integers(n, n + 3))
        return vec.Axis(n, int(rng.integers(-64, 64)), start=int(rng.integers(0, wrap)), wrap=wrap,
                        valid=int(rng.integers(max(1, wrap - 2), wrap + 1)), win=int(rng.integers(1, wrap + 1)),
                        s_hi=int(rng.integers(-200, 200)))
    repeat = bool(rng.integers(0, 4) == 0)
    op_c = int(rng.integers(1, c + 1)) if repeat or rng.integers(0, 3) == 0 else c
    if repeat and repeat_c is not None:
        op_c = repeat_c
    op = vec.Operand(0, op_c, axis(h), axis(w), repeat)
    addr, valid = vec.operand_addresses(op, c)
    reached = addr[valid] if valid.any() else np.zeros(1, np.int64)     # all padding: reads nothing
    lo, hi = int(reached.min()), int(reached.max())
    base = dram.alloc(hi - lo + 1)
    return dataclasses.replace(op, base=base - lo)


def any_axis(rng) -> vec.Axis:
    """An axis of any shape the fields allow (``rng`` a ``random.Random``): many laps or none,
    padding or not, broadcast (strides 0)."""
    wrap = rng.randint(1, 40)
    broadcast = rng.random() < 0.15
    return vec.Axis(rng.randint(1, 200), 0 if broadcast else rng.randint(-50, 200), rng.randrange(wrap), wrap,
                    rng.randint(1, wrap + 3), rng.randint(1, wrap), 0 if broadcast else rng.randint(-100, 900))


def output_operand(dram: Dram, rng, h: int, w: int, c: int) -> vec.Operand:
    """An operand written through a one-to-one pattern: rolled, cropped, perhaps fewer channels."""
    op_c = c if rng.integers(0, 3) else int(rng.integers(1, c + 1))
    base = dram.alloc(h * w * op_c)
    return vec.Operand(base, op_c, vec.Axis(h, w * op_c, start=int(rng.integers(0, h)), wrap=h,
                                            valid=int(rng.integers(1, h + 1))),
                       vec.Axis(w, op_c, start=int(rng.integers(0, w)), wrap=w, valid=int(rng.integers(1, w + 1))))


def realistic(rng) -> bool:
    """Two cases in three take parameters from real scales, the third random ones in range
    (which mostly saturate)."""
    return bool(rng.integers(0, 3))


def scale(rng, lo: float = 0.005, hi: float = 0.3) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def in_ranges(rng, ranges: dict) -> dict:
    return {n: int(rng.integers(lo, hi + 1)) for n, (lo, hi) in ranges.items()}


def add_params(rng) -> dict:
    relu = bool(rng.integers(0, 2))
    p = op.add_params(scale(rng), scale(rng), scale(rng), relu) if realistic(rng) else \
        op.AddParams(**in_ranges(rng, op.AddParams.RANGES), relu=relu)
    return {"mult_a": p.mult_a, "mult_b": p.mult_b, "shift": p.shift, "relu": int(p.relu)}


def mul_params(rng) -> dict:
    p = op.mul_params(scale(rng), scale(rng), scale(rng, 1e-4, 0.01)) if realistic(rng) else \
        op.MulParams(**in_ranges(rng, op.MulParams.RANGES))
    return {"mult": p.mult, "shift": p.shift}


def softmax_row(rng, c: int) -> int:
    return int(rng.choice([n for n in range(1, c + 1) if c % n == 0]))


def softmax_params(rng, c: int, row: int) -> dict:
    rows = {"row": row, "heads": c // row}
    if realistic(rng):
        p = op.softmax_params(scale(rng, 0.01, 0.5), int(rng.choice(op.SOFTMAX_OUT_SHIFTS)))
        return {**rows, "exp_mult": p.exp_mult, "exp_shift": p.exp_shift, "out_shift": p.out_shift}
    return {**rows, **in_ranges(rng, op.SoftmaxParams.RANGES)}


def layernorm_params(rng, dram: Dram, c: int) -> dict:
    if realistic(rng):
        p = op.layernorm_params(rng.normal(1, 0.3, c), rng.normal(0, 0.5, c), 1e-5, scale(rng), scale(rng, 0.01, 0.1))
    else:
        e = op.LayerNormParams.ENTRY_RANGES
        p = op.LayerNormParams(*(rng.integers(lo, hi + 1, c) for lo, hi in (e["gamma"], e["beta"])),
                               **in_ranges(rng, op.LayerNormParams.RANGES))
    table = dram.alloc(c * vec.LN_ENTRY_BYTES, pack_entries(vec.LN_ENTRY, {"gamma": p.gamma, "beta": p.beta}, c))
    return {"table": table, "eps": p.eps, "shift": p.shift}


#: Stage chains the zoo's passes use (fusion.py): a data movement, residual and bias adds, a
#: product, a table activation (after a bias add), softmax and layernorm alone, after an add,
#: and before a copy, and two layernorms (SegFormer's and Swin's last block's then the stage's
#: norm; DETR's after a residual add).
CHAINS = {
    "copy": [VecOp.COPY],
    "add": [VecOp.ADD],
    "mul": [VecOp.MUL],
    "lut": [VecOp.LUT],
    "add_lut": [VecOp.ADD, VecOp.LUT],
    "softmax": [VecOp.SOFTMAX],
    "layernorm": [VecOp.LAYERNORM],
    "add_layernorm": [VecOp.ADD, VecOp.LAYERNORM],
    "layernorm_layernorm": [VecOp.LAYERNORM, VecOp.LAYERNORM],
    "add_layernorm_layernorm": [VecOp.ADD, VecOp.LAYERNORM, VecOp.LAYERNORM],
    "add_softmax_copy": [VecOp.ADD, VecOp.SOFTMAX, VecOp.COPY],
    "mul_add_copy_copy": [VecOp.MUL, VecOp.ADD, VecOp.COPY, VecOp.COPY],
    "add_in_place": [VecOp.ADD],
    "softmax_in_place": [VecOp.SOFTMAX],
    "add_layernorm_in_place": [VecOp.ADD, VecOp.LAYERNORM],
}
#: Chains whose stage 0 writes the operand it reads (the unit reads and writes while it runs and
#: reads a row once per pass; the functional model reads the whole pass first).
IN_PLACE = {"add_in_place", "softmax_in_place", "add_layernorm_in_place"}


def stage_params(kind: VecOp, rng, dram: Dram, c: int, row: int) -> dict:
    """Random parameters of a stage ``kind`` over ``c`` channels (tables placed in ``dram``; a
    softmax's rows of ``row``)."""
    if kind == VecOp.COPY:
        return {}
    if kind == VecOp.LUT:
        return {"table": dram.alloc(LUT_ENTRIES)}
    if kind == VecOp.LAYERNORM:
        return layernorm_params(rng, dram, c)
    if kind == VecOp.SOFTMAX:
        return softmax_params(rng, c, row)
    return {VecOp.ADD: add_params, VecOp.MUL: mul_params}[kind](rng)


def random_pass(rng, chain: list[VecOp], in_place: bool = False,
                prefix: np.ndarray | None = None, raster: tuple[int, int] | None = None,
                max_c: int = 8) -> tuple[vec.Descriptor, np.ndarray]:
    """A descriptor running ``chain`` over a small random iteration space, and its DRAM image:
    stage 0 reads operand 0, each stage's second input is a fresh operand, each stage writes a
    fresh operand (the last always, the others by chance).  ``in_place``: operand 0 has a
    one-to-one pattern and stage 0 writes it.  ``prefix``: the image starts with these bytes.
    ``raster``: its ``(h, w)`` (random up to 3x3 without).  ``max_c``: the most channels drawn."""
    dram = Dram(rng, prefix)
    h, w = raster if raster is not None else (int(v) for v in rng.integers(1, 4, 2))
    c = int(rng.integers(1, max_c + 1))
    row = softmax_row(rng, c)
    repeat_c = row if VecOp.SOFTMAX in chain and row != c else None
    operands = [output_operand(dram, rng, h, w, c) if in_place else input_operand(dram, rng, h, w, c, repeat_c)]
    stages = []
    for i, kind in enumerate(chain):
        src2 = vec.NONE
        if kind in (VecOp.ADD, VecOp.MUL):
            src2 = len(operands)
            operands.append(input_operand(dram, rng, h, w, c, repeat_c))
        params = stage_params(kind, rng, dram, c, row)
        out = vec.NONE
        if in_place and i == 0:
            out = 0
        elif i == len(chain) - 1 or rng.integers(0, 2):
            out = len(operands)
            operands.append(output_operand(dram, rng, h, w, c))
        stages.append(vec.Stage(kind, 0 if i == 0 else vec.PREV, src2, out, params))
    return vec.Descriptor(h, w, c, tuple(operands), tuple(stages)), dram.image()


def resize_chain_pass(rng, then: VecOp) -> tuple[vec.Descriptor, np.ndarray]:
    """A bilinear resize (3x2 to 4x5, 3 channels) that writes nothing, then ``then`` on its result
    writing a fresh operand (an ADD's or MUL's second operand read through a random pattern): Swin's
    UPerNet RESIZE->ADD on the spatial unit, or a chain it does not build (RESIZE->LUT); and its image."""
    dram = Dram(rng)
    c, (n_y, n_x), (h, w) = 3, (3, 2), (4, 5)
    src = vec.Operand(dram.alloc(n_y * n_x * c), c, vec.Axis(n_y, n_x * c), vec.Axis(n_x, c))
    ay, ax = op.resize_axis_params(n_y, h), op.resize_axis_params(n_x, w)
    resize = vec.Stage(VecOp.RESIZE, 0, vec.NONE, vec.NONE, {
        "mode": 0, "y_start": ay.start, "y_step": ay.step, "x_start": ax.start, "x_step": ax.step,
        "y_q": 0, "y_r": 0, "x_q": 0, "x_r": 0})
    operands, src2 = [src], vec.NONE
    if then in (VecOp.ADD, VecOp.MUL):
        src2 = len(operands)
        operands.append(dataclasses.replace(input_operand(dram, rng, h, w, c), repeat=False))
    operands.append(output_operand(dram, rng, h, w, c))
    stage = vec.Stage(then, vec.PREV, src2, len(operands) - 1, stage_params(then, rng, dram, c, c))
    return vec.Descriptor(h, w, c, tuple(operands), (resize, stage)), dram.image()


#: How :func:`leaving_dram` moves a pass out of the DRAM by one byte.
LEAVING = ("operand_past_end", "operand_below_zero", "table_past_end", "operand_fits")


def leaving_dram(d: vec.Descriptor, how: str, dram_bytes: int, k: int | None = None) -> vec.Descriptor:
    """``d`` moved out of a DRAM of ``dram_bytes`` by one byte (``how``, one of ``LEAVING``): operand
    ``k``'s highest byte at ``dram_bytes`` (one past the end); its strides made negative and its
    lowest byte at -1 (a pattern walking below 0 from a base near it); its highest byte at
    ``dram_bytes - 1`` (``operand_fits``: the last byte, not refused); or (``table_past_end``) the
    first table ending one byte past the end.  ``k`` None: the first operand that can be moved so
    (one the pass touches, with a base the field holds: for ``operand_below_zero``, one whose
    strides reach below its base, for ``operand_past_end`` one of more than a byte).
    ``hw.vector.pass_extents`` says where the bytes are."""
    if how == "table_past_end":
        i = next(i for i, st in enumerate(d.stages) if "table" in st.params)
        lo, hi = _extent(d, f"stage {i}'s table")
        stage = dataclasses.replace(d.stages[i], params=d.stages[i].params | {"table": dram_bytes - (hi - lo)})
        return dataclasses.replace(d, stages=d.stages[:i] + (stage,) + d.stages[i + 1:])
    for j in range(len(d.operands)) if k is None else [k % len(d.operands)]:
        moved = _moved_operand(d, how, dram_bytes, j)
        if moved is not None:
            return moved
    raise ValueError(f"no operand {'' if k is None else k} of {d} can be moved {how}")


def _moved_operand(d: vec.Descriptor, how: str, dram_bytes: int, k: int) -> vec.Descriptor | None:
    if how == "operand_below_zero":
        op = d.operands[k]
        down = {p: dataclasses.replace(ax, stride=-abs(ax.stride), s_hi=-abs(ax.s_hi)) for p, ax in (("y", op.y), ("x", op.x))}
        d = dataclasses.replace(d, operands=d.operands[:k] + (dataclasses.replace(op, **down),) + d.operands[k + 1:])
    extent = _extent(d, f"operand {k}")
    if extent is None:
        return None
    lo, hi = extent
    shift = {"operand_past_end": dram_bytes - hi, "operand_below_zero": -1 - lo, "operand_fits": dram_bytes - 1 - hi}[how]
    if not 0 <= d.operands[k].base + shift < 1 << 32:           # the base field's range
        return None
    return d.relocated([op.base + (shift if j == k else 0) for j, op in enumerate(d.operands)])


def _extent(d: vec.Descriptor, what: str) -> tuple[int, int] | None:
    return next(((lo, hi) for name, touched, lo, hi in vec.pass_extents(*vec.descriptor_field_slots(d))
                 if name == what and touched), None)
