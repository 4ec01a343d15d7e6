"""Small ONNX graphs built with ``onnx.helper`` the way PyTorch's exporter writes such networks
(opset 17: shape tensors as Constant nodes, ``Add(bias, MatMul)``, GELU as its Erf pattern,
the attention scale as a ``Mul`` after ``Q.K^T``), for the importer's tests.

Each builder returns ``(model_proto, macs)``: the multiply-accumulates counted here, by hand,
from the layer shapes (not by the IR).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


class Graph:
    """Accumulates nodes and initializers; names values like PyTorch (``/blocks.0/attn/MatMul_output_0``)."""

    def __init__(self, seed: int = 0):
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def init(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, name: str, *shape, scale: float = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        s = scale if scale is not None else 1 / np.sqrt(fan_in)
        return self.init(name, self.rng.uniform(-s, s, shape).astype(np.float32))

    def const(self, values, dtype=np.int64) -> str:
        self.count += 1
        name = f"/Constant_{self.count}_output_0"
        self.nodes.append(helper.make_node("Constant", [], [name], name=f"/Constant_{self.count}",
                                           value=numpy_helper.from_array(np.asarray(values, dtype), name)))
        return name

    def op(self, op: str, inputs: list, scope: str = "", n_out: int = 1, **attrs):
        self.count += 1
        base = f"{scope}/{op}_{self.count}"
        outs = [f"{base}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x: str, k: int, n: int, scope: str, bias: bool = True) -> str:
        y = self.op("MatMul", [x, self.weight(f"{scope}.weight_t", k, n, scale=1 / np.sqrt(k))], scope)
        return self.op("Add", [self.weight(f"{scope}.bias", n, scale=0.1), y], scope) if bias else y

    def reshape(self, x: str, shape, scope: str = "") -> str:
        return self.op("Reshape", [x, self.const(shape)], scope)

    def gelu(self, x: str, scope: str) -> str:
        d = self.op("Div", [x, self.const(np.float32(1.4142135381698608), np.float32)], scope)
        e = self.op("Erf", [d], scope)
        a = self.op("Add", [e, self.const(np.float32(1.0), np.float32)], scope)
        m = self.op("Mul", [x, a], scope)
        return self.op("Mul", [m, self.const(np.float32(0.5), np.float32)], scope)

    def layernorm(self, x: str, c: int, scope: str) -> str:
        g = self.init(f"{scope}.weight", (1 + 0.1 * self.rng.normal(size=c)).astype(np.float32))
        b = self.init(f"{scope}.bias", (0.1 * self.rng.normal(size=c)).astype(np.float32))
        return self.op("LayerNormalization", [x, g, b], scope, axis=-1, epsilon=1e-6)

    def model(self, inputs, outputs, opset: int = 17):
        """The model, its outputs' types and shapes filled in by ONNX shape inference (as an exporter
        writes them; ``out`` declares float, which an ArgMax's int64 output is not)."""
        import onnx

        graph = helper.make_graph(self.nodes, "g", inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        declared = {o.name: o.type.tensor_type.elem_type for o in m.graph.output}
        for o in m.graph.output:
            o.type.tensor_type.elem_type = 0
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.output}
        for o in m.graph.output:
            o.type.CopyFrom(inferred[o.name].type)
            o.type.tensor_type.elem_type = o.type.tensor_type.elem_type or declared[o.name]
        return m


def image_input(c: int, h: int, w: int, name: str = "pixel_values", dims=None):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims or [1, c, h, w])


