"""SegFormer and Swin+UPerNet workloads: per-layer MACs against closed-form counts, variants.

The reference counts below are written from the architectures' published
hyper-parameters with one closed-form product per layer; they share nothing
with the builders except the layer names.
"""

from __future__ import annotations

import math

import pytest

from mapper.workloads import build_model
from mapper.workloads.variants import canonical_name, from_canonical_name, parse_assignments

# --------------------------------------------------------------------------- SegFormer reference

# Decoder dim is the head's embed_dim in NVlabs/SegFormer local_configs (B0, B1: 256; B2: 768);
# mmseg's segformer_mit-b* configs use 256 for every size, so B2's 3072-channel Conv2DFuse is NVlabs'.
SEG = {  # name -> (dims, depths, decoder dim, classes, input side)
    "segformer_b0": ((32, 64, 160, 256), (2, 2, 2, 2), 256, 150, 512),
    "segformer_b1": ((64, 128, 320, 512), (2, 2, 2, 2), 256, 150, 512),
    "segformer_b2": ((64, 128, 320, 512), (3, 4, 6, 3), 768, 150, 512),
    "segformer_b0_city": ((32, 64, 160, 256), (2, 2, 2, 2), 256, 19, 1024),
    "segformer_b1_city": ((64, 128, 320, 512), (2, 2, 2, 2), 256, 19, 1024),
    "segformer_b2_city": ((64, 128, 320, 512), (3, 4, 6, 3), 768, 19, 1024),
}


