"""Accelerator files (hw.config_file): every preset round-trips through TOML, a file equal to E gives
the report CFG=E gives, bad files are refused with one line naming the key, and every tool takes one."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hw.config import PRESETS, get_config
from hw.config_file import ConfigError, config_label, config_toml, load_config
from sub_make import run_make

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(config_toml(get_config(name)))
    assert load_config(str(path)) == get_config(name)
    assert config_label(load_config(str(path))) == name


def test_base_aliases_and_default_name(tmp_path):
    path = tmp_path / "e32.toml"
    path.write_text('base = "E"\nnum_pe = 32\nweight_kib = 256\nk0c0 = 16\nclock_ghz = 1\n')
    cfg = load_config(str(path))
    assert cfg == get_config("E").replace(name="e32", num_pe=32, weight_buf_bytes=256 * 1024, k0=16, c0=16,
                                          clock_ghz=1.0)
    assert config_label(cfg).startswith("e32-")


def test_a_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Windows editors begin UTF-8 files with a BOM, which tomllib refuses at line 1, column 1."""
    path = tmp_path / "e32.toml"
    path.write_bytes(b"\xef\xbb\xbf" + 'base = "E"\nnum_pe = 32\n'.encode())
    assert load_config(str(path)) == get_config("E").replace(name="e32", num_pe=32)


