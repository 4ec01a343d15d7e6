"""The LOAD_INP address generator: the G lanes of each beat (G/C0 input rows of C0 folded channels).

TEMPORARY: the per-lane divider form, moved out of the load unit unchanged.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..isa import ADDR_BITS, INSN_BITS, Op
from .buses import load_geometry
from .insn import field_signal, insn_view

__all__ = ["LoadInpLanes"]


def _min(a, b):
    return Mux(a < b, a, b)


class LoadInpLanes(wiring.Component):
    """Lanes of a LOAD_INP's beats."""

    export_prefix = "load_inp_lanes"

    @classmethod
    def export_params(cls, config: AcceleratorConfig) -> dict:
        return {"c": config.c0, "g": config.gb_bus_bytes}

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        g, nb, _ = load_geometry(config)
        super().__init__({"insn": In(INSN_BITS), "start": In(1), "step": In(1),
                          "lane_en": Out(g), "lane_addr": Out(data.ArrayLayout(ADDR_BITS, g)),
                          "lane_en_count": Out(range(g + 1)), "row_addr": Out(16), "rows": Out(range(nb + 1))})

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        g, nb, _ = load_geometry(cfg)
        c0 = cfg.c0
        cur = Signal(INSN_BITS)
        ci = insn_view(Op.LOAD_INP, cur)
        hi = insn_view(Op.LOAD_INP, self.insn)
        bi, rows = Signal(32), Signal(32)
        cb, yy, xx = field_signal(Op.LOAD_INP, "n_cblk"), field_signal(Op.LOAD_INP, "win_h"), field_signal(Op.LOAD_INP, "win_w")
        issue = self.step
        fkh, fkw, fs = (field_signal(Op.LOAD_INP, name) for name in ("fold_kh", "fold_kw", "fold_stride"))
        m.d.comb += [fkh.eq(Mux(ci.fold_kh == 0, 1, ci.fold_kh)),
                     fkw.eq(Mux(ci.fold_kw == 0, 1, ci.fold_kw)),
                     fs.eq(Mux(ci.fold_stride == 0, 1, ci.fold_stride))]
        pos = (cb, yy, xx)
        en_bits = []
        for i in range(nb):
            pcb, pyy, pxx = pos
            rvalid = Signal(name=f"row_valid{i}")
            m.d.comb += rvalid.eq(issue & (bi * nb + i < rows))
            for ln in range(c0):
                f, tap, r, s = (Signal(32, name=f"f{i}_{ln}"), Signal(32, name=f"tap{i}_{ln}"),
                                Signal(32, name=f"r{i}_{ln}"), field_signal(Op.LOAD_INP, "fold_kw", f"s{i}_{ln}"))
                c = Signal(16, name=f"c{i}_{ln}")
                y, x = Signal(signed(34), name=f"y{i}_{ln}"), Signal(signed(34), name=f"x{i}_{ln}")
                ok = Signal(name=f"ok{i}_{ln}")
                m.d.comb += [
                    f.eq(ci.c_base + pcb * c0 + ln),
                    tap.eq(f // ci.t_c), c.eq(f % ci.t_c),
                    r.eq(tap // fkw), s.eq(tap % fkw),
                    y.eq(ci.y0 + pyy * fs + r), x.eq(ci.x0 + pxx * fs + s),
                    ok.eq(rvalid & (tap < fkh * fkw) & (y >= 0) & (y < ci.t_h) & (x >= 0) & (x < ci.t_w)),
                    self.lane_addr[i * c0 + ln].eq(ci.src_addr + (y * ci.t_w + x) * ci.t_c + c),
                ]
                en_bits.append(ok)
            wrap_x, wrap_y = Signal(name=f"wrap_x{i}"), Signal(name=f"wrap_y{i}")
            m.d.comb += [wrap_x.eq(pxx + 1 == ci.win_w), wrap_y.eq(wrap_x & (pyy + 1 == ci.win_h))]
            npos = (field_signal(Op.LOAD_INP, "n_cblk", f"cb{i + 1}"), field_signal(Op.LOAD_INP, "win_h", f"yy{i + 1}"),
                    field_signal(Op.LOAD_INP, "win_w", f"xx{i + 1}"))
            m.d.comb += [npos[0].eq(Mux(wrap_y, pcb + 1, pcb)),
                         npos[1].eq(Mux(wrap_x, Mux(wrap_y, 0, pyy + 1), pyy)),
                         npos[2].eq(Mux(wrap_x, 0, pxx + 1))]
            pos = npos
        m.d.comb += [self.lane_en.eq(Cat(*en_bits)), self.lane_en_count.eq(sum(en_bits)),
                     self.row_addr.eq(ci.dst_addr + bi * nb), self.rows.eq(_min(rows - bi * nb, nb))]
        with m.If(self.start):
            m.d.sync += [cur.eq(self.insn), bi.eq(0), cb.eq(0), yy.eq(0), xx.eq(0),
                         rows.eq(hi.n_cblk * hi.win_h * hi.win_w)]
        with m.Elif(issue):
            m.d.sync += [bi.eq(bi + 1), cb.eq(pos[0]), yy.eq(pos[1]), xx.eq(pos[2])]
        return m
