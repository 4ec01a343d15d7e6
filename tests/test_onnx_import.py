"""ONNX import (mapper.onnx_import): graphs written as PyTorch's exporter writes them become IR layers
with their weights; MACs against counts made here by hand; the float reference of the imported model
against onnxruntime on the file; QDQ scales; one-line refusals; MODEL=file.onnx on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mapper import onnx_layout as L
from mapper import reference
from mapper.float_ops import ACTIVATIONS
from mapper.ir import MAC_KINDS, Conv2d, Linear, Model, ShapeError
from mapper.onnx_import import OnnxImportError, import_onnx, load_onnx, qdq_qmodel

from onnx_graphs import (Graph, align_corners_resize, activation_graph, mode_pad, keras_nhwc, constant_channels, constant_pad, constant_pixels, constant_queries, context_block, mixer, radix_softmax, anchor_levels, c2f, cnn, constant_concat, conv_transpose, grouped_conv_transpose, cosine_attention, deeplab, depth_to_space, dense_classifier, dilated, elementwise_math, group_norm, channel_attention, coord_attention, eca, integral, split_attention, interleaved_attention, lrn, pre_activation, prelu, self_concat, shufflenet, spatial_slice, strided_conv, subtraction, unet, yolo_neck, image_input, masked_attention, out, qdq_cnn, single_op, uneven_conv,
                         space_to_depth, conformer_conv, wav2vec_features, sequence_conv, shared_kv_attention, spatial_attention,
                         cross_covariance_attention, dynamic_shape_tokens, elementwise_extreme, constant_where, resized_position_table, qk_norm_attention, rms_norm, computed_position_index, image_layernorm, lp_norm, dilated_max_pool, line_max, einsum_sum, vit, yolo_detect, yolo_v5_detect, pruned_channel)

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-4               # relative to the output's largest magnitude


def _max_rel_error(proto, imported, seed: int = 0) -> float:
    """Largest error of the float reference on the imported model against onnxruntime on the file,
    over every output, relative to the output's largest magnitude.  onnxruntime's graph optimisations
    are off: they fuse a DequantizeLinear and a MatMul into a product of requantised activations
    (3e-3 off the file's float semantics, helper-114), and an ``[A, K] @ [K]`` into a wrong one."""
    x = np.random.default_rng(seed).normal(size=imported.model.input).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {imported.input_name: L.gather(imported.input_view, x.ravel())})))
    ref = dict(reference.run_float(imported.model, imported.weights, x))
    return max(float(np.max(np.abs(L.gather(v, ref[v.source].ravel()) - got[name])) / np.max(np.abs(got[name])))
               for name, v in imported.outputs.items())


@pytest.mark.parametrize("scale_on", ["scores", "q"])
def test_vit_attention_scale_folded_macs_and_onnxruntime(scale_on):
    proto, macs = vit(scale_on=scale_on)
    imp = import_onnx(proto, "vit")
    kinds = Counter(l.kind for l in imp.model.layers)
    # 2 blocks: qkv, proj, fc1, fc2 linears each, the head; Q.K^T and A.V; no Mul: the scale is in the q rows
    assert kinds == {"conv2d": 1, "layernorm": 5, "linear": 9, "matmul": 4, "softmax": 2, "add": 4, "gelu": 2,
                     "pool": 1}
    assert imp.model.total_macs == macs
    qk = [l for l in imp.model.layers if l.kind == "matmul"][0]
    assert (qk.batch, qk.m, qk.k, qk.n, qk.b_layout, qk.b_offset) == (3, 16, 16, 16, "nk", 48)
    assert _max_rel_error(proto, imp) <= RTOL


def test_einsum_attention_imports_as_the_products_it_writes():
    """``torch.einsum``'s qkv projection and attention products (keys first, heads and tokens swapped
    in the output) import as the MatMul ViT's layers: the same products, MACs and float results."""
    proto, macs = vit(einsum=True)
    imp = import_onnx(proto, "vit_einsum")
    plain = import_onnx(vit()[0], "vit")
    assert Counter(l.kind for l in imp.model.layers) == Counter(l.kind for l in plain.model.layers)
    assert imp.model.total_macs == macs
    products = [(l.batch, l.m, l.k, l.n, l.b_layout) for l in imp.model.layers if l.kind == "matmul"]
    assert products == [(l.batch, l.m, l.k, l.n, l.b_layout) for l in plain.model.layers if l.kind == "matmul"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("kw, kinds", [
    ({"equation": "bnc->bn"}, ["linear"]), ({"equation": "...c->..."}, ["linear"]), ({"equation": "bnc->nb"}, ["linear"]),
    ({"equation": "bnc->bc"}, ["pool", "constant", "mul"]),
    ({"equation": "bchw->bhw", "tokens": False}, ["conv2d"]),
    ({"equation": "bchw->bcw", "tokens": False}, ["pool", "constant", "mul"]),
    ({"equation": "bchw->bch", "tokens": False, "c": 5, "size": (7, 3)}, ["pool", "constant", "mul"]),
    ({"equation": "bnc,kc->bk", "weight": (4, 8)}, ["pool", "constant", "mul", "linear"]),
    ({"equation": "bnc,ck->bnk", "weight": (8, 4)}, ["linear"])],
    ids=["channels", "channels_ellipsis", "channels_transposed", "tokens", "image_channels", "image_rows",
         "image_columns_odd", "tokens_then_product", "product_only"])
def test_an_einsum_summing_an_axis_of_one_operand_sums_it_first(kw, kinds):
    """``torch.einsum("bnc->bn", x)`` and the like were refused (a sum over one operand's axis): that
    axis is summed first, a ``ReduceSum`` (over channels a product by ones, over tokens, rows or
    columns a pooling and the count), then the rest of the equation (a transpose, a product).
    onnxruntime's numbers."""
    proto = einsum_sum(**kw)
    imp = import_onnx(proto, "einsum")
    assert [l.kind for l in imp.model.layers][1:] in (kinds, kinds + ["relu"])     # (a ReLU a linear takes)
    assert _max_rel_error(proto, imp) <= RTOL


def test_an_einsum_summing_an_axis_of_a_weight_sums_the_file_s_data():
    """``ij,jk->i``: ``k`` summed over the weight alone, here (the file's data), then a product by it."""
    g = Graph()
    w = g.weight("w", 4, 5)
    y = g.op("Einsum", [g.reshape("x", [4, 4]), w], "", equation="ij,jk->i")
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])], [out(y)])
    imp = import_onnx(proto, "einsum")
    (layer,) = imp.model.layers
    assert layer.kind == "linear" and (layer.in_features, layer.out_features) == (4, 1)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("equation, inputs, needles", [
    ("ii->i", [(4, 4)], ["repeats a letter", "each axis named once"]),
    ("ij->", [(4, 4)], ["sums every axis of operand 0 ('ij')", "supported: sums that keep an axis"]),
    ("ij,jk->ik", [(4, 4), (5, 4)], ["axis 'j' has sizes 4 and 5"]),
    ("ij,jk,kl->il", [(4, 4)] * 3, ["3 operands", "one or two"]),
    ("ijk,jk->ik", [(4, 4), (4, 4)], ["term 'ijk' does not match an operand of rank 2"]),
    ("ij,jk->iz", [(4, 4), (4, 4)], ["names a letter no operand has"]),
])
def test_einsum_equations_it_cannot_run_are_refused_in_one_line(equation, inputs, needles):
    g = Graph()
    weights = [g.weight(f"w{i}", *shape) for i, shape in enumerate(inputs[1:])]
    y = g.op("Einsum", [g.reshape("x", list(inputs[0])), *weights], "", equation=equation)
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *inputs[0]])], [out(y)])
    _refused(proto, "(Einsum)", *needles)


@pytest.mark.parametrize("kw", [{}, {"split": "slices", "scale_on": "sdpa"}, {"split": "gather", "scale_on": "q"},
                                {"key": 4, "value": 8, "scale_on": "sdpa"}, {"split": "slices", "key": 4, "value": 12},
                                {"key": 4, "value": 8, "norm": True}])
def test_q_k_v_interleaved_per_head_are_pulled_apart_by_reordering_the_qkv_rows(kw):
    """timm's AttentionCl, EfficientFormer and LeViT write ``[head][q k v][d]``; refused before (the
    products read K contiguous channels per head). The qkv linear's rows are reordered as the
    parts are split off: the same layers and MACs as a ViT's attention, onnxruntime's numbers. LeViT's
    BatchNorm1d after the qkv linear (through reshapes) folds into it first."""
    proto, macs = interleaved_attention(**kw)
    imp = import_onnx(proto, "interleaved")
    assert Counter(l.kind for l in imp.model.layers) == {"conv2d": 1, "linear": 3, "matmul": 2, "softmax": 1, "pool": 1}
    assert imp.model.total_macs == macs
    qk, av = [l for l in imp.model.layers if l.kind == "matmul"]
    key, value = kw.get("key", 8), kw.get("value", 8)
    assert (qk.batch, qk.k, qk.a_offset, qk.b_offset, av.b_offset) == (3, key, 0, 3 * key, 6 * key)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("kv_heads, form, products", [
    (1, "expand", [(0, 4)]), (2, "expand", [(0, 2)]), (1, "broadcast", [(0, 4)]), (2, "tile", [(0, 1), (0, 1)])])
def test_multi_and_grouped_query_attention_read_the_shared_kv_heads_where_they_are(kv_heads, form, products):
    """MQA and GQA (refused before: the q heads' k and v repeated by an Expand, a Tile or the product's
    broadcast were not laid out per head): consecutive q heads sharing a kv head are one product
    reading each kv head ``b_repeat`` times where it is (an Expand's, the broadcast's); where the
    shared heads do not follow each other (a Tile's: kv head ``h % kv_heads``), one product per run
    of q heads whose kv heads are consecutive channels, concatenated along the channels.  The
    attention scale still folds into q.  The MACs counted by hand, onnxruntime's numbers."""
    proto, macs = shared_kv_attention(kv_heads=kv_heads, form=form)
    imp = import_onnx(proto, "gqa")
    kinds = Counter(l.kind for l in imp.model.layers)
    runs = len(products) > 1
    assert kinds == {"conv2d": 1, "linear": 5, "matmul": 2 * len(products), "softmax": 1, "pool": 1,
                     **({"concat": 2} if runs else {})}
    assert imp.model.total_macs == macs
    qk = [l for l in imp.model.layers if l.kind == "matmul" and l.b_layout == "nk"]
    assert sum(l.batch for l in qk) == 4 and all(l.inputs[1] == qk[0].inputs[1] for l in qk)
    assert [(l.b_offset, l.b_repeat) for l in qk] == products
    assert _max_rel_error(proto, imp) <= RTOL


def test_xcit_s_cross_covariance_attention_transposes_q_per_head_and_matches_onnxruntime():
    """XCiT's attention over channels (refused before: ``q @ k^T`` of ``[heads, d, N]`` views sums over
    the tokens, which no product reads as its first operand's columns): q is transposed per head by
    a product of an identity Constant (``d x d x N`` MACs a head, counted on top of the file's), then
    multiplied by k read as values; ``attn @ v``, permuted to tokens after, is computed transposed so
    its rows are the tokens the projection reads.  The temperature per head is a product by a
    constant; onnxruntime's numbers."""
    proto, macs = cross_covariance_attention(heads=3, dim=24)
    imp = import_onnx(proto, "xca")
    products = [l for l in imp.model.layers if l.kind == "matmul"]
    assert [(p.batch, p.m, p.k, p.n, p.b_layout) for p in products] == [(3, 8, 8, 16, "nk"), (3, 8, 16, 8, "kn"),
                                                                         (3, 16, 8, 8, "nk")]
    assert imp.model.layer(products[0].inputs[0]).kind == "constant"
    assert imp.model.total_macs == macs + 3 * 8 * 8 * 16
    assert _max_rel_error(proto, imp) <= RTOL


def test_more_shared_head_products_than_the_limit_are_refused_in_one_line():
    """GQA of 130 heads whose 2 kv heads a Tile repeats (kv head ``h % 2``) is 65 runs of 2 heads,
    65 products a node, beyond SHARED_HEADS_MAX_PRODUCTS: refused, saying so."""
    with pytest.raises(OnnxImportError, match=r"\(MatMul\): 130 heads that share .* more than 64 products"):
        import_onnx(shared_kv_attention(kv_heads=2, heads=130, dim=130, form="tile")[0], "gqa130")


def test_multi_query_attention_of_65_heads_is_one_product_a_matmul():
    """MQA of 65 heads (refused before as 65 products, over the limit): its products read their one
    key and value head 65 times each."""
    proto, _ = shared_kv_attention(kv_heads=1, heads=65, dim=65, form="broadcast")
    imp = import_onnx(proto, "mqa65")
    products = [l for l in imp.model.layers if l.kind == "matmul"]
    assert [(p.batch, p.b_repeat) for p in products] == [(65, 65), (65, 65)]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_product_of_items_that_share_no_operand_is_still_refused_for_its_layout():
    """Shared heads are split into runs only where an operand repeats: k transposed twice (its head
    dimension along the tokens) is no layout any product reads, one line as before."""
    g = Graph(3)
    x = g.op("Transpose", [g.reshape("input", [1, 8, 16])], "", perm=[0, 2, 1])
    q = g.op("Transpose", [g.reshape(g.linear(x, 8, 8, "/q"), [1, 16, 2, 4])], "", perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.reshape(g.linear(x, 8, 8, "/k"), [1, 16, 2, 4])], "", perm=[0, 2, 3, 1])
    k = g.op("Transpose", [g.reshape(k, [1, 2, 16, 4])], "", perm=[0, 1, 3, 2])
    proto = g.model([image_input(8, 4, 4, "input")], [out(g.op("MatMul", [q, k], "/attn"))])
    with pytest.raises(OnnxImportError, match=r"\(MatMul\): its operands are not laid out as the IR's products"):
        import_onnx(proto, "scrambled")


def test_a_batchnorm_after_a_relu_of_a_convolution_is_not_folded_into_it():
    """Conv, ReLU (folded into the convolution), BatchNormalization: a fold of the norm too would
    compute relu(x * a + b) (an error of 110 % found in review); it stays a product and an add."""
    g = Graph(45)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)], "")
    stats = [g.rng.uniform(-1.5, 1.5, 8), g.rng.normal(0, 0.5, 8), g.rng.normal(0, 0.5, 8), g.rng.uniform(0.5, 2, 8)]
    y = g.op("BatchNormalization", [x] + [g.init(f"bn.{k}", v.astype(np.float32))
                                          for k, v in zip(("weight", "bias", "mean", "var"), stats)], "/bn")
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op("Conv", [y, g.weight("w2", 4, 8, 1, 1)], "",
                                                                   kernel_shape=[1, 1]))])
    imp = import_onnx(proto, "relu_bn")
    assert [l.kind for l in imp.model.layers][:2] == ["conv2d", "constant"] and imp.model.layers[0].relu
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("read_twice, relu", [(False, False), (True, False), (False, True)])
def test_a_batchnorm_of_a_linear_output_through_reshapes_folds_into_it_unless_read_elsewhere(read_twice, relu):
    """LeViT's LinearNorm (a linear, a reshape to [N, C], BatchNorm1d, a reshape back) folds into the
    linear; with the unnormalised output read too (a graph output here), which the fold would change,
    or a ReLU folded into the linear before the norm (relu(x) * a + b is no relu(x * a + b)), the norm
    stays a product and an add."""
    g = Graph(37)
    x = g.op("Transpose", [g.reshape(g.op("Conv", ["pixel_values", g.weight("w", 8, 3, 4, 4)], "", kernel_shape=[4, 4],
                                            strides=[4, 4]), [1, 8, 16])], "", perm=[0, 2, 1])
    y = g.linear(x, 8, 12, "/fc", bias=False)
    y = g.op("Relu", [y], "/fc") if relu else y
    stats = [g.rng.uniform(-1.5, 1.5, 12), g.rng.normal(0, 0.1, 12), g.rng.normal(0, 0.1, 12), g.rng.uniform(0.5, 2, 12)]
    bn = g.op("BatchNormalization", [g.reshape(y, [16, 12])] + [g.init(f"bn.{k}", v.astype(np.float32)) for k, v in
                                                                zip(("weight", "bias", "mean", "var"), stats)], "/bn")
    outs = [out(g.reshape(bn, [1, 16, 12]))] + ([helper.make_tensor_value_info(y, TensorProto.FLOAT, None)] if read_twice else [])
    proto = g.model([image_input(3, 16, 16)], outs)
    imp = import_onnx(proto, "linear_norm")
    kinds = [l.kind for l in imp.model.layers]
    kept = read_twice or relu
    assert kinds == (["conv2d", "linear", "constant", "mul", "constant", "add"] if kept else ["conv2d", "linear"])
    assert imp.model.layers[1].bias is not kept and imp.model.layers[1].relu is relu
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_strided_slice_of_channels_does_not_reorder_its_producer():
    """``x[:, ::2]`` of a convolution's output holds every other channel, as a head's q would, but
    along no axis of heads: the convolution keeps its order (a reorder made every other reader of
    it copy its channels back, found in review)."""
    g = Graph(47)
    x = g.op("Conv", ["input", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    half = g.op("Slice", [x, g.const([0]), g.const([8]), g.const([1]), g.const([2])], "")
    pooled = g.op("GlobalAveragePool", [x], "")
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op("Conv", [half, g.weight("w2", 4, 4, 1, 1)], "",
                                                                      kernel_shape=[1, 1])), out(pooled)])
    imp = import_onnx(proto, "strided")
    assert "channel_shuffle" not in [l.kind for l in imp.model.layers]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("radix", [2, 3])
def test_a_softmax_over_branches_is_a_channel_shuffle_then_slices_of_the_weights(radix):
    """SKNet's softmax over ``[1, radix, C, 1, 1]``'s axis 1, refused before: the logits' convolution
    writes each channel's branches consecutively (its rows reordered: a softmax row), the weights are
    shuffled back and each branch's read through a channel slice of them (no copy)."""
    proto = split_attention(radix=radix)
    imp = import_onnx(proto, "sk")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds.count("channel_shuffle") == 1 and kinds.count("channel_slice") == radix
    assert next(l for l in imp.model.layers if l.kind == "softmax").row == radix
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("case, needle", [("flip", "read their tensors' elements in different orders"),
                                           ("even_odd", "as a strided or reordered view of its tensor")])
def test_a_sum_of_reordered_channels_is_refused_for_what_it_is(case, needle):
    """``x + x[:, ::-1]`` was refused as a broadcast and ``x[:, ::2] + x[:, 1::2]`` as inputs without
    the output's shape (helper-114): both are views in another order."""
    g = Graph(48)
    x = g.op("Conv", ["input", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    if case == "flip":
        a, b = x, g.op("Slice", [x, g.const([-1]), g.const([-2 ** 62]), g.const([1]), g.const([-1])], "")
    else:
        a, b = (g.op("Slice", [x, g.const([k]), g.const([8]), g.const([1]), g.const([2])], "") for k in (0, 1))
    _refused(g.model([image_input(3, 4, 4, "input")], [out(g.op("Add", [a, b], ""))]), "(Add)", needle)


def test_interleaved_heads_already_read_whole_stay_where_they_are():
    """A qkv output that a layer reads before it is split keeps its channel order (that layer's
    reads are fixed): the product is refused, one line, rather than computed on moved channels."""
    proto, _ = interleaved_attention()
    graph = proto.graph
    qkv = next(n for n in graph.node if n.op_type == "Add" and "qkv" in n.name).output[0]
    relu = helper.make_node("Relu", [qkv], ["early"], name="early_reader")
    graph.node.insert([n.output[0] for n in graph.node].index(qkv) + 1, relu)
    graph.output.append(helper.make_tensor_value_info("early", TensorProto.FLOAT, None))
    _refused(proto, "(MatMul)", "per head, K contiguous channels")


def test_a_class_token_is_a_constant_part_of_a_concatenation_of_pixels():
    """The class token, then the patches' 16 tokens, in one column: a concatenation of pixels whose
    first part is a Constant, static data in its buffer (before, a window partition, a padding, a
    roll and an add moved the patches)."""
    proto, macs = vit(cls_token=True)
    imp = import_onnx(proto, "vit_cls")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds[1:3] == ["constant", "concat"] and imp.model.layers[2].along == "pixels"
    assert imp.model.layers[2].out_shape == (17, 1, 48)
    assert kinds[-2:] == ["pixel_reshape", "linear"]        # the head reads the class token alone, in place
    assert imp.model.total_macs == macs
    assert _max_rel_error(proto, imp) <= RTOL


def test_scale_read_elsewhere_is_a_layer_not_a_fold():
    """q feeds the product and an output of its own: its rows cannot carry the scale."""
    g = Graph(3)
    x = g.reshape(g.op("Conv", ["pixel_values", g.weight("w", 8, 3, 4, 4)], "/embed", kernel_shape=[4, 4],
                       strides=[4, 4]), [1, 8, 4], "/embed")
    x = g.op("Transpose", [x], "/embed", perm=[0, 2, 1])
    q = g.linear(x, 8, 8, "/q")
    k = g.linear(x, 8, 8, "/k")
    s = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], "", perm=[0, 2, 1])], ""),
                     g.const(np.float32(0.3), np.float32)], "")
    proto = g.model([image_input(3, 8, 8)], [out(g.op("Softmax", [s], "", axis=-1)), out(q)])
    imp = import_onnx(proto, "twice")
    assert Counter(l.kind for l in imp.model.layers)["mul"] == 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("scale", [0.5, 0.0, -2.0, 3.0])
def test_a_scale_whose_input_a_layer_also_reads_unscaled_is_a_layer_not_a_fold(scale):
    """y = conv(x) * s + conv(x): the Add reads the conv's output scaled and unscaled, so the conv's
    weights cannot carry s (an independent check's case: folded, every output was off)."""
    g = Graph(3)
    a = g.op("Conv", ["pixel_values", g.weight("w", 8, 3, 3, 3), g.weight("b", 8, scale=0.1)], "/conv",
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Add", [g.op("Mul", [a, g.const(np.float32(scale), np.float32)], ""), a], "")
    proto = g.model([image_input(3, 8, 10)], [out(y)])
    imp = import_onnx(proto, "scaled_and_not")
    assert Counter(l.kind for l in imp.model.layers)["mul"] == 1
    assert _max_rel_error(proto, imp) <= RTOL


def test_cnn_batchnorm_and_relu_folded_macs_and_onnxruntime():
    proto, macs = cnn()
    imp = import_onnx(proto, "cnn")
    layers = imp.model.layers
    assert [l.kind for l in layers] == ["conv2d", "pool", "conv2d", "conv2d", "conv2d", "add", "relu", "pool",
                                        "linear"]
    assert layers[0].relu and layers[2].relu and not layers[3].relu          # BN and ReLU folded in
    assert layers[6].fused                                                    # the ReLU after the add
    assert imp.model.total_macs == macs
    assert _max_rel_error(proto, imp) <= RTOL


def test_gelu_operator_and_token_input():
    g = Graph()
    y = g.op("Gelu", [g.linear("tokens", 12, 20, "/fc")], "")
    proto = g.model([helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, 7, 12])], [out(y)], opset=20)
    imp = import_onnx(proto, "gelu")
    assert imp.model.input == (7, 1, 12)
    assert [l.kind for l in imp.model.layers] == ["linear", "gelu"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_qdq_scales_kept():
    proto, wq = qdq_cnn()
    imp = import_onnx(proto, "qdq")
    conv, fc = (l.name for l in imp.model.layers if l.kind in ("conv2d", "linear"))
    assert imp.act_scales[conv] == 1 / 16 and imp.act_scales[fc] == 1 / 8
    np.testing.assert_array_equal(imp.weight_q[conv][0], wq["conv"][0].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(imp.weight_q[fc][1], wq["fc"][1].astype(np.float64))
    q = qdq_qmodel(imp)
    assert q.layers[conv].scale == 1 / 16 and q.layers[fc].scale == 1 / 8
    np.testing.assert_array_equal(q.layers[fc].weight, wq["fc"][0])
    # the pooling keeps its input's scale on the accelerator (its QDQ scale, 1/32, gives way)
    pool = next(l.name for l in imp.model.layers if l.kind == "pool")
    assert q.layers[pool].scale == 1 / 16


@pytest.mark.parametrize("quantised", [False, True])
def test_a_concatenated_output_keeps_its_parts_qdq_scales_unless_the_file_quantises_it(quantised):
    """Two convolutions' outputs (QDQ scales 1/4 and 1/64) concatenated as the graph output: only the
    host reads it, so each part keeps its file's scale; a QDQ pair on the concatenation too (onnxruntime
    then gives it one scale, 1/2) ties them at that scale, as before."""
    from onnx_graphs import _qdq
    g = Graph(3)
    x = _qdq(g, "input", 1 / 64, "/input_q")
    a = _qdq(g, g.op("Conv", [x, g.weight("a.w", 4, 3, 1, 1)], "/a", kernel_shape=[1, 1]), 1 / 4, "/a_q")
    b = _qdq(g, g.op("Conv", [x, g.weight("b.w", 2, 3, 1, 1)], "/b", kernel_shape=[1, 1]), 1 / 64, "/b_q")
    y = g.op("Concat", [a, b], "/cat", axis=1)
    imp = import_onnx(g.model([image_input(3, 8, 8, "input")], [out(_qdq(g, y, 1 / 2, "/cat_q") if quantised else y)]),
                      "qdq_cat")
    q = qdq_qmodel(imp)
    [cat] = [l.name for l in imp.model.layers if l.kind == "concat"]
    if quantised:
        assert q.layers[cat].part_scales is None and q.scales(cat) == 1 / 2
    else:
        assert q.layers[cat].scale == 1 / 4
        np.testing.assert_array_equal(q.scales(cat), np.array([1 / 4] * 4 + [1 / 64] * 2).reshape(1, 1, 6))


def test_an_int32_bias_behind_a_dequantize_is_imported():
    """onnxruntime's quantiser stores biases as int32 at scale s_in * s_w (zero point 0, int32): the
    importer reads the bias they stand for (quantised again at the accelerator's own scales)."""
    proto, wq = qdq_cnn(int32_bias=True)
    imp = import_onnx(proto, "qdq_bias")
    conv = next(l.name for l in imp.model.layers if l.kind == "conv2d")
    expected = (wq["conv_bias"] * (wq["conv"][1].astype(np.float64) / 64)).astype(np.float32)
    np.testing.assert_array_equal(imp.weights[conv]["bias"], expected)
    assert qdq_qmodel(imp).layers[conv].bias is not None


def _assert_one_line(e: OnnxImportError, *needles):
    text = str(e)
    assert "\n" not in text
    for n in needles:
        assert n in text, text


@pytest.mark.parametrize("position", ["first", "last", "both"])
def test_a_constant_concatenated_with_an_activation_is_a_constant_layer(position):
    proto = constant_concat(position=position)
    imp = import_onnx(proto, "cc")
    cat = next(l for l in imp.model.layers if l.kind == "concat")
    assert [imp.model.layer(n).kind for n in cat.inputs] == {"first": ["constant", "conv2d"], "last": ["conv2d", "constant"],
                                                             "both": ["constant", "conv2d", "constant"]}[position]
    assert _max_rel_error(proto, imp) <= RTOL


def _refused(proto, *needles):
    with pytest.raises(OnnxImportError) as info:
        import_onnx(proto, "bad", where="bad.onnx")
    _assert_one_line(info.value, "bad.onnx", *needles)


def test_unsupported_operator_names_node_operator_and_the_supported_ones():
    _refused(single_op("Shrink"), "'/Shrink_1'", "(Shrink)", "unsupported operator", "Conv, ", "Softmax")


def test_dynamic_batched_and_wrongly_typed_inputs():
    _refused(single_op("Relu", shape=("batch", 8, 8, 8)), "dynamic dimension 'batch'", "axis 0")
    _refused(single_op("Relu", shape=(1, 8, 0, 8)), "dimension 0 on axis 2", "at least 1")
    _refused(single_op("Relu", shape=(1, 8, -1, 8)), "dimension -1 on axis 2", "at least 1")
    _refused(single_op("Relu", shape=(2, 8, 8, 8)), "batch 1")
    g = Graph()
    y = g.op("Relu", ["x"], "")
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 8, 4, 4])], [out(y)])
    _refused(proto, "double", "float32, float16 and int8")


def test_a_half_precision_export_is_widened_to_float32():
    """``model.half()``'s export (float16 input, initializers and constants; refused before): the
    values widened exactly; the float reference agrees with onnxruntime's float16 arithmetic to its
    precision."""
    proto, _ = cnn()
    for t in proto.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    proto.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    imp = import_onnx(proto, "half")
    x = np.random.default_rng(0).normal(size=imp.model.input).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    [got] = sess.run(None, {imp.input_name: L.gather(imp.input_view, x.ravel()).astype(np.float16)})
    [v] = imp.outputs.values()
    want = L.gather(v, dict(reference.run_float(imp.model, imp.weights, x))[v.source].ravel())
    assert np.max(np.abs(want - got.astype(np.float32))) <= 2e-3 * np.max(np.abs(want))      # float16's 11 bits


