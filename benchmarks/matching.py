"""Benchmark of node-to-node matching on the synthetic cohort (not a timed test).

    python benchmarks/matching.py [--n 48] [--seed 2024] [--sweep] [--calibrate]

Prints, side by side, for neckmatch, a plain Hungarian on the same unary costs (no EM, no warps, no dummy-free
confidence), pygmtools RRWM and IPFP (numpy backend) on the same affinities, and oracle rows: neckmatch with
the generator's noise parameters ("oracle params"), with each container's warp fitted on all its true pairs
("oracle warps": in-sample, it leaks a unit's own answer into the warp that judges it) and fitted leave-one-out
("oracle warps LOO": a unit's warp from the other units' true pairs; the honest warp-knowledge limit):
pair precision / recall / F1, auto-decision precision and coverage of the
true pairs, recall of pairs involving metastatic nodes, MR-node outcome accuracy (the pathology status each MR
node inherits is right), expected calibration error and match time per case; for cases with cc/ap positions,
without, and all. ``--sweep`` varies the generator's difficulty knobs; ``--calibrate`` fits, on a calibration
cohort (seed 777, different from the benchmark's), the merged-label prior and piece sizes (for MatchParams
``merge_coef`` / ``merge_piece``), then the confidence calibration constants and the auto threshold on the default
generator alone, and prints them. The package calibration is fitted on every misspecification family instead:
``benchmarks/families.py --seed 777 --fit`` (per-family metrics and leave-one-family-out calibration there).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from neckmatch.correlation import evidence as ev
from neckmatch.correlation.assign import components
from neckmatch.correlation.calibration import auto_threshold, calibrate, calibration_keys, fit_logistic
from neckmatch.correlation.matching import MatchParams, match_case
from neckmatch.geometry.levels import levels_table
from neckmatch.geometry.specimen import reconstruct_specimen
from neckmatch.io.case import read_case
from neckmatch.synth import SynthParams, generate_cohort
from neckmatch.synth.misspec import generate_family_cohort

CAL_SEED = 777


def load_cohort(n: int, seed: int, params: SynthParams | None = None, root: Path | None = None,
                family: str | None = None) -> list[dict]:
    """Generate a cohort (of a misspecification ``family``, default the tuning generator) and read each case, its
    levels table and its ground truth."""
    root = Path(root or tempfile.mkdtemp(prefix="nm_bench_"))
    dirs = generate_cohort(n, seed, root / f"s{seed}", params) if family is None \
        else generate_family_cohort(family, n, seed, root / f"{family}-s{seed}", params)
    return [read_item(d) for d in dirs]


def read_item(d: Path) -> dict:
    """One benchmark item: the case of folder ``d``, its levels table, ground truth and specimen."""
    case = read_case(d)
    levels = levels_table(case)
    gt = pd.read_csv(d / "ground_truth.csv", dtype=str, keep_default_na=False)
    return {"case": case, "levels": levels, "gt": gt, "spec": reconstruct_specimen(case, levels),
            "positions": any(p.cc is not None for p in case.path_nodes)}


def truth_of(gt: pd.DataFrame) -> dict:
    """True (MR label, path node) pairs (every fragment paired), metastatic pairs, MR-label statuses, and the true
    node (``true_id``) of every paired path node."""
    pairs, meta, mr_status, true_of = set(), set(), {}, {}
    for r in gt.itertuples():
        if not r.mr_label:
            continue
        lab = int(r.mr_label)
        mr_status.setdefault(lab, None)
        pieces = [p for p in (r.path_fragments.split(";") if r.path_fragments else [r.path_node]) if p]
        for p in pieces:
            pairs.add((lab, p))
            true_of[p] = r.true_id
            if r.status == "positive":
                meta.add((lab, p))
        if pieces:
            prev = mr_status[lab]
            mr_status[lab] = "positive" if r.status == "positive" or prev == "positive" else "negative"
    paired_path = {p for _, p in pairs}
    return {"pairs": pairs, "meta": meta, "mr_status": mr_status, "paired_path": paired_path, "true_of": true_of}


def score_rows(m: pd.DataFrame, truth: dict) -> np.ndarray:
    """Correctness (bool per row) of each decision."""
    ok = np.zeros(len(m), bool)
    paired_mr = {a for a, _ in truth["pairs"]}
    for k, r in enumerate(m.itertuples()):
        if r.kind == "pair":
            ok[k] = (int(r.mr_node), r.path_node) in truth["pairs"]
        elif r.kind == "mr-unmatched":
            ok[k] = int(r.mr_node) not in paired_mr
        else:
            ok[k] = r.path_node not in truth["paired_path"]
    return ok


def case_metrics(m: pd.DataFrame, case, truth: dict) -> dict:
    ok = score_rows(m, truth)
    pair = (m["kind"] == "pair").to_numpy()
    auto = (m["decision"] == "auto").to_numpy()
    found = {(int(a), b) for a, b in zip(m.loc[pair, "mr_node"], m.loc[pair, "path_node"], strict=True)}
    auto_found = {(int(a), b) for a, b, d in zip(m.loc[pair, "mr_node"], m.loc[pair, "path_node"],
                                                  m.loc[pair, "decision"], strict=True) if d == "auto"}
    status = {p.node: p.status.value for p in case.path_nodes}
    pred: dict[int, str | None] = {}
    for a, b in found:
        pred[a] = "positive" if status[b] == "positive" or pred.get(a) == "positive" else "negative"
    labels = sorted(truth["mr_status"])
    outcome_ok = sum(pred.get(lab) == truth["mr_status"][lab] for lab in labels)
    return {"tp": len(found & truth["pairs"]), "found": len(found), "true": len(truth["pairs"]),
            "auto_ok": int(ok[auto].sum()), "auto_n": int(auto.sum()), "auto_tp": len(auto_found & truth["pairs"]),
            "meta_tp": len(found & truth["meta"]), "meta": len(truth["meta"]),
            "outcome_ok": outcome_ok, "mr_n": len(labels), "conf": m["confidence"].to_numpy(float), "ok": ok}


def summarise(rows: list[dict]) -> dict:
    s = {k: sum(r[k] for r in rows) for k in ("tp", "found", "true", "auto_ok", "auto_n", "auto_tp", "meta_tp",
                                                "meta", "outcome_ok", "mr_n")}
    conf = np.concatenate([r["conf"] for r in rows])
    ok = np.concatenate([r["ok"] for r in rows])
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs(conf[bins == b].mean() - ok[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins))
    p, r = s["tp"] / max(s["found"], 1), s["tp"] / max(s["true"], 1)
    return {"P": p, "R": r, "F1": 2 * p * r / max(p + r, 1e-9), "autoP": s["auto_ok"] / max(s["auto_n"], 1),
            "autoCov": s["auto_tp"] / max(s["true"], 1), "metaR": s["meta_tp"] / max(s["meta"], 1),
            "outcome": s["outcome_ok"] / max(s["mr_n"], 1), "ECE": ece / max(len(conf), 1)}


def run_neckmatch(item: dict, params: MatchParams | None = None) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    res = match_case(item["case"], item["levels"], item["spec"], params=params)
    return res.matches, time.perf_counter() - t0


def _rows_from_partner(item: dict, partner: np.ndarray, conf_pair: np.ndarray, conf_un: np.ndarray,
                       threshold: float) -> pd.DataFrame:
    """matches-like rows (mr_node, path_node, kind, confidence, decision) from a partner array over units."""
    mr, units = ev.mr_nodes(item["case"], item["levels"]), ev.path_units(item["case"])
    rows, used = [], set()
    for i, j in enumerate(partner):
        if j >= 0:
            used.add(j)
            rows += [(int(mr.node[i]), n, "pair", conf_pair[i]) for n in units.members[j]]
        else:
            rows.append((int(mr.node[i]), None, "mr-unmatched", conf_un[i]))
    rows += [(None, n, "path-unmatched", 1.0) for j in range(len(units.unit)) if j not in used
             for n in units.members[j]]
    df = pd.DataFrame(rows, columns=["mr_node", "path_node", "kind", "confidence"])
    df["decision"] = np.where(df["confidence"] >= threshold, "auto", "review")
    return df


def run_hungarian(item: dict) -> tuple[pd.DataFrame, float]:
    """Plain Hungarian on the unary costs (no EM, no warp): every allowed pair must be used, no confidence."""
    params = MatchParams(estimate_shrinkage=False, estimate_warp=False, estimate_pos_sd=False, n_iter=1)
    w = match_case(item["case"], item["levels"], item["spec"], params=params).weights.to_numpy()
    t0 = time.perf_counter()
    partner = np.full(w.shape[0], -1)
    if w.size:
        r, c = linear_sum_assignment(np.where(np.isfinite(w), -w, 1e6))
        keep = np.isfinite(w[r, c])
        partner[r[keep]] = c[keep]
    dt = time.perf_counter() - t0
    one = np.ones(w.shape[0])
    return _rows_from_partner(item, partner, one, one, 0.0), dt


def _affinity(w: np.ndarray, rel: np.ndarray, rows: np.ndarray, cols: np.ndarray, units) -> np.ndarray:
    """pygmtools affinity K (n1 n2 x n1 n2, column-major pairs): unary sigmoid(w); pairwise agreement of the
    relative displacement between two MR nodes and between two pathology nodes of one container."""
    n1, n2 = len(rows), len(cols)
    ww = w[np.ix_(rows, cols)]
    un = np.where(np.isfinite(ww), 1.0 / (1.0 + np.exp(-np.clip(ww, -30, 30))), 0.0)
    idx_i, idx_a = np.meshgrid(np.arange(n1), np.arange(n2), indexing="xy")  # column-major: a * n1 + i
    ii, aa = idx_i.ravel(order="C"), idx_a.ravel(order="C")
    mr_rel = rel[np.ix_(rows, cols)][ii, aa]  # (n1 n2, 2)
    obs = np.column_stack([units.cc[cols][aa], units.ap[cols][aa]])
    d = (mr_rel[:, None, :] - mr_rel[None, :, :]) - (obs[:, None, :] - obs[None, :, :])
    pw = np.exp(-np.nansum(d**2, axis=-1) / (4 * 0.1**2))
    known = np.all(np.isfinite(d), axis=-1)
    cont = np.array(units.container, dtype=object)[cols][aa]
    valid = known & (cont[:, None] == cont[None, :]) & (ii[:, None] != ii[None, :]) & (aa[:, None] != aa[None, :])
    K = np.where(valid, pw, 0.0) * np.sqrt(np.outer(un.ravel(order="F"), un.ravel(order="F")))
    K[np.diag_indices_from(K)] = un.ravel(order="F")
    return K


def run_pygm(item: dict, solver: str) -> tuple[pd.DataFrame, float]:
    """pygmtools RRWM or IPFP on the same unary + a pairwise position affinity, per connected component."""
    import pygmtools as pygm

    pygm.set_backend("numpy")
    res = match_case(item["case"], item["levels"], item["spec"])
    w = res.weights.to_numpy()
    mr, units = ev.mr_nodes(item["case"], item["levels"]), ev.path_units(item["case"])
    rel = ev.relative_positions(mr, units, res.specimen)
    t0 = time.perf_counter()
    partner = np.full(w.shape[0], -1)
    conf = np.ones(w.shape[0])
    for rows, cols in components(w):
        if len(rows) == 0 or len(cols) == 0:
            continue
        K = _affinity(w, rel, rows, cols, units)
        n1, n2 = np.array([len(rows)]), np.array([len(cols)])
        fn = pygm.rrwm if solver == "rrwm" else pygm.ipfp
        X = fn(K[None], n1, n2) if solver == "rrwm" else fn(K[None], n1, n2)
        X = np.asarray(X)[0] if np.asarray(X).ndim == 3 else np.asarray(X)
        hard = np.asarray(pygm.hungarian(X))
        for a, b in zip(*np.nonzero(hard), strict=True):
            if w[rows[a], cols[b]] > 0:
                partner[rows[a]] = cols[b]
                conf[rows[a]] = float(np.clip(X[a, b] / max(X[a].sum(), 1e-12), 0, 1))
    dt = time.perf_counter() - t0
    return _rows_from_partner(item, partner, conf, np.ones(w.shape[0]), 0.97), dt


def evaluate(cohort: list[dict], runner) -> dict[str, dict]:
    """Metrics of one method for cases with positions, without, and all."""
    per, times = [], []
    for item in cohort:
        m, dt = runner(item)
        times.append(dt)
        per.append((item["positions"], case_metrics(m, item["case"], truth_of(item["gt"]))))
    out = {}
    for name, sel in (("with cc/ap", True), ("without", False), ("all", None)):
        rows = [r for p, r in per if sel is None or p == sel]
        if rows:
            out[name] = summarise(rows) | {"ms/case": 1000 * float(np.mean(times)),
                                           "ms max": 1000 * float(np.max(times))}
    return out


def oracle_params(sp: SynthParams) -> MatchParams:
    """MatchParams set from the generator's true noise parameters."""
    return MatchParams(shrinkage=1 - sp.shrinkage_mean, shrinkage_prior_sd=0.02, pos_sd=sp.position_noise,
                       stretch_prior_sd=sp.stretch_sd, shift_prior_sd=max(sp.shift_sd, 1e-3),
                       miss_max=sp.harvest_miss_rate, miss_half_mm=sp.harvest_miss_size_mm, miss_floor=0.005,
                       p_runner=sp.container_error_rate, estimate_pos_sd=False)


