"""Off-screen pictures of a case's scene: anterior and lateral views side by side, with legends and labels.

VTK renders each view off-screen (EGL or OSMesa where there is no display) in two opaque passes: the level
regions in flat id colours (which region is in front at each pixel), then the MR nodes and containers. The
picture is composed from both: each region in its exact legend colour with outlines, the nodes over it in their
outcome colours, so no translucent blending mixes colours. A region gets its label at the centre of the largest
circle that fits in its visible part (away from nodes); a region that others cover in a view gets a dashed
outline and its label in brackets. matplotlib lays the views out with the title, labels and legends.
"""

from __future__ import annotations

import colorsys
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import contourpy
import numpy as np
import PIL.Image
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window and mappers)
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy import ndimage
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkLogger
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkRenderWindow,
    vtkWindowToImageFilter,
)

from neckmatch.errors import RenderError
from neckmatch.io.atomic import atomic_path
from neckmatch.viz.colors import OUTCOME_MARKERS, SPECIMEN_COLOR
from neckmatch.viz.legends import (
    LEGEND_LAYERS,
    MARKER_STYLE,
    OUTLINE_RGB,
    draw_legends,
    keep_legends,
    legend_key,
    paste_legends,
)
from neckmatch.viz.scene import (
    PATH_STATUS_COLORS,
    Scene,
    SceneMesh,
    mesh_polydata,
)

__all__ = [
    "View", "VIEWS", "ViewImage", "project_points", "render_views", "place_labels", "render_scene", "scene_figure",
]


@dataclass(frozen=True)
class View:
    """A camera looking at the patient: where it sits (unit vector from the focus, RAS) and which way is up.

    ``sides`` lists the patient sides shown (a lateral view shows only its own side, so the two necks do not
    overlap). ``edges`` are the orientation letters at the image's left, right, top and bottom. With
    ``covered`` the regions that others hide in this view get a dashed outline and a label in brackets.
    """

    name: str
    position: tuple[float, float, float]
    up: tuple[float, float, float]
    sides: tuple[str, ...]
    edges: tuple[str, str, str, str]
    containers: bool = True
    covered: bool = True


# Anterior: camera in front (+A), so the patient's right is on the image left, as when facing the patient.
VIEWS: tuple[View, ...] = (
    View("Anterior view (facing the patient)", (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), ("R", "L", ""),
         ("R", "L", "S", "I"), containers=False, covered=False),
    View("Right lateral view (right neck)", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), ("R", ""), ("P", "A", "S", "I")),
    View("Left lateral view (left neck)", (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0), ("L", ""), ("A", "P", "S", "I")),
)


class ViewImage(NamedTuple):
    """One rendered view.

    image : ndarray of shape (H, W, 3), uint8, row 0 at the top: the front-most level region at each pixel in
    its exact legend colour, region outlines, and the MR nodes and containers drawn over them.
    labels : level-region name -> (col, row) pixel of its label, for the regions with room for one.
    hidden : level-region name -> ndarray of shape (H, W), bool: the silhouette of a region of the shown sides
    that other regions cover in this view (drawn as a dashed outline, its label in brackets).
    containers : container name -> (col, row) pixel of the top-left corner of its outline, where its name goes
    (views that draw containers).
    markers : pathology node id -> (col, row) pixel of each placed pathology node without an MR partner shown
    (views that draw containers). unplaced : how many of this view's side were not placed.
    """

    image: NDArray[np.uint8]
    labels: dict[str, tuple[float, float]]
    hidden: dict[str, NDArray[np.bool_]]
    containers: dict[str, tuple[float, float]] = {}
    markers: dict[str, tuple[float, float]] = {}
    unplaced: int = 0


LABEL_RADIUS_PX = 9.0  # a region needs room for a circle this large (pixels) to carry its label


def _id_color(k: int) -> tuple[float, float, float]:
    """Flat colour that encodes region number ``k`` (1..255) in 8-bit red and green, robust to rounding."""
    return ((k & 15) * 16 / 255.0, (k >> 4) * 16 / 255.0, 0.0)


