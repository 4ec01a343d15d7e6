"""Cases and the reference model of the Accelerator cosimulation (``tb_accelerator``).

Shared by the pytest side (which chooses the cases, prints the seed and exports the
Verilog) and the cocotb testbench (which rebuilds each case from its JSON spec and
computes what the RTL must produce).

* :func:`accelerator_verilog` -- the exported Accelerator plus ``accel_tb_top.v``, the
  Verilog wrapper that holds instruction memory and DRAM as arrays.
* :data:`FIXED` -- named layers covering every kind of mapping (1x1, 3x3 stride 1 and 2
  with padding, folded 7x7 stride 4, depthwise, linear, both attention products,
  requantisation with ReLU, several passes / tiles / chunks with double buffering).
* :data:`TABLE_ACTIVATIONS` -- cases whose STOREs apply a table activation (``Act.TABLE``,
  the table loaded by LOAD_PARAM with ``table = 1``).
* :data:`SOFTMAX_EPILOGUES` -- cases whose STOREs normalise rows of their channels (a softmax
  epilogue, ``ep_row``: attention scores as the fused programs store them).
* :func:`random_layers` -- random shapes from a seed.
* :func:`layer_spec` / :func:`layer_from_spec` -- JSON round trip of a layer.
* :func:`expected_run` -- the model: DRAM image in, expected DRAM image out (sim.functional),
  golden int8 output (sim.golden), and the cycles of ``hw.timing.schedule``.
* :data:`BAD_STREAMS` -- malformed streams and the error code the RTL must raise (:func:`bad_stream`,
  on the image :func:`bad_dram`: VEC passes whose operands or tables leave the DRAM, or that hold
  what the operators refuse, among them).
* :func:`rtl_machine` -- ``sim.functional.Machine`` running its VECs as the RTL does
  (:func:`run_vec_as_rtl`): the simulator's refusals, then the passes its vector unit does not
  build (``hw.rtl.insn.vec_unsupported``).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw import operators as ops
from hw.config import AcceleratorConfig
from hw.isa import INSN_BYTES, Act, ErrorCode, Insn, Op, StreamError, VecOp, decode, encode, make
from hw.rtl.global_buffer import GlobalBuffer
from hw.rtl.pe_tile import PETile
from hw.timing import dw_gather_max, gb_banks, schedule
from mapper import float_ops as F
from mapper.ir import Conv2d, Layer, Linear, MatMul
from mapper.lower import map_layer
from mapper.program import _table_bytes, exp_table, pack_params

from cosim.runner import FAST_BUILD, BuildOptions

__all__ = ["WRAPPER", "TB_TOP", "TB_BUILD", "QUICK_BUILD", "tb_build", "HIER_BLOCK_CELLS", "HIER_MIN_PES", "IMEM_WORDS", "DRAM_BYTES", "accelerator_verilog", "imem_words_for", "FIXED",
           "TABLE_ACTIVATIONS", "SOFTMAX_EPILOGUES",
           "random_layers", "layer_spec", "layer_from_spec", "Expected", "expected_run",
           "BAD_STREAMS", "bad_stream", "bad_stream_code", "bad_dram", "stream_words", "rtl_machine", "run_vec_as_rtl"]

WRAPPER = Path(__file__).with_name("accel_tb_top.v")
TB_TOP = "accel_tb_top"
#: The accelerator's module instantiated many times over (``PETile``'s cell: a tile a PE), Verilated
#: once as a hierarchical block where there are at least ``HIER_MIN_PES`` tiles (``hier_min_instances``):
#: E's 16 then share one compiled copy (docs/cosim.md, "Hierarchical blocks"); tiny's, small's and
#: e_small's 2 to 4 stay flat.  Not the row lanes: e_small's 64 as blocks ran its model at 0.72x.
HIER_BLOCK_CELLS = (PETile.export_prefix,)
HIER_MIN_PES = 8
#: How the wrapper and the accelerator are built: the fast model (the wrapper declares what
#: the testbench reaches), with the PE tiles above.
#: The global buffer's read words, one per load lane (its bank crossbar's outputs), kept as a
#: variable of their own: Verilator otherwise folds the crossbar into the load unit's byte mux
#: behind it, which reads the DRAM port and so runs in every cycle; kept apart it runs only
#: on the buffer's gated clock (docs/cosim.md, "The global buffer's read crossbar").
GB_READ_WORDS = f'public_flat_rd -module "{GlobalBuffer.export_prefix}_*" -var "r_data"'
TB_BUILD = dataclasses.replace(FAST_BUILD, config=(GB_READ_WORDS,), hier_blocks=HIER_BLOCK_CELLS,
                               hier_min_instances=HIER_MIN_PES)
#: Configurations of fewer MACs than this compile their model at ``-O1``: their build is most of
#: their cost.  tiny (32 MACs; make test builds it in every CI run): 71 CPU s of C++ against -O2's
#: 146 (its run-once code at -O0), its model 21 % slower on SegFormer-B0's 1.3 M cycles (6.9 against 5.7 CPU s; -O0: 62 s).
#: small's whole networks in make regress run for minutes, where -O2 pays.
QUICK_BUILD_MACS = 128
QUICK_BUILD = dataclasses.replace(TB_BUILD, make_variables=("OPT_FAST=-O1", "OPT_GLOBAL=-O1", "OPT_SLOW=-O0"))


def tb_build(cfg: AcceleratorConfig) -> BuildOptions:
    """How the testbench and ``cfg``'s accelerator are built (``TB_BUILD``, or ``QUICK_BUILD`` for a
    small configuration)."""
    return QUICK_BUILD if cfg.num_pe * cfg.k0 * cfg.c0 < QUICK_BUILD_MACS else TB_BUILD
#: Instruction memory depth (256-bit words) of the wrapper's build for runs of shorter programs:
#: every whole network of ``make regress`` (Swin-T's on small is the longest, 187,286 instructions,
#: tests/cosim/program_cases.py), so that its runs on one configuration share one build (8 MiB of
#: Verilator array); a run of longer ones gets a deeper build (:func:`imem_words_for`).
IMEM_WORDS = 1 << 18
#: DRAM array size: that program's image, every tensor in its own buffer, is 4.2 MB; ResNet-50's at
#: 32x32 on small is 26.1 MB, Swin-T's with one block a stage 44.1 MB (ZOO_PROGRAMS).
DRAM_BYTES = 64 << 20

LAYER_TYPES = {"Conv2d": Conv2d, "Linear": Linear, "MatMul": MatMul}


def accelerator_verilog(config: AcceleratorConfig, *, export=None, imem_words: int = IMEM_WORDS,
                        dram_bytes: int = DRAM_BYTES) -> tuple[str, float]:
    """(Verilog of the exported Accelerator of ``config`` and the wrapper, export seconds).

    The wrapper's defines name the accelerator module, its DRAM lane counts and the memory
    sizes, so the build cache key changes with them.
    """
    if export is None:
        from shared_exports import exported
        export = exported(config)
    from hw.rtl.pe_tile import load_geometry
    from hw.rtl.vector_executor import vector_ports
    gather, _, _ = load_geometry(config)
    vec_gather, vec_scatter = vector_ports(config)
    defines = (f"`define ACCEL_TOP {export.top}\n`define ACCEL_G {gather}\n"
               f"`define ACCEL_W {config.num_pe * config.k0}\n"
               f"`define ACCEL_VG {vec_gather}\n`define ACCEL_VW {vec_scatter}\n"
               f"`define ACCEL_VEC_PORTS {vec_port_connections(gather, config.num_pe * config.k0, config)}\n"
               f"`define IMEM_WORDS {imem_words}\n`define DRAM_BYTES {dram_bytes}\n")
    return export.verilog + "\n" + defines + WRAPPER.read_text(), export.seconds


def imem_words_for(lengths) -> int:
    """The wrapper's instruction memory depth for streams of ``lengths`` instructions: ``IMEM_WORDS``,
    or the power of two that holds the longest (so that runs of shorter streams share one cached
    build).  ValueError past the words the RTL's dispatcher addresses (``hw.rtl.dispatch.IMEM_WORDS``)."""
    from hw.rtl.dispatch import IMEM_WORDS as RTL_WORDS
    longest = max(lengths, default=0)
    if longest > RTL_WORDS:
        raise ValueError(f"a stream of {longest} instructions is longer than the {RTL_WORDS} words the RTL's "
                         f"dispatcher addresses (hw.rtl.dispatch.IMEM_WORDS)")
    return max(IMEM_WORDS, 1 << max(longest - 1, 0).bit_length())