@pytest.mark.parametrize("text, needles", [
    ('base = "E"\nnum_pes = 8\n', ["unknown key 'num_pes'", "num_pe,"]),
    ('base = "E"\nnum_pe = 100\n', ["num_pe must be at most 64", "100"]),
    ('base = "tiny"\nvector_lanes_per_pe = 1000000\n', ["vector_lanes_per_pe must be at most 1024", "1000000"]),
    ('base = "E"\nk0 = "wide"\n', ["key 'k0' must be an integer", "'wide'"]),
    ('base = "E"\nweight_buf_bytes = 1000\n', ["weight_buf_bytes (1000) must be a multiple"]),
    # the key the user wrote and the bytes it needs, not a derived count of rows
    ('base = "E"\nweight_buf_bytes = 2048\n', ["weight_buf_bytes (2048) is too small", "at least 4096"]),
    ('base = "E"\ninput_buf_bytes = 32\n', ["input_buf_bytes (32) is too small", "at least 128"]),
    ('base = "Q"\n', ["key 'base' must name a preset", "'Q'"]),
    ('num_pe = 4\n', ["key 'k0' is required without a 'base'"]),
    ('base = "E"\nweight_kib = 64\nweight_buf_bytes = 65536\n', ["'weight_buf_bytes' sets weight_buf_bytes",
                                                                "'weight_kib'"]),
    ('num_pe = [\n', ["not valid TOML"]),
    # buffers deeper than the ISA's address fields reach: refused here, not by the mapper (or the RTL
    # generator, which took 11 GB of memory on a 1 GiB weight buffer) later
    # ... said in the unit of the key the file used (the limits were in bytes)
    ('base = "E"\nk0c0 = 64\nweight_kib = 1048576\n', ["weight_kib must be at most 262144 KiB",
                                                       "LOAD_WGT.dst_addr", "not 1048576"]),
    ('base = "E"\ninput_kib = 65536\n', ["input_kib must be at most 2048 KiB", "65536 rows of C0 bytes",
                                         "not 65536"]),
    ('base = "E"\ninput_buf_bytes = 67108864\n', ["input_buf_bytes must be at most 2097152 bytes",
                                                  "not 67108864"]),
    ('base = "E"\nglobal_buf_kib = 0\n', ["global_buf_kib must be a positive integer, not 0"]),
    ('base = "E"\nk0c0 = 64\nweight_kib = 1\n', ["weight_kib (1) must be a multiple of K0*C0 = 4 KiB"]),
    ('base = "E"\naccum_depth = 8192\n', ["accum_depth must be at most 4096", "STORE.acc_addr"]),
    ('base = "E"\nparam_depth = 8192\n', ["param_depth must be at most 4096", "STORE.param_addr"]),
])
def test_bad_files_are_one_line_naming_the_key(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for n in needles:
        assert n in msg, msg


def test_an_edited_accelerator_file_is_never_overwritten(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('base = "E"\nnum_pe = 32\n')
    r = _cli("-m", "hw.config_file", "--config", "E", "--out", str(mine))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "never overwritten" in r.stderr, r.stderr
    assert mine.read_text() == 'base = "E"\nnum_pe = 32\n'
    again = tmp_path / "e.toml"                 # writing the same text again is harmless
    assert all(_cli("-m", "hw.config_file", "--config", "E", "--out", str(again)).returncode == 0 for _ in range(2))


def test_an_out_folder_gets_the_configurations_file_and_a_file_of_another_kind_is_refused(tmp_path):
    """As make flops and make onnx: a folder gets <name>.toml; OUT=x.bin is no TOML file."""
    r = _cli("-m", "hw.config_file", "--config", "E", "--out", str(tmp_path))
    assert r.returncode == 0 and tomllib.loads((tmp_path / "E.toml").read_text())["num_pe"] == 16, r.stderr
    r = _cli("-m", "hw.config_file", "--config", "E", "--out", str(tmp_path / "x.bin"))
    assert r.returncode == 2 and "writes a .toml file" in r.stderr and not (tmp_path / "x.bin").exists()


def test_an_out_without_a_suffix_is_a_folder_as_for_make_flops(tmp_path):
    """``make config OUT=newdir`` wrote a file named newdir, where make flops and make onnx make a folder."""
    r = _cli("-m", "hw.config_file", "--config", "E", "--out", str(tmp_path / "newdir"))
    assert r.returncode == 0, r.stderr
    assert tomllib.loads((tmp_path / "newdir" / "E.toml").read_text())["num_pe"] == 16


def test_a_file_equal_to_E_gives_the_same_report_as_E(tmp_path):
    r = _cli("-m", "hw.config_file", "--config", "E", "--out", str(tmp_path / "e.toml"))
    assert r.returncode == 0, r.stderr
    assert tomllib.loads((tmp_path / "e.toml").read_text())["num_pe"] == 16
    reports = []
    for cfg in ("E", str(tmp_path / "e.toml")):
        out = tmp_path / f"out{len(reports)}"
        r = _cli("-m", "sim.run", "--model", "segformer_b0", "--size", "32x32", "--config", cfg, "--no-plots",
                 "--quiet", "--out", str(out))
        assert r.returncode == 0, r.stderr
        reports.append((out / "report.json").read_text())
    assert reports[0] == reports[1]
    from mapper.workloads import build_model
    from sim.run import run_dir
    model = build_model("segformer_b0", size=(32, 32))
    assert run_dir(model, load_config(str(tmp_path / "e.toml")), True) == run_dir(model, get_config("E"), True)


def test_make_config_prints_the_file_and_refuses_a_bad_name():
    r = run_make(["-s", "config", "CFG=G"], cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout)["weight_buf_bytes"] == 64 * 1024
    r = _cli("-m", "hw.config_file", "--config", "Z")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'Z'" in r.stderr and ".toml" in r.stderr


@pytest.mark.parametrize("tool", [["sim.run", "--model", "segformer_b0"], ["sim.paths", "--model", "segformer_b0"],
                                  ["sim.rdd", "--model", "segformer_b2"], ["hw.rtl.export", "--top", "pe_array"],
                                  ["sim.sweep", "--model", "segformer_b0", "--configs"]])
def test_every_tool_reads_a_file_and_refuses_a_bad_one(tmp_path, tool):
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "tiny"\nnum_pes = 2\n')
    out = tmp_path / "out"
    args = ["-m", *tool, str(bad)] if tool[-1] == "--configs" else ["-m", *tool, "--config", str(bad)]
    r = _cli(*args, "--out", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'num_pes'" in r.stderr, r.stderr
    assert not out.exists()


def test_verilog_from_a_file(tmp_path):
    path = tmp_path / "tiny8.toml"
    path.write_text('base = "tiny"\nnum_pe = 3\n')
    r = _cli("-m", "hw.rtl.export", "--config", str(path), "--top", "pe_array", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "build" / "verilog" / f"{config_label(load_config(str(path)))}_pe_array"
    assert json.loads((folder / "config.json").read_text())["config"]["num_pe"] == 3


def test_buffers_as_deep_as_the_isa_addresses_map():
    """The deepest input buffer the configuration takes is one the mapper can address (and one
    row more is refused): the limit is the ISA's, not a guess."""
    from hw.config import addressable
    from mapper.ir import Conv2d
    from mapper.lower import map_layer

    rows, _ = addressable("input_rows")
    small = get_config("small")
    deepest = small.replace(input_buf_bytes=rows * small.c0)
    map_layer(Conv2d("c", "encoder", 64, 64, 64, 64, kernel=3, padding=1), deepest)
    with pytest.raises(ValueError, match="input_buf_bytes must be at most"):
        small.replace(input_buf_bytes=(rows + 1) * small.c0)


def test_a_binary_file_as_config_says_what_an_accelerator_file_is(tmp_path):
    path = tmp_path / "model.onnx"          # the network given where the accelerator goes
    path.write_bytes(b"\x08\x08\x12\x07vitaccel\xff\xfe")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert "not a text file" in str(info.value) and "TOML" in str(info.value) and "make config" in str(info.value)


@pytest.mark.parametrize("fields, named", [
    ({"global_buf_bytes": 1000}, "global"),
    ({"num_pe": 3}, "vector_lanes = num_pe x vector_lanes_per_pe = 3 x 4 = 12 must be a power of two"),
    ({"num_pe": 3}, "num_pe = 3 has the odd factor 3, so no vector_lanes_per_pe makes it one"),
    ({"vector_lanes_per_pe": 33}, "= 4 x 33 = 132 must be a power of two"),
    ({"dram_bytes_per_cycle": 64}, "the bus is 64 B, the default max(4 x C0, dram_bytes_per_cycle) at "
                                   "dram_bytes_per_cycle = 64"),
    # a bus set explicitly is named as set, not as the default widened to the DRAM rate
    ({"dram_bytes_per_cycle": 64, "gb_bus_bytes_per_cycle": 64}, "the bus is gb_bus_bytes_per_cycle = 64 as set"),
    ({"gb_bus_bytes_per_cycle": 64}, "the bus is gb_bus_bytes_per_cycle = 64 as set")])
def test_the_rtl_line_asks_what_make_verilog_asks(fields, named):
    """A global buffer the banked RTL cannot build (not a multiple of 2 x its bus), or vector lanes
    its VEC timing cannot divide by with a shift: ``make config`` says so, as ``make verilog``
    refuses it, naming the fields (one rule: ``hw.rtl.export.check_buildable``)."""
    from hw.config_file import rtl_support
    from hw.rtl.export import check_buildable
    odd = get_config("small").replace(**fields)
    with pytest.raises(ValueError) as refused:
        check_buildable(odd)
    assert named in str(refused.value)
    assert rtl_support(odd) == f"cannot build it: {refused.value}"
    assert rtl_support(get_config("small")) == "builds it"


def test_k0_wider_than_the_global_buffers_write_beat_keeps_tensors_in_dram(tmp_path):
    """An accepted file whose K0 (32) is wider than its global buffer's write beat (tiny's 16 bytes):
    a STORE cannot write the buffer (``hw.timing.gb_store_fits``), so the mapper keeps every tensor
    in DRAM; before, it kept one there and the program was refused with a traceback."""
    import numpy as np

    from hw.isa import Op
    from hw.timing import gb_holds_tensors, gb_store_fits, schedule
    from mapper.ir import Conv2d, Model
    from mapper.program import build_program
    from mapper.quantize import random_qmodel
    from sim.functional import check_program
    from sim.simulator import simulate

    path = tmp_path / "k32.toml"
    path.write_text('base = "tiny"\nk0 = 32\nparam_depth = 128\nweight_buf_bytes = 4096\n')
    cfg = load_config(str(path))
    assert cfg.k0 > cfg.gb_bus_bytes and not gb_store_fits(cfg) and not gb_holds_tensors(cfg)
    model = Model("m", "full", (8, 8, 16), (Conv2d("a", "encoder", 16, 32, 8, 8, relu=True),
                                            Conv2d("b", "encoder", 32, 16, 8, 8, inputs=("a",))))
    q = random_qmodel(model, 1)
    x = np.random.default_rng(1).integers(-128, 128, size=model.input).astype(np.int8)
    program = build_program(q, cfg, image=x)
    assert not any(i.op == Op.STORE and i.f["dst_gb"] for i in program.stream)
    assert check_program(program, q, x)["tensors"] == 2
    assert schedule(program.stream, cfg).total_cycles == simulate(model, cfg).total_cycles


def test_a_field_refusal_pickles_and_restates_in_an_aliass_units():
    """A FieldError crosses process boundaries whole (a sweep's workers), and ``in_units_of`` says it
    in KiB for the alias that set the field."""
    import pickle

    from hw.config import FieldError
    from hw.config_file import in_units_of

    with pytest.raises(FieldError) as info:
        get_config("E").replace(global_buf_bytes=1 << 40)
    back = pickle.loads(pickle.dumps(info.value))
    assert str(back) == str(info.value) == "global_buf_bytes must be at most 4294967296 bytes, not 1099511627776"
    assert in_units_of(back, ["k0", "global_buf_kib"]) == "global_buf_kib must be at most 4194304 KiB, not 1073741824"
    assert in_units_of(back, ["weight_kib"]) == str(back)


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "bell\x07", "del\x7f", 'quote" and \\ backslash',
                                  "cr\r\nlf", "\x1b[31mred", "ünïcödé"])
def test_a_name_with_control_characters_round_trips(tmp_path, name):
    """A name holding a newline was written as it is: invalid TOML (only backslash and quote were escaped)."""
    cfg = get_config("E").replace(name=name)
    path = tmp_path / "odd.toml"
    path.write_text(config_toml(cfg))
    assert load_config(str(path)) == cfg


def test_every_field_has_its_own_comment():
    """``make config`` comments each field with its own line of AcceleratorConfig's docstring:
    two fields documented together once both got the pair's sentence."""
    from dataclasses import fields as dataclass_fields
    from hw.config import AcceleratorConfig
    from hw.config_file import field_docs
    docs = field_docs()
    names = [f.name for f in dataclass_fields(AcceleratorConfig)]
    assert set(names) <= set(docs), set(names) - set(docs)
    comments = [docs[n] for n in names]
    assert len(set(comments)) == len(comments), [n for n in names if comments.count(docs[n]) > 1]
