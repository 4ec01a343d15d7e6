"""ResNet-50 (torchvision) and the Once-For-All ResNet-50 family as layer lists.

``resnet50``
    torchvision ResNet-50 v1.5: conv1 7x7 s2 (+BN+ReLU), maxpool 3x3 s2, four
    bottleneck stages of (3, 4, 6, 3) blocks with widths 256/512/1024/2048, the
    stride on the 3x3 conv, a 1x1 (strided) downsample conv on the first block of
    each stage, global average pooling and ``fc`` 2048 -> 1000.  Default input
    224x224 (about 4.1 G MACs).

``ofa_resnet50``
    ``OFAResNets`` of mit-han-lab/once-for-all with ``depth_list=(0, 1, 2)``,
    ``expand_ratio_list=(0.2, 0.25, 0.35)`` and ``width_mult_list=(0.65, 0.8,
    1.0)``.  The full model (variant ``None``/``"full"``) is the largest subnet,
    the paper's OFA-ResNet-50: depth 2 everywhere, expand 0.35, width 1.0.
    Structure (following ``ofa_resnets.py`` / ``DynamicResNetBottleneckBlock``):

    * input stem: ``stem.0`` conv3x3 s2 3 -> mid, ``stem.1`` conv3x3 mid -> mid
      with an identity residual (``stem.1.add``, no activation after the add, as
      in OFA's ``ResidualBlock``), ``stem.2`` conv3x3 mid -> stem_out; every conv
      with BN + ReLU.  ``stem_out = make_divisible(64 * w, 8)`` and
      ``mid = make_divisible(stem_out // 2, 8)``;
    * maxpool 3x3 s2 p1;
    * four stages of ``base (2, 2, 4, 2) + d`` bottlenecks, widths
      ``make_divisible(256/512/1024/2048 * w, 8)``, stride (1, 2, 2, 2) on the
      first block's 3x3 conv; middle width
      ``make_divisible(round(out * e), 8)``; the shortcut of a block whose
      stride is 2 or whose in/out widths differ is OFA's ``avgpool_conv``:
      AvgPool2d(k=s, s=s, ceil_mode=True) then 1x1 conv + BN (the pool is left
      out when s = 1, where it is the identity);
    * global average pool and ``fc`` stem... -> 1000 (part ``head``).

    ``make_divisible`` is OFA's (round to the nearest multiple of 8, at least
    8, never more than 10 % below the value).

Variants of ``ofa_resnet50`` (OFA's ``set_active_subnet(d, e, w)`` arguments)
are written ``d=...,e=...,w=...``; every key is optional (default: the largest
value) and takes either ONE value, applied to every position as OFA's
``val2list`` does, or the full per-position list joined with ``-``:

* ``d``: 5 integers in {0, 1, 2}: ``d[0]`` is the stem depth (any value other
  than 2 skips the middle stem conv ``stem.1``, as OFA's ``input_stem_skipping``
  does), ``d[1..4]`` the extra blocks of stages 1..4 (a stage runs its first
  ``base + d`` blocks).
* ``e``: 18 expand ratios in {0.2, 0.25, 0.35}, one per block of the largest
  network in order (stage 1 blocks 0-3, stage 2 blocks 0-3, stage 3 blocks
  0-5, stage 4 blocks 0-3); ratios of blocks skipped by ``d`` are ignored, as
  in OFA.
* ``w``: 6 width multipliers in {0.65, 0.8, 1.0} (the multiplier VALUES, where
  OFA passes indices into ``width_mult_list``): ``w[0]`` the stem's first two
  convs, ``w[1]`` the stem's last conv, ``w[2..5]`` stages 1..4.

Example: ``d=2-2-2-2-2,e=0.35,w=1.0`` is the full model; ``d=0,e=0.2,w=0.65``
the smallest subnet.  The canonical variant name (``Model.variant``, used in
file names) lists the keys that differ from the full model, a uniform list
written as one value, e.g. ``d0_e0.2_w0.65``, which is read back as a variant too.  The named variants ``MAC4.1B``
... ``MAC0.6B`` stand in for the subnets MIT HAN Lab published with their
accuracies (:data:`OFA_NAMED_POINTS`, ``data/ofa_resnet50_subnets.csv``); each
has its own default input size.

Conventions for both models: BatchNorm is folded into the preceding conv at
inference (so every conv has ``bias=True`` and no BN layer); the ReLU after a
conv is fused (``relu=True``); the ReLU after a residual add is an
``Activation("relu", fused=True)`` following the ``add``.  ``inputs`` names
the producing layers; ``()`` means the model input image.  Part is
``backbone`` for every layer except ``fc`` (``head``).
"""

