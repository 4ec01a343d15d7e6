"""Per-layer MAC analysis of a workload: ``python -m mapper.flops --model M``.

Prints a per-layer table (name, kind, part, shape, MACs, share) and the totals:
shares of convolutions (all ``conv2d`` layers), linear layers and attention
matmuls, shares per part, and the five largest layers.  Writes
``<out>/<model>[_<variant>][_<H>x<W>].json`` (default ``build/flops``; the variant
is left out for the full model, the size unless ``--size`` is given; or ``--out`` itself when it
names a ``.json`` file) with the keys ``model``, ``variant``,
``input`` ([H, W, C]), ``total_macs``, ``shares`` (``{"kind": {...}, "part":
{...}}``, fractions of ``total_macs``), ``largest`` (names of the five largest
layers) and ``layers`` (``name``, ``kind``, ``part``, ``shape``, ``macs`` each).
The file is written to a temporary name and renamed, so it is never seen
half-written.

The paper's FLOPs count multiply-accumulates: MACs here are its FLOPs.

Bad input (unknown model or variant, a size that is not ``HxW`` with positive
integers or that no configuration maps, an output folder that cannot be written)
prints one line on stderr and exits with status 2 without writing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hw.cli import (OneLineParser, StageTicker, UsageError, aligned_table, atomic_write_json, fail, join_name, json_text,
                    name_token, output_file, refuse_replacing, run_main)
from .ir import MAC_KINDS, PARTS, Model
from .workloads import MODEL_NAMES, build_model, check_model, is_onnx_path

__all__ = ["main", "analyse", "parse_size", "build_model_or_usage_error", "refuse_flops_only", "known_model",
           "model_parts", "model_tag", "smallest_size", "MODEL_HELP", "UsageError"]

#: Help text of every ``--model`` option.
MODEL_HELP = f"one of: {', '.join(MODEL_NAMES)}; or the path of a .onnx file"

DEFAULT_OUT = Path("build") / "flops"
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$", re.ASCII)     # ASCII digits: int() takes '٣٢' too


def parse_size(text: str) -> tuple[int, int]:
    """``"800x1200"`` -> ``(800, 1200)``; UsageError for anything else."""
    m = _SIZE_RE.match(text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise UsageError(f"bad --size {text!r}: expected HxW with two positive integers in digits 0-9, "
                         f"e.g. 800x1200")
    return int(m.group(1)), int(m.group(2))


def known_model(name: str) -> str:
    """``name`` when it is a zoo model or an ONNX file's path; a UsageError listing the zoo otherwise."""
    try:
        check_model(name)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    return name


def build_model_or_usage_error(name: str, variant: str | None, size: tuple[int, int] | None,
                               build=build_model, progress: bool = True) -> Model:
    """``build(name, variant, size)`` for a command line (``build_model`` by default): an
    unknown variant or an impossible size is a UsageError.  An ONNX file's import that runs
    long says so on stderr (``progress``)."""
    try:
        with StageTicker(Path(name).name, enabled=progress and is_onnx_path(name)) as ticker:
            ticker.stage("importing the ONNX file")
            return build(name, variant=variant or None, size=size)
    except KeyError as e:
        raise UsageError(str(e.args[0]) if e.args else str(e)) from None
    except ValueError as e:
        if size is None or not _builds(build, name, variant):
            raise UsageError(str(e)) from None       # the variant's own message, size or not
        least = None if is_onnx_path(name) else smallest_size(name, variant, build)
        hint = (f"; the smallest input it takes is {least[0]}x{least[1]}"
                if least and (size[0] < least[0] or size[1] < least[1]) else "")
        raise UsageError(f"--size {size[0]}x{size[1]}: {name} cannot take an input of this size ({e}){hint}") from None


def refuse_flops_only(model: Model, spec: str) -> None:
    """UsageError for a network only ``make flops`` takes: one with an opaque product (``MatMul``
    ``b_layout="opaque"``, Anchor DETR's value aggregation), which has no element layout the
    accelerator maps or runs (mapping it fails on a detail such as a STORE's channel field)."""
    opaque = next((l.name for l in model.layers if getattr(l, "b_layout", "") == "opaque"), None)
    if opaque is not None:
        raise UsageError(f"{spec} is for FLOP counting only: {opaque} is an opaque product, which the accelerator "
                         f"can neither map nor run; count its MACs with make flops MODEL={spec}")


def refuse_beyond_every_config(model: Model, size: tuple[int, int]) -> None:
    """UsageError for an input size no configuration maps: on every preset, a MAC layer's dimension
    beyond its instruction field's range (``mapper.lower.refuse_beyond_isa``, sim.run's refusal of the
    size) or a non-MAC layer the vector unit refuses (``mapper.fusion.refuse_vectors_beyond_isa``: a
    pooling window above ``POOL_MAX_COUNT``, say), so that make flops counts no network the simulator
    refuses to take at any configuration."""
    from hw.config import PRESETS
    from .fusion import refuse_vectors_beyond_isa
    from .lower import MappingError, refuse_beyond_isa

    layers = [l for l in model.layers if getattr(l, "b_layout", "") != "opaque"]     # counted, never mapped
    refusals = []
    for cfg in PRESETS.values():
        try:
            refuse_beyond_isa(layers, cfg)
            refuse_vectors_beyond_isa(model, cfg)
        except MappingError as e:
            refusals.append(e)
        else:
            return
    raise UsageError(f"--size {size[0]}x{size[1]}: {model.name} at this size maps onto no configuration "
                     f"({refusals[0]})")


