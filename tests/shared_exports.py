"""Whole-accelerator exports shared by the tests: each configuration is exported once per version
of ``hw/`` and kept as a pickle in ``build/cache/export/``, whichever worker asks first; the
others wait on its lock and read it.  An export of tiny is about 60 CPU seconds, and the lint, the
export-directory tests and the cosimulation each needed one.  The tests of the export itself
(determinism across directories) still export afresh and compare with this one."""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import pickle
from importlib.metadata import version

from hw.cli import PROJECT_ROOT, atomic_write_bytes, code_digest, short_hash
from hw.config import AcceleratorConfig

CACHE = PROJECT_ROOT / "build" / "cache" / "export"


def _key(config: AcceleratorConfig) -> str:
    """The configuration, Amaranth's version and the sources of ``hw/``."""
    return short_hash(repr((sorted(dataclasses.asdict(config).items()), version("amaranth"), code_digest(("hw",)))),
                      24)


@functools.lru_cache(maxsize=None)
def exported(config: AcceleratorConfig):
    """``hw.rtl.export.export_accelerator(config)``, from the cache when this code made it before."""
    from hw.rtl.export import export_accelerator
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{config.name}-{_key(config)}.pickle"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one worker exports, the others wait for it
        if path.exists():
            return pickle.loads(path.read_bytes())
        result = export_accelerator(config)
        atomic_write_bytes(path, pickle.dumps(result))
        return result
