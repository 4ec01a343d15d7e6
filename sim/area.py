"""PE-array area model, calibrated against the paper's Table II.

Per PE::

    area_PE = K0 * s(weight_buf_bytes / K0) + s(param_bytes)       weight-buffer SRAM macros
            + m_in * s(input_buf_bytes)                              input buffer (own density)
            + a_acc * accum_bytes                                    accumulation storage
            + a_lane * K0 * C0                                       multiplier lanes + adder tree

    s(size) = a_sram * size ** b      (mm^2 of one single-port SRAM macro of ``size`` bytes)

and the array is ``num_pe`` PEs; the global buffer is *not* part of the
paper's "PE array area" column and is reported separately
(:func:`global_buffer_area_mm2`, same SRAM law).

Free coefficients: ``a_sram``, ``m_in`` (as ``a_in = m_in * a_sram``),
``a_acc``, ``a_lane`` (non-negative linear least squares on the relative error)
and the exponent ``b`` (grid search over [0.7, 1.0]: a macro can only get
denser per byte as it grows, so ``b <= 1``).  They are computed once at import
from :data:`TABLE_II_AREA_MM2`; nothing fitted is typed in.

Identifiability (see ``docs/energy_area.md``): in every Table II preset
``accum_bytes = 1024 * K0 * 4``, so the accumulator column is proportional to
the number of vector MAC units; ``a_acc`` therefore absorbs *all* area that
scales with K0 per PE (accumulation storage, adder-tree roots, post-processing
lanes) and is only meaningful as such.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from hw.config import PAPER_PRESETS, AcceleratorConfig, get_config
from hw.numerics import PARAM_ENTRY_BYTES

__all__ = ["TABLE_II_AREA_MM2", "COEFFS", "area_mm2", "area_breakdown",
           "global_buffer_area_mm2", "sram_macro_area_mm2", "calibration_report", "VALIDITY", "extrapolation"]

#: Paper Table II, "PE array area (mm^2)", 5 nm.  Used only to calibrate the
#: coefficients below and to report the model error.
TABLE_II_AREA_MM2: dict[str, float] = {
    "A": 16.7, "B": 4.5, "C": 8.3, "D": 2.3, "E": 1.9, "F": 2.0, "G": 1.7,
    "H": 6.1, "I": 5.4, "J": 4.2, "K": 3.5, "L": 3.3, "M": 2.6,
}

#: Exponent grid for ``s(size) = a * size**b`` (deterministic).
_B_GRID = np.round(np.linspace(0.70, 1.00, 31), 3)


def _param_bytes(cfg: AcceleratorConfig) -> int:
    return cfg.param_depth * PARAM_ENTRY_BYTES


def _columns(cfg: AcceleratorConfig, b: float) -> np.ndarray:
    """Per-array regressors for [a_sram, a_in, a_acc, a_lane]."""
    p, k0 = cfg.num_pe, cfg.k0
    w = k0 * (cfg.weight_buf_bytes / k0) ** b + _param_bytes(cfg) ** b
    return np.array([p * w, p * cfg.input_buf_bytes ** b, p * cfg.accum_bytes,
                     p * k0 * cfg.c0], dtype=float)


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a handful of columns (all subsets)."""
    best, best_res = None, math.inf
    n = x.shape[1]
    for r in range(1, n + 1):
        for cols in itertools.combinations(range(n), r):
            c, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if (c < 0).any():
                continue
            full = np.zeros(n)
            full[list(cols)] = c
            res = float(np.sum((x @ full - y) ** 2))
            if res < best_res - 1e-15:
                best, best_res = full, res
    assert best is not None
    return best


def _calibrate() -> dict:
    names = list(TABLE_II_AREA_MM2)
    y = np.array([TABLE_II_AREA_MM2[n] for n in names])
    cfgs = [get_config(n) for n in names]
    best = None
    for b in _B_GRID:
        x = np.array([_columns(c, float(b)) for c in cfgs])
        coef = _nnls(x / y[:, None], np.ones_like(y))        # minimise relative error
        rms = float(np.sqrt(np.mean(((x @ coef) / y - 1.0) ** 2)))
        if best is None or rms < best[0] - 1e-12:
            best = (rms, float(b), coef)
    rms, b, (a_sram, a_in, a_acc, a_lane) = best
    return {"b": b, "a_sram": float(a_sram), "a_in": float(a_in), "a_acc": float(a_acc),
            "a_lane": float(a_lane), "rms_rel_err": rms}


#: Fitted coefficients (mm^2; SRAM ones per byte**b), computed at import.
COEFFS: dict = _calibrate()


