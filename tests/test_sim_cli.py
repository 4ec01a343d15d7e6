"""``python -m sim.run``: report files, stream dump, trace and bad-input handling (run as a subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw.isa import decode_stream, disassemble
from hw.timing import RUN_OVERHEAD

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--model", "segformer_b0", "--size", "64x64", "--config", "small"]
#: The runs that map: SegFormer-B0 at 32x32 on small, which make test maps for other tests too (its
#: tilings cached by then); 64x64 on small is a cold search of about 40 CPU s that no other test needs.
SMALL_32 = ["--model", "segformer_b0", "--size", "32x32", "--config", "small"]
REQUIRED = {"model", "config", "variant", "clock_ghz", "total_cycles", "time_ms", "energy_uj", "total_macs",
            "energy_per_mac_pj", "area_mm2", "config_params", "shares", "layers"}


def run(args, cwd, code=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "sim.run"] if code is None else [sys.executable, "-c", code]
    # catches a hang, not a loaded machine: a cold tiling search of an overridden configuration
    # takes ~50 s on a quiet one
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_report_csv_plots_dump_and_trace(tmp_path):
    layer, other = "stage0.block0.attn.q", "stage0.block0.mlp.fc2"
    r = run([*SMALL_32, "--dump-layer", layer, "--dump-layer", other, "--trace", "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "build" / "sim" / "segformer_b0_small_32x32"      # the size is in the name
    doc = json.loads((out / "report.json").read_text())
    assert REQUIRED <= set(doc)
    assert doc["model"] == "segformer_b0" and doc["config"] == "small" and doc["variant"] == "full"
    assert doc["input"] == [32, 32, 3]                                   # what tells two sizes apart
    assert doc["config_params"]["name"] == "small"
    assert doc["total_macs"] == sum(l["macs"] for l in doc["layers"]) > 0
    assert doc["total_cycles"] == sum(l["cycles"] for l in doc["layers"]) + RUN_OVERHEAD     # + decode start, END
    assert abs(doc["energy_uj"] * 1e6 - sum(l["energy_pj"] for l in doc["layers"])) < 1e-6 * doc["energy_uj"] * 1e6
    onchip = sum(l["energy_onchip_pj"] for l in doc["layers"])
    assert abs(doc["energy_onchip_uj"] * 1e6 - onchip) < 1e-6 * onchip
    for l in doc["layers"]:
        assert {"name", "kind", "macs", "cycles", "energy_pj"} <= set(l)
        assert 0 <= l["energy_onchip_pj"] <= l["energy_pj"]
        if l["events"].get("dram_read_bytes"):                  # DRAM energy is what on chip leaves out
            assert l["energy_onchip_pj"] < l["energy_pj"]
    for dist in ("time", "energy", "energy_onchip"):
        assert abs(sum(doc["shares"]["kind"][dist].values()) - 1) < 1e-9
        assert abs(sum(doc["shares"]["part"][dist].values()) - 1) < 1e-9
    assert "total cycles:" in r.stdout and "assumptions: DRAM 16 B/cycle" in r.stdout
    documented = (REPO / "docs" / "sim_report.md").read_text()
    keys = {*doc, *doc["bounds"], *(k for l in doc["layers"] for k in (*l, *l.get("floors", {})))}
    assert not [k for k in sorted(keys) if f"`{k}`" not in documented], "report.json keys not in docs/sim_report.md"

    with open(out / "layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(doc["layers"])
    assert [row["name"] for row in rows] == [l["name"] for l in doc["layers"]]
    assert sum(int(row["macs"]) for row in rows) == doc["total_macs"]

    for png in ("time_energy.png", "energy_per_mac.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert decode_stream((out / "streams" / f"{other}.bin").read_bytes())[-1].op.name == "END"  # both dumped
    data = (out / "streams" / f"{layer}.bin").read_bytes()
    assert data and len(data) % 32 == 0
    insns = decode_stream(data)
    assert insns[-1].op.name == "END"
    listing = (out / "streams" / f"{layer}.lst").read_text().splitlines()
    header = [line for line in listing if line.startswith(";")]
    assert listing[:len(header)] == header          # the header comes first, then the disassembly
    assert disassemble(insns) == "\n".join(listing[len(header):])
    assert header[0].startswith(f"; layer {layer} (linear, encoder)")
    assert any(h.startswith("; configuration small: 4 PEs") for h in header)
    assert any(h.startswith("; mapping: ") and "pe " in h for h in header)
    assert any("Tiling(" in h for h in header)
    sidecar = json.loads((out / "streams" / f"{layer}.json").read_text())
    assert sidecar["layer"] == layer and sidecar["config"]["name"] == "small"

    trace = json.loads((out / "trace.json").read_text())
    events = trace["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert any(e["pid"] == 1 and e["name"] == layer for e in spans)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
              and e["pid"] == 2}
    assert [tracks[t] for t in (1, 2, 3)] == ["LOAD unit", "COMPUTE unit", "STORE unit"]
    assert any(name.startswith("LOAD -> PE ") for name in tracks.values())
    # every layer with instructions has them in the trace (a small network is detailed in full)
    assert {e["args"]["layer"] for e in spans if e["pid"] == 2} == {l["name"] for l in doc["layers"]
                                                                    if l["instructions"]}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no staging directory left


#: A run with a timing override maps afresh: on e_small (default DRAM latency 20), whose search takes 3 CPU s
#: from a cold cache where small's takes 25; its attention's softmax is a STORE epilogue there too.
E_SMALL_32 = ["--model", "segformer_b0", "--size", "32x32", "--config", "e_small"]


def test_fused_layer_dump_says_who_does_its_work_and_replays_with_its_configuration(tmp_path):
    out = tmp_path / "o"
    r = run([*E_SMALL_32, "--dram-latency", "37", "--dump-layer", "stage0.block0.attn.softmax", "--quiet", "--no-plots",
             "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stage0.block0.attn.softmax has no instructions of its own (epilogue of stage0.block0.attn.qk)" \
        in r.stdout
    stream = out / "streams" / "stage0.block0.attn.qk.bin"      # the stream of the layer doing the work
    assert sorted(p.name for p in stream.parent.iterdir()) == [f"stage0.block0.attn.qk.{e}" for e in
                                                               ("bin", "json", "lst")]
    assert "which does its work" in (out / "streams" / "stage0.block0.attn.qk.lst").read_text()
    doc = json.loads((out / "report.json").read_text())
    qk = next(l for l in doc["layers"] if l["name"] == "stage0.block0.attn.qk")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    replay = subprocess.run([sys.executable, "-m", "sim.replay", str(stream)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    assert "latency 37" in replay.stdout                    # the override it was dumped with
    assert f"{qk['cycles'] + RUN_OVERHEAD} cycles on e_small" in replay.stdout      # + decode start, END


def test_resnet50_on_E_no_plots(tmp_path):
    out = tmp_path / "r"
    r = run(["--model", "resnet50", "--config", "e", "--size", "64x64", "--no-plots", "--quiet", "--out", str(out),
             "--dram-bytes-per-cycle", "64", "--clock-ghz", "1.0", "--gb-bus-bytes-per-cycle", "512"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [".run", "layers.csv", "report.json"]
    doc = json.loads((out / "report.json").read_text())
    from hw.config_file import load_config
    from sim.outputs import config_tag
    overridden = load_config("E", dram_bytes_per_cycle=64, clock_ghz=1.0, gb_bus_bytes_per_cycle=512)
    assert doc["config"] == config_tag(overridden) != "E" and doc["clock_ghz"] == 1.0   # E's tag with its overrides
    assert doc["config_params"]["dram_bytes_per_cycle"] == 64
    assert doc["time_ms"] == pytest.approx(doc["total_cycles"] / 1e6)
    assert doc["config_params"]["gb_bus_bytes_per_cycle"] == 512
    assert "assumptions: DRAM 64 B/cycle" in r.stdout and "KiB on a 512 B/cycle bus" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--model", "nope", "--config", "E"], "segformer_b0"),
    (["--model", "resnet50", "--config", "Z"], "tiny"),
    (["--model", "segformer_b0", "--variant", "bogus", "--config", "E"], "bogus"),
    (["--model", "segformer_b0", "--size", "64by64", "--config", "E"], "HxW"),
    (["--model", "segformer_b0", "--config", "E", "--dram-bytes-per-cycle", "0"], "dram_bytes_per_cycle"),
    (["--model", "segformer_b0", "--config", "E", "--clock-ghz", "-1"], "clock_ghz"),
    (["--model", "segformer_b0", "--config", "E", "--global-buf-kib", "0"], "--global-buf-kib 0: "),
    (["--model", "segformer_b0", "--config", "E", "--dram-mib", "0"], "--dram-mib 0: "),
    (["--model", "segformer_b0", "--config", "E", "--gb-bus-bytes-per-cycle", "-4"], "--gb-bus-bytes-per-cycle -4: "),
    ([*SMALL, "--dump-layer", "no.such.layer"], "stage0.patch_embed"),
])
def test_bad_input_exits_2_without_writing(tmp_path, args, needle):
    r = run(args, tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_mapping_refusal_is_one_line_naming_the_layer(tmp_path):
    """A layer the mapper refuses: one line naming it, status 2, nothing written.  No preset or
    valid accelerator file is known to reach a buffer refusal since a window that overfills the
    input buffer runs a tap at a time (778e98e), so the mapper's buffer check is made to refuse the
    depthwise convolutions here; what is tested is sim.run's handling of the refusal."""
    code = ("import sys\n"
            "import mapper.lower as lower\n"
            "real = lower.check_fits\n"
            "def cramped(p, cfg):\n"
            "    if p.name.endswith('dwconv'):\n"
            "        raise lower.MappingError(f'{p.name}: the input buffer (16 bytes) is too small')\n"
            "    real(p, cfg)\n"
            "lower.check_fits = cramped\n"
            "from sim.run import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    r = run(["--model", "segformer_b0", "--size", "32x32", "--config", "e_small", "--quiet"], tmp_path, code=code)
    assert r.returncode == 2, r.stderr
    line, = r.stderr.strip().splitlines()
    assert "stage0.block0.mlp.dwconv" in line and "input buffer (16 bytes" in line and "Traceback" not in line
    assert list(tmp_path.iterdir()) == []


def test_an_empty_output_folder_is_no_earlier_run(tmp_path):
    """``make sim OUT=<an empty folder>`` said it replaced an earlier run; only a rerun replaces one."""
    (tmp_path / "o").mkdir()
    said = []
    for _ in range(2):
        r = run([*SMALL_32, "--no-plots", "--quiet", "--out", "o"], tmp_path)
        assert r.returncode == 0, r.stderr
        said.append("replacing the earlier run" in r.stdout)
    assert said == [False, True]


def test_a_rerun_names_the_earlier_files_it_did_not_write_again(tmp_path):
    """A rerun into the same folder without --trace or --dump-layer removed the earlier trace and
    streams, saying only that it replaced the earlier run; it now names what went."""
    said = []
    for extra in (["--trace", "--dump-layer", "Conv2DPred"], []):
        r = run([*SMALL_32, "--no-plots", "--quiet", "--out", "o", *extra], tmp_path)
        assert r.returncode == 0, r.stderr
        said.append(r.stdout.splitlines()[-1])
    assert "replacing" not in said[0]
    assert said[1].endswith("(replacing the earlier run of the same name; its streams/Conv2DPred.bin, "
                            "streams/Conv2DPred.json, streams/Conv2DPred.lst, trace.json went with it: "
                            "this run did not write them)"), said[1]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".run", "layers.csv", "report.json"]


