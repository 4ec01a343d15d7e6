"""`python -m hw.rtl.export`: deterministic export directories (one file per module, files.f,
config.json), hierarchy and ports checked with pyverilog, Verilator lint, presets of both vector
widths, and one-line errors on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import get_config
from hw.timing import TOKEN_FIFOS
from hw.rtl.clock_gate import MODULE as GATE_CELL
from hw.rtl.export import (CONFIG_JSON, FILE_LIST, SRC_ATTRIBUTE, export_files, export_to_directory, main, parse_ports,
                           split_modules)
from shared_exports import exported

ROOT = Path(__file__).resolve().parents[1]
VERILATOR = Path(__import__("verilator").__file__).parent / "bin" / "verilator"
TINY = get_config("tiny")

#: Warnings waived in the lint of the exported accelerator (reasons in docs/rtl.md):
EXPORT_LINT_WAIVERS = {
    "UNUSEDSIGNAL",     # unused fields of data-layout ports and of the decoded instruction word
    "PROCASSINIT",      # Amaranth's init= is both the power-on and the reset value
    "WIDTHEXPAND",      # Yosys relies on context-determined sign/zero extension
    "WIDTHTRUNC",       # Yosys' `!x` on multi-bit values and indexing by shifting a concatenation
    "CASEINCOMPLETE",   # casez after a default assignment: values not listed keep the default
    "DECLFILENAME",     # the vector executor's file holds its nested modules (export_nested)
}


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """tiny's export directory, written from the suite's shared export (``shared_exports``)."""
    out = tmp_path_factory.mktemp("tiny_a") / "verilog"
    out.mkdir()
    result = exported(TINY)
    for name, blob in export_files(result, TINY).items():
        (out / name).write_bytes(blob)
    return out, result


@pytest.mark.slow          # a second export of tiny (40 s of make test); make regress runs it
def test_export_is_byte_identical_across_directories(tiny_dir, tmp_path):
    """A fresh export, elsewhere, gives the same bytes as the suite's shared one."""
    first, result = tiny_dir
    second = tmp_path / "elsewhere" / "tiny"
    export_to_directory(TINY, second)
    a, b = _files(first), _files(second)
    assert sorted(a) == sorted([f"{m}.v" for m in result.modules] + [FILE_LIST, CONFIG_JSON])
    for name in a:
        assert a[name] == b[name], f"{name} differs between two exports"
    text = b"".join(a.values()).decode()
    assert str(first) not in text and str(second) not in text and not SRC_ATTRIBUTE.search(text)
    assert a[FILE_LIST].decode().split() == [f"{m}.v" for m in result.modules]


def _instances(tree):
    from pyverilog.vparser import ast as vast

    found = {}
    for mod in tree.description.definitions:
        names = []

        def walk(node):
            if isinstance(node, vast.Instance):
                names.append(node.module)
            for child in node.children():
                walk(child)

        walk(mod)
        found[mod.name] = names
    return found


#: The units of the accelerator, each a module of its own (export prefixes), and how many
#: instances of each the top holds (a token FIFO per link of hw.timing.TOKEN_LINKS: five since s2l).
UNITS = {"dispatcher": 1, "insn_queue": 3, "token_fifo": len(TOKEN_FIFOS), "load_unit": 1, "compute_unit": 1, "store_unit": 1,
         "pe_array": 1, "vector_executor": 1}


