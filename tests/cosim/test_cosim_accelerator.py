"""Cosimulation of the whole exported Accelerator (Verilator + cocotb) on mapper streams.

Each layer's output must equal the golden model (and the whole DRAM image sim.functional's),
and the cycle in which ``done`` rises must equal ``hw.timing.schedule``'s total.  One
Verilator build per configuration (cached under ``build/cosim/accel_tb_top-<key>``) runs all
cases of a pytest test as separate cocotb tests; the wrapper ``accel_tb_top.v`` reloads its
memories for each.

``make test`` runs a handful of tiny cases, a whole-network program of MAC layers
(``cosim.program_cases``) and three malformed streams; the rest (every FIXED
case and random shapes on tiny, small and e_small, segformer_b0 end to end, more seeds) is
``slow``.  ``COSIM_SEED=<n>`` replays a run (the seed is printed with ``-s`` and named in
every failure); ``WAVES=1`` writes ``dump.fst``.
"""

from __future__ import annotations

import functools
import json
import os
import zlib

import pytest

from cosim.accel_cases import (BAD_STREAMS, FIXED, FIXED_BY_NAME, IMEM_WORDS, TB_TOP, accelerator_verilog,
                               imem_words_for, layer_spec, random_layers, tb_build)
from cosim.fuzz import MUTATIONS
from cosim.program_cases import WHOLE_NETWORKS, built_path, built_programs, load_built
from cosim.runner import build_and_run
from cosim.vec_cases import chain_specs, stage_lists, zoo_specs
from hw.config import get_config
from hw.config_file import load_config

TESTBENCH = "cosim.tb_accelerator"
RESULTS_FILE = "accel_results.jsonl"

#: Cases of the default (fast) run on tiny: one of each mapping kind, a few seconds in total (the
#: Amaranth simulations of tests/test_rtl_accelerator.py of the same layers are ``slow``).
FAST_CASES = ("conv1x1", "conv3x3_relu", "conv3x3_s2", "patch7x7_s4", "depthwise", "depthwise_s2", "depthwise5x5",
              "folded_s2", "conv3x3_s2_same", "linear_relu", "attn_qk", "linear_gelu", "conv3x3_sigmoid", "attn_qk_softmax")
#: Malformed streams of the default run: the VEC passes leaving the DRAM (issue 13's bad-input check)
#: besides one of each other kind.
FAST_BAD = ("unknown_opcode", "weight_rows_out_of_range", "gemm_steps_without_pixels", "pe_set_out_of_range", "gb_source_out_of_range",
            "gb_source_unaligned",
            "gb_bank_conflict",
            "token_never_pushed", "token_left_at_end",
            "depthwise_gather_too_wide", "store_pixels_alias", "store_columns_alias", "store_gb_past_end", "gb_write_port_unfenced", "gb_write_port_fenced_then_reused",
            "store_epilogue_partial_row", "vec_operand_past_end",
            "vec_output_below_zero", "vec_table_past_end", "vec_unsupported_past_end", "vec_later_stage_params",
            "vec_channels_disagree", "vec_raster", "vec_spatial_chain_unsupported", "vec_class_map_chain",
            "vec_spatial_result_unread")
#: The whole network of the default run besides the MAC network (SegFormer-B0 on tiny, the slow
#: runs take it on small and e_small: ZOO_PROGRAMS).
TINY_PROGRAM = {"model": "segformer_b0", "size": 32}
#: Differential fuzz cases (cosim.fuzz) of the default run (each mutation once), and per
#: configuration in the slow run.
FAST_FUZZ, SLOW_FUZZ = len(MUTATIONS), 420
#: Fuzz cases that found a bug, run by the default run besides its own, with the outcome each must
#: have: seed 32, case 178 on tiny, a plain STORE then one with a softmax epilogue (the store unit
#: wrote the plain STORE's last beats again with the epilogue's data: tests/test_rtl_accelerator.py);
#: seed 7101, case 1154, a gather from the global buffer of no channel block (the simulator's bank
#: conflict rule failed with a traceback; it writes from accumulators it never defined, so only
#: its cycles are compared); seed 1, case 36, a max pool's chain whose COPY became an ADD without a
#: second operand (the simulator failed with a traceback; a malformed descriptor: DATA); seed 7105,
#: case 271, a softmax whose source reaches past the image and over its result (the simulator took it
#: for an access past the image; the RTL refuses the overlap before it reads: DATA).
FUZZ_REGRESSIONS = ({"seed": 32, "index": 178, "mutation": "softmax_epilogue", "expected": "done"},
                    {"seed": 7101, "index": 1154, "mutation": "field_edge", "expected": "done, data undefined"},
                    {"seed": 1, "index": 36, "mutation": "vec_desc_field", "expected": "error DATA"},
                    {"seed": 7105, "index": 271, "mutation": "vec_desc_field", "expected": "error DATA"})
