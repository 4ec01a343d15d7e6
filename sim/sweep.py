"""Sweep a network over accelerator configurations: ``python -m sim.sweep --model M``.

``make sweep MODEL=segformer_b2 [VARIANT=...] [SIZE=HxW] [CFGS=A,B,...] [SCHEDULER=tcp://host:port]``
runs it.  This is the paper's Section IV-B / Figure 6 experiment: every point
is one configuration (the Table II presets ``A`` to ``M`` unless ``--configs``
lists others, presets or ``.toml`` accelerator files) simulated in timing mode (``sim.simulator.simulate``), and is
judged by two metrics, energy per MAC (lower is better) and throughput per
mm^2 of PE array (``sim.area.area_mm2``; higher is better).  A point is
Pareto-optimal when no other point is at least as good in both metrics and
strictly better in one.

Design-space grids.  ``--grid "num_pe=8,16,32 k0=16,32 weight_kib=64,128 input_kib=32,64"``
(``make sweep GRID=...``) sweeps every combination of the listed values of any configuration
fields (or their aliases, ``hw.config_file.ALIASES``: ``weight_kib``, ``input_kib``,
``global_buf_kib``, ``k0c0`` for K0 = C0), the other fields taken from ``--base`` (a preset or
a ``.toml`` file; ``E`` by default).  A point is named by its coordinates
(``num_pe=8,k0=16,weight_kib=64,input_kib=32``); a combination the configuration refuses
(say ``weight_buf_bytes`` not a multiple of K0 x C0) is listed under ``invalid`` and not
simulated.  The area model (``sim.area``) is fitted on Table II; every point records where
it lies outside that range (``area_extrapolated``, ``sim.area.extrapolation``), the table
marks it and the plot draws it hollow.

Execution.  Points run in parallel in a ``concurrent.futures.ProcessPoolExecutor``
(``--workers``, default ``os.cpu_count()``; ``--workers 1`` runs them one after
another in this process) or, with ``--scheduler tcp://host:port``, as tasks on
a Dask distributed cluster (``distributed.Client``).  Each task returns the
code version of the tree it ran on; a worker running different code is an
error (its results would be cached under the wrong key).  A progress line is
printed on stderr per finished point, and every 30 s in which none finished (none with ``--quiet``).
An interrupt (Ctrl-C, or SIGINT or SIGTERM sent to this process alone) stops the
pool's running points at once (SIGTERM to its workers) instead of waiting for them.

A sweep whose every point is cached computes nothing: it contacts no scheduler (an unreachable
one is not found out) and says so on stderr, even with ``--quiet``.

Cache.  Every finished point is stored at once as
``<cache>/<sha256>.json`` (default ``build/sweep/cache``), written to a
temporary name and renamed.  The key hashes the model name, its resolved
variant and input size, the configuration's ``to_dict()`` and the code
version, a hash of every ``.py`` file under ``hw/``, ``mapper/`` and ``sim/``
(relative path and bytes, sorted by path).  A re-run after an interruption
therefore recomputes only the missing points, and any source change
invalidates everything.  The cache is written by the process that drives the
sweep, never by the workers, so cluster workers need no shared file system.

Outputs, in ``--out`` (default ``build/sweep/<model>[_<variant>][_<H>x<W>][_cfgs-<A-E-G>]``;
the variant is left out for the full model, the size unless ``--size`` is
given, the configurations unless they are the default list): ``sweep.json``
(``model``, ``variant``, ``input``, ``points`` in the order of the
configuration list, ``pareto_front`` by increasing energy per MAC,
``k16_vs_k32``: the ratios of K0 = C0 = 16 to K0 = C0 = 32 over the presets
that differ only in vector width, ``matched_pairs``; for a grid also ``grid``, its base
and axes, and ``invalid``), ``sweep.csv`` (one row
per point) and ``sweep.<fmt>`` for each ``--format`` (``png`` by default; none
with ``--no-plots``).  The folder is written as a whole (``hw.cli.StagedDir``): a
staging folder beside it is created before any point is computed, and renamed
into place, replacing an earlier sweep of the same name, once all files exist.

A configuration on which some layer cannot be mapped (``mapper.lower.MappingError``,
e.g. a kernel whose taps do not fit half of a small weight buffer), or whose DRAM
(``dram_mib``) cannot hold the network's program (``mapper.program.DramCapacityError``;
not checked with ``--paper-comparable``, which times MAC layers only), is not a
point: it is listed under ``unmappable`` (``config``, ``error``) in
``sweep.json``, shown in the table, left out of the Pareto front, the ratios
and the plot, and cached like a point (the failure is as deterministic).

Bad input (unknown model, variant, configuration, a ``--base`` without ``--grid``, a bad size, worker count,
plot format or scheduler address, an unreachable scheduler, an output or cache
folder that cannot be written) prints one line on stderr and
exits with status 2 without writing anything; so does a cluster worker that
runs different code (nothing of its is cached).
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from hw.cli import (OneLineParser, OutputError, StagedDir, UsageError, aligned_table, ascii_float, ascii_int, atomic_write_bytes,
                    code_digest, column_texts, counted, duration, fail, read_input, run_main, try_folder)
from hw.config import PAPER_PRESETS, PRESETS, AcceleratorConfig
from hw.config_file import (FIELDS, NUMERIC_KEYS, ConfigError, hashed_label, in_units_of, load_config, resolve_fields,
                            same_fields)
from mapper.flops import MODEL_HELP, build_model_or_usage_error, known_model, model_parts, parse_size, refuse_flops_only
from mapper.ir import Model
from mapper.lower import MappingError, refuse_beyond_isa
from mapper.program import DramCapacityError
from mapper.workloads import build_model

from . import plots
from .area import area_mm2, extrapolation
from .config_args import add_grid_pointers
from .outputs import add_plot_options, config_tag, parse_formats, run_name
from .simulator import require_dram_fit, simulate

__all__ = ["main", "run_sweep", "compute_point", "pareto_flags", "matched_pairs", "vector_width_ratios",
           "code_version", "cache_key", "parse_grid", "Grid",
           "CSV_COLUMNS", "SweepError", "MAX_GRID_POINTS"]

DEFAULT_ROOT = Path("build") / "sweep"
DEFAULT_CACHE = DEFAULT_ROOT / "cache"
#: What a sweep leaves in its folder (an existing folder holding anything else is not replaced).
OWNED = ("sweep.json", "sweep.csv", "sweep.*")
SOURCE_DIRS = ("hw", "mapper", "sim")
CSV_COLUMNS = ("config", "k0", "c0", "num_pe", "energy_per_mac_pj", "energy_per_mac_onchip_pj",
               "macs_per_s_per_mm2", "time_ms", "energy_uj", "area_mm2", "utilization", "total_macs",
               "total_cycles", "pareto", "pareto_onchip", "area_extrapolated")
#: Largest grid a sweep accepts (a typo such as ``num_pe=1,2,...,64`` in every field is refused).
MAX_GRID_POINTS = 100_000
_SCHED_RE = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/:]+(:[0-9]+)?(/.*)?$")
_ROOT = Path(__file__).resolve().parent.parent
#: How long to keep trying to reach a Dask scheduler before giving up.
CONNECT_TIMEOUT = "15s"


class SweepError(Exception):
    """The sweep cannot be trusted (a worker runs different code); exit status 2."""


# ---- code version and cache -------------------------------------------------------------------------

def code_version(root: Path = _ROOT) -> str:
    """sha256 over the ``.py`` files under ``hw/``, ``mapper/``, ``sim/`` (``hw.cli.code_digest``)."""
    return code_digest(SOURCE_DIRS, root)


#: The mode of ``--paper-comparable``, as sweep.json, the cache key and the folder name say it.
PAPER_COMPARABLE = "paper-comparable"


def _key_fields(model_name: str, variant: str, size: tuple[int, int], cfg: AcceleratorConfig, version: str,
                paper_comparable: bool = False) -> dict:
    fields = {"model": model_name, "variant": variant, "size": [int(size[0]), int(size[1])],
              "config": cfg.to_dict(), "code_version": version}
    return {**fields, "mode": PAPER_COMPARABLE} if paper_comparable else fields


def cache_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load_cached(path: Path, fields: dict) -> Optional[dict]:
    """The cached ``{"point": dict | None, "error": str | None}`` at ``path``, or None if absent,
    unreadable or stored under other key fields (a folder or a named pipe of that name: never read)."""
    try:
        doc = json.loads(read_input(path, "cached point"))
    except (UsageError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != fields:
        return None
    point, error = doc.get("point"), doc.get("error")
    if not (isinstance(point, dict) and error is None or point is None and isinstance(error, str)):
        return None
    return {"point": point, "error": error}


def _store(path: Path, fields: dict, point: Optional[dict], error: Optional[str]) -> None:
    atomic_write_bytes(path, (json.dumps({"key": fields, "point": point, "error": error}, indent=1) + "\n").encode())


# ---- one point ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _model(name: str, variant: Optional[str], size: Optional[tuple[int, int]]):
    return build_model(name, variant=variant, size=size)


_WORKER_VERSION: Optional[str] = None


def _worker_version() -> str:
    """The code version of this worker's tree, hashed once per process (close to what it imported)."""
    global _WORKER_VERSION
    if _WORKER_VERSION is None:
        _WORKER_VERSION = code_version()
    return _WORKER_VERSION


