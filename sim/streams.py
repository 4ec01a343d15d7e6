"""Instruction streams of single layers: what ``--dump-layer`` writes and ``--trace`` details.

A layer's stream is the one the simulator times (``mapper.fusion.plan`` with the
same ``mac_only`` and ``fuse``): a MAC layer split into parts is each part's
stream, repeated as counted; a vector step is its VEC instruction; a layer
fused into another (``epilogue``, ``fused``, ``merged``) has no instruction of
its own.

``dump_layer`` writes ``<layer>.bin`` (``hw.isa.encode_stream``, ending with
END), ``<layer>.lst`` (a header of ``;`` lines naming the layer, the
configuration and the tiling, then ``hw.isa.disassemble``) and ``<layer>.json``
(the configuration and run settings the stream was made with, which
``python -m sim.replay`` reads).  Asked for a fused layer, it writes the
stream of the layer that does its work, under that layer's name, and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hw.cli import counted, join_name, kib_text
from hw.config import PRESETS, AcceleratorConfig
from hw.config_file import FIELDS, resolve_fields
from hw.isa import INSN_BYTES, Insn, Op, disassemble, encode_stream
from mapper.fusion import Step, vec_stream
from mapper.ir import Model
from mapper.lower import _insn, map_layer
from mapper.residency import gb_fields, planned

#: The files ``dump_layer`` writes, by suffix, and what each is (``sim.replay`` names a wrong one).
DUMP_FILES = {".bin": "the binary instruction stream", ".lst": "the disassembly, for reading",
              ".json": "the configuration the stream was dumped with, which sim.replay reads beside the .bin"}

__all__ = ["find_step", "step_parts", "layer_stream", "dump_layer", "Dumped", "config_from_sidecar",
           "describe_config", "file_stem"]

#: ``action``s of a step whose work another layer (``Step.into``) does.
_DONE_BY_OTHER = ("epilogue", "fused", "merged", "banded")


def file_stem(name: str) -> str:
    """A layer name as a file name: characters other than letters, digits, ``._-`` become ``_``, and
    a name of more than 120 characters keeps its start and gains a hash of the whole (``join_name``:
    a file name may hold 255 bytes)."""
    return join_name(["".join(c if c.isalnum() or c in "._-" else "_" for c in name)])


def find_step(model: Model, cfg: AcceleratorConfig, name: str, *, mac_only: bool = False,
              fuse: bool = True) -> tuple[Step, dict]:
    """The plan step of layer ``name`` (KeyError naming the model when it has no such layer), and
    the tensors kept in the global buffer."""
    model.layer(name)
    steps, resident = planned(model, cfg, mac_only=mac_only, fuse=fuse)
    return next(st for st in steps if st.layer.name == name), resident


def step_parts(step: Step, cfg: AcceleratorConfig, resident: dict | None = None) -> list[tuple[list[Insn], int, object]]:
    """``(stream, repeat, tiling)`` per part of a step with the tensors ``resident`` in the global
    buffer, streams without END (empty for a step without instructions; ``tiling`` is None for a
    vector step)."""
    if step.action == "mac":
        return [(lo.stream, n, lo.tiling) for lo, n in map_layer(step.layer, cfg, **step.map_args,
                                                                 **gb_fields(step, resident or {}))]
    if step.action == "chain":         # every band's layers joined (mapper.stitch), as the program runs them
        return [(list(step.chain.stream), 1, step.chain.describe())]
    stream = vec_stream(step) if step.action == "vector" else []
    return [(stream, 1, None)] if stream else []


def layer_stream(model: Model, name: str, cfg: AcceleratorConfig, *, mac_only: bool = False,
                 fuse: bool = True) -> list[Insn]:
    """The instruction stream of layer ``name`` as the simulator times it, ending with END
    (END alone for a layer without instructions of its own)."""
    step, resident = find_step(model, cfg, name, mac_only=mac_only, fuse=fuse)
    return [insn for stream, n, _ in step_parts(step, cfg, resident) for insn in stream * n] + [_insn(Op.END)]


def describe_config(cfg: AcceleratorConfig) -> str:
    """One line: the configuration's array, buffers and memory."""
    base = PRESETS.get(cfg.name)
    changed = [f"{k}={v}" for k, v in cfg.to_dict().items()
               if k not in ("name", "derived") and base is not None and getattr(base, k) != v]
    return (f"{cfg.name}: {counted(cfg.num_pe, 'PE')} x K0 {cfg.k0} x C0 {cfg.c0}, weight buffer "
            f"{kib_text(cfg.weight_buf_bytes)} and input buffer {kib_text(cfg.input_buf_bytes)} per PE, "
            f"global buffer {kib_text(cfg.global_buf_bytes)}, DRAM {cfg.dram_bytes_per_cycle} B/cycle "
            f"latency {cfg.dram_latency}, clock {cfg.clock_ghz:g} GHz"
            + (f" (preset {cfg.name} with {', '.join(changed)})" if changed else ""))


