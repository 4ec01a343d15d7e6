"""One axis of a VEC operand's address pattern as counters (``AxisCounter``, ``hw/vector.py``)."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import vector as vec
from ..isa import ADDR_BITS

__all__ = ["AxisCounter", "WideAxisCounter", "small_divmod", "operand_axes"]


class AxisCounter(wiring.Component):
    """The byte offset of position ``i`` of an axis, stepped once per position.

    ``u = (start + i) mod wrap`` is kept as ``u``, ``lo = u mod win`` and the running offsets
    ``lo * s_lo`` and ``(u div win) * s_hi``: one add per step, no division
    (``hw.vector.axis_offsets`` is the reference).  ``load`` sets position 0 from the fields;
    the initial offsets ``lo0 * s_lo`` and ``hi0 * s_hi`` are the only products, once per load.
    Offsets are modulo ``2**ADDR_BITS``, as every address.

    Members
    -------
    <field>: In(...)
        The axis fields of ``hw.vector.AXIS_FIELDS`` (``n`` is not used: the pass counts positions).
    load, step: In(1)
        Go to position 0 (``load`` wins), or to the next position, at the next clock edge.
    offset: Out(ADDR_BITS)
        The current position's byte offset.
    padding: Out(1)
        The current position is padding (``u >= valid``).
    """

    def __init__(self):
        fields = {name: In(signed(bits) if is_signed else unsigned(bits)) for name, bits, is_signed in vec.AXIS_FIELDS}
        super().__init__({**fields, "load": In(1), "step": In(1), "offset": Out(ADDR_BITS), "padding": Out(1)})

    def elaborate(self, platform):
        m = Module()
        u, lo = Signal.like(self.wrap), Signal.like(self.win)
        off_lo, off_hi = Signal(ADDR_BITS), Signal(ADDR_BITS)
        m.d.comb += [self.offset.eq(off_lo + off_hi), self.padding.eq(u >= self.valid)]
        with m.If(self.load):
            m.d.sync += [u.eq(self.start), lo.eq(self.lo0),
                         off_lo.eq(self.lo0 * self.s_lo), off_hi.eq(self.hi0 * self.s_hi)]
        with m.Elif(self.step):
            with m.If(u + 1 == self.wrap):
                m.d.sync += [u.eq(0), lo.eq(0), off_lo.eq(0), off_hi.eq(0)]
            with m.Elif(lo + 1 == self.win):
                m.d.sync += [u.eq(u + 1), lo.eq(0), off_lo.eq(0), off_hi.eq(off_hi + self.s_hi)]
            with m.Else():
                m.d.sync += [u.eq(u + 1), lo.eq(lo + 1), off_lo.eq(off_lo + self.s_lo)]
        return m


def small_divmod(t: int, divisor: Value) -> tuple[Value, Value]:
    """``(t div divisor, t mod divisor)`` of a constant ``t >= 0`` and a run-time ``divisor >= 1``:
    comparisons with constants and multiplexers (``divisor <= t // j`` counts the multiples), no divider."""
    quotient = sum((divisor <= t // j for j in range(1, t + 1)), Const(0, range(t + 1)))
    remainder = Const(t, range(t + 1))
    for value in range(t, 0, -1):
        remainder = Mux(divisor == value, t % value, remainder)
    return quotient, remainder


class WideAxisCounter(wiring.Component):
    """The byte offsets of ``walkers`` positions of an axis, each moved up to ``max_step`` positions a cycle.

    Each walker keeps ``AxisCounter``'s state (``u = (start + i) mod wrap``, ``lo = u mod win`` and
    the two running offsets ``lo * s_lo`` and ``(u div win) * s_hi``) and moves it by ``d``
    positions in **one** step, not a chain of ``d`` single steps: ``d`` is split once per pass into
    ``d mod wrap = a * win + b`` (``small_divmod``: ``d <= max_step`` is small), and a move adds
    ``b`` to ``lo`` and ``a`` or ``a + 1`` windows of ``s_hi`` to the high offset, with the multiples
    ``j * s_lo``, ``j * s_hi`` made once per pass.  Whether the move wraps (``u + d mod wrap >=
    wrap``) or crosses a window (``lo + b >= win``) is one comparison each with a per-pass bound; a
    wrapped position is below ``max_step`` and its state is read from a per-pass table.  So a move
    is a comparison, an add and multiplexers deep, whatever ``d``.  The walkers share the tables.

    The tables are registered from the fields in two stages: the fields must hold from two cycles
    before the first move (``load`` may be in either).

    Members
    -------
    <field>: In(...)
        The axis fields of ``hw.vector.AXIS_FIELDS`` (``n``, ``laps``, ``hi_run``, ``hi_turn`` not used).
    load: In(1)
        Every walker to position 0 at the next clock edge (wins over a move).
    move: In(walkers)
        Walker ``w`` moves at the next clock edge (an enable only: the move itself is the
        registered ``step_by`` / ``restart``, so that a late enable adds no depth to the move).
    step_by: In(ArrayLayout(range(max_step + 1), walkers))
        Walker ``w`` moves this many positions on.
    restart, restart_at: In(walkers), In(ArrayLayout(range(max_step), walkers))
        Walker ``w`` goes to position ``restart_at[w]`` instead (wins over ``step_by``).
    offset: Out(ArrayLayout(ADDR_BITS, walkers)), padding: Out(walkers)
        Each walker's position's byte offset (modulo ``2**ADDR_BITS``) and whether it is padding.
    """

    def __init__(self, max_step: int, walkers: int = 1):
        for name, value in (("max_step", max_step), ("walkers", walkers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._k, self._walkers = max_step, walkers
        fields = {name: In(signed(bits) if is_signed else unsigned(bits)) for name, bits, is_signed in vec.AXIS_FIELDS}
        super().__init__({**fields, "load": In(1), "move": In(walkers),
                          "step_by": In(data.ArrayLayout(range(max_step + 1), walkers)), "restart": In(walkers),
                          "restart_at": In(data.ArrayLayout(range(max_step), walkers)),
                          "offset": Out(data.ArrayLayout(ADDR_BITS, walkers)), "padding": Out(walkers)})

    @property
    def max_step(self) -> int:
        return self._k

    @property
    def walkers(self) -> int:
        return self._walkers

    def elaborate(self, platform):
        m = Module()
        tables = self._tables(m)
        names = ("u", "lo", "off_lo", "off_hi")
        lo_off, hi_off = Signal(ADDR_BITS), Signal(ADDR_BITS)
        m.d.comb += [lo_off.eq(self.lo0 * self.s_lo), hi_off.eq(self.hi0 * self.s_hi)]
        start = (self.start, self.lo0, lo_off, hi_off)
        first = [Signal.like(self.wrap, name="first_u"), Signal.like(self.win, name="first_lo"),
                 Signal(ADDR_BITS, name="first_off_lo"), Signal(ADDR_BITS, name="first_off_hi")]
        with m.If(self.load):
            m.d.sync += [f.eq(v) for f, v in zip(first, start)]
        for w in range(self._walkers):
            state = [Signal.like(f, name=f"w{w}_{n}") for f, n in zip(first, names)]
            u, lo, off_lo, off_hi = state
            m.d.comb += [self.offset[w].eq(off_lo + off_hi), self.padding[w].eq(u >= self.valid)]
            here = [Mux(self.restart[w], f, r) for f, r in zip(first, state)]
            moved = self._move(m, tables, here, Mux(self.restart[w], self.restart_at[w], self.step_by[w]), f"w{w}")
            with m.If(self.load):
                m.d.sync += [r.eq(v) for r, v in zip(state, start)]
            with m.Elif(self.move[w]):
                m.d.sync += [r.eq(v) for r, v in zip(state, moved)]
        return m

    def _tables(self, m: Module) -> dict:
        """The per-pass constants of every move ``d`` in ``0 .. max_step`` and of every wrapped
        position ``v`` below ``max_step``, registered in two stages."""
        k, w = self._k, ADDR_BITS

        def reg(value, name, shape):
            r = Signal(shape, name=name)
            m.d.sync += r.eq(value)
            return r
        # stage 1: each move modulo the wrap, each small number split by the window, the multiples
        dw = [reg(small_divmod(d, self.wrap)[1], f"dw{d}", range(k + 1)) for d in range(k + 1)]
        split = [small_divmod(t, self.win) for t in range(k + 1)]
        q_t = [reg(q, f"q{t}", range(k + 1)) for t, (q, _) in enumerate(split)]
        r_t = [reg(r, f"r{t}", range(k + 1)) for t, (_, r) in enumerate(split)]
        m_lo = [reg(j * self.s_lo, f"m_lo{j}", w) for j in range(k + 1)]
        m_hi = [reg(j * self.s_hi, f"m_hi{j}", w) for j in range(k + 2)]
        # stage 2: per move its bounds and increments; per wrapped position its state
        a = [Array(q_t)[x] for x in dw]
        b = [Array(r_t)[x] for x in dw]
        return {
            "dw": [reg(x, f"dw2_{d}", range(k + 1)) for d, x in enumerate(dw)],
            "b": [reg(x, f"b{d}", range(k + 1)) for d, x in enumerate(b)],
            "wrap_at": [reg(self.wrap - x, f"wrap_at{d}", self.wrap.shape()) for d, x in enumerate(dw)],
            "cross_at": [reg(self.win - x, f"cross_at{d}", self.win.shape()) for d, x in enumerate(b)],
            "inc_lo": [reg(Array(m_lo)[x], f"inc_lo{d}", w) for d, x in enumerate(b)],
            "inc_hi": [reg(Array(m_hi)[x], f"inc_hi{d}", w) for d, x in enumerate(a)],
            "inc_hi1": [reg(Array(m_hi)[x + 1], f"inc_hi1_{d}", w) for d, x in enumerate(a)],
            "m_lo": [reg(x, f"m_lo2_{j}", w) for j, x in enumerate(m_lo[:k])],
            "wrapped": [(reg(r_t[v], f"v_lo{v}", range(k + 1)), reg(Array(m_lo)[r_t[v]], f"v_off_lo{v}", w),
                         reg(Array(m_hi)[q_t[v]], f"v_off_hi{v}", w)) for v in range(k)],
        }

    def _move(self, m: Module, t: dict, state, d, name: str) -> list:
        """The state ``d`` positions on from ``state``: one comparison, one add, multiplexers."""
        bits = max(self._k - 1, 1).bit_length()
        u, lo, off_lo, off_hi = state
        pick = {key: Array(values)[d] for key, values in t.items() if key not in ("m_lo", "wrapped")}
        wraps = u >= pick["wrap_at"]                      # u + d mod wrap >= wrap
        crosses = lo >= pick["cross_at"]                  # lo + b >= win
        v = (u - pick["wrap_at"])[:bits]                  # the wrapped position, below max_step
        lo_crossed = (lo - pick["cross_at"])[:bits]       # lo + b - win, below max_step
        v_lo, v_off_lo, v_off_hi = (Array(x[i] for x in t["wrapped"])[v] for i in range(3))
        nxt = [Signal.like(r, name=f"{name}_next_{n}") for r, n in zip(state, ("u", "lo", "off_lo", "off_hi"))]
        with m.If(wraps):
            m.d.comb += [nxt[0].eq(v), nxt[1].eq(v_lo), nxt[2].eq(v_off_lo), nxt[3].eq(v_off_hi)]
        with m.Else():
            m.d.comb += [nxt[0].eq(u + pick["dw"]),
                         nxt[1].eq(Mux(crosses, lo_crossed, lo + pick["b"])),
                         nxt[2].eq(Mux(crosses, Array(t["m_lo"])[lo_crossed], off_lo + pick["inc_lo"])),
                         nxt[3].eq(off_hi + Mux(crosses, pick["inc_hi1"], pick["inc_hi"]))]
        return nxt


def operand_axes(m: Module, name: str, operand, load, factory=AxisCounter) -> tuple:
    """An operand's (y, x) counters (``factory()``: ``AxisCounter`` or a ``WideAxisCounter``), added
    to ``m`` as ``<name>_y`` and ``<name>_x``, driven by the operand's axis fields and ``load``."""
    y, x = factory(), factory()
    m.submodules[f"{name}_y"], m.submodules[f"{name}_x"] = y, x
    for prefix, counter in (("y_", y), ("x_", x)):
        for field, _, _ in vec.AXIS_FIELDS:
            m.d.comb += getattr(counter, field).eq(getattr(operand, prefix + field))
        m.d.comb += counter.load.eq(load)
    return y, x
