"""Conventions shared by every command-line tool of the project.

Bad input prints one line on stderr and exits with status 2 (``UsageError``,
``fail``); an input file is opened without waiting and read only when it is a regular
file (``open_input``, ``read_input``; so is an earlier output a tool compares with,
``read_existing``) and numbers are read in the digits 0-9
(``ascii_int``, ``number_type``); output files are written to a temporary name
beside their destination and renamed into place (``atomic_write``), and an
output folder is written as a whole (``StagedDir``), so an error never leaves a
half-written file or a folder that mixes two runs.  ``run_main`` ends a tool quietly when
its reader goes away (``... | head``).
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import gc
import hashlib
import json
import math
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Optional, Sequence, Union

from .tool_start import EXIT_INTERRUPTED, INTERRUPTED

__all__ = ["OneLineParser", "UsageError", "OutputError", "RUN_MARK", "StagedDir", "StageTicker", "aligned_table", "atomic_write",
           "atomic_write_bytes", "atomic_write_json", "ascii_float", "ascii_int", "counted", "did_you_mean", "duration", "fail",
           "file_tag", "human_bytes", "json_text", "kib_text", "name_token", "not_a_file", "number_type", "open_input",
           "output_file", "output_json_file", "read_existing", "read_input", "refuse_long_name", "refuse_replacing",
           "run_main", "seed", "short_hash", "try_folder", "typo_distance"]


class UsageError(Exception):
    """A bad command-line value; the message is the one-line explanation (exit status 2)."""


class OutputError(UsageError):
    """An output location that cannot be written (exit status 2, found before any work is done)."""


def fail(prog: str, error: BaseException | str) -> int:
    """Print ``error`` as the one-line message of ``prog`` on stderr; the exit status 2."""
    text = error if isinstance(error, str) else (str(error.args[0]) if error.args else str(error))
    print(f"{prog}: error: {' '.join(text.split())}", file=sys.stderr)
    return 2


#: A whole number in the digits 0-9 (``int()`` also takes other scripts' digits, ``'٣'``, and ``1_000``).
_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
#: The same with Python's prefixes (``0x1f``, ``0o17``, ``0b101``), as ``int(text, 0)`` reads them.
_PREFIXED_INT = re.compile(r"\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)\s*")
#: A decimal number (``2``, ``2.5``, ``.5``, ``1e-3``) or ``inf``/``nan``, which a range check then refuses
#: with its own message; no other scripts' digits, no ``_``.
_FLOAT = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\s*",
                    re.IGNORECASE)


def ascii_int(text: str, prefixed: bool = False) -> int:
    """``int(text)`` (``int(text, 0)`` when ``prefixed``) for the digits 0-9 only; ValueError otherwise.
    Every number of a command line or an input file is read by this or ``ascii_float``."""
    if not (_PREFIXED_INT if prefixed else _INT).fullmatch(text):
        raise ValueError(f"{text!r} is not a whole number in the digits 0-9")
    return int(text, 0) if prefixed else int(text)


def ascii_float(text: str) -> float:
    """``float(text)`` for the digits 0-9 only (and ``inf``, ``nan``); ValueError otherwise."""
    if not _FLOAT.fullmatch(text):
        raise ValueError(f"{text!r} is not a number in the digits 0-9")
    return float(text)


def number_type(kind: type, what: str) -> Callable[[str], Union[int, float]]:
    """The ``argparse`` type of an option whose value is a number (``kind`` int or float, read by
    ``ascii_int``/``ascii_float``): its error names the value and ``what`` the option is (argparse's
    own says only "invalid int value")."""
    read = ascii_float if kind is float else ascii_int

    def parse(value: str):
        try:
            return read(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {'a number' if kind is float else 'a whole number'} "
                                             f"in the digits 0-9 ({what})") from None
    parse.__name__ = kind.__name__
    return parse


def seed(text: str) -> int:
    """``argparse`` type of every ``--seed``: a non-negative integer, or one line saying so."""
    if not (text.strip().isascii() and text.strip().isdigit()):      # int() takes '٣' and isdigit() '²' too
        raise argparse.ArgumentTypeError(f"bad seed {text!r}: a seed is a non-negative integer (0, 1, 2, ...)")
    return int(text)


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line on stderr with status 2.

    An option that takes a value accepts one that starts with ``-`` (``--size -512x512``),
    so that the tool, not the parser, says what is wrong with the value.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        args = self._join_dash_values(list(sys.argv[1:] if args is None else args))
        self._refuse_repeats(args)
        return super().parse_known_args(args, namespace)

    def _get_option_tuples(self, option_string):
        """An abbreviation (``--no-p``) that matches several spellings of one option (``--no-plots``,
        ``--no-plot``) is that option (Python 3.11's argparse calls it ambiguous)."""
        by_action: dict = {}
        for match in super()._get_option_tuples(option_string):
            by_action.setdefault(id(match[0]), match)
        return list(by_action.values())

    def _refuse_repeats(self, args: list[str]) -> None:
        """An option that takes one value, given twice (``make sim CFG=E ARGS="--config tiny"``): argparse
        would keep the last silently."""
        single = [a for a in self._actions if a.option_strings and a.nargs is None
                  and type(a) is argparse._StoreAction]
        given: dict = {}
        for i, arg in enumerate(args):
            if arg == "--":
                break
            name, eq, value = arg.partition("=")
            if not name.startswith("--"):
                continue
            if name in self._option_string_actions:      # exact (an abbreviation only if none is)
                matches = [a for a in single if name in a.option_strings]
            else:
                matches = [a for a in self._actions if any(o.startswith(name) for o in a.option_strings)]
                matches = matches if len(matches) == 1 and matches[0] in single else []
            if len(matches) == 1:
                value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
                given.setdefault(matches[0].option_strings[0], []).append(repr(value))
        for option, values in given.items():
            if len(values) > 1:
                self.error(f"{option} given {len(values)} times ({', '.join(values)}); give it once (a make "
                           f"variable and ARGS may both set it)")

    def _join_dash_values(self, args: list[str]) -> list[str]:
        takes_value = {s for a in self._actions if a.nargs is None and a.option_strings
                       and not isinstance(a, (argparse._StoreConstAction, argparse._CountAction))
                       for s in a.option_strings}
        known = {s for a in self._actions for s in a.option_strings}
        out, i = [], 0
        while i < len(args):
            arg = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else ""
            if arg in takes_value and nxt.startswith("-") and not nxt.startswith("--") and nxt not in known:
                out.append(f"{arg}={nxt}")
                i += 2
                continue
            out.append(arg)
            i += 1
        return out


def _interrupt(signum, frame):
    # A KeyboardInterrupt raised while an extension module is being imported can be lost (seen with
    # numpy.random's lazy import: the run went on to the end), so it is raised again every half
    # second until the interrupt is seen unwinding.
    signal.signal(signal.SIGALRM, _interrupt_again)
    signal.setitimer(signal.ITIMER_REAL, 0.5, 0.5)
    raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
    # An interrupt raised inside a ``__del__`` (amaranth's, at a kill) is lost there, Python printing
    # "Exception ignored in" and its traceback: ``_interrupt``'s timer raises it again, so no word.
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def _interrupt_again(signum, frame):
    if not isinstance(sys.exc_info()[1], KeyboardInterrupt):     # not in a finally/except of it: lost
        raise KeyboardInterrupt


def _end_with(code: int) -> Callable:
    """The handler of a signal that comes once ``main`` has returned (its result written and told): the
    process ends at once with ``main``'s status (a KeyboardInterrupt now would say that no result was
    written, or break an exit handler with a traceback)."""
    def end(signum, frame):
        try:
            sys.stdout.flush()
        except (OSError, ValueError, RuntimeError):      # RuntimeError: the signal came inside a flush
            pass
        os._exit(code)
    return end


def _stop_children() -> None:
    """SIGTERM to this process's children still running (Linux's /proc; elsewhere none is found): a
    library's subprocess that an interrupt left waiting (amaranth's Yosys, run by ``Popen.communicate``,
    which does not stop it) would otherwise run on after the tool has ended."""
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def _handle(handler) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


#: The cyclic collector's thresholds in a tool (Python's are 700, 10, 10): a mapping keeps millions of
#: instructions, which every collection of the oldest generation walks, and makes little cyclic garbage;
#: SegFormer-B0 at 32x32 on a K0 = C0 = 2 file with 4-row buffers maps in about 10 % less CPU time.
TOOL_GC_THRESHOLDS = (50_000, 20, 20)


def run_main(main: Callable[[], int]) -> None:
    """``sys.exit(main())``, ending quietly (status 0) when stdout's reader has gone away
    (``... | head``) and with one line (status 130) on Ctrl-C or a kill (SIGTERM), which
    unwind like an error, so that staging folders are removed."""
    _handle(_interrupt)
    sys.unraisablehook = _unraisable
    gc.set_threshold(*TOOL_GC_THRESHOLDS)
    try:
        try:
            code = main()
            _handle(_end_with(code if isinstance(code, int) else 0))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        _handle(signal.SIG_IGN)                 # a second Ctrl-C must not stop the clean-up half way
        _stop_children()
        for stage in list(StagedDir.open):      # one made just before its ``with`` began, too
            stage.discard()
        print(INTERRUPTED, file=sys.stderr)
        # what the interrupted work leaves warns as it is collected at exit (amaranth's "created but never
        # used" for the components of a half-built design): not news, and the line above stays the only one
        warnings.simplefilter("ignore")
        code = EXIT_INTERRUPTED
        _handle(_end_with(code))
    sys.exit(code)


# ---- names of outputs ----------------------------------------------------------------------------

def short_hash(data: Union[bytes, str], n: int = 8) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:n]