def _decode_ids(rgb: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Region number per pixel of an id render (0 = background): ndarray of shape (H, W), int.

    Each channel holds 16 x (a digit 0-15), possibly off by a little after rounding: (v + 8) // 16 undoes both.
    """
    red, green = ((rgb[..., c].astype(np.int64) + 8) >> 4 for c in (0, 1))
    return red + 16 * green


def _actor(mesh: SceneMesh, region: int = 0, colors: NDArray[np.uint8] | None = None) -> vtkActor:
    """Actor of one mesh; a level region is drawn flat in the id colour of ``region`` (opaque, unlit).

    ``colors`` (V, 3) uint8 colours each vertex instead (a mesh merged from several: :func:`_side_actors`).
    """
    poly = mesh_polydata(mesh)
    mapper = vtkPolyDataMapper()
    if colors is not None:
        poly.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(colors, dtype=np.uint8), deep=True))
        mapper.SetColorModeToDirectScalars()
        mapper.SetScalarModeToUsePointData()
    else:
        mapper.ScalarVisibilityOff()
    if mesh.kind in ("node", "anatomy"):
        normals = vtkPolyDataNormals()
        normals.SetInputData(poly)
        normals.SplittingOff()
        mapper.SetInputConnection(normals.GetOutputPort())
    else:
        mapper.SetInputData(poly)
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    if mesh.kind == "level":
        prop.SetColor(*_id_color(region))
        prop.LightingOff()
        return actor
    prop.SetColor(*mesh.color[:3])
    if mesh.kind == "container":
        prop.SetLineWidth(2.0)
        prop.LightingOff()
    else:
        prop.SetSpecular(0.25 if mesh.kind == "node" else 0.05)
        prop.SetAmbient(0.0 if mesh.kind == "node" else 0.35)
    return actor


def _new_window(width: int, height: int) -> vtkRenderWindow:
    logger = vtkLogger
    old = logger.GetCurrentVerbosityCutoff()
    logger.SetStderrVerbosity(logger.VERBOSITY_OFF)  # silences "bad X server connection" before EGL fallback
    try:
        win = vtkRenderWindow()
        win.SetOffScreenRendering(1)
        win.SetSize(width, height)
        win.SetMultiSamples(0)
        ren = vtkRenderer()
        ren.SetBackground(0.0, 0.0, 0.0)
        win.AddRenderer(ren)
        win.Render()
    except Exception as exc:  # VTK raises plain errors when no context can be made
        raise RenderError(f"cannot open an off-screen OpenGL context ({exc})") from exc
    finally:
        logger.SetStderrVerbosity(old if old >= logger.VERBOSITY_OFF else logger.VERBOSITY_WARNING)
    if not win.IsCurrent() and not win.SupportsOpenGL():
        raise RenderError("no usable OpenGL context for off-screen rendering (need EGL, OSMesa or a display)")
    return win


_WINDOWS: list[vtkRenderWindow] = []  # the one off-screen window of this process, made on first use
_WINDOW_LOCK = threading.Lock()


def _release_window() -> None:
    """Close the process's window before a fork: a child inheriting a live OpenGL (EGL) context hangs in it."""
    if _WINDOW_LOCK.acquire(blocking=False):
        try:
            while _WINDOWS:
                _WINDOWS.pop().Finalize()
        finally:
            _WINDOW_LOCK.release()


os.register_at_fork(before=_release_window)


@contextmanager
def _window(width: int, height: int) -> Iterator[vtkRenderWindow]:
    """The process's off-screen render window at ``width`` x ``height``, empty, held for one caller at a time.

    Made once and reused for every view of every case (opening an OpenGL context costs more than a view); its
    actors are removed when the caller is done.
    """
    with _WINDOW_LOCK:
        if not _WINDOWS:
            _WINDOWS.append(_new_window(width, height))
        win = _WINDOWS[0]
        win.SetSize(width, height)
        try:
            yield win
        finally:
            win.GetRenderers().GetFirstRenderer().RemoveAllViewProps()


def _grab(win: vtkRenderWindow, depth: bool = False) -> NDArray[Any]:
    """The last render: RGB ndarray (H, W, 3) uint8, or with ``depth`` the z-buffer (H, W) float in [0, 1]."""
    grab = vtkWindowToImageFilter()
    grab.SetInput(win)
    if depth:
        grab.SetInputBufferTypeToZBuffer()
    else:
        grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.ShouldRerenderOff()
    grab.Update()
    img = grab.GetOutput()
    w, h, _ = img.GetDimensions()
    arr = vtk_to_numpy(img.GetPointData().GetScalars())
    return np.ascontiguousarray(arr.reshape((h, w) if depth else (h, w, 3))[::-1])


def _view_axes(view: View) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Unit vectors (RAS) pointing to the image's right and top in ``view``."""
    dop, up = -np.asarray(view.position, float), np.asarray(view.up, float)
    return np.cross(dop, up), up


def _projected_extent(scene: Scene, view: View) -> tuple[float, float]:
    """Width and height (mm) of the scene's bounding box seen in ``view``."""
    lo, hi = scene.bounds()
    corners = np.array([[(lo, hi)[i >> k & 1][k] for k in range(3)] for i in range(8)])
    right, top = _view_axes(view)
    return float(np.ptp(corners @ right)), float(np.ptp(corners @ top))


def project_points(
    points: NDArray[np.float64], view: View, bounds: NDArray[np.float64], size: tuple[int, int], px_per_mm: float
) -> NDArray[np.float64]:
    """Image pixels of RAS points in a view rendered by :func:`render_views` (camera aimed at the ``bounds`` centre).

    Parameters
    ----------
    points : ndarray of shape (N, 3), float, mm, RAS
    view : View
    bounds : ndarray of shape (2, 3), float, mm, RAS
        The scene bounds (:meth:`Scene.bounds`).
    size : (int, int)
        Width and height of the view's image, pixels.
    px_per_mm : float

    Returns
    -------
    ndarray of shape (N, 2), float
        (col, row) with row 0 at the top; pixel centres at integers (as ``imshow`` draws them).

    Examples
    --------
    >>> b = np.array([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]])
    >>> project_points(np.array([[0.0, 5.0, 2.0]]), VIEWS[1], b, (100, 80), 2.0)
    array([[59.5, 35.5]])
    """
    right, top = _view_axes(view)
    rel = np.asarray(points, dtype=np.float64).reshape(-1, 3) - bounds.mean(axis=0)
    w, h = size
    return np.column_stack([w / 2.0 + px_per_mm * (rel @ right) - 0.5, h / 2.0 - px_per_mm * (rel @ top) - 0.5])


def _aim(ren: vtkRenderer, view: View, bounds: NDArray[np.float64], half_height_mm: float) -> None:
    """Point the parallel-projection camera of ``ren`` along ``view`` at the centre of ``bounds`` (2, 3) mm."""
    centre, radius = bounds.mean(axis=0), float(np.linalg.norm(np.ptp(bounds, axis=0))) / 2.0 + 10.0
    cam = ren.GetActiveCamera()
    cam.ParallelProjectionOn()
    cam.SetFocalPoint(*centre)
    cam.SetPosition(*(centre + 1000.0 * np.asarray(view.position)))
    cam.SetViewUp(*view.up)
    cam.SetParallelScale(half_height_mm)
    cam.SetClippingRange(1000.0 - radius, 1000.0 + radius)


def _interior_point(mask: NDArray[np.bool_], box: tuple[slice, ...] | None = None) -> tuple[float, float, float]:
    """Centre (col, row) and radius (pixels) of the largest circle inside ``mask`` (H, W) bool; radius 0 if empty.

    ``box`` (rows, cols slices) is a bounding box of the mask where known (saves a pass over the whole image).
    """
    if box is None:
        objs = ndimage.find_objects(mask.astype(np.int8))
        if not objs or objs[0] is None:
            return 0.0, 0.0, 0.0
        box = objs[0]
    rows, cols = box
    # on every other pixel (4x faster; a label point needs no finer placement), the radius in full pixels
    dist = ndimage.distance_transform_edt(np.pad(mask[rows, cols][::2, ::2], 1))
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(cols.start + 2 * (c - 1)), float(rows.start + 2 * (r - 1)), 2.0 * float(dist[r, c])


def _region_labels(
    ids: NDArray[np.int64], nodes: NDArray[np.bool_], names: dict[int, str]
) -> tuple[dict[str, tuple[float, float]], list[int]]:
    """Label points of the regions visible in an id image, away from nodes where there is room; the others."""
    labels, covered = {}, []
    boxes = ndimage.find_objects(ids)  # every region's bounding box in one pass
    for k, name in names.items():
        box = boxes[k - 1] if k - 1 < len(boxes) else None
        if box is None:
            covered.append(k)
            continue
        region = ids[box] == k
        col, row, radius = _interior_point(region & ~nodes[box], (slice(0, None), slice(0, None)))
        if radius < LABEL_RADIUS_PX:
            col, row, radius = _interior_point(region, (slice(0, None), slice(0, None)))
        if radius < LABEL_RADIUS_PX:
            covered.append(k)
        else:
            labels[name] = (col + box[1].start, row + box[0].start)
    return labels, covered


def _edges(ids: NDArray[Any]) -> NDArray[np.bool_]:
    """Pixels where the value of ``ids`` (H, W) changes to a 4-neighbour: ndarray of shape (H, W), bool."""
    edge = np.zeros(ids.shape, dtype=bool)
    dx, dy = ids[:, 1:] != ids[:, :-1], ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


_ANATOMY_WEIGHT = 0.55  # share of a reference structure's shaded colour over the level regions
#: the blend of a region's channel value a with a reference structure's b, at index 256 a + b (uint8)
_ANATOMY_BLEND = np.round((1 - _ANATOMY_WEIGHT) * np.arange(256.0)[:, None]
                          + _ANATOMY_WEIGHT * np.arange(256.0)[None, :]).astype(np.uint8).ravel()


def _compose(
    ids: NDArray[np.int64], palette: NDArray[np.uint8], fore: NDArray[np.uint8], fore_mask: NDArray[np.bool_],
    anat: NDArray[np.uint8] | None = None, anat_mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.uint8]:
    """Regions in ``palette[id]`` (row 0 white) with outlines where the id changes, the reference structures
    blended over them, ``fore`` (nodes, containers) where masked with a dark outline round each.

    Whole-image lookups and masked copies (``np.take``, a blend table, ``np.copyto``) rather than boolean gathers:
    the same pixels in a third of the time."""
    img = np.take(palette, ids, axis=0)
    img[_edges(ids)] = OUTLINE_RGB
    if anat is not None and anat_mask is not None:
        mixed = np.take(_ANATOMY_BLEND, (img.astype(np.intp) << 8) | anat)
        np.copyto(img, mixed, where=anat_mask[..., None])
        img[_edges(anat_mask) & anat_mask] = (150, 135, 120)
    np.copyto(img, fore, where=fore_mask[..., None])
    img[_edges(fore_mask) & fore_mask] = (30, 30, 30)
    return img


def render_views(
    scene: Scene, views: tuple[View, ...], sizes: list[tuple[int, int]], px_per_mm: float
) -> list[ViewImage]:
    """Render each view off-screen in parallel projection at one common scale.

    Parameters
    ----------
    scene : Scene
    views : tuple of View
    sizes : list of (int, int)
        Width and height in pixels of each view's image.
    px_per_mm : float
        Image pixels per patient millimetre, the same in every view.

    Returns
    -------
    list of ViewImage
        Per view: the composed image (H, W, 3) uint8, label points and covered regions (see :class:`ViewImage`).
    """
    with _window(*sizes[0]) as win:
        return _render_views(win, scene, views, sizes, px_per_mm)


def _render_views(
    win: vtkRenderWindow, scene: Scene, views: tuple[View, ...], sizes: list[tuple[int, int]], px_per_mm: float
) -> list[ViewImage]:
    levels = scene.of_kind("level")
    ren = win.GetRenderers().GetFirstRenderer()
    ids_rgb = np.array([[round(255 * c) for c in _id_color(k)] for k in range(1, len(levels) + 1)]).reshape(-1, 3)
    # one actor per side and layer (not per mesh): a render costs per actor, uploads and draws
    regions = _side_actors(levels, ids_rgb)
    nodes = _side_actors(scene.of_kind("node"))
    anatomy = _side_actors(scene.of_kind("anatomy"))
    containers = [(m, _actor(m)) for m in scene.of_kind("container")]
    groups = [*regions, *nodes, *anatomy, *containers]
    for _, a in groups:
        ren.AddActor(a)
    palette = np.full((len(levels) + 1, 3), 255, dtype=np.uint8)
    palette[1:] = np.round(np.array([m.color[:3] for m in levels]).reshape(-1, 3) * 255)
    out = []
    for view, (w, h) in zip(views, sizes, strict=True):
        win.SetSize(w, h)
        _aim(ren, view, scene.bounds(), h / 2.0 / px_per_mm)
        shown = {k + 1: m.name for k, m in enumerate(levels) if m.side in view.sides}
        ids = _decode_ids(_render_only(win, groups, [a for side, a in regions if side in view.sides]))
        anat, anat_mask = _render_fore(win, groups, [a for side, a in anatomy if side in view.sides])
        fore, fore_mask = _render_fore(win, groups, [a for side, a in nodes if side in view.sides] + [
            a for m, a in containers if m.side in view.sides and view.containers])
        labels, covered = _region_labels(ids, fore_mask, shown)
        hidden = _hidden_masks(win, ren, view, levels, groups, {k: shown[k] for k in covered}, (w, h),
                               px_per_mm, scene.bounds()) if view.covered and covered else {}
        extras = _view_extras(scene, view, (w, h), px_per_mm)
        out.append(ViewImage(_compose(ids, palette, fore, fore_mask, anat, anat_mask), labels, hidden, *extras))
    return out


def _side_actors(meshes: list[SceneMesh], ids: NDArray[Any] | None = None) -> list[tuple[str, vtkActor]]:
    """Few actors for many ``meshes`` of one kind, the same picture as an actor per mesh: level regions (with
    ``ids``, (N, 3) 0-255, each region's id colour) one actor per patient side, their vertices in these colours
    (unlit: exact); lit meshes one actor per side and colour (a lit vertex colour would shade differently)."""
    groups: dict[tuple[str, tuple[float, ...]], list[int]] = {}
    for k, m in enumerate(meshes):
        if len(m.faces):
            groups.setdefault((m.side, () if ids is not None else tuple(m.color[:3])), []).append(k)
    out = []
    for (side, _color), mine in groups.items():
        counts = [len(meshes[k].vertices) for k in mine]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        merged = SceneMesh(side, meshes[mine[0]].kind, np.concatenate([meshes[k].vertices for k in mine]),
                           np.concatenate([meshes[k].faces + s for k, s in zip(mine, starts, strict=True)]),
                           meshes[mine[0]].color)
        colors = None if ids is None else np.repeat(np.asarray(ids, dtype=np.uint8)[mine], counts, axis=0)
        out.append((side, _actor(merged, colors=colors)))
    return out


def _view_extras(
    scene: Scene, view: View, size: tuple[int, int], px_per_mm: float
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]], int]:
    """Container name corners, placed unmatched pathology node pixels and the unplaced count of one view."""
    if not view.containers:
        return {}, {}, 0
    bounds = scene.bounds()
    corners = {}
    for m in scene.of_kind("container"):
        if m.side in view.sides:
            px = project_points(m.vertices, view, bounds, size, px_per_mm)
            corners[str(m.attrs.get("container", m.name))] = (float(px[:, 0].min()), float(px[:, 1].min()))
    mine = [p for p in scene.path_markers if p.side in view.sides]
    placed = [p for p in mine if p.position is not None]
    markers = {}
    if placed:
        positions = np.array([p.position for p in placed if p.position is not None], dtype=np.float64)
        px = project_points(positions, view, bounds, size, px_per_mm)
        markers = {p.node: (float(c), float(r)) for p, (c, r) in zip(placed, px, strict=True)}
    return corners, markers, len(mine) - len(placed)


