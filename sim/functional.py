"""Functional mode: execute an instruction stream on real int8 data.

``Machine`` holds the DRAM image, the global buffer and every PE's input,
weight, accumulation and parameter memories, and executes instructions with
the semantics of ``docs/isa.md`` (in stream order: the dependency tokens only
decide *when* an instruction runs, never *what* it computes, for a stream the
mapper emits).  ``check_layer`` builds a random layer, lays it out in DRAM the
way the mapper expects, runs the mapper's stream and compares the output with
the golden model bit for bit; ``check_model`` does so for every MAC layer of a
network.
"""

from __future__ import annotations

import numpy as np

from hw.config import AcceleratorConfig
from hw.isa import Insn, StreamError, INSN_BYTES
from hw.numerics import MAX_SHIFT, PARAM_ENTRY_BYTES
from hw.timing import dw_gather_ok, load_inp_lanes
from mapper.ir import Conv2d, Layer, Linear, MatMul, Model, MAC_KINDS
from mapper.fusion import plan
from mapper.lower import Lowered, map_layer

from . import golden

__all__ = ["Machine", "CheckError", "check_layer", "check_model", "layer_data"]


class CheckError(AssertionError):
    """Functional mode disagrees with the golden model; the message names layer, index and values."""


class Machine:
    """Architectural state of one accelerator and an executor for instructions."""

    def __init__(self, cfg: AcceleratorConfig, dram: np.ndarray):
        self.cfg = cfg
        self.dram = dram
        p = cfg.num_pe
        self.gb = np.zeros(cfg.global_buf_bytes, dtype=np.uint8)
        self.inp = np.zeros((p, cfg.input_rows, cfg.c0), dtype=np.int8)
        self.wgt = np.zeros((p, cfg.k0, cfg.weight_rows, cfg.c0), dtype=np.int8)
        self.acc = np.zeros((p, cfg.accum_depth, cfg.k0), dtype=np.int64)
        self.bias = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.mult = np.zeros((p, cfg.param_depth), dtype=np.int64)
        self.shift = np.zeros((p, cfg.param_depth), dtype=np.int64)

    # ---- helpers -----------------------------------------------------------------------------
    def _pes(self, f: dict, off: int) -> np.ndarray:
        pes = f["pe_first"] + f["pe_step"] * np.arange(f["pe_count"])
        if f["pe_count"] == 0 or pes[-1] >= self.cfg.num_pe:
            raise StreamError(f"PE set first={f['pe_first']} count={f['pe_count']} step={f['pe_step']} "
                              f"outside the {self.cfg.num_pe} PEs at byte offset {off}")
        return pes

    def _rows(self, first: int, n: int, depth: int, what: str, off: int) -> None:
        if first + n > depth:
            raise StreamError(f"{what} rows {first}..{first + n - 1} exceed its depth {depth} at byte offset {off}")

    def _dram(self, addr: np.ndarray, off: int) -> np.ndarray:
        if addr.size and (addr.min() < 0 or addr.max() >= self.dram.size):
            raise StreamError(f"DRAM address {int(addr.max())} outside the {self.dram.size}-byte image "
                              f"at byte offset {off}")
        return self.dram[addr]

    # ---- instructions ------------------------------------------------------------------------
    def execute(self, insn: Insn, off: int = 0) -> None:
        handler = getattr(self, f"_{insn.op.name.lower()}", None)
        if handler is not None:
            handler(insn.f, off)

    def run(self, stream: list[Insn]) -> None:
        for i, insn in enumerate(stream):
            self.execute(insn, i * INSN_BYTES)

    def _load_inp(self, f: dict, off: int) -> None:
        c0 = self.cfg.c0
        n_rows = f["n_cblk"] * f["win_h"] * f["win_w"]
        self._rows(f["dst_addr"], n_rows, self.cfg.input_rows, "input buffer", off)
        addr, valid = load_inp_lanes(f, self.cfg)
        src = self.gb if f["src_gb"] else self.dram
        data = np.zeros(addr.shape, dtype=np.uint8)
        if valid.any():
            a = addr[valid]
            if a.min() < 0 or a.max() >= src.size:
                raise StreamError(f"LOAD_INP source address {int(a.max())} out of range at byte offset {off}")
            data[valid] = src[a]
        rows = data.reshape(n_rows, c0).view(np.int8)
        self.inp[self._pes(f, off), f["dst_addr"]:f["dst_addr"] + n_rows] = rows

    def _load_wgt(self, f: dict, off: int) -> None:
        c0, k0 = self.cfg.c0, self.cfg.k0
        self._rows(f["dst_addr"], f["rows"], self.cfg.weight_rows, "weight buffer", off)
        j, r, lane = np.meshgrid(np.arange(k0), np.arange(f["rows"]), np.arange(c0), indexing="ij")
        idx = r * c0 + lane
        valid = (j < f["n_out"]) & (idx < f["chan"])
        data = np.zeros(j.shape, dtype=np.uint8)
        data[valid] = self._dram(f["src_addr"] + j[valid] * f["out_stride"] + idx[valid], off)
        self.wgt[self._pes(f, off)[:, None], np.arange(k0)[None, :], f["dst_addr"]:f["dst_addr"] + f["rows"]] = \
            data.view(np.int8)[None]

    def _load_param(self, f: dict, off: int) -> None:
        n = f["n_entries"]
        self._rows(f["dst_addr"], n, self.cfg.param_depth, "parameter memory", off)
        raw = self._dram(f["src_addr"] + np.arange(n * PARAM_ENTRY_BYTES), off).reshape(n, PARAM_ENTRY_BYTES)
        bias = raw[:, 0:4].copy().view("<i4")[:, 0].astype(np.int64)
        mult = raw[:, 4:6].copy().view("<u2")[:, 0].astype(np.int64)
        shift = raw[:, 6].astype(np.int64)
        if (shift > MAX_SHIFT).any():
            raise StreamError(f"parameter shift {int(shift.max())} above {MAX_SHIFT} at byte offset {off}")
        pes = self._pes(f, off)
        sl = slice(f["dst_addr"], f["dst_addr"] + n)
        self.bias[pes, sl], self.mult[pes, sl], self.shift[pes, sl] = bias, mult, shift

    def _load_gb(self, f: dict, off: int) -> None:
        n = f["n_bytes"]
        if f["dst_addr"] + n > self.gb.size:
            raise StreamError(f"LOAD_GB writes past the {self.gb.size}-byte global buffer at byte offset {off}")
        self.gb[f["dst_addr"]:f["dst_addr"] + n] = self._dram(f["src_addr"] + np.arange(n), off)

    def _gemm(self, f: dict, off: int) -> None:
        kh, kw, st = f["kh"], f["kw"], f["stride"]
        oh, ow, in_w = f["out_h"], f["out_w"], f["in_w"]
        in_h = (oh - 1) * st + kh
        npix = oh * ow
        self._rows(f["acc_addr"], npix, self.cfg.accum_depth, "accumulation buffer", off)
        oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        oy, ox = oy.ravel(), ox.ravel()
        acc = self.acc[:, f["acc_addr"]:f["acc_addr"] + npix]
        first = not f["accumulate"]
        if f["dw"] and not dw_gather_ok(self.cfg, kw):
            raise StreamError(f"GEMM at byte offset {off}: depthwise gather of kw = {kw} not possible")
        k0 = self.cfg.k0
        for cb in range(f["n_cblk"]):
            for r in range(kh):
                for s in range(1 if f["dw"] else kw):
                    rows = f["inp_addr"] + cb * in_h * in_w + (oy * st + r) * in_w + (ox * st + s)
                    wrow = f["wgt_addr"] + ((cb * kh + r) if f["dw"] else (cb * kh + r) * kw + s)
                    if rows.max() + (kw - 1 if f["dw"] else 0) >= self.cfg.input_rows \
                            or wrow >= self.cfg.weight_rows:
                        raise StreamError(f"GEMM reads past a buffer at byte offset {off}")
                    w = self.wgt[:, :, wrow].astype(np.float64)              # (P, K0, C0)
                    if f["dw"]:
                        # vector MAC j: lane t holds lane j of input row (pixel's row + t), t < kw
                        x = np.stack([self.inp[:, rows + t, :k0] for t in range(kw)], axis=-1)  # (P, npix, K0, kw)
                        prod = np.einsum("pnjt,pjt->pnj", x.astype(np.float64), w[:, :, :kw]).astype(np.int64)
                    else:
                        x = self.inp[:, rows].astype(np.float64)             # (P, npix, C0)
                        prod = np.matmul(x, w.transpose(0, 2, 1)).astype(np.int64)   # exact: |sum| < 2^53
                    if first:
                        acc[...] = prod
                        first = False
                    else:
                        acc += prod

    def _store(self, f: dict, off: int) -> None:
        oh, ow = f["out_h"], f["out_w"]
        npix = oh * ow
        oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        for p in self._pes(f, off):
            kc, pg = int(p) % f["pe_k"], int(p) // f["pe_k"]
            j = np.arange(f["k_per_pe"])
            k = f["k_base"] + kc * f["k_step"] + j
            y = f["y0"] + pg * oh + oy
            x = f["x0"] + ox
            valid = ((y < f["t_h"]) & (x < f["t_w"]))[..., None] & (k < f["t_k"])[None, None, :]
            if not valid.any():
                continue
            a = self.acc[p, f["acc_addr"]:f["acc_addr"] + npix, :f["k_per_pe"]].reshape(oh, ow, -1)
            pslice = slice(f["param_addr"], f["param_addr"] + f["k_per_pe"])
            q = golden.requantize(a, self.bias[p, pslice], self.mult[p, pslice], self.shift[p, pslice],
                                  relu=bool(f["relu"]), acc_bits=self.cfg.acc_bits)
            addr = f["dst_addr"] + (y[..., None] * f["t_w"] + x[..., None]) * f["k_pitch"] + k[None, None, :]
            a_valid = addr[valid]
            if a_valid.max() >= self.dram.size:
                raise StreamError(f"STORE writes past DRAM at byte offset {off}")
            self.dram[a_valid] = q[valid].view(np.uint8)


