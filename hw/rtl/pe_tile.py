"""One processing element of the accelerator: its buffers, K0 vector MACs and K0 post-processing lanes.

Unlike :class:`hw.rtl.mac_array.PE` (operands from ports), a ``PETile`` holds its
operands in its own SRAMs, so the top level only broadcasts narrow control:

* **load bus** (from the load unit): ``G = gb_bus_bytes`` bytes per cycle, written as
  ``G/C0`` input rows, ``G/C0`` weight vectors of one weight row or ``G/8``
  parameter entries;
* **GEMM bus** (from the compute unit): one pixel per cycle (input row, weight row,
  accumulator entry);
* **store bus** (from the store unit): one accumulator entry per cycle through the
  K0 :class:`~hw.rtl.postproc.PostProcessor` lanes.

Buffers (``lib.memory.Memory``, one synchronous read port each unless noted):

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
accumulators    ``accum_depth`` x K0 x acc_bits,     compute reads and writes, store
                two read ports, one write port       reads (other half) at once
==============  ===================================  ==================================

GEMM pipeline: cycle c reads the input row (with ``g_dw``, the ``G/C0`` consecutive rows
from it, one per bank) and the K0 weight rows; c+1 multiplies
(VectorMAC register) and reads the accumulator entry; c+2 writes ``acc + sum``
(``sum`` when ``g_first``).  A STORE pixel presented at cycle c gives ``s_y`` at c+4
(accumulator read, then the three PostProcessor stages).
"""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..isa import FIELD_BITS, Op
from ..numerics import MULT_BITS, PARAM_ENTRY, PARAM_ENTRY_BYTES, SHIFT_BITS
from ..timing import dw_gather_max
from .postproc import PostProcessor
from .vector_mac import VectorMAC, int8_vector

__all__ = ["PETile", "LoadTarget", "check_rtl_config", "load_geometry"]


class LoadTarget(enum.Enum, shape=2):
    """Which buffer a load-bus beat writes."""
    INPUT = 0
    WEIGHT = 1
    PARAM = 2


def entry_struct(layout) -> data.StructLayout:
    """The Amaranth layout of an entry (``hw.numerics``: (name, bits, signed), low bits first)."""
    return data.StructLayout({name: signed(bits) if sgn else unsigned(bits) for name, bits, sgn in layout})


PARAM_STRUCT = entry_struct(PARAM_ENTRY)


def _log2(n: int) -> int:
    return (n - 1).bit_length()


def load_geometry(config: AcceleratorConfig) -> tuple[int, int, int]:
    """(G bytes per load beat, input rows / weight vectors per beat, parameter entries per beat)."""
    g = config.gb_bus_bytes
    return g, g // config.c0, g // PARAM_ENTRY_BYTES


