"""Replay an instruction stream written by ``make sim ... ARGS="--dump-layer NAME"``.

``python -m sim.replay build/sim/.../streams/Conv2DFuse.bin --config E`` decodes
the binary stream, schedules it under the timing contract and prints the total
cycles and each unit's busy cycles; ``--listing`` prints the disassembly.  A
malformed or truncated stream is refused with the byte offset of the problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hw.cli import OneLineParser
from hw.config import get_config
from hw.isa import Queue, decode_stream, disassemble
from hw.timing import occupancy_and_latency, schedule

__all__ = ["main", "replay"]


def replay(data: bytes, cfg) -> dict:
    """Decode and schedule ``data``; the totals per unit (raises StreamError)."""
    insns = decode_stream(data)
    sched = schedule(insns, cfg)
    busy = {q.name: 0 for q in (Queue.LOAD, Queue.COMPUTE, Queue.STORE)}
    counts: dict[str, int] = {}
    for insn in insns:
        counts[insn.op.name] = counts.get(insn.op.name, 0) + 1
        if insn.queue != Queue.DISPATCH:
            busy[insn.queue.name] += occupancy_and_latency(insn, cfg)[0]
    return {"instructions": len(insns), "total_cycles": sched.total_cycles, "busy": busy, "counts": counts,
            "insns": insns}


def main(argv=None) -> int:
    ap = OneLineParser(prog="python -m sim.replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", help="binary stream (.bin)")
    ap.add_argument("--config", default="E")
    ap.add_argument("--listing", action="store_true", help="print the disassembly")
    args = ap.parse_args(argv)
    try:
        cfg = get_config(args.config)
        data = Path(args.stream).read_bytes()
        r = replay(data, cfg)
    except OSError as e:
        print(f"python -m sim.replay: error: {args.stream}: {e.strerror}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as e:          # StreamError is a ValueError
        print(f"python -m sim.replay: error: {args.stream}: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    if args.listing:
        print(disassemble(r["insns"]))
    print(f"{r['instructions']} instructions, {r['total_cycles']} cycles on {cfg.name} "
          f"({r['total_cycles'] / (cfg.clock_ghz * 1e3):.3f} us)")
    for unit, b in r["busy"].items():
        print(f"  {unit:8s} busy {b:10d} cycles ({100 * b / max(1, r['total_cycles']):5.1f} %)")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
