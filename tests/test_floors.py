"""The time floors of the report: lower bounds that no mapping may beat.

``mapper.ir.min_dram_bytes`` and ``sim.simulator.least_cycles`` claim that no
mapping of a layer is faster; the simulator's own mappings must respect that on
every layer of several networks and configurations, or one of them is wrong.
"""

import pytest

from hw.config import get_config
from mapper.ir import Add, Conv2d, Linear, MatMul, min_dram_bytes
from mapper.workloads import build_model
from sim.run import _bounds
from sim.simulator import simulate


def test_min_dram_bytes_reads_what_the_windows_touch():
    full = Conv2d("c", "encoder", in_ch=8, out_ch=16, in_h=10, in_w=10, kernel=3, padding=1)
    assert min_dram_bytes(full) == (10 * 10 * 8 + 16 * 8 * 9, 10 * 10 * 16)
    # a 1x1 stride-2 convolution (ResNet's downsampling shortcut) reads every other row and column
    skip = Conv2d("d", "encoder", in_ch=8, out_ch=16, in_h=10, in_w=9, kernel=1, stride=2)
    assert min_dram_bytes(skip) == (5 * 5 * 8 + 16 * 8, 5 * 5 * 16)
    dw = Conv2d("w", "encoder", in_ch=8, out_ch=8, in_h=4, in_w=4, kernel=3, padding=1, groups=8)
    assert min_dram_bytes(dw) == (4 * 4 * 8 + 8 * 9, 4 * 4 * 8)
    assert min_dram_bytes(Linear("l", "encoder", tokens=5, in_features=3, out_features=7)) == (5 * 3 + 3 * 7, 5 * 7)
    assert min_dram_bytes(MatMul("m", "encoder", batch=2, m=5, k=3, n=7)) == (2 * (5 + 7) * 3, 2 * 5 * 7)


def test_min_dram_bytes_refuses_a_non_mac_layer():
    with pytest.raises(TypeError, match="not a MAC layer"):
        min_dram_bytes(Add("a", "encoder", inputs=("x", "y")))


CASES = [("segformer_b0", (128, 128)), ("swin_tiny", None), ("resnet50", None), ("detr", (256, 256))]


#: Every case on E, on A (another array shape) and with memory no limit; make test runs SegFormer-B0
#: on E with and without the memory limit, the rest is ``slow`` (``make regress``): make test is
#: near its 15 minutes.  Swin-T's and ResNet-50's default runs on E are make test's pinned figures,
#: which check these floors on the same result.
FLOOR_RUNS = [pytest.param(name, size, config,
                           marks=[] if (name, config) in (("segformer_b0", "E"), ("segformer_b0", "E-ideal"))
                           else [pytest.mark.slow])
              for name, size in CASES for config in ("E", "A", "E-ideal")]


@pytest.mark.parametrize("name,size,config", FLOOR_RUNS)
def test_no_layer_beats_its_floor(name, size, config):
    assert_floors_hold(simulate(build_model(name, size=size), get_config(config.split("-")[0]),
                                ideal_memory=config == "E-ideal"))


def assert_floors_hold(res) -> None:
    """No layer of the simulated ``res`` beats its floor, and the whole network's floors nest."""
    for r in res.layers:
        assert r.least_cycles <= r.cycles, (r.name, r.least_cycles, r.cycles)
        assert (r.least_cycles > 0) == (r.cycles > 0), r.name
    b = _bounds(res)
    assert b["mac_floor_cycles"] <= b["layer_floor_mac_layers_cycles"] <= b["layer_floor_cycles"]
    assert b["layer_floor_cycles"] <= b["resource_floor_cycles"] + 1e-6
    assert b["resource_floor_cycles"] <= res.total_cycles


def test_floors_without_dram_limit_are_the_compute_floors():
    """With memory no limit, a MAC layer's floor is its MACs at full rate."""
    res = simulate(build_model("resnet50"), get_config("E"), mac_only=True, ideal_memory=True)
    b = _bounds(res)
    assert b["layer_floor_cycles"] == pytest.approx(b["mac_floor_cycles"], rel=1e-3)


def test_ideal_memory_times_the_mappings_made_for_the_real_memory():
    """Memory no limit changes the time of a mapping, not the mapping: the MAC layers' events (and so
    their DRAM traffic and energy) are those of the default run, and no layer gets slower."""
    model, cfg = build_model("segformer_b0", size=(128, 128)), get_config("E")
    real, ideal = simulate(model, cfg), simulate(model, cfg, ideal_memory=True)
    assert ideal.config.dram_bytes_per_cycle > cfg.dram_bytes_per_cycle and real.config == cfg
    for a, b in zip(real.layers, ideal.layers):
        assert b.cycles <= a.cycles, a.name
        if a.macs:
            assert a.events == b.events and a.mapping == b.mapping, a.name