#: The folder that holds ``hw/``, ``mapper/`` and ``sim/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def code_digest(packages, root: Path = PROJECT_ROOT) -> str:
    """sha256 over the ``.py`` files under the folders ``packages`` of ``root`` (relative path and
    bytes, sorted by path): what a cache of results keys on, so that an edit to the code that made
    them starts afresh."""
    files = sorted((p.relative_to(root).as_posix(), p) for d in packages for p in (root / d).rglob("*.py"))
    h = hashlib.sha256()
    for rel, path in files:
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'segformer_b2'?)`` for the choice closest to ``name`` (case and surrounding
    spaces aside) when one is close, else '': of the choices similar enough (difflib), the one fewest
    typos away (``typo_distance``: ``segformer_bo`` is b0, ``o`` being next to ``0``, not b2), the most
    similar of those."""
    import difflib

    lowered = {str(c).lower(): c for c in choices}
    typed = str(name).strip().lower()
    close = difflib.get_close_matches(typed, list(lowered), n=len(lowered), cutoff=0.75)     # most similar first
    best = min(close, key=lambda c: typo_distance(typed, c), default=None)                    # min keeps the first tie
    return f" (did you mean {lowered[best]!r}?)" if best is not None else ""


#: The keys of a QWERTY keyboard: row, then column with the rows' stagger.
_KEY_AT = {key: (row, col + (0, 0.5, 0.75, 1.25)[row])
           for row, keys in enumerate(("1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm"))
           for col, key in enumerate(keys)}


def _substitution(typed: str, meant: str) -> float:
    """What typing ``typed`` for ``meant`` costs: 0, a half for a neighbouring key (``o`` for ``0``), else 1."""
    if typed == meant:
        return 0.0
    at, where = _KEY_AT.get(typed), _KEY_AT.get(meant)
    return 0.5 if at and where and math.dist(at, where) < 1.2 else 1.0


def typo_distance(typed: str, meant: str) -> float:
    """The fewest edits from ``meant`` to ``typed``: a letter dropped, added, swapped with the next (1
    each) or replaced (``_substitution``); Damerau-Levenshtein's optimal string alignment."""
    rows = [[float(j) for j in range(len(meant) + 1)]]
    for i, a in enumerate(typed, 1):
        row = [float(i)]
        for j, b in enumerate(meant, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + _substitution(a, b))
            if i > 1 and j > 1 and a == meant[j - 2] and typed[i - 2] == b:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


