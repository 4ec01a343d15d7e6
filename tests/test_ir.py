"""mapper.ir: shapes are inferred at construction and a model whose shapes do not chain is refused."""

from __future__ import annotations

import pytest

from mapper.ir import (Add, Concat, Constant, Conv2d, ChannelShuffle, Crop, DepthToSpace, LayerNorm, Linear, MatMul, Model, Pad, PatchMerge,
                       PixelReshape, Pool, Resize, Roll, ShapeError, Softmax, SpaceToDepth, WindowPartition, WindowReverse, min_dram_bytes)
from mapper.workloads import MODEL_NAMES, build_model


def test_a_linear_that_does_not_match_its_producer_is_refused_naming_both_shapes():
    conv = Conv2d("conv", "encoder", 3, 16, 224, 224, kernel=3, padding=1)
    bad = Linear("fc", "encoder", tokens=5, in_features=999, out_features=10, inputs=("conv",))
    with pytest.raises(ShapeError, match=r"fc: input 'conv' has shape 224x224x16, but the layer needs 5 tokens "
                                         r"of at least 999 channels"):
        Model("m", "full", (224, 224, 3), (conv, bad))


def test_a_convolution_on_the_wrong_image_is_refused():
    with pytest.raises(ShapeError, match=r"input 'input' has shape 32x32x3, but the layer needs 64x64x3"):
        Model("m", "full", (32, 32, 3), (Conv2d("c", "encoder", 3, 8, 64, 64),))


def test_unknown_producer_and_reserved_name():
    with pytest.raises(ValueError, match="reads 'nope', which no earlier layer produces"):
        Model("m", "full", (8, 8, 4), (LayerNorm("n", "encoder", inputs=("nope",)),))
    with pytest.raises(ValueError, match="may be called 'input'"):
        Model("m", "full", (8, 8, 4), (LayerNorm("input", "encoder", inputs=()),))


def test_shapes_propagate_through_token_and_spatial_layers():
    layers = (
        Linear("fc1", "encoder", 64, 4, 32),                              # 8x8 image of 4 channels
        Conv2d("dw", "encoder", 32, 32, 8, 8, kernel=3, padding=1, groups=32, inputs=("fc1",)),
        Pool("pool", "encoder", inputs=("dw",), mode="max", kernel=3, stride=2, padding=1),
        Resize("up", "encoder", inputs=("pool",), out_h=8, out_w=8),
        Concat("cat", "encoder", inputs=("up", "fc1")),
        Softmax("sm", "encoder", inputs=("cat",), row=16),
        PatchMerge("merge", "encoder", inputs=("sm",)),
    )
    m = Model("m", "full", (8, 8, 4), layers)
    assert [l.out_shape for l in m.layers] == [(8, 8, 32), (8, 8, 32), (4, 4, 32), (8, 8, 32), (8, 8, 64),
                                              (8, 8, 64), (4, 4, 256)]
    assert m.layer("cat").in_shapes == ((8, 8, 32), (8, 8, 32))
    assert m.output_names == ("merge",)


def test_a_concatenation_of_pixels_stacks_rows_or_one_column_of_tokens():
    """Inputs of equal widths give an image of their rows; of other widths, their pixels in one
    column; channels that differ, or an unknown axis, are refused."""
    import numpy as np

    from mapper.views import concat

    def model(*convs):
        layers = tuple(Conv2d(n, "encoder", 3, c, 8, 8, stride=s) for n, c, s in convs)
        return Model("m", "full", (8, 8, 3), layers + (Concat("cat", "encoder", inputs=("a", "b"), along="pixels"),))

    assert model(("a", 4, 2), ("b", 4, 2)).layer("cat").out_shape == (8, 4, 4)
    assert model(("a", 4, 2), ("b", 4, 4)).layer("cat").out_shape == (20, 1, 4)
    x, y = np.arange(4 * 4 * 4).reshape(4, 4, 4), 100 + np.arange(2 * 2 * 4).reshape(2, 2, 4)
    assert np.array_equal(concat([x, y], "pixels", (20, 1, 4)).ravel(), np.concatenate([x.ravel(), y.ravel()]))
    with pytest.raises(ShapeError, match=r"input 'b' has shape 2x2x8, but the layer needs 4 channels like 'a'"):
        model(("a", 4, 2), ("b", 8, 4))
    with pytest.raises(ValueError, match="along must be channels or pixels, not 'rows'"):
        Concat("cat", "encoder", inputs=("a", "b"), along="rows")


