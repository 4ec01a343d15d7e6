"""How far the integer network is from the float one: per-layer SQNR and output agreement.

``compare(qmodel, weights, image)`` runs the float reference (``mapper.reference``) and the
golden integer model (``sim.golden_network``) side by side on one image and reports, per
layer, the signal-to-quantisation-noise ratio of the dequantised int8 output against the
float output, ``SQNR = 10 log10(sum f**2 / sum (f - q*s)**2)`` dB, the worst layer, and the
agreement of the outputs:

* segmentation (the last layer resizes class scores to the input size, and the accelerator
  writes it as a class map: ``mapper.fusion.is_class_map``): the fraction of
  pixels whose class agrees, float ``argmax`` of the upsampled logits against the golden
  model's class map (``golden_network.class_map`` of the scores before the resize);
* classification (a last linear over one token): top-1 agreement and the top-5 overlap;
* detection (``head.class`` and ``head.bbox.sigmoid``): the fraction of queries whose top
  class agrees and the mean L1 distance of the boxes (normalised cx, cy, w, h);
* any other network: the worst SQNR and Pearson correlation over its outputs of values.

``python -m sim.accuracy --model segformer_b0 --size 128x128`` prints the report and writes
it as JSON (``--output``); see ``docs/quantization.md``.  ``--model path/to/model.onnx`` takes the
file's weights, and a QDQ file's own quantisation (``mapper.calibrate.prepare``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from hw.cli import OneLineParser, UsageError, atomic_write_json, counted, number_type, output_json_file, run_main, seed
from mapper.calibrate import prepare, readers_of, softmax_margin, softmax_row
from mapper.flops import parse_size
from mapper.fusion import is_class_map
from mapper.images import preprocess, quantize_input, quantize_tensor, synthetic_image
from mapper.ir import INPUT, Conv2d, Linear, Model
from mapper.quantize import QModel
from mapper.reference import run_float
from mapper.workloads import MODEL_NAMES, build_model

from .golden_network import class_map, layer_output, run_network

__all__ = ["LayerError", "AccuracyReport", "compare", "logits_layer", "output_agreement", "sqnr_db", "task_of", "image_figures",
           "summarise", "main"]

#: Elements per block of the SQNR sums (float64 temporaries stay small).
_SQNR_BLOCK = 1 << 20


@dataclass(frozen=True)
class LayerError:
    """One layer's error: ``sqnr_db`` (``inf`` when exact) of its output in the integer network,
    the float output's RMS and its scale (of a concatenation whose parts keep their own, the
    coarsest; the SQNR takes each element's); ``local_db`` of the layer alone (its float inputs
    quantised to their scales) and ``input_db`` of the float network fed the int8 input
    (:func:`compare`; ``nan`` unless asked for)."""

    name: str
    kind: str
    sqnr_db: float
    float_rms: float
    scale: float
    local_db: float = math.nan
    input_db: float = math.nan


@dataclass
class AccuracyReport:
    """Per-layer errors in execution order, the worst computing layer and the output agreement."""

    model: str
    task: str
    layers: list[LayerError]
    worst: Optional[LayerError]
    output: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (``inf`` SQNR written as ``null``)."""
        def clean(e: LayerError) -> dict:
            d = asdict(e)
            for k in ("sqnr_db", "local_db", "input_db"):
                d[k] = finite_or_none(d[k])
            return d
        return {"model": self.model, "task": self.task, "output": {k: finite_or_none(v) for k, v in self.output.items()},
                "worst": clean(self.worst) if self.worst else None, "layers": [clean(e) for e in self.layers]}


