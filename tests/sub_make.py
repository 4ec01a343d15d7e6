"""Run ``make`` from a test as a user would: without the variables of a ``make test`` that runs the
tests (``make test ARGS=--durations=9`` would pass its ARGS on to the target under test)."""

from __future__ import annotations

import os
import subprocess

#: What a parent make exports to the makes it starts.
PARENT_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def run_make(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PARENT_MAKE}
    return subprocess.run(["make", *args], env=env, capture_output=True, text=True, **kwargs)