def vec_port_connections(gather: int, scatter: int, config: AcceleratorConfig) -> str:
    """The wrapper's connections of the vector executor's ports to the gather and scatter lanes
    after the load/store units' (none when the accelerator has no vector executor)."""
    from hw.rtl.vector_executor import vector_ports
    vg, vw = vector_ports(config)
    if not vg:
        return ""
    rl, wl = gather + vg, scatter + vw
    return (f".vec_rd__en(rd_en[{rl - 1}:{gather}]), .vec_rd__addr(rd_addr[{32 * rl - 1}:{32 * gather}]), "
            f".vec_rd__data(rd_data[{8 * rl - 1}:{8 * gather}]), .vec_wr__en(wr_en[{wl - 1}:{scatter}]), "
            f".vec_wr__addr(wr_addr[{32 * wl - 1}:{32 * scatter}]), .vec_wr__data(wr_data[{8 * wl - 1}:{8 * scatter}]),")


# ---- layers -------------------------------------------------------------------------------

#: The layers of tests/test_functional.py's FIXED list (every loop level on tiny) and more.
FIXED: tuple[Layer, ...] = (
    Conv2d("conv1x1", "encoder", 16, 12, 5, 6),
    Conv2d("conv3x3_relu", "encoder", 8, 8, 7, 7, kernel=3, padding=1, relu=True),
    Conv2d("conv3x3_s2", "encoder", 8, 12, 9, 9, kernel=3, stride=2, padding=1),
    Conv2d("patch7x7_s4", "encoder", 3, 8, 17, 17, kernel=7, stride=4, padding=3),
    Conv2d("reduction4x4_s4", "encoder", 16, 16, 12, 12, kernel=4, stride=4),
    Conv2d("depthwise", "encoder", 12, 12, 6, 6, kernel=3, padding=1, groups=12),
    Conv2d("grouped", "encoder", 8, 8, 5, 5, kernel=3, padding=1, groups=2),
    Conv2d("depthwise_s2", "encoder", 8, 8, 7, 7, kernel=3, stride=2, padding=1, groups=8),   # gathered rows
    Conv2d("depthwise5x5", "encoder", 4, 4, 6, 6, kernel=5, padding=2, groups=4),    # too wide to gather on tiny
    Conv2d("folded_s2", "encoder", 3, 4, 6, 6, kernel=3, stride=2, padding=1),        # taps folded into its channels
    # padding that differs between sides (ONNX pads, TensorFlow's SAME): windows start at the top
    # and left padding, the bottom and right padding only set how many outputs there are
    Conv2d("conv1x5_uneven", "encoder", 6, 8, 5, 7, kernel=(1, 5), padding=(0, 2, 0, 2)),
    Conv2d("conv3x3_s2_same", "encoder", 8, 8, 8, 8, kernel=3, stride=2, padding=(0, 0, 1, 1)),
    Linear("linear", "encoder", 10, 20, 9),
    Linear("linear_relu", "decoder", 7, 33, 12, relu=True),
    MatMul("attn_qk", "encoder", 3, 10, 8, 7),
    MatMul("attn_av", "encoder", 2, 9, 7, 8),
    # a softmax epilogue (SOFTMAX_EPILOGUES): rows of 8 keys, two heads
    MatMul("attn_qk_softmax", "encoder", 2, 9, 8, 8),
    # several passes, tiles and input-channel chunks with streamed weights
    Conv2d("multi_tile", "decoder", 70, 40, 20, 20, kernel=3, padding=1, relu=True),
    Linear("multi_chunk", "decoder", 300, 200, 36),
    # table activations (TABLE_ACTIVATIONS): a GELU after a linear layer, a sigmoid after a conv
    Linear("linear_gelu", "encoder", 10, 20, 9),
    Conv2d("conv3x3_sigmoid", "encoder", 8, 12, 6, 6, kernel=3, padding=1),
)
FIXED_BY_NAME = {layer.name: layer for layer in FIXED}
#: Cases whose STOREs read their activation from the PEs' table memory (``Act.TABLE``): name ->
#: (float function, input scale, output scale) of ``hw.operators.lut_table``.
TABLE_ACTIVATIONS = {"linear_gelu": (F.gelu, 1 / 16, 1 / 16), "conv3x3_sigmoid": (F.sigmoid, 0.1, 1 / 128)}
#: Cases whose STOREs apply a softmax epilogue over rows of their keys: name -> (input scale, output
#: shift) of ``hw.operators.softmax_params``.
SOFTMAX_EPILOGUES = {"attn_qk_softmax": (1 / 16, 8)}
#: Extra requantisation shift of those cases: ``layer_data``'s outputs saturate for most elements
#: (93 % of linear_gelu's on tiny); 4 bits more leave 11 to 22 % at the int8 ends.
TABLE_INPUT_SHIFT = 4


