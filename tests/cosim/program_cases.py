"""Whole-network programs for the cosimulation: what the RTL must do with one.

A case is a network (a zoo model, or one of :data:`OWN_NETWORKS`) at an input size with a seed,
optionally unfused (``"fuse": false``: no STORE epilogues, its non-MAC layers as VEC passes) and
cut before a layer (``"until"``: the steps before it, then END), or with its chains forced into
bands of ``"band_rows"`` rows (``mapper.program.build_program``'s ``band_rows``).
:func:`expected_program` quantises it (``sim.inference.network_parameters``), builds its
whole-network program with every tensor in a buffer of its own (``keep_tensors``: the
testbench reads every layer's output back from the final DRAM image), checks the functional
run against the golden whole-network model (``sim.functional.check_program``), and gives the
final DRAM image and the schedule's cycles that the RTL must reproduce exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hw.cli import code_digest, short_hash
from hw.config import AcceleratorConfig
from hw.config_file import config_label
from hw.isa import Op, make
from hw.rtl.insn import rtl_unsupported, vec_unsupported
from hw.rtl.vector_executor import builds_vector_unit
from hw.vector import MAX_DESCRIPTOR_BYTES, decode_descriptor
from hw.timing import schedule
from mapper.images import preprocess, quantize_input, synthetic_image
from mapper.ir import (Activation, Add, ChannelShuffle, ChannelSlice, Concat, Conv2d, Crop, DepthToSpace, Linear, MatMul, Model, Pad,
                       Softmax, SpaceToDepth)
from mapper.program import Program, build_program

from cosim.runner import BUILD_ROOT

__all__ = ["OWN_NETWORKS", "WHOLE_NETWORKS", "BuiltProgram", "build_case", "build_key", "built_path",
           "built_programs", "save_built", "load_built", "ExpectedProgram", "expected_program", "program_length",
           "program_name", "program_prefix", "unsupported_steps"]


def mac_cnn(size: int) -> Model:
    """A network of MAC layers only (convolutions with ReLU, a depthwise and a grouped one, a
    strided reduction and a per-pixel linear): what the RTL executes whole today."""
    s2 = (size + 1) // 2
    layers = (
        Conv2d("stem", "encoder", 3, 16, size, size, kernel=3, stride=2, padding=1, relu=True),
        Conv2d("dw", "encoder", 16, 16, s2, s2, kernel=3, padding=1, groups=16, inputs=("stem",)),
        Conv2d("pw", "encoder", 16, 24, s2, s2, relu=True, inputs=("dw",)),
        Conv2d("grouped", "encoder", 24, 24, s2, s2, kernel=3, padding=1, groups=2, inputs=("pw",)),
        Conv2d("reduce", "decoder", 24, 32, s2, s2, kernel=2, stride=2, inputs=("grouped",)),
        Linear("head", "decoder", (s2 // 2) ** 2, 32, 10, inputs=("reduce",)),
    )
    return Model("mac_cnn", "full", (size, size, 3), layers)


def dense_concat(size: int) -> Model:
    """DenseNet/UNet style, as ``tests/onnx_graphs.dense_concat`` imports: ``cat = Concat([x,
    conv1x1(x)])`` built in place (``x``'s 6 channels stored at the concatenation's pitch of 16),
    and a 3x3 convolution of ``x`` (which would fold its taps if ``x`` were stored alone)."""
    layers = (
        Conv2d("stem", "encoder", 3, 6, size, size, kernel=3, padding=1, relu=True),
        Conv2d("grow", "encoder", 6, 10, size, size, inputs=("stem",)),
        Concat("cat", "encoder", inputs=("stem", "grow")),
        Conv2d("read", "decoder", 6, 8, size, size, kernel=3, padding=1, inputs=("stem",)),
    )
    return Model("dense_concat", "full", (size, size, 3), layers)


def nested_concat(size: int) -> Model:
    """DenseNet's block, as ``tests/onnx_graphs.nested_concat`` imports: ``c1 = Concat([x,
    conv1x1(x)])`` inside ``c2 = Concat([c1, conv1x1(c1)])``, all built in place in ``c2``'s buffer
    (pitch 24: ``x`` at channel 0, ``conv1x1(x)`` at 8, ``conv1x1(c1)`` at 16)."""
    layers = (
        Conv2d("stem", "encoder", 3, 8, size, size, kernel=3, padding=1, relu=True),
        Conv2d("grow0", "encoder", 8, 8, size, size, inputs=("stem",)),
        Concat("cat0", "encoder", inputs=("stem", "grow0")),
        Conv2d("grow1", "encoder", 16, 8, size, size, inputs=("cat0",)),
        Concat("cat1", "encoder", inputs=("cat0", "grow1")),
    )
    return Model("nested_concat", "full", (size, size, 3), layers)


def dense_layer(size: int) -> Model:
    """DenseNet's layer, as ``tests/onnx_graphs.dense_layer(position="last")`` imports: ``cat =
    Concat([conv3x3(x), x])`` built in place (pitch 11: the grown 5 channels at 0, ``x``'s 6 at 5).
    The 3x3 convolution reads ``x``, a part of odd channels, one C0 block a pixel: its LOAD_INPs
    bound the lanes to ``x``'s 6 channels (``chan``), which would otherwise read the next pixel's
    grown channels, written by its own STOREs, and past the last pixel."""
    layers = (
        Conv2d("stem", "encoder", 3, 6, size, size, kernel=3, padding=1, relu=True),
        Conv2d("grow", "encoder", 6, 5, size, size, kernel=3, padding=1, inputs=("stem",)),
        Concat("cat", "encoder", inputs=("grow", "stem")),
    )
    return Model("dense_layer", "full", (size, size, 3), layers)


def attention(size: int) -> Model:
    """SegFormer's attention over the ``size x size`` pixels of a 3x3 stem (as many keys as
    queries, two heads of 8 channels): q and kv, q.k^T with its softmax, .v, the projection and
    the residual add.  With ``band_rows`` q.k^T, .v and the projection run as a band chain
    (``mapper.bands``): the softmax epilogue STOREs a band of queries' scores into the buffer."""
    t = size * size
    layers = (
        Conv2d("stem", "encoder", 3, 16, size, size, kernel=3, padding=1, relu=True),
        Linear("q", "encoder", t, 16, 16, inputs=("stem",)),
        Linear("kv", "encoder", t, 16, 32, inputs=("stem",)),
        MatMul("qk", "encoder", 2, t, 8, t, inputs=("q", "kv"), b_layout="nk"),
        Softmax("softmax", "encoder", inputs=("qk",), row=t),
        MatMul("av", "encoder", 2, t, t, 8, inputs=("softmax", "kv"), b_offset=16, b_layout="kn"),
        Linear("proj", "encoder", t, 16, 16, inputs=("av",)),
        Add("sum", "encoder", inputs=("proj", "stem")),
    )
    return Model("attention", "full", (size, size, 3), layers)


