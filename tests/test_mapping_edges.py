"""Layers at the edges of the ISA's fields and the buffers: mapped, bit-exact, timed as they execute."""

import numpy as np
import pytest

from hw.config import get_config
from hw.isa import Op
from hw.timing import load_inp_dram_bytes, schedule
from mapper.ir import Constant, Conv2d, Linear, MatMul, Model, PatchMerge, Pool, min_dram_bytes
from mapper.lower import MappingError, map_layer, refuse_beyond_isa
from mapper.program import build_program
from mapper.quantize import random_qmodel
from sim.events import count_events
from sim.functional import check_program
from sim.simulator import simulate

CASES = {
    # a prime token count above 4095 has no image shape within the fields: bands of rows
    "prime_tokens": Model("p", "full", (4099, 1, 16), (Linear("fc", "encoder", 4099, 16, 8),)),
    "rectangular_kernels": Model("r", "full", (12, 14, 8), (
        Conv2d("c", "encoder", 8, 16, 12, 14, kernel=(1, 7)),
        Conv2d("c2", "encoder", 16, 8, 12, 8, kernel=(3, 1), padding=1, inputs=("c",)))),
    # ViT-B/16's patch embedding: a 16x16 kernel of stride 16
    "kernel_16_stride_16": Model("b", "full", (64, 64, 3), (Conv2d("c", "encoder", 3, 16, 64, 64, kernel=16,
                                                                     stride=16),)),
    "more_than_4095_rows": Model("t", "full", (4200, 3, 4), (Conv2d("c", "encoder", 4, 8, 4200, 3, kernel=3,
                                                                      padding=1),)),
    "depthwise_9x9": Model("d", "full", (20, 20, 8), (Conv2d("c", "encoder", 8, 8, 20, 20, kernel=9, padding=4,
                                                              groups=8),)),
    "prime_rows_product": Model("m", "full", (4111, 1, 8), (
        Constant("keys", "encoder", (24, 1, 8)), MatMul("qk", "encoder", 2, 4111, 4, 24, inputs=("input", "keys")))),
    # windowed scores of 6 keys: two output blocks of K0 = 4 per group on tiny and small (whole-groups passes)
    "window_scores_6": Model("w", "full", (12, 4, 16), (
        Constant("keys", "encoder", (6, 4, 16)), MatMul("qk", "encoder", 8, 12, 8, 6, inputs=("input", "keys"),
                                                        windows=4))),
}

#: Swin's window scores on E: 49 keys, a block of 32 and one of 17 per (window, head).
SWIN_SCORES = Model("s", "full", (49, 8, 96), (
    Constant("keys", "encoder", (49, 8, 96)), MatMul("qk", "encoder", 24, 49, 32, 49, inputs=("input", "keys"),
                                                     windows=8)))


@pytest.mark.parametrize("cfg_name", ["tiny", "small", "E"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_edge_layers_map_and_run(case, cfg_name):
    model, cfg = CASES[case], get_config(cfg_name)
    q = random_qmodel(model, 1)
    x = np.random.default_rng(0).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, cfg, image=x)
    assert check_program(program, q, x)["tensors"] == len(model.mac_layers)
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("h, w", [(1, 5), (5, 1), (1, 1)])
def test_patch_merge_of_a_one_pixel_side_reads_padding(h, w, cfg_name):
    """Swin's patch merge of a side of one pixel (swin_tiny at 8x8 and below): its odd rows (or
    columns) are all padding, an axis with no valid position, not one whose every position is valid
    (which read the bytes past the input: refused as overlapping the output, or wrong values)."""
    model = Model("pm", "full", (h, w, 8), (Conv2d("c", "encoder", 8, 8, h, w, kernel=1),
                                            PatchMerge("m", "encoder", inputs=("c",))))
    q = random_qmodel(model, 1)
    x = np.random.default_rng(0).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, get_config(cfg_name), image=x)
    assert check_program(program, q, x)["tensors"] == 2


@pytest.mark.parametrize("cfg_name", ["tiny", "E"])
@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (2, 1)])
@pytest.mark.parametrize("mode, kernel, padding, count_include_pad", [
    ("avg", 2, 0, True),                    # OFA-ResNet's downsample AvgPool2d(2, 2, ceil_mode=True)
    ("avg", 4, 1, True), ("avg", 4, 1, False), ("max", 3, 0, True)])
