"""How each layer of a model executes: the plan the simulator, the program and the reports share.

One step per layer, in order:

* ``mac``: a MAC layer's own stream (``mapper.lower``).  Its STOREs may apply the
  activation that alone reads its output (``act``: ReLU, or GELU/sigmoid by the PE's
  table) and a softmax that alone reads it (``softmax``: the epilogue, over rows of
  one group's channels), chosen only when a tiling with whole rows per STORE exists
  and the fused layer is faster than the two apart;
* ``vector``: one VEC pass (:class:`VecPass`, ``hw/vector.py``) computing a run of
  non-MAC layers along the data flow: layout layers before the first computing
  layer become the address pattern of its input (a padding never: its zeros would not
  be computed, ``_grammar_ok``), computing layers (add, multiply,
  activation, layernorm, softmax; a resize or pooling only first) become stages,
  and layout layers after the last become the pattern through which every stage
  reads and writes (a final window partition the pattern of the output).  Outputs
  that another layer reads are written too.  The segmentation output's final resize
  writes the class map (``RESIZE_ARGMAX``);
* ``fused``, ``epilogue``, ``merged``: done by the step of layer ``into``;
* ``chain``, ``banded``: consecutive MAC layers run in row bands through the global buffer
  (``mapper.bands``, chosen with the residency after this plan): the chain's first layer's
  step runs them all, the others are ``banded`` into it;
* ``zero-copy``: a concatenation (its producers write into its buffer) or a channel slice (a view);
* ``constant``: data in the DRAM image;
* ``excluded``: a non-MAC layer left out (``mac_only``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from hw import operators as ops
from hw.config import AcceleratorConfig
from hw.isa import Act, Insn, Op, StreamError, VecOp
from hw.vector import HEADER_FIELDS, MAX_STAGES, NONE, PREV, SPATIAL, Descriptor, Operand, PoolMode, ResizeMode, Stage, \
    encode_descriptor, spatial_refusals, spatial_slots, vec_fields

from .float_ops import ACTIVATIONS
from .ir import LAYOUT_KINDS, MAC_KINDS, VIEW_KINDS, Activation, ChannelShuffle, Conv2d, Crop, Layer, Linear, MatMul, Model, PatchMerge, \
    Pool, Resize, SpaceToDepth, WindowPartition
from .layout import LayoutError, Storage, View, partition_view, storage_plan, through, view_of
from .lower import MappingError, _insn, layer_cycles, map_layer

__all__ = ["Step", "VecPass", "plan", "refuse_vectors_beyond_isa", "vec_stream", "is_class_map", "COMPUTE_KINDS",
           "STAGE_OP"]

#: The vector-unit operation of each computing layer kind.
STAGE_OP = {"add": VecOp.ADD, "mul": VecOp.MUL, **{func: VecOp.LUT for func in ACTIVATIONS},
            "layernorm": VecOp.LAYERNORM, "softmax": VecOp.SOFTMAX, "resize": VecOp.RESIZE, "pool": VecOp.POOL}
COMPUTE_KINDS = tuple(STAGE_OP)
#: Kinds that move no data: a concatenation's producers write into its buffer, a channel slice is a
#: view of its input's (``mapper.layout.storage_plan``).
ZERO_COPY_KINDS = ("concat", *VIEW_KINDS)
#: Activations a MAC layer's STOREs apply after requantisation.
POINTWISE_OPS = tuple(ACTIVATIONS)


@dataclass(frozen=True)
class VecPass:
    """A VEC pass before addresses: operand bases are byte offsets in ``buffers`` (one per operand),
    and the quantisation parameters of the stages are zero until the program fills them in from
    ``stage_layers`` (the layer each stage computes)."""

    desc: Descriptor
    buffers: tuple[str, ...]
    stage_layers: tuple[str, ...]
    members: tuple[str, ...]
    writes: tuple[str, ...]
    class_map: bool = False
    stage_swaps: tuple[bool, ...] = ()   # an add's running result is its layer's second input

    @property
    def insn(self) -> Insn:
        return _insn(Op.VEC, **vec_fields(self.desc), desc_addr=0)


@dataclass(frozen=True)
class Step:
    layer: Layer
    action: str                        # mac, vector, chain, epilogue, fused, merged, banded, zero-copy, constant, excluded
    act: int = Act.NONE                # mac: what its STOREs apply after requantisation ...
    act_layer: str = ""                # ... from this Activation layer (TABLE)
    softmax: str = ""                  # mac: the Softmax layer computed by its STOREs' epilogue
    output: str = ""                   # mac: the tensor its STOREs write
    vpass: Optional[VecPass] = None    # vector: its pass
    into: str = ""                     # epilogue / fused / merged / banded: the layer that does the work
    chain: Optional[object] = None     # chain: its ``mapper.bands.Chain`` (members, bands, slots)
    in_pitch: int = 0                  # mac: bytes per pixel of its input in DRAM (a concatenation part: the whole's)

    @property
    def epilogue(self) -> str:
        return "softmax" if self.softmax else ""

    @property
    def softmax_row(self) -> int:
        return _row_of(self.layer) if self.softmax else 0

    @property
    def map_args(self) -> dict:
        """``map_layer``'s arguments for a MAC step (with ``mapper.residency.gb_fields``' for its
        tensors kept in the global buffer): every caller maps the step alike."""
        return {"softmax_row": self.softmax_row, "act": self.act, "in_pitch": self.in_pitch}

    @property
    def vec(self) -> Optional[Insn]:
        return self.vpass.insn if self.vpass is not None else None

    @property
    def mapping_note(self) -> str:
        return {"epilogue": f"epilogue of {self.into}", "fused": f"fused into {self.into}", "zero-copy": "zero-copy",
                "merged": f"merged into {self.into}", "banded": f"in band chain of {self.into}",
                "excluded": "excluded (MAC layers only)",
                "constant": "constant (in the DRAM image)"}.get(self.action, "")


def vec_stream(step: Step) -> list[Insn]:
    """The instructions of a vector step (ending with FENCE)."""
    return [step.vec, _insn(Op.FENCE)] if step.vpass is not None else []


def _row_of(layer: Layer) -> int:
    """Channels of one row of a MAC layer's output: one group's (a head's keys)."""
    if isinstance(layer, MatMul):
        return layer.n
    return layer.out_shape[2] // getattr(layer, "groups", 1)


def _consumers(model: Model) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for layer in model.layers:
        for src in layer.inputs:
            users.setdefault(src, []).append(layer.name)
    return users


def _mac_cycles(layer: Layer, cfg: AcceleratorConfig, **kw) -> int:
    return sum(lo.cycles * n for lo, n in map_layer(layer, cfg, **kw))


def plan(model: Model, cfg: AcceleratorConfig, *, mac_only: bool = False, fuse: bool = True) -> list[Step]:
    """One step per layer of ``model``, in order.  ``mac_only`` excludes every non-MAC layer (and
    fuses nothing into the MAC layers); ``fuse=False`` runs every non-MAC layer as its own pass,
    except the activations the MAC layers' STOREs apply and the zero-copy concatenations.

    Raises ``MappingError`` for a graph that cannot be laid out (``mapper.layout``)."""
    return _Planner(model, cfg, mac_only, fuse and not mac_only).run()


def refuse_vectors_beyond_isa(model: Model, cfg: AcceleratorConfig) -> None:
    """MappingError naming the first non-MAC layer of ``model`` the vector unit of ``cfg`` does not
    take: a row longer than it holds, or the layer's pass refused as the plan refuses one (a
    descriptor field beyond its width; a spatial geometry ``hw.vector.spatial_refusals`` refuses,
    such as an adaptive pooling's window above ``POOL_MAX_COUNT``).  Each layer is its own pass, as
    ``fuse=False`` runs it (a run the unit refuses is not fused), so that nothing is mapped: the
    counterpart of ``mapper.lower.refuse_beyond_isa`` for the layers it leaves out."""
    planner = _Planner(model, cfg, mac_only=False, fuse=True)     # fuse: the class map as the plan writes it
    for layer in model.layers:
        if layer.kind in MAC_KINDS or layer.kind in ZERO_COPY_KINDS or layer.kind == "constant":
            continue
        _check_row(layer)
        planner._pass([layer])


def _check_row(layer) -> None:
    """The vector unit's rows (softmax, layernorm) hold at most ``hw.operators.MAX_ROW`` elements."""
    n = layer.row_len() if layer.kind == "softmax" else layer.out_shape[-1] if layer.kind == "layernorm" else 0
    if n > ops.MAX_ROW:
        raise MappingError(f"{layer.name}: a {layer.kind} row of {n} elements; the vector unit's rows hold "
                           f"at most {ops.MAX_ROW}")


class _Planner:
    def __init__(self, model: Model, cfg: AcceleratorConfig, mac_only: bool, fuse: bool):
        self.model, self.cfg, self.mac_only, self.fuse = model, cfg, mac_only, fuse
        self.users = _consumers(model)
        self.outputs = set(model.output_names)
        try:
            self.storage = storage_plan(model)
        except LayoutError as e:
            raise MappingError(str(e)) from None
        self.by_name = {layer.name: layer for layer in model.layers}
        self.order = {layer.name: i for i, layer in enumerate(model.layers)}
        self.done: dict[str, Step] = {}

    def run(self) -> list[Step]:
        for layer in self.model.layers:
            if not self.mac_only:
                _check_row(layer)
            if layer.name in self.done:
                continue
            if layer.kind == "constant":
                self.done[layer.name] = Step(layer, "constant")
            elif layer.kind in MAC_KINDS:
                self._mac(layer)
            elif layer.kind in ZERO_COPY_KINDS:
                self.done[layer.name] = Step(layer, "zero-copy")
            elif self.mac_only:
                self.done[layer.name] = Step(layer, "excluded")
            else:
                self._vector(layer)
        return [self.done[layer.name] for layer in self.model.layers]

    def _only_user(self, name: str) -> Optional[Layer]:
        users = self.users.get(name, [])
        if len(users) == 1 and name not in self.outputs:
            return self.by_name[users[0]]
        return None

    # ---- MAC layers ---------------------------------------------------------------------------
    def _mac(self, layer: Layer) -> None:
        act, act_layer, out = (Act.RELU if getattr(layer, "relu", False) else Act.NONE), "", layer.name
        in_pitch = self.storage[layer.inputs[0]].pitch
        nxt = self._only_user(layer.name)
        if not self.mac_only and isinstance(nxt, Activation) and nxt.kind in POINTWISE_OPS and act == Act.NONE:
            act = Act.RELU if nxt.kind == "relu" else Act.TABLE
            act_layer, out = nxt.name, nxt.name
            self.done[nxt.name] = Step(nxt, "fused", into=layer.name)
        softmax = ""
        if (self.fuse and act == Act.NONE and nxt is not None and nxt.kind == "softmax"
                and self._epilogue_pays(layer, nxt, in_pitch)):
            softmax, out = nxt.name, nxt.name
            self.done[nxt.name] = Step(nxt, "epilogue", into=layer.name)
        self.done[layer.name] = Step(layer, "mac", act, act_layer, softmax, out, in_pitch=in_pitch)

    def _epilogue_pays(self, layer: Layer, sm: Layer, in_pitch: int) -> bool:
        row = _row_of(layer)
        if sm.row_len() != row or (isinstance(layer, (Conv2d, Linear)) and getattr(layer, "groups", 1) != 1
                                   and row != layer.out_shape[2]):
            return False
        try:
            fused = _mac_cycles(layer, self.cfg, softmax_row=row, in_pitch=in_pitch)
        except MappingError:
            return False
        own = self._pass([sm])
        return fused < _mac_cycles(layer, self.cfg, in_pitch=in_pitch) + layer_cycles([own.insn, _insn(Op.FENCE)], self.cfg)

    # ---- vector passes ------------------------------------------------------------------------
    def _vector(self, layer: Layer) -> None:
        members = [layer]
        if self.fuse:
            while True:
                nxt = self._next_member(members)
                if nxt is None:
                    break
                members.append(nxt)
        vpass = self._pass(members)
        self.done[layer.name] = Step(layer, "vector", vpass=vpass)
        for m in members[1:]:
            self.done[m.name] = Step(m, "merged", into=layer.name)

    def _next_member(self, members: list[Layer]) -> Optional[Layer]:
        """The layer that extends the pass, or None: the next layer in order (constants aside) if it
        reads the last member and the pass stays within the grammar and the unit's limits."""
        last = members[-1]
        i = self.order[last.name] + 1
        while i < len(self.model.layers) and self.model.layers[i].kind == "constant":
            i += 1
        if i == len(self.model.layers):
            return None
        cand = self.model.layers[i]
        if (cand.name in self.done or last.name not in cand.inputs or cand.kind in MAC_KINDS
                or cand.kind in ZERO_COPY_KINDS or is_class_map(cand, self.model)):
            return None
        trial = members + [cand]
        if not _grammar_ok([m.kind for m in trial]):
            return None
        # a layout layer whose output another layer reads cannot be absorbed unless it is last
        if any(m.kind in LAYOUT_KINDS and self._read_outside(m, trial) for m in members):
            return None
        try:
            self._pass(trial)
        except (MappingError, StreamError):    # the descriptor's own limits (stages, operands, ...)
            return None
        return cand

    def _read_outside(self, m: Layer, members: list[Layer]) -> bool:
        names = {x.name for x in members}
        return m.name in self.outputs or any(u not in names for u in self.users.get(m.name, []))

    def _pass(self, members: list[Layer]) -> VecPass:
        try:
            vp = _PassBuilder(self, members).build()
        except LayoutError as e:
            raise MappingError(str(e)) from None
        why = None
        try:
            encode_descriptor(vp.desc)              # every field within its width, as the program writes it
        except StreamError as e:
            why = str(e)
        if why is None and vp.desc.stages[0].op in SPATIAL:     # the spatial unit's geometry, as it refuses a pass
            data, _ = spatial_refusals(*spatial_slots(vp.desc))
            why = next((why for why, bad in data.items() if bad), None)
        if why is not None:
            names = ", ".join(m.name for m in members)
            raise MappingError(f"{members[0].name} ({members[0].shape_str}): a vector pass of {names}: {why}")
        return vp


def is_class_map(layer: Layer, model: Model) -> bool:
    """Whether ``layer`` is the network's output that the accelerator writes as a class map: a
    bilinear upsampling of the class scores (``model.params["classes"]`` channels) to the input
    size that no other layer reads (segmentation; ``sim.accuracy.task_of``)."""
    return (is_class_map_resize(layer, model.input[:2]) and layer.name in model.output_names
            and model.params.get("classes") == layer.out_shape[2])


def is_class_map_resize(layer: Layer, input_hw: tuple[int, int]) -> bool:
    """Whether ``layer`` is a resize whose arg-max the accelerator writes as a class map: bilinear,
    to the input size ``input_hw``."""
    return isinstance(layer, Resize) and layer.mode == "bilinear" and tuple(layer.out_shape[:2]) == tuple(input_hw)


#: Layout layers a pass writes through over their input's raster (``mapper.layout.partition_view``): only last.
WRITE_PATTERNS = (WindowPartition, SpaceToDepth)


def _grammar_ok(kinds: list[str]) -> bool:
    """leading layouts*, computing layers+, trailing layouts*, [window partition or space to depth]; a resize or
    pooling only as the first member; a patch merge alone; layouts only is fine too.

    No padding among the leading layouts: a pixel that is padding in the pass's source stays
    padding through every stage and is written as zero (``sim/vector_unit.py``), which is what padding
    after the computation needs (Swin's layernorm, then pad) but not padding before it, whose
    zeros the computation must take as inputs (a class token's pad, roll, then the add of the
    token).  Such a pad goes into a pass of layouts only, whose output the computation reads."""
    if "patch_merge" in kinds or "channel_shuffle" in kinds:
        return len(kinds) == 1
    if {"window_partition", "space_to_depth"} & set(kinds[:-1]):
        return False
    comp = [i for i, k in enumerate(kinds) if k in COMPUTE_KINDS]
    if not comp:
        return True
    first, last = comp[0], comp[-1]
    if "pad" in kinds[:first]:
        return False
    if any(kinds[i] in ("resize", "pool") for i in comp[1:]) or (kinds[first] in ("resize", "pool") and first):
        return False
    return (not any(k in LAYOUT_KINDS for k in kinds[first:last + 1])
            and not {"window_reverse", "depth_to_space"} & set(kinds[last + 1:]))


class _PassBuilder:
    """Turns a run of layers into a VEC pass (module docstring)."""

    def __init__(self, planner: _Planner, members: list[Layer]):
        self.p = planner
        self.members = members
        self.operands: list[Operand] = []
        self.buffers: list[str] = []
        self.index: dict[tuple, int] = {}
        self.writes: list[str] = []
        self.final, self.trail, self.raster, self.lead = None, [], None, []

    def _operand(self, view: View, repeat: bool = False) -> int:
        key = (view, repeat)
        if key not in self.index:
            self.index[key] = len(self.operands)
            self.operands.append(Operand(view.offset, view.c, view.y, view.x, repeat))
            self.buffers.append(view.buffer)
        return self.index[key]

    def _view(self, tensor: str, raster=None) -> View:
        return view_of(self.p.storage[tensor], raster)

    def build(self) -> VecPass:
        ms = self.members
        if ms[0].kind == "patch_merge":
            return self._patch_merge(ms[0])
        if ms[0].kind == "channel_shuffle":
            return self._channel_shuffle(ms[0])
        if len(ms) == 1 and ms[0].kind == "space_to_depth" and self._rows_of_blocks(ms[0]):
            return self._space_to_depth(ms[0])
        if len(ms) == 1 and self.p.fuse and is_class_map(ms[0], self.p.model):
            return self._class_map(ms[0])
        comp = [i for i, m in enumerate(ms) if m.kind in COMPUTE_KINDS]
        if not comp:
            return self._copy()
        lead, computes, trail = ms[:comp[0]], ms[comp[0]:comp[-1] + 1], ms[comp[-1] + 1:]
        self.lead = lead
        self.final = trail[-1] if trail and isinstance(trail[-1], WRITE_PATTERNS) else None
        self.trail = trail[:-1] if self.final is not None else trail
        self.raster = computes[0].out_shape[:2]
        self.channels = self._channels(computes)
        stages, names = self._stages(computes, self._source(lead, computes[0]))
        h, w = self.final.in_shapes[0][:2] if self.final is not None else \
            (self.trail[-1].out_shape[:2] if self.trail else self.raster)
        return VecPass(Descriptor(h, w, computes[-1].out_shape[2], tuple(self.operands), tuple(stages)),
                       tuple(self.buffers), tuple(names), tuple(m.name for m in ms), tuple(self.writes),
                       stage_swaps=tuple(self.swaps))

    def _stages(self, computes: list, src: int) -> tuple[list[Stage], list[str]]:
        """The pass's stages (a ReLU after an ADD its flag) and the layers each computes (``+``
        joined); ``self.swaps`` whether each stage reads its operands swapped."""
        stages: list[Stage] = []
        names: list[str] = []
        self.swaps: list[bool] = []
        for k, m in enumerate(computes):
            outs = self._outputs(m, last=m is computes[-1])
            if m.kind == "relu" and stages and stages[-1].op == VecOp.ADD and stages[-1].out == NONE \
                    and names[-1] == computes[k - 1].name:
                stages[-1] = replace(stages[-1], params={**stages[-1].params, "relu": 1})
                names[-1] += "+" + m.name
            else:
                stages.append(Stage(STAGE_OP[m.kind], src if k == 0 else PREV, self._second(m, computes, k),
                                    NONE, _geometry(m, self.p.cfg.vector_lanes)))
                names.append(m.name)
                self.swaps.append(self._swapped)
            for j, out in enumerate(outs):     # the first output from the stage, more by COPY stages
                if j == 0:
                    stages[-1] = replace(stages[-1], out=out)
                else:
                    stages.append(Stage(VecOp.COPY, PREV, NONE, out, {}))
                    names.append(m.name)
                    self.swaps.append(False)
        return stages, names

    def _r1(self, view: View) -> View:
        """A view over the computes' raster seen from the pass's raster (through the trailing layouts)."""
        for t in self.trail:
            view = through(view, t)
        return view

    @staticmethod
    def _channels(computes: list[Layer]) -> int:
        """The pass's channels: its last computing layer's.  Every stage runs over them, so an
        operand with fewer (an add's or a product's broadcast input, or the running result before
        one) is read repeating its channels; a row stage (layernorm, softmax), a resize or a pooling
        over fewer would compute other rows, so such a layer ends the pass before the broadcast."""
        channels = computes[-1].out_shape[2]
        for m in computes:
            if m.kind not in ("add", "mul", *POINTWISE_OPS) and m.out_shape[2] != channels:
                raise LayoutError(f"{m.name}: a {m.kind} over {m.out_shape[2]} channels in a pass over {channels}")
        return channels

    def _read(self, view: View) -> int:
        """A read operand, its channels repeating when fewer than the pass's."""
        return self._operand(view, repeat=view.c < self.channels)

    def _source(self, lead: list[Layer], first: Layer) -> int:
        if first.kind in ("resize", "pool"):             # reads its input over the input's own raster
            if lead:
                raise LayoutError(f"{first.name}: a resize or pooling reads its input plainly")
            return self._operand(self._view(first.inputs[0]))
        if not lead:
            return self._read(self._r1(self._view(first.inputs[0], self.raster)))
        view = self._view(lead[0].inputs[0])
        for t in lead:
            view = through(view, t)
        return self._read(self._r1(view))

    def _second(self, m: Layer, computes: list[Layer], k: int) -> int:
        """The other operand of an add or a product (the first is the chained input)."""
        self._swapped = False
        if m.kind not in ("add", "mul"):
            return NONE
        chained = computes[k - 1].name if k else (self.lead[-1].name if self.lead else m.inputs[0])
        if chained not in m.inputs:
            raise LayoutError(f"{m.name}: does not read the pass's running result {chained!r}")
        other = m.inputs[1] if m.inputs[0] == chained else m.inputs[0]
        if other in {x.name for x in self.members}:
            raise LayoutError(f"{m.name}: reads {other!r}, which the pass computes, as its stored tensor")
        self._swapped = m.inputs[0] != chained
        return self._read(self._r1(self._view(other, self.raster)))

    def _outputs(self, m: Layer, last: bool) -> list[int]:
        """Operands the stage computing ``m`` writes: the pass's output if ``m`` is the last compute,
        and ``m``'s own tensor if another layer reads it."""
        outs = []
        ms = self.members
        if last:
            if self.final is not None:
                outs.append(self._operand(partition_view(self._view(self.final.name), self.final,
                                                         self.final.in_shapes[0])))
            else:
                outs.append(self._operand(self._view(ms[-1].name)))
            self.writes.append(ms[-1].name)
        if (not last or ms[-1] is not m) and self.p._read_outside(m, ms):
            if any(isinstance(t, Crop) for t in self.trail):
                raise LayoutError(f"{m.name}: another layer reads it whole, and the pass writes only what the "
                                  f"crop {ms[-1].name!r} keeps")
            outs.append(self._operand(self._r1(self._view(m.name, self.raster))))
            self.writes.append(m.name)
        return outs

    def _copy(self) -> VecPass:
        """A pass of layout layers only: one COPY through their composed pattern."""
        ms = self.members
        final = ms[-1] if isinstance(ms[-1], WRITE_PATTERNS) else None
        views = ms[:-1] if final is not None else ms
        if not views:
            src_view = self._view(ms[0].inputs[0])
        else:
            src_view = self._view(views[0].inputs[0])
            for t in views:
                src_view = through(src_view, t)
        src = self._operand(src_view)
        if final is not None:
            out = self._operand(partition_view(self._view(final.name), final, final.in_shapes[0]))
            h, w, c = final.in_shapes[0]
        else:
            out = self._operand(self._view(ms[-1].name))
            h, w, c = ms[-1].out_shape
        return VecPass(Descriptor(h, w, c, tuple(self.operands), (Stage(VecOp.COPY, src, NONE, out, {}),)),
                       tuple(self.buffers), (ms[-1].name,), tuple(m.name for m in ms), (ms[-1].name,))

    def _patch_merge(self, m: PatchMerge) -> VecPass:
        """Four COPY stages, one per 2x2 position (rows, then columns), each into its channel quarter."""
        st = self.p.storage[m.inputs[0]]
        h, w, c = st.shape
        h2, w2, _ = m.out_shape
        out = self.p.storage[m.name]
        stages = []
        for q, (a, b) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            view = View(st.buffer, st.start + (a * w + b) * st.pitch, c,
                        _stepped(h2, 2 * w * st.pitch, -(-(h - a) // 2)), _stepped(w2, 2 * st.pitch, -(-(w - b) // 2)))
            dst = View(out.buffer, out.start + q * c, c, view_of(out).y, view_of(out).x)
            stages.append(Stage(VecOp.COPY, self._operand(view), NONE, self._operand(dst), {}))
        return VecPass(Descriptor(h2, w2, c, tuple(self.operands), tuple(stages)), tuple(self.buffers),
                       (m.name,) * 4, (m.name,), (m.name,))

    def _rows_of_blocks(self, m: SpaceToDepth) -> bool:
        """Whether a pass holds a stage per row of ``m``'s blocks and its input and output hold each
        pixel's channels without gaps (``block`` neighbouring pixels one run of bytes in both)."""
        st, out = self.p.storage[m.inputs[0]], self.p.storage[m.name]
        return m.block <= MAX_STAGES and st.pitch == st.shape[2] and out.pitch == out.shape[2]

    def _space_to_depth(self, m: SpaceToDepth) -> VecPass:
        """A COPY stage per row ``i`` of the blocks, over the output's pixels: the ``block`` pixels of
        input row ``y * block + i`` from column ``x * block`` (``block * C`` bytes in both tensors) into
        channel block ``i * block`` of output pixel ``(y, x)`` (a pass of the pattern a pixel at a time,
        ``mapper.layout.partition_view``'s, when the bytes have gaps or there are more rows than stages)."""
        from hw.vector import Axis
        st, out = self.p.storage[m.inputs[0]], self.p.storage[m.name]
        (h, w, c), b = st.shape, m.block
        run, ho, wo = b * c, h // b, w // b
        stages = []
        for i in range(b):
            src = View(st.buffer, st.start + i * w * c, run, Axis(ho, b * w * c), Axis(wo, run))
            dst = View(out.buffer, out.start + i * run, run, Axis(ho, wo * b * run), Axis(wo, b * run))
            stages.append(Stage(VecOp.COPY, self._operand(src), NONE, self._operand(dst), {}))
        return VecPass(Descriptor(ho, wo, run, tuple(self.operands), tuple(stages)), tuple(self.buffers),
                       (m.name,) * b, (m.name,), (m.name,))

    def _channel_shuffle(self, m: ChannelShuffle) -> VecPass:
        """One COPY over a raster of pixels by channels, one byte an element: the source's channel
        axis split at the groups (``j % groups`` steps a group's channels, ``j // groups`` one)."""
        from hw.vector import Axis
        st, out = self.p.storage[m.inputs[0]], self.p.storage[m.name]
        h, w, c = st.shape
        if h * w > MAX_RASTER:
            raise MappingError(f"{m.name}: a channel shuffle of {h * w} pixels, more than a pass's {MAX_RASTER} rows")
        src = View(st.buffer, st.start, 1, Axis(h * w, st.pitch), Axis(c, c // m.groups, win=m.groups, s_hi=1))
        dst = View(out.buffer, out.start, 1, Axis(h * w, out.pitch), Axis(c, 1))
        stage = Stage(VecOp.COPY, self._operand(src), NONE, self._operand(dst), {})
        return VecPass(Descriptor(h * w, c, 1, tuple(self.operands), (stage,)), tuple(self.buffers), (m.name,),
                       (m.name,), (m.name,))

    def _class_map(self, m: Resize) -> VecPass:
        """The segmentation output: bilinear upsampling of the class scores and the per-pixel argmax,
        one byte a pixel in the resize's buffer."""
        from hw.vector import Axis
        src = self._operand(self._view(m.inputs[0]))
        h, w = m.out_shape[:2]
        out = self._operand(View(m.name, 0, 1, Axis(h, w), Axis(w, 1)))
        stage = Stage(VecOp.RESIZE_ARGMAX, src, NONE, out, _resize_params(m, argmax=True))
        return VecPass(Descriptor(h, w, 1, tuple(self.operands), (stage,)), tuple(self.buffers), (m.name,),
                       (m.name,), (m.name,), class_map=True)


#: The rows of a pass's raster (the descriptor's ``h``).
MAX_RASTER = (1 << next(bits for name, bits, _ in HEADER_FIELDS if name == "h")) - 1


def _stepped(n: int, stride: int, valid: int):
    """``n`` positions ``stride`` apart, the first ``valid`` of them valid, the others padding."""
    from hw.vector import Axis
    if valid < 1:
        # an axis has a valid position 0 (valid >= 1); one starting at 1 without wrapping has none
        # (a patch merge's odd rows or columns of a 1-pixel side: all padding)
        return Axis(n, stride, start=1, wrap=n + 1, valid=1)
    return Axis(n, stride, valid=valid if valid < n else 0, wrap=n)


def _witnesses(m: Layer, counted: bool) -> dict:
    """The quotients ``n_in div n_out`` and ``n_in mod n_out`` per axis that a descriptor carries for
    the hardware's floor(i n_in / n_out) counters (``hw.vector.divides_as``) when ``counted`` (an
    adaptive pooling, a nearest resize); zeros otherwise."""
    (ih, iw, _), (oh, ow, _) = m.in_shapes[0], m.out_shape
    (yq, yr), (xq, xr) = (divmod(ih, oh), divmod(iw, ow)) if counted else ((0, 0), (0, 0))
    return {"y_q": yq, "y_r": yr, "x_q": xq, "x_r": xr}


def _resize_params(m: Resize, argmax: bool = False) -> dict:
    from hw.operators import resize_axis_params
    (ih, iw, _), (oh, ow, _) = m.in_shapes[0], m.out_shape
    if m.mode == "nearest" and not argmax:
        return {"mode": ResizeMode.NEAREST, "y_start": 0, "y_step": 0, "x_start": 0, "x_step": 0, **_witnesses(m, True)}
    ay, ax = resize_axis_params(ih, oh, m.align_corners), resize_axis_params(iw, ow, m.align_corners)
    p = {"y_start": ay.start, "y_step": ay.step, "x_start": ax.start, "x_step": ax.step,
         "align_corners": int(m.align_corners)}
    return p if argmax else {"mode": ResizeMode.BILINEAR, **p, **_witnesses(m, False)}


def _pool_params(m: Pool, lanes: int) -> dict:
    """A pooling stage's parameters: its geometry, its witnesses and the split of its output pixels'
    channels into rows that takes the fewest cycles on ``lanes`` row lanes (``hw.vector.pool_split``)."""
    from hw.vector import pool_split, pool_taps
    mode = {"max": PoolMode.MAX, "avg": PoolMode.AVG, "adaptive_avg": PoolMode.ADAPTIVE_AVG}[m.mode]
    p = {"mode": mode, "kernel": m.kernel, "stride": m.stride, "padding": m.padding, "ceil_mode": int(m.ceil_mode),
         "count_include_pad": int(m.count_include_pad), **_witnesses(m, m.mode == "adaptive_avg")}
    fields = {f"pool.{k}": v for k, v in p.items()}
    h, w, c = m.out_shape
    return {**p, "split": pool_split(h * w, c, pool_taps(fields, "y") * pool_taps(fields, "x"), lanes)}


def _geometry(m: Layer, lanes: int) -> dict:
    """A stage's parameters that follow from the layer's attributes (and the ``lanes`` row lanes the
    pass runs on); quantisation's are zero."""
    op = STAGE_OP[m.kind]
    if op == VecOp.ADD:
        return {"mult_a": 0, "mult_b": 0, "shift": 0, "relu": int(getattr(m, "relu", False))}
    if op == VecOp.MUL:
        return {"mult": 0, "shift": 0}
    if op == VecOp.LUT:
        return {"table": 0}
    if op == VecOp.LAYERNORM:
        return {"table": 0, "eps": 0, "shift": 0}
    if op == VecOp.SOFTMAX:
        return {"row": m.row_len(), "heads": m.out_shape[2] // m.row_len(), "exp_mult": 0, "exp_shift": 0,
                "out_shift": 0}
    if op == VecOp.RESIZE:
        return _resize_params(m)
    if op == VecOp.POOL:
        return _pool_params(m, lanes)
    raise AssertionError(op)
