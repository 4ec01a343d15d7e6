"""Inference on the simulated accelerator: ``python -m sim.infer --model M --config CFG [--image F]``.

``make run MODEL=segformer_b2 CFG=E [SIZE=HxW] [VARIANT=...] [IMAGE=photo.png|x.npy] [SEED=n] [OUT=dir]``
runs it.  From an image to the model's output, computed by the accelerator's own arithmetic:

1. the network's weights, seeded with ``--seed`` and initialised as the original model's,
   quantised on the seeded calibration image; an ONNX file's own weights, and a QDQ file's own
   quantisation (``mapper.calibrate.prepare`` chooses; ``sim.inference.network_parameters``);
2. the input: ``--image`` read (PNG, JPEG or anything else Pillow reads, converted to RGB;
   or a ``.npy`` array ``H x W x 3`` of uint8, or of floats in [0, 1], scaled by 255 and
   rounded), brought to the network's input size as the original model's evaluation
   pipeline does (:func:`fit_image`), then ``mapper.images.preprocess`` and
   ``quantize_input``; without ``--image`` the seeded synthetic image
   ``synthetic_image(H, W, seed)`` (never the calibration image);
3. the whole-network program (``mapper.program``: one DRAM image, one instruction stream)
   executed in functional mode, every tensor compared bit for bit with the golden
   whole-network model as it is written (``sim.functional.check_program``);
4. the float reference (``mapper.reference``) on the same preprocessed image, and the
   agreement of the accelerator's output with it (``sim.accuracy.output_agreement``);
5. the cycles and energy of the run (``sim.simulator.simulate``: the timing of the same
   plan and mappings the program executes).

It writes a folder named by everything that changes its content (``run_dir``; default
``build/run/<name>``, or ``--out``), as a whole (``hw.cli.StagedDir``): ``output.npy`` (or
``output.npz``), ``output.png`` and ``run.json``; ``docs/run.md`` describes them.  Bad
input (unknown model, configuration, variant or size; a missing, unreadable or wrongly
shaped image; a network whose program does not fit the configured DRAM or cannot execute;
an unwritable output folder) prints one line and exits with status 2; a difference from
the golden model prints the first one and exits with status 1.  Neither writes anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np

from hw.cli import (RUN_MARK, OneLineParser, StagedDir, StageTicker, UsageError, counted, fail, file_tag, number_type,
                    open_input, run_main, seed)
from hw.config import PRESETS, AcceleratorConfig
from hw.numerics import INT8_MAX, INT8_MIN
from mapper import float_ops
from mapper.flops import MODEL_HELP, build_model_or_usage_error, model_parts, parse_size, refuse_flops_only
from mapper.images import preprocess, quantize_input, round_half_up, synthetic_image
from mapper.ir import Model
from mapper.lower import MappingError, refuse_beyond_isa
from mapper.program import build_program, check_weights_fit
from mapper.quantize import QModel
from mapper.reference import run_float

from . import picture
from .accuracy import finite_or_none, logits_layer, output_agreement, task_of
from .config_args import add_override_options, config_from_args
from .functional import CheckError, check_program
from .inference import network_parameters, refusals, runs_on_images
from .outputs import config_tag, run_name
from .progress import Progress, layer_weights
from .simulator import SimResult, simulate

__all__ = ["read_image", "fit_image", "class_names", "run_dir", "infer", "Inference", "output_files", "saturated_outputs", "main",
           "OWNED", "IMAGE_FORMS"]

DEFAULT_ROOT = Path("build") / "run"
DATA = Path(__file__).resolve().parents[1] / "data"
#: What a run leaves in its folder (an existing folder holding anything else is not replaced).
OWNED = ("output.npy", "output.npz", "output.png", "run.json")
IMAGE_FORMS = "a PNG, JPEG or TIFF image (a float one in [0, 1]), or a .npy array H x W x 3 of uint8 or of floats in [0, 1]"
#: torchvision's ImageNet evaluation: resize to 256, centre crop 224.
CROP_RATIO = 256 / 224
#: (task, classes) -> the name list in ``data/<name>_classes.txt``.
NAME_LISTS = {("segmentation", 150): "ade20k", ("segmentation", 19): "cityscapes",
              ("classification", 1000): "imagenet", ("detection", 80): "coco"}
#: How many classes or queries run.json and the picture list.
TOP_CLASSES, TOP_QUERIES = 10, 5


# ---- the input image -----------------------------------------------------------------------------

def read_image(path) -> np.ndarray:
    """The RGB image in ``path`` as uint8 ``H x W x 3`` (module docstring, step 2).

    Raises
    ------
    UsageError
        Naming the file and what is allowed, when it is missing, unreadable or of the wrong shape.
    """
    with open_input(path, "image", hint=f"give {IMAGE_FORMS}") as f:
        path = Path(path)
        return _read_npy(path, f) if path.suffix.lower() == ".npy" else _read_picture(path, f)


def _read_picture(path: Path, f: BinaryIO) -> np.ndarray:
    from PIL import Image
    try:
        with warnings.catch_warnings():
            # a large image is resized anyway; Pillow's multi-line warning would only clutter stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f)
            im.load()
        with im:
            if im.mode == "F":                   # float grey (a TIFF): the rule of float arrays
                return _float_rgb(path, np.repeat(np.asarray(im)[..., None], 3, axis=2))
            if im.mode.startswith("I"):          # 16-bit grey: convert("RGB") would clip it to white
                bits = _integer_bits(im)
                if bits > 16:                    # its values are no hint: 65535 of 2**32 - 1 is near black
                    raise UsageError(f"image {str(path)!r} has {bits}-bit integer samples; integer images of "
                                     f"8 or 16 bits are read; give {IMAGE_FORMS}")
                grey = np.asarray(im).astype(np.float64)
                if grey.min(initial=0) < 0 or grey.max(initial=0) > 65535:
                    raise UsageError(f"image {str(path)!r} holds integers from {int(grey.min()):,} to {int(grey.max()):,}, "
                                     f"outside 16 bits; give {IMAGE_FORMS}")
                grey *= 255 / 65535
                return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Image.UnidentifiedImageError:     # its text names an internal file object ("name=3"), not the file
        raise UsageError(f"image {str(path)!r} is in no picture format Pillow recognises; give {IMAGE_FORMS}") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise UsageError(f"image {str(path)!r} cannot be read ({type(e).__name__}: {e}); give {IMAGE_FORMS}") from None


def _integer_bits(im) -> int:
    """The bits per sample an integer grey picture declares.  Pillow reads 16-bit PNGs and TIFFs as
    mode "I;16", but a 16-bit PGM and a 32-bit TIFF both as "I" (32-bit integers)."""
    from PIL.TiffImagePlugin import BITSPERSAMPLE
    if im.mode.startswith("I;16") or im.format == "PPM":      # a PGM's maxval is at most 65535
        return 16
    declared = getattr(im, "tag_v2", {}).get(BITSPERSAMPLE)
    if declared is not None:
        return max(declared) if isinstance(declared, tuple) else int(declared)
    return 32


def _read_npy(path: Path, f: BinaryIO) -> np.ndarray:
    _refuse_short_npy(path, f)
    try:
        f.seek(0)
        a = np.load(f, allow_pickle=False)
    except ValueError as e:
        raise UsageError(f"image {str(path)!r} is no readable .npy array ({_why_not_npy(f, e)}); "
                         f"give {IMAGE_FORMS}") from None
    except (OSError, EOFError) as e:
        raise UsageError(f"image {str(path)!r} is no readable .npy array ({e}); give {IMAGE_FORMS}") from None
    if not isinstance(a, np.ndarray) or a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        shape = a.shape if isinstance(a, np.ndarray) else "an .npz archive"
        raise UsageError(f"image {str(path)!r} holds {shape}, not H x W x 3; give {IMAGE_FORMS}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f":
        raise UsageError(f"image {str(path)!r} holds {a.dtype} values; give {IMAGE_FORMS}")
    return _float_rgb(path, a)


def _refuse_short_npy(path: Path, f: BinaryIO) -> None:
    """UsageError when the header of the .npy file ``path`` (open as ``f``) declares more data than the
    file holds (a shape of 100000 x 100000 x 3 in a small file): numpy would allocate it all before
    reading and fail with a MemoryError.  A file that is no .npy, or whose header numpy cannot read, is left to
    ``np.load`` to refuse."""
    try:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
        if read_header is None:      # a version 3.0 header, rare: np.load reads it as it can
            return
        shape, _, dtype = read_header(f)
        data = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, ValueError, EOFError, SyntaxError, TypeError):
        return
    if dtype.hasobject:
        return
    declared = math.prod(shape) * dtype.itemsize
    if declared > data:
        raise UsageError(f"image {str(path)!r} is no readable .npy array (its header declares {shape} of {dtype}, "
                         f"{declared:,} bytes, but the file holds {max(data, 0):,} bytes of data); "
                         f"give {IMAGE_FORMS}")


def _why_not_npy(f: BinaryIO, e: ValueError) -> str:
    """Why numpy refused the file ``f``, without its advice to unpickle it (not for a user who meant to
    give an array): numpy takes a file that is no .npy or .npz for a pickle."""
    if "pickle" not in str(e):
        return str(e)
    f.seek(0)
    npy = f.read(6) == b"\x93NUMPY"
    return ("it holds Python objects (dtype object), stored pickled, which are never unpickled: "
            "unpickling can run code" if npy else "it is no .npy or .npz file")


def _float_rgb(path: Path, a: np.ndarray) -> np.ndarray:
    """An image of floats in [0, 1] as uint8 (``round(255 a)``); anything else is refused."""
    if not np.all(np.isfinite(a)):
        raise UsageError(f"image {str(path)!r} holds NaN or infinite values; give {IMAGE_FORMS}")
    if a.min() < 0 or a.max() > 1:
        raise UsageError(f"image {str(path)!r} holds floats from {a.min():g} to {a.max():g}, outside [0, 1]; "
                         f"give {IMAGE_FORMS}")
    return round_half_up(a.astype(np.float64) * 255).astype(np.uint8)


def fit_image(rgb: np.ndarray, height: int, width: int, task: str) -> tuple[np.ndarray, str]:
    """``rgb`` brought to ``height x width`` as the original model's evaluation pipeline does, and
    how: the program has one input size, so where the pipeline keeps the aspect ratio
    (mmseg's and detectron2's resizes) the image is stretched to the size instead."""
    if task == "classification":
        return _resize_crop(rgb, height, width), (
            f"resized by Pillow's bilinear filter (antialiased) to cover {CROP_RATIO:.4g} x {height}x{width} "
            f"and centre-cropped, as torchvision's ImageNet evaluation (Resize(256), CenterCrop(224))")
    if task == "segmentation":
        return _resize_bilinear(rgb, height, width), (
            f"resized to {height}x{width} bilinearly (half-pixel centres, no antialiasing), as mmseg's Resize "
            f"(cv2 INTER_LINEAR; mmseg keeps the aspect ratio, a fixed-size program cannot)")
    return _resize_pil(rgb, height, width), (
        f"resized to {height}x{width} by Pillow's bilinear filter, as detectron2's ResizeShortestEdge "
        f"(which keeps the aspect ratio, a fixed-size program cannot)")


def _resize_pil(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def _resize_crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max(height / h, width / w) * CROP_RATIO
    rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
    top, left = int(round((rh - height) / 2)), int(round((rw - width) / 2))
    return _resize_pil(rgb, rh, rw)[top:top + height, left:left + width]


def _resize_bilinear(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = float_ops.resize_bilinear(rgb.astype(np.float32), height, width)
    return np.clip(round_half_up(resized), 0, 255).astype(np.uint8)


def class_names(task: str, classes: int) -> list[str]:
    """Names of classes ``0 .. classes-1``: the dataset's list in ``data/`` (``NAME_LISTS``; a
    detection head with one class more than its list has DETR's "no object" last), else
    ``class <i>``."""
    listed = NAME_LISTS.get((task, classes)) or NAME_LISTS.get((task, classes - 1))
    if listed is None:
        return [f"class {i}" for i in range(classes)]
    text = (DATA / f"{listed}_classes.txt").read_text()
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return names + ["no object"] * (classes - len(names))


# ---- the run -------------------------------------------------------------------------------------

@dataclass
class Inference:
    """What one run computed: the accelerator's outputs and the float reference's (by layer
    name), the tensors checked, the program's size, the timing, and wall seconds per phase."""

    qmodel: QModel
    outputs: dict
    floats: dict
    checked: dict
    program: dict
    timing: SimResult
    walls: dict = field(default_factory=dict)


