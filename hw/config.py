"""The accelerator configuration: one frozen dataclass read by the RTL generator,
the mapper, the simulator and the testbench.

Only base parameters are stored; everything derived (address widths, buffer
depths in rows) is a property.  Presets ``A`` to ``M`` are the paper's Table II;
``tiny``, ``small`` and ``e_small`` are scaled-down configurations for tests and
cosimulation.

Assumptions the paper leaves open (documented in ``docs/config.md``):

* the global buffer (default 1 MiB), the accumulation buffer (default 512
  entries of K0 x 32-bit partial sums per PE) and the bias/requantisation
  parameter memory (default 256 entries per PE);
* DRAM: 128 bytes per cycle (160 GB/s at 1.25 GHz, an LPDDR5X-class part) and a
  fixed 100-cycle (80 ns) latency per request;
* the global-buffer-to-PE multicast bus: 4 x C0 bytes per cycle (128 B for
  C0 = 32, the DRAM rate), so that two rows of PEs that each consume C0 input
  bytes per cycle can be refilled while weights stream in beside them; never
  narrower than the DRAM rate, so a load from DRAM is never throttled by it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .cli import did_you_mean
from .isa import FIELD_BITS, Op

__all__ = ["AcceleratorConfig", "PRESETS", "get_config", "SUPPORTED_VECTOR_WIDTHS", "CLOCK_GHZ_RANGE", "FIELD_MAX",
           "ADDRESSED_BY", "UnknownFieldError", "FieldError", "DEFAULT_BUS_C0S", "DEFAULT_BUS_RULE"]

#: K0 and C0 the RTL generator can build: powers of two, so that lane and row
#: addresses are plain bit slices.
SUPPORTED_VECTOR_WIDTHS = (2, 4, 8, 16, 32, 64)

KIB = 1024
#: The load unit learns a transfer's size while it runs and its data lands two
#: cycles after a beat, so no DRAM can answer faster than this (cycles).
MIN_DRAM_LATENCY = 2
#: Overrides that make memory no limit (the paper's accelerator times appear to assume this):
#: DRAM and global-buffer bus far wider than any layer can use, and the shortest DRAM latency
#: the load unit allows (``sim.simulator.simulate(ideal_memory=True)``, ``mapper.stitch``).
IDEAL_MEMORY = {"dram_bytes_per_cycle": 1 << 16, "gb_bus_bytes_per_cycle": 1 << 16, "dram_latency": MIN_DRAM_LATENCY}
#: Clocks (GHz) the time model accepts: 10 MHz to 20 GHz, far beyond any int8
#: accelerator in CMOS either way; outside it a time or bandwidth figure would
#: be nonsense (a clock of 1e-300 GHz makes every time infinite).
CLOCK_GHZ_RANGE = (0.01, 20.0)
#: The bus ``gb_bus_bytes_per_cycle = 0`` stands for: ``DEFAULT_BUS_C0S`` x C0 bytes, or the DRAM
#: rate if wider (``AcceleratorConfig.gb_bus_bytes``), and that rule as messages name it.
DEFAULT_BUS_C0S = 4
DEFAULT_BUS_RULE = f"max({DEFAULT_BUS_C0S} x C0, dram_bytes_per_cycle)"
#: Upper bounds of the memory parameters: 1 MiB per cycle is a thousand times any DRAM
#: (``IDEAL_MEMORY`` uses 64 KiB), a million cycles of latency a millisecond,
#: and the ISA's byte addresses (32 bits) reach 4 GiB of global buffer; 1,024 vector lanes a PE
#: are 16 times the widest K0 (a vector unit a million lanes wide was timed, its walk dominating).
FIELD_MAX = {"dram_bytes_per_cycle": 1 << 20, "gb_bus_bytes_per_cycle": 1 << 20, "dram_latency": 1 << 20,
             "global_buf_bytes": 1 << 32, "dram_mib": 4096, "vector_lanes_per_pe": 1024}
#: The instruction fields that address each per-PE buffer (``hw.isa.FIELDS``), in rows or
#: entries: a buffer deeper than the narrowest of them reaches could never be used, and the
#: mapper would fail on an address that does not fit (``ADDRESSED_BY[depth]``, ``addressable``).
ADDRESSED_BY = {"weight_rows": ((Op.LOAD_WGT, "dst_addr"), (Op.GEMM, "wgt_addr")),
                "input_rows": ((Op.LOAD_INP, "dst_addr"), (Op.GEMM, "inp_addr")),
                "accum_depth": ((Op.GEMM, "acc_addr"), (Op.STORE, "acc_addr")),
                "param_depth": ((Op.LOAD_PARAM, "dst_addr"), (Op.STORE, "param_addr"))}


def addressable(depth: str) -> tuple[int, str]:
    """The most rows (entries) of the buffer ``depth`` (a key of ``ADDRESSED_BY``) that its
    instructions' address fields reach, and the narrowest field, ``"STORE.acc_addr"``."""
    op, name = min(ADDRESSED_BY[depth], key=lambda f: FIELD_BITS[f[0]][f[1]])
    return 1 << FIELD_BITS[op][name], f"{op.name}.{name}"


