"""One kernel of :mod:`hw.operators` as a pipelined component (``KernelUnit``)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Mapping

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import INT8_MAX, INT8_MIN
from .operator_backend import AmaranthBackend, HwValue, Table, range_shape

__all__ = ["KernelUnit", "KernelPlan", "plan", "table_write_signature", "delayed", "INT8"]

#: The shape of an int8 activation.
INT8 = range_shape(INT8_MIN, INT8_MAX)


def delay_line(m: Module, value, cycles: int, name: str, *, reset_less: bool = False, clear=None) -> list:
    """``value`` and its copies delayed by 1 .. ``cycles`` registers in ``m``'s sync domain
    (element ``k`` is ``value`` of ``k`` cycles ago).  ``reset_less`` registers (data that a
    delayed valid qualifies) keep their value through a reset: no reset mux per bit.  Where
    ``clear`` is high, every register loads 0 (a valid line emptied of what is in flight)."""
    taps = [value]
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(taps[-1] if clear is None else Mux(clear, 0, taps[-1]))
        taps.append(reg)
    return taps


def delayed(m: Module, value, cycles: int, name: str, *, reset_less: bool = False):
    """``value`` delayed by ``cycles`` registers (``cycles`` >= 0) in ``m``'s sync domain
    (``reset_less``: as :func:`delay_line`)."""
    return delay_line(m, value, cycles, name, reset_less=reset_less)[-1]


def table_write_signature(table: Table) -> memory.WritePort.Signature:
    """The write port a run-time table is loaded through (address, data, enable)."""
    return memory.WritePort.Signature(addr_width=max(1, (table.depth - 1).bit_length()), shape=table.shape)


@dataclass(frozen=True)
class KernelPlan:
    """What a dry run of a kernel gives: its pipeline's ``latency`` and each result's interval."""

    latency: int
    ranges: dict

    def range(self, name: str) -> tuple[int, int]:
        return self.ranges[name]


def _arguments(kernel: Callable, inputs: Mapping, consts: Mapping, tables: Mapping, outputs: tuple) -> list:
    params = [p for p in inspect.signature(kernel).parameters if p != "be"]
    given = {**inputs, **consts, **tables}
    if sorted(params) != sorted(given):
        raise ValueError(f"{kernel.__name__} takes {params}; given {sorted(given)}")
    names = [*params, *outputs, *(f"{n}_w" for n in tables), "in_valid", "out_valid"]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"{kernel.__name__}: port names {clash} are used twice (name the outputs apart "
                         f"from the arguments)")
    for n, (lo, hi) in inputs.items():
        if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
            raise ValueError(f"range of {n} must be two integers lo <= hi, not {(lo, hi)!r}")
    return params


def _evaluate(be: AmaranthBackend, kernel: Callable, params: list, inputs: Mapping, values: Mapping,
              consts: Mapping, tables: Mapping, outputs: tuple) -> tuple[HwValue, ...]:
    """The kernel's results on the backend, registered and aligned to one stage."""
    args = {n: be.input(values[n], *inputs[n]) for n in inputs} | dict(consts) | dict(tables)
    out = be.run(kernel, *(args[p] for p in params))
    out = out if isinstance(out, tuple) else (out,)
    if len(out) != len(outputs):
        raise ValueError(f"{kernel.__name__} returns {len(out)} values; outputs names {outputs}")
    out = be.align(*out)
    if out[0].stage is None:
        raise ValueError(f"{kernel.__name__} gives constants only")
    if not all(v.registered for v in out):            # registered outputs
        out = tuple(be.at(v, out[0].stage + 1) for v in out)
    return out


def plan(kernel: Callable, inputs: Mapping[str, tuple], *, consts: Mapping[str, int] = None,
         tables: Mapping[str, Table] = None, outputs: tuple = ("y",)) -> KernelPlan:
    """The latency and result intervals of ``KernelUnit(kernel, ...)`` with the same arguments,
    from a dry run (no component is built)."""
    consts, tables = dict(consts or {}), dict(tables or {})
    params = _arguments(kernel, inputs, consts, tables, tuple(outputs))
    out = _evaluate(AmaranthBackend(None), kernel, params, inputs, {n: None for n in inputs}, consts, tables,
                    tuple(outputs))
    return KernelPlan(out[0].stage, {n: (v.lo, v.hi) for n, v in zip(outputs, out)})