def test_operations_the_ir_cannot_express():
    _refused(single_op("Gelu", opset=20, approximate="sigmoid"), "approximate='sigmoid'", "'none'", "'tanh'")
    g = Graph()
    t = g.op("Transpose", ["x"], "", perm=[0, 1, 3, 2])           # swaps height and width: moves data
    y = g.op("Conv", [t, g.weight("w", 4, 8, 3, 3)], "", kernel_shape=[3, 3])
    _refused(g.model([image_input(8, 6, 10, "x")], [out(y)]), "(Conv)", "not laid out as an NCHW image")
    g = Graph()
    y = g.op("Pow", ["x", g.op("Relu", ["x"], "")], "")
    _refused(g.model([image_input(8, 4, 4, "x")], [out(y)]), "(Pow)", "not a constant scalar")
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 3, 3)], "", kernel_shape=[3, 3], dilations=[2, 1])
    _refused(g.model([image_input(8, 9, 9, "x")], [out(y)]), "dilations [2, 1] differ between height and width")
    proto, _ = qdq_cnn(zero_point_dtype=np.uint8)
    _refused(proto, "(QuantizeLinear)", "uint8", "symmetric int8")


def test_blocked_weight_scales_are_refused_in_one_line():
    """Opset 21's blocked quantisation (a scale per block of 3 input channels) ended in a bare numpy
    broadcasting message, naming no file and no node (an independent check's finding)."""
    w = np.random.default_rng(0).uniform(-0.3, 0.3, (8, 3, 3, 3)).astype(np.float32)
    s = (np.abs(w).max(axis=1, keepdims=True) / 127).astype(np.float32)
    g = Graph()
    g.init("wq", np.clip(np.round(w / s), -127, 127).astype(np.int8))
    g.init("ws", s)
    g.nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], name="dq_w", axis=1, block_size=3))
    y = g.op("Conv", ["x", "wd"], "", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    _refused(g.model([image_input(3, 8, 10, "x")], [out(y)], opset=21), "'dq_w' (DequantizeLinear)",
             "72 scales for [8, 3, 3, 3] values along axis 1 (blocked quantisation)")


def _with_scale(proto, name: str, change):
    """``proto`` with initializer ``name`` (a scale) replaced by ``change(its values)``."""
    t = next(t for t in proto.graph.initializer if t.name == name)
    t.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(t).copy()).astype(np.float32), name))
    return proto


@pytest.mark.parametrize("value", [0.0, -1 / 16, float("nan")])
def test_an_activation_scale_not_positive_and_finite_is_refused(value):
    """A QDQ activation scale of 0 or below was skipped by ``qdq_qmodel`` and the tensor calibrated
    instead, with no message (an independent check's finding): refused, naming scale and tensor (a
    NaN as any initializer's is)."""
    proto = _with_scale(qdq_cnn()[0], "/conv_q.scale", lambda a: np.full_like(a, value))
    if np.isnan(value):
        return _refused(proto, "tensor '/conv_q.scale'", "not finite")
    _refused(proto, "(QuantizeLinear)", "scale '/conv_q.scale' of '/conv/Conv_4_output_0'", f"is {value:g}",
             "a scale must be positive and finite")


def test_a_small_positive_activation_scale_is_kept_exactly():
    s = np.float32(3.0517578e-05) * np.float32(1.1)
    imp = import_onnx(_with_scale(qdq_cnn()[0], "/fc_q.scale", lambda a: np.full_like(a, s)), "tiny_scale")
    fc = next(l.name for l in imp.model.layers if l.kind == "linear")
    assert imp.act_scales[fc] == float(s) and qdq_qmodel(imp).layers[fc].scale == float(s)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_a_weight_scale_not_positive_is_refused_at_import(value):
    """A weight scale of 0 or below imported, then failed in ``sim.run --check`` naming nothing
    (``requantisation ratios must be positive and finite``): refused at its DequantizeLinear."""
    def change(a):
        a[3] *= value
        return a
    proto = _with_scale(qdq_cnn()[0], "conv.weight.scale", change)
    _refused(proto, "(DequantizeLinear)", "scale 'conv.weight.scale' of 'conv.weight.q'",
             "for channel 3 of 8 (axis 0; 1 such), whose values are not all 0", "a scale must be positive and finite",
             "0 only for a channel of zeros")


@pytest.mark.parametrize("int32_bias", [False, True])
def test_a_zero_weight_scale_of_a_pruned_channel_is_scale_1(int32_bias):
    """A per-channel weight scale of 0 whose channel's int8 values are all 0 (a pruned channel, as
    some pruning tools write it; the bias's scale s_in * s_w is then 0 too) was refused: its values
    are 0 at any scale, so it imports as scale 1 with zero weights, as calibration quantises a
    channel of zeros, and the float weights are exactly the file's."""
    from mapper.onnx_import import qdq_qmodel
    proto, _ = qdq_cnn(int32_bias=int32_bias)
    proto = pruned_channel(proto, 3, 0.0)
    if int32_bias:
        proto = pruned_channel(proto, 3, 0.0, "conv.bias")
    imp = import_onnx(proto, "pruned")
    conv = next(l.name for l in imp.model.layers if l.kind == "conv2d")
    wq, s_w = imp.weight_q[conv]
    assert not wq[3].any() and s_w[3] == 1 and np.all(s_w > 0)
    np.testing.assert_allclose(imp.weights[conv]["weight"], wq * s_w[:, None, None, None], rtol=1e-6)
    assert imp.weights[conv]["weight"][2].any() and (imp.weights[conv]["bias"][3] == 0 or not int32_bias)
    assert not qdq_qmodel(imp).layers[conv].weight[3].any()


def test_a_negative_weight_scale_of_a_pruned_channel_is_still_refused():
    """Only a scale of 0 stands for a pruned channel: one below 0 is refused even over zeros."""
    _refused(pruned_channel(qdq_cnn()[0], 3, -0.5), "(DequantizeLinear)", "scale 'conv.weight.scale' of 'conv.weight.q'",
             "is -0.5 (element 3 of 8; 1 bad)", "a scale must be positive and finite")


@pytest.mark.parametrize("where", ["initializer", "Constant"])
def test_a_tensor_whose_data_is_shorter_than_its_dims_is_refused_naming_it(where):
    """numpy's ``cannot reshape array of size 2 into shape (4,3,1,1)`` reached the user naming no file
    and no tensor (an independent check's finding): one line naming the tensor and its dims."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 3, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Add", [y, g.const(np.ones((1, 4, 1, 1), np.float32), np.float32)], "")
    proto = g.model([image_input(3, 8, 8, "x")], [out(y)])
    if where == "initializer":
        t = proto.graph.initializer[0]
        t.raw_data = t.raw_data[:8]
        return _refused(proto, "initializer 'w' (float, dims [4, 3, 1, 1]) cannot be read",
                        "cannot reshape array of size 2", "one value per element of its dims")
    t = next(n for n in proto.graph.node if n.op_type == "Constant").attribute[0].t
    t.raw_data = t.raw_data[:4]
    _refused(proto, "(Constant)", "value '/Constant_2_output_0' (float, dims [1, 4, 1, 1]) cannot be read")


@pytest.mark.parametrize("op, w_shape, kernel_shape", [("Conv", (4, 3, 1, 1), [3, 3]), ("Conv", (4, 3, 3, 3), [3, 1]),
                                                       ("Conv", (4, 3, 3), [5]), ("ConvTranspose", (3, 4, 2, 2), [3, 3])])
def test_a_kernel_shape_that_contradicts_the_weights_is_refused(op, w_shape, kernel_shape):
    """A ``kernel_shape`` other than the weights' spatial dims was imported silently (the weights'
    taken, or, for a 1-D convolution, the attribute's), where onnxruntime refuses the file (an
    independent check's finding): refused naming both."""
    g = Graph()
    y = g.op(op, ["x", g.weight("w", *w_shape)], "", kernel_shape=kernel_shape)
    dims = [1, 3, 8] if len(w_shape) == 3 else None
    proto = g.model([image_input(3, 8, 8, "x", dims=dims)], [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)])
    _refused(proto, f"({op})", f"kernel_shape {kernel_shape} contradicts its weights 'w' of shape {list(w_shape)}",
             f"a kernel of {list(w_shape[2:])}")


def test_a_graph_input_overridden_by_an_initializer_is_refused_saying_so():
    """It said ``the graph has 0 inputs ()`` (an independent check's finding)."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 3, 1, 1)], "", kernel_shape=[1, 1])
    g.init("x", np.zeros((1, 3, 8, 8), np.float32))
    _refused(g.model([image_input(3, 8, 8, "x")], [out(y)]), "graph input 'x' has an initializer of the same name",
             "overrides it", "supported: one input without an initializer")


@pytest.mark.parametrize("others", [[], [("com.microsoft", 1)]])
def test_a_model_without_a_default_domain_opset_is_refused(others):
    """The importer took opset 13 for such a file, onnxruntime its latest: operators whose meaning
    changed between them (a Softmax's axis, ReduceSum's axes) would import another network."""
    g = Graph()
    y = g.op("Softmax", [g.op("Conv", ["x", g.weight("w", 4, 3, 1, 1)], "", kernel_shape=[1, 1])], "", axis=1)
    proto = g.model([image_input(3, 8, 8, "x")], [out(y)])
    del proto.opset_import[:]
    for domain, version in others:
        proto.opset_import.add(domain=domain, version=version)
    _refused(proto, "declares no opset of the default ONNX domain ''",
             f"opset_import: {', '.join(f'{d!r} {v}' for d, v in others) or 'none'}")


def _relu_at(opset: int):
    proto = single_op("Relu", opset=opset)
    proto.ir_version = 10           # onnx's newest IR would be newer than onnxruntime's for a new opset
    return proto


def test_an_opset_outside_the_supported_range_is_refused_naming_it_and_the_range():
    """An opset below 7 (which onnxruntime does not run) or above the installed onnx's newest (whose
    schemas the importer checks nodes against) imported as if it were a known one."""
    from onnx import defs
    from mapper.onnx_import import MIN_OPSET, opset_range

    low, high = opset_range()
    assert (low, high) == (MIN_OPSET, defs.onnx_opset_version())
    for opset in (1, low - 1, high + 1, 1000):
        _refused(_relu_at(opset), f"opset {opset} of the default ONNX domain", f"supported: opsets {low} ", f" to {high} ")
    for opset in (low, high):
        import_onnx(_relu_at(opset), "ok")


def test_an_ir_version_newer_than_onnx_defines_is_refused():
    """A file of IR version 99 imported and ran; onnxruntime refuses it (its newest IR is onnx's)."""
    import onnx
    from mapper.onnx_import import opset_range

    proto = _relu_at(opset_range()[1])
    proto.ir_version = onnx.IR_VERSION + 1
    _refused(proto, f"IR version {onnx.IR_VERSION + 1}; supported: IR versions up to {onnx.IR_VERSION}")
    with pytest.raises(Exception, match="IR version"):
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    proto.ir_version = onnx.IR_VERSION
    import_onnx(proto, "ok")


def test_onnxruntime_runs_the_ends_of_the_opset_range():
    """The range's ends are the promise that onnxruntime runs such a file too (it has no constant to read):
    this fails when an onnx newer than the venv's onnxruntime is installed."""
    from mapper.onnx_import import opset_range

    x = np.ones((1, 8, 8, 8), np.float32)
    for opset in opset_range():
        session = ort.InferenceSession(_relu_at(opset).SerializeToString(), providers=["CPUExecutionProvider"])
        assert np.array_equal(session.run(None, {session.get_inputs()[0].name: x})[0], x)


def test_a_graph_without_outputs_says_so():
    """It was refused as computing "nothing the accelerator runs (its outputs are its input or constants)"."""
    proto = single_op("Relu")
    del proto.graph.output[:]
    _refused(proto, "graph: it declares no graph outputs", "at least one output")


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_antialias_is_refused_only_where_it_filters(scale):
    """ONNX's antialias widens the filter of a shrinking linear resize; enlarging, it changes nothing.
    It was refused both ways, listing the (supported) mode and coordinates as the reason."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Resize", [y, "", g.const(np.array([1, 1, scale, scale], np.float32), np.float32)], "", mode="linear",
             antialias=1)
    proto = g.model([image_input(8, 8, 8, "x")], [out(y)], opset=18)
    if scale < 1:
        _refused(proto, "antialias=1 on a shrinking resize")
    else:
        assert _max_rel_error(proto, import_onnx(proto, "aa")) <= RTOL


@pytest.mark.parametrize("scale", [2.0, 1.0, 0.5])
def test_antialias_on_a_nearest_resize_is_refused_as_onnxruntime_refuses_it(scale):
    """ONNX defines antialias for linear and cubic only: onnxruntime's Resize kernel and onnx.reference
    refuse a nearest resize with antialias=1 at any scale; the importer accepted it."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Resize", [y, "", g.const(np.array([1, 1, scale, scale], np.float32), np.float32)], "",
             mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor", antialias=1)
    proto = g.model([image_input(8, 8, 8, "x")], [out(y)], opset=18)
    # unoptimised: at ORT_ENABLE_ALL the NCHWc layout pass swaps a whole-factor enlargement after a Conv
    # for its own kernel, which ignores antialias, and the session loads
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with pytest.raises(Exception, match="anti-aliasing"):
        ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    _refused(proto, "(Resize)", "antialias=1 with mode='nearest'", "supported: antialias=0")


@pytest.mark.parametrize("ctm, accepted", [("pytorch_half_pixel", False), ("half_pixel", True), ("align_corners", True)])
def test_a_linear_resize_to_one_pixel_takes_the_centre_only_by_half_pixel(ctm, accepted):
    """To a 1 x 1 output, ONNX's pytorch_half_pixel reads input pixel (0, 0), half_pixel the centre
    (the accelerator's); the first was accepted and wrong (an independent check's case).  With
    align_corners both read pixel (0, 0) (its DDA: start 0, step 0)."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Resize", [y, "", "", g.const(np.array([1, 4, 1, 1]))], "", mode="linear",
             coordinate_transformation_mode=ctm)
    proto = g.model([image_input(8, 4, 6, "x")], [out(y)])
    if accepted:
        assert _max_rel_error(proto, import_onnx(proto, "one")) <= RTOL
    else:
        _refused(proto, "pytorch_half_pixel to 1x1", "supported: half_pixel there")


@pytest.mark.parametrize("class_map", [False, True])
def test_a_linear_resize_with_align_corners_is_imported_as_onnxruntime_computes_it(class_map):
    """PyTorch's ``F.interpolate(..., align_corners=True)`` (DeepLab/PSPNet/HRNet heads) was refused:
    a bilinear resize whose DDA starts at 0 and steps (in - 1) / (out - 1), x2 by scales and 7 -> 13
    by sizes, within RTOL of onnxruntime; the class map of align-corners scores too."""
    proto = align_corners_resize(class_map=class_map)
    imp = import_onnx(proto, "align")
    resizes = [l for l in imp.model.layers if l.kind == "resize"]
    assert [(l.mode, l.align_corners, l.out_h) for l in resizes] == ([("bilinear", True, 7)] if class_map else
                                                                     [("bilinear", True, 14), ("bilinear", True, 13)])
    if not class_map:
        assert _max_rel_error(proto, imp) <= RTOL


def test_a_linear_resize_of_other_coordinates_is_still_refused_naming_them():
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Resize", [y, "", "", g.const(np.array([1, 4, 8, 8]))], "", mode="linear",
             coordinate_transformation_mode="asymmetric")
    _refused(g.model([image_input(8, 4, 4, "x")], [out(y)]), "(Resize)", "coordinate_transformation_mode='asymmetric'",
             "half_pixel, pytorch_half_pixel or align_corners")


def test_a_mean_over_no_axes_with_noop_is_the_identity():
    """ReduceMean with no axes and noop_with_empty_axes=1 reduces nothing (ONNX); it was refused as
    a mean over every axis."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("ReduceMean", [y], "", noop_with_empty_axes=1)
    proto = g.model([image_input(8, 4, 4, "x")], [out(y)], opset=18)
    assert _max_rel_error(proto, import_onnx(proto, "noop")) <= RTOL


def test_a_graph_output_declared_with_another_shape_is_refused():
    """Declared [1, 9, 4, 4], computed [1, 8, 4, 4]: it was accepted, with 8 channels in output.npz."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 8, 8, 1, 1)], "", kernel_shape=[1, 1])
    declared = helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 9, 4, 4])
    proto = helper.make_model(helper.make_graph(g.nodes, "g", [image_input(8, 4, 4, "x")], [declared], g.inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    _refused(proto, f"graph output {y!r} is declared [1, 9, 4, 4] but its nodes compute [1, 8, 4, 4]")


def test_the_input_as_a_graph_output_is_refused():
    """It was dropped from output.npz without a word (an independent check's finding)."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    _refused(g.model([image_input(8, 4, 4, "x")], [out("x"), out(y)]), "graph output 'x' is the graph input")


def test_a_bias_defined_between_the_product_and_its_add_is_imported():
    """A Constant node between a MatMul and the Add of its bias is a valid order (onnxruntime runs it),
    which the bias fold, looking ahead from the MatMul, refused as "not produced by any earlier node"."""
    g = Graph(5)
    x = g.reshape(g.op("Conv", ["x", g.weight("w", 8, 3, 4, 4)], "", kernel_shape=[4, 4], strides=[4, 4]), [1, 8, 20])
    y = g.op("MatMul", [g.op("Transpose", [x], "", perm=[0, 2, 1]), g.weight("W", 8, 6)], "")
    y = g.op("Add", [y, g.const(g.rng.normal(size=6), np.float32)], "")
    proto = g.model([image_input(3, 16, 20, "x")], [out(y)])
    assert [n.op_type for n in proto.graph.node][-2:] == ["Constant", "Add"]
    assert _max_rel_error(proto, import_onnx(proto, "late_bias")) <= RTOL


@pytest.mark.parametrize("divisor", [np.float32(0), np.array([1, 0, 2, 3], np.float32).reshape(1, 4, 1, 1)])
def test_a_division_by_a_constant_holding_zero_is_refused(divisor):
    """A scalar 0 was a ZeroDivisionError traceback, a channel of 0 numpy warnings before the refusal."""
    g = Graph()
    y = g.op("Div", [g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1]),
                     g.const(divisor, np.float32)], "")
    _refused(g.model([image_input(8, 4, 4, "x")], [out(y)]), "(Div)", "holding 0", "divisors without zeros")


def test_a_transpose_of_height_and_width_as_the_output_is_accepted():
    """Refused where a layer reads it (above); a graph output is read through its view (docs/onnx.md)."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    t = g.op("Transpose", [y], "", perm=[0, 1, 3, 2])
    proto = g.model([image_input(8, 6, 10, "x")], [out(t)])
    imported = import_onnx(proto, "t")
    assert [l.name for l in imported.model.layers] == ["Conv_1"]         # no layer moves the data
    assert _max_rel_error(proto, imported) <= RTOL


def test_python_model_is_shape_checked_like_an_imported_one():
    conv = Conv2d("conv", "backbone", 3, 16, 224, 224, kernel=3, padding=1)
    with pytest.raises(ShapeError, match=r"224x224x16.*5 tokens of at least 999"):
        Model("hand", "full", (224, 224, 3), (conv, Linear("fc", "head", 5, 999, 10, inputs=("conv",))))


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_model_file_on_the_command_line(tmp_path):
    proto, macs = vit()
    path = tmp_path / "tiny_vit.onnx"
    path.write_bytes(proto.SerializeToString())
    name = load_onnx(path).model.name
    assert name.startswith("tiny_vit-") and len(name) == len("tiny_vit-") + 8     # a hash of the content
    r = _cli("-m", "mapper.flops", "--model", str(path), "--out", str(tmp_path / "flops"), "--json-only")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "flops" / f"{name}.json").read_text())["total_macs"] == macs
    r = _cli("-m", "sim.run", "--model", str(path), "--config", "tiny", "--check", "--seed", "3", "--no-plots",
             "--quiet", "--out", str(tmp_path / "sim"))
    assert r.returncode == 0, r.stderr
    assert "functional check passed" in r.stdout
    report = json.loads((tmp_path / "sim" / "report.json").read_text())
    assert report["total_macs"] == macs and report["check"]["tensors"] > 0


@pytest.mark.parametrize("extra, needle", [(["--variant", "B2_a"], "no execution-path variants"),
                                           (["--size", "64x64"], "fixed in the file")])
def test_model_file_refuses_variant_and_size(tmp_path, extra, needle):
    path = tmp_path / "m.onnx"
    path.write_bytes(vit()[0].SerializeToString())
    r = _cli("-m", "sim.run", "--model", str(path), "--config", "E", "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr
    assert not (tmp_path / "o").exists()


def test_an_empty_file_is_no_onnx_model(tmp_path):
    """protobuf reads an empty file as an empty model: refused as such, not as a graph of 0 inputs."""
    from mapper.onnx_import import OnnxImportError, load_onnx
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(OnnxImportError, match=r"empty.onnx: not an ONNX model \(an empty file\)"):
        load_onnx(tmp_path / "empty.onnx")


def test_broken_or_missing_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf at all")
    for path, needle in ((bad, "not an ONNX model"), (tmp_path / "missing.onnx", "cannot read")):
        r = _cli("-m", "mapper.flops", "--model", str(path), "--out", str(tmp_path / "f"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    r = _cli("-m", "mapper.flops", "--model", "resnet51")
    assert r.returncode == 2 and ".onnx file" in r.stderr


def test_layernorm_as_exported_below_opset_17():
    from onnx_graphs import decomposed_layernorm

    proto = decomposed_layernorm()
    imp = import_onnx(proto, "ln13")
    assert [l.kind for l in imp.model.layers] == ["linear", "layernorm", "linear"]
    assert imp.model.layers[1].eps == 1e-5
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_channels_first_layernorm_is_one_layernorm():
    """ConvNeXt's decomposed LayerNorm over axis 1 of an NCHW image is the LayerNorm of each pixel's
    channels (the image's HWC tensor read as it is); it was imported node by node (int8 tables)."""
    from onnx_graphs import channels_first_layernorm

    proto = channels_first_layernorm()
    imp = import_onnx(proto, "ln_cf")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "layernorm", "conv2d"]
    assert imp.model.layers[1].eps == pytest.approx(1e-6)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_a_roll_of_nhwc_tokens_in_either_order_is_a_roll(order):
    """Rolling the rows first (axis 1 of NHWC, as timm, HF and Microsoft's Swin export it) was taken
    for a concatenation of an NCHW image's channels and refused; either order is one Roll."""
    from onnx_graphs import nhwc_roll

    proto = nhwc_roll(order)
    imp = import_onnx(proto, "roll")
    assert [(l.kind, getattr(l, "shift", None)) for l in imp.model.layers] == [("conv2d", None), ("roll", 2), ("linear", None)]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("size, heads", [((56, 28), 2), ((84, 28), 3), ((112, 28), 2), ((56, 56), 2), ((28, 56), 2),
                                         ((28, 28), 2)])
@pytest.mark.parametrize("shift", [(0, 0), (3, 3), (3, 0), (0, 3)])
@pytest.mark.parametrize("qkv", ["gather", "split", "separate"])
def test_swin_windows_in_one_column_are_partitioned_for_the_products(size, heads, shift, qkv):
    """timm's and Hugging Face's Swin block at 56x28 (a map of 14x7, one column of two 7x7 windows),
    84x28 and 112x28: the window partition moves no data there (the windows are the map's raster
    order, one after another), so the attention products' operands were refused ('not laid out as the
    IR's products read them'), with timm's fused qkv read by Gather or by Split and Squeeze, HF's
    separate linears, shifted or not.  The linears that compute the products' operands now read a
    window partition of their input, as the zoo's and the 2x2 grid's do (one partition; no ``Mul``:
    the scale folds into the q rows), the products one per window and head; MACs as counted here,
    the float reference as onnxruntime's; grids of two columns, one row and one window as before.
    Shifted by (3, 0), as timm 1.x shifts a map one window wide (only the rows), or (0, 3), a roll
    of one axis was refused at any size: one ``Roll`` now, its columns' shift its own."""
    from onnx_graphs import swin_block

    proto, macs = swin_block(*size, dim=16 * heads, heads=heads, shift=shift, qkv=qkv)
    imp = import_onnx(proto, "swin")
    windows = (size[0] // 28) * (size[1] // 28)
    kinds = Counter(l.kind for l in imp.model.layers)
    assert imp.model.total_macs == macs
    assert [(l.batch, l.m, l.windows) for l in imp.model.layers if l.kind == "matmul"] == [(windows * heads, 49, windows)] * 2
    assert (kinds["window_partition"], kinds["window_reverse"], kinds["mul"]) == (int(windows > 1), int(windows > 1), 0)
    if windows > 1:         # the linears read the partition (HF's scores' division folds into the query rows)
        [part] = [l.name for l in imp.model.layers if l.kind == "window_partition"]
        operands = {name for l in imp.model.layers if l.kind == "matmul" for name in l.inputs}
        assert [l.inputs for l in imp.model.layers if l.name in operands and l.kind == "linear"] == \
            [(part,)] * (3 if qkv == "separate" else 1)
    assert [l.shifts for l in imp.model.layers if l.kind == "roll"] == ([shift, (-shift[0], -shift[1])] if any(shift) else [])
    assert _max_rel_error(proto, imp) <= RTOL


def test_swin_windows_in_one_column_of_a_linear_already_read_are_partitioned_where_read():
    """The same block whose q is scaled per channel (a ``Mul`` layer reads the qkv linear's output
    before the products, so the linear cannot read a partition instead): the products read window
    partitions of the ``Mul``'s output and of the qkv linear's; the float reference as onnxruntime's."""
    from onnx_graphs import swin_block

    proto, macs = swin_block(q_scale="per_channel")
    imp = import_onnx(proto, "swin")
    assert imp.model.total_macs == macs
    kinds = [l.kind for l in imp.model.layers]
    assert kinds[kinds.index("mul"):kinds.index("matmul")] == ["mul", "window_partition", "window_partition"]
    assert [(l.batch, l.windows) for l in imp.model.layers if l.kind == "matmul"] == [(4, 2)] * 2
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("merged, reverse_first, flat_gemm", [(True, False, False), (True, True, False),
                                                            (False, False, False), (True, False, True)])
def test_a_window_reverse_written_straight_to_tokens_is_a_window_reverse(merged, reverse_first, flat_gemm):
    """``[1, H/ws, W/ws, ws, ws, C] -> [1, H*W, C]`` in one reshape (what ``quant_pre_process`` makes of
    timm's Swin) was refused at the residual add, whichever operand it was: the add now asks for a
    layout layer holding either operand as the other holds its values.  The same pre-processing's
    ``Gemm`` of the windows' tokens as one ``[N, C]`` matrix reads them as they are (a first version
    took its rows for a window reverse into a 16x4 image, and the add was refused again)."""
    from onnx_graphs import window_reverse_to_tokens

    proto = window_reverse_to_tokens(merged, reverse_first, flat_gemm)
    imp = import_onnx(proto, "wr")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "window_partition", "linear", "window_reverse", "add",
                                                  "linear"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("shape, kernel, count_include_pad", [((1, 8, 6, 9), [2, 3], 0), ((1, 8, 12, 18), [6, 9], 1)])
def test_average_windows_that_tile_a_map_that_is_not_square_are_an_adaptive_pool(shape, kernel, count_include_pad):
    """PSPNet's bins of a map that is not square, and what ``make onnx`` writes for an adaptive pool of
    one (Swin's pyramid pooling at 192x384): refused for their strides that differ, though they are
    the exporter's own form of an adaptive average pool (no padding: count_include_pad changes nothing)."""
    proto = single_op("AveragePool", shape, kernel_shape=kernel, strides=kernel, count_include_pad=count_include_pad)
    imp = import_onnx(proto, "pool")
    (pool,) = imp.model.layers
    assert (pool.mode, pool.out_h, pool.out_w) == ("adaptive_avg", shape[2] // kernel[0], shape[3] // kernel[1])
    assert _max_rel_error(proto, imp) <= RTOL
    # padded, they are no adaptive pool: a square pool of an upsample (below), whose counted padding
    # would count other pixels than ONNX's
    padded = single_op("AveragePool", shape, kernel_shape=kernel, strides=kernel, pads=[1, 1, 1, 1],
                       count_include_pad=count_include_pad)
    if count_include_pad:
        _refused(padded, f"kernel {kernel}", "count_include_pad 1")
    else:
        assert _max_rel_error(padded, import_onnx(padded, "padded")) <= RTOL


def test_a_dense_layer_of_a_rank_1_flattened_image_keeps_its_rank_and_a_wrong_width_is_refused():
    g = Graph(4)
    x = g.op("Conv", ["input", g.weight("c.weight", 4, 3, 3, 3)], "/c", kernel_shape=[3, 3])
    y = g.op("MatMul", [g.reshape(x, [-1], "/flat"), g.weight("fc.weight_t", 64, 5)], "/fc")
    proto = g.model([image_input(3, 6, 6, "input")], [out(y)])
    assert _max_rel_error(proto, import_onnx(proto, "rank1")) <= RTOL
    g = Graph(4)
    x = g.op("Conv", ["input", g.weight("c.weight", 4, 3, 3, 3)], "/c", kernel_shape=[3, 3])
    y = g.op("Gemm", [g.op("Flatten", [x], "/flat", axis=1), g.weight("fc.weight", 5, 65)], "/fc", transB=1)
    graph = helper.make_graph(g.nodes, "g", [image_input(3, 6, 6, "input")], [out(y)], initializer=g.inits)
    _refused(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "weights of shape [5, 65] for 64")


def test_a_channel_sum_of_a_split_part_is_a_product_by_ones_of_its_slice():
    g = Graph(6)
    x = g.op("Conv", ["input", g.weight("c.weight", 8, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    a, b = g.op("Split", [x, g.const([4, 4])], "/split", n_out=2, axis=1)
    y = g.op("Mul", [b, g.op("ReduceSum", [a, g.const([1])], "/sum", keepdims=1)], "/mul")
    proto = g.model([image_input(3, 6, 6, "input")], [out(y)])
    imp = import_onnx(proto, "slice_sum")
    # the sum's convolution reads the first channels itself; the product reads a slice of the rest
    assert [l.kind for l in imp.model.layers] == ["conv2d", "conv2d", "channel_slice", "mul"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("form", ["flatten", "reshape", "nhwc"])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "qdq"])
def test_a_dense_layer_of_a_flattened_image_is_a_convolution_over_it(form, qdq):
    """VGG's, AlexNet's ``Flatten`` (or ``Reshape [1, -1]``) of a map larger than one pixel, then a
    dense layer, was refused: it is a convolution whose kernel is the map (weights reordered from the
    flattened NCHW order, or NHWC: Keras' after tf2onnx, refused until stop 59), to one pixel; a QDQ
    weight keeps its int8 values, reordered alike."""
    proto = dense_classifier(form, qdq)
    imp = import_onnx(proto, "vgg")
    conv = next(l for l in imp.model.layers if l.kind == "conv2d" and l.kernel == (3, 4))
    assert (conv.in_ch, conv.out_ch, conv.padding, conv.out_shape) == (8, 16, 0, (1, 1, 16))
    assert conv.relu and [l.kind for l in imp.model.layers] == ["conv2d", "pool", "conv2d", "linear"]  # ReLU folded
    if qdq:
        q, _ = imp.weight_q[conv.name]
        assert q.shape == (16, 3, 4, 8) and q.dtype == np.int8
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("qdq", [False, True], ids=["float", "qdq"])
def test_a_batchnorm_after_a_dense_layer_of_a_flattened_image_folds_into_its_convolution(qdq):
    """ArcFace's ``Flatten -> Gemm -> BatchNorm1d`` (features) was refused, the Gemm said to read its
    own output: the norm folds into the convolution as into any Conv's (a QDQ weight's scales and
    signs too), and the ReLU after it."""
    proto = dense_classifier("flatten", qdq, bn=True)
    imp = import_onnx(proto, "arcface")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "pool", "conv2d", "linear"]
    assert imp.model.layers[2].relu
    if qdq:                                    # the int8 weights and their scales hold the folded weights
        q, scale = imp.weight_q[imp.model.layers[2].name]
        w = imp.weights[imp.model.layers[2].name]["weight"]
        assert np.max(np.abs(q * np.reshape(scale, (-1, 1, 1, 1)) - w)) <= 1e-6 * np.max(np.abs(w))
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_class_token_before_a_grid_that_is_not_square_is_a_concatenation_of_pixels():
    """It was refused (the class token's layout layers read a square grid as one window); a
    concatenation of pixels takes any grid."""
    g = Graph()
    x = g.op("Conv", ["pixel_values", g.weight("w", 16, 3, 8, 8)], "/embed", kernel_shape=[8, 8], strides=[8, 8])
    x = g.op("Transpose", [g.reshape(x, [1, 16, 24], "/embed")], "/embed", perm=[0, 2, 1])
    x = g.op("Concat", [g.weight("cls_token", 1, 1, 16), x], "", axis=1)
    proto = g.model([image_input(3, 32, 48)], [out(g.linear(x, 16, 8, "/fc"))])
    imp = import_onnx(proto, "cls")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "constant", "concat", "linear"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pads, strides", [([0, 0, 1, 1, 0, 0, 1, 1], 1), ([0, 0, 0, 0, 0, 0, 1, 1], 2),
                                           ([0, 0, 2, 1, 0, 0, 0, 3], 1)])
def test_zeros_padded_before_convolutions_are_their_padding(pads, strides):
    """``nn.ZeroPad2d`` and TensorFlow's explicit padding before a VALID (here strided) convolution,
    top and left too: refused (the IR's Pad adds rows and columns after the image only); read by
    convolutions alone, the zeros are theirs, added to their own padding."""
    from onnx_graphs import padded_convolutions

    proto = padded_convolutions(pads, strides)
    imp = import_onnx(proto, "pad")
    assert [l.kind for l in imp.model.layers] == ["conv2d"] * 3
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("gamma_shape", [(8,), (1, 8, 8, 8)], ids=["along_width", "per_element"])
def test_a_normalisation_whose_scale_is_not_per_channel_is_imported_node_by_node(gamma_shape):
    """A scale ``[C]`` after a normalisation over axis 1 broadcasts along the width, not the channels:
    the pattern took it for the LayerNorm's gamma (0.27 off onnxruntime, ``CHECK=1`` passing), and a
    scale per element was a traceback.  The pattern now asks that its constants vary along the
    normalised axis alone."""
    from onnx_graphs import channels_first_layernorm

    proto = channels_first_layernorm(c=8, size=8, gamma_shape=gamma_shape)
    imp = import_onnx(proto, "ln")
    assert "layernorm" not in [l.kind for l in imp.model.layers]
    assert _max_rel_error(proto, imp) <= RTOL


def test_model_local_functions_are_inlined():
    """The dynamo exporter wraps modules in model-local functions; their bodies are imported."""
    body = [helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Sigmoid", ["b"], ["c"])]
    fn = helper.make_function("pkg.mine", "ReluSigmoid", ["a"], ["c"], body, [helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node("ReluSigmoid", ["x"], ["y"], domain="pkg.mine", name="/block")], "g",
                              [image_input(4, 3, 3, "x")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])])
    proto = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                                    helper.make_opsetid("pkg.mine", 1)])
    assert [l.kind for l in import_onnx(proto, "fn").model.layers] == ["relu", "sigmoid"]