from __future__ import annotations

from ..ir import INPUT, Activation, Add, Conv2d, Layer, Linear, Model, Pool
from . import variants as _v

__all__ = ["build", "make_divisible", "resnet50_backbone", "OFA_DEPTHS", "OFA_EXPANDS", "OFA_WIDTHS",
           "OFA_NAMED_POINTS"]

NUM_CLASSES = 1000
DEFAULT_SIZE = (224, 224)

RESNET50_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)

OFA_BASE_DEPTHS = (2, 2, 4, 2)
OFA_DEPTHS = (0, 1, 2)
OFA_EXPANDS = (0.2, 0.25, 0.35)
OFA_WIDTHS = (0.65, 0.8, 1.0)
OFA_N_BLOCKS = sum(b + max(OFA_DEPTHS) for b in OFA_BASE_DEPTHS)   # 18
_OFA_FULL = {"d": (2,) * 5, "e": (0.35,) * OFA_N_BLOCKS, "w": (1.0,) * 6}
_OFA_LENGTHS = {"d": 5, "e": OFA_N_BLOCKS, "w": 6}
#: Stand-ins for the subnets published by mit-han-lab/once-for-all ("ResNet50 Design Space", see
#: data/ofa_resnet50_subnets.csv): name -> (d, e, w, input side).  The published d/e/w and sizes were
#: not available; each stand-in is the uniform (d, e, w) whose weights are nearest the published
#: #Params, at the side (multiple of 4 in 128..224) whose MACs are nearest the published #MACs.
OFA_NAMED_POINTS: dict[str, tuple[int, float, float, int]] = {
    "MAC4.1B": (2, 0.35, 0.8, 196), "MAC3.7B": (0, 0.35, 1.0, 196), "MAC3.0B": (0, 0.35, 1.0, 180),
    "MAC2.4B": (2, 0.25, 1.0, 156), "MAC1.8B": (2, 0.35, 0.65, 164), "MAC1.2B": (2, 0.25, 0.8, 132),
    "MAC0.9B": (0, 0.2, 1.0, 132), "MAC0.6B": (0, 0.2, 0.8, 144),
}


def make_divisible(v: float, divisor: int = 8, min_val: int | None = None) -> int:
    """OFA's ``make_divisible`` (from ``ofa.utils.my_modules``)."""
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:          # never round down by more than 10 %
        new_v += divisor
    return new_v


class _Net:
    """Appends layers while tracking the current tensor (name, h, w, c)."""

    def __init__(self, prefix: str, part: str, h: int, w: int, c: int, src: str = ""):
        self.prefix, self.part = prefix, part
        self.layers: list[Layer] = []
        self.cur = (src, h, w, c)

    def _src(self, src: str) -> tuple[str, ...]:
        return (src,) if src else ()

    def conv(self, name, out_ch, k, s=1, p=0, relu=True, src=None) -> tuple:
        sname, h, w, c = self.cur if src is None else src
        layer = Conv2d(self.prefix + name, self.part, c, out_ch, h, w, kernel=k, stride=s, padding=p,
                       bias=True, relu=relu, inputs=self._src(sname))
        self.layers.append(layer)
        self.cur = (layer.name, layer.out_h, layer.out_w, out_ch)
        return self.cur

    def pool(self, name, src=None, **kw) -> tuple:
        """A :class:`Pool` layer (keyword arguments as its fields)."""
        sname = (self.cur if src is None else src)[0]
        layer = Pool(self.prefix + name, self.part, inputs=self._src(sname), **kw)
        self.layers.append(layer)
        h, w, c = layer.infer([self._shape(src)])
        self.cur = (layer.name, h, w, c)
        return self.cur

    def _shape(self, src=None) -> tuple:
        _, h, w, c = self.cur if src is None else src
        return (h, w, c)

    def add(self, name, a, b, relu: bool) -> tuple:
        _, h, w, c = a
        layer = Add(self.prefix + name, self.part, inputs=(a[0], b[0]))
        self.layers.append(layer)
        self.cur = (layer.name, h, w, c)
        if relu:
            act = Activation(self.prefix + name.rsplit("add", 1)[0] + "relu", self.part, "relu",
                             fused=True, inputs=(layer.name,))
            self.layers.append(act)
            self.cur = (act.name, h, w, c)
        return self.cur