def sqnr_db(f: np.ndarray, q: np.ndarray, scale=1.0, row: Optional[int] = None) -> float:
    """``10 log10(sum f**2 / sum (f - q*scale)**2)`` dB: ``inf`` if equal, ``-inf`` for a zero
    signal with noise; ``scale`` one float or each element's (an array broadcastable to ``f``'s
    shape, ``QModel.scales``).  With ``row`` (a tensor only softmaxes of rows of ``row`` read), both
    sides are first raised to ``rowmax(f) - softmax_margin(row)``: lower values do not change
    the softmax (``mapper.calibrate``), so their error does not count."""
    n = f.size
    step = _SQNR_BLOCK if row is None else max(1, _SQNR_BLOCK // row) * row
    ff, qq = f.reshape(-1), np.asarray(q).reshape(-1)
    each = np.broadcast_to(scale, f.shape).reshape(-1) if np.ndim(scale) else None
    signal = noise = 0.0
    for i in range(0, n, step):
        a = ff[i:i + step].astype(np.float64)
        b = qq[i:i + step].astype(np.float64) * (scale if each is None else each[i:i + step])
        if row is not None:
            floor = a.reshape(-1, row).max(axis=1, keepdims=True) - softmax_margin(row)
            a = np.maximum(a.reshape(-1, row), floor)
            b = np.maximum(b.reshape(-1, row), floor)
        signal += float(np.square(a).sum())
        noise += float(np.square(a - b).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def logits_layer(model: Model) -> str | None:
    """A classifier's logits: the last layer when it is a linear over one token (or a convolution
    to one pixel: a linear of a flattened image, VGG's), or the linear a last softmax reads when
    that linear is an output too (a file exporting logits and probabilities); None for another
    network."""
    last = model.layers[-1]
    if last.kind == "softmax" and last.inputs[0] in model.output_names:
        last = model.layer(last.inputs[0])
    return last.name if _one_token_logits(model, last) else None


def _one_token_logits(model: Model, layer) -> bool:
    """A linear over one token, a convolution to one pixel, or sums and products of such logits and
    constants (a distilled head's ``(head + head_dist) / 2``: DeiT, EfficientFormer)."""
    if isinstance(layer, Linear):
        return layer.tokens == 1
    if isinstance(layer, Conv2d) or layer.kind not in ("add", "mul"):
        return isinstance(layer, Conv2d) and tuple(layer.out_shape[:2]) == (1, 1)
    ins = [model.layer(n) for n in layer.inputs if n != INPUT]
    return len(ins) == len(layer.inputs) and any(i.kind != "constant" for i in ins) and \
        all(i.kind == "constant" or _one_token_logits(model, i) for i in ins)


def task_of(model: Model) -> str:
    """``segmentation``, ``classification``, ``detection`` (module docstring) or ``other``."""
    names = {layer.name for layer in model.layers}
    last = model.layers[-1]
    if {"head.class", "head.bbox.sigmoid"} <= names:
        return "detection"
    if is_class_map(last, model):          # what the accelerator writes as the class map
        return "segmentation"
    if logits_layer(model):
        return "classification"
    return "other"


def _outputs_needed(model: Model, task: str) -> set[str]:
    if task == "segmentation":
        return {model.layers[-1].name, model.layers[-1].inputs[0]}
    if task == "classification":
        return {logits_layer(model)}
    if task == "detection":
        return {"head.class", "head.bbox.sigmoid"}
    return set(model.output_names)


def compare(qmodel: QModel, weights: dict, image: np.ndarray, *, acc_bits: int = 32,
            local: bool = False, baseline: bool = False) -> AccuracyReport:
    """Run the float reference and the golden integer model on ``image`` (preprocessed float,
    ``model.input`` shaped) and report per-layer SQNR and output agreement (module docstring).

    With ``local``, also each layer's own error (``LayerError.local_db``): the golden layer
    run once more on its float inputs quantised to their scales.  With ``baseline``, also
    ``LayerError.input_db``: the float network run on the int8 input (dequantised), i.e. the
    error the network itself makes of the input's rounding alone.
    """
    model = qmodel.model
    task = task_of(model)
    needed = _outputs_needed(model, task)
    readers = readers_of(model)
    q_image = quantize_input(image)
    streams = [run_float(model, weights, image), run_network(qmodel, q_image, acc_bits=acc_bits)]
    if baseline:
        streams.append(run_float(model, weights, q_image.astype(np.float32) * np.float32(qmodel.input_scale)))
    floats = _FloatInputs(model, image) if local else None
    kept_f, kept_q, errors = {}, {}, []
    for i, (layer, outs) in enumerate(zip(model.layers, zip(*streams))):
        (name, f), (qname, q) = outs[:2]
        assert name == qname == layer.name, (name, qname)
        scale, row = qmodel.layers[name].scale, softmax_row(readers.get(name, []))
        errors.append(LayerError(
            name, layer.kind, sqnr_db(f, q, qmodel.scales(name), row),
            float(np.sqrt(np.mean(np.square(f, dtype=np.float64)))), scale, floats.local_sqnr(i, layer, f, qmodel, acc_bits, row) if floats else math.nan,
            sqnr_db(f, outs[2][1], 1.0, row) if baseline else math.nan))
        if name in needed:
            kept_f[name], kept_q[name] = f, q
    computing = [e for e in errors if e.kind != "constant" and not math.isinf(e.sqnr_db)]
    worst = min(computing, key=lambda e: e.sqnr_db) if computing else None
    if task == "segmentation":                 # the network's output: the class map of the scores
        last = model.layers[-1]
        kept_q[last.name] = class_map(kept_q[last.inputs[0]], last.out_h, last.out_w, last.align_corners)
    output = output_agreement(model, task, kept_f, kept_q, qmodel)
    return AccuracyReport(model.name, task, errors, worst, output)


class _FloatInputs:
    """The float tensors still to be read, to run each golden layer on its quantised float inputs."""

    def __init__(self, model: Model, image: np.ndarray):
        self.last_use = {n: i for i, layer in enumerate(model.layers) for n in layer.inputs}
        self.values = {INPUT: image}

    def local_sqnr(self, i: int, layer, f: np.ndarray, qmodel: QModel, acc_bits: int, row: Optional[int]) -> float:
        ins = [quantize_tensor(self.values[n], qmodel.scales(n)) for n in layer.inputs]
        ql = qmodel.layers[layer.name]
        db = sqnr_db(f, layer_output(layer, ins, ql, acc_bits), qmodel.scales(layer.name), row)
        self.values[layer.name] = f
        for n in layer.inputs:
            if self.last_use.get(n) == i:
                self.values.pop(n, None)
        return db


def output_agreement(model: Model, task: str, f: dict, q: dict, qmodel: QModel) -> dict:
    """How far the integer network's outputs ``q`` are from the float ones ``f`` (the module
    docstring's rules), both by layer name: for segmentation ``q`` holds the class map (uint8
    ``[H, W]``, as the accelerator writes it) under the last layer's name, ``f`` its float
    upsampled scores; otherwise the int8 outputs of the logits (``logits_layer``), or of ``head.class`` and
    ``head.bbox.sigmoid``.  ``{}`` for another task."""
    if task == "segmentation":
        name = model.layers[-1].name
        return {"pixel_agreement": float(np.mean(np.argmax(f[name], axis=-1) == q[name]))}
    if task == "classification":
        name = logits_layer(model)
        lf, lq = f[name].reshape(-1), q[name].reshape(-1).astype(np.int64)
        top5_f = set(np.argsort(-lf, kind="stable")[:5].tolist())
        top5_q = set(np.argsort(-lq, kind="stable")[:5].tolist())
        return {"top1_agrees": bool(np.argmax(lf) == np.argmax(lq)), "top5_overlap": len(top5_f & top5_q) / 5}
    if task == "detection":
        cf, cq = f["head.class"], q["head.class"]
        classes_f = np.argmax(cf.reshape(-1, cf.shape[-1]), axis=-1)
        classes_q = np.argmax(cq.reshape(-1, cq.shape[-1]), axis=-1)
        box_scale = qmodel.layers["head.bbox.sigmoid"].scale
        l1 = np.abs(f["head.bbox.sigmoid"] - q["head.bbox.sigmoid"].astype(np.float64) * box_scale)
        return {"query_class_agreement": float(np.mean(classes_f == classes_q)), "box_l1": float(l1.mean())}
    return _values_agreement(f, q, qmodel)


def _values_agreement(f: dict, q: dict, qmodel: QModel) -> dict:
    """For any other network: the worst SQNR and correlation over its int8 outputs, dequantised,
    against the float ones (class maps, which hold labels, are not values)."""
    pairs = [(f[n].reshape(-1), qmodel.dequantise(n, q[n]).reshape(-1))
             for n in q if n in f and np.asarray(q[n]).dtype == np.int8]
    if not pairs:
        return {}
    return {"sqnr_db": min(sqnr_db(a, b) for a, b in pairs), "correlation": min(_correlation(a, b) for a, b in pairs)}


def finite_or_none(value):
    """A figure as JSON holds it: ``inf`` (equal) and ``-inf`` (no signal) SQNRs as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation (in float64: float32 squares of large outputs overflow); 1 where both
    are constant and equal, 0 where one alone is constant."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 1.0 if sa == sb and np.allclose(a, b) else 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


# ---- command line --------------------------------------------------------------------------------

def _size(text: str) -> tuple[int, int]:
    """The other tools' ``--size`` (``mapper.flops.parse_size``: ASCII digits only)."""
    try:
        return parse_size(text)
    except UsageError:
        raise argparse.ArgumentTypeError(f"size must be HxW with two positive integers in digits 0-9 (e.g. 128x128), "
                                         f"not {text!r}") from None


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m sim.accuracy",
                      description="Per-layer SQNR and output agreement of the int8 network against the float one.")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help=f"one of {', '.join(MODEL_NAMES)}; or path/to/model.onnx (its own weights)")
    p.add_argument("--variant", default=None, help="an execution-path variant (see make sim)")
    p.add_argument("--size", type=_size, default=None, help="input size HxW (default: the model's)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seed of the weights (not an ONNX file's: they are the file's) and of the calibration "
                        "images (default 0)")
    p.add_argument("--calib-images", type=number_type(int, "synthetic calibration images"), default=1, help="synthetic calibration images (default 1)")
    p.add_argument("--images", type=number_type(int, "test images"), default=1,
                   help="test images: synthetic_image(seed + i), i = 0..images-1, never a calibration image "
                        "(default 1)")
    p.add_argument("--percentile", type=number_type(float, "a percentile in (50, 100]"), default=None,
                   help="calibrate ranges at this percentile of magnitudes (default: max-abs)")
    p.add_argument("--local", action="store_true", help="also each layer's own error (one more golden pass)")
    p.add_argument("--baseline", action="store_true",
                   help="also the float network's error from the input's rounding alone (one more float pass)")
    p.add_argument("--worst", type=number_type(int, "layers to print"), default=10, help="how many of the worst layers to print (default 10)")
    p.add_argument("--output", default=None, metavar="FILE.json",
                   help="write the reports as JSON here (a .json file; must not exist)")
    return p


