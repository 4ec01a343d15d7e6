"""Zoo -> ONNX -> IR (mapper.onnx_export, mapper.onnx_import): the same layers, MACs and cycles for
every zoo model; onnxruntime on the exported float model against the project's float reference
(mapper.reference) on the zoo model and its seeded weights, to 1e-4 of each output's magnitude."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hw.config import get_config
from mapper import onnx_layout as L
from mapper import reference
from mapper.images import calibration_image
from mapper.lower import MappingError
from mapper.onnx_export import export_onnx
from mapper.onnx_import import OnnxImportError, import_onnx
from mapper.weights import init_weights
from mapper.workloads import MODEL_NAMES, build_model
from sim.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-4
#: Reduced sizes.  Swin at 256x256: every stage of more than one window (a stage of one window has
#: no partition and reverse, in the zoo as in the import: test_swin_round_trip_at_odd_sizes).
#: ResNet-50 at 32x32 and DETR at 64x96, the sizes tests/test_program.py and tests/test_infer.py map
#: them at on E (one tiling search of each in make test, not two).
ROUND_TRIP_SIZES = {"segformer": (64, 64), "swin": (256, 256), "resnet50": (32, 32), "ofa": (64, 64),
                    "detr": (64, 96), "dab": (128, 128), "anchor": (128, 128), "conditional": (128, 128)}
#: Sizes where UPerNet's pyramid pooling (1, 2, 3, 6) tiles the last stage exactly, so that the
#: exported model is standard ONNX that onnxruntime runs; ResNet-50's and DETR's as before the round
#: trip's moved.
ORT_SIZES = {**ROUND_TRIP_SIZES, "swin": (192, 192), "resnet50": (64, 64), "detr": (128, 128)}
#: Slow in onnxruntime and numpy (float weights with batch norms folded on an image first).
SLOW_ORT = {"segformer_b1", "segformer_b1_city", "segformer_b2_city", "swin_small", "swin_base", "ofa_resnet50",
            "dab_detr", "conditional_detr"}


def _size(name: str, table: dict) -> tuple[int, int]:
    return next(v for k, v in table.items() if name.startswith(k))


def _fields(layer) -> dict:
    """Everything a layer is, but how a Constant's data is made (the file holds the data itself)."""
    d = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)}
    if layer.kind == "constant":
        d.pop("init"), d.pop("args")
    return d


def _live(model) -> list:
    """The layers some output depends on (Anchor DETR's zoo model also builds DETR's unused 2-D
    position table, which the export keeps and the import, reading nothing from it, leaves out)."""
    live = set(model.output_names)
    for layer in reversed(model.layers):
        if layer.name in live:
            live.update(layer.inputs)
    return [l for l in model.layers if l.name in live]


def _cycles(model, cfg):
    try:
        r = simulate(model, cfg)
    except MappingError as e:
        return f"MappingError: {e}"
    return [(l.name, l.cycles) for l in r.layers], r.total_cycles


#: The round trip of these is the same code path as another's (swin_tiny's, segformer_b0's and
#: segformer_b0_city's), with more or wider blocks: ``make regress``.
SLOW_ROUND_TRIP = {"swin_tiny", "swin_small", "swin_base",       # Swin-T: 15 s of make test
                   "segformer_b1", "segformer_b2", "segformer_b1_city", "segformer_b2_city",
                   # DETR's variants differ from detr (fast) in their decoders' queries: 52 s of make test
                   "dab_detr", "conditional_detr", "anchor_detr"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_ROUND_TRIP else [])
                                  for n in MODEL_NAMES])
def test_round_trip_same_layers_macs_cycles(name):
    _assert_same_network(name, _size(name, ROUND_TRIP_SIZES))


def _assert_same_network(name: str, size: tuple[int, int]) -> None:
    zoo = build_model(name, size=size)
    imported = import_onnx(export_onnx(zoo, init_weights(zoo, 0, fold=False)), name).model
    want = _live(zoo)
    assert [_fields(l) for l in imported.layers] == [_fields(l) for l in want]
    assert [l.part for l in imported.layers] == [l.part for l in want]
    assert imported.total_macs == zoo.total_macs
    cfg = get_config("E")
    assert _cycles(imported, cfg) == _cycles(zoo, cfg)        # Anchor DETR: the same mapping error on both


#: Swin at sides that are no multiple of 4 (the patch embedding pads them) nor of 7: 33x27 has one
#: column of two windows in stage 0 (their raster order, which the IR's partition interleaves) and one
#: window in stage 1 (no partition, no reverse); 27x33 one row of two, and stage 3 one row (a view of
#: it, not a crop); 61x53 has the column in stage 1, 129x97 in stage 2; 8x27 crops whole rows of one
#: window; swin_small at 97x131 has one window in stage 3 (make regress).
@pytest.mark.parametrize("name, size", [("swin_tiny", (33, 27)), ("swin_tiny", (27, 33)),
                                        *(pytest.param("swin_tiny", s, marks=pytest.mark.slow)
                                          for s in ((61, 53), (129, 97), (8, 27))),
                                        pytest.param("swin_small", (97, 131), marks=pytest.mark.slow)])
