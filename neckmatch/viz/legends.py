"""The legends of the map PNG, and a per-process cache of their pixels.

The legends depend only on what a scene holds (levels present, node colouring, containers, marker statuses, the
specimen layer, tissues): :func:`draw_legends` records that content for its figure in :data:`LEGEND_KEYS`;
:func:`keep_legends` keeps the drawn pixels and :func:`paste_legends` puts them into a later figure with the same
legends (at its own anchor, whole pixels: the same pixels as drawing them again). :func:`legend_key` tells before a
figure is made whether its legends are kept already (then they are not even built: ~0.09 s of matplotlib artists).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from numpy.typing import NDArray

from neckmatch.viz.colors import ANATOMY_COLORS, OUTCOME_LABELS, OUTCOME_MARKERS, SPECIMEN_COLOR
from neckmatch.viz.scene import PATH_STATUS_COLORS, Scene

__all__ = ["OUTLINE_RGB", "MARKER_STYLE", "LEGEND_KEYS", "LEGEND_LAYERS", "draw_legends", "legend_key",
           "keep_legends", "paste_legends"]

OUTLINE_RGB = np.array([105, 105, 105], dtype=np.uint8)  # region outlines (and the legend swatches' edges)
MARKER_STYLE = {"positive": (11.0, 2.4), "negative": (7.0, 1.3), "unknown": (7.0, 1.3)}  # size pt, edge width


def draw_legends(fig: Figure, scene: Scene, x: float) -> None:
    """The legends of the map at ``x`` (figure fraction): level regions, reference structures, MR nodes (with the
    containers, pathology markers and registered specimen nodes the scene has)."""
    LEGEND_KEYS[fig] = legend_key(scene, (round(fig.bbox.width), round(fig.bbox.height)))
    r, g, b = (float(c) / 255.0 for c in OUTLINE_RGB)
    edge = (r, g, b)
    lv: list[Artist] = [Patch(facecolor=c, edgecolor=edge, label=f"level {k}") for k, c in scene.level_legend.items()]
    lv.append(Line2D([], [], color="#555555", linestyle=(0, (5, 3)), linewidth=1.6, label="(level): behind others"))
    fig.legend(handles=lv, loc="upper left", bbox_to_anchor=(x, 0.93), title="Level regions",
               fontsize=10, title_fontsize=11, frameon=False, handlelength=2.2, handleheight=1.4)
    nodes: list[Artist]
    if scene.node_coloring == "outcome":
        nodes = [Line2D([], [], linestyle="none", marker=OUTCOME_MARKERS[k][0], markersize=11,
                        markerfacecolor=c if OUTCOME_MARKERS[k][1] else "white", markeredgecolor=c,
                        markeredgewidth=2.2, label=OUTCOME_LABELS[k]) for k, c in scene.node_legend.items()]
        nodes.append(Line2D([], [], linestyle="none", label="triangle: metastasis, circle: benign;\n"
                            "filled: called malignant on MR"))
        title = "MR nodes by outcome"
    else:
        nodes = [Patch(facecolor=c, edgecolor=c, label=k) for k, c in scene.node_legend.items()]
        title = "MR nodes (by level)"
    if scene.of_kind("container"):
        nodes.append(Patch(facecolor="white", edgecolor="#262626", linewidth=1.5, label="pathology container"))
    statuses = {"positive", "negative"} | {p.status for p in scene.path_markers} if scene.path_markers else set()
    for st in [st for st in MARKER_STYLE if st in statuses]:
        size, width = MARKER_STYLE[st]
        nodes.append(Line2D([], [], linestyle="none", marker="o", markersize=size, markerfacecolor="none",
                            markeredgecolor=PATH_STATUS_COLORS[st], markeredgewidth=width,
                            label=f"pathology node, no MR partner ({st})"))
    if scene.specimen_markers:
        nodes.append(Line2D([], [], color=SPECIMEN_COLOR, linewidth=1.0, marker="s", markersize=5.5,
                            markerfacecolor=SPECIMEN_COLOR, markeredgecolor="white",
                            label="registered specimen node (ex vivo scan),\nline to its MR node"))
    fig.legend(handles=nodes, loc="upper left", bbox_to_anchor=(x, 0.375), title=title, fontsize=9,
               title_fontsize=11, frameon=False, handlelength=2.2, handleheight=1.4)
    tissues = sorted({str(m.attrs.get("tissue")) for m in scene.of_kind("anatomy")}, key=list(ANATOMY_COLORS).index)
    if tissues:
        names = {"bone": "bone: mandible, hyoid, clavicle", "cartilage": "cartilage: thyroid, cricoid",
                 "artery": "carotid artery", "vein": "internal jugular vein (IJV)", "muscle": "sternocleidomastoid",
                 "gland": "submandibular gland (SMG)", "airway": "larynx, trachea"}
        handles = [Patch(facecolor=ANATOMY_COLORS[t], edgecolor="#96877a", label=names[t]) for t in tissues]
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(x, 0.575), title="Reference structures",
                   fontsize=8, title_fontsize=10, frameon=False, handlelength=2.0, handleheight=0.9)


def legend_key(scene: Scene, size: tuple[int, int]) -> tuple[Any, ...]:
    """What the legends of ``scene``'s map at ``size`` (width, height pixels) show: equal keys, equal legends."""
    return (size, tuple(scene.level_legend.items()), scene.node_coloring, tuple(scene.node_legend.items()),
            bool(scene.of_kind("container")), tuple(sorted({p.status for p in scene.path_markers})),
            bool(scene.specimen_markers), tuple(sorted({str(m.attrs.get("tissue")) for m in scene.of_kind("anatomy")})))


