"""The synthetic MRI: an oriented label-map grid, rasterised node ellipsoids (only visible nodes segmented,
touching nodes sometimes merged, label values shuffled) and the readers' USPIO scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from neckmatch.model import LabelMap
from neckmatch.synth.anatomy import rotation_matrix
from neckmatch.synth.nodes import TrueNodes, support_radius
from neckmatch.synth.params import SynthParams

__all__ = ["MRI", "draw_grid", "segment_nodes", "rasterise", "draw_reads", "synth_image"]

_MARGIN_MM = 8.0


@dataclass(frozen=True)
class MRI:
    """One synthetic MR study.

    label_map : LabelMap (values 1..M, 0 background). mr_label : ndarray (N,), int; the label of each true node,
    0 where not segmented (shared where merged). reads : DataFrame ``node, reader, score, malignant``.
    """

    label_map: LabelMap
    mr_label: NDArray[np.int64]
    reads: pd.DataFrame
    image: NDArray[np.int16] | None = None  # the MR image on the label map's grid (params.mri_image), display only


def draw_grid(rng: np.random.Generator, params: SynthParams, nodes: TrueNodes) -> tuple[NDArray, tuple[int, ...]]:
    """A voxel -> RAS affine (4, 4) and shape covering every node plus a margin: random axis permutation and
    flips, a small oblique rotation, voxel size 0.6-1.4 mm (sometimes anisotropic along one random axis)."""
    perm = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)
    ob = rng.normal(0.0, params.oblique_sd_deg, size=3)
    direction = rotation_matrix(*ob) @ perm
    if rng.random() < params.anisotropic_fraction:
        spacing = np.full(3, rng.uniform(params.voxel_min_mm, 0.8))
        spacing[rng.integers(3)] = rng.uniform(1.2, params.voxel_max_mm)
    else:
        spacing = np.full(3, rng.uniform(params.voxel_min_mm, params.voxel_max_mm))
    spacing = np.round(spacing, 2)
    r = nodes.semi[:, 0:1] + _MARGIN_MM
    lo_pts = nodes.centres - r
    hi_pts = nodes.centres + r
    corners = np.concatenate([lo_pts, hi_pts, np.column_stack([lo_pts[:, 0], hi_pts[:, 1:]]),
                              np.column_stack([hi_pts[:, 0], lo_pts[:, 1:]])])
    local = corners @ direction  # coordinates along the grid axes, mm
    lo, hi = local.min(axis=0), local.max(axis=0)
    shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing) + 1)
    aff = np.eye(4)
    aff[:3, :3] = direction * spacing
    aff[:3, 3] = direction @ lo
    return aff, shape


def rasterise(shape: tuple[int, ...], affine: NDArray, nodes: TrueNodes, values: NDArray) -> NDArray[np.uint16]:
    """Label array: voxels whose centre lies inside node n get ``values[n]`` (0 = skip), vectorised per node box."""
    data = np.zeros(shape, dtype=np.uint16)
    inv = np.linalg.inv(affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    centre_ijk = nodes.centres @ inv[:3, :3].T + inv[:3, 3]
    for n in np.flatnonzero(values):
        half = nodes.semi[n, 0] / spacing
        lo = np.maximum(np.floor(centre_ijk[n] - half).astype(int), 0)
        hi = np.minimum(np.ceil(centre_ijk[n] + half).astype(int) + 1, shape)
        ii, jj, kk = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
        ijk = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)
        q = (ijk @ affine[:3, :3].T + affine[:3, 3] - nodes.centres[n]) @ nodes.axes[n]
        inside = np.sum((q / nodes.semi[n]) ** 2, axis=1) <= 1.0
        sel = ijk[inside]
        data[sel[:, 0], sel[:, 1], sel[:, 2]] = values[n]
    return data


def _merge_groups(rng, params: SynthParams, nodes: TrueNodes, seen: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Component index per node (-1 for unseen); touching visible pairs merge with ``merge_prob``."""
    idx = np.flatnonzero(seen)
    n = len(nodes)
    rows, cols = [], []
    if len(idx) > 1:
        a, b = np.triu_indices(len(idx), k=1)
        a, b = idx[a], idx[b]
        d = nodes.centres[b] - nodes.centres[a]
        dist = np.linalg.norm(d, axis=1)
        u = d / np.maximum(dist, 1e-9)[:, None]
        gap = dist - support_radius(nodes.axes[a], nodes.semi[a], u) - support_radius(nodes.axes[b], nodes.semi[b], u)
        m = (gap < params.merge_gap_mm) & (rng.random(len(a)) < params.merge_prob)
        rows, cols = a[m], b[m]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    out = np.full(n, -1, dtype=np.int64)
    _, out[idx] = np.unique(comp[idx], return_inverse=True)
    return out