def true_warps(item: dict, params: MatchParams) -> dict:
    """Oracle warps: each container's warp fitted on the TRUE pairs (the generator's stretch and shift as seen in
    the engine's frame; only the per-node position noise remains)."""
    case = item["case"]
    mr, units = ev.mr_nodes(case, item["levels"]), ev.path_units(case)
    rel = ev.relative_positions(mr, units, item["spec"])
    uidx = {n: j for j, mem in enumerate(units.members) for n in mem}
    ridx = {int(v): i for i, v in enumerate(mr.node)}
    prs = sorted({(ridx[a], uidx[b]) for a, b in truth_of(item["gt"])["pairs"] if a in ridx and b in uidx})
    return ev.fit_warp(rel, units, np.array(prs, dtype=np.int64).reshape(-1, 2), params)


def loo_warps(item: dict, params: MatchParams) -> dict:
    """Leave-one-out oracle warps: for every pathology unit, its container's warp fitted on the TRUE pairs of the
    other units (keyed by unit id). Unlike :func:`true_warps` it does not fit a unit's own position into the warp
    it is then judged by (with 2-10 pairs per container that in-sample fit is optimistic)."""
    case = item["case"]
    mr, units = ev.mr_nodes(case, item["levels"]), ev.path_units(case)
    rel = ev.relative_positions(mr, units, item["spec"])
    uidx = {n: j for j, mem in enumerate(units.members) for n in mem}
    ridx = {int(v): i for i, v in enumerate(mr.node)}
    prs = np.array(sorted({(ridx[a], uidx[b]) for a, b in truth_of(item["gt"])["pairs"] if a in ridx and b in uidx}),
                   dtype=np.int64).reshape(-1, 2)
    out = {}
    for j, unit in enumerate(units.unit):
        w = ev.fit_warp(rel, units, prs[prs[:, 1] != j], params).get(units.container[j])
        if w is not None:
            out[unit] = w
    return out


