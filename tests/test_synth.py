"""The hierarchical synthesis flow (hw/rtl/synth.py) and its logic-depth analysis (hw/rtl/logic_depth.py).

The depth analysis is checked on netlists written here, where every depth is known by
construction; the flow on the smallest real modules (the vector MAC and a token FIFO of
``tiny``), synthesised by Yosys, and on a hand-written two-level hierarchy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import get_config
from hw.rtl.export import HierarchicalExport, parse_ports, split_modules
from hw.rtl.logic_depth import DepthModel, depth_model, is_flip_flop
from hw.rtl.synth import (ModuleResult, VerilogModule, instance_counts, read_modules, stub_verilog,
                          synthesise)

REPO = Path(__file__).resolve().parents[1]


# ---- netlists by hand ------------------------------------------------------------------------------

class Netlist:
    """A Yosys-JSON-like module built gate by gate: bits are numbered from 2, like Yosys'."""

    def __init__(self):
        self.module = {"ports": {}, "cells": {}, "netnames": {}}
        self._bit = 2

    def net(self, name: str, width: int = 1, hidden: bool = False) -> list[int]:
        bits = list(range(self._bit, self._bit + width))
        self._bit += width
        self.module["netnames"][name] = {"bits": bits, "hide_name": int(hidden)}
        return bits

    def port(self, name: str, direction: str, width: int = 1) -> list[int]:
        bits = self.net(name, width)
        self.module["ports"][name] = {"direction": direction, "bits": bits}
        return bits

    def cell(self, name: str, kind: str, **pins):
        directions = {p: ("output" if p in ("Y", "Q") or p.startswith("o_") else "input") for p in pins}
        self.module["cells"][name] = {"type": kind, "port_directions": directions,
                                      "connections": {p.removeprefix("o_").removeprefix("i_"): b
                                                      for p, b in pins.items()}, "parameters": {}}
        self.module["cells"][name]["port_directions"] = {
            p.removeprefix("o_").removeprefix("i_"): d for p, d in directions.items()}

    def gate(self, name: str, a: list[int], b: list[int] | None = None) -> list[int]:
        y = self.net(name, hidden=True)
        self.cell(f"g_{name}", "$_AND_" if b else "$_NOT_", A=a, **({"B": b} if b else {}), Y=y)
        return y

    def chain(self, prefix: str, start: list[int], length: int) -> list[int]:
        net = start
        for i in range(length):
            net = self.gate(f"{prefix}{i}", net)
        return net

    def flip_flop(self, name: str, d: list[int], clk: list[int]) -> list[int]:
        q = self.net(name)
        self.cell(f"ff_{name}", "$_SDFF_PP0_", C=clk, D=d, R=clk, Q=q)
        return q


def leaf() -> dict:
    """in -(3)-> reg -(4)-> out, and in -(2)-> out directly; reg -(5)-> reg2."""
    n = Netlist()
    clk, a, y = n.port("clk", "input"), n.port("a", "input"), n.port("y", "output")
    r = n.flip_flop("r", n.chain("in", a, 3), clk)
    r2 = n.flip_flop("r2", n.chain("rr", r, 5), clk)
    out = n.gate("mix", n.chain("ro", r, 4), n.chain("io", a, 1))    # a: 2 levels, r: 5 levels
    n.cell("buf", "$_BUF_", A=out, Y=y)
    n.cell("keep", "$_AND_", A=r2, B=r2, Y=n.net("unused", hidden=True))
    return n.module


def test_depth_of_a_leaf_module_counts_each_gate_once():
    model = depth_model(leaf(), "leaf", {})
    assert model.require["a"].levels == 3 and model.require["a"].end == "r"
    assert model.arrive["y"].levels == 5 and model.arrive["y"].start == "r"
    assert model.through["a", "y"].levels == 2
    assert model.deepest.levels == 5 and (model.deepest.start, model.deepest.end) == ("r", "r2")


