"""An independent cohort generator, deliberately written apart from ``neckmatch.synth``, to judge transfer.

    python benchmarks/independent.py --n 4 --seed 1 --out /tmp/indep

Nothing here is tuned on or shared with the package's generator: the engine was never fitted to it, and the
matching benchmark (``benchmarks/families.py --independent N``) reports on it once. It writes the same case format
(case.json, mri/nodes.nii.gz, mri/landmarks.mrk.json, mri/reads.csv, pathology/nodes.csv, ground_truth.csv) with
other assumptions throughout:

- **anatomy**: heights built up from per-vertebra body heights (C1-T1, each N(14.5, 1.2) mm plus discs), the
  landmark curves as quadratics in normalised height with per-patient random coefficients, a whole-neck
  rotation about a random axis, and a body-size factor shared by every dimension;
- **nodes**: counts Poisson per level (other means), benign short axes gamma(7, 0.6) mm, elongation uniform
  1.2-2.4, metastatic long axes log-uniform 6-32 mm, placed in level boxes of this anatomy and kept where the
  imaging level agrees (a radiologist's check);
- **MRI**: axial 0.75 x 0.75 x 2.0 mm grid, visibility by volume (logistic around 14 mm^3), touching nodes
  within 2 mm merged with probability 0.5;
- **surgery / pathology**: the surgeon's container from this anatomy's own level lines (hyoid / cricoid heights
  with random offsets), harvest by volume, shrinkage per case (log-normal around 0.80) times per node noise,
  sizes to 0.5 mm in some reports and whole mm in others, 6 % bisected nodes; container ids ``R_II`` and node
  ids ``R_II.3``;
- **positions** (65 % of reports): the specimen is deformed per container by a shear between the axes, a
  power-law (non-linear) stretch and a shift; reports carry logistic noise and are clipped to [0, 1].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.geometry.levels import assign_levels
from neckmatch.io.labelmap import write_label_map
from neckmatch.io.markups import write_markups
from neckmatch.model import Curve, LabelMap, Landmarks

_MEANS = {"IA": 1.5, "IB": 3.5, "IIA": 7.0, "IIB": 3.0, "III": 5.5, "IV": 4.0, "VA": 3.0, "VB": 2.5}
# curve stem -> (lateral a, b, c), (y a, b, c) of a + b t + c t^2 with t = normalised height (0 clavicle, 1 skull)
_CURVES = {
    "carotid_medial": ((15.0, 2.0, 5.0), (1.0, -6.0, -6.0)),
    "IJV_posterior": ((28.0, 3.0, 5.0), (-6.0, -4.0, -6.0)),
    "SMG_posterior": ((35.0, 0.0, -2.0), (10.0, 0.0, -7.0)),
    "SCM_posterior": ((40.0, 22.0, -5.0), (-4.0, -24.0, -2.0)),
    "scalene_anterior": ((31.0, -9.0, 0.0), (-21.0, -3.0, 0.0)),
    "trapezius_anterior": ((67.0, -8.0, -4.0), (-52.0, -8.0, -4.0)),
    "digastric_anterior": ((9.0, 1.0, 4.0), (30.0, 0.0, 10.0)),
}
# level boxes (lateral, y, t) in this anatomy's own coordinates (t: normalised height)
_BOXES = {
    "IA": ((1, 9), (14, 40), (0.62, 0.78)), "IB": ((12, 42), (14, 40), (0.62, 0.80)),
    "IIA": ((19, 40), (-10, 9), (0.62, 0.95)), "IIB": ((22, 52), (-30, -7), (0.62, 0.95)),
    "III": ((18, 40), (-22, 10), (0.36, 0.60)), "IV": ((17, 38), (-15, 10), (0.18, 0.35)),
    "VA": ((40, 64), (-55, -18), (0.38, 0.85)), "VB": ((34, 64), (-48, -12), (0.18, 0.36)),
}
_SURGICAL = {"I": ("IA", "IB"), "II": ("IIA", "IIB"), "III": ("III",), "IV": ("IV",), "V": ("VA", "VB")}


class _Neck:
    """One patient's neck: heights from vertebrae, quadratic curves, one rotation about a random axis."""

    def __init__(self, rng: np.random.Generator) -> None:
        body = np.exp(rng.normal(0.0, 0.07))
        verts = rng.normal(14.5, 1.2, 8) + rng.uniform(3.0, 5.0, 8)  # C1..T1 bodies + discs
        tops = np.cumsum(verts[::-1])[::-1] * body  # height of each vertebra's top above T1's bottom
        self.z_clav, self.z_skull = tops[-1] * 0.55, tops[0] + 8.0
        self.z_hyoid, self.z_cric = tops[2] - 0.3 * verts[2], tops[5] - 0.2 * verts[5]
        self.z_manub = self.z_clav - rng.uniform(10.0, 18.0)
        self.body = body
        self.coef = {k: (np.array(lat) + rng.normal(0, 1.5, 3), np.array(ant) + rng.normal(0, 1.5, 3))
                     for k, (lat, ant) in _CURVES.items()}
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = np.deg2rad(rng.normal(0.0, 5.0))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        self.rot = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k
        self.offset = rng.uniform(-20, 20, 3) + np.array([0.0, 0.0, -120.0])
        self.lat_shift = {"R": rng.normal(0, 2.5), "L": rng.normal(0, 2.5)}

    def t_to_z(self, t: np.ndarray) -> np.ndarray:
        return self.z_clav + t * (self.z_skull - self.z_clav)

    def ras(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, float) @ self.rot.T + self.offset

    def landmarks(self) -> Landmarks:
        t = np.linspace(-0.6, 1.05, 24)
        z = self.t_to_z(t)
        curves = {}
        for stem, (lat, ant) in self.coef.items():
            d = (lat[0] + lat[1] * t + lat[2] * t**2) * self.body
            y = (ant[0] + ant[1] * t + ant[2] * t**2) * self.body
            for side, sgn in (("R", 1.0), ("L", -1.0)):
                pts = np.column_stack([sgn * (d + self.lat_shift[side]), y, z])
                curves[f"{stem}_{side}"] = Curve(f"{stem}_{side}", self.ras(pts))
        b = self.body
        pts = {"skull_base": [0, -14 * b, self.z_skull], "hyoid_body_inferior": [0, 28 * b, self.z_hyoid],
               "cricoid_arch_inferior": [0, 14 * b, self.z_cric], "manubrium_superior": [0, 8 * b, self.z_manub],
               "clavicle_superior_R": [42 * b + self.lat_shift["R"], 9 * b, self.z_clav],
               "clavicle_superior_L": [-42 * b - self.lat_shift["L"], 9 * b, self.z_clav]}
        return Landmarks(points={k: self.ras(np.array(v, float)) for k, v in pts.items()}, curves=curves)


