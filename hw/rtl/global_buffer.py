"""The global buffer: ``2 x G / C0`` banks of C0-byte rows, one read and one write port each.

A byte address ``a`` lives in GB row ``r = a // C0`` (byte ``a % C0`` of it); row ``r`` is
word ``r // B`` of bank ``r % B``, with ``B = 2 G / C0`` banks (``G = gb_bus_bytes``).  Each
bank is a ``lib.memory.Memory`` of ``global_buf_bytes / (2 G)`` words of C0 bytes with one
write port (byte enables) and one synchronous read port, transparent for that write port.

Writes (LOAD_GB, and STORE with ``dst_gb``: :class:`GbWriteSignature`)
    One write port, the load unit's: a LOAD_GB's beats, or a STORE's (``gb_store``), which the
    stream never runs together (``hw.timing.gb_write_claims``).  A beat writes ``G`` contiguous
    bytes at any byte address.  They span at most ``G / C0 + 1`` consecutive rows, which are in distinct banks because there are
    ``2 G / C0`` of them: **a LOAD_GB beat never conflicts**, at any alignment.  The
    beat is rotated by ``address mod 2G`` bytes onto the banks (a barrel rotator).

Reads (LOAD_INP with ``src_gb``)
    A beat gathers up to ``G`` bytes, whole C0-byte words of pixels (rows of the address
    generator; no im2col fold from the buffer).  Every bank serves one word per cycle, so the beat is served in one
    cycle, as the timing contract requires, exactly when **the enabled lanes of the beat
    need at most one row of every bank**: all the rows they touch are distinct modulo
    ``B = 2 G / C0`` (or equal).  A beat that needs two rows of one bank is a *bank
    conflict*; ``conflict`` reports it in the request cycle and the load unit raises
    ``error`` (``ErrorCode.DATA``) instead of stalling, so the timing contract is never
    changed silently.  :func:`load_inp_gb_conflict` is the same rule in Python, for
    checking a stream before running it; ``docs/rtl.md`` lists sufficient conditions on
    the instruction fields.

Data of a read requested in cycle ``c`` appear on ``r_data`` in cycle ``c + 1``, each lane
taking the byte at its own position in a word (lane ``i``: byte ``i % C0``) from the bank its
address names: a ``B``-to-1 byte multiplexer per lane.  A gather must read whole words (the
contract refuses others: ``hw.timing.load_inp_gb_unaligned``); a ``2G``-to-1 crossbar per lane,
as before 2026-12-05, grows with the square of ``G``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import ceil_log2
from ..timing import gb_banks, load_inp_gb_conflict
from .buses import bus_width_text, check_bus_width

__all__ = ["GlobalBuffer", "GbWriteSignature", "check_global_buffer", "gb_addr_bits", "gb_banks", "load_inp_gb_conflict"]


def gb_addr_bits(config: AcceleratorConfig) -> int:
    """Bits of a global-buffer byte address."""
    return max(1, ceil_log2(config.global_buf_bytes))


class GbWriteSignature(wiring.Signature):
    """A write beat of the global buffer (seen from its driver): lane ``i`` (if ``mask[i]``)
    writes byte ``addr + i``, ``gb_bus_bytes`` lanes."""

    def __init__(self, config: AcceleratorConfig):
        g = config.gb_bus_bytes
        super().__init__({"en": Out(1), "addr": Out(gb_addr_bits(config)), "mask": Out(g),
                          "data": Out(data.ArrayLayout(8, g))})


def check_global_buffer(config: AcceleratorConfig) -> None:
    """Raise ValueError when the banked global buffer cannot be built for ``config``."""
    g = config.gb_bus_bytes
    check_bus_width(config)
    if config.global_buf_bytes % (2 * g):
        raise ValueError(f"global_buf_bytes ({config.global_buf_bytes}) must be a multiple of twice "
                         f"{bus_width_text(config)} (the global buffer has 2 G / C0 banks of C0-byte rows)")



def _tree_or(items: list):
    """OR of ``items`` as a balanced tree (a chain would nest ``len(items)`` deep)."""
    while len(items) > 1:
        items = [items[i] | items[i + 1] if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


class GlobalBuffer(wiring.Component):
    """The banked global buffer (see the module docstring for the banking).

    Parameters
    ----------
    config:
        The configuration; :func:`check_global_buffer` lists what it must satisfy.

    Members
    -------
    w_en: In(1), w_addr: In(addr_bits), w_mask: In(G), w_data: In(ArrayLayout(8, G))
        A write beat: lane ``i`` (if ``w_mask[i]``) writes byte ``w_addr + i``.
    r_en: In(G), r_addr: In(ArrayLayout(addr_bits, G))
        A gather: lane ``i`` (if ``r_en[i]``) reads byte ``r_addr[i]``.
    r_data: Out(ArrayLayout(8, G))
        The gathered bytes, one cycle after the request (lanes not enabled: don't care).
    conflict: Out(1)
        Combinational: the enabled lanes need two different rows of one bank.

    Raises
    ------
    ValueError
        From :func:`check_global_buffer`.
    """

    export_prefix = "global_buffer"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"g": config.gb_bus_bytes, "c": config.c0, "m": config.global_buf_bytes}

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        check_global_buffer(config)
        self._config = config
        g = config.gb_bus_bytes
        aw = self.addr_bits
        super().__init__({
            "w_en": In(1), "w_addr": In(aw), "w_mask": In(g), "w_data": In(data.ArrayLayout(8, g)),
            "r_en": In(g), "r_addr": In(data.ArrayLayout(aw, g)), "r_data": Out(data.ArrayLayout(8, g)),
            "conflict": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def addr_bits(self) -> int:
        return gb_addr_bits(self._config)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        g = cfg.gb_bus_bytes
        nbank, width, depth = gb_banks(cfg)
        lw, lb = ceil_log2(width), ceil_log2(nbank)   # byte-in-row bits, bank bits
        span = lw + lb                        # bits of an address within 2G bytes
        banks = []
        for b in range(nbank):
            mem = memory.Memory(shape=unsigned(8 * width), depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wr = mem.write_port(granularity=8)
            rd = mem.read_port(transparent_for=(wr,))
            banks.append((wr, rd))

        # ---- write: rotate the beat by (w_addr mod 2G) bytes onto the 2G bank bytes -------
        shift = self.w_addr[:span]
        # Each stage is a signal: an expression would use the previous stage twice and
        # double in size at every stage.
        wdata, wmask = Cat(self.w_data.as_value(), Const(0, 8 * g)), Cat(self.w_mask, Const(0, g))
        for bit in range(span):
            d, k = Signal(16 * g, name=f"wdata_rot{bit}"), Signal(2 * g, name=f"wmask_rot{bit}")
            m.d.comb += [d.eq(Mux(shift[bit], wdata.rotate_left(8 << bit), wdata)),
                         k.eq(Mux(shift[bit], wmask.rotate_left(1 << bit), wmask))]
            wdata, wmask = d, k
        line = self.w_addr[span:]
        for b, (wr, _) in enumerate(banks):
            # Positions below the beat's offset belong to the next 2G-byte line.
            wrapped = Const((b + 1) * width, span + 1) <= shift
            m.d.comb += [
                wr.addr.eq(line + wrapped),
                wr.data.eq(wdata[8 * width * b:8 * width * (b + 1)]),
                wr.en.eq(Mux(self.w_en, wmask[width * b:width * (b + 1)], 0)),
            ]

        # ---- read: every bank serves the row of its lowest enabled lane -------------------
        lane_bank = [self.r_addr[i][lw:span] for i in range(g)]
        lane_word = [self.r_addr[i][span:] for i in range(g)]
        conflicts = []
        for b, (_, rd) in enumerate(banks):
            want = Signal(g, name=f"bank{b}_want")
            m.d.comb += want.eq(Cat(self.r_en[i] & (lane_bank[i] == b) for i in range(g)))
            # The OR of the requested words is the word when they agree; when two differ it
            # differs from at least one of them, which is the conflict.
            bank_word = Signal(len(rd.addr), name=f"bank{b}_word")
            m.d.comb += [bank_word.eq(_tree_or([Mux(want[i], lane_word[i], 0) for i in range(g)])),
                         rd.addr.eq(bank_word), rd.en.eq(want.any())]
            clash = Signal(name=f"bank{b}_conflict")
            m.d.comb += clash.eq(Cat(want[i] & (lane_word[i] != bank_word) for i in range(g)).any())
            conflicts.append(clash)
        m.d.comb += self.conflict.eq(Cat(*conflicts).any())

        # One cycle later every lane takes the byte at its own position (lane i % C0) of its
        # bank's word: a gather reads whole C0-byte words (hw.timing.load_inp_gb_unaligned), so
        # a lane needs a B:1 multiplexer of bytes, not a crossbar from all 2G bytes.
        for i in range(g):
            bank = Signal(max(lb, 1), name=f"lane{i}_bank")
            m.d.sync += bank.eq(self.r_addr[i][lw:span] if lb else 0)
            lane_bytes = Array(rd.data[8 * (i % width):8 * (i % width + 1)] for _, rd in banks)
            m.d.comb += self.r_data[i].eq(lane_bytes[bank] if nbank > 1 else lane_bytes[0])
        return m