def out(name: str):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def vit(size: int = 32, patch: int = 8, dim: int = 48, heads: int = 3, depth: int = 2, classes: int = 10,
        scale_on: str = "scores", cls_token: bool = False, einsum: bool = False, seed: int = 0):
    """A ViT: patch conv, blocks of fused-qkv attention and a GELU MLP, a final LayerNorm and a head on
    the mean of the tokens (timm's ``global_pool="avg"``) or, with ``cls_token``, on a class token
    concatenated before the patches (with a learned position embedding).  With ``einsum`` the qkv
    projection (``F.linear``'s ``[out, in]`` weight) and both attention products are ``Einsum``s
    (``torch.einsum``'s export)."""
    g = Graph(seed)
    n, d = (size // patch) ** 2, dim // heads
    x = g.op("Conv", ["pixel_values", g.weight("patch_embed.proj.weight", dim, 3, patch, patch),
                      g.weight("patch_embed.proj.bias", dim)], "/patch_embed/proj",
             kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.reshape(x, [1, dim, -1], "/patch_embed")
    x = g.op("Transpose", [x], "/patch_embed", perm=[0, 2, 1])
    macs = n * dim * 3 * patch * patch
    if cls_token:
        cls = g.op("Expand", [g.weight("cls_token", 1, 1, dim, scale=1.0), g.const([1, 1, 1])], "")
        x = g.op("Concat", [cls, x], "", axis=1)
        x = g.op("Add", [x, g.weight("pos_embed", 1, n + 1, dim, scale=0.5)], "")
        n += 1
    for b in range(depth):
        s = f"/blocks.{b}"
        h = g.layernorm(x, dim, f"{s}/norm1")
        if einsum:
            qkv = g.op("Einsum", [h, g.weight(f"{s}/attn/qkv.weight", 3 * dim, dim)], f"{s}/attn/qkv",
                       equation="bnc,kc->bnk")
        else:
            qkv = g.linear(h, dim, 3 * dim, f"{s}/attn/qkv")
        qkv = g.reshape(qkv, [1, n, 3, heads, d], f"{s}/attn")
        qkv = g.op("Transpose", [qkv], f"{s}/attn", perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", [qkv, g.const(i)], f"{s}/attn", axis=0) for i in range(3))
        if scale_on == "q":
            q = g.op("Mul", [q, g.const(np.float32(d ** -0.5), np.float32)], f"{s}/attn")
        if einsum:
            a = g.op("Einsum", [k, q], f"{s}/attn", equation="bhjd,bhid->bhij")
        else:
            a = g.op("MatMul", [q, g.op("Transpose", [k], f"{s}/attn", perm=[0, 1, 3, 2])], f"{s}/attn")
        if scale_on == "scores":
            a = g.op("Mul", [a, g.const(np.float32(d ** -0.5), np.float32)], f"{s}/attn")
        a = g.op("Softmax", [a], f"{s}/attn", axis=-1)
        if einsum:          # heads and tokens swapped by the equation (no Transpose)
            o = g.op("Einsum", [a, v], f"{s}/attn", equation="bhij,bhjd->bihd")
        else:
            o = g.op("Transpose", [g.op("MatMul", [a, v], f"{s}/attn")], f"{s}/attn", perm=[0, 2, 1, 3])
        o = g.reshape(o, [1, n, dim], f"{s}/attn")
        o = g.linear(o, dim, dim, f"{s}/attn/proj")
        x = g.op("Add", [x, o], s)
        h = g.layernorm(x, dim, f"{s}/norm2")
        h = g.gelu(g.linear(h, dim, 4 * dim, f"{s}/mlp/fc1"), f"{s}/mlp/act")
        h = g.linear(h, 4 * dim, dim, f"{s}/mlp/fc2")
        x = g.op("Add", [x, h], s)
        macs += n * dim * 3 * dim + 2 * heads * n * n * d + n * dim * dim + 2 * n * dim * 4 * dim
    x = g.layernorm(x, dim, "/norm")
    x = g.op("Gather", [x, g.const(0)], "", axis=1) if cls_token else g.op("ReduceMean", [x], "", axes=[1], keepdims=0)
    y = g.op("Gemm", [x, g.weight("head.weight", classes, dim), g.weight("head.bias", classes)], "/head", transB=1)
    macs += dim * classes
    return g.model([image_input(3, size, size)], [out(y)]), macs


def cnn(size: int = 32, width: int = 16, classes: int = 10, seed: int = 1):
    """A small residual CNN: conv (+ folded-away BatchNormalization) + ReLU, max pooling, a basic
    block with a strided 1x1 shortcut, ReLU after the add, global average pooling, flatten, Gemm."""
    g = Graph(seed)
    c = width
    x = g.op("Conv", ["input", g.weight("conv1.weight", c, 3, 3, 3)], "/conv1", kernel_shape=[3, 3], pads=[1] * 4)
    bn = [g.init(f"bn1.{k}", v) for k, v in (("weight", np.full(c, 1.5, np.float32)),
                                             ("bias", np.full(c, 0.1, np.float32)),
                                             ("running_mean", np.linspace(-0.2, 0.2, c).astype(np.float32)),
                                             ("running_var", np.linspace(0.5, 2, c).astype(np.float32)))]
    x = g.op("BatchNormalization", [x, *bn], "/bn1", epsilon=1e-5)
    x = g.op("Relu", [x], "/relu")
    x = g.op("MaxPool", [x], "/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    s = size // 2
    macs = size * size * c * 27
    y = g.op("Conv", [x, g.weight("layer1.conv1.weight", 2 * c, c, 3, 3), g.weight("layer1.conv1.bias", 2 * c)],
             "/layer1/conv1", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    y = g.op("Relu", [y], "/layer1")
    y = g.op("Conv", [y, g.weight("layer1.conv2.weight", 2 * c, 2 * c, 3, 3), g.weight("layer1.conv2.bias", 2 * c)],
             "/layer1/conv2", kernel_shape=[3, 3], pads=[1] * 4)
    sc = g.op("Conv", [x, g.weight("layer1.down.weight", 2 * c, c, 1, 1), g.weight("layer1.down.bias", 2 * c)],
              "/layer1/downsample", kernel_shape=[1, 1], strides=[2, 2])
    x = g.op("Relu", [g.op("Add", [y, sc], "/layer1")], "/layer1")
    t = s // 2
    macs += t * t * 2 * c * (c * 9 + 2 * c * 9 + c)
    x = g.op("GlobalAveragePool", [x], "/avgpool")
    x = g.op("Flatten", [x], "", axis=1)
    y = g.op("Gemm", [x, g.weight("fc.weight", classes, 2 * c), g.weight("fc.bias", classes)], "/fc", transB=1)
    macs += 2 * c * classes
    return g.model([image_input(3, size, size, "input")], [out(y)]), macs


def masked_attention(fill: float, size: int = 16, dim: int = 16, seed: int = 0):
    """One attention head over 4x4 patches whose scores get Hugging Face's additive mask before the
    softmax: 0 on the first half of the keys, ``fill`` on the others."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("p.weight", dim, 3, 4, 4), g.weight("p.bias", dim)], "/p",
             kernel_shape=[4, 4], strides=[4, 4])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/p")], "/p", perm=[0, 2, 1])
    n = (size // 4) ** 2
    q, k = g.linear(x, dim, dim, "/q"), g.linear(x, dim, dim, "/k")
    a = g.op("MatMul", [q, g.op("Transpose", [k], "/attn", perm=[0, 2, 1])], "/attn")
    mask = np.zeros((1, n, n), np.float32)
    mask[:, :, n // 2:] = fill
    a = g.op("Softmax", [g.op("Add", [a, g.init("attention_mask", mask)], "/attn")], "/attn", axis=-1)
    return g.model([image_input(3, size, size)], [out(g.op("MatMul", [a, x], "/attn"))])


def single_op(op: str, shape=(1, 8, 8, 8), opset: int = 17, **attrs):
    """A graph of one operator on a ``[1, C, H, W]`` input, for errors."""
    g = Graph()
    y = g.op(op, ["x"], "", **attrs)
    return g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], [out(y)], opset)


def _qdq(g: Graph, x: str, scale: float, scope: str, dtype=np.int8) -> str:
    s = g.init(f"{scope}.scale", np.float32(scale))
    z = g.init(f"{scope}.zero_point", np.zeros((), dtype))
    return g.op("DequantizeLinear", [g.op("QuantizeLinear", [x, s, z], scope), s, z], scope)


def _qweight(g: Graph, name: str, w: np.ndarray, axis: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 weights behind a DequantizeLinear: (value, int8, scales)."""
    amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    s = (amax / 127).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8)
    out = g.op("DequantizeLinear", [g.init(f"{name}.q", q), g.init(f"{name}.scale", s),
                                    g.init(f"{name}.zp", np.zeros(len(s), np.int8))], f"/{name}", axis=axis)
    return out, q, s


def _qbias(g: Graph, name: str, n: int, scale: np.ndarray) -> tuple[str, np.ndarray]:
    """An int32 bias behind a DequantizeLinear of scale ``s_in * s_w`` (onnxruntime's QuantizeBias)."""
    q = np.round(g.rng.uniform(-0.1, 0.1, n) / scale).astype(np.int32)
    out = g.op("DequantizeLinear", [g.init(f"{name}.q", q), g.init(f"{name}.scale", scale.astype(np.float32)),
                                    g.init(f"{name}.zp", np.zeros(n, np.int32))], f"/{name}", axis=0)
    return out, q


def c2f(size: int = 16, width: int = 16, blocks: int = 1, shortcut: bool = True, silu: bool = True, seed: int = 4):
    """YOLOv8's C2f block as Ultralytics exports it: a 1x1 conv, ``Split`` of its channels in two
    halves, ``blocks`` bottlenecks (3x3 conv, 3x3 conv, the residual from their input) chained on
    the second half, every piece concatenated (``Concat([a, b, m1, ...])``) into a 1x1 conv; SiLU
    (``x * Sigmoid(x)``) or ReLU after each conv."""
    g = Graph(seed)
    c = width // 2

    def conv(x, cin, cout, k, scope):
        y = g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                 scope, kernel_shape=[k, k], pads=[k // 2] * 4)
        return g.op("Mul", [y, g.op("Sigmoid", [y], scope)], scope) if silu else g.op("Relu", [y], scope)

    x = conv("input", 3, width, 1, "/cv1")
    parts = list(g.op("Split", [x, g.const([c, c])], "/split", n_out=2, axis=1))
    macs = size * size * width * 3
    for i in range(blocks):
        y = conv(conv(parts[-1], c, c, 3, f"/m.{i}/cv1"), c, c, 3, f"/m.{i}/cv2")
        parts.append(g.op("Add", [parts[-1], y], f"/m.{i}") if shortcut else y)
        macs += 2 * size * size * c * c * 9
    y = conv(g.op("Concat", parts, "/cat", axis=1), (2 + blocks) * c, width, 1, "/cv2")
    macs += size * size * (2 + blocks) * c * width
    return g.model([image_input(3, size, size, "input")], [out(y)]), macs


def token_slices(seed: int = 6):
    """Tokens whose channels are sliced (``Slice`` on the last axis): a linear reads channels
    16..31, an Add channels 8..15 beside the linear's output."""
    g = Graph(seed)
    x = g.reshape(g.op("Conv", ["pixel_values", g.weight("embed.w", 32, 3, 4, 4)], "/embed", kernel_shape=[4, 4],
                       strides=[4, 4]), [1, 32, 16], "/embed")
    x = g.op("Transpose", [x], "/embed", perm=[0, 2, 1])
    y = g.linear(g.op("Slice", [x, g.const([16]), g.const([32]), g.const([2])], "/s1"), 16, 8, "/fc")
    z = g.op("Add", [y, g.op("Slice", [x, g.const([8]), g.const([16]), g.const([2])], "/s2")], "/add")
    return g.model([image_input(3, 16, 16)], [out(z)]), 16 * 3 * 16 * 32 + 16 * 16 * 8


def yolo_neck(size: int = 64, width: int = 16, seed: int = 8):
    """A YOLOv8-style backbone and neck as Ultralytics exports it: strided 3x3 convolutions with
    SiLU, C2f blocks (a ``Split``, bottlenecks on its second half, ``Concat`` of every piece), SPPF
    (three 5x5 max poolings concatenated), a nearest 2x ``Resize`` and a ``Concat`` with the P3
    features into a C2f without shortcuts, then a 1x1 head.  Returns ``(model, macs)``."""
    g = Graph(seed)
    macs = [0]

    def conv(x, cin, cout, k, s, scope, hw):
        y = g.op("Conv", [x, g.weight(f"{scope}.w", cout, cin, k, k), g.weight(f"{scope}.b", cout, scale=0.1)], scope,
                 kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
        macs[0] += (hw // s) ** 2 * cout * cin * k * k
        return g.op("Mul", [y, g.op("Sigmoid", [y], scope)], scope)

    def c2f_block(x, cin, cout, n, scope, hw, shortcut=True):
        c = cout // 2
        parts = list(g.op("Split", [conv(x, cin, 2 * c, 1, 1, f"{scope}/cv1", hw), g.const([c, c])],
                          f"{scope}/split", n_out=2, axis=1))
        for i in range(n):
            m = conv(conv(parts[-1], c, c, 3, 1, f"{scope}/m.{i}/cv1", hw), c, c, 3, 1, f"{scope}/m.{i}/cv2", hw)
            parts.append(g.op("Add", [parts[-1], m], f"{scope}/m.{i}") if shortcut else m)
        return conv(g.op("Concat", parts, f"{scope}/cat", axis=1), (2 + n) * c, cout, 1, 1, f"{scope}/cv2", hw)

    w, s = width, size
    x = conv(conv("images", 3, w, 3, 2, "/0", s), w, 2 * w, 3, 2, "/1", s // 2)
    x = conv(c2f_block(x, 2 * w, 2 * w, 1, "/2", s // 4), 2 * w, 4 * w, 3, 2, "/3", s // 4)
    p3 = c2f_block(x, 4 * w, 4 * w, 2, "/4", s // 8)
    x = c2f_block(conv(p3, 4 * w, 8 * w, 3, 2, "/5", s // 8), 8 * w, 8 * w, 1, "/6", s // 16)
    pools = [conv(x, 8 * w, 4 * w, 1, 1, "/9/cv1", s // 16)]
    for i in range(3):
        pools.append(g.op("MaxPool", [pools[-1]], f"/9/m{i}", kernel_shape=[5, 5], strides=[1, 1], pads=[2] * 4))
    x = conv(g.op("Concat", pools, "/9/cat", axis=1), 16 * w, 8 * w, 1, 1, "/9/cv2", s // 16)
    up = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32), np.float32)], "/10", mode="nearest",
              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    x = c2f_block(g.op("Concat", [up, p3], "/11", axis=1), 12 * w, 4 * w, 1, "/12", s // 8, shortcut=False)
    y = g.op("Conv", [x, g.weight("head.w", 8, 4 * w, 1, 1)], "/head", kernel_shape=[1, 1])
    macs[0] += (s // 8) ** 2 * 8 * 4 * w
    return g.model([image_input(3, size, size, "images")], [out(y)]), macs[0]


def yolo_detect(h: int = 64, w: int = 96, classes: int = 3, reg: int = 16, seed: int = 9):
    """YOLOv8's Detect head as Ultralytics exports it, on three levels (strides 8, 16, 32) of a small
    SiLU backbone: per level a box branch to ``4 * reg`` channels and a class branch, concatenated
    and viewed ``[1, no, -1]``; the levels concatenated along the anchors; DFL (``Reshape`` to
    ``[1, 4, reg, A]``, ``Transpose``, ``Softmax`` over the bins, a 1x1 ``Conv`` by ``arange(reg)``);
    the boxes decoded from constant anchors and strides (``Sub``, ``Add``, ``Div``, ``Concat``,
    ``Mul``); ``Sigmoid`` of the classes, concatenated to ``[1, 4 + classes, A]``.
    Returns ``(model, macs)``."""
    g = Graph(seed)
    macs = [0]

    def conv(x, cin, cout, k, s, scope, hw, silu=True):
        y = g.op("Conv", [x, g.weight(f"{scope}.w", cout, cin, k, k), g.weight(f"{scope}.b", cout, scale=0.1)], scope,
                 kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
        macs[0] += (hw[0] // s) * (hw[1] // s) * cout * cin * k * k
        return g.op("Mul", [y, g.op("Sigmoid", [y], scope)], scope) if silu else y

    no, x, hw, width = 4 * reg + classes, "images", (h, w), 3
    levels, anchors, strides = [], [], []
    for i, (s, c) in enumerate(((8, 8), (16, 16), (32, 16))):
        x = conv(x, width, c, 3, 2 if i else 8, f"/backbone.{i}", hw)      # the first: one 8-stride stem
        hw, width = (h // s, w // s), c
        box = conv(conv(x, c, 8, 3, 1, f"/cv2.{i}/0", hw), 8, 4 * reg, 1, 1, f"/cv2.{i}/2", hw, silu=False)
        cls = conv(conv(x, c, 8, 3, 1, f"/cv3.{i}/0", hw), 8, classes, 1, 1, f"/cv3.{i}/2", hw, silu=False)
        levels.append(g.reshape(g.op("Concat", [box, cls], f"/level{i}", axis=1), [1, no, -1], f"/level{i}"))
        ys, xs = np.meshgrid(np.arange(hw[0]) + 0.5, np.arange(hw[1]) + 0.5, indexing="ij")
        anchors.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(hw[0] * hw[1], float(s)))
    a = sum(p.shape[1] for p in anchors)
    box, cls = g.op("Split", [g.op("Concat", levels, "/head", axis=2), g.const([4 * reg, classes])], "/head", n_out=2, axis=1)
    d = g.op("Transpose", [g.reshape(box, [1, 4, reg, a], "/dfl")], "/dfl", perm=[0, 2, 1, 3])
    d = g.op("Conv", [g.op("Softmax", [d], "/dfl", axis=1), g.init("dfl.w", np.arange(reg, dtype=np.float32).reshape(1, reg, 1, 1))],
             "/dfl/conv", kernel_shape=[1, 1])
    macs[0] += 4 * a * reg
    lt, rb = g.op("Split", [g.reshape(d, [1, 4, a], "/dfl"), g.const([2, 2])], "/head", n_out=2, axis=1)
    points = g.init("anchors", np.concatenate(anchors, 1)[None].astype(np.float32))
    x1y1, x2y2 = g.op("Sub", [points, lt], "/head"), g.op("Add", [points, rb], "/head")
    centre = g.op("Div", [g.op("Add", [x1y1, x2y2], "/head"), g.const(np.float32(2), np.float32)], "/head")
    boxes = g.op("Concat", [centre, g.op("Sub", [x2y2, x1y1], "/head")], "/head", axis=1)
    boxes = g.op("Mul", [boxes, g.init("strides", np.concatenate(strides)[None].astype(np.float32))], "/head")
    y = g.op("Concat", [boxes, g.op("Sigmoid", [cls], "/head")], "/head", axis=1)
    return g.model([image_input(3, h, w, "images")], [out(y)]), macs[0]


def yolo_v5_detect(variant: str = "split", h: int = 64, w: int = 96, classes: int = 3, masks: int = 4, opset: int = 17,
                   seed: int = 11):
    """YOLOv5's and YOLOv7's Detect head with its decode, as their ``export.py`` writes it, on three
    levels (strides 8, 16, 32) of a small SiLU backbone: per level a 1x1 ``Conv`` to ``na * no``
    channels (``na = 3`` anchors, ``no = 5 + classes``), ``Reshape [1, na, no, ny, nx]``, ``Transpose``
    to ``[1, na, ny, nx, no]``, ``Sigmoid``, the decode, ``Reshape [1, na * ny * nx, no]``; the levels
    concatenated along the anchors.  ``variant``: ``split`` (YOLOv5 6.1+: ``Split`` into xy, wh and
    conf, ``(xy * 2 + grid) * stride`` with ``- 0.5`` folded into the ``[1, na, ny, nx, 2]`` grid,
    ``(wh * 2) ** 2 * anchor_grid``), ``slice`` (YOLOv5 6.0: a ``Slice`` for each part where it is
    computed, ``xy * 2 - 0.5 + grid``), ``v7`` (YOLOv7: ``xy * 2s + s * (grid - 0.5)`` of a
    ``[1, 1, ny, nx, 2]`` grid, ``wh ** 2 * 4 anchor_grid`` of a ``[1, na, 1, 1, 2]`` one), ``seg``
    (YOLOv5-seg: ``Split`` before a ``Sigmoid`` of each part, ``masks`` mask coefficients more,
    which keep their values), ``inplace`` (YOLOv5's ``--inplace``: ``y[..., 0:2] = ...`` written
    back, ``ScatterND``).  Returns ``(model, macs)``."""
    g = Graph(seed)
    na, no, macs = 3, 5 + classes + (masks if variant == "seg" else 0), [0]
    anchors = np.array([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                       np.float32).reshape(3, na, 2) / 10     # YOLOv5s' anchor_grid (pixels) at a tenth of its input

    def conv(x, cin, cout, k, s, scope, hw, silu=True):
        y = g.op("Conv", [x, g.weight(f"{scope}.w", cout, cin, k, k), g.weight(f"{scope}.b", cout, scale=0.1)], scope,
                 kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
        macs[0] += (hw[0] // s) * (hw[1] // s) * cout * cin * k * k
        return g.op("Mul", [y, g.op("Sigmoid", [y], scope)], scope) if silu else y

    x, hw, width, levels = "images", (h, w), 3, []
    for i, (s, c) in enumerate(((8, 8), (16, 16), (32, 16))):
        x = conv(x, width, c, 3, 2 if i else 8, f"/model.{i}", hw)          # the first: one 8-stride stem
        hw, width = (h // s, w // s), c
        y = conv(x, c, na * no, 1, 1, f"/model.24/m.{i}", hw, silu=False)
        y = g.op("Transpose", [g.reshape(y, [1, na, no, *hw], "/model.24")], "/model.24", perm=[0, 1, 3, 4, 2])
        y = y if variant == "seg" else g.op("Sigmoid", [y], "/model.24")
        y = _yolo_decode(g, y, variant, s, _yolo_grids(anchors[i], hw), classes, masks, opset)
        levels.append(g.reshape(y, [1, -1 if variant in ("slice", "v7") else na * hw[0] * hw[1], no], "/model.24"))
    y = g.op("Concat", levels, "/model.24", axis=1)
    return g.model([image_input(3, h, w, "images")], [out(y)], opset=opset), macs[0]


def _yolo_decode(g: Graph, y: str, variant: str, stride: int, grids, classes: int, masks: int, opset: int) -> str:
    """One level's boxes from ``y`` ``[1, na, ny, nx, no]`` (its sigmoid but for ``seg``) and its
    ``grids`` (:func:`_yolo_grids`), as ``variant`` writes them (:func:`yolo_v5_detect`)."""
    scope, (grid, anchor_grid) = "/model.24", grids
    op = lambda kind, *ins: g.op(kind, list(ins), scope)                            # noqa: E731
    f32 = lambda v: g.const(np.float32(v), np.float32)                              # noqa: E731
    if variant == "inplace":
        return _yolo_inplace(g, y, stride, grid, anchor_grid)
    if variant == "slice":              # each part sliced where it is computed, as PyTorch traces it
        part = lambda lo, hi: op("Slice", y, g.const([lo]), g.const([hi]), g.const([4]), g.const([1]))  # noqa: E731
        xy = op("Mul", op("Add", op("Sub", op("Mul", part(0, 2), f32(2)), f32(0.5)), g.init(f"{y}.grid", grid)),
                f32(stride))
        wh = op("Mul", op("Pow", op("Mul", part(2, 4), f32(2)), f32(2)), g.init(f"{y}.anchor_grid", anchor_grid))
        return g.op("Concat", [xy, wh, part(4, np.iinfo(np.int64).max)], scope, axis=-1)
    sizes = [2, 2, classes + 1] + ([masks] if variant == "seg" else [])
    parts = g.op("Split", [y, g.const(sizes)] if opset >= 13 else [y], scope, n_out=len(sizes), axis=4,
                 **({} if opset >= 13 else {"split": sizes}))
    xy, wh, conf = (op("Sigmoid", p) for p in parts[:3]) if variant == "seg" else parts[:3]
    if variant == "v7":
        xy = op("Add", op("Mul", xy, f32(2 * stride)), g.init(f"{y}.grid", stride * (grid[:, :1] - 0.5)))
        wh = op("Mul", op("Pow", wh, f32(2)), g.init(f"{y}.anchor", 4 * anchor_grid[:, :, :1, :1]))
    else:
        xy = op("Mul", op("Add", op("Mul", xy, f32(2)), g.init(f"{y}.grid", grid - 0.5)), f32(stride))
        wh = op("Mul", op("Pow", op("Mul", wh, f32(2)), f32(2)), g.init(f"{y}.anchor_grid", anchor_grid))
    return g.op("Concat", [xy, wh, conf, *parts[3:]], scope, axis=-1)


def _yolo_grids(anchor: np.ndarray, hw) -> tuple[np.ndarray, np.ndarray]:
    """A level's grid (``x, y`` of each cell) and anchor grid (each anchor's size), ``[1, na, ny, nx, 2]``."""
    na = len(anchor)
    ys, xs = np.meshgrid(np.arange(hw[0]), np.arange(hw[1]), indexing="ij")
    grid = np.broadcast_to(np.stack([xs, ys], -1), (1, na, *hw, 2)).astype(np.float32)
    return grid, np.broadcast_to(anchor.reshape(1, na, 1, 1, 2), grid.shape).astype(np.float32)


def _yolo_inplace(g: Graph, y: str, stride: int, grid: np.ndarray, anchor_grid: np.ndarray) -> str:
    """YOLOv5's ``--inplace`` decode: ``y[..., 0:2] = ...`` and ``y[..., 2:4] = ...`` as PyTorch exports
    an assignment to a slice (``ScatterND`` of every index of the slice)."""
    op = lambda kind, *ins: g.op(kind, list(ins), "/model.24")                       # noqa: E731
    f32 = lambda v: g.const(np.float32(v), np.float32)                              # noqa: E731
    xy = lambda t: op("Mul", op("Add", op("Sub", op("Mul", t, f32(2)), f32(0.5)), g.init(f"{y}.grid", grid)),  # noqa: E731
                      f32(stride))
    wh = lambda t: op("Mul", op("Pow", op("Mul", t, f32(2)), f32(2)), g.init(f"{y}.anchor_grid", anchor_grid))  # noqa: E731
    where = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), -1)
    for lo, update in ((0, xy), (2, wh)):
        index = where.copy()
        index[..., 4] += lo
        y = op("ScatterND", y, g.const(index), update(op("Slice", y, g.const([lo]), g.const([lo + 2]), g.const([4]),
                                                       g.const([1]))))
    return y


def anchor_levels(h: int = 32, w: int = 48, anchors: int = 3, seed: int = 10):
    """SSD's box regression as torchvision exports it: per level a 3x3 conv to ``4 * anchors``
    channels, ``Transpose`` to NHWC and ``Reshape`` to ``[1, -1, 4]``, the levels concatenated
    along the boxes.  Returns ``(model, macs)``."""
    g = Graph(seed)
    x, cin, macs, parts = "images", 3, 0, []
    for i, s in enumerate((4, 8)):
        x = g.op("Relu", [g.op("Conv", [x, g.weight(f"/b{i}.w", 8, cin, 3, 3)], f"/b{i}", kernel_shape=[3, 3],
                                       strides=[2 if i else 4] * 2, pads=[1] * 4)], f"/b{i}")
        macs += (h // s) * (w // s) * 8 * cin * 9
        y = g.op("Conv", [x, g.weight(f"/reg{i}.w", 4 * anchors, 8, 3, 3)], f"/reg{i}", kernel_shape=[3, 3], pads=[1] * 4)
        macs += (h // s) * (w // s) * 4 * anchors * 8 * 9
        parts.append(g.reshape(g.op("Transpose", [y], f"/reg{i}", perm=[0, 2, 3, 1]), [1, -1, 4], f"/reg{i}"))
        cin = 8
    return g.model([image_input(3, h, w, "images")], [out(g.op("Concat", parts, "/head", axis=1))]), macs


def glu(size: int = 16, width: int = 32, seed: int = 7):
    """A gated linear unit as PyTorch exports ``F.glu(x, dim=1)``: ``Split`` of a convolution's
    channels in halves, ``a * Sigmoid(b)``, then a 1x1 convolution."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("c1.w", width, 3, 3, 3), g.weight("c1.b", width, scale=0.1)], "/c1",
             kernel_shape=[3, 3], pads=[1] * 4)
    a, b = g.op("Split", [x, g.const([width // 2, width // 2])], "/glu", n_out=2, axis=1)
    y = g.op("Mul", [a, g.op("Sigmoid", [b], "/glu")], "/glu")
    z = g.op("Conv", [y, g.weight("c2.w", 8, width // 2, 1, 1)], "/c2", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size)], [out(z)]), size * size * (width * 27 + 8 * width // 2)


def qdq_cnn(size: int = 16, width: int = 8, classes: int = 5, zero_point_dtype=np.int8, seed: int = 2,
            int32_bias: bool = False):
    """A QDQ-quantised CNN as onnxruntime's static quantiser writes one (QInt8, symmetric, per-channel
    weights; with ``int32_bias`` the conv's bias too, as its default QuantizeBias does): conv + ReLU,
    global average pooling, a Gemm.  Returns ``(model, {int8 weights, scales; "conv_bias": int32})``."""
    g = Graph(seed)
    x = _qdq(g, "input", 1 / 64, "/input_q", zero_point_dtype)
    w, q1, s1 = _qweight(g, "conv.weight", g.rng.normal(0, 0.3, (width, 3, 3, 3)).astype(np.float32))
    bias, qb = (_qbias(g, "conv.bias", width, s1.astype(np.float64) / 64) if int32_bias
                else (g.weight("conv.bias", width, scale=0.1), None))
    y = g.op("Conv", [x, w, bias], "/conv", kernel_shape=[3, 3], pads=[1] * 4)
    y = _qdq(g, y, 1 / 16, "/conv_q")
    y = _qdq(g, g.op("Relu", [y], "/relu"), 1 / 16, "/relu_q")
    y = _qdq(g, g.op("GlobalAveragePool", [y], "/pool"), 1 / 32, "/pool_q")
    y = g.op("Flatten", [y], "", axis=1)
    w2, q2, s2 = _qweight(g, "fc.weight", g.rng.normal(0, 0.3, (classes, width)).astype(np.float32))
    y = g.op("Gemm", [y, w2, g.weight("fc.bias", classes, scale=0.1)], "/fc", transB=1)
    y = _qdq(g, y, 1 / 8, "/fc_q")
    return (g.model([image_input(3, size, size, "input")], [out(y)]),
            {"conv": (q1, s1), "fc": (q2, s2), "conv_bias": qb})


def pruned_channel(proto, channel: int, scale: float, tensor: str = "conv.weight"):
    """``proto`` (``qdq_cnn``'s) with output channel ``channel`` of the QDQ constant ``tensor`` pruned:
    its int8 values 0, its scale ``scale``."""
    for t in proto.graph.initializer:
        if t.name in (f"{tensor}.q", f"{tensor}.scale"):
            values = numpy_helper.to_array(t).copy()
            values[channel] = 0 if t.name.endswith(".q") else scale
            t.CopyFrom(numpy_helper.from_array(values, t.name))
    return proto


def decomposed_layernorm(tokens: int = 5, c: int = 16, seed: int = 4):
    """LayerNorm as PyTorch exports it below opset 17, between two linears, at opset 13."""
    g = Graph(seed)
    x = g.linear("x", c, c, "/fc1")
    m = g.op("ReduceMean", [x], "/norm", axes=[-1], keepdims=1)
    d = g.op("Sub", [x, m], "/norm")
    v = g.op("ReduceMean", [g.op("Pow", [d, g.const(np.float32(2.0), np.float32)], "/norm")], "/norm",
             axes=[-1], keepdims=1)
    s = g.op("Sqrt", [g.op("Add", [v, g.const(np.float32(1e-5), np.float32)], "/norm")], "/norm")
    y = g.op("Div", [d, s], "/norm")
    y = g.op("Mul", [y, g.weight("norm.weight", c, scale=1.0)], "/norm")
    y = g.op("Add", [y, g.weight("norm.bias", c, scale=0.2)], "/norm")
    y = g.linear(y, c, 8, "/fc2")
    return g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, c])], [out(y)], opset=13)


def channels_first_layernorm(c: int = 16, size: int = 6, seed: int = 4, gamma_shape=None):
    """ConvNeXt's ``LayerNorm(data_format="channels_first")``: ``u = x.mean(1)``, ``s = (x - u).pow(2).mean(1)``,
    ``(x - u) / sqrt(s + eps)``, ``w[:, None, None] * x + b[:, None, None]``, between two convolutions
    (``gamma_shape``: the scale's, else ``[c, 1, 1]``)."""
    g = Graph(seed)
    x = g.op("Conv", ["x", g.weight("stem.weight", c, 3, 2, 2), g.weight("stem.bias", c, scale=0.5)], "/stem",
             kernel_shape=[2, 2], strides=[2, 2])
    m = g.op("ReduceMean", [x], "/norm", axes=[1], keepdims=1)
    d = g.op("Sub", [x, m], "/norm")
    v = g.op("ReduceMean", [g.op("Pow", [d, g.const(np.float32(2.0), np.float32)], "/norm")], "/norm",
             axes=[1], keepdims=1)
    s = g.op("Sqrt", [g.op("Add", [v, g.const(np.float32(1e-6), np.float32)], "/norm")], "/norm")
    y = g.op("Div", [d, s], "/norm")
    y = g.op("Mul", [g.init("norm.weight", (1 + 0.2 * g.rng.normal(size=gamma_shape or (c, 1, 1))).astype(np.float32)), y],
             "/norm")
    y = g.op("Add", [y, g.init("norm.bias", (0.2 * g.rng.normal(size=(c, 1, 1))).astype(np.float32))], "/norm")
    y = g.op("Conv", [y, g.weight("head.weight", 8, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, 2 * size, 2 * size, "x")], [out(y)], opset=13)


def nhwc_roll(order=(1, 2), shift: int = 2, seed: int = 0):
    """Swin's cyclic shift as timm and HF write it: ``torch.roll(x, (-s, -s), dims=(1, 2))`` of
    NHWC tokens, exported as a ``Slice``, ``Slice``, ``Concat`` per dim (in ``order``), between a
    patch embedding and a linear."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("w", 16, 3, 4, 4), g.weight("b", 16)], "/embed", kernel_shape=[4, 4],
             strides=[4, 4])
    x = g.reshape(g.op("Transpose", [g.reshape(x, [1, 16, 64], "/embed")], "/embed", perm=[0, 2, 1]), [1, 8, 8, 16])
    for ax in order:
        a = g.op("Slice", [x, g.const([shift]), g.const([2 ** 63 - 1]), g.const([ax])], "/roll")
        b = g.op("Slice", [x, g.const([0]), g.const([shift]), g.const([ax])], "/roll")
        x = g.op("Concat", [a, b], "/roll", axis=ax)
    y = g.linear(g.reshape(x, [1, 64, 16], "/blk"), 16, 8, "/fc")
    return g.model([image_input(3, 32, 32)], [out(y)])


def window_reverse_to_tokens(merged: bool = True, reverse_first: bool = False, flat_gemm: bool = False, seed: int = 0):
    """Swin's window attention's linear per window, its window reverse written straight back to tokens
    (``Reshape [1, H/ws, W/ws, ws, ws, C]``, ``Transpose``, ``Reshape [1, H*W, C]``: onnxruntime's
    ``quant_pre_process`` merges timm's two reshapes so; ``merged=False`` keeps ``[1, H, W, C]``
    between), then the residual add (the reversed windows its first input with ``reverse_first``).
    ``flat_gemm``: the linear as that pre-processing fuses MatMul and Add, a ``Gemm`` of the windows'
    tokens reshaped to ``[windows * ws * ws, C]`` and back."""
    g = Graph(seed)
    c, h, w, ws = 16, 8, 8, 4
    x = g.op("Conv", ["pixel_values", g.weight("w", c, 3, 4, 4), g.weight("b", c)], "/embed", kernel_shape=[4, 4],
             strides=[4, 4])
    x = g.op("Transpose", [g.reshape(x, [1, c, h * w], "/embed")], "/embed", perm=[0, 2, 1])
    p = g.reshape(x, [1, h // ws, ws, w // ws, ws, c], "/wp")
    p = g.reshape(g.op("Transpose", [p], "/wp", perm=[0, 1, 3, 2, 4, 5]), [-1, ws * ws, c], "/wp")
    if flat_gemm:
        p = g.op("Gemm", [g.reshape(p, [-1, c], "/fc"), g.weight("fc.weight_t", c, c), g.weight("fc.bias", c, scale=0.1)],
                 "/fc")
        p = g.reshape(p, [-1, ws * ws, c], "/fc")
    else:
        p = g.linear(p, c, c, "/fc")
    r = g.op("Transpose", [g.reshape(p, [1, h // ws, w // ws, ws, ws, c], "/wr")], "/wr", perm=[0, 1, 3, 2, 4, 5])
    if not merged:
        r = g.reshape(r, [1, h, w, c], "/wr")
    r = g.reshape(r, [1, h * w, c], "/wr")
    y = g.op("Add", [r, x] if reverse_first else [x, r], "/res")
    return g.model([image_input(3, 32, 32)], [out(g.linear(y, c, 8, "/out"))])


def dense_classifier(form: str = "flatten", qdq: bool = False, bn: bool = False, seed: int = 23):
    """VGG's classifier: a convolution and a max pool to a 3x4 map of 8 channels, flattened
    (``Flatten`` then ``Gemm`` with ``transB``; ``reshape``: ``Reshape [1, -1]`` then ``MatMul``; ``nhwc``:
    Keras' after tf2onnx, a ``Transpose`` to NHWC, ``Reshape [1, -1]``, ``MatMul``), a ReLU,
    a second ``Gemm`` to 10 logits; ``qdq`` puts the first dense weights behind a DequantizeLinear;
    ``bn``, ArcFace's features, a ``BatchNormalization`` (some scales negative) before the ReLU."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("features.weight", 8, 3, 3, 3), g.weight("features.bias", 8, scale=0.1)],
             "/features", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("MaxPool", [g.op("Relu", [x], "/features")], "/features", kernel_shape=[2, 2], strides=[2, 2])
    k = 8 * 3 * 4
    w = g.rng.normal(0, 1 / np.sqrt(k), (16, k)).astype(np.float32)
    if form == "flatten":
        weight = _qweight(g, "fc1.weight", w)[0] if qdq else g.init("fc1.weight", w)
        y = g.op("Gemm", [g.op("Flatten", [x], "/flatten", axis=1), weight, g.weight("fc1.bias", 16, scale=0.1)],
                 "/fc1", transB=1)
    else:
        weight = _qweight(g, "fc1.weight_t", w.T.copy(), axis=1)[0] if qdq else g.init("fc1.weight_t", w.T.copy())
        if form == "nhwc":
            x = g.op("Transpose", [x], "/flatten", perm=[0, 2, 3, 1])
        y = g.op("MatMul", [g.reshape(x, [1, -1], "/flatten"), weight], "/fc1")
    if bn:
        stats = [(g.rng.uniform(-1.5, 1.5, 16)), g.rng.normal(0, 0.1, 16), g.rng.normal(0, 0.1, 16), g.rng.uniform(0.5, 2, 16)]
        y = g.op("BatchNormalization", [y] + [g.init(f"bn.{k}", v.astype(np.float32))
                                              for k, v in zip(("weight", "bias", "mean", "var"), stats)], "/features")
    y = g.op("Relu", [y], "/fc1")
    y = g.op("Gemm", [y, g.weight("fc2.weight", 10, 16), g.weight("fc2.bias", 10, scale=0.1)], "/fc2", transB=1)
    return g.model([image_input(3, 6, 8, "input")], [out(y)])


def padded_convolutions(pads, strides: int = 1, seed: int = 5):
    """A convolution and ReLU, a zero ``Pad`` by ``pads`` (ONNX's order), two convolutions of it
    (``strides``; one with padding of its own, uneven)."""
    g = Graph(seed)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3)], "/a", pads=[1] * 4)])
    p = g.op("Pad", [x, g.const(pads)], "/pad")
    ys = [g.op("Conv", [p, g.weight(f"{k}.weight", 4, 8, 3, 3)], f"/{k}", strides=[strides] * 2, pads=own)
          for k, own in (("b", [0, 0, 0, 0]), ("c", [1, 0, 0, 1]))]
    return g.model([image_input(3, 9, 9, "input")], [out(y) for y in ys])


def opaque_product(seed: int = 5):
    """A float graph that imports but cannot execute: the exporter's ``com.vitaccel.OpaqueMatMul``
    (Anchor DETR's reshaped value aggregation) of two linears of the patch tokens."""
    g = Graph(seed)
    x = g.reshape(g.op("Conv", ["pixel_values", g.weight("w", 8, 3, 4, 4)], "/embed", kernel_shape=[4, 4],
                       strides=[4, 4]), [1, 8, 4], "/embed")
    x = g.op("Transpose", [x], "/embed", perm=[0, 2, 1])
    a, b = g.linear(x, 8, 8, "/a"), g.linear(x, 8, 8, "/b")
    g.nodes.append(helper.make_node("OpaqueMatMul", [a, b], ["/opaque_output_0"], name="/opaque",
                                    domain="com.vitaccel", batch=1, m=4, k=8, n=4))
    graph = helper.make_graph(g.nodes, "g", [image_input(3, 8, 8)],
                              [helper.make_tensor_value_info("/opaque_output_0", TensorProto.FLOAT, [1, 4, 4])],
                              initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.vitaccel", 1)])
    m.ir_version = 8
    return m


def long_softmax(channels: int = 9000, seed: int = 7):
    """A 1x1 convolution to ``channels`` channels and a softmax over them, per pixel of a 2x2 image:
    rows longer than the accelerator's softmax takes."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("w", channels, 3, 1, 1)], "/conv", kernel_shape=[1, 1])
    x = g.op("Transpose", [g.reshape(x, [1, channels, -1], "/conv")], "", perm=[0, 2, 1])
    return g.model([image_input(3, 2, 2)], [out(g.op("Softmax", [x], "", axis=-1))])


def dense_concat(size: int = 16, width: int = 16, grow: int = 16, x_first: bool = True, read: str = "member",
                 stride: int = 1, seed: int = 8):
    """DenseNet/UNet style: ``x = ReLU(conv3x3(input))``, ``cat = Concat([x, conv1x1(x)])`` (or the
    grown channels first), which the plan builds in place, then a 3x3 convolution of ``stride`` that
    reads ``x`` (``read="member"``: stored inside the concatenation, with its pitch) or ``cat``
    (``read="whole"``).  Outputs: ``cat`` and the last convolution's."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3), g.weight("stem.bias", width, scale=0.1)],
             "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Relu", [x], "/stem")
    c = g.op("Conv", [x, g.weight("grow.weight", grow, width, 1, 1), g.weight("grow.bias", grow, scale=0.1)],
             "/grow", kernel_shape=[1, 1])
    cat = g.op("Concat", [x, c] if x_first else [c, x], "/cat", axis=1)
    src, cin = (x, width) if read == "member" else (cat, width + grow)
    y = g.op("Conv", [src, g.weight("read.weight", 8, cin, 3, 3), g.weight("read.bias", 8, scale=0.1)],
             "/read", kernel_shape=[3, 3], pads=[1] * 4, strides=[stride, stride])
    return g.model([image_input(3, size, size, "input")], [out(cat), out(y)])


def nested_concat(size: int = 8, width: int = 8, grow: int = 8, depth: int = 2, seed: int = 9):
    """DenseNet's block: ``x = ReLU(conv3x3(input))``, then ``depth`` times ``x = Concat([x,
    conv1x1(x)])``, each concatenation an input of the next (built in place inside the outermost),
    and a 3x3 convolution of the first ``x``.  Outputs: the last concatenation and that convolution's."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3), g.weight("stem.bias", width, scale=0.1)],
             "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    stem = x = g.op("Relu", [x], "/stem")
    for i in range(depth):
        cin = width + i * grow
        c = g.op("Conv", [x, g.weight(f"grow{i}.weight", grow, cin, 1, 1), g.weight(f"grow{i}.bias", grow, scale=0.1)],
                 f"/grow{i}", kernel_shape=[1, 1])
        x = g.op("Concat", [x, c], f"/cat{i}", axis=1)
    y = g.op("Conv", [stem, g.weight("read.weight", 8, width, 3, 3), g.weight("read.bias", 8, scale=0.1)],
             "/read", kernel_shape=[3, 3], pads=[1] * 4)
    return g.model([image_input(3, size, size, "input")], [out(x), out(y)])


def dense_layer(size: int = 8, width: int = 6, grow: int = 5, kernel: int = 3, position: str = "first",
                depth: int = 1, seed: int = 10):
    """DenseNet's layer with ``x = ReLU(conv3x3(input))`` of ``width`` channels as a concatenation part:
    ``depth`` times ``x = Concat(parts)`` whose other parts are ``conv{kernel}x{kernel}(x)`` of ``grow``
    channels, ``x`` the ``first``, ``middle`` (between two of them) or ``last`` part, each
    concatenation a part of the next (built in place inside the outermost).  Each convolution reads a
    part (or a whole nested in a larger one) while its STOREs write the parts beside it.  Output: the
    last concatenation."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3), g.weight("stem.bias", width, scale=0.1)],
             "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    x, cin = g.op("Relu", [x], "/stem"), width
    pad = [kernel // 2] * 4
    for i in range(depth):
        grown = [g.op("Conv", [x, g.weight(f"grow{i}{j}.weight", grow, cin, kernel, kernel),
                               g.weight(f"grow{i}{j}.bias", grow, scale=0.1)], f"/grow{i}{j}",
                      kernel_shape=[kernel, kernel], pads=pad) for j in range(2 if position == "middle" else 1)]
        parts = {"first": [x, *grown], "last": [*grown, x], "middle": [grown[0], x, grown[-1]]}[position]
        x, cin = g.op("Concat", parts, f"/cat{i}", axis=1), cin + len(grown) * grow
    return g.model([image_input(3, size, size, "input")], [out(x)])


def constant_concat(size: int = 8, width: int = 4, const: int = 3, position: str = "last", seed: int = 12):
    """``Concat`` along the channels of ``x = conv3x3(input)`` and an initializer of ``const`` channels
    (a learned map, CoordConv style), the constant ``first``, ``last`` or on both sides of ``x``
    (``both``), then a 1x1 convolution of the whole.  Outputs: the concatenation and the convolution's."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3), g.weight("stem.bias", width, scale=0.1)],
             "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    k = [g.init(f"map{i}", g.rng.uniform(-2, 2, (1, const, size, size)).astype(np.float32))
         for i in range(2 if position == "both" else 1)]
    parts = {"first": [k[0], x], "last": [x, k[0]], "both": [k[0], x, k[-1]]}[position]
    cat = g.op("Concat", parts, "/cat", axis=1)
    cin = width + const * (len(parts) - 1)
    y = g.op("Conv", [cat, g.weight("read.weight", 5, cin, 1, 1), g.weight("read.bias", 5, scale=0.1)],
             "/read", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(cat), out(y)])


def uneven_conv(kernel=(1, 5), pads=(0, 2, 0, 2), stride: int = 1, group: int = 1, auto_pad: str = "NOTSET",
                size=(13, 12), seed: int = 13):
    """A convolution whose padding differs between sides (``pads`` top, left, bottom, right, or
    TensorFlow's ``SAME_UPPER``/``SAME_LOWER``) on a 3-channel image, then a 3x3 convolution."""
    g = Graph(seed)
    cout = 3 if group > 1 else 8
    attrs = {"kernel_shape": list(kernel), "strides": [stride] * 2, "group": group}
    attrs.update({"pads": list(pads)} if auto_pad == "NOTSET" else {"auto_pad": auto_pad})
    x = g.op("Conv", ["input", g.weight("odd.weight", cout, 3 // group, *kernel), g.weight("odd.bias", cout, scale=0.1)],
             "/odd", **attrs)
    y = g.op("Conv", [x, g.weight("next.weight", 4, cout, 3, 3), g.weight("next.bias", 4, scale=0.1)], "/next",
             kernel_shape=[3, 3], pads=[1] * 4)
    return g.model([image_input(3, *size, "input")], [out(y)])


def dilated(size: int = 16, width: int = 16, seed: int = 16):
    """DeepLab-style dilated convolutions: a stride-2 stem, an atrous pyramid (a 1x1, 3x3 at dilations 2
    and 3, a depthwise 3x3 at dilation 2, a strided 3x3 at dilation 2 upsampled back) concatenated,
    then a 1x1 projection."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k, pad=0, dil=1, stride=1, group=1, relu=True):
        y = g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin // group, k, k),
                          g.weight(f"{scope}.bias", cout, scale=0.1)], f"/{scope}", kernel_shape=[k, k],
                 pads=[pad] * 4, dilations=[dil] * 2, strides=[stride] * 2, group=group)
        return g.op("Relu", [y], f"/{scope}") if relu else y

    x = conv("input", "stem", 3, width, 3, pad=1, stride=2)
    branches = [conv(x, "aspp0", width, width, 1), conv(x, "aspp1", width, width, 3, pad=2, dil=2),
                conv(x, "aspp2", width, width, 3, pad=3, dil=3),
                conv(x, "aspp_dw", width, width, 3, pad=2, dil=2, group=width)]
    low = conv(x, "aspp_s2", width, width, 3, pad=2, dil=2, stride=2)
    branches.append(g.op("Resize", [low, "", g.const(np.array([1, 1, 2, 2], np.float32), np.float32)], "/up",
                         mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    cat = g.op("Concat", branches, "/cat", axis=1)
    y = conv(cat, "project", 5 * width, width, 1, relu=False)
    return g.model([image_input(3, size, size, "input")], [out(y)])


def deeplab(size: int = 16, width: int = 16, classes: int = 5, seed: int = 17):
    """DeepLabV3's head as torchvision exports it, on a stride-2 stem: atrous spatial pyramid
    pooling (a 1x1, 3x3 at dilations 2 and 3, and a global average pool, 1x1 convolution and
    bilinear resize back to the grid), concatenated, projected, classified, resized to the input."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k, pad=0, dil=1, stride=1, relu=True):
        y = g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                 f"/{scope}", kernel_shape=[k, k], pads=[pad] * 4, dilations=[dil] * 2, strides=[stride] * 2)
        return g.op("Relu", [y], f"/{scope}") if relu else y

    def resize(x, c, side, scope):
        return g.op("Resize", [x, "", "", g.const([1, c, side, side])], scope, mode="linear",
                    coordinate_transformation_mode="pytorch_half_pixel")

    x = conv("input", "backbone", 3, width, 3, pad=1, stride=2)
    aspp = [conv(x, "aspp.0", width, width, 1), conv(x, "aspp.1", width, width, 3, pad=2, dil=2),
            conv(x, "aspp.2", width, width, 3, pad=3, dil=3)]
    pooled = conv(g.op("GlobalAveragePool", [x], "/aspp.pool"), "aspp.pool", width, width, 1)
    aspp.append(resize(pooled, width, size // 2, "/aspp.pool"))
    y = conv(g.op("Concat", aspp, "/aspp", axis=1), "aspp.project", 4 * width, width, 1)
    y = resize(conv(y, "classifier", width, classes, 1, relu=False), classes, size, "/head")
    return g.model([image_input(3, size, size, "input")], [out(y)], opset=18)


def subtraction(case: str, size: int = 8, seed: int = 18):
    """``a - b`` of two activations, then a 1x1 convolution: ``b`` a convolution's output
    (``conv``), also read by a residual add (``read_twice``), after a ReLU (``relu``), a global
    average (``mean``, broadcast), a constant minus an activation (``const``), ``a - a`` (``self``)."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k=1):
        return g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                    f"/{scope}", kernel_shape=[k, k], pads=[k // 2] * 4)

    a, b = conv("input", "a", 3, 16), conv("input", "b", 3, 16, 3)
    if case == "relu":
        b = g.op("Relu", [b], "/b")
    elif case == "mean":
        b = g.op("GlobalAveragePool", [a], "/mean")
    elif case == "const":
        a = g.init("offset", np.float32(0.5))
    elif case == "self":
        b = a
    y = g.op("Sub", [a, b], "/sub")
    if case == "read_twice":
        y = g.op("Add", [y, b], "/add")
    return g.model([image_input(3, size, size, "input")], [out(conv(y, "head", 16, 4))])


def elementwise_math(case: str, size: int = 8, seed: int = 21):
    """Two convolutions ``a``, ``b`` of an image, ``case`` of them, a 1x1 convolution: a function of
    one element (``exp``, ``erf``, ``abs``, ``log``, ``sqrt``, ``reciprocal``, ``pow2``, ``pow-1.5``;
    the last four of ``|a| + 0.25``), ``neg`` (``-relu(a) + b``), ``div`` (``a / (|b| + 0.5)``),
    ``const_div`` (``2 / (exp(b) + 1)``), reductions over the channels (``l2norm``: ``F.normalize``
    as exported, ``ReduceL2``, ``Clip``, ``Div``; ``sum_square``; ``mean``; ``sum_dropped``, keepdims 0
    then ``Unsqueeze``; ``tokens_mean``, of a [1, T, C] view) or the pixels (``pixel_sum``)."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k=1):
        return g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                    f"/{scope}", kernel_shape=[k, k], pads=[k // 2] * 4)

    def scalar(v):
        return g.const(np.float32(v), np.float32)

    a, b = conv("input", "a", 3, 8, 3), conv("input", "b", 3, 8, 3)
    positive = g.op("Add", [g.op("Abs", [a], "/abs"), scalar(0.25)], "/positive")
    if case in ("exp", "erf", "abs"):
        y = g.op(case.capitalize(), [a], "/f")
    elif case in ("log", "sqrt", "reciprocal"):
        y = g.op(case.capitalize(), [positive], "/f")
    elif case.startswith("pow"):
        y = g.op("Pow", [positive, scalar(float(case[3:]))], "/f")
    elif case == "neg":
        y = g.op("Add", [g.op("Neg", [g.op("Relu", [a], "/relu")], "/neg"), b], "/add")
    elif case == "div":
        y = g.op("Div", [a, g.op("Add", [g.op("Abs", [b], "/abs_b"), scalar(0.5)], "/den")], "/div")
    elif case == "const_div":
        y = g.op("Div", [scalar(2.0), g.op("Add", [g.op("Exp", [b], "/exp"), scalar(1.0)], "/den")], "/div")
    elif case == "l2norm":
        norm = g.op("Clip", [g.op("ReduceL2", [a], "/norm", axes=[1], keepdims=1), scalar(1e-12)], "/clamp")
        y = g.op("Div", [a, g.op("Expand", [norm, g.const([1, 8, size, size])], "/expand")], "/div")
    elif case == "sum_square":
        y = g.op("Mul", [a, g.op("ReduceSumSquare", [b], "/ss", axes=[1], keepdims=1)], "/mul")
    elif case == "mean":
        y = g.op("Sub", [a, g.op("ReduceMean", [a], "/mean", axes=[1], keepdims=1)], "/sub")
    elif case == "sum_dropped":
        s = g.op("ReduceSum", [b, g.const([1])], "/sum", keepdims=0)
        y = g.op("Mul", [a, g.op("Unsqueeze", [s, g.const([1])], "/unsqueeze")], "/mul")
    elif case == "pixel_sum":
        y = g.op("Add", [a, g.op("ReduceSum", [b, g.const([2, 3])], "/sum", keepdims=1)], "/add")
    elif case == "tokens_mean":
        t = g.op("Transpose", [g.reshape(a, [1, 8, size * size])], "/t", perm=[0, 2, 1])
        y = g.op("Sub", [t, g.op("ReduceMean", [t], "/mean", axes=[-1], keepdims=1)], "/sub")
        y = g.reshape(g.op("Transpose", [y], "/back", perm=[0, 2, 1]), [1, 8, size, size])
    else:
        raise ValueError(case)
    return g.model([image_input(3, size, size, "input")], [out(conv(y, "head", 8, 4))])


def group_norm(form: str, channels: int = 8, groups: int = 2, size: int = 8, constant_group: bool = False,
               seed: int = 22):
    """A convolution, a normalisation of its channels over their pixels, a 1x1 convolution:
    ``export``, GroupNorm as PyTorch exports it below opset 18 (a reshape to ``[1, groups, -1]``,
    ``InstanceNormalization`` with unit scale, a reshape back, the affine ``Mul`` and ``Add``);
    ``instance``, ``InstanceNormalization`` of the image; ``op18`` and ``op21``, ONNX's
    ``GroupNormalization`` (a scale and a bias per group, then per channel).  ``constant_group``: the
    convolution's channels of the first group (``instance``: channel 0) one constant, weights 0 and a
    bias, so that its variance is 0 on every image."""
    g = Graph(seed)
    c = channels
    weight, bias = g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)
    if constant_group:
        k = 1 if form == "instance" else c // groups
        w, b = (numpy_helper.to_array(t).copy() for t in g.inits[-2:])
        w[:k], b[:k] = 0, b[0]
        g.inits[-2:] = [numpy_helper.from_array(w, weight), numpy_helper.from_array(b, bias)]
    a = g.op("Conv", ["input", weight, bias], "/a", kernel_shape=[3, 3], pads=[1] * 4)
    gamma = (1 + 0.2 * g.rng.normal(size=c)).astype(np.float32)
    beta = (0.1 * g.rng.normal(size=c)).astype(np.float32)
    opset = {"op18": 18, "op21": 21}.get(form, 17)
    if form == "export":
        n = g.op("InstanceNormalization", [g.reshape(a, [1, groups, -1]), g.init("ones", np.ones(groups, np.float32)),
                                           g.init("zeros", np.zeros(groups, np.float32))], "/norm", epsilon=1e-5)
        y = g.op("Mul", [g.reshape(n, [1, c, size, size]), g.init("norm.weight", gamma.reshape(c, 1, 1))], "/norm")
        y = g.op("Add", [y, g.init("norm.bias", beta.reshape(c, 1, 1))], "/norm")
    elif form == "instance":
        y = g.op("InstanceNormalization", [a, g.init("norm.weight", gamma), g.init("norm.bias", beta)], "/norm",
                 epsilon=1e-5)
    else:
        per = groups if form == "op18" else c
        y = g.op("GroupNormalization", [a, g.init("norm.weight", gamma[:per]), g.init("norm.bias", beta[:per])], "/norm",
                 num_groups=groups, epsilon=1e-5)
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)], opset)


def quant_pre_processed(proto):
    """``proto`` after onnxruntime's ``quant_pre_process`` (docs/onnx.md's step before quantising;
    without its symbolic shape inference, which needs sympy): its optimiser inlines functions
    (GroupNormalization) and moves transposes (past a class token's concatenation)."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.onnx", Path(d) / "out.onnx"
        onnx.save(proto, str(src))
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return onnx.load(str(dst))


def cpvt(size: int = 32, dim: int = 16, patch: int = 4, seed: int = 25):
    """CPVT: a patch embedding, a class token before the patches' tokens, a block (LayerNorm, a GELU
    MLP, the residual add), the PEG (the patch tokens, the class token ``x[:, 0]`` set aside, as their
    image: a depthwise 3x3 convolution plus that image, flattened back, the class token before them
    again), another block, a LayerNorm and a classifier of the class token."""
    g = Graph(seed)
    side = size // patch
    x = g.op("Conv", ["pixel_values", g.weight("embed.weight", dim, 3, patch, patch), g.weight("embed.bias", dim, scale=0.1)],
             "/embed", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, side * side], "/embed")], "/embed", perm=[0, 2, 1])
    x = g.op("Concat", [g.weight("cls_token", 1, 1, dim, scale=1.0), x], "", axis=1)

    def block(x, scope):
        h = g.gelu(g.linear(g.layernorm(x, dim, f"{scope}/norm"), dim, 2 * dim, f"{scope}/fc1"), f"{scope}/act")
        return g.op("Add", [x, g.linear(h, 2 * dim, dim, f"{scope}/fc2")], scope)

    x = block(x, "/blocks.0")
    cls = g.op("Unsqueeze", [g.op("Gather", [x, g.const(0)], "/peg", axis=1), g.const([1])], "/peg")
    feat = g.op("Slice", [x, g.const([1]), g.const([2 ** 63 - 1]), g.const([1]), g.const([1])], "/peg")
    img = g.reshape(g.op("Transpose", [feat], "/peg", perm=[0, 2, 1]), [1, dim, side, side], "/peg")
    y = g.op("Conv", [img, g.weight("peg.weight", dim, 1, 3, 3), g.weight("peg.bias", dim, scale=0.1)], "/peg",
             kernel_shape=[3, 3], pads=[1] * 4, group=dim)
    y = g.op("Transpose", [g.reshape(g.op("Add", [y, img], "/peg"), [1, dim, side * side], "/peg")], "/peg", perm=[0, 2, 1])
    x = block(g.op("Concat", [cls, y], "/peg", axis=1), "/blocks.1")
    x = g.op("Gather", [g.layernorm(x, dim, "/norm"), g.const(0)], "/head", axis=1)
    return g.model([image_input(3, size, size)], [out(g.linear(x, dim, 10, "/head"))])


def prelu(per_channel: bool, size: int = 8, seed: int = 19):
    """A convolution, ``PRelu`` with one slope or one per channel (negative ones among them), a 1x1
    convolution."""
    g = Graph(seed)
    slope = (np.linspace(-0.5, 0.8, 16).reshape(16, 1, 1) if per_channel else np.array([0.25])).astype(np.float32)
    c = g.op("Conv", ["input", g.weight("c.weight", 16, 3, 3, 3), g.weight("c.bias", 16, scale=0.1)], "/c",
             kernel_shape=[3, 3], pads=[1] * 4)
    p = g.op("PRelu", [c, g.init("act.weight", slope)], "/act")
    y = g.op("Conv", [p, g.weight("head.weight", 4, 16, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def depth_to_space(mode: str = "DCR", block: int = 2, after: str = "conv", size: int = 8, seed: int = 20,
                   channels: int = 4):
    """A convolution to ``channels * block**2`` channels, ``DepthToSpace`` (``mode`` DCR, or CRD as PyTorch
    exports ``pixel_shuffle``), then ``after``: a 3x3 convolution, a ReLU added to its input, a tanh
    (the layout a computing pass's leading member), nothing (the graph's output), or (``read_twice``)
    a 1x1 convolution of the convolution's output beside it; ``sigmoid``: CRD of a sigmoid."""
    g = Graph(seed)
    c = g.op("Conv", ["input", g.weight("c.weight", channels * block ** 2, 3, 3, 3), g.weight("c.bias", channels * block ** 2, scale=0.1)],
             "/c", kernel_shape=[3, 3], pads=[1] * 4)
    src = g.op("Sigmoid", [c], "/act") if after == "sigmoid" else c
    p = g.op("DepthToSpace", [src], "/shuffle", blocksize=block, mode=mode)
    outs = [p]
    if after in ("conv", "read_twice", "sigmoid"):
        outs = [g.op("Conv", [p, g.weight("head.weight", 4, channels, 3, 3)], "/head", kernel_shape=[3, 3], pads=[1] * 4)]
    if after == "read_twice":
        outs.append(g.op("Conv", [c, g.weight("side.weight", 4, channels * block ** 2, 1, 1)], "/side", kernel_shape=[1, 1]))
    if after == "relu_add":
        outs = [g.op("Add", [g.op("Relu", [p], "/relu"), p], "/add")]
    if after == "tanh":
        outs = [g.op("Tanh", [p], "/tanh")]
    return g.model([image_input(3, size, size, "input")], [out(o) for o in outs])


def conv_transpose(kernel: int = 2, stride: int = 2, pads=(0, 0, 0, 0), output_padding: int = 0, size=(7, 6),
                   seed: int = 21, bn_relu: bool = False, **attrs):
    """A 3x3 convolution, then ``ConvTranspose`` (8 -> 6 channels; ``attrs`` more of its attributes),
    with ``bn_relu`` then a BatchNormalization and a ReLU (DCGAN's generator)."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("c.weight", 8, 3, 3, 3), g.weight("c.bias", 8, scale=0.1)], "/c",
             kernel_shape=[3, 3], pads=[1] * 4)
    y = g.op("ConvTranspose", [x, g.weight("up.weight", 8, 6, kernel, kernel), g.weight("up.bias", 6, scale=0.1)], "/up",
             kernel_shape=[kernel, kernel], strides=[stride, stride], pads=list(pads),
             output_padding=[output_padding] * 2, **attrs)
    if bn_relu:
        stats = [g.init(f"bn.{n}", v.astype(np.float32)) for n, v in (("weight", 1 + 0.2 * g.rng.normal(size=6)),
                 ("bias", 0.2 * g.rng.normal(size=6)), ("mean", 0.2 * g.rng.normal(size=6)), ("var", 1 + g.rng.random(6)))]
        y = g.op("Relu", [g.op("BatchNormalization", [y, *stats], "/bn")], "/relu")
    return g.model([image_input(3, *size, "input")], [out(y)])


def grouped_conv_transpose(kernel: int = 4, stride: int = 2, pads=(1, 1, 1, 1), group: int = 8, out_ch: int = 8,
                           size=(6, 5), seed: int = 24, bn_relu: bool = False, output_padding: int = 0):
    """A 3x3 convolution to 8 channels, then a ``ConvTranspose`` in ``group`` groups to ``out_ch``
    channels (group 8 to 8: a depthwise upsampler's, as a decoder's learned bilinear upsampling),
    with ``bn_relu`` then a BatchNormalization and a ReLU."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("c.weight", 8, 3, 3, 3), g.weight("c.bias", 8, scale=0.1)], "/c",
             kernel_shape=[3, 3], pads=[1] * 4)
    y = g.op("ConvTranspose", [x, g.weight("up.weight", 8, out_ch // group, kernel, kernel),
                               g.weight("up.bias", out_ch, scale=0.1)], "/up", kernel_shape=[kernel, kernel],
             strides=[stride, stride], pads=list(pads), group=group, output_padding=[output_padding] * 2)
    if bn_relu:
        stats = [g.init(f"bn.{n}", v.astype(np.float32)) for n, v in (("weight", 1 + 0.2 * g.rng.normal(size=out_ch)),
                 ("bias", 0.2 * g.rng.normal(size=out_ch)), ("mean", 0.2 * g.rng.normal(size=out_ch)),
                 ("var", 1 + g.rng.random(out_ch)))]
        y = g.op("Relu", [g.op("BatchNormalization", [y, *stats], "/bn")], "/relu")
    return g.model([image_input(3, *size, "input")], [out(y)])


def unet(size: int = 16, width: int = 8, seed: int = 22):
    """A two-level U-Net: double 3x3 convolutions, a 2x2 max pool down, a 2x2 stride-2 transposed
    convolution up, concatenated with the skip connection, a 1x1 classifier."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k=3):
        y = g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                 f"/{scope}", kernel_shape=[k, k], pads=[k // 2] * 4)
        return g.op("Relu", [y], f"/{scope}")

    skip = conv(conv("input", "enc.0", 3, width), "enc.1", width, width)
    low = g.op("MaxPool", [skip], "/down", kernel_shape=[2, 2], strides=[2, 2])
    low = conv(conv(low, "mid.0", width, 2 * width), "mid.1", 2 * width, 2 * width)
    up = g.op("ConvTranspose", [low, g.weight("up.weight", 2 * width, width, 2, 2), g.weight("up.bias", width, scale=0.1)],
              "/up", kernel_shape=[2, 2], strides=[2, 2])
    y = conv(conv(g.op("Concat", [skip, up], "/cat", axis=1), "dec.0", 2 * width, width), "dec.1", width, width)
    y = g.op("Conv", [y, g.weight("head.weight", 3, width, 1, 1), g.weight("head.bias", 3, scale=0.1)], "/head",
             kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def pre_activation(kind: str = "densenet", size: int = 8, width: int = 8, seed: int = 23):
    """BatchNormalization that no convolution before it takes: a DenseNet block (BN-ReLU-conv
    layers on a growing concatenation, then a transition BN-ReLU-1x1 and a 2x2 average pool), or a
    pre-activation ResNet block (``x + conv(relu(bn(conv(relu(bn(x))))))``)."""
    g = Graph(seed)

    def bn(x, scope, c):
        r = g.rng
        stats = [(1 + 0.2 * r.normal(size=c)), 0.2 * r.normal(size=c), 0.2 * r.normal(size=c), 1 + np.abs(r.normal(size=c))]
        return g.op("BatchNormalization", [x] + [g.init(f"{scope}.{n}", v.astype(np.float32)) for n, v in
                                                 zip(("weight", "bias", "running_mean", "running_var"), stats)],
                    f"/{scope}", epsilon=1e-5)

    def bn_relu_conv(x, scope, cin, cout, k):
        x = g.op("Relu", [bn(x, f"{scope}.norm", cin)], f"/{scope}")
        return g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k)], f"/{scope}", kernel_shape=[k, k],
                    pads=[k // 2] * 4)

    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3)], "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    if kind == "densenet":
        for i in range(2):
            grown = bn_relu_conv(bn_relu_conv(x, f"layer{i}.1", width * (i + 1), 16, 1), f"layer{i}.2", 16, width, 3)
            x = g.op("Concat", [x, grown], f"/layer{i}", axis=1)
        x = bn_relu_conv(x, "transition", 3 * width, width, 1)
        y = g.op("AveragePool", [x], "/transition", kernel_shape=[2, 2], strides=[2, 2])
    else:
        y = g.op("Add", [x, bn_relu_conv(bn_relu_conv(x, "block.1", width, width, 3), "block.2", width, width, 3)], "/block")
    return g.model([image_input(3, size, size, "input")], [out(y)])


def shufflenet(blocks: int = 2, size: int = 8, width: int = 16, groups: int = 2, seed: int = 24):
    """ShuffleNetV2's basic units as torchvision exports them: ``chunk(2)``, a 1x1 - depthwise 3x3 - 1x1
    branch on the second half, ``cat(x1, branch)``, then ``channel_shuffle`` (reshape to ``groups``,
    transpose, reshape back)."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3)], "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    half = width // 2
    for i in range(blocks):
        s = f"/stage.{i}"
        x1, x2 = g.op("Split", [x, g.const([half, half])], s, n_out=2, axis=1)
        b = g.op("Relu", [g.op("Conv", [x2, g.weight(f"{s}.pw1", half, half, 1, 1)], s, kernel_shape=[1, 1])], s)
        b = g.op("Conv", [b, g.weight(f"{s}.dw", half, 1, 3, 3)], s, kernel_shape=[3, 3], pads=[1] * 4, group=half)
        b = g.op("Relu", [g.op("Conv", [b, g.weight(f"{s}.pw2", half, half, 1, 1)], s, kernel_shape=[1, 1])], s)
        y = g.reshape(g.op("Concat", [x1, b], s, axis=1), [1, groups, width // groups, size, size], s)
        x = g.reshape(g.op("Transpose", [y], s, perm=[0, 2, 1, 3, 4]), [1, width, size, size], s)
    y = g.op("Conv", [x, g.weight("head.weight", 4, width, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def self_concat(parts: int = 2, size: int = 8, seed: int = 1):
    """``Concat([x] * parts)`` of a convolution's output along its channels, then a 1x1 convolution."""
    g = Graph(seed)
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    y = g.op("Conv", [g.op("Concat", [x] * parts, "", axis=1), g.weight("w2", 4, 8 * parts, 1, 1)], "", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "x")], [out(y)])


def spatial_slice(starts, ends, steps, after: str = "conv", seed: int = 25):
    """A convolution, then ``Slice`` of its rows and columns (``starts``, ``ends``, ``steps``), then
    ``after``: a 3x3 convolution, a ReLU, an add of its ReLU, or nothing (the graph's output)."""
    g = Graph(seed)
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    s = g.op("Slice", [x, g.const(starts), g.const(ends), g.const([2, 3]), g.const(steps)], "")
    y = {"conv": lambda: g.op("Conv", [s, g.weight("w2", 4, 8, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4),
         "relu": lambda: g.op("Relu", [s], ""), "add": lambda: g.op("Add", [s, g.op("Relu", [s], "")], ""),
         "output": lambda: s}[after]()
    return g.model([image_input(3, 8, 8, "x")], [out(y)])


def strided_conv(strides, kernel: int = 3, pads=(1, 1, 1, 1), size=(9, 10), seed: int = 26, **attrs):
    """A 3x3 convolution, then a convolution with ``strides`` (which may differ between the axes;
    ``attrs``: ``auto_pad``, ``dilations``) and a ReLU."""
    g = Graph(seed)
    x = g.op("Conv", ["x", g.weight("w", 8, 3, 3, 3)], "", kernel_shape=[3, 3], pads=[1] * 4)
    at = dict(kernel_shape=[kernel, kernel], strides=list(strides), **attrs)
    if "auto_pad" not in attrs:
        at["pads"] = list(pads)
    y = g.op("Relu", [g.op("Conv", [x, g.weight("w2", 6, 8, kernel, kernel), g.weight("b2", 6)], "", **at)], "")
    return g.model([image_input(3, *size, "x")], [out(y)])


def same_padded_stem(size: int = 16, seed: int = 14):
    """A TensorFlow-style stem, every node padded ``SAME_UPPER`` (one more at the bottom and right):
    a 3x3 stride-2 convolution, a ReLU, a 3x3 stride-2 max pool, then a 1x1 convolution."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("stem.weight", 8, 3, 3, 3), g.weight("stem.bias", 8, scale=0.1)], "/stem",
             kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    x = g.op("Relu", [x], "/stem")
    x = g.op("MaxPool", [x], "/pool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    y = g.op("Conv", [x, g.weight("head.weight", 6, 8, 1, 1), g.weight("head.bias", 6, scale=0.1)], "/head",
             kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def activation_graph(op: str, size: int = 8, seed: int = 15, residual: bool = False, opset: int = 17, **attrs):
    """``conv3x3 -> op -> conv1x1`` on a 3-channel image, ``op`` an activation (``Clip``'s bounds as the
    inputs ``min``/``max`` of ``attrs``, opset 11 on); with ``residual`` the activation is of ``x + conv(x)``,
    so that the vector unit applies it, not the convolution's STOREs."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("a.weight", 8, 3, 3, 3), g.weight("a.bias", 8, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if residual:
        r = g.op("Conv", [x, g.weight("r.weight", 8, 8, 1, 1), g.weight("r.bias", 8, scale=0.5)], "/r",
                 kernel_shape=[1, 1])
        x = g.op("Add", [x, r], "/res")
    ins = [x]
    if op == "Clip":
        ins += [g.const(np.float32(attrs.pop(k)), np.float32) if k in attrs else "" for k in ("min", "max")]
        while ins[-1] == "":
            ins.pop()
    x = g.op(op, ins, "/act", **attrs)
    y = g.op("Conv", [x, g.weight("b.weight", 4, 8, 1, 1), g.weight("b.bias", 4, scale=0.1)], "/b", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)], opset)


def lrn(size: int = 5, channels: int = 12, image: int = 12, opset: int = 17, seed: int = 27, **attrs):
    """AlexNet's stem as the ONNX model zoo ships it: a convolution, a ReLU, ``LRN`` over ``size``
    neighbouring channels (``attrs``: its ``alpha``, ``beta``, ``bias``), a max pooling, a 1x1
    convolution."""
    g = Graph(seed)
    c = channels
    a = g.op("Conv", ["data_0", g.weight("conv1.weight", c, 3, 3, 3), g.weight("conv1.bias", c, scale=0.5)], "/conv1",
             kernel_shape=[3, 3], pads=[1] * 4)
    n = g.op("LRN", [g.op("Relu", [a], "/conv1")], "/norm1", size=size, **attrs)
    p = g.op("MaxPool", [n], "/pool1", kernel_shape=[2, 2], strides=[2, 2])
    y = g.op("Conv", [p, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, image, image, "data_0")], [out(y)], opset)


def interleaved_attention(split: str = "split", key: int = 8, value: int = 8, heads: int = 3, scale_on: str = "scores",
                          size: int = 16, patch: int = 4, dim: int = 24, norm: bool = False, seed: int = 28):
    """Attention whose fused qkv linear writes q, k and v per head (``[head][q k v][d]``, timm's
    ``AttentionCl``, EfficientFormer, LeViT): the qkv output viewed as ``[1, N, heads, 2*key+value]``,
    transposed to ``[1, heads, N, .]`` and ``split`` by a ``Split`` of sizes ``[key, key, value]``,
    three ``slices``, or (``gather``, ``key == value``) a reshape to ``[1, heads, N, 3, d]`` and a
    ``Gather`` of each; the scale on the ``scores``, on ``q``, or ``sdpa`` (its square root on q
    and on k^T, as PyTorch exports ``scaled_dot_product_attention``); then the projection and a head.
    ``norm``: LeViT's ``LinearNorm``, the qkv linear without a bias, then a ``BatchNorm1d`` applied
    through a reshape to ``[N, C]`` and back."""
    g = Graph(seed)
    n, period = (size // patch) ** 2, 2 * key + value
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/patch")], "/patch", perm=[0, 2, 1])
    qkv = g.linear(x, dim, heads * period, "/attn/qkv", bias=not norm)
    if norm:
        c = heads * period
        stats = [g.rng.uniform(-1.5, 1.5, c), g.rng.normal(0, 0.1, c), g.rng.normal(0, 0.1, c), g.rng.uniform(0.5, 2, c)]
        bn = g.op("BatchNormalization", [g.reshape(qkv, [n, c], "/attn/qkv")] + [
            g.init(f"qkv.bn.{k}", v.astype(np.float32)) for k, v in zip(("weight", "bias", "mean", "var"), stats)],
            "/attn/qkv/bn")
        qkv = g.reshape(bn, [1, n, c], "/attn/qkv")
    qkv = g.op("Transpose", [g.reshape(qkv, [1, n, heads, period], "/attn")], "/attn", perm=[0, 2, 1, 3])
    if split == "split":
        q, k, v = g.op("Split", [qkv, g.const([key, key, value])], "/attn", n_out=3, axis=3)
    elif split == "slices":
        q, k, v = (g.op("Slice", [qkv, g.const([lo]), g.const([hi]), g.const([3])], "/attn")
                   for lo, hi in ((0, key), (key, 2 * key), (2 * key, period)))
    else:
        qkv = g.reshape(qkv, [1, heads, n, 3, key], "/attn")
        q, k, v = (g.op("Gather", [qkv, g.const(i)], "/attn", axis=3) for i in range(3))
    kt = g.op("Transpose", [k], "/attn", perm=[0, 1, 3, 2])
    root = np.float32(key ** -0.25)
    if scale_on in ("q", "sdpa"):
        q = g.op("Mul", [q, g.const(root * root if scale_on == "q" else root, np.float32)], "/attn")
    if scale_on == "sdpa":
        kt = g.op("Mul", [kt, g.const(root, np.float32)], "/attn")
    a = g.op("MatMul", [q, kt], "/attn")
    if scale_on == "scores":
        a = g.op("Mul", [a, g.const(np.float32(key ** -0.5), np.float32)], "/attn")
    o = g.op("MatMul", [g.op("Softmax", [a], "/attn", axis=-1), v], "/attn")
    o = g.reshape(g.op("Transpose", [o], "/attn", perm=[0, 2, 1, 3]), [1, n, heads * value], "/attn")
    o = g.linear(o, heads * value, dim, "/attn/proj")
    y = g.op("Gemm", [g.op("ReduceMean", [o], "", axes=[1], keepdims=0), g.weight("head.weight", 5, dim),
                      g.weight("head.bias", 5)], "/head", transB=1)
    macs = n * dim * 3 * patch * patch + n * dim * heads * period + heads * n * n * (key + value) \
        + n * heads * value * dim + dim * 5
    return g.model([image_input(3, size, size)], [out(y)]), macs


def channel_attention(size=8, width: int = 16, reduction: int = 4, max_op: str = "GlobalMaxPool", seed: int = 29):
    """CBAM's channel attention on a ``size`` image (a side, or height and width): a convolution, the average and the max of each channel over the
    pixels (``max_op``: ``GlobalMaxPool``, as ``AdaptiveMaxPool2d(1)`` exports, or ``ReduceMax``
    over axes 2 and 3, as ``amax``), one shared MLP of 1x1 convolutions on both, their sum's
    sigmoid scaling the channels, a 1x1 head."""
    g = Graph(seed)
    c = width
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("conv.weight", c, 3, 3, 3), g.weight("conv.bias", c, scale=0.5)],
                          "/conv", kernel_shape=[3, 3], pads=[1] * 4)], "/conv")
    w1, w2 = g.weight("fc1.weight", c // reduction, c, 1, 1), g.weight("fc2.weight", c, c // reduction, 1, 1)
    avg = g.op("GlobalAveragePool", [x], "/ca")
    peak = g.op(max_op, [x], "/ca", **({"axes": [2, 3], "keepdims": 1} if max_op == "ReduceMax" else {}))
    mlp = [g.op("Conv", [g.op("Relu", [g.op("Conv", [p, w1], "/ca/fc1", kernel_shape=[1, 1])], "/ca"), w2], "/ca/fc2",
                kernel_shape=[1, 1]) for p in (avg, peak)]
    y = g.op("Mul", [x, g.op("Sigmoid", [g.op("Add", mlp, "/ca")], "/ca")], "/ca")
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    h, w = (size, size) if isinstance(size, int) else size
    return g.model([image_input(3, h, w, "input")], [out(y)], 17)


def eca(size: int = 8, width: int = 16, kernel: int = 3, pads=None, stride: int = 1, seed: int = 30):
    """ECA-Net's channel attention as timm exports it: a convolution, the mean of each channel
    (``ReduceMean`` of axes 2 and 3, not kept), viewed as ``[1, 1, C]``, a 1-D convolution of one
    channel along them (no bias), its sigmoid viewed as ``[1, C, 1, 1]`` scaling the channels, a
    1x1 head."""
    g = Graph(seed)
    c = width
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("conv.weight", c, 3, 3, 3), g.weight("conv.bias", c, scale=0.5)],
                          "/conv", kernel_shape=[3, 3], pads=[1] * 4)], "/conv")
    m = g.reshape(g.op("ReduceMean", [x], "/eca", axes=[2, 3], keepdims=0), [1, 1, -1], "/eca")
    pads = pads if pads is not None else [(kernel - 1) // 2] * 2
    a = g.op("Conv", [m, g.weight("eca.conv.weight", 1, 1, kernel, scale=1.0)], "/eca/conv", kernel_shape=[kernel],
             pads=pads, strides=[stride])
    y = g.op("Mul", [x, g.reshape(g.op("Sigmoid", [a], "/eca"), [1, -1, 1, 1], "/eca")], "/eca")
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)], 17)


def coord_attention(h: int = 6, w: int = 10, c: int = 16, mid: int = 8, seed: int = 33):
    """Coordinate attention (Hou et al. 2021) as PyTorch exports it: the mean of each row and of
    each column (average pools), the columns' transposed to ``W x 1`` and concatenated after the
    rows' along the height, a shared 1x1 convolution and HardSwish, split back, the columns'
    transposed to ``1 x W`` again, a 1x1 convolution and a sigmoid each, and the image times both
    (broadcast along the rows and along the columns); a 1x1 head."""
    g = Graph(seed)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("conv.weight", c, 3, 3, 3)], "/conv", kernel_shape=[3, 3],
                          pads=[1] * 4)], "/conv")
    xh = g.op("AveragePool", [x], "/ca", kernel_shape=[1, w], strides=[1, w])
    xw = g.op("Transpose", [g.op("AveragePool", [x], "/ca", kernel_shape=[h, 1], strides=[h, 1])], "/ca",
              perm=[0, 1, 3, 2])
    y = g.op("Conv", [g.op("Concat", [xh, xw], "/ca", axis=2), g.weight("conv1.weight", mid, c, 1, 1),
                      g.weight("conv1.bias", mid)], "/ca/conv1", kernel_shape=[1, 1])
    yh, yw = g.op("Split", [g.op("HardSwish", [y], "/ca"), g.const([h, w])], "/ca", n_out=2, axis=2)
    yw = g.op("Transpose", [yw], "/ca", perm=[0, 1, 3, 2])
    ah, aw = (g.op("Sigmoid", [g.op("Conv", [t, g.weight(f"conv{s}.weight", c, mid, 1, 1)], f"/ca/conv{s}",
                                    kernel_shape=[1, 1])], "/ca") for t, s in ((yh, "h"), (yw, "w")))
    o = g.op("Mul", [g.op("Mul", [x, aw], "/ca"), ah], "/ca")
    o = g.op("Conv", [o, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, h, w, "input")], [out(o)])


def integral(project: str = "vector", anchors: int = 16, reg: int = 8, gfl: bool = False, seed: int = 42):
    """NanoDet's and GFL's box integral: a head's ``4 * reg`` channels per anchor as ``[1, A, 4, reg]``
    (``gfl``: mmdet's ``[A * 4, reg]``, the result viewed back as ``[1, A, 4]``),
    a softmax over each row of ``reg`` bins, then ``F.linear(x, project)`` by the constant
    ``0 .. reg-1`` (``vector``: ``MatMul`` by a 1-D ``[reg]``, the last axis dropped; ``column``: a
    ``[reg, 1]`` matrix; ``matrix``: ``[reg, 3]``)."""
    g = Graph(seed)
    y = g.op("Conv", ["input", g.weight("head.weight", 4 * reg, 3, 4, 4), g.weight("head.bias", 4 * reg)], "/head",
             kernel_shape=[4, 4], strides=[4, 4])
    y = g.op("Transpose", [g.reshape(y, [1, 4 * reg, anchors], "/head")], "/head", perm=[0, 2, 1])
    r = g.op("Softmax", [g.reshape(y, [anchors * 4, reg] if gfl else [1, anchors, 4, reg], "/integral")], "/integral",
             axis=-1)
    bins = np.arange(reg, dtype=np.float32)
    weights = {"vector": bins, "column": bins[:, None], "matrix": np.stack([bins, bins ** 0.5, -bins], 1)}[project]
    d = g.op("MatMul", [r, g.init("project", weights.astype(np.float32))], "/integral")
    d = g.reshape(d, [1, anchors, 4] + ([] if project == "vector" else [weights.shape[1]]), "/integral") if gfl else d
    side = int(np.sqrt(anchors)) * 4
    return g.model([image_input(3, side, side, "input")], [out(d)])


def split_attention(size: int = 8, width: int = 8, radix: int = 2, seed: int = 46):
    """SKNet's split attention as PyTorch exports it: ``radix`` convolutions of the image, the mean
    of their sum, a 1x1 convolution to ``radix * C`` logits viewed as ``[1, radix, C, 1, 1]``, a
    softmax over the branches (axis 1), each branch's weights (a ``Gather``) times its map, summed."""
    g = Graph(seed)
    branches = [g.op("Conv", ["input", g.weight(f"b{r}.weight", width, 3, 3, 3)], f"/b{r}", kernel_shape=[3, 3],
                     pads=[r + 1] * 4, dilations=[r + 1] * 2) for r in range(radix)]
    total = branches[0]
    for b in branches[1:]:
        total = g.op("Add", [total, b], "/sk")
    s = g.op("GlobalAveragePool", [total], "/sk")
    logits = g.op("Conv", [s, g.weight("fc.weight", radix * width, width, 1, 1), g.weight("fc.bias", radix * width)],
                  "/sk/fc", kernel_shape=[1, 1])
    att = g.op("Softmax", [g.reshape(logits, [1, radix, width, 1, 1], "/sk")], "/sk", axis=1)
    y = None
    for r, b in enumerate(branches):
        part = g.op("Mul", [b, g.op("Gather", [att, g.const(r)], "/sk", axis=1)], "/sk")
        y = part if y is None else g.op("Add", [y, part], "/sk")
    return g.model([image_input(3, size, size, "input")], [out(g.op("Conv", [y, g.weight("head.weight", 4, width, 1, 1)],
                                                                        "/head", kernel_shape=[1, 1]))])


def mixer(size: int = 16, patch: int = 4, dim: int = 16, token_hidden: int = 8, depth: int = 1, kind: str = "mixer",
          classes: int = 5, qdq: str = "", seed: int = 47):
    """MLP-Mixer, ResMLP and gMLP blocks as timm exports them: a linear over the tokens between two
    ``Transpose(perm=[0, 2, 1])`` (Mixer: fc, GELU, fc; ResMLP: one ``T x T`` linear after an affine;
    gMLP: the spatial gating unit, ``u * proj(norm(v)^T)^T`` with ``u, v`` the channel halves).
    ``qdq``: the token linears' weights int8 behind a DequantizeLinear, one scale (``"tensor"``)
    or one per output (``"channel"``)."""
    g = Graph(seed)
    t = (size // patch) ** 2
    x = g.op("Conv", ["input", g.weight("stem.weight", dim, 3, patch, patch), g.weight("stem.bias", dim)], "/stem",
             kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/stem")], "/stem", perm=[0, 2, 1])

    def token_weight(k, n, scope):
        if not qdq:
            return g.weight(f"{scope}.weight_t", k, n, scale=1 / np.sqrt(k))
        w = g.rng.uniform(-1, 1, (k, n)).astype(np.float32) / np.sqrt(k)
        if qdq == "channel":
            return _qweight(g, f"{scope}.weight_t", w, axis=1)[0]
        s = np.float32(np.abs(w).max() / 127)
        return g.op("DequantizeLinear", [g.init(f"{scope}.weight_t.q", np.round(w / s).astype(np.int8)),
                                         g.init(f"{scope}.weight_t.scale", s),
                                         g.init(f"{scope}.weight_t.zp", np.int8(0))], scope)

    def tokens_linear(h, k, n, scope):
        h = g.op("MatMul", [h, token_weight(k, n, scope)], scope)
        return g.op("Add", [h, g.weight(f"{scope}.bias", n, scale=0.1)], scope)

    for b in range(depth):
        s = f"/blocks.{b}"
        if kind == "mixer":
            h = g.op("Transpose", [g.layernorm(x, dim, f"{s}/norm1")], s, perm=[0, 2, 1])
            h = tokens_linear(g.gelu(tokens_linear(h, t, token_hidden, f"{s}/mlp_tokens.fc1"), s), token_hidden, t,
                              f"{s}/mlp_tokens.fc2")
            x = g.op("Add", [x, g.op("Transpose", [h], s, perm=[0, 2, 1])], s)
            x = g.op("Add", [x, g.linear(g.gelu(g.linear(g.layernorm(x, dim, f"{s}/norm2"), dim, 2 * dim, f"{s}/fc1"),
                                               s), 2 * dim, dim, f"{s}/fc2")], s)
        elif kind == "resmlp":
            h = g.op("Add", [g.op("Mul", [x, g.weight(f"{s}/norm1.alpha", 1, 1, dim, scale=1.0)], s),
                             g.weight(f"{s}/norm1.beta", 1, 1, dim, scale=0.1)], s)
            h = tokens_linear(g.op("Transpose", [h], s, perm=[0, 2, 1]), t, t, f"{s}/linear_tokens")
            x = g.op("Add", [x, g.op("Transpose", [h], s, perm=[0, 2, 1])], s)
        else:
            u, v = g.op("Split", [g.gelu(g.linear(g.layernorm(x, dim, f"{s}/norm"), dim, 2 * dim, f"{s}/fc1"), s),
                                  g.const([dim, dim])], s, n_out=2, axis=-1)
            v = g.op("Transpose", [g.layernorm(v, dim, f"{s}/sgu/norm")], s, perm=[0, 2, 1])
            v = g.op("Transpose", [tokens_linear(v, t, t, f"{s}/sgu/proj")], s, perm=[0, 2, 1])
            x = g.op("Add", [x, g.linear(g.op("Mul", [u, v], s), dim, dim, f"{s}/fc2")], s)
    x = g.op("ReduceMean", [g.layernorm(x, dim, "/norm")], "", axes=[1], keepdims=0)
    y = g.op("Gemm", [x, g.weight("head.weight", classes, dim), g.weight("head.bias", classes)], "/head", transB=1)
    return g.model([image_input(3, size, size, "input")], [out(y)])


def constant_queries(size: int = 8, dim: int = 16, heads: int = 2, queries: int = 5, per_head: bool = True,
                     seed: int = 48):
    """Cross-attention of learned queries (Mask2Former's, Perceiver's): ``softmax(q k^T) v`` with ``q``
    an initializer (``[1, heads, Q, d]``, or one ``[Q, d]`` for every head) and ``k, v`` linears of
    the image's tokens, then a linear of the ``Q`` outputs."""
    g = Graph(seed)
    d, t = dim // heads, size * size
    x = g.op("Conv", ["input", g.weight("stem.weight", dim, 3, 3, 3)], "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/stem")], "/stem", perm=[0, 2, 1])
    k = g.op("Transpose", [g.reshape(g.linear(x, dim, dim, "/k"), [1, t, heads, d], "/k")], "/k", perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.reshape(g.linear(x, dim, dim, "/v"), [1, t, heads, d], "/v")], "/v", perm=[0, 2, 1, 3])
    q = g.weight("query", *((1, heads, queries, d) if per_head else (queries, d)), scale=1.0)
    a = g.op("Softmax", [g.op("MatMul", [q, k], "/attn")], "/attn", axis=-1)
    o = g.op("Transpose", [g.op("MatMul", [a, v], "/attn")], "/attn", perm=[0, 2, 1, 3])
    y = g.linear(g.reshape(o, [1, queries, dim], "/attn"), dim, 4, "/head")
    return g.model([image_input(3, size, size, "input")], [out(y)])


def context_block(size: int = 8, width: int = 16, ratio: int = 4, seed: int = 49):
    """GCNet's global context block as mmcv exports it: the pixels' softmax of a one-channel 1x1
    convolution (``[1, 1, HW]``, axis 2), the image's channels times it (``[1, 1, C, HW] @
    [1, 1, HW, 1]``), a 1x1 convolution, a LayerNorm over ``[C/r, 1, 1]``, ReLU, a 1x1 convolution
    back, added to every pixel."""
    g = Graph(seed)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3)], "/stem", kernel_shape=[3, 3],
                           pads=[1] * 4)], "/stem")
    mask = g.op("Conv", [x, g.weight("conv_mask.weight", 1, width, 1, 1), g.weight("conv_mask.bias", 1)], "/gc/conv_mask",
                kernel_shape=[1, 1])
    mask = g.op("Softmax", [g.reshape(mask, [1, 1, size * size], "/gc")], "/gc", axis=2)
    mask = g.op("Unsqueeze", [mask, g.const([-1])], "/gc")
    flat = g.op("Unsqueeze", [g.reshape(x, [1, width, size * size], "/gc"), g.const([1])], "/gc")
    ctx = g.reshape(g.op("MatMul", [flat, mask], "/gc"), [1, width, 1, 1], "/gc")
    planes = width // ratio
    h = g.op("Conv", [ctx, g.weight("add.0.weight", planes, width, 1, 1), g.weight("add.0.bias", planes)], "/gc/add.0",
             kernel_shape=[1, 1])
    gamma = g.init("add.1.weight", (1 + 0.1 * g.rng.normal(size=(planes, 1, 1))).astype(np.float32))
    beta = g.init("add.1.bias", (0.1 * g.rng.normal(size=(planes, 1, 1))).astype(np.float32))
    h = g.op("Relu", [g.op("LayerNormalization", [h, gamma, beta], "/gc/add.1", axis=1, epsilon=1e-5)], "/gc/add.2")
    h = g.op("Conv", [h, g.weight("add.3.weight", width, planes, 1, 1), g.weight("add.3.bias", width)], "/gc/add.3",
             kernel_shape=[1, 1])
    y = g.op("Add", [x, h], "/gc")
    return g.model([image_input(3, size, size, "input")], [out(g.op("Conv", [y, g.weight("head.weight", 4, width, 1, 1)],
                                                                        "/head", kernel_shape=[1, 1]))])


def radix_softmax(size: int = 8, width: int = 8, radix: int = 2, cardinality: int = 2, logits_out: bool = False,
                  seed: int = 50):
    """ResNeSt's split attention as its ``SplAtConv2d`` exports: a convolution to ``radix * C``
    channels split into ``radix`` maps, their sum's mean, two grouped 1x1 convolutions (groups =
    cardinality) to the logits, rSoftMax (``[1, cardinality, radix, -1]`` transposed to put the
    radix first, softmax over it, flattened), split by radix and each map weighted, summed.
    ``logits_out``: the logits' ReLU is a second output (another reader of the logits)."""
    g = Graph(seed)
    hidden = 4 * cardinality
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("conv.weight", radix * width, 3, 3, 3)], "/conv",
                           kernel_shape=[3, 3], pads=[1] * 4)], "/conv")
    maps = g.op("Split", [x, g.const([width] * radix)], "/split", n_out=radix, axis=1)
    gap = maps[0]
    for m in maps[1:]:
        gap = g.op("Add", [gap, m], "/gap")
    gap = g.op("GlobalAveragePool", [gap], "/gap")
    gap = g.op("Relu", [g.op("Conv", [gap, g.weight("fc1.weight", hidden, width // cardinality, 1, 1),
                                      g.weight("fc1.bias", hidden)], "/fc1", kernel_shape=[1, 1], group=cardinality)], "/fc1")
    logits = g.op("Conv", [gap, g.weight("fc2.weight", radix * width, hidden // cardinality, 1, 1),
                           g.weight("fc2.bias", radix * width)], "/fc2", kernel_shape=[1, 1], group=cardinality)
    att = g.op("Transpose", [g.reshape(logits, [1, cardinality, radix, -1], "/rsoftmax")], "/rsoftmax", perm=[0, 2, 1, 3])
    att = g.reshape(g.reshape(g.op("Softmax", [att], "/rsoftmax", axis=1), [1, -1], "/rsoftmax"), [1, -1, 1, 1], "/att")
    y = None
    for a, m in zip(g.op("Split", [att, g.const([width] * radix)], "/att", n_out=radix, axis=1), maps):
        part = g.op("Mul", [a, m], "/att")
        y = part if y is None else g.op("Add", [y, part], "/att")
    outs = [g.op("Conv", [y, g.weight("head.weight", 4, width, 1, 1)], "/head", kernel_shape=[1, 1])]
    if logits_out:
        outs.append(g.op("Relu", [logits], "/logits"))
    return g.model([image_input(3, size, size, "input")], [out(o) for o in outs])


def constant_pad(pads, value: float, size: int = 6, width: int = 8, seed: int = 51):
    """A convolution's output padded by ``value`` (``Pad``, opset 17: pads and value as inputs), read
    by a 1x1 convolution."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("c.weight", width, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Pad", [x, g.const(pads), g.const(np.float32(value), np.float32)], "/pad", mode="constant")
    y = g.op("Conv", [x, g.weight("h.weight", 4, width + pads[1] + pads[5], 1, 1)], "/h", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def large_kernel(kernel: int = 13, size: int = 16, width: int = 16, groups: int = 0, seed: int = 60):
    """RepLKNet's and UniRepLKNet's large kernels: a stem, a ``kernel x kernel`` convolution padded to
    keep the size (depthwise, or ``groups`` groups), a 1x1 convolution."""
    g = Graph(seed)
    groups = groups or width
    x = g.op("Conv", ["input", g.weight("stem.weight", width, 3, 3, 3)], "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Conv", [x, g.weight("lk.weight", width, width // groups, kernel, kernel), g.weight("lk.bias", width)],
             "/lk", kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4, group=groups)
    y = g.op("Conv", [x, g.weight("pw.weight", 8, width, 1, 1)], "/pw", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)])


def keras_nhwc(size: int = 12, width: int = 8, classes: int = 5, seed: int = 61):
    """A Keras classifier after tf2onnx (without ``--inputs-as-nchw``): an NHWC input ``[1, H, W, 3]``
    transposed to NCHW, a convolution, ReLU, transposed back to NHWC, flattened, a dense layer."""
    g = Graph(seed)
    x = g.op("Transpose", ["input_1"], "/in", perm=[0, 3, 1, 2])
    x = g.op("Relu", [g.op("Conv", [x, g.weight("c.weight", width, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4,
                           strides=[2, 2])], "/c")
    x = g.reshape(g.op("Transpose", [x], "/flatten", perm=[0, 2, 3, 1]), [1, -1], "/flatten")
    y = g.op("MatMul", [x, g.weight("dense.kernel", (size // 2) ** 2 * width, classes)], "/dense")
    return g.model([helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, size, size, 3])], [out(y)])


def constant_channels(form: str, op: str = "Concat", position: str = "last", k: int = 3, value: float = 1.5,
                      size: int = 6, width: int = 8, seed: int = 62):
    """Channels of a constant beside a convolution's output in ``form``: ``nchw``; ``nhwc`` as Keras
    after tf2onnx (an NHWC input transposed to NCHW, the map transposed back to NHWC, transposed to
    NCHW again for the next convolution); ``flat`` ``[1, C, H*W]`` (YOLOv8's anchors) reshaped back;
    ``tokens`` ``[1, N, C]`` and ``rows`` ``[N, C]`` read by a linear layer.  ``op`` ``Concat``: an initializer of ``k`` channels ``first``, ``last`` or on both
    sides (``both``); ``Pad``: ``k`` channels of ``value`` there."""
    g = Graph(seed)
    x, inp = "input", image_input(3, size, size, "input")
    if form == "nhwc":
        x = g.op("Transpose", [x], "/in", perm=[0, 3, 1, 2])
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, size, size, 3])
    x = g.op("Conv", [x, g.weight("c.weight", width, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    if form in ("tokens", "rows"):
        x = g.op("Transpose", [g.reshape(x, [1, width, -1])], "/t", perm=[0, 2, 1])
        x = g.reshape(x, [size * size, width]) if form == "rows" else x
    x = g.reshape(x, [1, width, -1]) if form == "flat" else x
    x = g.op("Transpose", [x], "/t", perm=[0, 2, 3, 1]) if form == "nhwc" else x
    rank, axis = {"nchw": (4, 1), "nhwc": (4, 3), "flat": (3, 1), "tokens": (3, 2), "rows": (2, 1)}[form]
    sides = {"first": (k, 0), "last": (0, k), "both": (k, k)}[position]
    if op == "Concat":
        shape = {"nchw": [1, k, size, size], "nhwc": [1, size, size, k], "flat": [1, k, size * size],
                 "tokens": [1, size * size, k], "rows": [size * size, k]}[form]
        before, after = [[g.init(f"{side}.const", g.rng.uniform(-2, 2, shape).astype(np.float32))] if n else []
                         for side, n in zip(("before", "after"), sides)]
        x = g.op("Concat", before + [x] + after, "/cat", axis=axis)
    else:
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = sides
        x = g.op("Pad", [x, g.const(pads), g.const(np.float32(value), np.float32)], "/pad", mode="constant")
    n = width + sum(sides)
    if form in ("tokens", "rows"):
        return g.model([inp], [out(g.linear(x, n, 5, "/h"))])
    x = g.op("Transpose", [x], "/back", perm=[0, 3, 1, 2]) if form == "nhwc" else x
    x = g.reshape(x, [1, n, size, size]) if form == "flat" else x
    y = g.op("Conv", [x, g.weight("h.weight", 5, n, 1, 1)], "/h", kernel_shape=[1, 1])
    return g.model([inp], [out(g.op("Transpose", [y], "/out", perm=[0, 2, 3, 1]) if form == "nhwc" else y)])


def constant_pixels(form: str, position: str = "first", k: int = 2, size: int = 6, width: int = 8, seed: int = 63):
    """A constant of ``k`` rows or pixels concatenated ``first`` or ``last`` to a convolution's output
    along its pixels, in ``form``: ``nchw`` and ``nhwc`` rows (axes 2 and 1), ``flat`` ``[1, C, H*W]``
    pixels (anchors, axis 2), ``tokens`` ``[1, N, C]`` and ``rows`` ``[N, C]`` tokens (a class token);
    then a ReLU."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("c.weight", width, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    if form in ("tokens", "rows"):
        x = g.op("Transpose", [g.reshape(x, [1, width, -1])], "/t", perm=[0, 2, 1])
        x = g.reshape(x, [size * size, width]) if form == "rows" else x
    x = g.reshape(x, [1, width, -1]) if form == "flat" else x
    x = g.op("Transpose", [x], "/t", perm=[0, 2, 3, 1]) if form == "nhwc" else x
    axis, shape = {"nchw": (2, [1, width, k, size]), "nhwc": (1, [1, k, size, width]), "flat": (2, [1, width, k]),
                   "tokens": (1, [1, k, width]), "rows": (0, [k, width])}[form]
    c = g.init("const", g.rng.uniform(-2, 2, shape).astype(np.float32))
    x = g.op("Concat", [c, x] if position == "first" else [x, c], "/cat", axis=axis)
    return g.model([image_input(3, size, size, "input")], [out(g.op("Relu", [x], "/r"))])


def mode_pad(pads, mode: str = "reflect", size: int = 6, width: int = 8, seed: int = 62, opset: int = 17,
             nhwc: bool = False):
    """``nn.ReflectionPad2d`` / ``nn.ReplicationPad2d`` between two convolutions: a convolution's
    output padded by ``pads`` (ONNX's order) in ``mode``, read by a 3x3 convolution; ``nhwc``: the
    padding of the output transposed to NHWC (``pads`` in that order), transposed back after."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("c.weight", width, 3, 3, 3)], "/c", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Transpose", [x], "/to_nhwc", perm=[0, 2, 3, 1]) if nhwc else x
    x = g.op("Pad", [x, g.const(pads)], "/pad", mode=mode)
    x = g.op("Transpose", [x], "/to_nchw", perm=[0, 3, 1, 2]) if nhwc else x
    c = width + (pads[3] + pads[7] if nhwc else pads[1] + pads[5])
    y = g.op("Conv", [x, g.weight("h.weight", 4, c, 3, 3)], "/h", kernel_shape=[3, 3])
    return g.model([image_input(3, size, size, "input")], [out(y)], opset=opset)


def align_corners_resize(size: int = 7, width: int = 8, class_map: bool = False, seed: int = 61):
    """Segmentation heads' ``F.interpolate(..., mode="bilinear", align_corners=True)`` (DeepLab,
    PSPNet, HRNet, BiSeNet): a convolution, resized x2 (by scales) and to an odd size (``2 size - 1``,
    by sizes, its step exactly 1/2), each followed by a convolution; with ``class_map`` the second
    resize is to the input size and its ArgMax is the output (the class map of align-corners scores)."""
    g = Graph(seed)

    def conv(x, scope, cin, cout, k):
        return g.op("Conv", [x, g.weight(f"{scope}.weight", cout, cin, k, k), g.weight(f"{scope}.bias", cout, scale=0.1)],
                    f"/{scope}", kernel_shape=[k, k], pads=[k // 2] * 4)

    x = g.op("Relu", [conv("input", "stem", 3, width, 3)], "/stem")
    if class_map:
        logits = conv(g.op("MaxPool", [x], "/pool", kernel_shape=[2, 2], strides=[2, 2]), "cls", width, 5, 1)
        y = g.op("Resize", [logits, "", "", g.const([1, 5, size, size])], "/up", mode="linear",
                 coordinate_transformation_mode="align_corners")
        return g.model([image_input(3, size, size, "input")], [out(g.op("ArgMax", [y], "", axis=1, keepdims=1))])
    up2 = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32), np.float32)], "/up2", mode="linear",
               coordinate_transformation_mode="align_corners")
    odd = g.op("Resize", [x, "", "", g.const([1, width, 2 * size - 1, 2 * size - 1])], "/odd", mode="linear",
               coordinate_transformation_mode="align_corners")
    return g.model([image_input(3, size, size, "input")], [out(conv(up2, "head2", width, 4, 3)),
                                                           out(conv(odd, "head_odd", width, 4, 1))])


def crnn_pools(size=(16, 24), width: int = 8, seed: int = 64):
    """CRNN's feature extractor's pools (``MaxPool2d((2, 2), (2, 1), (0, 1))``), a k x 1 average pool and
    a 3x2 max pool of strides (2, 1) between convolutions: windows the IR's square pooling makes
    from an upsample, a common stride and a crop."""
    g = Graph(seed)
    x = g.op("Relu", [g.op("Conv", ["input", g.weight("c1.weight", width, 3, 3, 3)], "/c1", kernel_shape=[3, 3],
                           pads=[1] * 4)], "/c1")
    x = g.op("MaxPool", [x], "/p1", kernel_shape=[2, 2], strides=[2, 1], pads=[0, 1, 0, 1])
    x = g.op("AveragePool", [x], "/p2", kernel_shape=[3, 1], strides=[1, 1], pads=[1, 0, 1, 0])
    x = g.op("Conv", [x, g.weight("c2.weight", width, width, 3, 3)], "/c2", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("MaxPool", [x], "/p3", kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    y = g.op("Conv", [x, g.weight("c3.weight", 4, width, 1, 1)], "/c3", kernel_shape=[1, 1])
    return g.model([image_input(3, *size, name="input")], [out(y)])


def space_to_depth(block: int = 2, after: str = "conv", form: str = "op", size: int = 12, width: int = 8,
                   opset: int = 17, seed: int = 65):
    """A convolution's output as ``SpaceToDepth(block)`` (``form="op"``) or as PyTorch exports
    ``pixel_unshuffle`` (``"unshuffle"``: reshape, transpose, reshape; its channels channel-major),
    read by a 1x1 convolution (``after="conv"``), a ReLU (``"relu"``) or as the output (``"output"``)."""
    g = Graph(seed)
    b, c = block, width
    x = g.op("Conv", ["input", g.weight("c0.weight", c, 3, 3, 3)], "/c0", kernel_shape=[3, 3], pads=[1] * 4)
    if form == "op":
        y = g.op("SpaceToDepth", [x], "/s2d", blocksize=b)
    else:
        y = g.reshape(x, [1, c, size // b, b, size // b, b], "/unshuffle")
        y = g.op("Transpose", [y], "/unshuffle", perm=[0, 1, 3, 5, 2, 4])
        y = g.reshape(y, [1, c * b * b, size // b, size // b], "/unshuffle")
    if after == "conv":
        y = g.op("Conv", [y, g.weight("c1.weight", 4, b * b * c, 1, 1)], "/c1", kernel_shape=[1, 1])
    elif after == "relu":
        y = g.op("Relu", [y], "/relu")
    return g.model([image_input(3, size, size, "input")], [out(y)], opset)


def conformer_conv(tokens: int = 12, dim: int = 16, kernel: int = 7, bn: bool = True, cols: int = 3, seed: int = 66):
    """A conformer's convolution module on the tokens of a 3x3 stem over a ``T / cols x cols`` image
    (``[1, T, D]``; ``cols=1``: a column, as tokens lie): LayerNorm, transpose
    to ``[1, D, T]``, pointwise ``Conv1d``, GLU, depthwise ``Conv1d(D, D, k, groups=D)``, BatchNorm1d,
    SiLU, pointwise ``Conv1d``, transpose back, the residual add."""
    g = Graph(seed)
    d = dim
    x = g.op("Conv", ["input", g.weight("stem.weight", d, 3, 3, 3)], "/stem", kernel_shape=[3, 3], pads=[1] * 4)
    x = g.op("Transpose", [g.reshape(x, [1, d, -1], "/flat")], "/flat", perm=[0, 2, 1])
    h = g.op("Transpose", [g.layernorm(x, d, "/conv/ln")], "/conv", perm=[0, 2, 1])
    h = g.op("Conv", [h, g.weight("pw1.weight", 2 * d, d, 1), g.weight("pw1.bias", 2 * d)], "/conv/pw1",
             kernel_shape=[1])
    a, b = g.op("Split", [h, g.const([d, d])], "/conv/glu", n_out=2, axis=1)
    h = g.op("Mul", [a, g.op("Sigmoid", [b], "/conv/glu")], "/conv/glu")
    h = g.op("Conv", [h, g.weight("dw.weight", d, 1, kernel)], "/conv/dw", kernel_shape=[kernel],
             pads=[kernel // 2] * 2, group=d)
    if bn:
        stats = [(1 + 0.1 * g.rng.normal(size=d)), 0.1 * g.rng.normal(size=d), 0.1 * g.rng.normal(size=d),
                 0.5 + g.rng.uniform(size=d)]
        h = g.op("BatchNormalization", [h] + [g.init(f"bn.{k}", v.astype(np.float32)) for k, v in
                                              zip(("weight", "bias", "mean", "var"), stats)], "/conv/bn")
    h = g.op("Mul", [h, g.op("Sigmoid", [h], "/conv/silu")], "/conv/silu")
    h = g.op("Conv", [h, g.weight("pw2.weight", d, d, 1)], "/conv/pw2", kernel_shape=[1])
    y = g.op("Add", [x, g.op("Transpose", [h], "/conv", perm=[0, 2, 1])], "/res")
    return g.model([image_input(3, tokens // cols, cols, "input")], [out(y)])


def wav2vec_features(length: int = 64, width: int = 8, seed: int = 67):
    """wav2vec 2.0's feature extractor on a ``1 x L`` image's luma flattened to ``[1, 1, L]``: ``Conv1d(1, C,
    10, stride 5)``, GELU, ``Conv1d(C, C, 3, stride 2)``, GELU."""
    g = Graph(seed)
    x = g.reshape(g.op("Conv", ["input", g.weight("luma.weight", 1, 3, 1, 1)], "/luma", kernel_shape=[1, 1]),
                  [1, 1, -1], "/flat")
    x = g.gelu(g.op("Conv", [x, g.weight("fe0.weight", width, 1, 10)], "/fe0", kernel_shape=[10], strides=[5]), "/fe0")
    x = g.gelu(g.op("Conv", [x, g.weight("fe1.weight", width, width, 3)], "/fe1", kernel_shape=[3], strides=[2]),
               "/fe1")
    return g.model([image_input(3, 1, length, "input")], [out(x)])


def sequence_conv(channels: int = 8, length: int = 20, out_channels: int = 16, group: int = 1, opset: int = 17,
                  seed: int = 68, **attrs):
    """A ``Conv1d`` of a ``[1, C, L]`` graph input (a row of ``L`` pixels of ``C`` channels)."""
    g = Graph(seed)
    k = attrs.pop("kernel", 3)
    y = g.op("Conv", ["x", g.weight("w", out_channels, channels // group, k), g.weight("b", out_channels)], "",
             kernel_shape=[k], group=group, **attrs)
    return g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, length])], [out(y)], opset)


def shared_kv_attention(kv_heads: int = 1, heads: int = 4, form: str = "expand", size: int = 16, patch: int = 4,
                        dim: int = 32, seed: int = 70):
    """Multi-query (``kv_heads=1``) or grouped-query attention: q of ``heads`` heads, k and v of
    ``kv_heads`` from their own linears, each kv head shared by ``heads / kv_heads`` q heads as
    PyTorch exports the sharing (``form``): ``expand``, Hugging Face's ``repeat_kv`` (an ``Unsqueeze``,
    an ``Expand`` and a ``Reshape``: head ``h`` reads kv head ``h // r``); ``tile``, ``k.repeat(1, r,
    1, 1)`` (a ``Tile``: kv head ``h % kv_heads``); ``broadcast``, MQA's one kv head of ``[1, 1, N, d]``
    broadcast by the ``MatMul``s themselves.  Then the projection and a head on the tokens' mean."""
    g = Graph(seed)
    n, d, r = (size // patch) ** 2, dim // heads, heads // kv_heads
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/patch")], "/patch", perm=[0, 2, 1])

    def heads_of(name: str, count: int) -> str:
        t = g.reshape(g.linear(x, dim, count * d, f"/attn/{name}"), [1, n, count, d], "/attn")
        t = g.op("Transpose", [t], "/attn", perm=[0, 2, 1, 3])
        if form == "expand":
            t = g.op("Unsqueeze", [t, g.const([2])], "/attn")
            t = g.op("Expand", [t, g.const([1, count, r, n, d])], "/attn")
            return g.reshape(t, [1, heads, n, d], "/attn")
        return g.op("Tile", [t, g.const([1, r, 1, 1])], "/attn") if form == "tile" else t

    q = g.reshape(g.linear(x, dim, heads * d, "/attn/q"), [1, n, heads, d], "/attn")
    q = g.op("Transpose", [q], "/attn", perm=[0, 2, 1, 3])
    k, v = heads_of("k", kv_heads), heads_of("v", kv_heads)
    a = g.op("MatMul", [q, g.op("Transpose", [k], "/attn", perm=[0, 1, 3, 2])], "/attn")
    a = g.op("Softmax", [g.op("Mul", [a, g.const(np.float32(d ** -0.5), np.float32)], "/attn")], "/attn", axis=-1)
    o = g.op("MatMul", [a, v], "/attn")
    o = g.reshape(g.op("Transpose", [o], "/attn", perm=[0, 2, 1, 3]), [1, n, dim], "/attn")
    o = g.linear(o, dim, dim, "/attn/proj")
    y = g.op("Gemm", [g.op("ReduceMean", [o], "", axes=[1], keepdims=0), g.weight("head.weight", 5, dim),
                      g.weight("head.bias", 5)], "/head", transB=1)
    macs = n * dim * 3 * patch * patch + n * dim * (heads + 2 * kv_heads) * d + 2 * heads * n * n * d \
        + n * dim * dim + dim * 5
    return g.model([image_input(3, size, size)], [out(y)]), macs


def spatial_attention(size: int = 8, width: int = 12, kernel: int = 7, keepdims: int = 1, opset: int = 17, seed: int = 71):
    """CBAM's spatial attention: a convolution, the mean and the max of each pixel's channels
    (``ReduceMean`` and ``ReduceMax`` over axis 1, kept: ``torch.mean(x, 1, keepdim=True)`` and
    ``torch.amax``; without ``keepdims`` unsqueezed back), concatenated, a ``kernel`` x ``kernel``
    convolution of them to one map, its sigmoid scaling every channel, a 1x1 head."""
    g = Graph(seed)
    c = width
    x = g.op("Conv", ["input", g.weight("conv.weight", c, 3, 3, 3), g.weight("conv.bias", c, scale=0.5)], "/conv",
             kernel_shape=[3, 3], pads=[1] * 4)
    axes = {"axes": [1]} if opset < 18 else {}
    extra = [] if opset < 18 else [g.const([1])]
    avg = g.op("ReduceMean", [x, *extra], "/sa", keepdims=1, **axes)
    peak = g.op("ReduceMax", [x, *extra], "/sa", keepdims=keepdims, **axes)
    if not keepdims:
        peak = g.op("Unsqueeze", [peak, g.const([1])], "/sa")
    m = g.op("Concat", [avg, peak], "/sa", axis=1)
    m = g.op("Conv", [m, g.weight("sa.conv.weight", 1, 2, kernel, kernel)], "/sa/conv", kernel_shape=[kernel, kernel],
             pads=[kernel // 2] * 4)
    y = g.op("Mul", [x, g.op("Sigmoid", [m], "/sa")], "/sa")
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size, "input")], [out(y)], opset)


def cosine_attention(size: int = 16, patch: int = 4, dim: int = 32, heads: int = 2, expand: bool = True,
                     bias: bool = True, seed: int = 26):
    """SwinV2's scaled cosine attention as PyTorch exports it: the qkv linear viewed ``[3, 1, heads,
    N, d]``, ``F.normalize(q, dim=-1)`` and k's alike (``ReduceL2``, ``Clip(min=1e-12)``, with
    ``expand`` an ``Expand`` to the Shape of q, ``Div``), ``q @ k^T`` times the learned per-head
    ``exp(clamp(logit_scale, max=log 100))`` (``Clip`` and ``Exp`` of the parameter), with ``bias`` plus
    a relative position bias ``[1, heads, N, N]`` (SwinV2's ``16 * sigmoid`` of its MLP, a constant),
    softmax, ``@ v``, the projection and residual, a linear head on the tokens."""
    g = Graph(seed)
    n, d, s = (size // patch) ** 2, dim // heads, "/attn"
    x = g.op("Conv", ["pixel_values", g.weight("embed.weight", dim, 3, patch, patch), g.weight("embed.bias", dim, scale=0.1)],
             "/embed", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, n], "/embed")], "/embed", perm=[0, 2, 1])
    qkv = g.reshape(g.linear(x, dim, 3 * dim, f"{s}/qkv"), [1, n, 3, heads, d], s)
    q, k, v = (g.op("Gather", [g.op("Transpose", [qkv], s, perm=[2, 0, 3, 1, 4]), g.const(i)], s, axis=0) for i in range(3))

    def normalize(t: str) -> str:
        norm = g.op("Clip", [g.op("ReduceL2", [t], s, axes=[-1], keepdims=1), g.const(np.float32(1e-12), np.float32), ""], s)
        return g.op("Div", [t, g.op("Expand", [norm, g.op("Shape", [t], s)], s) if expand else norm], s)

    a = g.op("MatMul", [normalize(q), g.op("Transpose", [normalize(k)], s, perm=[0, 1, 3, 2])], s)
    logit = g.init("attn.logit_scale", np.log(10 * (1 + g.rng.random((heads, 1, 1)))).astype(np.float32))
    a = g.op("Mul", [a, g.op("Exp", [g.op("Clip", [logit, "", g.const(np.float32(np.log(100)), np.float32)], s)], s)], s)
    if bias:
        table = 16 / (1 + np.exp(-g.rng.normal(size=(1, heads, n, n))))
        a = g.op("Add", [a, g.init("attn.relative_position_bias", table.astype(np.float32))], s)
    o = g.op("MatMul", [g.op("Softmax", [a], s, axis=-1), v], s)
    o = g.reshape(g.op("Transpose", [o], s, perm=[0, 2, 1, 3]), [1, n, dim], s)
    x = g.op("Add", [x, g.linear(o, dim, dim, f"{s}/proj")], "")
    return g.model([image_input(3, size, size)], [out(g.linear(x, dim, 10, "/head"))])