def test_a_parent_adds_its_childrens_models_at_their_ports():
    child = depth_model(leaf(), "leaf", {})
    n = Netlist()
    clk, x = n.port("clk", "input"), n.port("x", "input")
    src = n.flip_flop("src", n.chain("x", x, 1), clk)
    a = n.chain("pre", src, 7)                                      # src -(7)-> u.a -(3)-> u/r
    y = n.net("u_y")
    n.cell("u", "leaf", i_clk=clk, i_a=a, o_y=y)
    sink = n.flip_flop("sink", n.chain("post", y, 6), clk)          # u/r -(5)-> y -(6)-> sink
    model = depth_model(n.module, "parent", {"leaf": child})
    # One path per end register: into sink, src -(7)-> a -(through 2)-> y -(6)-> sink is deeper
    # than u/r -(5)-> y -(6)-> sink; paths inside the child are the child's own.
    assert {(p.start, p.end): p.levels for p in model.internal} == {("src", "u/r"): 7 + 3,
                                                                      ("src", "sink"): 7 + 2 + 6}
    assert model.deepest.levels == 15 and {"u.a", "u.y"} <= set(model.deepest.via)
    assert model.into["leaf"].levels == 10


def test_a_combinational_loop_is_refused_with_its_nets():
    n = Netlist()
    a = n.net("loop_a")
    b = n.net("loop_b")
    n.cell("g1", "$_NOT_", A=a, Y=b)
    n.cell("g2", "$_NOT_", A=b, Y=a)
    with pytest.raises(ValueError, match="combinational loop.*loop_a"):
        depth_model(n.module, "looped", {})


def test_an_unknown_cell_is_refused():
    n = Netlist()
    n.cell("m", "$mul", A=n.net("a"), B=n.net("b"), Y=n.net("y"))
    with pytest.raises(ValueError, match=r"'\$mul'"):
        depth_model(n.module, "coarse", {})


def test_flip_flop_types():
    assert all(map(is_flip_flop, ["$_DFF_P_", "$_SDFFE_PP0P_", "$_SDFF_PP0_", "$_DFFE_PP_", "$_DLATCH_P_"]))
    assert not any(map(is_flip_flop, ["$_AND_", "$_MUX_", "$mem_v2", "$_NOT_"]))


def test_instances_are_counted_through_the_hierarchy():
    def result(name, children):
        return ModuleResult(name, "verilog", {"$_AND_": 1}, children, [], 0.0, 0.0, DepthModel(name))
    results = {"mac": result("mac", {}), "pe": result("pe", {"mac": 4}), "op": result("op", {}),
               "top": result("top", {"pe": 3, "op": 2}), "spare": result("spare", {})}
    assert instance_counts(results, "top") == {"mac": 12, "pe": 3, "op": 2, "top": 1, "spare": 0}


# ---- Verilog modules ---------------------------------------------------------------------------

TWO_LEVEL = """/* hand-written, as Yosys writes modules */
module leafmod(clk, a, y);
  input clk;
  wire clk;
  input [3:0] a;
  wire [3:0] a;
  output [3:0] y;
  reg [3:0] y = 4'h0;
  always @(posedge clk)
    y <= a + 4'h1;
endmodule

module \\top.unit (clk, \\port$1$0 , q);
  input clk;
  wire clk;
  input [3:0] \\port$1$0 ;
  wire [3:0] \\port$1$0 ;
  output [3:0] q;
  wire [3:0] q;
  leafmod l0 (.clk(clk), .a(\\port$1$0 ), .y(q));
endmodule

module top(clk, a, q, r);
  input clk;
  wire clk;
  input [3:0] a;
  wire [3:0] a;
  output [3:0] q;
  wire [3:0] q;
  output [3:0] r;
  reg [3:0] r = 4'h0;
  wire [3:0] s;
  leafmod l1 (.clk(clk), .a(a), .y(s));
  \\top.unit  u (.clk(clk), .\\port$1$0 (s), .q(q));
  always @(posedge clk)
    r <= s / a;
endmodule
"""


def test_modules_and_escaped_ports_are_read_from_yosys_verilog():
    modules = split_modules(TWO_LEVEL)
    assert list(modules) == ["leafmod", "top.unit", "top"]
    ports = parse_ports(modules["top.unit"])
    assert [(p.name, p.direction, p.width) for p in ports] == [
        ("clk", "input", 1), ("\\port$1$0", "input", 4), ("q", "output", 4)]
    stub = stub_verilog(VerilogModule("top.unit", modules["top.unit"], ports))
    assert stub.startswith("(* blackbox *)\nmodule \\top.unit (clk, \\port$1$0 , q);")
    assert "  input [3:0] \\port$1$0 ;" in stub


