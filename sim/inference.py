"""Inference on the simulated accelerator: a quantised network, its program and a functional run.

``check_network`` builds the whole-network program of a model on a configuration, runs it
in functional mode from the input image to the output, and compares every tensor with the
golden whole-network integer model as soon as it is written (``sim.functional.check_program``).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from hw.config import AcceleratorConfig
from mapper.ir import Model
from mapper.calibrate import prepare
from mapper.images import preprocess, quantize_input, synthetic_image
from mapper.program import build_program
from mapper.quantize import QModel

from .functional import check_program

__all__ = ["network_parameters", "check_network"]


def network_parameters(model: Model, seed: int) -> QModel:
    """The integer parameters of ``model``: its weights seeded with ``seed`` (initialised as the
    original model's), quantised on the seeded calibration image (``mapper.calibrate``)."""
    return prepare(model, seed)[1]


def check_network(model: Model, cfg: AcceleratorConfig, *, seed: int, fuse: bool = True,
                  progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run ``model`` on ``cfg`` end to end in functional mode on a seeded input and compare every
    tensor with the golden model (``CheckError`` names the first layer and element that differ)."""
    q = network_parameters(model, seed)
    h, w, _ = model.input
    x = quantize_input(preprocess(synthetic_image(h, w, seed + 1)))
    program = build_program(q, cfg, fuse=fuse, image=x)
    result = check_program(program, q, x, progress=progress)
    return {"tensors": result["tensors"], "elements": result["elements"], "seed": seed,
            "instructions": len(program.stream), "dram_bytes": program.footprint}