def _level_t(neck: _Neck, level: str) -> tuple[float, float]:
    """The box's t range, moved to this patient's hyoid / cricoid where the level is bounded by them."""
    span = neck.z_skull - neck.z_clav
    th, tc = (neck.z_hyoid - neck.z_clav) / span, (neck.z_cric - neck.z_clav) / span
    lo, hi = _BOXES[level][2]
    if level in ("IIA", "IIB", "IA", "IB"):
        lo = th + 0.01
    if level in ("III", "VA"):
        lo, hi = (tc + 0.01, th - 0.01) if level == "III" else (tc + 0.01, hi)
    if level in ("IV", "VB"):
        hi = tc - 0.01
    return lo, hi


def _nodes(rng: np.random.Generator, neck: _Neck, sides: list[str], lm: Landmarks) -> pd.DataFrame:
    """True nodes: centre (RAS), semi-axes (mm), axis rotation, side, level, status."""
    rows = []
    for side in ("R", "L"):
        sgn = 1.0 if side == "R" else -1.0
        involved = rng.random() < (0.7 if side == sides[0] else 0.2)
        for level, mean in _MEANS.items():
            n = rng.poisson(mean)
            lat, ant, _ = _BOXES[level]
            lo, hi = _level_t(neck, level)
            k_pos = (rng.random() < 0.35 and involved and level in ("IIA", "III", "IB")) * (1 + rng.poisson(0.6))
            for k in range(n):
                for _ in range(30):
                    t = rng.uniform(lo, hi)
                    local = np.array([sgn * rng.uniform(*lat) * neck.body, rng.uniform(*ant) * neck.body,
                                      float(neck.t_to_z(np.array(t)))])
                    c = neck.ras(local)
                    a = assign_levels(c[None, :], lm)
                    if a.level[0] == level and a.side[0] == side:
                        break
                else:
                    continue
                pos = k < k_pos
                if pos and rng.random() > 0.3:
                    long_ = float(np.exp(rng.uniform(np.log(6.0), np.log(32.0))))
                    short = long_ / rng.uniform(1.1, 1.6)
                else:
                    short = float(rng.gamma(7.0, 0.6))
                    long_ = short * rng.uniform(1.2, 2.4)
                rows.append({"side": side, "level": level, "x": c[0], "y": c[1], "z": c[2], "t": t,
                             "long": long_, "short": short, "positive": pos, "local_y": local[1]})
    return pd.DataFrame(rows)