def compute_point(model_name: str, variant: Optional[str], size: Optional[tuple[int, int]],
                  cfg: AcceleratorConfig, paper_comparable: bool = False) -> dict:
    """Simulate one configuration; the point's metrics (deterministic, JSON-ready, no ``pareto``).
    ``paper_comparable``: the MAC layers only, with memory no limit (``sim.run --ideal-memory --mac-only``)."""
    model = _model(model_name, variant, size)
    refuse_beyond_isa(model.layers, cfg)        # a huge input size: before the DRAM check allocates its layout
    require_dram_fit(model, cfg, mac_only=paper_comparable)
    res = simulate(model, cfg, mac_only=paper_comparable, ideal_memory=paper_comparable)
    area = area_mm2(cfg)
    return {
        "config": cfg.name, "k0": cfg.k0, "c0": cfg.c0, "num_pe": cfg.num_pe,
        "energy_per_mac_pj": res.energy_pj / res.total_macs,
        "energy_per_mac_onchip_pj": res.energy_onchip_pj / res.total_macs,
        "macs_per_s_per_mm2": res.total_macs / (res.time_ms * 1e-3) / area,
        "time_ms": res.time_ms, "energy_uj": res.energy_uj, "area_mm2": area,
        "utilization": res.utilization, "total_macs": res.total_macs, "total_cycles": res.total_cycles,
        "area_extrapolated": extrapolation(cfg),
    }


