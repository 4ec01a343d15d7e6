"""A dumped stream replays to the simulator's cycle count; a damaged one is refused with its offset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import get_config
from hw.isa import Op, encode_stream
from hw.timing import RUN_OVERHEAD
from mapper.ir import Conv2d
from mapper.lower import _insn, map_layer
from sim.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def test_replay_equals_mapper_cycles(tmp_path):
    cfg = get_config("small")
    lowered, _ = map_layer(Conv2d("c", "encoder", 24, 20, 12, 12, kernel=3, padding=1), cfg)[0]
    data = encode_stream(lowered.stream + [_insn(Op.END)])
    r = replay(data, cfg)
    assert r["total_cycles"] == lowered.cycles + RUN_OVERHEAD      # the decode's first stage, END
    f = tmp_path / "s.bin"
    f.write_bytes(data[:-7])
    p = subprocess.run([sys.executable, "-m", "sim.replay", str(f), "--config", "small"], capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2
    assert f"truncated instruction at byte offset {len(data) - 32}" in p.stderr


def test_replay_takes_an_accelerator_file_and_says_when_it_is_not_the_dumped_one(tmp_path, capsys):
    from sim.replay import main
    cfg = get_config("small")
    lowered, _ = map_layer(Conv2d("c", "encoder", 24, 20, 12, 12, kernel=3, padding=1), cfg)[0]
    stream = tmp_path / "s.bin"
    stream.write_bytes(encode_stream(lowered.stream + [_insn(Op.END)]))
    (tmp_path / "s.json").write_text(json.dumps({"layer": "c", "model": "m", "config": cfg.to_dict()}))
    accel = tmp_path / "mine.toml"
    accel.write_text('base = "small"\nnum_pe = 8\n')
    assert main([str(stream), "--config", str(accel)]) == 0
    out = capsys.readouterr().out
    assert f"file {accel}" in out and "note: the stream was mapped for small" in out
    assert main([str(stream), "--config", "small"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_configuration_that_differs_only_in_unlisted_fields_names_them(tmp_path, capsys):
    """The note said the stream was mapped for a configuration described by the very line that
    described this one (vector lanes and the bus are not in it), while the cycles changed: the
    fields that differ are named then, and only then."""
    from sim.replay import main
    cfg = get_config("small")
    lowered, _ = map_layer(Conv2d("c", "encoder", 24, 20, 12, 12, kernel=3, padding=1), cfg)[0]
    stream = tmp_path / "s.bin"
    stream.write_bytes(encode_stream(lowered.stream + [_insn(Op.END)]))
    (tmp_path / "s.json").write_text(json.dumps({"layer": "c", "model": "m", "config": cfg.to_dict()}))
    for name, text in (("lanes", 'vector_lanes_per_pe = 16\ngb_bus_bytes_per_cycle = 64\n'), ("pes", "num_pe = 8\n")):
        accel = tmp_path / f"{name}.toml"
        accel.write_text(f'base = "small"\n{text}')
        assert main([str(stream), "--config", str(accel)]) == 0
        note = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("note: the stream"))
        named = ", with gb_bus_bytes_per_cycle = 0 (64 here), vector_lanes_per_pe = 0 (16 here);"
        assert (named in note) == (name == "lanes"), note
        assert "num_pe" not in note and "name =" not in note, note


def test_an_own_configuration_is_told_by_its_fields_not_its_name(tmp_path, capsys):
    """Two accelerator files that both say they are odd1 (the name defaults to the file's stem:
    a/odd1.toml and b/odd1.toml) were told apart by nothing in the note ("mapped for odd1: ...",
    replayed "on odd1"), while a renamed copy of the dumped file was called another configuration
    ("the stream was mapped for odd1 ..., with ;"): which configuration it is goes by its fields
    (``hw.config_file.same_fields``, ``fields_hash``), and the name stays what is printed."""
    from hw.config_file import fields_hash, load_config
    from sim.replay import main
    files = {"a": "a/odd1.toml", "b": "b/odd1.toml", "renamed": "renamed.toml"}
    for key, text in (("a", ""), ("b", "num_pe = 8\n"), ("renamed", "")):
        (tmp_path / files[key]).parent.mkdir(exist_ok=True)
        (tmp_path / files[key]).write_text(f'base = "small"\n{text}')
    cfgs = {key: load_config(str(tmp_path / path)) for key, path in files.items()}
    assert cfgs["a"].name == cfgs["b"].name == "odd1" and cfgs["a"] != cfgs["b"]
    lowered, _ = map_layer(Conv2d("c", "encoder", 24, 20, 12, 12, kernel=3, padding=1), cfgs["a"])[0]
    stream = tmp_path / "s.bin"
    stream.write_bytes(encode_stream(lowered.stream + [_insn(Op.END)]))
    (tmp_path / "s.json").write_text(json.dumps({"layer": "c", "model": "m", "config": cfgs["a"].to_dict()}))

    assert main([str(stream), "--config", str(tmp_path / files["b"])]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("note: the stream"))
    assert note.startswith(f"note: the stream was mapped for another configuration named odd1 too "
                           f"({fields_hash(cfgs['a'])}; this one is {fields_hash(cfgs['b'])}): {cfgs['a'].num_pe} PEs x"), note
    assert fields_hash(cfgs["a"]) != fields_hash(cfgs["b"]) and fields_hash(cfgs["a"]) == fields_hash(cfgs["renamed"])
    assert main([str(stream), "--config", str(tmp_path / files["renamed"])]) == 0
    out = capsys.readouterr().out
    assert "note:" not in out and "cycles on renamed" in out, out


def test_a_listing_is_refused_as_text_naming_the_stream(tmp_path, capsys):
    """``sim.replay conv.lst`` said "unknown opcode 11": the listing's ';' read as an instruction."""
    from mapper.ir import Model
    from sim.replay import main
    from sim.streams import dump_layer
    model = Model("m", "full", (12, 12, 24), (Conv2d("conv", "encoder", 24, 20, 12, 12, kernel=3, padding=1),))
    binary, listing, sidecar = dump_layer(model, "conv", get_config("small"), tmp_path).files
    assert main([str(listing)]) == 2
    err = capsys.readouterr().err
    assert f"{listing} is text (a .lst" in err and f"replay {binary}" in err and err.count("\n") == 1, err
    # the .json sidecar is named as what it is, not as a listing
    assert main([str(sidecar)]) == 2
    err = capsys.readouterr().err
    assert f"{sidecar} is text (a .json" in err and ".lst" not in err and f"replay {binary}" in err, err
    assert main([str(binary)]) == 0
    # without the .bin beside it, no file that does not exist is suggested: how to write one is
    binary.unlink()
    assert main([str(listing)]) == 2
    err = capsys.readouterr().err
    assert str(binary) not in err and "--dump-layer NAME writes it" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("content", [b"A", b"hello world\n", b"x" * 31])