def random_layers(seed: int, count: int) -> list[Layer]:
    """``count`` random MAC layers (conv k1/3/5/7, depthwise, linear, matmul) from ``seed``."""
    rng = random.Random(seed)
    layers = []
    for i in range(count):
        kind = rng.choice(["conv", "dw", "linear", "matmul"])
        name = f"rand{i}_{kind}"
        if kind == "conv":
            k = rng.choice([1, 3, 5, 7])
            s = rng.choice([1, 2]) if k < 7 else 4
            layer = Conv2d(name, "encoder", rng.randint(1, 40), rng.randint(1, 40),
                           rng.randint(k, 14), rng.randint(k, 14), kernel=k, stride=s,
                           padding=rng.randint(0, k // 2), relu=rng.random() < 0.5)
        elif kind == "dw":
            c = rng.randint(1, 48)
            layer = Conv2d(name, "encoder", c, c, rng.randint(3, 12), rng.randint(3, 12), kernel=3,
                           stride=rng.choice([1, 2]), padding=1, groups=c)
        elif kind == "linear":
            layer = Linear(name, "encoder", rng.randint(1, 60), rng.randint(1, 70), rng.randint(1, 50),
                           relu=rng.random() < 0.3)
        else:
            layer = MatMul(name, "encoder", rng.randint(1, 4), rng.randint(1, 30), rng.randint(1, 40),
                           rng.randint(1, 30))
        layers.append(layer)
    return layers


def layer_spec(layer: Layer) -> dict:
    """A JSON-serialisable description of ``layer`` (see :func:`layer_from_spec`)."""
    fields = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer) if f.init}
    fields.pop("inputs", None)
    if "kernel" in fields:
        fields["kernel"] = list(fields["kernel"])
    return {"type": type(layer).__name__, **fields}


def layer_from_spec(spec: dict) -> Layer:
    spec = dict(spec)
    cls = LAYER_TYPES[spec.pop("type")]
    if "kernel" in spec:
        spec["kernel"] = tuple(spec["kernel"])
    return cls(**spec)