def check_rtl_config(config: AcceleratorConfig) -> None:
    """Raise ValueError when the RTL cannot build ``config`` (with the reason)."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    g, nb, e = load_geometry(config)
    if g % config.c0 or nb & (nb - 1):
        raise ValueError(f"gb_bus_bytes ({g}) must be a power-of-two multiple of C0 = {config.c0}")
    if config.k0 % nb:
        raise ValueError(f"K0 = {config.k0} must be a multiple of gb_bus_bytes/C0 = {nb} "
                         f"(weight vectors written per cycle)")
    if g % PARAM_ENTRY_BYTES or not 1 <= e <= config.k0:
        raise ValueError(f"gb_bus_bytes/8 = {g / PARAM_ENTRY_BYTES} must be an integer between 1 and "
                         f"K0 = {config.k0} (parameter entries written per cycle)")
    if config.input_rows % nb:
        raise ValueError(f"input_rows ({config.input_rows}) must be a multiple of {nb} banks")
    if config.param_depth % config.k0:
        raise ValueError(f"param_depth ({config.param_depth}) must be a multiple of K0 = {config.k0}")
    if config.dram_bytes_per_cycle > g:
        raise ValueError(f"dram_bytes_per_cycle ({config.dram_bytes_per_cycle}) above gb_bus_bytes ({g}): "
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
    mac_factory, post_factory:
        Build each VectorMAC / PostProcessor from ``config``; :mod:`hw.rtl.export`
        passes black boxes so that each is emitted once.

    Members
    -------
    ld_en, ld_target, ld_addr, ld_sel, ld_count, ld_data: In
        Load beat: ``ld_count`` rows / vectors / entries of ``ld_data`` written at row
        (entry) ``ld_addr``; for weights ``ld_sel`` is the group of ``G/C0`` vector MACs.
    g_valid, g_first, g_inp, g_wgt, g_acc: In
        GEMM beat: one pixel; ``g_first`` overwrites the accumulator instead of adding.
    g_dw, g_kw: In
        Depthwise gather: vector MAC j multiplies lane j of input rows ``g_inp .. g_inp+g_kw-1``
        (one from each input bank) on its lanes ``0 .. g_kw-1``.
    s_param_load, s_param_addr: In
        Latch the K0 parameter entries from ``s_param_addr`` into the post-processing lanes
        (usable two cycles later).
    s_valid, s_acc, s_relu: In
        STORE beat: post-process accumulator entry ``s_acc``.
    s_y: Out(ArrayLayout(signed(8), K0)), s_y_valid: Out(1)
        Four cycles after the beat.
    """

    export_prefix = "pe_tile"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"k": config.k0, "c": config.c0, "a": config.acc_bits, "i": config.input_rows,
                "w": config.weight_rows, "d": config.accum_depth, "p": config.param_depth,
                "g": config.gb_bus_bytes}

    def __init__(self, config: AcceleratorConfig, *,
                 mac_factory: Callable[[AcceleratorConfig], wiring.Component] = VectorMAC,
                 post_factory: Callable[[AcceleratorConfig], wiring.Component] = PostProcessor):
        check_rtl_config(config)
        self._config = config
        self._mac_factory = mac_factory
        self._post_factory = post_factory
        g, nb, e = load_geometry(config)
        super().__init__({
            "ld_en": In(1),
            "ld_target": In(LoadTarget),
            "ld_addr": In(16),
            "ld_sel": In(8),
            "ld_count": In(range(max(nb, e) + 1)),
            "ld_data": In(unsigned(8 * g)),
            "g_valid": In(1),
            "g_first": In(1),
            "g_inp": In(config.input_addr_bits),
            "g_wgt": In(config.weight_addr_bits),
            "g_acc": In(config.accum_addr_bits),
            "g_dw": In(1),
            "g_kw": In(FIELD_BITS[Op.GEMM]["kw"]),
            "s_param_load": In(1),
            "s_param_addr": In(range(config.param_depth)),
            "s_valid": In(1),
            "s_acc": In(config.accum_addr_bits),
            "s_relu": In(1),
            "s_y": Out(int8_vector(config.k0)),
            "s_y_valid": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        k0, c0 = cfg.k0, cfg.c0
        g, nb, n_ent = load_geometry(cfg)
        row = int8_vector(c0)
        ld_rows = data.ArrayLayout(row, nb)(self.ld_data)
        ld_entries = data.ArrayLayout(unsigned(PARAM_STRUCT.size), n_ent)(self.ld_data)

        # ---- input buffer: nb banks, row a in bank a % nb ----------------------------------
        lnb = _log2(nb)
        inp_rd = []
        for b in range(nb):
            mem = memory.Memory(shape=row, depth=cfg.input_rows // nb, init=[])
            m.submodules[f"inp{b}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            i = Signal(range(nb), name=f"inp_wsel{b}")
            m.d.comb += [
                i.eq((b - self.ld_addr)[:lnb] if lnb else 0),
                wr.en.eq(self.ld_en & (self.ld_target == LoadTarget.INPUT) & (i < self.ld_count)),
                wr.addr.eq((self.ld_addr + i) >> lnb),
                wr.data.eq(ld_rows[i]),
                # bank b holds row g_inp + ((b - g_inp) mod nb): the nb consecutive rows from g_inp
                # (near the buffer's end a bank the GEMM does not use may read past it; unused)
                rd.addr.eq((self.g_inp + ((b - self.g_inp)[:lnb] if lnb else 0)) >> lnb),
                rd.en.eq(self.g_valid),
            ]
            inp_rd.append(rd)

        # ---- weight buffers: one per vector MAC --------------------------------------------
        lv = _log2(nb)
        wgt_rd = []
        for j in range(k0):
            mem = memory.Memory(shape=row, depth=cfg.weight_rows, init=[])
            m.submodules[f"wgt{j}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            m.d.comb += [
                wr.en.eq(self.ld_en & (self.ld_target == LoadTarget.WEIGHT) & (self.ld_sel == (j >> lv))),
                wr.addr.eq(self.ld_addr),
                wr.data.eq(ld_rows[j % nb]),
                rd.addr.eq(self.g_wgt),
                rd.en.eq(self.g_valid),
            ]
            wgt_rd.append(rd)

        # ---- parameter banks: entry e in bank e % K0 ---------------------------------------
        lk = _log2(k0)
        par_rd = []
        pa = self.s_param_addr
        for b in range(k0):
            mem = memory.Memory(shape=unsigned(PARAM_STRUCT.size), depth=cfg.param_depth // k0, init=[])
            m.submodules[f"par{b}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=())
            i = Signal(range(k0), name=f"par_wsel{b}")
            m.d.comb += [
                i.eq((b - self.ld_addr)[:lk] if lk else 0),
                wr.en.eq(self.ld_en & (self.ld_target == LoadTarget.PARAM) & (i < self.ld_count)),
                wr.addr.eq((self.ld_addr + i) >> lk),
                wr.data.eq(ld_entries[i]),
                rd.addr.eq((pa + ((b - pa)[:lk] if lk else 0)) >> lk),
                rd.en.eq(self.s_param_load),
            ]
            par_rd.append(rd)
        # Rotate the banks into lanes the cycle after the read and hold them.
        pa_d = Signal.like(pa)
        load_d = Signal()
        m.d.sync += [pa_d.eq(pa), load_d.eq(self.s_param_load)]
        bias = [Signal(signed(32), name=f"bias{j}") for j in range(k0)]
        mult = [Signal(unsigned(MULT_BITS), name=f"mult{j}") for j in range(k0)]
        shift = [Signal(unsigned(SHIFT_BITS), name=f"shift{j}") for j in range(k0)]
        par_data = data.ArrayLayout(unsigned(PARAM_STRUCT.size), k0)(Signal(PARAM_STRUCT.size * k0, name="par_rdata"))
        m.d.comb += [par_data[b].eq(par_rd[b].data) for b in range(k0)]
        with m.If(load_d):
            for j in range(k0):
                entry = data.View(PARAM_STRUCT, par_data[(pa_d + j)[:lk] if lk else 0])
                m.d.sync += [bias[j].eq(entry.bias), mult[j].eq(entry.mult), shift[j].eq(entry.shift)]

        # ---- accumulators ------------------------------------------------------------------
        acc_shape = data.ArrayLayout(signed(cfg.acc_bits), k0)
        acc = memory.Memory(shape=acc_shape, depth=cfg.accum_depth, init=[])
        m.submodules.acc = acc
        acc_wr = acc.write_port()
        acc_rd = acc.read_port(transparent_for=())
        st_rd = acc.read_port(transparent_for=())

        # ---- GEMM pipeline -----------------------------------------------------------------
        v1, first1, v2, first2 = Signal(), Signal(), Signal(), Signal()
        acc1, acc2 = Signal.like(self.g_acc), Signal.like(self.g_acc)
        bank1 = Signal(range(nb))
        dw1, kw1 = Signal(), Signal.like(self.g_kw)
        m.d.sync += [v1.eq(self.g_valid), first1.eq(self.g_first), acc1.eq(self.g_acc),
                     bank1.eq(self.g_inp[:lnb] if lnb else 0), dw1.eq(self.g_dw), kw1.eq(self.g_kw),
                     v2.eq(v1), first2.eq(first1), acc2.eq(acc1)]
        inp_data = data.ArrayLayout(row, nb)(Signal(8 * c0 * nb, name="inp_rdata"))
        m.d.comb += [inp_data[b].eq(inp_rd[b].data) for b in range(nb)]
        x = Signal(row)
        m.d.comb += [x.eq(inp_data[bank1]), acc_rd.addr.eq(acc1), acc_rd.en.eq(v1)]
        # Depthwise gather (GEMM dw): rows x_t = row g_inp + t; vector MAC j gets lane j of
        # x_0 .. x_{kw-1} on its lanes 0 .. kw-1 and zeros elsewhere.
        taps = dw_gather_max(cfg)
        x_t = [inp_data[(bank1 + t)[:lnb] if lnb else 0] for t in range(taps)]
        new = Signal(acc_shape)
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
            m.d.comb += new[j].eq(mac.sum + Mux(first2, 0, acc_rd.data[j]))
        m.d.comb += [acc_wr.addr.eq(acc2), acc_wr.data.eq(new), acc_wr.en.eq(v2)]

        # ---- STORE path --------------------------------------------------------------------
        sv1, relu1 = Signal(), Signal()
        m.d.sync += [sv1.eq(self.s_valid), relu1.eq(self.s_relu)]
        m.d.comb += [st_rd.addr.eq(self.s_acc), st_rd.en.eq(self.s_valid)]
        for j in range(k0):
            post = self._post_factory(cfg)
            m.submodules[f"post{j}"] = post
            m.d.comb += [post.acc.eq(st_rd.data[j]), post.bias.eq(bias[j]), post.mult.eq(mult[j]),
                         post.shift.eq(shift[j]), post.relu.eq(relu1), post.valid.eq(sv1),
                         self.s_y[j].eq(post.y)]
            if j == 0:
                m.d.comb += self.s_y_valid.eq(post.y_valid)
        return m
