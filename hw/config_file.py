"""Accelerator files: a configuration kept under version control as TOML, and the one function
every tool uses to turn ``--config`` into an :class:`~hw.config.AcceleratorConfig`.

``load_config(spec)`` takes a preset name (``E``, ``tiny``, ...) or the path of a TOML file
(``CFG=path/to/accel.toml``)::

    # my accelerator: E with twice the PEs
    base = "E"                 # optional: the preset the file starts from
    name = "e32"               # optional: the configuration's name (default: the file's stem)
    num_pe = 32
    weight_kib = 256           # an alias: weight_buf_bytes = 262144

Every field of ``AcceleratorConfig`` is a key (``docs/config.md`` lists them with their units),
and so is every alias of :data:`ALIASES` (``weight_kib``, ``input_kib``, ``global_buf_kib``,
``k0c0``), which sweep grids use too.  Fields the file does not set keep the base preset's
value, or the dataclass default without a base (then the five fields without a default,
``num_pe``, ``k0``, ``c0`` and the two buffers, are required).

Validation: a file that is not TOML, a key that is no field or alias (or a field set twice,
directly and through an alias), a value of the wrong type and a value the configuration
refuses (``AcceleratorConfig.__post_init__``) each raise :class:`ConfigError`, one line that
names the file and the key.  ``config_toml(cfg)`` writes any configuration as such a file,
every field spelled out, so that loading it gives the same configuration
(``python -m hw.config_file --config E``, ``make config CFG=E``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Mapping, Optional

from .cli import counted, read_input
from .config import PRESETS, AcceleratorConfig, FieldError, get_config

if sys.version_info >= (3, 11):
    import tomllib
else:                                                    # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "ALIASES", "FACTOR_UNITS", "in_units_of", "FIELDS", "NUMERIC_KEYS", "load_config", "resolve_fields", "config_toml", "rtl_support", "is_config_file",
           "field_docs", "config_label", "hashed_label", "config_from_mapping", "fields_hash",
           "same_fields"]

#: Friendly keys of files and sweep grids: alias -> (field, factor) pairs it sets to ``value * factor``.
ALIASES: dict[str, tuple[tuple[str, int], ...]] = {
    "weight_kib": (("weight_buf_bytes", 1024),),
    "input_kib": (("input_buf_bytes", 1024),),
    "global_buf_kib": (("global_buf_bytes", 1024),),
    "k0c0": (("k0", 1), ("c0", 1)),
}
#: The unit of an alias's factor, in which a refusal of the field it sets is said (``in_units_of``).
FACTOR_UNITS = {1024: "KiB"}
#: The configuration's fields in declaration order, with their types (``int``, ``float``, ``str``).
FIELDS: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(AcceleratorConfig)}
#: Keys of a file that are not configuration fields.
_FILE_KEYS = ("base",)
#: Keys a sweep grid can vary: the numeric fields and the aliases.
NUMERIC_KEYS: tuple[str, ...] = (*(k for k, kind in FIELDS.items() if kind != "str"), *ALIASES)


class ConfigError(ValueError):
    """A configuration that cannot be built; the message is one line naming the file and the key.
    ``field_error``: the refusal of one field's value it reports, if it is one."""

    def __init__(self, message: str, field_error: Optional[FieldError] = None):
        super().__init__(message)
        self.field_error = field_error


def in_units_of(e: ValueError, keys) -> str:
    """``e``'s message, said of the alias among ``keys`` that sets the field ``e`` refuses in other
    units, in those (``global_buf_kib = -1``: "global_buf_kib must be a positive integer, not -1",
    not "global_buf_bytes ... not -1024")."""
    if isinstance(e, FieldError):
        for key in keys:
            for field, factor in ALIASES.get(key, ()):
                if field == e.field and factor in FACTOR_UNITS:
                    return e.restated(key, factor, FACTOR_UNITS[factor])
    return str(e)


def is_config_file(spec: str) -> bool:
    """Whether ``spec`` names a file rather than a preset (it ends in ``.toml`` or holds a path separator)."""
    return spec.endswith(".toml") or "/" in spec or "\\" in spec


