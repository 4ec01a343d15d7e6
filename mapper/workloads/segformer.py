"""SegFormer B0/B1/B2 (MixVisionTransformer encoder + all-MLP decode head) as layer lists.

The layers follow the official SegFormer (NVlabs ``mix_transformer.py`` and
``segformer_head.py``, the same network as mmseg's MixVisionTransformer with the
SegFormer head):

* encoder stage ``s``: overlapping patch embedding (7x7 stride 4 padding 3 for
  stage 0, 3x3 stride 2 padding 1 after) + LayerNorm, ``depth[s]`` blocks, and
  a LayerNorm at the end of the stage;
* block: LN, efficient self-attention (``q`` linear; for ``sr_ratio > 1`` a
  spatial-reduction conv with kernel = stride = ``sr_ratio`` and a LN; ``kv``
  linear to ``2 * dim``; per-head ``Q.K^T`` and ``A.V`` with batch = heads;
  softmax; ``proj`` linear), residual add, LN, Mix-FFN (``fc1`` linear, 3x3
  depthwise conv ``mlp.dwconv`` (the paper's "MLP DW Conv"), GELU, ``fc2``
  linear), residual add;
* decode head: ``DecodeLinear{i}`` (linear ``C_i -> E`` over stage ``i``'s
  tokens), bilinear resize to the stage-0 (1/4) resolution, concatenation in
  the order stage 3, 2, 1, 0 (the head concatenates ``[_c4, _c3, _c2, _c1]``),
  ``Conv2DFuse`` (1x1 conv ``4E -> E``; its BatchNorm is folded into the
  weights and bias, its ReLU fused, ``relu=True``), ``Conv2DPred`` (1x1 conv
  ``E -> classes``) and the resize of the logits to the input size that
  mmseg's ``decode_head.predict`` performs.

Choices the paper leaves open, so that every MAC is counted exactly once:

* the attention scale ``1/sqrt(d)`` is folded into the ``q`` weights (no layer);
* the stage-0 decode output is already at 1/4 resolution, so it has no resize;
* reshapes and permutes move no data in the accelerator's HWC layout and are
  not layers; dropout and drop-path are identity at inference.

Execution-path variants (paper Section V-A) keep the first ``blocks[s]``
blocks of each stage and the first ``fuse``, ``pred`` and ``linear0`` input
channels of ``Conv2DFuse``, ``Conv2DPred`` and ``DecodeLinear0`` (the last
channels are bypassed).  Bypassed channels propagate backwards only through
layers whose output has no other consumer:

* ``fuse``: the concat segment of stage ``i`` keeps ``clamp(fuse - j*E, 0, E)``
  channels (``j = 3 - i`` is its position), so ``DecodeLinear{i}`` and its resize
  shrink to those output channels and vanish at 0.  The encoder is never
  touched: stages 0-2 feed the next stage, and stage 3 always feeds the first
  concat segment, which keeps at least one channel.
* ``pred``: ``Conv2DFuse`` computes only ``pred`` output channels.
* ``linear0``: only ``DecodeLinear0``'s ``in_features`` shrinks; stage 0 is
  still computed in full for stage 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import INPUT, Add, Activation, Concat, Conv2d, Layer, LayerNorm, Linear, MatMul, Model, Resize, Softmax
from . import variants as v

__all__ = ["NAMES", "NAMED_POINTS", "build"]

ENC, DEC = "encoder", "decoder"
SR_RATIOS = (8, 4, 2, 1)
HEADS = (1, 2, 5, 8)
MLP_RATIO = 4


@dataclass(frozen=True)
class _Arch:
    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    decoder_dim: int


#: Encoder widths and depths, and the decode head's ``embed_dim``: 256 for B0 and B1, 768 for
#: B2 to B5 (NVlabs ``local_configs/segformer/B*/segformer.b*.*.py``, ``decoder_params``).
_ARCH = {
    "b0": _Arch((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": _Arch((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": _Arch((64, 128, 320, 512), (3, 4, 6, 3), 768),
}
#: dataset -> (default input size (H, W), number of classes)
_DATASET = {"ade": ((512, 512), 150), "city": ((1024, 1024), 19)}

NAMES = tuple(f"segformer_{a}{suffix}" for suffix in ("", "_city") for a in _ARCH)

#: The paper's Table III: encoder blocks per stage and Conv2DFuse input channels
#: (Conv2DPred and DecodeLinear0 inputs are full).
NAMED_POINTS: dict[str, dict[str, dict]] = {
    "segformer_b2": {
        "B2": {"blocks": (3, 4, 6, 3), "fuse": 3072},
        "B2_a": {"blocks": (3, 4, 6, 3), "fuse": 1920},
        "B2_b": {"blocks": (3, 4, 6, 3), "fuse": 1664},
        "B2_c": {"blocks": (2, 4, 6, 3), "fuse": 1408},
        "B2_d": {"blocks": (2, 3, 6, 3), "fuse": 1024},
        "B2_e": {"blocks": (2, 3, 5, 3), "fuse": 896},
        "B2_f": {"blocks": (2, 3, 5, 3), "fuse": 512},
    },
}


def _split_name(name: str) -> tuple[_Arch, str]:
    if name not in NAMES:
        raise KeyError(f"unknown SegFormer model {name!r}; choose one of {', '.join(NAMES)}")
    parts = name.split("_")
    return _ARCH[parts[1]], ("city" if len(parts) == 3 else "ade")


def _ln(name: str, part: str, src: str, eps: float = 1e-6) -> LayerNorm:
    """The blocks' and stages' LayerNorms use eps 1e-6, the patch embedding's and the spatial
    reduction's PyTorch's default 1e-5 (NVlabs ``mix_transformer.py``)."""
    return LayerNorm(name, part, inputs=(src,), eps=eps)


def _add(name: str, a: str, b: str) -> Add:
    return Add(name, ENC, inputs=(a, b))


def _block(out: list[Layer], pre: str, x: str, h: int, w: int, dim: int, heads: int,
           sr: int) -> str:
    """Append one encoder block reading layer ``x``; return the name of its output."""
    t = h * w
    norm1 = _ln(f"{pre}.norm1", ENC, x)
    q = Linear(f"{pre}.attn.q", ENC, t, dim, dim, inputs=(norm1.name,))
    out += [norm1, q]
    kv_src, t_kv = norm1.name, t
    if sr > 1:
        red = Conv2d(f"{pre}.attn.sr", ENC, dim, dim, h, w, kernel=sr, stride=sr, inputs=(norm1.name,))
        t_kv = red.out_h * red.out_w
        red_norm = _ln(f"{pre}.attn.sr_norm", ENC, red.name, eps=1e-5)
        out += [red, red_norm]
        kv_src = red_norm.name
    kv = Linear(f"{pre}.attn.kv", ENC, t_kv, dim, 2 * dim, inputs=(kv_src,))
    d = dim // heads
    # keys are channels 0..dim-1 of kv, values channels dim..2*dim-1
    qk = MatMul(f"{pre}.attn.qk", ENC, heads, t, d, t_kv, inputs=(q.name, kv.name), b_layout="nk")
    sm = Softmax(f"{pre}.attn.softmax", ENC, inputs=(qk.name,), row=t_kv)
    av = MatMul(f"{pre}.attn.av", ENC, heads, t, t_kv, d, inputs=(sm.name, kv.name), b_offset=dim, b_layout="kn")
    proj = Linear(f"{pre}.attn.proj", ENC, t, dim, dim, inputs=(av.name,))
    add1 = _add(f"{pre}.add1", x, proj.name)
    hidden = MLP_RATIO * dim
    norm2 = _ln(f"{pre}.norm2", ENC, add1.name)
    fc1 = Linear(f"{pre}.mlp.fc1", ENC, t, dim, hidden, inputs=(norm2.name,))
    dw = Conv2d(f"{pre}.mlp.dwconv", ENC, hidden, hidden, h, w, kernel=3, padding=1, groups=hidden,
                inputs=(fc1.name,))
    gelu = Activation(f"{pre}.mlp.gelu", ENC, "gelu", inputs=(dw.name,))
    fc2 = Linear(f"{pre}.mlp.fc2", ENC, t, hidden, dim, inputs=(gelu.name,))
    add2 = _add(f"{pre}.add2", add1.name, fc2.name)
    out += [kv, qk, sm, av, proj, add1, norm2, fc1, dw, gelu, fc2, add2]
    return add2.name


def build(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build SegFormer ``name`` (``segformer_b0`` .. ``segformer_b2_city``).

    Parameters
    ----------
    name:
        ``segformer_b{0,1,2}`` (ADE20K, 150 classes, 512x512) or
        ``segformer_b{0,1,2}_city`` (Cityscapes, 19 classes, 1024x1024).
    variant:
        ``None``/``"full"``; a Table III point (``B2``, ``B2_a`` .. ``B2_f``,
        ``segformer_b2`` only); or ``"blocks=a-b-c-d,fuse=F,pred=P,linear0=L"``
        with any subset of the keys, or its short name (``blocks2-4-6-3_fuse1408``).
    size:
        Input ``(H, W)``; the dataset's crop size by default.

    Raises
    ------
    KeyError
        ``name`` is not a SegFormer model.
    ValueError
        A variant that is malformed, unknown, or keeps 0 or more blocks/channels
        than the model has (the message names the parameter, value and range).
    """
    arch, dataset = _split_name(name)
    default_size, classes = _DATASET[dataset]
    height, width = size or default_size
    if height <= 0 or width <= 0:
        raise ValueError(f"{name}: input size must be positive, not {height}x{width}")
    e = arch.decoder_dim
    label, params = v.resolve(name, variant, points=NAMED_POINTS.get(name),
                              full={"blocks": arch.depths, "fuse": 4 * e, "pred": e, "linear0": arch.dims[0]})

    layers: list[Layer] = []
    stages = _encoder(layers, arch, params["blocks"], height, width)
    _decoder(layers, stages, params, e, classes, (height, width))
    return Model(name=name, variant=label, input=(height, width, 3), layers=tuple(layers),
                 params={"dataset": dataset, "classes": classes, "blocks": params["blocks"],
                         "fuse": params["fuse"], "pred": params["pred"], "linear0": params["linear0"]})


