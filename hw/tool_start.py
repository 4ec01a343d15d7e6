"""Ctrl-C or a kill (SIGTERM) while a command-line tool is still importing: one line, status 130.

``hw.cli.run_main`` turns an interrupt into that line once the tool's ``main`` runs.  Before it, the
tool's modules are being imported (numpy, amaranth: up to a second on a loaded machine) outside any
``try`` of the tool's, where Python prints a KeyboardInterrupt traceback (or dies of SIGTERM without a
word).  ``hw/__init__.py`` calls ``cover_the_imports`` and ``sim`` and ``mapper`` import ``hw`` first,
so a tool run with ``python -m`` is covered from the import of its package on (only the interpreter's
own start-up comes before), a project script (``tests/cosim/campaign.py``) from its first import of
``hw``.  Nothing has been written yet, so the process just ends.  ``run_main`` puts its own handlers
in place of these (an interrupt then unwinds, removing staging folders), so every ``__main__`` block of
the project goes through it.  A library user (pytest, a notebook) keeps its handlers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

#: The line of an interrupted tool (``run_main`` prints it too).
INTERRUPTED = "interrupted; no result written"
EXIT_INTERRUPTED = 130

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _end(signum, frame):
    os.write(2, (INTERRUPTED + "\n").encode())     # no buffered stream: the signal may land inside a print
    os._exit(EXIT_INTERRUPTED)


def _tool_starting() -> bool:
    """Whether this process is a tool of the project being imported: ``python -m sim.run`` imports its
    packages while ``sys.argv[0]`` is ``-m`` (Python's documented behaviour), a project script is the
    ``__main__`` module's file, inside the project but not in its virtual environment (``.venv/bin/pytest``)."""
    if sys.argv[:1] == ["-m"]:
        return True
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return False
    main = Path(path).resolve()
    return main.is_relative_to(Path(__file__).resolve().parents[1]) and not main.is_relative_to(
        Path(sys.prefix).resolve())


def _pythons_own(handler) -> bool:
    """Not a handler of ``run_main``'s (a module of ``hw`` imported once ``main`` runs) or of a test's."""
    return handler in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler)


def cover_the_imports() -> None:
    """Install ``_end`` for SIGINT and SIGTERM when a tool is starting and Python's handlers are in place
    (an ignored SIGINT too, a shell's background job's: ``run_main`` installs its own over it as well)."""
    if threading.current_thread() is threading.main_thread() and _tool_starting() and \
            all(_pythons_own(signal.getsignal(signum)) for signum in _SIGNALS):
        for signum in _SIGNALS:
            signal.signal(signum, _end)
