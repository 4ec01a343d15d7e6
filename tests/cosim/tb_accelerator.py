"""cocotb testbench of the exported Accelerator inside ``accel_tb_top.v``.

Python does not pace the simulation: ``accel_tb_top`` holds the instruction memory and
the DRAM as Verilog arrays and serves the accelerator's ports itself; the clock is
cocotb's C-level (GPI) clock.  Per run, Python only writes the memory images, pulses
``tb_load`` and ``start``, and waits (with a cycle limit) for ``finished`` (``done | error``),
then for ``dumped``, the cycle after, when the wrapper has written the DRAM back with ``$writememh``.

Roles
    driver   :class:`Driver` writes ``accel_imem.hex`` / ``accel_dram.hex``, resets, loads, starts;
    monitor  :class:`Monitor` waits for the end and reads the status ports and ``accel_dram_out.hex``;
    model    :func:`cosim.accel_cases.expected_run` (sim.functional, sim.golden, hw.timing.schedule);
    checker  :class:`Checker` compares and collects diagnosable errors; every test ends by
             asserting that there are none.

Parameters (:func:`cosim.runner.load_params`): ``config`` (preset name, cross-checked with
the port widths read back from the DUT), ``seed`` (base seed, printed), ``layers`` (JSON
layer specs with a per-case ``seed``, one cocotb test each), ``networks`` (a list of
``{"model", "size", "seed"}``: every MAC layer of the model in sequence), ``bad`` (names of
:data:`cosim.accel_cases.BAD_STREAMS`), ``fuzz`` (``{"seed", "count", "cases"}``: the
differential fuzz run of :mod:`cosim.fuzz`, ``count`` cases of ``seed`` then the named
``cases``, each ``{"seed", "index", "mutation"}``: regressions found by earlier runs),
``vec_passes`` (specs of :mod:`cosim.vec_cases`: one VEC pass each).
Each run appends one JSON line to
``accel_results.jsonl`` in the run directory (cycles, wall time of the simulation).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from cosim.accel_cases import (BAD_STREAMS, Expected, bad_dram, bad_stream, bad_stream_code, bad_stream_positioned,
                               describe, expected_run, layer_from_spec, stream_words)
from cosim.program_cases import ExpectedProgram, expected_program, load_built, program_name, unsupported_steps
from cosim.runner import load_params
from cosim.vec_cases import ExpectedVec, expected_vec

#: Clock period in ns (cocotb's GPI clock under Verilator).
PERIOD_NS = 1
#: Slack of the cycle limit: cycles beyond the scheduled count before a run is declared hung.
CYCLE_MARGIN = 64
IMEM_FILE, DRAM_FILE, DRAM_OUT_FILE = "accel_imem.hex", "accel_dram.hex", "accel_dram_out.hex"
RESULTS_FILE = "accel_results.jsonl"

PARAMS = load_params()
# One simulator process per run directory: start its record afresh (a rerun with the same
# parameters reuses the directory).
Path(RESULTS_FILE).unlink(missing_ok=True)
LAYER_CASES = [spec["name"] for spec in PARAMS.get("layers", [])]
NETWORKS = [f"{n['model']}_{n['size']}" for n in PARAMS.get("networks", [])]
PROGRAMS = [program_name(p) for p in PARAMS.get("programs", [])]
BAD = list(PARAMS.get("bad", []))
FUZZ = [f"seed{PARAMS['fuzz']['seed']}"] if PARAMS.get("fuzz") else []
VEC_PASSES = [spec["name"] for spec in PARAMS.get("vec_passes", [])]


# ---- geometry read back from the DUT --------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    gather_lanes: int    # G = gb_bus_bytes
    scatter_lanes: int   # num_pe * K0
    vec_gather_lanes: int    # the vector executor's (hw.rtl.vector_executor.vector_ports)
    vec_scatter_lanes: int


def _vec_lanes(accel, prefix: str) -> int:
    """Lanes of the vector executor's port ``prefix`` (0 when the accelerator has none), its
    addresses and data checked against its enables."""
    if not hasattr(accel, f"{prefix}__en"):
        return 0
    n = len(getattr(accel, f"{prefix}__en"))
    for field, bits in (("addr", 32), ("data", 8)):
        if len(getattr(accel, f"{prefix}__{field}")) != n * bits:
            raise AssertionError(f"u_accel.{prefix}__{field} is {len(getattr(accel, f'{prefix}__{field}'))} bits, "
                                 f"expected {n} lanes x {bits}")
    return n


def read_geometry(dut, config_name: str | None, log):
    """Lane counts from the accelerator instance's port widths, checked against the configuration
    (a preset or an accelerator file)."""
    accel = dut.u_accel
    geometry = Geometry(gather_lanes=len(accel.dram_rd__en), scatter_lanes=len(accel.dram_wr__en),
                        vec_gather_lanes=_vec_lanes(accel, "vec_rd"), vec_scatter_lanes=_vec_lanes(accel, "vec_wr"))
    for port, lanes, bits in (("dram_rd__addr", geometry.gather_lanes, 32),
                              ("dram_rd__data", geometry.gather_lanes, 8),
                              ("dram_wr__addr", geometry.scatter_lanes, 32),
                              ("dram_wr__data", geometry.scatter_lanes, 8)):
        if len(getattr(accel, port)) != lanes * bits:
            raise AssertionError(f"u_accel.{port} is {len(getattr(accel, port))} bits, "
                                 f"expected {lanes} lanes x {bits}")
    cfg = None
    if config_name:
        from hw.config_file import load_config
        from hw.rtl.pe_tile import load_geometry
        from hw.rtl.vector_executor import vector_ports
        cfg = load_config(config_name)          # a preset's name or an accelerator file
        want = Geometry(load_geometry(cfg)[0], cfg.num_pe * cfg.k0, *vector_ports(cfg))
        if geometry != want:
            raise AssertionError(f"DUT lanes {geometry} differ from configuration {config_name!r}: {want}")
        log.info("DUT lanes match config %r: %s", config_name, geometry)
    return geometry, cfg


# ---- driver -------------------------------------------------------------------------------

def write_hex_bytes(path: Path, data: np.ndarray) -> None:
    """One byte per line, as ``$readmemh`` reads into ``reg [7:0] dram[]``."""
    digits = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes().hex().encode(), dtype=np.uint8)
    lines = np.concatenate([digits.reshape(-1, 2), np.full((digits.size // 2, 1), ord("\n"), np.uint8)],
                           axis=1)
    path.write_bytes(lines.tobytes())


def read_hex_bytes(path: Path) -> np.ndarray:
    """What ``$writememh`` wrote (comments and ``@address`` lines are skipped)."""
    tokens = [t for t in path.read_text().split() if not t.startswith(("//", "@"))]
    return np.frombuffer(bytes.fromhex("".join(t.rjust(2, "0") for t in tokens)), dtype=np.uint8)


class Driver:
    """Loads the images into the wrapper's memories and starts the accelerator."""

    def __init__(self, dut):
        self.dut = dut

    async def load_and_start(self, words: list[int], dram: np.ndarray) -> None:
        imem_words, dram_bytes = int(self.dut.tb_imem_words.value), int(self.dut.tb_dram_size.value)
        if len(words) > imem_words:
            raise AssertionError(f"stream of {len(words)} instructions exceeds the wrapper's "
                                 f"IMEM_WORDS = {imem_words}")
        if dram.size > dram_bytes:
            raise AssertionError(f"DRAM image of {dram.size} bytes exceeds the wrapper's "
                                 f"DRAM_BYTES = {dram_bytes}")
        Path(IMEM_FILE).write_text("".join(f"{w:064x}\n" for w in words))
        write_hex_bytes(Path(DRAM_FILE), dram)
        dut = self.dut
        dut.start.value = 0
        dut.rst.value = 1
        dut.tb_dram_bytes.value = int(dram.size)
        # The memories' clock gate latches its enable while clk is low: tb_load rises in a low
        # phase, or the edge that loads them would not reach them (the clock starts high at 0 ns).
        await FallingEdge(dut.clk)
        dut.tb_load.value = 1
        await RisingEdge(dut.clk)          # memories cleared and loaded at this edge
        dut.tb_load.value = 0
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        dut.start.value = 1
        await RisingEdge(dut.clk)          # start sampled: the next cycle is cycle 0
        dut.start.value = 0


