"""The order the suite runs in.

``make test`` and ``make regress`` run on two workers (pytest-xdist) that take one test at a time
(``--maxschedchunk 1``, the Makefile's).  xdist otherwise hands each worker a block of consecutive
tests, so the cosimulations, which come first and take minutes each, all ran on one worker while
the other finished early.  Longest first, the two share them: the cosimulations before everything
else, and their slow cases (whole networks, the larger configurations) before the quick ones.
"""

from __future__ import annotations


def _rank(item) -> tuple[bool, bool]:
    cosim = "cosim" in item.path.parts
    slow = item.get_closest_marker("slow") is not None
    return not cosim, not slow


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=_rank)      # stable: each group keeps the files' order