def test_swin_round_trip_at_odd_sizes(name, size):
    _assert_same_network(name, size)


def _ort_case(name: str):
    marks = [pytest.mark.slow] if name in SLOW_ORT else []
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", [_ort_case(n) for n in MODEL_NAMES if n != "anchor_detr"])
def test_onnxruntime_agrees_with_the_float_reference(name):
    _assert_onnxruntime_agrees(name, _size(name, ORT_SIZES))


@pytest.mark.slow
def test_onnxruntime_agrees_on_swin_at_an_odd_size():
    """Sides no multiple of 4 (the patch embedding's own padding at the bottom and right); the last
    stage 6x6, which the pyramid pooling tiles (standard ONNX)."""
    _assert_onnxruntime_agrees("swin_tiny", (189, 170))


def _assert_onnxruntime_agrees(name: str, size: tuple[int, int]) -> None:
    model = build_model(name, size=size)
    weights = init_weights(model, 0)
    proto = export_onnx(model, weights)
    onnx.checker.check_model(proto)
    imported = import_onnx(proto, name)
    image = calibration_image(*size, 1)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {"input": L.gather(imported.input_view, image.astype(np.float32).ravel())})))
    ref = dict(reference.run_float(model, weights, image))
    assert imported.outputs
    for out, view in imported.outputs.items():
        mine = L.gather(view, ref[view.source].ravel())
        assert np.max(np.abs(mine - got[out])) <= RTOL * np.max(np.abs(got[out])), out
    for out, layer in imported.class_maps.items():        # segmentation: the class map, from the logits
        agree = np.mean(np.argmax(ref[layer], axis=-1) == got[out][0, 0])
        assert agree >= 0.999, (out, agree)


