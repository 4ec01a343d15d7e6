"""Functional model of the vector unit: what a VEC instruction computes (``hw/vector.py``).

A pass reads its operands from DRAM through their address patterns, runs its stages with
``hw.operators``' integer arithmetic and writes the operands its stages name.  A stage's
result is zero at a pixel where its input operand is padding (a stage reading the previous
stage's result inherits its padding), and a write skips the pixels and channels where its
operand's pattern is padding.  The STORE's softmax epilogue (``softmax_rows``) uses the same
arithmetic as the vector unit's softmax, with the exponentials from the PE's table.
"""

from __future__ import annotations

import numpy as np

from hw.epilogue import exp_of

from hw import operators as ops
from hw.isa import ErrorCode, StreamError, VecOp
from hw.numerics import unpack_entries
from hw.vector import (HEADER_BYTES, LN_ENTRY, LN_ENTRY_BYTES, LUT_TABLE_BYTES, MAX_DESCRIPTOR_BYTES, NONE, PREV, SPATIAL, Descriptor,
                       PoolMode, ResizeMode, decode_descriptor, decode_header, descriptor_extent, descriptor_field_slots,
                       extents_outside, first_refusal, overlapping_writes, header_extent, operand_addresses, pass_extents, pass_refusals,
                       spatial_refusals, spatial_slots, vec_fields)

__all__ = ["execute_vec", "softmax_rows"]



def _data_error(message: str) -> StreamError:
    """A malformed descriptor or operand, found while running (``ErrorCode.DATA``)."""
    return StreamError(message, ErrorCode.DATA)


def execute_vec(fields: dict, dram: np.ndarray, where: str, dram_bytes: int) -> Descriptor:
    """Run the VEC instruction with ``fields`` on ``dram`` (in place); returns its descriptor.

    StreamError (``DATA``) when the descriptor leaves the DRAM's ``dram_bytes`` or is malformed,
    the instruction's timing fields are not the descriptor's (``hw.vector.vec_fields``), the pass
    touches bytes outside the DRAM (``hw.vector.pass_extents``), holds what the operators refuse
    (``hw.vector.pass_refusals``, every stage's) or writes bytes it reads through another operand,
    or through a pattern that is not one-to-one (``hw.vector.overlapping_writes``), all
    before anything is written, in the order the RTL's executor checks them;
    ``sim.functional.DramBoundsError`` when the descriptor or the pass reaches bytes inside the DRAM
    but past the image ``dram``, which models only its start: the pass's only once the rules have
    refused nothing (they read no byte of it, so the RTL refuses such a pass before it touches any)."""
    addr = fields["desc_addr"]
    _check_ranges([header_extent(addr)], dram, where, dram_bytes)
    head = decode_header(bytes(dram[addr:addr + HEADER_BYTES]))
    _check_ranges([descriptor_extent(addr, head)], dram, where, dram_bytes)
    d = decode_descriptor(bytes(dram[addr:addr + MAX_DESCRIPTOR_BYTES]), f"{where} descriptor")
    want = vec_fields(d)
    got = {k: fields[k] for k in want}
    if got != want:
        raise _data_error(f"{where}: timing fields {got} are not those of its descriptor {want}")
    slots = descriptor_field_slots(d)           # built once with the descriptor: its check and its fields read them
    extents = pass_extents(*slots)
    _check_dram(extents, where, dram_bytes)
    why = first_refusal(pass_refusals(*slots) + overlapping_writes(*slots, extents))
    if why is not None:
        raise _data_error(f"{where}:{why}")
    _check_image(extents, dram, where)
    _Pass(d, dram, where).run()
    return d


def _check_ranges(ranges: list, dram: np.ndarray, where: str, dram_bytes: int) -> None:
    """Refuse ranges ``(what, touched, lowest, highest)`` that leave the DRAM (DATA) or, inside it,
    the image (``DramBoundsError``: a limit of the model's image)."""
    _check_dram(ranges, where, dram_bytes)
    _check_image(ranges, dram, where)