@pytest.mark.parametrize("opset", [11, 12, 13, 18])
def test_a_shape_computed_at_the_files_opset_is_evaluated_at_it(opset):
    """Torch's dynamic-axes reshape (``Shape``, ``Gather``, ``Unsqueeze``, ``Concat``) is evaluated
    at the file's opset: below 13 ``Unsqueeze`` takes its axes as an attribute, which the evaluator
    of a lone node (the newest opset's) refused, and the file was refused."""
    proto = dynamic_shape_tokens(opset)
    imp = import_onnx(proto, "dyn")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "layernorm", "linear", "pool", "linear"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_node_of_another_domain_is_refused_not_taken_for_the_onnx_operator():
    """An ``Erf`` of the domain ``com.example`` inside GELU's pattern was fused into a GELU as if it
    were ONNX's (onnxruntime refuses the file: no such operator); refused, naming the domain."""
    proto = vit(depth=1)[0]
    erf = next(n for n in proto.graph.node if n.op_type == "Erf")
    erf.domain = "com.example"
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    _refused(proto, f"'{erf.name}' (Erf)", "operator domain 'com.example' is not supported", "supported: Abs, ")


@pytest.mark.parametrize("op, operands, kinds", [
    ("Max", "aa", {"conv2d": 4, "constant": 1, "mul": 1, "add": 2, "relu": 1}),     # -1: a constant, a product
    ("Min", "aa", {"conv2d": 4, "constant": 1, "mul": 1, "add": 2, "relu": 1}),     # the other -1 folded
    ("Max", "aaa", {"conv2d": 5, "constant": 2, "mul": 2, "add": 4, "relu": 2}), ("Max", "ac", {"conv2d": 3, "clip": 1}),
    ("Min", "cac", {"conv2d": 3, "clip": 1}), ("Min", "aac", {"conv2d": 4, "constant": 1, "mul": 1, "add": 2, "relu": 1, "clip": 1})])
def test_a_maximum_or_minimum_is_compared_by_relus_and_clipped_by_its_constants(op, operands, kinds):
    """``Max``/``Min`` were refused as unsupported operators though the IR computes them: of activations
    ``b + relu(a - b)`` (``a - relu(a - b)``), of scalar constants a clip."""
    proto = elementwise_extreme(op, operands)
    imp = import_onnx(proto, "extreme")
    assert Counter(l.kind if l.kind != "activation" else l.func for l in imp.model.layers) == kinds
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_maximum_by_a_constant_of_more_than_one_element_is_refused_in_one_line():
    proto = elementwise_extreme("Max", "ac")
    scalar = next(n for n in proto.graph.node if n.op_type == "Constant" and n.output[0] in
                  next(m for m in proto.graph.node if m.op_type == "Max").input)
    scalar.attribute[0].t.CopyFrom(numpy_helper.from_array(np.full((1, 8, 1, 1), 0.25, np.float32), scalar.output[0]))
    _refused(proto, "(Max)", "constant operands of shapes [[1, 8, 1, 1]]", "supported: activations and scalar constants")


@pytest.mark.parametrize("other, kinds", [("value", {"conv2d": 3, "constant": 2, "mul": 1, "add": 1}),
                                          ("act", {"conv2d": 3, "constant": 2, "mul": 2, "add": 1})])
def test_a_where_of_a_constant_mask_is_products_by_the_mask_and_an_add(other, kinds):
    """``Where`` was refused as an unsupported operator; of a constant condition it is a product of each
    activation by the mask of the elements it gives and an add (of the other or of the constant)."""
    proto = constant_where(other)
    imp = import_onnx(proto, "where")
    assert Counter(l.kind for l in imp.model.layers) == kinds
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_where_of_a_computed_condition_is_refused_in_one_line():
    """A float condition computed in the network is refused by its type (the schema's ``condition`` is
    bool, and no supported operator computes a bool)."""
    proto = constant_where("act")
    where = next(n for n in proto.graph.node if n.op_type == "Where")
    where.input[0] = where.input[2]
    _refused(proto, "(Where)", f"input {where.input[2]!r} of type float", "'condition' takes bool")


@pytest.mark.parametrize("mode", ["cubic", "linear"])
def test_a_position_table_resized_to_the_grid_is_evaluated(mode):
    """A resize of a constant (a position table to the image's grid, timm's ``dynamic_img_size``) is
    evaluated, its scales a parameter, not a second tensor: bicubic was refused as a resize the
    accelerator cannot run, bilinear ran on it each inference."""
    proto = resized_position_table(mode)
    imp = import_onnx(proto, "pos")
    assert Counter(l.kind for l in imp.model.layers) == {"conv2d": 1, "constant": 2, "concat": 1, "add": 1,
                                                         "layernorm": 1, "pool": 1, "linear": 1}
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_layernorm_over_each_heads_channels_is_composed_per_pixel():
    """qk-norm (a LayerNormalization of q and k over each head's channels) was refused: the IR's
    LayerNorm takes all the channels of a token.  Composed per pixel as group normalisation is: two
    grouped 1x1 convolutions for the means, a square, a rsqrt, products; no layernorm layer."""
    proto = qk_norm_attention()
    imp = import_onnx(proto, "qk_norm")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert kinds["layernorm"] == 0 and kinds["rsqrt"] == 2 and kinds["conv2d"] == 1 + 2 * 2
    grouped = [l for l in imp.model.layers if l.kind == "conv2d" and l.groups > 1]
    assert [(l.groups, l.in_ch) for l in grouped] == [(2, 16)] * 4       # q's or k's 2 heads of 8 channels
    assert _max_rel_error(proto, imp) <= RTOL


def test_an_rms_normalization_is_imported_as_its_decomposition_is():
    """ONNX's RMSNormalization (opset 23) was refused as an unsupported operator; it is the square, the
    mean over the channels, a rsqrt and products, as PyTorch's decomposition imports, with the same values."""
    imps = {form: import_onnx(rms_norm(form), form) for form in ("op", "decomposed")}
    for form, imp in imps.items():
        assert _max_rel_error(rms_norm(form), imp) <= RTOL
    assert Counter(l.kind for l in imps["op"].model.layers)["rsqrt"] == 1
    x = np.random.default_rng(1).normal(size=imps["op"].model.input).astype(np.float32)
    outs = [dict(reference.run_float(imp.model, imp.weights, x))[imp.model.layers[-1].name] for imp in imps.values()]
    np.testing.assert_allclose(*outs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float", "int64"])
def test_a_position_index_computed_from_broadcast_constants_is_evaluated(dtype):
    """Relative coordinates ``c[:, :, None] - c[:, None, :]`` of a float ``arange`` were a layer (a sum of
    constant tensors), refused for broadcasting both ways; constants that broadcast are evaluated, so the
    index, its table's gather and the bias are constants: no layer but the network's."""
    proto = computed_position_index(dtype)
    imp = import_onnx(proto, "index")
    assert Counter(l.kind for l in imp.model.layers) == {"conv2d": 1, "linear": 5, "matmul": 2, "constant": 1,
                                                         "add": 1, "softmax": 1, "pool": 1}
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("order", ["x*(1+erf)*0.5", "0.5*x*(1+erf)", "0.5*(x*(1+erf)), x*(1/sqrt2)"])
def test_gelu_erf_patterns(order):
    g = Graph()
    x = g.linear("t", 6, 6, "/fc")
    f32 = lambda v: g.const(np.float32(v), np.float32)
    inner = (g.op("Mul", [x, f32(1 / np.sqrt(2))], "") if "1/sqrt2" in order else g.op("Div", [x, f32(np.sqrt(2))], ""))
    plus = g.op("Add", [f32(1.0), g.op("Erf", [inner], "")], "")
    if order.startswith("x*"):
        y = g.op("Mul", [g.op("Mul", [x, plus], ""), f32(0.5)], "")
    elif order.startswith("0.5*x"):
        y = g.op("Mul", [g.op("Mul", [f32(0.5), x], ""), plus], "")
    else:
        y = g.op("Mul", [f32(0.5), g.op("Mul", [x, plus], "")], "")
    proto = g.model([helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4, 6])], [out(y)])
    imp = import_onnx(proto, "gelu")
    assert [l.kind for l in imp.model.layers] == ["linear", "gelu"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_graph_that_computes_nothing_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match=r"graph output 'y' is the graph input \(or a view of it\)"):
        import_onnx(proto, "identity")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weights_that_are_not_finite_are_refused(bad):
    """A NaN or an infinity in an initializer names the tensor and the node that reads it (it was
    calibrated into garbage that still checked bit-exact against itself)."""
    g = Graph()
    w = np.full((4, 8, 1, 1), 0.1, np.float32)
    w[1, 2, 0, 0] = bad
    y = g.op("Conv", ["x", g.init("conv.weight", w)], "", kernel_shape=[1, 1])
    _refused(g.model([image_input(8, 4, 4, "x")], [out(y)]), "'conv.weight'", "read by node '/Conv_1'",
             "1 value(s) that are not finite")


def test_weights_too_large_for_float32_name_the_layer_in_one_line(tmp_path):
    """Finite weights whose products overflow float32 on the calibration image: one error naming
    the layer (numpy's overflow warnings silenced), not a requantisation ratio of no layer."""
    import warnings

    from mapper.calibrate import prepare
    g = Graph()
    w = np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32) * np.float32(1e38)
    y = g.op("Conv", ["x", g.init("conv.weight", w)], "", kernel_shape=[1, 1])
    import onnx
    onnx.save(g.model([image_input(3, 8, 8, "x")], [out(y)]), tmp_path / "big.onnx")
    model = load_onnx(tmp_path / "big.onnx").model
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # a RuntimeWarning would fail here
        with pytest.raises(ValueError, match=r"^layer \S+: its float output on the calibration image is not finite"):
            prepare(model, 1)


@pytest.mark.parametrize("op, needle", [("Sqrt", r"NaN: sqrt of inputs outside its domain"),
                                        ("Log", r"infinite: log at its pole, an input of 0")])
def test_a_function_outside_its_domain_is_refused_naming_it(op, needle, tmp_path):
    """``Sqrt`` of a convolution's signed output is NaN in float (as in onnxruntime), ``Log`` of a
    ReLU's zeros infinite: the refusal says so, not "weights too large for float32"."""
    import onnx

    from mapper.calibrate import prepare
    g = Graph(38)
    x = g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3)], "/a", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op(op, [g.op("Relu", [x], "/relu") if op == "Log" else x], "/act")
    onnx.save(g.model([image_input(3, 8, 8, "input")], [out(x)]), tmp_path / "f.onnx")
    with pytest.raises(ValueError, match=r"not finite \(" + needle):
        prepare(load_onnx(tmp_path / "f.onnx").model, 1)


def test_a_gate_whose_constant_raises_the_rank_is_not_one_table():
    """``x * sigmoid(c * x)`` with ``c`` of shape ``[1, 1, 1, 1, 1]`` is rank 5 in ONNX: one Swish of
    ``x`` (rank 4) would let a later node's axis read another axis (a silent wrong result); it is
    imported node by node, which refuses or computes it right."""
    g = Graph(39)
    x = g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3)], "/a", kernel_shape=[3, 3], pads=[1] * 4)
    c = g.init("c", np.full((1, 1, 1, 1, 1), 1.702, np.float32))
    y = g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [x, c], "/g")], "/g")], "/g")
    y = g.reshape(g.op("ReduceMean", [y], "/m", axes=[2], keepdims=0), [1, 64], "/m")
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    try:
        imp = import_onnx(proto, "rank5")
    except OnnxImportError:
        return
    assert "swish" not in [l.kind for l in imp.model.layers] and _max_rel_error(proto, imp) <= RTOL


def test_a_finfo_min_attention_mask_is_refused_with_the_hint_to_clamp_it(tmp_path):
    """Hugging Face's additive mask of finfo(float32).min cannot share the int8 scale of the scores it
    is added to; the refusal says so and how to fix the model, and the clamped mask it suggests maps."""
    import onnx

    from mapper.calibrate import prepare
    for fill, name in ((float(np.finfo(np.float32).min), "finfo_min.onnx"), (-1e4, "clamped.onnx")):
        onnx.save(masked_attention(fill), tmp_path / name)
    with pytest.raises(ValueError) as refusal:
        prepare(load_onnx(tmp_path / "finfo_min.onnx").model)
    message = str(refusal.value)
    assert "\n" not in message and message.startswith("layer attn.Add_")
    assert "is too large" in message and "its constant input 'attention_mask' reaches -3.40282e+38" in message
    assert "clamp it in the model, e.g. to -1e4" in message
    prepare(load_onnx(tmp_path / "clamped.onnx").model)


@pytest.mark.parametrize("op_type, domain", [("QLinearConv", ""), ("QLinearAdd", "com.microsoft")])
def test_a_qoperator_file_is_told_to_export_qdq(op_type, domain):
    """An int8 file in the QOperator format is refused naming the QDQ format, which is read."""
    node = helper.make_node(op_type, ["x"], ["y"], domain=domain)
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    with pytest.raises(OnnxImportError, match="QuantFormat.QDQ"):
        import_onnx(helper.make_model(graph, opset_imports=opsets), "q")


def test_refusals_name_what_is_unsupported_in_the_node():
    """A sum over the channels and the rows together is neither a pooling nor a product by ones, nor
    is a last-index arg-max over the channels one over another axis: each refusal says what in the
    node is unsupported."""
    g = Graph()
    y = g.op("ReduceSum", ["x", g.const([1, 2])], "")
    _refused(g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])], [out(y)]),
             "a sum over axes [1, 2] of a [1, 8, 8, 8] tensor", "or over all channels of each pixel")
    _refused(single_op("ArgMax", axis=1, select_last_index=1), "select_last_index=1")


@pytest.mark.parametrize("mode, scales, needle", [("nearest", [1, 1, 2, 2], "a nearest resize to 16x16"),
                                                  ("linear", [1, 1, 0.5, 0.5], "a bilinear resize to 4x4")])
def test_an_arg_max_that_is_no_class_map_is_refused_not_dropped(mode, scales, needle):
    """The accelerator writes a class map of a bilinear resize to the input size only; an arg-max of
    another resize was imported, then dropped from the program (a user's run wrote an empty output)."""
    g = Graph()
    how = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} if mode == "nearest" else {}
    r = g.op("Resize", ["x", "", g.init("scales", np.array(scales, np.float32))], "", mode=mode, **how)
    y = g.op("ArgMax", [r], "", axis=1, keepdims=0)
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8, 8])],
                    [helper.make_tensor_value_info(y, TensorProto.INT64, None)])
    _refused(proto, needle, "bilinear resize to the input size (8x8)")


def _argmax_of(shape, axis: int, stride: int = 1):
    """An ArgMax over ``axis`` of a convolution's output (an image) or of a Gemm's logits ([1, N])."""
    g = Graph()
    if len(shape) == 2:
        y = g.op("Gemm", [g.op("Flatten", [g.op("GlobalAveragePool", ["x"], "")], ""), g.weight("w", shape[1], 3)],
                 "", transB=1)
    else:
        y = g.op("Conv", ["x", g.weight("w", shape[1], 3, 1, 1)], "", kernel_shape=[1, 1], strides=[stride] * 2)
    am = g.op("ArgMax", [y], "", axis=axis, keepdims=0)
    return g.model([image_input(3, 8, 8, "x")], [helper.make_tensor_value_info(am, TensorProto.INT64, None)])


@pytest.mark.parametrize("proto, needles", [
    (_argmax_of((1, 7), 1), ("an arg-max over axis 1 of a [1, 7] tensor, a classifier's logits", "top classes")),
    (_argmax_of((1, 7), -1), ("an arg-max over axis 1 of a [1, 7] tensor, a classifier's logits",)),
    (_argmax_of((1, 5, 8, 8), 2), ("an arg-max over axis 2 of a [1, 5, 8, 8] tensor, not the channels",)),
    (_argmax_of((1, 5, 4, 4), 1, stride=2), ("an arg-max over the channels of a 4x4 image that no Resize produces",))],
    ids=["logits", "logits_axis_-1", "image_axis_2", "image_smaller_than_input"])
def test_an_arg_max_refusal_says_what_the_node_is(proto, needles):
    """An arg-max of a classifier's logits, or over the channels of scores that no Resize brings to
    the input size, was refused as 'an arg-max other than over the channels (axis 1) of an NCHW
    resize', which such a node over axis 1 is not; each says what the node is and what is supported."""
    _refused(proto, "(ArgMax)", *needles, "supported: a segmentation network's class map",
             "over the channels (axis 1) of a bilinear resize to the input size (8x8) or of NCHW scores of that size")


def _layernorm_of(dims, axis: int, tokens: bool):
    """A LayerNormalization over ``axis`` of a convolution's output, as tokens ``[1, N, C]`` or NCHW."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", dims[-1] if tokens else dims[1], 3, 1, 1)], "", kernel_shape=[1, 1])
    if tokens:
        y = g.op("Transpose", [g.op("Reshape", [y, g.const([1, dims[-1], -1])], "")], "", perm=[0, 2, 1])
    rows = dims[axis:]
    ln = g.op("LayerNormalization", [y, g.init("g", np.ones(rows, np.float32)), g.init("b", np.zeros(rows, np.float32))],
              "", axis=axis)
    return g.model([image_input(3, 4, 4, "x")], [out(ln)])


@pytest.mark.parametrize("proto, needles", [
    (_layernorm_of((1, 16, 8), 1, True), ("over axes [1, 2] of a [1, 16, 8] tensor, rows of 128 elements",)),
    (_layernorm_of((1, 16, 8), -2, True), ("over axes [1, 2] of a [1, 16, 8] tensor",))],
    ids=["tokens_axis_1", "tokens_axis_-2"])
def test_a_layernorm_across_several_axes_says_so(proto, needles):
    """A LayerNormalization whose rows span several axes that are not each token's channels (the
    tokens and channels together) was refused with the generic 'not laid out as rows of all the
    channels of each token ... no IR layout layer arranges it so', which did not name the axes as the
    cause; now it does, and says what is supported."""
    _refused(proto, "(LayerNormalization)", *needles, "across several axes that are not each token's channels",
             "supported: over the last axis (the channels of each token or NHWC pixel)")


def test_a_layernorm_over_axis_1_of_tokens_reshaped_to_4d_says_it_is_no_image():
    """Tokens ``[1, 24, 8]`` reshaped to ``[1, 8, 4, 6]`` (not an NCHW image's layout) normalised from axis
    1: refused, saying so, where the hint had advised GroupNormalization with one group."""
    g = Graph()
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 1, 1)], "", kernel_shape=[1, 1])
    r = g.reshape(g.op("Transpose", [g.reshape(x, [1, 8, -1])], "", perm=[0, 2, 1]), [1, 8, 4, 6])
    ln = g.op("LayerNormalization", [r, g.init("g", np.ones((8, 1, 1), np.float32))], "", axis=1)
    _refused(g.model([image_input(3, 4, 6, "x")], [out(ln)]), "(LayerNormalization)", "over axes [1, 2, 3]",
             "not laid out as an NCHW image, whose channels and pixels would import as GroupNormalization")


@pytest.mark.parametrize("kw, like", [
    ({"axis": 1}, "op21"), ({"axis": 0}, "op21"), ({"axis": -3, "affine": "full"}, "op21"),
    ({"axis": 1, "affine": "scalar"}, "op21"), ({"axis": 2, "affine": "scalar"}, "instance"),
    ({"axis": 2, "affine": "full"}, "instance"), ({"axis": 1, "c": 5, "size": (7, 3)}, "op21")],
    ids=["axis1", "axis0", "axis-3_full", "axis1_scalar", "axis2_scalar", "axis2_full", "axis1_odd"])
def test_a_layernorm_over_an_image_s_pixels_is_a_group_or_instance_norm(kw, like):
    """A LayerNormalization over an NCHW image's channels and pixels (``axis`` 1, or 0 of its batch of 1)
    was refused (rows across several axes); with a scale and bias per channel (``[C, 1, 1]``, or one per
    element constant over H and W) it is GroupNormalization with one group, and over each channel's
    pixels (``axis`` 2; a scale and bias constant over them) InstanceNormalization: the same layers as
    those operators' files, onnxruntime's numbers, odd sizes too."""
    proto = image_layernorm(**kw)
    imp = import_onnx(proto, "ln")
    norm = group_norm(like, channels=kw.get("c", 8), groups=1)
    assert Counter(l.kind for l in imp.model.layers) == Counter(l.kind for l in import_onnx(norm, like).model.layers)
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_qdq_layernorm_over_an_image_keeps_the_file_s_scales():
    """QuantizeLinear/DequantizeLinear around it: the normalisation's last layer (the bias's add) has the
    file's output scale, its input the file's input scale."""
    imp = import_onnx(image_layernorm(qdq=True), "ln")
    conv, *_, shift, head = imp.model.layers
    assert (shift.kind, imp.act_scales[conv.name], imp.act_scales[shift.name]) == ("add", 1 / 32, 1 / 16)


@pytest.mark.parametrize("kw, needles", [
    ({"axis": 1, "affine": "pixels"}, ("over the channels and pixels (GroupNormalization with one group) of a "
                                       "[1, 8, 6, 10] image whose scale 'norm.weight' and bias 'norm.bias' vary over "
                                       "the pixels", "supported: a scale and a bias per channel")),
    ({"axis": 2, "affine": "pixels"}, ("over the pixels (InstanceNormalization)", "constant over H and W"))],
    ids=["axis1", "axis2"])
def test_a_layernorm_over_an_image_with_a_scale_per_pixel_is_refused_in_one_line(kw, needles):
    _refused(image_layernorm(**kw), "(LayerNormalization)", *needles)


def _qdq_attention(scale: float):
    """Tokens -> q and k (int8 weights behind DequantizeLinear), ``(q @ k^T) * scale`` -> Softmax."""
    from onnx import numpy_helper

    rng = np.random.default_rng(3)
    n, c = 6, 8
    inits, nodes = [numpy_helper.from_array(np.array(scale, np.float32), "sc")], []
    for name in ("q", "k"):
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (c, c)).astype(np.int8), f"w{name}_q"),
                  numpy_helper.from_array(np.array(0.01, np.float32), f"w{name}_s"),
                  numpy_helper.from_array(np.array(0, np.int8), f"w{name}_z")]
        nodes += [helper.make_node("DequantizeLinear", [f"w{name}_q", f"w{name}_s", f"w{name}_z"], [f"w{name}"]),
                  helper.make_node("MatMul", ["tok", f"w{name}"], [name])]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "sc"], ["ss"]),
              helper.make_node("Softmax", ["ss"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "qdq_attention", [helper.make_tensor_value_info("tok", TensorProto.FLOAT, [1, n, c])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("scale", [0.25, -0.25])
def test_a_scale_folded_into_qdq_weights_scales_their_int8_values_too(scale):
    """``(q @ k^T) * s`` folds ``s`` into q's weights: a QDQ file's int8 weights must stand for the
    folded values (their scales take ``s``), else the accelerator computes q ``1/s`` times too large
    (a user's file: softmax rows flat).  A factor below 0 is a Mul layer (int8 values keep their sign)."""
    proto = _qdq_attention(scale)
    imp = import_onnx(proto, "qdq_attention")
    assert imp.weight_q
    for name, (wq, s_w) in imp.weight_q.items():
        w = imp.weights[name]["weight"]
        deq = wq.astype(np.float64) * np.asarray(s_w).reshape((-1,) + (1,) * (wq.ndim - 1))
        np.testing.assert_allclose(deq, w if w.shape == deq.shape else w.T, rtol=1e-6, err_msg=name)
    assert any(l.kind == "mul" for l in imp.model.layers) == (scale < 0)
    assert _max_rel_error(proto, imp) <= RTOL


def _conv_graph(pads=(0, 0, 0, 0), bias: int | None = None, twice: bool = False):
    """A 3x3 convolution of 4 channels to 4 (a bias of ``bias`` values), its output ``y`` (defined
    a second time by a Relu when ``twice``)."""
    g = Graph()
    inputs = ["x", g.init("w", np.full((4, 4, 3, 3), 0.1, np.float32))]
    if bias is not None:
        inputs.append(g.init("b", np.zeros(bias, np.float32)))
    nodes = [helper.make_node("Conv", inputs, ["y"], kernel_shape=[3, 3], pads=list(pads))]
    if twice:
        nodes.append(helper.make_node("Relu", ["y"], ["y"]))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("proto, needles", [
    (_conv_graph(pads=(-1, -1, -1, -1)), ("(Conv)", "pads [-1, -1, -1, -1]", "none negative")),
    (_conv_graph(bias=7), ("(Conv)", "a bias of shape [7] for 4 output channels")),
    (_conv_graph(twice=True), ("(Relu)", "it defines 'y', which is already defined"))])
def test_a_malformed_file_is_refused_at_its_node(proto, needles):
    """Files onnxruntime refuses (negative padding, a bias of the wrong length, a value defined twice)
    were imported: timed as if valid, then a numpy error in make run."""
    _refused(proto, *needles)


@pytest.mark.parametrize("case", [
    {"kernel": (1, 5), "pads": (0, 2, 0, 2)},
    {"kernel": (5, 1), "pads": (2, 0, 2, 0)},
    {"kernel": (3, 3), "pads": (0, 0, 1, 1), "stride": 2},
    {"kernel": (3, 3), "stride": 2, "auto_pad": "SAME_UPPER"},
    {"kernel": (2, 2), "auto_pad": "SAME_LOWER"},
    {"kernel": (1, 5), "pads": (0, 2, 0, 2), "group": 3},
], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()).replace(" ", ""))
def test_padding_that_differs_between_sides_is_imported(case):
    """ONNX pads (top, left, bottom, right) that differ, as 1xk kernels and TensorFlow's SAME padding
    write them: the convolution keeps them, and its outputs match onnxruntime's."""
    proto = uneven_conv(**case)
    imp = import_onnx(proto, "uneven")
    odd = next(l for l in imp.model.layers if isinstance(l, Conv2d))
    assert isinstance(odd.padding, tuple) and len(set(odd.pads)) > 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, attrs, shape", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]}, (1, 8, 8, 8)),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, (1, 4, 10, 12)),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 2, 2]}, (1, 4, 9, 9)),
], ids=["max-0011", "max-same-s2", "avg-1122"])
def test_a_pooling_padded_more_at_the_end_is_pytorchs_ceil_mode(op, attrs, shape):
    """TensorFlow's SAME pooling pads one more at the bottom and right.  Where that only adds the
    windows PyTorch's ceil_mode adds, and the padding never counts, it is that pool; onnxruntime agrees."""
    proto = single_op(op, shape, **attrs)
    imp = import_onnx(proto, "pool")
    pool = next(l for l in imp.model.layers if l.kind == "pool")
    assert isinstance(pool.padding, int)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, attrs, shape", [
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, (1, 4, 1, 1)),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, (1, 4, 1, 5)),
    ("AveragePool", {"kernel_shape": [4, 4], "strides": [4, 4], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                     "count_include_pad": 1}, (1, 4, 2, 1)),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [3, 3], "ceil_mode": 1}, (1, 4, 2, 7)),
], ids=["ofa-1x1", "ofa-1x5", "avg-counted-p1", "max-k3-s3"])
def test_a_ceil_mode_window_longer_than_its_input_is_one_window(op, attrs, shape):
    """A ``ceil_mode`` window up to ``stride - 1`` longer than the padded input (OFA-ResNet's
    downsample AvgPool 2x2/2 of a 1-pixel side) is one window of what it holds, a ``Pool`` layer;
    onnxruntime agrees."""
    proto = single_op(op, shape, **attrs)
    imp = import_onnx(proto, "pool")
    assert [l.kind for l in imp.model.layers] == ["pool"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("attrs, needle", [
    ({"kernel_shape": [2, 2], "strides": [2, 2]}, r"room for a 2x2 window padded by 0 \(PyTorch's rule\)"),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
     r"room for a 3x3 window padded by 0 \(PyTorch's rule; with ceil_mode at most stride - 1 = 1 past it\)"),
], ids=["no-ceil", "ceil-by-stride"])
def test_a_window_pytorch_gives_no_output_is_refused(attrs, needle):
    with pytest.raises(OnnxImportError, match=needle):
        import_onnx(single_op("AveragePool", (1, 4, 1, 1), **attrs), "pool")