def test_a_bilinear_resize_to_one_pixel_exports_as_onnxruntime_computes_it():
    """ONNX's pytorch_half_pixel, which the exporter writes as PyTorch's does, reads the first pixel
    for an axis of one output pixel; the IR (PyTorch) takes the centre, which half_pixel does."""
    from mapper.ir import Conv2d, Model, Resize

    model = Model("one", "full", (4, 6, 3), (Conv2d("conv", "backbone", 3, 4, 4, 6, kernel=1),
                                             Resize("up", "backbone", inputs=("conv",), out_h=1, out_w=3)))
    weights = init_weights(model, 0)
    proto = export_onnx(model, weights)
    image = calibration_image(4, 6, 1)
    imported = import_onnx(proto, "one")
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": L.gather(imported.input_view, image.astype(np.float32).ravel())})[0]
    ref = dict(reference.run_float(model, weights, image))["up"]
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_a_product_of_shared_kv_heads_exports_as_onnxruntime_computes_it():
    """A product whose ``b_repeat`` heads read one head of its second operand (grouped-query
    attention's keys and values) exports as a broadcast MatMul; imported back, one such product."""
    from mapper.ir import Linear, MatMul, Model, Softmax

    heads, kv, d, tokens = 4, 2, 8, 16
    model = Model("gqa", "full", (4, 4, 3), (
        Linear("q", "backbone", tokens, 3, heads * d), Linear("kv", "backbone", tokens, 3, 2 * kv * d, inputs=("input",)),
        MatMul("qk", "backbone", heads, tokens, d, tokens, inputs=("q", "kv"), b_repeat=heads // kv),
        Softmax("sm", "backbone", inputs=("qk",), row=tokens),
        MatMul("av", "backbone", heads, tokens, tokens, d, inputs=("sm", "kv"), b_offset=kv * d, b_layout="kn",
               b_repeat=heads // kv)))
    weights = init_weights(model, 0)
    proto = export_onnx(model, weights)
    onnx.checker.check_model(proto)
    image = calibration_image(4, 4, 1)
    imported = import_onnx(proto, "gqa")
    assert [(l.batch, l.b_repeat) for l in imported.model.layers if l.kind == "matmul"] == [(4, 2), (4, 2)]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": L.gather(imported.input_view, image.astype(np.float32).ravel())})[0]
    ref = dict(reference.run_float(model, weights, image))["av"]
    [view] = imported.outputs.values()
    np.testing.assert_allclose(got, L.gather(view, ref.ravel()), rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shift, shift_x, size", [(3, 0, (12, 6)), (0, -2, (12, 6)), (-3, 2, (12, 6)),
                                                  (2, None, (12, 6)), (2, 0, (6, 4))])
def test_a_roll_of_each_axis_by_its_own_shift_round_trips(shift, shift_x, size):
    """A ``Roll`` whose columns shift by their own amount (timm's Swin shifts only the rows of a map one
    window wide) exports as ``torch.roll`` does, one axis after the other, and imports as the same one
    layer (the first axis's roll alone, a layer of its own, gives way to the roll of both; at 6x4 the
    roll of both by 2 is tried first and does not hold it); onnxruntime agrees with the float reference."""
    from mapper.ir import Linear, Model, Roll

    h, w = size
    model = Model("roll", "full", (h, w, 3), (Linear("fc", "backbone", h * w, 3, 8, inputs=("input",)),
                                              Roll("shifted", "backbone", inputs=("fc",), shift=shift, shift_x=shift_x),
                                              Linear("out", "backbone", h * w, 8, 4, inputs=("shifted",))))
    weights = init_weights(model, 0)
    proto = export_onnx(model, weights)
    imported = import_onnx(proto, "roll")
    assert [_fields(l) for l in imported.model.layers] == [_fields(l) for l in model.layers]
    image = calibration_image(h, w, 1)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": L.gather(imported.input_view, image.astype(np.float32).ravel())})[0]
    ref = dict(reference.run_float(model, weights, image))["out"]
    [view] = imported.outputs.values()
    np.testing.assert_allclose(got, L.gather(view, ref.ravel()), rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_anchor_detr_exports_its_opaque_products_as_custom_operators():
    model = build_model("anchor_detr", size=(128, 128))
    proto = export_onnx(model, init_weights(model, 0, fold=False))
    custom = [n for n in proto.graph.node if n.domain == "com.vitaccel"]
    assert {n.op_type for n in custom} == {"OpaqueMatMul"}
    assert len(custom) == sum(1 for l in model.layers if getattr(l, "b_layout", "") == "opaque")
    with pytest.raises(Exception, match="OpaqueMatMul"):
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name, custom", [("anchor_detr", "OpaqueMatMul"), ("segformer_b0", None)])
def test_make_onnx_notes_a_file_onnxruntime_cannot_run(name, custom, tmp_path, capsys):
    """``make onnx MODEL=anchor_detr`` wrote a file onnxruntime cannot load and said nothing; a note
    names the custom operators the graph holds, and a standard file gets none."""
    from mapper.onnx_export import main
    assert main(["--model", name, "--size", "64x64", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote "), lines
    if custom is None:
        assert len(lines) == 1, lines
    else:
        assert len(lines) == 2 and lines[1].startswith("note: ") and f"com.vitaccel operators ({custom})" in lines[1] \
            and "onnxruntime cannot run it" in lines[1], lines


def test_swin_pyramid_pooling_that_does_not_tile_is_a_custom_operator():
    model = build_model("swin_tiny", size=(256, 256))                 # last stage 8x8: pools of 3 and 6
    proto = export_onnx(model, init_weights(model, 0, fold=False))
    assert sorted(n.attribute[0].ints[0] for n in proto.graph.node if n.op_type == "AdaptiveAveragePool") == [3, 6]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_at_the_default_size(name):
    zoo = build_model(name)
    imported = import_onnx(export_onnx(zoo, init_weights(zoo, 0, fold=False)), name).model
    assert [_fields(l) for l in imported.layers] == [_fields(l) for l in _live(zoo)]
    cfg = get_config("E")
    assert _cycles(imported, cfg) == _cycles(zoo, cfg)


def test_make_onnx_writes_a_file_that_imports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mapper.onnx_export", "--model", "segformer_b0", "--size", "64x64",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "segformer_b0_64x64.onnx"
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["vitaccel.model"] == "segformer_b0" and meta["vitaccel.seed"] == "0"
    assert build_model(str(path)).total_macs == build_model("segformer_b0", size=(64, 64)).total_macs
    r = subprocess.run([sys.executable, "-m", "mapper.onnx_export", "--model", "segformer_b0", "--size", "64x64",
                        "--seed", "1", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr          # other weights, another file: seed 0's is not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segformer_b0_64x64.onnx", "segformer_b0_64x64_seed1.onnx"]


@pytest.mark.parametrize("args, needle", [(["--model", "nosuch"], "'nosuch'"),
                                          (["--model", "resnet50", "--variant", "x"], "'x'"),
                                          (["--model", "resnet50", "--seed", "-1"], "--seed")])
def test_make_onnx_bad_input(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "mapper.onnx_export", *args, "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("outer", ["channels", "readers"])
def test_a_concatenation_of_pixels_exports_as_tokens_and_imports_back(outer):
    """Levels of different sizes concatenated along their pixels (``Concat(along='pixels')``) are
    exported as token sequences concatenated along axis 1, and imported back as the same layers;
    onnxruntime computes what the float reference does."""
    from test_program import _levels

    model = _levels(outer)
    weights = init_weights(model, 0, fold=False)
    proto = export_onnx(model, weights)
    onnx.checker.check_model(proto)
    imported = import_onnx(proto, "levels")
    assert [_fields(l) for l in imported.model.layers] == [_fields(l) for l in model.layers]
    x = np.random.default_rng(0).normal(size=model.input).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {"input": L.gather(imported.input_view, x.ravel())})))
    ref = dict(reference.run_float(model, weights, x))
    for out, view in imported.outputs.items():
        assert np.max(np.abs(L.gather(view, ref[view.source].ravel()) - got[out])) <= 1e-4 * np.max(np.abs(got[out]))
