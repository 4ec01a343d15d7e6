"""Differential fuzzing of the simulator and the RTL: seeded random streams, legal and malformed.

:func:`fuzz_case` takes the stream of a random MAC layer (``accel_cases``) and applies one
mutation (:data:`MUTATIONS`): none, a flipped bit, a field set to a random or extreme value,
a toggled token flag, a truncation, a dropped, duplicated or zero word, a PE set with step 0,
``n_out`` above K0, a parameter shift above MAX_SHIFT, a gather from the global buffer, a VEC,
a table activation; a VEC of a random pass (``vec_passes.CHAINS``, placed after the layer's
image) inserted with its fields or one of the fields its descriptor decides off
(``vec_fields``), or with an operand's ``laps`` witness in its descriptor wrong (``vec_laps``), or
with an operand or table moved past the DRAM's end or to its last byte (``vec_past_end``), an
operand's base near 2**32 (``vec_base_wrap``) or its strides walking below 0 (``vec_below_zero``),
or with a stage's parameter outside its operator's range (``vec_params``, any stage: refused before
the first writes) or an operand of another raster than the pass's (``vec_raster``);
a softmax epilogue (in rows straddling PEs: ``softmax_straddle``); a STORE of no pixel put before a STORE (busy ``hw.timing.STORE_MIN_BUSY``
cycles, the fewest); a spatial pass (resize, class map, pooling, a chain after it: ``vec_spatial``,
``spatial_passes``), a chain's pass over more pixels and channels (``vec_wide``), a pass whose written
operand is moved onto another range it touches (``vec_overlap``), a COPY pass of what a STORE wrote,
after a FENCE or racing it (``vec_on_layer``), a pass one of whose descriptor's fields is one off,
at an edge or any value (``vec_desc_field``); words after END (``after_end``); fields at the edges
of their ranges (``field_edge``); a load's or STORE's PE set at the array's edge (``pe_set``); a
second layer's stream and image after the first's, then maybe one word mutated (``two_layers``), or
ordered by a token from STORE to LOAD instead of a FENCE (``store_to_load``).
:func:`expected_outcome` says what the RTL must do with it, from the simulator alone
(``hw.timing.schedule_encoded``, ``sim.functional``): finish in the scheduled cycle with the
functional model's DRAM, or raise the simulator's error code at the same instruction.

Two things the simulator knows that the RTL does not decide by the contract are modelled
here, not tolerated:

* features the RTL does not build yet end with ``UNSUPPORTED`` where the simulator would go
  on: at dispatch (``hw.rtl.insn.rtl_unsupported``), and while a VEC runs, from what its
  descriptor in the DRAM image holds (``hw.rtl.insn.vec_unsupported``, through
  ``cosim.accel_cases.rtl_machine``);
* a DATA error is found while running, so when a stream has both a DATA error and a later
  malformed instruction, the RTL reports whichever it meets first in time: the load's
  cycles (``schedule``) against the cycle the dispatcher reaches the malformed word.  A case
  whose two windows overlap is ``ambiguous`` and reported as such, not compared.

An access outside the DRAM image but inside the configuration's DRAM (``dram_bytes``, the whole
address space in every preset) is not an error of the architecture: the testbench flags it
(``oob``), and the case expects that flag.  A VEC whose operands or tables leave the DRAM itself
is refused (DATA) by both before it touches anything.  On-chip
memories are not cleared at start, so a legal stream that writes DRAM from what it never wrote
has undefined data (``sim.functional.Machine.undefined``, exact where sampled power-on states
were not): only its timing is compared; one that decides a refusal from it is ``ambiguous``.
So is a legal stream whose units race (``hw.hazards``: a mutation moved a load into a buffer half
a running GEMM reads, say): the RTL runs its units concurrently, ``sim.functional`` in program
order, and the contract defines the data only of streams whose accesses are ordered.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np

from cosim.accel_cases import expected_run, random_layers, rtl_machine, stream_words
from cosim.vec_cases import placed_pass
from hw import vector as vec
from hw.config import AcceleratorConfig
from hw.hazards import hazards
from hw.isa import (FIELD_BITS, FIELDS, INSN_BYTES, QUEUE_OF, Act, ErrorCode, Op, Queue, StreamError, VecOp, decode, encode,
                    make)
from hw.numerics import MAX_SHIFT, PARAM_ENTRY, PARAM_ENTRY_BYTES, TABLE_BYTES, TABLE_PARAM_ENTRIES, entry_offset
from hw.rtl.insn import first_unsupported
from hw.rtl.vector_descriptor import OPERAND
from hw.rtl.vector_executor import builds_vector_unit
from hw.timing import DECODE_STAGES, TOKEN_LINKS, decode_until_end, schedule, schedule_encoded, store_pe_extent
from spatial_passes import ALL_KINDS as SPATIAL_KINDS
from spatial_passes import random_case as random_spatial_case
from vec_passes import CHAINS, IN_PLACE, LEAVING, leaving_dram, random_pass

__all__ = ["MUTATIONS", "FuzzCase", "Expect", "fuzz_case", "expected_outcome", "words_bytes"]

MUTATIONS = ("none", "bit_flip", "field_value", "field_extreme", "flag_toggle", "truncate", "drop",
             "duplicate", "zero_word", "pe_step_zero", "n_out_over_k0", "bad_shift", "from_gb", "vec",
             "table_act", "vec_fields", "vec_laps", "softmax_epilogue", "vec_past_end", "vec_base_wrap",
             "vec_below_zero", "vec_params", "vec_raster", "store_no_pixel", "gb_all", "store_gb",
             "softmax_straddle", "vec_spatial", "vec_overlap", "after_end", "vec_wide", "vec_on_layer",
             "field_edge", "vec_desc_field", "pe_set", "two_layers", "store_to_load")
#: Random layers a fuzz run draws its base streams from (mapped once each).
BASE_LAYERS = 8
#: Cycles beyond the expected end before a run is declared hung.
HANG_MARGIN = 400


@dataclass
class FuzzCase:
    name: str
    words: list[int]
    dram: np.ndarray
    description: str


@dataclass
class Expect:
    """What the RTL must do: ``kind`` is "done", "error", "oob" (the testbench's out-of-image
    flag, then done or any error) or "ambiguous"; ``limit`` the cycles before a hang."""
    kind: str
    limit: int
    code: ErrorCode | None = None
    index: int | None = None
    cycles: int | None = None
    dram: np.ndarray | None = field(default=None, repr=False)
    why: str = ""


def words_bytes(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(INSN_BYTES, "little") for w in words)


# ---- cases -------------------------------------------------------------------------------------

def _base(seed: int, index: int, cfg: AcceleratorConfig):
    layers = random_layers(seed, BASE_LAYERS)
    for k in range(BASE_LAYERS):             # the first layer from index on that maps to one stream
        layer = layers[(index + k) % BASE_LAYERS]
        try:
            return layer, expected_run(layer, cfg, seed * 1000 + index)
        except ValueError:
            continue
    raise RuntimeError(f"none of the {BASE_LAYERS} random layers of seed {seed} maps to one stream")


def fuzz_case(seed: int, index: int, cfg: AcceleratorConfig, mutation: str | None = None) -> FuzzCase:
    """Case ``index`` of fuzz run ``seed``: a random layer's stream with mutation
    ``MUTATIONS[index % len(MUTATIONS)]`` (or the one named, so that a regression case found by
    the fuzzer stays the same case when mutations are added) placed at random."""
    layer, exp = _base(seed, index, cfg)
    rng = random.Random(seed * 1_000_003 + index)
    mutation = mutation or MUTATIONS[index % len(MUTATIONS)]
    words, dram = stream_words(exp.stream), exp.dram_in.copy()
    what = _MUTATE[mutation](words, dram, rng, cfg)
    if isinstance(what, tuple):           # a mutation that adds to the image returns the grown image
        what, dram = what
    return FuzzCase(f"{mutation}_{index}", words, dram, f"{layer.name}: {what}")


def _pick(words, rng, ops=None) -> int | None:
    """A random instruction index (of one of ``ops``), or None."""
    idx = [i for i, w in enumerate(words) if ops is None or (w & 0xF) in ops]
    return rng.choice(idx) if idx else None


def _set_fields(words, i, **values) -> None:
    insn = decode(words_bytes([words[i]]))
    insn.f = {**insn.f, **values}
    words[i] = int.from_bytes(encode(insn), "little")


def _mut_none(words, dram, rng, cfg):
    return "unchanged"


def _mut_bit_flip(words, dram, rng, cfg):
    i, b = rng.randrange(len(words)), rng.randrange(8 * INSN_BYTES)
    words[i] ^= 1 << b
    return f"bit {b} of word {i} flipped"


def _field_mutation(words, rng, extreme: bool):
    i = _pick(words, rng, [int(o) for o in FIELD_BITS if FIELD_BITS[o]])
    if i is None:
        return "no instruction with fields"
    op = Op(words[i] & 0xF)
    name, bits, signed = rng.choice(FIELDS[op])
    raw = (1 << bits) - 1 if extreme else rng.randrange(1 << bits)
    value = raw - (1 << bits) if signed and raw >> (bits - 1) else raw
    _set_fields(words, i, **{name: value})
    return f"{op.name} {i}: {name} = {value}"


def _mut_field_edge(words, dram, rng, cfg):
    """One or two fields of an instruction set to an edge of their range: 0, 1, the largest or one
    below it, a signed field's most negative or -1."""
    i = _pick(words, rng, [int(o) for o in FIELD_BITS if FIELD_BITS[o]])
    if i is None:
        return "no instruction with fields"
    op = Op(words[i] & 0xF)
    said = []
    for name, bits, signed in rng.sample(FIELDS[op], min(len(FIELDS[op]), rng.randint(1, 2))):
        top = (1 << (bits - 1 if signed else bits)) - 1
        value = rng.choice([0, 1, top, top - 1] + ([-(top + 1), -1] if signed else []))
        _set_fields(words, i, **{name: value})
        said.append(f"{name} = {value}")
    return f"{op.name} {i}: {', '.join(said)}"