def _encoder(layers: list[Layer], arch, blocks, height: int, width: int) -> list[tuple[str, int, int, int]]:
    """The four stages (``blocks[s]`` blocks each) appended to ``layers``; per stage its output
    layer's name, height, width and channels."""
    x, h, w, ch = INPUT, height, width, 3
    stages = []
    for s, dim in enumerate(arch.dims):
        k, stride, pad = (7, 4, 3) if s == 0 else (3, 2, 1)
        embed = Conv2d(f"stage{s}.patch_embed", ENC, ch, dim, h, w, kernel=k, stride=stride,
                       padding=pad, inputs=(x,))
        h, w, ch = embed.out_h, embed.out_w, dim
        embed_norm = _ln(f"stage{s}.patch_embed.norm", ENC, embed.name, eps=1e-5)
        layers += [embed, embed_norm]
        x = embed_norm.name
        for b in range(blocks[s]):
            x = _block(layers, f"stage{s}.block{b}", x, h, w, dim, HEADS[s], SR_RATIOS[s])
        norm = _ln(f"stage{s}.norm", ENC, x)
        layers.append(norm)
        x = norm.name
        stages.append((x, h, w, dim))
    return stages


def _decoder(layers: list[Layer], stages, params: dict, e: int, classes: int, size: tuple[int, int]) -> None:
    """The all-MLP decoder appended to ``layers``: a Linear per stage (the first ``params['fuse']``
    channels of the concatenation kept, the deepest stage's first), resized to stage 0's size,
    concatenated, fused, classified and resized to the input ``size``."""
    _, h0, w0, _ = stages[0]
    segments = {}                            # stage -> name of its layer in the concat
    for i, (src, hi, wi, ci) in enumerate(stages):
        kept = min(max(params["fuse"] - (3 - i) * e, 0), e)
        if kept == 0:
            continue
        lin = Linear(f"DecodeLinear{i}", DEC, hi * wi, params["linear0"] if i == 0 else ci, kept,
                     inputs=(src,))
        layers.append(lin)
        segments[i] = lin.name
        if (hi, wi) != (h0, w0):
            resize = Resize(f"DecodeResize{i}", DEC, inputs=(lin.name,), out_h=h0, out_w=w0)
            layers.append(resize)
            segments[i] = resize.name
    concat = Concat("DecodeConcat", DEC, inputs=tuple(segments[i] for i in (3, 2, 1, 0) if i in segments))
    fuse = Conv2d("Conv2DFuse", DEC, params["fuse"], params["pred"], h0, w0, relu=True,
                  inputs=(concat.name,))
    pred = Conv2d("Conv2DPred", DEC, params["pred"], classes, h0, w0, inputs=(fuse.name,))
    logits = Resize("resize_logits", DEC, inputs=(pred.name,), out_h=size[0], out_w=size[1])
    layers += [concat, fuse, pred, logits]
