"""The model zoo: command-line name -> builder; and the other two ways in.

Each family module exposes builders ``build(name, variant, size) -> Model``;
``variant`` is ``None`` for the full model, ``size`` ``None`` for the model's
default input size.  ``build_model`` also takes the path of an ONNX file
(``*.onnx``, imported by :mod:`mapper.onnx_import`), and a model built in Python
is a :class:`~mapper.ir.Model` like any other (shape-checked when it is built).
"""

from __future__ import annotations

import importlib

from hw.cli import did_you_mean as close_choice

from ..ir import Model

__all__ = ["MODEL_NAMES", "build_model", "check_model", "did_you_mean", "is_onnx_path", "model_label"]

#: command-line name -> family module (in this package) that builds it.
_FAMILY = {
    "segformer_b0": "segformer", "segformer_b1": "segformer", "segformer_b2": "segformer",
    "segformer_b0_city": "segformer", "segformer_b1_city": "segformer", "segformer_b2_city": "segformer",
    "swin_tiny": "swin", "swin_small": "swin", "swin_base": "swin",
    "resnet50": "resnet", "ofa_resnet50": "resnet",
    "detr": "detr", "dab_detr": "detr", "anchor_detr": "detr", "conditional_detr": "detr",
}
MODEL_NAMES = tuple(_FAMILY)


def is_onnx_path(name: str) -> bool:
    """Whether a ``MODEL`` value names an ONNX file rather than a zoo model (here, not in
    mapper.onnx_import: a zoo run need not import onnx, a second of every command's start)."""
    return str(name).lower().endswith(".onnx")


def build_model(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build model ``name`` (optionally an execution-path ``variant`` and input ``size``).

    Raises
    ------
    KeyError
        Unknown model; the message lists the valid names.
    ValueError
        A variant or size the model cannot take; the message says why.
    """
    if is_onnx_path(name):
        return _onnx_model(name, variant, size)
    check_model(name)
    module = importlib.import_module(f"{__name__}.{_FAMILY[name]}")
    return module.build(name, variant=variant, size=size)


def check_model(name: str) -> None:
    """KeyError (the one-line message lists the zoo) unless ``name`` is a zoo model or an ONNX file's path."""
    if name not in _FAMILY and not is_onnx_path(name):
        raise KeyError(f"unknown model {name!r}{did_you_mean(name)}; choose one of {', '.join(MODEL_NAMES)}, "
                       f"or the path of a .onnx file")


def did_you_mean(name: str) -> str:
    """`` (did you mean 'segformer_b2'?)`` for a zoo name close to ``name`` (case aside), else ''."""
    return close_choice(name, MODEL_NAMES)


def model_label(name: str) -> str:
    """What names the model in output folders: the zoo name, or an ONNX file's ``<stem>-<hash>``."""
    return build_model(name).name if is_onnx_path(name) else name


def _onnx_model(path: str, variant: str | None, size: tuple[int, int] | None) -> Model:
    from ..onnx_import import load_onnx

    if variant not in (None, "", "full"):
        raise ValueError(f"{path}: an ONNX model has no execution-path variants (VARIANT={variant!r}); "
                         f"export each variant as its own file")
    model = load_onnx(path).model
    if size is not None and tuple(size) != tuple(model.input[:2]):
        raise ValueError(f"{path}: the ONNX model's input is {model.input[0]}x{model.input[1]}, fixed in the file, "
                         f"not {size[0]}x{size[1]}; export it at the size you want")
    return model
