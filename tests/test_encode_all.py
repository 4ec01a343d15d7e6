"""Every stream the mapper emits is encodable: every MAC layer of every zoo model on every preset,
and whole-network programs (VEC passes included), survive encode -> decode unchanged and time
the same from their words as from the mapper's instructions.

The fast tests cover the cases that once overflowed a field: the 64-PE presets (``pe_step``),
kernels and strides of 16, outputs beyond 4095 rows.  The matrix maps every zoo model on
every preset A to M at its default size, and on the test presets at 64x64 (their small buffers
make full-size maps slow, not different); ``make regress`` a cover of that matrix
(``REGRESS_COVER_*``: every model and every preset at least once), ``make zoo-sweep`` all of it.
"""

from __future__ import annotations

import pytest

from hw.config import PAPER_PRESETS, get_config
from hw.isa import decode_stream, encode_stream
from hw.timing import schedule, schedule_encoded
from mapper.ir import MAC_KINDS, Conv2d, Linear, Model
from mapper.lower import MappingError, map_layer
from mapper.program import ProgramError, build_program
from mapper.quantize import random_qmodel
from mapper.workloads import MODEL_NAMES, build_model

TEST_PRESETS = ("tiny", "small", "e_small")
#: Not executable anywhere: products of an opaque operand layout (mapper.ir, MatMul b_layout).
UNMAPPABLE = {"anchor_detr"}


def _round_trip(stream) -> None:
    back = decode_stream(encode_stream(stream))
    assert len(back) == len(stream)
    for i, (a, b) in enumerate(zip(stream, back)):
        assert (a.op, a.f, a.pop_prev, a.pop_next, a.push_prev, a.push_next) == \
               (b.op, b.f, b.pop_prev, b.pop_next, b.push_prev, b.push_next), f"instruction {i}: {a} != {b}"


def _encode_model(model: Model, cfg) -> int:
    """Round-trip every MAC layer's streams; returns the instructions checked."""
    n = 0
    for layer in model.layers:
        if layer.kind in MAC_KINDS:
            for lowered, _ in map_layer(layer, cfg):
                _round_trip(lowered.stream)
                n += len(lowered.stream)
    return n


@pytest.mark.parametrize("cfg_name", ["E", "H", "M"])
def test_segformer_b0_encodes_on_64_and_16_pe_presets(cfg_name):
    assert _encode_model(build_model("segformer_b0", size=(128, 128)), get_config(cfg_name)) > 0


@pytest.mark.parametrize("cfg_name", ["E", "H"])
def test_patch_embedding_16x16_stride_16_and_tall_outputs_encode(cfg_name):
    """ViT-B/16's patch embedding (kernel and stride 16), and a prime token count above 4095."""
    cfg = get_config(cfg_name)
    for layer in (Conv2d("patch16", "encoder", 3, 96, 224, 224, kernel=16, stride=16, padding=0),
                  Linear("tall", "encoder", 5003, 16, 8)):
        for lowered, _ in map_layer(layer, cfg):
            _round_trip(lowered.stream)


@pytest.mark.parametrize("model_name", ["segformer_b0", "swin_tiny"])
def test_whole_network_program_encodes_and_times_the_same(model_name):
    cfg = get_config("E")
    size = (64, 64)
    program = build_program(random_qmodel(build_model(model_name, size=size)), cfg)
    _round_trip(program.stream)
    words = encode_stream(program.stream)
    _, timed = schedule_encoded(words, cfg)
    assert timed.total_cycles == schedule(program.stream, cfg).total_cycles


#: The cases of the matrix ``make regress`` runs: every model on E, every preset on SegFormer-B2.
#: ``make zoo-sweep`` runs them all (about 30 CPU minutes).
REGRESS_COVER_PRESETS = ("E",)
REGRESS_COVER_MODEL = "segformer_b2"


def _zoo_matrix():
    for model_name in (m for m in MODEL_NAMES if m not in UNMAPPABLE):
        for cfg_name in PAPER_PRESETS + TEST_PRESETS:
            covered = cfg_name in REGRESS_COVER_PRESETS or model_name == REGRESS_COVER_MODEL
            marks = [pytest.mark.slow] + ([] if covered else [pytest.mark.zoo_sweep])
            yield pytest.param(model_name, cfg_name, marks=marks, id=f"{model_name}-{cfg_name}")


@pytest.mark.parametrize("model_name, cfg_name", _zoo_matrix())
def test_every_zoo_stream_encodes(model_name, cfg_name):
    size = (64, 64) if cfg_name in TEST_PRESETS else None
    model = build_model(model_name, size=size)
    try:
        n = _encode_model(model, get_config(cfg_name))
    except MappingError as e:           # a layer that cannot fit must say which buffer and sizes
        assert "buffer" in str(e), str(e)
        pytest.fail(f"{model_name} on {cfg_name}: {e}")
    assert n > 0


@pytest.mark.slow
@pytest.mark.parametrize("model_name", [m for m in MODEL_NAMES if m not in UNMAPPABLE])
def test_every_zoo_program_encodes(model_name):
    for cfg_name in ("E", "H"):
        try:
            program = build_program(random_qmodel(build_model(model_name, size=(64, 64))), get_config(cfg_name))
        except ProgramError as e:
            pytest.fail(f"{model_name} on {cfg_name}: {e}")
        _round_trip(program.stream)