def test_a_hierarchy_is_synthesised_once_per_module(tmp_path):
    """Each module once, the divider in a module of its own, counts and depths composed."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "design.v").write_text(TWO_LEVEL)
    (export / "files.f").write_text("design.v\n")
    assert list(read_modules(export)) == ["leafmod", "top.unit", "top"]
    said = []
    results, seconds, engine, version = synthesise(export, tmp_path / "work", parallel=2, progress=said.append)
    divider = "$__div_a4_b4_y4_s00"
    # a line as each module starts (one can take many minutes), then one with its time
    for name in ("leafmod", "top.unit", "top"):
        started = [i for i, line in enumerate(said) if line.startswith(f"  {name}: started (")]
        ended = [i for i, line in enumerate(said) if line.startswith(f"  {name}: ") and line.endswith(" s CPU)")]
        assert len(started) == 1 and len(ended) == 1 and started[0] < ended[0], said
    assert set(results) == {"leafmod", "top.unit", "top", divider}
    assert list(results).index("leafmod") < list(results).index("top.unit") < list(results).index("top")
    assert results["top"].children == {"leafmod": 1, "top.unit": 1, divider: 1}
    assert instance_counts(results, "top") == {"leafmod": 2, "top.unit": 1, "top": 1, divider: 1}
    assert results["leafmod"].flip_flops == 4 and results["top"].flip_flops == 4
    leaf_model = results["leafmod"].depth
    assert leaf_model.require["a"].levels > 0 and leaf_model.arrive["y"].levels == 0
    # the division starts at l1's register, so its path is the top's deepest, through the divider
    top = results["top"].depth
    assert top.deepest.start == "l1/y" and top.deepest.end == "r"
    assert top.deepest.levels >= results[divider].depth.through["A", "Y"].levels
    assert "Yosys" in version and seconds["yosys"] > 0


def test_the_clock_gate_cell_is_a_latch_and_an_and(tmp_path):
    """The vector executor's clock gate (hw/rtl/clock_gate.py, written in Verilog): the enable is
    latched while the clock is low (a path ends at the latch) and ANDed with the clock."""
    from hw.rtl.clock_gate import MODULE, VERILOG

    export = tmp_path / "export"
    export.mkdir()
    (export / f"{MODULE}.v").write_text(VERILOG)
    (export / "files.f").write_text(f"{MODULE}.v\n")
    assert [p.name for p in parse_ports(VERILOG)] == ["clk", "en", "gclk"]
    results, _, _, _ = synthesise(export, tmp_path / "work", parallel=1)
    cell = results[MODULE]
    assert cell.cells == {"$_AND_": 1, "$_DLATCH_N_": 1} and cell.flip_flops == 1
    assert cell.depth.require["en"].levels == 0 and cell.depth.require["en"].end == "en_latched"
    assert cell.depth.arrive["gclk"].levels == 1 and cell.depth.through["clk", "gclk"].levels == 1


class _GatedToy(wiring.Component):
    """A register clocked through ``hw.rtl.clock_gate`` (as the vector executor clocks its blocks)."""
    export_prefix = "gated_toy"
    export_nested = True

    @classmethod
    def export_params(cls, config):
        return {}

    def __init__(self, config, *, gate_factory=None):
        self._gate_factory = gate_factory
        super().__init__({"x": In(1), "y": Out(1)})

    def elaborate(self, platform):
        from hw.rtl.clock_gate import gate_clock

        m, inner = Module(), Module()
        held = Signal()
        inner.d.sync += held.eq(self.x)
        gate_clock(m, "held", inner, self.x, self._gate_factory)
        m.d.comb += self.y.eq(held)
        return m


def test_a_module_clocked_through_the_gate_cell_lists_it_as_a_child():
    """``ExportedModule.children`` names the clock-gate cell of a module that gates a clock with it,
    and the exporter refuses a cell it was not given (before building anything)."""
    from hw.rtl.clock_gate import MODULE, SIGNATURE, VERILOG, ClockGate

    with pytest.raises(ValueError, match="cell 'clock_gate' was not added"):
        HierarchicalExport().add(_GatedToy, get_config("tiny"), gate_factory=ClockGate)
    ex = HierarchicalExport()
    ex.add_cell(MODULE, VERILOG, SIGNATURE)
    toy = ex.add(_GatedToy, get_config("tiny"), gate_factory=ClockGate)
    assert toy.children == (MODULE,)
    assert f"{MODULE} held_gate" in toy.verilog


class _Clz(wiring.Component):
    """The kernel backend's priority encoder (``AmaranthBackend.clz``) of a registered word."""

    def __init__(self, width: int):
        self._width = width
        super().__init__({"x": In(width), "y": Out(range(width + 1))})

    def elaborate(self, platform):
        from hw.rtl.operator_backend import AmaranthBackend

        m, held = Module(), Signal(self._width)
        m.d.sync += held.eq(self.x)
        be = AmaranthBackend(m, "clz")
        m.d.comb += self.y.eq(be.clz(be.input(held, 0, (1 << self._width) - 1), self._width).value)
        return m