def test_a_configuration_the_rtl_cannot_build_gets_a_note(tmp_path):
    """A file with ``gb_bus_bytes_per_cycle = 4`` (below C0) was simulated without a word that make
    verilog refuses it; the report now says so in one note, from the RTL's own predicate."""
    from hw.config_file import load_config
    from hw.rtl.export import unbuildable
    (tmp_path / "narrow.toml").write_text('base = "e_small"\ngb_bus_bytes_per_cycle = 4\n')
    why = unbuildable(load_config(str(tmp_path / "narrow.toml")))
    assert why is not None and unbuildable(load_config("e_small")) is None
    for config, note in (("narrow.toml", f"note: the RTL cannot build narrow (make verilog refuses it): {why}; "),
                         ("e_small", None)):
        r = run([*E_SMALL_32[:4], "--config", config, "--quiet", "--no-plots", "--out", config + ".out"], tmp_path)
        assert r.returncode == 0, r.stderr
        said = [line for line in r.stdout.splitlines() if "RTL" in line]
        assert [line.startswith(note) for line in said] == ([] if note is None else [True]), r.stdout


def test_a_configuration_whose_rtl_has_no_vector_executor_gets_a_note(tmp_path):
    """E's RTL builds without a vector executor and refuses VEC and a STORE's softmax epilogue:
    a run on E whose program has them says that those are the simulator's alone."""
    from hw.config import get_config
    from hw.config_file import rtl_support
    r = run([*E_SMALL_32[:4], "--config", "E", "--quiet", "--no-plots", "--out", "e.out"], tmp_path)
    assert r.returncode == 0, r.stderr
    [said] = [line for line in r.stdout.splitlines() if "RTL" in line]
    assert said.startswith(f"note: the RTL of E: make verilog {rtl_support(get_config('E'))}: this program's "), said
    assert "vector passes" in said and "timed by the simulator alone" in said, said