def name_token(text: str) -> str:
    """``text`` as part of a file name: characters other than letters, digits and ``.=,+-`` become ``_``."""
    return "".join(c if c.isalnum() or c in ".=,+-" else "_" for c in str(text))


def file_tag(path: Union[str, Path], what: str) -> str:
    """``<what>-<stem>-<hash>``: names an input file by its name and its content's hash.

    Raises ``UsageError`` naming the file when it cannot be read.
    """
    data = read_input(path, f"{what} file")
    return f"{what}-{name_token(Path(path).stem)}-{short_hash(data)}"


# ---- reading -------------------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_file(path: Union[str, Path]) -> Optional[str]:
    """None when ``path`` is a regular file (or a link to one), else why it is none (``a named pipe
    (FIFO), not a regular file``, ``No such file or directory``), found without opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return e.strerror
    except ValueError:                  # a NUL byte in the name
        return "not a valid file name"
    return _not_regular(mode)


def _not_regular(mode: int) -> Optional[str]:
    if stat.S_ISREG(mode):
        return None
    return next((f"{kind}, not a regular file" for test, kind in _KINDS if test(mode)), "not a regular file")


def open_input(path: Union[str, Path], what: str, error: Callable[[str], Exception] = UsageError,
               hint: str = "", follow_link: bool = True) -> BinaryIO:
    """The input file ``path`` open for reading (binary) when it is a regular file; else ``error``
    (``<path>: cannot read the <what>: <why>``, then ``; <hint>``).  Every tool opens its input files
    so: opening a named pipe waits for a writer (forever), ``/dev/zero`` never ends, and a folder's
    error names no folder.  The file is opened without waiting (O_NONBLOCK) and judged by what the
    descriptor is, so a file swapped for a pipe after any earlier look at the name is refused too.
    ``follow_link=False`` refuses a symbolic link as the last part of ``path`` (O_NOFOLLOW)."""
    opened = _open_regular(path, follow_link)
    if isinstance(opened, str):
        raise error(_unreadable(path, what, opened, hint))
    return opened


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


def _open_regular(path: Union[str, Path], follow_link: bool = True) -> Union[BinaryIO, str]:
    """``path`` open for reading when it is a regular file, else why not (``No such file or directory``,
    ``a named pipe (FIFO), not a regular file``)."""
    try:
        fd = os.open(path, _OPEN_FLAGS | (0 if follow_link else getattr(os, "O_NOFOLLOW", 0)))
    except (OSError, ValueError) as e:      # ValueError: a NUL byte in the name
        if not follow_link and getattr(e, "errno", None) == errno.ELOOP and os.path.islink(path):
            return "a symbolic link, which is not followed here"
        return not_a_file(path) or getattr(e, "strerror", None) or "not a valid file name"
    return _regular_file(fd)


def _regular_file(fd: int) -> Union[BinaryIO, str]:
    """The descriptor ``fd`` (opened without waiting) as a blocking binary file when it is a regular
    file; else it is closed and why it is none is returned."""
    why = _not_regular(os.fstat(fd).st_mode)
    if why is None:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    os.close(fd)
    return why


def read_input(path: Union[str, Path], what: str, error: Callable[[str], Exception] = UsageError,
               hint: str = "") -> bytes:
    """The bytes of the input file ``path`` (``open_input``); ``error`` as it says, also for a file
    that cannot be read (permissions, a read error)."""
    with open_input(path, what, error, hint) as f:
        try:
            return f.read()
        except OSError as e:
            raise error(_unreadable(path, what, e.strerror, hint)) from None


def _unreadable(path: Union[str, Path], what: str, why: str, hint: str) -> str:
    shown = str(path) or "''"            # an empty name is shown as one, not as nothing before the colon
    return f"{shown}: cannot read the {what}: {why}" + (f"; {hint}" if hint else "")


#: Suffixes of files the tools (or a user's other tools) write: where a tool writes one file, an
#: ``--out`` not yet there that ends in another of them is a mistake, refused rather than made a
#: folder.  (A tool that writes a folder takes any name: ``out_scene.png/`` for a run per image.)
FILE_SUFFIXES = frozenset((".csv", ".json", ".txt", ".onnx", ".npy", ".npz", ".png", ".jpg", ".svg",
                           ".pdf", ".html", ".md", ".toml", ".yaml", ".yml", ".log", ".v", ".sv", ".bin",
                           ".hex", ".lst", ".gz", ".zip", ".tar"))


def refuse_long_name(path: Union[str, Path], what: str) -> None:
    """OutputError when a name in ``path`` is longer than the file system takes (``Path.exists()``
    raises then, before Python 3.12) or holds a NUL byte: every output location is checked so first."""
    if "\0" in str(path):
        raise OutputError(f"cannot write {what!r}: a file name cannot hold a NUL character")
    longest = max(Path(path).parts, key=lambda part: len(os.fsencode(part)), default="")
    limit = _name_max(path)
    if len(os.fsencode(longest)) > limit:
        raise OutputError(f"cannot write {what}: the name {longest[:40]}... is {len(os.fsencode(longest))} bytes "
                          f"long; the file system takes at most {limit} bytes a name")


def _name_max(path: Union[str, Path]) -> int:
    """The longest file name the file system of ``path``'s nearest existing folder takes."""
    folder = next((d for d in Path(path).absolute().parents if os.path.isdir(d)), Path("/"))
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _file_named(out: Path) -> bool:
    return not out.exists() and out.suffix.lower() in FILE_SUFFIXES


