"""Names of the simulator's output folders, and the plot formats.

A result folder is named by everything that changes its content, so that two
runs that differ in any input never share a folder: the network
(``mapper.flops.model_tag``: model, variant, size), the configuration
(``config_tag``: the preset and every field that differs from it, or for a
configuration that is no preset its name and a hash of its fields), the modes
and input files of the tool.  The folder itself is written as a whole
(``hw.cli.StagedDir``).
"""

from __future__ import annotations

import dataclasses

from hw.cli import UsageError, join_name, name_token
from hw.config import PRESETS, AcceleratorConfig
from hw.config_file import hashed_label


__all__ = ["config_tag", "run_name", "parse_formats", "add_plot_options", "PLOT_FORMATS"]

PLOT_FORMATS = ("png", "pdf", "svg")
#: How an overridden field reads in a folder name (others read ``<field><value>``).
_FIELD_TAGS = {
    "dram_bytes_per_cycle": lambda v: f"dram{v}B",
    "dram_latency": lambda v: f"lat{v}",
    "clock_ghz": lambda v: f"{float(v)!r}GHz",
    "global_buf_bytes": lambda v: f"gb{v // 1024}KiB" if v % 1024 == 0 else f"gb{v}B",
    "gb_bus_bytes_per_cycle": lambda v: f"gbbus{v}B",
}


#: Overrides a configuration named like a preset may have and still be named by them (``E_num_pe32``).
MAX_OVERRIDE_TAGS = 4


def config_tag(cfg: AcceleratorConfig) -> str:
    """``E`` for the preset E; ``E_dram384B_lat200_1.5GHz`` with overrides (the values of
    ``sim.simulator.IDEAL_MEMORY`` too: ``ideal_memory`` names the mode that times a real memory's
    mappings with them, ``sim.run.run_dir``); ``<name>-<hash>`` for a configuration that is no
    preset, or has more than ``MAX_OVERRIDE_TAGS`` overrides."""
    return name_token("_".join(p for p in config_parts(cfg) if p))


def config_parts(cfg: AcceleratorConfig) -> tuple[str, str]:
    """``config_tag`` as (the configuration's name, its overrides' tag or ``""``), so that a
    name holding ``_`` (``e_small``) is not mistaken for an override."""
    base = PRESETS.get(cfg.name)
    tags = None if base is None else _override_tags(cfg, base)
    if tags is None or len(tags) > MAX_OVERRIDE_TAGS:
        # no preset, or one only in name: its overrides would crowd the run's own parts out of its name
        return hashed_label(cfg), ""
    return cfg.name, name_token("_".join(tags))


def _override_tags(cfg: AcceleratorConfig, base: AcceleratorConfig) -> list[str]:
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if getattr(cfg, f.name) != getattr(base, f.name)}
    return [_FIELD_TAGS.get(k, lambda v, k=k: f"{k}{v}")(v) for k, v in changed.items()]


def run_name(*parts: str) -> str:
    """The non-empty ``parts`` joined with ``_`` (long names shortened with a hash)."""
    return join_name(parts)


def add_plot_options(parser, drawn: str) -> None:
    """``--format`` and ``--no-plots`` of a tool that draws ``drawn`` (``"the plots"``): one spelling in
    every tool; ``--no-plot``, which sim.paths and sim.sweep took before, is the same option."""
    parser.add_argument("--format", default=None, help="plot formats: png (default), pdf, svg, or several: pdf,png")
    parser.add_argument("--no-plots", "--no-plot", dest="no_plots", action="store_true",
                        help=f"do not draw {drawn}")


def parse_formats(text: str | None, no_plots: bool = False) -> tuple[str, ...]:
    """``"pdf"`` or ``"png,svg"`` -> the plot formats (none with ``no_plots``); UsageError naming a
    format that is none of ``PLOT_FORMATS`` or is given twice, or a format given with ``no_plots``."""
    if no_plots:
        if text is not None:
            raise UsageError(f"--format {text} with --no-plots: a format is for plots, which --no-plots "
                             f"leaves out; give one or the other")
        return ()
    if text is None:
        return ("png",)
    given = [n.strip().lower() for n in text.split(",")]
    bad = [n for n in given if n not in PLOT_FORMATS]
    twice = [n for n in dict.fromkeys(given) if given.count(n) > 1]
    allowed = f"choose {', '.join(PLOT_FORMATS)} (or several, comma-separated, each once)"
    if bad or twice:
        raise UsageError(f"bad --format {text!r}: " + (f"{twice[0]} given twice; " if not bad else "") + allowed)
    return tuple(given)