def c2f(size: int) -> Model:
    """YOLOv8's C2f block, as ``tests/onnx_graphs.c2f`` imports (ReLU, two bottlenecks): the
    second half of a 1x1 convolution's 16 channels (a ``ChannelSlice``, zero-copy) read by a 3x3
    convolution and a residual add inside the concatenation's buffer (pitch 32, offset 8), where
    the bottlenecks' outputs are built too."""
    layers = (
        Conv2d("cv1", "encoder", 3, 16, size, size, relu=True),
        ChannelSlice("b", "encoder", inputs=("cv1",), start=8, channels=8),
        Conv2d("m0a", "encoder", 8, 8, size, size, kernel=3, padding=1, relu=True, inputs=("b",)),
        Conv2d("m0b", "encoder", 8, 8, size, size, kernel=3, padding=1, relu=True, inputs=("m0a",)),
        Add("m0", "encoder", inputs=("b", "m0b")),
        Conv2d("m1a", "encoder", 8, 8, size, size, kernel=3, padding=1, relu=True, inputs=("m0",)),
        Conv2d("m1b", "encoder", 8, 8, size, size, kernel=3, padding=1, relu=True, inputs=("m1a",)),
        Add("m1", "encoder", inputs=("m0", "m1b")),
        Concat("cat", "encoder", inputs=("cv1", "m0", "m1")),
        Conv2d("cv2", "decoder", 32, 16, size, size, relu=True, inputs=("cat",)),
    )
    return Model("c2f", "full", (size, size, 3), layers)


