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
    A beat gathers up to ``G / C0`` whole C0-byte words, one per row of the address generator
    (a pixel's channel block; the contract refuses any other gather from the buffer:
    ``hw.timing.load_inp_gb_unaligned``), so the port takes a buffer row ``r_row[k]`` per beat
    row, not an address per byte lane.  Every bank serves one word per cycle, so the beat is
    served in one cycle, as the timing contract requires, exactly when **the enabled rows of
    the beat need at most one row of every bank**: all the rows they name are distinct modulo
    ``B = 2 G / C0`` (or equal).  A beat that needs two rows of one bank is a *bank
    conflict*; ``conflict`` reports it in the request cycle and the load unit raises
    ``error`` (``ErrorCode.DATA``) instead of stalling, so the timing contract is never
    changed silently.  :func:`load_inp_gb_conflict` is the same rule in Python, for
    checking a stream before running it; ``docs/rtl.md`` lists sufficient conditions on
    the instruction fields.

Data of a read requested in cycle ``c`` appear on ``r_data`` in cycle ``c + 1``: beat row ``k``
takes the word of the bank it names, a ``B``-to-1 multiplexer of C0-byte words per row.  The
bank decode, the word compare and the multiplexer's select are per row, ``G / C0`` of them:
C0 times fewer than per lane (the read port before 2026-12-05 decoded per lane, and before
whole-word gathers it was a ``2G``-to-1 byte crossbar per lane).  The multiplexers together
still take ``G x B`` byte inputs, quadratic in ``G`` for a fixed C0.
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

__all__ = ["GlobalBuffer", "GbWriteSignature", "check_global_buffer", "gb_addr_bits", "gb_row_bits", "gb_banks",
           "load_inp_gb_conflict"]


def gb_addr_bits(config: AcceleratorConfig) -> int:
    """Bits of a global-buffer byte address."""
    return max(1, ceil_log2(config.global_buf_bytes))


def gb_row_bits(config: AcceleratorConfig) -> int:
    """Bits of a global-buffer row (a C0-byte word) number."""
    return max(1, ceil_log2(config.global_buf_bytes // config.c0))


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
        raise ValueError(f"global_buf_bytes ({config.global_buf_bytes}) must be a multiple of 2 x G = {2 * g} bytes, "
                         f"G being {bus_width_text(config)} (the global buffer has 2 G / C0 banks of C0-byte rows)")



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
    r_en: In(G / C0), r_row: In(ArrayLayout(row_bits, G / C0))
        A gather: beat row ``k`` (if ``r_en[k]``) reads buffer row ``r_row[k]`` (bytes
        ``C0 * r_row[k]`` on).
    r_data: Out(ArrayLayout(8, G))
        The gathered words, one cycle after the request, row ``k`` on lanes ``k*C0`` on (rows
        not enabled: don't care).
    conflict: Out(1)
        Combinational: the enabled rows need two different rows of one bank.

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
        g, rows = config.gb_bus_bytes, config.gb_bus_bytes // config.c0
        aw = self.addr_bits
        super().__init__({
            "w_en": In(1), "w_addr": In(aw), "w_mask": In(g), "w_data": In(data.ArrayLayout(8, g)),
            "r_en": In(rows), "r_row": In(data.ArrayLayout(gb_row_bits(config), rows)),
            "r_data": Out(data.ArrayLayout(8, g)),
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

        m.d.comb += self.conflict.eq(self._read(m, banks, nbank, width))
        return m

    def _read(self, m: Module, banks: list, nbank: int, width: int):
        """Every bank serves the word its enabled beat rows name; the next cycle each beat row
        takes its bank's word.  Returns the conflict: two rows of one bank in the beat."""
        rows, lb = len(self.r_en), ceil_log2(nbank)
        row_bank = [self.r_row[k][:lb] for k in range(rows)]
        row_word = [self.r_row[k][lb:] for k in range(rows)]
        conflicts = []
        for b, (_, rd) in enumerate(banks):
            want = Signal(rows, name=f"bank{b}_want")
            m.d.comb += want.eq(Cat(self.r_en[k] & (row_bank[k] == b) for k in range(rows)))
            # The OR of the requested words is the word when they agree; when two differ it
            # differs from at least one of them, which is the conflict.
            bank_word = Signal(len(rd.addr), name=f"bank{b}_word")
            m.d.comb += [bank_word.eq(_tree_or([Mux(want[k], row_word[k], 0) for k in range(rows)])),
                         rd.addr.eq(bank_word), rd.en.eq(want.any())]
            clash = Signal(name=f"bank{b}_conflict")
            m.d.comb += clash.eq(Cat(want[k] & (row_word[k] != bank_word) for k in range(rows)).any())
            conflicts.append(clash)
        words = Array(rd.data for _, rd in banks)
        for k in range(rows):
            bank = Signal(max(lb, 1), name=f"row{k}_bank")
            m.d.sync += bank.eq(row_bank[k] if lb else 0)
            m.d.comb += self.r_data.as_value()[8 * width * k:8 * width * (k + 1)].eq(words[bank] if nbank > 1 else words[0])
        return Cat(*conflicts).any()
