"""Every tool's options read alike: each says what it does in ``--help``, and a tool that draws plots
takes ``--no-plots`` (and ``--no-plot``, the spelling sim.paths and sim.sweep took before)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

#: The project's command-line tools (``python -m <module>``; ``cosim.campaign`` is make fuzz's).
TOOLS = ("sim.accuracy", "sim.area", "sim.bench", "sim.energy", "sim.infer", "sim.paths", "sim.rdd", "sim.replay", "sim.run", "sim.sweep",
         "mapper.flops", "mapper.onnx_export", "hw.config_file", "hw.rtl.export", "hw.rtl.synth", "hw.rtl.bench",
         "cosim.campaign")
#: The tools that draw plots, and the arguments each requires besides.
PLOTTING = {"sim.run": ["--model", "segformer_b0", "--config", "E"], "sim.paths": ["--model", "segformer_b2"],
            "sim.sweep": ["--model", "segformer_b0"]}


class _Parsed(Exception):
    """Raised in place of parsing, carrying the tool's parser."""


def tool_parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``module``'s main builds (caught as it parses, before any work)."""
    def caught(parser, args=None, namespace=None):
        raise _Parsed(parser)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
    with pytest.raises(_Parsed) as got:
        importlib.import_module(module).main([])
    monkeypatch.undo()
    return got.value.args[0]


@pytest.mark.parametrize("module", TOOLS)
def test_every_option_says_what_it_does(module, monkeypatch):
    """``python -m sim.rdd --help`` showed ``--accuracy ACCURACY`` and nothing more (sim.paths'
    ``--no-plot``, sim.bench's ``--out`` and ``--repeat`` alike)."""
    parser = tool_parser(module, monkeypatch)
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
            if not (a.help and a.help.strip())]
    assert not bare, f"{module}: options without help: {bare}"


@pytest.mark.parametrize("module", sorted(PLOTTING))
@pytest.mark.parametrize("spelling", ["--no-plots", "--no-plot", "--no-p"])
def test_every_plotting_tool_takes_both_spellings_of_no_plots(module, spelling, monkeypatch):
    """sim.run took only ``--no-plots``, sim.paths and sim.sweep only ``--no-plot`` (each refused the
    other's); both are one option now, ``--no-plots`` first in --help (an abbreviation is that
    option, not an ambiguous one)."""
    parser = tool_parser(module, monkeypatch)
    args = parser.parse_args(PLOTTING[module] + [spelling])
    assert args.no_plots is True
    assert parser.parse_args(PLOTTING[module]).no_plots is False
    assert "--no-plots, --no-plot" in parser.format_help()


class _Reached(Exception):
    """The tool went on to make its output folder: the options were accepted."""


@pytest.mark.parametrize("module", sorted(PLOTTING))
@pytest.mark.parametrize("given, said", [
    (["--format", "pdf,PDF"], "error: bad --format 'pdf,PDF': pdf given twice; choose png, pdf, svg "),
    (["--format", "svg", "--no-plots"], "error: --format svg with --no-plots: a format is for plots, which "
                                        "--no-plots leaves out; give one or the other"),
])
def test_a_repeated_format_or_one_without_plots_is_refused(module, given, said, monkeypatch, capsys):
    """``FORMAT=pdf,pdf`` drew each plot once without a word, and ``FORMAT=svg ARGS=--no-plots`` drew
    none: both are refused in one line, status 2, before the output folder is made."""
    tool = importlib.import_module(module)
    monkeypatch.setattr(tool, "StagedDir", lambda *a, **k: (_ for _ in ()).throw(_Reached()))
    assert tool.main(PLOTTING[module] + given) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err


@pytest.mark.parametrize("module", ["sim.run", "sim.sweep", "sim.paths", "sim.rdd", "sim.infer", "mapper.flops"])
def test_every_model_option_lists_the_zoo(module, monkeypatch):
    """``python -m sim.paths --help`` and ``sim.rdd --help`` said only "a zoo model" / "model whose paths
    are candidates" where sim.run listed the zoo's models; every tool's --model takes
    ``mapper.flops.MODEL_HELP``."""
    from mapper.flops import MODEL_HELP
    from mapper.workloads import MODEL_NAMES
    model, = [a for a in tool_parser(module, monkeypatch)._actions if "--model" in a.option_strings]
    assert MODEL_HELP in model.help and all(name in model.help for name in MODEL_NAMES)


@pytest.mark.parametrize("module", ["sim.area", "sim.energy"])
def test_the_model_tables_read_their_arguments(module):
    """``python -m sim.area --bogus`` and ``python -m sim.energy --help`` ignored their arguments and
    printed their tables; they have parsers now: --help describes the tool, an unknown option is
    refused with one line and status 2, and no arguments still print the table."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parent.parent)
    helped = run("--help")
    assert helped.returncode == 0 and helped.stdout.startswith(f"usage: python -m {module}"), helped.stdout
    refused = run("--bogus")
    assert refused.returncode == 2 and not refused.stdout, refused.stdout
    assert refused.stderr.count("\n") == 1 and "--bogus" in refused.stderr, refused.stderr
    table = run()
    assert table.returncode == 0 and "config" in table.stdout, table.stderr
