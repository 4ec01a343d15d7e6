"""VEC passes for the cosimulation: one VEC instruction and END on a DRAM image, and what the RTL must do.

Two kinds of case, each a JSON spec the testbench rebuilds:

* ``{"name", "chain", "seed"}``: a random pass of ``vec_passes.CHAINS`` (element-wise chains,
  softmax, layernorm, in place), its descriptor placed after its operands;
* ``{"name", "model", "size", "stages", "fuse"}``: the first VEC pass of a network's
  whole-network program whose stages are ``stages``, on the DRAM image the program has when
  it reaches the pass (``sim.functional`` runs the program up to there), so that the pass
  reads the network's own activations and parameters.  With ``"through": <layer>`` the
  network ends at that layer (the layers before a pass compute what the whole network's do:
  ResNet-50's max pool needs its stem, not the 50 layers after it, whose mapping took a
  minute of the default run).

:func:`expected_vec` gives the final image (``cosim.accel_cases.rtl_machine``: the functional
model, refusing what the RTL's vector unit does not build) or the error code, and the cycles of
``hw.timing.schedule``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from hw import vector as vec
from hw.config import AcceleratorConfig
from hw.isa import ErrorCode, Insn, Op, StreamError, make
from hw.timing import schedule
from vec_passes import CHAINS, IN_PLACE, random_pass

from cosim.accel_cases import rtl_machine

__all__ = ["ExpectedVec", "expected_vec", "chain_specs", "zoo_specs", "placed_pass"]

#: Bytes of DRAM after a placed descriptor: the fetch reads whole beats of VEC_FETCH_BYTES.
DESCRIPTOR_SLACK = 64
#: Header flags that pop or push tokens: cleared on a pass taken out of its program.
TOKEN_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


@dataclass
class ExpectedVec:
    stream: list[Insn]
    descriptor: vec.Descriptor
    dram_in: np.ndarray
    dram_out: np.ndarray | None     # None when the RTL must refuse the pass
    cycles: int                     # the schedule's total of the stream
    code: ErrorCode | None = None   # the error the RTL must raise
    why: str = ""


def chain_specs(seed: int, chains=None) -> list[dict]:
    """One random pass of each chain of ``vec_passes.CHAINS`` (or of ``chains``)."""
    return [{"name": f"vec_{chain}", "chain": chain, "seed": seed} for chain in (chains or CHAINS)]


def zoo_specs(model: str, size: int, passes: dict, through: str | None = None) -> list[dict]:
    """The first pass of each stage list in ``passes`` (``{name: (stages, fuse)}``) of ``model``'s program
    (of its layers up to ``through``, when given)."""
    return [{"name": name, "model": model, "size": size, "stages": list(stages), "fuse": fuse}
            | ({"through": through} if through else {}) for name, (stages, fuse) in passes.items()]


def expected_vec(spec: dict, cfg: AcceleratorConfig) -> ExpectedVec:
    """The stream, the image and what the RTL must do with them for the case ``spec``."""
    insn, d, dram = _zoo_pass(spec, cfg) if "model" in spec else _chain_pass(spec)
    stream = [insn, make(Op.END)]
    cycles = schedule(stream, cfg).total_cycles
    machine = rtl_machine(cfg, dram.copy())
    try:
        machine.run(stream)
    except StreamError as e:
        return ExpectedVec(stream, d, dram, None, cycles, e.code, str(e))
    return ExpectedVec(stream, d, dram, machine.dram, cycles)


def _chain_pass(spec: dict) -> tuple[Insn, vec.Descriptor, np.ndarray]:
    rng = np.random.default_rng(int(spec["seed"]))
    d, image = random_pass(rng, CHAINS[spec["chain"]], in_place=spec["chain"] in IN_PLACE)
    insn, dram = placed_pass(d, image)
    return insn, d, dram


def placed_pass(d: vec.Descriptor, image: np.ndarray) -> tuple[Insn, np.ndarray]:
    """(its VEC, the image with ``d``'s bytes after it): the descriptor placed after its operands."""
    raw = vec.encode_descriptor(d)
    dram = np.concatenate([image, np.frombuffer(raw, np.uint8), np.zeros(DESCRIPTOR_SLACK, np.uint8)])
    return make(Op.VEC, desc_addr=image.size, **vec.vec_fields(d)), dram


def _zoo_pass(spec: dict, cfg: AcceleratorConfig) -> tuple[Insn, vec.Descriptor, np.ndarray]:
    program = _program(spec["model"], int(spec["size"]), bool(spec["fuse"]), cfg.name, spec.get("through"))
    for i, insn in enumerate(program.stream):
        if insn.op != Op.VEC:
            continue
        d = _descriptor(program.image, insn)
        if [st.op.name for st in d.stages] == spec["stages"]:
            from sim.functional import Machine
            machine = Machine(cfg, program.image.copy())
            machine.run(program.stream[:i])
            fields = {k: v for k, v in insn.f.items() if k not in TOKEN_FLAGS}
            return make(Op.VEC, **fields), d, machine.dram
    raise ValueError(f"{spec['model']} at {spec['size']}: no VEC pass of stages {spec['stages']}")


def stage_lists(program) -> set[tuple[str, ...]]:
    """The stage lists (operator names) of ``program``'s VEC passes."""
    return {tuple(st.op.name for st in _descriptor(program.image, insn).stages)
            for insn in program.stream if insn.op == Op.VEC}


def _descriptor(image: np.ndarray, insn: Insn) -> vec.Descriptor:
    a = insn.f["desc_addr"]
    return vec.decode_descriptor(bytes(image[a:a + vec.MAX_DESCRIPTOR_BYTES]))


@functools.lru_cache(maxsize=4)
def _program(model: str, size: int, fuse: bool, config_name: str, through: str | None = None):
    from hw.config import get_config
    from mapper.images import preprocess, quantize_input, synthetic_image
    from mapper.program import build_program
    from sim.inference import network_parameters

    from cosim.program_cases import build_network

    net = build_network({"model": model, "size": size})
    if through:
        names = [layer.name for layer in net.layers]
        if through not in names:
            raise ValueError(f"{model}: no layer {through!r} to end the network at")
        net = replace(net, layers=net.layers[:names.index(through) + 1], outputs=())
    q = network_parameters(net, 0)[1]
    x = quantize_input(preprocess(synthetic_image(size, size, 1)))
    return build_program(q, get_config(config_name), image=x, fuse=fuse)