# The legends of a figure depend only on what the scene holds (levels present, colouring, containers, marker
# statuses, specimen layer, tissues): drawn once per process for each such content, their pixels are pasted after.
LEGEND_KEYS: weakref.WeakKeyDictionary[Figure, tuple[Any, ...]] = weakref.WeakKeyDictionary()
LEGEND_LAYERS: dict[tuple[Any, ...], tuple[int, int, int, NDArray[np.uint8]]] = {}
LEGEND_CACHE_SIZE = 16


def keep_legends(fig: Figure, fore: NDArray[np.uint8], key: tuple[Any, ...], anchor: int) -> None:
    """Keep the drawn legends' pixels (RGBA, their union box) for figures with the same legends."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [leg.get_window_extent(renderer) for leg in fig.legends]
    height, width = fore.shape[:2]
    c0, c1 = max(int(min(b.x0 for b in boxes)) - 2, 0), min(int(max(b.x1 for b in boxes)) + 3, width)
    r0, r1 = max(height - int(max(b.y1 for b in boxes)) - 3, 0), min(height - int(min(b.y0 for b in boxes)) + 2, height)
    if len(LEGEND_LAYERS) >= LEGEND_CACHE_SIZE:
        LEGEND_LAYERS.pop(next(iter(LEGEND_LAYERS)))
    LEGEND_LAYERS[key] = (anchor, c0, r0, fore[r0:r1, c0:c1].copy())


def paste_legends(fore: NDArray[np.uint8], cached: tuple[int, int, int, NDArray[np.uint8]],
                   anchor: int) -> NDArray[np.uint8]:
    """``fore`` (H, W, 4) with the kept legend pixels placed at this figure's legend anchor (whole pixels)."""
    was, c0, r0, layer = cached
    out = np.array(fore)
    c0 += anchor - was
    h, w = layer.shape[:2]
    w = min(w, out.shape[1] - c0)
    region = out[r0:r0 + h, c0:c0 + w]
    region[:] = np.where(layer[:, :w, 3:4] > 0, layer[:, :w], region)
    return out
