"""DETR-family detectors (detrex R50 base configs) as layer lists.

Models: ``detr``, ``dab_detr``, ``anchor_detr``, ``conditional_detr``.  Input
800x1200 by default, any ``size=(H, W)``; only the variant ``None``/``"full"``.

Common structure
----------------
* ``backbone.*`` (part ``backbone``): torchvision-style ResNet-50 v1.5 through
  C5 (no avgpool/fc), built by :func:`mapper.workloads.resnet.resnet50_backbone`
  (detrex uses detectron2's ResNet with ``stride_in_1x1=False`` or torchvision's
  ResNet: the same layers).  FrozenBN is folded into the convs.
* ``transformer.*`` (part ``transformer``): ``input_proj`` 1x1 conv 2048 -> 256,
  6 encoder layers over the T = H/32 x W/32 C5 tokens, 6 decoder layers over
  the queries, d_model 256, 8 heads (head dim 32), post-norm layers.  Attention
  is counted as linears (``*.q/k/v/out``, ``Linear``) plus ``MatMul`` Q.K^T and
  A.V with batch = heads.  Adds, softmax and layernorms are ``Elementwise``; the
  FFN activation is fused into its first linear (``relu=True``).
* ``head.*`` (part ``head``): class linear and the 3-layer box MLP
  (256-256-256-4), applied to the LAST decoder layer only: the auxiliary
  per-layer predictions detrex also computes at inference are not needed for
  the output and are not counted.
* The sine positional embeddings have no MACs and, for a fixed input size, are
  constants; they are not modelled.  The additions of positional embeddings to
  queries/keys are (``*.add_pos`` etc.).

Per model (from the detrex configs ``projects/*/configs/models/*_r50.py`` and
their modeling code):

``detr``
    FFN 2048, 100 queries, 81 classes (80 + no-object).  Encoder layer: q = k =
    src + pos; decoder: standard self-attention (q = k = tgt + query_pos) and
    cross-attention (q = tgt + query_pos, k = memory + pos, v = memory);
    decoder post-norm.
``dab_detr``
    FFN 2048 (PReLU, treated as a fused activation like ReLU), 300 queries
    (4-d anchor boxes), 80 classes (focal loss).  Extras: encoder
    ``query_scale`` MLP 256-256-256 on the T tokens before every layer
    (pos * scale); decoder per layer: ``ref_point_head`` MLP 512-256-256 on the
    sine embedding of the anchor box, ``query_scale`` MLP 256-256-256 (not in
    layer 0), ``ref_anchor_head`` MLP 256-256-2 (modulated h/w attention),
    Conditional-DETR self-attention (5 input projections: query/key content and
    position, value) and cross-attention (query content, query position in
    layer 0 only, query sine, key content, key position, value; Q.K^T over
    head dim 64 = content 32 + position 32), and the iterative anchor update
    with the shared box MLP after layers 0-4 (``transformer.dec{i}.bbox_refine``;
    the final box comes from the head on layer 5).
``conditional_detr``
    FFN 2048, 300 queries, 80 classes.  Encoder as DETR; decoder:
    ``ref_point_head`` MLP 256-256-2 once on the query embeddings,
    ``query_scale`` MLP 256-256-256 in layers 1-5, Conditional self- and
    cross-attention as above (no iterative box refinement).
``anchor_detr``
    FFN 1024 (``dim_feedforward=1024`` in detrex's anchor_detr_r50.py), 300
    anchor positions x 3 patterns = 900 queries, 80 classes, row-column
    decoupled attention (RCDA) in the encoder and in decoder cross-attention:
    q_row, q_col over the queries, k_row, k_col and v projected over all T
    tokens, then k_row/k_col averaged over H/W (``*.k_row_mean``, pools);
    Q.K^T against the W columns and H rows; the value aggregation done as
    detrex's ``efficient_compute`` (short edge last: for H < W, A_row.V as
    [heads] [Nq x W] x [W x H*32], then A_col over H as [heads*Nq] [1 x H] x
    [H x 32]).  ``input_proj`` is conv + GroupNorm (GroupNorm modelled as a
    ``layernorm`` Elementwise).  Position MLPs ``adapt_pos1d`` (on the W and H
    1-d embeddings, once) and, in every decoder layer as the code does,
    ``adapt_pos2d`` on the queries and ``adapt_pos1d`` twice on the queries' x
    and y; decoder self-attention is a standard MHA.  All 6 encoder layers are
    RCDA spatial layers: the original Anchor DETR with one feature level (C5).
    (detrex's ``AnchorDETRTransformer`` defaults ``num_feature_levels=3``,
    which the r50 config does not override and which would make 3 of the 6
    encoder layers cross-level attention over a single level; we follow the
    single-level architecture of the released weights.)

MACs = multiply-accumulates; the paper's "FLOPs" count multiply-accumulates.
"""

