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

    Reads the results folder (:func:`neckmatch.io.results.read_results`) and calls
    :func:`neckmatch.viz.maps.render_maps`; without ``results_dir`` nodes are coloured by level. Prefer
    :func:`~neckmatch.viz.maps.render_maps` with a :class:`~neckmatch.io.results.CaseResult` in memory.
    """
    from neckmatch.io.results import read_results
    from neckmatch.viz.maps import render_maps

    if results_dir is None:
        return render_maps(case, out_dir)
    result = read_results(results_dir)
    return render_maps(case, out_dir, result.tables, result.specimen)