def run_oracle_loo(item: dict) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    res = match_case(item["case"], item["levels"], item["spec"], warps=loo_warps(item, MatchParams()))
    return res.matches, time.perf_counter() - t0


def run_oracle_warps(item: dict) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    res = match_case(item["case"], item["levels"], item["spec"], warps=true_warps(item, MatchParams()))
    return res.matches, time.perf_counter() - t0


def calibrate_on(cohort: list[dict]) -> None:
    """Fit the per-kind logistic calibration and the auto threshold; print the constants."""
    frames = []
    for item in cohort:
        m, _ = run_neckmatch(item)
        m = m.assign(ok=score_rows(m, truth_of(item["gt"])))
        frames.append(m[~m["constrained"] & ~m["reason"].isin(["undissected", "no-counterpart"])])
    df = pd.concat(frames)
    df["key"] = calibration_keys(df["kind"].to_numpy(str), df["path_size_mm"].notna().to_numpy(),
                                 df["position_mm"].notna().to_numpy())
    table = {}
    for key, g in df.groupby("key"):
        table[key] = fit_logistic(g["margin"].to_numpy(float), g["ok"].to_numpy(bool))
    conf = calibrate(df["margin"].to_numpy(float), df["key"].to_numpy(str), table)
    thr = auto_threshold(conf, df["ok"].to_numpy(bool), 0.97)
    print("CALIBRATION =", {k: (round(a, 4), round(b, 4)) for k, (a, b) in table.items()})
    print("AUTO_THRESHOLD =", round(thr, 4))