def describe(layer: Layer) -> str:
    shape = getattr(layer, "shape_str", None)
    if shape:
        return f"{type(layer).__name__} {shape}{' relu' if getattr(layer, 'relu', False) else ''}"
    if isinstance(layer, Linear):
        return (f"Linear {layer.tokens} tokens {layer.in_features}->{layer.out_features}"
                f"{' relu' if layer.relu else ''}")
    return f"MatMul batch {layer.batch} [{layer.m}x{layer.k}] x [{layer.k}x{layer.n}]"


# ---- the model ---------------------------------------------------------------------------

@dataclass
class Expected:
    """What one run must produce.

    Members
    -------
    stream:
        The instructions, ending with END.
    dram_in:
        The DRAM image loaded before start (``uint8``).
    dram_out:
        The image after the stream, by ``sim.functional.Machine``.
    output_range:
        ``(first byte, end)`` of the layer's int8 output in the image.
    golden:
        The golden model's int8 output, flattened in DRAM order.
    cycles:
        ``hw.timing.schedule(stream, cfg).total_cycles``: the cycle in which done reads 1.
    """
    stream: list[Insn]
    dram_in: np.ndarray
    dram_out: np.ndarray
    output_range: tuple[int, int]
    golden: np.ndarray
    cycles: int


def expected_run(layer: Layer, cfg: AcceleratorConfig, seed: int) -> Expected:
    """Map ``layer``, lay out random data from ``seed`` and run the reference models; a layer
    named in :data:`TABLE_ACTIVATIONS` gets its table activation, one in :data:`SOFTMAX_EPILOGUES`
    its softmax epilogue (the exponentials' table, the output shift in its parameter entries).

    Raises
    ------
    ValueError
        If the mapper splits the layer into several streams (the testbench runs one).
    AssertionError
        If sim.functional and the golden model disagree (a model bug, not an RTL one).
    """
    from sim.functional import Machine, _place, golden_output, layer_data

    activation = TABLE_ACTIVATIONS.get(layer.name)
    softmax = ops.softmax_params(*SOFTMAX_EPILOGUES[layer.name]) if layer.name in SOFTMAX_EPILOGUES else None
    parts = map_layer(layer, cfg, act=Act.TABLE if activation else None, softmax_row=layer.n if softmax else 0)
    if len(parts) != 1 or parts[0][1] != 1:
        raise ValueError(f"{layer.name}: the mapper splits it into "
                         f"{sum(n for _, n in parts)} streams; the testbench runs one")
    lowered = parts[0][0]
    stream = lowered.stream + [make(Op.END)]
    d = layer_data(layer, np.random.default_rng(seed))
    if activation:      # smaller values, which the table maps through its whole range, not its ends
        d["shift"] = d["shift"] + TABLE_INPUT_SHIFT
    dram_in = _place(lowered, layer, d, cfg)
    p, pl = lowered.problem, lowered.layout
    golden = golden_output(layer, d, cfg)
    if activation:
        table = ops.lut_table(*activation)
        entries = _table_bytes(table.astype(np.int64))
        dram_in[pl.table:pl.table + entries.size] = entries
        golden = ops.lut(golden, table)
    if softmax:
        entries = _table_bytes(exp_table(softmax))
        dram_in[pl.table:pl.table + entries.size] = entries
        params = pack_params(d["bias"], d["mult"], d["shift"], softmax.out_shift).ravel()
        dram_in[pl.params:pl.params + params.size] = params
        golden = ops.softmax(golden.reshape(*golden.shape[:-1], -1, layer.n), softmax).reshape(golden.shape)
    dram_out = dram_in.copy()
    Machine(cfg, dram_out).run(stream)
    out = (pl.output, pl.output + p.oh * p.ow * p.k)
    golden = golden.reshape(-1).view(np.uint8)
    functional = dram_out[out[0]:out[1]]
    if not np.array_equal(functional, golden):
        raise AssertionError(f"{layer.name}: sim.functional differs from the golden model "
                             f"(a reference-model bug; seed {seed})")
    return Expected(stream=stream, dram_in=dram_in, dram_out=dram_out, output_range=out,
                    golden=golden, cycles=schedule(stream, cfg).total_cycles)


def stream_words(stream: list[Insn]) -> list[int]:
    return [int.from_bytes(encode(insn), "little") for insn in stream]


# ---- malformed streams --------------------------------------------------------------------