def cross_covariance_attention(size: int = 16, patch: int = 4, dim: int = 24, heads: int = 3, seed: int = 72):
    """XCiT's cross-covariance attention (timm's ``XCA``) as PyTorch exports it: the qkv linear viewed
    as ``[1, N, 3, heads, d]`` and permuted to ``[3, 1, heads, d, N]`` (each head's channels by its
    tokens), ``F.normalize`` of q and k over the tokens (``ReduceL2``, ``Clip``, ``Expand``, ``Div``),
    ``softmax(q @ k^T * temperature)`` over channels (a learned temperature per head), ``attn @ v``
    permuted back to tokens, the projection and a head on the tokens' mean.  The MACs are the
    products' as the file writes them (``q @ k^T`` and ``attn @ v``, ``d x N x d`` a head each)."""
    g = Graph(seed)
    n, d = (size // patch) ** 2, dim // heads
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/patch")], "/patch", perm=[0, 2, 1])
    qkv = g.reshape(g.linear(x, dim, 3 * dim, "/attn/qkv"), [1, n, 3, heads, d], "/attn")
    qkv = g.op("Transpose", [qkv], "/attn", perm=[2, 0, 3, 4, 1])
    q, k, v = (g.op("Gather", [qkv, g.const(i)], "/attn", axis=0) for i in range(3))

    def normalize(t: str) -> str:
        norm = g.op("ReduceL2", [t], "/attn", axes=[-1], keepdims=1)
        norm = g.op("Clip", [norm, g.const(np.float32(1e-12), np.float32)], "/attn")
        norm = g.op("Expand", [norm, g.op("Shape", [t], "/attn")], "/attn")
        return g.op("Div", [t, norm], "/attn")

    q, k = normalize(q), normalize(k)
    a = g.op("MatMul", [q, g.op("Transpose", [k], "/attn", perm=[0, 1, 3, 2])], "/attn")
    temperature = g.init("attn.temperature", g.rng.uniform(0.5, 2.0, (heads, 1, 1)).astype(np.float32))
    a = g.op("Softmax", [g.op("Mul", [a, temperature], "/attn")], "/attn", axis=-1)
    o = g.op("MatMul", [a, v], "/attn")
    o = g.reshape(g.op("Transpose", [o], "/attn", perm=[0, 3, 1, 2]), [1, n, dim], "/attn")
    o = g.linear(o, dim, dim, "/attn/proj")
    y = g.op("Gemm", [g.op("ReduceMean", [o], "", axes=[1], keepdims=0), g.weight("head.weight", 5, dim),
                      g.weight("head.bias", 5)], "/head", transB=1)
    macs = n * dim * 3 * patch * patch + n * dim * 3 * dim + 2 * heads * d * n * d + n * dim * dim + dim * 5
    return g.model([image_input(3, size, size)], [out(y)]), macs


def dynamic_shape_tokens(opset: int = 11, size: int = 16, patch: int = 4, dim: int = 16, seed: int = 73):
    """A patch embedding whose token reshape PyTorch exported with dynamic axes: the target shape
    ``Shape -> Gather -> Unsqueeze -> Concat`` of the image's batch and channels and ``-1``, at the
    file's opset (``Unsqueeze``'s ``axes`` an attribute below 13, an input from 13), then a LayerNorm,
    a linear and a head on the tokens' mean."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    shape = g.op("Shape", [x], "/patch")
    dims = []
    for i in (0, 1):
        d = g.op("Gather", [shape, g.const(i)], "/patch", axis=0)
        dims.append(g.op("Unsqueeze", [d, g.const([0])], "/patch") if opset >= 13
                    else g.op("Unsqueeze", [d], "/patch", axes=[0]))
    x = g.op("Reshape", [x, g.op("Concat", [*dims, g.const([-1])], "/patch", axis=0)], "/patch")
    x = g.linear(g.layernorm(g.op("Transpose", [x], "/patch", perm=[0, 2, 1]), dim, "/norm"), dim, dim, "/fc")
    mean = (g.op("ReduceMean", [x], "", axes=[1], keepdims=0) if opset < 18
            else g.op("ReduceMean", [x, g.const([1])], "", keepdims=0))
    return g.model([image_input(3, size, size)], [out(g.linear(mean, dim, 5, "/head"))], opset)


def elementwise_extreme(op: str = "Max", operands: str = "aa", size: int = 8, width: int = 8, seed: int = 74):
    """``op`` (``Max`` or ``Min``) of two 1x1 convolutions of a 3x3 convolution's output (``a`` in
    ``operands`` for each activation, ``c`` a scalar constant: 0.25, then -0.5 for a second), then a
    1x1 convolution: ``torch.maximum(a, b)``, ``torch.max(x, c)``."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("conv.weight", width, 3, 3, 3), g.weight("conv.bias", width)], "/conv",
             kernel_shape=[3, 3], pads=[1] * 4)
    consts = iter((0.25, -0.5))
    ins = [g.op("Conv", [x, g.weight(f"b{i}.weight", width, width, 1, 1), g.weight(f"b{i}.bias", width)], f"/b{i}",
                kernel_shape=[1, 1]) if k == "a" else g.const(np.float32(next(consts)), np.float32)
           for i, k in enumerate(operands)]
    y = g.op(op, ins, "/m")
    y = g.op("Conv", [y, g.weight("head.weight", 4, width, 1, 1), g.weight("head.bias", 4)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size)], [out(y)])