def _separate(rng: np.random.Generator, nodes: pd.DataFrame) -> pd.DataFrame:
    """Drop nodes overlapping a larger one (spheres of the long radius); keep touching ones (merge candidates)."""
    keep: list[int] = []
    xyz = nodes[["x", "y", "z"]].to_numpy(float)
    for i in np.argsort(-nodes["long"].to_numpy()):
        if all(np.linalg.norm(xyz[i] - xyz[j]) > 0.5 * (nodes.at[i, "short"] + nodes.at[j, "short"]) + 0.3
               for j in keep):
            keep.append(int(i))
    return nodes.loc[sorted(keep)].reset_index(drop=True)


def _raster(rng: np.random.Generator, nodes: pd.DataFrame) -> tuple[LabelMap, np.ndarray]:
    """Axial 0.75 x 0.75 x 2 mm label map; visible by volume; touching visible nodes merged with p 0.5."""
    vol = np.pi / 6 * nodes["long"] * nodes["short"] ** 2
    visible = rng.random(len(nodes)) < 1 / (1 + np.exp(-(vol.to_numpy() - 14.0) / 4.0))
    xyz = nodes[["x", "y", "z"]].to_numpy(float)
    label = np.zeros(len(nodes), int)
    order = rng.permutation(np.flatnonzero(visible))
    nxt = 1
    for i in order:
        if label[i]:
            continue
        label[i] = nxt
        for j in np.flatnonzero(visible & (label == 0)):
            gap = np.linalg.norm(xyz[i] - xyz[j]) - 0.5 * (nodes.at[i, "long"] + nodes.at[j, "long"])
            if gap < 2.0 and rng.random() < 0.5:
                label[j] = nxt
        nxt += 1
    sp = np.array([0.75, 0.75, 2.0])
    lo = xyz.min(axis=0) - 25.0
    shape = tuple(np.ceil((xyz.max(axis=0) + 25.0 - lo) / sp).astype(int))
    data = np.zeros(shape, np.int16)
    for i in np.flatnonzero(label > 0):
        a, b = nodes.at[i, "long"] / 2, nodes.at[i, "short"] / 2
        c0 = ((xyz[i] - lo) / sp)
        r = np.ceil(np.array([a, a, a]) / sp).astype(int) + 1
        sl = tuple(slice(max(int(c0[d]) - r[d], 0), int(c0[d]) + r[d] + 1) for d in range(3))
        grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), -1) * sp + lo
        d = grid - xyz[i]
        inside = (d[..., 2] / a) ** 2 + (d[..., 0] / b) ** 2 + (d[..., 1] / b) ** 2 <= 1.0
        block = data[sl]
        block[inside & (block == 0)] = label[i]
    for lab in np.unique(label[label > 0]):  # a tiny node may miss every voxel centre: give it its centre voxel
        if not (data == lab).any():
            i = int(np.flatnonzero(label == lab)[0])
            v = np.clip(((xyz[i] - lo) / sp).astype(int), 0, np.array(shape) - 1)
            data[tuple(v)] = lab
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = lo
    return LabelMap(data=data, affine=aff), label