def output_file(out: Union[str, Path], name: str) -> Path:
    """Where a tool that writes one file puts it: ``out/name`` for a folder ``out``, or ``out``
    itself when it is a file name with ``name``'s suffix (``--out my.onnx``) and no folder,
    as a user who names the file means it (not a folder called ``my.onnx``).  A file name of
    another kind (``--out flops.csv`` for a JSON) is a UsageError; a folder that another tool's
    run wrote as a whole (``StagedDir``: ``make sim``'s) an OutputError, since a file added to it
    would make that run's tool refuse its own folder.  Something other than a file where the file
    goes (a named pipe, a folder ``out/name``) is an OutputError: it is never replaced."""
    out = Path(out)
    refuse_long_name(out, f"--out {out}")
    suffix = Path(name).suffix.lower()
    if suffix and out.suffix.lower() == suffix and not out.is_dir():
        return _no_other_thing(out)
    refuse_other_kind(out, suffix, "or a folder")
    run = _run_in(out)          # None for no folder, a file, or a folder of no run
    if run is not None:
        raise OutputError(f"output folder {out} holds the results of the run {run}; choose another --out")
    return _no_other_thing(out / name)


def _no_other_thing(path: Path) -> Path:
    why = not_a_file(path) if os.path.exists(path) else None
    if why is not None:
        raise OutputError(f"cannot write {path}: it exists and is {why}; it is never replaced (choose another --out)")
    return path