def test_plot_formats_and_one_colour_per_kind(tmp_path):
    from sim.plots import KIND_COLOURS
    out = tmp_path / "p"
    r = run(["--model", "segformer_b0", "--size", "32x32", "--config", "small", "--quiet", "--format", "pdf,svg",
             "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.*") if p.suffix in (".png", ".pdf", ".svg")) == [
        "energy_per_mac.pdf", "energy_per_mac.svg", "time_energy.pdf", "time_energy.svg"]
    assert (out / "time_energy.pdf").read_bytes()[:5] == b"%PDF-"
    for svg in ("time_energy.svg", "energy_per_mac.svg"):
        text = (out / svg).read_text()
        assert "<svg" in text
        # the same colour stands for conv2d and for linear in both figures
        assert f"fill: {KIND_COLOURS['conv2d']}" in text and f"fill: {KIND_COLOURS['linear']}" in text


def test_network_larger_than_the_dram_is_refused_without_check(tmp_path):
    """SegFormer-B0's weights alone take 4 MB: refused with 1 MiB of DRAM, at once (its weights are
    counted before any layer is mapped), run with 8."""
    for mib, code in ((1, 2), (8, 0)):
        (tmp_path / "d.toml").write_text(f'base = "small"\ndram_mib = {mib}\n')
        r = run([*SMALL_32[:4], "--config", "d.toml", "--out", "o", "--quiet"],
                tmp_path)
        assert r.returncode == code, r.stderr
        if code:
            line, = r.stderr.strip().splitlines()
            assert "its weights alone need" in line and "(dram_mib = 1)" in line
            assert sorted(p.name for p in tmp_path.iterdir()) == ["d.toml"]
    r = run([*SMALL_32, "--dram-mib", "1", "--quiet"], tmp_path)
    assert r.returncode == 2 and "(dram_mib = 1)" in r.stderr.strip()      # the option as the file's field


