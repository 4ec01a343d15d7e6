"""A differential fuzz campaign: many seeds of ``cosim.fuzz`` on one configuration's RTL.

``make fuzz CFG=tiny SEEDS=100-110 [CASES=1200]`` (``python tests/cosim/campaign.py --config tiny
--seeds 100-110``; CFG may be an accelerator file whose RTL builds, ``CFG=my.toml``) runs, for each
seed, ``CASES`` fuzz cases (random layers' streams, legal and malformed: ``cosim/fuzz.py``) on the
configuration's Verilator build (cached, as the tests build it) and checks each outcome against the
simulator's: done in the schedule's cycle with the functional model's DRAM image, or the same error
code at the same instruction, never a hang.
``make test`` runs one seed of a case per mutation; a campaign is how new seeds are searched.

A line per seed on stderr (its tally and time); at the end ``campaign.json`` in
``build/fuzz/<config>_seeds<spec>_cases<n>/`` (or ``--out``): the per-seed tallies and every
disagreement (seed, index, case, what the case does, the expected outcome and the RTL's, and why
they disagree: the cycle, the error and its instruction, or the DRAM's first differing byte), each
replayable alone with ``make fuzz CFG=<config> CASE=<seed>:<index>:<mutation>`` (``--case``,
repeatable).
Exit status 0 when every case agreed, 1 when one did not (or a run failed), 2 on bad input (one line, nothing
written).  Schema::

    {"config", "cases_per_seed", "seeds": [{"seed", "cases", "outcomes", "disagreements", "wall_s"}],
     "replayed": [{"seed", "index", "mutation"}], "disagreements": [{"seed", "index", "case", "description",
     "expected", "expected_index", "rtl_error", "rtl_pc", "rtl_cycles", "why", "replay"}],
     "failed_runs": [{"seed", "error"}], "wall_s"}

A run that fails other than by a disagreeing case (a crash, a timeout: no tally) is listed under
``failed_runs`` and the campaign goes on to the next seed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ for `cosim`

from hw.cli import OneLineParser, StagedDir, UsageError, ascii_int, counted, fail, join_name, number_type, run_main  # noqa: E402
from hw.config import PRESETS  # noqa: E402

#: The configurations the cosimulation tests build (E has no vector executor: ``make cosim-e``).
CONFIGS = ("tiny", "small", "e_small")
MAX_SEEDS, MAX_CASES = 1000, 100_000
SEED_LIMIT = 1 << 31
OWNED = ("campaign.json",)


def parse_seeds(text: str) -> list[int]:
    """``100-110``, ``1,5,7`` or both (``1,100-103``): the seeds, each once, in increasing order."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = ascii_int(lo), ascii_int(hi) if sep else ascii_int(lo)     # int() reads '٣' as 3
        except ValueError:
            raise UsageError(f"bad SEEDS {text!r}: expected seeds and ranges such as 100-110 or 1,5,7") from None
        if not 0 <= a <= b < SEED_LIMIT:
            raise UsageError(f"bad SEEDS {text!r}: {part.strip()!r} is not a range of seeds 0 .. {SEED_LIMIT - 1}, "
                             f"low to high")
        seeds.extend(s for s in range(a, min(b, a + MAX_SEEDS) + 1) if s not in seeds)
        if len(seeds) > MAX_SEEDS:
            raise UsageError(f"bad SEEDS {text!r}: {len(seeds)}+ seeds, at most {MAX_SEEDS} in one campaign")
    return sorted(seeds)


