"""A clock-gate cell (``ClockGate``) and the two ways a unit's clock is held (``gate_clock``).

``ClockGate`` is the integrated clock-gating cell of a standard-cell library: the enable is
latched while the clock is low and ANDed with the clock, so the gated clock ``gclk`` has a
rising edge exactly in the cycles whose enable was high before that edge, and no glitch
whatever the enable does while the clock is high.  Amaranth cannot express a latch, so the cell
is an ``Instance`` of the Verilog module :data:`MODULE`, whose behavioural model
(:data:`VERILOG`) the export writes beside the other modules (``hw.rtl.export``); Verilator and
Yosys read it like them (a synthesis flow maps it to its library's gate cell).

Why gate a clock: Verilator evaluates a clock domain's registers, and the combinational logic
only they feed, when that domain's clock has an edge.  A unit on a gated clock costs nothing in
the cycles it idles; on the shared clock, all its logic is evaluated every cycle
(``docs/cosim.md``).

``gate_clock`` puts a unit on a gated clock when given the cell, and otherwise (Amaranth's
simulator, whose delta cycles would let a gated register see its neighbours' new values) holds
the unit's registers with an ``EnableInserter`` driven by the same enable: the same behaviour,
cycle for cycle, so the simulator's tests check the enable condition the export uses.
"""

from __future__ import annotations

from amaranth.hdl import (ClockDomain, ClockSignal, DomainRenamer, EnableInserter, Instance, Module, ResetInserter,
                          ResetSignal, Signal)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ClockGate", "MODULE", "VERILOG", "SIGNATURE", "gate_clock"]

#: The Verilog module name of the cell.
MODULE = "clock_gate"

#: Its behavioural model: a latch transparent while ``clk`` is low, ANDed with ``clk``.
VERILOG = f"""\
// Clock-gate cell (hw/rtl/clock_gate.py): gclk = clk & (en latched while clk is low).
module {MODULE} (clk, en, gclk);
  input clk;
  wire clk;
  input en;
  wire en;
  output gclk;
  wire gclk;
  reg en_latched;
  // verilator lint_off LATCH
  always @*
    if (!clk) en_latched = en;
  // verilator lint_on LATCH
  assign gclk = clk & en_latched;
endmodule
"""


#: The cell's ports besides ``clk`` (the ``sync`` clock).
SIGNATURE = wiring.Signature({"en": In(1), "gclk": Out(1)})


class ClockGate(wiring.Component):
    """``gclk`` is the ``sync`` clock in the cycles whose ``en`` was high before the rising edge.

    Members
    -------
    en: In(1)
        The cycle's enable, from registers of the ``sync`` domain (settled before the edge).
    gclk: Out(1)
        The gated clock.
    """

    #: The module it instantiates (``hw.rtl.export.HierarchicalExport.add_cell``).
    export_cell = MODULE

    def __init__(self):
        super().__init__(SIGNATURE)

    def elaborate(self, platform):
        return Instance(MODULE, i_clk=ClockSignal("sync"), i_en=self.en, o_gclk=self.gclk)


def gate_clock(m: Module, name: str, unit, enable, gate_factory=None) -> None:
    """Add ``unit`` (whose registers are in ``sync``) to ``m`` as submodule ``name``, its registers
    advancing only in the cycles ``enable`` is high and while it is reset.

    With ``gate_factory`` (``ClockGate``), the unit runs in a local domain ``name`` clocked by a
    gate; without, its registers get the same enable as a clock enable.  Either way its reset is
    ``sync``'s delayed by a register of its own clock (``<name>_rst``): it lasts a cycle longer than
    ``sync``'s, and the unit's next-state logic depends on none of ``sync``'s registers, so
    Verilator evaluates it only at the gated clock's edges.  A unit is started at the earliest some
    cycles after a reset (by a unit that has itself left reset), so the extra cycle is never seen.
    (With the enable, ``sync``'s own reset also reaches the unit a cycle earlier: the same state
    when the reset ends.)

    The clock runs one more cycle after the unit's reset ends (``<name>_rst_tail``): a unit gated
    inside it (its ``sync`` being this gated clock) leaves its own reset in that cycle, which it
    could not while this clock is stopped, so gates nest two deep (a unit's, then its part's).
    """
    reset = ResetSignal("sync")
    delayed = Signal(name=f"{name}_rst", reset_less=True)
    tail = Signal(name=f"{name}_rst_tail", reset_less=True)
    held = enable | reset | delayed | tail
    if gate_factory is None:
        m.d.sync += [delayed.eq(reset), tail.eq(delayed)]
        m.submodules[name] = ResetInserter({"sync": delayed})(EnableInserter({"sync": held})(unit))
        return
    domain = ClockDomain(name, local=True)
    m.domains += domain
    m.d[name] += [delayed.eq(reset), tail.eq(delayed)]
    gate = m.submodules[f"{name}_gate"] = gate_factory()
    m.d.comb += [gate.en.eq(held), domain.clk.eq(gate.gclk), domain.rst.eq(delayed)]
    m.submodules[name] = DomainRenamer({"sync": name})(unit)
