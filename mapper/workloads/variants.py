"""Parsing and naming of execution-path variants, shared by the family modules.

A variant is either ``None``/``"full"`` (the original model), a named point of
the family (for example SegFormer's ``"B2_c"`` from the paper's Table III) or a
parametric spelling ``"key=value,key=value"`` in which every key is optional,
for example ``"blocks=2-4-6-3,fuse=1408"``, or that spelling's short name as reports
print it (``"blocks2-4-6-3_fuse1408"``, :func:`canonical_name`).  Integer lists are written with
``-`` between the items so that the spelling survives a shell and a filename.

Each family module describes its original model as a dict of parameters (an
``int`` is a count kept from ``1..value``, a tuple one such count per item, for
example blocks per stage) and its named points; :func:`resolve` does the rest.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence, Union

__all__ = ["FULL", "resolve", "is_full", "is_parametric", "parse_assignments", "parse_int",
           "parse_int_list", "check_range", "check_size", "canonical_name", "from_canonical_name",
           "unknown_point"]

#: Canonical variant name of the unmodified model.
FULL = "full"

Value = Union[int, tuple[int, ...]]


def resolve(model: str, variant: str | None, full: Mapping[str, Value],
            points: Mapping[str, Mapping[str, Value]] | None = None) -> tuple[str, dict[str, Value]]:
    """Parameters of ``variant`` and its canonical name.

    Parameters
    ----------
    model:
        Model name, for messages.
    variant:
        ``None``/``"full"``, a key of ``points``, ``"key=value,..."`` with keys of ``full``, or
        the short name :func:`canonical_name` gives one.
    full:
        The original model's parameters; each value is also the largest allowed.
    points:
        Named points: name -> the parameters that differ from ``full``.

    Returns
    -------
    (name, params):
        ``"full"``, the point's name or :func:`canonical_name`; ``full`` updated
        with the variant's values.

    Raises
    ------
    ValueError
        Malformed spelling, unknown key or point, or a value outside ``1..full``
        (the message names the parameter, the value and the range).
    """
    points = points or {}
    if is_full(variant):
        return FULL, dict(full)
    variant = variant.strip()
    if is_parametric(variant):
        params = dict(full)
        for key, text in parse_assignments(model, variant, tuple(full)).items():
            default = full[key]
            params[key] = (parse_int_list(model, key, text, len(default)) if isinstance(default, tuple)
                           else parse_int(model, key, text))
        label = None
    elif variant in points:
        params, label = {**full, **points[variant]}, variant
    elif (spelled := from_canonical_name(variant, full)) is not None:
        return resolve(model, spelled, full, points)
    else:
        raise unknown_point(model, variant, tuple(points), tuple(full), short_names=True)
    for key, default in full.items():
        if isinstance(default, tuple):
            for i, (value, high) in enumerate(zip(params[key], default)):
                check_range(model, f"{key}[{i}]", value, high)
        else:
            check_range(model, key, params[key], default)
    return label or canonical_name(params, full), params


def is_full(variant: str | None) -> bool:
    """True for the spellings of the original model: ``None``, ``""`` and ``"full"``."""
    return variant is None or variant.strip().lower() in ("", FULL)


def is_parametric(variant: str) -> bool:
    """True if ``variant`` is a ``key=value,...`` spelling rather than a point name."""
    return "=" in variant


def parse_assignments(model: str, variant: str, keys: Sequence[str]) -> dict[str, str]:
    """Split ``"k=v,k=v"`` into a dict of raw strings.

    Raises
    ------
    ValueError
        An item without ``=``, an empty value, a key not in ``keys`` (the message
        lists the valid keys) or a key given twice.
    """
    out: dict[str, str] = {}
    for item in variant.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"{model}: variant item {item!r} is not of the form key=value")
        if key not in keys:
            raise ValueError(f"{model}: unknown variant parameter {key!r} in {variant!r}; "
                             f"valid parameters are {', '.join(keys)}")
        if key in out:
            raise ValueError(f"{model}: variant parameter {key!r} given twice in {variant!r}")
        out[key] = value
    if not out:
        raise ValueError(f"{model}: empty variant {variant!r}")
    return out


def parse_int(model: str, key: str, value: str) -> int:
    """``value`` as an integer, or a ValueError naming ``key`` and ``value``."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{model}: {key}={value!r} is not an integer") from None