def constant_where(other: str = "value", size: int = 8, width: int = 8, seed: int = 75):
    """``torch.where(mask, a, other)`` of a constant mask (every third channel, or a random half of the
    pixels for ``other="value"``) over a 1x1 convolution ``a`` of a 3x3 convolution's output ``x``:
    ``other`` ``"value"`` -1.5, ``"act"`` ``x`` itself, then a 1x1 convolution."""
    g = Graph(seed)
    x = g.op("Conv", ["pixel_values", g.weight("conv.weight", width, 3, 3, 3), g.weight("conv.bias", width)], "/conv",
             kernel_shape=[3, 3], pads=[1] * 4)
    a = g.op("Conv", [x, g.weight("a.weight", width, width, 1, 1), g.weight("a.bias", width)], "/a", kernel_shape=[1, 1])
    if other == "value":
        mask = g.init("mask", g.rng.random((1, 1, size, size)) > 0.5)
        y = g.op("Where", [mask, a, g.const(np.float32(-1.5), np.float32)], "/w")
    else:
        y = g.op("Where", [g.init("mask", (np.arange(width) % 3 == 0).reshape(1, width, 1, 1)), a, x], "/w")
    y = g.op("Conv", [y, g.weight("head.weight", 4, width, 1, 1), g.weight("head.bias", 4)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, size, size)], [out(y)])


