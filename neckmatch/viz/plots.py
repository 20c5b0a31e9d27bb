"""Statistics plots (matplotlib, Agg; PNG and SVG): ROC curves with bands, a per-level forest plot, node sizes.

Every function takes plain DataFrames (the statistics tables ``roc.csv``, ``roc_curve.csv``, ``accuracy.csv`` and
the truth table ``truth_nodes.csv``), so a hand-made table is enough to test it, and returns the written paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from statsmodels.stats.proportion import proportion_confint

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_path
from neckmatch.model import SurgicalLevel
from neckmatch.viz.colors import OUTCOME_COLORS

__all__ = ["save_figure", "plot_roc", "plot_forest", "plot_node_sizes", "cohort_figures", "level_sort_key"]

_LEVEL_ORDER = [s.value for s in SurgicalLevel] + ["RP", "SC"]


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (150 dpi) and ``<stem>.svg``, atomically; return both paths.

    The SVG is reproducible: no date in its metadata, element ids from a fixed salt, so a rerun on the same
    tables writes the same bytes.
    """
    out = []
    for ext in ("png", "svg"):
        path = Path(f"{stem}.{ext}")
        with atomic_path(path) as tmp, rc_context({"svg.hashsalt": "neckmatch"}):
            meta = {"Date": None} if ext == "svg" else None
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        out.append(path)
    return out


def _need(frame: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InputError(what, "columns", f"missing {', '.join(missing)} (got {', '.join(map(str, frame.columns))})")


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), facecolor="white")
    FigureCanvasAgg(fig)
    return fig


_STYLES = ("-", "--", ":", "-.")


def plot_roc(curves: pd.DataFrame, stem: str | Path, summary: pd.DataFrame | None = None) -> list[Path]:
    """ROC curve per reader, PNG and SVG; a light pointwise 95 % band for one curve only (the ``consensus``
    reader, else the only reader) so that the curves stay distinct.

    Parameters
    ----------
    curves : DataFrame
        ``reader, fpr, tpr`` (``roc_curve.csv``); optional ``tpr_low, tpr_high`` give the band. Without them the
        band is the Wilson interval of the sensitivity at each point, with ``n_positive`` from ``summary``
        (not adjusted for clustering).
    stem : str or Path
        Output path without suffix.
    summary : DataFrame, optional
        ``reader, auc, auc_low_boot, auc_high_boot, n_positive`` (``roc.csv``) for the legend and band; a reader
        whose bootstrap interval is NaN reads "CI n/a" in the legend.
    """
    _need(curves, ["reader", "fpr", "tpr"], "roc_curve")
    info = summary.set_index("reader") if summary is not None and "reader" in summary.columns else pd.DataFrame()
    readers = sorted(curves["reader"].unique(), key=lambda r: (str(r) == "consensus", str(r)))
    banded = "consensus" if "consensus" in readers else (readers[0] if len(readers) == 1 else None)
    fig = _figure(6.0, 6.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
    for i, reader in enumerate(readers):
        grp = curves[curves["reader"] == reader].sort_values(["fpr", "tpr"])
        cons = str(reader) == "consensus"
        color = "#1d2330" if cons else f"C{i % 10}"
        row = info.loc[reader] if reader in info.index else None
        ax.step(grp["fpr"], grp["tpr"], where="post", color=color, linewidth=2.6 if cons else 1.6,
                linestyle="-" if cons else _STYLES[i % len(_STYLES)], label=_roc_label(reader, row),
                zorder=2 if cons else 3)
        if reader != banded:
            continue
        if {"tpr_low", "tpr_high"} <= set(grp.columns):
            lo, hi = grp["tpr_low"], grp["tpr_high"]
        elif row is not None and pd.notna(row.get("n_positive")) and int(row["n_positive"]) > 0:
            n = int(row["n_positive"])
            lo, hi = proportion_confint(np.round(grp["tpr"] * n), n, alpha=0.05, method="wilson")
        else:
            continue
        ax.fill_between(grp["fpr"], lo, hi, step="post", color=color, alpha=0.08, linewidth=0, zorder=1)
    title = "ROC by reader" + (f"\n(band: pointwise 95 % CI of {banded})" if banded is not None else "")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8, title="AUC (95 % CI, patient bootstrap)", title_fontsize=8)
    return save_figure(fig, stem)


