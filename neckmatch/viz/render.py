"""The maps of a case from a results folder on disk (``neckmatch render --results``), and the PNG's names.

:func:`render_case` reads the outputs of ``neckmatch match`` and hands them to
:func:`neckmatch.viz.maps.render_maps`; the PNG drawing itself is :mod:`neckmatch.viz.png` (its names are
re-exported here for code that imported them from this module).
"""

from __future__ import annotations

from pathlib import Path

from neckmatch.model import Case
from neckmatch.viz.png import (
    VIEWS,
    View,
    ViewImage,
    place_labels,
    project_points,
    render_scene,
    render_views,
    scene_figure,
)

__all__ = ["render_case", "View", "VIEWS", "ViewImage", "project_points", "render_views", "place_labels",
           "render_scene", "scene_figure"]


def render_case(case: Case, out_dir: str | Path, results_dir: str | Path | None = None) -> dict[str, Path]:
    """The maps of ``case`` with the outputs read from ``results_dir`` (``neckmatch render --results``).

    Reads the results folder (:func:`neckmatch.io.render_inputs.read_case_results`; ``truth_nodes.csv``
    required) and calls :func:`neckmatch.viz.maps.render_maps`; without ``results_dir`` nodes are coloured by
    level. Prefer :func:`~neckmatch.viz.maps.render_maps` with the tables in memory.
    """
    from neckmatch.io.render_inputs import read_case_results
    from neckmatch.viz.maps import render_maps

    tables, specimen = read_case_results(results_dir) if results_dir is not None else ({}, {})
    return render_maps(case, out_dir, tables, specimen)