def parse_case(text: str) -> dict:
    """``SEED:INDEX[:MUTATION]`` of a case to replay (the mutation, as campaign.json names it, keeps
    the case the same when mutations are added to ``cosim.fuzz.MUTATIONS``)."""
    from cosim.fuzz import MUTATIONS

    seed, _, rest = text.partition(":")
    index, _, mutation = rest.partition(":")
    try:
        case = {"seed": ascii_int(seed), "index": ascii_int(index), "mutation": mutation or None}
    except ValueError:
        case = None
    if case is None or not 0 <= case["seed"] < SEED_LIMIT or case["index"] < 0:
        raise UsageError(f"bad CASE {text!r}: expected SEED:INDEX[:MUTATION] (such as 104:889:bit_flip), "
                         f"as campaign.json names them")
    if mutation and mutation not in MUTATIONS:
        raise UsageError(f"bad CASE {text!r}: unknown mutation {mutation!r}; one of {', '.join(MUTATIONS)}")
    return case


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python tests/cosim/campaign.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny", help=f"one of {', '.join(CONFIGS)} (default tiny), or an accelerator "
                                                    f"file (.toml) whose RTL builds with a vector executor")
    p.add_argument("--seeds", default=None, help="seeds to run: 100-110, 1,5,7 or both, each with --cases cases "
                                                    "(give --seeds, --case or both)")
    p.add_argument("--cases", type=number_type(int, "cases per seed"), default=1200,
                   help=f"cases per seed, 1 to {MAX_CASES} (default 1200)")
    p.add_argument("--case", action="append", default=[], metavar="SEED:INDEX[:MUTATION]",
                   help="replay one case as campaign.json names it (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default build/fuzz/<name of the campaign>)")
    return p


def _check_config(spec: str) -> str:
    """The campaign's configuration: a test configuration, or an accelerator file whose RTL builds with
    a vector executor (what the fuzz cases run); its name in folders (``sim.outputs.config_tag``)."""
    from hw.config_file import ConfigError, is_config_file, load_config
    if spec in CONFIGS:
        return spec
    if not is_config_file(spec):
        also = " (E's RTL has no vector executor and a long build: make cosim-e)" if spec in PRESETS else ""
        raise UsageError(f"bad CFG {spec!r}: a fuzz campaign runs on {', '.join(CONFIGS)} or an accelerator file "
                         f"(.toml){also}")
    from hw.rtl.export import check_buildable
    from hw.rtl.vector_executor import builds_vector_unit
    from sim.outputs import config_tag
    try:
        cfg = load_config(spec)
        check_buildable(cfg)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(f"bad CFG {spec!r}: the RTL cannot build it: {e}") from None
    if not builds_vector_unit(cfg):
        raise UsageError(f"bad CFG {spec!r}: its RTL has no vector executor ({cfg.vector_lanes} row lanes), which "
                         f"the fuzz cases run; fewer vector lanes (num_pe x vector_lanes_per_pe) build one")
    return config_tag(cfg)


def _check(args) -> tuple[list[int], list[dict]]:
    if not 1 <= args.cases <= MAX_CASES:
        raise UsageError(f"bad CASES {args.cases}: 1 to {MAX_CASES} cases per seed")
    if args.seeds is None and not args.case:
        raise UsageError("nothing to run: give SEEDS=100-110 (--seeds) or CASE=seed:index (--case)")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else []
    return seeds, [parse_case(c) for c in args.case]


