"""Whole-network numerics: seeded weights, the float reference, calibration and the error report.

mapper.weights (seeded, initialised as the original models), mapper.reference (the IR's
semantics in float, checked on hand-computable cases and against a transcription of Swin's
shifted-window attention), mapper.views against the golden integer model, mapper.calibrate
(the constraints the hardware program relies on) and sim.accuracy (SQNR and agreement above
stated bounds on SegFormer-B0 at 64x64).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hw import operators as ops
from mapper import reference, views
from mapper.float_ops import activation as float_activation
from mapper.calibrate import (KEEPS_SCALE, assign_scales, check_constraints, has_pole_at_zero, pole_table_range,
                              prepare, quantize, quantize_weights, requant_params, scale_groups, tensor_range)
from mapper.images import (INPUT_SCALE, IMAGENET_MEAN, IMAGENET_STD, calibration_image, preprocess,
                           quantize_input, synthetic_image)
from mapper.ir import (INPUT, Activation, Add, Concat, Constant, Conv2d, Crop, LayerNorm, Linear, MatMul, Model,
                       Pad, PatchMerge, Roll, Softmax, WindowPartition, WindowReverse)
from mapper.quantize import QLayer, QModel
from mapper.weights import (BN_EPS, constant_data, fold_attention_scale, has_batchnorm, init_weights,
                            relative_position_index)
from mapper.workloads import build_model
from sim import accuracy
from sim.golden_network import layer_output as golden_layer, run_network

E = "encoder"


# ---- a Swin block (shifted windows on a padded map) and patch merging, small ----------------------

DIM, HEADS, WIN, SHIFT = 8, 2, 7, 3


def swin_block_model() -> Model:
    """LN, pad 10x10 -> 14x14, roll, 4 windows, attention with bias and mask, reverse, unroll, crop,
    residual, patch merging: every layout layer of the zoo on a 10x10x8 input."""
    windows, d = 4, DIM // HEADS
    layers = (
        LayerNorm("norm1", E, inputs=(INPUT,)),
        Pad("pad", E, inputs=("norm1",), out_h=14, out_w=14),
        Roll("shift", E, inputs=("pad",), shift=SHIFT),
        WindowPartition("part", E, inputs=("shift",), window=WIN),
        Linear("qkv", E, 196, DIM, 3 * DIM, inputs=("part",)),
        MatMul("qk", E, windows * HEADS, 49, d, 49, inputs=("qkv", "qkv"), windows=windows, b_offset=DIM),
        Constant("bias.table", E, (49, 1, HEADS * 49), init="rel_pos_bias", args=(WIN, HEADS)),
        Add("bias", E, inputs=("qk", "bias.table")),
        Constant("mask.table", E, (49, windows, 49), init="swin_mask", args=(14, 14, WIN, SHIFT)),
        Add("mask", E, inputs=("bias", "mask.table")),
        Softmax("softmax", E, inputs=("mask",), row=49),
        MatMul("av", E, windows * HEADS, 49, 49, d, inputs=("softmax", "qkv"), windows=windows, b_offset=2 * DIM,
               b_layout="kn"),
        Linear("proj", E, 196, DIM, DIM, inputs=("av",)),
        WindowReverse("reverse", E, inputs=("proj",), out_h=14, out_w=14, window=WIN),
        Roll("unshift", E, inputs=("reverse",), shift=-SHIFT),
        Crop("crop", E, inputs=("unshift",), out_h=10, out_w=10),
        Add("add1", E, inputs=(INPUT, "crop")),
        PatchMerge("merge", E, inputs=("add1",)),
        LayerNorm("merge.norm", E, inputs=("merge",)),
        Linear("reduction", E, 25, 4 * DIM, 2 * DIM, bias=False, inputs=("merge.norm",)),
        Activation("gelu", E, "gelu", inputs=("reduction",)),
    )
    return Model("swin_block", "full", (10, 10, DIM), layers)


def swin_attention_transcribed(x, w):
    """Swin's ``SwinTransformerBlock`` attention half (microsoft/Swin-Transformer), in numpy, from
    unscaled q weights: returns ``x + attn(x)`` (the IR's ``add1``)."""
    ln = w["norm1"]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    h = (x - mu) / np.sqrt(var + 1e-5) * ln["gamma"] + ln["beta"]
    h = np.pad(h, ((0, 4), (0, 4), (0, 0)))
    h = np.roll(h, (-SHIFT, -SHIFT), axis=(0, 1))
    win = h.reshape(2, WIN, 2, WIN, DIM).transpose(0, 2, 1, 3, 4).reshape(4, 49, DIM)      # window_partition
    d = DIM // HEADS
    wq = w["qkv"]["weight"].astype(np.float64).copy()
    wq[:DIM] *= math.sqrt(d)                                                              # undo the folding
    qkv = (win @ wq.T + w["qkv"]["bias"]).reshape(4, 49, 3, HEADS, d).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * d ** -0.5, qkv[1], qkv[2]                                          # [4, heads, 49, d]
    attn = q @ k.transpose(0, 1, 3, 2)
    table = w["bias.table"]["data"].reshape(49, HEADS, 49).transpose(1, 0, 2)            # [heads, m, n]
    attn = attn + table[None]
    img = np.zeros((14, 14))
    cnt = 0
    for hs in (slice(0, -WIN), slice(-WIN, -SHIFT), slice(-SHIFT, None)):
        for ws in (slice(0, -WIN), slice(-WIN, -SHIFT), slice(-SHIFT, None)):
            img[hs, ws] = cnt
            cnt += 1
    mw = img.reshape(2, WIN, 2, WIN).transpose(0, 2, 1, 3).reshape(4, 49)
    mask = np.where(mw[:, None, :] - mw[:, :, None] != 0, -100.0, 0.0)                     # [windows, m, n]
    attn = attn + mask[:, None]
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(4, 49, DIM) @ w["proj"]["weight"].T + w["proj"]["bias"]
    out = out.reshape(2, 2, WIN, WIN, DIM).transpose(0, 2, 1, 3, 4).reshape(14, 14, DIM)  # window_reverse
    out = np.roll(out, (SHIFT, SHIFT), axis=(0, 1))[:10, :10]
    return x + out


@pytest.fixture(scope="module")
def swin_block():
    model = swin_block_model()
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1, (10, 10, DIM)).astype(np.float32)
    weights = init_weights(model, seed=4)
    for name in ("norm1", "merge.norm"):            # non-trivial affine parameters
        weights[name]["gamma"] = rng.uniform(0.5, 1.5, weights[name]["gamma"].shape).astype(np.float32)
        weights[name]["beta"] = rng.uniform(-0.3, 0.3, weights[name]["beta"].shape).astype(np.float32)
    return model, weights, image