def _check_dram(ranges: list, where: str, dram_bytes: int) -> None:
    """Refuse ranges ``(what, touched, lowest, highest)`` that leave the DRAM's ``dram_bytes`` (DATA)."""
    for (what, _, lo, hi), outside in zip(ranges, extents_outside(ranges, dram_bytes)):
        if outside:
            raise _data_error(f"{where}: {what} reaches bytes {lo}..{hi}, outside the DRAM's {dram_bytes} "
                              f"(0..{dram_bytes - 1})")


def _check_image(ranges: list, dram: np.ndarray, where: str) -> None:
    """``DramBoundsError`` for ranges inside the DRAM but past the image (a limit of the model's image)."""
    for (what, _, lo, hi), outside in zip(ranges, extents_outside(ranges, dram.size)):
        if outside:
            _outside_image(f"{where}: {what} reaches bytes {lo}..{hi}", dram)


def _outside_image(message: str, dram: np.ndarray) -> None:
    from sim.functional import DramBoundsError         # sim.functional runs this module's passes
    raise DramBoundsError(f"{message}, outside the {dram.size}-byte DRAM image")


class _Pass:
    def __init__(self, d: Descriptor, dram: np.ndarray, where: str):
        self.d, self.dram, self.where = d, dram, where

    def read(self, i: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(int8 values [y.n, x.n, c], pixel valid [y.n, x.n]) of operand ``i``; padding reads zero.
        Its bytes lie in the image: ``execute_vec`` checked ``pass_extents`` before the pass."""
        op = self.d.operands[i]
        addr, valid = operand_addresses(op, c)
        out = np.zeros(addr.shape, np.int8)
        out[valid] = self.dram[addr[valid]].view(np.int8)
        return out, valid.any(axis=2) if c else valid[..., 0]

    def write(self, i: int, values: np.ndarray) -> None:
        op = self.d.operands[i]
        v = values if values.ndim == 3 else values[..., None]
        addr, valid = operand_addresses(op, v.shape[2])
        assert addr.shape[:2] == v.shape[:2], "hw.vector.pass_refusals and spatial_refusals checked the raster"
        self.dram[addr[valid]] = v[valid].astype(np.int8).view(np.uint8) if v.dtype != np.uint8 else v[valid]

    def run(self) -> None:
        d = self.d
        if d.stages[0].op in SPATIAL:
            self._check_spatial()
        x = valid = None
        for i, st in enumerate(d.stages):
            if st.src == PREV:
                inp, ok = x, valid
            elif st.op in SPATIAL:
                src = d.operands[st.src]
                inp, ok = self.read(st.src, src.c)
            else:
                inp, ok = self.read(st.src, d.c)
            x, valid = self._stage(st, inp, ok)
            if st.op not in SPATIAL:
                x = np.where(valid[..., None], x, 0).astype(x.dtype)
            if st.out != NONE:
                self.write(st.out, x)

    def _second(self, st) -> np.ndarray:
        return self.read(st.src2, self.d.c)[0]

    def _stage(self, st, x: np.ndarray, ok: np.ndarray):
        """A stage's output and valid pixels.  ``execute_vec`` refused before the pass what the
        operators refuse (``hw.vector.pass_refusals``); should an operator still refuse, DATA."""
        try:
            return self._compute(st, x, ok)
        except StreamError:
            raise
        except ValueError as e:
            raise _data_error(f"{self.where}: {st.op.name} stage: {e}") from None

    def _compute(self, st, x: np.ndarray, ok: np.ndarray):
        d, p = self.d, st.params
        if st.op == VecOp.COPY:
            return x, ok
        if st.op == VecOp.ADD:
            return ops.add(x, self._second(st), ops.AddParams(p["mult_a"], p["mult_b"], p["shift"], bool(p["relu"]))), ok
        if st.op == VecOp.MUL:
            return ops.mul(x, self._second(st), ops.MulParams(p["mult"], p["shift"])), ok
        if st.op == VecOp.LUT:
            return ops.lut(x, self._bytes(p["table"], LUT_TABLE_BYTES).view(np.int8)), ok
        if st.op == VecOp.LAYERNORM:
            return ops.layernorm(x, self._ln_params(p, x.shape[2])), ok
        if st.op == VecOp.SOFTMAX:
            row = p["row"]      # row * heads = c: checked with the descriptor (hw.vector.descriptor_refusals)
            sp = ops.SoftmaxParams(p["exp_mult"], p["exp_shift"], p["out_shift"])
            return ops.softmax(x.reshape(*x.shape[:2], x.shape[2] // row, row), sp).reshape(x.shape), ok
        full = np.ones((d.h, d.w), bool)
        if st.op == VecOp.RESIZE:
            if p["mode"] == ResizeMode.NEAREST:
                return ops.resize_nearest(x, d.h, d.w), full
            return ops.resize_bilinear(x, d.h, d.w, align_corners=bool(p["align_corners"])), full
        if st.op == VecOp.RESIZE_ARGMAX:
            return ops.resize_argmax(x, d.h, d.w, align_corners=bool(p["align_corners"])), full
        if st.op == VecOp.POOL:
            return self._pool(p, x), full
        raise _data_error(f"{self.where}: no such stage operation {st.op!r}")

    def _bytes(self, addr: int, n: int) -> np.ndarray:
        return self.dram[addr:addr + n]       # in the image: pass_extents holds the stages' tables

    def _ln_params(self, p: dict, c: int):
        raw = self._bytes(p["table"], c * LN_ENTRY_BYTES).reshape(c, LN_ENTRY_BYTES)
        e = unpack_entries(raw, LN_ENTRY)
        return ops.LayerNormParams(e["gamma"], e["beta"], p["eps"], p["shift"])

    def _check_spatial(self) -> None:
        """Refuse a spatial pass before it runs, by the rule the RTL evaluates (``hw.vector.spatial_refusals``)."""
        data, _ = spatial_refusals(*spatial_slots(self.d))
        why = next((why for why, bad in data.items() if bad), None)
        if why is not None:
            st = self.d.stages[0]
            raise _data_error(f"{self.where}: {st.op.name} {st.params} from a {self.d.operands[st.src].y.n}x"
                              f"{self.d.operands[st.src].x.n} source to {self.d.h}x{self.d.w}: {why}")

    def _pool(self, p: dict, x: np.ndarray) -> np.ndarray:
        if p["mode"] == PoolMode.MAX:
            out = ops.maxpool2d(x, p["kernel"], p["stride"], p["padding"], bool(p["ceil_mode"]))
        elif p["mode"] == PoolMode.AVG:
            out = ops.avgpool2d(x, p["kernel"], p["stride"], p["padding"], bool(p["ceil_mode"]),
                                bool(p["count_include_pad"]))
        else:
            out = ops.adaptive_avgpool2d(x, self.d.h, self.d.w)
        assert out.shape[:2] == (self.d.h, self.d.w), "hw.vector.pool_axis_fits checked the raster"
        return out


def softmax_rows(x: np.ndarray, table: np.ndarray, out_shift) -> np.ndarray:
    """Softmax over the last axis of int8 ``x`` with the exponentials ``table[rowmax - x]``: the vector
    unit's arithmetic (``hw.operators.softmax``) with its exp kernel tabulated.  ``table`` holds 256
    entries, or 256 for each element (``[..., 256]``, broadcast against ``x``: the STORE's epilogue
    reads each lane's PE's table); an exponential is an entry's low ``hw.epilogue.EXP_BITS`` bits.
    ``out_shift`` is an integer or one per element."""
    xmax = x.max(axis=-1, keepdims=True).astype(np.int64)
    d = (xmax - x).astype(np.int64)
    table = exp_of(np.asarray(table, dtype=np.int64))
    e = table[d] if table.ndim == 1 else \
        np.take_along_axis(np.broadcast_to(table, d.shape + table.shape[-1:]), d[..., None], axis=-1)[..., 0]
    r, k = ops.NUMPY.run(ops.recip_kernel, e.sum(axis=-1, keepdims=True), ops.SOFTMAX_SUM_BITS)
    return ops.NUMPY.run(ops.softmax_out_kernel, e, r, k, out_shift).astype(np.int8)