#: name -> (description, ErrorCode name on a configuration that builds the vector executor: tiny,
#: small, e_small; :func:`bad_stream_code` on any).  See :func:`bad_stream`.
BAD_STREAMS = {
    "unknown_opcode": ("two NOPs, then a word with opcode 12", "OPCODE"),
    "reserved_bits": ("a NOP with a reserved bit set", "RESERVED"),
    "weight_rows_out_of_range": ("LOAD_WGT of 2 rows at the last weight-buffer row", "RANGE"),
    "pe_set_out_of_range": ("LOAD_PARAM to PE num_pe (outside the array)", "RANGE"),
    "gemm_acc_out_of_range": ("GEMM whose accumulator rows pass the buffer's end", "RANGE"),
    "gemm_steps_without_pixels": ("GEMM of no pixels whose steps pass the weight buffer's rows (the compute "
                                  "unit counts steps in the bits of hw.timing.gemm_steps_bound)", "RANGE"),
    "gb_source_out_of_range": ("LOAD_INP from the global buffer past its end", "DATA"),
    "gb_source_unaligned": ("LOAD_INP from the global buffer at an address not a multiple of C0: not whole "
                            "words (hw.timing.load_inp_gb_unaligned)", "RANGE"),
    "gb_bank_conflict": ("LOAD_INP from the global buffer of two pixels B bank rows apart (B banks): both in "
                         "one bank in one beat (hw.timing.load_inp_gb_conflict)", "DATA"),
    "token_never_pushed": ("GEMM popping a load token nobody pushed", "TOKEN"),
    "token_left_at_end": ("a LOAD_PARAM pushing a token nobody pops, then END", "TOKEN"),
    "depthwise_gather_too_wide": ("a depthwise GEMM of one column more than the input banks gather "
                                  "(hw.timing.dw_gather_max)", "RANGE"),
    "vec_malformed": ("a VEC whose descriptor (zeros) has an empty iteration space", "DATA"),
    "vec_operand_past_end": ("a VEC (ADD->LUT) whose input's last byte is one past the DRAM's end", "DATA"),
    "vec_output_below_zero": ("a VEC (ADD->LUT) whose output's first byte is at -1", "DATA"),
    "vec_table_past_end": ("a VEC (ADD->LUT) whose LUT table ends one byte past the DRAM's end", "DATA"),
    "vec_unsupported_past_end": ("a VEC the RTL does not build (SOFTMAX->LAYERNORM) whose output's last "
                                 "byte is one past the DRAM's end: DATA first", "DATA"),
    "vec_unsupported": ("a VEC the RTL does not build (SOFTMAX->LAYERNORM) inside the DRAM: refused while it "
                        "runs, after its DATA checks", "UNSUPPORTED"),
    "vec_spatial_chain_unsupported": ("a chain the spatial unit does not build (RESIZE->LUT: no table load) "
                                      "inside the DRAM", "UNSUPPORTED"),
    "vec_spatial_chain_past_end": ("a RESIZE->ADD whose add's output's last byte is one past the DRAM's end",
                                   "DATA"),
    "vec_later_stage_params": ("a VEC (ADD->LAYERNORM) whose layernorm shift is 0: refused before the ADD "
                               "writes", "DATA"),
    "vec_channels_disagree": ("a VEC (RESIZE->ADD) whose resize gives 2 channels and whose ADD reads 4: DATA "
                              "before the spatial unit's UNSUPPORTED chain", "DATA"),
    "vec_raster": ("a VEC (ADD) whose second operand covers one row more than the pass", "DATA"),
    "vec_class_map_chain": ("a VEC (RESIZE_ARGMAX->COPY) copying the class map: class indices are no stage's "
                            "input", "DATA"),
    "vec_spatial_result_unread": ("a VEC (RESIZE->ADD) whose resize gives 2 channels that no stage reads (the "
                                  "ADD reads an operand): a chain the spatial unit does not build", "UNSUPPORTED"),
    "store_epilogue_unsupported": ("a STORE with a softmax epilogue and the table activation (both read the "
                                   "PEs' table ports)", "UNSUPPORTED"),
    "store_epilogue_partial_row": ("a STORE with a softmax epilogue over rows of 2 and one channel", "DATA"),
    "store_pixels_alias": ("a STORE of two pixels of 2 channels 1 byte apart (t_k above k_pitch): its writes "
                           "alias (hw.timing._store_alias_legality)", "RANGE"),
    "store_columns_alias": ("a STORE of two columns of 2 channels 1 channel apart (k_step below k_per_pe): "
                            "its writes alias", "RANGE"),
    "store_gb_past_end": ("a STORE into the global buffer whose tensor's last byte is one past its end", "RANGE"),
    "gb_write_port_unfenced": ("a LOAD_GB, then a STORE into the global buffer with no FENCE between (its one "
                               "write port)", "TOKEN"),
    "gb_write_port_fenced_then_reused": ("a LOAD_GB, a FENCE, a STORE into the global buffer, then a LOAD_GB "
                                         "with no FENCE after the STORE", "TOKEN"),
}


#: The VEC passes moved out of the DRAM (``vec_passes.leaving_dram``): name -> (chain, how, operand:
#: -1 the last, an output; None the first it can move).
LEAVING_PASSES = {"vec_operand_past_end": ("add_lut", "operand_past_end", None),
                  "vec_output_below_zero": ("add_lut", "operand_below_zero", -1),
                  "vec_table_past_end": ("add_lut", "table_past_end", 0),
                  "vec_unsupported_past_end": ("softmax_layernorm", "operand_past_end", -1),
                  "vec_unsupported": ("softmax_layernorm", None, None),
                  "vec_spatial_chain_unsupported": ("resize_lut", None, None),
                  "vec_spatial_chain_past_end": ("resize_add", "operand_past_end", -1)}