# ---- images -----------------------------------------------------------------------------------------

def test_synthetic_image_is_seeded_natural_looking_and_preprocessed_as_imagenet():
    a, b = synthetic_image(48, 64, 7), synthetic_image(48, 64, 7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, synthetic_image(48, 64, 8))
    # smooth like a photograph: neighbours differ far less than in white noise (~85 levels)
    assert np.abs(np.diff(a.astype(int), axis=1)).mean() < 10 and a.std() > 20
    x = preprocess(a)
    np.testing.assert_allclose(x[3, 5], (a[3, 5] / 255 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, rtol=1e-6)
    # the fixed input scale covers every value preprocessing can give, and just so
    extremes = preprocess(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    assert np.abs(extremes).max() == pytest.approx(127 * INPUT_SCALE)
    np.testing.assert_array_equal(quantize_input(np.array([[[127.5 * INPUT_SCALE, -200 * INPUT_SCALE, 0.0]]])),
                                  [[[127, -128, 0]]])
    # calibration images are not the test images of any integer seed
    assert not np.array_equal(calibration_image(48, 64, 7), preprocess(synthetic_image(48, 64, 7)))
    assert calibration_image(48, 64, 7, count=3).shape == (3, 48, 64, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: preprocess(np.zeros((4, 4), np.uint8)), "H x W x 3"),
    (lambda: preprocess(np.zeros((4, 4, 3), np.float32)), "uint8"),
    (lambda: quantize_input(np.zeros((4, 4, 3), np.uint8)), "float"),
    (lambda: quantize_input(np.full((4, 4, 3), np.nan)), "finite"),
])
def test_bad_images_are_refused_in_one_line(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


# ---- weights ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [("segformer_b0", (64, 64)), ("resnet50", (32, 32)), ("detr", (32, 32)),
                                        ("ofa_resnet50", (32, 32)), ("anchor_detr", (32, 32))])
def test_weights_are_seeded_complete_and_deterministic(name, size):
    model = build_model(name, size=size)
    w1 = init_weights(model, 0)                   # batch norms folded (Anchor DETR: up to its backbone's end)
    w2, w3 = init_weights(model, 0, fold=False), init_weights(model, 1, fold=False)
    for layer in model.layers:
        if isinstance(layer, (Conv2d, Linear)):
            k = layer.out_ch if isinstance(layer, Conv2d) else layer.out_features
            shape = (k, *layer.kernel, layer.in_ch // layer.groups) if isinstance(layer, Conv2d) \
                else (k, layer.in_features)
            assert w1[layer.name]["weight"].shape == shape and w1[layer.name]["bias"].shape == (k,)
        elif isinstance(layer, LayerNorm):
            assert set(w1[layer.name]) == {"gamma", "beta"}
        elif isinstance(layer, Constant):
            assert w1[layer.name]["data"].shape == layer.shape
        else:
            assert layer.name not in w1
    for layer in model.layers:
        for key, value in w1.get(layer.name, {}).items():
            assert value.dtype == np.float32 and np.all(np.isfinite(value))
            if not has_batchnorm(layer):
                np.testing.assert_array_equal(value, w2[layer.name][key])
    assert not np.array_equal(w2[model.mac_layers[0].name]["weight"], w3[model.mac_layers[0].name]["weight"])


def test_a_layers_weights_depend_on_its_name_and_the_seed_only():
    full = init_weights(build_model("segformer_b0", size=(64, 64)), 5)
    cut = init_weights(build_model("segformer_b0", "blocks=1-1-1-1", size=(64, 64)), 5)
    for name in ("stage0.block0.attn.q", "stage3.block0.mlp.fc1", "stage2.patch_embed"):
        np.testing.assert_array_equal(full[name]["weight"], cut[name]["weight"])


def _std(w):
    return float(np.std(w))


def test_initialisation_follows_each_original_model():
    seg = build_model("segformer_b0", size=(64, 64))
    w = init_weights(seg, 0)
    assert _std(w["stage1.block0.mlp.fc1"]["weight"]) == pytest.approx(0.02, rel=0.05)        # trunc_normal .02
    assert not w["stage1.block0.mlp.fc1"]["bias"].any()
    dw = seg.layer("stage1.block0.mlp.dwconv")                                                # sqrt(2/(9*K/groups))
    assert _std(w[dw.name]["weight"]) == pytest.approx(math.sqrt(2 / 9), rel=0.05)
    fan_in = seg.layer("DecodeLinear2").in_features                                            # PyTorch default
    assert np.abs(w["DecodeLinear2"]["weight"]).max() <= 1 / math.sqrt(fan_in)
    assert np.abs(w["DecodeLinear2"]["weight"]).max() > 0.99 / math.sqrt(fan_in)
    # the attention scale 1/sqrt(d) is in q (head dim 32 at stage 0)
    assert _std(w["stage0.block0.attn.q"]["weight"]) == pytest.approx(0.02 / math.sqrt(32), rel=0.1)
    np.testing.assert_array_equal(w["stage0.norm"]["gamma"], 1)
    np.testing.assert_array_equal(w["stage0.norm"]["beta"], 0)

    detr = build_model("detr", size=(64, 96))
    w = init_weights(detr, 0)
    q = detr.layer("transformer.enc0.attn.q")                      # nn.MultiheadAttention: packed [3d, d], zero bias
    bound = math.sqrt(6 / (256 + 3 * 256))
    raw = w[q.name]["weight"] * math.sqrt(32)
    assert 0.98 * bound < np.abs(raw).max() <= bound and not w[q.name]["bias"].any()
    fc1 = w["transformer.enc0.ffn.fc1"]
    assert np.abs(fc1["weight"]).max() <= math.sqrt(6 / (256 + 2048)) and fc1["bias"].any()
    assert _std(w["transformer.query_embed"]["data"]) == pytest.approx(1, rel=0.05)           # nn.Embedding


def test_which_convolutions_have_a_batch_norm():
    swin = {layer.name: layer for layer in build_model("swin_tiny", size=(224, 224)).layers}
    assert has_batchnorm(swin["fpn_bottleneck"]) and has_batchnorm(swin["psp_modules.0.conv"])
    assert not has_batchnorm(swin["conv_seg"]) and not has_batchnorm(swin["patch_embed"])
    seg = build_model("segformer_b0", size=(64, 64))
    assert [layer.name for layer in seg.layers if has_batchnorm(layer)] == ["Conv2DFuse"]
    detr = build_model("detr", size=(64, 64))
    assert all(has_batchnorm(layer) == layer.name.startswith("backbone.") for layer in detr.mac_layers
               if isinstance(layer, Conv2d))


def test_folded_batch_norms_normalise_the_calibration_input():
    model = build_model("resnet50", size=(48, 48))
    calib = calibration_image(48, 48, 0, count=2)
    weights = init_weights(model, 0, calib)
    seen = []

    def record(layer, y):
        if has_batchnorm(layer) and y.shape[0] * y.shape[1] * y.shape[2] >= 64:
            seen.append(layer.name)
            np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-3)
            np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=2e-3, atol=2 * BN_EPS)
        return y
    for _ in reference.run_float(model, weights, calib, adjust=record):
        pass
    assert "conv1" in seen and "layer2.0.downsample" in seen


