"""Learning-curve figure: every reader's LC-CUSUM path against their reading number, with its limit h, and the
moving accuracy below (matplotlib, Agg; PNG and SVG)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neckmatch.viz.plots import save_figure

__all__ = ["learning_curve_figure"]


def learning_curve_figure(curves: Mapping[str, pd.DataFrame], stem: str | Path) -> list[Path]:
    """One figure for all readers from :func:`neckmatch.stats.learning.learning_curve` tables.

    Top: LC-CUSUM ``cusum`` against the reading number (``index``), the limit ``limit`` dashed, the signal (first
    crossing) marked. Bottom: the moving accuracy. Returns the PNG and SVG paths.
    """
    fig = Figure(figsize=(7.5, 6.0))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for i, (reader, curve) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        top.plot(curve["index"], curve["cusum"], color=colour, lw=1.2, label=str(reader))
        top.axhline(float(curve["limit"].iloc[0]), color=colour, ls="--", lw=0.8)
        hit = curve[curve["signal"]]
        if not hit.empty:
            top.plot(hit["index"], hit["cusum"], "o", color=colour, ms=6)
        bottom.plot(curve["index"], curve["moving_accuracy"], color=colour, lw=1.0)
    top.set_ylabel("LC-CUSUM")
    top.set_title("Learning curves (dashed: limit h; dot: competence signalled)", fontsize=10)
    top.legend(fontsize=8, frameon=False, loc="upper left")
    bottom.set_ylabel("moving accuracy")
    bottom.set_xlabel("reading number (matched nodes, in reading order)")
    bottom.set_ylim(0, 1.02)
    return save_figure(fig, stem)
