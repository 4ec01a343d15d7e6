"""Logic depth of technology-mapped modules, composed through the hierarchy.

A module synthesised by :mod:`hw.rtl.synth` is a netlist (Yosys ``write_json``) of
one-output gates (``$_AND_``, ``$_MUX_``, ...), flip-flops, memories (``$mem_v2``)
and instances of other synthesised modules.  Its depth is counted in **logic
levels**: one per gate on a path, zero through a buffer.  A path starts at a
flip-flop output, a synchronous memory read port or an input port, and ends at a
flip-flop input, a memory input or an output port.

Each module is summarised at its ports by a :class:`DepthModel` (as a timing
model abstracts a block in hierarchical static timing analysis):

* ``require[p]``: the deepest path from input port ``p`` into a register inside;
* ``arrive[q]``: the deepest path from a register inside to output port ``q``;
* ``through[p, q]``: the deepest purely combinational path from ``p`` to ``q``.

A parent uses its children's models in place of their netlists: a path that enters
an instance's input port adds the child's ``require``, one that leaves an output port
starts at the child's ``arrive``, one that crosses it adds ``through``.  Every
register-to-register path is so counted once, in the lowest module that holds both
its ends (:attr:`DepthModel.internal`).  Ports are modelled as wholes (a path into any
bit of ``p`` counts the deepest bit of ``p``), which can only overestimate.

Asynchronous memory read ports (the small tables of constants Yosys keeps as ROMs, such as
the store unit's PE positions) count as a multiplexer tree of ``ceil(log2(words))`` levels
from address to data.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Path", "DepthModel", "depth_model", "is_flip_flop"]

#: Gates that add no level.
_FREE_GATES = {"$_BUF_"}
#: How many named nets of a path its description keeps (start, end and the deepest between).
_VIA_LIMIT = 12
#: How many register-to-register paths a model keeps (the deepest, one per end register).
INTERNAL_KEEP = 8

_FF_RE = re.compile(r"^\$_(S?DFFS?R?E?|SDFFC?E|ALDFFE?|DLATCH|DLATCHSR|SR|FF)_")
_BIT_INDEX_RE = re.compile(r"\[\d+\]$")


def is_flip_flop(cell_type: str) -> bool:
    """Whether a fine-grained Yosys cell type is a flip-flop or latch (``$_SDFFE_PP0P_``, ...)."""
    return bool(_FF_RE.match(cell_type))


@dataclass(frozen=True)
class Path:
    """One path: its depth in logic levels, where it starts and ends, and named nets on it.

    ``start`` and ``end`` name registers, memories or ports, prefixed by the instances
    the path enters (``mac3/sum``); ``via`` lists named nets along it, in order.
    """
    levels: int
    start: str
    end: str
    via: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"levels": self.levels, "start": self.start, "end": self.end, "via": list(self.via)}


@dataclass(frozen=True)
class DepthModel:
    """Port-level depth model of one module (see the module docstring).

    Members
    -------
    module:
        Module name.
    require, arrive, through:
        Deepest paths from input ports into registers, from registers to output ports,
        and from input to output ports (keys ``(input, output)``).
    internal:
        Deepest register-to-register paths with both ends in this module or in the
        instances it holds directly, deepest first, one per end register.
    into:
        Per child module, the deepest path of this module that ends inside an instance of it.
    """
    module: str
    require: Mapping[str, Path] = field(default_factory=dict)
    arrive: Mapping[str, Path] = field(default_factory=dict)
    through: Mapping[tuple[str, str], Path] = field(default_factory=dict)
    internal: tuple[Path, ...] = ()
    into: Mapping[str, Path] = field(default_factory=dict)

    @property
    def deepest(self) -> Path | None:
        """The deepest register-to-register path of :attr:`internal`, or None."""
        return self.internal[0] if self.internal else None


# ---- the graph of one module -------------------------------------------------------------------

@dataclass
class _Endpoint:
    node: int
    levels: int          # levels added at the end point (a child's require), or at the start (arrive)
    name: str
    child: str | None = None     # module type, when the end point is inside an instance
    path: Path | None = None     # the child's own path beyond the port


class _Graph:
    """Nodes are net bits plus one node per instance port; edges carry a level count."""

    def __init__(self, module: dict, models: Mapping[str, DepthModel], name: str):
        self.name = name
        self.succ: dict[int, list[tuple[int, int]]] = {}
        self.sources: list[_Endpoint] = []
        self.sinks: list[_Endpoint] = []
        self.inputs: dict[str, list[int]] = {}
        self.outputs: dict[str, list[int]] = {}
        self.labels: dict[int, str] = {}
        self._next = 1 + max((b for n in module.get("netnames", {}).values() for b in n["bits"]
                              if isinstance(b, int)), default=1)
        self._names = self._public_names(module)
        for port, info in module.get("ports", {}).items():
            bits = [b for b in info["bits"] if isinstance(b, int)]
            (self.inputs if info["direction"] == "input" else self.outputs)[port] = bits
        for cell_name, cell in module.get("cells", {}).items():
            self._add_cell(cell_name, cell, models)

    @staticmethod
    def _public_names(module: dict) -> dict[int, str]:
        names: dict[int, str] = {}
        for net, info in module.get("netnames", {}).items():
            if info.get("hide_name"):
                continue
            bits = info["bits"]
            for i, bit in enumerate(bits):
                if isinstance(bit, int):
                    label = net if len(bits) == 1 else f"{net}[{i}]"
                    if bit not in names or len(label) < len(names[bit]):
                        names[bit] = label
        return names

    def label(self, node: int) -> str | None:
        return self.labels.get(node) or self._names.get(node)

    def _edge(self, a: int, b: int, levels: int) -> None:
        self.succ.setdefault(a, []).append((b, levels))

    def _virtual(self, label: str) -> int:
        node = self._next
        self._next += 1
        self.labels[node] = label
        return node

    def _add_cell(self, name: str, cell: dict, models: Mapping[str, DepthModel]) -> None:
        kind = cell["type"]
        ins = [b for p, d in cell["port_directions"].items() if d == "input"
               for b in cell["connections"][p] if isinstance(b, int)]
        outs = [b for p, d in cell["port_directions"].items() if d == "output"
                for b in cell["connections"][p] if isinstance(b, int)]
        if kind in models:
            self._add_instance(name, cell, models[kind])
        elif is_flip_flop(kind):
            register = _base(self._names.get(outs[0], name)) if outs else name
            self.sources += [_Endpoint(b, 0, register) for b in outs]
            self.sinks += [_Endpoint(b, 0, register) for b, p in _bits_of(cell, "input") if p != "C"]
        elif kind == "$mem_v2":
            self._add_memory(name, cell)
        elif kind.startswith("$_") and len(outs) == 1:
            levels = 0 if kind in _FREE_GATES else 1
            for b in ins:
                self._edge(b, outs[0], levels)
        else:
            raise ValueError(f"module {self.name!r}: cell {name!r} of type {kind!r} is neither a gate, a "
                             f"flip-flop, a memory nor a synthesised module")

    def _add_memory(self, name: str, cell: dict) -> None:
        params = cell["parameters"]
        memory = f"memory {params.get('MEMID', name).lstrip(chr(92))}"
        words = int(params["SIZE"], 2)
        sync = params["RD_CLK_ENABLE"][::-1]          # bit i (LSB first) = read port i is clocked
        width = int(params["WIDTH"], 2)
        abits = int(params["ABITS"], 2)
        conns = cell["connections"]
        for port, bits in conns.items():
            if cell["port_directions"][port] == "input" and not port.endswith("CLK"):
                self.sinks += [_Endpoint(b, 0, memory) for b in bits if isinstance(b, int)]
        for i, clocked in enumerate(sync):
            data = conns["RD_DATA"][i * width:(i + 1) * width]
            if clocked == "1":
                self.sources += [_Endpoint(b, 0, memory) for b in data if isinstance(b, int)]
                continue
            levels = max(1, math.ceil(math.log2(max(words, 2))))
            for a in conns["RD_ADDR"][i * abits:(i + 1) * abits]:
                for d in data:
                    if isinstance(a, int) and isinstance(d, int):
                        self._edge(a, d, levels)

    def _add_instance(self, name: str, cell: dict, model: DepthModel) -> None:
        ports = {}
        for port, direction in cell["port_directions"].items():
            node = self._virtual(f"{name}.{port}")
            ports[port] = node
            bits = [b for b in cell["connections"][port] if isinstance(b, int)]
            if direction == "input":
                for b in bits:
                    self._edge(b, node, 0)
                if port in model.require:
                    path = model.require[port]
                    self.sinks.append(_Endpoint(node, path.levels, f"{name}/{path.end}", model.module, path))
            else:
                for b in bits:
                    self._edge(node, b, 0)
                if port in model.arrive:
                    path = model.arrive[port]
                    self.sources.append(_Endpoint(node, path.levels, f"{name}/{path.start}", model.module, path))
        for (p, q), path in model.through.items():
            if p in ports and q in ports:
                self._edge(ports[p], ports[q], path.levels)

    # ---- order and longest paths ----

    def topological_order(self) -> list[int]:
        indegree: dict[int, int] = {}
        for a, outs in self.succ.items():
            indegree.setdefault(a, 0)
            for b, _ in outs:
                indegree[b] = indegree.get(b, 0) + 1
        ready = deque(n for n, d in indegree.items() if d == 0)
        order = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for b, _ in self.succ.get(n, ()):
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
        if len(order) != len(indegree):
            stuck = sorted(n for n, d in indegree.items() if d > 0)
            named = [self.label(n) for n in stuck if self.label(n)][:5]
            raise ValueError(f"module {self.name!r} has a combinational loop through {len(stuck)} nets "
                             f"(named ones: {', '.join(named) or 'none'})")
        return order


def _bits_of(cell: dict, direction: str):
    for port, d in cell["port_directions"].items():
        if d == direction:
            for b in cell["connections"][port]:
                if isinstance(b, int):
                    yield b, port


def _base(label: str) -> str:
    """A net name without its bit index (``acc[3]`` -> ``acc``)."""
    return _BIT_INDEX_RE.sub("", label)


def _longest(order: list[int], succ, starts: Mapping[int, int], allowed=None):
    """Longest paths from ``starts`` (node -> initial levels) over ``order``: (levels, predecessor)."""
    level: dict[int, int] = dict(starts)
    pred: dict[int, int] = {}
    for n in order:
        here = level.get(n)
        if here is None:
            continue
        for b, w in succ.get(n, ()):
            if allowed is not None and b not in allowed:
                continue
            if here + w > level.get(b, -1):
                level[b] = here + w
                pred[b] = n
    return level, pred


def _via(graph: _Graph, nodes: list[int]) -> tuple[str, ...]:
    names = []
    for n in nodes:
        label = graph.label(n)
        if label and (not names or names[-1] != label):
            names.append(label)
    if len(names) > _VIA_LIMIT:
        half = _VIA_LIMIT // 2
        names = names[:half] + ["..."] + names[-half:]
    return tuple(names)


def _chain(pred: Mapping[int, int], node: int) -> list[int]:
    nodes = [node]
    while nodes[-1] in pred:
        nodes.append(pred[nodes[-1]])
    return nodes[::-1]


# ---- the model ---------------------------------------------------------------------------------

def depth_model(module: dict, name: str, models: Mapping[str, DepthModel]) -> DepthModel:
    """The :class:`DepthModel` of one module of a Yosys JSON netlist.

    Parameters
    ----------
    module:
        ``write_json``'s entry for the module (``ports``, ``cells``, ``netnames``).
    name:
        The module's name (for messages and the model).
    models:
        Models of the modules it instantiates, by module name.

    Raises
    ------
    ValueError
        On a combinational loop, or a cell that is neither a gate, a flip-flop, a
        memory nor one of ``models``.
    """
    graph = _Graph(module, models, name)
    order = graph.topological_order()
    start_of = {s.node: s for s in graph.sources}
    level, pred = _longest(order, graph.succ, {s.node: s.levels for s in graph.sources})

    def forward_path(end_node: int, extra: int, end_name: str) -> Path:
        nodes = _chain(pred, end_node)
        source = start_of[nodes[0]]
        return Path(level[end_node] + extra, source.name, end_name, _via(graph, nodes))

    internal: dict[str, Path] = {}
    into: dict[str, Path] = {}
    for sink in graph.sinks:
        if sink.node not in level:
            continue
        path = forward_path(sink.node, sink.levels, sink.name)
        key = _base(sink.name)
        if key not in internal or path.levels > internal[key].levels:
            internal[key] = path
        if sink.child and (sink.child not in into or path.levels > into[sink.child].levels):
            into[sink.child] = path
    arrive = {}
    for port, bits in graph.outputs.items():
        reached = [b for b in bits if b in level]
        if reached:
            deepest = max(reached, key=level.__getitem__)
            arrive[port] = forward_path(deepest, 0, port)
    return DepthModel(module=name, require=_require(graph, order), arrive=arrive,
                      through=_through(graph, order),
                      internal=tuple(sorted(internal.values(), key=lambda p: -p.levels)[:INTERNAL_KEEP]),
                      into=into)


def _require(graph: _Graph, order: list[int]) -> dict[str, Path]:
    """Deepest path from each input port into a register (a backward longest-path pass)."""
    sink_at: dict[int, _Endpoint] = {}
    for sink in graph.sinks:
        if sink.node not in sink_at or sink.levels > sink_at[sink.node].levels:
            sink_at[sink.node] = sink
    need: dict[int, int] = {n: s.levels for n, s in sink_at.items()}
    succ_on_path: dict[int, int] = {}
    for n in reversed(order):
        for b, w in graph.succ.get(n, ()):
            if b in need and need[b] + w > need.get(n, -1):
                need[n] = need[b] + w
                succ_on_path[n] = b
    require = {}
    for port, bits in graph.inputs.items():
        reached = [b for b in bits if b in need]
        if not reached:
            continue
        node = max(reached, key=need.__getitem__)
        nodes = [node]
        while nodes[-1] in succ_on_path:        # ends at a sink that no deeper one follows
            nodes.append(succ_on_path[nodes[-1]])
        require[port] = Path(need[node], port, sink_at[nodes[-1]].name, _via(graph, nodes))
    return require


def _through(graph: _Graph, order: list[int]) -> dict[tuple[str, str], Path]:
    """Deepest combinational path between each input and output port that are connected."""
    out_bits = {b: q for q, bits in graph.outputs.items() for b in bits}
    if not out_bits or not graph.inputs:
        return {}
    pred: dict[int, list[int]] = {}
    for a, outs in graph.succ.items():
        for b, _ in outs:
            pred.setdefault(b, []).append(a)
    reaches_output = set(out_bits)
    stack = list(out_bits)
    while stack:
        for a in pred.get(stack.pop(), ()):
            if a not in reaches_output:
                reaches_output.add(a)
                stack.append(a)
    order = [n for n in order if n in reaches_output]     # one pass per input port: keep it short
    through = {}
    for port, bits in graph.inputs.items():
        starts = {b: 0 for b in bits if b in reaches_output}
        if not starts:
            continue
        level, back = _longest(order, graph.succ, starts, allowed=reaches_output)
        for b, q in out_bits.items():
            if b in level and ((port, q) not in through or level[b] > through[port, q].levels):
                through[port, q] = Path(level[b], port, q, _via(graph, _chain(back, b)))
    return through