def _builds(build, name: str, variant: str | None, size: tuple[int, int] | None = None) -> bool:
    try:
        build(name, variant=variant or None, size=size)
    except (KeyError, ValueError):
        return False
    return True


def smallest_size(name: str, variant: str | None = None, build=build_model) -> tuple[int, int] | None:
    """The smallest input ``(H, W)`` model ``name`` (its ``variant``) takes, as its downsampling
    decides: each side the least at which the model builds with the other side at its default,
    found by bisection below the default (a network that takes a side takes any larger one).
    None when the model does not build at its default size or at the sides found together."""
    if not _builds(build, name, variant):
        return None
    default = build(name, variant=variant or None, size=None).input[:2]

    def least(axis: int) -> int:
        fails, builds = 0, default[axis]
        while builds - fails > 1:
            mid = (fails + builds) // 2
            size = (mid, default[1]) if axis == 0 else (default[0], mid)
            if _builds(build, name, variant, size):
                builds = mid
            else:
                fails = mid
        return builds

    smallest = (least(0), least(1))
    return smallest if _builds(build, name, variant, smallest) else None


def model_parts(model: Model, size_given: bool) -> list[str]:
    """What names the network in an output name: model, variant (empty for the full model)
    and ``<H>x<W>`` (empty unless a size was asked for)."""
    return [model.name, "" if model.variant in ("", "full") else name_token(model.variant),
            f"{model.input[0]}x{model.input[1]}" if size_given else ""]


def model_tag(model: Model, size_given: bool) -> str:
    """``<model>[_<variant>][_<H>x<W>]`` (``model_parts`` joined)."""
    return join_name(model_parts(model, size_given))


def analyse(model: Model) -> dict:
    """The JSON document for ``model`` (see the module docstring)."""
    total = model.total_macs
    frac = (lambda x: x / total) if total else (lambda x: 0.0)
    by_kind = {k: 0 for k in MAC_KINDS}
    by_part: dict[str, int] = {}
    for layer in model.layers:
        if layer.kind in by_kind:
            by_kind[layer.kind] += layer.macs
        by_part[layer.part] = by_part.get(layer.part, 0) + layer.macs
    parts = {p: frac(by_part[p]) for p in PARTS if p in by_part}
    largest = sorted(model.mac_layers, key=lambda l: l.macs, reverse=True)[:5]
    return {
        "model": model.name,
        "variant": model.variant,
        "input": list(model.input),
        "total_macs": total,
        "shares": {"kind": {k: frac(v) for k, v in by_kind.items()}, "part": parts},
        "largest": [l.name for l in largest],
        "layers": [{"name": l.name, "kind": l.kind, "part": l.part, "shape": l.shape_str, "macs": l.macs}
                   for l in model.layers],
    }


def _fmt_macs(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e8 else f"{macs / 1e6:.3f} M"


def format_table(doc: dict) -> str:
    """The human-readable report for an :func:`analyse` document."""
    total = doc["total_macs"] or 1
    rows = [(l["name"], l["kind"], l["part"], l["shape"], f"{l['macs']:,}", f"{100 * l['macs'] / total:.2f}")
            for l in doc["layers"]]
    head = ("layer", "kind", "part", "shape", "MACs", "share %")
    out = aligned_table(head, rows, "<<<<>>")
    h, w, c = doc["input"]
    out.append("")
    out.append(f"model {doc['model']}  variant {doc['variant']}  input {h}x{w}x{c}")
    out.append(f"total MACs: {doc['total_macs']:,} ({_fmt_macs(doc['total_macs'])}MACs)")
    kinds = doc["shares"]["kind"]
    out.append(f"  convolutions (conv2d): {100 * kinds['conv2d']:6.2f} %")
    out.append(f"  linear layers:         {100 * kinds['linear']:6.2f} %")
    out.append(f"  attention matmuls:     {100 * kinds['matmul']:6.2f} %")
    out.append("  per part: " + ", ".join(f"{p} {100 * s:.2f} %" for p, s in doc["shares"]["part"].items()))
    out.append("  5 largest layers:")
    by_name = {l["name"]: l for l in doc["layers"]}
    for name in doc["largest"]:
        l = by_name[name]
        out.append(f"    {name:<40} {l['kind']:<7} {_fmt_macs(l['macs']):>12}  {100 * l['macs'] / total:6.2f} %")
    out.append("Note: the paper's FLOPs count multiply-accumulates; the MACs above are its FLOPs.")
    return "\n".join(out)


def write_json(doc: dict, path: Path) -> Path:
    """Write ``doc`` to ``path`` atomically; an ``OutputError``-style UsageError when it cannot be."""
    try:
        return atomic_write_json(path, doc)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m mapper.flops", description="Per-layer MAC analysis of a workload.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"output directory (default {DEFAULT_OUT}), or the file: --out my.json")
    p.add_argument("--json-only", action="store_true", help="write the JSON, print only its path")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        known_model(args.model)
        size = parse_size(args.size) if args.size is not None else None
        model = build_model_or_usage_error(args.model, args.variant, size)
        if size is not None:
            refuse_beyond_every_config(model, size)
        doc = analyse(model)
        path = output_file(args.out, f"{model_tag(model, size is not None)}.json")
        refuse_replacing(args.out, path, json_text(doc).encode())
        path = write_json(doc, path)
    except UsageError as e:
        return fail(parser.prog, e)
    if not args.json_only:
        print(format_table(doc))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
