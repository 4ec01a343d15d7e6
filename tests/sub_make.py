"""Run ``make`` from a test as a user would: without the variables of a ``make test`` that runs the
tests.  A parent make exports its own flags and every variable set on its command line, so
``make regress ARGS=--durations=9`` would pass its ARGS on to the target under test."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

#: What a parent make exports to the makes it starts.
PARENT_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def makefile_variables() -> set[str]:
    """The variables a user sets on make's command line (``NAME ?= default`` in the Makefile)."""
    return set(re.findall(r"^(\w+)\s*\?=", MAKEFILE.read_text(), re.M))


def run_make(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    inherited = set(PARENT_MAKE) | makefile_variables()
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return subprocess.run(["make", *args], env=env, capture_output=True, text=True, **kwargs)