#: SegFormer-B0's VEC passes at 32x32 on tiny, each alone on its own activations (LAYERNORM->LAYERNORM
#: included; the decoder's first RESIZE and the class map's RESIZE_ARGMAX, which the spatial unit
#: runs; ADD alone is a pass of the unfused program): ``make regress``'s, one pass at a time.  The
#: default run runs them within B0's whole program (``test_accelerator_tiny`` checks they are there).
ZOO_VEC_PASSES = {"seg_add_layernorm": (("ADD", "LAYERNORM"), True), "seg_layernorm": (("LAYERNORM",), True),
                  "seg_softmax": (("SOFTMAX",), True), "seg_add": (("ADD",), False),
                  "seg_layernorm_layernorm": (("LAYERNORM", "LAYERNORM"), True), "seg_resize": (("RESIZE",), True),
                  "seg_class_map": (("RESIZE_ARGMAX",), True)}
#: ResNet-50's max pool (3x3/2, padding 1: 16x16 to 8x8, 64 channels) at 32x32 on tiny, which the
#: spatial unit runs; the network up to it (its stem) is enough to compute its input.
RESNET_VEC_PASSES = {"res_max_pool": (("POOL",), True)}
RESNET_THROUGH = "maxpool"


def fast_vec_passes(seed: int) -> list[dict]:
    """The default run's VEC passes: every chain of vec_passes.CHAINS at random and ResNet-50's max
    pool (B0's fused passes run within its whole program)."""
    return chain_specs(seed) + zoo_specs("resnet50", 32, RESNET_VEC_PASSES, RESNET_THROUGH)


def default_seed(fallback: int) -> int:
    return int(os.environ.get("COSIM_SEED", fallback))


@functools.lru_cache(maxsize=None)
def verilog_of(config_name: str, imem_words: int = IMEM_WORDS) -> tuple[str, float]:
    return accelerator_verilog(load_config(config_name), imem_words=imem_words)


def case_seed(base: int, name: str) -> int:
    """The per-case data seed: derived from the base seed and the case name."""
    return base * 1000 + zlib.crc32(name.encode()) % 1000