#: The chains of ``LEAVING_PASSES``: a random pass of the stages (``vec_passes.random_pass``), or a
#: resize with a stage after it (``vec_passes.resize_chain_pass``).
LEAVING_CHAINS = {"add_lut": [VecOp.ADD, VecOp.LUT], "softmax_layernorm": [VecOp.SOFTMAX, VecOp.LAYERNORM],
                  "resize_add": VecOp.ADD, "resize_lut": VecOp.LUT}


def _later_stage_params(rng) -> tuple:
    """An ADD->LAYERNORM pass whose ADD writes its result and whose layernorm's shift is 0."""
    from hw import vector as vec
    from vec_passes import random_pass

    d, image = random_pass(rng, [VecOp.ADD, VecOp.LAYERNORM])
    add, ln = d.stages
    out = len(d.operands) - 1                    # the layernorm's output: the ADD writes it too
    stages = (dataclasses.replace(add, out=out), dataclasses.replace(ln, params=ln.params | {"shift": 0}))
    return vec.Descriptor(d.h, d.w, d.c, d.operands, stages), image


def _after_a_spatial_stage(rng, first, then) -> tuple:
    """A pass over 2x3 pixels of 4 channels: a spatial stage ``first`` from operand 0 (2 channels) or
    operand 1 (4), writing nothing, then stage ``then``; operand 2 (4 channels) is the output."""
    from hw import vector as vec
    from vec_passes import Dram

    dram, (h, w) = Dram(rng), (2, 3)
    operands = tuple(vec.Operand(dram.alloc(h * w * c), c, vec.Axis(h, w * c), vec.Axis(w, c)) for c in (2, 4, 4))
    return vec.Descriptor(h, w, 4, operands, (first, then)), dram.image()


def _nearest_resize(src: int):
    """A nearest resize (2x3 to 2x3) of operand ``src``, writing nothing."""
    from hw import vector as vec
    nearest = {"mode": 1, **{f"{a}_{n}": 0 for a in "yx" for n in ("start", "step", "r")}, "y_q": 1, "x_q": 1}
    return vec.Stage(VecOp.RESIZE, src, vec.NONE, vec.NONE, nearest)


def _add(src: int, src2: int, out: int):
    from hw import vector as vec
    return vec.Stage(VecOp.ADD, src, src2, out, {"mult_a": 1, "mult_b": 1, "shift": 1, "relu": 0})


def _channels_disagree(rng) -> tuple:
    """A nearest resize of 2 channels, then an ADD of its result with an operand of the pass's 4."""
    from hw import vector as vec
    return _after_a_spatial_stage(rng, _nearest_resize(0), _add(vec.PREV, 1, 2))


def _resize_result_unread(rng) -> tuple:
    """A nearest resize of 2 channels whose result no stage reads (the ADD reads operand 1): no
    previous result of other channels (``hw.vector.pass_refusals``), but a chain the spatial unit
    does not build."""
    return _after_a_spatial_stage(rng, _nearest_resize(0), _add(1, 1, 2))


def _class_map_chain(rng) -> tuple:
    """The class map of the 4-channel operand (the pass's c), then a COPY of it."""
    from hw import vector as vec
    argmax = vec.Stage(VecOp.RESIZE_ARGMAX, 1, vec.NONE, vec.NONE, {f"{a}_{n}": 0 for a in "yx" for n in ("start", "step")})
    return _after_a_spatial_stage(rng, argmax, vec.Stage(VecOp.COPY, vec.PREV, vec.NONE, 2, {}))


def _raster(rng) -> tuple:
    """An ADD whose second operand has one row more than the pass (its wrap grown with it)."""
    from hw import vector as vec
    from vec_passes import random_pass

    d, image = random_pass(rng, [VecOp.ADD])
    second = d.operands[1]
    y = dataclasses.replace(second.y, n=second.y.n + 1, wrap=max(second.y.wrap, second.y.n + 1))
    operands = d.operands[:1] + (dataclasses.replace(second, y=y),) + d.operands[2:]
    return dataclasses.replace(d, operands=operands), image


#: VEC passes that hold what the operators refuse (``hw.vector.pass_refusals``): name -> the pass
#: and its image from a generator.
REFUSED_PASSES = {"vec_later_stage_params": _later_stage_params, "vec_channels_disagree": _channels_disagree,
                  "vec_raster": _raster, "vec_class_map_chain": _class_map_chain,
                  "vec_spatial_result_unread": _resize_result_unread}


def _vec_bad_pass(name: str, cfg: AcceleratorConfig) -> tuple[Insn, np.ndarray]:
    """(its VEC, the DRAM image with its descriptor) of the bad stream ``name`` of ``LEAVING_PASSES``
    or ``REFUSED_PASSES`` (seed 0)."""
    from cosim.vec_cases import placed_pass

    if name in REFUSED_PASSES:
        return placed_pass(*REFUSED_PASSES[name](np.random.default_rng(0)))
    return _leaving_pass(name, cfg)