@pytest.mark.parametrize("op, attrs, shape", [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 1, 1]}, (1, 8, 13, 13)),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_UPPER"}, (1, 8, 6, 9)),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 0, 1, 0]}, (1, 8, 8, 8)),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 1, 1], "count_include_pad": 1},
     (1, 4, 7, 5)),
], ids=["darknet-0011", "same-stride-1", "top-not-left", "avg-counted-s1"])
def test_a_pooling_padded_unevenly_is_the_evenly_padded_pool_then_a_crop(op, attrs, shape):
    """Darknet's (tiny-YOLOv2 in the ONNX model zoo) 2x2 max pool of stride 1, padded at the bottom
    and right to keep the size, was refused: the pool padded on every side by the largest pad, then
    a crop of the windows ONNX has (the same windows, so a counted padding counts alike)."""
    proto = single_op(op, shape, **attrs)
    imp = import_onnx(proto, "pool")
    assert [l.kind for l in imp.model.layers] == ["pool", "crop"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, attrs", [
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1], "count_include_pad": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [0, 0, 2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1], "ceil_mode": 1}),
], ids=["avg-counted-off-stride", "more-windows", "ceil"])
def test_a_pooling_padding_that_differs_otherwise_is_refused(op, attrs):
    _refused(single_op(op, **attrs), op, str(attrs.get("pads", [0, 0, 1, 1])), "same padding on every side")


NOT_SQUARE_POOLS = [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 1], "pads": [0, 1, 0, 1]}, ["pool", "crop"]),
    ("MaxPool", {"kernel_shape": [2, 1], "strides": [2, 1]}, ["resize", "pool"]),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}, ["resize", "pool", "crop"]),
    ("MaxPool", {"kernel_shape": [1, 3], "strides": [1, 2], "pads": [0, 1, 0, 1], "ceil_mode": 1},
     ["resize", "pool", "crop"]),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 1], "auto_pad": "SAME_UPPER"}, ["pool", "crop"]),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 1]}, ["resize", "pool", "crop"]),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 1], "pads": [1, 1, 1, 1], "count_include_pad": 1},
     ["pool", "crop"]),
    ("AveragePool", {"kernel_shape": [3, 1], "strides": [1, 1], "pads": [1, 0, 1, 0]}, ["resize", "pool", "crop"]),
]


@pytest.mark.parametrize("opset", [11, 19])
@pytest.mark.parametrize("op, attrs, kinds", NOT_SQUARE_POOLS, ids=[f"{op}-{a['kernel_shape']}-{a['strides']}-{i}"
                                                                  for i, (op, a, _) in enumerate(NOT_SQUARE_POOLS)])
def test_a_pooling_window_not_square_or_strides_that_differ_is_a_square_pool(op, attrs, kinds, opset):
    """CRNN's 2x2 max pool of strides (2, 1) padded (0, 1), and windows of k x 1, were refused: the
    IR's pooling is square.  A nearest upsample makes the window square, the pool runs at the strides'
    common divisor and a crop keeps ONNX's windows; onnxruntime agrees."""
    proto = single_op(op, (1, 4, 9, 11), opset=opset, **attrs)
    imp = import_onnx(proto, "pool")
    assert [l.kind for l in imp.model.layers] == kinds
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, attrs, needle", [
    ("AveragePool", {"kernel_shape": [3, 1], "pads": [1, 0, 1, 0], "count_include_pad": 1}, "count_include_pad 1"),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 1], "pads": [0, 1, 0, 1], "count_include_pad": 1},
     "count_include_pad 1"),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 1], "pads": [0, 2, 0, 2]}, "at most half that window"),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 1], "ceil_mode": 1}, "ceil_mode 0"),
    ("MaxPool", {"kernel_shape": [16, 17], "strides": [1, 1]}, "lcm(kh, kw) of at most 255"),
], ids=["counted-rows-only", "counted-uneven", "pad-beyond-half", "dilated", "lcm-beyond-the-field"])
def test_a_pooling_not_square_that_no_square_pool_gives_is_refused(op, attrs, needle):
    _refused(single_op(op, (1, 4, 18, 22), **attrs), op, str(attrs["kernel_shape"]), needle)

SPACE_TO_DEPTH = [(2, "conv", "op", ["space_to_depth"]), (2, "relu", "op", ["space_to_depth", "relu"]),
                  (2, "output", "op", ["space_to_depth"]), (3, "conv", "op", ["space_to_depth"]),
                  (6, "conv", "op", ["space_to_depth"]), (2, "conv", "unshuffle", ["space_to_depth"]),
                  (3, "conv", "unshuffle", ["space_to_depth"]), (2, "relu", "unshuffle", ["relu"])]


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("block, after, form, kinds", SPACE_TO_DEPTH,
                         ids=[f"{f}-{b}-{a}" for b, a, f, _ in SPACE_TO_DEPTH])
def test_space_to_depth_is_one_layer_whatever_its_block(block, after, form, kinds, opset):
    """SpaceToDepth (and PyTorch's pixel_unshuffle written out, read by a convolution) is the IR's
    ``SpaceToDepth``, one pass; pixel_unshuffle's channel order the convolution's weights take.  It was
    Swin's patch merge for a block of 2 read by convolutions only, else a crop of each block offset
    concatenated (ten passes for a block of 3), and a block of 3 unshuffled a channel shuffle more.
    onnxruntime agrees."""
    proto = space_to_depth(block, after, form, opset=opset)
    imp = import_onnx(proto, "s2d")
    assert [l.kind for l in imp.model.layers if l.kind != "conv2d"] == kinds
    assert _max_rel_error(proto, imp) <= RTOL


def test_space_to_depth_of_a_block_that_does_not_divide_the_image_is_refused():
    _refused(single_op("SpaceToDepth", (1, 8, 8, 6), blocksize=4), "SpaceToDepth", "blocksize 4 of a 8x6 image",
             "divides the height and the width")

ACTIVATION_CASES = [("Tanh", {}, "tanh"), ("HardSwish", {}, "hardswish"), ("HardSigmoid", {}, "hardsigmoid"),
                    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardsigmoid"), ("LeakyRelu", {"alpha": 0.1}, "leaky_relu"),
                    ("LeakyRelu", {}, "leaky_relu"), ("Elu", {"alpha": 0.5}, "elu"), ("Clip", {"min": 0, "max": 6}, "clip"),
                    ("Clip", {"max": 1.5}, "clip"), ("Clip", {"min": 0}, "relu"), ("Softplus", {}, "softplus"),
                    ("Softsign", {}, "softsign"), ("Selu", {}, "selu"), ("Selu", {"alpha": 1.5, "gamma": 2.0}, "selu"),
                    ("Mish", {"opset": 18}, "mish"), ("Gelu", {"opset": 20, "approximate": "tanh"}, "gelu_tanh"),
                    ("Swish", {"opset": 24}, "swish"), ("Swish", {"opset": 24, "alpha": 1.5}, "swish"),
                    ("Celu", {}, "celu"), ("Celu", {"alpha": 0.5}, "celu"), ("ThresholdedRelu", {}, "thresholded_relu"),
                    ("ThresholdedRelu", {"alpha": 0.25}, "thresholded_relu")]


@pytest.mark.parametrize("op, attrs, func", ACTIVATION_CASES,
                         ids=[f"{op}-{'-'.join(map(str, a.values()))}" for op, a, _ in ACTIVATION_CASES])
def test_activations_import_as_tables_matching_onnxruntime(op, attrs, func):
    """MobileNet's ReLU6 (Clip 0..6) and hard swish, tanh, leaky ReLU, ELU: each an Activation
    (``mapper.float_ops.ACTIVATIONS``), a table on the accelerator; the float reference matches onnxruntime."""
    proto = activation_graph(op, **attrs)
    imp = import_onnx(proto, "act")
    act = next(l for l in imp.model.layers if l.kind not in ("conv2d",))
    assert act.func == func and len(act.params) == len(ACTIVATIONS[func][1])
    assert _max_rel_error(proto, imp) <= RTOL


_POSITIVE = ["abs", "constant", "add"]          # |a| + 0.25
MATH_CASES = {"exp": ["exp"], "erf": ["erf"], "abs": ["abs"], "log": _POSITIVE + ["log"], "sqrt": _POSITIVE + ["sqrt"],
              "reciprocal": _POSITIVE + ["reciprocal"], "pow2": _POSITIVE + ["pow"], "pow-1.5": _POSITIVE + ["pow"],
              "neg": ["relu", "constant", "mul", "add"],                  # -relu(a): no fold under a ReLU
              "div": ["abs", "constant", "add", "reciprocal", "mul"],
              "const_div": ["constant", "exp", "constant", "add", "reciprocal", "mul"],
              "l2norm": ["pow", "conv2d", "sqrt", "clip", "reciprocal", "mul"],
              "sum_square": ["pow", "conv2d", "mul"], "mean": ["conv2d", "add"], "sum_dropped": ["conv2d", "mul"],
              "pixel_sum": ["pool", "constant", "mul", "add"], "tokens_mean": ["linear", "add"]}


@pytest.mark.parametrize("case", MATH_CASES)
def test_elementwise_math_and_reductions_match_onnxruntime(case):
    """Functions of one element (Exp, Log, Sqrt, Reciprocal, Abs, Erf, Pow by a constant: tables,
    poles saturated), Neg, a division by an activation (``a * (1 / b)``), and sums or means over
    the channels (a product by constant weights of ones) or the pixels (a pooling times their count),
    ReduceL2 and ReduceSumSquare among them, were refused; each imports as those layers (after the
    image's two convolutions, before the head) and its float reference matches onnxruntime."""
    proto = elementwise_math(case)
    imp = import_onnx(proto, case)
    kinds = [l.kind for l in imp.model.layers if l.name.split(".")[0] not in ("a", "b", "head")]
    assert kinds == MATH_CASES[case]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_channel_sum_is_one_repeated_weight():
    """``ReduceSum`` over the channels is a 1x1 convolution of one output channel, every weight 1: exact in int8."""
    imp = import_onnx(elementwise_math("sum_dropped"), "sum")
    conv = [l for l in imp.model.layers if l.kind == "conv2d"][2]
    w = imp.weights[conv.name]["weight"]
    assert (conv.in_ch, conv.out_ch, conv.kernel) == (8, 1, (1, 1)) and np.all(w == 1)


@pytest.mark.parametrize("form", ["export", "instance", "op18", "op21"])
def test_group_and_instance_norms_are_composed_and_match_onnxruntime(form):
    """GroupNorm (PyTorch's export, and ONNX's operator with a scale per group or per channel) and
    InstanceNorm, refused before: a mean over the pixels (pooling), over the group (a 1x1 convolution),
    the square, ``1 / sqrt(var + eps)`` (tables) and products."""
    proto = group_norm(form)
    imp = import_onnx(proto, form)
    kinds = Counter(l.kind for l in imp.model.layers)
    groups = 0 if form == "instance" else 2            # a group's mean and variance: a convolution each
    assert (kinds["pool"], kinds["pow"], kinds["rsqrt"], kinds["conv2d"]) == (2, 1, 1, 2 + groups)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, keep", [("ReduceSum", 0), ("ReduceMean", 1), ("ReduceL2", 0)])
def test_a_reduction_over_the_channels_of_flattened_pixels_is_a_convolution_by_ones(op, keep):
    """``[1, C, H*W]`` (an image's flattened pixels) reduced over axis 1, its channels: refused before
    with a message saying channels are supported; a 1x1 convolution of the image by ones."""
    g = Graph(3)
    x = g.op("Conv", ["input", g.weight("w", 8, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    r = g.reshape(x, [1, 8, -1])
    y = g.op(op, [r, g.const([1])] if op == "ReduceSum" else [r], "", keepdims=keep,
             **({} if op == "ReduceSum" else {"axes": [1]}))
    proto = g.model([image_input(3, 6, 10, "input")], [out(g.op("Sigmoid", [y], ""))])
    imp = import_onnx(proto, "flat")
    ones = [l for l in imp.model.layers if l.kind == "conv2d"][1]
    assert (ones.in_ch, ones.out_ch, ones.kernel) == (8, 1, (1, 1))
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("kernel", [3, 5])
def test_a_1d_convolution_along_a_pixel_s_channels_is_a_band_of_weights(kernel):
    """ECA's ``Conv1d(1, 1, k)`` over the pooled channels, refused before (2-D convolutions only): a
    1x1 convolution of the pooled pixel whose weights hold the kernel on a band."""
    proto = eca(kernel=kernel)
    imp = import_onnx(proto, "eca")
    band = [l for l in imp.model.layers if l.kind == "conv2d"][1]
    assert (band.in_ch, band.out_ch, band.kernel, band.in_h * band.in_w) == (16, 16, (1, 1), 1)
    w = imp.weights[band.name]["weight"].reshape(16, 16)
    assert np.count_nonzero(w[8]) == kernel and np.count_nonzero(w[0]) == kernel // 2 + 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pads, stride", [([2, 0], 1), ([1, 1], 2), ([0, 0], 3)])
def test_a_strided_or_unevenly_padded_1d_convolution_along_channels_matches_onnxruntime(pads, stride):
    g = Graph(31)
    m = g.reshape(g.op("GlobalAveragePool", ["input"], ""), [1, 1, -1])
    y = g.op("Conv", [m, g.weight("w", 1, 1, 3, scale=1.0), g.weight("b", 1)], "", kernel_shape=[3], pads=pads,
             strides=[stride])
    proto = g.model([image_input(10, 4, 4, "input")], [out(g.op("Sigmoid", [y], ""))])
    assert _max_rel_error(proto, import_onnx(proto, "c1d")) <= RTOL


SEQUENCE_CONVS = {"k3": {"pads": [1, 1]}, "depthwise": {"group": 8, "out_channels": 8, "pads": [1, 1]},
                  "stride2-dilation2": {"strides": [2], "dilations": [2], "pads": [2, 1]},
                  "same-upper-stride2": {"kernel": 4, "auto_pad": "SAME_UPPER", "strides": [2]},
                  "valid-opset11": {"kernel": 5, "auto_pad": "VALID", "opset": 11}}


@pytest.mark.parametrize("case", SEQUENCE_CONVS)
def test_a_1d_convolution_of_a_sequence_input_is_a_2d_one_of_a_row(case):
    """A ``[1, C, L]`` input read by ``Conv1d`` (refused before: 1-D convolutions along one pixel's channels
    only) is a row of L pixels; each convolution a ``1 x k`` one of equal strides (the row's single
    output pixel takes any stride: no crop)."""
    proto = sequence_conv(**SEQUENCE_CONVS[case])
    imp = import_onnx(proto, "seq")
    (conv,) = imp.model.layers
    assert imp.model.input == (1, 20, 8) and conv.kernel[0] == 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("graph", ["conformer", "conformer_column", "conformer_no_bn", "wav2vec", "flattened_pixels"])
def test_1d_convolutions_of_tokens_and_rows_match_onnxruntime(graph):
    """A conformer's convolution module (pointwise, depthwise k=7 with its BatchNorm1d folded), wav2vec's
    strided feature extractor, and a ``Conv1d`` along an image's pixels flattened (``[1, C, H*W]``, a
    pixel reshape): ``Conv2d`` over the tokens' column (``k x 1``) or a row (``1 x k``)."""
    g = Graph(32)
    x = g.reshape(g.op("Conv", ["input", g.weight("w", 4, 3, 1, 1)], "", kernel_shape=[1, 1]), [1, 4, -1])
    flat = g.model([image_input(3, 4, 4, "input")], [out(g.op("Conv", [x, g.weight("w1", 4, 4, 3)], "",
                                                                 kernel_shape=[3], pads=[1, 1]))])
    proto = {"conformer": conformer_conv(), "conformer_column": conformer_conv(cols=1),
             "conformer_no_bn": conformer_conv(bn=False), "wav2vec": wav2vec_features(),
             "flattened_pixels": flat}[graph]
    imp = import_onnx(proto, "c1d")
    assert "batchnormalization" not in {l.kind for l in imp.model.layers} and "crop" not in {l.kind for l in imp.model.layers}
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_1d_convolution_over_tokens_not_transposed_is_refused_in_one_line():
    """``Conv1d`` of ``[1, N, C]`` tokens as they are takes the N tokens as its channels: no layout layer
    transposes tokens and channels."""
    g = Graph(32)
    x = g.linear("x", 16, 16, "/fc")
    y = g.op("Conv", [x, g.weight("w1", 10, 10, 3)], "", kernel_shape=[3], pads=[1, 1])
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 16])], [out(y)])
    _refused(proto, "(Conv)", "1-D convolution of weights [10, 10, 3] over a [1, 10, 16] input",
             "a tensor's channels")


@pytest.mark.parametrize("h, w", [(6, 10), (8, 8)])
def test_coordinate_attention_reads_its_columns_as_rows_in_place(h, w):
    """CoordAtt, refused before (its ``1 x W`` column attention was a ``W x 1`` tensor, which IR
    broadcasting does not take along the rows): the split map's two parts are views of its pixels
    (``PixelReshape``: the rows' from pixel 0, the columns' from pixel ``H`` as ``1 x W``), where
    crops copied them before."""
    from mapper.layout import storage_plan

    proto = coord_attention(h, w)
    imp = import_onnx(proto, "coordatt")
    views = [l for l in imp.model.layers if l.kind == "pixel_reshape"]
    assert [(v.start, v.out_h, v.out_w) for v in views] == [(0, h, 1), (h, 1, w)]
    assert not {"crop", "pad"} & {l.kind for l in imp.model.layers}
    split = views[0].inputs[0]                     # the shared convolution's HardSwish, split in two
    storage = storage_plan(imp.model)
    assert [(storage[v.name].buffer, storage[v.name].pixel) for v in views] == [(split, 0), (split, h)]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("parts", [1, 2, 4])
def test_a_variadic_sum_is_adds_one_after_the_other(parts):
    """``Sum`` (tf2onnx's AddN, old converters), refused before; one input is that input."""
    g = Graph(39)
    ins = [g.op("Conv", ["input", g.weight(f"w{k}", 8, 3, 1 + 2 * k, 1 + 2 * k)], "", kernel_shape=[1 + 2 * k] * 2,
                pads=[k] * 4) for k in range(parts)]
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op("Relu", [g.op("Sum", ins, "")], ""))], 9)
    imp = import_onnx(proto, "sum")
    assert [l.kind for l in imp.model.layers].count("add") == parts - 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("parts", [2, 3])
