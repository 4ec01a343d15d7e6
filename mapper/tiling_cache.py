"""The tilings the mapper chose, remembered on disk so that a later run skips the search.

Mapping a network schedules a few tilings of every layer exactly; that search is most of what
``make sim`` costs, and it gives the same answer every time for the same code.  Each answer
(the tiling, its exact cycles, the number of candidates) is kept in a small JSON file under
``build/cache/tilings/<code>/``, where ``<code>`` hashes the sources of ``hw/`` and ``mapper/``:
an edit to either starts a new folder, so an answer never outlives the code that found it.
The stream itself is rebuilt from the tiling on a hit (it is deterministic).

Writes are atomic (a temporary file renamed), so parallel runs share the folder safely.  A
folder that cannot be written is no error: the run maps as if there were no cache.
``MAGNET_TILING_CACHE=0`` turns the cache off, as does :func:`disabled`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Iterator, Optional

from hw.cli import PROJECT_ROOT, OutputError, atomic_write_bytes, code_digest

__all__ = ["lookup", "remember", "disabled", "cache_dir", "KEEP_VERSIONS"]

_SOURCES = ("hw", "mapper")
#: Folders of older code kept beside the current one (other checkouts' runs may still use them).
KEEP_VERSIONS = 4
_state = {"on": os.environ.get("MAGNET_TILING_CACHE", "1") != "0", "dir": None}


def cache_dir() -> Path:
    """This code's folder (created on first write)."""
    if _state["dir"] is None:
        _state["dir"] = PROJECT_ROOT / "build" / "cache" / "tilings" / code_digest(_SOURCES)[:20]
    return _state["dir"]


#: Configuration fields no tiling or cycle count depends on: a configuration that differs from
#: another only in these (its name, its clock, its DRAM's capacity) shares the other's answers.
_UNTIMED_FIELDS = ("name", "clock_ghz", "dram_mib")


def _key(problem, cfg, exact_top: int) -> str:
    timed = sorted((k, v) for k, v in asdict(cfg).items() if k not in _UNTIMED_FIELDS)
    text = repr((_shape(problem), timed, exact_top))
    return hashlib.sha256(text.encode()).hexdigest()


def _shape(what):
    """A problem's compared fields only (equal shapes map identically, whatever the layer's name),
    in a tuple of them (``mapper.bands``' joined chains) each's."""
    if isinstance(what, tuple):
        return tuple(_shape(w) for w in what)
    if is_dataclass(what):
        return [(f.name, _shape(getattr(what, f.name))) for f in fields(what) if f.compare]
    return what


def lookup(problem, cfg, exact_top: int) -> Optional[dict]:
    """The remembered answer for this problem (or tuple of problems, tilings and numbers),
    configuration and search effort, or None."""
    if not _state["on"]:
        return None
    try:
        return json.loads((cache_dir() / f"{_key(problem, cfg, exact_top)}.json").read_text())
    except (OSError, ValueError):
        return None


def remember(problem, cfg, exact_top: int, answer: dict) -> None:
    """Keep ``answer`` (JSON-serialisable) for a later run; silently nothing if it cannot be written."""
    if not _state["on"]:
        return
    folder = cache_dir()
    try:
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _prune(folder.parent, keep=folder)
        atomic_write_bytes(folder / f"{_key(problem, cfg, exact_top)}.json", json.dumps(answer).encode())
    except (OSError, OutputError):
        pass


def _prune(parent: Path, keep: Path) -> None:
    """Remove the folders of all but the ``KEEP_VERSIONS`` most recent other code versions."""
    others = sorted((p for p in parent.iterdir() if p.is_dir() and p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[KEEP_VERSIONS:]:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Map without the cache (a benchmark of the search, a test of its determinism)."""
    was, _state["on"] = _state["on"], False
    try:
        yield
    finally:
        _state["on"] = was