# ---- monitor ------------------------------------------------------------------------------

@dataclass
class Outcome:
    finished: bool
    done: int = 0
    error: int = 0
    error_code: int = 0
    pc: int = 0
    cycle: int = 0          # the DUT's cycle output
    tb_cycles: int = 0      # the cycle in which the wrapper first saw done | error
    oob: int = 0
    oob_addr: int = 0
    late_write: int = 0
    dram: np.ndarray | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0      # CPU time of the simulator process over the same span (unaffected by load)
    # The span (start sampled .. done | error) in CLOCK_MONOTONIC seconds: what a profile recorded
    # with that clock (`perf record -k CLOCK_MONOTONIC`, tests/cosim/profile_model.py) cuts out
    span: tuple[float, float] = (0.0, 0.0)


#: Cycles from ``done | error`` to ``dumped`` (the wrapper's dump runs the cycle after), with margin.
DUMP_CYCLES = 4


class Monitor:
    """Waits for ``finished`` within a cycle limit, then for ``dumped``, and collects what the run
    produced.  The times cover the cycles up to ``finished``: the wrapper's ``$writememh`` of the
    DRAM image (a formatted line a byte: a quarter of SegFormer-B0's old span on e_small) is the
    testbench's work, not the model's."""

    def __init__(self, dut):
        self.dut = dut

    async def wait(self, cycle_limit: int, started: float, started_cpu: float = 0.0,
                   started_mono: float = 0.0) -> Outcome:
        dut = self.dut
        try:
            await with_timeout(RisingEdge(dut.finished), (cycle_limit + 2) * PERIOD_NS, "ns")
        except SimTimeoutError:
            return Outcome(finished=False, pc=int(dut.imem_addr.value) // 32,
                           cycle=int(dut.cycle.value), wall_s=time.perf_counter() - started)
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        span = (started_mono, time.clock_gettime(time.CLOCK_MONOTONIC))
        try:
            await with_timeout(RisingEdge(dut.dumped), DUMP_CYCLES * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"the wrapper's dumped did not rise within {DUMP_CYCLES} cycles "
                                 f"of done | error") from None
        out = Outcome(finished=True, done=int(dut.done.value), error=int(dut.error.value),
                      error_code=int(dut.error_code.value), pc=int(dut.imem_addr.value) // 32,
                      cycle=int(dut.cycle.value), tb_cycles=int(dut.tb_cycles.value),
                      oob=int(dut.oob.value), oob_addr=int(dut.oob_addr.value),
                      late_write=int(dut.late_write.value), wall_s=wall, cpu_s=cpu, span=span)
        if Path(DRAM_OUT_FILE).is_file():
            out.dram = read_hex_bytes(Path(DRAM_OUT_FILE))
        return out