def test_a_variadic_mean_is_its_sum_times_the_inverse_count(parts):
    """``Mean`` (an ensemble's average) was refused as unsupported: the adds of ``Sum``, then a product."""
    g = Graph(39)
    ins = [g.op("Conv", ["input", g.weight(f"w{k}", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
           for k in range(parts)]
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op("Conv", [g.op("Mean", ins, ""), g.weight("h", 4, 8, 1, 1)], "",
                                                                    kernel_shape=[1, 1]))])
    imp = import_onnx(proto, "mean")
    assert [l.kind for l in imp.model.layers].count("add") == parts - 1
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pick", ["flip", "gather"])
def test_channels_picked_from_an_image_are_picked_by_the_convolution_s_weights(pick):
    """A BGR-to-RGB flip of the input (``x[:, ::-1]``) or a Gather of channels (repeated, out of
    order) read by a convolution, refused before (no layout layer picks channels): the convolution
    reads the image, its weights summed onto the channels picked."""
    g = Graph(40)
    if pick == "flip":
        x = g.op("Slice", ["input", g.const([-1]), g.const([-4]), g.const([1]), g.const([-1])], "")
    else:
        c = g.op("Conv", ["input", g.weight("w0", 6, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
        x = g.op("Gather", [c, g.const([4, 0, 0, 5])], "", axis=1)
    y = g.op("Conv", [x, g.weight("w", 8, 3 if pick == "flip" else 4, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    imp = import_onnx(proto, pick)
    convs = [l for l in imp.model.layers if l.kind == "conv2d"]
    assert [l.kind for l in imp.model.layers] == ["conv2d"] * len(convs) and convs[-1].in_ch == (3 if pick == "flip" else 6)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("project, gfl", [("vector", False), ("column", False), ("matrix", False), ("vector", True),
                                          ("matrix", True)])
def test_a_product_of_rows_of_a_pixel_s_channels_by_constants_is_a_grouped_pointwise_convolution(project, gfl):
    """NanoDet's integral (``softmax(x.reshape(1, A, 4, 8)) @ arange(8)``) and GFL's (of
    ``x.reshape(-1, 8)``) were refused (a 1-D constant, then rows of 8 of a pixel's 32 channels): a
    1x1 convolution in 4 groups, each applying the constants, as YOLOv8's DFL is."""
    proto = integral(project, gfl=gfl)
    imp = import_onnx(proto, "nanodet")
    conv = imp.model.layers[-1]
    assert (conv.kind, conv.groups, conv.in_ch, conv.kernel) == ("conv2d", 4, 32, (1, 1))
    assert conv.out_ch == 4 * (3 if project == "matrix" else 1)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("ctm, rounding, size, accepted", [
    ("half_pixel", "round_prefer_floor", (16, 24), True),         # Keras and tf2onnx's nearest x2
    ("half_pixel", "round_prefer_ceil", (24, 24), True),          # x3
    ("tf_half_pixel_for_nn", "floor", (16, 16), True),
    ("align_corners", "round_prefer_floor", (3, 3), False),       # 8 -> 3 rows: rows 0, 3, 7, not 0, 2, 5
    ("half_pixel", "round_prefer_floor", (12, 12), True),         # x1.5
    ("half_pixel", "round_prefer_ceil", (12, 12), False),         # x1.5: a tie at row 1 goes to source 1, not 0
])
def test_a_nearest_resize_of_any_coordinates_that_pick_the_accelerators_pixels_is_imported(ctm, rounding, size, accepted):
    """Only asymmetric with floor was accepted; whatever the transformation and the rounding, the
    source pixels are what matters: those of floor(i * in / out) are the accelerator's resize."""
    g = Graph(44)
    x = g.op("Conv", ["input", g.weight("w", 4, 3, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op("Resize", [x, "", "", g.const([1, 4, *size])], "", mode="nearest", coordinate_transformation_mode=ctm,
             nearest_mode=rounding)
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    if accepted:
        assert _max_rel_error(proto, import_onnx(proto, "resize")) <= RTOL
    else:
        _refused(proto, "(Resize)", f"coordinate_transformation_mode={ctm!r}", "source pixels are floor(i * 8/")


@pytest.mark.parametrize("max_op", ["GlobalMaxPool", "ReduceMax"])
def test_a_max_over_every_pixel_is_a_max_pooling_of_the_whole_image(max_op):
    """CBAM's channel attention, refused before: ``AdaptiveMaxPool2d(1)`` and ``amax(dim=(2, 3))``
    are one max pooling whose window is the image."""
    proto = channel_attention(max_op=max_op)
    imp = import_onnx(proto, "cbam")
    pools = [l for l in imp.model.layers if l.kind == "pool"]
    assert [(p.mode, p.kernel, p.stride) for p in pools if p.mode == "max"] == [("max", 8, 8)]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("max_op", ["GlobalMaxPool", "ReduceMax"])
@pytest.mark.parametrize("size, windows", [(300, [(150, True), (2, False)]), (257, [(129, True), (2, False)])])
def test_a_max_over_more_pixels_than_a_window_holds_is_maxima_of_maxima(max_op, size, windows):
    """A whole-image window wider than the pooling stage's kernel field (255): windows of at most that
    side, the last one past the image taking what it holds (ceil_mode), then their maximum."""
    proto = channel_attention(size=size, max_op=max_op)
    imp = import_onnx(proto, "cbam")
    pools = [(p.kernel, p.ceil_mode) for p in imp.model.layers if p.kind == "pool" and p.mode == "max"]
    assert pools == windows
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("kw, steps", [({}, 4), ({"width": 16, "keepdims": 0}, 4), ({"width": 5, "opset": 18}, 3)])
def test_cbam_s_max_over_the_channels_is_a_tree_of_comparisons(kw, steps):
    """CBAM's spatial attention (``amax(x, 1)`` beside the channels' mean, both into a 7x7 convolution),
    refused before: the first and last ceil(C/2) channels (views) compared as ``b + relu(a - b)`` (a
    product by -1, an add with its ReLU, an add) until one channel is left: 12 channels in 4 steps
    (6, 3, 2, 1), 5 in 3.  No MACs but the convolutions'; onnxruntime's numbers."""
    proto = spatial_attention(**kw)
    imp = import_onnx(proto, "cbam_spatial")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert (kinds["mul"], kinds["add"], kinds["relu"], kinds["conv2d"]) == (steps + 1, 2 * steps, steps, 4)
    relus = [l for l in imp.model.layers if l.kind == "relu"]
    assert all(r.fused for r in relus)                   # each applied by its subtraction's add pass
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("max_op", ["GlobalMaxPool", "ReduceMax"])
@pytest.mark.parametrize("size, side", [((5, 8), 8), ((11, 4), 11), ((260, 7), 260)])
def test_a_max_over_an_image_that_is_not_square_takes_it_upsampled_to_a_square(max_op, size, side):
    """Refused before (the IR's windows are square): the shorter axis' nearest upsample keeps every
    pixel, so the whole-image window of the longer side takes the same maximum (beyond 255 a side,
    maxima of maxima as for a square image)."""
    proto = channel_attention(size=size, max_op=max_op)
    imp = import_onnx(proto, "cbam")
    squares = [(l.mode, l.out_h, l.out_w) for l in imp.model.layers if l.kind == "resize"]
    assert squares == [("nearest", side, side)]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("op, shape, attrs, needle", [
    ("MaxPool", (1, 8, 300, 300), {"kernel_shape": [300, 300], "strides": [300, 300]}, "at most 255 a side"),
    ("ReduceMax", (1, 8, 8, 8), {"axes": [1, 2]}, "a max over axes [1, 2] of a [1, 8, 8, 8] tensor"),
    ("ReduceMax", (1, 8, 8, 8), {"axes": [1, 3]}, "supported: over all pixels of each channel (max pooling), all rows "
                                                  "or all columns of each channel, or over all channels of each pixel")])
def test_a_max_the_pooling_cannot_take_is_refused_in_one_line(op, shape, attrs, needle):
    _refused(single_op(op, shape=shape, **attrs), f"({op})", needle)


@pytest.mark.parametrize("kw", [
    {"axes": [2]}, {"axes": [3]}, {"axes": [-1], "keepdims": 0}, {"axes": [2], "keepdims": 0, "c": 5, "size": (7, 3)},
    {"axes": [3], "c": 5, "size": (7, 3)}, {"axes": [1], "nhwc": True}, {"axes": [2], "nhwc": True, "size": (5, 9)},
    {"axes": [2], "size": (1, 6)}, {"axes": [3], "c": 2, "size": (300, 2)}],
    ids=["rows", "columns", "last_dropped", "rows_odd_dropped", "columns_odd", "nhwc_rows", "nhwc_columns",
         "one_row", "tall"])
def test_a_max_over_an_image_s_rows_or_columns_is_a_tree_of_comparisons(kw):
    """``amax`` over H or W of an image (or of its NHWC transpose) was refused, only whole images and
    channels taken: the first and last halves of the rows (columns) compared as ``b + relu(a - b)``
    until one is left, ``ceil(log2 H)`` steps; no pooling, no MACs but the convolution's.  onnxruntime's
    numbers."""
    proto = line_max(**kw)
    imp = import_onnx(proto, "amax")
    h, w = kw.get("size", (6, 10))
    n = h if kw["axes"] in ([2], [1]) and not (kw.get("nhwc") and kw["axes"] == [2]) else w
    assert sum(l.kind == "relu" for l in imp.model.layers) == (n - 1).bit_length() + 1    # + the graph's ReLU
    assert [l.kind for l in imp.model.layers if l.kind in ("pool", *MAC_KINDS)] == ["conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "dilations": [2, 2]}, {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2] * 4},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 2], "pads": [1, 2, 2, 1]},
    {"kernel_shape": [2, 3], "dilations": [3, 2], "strides": [1, 2], "pads": [1, 1, 1, 0]},
    {"kernel_shape": [5, 5], "dilations": [3, 3], "pads": [4] * 4},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1] * 4, "c": 5, "size": (7, 3)},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "c": 16, "size": (16, 16)}],
    ids=["valid", "padded", "strided_uneven", "rectangular", "5x5_d3", "odd", "rows_as_pixels"])
def test_a_dilated_max_pool_is_composed_and_matches_onnxruntime(attrs):
    """A ``MaxPool`` with ``dilations`` was refused: the image padded along each axis by copies of its
    phase's edge (an element of every window that reaches the padding: the maximum is unchanged),
    then the largest of each window's rows and of its columns (strided slices compared as
    ``b + relu(a - b)``).  No MACs but the two convolutions'; onnxruntime's numbers.  (At 16x16x16
    the first 12 rows, 192 pixels in raster order, were laid out as a 16x12 pixel reshape, whose
    columns no crop takes: each slice is made an image.)"""
    proto = dilated_max_pool(**attrs)
    imp = import_onnx(proto, "dilated")
    assert {l.kind for l in imp.model.layers} >= {"crop", "relu"} and "pool" not in {l.kind for l in imp.model.layers}
    assert [l.kind for l in imp.model.layers if l.kind in MAC_KINDS] == ["conv2d", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_dilated_max_pool_padded_same_is_padded_by_the_dilated_extent():
    """``auto_pad=SAME_UPPER`` pads by the dilated window's extent, as the specification says (and ONNX's
    reference evaluator computes; onnxruntime pads by the kernel and gives a smaller output)."""
    from onnx.reference import ReferenceEvaluator

    proto = dilated_max_pool(kernel_shape=[3, 3], dilations=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")
    imp = import_onnx(proto, "same")
    x = np.random.default_rng(0).normal(size=imp.model.input).astype(np.float32)
    want = ReferenceEvaluator(proto).run(None, {"input": L.gather(imp.input_view, x.ravel())})[0]
    (v,) = imp.outputs.values()
    got = L.gather(v, dict(reference.run_float(imp.model, imp.weights, x))[v.source].ravel())
    assert want.shape == (1, 4, 5, 5) and np.max(np.abs(got - want)) <= RTOL * np.max(np.abs(want))


@pytest.mark.parametrize("op, attrs, needle", [
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [3] * 4},
     "(axis 2: 9 long, 13 windows, those reading padding alone [0, 12])"),
    ("MaxPool", {"kernel_shape": [3, 3], "dilations": [2, 2], "ceil_mode": 1}, "ceil_mode 0"),
    ("AveragePool", {"kernel_shape": [3, 3], "dilations": [2, 2], "opset": 19},
     "dilations [2, 2] of an AveragePool; supported: dilation 1 (MaxPool: any)")])
def test_a_dilated_pool_that_cannot_be_composed_is_refused_in_one_line(op, attrs, needle):
    """(ONNX gives an ``AveragePool`` dilations from opset 19.)"""
    proto = dilated_max_pool(**attrs)
    next(n for n in proto.graph.node if n.op_type == "MaxPool").op_type = op
    _refused(proto, f"({op})", needle)


@pytest.mark.parametrize("attrs", [{}, {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}, {"size": 1, "opset": 7}])
def test_a_local_response_normalisation_is_composed_and_matches_onnxruntime(attrs):
    """AlexNet's LRN, refused before: the square and ``** -beta`` (tables), the sum over neighbouring
    channels (a 1x1 convolution of a band) and a product; its MACs are the band's convolution's."""
    proto = lrn(**attrs)
    imp = import_onnx(proto, "lrn")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert (kinds["pow"], kinds["conv2d"], kinds["mul"]) == (2, 3, 1)
    band = [l for l in imp.model.layers if l.kind == "conv2d"][1]
    assert (band.in_ch, band.out_ch, band.kernel) == (12, 12, (1, 1))
    assert _max_rel_error(proto, imp) <= RTOL


def test_an_even_local_response_window_reaches_one_channel_further_up():
    """ONNX's window for an even ``size`` is ``floor((size-1)/2)`` channels below, ``ceil`` above
    (onnxruntime refuses even sizes, and onnx.reference sums the wrong channels): the band's weights."""
    imp = import_onnx(lrn(size=4, alpha=4.0), "lrn")
    band = imp.weights[[l for l in imp.model.layers if l.kind == "conv2d"][1].name]["weight"].reshape(12, 12)
    assert np.array_equal(band[5], [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    assert np.array_equal(band[0], [1, 1, 1] + [0] * 9)


def _onnx_lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX's LRN of NCHW ``x`` as its specification writes it: ``floor((size-1)/2)`` channels below,
    ``ceil`` above."""
    c, below = x.shape[1], (size - 1) // 2
    square = np.stack([(x[:, max(0, k - below):k + size - below] ** 2).sum(1) for k in range(c)], 1)
    return x / (bias + alpha / size * square) ** beta


@pytest.mark.parametrize("attrs", [{"beta": -0.5}, {"size": 4, "alpha": 4.0}, {"size": 2, "beta": -0.75, "bias": 2.0}],
                         ids=["negative_beta", "even", "even_negative_beta"])
def test_a_local_response_normalisation_onnxruntime_refuses_computes_the_specification(attrs):
    """An even ``size`` and a negative ``beta`` are ONNX (onnxruntime refuses both: ``size_ % 2 == 1``,
    ``beta_ > 0``): the composed layers compute the specification's formula on the LRN's input, and
    for an odd size the whole graph agrees with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    proto = lrn(**attrs)
    imp = import_onnx(proto, "lrn")
    x = np.random.default_rng(0).normal(size=imp.model.input).astype(np.float32)
    ref = dict(reference.run_float(imp.model, imp.weights, x))
    stem, norm = imp.model.layers[0], next(l for l in imp.model.layers if l.name.endswith(".normalised"))
    relu, normalised = (ref[l.name].transpose(2, 0, 1)[None] for l in (stem, norm))        # HWC -> NCHW
    want = _onnx_lrn(relu, attrs.get("size", 5), attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))
    assert np.max(np.abs(normalised - want)) <= RTOL * np.max(np.abs(want))
    if attrs.get("size", 5) % 2:
        (v,) = imp.outputs.values()
        whole = ReferenceEvaluator(proto).run(None, {"data_0": L.gather(imp.input_view, x.ravel())})[0]
        assert np.max(np.abs(L.gather(v, ref[v.source].ravel()) - whole)) <= RTOL * np.max(np.abs(whole))


@pytest.mark.parametrize("attrs, needle", [({"size": 0}, "size 0"), ({"bias": -1.0}, "bias -1.0")])
def test_a_malformed_local_response_normalisation_is_refused_in_one_line(attrs, needle):
    _refused(lrn(**attrs), "(LRN)", needle)


@pytest.mark.parametrize("kw, kinds", [
    ({"p": 2, "axis": 1}, ["pow", "conv2d", "rsqrt", "mul"]),
    ({"p": 1, "axis": 1}, ["abs", "conv2d", "constant", "add", "reciprocal", "mul"]),
    ({"p": 2, "axis": -1}, ["pow", "pool", "constant", "mul", "rsqrt", "mul"]),
    ({"p": 1, "axis": 2, "c": 5, "size": (7, 3)}, ["abs", "pool", "constant", "mul", "constant", "add", "reciprocal", "mul"]),
    ({"p": 2, "axis": -1, "tokens": True}, ["pow", "linear", "rsqrt", "mul"]),
    ({"p": 1, "axis": 1, "c": 1, "relu": True}, ["abs", "constant", "add", "reciprocal", "mul"]),
    ({"p": 2, "axis": 1, "c": 2, "relu": True}, ["pow", "conv2d", "rsqrt", "mul"])],
    ids=["p2_channels", "p1_channels", "p2_columns", "p1_rows_odd", "p2_tokens", "p1_one_channel_zeros",
         "p2_zero_pixels"])
def test_an_lp_normalisation_is_composed_and_matches_onnxruntime(kw, kinds):
    """``LpNormalization`` (p 1 or 2), refused before: ``|x|`` or ``x ** 2`` (tables), the sum along the
    axis (over an image's channels a convolution of ones, over its rows or columns a pooling, over
    tokens' channels a linear), ``1 / sum`` or ``rsqrt`` (tables) and the product.  Pixels a ReLU
    zeroed whole give 0, as in onnxruntime (not NaN)."""
    proto = lp_norm(**kw)
    imp = import_onnx(proto, "lp")
    assert [l.kind for l in imp.model.layers][1:-1] == kinds
    assert _max_rel_error(proto, imp) <= RTOL


def test_an_lp_normalisation_of_another_order_is_refused_in_one_line():
    proto = lp_norm()
    next(n for n in proto.graph.node if n.op_type == "LpNormalization").attribute[1].i = 3
    _refused(proto, "(LpNormalization)", "p 3; supported: 1 and 2")


@pytest.mark.parametrize("case, ops", [("group_norm", ["Sqrt", "Reciprocal"]), ("gelu_tanh", ["Pow", "Tanh"])])
def test_an_exported_table_written_as_a_formula_computes_what_it_computed(case, ops):
    """A group norm's ``1 / sqrt(var + eps)`` table is written as ``Reciprocal(Sqrt(x + eps))``, the tanh
    GELU as its formula (``Gelu``'s ``approximate`` needs opset 20); they import as several layers,
    and onnxruntime on the written file agrees with the file imported."""
    from mapper.onnx_export import export_onnx

    proto = group_norm("export") if case == "group_norm" else activation_graph("Gelu", opset=20, approximate="tanh")
    imp = import_onnx(proto, case)
    written = export_onnx(imp.model, imp.weights)
    assert [n.op_type for n in written.graph.node if n.op_type in ops] == ops
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    (want,), (got,) = (ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {p.graph.input[0].name: x}) for p in (proto, written))
    assert np.max(np.abs(got - want)) <= RTOL * np.max(np.abs(want))


def _set_attribute(node, name: str, value) -> None:
    """``node``'s attribute ``name`` set to ``value`` (one attribute of that name, as ONNX allows)."""
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


@pytest.mark.parametrize("mutate, needle", [
    (lambda n: _set_attribute(n, "num_groups", 3), "num_groups 3 for 8 channels"),
    (lambda n: n.input.__setitem__(1, "input"), "must be a constant")])
def test_a_malformed_group_norm_is_refused_in_one_line(mutate, needle):
    proto = group_norm("op21")
    mutate(next(n for n in proto.graph.node if n.op_type == "GroupNormalization"))
    _refused(proto, "(GroupNormalization)", needle)


def test_an_instance_norm_of_channels_that_are_no_group_is_refused():
    """A reshape to [1, 2, -1] of a transposed image: a 'group' is half the pixels, not channels."""
    g = Graph()
    t = g.op("Transpose", ["x"], "", perm=[0, 2, 3, 1])
    n = g.op("InstanceNormalization", [g.reshape(t, [1, 2, -1]), g.init("s", np.ones(2, np.float32)),
                                       g.init("b", np.zeros(2, np.float32))], "")
    _refused(g.model([image_input(8, 4, 4, "x")], [out(n)]), "(InstanceNormalization)", "groups of consecutive channels")


@pytest.mark.parametrize("op, opset", [("LogSoftmax", 13), ("LogSoftmax", 11), ("Softmax", 11)])
def test_a_classifier_ending_in_log_softmax_or_an_opset_11_softmax_of_pooled_channels(op, opset):
    """``LogSoftmax`` (refused) is the softmax and the table of ``log``; before opset 13 a softmax over
    axis 1 of a ``[1, C, 1, 1]`` pooled map (trailing axes of size 1) is the softmax of its channels
    (refused as any axis but the last)."""
    g = Graph(3)
    x = g.op("GlobalAveragePool", [g.op("Conv", ["input", g.weight("c.weight", 10, 3, 3, 3)], "/c", pads=[1] * 4)])
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op(op, [x], "/head", axis=1))], opset)
    imp = import_onnx(proto, "head")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "pool", "softmax"] + (["log"] if op == "LogSoftmax" else [])
    assert _max_rel_error(proto, imp) <= RTOL
    g = Graph(3)
    x = g.op("Conv", ["input", g.weight("c.weight", 10, 3, 3, 3)], "/c", pads=[1] * 4)
    _refused(g.model([image_input(3, 8, 8, "input")], [out(g.op("Softmax", [x], "/head", axis=1))], 11),
             "axis 1 of a [1, 10, 8, 8] tensor before opset 13")


def test_a_clip_with_computed_or_crossed_bounds_is_refused():
    g = Graph(16)
    x = g.op("Relu", ["x"], "/r")
    _refused(g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                     [out(g.op("Clip", ["x", x], "/clip"))]), "(Clip)", "constant bounds")
    _refused(activation_graph("Clip", min=2, max=1), "(Clip)", "min 2.0 above max 1.0")


@pytest.mark.parametrize("op, attrs", [("Clip", {"max": 1.5}), ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}), ("Elu", {}),
                                      ("Exp", {}), ("Erf", {}), ("Abs", {})])
def test_an_exported_activation_imports_as_itself(op, attrs):
    """``mapper.onnx_export`` writes each activation with its parameters (a clip's missing bound left out)."""
    from mapper.onnx_export import export_onnx

    imp = import_onnx(activation_graph(op, **attrs), "act")
    again = import_onnx(export_onnx(imp.model, imp.weights), "act")
    assert [(l.func, l.params) for l in again.model.layers if l.kind != "conv2d"] == \
        [(l.func, l.params) for l in imp.model.layers if l.kind != "conv2d"]


@pytest.mark.parametrize("case", ["pow-1.5", "log", "reciprocal"])
def test_an_exported_table_with_a_pole_or_an_exponent_imports_as_itself(case):
    from mapper.onnx_export import export_onnx

    imp = import_onnx(elementwise_math(case), case)
    again = import_onnx(export_onnx(imp.model, imp.weights), case)
    assert [(l.kind, getattr(l, "params", ())) for l in again.model.layers] == \
        [(l.kind, getattr(l, "params", ())) for l in imp.model.layers]


@pytest.mark.parametrize("op, attrs", [("Mish", {"opset": 18}), ("Swish", {"opset": 24, "alpha": 1.702})])
def test_an_exported_gated_activation_is_its_decomposition_and_imports_back_whole(op, attrs):
    """Below their opsets (18, 24) the exporter writes Mish and Swish as their formulas, which the
    importer's patterns make one table again."""
    from mapper.onnx_export import OPSET, export_onnx

    imp = import_onnx(activation_graph(op, **attrs), op)
    proto = export_onnx(imp.model, imp.weights)
    assert OPSET < attrs["opset"] and op not in {n.op_type for n in proto.graph.node}
    again = import_onnx(proto, op)
    assert [l.kind for l in again.model.layers] == ["conv2d", op.lower(), "conv2d"]
    x = np.random.default_rng(1).normal(size=imp.model.input)
    first, second = dict(reference.run_float(imp.model, imp.weights, x)), dict(reference.run_float(again.model,
                                                                                                   again.weights, x))
    np.testing.assert_allclose(second[again.model.layers[-1].name], first[imp.model.layers[-1].name], rtol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(blocks=3, silu=False), dict(blocks=2, shortcut=False)],
                         ids=["1-block", "3-blocks-relu", "2-blocks-no-shortcut"])
def test_a_channel_split_is_a_view_of_its_tensor(kw):
    """YOLOv8's C2f: the bottlenecks read the second half of a ``Split`` (a
    :class:`~mapper.ir.ChannelSlice`, which moves no data), and ``Concat([a, b, m1, ...])`` reads
    the halves as the whole tensor they come from.  Both were refused."""
    from mapper.layout import storage_plan
    proto, macs = c2f(**kw)
    imp = import_onnx(proto, "c2f")
    [sl] = [l for l in imp.model.layers if l.kind == "channel_slice"]
    [cat] = [l for l in imp.model.layers if l.kind == "concat"]
    whole = imp.model.layers[1 if kw.get("silu", True) else 0].name      # cv1's output (after its SiLU)
    assert (sl.inputs, sl.start, sl.channels) == ((whole,), 8, 8)
    assert cat.inputs[0] == whole and len(cat.inputs) == 1 + kw.get("blocks", 1)
    storage = storage_plan(imp.model)
    assert (storage[sl.name].buffer, storage[sl.name].pitch, storage[sl.name].offset) == (cat.name, cat.out_shape[2], 8)
    assert imp.model.total_macs == macs
    assert _max_rel_error(proto, imp) <= RTOL
    from mapper.onnx_export import export_onnx          # and it exports as a Slice that imports back
    again = import_onnx(export_onnx(imp.model, imp.weights), "c2f").model
    assert [l.kind for l in again.layers] == [l.kind for l in imp.model.layers]


def test_dilated_convolutions_import_and_agree_with_onnxruntime():
    """DeepLab's atrous convolutions (``onnx_graphs.dilated``: dilations 2 and 3, depthwise, strided,
    one with TensorFlow's SAME padding, which pads by the dilated kernel's extent): a
    ``Conv2d.dilation``, its MACs those of the taps alone, the float reference against onnxruntime,
    and an export that imports back the same."""
    imp = import_onnx(dilated(), "dil")
    convs = {l.name.split(".")[0]: l for l in imp.model.layers if l.kind == "conv2d"}
    assert {k: l.dilation for k, l in convs.items() if l.dilation > 1} == {
        "aspp1": 2, "aspp2": 3, "aspp_dw": 2, "aspp_s2": 2}
    assert convs["aspp2"].out_shape == (8, 8, 16) and convs["aspp_s2"].out_shape == (4, 4, 16)
    assert convs["aspp2"].macs == 8 * 8 * 16 * 16 * 9 and convs["aspp_dw"].macs == 8 * 8 * 16 * 9
    assert _max_rel_error(dilated(), imp) <= RTOL
    assert _max_rel_error(deeplab(), import_onnx(deeplab(), "deeplab")) <= RTOL
    from mapper.onnx_export import export_onnx
    again = import_onnx(export_onnx(imp.model, imp.weights), "dil").model
    assert [(l.kind, getattr(l, "dilation", 1)) for l in again.layers] == [
        (l.kind, getattr(l, "dilation", 1)) for l in imp.model.layers]
    g = Graph(3)
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 3, 3)], "", kernel_shape=[3, 3], dilations=[2, 2], strides=[2, 2],
             auto_pad="SAME_UPPER")
    proto = g.model([image_input(8, 9, 9, "x")], [out(y)])
    imp = import_onnx(proto, "same")
    assert imp.model.layers[0].pads == (2, 2, 2, 2) and imp.model.layers[0].out_shape == (5, 5, 4)
    # onnxruntime refuses SAME with dilation; ONNX's own reference runs it as the specification says
    from onnx.reference import ReferenceEvaluator
    x = np.random.default_rng(0).normal(size=imp.model.input).astype(np.float32)
    want = ReferenceEvaluator(proto).run(None, {"x": L.gather(imp.input_view, x.ravel())})[0]
    view = imp.outputs[y]
    got = L.gather(view, dict(reference.run_float(imp.model, imp.weights, x))[view.source].ravel())
    assert np.abs(got - want).max() <= RTOL * np.abs(want).max()


@pytest.mark.parametrize("case,kinds", [
    ("conv", ["conv2d", "conv2d", "add", "conv2d"]),                      # -1 folded into b's weights
    ("read_twice", ["conv2d", "conv2d", "constant", "mul", "add", "add", "conv2d"]),
    ("relu", ["conv2d", "conv2d", "constant", "mul", "add", "conv2d"]),   # relu(-x) is not -relu(x)
    ("mean", ["conv2d", "pool", "constant", "mul", "add", "conv2d"]),
    ("const", ["conv2d", "constant", "add", "conv2d"]),
    ("self", ["conv2d", "constant", "mul", "add", "conv2d"])])
def test_a_subtraction_of_two_activations_adds_the_negation(case, kinds):
    """``a - b`` (refused before: the IR has no subtraction) is ``a + (-b)``: -1 folded into the weights
    that compute ``b`` where nothing else reads them unscaled and no ReLU follows them, else a product
    by a constant -1.  The float reference agrees with onnxruntime."""
    proto = subtraction(case)
    imp = import_onnx(proto, "sub")
    assert [l.kind for l in imp.model.layers] == kinds
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("per_channel,kinds", [
    (False, ["conv2d", "leaky_relu", "conv2d"]),
    (True, ["conv2d", "relu", "constant", "mul", "constant", "mul", "add", "conv2d"])])
def test_prelu_is_a_leaky_relu_or_its_decomposition(per_channel, kinds):
    """``PRelu`` (refused before): one slope is a leaky ReLU's table; a slope per channel, which no
    one table maps, is ``(1 - s) * relu(x) + s * x``.  The float reference agrees with onnxruntime."""
    proto = prelu(per_channel)
    imp = import_onnx(proto, "prelu")
    assert [l.kind for l in imp.model.layers] == kinds
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("mode,block,after,kinds", [
    ("DCR", 2, "conv", ["conv2d", "depth_to_space", "conv2d"]),
    ("DCR", 3, "relu_add", ["conv2d", "depth_to_space", "relu", "add"]),
    ("CRD", 2, "conv", ["conv2d", "depth_to_space", "conv2d"]),
    ("CRD", 3, "output", ["conv2d", "depth_to_space"])])
@pytest.mark.parametrize("channels", [4, 3, 2])
def test_depth_to_space_is_an_ir_layout_layer(mode, block, after, kinds, channels):
    """``DepthToSpace`` (refused before) is a view of the reshape and transpose that define it, which
    the IR's ``DepthToSpace`` (mode DCR) holds; PyTorch's ``pixel_shuffle`` (CRD) of a convolution
    reorders the convolution's output channels so that it is DCR.  Any channel count (an upsampler
    to RGB: 12 channels at block 2; the first version tried only blocks dividing sqrt(C)).
    onnxruntime agrees."""
    proto = depth_to_space(mode, block, after, channels=channels)
    imp = import_onnx(proto, "d2s")
    assert [l.kind for l in imp.model.layers] == kinds
    [d2s] = [l for l in imp.model.layers if l.kind == "depth_to_space"]
    assert d2s.block == block and d2s.out_shape == (8 * block, 8 * block, channels)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("block", [2, 3])