def _roc_label(reader: object, row: pd.Series | None) -> str:
    """Legend text: ``R1: AUC 0.79 (0.73-0.90)``, ``R3: AUC 0.97 (CI n/a)`` without an interval."""
    label = str(reader)
    if row is None or pd.isna(row.get("auc")):
        return label
    label += f": AUC {row['auc']:.2f}"
    if pd.notna(row.get("auc_low_boot")) and pd.notna(row.get("auc_high_boot")):
        return label + f" ({row['auc_low_boot']:.2f}-{row['auc_high_boot']:.2f})"
    return label + " (CI n/a)"


def level_sort_key(level: object) -> tuple[int, str]:
    """Sort key of a level text in anatomical order (I, IA ... VII, RP, SC, then anything else); lyDATA's
    lower-case sublevels sort as upper-case (``IIa`` as ``IIA``); ``III+IV`` sorts with ``III``.

    Examples
    --------
    >>> sorted(["III", "IIb", "all", "IIA", "I", "III+IV"], key=level_sort_key)
    ['I', 'IIA', 'IIb', 'III', 'III+IV', 'all']
    """
    text = "" if pd.isna(level) else str(level)
    first = text.split("+")[0].upper()
    return (_LEVEL_ORDER.index(first) if first in _LEVEL_ORDER else len(_LEVEL_ORDER), text.upper())


def _pooled_label(level: object, side: object) -> str:
    """Row label of a forest plot: ``IIA R``; pooled rows in words (``all levels, both sides``)."""
    lv = "" if pd.isna(level) else str(level)
    sd = "" if pd.isna(side) else str(side)
    if lv in ("", "all", "any"):
        lv = "all levels" if lv != "any" else "any level"
        return f"{lv}, both sides" if sd in ("", "both") else f"{lv}, side {sd}"
    return f"{lv} {'' if sd == 'both' else sd}".strip()


def _forest_rows(accuracy: pd.DataFrame, unit: str) -> pd.DataFrame:
    rows = accuracy[accuracy["unit"] == unit]
    if "analysis" in rows.columns and rows["analysis"].notna().any():
        main = "main" if (rows["analysis"] == "main").any() else rows["analysis"].dropna().iloc[0]
        rows = rows[rows["analysis"].isna() | (rows["analysis"] == main)]
    rows = rows.assign(_k=[level_sort_key(lv) for lv in rows["level"]])
    rows = rows.assign(_side=rows["side"].fillna("").astype(str) if "side" in rows.columns else "")
    rows = rows.sort_values(["_k", "_side"], ascending=[False, False])
    labels = [_pooled_label(lv, sd) for lv, sd in zip(rows["level"], rows["_side"], strict=True)]
    return rows.assign(_label=labels)