def _hidden_masks(
    win: vtkRenderWindow, ren: vtkRenderer, view: View, levels: list[SceneMesh], groups: list[tuple[Any, vtkActor]],
    covered: dict[int, str], size: tuple[int, int], px_per_mm: float, bounds: NDArray[np.float64],
) -> dict[str, NDArray[np.bool_]]:
    """Silhouette (H, W) of each covered region (numbered from 1 in ``levels``) rendered alone, at half resolution
    (a dashed outline needs no more; a quarter of the pixels to fill), then scaled back to the view's pixels."""
    w, h = size
    w2, h2 = (w + 1) // 2, (h + 1) // 2
    win.SetSize(w2, h2)
    _aim(ren, view, bounds, h2 / px_per_mm)
    out = {}
    for k, name in covered.items():
        alone = _actor(levels[k - 1], k)
        ren.AddActor(alone)
        half = _decode_ids(_render_only(win, groups, [alone])) == k
        ren.RemoveActor(alone)
        out[name] = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[:h, :w]
    win.SetSize(w, h)
    _aim(ren, view, bounds, h / 2.0 / px_per_mm)
    return out


def _render_only(win: vtkRenderWindow, groups: list[tuple[Any, vtkActor]], shown: list[vtkActor]) -> NDArray[Any]:
    """Render only the ``shown`` actors (the others of ``groups`` hidden): the RGB image (H, W, 3)."""
    for _, a in groups:
        a.SetVisibility(False)
    for a in shown:
        a.SetVisibility(True)
    win.Render()
    for a in shown:
        a.SetVisibility(False)
    return _grab(win)


