"""Import an ONNX model into the IR: ``MODEL=path/to/model.onnx`` wherever ``MODEL`` works.

``load_onnx(path)`` reads the file with the ``onnx`` package and returns an :class:`Imported`:
the :class:`~mapper.ir.Model` (built, and so shape-checked, by ``Model``), its float weights in
:mod:`mapper.weights`' format (``weight [K, kh, kw, C/groups]`` for a convolution, ``[K, C]`` for
a linear, ``gamma``/``beta``, a constant's ``data``), where every graph output sits in the IR
tensors (:class:`~mapper.onnx_layout.View`), and the scales of a QDQ-quantised model.

How the graph maps to layers (``docs/onnx.md`` has the full table):

* ``Conv`` -> :class:`~mapper.ir.Conv2d` (a ``BatchNormalization`` and a ``Relu`` that only it
  reads are folded in); ``Gemm``, and ``MatMul`` by a constant -> :class:`~mapper.ir.Linear` (a
  bias ``Add`` and a ``Relu`` folded in); ``MatMul`` of two activations -> :class:`~mapper.ir.MatMul`
  when its operands are laid out as the IR's attention products read them (heads side by side
  in the channels, windows interleaved in the tokens: :mod:`mapper.ir`);
* ``Add``/``Mul`` (``Sub``/``Div`` by a constant) -> ``Add``/``Mul``, constants becoming
  :class:`~mapper.ir.Constant` layers of the smallest shape that IR broadcasting repeats to the
  ONNX values; ``Softmax``, ``LayerNormalization``, ``Relu``, ``Sigmoid``, ``Gelu`` (and its
  ``Erf`` pattern), ``Resize``, ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``,
  ``ReduceMean`` over the pixels, ``Concat`` of channels, ``Pad`` at the bottom and right;
* layout operators (``Reshape``, ``Transpose``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
  ``Slice``, ``Split``, ``Gather`` with constant indices, ``Expand``, ``Tile``, and a ``Concat`` of parts of
  one tensor) are views (:mod:`mapper.onnx_layout`) and no layer when they move no data; where
  they do move data, the IR layout layer that does the same (crop, roll, window partition and
  reverse, patch merge) is inserted, and anything else is refused;
* shape computations on constants are evaluated (``onnx.reference``).

The batch is 1; an ONNX ``[1, C, H, W]`` input is the IR's ``H x W x C`` image (``[1, N, C]``: N
tokens).  An unsupported operator or attribute, a dynamic or batched shape, or a data type
other than float32 and int8 raises :class:`OnnxImportError`: one line naming the file, the node,
its operator and what is supported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Sequence, Union

import numpy as np

from hw.cli import ascii_int, open_input

from . import onnx_layout as L
from .ir import (INPUT, LAYOUT_KINDS, PARTS, Activation, Add, ChannelShuffle, ChannelSlice, Concat, Constant, Conv2d, Crop, LayerNorm, Linear, MatMul, Model,
                 Mul, Pad, PatchMerge, DepthToSpace, PixelReshape, Pool, Resize, Roll, ShapeError, Softmax, WindowPartition,
                 WindowReverse)
from .onnx_layout import View
from .onnx_patterns import fuse_patterns

__all__ = ["OnnxImportError", "Imported", "load_onnx", "import_onnx", "qdq_qmodel", "file_weights",
           "imported_of",
           "SUPPORTED_OPS",
           "CUSTOM_DOMAIN", "PARTS_KEY"]

#: Domain of the two operators the exporter writes where standard ONNX has none (``docs/onnx.md``).
CUSTOM_DOMAIN = "com.vitaccel"
#: Model metadata key under which the exporter stores each layer's part (JSON: name -> part).
PARTS_KEY = "vitaccel.parts"
_FLOAT, _INT8, _UINT8, _FLOAT16 = 1, 3, 2, 10     # onnx.TensorProto data types
_LAYOUT_CLASSES = {"crop": Crop, "roll": Roll, "window_partition": WindowPartition,
                   "window_reverse": WindowReverse, "patch_merge": PatchMerge, "channel_slice": ChannelSlice,
                   "depth_to_space": DepthToSpace, "channel_shuffle": ChannelShuffle, "pixel_reshape": PixelReshape}


class OnnxImportError(ValueError):
    """A graph the IR cannot express; the message is one line naming the file, node and operator."""


@dataclass
class Imported:
    """An imported ONNX model (module docstring).

    Members
    -------
    model : Model
        The network, shape-checked.
    weights : dict
        Layer name -> float32 arrays (``mapper.weights`` format).
    outputs : dict
        Graph output name -> its :class:`~mapper.onnx_layout.View` over an IR tensor.
    input_name : str
        The graph input, the IR's ``"input"`` (``input_view`` says how).
    input_view : View
    class_maps : dict
        Graph outputs that are a segmentation class map (``ArgMax`` over the channels) -> the
        resize whose classes they are.
    class_map_shapes : dict
        The same graph outputs -> their ONNX shape (``[1, 1, H, W]``, or ``[1, H, W]`` without keepdims).
    act_scales : dict
        QDQ models: IR tensor name -> the scale of its ``QuantizeLinear`` (empty otherwise).
    weight_q : dict
        QDQ models: layer name -> ``(int8 weight in the layer's layout, per-output-channel scales)``.
    """

    model: Model
    weights: dict
    outputs: dict
    input_name: str
    input_view: View
    class_maps: dict = field(default_factory=dict)
    act_scales: dict = field(default_factory=dict)
    weight_q: dict = field(default_factory=dict)
    class_map_shapes: dict = field(default_factory=dict)

    @property
    def unwritten(self) -> dict:
        """Graph outputs (among ``outputs``) the accelerator does not write -> the class map it writes
        instead: the scores of a class map's resize (its buffer holds the classes, one byte a pixel)."""
        return {name: cls for name, v in self.outputs.items()
                for cls, layer in self.class_maps.items() if v.source == layer}


#: The oldest opset of the default domain imported: onnxruntime runs (guarantees) opsets from 7 on, and
#: the importer reads the older forms of operators back to it (``Upsample``, ``Clip``'s and ``Pad``'s attributes).
MIN_OPSET = 7


def opset_range() -> tuple[int, int]:
    """(oldest, newest) opset of the default ONNX domain a model may declare: the newest is the one the
    installed onnx defines, whose operator schemas the importer checks nodes against (onnxruntime,
    which has no such constant, runs the same: ``tests/test_onnx_import.py`` checks it)."""
    from onnx import defs

    return MIN_OPSET, defs.onnx_opset_version()


def model_name_for(path: Path, data: bytes) -> str:
    """``<stem>-<hash>``: two files never share output folders, even with one name."""
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem) or "model"
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}"


#: The last few imports, keyed by the file's resolved path, size and modification time and the name shown.
_IMPORTS: "OrderedDict[tuple, Imported]" = OrderedDict()
_IMPORTS_KEPT = 4


def load_onnx(path: Union[str, Path]) -> Imported:
    """Import the ONNX file at ``path`` (cached per path, size and modification time)."""
    with open_input(path, "ONNX file", OnnxImportError) as f:
        st = os.fstat(f.fileno())
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, str(path))
        if key not in _IMPORTS:
            _IMPORTS[key] = _import_file(f, key[0], str(path))
    _IMPORTS.move_to_end(key)
    while len(_IMPORTS) > _IMPORTS_KEPT:
        _IMPORTS.popitem(last=False)
    return _IMPORTS[key]


def _import_file(f: BinaryIO, resolved: str, shown: str) -> Imported:
    import onnx

    try:
        data = f.read()
        proto = onnx.load_from_string(data)
    except OSError as e:
        raise OnnxImportError(f"{shown}: cannot read the ONNX file: {e.strerror}") from None
    except Exception as e:                      # protobuf's DecodeError and friends
        raise OnnxImportError(f"{shown}: not an ONNX model ({type(e).__name__}: {e})") from None
    if not proto.HasField("graph"):             # protobuf reads an empty file as an empty model
        raise OnnxImportError(f"{shown}: not an ONNX model ({'an empty file' if not data else 'no graph in it'})")
    if _load_external_data(proto, Path(resolved).parent, shown):
        data = proto.SerializeToString()        # the name's hash covers the weights stored beside it
    return import_onnx(proto, model_name_for(Path(shown), data), where=shown)