def test_pyverilog_hierarchy_and_ports(tiny_dir, tmp_path):
    from pyverilog.vparser import ast as vast
    from pyverilog.vparser.parser import VerilogParser

    out, result = tiny_dir
    doc = json.loads((out / CONFIG_JSON).read_text())
    assert doc["config"] == TINY.to_dict() and doc["top"] == result.top
    assert doc["modules"] == list(result.modules) and result.modules[-1] == result.top
    # the vector unit's files (modules nested under the executor, the unit and the row lane) are
    # not parsed: pyverilog takes minutes on them; the top's instance checks the executor's ports
    nested = ("vector_executor_", "vector_unit_", "vector_row_lane_")
    parsed = [name for name in result.modules if not name.startswith(nested)]
    unit, = [m for m in result.modules if m.startswith("vector_unit_")]
    lane, = [m for m in result.modules if m.startswith("vector_row_lane_")]
    # one row-lane module, instantiated once per lane (the export does not grow a module per lane)
    assert len(re.findall(rf"^\s*{lane} \w+ \(", (out / f"{unit}.v").read_text(), re.MULTILINE)) == TINY.vector_lanes
    parser = VerilogParser(outputdir=str(tmp_path), debug=False)     # a second each to build: one for all
    trees = {name: parser.parse((out / f"{name}.v").read_text()) for name in parsed}
    inst = {name: _instances(tree)[name] for name, tree in trees.items()}
    by_prefix = {prefix: [m for m in result.modules if m.startswith(prefix + "_")] for prefix in UNITS}
    for prefix, count in UNITS.items():
        assert sum(inst[result.top].count(m) for m in by_prefix[prefix]) == count, prefix
    pe_array, = by_prefix["pe_array"]
    pe, = [m for m in result.modules if m.startswith("pe_tile_")]
    mac, = [m for m in result.modules if m.startswith("vector_mac_")]
    load, = by_prefix["load_unit"]
    assert inst[pe_array].count(pe) == TINY.num_pe and inst[pe].count(mac) == TINY.k0
    assert inst[pe_array].count(GATE_CELL) == TINY.num_pe        # each PE on a gated clock of its own
    # the load unit's global buffer and address generator, each on a gated clock; the store unit's
    # softmax epilogue on one too (built where the vector executor is, as on tiny)
    assert sorted(inst[load]) == sorted([GATE_CELL] * 2 + [m for m in result.modules
                                                           if m.startswith(("global_buffer_", "load_inp_"))])
    store, = by_prefix["store_unit"]
    assert inst[store].count(GATE_CELL) == 1
    ports = {}
    for node in trees[result.top].description.definitions[0].items:
        if isinstance(node, vast.Decl):
            for d in node.list:
                if isinstance(d, (vast.Input, vast.Output)):
                    width = 1 if d.width is None else int(d.width.msb.value) - int(d.width.lsb.value) + 1
                    ports[d.name] = ("input" if isinstance(d, vast.Input) else "output", width)
    assert ports == {p["name"]: (p["direction"], p["width"]) for p in doc["ports"]}
    assert {"clk", "rst", "start", "done", "error", "imem_data", "dram_rd__addr", "dram_wr__data"} <= set(ports)


def test_unit_ports_are_named_after_their_buses(tiny_dir):
    """Every module's ports are its signature's members (``ld__data``, ``insn__valid``), never a
    Yosys-made ``port$<n>``."""
    out, result = tiny_dir
    for name in result.modules:
        text = (out / f"{name}.v").read_text()
        if len(split_modules(text)) > 1:   # nested modules (export_nested): their ports are Yosys', its own not
            assert not [p.name for p in parse_ports(split_modules(text)[name]) if "port$" in p.name], name
        else:
            assert "port$" not in text, name
    load = (out / f"{next(m for m in result.modules if m.startswith('load_unit_'))}.v").read_text()
    assert re.search(r"output \[\d+:0\] ld__data;", load) and "input insn__valid;" in load


def _lint(out: Path, top: str) -> subprocess.CompletedProcess:
    waivers = [f"-Wno-{w}" for w in sorted(EXPORT_LINT_WAIVERS)]
    return subprocess.run([str(VERILATOR), "--lint-only", "-Wall", *waivers, "--top-module", top,
                           "-f", FILE_LIST], cwd=out, capture_output=True, text=True, timeout=600)


def test_the_pe_tiles_are_a_hierarchical_block_from_hier_min_pes():
    """The cosimulation's build (``TB_BUILD``) names the cell the exported accelerator has (renaming
    it in hw/rtl must not quietly leave E's 16 PE tiles specialised apart again); tiny's two tiles
    stay flat, sixteen would not."""
    from cosim import runner
    from cosim.accel_cases import HIER_BLOCK_CELLS, HIER_MIN_PES
    tiny = exported(TINY).verilog
    [tile] = runner.hier_block_modules(tiny, HIER_BLOCK_CELLS)
    assert not runner.hier_block_modules(tiny, HIER_BLOCK_CELLS, HIER_MIN_PES)
    sixteen = tiny + "".join(f"  {tile} \\pe${i}  (\n  );\n" for i in range(16))   # escaped names too
    assert runner.hier_block_modules(sixteen, HIER_BLOCK_CELLS, HIER_MIN_PES) == [tile]
    assert get_config("E").num_pe >= HIER_MIN_PES > get_config("small").num_pe