class _Phases:
    """Times the phases of a run and reports each on stderr (a progress bar for the long ones)."""

    def __init__(self, title: str, enabled: bool):
        self.title, self.enabled, self.walls = title, enabled, {}

    @contextmanager
    def __call__(self, key: str, label: str, steps: int = 0, unit: str = "step", weights: Optional[dict] = None):
        """A phase; with ``steps``, a bar advanced by the callable it yields (called with a layer's name,
        which ``weights`` maps to its expected share of the work)."""
        weights = weights or {}
        bar = Progress(f"{self.title}: {label}", steps, unit=unit, enabled=self.enabled,
                       total_weight=sum(weights.values()) or None) if steps else None
        start = time.perf_counter()
        try:
            yield (lambda name=None, *_: bar.update(1, weights.get(name, 1.0) if weights else None)) if bar else None
        finally:
            if bar:
                bar.close()
        self.walls[key] = time.perf_counter() - start
        if self.enabled:
            print(f"{self.title}: {label}: {self.walls[key]:.1f} s", file=sys.stderr, flush=True)


def infer(model: Model, cfg: AcceleratorConfig, image: np.ndarray, seed: int, *, calib_images: int = 1,
          progress: bool = False) -> Inference:
    """Run ``model`` on ``cfg`` on the preprocessed float ``image`` (module docstring, steps 1 and 3-5).

    Raises
    ------
    UsageError
        When the network cannot execute (an opaque product), its program cannot be built
        (e.g. its DRAM image does not fit the configuration's ``dram_mib``) or a layer is one
        the accelerator cannot run (``sim.inference.refusals``).
    CheckError
        When a tensor differs from the golden model (the message names the first difference).
    """
    phase = _Phases(f"{model.name} on {cfg.name}", progress)
    label = f"weights and calibration (seed {seed}, {counted(calib_images, 'image')})"
    with phase("weights", label), StageTicker(phase.title, enabled=progress) as ticker:
        ticker.stage(label)          # B2's is 20 s of float passes, none of which reports
        weights, qmodel = network_parameters(model, seed, calib_images)
    x = quantize_input(image)
    with phase("program", "whole-network program"), refusals(model, cfg), \
            StageTicker(phase.title, enabled=progress) as ticker:
        ticker.stage("building the whole-network program (mapping the layers)")     # no steps of its own
        program = build_program(qmodel, cfg, image=x)
    size = {"instructions": len(program.stream), "dram_bytes": program.footprint,
            "static_bytes": program.static_bytes, "activation_bytes": program.activation_bytes,
            "dram_capacity_bytes": cfg.dram_bytes}
    # a step's functional run takes about as long as its instructions
    insns = {code.step.layer.name: code.end - code.start for code in program.steps}
    with phase("functional", "functional run, compared with the golden model", len(program.steps),
               weights=insns) as step, refusals(model, cfg):
        checked = check_program(program, qmodel, x, progress=step)
    del program
    outputs = checked.pop("outputs")
    with phase("float_reference", "float reference", len(model.layers), "layer") as step:
        floats = {}
        for name, value in run_float(model, weights, image):
            step()
            if name in outputs:
                floats[name] = value
    with phase("timing", "timing and energy", len(model.layers), "layer", layer_weights(model)) as step:
        try:
            timing = simulate(model, cfg, progress=step)
        except MappingError as e:
            raise UsageError(f"cannot map {model.name} onto {cfg.name}: {e}") from None
    return Inference(qmodel, outputs, floats, checked, size, timing, phase.walls)