@pytest.mark.parametrize("width", [35, 40])      # softmax's row sum, layernorm's variance
def test_the_backends_priority_encoder_is_a_tree(width, tmp_path):
    """``clz`` grows with the log of its width: a chain of multiplexers from the top bit down (as it
    was) put one level per bit on the layernorm's row step, deeper than the vector MAC path."""
    from amaranth.back import verilog

    export = tmp_path / "export"
    export.mkdir()
    (export / "clz.v").write_text(verilog.convert(_Clz(width), name="clz"))
    (export / "files.f").write_text("clz.v\n")
    results, _, _, _ = synthesise(export, tmp_path / "work", parallel=1)
    deepest = results["clz"].depth.deepest
    assert deepest.start == "held" and deepest.levels < width // 2, deepest


def _layernorm_kernels():
    from amaranth.hdl import Fragment
    from hw.rtl.layernorm_unit import LayerNormUnit

    unit = LayerNormUnit()
    Fragment.get(unit, None)          # elaborated, so that Amaranth does not warn of it unused
    return {"row": unit._row, "element": unit._element}


@pytest.mark.parametrize("kernel", ["row", pytest.param("element", marks=pytest.mark.slow)])
def test_the_layernorm_kernels_are_no_deeper_than_tinys_vector_mac_path(kernel, tmp_path):
    """The row step (its clz was a chain: 46 levels) and the element kernel (a difference then a
    product in one stage: 44) within tiny's vector MAC path, the shallowest of the configurations
    that build a vector unit (issue 14)."""
    from amaranth.back import verilog
    from hw.rtl.synth import mac_reference

    export = tmp_path / "export"
    export.mkdir()
    (export / "kernel.v").write_text(verilog.convert(_layernorm_kernels()[kernel], name="kernel"))
    (export / "files.f").write_text("kernel.v\n")
    results, _, _, _ = synthesise(export, tmp_path / "work", parallel=1)
    deepest = max((r.depth.deepest for r in results.values() if r.depth.deepest), key=lambda p: p.levels)
    mac = mac_reference(get_config("tiny"), tmp_path / "mac")["mac"]
    assert deepest.levels <= mac["levels"], (deepest, mac)