def test_tiny_lints_clean(tiny_dir):
    out, result = tiny_dir
    proc = _lint(out, result.top)
    assert proc.returncode == 0, proc.stderr[-4000:]


#: What is not Verilog code: strings, comments and attributes (``src`` names Python files by path).
_NOT_CODE = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/|\(\*.*?\*\)', re.S)


def test_no_division_or_modulo_in_the_export(tiny_dir):
    """Addresses and counts come from counters (issue 14): no module holds a ``/`` or ``%``
    operator, which synthesis would build as a divider.  tiny holds every unit E does, and the
    vector executor."""
    out, _ = tiny_dir
    for path in sorted(out.glob("*.v")):
        code = _NOT_CODE.sub(" ", path.read_text())
        at = re.search(r"[/%]", code)
        assert at is None, f"{path.name}: {code[max(0, at.start() - 60):at.end() + 20]!r}"
    assert _NOT_CODE.sub(" ", 'x = a / b; // c/d\n(* src = "e/f.py" *) y = g % 4;').count("/") == 1


#: H..M as in Table II have gb_bus_bytes = 4 x C0 = 64 below the 128 B/cycle DRAM, which the
#: load unit refuses (check_rtl_config); with a 128-byte bus they build.
PRESET_CASES = [("M", {}), ("G", {})]     # one K0 = C0 = 16 and one K0 = C0 = 32 preset


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", PRESET_CASES, ids=lambda c: c if isinstance(c, str) else "")
def test_paper_preset_exports_and_lints(name, overrides, tmp_path):
    cfg = get_config(name, **overrides)
    result = export_to_directory(cfg, tmp_path)
    doc = json.loads((tmp_path / CONFIG_JSON).read_text())
    assert doc["config"]["k0"] == doc["config"]["c0"] == cfg.k0
    pe_array = (tmp_path / f"{next(m for m in result.modules if m.startswith('pe_array_'))}.v").read_text()
    pe_tile = next(m for m in result.modules if m.startswith("pe_tile_"))
    assert pe_array.count(f"\n  {pe_tile} ") == cfg.num_pe      # PE-tile instances
    if VERILATOR.exists():
        proc = _lint(tmp_path, result.top)
        assert proc.returncode == 0, proc.stderr[-4000:]


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "hw.rtl.export", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, names", [
    (["--config", "Z"], "--config"),
    (["--config", "tiny", "--set", "global_buf_bytes=16400"], "global_buf_bytes"),
    (["--config", "tiny", "--set", "no_such_field=1"], "no_such_field"),
    (["--config", "tiny", "--set", "k0=3"], "k0"),
    (["--config", "tiny", "--top", "cpu"], "--top"),
    # a field set twice: the last value was kept silently
    (["--config", "tiny", "--set", "num_pe=2", "--set", "num_pe=4"],
     "--set sets num_pe 2 times ('num_pe=2', 'num_pe=4'); set each field once"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, names):
    out = tmp_path / "out"
    proc = _cli(tmp_path, *args, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], proc.stderr
    assert not out.exists()


def test_main_writes_default_layout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "tiny", "--top", "pe_array"]) == 0
    files = _files(tmp_path / "build" / "verilog" / "tiny_pe_array")
    assert FILE_LIST in files and CONFIG_JSON in files
    assert json.loads(files[CONFIG_JSON])["top"].startswith("pe_array_")
    assert "pe_array_" in capsys.readouterr().out


