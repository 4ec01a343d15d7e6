"""The command-line options that override fields of the accelerator configuration (``--dram-mib
64``), shared by every tool that takes ``--config``: ``make sim``, ``make run``, ``make paths`` and
``make rdd`` accept the same ones (``make sweep`` varies fields by ``GRID=``)."""

from __future__ import annotations

import argparse

from hw.cli import UsageError, number_type
from hw.config import AcceleratorConfig
from hw.config_file import ConfigError, in_units_of, load_config

#: (option, the configuration field it sets, the field's units per the option's, help).
OVERRIDES = (
    ("dram_bytes_per_cycle", "dram_bytes_per_cycle", 1, "DRAM bandwidth in bytes per cycle"),
    ("dram_latency", "dram_latency", 1, "DRAM latency in cycles"),
    ("clock_ghz", "clock_ghz", 1, "clock for times, 0.01 to 20 GHz"),
    ("global_buf_kib", "global_buf_bytes", 1024, "global buffer capacity in KiB"),
    ("gb_bus_bytes_per_cycle", "gb_bus_bytes_per_cycle", 1,
     "global-buffer-to-PE bus and global-buffer write port in bytes per cycle (0: 4 x C0, at least the DRAM rate)"),
    ("dram_mib", "dram_mib", 1, "DRAM capacity in MiB (default: the configuration's); the program's image must fit it"),
)


def add_override_options(p: argparse.ArgumentParser) -> None:
    """``--dram-bytes-per-cycle`` ... ``--dram-mib`` (``OVERRIDES``) on ``p``."""
    for option, field, _, text in OVERRIDES:
        kind = float if field == "clock_ghz" else int
        p.add_argument(f"--{option.replace('_', '-')}", type=number_type(kind, text), default=None, help=text)


class _SetByGrid(argparse.Action):
    """An override option given to a sweep, which sets configuration fields by its grid instead."""

    def __call__(self, parser, namespace, value, option_string=None):
        point = f"{self.dest}={value}"
        parser.error(f"{option_string} {value}: a sweep sets configuration fields by its grid: "
                     f"GRID=\"{point}\" (--grid '{point}'), over CFG= (--base)")


def add_grid_pointers(p: argparse.ArgumentParser) -> None:
    """The override options on a sweep's parser, each refused with the grid that sets its field
    (argparse would call them unrecognized)."""
    for option, *_ in OVERRIDES:
        p.add_argument(f"--{option.replace('_', '-')}", dest=option, action=_SetByGrid, help=argparse.SUPPRESS)


def _overrides(args) -> dict:
    """Configuration fields the options override."""
    return {field: getattr(args, option) * scale for option, field, scale, _ in OVERRIDES
            if getattr(args, option, None) is not None}


def override_error(args, e: ConfigError) -> UsageError:
    """``e`` prefixed with the option that set the field it names (the option may name other units)."""
    for option, field, _, _ in OVERRIDES:
        value = getattr(args, option, None)
        if value is not None and field in str(e):
            said = f"bad configuration override: {in_units_of(e.field_error, [option])}" if e.field_error else e
            return UsageError(f"--{option.replace('_', '-')} {value}: {said}")
    return UsageError(str(e))


def config_from_args(args) -> AcceleratorConfig:
    """``args.config`` (a preset or a .toml file) with the options' overrides; UsageError for a bad
    configuration or value (naming the option that set it)."""
    try:
        return load_config(args.config, **_overrides(args))
    except ConfigError as e:
        raise override_error(args, e) from None