from __future__ import annotations

from ..ir import Activation, Add, Concat, Constant, Conv2d, Layer, LayerNorm, Linear, MatMul, Model, Mul, Pool, Softmax
from . import variants as _v
from .resnet import resnet50_backbone

__all__ = ["build", "MODELS", "DEFAULT_SIZE"]

DEFAULT_SIZE = (800, 1200)
D_MODEL = 256
HEADS = 8
HEAD_DIM = D_MODEL // HEADS
ENC_LAYERS = 6
DEC_LAYERS = 6

#: name -> (dim_feedforward, queries, classes)
MODELS = {
    "detr": (2048, 100, 81),
    "dab_detr": (2048, 300, 80),
    "conditional_detr": (2048, 300, 80),
    "anchor_detr": (1024, 900, 80),
}


class _T:
    """Token-level layer list builder; every method returns the new layer's name."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self._consts: set[str] = set()

    def const(self, name: str, shape: tuple[int, int, int], init: str, args: tuple = ()) -> str:
        """A :class:`Constant` (learned embedding, positional encoding), added once."""
        if name not in self._consts:
            self._consts.add(name)
            self.layers.append(Constant(name, "transformer", shape, init=init, args=args))
        return name

    def lin(self, name, part, tokens, fin, fout, src, relu=False) -> str:
        self.layers.append(Linear(name, part, tokens, fin, fout, relu=relu, inputs=(src,)))
        return name

    def mm(self, name, part, batch, m, k, n, src, **kw) -> str:
        self.layers.append(MatMul(name, part, batch, m, k, n, inputs=tuple(src), **kw))
        return name

    def add(self, name, part, a, b) -> str:
        self.layers.append(Add(name, part, inputs=(a, b)))
        return name

    def mul(self, name, part, a, b) -> str:
        self.layers.append(Mul(name, part, inputs=(a, b)))
        return name

    def norm(self, name, part, src) -> str:
        self.layers.append(LayerNorm(name, part, inputs=(src,)))
        return name

    def softmax(self, name, part, src, row) -> str:
        self.layers.append(Softmax(name, part, inputs=(src,), row=row))
        return name

    def mlp(self, name, part, tokens, dims, src) -> str:
        """``len(dims) - 1`` linears with ReLU between them (detrex ``MLP``)."""
        x = src
        for i in range(len(dims) - 1):
            x = self.lin(f"{name}.fc{i + 1}", part, tokens, dims[i], dims[i + 1], x, relu=i < len(dims) - 2)
        return x

    # ------------------------------------------------------------------ blocks
    def attention_core(self, p, part, nq, nk, src_q, src_k, src_v, qk_dim=HEAD_DIM) -> str:
        """Q.K^T, softmax, A.V for ``HEADS`` heads; returns the A.V layer name."""
        s = self.mm(f"{p}.qk", part, HEADS, nq, qk_dim, nk, (src_q, src_k), b_layout="nk")
        a = self.softmax(f"{p}.softmax", part, s, nk)
        return self.mm(f"{p}.av", part, HEADS, nq, nk, HEAD_DIM, (a, src_v), b_layout="kn")

    def residual_norm(self, p, part, a, b) -> str:
        return self.norm(f"{p}.norm", part, self.add(f"{p}.add", part, a, b))

    def ffn(self, p, part, tokens, dff, src) -> str:
        h = self.lin(f"{p}.fc1", part, tokens, D_MODEL, dff, src, relu=True)
        y = self.lin(f"{p}.fc2", part, tokens, dff, D_MODEL, h)
        return self.residual_norm(p, part, y, src)

    def mha(self, p, part, nq, nk, q_src, k_src, v_src, q_pos=None, k_pos=None, shared_qk=False) -> str:
        """Standard multi-head attention (nn.MultiheadAttention).

        ``q_pos``/``k_pos``: ``None`` for no positional add, else the name of the position
        tensor added; ``shared_qk``: q and k are the same ``src + pos`` tensor (one add).
        """
        if shared_qk:
            q_src = k_src = self.add(f"{p}.add_pos", part, q_src, q_pos)
        else:
            if q_pos is not None:
                q_src = self.add(f"{p}.add_qpos", part, q_src, q_pos)
            if k_pos is not None:
                k_src = self.add(f"{p}.add_kpos", part, k_src, k_pos)
        q = self.lin(f"{p}.q", part, nq, D_MODEL, D_MODEL, q_src)
        k = self.lin(f"{p}.k", part, nk, D_MODEL, D_MODEL, k_src)
        v = self.lin(f"{p}.v", part, nk, D_MODEL, D_MODEL, v_src)
        o = self.attention_core(p, part, nq, nk, q, k, v)
        return self.lin(f"{p}.out", part, nq, D_MODEL, D_MODEL, o)

    def cond_self_attn(self, p, part, nq, src, pos) -> str:
        """detrex ``ConditionalSelfAttention``: q = qc + qp, k = kc + kp."""
        qc = self.lin(f"{p}.q_content", part, nq, D_MODEL, D_MODEL, src)
        qp = self.lin(f"{p}.q_pos", part, nq, D_MODEL, D_MODEL, pos)
        kc = self.lin(f"{p}.k_content", part, nq, D_MODEL, D_MODEL, src)
        kp = self.lin(f"{p}.k_pos", part, nq, D_MODEL, D_MODEL, pos)
        v = self.lin(f"{p}.v", part, nq, D_MODEL, D_MODEL, src)
        q = self.add(f"{p}.add_q", part, qc, qp)
        k = self.add(f"{p}.add_k", part, kc, kp)
        o = self.attention_core(p, part, nq, nq, q, k, v)
        return self.lin(f"{p}.out", part, nq, D_MODEL, D_MODEL, o)

    def cond_cross_attn(self, p, part, nq, nk, src, memory, first, sine, pos, key_pos) -> str:
        """detrex ``ConditionalCrossAttention``: [content | sine position] queries, head dim 64.

        The concatenations are modelled as plain channel concatenations (detrex interleaves
        the two halves per head), which changes which channels a head sees, not the work.
        """
        qc = self.lin(f"{p}.q_content", part, nq, D_MODEL, D_MODEL, src)
        kc = self.lin(f"{p}.k_content", part, nk, D_MODEL, D_MODEL, memory)
        v = self.lin(f"{p}.v", part, nk, D_MODEL, D_MODEL, memory)
        kp = self.lin(f"{p}.k_pos", part, nk, D_MODEL, D_MODEL, key_pos)
        q, k = qc, kc
        if first:   # only layer 0 keeps the query position projection
            qp = self.lin(f"{p}.q_pos", part, nq, D_MODEL, D_MODEL, pos)
            q = self.add(f"{p}.add_q", part, qc, qp)
            k = self.add(f"{p}.add_k", part, kc, kp)
        qs = self.lin(f"{p}.q_pos_sine", part, nq, D_MODEL, D_MODEL, sine)
        self.layers.append(Concat(f"{p}.concat_q", part, inputs=(q, qs)))
        self.layers.append(Concat(f"{p}.concat_k", part, inputs=(k, kp)))
        o = self.attention_core(p, part, nq, nk, f"{p}.concat_q", f"{p}.concat_k", v, qk_dim=2 * HEAD_DIM)
        return self.lin(f"{p}.out", part, nq, D_MODEL, D_MODEL, o)

    def rcda(self, p, part, nq, fh, fw, q_row_src, q_col_src, k_row_src, k_col_src, v_src) -> str:
        """Anchor DETR's MultiheadRCDA (detrex ``multi_head_rcda_forward``).

        The value aggregation (``efficient_compute``) reshapes the values per head and row;
        its products are ``b_layout="opaque"``: counted and timed, not executable.
        """
        t = fh * fw
        qr = self.lin(f"{p}.q_row", part, nq, D_MODEL, D_MODEL, q_row_src)
        qc = self.lin(f"{p}.q_col", part, nq, D_MODEL, D_MODEL, q_col_src)
        kr = self.lin(f"{p}.k_row", part, t, D_MODEL, D_MODEL, k_row_src)
        kc = self.lin(f"{p}.k_col", part, t, D_MODEL, D_MODEL, k_col_src)
        v = self.lin(f"{p}.v", part, t, D_MODEL, D_MODEL, v_src)
        self.layers.append(Pool(f"{p}.k_row_mean", part, inputs=(kr,), mode="adaptive_avg", out_h=1, out_w=fw))
        self.layers.append(Pool(f"{p}.k_col_mean", part, inputs=(kc,), mode="adaptive_avg", out_h=fh, out_w=1))
        sr = self.mm(f"{p}.qk_row", part, HEADS, nq, HEAD_DIM, fw, (qr, f"{p}.k_row_mean"))
        sc = self.mm(f"{p}.qk_col", part, HEADS, nq, HEAD_DIM, fh, (qc, f"{p}.k_col_mean"))
        ar = self.softmax(f"{p}.softmax_row", part, sr, fw)
        ac = self.softmax(f"{p}.softmax_col", part, sc, fh)
        if fh < fw:   # efficient_compute: aggregate the long edge (W) first
            x = self.mm(f"{p}.av_row", part, HEADS, nq, fw, fh * HEAD_DIM, (ar, v), b_layout="opaque")
            o = self.mm(f"{p}.av_col", part, HEADS * nq, 1, fh, HEAD_DIM, (ac, x), b_layout="opaque")
        else:
            x = self.mm(f"{p}.av_col", part, HEADS, nq, fh, fw * HEAD_DIM, (ac, v), b_layout="opaque")
            o = self.mm(f"{p}.av_row", part, HEADS * nq, 1, fw, HEAD_DIM, (ar, x), b_layout="opaque")
        return self.lin(f"{p}.out", part, nq, D_MODEL, D_MODEL, o)


def _encoder(t: _T, name: str, tokens: int, fh: int, fw: int, dff: int, src: str) -> str:
    P = "transformer"
    pos = t.const("transformer.pos", (fh, fw, D_MODEL), "sine_pos")
    x = src
    if name == "anchor_detr":
        # 1-d position embeddings of the W columns and H rows (adapt_pos1d, shared weights).
        t.mlp("transformer.pos_row.adapt_pos1d", P, fw, (D_MODEL, D_MODEL, D_MODEL),
              t.const("transformer.pos_row", (1, fw, D_MODEL), "sine_pos_1d"))
        t.mlp("transformer.pos_col.adapt_pos1d", P, fh, (D_MODEL, D_MODEL, D_MODEL),
              t.const("transformer.pos_col", (fh, 1, D_MODEL), "sine_pos_1d"))
    for i in range(ENC_LAYERS):
        p = f"transformer.enc{i}"
        if name == "anchor_detr":
            qr = t.add(f"{p}.attn.add_pos_row", P, x, "transformer.pos_row.adapt_pos1d.fc2")
            qc = t.add(f"{p}.attn.add_pos_col", P, x, "transformer.pos_col.adapt_pos1d.fc2")
            # RCDA: queries and keys from src + pos_row / src + pos_col, the value from src.
            a = t.rcda(f"{p}.attn", P, tokens, fh, fw, qr, qc, qr, qc, x)
        else:
            q_pos = pos
            if name == "dab_detr":
                sc = t.mlp(f"{p}.query_scale", P, tokens, (D_MODEL, D_MODEL, D_MODEL), x)
                q_pos = t.mul(f"{p}.pos_scale", P, sc, pos)
            a = t.mha(f"{p}.attn", P, tokens, tokens, x, x, x, q_pos=q_pos, shared_qk=True)
        x = t.residual_norm(f"{p}.attn", P, a, x)
        x = t.ffn(f"{p}.ffn", P, tokens, dff, x)
    return x


def _decoder(t: _T, name: str, nq: int, tokens: int, fh: int, fw: int, dff: int, memory: str) -> str:
    P = "transformer"
    q_shape = (nq, 1, D_MODEL)
    # the decoder input: zeros (DETR, DAB, Conditional) or Anchor DETR's pattern embeddings
    x = t.const("transformer.tgt", q_shape, "normal" if name == "anchor_detr" else "zeros")
    pos = "transformer.pos"
    if name == "conditional_detr":
        query = t.const("transformer.query_embed", q_shape, "normal")
        t.mlp("transformer.ref_point_head", P, nq, (D_MODEL, D_MODEL, 2), query)
    for i in range(DEC_LAYERS):
        p = f"transformer.dec{i}"
        if name == "detr":
            query = t.const("transformer.query_embed", q_shape, "normal")
            a = t.mha(f"{p}.self_attn", P, nq, nq, x, x, x, q_pos=query, shared_qk=True)
            x = t.residual_norm(f"{p}.self_attn", P, a, x)
            a = t.mha(f"{p}.cross_attn", P, nq, tokens, x, memory, memory, q_pos=query, k_pos=pos)
            x = t.residual_norm(f"{p}.cross_attn", P, a, x)
        elif name in ("dab_detr", "conditional_detr"):
            x = _conditional_layer(t, name, p, i, nq, tokens, x, memory, pos)
        else:  # anchor_detr
            qpos = t.mlp(f"{p}.adapt_pos2d", P, nq, (D_MODEL, D_MODEL, D_MODEL),
                         t.const("transformer.anchor_pos2d", q_shape, "normal"))
            a = t.mha(f"{p}.self_attn", P, nq, nq, x, x, x, q_pos=qpos, shared_qk=True)
            x = t.residual_norm(f"{p}.self_attn", P, a, x)
            px = t.mlp(f"{p}.adapt_pos1d_x", P, nq, (D_MODEL, D_MODEL, D_MODEL),
                       t.const("transformer.anchor_pos1d_x", q_shape, "normal"))
            py = t.mlp(f"{p}.adapt_pos1d_y", P, nq, (D_MODEL, D_MODEL, D_MODEL),
                       t.const("transformer.anchor_pos1d_y", q_shape, "normal"))
            qr = t.add(f"{p}.cross_attn.add_qpos_x", P, x, px)
            qc = t.add(f"{p}.cross_attn.add_qpos_y", P, x, py)
            kr = t.add(f"{p}.cross_attn.add_pos_row", P, memory, "transformer.pos_row.adapt_pos1d.fc2")
            kc = t.add(f"{p}.cross_attn.add_pos_col", P, memory, "transformer.pos_col.adapt_pos1d.fc2")
            a = t.rcda(f"{p}.cross_attn", P, nq, fh, fw, qr, qc, kr, kc, memory)
            x = t.residual_norm(f"{p}.cross_attn", P, a, x)
        x = t.ffn(f"{p}.ffn", P, nq, dff, x)
        if name == "dab_detr" and i < DEC_LAYERS - 1:
            t.mlp(f"{p}.bbox_refine", P, nq, (D_MODEL, D_MODEL, D_MODEL, 4), x)
    if name != "anchor_detr":   # detrex decoders with post_norm=True
        x = t.norm("transformer.dec_norm", P, x)
    return x


def _conditional_layer(t: _T, name: str, p: str, i: int, nq: int, tokens: int, x: str, memory: str,
                       pos: str) -> str:
    """One decoder layer of DAB-DETR or Conditional DETR (detrex).  The anchors' sine embeddings
    are constants; DAB's width/height modulation is modelled as a broadcast product."""
    P = "transformer"
    q_shape = (nq, 1, D_MODEL)
    sine = t.const("transformer.query_sine", q_shape, "normal")
    if name == "dab_detr":
        qpos = t.mlp(f"{p}.ref_point_head", P, nq, (2 * D_MODEL, D_MODEL, D_MODEL),
                     t.const("transformer.query_sine_2d", (nq, 1, 2 * D_MODEL), "normal"))
    else:
        qpos = "transformer.query_embed"
    if i > 0:
        qs = t.mlp(f"{p}.query_scale", P, nq, (D_MODEL, D_MODEL, D_MODEL), x)
        sine = t.mul(f"{p}.pos_transform", P, qs, sine)
    if name == "dab_detr":
        hw = t.mlp(f"{p}.ref_anchor_head", P, nq, (D_MODEL, D_MODEL, 2), x)
        sine = t.mul(f"{p}.hw_modulate", P, hw, sine)
    a = t.cond_self_attn(f"{p}.self_attn", P, nq, x, qpos)
    x = t.residual_norm(f"{p}.self_attn", P, a, x)
    a = t.cond_cross_attn(f"{p}.cross_attn", P, nq, tokens, x, memory, first=i == 0, sine=sine, pos=qpos,
                          key_pos=pos)
    return t.residual_norm(f"{p}.cross_attn", P, a, x)