def resized_position_table(mode: str = "cubic", size: int = 48, patch: int = 8, dim: int = 16, grid: int = 4,
                           seed: int = 76):
    """A ViT's position table of ``grid x grid`` patches resized to the image's grid, as timm's
    ``dynamic_img_size`` (and DINOv2's ``interpolate_pos_encoding``) export it at another size: the
    class token's entry set aside, the others viewed as a ``[1, dim, grid, grid]`` image, a ``Resize``
    (``mode`` cubic as PyTorch's bicubic, with align_corners; or linear) by the grids' ratio, back to
    tokens and after the class token's; added to the class token and patches, a LayerNorm, a head on
    the tokens' mean."""
    g = Graph(seed)
    side = size // patch
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, -1], "/patch")], "/patch", perm=[0, 2, 1])
    pos = g.weight("pos_embed", 1, 1 + grid * grid, dim, scale=0.5)
    table = g.op("Slice", [pos, g.const([1]), g.const([1 + grid * grid]), g.const([1])], "/pos")
    table = g.op("Transpose", [g.reshape(table, [1, grid, grid, dim], "/pos")], "/pos", perm=[0, 3, 1, 2])
    cubic = {"cubic_coeff_a": -0.75, "coordinate_transformation_mode": "align_corners"} if mode == "cubic" else {}
    table = g.op("Resize", [table, "", g.const(np.array([1, 1, side / grid, side / grid], np.float32), np.float32)],
                 "/pos", mode=mode, **cubic)
    table = g.reshape(g.op("Transpose", [table], "/pos", perm=[0, 2, 3, 1]), [1, -1, dim], "/pos")
    pos = g.op("Concat", [g.op("Gather", [pos, g.const([0])], "/pos", axis=1), table], "/pos", axis=1)
    x = g.op("Add", [g.op("Concat", [g.weight("cls_token", 1, 1, dim, scale=1.0), x], "", axis=1), pos], "")
    x = g.op("ReduceMean", [g.layernorm(x, dim, "/norm")], "", axes=[1], keepdims=0)
    return g.model([image_input(3, size, size)], [out(g.linear(x, dim, 5, "/head"))])