def test_a_file_shorter_than_one_word_is_a_truncated_stream_not_text(tmp_path, capsys, content):
    """A 1-byte file was refused as text; the RTL reads it as a truncated first instruction."""
    from sim.replay import main
    f = tmp_path / "s.bin"
    f.write_bytes(content)
    assert main([str(f), "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert f"truncated instruction at byte offset 0: {len(content)} of 32 bytes" in err and "text" not in err, err


def test_replay_gives_the_rtls_verdict_in_its_order(tmp_path):
    """A stream with two faults is refused for the first the RTL meets, with its error code (a range
    at instruction 0 before a word that is no instruction at 3); words after END are not read."""
    cfg = get_config("small")
    bad_set = _insn(Op.LOAD_PARAM, pe_first=0, pe_count=cfg.num_pe + 1, n_entries=1)
    good = [_insn(Op.FENCE), _insn(Op.FENCE)]
    data = encode_stream([bad_set, *good]) + bytes(32) + encode_stream([_insn(Op.END)])
    f = tmp_path / "s.bin"
    f.write_bytes(data)
    p = subprocess.run([sys.executable, "-m", "sim.replay", str(f), "--config", "small"], capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "RANGE (" in p.stderr and "at instruction 0 (byte 0)" in p.stderr, p.stderr
    after_end = encode_stream([*good, _insn(Op.END)]) + bytes(32) + b"\x01" * 7
    assert replay(after_end, cfg)["instructions"] == 3


def test_a_damaged_sidecar_is_refused_never_completed():
    """Every field the dump writes must be there, of its type: a sidecar lacking
    dram_bytes_per_cycle once replayed at the default (361 cycles for 516)."""
    import dataclasses
    from hw.config import get_config
    from sim.streams import config_from_sidecar
    good = {"model": "segformer_b0", "layer": "q", "config": dataclasses.asdict(get_config("tiny"))}
    assert config_from_sidecar(good) == get_config("tiny")
    cases = [({"dram_bytes_per_cycle": None}, "lacks dram_bytes_per_cycle"),
             ({"name": 5}, "key 'name' must be a non-empty string, not 5"),
             ({"num_pe": "4"}, "key 'num_pe' must be an integer"),
             ({"bogus": 1}, "unknown key 'bogus'")]
    for change, needle in cases:
        config = {k: v for k, v in {**good["config"], **change}.items() if v is not None}
        with pytest.raises(ValueError, match=needle):
            config_from_sidecar({**good, "config": config})
    with pytest.raises(ValueError, match=r"its 'layer' must be a name, not \[1\]"):
        config_from_sidecar({**good, "layer": [1]})


def test_a_vec_the_rtl_does_not_build_is_named_in_a_note():
    """On A to M the RTL has no vector executor and refuses every VEC with UNSUPPORTED: the replay
    says so (it times the contract's cycles); on tiny, which builds one, nothing is said."""
    from hw.isa import make
    from sim.replay import _rtl_refusal
    insns = [make(Op.NOP), make(Op.VEC, work=8, rows=1, row_cycles=8), make(Op.END)]
    note = _rtl_refusal(insns, get_config("A"))
    assert note.startswith("the RTL built for A refuses VEC at instruction 1 with UNSUPPORTED (6)"), note
    assert _rtl_refusal(insns, get_config("tiny")) is None


def test_a_configuration_without_rtl_is_said_in_a_note_and_in_a_refusal(tmp_path, capsys):
    """A replay on a configuration the RTL cannot build (3 PEs: no power-of-two row lanes) printed
    its cycles and refusals as if an RTL ran it; both now say there is none."""
    from hw.isa import make
    from sim.replay import main
    three = tmp_path / "three.toml"
    three.write_text('base = "tiny"\nnum_pe = 3\n')
    good = tmp_path / "good.bin"
    good.write_bytes(encode_stream([make(Op.NOP), make(Op.END)]))
    assert main([str(good), "--config", str(three)]) == 0
    out = capsys.readouterr().out
    assert "note: the RTL cannot build three (vector_lanes = num_pe x vector_lanes_per_pe = 3 x" in out, out
    assert "; the cycles below are the contract's" in out
    bad = tmp_path / "bad.bin"
    bad.write_bytes(good.read_bytes()[:-1])
    assert main([str(bad), "--config", str(three)]) == 2
    assert "(the contract's verdict; the RTL cannot build three (" in capsys.readouterr().err
    assert main([str(good), "--config", "tiny"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_malformed_stream_names_the_unsupported_word_the_rtl_refuses_first(tmp_path, capsys):
    """The RTL's dispatcher asks whether it builds a word before its ranges and tokens: a softmax
    epilogue with the table activation (UNSUPPORTED on tiny) before, or at, a RANGE fault is what the
    RTL raises; the replay said only RANGE.  Its line now names both, as the fuzz expects the RTL."""
    from cosim.fuzz import _static_error
    from hw.isa import Act, encode, make
    from hw.timing import decode_until_end
    from sim.replay import main
    cfg = get_config("tiny")
    store = dict(pe_first=0, pe_count=1, pe_step=1, t_h=1, t_w=1, t_k=4, k_pitch=4, k_per_pe=4, pe_k=1, k_step=4,
                 act=int(Act.TABLE), ep_row=4, out_h=1, out_w=1)
    epilogue = make(Op.STORE, **store)
    past_its_rows = make(Op.STORE, **{**store, "acc_addr": cfg.accum_depth - 1, "out_h": 2, "out_w": 2})
    rows_past = make(Op.LOAD_WGT, pe_first=0, pe_count=1, pe_step=1, dst_addr=cfg.weight_rows - 1, rows=2, n_out=4)
    end = encode(make(Op.END))
    cases = {"before a range": (encode(epilogue) + encode(rows_past) + end, "RANGE (3) at instruction 1", 0),
             "at a range": (encode(past_its_rows) + end, "RANGE (3) at instruction 0", 0),
             "before a zero word": (encode(epilogue) + bytes(32) + end, "OPCODE (1) at instruction 1", 0),
             "after a range": (encode(rows_past) + encode(epilogue) + end, "RANGE (3) at instruction 0", None)}
    for name, (data, verdict, unsupported_at) in cases.items():
        stream = tmp_path / "s.bin"
        stream.write_bytes(data)
        assert main([str(stream), "--config", "tiny"]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and verdict in err, (name, err)
        rtl = _static_error(data, decode_until_end(data)[0], cfg)[0]
        if unsupported_at is None:
            assert "UNSUPPORTED" not in err and rtl.code.name == "RANGE", (name, err)
        else:
            first = f"refuses STORE at instruction {unsupported_at} with UNSUPPORTED (6) first"
            assert err.rstrip().endswith(first), err
            assert (rtl.code.name, rtl.index) == ("UNSUPPORTED", unsupported_at), name


@pytest.mark.parametrize("name", ["conv", "relu"])     # relu: fused, the stream of conv
def test_the_listing_header_counts_instructions_as_the_json_does(tmp_path, name):
    """The ``.lst`` header gave each part's count without END, the ``.json`` its total with END: the
    header's total counts END as the ``.json``, ``sim.replay`` and the ``.bin`` do."""
    import re
    from hw.isa import INSN_BYTES
    from mapper.ir import Activation, Model
    from sim.streams import dump_layer
    layers = (Conv2d("conv", "encoder", 24, 20, 12, 12, kernel=3, padding=1),
              Activation("relu", "encoder", "relu", inputs=("conv",)))
    binary, listing, sidecar = dump_layer(Model("m", "full", (12, 12, 24), layers), name, get_config("small"),
                                          tmp_path).files
    lines = listing.read_text().splitlines()
    totals = [int(m[1]) for line in lines if (m := re.match(r"; (\d+) instructions? in all, END included", line))]
    n = json.loads(sidecar.read_text())["instructions"]
    assert totals == [n], lines[:8]
    assert n == len(binary.read_bytes()) // INSN_BYTES == sum(not line.startswith(";") for line in lines)
    assert n == replay(binary.read_bytes(), get_config("small"))["instructions"]