def parse_int_list(model: str, key: str, value: str, length: int) -> tuple[int, ...]:
    """``"2-4-6-3"`` as ``(2, 4, 6, 3)``; exactly ``length`` items are required."""
    items = value.split("-")
    if len(items) != length:
        raise ValueError(f"{model}: {key}={value!r} must list {length} integers separated by '-'")
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise ValueError(f"{model}: {key}={value!r} is not a '-'-separated list of integers") from None


def check_size(model: str, size, default: tuple[int, int]) -> tuple[int, int]:
    """The input ``(H, W)`` of ``model``: ``default`` for None, else two positive integers."""
    if size is None:
        return default
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{model}: size must be (H, W), not {size!r}") from None
    if not (isinstance(h, int) and isinstance(w, int)) or h <= 0 or w <= 0:
        raise ValueError(f"{model}: size must be two positive integers (H, W), not {size!r}")
    return h, w


def check_range(model: str, key: str, value: int, high: int, low: int = 1) -> None:
    """Refuse ``value`` outside ``low..high`` with a message naming ``key``, the value and the range."""
    if not low <= value <= high:
        raise ValueError(f"{model}: {key}={value} is outside the allowed range {low}..{high}")


def canonical_name(values: Mapping[str, Value], full: Mapping[str, Value]) -> str:
    """Filesystem-safe name of a parametric variant: the keys that differ from ``full``.

    Keys appear in the order of ``full``; lists are joined with ``-``; an
    assignment equal to the original model is left out, and a variant equal to
    the original model is called ``"full"``.  Example: ``"blocks2-4-6-3_fuse1408"``.
    """
    parts = []
    for key, default in full.items():
        value = values[key]
        if value == default:
            continue
        text = "-".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts.append(f"{key}{text}")
    return "_".join(parts) or FULL


def from_canonical_name(name: str, full: Mapping[str, Value], value: str = r"[1-9][0-9]*") -> str | None:
    """The ``key=value,...`` spelling of a :func:`canonical_name` (``"blocks2-4-6-3_fuse1408"`` ->
    ``"blocks=2-4-6-3,fuse=1408"``), so that the name a report prints can be typed back; None for
    a name that is not one.  Keys are matched in ``full``'s order, as the name writes them (a key
    that is a prefix of another plus digits, ``linear`` beside ``linear0``, would be ambiguous);
    ``value`` is the pattern of one item of a value (a family whose values are not counts from 1,
    OFA's ``e0.2``, gives its own; the family's parser checks what it matched)."""
    items, rest = [], name
    for key in full:
        match = re.match(re.escape(key) + rf"({value}(?:-{value})*)(?:_(?=.)|$)", rest)
        if match:
            items.append(f"{key}={match.group(1)}")
            rest = rest[match.end():]
    return ",".join(items) if items and not rest else None


def unknown_point(model: str, variant: str, points: Sequence[str], keys: Sequence[str],
                  short_names: bool = False) -> ValueError:
    """The error for a variant that is neither parametric nor a known point name: the named points
    and the parameters ``keys`` a ``key=value,...`` spelling takes (``short_names``: the family reads
    :func:`canonical_name` back, as :func:`resolve` does)."""
    valid = ", ".join([FULL, *points]) if points else FULL
    short = ", or the short name a report gives it" if short_names else ""
    return ValueError(f"{model}: unknown variant {variant!r}; valid named variants are {valid}, "
                      f"or a 'key=value,...' spelling of the parameters {', '.join(keys)}{short}")
