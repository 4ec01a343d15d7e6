"""The fast cycle-level simulator in timing mode: a whole network on one configuration.

Each layer is lowered to its instruction stream (``mapper.lower``) and the
stream is scheduled cycle by cycle under the ISA's timing contract
(``hw.timing.schedule``).  Layers are separated by FENCE, so a network's time
is the sum of its layers' times plus the decode's start and the final END; identical layer shapes are
mapped and scheduled once.  Element-wise operations the post-processing unit
applies on the fly (ReLU, GELU, folded batch-norm directly after a MAC layer)
and concatenations (producers store at a channel offset, ``k_pitch``) cost no
instruction; a softmax can be fused into the producing layer's stores (an
epilogue), and the other non-MAC layers are VEC passes (``mapper.fusion``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import numpy as np

from hw.cli import StageTicker
from hw.config import IDEAL_MEMORY, AcceleratorConfig
from hw.isa import Op, VecOp, fields_key
from hw.timing import DECODE_STAGES, RUN_OVERHEAD, schedule, occupancy_and_latency, vec_lane_floor, vec_row_cycles
from mapper.ir import INPUT, MAC_KINDS, Model, min_dram_bytes, operand_bytes, weight_bytes
from mapper.fusion import STAGE_OP, vec_stream
from mapper.residency import gb_fields, planned
from mapper.lower import Lowered, MappingError, layer_cycles, map_layer, _insn
from mapper.program import DramCapacityError, ProgramError, check_weights_fit, dram_footprint

from .energy import EnergyModel
from .events import count_events

__all__ = ["LayerResult", "SimResult", "simulate", "layer_schedule", "least_cycles", "IDEAL_MEMORY"]

#: The events of DRAM accesses: what on-chip energy leaves out.
DRAM_EVENTS = ("dram_read_bytes", "dram_write_bytes")


@dataclass
class LayerResult:
    name: str
    kind: str
    part: str
    shape: str
    macs: int
    cycles: int
    compute_cycles: int          # cycles the MAC array is busy (GEMM latencies)
    stall_cycles: int            # cycles of the layer in which the MAC array waits
    utilization: float           # useful MACs / (cycles x MACs per cycle)
    energy_pj: float
    events: Counter
    energy_breakdown: dict
    mapping: str
    instructions: int
    start_cycle: int = 0         # its first instruction's dispatch (the decode's first stages before)
    bound: str = ""              # the resource whose floor is highest (see ``floors``)
    least_cycles: float = 0.0    # no mapping of this step is faster (``least_cycles``)
    fused_least_cycles: float = 0.0   # nor any schedule keeping small tensors on chip (``fused_least_cycles``)

    @property
    def energy_onchip_pj(self) -> float:
        """Energy without the DRAM accesses (see ``SimResult.energy_onchip_pj``)."""
        return self.energy_pj - sum(self.energy_breakdown.get(k, 0.0) for k in DRAM_EVENTS)

    @property
    def floors(self) -> dict:
        return _floors(self.events, self._cfg, self._vector_floor) if self._cfg else {}

    _cfg: Optional[AcceleratorConfig] = field(default=None, repr=False, compare=False)
    _vector_floor: float = field(default=0.0, repr=False, compare=False)    # ``vector_floor``

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "kind", "part", "shape", "macs", "cycles", "compute_cycles",
                                          "stall_cycles", "utilization", "energy_pj", "mapping",
                                          "instructions", "start_cycle", "bound", "least_cycles",
                                          "fused_least_cycles", "energy_onchip_pj")}
        d["floors"] = self.floors
        d["energy_per_mac_pj"] = self.energy_pj / self.macs if self.macs else None
        d["events"] = dict(self.events)
        return d


@dataclass
class SimResult:
    model: str
    variant: str
    config: AcceleratorConfig
    layers: list[LayerResult]
    total_cycles: int
    total_macs: int
    energy_pj: float
    area_mm2: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def time_ms(self) -> float:
        return self.total_cycles / (self.config.clock_ghz * 1e6)

    @property
    def energy_uj(self) -> float:
        return self.energy_pj * 1e-6

    @property
    def utilization(self) -> float:
        return self.total_macs / (self.total_cycles * self.config.macs_per_cycle)

    @property
    def energy_onchip_pj(self) -> float:
        """Energy without the DRAM accesses: what a power analysis of the accelerator alone reports
        (the paper's PrimeTime figures)."""
        return sum(r.energy_onchip_pj for r in self.layers)


def _floors(ev: Counter, cfg: AcceleratorConfig, vector: float) -> dict:
    """Lower bounds on a layer's cycles from each resource it uses: from its events, and the
    vector unit's (``vector_floor``: a row lane runs every stage of a chain on an element in one
    go, so element operations over lanes would overstate it).  The bus floor takes every bus byte
    at ``gb_bus_bytes`` a cycle, though a LOAD_PARAM beat carries at most
    ``hw.timing.param_beat_bytes``: looser, still a floor, where that is less than the bus."""
    return {
        "compute": ev["mac"] / cfg.macs_per_cycle,
        "dram_read": ev["dram_read_bytes"] / cfg.dram_bytes_per_cycle,
        "dram_write": ev["dram_write_bytes"] / cfg.dram_bytes_per_cycle,
        "bus": ev["bus_bytes"] / cfg.gb_bus_bytes,
        "vector": vector,
    }


def vector_floor(step, cfg: AcceleratorConfig) -> float:
    """The cycles a VEC step keeps the row lanes busy (``hw.timing.vec_row_cycles``: its groups of
    rows and their walks; a walk can outlast a group's rows on many lanes), or without rows its
    work over the lanes (``hw.timing.vec_lane_floor``); 0 for other steps (a STORE's softmax
    epilogue runs in its own post-processors, timed with the STORE)."""
    if step.action != "vector":
        return 0.0
    f = step.vec.f
    return vec_row_cycles(f, cfg.vector_lanes) if f["rows"] else vec_lane_floor(f, cfg.vector_lanes)


def least_cycles(step, cfg: AcceleratorConfig, in_dram: float = 1.0, out_dram: float = 1.0) -> float:
    """Cycles no mapping of a plan step can beat on ``cfg``: the largest of its MACs at the
    array's full rate, its vector work at the vector unit's rate (``hw.timing.vec_lane_floor``),
    and its least DRAM traffic (``mapper.ir.min_dram_bytes``; a VEC's own bytes) at the DRAM
    rate; for MAC steps (a band chain as a group) the on-chip bus too, and only the shares
    ``in_dram`` and ``out_dram`` of its input and output through DRAM (the rest kept in the
    global buffer by residency).  Zero for a step without an instruction of its own."""
    bw = cfg.dram_bytes_per_cycle
    if step.action == "mac":
        return _mac_group_floor(cfg, step.layer.macs, [step.layer], in_dram, out_dram)
    if step.action == "chain":       # the group: its first input and every weight read, its output written
        return _mac_group_floor(cfg, step.chain.macs, [m.layer for m in step.chain.members], in_dram, out_dram)
    if step.action == "vector":
        f = step.vec.f
        return max(vec_lane_floor(f, cfg.vector_lanes), f["bytes_in"] / bw, f["bytes_out"] / bw)
    return 0.0


@dataclass(frozen=True)
class OnChip:
    """What the fused floor keeps on chip: every activation of at most ``capacity`` bytes (the
    global buffer) except the network's input and outputs, which go through DRAM."""
    tensor_bytes: dict
    dram_tensors: frozenset
    capacity: int

    @classmethod
    def of(cls, model: Model, cfg: AcceleratorConfig) -> "OnChip":
        sizes = {INPUT: int(np.prod(model.input))}
        sizes.update({layer.name: int(np.prod(layer.out_shape)) for layer in model.layers})
        return cls(sizes, frozenset([INPUT, *model.output_names]), cfg.global_buf_bytes)

    def in_dram(self, tensor: str) -> bool:
        return tensor in self.dram_tensors or self.tensor_bytes.get(tensor, 0) > self.capacity

    def dram_share(self, tensors) -> float:
        """The share, by size, of ``tensors`` that must cross DRAM (0 when all stay on chip)."""
        sizes = {t: self.tensor_bytes.get(t, 0) for t in tensors}
        total = sum(sizes.values())
        return sum(v for t, v in sizes.items() if self.in_dram(t)) / total if total else 0.0


def fused_least_cycles(step, cfg: AcceleratorConfig, on_chip: OnChip) -> float:
    """``least_cycles`` when every tensor that fits on chip stays there (``OnChip``): the MACs at
    full rate, the vector work, only the weights and the tensors that do not fit at the DRAM
    rate, and the on-chip bus: every byte into the PEs (weights and activations, from DRAM or
    the buffer) and every byte written into the buffer at ``gb_bus_bytes`` a cycle.  A floor for
    any layer-fused schedule: it ignores that fused tensors share the buffer."""
    if step.action == "mac":
        layer = step.layer
        return _mac_group_floor(cfg, layer.macs, [layer], on_chip.dram_share(layer.inputs or (INPUT,)),
                                on_chip.dram_share([step.output or layer.name]))
    if step.action == "chain":
        members = [m.layer for m in step.chain.members]
        return _mac_group_floor(cfg, step.chain.macs, members, on_chip.dram_share(members[0].inputs or (INPUT,)),
                                on_chip.dram_share([step.output]))
    if step.action == "vector":
        vp, f = step.vpass, step.vec.f
        reads = f["bytes_in"] * on_chip.dram_share(set(vp.buffers) - set(vp.writes))
        writes = f["bytes_out"] * on_chip.dram_share(vp.writes)
        bw = cfg.dram_bytes_per_cycle
        return max(vec_lane_floor(f, cfg.vector_lanes), reads / bw, writes / bw)
    return 0.0


def _dram_shares(step, resident: dict, on_chip: OnChip) -> tuple[float, float]:
    """(share of a MAC step's inputs, of its output) by size that its program keeps in DRAM
    (residency keeps the others in the global buffer): 1.0, 1.0 for other steps."""
    if step.action not in ("mac", "chain"):
        return 1.0, 1.0
    first = step.chain.members[0].layer if step.action == "chain" else step.layer
    inputs = first.inputs or (INPUT,)
    sizes = [on_chip.tensor_bytes.get(t, 0) for t in inputs]
    total = sum(sizes)
    in_dram = sum(n for t, n in zip(inputs, sizes) if t not in resident) / total if total else 1.0
    return in_dram, 0.0 if step.output in resident else 1.0


def _mac_group_floor(cfg: AcceleratorConfig, macs: int, layers: list, in_dram: float, out_dram: float) -> float:
    """The floor of MAC layers run as one group (one layer, or a band chain) whose first input
    and output cross DRAM in the shares ``in_dram`` and ``out_dram`` (the rest stays on chip):
    every weight (and a later product's second operand) read once from DRAM; on the on-chip bus
    every layer's input and weights into the PEs and every output but the group's last (and
    that one where it stays on chip) into the buffer."""
    bw, bus = cfg.dram_bytes_per_cycle, cfg.gb_bus_bytes
    # a later product's second operand too: every band reads it from DRAM
    weights = weight_bytes(layers[0]) + sum(operand_bytes(layer) for layer in layers[1:])
    act_in = min_dram_bytes(layers[0])[0] - weight_bytes(layers[0])
    out = min_dram_bytes(layers[-1])[1]
    into_pes = sum(min_dram_bytes(layer)[0] for layer in layers)
    into_buffer = sum(min_dram_bytes(layer)[1] for layer in layers[:-1]) + out * (1 - out_dram)
    return max(macs / cfg.macs_per_cycle, (weights + act_in * in_dram) / bw, out * out_dram / bw,
               into_pes / bus, into_buffer / bus)


def _stream_stats(lowered: Lowered, cfg: AcceleratorConfig) -> tuple[Counter, int]:
    """(events, MAC-array busy cycles) of a lowered layer, computed once per cached mapping."""
    cached = getattr(lowered, "_stats", None)
    if cached is None:
        ev: Counter = Counter()
        busy = 0
        for insn, n in _distinct(lowered.stream):
            for k, v in count_events(insn, cfg).items():
                ev[k] += v * n
            if insn.op == Op.GEMM:
                busy += occupancy_and_latency(insn, cfg)[1] * n
        cached = (ev, busy)
        lowered._stats = cached
    return cached


def _distinct(stream: list) -> list:
    """(instruction, how many times its fields occur) of each distinct instruction of ``stream``
    (``hw.isa.fields_key``), in the order of first occurrence: a stream repeats its GEMMs and loads,
    and counting each once (the events are integers) gives the same sums, their keys in the same order."""
    seen: dict = {}
    for insn in stream:
        key = fields_key(insn) or id(insn)
        got = seen.get(key)
        if got is None:
            seen[key] = [insn, 1]
        else:
            got[1] += 1
    return list(seen.values())


def _timed_cycles(lowered: Lowered, mapped_for: AcceleratorConfig, timing: AcceleratorConfig) -> int:
    """Cycles of a lowered layer's stream on ``timing``: its own cycles when that is the configuration
    it was mapped for, else scheduled again (once per configuration)."""
    if timing == mapped_for:
        return lowered.cycles
    cache = getattr(lowered, "_timed", None)
    if cache is None:
        cache = lowered._timed = {}
    if timing not in cache:
        cache[timing] = layer_cycles(lowered.stream, timing)
    return cache[timing]


def _mapping(step, lowered: Lowered, gb: dict) -> str:
    """A MAC step's mapping in words: its tiling and what its STOREs add."""
    t = lowered.tiling
    return (f"{lowered.problem.kind} pe {t.pe_k}x{t.pe_p} tile {t.th}x{t.tw} cblk/chunk {t.cbi}"
            f"{' resident' if t.resident else ''}{' whole groups' if t.whole_groups else ''}"
            f"{' folded' if lowered.problem.fold else ''}"
            f"{' +' + step.epilogue if step.epilogue else ''}"
            f"{' +' + step.act_layer if step.act_layer else ''}"
            f"{' in<-gb' if gb['in_gb'] else ''}{' out->gb' if gb['out_gb'] else ''}")


def layer_schedule(lowered: Lowered, cfg: AcceleratorConfig):
    """Per-instruction schedule of a lowered layer on its own (for traces)."""
    return schedule(lowered.stream + [_insn(Op.END)], cfg)


def mapping_refusal(config_name: str, error: BaseException) -> str:
    """The one-line refusal of a network some layer of which ``config_name`` cannot map."""
    return f"cannot map onto configuration {config_name}: {error}"


def require_dram_fit(model: Model, cfg: AcceleratorConfig, *, fuse: bool = True, mac_only: bool = False,
                     announce: Optional[str] = None) -> None:
    """``mapper.program.DramCapacityError`` if the program of ``model`` on ``cfg`` does not fit its
    DRAM (``dram_mib``).  It maps every layer (seconds for SegFormer-B2 on E, minutes for a large
    network on a small configuration; a simulation after it finds the mappings cached), so with
    ``announce`` it says so on stderr under that name while it runs (``hw.cli.StageTicker``).  A
    MAC-only timing, or a network that is timed but cannot execute, has no image to check."""
    if mac_only:
        return
    check_weights_fit(model, cfg)
    with StageTicker(announce or "", enabled=announce is not None) as ticker:
        ticker.stage("checking that its program fits the DRAM (mapping the layers)")
        try:
            dram_footprint(model, cfg, fuse=fuse)
        except DramCapacityError:
            raise
        except (ProgramError, MappingError):     # the simulation reports what it cannot map or run
            pass


def simulate(model: Model, cfg: AcceleratorConfig, *, progress: Optional[Callable[[str], None]] = None,
             energy: Optional[EnergyModel] = None, mac_only: bool = False, fuse: bool = True,
             ideal_memory: bool = False, band_rows: int = 0) -> SimResult:
    """Simulate ``model`` on ``cfg`` in timing mode; ``progress(name)`` is called per layer.

    ``mac_only`` leaves the non-MAC layers out of the time and energy (they are
    listed with zero cycles), which with ``ideal_memory`` is how the paper's
    accelerator figures compare.  ``ideal_memory`` keeps the mappings (and fusion
    choices) made for ``cfg``'s memory and times them with ``IDEAL_MEMORY``: the
    energy is that of mappings fit for a real DRAM, not of mappings that move
    any amount of data because bandwidth is free.  The result's ``config`` is the
    configuration timed.  ``fuse=False`` runs every non-MAC layer on its own
    (``mapper.fusion``), to measure what fusion saves.  A band chain (``mapper.bands``) is one
    step: its row carries the chain's cycles, MACs and events, its other layers none (and the chain's start)
    (``band_rows`` forces its band height, as ``mapper.bands.plan_chains``).
    """
    timing = cfg.replace(**IDEAL_MEMORY) if ideal_memory else cfg
    energy = energy or EnergyModel(cfg)
    results: list[LayerResult] = []
    on_chip = OnChip.of(model, cfg)
    clock = 0
    steps, resident = planned(model, cfg, mac_only=mac_only, fuse=fuse, band_rows=band_rows)
    chains = []
    for step in steps:
        if progress:
            progress(step.layer.name)
        work = _step_work(step, cfg, timing, resident)
        if step.action == "chain":
            chains.append(_chain_figures(step.chain, work.cycles, cfg, timing))
        # the decode's first stages come before any layer: the first is dispatched at DECODE_STAGES
        results.append(_layer_result(step, work, DECODE_STAGES + clock, cfg, timing, energy, resident, on_chip))
        clock += work.cycles
    _start_where_done(steps, results)
    total = clock + RUN_OVERHEAD   # the decode's first stages and END
    return SimResult(model.name, model.variant, timing, results, total, model.total_macs,
                     sum(r.energy_pj for r in results),
                     extra={"mac_only": mac_only, "fuse": fuse, "gb_resident": len(resident),
                            "band_chains": chains})


def _start_where_done(steps, results: list[LayerResult]) -> None:
    """A row whose work another step does (``Step.into``: fused, an epilogue, merged, banded) starts
    where that step does, not where the plan's order leaves it (after it, or at a chain's end)."""
    by_name = {st.layer.name: st for st in steps}
    starts = {r.name: r.start_cycle for r in results}
    for step, row in zip(steps, results):
        doer = step
        while doer.into in by_name:      # a GELU fused into a banded layer: the chain's step
            doer = by_name[doer.into]
        row.start_cycle = starts[doer.layer.name]


class _StepWork(NamedTuple):
    """What one step's instructions do: its cycles (timed on the timing configuration), the MAC
    units' busy cycles, its instruction count, its events and how it was mapped."""
    cycles: int
    busy: int
    instructions: int
    events: Counter
    mapping: str


def _step_work(step, cfg: AcceleratorConfig, timing: AcceleratorConfig, resident) -> _StepWork:
    if step.action in ("mac", "chain"):
        return _mac_work(step, cfg, timing, resident)
    if step.action == "vector":
        stream = vec_stream(step)
        ev: Counter = Counter()
        for insn in stream:
            ev.update(count_events(insn, cfg))
        members = len(step.vpass.members)
        mapping = "vector unit" + (f" ({VecOp(step.vec.f['vec_op']).name.lower()}, {members} layers)"
                                   if members > 1 else "")
        return _StepWork(layer_cycles(stream, timing), 0, len(stream), ev, mapping)
    return _StepWork(0, 0, 0, Counter(), step.mapping_note)


def _mac_work(step, cfg: AcceleratorConfig, timing: AcceleratorConfig, resident) -> _StepWork:
    """A MAC layer's (its parts', each ``repeat`` times) or a band chain's streams, summed; a
    chain's timed as one stream, its parts joined (``mapper.stitch``)."""
    gb = gb_fields(step, resident) if step.action == "mac" else {}
    parts = (map_layer(step.layer, cfg, **step.map_args, **gb) if step.action == "mac"
             else [(lo, 1) for lo in step.chain.lowered])
    busy = 0
    ev: Counter = Counter()
    for lowered, repeat in parts:
        e, b = _stream_stats(lowered, cfg)
        busy += b * repeat
        for k, v in e.items():
            ev[k] += v * repeat
    chain = step.chain
    if chain:
        cycles = chain.cycles if timing == cfg else layer_cycles(list(chain.stream), timing)
        return _StepWork(cycles, busy, len(chain.stream), ev, chain.describe())
    cycles = sum(_timed_cycles(lo, cfg, timing) * n for lo, n in parts)
    return _StepWork(cycles, busy, sum(len(lo.stream) * n for lo, n in parts), ev, _mapping(step, parts[0][0], gb))


def _layer_result(step, work: _StepWork, clock: int, cfg: AcceleratorConfig, timing: AcceleratorConfig,
                  energy: EnergyModel, resident, on_chip: OnChip) -> LayerResult:
    """The report's row of ``step``, started at ``clock``: energy, utilisation, floors and bound."""
    layer, cycles = step.layer, work.cycles
    macs = _step_macs(step)
    util = macs / (cycles * cfg.macs_per_cycle) if cycles else 0.0
    floors = _floors(work.events, timing, vector_floor(step, timing))
    bound = max(floors, key=floors.get) if cycles else "-"
    return LayerResult(layer.name, layer.kind, layer.part, layer.shape_str, macs, cycles, work.busy,
                       max(0, cycles - work.busy) if macs else 0, util, energy.energy_pj(work.events),
                       work.events, energy.breakdown(work.events), work.mapping, work.instructions, clock, bound,
                       least_cycles(step, timing, *_dram_shares(step, resident, on_chip)),
                       fused_least_cycles(step, timing, on_chip),
                       _cfg=timing, _vector_floor=vector_floor(step, timing))


def _chain_figures(chain, cycles: int, cfg: AcceleratorConfig, timing: AcceleratorConfig) -> dict:
    """A band chain for the report: its layers, bands, the cycles its row has (``cycles``, timed on
    ``timing``) and those of its layers one by one timed alike (the planner's, on ``cfg``, are not
    what an ideal-memory run times)."""
    alone = chain.layer_cycles if timing == cfg else sum(
        _timed_cycles(lo, cfg, timing) * n for m in chain.members
        for lo, n in map_layer(m.layer, cfg, **m.map_args))
    return {"layers": list(chain.names), "rows": chain.rows, "bands": len(chain.bands), "cycles": cycles,
            "layer_by_layer_cycles": alone, "fences_dropped": len(chain.joints.dropped)}


def _step_macs(step) -> int:
    """The MACs a step's row reports: a chain's are its layers' (the others in it report none)."""
    if step.action == "chain":
        return step.chain.macs
    return 0 if step.action == "banded" else step.layer.macs