class UnknownFieldError(KeyError):
    """An override names no field of ``AcceleratorConfig``; the message lists the fields."""


class FieldError(ValueError):
    """A value of one field refused.  ``rule`` is the message with ``{key}``, ``{value!r}`` and
    the amounts in the field's units (``{0}``, ...), so that a key that sets the field in other
    units (``global_buf_kib``, ``hw.config_file.ALIASES``) can say it in its own: ``restated``."""

    def __init__(self, field: str, value, rule: str, *amounts: int):
        self.field, self.value, self.rule, self.amounts = field, value, rule, amounts
        super().__init__(self.restated(field, 1, "bytes" if field.endswith("_bytes") else ""))

    def __reduce__(self):           # pickled by its fields (a sweep's worker process sends errors back)
        return FieldError, (self.field, self.value, self.rule, *self.amounts)

    def restated(self, key: str, factor: int, unit: str) -> str:
        def amount(n: int) -> str:
            return f"{n // factor if n % factor == 0 else f'{n / factor:g}'}{' ' + unit if unit else ''}"
        value = self.value // factor if isinstance(self.value, int) else self.value
        return self.rule.format(*map(amount, self.amounts), key=key, value=value)


@dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one accelerator instance.

    Parameters
    ----------
    name:
        Preset or user label.
    num_pe:
        Number of processing elements (PEs) in the array.
    k0:
        Vector MAC units per PE, i.e. output channels computed in parallel per PE.
    c0:
        int8 multipliers per vector MAC unit, i.e. input channels per cycle.
    weight_buf_bytes:
        Weight buffer per PE, split evenly over its K0 vector MAC units.
    input_buf_bytes:
        Input buffer per PE (shared by its K0 vector MAC units).
    accum_depth:
        Accumulation-buffer entries per PE; an entry holds K0 partial sums.
    acc_bits:
        Width of one partial sum.
    param_depth:
        Entries of the per-PE bias/requantisation parameter memory, one per output
        channel; the mapper rotates four slots of K0 entries, so at least 4 x K0.
    global_buf_bytes:
        Global buffer at the array level.
    dram_bytes_per_cycle:
        External memory bandwidth, in bytes per cycle.
    dram_latency:
        Fixed latency of each external memory request, in cycles.
    gb_bus_bytes_per_cycle:
        Global buffer to PE multicast bus width; 0 means 4 x C0, or the DRAM rate if wider.
    clock_ghz:
        Clock used to turn cycles into time.
    vector_lanes_per_pe:
        Elements per cycle and PE of the post-processing / vector unit, which also
        runs the non-MAC layers; 0 means K0.
    data_bits:
        Width of activations and weights: 8 (the datapath is int8).
    dram_mib:
        DRAM capacity in MiB (at most the 32-bit address space): a network's program
        (``mapper.program``) must fit it.
    """

    name: str
    num_pe: int
    k0: int
    c0: int
    weight_buf_bytes: int
    input_buf_bytes: int
    accum_depth: int = 512
    acc_bits: int = 32
    param_depth: int = 256
    global_buf_bytes: int = 1024 * KIB
    dram_bytes_per_cycle: int = 128
    dram_latency: int = 100
    gb_bus_bytes_per_cycle: int = 0
    clock_ghz: float = 1.25
    vector_lanes_per_pe: int = 0
    data_bits: int = 8
    dram_mib: int = 4096

    def __post_init__(self) -> None:
        self._check_fields()
        self._check_buffer_sizes()
        self._check_addressable()

    def _check_fields(self) -> None:
        """ValueError naming the first field of a wrong type, out of its range or not supported."""
        def positive(field: str) -> None:
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise FieldError(field, value, "{key} must be a positive integer, not {value!r}")

        for field in ("num_pe", "k0", "c0", "weight_buf_bytes", "input_buf_bytes",
                      "accum_depth", "acc_bits", "param_depth", "global_buf_bytes",
                      "dram_bytes_per_cycle", "dram_mib"):
            positive(field)
        if not isinstance(self.dram_latency, int) or self.dram_latency < MIN_DRAM_LATENCY:
            raise ValueError(f"dram_latency must be an integer of at least {MIN_DRAM_LATENCY} cycles, "
                             f"not {self.dram_latency!r}")
        for field in ("gb_bus_bytes_per_cycle", "vector_lanes_per_pe"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{field} must be a non-negative integer, not {value!r}")
        for field, high in FIELD_MAX.items():
            if getattr(self, field) > high:
                raise FieldError(field, getattr(self, field), "{key} must be at most {0}, not {value!r}", high)
        for field in ("k0", "c0"):
            value = getattr(self, field)
            if value not in SUPPORTED_VECTOR_WIDTHS:
                raise ValueError(f"{field} must be one of {SUPPORTED_VECTOR_WIDTHS} "
                                 f"(a power of two the RTL can build), not {value!r}")
        if self.num_pe > 64:
            raise ValueError(f"num_pe must be at most 64 (the PE mask is 64 bits), not {self.num_pe!r}")
        if self.data_bits != 8:
            raise ValueError(f"data_bits must be 8 (int8 datapath), not {self.data_bits!r}")
        if self.acc_bits not in (24, 32):
            raise ValueError(f"acc_bits must be 24 or 32, not {self.acc_bits!r}")
        low, high = CLOCK_GHZ_RANGE
        if not (isinstance(self.clock_ghz, (int, float)) and not isinstance(self.clock_ghz, bool)
                and low <= self.clock_ghz <= high):        # also refuses nan
            raise ValueError(f"clock_ghz must be between {low:g} and {high:g} (GHz), not {self.clock_ghz!r}")

    def _check_buffer_sizes(self) -> None:
        """ValueError naming a buffer that is not whole rows or holds fewer than 4."""
        for field, row, what in (("weight_buf_bytes", self.k0 * self.c0, "K0*C0"), ("input_buf_bytes", self.c0, "C0"),
                                 ("global_buf_bytes", self.c0, "C0")):
            if getattr(self, field) % row:
                why = " so each vector MAC gets whole rows" if field == "weight_buf_bytes" else ""
                raise FieldError(field, getattr(self, field),
                                 f"{{key}} ({{value}}) must be a multiple of {what} = {{0}}{why}", row)
        if self.param_depth < 4 * self.k0:
            raise ValueError(f"param_depth ({self.param_depth}) must be at least 4 x K0 = {4 * self.k0}")
        # each buffer holds at least 4 rows: (field, rows it holds, bytes a row)
        for field, rows, row_bytes in (("weight_buf_bytes", self.weight_rows, self.k0 * self.c0),
                                       ("input_buf_bytes", self.input_rows, self.c0), ("accum_depth", self.accum_depth, 0)):
            if rows < 4:
                need = ("at least {0} (4 rows of {1})", 4 * row_bytes, row_bytes) if row_bytes else ("at least 4",)
                raise FieldError(field, getattr(self, field),
                                 "{key} ({value}) is too small to hold any tile: " + need[0], *need[1:])

    def _check_addressable(self) -> None:
        """ValueError naming the field whose buffer is deeper than the ISA addresses (``ADDRESSED_BY``)."""
        row_units = {"weight_rows": ("weight_buf_bytes", self.k0 * self.c0, "rows of K0 x C0 bytes"),
                     "input_rows": ("input_buf_bytes", self.c0, "rows of C0 bytes"),
                     "accum_depth": ("accum_depth", 1, "entries"), "param_depth": ("param_depth", 1, "entries")}
        for depth, (field, unit, what) in row_units.items():
            limit, where = addressable(depth)
            if getattr(self, depth) > limit:
                raise FieldError(field, getattr(self, field), f"{{key}} must be at most {{0}} ({limit} {what}, "
                                 f"as many as {where} addresses), not {{value!r}}", limit * unit)

    # ---- derived quantities -------------------------------------------------
    @property
    def macs_per_cycle(self) -> int:
        return self.num_pe * self.k0 * self.c0

    @property
    def weight_rows(self) -> int:
        """Rows of C0 int8 weights in each vector MAC unit's weight buffer."""
        return self.weight_buf_bytes // (self.k0 * self.c0)

    @property
    def input_rows(self) -> int:
        """Rows of C0 int8 inputs in a PE's input buffer."""
        return self.input_buf_bytes // self.c0

    @property
    def gb_rows(self) -> int:
        return self.global_buf_bytes // self.c0

    @property
    def gb_bus_bytes(self) -> int:
        return self.gb_bus_bytes_per_cycle or max(DEFAULT_BUS_C0S * self.c0, self.dram_bytes_per_cycle)

    @property
    def gb_bus_origin(self) -> str:
        """Where ``gb_bus_bytes`` comes from, for messages: the field as set, or the default rule
        and the term of it that decides."""
        if self.gb_bus_bytes_per_cycle:
            return f"gb_bus_bytes_per_cycle = {self.gb_bus_bytes_per_cycle} as set"
        term = (f"dram_bytes_per_cycle = {self.dram_bytes_per_cycle}"
                if self.dram_bytes_per_cycle > DEFAULT_BUS_C0S * self.c0 else f"C0 = {self.c0}")
        return f"{self.gb_bus_bytes} B, the default {DEFAULT_BUS_RULE} at {term}"

    @property
    def dram_bytes(self) -> int:
        """DRAM capacity in bytes (``dram_mib`` MiB): the addresses a program may use, ``0 ..
        dram_bytes - 1`` (the whole 32-bit address space in every preset)."""
        return self.dram_mib << 20

    @property
    def vector_lanes(self) -> int:
        """Elements per cycle of the whole array's vector units."""
        return self.num_pe * (self.vector_lanes_per_pe or self.k0)

    @property
    def accum_bytes(self) -> int:
        return self.accum_depth * self.k0 * self.acc_bits // 8

    @staticmethod
    def _bits(n: int) -> int:
        return max(1, (n - 1).bit_length())

    @property
    def weight_addr_bits(self) -> int:
        return self._bits(self.weight_rows)

    @property
    def input_addr_bits(self) -> int:
        return self._bits(self.input_rows)

    @property
    def accum_addr_bits(self) -> int:
        return self._bits(self.accum_depth)

    @property
    def gb_addr_bits(self) -> int:
        return self._bits(self.gb_rows)

    @property
    def product_bits(self) -> int:
        """Width of a vector MAC's sum of C0 int8 x int8 products."""
        return 2 * self.data_bits + self._bits(self.c0) + 1

    def replace(self, **changes) -> "AcceleratorConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["derived"] = {
            "macs_per_cycle": self.macs_per_cycle,
            "weight_rows": self.weight_rows,
            "input_rows": self.input_rows,
            "gb_rows": self.gb_rows,
            "gb_bus_bytes": self.gb_bus_bytes,
            "vector_lanes": self.vector_lanes,
        }
        return d