def build(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build one of :data:`MODELS` (see the module docstring)."""
    if name not in MODELS:
        raise KeyError(f"detr family cannot build {name!r}; choose one of {', '.join(MODELS)}")
    if not _v.is_full(variant):
        raise ValueError(f"{name}: unknown variant {variant!r}; this model has only the variant {_v.FULL!r}")
    h, w = _v.check_size(name, size, DEFAULT_SIZE)
    dff, nq, classes = MODELS[name]

    layers, (c5, fh, fw, fc) = resnet50_backbone(h, w, prefix="backbone.")
    t = _T()
    t.layers = list(layers)
    tokens = fh * fw
    t.layers.append(Conv2d("transformer.input_proj", "transformer", fc, D_MODEL, fh, fw, kernel=1,
                           inputs=(c5,)))
    x = "transformer.input_proj"
    if name == "anchor_detr":   # input_proj = conv + GroupNorm(32, 256), modelled as a LayerNorm
        x = t.norm("transformer.input_proj.gn", "transformer", x)
    memory = _encoder(t, name, tokens, fh, fw, dff, x)
    out = _decoder(t, name, nq, tokens, fh, fw, dff, memory)
    t.lin("head.class", "head", nq, D_MODEL, classes, out)
    box = t.mlp("head.bbox", "head", nq, (D_MODEL, D_MODEL, D_MODEL, 4), out)
    t.layers.append(Activation("head.bbox.sigmoid", "head", "sigmoid", inputs=(box,)))
    return Model(name, _v.FULL, (h, w, 3), tuple(t.layers),
                 params={"dim_feedforward": dff, "queries": nq, "classes": classes,
                         "d_model": D_MODEL, "heads": HEADS, "tokens": tokens, "c5": (fh, fw)})