def _mut_field_value(words, dram, rng, cfg):
    return _field_mutation(words, rng, extreme=False)


def _mut_field_extreme(words, dram, rng, cfg):
    return _field_mutation(words, rng, extreme=True)


def _mut_flag_toggle(words, dram, rng, cfg):
    i, b = rng.randrange(len(words)), rng.randrange(4, 8)
    words[i] ^= 1 << b
    return f"token flag bit {b} of word {i} toggled"


def _mut_truncate(words, dram, rng, cfg):
    n = rng.randrange(1, len(words))
    del words[n:]
    return f"cut after {n} words (no END)"


def _mut_drop(words, dram, rng, cfg):
    i = rng.randrange(len(words))
    del words[i]
    return f"word {i} dropped"


def _mut_duplicate(words, dram, rng, cfg):
    i = rng.randrange(len(words))
    words.insert(i, words[i])
    return f"word {i} duplicated"


def _mut_zero_word(words, dram, rng, cfg):
    i = rng.randrange(len(words))
    words.insert(i, 0)
    return f"zero word inserted at {i}"


def _mut_pe_step_zero(words, dram, rng, cfg):
    i = _pick(words, rng, [Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM, Op.STORE])
    _set_fields(words, i, pe_step=0, pe_count=2)
    return f"word {i}: pe_step 0 over 2 PEs"


def _mut_n_out_over_k0(words, dram, rng, cfg):
    i = _pick(words, rng, [Op.LOAD_WGT])
    n_out = rng.randrange(cfg.k0 + 1, 1 << FIELD_BITS[Op.LOAD_WGT]["n_out"])
    _set_fields(words, i, n_out=n_out)
    return f"LOAD_WGT {i}: n_out {n_out}"


def _mut_bad_shift(words, dram, rng, cfg):
    i = _pick(words, rng, [Op.LOAD_PARAM])
    insn = decode(words_bytes([words[i]]))
    entry = rng.randrange(max(1, insn.f["n_entries"]))
    addr = insn.f["src_addr"] + entry * PARAM_ENTRY_BYTES + entry_offset(PARAM_ENTRY, "shift")
    if addr < dram.size:
        dram[addr] = rng.randrange(MAX_SHIFT + 1, 256)
    return f"LOAD_PARAM {i}: entry {entry}'s shift set to {int(dram[addr]) if addr < dram.size else '-'}"