# ---- outputs -------------------------------------------------------------------------------------

def _dequantised(inference: Inference, name: str) -> np.ndarray:
    """Output ``name``'s int8 values times their scales (per part for a concatenation of parts that keep
    their own, ``mapper.quantize.QModel.scales``)."""
    return inference.qmodel.dequantise(name, inference.outputs[name]).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _segmentation(inference: Inference, model: Model, names: list[str]) -> tuple[dict, dict]:
    classes = np.asarray(inference.outputs[model.layers[-1].name])
    counts = np.bincount(classes.reshape(-1), minlength=len(names))
    top = np.argsort(-counts, kind="stable")[:TOP_CLASSES]
    summary = {"top_classes": [{"class": int(i), "name": names[i], "share": float(counts[i] / classes.size)}
                               for i in top if counts[i]]}
    return {"output.npy": classes}, summary


def _classification(inference: Inference, model: Model, names: list[str]) -> tuple[dict, dict]:
    name = logits_layer(model)
    logits = _dequantised(inference, name).reshape(-1)
    prob = _softmax(logits.astype(np.float64))
    top = np.argsort(-logits, kind="stable")[:5]
    summary = {"scale": inference.qmodel.layers[name].scale,
               "top5": [{"class": int(i), "name": names[i], "logit": float(logits[i]), "probability": float(prob[i])}
                        for i in top]}
    return {"output.npy": logits}, summary