def _render_fore(
    win: vtkRenderWindow, groups: list[tuple[Any, vtkActor]], shown: list[vtkActor]
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Render only the ``shown`` actors: the image (H, W, 3) and where anything was drawn."""
    image = _render_only(win, groups, shown)
    return image, _grab(win, depth=True) < 1.0


def place_labels(
    anchors: dict[str, tuple[float, float]], dx: float = 30.0, dy: float = 15.0, tries: int = 8,
    taken: list[tuple[float, float]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Label positions (pixels) near their anchors such that no two labels' ``dx`` x ``dy`` boxes overlap.

    Greedy from the top: each label takes the first free spot among its anchor and steps of ``dy`` below and
    above it, then of ``dx`` to the sides, further out each round (up to ``tries`` rounds). ``taken`` are the
    centres of labels already placed (the same box size) that the new ones keep clear of.

    Examples
    --------
    >>> place_labels({"IIA": (100.0, 50.0), "IIB": (104.0, 52.0)})
    {'IIA': (100.0, 50.0), 'IIB': (104.0, 67.0)}
    """
    steps = [(0.0, 0.0)] + [(sx * r * dx, sy * r * dy) for r in range(1, tries + 1)
                            for sx, sy in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))]
    placed: dict[str, tuple[float, float]] = {}
    fixed = list(taken or [])
    for name, (x, y) in sorted(anchors.items(), key=lambda kv: (kv[1][1], kv[1][0])):
        spot = next(((x + ox, y + oy) for ox, oy in steps
                     if all(abs(x + ox - px) >= dx or abs(y + oy - py) >= dy
                            for px, py in [*fixed, *placed.values()])),
                    (x, y))
        placed[name] = spot
    return placed