def _surgeon(rng: np.random.Generator, neck: _Neck, nodes: pd.DataFrame) -> np.ndarray:
    """Surgical level per node from this anatomy's own lines: II/III at the hyoid + N(-4, 6) mm, III/IV at the
    cricoid + N(3, 6) mm (per patient), in local height."""
    cut_23 = neck.z_hyoid + rng.normal(-4.0, 6.0)
    cut_34 = neck.z_cric + rng.normal(3.0, 6.0)
    z = np.array([float(neck.t_to_z(np.array(t))) for t in nodes["t"]])
    out = []
    for lv, zz in zip(nodes["level"], z, strict=True):
        s = {"IA": "I", "IB": "I", "IIA": "II", "IIB": "II", "III": "III", "IV": "IV", "VA": "V", "VB": "V"}[lv]
        if s in ("II", "III", "IV"):
            s = "II" if zz > cut_23 else ("III" if zz > cut_34 else "IV")
        out.append(s)
    return np.array(out)


def _deform(rng: np.random.Generator, cc: np.ndarray, ap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-container specimen deformation: shear between the axes, power-law stretch, shift, logistic noise."""
    shear = rng.normal(0.0, 0.15)
    g_cc, g_ap = np.exp(rng.normal(0.0, 0.25, 2))
    c2 = np.clip(cc + shear * (ap - 0.5), 0.0, 1.0) ** g_cc + rng.normal(0.0, 0.06)
    a2 = np.clip(ap, 0.0, 1.0) ** g_ap + rng.normal(0.0, 0.06)
    c2 = c2 + rng.logistic(0.0, 0.04, len(cc))
    a2 = a2 + rng.logistic(0.0, 0.04, len(ap))
    return np.round(np.clip(c2, 0, 1), 2), np.round(np.clip(a2, 0, 1), 2)


def _pathology(rng: np.random.Generator, neck: _Neck, nodes: pd.DataFrame, dissected: dict[str, list[str]]
               ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Report rows and, per true node, its path node id and fragments (";"-joined)."""
    surg = _surgeon(rng, neck, nodes)
    vol = np.pi / 6 * nodes["long"].to_numpy() * nodes["short"].to_numpy() ** 2
    found = rng.random(len(nodes)) < 1 / (1 + np.exp(-(np.log(vol) - np.log(10.0)) / 0.6))
    k_case = float(np.exp(rng.normal(np.log(0.80), 0.06)))
    half = rng.random() < 0.5
    with_pos = rng.random() < 0.65
    rows, pnode, pfrag = [], [""] * len(nodes), [""] * len(nodes)
    counter: dict[str, int] = {}
    for i in rng.permutation(len(nodes)):
        side, s = nodes.at[i, "side"], surg[i]
        if s not in dissected.get(side, []) or not found[i]:
            continue
        cont = f"{side}_{s}"
        size = nodes.at[i, "long"] * k_case * rng.normal(1.0, 0.07)
        size = max(round(size * 2) / 2 if half else round(size), 1.0)
        counter[cont] = counter.get(cont, 0) + 1
        nid = f"{cont}.{counter[cont]}"
        pnode[i] = nid
        rows.append({"node": nid, "container": cont, "side": side, "level": s, "size_mm": size,
                     "status": "positive" if nodes.at[i, "positive"] else "negative", "fragment_of": "", "true": i})
        if rng.random() < 0.06:
            counter[cont] += 1
            fid = f"{cont}.{counter[cont]}"
            rows.append(rows[-1] | {"node": fid, "size_mm": max(round(size * rng.uniform(0.4, 0.8)), 1.0),
                                    "fragment_of": nid})
            pfrag[i] = f"{nid};{fid}"
    rep = pd.DataFrame(rows)
    if with_pos and len(rep):
        rep["cc"], rep["ap"] = np.nan, np.nan
        for _, g in rep.groupby("container"):
            t = g["true"].to_numpy()
            z = np.array([float(neck.t_to_z(np.array(nodes.at[k, "t"]))) for k in t])
            y = nodes.loc[t, "local_y"].to_numpy(float)
            zr, yr = (z.max() - z) / max(np.ptp(z) + 10.0, 1.0), (y.max() - y) / max(np.ptp(y) + 10.0, 1.0)
            cc, ap = _deform(rng, zr + 5.0 / max(np.ptp(z) + 10.0, 1.0), yr + 5.0 / max(np.ptp(y) + 10.0, 1.0))
            rep.loc[g.index, "cc"], rep.loc[g.index, "ap"] = cc, ap
    return rep.drop(columns="true") if len(rep) else rep, pnode, pfrag


def make_case(seed: int, case_id: str, out: Path) -> Path:
    """Write one independent case into ``out/case_id``."""
    rng = np.random.default_rng(seed)
    neck = _Neck(rng)
    lm = neck.landmarks()
    primary = str(rng.choice(["R", "L"]))
    other = "L" if primary == "R" else "R"
    types = [["I", "II", "III"], ["II", "III", "IV"], ["I", "II", "III", "IV", "V"], ["II", "III", "IV", "V"]]
    dissected = {primary: types[int(rng.integers(4))]}
    if rng.random() < 0.35:
        dissected[other] = types[int(rng.integers(4))]
    nodes = _separate(rng, _nodes(rng, neck, [primary, other], lm))
    label_map, label = _raster(rng, nodes)
    rep, pnode, pfrag = _pathology(rng, neck, nodes, dissected)
    d = out / case_id
    (d / "mri").mkdir(parents=True, exist_ok=True)
    (d / "pathology").mkdir(exist_ok=True)
    write_label_map(d / "mri/nodes.nii.gz", label_map)
    write_markups(d / "mri/landmarks.mrk.json", lm)
    labs = sorted(set(label[label > 0].tolist()))
    pd.DataFrame({"node": labs, "reader": "A", "score": rng.integers(1, 6, len(labs))}).assign(
        malignant=lambda f: np.where(f["score"] >= 4, "yes", "no")).to_csv(d / "mri/reads.csv", index=False)
    rep.to_csv(d / "pathology/nodes.csv", index=False)
    gt = pd.DataFrame({"mr_label": [str(v) if v else "" for v in label], "path_node": pnode,
                       "path_fragments": pfrag, "status": np.where(nodes["positive"], "positive", "negative")})
    gt.to_csv(d / "ground_truth.csv", index=False)
    manifest = {"format": "neckmatch-case/1", "case_id": case_id, "primary_side": primary,
                "dissected": {s: sorted(v) for s, v in dissected.items()},
                "mri": {"nodes": "mri/nodes.nii.gz", "landmarks": "mri/landmarks.mrk.json", "reads": "mri/reads.csv"},
                "pathology": {"nodes": "pathology/nodes.csv"}}
    (d / "case.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return d


def case_seed(seed: int, k: int) -> int:
    """Seed of independent case k of a cohort seeded ``seed``."""
    return int(np.random.SeedSequence([seed, 99, k]).generate_state(1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    for k in range(args.n):
        make_case(case_seed(args.seed, k), f"IND{k + 1:03d}", args.out)
    print(f"wrote {args.n} independent cases to {args.out}")


if __name__ == "__main__":
    main()
