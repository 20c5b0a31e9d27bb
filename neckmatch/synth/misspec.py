"""Misspecification families: synthetic cohorts that each break one assumption of the matching model.

The matching engine was tuned on the default generator; a study's data differ from it. Each family below changes
one habit of the anatomy, the surgeon or the pathologist, either through generator knobs (:class:`SynthParams`)
or by editing the simulated pathology report afterwards (with the ground truth kept consistent). The matching
benchmark (``benchmarks/matching.py --families``) prints every metric per family, and the confidence calibration
is checked leave-one-family-out. docs/synthetic.md lists the families.

| family | assumption broken |
|---|---|
| ``default`` | none (the tuning generator) |
| ``heavy-positions`` | Gaussian position reports: Student-t (2 df) noise and a per-container bias |
| ``shrink-stretch`` | formalin shrinkage 0.85 +- 0.05 and layout stretch sd 0.15: 0.72 +- 0.10, stretch 0.35 |
| ``swapped-containers`` | container labels are right: two adjacent jars of one side swapped in half the cases |
| ``level-boundaries`` | the surgeon's II/III and III/IV lines and container errors near boundaries |
| ``fewer-found`` | harvest rate: pathology finds far fewer small nodes |
| ``more-found`` | MR visibility / harvest: pathology finds nearly every node, MR sees fewer small ones |
| ``fragments-merges`` | few bisected nodes and merged labels: many of both, and nodes reported merged |
| ``count-only`` | every node measured: some containers list their nodes without size or position |
| ``missing-positions`` | positions for every node of a positioned case: many missing, some containers cc only |
| ``size-habits`` | long axis in whole mm: short axis, 5 mm steps or measured with fat, per case |
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.synth.cohort import SynthCase, case_seed, simulate_case, write_case
from neckmatch.synth.params import SynthParams

__all__ = ["Family", "FAMILIES", "simulate_family_case", "generate_family_cohort"]

Edit = Callable[[np.random.Generator, SynthCase], SynthCase]


@dataclass(frozen=True)
class Family:
    """One misspecification family: generator knob changes and an optional edit of the simulated case."""

    name: str
    broken: str  # the assumption of the matching model it breaks
    knobs: dict[str, Any] = field(default_factory=dict)
    edit: Edit | None = None


def _true_index(case: SynthCase) -> dict[str, int]:
    """Pathology node id -> index of its true node (every piece of a bisected node)."""
    out: dict[str, int] = {}
    for i, (p, frags) in enumerate(zip(case.truth["path_node"], case.truth["path_fragments"], strict=True)):
        for node in ([p] if p else []) + [f for f in str(frags).split(";") if f]:
            out[node] = i
    return out


def _with_report(case: SynthCase, report: pd.DataFrame, truth: pd.DataFrame | None = None) -> SynthCase:
    path = dataclasses.replace(case.pathology, report=report.reset_index(drop=True))
    return dataclasses.replace(case, pathology=path, truth=case.truth if truth is None else truth)


def _heavy_positions(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """Add Student-t (2 df, scale 0.04) noise and a per-container bias N(0, 0.08) per axis, clipped to [0, 1]."""
    rep = case.pathology.report.copy()
    if "cc" not in rep:
        return case
    for _, idx in rep.groupby("container").groups.items():
        for col in ("cc", "ap"):
            bias = rng.normal(0.0, 0.08)
            noise = 0.04 * rng.standard_t(2.0, len(idx))
            rep.loc[idx, col] = np.round(np.clip(rep.loc[idx, col] + bias + noise, 0.0, 1.0), 3)
    return _with_report(case, rep)


def _rename(case: SynthCase, rep: pd.DataFrame, mapping: dict[str, str]) -> SynthCase:
    """Apply a node-id renaming to the report (``node``, ``fragment_of``) and to the ground truth."""
    rep = rep.copy()
    rep["node"] = rep["node"].map(lambda v: mapping.get(v, v))
    rep["fragment_of"] = rep["fragment_of"].map(lambda v: mapping.get(v, v) if v else v)
    truth = case.truth.copy()
    truth["path_node"] = truth["path_node"].map(lambda v: mapping.get(v, v) if v else v)
    truth["path_fragments"] = truth["path_fragments"].map(
        lambda v: ";".join(mapping.get(x, x) for x in str(v).split(";")) if v else v)
    return _with_report(case, rep.sort_values("node", kind="stable"), truth)


def _swap_containers(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """In half the cases, two containers of one side (neighbours in the report's order) swap labels: the nodes
    of jar A are reported as jar B's and the reverse (ids renumbered in the new container)."""
    rep = case.pathology.report
    conts = rep.drop_duplicates("container")[["container", "side", "level"]]
    sides = [s for s, g in conts.groupby("side") if len(g) >= 2]
    if not sides or rng.random() < 0.5:
        return case
    g = conts[conts["side"] == sides[int(rng.integers(len(sides)))]].reset_index(drop=True)
    k = int(rng.integers(len(g) - 1))
    a, b = g.iloc[k], g.iloc[k + 1]
    swap = {a.container: (b.container, b.level), b.container: (a.container, a.level)}
    new = rep.copy()
    mapping: dict[str, str] = {}
    for old, (cid, lv) in swap.items():
        rows = new.index[rep["container"] == old]
        new.loc[rows, "container"], new.loc[rows, "level"] = cid, lv
        for t, r in enumerate(rng.permutation(rows)):
            mapping[str(rep.at[r, "node"])] = f"{cid}-{t + 1:02d}x"
    return _rename(case, new, mapping)


def _merge_reported(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """The pathologist reports two touching nodes of one container as one (p 0.3 per node with a neighbour within
    10 mm): the smaller disappears, the larger's size grows by 1 mm; both true nodes then own the kept row."""
    rep, truth = case.pathology.report.copy(), case.truth.copy()
    tidx = _true_index(case)
    xyz = truth[["x", "y", "z"]].to_numpy(dtype=float)
    whole = rep[rep["fragment_of"] == ""]
    dropped: set[str] = set()
    for _, g in whole.groupby("container"):
        nodes = list(g["node"])
        for a in rng.permutation(nodes):
            if a in dropped or rng.random() >= 0.3:
                continue
            near = [b for b in nodes if b != a and b not in dropped
                    and np.linalg.norm(xyz[tidx[a]] - xyz[tidx[b]]) < 10.0]
            if not near:
                continue
            b = near[0]
            size = dict(zip(rep["node"], rep["size_mm"], strict=True))
            keep, drop = (a, b) if size[a] >= size[b] else (b, a)
            rep.loc[rep.node == keep, "size_mm"] += 1
            if (rep.loc[rep.node == drop, "status"] == "positive").any():
                rep.loc[rep.node == keep, "status"] = "positive"
            dropped |= {keep, drop}
            gone = set(rep.loc[(rep.node == drop) | (rep.fragment_of == drop), "node"])
            rep = rep[~rep.node.isin(gone)]
            t = tidx[drop]
            truth.loc[t, "path_node"], truth.loc[t, "path_fragments"] = keep, ""
    return _with_report(case, rep, truth)


def _count_only(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """About 40 % of containers (at least one per case) list their nodes without size or position."""
    rep = case.pathology.report.copy()
    conts = sorted(set(rep["container"]))
    if not conts:
        return case
    pick = [c for c in conts if rng.random() < 0.4] or [conts[int(rng.integers(len(conts)))]]
    rows = rep["container"].isin(pick)
    rep["size_mm"] = rep["size_mm"].astype(float)
    rep.loc[rows, "size_mm"] = np.nan
    for col in ("cc", "ap"):
        if col in rep:
            rep.loc[rows, col] = np.nan
    return _with_report(case, rep)


def _missing_positions(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """In a positioned report, 40 % of rows lose both cc and ap, and 30 % of containers report cc only."""
    rep = case.pathology.report.copy()
    if "cc" not in rep:
        return case
    gone = rng.random(len(rep)) < 0.4
    rep.loc[gone, ["cc", "ap"]] = np.nan
    for c in sorted(set(rep["container"])):
        if rng.random() < 0.3:
            rep.loc[rep["container"] == c, "ap"] = np.nan
    return _with_report(case, rep)


def _size_habits(rng: np.random.Generator, case: SynthCase) -> SynthCase:
    """One measuring habit per case: the short axis instead of the long (shrunk 0.85), sizes in 5 mm steps, or the
    long axis measured with fat (+2 mm)."""
    rep = case.pathology.report.copy()
    habit = int(rng.integers(3))
    size = rep["size_mm"].astype(float)
    if habit == 0:
        tidx = _true_index(case)
        short = case.truth["short_mm"].to_numpy(dtype=float)
        ratio = np.array([short[tidx[n]] / max(float(case.truth.at[tidx[n], "long_mm"]), 1e-6)
                          for n in rep["node"]])
        size = np.maximum(np.rint(size * ratio), 1.0)
    elif habit == 1:
        size = np.maximum(5.0 * np.rint(size / 5.0), 2.0)
    else:
        size = size + 2.0
    rep["size_mm"] = size.astype(int)
    return _with_report(case, rep)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("default", "none (the tuning generator)"),
    Family("heavy-positions", "Gaussian position reports", {"positions_fraction": 0.8}, _heavy_positions),
    Family("shrink-stretch", "shrinkage 0.85 +- 0.05, stretch sd 0.15",
           {"shrinkage_mean": 0.28, "shrinkage_sd": 0.10, "stretch_sd": 0.35, "shift_sd": 0.10}),
    Family("swapped-containers", "container labels are right", {}, _swap_containers),
    Family("level-boundaries", "the surgeon's level lines", {
        "surgical_II_III_offset_mm": (-10.0, 8.0), "surgical_III_IV_offset_mm": (6.0, 8.0),
        "container_error_rate": 0.6, "container_error_scale_mm": 6.0}),
    Family("fewer-found", "harvest rate", {"harvest_miss_rate": 0.8, "harvest_miss_size_mm": 6.0}),
    Family("more-found", "MR visibility and harvest", {"harvest_miss_rate": 0.05, "visible_short_mm": 3.5}),
    Family("fragments-merges", "few fragments and merges", {"fragment_rate": 0.15, "merge_prob": 0.7},
           _merge_reported),
    Family("count-only", "every node measured", {}, _count_only),
    Family("missing-positions", "complete position reports", {"positions_fraction": 0.8}, _missing_positions),
    Family("size-habits", "long axis in whole mm", {}, _size_habits),
)}


def simulate_family_case(family: str | Family, case_id: str, seed: int | np.random.SeedSequence,
                         params: SynthParams | None = None, raster: bool = True) -> SynthCase:
    """Simulate one case of ``family`` (a name of :data:`FAMILIES` or a :class:`Family`).

    The family's knobs change ``params`` (default :class:`SynthParams`); its edit draws from its own stream, so
    the underlying patient is the same as the default family's with the same seed and knobs.
    """
    fam = FAMILIES[family] if isinstance(family, str) else family
    params = (params or SynthParams()).replace(**fam.knobs)
    case = simulate_case(case_id, seed, params, raster=raster)
    if fam.edit is None:
        return case
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    return fam.edit(np.random.default_rng(ss.spawn(1)[0]), case)


def generate_family_cohort(family: str, n_cases: int, seed: int, out_dir: str | Path,
                           params: SynthParams | None = None) -> list[Path]:
    """Write ``n_cases`` cases of ``family`` into ``out_dir`` (case k seeded as :func:`case_seed`); returns the
    case folders. ``out_dir/cohort.json`` names the family."""
    out = Path(out_dir)
    dirs = []
    for k in range(int(n_cases)):
        cid = f"SYN{k + 1:03d}"
        write_case(simulate_family_case(family, cid, case_seed(seed, k), params), out / cid)
        dirs.append(out / cid)
    doc = {"generator": "neckmatch.synth.misspec", "family": family, "seed": int(seed), "n_cases": int(n_cases),
           "cases": [d.name for d in dirs]}
    (out / "cohort.json").write_text(json.dumps(doc, indent=2) + "\n")
    return dirs
