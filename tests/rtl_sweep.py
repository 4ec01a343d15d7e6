"""Test harness: a component fed one input vector a cycle from ROMs (holding it while ``ready`` is low),
its results captured in memories, so Amaranth's simulator runs long sweeps without a Python step per
cycle.  A mismatch is reported with its index, inputs and both values."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Elaboratable, Module, Signal, Value
from amaranth.lib import memory
from amaranth.sim import Simulator

__all__ = ["sweep", "kernel_sweep", "check", "Result"]


class Result(dict):
    """Captured outputs (name -> int64 array, in the order they came out) and ``last_cycle``: the
    cycle of the last output, counted from 0, the cycle the first input is presented."""

    last_cycle: int


class _Sweep(Elaboratable):
    def __init__(self, dut, inputs: dict, consts: list, outputs: dict, valid, out_valid, ready, n_out: int,
                 tables: list):
        self.dut, self.consts, self.outputs = dut, consts, outputs
        self.tables = [(port, memory.Memory(shape=Value.cast(port.data).shape(), depth=len(values),
                                            init=[int(v) for v in values])) for port, values in tables]
        self.preload = max((len(values) for _, values in tables), default=0)
        self.valid, self.out_valid, self.ready = valid, out_valid, ready
        self.n = len(next(iter(inputs.values()))[1])
        self.n_out = n_out
        self.roms = {name: (port, memory.Memory(shape=Value.cast(port).shape(), depth=self.n,
                                                init=[int(v) for v in values]))
                     for name, (port, values) in inputs.items()}
        self.captures = {name: memory.Memory(shape=Value.cast(port).shape(), depth=n_out, init=[])
                         for name, port in outputs.items()}
        self.done = Signal()
        self.last_cycle = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        load = Signal(range(self.preload + 1))
        loaded = load == self.preload
        with m.If(~loaded):                    # the tables are written first, one entry a cycle
            m.d.sync += load.eq(load + 1)
        for i, (port, rom) in enumerate(self.tables):
            m.submodules[f"table_{i}"] = rom
            read = rom.read_port(domain="comb")
            m.d.comb += [read.addr.eq(load), port.addr.eq(load), port.data.eq(read.data),
                         port.en.eq(load < rom.depth)]
        addr = Signal(range(self.n + 1))
        running = loaded & (addr < self.n)
        accept = running & (self.ready if self.ready is not None else 1)
        with m.If(accept):
            m.d.sync += addr.eq(addr + 1)
        for name, (port, rom) in self.roms.items():
            m.submodules[f"rom_{name}"] = rom
            read = rom.read_port(domain="comb")
            m.d.comb += [read.addr.eq(addr), port.eq(read.data)]
        for port, value in self.consts:
            m.d.comb += port.eq(Const(int(value), Value.cast(port).shape()))
        m.d.comb += self.valid.eq(running)
        cycle, out_addr = Signal(32), Signal(range(self.n_out + 1))
        with m.If(loaded):
            m.d.sync += cycle.eq(cycle + 1)
        with m.If(self.out_valid):
            m.d.sync += [out_addr.eq(out_addr + 1), self.last_cycle.eq(cycle)]
        for name, mem in self.captures.items():
            m.submodules[f"capture_{name}"] = mem
            write = mem.write_port()
            m.d.comb += [write.addr.eq(out_addr), write.data.eq(self.outputs[name]), write.en.eq(self.out_valid)]
        m.d.comb += self.done.eq(out_addr == self.n_out)
        return m


def sweep(dut, inputs: dict, outputs: dict, *, valid, out_valid, n_out: int, ready=None, consts=(),
          tables=(), max_cycles: int) -> Result:
    """Run ``dut``: ``inputs`` maps a name to ``(port, values)``, one value a cycle (held while
    ``ready`` is low); ``consts`` is a list of ``(port, constant)``; ``tables`` a list of
    ``(write port, values)`` written before the first input (cycle 0 is the first input's cycle);
    ``outputs`` maps a name to a port captured whenever ``out_valid`` is high, until ``n_out``
    results came out (failing after ``max_cycles``)."""
    harness = _Sweep(dut, inputs, list(consts), outputs, valid, out_valid, ready, n_out, list(tables))
    max_cycles += harness.preload
    got = Result()

    async def bench(ctx):
        for _ in range(0, max_cycles, 256):
            if ctx.get(harness.done):
                break
            await ctx.tick().repeat(256)
        assert ctx.get(harness.done), f"{n_out} results expected within {max_cycles} cycles"
        got.last_cycle = ctx.get(harness.last_cycle)
        for name, mem in harness.captures.items():
            got[name] = np.array([ctx.get(mem.data[i]) for i in range(n_out)], dtype=np.int64)

    sim = Simulator(harness)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def kernel_sweep(unit, vectors: dict, consts: dict = None, tables: dict = None) -> Result:
    """``sweep`` of a ``KernelUnit`` (``in_valid``/``out_valid``) or a lane (``valid``/``y_valid``):
    every input port named in ``vectors`` (name -> values) or ``consts`` (name -> value), tables
    written through the ports ``tables`` names (name -> values); every other output captured."""
    n = len(next(iter(vectors.values())))
    valid, out_valid = ("in_valid", "out_valid") if hasattr(unit, "in_valid") else ("valid", "y_valid")
    outs = [name for name, member in unit.signature.members.items()
            if member.flow.name == "Out" and name != out_valid and not name.endswith("_w")]
    return sweep(unit, {k: (getattr(unit, k), np.asarray(v)) for k, v in vectors.items()},
                 {k: getattr(unit, k) for k in outs}, valid=getattr(unit, valid), out_valid=getattr(unit, out_valid),
                 n_out=n, consts=[(getattr(unit, k), v) for k, v in (consts or {}).items()],
                 tables=[(getattr(unit, k), v) for k, v in (tables or {}).items()], max_cycles=n + 64)


def check(name: str, got, want, inputs: dict) -> None:
    """AssertionError naming the case, the count and the first differing index with its inputs and both values."""
    got, want = np.asarray(got, np.int64).ravel(), np.asarray(want, np.int64).ravel()
    assert got.shape == want.shape, f"{name}: {got.size} results, expected {want.size}"
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = int(bad[0])
        args = ", ".join(f"{k}={int(np.broadcast_to(np.asarray(v), want.shape).ravel()[i])}" for k, v in inputs.items())
        raise AssertionError(f"{name}: {bad.size} of {got.size} differ; first at {i} ({args}): got {got[i]} "
                             f"({got[i] & 0xFFFFFFFFFFFF:#x}), expected {want[i]} ({want[i] & 0xFFFFFFFFFFFF:#x})")