def _detection(inference: Inference, model: Model, names: list[str]) -> tuple[dict, dict]:
    logits = _dequantised(inference, "head.class").reshape(-1, len(names))
    boxes = _dequantised(inference, "head.bbox.sigmoid").reshape(-1, 4)
    if names[-1] == "no object":            # DETR: softmax over the classes and "no object"
        scores = _softmax(logits.astype(np.float64))[:, :-1]
    else:                                   # focal-loss heads (DAB, Conditional, Anchor DETR): sigmoids
        scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    best, score = scores.argmax(axis=1), scores.max(axis=1)
    top = np.argsort(-score, kind="stable")[:TOP_QUERIES]
    summary = {"class_scale": inference.qmodel.layers["head.class"].scale,
               "box_scale": inference.qmodel.layers["head.bbox.sigmoid"].scale,
               "top_queries": [{"query": int(q), "class": int(best[q]), "name": names[best[q]],
                                "score": float(score[q]), "box_cxcywh": [float(v) for v in boxes[q]]}
                               for q in top]}
    return {"output.npz": {"class_logits": logits, "boxes": boxes}}, summary


def _other(inference: Inference, model: Model, names: list[str]) -> tuple[dict, dict]:
    """Every output, dequantised: an ONNX file's under its graph output names in their ONNX
    shapes; a zoo model's by layer name, HWC."""
    from mapper.onnx_import import imported_of
    from mapper.onnx_layout import gather

    imported = imported_of(model)
    if imported is None:
        return {"output.npz": {n: _dequantised(inference, n) for n in inference.outputs}}, {}
    arrays = {name: gather(view, _dequantised(inference, view.source).reshape(-1))
              for name, view in imported.outputs.items()
              if view.source in inference.outputs and name not in imported.unwritten}
    for name, layer in imported.class_maps.items():      # the classes, as ONNX's ArgMax gives them
        arrays[name] = np.asarray(inference.outputs[layer]).astype(np.int64).reshape(imported.class_map_shapes[name])
    return {"output.npz": arrays}, {}