def run_records(run_dir) -> list[dict]:
    """What the testbench recorded in a run's directory (each case's line), also of a failed run."""
    path = run_dir / RESULTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run_accelerator(config_name: str, *, seed: int, layers=(), networks=(), programs=(), bad=(), fuzz: int = 0,
                    fuzz_cases=(), vec_passes=(), timeout_s: float = 600, announce: bool = True):
    """Build (cached) and run the testbench; returns the CosimResult and the per-run records.  The
    wrapper's instruction memory holds the longest program (``imem_words_for``); each program is
    built once, here, and handed to the testbench (``built_programs``).  ``fuzz`` cases of
    ``seed`` run, then ``fuzz_cases`` (``{"seed", "index", "mutation"}``).  ``config_name``: a preset
    or an accelerator file (``make fuzz CFG=my.toml``).  ``announce``: print the cases and the
    COSIM_SEED that replays them first (a test's ``-s`` output; a fuzz campaign says its seed itself)."""
    cfg = load_config(config_name)
    programs = built_programs(programs, cfg)
    verilog, export_s = verilog_of(config_name, imem_words_for(length for _, length in programs))
    specs = [{**layer_spec(l), "seed": case_seed(seed, l.name)} for l in layers]
    params = {"config": config_name, "seed": seed, "layers": specs, "networks": list(networks),
              "programs": [p for p, _ in programs], "bad": list(bad),
              "fuzz": {"seed": seed, "count": fuzz, "cases": list(fuzz_cases)} if fuzz or fuzz_cases else None,
              "vec_passes": list(vec_passes)}
    if announce:
        print(f"cosim accelerator {config_name}: COSIM_SEED={seed}; {len(specs)} layers "
              f"({', '.join(s['name'] for s in specs)}), networks {list(networks)}, programs "
              f"{[p['model'] for p, _ in programs]}, bad {list(bad)}, VEC passes {[v['name'] for v in vec_passes]}")
    result = build_and_run(verilog, TB_TOP, TESTBENCH, params=params, timeout_s=timeout_s, options=tb_build(cfg))
    records = run_records(result.run_dir)
    print(f"cosim accelerator {config_name}: export {export_s:.1f} s, build "
          f"{'cached' if result.cached else 'compiled'} in {result.build_s:.1f} s "
          f"({result.build_dir}), run {result.run_s:.1f} s")
    for r in records:
        if r["kind"] == "program":
            print(f"  program {r['case']:<20} {r['instructions']} instructions, {r['tensors']} tensors, "
                  f"cycles RTL {r['rtl_cycles']} == schedule {r['expected_cycles']}  ({r['cpu_s']:.2f} CPU s)")
        elif r["kind"] in ("layer", "network"):
            print(f"  {r.get('case', r.get('network')):<20} cycles RTL {r['rtl_cycles']} == "
                  f"schedule {r['expected_cycles']}  ({r['wall_s']:.2f} s)")
        elif r["kind"] == "fuzz":
            print(f"  fuzz seed {r['seed']}: {r['cases']} cases, {r['disagreements']} disagreements; "
                  f"{r['outcomes']}")
        elif r["kind"] == "vec":
            print(f"  VEC {r['case']:<26} {'>'.join(r['stages']):<26} expected {r['expected']:<11} "
                  f"error {r['error_code']:<11} cycles RTL {r['rtl_cycles']}, schedule {r['expected_cycles']}")
        elif r["kind"] == "bad":
            print(f"  {r['case']:<28} error {r['error_code']} at instruction {r['pc']}, "
                  f"cycle {r['rtl_cycles']}")
    if result.waves:
        print(f"waves: {result.waves}")
    expected = len(specs) + len(networks) + len(programs) + len(bad) + (1 if fuzz or fuzz_cases else 0) + len(vec_passes)
    assert len(result.tests) == expected, \
        f"{len(result.tests)} cocotb tests ran, expected {expected}: {[t.name for t in result.tests]}"
    return result, records


# ---- default run ------------------------------------------------------------------------------

#: test_accelerator_tiny builds tiny's Verilator model; the tests that reuse it run after it, on its worker
TINY_BUILD = pytest.mark.xdist_group("tiny_build")


@TINY_BUILD
def test_accelerator_tiny():
    """The default run; its whole networks: the MAC network and SegFormer-B0 fused, from the image
    to the class map (softmax epilogues, LAYERNORM->LAYERNORM, resizes, the class map)."""
    seed = default_seed(1)
    programs = [{"model": "mac_cnn", "size": 16, "seed": seed}, {**TINY_PROGRAM, "seed": seed}]
    _, records = run_accelerator("tiny", seed=seed, layers=[FIXED_BY_NAME[n] for n in FAST_CASES], programs=programs,
                                 bad=FAST_BAD, fuzz=FAST_FUZZ, fuzz_cases=FUZZ_REGRESSIONS,
                                 vec_passes=fast_vec_passes(seed))
    # the zoo's passes are expected to run (a refusal the RTL agreed with would pass unnoticed)
    zoo = {r["case"]: r["expected"] for r in records if r["kind"] == "vec" and r["case"] in RESNET_VEC_PASSES}
    assert zoo == dict.fromkeys(RESNET_VEC_PASSES, "done"), zoo
    # B0's program holds each fused pass kind that the slow run takes alone
    fused = {stages for stages, fuse in ZOO_VEC_PASSES.values() if fuse}
    b0 = load_built(built_path(programs[1], get_config("tiny"))).program
    assert fused <= stage_lists(b0), (fused, stage_lists(b0))
    # the regressions had the outcomes named (a "done" one's whole image compared by the checker)
    ran = {(r["seed"], r["index"]): r["expected"] for r in records if r["kind"] == "fuzz_case"}
    assert all(ran.get((c["seed"], c["index"])) == c["expected"] for c in FUZZ_REGRESSIONS), ran


@TINY_BUILD
def test_a_campaign_runs_each_seed_and_writes_its_tallies(tmp_path):
    """``make fuzz``: two seeds of a few cases and a replayed one, on tiny's cached build."""
    from cosim import campaign

    out = tmp_path / "camp"
    assert campaign.main(["--seeds", "11-12", "--cases", "3", "--case", "104:889:bit_flip", "--out", str(out)]) == 0
    doc = json.loads((out / "campaign.json").read_text())
    assert [(s["seed"], s["cases"], sum(s["outcomes"].values())) for s in doc["seeds"]] == [(11, 3, 3), (12, 3, 3)]
    assert doc["replayed"] == [{"seed": 104, "index": 889, "mutation": "bit_flip"}] and doc["disagreements"] == []
    assert doc["failed_runs"] == []