def _task(model_name: str, variant: Optional[str], size: Optional[tuple[int, int]], paper_comparable: bool,
          cfg: AcceleratorConfig) -> dict:
    """What a worker runs: the point, its wall time, the worker's code version, or the mapping error;
    any other exception is an internal error of that point (``internal``), which the other points
    outlive and the cache does not keep."""
    t0 = time.perf_counter()
    point, error, internal = None, None, False
    try:
        point = compute_point(model_name, variant, size, cfg, paper_comparable)
    except (MappingError, DramCapacityError) as e:
        error = " ".join(str(e).split())
    except Exception as e:          # noqa: BLE001 (a bug: reported with the others, not a dead sweep)
        error, internal = f"{type(e).__name__}: {' '.join(str(e).split())}", True
    return {"config": cfg.name, "point": point, "error": error, "internal": internal,
            "seconds": time.perf_counter() - t0, "code_version": _worker_version()}


# ---- Pareto front ---------------------------------------------------------------------------------

def _front_text(front: list[str]) -> str:
    """A front as the summary prints it; an empty one says why rather than ending the line blank."""
    return ", ".join(front) if front else "none (no configuration of the sweep maps the model)"


def pareto_flags(points: list[dict], x: str = "energy_per_mac_pj", y: str = "macs_per_s_per_mm2") -> list[bool]:
    """True for each point no other point dominates (lower-or-equal ``x`` and higher-or-equal ``y``,
    one of them strictly).  Identical points do not dominate each other."""
    flags = []
    for p in points:
        dominated = any(q[x] <= p[x] and q[y] >= p[y] and (q[x] < p[x] or q[y] > p[y]) for q in points)
        flags.append(not dominated)
    return flags


def matched_pairs(points: list[dict], configs: dict[str, AcceleratorConfig]) -> list[tuple[str, str]]:
    """(K0 = C0 = 16 point, K0 = C0 = 32 point) pairs of equal peak MACs per cycle, per-PE
    weight and input buffers and memory system: the pairs that differ only in vector width
    (Table II: J-G; H-E only with E's on-chip bus at H's 128 B/cycle, since E's is 256).

    Averaging each vector width over all its presets instead would mix in A and B (twice the
    MACs) and C (1 MiB weight buffers), and says nothing about the vector width.
    """
    def key(cfg: AcceleratorConfig) -> tuple:
        return (cfg.macs_per_cycle, cfg.weight_buf_bytes, cfg.input_buf_bytes, cfg.global_buf_bytes,
                cfg.gb_bus_bytes, cfg.dram_bytes_per_cycle, cfg.dram_latency)

    narrow = [p["config"] for p in points if p["k0"] == p["c0"] == 16]
    wide = {key(configs[p["config"]]): p["config"] for p in points if p["k0"] == p["c0"] == 32}
    return [(n, wide[key(configs[n])]) for n in narrow if key(configs[n]) in wide]


#: Metrics compared between vector widths: name -> the point's value (area per throughput is
#: mm^2 per MAC/s, the inverse of the sweep's throughput per area).
RATIO_METRICS: dict[str, Callable[[dict], float]] = {
    "energy_per_mac": lambda p: p["energy_per_mac_pj"],
    "energy_per_mac_onchip": lambda p: p["energy_per_mac_onchip_pj"],
    "area": lambda p: p["area_mm2"],
    "area_per_throughput": lambda p: 1.0 / p["macs_per_s_per_mm2"],
    "time": lambda p: p["time_ms"],
}


def vector_width_ratios(points: list[dict], configs: dict[str, AcceleratorConfig]) -> dict:
    """K0 = C0 = 16 against K0 = C0 = 32 over :func:`matched_pairs`: each metric's ratio per pair
    and their geometric mean (None for every metric when the sweep has no such pair)."""
    by_name = {p["config"]: p for p in points}
    pairs = matched_pairs(points, configs)
    out: dict = {"pairs": [list(pair) for pair in pairs]}
    for metric, value in RATIO_METRICS.items():
        ratios = [value(by_name[n]) / value(by_name[w]) for n, w in pairs]
        out[metric] = math.prod(ratios) ** (1 / len(ratios)) if ratios else None
        out[f"{metric}_per_pair"] = ratios
    return out


# ---- design-space grids ------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """A grid of configurations: ``axes`` (key as written -> values) over ``base``."""

    base: AcceleratorConfig
    axes: tuple[tuple[str, tuple], ...]
    configs: tuple[AcceleratorConfig, ...]
    invalid: tuple[tuple[str, str], ...]          # (point name, why the configuration refuses it)

    def to_dict(self) -> dict:
        return {"base": self.base.name, "axes": {k: list(v) for k, v in self.axes}}


def _grid_value(key: str, text: str):
    try:
        return ascii_int(text)
    except ValueError:
        pass
    try:
        return ascii_float(text)
    except ValueError:
        raise UsageError(f"bad --grid value {text!r} for {key}: expected a number in the digits 0-9") from None


def _grid_axes(text: str) -> list[tuple[str, tuple]]:
    axes: list[tuple[str, tuple]] = []
    for item in text.split():
        key, sep, values = item.partition("=")
        if not sep or not key or not values or "" in values.split(","):
            raise UsageError(f"bad --grid item {item!r}: expected FIELD=V1,V2,... (items separated by spaces)")
        if key not in NUMERIC_KEYS:
            what = "is no number to vary" if key in ("base", *FIELDS) else "is no configuration field"
            raise UsageError(f"bad --grid key {key!r}: it {what}; choose from {', '.join(NUMERIC_KEYS)} "
                             f"(the base configuration is CFG=, --base)")
        if key in dict(axes):
            raise UsageError(f"bad --grid: {key} is given twice")
        texts = [v.strip() for v in values.split(",")]
        parsed = tuple(_grid_value(key, v) for v in texts)
        twice = [t for t, v in zip(texts, parsed) if parsed.count(v) > 1]
        if twice:                   # a typo for another value, most likely: the sweep would have fewer points
            same = f"{key}={twice[0]} is given twice" if len(set(twice)) == 1 else \
                f"{' and '.join(f'{key}={t}' for t in twice)} are one value"
            raise UsageError(f"bad --grid item {item!r}: {same}; give each value once")
        for v in parsed:
            try:
                resolve_fields({key: v}, "--grid")
            except ConfigError as e:
                raise UsageError(str(e)) from None
        axes.append((key, parsed))
    if not axes:
        raise UsageError("bad --grid '': expected FIELD=V1,V2,... such as \"num_pe=8,16 k0=16,32\"")
    try:                    # two keys setting one field (a field and its alias): every point would clash
        resolve_fields({key: values[0] for key, values in axes}, "--grid")
    except ConfigError as e:
        raise UsageError(f"bad {e}") from None
    return axes


