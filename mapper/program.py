"""The whole-network program: one DRAM image and one instruction stream for a model on a configuration.

``build_program(qmodel, cfg)`` lowers every step of the plan (``mapper.fusion``) with real
addresses and lays out the DRAM image:

* a static region: the input image, every constant (the whole buffer of a concatenation with
  a constant part: its computed parts are stored into it, beside the constant), each MAC
  layer's packed weights and parameter entries, the tables the STOREs read (an activation
  table or a softmax's exponentials), the vector unit's tables (activation tables, layernorm
  entries) and the VEC descriptors;
* an activation region where every buffer (``mapper.layout``) lives from the first step that
  writes it to the last that reads it; buffers whose lifetimes do not overlap share memory
  (first fit), and the model's outputs live to the end.

The stream is each step's code (its own FENCE at the end) and a final END.  Per step the
program records which instructions are its own and which tensors it writes, so that a
functional run can compare every tensor with the golden model as soon as it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from hw import operators as ops
from hw.config import AcceleratorConfig
from hw.isa import Act, Insn, Op, VecOp, make, share_fields
from hw.numerics import PARAM_ENTRY, PARAM_ENTRY_BYTES, TABLE_ENTRIES, TABLE_ENTRY, TABLE_ENTRY_BITS, pack_entries
from hw.vector import LN_ENTRY, Descriptor, descriptor_bytes, encode_descriptor, vec_fields

from .fusion import Step, VecPass
from .ir import INPUT, MAC_KINDS, Conv2d, Linear, MatMul, Model, weight_bytes
from .layout import Storage, storage_plan
from .lower import Lowered, MappingError, Placement, Problem, build_stream, map_layer
from .quantize import QModel, random_qmodel
from .residency import gb_fields, planned
from .stitch import apply

__all__ = ["Program", "StepCode", "ProgramError", "DramCapacityError", "build_program", "dram_footprint", "pack_weights", "pack_params",
           "exp_table", "ALIGN"]

ALIGN = 64


class ProgramError(ValueError):
    """A model that cannot become a program on a configuration (the message says why)."""


class DramCapacityError(ProgramError):
    """A program whose DRAM image is larger than the configuration's DRAM (``dram_mib``)."""