def _darker(rgb: tuple[float, ...]) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgb[:3])
    return colorsys.hsv_to_rgb(h, max(s, 0.5), 0.45)


def _outlines(mask: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """Outlines of ``mask`` (H, W) bool as polylines of (col, row) pixels, each ndarray of shape (N, 2).

    Traced on every other pixel (the hidden silhouettes are rendered at half resolution: nothing is lost), by
    contourpy directly (a matplotlib ``contour`` set costs 20 ms a region).
    """
    half = mask[::2, ::2].astype(np.float32)
    lines = contourpy.contour_generator(z=half, line_type="Separate").lines(0.5)
    return [2.0 * np.asarray(line, dtype=np.float64) + 0.5 for line in lines]  # type: ignore[union-attr]


def _label_levels(ax, scene: Scene, shot: ViewImage) -> list[tuple[float, float]]:
    """Draw the level labels (and dashed outlines of covered regions); the label centres (pixels)."""
    by_name = {m.name: m for m in scene.of_kind("level")}
    anchors = dict(shot.labels)
    for name, mask in shot.hidden.items():
        if mask.any():
            for line in _outlines(mask):
                ax.plot(line[:, 0], line[:, 1], color=_darker(by_name[name].color), linewidth=1.6,
                        linestyle=(0, (5, 3)))
            anchors[name] = _interior_point(mask)[:2]
    outline = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    placed = place_labels(anchors)
    for name, (x, y) in placed.items():
        level = by_name[name].attrs["level"]
        text, style = (f"({level})", "italic") if name in shot.hidden else (level, "normal")
        ax.annotate(text, xy=anchors[name], xytext=(x, y), ha="center", va="center", fontsize=10, weight="bold",
                    style=style, color="#222222", path_effects=outline, annotation_clip=True,
                    arrowprops=None if (x, y) == anchors[name] else
                    dict(arrowstyle="-", color="#444444", linewidth=0.8, shrinkA=5, shrinkB=0))
    return list(placed.values())


_CONTAINER_LABEL_PX = (44.0, 13.0)  # box of a container name (fontsize 8), pixels


def _label_containers(ax, shot: ViewImage, taken: list[tuple[float, float]]) -> None:
    """Each container's name just inside the top-left corner of its outline, clear of the other labels."""
    dx, dy = _CONTAINER_LABEL_PX
    anchors = {name: (c + dx / 2 + 2, r + dy / 2 + 2) for name, (c, r) in shot.containers.items()}
    # level labels are 30 x 15 px: keep clear of both boxes
    placed = place_labels(anchors, dx=(dx + 30.0) / 2, dy=(dy + 15.0) / 2, taken=taken)
    outline = [patheffects.withStroke(linewidth=2.2, foreground="white")]
    for name, (x, y) in placed.items():
        corner = shot.containers[name]
        ax.annotate(name, xy=corner, xytext=(x, y), ha="center", va="center", fontsize=8, color="#262626",
                    path_effects=outline, annotation_clip=True,
                    arrowprops=None if (x, y) == anchors[name] else
                    dict(arrowstyle="-", color="#262626", linewidth=0.6, shrinkA=4, shrinkB=0))


def _draw_path_markers(ax, scene: Scene, shot: ViewImage) -> None:
    """Hollow markers of the placed pathology nodes without an MR partner (positives larger, on top)."""
    status = {p.node: p.status for p in scene.path_markers}
    for st in ("unknown", "negative", "positive"):
        pts = np.array([xy for node, xy in shot.markers.items() if status[node] == st]).reshape(-1, 2)
        if len(pts):
            size, width = MARKER_STYLE[st]
            ax.plot(pts[:, 0], pts[:, 1], linestyle="none", marker="o", markersize=size, markerfacecolor="none",
                    markeredgecolor=PATH_STATUS_COLORS[st], markeredgewidth=width,
                    path_effects=[patheffects.withStroke(linewidth=width + 2.0, foreground="white")])
    if shot.unplaced:
        h = shot.image.shape[0]
        # two short lines in the bottom-left corner: clear of the centred 'I' letter and the scale bar
        ax.text(8, h - 8, f"{shot.unplaced} unplaced pathology node{'s' if shot.unplaced > 1 else ''}\n"
                "without MR partner", fontsize=8, color="#262626", ha="left", va="bottom")


def _node_points(scene: Scene, view: View, shot: ViewImage, px_per_mm: float) -> tuple[list[SceneMesh], NDArray]:
    """The MR nodes of the view's sides and their centroid pixels (N, 2)."""
    nodes = [m for m in scene.of_kind("node") if m.side in view.sides]
    centres = np.array([[m.attrs[c] for c in "xyz"] if all(m.attrs.get(c) is not None for c in "xyz")
                        else m.anchor() for m in nodes], dtype=np.float64).reshape(-1, 3)
    h, w = shot.image.shape[:2]
    return nodes, project_points(centres, view, scene.bounds(), (w, h), px_per_mm)


def _draw_node_markers(ax, scene: Scene, view: View, shot: ViewImage, px_per_mm: float) -> None:
    """A small marker on each MR node giving its outcome by shape and fill as well as by colour."""
    if scene.node_coloring != "outcome":
        return
    nodes, px = _node_points(scene, view, shot, px_per_mm)
    for cat, (marker, filled) in OUTCOME_MARKERS.items():
        pts = px[[m.attrs.get("category") == cat for m in nodes]] if len(nodes) else px
        if len(pts):
            ax.plot(pts[:, 0], pts[:, 1], linestyle="none", marker=marker, markersize=5.5,
                    markerfacecolor="#111111" if filled else "white", markeredgecolor="#111111",
                    markeredgewidth=1.1 if marker != "x" else 1.6)


def _draw_specimen(ax, scene: Scene, view: View, shot: ViewImage, px_per_mm: float) -> None:
    """The registered specimen nodes of the view's sides: a small violet square each, a thin line to the paired
    MR node's centroid."""
    marks = [m for m in scene.specimen_markers if m.side in view.sides]
    if not marks:
        return
    h, w = shot.image.shape[:2]
    bounds = scene.bounds()
    px = project_points(np.array([m.position for m in marks]), view, bounds, (w, h), px_per_mm)
    for m, (c, r) in zip(marks, px, strict=True):
        if m.partner is not None:
            pc, pr = project_points(m.partner.reshape(1, 3), view, bounds, (w, h), px_per_mm)[0]
            ax.plot([c, pc], [r, pr], color=SPECIMEN_COLOR, linewidth=1.0, alpha=0.85)
    ax.plot(px[:, 0], px[:, 1], linestyle="none", marker="s", markersize=4.5, markerfacecolor=SPECIMEN_COLOR,
            markeredgecolor="white", markeredgewidth=0.8)


_ANATOMY_NAMES = {"mandible": "mandible", "hyoid": "hyoid", "thyroid_cartilage": "thyroid cart.",
                  "cricoid_cartilage": "cricoid", "airway": "trachea", "carotid": "carotid", "jugular": "IJV",
                  "SCM": "SCM", "submandibular_gland": "SMG", "clavicle": "clavicle"}
_ANATOMY_IN_FRONT = ("mandible", "hyoid", "thyroid_cartilage_R", "cricoid_cartilage", "SCM_L", "clavicle_R",
                     "carotid_R", "jugular_L")


def _label_anatomy(
    ax, scene: Scene, view: View, shot: ViewImage, px_per_mm: float, taken: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Small italic names of the reference structures at a visible point of each, clear of the level labels."""
    h, w = shot.image.shape[:2]
    bounds, anchors = scene.bounds(), {}
    for m in scene.of_kind("anatomy"):
        if m.side not in view.sides or (not view.covered and m.name not in _ANATOMY_IN_FRONT):
            continue
        px = project_points(m.vertices, view, bounds, (w, h), px_per_mm)
        centre = px.mean(axis=0)
        if m.name == "airway":
            centre = np.array([centre[0], np.percentile(px[:, 1], 85)])
        best = px[int(np.argmin(np.linalg.norm(px - centre, axis=1)))]
        anchors[m.name] = (float(best[0]), float(best[1]))
    placed = place_labels(anchors, dx=56.0, dy=12.0, taken=taken)
    style = dict(fontsize=7.5, style="italic", color="#5a3d2b", ha="center", va="center",
                 path_effects=[patheffects.withStroke(linewidth=2.2, foreground="white")])
    for name, (x, y) in placed.items():
        stem = name.removesuffix("_R").removesuffix("_L")
        ax.annotate(_ANATOMY_NAMES.get(stem, stem), xy=anchors[name], xytext=(x, y), annotation_clip=True,
                    arrowprops=None if (x, y) == anchors[name] else
                    dict(arrowstyle="-", color="#8a6d5b", linewidth=0.5, shrinkA=3, shrinkB=0), **style)
    return list(placed.values())


def _scale_bar(ax, shape: tuple[int, ...], px_per_mm: float, mm: float = 50.0) -> None:
    h, w = shape[:2]
    x0, y0 = w - 30 - mm * px_per_mm, h - 40
    ax.plot([x0, x0 + mm * px_per_mm], [y0, y0], color="#222222", linewidth=3, solid_capstyle="butt")
    ax.text(x0 + mm * px_per_mm / 2, y0 - 8, f"{mm:g} mm", ha="center", va="bottom", fontsize=9)


def _orientation(ax, view: View, shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    style = dict(fontsize=15, weight="bold", color="#1a3d7a", ha="center", va="center",
                 path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
    left, right, top, bottom = view.edges
    ax.text(18, h / 2, left, **style)
    ax.text(w - 18, h / 2, right, **style)
    ax.text(w / 2, 18, top, **style)
    ax.text(w / 2, h - 18, bottom, **style)


def _layout(scene: Scene, width: int, height: int) -> tuple[list[tuple[int, int]], float]:
    """Panel sizes (pixels) for the views, proportional to what each shows, and the common pixels per mm."""
    ext = [_projected_extent(scene, v) for v in VIEWS]
    margin = 1.12
    avail_w, avail_h = 0.80 * width - 10 * len(VIEWS), 0.84 * height
    px_per_mm = min(avail_w / sum(e[0] * margin for e in ext), avail_h / max(e[1] * margin for e in ext))
    panel_h = int(avail_h)
    return [(max(int(e[0] * margin * px_per_mm), 200), panel_h) for e in ext], px_per_mm


def render_scene(scene: Scene, path: str | Path, size: tuple[int, int] = (2000, 1100)) -> Path:
    """Write the PNG of ``scene``: the views side by side, title, level labels, orientation letters, legends.

    Parameters
    ----------
    scene : Scene
    path : str or Path
        Output ``.png`` (written atomically).
    size : (int, int)
        Image width and height in pixels (at least 1600 x 1000 for reading).

    Raises
    ------
    RenderError
        When no off-screen OpenGL context can be made.
    """
    key = legend_key(scene, size)
    fig, panels, anchor = _scene_figure(scene, size, legends=key not in LEGEND_LAYERS)
    image = _flatten(fig, panels, size, key, anchor)
    with atomic_path(path) as tmp:
        PIL.Image.fromarray(image).save(tmp, format="png", compress_level=1)
    return Path(path)


def _flatten(
    fig: Figure, panels: list[tuple[Any, ViewImage]], size: tuple[int, int], key: tuple[Any, ...], anchor: int
) -> NDArray[np.uint8]:
    """The figure as RGB pixels (H, W, 3): the view images pasted as they are, the drawing blended over them.

    The same picture as ``fig.savefig``, without matplotlib resampling the view images on the way. The legends
    (:func:`neckmatch.viz.legends.legend_key` ``key``, left edge at pixel ``anchor``) are pasted where kept before,
    else drawn and kept.
    """
    width, height = size
    for im in list(fig.images):
        im.remove()
    fig.patch.set_alpha(0.0)
    cached = LEGEND_LAYERS.get(key)
    if cached is not None:  # drawn before: paste the pixels instead of drawing the legends again
        for leg in list(fig.legends):
            leg.remove()
    fig.canvas.draw()
    fore = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    if cached is not None:
        fore = paste_legends(fore, cached, anchor)
    elif fig.legends:
        keep_legends(fig, fore, key, anchor)
    base = np.full((height, width, 3), 255, dtype=np.uint8)
    for ax, shot in panels:
        h, w = shot.image.shape[:2]
        x0, y0 = (round(v) for v in ax.get_position().p0 * (width, height))
        base[height - y0 - h:height - y0, x0:x0 + w] = shot.image
    drawn = fore[..., 3] > 0  # text, lines and legends: a small part of the picture
    alpha = fore[drawn, 3:4].astype(np.float32) / 255.0
    base[drawn] = np.round(base[drawn] * (1.0 - alpha) + fore[drawn, :3] * alpha).astype(np.uint8)
    return base


_TITLE_CHARS = 118  # a longer title is broken into lines at its "; " parts


def _wrap_title(title: str) -> str:
    """``title`` with a line break before each ``; `` part that would run past :data:`_TITLE_CHARS`."""
    lines = [""]
    for part in title.split("; "):
        if lines[-1] and len(lines[-1]) + 2 + len(part) > _TITLE_CHARS:
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]}; {part}" if lines[-1] else part
    return "\n".join(lines)


def scene_figure(scene: Scene, size: tuple[int, int] = (2000, 1100)) -> tuple[Figure, list[tuple[Any, ViewImage]]]:
    """The figure of :func:`render_scene` (``size`` pixels at 100 dpi) and each view's axes and rendered image.

    A point (col, row) of a :class:`ViewImage` is at ``ax.transData.transform((col, row))`` in the figure
    (display pixels, origin bottom left).
    """
    fig, panels, _ = _scene_figure(scene, size, legends=True)
    return fig, panels


def _scene_figure(
    scene: Scene, size: tuple[int, int], legends: bool
) -> tuple[Figure, list[tuple[Any, ViewImage]], int]:
    """:func:`scene_figure`, its legends only with ``legends``; also the legends' left edge (pixels)."""
    width, height = size
    sizes, px_per_mm = _layout(scene, width, height)
    shots = render_views(scene, VIEWS, sizes, px_per_mm)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    if len(scene.title) <= _TITLE_CHARS:
        fig.suptitle(scene.title, fontsize=17, weight="bold", y=0.975)
    else:
        fig.suptitle(_wrap_title(scene.title), fontsize=15, weight="bold", y=0.99, va="top")
    left, panels = 8, []
    for view, shot in zip(VIEWS, shots, strict=True):
        h, w = shot.image.shape[:2]
        bottom = round(0.02 * height)
        ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
        panels.append((ax, shot))
        # the pixels as they are (no resampling, as imshow would do), under axes that map (col, row) onto them
        fig.figimage(shot.image, xo=left, yo=bottom, origin="upper", zorder=-1)
        ax.set_facecolor("none")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        left += w + 10
        ax.set_title(view.name, fontsize=13)
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_color("#bbbbbb")
        taken = _label_levels(ax, scene, shot)
        _draw_node_markers(ax, scene, view, shot, px_per_mm)
        taken += _label_anatomy(ax, scene, view, shot, px_per_mm, taken)
        _label_containers(ax, shot, taken)
        _draw_path_markers(ax, scene, shot)
        _draw_specimen(ax, scene, view, shot, px_per_mm)
        _orientation(ax, view, shot.image.shape)
        _scale_bar(ax, shot.image.shape, px_per_mm)
    if legends:
        draw_legends(fig, scene, (left + 10) / width)
    return fig, panels, left + 10