# ---- slow ------------------------------------------------------------------------------------

#: Whole fused networks from the image to the output (issue 13, ``cosim.program_cases.WHOLE_NETWORKS``).
ZOO_PROGRAMS = [pytest.param(c, spec, id=f"{c}-{spec['model']}")
                for c, specs in WHOLE_NETWORKS.items() for spec in specs]


@pytest.mark.slow
@pytest.mark.parametrize("config_name, spec", ZOO_PROGRAMS)
def test_whole_network_program(config_name, spec):
    seed = default_seed(7)
    run_accelerator(config_name, seed=seed, programs=[{**spec, "seed": seed}], timeout_s=3600)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "small", "e_small"])
def test_accelerator_all_cases(config_name):
    seed = default_seed(2)
    layers = list(FIXED) + random_layers(seed, 6)
    run_accelerator(config_name, seed=seed, layers=layers, bad=list(BAD_STREAMS), fuzz=SLOW_FUZZ)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["small", "e_small"])
def test_whole_program_of_mac_layers(config_name):
    seed = default_seed(6)
    run_accelerator(config_name, seed=seed, programs=[{"model": "mac_cnn", "size": 24, "seed": seed}])


@pytest.mark.slow      # a Verilator run of its own (the default run's build, cached): about a minute
def test_concatenation_built_in_place_program():
    """``Concat([x, conv1x1(x)])`` built in place (the STOREs at the concatenation's channel offsets)
    and a 3x3 convolution of the part ``x``, unfolded at the concatenation's pitch
    (``cosim.program_cases.dense_concat``), whole on tiny's RTL."""
    seed = default_seed(9)
    run_accelerator("tiny", seed=seed, programs=[{"model": "dense_concat", "size": 16, "seed": seed}])


@pytest.mark.slow      # a Verilator run of its own (the default run's build, cached): about a minute
def test_nested_concatenations_built_in_place_program():
    """``Concat([Concat([x, conv1x1(x)]), conv1x1(...)])``, both built in place in the outer one's
    buffer, offsets and pitch composed (``cosim.program_cases.nested_concat``), whole on tiny's RTL."""
    seed = default_seed(10)
    run_accelerator("tiny", seed=seed, programs=[{"model": "nested_concat", "size": 8, "seed": seed}])


@pytest.mark.slow      # a Verilator run of its own (the default run's build, cached): about a minute
def test_part_of_odd_channels_read_by_a_3x3_convolution_program():
    """``Concat([conv3x3(x), x])`` with ``x`` of 6 channels, the last part at the odd pitch 11
    (``cosim.program_cases.dense_layer``): the 3x3 convolution's LOAD_INPs bound their lanes to
    ``x``'s channels (``chan``), whole on tiny's RTL, cycle for cycle and bit for bit."""
    seed = default_seed(11)
    run_accelerator("tiny", seed=seed, programs=[{"model": "dense_layer", "size": 8, "seed": seed}])


@pytest.mark.slow      # a Verilator run of its own (the default run's build, cached): about a minute
def test_channel_slice_read_inside_a_concatenation_program():
    """YOLOv8's C2f (``cosim.program_cases.c2f``): a split's second half read where it lies, in the
    concatenation's buffer at offset 8, by a 3x3 convolution and a residual add; whole on tiny's
    RTL, cycle for cycle and bit for bit."""
    seed = default_seed(13)
    run_accelerator("tiny", seed=seed, programs=[{"model": "c2f", "size": 8, "seed": seed}])


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "e_small"])
def test_depth_to_space_program(config_name):
    """A sub-pixel upsampler (``cosim.program_cases.pixel_shuffle``): ``DepthToSpace`` as a COPY whose
    source pattern splits each axis at the block, alone and leading a computing pass; a U-Net's up
    path (``up_conv``: transposed convolutions as the importer makes them, one into a concatenation,
    one cropped); ShuffleNetV2's units (``shuffle_unit``: the channel shuffle, one COPY over pixels by
    channels); crops from an origin, by steps (``crops``); whole on the RTL, cycle for cycle and bit
    for bit."""
    seed = default_seed(15)
    run_accelerator(config_name, seed=seed, programs=[{"model": "pixel_shuffle", "size": 6, "seed": seed},
                                                      {"model": "up_conv", "size": 6, "seed": seed},
                                                      {"model": "shuffle_unit", "size": 6, "seed": seed},
                                                      {"model": "crops", "size": 7, "seed": seed}])