def refuse_other_kind(out: Union[str, Path], suffix: str, alternative: str = "") -> None:
    """UsageError when ``out`` (not yet there) names a file of another kind than ``suffix``:
    ``--out flops.csv`` for a tool that writes a ``.json``."""
    out = Path(out)
    if out.suffix.lower() != suffix and _file_named(out):
        raise UsageError(f"--out {out}: this tool writes a {suffix} file; name a {suffix} file"
                         + (f" {alternative}" if alternative else ""))


def refuse_replacing(out: Union[str, Path], path: Path, data: bytes) -> None:
    """UsageError when ``path`` is a file the user named (``--out my.onnx``: ``path`` is ``out``
    itself) that exists with other bytes than ``data``: an earlier result or the user's own file
    is never overwritten.  A tool's file in a folder (``out/name``) is its own earlier output of
    the same name, which a rerun replaces."""
    if Path(out) == path and read_existing(path) not in (None, data):
        raise UsageError(f"{path} exists and holds something else; it is never overwritten "
                         f"(name another file, or remove it)")


def read_existing(path: Union[str, Path]) -> Optional[bytes]:
    """The bytes of the output file ``path`` an earlier run may have left; None when nothing is there.
    OutputError when something other than a regular file stands there, or a file that cannot be read:
    it is never replaced.  The file is opened without waiting and judged by its descriptor, as
    ``open_input`` does, so a file swapped for a named pipe after an earlier look cannot make the
    tool wait, nor another kind of file be taken for an earlier result."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:               # nothing there (or a link to nothing, which a write replaces)
        return None
    except NotADirectoryError as e:         # nothing can be there: a file stands where a folder must
        raise OutputError(f"cannot write {path}: {_why_unwritable(Path(path), e)}") from None
    except OSError as e:
        why = f"cannot be read ({e.strerror})"
    else:
        opened = _regular_file(fd)
        if not isinstance(opened, str):
            with opened:
                try:
                    return opened.read()
                except OSError as e:
                    why = f"cannot be read ({e.strerror})"
        else:
            why = f"is {opened}"
    raise OutputError(f"cannot write {path}: it exists and {why}; it is never replaced (choose another --out)")


def join_name(parts: Iterable[str], limit: int = 120) -> str:
    """Parts joined with ``_``; a name longer than ``limit`` keeps its start and gains a hash of the whole."""
    name = "_".join(p for p in parts if p)
    return name if len(name) <= limit else f"{name[:limit - 10]}-{short_hash(name)}"


# ---- writing -------------------------------------------------------------------------------------

def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _why_unwritable(path: Path, error: OSError) -> str:
    """Why a folder for ``path`` cannot be made: what stands where a folder must be (a file, a named
    pipe, a link that leads nowhere), if anything."""
    blocking = next((d for d in path.absolute().parents if os.path.lexists(d) and not d.is_dir()), None)
    if blocking is None:
        return error.strerror
    try:
        mode = os.stat(blocking).st_mode
    except OSError as e:                    # a link in a loop, or to nothing
        return f"{blocking} is a symbolic link that leads to no folder ({e.strerror})"
    return f"{blocking} is {next((kind for test, kind in _KINDS if test(mode)), 'a file')}, not a folder"


def try_folder(folder: Union[str, Path], what: str) -> None:
    """OutputError (``cannot write <what>: <why>``) unless ``folder`` can be created and written to,
    found before any work is done: it is made, a file created in it, and both removed again (nothing
    is left).  ``os.access`` cannot tell: it says yes to root, and for ``/proc``."""
    folder = Path(folder)
    refuse_long_name(folder, what)
    absolute = folder.absolute()
    made = [d for d in (absolute, *absolute.parents) if not d.exists()]      # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write {what}: {_why_unwritable(folder / 'x', e)}") from None
    finally:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                break


def output_json_file(text: str, option: str = "--output") -> Path:
    """The path of an option that names one JSON file to write (``--output report.json``), checked
    before any work: a name ending in ``/`` or an existing folder, another suffix (``x.txt``) and a
    folder that cannot be written are UsageErrors."""
    path = Path(text)
    refuse_long_name(path, f"{option} {text}")
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise UsageError(f"{option} {text}: a folder; this tool writes one .json file, name it "
                         f"(e.g. {path / 'report.json'})")
    if path.suffix.lower() != ".json":
        raise UsageError(f"{option} {text}: this tool writes a .json file; name a .json file")
    try_folder(path.parent, f"{option} {text}")
    return path


def _temp_prefix(path: Path) -> str:
    """The start of a temporary name beside ``path``: hidden, named after it, and short enough that a
    name the file system takes (up to 255 bytes) still leaves room for the random part."""
    return f".{path.name[:64]}."


def atomic_write(path: Union[str, Path], write: Callable[[str], None]) -> Path:
    """Create ``path`` by calling ``write(temporary_name)`` and renaming the result into place.
    OutputError when a file stands where one of its folders must be."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise OutputError(f"cannot write {path}: {_why_unwritable(path, e)}") from None
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def json_text(doc, **dump_options) -> str:
    """``doc`` as the JSON the tools write: indented, ending in a newline."""
    return json.dumps(doc, indent=1, **dump_options) + "\n"


