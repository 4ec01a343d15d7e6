"""Figures of ``make sim`` and ``make paths``, drawn for a paper.

One fixed colour per layer kind in every figure (``KIND_COLOURS``); sizes and
fonts fit a two-column page (7 in wide, 8 pt text); each figure is saved in
every format asked for (``png``, ``pdf``, ``svg``) without time stamps, so the
same results give the same files.

* ``time_energy``: the shares of time, energy and on-chip energy per layer kind
  as stacked bars, and the layers with the largest share of time (the paper's
  Figures 7 and 9, which show distributions across layers);
* ``energy_per_mac``: energy per MAC of every MAC layer, divided by the
  highest, sorted decreasing, on a log axis (the paper's Figure 8);
* ``paths``: time and energy of execution paths against their accuracy
  (Figures 10 to 13), with the accuracy's metric on the axis; paths without
  an accuracy are left out and counted in the legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mapper.ir import ELEMENTWISE_KINDS, MAC_KINDS

__all__ = ["KIND_COLOURS", "kind_colour", "metric_of", "time_energy", "energy_per_mac", "paths", "save", "style"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5")
#: One colour per layer kind, the same in every figure (MAC kinds first, in ``mapper.ir`` order).
KIND_COLOURS = dict(zip((*MAC_KINDS, *ELEMENTWISE_KINDS), _PALETTE))
#: Accuracy metric of each model family (the prefix of its name), as the paper reports it.
_METRICS = (("segformer", "mIoU"), ("swin", "mIoU"), ("ofa_resnet", "top-1"), ("resnet", "top-1"),
            ("detr", "AP"), ("dab_detr", "AP"), ("anchor_detr", "AP"), ("conditional_detr", "AP"))
_STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "pdf.fonttype": 42, "ps.fonttype": 42,
          "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False}
_NO_DATES = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def kind_colour(kind: str) -> str:
    return KIND_COLOURS.get(kind, "#7f7f7f")


def metric_of(model: str) -> str:
    """``mIoU``, ``top-1`` or ``AP``: how the accuracy of ``model`` is measured."""
    return next((m for prefix, m in _METRICS if model.startswith(prefix)), "accuracy")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def style():
    """A context in which figures get this module's sizes and fonts (``with style(): ...``)."""
    return _pyplot().rc_context(_STYLE)


def save(fig, out: Path, stem: str, formats: Iterable[str]) -> list[Path]:
    """Write ``fig`` as ``out/<stem>.<format>`` for each format and close it."""
    files = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=200, bbox_inches="tight", metadata=_NO_DATES[fmt])
        files.append(path)
    _pyplot().close(fig)
    return files


def _text_colour(colour: str) -> str:
    """Black or white, whichever reads better on ``colour``."""
    from matplotlib.colors import to_rgb
    r, g, b = to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.6 else "white"


def _darker(colour: str) -> tuple:
    from matplotlib.colors import to_rgb
    return tuple(0.7 * c for c in to_rgb(colour))


def _energy_text(uj: float) -> str:
    return f"{uj / 1e3:.1f} mJ" if uj >= 1e3 else f"{uj:.1f} uJ"


def _kind_shares(layers: list[dict], key: str) -> dict[str, float]:
    total = sum(l[key] for l in layers) or 1.0
    sums: dict[str, float] = {}
    for l in layers:
        sums[l["kind"]] = sums.get(l["kind"], 0.0) + l[key]
    order = [k for k in KIND_COLOURS if k in sums] + sorted(k for k in sums if k not in KIND_COLOURS)
    return {k: sums[k] / total for k in order if sums[k] > 0}


def _title(doc: dict) -> str:
    variant = "" if doc["variant"] in ("", "full") else f" ({doc['variant']})"
    return f"{doc['model']}{variant} on {doc['config']}"


def _stacked_kinds(ax, doc: dict) -> set[str]:
    """Horizontal bars of time, energy and on-chip energy, each split by layer kind."""
    layers = doc["layers"]
    bars = [("time", "cycles", f"{doc['time_ms']:.2f} ms"),
            ("energy", "energy_pj", _energy_text(doc["energy_uj"])),
            ("energy on chip", "energy_onchip_pj", _energy_text(doc["energy_onchip_uj"]))]
    kinds: set[str] = set()
    for row, (label, key, total) in enumerate(bars):
        left = 0.0
        for kind, share in _kind_shares(layers, key).items():
            kinds.add(kind)
            ax.barh(row, share * 100, left=left, color=kind_colour(kind), edgecolor="white", linewidth=0.5)
            if share >= 0.06:
                ax.text(left + share * 50, row, f"{100 * share:.0f} %", ha="center", va="center", fontsize=7,
                        color=_text_colour(kind_colour(kind)))
            left += share * 100
        ax.text(101, row, total, va="center", fontsize=7)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share per layer kind (%)")
    return kinds


def _largest_layers(ax, doc: dict, n: int = 10) -> set[str]:
    """The ``n`` layers with the most cycles: their shares of time (solid) and energy (hatched)."""
    layers = doc["layers"]
    cycles = sum(l["cycles"] for l in layers) or 1
    energy = sum(l["energy_pj"] for l in layers) or 1.0
    top = sorted((l for l in layers if l["cycles"]), key=lambda l: l["cycles"], reverse=True)[:n]
    for i, l in enumerate(top):
        colour = kind_colour(l["kind"])
        ax.barh(i - 0.2, 100 * l["cycles"] / cycles, height=0.4, color=colour)
        ax.barh(i + 0.2, 100 * l["energy_pj"] / energy, height=0.4, facecolor="white", edgecolor=_darker(colour),
                hatch="////", linewidth=0.6)
    ax.set_yticks(range(len(top)), [l["name"] for l in top])
    ax.invert_yaxis()
    ax.set_xlabel("share of the network (%): time (solid), energy (hatched)")
    return {l["kind"] for l in top}