def load_config(spec: str, **overrides) -> AcceleratorConfig:
    """The configuration ``spec`` names: a preset (``get_config``) or a TOML file; then ``overrides``.

    Raises
    ------
    ConfigError
        An unknown preset, an unreadable or invalid file, or an impossible override; the
        message names the value or key and what is allowed.
    """
    if is_config_file(spec):
        cfg = _load_file(Path(spec))
    else:
        try:
            cfg = get_config(spec)
        except KeyError as e:
            raise ConfigError(f"{e.args[0]}, or the path of a .toml accelerator file") from None
    if not overrides:
        return cfg
    unknown = [k for k in overrides if k not in FIELDS]
    if unknown:
        raise ConfigError(f"unknown configuration field {unknown[0]!r}; choose from {', '.join(FIELDS)}")
    try:
        return cfg.replace(**overrides)
    except ValueError as e:
        raise ConfigError(f"bad configuration override: {e}", e if isinstance(e, FieldError) else None) from None


def _load_file(path: Path) -> AcceleratorConfig:
    data = read_input(path, "accelerator file", ConfigError)
    try:
        text = data.decode("utf-8-sig")       # -sig: a leading BOM (a Windows editor's) is no text
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; an accelerator file is TOML text (make config CFG=E "
                          f"OUT=accel.toml writes one to start from)") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return config_from_mapping(doc, where=str(path), default_name=path.stem)


def config_from_mapping(doc: Mapping, *, where: str, default_name: str) -> AcceleratorConfig:
    """The configuration a parsed file describes (module docstring); ConfigError naming the key."""
    base_name = doc.get("base")
    base: Optional[AcceleratorConfig] = None
    if base_name is not None:
        if not isinstance(base_name, str) or not _is_preset(base_name):
            raise ConfigError(f"{where}: key 'base' must name a preset ({', '.join(PRESETS)}), not {base_name!r}")
        base = get_config(base_name)
    fields = resolve_fields({k: v for k, v in doc.items() if k not in _FILE_KEYS}, where)
    values = dataclasses.asdict(base) if base else {}
    values.pop("name", None)                  # the file's own name, not its base's
    values.update(fields)
    values.setdefault("name", default_name)
    if base is None:
        missing = [f.name for f in dataclasses.fields(AcceleratorConfig)
                   if f.name not in values and f.default is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{where}: key {missing[0]!r} is required without a 'base' preset "
                              f"(required: {', '.join(missing)})")
    try:
        return AcceleratorConfig(**values)
    except ValueError as e:
        raise ConfigError(f"{where}: {in_units_of(e, doc)}") from None


def _is_preset(name: str) -> bool:
    try:
        get_config(name)
    except KeyError:
        return False
    return True


def resolve_fields(assignments: Mapping, where: str) -> dict:
    """``{key: value}`` of fields and aliases -> ``{field: value}``, type-checked.

    Raises
    ------
    ConfigError
        A key that is no field or alias, a field set twice, or a value of the wrong type.
    """
    out: dict = {}
    set_by: dict[str, str] = {}
    for key, value in assignments.items():
        targets = ALIASES.get(key, ((key, 1),) if key in FIELDS else None)
        if targets is None:
            raise ConfigError(f"{where}: unknown key {key!r}; choose from {', '.join([*_FILE_KEYS, *FIELDS, *ALIASES])}")
        for field, factor in targets:
            if field in set_by:
                raise ConfigError(f"{where}: key {key!r} sets {field}, which {set_by[field]!r} already sets")
            set_by[field] = key
            out[field] = _typed(field, value, key, where) * factor if factor != 1 else _typed(field, value, key, where)
    return out


def _typed(field: str, value, key: str, where: str):
    kind = FIELDS[field]
    if kind == "str":
        if isinstance(value, str) and value.strip():
            return value
        raise ConfigError(f"{where}: key {key!r} must be a non-empty string, not {value!r}")
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    what = "a number" if kind == "float" else "an integer"
    raise ConfigError(f"{where}: key {key!r} must be {what}, not {value!r}")


def config_label(cfg: AcceleratorConfig) -> str:
    """A folder name for ``cfg``: its name when it is that preset, else ``<name>-<hash of its fields>``
    (so that two different configurations never share an output folder)."""
    if PRESETS.get(cfg.name) == cfg:
        return cfg.name
    return hashed_label(cfg)


def hashed_label(cfg: AcceleratorConfig) -> str:
    """``<name>-<hash of every field>``: a folder name no other configuration has, whatever its name."""
    from .cli import name_token, short_hash

    return f"{name_token(cfg.name)}-{short_hash(repr(sorted(cfg.to_dict().items())))}"