def segment_nodes(rng: np.random.Generator, params: SynthParams, nodes: TrueNodes) -> NDArray[np.int64]:
    """Shuffled label per node (0 = not segmented): visibility is logistic in the short axis (domain: nodes
    under ~2.5-3 mm mostly not segmented); touching visible nodes sometimes share a label."""
    p_seen = 1.0 / (1.0 + np.exp(-(nodes.short_mm - params.visible_short_mm) / params.visible_width_mm))
    seen = rng.random(len(nodes)) < p_seen
    comp = _merge_groups(rng, params, nodes, seen)
    n_comp = int(comp.max()) + 1 if len(comp) else 0
    values = rng.permutation(n_comp) + 1
    return np.where(comp >= 0, values[np.maximum(comp, 0)] if n_comp else 0, 0).astype(np.int64)


def draw_reads(rng: np.random.Generator, params: SynthParams, nodes: TrueNodes, mr_label: NDArray) -> pd.DataFrame:
    """Reader scores (USPIO 1-5) and calls per label: a latent score from the benign / micro / macro
    distribution of the label's worst node, each of 1-3 readers off by one step with ``reader_noise``;
    malignant = score >= ``malignant_threshold`` (residual signal >= fat)."""
    labels = np.unique(mr_label[mr_label > 0])
    n_readers = int(rng.integers(1, params.n_readers_max + 1))
    rows = []
    for lab in labels:
        members = mr_label == lab
        macro = bool(np.any(nodes.positive[members] & ~nodes.micro[members]))
        micro = bool(np.any(nodes.positive[members])) and not macro
        probs = params.score_probs_macro if macro else params.score_probs_micro if micro else params.score_probs_benign
        latent = int(rng.choice(5, p=np.asarray(probs) / np.sum(probs))) + 1
        for r in range(n_readers):
            step = int(rng.choice([-1, 1])) if rng.random() < params.reader_noise else 0
            score = int(np.clip(latent + step, 1, 5))
            rows.append((int(lab), f"R{r + 1}", score, "yes" if score >= params.malignant_threshold else "no"))
    return pd.DataFrame(rows, columns=["node", "reader", "score", "malignant"])


def make_mri(rng: np.random.Generator, params: SynthParams, nodes: TrueNodes, raster: bool = True) -> MRI:
    """Grid, segmentation, label map (skipped with ``raster=False``: a 1-voxel map, for fast statistics) and reads."""
    mr_label = segment_nodes(rng, params, nodes)
    affine, shape = draw_grid(rng, params, nodes)
    reads = draw_reads(rng, params, nodes, mr_label)
    data = rasterise(shape, affine, nodes, mr_label) if raster else np.zeros((1, 1, 1), np.uint16)
    return MRI(label_map=LabelMap(data, affine), mr_label=mr_label, reads=reads)


NODE_SIGNAL = 900  # every segmented node has this intensity: the image must not tell the pathology status


def synth_image(label_map: LabelMap) -> NDArray[np.int16]:
    """A display-only MR image on the label map's grid: a smooth background (a few hundred units, varying over
    centimetres of RAS mm) and every segmented node at the constant :data:`NODE_SIGNAL`.

    Deterministic (no random draw), so switching it on changes nothing else of the case; node intensities do not
    depend on the pathology status nor on the reads. Returns ndarray (I, J, K), int16.
    """
    shape = label_map.data.shape
    ijk = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    aff = label_map.affine.astype(np.float32)
    x, y, z = (aff[r, 0] * ijk[0] + aff[r, 1] * ijk[1] + aff[r, 2] * ijk[2] + aff[r, 3] for r in range(3))
    back = 350.0 + 120.0 * np.sin(x / 17.0) * np.cos(y / 23.0) + 80.0 * np.cos(z / 29.0)
    return np.where(label_map.data > 0, NODE_SIGNAL, back).astype(np.int16)
