"""The model zoo: command-line name -> builder.

Each family module exposes builders ``build(name, variant, size) -> Model``;
``variant`` is ``None`` for the full model, ``size`` ``None`` for the model's
default input size.
"""

from __future__ import annotations

import importlib

from ..ir import Model

__all__ = ["MODEL_NAMES", "build_model"]

#: command-line name -> family module (in this package) that builds it.
_FAMILY = {
    "segformer_b0": "segformer", "segformer_b1": "segformer", "segformer_b2": "segformer",
    "segformer_b0_city": "segformer", "segformer_b1_city": "segformer", "segformer_b2_city": "segformer",
    "swin_tiny": "swin", "swin_small": "swin", "swin_base": "swin",
    "resnet50": "resnet", "ofa_resnet50": "resnet",
    "detr": "detr", "dab_detr": "detr", "anchor_detr": "detr", "conditional_detr": "detr",
}
MODEL_NAMES = tuple(_FAMILY)


def build_model(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build model ``name`` (optionally an execution-path ``variant`` and input ``size``).

    Raises
    ------
    KeyError
        Unknown model; the message lists the valid names.
    ValueError
        A variant or size the model cannot take; the message says why.
    """
    if name not in _FAMILY:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    module = importlib.import_module(f"{__name__}.{_FAMILY[name]}")
    return module.build(name, variant=variant, size=size)