def merge_table(cohort: list[dict]) -> pd.DataFrame:
    """Per MR label of every case: true node count ``k``, harvested partner sizes ``sizes`` (largest first) and the
    shape measures (``L`` long, ``S`` short axis mm, ``V`` volume mm^3)."""
    rows = []
    for item in cohort:
        gt, lv = item["gt"], item["levels"].set_index("node")
        size = {p.node: p.size_mm for p in item["case"].path_nodes}
        g = gt[gt["mr_label"] != ""]
        for lab, part in g.groupby("mr_label"):
            r = lv.loc[int(lab)]
            sizes = sorted((size[x] for x in part["path_node"] if x and size.get(x)), reverse=True)
            rows.append({"k": len(part), "L": r.long_axis_mm, "S": r.short_axis_mm, "V": r.volume_mm3,
                         "sizes": sizes})
    return pd.DataFrame(rows)


def fit_merge_model(cohort: list[dict], shrinkage: float = 0.85) -> None:
    """Fit and print the merged-label prior (logistic on the label's shape) and the piece-size mixture."""
    import statsmodels.api as sm

    t = merge_table(cohort)
    X = np.column_stack([np.ones(len(t)), np.log(t.L / t.S), np.log(t.L), np.log(t.V / (np.pi / 6 * t.L * t.S**2))])
    coef = sm.Logit((t.k >= 2).to_numpy(float), X).fit(disp=0).params
    two = t[(t.k >= 2) & (t["sizes"].str.len() >= 2)]
    big = np.log([s[0] for s in two["sizes"]] / (shrinkage * two.L))
    small = np.log([s[1] for s in two["sizes"]] / (shrinkage * two.L))
    print(f"merged labels {int((t.k >= 2).sum())} of {len(t)}; with two sizes {len(two)}")
    print("merge_coef =", tuple(round(float(c), 3) for c in coef))
    print("merge_piece =", tuple(round(float(v), 3) for v in (big.mean(), big.std(), small.mean(), small.std())))


