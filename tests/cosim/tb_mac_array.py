"""cocotb testbench of the exported MacArray (``mac_array_n<N>_k<K>_c<C>_a<A>``).

Roles, as in cocotb's ``matrix_multiplier`` example:

* :class:`Stimulus` (the *model*'s input): a random stream of sums, each a run of
  beats whose first beat may ``clear`` and whose last beat has ``last``, with idle
  cycles carrying garbage on every input in between;
* :class:`Driver`: presents one beat (or idle cycle) per clock;
* :class:`Monitor`: records ``acc`` whenever ``acc_valid`` is high;
* :func:`model_results`: numpy model of the accumulators (wrapping to ``acc_bits``);
* :class:`Checker`: compares monitor and model bit-exactly, counts errors, and names
  the case, seed, sum, index and both values in hex and decimal.

The geometry is read back from the DUT, not repeated: ``C0 = len(x) / 8``,
``K0 = len(pe0.w) / (8 C0)``, ``acc_bits = len(pe0.acc) / K0``,
``NumPE = len(w) / len(pe0.w)``; if ``params["config"]`` names a preset, those are
cross-checked against it.  Every test has a cycle limit.  Parameters (seed, number
of sums, ...) come from :func:`cosim.runner.load_params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

from cosim.runner import load_params

#: Clock period in ns; the Clock is cocotb's C-level (GPI) clock under Verilator.
PERIOD_NS = 1
#: Cycles of slack in every test's cycle limit (reset, pipeline drain).
CYCLE_MARGIN = 32


# ---- Geometry read back from the DUT ----------------------------------------------

@dataclass(frozen=True)
class Geometry:
    num_pe: int
    k0: int
    c0: int
    acc_bits: int

    @property
    def lanes(self) -> int:
        """Accumulators in the whole array (flat index ``pe * K0 + k``)."""
        return self.num_pe * self.k0


def read_geometry(dut) -> Geometry:
    x_bits, w_bits, acc_bits_total = len(dut.x), len(dut.w), len(dut.acc)
    pe_w_bits, pe_acc_bits = len(dut.pe0.w), len(dut.pe0.acc)
    if x_bits % 8 or pe_w_bits % x_bits or w_bits % pe_w_bits:
        raise AssertionError(f"port widths x={x_bits} pe0.w={pe_w_bits} w={w_bits} are not "
                             f"8*C0, 8*C0*K0, 8*C0*K0*NumPE")
    c0 = x_bits // 8
    k0 = pe_w_bits // x_bits
    num_pe = w_bits // pe_w_bits
    acc_bits = pe_acc_bits // k0
    geometry = Geometry(num_pe=num_pe, k0=k0, c0=c0, acc_bits=acc_bits)
    if acc_bits_total != num_pe * k0 * acc_bits:
        raise AssertionError(f"acc is {acc_bits_total} bits, expected NumPE*K0*acc_bits of "
                             f"{geometry}")
    return geometry


def check_against_config(geometry: Geometry, config_name: str | None, log) -> None:
    if not config_name:
        return
    from hw.config import get_config
    cfg = get_config(config_name)
    expected = Geometry(num_pe=cfg.num_pe, k0=cfg.k0, c0=cfg.c0, acc_bits=cfg.acc_bits)
    if geometry != expected:
        raise AssertionError(f"DUT geometry {geometry} read from its ports differs from "
                             f"configuration {config_name!r}: {expected}")
    log.info("geometry from port widths matches config %r: %s", config_name, geometry)


# ---- Stimulus and model -----------------------------------------------------------

@dataclass
class Stimulus:
    """One cycle per row: ``valid``, ``clear``, ``last``, ``x[C0]``, ``w[NumPE, K0, C0]``.

    Idle rows (``valid = 0``) carry random garbage in every other field, which the
    DUT must ignore.
    """
    valid: np.ndarray
    clear: np.ndarray
    last: np.ndarray
    x: np.ndarray
    w: np.ndarray

    @property
    def cycles(self) -> int:
        return len(self.valid)


def make_stimulus(geometry: Geometry, rng: np.random.Generator, *, sums: int,
                  max_beats: int, idle_prob: float, clear_prob: float,
                  values: str = "random") -> Stimulus:
    """A stream of ``sums`` sums of 1..``max_beats`` beats each.

    The first sum always clears (the accumulators start at zero after reset anyway);
    later sums clear with ``clear_prob`` and otherwise keep accumulating onto the
    previous result.  ``values="extremes"`` draws only from -128, -1, 0, 1, 127.
    """
    g = geometry
    rows = []
    for s in range(sums):
        beats = int(rng.integers(1, max_beats + 1))
        clears = s == 0 or rng.random() < clear_prob
        for b in range(beats):
            while rng.random() < idle_prob:
                rows.append((0, int(rng.integers(2)), int(rng.integers(2))))
            rows.append((1, int(clears and b == 0), int(b == beats - 1)))
    n = len(rows)
    control = np.array(rows, dtype=np.int64).reshape(n, 3)
    if values == "extremes":
        pool = np.array([-128, -1, 0, 1, 127])
        x = rng.choice(pool, size=(n, g.c0))
        w = rng.choice(pool, size=(n, g.num_pe, g.k0, g.c0))
        # The largest sums: every product -128 x -128.
        x[: n // 4] = -128
        w[: n // 4] = -128
    elif values == "random":
        x = rng.integers(-128, 128, size=(n, g.c0))
        w = rng.integers(-128, 128, size=(n, g.num_pe, g.k0, g.c0))
    else:
        raise ValueError(f"values must be 'random' or 'extremes', not {values!r}")
    return Stimulus(valid=control[:, 0], clear=control[:, 1], last=control[:, 2],
                    x=x.astype(np.int64), w=w.astype(np.int64))


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap to ``bits`` (the accumulator register width)."""
    half = 1 << (bits - 1)
    return ((values + half) % (1 << bits)) - half