def test_pixel_shuffle_written_as_reshape_transpose_reshape_is_a_depth_to_space(block):
    """``torch.pixel_shuffle`` as some exporters write it (reshape to ``[1, C, r, r, H, W]``, transpose
    ``[0, 1, 4, 2, 5, 3]``, reshape) of a convolution, read by a convolution: refused before (only
    the DepthToSpace node was taken); now the same DepthToSpace (CRD: the convolution reordered)."""
    g = Graph(9)
    c = g.op("Conv", ["input", g.weight("c.weight", 3 * block ** 2, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    t = g.op("Transpose", [g.reshape(c, [1, 3, block, block, 8, 8], "/ps")], "/ps", perm=[0, 1, 4, 2, 5, 3])
    y = g.op("Conv", [g.reshape(t, [1, 3, 8 * block, 8 * block], "/ps"), g.weight("r.weight", 4, 3, 3, 3)], "/r",
             kernel_shape=[3, 3], pads=[1] * 4)
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    imp = import_onnx(proto, "espcn")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "depth_to_space", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_files_scale_after_an_average_does_not_reach_its_input():
    """A file's scale after a ReLU or a crop is also its input's (the split convolution's case), but
    not after a global average, whose input is wider: the convolution saturated at the average's
    range (49 LSB off onnxruntime, found by review)."""
    from mapper.onnx_import import qdq_qmodel
    from onnx_graphs import _qdq
    g = Graph(3)
    c = g.op("Conv", [_qdq(g, "input", 1 / 64, "/iq"), g.weight("c.w", 8, 3, 3, 3, scale=1.0)], "/c",
             kernel_shape=[3, 3], pads=[1] * 4)
    y = _qdq(g, g.op("GlobalAveragePool", [c], "/gap"), 1 / 128, "/oq")
    imp = import_onnx(g.model([image_input(3, 8, 8, "input")], [out(y)]), "gap")
    q = qdq_qmodel(imp)
    conv, pool = imp.model.layers
    assert q.scale(conv.name) == q.scale(pool.name) > 1 / 128       # one scale group, the convolution's range


@pytest.mark.parametrize("after", ["read_twice", "sigmoid"])
def test_pixel_shuffle_of_a_tensor_read_elsewhere_is_refused(after):
    """CRD reorders its producer's output channels: not when another layer reads them in their order
    (the import is tried again without, and the pixel shuffle is then refused), nor of a sigmoid.
    The refusal, at the reader, names the node that arranged the values (a user's report: it named
    only the convolution reading them)."""
    _refused(depth_to_space("CRD", 2, after), "(Conv)", "depth to space",
             "arranged by the node writing '/shuffle/DepthToSpace_")


@pytest.mark.parametrize("case,kinds", [
    (dict(kernel=2, stride=2), ["conv2d", "conv2d", "depth_to_space"]),                       # U-Net's
    (dict(kernel=4, stride=2, pads=(1, 1, 1, 1)), ["conv2d", "conv2d", "depth_to_space"]),    # DCGAN's
    (dict(kernel=3, stride=2, pads=(1, 1, 1, 1), output_padding=1), ["conv2d", "conv2d", "depth_to_space"]),
    (dict(kernel=3, stride=2, pads=(0, 1, 1, 0)), ["conv2d", "conv2d", "depth_to_space"]),
    (dict(kernel=5, stride=3, pads=(2, 2, 2, 2), output_padding=2), ["conv2d", "conv2d", "depth_to_space"]),
    (dict(kernel=3, stride=2), ["conv2d", "conv2d", "depth_to_space", "crop"]),
    (dict(kernel=2, stride=3), ["conv2d", "conv2d", "depth_to_space", "crop"]),
    (dict(kernel=3, stride=1, pads=(1, 1, 1, 1)), ["conv2d", "conv2d"]),
    (dict(kernel=3, stride=1, pads=(0, 0, 3, 3)), ["conv2d", "conv2d", "crop"]),
    (dict(kernel=4, stride=2, pads=(1, 1, 1, 1), bn_relu=True), ["conv2d", "conv2d", "depth_to_space"])])
def test_a_transposed_convolution_is_a_convolution_of_its_phases(case, kinds):
    """``ConvTranspose`` (refused before): its s*s output phases are one convolution to s*s*K
    channels (each phase's taps of the kernel, flipped; the others zero), a ``DepthToSpace`` and,
    where the phases overrun the output, a crop.  onnxruntime agrees."""
    proto = conv_transpose(**case)
    imp = import_onnx(proto, "convt")
    assert [l.kind for l in imp.model.layers] == kinds
    assert _max_rel_error(proto, imp) <= RTOL
    proto = unet()
    assert _max_rel_error(proto, import_onnx(proto, "unet")) <= RTOL


def test_a_quantised_transposed_convolution_keeps_the_files_int8_weights():
    """QDQ: the phase convolution's int8 weights are the file's, rearranged (weight ``[c, k, ry, rx]``
    of a 2x2 stride-2 is phase ``ry*2 + rx``'s output channel ``k``), its scales those of the file's
    output channels repeated per phase."""
    from onnx_graphs import _qdq, _qweight
    g = Graph(3)
    x = _qdq(g, "input", 1 / 64, "/input_q")
    wt, q, scales = _qweight(g, "up.weight", g.rng.normal(0, 0.3, (3, 4, 2, 2)).astype(np.float32), axis=1)
    y = _qdq(g, g.op("ConvTranspose", [x, wt, g.weight("up.bias", 4, scale=0.1)], "/up", kernel_shape=[2, 2],
                     strides=[2, 2]), 1 / 8, "/up_q")
    imp = import_onnx(g.model([image_input(3, 8, 8, "input")], [out(y)]), "q")
    [(name, (wq, s_w))] = imp.weight_q.items()
    assert imp.model.layer(name).kind == "conv2d" and wq.shape == (16, 1, 1, 3)
    for ry, rx, k, c in np.ndindex(2, 2, 4, 3):
        assert wq[(ry * 2 + rx) * 4 + k, 0, 0, c] == q[c, k, ry, rx]
    np.testing.assert_array_equal(s_w, np.tile(scales, 4))


@pytest.mark.parametrize("case,convs", [
    (dict(), 4), (dict(kernel=2, pads=(0, 0, 0, 0)), 4), (dict(kernel=3, pads=(0, 0, 0, 0)), 4),
    (dict(group=4, out_ch=12, kernel=3), 4), (dict(group=2, out_ch=4, kernel=3, stride=3, pads=(0, 0, 0, 0)), 9),
    (dict(bn_relu=True), 4), (dict(kernel=3, stride=1, pads=(1, 1, 1, 1)), 1),
    (dict(kernel=5, stride=3, pads=(2, 2, 2, 2), output_padding=2), 9), (dict(kernel=2, stride=3, pads=(0, 0, 0, 0)), 9)])
def test_a_grouped_transposed_convolution_is_a_grouped_convolution_per_phase(case, convs):
    """A grouped ``ConvTranspose`` (refused before; depthwise, group 8 of 8 channels, a decoder's
    upsampler): a grouped convolution per output phase, each of only its taps, concatenated
    phase-major for the ``DepthToSpace``; a BatchNormalization and a ReLU fold in.  onnxruntime agrees."""
    proto = grouped_conv_transpose(**case)
    imp = import_onnx(proto, "convt")
    phases = [l for l in imp.model.layers if l.kind == "conv2d"][1:]
    assert len(phases) == convs and {l.groups for l in phases} == {case.get("group", 8)}
    assert all(l.relu == case.get("bn_relu", False) for l in phases)
    if case.get("group", 8) == 8 and case.get("out_ch", 8) == 8:        # depthwise: the hardware's depthwise path
        assert all(l.depthwise for l in phases)
    if convs > 1:
        assert [l.kind for l in imp.model.layers][1 + convs:3 + convs] == ["concat", "depth_to_space"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_quantised_grouped_transposed_convolution_keeps_the_files_int8_weights():
    """QDQ, grouped: each phase convolution's int8 weights are the file's taps of that phase (weight
    ``[c, k', ry, rx]`` of a 2x2 stride-2 in 2 groups is phase ``(ry, rx)``'s output channel
    ``(c // 2) * 2 + k'`` over its group's input ``c % 2``), its scales those of the file's axis 1 per group."""
    from onnx_graphs import _qdq, _qweight
    g = Graph(3)
    x = _qdq(g, "input", 1 / 64, "/input_q")
    wt, q, scales = _qweight(g, "up.weight", g.rng.normal(0, 0.3, (4, 2, 2, 2)).astype(np.float32), axis=1)
    y = _qdq(g, g.op("ConvTranspose", [x, wt, g.weight("up.bias", 4, scale=0.1)], "/up", kernel_shape=[2, 2],
                     strides=[2, 2], group=2), 1 / 8, "/up_q")
    imp = import_onnx(g.model([image_input(4, 8, 8, "input")], [out(y)]), "q")
    convs = [l.name for l in imp.model.layers if l.kind == "conv2d"]
    assert len(convs) == 4 and set(imp.weight_q) == set(convs)
    for (ry, rx), name in zip(np.ndindex(2, 2), convs):
        wq, s_w = imp.weight_q[name]
        assert wq.shape == (4, 1, 1, 2)
        for c, k in np.ndindex(4, 2):
            assert wq[(c // 2) * 2 + k, 0, 0, c % 2] == q[c, k, ry, rx]
        np.testing.assert_array_equal(s_w, np.tile(scales, 2))


@pytest.mark.parametrize("form", ["op18", "op21"])
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_a_group_norm_inlined_by_quant_pre_process_imports_as_the_operator(form, groups):
    """onnxruntime's ``quant_pre_process`` inlines ``GroupNormalization`` into its function body (the
    variance as ``mean(x*x) - mean(x)**2`` of a ``[N, groups, -1]`` reshape), which was refused at its
    ``ReduceMean``: the pattern is an InstanceNormalization of unit scale, its scale and shift follow;
    the layers are those of the file before, and onnxruntime agrees."""
    from onnx_graphs import quant_pre_processed

    proto = group_norm(form, groups=groups)
    pre = quant_pre_processed(proto)
    assert "GroupNormalization" not in {n.op_type for n in pre.graph.node}      # inlined: the case it was refused
    before, after = import_onnx(proto, "gn"), import_onnx(pre, "gn")
    assert [l.kind for l in after.model.layers] == [l.kind for l in before.model.layers]
    assert _max_rel_error(pre, after) <= RTOL


def test_group_moments_read_outside_the_pattern_are_not_taken_for_a_normalisation():
    """The inlined GroupNorm's mean also a graph output: not rewritten (the mean would be lost); its
    nodes are imported one by one, and refused as before at the ``ReduceMean``."""
    from onnx_graphs import quant_pre_processed

    pre = quant_pre_processed(group_norm("op21"))
    mean = next(n.output[0] for n in pre.graph.node if n.op_type == "ReduceMean")
    pre.graph.output.append(helper.make_tensor_value_info(mean, TensorProto.FLOAT, [1, 2, 256]))
    _refused(pre, "(ReduceMean)", "a mean over axes [2] of a [1, 2, 256] tensor")


def test_a_class_token_and_peg_after_quant_pre_process_import():
    """CPVT's class token and PEG after ``quant_pre_process``, whose transpose optimiser concatenates
    the class token to the patches channels-first (``[1, C, 1]`` and ``[1, C, N]`` along axis 2):
    refused at stop 59, imported since (a concatenation of pixels); the layers of the file before,
    and onnxruntime agrees."""
    from onnx_graphs import cpvt, quant_pre_processed

    proto = cpvt()
    pre = quant_pre_processed(proto)
    assert any(n.op_type == "Concat" and helper.get_attribute_value(n.attribute[0]) == 2 for n in pre.graph.node)
    before, after = import_onnx(proto, "cpvt"), import_onnx(pre, "cpvt")
    assert [l.kind for l in after.model.layers] == [l.kind for l in before.model.layers]
    assert _max_rel_error(proto, before) <= RTOL and _max_rel_error(pre, after) <= RTOL


@pytest.mark.parametrize("expand,bias", [(True, True), (False, True), (True, False)])
def test_swinv2_cosine_attention_normalises_each_heads_rows(expand, bias):
    """SwinV2's cosine attention (refused at the ``ReduceL2``: a sum over a head's channels of each
    token): ``F.normalize`` of q and k along each head's rows is the square, each row's sum repeated
    over the row (a 1x1 convolution of ones, a group per head), ``rsqrt`` and the product; the per-head
    ``exp(clip(logit_scale))``, a function of one constant, is evaluated (no layer computes it) and
    multiplies the scores.  onnxruntime agrees."""
    proto = cosine_attention(expand=expand, bias=bias)
    imp = import_onnx(proto, "swinv2")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds.count("rsqrt") == 2 and "exp" not in kinds and "clip" not in kinds
    sums = [l for l in imp.model.layers if l.name.endswith(".sums")]
    assert len(sums) == 2 and all(l.kind == "conv2d" and (l.groups, l.out_ch) == (2, 32) for l in sums)
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_normalisation_along_rows_read_by_more_than_its_division_is_imported_node_by_node():
    """The clipped norm of ``F.normalize`` also a graph output: the rows' normalisation does not take
    it (its value would be lost): its nodes are imported one by one and the sum over a head's channels
    refused as before."""
    proto = cosine_attention()
    clip = next(n.output[0] for n in proto.graph.node if n.op_type == "Clip")
    proto.graph.output.append(helper.make_tensor_value_info(clip, TensorProto.FLOAT, None))
    _refused(proto, "(ReduceSum)", "a sum over axes [3] of a [1, 2, 16, 16] tensor")


@pytest.mark.parametrize("attrs,needle,allowed", [
    ({"group": 4}, "group 4 for 6 input channels", "supported: a divisor of the input channels"),
    ({"dilations": [2, 2]}, "dilations [2, 2]", "supported: dilation 1"),
    ({"output_shape": [14, 12]}, "output_shape [14, 12]", "supported: dilation 1")])
def test_transposed_convolutions_it_cannot_express_are_refused(attrs, needle, allowed):
    """Groups that do not divide the channels, dilated, or sized by ``output_shape``: refused
    naming the attribute."""
    g = Graph()
    y = g.op("ConvTranspose", ["x", g.weight("w", 6, 2, 2, 2)], "", kernel_shape=[2, 2], strides=[2, 2], **attrs)
    _refused(g.model([image_input(6, 4, 4, "x")], [out(y)]), "(ConvTranspose)", needle, allowed)


def test_a_slice_of_rows_a_fold_does_not_touch_keeps_the_fold():
    """``conv_a(0.5 * x[:, :8])`` beside ``conv_b(x[:, 8:])``: the scale folds into rows 0-7 of x's
    convolution, and the channel slice of rows 8-15 reads none of them (it was taken as reading
    every row, which undid the fold: a product layer and a second slice).  onnxruntime agrees."""
    g = Graph(4)
    x = g.op("Conv", ["input", g.weight("c.weight", 16, 3, 3, 3), g.weight("c.bias", 16, scale=0.1)], "/c",
             kernel_shape=[3, 3], pads=[1] * 4)
    a, b = g.op("Split", [x, g.const([8, 8])], "/s", n_out=2, axis=1)
    ya = g.op("Conv", [g.op("Mul", [a, g.init("half", np.float32(0.5))], "/m"), g.weight("a.weight", 4, 8, 1, 1)], "/a",
              kernel_shape=[1, 1])
    yb = g.op("Conv", [b, g.weight("b.weight", 4, 8, 3, 3)], "/b", kernel_shape=[3, 3], pads=[1] * 4)
    proto = g.model([image_input(3, 8, 8, "input")], [out(ya), out(yb)])
    imp = import_onnx(proto, "slice")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "conv2d", "channel_slice", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("kind", ["densenet", "resnet"])
def test_a_batchnorm_no_convolution_takes_is_a_product_and_an_add(kind):
    """DenseNet's BatchNormalization after a concatenation, a pre-activation ResNet's on the block's
    input (refused before: only one folded into the convolution before it was imported): ``x * a + b``
    per channel, a product and an add by constants.  onnxruntime agrees."""
    proto = pre_activation(kind)
    imp = import_onnx(proto, kind)
    kinds = [l.kind for l in imp.model.layers]
    # one for each BatchNormalization on a tensor another layer reads too (the block's input, a
    # concatenation); one on a convolution's output alone is folded into it, as before
    assert (kinds.count("mul"), kinds.count("add")) == ((3, 3) if kind == "densenet" else (1, 2))
    assert _max_rel_error(proto, imp) <= RTOL


def _malformed_node(op: str, inputs, **attrs):
    """A one-node graph over an 8-channel 4x4 image, written without ONNX's shape inference (which
    refuses some of these before the importer sees them); int64 inputs (sizes) stay int64, the rest are float32."""
    g = Graph()
    y = g.op(op, ["x"] + [g.init(f"in{i}", np.asarray(v, np.int64 if np.asarray(v).dtype == np.int64 else np.float32))
                          for i, v in enumerate(inputs)], "", **attrs)
    graph = helper.make_graph(g.nodes, "g", [image_input(8, 4, 4, "x")], [helper.make_tensor_value_info(y, 1, None)],
                              initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


@pytest.mark.parametrize("op,inputs,attrs,needle", [
    ("DepthToSpace", [], {}, "no attribute 'blocksize'"),
    ("DepthToSpace", [], {"blocksize": 0}, "blocksize 0"),
    ("ConvTranspose", [np.ones((8, 4, 2, 2))], {"strides": [2, 2], "pads": [1, 1, 1]}, "pads [1, 1, 1]"),
    ("ConvTranspose", [np.ones((8, 4, 2, 2))], {"strides": [2, 2], "output_padding": [1]}, "output_padding [1]"),
    ("ConvTranspose", [np.ones((8, 4, 2, 2))], {"strides": [2, 2], "pads": [-1, 0, 0, 0]}, "none negative"),
    ("ConvTranspose", [np.ones((8, 4, 2))], {"strides": [2, 2]}, "a 1-D transposed convolution"),
    ("BatchNormalization", [np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)], {}, "shapes [[3], [3], [3], [3]] for 8"),
    ("BatchNormalization", [np.ones(8), np.zeros(8), np.zeros(8), -np.ones(8)], {}, "variances above -epsilon"),
    ("PRelu", [np.ones(5)], {}, "a slope of shape [5] for an input of shape [1, 8, 4, 4]"),
    ("Div", [], {}, "1 inputs; the operator needs at least 2"),
    ("Pow", [], {}, "1 inputs; the operator needs at least 2"),
    ("InstanceNormalization", [], {}, "1 inputs; the operator needs at least 3"),
    ("AveragePool", [], {}, "no attribute 'kernel_shape'"),
    ("MaxPool", [], {"kernel_shape": [2, 2, 2]}, "a 3-D pooling window [2, 2, 2]"),
    ("InstanceNormalization", [np.ones(1), np.zeros(1)], {}, "a scale of shape [1] and a bias of shape [1] for 8"),
    ("Resize", [np.zeros(0), np.array([1.0, 2.0, 2.0])], {}, "scales of 3 values for 4 axes"),
    ("Resize", [np.zeros(0), np.zeros(0), np.array([8, 8])], {}, "sizes of 2 values for 4 axes"),
    ("Resize", [np.zeros(0)], {}, "neither scales nor sizes")])
def test_malformed_new_operators_are_refused_in_one_line(op, inputs, attrs, needle):
    """Attributes and inputs the specification does not allow (a file written by hand, say): one line
    naming them, no traceback (a missing blocksize was a KeyError, a short output_padding an
    IndexError, a slope that does not broadcast imported as a leaky ReLU; a missing input or
    required attribute, ONNX's schema, is checked before any operator is imported)."""
    _refused(_malformed_node(op, inputs, **attrs), f"({op})", needle)


_I64 = lambda *v: np.array(v, np.int64)


@pytest.mark.parametrize("op, inputs, attrs, needle", [
    ("Reshape", [_I64(1, 0, 0, 0, 0)], {}, "a 0 copies the input's dimension at its position"),
    ("Transpose", [], {"perm": [0, 1, 2]}, "perm [0, 1, 2] of a [1, 8, 4, 4] tensor"),
    ("Transpose", [], {"perm": [0, 1, 2, 2]}, "supported: a permutation of its 4 axes"),
    ("Transpose", [], {"perm": [0, 1, 2, 5]}, "perm [0, 1, 2, 5]"),
    ("Split", [_I64(3, 3)], {"axis": 1}, "split [3, 3] into 1 outputs of an axis of 8"),
    ("Gather", [_I64(9)], {"axis": 1}, "indices from 9 to 9 along an axis of 8; supported: -8 to 7"),
    ("Gather", [_I64(-9)], {"axis": 1}, "indices from -9 to -9"),
    ("Unsqueeze", [_I64(0, 0)], {}, "axes [0, 0] name an axis twice"),
    ("Slice", [_I64(0, 0), _I64(4)], {}, "starts [0, 0], ends [4], axes [0, 1] and steps [1, 1]"),
    ("Resize", [np.zeros(0, np.float32), np.array([1, 1, 0, 0], np.float32)], {"mode": "nearest"},
     "an output of [1, 8, 0, 0] from [1, 8, 4, 4]"),
    ("LayerNormalization", [np.ones(3, np.float32)], {}, "a scale of shape [3] for rows of shape [4]")])
def test_malformed_view_operators_are_refused_in_one_line(op, inputs, attrs, needle):
    """Found by a fuzz of malformed single nodes after a convolution: each was a traceback (IndexError,
    StopIteration, a ValueError of numpy's or of hw.operators without the node), or, for a perm of
    the wrong rank or with a repeat, imported as a view of the wrong shape; onnxruntime refuses them."""
    g = Graph()
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 1, 1)], "", kernel_shape=[1, 1])
    y = g.op(op, [x] + [g.init(f"in{i}", v) for i, v in enumerate(inputs)], "", **attrs)
    graph = helper.make_graph(g.nodes, "g", [image_input(3, 4, 4, "x")], [out(y)], initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    _refused(proto, f"({op})", needle)


def test_more_inputs_than_the_files_opset_defines_are_refused_in_one_line():
    """Opset 10's Resize (x, scales) given opset 11's (x, roi, scales): its empty roi was read as the
    scales, an IndexError; onnxruntime refuses the file, and so does the importer, in one line."""
    g = Graph()
    y = g.op("Resize", ["x", g.init("roi", np.zeros(0, np.float32)), g.init("scales", np.array([1, 1, 2, 2], np.float32))],
             "", mode="nearest")
    graph = helper.make_graph(g.nodes, "g", [image_input(8, 4, 4, "x")], [out(y)], initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    proto.ir_version = 8
    _refused(proto, "(Resize)", "3 inputs; the operator takes at most 2 in opset 10")


@pytest.mark.parametrize("groups", [2, 4])
def test_a_channel_shuffle_is_an_ir_layout_layer(groups):
    """ShuffleNetV2's ``channel_shuffle`` (reshape, transpose, reshape: refused before) is the IR's
    ``ChannelShuffle``; onnxruntime agrees, and the model exports and imports back the same."""
    proto = shufflenet(groups=groups)
    imp = import_onnx(proto, "shuffle")
    shuffles = [l for l in imp.model.layers if l.kind == "channel_shuffle"]
    assert len(shuffles) == 2 and {l.groups for l in shuffles} == {groups}
    assert _max_rel_error(proto, imp) <= RTOL
    from mapper.onnx_export import export_onnx
    again = import_onnx(export_onnx(imp.model, imp.weights), "shuffle").model
    assert [l.kind for l in again.layers] == [l.kind for l in imp.model.layers]


@pytest.mark.parametrize("second", ["Sub", "Mul"])
def test_two_products_of_one_tensor_by_constants_are_not_both_folded(second):
    """``a - b`` beside ``c - b`` (and ``2 * b`` beside ``3 * b``): each asked to fold its factor into
    b's convolution; both were applied (-1 twice: b unchanged) and their readers merged, 1.6 off
    onnxruntime with ``--check`` passing.  Found by review; the products by constants were wrong
    before the subtraction too.  A fold now takes only rows no other fold holds."""
    g = Graph(1)
    conv = [g.op("Conv", ["input", g.weight(f"c{i}.weight", 16, 3, k, k)], f"/c{i}", kernel_shape=[k, k], pads=[k // 2] * 4)
            for i, k in enumerate((1, 1, 3))]
    a, c, b = conv
    if second == "Sub":
        ys = [g.op("Sub", [a, b], "/sub1"), g.op("Sub", [c, b], "/sub2")]
    else:
        ys = [g.op("Add", [a, g.op("Mul", [b, g.init("two", np.float32(2))], "/m1")], "/a1"),
              g.op("Add", [c, g.op("Mul", [b, g.init("three", np.float32(3))], "/m2")], "/a2")]
    proto = g.model([image_input(3, 8, 8, "input")], [out(y) for y in ys])
    assert _max_rel_error(proto, import_onnx(proto, "two")) <= RTOL


@pytest.mark.parametrize("case", ["zero_minus", "times_minus_two", "plus_raw", "times_raw", "minus_raw", "q_qt"])
def test_a_scale_folded_through_a_product_is_undone_when_its_scores_are_read_unscaled(case):
    """A factor on ``S = q @ k^T`` folded into q's rows scales S for every reader: ``softmax(S)`` beside
    ``softmax(-2 * S)`` or ``softmax(0 - S)`` (0.9 off onnxruntime), ``softmax(0.5 * S + S)`` (and
    times, minus: one node reading S scaled and raw, 0.22-0.28 off), and ``0.25 * (q @ q^T)``, whose
    second operand reads the scaled rows too (0.24 off).  The product is part of the fold now, and a
    node reading it raw is no reader of the fold; a product of q with itself takes no fold."""
    g = Graph(7)
    x = g.op("Conv", ["input", g.weight("p.weight", 16, 3, 2, 2)], "/p", kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Transpose", [g.reshape(x, [1, 16, -1], "/p")], "/p", perm=[0, 2, 1])
    q, k = g.linear(x, 16, 16, "/q"), g.linear(x, 16, 16, "/k")
    s = g.op("MatMul", [q, g.op("Transpose", [q if case == "q_qt" else k], "/attn", perm=[0, 2, 1])], "/attn")
    half = g.op("Mul", [s, g.init("half", np.float32(0.5))], "/half")
    scores = {"zero_minus": lambda: g.op("Sub", [g.init("zero", np.float32(0.0)), s], "/neg"),
              "times_minus_two": lambda: g.op("Mul", [g.init("m", np.float32(-2.0)), s], "/neg"),
              "plus_raw": lambda: g.op("Add", [half, s], "/mix"), "times_raw": lambda: g.op("Mul", [half, s], "/mix"),
              "minus_raw": lambda: g.op("Sub", [half, s], "/mix"),
              "q_qt": lambda: g.op("Mul", [s, g.init("quarter", np.float32(0.25))], "/scale")}[case]()
    y = g.op("MatMul", [g.op("Softmax", [scores], "/attn2", axis=-1), x], "/o2")
    if case in ("zero_minus", "times_minus_two"):
        y = g.op("Add", [g.op("MatMul", [g.op("Softmax", [s], "/attn", axis=-1), x], "/o1"), y], "/sum")
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    assert _max_rel_error(proto, import_onnx(proto, "scores")) <= RTOL


@pytest.mark.parametrize("gammas,strides", [([3.0] * 6, [2, 1]), ([3.0, 0.0, 1.0, -2.0, 0.5, 1.0], [1, 1])])
def test_a_quantised_convolution_split_by_the_importer_keeps_the_files_scales(gammas, strides):
    """Found by review: a QDQ convolution with strides (2, 1) is the importer's convolution then a crop;
    the file's output scale sat on the crop, the convolution got a calibrated one, larger, which won
    in their scale group (34-40 LSB off onnxruntime where it clips).  The file's scale now reaches the
    layer before a crop or ReLU.  And a BatchNormalization with a gamma of 0 folded into a QDQ weight
    made a weight scale of 0, which quantisation refused: its channel's int8 values are 0 now."""
    from mapper.onnx_import import qdq_qmodel
    from onnx_graphs import _qdq, _qweight
    g = Graph(3)
    x = _qdq(g, "input", 1 / 64, "/iq")
    w, _, _ = _qweight(g, "c.w", g.rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), axis=0)
    y = g.op("Conv", [x, w], "/c", kernel_shape=[3, 3], pads=[1] * 4, strides=strides)
    stats = (("w", np.array(gammas)), ("b", np.full(6, 0.5)), ("m", np.zeros(6)), ("v", np.ones(6)))
    y = g.op("Relu", [g.op("BatchNormalization", [y, *(g.init(f"bn.{n}", v.astype(np.float32)) for n, v in stats)], "/bn")],
             "/r")
    imp = import_onnx(g.model([image_input(3, 8, 8, "input")], [out(_qdq(g, y, 1 / 16, "/oq"))]), "split")
    q = qdq_qmodel(imp)
    assert {l.kind: q.scale(l.name) for l in imp.model.layers} == (
        {"conv2d": 1 / 16, "crop": 1 / 16} if strides != [1, 1] else {"conv2d": 1 / 16})
    [(_, (wq, _))] = imp.weight_q.items()
    assert [bool(row.any()) for row in wq] == [g != 0 for g in gammas]


@pytest.mark.parametrize("kind", ["Conv", "ConvTranspose"])
def test_a_batchnorm_folded_into_a_quantised_weight_scales_its_int8_weights(kind):
    """QDQ weights, then a BatchNormalization (scale -3 on half the channels) and a ReLU folded in:
    the factors went into the float weights only, the file's int8 values and scales were kept (the
    quantised model lost them: 4.9 off onnxruntime).  Now int8 times scale is the folded weight."""
    from onnx_graphs import _qdq, _qweight
    g = Graph(3)
    x = _qdq(g, "input", 1 / 64, "/iq")
    if kind == "Conv":
        w, _, _ = _qweight(g, "c.w", g.rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), axis=0)
        y = g.op("Conv", [x, w], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    else:
        w, _, _ = _qweight(g, "up.w", g.rng.normal(0, 0.3, (3, 6, 2, 2)).astype(np.float32), axis=1)
        y = g.op("ConvTranspose", [x, w], "/up", kernel_shape=[2, 2], strides=[2, 2])
    stats = (("w", np.array([3.0, -3.0] * 3)), ("b", np.full(6, 0.5)), ("m", np.zeros(6)), ("v", np.ones(6)))
    y = g.op("Relu", [g.op("BatchNormalization", [y, *(g.init(f"bn.{n}", v.astype(np.float32)) for n, v in stats)], "/bn")],
             "/r")
    imp = import_onnx(g.model([image_input(3, 8, 8, "input")], [out(_qdq(g, y, 1 / 16, "/oq"))]), "qbn")
    [(name, (wq, s_w))] = imp.weight_q.items()
    assert imp.model.layer(name).relu and not any(l.kind in ("mul", "add") for l in imp.model.layers)
    recon = wq.astype(np.float64) * np.asarray(s_w).reshape([-1] + [1] * (wq.ndim - 1))
    np.testing.assert_allclose(recon, imp.weights[name]["weight"], atol=1e-6)


@pytest.mark.parametrize("parts", [2, 3])
def test_a_tensor_concatenated_with_itself_is_copied(parts):
    """``Concat([x, x])`` along the channels (refused before: taken as a view of x, which no layout layer
    holds) is a concatenation whose repeated parts are copies.  onnxruntime agrees."""
    proto = self_concat(parts)
    imp = import_onnx(proto, "twice")
    assert [l.kind for l in imp.model.layers] == ["conv2d"] + ["pad"] * (parts - 1) + ["concat", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_crop_concatenated_with_itself_is_copied():
    """``Concat([c, c])`` of a ``Slice`` of rows and columns (a user's try: refused where the next
    convolution read it): the crop is a layer, its repeat a copy.  onnxruntime agrees."""
    g = Graph(2)
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    c = g.op("Slice", [x, g.const([1, 2]), g.const([7, 8]), g.const([2, 3]), g.const([2, 2])], "")
    y = g.op("Conv", [g.op("Concat", [c, c], "", axis=1), g.weight("w2", 4, 16, 1, 1)], "", kernel_shape=[1, 1])
    proto = g.model([image_input(3, 8, 8, "x")], [out(y)])
    imp = import_onnx(proto, "crops")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "crop", "pad", "concat", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_negative_scale_is_not_folded_under_a_relu():
    """``conv2(-0.5 * relu(conv1(x)))``: -0.5 folded into conv1's weights would run relu(-0.5 * conv1),
    which is not -0.5 * relu(conv1) (the float reference was 0.35 off onnxruntime); a product layer."""
    g = Graph(3)
    c = g.op("Conv", ["x", g.weight("w", 16, 3, 3, 3), g.weight("b", 16, scale=0.1)], "", kernel_shape=[3, 3], pads=[1] * 4)
    m = g.op("Mul", [g.op("Relu", [c], ""), g.init("s", np.float32(-0.5))], "")
    y = g.op("Conv", [m, g.weight("w2", 4, 16, 1, 1)], "", kernel_shape=[1, 1])
    proto = g.model([image_input(3, 8, 8, "x")], [out(y)])
    imp = import_onnx(proto, "neg")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "constant", "mul", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_yolov8_style_neck_agrees_with_onnxruntime():
    """C2f, SPPF, the nearest upsample and the concatenations: the float reference of the import
    against onnxruntime on the file (``tests/test_onnx_run.py`` runs it bit-exact)."""
    proto, macs = yolo_neck()
    imp = import_onnx(proto, "yolo")
    assert imp.model.total_macs == macs
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("order,slices", [("b y", 1), ("b a y", 2)])
def test_a_slice_that_is_a_concatenations_part_is_copied(order, slices):
    """``Concat([x[:, 8:], y])``: the slice lives in ``x``'s buffer, so it is copied into the
    concatenation's (a Pad to its own size: a copy on the vector unit).  ``Concat([x[:, 8:],
    x[:, :8], y])`` holds ``x``'s channels out of order: not ``x`` whole, two slices copied."""
    g = Graph(5)
    x = g.op("Conv", ["pixel_values", g.weight("c1.w", 16, 3, 1, 1)], "/c1", kernel_shape=[1, 1])
    a, b = g.op("Split", [x, g.const([8, 8])], "/s", n_out=2, axis=1)
    y = g.op("Conv", [a, g.weight("c2.w", 8, 8, 3, 3)], "/c2", kernel_shape=[3, 3], pads=[1] * 4)
    parts = [{"a": a, "b": b, "y": y}[p] for p in order.split()]
    z = g.op("Conv", [g.op("Concat", parts, "/cat", axis=1), g.weight("c3.w", 4, 8 * len(parts), 1, 1)], "/c3",
             kernel_shape=[1, 1])
    proto = g.model([image_input(3, 8, 8)], [out(z)])
    imp = import_onnx(proto, "slice_part")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds.count("channel_slice") == slices and kinds.count("pad") == slices
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("unscaled", ["conv first", "conv after", "add after", "crop after"])
def test_a_scaled_view_is_not_handed_to_an_unscaled_reader(unscaled):
    """``conv(0.5 * b)`` folds the scale into the rows of ``x`` that ``b`` holds, and the layout
    layer made for it (``b`` a split half: a channel slice; or a crop) is made once for every read of
    those values: a reader of ``b`` unscaled made afterwards was handed the scaled slice (0.4-0.5
    off onnxruntime, bit-exact all the same).  The fold is undone then (a Mul layer)."""
    g = Graph(29)

    def conv(v, cin, scope):
        return g.op("Relu", [g.op("Conv", [v, g.weight(f"{scope}.w", 8, cin, 3, 3)], scope, kernel_shape=[3, 3],
                                  pads=[1] * 4)], scope)

    x = g.op("Conv", ["input", g.weight("c1.w", 16, 3, 1, 1)], "/c1", kernel_shape=[1, 1])
    if unscaled == "crop after":
        b = g.op("Slice", [x, g.const([0, 0]), g.const([6, 6]), g.const([2, 3])], "/crop")
    else:
        b = g.op("Split", [x, g.const([8, 8])], "/split", n_out=2, axis=1)[1]
    cin = 16 if unscaled == "crop after" else 8
    first = conv(b, cin, "/c2") if unscaled == "conv first" else None
    z = conv(g.op("Mul", [b, g.const(np.float32(0.5), np.float32)], "/mul"), cin, "/c3")
    y = first if first is not None else (g.op("Add", [z, g.op("Slice", [b, g.const([0]), g.const([8]), g.const([1])],
                                                                      "/s")], "/add")
                                         if unscaled == "add after" else conv(b, cin, "/c2"))
    proto = g.model([image_input(3, 8, 8, "input")], [out(g.op("Add", [y, z], "/a"))])
    assert _max_rel_error(proto, import_onnx(proto, "fold")) <= RTOL


def test_inputs_that_do_not_broadcast_are_refused_at_their_node():
    """``Add`` of 8 and 4 channels (a malformed file): numpy's message, without the file or the node,
    was all it said."""
    g = Graph(16)
    x = g.op("Conv", ["pixel_values", g.weight("c1.w", 16, 3, 1, 1)], "/c1", kernel_shape=[1, 1])
    s = g.op("Slice", [x, g.const([4]), g.const([8]), g.const([1])], "/s")
    y = g.op("Conv", ["pixel_values", g.weight("c2.w", 8, 3, 1, 1)], "/c2", kernel_shape=[1, 1])
    _refused(g.model([image_input(3, 8, 8)], [out(g.op("Add", [y, s], "/add"))]),
             "(Add)", "[[1, 8, 8, 8], [1, 4, 8, 8]] do not broadcast")


@pytest.mark.parametrize("graph", [yolo_detect, anchor_levels])
def test_detection_levels_concatenated_along_their_anchors_import(graph):
    """YOLOv8's Detect head (each level viewed ``[1, no, -1]``, the levels concatenated along the
    anchors, DFL and the decode from constant anchors) and SSD's ``[1, -1, 4]`` boxes: one
    concatenation of pixels, which its producers write in place (no layout layer copies a level);
    DFL's 1x1 convolution of ``[1, 16, 4, A]`` is one grouped convolution of the bins' tensor.
    MACs by hand; onnxruntime agrees."""
    from mapper.ir import LAYOUT_KINDS
    proto, macs = graph()
    imp = import_onnx(proto, graph.__name__)
    layers = imp.model.layers
    assert [l.along for l in layers if l.kind == "concat"].count("pixels") == 1
    assert not any(l.kind in LAYOUT_KINDS for l in layers)
    if graph is yolo_detect:
        [softmax] = [l.name for l in layers if l.kind == "softmax"]
        [dfl] = [l for l in layers if l.kind == "conv2d" and l.inputs == (softmax,)]
        assert (dfl.groups, dfl.in_ch, dfl.out_ch) == (4, 64, 4)
    assert imp.model.total_macs == macs and _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("variant,opset", [("split", 17), ("split", 12), ("slice", 17), ("v7", 17), ("seg", 17)])
def test_a_yolov5_or_yolov7_detect_head_with_its_decode_imports(variant, opset):
    """YOLOv5's and YOLOv7's decode (``sigmoid(conv(x))`` viewed ``[1, na, ny, nx, no]``, split along
    ``no``): the convolution's rows ordered ``(no, na)`` make xy, wh and conf channel slices; the
    products and sums of constant grids are layers on them; each level's ``Concat`` along ``no`` is
    one of channels (conf, a slice, copied into it: only the host reads the concatenations, so a plain
    copy, a ``Pad``, ties no scales), the levels' one of pixels, and the output a view of that (no
    layout layer).  MACs by hand; onnxruntime agrees."""
    from mapper.ir import LAYOUT_KINDS
    proto, macs = yolo_v5_detect(variant, opset=opset)
    imp = import_onnx(proto, "yolov5")
    layers = imp.model.layers
    concats = [l for l in layers if l.kind == "concat"]
    assert [l.along for l in concats] == ["channels"] * 3 + ["pixels"]
    assert concats[-1].inputs == tuple(l.name for l in concats[:3])       # nested: one buffer
    slices = [(l.start, l.channels) for l in layers if l.kind == "channel_slice"]
    copies = [l for l in layers if l.kind == "pad" and imp.model.shape(l.inputs[0]) == l.out_shape]
    assert len(copies) == 3 and not any(l.kind == "pow" and l.params == (1.0,) for l in layers)
    if variant == "seg":        # split before the sigmoids (rows ordered by _heads_together): the masks copied
        assert slices == [(0, 6), (6, 6), (12, 12), (24, 12)] * 3
    else:
        assert slices == [(0, 6), (6, 6), (12, 12)] * 3
    assert [[c.name for c in copies if c.name in l.inputs] for l in concats[:3]] == [[c.name] for c in copies]
    assert not any(l.kind in LAYOUT_KINDS for l in layers if l not in copies)
    assert imp.model.total_macs == macs and _max_rel_error(proto, imp) <= RTOL


def test_a_yolov5_part_copied_into_a_concatenation_a_layer_reads_is_requantised():
    """A layer that reads the decoded output needs it at one scale: conf is copied by the table of
    ``x ** 1``, which requantises, so that the sigmoid (read for xy and wh too) keeps a scale of its
    own; a plain copy would quantise it at the boxes' step."""
    proto, _ = yolo_v5_detect("split")
    decoded = proto.graph.output[0]
    proto.graph.node.append(helper.make_node("Relu", [decoded.name], ["after"], name="after"))
    shape = [d.dim_value for d in decoded.type.tensor_type.shape.dim]
    proto.graph.output.pop()
    proto.graph.output.append(helper.make_tensor_value_info("after", TensorProto.FLOAT, shape))
    layers = import_onnx(proto, "yolov5").model.layers
    assert [l.kind for l in layers if ".copy" in l.name] == ["pow"] * 3


def test_yolov5_exported_with_inplace_is_refused_saying_how_to_export_it():
    """``--inplace`` writes the decode back into slices of the sigmoid, which PyTorch exports as ``ScatterND``:
    no IR layer overwrites part of a tensor, so the refusal says to export without it."""
    _refused(yolo_v5_detect("inplace")[0], "'/model.24/ScatterND_22' (ScatterND)", "unsupported operator",
             "assignment to a slice", "--inplace", "a Split and a Concat")


def test_a_constant_read_by_two_nodes_keeps_its_name_free():
    """A Constant layer made for one reader of an initializer took the initializer's own name, so the
    next reader found no constant there and was refused (YOLOv8's anchors, read by a ``Sub`` and an
    ``Add`` of different channels)."""
    g = Graph(30)
    x = g.reshape(g.op("Conv", ["input", g.weight("c.w", 4, 3, 1, 1)], "/c", kernel_shape=[1, 1]), [1, 4, 64])
    lo, hi = g.op("Split", [x, g.const([2, 2])], "/split", n_out=2, axis=1)
    points = g.init("points", np.arange(2 * 64, dtype=np.float32).reshape(1, 2, 64))
    y = g.op("Concat", [g.op("Sub", [points, lo], "/sub"), g.op("Add", [points, hi], "/add")], "/cat", axis=1)
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)])
    assert _max_rel_error(proto, import_onnx(proto, "points")) <= RTOL


def test_a_pointwise_convolution_reads_its_pixels_in_any_order():
    """A 1x1 convolution computes each pixel from its own channels, so one of an image whose height
    and width are swapped is the convolution of the image itself, viewed swapped (3x3 ones are
    refused: ``test_operations_the_ir_cannot_express``)."""
    g = Graph(31)
    t = g.op("Transpose", ["x"], "", perm=[0, 1, 3, 2])
    y = g.op("Conv", [t, g.weight("w", 4, 8, 1, 1), g.weight("b", 4)], "", kernel_shape=[1, 1])
    proto = g.model([image_input(8, 6, 10, "x")], [out(y)])
    imp = import_onnx(proto, "pointwise")
    assert [l.kind for l in imp.model.layers] == ["conv2d"] and _max_rel_error(proto, imp) <= RTOL


def test_a_pointwise_convolution_of_a_split_half_reads_a_channel_slice():
    """Rows of consecutive channels that a channel slice holds are read through the slice: a grouped
    convolution of the whole tensor would compute the other half too (twice the MACs)."""
    g = Graph(32)
    x = g.op("Conv", ["x", g.weight("c.w", 16, 3, 1, 1)], "/c", kernel_shape=[1, 1])
    a, b = g.op("Split", [x, g.const([8, 8])], "/split", n_out=2, axis=1)
    y = g.op("Conv", [b, g.weight("d.w", 4, 8, 1, 1)], "/d", kernel_shape=[1, 1])
    proto = g.model([image_input(3, 8, 8, "x")], [out(y), out(a)])
    imp = import_onnx(proto, "half")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "channel_slice", "conv2d"]
    assert imp.model.total_macs == 64 * (16 * 3 + 4 * 8) and _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("variant", ["class_attention", "torch_name"])
def test_a_constant_read_as_an_activation_is_read_under_its_layer_name(variant):
    """A constant that becomes a Constant layer under another name (PyTorch's ``onnx::Add_7`` is
    sanitised; CaiT's class token, concatenated and then added to its update, steps aside for the
    concatenation's Constant) is read under the layer's name: before, its reader got the old name
    (a KeyError)."""
    g = Graph(33)
    c = 16
    x = g.op("Conv", ["pixel_values", g.weight("w", c, 3, 8, 8), g.weight("b", c)], "/embed", kernel_shape=[8, 8],
             strides=[8, 8])
    x = g.op("Transpose", [g.reshape(x, [1, c, 16], "/embed")], "/embed", perm=[0, 2, 1])
    # DETR's queries, [1, 4, C], plus a [1, 1, C] activation: the constant is the whole operand
    token = g.weight("cls_token", 1, 1, c, scale=1.0) if variant == "class_attention" else \
        g.weight("onnx::Add_7", 1, 4, c, scale=1.0)
    if variant == "class_attention":
        u = g.op("Concat", [token, x], "", axis=1)
        h = g.op("Slice", [u, g.const([0]), g.const([1]), g.const([1]), g.const([1])], "")
    else:
        h = g.op("ReduceMean", [x], "", axes=[1], keepdims=1)
    proto = g.model([image_input(3, 32, 32)], [out(g.op("Add", [token, g.linear(h, c, c, "/q")], ""))])
    assert _max_rel_error(proto, import_onnx(proto, variant)) <= RTOL


def test_a_concatenation_of_constants_is_a_constant():
    """BEiT's qkv bias ``cat((q_bias, zeros_like(k_bias), v_bias))`` exported without constant folding:
    the concatenation is evaluated, and the linear takes it as its bias (it crashed)."""
    g = Graph(34)
    c = 16
    x = g.op("Transpose", [g.reshape(g.op("Conv", ["pixel_values", g.weight("w", c, 3, 8, 8)], "/embed",
                                          kernel_shape=[8, 8], strides=[8, 8]), [1, c, 16], "/embed")], "/embed", perm=[0, 2, 1])
    bias = g.op("Concat", [g.weight("/attn.q_bias", c, scale=0.1), g.const(np.zeros(c, np.float32), np.float32),
                           g.weight("/attn.v_bias", c, scale=0.1)], "/attn", axis=0)
    y = g.op("Add", [g.op("MatMul", [x, g.weight("/attn.qkv.weight_t", c, 3 * c)], "/attn"), bias], "/attn")
    proto = g.model([image_input(3, 32, 32)], [out(y)])
    imp = import_onnx(proto, "beit")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "linear"] and _max_rel_error(proto, imp) <= RTOL


def test_a_grouped_convolution_of_a_split_first_part_reads_a_channel_slice():
    """Res2Net's and EdgeNeXt's ``convs[0](x.split(w, 1)[0])`` with ``groups = w``: the first channels of
    a tensor are a channel slice, not a prefix the convolution reads (it was refused with the wrong shape)."""
    g = Graph(35)
    x = g.op("Conv", ["x", g.weight("c.w", 16, 3, 1, 1)], "/c", kernel_shape=[1, 1])
    a, b = g.op("Split", [x, g.const([8, 8])], "/split", n_out=2, axis=1)
    y = g.op("Conv", [a, g.weight("d.w", 8, 1, 3, 3)], "/d", kernel_shape=[3, 3], pads=[1] * 4, group=8)
    proto = g.model([image_input(3, 8, 8, "x")], [out(g.op("Concat", [y, b], "/cat", axis=1))])
    imp = import_onnx(proto, "res2net")
    assert "channel_slice" in [l.kind for l in imp.model.layers] and _max_rel_error(proto, imp) <= RTOL


def test_a_mean_of_the_tokens_after_the_class_token_is_a_view_then_a_pool():
    """timm's ``global_pool='avg'`` with a class token (BEiT): ``x[:, 1:].mean(1)`` reads all tokens but
    the first, which a view of them in place holds (a ``PixelReshape`` from pixel 1; a crop copied
    them before); the mean is its average pool (it was refused)."""
    g = Graph(36)
    c = 16
    x = g.op("Transpose", [g.reshape(g.op("Conv", ["pixel_values", g.weight("w", c, 3, 8, 8)], "/embed",
                                          kernel_shape=[8, 8], strides=[8, 8]), [1, c, 16], "/embed")], "/embed", perm=[0, 2, 1])
    x = g.op("Concat", [g.weight("cls_token", 1, 1, c, scale=1.0), x], "", axis=1)
    x = g.layernorm(x, c, "/norm")
    tokens = g.op("Slice", [x, g.const([1]), g.const([17]), g.const([1])], "")
    y = g.linear(g.op("ReduceMean", [tokens], "", axes=[1], keepdims=0), c, 10, "/head")
    proto = g.model([image_input(3, 32, 32)], [out(y)])
    imp = import_onnx(proto, "beit")
    assert {"pixel_reshape", "pool"} <= {l.kind for l in imp.model.layers} and _max_rel_error(proto, imp) <= RTOL
    view = next(l for l in imp.model.layers if l.kind == "pixel_reshape")
    assert (view.start, view.out_h * view.out_w) == (1, 16)


def test_register_tokens_between_the_class_token_and_the_patches_import():
    """DINOv2's ``cat(x[:, :1], registers, x[:, 1:])``: constant tokens in the middle of a sequence;
    the two pieces of ``x`` are crops, parts of one concatenation of pixels with the registers."""
    g = Graph(40)
    c = 16
    x = g.op("Transpose", [g.reshape(g.op("Conv", ["pixel_values", g.weight("w", c, 3, 8, 8)], "/embed",
                                          kernel_shape=[8, 8], strides=[8, 8]), [1, c, 24], "/embed")], "/embed", perm=[0, 2, 1])
    x = g.op("Concat", [g.weight("cls_token", 1, 1, c, scale=1.0), x], "", axis=1)
    first = g.op("Slice", [x, g.const([0]), g.const([1]), g.const([1])], "")
    rest = g.op("Slice", [x, g.const([1]), g.const([25]), g.const([1])], "")
    x = g.op("Concat", [first, g.weight("register_tokens", 1, 4, c, scale=1.0), rest], "", axis=1)
    proto = g.model([image_input(3, 32, 48)], [out(g.linear(g.layernorm(x, c, "/norm"), c, 8, "/fc"))])
    imp = import_onnx(proto, "dinov2")
    cats = [l for l in imp.model.layers if l.kind == "concat"]
    assert [(l.along, l.out_shape) for l in cats] == [("pixels", (25, 1, c)), ("pixels", (29, 1, c))]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("first", [8, 16])
def test_a_pointwise_convolution_of_some_rows_reads_the_slice_holding_them(first):
    """Rows of 16 channels from channel 8 or 16 of a 64-channel tensor (DFL of some box channels): the
    grouped convolution reads the channel slice holding them, so it computes those rows alone (the
    MACs by hand; it computed every group of the tensor, or refused an offset of 8)."""
    g = Graph(41)
    x = g.reshape(g.op("Conv", ["x", g.weight("c.w", 64, 3, 3, 3)], "/c", kernel_shape=[3, 3], strides=[2, 2],
                       pads=[1] * 4), [1, 64, -1], "/r")
    s = g.op("Slice", [x, g.const([first]), g.const([first + 48]), g.const([1])], "/s")
    d = g.op("Transpose", [g.reshape(s, [1, 3, 16, 16], "/r")], "/t", perm=[0, 2, 1, 3])
    y = g.op("Conv", [d, g.weight("w", 2, 16, 1, 1), g.weight("b", 2)], "/d", kernel_shape=[1, 1])
    proto = g.model([image_input(3, 8, 8, "x")], [out(y)])
    imp = import_onnx(proto, "rows")
    assert imp.model.total_macs == 16 * 64 * 27 + 16 * 3 * 16 * 2 and _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("case", ["sigmoid_read_elsewhere", "gate_of_another_tensor", "softplus_read_twice"])
def test_a_gate_that_is_no_function_of_one_element_stays_its_nodes(case):
    """``x * sigmoid(x)`` whose sigmoid is also an output, ``x * sigmoid(y)``, and a Mish whose softplus
    another node reads: no table computes them, so each node is a layer of its own (and agrees)."""
    g = Graph(42)
    x = g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3)], "/a", kernel_shape=[3, 3], pads=[1] * 4)
    outs = []
    if case == "sigmoid_read_elsewhere":
        s = g.op("Sigmoid", [x], "/g")
        outs.append(out(s))
        y = g.op("Mul", [x, s], "/g")
    elif case == "gate_of_another_tensor":
        z = g.op("Conv", ["input", g.weight("b.weight", 8, 3, 1, 1)], "/b", kernel_shape=[1, 1])
        y = g.op("Mul", [x, g.op("Sigmoid", [z], "/g")], "/g")
    else:
        sp = g.op("Softplus", [x], "/g")
        outs.append(out(sp))
        y = g.op("Mul", [x, g.op("Tanh", [sp], "/g")], "/g")
    proto = g.model([image_input(3, 8, 8, "input")], [out(y)] + outs)
    imp = import_onnx(proto, case)
    kinds = [l.kind for l in imp.model.layers]
    assert "swish" not in kinds and "mish" not in kinds and "mul" in kinds
    assert _max_rel_error(proto, imp) <= RTOL