def qk_norm_attention(size: int = 16, patch: int = 4, dim: int = 16, heads: int = 2, seed: int = 77):
    """timm's ``Attention(qk_norm=True)`` (ViT-22B, EVA, DINOv2 variants): the fused qkv linear viewed
    ``[3, 1, heads, N, d]``, a ``LayerNormalization`` of q and of k over each head's ``d`` channels,
    softmax of the scaled scores, ``@ v``, the projection and residual, a head on the tokens' mean."""
    g = Graph(seed)
    n, d, s = (size // patch) ** 2, dim // heads, "/attn"
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, n], "/patch")], "/patch", perm=[0, 2, 1])
    qkv = g.op("Transpose", [g.reshape(g.linear(x, dim, 3 * dim, f"{s}/qkv"), [1, n, 3, heads, d], s)], s,
               perm=[2, 0, 3, 1, 4])
    q, k, v = (g.op("Gather", [qkv, g.const(i)], s, axis=0) for i in range(3))
    q, k = (g.layernorm(t, d, f"{s}/{name}_norm") for t, name in ((q, "q"), (k, "k")))
    a = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], s, perm=[0, 1, 3, 2])], s),
                     g.const(np.float32(d ** -0.5), np.float32)], s)
    o = g.op("MatMul", [g.op("Softmax", [a], s, axis=-1), v], s)
    o = g.reshape(g.op("Transpose", [o], s, perm=[0, 2, 1, 3]), [1, n, dim], s)
    x = g.op("Add", [x, g.linear(o, dim, dim, f"{s}/proj")], "")
    x = g.op("ReduceMean", [x], "", axes=[1], keepdims=0)
    return g.model([image_input(3, size, size)], [out(g.linear(x, dim, 5, "/head"))])