def _bottleneck(net: _Net, name: str, mid: int, out: int, stride: int, shortcut: str) -> None:
    """One bottleneck block; ``shortcut`` is "identity", "conv" (torchvision) or "avgpool_conv" (OFA)."""
    x = net.cur
    net.conv(f"{name}.conv1", mid, 1)
    net.conv(f"{name}.conv2", mid, 3, s=stride, p=1)
    main = net.conv(f"{name}.conv3", out, 1, relu=False)
    if shortcut == "identity":
        short = x
    elif shortcut == "conv":
        short = net.conv(f"{name}.downsample", out, 1, s=stride, relu=False, src=x)
    else:  # avgpool_conv: AvgPool2d(stride, stride, ceil_mode=True) then 1x1 conv
        src = x
        if stride > 1:
            _, h, w, _ = x
            src = net.pool(f"{name}.downsample.avgpool", src=x, mode="avg", kernel=stride, stride=stride,
                           ceil_mode=True)
        short = net.conv(f"{name}.downsample.conv", out, 1, relu=False, src=src)
    net.add(f"{name}.add", main, short, relu=True)


def resnet50_backbone(h: int, w: int, prefix: str = "", part: str = "backbone") -> tuple[list[Layer], tuple]:
    """torchvision ResNet-50 through C5 (no avgpool/fc) on an ``h x w x 3`` image.

    Returns the layers and the output tensor ``(layer_name, h, w, channels)``.
    """
    net = _Net(prefix, part, h, w, 3)
    net.conv("conv1", 64, 7, s=2, p=3)
    net.pool("maxpool", mode="max", kernel=3, stride=2, padding=1)
    for si, (blocks, out, stride) in enumerate(zip(RESNET50_BLOCKS, STAGE_WIDTHS, STAGE_STRIDES)):
        for b in range(blocks):
            in_ch = net.cur[3]
            s = stride if b == 0 else 1
            shortcut = "conv" if (s != 1 or in_ch != out) else "identity"
            _bottleneck(net, f"layer{si + 1}.{b}", out // 4, out, s, shortcut)
    return net.layers, net.cur


def _head(net: _Net) -> None:
    """Global average pool and the 1000-class fc (part ``head``)."""
    _, h, w, c = net.cur
    net.pool("avgpool", mode="adaptive_avg", out_h=1, out_w=1)
    net.layers.append(Linear(net.prefix + "fc", "head", 1, c, NUM_CLASSES, inputs=(net.cur[0],)))


def _ofa_layers(h: int, w: int, d: tuple, e: tuple, wm: tuple) -> list[Layer]:
    stem_out = make_divisible(64 * wm[1], 8)
    stem_mid = make_divisible(make_divisible(64 * wm[0], 8) // 2, 8)
    net = _Net("", "backbone", h, w, 3)
    net.conv("stem.0", stem_mid, 3, s=2, p=1)
    if d[0] == max(OFA_DEPTHS):
        x = net.cur
        y = net.conv("stem.1.conv", stem_mid, 3, p=1)
        net.add("stem.1.add", y, x, relu=False)
    net.conv("stem.2", stem_out, 3, p=1)
    net.pool("maxpool", mode="max", kernel=3, stride=2, padding=1)
    block = 0
    for si, (base, width, stride) in enumerate(zip(OFA_BASE_DEPTHS, STAGE_WIDTHS, STAGE_STRIDES)):
        out = make_divisible(width * wm[2 + si], 8)
        n_max = base + max(OFA_DEPTHS)
        for b in range(n_max):
            if b < base + d[1 + si]:
                s = stride if b == 0 else 1
                mid = make_divisible(round(out * e[block]), 8)
                # OFA builds an identity shortcut iff stride 1 and equal channel lists,
                # which holds exactly for the non-first blocks of a stage.
                shortcut = "identity" if b > 0 else "avgpool_conv"
                _bottleneck(net, f"layer{si + 1}.{b}", mid, out, s, shortcut)
            block += 1
    _head(net)
    return net.layers


def _parse_ofa(variant: str) -> dict[str, tuple]:
    model = "ofa_resnet50"
    raw = _v.parse_assignments(model, variant, ("d", "e", "w"))
    allowed = {"d": OFA_DEPTHS, "e": OFA_EXPANDS, "w": OFA_WIDTHS}
    values = dict(_OFA_FULL)
    for key, text in raw.items():
        n = _OFA_LENGTHS[key]
        items = text.split("-")
        if len(items) not in (1, n):
            raise ValueError(f"{model}: {key}={text!r} must be one value or {n} values separated by '-'")
        try:
            parsed = tuple(int(x) if key == "d" else float(x) for x in items)
        except ValueError:
            kind = "integers" if key == "d" else "numbers"
            raise ValueError(f"{model}: {key}={text!r} is not a '-'-separated list of {kind}") from None
        for x in parsed:
            if x not in allowed[key]:
                choices = ", ".join(map(str, allowed[key]))
                raise ValueError(f"{model}: {key}={text!r} has value {x}, allowed values are {choices}")
        values[key] = parsed * n if len(parsed) == 1 else parsed
    return values


def _ofa_name(values: dict[str, tuple]) -> str:
    parts = []
    for key, full in _OFA_FULL.items():
        val = values[key]
        if val == full:
            continue
        text = str(val[0]) if len(set(val)) == 1 else "-".join(map(str, val))
        parts.append(f"{key}{text}")
    return "_".join(parts) or _v.FULL


def _ofa_point(name: str) -> dict[str, tuple]:
    """A named OFA subnet's per-position d/e/w values."""
    uniform = dict(zip(("d", "e", "w"), OFA_NAMED_POINTS[name]))
    return {key: (uniform[key],) * n for key, n in _OFA_LENGTHS.items()}


def build(name: str, variant: str | None = None, size: tuple[int, int] | None = None) -> Model:
    """Build ``resnet50`` or ``ofa_resnet50`` (see the module docstring for variants)."""
    point = variant.strip() if name == "ofa_resnet50" and variant else ""
    default = (OFA_NAMED_POINTS[point][3],) * 2 if point in OFA_NAMED_POINTS else DEFAULT_SIZE
    h, w = _v.check_size(name, size, default)
    if name == "resnet50":
        if not _v.is_full(variant):
            raise ValueError(f"{name}: unknown variant {variant!r}; resnet50 has only the variant "
                             f"{_v.FULL!r} (execution-path variants are ofa_resnet50's)")
        layers, out = resnet50_backbone(h, w)
        net = _Net("", "backbone", h, w, 3)
        net.layers, net.cur = layers, out
        _head(net)
        return Model(name, _v.FULL, (h, w, 3), tuple(net.layers),
                     params={"blocks": RESNET50_BLOCKS, "widths": STAGE_WIDTHS})
    if name == "ofa_resnet50":
        label = None
        if _v.is_full(variant):
            values = dict(_OFA_FULL)
        elif _v.is_parametric(variant):
            values = _parse_ofa(variant)
        elif point in OFA_NAMED_POINTS:
            values, label = _ofa_point(point), point
        elif (spelled := _v.from_canonical_name(point, _OFA_FULL, r"[0-9]+(?:\.[0-9]+)?")) is not None:
            values = _parse_ofa(spelled)        # the name a report gives it (_ofa_name), typed back
        else:
            raise _v.unknown_point(name, variant, tuple(OFA_NAMED_POINTS), tuple(_OFA_FULL), short_names=True)
        layers = _ofa_layers(h, w, values["d"], values["e"], values["w"])
        return Model(name, label or _ofa_name(values), (h, w, 3), tuple(layers),
                     params={"d": values["d"], "e": values["e"], "w": values["w"]})
    raise KeyError(f"resnet family cannot build {name!r}; choose resnet50 or ofa_resnet50")