@pytest.mark.parametrize("name,size", [("segformer_b0", (128, 128)),
                                       pytest.param("swin_tiny", (224, 224), marks=pytest.mark.slow)])
def test_fused_floor_keeps_what_fits_on_chip(name, size):
    """Keeping tensors on chip only removes traffic: every step's fused floor is at most its
    layer-by-layer floor, strictly less for some, and equal to it when nothing fits on chip."""
    model = build_model(name, size=size)
    res = simulate(model, get_config("E"))
    assert all(r.fused_least_cycles <= r.least_cycles + 1e-9 for r in res.layers)
    assert any(r.fused_least_cycles < r.least_cycles for r in res.layers)
    nothing_fits = simulate(model, get_config("E").replace(global_buf_bytes=64))
    for r in nothing_fits.layers:
        assert r.fused_least_cycles == pytest.approx(r.least_cycles, rel=1e-12, abs=1e-9), r.name
    b = _bounds(res)
    assert b["mac_floor_cycles"] <= b["fused_floor_cycles"] <= b["layer_floor_cycles"]


def test_fused_floor_counts_the_on_chip_bus():
    """A tensor kept on chip still crosses the bus into the PEs (``gb_bus_bytes`` a cycle, here the
    DRAM's 128 B): a layer with few channels and its tensors on chip is bound by that bus."""
    from sim.simulator import _mac_group_floor
    cfg = get_config("E", gb_bus_bytes_per_cycle=128)
    layer = Linear("l", "encoder", tokens=1024, in_features=64, out_features=64)
    into_pes = 1024 * 64 + 64 * 64
    assert layer.macs / cfg.macs_per_cycle < into_pes / cfg.gb_bus_bytes
    assert _mac_group_floor(cfg, layer.macs, [layer], 0.0, 0.0) == into_pes / cfg.gb_bus_bytes
    wide = cfg.replace(gb_bus_bytes_per_cycle=1 << 16)
    assert _mac_group_floor(wide, layer.macs, [layer], 0.0, 0.0) == layer.macs / cfg.macs_per_cycle
    # its output kept on chip goes through the buffer's write port as well
    out_bound = Linear("o", "encoder", tokens=1024, in_features=8, out_features=256)
    assert _mac_group_floor(cfg, out_bound.macs, [out_bound], 0.0, 0.0) == 1024 * 256 / cfg.gb_bus_bytes


def test_floors_hold_where_tensors_stay_on_chip():
    """With a slow DRAM, residency keeps tensors (attention scores included) in the global
    buffer: a layer's floor counts only what still crosses DRAM, and no resource floor (the
    vector unit's: a row lane runs a whole chain on an element) exceeds a layer's cycles."""
    # on E (its mappings build in 3 s from a cold cache, tiny's in 22) with 2 B/cycle of DRAM
    res = simulate(build_model("segformer_b0", size=(32, 32)), get_config("E", dram_bytes_per_cycle=2))
    assert res.extra["gb_resident"] > 0
    assert_floors_hold(res)
    for r in res.layers:
        assert max(r.floors.values()) <= r.cycles + 1e-9, (r.name, r.floors, r.cycles)


def test_the_vector_floor_counts_the_row_walk():
    """With many row lanes a VEC's rows fill one group, whose walk (a row a cycle per lane group)
    outlasts the rows' work: the vector unit's floor is the rows' time on the lanes
    (``hw.timing.vec_row_cycles``), so such a pass is bound by the vector unit, not its DRAM bytes."""
    from hw.timing import vec_lane_floor, vec_row_cycles
    cfg = get_config("E", vector_lanes_per_pe=1024)      # E maps fast from a cold cache
    res = simulate(build_model("segformer_b0", size=(32, 32)), cfg)
    vecs = [r for r in res.layers if r.mapping.startswith("vector unit") and r.cycles]
    assert vecs
    walked = 0
    for r in vecs:
        assert r.floors["vector"] <= r.cycles, (r.name, r.floors, r.cycles)
        walked += r.bound == "vector"
    assert walked > len(vecs) // 2, [(r.name, r.bound, r.floors) for r in vecs]
    # the walk of one group of a few rows is most of it: the lanes' share of the work is far less
    f = {"rows": 24, "row_cycles": 16}
    assert vec_row_cycles(f, cfg.vector_lanes) > 10 * vec_lane_floor(f, cfg.vector_lanes)