def rms_norm(form: str = "op", tokens: int = 16, dim: int = 16, patch: int = 4, seed: int = 78):
    """``nn.RMSNorm`` of a patch embedding's tokens between it and a linear, a head on the tokens' mean:
    ``form`` ``"op"`` ONNX's RMSNormalization (opset 23), ``"decomposed"`` as PyTorch writes it below
    (``Pow``, ``ReduceMean``, ``Add`` eps, ``Sqrt``, ``Reciprocal``, ``Mul``s; opset 17)."""
    g = Graph(seed)
    size = patch * int(np.sqrt(tokens))
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, tokens], "/patch")], "/patch", perm=[0, 2, 1])
    scale = g.init("norm.weight", (1 + 0.2 * g.rng.normal(size=dim)).astype(np.float32))
    if form == "op":
        x = g.op("RMSNormalization", [x, scale], "/norm", axis=-1, epsilon=1e-6)
    else:
        mean = g.op("ReduceMean", [g.op("Pow", [x, g.const(np.float32(2), np.float32)], "/norm")], "/norm", axes=[-1],
                    keepdims=1)
        rms = g.op("Sqrt", [g.op("Add", [mean, g.const(np.float32(1e-6), np.float32)], "/norm")], "/norm")
        x = g.op("Mul", [g.op("Mul", [x, g.op("Reciprocal", [rms], "/norm")], "/norm"), scale], "/norm")
    x = g.linear(x, dim, dim, "/fc")
    x = g.op("ReduceMean", [x, g.const([1])], "", keepdims=0) if form == "op" else \
        g.op("ReduceMean", [x], "", axes=[1], keepdims=0)
    return g.model([image_input(3, size, size)], [out(g.linear(x, dim, 5, "/head"))], 23 if form == "op" else 17)