# ---- checker ------------------------------------------------------------------------------

def _byte(value: int) -> str:
    return f"0x{value & 0xFF:02x} ({int(np.int8(np.uint8(value & 0xFF)))})"


def dram_difference(want: np.ndarray, got: np.ndarray | None) -> str:
    """How the RTL's DRAM image ``got`` differs from sim.functional's ``want`` ("" if it does not):
    how many bytes, the first address, both bytes there."""
    if got is None:
        return "the RTL's DRAM image was not dumped"
    n = min(want.size, got.size)
    bad = np.flatnonzero(want[:n] != got[:n])
    sizes = f" (images of {want.size} and {got.size} bytes)" if want.size != got.size else ""
    if not bad.size:
        return f"the DRAM images differ in size{sizes}" if sizes else ""
    a = int(bad[0])
    return (f"{bad.size} DRAM bytes differ from sim.functional{sizes}; first at {a:#x}: "
            f"expected {_byte(int(want[a]))}, RTL {_byte(int(got[a]))}")


def _error_name(code: int) -> str:
    from hw.rtl.accelerator import ErrorCode
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"code {code}"


class Checker:
    """Compares an outcome with the model; messages name case, config, seed, index, values, cycles."""

    def __init__(self, log):
        self.log = log
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        if len(self.errors) < 10:
            self.log.error(message)
        self.errors.append(message)

    def check_status(self, where: str, exp, out: Outcome) -> bool:
        """Done (no error, hang, stray access) in the schedule's cycle with a whole DRAM dump;
        ``exp`` has ``cycles``, ``dram_in`` and ``dram_out``.  False when the dump cannot be compared."""
        cycles = f"cycles: RTL {out.tb_cycles if out.finished else 'none'}, schedule {exp.cycles}"
        if not out.finished:
            self.error(f"{where}: neither done nor error within {exp.cycles + CYCLE_MARGIN} cycles "
                       f"(hang); pc {out.pc}, DUT cycle {out.cycle}; {cycles}")
            return False
        if out.error:
            self.error(f"{where}: error {_error_name(out.error_code)} at instruction {out.pc}; {cycles}")
            return False
        if out.oob:
            self.error(f"{where}: DRAM access at {out.oob_addr:#x} outside the "
                       f"{exp.dram_in.size}-byte image; {cycles}")
        if out.late_write:
            self.error(f"{where}: DRAM written while done was high; {cycles}")
        if out.tb_cycles != exp.cycles or out.cycle != exp.cycles:
            self.error(f"{where}: done in cycle {out.tb_cycles} (DUT cycle counter {out.cycle}), "
                       f"schedule says {exp.cycles} (difference {out.tb_cycles - exp.cycles:+d})")
        if out.dram is None or out.dram.size != exp.dram_out.size:
            self.error(f"{where}: DRAM dump has {None if out.dram is None else out.dram.size} bytes, "
                       f"expected {exp.dram_out.size}; {cycles}")
            return False
        return True

    def check_run(self, where: str, exp: Expected, out: Outcome) -> None:
        if not self.check_status(where, exp, out):
            return
        got = out.dram
        cycles = f"cycles: RTL {out.tb_cycles}, schedule {exp.cycles}"
        lo, hi = exp.output_range
        out_bad = np.flatnonzero(got[lo:hi] != exp.golden)
        if out_bad.size:
            i = int(out_bad[0])
            self.error(f"{where}: {out_bad.size} of {hi - lo} outputs differ from the golden model; "
                       f"first at output index {i} (DRAM {lo + i:#x}): expected {_byte(int(exp.golden[i]))}, "
                       f"actual {_byte(int(got[lo + i]))}; {cycles}")
        bad = np.flatnonzero(got != exp.dram_out)
        if bad.size:
            a = int(bad[0])
            self.error(f"{where}: {bad.size} DRAM bytes differ from sim.functional; first at "
                       f"{a:#x}: expected {_byte(int(exp.dram_out[a]))}, actual {_byte(int(got[a]))}; "
                       f"{cycles}")

    def check_program(self, where: str, exp: ExpectedProgram, out: Outcome) -> None:
        """Every tensor the program writes equals sim.functional's (itself checked against the
        golden model), named by its layer and element; then the whole DRAM image."""
        if not self.check_status(where, exp, out):
            return
        program = exp.program
        for tensor in exp.tensors:
            got, want = program.read(out.dram, tensor), program.read(exp.dram_out, tensor)
            bad = np.argwhere(got != want)
            if bad.size:
                i = tuple(int(v) for v in bad[0])
                self.error(f"{where}: layer {tensor!r}: {len(bad)} of {want.size} elements differ from the "
                           f"golden model; first at (y, x, c) = {i}: expected {int(want[i])}, actual {int(got[i])}")
                return
        bad = np.flatnonzero(out.dram != exp.dram_out)
        if bad.size:
            a = int(bad[0])
            self.error(f"{where}: {bad.size} DRAM bytes differ from sim.functional outside the tensors; "
                       f"first at {a:#x}: expected {_byte(int(exp.dram_out[a]))}, actual {_byte(int(out.dram[a]))}")

    def check_vec(self, where: str, exp: ExpectedVec, out: Outcome) -> None:
        """A VEC pass: done in the schedule's cycle with sim.functional's image, the first wrong
        byte named by its operand; or refused with the expected code and nothing written."""
        if exp.code is not None:
            if not out.finished or not out.error or out.error_code != exp.code.value:
                self.error(f"{where}: expected error {exp.code.name} ({exp.why}); got finished={out.finished} "
                           f"done={out.done} error={out.error} code {_error_name(out.error_code)}")
            elif out.dram is None or not np.array_equal(out.dram, exp.dram_in):
                self.error(f"{where}: refused with {exp.code.name}, but the DRAM was written")
            return
        if not self.check_status(where, exp, out):
            return
        bad = np.flatnonzero(out.dram != exp.dram_out)
        if bad.size:
            a = int(bad[0])
            owner = [i for i, o in enumerate(exp.descriptor.operands) if o.base <= a]
            self.error(f"{where}: {bad.size} DRAM bytes differ from sim.functional; first at {a:#x} (operand "
                       f"{owner[-1] if owner else '-'} or after): expected {_byte(int(exp.dram_out[a]))}, "
                       f"actual {_byte(int(out.dram[a]))}")

    def check_fuzz(self, where: str, exp, out: Outcome) -> str:
        """A fuzz case: the RTL does what :func:`cosim.fuzz.expected_outcome` says; else the reason
        (also an error, after ``where``), which the campaign reports ("" when it agrees)."""
        why = self._fuzz_disagreement(exp, out)
        if why:
            self.error(f"{where}: {why}")
        return why

    @staticmethod
    def _fuzz_disagreement(exp, out: Outcome) -> str:
        if not out.finished:
            return (f"neither done nor error within {exp.limit} cycles (hang); pc {out.pc}; "
                    f"expected {exp.kind} {exp.code.name if exp.code else ''}: {exp.why}")
        got = (f"done={out.done} error={out.error} code {_error_name(out.error_code)} at instruction "
               f"{out.pc}, cycle {out.tb_cycles}, oob {out.oob}")
        if exp.kind == "oob" and not out.oob:
            return f"expected an access outside the DRAM image ({exp.why}); got {got}"
        if exp.kind == "done":
            if out.error or out.oob or out.tb_cycles != exp.cycles or out.cycle != exp.cycles:
                return f"expected done in cycle {exp.cycles}; got {got}"
            differ = dram_difference(exp.dram, out.dram) if exp.dram is not None else ""
            if differ:
                return f"done in the right cycle, but {differ}"
        elif exp.code is not None and exp.kind != "ambiguous":
            if not out.error or out.error_code != exp.code.value or \
                    (exp.code.name != "DATA" and exp.index is not None and out.pc != exp.index):
                return f"expected error {exp.code.name} at instruction {exp.index} ({exp.why}); got {got}"
        return ""

    def assert_clean(self) -> None:
        if self.errors:
            raise AssertionError(f"{len(self.errors)} checker errors; first: {self.errors[0]}")


