"""mapper.fusion: how each layer executes, what a pass computes, and what an epilogue's stores look like."""

import pytest

from hw.config import get_config
from hw.isa import Act, Op, VecOp, make
from hw.timing import epilogue_latency, latency
from hw.vector import NONE, PREV
from mapper.fusion import STAGE_OP, plan
from mapper.ir import (Activation, Add, Constant, Conv2d, Crop, LayerNorm, Linear, MatMul, Model, Pad, Roll, Softmax,
                       WindowPartition)
from mapper.lower import MappingError, map_layer
from mapper.workloads import build_model
from sim.inference import check_network
from sim.simulator import simulate

E = get_config("E")


def _store_channels(insn):
    """Channels each pixel of a STORE receives (all PEs of its set)."""
    f = insn.f
    chans = set()
    for col in range(f["pe_k"]):
        first = f["k_base"] + col * f["k_step"]
        chans.update(k for k in range(first, first + f["k_per_pe"]) if k < f["t_k"])
    return chans


@pytest.mark.parametrize("cfg_name,layer,row", [
    ("tiny", MatMul("qk", "encoder", 3, 20, 16, 8), 8),             # three heads of 8 keys
    ("small", MatMul("qk", "encoder", 2, 30, 8, 16), 16),
    ("E", MatMul("qk", "encoder", 3, 40, 16, 64), 64),
    ("E", Linear("scores", "encoder", 40, 64, 96), 96),
])
def test_epilogue_stores_hold_whole_rows(cfg_name, layer, row):
    cfg = get_config(cfg_name)
    (lowered, _), = map_layer(layer, cfg, softmax_row=row)
    stores = [i for i in lowered.stream if i.op == Op.STORE]
    assert stores and all(s.f["ep_row"] == row for s in stores)
    for s in stores:
        chans = _store_channels(s)
        rows = {k // row for k in chans}
        assert chans == {k for g in rows for k in range(g * row, (g + 1) * row)}, (cfg_name, s.f)
    # each STORE streams its tile once through the epilogue, whose latency it takes on top
    s = stores[0]
    plain = make(Op.STORE, **{**s.f, "ep_row": 0})
    extra = cfg.num_pe + epilogue_latency(cfg)          # the row walk, the epilogue's latency
    assert cfg.dram_latency + s.f["out_h"] * s.f["out_w"] + extra <= latency(s, cfg) <= latency(plain, cfg) + extra
    # and the exponentials are loaded into every PE's table first
    first = lowered.stream[0]
    assert first.op == Op.LOAD_PARAM and first.f["table"] == 1 and first.f["pe_count"] == cfg.num_pe


def test_epilogue_refused_when_rows_cannot_be_whole():
    # 49 keys per window on K0 = 32 with many windows: every pass holds one 32-key block of many
    # windows, never a window's whole row
    with pytest.raises(MappingError, match="whole rows of 49 channels"):
        map_layer(MatMul("win_qk", "encoder", 64, 49, 32, 49), E, softmax_row=49)


def _toy(extra_consumer: bool) -> Model:
    qk = MatMul("qk", "encoder", 1, 64, 32, 64, inputs=("input", "input"))
    sm = Softmax("softmax", "encoder", inputs=("qk",))
    layers = [qk, sm]
    if extra_consumer:
        layers.append(Pad("peek", "encoder", inputs=("qk",), out_h=64, out_w=1))
    add = Add("add", "encoder", inputs=("softmax", "input"))
    norm = LayerNorm("norm", "encoder", inputs=("add",))
    pad = Pad("pad", "encoder", inputs=("norm",), out_h=128, out_w=1)
    fc = Linear("fc", "encoder", 128, 64, 64, inputs=("pad",))
    crop = Crop("crop", "encoder", inputs=("fc",), out_h=64, out_w=1)
    add2 = Add("add2", "encoder", inputs=("add", "crop"))
    return Model("toy", "full", (64, 1, 64), tuple(layers + [add, norm, pad, fc, crop, add2]))


def test_plan_fuses_softmax_and_chains_element_wise_layers():
    steps = {s.layer.name: s for s in plan(_toy(False), E)}
    assert steps["qk"].softmax == "softmax" and steps["qk"].output == "softmax"
    assert steps["softmax"].action == "epilogue"
    # add -> layernorm -> pad is one pass over the padded raster: it reads x and the softmax output,
    # writes the sum (add2 reads it later) through the padding, and the padded layernorm
    vp = steps["add"].vpass
    assert vp.members == ("add", "norm", "pad") and set(vp.writes) == {"add", "pad"}
    assert steps["norm"].action == steps["pad"].action == "merged"
    d = vp.desc
    assert (d.h, d.w, d.c) == (128, 1, 64)
    assert [s.op for s in d.stages] == [VecOp.ADD, VecOp.LAYERNORM]
    assert d.stages[0].out != NONE and d.stages[1].src == PREV
    insn = vp.insn.f
    assert insn["vec_op"] == VecOp.CHAIN
    assert (insn["bytes_in"], insn["bytes_out"]) == (2 * 64 * 64, 64 * 64 + 128 * 64)
    assert insn["work"] == 128 * 64 * (1 + 2)
    # crop + add2: one pass after the MAC layer, the crop its input's pattern
    assert steps["crop"].vpass.members == ("crop", "add2")


def test_plan_keeps_an_output_that_another_layer_reads():
    steps = {s.layer.name: s for s in plan(_toy(True), E)}
    assert steps["qk"].softmax == "" and steps["softmax"].action == "vector"


def test_plan_without_fusion_and_mac_only():
    steps = plan(_toy(False), E, fuse=False)
    assert [s.action for s in steps] == ["mac"] + ["vector"] * 4 + ["mac", "vector", "vector"]
    assert [s.action for s in plan(_toy(False), E, mac_only=True)] == ["mac"] + ["excluded"] * 4 + ["mac"] \
        + ["excluded"] * 2


def test_activation_after_a_mac_layer_is_applied_by_its_stores():
    conv = Conv2d("conv", "encoder", 8, 16, 8, 8, kernel=3, padding=1)
    gelu = Activation("gelu", "encoder", "gelu", inputs=("conv",))
    relu = Activation("relu", "encoder", "relu", inputs=("gelu",))
    steps = {s.layer.name: s for s in plan(Model("a", "full", (8, 8, 8), (conv, gelu, relu)), E)}
    assert steps["conv"].act == Act.TABLE and steps["conv"].output == "gelu"
    assert steps["gelu"].action == "fused" and steps["relu"].action == "vector"


def test_segmentation_output_is_the_class_map():
    model = build_model("segformer_b0", size=(128, 128))
    last = plan(model, E)[-1]
    assert last.layer.name == "resize_logits" and last.vpass.class_map
    assert last.vec.f["vec_op"] == VecOp.RESIZE_ARGMAX and last.vec.f["bytes_out"] == 128 * 128
    # a classifier's output is left alone
    assert all(s.vpass is None or not s.vpass.class_map for s in plan(build_model("resnet50"), E))


def test_fusion_saves_time_and_lists_every_layer():
    model = build_model("segformer_b0", size=(128, 128))
    fused, plain = simulate(model, E), simulate(model, E, fuse=False)
    assert [r.name for r in fused.layers] == [l.name for l in model.layers]
    assert fused.total_cycles < plain.total_cycles
    epilogues = [r for r in fused.layers if r.mapping.startswith("epilogue of")]
    assert any(r.kind == "softmax" for r in epilogues) and all(r.cycles == 0 for r in epilogues)
    # the extra post-processing passes are charged as vector-unit work of the fused layer
    qk = next(r for r in fused.layers if r.name.endswith("attn.qk") and r.mapping.endswith("+softmax"))
    assert qk.events["vec_ops"] > 0


def test_bench_fusion_saving_is_the_difference_of_two_runs():
    """``sim.bench.fusion_saving`` (``make bench``'s figures): each field is the --no-fusion run's
    figure minus the fused run's, as the two simulations give them; fusion moves fewer DRAM bytes
    and the DRAM energy saved is those bytes at the energy model's cost of a DRAM byte."""
    from sim.bench import PAPER, figures, fusion_saving
    from sim.energy import EnergyModel
    from sim.simulator import DRAM_EVENTS
    model, cfg = build_model("segformer_b0", size=(32, 32)), get_config("small")
    fused, plain = simulate(model, cfg), simulate(model, cfg, fuse=False)
    paper = PAPER["segformer_b2"]           # figures() needs the paper's largest layer, which B0 has too
    saved = fusion_saving(figures(fused, paper), figures(plain, paper))

    def dram(res):
        return sum(r.events.get(k, 0) for r in res.layers for k in DRAM_EVENTS)

    assert saved["dram_bytes"] == dram(plain) - dram(fused) > 0
    assert saved["total_cycles"] == plain.total_cycles - fused.total_cycles > 0
    assert saved["time_ms"] == pytest.approx(plain.time_ms - fused.time_ms)
    assert saved["energy_uj"] == pytest.approx(plain.energy_uj - fused.energy_uj)
    cost = EnergyModel(cfg).costs
    assert cost["dram_read_bytes"] == cost["dram_write_bytes"]
    assert saved["energy_dram_uj"] == pytest.approx(saved["dram_bytes"] * cost["dram_read_bytes"] * 1e-6)

def test_swin_window_attention_passes():
    steps = plan(build_model("swin_tiny", size=(224, 224)), E)
    passes = {m: s.vpass for s in steps if s.vpass is not None for m in s.vpass.members}
    # add2 -> next norm1 -> roll -> window partition: one pass; the roll is the pattern
    vp = passes["stage0.block1.attn.partition"]
    assert vp.members == ("stage0.block0.add2", "stage0.block1.norm1", "stage0.block1.attn.shift",
                          "stage0.block1.attn.partition")
    assert [s.op for s in vp.desc.stages] == [VecOp.ADD, VecOp.LAYERNORM]
    assert set(vp.writes) == {"stage0.block0.add2", "stage0.block1.attn.partition"}
    # window reverse -> unshift -> add -> layernorm: the reverse and the roll are the input's pattern
    vp = passes["stage0.block1.attn.reverse"]
    assert vp.members[-2:] == ("stage0.block1.add1", "stage0.block1.norm2")
    assert [s.op for s in vp.desc.stages][:2] == [VecOp.ADD, VecOp.LAYERNORM]


def test_table_says_where_a_fused_layer_went():
    from sim.run import build_report, format_table
    model = build_model("segformer_b0", size=(64, 64))
    table = format_table(build_report(simulate(model, E), "E"))
    row = next(line for line in table.splitlines() if line.startswith("stage0.block0.attn.softmax "))
    assert row.endswith("epilogue of stage0.block0.attn.qk")


def test_rows_longer_than_the_vector_unit_holds_are_refused_when_planning():
    from hw import operators as ops
    from mapper.ir import Linear, Model, Softmax
    from mapper.lower import MappingError

    n = ops.MAX_ROW + 1
    model = Model("long_rows", "full", (1, 1, 3), (Linear("fc", "encoder", 1, 3, n),
                                                 Softmax("sm", "encoder", inputs=("fc",))))
    with pytest.raises(MappingError, match=f"sm: a softmax row of {n} elements.*at most {ops.MAX_ROW}"):
        plan(model, get_config("E"))


def test_a_pass_whose_fields_do_not_fit_the_descriptor_is_refused_when_planning():
    """A 300x300 pooling window: the pooling stage's kernel field holds 255 at most, so the pass is
    refused when it is planned (timing too), as the program would refuse to encode it."""
    from mapper.ir import Pool

    model = Model("big_window", "full", (300, 300, 3), (
        Conv2d("c", "backbone", 3, 4, 300, 300, inputs=("input",)),
        Pool("p", "backbone", ("c",), "max", kernel=300, stride=300)))
    with pytest.raises(MappingError, match=r"p \(.*\): a vector pass of p: .*kernel = 300 does not fit 8 unsigned bits"):
        simulate(model, get_config("E"))
def _pad_then_compute(shape: str) -> Model:
    """A zero padding whose zeros a computation takes as inputs: ``minimal`` is Linear -> Pad ->
    Add(Constant), ``roll`` puts a Roll between, ``class_token`` is a ViT's class token as the ONNX
    import builds it (patches as 16 x 1 tokens, a zero row after them, rolled first, plus the token,
    then the first block's layernorm and a linear)."""
    c = 8
    if shape == "class_token":
        layers = [Conv2d("patch", "backbone", 3, c, 16, 16, kernel=4, stride=4),
                  WindowPartition("tokens", "backbone", inputs=("patch",), window=4)]
        image = (16, 16, 3)
    else:
        layers = [Linear("tokens", "backbone", 16, 3, c)]
        image = (16, 1, 3)
    layers.append(Pad("pad", "backbone", inputs=("tokens",), out_h=17, out_w=1))
    if shape != "minimal":
        layers.append(Roll("roll", "backbone", inputs=("pad",), shift=-1))
    layers += [Constant("cls", "backbone", (17, 1, c)), Add("add", "backbone", inputs=(layers[-1].name, "cls"))]
    if shape == "class_token":
        layers += [LayerNorm("norm", "backbone", inputs=("add",)),
                   Linear("fc", "backbone", 17, c, c, inputs=("norm",))]
    return Model(shape, "full", image, tuple(layers))


@pytest.mark.parametrize("shape", ["minimal", "roll", "class_token"])
def test_a_pass_never_starts_with_padding_it_would_not_compute(shape):
    """The padded rows are the computation's inputs: a pass whose source pattern pads them would write
    zeros there (a pixel that is padding in the source stays padding through the pass)."""
    model = _pad_then_compute(shape)
    tiny = get_config("tiny")
    for step in plan(model, tiny):
        members = [model.layer(m).kind for m in step.vpass.members] if step.vpass else []
        if "pad" in members:
            assert not set(members) & set(STAGE_OP), members           # padding and layouts only
    for fuse in (True, False):
        check_network(model, tiny, seed=0, fuse=fuse)       # CheckError names the first difference


def test_a_chain_longer_than_a_descriptor_holds_runs_as_two_passes():
    """Five element-wise layers with a constant each: a pass holds at most MAX_STAGES stages, so
    the planner ends the first pass where the descriptor would refuse the next member (it once
    let the descriptor's StreamError through, a traceback from make sim)."""
    from hw.vector import MAX_STAGES
    from mapper.ir import Mul

    c, layers = 8, [Conv2d("conv", "backbone", 3, 8, 8, 8, kernel=1)]
    for i in range(MAX_STAGES + 1):
        kind = Mul if i % 2 == 0 else Add
        layers += [Constant(f"k{i}", "backbone", (1, 1, c)), kind(f"op{i}", "backbone", inputs=(layers[-1].name, f"k{i}"))]
    model = Model("ew_chain", "full", (8, 8, 3), tuple(layers))
    tiny = get_config("tiny")
    steps = plan(model, tiny)
    passes = [s.vpass.members for s in steps if s.action == "vector"]
    assert len(passes) == 2 and sum(map(len, passes)) == MAX_STAGES + 1
    check_network(model, tiny, seed=0)


def _broadcast_model(case: str) -> Model:
    """A narrow tensor (``n`` channels) meeting a wide one (8) in an add or a product, the narrow
    one first: alone, after a pointwise stage of its own, and growing the channels along a chain."""
    from mapper.ir import Mul

    n = {"alone": 2, "after_sigmoid": 1, "growing": 1, "before_norm": 2}[case]
    layers = [Conv2d("wide", "backbone", 3, 8, 4, 4, kernel=1), Conv2d("narrow", "backbone", 3, n, 4, 4, kernel=1)]
    if case == "alone":
        layers.append(Mul("out", "backbone", inputs=("narrow", "wide")))
    elif case == "after_sigmoid":         # a gate: sigmoid of one channel times the features (DETR's, SE's)
        layers += [Activation("gate", "backbone", "sigmoid", inputs=("narrow",)),
                   Mul("out", "backbone", inputs=("gate", "wide"))]
    elif case == "growing":               # a stage over one channel, then one over eight
        layers += [Constant("k", "backbone", (1, 1, 1)), Mul("scaled", "backbone", inputs=("narrow", "k")),
                   Add("out", "backbone", inputs=("scaled", "wide"))]
    else:                                 # a layernorm over two channels cannot run repeated over eight
        layers += [LayerNorm("norm", "backbone", inputs=("narrow",)), Add("out", "backbone", inputs=("norm", "wide"))]
    return Model(f"broadcast_{case}", "full", (4, 4, 3), tuple(layers))


@pytest.mark.parametrize("case", ["alone", "after_sigmoid", "growing", "before_norm"])
def test_a_narrow_first_operand_repeats_its_channels(case):
    """Every stage of a pass runs over the pass's channels, so a narrower source or running result
    is read repeating its channels, as a narrower second operand is (it once read zeros past its
    channels: DAB-DETR's ``hw_modulate``, an ONNX Mul of a sigmoid gate times the features); a row
    stage over fewer channels ends the pass before the broadcast."""
    model = _broadcast_model(case)
    tiny = get_config("tiny")
    for step in plan(model, tiny):
        if step.action == "vector" and "norm" in step.vpass.members:
            assert "out" not in step.vpass.members
    for fuse in (True, False):
        check_network(model, tiny, seed=1, fuse=fuse)       # CheckError names the first difference
