"""Replay an instruction stream written by ``make sim ... ARGS="--dump-layer NAME"``.

``python -m sim.replay build/sim/.../streams/Conv2DFuse.bin`` decodes the
binary stream, schedules it under the timing contract and prints the total
cycles and each unit's busy cycles; ``--listing`` prints the disassembly.  The
configuration is the one the stream was dumped with, read from the ``.json``
beside it (``sim.streams``), overrides included; ``--config`` names another
preset or accelerator file, and is needed for a stream without that file (a configuration other
than the dumped one, in its fields, not its name, gets a note naming the one the stream was mapped for).  A malformed or
truncated stream, a text file (the ``.lst`` listing or the ``.json``, named with the ``.bin`` to give instead),
or a ``.json`` that is not what ``--dump-layer`` writes, is refused with one line (status 2): for a stream, the error code the RTL raises
(``docs/isa.md``, found in the RTL's order: ``hw.timing.schedule_encoded``), the
instruction and the byte offset of the problem.  A well-formed instruction that this project's RTL
does not build for the configuration (a VEC without a vector executor, as on A to M:
``hw.rtl.insn.rtl_unsupported``) is timed by the contract and named in a note (``UNSUPPORTED``);
the refusal of a malformed stream names such an instruction too when the RTL meets it first (its
dispatcher asks before ranges and tokens, ``hw.rtl.insn.first_unsupported``); on a configuration the
RTL cannot build at all (``hw.rtl.export.check_buildable``) both say that no RTL runs the stream.  What a VEC's
descriptor asks is in the DRAM image, which a replay does not have.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from hw.cli import OneLineParser, UsageError, counted, fail, read_input, run_main
from hw.config import AcceleratorConfig
from hw.config_file import ConfigError, fields_hash, is_config_file, load_config, same_fields
from hw.isa import INSN_BYTES, Queue, StreamError, disassemble
from hw.timing import RUN_OVERHEAD, decode_until_end, occupancy_and_latency, schedule_encoded

from .streams import DUMP_FILES, config_from_sidecar, describe_config

__all__ = ["main", "replay"]


def replay(data: bytes, cfg) -> dict:
    """Decode and schedule ``data`` as the RTL runs it (up to END); the totals per unit (raises
    StreamError)."""
    insns, sched = schedule_encoded(data, cfg)
    busy = {q.name: 0 for q in (Queue.LOAD, Queue.COMPUTE, Queue.STORE)}
    counts: dict[str, int] = {}
    for insn in insns:
        counts[insn.op.name] = counts.get(insn.op.name, 0) + 1
        if insn.queue != Queue.DISPATCH:
            busy[insn.queue.name] += occupancy_and_latency(insn, cfg)[0]
    return {"instructions": len(insns), "total_cycles": sched.total_cycles, "busy": busy, "counts": counts,
            "insns": insns}


def _config(args) -> tuple[AcceleratorConfig, str]:
    """The configuration to replay on and where it comes from (UsageError when there is none)."""
    if args.config is not None:
        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        return cfg, f"{'file' if is_config_file(args.config) else 'preset'} {args.config}"
    dumped = _dumped_config(args.stream)
    if dumped is None:
        raise UsageError(f"{args.stream}: no {Path(args.stream).with_suffix('.json').name} beside it to say which "
                         f"configuration it was dumped with; give --config")
    return dumped


def _is_text(data: bytes) -> bool:
    """Whether ``data`` reads as text: at least one instruction word long (shorter is a truncated
    stream, as the RTL says), no zero byte (a stream's END word has some), valid UTF-8 and mostly
    printable.  Other bytes without a zero (all 0xFF) are left to the ISA to refuse."""
    if len(data) < INSN_BYTES or b"\0" in data:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(c.isprintable() or c in "\t\n\r" for c in text)
    return printable >= 0.95 * len(text)


def _refuse_text(stream: str, data: bytes) -> None:
    """UsageError for a text file, such as the listing --dump-layer writes beside the stream: no
    stream is text, as its END word has zero bytes (decoded, a listing's ';' is an unknown opcode)."""
    if _is_text(data):
        suffix = Path(stream).suffix
        other = suffix in DUMP_FILES.keys() - {".bin"}
        what = f" (a {suffix} --dump-layer writes is {DUMP_FILES[suffix]})" if other else ""
        binary = Path(stream).with_suffix(".bin")
        # name the stream beside it only if there is one; else say how to write one
        where = (f": replay {binary}" if suffix != ".bin" and binary.is_file() else
                 " (python -m sim.run --model M --dump-layer NAME writes it under the run's streams/)")
        raise UsageError(f"{stream} is text{what}, not a binary instruction stream; sim.replay takes the .bin "
                         f"that --dump-layer writes{where}")


def _dumped_config(stream: str) -> Optional[tuple[AcceleratorConfig, str]]:
    """The configuration in the ``.json`` beside ``stream`` and its description, or None without one."""
    sidecar = Path(stream).with_suffix(".json")
    if not sidecar.exists():
        return None
    try:
        doc = json.loads(read_input(sidecar, "configuration file --dump-layer writes beside the stream"))
        return config_from_sidecar(doc), f"{sidecar.name}: {doc.get('layer', '?')} of {doc.get('model', '?')}"
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as e:
        plain = isinstance(e, ValueError) and not isinstance(e, UnicodeDecodeError)     # says what is wrong
        why = str(e) if plain else f"{type(e).__name__}: {e}"
        raise UsageError(f"{sidecar}: not the configuration file --dump-layer writes ({why})") from None


def _other_config_note(stream: str, cfg: AcceleratorConfig) -> Optional[str]:
    """A warning when ``cfg`` is not the configuration the stream was mapped for: its fields differ (a
    name is only a label: two files may both say ``name = "odd1"``, and a renamed copy is the same)."""
    try:
        dumped = _dumped_config(stream)
    except UsageError:
        return None
    if dumped is None or same_fields(dumped[0], cfg):
        return None
    mapped, here = dumped[0].to_dict(), cfg.to_dict()
    differ = [f"{k} = {mapped[k]} ({here[k]} here)" for k in mapped if k not in ("name", "derived")
              and mapped[k] != here[k]]
    # the one-line description leaves fields out (vector lanes, the bus, depths): when it reads the
    # same for both, the fields that differ say why the cycles do
    same_text = describe_config(dumped[0]).split(":", 1)[1] == describe_config(cfg).split(":", 1)[1]
    mapped = describe_config(dumped[0])
    if dumped[0].name == cfg.name:      # one name for both: the hashes of their fields tell them apart
        mapped = (f"another configuration named {cfg.name} too ({fields_hash(dumped[0])}; this one is "
                  f"{fields_hash(cfg)}){mapped[len(cfg.name):]}")
    return (f"note: the stream was mapped for {mapped}"
            + (f", with {', '.join(differ)}" if same_text else "")
            + "; its tiling is timed here as it is, not re-mapped for this configuration")


def main(argv=None) -> int:
    ap = OneLineParser(prog="python -m sim.replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", help="the binary instruction stream (.bin) that sim.run --dump-layer wrote")
    ap.add_argument("--config", default=None,
                    help="preset or .toml accelerator file to replay on (default: the configuration in the "
                         ".json beside the stream)")
    ap.add_argument("--listing", action="store_true", help="print the disassembly")
    args = ap.parse_args(argv)
    try:
        data = read_input(args.stream, "instruction stream")
        _refuse_text(args.stream, data)
        cfg, source = _config(args)
        r = replay(data, cfg)
    except UsageError as e:
        return fail(ap.prog, e)
    except OSError as e:
        return fail(ap.prog, f"{args.stream}: {e.strerror}")
    except StreamError as e:
        return fail(ap.prog, f"{args.stream}: {_verdict(e)}{_rtl_refuses_first(data, e, cfg)}")
    except ValueError as e:
        return fail(ap.prog, f"{args.stream}: {e.args[0] if e.args else e}")
    print(f"configuration {describe_config(cfg)} ({source})")
    note = _other_config_note(args.stream, cfg) if args.config is not None else None
    if note:
        print(note)
    refused = _no_rtl(cfg) or _rtl_refusal(r["insns"], cfg)
    if refused:
        print(f"note: {refused}; the cycles below are the contract's")
    if args.listing:
        print(disassemble(r["insns"]))
    print(f"{counted(r['instructions'], 'instruction')}, {r['total_cycles']} cycles on {cfg.name} "
          f"({r['total_cycles'] / (cfg.clock_ghz * 1e3):.3f} us; a run's {RUN_OVERHEAD} cycles of decode start and END "
          f"included, which a layer's row in make sim's report leaves to the network's total)")
    for unit, b in r["busy"].items():
        print(f"  {unit:8s} busy {counted(b, 'cycle', width=10):17s} ({100 * b / max(1, r['total_cycles']):5.1f} %)")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())))
    return 0