def test_depth_to_space_moves_channel_blocks_to_pixels_and_checks_its_input():
    """``DepthToSpace``: ``(y*b + i, x*b + j, c)`` is channel ``(i*b + j)*C + c`` of ``(y, x)``, by the
    definition, element by element; channels that are no multiple of b*b are refused."""
    import numpy as np

    from mapper.views import depth_to_space
    x = np.arange(3 * 2 * 18).reshape(3, 2, 18)
    y = depth_to_space(x, 3)
    assert y.shape == (9, 6, 2)
    assert all(y[yy * 3 + i, xx * 3 + j, c] == x[yy, xx, (i * 3 + j) * 2 + c]
               for yy in range(3) for xx in range(2) for i in range(3) for j in range(3) for c in range(2))
    conv = Conv2d("conv", "encoder", 3, 12, 4, 4)
    assert Model("m", "full", (4, 4, 3), (conv, DepthToSpace("d", "encoder", inputs=("conv",)))).layer("d").out_shape == (8, 8, 3)
    with pytest.raises(ShapeError, match=r"d: input 'conv' has shape 4x4x12, but the layer needs channels a multiple of 9"):
        Model("m", "full", (4, 4, 3), (conv, DepthToSpace("d", "encoder", inputs=("conv",), block=3)))


def test_space_to_depth_is_depth_to_space_undone_and_checks_its_input():
    """``SpaceToDepth``: channel ``(i*b + j)*C + c`` of ``(y, x)`` is ``(y*b + i, x*b + j, c)``, element by
    element, and ``depth_to_space`` undoes it; sides that are no multiple of the block are refused."""
    import numpy as np

    from mapper.views import depth_to_space, space_to_depth
    x = np.arange(9 * 6 * 2).reshape(9, 6, 2)
    y = space_to_depth(x, 3)
    assert y.shape == (3, 2, 18) and np.array_equal(depth_to_space(y, 3), x)
    assert all(y[yy, xx, (i * 3 + j) * 2 + c] == x[yy * 3 + i, xx * 3 + j, c]
               for yy in range(3) for xx in range(2) for i in range(3) for j in range(3) for c in range(2))
    conv = Conv2d("conv", "encoder", 3, 5, 6, 4)
    assert Model("m", "full", (6, 4, 3), (conv, SpaceToDepth("s", "encoder", inputs=("conv",)))).layer("s").out_shape == (3, 2, 20)
    with pytest.raises(ShapeError, match=r"s: input 'conv' has shape 6x4x5, but the layer needs sides that are multiples of the block 3"):
        Model("m", "full", (6, 4, 3), (conv, SpaceToDepth("s", "encoder", inputs=("conv",), block=3)))