class KernelUnit(wiring.Component):
    """A kernel of :mod:`hw.operators` evaluated by :class:`AmaranthBackend`: one result a cycle.

    Every argument of the kernel is an input port of the same name (``inputs``: its inclusive
    range), a constant (``consts``) or a run-time table (``tables``: a memory loaded through the
    write port ``<name>_w``).  The kernel's results are the output ports ``outputs``, sized by the
    backend's interval arithmetic and registered.  ``out_valid`` is ``in_valid`` delayed by
    ``latency`` cycles, the depth of the pipeline the backend built.

    Parameters
    ----------
    kernel : callable
        A kernel ``f(..., be)`` of :mod:`hw.operators`.
    inputs : mapping of str to (int, int)
        The inclusive range of each argument that is a port.
    consts : mapping of str to int
        Arguments that are compile-time integers (``width`` of ``recip_kernel``).
    tables : mapping of str to Table
        Arguments that are tables written at run time.
    outputs : tuple of str
        Names of the kernel's results (one name for a single result).

    Members
    -------
    <input>: In(range)
    in_valid: In(1)
    <table>_w: Out(memory.WritePort.Signature)
        Written like a memory's write port (``en``, ``addr``, ``data``).
    <output>: Out(shape from the kernel)
    out_valid: Out(1)
        The outputs hold the results of the inputs presented ``latency`` cycles earlier.
    """

    def __init__(self, kernel: Callable, inputs: Mapping[str, tuple], *, consts: Mapping[str, int] = None,
                 tables: Mapping[str, Table] = None, outputs: tuple = ("y",), name: str = None):
        if not callable(kernel):
            raise TypeError(f"kernel must be a function of hw.operators, not {kernel!r}")
        consts, tables = dict(consts or {}), dict(tables or {})
        self._plan = plan(kernel, inputs, consts=consts, tables=tables, outputs=outputs)
        self._kernel, self._params = kernel, _arguments(kernel, inputs, consts, tables, tuple(outputs))
        self._inputs, self._consts, self._tables, self._outputs = dict(inputs), consts, tables, tuple(outputs)
        self._name = name or kernel.__name__.removesuffix("_kernel")
        ports = {n: In(range_shape(lo, hi)) for n, (lo, hi) in inputs.items()}
        ports |= {f"{n}_w": Out(table_write_signature(t)) for n, t in tables.items()}
        ports |= {n: Out(range_shape(*self._plan.range(n))) for n in self._outputs}
        super().__init__({**ports, "in_valid": In(1), "out_valid": Out(1)})

    @property
    def latency(self) -> int:
        """Clock cycles from ``in_valid`` to ``out_valid``."""
        return self._plan.latency

    @property
    def kernel(self) -> Callable:
        return self._kernel

    def output_range(self, name: str) -> tuple[int, int]:
        """The interval ``(lo, hi)`` the backend bounds output ``name`` by (the port holds it)."""
        return self._plan.range(name)

    def elaborate(self, platform):
        m = Module()
        be = AmaranthBackend(m, self._name)
        tables = {}
        for n, t in self._tables.items():
            mem = memory.Memory(shape=t.shape, depth=t.depth, init=[])
            m.submodules[f"{n}_mem"] = mem
            wiring.connect(m, wiring.flipped(getattr(self, f"{n}_w")), mem.write_port())
            tables[n] = mem
        out = _evaluate(be, self._kernel, self._params, self._inputs, {n: getattr(self, n) for n in self._inputs},
                        self._consts, tables, self._outputs)
        assert out[0].stage == self.latency, (out[0].stage, self.latency)
        for n, v in zip(self._outputs, out):
            m.d.comb += getattr(self, n).eq(v.value)
        m.d.comb += self.out_valid.eq(delayed(m, self.in_valid, self.latency, "valid"))
        return m
