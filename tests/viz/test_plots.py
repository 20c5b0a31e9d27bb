"""Statistics plots from hand-made tables: files written (PNG and SVG), bad tables rejected."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.viz.plots import _forest_rows, cohort_figures, level_sort_key, plot_forest, plot_node_sizes, plot_roc


@pytest.fixture()
def curves() -> pd.DataFrame:
    rows = [("A", 0, 0), ("A", 0, 0.5), ("A", 0.25, 0.75), ("A", 0.5, 1.0), ("A", 1, 1),
            ("B", 0, 0), ("B", 0.5, 0.5), ("B", 1, 1)]
    return pd.DataFrame(rows, columns=["reader", "fpr", "tpr"])


@pytest.fixture()
def summary() -> pd.DataFrame:
    return pd.DataFrame({"reader": ["A", "B"], "auc": [0.84, 0.5], "auc_low_boot": [0.7, 0.3],
                         "auc_high_boot": [0.95, 0.7], "n_positive": [4, 4]})


@pytest.fixture()
def accuracy() -> pd.DataFrame:
    rows = []
    for level, side, tp, fp, fn, tn in [("II", "R", 4, 1, 1, 10), ("III+IV", "L", 2, 0, 2, 12), ("V", "R", 0, 1, 0, 9)]:
        sens = tp / (tp + fn) if tp + fn else np.nan
        spec = tn / (tn + fp)
        rows.append({"analysis": "main", "unit": "level", "level": level, "side": side, "tp": tp, "fp": fp,
                     "fn": fn, "tn": tn, "sensitivity": sens, "sensitivity_low": sens - 0.2 if sens == sens else np.nan,
                     "sensitivity_high": min(sens + 0.1, 1) if sens == sens else np.nan, "specificity": spec,
                     "specificity_low": spec - 0.1, "specificity_high": min(spec + 0.05, 1.0)})
    return pd.DataFrame(rows)


def test_roc_png_and_svg(curves, summary, tmp_path):
    png, svg = plot_roc(curves, tmp_path / "roc", summary)
    assert png.suffix == ".png" and svg.read_text().lstrip().startswith("<?xml")
    img = mpimg.imread(png)
    assert img.shape[0] > 500 and img.shape[1] > 500
    assert "AUC 0.84 (0.70-0.95)" in svg.read_text()


def test_forest_has_one_row_per_level_and_side(accuracy, tmp_path):
    _png, svg = plot_forest(accuracy, tmp_path / "forest")
    text = svg.read_text()
    for label in ("II R", "III+IV L", "V R", "4/5", "10/11", "0/0"):
        assert label in text, label


def test_forest_without_rows_of_that_unit(accuracy, tmp_path):
    with pytest.raises(InputError, match="no rows with unit 'patient'"):
        plot_forest(accuracy, tmp_path / "forest", unit="patient")


def test_forest_needs_interval_columns(accuracy, tmp_path):
    with pytest.raises(InputError, match="missing sensitivity_low"):
        plot_forest(accuracy.drop(columns=["sensitivity_low"]), tmp_path / "forest")


def test_node_sizes_counts_each_outcome(tmp_path):
    nodes = pd.DataFrame({"outcome": ["TP", "TP", "FN", "TN", "TN", "TN", np.nan],
                          "short_axis_mm": [12.0, 9.5, 4.0, 5.0, 6.0, 4.5, 7.0]})
    _png, svg = plot_node_sizes(nodes, tmp_path / "sizes")
    text = svg.read_text()
    assert "(n=2)" in text and "(n=1)" in text and "(n=3)" in text and "(n=0)" in text


def test_cohort_figures_from_a_stats_folder(curves, summary, accuracy, tmp_path):
    stats = tmp_path / "stats"
    stats.mkdir()
    curves.to_csv(stats / "roc_curve.csv", index=False)
    summary.to_csv(stats / "roc.csv", index=False)
    accuracy.to_csv(stats / "accuracy.csv", index=False)
    nodes = pd.DataFrame({"outcome": ["TP", "TN"], "short_axis_mm": [11.0, 5.0]})
    written = cohort_figures({"nodes": nodes}, stats, tmp_path / "figures")
    assert sorted(p.name for p in written) == ["forest_levels.png", "forest_levels.svg", "node_sizes.png",
                                               "node_sizes.svg", "roc.png", "roc.svg"]
    assert all(p.stat().st_size > 1000 for p in written)


def _pooled(accuracy: pd.DataFrame) -> pd.DataFrame:
    row = accuracy.iloc[0].to_dict() | {"level": "all", "side": "both", "tp": 6, "fn": 3, "tn": 31, "fp": 2}
    return pd.concat([accuracy, pd.DataFrame([row])], ignore_index=True)


def test_forest_labels_levels_and_the_pooled_row_in_words(accuracy, tmp_path):
    _png, svg = plot_forest(_pooled(accuracy).assign(unit="node"), tmp_path / "forest", unit="node")
    text = svg.read_text()
    assert "level (side)" in text and "node (side)" not in text  # the rows are levels, whatever the unit
    assert "all levels, both sides" in text and "all both" not in text
    assert "6/9" in text and "31/33" in text


def test_forest_rows_in_anatomical_order_lower_case_sublevels_too(accuracy):
    acc = _pooled(accuracy)
    acc.loc[len(acc)] = acc.iloc[0].to_dict() | {"level": "IIb", "side": "R"}
    acc.loc[len(acc)] = acc.iloc[0].to_dict() | {"level": "IIa", "side": "L"}
    acc.loc[len(acc)] = acc.iloc[0].to_dict() | {"level": "IIA", "side": "R"}
    labels = _forest_rows(acc, "level")["_label"].tolist()[::-1]  # drawn bottom-up: read top-down
    assert labels == ["II R", "IIa L", "IIA R", "IIb R", "III+IV L", "V R", "all levels, both sides"]
    assert sorted(["VB", "IIb", "I", "SC", "IIA", "x"], key=level_sort_key) == ["I", "IIA", "IIb", "VB", "SC", "x"]


def test_roc_legend_says_ci_na_without_an_interval(curves, summary, tmp_path):
    summary = summary.assign(auc_low_boot=[0.7, np.nan], auc_high_boot=[0.95, np.nan])
    _png, svg = plot_roc(curves, tmp_path / "roc", summary)
    text = svg.read_text()
    assert "A: AUC 0.84 (0.70-0.95)" in text and "B: AUC 0.50 (CI n/a)" in text


def test_roc_band_only_for_the_consensus(curves, summary, tmp_path):
    # two readers without a consensus: no band (bands of several readers overlap into a mass)
    _png, svg = plot_roc(curves, tmp_path / "roc", summary)
    assert svg.read_text().count('PolyCollection_') == 0
    cons_curve = curves[curves["reader"] == "A"].assign(reader="consensus")
    cons = summary.iloc[[0]].assign(reader="consensus")
    _png, svg = plot_roc(pd.concat([curves, cons_curve]), tmp_path / "roc2", pd.concat([summary, cons]))
    text = svg.read_text()
    assert text.count('PolyCollection_') == 1 and "pointwise 95 % CI of consensus" in text


def test_saved_svg_is_reproducible(tmp_path) -> None:
    """Two saves of the same figure write the same SVG bytes (no date, fixed element ids)."""
    from neckmatch.viz.plots import _figure, save_figure

    fig = _figure(3, 2)
    fig.add_subplot().plot([0, 1], [1, 0], marker="o")
    a = save_figure(fig, tmp_path / "a")[1].read_bytes()
    b = save_figure(fig, tmp_path / "b")[1].read_bytes()
    assert a == b and b"<dc:date>" not in a
