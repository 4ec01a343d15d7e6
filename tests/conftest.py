"""The order the suite runs in, and which tests share a worker.

``make test`` and ``make regress`` run on two workers (pytest-xdist, ``--dist loadgroup``, the
Makefile's).  Longest first, the two share the cosimulations, which take minutes each: they run
before everything else, and their slow cases (whole networks, the larger configurations) before
the quick ones.  A test module whose tests share a fixture of module scope (an RTL unit simulated
once for all its cases) is one group, run by one worker: split over both, each worker set the
fixture up again (the vector unit's 30 s and the spatial unit's 20 s, twice a run).
"""

from __future__ import annotations

import pytest


def _rank(item) -> tuple[bool, bool]:
    cosim = "cosim" in item.path.parts
    slow = item.get_closest_marker("slow") is not None
    return not cosim, not slow


def _shares_module_fixture(item) -> bool:
    """The test uses a fixture of module or session scope defined in its own module."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    module = getattr(item, "module", None)
    for defs in info.name2fixturedefs.values():
        fixture = defs[-1]
        if fixture.scope in ("module", "session") and getattr(fixture.func, "__module__", None) == \
                getattr(module, "__name__", ""):
            return True
    return False


@pytest.hookimpl(tryfirst=True)      # before xdist reads the groups off the items
def pytest_collection_modifyitems(items) -> None:
    items.sort(key=_rank)      # stable: each group keeps the files' order
    for item in items:
        if _shares_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