def _table2(name: str, num_pe: int, k0c0: int, wkb: int, ikb: int, **more) -> AcceleratorConfig:
    return AcceleratorConfig(name=name, num_pe=num_pe, k0=k0c0, c0=k0c0,
                             weight_buf_bytes=wkb * KIB, input_buf_bytes=ikb * KIB, **more)


#: Table II of the paper (NumPE, K0 = C0, weight buffer kB, input buffer kB per PE).
PRESETS: dict[str, AcceleratorConfig] = {
    c.name: c for c in [
        _table2("A", 32, 32, 1024, 64),
        _table2("B", 32, 32, 128, 64),
        _table2("C", 16, 32, 1024, 64),
        _table2("D", 16, 32, 128, 64),
        # E's on-chip bus is twice its DRAM (docs/config.md, "E's on-chip bus"): layers that keep
        # their tensors in the global buffer then move them faster than through DRAM.
        _table2("E", 16, 32, 128, 32, gb_bus_bytes_per_cycle=256),
        _table2("F", 16, 32, 64, 64),
        _table2("G", 16, 32, 64, 32),
        _table2("H", 64, 16, 128, 32),
        _table2("I", 64, 16, 128, 16),
        _table2("J", 64, 16, 64, 32),
        _table2("K", 64, 16, 64, 16),
        _table2("L", 64, 16, 32, 32),
        _table2("M", 64, 16, 32, 16),
        # Small configurations for tests and cosimulation.
        AcceleratorConfig(name="tiny", num_pe=2, k0=4, c0=4, weight_buf_bytes=2 * KIB,
                          input_buf_bytes=1 * KIB, accum_depth=128, param_depth=32,
                          global_buf_bytes=16 * KIB, dram_bytes_per_cycle=8, dram_latency=10),
        AcceleratorConfig(name="small", num_pe=4, k0=4, c0=8, weight_buf_bytes=4 * KIB,
                          input_buf_bytes=2 * KIB, accum_depth=128, param_depth=32,
                          global_buf_bytes=32 * KIB, dram_bytes_per_cycle=16, dram_latency=20),
        AcceleratorConfig(name="e_small", num_pe=2, k0=32, c0=32, weight_buf_bytes=32 * KIB,
                          input_buf_bytes=8 * KIB, accum_depth=256, param_depth=128,
                          global_buf_bytes=64 * KIB, dram_bytes_per_cycle=32, dram_latency=20),
    ]
}

PAPER_PRESETS = tuple("ABCDEFGHIJKLM")


def get_config(name: str, **overrides) -> AcceleratorConfig:
    """The preset ``name`` (case-insensitive: ``e`` is E, ``SMALL`` small), with fields overridden.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the valid ones.
    UnknownFieldError
        (a KeyError) For an override that names no field; the message lists the fields.
    """
    key = {preset.lower(): preset for preset in PRESETS}.get(name.lower())
    if key is None:
        raise KeyError(f"unknown configuration {name!r}{did_you_mean(name, PRESETS)}; "
                       f"choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(AcceleratorConfig)}
    for k in overrides:
        if k not in fields:
            raise UnknownFieldError(f"unknown configuration field {k!r}; choose from {', '.join(sorted(fields))}")
    return PRESETS[key].replace(**overrides) if overrides else PRESETS[key]
