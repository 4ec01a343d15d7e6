"""One processing element of the accelerator: its buffers, K0 vector MACs and K0 post-processing lanes.

A ``PETile`` holds its operands in its own SRAMs, so the array only broadcasts narrow
control (the buses of :mod:`hw.rtl.buses`):

* ``ld`` (:class:`~hw.rtl.buses.LoadBusSignature`, from the load unit): ``G = gb_bus_bytes``
  bytes per cycle, written as ``G/C0`` input rows, ``G/C0`` weight vectors of one weight row
  or ``min(G/8, K0)`` parameter entries;
* ``gemm`` (:class:`~hw.rtl.buses.GemmBusSignature`, from the compute unit): one pixel per
  cycle (input row, weight row, accumulator entry);
* ``st`` (:class:`~hw.rtl.buses.StoreBusSignature`, from the store unit): one accumulator
  entry per cycle through the K0 :class:`~hw.rtl.postproc.PostProcessor` lanes.

Buffers (``lib.memory.Memory``, each one synchronous read port and one write port, the ports
of a standard 1R1W SRAM macro):

==============  ===================================  ==================================
buffer          organisation                         why
==============  ===================================  ==================================
input           ``G/C0`` banks of ``input_rows/(G/C0)``   ``G/C0`` consecutive rows written
                rows of C0 int8; row ``a`` in bank        per cycle, one row read per cycle
                ``a % (G/C0)``
weight          K0 memories (one per vector MAC) of  ``G/C0`` MACs written per cycle
                ``weight_rows`` rows of C0 int8
parameters      K0 banks of ``param_depth/K0``       a STORE reads K0 consecutive
                64-bit entries; entry ``e`` in bank  entries at any alignment in one
                ``e % K0``                           cycle (then rotated into lanes)
accumulators    two copies of ``accum_depth`` x K0   the GEMM reads and writes an entry
                x acc_bits, written together         while a STORE reads another: one
                                                     read port each
table           K0 copies of the 256 x 32-bit table  each post-processing lane reads an
                (:class:`~hw.rtl.table_memory.       entry a cycle (``act = TABLE``)
                TableMemory`)
==============  ===================================  ==================================

GEMM pipeline: cycle c reads the input row (with ``gemm.dw``, the ``G/C0`` consecutive rows
from it, one per bank) and the K0 weight rows; c+1 multiplies (VectorMAC register) and reads
the accumulator entry; c+2 writes ``acc + sum`` (``sum`` when ``gemm.first``).  A STORE pixel
presented at cycle c gives ``st.y`` at c+4 (accumulator read, then the three PostProcessor
stages, the last of which is the table's read with ``st.table``).  A softmax epilogue
(``st.ep``) reads the table through ``st.ep_addr`` instead (the store unit refuses it with the
table activation, which would read the same ports).
"""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..expr import ceil_log2
from ..numerics import MULT_BITS, PARAM_ENTRY_BYTES, SHIFT_BITS
from ..timing import dw_gather_max
from .buses import (PARAM_STRUCT, GemmBusSignature, LoadBusSignature, LoadTarget, StoreBusSignature, bus_width_text,
                    check_bus_width, load_geometry)
from .clock_gate import gate_clock
from .kernel_unit import delay_line
from .postproc import PostProcessor
from .table_memory import TableMemory
from .vector_mac import VectorMAC, int8_vector

__all__ = ["PETile", "LoadTarget", "check_rtl_config", "load_geometry"]