_OUTPUTS = {"segmentation": _segmentation, "classification": _classification, "detection": _detection}


def output_files(inference: Inference, model: Model, task: str) -> tuple[dict, dict, list[str]]:
    """The arrays to write (file name -> array, or dict of arrays for ``.npz``), the summary of
    the output for run.json, and the class names."""
    last = model.layer({"detection": "head.class", "classification": logits_layer(model)}.get(task)
                       or model.layers[-1].name)
    names = class_names(task, last.out_shape[-1])
    arrays, summary = _OUTPUTS.get(task, _other)(inference, model, names)
    if "output.npz" not in arrays and _more_graph_outputs(model):
        arrays.update(_other(inference, model, names)[0])   # the graph's other outputs are results too
    return arrays, {**summary, **_unwritten(model)}, names


def _unwritten(model: Model) -> dict:
    """The graph outputs the accelerator does not write, and why (for run.json and the summary)."""
    from mapper.onnx_import import imported_of

    imported = imported_of(model)
    if imported is None or not imported.unwritten:
        return {}
    return {"unwritten": {name: f"the accelerator writes their arg-max, {cls!r}, as the class map instead"
                          for name, cls in imported.unwritten.items()}}


def _more_graph_outputs(model: Model) -> bool:
    """Whether ``model`` is an ONNX file's with more than one graph output."""
    from mapper.onnx_import import imported_of

    imported = imported_of(model)
    return imported is not None and len(set(imported.outputs) - set(imported.unwritten)) + len(imported.class_maps) > 1


def saturated_outputs(inference: Inference) -> Optional[dict]:
    """The network's int8 output values at the int8 limits (-128 or 127): ``{"values", "share"}`` of
    them, or None when it writes none (a segmentation's class map).  A value there may stand for a
    larger one the calibration's range clipped (a ViT's top logit 1.69 against 2.36 in float)."""
    outputs = [v for v in inference.outputs.values() if v.dtype == np.int8]
    if not outputs:
        return None
    at_limit = sum(int(np.count_nonzero((v == INT8_MIN) | (v == INT8_MAX))) for v in outputs)
    return {"values": at_limit, "share": at_limit / sum(v.size for v in outputs)}


