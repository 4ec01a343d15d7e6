"""mapper.fusion: which non-MAC layers are fused, and what a fused row epilogue's stores look like."""

import pytest

from hw.config import get_config
from hw.isa import Op, VecOp
from hw.timing import latency, store_bytes
from mapper.fusion import plan
from mapper.ir import Add, Conv2d, Crop, LayerNorm, Linear, MatMul, Model, Pad, Softmax
from mapper.lower import MappingError, map_layer
from mapper.workloads import build_model
from sim.simulator import simulate

E = get_config("E")


def _store_channels(insn, cfg):
    """Channels each pixel of a STORE receives (all PEs of its set)."""
    f = insn.f
    chans = set()
    for col in range(f["pe_k"]):
        first = f["k_base"] + col * f["k_step"]
        chans.update(k for k in range(first, first + f["k_per_pe"]) if k < f["t_k"])
    return chans


@pytest.mark.parametrize("cfg_name,layer,kg", [
    ("tiny", MatMul("qk", "encoder", 3, 20, 16, 8), 8),             # three heads of 8 keys
    ("tiny", Conv2d("embed", "encoder", 3, 8, 9, 9, kernel=3, padding=1), 8),
    ("small", MatMul("qk", "encoder", 2, 30, 8, 16), 16),
    ("E", MatMul("qk", "encoder", 3, 40, 16, 64), 64),
    ("E", Conv2d("embed", "encoder", 8, 96, 20, 20, kernel=3, padding=1), 96),
])
def test_epilogue_stores_hold_whole_rows(cfg_name, layer, kg):
    cfg = get_config(cfg_name)
    (lowered, _), = map_layer(layer, cfg, post_passes=2)
    stores = [i for i in lowered.stream if i.op == Op.STORE]
    assert stores and all(s.f["post_passes"] == 2 for s in stores)
    for s in stores:
        chans = _store_channels(s, cfg)
        groups = {k // kg for k in chans}
        assert chans == {k for g in groups for k in range(g * kg, (g + 1) * kg)}, (cfg_name, s.f)
    # and each STORE takes the extra passes: the post-processing unit streams the tile three times
    s = stores[0]
    pixels = s.f["out_h"] * s.f["out_w"]
    assert latency(s, cfg) >= cfg.dram_latency + 3 * pixels
    plain = map_layer(layer, cfg)[0][0]
    assert lowered.cycles >= plain.cycles


def test_epilogue_refused_when_rows_cannot_be_whole():
    # 49 keys per window on K0 = 32 with many windows: every pass holds one 32-key block of many
    # windows, never a window's whole row
    with pytest.raises(MappingError, match="whole rows of 49 channels"):
        map_layer(MatMul("win_qk", "encoder", 64, 49, 32, 49), E, post_passes=2)


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
    e = 64 * 64
    steps = {s.layer.name: s for s in plan(_toy(False), E)}
    assert steps["qk"].post_passes == 2 and steps["qk"].epilogue == "softmax"
    assert steps["softmax"].action == "epilogue"
    # add -> layernorm -> pad is one pass: it reads x and the softmax output (the add's inputs),
    # writes the sum (add2 reads it later) and the padded layernorm, and does every member's work
    chain = steps["add"].vec.f
    assert chain["vec_op"] == VecOp.CHAIN
    assert (chain["bytes_in"], chain["bytes_out"]) == (2 * e, e + 2 * e)
    assert chain["elements"] == e * 1 + e * 3 + 2 * e * 1
    assert steps["norm"].action == steps["pad"].action == "merged"
    assert steps["crop"].vec.f["vec_op"] == VecOp.CHAIN      # crop + add2: one pass after the MAC layer


def test_plan_keeps_an_output_that_another_layer_reads():
    steps = {s.layer.name: s for s in plan(_toy(True), E)}
    assert steps["qk"].post_passes == 0 and steps["softmax"].action == "vector"


def test_plan_without_fusion_and_mac_only():
    steps = plan(_toy(False), E, fuse=False)
    assert [s.action for s in steps] == ["mac"] + ["vector"] * 4 + ["mac", "vector", "vector"]
    assert [s.action for s in plan(_toy(False), E, mac_only=True)] == ["mac"] + ["excluded"] * 4 + ["mac"] + ["excluded"] * 2


def test_segmentation_output_is_the_class_map():
    model = build_model("segformer_b0", size=(128, 128))
    last = plan(model, E)[-1]
    assert last.layer.name == "resize_logits"
    assert last.vec.f["vec_op"] == VecOp.RESIZE_ARGMAX and last.vec.f["bytes_out"] == 128 * 128
    # a classifier's output is left alone
    assert all(s.vec is None or s.vec.f["vec_op"] != VecOp.RESIZE_ARGMAX for s in plan(build_model("resnet50"), E))


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


def test_layernorm_is_fused_only_into_an_ungrouped_layer():
    # a grouped convolution's STOREs may hold one group's channels only: its layernorm stays a VEC
    conv = Conv2d("gconv", "encoder", 64, 64, 16, 16, kernel=3, padding=1, groups=2)
    norm = LayerNorm("norm", "encoder", inputs=("gconv",))
    steps = plan(Model("g", "full", (16, 16, 64), (conv, norm)), E)
    assert [s.action for s in steps] == ["mac", "vector"]
    dense = Conv2d("conv", "encoder", 64, 64, 16, 16, kernel=3, padding=1)
    norm = LayerNorm("norm", "encoder", inputs=("conv",))
    steps = plan(Model("d", "full", (16, 16, 64), (dense, norm)), E)
    assert [s.action for s in steps] == ["mac", "epilogue"]


def test_dumped_stream_and_functional_check_use_the_timed_mapping(monkeypatch):
    import sim.functional
    from sim.run import layer_stream
    model = build_model("segformer_b0", size=(64, 64))
    small = get_config("small")
    stores = lambda stream: {i.f["post_passes"] for i in stream if i.op == Op.STORE}
    assert stores(layer_stream(model, "stage0.block0.attn.qk", small)) == {2}
    assert stores(layer_stream(model, "stage0.block0.attn.qk", small, mac_only=True)) == {0}
    assert stores(layer_stream(model, "stage0.block0.attn.qk", small, fuse=False)) == {0}
    assert layer_stream(model, "stage0.block0.attn.softmax", small, mac_only=True)[0].op == Op.END
    seen = {}
    monkeypatch.setattr(sim.functional, "check_layer",
                        lambda layer, cfg, seed, post_passes=0: seen.setdefault(layer.name, post_passes) and 0)
    sim.functional.check_model(model, small, seed=0)
    assert seen["stage0.block0.attn.qk"] == 2 and seen["stage0.block0.attn.q"] == 0


def test_table_says_where_a_fused_layer_went():
    from sim.run import build_report, format_table
    model = build_model("segformer_b0", size=(64, 64))
    table = format_table(build_report(simulate(model, E), "E"))
    row = next(line for line in table.splitlines() if line.startswith("stage0.block0.attn.softmax "))
    assert row.endswith("epilogue of stage0.block0.attn.qk")