# ---- running ------------------------------------------------------------------------------

class Harness:
    def __init__(self, dut):
        self.dut = dut
        self.config_name = PARAMS.get("config")
        self.geometry, self.cfg = read_geometry(dut, self.config_name, dut._log)
        self.driver, self.monitor = Driver(dut), Monitor(dut)
        self.checker = Checker(dut._log)
        clock = Clock(dut.clk, PERIOD_NS, unit="ns")
        clock.start()
        dut._log.info("clock implementation: %s", clock.impl)
        self.clock_impl = clock.impl
        dut.tb_load.value = 0
        dut.start.value = 0
        dut.rst.value = 1

    async def run(self, words: list[int], dram: np.ndarray, cycle_limit: int) -> Outcome:
        await self.driver.load_and_start(words, dram)
        return await self.monitor.wait(cycle_limit, time.perf_counter(), time.process_time(),
                                       time.clock_gettime(time.CLOCK_MONOTONIC))

    def record(self, **fields) -> None:
        with open(RESULTS_FILE, "a") as handle:
            handle.write(json.dumps({"config": self.config_name, "clock": self.clock_impl,
                                     **fields}) + "\n")


def case_seed(base: int, name: str) -> int:
    return base * 1000 + zlib.crc32(name.encode()) % 1000