def _align(x: int) -> int:
    return -(-x // ALIGN) * ALIGN


@dataclass
class StepCode:
    """The instructions ``stream[start:end]`` of one plan step and the tensors they write."""

    step: Step
    start: int
    end: int
    writes: tuple[str, ...]


@dataclass
class Program:
    model: Model
    cfg: AcceleratorConfig
    stream: list[Insn]
    image: np.ndarray                    # the DRAM image before the run (uint8)
    buffers: dict[str, int]              # buffer name -> byte address
    storage: dict[str, Storage]
    steps: list[StepCode]
    static_bytes: int
    activation_bytes: int                # high-water mark of the activation region
    class_maps: frozenset = frozenset()  # tensors stored as a class map (one byte a pixel)
    resident: dict = field(default_factory=dict)   # tensor -> Resident: kept in the global buffer, not in DRAM

    @property
    def footprint(self) -> int:
        return self.static_bytes + self.activation_bytes

    def address(self, tensor: str) -> int:
        st = self.storage[tensor]
        return self.buffers[st.buffer] + st.start

    def read(self, dram: np.ndarray, tensor: str, gb: Optional[np.ndarray] = None) -> np.ndarray:
        """Tensor ``tensor`` (int8 HWC, or a class map ``[H, W]``) from a DRAM image, or from the
        global buffer ``gb`` for a tensor kept there (``resident``)."""
        st = self.storage[tensor]
        h, w, c = st.shape
        if tensor in self.resident:
            if gb is None:
                raise ValueError(f"{tensor} is kept in the global buffer, not in DRAM: pass the buffer (gb)")
            r = self.resident[tensor]
            return gb[r.addr:r.addr + h * w * r.pitch].view(np.int8).reshape(h, w, r.pitch)[:, :, :c].copy()
        base = self.buffers[st.buffer]
        if tensor in self.class_maps:
            return dram[base:base + h * w].reshape(h, w).copy()
        buffer = dram[base:base + self.storage[st.buffer].buffer_bytes].view(np.int8).reshape(-1, st.pitch)
        return st.cells(buffer).reshape(h, w, c).copy()


# ---- packing -------------------------------------------------------------------------------------

def pack_weights(p: Problem, w: np.ndarray, cfg: AcceleratorConfig, rows_per_oc: int) -> np.ndarray:
    """Weights of a dense or depthwise problem as the stream loads them: per output channel
    ``rows_per_oc`` rows of C0 bytes (``[k, rows_per_oc * C0]`` int8, zero-padded)."""
    c0 = cfg.c0
    wa = np.zeros((p.k, rows_per_oc * c0), dtype=np.int8)
    if w.ndim == 2:                                   # linear: [K, C] as a 1x1 convolution
        w = w.reshape(p.k, 1, 1, w.shape[1])
    w = w.reshape(p.k, p.kh, p.kw, -1)      # a 1 x k kernel mapped as k x 1 (``lower.map_layer``): the same bytes
    kh, kw = p.kh, p.kw
    if p.kind == "depthwise" and p.gather:
        for r in range(kh):                           # row r of channel k: its kw taps on lanes 0..kw-1
            wa[:, r * c0:r * c0 + kw] = w[:, r, :, 0]
    elif p.kind == "depthwise":     # a row per tap (a dilated kernel's kept taps), each channel on its lane
        lanes = np.arange(p.k) % p.dw_pack
        taps = p.kept_taps if p.shifted else [(r, s) for r in range(kh) for s in range(kw)]
        for i, (r, s) in enumerate(taps):
            wa[np.arange(p.k), i * c0 + lanes] = w[:, r, s, 0]
    elif p.fold:
        flat = w.reshape(p.k, kh * kw * p.cg)                                 # (r, s, c) order
        wa[:, :flat.shape[1]] = flat
    else:
        ncb = p.shift_blocks(c0)
        full = np.zeros((p.k, ncb * c0, kh, kw), dtype=np.int8)
        full[:, :w.shape[3]] = w.transpose(0, 3, 1, 2)
        taps = full.reshape(p.k, ncb, c0, kh * kw)
        if p.shifted:       # tap-major, a shift's blocks together: the kept taps only
            wa[:] = taps.transpose(0, 3, 1, 2)[:, [ky * kw + kx for ky, kx in p.kept_taps]].reshape(p.k, -1)
        else:               # block-major, each block's taps together
            wa[:] = taps.transpose(0, 1, 3, 2).reshape(p.k, -1)
    return wa


def _pack_entries(layout, columns: dict, n: int) -> np.ndarray:
    try:
        return pack_entries(layout, columns, n)
    except ValueError as e:
        raise ProgramError(str(e)) from None


def pack_params(bias, mult, shift, ep_shift=0) -> np.ndarray:
    """Requantisation entries (``hw.numerics.PARAM_ENTRY``), one per output channel."""
    n = len(mult)
    return _pack_entries(PARAM_ENTRY, {"bias": bias, "mult": mult, "shift": shift, "ep_shift": ep_shift}, n)


def exp_table(p: "ops.SoftmaxParams") -> np.ndarray:
    """The 256 exponentials ``e(d)`` of ``d = rowmax - x`` a softmax epilogue looks up: the same
    kernel as ``hw.operators.softmax`` (so fused and separate softmax agree bit for bit)."""
    d = np.arange(TABLE_ENTRIES, dtype=np.int64)
    return ops.NUMPY.run(ops.softmax_exp_kernel, -d, 0, p.exp_mult, p.exp_shift).astype(np.int64)


def _table_bytes(values: np.ndarray) -> np.ndarray:
    """The PEs' table memory: 256 signed entries of TABLE_ENTRY_BITS, little-endian."""
    return _pack_entries(TABLE_ENTRY, {"v": values}, TABLE_ENTRIES).reshape(-1)


# ---- building ------------------------------------------------------------------------------------

@dataclass
class _Blob:
    name: str
    data: np.ndarray            # uint8
    addr: int = -1


@dataclass
class _Life:
    first: int
    last: int
    size: int
    addr: int = -1


def build_program(qmodel: QModel, cfg: AcceleratorConfig, *, fuse: bool = True,
                  image: Optional[np.ndarray] = None, keep_tensors: bool = False, band_rows: int = 0) -> Program:
    """The program of ``qmodel`` on ``cfg`` (module docstring); ``image`` is the int8 input
    (zeros if None).  ``keep_tensors`` gives every activation a buffer of its own instead of
    sharing by lifetime, so that the final DRAM image holds every tensor (the cosimulation reads
    them back after the run).  ProgramError when a layer cannot be executed or the image does not
    fit the configuration's DRAM (``dram_mib``).  ``band_rows`` forces the band chains' height
    (``mapper.bands.plan_chains``; 0: the cost model's)."""
    return _Builder(qmodel, cfg, fuse, cfg.dram_bytes, keep_tensors, band_rows).build(image)


def check_weights_fit(model: Model, cfg: AcceleratorConfig) -> None:
    """``DramCapacityError`` at once when the MAC layers' int8 weights alone, which every program
    of ``model`` holds in DRAM, exceed ``cfg``'s DRAM: no need to map the layers to know it."""
    weights = sum(weight_bytes(l) for l in model.layers if l.kind in MAC_KINDS)
    if weights > cfg.dram_bytes:
        raise DramCapacityError(f"{model.name}: its weights alone need {weights:,} bytes, more than the "
                                f"{cfg.dram_bytes:,} bytes of DRAM configured (dram_mib = {cfg.dram_mib})")


def dram_footprint(model: Model, cfg: AcceleratorConfig, *, fuse: bool = True) -> tuple[int, int]:
    """(static bytes, activation bytes) of the DRAM image of ``model``'s program on ``cfg``, laid
    out as :func:`build_program` lays it out (sizes do not depend on the weights' values, so
    placeholder weights stand in) without building the instructions.  ProgramError as there."""
    _, static, top = _Builder(random_qmodel(model), cfg, fuse, cfg.dram_bytes).layout(None)
    return static, top


class _Builder:
    def __init__(self, qmodel: QModel, cfg: AcceleratorConfig, fuse: bool, dram_bytes: int,
                 keep_tensors: bool = False, band_rows: int = 0):
        self.q, self.cfg, self.model = qmodel, cfg, qmodel.model
        self.dram_bytes, self.keep_tensors = dram_bytes, keep_tensors
        try:
            self.steps, self.resident = planned(self.model, cfg, fuse=fuse, band_rows=band_rows)
        except MappingError as e:
            raise ProgramError(str(e)) from None
        self.storage = storage_plan(self.model)
        # a constant's buffer is static data, also a concatenation's that holds a constant part
        self.static_buffers = frozenset({INPUT} | {self.storage[l.name].buffer for l in self.model.layers
                                                    if l.kind == "constant"})
        self.blobs: dict[str, _Blob] = {}
        self.class_maps = frozenset(n for st in self.steps if st.vpass is not None and st.vpass.class_map
                                    for n in st.vpass.writes)
        for st in self.steps:
            if st.action == "excluded":
                raise ProgramError(f"{st.layer.name}: a MAC-only plan leaves layers out; it cannot execute")
            if getattr(st.layer, "b_layout", "") == "opaque":
                raise ProgramError(f"{self.model.name}: {st.layer.name}'s operands are reshaped in a way the "
                                   f"accelerator's layouts do not express; it is timed but cannot execute")

    # ---- memory ------------------------------------------------------------------------------
    def _buffer_size(self, buf: str) -> int:
        st = self.storage[buf]
        return st.shape[0] * st.shape[1] * (1 if buf in self.class_maps else st.pitch)

    def _lifetimes(self) -> dict[str, _Life]:
        lives: dict[str, _Life] = {}

        def touch(tensor: str, i: int) -> None:
            buf = self.storage[tensor].buffer
            life = lives.setdefault(buf, _Life(i, i, self._buffer_size(buf)))
            life.first, life.last = min(life.first, i), max(life.last, i)

        for i, st in enumerate(self.steps):
            if st.action == "mac":
                for t in st.layer.inputs:
                    touch(t, i)
                touch(st.output, i)
            elif st.action == "chain":         # its intermediates live in the global buffer only
                inner = {m.output for m in st.chain.members[:-1]}
                for m in st.chain.members:     # a later product's second operand is read by every band
                    for t in m.layer.inputs:
                        if t not in inner:
                            touch(t, i)
                touch(st.output, i)
            elif st.action == "vector":
                for t in st.vpass.buffers:
                    touch(t, i)
        end = len(self.steps)
        for name in self.model.output_names:
            if self.storage[name].buffer in lives:
                lives[self.storage[name].buffer].last = end
        if self.keep_tensors:                  # every buffer lives throughout: none is reused
            for life in lives.values():
                life.first, life.last = 0, end
        return {b: l for b, l in lives.items() if not self._static(b) and b not in self.resident}

    def _static(self, buf: str) -> bool:
        return buf in self.static_buffers

    def _allocate(self, base: int) -> tuple[dict[str, int], int]:
        """First fit by lifetime; returns the addresses and the region's high-water mark."""
        lives = self._lifetimes()
        placed: list[_Life] = []
        top = 0
        for buf, life in sorted(lives.items(), key=lambda kv: (kv[1].first, -kv[1].size, kv[0])):
            busy = sorted((p.addr, p.addr + p.size) for p in placed if p.first <= life.last and life.first <= p.last)
            addr = 0
            for lo, hi in busy:
                if addr + life.size <= lo:
                    break
                addr = max(addr, _align(hi))
            life.addr = addr
            placed.append(life)
            top = max(top, addr + life.size)
        return {buf: base + life.addr for buf, life in lives.items()}, _align(top)

    def _blob(self, name: str, data: np.ndarray) -> str:
        if name not in self.blobs:
            self.blobs[name] = _Blob(name, np.ascontiguousarray(data).view(np.uint8).reshape(-1))
        return name

    # ---- static data -------------------------------------------------------------------------
    def _collect_static(self, image: Optional[np.ndarray]) -> None:
        h, w, c = self.model.input
        x = np.zeros((h, w, c), np.int8) if image is None else np.asarray(image, np.int8)
        self._blob(INPUT, x)
        held: dict[str, np.ndarray] = {}        # concatenations holding constant parts
        for layer in self.model.layers:
            if layer.kind != "constant":
                continue
            data, st = np.asarray(self.q.layers[layer.name].data, np.int8), self.storage[layer.name]
            if st.buffer == layer.name:
                self._blob(layer.name, data)
                continue
            # written into the concatenation's static buffer once, at its offset; the computed parts
            # are stored beside it by their producers, as in any concatenation
            whole = self.storage[st.buffer]
            buf = held.setdefault(st.buffer, np.zeros((whole.shape[0] * whole.shape[1], whole.pitch), np.int8))
            st.cells(buf)[:] = data.reshape(-1, st.shape[2])
        for name, buf in held.items():
            self._blob(name, buf)

    def layout(self, image: Optional[np.ndarray]) -> tuple[list, int, int]:
        """(instruction builders per step, static bytes, activation bytes): every blob and buffer
        placed, no instruction built yet.  ProgramError when the image does not fit the DRAM."""
        self._collect_static(image)
        code: list[tuple[Step, list, tuple]] = []   # (step, instruction builders, writes), built after addresses
        for st in self.steps:
            if st.action == "mac":
                code.append((st, self._mac_parts(st), (st.output,)))
            elif st.action == "chain":
                code.append((st, self._chain_parts(st), (st.output,)))
            elif st.action == "vector":
                code.append((st, self._vec_pass(st), st.vpass.writes))
        static = 0
        for blob in self.blobs.values():
            blob.addr = static
            static = _align(static + blob.data.size)
        self.buffers = {b.name: b.addr for b in self.blobs.values() if b.name == INPUT or b.name in self.storage}
        acts, top = self._allocate(static)
        self.buffers.update(acts)
        total = static + top
        if total > self.dram_bytes:
            raise DramCapacityError(f"{self.model.name}: the DRAM image needs {total:,} bytes ({static:,} of weights, "
                               f"tables and input, {top:,} of activations), more than the {self.dram_bytes:,} "
                               f"bytes of DRAM configured (dram_mib = {self.cfg.dram_mib})")
        return code, static, top

    def build(self, image: Optional[np.ndarray]) -> Program:
        code, static, top = self.layout(image)
        total = static + top
        stream: list[Insn] = []
        steps: list[StepCode] = []
        shared: dict = {}
        for st, emit, writes in code:                # descriptors are encoded here, with addresses
            start = len(stream)
            stream += emit()
            share_fields(stream[start:], shared)     # kept to the end: equal words share their fields
            steps.append(StepCode(st, start, len(stream), tuple(writes)))
        stream.append(make(Op.END))
        dram = np.zeros(total, np.uint8)
        for blob in self.blobs.values():
            dram[blob.addr:blob.addr + blob.data.size] = blob.data
        return Program(self.model, self.cfg, stream, dram, self.buffers, self.storage, steps, static, top,
                       self.class_maps, self.resident)

    def _addr(self, tensor: str) -> int:
        st = self.storage[tensor]
        return self.buffers[st.buffer] + st.start

    # ---- MAC steps ---------------------------------------------------------------------------
    def _mac_blobs(self, st: Step, lo: Lowered) -> tuple:
        """(weights, parameters, table) blob names of a MAC step (weights and table None when it has
        none), its weights packed for the problem ``lo``."""
        layer = st.layer
        ql = self.q.layers[layer.name]
        ep_shift = self.q.layers[st.softmax].params.out_shift if st.softmax else 0
        params = self._blob(f"{layer.name}.params", pack_params(ql.bias, ql.mult, ql.shift, ep_shift))
        table = None
        if st.act == Act.TABLE:
            table = self._blob(f"{st.act_layer}.table", _table_bytes(self.q.layers[st.act_layer].params))
        elif st.softmax:
            table = self._blob(f"{st.softmax}.exp", _table_bytes(exp_table(self.q.layers[st.softmax].params)))
        weights = None
        if not isinstance(layer, MatMul):
            weights = self._blob(f"{layer.name}.weights",
                                 pack_weights(lo.problem, ql.weight, self.cfg, lo.layout.rows_per_oc))
        return weights, params, table

    def _mac_parts(self, st: Step):
        parts = map_layer(st.layer, self.cfg, **st.map_args, **gb_fields(st, self.resident))
        weights, params, table = self._mac_blobs(st, parts[0][0])

        def emit() -> list[Insn]:
            out, g0 = [], 0
            for lowered, repeat in parts:
                for _ in range(repeat):
                    pl = self._placement(st, lowered, g0, weights, params, table)
                    out += build_stream(lowered.problem, lowered.tiling, self.cfg, pl)
                    lp = lowered.problem
                    if lp.row0 + lp.oh >= lp.oh_full:       # a batch's last band: the next batch of groups
                        g0 += lp.groups
            return out
        return emit

    def _chain_parts(self, st: Step):
        """A band chain's code (``mapper.bands``): band by band, each layer's stream, joined where
        the chain's streams were (``mapper.stitch``)."""
        chain = st.chain
        n = len(chain.members)
        blobs = [self._mac_blobs(m, chain.lowered[i]) for i, m in enumerate(chain.members)]

        def emit() -> list[Insn]:
            out = []
            for lowered, part in zip(chain.lowered, chain.parts):
                pl = self._band_placement(chain, part, lowered, blobs[part.member], part.member == n - 1)
                out += build_stream(lowered.problem, lowered.tiling, self.cfg, pl)
            return apply(out, chain.joints)
        return emit

    def _band_placement(self, chain, part, lo: Lowered, blobs, last: bool) -> Placement:
        """Where one layer of one band reads and writes: the DRAM tensors at the band's first row,
        or the chain's slots in the global buffer."""
        m, width = chain.members[part.member], chain.grid[1]
        weights, params, table = blobs
        if part.member == 0:
            a = self.storage[m.layer.inputs[0]]
            src, in_pitch = self._addr(m.layer.inputs[0]) + part.in_row0 * width * a.pitch, a.pitch
        else:
            slot = chain.slots[part.member - 1]
            src, in_pitch = slot.addr, slot.pitch
        if last:
            o = self.storage[m.output]
            dst, out_pitch = self._addr(m.output) + part.out_row0 * width * o.pitch, o.pitch
        else:
            slot = chain.slots[part.member]
            dst, out_pitch = slot.addr, slot.pitch
        pent, tab = self.blobs[params].addr, self.blobs[table].addr if table else -1
        if isinstance(m.layer, MatMul):      # a plain product (one window); a later member's a_offset is 0
            a = (src + m.layer.a_offset, in_pitch, in_pitch)
            return self._product_placement(m.layer, 0, a, (dst, out_pitch), pent, tab)
        return Placement(src, in_pitch, self.blobs[weights].addr, pent, dst, out_pitch, lo.layout.rows_per_oc, tab,
                         end=0)

    def _placement(self, st: Step, lo: Lowered, g0: int, weights, params, table) -> Placement:
        p, layer = lo.problem, st.layer
        a = self.storage[layer.inputs[0]]
        out = self.storage[st.output]
        pent = self.blobs[params].addr + g0 * p.kg * PARAM_ENTRY_BYTES
        tab = self.blobs[table].addr if table else -1
        if not isinstance(layer, MatMul):
            w = self.blobs[weights].addr + g0 * p.kg * lo.layout.rows_per_oc * self.cfg.c0
            src, dst = self.resident.get(layer.inputs[0]), self.resident.get(st.output)
            # a tensor kept in the global buffer: its address there (one part only: g0 is 0)
            return Placement(src.addr if src else self._addr(layer.inputs[0]) + g0 * p.cg, p.in_gb or a.pitch, w,
                             pent, dst.addr if dst else self._addr(st.output) + g0 * p.kg, p.out_gb or out.pitch, lo.layout.rows_per_oc, tab,
                             end=0)
        src, dst = self.resident.get(layer.inputs[0]), self.resident.get(st.output)
        # kept in the global buffer (one window, one part: mapper.residency): there, at its pitch
        output = dst.addr if dst else self._addr(st.output) + g0 * p.kg
        win0, windows = g0 // layer.heads, layer.windows
        a_addr = src.addr if src else self._addr(layer.inputs[0]) + layer.a_offset + win0 * a.pitch
        return self._product_placement(layer, win0, (a_addr, p.in_gb or windows * a.pitch, p.in_gb or a.pitch),
                                       (output, p.out_gb or out.pitch * windows), pent, tab)

    def _product_placement(self, layer: MatMul, win0: int, a: tuple[int, int, int], out: tuple[int, int],
                           pent: int, tab: int) -> Placement:
        """A product's placement from window ``win0``: its first operand at ``a`` (address, row
        pitch, window pitch), its output at ``out`` (address, pitch), its second operand in DRAM."""
        b = self.storage[layer.inputs[1]]
        b_addr = self._addr(layer.inputs[1]) + layer.b_offset + win0 * b.pitch
        if layer.b_layout == "nk":
            b_head, b_row, b_lane = layer.k, layer.windows * b.pitch, 1
        else:
            b_head, b_row, b_lane = layer.n, 1, layer.windows * b.pitch
        return Placement(a[0], a[1], b_addr, pent, out[0], out[1], 0, tab, a_window=a[2], a_head=layer.k,
                         b_window=b.pitch, b_head=b_head, b_row=b_row, b_lane=b_lane, b_repeat=layer.b_repeat)

    # ---- vector steps ------------------------------------------------------------------------
    def _vec_pass(self, st: Step):
        vp: VecPass = st.vpass
        stages = [self._stage_params(vp, i) for i in range(len(vp.desc.stages))]
        desc_name = f"{st.layer.name}.desc"
        self._blob(desc_name, np.zeros(_desc_size(vp.desc), np.uint8))

        def emit() -> list[Insn]:
            desc = replace(vp.desc.relocated([self.buffers[b] + op.base for b, op in zip(vp.buffers, vp.desc.operands)]),
                           stages=tuple(replace(s, params={**s.params, **self._resolve(p)})
                                        for s, p in zip(vp.desc.stages, stages)))
            blob = self.blobs[desc_name]
            blob.data[:] = np.frombuffer(encode_descriptor(desc), np.uint8)
            return [make(Op.VEC, **vec_fields(desc), desc_addr=blob.addr), make(Op.FENCE)]
        return emit

    def _resolve(self, params: dict) -> dict:
        return {k: (self.blobs[v[1]].addr if isinstance(v, tuple) else v) for k, v in params.items()}

    def _stage_params(self, vp: VecPass, i: int) -> dict:
        """The quantisation parameters of stage ``i`` (table addresses as ("blob", name) for later)."""
        stage = vp.desc.stages[i]
        names = vp.stage_layers[i].split("+")
        ql = self.q.layers[names[0]]
        if stage.op == VecOp.ADD:
            p = ql.params
            ma, mb = (p.mult_b, p.mult_a) if vp.stage_swaps[i] else (p.mult_a, p.mult_b)
            return {"mult_a": ma, "mult_b": mb, "shift": p.shift, "relu": int(p.relu or len(names) > 1)}
        if stage.op == VecOp.MUL:
            return {"mult": ql.params.mult, "shift": ql.params.shift}
        if stage.op == VecOp.LUT:
            return {"table": ("blob", self._blob(f"{names[0]}.lut", np.asarray(ql.params, np.int8)))}
        if stage.op == VecOp.LAYERNORM:
            p = ql.params
            entries = _pack_entries(LN_ENTRY, {"beta": p.beta, "gamma": p.gamma}, p.n)
            return {"table": ("blob", self._blob(f"{names[0]}.ln", entries)), "eps": p.eps, "shift": p.shift}
        if stage.op == VecOp.SOFTMAX:
            return {"exp_mult": ql.params.exp_mult, "exp_shift": ql.params.exp_shift, "out_shift": ql.params.out_shift}
        return {}


def _desc_size(d: Descriptor) -> int:
    return descriptor_bytes(d)