def test_channel_shuffle_follows_its_definition_and_checks_its_input():
    import numpy as np

    from mapper.views import channel_shuffle
    x = np.arange(2 * 3 * 12).reshape(2, 3, 12)
    y = channel_shuffle(x, 3)
    assert all(y[0, 0, j] == x[0, 0, (j % 3) * 4 + j // 3] for j in range(12))
    conv = Conv2d("conv", "encoder", 3, 12, 4, 4)
    with pytest.raises(ShapeError, match=r"s: input 'conv' has shape 4x4x12, but the layer needs channels a multiple of 5"):
        Model("m", "full", (4, 4, 3), (conv, ChannelShuffle("s", "encoder", inputs=("conv",), groups=5)))


def test_a_pixel_reshape_takes_consecutive_pixels_and_checks_it_has_them():
    import numpy as np

    from mapper.views import pixel_reshape
    x = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    assert np.array_equal(pixel_reshape(x, 2, 4, start=3), x.reshape(12, 2)[3:11].reshape(2, 4, 2))
    conv = Conv2d("conv", "encoder", 3, 2, 4, 3, kernel=1)
    model = Model("m", "full", (4, 3, 3), (conv, PixelReshape("r", "encoder", inputs=("conv",), out_h=1, out_w=12)))
    assert model.layers[-1].out_shape == (1, 12, 2)
    with pytest.raises(ShapeError, match=r"r: input 'conv' has shape 4x3x2, but the layer needs at least 13 pixels"):
        Model("m", "full", (4, 3, 3), (conv, PixelReshape("r", "encoder", inputs=("conv",), out_h=3, out_w=4, start=1)))
    with pytest.raises(ValueError, match="start must be an integer of at least 0, not -1"):
        PixelReshape("r", "encoder", inputs=("conv",), out_h=3, out_w=4, start=-1)


def test_window_attention_shapes():
    layers = (
        Pad("pad", "encoder", inputs=("input",), out_h=14, out_w=14),
        Roll("shift", "encoder", inputs=("pad",), shift=3),
        WindowPartition("part", "encoder", inputs=("shift",), window=7),
        Linear("qkv", "encoder", 196, 8, 24, inputs=("part",)),
        MatMul("qk", "encoder", 4 * 2, 49, 4, 49, inputs=("qkv", "qkv"), windows=4, b_offset=8),
        Constant("bias.table", "encoder", (49, 1, 2 * 49)),
        Add("bias", "encoder", inputs=("qk", "bias.table")),
        Constant("mask.table", "encoder", (49, 4, 49)),
        Add("mask", "encoder", inputs=("bias", "mask.table")),
        Softmax("sm", "encoder", inputs=("mask",), row=49),
        MatMul("av", "encoder", 8, 49, 49, 4, inputs=("sm", "qkv"), windows=4, b_offset=16, b_layout="kn"),
        WindowReverse("rev", "encoder", inputs=("av",), out_h=14, out_w=14),
        Roll("unshift", "encoder", inputs=("rev",), shift=-3),
        Crop("crop", "encoder", inputs=("unshift",), out_h=12, out_w=13),
    )
    m = Model("m", "full", (12, 13, 8), layers)
    assert m.layer("part").out_shape == (49, 4, 8)
    assert m.layer("qk").out_shape == (49, 4, 98)
    assert m.layer("av").out_shape == (49, 4, 8)
    assert m.layer("crop").out_shape == (12, 13, 8)


def test_operands_of_a_product_are_checked():
    q = Linear("q", "encoder", 16, 8, 8)
    with pytest.raises(ShapeError, match=r"operand b 'q' has shape 4x4x8, but the layer needs 16 tokens with "
                                         r"channels 8..15"):
        Model("m", "full", (4, 4, 8), (q, MatMul("qk", "encoder", 2, 16, 4, 16, inputs=("q", "q"), b_offset=8)))


def test_broadcast_rules():
    ok = (Constant("c", "encoder", (1, 4, 3)), Add("a", "encoder", inputs=("input", "c")))
    assert Model("m", "full", (5, 4, 6), ok).layer("a").out_shape == (5, 4, 6)
    bad = (Constant("c", "encoder", (1, 4, 4)), Add("a", "encoder", inputs=("input", "c")))
    with pytest.raises(ShapeError, match="does not broadcast"):
        Model("m", "full", (5, 4, 6), bad)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_zoo_model_chains(name):
    model = build_model(name)
    assert all(layer.out_shape for layer in model.layers)
    assert model.output_names


def test_padding_that_differs_between_sides():
    """(top, left, bottom, right): windows start at the top and left padding; the bottom and right
    padding count only in the output's size.  Equal sides become one int, so equal layers compare equal."""
    c = Conv2d("c", "encoder", 3, 8, 13, 12, kernel=(1, 5), stride=2, padding=(0, 2, 1, 1))
    assert (c.out_h, c.out_w) == ((13 + 0 + 1 - 1) // 2 + 1, (12 + 2 + 1 - 5) // 2 + 1) == (7, 6)
    assert c.pads == (0, 2, 1, 1) and "p(0,2,1,1)" in c.shape_str
    assert min_dram_bytes(c)[0] == 7 * 12 * 3 + 8 * 3 * 5      # rows 0, 2 .. 12 of 13; every column read
    assert Conv2d("d", "encoder", 3, 8, 9, 9, kernel=3, padding=(1, 1)).padding == 1
    assert Conv2d("d", "encoder", 3, 8, 9, 9, kernel=3, padding=(1, 1, 1, 1)) == Conv2d("d", "encoder", 3, 8, 9, 9,
                                                                                        kernel=3, padding=1)
    for bad in (-1, (1, 2, 3), (0, -1, 0, 0), (True, 1), "1"):
        with pytest.raises(ValueError, match="padding"):
            Conv2d("e", "encoder", 3, 8, 9, 9, kernel=3, padding=bad)


@pytest.mark.parametrize("make, needle", [
    (lambda: Softmax("s", "encoder", inputs=(), row=-4), "row must be 0 (all channels) or a positive integer, not -4"),
    (lambda: Conv2d("c", "encoder", 3, 4, 8, 8, kernel="3"), "kernel must be a positive integer or two"),
    (lambda: Pad("p", "encoder", inputs=(), out_h=-1, out_w=3), "out_h must be a positive integer, not -1"),
    (lambda: Pool("p", "encoder", inputs=(), mode="max", kernel=3, padding=2), "padding must be 0 .. 1"),
    (lambda: LayerNorm("n", "encoder", inputs=(), eps=-1.0), "eps must be in [0, 1), not -1.0"),
    (lambda: Model("m", "full", (8, 8), ()), "input must be (H, W, C), three positive integers, not (8, 8)"),
], ids=["softmax_row", "kernel", "pad", "pool_padding", "layernorm_eps", "model_input"])
def test_a_layer_with_a_bad_attribute_is_refused_when_built(make, needle):
    """Built in Python, a bad attribute was accepted and failed later, deep in the mapper or the ISA
    (``VEC.rows = -1024 does not fit``), or as an IndexError or TypeError."""
    with pytest.raises(ValueError) as refusal:
        make()
    assert needle in str(refusal.value)