def _saturation_note(doc: dict) -> list[str]:
    """The summary's line on output values at the int8 limits, with more calibration images to try."""
    saturated = doc["saturated_outputs"]
    if not saturated or not saturated["values"]:
        return []
    more = 8 if doc["calib_images"] < 8 else min(2 * doc["calib_images"], MAX_CALIB_IMAGES)
    advice = (f"try CALIB_IMAGES={more} (--calib-images {more})" if more > doc["calib_images"]
              else f"{MAX_CALIB_IMAGES} calibration images are the most")
    return [f"note: {counted(saturated['values'], 'output value')} ({saturated['share']:.1%} of the output) at the int8 "
            f"limits (-128 or 127), which the calibrated range may have clipped: the agreement and the output "
            f"above are then of clipped values; {advice} (docs/run.md)"]


def run_dir(model: Model, cfg: AcceleratorConfig, size_given: bool, image_tag: str, seed: int,
            calib_images: int = 1) -> str:
    """``<model>_<config>[_<variant>][_<H>x<W>]_<image>_seed<n>[_calib<k>]``: the folder name of a
    run, made of everything that changes its results (``<image>``: ``synthetic`` or
    ``image-<stem>-<hash>``; ``calib<k>`` for more than one calibration image)."""
    name, variant, size = model_parts(model, size_given)
    return run_name(name, config_tag(cfg), variant, size, image_tag, f"seed{seed}",
                    f"calib{calib_images}" if calib_images != 1 else "")


def _report(args, model: Model, cfg: AcceleratorConfig, task: str, image_info: dict, inference: Inference,
            summary: dict) -> dict:
    res = inference.timing
    checked = inference.checked
    return {
        "model": model.name, "variant": model.variant, "size": list(model.input[:2]), "config": config_tag(cfg),
        "task": task, "image": image_info, "seed": args.seed, "calib_images": args.calib_images,
        "cycles": res.total_cycles, "time_ms": res.time_ms, "clock_ghz": cfg.clock_ghz,
        "energy_uj": res.energy_uj, "energy_onchip_uj": res.energy_onchip_pj * 1e-6,
        "bit_exact": {"verdict": True, "tensors": checked["tensors"], "elements": checked["elements"]},
        "agreement": output_agreement(model, task, inference.floats, inference.outputs, inference.qmodel),
        "saturated_outputs": saturated_outputs(inference),
        "program": inference.program,
        "output": summary,
        "config_params": cfg.to_dict(),
        "wall_s": inference.walls,
    }


def _write(stage: Path, arrays: dict, doc: dict) -> None:
    for name, value in arrays.items():
        if name.endswith(".npz"):
            np.savez(stage / name, **value)
        else:
            np.save(stage / name, value)
    with open(stage / "run.json", "w") as f:
        json.dump({**doc, "agreement": {k: finite_or_none(v) for k, v in doc["agreement"].items()}}, f, indent=1)
        f.write("\n")


# ---- command line --------------------------------------------------------------------------------