# ---- checking layers against the golden model ----------------------------------------------------

def layer_data(layer: Layer, rng: np.random.Generator) -> dict:
    """Random int8 operands and requantisation parameters for a MAC layer."""
    i8 = lambda *shape: rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        x = i8(layer.in_h, layer.in_w, layer.in_ch)
        w = i8(layer.out_ch, kh, kw, layer.in_ch // layer.groups)
        n_out, red = layer.out_ch, kh * kw * layer.in_ch // layer.groups
    elif isinstance(layer, Linear):
        x, w = i8(layer.tokens, layer.in_features), i8(layer.out_features, layer.in_features)
        n_out, red = layer.out_features, layer.in_features
    elif isinstance(layer, MatMul):
        x, w = i8(layer.batch, layer.m, layer.k), i8(layer.batch, layer.k, layer.n)
        n_out, red = layer.batch * layer.n, layer.k
    else:
        raise TypeError(f"{layer.name} is not a MAC layer")
    # scale so outputs spread over int8 without saturating everywhere: |acc| ~ 128*128*sqrt(red)/3
    shift = int(min(MAX_SHIFT, 16 + max(0, int(np.log2(max(1, red))) // 2)))
    return {"x": x, "w": w,
            "bias": rng.integers(-(1 << 12), 1 << 12, size=n_out).astype(np.int64),
            "mult": rng.integers(1 << 13, 1 << 15, size=n_out).astype(np.int64),
            "shift": np.full(n_out, shift, dtype=np.int64),
            "relu": bool(getattr(layer, "relu", False))}


def golden_output(layer: Layer, d: dict, cfg: AcceleratorConfig) -> np.ndarray:
    """Golden int8 output in the accelerator's DRAM layout (HWC; matmul: [m, batch*n])."""
    if isinstance(layer, Conv2d):
        acc = golden.conv2d(d["x"], d["w"], stride=layer.stride, padding=layer.padding, groups=layer.groups,
                            acc_bits=cfg.acc_bits)
    elif isinstance(layer, Linear):
        acc = golden.linear(d["x"], d["w"], acc_bits=cfg.acc_bits)
    else:
        acc = golden.matmul(d["x"], d["w"], acc_bits=cfg.acc_bits)       # [B, M, N]
        acc = acc.transpose(1, 0, 2).reshape(layer.m, -1)                 # [M, B*N]
    return golden.requantize(acc, d["bias"], d["mult"], d["shift"], relu=d["relu"], acc_bits=cfg.acc_bits)


def _place(lowered: Lowered, layer: Layer, d: dict, cfg: AcceleratorConfig) -> np.ndarray:
    """The DRAM image the mapper's stream expects for this layer's operands."""
    p, lay, c0 = lowered.problem, lowered.layout, cfg.c0
    dram = np.zeros(lay["end"], dtype=np.uint8)

    def put(addr: int, arr: np.ndarray) -> None:
        b = np.ascontiguousarray(arr).view(np.uint8).ravel()
        dram[addr:addr + b.size] = b

    if isinstance(layer, MatMul):
        put(lay["input"], d["x"].transpose(1, 0, 2).reshape(layer.m, -1))       # [M, B*K]
        put(lay["weights"], d["w"].transpose(0, 2, 1))                           # [B, N, K]
    else:
        put(lay["input"], d["x"])
        rows = lay["rows_per_oc"]
        wa = np.zeros((p.k, rows * c0), dtype=np.int8)
        w = d["w"]
        if isinstance(layer, Linear):
            w = w.reshape(p.k, 1, 1, p.cg)
        kh, kw = p.kh, p.kw
        if p.kind == "depthwise" and p.gather:
            for r in range(kh):                       # row r of channel k: its kw taps on lanes 0..kw-1
                wa[:, r * c0:r * c0 + kw] = w[:, r, :, 0]
        elif p.kind == "depthwise":
            for r in range(kh):
                for s in range(kw):
                    tap = r * kw + s
                    lanes = np.arange(p.k) % p.dw_pack
                    wa[np.arange(p.k), tap * c0 + lanes] = w[:, r, s, 0]
        elif p.fold:
            flat = w.reshape(p.k, kh * kw * p.cg)                                 # (r, s, c) order
            wa[:, :flat.shape[1]] = flat
        else:
            ncb = p.n_cblk(c0)
            full = np.zeros((p.k, ncb * c0, kh, kw), dtype=np.int8)
            full[:, :p.cg] = w.transpose(0, 3, 1, 2)
            wa[:] = full.reshape(p.k, ncb, c0, kh * kw).transpose(0, 1, 3, 2).reshape(p.k, -1)
        put(lay["weights"], wa)
    params = np.zeros((p.k, PARAM_ENTRY_BYTES), dtype=np.uint8)
    params[:, 0:4] = d["bias"].astype("<i4")[:, None].view(np.uint8)
    params[:, 4:6] = d["mult"].astype("<u2")[:, None].view(np.uint8)
    params[:, 6] = d["shift"].astype(np.uint8)
    put(lay["params"], params)
    return dram


def run_layer(layer: Layer, cfg: AcceleratorConfig, d: dict, post_passes: int = 0) -> np.ndarray:
    """Run the mapper's stream for ``layer`` (with ``post_passes`` of fused row epilogue, which
    changes the tiling, not the data) on data ``d``; the int8 output in DRAM layout."""
    parts = map_layer(layer, cfg, post_passes=post_passes)
    if len(parts) != 1 or parts[0][1] != 1:
        raise CheckError(f"{layer.name}: functional mode runs layers the mapper does not split "
                         f"(this one is split into {sum(n for _, n in parts)} batches)")
    lowered = parts[0][0]
    dram = _place(lowered, layer, d, cfg)
    Machine(cfg, dram).run(lowered.stream)
    p, lay = lowered.problem, lowered.layout
    out = dram[lay["output"]:lay["output"] + p.oh * p.ow * p.k].view(np.int8)
    if isinstance(layer, MatMul):
        return out.reshape(layer.m, p.k)
    if isinstance(layer, Linear):
        return out.reshape(layer.tokens, p.k)
    return out.reshape(p.oh, p.ow, p.k)


def check_layer(layer: Layer, cfg: AcceleratorConfig, seed: int, post_passes: int = 0) -> int:
    """Compare functional mode with the golden model on random data; returns the outputs compared."""
    d = layer_data(layer, np.random.default_rng(seed))
    want = golden_output(layer, d, cfg)
    got = run_layer(layer, cfg, d, post_passes)
    if got.shape != want.shape or not np.array_equal(got, want):
        bad = np.argwhere(got != want) if got.shape == want.shape else None
        if bad is None:
            raise CheckError(f"{layer.name} on {cfg.name} (seed {seed}): output shape {got.shape} != {want.shape}")
        i = tuple(int(v) for v in bad[0])
        g, w = int(got[i]), int(want[i])
        raise CheckError(f"{layer.name} on {cfg.name} (seed {seed}): {len(bad)} of {want.size} outputs differ; "
                         f"first at index {i}: got {g} ({g & 0xff:#04x}), expected {w} ({w & 0xff:#04x})")
    return want.size


def check_model(model: Model, cfg: AcceleratorConfig, *, seed: int, progress=None) -> dict:
    """Functional check of every MAC layer of ``model`` (each on its own random data), with the
    streams the simulator times (``mapper.fusion``'s epilogues included)."""
    checked, outputs = 0, 0
    post_passes = {st.layer.name: st.post_passes for st in plan(model, cfg)}
    for i, layer in enumerate(model.layers):
        if layer.kind not in MAC_KINDS:
            continue
        if progress:
            progress(layer.name)
        outputs += check_layer(layer, cfg, seed + i, post_passes[layer.name])
        checked += 1
    return {"layers": checked, "outputs": outputs, "seed": seed}