def _mut_from_gb(words, dram, rng, cfg):
    i = _pick(words, rng, [Op.LOAD_INP])
    _set_fields(words, i, src_gb=1)
    return f"LOAD_INP {i} gathers from the global buffer"


def _mut_gb_all(words, dram, rng, cfg):
    """The image copied into the global buffer at its address 0 by a LOAD_GB put first (a FENCE
    after it or not), then one LOAD_INP or every one gathers from there (``src_gb``) at the same
    addresses: the buffer's write side, and reads of what it wrote."""
    n = min(dram.size, cfg.global_buf_bytes)
    fence = rng.random() < 0.5
    loads = [i for i, w in enumerate(words) if (w & 0xF) == Op.LOAD_INP]
    chosen = loads if rng.random() < 0.5 else [rng.choice(loads)] if loads else []
    for i in chosen:
        _set_fields(words, i, src_gb=1)
    words[0:0] = stream_words([make(Op.LOAD_GB, n_bytes=n)] + ([make(Op.FENCE)] if fence else []))
    return (f"{n} bytes of the image into the buffer{', a FENCE' if fence else ''}; LOAD_INP "
            f"{'all' if len(chosen) == len(loads) else chosen} (now +{1 + fence}) from it")


def _mut_store_gb(words, dram, rng, cfg):
    """A STORE writes the global buffer (``dst_gb``, at a random address) instead of DRAM, or a
    copy of it put after it does; then maybe a FENCE, then maybe a LOAD_GB (the buffer's other
    writer: with no FENCE between, TOKEN)."""
    i = _pick(words, rng, [Op.STORE])
    if i is None:
        return "no STORE"
    insn = decode(words_bytes([words[i]]))
    addr = rng.randrange(cfg.global_buf_bytes)
    gb = dataclasses.replace(insn, f={**insn.f, "dst_gb": 1, "dst_addr": addr})
    copy = rng.random() < 0.5
    if copy:
        gb = dataclasses.replace(gb, pop_prev=False, pop_next=False, push_prev=False, push_next=False)
    after = [make(Op.FENCE)] if rng.random() < 0.5 else []
    if rng.random() < 0.5:
        after.append(make(Op.LOAD_GB, n_bytes=rng.randrange(1, 257),
                          dst_addr=rng.randrange(cfg.global_buf_bytes - 256)))
    words[i:i + 1] = ([words[i]] if copy else []) + stream_words([gb] + after)
    return (f"STORE {i}{' (a copy after it)' if copy else ''} into the buffer at {addr}; then "
            f"{' and '.join(a.op.name for a in after) or 'nothing'}")


def _mut_vec(words, dram, rng, cfg):
    """A word replaced by a VEC whose descriptor is the image's first bytes, the image grown with
    zeros to hold it (a descriptor read past the image would leave the outcome undefined)."""
    i = rng.randrange(len(words))
    words[i] = int.from_bytes(encode(make(Op.VEC, work=rng.randrange(1, 64))), "little")
    grown = np.concatenate([dram, np.zeros(max(0, vec.MAX_DESCRIPTOR_BYTES - dram.size), dram.dtype)])
    return f"word {i} replaced by a VEC", grown


