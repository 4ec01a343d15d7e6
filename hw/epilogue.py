"""The rows of a STORE's softmax epilogue, written once for the simulator and the RTL.

A STORE with ``ep_row = R`` normalises each pixel's channels in rows of ``R``.  A pixel's
channels lie on the K0 lanes of the PEs of a row group (``hw.timing.pe_positions``); a PE's
*members* are its first ``nk`` lanes (``hw.timing.store_pe_extent``: the channels below ``t_k``,
none for a PE outside the set).  The rule:

* within a row group, taken PE by PE in column order, the members hold consecutive channels
  (each member PE starts at the channel after the previous member PE's last);
* rows are ``R`` consecutive members from the group's first, and every group holds whole rows;
* otherwise the STORE is malformed (``ErrorCode.DATA``).

Which lanes start a row is found by a walk over the PEs (:func:`walk_pe`, one PE a cycle in the
RTL's store unit), with a position counter modulo ``R`` and the constant multiples
``m * R`` (:func:`row_multiples`): no division by the run-time ``R``.  Everything evaluates on
integers and on Amaranth values (``hw.expr``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .expr import all_of, any_of, is_int, sel
from .operators import SOFTMAX_E_BITS, SoftmaxParams

__all__ = ["EPILOGUE_OPS", "row_multiples", "pe_row_starts", "WalkState", "walk_pe", "walk_end_bad", "EXP_BITS", "exp_of",
           "shift_bad", "member_bad"]

#: Vector operations the energy model charges a lane's value in the epilogue beyond its
#: post-processing: its exponential into the row sum and its normalisation (the row maximum's
#: comparisons and the delay buffers go uncharged: an estimate, as the two extra passes were).
EPILOGUE_OPS = 2

#: Bits of an exponential as the epilogue takes it from a table entry: ``softmax_exp_kernel``'s
#: ``e <= 2**22`` (``hw.operators.SOFTMAX_E_BITS``) with a bit of headroom; the entry's low bits.
EXP_BITS = SOFTMAX_E_BITS + 1


def exp_of(entry):
    """The exponential a table entry holds: its low ``EXP_BITS`` bits (ints, arrays or values)."""
    return entry & ((1 << EXP_BITS) - 1)


def shift_bad(shift):
    """Whether a member PE's output shift is outside the softmax's (``SoftmaxParams.RANGES``)."""
    lo, hi = SoftmaxParams.RANGES["out_shift"]
    return (shift < lo) | (shift > hi)


def member_bad(shift, entry0):
    """Whether a member PE refuses the epilogue (``DATA``): its output shift (:func:`shift_bad`), or
    the exponential of 0 (its table entry 0) is 0, so that a row's sum could be 0.  The functional
    model and the store unit both evaluate it."""
    return shift_bad(shift) | (exp_of(entry0) == 0)


def row_multiples(row, lanes: int) -> list:
    """``m * row`` for ``m = 0 .. lanes``: products by constants (shift-adds in hardware)."""
    return [row * m for m in range(lanes + 1)]


def pe_row_starts(pos, nk, multiples: list, lanes: int):
    """One PE of the walk: its first member at position ``pos`` (``0 <= pos < R``) of its row,
    ``nk`` members.  Returns (whether each lane ``0 .. lanes-1`` starts a row, the position of
    the next member after this PE's, ``(pos + nk) mod R``).

    Member lane ``j`` (``j < nk``) starts a row when ``pos + j`` is a multiple of ``R``: the first
    such lane is ``R - pos`` (0 when ``pos`` is 0), the others follow every ``R``.  A lane past
    the members starts none: the RTL's reductions (``hw.rtl.segmented_reduce``) take it into the
    row before it, which a row straddling two PEs continues past it into the next PE's members.
    The multiples below ``pos + nk <= R + lanes`` are the first ``lanes + 1``."""
    row = multiples[1]
    first = sel(pos == 0, 0, row - pos)
    starts = [all_of(nk > j, any_of(*[first + multiples[m] == j for m in range(j + 1)])) for j in range(lanes)]
    end = pos + nk
    # the largest multiple at or below end: multiples increase, so it is where "end >= m R" stops
    reached = [end >= mult for mult in multiples]
    largest = 0
    for m in range(1, len(multiples)):
        last = reached[m] if m + 1 == len(multiples) else _and_not(reached[m], reached[m + 1])
        largest = largest | sel(last, multiples[m], 0)
    return starts, end - largest


def _and_not(a, b):
    return (a and not b) if is_int(a, b) else a & ~b


@dataclass(frozen=True)
class WalkState:
    """The walk between two PEs: the next member's position in its row, whether the group has a
    member yet, the channel the next member must hold, and whether a rule was broken."""

    pos: object = 0
    seen: object = 0
    expect: object = 0
    bad: object = 0


def walk_pe(state: WalkState, column, k_first, nk, multiples: list, lanes: int):
    """The walk at one PE (column ``column`` of its row group, members from channel ``k_first``,
    ``nk`` of them): (each lane's row start, the state after it).  A PE of column 0 starts a group,
    which requires the previous group to have ended on a whole row."""
    group = column == 0
    bad = any_of(state.bad, all_of(group, state.pos != 0))
    pos, seen = sel(group, 0, state.pos), sel(group, 0, state.seen)
    member = nk != 0
    bad = any_of(bad, all_of(member, seen, k_first != state.expect))
    starts, after = pe_row_starts(pos, nk, multiples, lanes)
    return starts, WalkState(pos=after, seen=any_of(seen, member), expect=sel(member, k_first + nk, state.expect),
                             bad=bad)


def walk_end_bad(state: WalkState):
    """Whether the walk, after the last PE, broke a rule (the last group must end on a whole row)."""
    return any_of(state.bad, state.pos != 0)