def _load_external_data(proto, folder: Path, shown: str) -> bool:
    """Read tensors stored outside the file (ONNX external data) from ``folder``, the file's own,
    never the current one; True when there were any.  onnx's own loader opens each file with a
    blocking open (a named pipe: it waits forever), so each is opened here as every input file is
    (``open_input``), with onnx's rules for where it may be (``_open_external``)."""
    from onnx import TensorProto

    tensors = list(proto.graph.initializer) + [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    external = [t for t in tensors if t.HasField("data_location") and t.data_location == TensorProto.EXTERNAL]
    files: dict[str, BinaryIO] = {}
    try:
        for tensor in external:
            location, offset, length = _external_entry(tensor, shown)
            if location not in files:
                files[location] = _open_external(folder, location, shown)
            tensor.raw_data = _read_span(files[location], location, offset, length, f"{shown}: tensor {tensor.name!r}")
            tensor.data_location = TensorProto.DEFAULT
            del tensor.external_data[:]
    finally:
        for f in files.values():
            f.close()
    return bool(external)


def _external_entry(tensor, shown: str) -> tuple[str, int, Optional[int]]:
    """The file (``location``), ``offset`` and ``length`` (None: to the file's end) of an external
    tensor, read in the digits 0-9 (onnx's int() reads ``'٣'`` as 3); other keys are ignored, as onnx does."""
    entry = {e.key: e.value for e in tensor.external_data}
    where = f"{shown}: tensor {tensor.name!r} is stored outside the file"
    if not entry.get("location"):
        raise OnnxImportError(f"{where} but names no file (its external_data has no location)")
    numbers = []
    for key, default in (("offset", "0"), ("length", None)):
        text = entry.get(key, default)
        try:
            value = None if text is None else ascii_int(text)
        except ValueError:
            value = -1
        if value is not None and value < 0:
            raise OnnxImportError(f"{where} at {key} {text!r}; an {key} is a whole number >= 0 in the digits 0-9")
        numbers.append(value)
    return entry["location"], numbers[0], numbers[1]


def _open_external(folder: Path, location: str, shown: str) -> BinaryIO:
    """The external data file ``location`` open for reading: by onnx's rules a relative name of a
    file inside ``folder`` (the model's) and no symbolic link, so that a model cannot read any file."""
    what, rule = f"external data of {shown}", "onnx takes a file inside the model's folder, not a link"
    path = folder / location
    if "\0" in location:
        raise OnnxImportError(f"{location!r}: cannot read the {what}: not a valid file name (a NUL character)")
    outside = "an absolute path" if os.path.isabs(location) else \
        f"outside {folder}" if os.path.commonpath([os.path.realpath(path), str(folder)]) != str(folder) else None
    if outside:
        raise OnnxImportError(f"{path}: cannot read the {what}: {outside}; {rule}")
    return open_input(path, what, OnnxImportError, rule, follow_link=False)


def _read_span(f: BinaryIO, location: str, offset: int, length: Optional[int], whose: str) -> bytes:
    """``length`` bytes (None: all that are left) of ``f`` from ``offset``, when the file holds them."""
    size = os.fstat(f.fileno()).st_size
    end = size if length is None else offset + length
    if offset > size or end > size:
        raise OnnxImportError(f"{whose} needs bytes {offset} to {end} of {location}, which holds {size} bytes")
    f.seek(offset)
    try:
        data = f.read(end - offset)
    except OSError as e:
        raise OnnxImportError(f"{whose}: cannot read {location}: {e.strerror}") from None
    if len(data) != end - offset:           # the file shrank while it was read
        raise OnnxImportError(f"{whose} needs bytes {offset} to {end} of {location}, which ended at "
                              f"{offset + len(data)}")
    return data


def imported_of(model: Model) -> Optional[Imported]:
    """The import a model built from an ONNX file came from, or None for any other model.

    Raises
    ------
    OnnxImportError
        When the file no longer holds the network ``model`` was built from (its content changed).
    """
    if model.params.get("source") != "onnx":
        return None
    imported = load_onnx(model.params["onnx"])
    if imported.model.name != model.name:         # the name carries a hash of the file's content
        raise OnnxImportError(f"{model.params['onnx']}: the file changed since {model.name} was read from it")
    return imported


def file_weights(model: Model) -> Optional[dict]:
    """The float weights of a model imported from ONNX (from its file), or None for any other model:
    ``file_weights(model) or mapper.weights.init_weights(model, seed)`` gives every model's weights
    (``mapper.calibrate.prepare`` chooses so, and quantises them)."""
    imported = imported_of(model)
    return imported.weights if imported is not None else None


def qdq_qmodel(imported: Imported, calib_image: Optional[np.ndarray] = None, *, percentile: Optional[float] = None):
    """The :class:`~mapper.quantize.QModel` of a QDQ-quantised model, keeping the file's scales (of a
    float model, without QDQ pairs: ``mapper.calibrate.quantize``'s, every tensor calibrated).

    * Activations: a tensor with a ``QuantizeLinear`` scale ``s`` gets the range ``127 * s`` in
      :func:`mapper.calibrate.quantize_ranges`, so its scale is ``s`` unless the hardware's rules
      override it: scale groups (layout, resize, pooling, concatenation, ReLU share their input's
      scale; the group takes the largest; a concatenation only the host reads keeps its parts'
      scales unless the file quantises it), a softmax's output (1/128) and the input image
      (``mapper.images.INPUT_SCALE``).  Tensors without a QDQ pair are calibrated on
      ``calib_image`` (``mapper.images.calibration_image`` by default) as any float model is
      (``percentile``: :func:`mapper.calibrate.quantize`'s).
    * Weights: the file's int8 values and per-output-channel scales, unchanged; the bias is
      requantised to the accumulator's scale ``s_in * s_w`` and the output multiplier and shift
      derived from ``s_in * s_w / s_out`` (``mapper.calibrate.requant_params``).
    """
    from .calibrate import calibrate_ranges, quantize_ranges, requant_params
    from .images import calibration_image, round_half_up
    from .quantize import QLayer

    model, weights = imported.model, imported.weights
    scaled = _file_scales_back(model, {t: 127.0 * s for t, s in imported.act_scales.items() if t != INPUT})
    ranges = {}
    if any(l.name not in scaled for l in model.layers):
        image = calib_image if calib_image is not None else calibration_image(*model.input[:2], channels=model.input[2])
        ranges = calibrate_ranges(model, weights, image, percentile=percentile)
    # a concatenation the file quantises keeps the file's one scale, even where only the host reads it
    q = quantize_ranges(model, weights, {**ranges, **scaled}, shared=frozenset(scaled))
    for name, (wq, s_w) in imported.weight_q.items():
        layer, ql = model.layer(name), q.layers[name]
        acc = q.scale(layer.inputs[0]) * np.asarray(s_w, np.float64)
        bias = np.asarray(weights[name]["bias"], np.float64) if layer.bias else np.zeros(len(acc))
        mult, shift = requant_params(acc / ql.scale)
        bias_q = np.clip(round_half_up(bias / acc), -(1 << 31), (1 << 31) - 1).astype(np.int64)
        q.layers[name] = QLayer(ql.scale, np.asarray(wq, np.int8), bias_q, mult, shift)
    return q


def _plain_host_copies(model: Model, copies: set[str], shared: frozenset) -> list:
    """``model``'s layers with each part copied into a concatenation by the table of ``x ** 1``
    (``onnx_ops._requantised_copy``) a plain copy, a ``Pad`` to its own size, where only the host
    reads the concatenation (not one a QDQ file quantises, ``shared``): such a one ties no scales
    (``mapper.calibrate.host_read_concats``), so the copy keeps its source's scale, the sigmoid's
    0..1 for YOLOv5's conf, 256 cycles a copy sooner on E (its table is not used)."""
    from .calibrate import host_read_concats, readers_of

    host, readers = host_read_concats(model, shared), readers_of(model)
    plain = {n for n in copies if readers.get(n) and all(r.name in host for r in readers[n])}
    return [dataclasses.replace(Pad(l.name, l.part, l.inputs, *l.out_shape[:2]), out_shape=l.out_shape)
            if l.name in plain else l for l in model.layers]


def _file_scales_back(model: Model, scaled: dict) -> dict:
    """A file's ranges, also given to the input of a ReLU or of a layer that moves data (a crop, a
    depth to space, ...) where the input has none and nothing else reads it: such a layer keeps
    its input's scale (``mapper.calibrate.KEEPS_SCALE``) and cannot widen its range, so the range
    the file quantises after it is the one its input must saturate to (else the input's calibrated
    range, larger, wins in their scale group and nothing clips where onnxruntime does: a
    convolution the importer split into a convolution and a crop).  Not through an average, a
    resize or a concatenation, whose input may be wider than their output."""
    from .ir import LAYOUT_KINDS
    readers: dict[str, int] = {}
    for layer in model.layers:
        for src in layer.inputs:
            readers[src] = readers.get(src, 0) + 1
    scaled = dict(scaled)
    for layer in reversed(model.layers):
        if (layer.kind == "relu" or layer.kind in LAYOUT_KINDS) and layer.name in scaled:
            for src in layer.inputs:
                if src != INPUT and src not in scaled and readers[src] == 1 and src not in model.output_names:
                    scaled[src] = scaled[layer.name]
    return scaled


def import_onnx(proto, name: str, where: str = "<onnx>") -> Imported:
    """Import an ``onnx.ModelProto`` as model ``name``; ``where`` names it in messages.

    A product by a constant scalar (an attention scale) is folded into the weights of the
    linear or convolution that computes its operand (for ``(q @ k^T) * s``, the rows of ``q``)
    when nothing else reads those rows; otherwise, found at the end, the import is repeated
    with that scale as a :class:`~mapper.ir.Mul` layer.
    """
    if proto.functions:                     # model-local functions (the dynamo exporter's): their bodies
        import onnx.inliner

        proto = onnx.inliner.inline_local_functions(proto)
    refused: set = set()
    while True:
        try:
            return _Importer(proto, where, refused).run(name)
        except _Refold as e:
            refused.add(e.key)


class _Refold(Exception):
    """A folded scale whose rows another layer reads too: import again without folding it."""

    def __init__(self, key):
        self.key = key


@dataclass
class _Fold:
    """Rows ``lo:hi`` of layer ``target`` scaled (or, ``order``, reordered) for the layers in
    ``readers`` (and only them)."""

    target: str
    lo: int
    hi: int
    readers: set
    order: bool = False
    through: str = ""       # the product of activations that reads the rows for ``readers``: its output is scaled


# ---- values ---------------------------------------------------------------------------------

@dataclass
class _Source:
    """An IR tensor (``kind`` ``input`` or ``layer``) or a float constant not yet a layer (``const``)."""

    name: str
    shape: L.Shape3
    kind: str
    data: Optional[np.ndarray] = None      # const: the values, HWC
    after: Optional[str] = None            # const from a Constant node: the layer it follows
    seq: int = 0


def _default_layout(shape: tuple[int, ...]) -> tuple[L.Shape3, tuple[int, ...]]:
    """IR shape and strides of a float constant with ONNX ``shape``: ``[1, C, H, W]`` is an image,
    anything else ``N x 1 x C`` (``C`` the last axis)."""
    if len(shape) == 4 and shape[0] == 1:
        _, c, h, w = shape
        return (h, w, c), (h * w * c, 1, w * c, c)
    c = shape[-1] if shape else 1
    n = math.prod(shape[:-1]) if shape else 1
    return (n, 1, c), L._contiguous(shape)


def _sanitise(name: str) -> str:
    text = re.sub(r"_output_0$", "", name)
    text = re.sub(r"[/:\\]+", ".", text).strip(".")
    return re.sub(r"[^A-Za-z0-9_.+=,\-]", "_", text) or "t"


# ---- the importer ------------------------------------------------------------------------------

class _Importer:
    """One import: walks the nodes in order, keeping a view or a constant for every ONNX value."""

    def __init__(self, proto, where: str, refused: frozenset = frozenset()):
        self.proto, self.where = proto, where
        self.refused = refused
        self.folds: dict[tuple, _Fold] = {}
        self.fold_of: dict[str, tuple] = {}        # ONNX tensor -> the fold whose scale it carries
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.consts: dict[str, np.ndarray] = {}
        self.views: dict[str, View] = {}
        self.sources: dict[str, _Source] = {}
        self.layers: list = []
        self.weights: dict = {}
        self.names: set[str] = {INPUT}
        self.done: set[int] = set()
        self.node = None
        self.quantised: dict[str, float] = {}      # ONNX tensor -> scale of the QuantizeLinear that made it
        self.act_scales: dict[str, float] = {}
        self.qconst: dict[str, tuple] = {}
        self.weight_q: dict = {}
        self._seq = 0
        self.by_name: dict = {}
        self.class_maps: dict[str, str] = {}
        self.class_map_shapes: dict[str, tuple] = {}
        self.shared_products: set[str] = set()     # concatenations of shared-head products (onnx_ops)
        self.requantised_copies: set[str] = set()  # parts copied into a concatenation by x ** 1 (onnx_ops)

    # -- errors and names
    def fail(self, message: str) -> OnnxImportError:
        n = self.node
        where = f"node {n.name or n.output[0]!r} ({n.op_type})" if n is not None else "graph"
        return OnnxImportError(f"{self.where}: {where}: {' '.join(message.split())}")

    def layer_name(self, tensor: str) -> str:
        base = _sanitise(tensor)
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    # -- the walk
    def run(self, name: str) -> Imported:
        self._check_opset()
        if not self.graph.output:       # else every node is dead and "it computes nothing" would blame the nodes
            raise self.fail("it declares no graph outputs; supported: a graph with at least one output computed "
                            "from its input")
        self.nodes = list(self.graph.node)
        self._check_single_definitions()
        self.consumers = _consumers(self.graph)
        self.done.update(_dead_nodes(self.graph))
        self._initializers()
        input_name, input_view = self._graph_input()
        self._check_operators()
        fuse_patterns(self)
        for i, node in enumerate(self.nodes):
            if i in self.done:
                continue
            self.node, self.index = node, i
            self._dispatch(node)
        self.node = None
        outputs = self._graph_outputs()
        layers = _live_layers(self.layers, {v.source for v in outputs.values()} | set(self.class_maps.values()))
        _check_folds(self.folds, layers, outputs)
        if not layers:
            raise self.fail("it computes nothing the accelerator runs (its outputs are its input or "
                            "constants); a model needs at least one layer")
        returned = {v.source for v in outputs.values()}
        model = self._model(name, layers, returned)
        if self.requantised_copies:
            model = self._model(name, _plain_host_copies(model, self.requantised_copies, frozenset(self.act_scales)),
                                returned)
        weights = {k: v for k, v in self.weights.items() if k in {l.name for l in layers}}
        return Imported(model, weights, outputs, input_name, input_view, self.class_maps, self.act_scales,
                        {k: v for k, v in self.weight_q.items() if k in weights}, self.class_map_shapes)

    def _check_opset(self) -> None:
        """Refuse a file of an IR version newer than the installed onnx's, or that declares no opset of
        the default domain, or one outside ``opset_range()``:
        the operators' meaning (a Softmax's axis, a ReduceSum's axes, a Pad's value) depends on it, and
        guessing one could import a network other than the file's (onnxruntime takes its latest)."""
        import onnx

        if self.proto.ir_version > onnx.IR_VERSION:     # what onnxruntime refuses too (its newest is onnx's)
            raise self.fail(f"IR version {self.proto.ir_version}; supported: IR versions up to {onnx.IR_VERSION} "
                            f"(the newest the installed onnx defines)")
        low, high = opset_range()
        if self.opset is None:
            declared = ", ".join(f"{o.domain!r} {o.version}" for o in self.proto.opset_import) or "none"
            raise self.fail(f"the model declares no opset of the default ONNX domain '' (opset_import: {declared}); "
                            f"supported: a model whose opset_import gives the default domain's version, as "
                            f"exporters write it")
        if not low <= self.opset <= high:
            raise self.fail(f"opset {self.opset} of the default ONNX domain ''; supported: opsets {low} (the oldest "
                            f"onnxruntime runs) to {high} (the newest the installed onnx defines)")

    def _check_single_definitions(self) -> None:
        """Every value defined once (ONNX's rule, which onnxruntime enforces): a node's output that an
        earlier node, an initializer or a graph input already defines is refused."""
        defined = {t.name for t in self.graph.initializer} | {i.name for i in self.graph.input}
        for node in self.nodes:
            for o in (o for o in node.output if o):
                if o in defined:
                    self.node = node
                    raise self.fail(f"it defines {o!r}, which is already defined; supported: every value "
                                    f"defined once")
                defined.add(o)
        self.node = None

    def _check_operators(self) -> None:
        """Every live node's domain and, in the exporter's domain, its operator, before the patterns are
        matched: they match operator names, and took ``com.example``'s ``Erf`` for ONNX's in a GELU;
        then its schema (``_check_schema``)."""
        self.stated_types = _stated_types(self.graph)
        declared = (*self.graph.output, *self.graph.value_info)
        self.declared_types = {v.name: v.type.tensor_type.elem_type for v in declared
                               if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
        for i, node in enumerate(self.nodes):
            if i in self.done:
                continue
            self.node = node
            if node.op_type in _INSTEAD:                # of any domain, before its inputs are checked
                raise self.fail(f"unsupported operator{_INSTEAD[node.op_type]}")
            if node.domain not in ("", "ai.onnx", CUSTOM_DOMAIN):
                raise self.fail(f"operator domain {node.domain!r} is not supported; supported: {SUPPORTED_TEXT}")
            if node.domain == CUSTOM_DOMAIN and (CUSTOM_DOMAIN, node.op_type) not in _HANDLERS:
                raise self.fail(f"unsupported operator; supported: {SUPPORTED_TEXT}")
            self._check_schema(node)
        self.node = None

    def _dispatch(self, node) -> None:
        handler = _HANDLERS.get((CUSTOM_DOMAIN if node.domain == CUSTOM_DOMAIN else "", node.op_type))
        if self._foldable(node):
            return self._fold(node)
        if handler is None:
            raise self.fail(f"unsupported operator{_HINT.get(node.op_type, '')}; supported: {SUPPORTED_TEXT}")
        handler(self, node)

    def _check_schema(self, node) -> None:
        """The operator, inputs, outputs and attributes as ONNX's schema of the file's opset defines
        them (a file written by hand may not), checked on the file's nodes before any is imported
        (the patterns' nodes, a GELU or a LayerNorm, may be newer than the file's opset): one line
        naming what is wrong, as onnxruntime refuses such a node."""
        schema = self._schema(node)
        if schema is None:
            return
        missing = [i for i in range(schema.min_input) if i >= len(node.input) or not node.input[i]]
        if missing:
            raise self.fail(f"{len([n for n in node.input if n])} inputs; the operator needs at least "
                            f"{schema.min_input}")
        given = max((k + 1 for k, n in enumerate(node.input) if n), default=0)
        if given > schema.max_input:        # opset 10's Resize given opset 11's roi: its scales taken for roi
            raise self.fail(f"{given} inputs; the operator takes at most {schema.max_input} in opset {self.opset} "
                            f"(the file's){_as_attributes(node, schema, given)}; supported: the operator as its "
                            f"opset defines it")
        given = {a.name for a in node.attribute}
        required = sorted(a.name for a in schema.attributes.values() if a.required and a.name not in given)
        if required:
            raise self.fail(f"no attribute {', '.join(map(repr, required))}, which the operator requires")
        outputs = max((k + 1 for k, n in enumerate(node.output) if n), default=0)
        if outputs > schema.max_output:
            raise self.fail(f"{outputs} outputs; the operator has at most {schema.max_output} in opset {self.opset} "
                            f"(the file's)")
        names = [a.name for a in node.attribute]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise self.fail(f"attribute {twice!r} given {names.count(twice)} times; supported: each attribute once")
        for a in node.attribute:
            _check_attribute(a, schema, self.fail, node)
        self._check_input_types(node, schema)

    def _check_input_types(self, node, schema) -> None:
        """Inputs that the schema gives one type (Conv's ``X`` and ``W``, ``T``) of one data type where
        the file states both (a graph input, an initializer, a ``Constant``, a node's output whose type
        these tell, ``_carry_types``), each a type the schema allows: int32 weights of a float convolution, float indices of a
        Gather are refused, as onnxruntime refuses them."""
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        bound: dict[str, tuple[str, int]] = {}
        for name, formal in _formals(node.input, schema.inputs):
            kind = self.stated_types.get(name)
            if kind is None:
                continue
            if f"tensor({_type_name(kind)})" not in allowed.get(formal.type_str, {formal.type_str}):
                raise self.fail(f"input {name!r} of type {_type_name(kind)}; the operator's {formal.name!r} takes "
                                f"{_type_names(allowed.get(formal.type_str, {formal.type_str}))}")
            first = bound.setdefault(formal.type_str, (name, kind))
            if first[1] != kind:
                raise self.fail(f"input {name!r} of type {_type_name(kind)} and input {first[0]!r} of type "
                                f"{_type_name(first[1])}; the operator takes one type for both ({formal.type_str})")
        self._carry_types(node, schema, {k: v[1] for k, v in bound.items()})

    def _carry_types(self, node, schema, bound: dict[str, int]) -> None:
        """The data types of ``node``'s outputs, as far as its inputs' tell them (``bound``: type
        parameter -> data type), for the nodes that read them; an output the file declares (a graph
        output, a ``value_info``) of another type is refused, as onnxruntime refuses it."""
        types = {name: bound[formal.type_str] for name, formal in _formals(node.output, schema.outputs)
                 if formal.type_str in bound}
        known = {n: self.stated_types.get(n) for n in node.input if n}
        if all(known.values()):     # a Cast's output is of its ``to``, a Shape's int64: no input binds them
            types.update(_inferred_types(schema, node, known))
        for name, kind in types.items():
            declared = self.declared_types.get(name, kind)
            if declared != kind:
                raise self.fail(f"output {name!r} is of type {_type_name(kind)} but the file declares it "
                                f"{_type_name(declared)}; supported: the type the operator computes")
            self.stated_types.setdefault(name, kind)

    def _schema(self, node):
        """ONNX's schema of ``node``'s operator in the file's opset (None for an operator ONNX does not
        define, refused later as unsupported); an operator only a newer opset defines (``Gelu`` at
        opset 13: onnxruntime refuses it, unless ``_BEFORE_ITS_OPSET``, checked by its first schema)
        or one the file's opset removed (``Upsample`` from opset 10) is refused."""
        from onnx import defs

        domain, newest = "" if node.domain == "ai.onnx" else node.domain, opset_range()[1]
        try:
            schema = defs.get_schema(node.op_type, self.opset, domain)
        except defs.SchemaError:
            since = next((v for v in range(self.opset + 1, newest + 1) if defs.has(node.op_type, v, domain)), None)
            if since is None:
                return None
            if (domain, node.op_type) in _BEFORE_ITS_OPSET:
                return defs.get_schema(node.op_type, since, domain)
            raise self.fail(f"the operator is defined from opset {since}, not in opset {self.opset} (the file's); "
                            f"supported: the operators of the file's opset (export it at opset {since} or later, or "
                            f"the operator's older form)") from None
        if schema.deprecated and defs.get_schema(node.op_type, newest, domain).deprecated:     # removed, not replaced
            raise self.fail(f"the operator is removed from opset {schema.since_version} on, so not in opset "
                            f"{self.opset} (the file's); supported: the operators of the file's opset")
        return schema

    # -- graph inputs, initializers, outputs
    def _initializers(self) -> None:
        for t in self.graph.initializer:
            self._set_const(t.name, self.tensor_array(t, "initializer"))

    def tensor_array(self, t, what: str) -> np.ndarray:
        """The values of TensorProto ``t`` (``what``: how messages call it); a tensor whose data does not
        hold its dims (a truncated or hand-edited file) is refused in one line naming it."""
        from onnx import numpy_helper

        try:
            return numpy_helper.to_array(t)
        except Exception as e:                  # numpy's reshape ValueError, onnx's TypeError of a bad type
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            hint = "; its data must hold one value per element of its dims" if isinstance(e, ValueError) else ""
            raise self.fail(f"{what} {t.name!r} ({_type_name(t.data_type)}, dims {list(t.dims)}) cannot be read: "
                            f"{detail}{hint}") from None

    def _set_const(self, name: str, arr: np.ndarray, after: Optional[str] = None) -> None:
        if arr.dtype == np.float16:             # a half-precision export's: widened exactly
            arr = arr.astype(np.float32)
        if arr.dtype.kind == "f":
            if arr.dtype != np.float32:
                raise self.fail(f"tensor {name!r} has data type {arr.dtype}; supported: float32, float16 and int8")
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if bad:
                readers = [n.name or n.output[0] for n in self.graph.node if name in n.input]
                raise self.fail(f"tensor {name!r}{f' (read by node {readers[0]!r})' if readers else ''} holds {bad} "
                                f"value(s) that are not finite (NaN or infinity); weights and constants must be "
                                f"finite")
            shape3, strides = _default_layout(arr.shape)
            data = arr[0].transpose(1, 2, 0) if len(arr.shape) == 4 and arr.shape[0] == 1 else arr
            self._seq += 1
            self.sources[name] = _Source(name, shape3, "const", np.ascontiguousarray(data).reshape(shape3), after,
                                         self._seq)
            self.views[name] = View(name, shape3, tuple(arr.shape), strides)
        else:
            self.consts[name] = arr

    def _graph_input(self) -> tuple[str, View]:
        inits = {t.name for t in self.graph.initializer}
        inputs = [i for i in self.graph.input if i.name not in inits]
        overridden = [i.name for i in self.graph.input if i.name in inits]
        if not inputs and overridden:
            raise self.fail(f"graph input {overridden[0]!r} has an initializer of the same name, which overrides it "
                            f"(a constant, not an input), so the graph has no input; supported: one input without "
                            f"an initializer (an image or tokens)")
        if not inputs:
            raise self.fail("the graph has no input; supported: one image or token input")
        if len(inputs) != 1:
            raise self.fail(f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                            f"supported: one image or token input")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type not in (_FLOAT, _FLOAT16, _INT8):
            raise self.fail(f"input {inp.name!r} has data type {_type_name(tt.elem_type)}; supported: float32, "
                            f"float16 and int8")
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        empty = [(k, d) for k, d in enumerate(dims) if isinstance(d, int) and d <= 0]
        if empty:
            raise self.fail(f"input {inp.name!r} has dimension {empty[0][1]} on axis {empty[0][0]}; "
                            f"every dimension must be at least 1")
        bad = [(k, d) for k, d in enumerate(dims) if not isinstance(d, int)]
        if bad:
            raise self.fail(f"input {inp.name!r} has a dynamic dimension {bad[0][1]!r} (axis {bad[0][0]}); "
                            f"export with fixed shapes (batch 1, fixed height and width)")
        if len(dims) not in (2, 3, 4) or dims[0] != 1:
            raise self.fail(f"input {inp.name!r} has shape {dims}; supported: [1, C, H, W] images and "
                            f"[1, N, C] tokens (batch 1)")
        shape3, strides = _default_layout(tuple(dims))
        view = View(INPUT, shape3, tuple(dims), strides)
        if len(dims) == 4 and self._read_as_nhwc(inp.name):   # tf2onnx's Keras input: [1, H, W, C]
            shape3 = tuple(dims[1:])
            view = L.nhwc(INPUT, shape3)
        if len(dims) == 3 and self._read_by_1d_convolutions(inp.name):    # [1, C, L]: a row of L pixels
            shape3 = (1, dims[2], dims[1])
            view = L.reshape(L.nchw(INPUT, shape3), dims)
        self.sources[INPUT] = _Source(INPUT, shape3, "input")
        self.views[inp.name] = view
        if tt.elem_type == _INT8:
            self.quantised[inp.name] = 0.0
        return inp.name, view

    def _read_by_1d_convolutions(self, name: str) -> bool:
        """Whether only 1-D convolutions (of constant 3-D weights) read graph input ``name``, as their input."""
        dims = {t.name: len(t.dims) for t in self.graph.initializer}
        readers = [n for n in self.graph.node if name in n.input]
        return bool(readers) and all(n.op_type == "Conv" and n.input[0] == name and dims.get(n.input[1]) == 3
                                     for n in readers)

    def _read_as_nhwc(self, name: str) -> bool:
        """Whether every node reading graph input ``name`` first transposes it from NHWC to NCHW."""
        readers = [n for n in self.graph.node if name in n.input]
        def perm(node) -> list:
            return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
        return bool(readers) and all(n.op_type == "Transpose" and perm(n) == [0, 3, 1, 2] for n in readers)

    def _graph_outputs(self) -> dict:
        out = {}
        for o in self.graph.output:
            if o.name in self.class_maps:
                continue
            if self._constant(o.name):
                raise self.fail(f"graph output {o.name!r} is a constant; supported: outputs computed from the input")
            if o.name not in self.views:
                raise self.fail(f"graph output {o.name!r} is not computed by any node")
            if self.sources[self.views[o.name].source].kind == "input":      # nothing the accelerator writes
                raise self.fail(f"graph output {o.name!r} is the graph input (or a view of it); supported: "
                                f"outputs computed from the input")
            self._check_declared_shape(o, self.views[o.name].shape)
            out[o.name] = self.views[o.name]
        return out

    def _check_declared_shape(self, output, shape) -> None:
        """Refuse a graph output whose declared dimensions (those given as numbers) are not the
        ones its nodes compute."""
        t = output.type.tensor_type
        if not t.HasField("shape"):
            return
        declared = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(declared) != len(shape) or any(d is not None and d != n for d, n in zip(declared, shape)):
            shown = [d if d is not None else "?" for d in declared]
            raise self.fail(f"graph output {output.name!r} is declared {shown} but its nodes compute {list(shape)}")

    def _model(self, name: str, layers: list, outputs: set) -> Model:
        parts = _parts_metadata(self.proto)
        layers = [dataclasses.replace(l, part=parts.get(l.name) or _guess_part(l.name)) for l in layers]
        params = {"source": "onnx", "onnx": self.where}
        if self.class_maps:
            params["classes"] = self.sources[next(iter(self.class_maps.values()))].shape[2]
        try:
            return Model(name=name, variant="full", input=self.sources[INPUT].shape, layers=tuple(layers),
                         params=params, outputs=tuple(l.name for l in layers if l.name in outputs))
        except (ShapeError, ValueError) as e:
            raise OnnxImportError(f"{self.where}: {e}") from None

    # -- values
    def value(self, name: str):
        if name in self.views:
            return self.views[name]
        if name in self.consts:
            return self.consts[name]
        raise self.fail(f"input {name!r} is not produced by any earlier node")

    def array(self, name: str) -> np.ndarray:
        """A constant input as an array (float constants from their view)."""
        v = self.value(name)
        if isinstance(v, np.ndarray):
            return v
        src = self.sources[v.source]
        if src.kind != "const":
            raise self.fail(f"input {name!r} must be a constant (weights), but it is computed from the input")
        return L.gather(v, src.data.ravel())

    def optional_array(self, node, k: int) -> Optional[np.ndarray]:
        return self.array(node.input[k]) if len(node.input) > k and node.input[k] else None

    def known(self, name: str) -> bool:
        """Whether ``name`` is defined yet (a node that looks ahead at a later node's inputs, to fold
        it, may find a Constant that a node between them defines)."""
        return name in self.views or name in self.consts

    def is_const(self, name: str) -> bool:
        v = self.value(name)
        return isinstance(v, np.ndarray) or self.sources[v.source].kind == "const"

    def act(self, name: str) -> View:
        """A float input as a view of an IR tensor (a constant becomes a Constant layer)."""
        v = self.value(name)
        if isinstance(v, np.ndarray):
            raise self.fail(f"input {name!r} is a {v.dtype} constant where a float tensor is needed")
        if self.sources[v.source].kind == "const":
            self.materialise_const(v.source)
            return self.views[name]             # on the Constant layer, which may have another name
        return v

    def producer(self, tensor: str) -> Optional[int]:
        """The index of the node that writes ONNX value ``tensor`` (None for an input or initializer)."""
        return next((j for j, n in enumerate(self.nodes) if tensor in n.output), None)

    def last_value_of(self, layer: str) -> str:
        """The ONNX value recorded last whose view reads layer ``layer`` (after a fold, the folded
        node's output)."""
        return next(k for k in reversed(self.views) if self.views[k].source == layer)

    def only_consumer(self, tensor: str, op: str):
        """The node (and its index) that alone reads ``tensor``, if its operator is ``op``."""
        readers = self.consumers.get(tensor, [])
        if len(readers) == 1 and readers[0] >= 0 and self.nodes[readers[0]].op_type == op:
            return readers[0], self.nodes[readers[0]]
        return None, None

    # -- layers
    def emit(self, cls, name: str, *, after: Optional[str] = None, seq: int = 0, **kw) -> L.Shape3:
        """Build IR layer ``cls(name, "backbone", **kw)``, infer its shape and append it."""
        try:
            layer = cls(name, "backbone", **kw)
            out = tuple(layer.infer([self.sources[n].shape for n in layer.inputs]))
        except (ShapeError, ValueError) as e:
            raise self.fail(str(e)) from None
        layer = dataclasses.replace(layer, out_shape=out)
        if name in self.sources:        # an initializer's name: its other readers still read the constant
            self._rename_source(name, f"{name}#const")
        if after is None:
            self.layers.append(layer)
        else:
            self.layers.insert(_position_after(self.layers, after, self.sources, seq), layer)
        self.sources[name] = _Source(name, out, "layer", seq=seq)
        self.by_name[name] = layer
        ins = [n for n in (self.node.input if self.node is not None else ()) if n]
        for n in ins:
            if n in self.fold_of and not self._reads_unscaled(ins, self.folds[self.fold_of[n]]):
                self.folds[self.fold_of[n]].readers.add(name)
        return out

    def _rename_source(self, old: str, new: str) -> None:
        src = self.sources.pop(old)
        self.sources[new] = dataclasses.replace(src, name=new)
        for k, v in list(self.views.items()):
            if v.source == old:
                self.views[k] = v.on(new, src.shape)

    def _reads_unscaled(self, ins: list[str], fold: "_Fold") -> bool:
        """Whether one of the ONNX values ``ins`` reads ``fold``'s rows as they were before the
        scale, or the product the scale was folded through (then its layer is no reader the fold may
        serve: ``_check_folds`` refolds)."""
        for n in ins:
            v = self.views.get(n)
            if n in self.fold_of or v is None:
                continue
            if fold.through and v.source == fold.through:
                return True
            if v.source == fold.target:
                lo, hi = L.channels_read(v)
                if lo < fold.hi and fold.lo < hi:
                    return True
        return False

    def _folded(self, target: str, lo: int, hi: int) -> bool:
        """Whether a fold scales or reorders rows ``lo:hi`` of layer ``target`` already."""
        return any(f.target == target and f.lo < hi and lo < f.hi for f in self.folds.values())

    def fold_rows(self, target: str, lo: int, hi: int, s: float, readers: set, tensor: str, through: str = "") -> bool:
        """Scale rows ``lo:hi`` of layer ``target``'s weights and bias by ``s`` for ONNX value ``tensor``
        (read by ``readers`` so far, and computed by layer ``through`` from them, a product of
        activations, if any; a QDQ weight's scales, ``weight_q``); False when an earlier attempt
        found other readers of them, when another fold holds some of the rows (two products of one
        tensor by constants were both folded in, their readers merged), or for a QDQ weight and a
        factor not above 0."""
        key = (target, lo, hi)
        if key in self.refused or self._folded(target, lo, hi) or (target in self.weight_q and not s > 0):
            return False                    # (a QDQ weight's int8 values keep their sign: a Mul layer)
        if target in self.weight_q:         # the file's int8 values stay; their scales take the factor
            wq, s_w = self.weight_q[target]
            s_w = np.array(s_w, np.float64)
            s_w[lo:hi] *= s
            self.weight_q[target] = (wq, s_w)
        w = self.weights[target]
        w["weight"][lo:hi] *= np.float32(s)
        w["bias"][lo:hi] *= np.float32(s)
        self.folds[key] = _Fold(target, lo, hi, set(readers), through=through)
        self.fold_of[tensor] = key
        return True

    def reorder_rows(self, target: str, old_of: np.ndarray, tensor: str) -> bool:
        """Reorder the output channels of layer ``target`` for ONNX value ``tensor``, which reads them
        in the new order (channel ``q`` computes what channel ``old_of[q]`` did): its weights, bias
        and a QDQ weight's scales.  Held like a fold: when a layer other than those reading
        ``tensor`` reads them, the import starts again without it (``_check_folds``); False then."""
        key = (target, "order")
        if key in self.refused or self._folded(target, 0, len(old_of)):
            return False
        self._permute_rows(target, old_of)
        self.folds[key] = _Fold(target, 0, len(old_of), set(), order=True)
        self.fold_of[tensor] = key
        return True

    def permute_channels(self, target: str, old_of: np.ndarray, also: Sequence[str] = ()) -> None:
        """Reorder the output channels of layer ``target``, which no layer reads yet (or only the
        activations ``also``, each computing every channel alike), and every view of them alike
        (channel ``q`` computes what channel ``old_of[q]`` did): each ONNX value holds the same
        numbers, in buffer places that suit its readers better."""
        self._permute_rows(target, old_of)
        c, new_of = len(old_of), np.argsort(old_of)
        for k, v in list(self.views.items()):
            if v.source == target or v.source in also:
                idx = L.indices(v)
                moved = L.from_indices(v.source, v.src_shape, idx - idx % c + new_of[idx % c])
                self.views[k] = dataclasses.replace(moved, origin=v.origin)

    def _permute_rows(self, target: str, old_of: np.ndarray) -> None:
        """Layer ``target``'s weights, bias and a QDQ weight's int8 values and scales in the row
        order ``old_of``."""
        w = self.weights[target]
        w["weight"], w["bias"] = w["weight"][old_of], w["bias"][old_of]
        if target in self.weight_q:
            wq, s_w = self.weight_q[target]
            s_w = np.asarray(s_w)
            self.weight_q[target] = (wq[old_of], s_w[old_of] if s_w.size > 1 else s_w)

    def materialise_const(self, source: str) -> str:
        """The Constant layer of a constant not yet a layer (views of it read the layer); its name."""
        src = self.sources[source]
        if src.kind != "const":
            return source
        name = self.layer_name(source)
        self.sources.pop(source)
        self.emit(Constant, name, shape=tuple(src.shape), init="onnx", after=src.after, seq=src.seq)
        data = src.data
        self.weights[name] = {"data": data.astype(np.float32)}
        for k, v in list(self.views.items()):
            if v.source == source:
                self.views[k] = v.on(name, src.shape)
        return name

    def constant_layer(self, base: str, data: np.ndarray, after: Optional[str], seq: int = 0) -> str:
        """A Constant layer holding ``data`` (HWC), named after ``base``; reused when equal."""
        src = self.sources.get(base)
        if src is not None and src.kind == "const" and src.data.shape == data.shape and np.array_equal(src.data, data):
            return self.materialise_const(base)    # the initializer as it is: one layer for all its readers
        key = (base, data.shape, hashlib.sha256(data.tobytes()).hexdigest())
        cache = self.__dict__.setdefault("_const_cache", {})
        if key not in cache:
            name = self.layer_name(base)
            self.emit(Constant, name, shape=tuple(data.shape), init="onnx", after=after, seq=seq)
            self.weights[name] = {"data": data.astype(np.float32)}
            cache[key] = name
        return cache[key]

    def need(self, v: View, ok: Callable[[View], bool], what: str) -> View:
        """``v`` if ``ok(v)``; else the view of an IR layout layer's output that holds the same values
        and is ``ok``; else an error saying the input is not laid out as ``what``."""
        if ok(v):
            return v
        found = self.materialise(v, ok)
        if found is None:
            moved = f" (arranged by the node writing {v.origin!r} and the layout operators after it)" if v.origin else ""
            raise self.fail(f"its input{moved} is not laid out as {what} and no IR layout layer (channel slice, pixel "
                            f"reshape, crop, roll, window partition or reverse, patch merge, depth to space, channel "
                            f"shuffle, or one of them and a channel slice) arranges it so; supported: layout "
                            f"operators that move no data or do what those layers do")
        return found

    def materialise(self, v: View, ok: Callable[[View], bool] = L.covers, base: Optional[str] = None) -> Optional[View]:
        """The view of a new layout layer's output (or of a channel slice of it) that holds what ``v``
        holds, if one exists and is ``ok``; named after ``base`` if given, else where ``v`` stopped
        being its whole tensor, else the node being imported."""
        base = base or v.origin or (self.node.output[0] if self.node is not None else v.source)
        cache = self.__dict__.setdefault("_layout_cache", {})
        for chain, found in self._ways(v, ok):
            source = chain[0].source
            for cand in chain:
                key = (cand.kind, source, tuple(sorted(cand.params.items())))
                if key not in cache:
                    name = self.layer_name(base)
                    read = self._patch_merge_source(cand) if cand.kind == "patch_merge" else source
                    self.emit(_LAYOUT_CLASSES[cand.kind], name, inputs=(read,), **cand.params)
                    cache[key] = name
                source = cache[key]
            return found.on(source, self.sources[source].shape)
        return None

    def layout_match(self, v: View, ok: Callable[[View], bool] = L.covers) -> Optional[View]:
        """What ``materialise`` would give, over a placeholder tensor ``?``: it makes no layer."""
        return next((found for _, found in self._ways(v, ok)), None)

    def _ways(self, v: View, ok: Callable[[View], bool]):
        """``_layouts`` of ``v``, first one roll of the input of the ``Roll`` layer ``v`` reads, if one
        holds ``v``: PyTorch's roll of both axes is one axis after the other, and the first alone is a
        roll of its own (timm's Swin shifts only the rows of a map one window wide), which the second
        replaces (it then has no reader)."""
        roll = self.by_name.get(v.source)
        if isinstance(roll, Roll):
            (h, w, c), (sy, sx) = v.src_shape, roll.shifts
            idx = L.indices(v)
            y, x = (idx // (w * c) + sy) % h, (idx // c % w + sx) % w
            unrolled = L.from_indices(roll.inputs[0], v.src_shape, ((y * w + x) * c + idx % c).reshape(v.shape))
            yield from ((chain, found) for chain, found in self._layouts(unrolled, ok) if chain[0].kind == "roll")
        yield from self._layouts(v, ok, self._crop_first(v))

    def _crop_first(self, v: View) -> bool:
        """Whether consecutive pixels of ``v``'s tensor are better a crop than a pixel reshape: of a
        layout layer's output (Swin's unshifted window attention, cropped to a row or to whole rows),
        the crop joins the vector pass that writes that layer, which a pixel reshape would end."""
        producer = self.by_name.get(v.source)
        return producer is not None and producer.kind in LAYOUT_KINDS

    @staticmethod
    def _layouts(v: View, ok: Callable[[View], bool], crop_first: bool = False):
        """(the layout layers to make, in order; the view of the last one's output) for each way to
        hold ``v`` that is ``ok``: one layer, or one then a channel slice of its output (no copy:
        SKNet's attention, shuffled for the softmax, read branch by branch)."""
        for cand in L.layout_candidates(v, crop_first):
            found = L.match_layout(v, cand, "?")
            if found is None:
                continue
            if ok(found):
                yield (cand,), found
                continue
            lo, hi = L.channels_read(found)
            if cand.kind != "channel_slice" and (lo, hi) != (0, found.src_shape[2]):
                part = L.Candidate("channel_slice", "?", found.src_shape, {"start": lo, "channels": hi - lo})
                sliced = L.match_layout(found, part, "?")
                if sliced is not None and ok(sliced):
                    yield (cand, part), sliced

    def _patch_merge_source(self, cand: L.Candidate) -> str:
        """Patch merging pads odd sides itself: of a zero padding to even sides, read its input."""
        prod = next((l for l in self.layers if l.name == cand.source), None)
        if isinstance(prod, Pad):
            h, w, _ = self.sources[prod.inputs[0]].shape
            if (prod.out_h, prod.out_w) == (h + h % 2, w + w % 2):
                return prod.inputs[0]
        return cand.source

    # -- constant folding
    def _foldable(self, node) -> bool:
        if node.op_type in _NEVER_FOLD or not node.input:
            return False
        ins = [n for n in node.input if n]
        # a branch or loop body reads values around it too (ONNX's outer scope), which the evaluator
        # must be given: a control-flow node on the network's tensors is refused as unsupported
        if not all(self._constant(n) for n in (*ins, *_outer_reads(node))):
            return False
        if all(n in self.consts for n in ins) or node.op_type == "Concat":   # BEiT's cat(q_bias, 0, v_bias)
            return True
        # a function of one constant tensor, its other inputs scalars (SwinV2's exp(clip(logit_scale))):
        # evaluated; products and sums of constant tensors are the network's layers (DETR's queries).  A
        # resize's or pad's other inputs are its parameters, not tensors (a position table resized
        # bicubically to the image's grid, as timm's dynamic_img_size exports ViT: evaluated)
        data = ins[:1] if node.op_type in _PARAMETRISED else ins
        tensors = [n for n in data if n in self.views and self.array(n).size > 1]
        if len(tensors) > 1 and node.op_type in _ELEMENTWISE and self._broadcast(tensors):
            return True
        return node.op_type not in _VIEW_OPS and node.op_type not in _PRODUCTS and len(tensors) <= 1

    def _constant(self, name: str) -> bool:
        """Whether ``name`` is a constant: a folded array, or a view of a constant source (False for
        a value not defined yet, unlike ``is_const``)."""
        return name in self.consts or (name in self.views and self.sources[self.views[name].source].kind == "const")

    def _broadcast(self, tensors: list[str]) -> bool:
        """Whether constant operands broadcast (float relative coordinates ``c[:, :, None] - c[:, None, :]``
        and their offsets and strides, before a cast to the indices of a position table): evaluated,
        where a sum of constants of one shape stays a layer (DETR's queries)."""
        shapes = [self.array(n).shape for n in tensors]
        try:
            full = np.broadcast_shapes(*shapes)
        except ValueError:
            return False
        return any(s != full for s in shapes)

    def _fold(self, node) -> None:
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        feeds = {n: self.array(n) for n in (*node.input, *sorted(_outer_reads(node))) if n}
        outs = [n for n in node.output if n]
        # a graph of the node, not the node: the evaluator runs a lone node at the newest opset, not
        # the file's (opset 11's Unsqueeze with its axes attribute failed as opset 13's)
        graph = helper.make_graph([node], "fold", [helper.make_empty_tensor_value_info(n) for n in feeds],
                                  [helper.make_empty_tensor_value_info(n) for n in outs])
        try:
            results = ReferenceEvaluator(graph, opsets={"": self.opset}).run(None, feeds)
        except Exception as e:
            raise self.fail(f"cannot evaluate it on its constant inputs: {type(e).__name__}: {e}") from None
        for name, arr in zip(outs, results):
            arr = np.asarray(arr)
            self._set_const(name, arr.astype(np.float32) if arr.dtype.kind == "f" else arr)


# ---- graph-level helpers ---------------------------------------------------------------------------

def _outer_reads(node) -> set[str]:
    """The values that the graphs in ``node``'s attributes (``If``'s branches, ``Loop``'s and ``Scan``'s
    bodies) read from the graph around them rather than define."""
    from onnx import AttributeProto
    outer = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) if a.type == AttributeProto.GRAPHS else []
        for g in graphs:
            defined = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                outer |= {i for i in (*n.input, *_outer_reads(n)) if i and i not in defined}
                defined |= set(n.output)
            outer |= {o.name for o in g.output if o.name not in defined}
    return outer


def _as_attributes(node, schema, given: int) -> str:
    """Of the inputs a newer opset added (after ``schema``'s), those that ``schema`` takes as attributes:
    ``": 'split' is an attribute there"`` for opset 11's ``Split`` given its sizes as an input."""
    from onnx import defs

    newer = defs.get_schema(node.op_type, opset_range()[1], node.domain or "").inputs
    names = [p.name for p in newer[schema.max_input:given] if p.name in schema.attributes]
    return f": {', '.join(map(repr, names))} {'is an attribute' if len(names) == 1 else 'are attributes'} there" \
        if names else ""


#: Operators onnxruntime runs below the opset that defines them (its own LayerNormalization in the default
#: domain, opset 1's experimental ThresholdedRelu): the importer reads them too.
_BEFORE_ITS_OPSET = frozenset({("", "LayerNormalization"), ("", "ThresholdedRelu")})

#: Attributes whose values have a domain narrower than their type's (every float must also be finite,
#: as the file's constants must): (operator or None for any, attribute) -> (test, what is allowed).
_ATTRIBUTE_DOMAINS = {
    (None, "epsilon"): (lambda v: v >= 0, "at least 0 (it keeps a variance from 0)"),
    # any: its constant variances are checked with it (onnx_ops._batchnorm_affine)
    ("BatchNormalization", "epsilon"): (None, ""),
    ("Celu", "alpha"): (lambda v: v != 0, "other than 0 (Celu divides by it)"),
    ("BatchNormalization", "training_mode"): (lambda v: v == 0, "0, inference (1 normalises by the batch's own "
                                                               "statistics)"),
    ("BatchNormalization", "spatial"): (lambda v: v == 1, "1, a mean and variance per channel"),
    ("Dropout", "ratio"): (lambda v: 0 <= v < 1, "a ratio in [0, 1), as opset 12's ratio input (a probability)"),
}


#: Float attributes that may be infinite, or NaN, where onnxruntime computes the same finite results
#: as the importer: (operator, attribute) -> (test of the value and the node, what is allowed).
_NON_FINITE = {
    # no element is above +inf (all zeros), every one above -inf (the identity); NaN, a broken file's
    ("ThresholdedRelu", "alpha"): (lambda v, node: not math.isnan(v), "a number or an infinity"),
    ("Resize", "cubic_coeff_a"): (lambda v, node: _string_attribute(node, "mode", "nearest") != "cubic",
                                  "finite numbers in mode 'cubic' (no other mode reads it)"),
}


def _string_attribute(node, name: str, default: str) -> str:
    return next((a.s.decode() for a in node.attribute if a.name == name), default)


def _check_attribute(a, schema, fail, node) -> None:
    """Refuse attribute ``a`` of ``node`` of ``schema`` that the schema does not define, of another
    type than the schema's, or of a value outside its domain: a float not finite (``_NON_FINITE``
    where that is harmless), ``_ATTRIBUTE_DOMAINS``
    (onnxruntime refuses the first two; the last give NaN or infinities where it runs them, or mean
    nothing: a Dropout's ratio attribute of 2, before opset 12, which onnxruntime reads as the identity)."""
    from onnx import AttributeProto, helper

    defined = schema.attributes.get(a.name)
    if defined is None:
        raise fail(f"attribute {a.name!r}, which the operator does not have in the file's opset; supported: "
                   f"{', '.join(sorted(schema.attributes)) or 'none'}")
    if a.type != int(defined.type):
        raise fail(f"attribute {a.name!r} of type {AttributeProto.AttributeType.Name(a.type).lower()}; the operator "
                   f"takes {AttributeProto.AttributeType.Name(int(defined.type)).lower()}")
    value = helper.get_attribute_value(a)
    values = list(value) if a.type in (AttributeProto.FLOATS, AttributeProto.INTS) else \
        [value] if a.type in (AttributeProto.FLOAT, AttributeProto.INT) else []
    harmless, allowed = _NON_FINITE.get((schema.name, a.name), (lambda v, node: False, "finite numbers"))
    bad = next((v for v in values if not math.isfinite(v) and not harmless(v, node)), None)
    if bad is not None:
        raise fail(f"attribute {a.name!r} of {bad}; supported: {allowed}")
    test, allowed = _ATTRIBUTE_DOMAINS.get((schema.name, a.name)) or _ATTRIBUTE_DOMAINS.get((None, a.name), (None, ""))
    bad = next((v for v in values if test is not None and not test(v)), None)
    if bad is not None:
        raise fail(f"attribute {a.name!r} of {bad}; supported: {allowed}")


def _formals(names, formals) -> list:
    """(value, the schema's formal parameter for it) of a node's inputs or outputs; the last formal
    stands for the rest when it is variadic of one type (``Concat``'s inputs), else they are left out."""
    from onnx.defs import OpSchema

    out = []
    for k, name in enumerate(names):
        formal = formals[min(k, len(formals) - 1)] if formals else None
        variadic = formal is not None and formal.option == OpSchema.FormalParameterOption.Variadic
        if name and formal is not None and (k < len(formals) or (variadic and formal.is_homogeneous)):
            out.append((name, formal))
    return out


def _type_names(allowed: set) -> str:
    return ", ".join(sorted(t[len("tensor("):-1] if t.startswith("tensor(") else t for t in allowed))


def _stated_types(graph) -> dict[str, int]:
    """ONNX value -> its data type where the file states it: graph inputs, initializers, ``Constant``s."""
    from onnx import AttributeProto, TensorProto

    types = {i.name: i.type.tensor_type.elem_type for i in graph.input if i.type.HasField("tensor_type")}
    types.update({t.name: t.data_type for t in graph.initializer})
    of_attribute = {"value_float": TensorProto.FLOAT, "value_floats": TensorProto.FLOAT,
                    "value_int": TensorProto.INT64, "value_ints": TensorProto.INT64}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 and node.output:
            a = node.attribute[0]
            kind = a.t.data_type if a.type == AttributeProto.TENSOR else of_attribute.get(a.name)
            if kind:
                types[node.output[0]] = kind
    return types


def _inferred_types(schema, node, known: dict[str, int]) -> dict[str, int]:
    """ONNX's type inference of ``node`` by its schema, as onnxruntime runs it, from the data types
    ``known`` of all its inputs: output -> data type; {} where the schema's inference needs more
    (an input's shape or values) or refuses the node (its other checks refuse it then)."""
    from onnx import checker, helper, shape_inference

    types = {n: helper.make_tensor_type_proto(k, None) for n, k in known.items()}
    try:
        inferred = shape_inference.infer_node_outputs(schema, node, types)
    except (shape_inference.InferenceError, checker.ValidationError):
        return {}
    return {n: t.tensor_type.elem_type for n, t in inferred.items()
            if t.HasField("tensor_type") and t.tensor_type.elem_type}


def _consumers(graph) -> dict[str, list[int]]:
    """ONNX tensor -> indices of the nodes that read it (-1 for a graph output)."""
    out: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name:
                out.setdefault(name, []).append(i)
    for o in graph.output:
        out.setdefault(o.name, []).append(-1)
    return out


def _dead_nodes(graph) -> set[int]:
    """Nodes no graph output depends on (an exporter's leftovers): never imported, never refused."""
    needed = {o.name for o in graph.output}
    dead = set()
    for i in range(len(graph.node) - 1, -1, -1):
        node = graph.node[i]
        if any(o in needed for o in node.output):
            needed.update(n for n in (*node.input, *_outer_reads(node)) if n)
        else:
            dead.add(i)
    return dead


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type).lower()


def _position_after(layers: list, after: str, sources: dict, seq: int) -> int:
    """Where a Constant layer that follows layer ``after`` goes: after it and the constants that
    follow it from earlier Constant nodes (``seq`` orders them)."""
    pos = 0
    for i, l in enumerate(layers):
        if l.name == after:
            pos = i + 1
            break
    while pos < len(layers) and isinstance(layers[pos], Constant) and 0 < sources[layers[pos].name].seq < seq:
        pos += 1
    return pos


def _live_layers(layers: list, outputs: set) -> list:
    """The layers the outputs depend on (padding layers that patch merging made redundant, and
    constants or layers no output reads, are dropped)."""
    live = set(outputs)
    for layer in reversed(layers):
        if layer.name in live:
            live.update(layer.inputs)
    return [l for l in layers if l.name in live]


def _rows_read(layer, tensor: str, channels: int) -> tuple[int, int]:
    """The channels ``[lo, hi)`` of input ``tensor`` that ``layer`` reads."""
    if isinstance(layer, Linear):
        return 0, layer.in_features
    if isinstance(layer, Conv2d):
        return 0, layer.in_ch
    if isinstance(layer, ChannelSlice):
        return layer.start, layer.start + layer.channels
    if isinstance(layer, MatMul) and layer.b_layout != "opaque":
        if tensor == layer.inputs[0]:
            return layer.a_offset, layer.a_offset + layer.heads * layer.k
        width = layer.k if layer.b_layout == "nk" else layer.n
        return layer.b_offset, layer.b_offset + layer.b_heads * width
    return 0, channels


def _check_folds(folds: dict, layers: list, outputs: dict) -> None:
    """_Refold for the first folded scale whose rows a layer other than its readers, or a graph
    output, reads; a layout layer among its readers (a slice of the scaled rows, made once and
    shared by every read of the same rows; a reordering's reads the rows in their new order, what
    it holds is right for anyone), and the product of activations a scale was folded through (its
    output is scaled), have only readers of the fold as readers."""
    for key, fold in folds.items():
        scaled = set() if fold.order else {l.name for l in layers if l.kind in _LAYOUT_CLASSES and l.name in fold.readers}
        if fold.through:        # the product's output is scaled for everyone who reads it
            scaled.add(fold.through)
        for v in outputs.values():
            lo, hi = L.channels_read(v) if v.source == fold.target else (0, 0)
            if (lo < fold.hi and fold.lo < hi) or v.source in scaled:
                raise _Refold(key)
        for layer in layers:
            if layer.name in fold.readers:
                continue
            if scaled.intersection(layer.inputs):
                raise _Refold(key)
            if fold.target in layer.inputs:
                lo, hi = _rows_read(layer, fold.target, 1 << 30)
                if lo < fold.hi and fold.lo < hi:
                    raise _Refold(key)


def _parts_metadata(proto) -> dict:
    for prop in proto.metadata_props:
        if prop.key == PARTS_KEY:
            try:
                parts = json.loads(prop.value)
            except ValueError:
                return {}
            return {k: v for k, v in parts.items() if v in PARTS} if isinstance(parts, dict) else {}
    return {}


def _guess_part(name: str) -> str:
    """A part named in the layer's name (``decoder``, ``head``, ...), else ``backbone``."""
    words = set(re.split(r"[._\-]", name.lower()))
    return next((p for p in PARTS if p in words), "backbone")


from .onnx_ops import HANDLERS as _HANDLERS, NEVER_FOLD as _NEVER_FOLD, SUPPORTED_OPS, VIEW_OPS as _VIEW_OPS  # noqa: E402

_PRODUCTS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"})
#: Element-wise operators of several tensors, evaluated on constants that broadcast each other.
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where"})
#: Operators of one data tensor, their other inputs parameters (scales, sizes, pads, a pad's value).
_PARAMETRISED = frozenset({"Resize", "Upsample", "Pad"})

SUPPORTED_TEXT = ", ".join(SUPPORTED_OPS)
#: What to do instead, for operators a file may well hold (appended to the refusal).
_QOPERATOR = (" (an int8 model in the QOperator format: export it in the QDQ format, onnxruntime's "
              "quantize_static(..., quant_format=QuantFormat.QDQ), whose QuantizeLinear/DequantizeLinear "
              "pairs are read; docs/onnx.md)")
#: What an operator the file computes with most likely is, and what to export instead.
_HINT = {"ScatterND": " (PyTorch's export of an assignment to a slice, y[..., 0:2] = ...: YOLOv5's Detect exported "
                      "with --inplace; export it without, the default, whose decode is a Split and a Concat; "
                      "docs/onnx.md)"}
_HINT.update({op: f" (control flow on the network's tensors; export the model traced, torch.onnx.export's default, "
                  f"which keeps the branch or iterations taken)" for op in ("If", "Loop", "Scan")})
_INSTEAD = {op: _QOPERATOR for op in ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
                                      "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool",
                                      "QLinearLeakyRelu", "QLinearSoftmax", "QGemm", "ConvInteger", "MatMulInteger",
                                      "DynamicQuantizeLinear")}