def _leaving_pass(name: str, cfg: AcceleratorConfig) -> tuple[Insn, np.ndarray]:
    """(its VEC, the DRAM image with its descriptor) of the bad stream ``name`` of ``LEAVING_PASSES``:
    a random pass of its chain (seed 0), an operand or table moved out of ``cfg``'s DRAM by one byte
    (``how`` None: left where it is)."""
    from cosim.vec_cases import placed_pass
    from vec_passes import leaving_dram, random_pass, resize_chain_pass

    chain, how, k = LEAVING_PASSES[name]
    stages, rng = LEAVING_CHAINS[chain], np.random.default_rng(0)
    d, image = resize_chain_pass(rng, stages) if chain.startswith("resize_") else random_pass(rng, stages)
    return placed_pass(d if how is None else leaving_dram(d, how, cfg.dram_bytes, k), image)


def bad_stream_code(name: str, cfg: AcceleratorConfig) -> ErrorCode:
    """The error code the RTL of ``cfg`` raises on the malformed stream ``name``: ``BAD_STREAMS``'
    code, or UNSUPPORTED where its dispatcher refuses the culprit first (``hw.rtl.insn.rtl_unsupported``:
    every VEC on a configuration without the vector executor, A to M), unless that code comes before
    (``hw.rtl.insn.refused_before_unsupported``: the dispatcher's order)."""
    from hw.rtl.insn import refused_before_unsupported, rtl_unsupported
    from hw.rtl.vector_executor import builds_vector_unit

    code = ErrorCode[BAD_STREAMS[name][1]]
    if refused_before_unsupported(code):
        return code
    words, culprit = bad_stream(name, cfg)
    insn = decode(words[culprit].to_bytes(INSN_BYTES, "little"))
    return ErrorCode.UNSUPPORTED if rtl_unsupported(insn.op, insn.f, builds_vector_unit(cfg)) else code


def bad_stream_positioned(name: str, cfg: AcceleratorConfig) -> bool:
    """Whether the RTL's fetch stops at the culprit of the malformed stream ``name``: a refusal at
    dispatch does; a DATA refusal, and any refusal of a VEC on a configuration that builds the
    vector executor (it runs the pass while the fetch moves on), need not."""
    from hw.rtl.vector_executor import builds_vector_unit

    if bad_stream_code(name, cfg) == ErrorCode.DATA:
        return False
    words, culprit = bad_stream(name, cfg)
    try:
        op = decode(words[culprit].to_bytes(INSN_BYTES, "little")).op
    except StreamError:
        return True             # a word that is no instruction: refused at dispatch
    return not (op == Op.VEC and builds_vector_unit(cfg))


def bad_dram(name: str, cfg: AcceleratorConfig) -> np.ndarray:
    """The DRAM image the malformed stream ``name`` runs on: 4096 zeros, or a VEC pass's image."""
    if name in LEAVING_PASSES or name in REFUSED_PASSES:
        return _vec_bad_pass(name, cfg)[1]
    return np.zeros(4096, dtype=np.uint8)


def bad_stream(name: str, cfg: AcceleratorConfig) -> tuple[list[int], int]:
    """(instruction words, index of the culprit) of the malformed stream ``name``, on the image
    ``bad_dram(name, cfg)``."""
    nop = int.from_bytes(encode(make(Op.NOP)), "little")
    end = int.from_bytes(encode(make(Op.END)), "little")
    if name == "unknown_opcode":
        return [nop, nop, 0x0C, end], 2
    if name == "reserved_bits":
        return [nop, nop | (1 << 255), end], 1
    if name == "weight_rows_out_of_range":
        insn = make(Op.LOAD_WGT, pe_count=1, dst_addr=cfg.weight_rows - 1, rows=2, n_out=1, chan=4)
    elif name == "pe_set_out_of_range":
        insn = make(Op.LOAD_PARAM, pe_first=cfg.num_pe, pe_count=1, n_entries=1)
    elif name == "gemm_acc_out_of_range":
        insn = make(Op.GEMM, out_h=2, out_w=2, in_w=2, kh=1, kw=1, stride=1, n_cblk=1,
                    acc_addr=cfg.accum_depth - 2)
    elif name == "gemm_steps_without_pixels":
        insn = make(Op.GEMM, out_h=0, out_w=1, in_w=1, kh=1, kw=1, stride=1, n_cblk=cfg.weight_rows + 1)
    elif name == "gb_source_out_of_range":
        # two whole-word pixels, the second past the end: the lanes' bound is checked one by one
        insn = make(Op.LOAD_INP, pe_count=1, src_gb=1, src_addr=cfg.global_buf_bytes - cfg.c0,
                    t_h=1, t_w=2, t_c=cfg.c0, n_cblk=1, win_h=1, win_w=2)
        return stream_words([make(Op.NOP), insn, make(Op.END)]), 1
    elif name == "gb_source_unaligned":
        insn = make(Op.LOAD_INP, pe_count=1, src_gb=1, src_addr=cfg.c0 // 2,
                    t_h=1, t_w=1, t_c=cfg.c0, n_cblk=1, win_h=1, win_w=1)
        return stream_words([make(Op.NOP), insn, make(Op.END)]), 1
    elif name == "gb_bank_conflict":
        assert cfg.gb_bus_bytes >= 2 * cfg.c0, "a beat of one row has no conflict to refuse"
        pitch = gb_banks(cfg)[0] * cfg.c0
        insn = make(Op.LOAD_INP, pe_count=1, src_gb=1, t_h=1, t_w=2, t_c=pitch, n_cblk=1, win_h=1, win_w=2)
        return stream_words([make(Op.NOP), insn, make(Op.END)]), 1
    elif name == "token_never_pushed":
        insn = make(Op.GEMM, deps="pop_prev", out_h=1, out_w=1, in_w=1, kh=1, kw=1, stride=1, n_cblk=1)
    elif name == "token_left_at_end":
        return stream_words([make(Op.NOP), make(Op.LOAD_PARAM, deps="push_next", pe_count=1, n_entries=1),
                             make(Op.END)]), 2
    elif name == "depthwise_gather_too_wide":
        k = dw_gather_max(cfg) + 1
        insn = make(Op.GEMM, out_h=1, out_w=1, kh=k, kw=k, n_cblk=1, dw=1)
    elif name == "vec_malformed":
        insn = make(Op.VEC, work=1)
    elif name in LEAVING_PASSES or name in REFUSED_PASSES:
        insn = _vec_bad_pass(name, cfg)[0]
    elif name.startswith(("store_", "gb_write_port_")):
        return _bad_store(name, cfg)
    else:
        raise KeyError(f"unknown bad stream {name!r}; choose one of {', '.join(BAD_STREAMS)}")
    return stream_words([make(Op.NOP), insn, make(Op.END)]), 1