def _print(title: str, results: dict[str, dict[str, dict]]) -> None:
    print(f"\n## {title}")
    keys = ["P", "R", "F1", "autoP", "autoCov", "metaR", "outcome", "ECE", "ms/case"]
    for subset in ("with cc/ap", "without", "all"):
        print(f"\n{subset}\n{'method':<16}" + "".join(f"{k:>9}" for k in keys))
        for name, res in results.items():
            if subset in res:
                print(f"{name:<16}" + "".join(f"{res[subset][k]:>9.3f}" for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--no-pygm", action="store_true")
    ap.add_argument("--families", type=int, default=16,
                    help="cases per misspecification family for the per-family table (benchmarks/families.py); 0: skip")
    args = ap.parse_args()
    if args.calibrate:
        cal = load_cohort(60, CAL_SEED)
        fit_merge_model(cal)
        calibrate_on(cal)
        return
    sp = SynthParams()
    cohort = load_cohort(args.n, args.seed, sp)
    runners = {"neckmatch": run_neckmatch, "hungarian": run_hungarian,
               "oracle params": lambda it: run_neckmatch(it, oracle_params(sp)), "oracle warps": run_oracle_warps,
               "oracle warps LOO": run_oracle_loo}
    if not args.no_pygm:
        runners |= {"pygm-rrwm": lambda it: run_pygm(it, "rrwm"), "pygm-ipfp": lambda it: run_pygm(it, "ipfp")}
    print(f"{args.n} synthetic cases, seed {args.seed}; {sum(c['positions'] for c in cohort)} with cc/ap")
    _print("methods", {k: evaluate(cohort, f) for k, f in runners.items()})
    if args.families:
        import subprocess
        import sys

        print("\n## per misspecification family (benchmarks/families.py)", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("families.py")), "--n", str(args.families),
                        "--seed", str(args.seed)], check=True)
    if args.sweep:
        knobs = {"position_noise": (0.04, 0.16), "stretch_sd": (0.05, 0.30), "shrinkage_sd": (0.02, 0.10),
                 "container_error_rate": (0.1, 0.5), "harvest_miss_rate": (0.2, 0.6)}
        for knob, values in knobs.items():
            res = {}
            for v in values:
                p = dataclasses.replace(sp, **{knob: v})
                res[f"{knob}={v}"] = evaluate(load_cohort(max(args.n // 2, 20), args.seed, p), run_neckmatch)
            _print(f"sweep {knob}", res)


if __name__ == "__main__":
    main()