def sram_macro_area_mm2(size_bytes: float, kind: str = "single") -> float:
    """Area of one SRAM macro; ``kind`` is ``"single"`` (weight/param) or ``"input"``."""
    a = COEFFS["a_sram"] if kind == "single" else COEFFS["a_in"]
    return a * float(size_bytes) ** COEFFS["b"]


def area_breakdown(cfg: AcceleratorConfig) -> dict[str, float]:
    """PE-array area by component (mm^2); the values sum to :func:`area_mm2`."""
    p, k0 = cfg.num_pe, cfg.k0
    return {
        "mac_arrays": p * k0 * cfg.c0 * COEFFS["a_lane"],
        "weight_buffers": p * k0 * sram_macro_area_mm2(cfg.weight_buf_bytes / k0),
        "input_buffers": p * sram_macro_area_mm2(cfg.input_buf_bytes, "input"),
        "accumulators": p * cfg.accum_bytes * COEFFS["a_acc"],
        "other": p * sram_macro_area_mm2(_param_bytes(cfg)),   # bias/requant parameter memory
    }


def area_mm2(cfg: AcceleratorConfig) -> float:
    """PE-array area (the paper's Table II column), mm^2; excludes the global buffer."""
    return float(sum(area_breakdown(cfg).values()))


def global_buffer_area_mm2(cfg: AcceleratorConfig) -> float:
    """Global buffer area (not in Table II's PE-array column), single-port SRAM law."""
    return sram_macro_area_mm2(cfg.global_buf_bytes)


def calibration_report() -> list[tuple[str, float, float, float]]:
    """(preset, model mm^2, paper mm^2, error %) for every Table II preset."""
    rows = []
    for name in PAPER_PRESETS:
        model, paper = area_mm2(get_config(name)), TABLE_II_AREA_MM2[name]
        rows.append((name, model, paper, 100.0 * (model / paper - 1.0)))
    return rows


#: What the fit reads of a configuration: name -> value; the calibration presets span its validity range.
_INPUTS = {
    "num_pe": lambda c: c.num_pe, "k0": lambda c: c.k0, "c0": lambda c: c.c0,
    "weight_kib_per_vector_mac": lambda c: c.weight_buf_bytes / c.k0 / 1024,
    "input_kib": lambda c: c.input_buf_bytes / 1024, "accum_bytes": lambda c: c.accum_bytes,
    "param_depth": lambda c: c.param_depth,
}


def _validity() -> dict[str, tuple[float, float]]:
    cfgs = [get_config(n) for n in TABLE_II_AREA_MM2]
    return {k: (min(f(c) for c in cfgs), max(f(c) for c in cfgs)) for k, f in _INPUTS.items()}


#: The range of every input of the fit over the Table II presets it is calibrated on.
VALIDITY: dict[str, tuple[float, float]] = _validity()


def extrapolation(cfg: AcceleratorConfig) -> list[str]:
    """Where ``cfg`` lies outside the Table II presets the area model is fitted on (empty: inside),
    e.g. ``["num_pe=8 below Table II's 16..64"]``."""
    out = []
    for key, f in _INPUTS.items():
        value, (low, high) = f(cfg), VALIDITY[key]
        if value < low or value > high:
            out.append(f"{key}={value:g} {'below' if value < low else 'above'} Table II's {low:g}..{high:g}")
    if cfg.k0 != cfg.c0:
        out.append(f"K0={cfg.k0} != C0={cfg.c0} (Table II has K0 = C0 only)")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.area``: the fit's coefficients and its error on every Table II preset."""
    from hw.cli import OneLineParser
    OneLineParser(prog="python -m sim.area",
                  description="Print the PE-array area model's fitted coefficients, its area against the "
                              "paper's Table II for every preset it is fitted on, and the small presets' "
                              "areas (docs/energy_area.md).").parse_args(argv)
    c = COEFFS
    print(f"fit: b = {c['b']:.3f}, weight SRAM = {c['a_sram'] * 4096 ** c['b'] / 4096 * 1e6:.3f} um^2/B "
          f"@4 KiB, input SRAM = {c['a_in'] * 32768 ** c['b'] / 32768 * 1e6:.3f} um^2/B @32 KiB, "
          f"per-K0 (accumulator) = {c['a_acc'] * 1e6:.3f} um^2/B of accum_bytes, "
          f"lane = {c['a_lane'] * 1e6:.2f} um^2")
    print(f"{'config':>6} {'model mm2':>10} {'paper mm2':>10} {'error %':>8}")
    for name, model, paper, err in calibration_report():
        print(f"{name:>6} {model:10.3f} {paper:10.1f} {err:+8.1f}")
    for name in ("tiny", "small", "e_small"):
        print(f"{name:>6} {area_mm2(get_config(name)):10.4f} {'-':>10} {'-':>8}")
    return 0


if __name__ == "__main__":
    from hw.cli import run_main

    run_main(main)
