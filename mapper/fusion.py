"""Which non-MAC layers run on their own and which are fused into a neighbour.

The IR lists a network's operations; this plan decides how each one executes,
so that the simulator, the report and the stream dump agree:

* ``mac``: a MAC layer's own stream, possibly with a fused row epilogue
  (``post_passes`` extra post-processing passes over each stored tile);
* ``epilogue``: a softmax or layernorm whose only input is the preceding MAC
  layer, which has no other consumer, done by that layer's STOREs while the
  rows are still on chip; chosen only when a tiling with whole rows per STORE
  exists and the fused layer is faster than the two separately;
* ``fused``: ReLU, GELU or folded batch-norm applied by the post-processing
  unit as the preceding MAC layer's outputs pass (no extra time);
* ``zero-copy``: a concatenation (its producers store at a channel offset);
* ``vector``: one VEC instruction.  Consecutive element-wise layers along the
  data flow (each reading the previous one's output) form one ``CHAIN`` pass:
  it reads the chain's outside inputs once, writes the last output and every
  intermediate another layer still needs (a residual sum feeding a layernorm
  and the next residual add), and costs the sum of the members' element
  operations; the members after the first are ``merged``.  The final
  upsampling of a segmentation network's logits is ``RESIZE_ARGMAX``, which
  writes the class map (the per-pixel argmax the mIoU is measured on) instead
  of the logits.

Epilogues and vector operations are timed, not executed: functional mode and
the RTL carry data through the MAC layers only (``docs/isa.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hw.config import AcceleratorConfig
from hw.isa import Insn, Op, VecOp
from hw.timing import VEC_COST

from .ir import LAYOUT_KINDS, MAC_KINDS, Conv2d, Layer, Linear, Model
from .lower import MappingError, _insn, layer_cycles, map_layer

__all__ = ["Step", "plan", "vec_stream", "ROW_EPILOGUE_PASSES", "POINTWISE_OPS", "VEC_OP_OF"]

VEC_OP_OF = {"softmax": VecOp.SOFTMAX, "layernorm": VecOp.LAYERNORM, "gelu": VecOp.GELU,
             "relu": VecOp.RELU, "sigmoid": VecOp.GELU, "add": VecOp.ADD, "mul": VecOp.MUL,
             "resize": VecOp.RESIZE, "concat": VecOp.CONCAT, "pool": VecOp.POOL,
             **{kind: VecOp.COPY for kind in LAYOUT_KINDS}}
#: Element-wise operations the post-processing unit applies to the preceding MAC layer's output.
POINTWISE_OPS = ("relu", "gelu", "sigmoid")
#: Extra post-processing passes of a row epilogue: the first pass (requantisation) also finds the
#: row maximum / sum; then one pass for exp-and-sum (softmax) or variance (layernorm) and one to normalise.
ROW_EPILOGUE_PASSES = {"softmax": 2, "layernorm": 2}


@dataclass(frozen=True)
class Step:
    layer: Layer
    action: str                        # mac, epilogue, fused, zero-copy, vector, merged, excluded
    post_passes: int = 0               # mac: passes of a fused row epilogue ...
    epilogue: str = ""                 # ... and its operation
    vec: Optional[Insn] = None         # vector: its VEC instruction
    into: str = ""                     # epilogue / fused / merged: the layer that does the work

    @property
    def mapping_note(self) -> str:
        return {"epilogue": f"epilogue of {self.into}", "fused": "fused", "zero-copy": "zero-copy",
                "merged": f"merged into {self.into}", "excluded": "excluded (MAC layers only)",
                "constant": "constant (in the DRAM image)"}.get(self.action, "")


def _vec(op: VecOp, elements: int, bytes_in: int, bytes_out: int) -> Insn:
    return _insn(Op.VEC, vec_op=int(op), elements=elements, bytes_in=bytes_in, bytes_out=bytes_out)


def vec_stream(step: Step) -> list[Insn]:
    """The instructions of a step that runs on the vector unit (ending with FENCE)."""
    return [step.vec, _insn(Op.FENCE)] if step.vec is not None else []


def _consumers(model: Model) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for layer in model.layers:
        for src in layer.inputs:
            users.setdefault(src, []).append(layer.name)
    return users


def _mac_cycles(layer: Layer, cfg: AcceleratorConfig, post_passes: int = 0) -> int:
    return sum(lo.cycles * n for lo, n in map_layer(layer, cfg, post_passes=post_passes))


def _vec_cycles(insn: Insn, cfg: AcceleratorConfig) -> int:
    return layer_cycles([insn, _insn(Op.FENCE)], cfg)


def plan(model: Model, cfg: AcceleratorConfig, *, mac_only: bool = False, fuse: bool = True) -> list[Step]:
    """One step per layer of ``model``, in order.  ``mac_only`` excludes every non-MAC layer
    (and fuses nothing into the MAC layers); ``fuse=False`` runs every non-MAC layer except
    the free ones (pointwise, concat) as its own VEC instruction."""
    fuse = fuse and not mac_only
    users = _consumers(model)
    layers = model.layers
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        prev = layers[i - 1] if i else None
        if layer.kind in MAC_KINDS:
            if (fuse and nxt is not None and nxt.kind in ROW_EPILOGUE_PASSES
                    and nxt.inputs == (layer.name,) and users.get(layer.name) == [nxt.name]
                    and _rows_are_groups(layer, nxt.kind)):
                passes = ROW_EPILOGUE_PASSES[nxt.kind]
                try:
                    fused = _mac_cycles(layer, cfg, passes)
                except MappingError:
                    fused = None
                if fused is not None and fused < _mac_cycles(layer, cfg) + _vec_cycles(_own_vec(nxt), cfg):
                    steps += [Step(layer, "mac", passes, epilogue=nxt.kind), Step(nxt, "epilogue", into=layer.name)]
                    i += 2
                    continue
            steps.append(Step(layer, "mac"))
        elif layer.kind == "constant":
            steps.append(Step(layer, "constant"))
        elif (layer.kind in POINTWISE_OPS and prev is not None and prev.kind in MAC_KINDS) \
                or getattr(layer, "fused", False):
            steps.append(Step(layer, "fused", into=prev.name if prev is not None else ""))
        elif layer.kind == "concat":
            steps.append(Step(layer, "zero-copy"))
        elif mac_only:
            steps.append(Step(layer, "excluded"))
        elif fuse and i == len(layers) - 1 and layer.kind == "resize" and _is_logits(layer, model):
            h, w, _ = model.input
            steps.append(Step(layer, "vector", vec=_vec(VecOp.RESIZE_ARGMAX, layer.elements,
                                                        layer.in_elements, h * w)))
        else:
            steps.append(Step(layer, "vector", vec=_own_vec(layer)))
        i += 1
    return _chain(steps, users) if fuse else steps


def _chain(steps: list[Step], users: dict[str, list[str]]) -> list[Step]:
    """Merge runs of vector steps along the data flow into CHAIN passes (module docstring)."""
    out: list[Step] = []
    head = None            # index in out of the open chain's first step
    members: list[Layer] = []
    work = bytes_in = written = 0

    def close():
        if head is not None and len(members) > 1:
            insn = _vec(VecOp.CHAIN, work, bytes_in, written + members[-1].elements)
            out[head] = Step(members[0], "vector", vec=insn)

    for st in steps:
        own = st.action == "vector" and st.vec.f["vec_op"] == VEC_OP_OF[st.layer.kind]
        if own and members and members[-1].name in st.layer.inputs:
            prev = members[-1]
            if users.get(prev.name, []) != [st.layer.name]:
                written += prev.elements          # another layer reads it later: write it too
            work += st.layer.elements * VEC_COST[VEC_OP_OF[st.layer.kind]]
            bytes_in += max(0, st.layer.in_elements - prev.elements)
            members.append(st.layer)
            out.append(Step(st.layer, "merged", into=members[0].name))
            continue
        close()
        head, members = None, []
        if own:
            head, members = len(out), [st.layer]
            work = st.layer.elements * VEC_COST[VEC_OP_OF[st.layer.kind]]
            bytes_in, written = st.layer.in_elements, 0
        out.append(st)
    close()
    return out


def _rows_are_groups(layer: Layer, op: str) -> bool:
    """A STORE with whole rows holds every channel of each of its groups (``rows_complete``):
    a softmax is per head (group), but a layernorm needs all channels of a pixel, so it is fused
    only into an ungrouped layer."""
    return op == "softmax" or (isinstance(layer, (Conv2d, Linear)) and getattr(layer, "groups", 1) == 1)


def _own_vec(layer: Layer) -> Insn:
    """A non-MAC layer on its own: reads its inputs from and writes its output to DRAM."""
    return _vec(VEC_OP_OF[layer.kind], layer.elements, layer.in_elements, layer.elements)


def _is_logits(layer: Layer, model: Model) -> bool:
    """The network ends by upsampling its class scores to the input size (segmentation)."""
    h, w, _ = model.input
    return layer.elements == h * w * model.params.get("classes", 0)
