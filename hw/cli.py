"""Conventions shared by every command-line tool of the project.

Bad input prints one line on stderr and exits with status 2; output files are
written to a temporary name beside their destination and renamed into place,
so an error never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["OneLineParser", "atomic_write", "atomic_write_bytes", "atomic_write_json"]


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line on stderr with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def atomic_write(path: Union[str, Path], write: Callable[[str], None]) -> Path:
    """Create ``path`` by calling ``write(temporary_name)`` and renaming the result into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Union[str, Path], doc, **dump_options) -> Path:
    """``doc`` as indented JSON ending in a newline."""
    text = json.dumps(doc, indent=1, **dump_options) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