def segformer_reference(name, blocks=None, fuse=None, pred=None, linear0=None):
    dims, depths, e, classes, side = SEG[name]
    blocks = blocks or depths
    fuse = fuse or 4 * e
    pred = pred or e
    linear0 = linear0 or dims[0]
    macs = {}
    for s, c in enumerate(dims):
        n = side // 4 >> s                        # stage side: 1/4, 1/8, 1/16, 1/32
        t = n * n
        r = (8, 4, 2, 1)[s]
        t_kv = (n // r) ** 2
        macs[f"stage{s}.patch_embed"] = t * c * (3 * 49 if s == 0 else dims[s - 1] * 9)
        for b in range(blocks[s]):
            p = f"stage{s}.block{b}"
            macs[f"{p}.attn.q"] = t * c * c
            if r > 1:
                macs[f"{p}.attn.sr"] = t * c * c  # (n/r)^2 outputs x c x (c r^2)
            macs[f"{p}.attn.kv"] = t_kv * c * 2 * c
            macs[f"{p}.attn.qk"] = t * t_kv * c   # heads x T x (c/heads) x T_kv
            macs[f"{p}.attn.av"] = t * t_kv * c
            macs[f"{p}.attn.proj"] = t * c * c
            macs[f"{p}.mlp.fc1"] = t * c * 4 * c
            macs[f"{p}.mlp.dwconv"] = t * 4 * c * 9
            macs[f"{p}.mlp.fc2"] = t * 4 * c * c
    t0 = (side // 4) ** 2
    for i, c in enumerate(dims):
        kept = min(max(fuse - (3 - i) * e, 0), e)   # concat order is stage 3, 2, 1, 0
        if kept:
            macs[f"DecodeLinear{i}"] = (side // 4 >> i) ** 2 * (linear0 if i == 0 else c) * kept
    macs["Conv2DFuse"] = t0 * fuse * pred
    macs["Conv2DPred"] = t0 * pred * classes
    return macs


# --------------------------------------------------------------------------- Swin reference

SWIN = {  # name -> (embed, depths, heads)
    "swin_tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


def swin_reference(name, blocks=None, fpn=2048, side=512):
    embed, depths, _ = SWIN[name]
    blocks = blocks or depths
    macs = {"patch_embed": (side // 4) ** 2 * embed * 3 * 16}
    sides, chans = [], []
    for s in range(4):
        c, n = embed << s, side // 4 >> s
        sides.append(n)
        chans.append(c)
        padded = math.ceil(n / 7) * 7
        windows = (padded // 7) ** 2
        for b in range(blocks[s]):
            p = f"stage{s}.block{b}"
            macs[f"{p}.attn.qkv"] = padded * padded * c * 3 * c
            macs[f"{p}.attn.qk"] = windows * 49 * 49 * c    # windows x heads x 49 x (c/heads) x 49
            macs[f"{p}.attn.av"] = windows * 49 * 49 * c
            macs[f"{p}.attn.proj"] = padded * padded * c * c
            macs[f"{p}.mlp.fc1"] = n * n * c * 4 * c
            macs[f"{p}.mlp.fc2"] = n * n * 4 * c * c
        if s < 3:
            macs[f"stage{s}.downsample.reduction"] = (n // 2) ** 2 * 4 * c * 2 * c
    for i, scale in enumerate((1, 2, 3, 6)):
        macs[f"psp_modules.{i}.conv"] = scale * scale * chans[3] * 512
    macs["bottleneck"] = sides[3] ** 2 * (chans[3] + 4 * 512) * 512 * 9
    for i in range(3):
        macs[f"lateral_convs.{i}"] = sides[i] ** 2 * chans[i] * 512
        kept = min(max(fpn - 512 * i, 0), 512)
        if kept:
            macs[f"fpn_convs.{i}"] = sides[i] ** 2 * 512 * kept * 9
    macs["fpn_bottleneck"] = sides[0] ** 2 * fpn * 512 * 9
    macs["conv_seg"] = sides[0] ** 2 * 512 * 150
    return macs


def assert_macs_match(model, reference):
    """Per layer by name, and every MAC of the model in exactly one reference entry."""
    built = {layer.name: layer.macs for layer in model.layers if layer.macs}
    missing, extra = sorted(reference.keys() - built.keys()), sorted(built.keys() - reference.keys())
    assert not missing and not extra, f"{model.name}/{model.variant}: missing {missing[:5]} extra {extra[:5]}"
    wrong = {n: (built[n], reference[n]) for n in reference if built[n] != reference[n]}
    assert not wrong, f"{model.name}/{model.variant}: (built, reference) {dict(list(wrong.items())[:5])}"
    assert model.total_macs == sum(reference.values())


@pytest.mark.parametrize("name", sorted(SEG))
def test_segformer_macs_per_layer(name):
    assert_macs_match(build_model(name), segformer_reference(name))


@pytest.mark.parametrize("name", sorted(SWIN))
def test_swin_macs_per_layer(name):
    assert_macs_match(build_model(name), swin_reference(name))


def test_swin_padding_to_window_multiple():
    model = build_model("swin_tiny")
    # 512/4 = 128 is padded to 133 = 19 windows of 7 per side for the attention.
    assert model.layer("stage0.block0.attn.qkv").tokens == 133 * 133
    assert model.layer("stage0.block0.attn.qk").batch == 19 * 19 * 3
    assert model.layer("stage3.block1.attn.qk").batch == 3 * 3 * 24     # 16 -> 21
    assert model.layer("stage0.block0.mlp.fc1").tokens == 128 * 128
    names = {layer.name for layer in model.layers}
    assert "stage0.block1.attn.mask" in names and "stage0.block0.attn.mask" not in names
    assert "stage3.block1.attn.shift" in names


def test_elementwise_element_counts():
    seg = build_model("segformer_b2")
    assert seg.layer("stage0.block0.attn.softmax").elements == 1 * 128 * 128 * 16 * 16
    assert seg.layer("stage3.block0.attn.softmax").elements == 8 * 256 * 256
    assert seg.layer("stage1.block0.mlp.gelu").elements == 64 * 64 * 512
    assert seg.layer("stage2.block0.attn.sr_norm").elements == 16 * 16 * 320
    assert seg.layer("DecodeResize3").elements == 128 * 128 * 768
    assert seg.layer("DecodeResize3").in_elements == 16 * 16 * 768
    assert seg.layer("DecodeConcat").elements == 128 * 128 * 3072
    assert seg.layer("resize_logits").elements == 512 * 512 * 150
    swin = build_model("swin_tiny")
    assert swin.layer("stage0.block0.attn.softmax").elements == 19 * 19 * 3 * 49 * 49
    assert swin.layer("stage1.downsample.norm").elements == 32 * 32 * 4 * 192
    assert swin.layer("fpn_concat").elements == 128 * 128 * 2048
    assert all(layer.macs == 0 for layer in seg.layers + swin.layers if layer.kind not in
               ("conv2d", "linear", "matmul"))


# --------------------------------------------------------------------------- variants

TABLE_III = {
    "B2": ((3, 4, 6, 3), 3072), "B2_a": ((3, 4, 6, 3), 1920), "B2_b": ((3, 4, 6, 3), 1664),
    "B2_c": ((2, 4, 6, 3), 1408), "B2_d": ((2, 3, 6, 3), 1024), "B2_e": ((2, 3, 5, 3), 896),
    "B2_f": ((2, 3, 5, 3), 512),
}


@pytest.mark.parametrize("point", sorted(TABLE_III))
def test_table_iii_points(point):
    blocks, fuse = TABLE_III[point]
    model = build_model("segformer_b2", point)
    assert model.variant == point
    assert model.params["blocks"] == blocks and model.params["fuse"] == fuse
    assert_macs_match(model, segformer_reference("segformer_b2", blocks=blocks, fuse=fuse))
    spelled = build_model("segformer_b2", f"blocks={'-'.join(map(str, blocks))},fuse={fuse}")
    assert spelled.layers == model.layers


def test_parametric_spelling_and_canonical_name():
    model = build_model("segformer_b2", "blocks=2-4-6-3,fuse=1408,pred=768,linear0=64")
    assert model.variant == "blocks2-4-6-3_fuse1408"
    assert model.layers == build_model("segformer_b2", "B2_c").layers
    assert build_model("segformer_b2", "full").variant == "full"
    assert build_model("segformer_b2", None).layers == build_model("segformer_b2", "pred=768").layers
    assert build_model("segformer_b2", "pred=768").variant == "full"
    assert build_model("swin_small", "fpn=1024, blocks=2-2-9-2").variant == "blocks2-2-9-2_fpn1024"
    assert canonical_name({"a": (1, 2), "b": 3}, {"a": (1, 1), "b": 3}) == "a1-2"
    assert parse_assignments("m", " x=1 , y=2-3 ", ("x", "y")) == {"x": "1", "y": "2-3"}


@pytest.mark.parametrize("model, spelling", [("segformer_b2", "blocks=2-4-6-3,fuse=1408"),
                                             ("segformer_b0", "blocks=1-1-1-1"),
                                             ("segformer_b2", "fuse=512,pred=256,linear0=32"),
                                             ("swin_small", "blocks=2-2-9-2,fpn=1024"),
                                             ("ofa_resnet50", "d=0,e=0.2,w=0.65"),
                                             ("ofa_resnet50", "d=0-1-2-0-1,e=0.25")])
def test_the_short_name_a_report_prints_is_typed_back(model, spelling):
    """``make paths`` prints a variant by its short name (``blocks1-1-1-1``): given back as
    ``--paths`` it names the same network (it was an unknown variant)."""
    short = build_model(model, spelling).variant
    again = build_model(model, short)
    assert again.variant == short and again.layers == build_model(model, spelling).layers
    for bad in {short + "_", "_" + short, short.replace("_", "__")} - {short}:
        with pytest.raises(ValueError, match="short name"):
            build_model(model, bad)


def test_a_short_name_and_its_spelling_are_one_path():
    from sim.paths import parse_paths

    assert parse_paths(["segformer_b2"], "blocks1-1-1-1;blocks=1-1-1-1") == ["blocks1-1-1-1"]
    assert from_canonical_name("fuse0512", {"fuse": 3072}) is None        # canonical_name writes no 0s
    assert parse_paths(["ofa_resnet50"], "d0_e0.2_w0.65;d=0,e=0.2,w=0.65") == ["d0_e0.2_w0.65"]


def _encoder(model):
    return [layer for layer in model.layers if layer.part == "encoder"]


def test_segformer_fuse_propagation():
    full = build_model("segformer_b2")
    a = build_model("segformer_b2", "fuse=1920")         # segments: s3 768, s2 768, s1 384, s0 0
    assert _encoder(a) == _encoder(full)
    names = {layer.name for layer in a.layers}
    assert "DecodeLinear0" not in names
    assert a.layer("DecodeLinear1").out_features == 384
    assert a.layer("DecodeResize1").elements == 128 * 128 * 384
    assert a.layer("DecodeLinear2").out_features == a.layer("DecodeLinear3").out_features == 768
    assert a.layer("Conv2DFuse").in_ch == 1920 and a.layer("Conv2DFuse").out_ch == 768
    assert a.layer("DecodeConcat").inputs == ("DecodeResize3", "DecodeResize2", "DecodeResize1")
    small = build_model("segformer_b2", "fuse=100")
    assert _encoder(small) == _encoder(full)            # stage 3 still feeds DecodeLinear3
    assert small.layer("DecodeLinear3").out_features == 100
    assert not {"DecodeLinear0", "DecodeLinear1", "DecodeLinear2"} & {l.name for l in small.layers}


def test_segformer_pred_and_linear0_propagation():
    full = build_model("segformer_b2")
    m = build_model("segformer_b2", "pred=736,linear0=48")
    fuse, pred = m.layer("Conv2DFuse"), m.layer("Conv2DPred")
    assert (fuse.in_ch, fuse.out_ch, fuse.relu) == (3072, 736, True)
    assert (pred.in_ch, pred.out_ch) == (736, 150)
    assert m.layer("DecodeLinear0").in_features == 48
    assert m.layer("DecodeLinear0").out_features == 768
    assert _encoder(m) == _encoder(full)
    changed = {a.name for a, b in zip(m.layers, full.layers) if a != b}
    assert changed == {"DecodeLinear0", "Conv2DFuse", "Conv2DPred"}
    assert_macs_match(m, segformer_reference("segformer_b2", pred=736, linear0=48))


def test_segformer_blocks_keep_first():
    m = build_model("segformer_b2_city", "blocks=1-4-6-2")
    names = {layer.name for layer in m.layers}
    assert "stage0.block0.mlp.fc2" in names and "stage0.block1.attn.q" not in names
    assert "stage3.block1.add2" in names and "stage3.block2.norm1" not in names
    assert m.layer("stage0.norm").inputs == ("stage0.block0.add2",)


def test_swin_fpn_propagation():
    full = build_model("swin_base")
    m = build_model("swin_base", "fpn=700")              # segments: 512, 188, 0, 0
    assert _encoder(m) == _encoder(full)
    assert m.layer("fpn_convs.0").out_ch == 512
    assert m.layer("fpn_convs.1").out_ch == 188
    assert m.layer("fpn_resize.1").elements == 128 * 128 * 188
    names = {layer.name for layer in m.layers}
    assert not {"fpn_convs.2", "fpn_resize.2", "fpn_resize.3"} & names
    for kept in ("bottleneck", "lateral_convs.0", "lateral_convs.1", "lateral_convs.2"):
        assert m.layer(kept) == full.layer(kept)        # needed by the top-down path into level 0
    assert m.layer("fpn_bottleneck").in_ch == 700
    assert_macs_match(m, swin_reference("swin_base", fpn=700))
    few = build_model("swin_tiny", "fpn=300,blocks=2-2-3-1")
    assert few.layer("fpn_convs.0").out_ch == 300
    assert_macs_match(few, swin_reference("swin_tiny", blocks=(2, 2, 3, 1), fpn=300))


@pytest.mark.parametrize("name, variant, fragments", [
    ("segformer_b2", "blocks=4-4-6-3", ("blocks[0]=4", "1..3")),
    ("segformer_b2", "blocks=3-4-0-3", ("blocks[2]=0", "1..6")),
    ("segformer_b2", "fuse=0", ("fuse=0", "1..3072")),
    ("segformer_b2", "fuse=3073", ("fuse=3073", "1..3072")),
    ("segformer_b0", "fuse=1025", ("fuse=1025", "1..1024")),
    ("segformer_b2", "pred=769", ("pred=769", "1..768")),
    ("segformer_b2", "linear0=65", ("linear0=65", "1..64")),
    ("segformer_b2", "blocks=3-4-6", ("3-4-6",)),
    ("segformer_b2", "fuse=abc", ("abc",)),
    ("segformer_b2", "heads=2", ("heads", "blocks, fuse, pred, linear0")),
    ("segformer_b2", "fuse=1,fuse=2", ("twice",)),
    ("segformer_b2", "B2_z", ("B2_z", "B2_a", "B2_f", "of the parameters blocks, fuse, pred, linear0")),
    ("segformer_b1", "B2_a", ("B2_a", "full", "of the parameters blocks, fuse, pred, linear0")),
    ("swin_tiny", "fpn=2049", ("fpn=2049", "1..2048")),
    ("swin_small", "blocks=2-2-19-2", ("blocks[2]=19", "1..18")),
    ("swin_tiny", "fast", ("fast", "of the parameters blocks, fpn")),
    ("ofa_resnet50", "MAC9B", ("MAC9B", "MAC4.1B", "of the parameters d, e, w")),
    ("segformer_b2", "fuse512_blocks2-4-6-3", ("fuse512_blocks2-4-6-3", "short name")),   # keys out of order
    ("segformer_b2", "fuse0", ("fuse0", "short name")),          # canonical_name writes no 0
    ("segformer_b2", "fuse3073", ("fuse=3073", "1..3072")),
    ("segformer_b2", "blocks2-4-6", ("2-4-6", "4 integers")),
])
def test_bad_variants_raise(name, variant, fragments):
    with pytest.raises(ValueError) as err:
        build_model(name, variant)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_other_sizes():
    seg = build_model("segformer_b2", size=(1024, 1024))
    assert_macs_match(seg, {**segformer_reference("segformer_b2_city"),
                            "Conv2DPred": 256 * 256 * 768 * 150})
    assert build_model("swin_tiny", size=(224, 224)).layer("stage0.block0.attn.qkv").tokens == 56 * 56
