"""Inference on the simulated accelerator: a quantised network, its program and a functional run.

``check_network`` builds the whole-network program of a model on a configuration, runs it
in functional mode from the input image to the output, and compares every tensor with the
golden whole-network integer model as soon as it is written (``sim.functional.check_program``).
``network_parameters`` and ``refusals`` are what it shares with ``make run`` (``sim.infer``):
the weights and quantisation of every model, chosen in one place (``mapper.calibrate.prepare``),
and a network the accelerator cannot run as a one-line ``UsageError``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import numpy as np

from hw.cli import UsageError
from hw.config import AcceleratorConfig
from mapper.calibrate import check_image_input, prepare
from mapper.images import preprocess, quantize_input, synthetic_image
from mapper.ir import Model
from mapper.program import build_program
from mapper.quantize import QModel

from .functional import check_program

__all__ = ["runs_on_images", "network_parameters", "refusals", "check_network"]


def runs_on_images(model: Model) -> None:
    """The refusal :func:`network_parameters` would give a network that does not take an RGB image,
    early: ``UsageError`` ``cannot run <model>: ...`` before a tool's timing or image work."""
    try:
        check_image_input(model)
    except ValueError as e:
        raise UsageError(f"cannot run {model.name}: {e}") from None


def network_parameters(model: Model, seed: int, calib_images: int = 1) -> tuple[dict, QModel]:
    """The float weights of ``model`` and its integer parameters (``mapper.calibrate.prepare``: an
    ONNX file's own weights, and a QDQ file's own quantisation; else weights seeded with ``seed``
    and initialised as the original model's), calibrated on ``calib_images`` seeded calibration
    images (``mapper.images.calibration_image``).

    Raises
    ------
    UsageError
        ``cannot run <model>: ...`` when the network cannot be quantised or computed.
    """
    try:
        return prepare(model, seed, calib_images=calib_images)
    except ValueError as e:
        raise UsageError(f"cannot run {model.name}: {e}") from None


@contextmanager
def refusals(model: Model, cfg: AcceleratorConfig) -> Iterator[None]:
    """Building and running ``model``'s program on ``cfg``: what the accelerator cannot do becomes
    ``UsageError`` ``cannot run <model> on <config>: ...``.  The program builder, the encoders and
    the integer operators refuse it with ``ValueError``s naming the layer or field (``ProgramError``,
    ``MappingError``, ``hw.isa.StreamError``, ``hw.operators``' limits); a difference from the golden
    model is a ``CheckError`` (an ``AssertionError``) and passes through."""
    try:
        yield
    except ValueError as e:
        # the program builder names the model itself, for the tools that print its errors alone
        why = " ".join(str(e).split()).removeprefix(f"{model.name}: ")
        raise UsageError(f"cannot run {model.name} on {cfg.name}: {why}") from None


def check_network(model: Model, cfg: AcceleratorConfig, *, seed: int, fuse: bool = True,
                  progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run ``model`` on ``cfg`` end to end in functional mode on a seeded input and compare every
    tensor with the golden model.

    Raises
    ------
    CheckError
        Naming the first layer and element that differ.
    UsageError
        A network that cannot be quantised or run on ``cfg`` (:func:`refusals`).
    """
    q = network_parameters(model, seed)[1]
    h, w, _ = model.input
    x = quantize_input(preprocess(synthetic_image(h, w, seed + 1), model.input[2]))
    with refusals(model, cfg):
        program = build_program(q, cfg, fuse=fuse, image=x)
        result = check_program(program, q, x, progress=progress)
    return {"tensors": result["tensors"], "elements": result["elements"], "seed": seed,
            "instructions": len(program.stream), "dram_bytes": program.footprint}