def atomic_write_json(path: Union[str, Path], doc, **dump_options) -> Path:
    """``doc`` as indented JSON ending in a newline."""
    text = json_text(doc, **dump_options)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


#: The file of an output folder that names the run that wrote it (``StagedDir``).
RUN_MARK = ".run"


def _run_in(folder: Path) -> Optional[str]:
    """The run that wrote ``folder`` (None: a folder of no run, or of a version before the mark)."""
    try:
        return read_input(folder / RUN_MARK, RUN_MARK).decode().strip() or None
    except (UsageError, UnicodeDecodeError):
        return None


#: Files of a replaced run that ``StagedDir.replaced_note`` names (the rest are counted).
_NAMES_SHOWN = 4


def _files_only_in(old: Path, new: Path) -> list:
    """The files under ``old`` (its ``RUN_MARK`` aside) with no file of the same relative path under
    ``new``, as sorted relative paths."""
    files = lambda root: {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}
    return sorted(files(old) - files(new) - {RUN_MARK})


class StagedDir:
    """An output folder written as a whole.

    The constructor creates a hidden staging folder beside ``out`` (so an unwritable
    location is an ``OutputError`` before any work is done); files are written into
    ``path``; ``commit`` renames the staging folder into place, replacing an existing
    ``out`` as a whole (it is renamed aside first and deleted afterwards; ``replaced`` says
    whether it held files, ``dropped`` which of them this run did not write again), and
    ``discard`` (or leaving a ``with`` block without a commit) removes it.  An existing
    ``out`` is replaced only if it is empty or every entry matches ``owned`` (glob
    patterns of the files the tool writes): a folder holding anything else is refused,
    and so is one that another run wrote (its ``RUN_MARK`` names another ``run``): the
    results of one run never replace another's, even in a folder named by ``--out``.

    Parameters
    ----------
    out:
        The output folder.
    owned:
        Names (globs) of the entries a previous run of the tool leaves in ``out``.
    run:
        The run's name (the folder it writes without ``--out``), kept in ``out/RUN_MARK``.
    """

    #: The staging folders made and neither committed nor discarded: ``run_main`` removes them on an
    #: interrupt, also one that lands between the constructor and the ``with`` that would.
    open: set = set()

    def __init__(self, out: Union[str, Path], owned: Iterable[str], run: Optional[str] = None):
        self.out = Path(out)
        self.owned = (*owned, RUN_MARK)
        self.run = run
        self.committed = False
        self.replaced = False           # whether commit replaced an earlier run's files
        self.dropped: list = []         # those files this run did not write again (relative paths)
        refuse_long_name(self.out, f"the output folder {self.out}")
        self._check_replaceable()
        parent = self.out.parent.absolute()
        self._made = [d for d in (parent, *parent.parents) if not d.exists()]    # removed again by discard
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.out), suffix=".tmp", dir=self.out.parent))
            StagedDir.open.add(self)
        except OSError as e:
            self._remove_made()
            raise OutputError(f"cannot write the output folder {self.out}: {_why_unwritable(self.out, e)}") from None

    def _check_replaceable(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise OutputError(f"output folder {out} is a file; choose a folder with --out")
        if not out.is_dir():
            return
        foreign = sorted(p.name for p in out.iterdir() if not any(fnmatch.fnmatch(p.name, g) for g in self.owned))
        if foreign:
            raise OutputError(f"output folder {out} holds files this tool did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); choose another --out or empty it")
        earlier = _run_in(out)
        if self.run is not None and earlier is not None and earlier != self.run:
            raise OutputError(f"output folder {out} holds the results of another run ({earlier}), never "
                              f"replaced by this one ({self.run}); choose another --out or remove it")
        held = sorted(p.name for p in out.iterdir())
        if self.run is not None and earlier is None and held:
            raise OutputError(f"output folder {out} holds files ({', '.join(held[:3])}) but no {RUN_MARK} naming "
                              f"the run that wrote them; choose another --out or empty it")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"cannot replace the output folder {out}: permission denied")

    def commit(self) -> Path:
        """Put the staged files in place as ``out``; returns ``out``."""
        os.chmod(self.path, 0o777 & ~_umask())     # mkdtemp makes 0700
        if self.run is not None:
            (self.path / RUN_MARK).write_text(self.run + "\n")
        aside: Optional[Path] = None
        self.replaced = self.out.is_dir() and any(self.out.iterdir())      # an empty folder held no run
        self.dropped = _files_only_in(self.out, self.path) if self.replaced else []
        if self.out.exists():
            aside = Path(tempfile.mkdtemp(prefix=_temp_prefix(self.out), suffix=".old", dir=self.out.parent))
            os.replace(self.out, aside)          # an empty directory is replaced
        try:
            os.replace(self.path, self.out)
        except BaseException:
            if aside is not None:
                os.replace(aside, self.out)
            raise
        self.committed = True
        StagedDir.open.discard(self)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return self.out

    def replaced_note(self) -> str:
        """After ``commit``: `` (replacing the earlier run of the same name)``, naming the files of that
        run this one did not write again (a trace, a stream dump, another plot format), which went with
        it, so a rerun never removes them silently; '' when no run was replaced."""
        if not self.replaced:
            return ""
        if not self.dropped:
            return " (replacing the earlier run of the same name)"
        more = len(self.dropped) - _NAMES_SHOWN
        shown = ", ".join(self.dropped[:_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")
        return f" (replacing the earlier run of the same name; its {shown} went with it: this run did not write them)"

    def discard(self) -> None:
        """Remove the staging folder and the folders made for it (unless committed)."""
        if self.committed:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        StagedDir.open.discard(self)
        self._remove_made()

    def _remove_made(self) -> None:
        for folder in self._made:          # deepest first
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> "StagedDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()          # after commit there is nothing left to remove


# ---- progress ------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def kib_text(n: int) -> str:
    """A buffer of ``n`` bytes as ``16 KiB`` when it is whole KiB, else exactly (``25088 B``): a
    buffer may be any multiple of its row, and ``n // 1024`` said a 2-byte one was ``0 KiB``."""
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def counted(n: int, noun: str, plural: Optional[str] = None, width: int = 0) -> str:
    """``1 PE``, ``4 PEs``, ``0 PEs``: a count of a report's text with its noun, singular for one
    (``plural``: the plural when it is not ``noun + "s"``; ``width``: the count right-aligned in
    that many characters, for a column)."""
    return f"{n:{width}} {noun if n == 1 else plural or noun + 's'}"


def aligned_table(head: Sequence[str], rows: Iterable[Sequence], align: str) -> list[str]:
    """The lines of a report's table: ``head``, a rule of dashes and ``rows``, columns two spaces apart,
    each as wide as its widest cell (a short name or a long number alike), aligned as ``align`` says
    (``<`` or ``>`` per column); trailing spaces cut."""
    cells = [tuple(map(str, row)) for row in (head, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    line = lambda row: "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip()
    return [line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])]


def column_texts(values: Sequence[float], decimals: int, digits: int = 4) -> list[str]:
    """A table column's numbers, all with one number of decimals: ``decimals``, or as many more as
    give the column's smallest nonzero magnitude ``digits`` significant digits (two small networks'
    0.0045 and 0.0052 ms both printed as ``0.005``; a column of milliseconds keeps its three)."""
    smallest = min((abs(v) for v in values if v and math.isfinite(v)), default=0.0)
    if smallest:
        decimals = max(decimals, digits - 1 - math.floor(math.log10(smallest)))
    return [f"{v:.{decimals}f}" for v in values]


def human_bytes(n: int) -> str:
    """``n`` bytes as ``512 B``, ``12.3 kB``, ``1.16 GB`` (powers of 1000): three digits at least,
    so that a figure just past a unit (1,161 MB) does not lose two of them ("1.2 GB")."""
    for factor, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= factor:
            return f"{n / factor:.{2 if n < 10 * factor else 1}f} {unit}"
    return f"{n} B"


class StageTicker:
    """Progress of a long step made of stages whose length is not known beforehand (each a call
    that cannot report on its own): ``<desc>: <stage>, <elapsed> elapsed`` on ``stream``, every
    ``period`` seconds (default: 10 s in a log, a line redrawn every second on a terminal), from a
    thread started by the first ``stage(text)`` (which names what runs now; the checks before it
    print nothing, so that a refusal stays one line), and nothing for a step shorter than
    ``period``.  In a log a line equal to the one before is left out (a module converting for
    minutes said ``..., 2 min elapsed`` six times).  Use it as a context manager.
    """

    def __init__(self, desc: str, *, enabled: bool = True, stream=None, period: float | None = None):
        self.desc, self.enabled = desc, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.period = period if period is not None else (1.0 if self.tty else 10.0)
        self.t0 = time.monotonic()
        self.text = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-ticker", daemon=True)
        self._drawn = False

    def stage(self, text: str) -> None:
        self.text = text
        if self.enabled and not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def line(self) -> str:
        return f"{self.desc}: {self.text}, {duration(time.monotonic() - self.t0)} elapsed"

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self.period):
            line = self.line()
            if self.tty:
                self.stream.write("\r\x1b[K" + line[:200])
                self._drawn = True
            elif line != last:
                self.stream.write(line + "\n")
            last = line
            self.stream.flush()

    def __enter__(self) -> "StageTicker":
        return self

    def stop(self) -> None:
        """No more lines (a step that reports on its own has begun); the context's exit calls it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