def check_rtl_config(config: AcceleratorConfig) -> None:
    """Raise ValueError when the RTL cannot build ``config`` (with the reason)."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    check_bus_width(config)
    g, nb, _ = load_geometry(config)
    if config.k0 % nb:
        raise ValueError(f"K0 = {config.k0} must be a multiple of gb_bus_bytes/C0 = {nb} "
                         f"(weight vectors written per cycle); the bus is {config.gb_bus_origin}")
    if g % PARAM_ENTRY_BYTES:
        raise ValueError(f"gb_bus_bytes/8 = {g / PARAM_ENTRY_BYTES} must be an integer "
                         f"(whole parameter entries a beat)")
    if config.input_rows % nb:
        raise ValueError(f"input_rows ({config.input_rows}) must be a multiple of {nb} banks")
    if config.param_depth % config.k0:
        raise ValueError(f"param_depth ({config.param_depth}) must be a multiple of K0 = {config.k0}")
    if config.dram_bytes_per_cycle > g:
        raise ValueError(f"dram_bytes_per_cycle ({config.dram_bytes_per_cycle}) above {bus_width_text(config)}: "
                         f"the load beat would be slower than the timing contract")
    if config.dram_bytes_per_cycle & (config.dram_bytes_per_cycle - 1):
        raise ValueError(f"dram_bytes_per_cycle ({config.dram_bytes_per_cycle}) must be a power of two for the "
                         f"RTL: the store unit divides the bytes by it with a shift")
    if config.dram_latency < 2:
        raise ValueError(f"dram_latency must be at least 2 cycles for the RTL (request and write "
                         f"stages), not {config.dram_latency!r}")


class PETile(wiring.Component):
    """A PE with its input, weight, accumulator and parameter memories.

    Parameters
    ----------
    config:
        The accelerator configuration (validated by :func:`check_rtl_config`).
    mac_factory, post_factory, table_factory:
        Build each VectorMAC / PostProcessor and the TableMemory (K0 read lanes) from ``config``;
        :mod:`hw.rtl.export` passes black boxes so that each is emitted once.
    gate_factory:
        Builds the clock gate (``hw.rtl.clock_gate.ClockGate``, the exporter's) that clocks the
        table memory only in the cycles it is written or read; without one (Amaranth's
        simulator) its registers hold by a clock enable in the same cycles
        (``hw.rtl.clock_gate.gate_clock``).

    Members
    -------
    ld: In(LoadBusSignature(config))
        Load beat (``ld.en`` selects this PE).
    gemm: In(GemmBusSignature(config))
        GEMM beat: one pixel; with ``gemm.dw`` vector MAC j multiplies lane j of input rows
        ``gemm.inp .. gemm.inp + gemm.kw - 1`` (one from each input bank) on its lanes
        ``0 .. gemm.kw - 1``.
    st: In(StoreBusSignature(config))
        STORE beat; ``st.param_load`` latches the K0 parameter entries from ``st.param_addr``
        into the post-processing lanes (usable two cycles later); ``st.y`` five cycles after
        ``st.valid``.
    busy: Out(1)
        A beat is still in one of the tile's pipelines (a GEMM pixel before its accumulator
        write, a STORE pixel before its ``st.y``, a parameter read before its lanes hold it):
        from registers only.  With no beat on its buses and ``busy`` low, the next clock edge
        changes nothing the tile will read or give out, so the PE array may gate it.
    """

    export_prefix = "pe_tile"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"k": config.k0, "c": config.c0, "a": config.acc_bits, "i": config.input_rows,
                "w": config.weight_rows, "d": config.accum_depth, "p": config.param_depth,
                "g": config.gb_bus_bytes}

    def __init__(self, config: AcceleratorConfig, *,
                 mac_factory: Callable[[AcceleratorConfig], wiring.Component] = VectorMAC,
                 post_factory: Callable[[AcceleratorConfig], wiring.Component] = PostProcessor,
                 table_factory: Callable[[AcceleratorConfig], wiring.Component] = TableMemory,
                 gate_factory=None):
        check_rtl_config(config)
        self._config = config
        self._gate_factory = gate_factory
        self._mac_factory = mac_factory
        self._post_factory = post_factory
        self._table_factory = table_factory
        super().__init__({"ld": In(LoadBusSignature(config)), "gemm": In(GemmBusSignature(config)),
                          "st": In(StoreBusSignature(config)), "busy": Out(1)})

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        inp_rd = self._input_buffer(m)
        wgt_rd = self._weight_buffers(m)
        bias, mult, shift, param_busy = self._parameter_banks(m)
        g_acc, s_acc, acc_wr = self._accumulators(m)
        gemm_busy = self._gemm_datapath(m, inp_rd, wgt_rd, g_acc, acc_wr)
        store_busy = self._store_datapath(m, s_acc, bias, mult, shift, self._table_memory(m))
        m.d.comb += self.busy.eq(param_busy | gemm_busy | store_busy)
        return m

    # ---- buffers --------------------------------------------------------------------------

    def _input_buffer(self, m):
        """``G/C0`` banks, row ``a`` in bank ``a % (G/C0)``; a read returns the ``G/C0`` rows from
        ``gemm.inp`` (one per bank)."""
        cfg, ld, gemm = self._config, self.ld, self.gemm
        _, nb, _ = load_geometry(cfg)
        lnb = ceil_log2(nb)
        ld_rows = data.ArrayLayout(int8_vector(cfg.c0), nb)(ld.data)
        inp_rd = []
        for b in range(nb):
            mem = memory.Memory(shape=int8_vector(cfg.c0), depth=cfg.input_rows // nb, init=[])
            m.submodules[f"inp{b}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            i = Signal(range(nb), name=f"inp_wsel{b}")
            m.d.comb += [
                i.eq((b - ld.addr)[:lnb] if lnb else 0),
                wr.en.eq(ld.en & (ld.target == LoadTarget.INPUT) & (i < ld.count)),
                wr.addr.eq((ld.addr + i) >> lnb),
                wr.data.eq(ld_rows[i]),
                # bank b holds row inp + ((b - inp) mod nb): the nb consecutive rows from inp
                # (near the buffer's end a bank the GEMM does not use may read past it; unused)
                rd.addr.eq((gemm.inp + ((b - gemm.inp)[:lnb] if lnb else 0)) >> lnb),
                rd.en.eq(gemm.valid),
            ]
            inp_rd.append(rd)
        return inp_rd

    def _weight_buffers(self, m):
        """One per vector MAC; a beat writes the ``G/C0`` MACs of group ``ld.sel``."""
        cfg, ld, gemm = self._config, self.ld, self.gemm
        _, nb, _ = load_geometry(cfg)
        lv = ceil_log2(nb)
        ld_rows = data.ArrayLayout(int8_vector(cfg.c0), nb)(ld.data)
        wgt_rd = []
        for j in range(cfg.k0):
            mem = memory.Memory(shape=int8_vector(cfg.c0), depth=cfg.weight_rows, init=[])
            m.submodules[f"wgt{j}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            m.d.comb += [
                wr.en.eq(ld.en & (ld.target == LoadTarget.WEIGHT) & (ld.sel == (j >> lv))),
                wr.addr.eq(ld.addr),
                wr.data.eq(ld_rows[j % nb]),
                rd.addr.eq(gemm.wgt),
                rd.en.eq(gemm.valid),
            ]
            wgt_rd.append(rd)
        return wgt_rd

    def _parameter_banks(self, m):
        """K0 banks, entry ``e`` in bank ``e % K0``: a STORE reads K0 consecutive entries at any
        alignment, rotated into the lanes the cycle after the read and held."""
        cfg, ld, st = self._config, self.ld, self.st
        k0 = cfg.k0
        _, _, n_ent = load_geometry(cfg)
        ld_entries = data.ArrayLayout(unsigned(PARAM_STRUCT.size), n_ent)(ld.data[:n_ent * PARAM_STRUCT.size])
        lk = ceil_log2(k0)
        par_rd = []
        pa = st.param_addr
        for b in range(k0):
            mem = memory.Memory(shape=unsigned(PARAM_STRUCT.size), depth=cfg.param_depth // k0, init=[])
            m.submodules[f"par{b}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            i = Signal(range(k0), name=f"par_wsel{b}")
            m.d.comb += [
                i.eq((b - ld.addr)[:lk] if lk else 0),
                wr.en.eq(ld.en & (ld.target == LoadTarget.PARAM) & (i < ld.count)),
                wr.addr.eq((ld.addr + i) >> lk),
                wr.data.eq(ld_entries[i]),
                rd.addr.eq((pa + ((b - pa)[:lk] if lk else 0)) >> lk),
                rd.en.eq(st.param_load),
            ]
            par_rd.append(rd)
        pa_d = Signal.like(pa)
        load_d = Signal()
        m.d.sync += [pa_d.eq(pa), load_d.eq(st.param_load)]
        bias = [Signal(PARAM_STRUCT["bias"].shape, name=f"bias{j}") for j in range(k0)]
        mult = [Signal(unsigned(MULT_BITS), name=f"mult{j}") for j in range(k0)]
        shift = [Signal(unsigned(SHIFT_BITS), name=f"shift{j}") for j in range(k0)]
        par_data = data.ArrayLayout(unsigned(PARAM_STRUCT.size), k0)(Signal(PARAM_STRUCT.size * k0, name="par_rdata"))
        m.d.comb += [par_data[b].eq(par_rd[b].data) for b in range(k0)]
        with m.If(load_d):
            for j in range(k0):
                entry = data.View(PARAM_STRUCT, par_data[(pa_d + j)[:lk] if lk else 0])
                m.d.sync += [bias[j].eq(entry.bias), mult[j].eq(entry.mult), shift[j].eq(entry.shift)]
            # a softmax epilogue's output shift: entry param_addr's (sim.functional's ep_shift)
            m.d.sync += st.ep_shift.eq(data.View(PARAM_STRUCT, par_data[pa_d[:lk] if lk else 0]).ep_shift)
        return bias, mult, shift, load_d

    def _accumulators(self, m):
        """Two copies of ``accum_depth`` entries, each one read and one write port: the GEMM's
        write goes to both, the GEMM reads (cycle c+1 of its pixel) one copy and the STORE reads
        (in its beat's cycle) the other.  Returns (the GEMM's and the STORE's read data, one
        cycle after the read; the GEMM's write (en, addr, data) signals)."""
        cfg, gemm, st = self._config, self.gemm, self.st
        acc_shape = data.ArrayLayout(signed(cfg.acc_bits), cfg.k0)
        g_rd_valid, g_rd_addr = Signal(), Signal.like(gemm.acc)
        m.d.sync += [g_rd_valid.eq(gemm.valid), g_rd_addr.eq(gemm.acc)]
        wr_en, wr_addr, wr_data = Signal(), Signal.like(gemm.acc), Signal(acc_shape)
        reads = []
        for name, (en, addr) in {"acc_gemm": (g_rd_valid, g_rd_addr), "acc_store": (st.valid, st.acc)}.items():
            mem = memory.Memory(shape=acc_shape, depth=cfg.accum_depth, init=[])
            m.submodules[name] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(en),
                         wr.addr.eq(wr_addr), wr.data.eq(wr_data), wr.en.eq(wr_en)]
            reads.append(rd.data)
        return reads[0], reads[1], (wr_en, wr_addr, wr_data)

    # ---- datapaths ------------------------------------------------------------------------

    def _gemm_datapath(self, m, inp_rd, wgt_rd, acc_data, acc_wr):
        cfg, gemm = self._config, self.gemm
        k0, c0 = cfg.k0, cfg.c0
        _, nb, _ = load_geometry(cfg)
        lnb = ceil_log2(nb)
        row = int8_vector(c0)
        v1, first1, v2, first2 = Signal(), Signal(), Signal(), Signal()
        acc1 = Signal.like(gemm.acc)
        bank1 = Signal(range(nb))
        dw1, kw1 = Signal(), Signal.like(gemm.kw)
        wr_en, wr_addr, wr_data = acc_wr
        m.d.sync += [v1.eq(gemm.valid), first1.eq(gemm.first), acc1.eq(gemm.acc),
                     bank1.eq(gemm.inp[:lnb] if lnb else 0), dw1.eq(gemm.dw), kw1.eq(gemm.kw),
                     v2.eq(v1), first2.eq(first1), wr_addr.eq(acc1)]
        inp_data = data.ArrayLayout(row, nb)(Signal(8 * c0 * nb, name="inp_rdata"))
        m.d.comb += [inp_data[b].eq(inp_rd[b].data) for b in range(nb)]
        x = Signal(row)
        m.d.comb += x.eq(inp_data[bank1])
        # Depthwise gather (GEMM dw): rows x_t = row inp + t; vector MAC j gets lane j of
        # x_0 .. x_{kw-1} on its lanes 0 .. kw-1 and zeros elsewhere.
        taps = dw_gather_max(cfg)
        x_t = [inp_data[(bank1 + t)[:lnb] if lnb else 0] for t in range(taps)]
        for j in range(k0):
            mac = self._mac_factory(cfg)
            m.submodules[f"mac{j}"] = mac
            a = Signal(row, name=f"mac_in{j}")
            if taps:
                with m.If(dw1):
                    m.d.comb += [a[t].eq(Mux(t < kw1, x_t[t][j], 0)) for t in range(taps)]
                with m.Else():
                    m.d.comb += a.eq(x)
            else:
                m.d.comb += a.eq(x)
            m.d.comb += [mac.a.eq(a), mac.w.eq(wgt_rd[j].data), mac.valid.eq(v1)]
            # Wraps to acc_bits on assignment, like the accumulator of hw.numerics.
            m.d.comb += wr_data[j].eq(mac.sum + Mux(first2, 0, acc_data[j]))
        m.d.comb += wr_en.eq(v2)
        return v1 | v2          # a pixel read, multiplied (and its MACs' sum_valid) or not yet written

    def _table_memory(self, m):
        """The table memory, filled by LOAD_PARAM with ``table`` (``LoadTarget.TABLE`` beats) and
        read by the K0 post-processing lanes (a copy each).  Its clock runs only in the cycles it
        is written or read (``rd_en``): a read's data is used only the cycle after it, and its
        copies' write enables (one per entry of each bank) would otherwise be evaluated every
        cycle the tile's clock runs."""
        table = self._table_factory(self._config)
        written = self.ld.en & (self.ld.target == LoadTarget.TABLE)
        gate_clock(m, "table", table, written | table.rd_en, self._gate_factory)
        wiring.connect(m, wiring.flipped(self.ld), table.ld)
        return table

    def _store_datapath(self, m, acc_data, bias, mult, shift, table):
        cfg, st = self._config, self.st
        sv1, relu1, table1 = Signal(), Signal(), Signal()
        m.d.sync += [sv1.eq(st.valid), relu1.eq(st.relu), table1.eq(st.table)]
        # the table is read while a beat with the table activation is in the post-processing
        # pipeline (at whichever stage reads it) or a softmax epilogue runs: not on other cycles
        in_flight = delay_line(m, sv1 & table1, PostProcessor.LATENCY, "table_beat")
        m.d.comb += table.rd_en.eq(st.ep | Cat(*in_flight).any())
        # every beat until its lanes' last stage (their valid lines): what keeps the tile's clock on
        post_flight = delay_line(m, sv1, PostProcessor.LATENCY, "post_beat")
        for j in range(cfg.k0):
            post = self._post_factory(cfg)
            m.submodules[f"post{j}"] = post
            m.d.comb += [post.acc.eq(acc_data[j]), post.bias.eq(bias[j]), post.mult.eq(mult[j]),
                         post.shift.eq(shift[j]), post.relu.eq(relu1), post.act_table.eq(table1), post.valid.eq(sv1),
                         table.rd_addr[j].eq(Mux(st.ep, st.ep_addr[j], post.table_addr)),
                         post.table_data.eq(table.rd_data[j]), st.ep_data[j].eq(table.rd_data[j]),
                         st.y[j].eq(post.y)]
        return Cat(*post_flight).any()