def test_main_names_the_files_it_wrote_and_their_size(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--config", "tiny", "--top", "pe_tile", "--out", str(out)]) == 0
    line, = capsys.readouterr().out.splitlines()
    top = json.loads((out / CONFIG_JSON).read_text())["top"]
    files = sorted(p.name for p in out.iterdir() if p.name != ".run")      # the run mark is no output
    assert f"wrote {len(files)} files" in line and str(out) in line and f"{top}.v" in line, line
    assert FILE_LIST in line and CONFIG_JSON in line and re.search(r"\d+(\.\d)? kB", line), line


def test_export_reports_each_module_before_converting_it(tmp_path):
    """Each module's line says which of how many it is (``module 18``, never ``of 19``, before)."""
    stages = []
    result = export_to_directory(get_config("tiny"), tmp_path, "pe_tile", progress=stages.append)
    from hw.rtl.clock_gate import MODULE as CLOCK_GATE          # a cell written in Verilog: not converted
    assert [s.split(", ")[-1] for s in stages[:-1]] == [m for m in result.modules if m != CLOCK_GATE], stages
    counted = [re.match(r"converting module (\d+) of (\d+), ", s) for s in stages[:-1]]
    assert all(counted) and {int(c[2]) for c in counted} == {len(result.modules)}, stages
    assert int(counted[-1][1]) == len(result.modules), stages
    assert stages[-1] == f"writing {len(result.modules) + 2} files"


def test_stage_ticker_reports_long_steps_only():
    import io
    import time

    from hw.cli import StageTicker

    quick, slow = io.StringIO(), io.StringIO()
    with StageTicker("quick", stream=quick, period=0.05) as ticker:
        time.sleep(0.3)             # the checks before the first stage: a refusal stays one line
    with StageTicker("quick", stream=quick, period=0.5) as ticker:
        ticker.stage("a step shorter than the period")
    with StageTicker("slow", stream=slow, period=0.05) as ticker:
        ticker.stage("converting module 1, vector_mac")
        time.sleep(0.3)
    assert quick.getvalue() == ""
    lines = slow.getvalue().splitlines()
    assert lines and all(re.fullmatch(r"slow: converting module 1, vector_mac, \d+ s elapsed", x) for x in lines), lines
    assert len(set(lines)) == len(lines), lines     # a line equal to the last is left out of a log
    stopped = io.StringIO()             # stop(): a step that reports on its own has begun
    with StageTicker("stopped", stream=stopped, period=0.05) as ticker:
        ticker.stage("building")
        time.sleep(0.2)
        ticker.stop()
        before = stopped.getvalue()
        time.sleep(0.2)
    assert before and stopped.getvalue() == before


@pytest.mark.parametrize("kind", ["file", "foreign", "own_verilog"])
def test_an_output_that_cannot_be_written_is_refused_before_exporting(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("mine")
    elif kind == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:                                       # a user's Verilog and file list: never replaced
        out.mkdir()
        (out / "mine.v").write_text("module mine; endmodule\n")
        (out / FILE_LIST).write_text("mine.v\n")
    proc = _cli(tmp_path, "--config", "tiny", "--top", "pe_array", "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(out) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]      # nothing staged left behind
    if kind == "own_verilog":
        assert (out / "mine.v").read_text() == "module mine; endmodule\n"


def test_an_output_folder_of_someone_elses_verilog_is_refused_saying_why(tmp_path):
    """make verilog never replaces a user's own Verilog: without a config.json of an earlier export,
    or with one that does not list every .v file, the folder is refused naming the files."""
    import json as _json
    from hw.cli import OutputError
    from hw.rtl.export import _check_earlier_export
    (tmp_path / "mine.v").write_text("module mine; endmodule\n")
    with pytest.raises(OutputError, match=r"holds mine.v but no readable config.json"):
        _check_earlier_export(tmp_path)
    (tmp_path / "config.json").write_text(_json.dumps({"modules": ["other"]}))
    with pytest.raises(OutputError, match=r"config.json does not list mine.v"):
        _check_earlier_export(tmp_path)
    (tmp_path / "config.json").write_text(_json.dumps({"modules": ["mine"]}))
    _check_earlier_export(tmp_path)


def test_the_module_count_of_progress_is_the_accelerators():
    """The ``of N`` of ``make verilog``'s progress counts the modules the export converts."""
    from hw.rtl.export import _add_accelerator, _ModulePlan
    plan = _ModulePlan()
    _add_accelerator(plan, TINY)
    assert tuple(plan.modules) == exported(TINY).modules
