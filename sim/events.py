"""Architectural events of each instruction, the input of the energy model.

Counts are exact functions of the instruction fields and the configuration.
Buffer accesses are counted in bytes; MACs in executed multiplier-cycles (a
lane that multiplies a padded zero still switches and is counted, which is why
low-channel layers cost more energy per useful MAC).
"""

from __future__ import annotations

from collections import Counter

from hw.config import AcceleratorConfig
from hw.epilogue import EPILOGUE_OPS
from hw.isa import Insn, Op
from hw.numerics import PARAM_ENTRY_BYTES
from hw.timing import gemm_steps, load_inp_dram_bytes, load_inp_rows, load_terms, store_bytes

__all__ = ["EVENTS", "count_events"]

#: Event name -> meaning.  The energy model assigns a cost to each.
EVENTS = {
    "mac": "int8 multiply-accumulate lane operations executed (C0 per vector MAC per cycle)",
    "reg_read_bytes": "weight register-file reads inside the vector MAC units",
    "wbuf_read_bytes": "weight buffer reads (a row per vector MAC per reduction step)",
    "wbuf_write_bytes": "weight buffer writes",
    "ibuf_read_bytes": "input buffer reads (C0 bytes per PE per cycle, shared by K0 vector MACs; kw x C0 for a depthwise gather)",
    "ibuf_write_bytes": "input buffer writes",
    "acc_read_bytes": "accumulation buffer reads (read-modify-write and post-processing)",
    "acc_write_bytes": "accumulation buffer writes",
    "param_bytes": "bias/requantisation parameter reads and writes",
    "gb_read_bytes": "global buffer reads",
    "gb_write_bytes": "global buffer writes",
    "bus_bytes": "bytes moved on the global-buffer-to-PE multicast bus",
    "dram_read_bytes": "DRAM reads",
    "dram_write_bytes": "DRAM writes",
    "post_ops": "post-processing operations (bias, multiply, shift, saturate per output)",
    "vec_ops": "vector-unit element operations of non-MAC layers (VEC) and of fused row epilogues "
               "(a STORE's softmax epilogue: every lane of every stored pixel, per extra pass)",
}


def count_events(insn: Insn, cfg: AcceleratorConfig) -> Counter:
    """Events of one instruction (a Counter over ``EVENTS``)."""
    f, op = insn.f, insn.op
    ev: Counter = Counter()
    acc_bytes = cfg.acc_bits // 8
    if op == Op.GEMM:
        steps = gemm_steps(f)
        pixels = f["out_h"] * f["out_w"]
        cycles = steps * pixels
        pes = cfg.num_pe              # the array executes every GEMM in lockstep
        ev["mac"] = cycles * pes * cfg.k0 * cfg.c0
        ev["reg_read_bytes"] = cycles * pes * cfg.k0 * cfg.c0
        ev["wbuf_read_bytes"] = steps * pes * cfg.k0 * cfg.c0
        ev["ibuf_read_bytes"] = cycles * pes * cfg.c0 * (f["kw"] if f["dw"] else 1)   # dw: kw rows a cycle
        first = pixels if not f["accumulate"] else 0     # the first step of a fresh tile only writes
        ev["acc_read_bytes"] = (cycles - first) * pes * cfg.k0 * acc_bytes
        ev["acc_write_bytes"] = cycles * pes * cfg.k0 * acc_bytes
    elif op == Op.LOAD_INP:
        rows = load_inp_rows(f)
        src = load_inp_dram_bytes(insn, cfg)
        ev["gb_read_bytes" if f["src_gb"] else "dram_read_bytes"] = src
        ev["bus_bytes"] = rows * cfg.c0
        ev["ibuf_write_bytes"] = rows * cfg.c0 * f["pe_count"]
    elif op == Op.LOAD_WGT:
        ev["dram_read_bytes"] = load_terms(op, f, cfg)[1]
        ev["bus_bytes"] = f["rows"] * cfg.c0 * cfg.k0
        ev["wbuf_write_bytes"] = f["rows"] * cfg.c0 * cfg.k0 * f["pe_count"]
    elif op == Op.LOAD_PARAM:
        b = load_terms(op, f, cfg)[1]
        ev["dram_read_bytes"] = b
        ev["bus_bytes"] = b
        ev["param_bytes"] = b * f["pe_count"]
    elif op == Op.LOAD_GB:
        ev["dram_read_bytes"] = ev["gb_write_bytes"] = load_terms(op, f, cfg)[1]
    elif op == Op.STORE:
        pixels = f["out_h"] * f["out_w"]
        ev["acc_read_bytes"] = pixels * f["pe_count"] * cfg.k0 * acc_bytes
        ev["post_ops"] = pixels * f["pe_count"] * cfg.k0
        if f["ep_row"]:          # a softmax epilogue: its operations beyond the post-processing
            ev["vec_ops"] = pixels * f["pe_count"] * cfg.k0 * EPILOGUE_OPS
        ev["param_bytes"] = f["pe_count"] * cfg.k0 * PARAM_ENTRY_BYTES
        ev["gb_write_bytes" if f.get("dst_gb") else "dram_write_bytes"] = store_bytes(insn, cfg)
    elif op == Op.VEC:
        ev["vec_ops"] = f["work"]
        ev["dram_read_bytes"] = f["bytes_in"]
        ev["dram_write_bytes"] = f["bytes_out"]
    return ev