def test_a_long_layer_name_is_a_file_name_that_fits():
    """An ONNX output named with 300 characters (a file name holds 255 bytes) is cut and hashed."""
    from sim.streams import file_stem
    long_a, long_b = "a" * 299 + "1", "a" * 299 + "2"
    assert len(file_stem(long_a)) <= 120 and file_stem(long_a) != file_stem(long_b)
    assert file_stem("stage0.block0/attn:qk") == "stage0.block0_attn_qk"


def test_the_dram_rate_keeps_its_significant_digits():
    """1 B/cycle at 0.01 GHz is 0.01 GB/s in the report's assumptions, not 0.0."""
    from hw.config import get_config
    from sim.run import assumptions_line
    slow = get_config("E", dram_bytes_per_cycle=1, clock_ghz=0.01)
    assert "DRAM 1 B/cycle (0.01 GB/s), DRAM latency 100 cycles, clock 0.01 GHz" in assumptions_line(slow)
    assert "DRAM 128 B/cycle (160 GB/s)" in assumptions_line(get_config("E"))
    assert "(204.8 GB/s)" in assumptions_line(get_config("E", dram_bytes_per_cycle=1024, clock_ghz=0.2))


def test_a_buffer_of_no_whole_kib_is_said_exactly():
    """sim.run's assumptions line and sim.replay's configuration line wrote ``bytes // 1024``: a
    global buffer of 2 bytes was "0 KiB", one of 24.5 KiB "24 KiB", 4 weight rows of tiny "0 KiB"."""
    from hw.config import get_config
    from sim.run import assumptions_line
    from sim.streams import describe_config
    odd = get_config("tiny").replace(name="odd", global_buf_bytes=25088, weight_buf_bytes=64)
    assert "global buffer 25088 B on" in assumptions_line(odd)
    assert "weight buffer 64 B and input buffer 1 KiB per PE, global buffer 25088 B," in describe_config(odd)
    assert "global buffer 16 KiB on" in assumptions_line(get_config("tiny"))