def test_parts_that_are_no_pixels_of_whole_tensors_are_not_a_concatenation_of_pixels():
    """Token sequences of different channels, and a part whose tokens are transposed (its pixels read
    down the columns): refused in one line, never concatenated as bytes one after the other."""
    g = Graph(43)
    a = g.op("Conv", ["x", g.weight("a.w", 8, 3, 1, 1)], "/a", kernel_shape=[1, 1])
    b = g.op("Conv", ["x", g.weight("b.w", 4, 3, 1, 1)], "/b", kernel_shape=[1, 1])
    ta, tb = (g.op("Transpose", [g.reshape(t, [1, c, 16], f"/{n}")], f"/{n}", perm=[0, 2, 1])
              for t, c, n in ((a, 8, "ta"), (b, 4, "tb")))
    _refused(g.model([image_input(3, 4, 4, "x")], [out(g.op("Concat", [ta, tb], "/cat", axis=1))]), "(Concat)")
    g = Graph(44)
    a = g.op("Conv", ["x", g.weight("a.w", 8, 3, 1, 1)], "/a", kernel_shape=[1, 1])
    b = g.op("Conv", ["x", g.weight("b.w", 8, 3, 1, 1)], "/b", kernel_shape=[1, 1])
    down = g.op("Transpose", [b], "/t", perm=[0, 1, 3, 2])              # width and height swapped
    ta, tb = (g.op("Transpose", [g.reshape(t, [1, 8, 32], f"/{n}")], f"/{n}", perm=[0, 2, 1])
              for t, n in ((a, "ta"), (down, "tb")))
    _refused(g.model([image_input(3, 4, 8, "x")], [out(g.op("Concat", [ta, tb], "/cat", axis=1))]), "(Concat)")


@pytest.mark.parametrize("kind, shapes", [("mixer", [(8, 16, 16), (16, 8, 16)]), ("resmlp", [(16, 16, 16)]),
                                          ("gmlp", [(16, 16, 16)])])
def test_a_linear_over_the_tokens_is_a_product_of_a_constant_and_the_tokens(kind, shapes):
    """MLP-Mixer's, ResMLP's and gMLP's ``linear(x^T)^T`` (refused before: the linear's input is the
    tokens transposed): ``W @ x`` with ``W`` a Constant (N tokens of K channels) and the tokens as
    values (``kn``), no layout layer copying; onnxruntime's numbers."""
    proto = mixer(kind=kind)
    imp = import_onnx(proto, kind)
    products = [l for l in imp.model.layers if l.kind == "matmul"]
    assert [(p.m, p.k, p.n) for p in products] == shapes
    assert all(imp.model.layer(p.inputs[0]).kind == "constant" and p.b_layout == "kn" for p in products)
    assert not {l.kind for l in imp.model.layers} & {"window_reverse", "crop", "pad", "roll"}
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("per_head", [True, False])
def test_learned_queries_times_the_keys_are_a_product_of_a_constant(per_head):
    """``q @ k^T`` with ``q`` an initializer (Mask2Former's, Perceiver's queries), refused before: a
    Constant of the queries, each head's channels side by side (one ``[Q, d]`` repeated per head)."""
    proto = constant_queries(per_head=per_head)
    imp = import_onnx(proto, "queries")
    qk, av = [l for l in imp.model.layers if l.kind == "matmul"]
    assert (qk.batch, qk.m, qk.k, qk.n, qk.b_layout, av.b_layout) == (2, 5, 8, 64, "nk", "kn")
    assert imp.model.layer(qk.inputs[0]).shape == (5, 1, 16)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("size, width", [(8, 16), (12, 32)])
def test_a_softmax_over_the_pixels_of_a_one_channel_map_reads_it_transposed(size, width):
    """GCNet's context block, refused before: the map's pixels become the channels of one token (a
    product by a 1x1 identity, as keys), the softmax runs over them, and ``x @ softmax`` (the image's
    channels times a row of pixel weights) is computed transposed, ``softmax @ x`` with the image's
    pixels as values; onnxruntime's numbers."""
    proto = context_block(size, width)
    imp = import_onnx(proto, "gcnet")
    transpose, context = [l for l in imp.model.layers if l.kind == "matmul"]
    assert (transpose.m, transpose.k, transpose.n, transpose.b_layout) == (1, 1, size * size, "nk")
    assert (context.m, context.k, context.n, context.b_layout) == (1, size * size, width, "kn")
    assert imp.model.layer(transpose.inputs[0]).kind == "constant"
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("radix, cardinality", [(2, 1), (2, 2), (4, 2), (2, 4)])
def test_resnest_softmax_over_the_radix_of_grouped_logits_reorders_their_convolution(radix, cardinality):
    """ResNeSt's rSoftMax (``[1, cardinality, radix, C / cardinality]`` transposed, softmax over the
    radix), refused before for a cardinality above 1: the grouped convolution writing the logits has
    its rows reordered within its groups so that each softmax row is consecutive channels."""
    proto = radix_softmax(radix=radix, cardinality=cardinality)
    imp = import_onnx(proto, "resnest")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds.count("softmax") == 1 and kinds.count("channel_shuffle") == 1
    assert next(l for l in imp.model.layers if l.kind == "softmax").row == radix
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pads, value, constants", [([0, 0, 0, 0, 0, 1, 0, 0], 1.0, 1), ([0, 2, 0, 0, 0, 1, 0, 0], -0.5, 2),
                                                    ([0, 0, 1, 0, 0, 0, 2, 0], 2.0, 2)])
def test_padding_by_a_constant_along_one_axis_is_a_concatenation(pads, value, constants):
    """A channel of ones (EfficientViT's attention), channels or rows of any value (refused before:
    zeros only): a concatenation with Constant layers of the value; onnxruntime's numbers."""
    proto = constant_pad(pads, value)
    imp = import_onnx(proto, "pad")
    assert [l.kind for l in imp.model.layers] == ["conv2d"] + ["constant"] * constants + ["concat", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pads, value", [([0, 0, 0, 1, 0, 0, 0, 2], 2.0), ([0, 0, 1, 2, 0, 0, 0, 1], -0.5),
                                         ([0, 1, 1, 1, 0, 0, 1, 1], 0.75)])
def test_padding_the_columns_by_a_constant_frames_the_image_and_adds_the_value(pads, value):
    """Columns padded by a constant (refused before: no concatenation joins an image's columns): the
    image framed by zero columns (a Pad at the right, its pixels moved later in raster order), plus a
    constant row of the value in the padded columns (one Add, broadcast over rows and channels);
    rows and channels padded too are concatenations after it.  onnxruntime's numbers."""
    proto = constant_pad(pads, value)
    imp = import_onnx(proto, "pad")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert (kinds["add"], kinds["pixel_reshape"]) == (1, 1)
    add = next(l for l in imp.model.layers if l.kind == "add")
    assert imp.model.layer(add.inputs[1]).shape == (1, 6 + pads[3] + pads[7], 1)
    assert _max_rel_error(proto, imp) <= RTOL


