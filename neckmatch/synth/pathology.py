"""Surgery and pathology: dissections, containers, the surgeon's container errors near level boundaries,
harvest misses, bisected nodes, formalin shrinkage, node ids and the rough cc / ap layout positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from neckmatch.geometry.levels import assign_levels
from neckmatch.model import ContainerLevel, Landmarks
from neckmatch.synth.anatomy import Phantom
from neckmatch.synth.nodes import TrueNodes
from neckmatch.synth.params import SynthParams

__all__ = ["Pathology", "DISSECTIONS", "draw_dissection", "draw_containers", "surgical_levels", "make_pathology"]

#: Dissection type -> surgical levels removed.
DISSECTIONS: dict[str, tuple[str, ...]] = {"II-IV": ("II", "III", "IV"), "I-III": ("I", "II", "III"),
                                           "I-V": ("I", "II", "III", "IV", "V")}
_PAD_MM = 5.0  # container extent beyond its outermost nodes, mm


@dataclass(frozen=True)
class Pathology:
    """The pathology side of one case.

    dissected : dict side -> list of surgical levels. report : DataFrame, the rows of pathology/nodes.csv.
    container : ndarray (N,) of str per true node: the container it was removed with (``""`` where its level was
    not dissected), whether or not pathology then found it. path_node, path_fragments : ndarray (N,) of str
    (``""`` where not harvested; fragments ``;``-joined, first piece first).
    """

    dissected: dict[str, list[str]]
    report: pd.DataFrame
    container: NDArray[np.str_]
    path_node: NDArray[np.str_]
    path_fragments: NDArray[np.str_]


def draw_dissection(rng: np.random.Generator, params: SynthParams, primary_side: str) -> dict[str, list[str]]:
    """Dissected sides and surgical levels: the primary's side always (a random side for midline primaries),
    the other side with lyDATA's bilateral fraction (twice as often for midline); type from ``dissection_types``."""
    ipsi = primary_side if primary_side in ("R", "L") else str(rng.choice(["R", "L"]))
    contra = "L" if ipsi == "R" else "R"
    names = list(params.dissection_types)
    probs = np.array([params.dissection_types[k] for k in names], float)
    out = {ipsi: list(DISSECTIONS[str(rng.choice(names, p=probs / probs.sum()))])}
    p_bil = float(params.cohort_priors["bilateral_fraction"]) * (2.0 if primary_side == "midline" else 1.0)
    if rng.random() < min(p_bil, 0.95):
        out[contra] = list(DISSECTIONS[str(rng.choice(names, p=probs / probs.sum()))])
    return dict(sorted(out.items()))


def draw_containers(rng: np.random.Generator, params: SynthParams, dissected: dict[str, list[str]]) -> list[tuple]:
    """Containers as (container id, side, level string): sub-containers IA/IB, IIA/IIB and merged III+IV
    sometimes."""
    out = []
    for side, levels in dissected.items():
        names: list[str] = []
        for lv in levels:
            if lv == "I" and rng.random() < params.subcontainer_I_fraction:
                names += ["IA", "IB"]
            elif lv == "II" and rng.random() < params.subcontainer_II_fraction:
                names += ["IIA", "IIB"]
            else:
                names.append(lv)
        if "III" in names and "IV" in names and rng.random() < params.merged_III_IV_fraction:
            names = [n for n in names if n not in ("III", "IV")] + ["III+IV"]
        out += [(f"{side}-{n}", side, n) for n in names]
    return out


def surgical_levels(rng: np.random.Generator, params: SynthParams, landmarks: Landmarks, centres: NDArray) -> NDArray:
    """The level the surgeon effectively assigns each node: imaging rules with the II/III boundary moved to the
    carotid bifurcation and III/IV to the omohyoid (random offsets), then the runner-up level with probability
    ``container_error_rate * exp(-boundary_mm / container_error_scale_mm)``."""
    pts = dict(landmarks.points)
    for name, (mean, sd) in (("hyoid_body_inferior", params.surgical_II_III_offset_mm),
                             ("cricoid_arch_inferior", params.surgical_III_IV_offset_mm)):
        pts[name] = pts[name] + np.array([0.0, 0.0, rng.normal(mean, sd)])
    a = assign_levels(centres, Landmarks(points=pts, curves=landmarks.curves))
    dist = np.nan_to_num(a.boundary_mm, nan=99.0)
    p_err = params.container_error_rate * np.exp(-dist / params.container_error_scale_mm)
    err = (rng.random(len(centres)) < p_err) & (a.runner_up != "")
    return np.where(err, a.runner_up, a.level)


def _container_of(containers: list[tuple], side: NDArray, level: NDArray) -> NDArray[np.str_]:
    """The container whose level holds each node's (surgical) imaging level on its side, ``""`` if none."""
    out = np.full(len(side), "", dtype=object)
    parsed = [(cid, s, ContainerLevel.parse(lv)) for cid, s, lv in containers]
    for i, (s, lv) in enumerate(zip(side, level, strict=True)):
        if not lv:
            continue
        for cid, cs, clv in parsed:
            if cs == s and clv.contains(lv):
                out[i] = cid
                break
    return out.astype(str)