def computed_position_index(dtype: str = "float", size: int = 16, patch: int = 4, dim: int = 8, heads: int = 2,
                            seed: int = 79):
    """Swin's relative position index computed in the graph, as PyTorch exports a module that builds it
    in ``forward``: ``arange`` of the grid (``dtype`` ``"float"`` as ``torch.arange(..., dtype=float)``
    writes it, or int64), its meshgrid (``Expand``), the coordinates' differences
    ``c[:, :, None] - c[:, None, :]``, plus ``side - 1``, times ``(2 side - 1, 1)``, summed and cast to
    int64: the indices of a learned table gathered into the attention's bias; a head on the tokens' mean."""
    g = Graph(seed)
    side, d, s = size // patch, dim // heads, "/rpb"
    n = side * side
    x = g.op("Conv", ["pixel_values", g.weight("patch.weight", dim, 3, patch, patch), g.weight("patch.bias", dim)],
             "/patch", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.op("Transpose", [g.reshape(x, [1, dim, n], "/patch")], "/patch", perm=[0, 2, 1])
    q, k, v = (g.op("Transpose", [g.reshape(g.linear(x, dim, dim, f"/{t}"), [1, n, heads, d], f"/{t}")], f"/{t}",
                    perm=[0, 2, 1, 3]) for t in "qkv")
    a = g.op("MatMul", [q, g.op("Transpose", [k], "/attn", perm=[0, 1, 3, 2])], "/attn")
    typed = (lambda v: g.const(np.array(v, np.float32), np.float32)) if dtype == "float" else g.const
    r = g.op("Range", [g.const(0), g.const(side), g.const(1)], s)
    if dtype == "float":
        r = g.op("Cast", [r], s, to=TensorProto.FLOAT)
    grid = [g.op("Unsqueeze", [g.op("Expand", [g.op("Unsqueeze", [r, g.const([axis])], s), g.const([side, side])], s),
                               g.const([0])], s) for axis in (1, 0)]
    flat = g.reshape(g.op("Concat", grid, s, axis=0), [2, n], s)
    rel = g.op("Sub", [g.op("Unsqueeze", [flat, g.const([2])], s), g.op("Unsqueeze", [flat, g.const([1])], s)], s)
    rel = g.op("Add", [g.op("Transpose", [rel], s, perm=[1, 2, 0]), typed([side - 1, side - 1])], s)
    idx = g.op("ReduceSum", [g.op("Mul", [rel, typed([2 * side - 1, 1])], s), g.const([-1])], s, keepdims=0)
    if dtype == "float":
        idx = g.op("Cast", [idx], s, to=TensorProto.INT64)
    bias = g.op("Gather", [g.weight("rpb_table", (2 * side - 1) ** 2, heads, scale=1.0), g.reshape(idx, [-1], s)], s, axis=0)
    bias = g.op("Unsqueeze", [g.op("Transpose", [g.reshape(bias, [n, n, heads], s)], s, perm=[2, 0, 1]), g.const([0])], s)
    a = g.op("Softmax", [g.op("Add", [g.op("Mul", [a, g.const(np.float32(d ** -0.5), np.float32)], "/attn"), bias],
                              "/attn")], "/attn", axis=-1)
    o = g.reshape(g.op("Transpose", [g.op("MatMul", [a, v], "/attn")], "/attn", perm=[0, 2, 1, 3]), [1, n, dim], "/attn")
    o = g.op("ReduceMean", [g.linear(o, dim, dim, "/proj")], "", axes=[1], keepdims=0)
    return g.model([image_input(3, size, size)], [out(g.linear(o, dim, 5, "/head"))])


def image_layernorm(axis: int = 1, affine: str = "channel", c: int = 8, size=(6, 10), qdq: bool = False, seed: int = 80):
    """A convolution, ``LayerNormalization`` over the axes from ``axis`` of its NCHW output, a 1x1
    convolution.  ``affine``, the scale's and bias's form: ``"channel"`` ``[C, 1, 1]``; ``"full"`` one per
    element of the rows, the same over H and W (a per-channel affine written out); ``"scalar"`` ``[1]``;
    ``"pixels"`` varying over the pixels.  ``qdq``: QuantizeLinear/DequantizeLinear pairs before and
    after the normalisation (the file's scales)."""
    g = Graph(seed)
    h, w = size
    x = g.op("Conv", ["input", g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    rows = [1, c, h, w][axis:]
    lead = tuple(c if i == 1 else 1 for i in range(axis % 4, 4))    # a value per channel, or one

    def param(name: str, centre: float, spread: float) -> str:
        values = (centre + spread * g.rng.normal(size=lead)).astype(np.float32)
        shaped = {"channel": values, "full": np.broadcast_to(values, rows), "scalar": values.reshape(-1)[:1],
                  "pixels": (centre + spread * g.rng.normal(size=rows)).astype(np.float32)}[affine]
        return g.init(name, np.ascontiguousarray(shaped, np.float32))

    if qdq:
        x = _qdq(g, x, 1 / 32, "/norm_in_q")
    y = g.op("LayerNormalization", [x, param("norm.weight", 1.0, 0.2), param("norm.bias", 0.0, 0.2)], "/norm",
             axis=axis, epsilon=1e-5)
    if qdq:
        y = _qdq(g, y, 1 / 16, "/norm_out_q")
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, h, w, "input")], [out(y)])


def lp_norm(p: int = 2, axis: int = 1, c: int = 8, size=(6, 10), relu: bool = False, tokens: bool = False,
            qdq: bool = False, rms: bool = False, seed: int = 81):
    """A convolution (``relu``: and a ReLU, which zeroes whole pixels when ``c`` is small), ``LpNormalization``
    along ``axis`` of its NCHW output (``tokens``: of its ``[1, H*W, C]`` tokens), a 1x1 convolution
    (``tokens``: a linear).  ``qdq``: QuantizeLinear/DequantizeLinear pairs before and after the
    normalisation.  ``rms``: ``RMSNormalization`` along ``axis`` (opset 23) in its place."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if relu:
        x = g.op("Relu", [x], "/a")
    if tokens:
        x = g.op("Transpose", [g.reshape(x, [1, c, -1], "/a")], "/a", perm=[0, 2, 1])
    if qdq:
        x = _qdq(g, x, 1 / 32, "/norm_in_q")
    if rms:
        y = g.op("RMSNormalization", [x, g.init("norm.weight", np.ones(c, np.float32))], "/norm", axis=axis,
                 epsilon=1e-6)
    else:
        y = g.op("LpNormalization", [x], "/norm", axis=axis, p=p)
    if qdq:
        y = _qdq(g, y, 1 / 64, "/norm_out_q")
    y = g.linear(y, c, 4, "/head") if tokens else \
        g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, *size, "input")], [out(y)], 23 if rms else 17)


def dilated_max_pool(c: int = 8, size=(9, 10), qdq: bool = False, opset: int = 17, seed: int = 82, **attrs):
    """A convolution, a ``MaxPool`` of ``attrs`` (its ``dilations`` among them), a 1x1 convolution; ``qdq``:
    QuantizeLinear/DequantizeLinear pairs before and after the pooling."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if qdq:
        x = _qdq(g, x, 1 / 32, "/pool_in_q")
    y = g.op("MaxPool", [x], "/pool", **attrs)
    if qdq:
        y = _qdq(g, y, 1 / 32, "/pool_out_q")
    y = g.op("Conv", [y, g.weight("head.weight", 4, c, 1, 1)], "/head", kernel_shape=[1, 1])
    return g.model([image_input(3, *size, "input")], [out(y)], opset)


def line_max(axes, keepdims: int = 1, c: int = 8, size=(6, 10), nhwc: bool = False, op: str = "ReduceMax",
             qdq: bool = False, seed: int = 83):
    """A convolution, ``op`` (``ReduceMax``) over ``axes`` of its NCHW output (``nhwc``: of its transpose
    to NHWC), then a ReLU of that (a layer reading it).  ``qdq``: QuantizeLinear/DequantizeLinear pairs
    before and after the reduction."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if nhwc:
        x = g.op("Transpose", [x], "/a", perm=[0, 2, 3, 1])
    if qdq:
        x = _qdq(g, x, 1 / 32, "/max_in_q")
    y = g.op(op, [x], "/max", axes=list(axes), keepdims=keepdims)
    if qdq:
        y = _qdq(g, y, 1 / 32, "/max_out_q")
    return g.model([image_input(3, *size, "input")], [out(g.op("Relu", [y], "/act"))])


def einsum_sum(equation: str, tokens: bool = True, weight=None, c: int = 8, size=(4, 6), seed: int = 84):
    """A convolution, its output as tokens ``[1, H*W, C]`` (else the NCHW image) into ``Einsum(equation)``
    (``weight``: the shape of a constant second operand), then a ReLU of the result."""
    g = Graph(seed)
    x = g.op("Conv", ["input", g.weight("a.weight", c, 3, 3, 3), g.weight("a.bias", c, scale=0.5)], "/a",
             kernel_shape=[3, 3], pads=[1] * 4)
    if tokens:
        x = g.op("Transpose", [g.reshape(x, [1, c, -1], "/a")], "/a", perm=[0, 2, 1])
    operands = [x] + ([g.weight("w", *weight)] if weight else [])
    y = g.op("Einsum", operands, "/sum", equation=equation)
    return g.model([image_input(3, *size, "input")], [out(g.op("Relu", [y], "/act"))])


def swin_block(h: int = 56, w: int = 28, dim: int = 32, heads: int = 2, window: int = 7, shift=(0, 0),
               qkv: str = "gather", q_scale: str = "scalar", classes: int = 10, seed: int = 74):
    """One Swin block as timm and Hugging Face export it, over a patch embedding (4x4) of an ``h x w``
    image: LayerNorm, with ``shift`` (rows, columns) the cyclic shift (``torch.roll``: a ``Slice``,
    ``Slice``, ``Concat`` per shifted axis), the window partition (``Reshape [1, H/ws, ws, W/ws, ws,
    C]``, ``Transpose``, ``Reshape [-1, ws*ws, C]``: no data moved where the windows form one column,
    56x28), window attention with a relative position bias and, shifted, timm's mask of -100 between
    regions (``[1, windows, 1, N, N]`` added to the scores viewed by windows), the reverse, the shift
    back, the residual; a head on the tokens' mean.  ``qkv``: timm's fused linear read by ``Gather``
    (``"gather"``) or ``unbind`` (``"split"``: ``Split`` and ``Squeeze``), or HF's separate query, key
    and value linears, the scores divided by ``sqrt(d)`` (``"separate"``).  ``q_scale="per_channel"``:
    timm's q times a constant ``[1, heads, 1, d]`` instead of ``d ** -0.5`` (no scalar to fold: a
    layer reads the qkv linear's output before the products)."""
    g = Graph(seed)
    hh, ww, d, n = h // 4, w // 4, dim // heads, window * window
    nw, s = (hh // window) * (ww // window), "/blocks.0/attn"
    x = g.op("Conv", ["pixel_values", g.weight("patch_embed.weight", dim, 3, 4, 4), g.weight("patch_embed.bias", dim)],
             "/patch_embed", kernel_shape=[4, 4], strides=[4, 4])
    x = g.op("Transpose", [x], "/patch_embed", perm=[0, 2, 3, 1])
    t = _swin_roll(g, g.layernorm(x, dim, "/blocks.0/norm1"), [-a for a in shift])
    t = g.reshape(t, [1, hh // window, window, ww // window, window, dim], "/blocks.0")
    t = g.reshape(g.op("Transpose", [t], "/blocks.0", perm=[0, 1, 3, 2, 4, 5]), [-1, n, dim], "/blocks.0")
    q, k, v = _swin_qkv(g, t, qkv, nw, n, heads, d, s)
    if qkv != "separate":
        scale = np.float32(d ** -0.5) if q_scale == "scalar" else np.linspace(0.1, 0.3, dim, dtype=np.float32).reshape(1, heads, 1, d)
        q = g.op("Mul", [q, g.const(scale, np.float32)], s)
    a = g.op("MatMul", [q, g.op("Transpose", [k], s, perm=[0, 1, 3, 2])], s)
    if qkv == "separate":
        a = g.op("Div", [a, g.const(np.float32(np.sqrt(d)), np.float32)], s)
    a = g.op("Add", [a, g.weight("relative_position_bias", 1, heads, n, n, scale=1.0)], s)
    if any(shift):
        a = g.reshape(g.op("Add", [g.reshape(a, [1, nw, heads, n, n], s), g.init("attn_mask", _swin_mask(
            hh, ww, window, shift))], s), [-1, heads, n, n], s)
    o = g.op("MatMul", [g.op("Softmax", [a], s, axis=-1), v], s)
    o = g.reshape(g.op("Transpose", [o], s, perm=[0, 2, 1, 3]), [nw, n, dim], s)
    o = g.reshape(g.linear(o, dim, dim, f"{s}/proj"), [1, hh // window, ww // window, window, window, dim], "/blocks.0")
    o = g.reshape(g.op("Transpose", [o], "/blocks.0", perm=[0, 1, 3, 2, 4, 5]), [1, hh, ww, dim], "/blocks.0")
    x = g.op("Add", [x, _swin_roll(g, o, list(shift))], "/blocks.0")
    y = g.op("Gemm", [g.op("ReduceMean", [x], "", axes=[1, 2], keepdims=0), g.weight("head.weight", classes, dim),
                      g.weight("head.bias", classes)], "/head", transB=1)
    tokens = hh * ww
    macs = tokens * dim * 3 * 16 + tokens * dim * 3 * dim + 2 * nw * heads * n * n * d + tokens * dim * dim + dim * classes
    return g.model([image_input(3, h, w)], [out(y)]), macs


def _swin_roll(g: Graph, x: str, shifts) -> str:
    """``torch.roll(x, shifts, dims=(1, 2))`` of NHWC as exported: per axis the elements from
    ``-shift`` on, then those before (of an axis not shifted, all of them, then none)."""
    for ax, sh in zip((1, 2), shifts):
        if any(shifts):
            a = g.op("Slice", [x, g.const([-sh]), g.const([2 ** 63 - 1]), g.const([ax])], "/blocks.0/roll")
            b = g.op("Slice", [x, g.const([0]), g.const([-sh]), g.const([ax])], "/blocks.0/roll")
            x = g.op("Concat", [a, b], "/blocks.0/roll", axis=ax)
    return x


def _swin_qkv(g: Graph, t: str, qkv: str, nw: int, n: int, heads: int, d: int, s: str) -> tuple[str, str, str]:
    """q, k and v ``[windows, heads, N, d]`` of the windows' tokens ``t`` (:func:`swin_block`)."""
    dim = heads * d
    if qkv == "separate":
        return tuple(g.op("Transpose", [g.reshape(g.linear(t, dim, dim, f"{s}/{p}"), [nw, n, heads, d], s)], s,
                          perm=[0, 2, 1, 3]) for p in ("query", "key", "value"))
    x = g.reshape(g.linear(t, dim, 3 * dim, f"{s}/qkv"), [nw, n, 3, heads, d], s)
    x = g.op("Transpose", [x], s, perm=[2, 0, 3, 1, 4])
    if qkv == "gather":
        return tuple(g.op("Gather", [x, g.const(i)], s, axis=0) for i in range(3))
    parts = g.op("Split", [x, g.const([1, 1, 1])], s, n_out=3, axis=0)
    return tuple(g.op("Squeeze", [p, g.const([0])], s) for p in parts)


def _swin_mask(hh: int, ww: int, window: int, shift) -> np.ndarray:
    """timm's attention mask ``[1, windows, 1, N, N]`` of a shifted block: -100 between tokens of a
    window from different regions of the shifted map, 0 within one."""
    region = np.zeros((hh, ww), np.float32)
    count = 0
    for rows in ((0, -window), (-window, -shift[0]), (-shift[0], None)):
        for cols in ((0, -window), (-window, -shift[1]), (-shift[1], None)):
            region[slice(*rows), slice(*cols)] = count
            count += 1
    windows = region.reshape(hh // window, window, ww // window, window).transpose(0, 2, 1, 3).reshape(-1, window * window)
    mask = np.where(windows[:, None, :] != windows[:, :, None], -100.0, 0.0).astype(np.float32)
    return mask[None, :, None]
