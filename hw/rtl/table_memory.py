"""A PE's table memory (``hw.numerics``: ``TABLE_ENTRIES`` entries of ``TABLE_ENTRY_BITS``): ``TableMemory``.

LOAD_PARAM with ``table = 1`` fills it through the load bus (``LoadTarget.TABLE``), ``min(G/8, K0)``
parameter-sized entries (two table entries each, ``hw.numerics.TABLE_ENTRY`` little-endian) a
beat at any entry address, as ``sim.functional`` places them.  The STORE's post-processing
lanes read it, each lane an entry of its own a cycle, while ``rd_en`` says a read is wanted (an
SRAM macro's read enable: an idle table is not read, which also spares a simulator the copies).

Organisation: one copy per read lane (a lane reads any entry every cycle).  A copy is two
banks (``lib.memory.Memory``, one write port with a write enable per parameter entry and one
synchronous read port: a 1R1W SRAM macro with a write mask) of words of ``E`` parameter entries,
``E`` the power of two at or above the entries of a beat; word ``w`` is row ``w // 2``
of bank ``w % 2``.  A beat's entries span at most two consecutive words, one in each bank, so
it is written in its cycle.  A read addresses both banks at the entry's row and picks the bank
and the entry in the word the cycle after (the bits of the index, registered).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import ceil_log2
from ..numerics import PARAM_ENTRY_BYTES, TABLE_ENTRIES, TABLE_ENTRY_BITS, TABLE_PARAM_ENTRIES, TABLE_PER_PARAM
from .buses import LoadBusSignature, LoadTarget, load_geometry

__all__ = ["TableMemory"]

#: Table entries in one parameter-sized entry of a LOAD_PARAM, and such entries of the whole table.
PER_PARAM, PARAM_ENTRIES = TABLE_PER_PARAM, TABLE_PARAM_ENTRIES



class TableMemory(wiring.Component):
    """The table memory of one PE with ``lanes`` read ports (see the module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
        ``gb_bus_bytes`` sets the entries a load beat writes.
    lanes : int, optional
        Read ports (one copy of the table each); by default K0, the PE's post-processing lanes.

    Members
    -------
    ld: In(LoadBusSignature(config))
        Load beats; those with ``target == LoadTarget.TABLE`` write ``count`` parameter-sized
        entries at entry ``addr`` (0 .. ``TABLE_ENTRIES`` / 2 - 1).
    rd_en: In(1)
    rd_addr: In(ArrayLayout(unsigned(8), lanes))
    rd_data: Out(ArrayLayout(signed(TABLE_ENTRY_BITS), lanes))
        With ``rd_en``, entry ``rd_addr[j]`` on ``rd_data[j]`` the cycle after (otherwise the
        banks hold their last words: ``rd_data`` is then not to be used).

    Raises
    ------
    ValueError
        If ``lanes`` is not a positive integer or a beat holds more entries than a bank row.
    """

    export_prefix = "table_memory"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"k": config.k0, "g": config.gb_bus_bytes}

    def __init__(self, config: AcceleratorConfig, *, lanes: int | None = None):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        lanes = config.k0 if lanes is None else lanes
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        _, _, per_beat = load_geometry(config)
        self._word = 1 << ceil_log2(per_beat)                   # parameter entries per word
        if 2 * self._word > PARAM_ENTRIES:
            raise ValueError(f"a load beat of {per_beat} entries needs two words of {self._word}, more than the "
                             f"{PARAM_ENTRIES} of the table")
        self._config, self._lanes = config, lanes
        super().__init__({"ld": In(LoadBusSignature(config)), "rd_en": In(1),
                          "rd_addr": In(data.ArrayLayout(unsigned(ceil_log2(TABLE_ENTRIES)), lanes)),
                          "rd_data": Out(data.ArrayLayout(signed(TABLE_ENTRY_BITS), lanes))})

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def word_entries(self) -> int:
        """Parameter-sized entries in a bank word."""
        return self._word

    def _word_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(unsigned(PARAM_ENTRY_BYTES * 8), self._word)

    def _bank_writes(self, m) -> list:
        """(en, addr, data) of each bank's write port for the beat on ``ld``."""
        ld, word, lw = self.ld, self._word, ceil_log2(self._word)
        _, _, per_beat = load_geometry(self._config)
        # a beat's entries are its first bytes: at most K0 of them on a wider bus
        entries = data.ArrayLayout(unsigned(PARAM_ENTRY_BYTES * 8), per_beat)(ld.data[:per_beat * PARAM_ENTRY_BYTES * 8])
        first = ld.addr[lw:]                           # the word of the beat's first entry
        writes = []
        for bank in range(2):
            w = Signal.like(first, name=f"tbl_w{bank}")       # the beat's word in this bank
            m.d.comb += w.eq(first + (first[0] != bank))
            en = Signal(word, name=f"tbl_en{bank}")
            wdata = Signal(self._word_layout(), name=f"tbl_data{bank}")
            for slot in range(word):
                i = Signal(signed(len(first) + lw + 2), name=f"tbl_i{bank}_{slot}")   # its entry of the beat
                m.d.comb += [i.eq((w << lw) + slot - ld.addr),
                             en[slot].eq(ld.en & (ld.target == LoadTarget.TABLE) & (i >= 0) & (i < ld.count)),
                             wdata[slot].eq(entries[i[:max(1, ceil_log2(per_beat))] if per_beat > 1 else 0])]
            writes.append((en, w >> 1, wdata))
        return writes

    def elaborate(self, platform):
        m = Module()
        lw = ceil_log2(self._word)
        rows = PARAM_ENTRIES // self._word // 2
        writes = self._bank_writes(m)
        per_param = ceil_log2(PER_PARAM)
        for j in range(self._lanes):
            index = self.rd_addr[j]
            entry = index[per_param:]                      # the parameter-sized entry
            index_d = Signal.like(index, name=f"tbl_index{j}")
            m.d.sync += index_d.eq(index)
            words = []
            for bank, (en, addr, wdata) in enumerate(writes):
                mem = memory.Memory(shape=self._word_layout(), depth=rows, init=[])
                m.submodules[f"copy{j}_bank{bank}"] = mem
                wr = mem.write_port(granularity=1)
                rd = mem.read_port(transparent_for=())
                m.d.comb += [wr.en.eq(en), wr.addr.eq(addr), wr.data.eq(wdata),
                             rd.addr.eq(entry[lw + 1:]), rd.en.eq(self.rd_en)]
                words.append(self._word_layout()(rd.data))
            entry_d = index_d[per_param:]
            word = Mux(entry_d[lw], words[1].as_value(), words[0].as_value())
            picked = self._word_layout()(word)[entry_d[:lw] if lw else 0]
            halves = data.ArrayLayout(signed(TABLE_ENTRY_BITS), PER_PARAM)(picked)
            m.d.comb += self.rd_data[j].eq(halves[index_d[:per_param] if per_param else 0])
        return m