def test_a_ceil_mode_window_longer_than_its_input_maps(h, w, mode, kernel, padding, count_include_pad, cfg_name):
    """A ``ceil_mode`` pooling window up to ``stride - 1`` longer than the padded input is one window,
    as PyTorch has it (ofa_resnet50 at 16x16 and below: a 1-pixel side before its downsample
    AvgPool 2x2 stride 2), mapped onto the spatial unit and bit-exact, then a 1x1 convolution."""
    pool = Pool("p", "encoder", ("c",), mode, kernel=kernel, stride=kernel, padding=padding, ceil_mode=True,
                count_include_pad=count_include_pad)
    oh, ow = pool.window_out(h), pool.window_out(w)
    model = Model("od", "full", (h, w, 8), (Conv2d("c", "encoder", 8, 8, h, w, kernel=1), pool,
                                            Conv2d("d", "encoder", 8, 8, oh, ow, kernel=1, inputs=("p",))))
    q = random_qmodel(model, 1)
    x = np.random.default_rng(0).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, get_config(cfg_name), image=x)
    assert check_program(program, q, x)["tensors"] == 3


def test_a_layer_that_cannot_fit_names_the_buffer():
    huge = Conv2d("huge", "encoder", 1, 1, 99, 99, kernel=99, groups=1)
    with pytest.raises(MappingError, match=r"huge: .*(buffer|fold_kh = 99 does not fit)"):
        map_layer(huge, get_config("tiny"))


@pytest.mark.parametrize("model, cfg_name", [(SWIN_SCORES, "E"), (CASES["window_scores_6"], "small")])
def test_partial_output_blocks_read_each_operand_once(model, cfg_name):
    """Groups whose outputs end in a partial block of K0 (49 scores: 32 + 17) are mapped with
    every block of a group in one pass, so each operand crosses DRAM once (``mapper.ir.min_dram_bytes``),
    not once per output block; bit-exact, and timed as it executes."""
    cfg, layer = get_config(cfg_name), model.layers[-1]
    [(lowered, repeat)] = map_layer(layer, cfg)
    assert lowered.tiling.whole_groups and repeat == 1
    dram = {op: sum(load_inp_dram_bytes(i, cfg) if op == Op.LOAD_INP else count_events(i, cfg)["dram_read_bytes"]
                    for i in lowered.stream if i.op == op) for op in (Op.LOAD_INP, Op.LOAD_WGT)}
    assert dram[Op.LOAD_INP] == layer.batch * layer.m * layer.k
    assert dram[Op.LOAD_WGT] == layer.batch * layer.n * layer.k
    assert dram[Op.LOAD_INP] + dram[Op.LOAD_WGT] == min_dram_bytes(layer)[0]
    q = random_qmodel(model, 1)
    x = np.random.default_rng(1).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, cfg, image=x)
    assert check_program(program, q, x)["tensors"] == 1
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


def test_a_part_is_bounded_to_its_channels_while_the_bound_names_them():
    """A convolution reading a concatenation part (its input gapped: the whole's pitch) bounds its
    loads to the part's channels (LOAD_INP ``chan``) when whole C0 blocks would reach past them; a
    part of whole blocks, or a tensor stored alone, needs none; a part beyond ``chan``'s 14 bits
    whose blocks reach past it is refused, naming its channels."""
    from mapper.lower import MAX_CHANNEL_BOUND, channel_bound, problem_of
    cfg = get_config("small")

    def bound(c: int, pitch: int) -> int:
        return channel_bound(problem_of(Conv2d("c", "encoder", c, 8, 4, 4, kernel=3, padding=1), cfg, pitch), cfg.c0)

    assert (bound(6, 16), bound(6, 0), bound(6, 6), bound(2 * cfg.c0, 40)) == (6, 0, 0, 0)
    assert bound(MAX_CHANNEL_BOUND, MAX_CHANNEL_BOUND + 9) == MAX_CHANNEL_BOUND
    assert bound(cfg.c0 * (MAX_CHANNEL_BOUND // cfg.c0 + 1), 1 << 15) == 0
    with pytest.raises(MappingError, match=f"an input of {MAX_CHANNEL_BOUND + 2} channels"):
        bound(MAX_CHANNEL_BOUND + 2, MAX_CHANNEL_BOUND + 9)


def test_a_1d_convolution_neither_form_maps_names_both_reasons():
    """A row of 1 x 200,000 pixels is beyond LOAD_INP's columns, and as a column beyond its rows:
    the refusal gives both forms' reasons (it gave the row's alone, as if the column were not tried)."""
    row = Conv2d("c1d", "encoder", 8, 8, 1, 200_000, kernel=(1, 3), padding=(0, 1, 0, 1))
    with pytest.raises(MappingError) as info:
        map_layer(row, get_config("E"))
    text = str(info.value)
    assert text.startswith("c1d: 200000 input columns") and "LOAD_INP.t_w" in text
    assert "nor as the same convolution of 200000x1 pixels by 3x1: 200000 input rows" in text and "LOAD_INP.t_h" in text
    with pytest.raises(MappingError) as before:         # refused alike before anything is mapped
        refuse_beyond_isa([row], get_config("E"))
    assert str(before.value) == text