def atrous(size: int) -> Model:
    """DeepLab's atrous convolutions, as ``tests/onnx_graphs.dilated`` imports: dilations 2 and 3
    (one 1x1 product per tap on a shifted window, accumulated; a tile's window wholly in the padding
    reads zeros), a depthwise one, a strided one, a grouped one reading a concatenation, and
    one whose outer taps read only padding (not run: its centre tap alone)."""
    layers = (
        Conv2d("stem", "encoder", 3, 16, size, size, kernel=3, padding=1, relu=True),
        Conv2d("d2", "encoder", 16, 16, size, size, kernel=3, padding=2, dilation=2, relu=True, inputs=("stem",)),
        Conv2d("d3", "encoder", 16, 8, size, size, kernel=3, padding=3, dilation=3, relu=True, inputs=("stem",)),
        Conv2d("dw", "encoder", 16, 16, size, size, kernel=3, padding=2, dilation=2, groups=16, inputs=("d2",)),
        Concat("cat", "encoder", inputs=("dw", "d3")),
        Conv2d("g2", "decoder", 24, 8, size, size, kernel=3, padding=4, dilation=4, groups=2, inputs=("cat",)),
        Conv2d("s2", "decoder", 8, 8, size, size, kernel=3, stride=2, padding=2, dilation=2, inputs=("g2",)),
        Conv2d("far", "decoder", 8, 8, (size + 1) // 2, (size + 1) // 2, kernel=3, padding=size, dilation=size,
               inputs=("s2",)),
    )
    return Model("atrous", "full", (size, size, 3), layers)


def pixel_shuffle(size: int) -> Model:
    """A sub-pixel upsampler (ESPCN's, as ``tests/onnx_graphs.depth_to_space`` imports): a
    convolution to 4 x 4 channels, ``DepthToSpace(2)`` alone (a COPY whose source axes split at the
    block), a 3x3 convolution of the upsampled image, and a second one leading a sigmoid's pass."""
    layers = (
        Conv2d("c", "encoder", 3, 16, size, size, kernel=3, padding=1),
        DepthToSpace("shuffle", "encoder", inputs=("c",)),
        Conv2d("head", "decoder", 4, 8, 2 * size, 2 * size, kernel=3, padding=1, inputs=("shuffle",)),
        DepthToSpace("shuffle2", "decoder", inputs=("head",)),
        Activation("relu", "decoder", func="sigmoid", inputs=("shuffle2",)),
    )
    return Model("pixel_shuffle", "full", (size, size, 3), layers)