def plot_forest(accuracy: pd.DataFrame, stem: str | Path, unit: str = "level") -> list[Path]:
    """Forest plot of sensitivity and specificity with their intervals, one row per level (and side).

    Parameters
    ----------
    accuracy : DataFrame
        ``accuracy.csv`` rows: ``unit, level, side, tp, fp, fn, tn, sensitivity, sensitivity_low,
        sensitivity_high, specificity, specificity_low, specificity_high`` (the ``main`` analysis is used).
    stem : str or Path
    unit : str
        Which unit's rows to show (``level`` or ``node``).
    """
    cols = ["unit", "level", "tp", "fp", "fn", "tn"]
    _need(accuracy, cols + [f"{m}{s}" for m in ("sensitivity", "specificity") for s in ("", "_low", "_high")],
          "accuracy")
    rows = _forest_rows(accuracy, unit)
    if rows.empty:
        raise InputError("accuracy", "unit", f"no rows with unit '{unit}' (units: {sorted(accuracy['unit'].unique())})")
    fig = _figure(9.0, 1.2 + 0.32 * len(rows))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))
    for ax, metric, denom in zip(axes, ("sensitivity", "specificity"), (("tp", "fn"), ("tn", "fp")), strict=True):
        est, lo, hi = (rows[f"{metric}{s}"].to_numpy(float) for s in ("", "_low", "_high"))
        ax.errorbar(est, y, xerr=[np.clip(est - lo, 0, None), np.clip(hi - est, 0, None)], fmt="s",
                    color="#1f3d7a", ecolor="#6b7fa8", capsize=3, markersize=5)
        num = rows[denom[0]].to_numpy(int)
        n = num + rows[denom[1]].to_numpy(int)
        for yi, (a, b) in enumerate(zip(num, n, strict=True)):
            ax.annotate(f"{a}/{b}", (1.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.set(xlim=(0, 1), xlabel=metric, title=f"{metric} (95 % CI)")
        ax.grid(axis="x", color="#e5e5e5")
    axes[0].set_yticks(y, rows["_label"])
    pooled = rows["level"].isna().to_numpy() | rows["level"].astype(str).isin(["", "all", "any"]).to_numpy()
    for tick, is_pooled in zip(axes[0].get_yticklabels(), pooled, strict=True):
        tick.set_fontweight("bold" if is_pooled else "normal")
    for ax in axes:
        for yp in np.flatnonzero(pooled):
            ax.axhline(yp + 0.5, color="#9aa5b8", linewidth=0.8)
    axes[0].set_ylabel("level (side)")
    what = {"node": "Node-to-node", "level": "Level-to-level"}.get(unit, unit)
    fig.suptitle(f"{what} accuracy by level and side (Wilson 95 % CI)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_node_sizes(nodes: pd.DataFrame, stem: str | Path, size: str = "short_axis_mm", seed: int = 0) -> list[Path]:
    """MR node size by outcome (TP, FN, FP, TN): box plot with every node as a jittered point.

    Parameters
    ----------
    nodes : DataFrame
        ``truth_nodes.csv`` rows: ``outcome`` and ``size`` (mm); rows without an outcome are left out.
    stem : str or Path
    size : str
        The size column, mm.
    seed : int
        Seed of the horizontal jitter.
    """
    _need(nodes, ["outcome", size], "truth_nodes")
    order = ["TP", "FN", "FP", "TN"]
    groups = [pd.to_numeric(nodes.loc[nodes["outcome"] == o, size], errors="coerce").dropna().to_numpy()
              for o in order]
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    ax.boxplot([g if g.size else np.array([np.nan]) for g in groups], showfliers=False, widths=0.5,
               medianprops={"color": "#222222"})
    rng = np.random.default_rng(seed)
    for i, (o, g) in enumerate(zip(order, groups, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, g.size), g, s=14, color=OUTCOME_COLORS[o], alpha=0.8, zorder=3)
    ax.set_xticks(range(1, 5), [f"{o}\n(n={g.size})" for o, g in zip(order, groups, strict=True)])
    ax.set(ylabel=f"{size.replace('_mm', '').replace('_', ' ')} (mm)", title="MR node size by outcome")
    ax.grid(axis="y", color="#e5e5e5")
    return save_figure(fig, stem)


def cohort_figures(tables: Mapping[str, pd.DataFrame], stats_dir: str | Path, fig_dir: str | Path) -> list[Path]:
    """The cohort's figures from its truth tables and statistics folder: whichever inputs exist.

    ``roc_curve.csv`` (+ ``roc.csv``) -> ``roc``; ``accuracy.csv`` -> ``forest_levels`` (and ``forest_nodes``);
    ``tables["nodes"]`` -> ``node_sizes``. Returns the written PNG and SVG paths.
    """
    stats, figs = Path(stats_dir), Path(fig_dir)
    out: list[Path] = []
    curves_path = stats / "roc_curve.csv"
    if curves_path.is_file():
        curves = pd.read_csv(curves_path)
        summary = pd.read_csv(stats / "roc.csv") if (stats / "roc.csv").is_file() else None
        if not curves.empty:
            out += plot_roc(curves, figs / "roc", summary)
    if (stats / "accuracy.csv").is_file():
        acc = pd.read_csv(stats / "accuracy.csv", dtype={"level": str, "side": str})
        for unit in ("level", "node"):
            if (acc.get("unit") == unit).any():
                out += plot_forest(acc, figs / f"forest_{unit}s", unit=unit)
    nodes = tables.get("nodes")
    if nodes is not None and not nodes.empty and {"outcome", "short_axis_mm"} <= set(nodes.columns):
        out += plot_node_sizes(nodes, figs / "node_sizes")
    return out