def fields_hash(cfg: AcceleratorConfig) -> str:
    """``#`` and a short hash of every field of ``cfg`` but its name: which configuration it is,
    whatever it is called (two files that both say ``name = "odd1"`` have different ones; a copy
    renamed keeps its own)."""
    from .cli import short_hash

    return "#" + short_hash(repr(sorted((k, v) for k, v in dataclasses.asdict(cfg).items() if k != "name")))


def same_fields(a: AcceleratorConfig, b: AcceleratorConfig) -> bool:
    """Whether ``a`` and ``b`` are one configuration, maybe under two names: equal in every other field."""
    return dataclasses.replace(a, name=b.name) == b


# ---- writing ---------------------------------------------------------------------------------

def field_docs() -> dict[str, str]:
    """Each field's description in ``AcceleratorConfig``'s docstring (one line)."""
    docs: dict[str, str] = {}
    text = AcceleratorConfig.__doc__.split("Parameters\n    ----------\n", 1)[1]
    for names, body in re.findall(r"^    (\w[\w, ]*):\n((?:        .*\n?)+)", text, flags=re.M):
        for name in names.split(","):
            docs[name.strip()] = " ".join(body.split())
    return docs


#: The escapes of a TOML basic string; any other control character is written ``\uXXXX``.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(value) -> str:
    """``value`` as TOML: a string as a basic string, with every character TOML does not take
    as it is escaped (a name holding a newline or another control character reads back as it was)."""
    if isinstance(value, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                             for c in value) + '"'
    return repr(value)


def rtl_support(cfg: AcceleratorConfig) -> str:
    """Whether the RTL builds ``cfg`` (``make verilog``), and without what: a configuration the
    simulator times may have no RTL (``hw.rtl.export.check_buildable`` says why)."""
    from .rtl.export import unbuildable
    from .rtl.vector_executor import builds_vector_unit
    why = unbuildable(cfg)
    if why is not None:
        return f"cannot build it: {why}"
    if not builds_vector_unit(cfg):
        return (f"builds it without a vector executor ({cfg.vector_lanes} row lanes are too many to "
                f"convert; it refuses VEC and a STORE's softmax epilogue: docs/rtl_vector.md)")
    return "builds it"


def config_toml(cfg: AcceleratorConfig) -> str:
    """``cfg`` as an accelerator file: every field, each with its description as a comment."""
    docs = field_docs()
    lines = [f"# vitaccel accelerator configuration {cfg.name!r} (hw/config.py; format: docs/config.md)",
             f"# derived: {counted(cfg.macs_per_cycle, 'MAC/cycle', 'MACs/cycle')}, "
             f"{counted(cfg.weight_rows, 'weight row')}, {counted(cfg.input_rows, 'input row')}, "
             f"global-buffer bus {cfg.gb_bus_bytes} B/cycle",
             f"# RTL (make verilog): {rtl_support(cfg)}"]
    for field in FIELDS:
        if field in docs:
            lines.append(f"# {docs[field]}")
        lines.append(f"{field} = {_toml_value(getattr(cfg, field))}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    from .cli import OneLineParser, UsageError, atomic_write, fail, name_token, output_file, read_existing

    parser = OneLineParser(prog="python -m hw.config_file",
                           description="Print a configuration (a preset or a .toml file) as an accelerator file.")
    parser.add_argument("--config", required=True, help=f"a preset ({', '.join(PRESETS)}) or a .toml file")
    parser.add_argument("--out", default=None, help="write the file here instead of printing it: a .toml file, "
                                                     "or a folder that gets <name>.toml")
    args = parser.parse_args(argv)
    out = None
    try:
        cfg = load_config(args.config)
        text = config_toml(cfg)
        if args.out:
            # OUT=e.toml is the file, any other OUT a folder that gets <name>.toml (make flops' and make onnx's rule)
            out = output_file(args.out, f"{name_token(cfg.name)}.toml")
        if out and read_existing(out) not in (None, text.encode()):
            raise UsageError(f"{out} exists (an edited accelerator file?); it is never overwritten: "
                             f"choose another OUT or remove it")
        if out:
            try:
                atomic_write(out, lambda tmp: Path(tmp).write_text(text))
            except OSError as e:
                raise UsageError(f"cannot write {out}: {e.strerror}") from None
    except (ConfigError, UsageError) as e:
        return fail(parser.prog, e)
    if out:
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    from .cli import run_main

    run_main(main)