@dataclass
class Dumped:
    """What ``dump_layer`` wrote: the layer whose stream it is, and why it is not the one asked for."""

    layer: str
    files: list[Path]
    note: str = ""


def _header(model: Model, step: Step, cfg: AcceleratorConfig, parts, mapping: str, note: str) -> list[str]:
    """The listing's ``;`` lines.  Parts count their own instructions; the total counts END too,
    as the ``.json``'s ``instructions`` and ``sim.replay`` do, so the three agree."""
    layer = step.layer
    lines = [f"layer {layer.name} ({layer.kind}, {layer.part}): {layer.shape_str}",
             f"model {model.name} ({model.variant}, input {model.input[0]}x{model.input[1]})",
             f"configuration {describe_config(cfg)}",
             f"mapping: {mapping or step.mapping_note or step.action}"]
    offset = 0
    for i, (stream, n, tiling) in enumerate(parts):
        lines.append(f"part {i + 1} of {len(parts)}: {len(stream)} instructions x {n}, from byte offset "
                     f"{offset * INSN_BYTES:#x}" + (f"; {tiling}" if tiling is not None else ""))
        offset += len(stream) * n
    lines.append(f"{counted(offset + 1, 'instruction')} in all, END included (END at byte offset {offset * INSN_BYTES:#x})")
    if note:
        lines.append(note)
    return [f"; {line}" for line in lines]


def dump_layer(model: Model, name: str, cfg: AcceleratorConfig, folder: Path, *, mac_only: bool = False,
               fuse: bool = True, mappings: dict[str, str] | None = None) -> Dumped:
    """Write the stream of layer ``name`` (or of the layer that does its work) into ``folder``.

    ``mappings`` maps layer names to the simulator's mapping description (``LayerResult.mapping``),
    shown in the listing's header.
    """
    planned_steps, resident = planned(model, cfg, mac_only=mac_only, fuse=fuse)
    steps = {st.layer.name: st for st in planned_steps}
    model.layer(name)
    step, note = steps[name], ""
    if step.action in _DONE_BY_OTHER and step.into in steps:
        note = (f"{name} has no instructions of its own ({step.mapping_note}): this is the stream of "
                f"{step.into}, which does its work")
        step = steps[step.into]
    elif not step_parts(step, cfg, resident):
        note = f"{name} has no instructions ({step.mapping_note or step.action}): the stream is END alone"
    parts = step_parts(step, cfg, resident)
    stream = [insn for s, n, _ in parts for insn in s * n] + [_insn(Op.END)]
    base = folder / file_stem(step.layer.name)
    header = _header(model, step, cfg, parts, (mappings or {}).get(step.layer.name, ""), note)
    sidecar = {"layer": step.layer.name, "requested_layer": name, "note": note, "model": model.name,
               "variant": model.variant, "input": list(model.input), "mac_only": mac_only, "fusion": fuse,
               "instructions": len(stream), "config": cfg.to_dict()}
    files = [base.with_name(base.name + ext) for ext in DUMP_FILES]
    files[0].write_bytes(encode_stream(stream))
    files[1].write_text("\n".join(header + [disassemble(stream)]) + "\n")
    files[2].write_text(json.dumps(sidecar, indent=1) + "\n")
    return Dumped(step.layer.name, files, note)


def config_from_sidecar(doc: dict) -> AcceleratorConfig:
    """The configuration recorded by ``dump_layer``: every field, each of its type
    (``hw.config_file.resolve_fields``); ValueError naming what is wrong when it is not one (a
    damaged sidecar is refused, never completed with defaults)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError("no 'config' object")
    fields = resolve_fields({k: v for k, v in doc["config"].items() if k != "derived"}, "its 'config'")
    missing = sorted(set(FIELDS) - set(fields))
    if missing:
        raise ValueError(f"its 'config' lacks {', '.join(missing)} (--dump-layer writes every field)")
    for key in ("model", "layer"):
        if not isinstance(doc.get(key), str):
            raise ValueError(f"its {key!r} must be a name, not {doc.get(key)!r}")
    return AcceleratorConfig(**fields)