@pytest.mark.slow
def test_space_to_depth_program():
    """SpaceToDepth (``cosim.program_cases.space_to_depth``): a COPY stage per row of the blocks over
    the output's pixels at blocks 2 and 3, a COPY through the split write pattern at 6 and of a
    concatenation's part; whole on tiny's RTL, cycle for cycle and bit for bit."""
    seed = default_seed(17)
    run_accelerator("tiny", seed=seed, programs=[{"model": "space_to_depth", "size": 12, "seed": seed}])


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "e_small"])
def test_dilated_convolutions_program(config_name):
    """DeepLab's atrous convolutions (``cosim.program_cases.atrous``: dilations 2 to 4, depthwise,
    grouped, strided), each tap a 1x1 product on a window shifted by the dilation, some wholly in
    the padding: whole on the RTL, cycle for cycle and bit for bit."""
    seed = default_seed(14)
    run_accelerator(config_name, seed=seed, programs=[{"model": "atrous", "size": 9, "seed": seed}])


@pytest.mark.slow
def test_kernels_larger_than_the_weight_buffer_program():
    """13x13 kernels on tiny, whose weight buffer holds 128 taps (``cosim.program_cases.large_kernel``:
    depthwise and grouped), run a tap at a time on shifted windows: whole on the RTL, cycle for
    cycle and bit for bit."""
    seed = default_seed(16)
    run_accelerator("tiny", seed=seed, programs=[{"model": "large_kernel", "size": 7, "seed": seed}])


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "e_small"])
def test_attention_banded_over_its_queries_program(config_name):
    """Attention run band by band of 5 query rows (``cosim.program_cases.attention``): on e_small
    q.k^T's softmax epilogue STOREs each band's scores into the global buffer, .v and the
    projection read them there; on tiny the softmax is a VEC pass and .v -> projection the
    chain.  Whole on the RTL, cycle for cycle and bit for bit."""
    seed = default_seed(12)
    run_accelerator(config_name, seed=seed, programs=[{"model": "attention", "size": 8, "band_rows": 5, "seed": seed}])


@pytest.mark.slow
def test_segformer_passes_one_at_a_time():
    """B0's fused VEC passes, each alone on the activations its program gives it, on tiny (the
    default run runs them within the whole program)."""
    seed = default_seed(1)
    _, records = run_accelerator("tiny", seed=seed, vec_passes=zoo_specs("segformer_b0", 32, ZOO_VEC_PASSES))
    zoo = {r["case"]: r["expected"] for r in records if r["kind"] == "vec"}
    assert zoo == dict.fromkeys(ZOO_VEC_PASSES, "done"), zoo


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["small", "e_small"])
def test_vec_passes_on_more_row_lanes(config_name):
    """The default run's VEC passes on the vector executors of small and e_small (16 and 64 row
    lanes); SegFormer-B0's softmax from its unfused program (fused, these configurations apply
    it in the attention's STORE)."""
    seed = default_seed(8)
    zoo = {**ZOO_VEC_PASSES, "seg_softmax": (("SOFTMAX",), False)}
    run_accelerator(config_name, seed=seed, vec_passes=chain_specs(seed) + zoo_specs("segformer_b0", 32, zoo))


