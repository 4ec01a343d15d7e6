"""One lane of the vector unit's element-wise operations: COPY, ADD, MUL and LUT (``ElementwiseLane``)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import operators as _ops
from ..isa import VecOp
from ..vector import LUT_ENTRIES
from .kernel_unit import INT8, KernelUnit, delayed, table_write_signature
from .operator_backend import Table, range_shape

__all__ = ["ElementwiseLane", "LANE_OPS", "drive_stage", "drive_params", "stage_params"]

#: The stage operations of a VEC descriptor (``hw/vector.py``) this lane computes.
LANE_OPS = (VecOp.COPY, VecOp.ADD, VecOp.MUL, VecOp.LUT)
#: A lane built without LUT (no table memory): the spatial unit's chain.
_WITHOUT_LUT = LANE_OPS[:3]
_I8 = (_ops.INT8_MIN, _ops.INT8_MAX)
_LUT_TABLE = Table(INT8, LUT_ENTRIES)


def _parameter_ranges() -> dict:
    """The parameter ports: ADD's and MUL's ranges (``hw.operators``), merged by name (their
    ``shift`` is one port)."""
    merged: dict = {}
    for name, (lo, hi) in [*_ops.AddParams.RANGES.items(), *_ops.MulParams.RANGES.items(), ("relu", (0, 1))]:
        old = merged.get(name, (lo, hi))
        merged[name] = (min(lo, old[0]), max(hi, old[1]))
    return merged


class ElementwiseLane(wiring.Component):
    """``y = op(a, b)`` for one int8 element a cycle, exactly as :mod:`hw.operators` computes it.

    ADD is ``add_kernel``, MUL ``mul_kernel`` and LUT ``lut_kernel`` (a 256-entry int8 table
    memory, written through ``table_w`` at address ``x + 128``), each a :class:`KernelUnit`;
    COPY passes ``a``.  All the lane builds run on every element and ``op`` picks the result, so
    the lane has one latency, the deepest kernel's (MUL's).

    Parameters
    ----------
    ops : tuple of VecOp
        The operations built: COPY, ADD and MUL, with or without LUT (default: ``LANE_OPS``).
        A lane without LUT (the spatial unit's chain, ``hw.vector.SPATIAL_CHAIN_OPS``) has no
        table memory and no ``table_w``; its latency is the same.

    Members
    -------
    op: In(range of LANE_OPS)
        ``hw.isa.VecOp`` value.
    a, b: In(signed(8))
    mult_a, mult_b, mult, shift, relu: In(...)
        ``hw.operators.AddParams`` / ``MulParams`` fields, ranges from their ``RANGES``.
    table_w: Out(memory.WritePort.Signature(addr_width=8, shape=signed(8)))
        The LUT's table (a lane that builds LUT): drive ``en``, ``addr`` and ``data``.
    valid: In(1)
    y: Out(signed(8))
    y_valid: Out(1)
        ``y`` is the result of the inputs presented ``latency`` cycles earlier.
    """

    def __init__(self, *, ops: tuple = LANE_OPS):
        if tuple(ops) not in (LANE_OPS, _WITHOUT_LUT):
            raise ValueError(f"ops must be {LANE_OPS} or {_WITHOUT_LUT}, not {ops!r}")
        params = _parameter_ranges()
        self._add = KernelUnit(_ops.add_kernel, {"a": _I8, "b": _I8, **{n: params[n] for n in
                                                                          ("mult_a", "mult_b", "shift", "relu")}})
        self._mul = KernelUnit(_ops.mul_kernel, {"a": _I8, "b": _I8, "mult": params["mult"], "shift": params["shift"]})
        self._units = {VecOp.ADD: self._add, VecOp.MUL: self._mul}
        self._lut = None
        if VecOp.LUT in ops:
            self._lut = KernelUnit(_ops.lut_kernel, {"x": _I8}, tables={"table": _LUT_TABLE})
            self._units[VecOp.LUT] = self._lut
        self._latency = max(u.latency for u in self._units.values())
        table = {"table_w": Out(table_write_signature(_LUT_TABLE))} if self._lut is not None else {}
        super().__init__({
            "op": In(range_shape(min(LANE_OPS), max(LANE_OPS))),
            "a": In(INT8), "b": In(INT8),
            **{n: In(range_shape(*r)) for n, r in params.items()},
            **table,
            "valid": In(1),
            "y": Out(INT8), "y_valid": Out(1),
        })

    @property
    def latency(self) -> int:
        """Clock cycles from ``valid`` to ``y_valid`` (every operation)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        for code, unit in self._units.items():
            m.submodules[code.name.lower()] = unit
        for unit in self._units.values():
            for name in unit.signature.members:
                if name in ("in_valid", "out_valid", "y", "table_w"):
                    continue
                port = "a" if (unit is self._lut and name == "x") else name
                m.d.comb += getattr(unit, name).eq(getattr(self, port))
            m.d.comb += unit.in_valid.eq(self.valid)
        if self._lut is not None:
            wiring.connect(m, wiring.flipped(self.table_w), self._lut.table_w)
        op = delayed(m, self.op, self._latency, "op")
        y = delayed(m, self.a, self._latency, "copy")
        for code, unit in self._units.items():
            y = Mux(op == code, delayed(m, unit.y, self._latency - unit.latency, f"{code.name.lower()}_y"), y)
        m.d.comb += [self.y.eq(y), self.y_valid.eq(delayed(m, self.valid, self._latency, "valid"))]
        return m


def stage_params(stage) -> dict:
    """The values of a lane's operation and parameter ports (``op``, ``mult_a``, ``mult_b``,
    ``relu``, ``mult``, ``shift``) for a descriptor's stage slot ``stage`` (a
    ``hw.rtl.vector_descriptor.DESCRIPTOR`` stage view)."""
    add, mul = stage.add, stage.mul
    return {"op": stage.copy.op, "mult_a": add.mult_a, "mult_b": add.mult_b, "relu": add.relu,
            "mult": mul.mult, "shift": Mux(add.op == VecOp.ADD, add.shift, mul.shift)}


def drive_params(m: Module, slot: ElementwiseLane, params: dict, a, b, valid) -> None:
    """Drive ``slot``'s parameter ports from ``params`` (:func:`stage_params`' keys: values
    decoded once and shared by many lanes), on inputs ``a``, ``b`` and ``valid``."""
    m.d.comb += [slot.a.eq(a), slot.b.eq(b), slot.valid.eq(valid),
                 *(getattr(slot, name).eq(value) for name, value in params.items())]


def drive_stage(m: Module, slot: ElementwiseLane, stage, a, b, valid) -> None:
    """Drive ``slot`` with the operation and parameters of a descriptor's stage slot ``stage``, on
    inputs ``a``, ``b`` and ``valid``: the row lanes' stage slots."""
    drive_params(m, slot, stage_params(stage), a, b, valid)