def test_a_count_of_one_reads_in_the_singular():
    """sim.replay and the --dump-layer listing described a one-PE configuration as "1 PEs"; the
    reports' other counts (tensors, paths, points, cases) said "1 ...s" alike."""
    from hw.cli import counted
    from hw.config import get_config
    from sim.streams import describe_config
    one = get_config("tiny").replace(name="one", num_pe=1)
    assert describe_config(one).startswith("one: 1 PE x K0 4 x C0 4,"), describe_config(one)
    assert describe_config(get_config("tiny")).startswith("tiny: 2 PEs x K0")
    assert [counted(n, "tensor") for n in (0, 1, 2)] == ["0 tensors", "1 tensor", "2 tensors"]
    assert counted(1, "matrix", "matrices") == "1 matrix" and counted(3, "matrix", "matrices") == "3 matrices"


def test_the_other_counts_of_one_read_in_the_singular(monkeypatch, capsys, tmp_path):
    """A check's mismatch said "1 of 1 elements differ", sim.replay "LOAD busy 1 cycles" and make config's
    header "1 MACs/cycle, 1 weight rows" (no configuration reaches one MAC or row a cycle today: the
    header is given one by hand); each count now takes hw.cli.counted."""
    import numpy as np
    import sim.replay
    from hw.config import AcceleratorConfig, get_config
    from hw.config_file import config_toml
    from sim.functional import _first_difference
    one, two = np.array([1]), np.array([1, 1, 1])
    assert "x: 1 of 1 element differs; first at index (0,)" in _first_difference("x", one, one + 1, "tensor")
    assert "x: 2 of 3 elements differ; " in _first_difference("x", two, np.array([2, 2, 1]), "tensor")

    (tmp_path / "s.bin").write_bytes(b"")
    monkeypatch.setattr(sim.replay, "replay", lambda data, cfg: {
        "instructions": 3, "total_cycles": 4, "busy": {"LOAD": 1, "COMPUTE": 2, "STORE": 0}, "counts": {}, "insns": []})
    assert sim.replay.main([str(tmp_path / "s.bin"), "--config", "tiny"]) == 0
    busy = [line for line in capsys.readouterr().out.splitlines() if " busy " in line]
    assert busy == ["  LOAD     busy          1 cycle  ( 25.0 %)", "  COMPUTE  busy          2 cycles ( 50.0 %)",
                    "  STORE    busy          0 cycles (  0.0 %)"], busy

    for derived in ("macs_per_cycle", "weight_rows", "input_rows"):
        monkeypatch.setattr(AcceleratorConfig, derived, property(lambda self: 1))
    assert "# derived: 1 MAC/cycle, 1 weight row, 1 input row, " in config_toml(get_config("tiny"))