def test_zeros_before_the_columns_that_no_convolution_takes_frame_the_image():
    """Zeros on every side read by a sigmoid (refused before: only convolutions took them, as their own
    padding): the image framed by zero columns, rows of zeros concatenated; no Add."""
    g = Graph(3)
    x = g.op("Conv", ["input", g.weight("c.weight", 8, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Pad", [x, g.const([0, 0, 1, 2, 0, 0, 1, 1]), g.const(np.float32(0), np.float32)], "/pad", mode="constant")
    x = g.op("Sigmoid", [x], "/s")
    proto = g.model([image_input(3, 6, 6, "input")], [out(g.op("Conv", [x, g.weight("h.weight", 4, 8, 1, 1)], "/h",
                                                               kernel_shape=[1, 1]))])
    imp = import_onnx(proto, "pad")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert (kinds["add"], kinds["pixel_reshape"], kinds["concat"]) == (0, 1, 2)
    assert imp.model.layers[-2].out_shape == (8, 9, 8)
    assert _max_rel_error(proto, imp) <= RTOL


def test_pad_axes_of_opset_18_say_which_axis_each_pad_is_for():
    """Opset 18's ``axes`` input was ignored: ``axes=[0, 1, 3, 2]`` padded rows for columns, a wrong
    number where a pool hid the shape (helper-115, helper-117)."""
    g = Graph(3)
    x = g.op("Pad", ["input", g.const([0, 0, 0, 0, 0, 0, 2, 0]), "", g.const([0, 1, 3, 2])], "/pad", mode="constant")
    x = g.op("Conv", [x, g.weight("c.weight", 8, 3, 3, 3)], "/c", kernel_shape=[3, 3])
    proto = g.model([image_input(3, 8, 10, "input")], [out(g.op("GlobalAveragePool", [x], "/pool"))], opset=18)
    imp = import_onnx(proto, "pad18")
    assert imp.model.layers[0].out_shape == (6, 10, 8)         # columns 10 + 2 - 2: the pad is the columns'
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_pad_of_nothing_and_one_of_the_batch():
    """All-zero pads change nothing (refused before); pads of the batch axis are refused (the IR has
    no batch)."""
    assert [l.kind for l in import_onnx(constant_pad([0] * 8, 1.0), "pad").model.layers] == ["conv2d", "conv2d"]
    with pytest.raises(OnnxImportError, match="other than the batch"):
        import_onnx(constant_pad([1, 0, 0, 0, 0, 0, 0, 0], 1.0), "pad")


@pytest.mark.parametrize("pads, mode, adds, nhwc", [([0, 0, 1, 1, 0, 0, 1, 1], "reflect", 1, False),
                                                   ([0, 0, 1, 0, 0, 0, 0, 2], "reflect", 2, False),
                                                   ([0, 0, 2, 2, 0, 0, 2, 2], "edge", 3, False),
                                                   ([0, 1, 0, 0, 0, 2, 0, 0], "reflect", 0, False),
                                                   ([0, 1, 2, 0, 0, 1, 0, 0], "reflect", 2, True)])
def test_reflect_and_edge_padding_are_copies_of_rows_columns_and_channels(pads, mode, adds, nhwc):
    """``nn.ReflectionPad2d`` and ``nn.ReplicationPad2d`` (refused before: mode 'constant' only): rows and
    channels a concatenation of one-wide slices and the tensor; columns (of an NHWC image too) the image
    framed by zero columns plus the copied columns placed alone, an Add each (the outermost two in one);
    onnxruntime's numbers."""
    proto = mode_pad(pads, mode, nhwc=nhwc)
    imp = import_onnx(proto, "pad")
    kinds = Counter(l.kind for l in imp.model.layers)
    assert (kinds["add"], kinds["conv2d"], kinds["concat"] >= 1) == (adds, 2, True)
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("pads, mode, opset, needles", [
    ([0, 0, 6, 0, 0, 0, 0, 0], "reflect", 17, ("mode 'reflect' pads [0, 0, 6, 0, 0, 0, 0, 0]", "below its axis' length")),
    ([0, 0, 0, 1, 0, 0, 0, 6], "reflect", 17, ("(axis 3)", "below its axis' length")),
    ([0, 0, 1, -1, 0, 0, 1, 0], "edge", 17, ("mode 'edge' pads", "not negative")),
    ([0, 0, 1, 1, 0, 0, 1, 1], "wrap", 19, ("mode 'wrap'", "supported: modes 'constant', 'reflect' and 'edge'"))])
def test_reflect_pads_past_the_axis_and_other_modes_are_refused(pads, mode, opset, needles):
    """Reflect pads must stay below the axis' length (onnxruntime's rule); ``wrap`` (opset 19) is refused."""
    _refused(mode_pad(pads, mode, opset=opset), "'/pad/Pad_", "(Pad)", *needles)


def _constant_parts(imp) -> list:
    """The kinds of the layers the import's one concatenation reads, in its order."""
    cat = next(l for l in imp.model.layers if l.kind == "concat")
    return [imp.model.layer(n).kind for n in cat.inputs]


@pytest.mark.parametrize("form", ["nchw", "nhwc", "flat", "tokens", "rows"])
@pytest.mark.parametrize("position", ["first", "last", "both"])
def test_a_constant_concatenated_beside_channels_is_laid_out_as_they_are(form, position):
    """An initializer concatenated to the channels of an NHWC map (Keras after tf2onnx), of a map's
    flattened pixels (``[1, C, H*W]``) or of a token tensor (``[1, N, C]``, ``[N, C]``) was refused (laid out as NCHW, it matched no other part): its
    Constant layer holds it as the computed part is held; onnxruntime's numbers."""
    proto = constant_channels(form, "Concat", position)
    imp = import_onnx(proto, "cc")
    computed = "linear" if form in ("tokens", "rows") else "conv2d"
    assert _constant_parts(imp) == {"first": ["constant", "conv2d"], "last": ["conv2d", "constant"],
                                    "both": ["constant", "conv2d", "constant"]}[position]
    assert [l.kind for l in imp.model.layers][-1] == computed
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("form", ["nchw", "nhwc", "flat", "tokens", "rows"])
@pytest.mark.parametrize("position", ["first", "both"])
def test_channels_padded_by_a_constant_are_the_concatenations_constant_parts(form, position):
    """A Pad of the channels by a value other than zero, in any layout: the concatenation the Concat
    handler makes, Constant layers of the value beside the tensor; onnxruntime's numbers."""
    proto = constant_channels(form, "Pad", position, value=-0.75)
    imp = import_onnx(proto, "pad")
    assert _constant_parts(imp) == ["constant", "conv2d"] + ["constant"] * (position == "both")
    for layer in imp.model.layers:
        if layer.kind == "constant":
            assert np.all(imp.weights[layer.name]["data"] == np.float32(-0.75))
    assert _max_rel_error(proto, imp) <= RTOL


@pytest.mark.parametrize("form", ["nchw", "nhwc", "flat", "tokens", "rows"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_a_constant_concatenated_along_pixels_is_laid_out_as_they_are(form, position):
    """Constant rows of an NHWC map or pixels of a ``[1, C, H*W]`` one were refused (an initializer's
    NCHW layout holds them in other places than the computed part's): laid out as its pixels are,
    a concatenation of pixels; a class token (``tokens``, ``rows``) as before; onnxruntime's numbers."""
    proto = constant_pixels(form, position)
    imp = import_onnx(proto, "cp")
    cat = next(l for l in imp.model.layers if l.kind == "concat")
    assert cat.along == "pixels" and imp.model.layer(cat.inputs[position == "last"]).kind == "constant"
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_constant_part_that_cannot_sit_beside_the_others_is_refused_naming_it():
    """A ``[1, 1, 2]`` constant beside a ``[1, 36, 8]`` token tensor (shapes ONNX would refuse): one
    line naming the node and the part, not a shape error of the IR layer."""
    g = Graph(0)
    x = g.op("Conv", ["input", g.weight("c.weight", 8, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Transpose", [g.reshape(x, [1, 8, -1])], "/t", perm=[0, 2, 1])
    x = g.op("Concat", [x, g.weight("extra", 1, 1, 2)], "/cat", axis=2)
    proto = g.model([image_input(3, 6, 6, "input")], [out(g.linear(x, 10, 5, "/h"))])
    _refused(proto, "'/cat/Concat_5' (Concat)", "constant part 'extra' of shape [1, 1, 2]", "tokens, 6x6 pixels")


def test_an_input_the_files_opset_does_not_define_is_refused():
    """An opset-11 ``Split`` given its sizes as an input (an attribute until opset 13) was imported as
    if the file were opset 13 (helper-114)."""
    g = Graph(1)
    x = g.op("Conv", ["input", g.weight("c.w", 8, 3, 1, 1)], "/c", kernel_shape=[1, 1])
    y = g.op("Add", g.op("Split", [x, g.const([4, 4])], "/s", n_out=2, axis=1), "/s")
    graph = helper.make_graph(g.nodes, "g", [image_input(3, 4, 4, "input")], [out(y)], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(OnnxImportError, match="2 inputs; the operator takes at most 1 in opset 11 .the file's.: "
                                              "'split' is an attribute there"):
        import_onnx(model, "split11")


def test_a_reordered_producer_read_by_another_layer_is_imported_without_the_reordering():
    """ResNeSt's logits also read by a ReLU: the convolution's rows cannot serve both orders, so the
    import starts again without reordering them and the softmax reads a channel shuffle (a first
    version reordered anyway: a traceback, or a refusal of what imported before; helper-117)."""
    proto = radix_softmax(radix=2, cardinality=1, logits_out=True)
    imp = import_onnx(proto, "resnest")
    kinds = [l.kind for l in imp.model.layers]
    assert kinds.count("channel_shuffle") == 2 and kinds.count("relu") == 1
    assert _max_rel_error(proto, imp) <= RTOL


def test_a_qdq_token_mixing_weight_keeps_its_int8_values_or_is_refused():
    """The product's constant operand is an int8 tensor of one scale: a weight of one scale keeps
    the file's int8 values; one of a scale per output is refused (it was requantised; helper-117)."""
    proto = mixer(qdq="tensor")
    imp = import_onnx(proto, "mixer")
    q = qdq_qmodel(imp)
    first = next(l for l in imp.model.layers if l.kind == "matmul")
    file_q = next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.endswith("fc1.weight_t.q"))
    assert np.array_equal(np.asarray(q.layers[first.inputs[0]].data).reshape(file_q.shape[1], -1), file_q.T)
    assert _max_rel_error(proto, imp) <= RTOL
    with pytest.raises(OnnxImportError, match="8 scales \\(per channel\\) read as a product's constant operand"):
        import_onnx(mixer(qdq="channel"), "mixer")


def test_an_nhwc_input_that_is_transposed_to_nchw_is_read_as_nhwc():
    """tf2onnx's Keras input ``[1, H, W, 3]``, whose readers transpose it to NCHW, was read as an NCHW
    ``[1, C=H, ...]`` and refused at the convolution; and Keras' flatten of an NHWC map into a dense
    layer (helper-115)."""
    proto = keras_nhwc()
    imp = import_onnx(proto, "keras")
    assert imp.model.input == (12, 12, 3) and [l.kind for l in imp.model.layers] == ["conv2d", "conv2d"]
    assert _max_rel_error(proto, imp) <= RTOL


# ---- what the file's opset and the operators' schemas allow, as onnxruntime takes it ----------------

def _relu_then(op: str, inputs: tuple = (), opset: int = 17, n_out: int = 1, shape=(1, 4, 8, 8), **attrs):
    """``Relu(x)`` then ``op`` of it and ``inputs`` (initializer name -> array), the last output the graph's."""
    g = Graph()
    names = [g.init(name, arr) for name, arr in inputs]
    y = g.op(op, [g.op("Relu", ["x"]), *names], "", n_out=n_out, **attrs)
    y = y[0] if n_out > 1 else y
    return g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], [out(y)], opset)


def _onnxruntime_refuses(proto) -> bool:
    try:
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:
        return True
    return False


@pytest.mark.parametrize("op, opset, since", [("Gelu", 13, 20), ("Gelu", 19, 20), ("Mish", 17, 18), ("HardSwish", 13, 14),
                                              ("Swish", 23, 24), ("Celu", 11, 12)])
def test_an_operator_newer_than_the_files_opset_is_refused_as_onnxruntime_refuses_it(op, opset, since):
    """A Gelu node in an opset-13 file was imported as opset 20's Gelu; onnxruntime refuses the file."""
    proto = _relu_then(op, opset=opset)
    assert _onnxruntime_refuses(proto)
    _refused(proto, f"({op})", f"defined from opset {since}", f"not in opset {opset}")
    assert import_onnx(_relu_then(op, opset=since), "ok").model.layers[-1].kind != "relu"


def test_an_operator_its_opset_removed_is_refused_and_onnxruntimes_older_layernorm_is_read():
    scales = ("scales", np.array([1, 1, 2, 2], np.float32))
    proto = _relu_then("Upsample", (scales,), opset=10, mode="nearest")
    assert _onnxruntime_refuses(proto)
    _refused(proto, "(Upsample)", "removed from opset 10", "not in opset 10")
    assert import_onnx(_relu_then("Upsample", (scales,), opset=9, mode="nearest"), "ok").model.layers[-1].kind == "resize"
    ln = _relu_then("LayerNormalization", (("g", np.ones(4, np.float32)), ("b", np.zeros(4, np.float32))), opset=13,
                    shape=(1, 6, 4))
    assert not _onnxruntime_refuses(ln)         # onnxruntime's own LayerNormalization of the default domain
    assert import_onnx(ln, "ok").model.layers[-1].kind == "layernorm"


_NORM = (("scale", np.ones(4, np.float32)), ("bias", np.zeros(4, np.float32)))
_BN = _NORM + (("mean", np.zeros(4, np.float32)), ("var", np.ones(4, np.float32)))


@pytest.mark.parametrize("op, inputs, attrs, needles", [
    ("HardSigmoid", (), {"alpha": float("inf")}, ("'alpha' of inf", "finite")),
    ("HardSigmoid", (), {"beta": float("-inf")}, ("'beta' of -inf", "finite")),
    ("LeakyRelu", (), {"alpha": float("inf")}, ("'alpha' of inf", "finite")),
    ("Selu", (), {"gamma": float("nan")}, ("'gamma' of nan", "finite")),
    ("Celu", (), {"alpha": 0.0}, ("'alpha' of 0.0", "other than 0")),
    ("InstanceNormalization", _NORM, {"epsilon": -1.0}, ("'epsilon' of -1.0", "at least 0")),
    ("InstanceNormalization", _NORM, {"epsilon": float("nan")}, ("'epsilon' of nan", "finite")),
    ("BatchNormalization", _BN, {"epsilon": float("nan")}, ("'epsilon' of nan", "finite")),
    ("BatchNormalization", _BN, {"training_mode": 1}, ("'training_mode' of 1", "inference")),
    ("Relu", (), {"foo": 1}, ("attribute 'foo'", "does not have")),
    ("Softplus", (), {"alpha": 2.0}, ("attribute 'alpha'", "does not have")),
    ("LeakyRelu", (), {"alpha": 2}, ("'alpha' of type int", "takes float")),
    ("Conv", (("w", np.ones((4, 4, 3, 3), np.int32)),), {}, ("input 'w' of type int32", "'W' takes double, float, "
                                                            "float16")),
    ("Conv", (("w", np.ones((4, 4, 3, 3), np.float16)),), {}, ("input 'w' of type float16", "input '/Relu_1_output_0' "
                                                              "of type float", "one type for both (T)")),
    ("Gather", (("idx", np.array([0, 1], np.float32)),), {"axis": 1}, ("input 'idx' of type float", "int32, int64")),
    ("Clip", (("low", np.array(0, np.int64)),), {}, ("input 'low' of type int64", "one type for both")),
])
def test_an_attribute_or_input_outside_the_schema_is_refused(op, inputs, attrs, needles):
    """Non-finite or out-of-domain attributes imported and gave NaN (or were refused by a layer's own
    check, naming the layer's parameters); an attribute the operator lacks, one of another type and an
    input of a type the operator does not take were imported, where onnxruntime refuses the file."""
    proto = _relu_then(op, inputs, **attrs)
    _refused(proto, f"({op})", *needles)


def test_node_outputs_attributes_given_twice_and_batchnorm_spatial_follow_the_schema():
    proto = _relu_then("Relu", n_out=2)
    assert _onnxruntime_refuses(proto)
    _refused(proto, "2 outputs", "at most 1 in opset 17")
    _refused(_relu_then("BatchNormalization", _BN, opset=8, spatial=0), "'spatial' of 0", "a mean and variance per channel")
    proto = _relu_then("LeakyRelu", alpha=0.1)
    proto.graph.node[-1].attribute.append(helper.make_attribute("alpha", 0.5))
    assert _onnxruntime_refuses(proto)
    _refused(proto, "(LeakyRelu)", "attribute 'alpha' given 2 times")


def test_gemm_of_other_than_2d_operands_is_refused():
    """Gemm is 2-D; a 3-D A was imported as a linear layer over the tokens (onnxruntime refuses the file)."""
    proto = _relu_then("Gemm", (("w", np.ones((5, 4), np.float32)),), shape=(1, 6, 4), transB=1)
    assert _onnxruntime_refuses(proto)
    _refused(proto, "(Gemm)", "[1, 6, 4] and [5, 4]", "2-D A and B")
    assert import_onnx(_relu_then("Gemm", (("w", np.ones((5, 4), np.float32)),), shape=(1, 4), transB=1),
                       "ok").model.layers[-1].kind == "linear"


@pytest.mark.parametrize("ratio, training, needles", [(0.5, True, ("training_mode true with ratio 0.5", "ratio 0")),
                                                      (2.0, False, ("ratio 2.0", "in [0, 1)")),
                                                      (0.0, True, None), (0.5, False, None)])
def test_dropout_in_training_mode_is_refused_unless_it_drops_nothing(ratio, training, needles):
    """Dropout with training_mode true drops elements at random when onnxruntime runs it; it was read
    as the identity.  With ratio 0 it is the identity, as without training_mode."""
    inputs = (("ratio", np.array(ratio, np.float32)), ("training", np.array(training)))
    proto = _relu_then("Dropout", inputs, opset=13)
    if needles:
        _refused(proto, "(Dropout)", *needles)
    else:
        assert [l.kind for l in import_onnx(proto, "ok").model.layers] == ["relu"]


@pytest.mark.parametrize("ratio", [2.0, 1.0, -0.5])
def test_a_dropout_ratio_attribute_outside_0_to_1_is_refused_as_the_ratio_input_is(ratio):
    """Below opset 12 the ratio is an attribute: 2.0 was imported, where the input form is refused
    (onnxruntime reads the attribute form as the identity, the input form it refuses when it runs)."""
    _refused(_relu_then("Dropout", opset=11, ratio=ratio), "(Dropout)", f"'ratio' of {ratio}", "in [0, 1)")
    assert [l.kind for l in import_onnx(_relu_then("Dropout", opset=11, ratio=0.0), "ok").model.layers] == ["relu"]


def test_split_num_outputs_must_count_the_outputs():
    proto = _relu_then("Split", opset=18, n_out=2, axis=1, num_outputs=3)
    _refused(proto, "(Split)", "num_outputs 3 for 2 outputs")
    assert import_onnx(_relu_then("Split", opset=18, n_out=2, axis=1, num_outputs=2), "ok").model.layers


def _typed_graph(build, opset: int = 17, declared=None):
    """``build(g, x)`` of graph input ``x`` (float [1, 4, 8, 8]); its result the graph output, declared
    of data type ``declared`` (else of the type ONNX's inference gives it)."""
    g = Graph()
    y = build(g, g.op("Relu", ["x"]))
    proto = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])], [out(y)], opset)
    if declared is not None:
        proto.graph.output[0].type.tensor_type.elem_type = declared
    return proto


_F16 = TensorProto.FLOAT16


def _cast(g, x, to):
    return g.op("Cast", [x], to=to)


@pytest.mark.parametrize("build, opset, declared, needles", [
    (lambda g, x: g.op("Add", [_cast(g, x, _F16), x]), 17, None,
     ("(Add)", "input '/Relu_1_output_0' of type float and input '/Cast_2_output_0' of type float16",
      "one type for both (T)")),
    (lambda g, x: g.op("Conv", [_cast(g, x, _F16), g.init("w", np.ones((4, 4, 1, 1), np.float32))]), 17, None,
     ("(Conv)", "input 'w' of type float and input '/Cast_2_output_0' of type float16", "one type for both (T)")),
    (lambda g, x: _cast(g, g.op("Relu", [g.op("Shape", [x])]), TensorProto.FLOAT), 13, None,
     ("(Relu)", "input '/Shape_2_output_0' of type int64", "'X' takes bfloat16, double, float, float16")),
    (lambda g, x: g.op("Resize", [x, "", g.op("Shape", [x])], mode="nearest"), 17, None,
     ("(Resize)", "of type int64", "'scales' takes float")),
    (lambda g, x: g.op("Relu", [_cast(g, x, _F16)]), 17, TensorProto.FLOAT,
     ("(Relu)", "is of type float16 but the file declares it float", "the type the operator computes")),
    (lambda g, x: g.op("Relu", [x]), 17, _F16,
     ("(Relu)", "is of type float but the file declares it float16")),
])
def test_the_types_of_cast_and_shape_outputs_are_checked_as_onnxruntime_checks_them(build, opset, declared, needles):
    """A Cast's output is of its ``to``, a Shape's int64, and a node's output of the type its operator
    computes, not of the type the file declares: float16 added to float32, int64 sizes read as a
    Relu's input or a Resize's scales were imported (or refused for something else), and a declared
    type other than the computed one passed, where onnxruntime refuses each file."""
    proto = _typed_graph(build, opset, declared)
    assert _onnxruntime_refuses(proto)
    _refused(proto, *needles)


def test_a_float16_cast_the_operators_take_is_still_imported():
    proto = _typed_graph(lambda g, x: _cast(g, g.op("Relu", [_cast(g, x, _F16)]), TensorProto.FLOAT))
    assert not _onnxruntime_refuses(proto)
    assert [l.kind for l in import_onnx(proto, "ok").model.layers][-1] == "relu"
    declared = _typed_graph(lambda g, x: g.op("Relu", [_cast(g, x, _F16)]), declared=_F16)
    assert not _onnxruntime_refuses(declared)
    assert import_onnx(declared, "ok").model.layers


def _resized(mode: str, **attrs):
    """``conv1x1 -> Resize x2`` of ``mode``, the resize the graph output, ``attrs`` its attributes."""
    g = Graph()
    y = g.op("Conv", ["x", g.weight("w", 4, 8, 1, 1)], "", kernel_shape=[1, 1])
    how = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} if mode == "nearest" else {}
    y = g.op("Resize", [y, "", g.const(np.array([1, 1, 2, 2], np.float32), np.float32)], "", mode=mode, **how, **attrs)
    return g.model([image_input(8, 8, 8, "x")], [out(y)], opset=18)


@pytest.mark.parametrize("proto", [
    lambda: activation_graph("ThresholdedRelu", alpha=float("inf")),        # no element above it: zeros
    lambda: activation_graph("ThresholdedRelu", alpha=float("-inf")),       # every element: the identity
    lambda: _resized("linear", cubic_coeff_a=float("nan")),                 # read by mode 'cubic' only
    lambda: _resized("nearest", cubic_coeff_a=float("inf"))], ids=["thresholded_inf", "thresholded_minus_inf",
                                                                    "linear_nan_cubic_a", "nearest_inf_cubic_a"])
def test_an_infinite_threshold_or_an_unused_cubic_coefficient_is_imported_as_onnxruntime_computes_it(proto):
    """They were refused as non-finite attributes; onnxruntime computes finite results of them."""
    proto = proto()
    assert _max_rel_error(proto, import_onnx(proto, "inf")) <= RTOL


def test_a_nan_threshold_or_a_cubic_coefficient_a_cubic_resize_reads_is_still_refused():
    _refused(activation_graph("ThresholdedRelu", alpha=float("nan")), "(ThresholdedRelu)", "'alpha' of nan",
             "a number or an infinity")
    _refused(_resized("cubic", cubic_coeff_a=float("nan")), "(Resize)", "'cubic_coeff_a' of nan", "in mode 'cubic'")


def _batchnorm(var: float, eps: float, after_conv: bool):
    """``BatchNormalization`` of variance ``var`` and ``epsilon`` ``eps`` on the channels of a ReLU or,
    folded into its weights, of a convolution."""
    g = Graph()
    x = g.op("Conv", ["x", g.weight("w", 4, 4, 1, 1)], "", kernel_shape=[1, 1]) if after_conv else g.op("Relu", ["x"])
    stats = [g.init(n, np.full(4, v, np.float32)) for n, v in (("scale", 1.5), ("bias", 0.5), ("mean", 0.25), ("var", var))]
    y = g.op("BatchNormalization", [x, *stats], epsilon=eps)
    return g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])], [out(y)])


@pytest.mark.parametrize("after_conv", [False, True], ids=["alone", "folded"])
def test_a_negative_batchnorm_epsilon_is_imported_where_every_variance_stays_above_it(after_conv):
    """onnxruntime divides by sqrt(var + epsilon) with a negative epsilon too; it was refused. The
    variances are constants, so the import knows whether the root is of a positive number: it
    refuses a channel whose is not (onnxruntime's NaN)."""
    proto = _batchnorm(1.0, -0.5, after_conv)
    assert _max_rel_error(proto, import_onnx(proto, "bn")) <= RTOL
    _refused(_batchnorm(0.25, -0.5, after_conv), "(BatchNormalization)",
             "variance 0.25 of channel 0 plus epsilon -0.5 is -0.25, not above 0", "variances above -epsilon")


def _branches_graph(read_network: bool):
    """A patch embedding reshaped to tokens by a shape an ``If`` of a constant condition gives: its
    branches give constant shapes, or (``read_network``) the then-branch the convolution's output."""
    g = Graph(3)
    x = g.op("Conv", ["pixel_values", g.weight("p.weight", 8, 3, 4, 4)], "/p", kernel_shape=[4, 4], strides=[4, 4])
    shapes = {"then": g.const([1, 8, 16]), "else": g.const([1, 16, 8])}
    if read_network:
        shapes["then"] = x
    branch = {k: helper.make_graph([helper.make_node("Identity", [v], [f"{k}_out"])], k, [],
                                   [helper.make_empty_tensor_value_info(f"{k}_out")]) for k, v in shapes.items()}
    cond = g.const(True, np.bool_)
    g.nodes.append(helper.make_node("If", [cond], ["/If_output_0"], name="/If", then_branch=branch["then"],
                                    else_branch=branch["else"]))
    if read_network:
        return g.model([image_input(3, 16, 16)], [out("/If_output_0")])
    x = g.op("Transpose", [g.op("Reshape", [x, "/If_output_0"], "/p")], "/p", perm=[0, 2, 1])
    return g.model([image_input(3, 16, 16)], [out(g.linear(x, 8, 4, "/fc"))])


def test_an_if_of_constant_branches_is_evaluated_and_one_on_the_network_refused_as_control_flow():
    """An ``If`` whose branches read constants around it is evaluated (the evaluator was given its
    condition alone and raised "Unable to find input"); one whose branch reads the network is refused as
    unsupported control flow, not with the evaluator's error."""
    proto = _branches_graph(read_network=False)
    imp = import_onnx(proto, "if")
    assert [l.kind for l in imp.model.layers] == ["conv2d", "linear"]
    assert _max_rel_error(proto, imp) <= RTOL
    _refused(_branches_graph(read_network=True), "'/If' (If): unsupported operator (control flow",
             "export the model traced", "supported: Abs, ")


@pytest.mark.parametrize("form", ["op18", "op21"])
def test_a_group_norm_quantised_inside_its_inlined_body_is_refused_and_imports_with_products_alone(form):
    """docs/onnx.md's advice for QDQ files: ``quantize_static`` of every operator puts QDQ pairs inside
    the GroupNormalization body ``quant_pre_process`` inlined, and its ``ReduceMean`` is refused; with
    ``Conv``, ``MatMul`` and ``Gemm`` quantised alone it imports as the float file's layers."""
    import tempfile

    import onnx
    from onnx_graphs import quant_pre_processed
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.feeds = iter([{"input": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.feeds, None)

    pre = quant_pre_processed(group_norm(form))

    def quantised(**only) -> onnx.ModelProto:
        with tempfile.TemporaryDirectory() as d:
            onnx.save(pre, f"{d}/pre.onnx")
            quantize_static(f"{d}/pre.onnx", f"{d}/q.onnx", Images(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}, **only)
            return onnx.load(f"{d}/q.onnx")

    _refused(quantised(), "(ReduceMean): a mean over axes [2] of a [1, 2, 256] tensor")
    kinds = [l.kind for l in import_onnx(quantised(op_types_to_quantize=["Conv", "MatMul", "Gemm"]), "q").model.layers]
    assert kinds == [l.kind for l in import_onnx(pre, "gn").model.layers]


@pytest.mark.parametrize("activation", [None, "Relu", "Sigmoid"])
def test_a_flip_of_the_columns_read_by_a_convolution_is_refused_naming_the_slice_through_an_activation(activation):
    """``x[..., ::-1]`` (a ``Slice`` of step -1: torch.flip) of a feature map read by a 3x3 convolution
    moves data no IR layer moves: refused naming the slice as where the layout was made, also when an
    activation runs on the flipped view first (it keeps the view, and the refusal named no node)."""
    g = Graph(4)
    x = g.op("Conv", ["pixel_values", g.weight("a.weight", 4, 3, 3, 3)], "/a", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Slice", [x, g.const([-1]), g.const([-(2 ** 62)]), g.const([3]), g.const([-1])], "/flip")
    if activation:
        x = g.op(activation, [x], "/act")
    y = g.op("Conv", [x, g.weight("b.weight", 4, 4, 3, 3)], "/b", kernel_shape=[3, 3], pads=[1] * 4)
    _refused(g.model([image_input(3, 8, 8)], [out(y)]), "(Conv): its input (arranged by the node writing "
             "'/flip/Slice_", "is not laid out as an NCHW image")