def _check_args(parser: OneLineParser, args) -> None:
    if args.percentile is not None and not 50 < args.percentile <= 100:
        parser.error(f"--percentile must be in (50, 100], not {args.percentile}")
    for name in ("calib_images", "images", "worst"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if args.output is not None:
        try:
            args.output = output_json_file(args.output)
        except UsageError as e:
            parser.error(str(e))
        if args.output.exists():
            parser.error(f"--output {args.output} exists; results are never overwritten")


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    start = time.time()
    try:
        model = build_model(args.model, args.variant, args.size)
        h, w = model.input[:2]
        weights, qmodel = prepare(model, args.seed, calib_images=args.calib_images, percentile=args.percentile)
    except (KeyError, ValueError) as e:
        parser.error(str(e).strip("'\""))
    print(f"{model.name} {h}x{w}: weights and quantisation {time.time() - start:.1f} s")
    reports, figures = [], []
    for i in range(args.images):
        start = time.time()
        try:
            report = compare(qmodel, weights, preprocess(synthetic_image(h, w, args.seed + i), model.input[2]),
                             local=args.local, baseline=args.baseline)
        except ValueError as e:            # a layer the integer operators cannot compute (hw.operators)
            parser.error(f"cannot run {model.name}: {' '.join(str(e).split())}")
        print(f"-- image {args.seed + i}: {time.time() - start:.1f} s")
        _print(report, args.worst)
        reports.append({"image_seed": args.seed + i, **report.to_json()})
        figures.append(image_figures(report))
    summary = summarise(figures)
    if args.images > 1:
        _print_summary(summary, args.images)
    if args.output is not None:
        doc = {"model": model.name, "size": [h, w], "variant": model.variant, "seed": args.seed,
               "calib_images": args.calib_images, "percentile": args.percentile, "images": reports,
               "summary": {k: {m: finite_or_none(v) for m, v in d.items()} for k, d in summary.items()}}
        atomic_write_json(args.output, doc)
    return 0


#: Figures of ``image_figures`` of which a larger value is the worse (the others: a smaller).
LARGER_IS_WORSE = frozenset({"box_l1"})


def image_figures(report: AccuracyReport) -> dict[str, float]:
    """The figures the report of one image prints: its layers' median and least SQNR, its output
    layer's SQNR and each output agreement (a yes/no as 1 or 0)."""
    finite = [e.sqnr_db for e in report.layers if e.kind != "constant" and math.isfinite(e.sqnr_db)]
    figures = {"layer_sqnr_median_db": float(np.median(finite)), "layer_sqnr_min_db": min(finite)} if finite else {}
    figures["output_sqnr_db"] = report.layers[-1].sqnr_db
    figures.update((k, float(v)) for k, v in report.output.items())
    return figures


def summarise(figures: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Across images: each figure's median and worst value (the largest where larger is worse)."""
    out = {}
    for key in dict.fromkeys(k for f in figures for k in f):
        values = [f[key] for f in figures if key in f]
        worst = max(values) if key in LARGER_IS_WORSE else min(values)
        out[key] = {"median": float(np.median(values)), "worst": worst}
    return out


def _print_summary(summary: dict[str, dict[str, float]], images: int) -> None:
    print(f"-- over {counted(images, 'image')}: median and worst")
    for key, d in summary.items():
        digits = 2 if key.endswith("_db") else 4          # as the images' reports print them
        print(f"{key}: median {d['median']:.{digits}f}, worst {d['worst']:.{digits}f}")


def _print(report: AccuracyReport, worst: int) -> None:
    finite = [e for e in report.layers if e.kind != "constant" and math.isfinite(e.sqnr_db)]
    if finite:
        values = np.array([e.sqnr_db for e in finite])
        print(f"SQNR dB over {counted(len(finite), 'layer')}: median {np.median(values):.1f}, min {values.min():.1f}")
    for e in sorted(finite, key=lambda e: e.sqnr_db)[:worst]:
        extra = "".join(f"  {label} {v:6.2f}" for label, v in (("local", e.local_db), ("input-only", e.input_db))
                        if math.isfinite(v))
        print(f"  {e.sqnr_db:7.2f} dB  {e.kind:12s} {e.name}{extra}")
    last = report.layers[-1]
    print(f"output {last.name}: {last.sqnr_db:.2f} dB" +
          (f" (input-only {last.input_db:.2f} dB)" if math.isfinite(last.input_db) else ""))
    for k, v in report.output.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")


if __name__ == "__main__":
    run_main(main)