def test_a_small_networks_floors_and_traffic_keep_their_digits():
    """A network of a few thousand cycles printed "DRAM traffic: 0.0 MB" beside 30,208 bytes in
    report.json, and every time floor as "0.001 ms"; the report now keeps four significant digits."""
    from sim.run import _bounds_line, _ms_text
    assert _ms_text(0.0012345) == "0.001234 ms" and _ms_text(0.5) == "0.5000 ms"
    assert _ms_text(4.33384) == "4.334 ms" and _ms_text(12.3456) == "12.346 ms" and _ms_text(0) == "0.000 ms"
    keys = ("mac_floor_cycles", "layer_floor_mac_layers_cycles", "layer_floor_cycles", "fused_floor_cycles",
            "resource_floor_cycles", "schedule_overhead_cycles")
    doc = {"time_ms": 0.003, "total_cycles": 3000, "bounds": dict(zip(keys, (1100, 1200, 1300, 1250, 1400, 1600)))}
    line = _bounds_line(doc)
    assert "MACs at full rate 0.001100 ms" in line and "every layer 0.001300 ms" in line
    assert "schedule overhead 0.001600 ms" in line



def test_traffic_keeps_three_digits_past_a_unit():
    """Swin-T's 1,161.3 MB of DRAM traffic printed as "1.2 GB" beside B2's "567.4 MB"."""
    from hw.cli import human_bytes
    assert human_bytes(1_161_300_000) == "1.16 GB" and human_bytes(567_400_000) == "567.4 MB"
    assert human_bytes(5_400_000) == "5.40 MB" and human_bytes(12_300) == "12.3 kB" and human_bytes(512) == "512 B"


def test_an_area_beyond_table_ii_is_marked_extrapolated():
    """sim.run printed a one-PE file's area (0.010 mm^2, 9.7 TMAC/s per mm^2: better than E) with no
    word that the area model is fitted on Table II's presets only; make sweep marked the same point."""
    from hw.config import get_config
    from sim.area import extrapolation
    from sim.run import _extrapolated
    one = get_config("tiny").replace(name="one", num_pe=1, k0=8, c0=16)
    why = extrapolation(one)
    note = _extrapolated({"area_extrapolated": why})
    assert len(why) > 2 and why[0] in note and why[1] in note and f"{len(why) - 2} more in report.json" in note
    assert "K0=8 != C0=16" in " ".join(why)
    assert extrapolation(get_config("E")) == [] and _extrapolated({"area_extrapolated": []}) == ""


def test_a_file_named_as_a_preset_is_reported_by_its_tag_not_as_the_preset(tmp_path):
    """A file with ``base = "small"`` and ``name = "E"`` was reported as ``config E`` (text, report.json
    and the plots' titles, which read it) although its fields are small's; the report names it by its
    tag, as its folder does."""
    from hw.config_file import load_config
    from sim.outputs import config_tag
    accel = tmp_path / "e.toml"
    accel.write_text('base = "small"\nname = "E"\n')
    out = tmp_path / "r"
    r = run(["--model", "segformer_b0", "--size", "32x32", "--config", str(accel), "--no-plots", "--quiet",
             "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    tag = config_tag(load_config(str(accel)))
    assert tag != "E" and tag.startswith("E")
    assert json.loads((out / "report.json").read_text())["config"] == tag
    assert f"config {tag}\n" in r.stdout and "config E " not in r.stdout, r.stdout