def _ranges(seeds: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3,7``."""
    out, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            out.append(f"{start}-{s}" if s > start else f"{s}")
            start = None
    return ",".join(out)


def _name(config: str, seeds: list[int], count: int, cases: list[dict]) -> str:
    """``<config>[_seeds<ranges>_cases<n>][_replay<seed>-<index>...]``: named by what runs."""
    seeds_part = f"seeds{_ranges(seeds).replace(',', '+')}_cases{count}" if seeds else ""
    replay = "replay" + "+".join(f"{c['seed']}-{c['index']}" for c in cases) if cases else ""
    return join_name([config, seeds_part, replay])


def _disagreements(config: str, records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        if r["kind"] == "fuzz_case" and not r["passed"]:
            mutation = r["case"].rsplit("_", 1)[0]          # cosim.fuzz names a case <mutation>_<index>
            out.append({"seed": r["seed"], "index": r["index"], "case": r["case"], "description": r["description"],
                        "expected": r["expected"], "expected_index": r["expected_index"],
                        "rtl_error": r["error_code"], "rtl_pc": r["pc"], "rtl_cycles": r["rtl_cycles"],
                        "why": r.get("why"),        # None in a record of before the testbench gave it
                        "replay": f"make fuzz CFG={config} CASE={r['seed']}:{r['index']}:{mutation}"})
    return out


def _run_one(config: str, seed: int, count: int, cases: list[dict]) -> tuple[list[dict], float, str]:
    """The records of one seed's run (or of ``cases`` replayed), its wall time, and why it failed
    other than by disagreeing cases ("" if it did not: a crash or a timeout leaves no tally)."""
    from cosim.runner import CosimFailure
    from cosim.test_cosim_accelerator import run_accelerator, run_records

    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):        # the build's and run's log lines
            _, records = run_accelerator(config, seed=seed, fuzz=count, fuzz_cases=cases, announce=False)
    except CosimFailure as e:                                # a disagreeing case fails the cocotb test
        records = run_records(e.run_dir) if e.run_dir is not None else []
        if not any(r["kind"] == "fuzz" for r in records):
            return records, time.perf_counter() - t0, str(e).splitlines()[0]
    return records, time.perf_counter() - t0, ""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config_name = _check_config(args.config)
        seeds, replays = _check(args)
        name = _name(config_name, seeds, args.cases, replays)
        stage = StagedDir(Path(args.out) if args.out else Path("build/fuzz") / name, OWNED, run=name)
    except UsageError as e:
        return fail(parser.prog, e)
    t0 = time.perf_counter()
    doc = {"config": args.config, "cases_per_seed": args.cases if seeds else 0, "seeds": [],
           "replayed": replays, "disagreements": [], "failed_runs": []}
    with stage:
        runs = [(s, args.cases, []) for s in seeds] + ([(replays[0]["seed"], 0, replays)] if replays else [])
        for i, (seed, count, cases) in enumerate(runs, 1):
            records, wall, broke = _run_one(args.config, seed, count, cases)
            if broke:
                doc["failed_runs"].append({"seed": seed, "error": broke})
                print(f"[{i}/{len(runs)}] seed {seed}: the run failed: {broke}", file=sys.stderr, flush=True)
                continue
            summary = next(r for r in records if r["kind"] == "fuzz")
            found = _disagreements(args.config, records)
            doc["disagreements"] += found
            if count:
                doc["seeds"].append({"seed": seed, "cases": summary["cases"], "outcomes": summary["outcomes"],
                                     "disagreements": len(found), "wall_s": round(wall, 1)})
            what = f"seed {seed}" if count else counted(len(cases), "replayed case")
            print(f"[{i}/{len(runs)}] {what}: {counted(summary['cases'], 'case')}, {counted(len(found), 'disagreement')}, "
                  f"{wall:.0f} s, {time.perf_counter() - t0:.0f} s in all", file=sys.stderr, flush=True)
        doc["wall_s"] = round(time.perf_counter() - t0, 1)
        (stage.path / "campaign.json").write_text(json.dumps(doc, indent=1) + "\n")
        out = stage.commit()
    total = sum(s["cases"] for s in doc["seeds"]) + len(replays)
    print(f"{args.config}: {counted(total, 'case')}, {counted(len(doc['disagreements']), 'disagreement')}; wrote campaign.json to {out}")
    for d in doc["disagreements"][:10]:
        why = d["why"] or (f"expected {d['expected']}, RTL {d['rtl_error'] or 'done'} at instruction "
                           f"{d['rtl_pc']}")
        print(f"  {d['case']} seed {d['seed']} ({d['description']}): {why}; {d['replay']}")
    for f in doc["failed_runs"]:
        print(f"  seed {f['seed']}: the run failed: {f['error']}")
    return 1 if doc["disagreements"] or doc["failed_runs"] else 0


if __name__ == "__main__":
    run_main(main)