def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m sim.infer",
                      description="Run a network on the simulated accelerator, from an image to its output.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", required=True, help=f"one of {', '.join(PRESETS)}, or an accelerator file (.toml)")
    p.add_argument("--variant", default=None, help="execution-path variant (model specific)")
    p.add_argument("--size", default=None, help="input size HxW (default: the model's)")
    p.add_argument("--image", default=None,
                   help=f"the input: {IMAGE_FORMS} (default: a seeded synthetic image)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seed of the weights, their calibration and the synthetic image (default 0)")
    p.add_argument("--calib-images", type=_calib_count, default=1,
                   help="synthetic calibration images of the activation ranges (default 1; 1 to 64). One image "
                        "gives a statistic of the whole image (a composed group or layer norm) or a classifier's "
                        "logits the range of one sample, which another input clips: docs/quantization.md")
    add_override_options(p)
    p.add_argument("--out", default=None, help="output folder (default build/run/<name of the run>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


#: The most calibration images a run takes: each is a float pass of the whole network.
MAX_CALIB_IMAGES = 64


def _calib_count(value: str) -> int:
    n = number_type(int, "calibration images")(value)
    if not 1 <= n <= MAX_CALIB_IMAGES:
        raise argparse.ArgumentTypeError(f"{n} calibration images: give 1 to {MAX_CALIB_IMAGES}")
    return n


def _setup(args) -> tuple[Model, AcceleratorConfig]:
    size = parse_size(args.size) if args.size is not None else None
    cfg = config_from_args(args)
    model = build_model_or_usage_error(args.model, args.variant, size, progress=not args.quiet)
    refuse_flops_only(model, args.model)
    return model, cfg


def _input(args, model: Model, task: str) -> tuple[np.ndarray, dict, str]:
    """The model-sized RGB input, its description for run.json and its tag for the folder name."""
    h, w = model.input[:2]
    if args.image is None:
        return synthetic_image(h, w, args.seed), {"source": "synthetic", "seed": args.seed}, "synthetic"
    rgb = read_image(args.image)
    fitted, how = fit_image(rgb, h, w, task)
    tag = file_tag(args.image, "image")
    return fitted, {"source": str(args.image), "sha256_8": tag.rsplit("-", 1)[1],
                    "original_size": list(rgb.shape[:2]), "fitted": how}, tag


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input, 1 for a check mismatch)."""
    parser = _parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        model, cfg = _setup(args)
        runs_on_images(model)
        with refusals(model, cfg):          # a huge input size, a DRAM too small for the weights: first
            refuse_beyond_isa(model.layers, cfg)
            check_weights_fit(model, cfg)
        task = task_of(model)
        rgb, image_info, tag = _input(args, model, task)
        name = run_dir(model, cfg, args.size is not None, tag, args.seed, args.calib_images)
        stage = StagedDir(Path(args.out) if args.out else DEFAULT_ROOT / name, OWNED, run=name)
    except UsageError as e:
        return fail(prog, e)
    with stage:
        return _run(args, prog, model, cfg, task, rgb, image_info, stage)


def _run(args, prog: str, model: Model, cfg: AcceleratorConfig, task: str, rgb: np.ndarray, image_info: dict,
         stage: StagedDir) -> int:
    start = time.perf_counter()
    try:
        inference = infer(model, cfg, preprocess(rgb, model.input[2]), args.seed, calib_images=args.calib_images,
                          progress=not args.quiet)
    except UsageError as e:
        return fail(prog, e)
    except CheckError as e:
        print(f"{prog}: the accelerator's result differs from the golden model: {' '.join(str(e).split())}",
              file=sys.stderr)
        return 1
    arrays, summary, names = output_files(inference, model, task)
    doc = _report(args, model, cfg, task, image_info, inference, summary)
    picture.draw(stage.path / "output.png", task, rgb, arrays, summary, names,
                 f"{model.name} on {cfg.name}, {Path(image_info['source']).name} image, seed {args.seed}")
    doc["wall_s"]["total"] = time.perf_counter() - start
    _write(stage.path, arrays, doc)
    out = stage.commit()
    print(_summary_text(doc))
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if p.name != RUN_MARK))} to {out}"
          + stage.replaced_note())
    return 0


def _summary_text(doc: dict) -> str:
    be, prog_size = doc["bit_exact"], doc["program"]
    lines = [f"{doc['model']} {doc['size'][0]}x{doc['size'][1]} on {doc['config']}: {doc['cycles']:,} cycles, "
             f"{doc['time_ms']:.4f} ms at {doc['clock_ghz']:g} GHz, {doc['energy_uj']:.2f} uJ",
             f"bit-exact with the golden model: {counted(be['tensors'], 'tensor')}, {be['elements']:,} elements",
             f"program: {prog_size['instructions']:,} instructions, DRAM image {prog_size['dram_bytes'] / 2**20:.1f} MiB",
             "agreement with the float reference: " + (", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                                 for k, v in doc["agreement"].items())
                                                       or f"not measured for task {doc['task']!r}")]
    out = doc["output"]
    for item in out.get("top_classes", []):
        lines.append(f"  {item['share']:7.2%}  class {item['class']:>3}  {item['name']}")
    for item in out.get("top5", []):
        lines.append(f"  p {item['probability']:.4f}  class {item['class']:>4}  {item['name']}")
    for name, why in out.get("unwritten", {}).items():
        lines.append(f"graph output {name!r} is not written: {why}")
    for item in out.get("top_queries", []):
        lines.append(f"  score {item['score']:.3f}  query {item['query']:>3}  {item['name']}  box (cx, cy, w, h) "
                     + " ".join(f"{v:.3f}" for v in item["box_cxcywh"]))
    return "\n".join(lines + _saturation_note(doc))


if __name__ == "__main__":
    run_main(main)