def test_make_synth_refuses_an_unknown_configuration(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hw.rtl.synth", "--config", "Q", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "'Q'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_part_the_rtl_cannot_convert_is_refused_in_one_line(tmp_path):
    """--part vector-unit on 2,048 row lanes (vector_lanes_per_pe = 1024) is refused for its top's input
    bits after its lanes were built: 4,097 UnusedElaboratable warnings followed the one-line error
    (6,148 lines).  A stand-in run elaborates a component, builds unused ones and raises as that
    export does (Amaranth warns of unused ones once anything was elaborated)."""
    script = (
        "import sys; from amaranth.hdl import Fragment; from hw.rtl.clock_gate import ClockGate\n"
        "import hw.rtl.synth as s\n"
        "def run(*args, **kwargs):\n    Fragment.get(ClockGate(), None)\n    kept = [ClockGate() for _ in range(3)]\n"
        "    raise ValueError('too many input bits')\n"
        f"s.run = run\nsys.exit(s.main(['--config', 'tiny', '--out', {str(tmp_path / 'o')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "python -m hw.rtl.synth: error: --config tiny: the RTL cannot build it: too many input bits\n"


@pytest.mark.parametrize("part, top, modules", [("store-unit", "store_unit_", 1), ("load-unit", "load_unit_", 3),
                                               ("load-inp", "load_inp_lanes_", 1), ("dispatcher", "dispatcher_", 1),
                                               pytest.param("vector-unit", "vector_unit_", 2, marks=pytest.mark.slow),
                                               pytest.param("spatial-unit", "spatial_unit_", 1, marks=pytest.mark.slow),
                                               pytest.param("vector-executor", "vector_executor_", 4,
                                                            marks=pytest.mark.slow),
                                               ("descriptor-check", "descriptor_check_", 1)])
def test_a_unit_part_exports_the_unit_and_what_it_holds(part, top, modules):
    """``--part load-unit`` / ``load-inp`` / ``store-unit`` / ``dispatcher``: the unit is the root, its
    children (the global buffer and the LOAD_INP address generator for the load unit) exported with
    it, nothing else."""
    from hw.config import get_config
    from hw.rtl.synth import _export_part, _root

    cfg = get_config("tiny")
    export = _export_part(cfg, part)
    assert export.top.startswith(top) and len(export.modules) == modules
    assert export.modules[-1] == export.top and _root(part, cfg, export) == (export.top, 1)


@pytest.mark.slow
def test_the_walking_parts_export_the_walk_asked_for():
    """``--part vector-unit`` / ``spatial-unit`` with ``--walk-rows 4``: the wide walkers' modules
    (the module names carry the rows a cycle)."""
    from hw.rtl.synth import _export_part

    cfg = get_config("tiny")
    assert _export_part(cfg, "vector-unit", 4).top.endswith("_w4")
    assert _export_part(cfg, "spatial-unit", 4).top == "spatial_unit_v8_w4"


@pytest.mark.parametrize("jobs", ["0", "100000"])
def test_make_synth_refuses_more_jobs_than_cpus(tmp_path, capsys, jobs):
    """``--jobs 100000`` was accepted and ran as many Yosys at once as there are modules."""
    from hw.rtl.synth import MAX_JOBS, main

    with pytest.raises(SystemExit) as exit_:
        main(["--config", "tiny", "--jobs", jobs, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert f"--jobs must be between 1 and {MAX_JOBS} (the CPUs" in err and f"not {jobs}" in err
    assert not (tmp_path / "o").exists()


def test_make_synth_refuses_walk_rows_for_a_part_without_a_walker(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hw.rtl.synth", "--config", "tiny", "--part", "store-unit",
                           "--walk-rows", "4", "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--walk-rows" in proc.stderr and "store-unit" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_the_report_flags_each_module_deeper_than_the_vector_mac():
    """``critical_paths`` names the deepest path overall and, per module, the deepest path deeper
    than the MAC's (the path into a MAC's ``sum``); the summary marks those modules."""
    from hw.rtl.logic_depth import DepthModel, Path
    from hw.rtl.synth import ModuleResult, critical_paths

    def result(name, internal=(), into=None, require=None):
        depth = DepthModel(name, require=require or {}, internal=tuple(internal), into=into or {})
        return ModuleResult(name, "verilog", {}, {}, [], 0.0, 0.0, depth)

    mac = "vector_mac_c4_p8"
    results = {mac: result(mac, require={"w": Path(30, "w", "sum")}),
               "tile": result("tile", [Path(35, "a", "b")], into={mac: Path(40, "buf", "mac0/sum")}),
               "unit": result("unit", [Path(52, "x", "y"), Path(45, "x", "z"), Path(41, "u", "v")]),
               "top": result("top", [Path(44, "p", "q")])}
    crit = critical_paths(results, {name: 1 for name in results})
    assert crit["deepest"]["module"] == "unit" and crit["deepest"]["levels"] == 52
    assert crit["mac"]["levels"] == 40 and crit["mac"]["module"] == "tile" and crit["mac_tree"]["levels"] == 30
    assert [(p["module"], p["levels"]) for p in crit["deeper_than_mac"]] == [("unit", 52), ("unit", 45), ("top", 44), ("unit", 41)]
    assert [(p["module"], p["levels"], p["end"]) for p in crit["modules_deeper_than_mac"]] == [("unit", 52, "y"), ("top", 44, "q")]


def test_a_part_without_a_mac_is_compared_with_its_pe_tiles_mac_path():
    """A unit part holds no vector MAC: ``critical_paths`` compares it with ``reference`` (the MAC
    path and tree of the configuration's PE tile synthesised alone, ``mac_reference``), flags the
    deeper modules, and the summary says where the MAC path comes from."""
    from hw.rtl.logic_depth import DepthModel, Path
    from hw.rtl.synth import SynthReport, report_dict, summary_lines

    def result(name, internal):
        return ModuleResult(name, "verilog", {}, {}, [], 0.0, 0.0, DepthModel(name, internal=tuple(internal)))

    reference = {"mac": {"module": "pe_tile_x", "levels": 48, "start": "buf", "end": "mac0/sum", "via": [],
                         "reference": True},
                 "mac_tree": {"module": "vector_mac_x", "levels": 39, "start": "w", "end": "sum", "via": [],
                              "reference": True}}
    modules = {"walker": result("walker", [Path(50, "d", "pool_y_hi"), Path(47, "d", "x")]),
               "unit": result("unit", [Path(48, "d", "state")])}
    doc = report_dict(SynthReport(config={"name": "small"}, top="unit", engine="pyosys", yosys="Yosys 0.70",
                                  modules=modules, instances={"walker": 1, "unit": 1}, part="spatial-unit",
                                  seconds={"yosys": 1.0, "yosys_cpu": 1.0, "analysis": 0.1}, reference=reference))
    crit = doc["critical"]
    assert crit["mac"] == reference["mac"] and crit["mac_tree"] == reference["mac_tree"]
    assert [(p["module"], p["levels"]) for p in crit["deeper_than_mac"]] == [("walker", 50)]
    lines = summary_lines(doc)
    assert ("vector MAC path (none in this part: its PE tile synthesised alone): 48 levels in pe_tile_x: "
            "buf -> mac0/sum; the multiply-add tree alone 39 levels in vector_mac_x: w -> sum") in lines
    assert "paths deeper than the vector MAC path: 1 (the MAC's is not the critical path), deepest first:" in lines
    assert "modules deeper than the vector MAC path: walker (50)" in lines


def test_the_mac_reference_is_tinys_pe_tile_synthesised(tmp_path):
    """``mac_reference``: the MAC path ends in the PE tile's MAC, its tree is the MAC's alone and
    shallower (the path adds the operand selection); both marked as a reference."""
    from hw.rtl.synth import mac_reference

    ref = mac_reference(get_config("tiny"), tmp_path)
    assert ref["mac"]["module"].startswith("pe_tile_") and ref["mac"]["end"].endswith("/sum")
    assert ref["mac_tree"]["module"].startswith("vector_mac_")
    assert 0 < ref["mac_tree"]["levels"] < ref["mac"]["levels"]
    assert ref["mac"]["reference"] and ref["mac_tree"]["reference"]


def test_the_summary_of_a_report_of_synthesise_alone_has_no_export_time():
    """``summary_lines`` of a report whose seconds are ``synthesise``'s (no export, no total: a
    caller that synthesised an export of its own) prints the Yosys and analysis times; it raised
    ``KeyError: 'total'`` before."""
    from hw.rtl.logic_depth import DepthModel, Path
    from hw.rtl.synth import SynthReport, report_dict, summary_lines

    unit = ModuleResult("unit", "verilog", {"$_AND_": 3, "$_DFF_P_": 2}, {}, [], 1.0, 0.5,
                        DepthModel("unit", internal=(Path(7, "a", "b"),)))
    seconds = {"yosys": 2.0, "yosys_cpu": 1.5, "analysis": 0.1}
    doc = report_dict(SynthReport(config={"name": "tiny"}, top="unit", engine="pyosys", yosys="Yosys 0.70",
                                  modules={"unit": unit}, instances={"unit": 1}, seconds=seconds, part="spatial-unit"))
    lines = summary_lines(doc)
    assert lines[0].endswith("Yosys 2 s with 2 s of CPU, depth analysis 0 s")
    assert "deepest register-to-register path: 7 levels in unit: a -> b" in lines
    doc["seconds"] = {**seconds, "export": 3.0, "total": 5.2}
    assert summary_lines(doc)[0].endswith("5 s (export 3 s, Yosys 2 s with 2 s of CPU, depth analysis 0 s)")


def test_the_summary_prints_long_module_names_whole():
    """E's module names run past 44 characters (``dispatcher_n16_..._g128``): the summary's module
    column widens to the longest instead of cutting their heads off."""
    from hw.rtl.logic_depth import DepthModel, Path
    from hw.rtl.synth import SynthReport, report_dict, summary_lines

    long_name = "dispatcher_n16_k32_c32_i1024_w128_d512_p256_m1048576_g128"
    modules = {name: ModuleResult(name, "verilog", {"$_AND_": 1}, {}, [], 1.0, 0.5,
                                  DepthModel(name, internal=(Path(3, "a", "b"),)))
               for name in (long_name, "unit")}
    doc = report_dict(SynthReport(config={"name": "E"}, top="unit", engine="pyosys", yosys="Yosys 0.70",
                                  modules=modules, instances={long_name: 1, "unit": 1},
                                  seconds={"yosys": 2.0, "yosys_cpu": 1.5, "analysis": 0.1}, part="accelerator"))
    rows = [line.split()[0] for line in summary_lines(doc)[2:4]]
    assert sorted(rows) == sorted([long_name, "unit"])


@pytest.mark.parametrize("args, needle", [
    (["--config", "{tmp}/l63.toml"], "vector_lanes = num_pe x vector_lanes_per_pe = 7 x 9 = 63 must be a power of two"),
    (["--config", "{tmp}/l63.toml", "--part", "vector-unit"], "7 x 9 = 63 must be a power of two"),
    (["--part", "vector-unit", "--walk-rows", "3"], "--walk-rows must divide the 8 row lanes of tiny (1, 2, 4, 8), not 3"),
    (["--timeout", "0"], "--timeout must be a number of seconds above 0, at most 604800 (a week), not 0"),
])
def test_synth_refuses_before_any_export(args, needle, tmp_path, capsys):
    """What make verilog refuses, synth refuses in the same words before it exports (a folder of
    63 lanes was left half-made); a walk that is no divisor of the lanes is not rounded silently."""
    from hw.rtl import synth
    (tmp_path / "l63.toml").write_text('base = "tiny"\nnum_pe = 7\nvector_lanes_per_pe = 9\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        synth.main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l63.toml"]


def test_an_interrupted_run_leaves_no_empty_work_folder(tmp_path, monkeypatch):
    """Interrupted before Yosys wrote anything: nothing stays behind, and no log is claimed kept."""
    from hw.rtl import synth

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_export_part", interrupted)
    said = []
    with pytest.raises(KeyboardInterrupt):
        synth.run(get_config("tiny"), tmp_path / "out", progress=said.append)
    assert list(tmp_path.iterdir()) == [] and not any("kept in" in line for line in said)


@pytest.mark.parametrize("timeout", ["1e300", "inf", "nan"])
def test_make_synth_refuses_a_timeout_its_timer_cannot_wait(tmp_path, capsys, monkeypatch, timeout):
    """``--timeout 1e300`` (or inf) was taken: each Yosys run's timer thread then died with an
    OverflowError traceback on stderr, and the run had no limit."""
    from hw.rtl import synth

    monkeypatch.setattr(synth, "run", lambda *a, **k: pytest.fail("ran with --timeout " + timeout))
    with pytest.raises(SystemExit) as exit_:
        synth.main(["--config", "tiny", "--timeout", timeout, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "--timeout must be a number of seconds above 0, at most 604800" in err
    assert not (tmp_path / "o").exists()


def test_a_synthesis_never_replaces_another_configurations_report(tmp_path, monkeypatch):
    """``make synth CFG=tiny OUT=build/synth/E`` replaced E's report.json (the folder named no run)."""
    from hw.cli import RUN_MARK, OutputError
    from hw.rtl import synth

    out = tmp_path / "E"
    out.mkdir()
    for name, text in ((RUN_MARK, "E\n"), ("report.json", "{}\n"), ("summary.txt", "E\n")):
        (out / name).write_text(text)
    monkeypatch.setattr(synth, "_export_part", lambda *a, **k: pytest.fail("exported before the folder was checked"))
    with pytest.raises(OutputError, match=r"holds the results of another run \(E\), never replaced by this one "
                                          r"\(tiny_store-unit\)"):
        synth.run(get_config("tiny"), out, part="store-unit")
    assert sorted(p.name for p in out.iterdir()) == sorted([RUN_MARK, "report.json", "summary.txt"])
    assert synth.run_name(get_config("tiny"), "vector-unit", 4) == "tiny_vector-unit_w4"