def _mut_table_act(words, dram, rng, cfg):
    """A STORE applies the table activation; two LOAD_PARAMs with ``table`` put first fill the
    table of every PE from the layer's own bytes, then part of one PE's at a random entry."""
    i = _pick(words, rng, [Op.STORE])
    if i is None:
        return "no STORE"
    _set_fields(words, i, act=Act.TABLE)
    whole = min(TABLE_PARAM_ENTRIES, dram.size // PARAM_ENTRY_BYTES)     # the whole table, or all the image holds
    dst = rng.randrange(whole)
    part = rng.randrange(1, whole - dst + 1)
    src = [rng.randrange(dram.size - n * PARAM_ENTRY_BYTES + 1) for n in (whole, part)]
    pe = rng.randrange(cfg.num_pe)
    words[0:0] = stream_words([make(Op.LOAD_PARAM, pe_count=cfg.num_pe, pe_step=1, table=1, src_addr=src[0],
                                    n_entries=whole),
                               make(Op.LOAD_PARAM, pe_first=pe, pe_count=1, table=1, src_addr=src[1], dst_addr=dst,
                                    n_entries=part)])
    return f"STORE {i} (now {i + 2}): table activation; tables from byte {src[0]}, PE {pe}'s entries " \
           f"{dst}..{dst + part - 1} from byte {src[1]}"


def _vec_pass(words, dram, rng, move=None):
    """A random pass after ``dram``'s image (changed by ``move(d)`` when given: the descriptor it
    returns is placed), its VEC inserted before a random word of ``words``: (index, the VEC's
    fields, the pass's chain, descriptor, the grown image)."""
    chain = rng.choice(sorted(CHAINS))
    d, image = random_pass(np.random.default_rng(rng.randrange(1 << 32)), CHAINS[chain], in_place=chain in IN_PLACE,
                           prefix=dram)
    if move is not None:
        d = move(d)
    insn, grown = placed_pass(d, image)
    i = rng.randrange(len(words))
    words.insert(i, stream_words([insn])[0])
    return i, insn.f, chain, d, grown


def _mut_vec_fields(words, dram, rng, cfg):
    i, f, chain, _, grown = _vec_pass(words, dram, rng)
    name = rng.choice((None,) + vec.TIMING_FIELDS)
    if name is None:
        return f"VEC {i} of a {chain} pass inserted", grown
    value = f[name] ^ 1 << rng.randrange(min(4, FIELD_BITS[Op.VEC][name]))
    _set_fields(words, i, **{name: value})
    return f"VEC {i} of a {chain} pass inserted, its {name} {f[name]} -> {value}", grown


def _mut_vec_laps(words, dram, rng, cfg):
    i, f, chain, d, grown = _vec_pass(words, dram, rng)
    k, axis = rng.randrange(len(d.operands)), rng.choice("yx")
    laps = getattr(d.operands[k], axis).fields()["laps"]
    wrong = rng.choice([laps + 1, laps + rng.randrange(2, 1000), max(0, laps - 1) if laps else laps + 2])
    field, start = OPERAND[f"{axis}_laps"], f["desc_addr"] + vec.HEADER_BYTES + k * vec.OPERAND_BYTES
    operand = int.from_bytes(grown[start:start + vec.OPERAND_BYTES].tobytes(), "little")
    operand = operand & ~((1 << field.width) - 1 << field.offset) | wrong << field.offset
    grown[start:start + vec.OPERAND_BYTES] = np.frombuffer(operand.to_bytes(vec.OPERAND_BYTES, "little"), np.uint8)
    return f"VEC {i} of a {chain} pass inserted, operand {k}'s {axis} laps {laps} -> {wrong}", grown


def _moved_pass(words, dram, rng, cfg, move) -> tuple:
    """A random pass inserted (``_vec_pass``) whose descriptor is ``move(d)``'s (``(descriptor,
    what)``), placed with its fields (``cosim.vec_cases.placed_pass``): (what, image)."""
    said = []

    def moved(d):
        d, what = move(d)
        said.append(what)
        return d
    i, _, chain, _, grown = _vec_pass(words, dram, rng, moved)
    return f"VEC {i} of a {chain} pass inserted, {said[0]}", grown


def _mut_vec_past_end(words, dram, rng, cfg):
    """A pass whose operand or table ends one byte past the DRAM, or at its last byte (not refused;
    past the image: the testbench's out-of-image flag)."""
    how = rng.choice(LEAVING)
    k = rng.choice([None, -1])

    def move(d):
        try:
            return leaving_dram(d, how, cfg.dram_bytes, k), f"moved {how} (operand {k})"
        except (ValueError, StopIteration):
            return d, f"not moved {how} (operand {k}: none can be)"
    return _moved_pass(words, dram, rng, cfg, move)


def _reach(d, k: int) -> tuple[int, int] | None:
    """(lowest, highest) byte of operand ``k`` of ``d`` relative to its base, or None if it touches none."""
    extents = vec.pass_extents(*vec.descriptor_field_slots(d))
    _, touched, lo, hi = extents[k]
    return (lo - d.operands[k].base, hi - d.operands[k].base) if touched else None


def _mut_vec_base_wrap(words, dram, rng, cfg):
    """A pass whose operand's base is near 2**32: its bytes cross the end of the address space, or
    (one case in several) end at its last byte."""
    def move(d):
        k = rng.randrange(len(d.operands))
        top = (_reach(d, k) or (0, 0))[1]
        base = (1 << 32) - rng.randrange(1, max(top, 0) + 3)
        return d.relocated([base if j == k else op.base for j, op in enumerate(d.operands)]), f"operand {k} at {base}"
    return _moved_pass(words, dram, rng, cfg, move)


def _mut_vec_below_zero(words, dram, rng, cfg):
    """A pass whose operand walks below 0: negative strides from a base near 0.  Never down to
    byte 0 exactly: a pass that runs there reads or writes the layer's bytes while its loads and
    stores run, a race the stream leaves open (no tokens), which the simulator's order does not model."""
    def move(d):
        k = rng.randrange(len(d.operands))
        op = d.operands[k]
        down = {p: dataclasses.replace(ax, stride=-abs(ax.stride) - rng.randrange(2), s_hi=-abs(ax.s_hi))
                for p, ax in (("y", op.y), ("x", op.x))}
        moved = dataclasses.replace(op, base=0, **down)
        operands = d.operands[:k] + (moved,) + d.operands[k + 1:]
        low = (_reach(dataclasses.replace(d, operands=operands), k) or (0, 0))[0]
        if low >= 0:
            return d, f"operand {k} not moved (its strides reach nothing below its base)"
        moved = dataclasses.replace(moved, base=rng.randrange(-low))
        return (dataclasses.replace(d, operands=d.operands[:k] + (moved,) + d.operands[k + 1:]),
                f"operand {k} from {moved.base} with strides {down['y'].stride}, {down['x'].stride}")
    return _moved_pass(words, dram, rng, cfg, move)


def _outside_values(op, name: str) -> list[int]:
    """Values of stage parameter ``name`` of ``op`` that its field holds (``vec.STAGE_PARAMS``) and
    its operator refuses (``vec.PARAM_RANGES``)."""
    lo, hi = vec.PARAM_RANGES[op][name]
    bits = next(b for n, b, _ in vec.STAGE_PARAMS[op] if n == name)
    return sorted({v for v in (lo - 1, hi + 1, 0, (1 << bits) - 1) if 0 <= v < 1 << bits and not lo <= v <= hi})


def _mut_vec_params(words, dram, rng, cfg):
    """A pass one of whose stages (any, the last often: the others may have written by then) has a
    parameter its operator refuses, in the bits its field holds."""
    def move(d):
        choices = [(i, name, v) for i, st in enumerate(d.stages) if st.op in vec.PARAM_RANGES
                   for name in vec.PARAM_RANGES[st.op] for v in _outside_values(st.op, name)]
        if not choices:
            return d, "no stage parameter to put out of range"
        i, name, v = rng.choice(choices)
        st = dataclasses.replace(d.stages[i], params=d.stages[i].params | {name: v})
        return dataclasses.replace(d, stages=d.stages[:i] + (st,) + d.stages[i + 1:]), f"stage {i}'s {name} = {v}"
    return _moved_pass(words, dram, rng, cfg, move)


def _mut_vec_raster(words, dram, rng, cfg):
    """A pass one of whose operands covers one pixel more or fewer along an axis than the pass."""
    def move(d):
        k, axis = rng.randrange(len(d.operands)), rng.choice("yx")
        ax = getattr(d.operands[k], axis)
        n = ax.n + 1 if ax.n == 1 or rng.random() < 0.5 else ax.n - 1
        op = dataclasses.replace(d.operands[k], **{axis: dataclasses.replace(ax, n=n, wrap=max(ax.wrap, n))})
        return (dataclasses.replace(d, operands=d.operands[:k] + (op,) + d.operands[k + 1:]),
                f"operand {k}'s {axis} covers {n} pixels, the pass {ax.n}")
    return _moved_pass(words, dram, rng, cfg, move)


def _mut_softmax_epilogue(words, dram, rng, cfg):
    """A STORE normalises rows of its channels (``ep_row``): rows of a PE's channels, of a row
    group's or of a random length (whole rows or not); a LOAD_PARAM with ``table`` put first fills
    every PE's table from the layer's own bytes (random exponentials), and the parameter entries'
    output shifts become 6..15 (mostly legal)."""
    i = _pick(words, rng, [Op.STORE])
    if i is None:
        return "no STORE"
    f = decode(words_bytes([words[i]])).f
    row = rng.choice([f["k_per_pe"], f["k_per_pe"] * f["pe_k"], rng.randrange(1, 2 * cfg.k0 + 2)])
    return _epilogue_rows(words, dram, rng, cfg, i, row, [6, 15] + list(range(7, 15)) * 4)


def _straddling_rows(f: dict) -> list[int]:
    """Row lengths that cut a STORE's row group (its first, as clipped by ``t_k``) into whole rows
    but not a PE's channels: some row continues from one PE's lanes into the next's."""
    members = [store_pe_extent(f, col, 0)[2] for col in range(f["pe_k"])]
    total = sum(members)
    return [r for r in range(2, total + 1) if total % r == 0 and members[0] % r and members[0] < total]


def _mut_softmax_straddle(words, dram, rng, cfg):
    """``softmax_epilogue`` on a STORE of several PEs a row group, in rows that straddle PEs
    (``_straddling_rows``), often with its PEs' channels first cut below K0 (``k_per_pe`` and
    ``k_step``), so that a row continues past the lanes a PE leaves empty: the mapper's rows
    that cross PEs (Swin's 49 over e_small's 32 lanes) leave no lane empty before the next PE,
    nor do the random layers' STOREs of several PEs, and random lengths seldom straddle (fuzz seed 9200, case 355 on e_small).  The output shifts are legal, so that
    the rows are normalised and compared, not refused."""
    stores = [i for i, w in enumerate(words) if (w & 0xF) == Op.STORE and decode(words_bytes([w])).f["pe_k"] > 1]
    if not stores:
        return "no STORE of several PEs a row group"
    i = rng.choice(stores)
    f = decode(words_bytes([words[i]])).f
    # at most the fewest channels a PE of the group had: their parameter entries are loaded
    filled = min(cfg.k0 - 1, *(store_pe_extent(f, col, 0)[2] for col in range(f["pe_k"])))
    k = rng.randrange(1, max(2, filled + 1))
    cut = {"k_per_pe": k, "k_step": k}
    if rng.random() < 0.75 and filled >= 1 and _straddling_rows({**f, **cut}):
        _set_fields(words, i, **cut)
        f = {**f, **cut}
    rows = _straddling_rows(f)
    if not rows:
        return "no row straddling PEs in the STORE picked"
    # an image smaller than a table grows by random bytes: every PE's whole table is then defined
    grown = np.concatenate([dram, np.frombuffer(rng.randbytes(max(0, TABLE_BYTES - dram.size)), np.uint8)])
    what = _epilogue_rows(words, grown, rng, cfg, i, rng.choice(rows), list(range(7, 15)))
    return f"{what}; k_per_pe {f['k_per_pe']}, k_step {f['k_step']}", grown


def _epilogue_rows(words, dram, rng, cfg, i: int, row: int, shifts: list):
    """STORE ``i`` normalises rows of ``row``; every PE's table from the layer's bytes, the parameter
    entries' output shifts drawn from ``shifts``."""
    _set_fields(words, i, ep_row=max(1, row))
    shift_at = entry_offset(PARAM_ENTRY, "ep_shift")
    for w in words:
        insn = decode(words_bytes([w]))
        if insn.op == Op.LOAD_PARAM and not insn.f["table"]:
            for e in range(insn.f["n_entries"]):
                addr = insn.f["src_addr"] + e * PARAM_ENTRY_BYTES + shift_at
                if addr < dram.size:
                    dram[addr] = rng.choice(shifts)
    whole = min(TABLE_PARAM_ENTRIES, dram.size // PARAM_ENTRY_BYTES)     # the whole table, or all the image holds
    src = rng.randrange(dram.size - whole * PARAM_ENTRY_BYTES + 1)
    words[0:0] = stream_words([make(Op.LOAD_PARAM, pe_count=cfg.num_pe, pe_step=1, table=1, src_addr=src,
                                    n_entries=whole)])
    return f"STORE {i} (now {i + 1}): softmax epilogue over rows of {max(1, row)}; tables from byte {src}"


def _mut_store_no_pixel(words, dram, rng, cfg):
    """A copy of a STORE with no pixel (``out_h`` or ``out_w`` 0) and no token flags put before it:
    two STOREs back to back, the first as short as any STORE is."""
    i = _pick(words, rng, [Op.STORE])
    if i is None:
        return "no STORE"
    axis = rng.choice(("out_h", "out_w"))
    copy = decode(words_bytes([words[i]]))
    copy = dataclasses.replace(copy, pop_prev=False, pop_next=False, push_prev=False, push_next=False,
                               f={**copy.f, axis: 0})
    words.insert(i, int.from_bytes(encode(copy), "little"))
    return f"STORE {i}: a copy with {axis} 0 put before it"


def _mut_vec_spatial(words, dram, rng, cfg):
    """A random spatial pass (``spatial_passes``: a resize, class map or pooling, a chain after it
    or not), of the unit tests' sizes or (one in two) wide ones, inserted before a random word."""
    kind, wide = rng.choice(SPATIAL_KINDS), rng.random() < 0.5
    d, image = random_spatial_case(np.random.default_rng(rng.randrange(1 << 32)), kind, prefix=dram, wide=wide)
    insn, grown = placed_pass(d, image)
    i = rng.randrange(len(words))
    words.insert(i, stream_words([insn])[0])
    return f"VEC {i}: a {'wide ' if wide else ''}{kind} pass inserted", grown


def _mut_vec_wide(words, dram, rng, cfg):
    """A random pass of a chain (``vec_passes.CHAINS``) over up to 6x6 pixels of up to 67 channels
    (rows of odd lengths past the lanes: softmax's and layernorm's), inserted before a random word."""
    chain = rng.choice(sorted(CHAINS))
    raster = (rng.randint(1, 6), rng.randint(1, 6))
    d, image = random_pass(np.random.default_rng(rng.randrange(1 << 32)), CHAINS[chain], in_place=chain in IN_PLACE,
                           prefix=dram, raster=raster, max_c=rng.choice([9, 17, 67]))
    insn, grown = placed_pass(d, image)
    i = rng.randrange(len(words))
    words.insert(i, stream_words([insn])[0])
    return f"VEC {i} of a {chain} pass over {raster[0]}x{raster[1]}x{d.c} inserted", grown


def _mut_vec_overlap(words, dram, rng, cfg):
    """A pass one of whose written operands is moved onto the bytes of another range it touches
    (an operand, read or written, or a table): partly, at its first byte or at its last."""
    def move(d):
        written = sorted({st.out for st in d.stages if st.out != vec.NONE})
        extents = vec.pass_extents(*vec.descriptor_field_slots(d))
        k = rng.choice(written)
        others = [(name, lo, hi) for j, (name, touched, lo, hi) in enumerate(extents) if touched and j != k]
        reach = _reach(d, k)
        if reach is None or not others:
            return d, f"operand {k} not moved (nothing else to overlap)"
        name, lo, hi = rng.choice(others)
        first = rng.choice([lo, hi, rng.randint(lo - (reach[1] - reach[0]), hi)]) - reach[0]
        if not 0 <= first < 1 << 32:
            return d, f"operand {k} not moved (its base would leave the field)"
        return d.relocated([first if j == k else op.base for j, op in enumerate(d.operands)]), \
            f"operand {k} moved to {first} over {name} ({lo}..{hi})"
    return _moved_pass(words, dram, rng, cfg, move)


def _mut_after_end(words, dram, rng, cfg):
    """Words after END: copies of the stream's own instructions, a malformed word or zeros (the
    stream ends at END; nothing after it is fetched as an instruction of it)."""
    n = rng.randint(1, 4)
    tail = [rng.choice([rng.choice(words), 0, rng.getrandbits(8 * INSN_BYTES)]) for _ in range(n)]
    words.extend(tail)
    return f"{n} words after END"


def _mut_vec_on_layer(words, dram, rng, cfg):
    """A COPY pass reading what a STORE writes (the layer's output, as one row of bytes), inserted
    after the STORE, right after it or later, with a FENCE before it or not (unordered, a race:
    then only its timing is compared); its copy written after the image."""
    from hw.hazards import accesses

    stores = [i for i, w in enumerate(words) if (w & 0xF) == Op.STORE]
    if not stores:
        return "no STORE"
    i = rng.choice(stores)
    store = decode(words_bytes([words[i]]))
    out = [a for a in accesses(store, cfg, dram) if a.write and a.memory == "dram"]
    if not out:
        return f"STORE {i} writes no DRAM"
    lo, hi = out[0].lo, out[0].hi
    n = min(hi - lo + 1, 4096)
    src = vec.Operand(lo, 1, vec.Axis(1, n), vec.Axis(n, 1))
    dst = vec.Operand(dram.size, 1, vec.Axis(1, n), vec.Axis(n, 1))
    d = vec.Descriptor(1, n, 1, (src, dst), (vec.Stage(VecOp.COPY, 0, vec.NONE, 1, {}),))
    image = np.concatenate([dram, np.zeros(n, np.uint8)])
    insn, grown = placed_pass(d, image)
    j = rng.randint(i + 1, len(words) - 1)
    fence = rng.random() < 0.5
    words[j:j] = stream_words(([make(Op.FENCE)] if fence else []) + [insn])
    return f"STORE {i}'s bytes {lo}..{lo + n - 1} copied by a VEC at {j}{' after a FENCE' if fence else ''}", grown


def _descriptor_sections(d) -> list[tuple[str, int, list]]:
    """(name, byte offset, packed fields) of each section of ``d``'s encoding: its header, its
    operands, its stages (each with its operation's parameters)."""
    out = [("header", 0, vec.HEADER_FIELDS)]
    out += [(f"operand {k}", vec.HEADER_BYTES + k * vec.OPERAND_BYTES, vec.OPERAND_SPEC) for k in range(len(d.operands))]
    at = vec.HEADER_BYTES + len(d.operands) * vec.OPERAND_BYTES
    out += [(f"stage {i}", at + i * vec.STAGE_BYTES, vec.STAGE_HEAD + vec.STAGE_PARAMS[st.op])
            for i, st in enumerate(d.stages)]
    return out


def _near_value(rng, old: int, bits: int, signed: bool) -> int:
    """A value of a ``bits``-bit field near ``old`` (one off), at an edge of its range, or any."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    pick = rng.random()
    if pick < 0.4:
        value = old + rng.choice([-1, 1])
    elif pick < 0.7:
        value = rng.choice([lo, hi, 0, 1, hi - 1])
    else:
        value = rng.randint(lo, hi)
    return min(hi, max(lo, value))


def _mut_vec_desc_field(words, dram, rng, cfg):
    """A random pass (a chain's or a spatial one) one of whose descriptor's fields (its header's, an
    operand's, its witnesses included, or a stage's) is one off, at an edge of its range or any
    value; the VEC's fields recomputed from the changed descriptor when it decodes (so that it is
    refused, if at all, for what its descriptor holds, not for fields that disagree with it)."""
    np_rng = np.random.default_rng(rng.randrange(1 << 32))
    if rng.random() < 0.5:
        chain = rng.choice(sorted(CHAINS))
        d, image = random_pass(np_rng, CHAINS[chain], in_place=chain in IN_PLACE, prefix=dram)
    else:
        chain = rng.choice(SPATIAL_KINDS)
        d, image = random_spatial_case(np_rng, chain, prefix=dram, wide=rng.random() < 0.5)
    insn, grown = placed_pass(d, image)
    section, at, spec = rng.choice(_descriptor_sections(d))
    k = rng.randrange(len(spec))
    name, bits, signed = spec[k]
    pos = sum(b for _, b, _ in spec[:k])
    start = insn.f["desc_addr"] + at
    nbytes = (pos + bits + 7) // 8
    word = int.from_bytes(grown[start:start + nbytes].tobytes(), "little")
    raw = (word >> pos) & ((1 << bits) - 1)
    old = raw - (1 << bits) if signed and raw >> (bits - 1) else raw
    new = _near_value(rng, old, bits, signed)
    word = word & ~(((1 << bits) - 1) << pos) | (new & ((1 << bits) - 1)) << pos
    grown[start:start + nbytes] = np.frombuffer(word.to_bytes(nbytes, "little"), np.uint8)
    what = f"{section}'s {name} {old} -> {new}"
    try:
        changed = vec.decode_descriptor(bytes(grown[insn.f["desc_addr"]:insn.f["desc_addr"] + vec.MAX_DESCRIPTOR_BYTES]))
        insn = make(Op.VEC, desc_addr=insn.f["desc_addr"], **vec.vec_fields(changed))
    except (StreamError, ValueError, KeyError):
        what += " (malformed: the VEC's fields kept)"
    i = rng.randrange(len(words))
    words.insert(i, stream_words([insn])[0])
    return f"VEC {i} of a {chain} pass inserted, {what}", grown


def _mut_pe_set(words, dram, rng, cfg):
    """A load's or STORE's PE set (``pe_first``, ``pe_count``, ``pe_step``) drawn at the array's
    edge: its last PE the array's last, one past it, or anywhere in it; or (about one case in seven) no
    PE or one PE more than the array has (the mapper's sets and the other mutations seldom reach a
    multi-PE array's edges)."""
    i = _pick(words, rng, [Op.LOAD_INP, Op.LOAD_WGT, Op.LOAD_PARAM, Op.STORE])
    if i is None:
        return "no load or STORE"
    count = rng.choice([0, cfg.num_pe + 1]) if rng.random() < 0.15 else rng.randint(1, cfg.num_pe)
    step = rng.randint(1, max(1, (cfg.num_pe - 1) // (count - 1))) if count > 1 else rng.randrange(64)
    span = max(0, count - 1) * step
    first = rng.choices([cfg.num_pe - 1 - span, cfg.num_pe - span, rng.randint(0, max(0, cfg.num_pe - 1 - span))],
                        [2, 1, 2])[0]
    first = min(max(0, first), (1 << FIELD_BITS[Op(words[i] & 0xF)]["pe_first"]) - 1)
    _set_fields(words, i, pe_first=first, pe_count=count, pe_step=step)
    return f"{Op(words[i] & 0xF).name} {i}: PE set first {first}, count {count}, step {step} ({cfg.num_pe} PEs)"


#: The DRAM address field of each instruction that has one, and the flag that makes it a global-buffer
#: address instead (None: always DRAM).
_DRAM_ADDRESS = {Op.LOAD_INP: ("src_addr", "src_gb"), Op.LOAD_WGT: ("src_addr", None),
                 Op.LOAD_PARAM: ("src_addr", None), Op.LOAD_GB: ("src_addr", None), Op.STORE: ("dst_addr", "dst_gb")}
#: Mutations of single words that ``two_layers`` may apply to the joined stream.
_WORD_MUTATIONS = ("bit_flip", "field_value", "field_edge", "flag_toggle", "drop", "duplicate", "pe_set")


def _shifted(words: list[int], offset: int) -> list[int]:
    """``words`` with every DRAM address moved up by ``offset`` (a layer's stream placed after another's image)."""
    out = []
    for w in words:
        insn = decode(words_bytes([w]))
        field_, gb = _DRAM_ADDRESS.get(insn.op, (None, None))
        if field_ is not None and not (gb and insn.f[gb]):
            insn.f = {**insn.f, field_: insn.f[field_] + offset}
        out.append(int.from_bytes(encode(insn), "little"))
    return out


def _append_layer(words: list[int], dram: np.ndarray, exp, fence: bool) -> tuple[int, np.ndarray]:
    """Layer ``exp``'s stream (``accel_cases.Expected``) put in place of the END of ``words``, after a
    FENCE or not, its image after ``dram``'s (at the next multiple of 64) and its DRAM addresses moved
    there: (where its image starts, the joined image)."""
    offset = -(-dram.size // 64) * 64
    assert (words[-1] & 0xF) == Op.END
    words[-1:] = stream_words([make(Op.FENCE)] if fence else []) + _shifted(stream_words(exp.stream), offset)
    return offset, np.concatenate([dram, np.zeros(offset - dram.size, np.uint8), exp.dram_in])


def _mut_two_layers(words, dram, rng, cfg):
    """Another random layer's stream after the layer's (``_append_layer``; a FENCE between or not:
    without it the second's loads may race the first's units, then only cycles are compared); then,
    one case in two, a mutation of one word of the joined stream (``_WORD_MUTATIONS``): so that a
    fault meets the on-chip state a whole layer left (each case is otherwise one layer's stream)."""
    seed, index = rng.randrange(1 << 20), rng.randrange(BASE_LAYERS)
    layer, exp = _base(seed, index, cfg)
    fence = rng.random() < 0.5
    offset, grown = _append_layer(words, dram, exp, fence)
    what = f"then {layer.name} (seed {seed}) at byte {offset}{' after a FENCE' if fence else ''}"
    if rng.random() < 0.5:
        mutation = rng.choice(_WORD_MUTATIONS)
        what += f"; {mutation}: {_MUTATE[mutation](words, grown, rng, cfg)}"
    return what, grown


def _link_flag(q: Queue, fifo: str) -> str:
    """The flag with which an instruction of queue ``q`` pushes or pops ``fifo`` (``TOKEN_LINKS``)."""
    return next(flag for flag, name in TOKEN_LINKS[q].items() if name == fifo)


def _mut_store_to_load(words, dram, rng, cfg):
    """Another random layer's stream after the layer's (``_append_layer``), the first's closing
    FENCE gone, ordered by a token from STORE to LOAD instead (FIFO s2l, the ring's link): the
    first's last STORE, or one case in four a random one of its STOREs, pushes it; the second's
    first load pops it (legal: its loads wait for that STORE), or a random later load of the second
    (its loads before may race the first's units: only cycles compared), or a load before the
    STORE (TOKEN there: none pushed yet), or none (TOKEN at END: a token left)."""
    seed, index = rng.randrange(1 << 20), rng.randrange(BASE_LAYERS)
    layer, exp = _base(seed, index, cfg)
    join = len(words) - 1                      # where the second's stream starts (the first's END)
    offset, grown = _append_layer(words, dram, exp, fence=False)
    while join and (words[join - 1] & 0xF) == Op.FENCE:
        del words[join - 1]
        join -= 1
    stores = [i for i in range(join) if (words[i] & 0xF) == Op.STORE]
    loads = [i for i, w in enumerate(words) if QUEUE_OF.get(Op(w & 0xF)) == Queue.LOAD]
    if not stores:
        return "no STORE", grown
    push = stores[-1] if rng.random() < 0.75 else rng.choice(stores)
    later = [i for i in loads if i >= join]
    pop = rng.choice([later[0]] * 4 + [rng.choice(later), rng.choice([i for i in loads if i < push] or [None]),
                      None]) if later else None
    for i, flag in ((push, _link_flag(Queue.STORE, "s2l")), (pop, _link_flag(Queue.LOAD, "s2l"))):
        if i is not None:
            insn = decode(words_bytes([words[i]]))
            words[i] = int.from_bytes(encode(dataclasses.replace(insn, **{flag: True})), "little")
    return (f"then {layer.name} (seed {seed}) at byte {offset}, no FENCE; STORE {push} pushes s2l, "
            f"{'nothing pops it' if pop is None else f'{Op(words[pop] & 0xF).name} {pop} pops it'}"), grown


_MUTATE = {name: globals()[f"_mut_{name}"] for name in MUTATIONS}


# ---- the expected outcome ----------------------------------------------------------------------

def expected_outcome(words: list[int], dram: np.ndarray, cfg: AcceleratorConfig) -> Expect:
    """What the RTL must do with the stream ``words`` on ``dram`` (see the module docstring)."""
    from sim.functional import DramBoundsError

    data = words_bytes(words)
    insns, _ = decode_until_end(data)
    static, sched = _static_error(data, insns, cfg)
    stop = len(insns) if static is None else static.index
    prefix = insns[:stop]
    timing = schedule(prefix, cfg, require_end=False)
    limit = int(timing.total_cycles) + HANG_MARGIN
    machine, runtime = _run(rtl_machine(cfg, dram.copy()), prefix)
    decided = next((u for u in machine.undefined if u.decides), None)
    if decided is not None:     # the RTL may refuse where the model ran on, or the reverse
        return Expect("ambiguous", limit, why=f"{decided}: whether it is refused is undefined")
    if runtime is not None and not isinstance(runtime, DramBoundsError):
        race = _race_until(prefix, runtime.index, cfg, dram)
        if race:        # what the failing instruction reads may depend on timing
            return Expect("ambiguous", limit, why=f"{runtime}, after units that race ({race[0]})")
    if runtime is None and static is None:
        race = hazards(prefix, sched, cfg, dram)
        if race:
            return Expect("done", sched.total_cycles + HANG_MARGIN, cycles=sched.total_cycles,
                          why=f"legal, but its units race ({race[0]}): its data depend on timing")
        if machine.undefined:
            return Expect("done", sched.total_cycles + HANG_MARGIN, cycles=sched.total_cycles,
                          why=f"legal, but {machine.undefined[0]}: its data are undefined")
    if runtime is not None:
        return _runtime_or_static(runtime, static, timing, limit, insns)
    if static is not None:
        return Expect("error", limit, static.code, static.index, why=str(static))
    return Expect("done", sched.total_cycles + HANG_MARGIN, cycles=sched.total_cycles, dram=machine.dram,
                  why="legal")


def _race_until(insns, index: int, cfg: AcceleratorConfig, dram: np.ndarray) -> list:
    """The races (``hw.hazards``) among ``insns`` up to ``index``, the instruction a run-time error
    stops at (before it when its own accesses are unknown: a VEC whose descriptor is malformed)."""
    for ran in (insns[:index + 1], insns[:index]):
        try:
            return hazards(ran, schedule(ran, cfg, require_end=False), cfg, dram)
        except StreamError:
            continue
    return []


def _run(machine, insns):
    try:
        machine.run(insns)
        return machine, None
    except StreamError as e:
        return machine, e


def _static_error(data: bytes, insns, cfg):
    """(the first malformed instruction's StreamError, as the RTL's dispatcher raises it, or None;
    the schedule of a legal stream)."""
    try:
        _, sched = schedule_encoded(data, cfg)
        static = None
    except StreamError as e:
        static, sched = e, None
    i = first_unsupported(insns, static, builds_vector_unit(cfg))     # checked before ranges and tokens
    if i is not None:
        return StreamError(f"{insns[i].op.name} at instruction {i}: not built by the RTL",
                           ErrorCode.UNSUPPORTED, i), None
    return static, sched


def _runtime_or_static(runtime: StreamError, static, timing, limit: int, insns) -> Expect:
    """A run-time error at instruction d (DATA; a VEC the vector unit refuses, UNSUPPORTED; or an
    access outside the DRAM image, which the testbench flags and after which done or any error may
    follow, as what it reads there is undefined), and maybe a malformed word at e > d: which the RTL
    meets first, by the instruction's cycles against the cycle the dispatcher reaches the word."""
    from sim.functional import DramBoundsError

    def at_run_time(why: str) -> Expect:
        if isinstance(runtime, DramBoundsError):
            return Expect("oob", limit, why=f"{why}; then done or an error")
        return Expect("error", limit, runtime.code, why=why)

    if static is None:
        return at_run_time(str(runtime))
    d, e = runtime.index, static.index
    at_end_after_idle = static.code == ErrorCode.TOKEN and e < len(insns) and insns[e].op == Op.END
    reached = np.inf if at_end_after_idle else (int(timing.dispatch[e - 1]) + 1 if e else DECODE_STAGES)
    first, last = int(timing.start[d]), int(timing.end[d]) + 2
    if last < reached:
        return at_run_time(f"{runtime} (before instruction {e}: {static})")
    if first > reached + 1:
        return Expect("error", limit, static.code, e, why=f"{static} (before {runtime})")
    return Expect("ambiguous", limit, why=f"{runtime} in cycles {first}..{last}; {static} reached in cycle {reached}")
