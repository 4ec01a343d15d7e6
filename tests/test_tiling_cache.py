"""The mapper's tilings remembered on disk (``mapper.tiling_cache``): a remembered answer gives
the same mapping as a search, refusals keep each layer's own name, and a cache that cannot be
written or is turned off changes nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import get_config
from mapper import tiling_cache
from mapper.ir import Conv2d
from mapper.lower import MappingError, _map_problem, map_layer
from mapper.workloads import build_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache folder of the test's own, empty, the in-process answers forgotten."""
    monkeypatch.setitem(tiling_cache._state, "dir", tmp_path / "tilings")
    monkeypatch.setitem(tiling_cache._state, "on", True)
    _map_problem.cache_clear()
    yield tmp_path / "tilings"
    _map_problem.cache_clear()


def _conv(name="c", c=64, k=64, hw=16):
    return Conv2d(name, "encoder", c, k, hw, hw, kernel=3, padding=1)


def test_a_remembered_tiling_maps_as_the_search_does(private_cache):
    cfg = get_config("small")
    searched, n = map_layer(_conv(), cfg)[0]
    assert len(list(private_cache.glob("*.json"))) == 1
    _map_problem.cache_clear()                        # the next answer comes from the file
    remembered, m = map_layer(_conv("other name"), cfg)[0]
    assert (remembered.tiling, remembered.cycles, remembered.candidates, m) == \
        (searched.tiling, searched.cycles, searched.candidates, n)
    assert remembered.stream == searched.stream and remembered.layout == searched.layout


def test_a_configuration_differing_in_name_clock_or_dram_size_shares_the_answer(private_cache):
    """Neither a tiling nor its cycles depend on these fields: a user's copy of small with another
    DRAM size maps from small's answers (make test's custom configurations rely on it)."""
    from dataclasses import replace
    cfg = get_config("small")
    searched, _ = map_layer(_conv(), cfg)[0]
    _map_problem.cache_clear()
    other = replace(cfg, name="mine", clock_ghz=2.0, dram_mib=8)
    remembered, _ = map_layer(_conv(), other)[0]
    assert len(list(private_cache.glob("*.json"))) == 1
    assert (remembered.tiling, remembered.cycles) == (searched.tiling, searched.cycles)
    map_layer(_conv(), replace(cfg, input_buf_bytes=cfg.input_buf_bytes // 2))
    assert len(list(private_cache.glob("*.json"))) == 2, "a buffer's size is timed: its own answer"


def test_a_remembered_refusal_names_its_own_configuration(private_cache, monkeypatch):
    """A refusal's reason may name the configuration: a configuration of another name that shares
    its key searches again rather than repeat a reason naming the other one."""
    from dataclasses import replace
    cfg = get_config("small")
    seen = []
    monkeypatch.setattr(tiling_cache, "lookup", lambda p, c, top: seen.append(p) or
                        {"refused": "no tiling fits the buffers of configuration small", "config": "small"})
    with pytest.raises(MappingError, match="configuration small$"):
        map_layer(_conv(), cfg)
    _map_problem.cache_clear()
    lowered, _ = map_layer(_conv(), replace(cfg, name="mine"))[0]       # searched: it maps
    assert lowered.cycles > 0 and len(seen) == 2


def test_a_refusal_is_remembered_and_names_each_layer(private_cache):
    """SegFormer-B0's first depthwise convolution on small cannot gather from the global buffer
    (its groups' channels are no whole words of C0, whatever the tiling): a refusal of the search."""
    model, cfg = build_model("segformer_b0", size=(32, 32)), get_config("small")
    first, second = (model.layer(f"stage0.block{i}.mlp.dwconv") for i in (0, 1))
    with pytest.raises(MappingError, match=f"^{first.name}: its LOAD_INPs from the global buffer") as one:
        map_layer(first, cfg, in_gb=136)
    assert len(list(private_cache.glob("*.json"))) == 1
    _map_problem.cache_clear()
    with pytest.raises(MappingError, match=f"^{second.name}: its LOAD_INPs from the global buffer") as other:
        map_layer(second, cfg, in_gb=136)
    assert str(one.value).removeprefix(first.name) == str(other.value).removeprefix(second.name)


def test_an_input_stored_with_gaps_has_its_own_answer(private_cache):
    """Whether a layer folds its taps depends on its input's pitch (``mapper.lower.may_fold``): a
    16-channel 3x3 convolution folds on e_small when its input is stored alone, not when the input
    is a part of a 32-channel concatenation or kept in the global buffer at a wider pitch; each is
    remembered apart, and a remembered answer is never the other's."""
    cfg, conv = get_config("e_small"), _conv(c=16, k=8)
    alone, gapped = (map_layer(conv, cfg, in_pitch=pitch)[0][0] for pitch in (16, 32))
    assert alone.problem.fold and not gapped.problem.fold
    assert len(list(private_cache.glob("*.json"))) == 2
    _map_problem.cache_clear()                        # the next answers come from the files
    assert [map_layer(conv, cfg, in_pitch=pitch)[0][0].tiling for pitch in (0, 32)] == [alone.tiling, gapped.tiling]
    assert not map_layer(conv, cfg, in_gb=64)[0][0].problem.fold


def test_an_unwritable_or_disabled_cache_changes_nothing(private_cache, monkeypatch, tmp_path):
    (tmp_path / "a file").write_text("")
    monkeypatch.setitem(tiling_cache._state, "dir", tmp_path / "a file" / "tilings")   # no folder can be made
    lowered, _ = map_layer(_conv(), get_config("small"))[0]
    assert lowered.cycles > 0
    monkeypatch.setitem(tiling_cache._state, "dir", private_cache)
    _map_problem.cache_clear()
    with tiling_cache.disabled():
        assert map_layer(_conv(), get_config("small"))[0][0].tiling == lowered.tiling
    assert not private_cache.exists()


def test_the_environment_turns_it_off(tmp_path):
    code = ("from mapper import tiling_cache; import sys; "
            "sys.exit(0 if tiling_cache.lookup(None, None, 0) is None and not tiling_cache._state['on'] else 1)")
    env = {**os.environ, "MAGNET_TILING_CACHE": "0"}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0
