"""Matching under misspecification: every metric per family, leave-one-family-out calibration (not a timed test).

    python benchmarks/families.py [--n 24] [--seed 2024] [--families a,b] [--independent N] [--reliability]

For each family of :data:`neckmatch.synth.misspec.FAMILIES` (and, with ``--independent N``, the independent
cohort of ``benchmarks/independent.py``, never used for tuning), matches ``--n`` cases and prints, per family:
pair precision / recall / F1 (all cases, with and without cc/ap), auto precision and coverage of the true pairs
and the ECE (10 equal bins) with the package calibration; then the same auto precision / coverage / ECE with
the calibration (per-kind logistic + certified auto threshold, target precision 0.97, delta 0.05) refitted
**leave-one-family-out** on the other families; and the worst family of each metric. ``--reliability`` prints
each family's reliability diagram (10 bins: mean confidence, share right, count). ``--fit`` prints the
calibration constants fitted on all own families (for neckmatch/correlation/calibration.py).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matching import case_metrics, load_cohort, read_item, run_neckmatch, score_rows, summarise, truth_of  # noqa: E402

from neckmatch.correlation.calibration import (  # noqa: E402
    AUTO_THRESHOLD,
    CALIBRATION,
    calibrate,
    calibration_keys,
    fit_logistic,
    guaranteed_threshold,
)
from neckmatch.correlation.evidence import MatchParams  # noqa: E402
from neckmatch.synth.misspec import FAMILIES  # noqa: E402

TARGET, DELTA = 0.97, 0.05
KEYS = True  # calibrate per evidence class (calibration_keys), not per decision kind only
_FIXED = ("undissected", "no-counterpart")


def run_family(cohort: list[dict], params: MatchParams | None = None) -> list[dict]:
    """Match every case; keep its matches (with correctness) and truth."""
    out = []
    for item in cohort:
        m, dt = run_neckmatch(item, params)
        truth = truth_of(item["gt"])
        out.append({"m": m.assign(ok=score_rows(m, truth)), "truth": truth, "case": item["case"],
                    "positions": item["positions"], "dt": dt})
    return out


def _keys(m: pd.DataFrame) -> np.ndarray:
    return calibration_keys(m["kind"].to_numpy(str), m["path_size_mm"].notna().to_numpy(),
                            m["position_mm"].notna().to_numpy())


def _learnable(m: pd.DataFrame) -> np.ndarray:
    """Rows whose confidence comes from a margin (not fixed by construction or by people)."""
    return (~m["constrained"].astype(bool) & ~m["reason"].isin(_FIXED) & (m["confidence"] < 1.0)).to_numpy()


def fit_calibration(runs: list[dict]) -> tuple[dict[str, tuple[float, float]], float]:
    """Per-kind logistic calibration and the certified auto threshold from the learnable rows of ``runs``."""
    df = pd.concat([r["m"][_learnable(r["m"])] for r in runs])
    df = df.assign(key=_keys(df) if KEYS else df["kind"])
    table = {str(k): fit_logistic(g["margin"].to_numpy(float), g["ok"].to_numpy(bool)) for k, g in df.groupby("key")}
    conf = calibrate(df["margin"].to_numpy(float), df["key"].to_numpy(str), table)
    cert = guaranteed_threshold(conf, df["ok"].to_numpy(bool), TARGET, DELTA)
    return table, cert.threshold if cert.threshold is not None else 1.0


def recalibrated(runs: list[dict], table: dict[str, tuple[float, float]], thr: float) -> list[dict]:
    """The same matches with confidence and decisions from another calibration."""
    out = []
    for r in runs:
        m = r["m"].copy()
        learn = _learnable(m)
        keys = _keys(m) if KEYS else m["kind"].to_numpy(str)
        conf = calibrate(m["margin"].fillna(50.0).to_numpy(float), keys, table)
        m["confidence"] = np.where(learn, conf, m["confidence"].to_numpy(float))
        m["decision"] = np.where(m["confidence"] >= thr, "auto", "review")
        out.append(r | {"m": m})
    return out


def metrics(runs: list[dict], subset: bool | None = None) -> dict:
    rows = [case_metrics(r["m"], r["case"], r["truth"]) for r in runs if subset is None or r["positions"] == subset]
    return summarise(rows) if rows else {}


def reliability(runs: list[dict]) -> list[tuple[float, float, int]]:
    conf = np.concatenate([r["m"]["confidence"].to_numpy(float) for r in runs])
    ok = np.concatenate([r["m"]["ok"].to_numpy(bool) for r in runs])
    bins = np.minimum((conf * 10).astype(int), 9)
    return [(float(conf[bins == b].mean()), float(ok[bins == b].mean()), int((bins == b).sum()))
            for b in range(10) if (bins == b).any()]


_COLS = ["F1", "F1 pos", "F1 nopos", "autoP", "autoCov", "autoP pos", "ECE", "LOFO autoP", "LOFO cov",
         "LOFO ECE", "LOFO thr"]


def family_row(runs: list[dict], lofo: list[dict], thr: float) -> dict[str, float]:
    a, ap, an, lo = metrics(runs), metrics(runs, True), metrics(runs, False), metrics(lofo)
    return {"F1": a["F1"], "F1 pos": ap.get("F1", np.nan), "F1 nopos": an.get("F1", np.nan), "autoP": a["autoP"],
            "autoCov": a["autoCov"], "autoP pos": ap.get("autoP", np.nan), "ECE": a["ECE"],
            "LOFO autoP": lo["autoP"], "LOFO cov": lo["autoCov"], "LOFO ECE": lo["ECE"], "LOFO thr": thr}


def _params(text: str) -> MatchParams | None:
    """MatchParams with ``name=value`` changes (comma-separated; values parsed as Python literals)."""
    import ast

    if not text:
        return None
    changes = {}
    for item in text.split(","):
        k, v = item.split("=")
        changes[k.strip()] = float("inf") if v.strip() == "inf" else ast.literal_eval(v.strip())
    return MatchParams(**changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--independent", type=int, default=0, help="also N cases of benchmarks/independent.py")
    ap.add_argument("--reliability", action="store_true")
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--dump", type=Path, help="pickle the matched families here (for --load)")
    ap.add_argument("--load", type=Path, help="re-score families matched earlier (--dump) instead of matching")
    ap.add_argument("--kinds-only", action="store_true", help="calibrate per decision kind (as before issue 14)")
    ap.add_argument("--set", default="", help="MatchParams changes, e.g. pos_df=4,estimate_size_sd=True")
    args = ap.parse_args()
    params = _params(args.set)
    global KEYS
    KEYS = not args.kinds_only
    root = Path(tempfile.mkdtemp(prefix="nm_fam_"))
    runs: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    if args.load:
        runs = pickle.loads(args.load.read_bytes())
    for fam in [f for f in args.families.split(",") if f and f != "none" and not args.load]:
        runs[fam] = run_family(load_cohort(args.n, args.seed, root=root, family=fam), params)
    if args.dump:
        args.dump.write_bytes(pickle.dumps(runs))
    ms = 1000 * np.mean([r["dt"] for rs in runs.values() for r in rs]) if runs else np.nan
    print(f"{args.n} cases per family, seed {args.seed}, params {args.set or 'default'}; {ms:.0f} ms/case match; "
          f"{time.perf_counter() - t0:.0f} s total; package AUTO_THRESHOLD {AUTO_THRESHOLD}")
    table: dict[str, dict[str, float]] = {}
    for fam, rs in runs.items():
        cal, thr = fit_calibration([r for f, x in runs.items() if f != fam for r in x])
        table[fam] = family_row(rs, recalibrated(rs, cal, thr), thr)
        if args.reliability:
            print(f"reliability {fam}: " + ", ".join(f"{c:.2f}:{o:.2f}/{n}" for c, o, n in reliability(rs)))
    if args.independent:
        from independent import case_seed, make_case

        ind = run_family([read_item(make_case(case_seed(args.seed, k), f"IND{k + 1:03d}", root / "independent"))
                          for k in range(args.independent)], params)
        # calibrated on every own family of this run; with none, the package calibration and threshold
        cal, thr = fit_calibration([r for x in runs.values() for r in x]) if runs else (CALIBRATION, AUTO_THRESHOLD)
        table["INDEPENDENT"] = family_row(ind, recalibrated(ind, cal, thr), thr)
        if args.reliability:
            print("reliability INDEPENDENT: " + ", ".join(f"{c:.2f}:{o:.2f}/{n}" for c, o, n in reliability(ind)))
    frame = pd.DataFrame(table).T[_COLS]
    print("\n| family | " + " | ".join(_COLS) + " |\n|---|" + "---|" * len(_COLS))
    for fam, row in frame.iterrows():
        print(f"| {fam} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    own = frame.drop(index=["INDEPENDENT"], errors="ignore")
    if len(own):
        worst = {c: (own[c].idxmax() if "ECE" in c else own[c].idxmin()) for c in _COLS if c != "LOFO thr"}
        print("\nworst family: " + "; ".join(f"{c} {f} {own.at[f, c]:.3f}" for c, f in worst.items()))
    if args.fit:
        cal, thr = fit_calibration([r for x in runs.values() for r in x])
        print("CALIBRATION =", {k: (round(a, 4), round(b, 4)) for k, (a, b) in cal.items()})
        print("AUTO_THRESHOLD =", round(thr, 4))


if __name__ == "__main__":
    main()