@pytest.mark.slow
def test_segformer_encoder_through_vec_passes():
    """SegFormer-B0 at 32x32 on tiny, unfused (its layernorms, softmaxes and residual adds are VEC
    passes), from the image up to the decoder's first resize (the fused network runs whole in the
    default run)."""
    seed = default_seed(7)
    run_accelerator("tiny", seed=seed, programs=[{"model": "segformer_b0", "size": 32, "fuse": False,
                                                  "until": "DecodeResize1", "seed": seed}], timeout_s=3600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_accelerator_random_tiny(seed):
    seed = default_seed(seed)      # with COSIM_SEED both runs replay that one seed
    run_accelerator("tiny", seed=seed, layers=random_layers(seed, 12))


@pytest.mark.slow
def test_segformer_b0_small_end_to_end():
    seed = default_seed(5)
    result, records = run_accelerator(
        "small", seed=seed, networks=[{"model": "segformer_b0", "size": 64, "seed": seed}],
        timeout_s=1800)
    summary = next(r for r in records if r["kind"] == "network")
    assert summary["rtl_cycles"] == summary["expected_cycles"]
    print(f"segformer_b0 64x64 on small: {summary['layers']} MAC layers, {summary['outputs']} outputs, "
          f"{summary['rtl_cycles']} cycles, {summary['wall_s']:.1f} s simulated")


# ---- the checker itself (no simulator) --------------------------------------------------------

def test_wrapper_instruction_memory_holds_the_longest_program():
    """Runs of programs up to ``IMEM_WORDS`` (Swin-T's 187,286 instructions) share one build; a
    longer one takes the next power of two; a stream longer than the dispatcher addresses is
    refused, naming both lengths."""
    from hw.rtl.dispatch import IMEM_WORDS as RTL_WORDS

    assert imem_words_for([]) == imem_words_for([40_767, IMEM_WORDS]) == IMEM_WORDS
    assert imem_words_for([302, 187_286]) == imem_words_for([1 << 18]) == 1 << 18 == IMEM_WORDS
    assert imem_words_for([(1 << 18) + 1]) == 1 << 19
    with pytest.raises(ValueError, match=f"{RTL_WORDS + 1} instructions is longer than the {RTL_WORDS} words"):
        imem_words_for([RTL_WORDS + 1])


def test_checker_names_case_index_values_and_cycles():
    """A corrupted output byte and a late done are reported with index, hex/decimal values and
    both cycle counts; a run that never finishes is reported as a hang."""
    import logging

    from cosim import tb_accelerator as tb
    from cosim.accel_cases import expected_run

    exp = expected_run(FIXED_BY_NAME["conv1x1"], get_config("tiny"), 1042)
    dram = exp.dram_out.copy()
    lo, _ = exp.output_range
    dram[lo + 5] ^= 0x81
    checker = tb.Checker(logging.getLogger("test"))
    checker.check_run("case 'conv1x1' config tiny seed 1042", exp,
                      tb.Outcome(finished=True, done=1, tb_cycles=exp.cycles + 3,
                                 cycle=exp.cycles + 3, dram=dram))
    text = "\n".join(checker.errors)
    want = int(exp.golden[5])
    assert f"output index 5 (DRAM {lo + 5:#x}): expected 0x{want:02x}" in text, text
    assert f"cycles: RTL {exp.cycles + 3}, schedule {exp.cycles}" in text, text
    assert "difference +3" in text, text
    checker = tb.Checker(logging.getLogger("test"))
    checker.check_run("case 'conv1x1'", exp, tb.Outcome(finished=False, pc=7, cycle=999))
    assert "hang" in checker.errors[0] and "pc 7" in checker.errors[0]
    with pytest.raises(AssertionError, match="1 checker errors"):
        checker.assert_clean()


def test_program_checker_names_the_layer_and_element():
    """A corrupted element of a whole-network program's tensor is reported with its layer, its
    (y, x, c) and both values; an RTL that refuses the program is reported with the error."""
    import logging

    from cosim import tb_accelerator as tb
    from cosim.program_cases import expected_program

    exp = expected_program({"model": "mac_cnn", "size": 12, "seed": 4}, get_config("tiny"))
    program = exp.program
    layer = exp.tensors[0]             # the first tensor in DRAM (the first layers' stay in the global buffer)
    base = program.address(layer)
    pitch = program.storage[layer].pitch
    dram = exp.dram_out.copy()
    dram[base + pitch + 2] ^= 0x40                       # pixel (0, 1), channel 2 of the layer
    checker = tb.Checker(logging.getLogger("test"))
    checker.check_program("program mac_cnn_12", exp,
                          tb.Outcome(finished=True, done=1, tb_cycles=exp.cycles, cycle=exp.cycles, dram=dram))
    want = int(program.read(exp.dram_out, layer)[0, 1, 2])
    assert checker.errors == [f"program mac_cnn_12: layer {layer!r}: 1 of {program.read(dram, layer).size} elements "
                              f"differ from the golden model; first at (y, x, c) = (0, 1, 2): expected {want}, "
                              f"actual {int(program.read(dram, layer)[0, 1, 2])}"], checker.errors
    checker = tb.Checker(logging.getLogger("test"))
    checker.check_program("p", exp, tb.Outcome(finished=True, error=1, error_code=6, pc=9, tb_cycles=40))
    assert checker.errors == [f"p: error UNSUPPORTED at instruction 9; cycles: RTL 40, schedule {exp.cycles}"]