def _positions(rng, params: SynthParams, local: NDArray, container: NDArray) -> tuple[NDArray, NDArray]:
    """cc, ap (N,) in [0, 1] per row: true position within the container extent (local z and y, padded), each
    container's layout stretched and shifted as a whole, plus per-node noise, clipped."""
    cc, ap = np.full(len(container), np.nan), np.full(len(container), np.nan)
    for cid in np.unique(container):
        m = container == cid
        s = np.exp(rng.normal(0.0, params.stretch_sd, 2))
        t = rng.normal(0.0, params.shift_sd, 2)
        for out, col, k in ((cc, 2, 0), (ap, 1, 1)):
            v = local[m, col]
            lo, hi = v.min() - _PAD_MM, v.max() + _PAD_MM
            rel = (hi - v) / (hi - lo)
            noisy = 0.5 + (rel - 0.5) * s[k] + t[k] + rng.normal(0.0, params.position_noise, m.sum())
            out[m] = np.clip(noisy, 0.0, 1.0)
    return np.round(cc, 3), np.round(ap, 3)


def _report_rows(rng, params: SynthParams, nodes: TrueNodes, container: NDArray) -> pd.DataFrame:
    """One row per reported piece (``true`` = true node index): harvest misses (probability
    ``harvest_miss_rate / (1 + (long / harvest_miss_size_mm)^3)``), shrinkage, rounding, bisected nodes."""
    long_ = nodes.long_mm
    p_miss = params.harvest_miss_rate / (1.0 + (long_ / params.harvest_miss_size_mm) ** 3)
    harvested = (container != "") & (rng.random(len(nodes)) >= p_miss)
    idx = np.flatnonzero(harvested)
    shrink = np.clip(rng.normal(params.shrinkage_mean, params.shrinkage_sd, len(idx)), 0.0, 0.4)
    size = np.maximum(np.rint(long_[idx] * (1.0 - shrink)), 1.0)
    frag = rng.random(len(idx)) < params.fragment_rate
    f_idx = idx[frag]
    f_size = np.maximum(np.rint(size[frag] * rng.uniform(0.5, 0.9, frag.sum())), 1.0)
    true = np.concatenate([idx, f_idx])
    rows = pd.DataFrame({
        "true": true,
        "piece": np.concatenate([np.zeros(len(idx), int), np.ones(len(f_idx), int)]),
        "container": container[true],
        "size_mm": np.concatenate([size, f_size]),
    })
    pos = nodes.positive[true]
    micro = nodes.micro[true]
    macro_dep = rows["size_mm"].to_numpy() * rng.uniform(0.5, 1.0, len(true))
    dep = np.where(micro, rng.uniform(0.2, 2.0, len(true)), macro_dep)
    rows["status"] = np.where(pos, "positive", "negative")
    rows["deposit_mm"] = np.where(pos, np.round(dep, 1), np.nan)
    return rows


def _number(rng, rows: pd.DataFrame) -> pd.Series:
    """Node ids ``<container>-NN``, numbered in a random order within each container (unrelated to MR labels)."""
    ids = pd.Series("", index=rows.index, dtype=object)
    for cid, g in rows.groupby("container"):
        order = rng.permutation(len(g))
        ids[g.index] = [f"{cid}-{k + 1:02d}" for k in order]
    return ids


def make_pathology(
    rng: np.random.Generator, params: SynthParams, phantom: Phantom, nodes: TrueNodes, primary_side: str,
    with_positions: bool,
) -> Pathology:
    """The whole pathology side of a case; status comes from the true nodes (the involvement model)."""
    dissected = draw_dissection(rng, params, primary_side)
    containers = draw_containers(rng, params, dissected)
    slevel = surgical_levels(rng, params, phantom.landmarks, nodes.centres) if len(nodes) else np.zeros(0, str)
    container = _container_of(containers, nodes.side, slevel)
    rows = _report_rows(rng, params, nodes, container)
    rows["node"] = _number(rng, rows)
    first = dict(zip(rows.loc[rows.piece == 0, "true"], rows.loc[rows.piece == 0, "node"], strict=True))
    rows["fragment_of"] = [first[t] if p else "" for t, p in zip(rows["true"], rows["piece"], strict=True)]
    cmap = {cid: (s, lv) for cid, s, lv in containers}
    rows["side"] = [cmap[c][0] for c in rows["container"]]
    rows["level"] = [cmap[c][1] for c in rows["container"]]
    cols = ["node", "container", "side", "level", "size_mm", "status"]
    if with_positions and len(rows):
        local = (nodes.centres[rows["true"].to_numpy()] - phantom.matrix[:3, 3]) @ phantom.matrix[:3, :3]
        rows["cc"], rows["ap"] = _positions(rng, params, local, rows["container"].to_numpy())
        cols += ["cc", "ap"]
    rows = rows.sort_values("node", kind="stable").reset_index(drop=True)
    n = len(nodes)
    path_node = np.array([first.get(i, "") for i in range(n)], dtype=object)
    frags = rows.groupby("true")["node"].apply(lambda s: ";".join(sorted(s, key=lambda x: x != first[s.name])))
    path_fragments = np.array([frags.get(i, "") if (rows["true"] == i).sum() > 1 else "" for i in range(n)], object)
    report = rows[cols + ["fragment_of", "deposit_mm"]].copy()
    report["size_mm"] = report["size_mm"].astype(int)
    return Pathology(
        dissected, report, container.astype(str), path_node.astype(str), path_fragments.astype(str)
    )
