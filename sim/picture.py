"""The picture of a network's output that ``make run`` writes (``output.png``).

* segmentation: the input beside the class map coloured over it, with a legend of the
  most frequent classes and their share of the pixels;
* classification: the input beside the five classes with the highest logits and their
  softmax probabilities;
* detection: the input with the boxes of the queries with the highest scores, each
  labelled with its class and score.

Colours go by rank in the picture (matplotlib's ``tab10`` for the ten most frequent classes or
the five best queries, grey for the rest), so the classes a person looks at never share a hue.
Drawn with ``sim.plots``' sizes and fonts, without time stamps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plots

__all__ = ["rank_colours", "draw"]

#: Opacity of the class colours over the input.
OVERLAY_ALPHA = 0.55
#: The colour of the classes outside the legend (tab10 has a grey of its own).
OTHER_COLOUR = (0.1, 0.1, 0.1)


def rank_colours(n: int) -> np.ndarray:
    """``[n, 3]`` RGB in [0, 1]: the colours of ranks ``0 .. n-1`` (``tab10``, then grey)."""
    from matplotlib import colormaps
    tab = colormaps["tab10"].colors
    return np.array([tab[i] if i < len(tab) else OTHER_COLOUR for i in range(n)])


def draw(path: Path, task: str, rgb: np.ndarray, arrays: dict, summary: dict, names: list[str], title: str) -> Path:
    """Draw the picture of ``task``'s output into ``path`` (a ``.png``); ``rgb`` is the model's
    input (uint8), ``arrays`` and ``summary`` what ``sim.infer.output_files`` gives."""
    drawers = {"segmentation": _segmentation, "classification": _classification, "detection": _detection}
    plt = plots._pyplot()
    with plots.style():
        fig = drawers.get(task, _input_only)(plt, rgb, arrays, summary, names)
        fig.suptitle(title, fontsize=8)
        plots.save(fig, Path(path).parent, Path(path).stem, ("png",))
    return path


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def _segmentation(plt, rgb, arrays, summary, names):
    classes = arrays["output.npy"]
    top = summary["top_classes"]
    colour_of = np.tile(np.array(OTHER_COLOUR), (len(names), 1))
    colour_of[[c["class"] for c in top]] = rank_colours(len(top))
    overlay = (1 - OVERLAY_ALPHA) * rgb / 255 + OVERLAY_ALPHA * colour_of[classes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
    _show(left, rgb, "input")
    _show(right, overlay, "class map")
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=colour_of[c["class"]], label=f"{c['name']} ({c['class']}): {c['share']:.1%}")
               for c in top]
    rest = 1 - sum(c["share"] for c in top)
    if rest > 0:
        handles.append(Patch(facecolor=OTHER_COLOUR, label=f"other classes: {rest:.1%}"))
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False,
               title="most frequent classes (share of pixels)")
    fig.subplots_adjust(bottom=0.25)
    return fig


def _classification(plt, rgb, arrays, summary, names):
    top = summary["top5"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3), gridspec_kw={"width_ratios": [1, 1.6]})
    _show(left, rgb, "input")
    labels = [f"{t['name']} ({t['class']})" for t in top][::-1]
    probs = [t["probability"] for t in top][::-1]
    right.barh(labels, probs, color=rank_colours(len(top))[::-1])
    for y, p in enumerate(probs):
        right.text(p, y, f" {p:.3f}", va="center")
    right.set_xlim(0, max(1e-9, max(probs)) * 1.25)
    right.set_xlabel("softmax probability of the logits")
    right.set_title("top 5 classes")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _detection(plt, rgb, arrays, summary, names):
    from matplotlib.patches import Rectangle
    h, w = rgb.shape[:2]
    top = summary["top_queries"]
    fig, ax = plt.subplots(figsize=(5, 5 * h / w + 1))
    _show(ax, rgb, "")
    handles = []
    for q, colour in zip(top, rank_colours(len(top))):
        cx, cy, bw, bh = q["box_cxcywh"]
        # a box in normalised image coordinates; pixel i spans i - 0.5 .. i + 0.5 in imshow's
        handles.append(ax.add_patch(Rectangle(((cx - bw / 2) * w - 0.5, (cy - bh / 2) * h - 0.5), bw * w, bh * h,
                                              fill=False, edgecolor=colour, linewidth=1.5,
                                              label=f"{q['name']} ({q['class']}) {q['score']:.3f}, query {q['query']}")))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, title=f"the {len(top)} queries with the highest scores: class (index), score")
    fig.tight_layout(rect=(0, 0.12, 1, 0.97))
    return fig


def _input_only(plt, rgb, arrays, summary, names):
    fig, ax = plt.subplots(figsize=(4, 4))
    _show(ax, rgb, "input (outputs in output.npz)")
    return fig