def test_attention_scale_is_folded_through_adds_and_concatenations_only():
    detr = build_model("conditional_detr", size=(64, 64))
    raw = init_weights(detr, 0)
    names = ["transformer.dec0.cross_attn.q_content", "transformer.dec0.cross_attn.q_pos",
             "transformer.dec0.cross_attn.q_pos_sine", "transformer.dec1.cross_attn.q_content",
             "transformer.dec1.self_attn.q_pos"]
    for n in names:                      # xavier bound sqrt(6/512) times 1/8 (head dim 64) or 1/sqrt(32)
        d = 64 if "cross" in n else 32
        assert np.abs(raw[n]["weight"]).max() <= math.sqrt(6 / 512) / math.sqrt(d) + 1e-7
    assert np.abs(raw["transformer.dec1.cross_attn.k_content"]["weight"]).max() > math.sqrt(6 / 512) * 0.9
    bad = Model("m", "full", (4, 4, 8), (LayerNorm("n", E, inputs=(INPUT,)),
                                        MatMul("qk", E, 1, 16, 8, 16, inputs=("n", "n"))))
    with pytest.raises(ValueError, match=r"qk: cannot fold the attention scale into 'n' \(layernorm\)"):
        fold_attention_scale(bad, init_weights(bad, 0))


def test_constants():
    rng = np.random.default_rng(0)
    pos = constant_data(Constant("p", E, (5, 7, 256), init="sine_pos"), rng)
    y, x = 2, 3
    ty, tx = (y + 1) / (5 + 1e-6) * 2 * math.pi, (x + 1) / (7 + 1e-6) * 2 * math.pi
    assert pos[y, x, 0] == pytest.approx(math.sin(ty)) and pos[y, x, 1] == pytest.approx(math.cos(ty))
    assert pos[y, x, 128] == pytest.approx(math.sin(tx))
    assert pos[y, x, 130] == pytest.approx(math.sin(tx / 10000 ** (2 / 128)))
    pos1 = constant_data(Constant("p1", E, (1, 4, 256), init="sine_pos_1d"), rng)
    assert pos1[0, 1, 0] == pytest.approx(math.sin(1.5 / 4 * 2 * math.pi))
    index = relative_position_index(7)
    assert index.shape == (49, 49) and index.min() == 0 and index.max() == 168
    assert index[0, 0] == index[48, 48] == 6 * 13 + 6 and index[0, 48] == 0 and index[48, 0] == 168
    bias = constant_data(Constant("b", E, (49, 1, 98), init="rel_pos_bias", args=(7, 2)), rng)[:, 0]
    for m, n, m2, n2 in ((0, 1, 10, 11), (3, 9, 17, 23)):      # same relative position, same bias
        assert index[m, n] == index[m2, n2] and bias[m, n] == bias[m2, n2] and bias[m, 49 + n] == bias[m2, 49 + n2]
    mask = constant_data(Constant("m", E, (49, 4, 49), init="swin_mask", args=(14, 14, 7, 3)), rng)
    assert set(np.unique(mask)) == {0.0, -100.0}
    assert not mask[:, 0].any() and mask[:, 3].any()            # the top-left window is one region
    np.testing.assert_array_equal(mask, mask.transpose(2, 1, 0))
    with pytest.raises(ValueError, match="unknown constant init 'nope'"):
        constant_data(Constant("c", E, (1, 1, 1), init="nope"), rng)