def parse_grid(text: str, base: AcceleratorConfig) -> Grid:
    """Every combination of the values of ``text`` (``"num_pe=8,16 weight_kib=64,128"``) over ``base``.

    Raises
    ------
    UsageError
        A malformed grid, an unknown field, a value of the wrong type, more than
        :data:`MAX_GRID_POINTS` points, or no valid point at all.
    """
    axes = _grid_axes(text)
    count = math.prod(len(v) for _, v in axes)
    if count > MAX_GRID_POINTS:
        raise UsageError(f"bad --grid: {count} points, more than {MAX_GRID_POINTS}")
    configs, invalid = [], []
    for values in itertools.product(*(v for _, v in axes)):
        point = dict(zip((k for k, _ in axes), values))
        name = ",".join(f"{k}={v}" for k, v in point.items())
        try:
            configs.append(base.replace(name=name, **resolve_fields(point, "--grid")))
        except (ConfigError, ValueError) as e:
            invalid.append((name, " ".join(in_units_of(e, point).split())))
    if not configs:
        raise UsageError(f"bad --grid: the configuration refuses every point, e.g. {invalid[0][0]}: {invalid[0][1]}")
    return Grid(base, tuple(axes), tuple(configs), tuple(invalid))


# ---- the sweep ------------------------------------------------------------------------------------

class _WorkerStopped(BaseException):
    """Raised in a pool worker by the parent's SIGTERM: unwinds the point (an atomic write in
    progress removes its temporary file) before the worker exits."""


#: In a pool worker: whether a point is being computed (a SIGTERM between points just exits), and
#: whether it is unwinding after a SIGTERM.
_in_point = False
_unwinding = False


def _stop_worker(signum, frame) -> None:
    global _unwinding
    if _in_point and _unwinding:
        return          # a second SIGTERM (the pool's, after ours): raised in the cleanup, it would skip it
    if _in_point:
        _unwinding = True
        raise _WorkerStopped
    os._exit(128 + signum)


