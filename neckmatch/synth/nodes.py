"""True lymph nodes: counts per level (lyDATA), involvement (lyDATA, by primary site), sizes (domain) and
placement as non-overlapping, elongated ellipsoids inside their level (rejection sampling with assign_levels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neckmatch.geometry.levels import assign_levels
from neckmatch.synth.anatomy import Phantom, level_box, rotation_matrix
from neckmatch.synth.params import IMAGING_LEVELS, SynthParams

__all__ = ["TrueNodes", "COARSE", "draw_counts", "draw_involvement", "draw_nodes", "support_radius"]

#: lyDATA coarse level -> imaging levels it covers.
COARSE: dict[str, tuple[str, ...]] = {"I": ("IA", "IB"), "II": ("IIA", "IIB"), "III": ("III",), "IV": ("IV",),
                                      "V": ("VA", "VB")}
_SIDES = ("R", "L")


@dataclass(frozen=True)
class TrueNodes:
    """The true nodes of one patient; every array has N rows.

    centres : ndarray (N, 3), float, mm, RAS. axes : ndarray (N, 3, 3), float; ``axes[n, :, i]`` is the unit
    direction (RAS) of semi-axis i. semi : ndarray (N, 3), float, mm; semi-axes, longest first.
    side, level : ndarray of str. positive, micro : ndarray of bool (micro = micrometastasis).
    """

    centres: NDArray[np.float64]
    axes: NDArray[np.float64]
    semi: NDArray[np.float64]
    side: NDArray[np.str_]
    level: NDArray[np.str_]
    positive: NDArray[np.bool_]
    micro: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def long_mm(self) -> NDArray[np.float64]:
        """Longest diameter, mm."""
        return 2.0 * self.semi[:, 0]

    @property
    def short_mm(self) -> NDArray[np.float64]:
        """Shortest diameter, mm."""
        return 2.0 * self.semi[:, 2]


def draw_counts(rng: np.random.Generator, params: SynthParams) -> dict[tuple[str, str], int]:
    """True node count per (side, imaging level): log-normal around lyDATA's medians, capped; Poisson for the
    levels lyDATA does not count (RP, VI, VII, SC)."""
    out: dict[tuple[str, str], int] = {}
    for side in _SIDES:
        for lv in IMAGING_LEVELS:
            med, sig = params.count_priors[lv]
            n = med * np.exp(rng.normal(0.0, sig))
            out[(side, lv)] = int(np.clip(np.rint(n), 0, np.ceil(params.count_max_factor * med)))
        for lv, lam in params.extra_counts.items():
            out[(side, lv)] = int(rng.poisson(lam))
    return out


def draw_involvement(
    rng: np.random.Generator, params: SynthParams, location: str, primary_side: str
) -> dict[tuple[str, str], int]:
    """Number of metastatic nodes per (side, coarse level I-V), from the lyDATA chain model of ``location``.

    Ipsilateral = the primary's side (both sides for a midline primary). An involved level holds
    1 + Poisson(mean - 1) positive nodes, mean = lyDATA's positive nodes per involved level.
    """
    priors = params.involvement_priors[location]
    lam = max(float(params.cohort_priors["positive_per_involved_level"]) - 1.0, 0.0)
    out: dict[tuple[str, str], int] = {}
    for side in _SIDES:
        rel = "ipsi" if primary_side in (side, "midline") else "contra"
        involved: dict[str, bool] = {}
        for lv, parent in (("I", None), ("II", None), ("III", "II"), ("IV", "III"), ("V", "II")):
            p_pos, p_neg = priors[rel][lv]
            p = p_pos if parent is None or involved[parent] else p_neg
            involved[lv] = bool(rng.random() < p)
            out[(side, lv)] = 1 + int(rng.poisson(lam)) if involved[lv] else 0
    return out


def _sizes(rng: np.random.Generator, params: SynthParams, positive: NDArray, micro: NDArray) -> NDArray[np.float64]:
    """Semi-axes (N, 3), mm, longest first. Benign and micrometastatic: short axis log-normal (domain 2-6 mm);
    macrometastatic: long axis log-normal; elongation log-normal, middle axis between."""
    n = len(positive)
    ratio = np.maximum(params.elongation_median * np.exp(rng.normal(0.0, params.elongation_sigma, n)), 1.05)
    short = params.benign_short_median_mm * np.exp(rng.normal(0.0, params.benign_short_sigma, n))
    long_ = short * ratio
    macro = positive & ~micro
    long_macro = params.macro_long_median_mm * np.exp(rng.normal(0.0, params.macro_long_sigma, n))
    long_ = np.where(macro, long_macro, long_)
    short = np.where(macro, long_macro / ratio, short)
    mid = short + (long_ - short) * rng.uniform(0.0, 0.5, n)
    return np.column_stack([long_, mid, short]) / 2.0


def _orientations(rng: np.random.Generator, params: SynthParams, n: int) -> NDArray[np.float64]:
    """Local-frame axes (n, 3, 3): long axis tilted from +z by N(0, axis_tilt_sd) toward a random azimuth."""
    out = np.empty((n, 3, 3))
    tilt = rng.normal(0.0, params.axis_tilt_sd_deg, n)
    az = rng.uniform(0.0, 360.0, n)
    spin = rng.uniform(0.0, 360.0, n)
    for i in range(n):
        r = rotation_matrix(0.0, 0.0, az[i]) @ rotation_matrix(tilt[i], 0.0, 0.0) @ rotation_matrix(0.0, 0.0, spin[i])
        out[i] = r[:, [2, 0, 1]]  # semi-axis 0 (long) along the rotated z
    return out


def support_radius(axes: NDArray[np.float64], semi: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray:
    """Support function of ellipsoids in unit directions: ``h = sqrt(sum_i (semi_i * (u . axis_i))^2)``, mm.

    axes (M, 3, 3), semi (M, 3), u (M, 3) -> (M,). Two ellipsoids with centre distance d along u are disjoint
    when d > h1(u) + h2(-u) (a separating plane exists).

    Examples
    --------
    >>> support_radius(np.eye(3)[None], np.array([[5.0, 2.0, 1.0]]), np.array([[0.0, 1.0, 0.0]])).tolist()
    [2.0]
    """
    proj = np.einsum("mij,mi->mj", axes, u)
    return np.sqrt(np.sum((semi * proj) ** 2, axis=1))


def _fits(c: NDArray, ax: NDArray, s: NDArray, pc: NDArray, pax: NDArray, ps: NDArray, gap: float) -> bool:
    """True where ellipsoid (c, ax, s) keeps ``gap`` mm from every placed one (pc (M,3), pax, ps)."""
    if len(pc) == 0:
        return True
    d = pc - c
    dist = np.linalg.norm(d, axis=1)
    u = d / np.maximum(dist, 1e-9)[:, None]
    m = len(pc)
    h = support_radius(np.broadcast_to(ax, (m, 3, 3)), np.broadcast_to(s, (m, 3)), u) + support_radius(pax, ps, u)
    return bool(np.all(dist > h + gap))


def _candidates(rng, phantom: Phantom, side: str, level: str, n: int) -> NDArray[np.float64]:
    """Up to n RAS points proposed in the level box that assign_levels puts in (side, level)."""
    lo, hi = level_box(phantom, level)
    u = rng.uniform(lo, hi, size=(n, 3))
    sign = 1.0 if side == "R" else -1.0
    ras = phantom.to_ras(np.column_stack([sign * u[:, 0], u[:, 1], u[:, 2]]))
    a = assign_levels(ras, phantom.landmarks)
    return ras[(a.level == level) & (a.side == side)]


def _place_one(rng, phantom, params, side, level, ax, s, placed, pool) -> NDArray | None:
    """Find a centre for one ellipsoid; occasionally touching a placed neighbour of the same level."""
    pc, pax, ps, plev = placed
    same = np.flatnonzero(plev == f"{side}{level}") if len(plev) else np.zeros(0, int)
    if len(same) and rng.random() < params.cluster_fraction:
        j = int(rng.choice(same))
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        h = support_radius(ax[None], s[None], u[None])[0] + support_radius(pax[j][None], ps[j][None], u[None])[0]
        c = pc[j] + u * (h + rng.uniform(0.1, 0.6))
        a = assign_levels(c[None], phantom.landmarks)
        if a.level[0] == level and a.side[0] == side and _fits(c, ax, s, pc, pax, ps, 0.05):
            return c
    for _ in range(6):
        if len(pool[0]) == 0:
            pool[0] = _candidates(rng, phantom, side, level, 256)
        while len(pool[0]):
            c, pool[0] = pool[0][0], pool[0][1:]
            if _fits(c, ax, s, pc, pax, ps, params.min_gap_mm):
                return c
    return None


def _node_specs(rng, params: SynthParams, counts: dict, positives: dict) -> tuple[list, list, NDArray, NDArray]:
    """Side/level per node and which are metastatic (micro or macro); involved levels get >= 1 node."""
    sides, levels, pos = [], [], []
    for side in _SIDES:
        for coarse, subs in COARSE.items():
            n_sub = np.array([counts[(side, s)] for s in subs])
            k = positives.get((side, coarse), 0)
            if k and n_sub.sum() == 0:
                n_sub[int(rng.integers(len(subs)))] = 1
            labels = np.repeat(np.array(subs), n_sub)
            flags = np.zeros(len(labels), bool)
            flags[rng.permutation(len(labels))[: min(k, len(labels))]] = True
            sides += [side] * len(labels)
            levels += labels.tolist()
            pos.append(flags)
        for lv in params.extra_counts:
            sides += [side] * counts[(side, lv)]
            levels += [lv] * counts[(side, lv)]
            pos.append(np.zeros(counts[(side, lv)], bool))
    positive = np.concatenate(pos)
    micro = positive & (rng.random(len(positive)) < params.micro_fraction)
    return sides, levels, positive, micro


def draw_nodes(
    rng: np.random.Generator, phantom: Phantom, params: SynthParams, counts: dict, positives: dict
) -> TrueNodes:
    """Draw and place every true node of one patient (larger nodes first within a level).

    A node that finds no free place in its level after a few proposal batches is dropped (rare; dense levels).
    """
    sides, levels, positive, micro = _node_specs(rng, params, counts, positives)
    n = len(sides)
    semi = _sizes(rng, params, positive, micro)
    axes = phantom.matrix[:3, :3] @ _orientations(rng, params, n)
    order = np.lexsort((-semi[:, 0], np.array(levels), np.array(sides)))
    keep: list[int] = []
    cs: list[Any] = []
    pc: list = []
    pools: dict[tuple[str, str], list] = {}
    for i in order:
        key = (sides[i], levels[i])
        pool = pools.setdefault(key, [np.zeros((0, 3))])
        placed = (
            np.array(pc).reshape(-1, 3), axes[keep], semi[keep],
            np.array([f"{sides[j]}{levels[j]}" for j in keep]),
        )
        c = _place_one(rng, phantom, params, key[0], key[1], axes[i], semi[i], placed, pool)
        if c is not None:
            keep.append(i)
            pc.append(c)
            cs.append(c)
    k = np.array(keep, dtype=int)
    return TrueNodes(
        centres=np.array(cs).reshape(-1, 3), axes=axes[k], semi=semi[k],
        side=np.array(sides, dtype=str)[k] if n else np.zeros(0, str),
        level=np.array(levels, dtype=str)[k] if n else np.zeros(0, str),
        positive=positive[k], micro=micro[k],
    )