def model_results(geometry: Geometry, stim: Stimulus) -> list[tuple[int, np.ndarray]]:
    """Expected ``(cycle of the last beat, acc[NumPE * K0])`` of every completed sum."""
    acc = np.zeros(geometry.lanes, dtype=np.int64)
    results = []
    for t in np.flatnonzero(stim.valid):
        dots = (stim.w[t] * stim.x[t]).sum(axis=-1).reshape(-1)  # [NumPE*K0]
        acc = wrap(dots if stim.clear[t] else acc + dots, geometry.acc_bits)
        if stim.last[t]:
            results.append((int(t), acc.copy()))
    return results


# ---- Driver, monitor, checker -----------------------------------------------------

def pack(values: np.ndarray, bits: int) -> int:
    """Little-endian packing of signed lanes (lane ``i`` in bits ``[bits*i, bits*(i+1))``)."""
    mask = (1 << bits) - 1
    word = 0
    for i, v in enumerate(np.asarray(values).reshape(-1).tolist()):
        word |= (int(v) & mask) << (bits * i)
    return word


def unpack(word: int, bits: int, lanes: int) -> np.ndarray:
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    raw = [(word >> (bits * i)) & mask for i in range(lanes)]
    return np.array([r - (1 << bits) if r >= half else r for r in raw], dtype=np.int64)


class Driver:
    """Presents row ``t`` of the stimulus during cycle ``t`` (sampled at edge ``t + 1``)."""

    def __init__(self, dut, stim: Stimulus):
        self.dut = dut
        self.stim = stim
        self.done = False

    def idle(self) -> None:
        for name in ("valid", "clear", "last", "x", "w"):
            getattr(self.dut, name).value = 0

    async def run(self) -> None:
        dut, s = self.dut, self.stim
        for t in range(s.cycles):
            dut.valid.value = int(s.valid[t])
            dut.clear.value = int(s.clear[t])
            dut.last.value = int(s.last[t])
            dut.x.value = pack(s.x[t], 8)
            dut.w.value = pack(s.w[t], 8)
            await RisingEdge(dut.clk)
        self.idle()
        self.done = True


class Monitor:
    """Records ``(cycle, acc lanes)`` for every cycle in which ``acc_valid`` is high.

    Cycle ``t`` is the one in which the driver presents row ``t`` (sampled at the
    rising edge that ends it); outputs read just after the edge ending cycle ``t``
    are those of cycle ``t + 1``.
    """

    def __init__(self, dut, geometry: Geometry):
        self.dut = dut
        self.geometry = geometry
        self.observed: list[tuple[int, np.ndarray]] = []

    async def run(self) -> None:
        g, edge = self.geometry, 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if self.dut.acc_valid.value == 1:
                self.observed.append(
                    (edge + 1, unpack(self.dut.acc.value.to_unsigned(), g.acc_bits, g.lanes)))
            edge += 1