def _kind_legend(fig, kinds: set[str]) -> None:
    from matplotlib.patches import Patch
    ordered = [k for k in KIND_COLOURS if k in kinds] + sorted(kinds - set(KIND_COLOURS))
    fig.legend(handles=[Patch(color=kind_colour(k), label=k) for k in ordered], loc="lower center",
               ncol=min(len(ordered), 7), frameon=False, bbox_to_anchor=(0.5, -0.02))


def time_energy(doc: dict, out: Path, formats: Iterable[str]) -> list[Path]:
    """``time_energy.<fmt>``: time and energy per layer kind and the largest layers."""
    plt = _pyplot()
    with style():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 5.0), height_ratios=(1, 2.2))
        kinds = _stacked_kinds(top, doc) | _largest_layers(bottom, doc)
        top.set_title(f"{_title(doc)}: time and energy per layer kind")
        bottom.set_title("largest layers by time")
        _kind_legend(fig, kinds)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        return save(fig, out, "time_energy", formats)


def energy_per_mac(doc: dict, out: Path, formats: Iterable[str], named: int = 5) -> list[Path]:
    """``energy_per_mac.<fmt>``: per MAC layer, energy per MAC over the highest, log axis."""
    plt = _pyplot()
    mac = sorted((l for l in doc["layers"] if l["macs"] and l["energy_per_mac_pj"]),
                 key=lambda l: l["energy_per_mac_pj"], reverse=True)
    with style():
        fig, ax = plt.subplots(figsize=(7.0, 2.8))
        if mac:
            top = mac[0]["energy_per_mac_pj"]
            ax.bar(range(len(mac)), [l["energy_per_mac_pj"] / top for l in mac],
                   color=[kind_colour(l["kind"]) for l in mac], width=0.85)
            ax.set_yscale("log")
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(-1, len(mac))
            ax.set_ylabel(f"energy per MAC / highest\n(highest = {top:.3f} pJ)")
            ax.set_xlabel(f"{len(mac)} MAC layers, in order of decreasing energy per MAC")
            ax.set_xticks([])
            ax.grid(axis="y", which="both", alpha=0.25)
            names = "\n".join(f"{i + 1}. {l['name']}  ({l['energy_per_mac_pj'] / top:.2f})"
                              for i, l in enumerate(mac[:named]))
            ax.text(0.99, 0.97, f"highest (leftmost):\n{names}", transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    multialignment="left",
                    bbox={"facecolor": "white", "edgecolor": "0.8", "boxstyle": "round,pad=0.3"})
            if len(mac) <= 40:          # numbers over the bars only where the bars are wide enough
                for i in range(min(named, len(mac))):
                    ax.annotate(str(i + 1), (i, mac[i]["energy_per_mac_pj"] / top), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=6)
            _kind_legend(fig, {l["kind"] for l in mac})
        ax.set_title(f"{_title(doc)}: energy per MAC of each MAC layer")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return save(fig, out, "energy_per_mac", formats)


def paths(points: list, title: str, out: Path, formats: Iterable[str], label_names: Iterable[str] = (),
          accuracy_from: str = "published accuracy") -> list[Path]:
    """``paths.<fmt>``: time and energy relative to the full model against accuracy.

    ``points`` are ``sim.paths.PathPoint``; those without accuracy are left out (their number
    is given in the legend), and without any accuracy nothing is drawn (returns ``[]``); Pareto
    fronts are drawn; the paths in ``label_names`` (and the Pareto-optimal ones) are labelled,
    with their model's name when there are several models.  ``accuracy_from`` says in the
    legend where the accuracies come from.
    """
    plt = _pyplot()
    metrics = sorted({metric_of(p.model) for p in points})
    known = [p for p in points if p.accuracy is not None]
    if not known:
        return []
    several = len({p.model for p in points}) > 1
    base = next((p for p in points if p.path == "full"), points[0])
    labelled = set(label_names)
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), sharey=True)
        for ax, attr, front, label in ((axes[0], "time_ms", "pareto_time", "time"),
                                       (axes[1], "energy_uj", "pareto_energy", "energy")):
            xy = [(getattr(p, attr) / getattr(base, attr), 100 * p.accuracy, p) for p in known]
            ax.scatter([x for x, _, _ in xy], [y for _, y, _ in xy], s=14, color="tab:blue", zorder=3,
                       label=f"paths with {accuracy_from} ({len(known)})")
            fr = sorted((x, y) for x, y, p in xy if getattr(p, front))
            if fr:
                ax.plot([x for x, _ in fr], [y for _, y in fr], color="tab:orange", lw=1, zorder=2,
                        label="Pareto front")
            for x, y, p in xy:
                if p.path in labelled or getattr(p, front):     # below right: clear of a rising front
                    ax.annotate(f"{p.model}:{p.path}" if several else p.path, (x, y), fontsize=6, xytext=(4, -8),
                                textcoords="offset points")
            ax.set_xlabel(f"{label} relative to {base.model}:{base.path}")
            ax.margins(x=0.06, y=0.1)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"{' / '.join(metrics)} (%)")
        handles, names = axes[0].get_legend_handles_labels()
        missing = len(points) - len(known)
        if missing:
            handles.append(plt.Line2D([], [], ls=""))
            names.append(f"not shown: {missing} simulated path{'s' if missing > 1 else ''} without accuracy data")
        fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return save(fig, out, "paths", formats)