def _rtl_refusal(insns, cfg: AcceleratorConfig, refused: Optional[StreamError] = None) -> Optional[str]:
    """What the RTL built for ``cfg`` raises at the first instruction it does not build, which its
    dispatcher meets before ``refused`` (the stream's first malformed word, or None), or None."""
    from hw.isa import ErrorCode
    from hw.rtl.insn import first_unsupported
    from hw.rtl.vector_executor import builds_vector_unit
    vector_unit = builds_vector_unit(cfg)
    i = first_unsupported(insns, refused, vector_unit)
    if i is None:
        return None
    why = "" if vector_unit else f" (its RTL has no vector executor: {cfg.vector_lanes} row lanes)"
    return (f"the RTL built for {cfg.name} refuses {insns[i].op.name} at instruction {i} with "
            f"{ErrorCode.UNSUPPORTED.name} ({int(ErrorCode.UNSUPPORTED)}){why}")


def _no_rtl(cfg: AcceleratorConfig) -> Optional[str]:
    """Why no RTL is built for ``cfg`` (``hw.rtl.export.unbuildable``, what ``make config`` says),
    or None: its replay is the contract's alone."""
    from hw.rtl.export import unbuildable
    why = unbuildable(cfg)
    return None if why is None else f"the RTL cannot build {cfg.name} ({why})"


def _rtl_refuses_first(data: bytes, refused: StreamError, cfg: AcceleratorConfig) -> str:
    """The end of a refusal's line when the RTL raises UNSUPPORTED before ``refused`` (its dispatcher
    asks it before RANGE and TOKEN: ``hw.rtl.insn.DISPATCH_ORDER``), or when there is no RTL of
    ``cfg`` to raise anything, else nothing."""
    no_rtl = _no_rtl(cfg)
    if no_rtl:
        return f" (the contract's verdict; {no_rtl})"
    refusal = _rtl_refusal(decode_until_end(data)[0], cfg, refused)
    return f"; {refusal} first" if refusal else ""


def _verdict(e: StreamError) -> str:
    """The RTL's verdict on a malformed stream: its error code, the instruction and the message."""
    where = f" at instruction {e.index} (byte {e.index * INSN_BYTES})" if e.index is not None else ""
    return f"{e.code.name} ({int(e.code)}){where}: {e.args[0] if e.args else e}"


if __name__ == "__main__":
    run_main(main)