class Checker:
    """Compares observed against expected sums bit-exactly and counts errors."""

    def __init__(self, case: str, seed: str, geometry: Geometry, latency: int, log):
        self.case, self.seed, self.geometry, self.latency, self.log = (
            case, seed, geometry, latency, log)
        self.errors: list[str] = []

    def _hex(self, value: int) -> str:
        bits = self.geometry.acc_bits
        return f"0x{value & ((1 << bits) - 1):0{(bits + 3) // 4}x}"

    def error(self, message: str) -> None:
        message = f"case {self.case!r} seed {self.seed}: {message}"
        if len(self.errors) < 10:
            self.log.error(message)
        self.errors.append(message)

    def check(self, expected: list[tuple[int, np.ndarray]],
              observed: list[tuple[int, np.ndarray]]) -> None:
        g = self.geometry
        if len(observed) != len(expected):
            self.error(f"{len(observed)} results observed (acc_valid pulses), "
                       f"{len(expected)} expected")
        for i, ((t, want), (cycle, got)) in enumerate(zip(expected, observed)):
            if cycle - t != self.latency:
                self.error(f"sum #{i}: last beat in cycle {t}, acc_valid in cycle {cycle}: "
                           f"latency {cycle - t}, expected {self.latency}")
            for j in np.flatnonzero(got != want).tolist():
                e, a = int(want[j]), int(got[j])
                self.error(f"sum #{i} (last beat at cycle {t}), acc[pe={j // g.k0}][k={j % g.k0}] "
                           f"(flat index {j}): expected {self._hex(e)} ({e}), "
                           f"actual {self._hex(a)} ({a})")

    def assert_clean(self) -> None:
        if self.errors:
            raise AssertionError(f"{len(self.errors)} checker errors; first: {self.errors[0]}")


# ---- Tests ------------------------------------------------------------------------

async def reset(dut, driver: Driver, cycles: int = 2) -> None:
    driver.idle()
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def run_case(dut, case: str, **stimulus_options) -> None:
    from hw.rtl.mac_array import MacArray

    params = load_params()
    base_seed = int(params.get("seed", 1))
    seed = base_seed + sum(map(ord, case))  # distinct per case, derived from the base
    sums = int(params.get("sums", 100))
    geometry = read_geometry(dut)
    check_against_config(geometry, params.get("config"), dut._log)
    rng = np.random.default_rng(seed)
    stim = make_stimulus(geometry, rng, sums=sums, **stimulus_options)
    expected = model_results(geometry, stim)
    cycle_limit = stim.cycles + MacArray.LATENCY + CYCLE_MARGIN
    dut._log.info("case %r: seed %d (COSIM_SEED=%d), %d sums in %d cycles (limit %d), %s",
                  case, seed, base_seed, len(expected), stim.cycles, cycle_limit, geometry)

    clock = Clock(dut.clk, PERIOD_NS, unit="ns")
    clock.start()
    dut._log.info("clock implementation: %s", clock.impl)
    driver = Driver(dut, stim)
    monitor = Monitor(dut, geometry)
    checker = Checker(case, f"{seed} (COSIM_SEED={base_seed})", geometry, MacArray.LATENCY,
                      dut._log)

    async def body() -> None:
        await reset(dut, driver)
        cocotb.start_soon(monitor.run())
        await driver.run()
        for _ in range(MacArray.LATENCY + 2):  # drain the pipeline
            await RisingEdge(dut.clk)

    await with_timeout(body(), cycle_limit * PERIOD_NS, "ns")
    checker.check(expected, monitor.observed)
    checker.assert_clean()
    dut._log.info("case %r seed %d: %d sums checked, 0 errors", case, seed, len(expected))


@cocotb.test()
async def random_sums(dut):
    """Random int8 vectors, sums of 1-6 beats, idle cycles with garbage, some sums
    continuing without clear."""
    await run_case(dut, "random_sums", max_beats=6, idle_prob=0.25, clear_prob=0.8)


@cocotb.test()
async def extremes(dut):
    """-128/127/-1/0/1 only (including all -128 x -128), long sums."""
    await run_case(dut, "extremes", max_beats=12, idle_prob=0.1, clear_prob=0.9,
                   values="extremes")


@cocotb.test()
async def back_to_back(dut):
    """One-beat sums (clear and last on the same beat) with no idle cycle."""
    await run_case(dut, "back_to_back", max_beats=1, idle_prob=0.0, clear_prob=1.0)