def space_to_depth(size: int) -> Model:
    """SpaceToDepth as the importer makes it (``tests/onnx_graphs.space_to_depth``), ``size`` a multiple
    of 12: blocks of 2 and 3 (a COPY stage per row of the blocks), 6 (more rows than a pass has
    stages: a COPY a pixel at a time through the split write pattern), each read by a convolution;
    a block of 2 of a concatenation's part (gaps in its bytes) before a sigmoid."""
    layers = [Conv2d("c", "encoder", 3, 4, size, size, kernel=3, padding=1),
              Conv2d("d", "encoder", 3, 4, size, size, relu=True)]
    for b in (2, 3, 6):
        layers += [SpaceToDepth(f"s2d{b}", "encoder", inputs=("c",), block=b),
                   Conv2d(f"head{b}", "decoder", 4 * b * b, 4, size // b, size // b, inputs=(f"s2d{b}",))]
    layers += [Concat("cat", "encoder", inputs=("c", "d")),
               SpaceToDepth("s2d_part", "decoder", inputs=("d",)),
               Activation("sigmoid", "decoder", func="sigmoid", inputs=("s2d_part",))]
    return Model("space_to_depth", "full", (size, size, 3), tuple(layers))


def up_conv(size: int) -> Model:
    """A U-Net's up path as the importer makes its 2x2 stride-2 transposed convolution (a 1x1
    convolution to its four phases, ``DepthToSpace(2)``), written into the concatenation with the
    skip connection at an offset, and a 3x3 transposed one whose phases overrun the output (a crop)."""
    half = size // 2
    layers = (
        Conv2d("skip", "encoder", 3, 8, size, size, kernel=3, padding=1, relu=True),
        Conv2d("low", "encoder", 8, 16, size, size, kernel=2, stride=2, relu=True, inputs=("skip",)),
        Conv2d("phases", "decoder", 16, 32, half, half, inputs=("low",)),
        DepthToSpace("up", "decoder", inputs=("phases",)),
        Concat("cat", "decoder", inputs=("skip", "up")),
        Conv2d("dec", "decoder", 16, 8, size, size, kernel=3, padding=1, relu=True, inputs=("cat",)),
        Conv2d("phases2", "decoder", 8, 12, size, size, kernel=2, padding=(1, 1, 0, 0), inputs=("dec",)),
        DepthToSpace("up2", "decoder", inputs=("phases2",)),
        Crop("out", "decoder", inputs=("up2",), out_h=2 * size - 1, out_w=2 * size - 1),
    )
    return Model("up_conv", "full", (size, size, 3), layers)


def shuffle_unit(size: int) -> Model:
    """ShuffleNetV2's basic unit as ``tests/onnx_graphs.shufflenet`` imports it: the second half a
    channel slice, its branch, the first half copied into the concatenation, and the channel shuffle
    (one COPY over pixels by channels, the source's channel axis split at the groups), twice."""
    layers = [Conv2d("stem", "encoder", 3, 16, size, size, kernel=3, padding=1, relu=True)]
    x = "stem"
    for i, groups in enumerate((2, 4)):
        layers += [
            ChannelSlice(f"x1_{i}", "encoder", inputs=(x,), start=0, channels=8),
            ChannelSlice(f"x2_{i}", "encoder", inputs=(x,), start=8, channels=8),
            Conv2d(f"pw_{i}", "encoder", 8, 8, size, size, relu=True, inputs=(f"x2_{i}",)),
            Conv2d(f"dw_{i}", "encoder", 8, 8, size, size, kernel=3, padding=1, groups=8, inputs=(f"pw_{i}",)),
            Pad(f"copy_{i}", "encoder", inputs=(f"x1_{i}",), out_h=size, out_w=size),
            Concat(f"cat_{i}", "encoder", inputs=(f"copy_{i}", f"dw_{i}")),
            ChannelShuffle(f"shuffle_{i}", "encoder", inputs=(f"cat_{i}",), groups=groups),
        ]
        x = f"shuffle_{i}"
    layers.append(Conv2d("head", "decoder", 16, 4, size, size, inputs=(x,)))
    return Model("shuffle_unit", "full", (size, size, 3), tuple(layers))


def crops(size: int) -> Model:
    """Crops from an origin, by steps, as the importer makes them: a centre crop leading a ReLU's
    pass, and a convolution with strides (2, 1) (at stride 1, then every other row)."""
    layers = (
        Conv2d("stem", "encoder", 3, 8, size, size, kernel=3, padding=1),
        Crop("centre", "encoder", inputs=("stem",), out_h=size - 2, out_w=size - 2, y0=1, x0=1),
        Activation("relu", "encoder", func="relu", inputs=("centre",)),
        Conv2d("wide", "decoder", 8, 8, size - 2, size - 2, kernel=3, padding=1, inputs=("relu",)),
        Crop("rows", "decoder", inputs=("wide",), out_h=(size - 1) // 2, out_w=size - 2, step=(2, 1)),
        Conv2d("head", "decoder", 8, 4, (size - 1) // 2, size - 2, inputs=("rows",)),
    )
    return Model("crops", "full", (size, size, 3), layers)


def large_kernel(size: int) -> Model:
    """Kernels of more taps than tiny's weight buffer holds (RepLKNet's, UniRepLKNet's): a 13x13
    depthwise convolution and a grouped 13x13 one, each tap a 1x1 product on a window shifted by it,
    accumulated, as a dilated kernel's are (``mapper.lower.Problem.per_tap``)."""
    layers = (
        Conv2d("stem", "encoder", 3, 8, size, size, kernel=3, padding=1, relu=True),
        Conv2d("dw13", "encoder", 8, 8, size, size, kernel=13, padding=6, groups=8, inputs=("stem",)),
        Conv2d("g13", "decoder", 8, 8, size, size, kernel=13, padding=6, groups=2, relu=True, inputs=("dw13",)),
    )
    return Model("large_kernel", "full", (size, size, 3), layers)


#: Networks defined here rather than in the zoo, by name.
OWN_NETWORKS = {"mac_cnn": mac_cnn, "dense_concat": dense_concat, "nested_concat": nested_concat,
                "dense_layer": dense_layer, "attention": attention, "c2f": c2f, "atrous": atrous,
                "pixel_shuffle": pixel_shuffle, "space_to_depth": space_to_depth, "up_conv": up_conv, "shuffle_unit": shuffle_unit,
                "crops": crops, "large_kernel": large_kernel}

#: The zoo networks that run whole from the image to the output in ``make regress`` and ``make
#: bench`` (issue 13), by configuration, the longest first: Swin-T reduced to one block a stage
#: (variant ``blocks=1-1-1-1``) at 32x32, the smallest input its four stages take (its UPerNet
#: head's pyramid pooling averages the 1x1 top level to 1, 2, 3 and 6 bins, adaptive windows; its
#: top-down path fuses each resize with its add, RESIZE->ADD, the spatial unit's chain; its 187,286
#: instructions are the most the wrapper's default ``IMEM_WORDS`` holds), ResNet-50 (its max pool
#: and global average on the spatial unit) and SegFormer-B0.
WHOLE_NETWORKS = {
    "small": ({"model": "swin_tiny", "size": 32, "variant": "blocks=1-1-1-1"},
              {"model": "resnet50", "size": 32}, {"model": "segformer_b0", "size": 64}),
    "e_small": ({"model": "segformer_b0", "size": 64},),
}


def program_name(spec: dict) -> str:
    return (f"{spec['model']}_{spec['size']}" + (f"_{spec['variant']}" if spec.get("variant") else "")
            + ("_unfused" if spec.get("fuse") is False else "") + (f"_until_{spec['until']}" if spec.get("until") else "")
            + (f"_bands_{spec['band_rows']}" if spec.get("band_rows") else ""))


def build_network(spec: dict) -> Model:
    if spec["model"] in OWN_NETWORKS:
        return OWN_NETWORKS[spec["model"]](spec["size"])
    from mapper.workloads import build_model
    return build_model(spec["model"], variant=spec.get("variant"), size=(spec["size"], spec["size"]))


@dataclass
class ExpectedProgram:
    program: Program
    dram_in: np.ndarray
    dram_out: np.ndarray         # sim.functional's final image (checked against the golden model)
    cycles: int                  # hw.timing.schedule's total

    @property
    def tensors(self) -> list[str]:
        """The tensors the program writes into DRAM, in program order (those it keeps in the global
        buffer are checked by sim.functional, and here through the tensors computed from them)."""
        return list(dict.fromkeys(t for code in self.program.steps for t in code.writes
                                  if t not in self.program.resident))


@dataclass
class BuiltProgram:
    """A case's whole-network program (before its cut), its quantised model and input image: built
    once a run, by the pytest side, which sizes the wrapper's instruction memory from it
    (:func:`program_length`) and hands it to the testbench (:func:`save_built`, :func:`load_built`)."""
    program: Program
    q: object
    image: np.ndarray


def build_case(spec: dict, cfg: AcceleratorConfig) -> BuiltProgram:
    """Quantise case ``spec``'s network (``sim.inference.network_parameters``) and build its program on ``cfg``."""
    from sim.inference import network_parameters

    model = build_network(spec)
    seed = int(spec.get("seed", 0))
    q = network_parameters(model, seed)[1]
    h, w, _ = model.input
    x = quantize_input(preprocess(synthetic_image(h, w, seed + 1)))
    return BuiltProgram(_case_program(spec, q, cfg, x), q, x)


#: Where :func:`built_programs` keeps the programs it built.
PROGRAMS_DIR = BUILD_ROOT / "programs"
#: The packages whose code builds a program (the quantiser, the mapper, the ISA) and this file.
_BUILDERS = ("hw", "mapper", "sim")


@functools.lru_cache(maxsize=None)
def _builders_digest() -> str:
    """A hash of the code that builds the programs: a program saved by other code is built again."""
    return short_hash(code_digest(_BUILDERS).encode() + Path(__file__).read_bytes(), 64)


def build_key(spec: dict, cfg: AcceleratorConfig) -> str:
    """What a saved program was built from: the case, the configuration's fields and the builders' code."""
    inputs = {"spec": spec, "config": cfg.to_dict(), "code": _builders_digest()}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def built_path(spec: dict, cfg: AcceleratorConfig) -> Path:
    """The one file of case ``spec`` (with its seed) on ``cfg``, named by ``cfg``'s folder label (two
    configurations of one name never share it): a changed build replaces it."""
    return PROGRAMS_DIR / f"{config_label(cfg)}-{program_name(spec)}-seed{int(spec.get('seed', 0))}.pickle"


def save_built(built: BuiltProgram, path: Path, key: str = "") -> str:
    """Write ``built`` and the ``key`` it was built from to ``path`` (whole or not at all: a run of
    the same case beside this one writes the same bytes); returns the path for the testbench's
    parameters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(pickle.dumps((key, built), protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(part, path)
    return str(path)


def _saved(path: Path, key: str) -> BuiltProgram | None:
    """The program saved at ``path`` if it was built from ``key``, else None."""
    try:
        saved_key, built = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return None
    return built if saved_key == key else None


def built_programs(programs, cfg) -> list[tuple[dict, int]]:
    """(spec, instructions) of each whole-network program case, its length sizing the wrapper's
    instruction memory, its build saved for the testbench under ``build/cosim/programs`` (the
    spec's ``built``): one file per case, seed and configuration (``built_path``), reused by a
    rerun built from the same inputs (``build_key``) and replaced when any of them changed."""
    out = []
    for spec in programs:
        key, path = build_key(spec, cfg), built_path(spec, cfg)
        built = _saved(path, key)
        if built is None:
            built = build_case(spec, cfg)
            save_built(built, path, key)
        out.append(({**spec, "built": str(path)}, program_length(spec, built)))
    return out


def load_built(path: str) -> BuiltProgram:
    """What :func:`save_built` wrote (in the testbench's process)."""
    return pickle.loads(Path(path).read_bytes())[1]


def expected_program(spec: dict, cfg: AcceleratorConfig, built: BuiltProgram | None = None) -> ExpectedProgram:
    """What the RTL must do with case ``spec`` on ``cfg``; ``built`` is its program if already built
    (:func:`build_case`, the same program)."""
    from sim.functional import check_program, run_program

    built = build_case(spec, cfg) if built is None else built
    program, q, x = built.program, built.q, built.image
    check_program(program, q, x)                 # functional == golden, tensor by tensor
    program = _cut(spec, program)
    return ExpectedProgram(program, program.image.copy(), run_program(program),
                           schedule(program.stream, cfg).total_cycles)


def program_length(spec: dict, built: BuiltProgram) -> int:
    """Instructions of case ``spec``'s program ``built`` (END included), cut as the case says: what
    the wrapper's instruction memory must hold."""
    return len(_cut(spec, built.program).stream)


def _case_program(spec: dict, q, cfg: AcceleratorConfig, image=None) -> Program:
    return build_program(q, cfg, image=image, keep_tensors=True, fuse=spec.get("fuse", True),
                         band_rows=spec.get("band_rows", 0))


def _cut(spec: dict, program: Program) -> Program:
    return program_prefix(program, spec["until"]) if spec.get("until") else program


def program_prefix(program: Program, layer: str) -> Program:
    """The steps of ``program`` before the first step of ``layer``, then END: a network up to a
    layer the RTL does not build (``spec["until"]``)."""
    cut = next((i for i, code in enumerate(program.steps) if code.step.layer.name == layer), None)
    if cut is None:
        raise ValueError(f"{program.model.name}: no step of layer {layer!r}")
    return replace(program, stream=program.stream[:program.steps[cut].start] + [make(Op.END)],
                   steps=program.steps[:cut])


def unsupported_steps(program: Program) -> list[str]:
    """The layers whose instructions this RTL refuses: at dispatch (``rtl_unsupported``), or a VEC
    whose descriptor its vector unit does not build (``vec_unsupported``)."""
    return [code.step.layer.name for code in program.steps
            if any(_refused(program, i) for i in program.stream[code.start:code.end] if i.op != Op.END)]


def _refused(program: Program, insn) -> bool:
    if rtl_unsupported(insn.op, insn.f, builds_vector_unit(program.cfg)):
        return True
    if insn.op != Op.VEC:
        return False
    a = insn.f["desc_addr"]
    return vec_unsupported(decode_descriptor(bytes(program.image[a:a + MAX_DESCRIPTOR_BYTES]))) is not None