def _pool_init(parent_pid: int) -> None:
    """Pool worker set-up: Ctrl-C is the parent's to handle, the parent's SIGTERM stops the point
    at once, and a worker whose parent died (even by SIGKILL) exits instead of waiting forever for tasks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pool_task(*args) -> dict:
    """``_task`` in a pool worker; a stopped worker exits here (the pool would catch the exception
    and go on to its next point)."""
    global _in_point
    try:
        try:
            _in_point = True
            return _task(*args)
        finally:
            _in_point = False
    except _WorkerStopped:      # raised in the point, or by a SIGTERM just after it (in the finally)
        os._exit(128 + signal.SIGTERM)


def _stop_points(pool: ProcessPoolExecutor, futures: list) -> None:
    """Drop the points not started and SIGTERM the workers running the others (ProcessPoolExecutor
    has no public way to stop a running task before Python 3.14)."""
    for fut in futures:
        fut.cancel()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _run_pool(tasks: list[AcceleratorConfig], workers: int, args: tuple) -> Iterable[dict]:
    if workers <= 1 or len(tasks) <= 1:
        for cfg in tasks:
            yield _task(*args, cfg)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_pool_init,
                               initargs=(os.getpid(),))
    futures = []
    try:
        futures = [pool.submit(_pool_task, *args, cfg) for cfg in tasks]
        for fut in as_completed(futures):
            yield fut.result()
    except BaseException:
        # An interrupt (or an error): the running points' results would be thrown away, so stop them
        # rather than wait for them; the finished ones are cached already.
        _stop_points(pool, futures)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_scheduler(address: str) -> None:
    """UsageError for an address no scheduler can have, before any progress line (a port of 99999
    was only found out by trying to connect)."""
    match = _SCHED_RE.match(address)
    if not match:
        raise UsageError(f"bad --scheduler {address!r}: expected an address such as tcp://host:port")
    port = match.group(2)
    if port is not None and not 1 <= int(port[1:]) <= 65535:
        raise UsageError(f"bad --scheduler {address!r}: port {port[1:]} is no TCP port (1 to 65535)")


def _run_dask(tasks: list[AcceleratorConfig], address: str, args: tuple) -> Iterable[dict]:
    import distributed

    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise UsageError(f"cannot connect to the Dask scheduler {address!r}: {e}") from None
    try:
        n = len(tasks)
        futures = client.map(_task, *([a] * n for a in args), tasks, pure=False)
        for fut in distributed.as_completed(futures):
            yield fut.result()
    finally:
        client.close()


def _take(r: dict, done: int, total: int, version: str, paths: dict, fields: dict, results: dict,
          log: Callable[[str], None]) -> None:
    """A finished point ``r`` (the ``done``-th of ``total``): checked, cached, kept in ``results``, logged."""
    name = r["config"]
    if r["code_version"] != version:
        raise SweepError(f"worker for configuration {name} runs different code "
                         f"(version {r['code_version'][:12]}, expected {version[:12]}); update the cluster")
    if not r["internal"]:
        _store(paths[name], fields[name], r["point"], r["error"])
    results[name] = {"point": r["point"], "error": r["error"], "internal": r["internal"]}
    p = r["point"]
    if r["internal"]:
        log(f"[{done}/{total}] {name:<4} {r['seconds']:6.1f} s  FAILED (internal error, not cached): {r['error']}")
    elif p is None:
        log(f"[{done}/{total}] {name:<4} {r['seconds']:6.1f} s  UNMAPPABLE: {r['error']}")
    else:
        log(f"[{done}/{total}] {name:<4} {r['seconds']:6.1f} s  {p['energy_per_mac_pj']:.4f} pJ/MAC  "
            f"{p['macs_per_s_per_mm2'] / 1e9:8.2f} GMAC/s/mm^2")


class _Heartbeat:
    """A line on ``log`` every ``period`` seconds in which no point finished (a point on a small
    configuration can take minutes): how many are done and how long since the last."""

    def __init__(self, log: Callable[[str], None], total: int, period: float = 30.0):
        self.log, self.total, self.period = log, total, period
        self.done, self.t0 = 0, time.monotonic()
        self.point_at = self.line_at = self.t0         # the last point finished, the last line
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def finished(self) -> int:
        """One more point finished; its number."""
        with self._lock:
            self.done += 1
            self.point_at = self.line_at = time.monotonic()
            return self.done

    def _run(self) -> None:
        while not self._stop.wait(self.period / 3):
            with self._lock:
                now = time.monotonic()
                if now - self.line_at >= self.period and not self._stop.is_set():
                    since = (f"{duration(now - self.point_at)} since a point finished" if self.done else
                             "none finished yet")
                    self.log(f"[{self.done}/{self.total}] {duration(now - self.t0)} elapsed, {since}; "
                             "points are running")
                    self.line_at = now

    def __enter__(self) -> "_Heartbeat":
        if self.total:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_sweep(model_name: str, variant: Optional[str], size: Optional[tuple[int, int]],
              configs: list[AcceleratorConfig], *, cache_dir: Path = DEFAULT_CACHE, workers: int = 0,
              scheduler: Optional[str] = None, log: Callable[[str], None] = print,
              paper_comparable: bool = False) -> dict:
    """Simulate ``configs``, using and filling the cache; the ``sweep.json`` document (plus run stats).
    ``paper_comparable``: time and energy of the MAC layers only, with memory no limit (the paper's mode).

    Raises ``SweepError`` if a worker runs different code.
    """
    model = _model(model_name, variant, size)
    resolved = (model.input[0], model.input[1])
    version = code_version()
    # model.name: an ONNX file's includes a hash of its content, so an edited file is another sweep
    fields = {cfg.name: _key_fields(model.name, model.variant, resolved, cfg, version, paper_comparable)
              for cfg in configs}
    paths = {name: cache_dir / f"{cache_key(f)}.json" for name, f in fields.items()}
    results: dict[str, dict] = {}          # name -> {"point", "error"}
    for cfg in configs:
        cached = _load_cached(paths[cfg.name], fields[cfg.name])
        if cached is not None:
            results[cfg.name] = cached
    todo = [cfg for cfg in configs if cfg.name not in results]
    n_cached = len(results)
    log(f"{model_name} ({model.variant}, {resolved[0]}x{resolved[1]}): {counted(len(configs), 'point')}, "
        f"{n_cached} cached, {len(todo)} to compute"
        + (f" on {scheduler}" if scheduler and todo else
           f" with {counted(max(1, min(workers or os.cpu_count() or 1, len(todo))), 'worker')}" if todo else ""))
    t0 = time.perf_counter()
    args = (model_name, variant, size, paper_comparable)
    stream = _run_dask(todo, scheduler, args) if scheduler and todo else _run_pool(todo, workers or os.cpu_count() or 1, args)
    with _Heartbeat(log, len(todo)) as beat:
        for r in stream:
            _take(r, beat.finished(), len(todo), version, paths, fields, results, log)
    doc = _document(model_name, model, configs, results, paper_comparable)
    doc["stats"] = {"points": len(configs), "cached": n_cached, "computed": len(todo),
                    "compute_wall_s": time.perf_counter() - t0}
    return doc


def _document(model_name: str, model, configs: list[AcceleratorConfig], results: dict[str, dict],
              paper_comparable: bool) -> dict:
    """``sweep.json``'s content but its run stats: the points in ``configs``' order with their Pareto
    flags, the fronts, the configurations that could not map the model or failed inside."""
    ordered = [dict(results[cfg.name]["point"]) for cfg in configs if results[cfg.name]["point"] is not None]
    unmappable = [{"config": cfg.name, "error": results[cfg.name]["error"]}
                  for cfg in configs if results[cfg.name]["point"] is None and not results[cfg.name].get("internal")]
    failed = [{"config": cfg.name, "error": results[cfg.name]["error"]}
              for cfg in configs if results[cfg.name].get("internal")]
    for p, flag in zip(ordered, pareto_flags(ordered)):
        p["pareto"] = flag
    for p, flag in zip(ordered, pareto_flags(ordered, x="energy_per_mac_onchip_pj")):
        p["pareto_onchip"] = flag
    front = sorted((p for p in ordered if p["pareto"]), key=lambda p: (p["energy_per_mac_pj"], -p["macs_per_s_per_mm2"]))
    front_onchip = sorted((p for p in ordered if p["pareto_onchip"]),
                          key=lambda p: (p["energy_per_mac_onchip_pj"], -p["macs_per_s_per_mm2"]))
    return {
        "model": model_name,
        "variant": model.variant,
        "input": list(model.input),
        "mode": PAPER_COMPARABLE if paper_comparable else "default",
        "points": ordered,
        "pareto_front": [p["config"] for p in front],
        "pareto_front_onchip": [p["config"] for p in front_onchip],
        "unmappable": unmappable,
        "failed": failed,
        "k16_vs_k32": vector_width_ratios(ordered, {cfg.name: cfg for cfg in configs}),
        # what each name stood for: two accelerator files of one name, or a grid over a file, are
        # otherwise told apart only by their folder's hash
        "configurations": {cfg.name: asdict(cfg) for cfg in configs},
    }


# ---- outputs ------------------------------------------------------------------------------------

def format_table(doc: dict) -> str:
    head = ("config", "K0=C0", "PEs", "area mm^2", "time ms", "energy uJ", "pJ/MAC", "GMAC/s/mm^2", "util %", "pareto")
    mark = lambda p: "~" if p.get("area_extrapolated") else ""
    times = column_texts([p["time_ms"] for p in doc["points"]], 3)
    energies = column_texts([p["energy_uj"] for p in doc["points"]], 1)
    rows = [(p["config"], f"{p['k0']}" if p["k0"] == p["c0"] else f"{p['k0']}/{p['c0']}", p["num_pe"],
             f"{mark(p)}{p['area_mm2']:.2f}", time_ms, energy_uj, f"{p['energy_per_mac_pj']:.4f}",
             f"{p['macs_per_s_per_mm2'] / 1e9:.2f}", f"{100 * p['utilization']:.1f}", "*" if p["pareto"] else "")
            for p, time_ms, energy_uj in zip(doc["points"], times, energies)]
    out = aligned_table(head, rows, "<>>>>>>>><")
    first = len(out[1].split()[0])          # the config column's width: its rule of dashes
    if doc.get("mode") == PAPER_COMPARABLE:
        out.insert(0, "paper-comparable mode: MAC layers only, memory no limit (as the paper reports)")
    for u in doc["unmappable"]:
        out.append(f"{u['config']:<{first}}  UNMAPPABLE: {u['error']}")
    for u in doc.get("failed", []):
        out.append(f"{u['config']:<{first}}  FAILED (internal error): {u['error']}")
    for u in doc.get("invalid", []):
        out.append(f"{u['config']:<{first}}  INVALID: {u['error']}")
    out.append("")
    extrapolated = [p for p in doc["points"] if p.get("area_extrapolated")]
    if extrapolated:
        out.append(f"~ area extrapolated beyond Table II, on which sim/area.py is fitted ({len(extrapolated)} of "
                   f"{counted(len(doc['points']), 'point')}; e.g. {extrapolated[0]['config']}: "
                   f"{'; '.join(extrapolated[0]['area_extrapolated'])}); its throughput per mm^2 is as uncertain")
    out.append("Pareto front (lower energy/MAC, higher throughput/mm^2): " + _front_text(doc["pareto_front"]))
    if "pareto_front_onchip" in doc:
        out.append("Pareto front with on-chip energy only (no DRAM; as a power analysis of the accelerator): "
                   + _front_text(doc["pareto_front_onchip"]))
    r = doc["k16_vs_k32"]
    if r["energy_per_mac"] is None:
        out.append("K0=C0=16 vs K0=C0=32: n/a (no K0=C0=16 preset with a K0=C0=32 twin of equal MACs "
                   "and buffers, such as H and E, J and G)")
    else:
        pairs = ", ".join(f"{n}/{w}" for n, w in r["pairs"])
        out.append(f"K0=C0=16 vs K0=C0=32 ({pairs}, geometric mean): energy/MAC {r['energy_per_mac']:.3f}x "
                   f"({r['energy_per_mac_onchip']:.3f}x on chip) (paper ~1.4x), area {r['area']:.3f}x and "
                   f"area per throughput {r['area_per_throughput']:.3f}x (paper ~2.8x per FLOP), "
                   f"time {r['time']:.3f}x (paper ~0.9x)")
    return "\n".join(out)


def _csv_bytes(doc: dict) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in doc["points"]:
        w.writerow([repr(p[c]) if isinstance(p[c], float) else "; ".join(p[c]) if isinstance(p[c], list) else p[c]
                    for c in CSV_COLUMNS])
    return buf.getvalue().encode()


def _figure(doc: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    groups = {}
    for p in doc["points"]:
        k = (p["k0"], p["c0"])
        groups.setdefault(k, []).append(p)
    colours = {(32, 32): "tab:blue", (16, 16): "tab:orange"}
    others = iter(["tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"] * 8)
    for k, pts in sorted(groups.items(), reverse=True):
        label = f"K0=C0={k[0]}" if k[0] == k[1] else f"K0={k[0]}, C0={k[1]}"
        colour = colours.get(k) or next(others)        # green is the Pareto front's
        for hollow in (False, True):
            sel = [p for p in pts if bool(p.get("area_extrapolated")) == hollow]
            if sel:
                ax.scatter([p["energy_per_mac_pj"] for p in sel], [p["macs_per_s_per_mm2"] / 1e9 for p in sel],
                           facecolors="none" if hollow else colour, edgecolors=colour, zorder=3,
                           label=label + (" (area extrapolated)" if hollow else ""))
    named = doc["points"] if len(doc["points"]) <= 16 else [p for p in doc["points"] if p["pareto"]]
    for p in named:
        ax.annotate(p["config"], (p["energy_per_mac_pj"], p["macs_per_s_per_mm2"] / 1e9),
                    textcoords="offset points", xytext=(4, 3), fontsize=7 if len(p["config"]) < 8 else 5)
    by_name = {p["config"]: p for p in doc["points"]}
    front = [by_name[n] for n in doc["pareto_front"]]
    ax.plot([p["energy_per_mac_pj"] for p in front], [p["macs_per_s_per_mm2"] / 1e9 for p in front],
            color="tab:green", lw=1.5, ls="--", marker="", label="Pareto front", zorder=2)
    name = doc["model"] + ("" if doc["variant"] in ("", "full", None) else f" ({doc['variant']})")
    ax.set_title(f"{name}, {doc['input'][0]}x{doc['input'][1]}: energy per MAC vs throughput per area")
    ax.set_xlabel("energy per MAC (pJ)  [lower is better]")
    ax.set_ylabel("throughput per area (GMAC/s/mm$^2$)  [higher is better]")
    if doc["unmappable"]:
        ax.text(0.01, 0.01, "not mappable (left out): " + ", ".join(u["config"] for u in doc["unmappable"]),
                transform=ax.transAxes, fontsize=7, color="tab:red", va="bottom")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def out_dir_name(model: Model, size_given: bool, configs: list[AcceleratorConfig], grid: Optional[Grid] = None,
                 paper_comparable: bool = False) -> str:
    """``<model>[_<variant>][_<H>x<W>][_cfgs-<names>][_paper-comparable]``: the configurations are
    named unless they are the default list (``PAPER_PRESETS``); each that is not a preset as such by
    ``config_tag``.  A grid is ``grid-<base>-<hash of its axes>``."""
    mode = (PAPER_COMPARABLE,) if paper_comparable else ()
    if grid is not None:
        axes = json.dumps(grid.to_dict()["axes"], sort_keys=True)
        return run_name(*model_parts(model, size_given),
                        f"grid-{config_tag(grid.base)}-{hashlib.sha256(axes.encode()).hexdigest()[:8]}", *mode)
    names = [config_tag(c) for c in configs]
    subset = "" if names == list(PAPER_PRESETS) else "cfgs-" + "-".join(names)
    return run_name(*model_parts(model, size_given), subset, *mode)


def write_outputs(doc: dict, folder: Path, formats: tuple[str, ...] = ("png",)) -> list[str]:
    """Write ``sweep.json``, ``sweep.csv`` and ``sweep.<fmt>`` for each plot format into ``folder``."""
    public = {k: v for k, v in doc.items() if k != "stats"}
    (folder / "sweep.json").write_text(json.dumps(public, indent=1) + "\n")
    (folder / "sweep.csv").write_bytes(_csv_bytes(doc))
    files = ["sweep.json", "sweep.csv"]
    if formats:
        with plots.style():
            files += [f.name for f in plots.save(_figure(doc), folder, "sweep", formats)]
    return files


# ---- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sim.sweep",
                description="Simulate a network on many accelerator configurations; Pareto front of "
                            "energy per MAC vs throughput per mm^2.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--configs", default=None, help=f"comma-separated presets or .toml accelerator files "
                                                   f"(default: {','.join(PAPER_PRESETS)})")
    p.add_argument("--grid", default=None, metavar="'FIELD=V1,V2 ...'",
                   help="every combination of these field values (aliases: weight_kib, input_kib, global_buf_kib, "
                        "k0c0), over --base")
    p.add_argument("--base", default=None, help="the configuration a --grid varies: a preset or a .toml file (default E)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address tcp://host:port (default: local processes); contacted only when a "
                        "point is not cached: a sweep whose every point is cached says so on stderr and connects "
                        "to nothing")
    p.add_argument("--workers", default=None, help="local worker processes (default: os.cpu_count(); 1 = in-process)")
    p.add_argument("--out", default=None, help=f"output folder (default {DEFAULT_ROOT}/<name of the sweep>)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"cache directory (default {DEFAULT_CACHE})")
    add_plot_options(p, "the plot")
    p.add_argument("--quiet", action="store_true", help="no progress line per point")
    p.add_argument("--paper-comparable", action="store_true",
                   help="time and energy of the MAC layers only, with unlimited DRAM and bus bandwidth, as the paper reports "
                        "them (sim.run --ideal-memory --mac-only); its own cache entries and output folder")
    add_grid_pointers(p)
    return p


def _parse_configs(text: Optional[str]) -> list[AcceleratorConfig]:
    if text is None:
        return [PRESETS[n] for n in PAPER_PRESETS]
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise UsageError(f"bad --configs {text!r}: expected a comma-separated list of presets or .toml "
                         f"accelerator files; the presets: {', '.join(PRESETS)}")
    configs: list[AcceleratorConfig] = []
    given: list[str] = []
    for n in names:
        try:
            cfg = load_config(n)
        except ConfigError as e:
            if n.endswith(".toml"):
                raise UsageError(str(e)) from None
            raise UsageError(f"unknown configuration {n!r} in --configs; choose from {', '.join(PRESETS)}, or a "
                             f".toml accelerator file") from None
        twin = next((i for i, c in enumerate(configs) if same_fields(c, cfg)), None)
        if twin is not None:        # a typo for another configuration, most likely (as a grid's value twice)
            raise UsageError(f"bad --configs {text!r}: {given[twin]} and {n} are one configuration ({cfg.name}); "
                             f"give each configuration once")
        configs.append(cfg)
        given.append(n)
    return _named_apart(configs, given)


def _named_apart(configs: list[AcceleratorConfig], given: list[str]) -> list[AcceleratorConfig]:
    """``configs`` with every name once (the sweep's points are keyed by it): a configuration that
    shares its name with another (an edited copy of a preset keeps ``name = "E"``; two files both
    say ``mine``) and is not that preset takes its file's stem, or its name and a hash of its fields
    when the stem is taken or a preset's name (``A.toml`` holding an edited E is not preset A)."""
    out = list(configs)
    presets = {p.lower() for p in PRESETS}
    for i, (cfg, n) in enumerate(zip(configs, given)):
        if PRESETS.get(cfg.name) == cfg or not any(c.name == cfg.name for j, c in enumerate(out) if j != i):
            continue
        taken = {c.name.lower() for c in out} | presets
        stem = Path(n).stem if n.endswith(".toml") else ""
        out[i] = cfg.replace(name=stem if stem and stem.lower() not in taken else hashed_label(cfg))
    return out


def _interruptible(fn: Callable[[], dict]) -> dict:
    """``fn()`` with SIGTERM turned into KeyboardInterrupt (in the main thread), so that a kill
    shuts the worker pool down like Ctrl-C does; a handler already there (``run_main``'s, which also
    raises an interrupt again when it is lost) is kept."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return fn()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        return fn()
    finally:
        signal.signal(signal.SIGTERM, old)


def _progress(line: str) -> None:
    """A progress line, on stderr as every tool's (stdout carries the results)."""
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        known_model(args.model)
        size = parse_size(args.size) if args.size is not None else None
        grid = _parse_grid_args(args)
        configs = list(grid.configs) if grid else _parse_configs(args.configs)
        workers = _workers(args.workers)
        if args.scheduler is not None:
            _check_scheduler(args.scheduler)
        model = build_model_or_usage_error(args.model, args.variant, size, build=_model)
        refuse_flops_only(model, args.model)
        formats = parse_formats(args.format, args.no_plots)
        _check_cache(Path(args.cache))
        name = out_dir_name(model, size is not None, configs, grid, args.paper_comparable)
        stage = StagedDir(Path(args.out) if args.out else DEFAULT_ROOT / name, OWNED, run=name)
    except UsageError as e:
        return fail(parser.prog, e)
    with stage:
        try:
            doc = _interruptible(lambda: run_sweep(args.model, args.variant or None, size, configs,
                                                   cache_dir=Path(args.cache), workers=workers,
                                                   scheduler=args.scheduler, paper_comparable=args.paper_comparable,
                                                   log=(lambda line: None) if args.quiet else _progress))
            if grid is not None:
                doc["grid"] = grid.to_dict()
                doc["invalid"] = [{"config": n, "error": e} for n, e in grid.invalid]
        except (UsageError, SweepError) as e:
            return fail(parser.prog, e)
        except KeyboardInterrupt:
            print(f"{parser.prog}: interrupted; the finished points are cached, run again to resume", file=sys.stderr)
            return 130
        files = write_outputs(doc, stage.path, formats)
        out = stage.commit()
    return _summary(parser.prog, args, doc, files, out, time.perf_counter() - t0)


def _workers(text: Optional[str]) -> int:
    """``--workers``: a positive whole number (0, the default, is one per CPU)."""
    if text is None:
        return 0
    if not re.fullmatch(r"\s*\d+\s*", text, re.ASCII) or int(text) <= 0:
        raise UsageError(f"bad --workers {text!r}: expected a positive integer")
    return int(text)


def _summary(prog: str, args, doc: dict, files: list[str], out: Path, wall: float) -> int:
    """The sweep's table and totals on stdout; status 1 if a point failed with an internal error."""
    if args.scheduler is not None and not doc["stats"]["computed"]:
        print(f"{prog}: note: every point was cached, so nothing was computed and the scheduler "
              f"{args.scheduler} was not contacted", file=sys.stderr)
    print()
    print(format_table(doc))
    s = doc["stats"]
    print(f"{counted(s['points'], 'point')}: {s['computed']} computed, {s['cached']} cached; wall time {wall:.1f} s")
    print(f"wrote {', '.join(files)} to {out}")
    if doc["failed"]:
        print(f"{prog}: {counted(len(doc['failed']), 'point')} failed with an internal error (a bug; please report "
              f"it with the configuration): {', '.join(u['config'] for u in doc['failed'])}", file=sys.stderr)
        return 1
    return 0


def _parse_grid_args(args) -> Optional[Grid]:
    """The grid of ``--grid`` over ``--base`` (None without ``--grid``); UsageError for bad input."""
    if args.grid is None:
        if args.base is not None:
            raise UsageError(f"--base {args.base} (make sweep: CFG=) is the configuration a grid varies; without "
                             f"--grid (GRID=) a sweep runs the presets, or those of --configs (CFGS=)")
        return None
    if args.configs is not None:
        raise UsageError("--grid and --configs exclude each other: a grid sweeps its own configurations")
    try:
        base = load_config(args.base or "E")
    except ConfigError as e:
        raise UsageError(f"bad --base (make sweep: CFG=): {e}") from None
    return parse_grid(args.grid, base)


def _check_cache(cache: Path) -> None:
    """OutputError unless the cache folder can be created and written, before any point is computed
    (``hw.cli.try_folder``: nothing is left)."""
    try_folder(cache, f"the cache folder {cache}")


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: tasks sent to Dask workers (and to
    # spawned processes) are pickled by reference, and ``__main__._task`` does not exist over there.
    from sim.sweep import main as _main

    run_main(_main)
