"""Swin-T/S/B backbones with the UPerNet head (mmseg ``upernet_swin``, ADE20K) as layer lists.

The layers follow mmseg's ``SwinTransformer`` and ``UPerHead`` at inference
(no auxiliary FCN head):

* backbone: 4x4 stride-4 patch embedding conv on the RGB input + LayerNorm;
  four stages of Swin blocks; patch merging after stages 0-2 (LayerNorm over
  the gathered 2x2 neighbourhood, ``4C``, then a bias-free linear ``4C -> 2C``);
  a LayerNorm on each stage output that feeds the head;
* block: LN; the feature map is padded to a multiple of the window size (7):
  128 -> 133, 64 -> 70, 32 -> 35, 16 -> 21 at 512x512; odd blocks are shifted
  by 3 (a roll, and the attention mask add); ``qkv`` linear over all padded
  tokens; per window and head ``Q.K^T`` and ``A.V`` (batch = windows x heads,
  M = N = 49); relative-position bias add; softmax; ``proj`` linear; reverse
  shift and crop; residual add; LN; MLP (``fc1`` 4x, GELU, ``fc2``); residual add;
* UPerNet head (512 channels): the PPM on the last stage (for each pool scale
  1, 2, 3, 6 an adaptive average pool, a 1x1 conv and a resize back), concat
  with the stage output and the 3x3 ``bottleneck`` conv; 1x1 lateral convs on
  stages 0-2; the top-down path (resize + add); 3x3 FPN convs on levels 0-2;
  the resize of levels 1-3 to level 0; concat in the order level 0, 1, 2, 3;
  the 3x3 ``fpn_bottleneck`` conv ``2048 -> 512``; ``conv_seg`` 1x1 to 150
  classes; and the resize of the logits to the input size (``predict``).

Every ConvModule's BatchNorm is folded into the conv and its ReLU fused
(``relu=True``).  The attention scale is folded into the ``q`` weights; a block
of one window (its map padded to 7x7) has no window partition and reverse, which
would move no data.  Inputs whose size is not a multiple of 4 are padded (mmseg's
``AdaptivePadding``), which is the patch-embedding conv's own padding at the bottom and right.

Execution-path variants keep the first ``blocks[s]`` blocks of each stage and
the first ``fpn`` input channels of ``fpn_bottleneck`` (the last are bypassed).
The concat segment of level ``j`` keeps ``clamp(fpn - 512*j, 0, 512)``
channels; the producers of a segment shrink only where the concat is their
single consumer: ``fpn_convs.{1,2}`` (and their resizes) shrink or vanish and
``fpn_convs.0`` computes fewer outputs, while the laterals and the PPM
bottleneck stay whole because the top-down path feeds them into level 0, which
always keeps at least one channel.  Only the resize of level 3 shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import (Activation, Add, Concat, Constant, Conv2d, Crop, Layer, LayerNorm, Linear, MatMul,
                  Model, Pad, PatchMerge, PixelReshape, Pool, Resize, Roll, Softmax, WindowPartition, WindowReverse)
from . import variants as v

__all__ = ["NAMES", "build"]

ENC, DEC = "encoder", "decoder"
WINDOW = 7
MLP_RATIO = 4
CHANNELS = 512
POOL_SCALES = (1, 2, 3, 6)
CLASSES = 150
DEFAULT_SIZE = (512, 512)


@dataclass(frozen=True)
class _Arch:
    embed: int
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]


_ARCH = {
    "swin_tiny": _Arch(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_small": _Arch(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_base": _Arch(128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
NAMES = tuple(_ARCH)


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def _block(out: list[Layer], pre: str, x: str, h: int, w: int, dim: int, heads: int,
           shifted: bool) -> str:
    """Append one Swin block reading layer ``x``; return the name of its output."""
    norm1 = LayerNorm(f"{pre}.norm1", ENC, inputs=(x,))
    out.append(norm1)
    attn = _window_attention(out, pre, norm1.name, h, w, dim, heads, shifted)
    add1 = Add(f"{pre}.add1", ENC, inputs=(x, attn))
    t, hidden = h * w, MLP_RATIO * dim
    norm2 = LayerNorm(f"{pre}.norm2", ENC, inputs=(add1.name,))
    fc1 = Linear(f"{pre}.mlp.fc1", ENC, t, dim, hidden, inputs=(norm2.name,))
    gelu = Activation(f"{pre}.mlp.gelu", ENC, "gelu", inputs=(fc1.name,))
    fc2 = Linear(f"{pre}.mlp.fc2", ENC, t, hidden, dim, inputs=(gelu.name,))
    add2 = Add(f"{pre}.add2", ENC, inputs=(add1.name, fc2.name))
    out += [add1, norm2, fc1, gelu, fc2, add2]
    return add2.name


def _window_attention(out: list[Layer], pre: str, cur: str, h: int, w: int, dim: int, heads: int,
                      shifted: bool) -> str:
    """Append (shifted) window attention reading ``cur`` (``h x w``, padded to whole windows and
    cropped back); return the name of its output."""
    hp, wp = _ceil_to(h, WINDOW), _ceil_to(w, WINDOW)
    tp, win = hp * wp, WINDOW * WINDOW
    windows = tp // win
    d = dim // heads
    shift = WINDOW // 2
    if tp != h * w:
        out.append(Pad(f"{pre}.attn.pad", ENC, inputs=(cur,), out_h=hp, out_w=wp))
        cur = out[-1].name
    if shifted:                                   # torch.roll(x, -shift)
        out.append(Roll(f"{pre}.attn.shift", ENC, inputs=(cur,), shift=shift))
        cur = out[-1].name
    # one window is its own raster order: its partition and reverse would move no data, so they are
    # no layers, and the products' rows lie as the image's pixels (as ONNX import makes them)
    rows = (hp, wp) if windows == 1 else (win, windows)
    if windows > 1:
        out.append(WindowPartition(f"{pre}.attn.partition", ENC, inputs=(cur,), window=WINDOW))
        cur = out[-1].name
    qkv = Linear(f"{pre}.attn.qkv", ENC, tp, dim, 3 * dim, inputs=(cur,))
    # q, k and v are channels 0.., dim.. and 2*dim.. of qkv; batch = windows x heads
    qk = MatMul(f"{pre}.attn.qk", ENC, windows * heads, win, d, win, inputs=(qkv.name, qkv.name),
                windows=windows, b_offset=dim, b_layout="nk")
    # the relative-position bias (heads x 49 x 49) is the same in every window
    table = Constant(f"{pre}.attn.rel_pos_bias.table", ENC, (rows[0], rows[1] // windows, heads * win),
                     init="rel_pos_bias", args=(WINDOW, heads))
    bias = Add(f"{pre}.attn.rel_pos_bias", ENC, inputs=(qk.name, table.name))
    out += [qkv, qk, table, bias]
    cur = bias.name
    if shifted:                                   # the mask (windows x 49 x 49) is the same for every head
        mask = Constant(f"{pre}.attn.mask.table", ENC, (*rows, win), init="swin_mask",
                        args=(hp, wp, WINDOW, shift))
        out += [mask, Add(f"{pre}.attn.mask", ENC, inputs=(cur, mask.name))]
        cur = out[-1].name
    sm = Softmax(f"{pre}.attn.softmax", ENC, inputs=(cur,), row=win)
    av = MatMul(f"{pre}.attn.av", ENC, windows * heads, win, win, d, inputs=(sm.name, qkv.name),
                windows=windows, b_offset=2 * dim, b_layout="kn")
    proj = Linear(f"{pre}.attn.proj", ENC, tp, dim, dim, inputs=(av.name,))
    out += [sm, av, proj]
    return _unwindowed(out, pre, proj.name, h, w, hp, wp, shifted)


def _unwindowed(out: list[Layer], pre: str, proj: str, h: int, w: int, hp: int, wp: int, shifted: bool) -> str:
    """Append what takes the attention's projection ``proj`` (``hp x wp`` padded) back to the
    ``h x w`` image: the windows' reverse, the unshift, the crop; return the name of the output."""
    cur = proj
    if hp * wp > WINDOW * WINDOW:
        out.append(WindowReverse(f"{pre}.attn.reverse", ENC, inputs=(cur,), out_h=hp, out_w=wp, window=WINDOW))
        cur = out[-1].name
    if shifted:
        out.append(Roll(f"{pre}.attn.unshift", ENC, inputs=(cur,), shift=-(WINDOW // 2)))
        cur = out[-1].name
    if hp * wp != h * w and cur == proj and h == 1:
        # one row of the projection's output (one window, unshifted): a view of its first pixels, no
        # copy, as ONNX import takes the row (whole rows it takes as a crop, which the add's pass reads)
        out.append(PixelReshape(f"{pre}.attn.crop", ENC, inputs=(cur,), out_h=h, out_w=w))
        cur = out[-1].name
    elif hp * wp != h * w:
        out.append(Crop(f"{pre}.attn.crop", ENC, inputs=(cur,), out_h=h, out_w=w))
        cur = out[-1].name
    return cur


def _backbone(layers: list[Layer], arch: _Arch, blocks: tuple[int, ...], height: int, width: int
              ) -> list[tuple[str, int, int, int]]:
    """Append the backbone; return (output layer, h, w, channels) of each stage."""
    # mmseg's AdaptivePadding (zeros after the last row and column) is the convolution's own padding
    pads = (0, 0, _ceil_to(height, 4) - height, _ceil_to(width, 4) - width)
    embed = Conv2d("patch_embed", ENC, 3, arch.embed, height, width, kernel=4, stride=4, padding=pads)
    h, w, dim = embed.out_h, embed.out_w, arch.embed
    layers += [embed, LayerNorm("patch_embed.norm", ENC, inputs=(embed.name,))]
    x = layers[-1].name
    stages = []
    for s in range(4):
        for b in range(blocks[s]):
            x = _block(layers, f"stage{s}.block{b}", x, h, w, dim, arch.heads[s], shifted=b % 2 == 1)
        stage_out = x
        if s < 3:                                   # patch merging (padding odd sizes)
            h2, w2 = -(-h // 2), -(-w // 2)
            merge = PatchMerge(f"stage{s}.downsample.merge", ENC, inputs=(x,))
            norm = LayerNorm(f"stage{s}.downsample.norm", ENC, inputs=(merge.name,))
            red = Linear(f"stage{s}.downsample.reduction", ENC, h2 * w2, 4 * dim, 2 * dim, bias=False,
                         inputs=(norm.name,))
            layers += [merge, norm, red]
            x = red.name
        out_norm = LayerNorm(f"stage{s}.out_norm", ENC, inputs=(stage_out,))
        layers.append(out_norm)
        stages.append((out_norm.name, h, w, dim))
        if s < 3:
            h, w, dim = h2, w2, 2 * dim
    return stages


def _uper_head(layers: list[Layer], stages: list[tuple[str, int, int, int]], fpn: int,
               height: int, width: int) -> None:
    """Append the UPerNet head keeping the first ``fpn`` input channels of fpn_bottleneck."""
    c = CHANNELS
    laterals = _top_down(layers, stages, _psp(layers, stages[3]))
    sizes = [(hi, wi) for _, hi, wi, _ in stages]
    h0, w0 = sizes[0]
    segments = []
    for i in range(4):
        kept = min(max(fpn - i * c, 0), c)
        if kept == 0:
            continue
        src = laterals[i]
        if i < 3:
            hi, wi = sizes[i]
            conv = Conv2d(f"fpn_convs.{i}", DEC, c, kept, hi, wi, kernel=3, padding=1, relu=True,
                          inputs=(src,))
            layers.append(conv)
            src = conv.name
        if i > 0:
            up = Resize(f"fpn_resize.{i}", DEC, inputs=(src,), out_h=h0, out_w=w0)
            layers.append(up)
            src = up.name
        segments.append(src)
    cat = Concat("fpn_concat", DEC, inputs=tuple(segments))
    fpn_bottleneck = Conv2d("fpn_bottleneck", DEC, fpn, c, h0, w0, kernel=3, padding=1, relu=True,
                            inputs=(cat.name,))
    seg = Conv2d("conv_seg", DEC, c, CLASSES, h0, w0, inputs=(fpn_bottleneck.name,))
    logits = Resize("resize_logits", DEC, inputs=(seg.name,), out_h=height, out_w=width)
    layers += [cat, fpn_bottleneck, seg, logits]


def _psp(layers: list[Layer], top_stage: tuple[str, int, int, int]) -> str:
    """Append the pyramid pooling module on the top stage; return its bottleneck's name."""
    c = CHANNELS
    top, ht, wt, ct = top_stage
    psp = [top]
    for i, scale in enumerate(POOL_SCALES):
        pool = Pool(f"psp_modules.{i}.pool", DEC, inputs=(top,), mode="adaptive_avg", out_h=scale, out_w=scale)
        conv = Conv2d(f"psp_modules.{i}.conv", DEC, ct, c, scale, scale, relu=True, inputs=(pool.name,))
        up = Resize(f"psp_modules.{i}.resize", DEC, inputs=(conv.name,), out_h=ht, out_w=wt)
        layers += [pool, conv, up]
        psp.append(up.name)
    psp_ch = ct + len(POOL_SCALES) * c
    cat = Concat("psp_concat", DEC, inputs=tuple(psp))
    bottleneck = Conv2d("bottleneck", DEC, psp_ch, c, ht, wt, kernel=3, padding=1, relu=True,
                        inputs=(cat.name,))
    layers += [cat, bottleneck]
    return bottleneck.name


def _top_down(layers: list[Layer], stages: list[tuple[str, int, int, int]], bottleneck: str) -> list[str]:
    """Append the lateral convolutions and the top-down adds; return each level's name after them."""
    laterals = []                                   # name of level i's lateral after the top-down add
    for i, (src, hi, wi, ci) in enumerate(stages[:3]):
        lat = Conv2d(f"lateral_convs.{i}", DEC, ci, CHANNELS, hi, wi, relu=True, inputs=(src,))
        layers.append(lat)
        laterals.append(lat.name)
    laterals.append(bottleneck)
    for i in (3, 2, 1):                             # top-down: level i-1 += resize(level i)
        _, hd, wd, _ = stages[i - 1]
        up = Resize(f"topdown.{i}.resize", DEC, inputs=(laterals[i],), out_h=hd, out_w=wd)
        add = Add(f"topdown.{i}.add", DEC, inputs=(laterals[i - 1], up.name))
        layers += [up, add]
        laterals[i - 1] = add.name
    return laterals


def build(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build ``swin_tiny``, ``swin_small`` or ``swin_base`` with the UPerNet head.

    Parameters
    ----------
    name:
        The model; all three are the ADE20K (150 classes) models with window 7.
    variant:
        ``None``/``"full"`` or ``"blocks=a-b-c-d,fpn=F"`` (any subset, or its short
        name ``blocks2-2-5-2_fpn1024``): blocks kept per stage and input channels kept
        for ``fpn_bottleneck``.
    size:
        Input ``(H, W)``, 512x512 by default.

    Raises
    ------
    KeyError
        ``name`` is not a Swin model.
    ValueError
        A variant that is malformed or keeps 0 or more blocks/channels than the
        model has (the message names the parameter, value and range).
    """
    if name not in _ARCH:
        raise KeyError(f"unknown Swin model {name!r}; choose one of {', '.join(NAMES)}")
    arch = _ARCH[name]
    height, width = size or DEFAULT_SIZE
    if height <= 0 or width <= 0:
        raise ValueError(f"{name}: input size must be positive, not {height}x{width}")
    label, params = v.resolve(name, variant, {"blocks": arch.depths, "fpn": 4 * CHANNELS})
    layers: list[Layer] = []
    stages = _backbone(layers, arch, params["blocks"], height, width)
    _uper_head(layers, stages, params["fpn"], height, width)
    return Model(name=name, variant=label, input=(height, width, 3), layers=tuple(layers),
                 params={"classes": CLASSES, "window": WINDOW, "blocks": params["blocks"],
                         "fpn": params["fpn"]})