def _bad_store(name: str, cfg: AcceleratorConfig) -> tuple[list[int], int]:
    """``bad_stream`` of the malformed STOREs (and a STORE's claim of the global buffer's write port)."""
    k = cfg.k0
    one_pixel = dict(pe_count=1, pe_k=1, out_h=1, out_w=1, t_h=1, t_w=1)
    into_gb = dict(pe_count=1, pe_k=1, out_h=1, out_w=2, t_h=1, t_w=2, t_k=k, k_pitch=k, k_per_pe=k, dst_gb=1)
    if name == "store_epilogue_unsupported":
        insn = make(Op.STORE, pe_count=1, pe_k=1, out_h=1, out_w=1, k_per_pe=1, ep_row=1, act=Act.TABLE)
    elif name == "store_epilogue_partial_row":
        insn = make(Op.STORE, **one_pixel, t_k=1, k_pitch=1, k_per_pe=1, ep_row=2)
    elif name == "store_pixels_alias":
        insn = make(Op.STORE, pe_count=1, pe_k=1, out_h=1, out_w=2, t_h=1, t_w=2, t_k=2, k_pitch=1, k_per_pe=2)
    elif name == "store_columns_alias":
        insn = make(Op.STORE, **{**one_pixel, "pe_count": 2, "pe_k": 2}, pe_step=1, t_k=4, k_pitch=4, k_per_pe=2,
                    k_step=1)
    elif name == "store_gb_past_end":
        insn = make(Op.STORE, **into_gb, dst_addr=cfg.global_buf_bytes - 2 * k + 1)
    elif name == "gb_write_port_unfenced":
        return stream_words([make(Op.LOAD_GB, n_bytes=16), make(Op.STORE, **into_gb), make(Op.END)]), 1
    elif name == "gb_write_port_fenced_then_reused":
        load_gb = make(Op.LOAD_GB, n_bytes=16)
        return stream_words([load_gb, make(Op.FENCE), make(Op.STORE, **into_gb), load_gb, make(Op.END)]), 3
    else:
        raise KeyError(f"unknown bad stream {name!r}; choose one of {', '.join(BAD_STREAMS)}")
    return stream_words([make(Op.NOP), insn, make(Op.END)]), 1


assert INSN_BYTES == 32, "accel_tb_top.v addresses 256-bit words as imem_addr[31:5]"


# ---- the functional model as the RTL runs it ----------------------------------------------------

def run_vec_as_rtl(fields: dict, dram: np.ndarray, where: str, dram_bytes: int) -> None:
    """Run the VEC with ``fields`` on ``dram`` (in place) as the RTL's vector executor does: the
    functional model's refusals first, in its order (a malformed descriptor, fields that are not
    the descriptor's, operands or tables outside the ``dram_bytes`` of DRAM, what the operators
    refuse: ``DATA``), then a descriptor its vector unit does
    not build (``hw.rtl.insn.vec_unsupported``: ``UNSUPPORTED``); nothing written when refused."""
    from hw.rtl.insn import vec_unsupported
    from sim.vector_unit import execute_vec

    image = dram.copy()
    why = vec_unsupported(execute_vec(fields, image, where, dram_bytes))
    if why is not None:
        raise StreamError(f"{where}: the RTL's vector unit refuses it: {why}", ErrorCode.UNSUPPORTED)
    dram[...] = image


def rtl_machine(cfg: AcceleratorConfig, dram: np.ndarray, power_on=None):
    """A ``sim.functional.Machine`` that runs its VECs as the RTL does (:func:`run_vec_as_rtl`)."""
    from sim.functional import Machine

    class RtlMachine(Machine):
        def _vec(self, f: dict, off: int) -> None:
            run_vec_as_rtl(f, self.dram, f"VEC at byte offset {off}", cfg.dram_bytes)

    return RtlMachine(cfg, dram, power_on=power_on)