async def run_layer(h: Harness, layer, seed: int, where: str) -> tuple[Expected, Outcome]:
    exp = expected_run(layer, h.cfg, seed)
    out = await h.run(stream_words(exp.stream), exp.dram_in, exp.cycles + CYCLE_MARGIN + exp.cycles // 8)
    h.checker.check_run(where, exp, out)
    return exp, out


@cocotb.test()
@cocotb.parametrize(case=LAYER_CASES)
async def layer(dut, case):
    """One mapper stream: output == golden, DRAM == sim.functional, cycles == schedule."""
    h = Harness(dut)
    spec = next(s for s in PARAMS["layers"] if s["name"] == case)
    base = int(PARAMS.get("seed", 1))
    seed = int(spec.get("seed", case_seed(base, case)))
    lay = layer_from_spec({k: v for k, v in spec.items() if k != "seed"})
    where = f"case {case!r} ({describe(lay)}) config {h.config_name} seed {seed} (COSIM_SEED={base})"
    dut._log.info("%s", where)
    exp, out = await run_layer(h, lay, seed, where)
    h.record(kind="layer", case=case, layer=describe(lay), seed=seed, instructions=len(exp.stream),
             expected_cycles=exp.cycles, rtl_cycles=out.tb_cycles if out.finished else None,
             wall_s=round(out.wall_s, 4), cpu_s=round(out.cpu_s, 4), span=out.span, passed=not h.checker.errors)
    h.checker.assert_clean()
    dut._log.info("%s: %d instructions, %d cycles (RTL == schedule), %d outputs == golden, "
                  "%.3f s simulated (%.0f cycles/s)", case, len(exp.stream), exp.cycles,
                  exp.golden.size, out.wall_s, exp.cycles / max(out.wall_s, 1e-9))


@cocotb.test()
@cocotb.parametrize(network=NETWORKS)
async def network(dut, network):
    """Every MAC layer of a model in sequence (each on its own random data), one start each,
    mapped as the simulator maps it (without the softmax epilogues the RTL does not build yet)."""
    from mapper.ir import MAC_KINDS
    from mapper.workloads import build_model

    h = Harness(dut)
    spec = next(n for n in PARAMS["networks"] if f"{n['model']}_{n['size']}" == network)
    base = int(spec.get("seed", PARAMS.get("seed", 1)))
    model = build_model(spec["model"], size=(spec["size"], spec["size"]))
    total_rtl = total_sched = layers = outputs = 0
    wall = 0.0
    for i, lay in enumerate(model.layers):
        if lay.kind not in MAC_KINDS:
            continue
        seed = base * 1000 + i
        where = (f"network {network} layer {i} {lay.name!r} ({describe(lay)}) config "
                 f"{h.config_name} seed {seed} (COSIM_SEED={base})")
        exp, out = await run_layer(h, lay, seed, where)
        total_sched += exp.cycles
        total_rtl += out.tb_cycles if out.finished else 0
        layers += 1
        outputs += exp.golden.size
        wall += out.wall_s
        dut._log.info("%-32s %-48s %7d cycles (RTL %7d)  %.2f s", lay.name, describe(lay),
                      exp.cycles, out.tb_cycles, out.wall_s)
        h.record(kind="network_layer", network=network, index=i, case=lay.name, layer=describe(lay),
                 seed=seed, instructions=len(exp.stream), expected_cycles=exp.cycles,
                 rtl_cycles=out.tb_cycles if out.finished else None, wall_s=round(out.wall_s, 4),
                 passed=not h.checker.errors)
        if h.checker.errors:
            break                          # the first failing layer says it all
    if not h.checker.errors and total_rtl != total_sched:
        h.checker.error(f"network {network}: RTL total {total_rtl} cycles, schedule total {total_sched}")
    h.record(kind="network", network=network, seed=base, layers=layers, outputs=outputs,
             expected_cycles=total_sched, rtl_cycles=total_rtl, wall_s=round(wall, 3),
             passed=not h.checker.errors)
    h.checker.assert_clean()
    dut._log.info("network %s on %s: %d MAC layers, %d outputs == golden, %d cycles (RTL == sum "
                  "of schedules), %.1f s simulated (%.0f cycles/s)", network, h.config_name, layers,
                  outputs, total_sched, wall, total_sched / max(wall, 1e-9))


@cocotb.test()
@cocotb.parametrize(program=PROGRAMS)
async def program(dut, program):
    """A whole-network program from the input image to the output, one start: every layer's
    output == the golden model, DRAM == sim.functional, cycles == schedule."""
    h = Harness(dut)
    spec = next(p for p in PARAMS["programs"] if program_name(p) == program)
    where = f"program {program} config {h.config_name} seed {spec.get('seed', 0)}"
    exp = expected_program(spec, h.cfg, load_built(spec["built"]) if spec.get("built") else None)
    refused = unsupported_steps(exp.program)
    if refused:
        h.checker.error(f"{where}: this RTL does not build what {len(refused)} layers need "
                        f"(rtl_unsupported), first {refused[0]!r}")
        h.checker.assert_clean()
    stream = exp.program.stream
    out = await h.run(stream_words(stream), exp.dram_in, exp.cycles + CYCLE_MARGIN + exp.cycles // 8)
    h.checker.check_program(where, exp, out)
    elements = sum(exp.program.read(exp.dram_out, t).size for t in exp.tensors)
    h.record(kind="program", case=program, seed=spec.get("seed", 0), instructions=len(stream),
             tensors=len(exp.tensors), elements=elements, dram_bytes=int(exp.dram_in.size),
             expected_cycles=exp.cycles, rtl_cycles=out.tb_cycles if out.finished else None,
             wall_s=round(out.wall_s, 4), cpu_s=round(out.cpu_s, 4), span=out.span, passed=not h.checker.errors)
    h.checker.assert_clean()
    dut._log.info("program %s: %d instructions, %d tensors (%d elements) == golden, %d cycles (RTL == "
                  "schedule), %.2f s simulated (%.0f cycles per CPU second)", program, len(stream),
                  len(exp.tensors), elements, exp.cycles, out.wall_s, exp.cycles / max(out.cpu_s, 1e-9))


@cocotb.test()
@cocotb.parametrize(bad=BAD)
async def malformed(dut, bad):
    """A malformed stream ends with ``error`` and the expected code, never a hang."""
    from hw.rtl.accelerator import ErrorCode

    h = Harness(dut)
    words, culprit = bad_stream(bad, h.cfg)
    description, _ = BAD_STREAMS[bad]
    # an instruction before the culprit may wait a DRAM latency (LOAD_PARAM before END's token check)
    limit = 200 + len(words) * h.cfg.dram_latency
    out = await h.run(words, bad_dram(bad, h.cfg), limit)
    where = f"bad stream {bad!r} ({description}) config {h.config_name}"
    want = bad_stream_code(bad, h.cfg)
    if not out.finished:
        h.checker.error(f"{where}: neither done nor error within {limit} cycles (hang); pc {out.pc}")
    elif out.done or not out.error:
        h.checker.error(f"{where}: done={out.done} error={out.error} after {out.tb_cycles} cycles, "
                        f"expected error {want.name}")
    else:
        if out.error_code != want.value:
            h.checker.error(f"{where}: error code {_error_name(out.error_code)} ({out.error_code}), "
                            f"expected {want.name} ({want.value})")
        if bad_stream_positioned(bad, h.cfg) and out.pc != culprit:
            h.checker.error(f"{where}: error points at instruction {out.pc}, expected {culprit}")
    h.record(kind="bad", case=bad, error=out.error, error_code=_error_name(out.error_code),
             pc=out.pc, rtl_cycles=out.tb_cycles, passed=not h.checker.errors)
    h.checker.assert_clean()
    dut._log.info("%s: error %s at instruction %d in cycle %d", where, _error_name(out.error_code),
                  out.pc, out.tb_cycles)


@cocotb.test()
@cocotb.parametrize(run=FUZZ)
async def fuzz(dut, run):
    """Seeded random legal and malformed streams (cosim.fuzz): the RTL finishes or refuses each
    exactly as the simulator says, and never hangs."""
    from cosim.fuzz import expected_outcome, fuzz_case

    h = Harness(dut)
    seed, count = int(PARAMS["fuzz"]["seed"]), int(PARAMS["fuzz"]["count"])
    named = [(int(c["seed"]), int(c["index"]), c.get("mutation")) for c in PARAMS["fuzz"].get("cases", [])]
    tally: dict[str, int] = {}
    for case_seed, i, mutation in [(seed, i, None) for i in range(count)] + named:
        case = fuzz_case(case_seed, i, h.cfg, mutation=mutation)
        exp = expected_outcome(case.words, case.dram, h.cfg)
        out = await h.run(case.words, case.dram, exp.limit)
        where = f"fuzz case {case.name} ({case.description}) config {h.config_name} seed {case_seed}"
        why = h.checker.check_fuzz(where, exp, out)
        outcome = f"error {exp.code.name}" if exp.kind == "error" else \
            "done, data undefined" if exp.kind == "done" and exp.dram is None else exp.kind
        tally[outcome] = tally.get(outcome, 0) + 1
        h.record(kind="fuzz_case", case=case.name, seed=case_seed, index=i, description=case.description,
                 expected=outcome, expected_index=exp.index, error_code=_error_name(out.error_code) if out.error else None,
                 pc=out.pc, rtl_cycles=out.tb_cycles, passed=not why, why=why or None)
    h.record(kind="fuzz", seed=seed, cases=count + len(named), outcomes=tally, disagreements=len(h.checker.errors))
    dut._log.info("fuzz seed %d on %s: %d cases, %d disagreements; %s", seed, h.config_name, count + len(named),
                  len(h.checker.errors), tally)
    h.checker.assert_clean()


@cocotb.test()
@cocotb.parametrize(case=VEC_PASSES)
async def vec_pass(dut, case):
    """One VEC pass (cosim.vec_cases): the image sim.functional writes, bit for bit, in the
    schedule's cycle; or the refusal the RTL's vector unit makes, with nothing written."""
    h = Harness(dut)
    spec = next(s for s in PARAMS["vec_passes"] if s["name"] == case)
    where = f"VEC pass {case} config {h.config_name} ({spec})"
    exp = expected_vec(spec, h.cfg)
    out = await h.run(stream_words(exp.stream), exp.dram_in, exp.cycles + CYCLE_MARGIN + exp.cycles // 8)
    h.checker.check_vec(where, exp, out)
    h.record(kind="vec", case=case, stages=[st.op.name for st in exp.descriptor.stages],
             expected=exp.code.name if exp.code else "done", expected_cycles=exp.cycles,
             rtl_cycles=out.tb_cycles if out.finished else None, error_code=_error_name(out.error_code),
             wall_s=round(out.wall_s, 4), passed=not h.checker.errors)
    h.checker.assert_clean()
    dut._log.info("%s: %s in cycle %d (schedule %d)", where, "refused" if exp.code else "done", out.tb_cycles,
                  exp.cycles)