# ---- the float reference ----------------------------------------------------------------------------

def test_convolutions_by_hand():
    x = np.arange(16, dtype=np.float64).reshape(4, 4, 1)
    w = np.zeros((1, 3, 3, 1))
    w[0, 1, 1, 0], w[0, 0, 0, 0] = 1, 10
    out = reference.conv2d(x, w, np.array([0.5]), stride=1, padding=1, groups=1)[:, :, 0]
    assert out[0, 0] == 0.5 and out[1, 1] == 5 + 10 * 0 + 0.5 and out[3, 3] == 15 + 10 * 10 + 0.5
    # every path against loops: im2col (k2 s2), taps (k3 s1), depthwise, grouped, a channel slice
    rng = np.random.default_rng(1)
    for ker, s, p, g, c, k in ((2, 2, 0, 1, 3, 4), (3, 1, 1, 1, 3, 4), (3, 2, 1, 6, 6, 6), (3, 1, 1, 2, 4, 6)):
        x = rng.normal(size=(7, 6, c))
        w = rng.normal(size=(k, ker, ker, c // g))
        got = reference.conv2d(x, w, None, s, p, g)
        xp = np.pad(x, ((p, p), (p, p), (0, 0)))
        for oy, ox, o in np.ndindex(*got.shape):
            gi = o // (k // g)
            patch = xp[oy * s:oy * s + ker, ox * s:ox * s + ker, gi * (c // g):(gi + 1) * (c // g)]
            assert got[oy, ox, o] == pytest.approx(float((patch * w[o]).sum()), abs=1e-9)


def test_window_partition_reverse_roll_and_patch_merge_semantics():
    x = np.arange(14 * 14 * 2).reshape(14, 14, 2)
    part = views.window_partition(x, 7)
    assert part.shape == (49, 4, 2)
    y, xx = 9, 4                            # window (1, 0) = 2, row (2, 4) = 18
    np.testing.assert_array_equal(part[(y % 7) * 7 + xx % 7, (y // 7) * 2 + xx // 7], x[y, xx])
    np.testing.assert_array_equal(views.window_reverse(part, 7, 14, 14), x)
    rolled = views.roll(x, 3)
    np.testing.assert_array_equal(rolled[0, 0], x[3, 3])
    np.testing.assert_array_equal(rolled[13, 12], x[2, 1])
    np.testing.assert_array_equal(views.roll(rolled, -3), x)
    odd = np.arange(3 * 5).reshape(3, 5, 1)
    merged = views.patch_merge(odd)
    assert merged.shape == (2, 3, 4)
    np.testing.assert_array_equal(merged[0, 1], [odd[0, 2, 0], odd[1, 2, 0], odd[0, 3, 0], odd[1, 3, 0]])
    np.testing.assert_array_equal(merged[1, 2], [odd[2, 4, 0], 0, 0, 0])          # zero padding


def test_products_softmax_and_broadcast_by_hand():
    rng = np.random.default_rng(2)
    qkv = rng.normal(size=(6, 3, 12))                     # 6 rows x 3 windows, 2 heads of 2, q|k|v
    qk = Model("m", "full", (6, 3, 12), (MatMul("qk", E, 6, 6, 2, 6, inputs=(INPUT, INPUT), windows=3,
                                                 b_offset=4),)).layers[0]
    out = reference.layer_output(qk, [qkv, qkv], {}, np.float64)
    for w, h, m, n in ((2, 1, 4, 5), (0, 0, 0, 3)):
        want = qkv[m, w, 2 * h:2 * h + 2] @ qkv[n, w, 4 + 2 * h:4 + 2 * h + 2]
        assert out[m, w, h * 6 + n] == pytest.approx(want)
    sm = Model("m", "full", (2, 2, 6), (Softmax("s", E, inputs=(INPUT,), row=3),)).layers[0]
    p = reference.layer_output(sm, [rng.normal(size=(2, 2, 6))], {}, np.float64)
    np.testing.assert_allclose(p.reshape(-1, 3).sum(-1), 1)
    table = rng.normal(size=(1, 1, 3))
    add = Model("m", "full", (2, 2, 6), (Constant("t", E, (1, 1, 3)), Add("a", E, inputs=(INPUT, "t")))).layers[1]
    x = rng.normal(size=(2, 2, 6))
    np.testing.assert_allclose(reference.layer_output(add, [x, table], {}, np.float64),
                               x + np.concatenate([table, table], axis=-1))


def test_shifted_window_attention_matches_swins_code(swin_block):
    model, weights, image = swin_block
    outs = dict(reference.run_float(model, weights, image, dtype=np.float64, keep=lambda n: True))
    np.testing.assert_allclose(outs["add1"], swin_attention_transcribed(image.astype(np.float64), weights),
                               rtol=1e-10, atol=1e-12)
    f32 = dict(reference.run_float(model, weights, image))
    assert f32["gelu"].dtype == np.float32
    np.testing.assert_allclose(f32["gelu"], outs["gelu"], rtol=1e-4, atol=1e-5)


def test_dead_tensors_are_dropped_and_bad_inputs_refused(swin_block):
    model, weights, image = swin_block
    names = [n for n, _ in reference.run_float(model, weights, image)]
    assert names == [layer.name for layer in model.layers]
    with pytest.raises(ValueError, match=r"the image has shape 10x9x8, the model takes 10x10x8"):
        next(reference.run_float(model, weights, image[:, :9]))
    anchor = build_model("anchor_detr", size=(32, 32))
    with pytest.raises(ValueError, match=r"av_(row|col): an opaque product"):
        for _ in reference.run_float(anchor, init_weights(anchor, 0, fold=False), calibration_image(32, 32)):
            pass


def test_views_agree_with_the_golden_integer_model(swin_block):
    """Data movement, product operands and broadcasting: the same element for element, int8 in."""
    model, _, _ = swin_block
    rng = np.random.default_rng(5)
    identity = {"add": QLayer(1.0, params=ops.AddParams(1, 1, 0)),
                "matmul": QLayer(1.0, bias=0, mult=1, shift=0)}
    checked = set()
    for layer in model.layers:
        if layer.kind not in KEEPS_SCALE - {"relu", "resize", "pool"} | {"add", "matmul"}:
            continue
        small = layer.kind in ("add", "matmul")          # no saturation: sums of a few small values
        ins = [rng.integers(-2 if small else -128, 3 if small else 128, s).astype(np.int8) for s in layer.in_shapes]
        if layer.kind == "matmul":
            identity["matmul"] = QLayer(1.0, bias=np.zeros(layer.batch * layer.n, np.int64),
                                        mult=np.ones(layer.batch * layer.n, np.int64),
                                        shift=np.zeros(layer.batch * layer.n, np.int64))
            ins = [np.clip(t, -1, 1).astype(np.int8) for t in ins]
        want = golden_layer(layer, ins, identity.get(layer.kind, QLayer(1.0)))
        got = reference.layer_output(layer, [t.astype(np.float64) for t in ins], {}, np.float64)
        np.testing.assert_array_equal(got, want.astype(np.float64), err_msg=layer.name)
        checked.add(layer.kind)
    assert checked == {"pad", "roll", "window_partition", "add", "matmul", "window_reverse", "crop", "patch_merge"}


# ---- calibration ------------------------------------------------------------------------------------

def test_requantisation_multipliers():
    mult, shift = requant_params([0.5, 0.999989, 3e-5, 1000.0, 2.0 ** -40])
    assert np.all(mult < 1 << 16) and np.all(shift >= 0) and np.all(shift <= 47)
    assert np.all(mult[:4] >= 1 << 15)                       # 16 significant bits
    np.testing.assert_allclose(mult / 2.0 ** shift, [0.5, 0.999989, 3e-5, 1000.0, 2.0 ** -40], rtol=2 ** -15)
    assert shift[4] == 47
    with pytest.raises(ValueError, match="too large"):
        requant_params([70000.0])
    with pytest.raises(ValueError, match="positive and finite"):
        requant_params([0.0])
    # a ratio just below a power of two keeps 16 bits (hw.operators' shift search)
    assert ops.add_params(1.0, 0.5, 1 / 0.999989) == ops.AddParams(65535, 32768, 16)


def test_weights_quantise_per_channel_symmetrically():
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.5, -0.01]])
    q, s = quantize_weights(w)
    np.testing.assert_array_equal(np.abs(q).max(axis=1), [127, 0, 127])
    np.testing.assert_allclose(s, [1 / 127, 1.0, 3 / 127])
    assert np.all(np.abs(q * s[:, None] - w) <= s[:, None] / 2 + 1e-12)


def test_softmax_inputs_keep_only_the_range_that_matters():
    sm = Softmax("s", E, inputs=("x",), row=49)
    object.__setattr__(sm, "out_shape", (49, 1, 49))
    y = np.random.default_rng(0).normal(0, 0.5, (49, 1, 49))           # every value within T of its row's max
    masked = y.copy()
    masked[:, :, 20:] -= 100
    plain = tensor_range(y, [sm])
    assert plain == pytest.approx(np.abs(y).max())           # nothing to gain: max-abs
    r = tensor_range(masked, [sm])
    assert r < 20 and r >= masked.max()                      # -100 saturates, the row maxima stay
    assert tensor_range(masked, [sm, LayerNorm("n", E, inputs=("x",))]) == pytest.approx(np.abs(masked).max())


@pytest.mark.parametrize("func, params", [("rsqrt", (1e-24,)), ("rsqrt", (1e-5,)), ("reciprocal", ()),
                                          ("pow", (-0.75,))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_pole_table_s_range_leaves_out_only_the_inputs_that_are_0(func, params, dtype):
    """A factor ``1/sqrt(x + eps)``, ``1/x`` or ``x ** -a``: inputs that are 0 up to the rounding of
    their float type (a row of zeros, or p 1's 1e-24 added to it) do not set its range, which their
    values (``1/sqrt(eps)``) would make useless; every other input does, however small (a row of a
    thousandth of the largest: max-abs, as any tensor), and all do when all are 0."""
    table = Activation("f", E, func, ("x",), params=params)
    f = lambda v: np.abs(float_activation(func, v, params))
    assert has_pole_at_zero(table)
    x = np.array([1e-3, 0.3, 1.0], dtype)
    assert pole_table_range(x, f(x), []) == pytest.approx(f(x).max())             # nothing is 0: max-abs
    zero_rows = np.concatenate([[0.0, 1e-24], x]).astype(dtype)
    assert pole_table_range(zero_rows, f(zero_rows), []) == pytest.approx(f(x).max())
    assert pole_table_range(zero_rows, f(zero_rows), [], 50.0) == pytest.approx(
        np.percentile(np.where(zero_rows > 1e-20, f(zero_rows), 0), 50.0))        # the percentile rule alike
    rounding = np.append(x, 2 * np.finfo(dtype).eps).astype(dtype)                # not 0 at its precision
    assert pole_table_range(rounding, f(rounding), []) == pytest.approx(float(f(rounding).max()))
    zeros = np.zeros(4, dtype)
    assert pole_table_range(zeros, f(zeros), []) == pytest.approx(float(f(zeros).max()))      # all: max-abs


@pytest.mark.parametrize("func, params", [("pow", (2.0,)), ("pow", (0.5,)), ("sqrt", ()), ("log", ()), ("exp", ())])
def test_tables_without_a_pole_at_0_are_calibrated_as_any_tensor(func, params):
    assert not has_pole_at_zero(Activation("f", E, func, ("x",), params=params))


def _check_qmodel(q):
    """The hardware program's constraints, and the parameters' ranges."""
    check_constraints(q)
    model = q.model
    groups = scale_groups(model)
    for layer in model.layers:
        ql = q.layers[layer.name]
        if layer.kind in KEEPS_SCALE:
            assert all(groups[n] == groups[layer.name] for n in layer.inputs)
        if layer.kind == "constant":
            assert ql.data.shape == layer.out_shape
            assert np.abs(ql.data).max() in (0, 127) or groups[layer.name] != layer.name
        if layer.kind in ("conv2d", "linear", "matmul"):
            assert np.all(ql.mult >= 1 << 15) and np.all(ql.mult < 1 << 16) and np.all(ql.shift <= 47)
            assert np.abs(ql.bias).max() < 1 << 31
            if layer.kind != "matmul":
                assert ql.weight.dtype == np.int8 and np.abs(ql.weight).max() == 127


def test_constraint_violations_are_named(swin_block):
    model, weights, image = swin_block
    q = quantize(model, weights, image)
    q.layers["crop"].scale *= 2
    with pytest.raises(ValueError, match="crop: a crop layer must keep its inputs' scale"):
        check_constraints(q)
    q = quantize(model, weights, image)
    q.layers["softmax"].scale = 1 / 64
    with pytest.raises(ValueError, match=r"softmax: a softmax's output scale must be 2\*\*-\d+"):
        check_constraints(q)


@pytest.fixture(scope="module")
def b0():
    model = build_model("segformer_b0", size=(64, 64))
    weights, q = prepare(model, seed=0)
    return model, weights, q


def test_calibration_constraints_hold(b0, swin_block):
    _check_qmodel(b0[2])
    model, weights, image = swin_block
    q = quantize(model, weights, image)
    _check_qmodel(q)
    assert q.layers["mask.table"].data.min() == -127                 # the mask's -100, per tensor
    resnet = build_model("resnet50", size=(32, 32))
    _check_qmodel(prepare(resnet, 0)[1])


def test_requantisation_follows_the_scales(b0):
    model, weights, q = b0
    fuse = model.layer("Conv2DFuse")
    ql, s_in = q.layers[fuse.name], q.scale(fuse.inputs[0])
    wq, s_w = quantize_weights(weights[fuse.name]["weight"])
    np.testing.assert_array_equal(ql.weight, wq)
    np.testing.assert_allclose(ql.mult / 2.0 ** ql.shift, s_in * s_w / ql.scale, rtol=2 ** -15)
    np.testing.assert_allclose(ql.bias * s_in * s_w, weights[fuse.name]["bias"], atol=float((s_in * s_w).max()))
    cat = model.layer("DecodeConcat")
    assert len({q.scale(n) for n in cat.inputs}) == 1 and q.scale(cat.name) == q.scale(cat.inputs[0])


def test_prepare_equals_init_then_quantize(b0):
    model, weights, q = b0
    calib = calibration_image(64, 64, 0)
    w2 = init_weights(model, 0, calib)
    q2 = quantize(model, w2, calib)
    np.testing.assert_allclose(weights["Conv2DFuse"]["weight"], w2["Conv2DFuse"]["weight"], rtol=1e-5)
    for name in ("Conv2DFuse", "stage3.block1.attn.softmax", "DecodeConcat", "resize_logits"):
        assert q.layers[name].scale == pytest.approx(q2.layers[name].scale, rel=1e-5)


def test_conflicting_fixed_scales_are_refused():
    model = Model("m", "full", (2, 2, 4), (Softmax("s", E, inputs=(INPUT,), row=4),
                                          Concat("c", E, inputs=(INPUT, "s")),
                                          Activation("r", E, "relu", inputs=("c",))))
    with pytest.raises(ValueError, match="must share a scale but both are fixed"):
        assign_scales(model, {"s": 1.0, "c": 1.0})


def _detect_like(read: bool) -> tuple[Model, dict]:
    """Two levels (4x4 and 2x2 pixels) of boxes in hundreds beside sigmoids in 0..1, each level's
    channels concatenated, the levels' pixels concatenated (YOLOv5's decode); ``read``: a ReLU reads
    the concatenation of levels, so the accelerator needs it at one scale."""
    layers = []
    for i, (size, stride) in enumerate(((4, 2), (2, 4))):
        layers += [Conv2d(f"box{i}", E, 3, 4, 8, 8, kernel=(stride, stride), stride=stride, inputs=(INPUT,)),
                   Conv2d(f"logit{i}", E, 3, 3, 8, 8, kernel=(stride, stride), stride=stride, inputs=(INPUT,)),
                   Activation(f"conf{i}", E, "sigmoid", inputs=(f"logit{i}",)),
                   Concat(f"level{i}", E, inputs=(f"box{i}", f"conf{i}"))]
    layers.append(Concat("levels", E, inputs=("level0", "level1"), along="pixels"))
    model = Model("detect", "full", (8, 8, 3), tuple(layers + [Activation("r", E, "relu", inputs=("levels",))] * read))
    weights = init_weights(model, seed=1)
    for i in range(2):
        weights[f"box{i}"]["bias"] = np.full(4, 300.0 * (i + 1), np.float32)   # pixels, per level
    return model, weights


def test_a_concatenation_only_the_host_reads_keeps_its_parts_scales():
    """YOLO's output: boxes of hundreds of pixels and confidences in 0..1 concatenated; each part keeps
    its own scale where it is written (the levels' own too), the output records each element's, and
    dequantised with them the confidences keep their resolution (with one scale, a step of about
    5 px, every one of them would be 0)."""
    model, weights = _detect_like(read=False)
    image = np.random.default_rng(0).normal(0, 1, (8, 8, 3)).astype(np.float32)
    q = quantize(model, weights, image)
    check_constraints(q)
    levels = q.layers["levels"]
    assert levels.part_scales.shape == (20, 1, 7)                  # varies with the pixel's level and the channel
    scales = np.broadcast_to(q.scales("levels"), (20, 1, 7))
    for i, rows in enumerate((slice(0, 16), slice(16, 20))):
        assert np.all(scales[rows, :, :4] == q.scale(f"box{i}")) and np.all(scales[rows, :, 4:] == q.scale(f"conf{i}"))
    assert q.scale("conf0") < q.scale("box0") / 100 and levels.scale == q.scale("box1")
    floats = dict(reference.run_float(model, weights, image))
    ints = dict(run_network(q, quantize_input(image)))
    got = q.dequantise("levels", ints["levels"])
    step = max(q.scale("conf0"), q.scale("conf1"))
    assert np.abs(got[..., 4:] - floats["levels"][..., 4:]).max() <= step           # each conf within a step
    assert np.abs(got[..., :4] - floats["levels"][..., :4]).max() <= 2 * q.scale("box1")
    report = accuracy.compare(q, weights, image)
    assert [e.sqnr_db for e in report.layers if e.name == "levels"][0] > 30


def test_a_concatenation_a_layer_reads_keeps_one_scale():
    """The accelerator's operators take one scale a tensor: a concatenation a layer reads ties its
    parts as before, and a tensor of per-part scales that a layer reads is refused by name."""
    model, weights = _detect_like(read=True)
    image = np.random.default_rng(0).normal(0, 1, (8, 8, 3)).astype(np.float32)
    q = quantize(model, weights, image)
    assert all(ql.part_scales is None for ql in q.layers.values())
    assert len({q.scale(n) for n in ("box0", "conf0", "box1", "conf1", "levels", "r")}) == 1
    free = quantize(_detect_like(read=False)[0], weights, image)
    q.layers["levels"] = free.layers["levels"]
    for i in range(2):
        q.layers[f"level{i}"], q.layers[f"conf{i}"], q.layers[f"box{i}"] = (
            free.layers[f"level{i}"], free.layers[f"conf{i}"], free.layers[f"box{i}"])
    with pytest.raises(ValueError, match="levels: its parts keep scales of their own, but 'r' reads it as one tensor"):
        check_constraints(q)


# ---- the error report -------------------------------------------------------------------------------

def test_sqnr():
    f = np.array([3.0, -4.0])
    assert accuracy.sqnr_db(f, np.array([3, -4]), 1.0) == math.inf
    assert accuracy.sqnr_db(f, np.array([6, -8]), 0.5) == math.inf
    assert accuracy.sqnr_db(f, np.array([3, -3]), 1.0) == pytest.approx(10 * math.log10(25))
    masked = np.array([5.0, -100.0, 1.0])                      # rows of 3 read by a softmax
    assert accuracy.sqnr_db(masked, np.array([5.0, -12.0, 1.0]), 1.0, row=3) == math.inf


def test_segformer_b0_agrees_with_its_float_reference(b0):
    """Stated bounds, measured 26.8 dB median, 23.4 dB at the output, 89 % of pixels (see
    docs/quantization.md); a wrong scale, weight layout or parameter drops them far below."""
    model, weights, q = b0
    report = accuracy.compare(q, weights, preprocess(synthetic_image(64, 64, 0)))
    assert report.task == "segmentation" and [e.name for e in report.layers] == [l.name for l in model.layers]
    sqnr = [e.sqnr_db for e in report.layers if e.kind != "constant"]
    assert np.median(sqnr) > 22
    assert report.layers[-1].sqnr_db > 18
    assert report.worst.sqnr_db == min(sqnr) and report.worst.sqnr_db > 10
    assert report.output["pixel_agreement"] > 0.8


def test_another_networks_agreement_is_its_outputs_sqnr_and_correlation():
    """A network that is neither segmentation, classification nor detection (an ONNX file's
    features): the worst SQNR and correlation over its outputs; ``{}`` before (no output was kept)."""
    from mapper.onnx_import import import_onnx
    from onnx_graphs import elementwise_math

    imp = import_onnx(elementwise_math("exp"), "exp")
    image = preprocess(synthetic_image(8, 8, 0))
    q = quantize(imp.model, imp.weights, image)
    report = accuracy.compare(q, imp.weights, image)
    assert report.task == "other" and set(report.output) == {"sqnr_db", "correlation"}
    assert report.output["sqnr_db"] == pytest.approx(report.layers[-1].sqnr_db) and report.output["sqnr_db"] > 25
    assert 0.999 < report.output["correlation"] <= 1


def test_local_and_input_only_errors(swin_block):
    model, weights, image = swin_block
    q = quantize(model, weights, image)
    report = accuracy.compare(q, weights, image, local=True, baseline=True)
    by = {e.name: e for e in report.layers}
    assert by["norm1"].local_db == by["norm1"].sqnr_db            # its input, the image, is the int8 input
    assert by["pad"].local_db > by["pad"].sqnr_db                 # only its input's rounding, nothing upstream
    assert by["norm1"].input_db > by["norm1"].sqnr_db             # int8 adds error to the input's rounding
    assert all(e.local_db > 15 for e in report.layers if e.kind != "constant")
    assert report.to_json()["layers"][0]["name"] == "norm1"


def test_classification_and_detection_reports():
    resnet = build_model("resnet50", size=(32, 32))
    w, q = prepare(resnet, 0)
    out = accuracy.compare(q, w, preprocess(synthetic_image(32, 32, 3))).output
    assert set(out) == {"top1_agrees", "top5_overlap"} and 0 <= out["top5_overlap"] <= 1
    detr = build_model("detr", size=(32, 32))
    w, q = prepare(detr, 0)
    report = accuracy.compare(q, w, preprocess(synthetic_image(32, 32, 3)))
    assert report.task == "detection" and 0 <= report.output["query_class_agreement"] <= 1
    assert 0 <= report.output["box_l1"] < 0.1


def test_accuracy_command_line(tmp_path, capsys):
    out = tmp_path / "b0.json"
    assert accuracy.main(["--model", "segformer_b0", "--size", "64x64", "--output", str(out), "--worst", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["size"] == [64, 64] and doc["images"][0]["output"]["pixel_agreement"] > 0.8
    assert "pixel_agreement" in capsys.readouterr().out
    for argv, message in ((["--model", "segformer_b0", "--output", str(out)], "exists"),
                          (["--model", "segformer_b0", "--size", "64"], "size must be HxW"),
                          (["--model", "nope"], "unknown model 'nope'"),
                          (["--model", "anchor_detr", "--size", "64x64"], "opaque product"),
                          (["--model", "segformer_b0", "--percentile", "20"], "--percentile")):
        with pytest.raises(SystemExit) as e:
            accuracy.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert json.loads(out.read_text()) == doc                         # never overwritten


def test_accuracy_over_several_images_ends_with_their_median_and_worst(tmp_path, capsys):
    """``--images 4`` printed (and wrote) the four images' reports only; a summary gives each figure's
    median and worst over them, in the text and in the JSON."""
    out = tmp_path / "b0.json"
    assert accuracy.main(["--model", "segformer_b0", "--size", "32x32", "--images", "3", "--worst", "1",
                          "--output", str(out)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    per_image = [[l["sqnr_db"] for l in im["layers"] if l["kind"] != "constant" and l["sqnr_db"] is not None]
                 for im in doc["images"]]
    agreement = [im["output"]["pixel_agreement"] for im in doc["images"]]
    summary = doc["summary"]
    assert summary["pixel_agreement"] == {"median": pytest.approx(np.median(agreement)), "worst": min(agreement)}
    assert summary["layer_sqnr_min_db"]["worst"] == pytest.approx(min(min(v) for v in per_image))
    assert summary["layer_sqnr_median_db"]["median"] == pytest.approx(np.median([np.median(v) for v in per_image]))
    assert set(summary) == {"layer_sqnr_median_db", "layer_sqnr_min_db", "output_sqnr_db", "pixel_agreement"}
    tail = text[text.index("-- over 3 images: median and worst"):].splitlines()[1:]
    assert [line.split(":")[0] for line in tail] == list(summary), tail
    assert tail[-1] == (f"pixel_agreement: median {summary['pixel_agreement']['median']:.4f}, "
                        f"worst {summary['pixel_agreement']['worst']:.4f}")
    # the worst of a figure where more is worse is its largest
    figures = [{"box_l1": 0.1, "sqnr": 20.0}, {"box_l1": 0.3, "sqnr": 10.0}]
    assert accuracy.summarise(figures) == {"box_l1": {"median": pytest.approx(0.2), "worst": 0.3},
                                           "sqnr": {"median": 15.0, "worst": 10.0}}


def test_softmax_output_shift_holds_the_largest_probability():
    from mapper.calibrate import softmax_out_shift
    assert softmax_out_shift(0.99) == 7 and softmax_out_shift(0.5) == 7
    assert softmax_out_shift(0.2) == 9            # 0.2 * 512 = 102 <= 127 < 0.2 * 1024
    assert softmax_out_shift(1e-6) == 14 and softmax_out_shift(0.0) == 14


def test_agreement_of_outputs_is_finite_json_for_equal_and_for_huge_outputs():
    """Outputs equal to the float ones have no noise (SQNR inf), float zeros beside noise none of
    signal (-inf): both are null in JSON, which has no Infinity (``run.json`` held one); outputs
    near 1e30 kept their correlation (float32 squares overflowed to 0.0 beside an SQNR of 45 dB)."""
    import json

    model = Model("m", "full", (1, 1, 128), (Activation("out", E, "relu", inputs=(INPUT,)),))
    qmodel = QModel(model, 1.0, {"out": QLayer(scale=1.0)})      # only the output's scale is read
    f = {"out": np.arange(-64, 64, dtype=np.float32)}
    q = {"out": np.arange(-64, 64).astype(np.int8)}
    exact = accuracy._values_agreement(f, q, qmodel)
    assert exact["sqnr_db"] == np.inf and exact["correlation"] == pytest.approx(1.0)
    silent = accuracy._values_agreement({"out": np.zeros(128, np.float32)}, q, qmodel)
    assert silent["sqnr_db"] == -np.inf and silent["correlation"] == 0.0       # the worst: not "equal"
    report = accuracy.AccuracyReport("m", "other", [], None, silent)
    assert json.loads(json.dumps(report.to_json(), allow_nan=False))["output"]["sqnr_db"] is None
    big = {"out": f["out"] * np.float32(1e30)}
    worst = accuracy._correlation(big["out"], q["out"].astype(np.float64) * 1e30)
    assert worst == pytest.approx(1.0)
