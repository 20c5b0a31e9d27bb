"""Diagnostic accuracy of MRI against pathology, level by level, on the real ISB lyDATA cohort.

Run:  .venv/bin/python examples/statistics/lydata_accuracy.py [OUT_DIR] [LYDATA_CSV]
Reads the lyDATA file ``2023-isb-multisite/data.csv`` (default: ``../shared/data/lydata/...`` beside the repo;
github.com/rmnldwg/lydata, CC BY-SA 4.0) and writes into OUT_DIR (default: a new temporary folder):

- ``accuracy.csv``: one row per level and side (ipsi / contra) with TP/FP/FN/TN, sensitivity, specificity, PPV,
  NPV and their Wilson 95 % intervals; a pooled row (levels I-V of both sides, ``level=all``) with patient-cluster
  bootstrap and GEE intervals; and a patient row (any level positive);
- ``forest_mri_vs_pathology.png`` / ``.svg``: forest plot of sensitivity and specificity per level and side.

It prints the pooled row and the patient row. The bootstrap uses a fixed seed (0), so reruns agree.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from neckmatch.io.atomic import write_csv
from neckmatch.stats.lydata import lydata_accuracy, read_lydata
from neckmatch.viz.plots import plot_forest

LYDATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lydata" / "2023-isb-multisite" / "data.csv"
N_BOOT = 500  # cluster-bootstrap resamples of the pooled row (2000 in `neckmatch stats lydata`)


def main(out: Path, source: Path = LYDATA) -> None:
    # 1. lyDATA: three header rows; columns flattened to "MRI|ipsi|IIa" and alike.
    frame = read_lydata(source)
    print(f"{source.name}: {len(frame)} patients")
    # 2. Level-wise accuracy of MRI against pathology (the neck dissection), pooled and per patient.
    table = lydata_accuracy(frame, "MRI", "pathology", n_boot=N_BOOT, seed=0, source=source)
    cols = ["unit", "level", "side", "tp", "fp", "fn", "tn", "sensitivity", "sensitivity_low", "sensitivity_high",
            "specificity", "specificity_low", "specificity_high"]  # fmt: skip
    summary_rows = table[table["level"].isin(["all", "any"])]
    print(summary_rows[cols].round(3).to_string(index=False))
    pooled = summary_rows.iloc[0]
    extra = [c for c in ("sensitivity_low_boot", "sensitivity_high_boot", "design_effect") if c in table.columns]
    print("pooled, patient-cluster bootstrap:", ", ".join(f"{c} {pooled[c]:.3f}" for c in extra))
    # 3. Table and forest plot (levels with no patient assessed by both are dropped from the plot).
    write_csv(table, out / "accuracy.csv")
    shown = table[(table["unit"] == "level") & (table[["tp", "fp", "fn", "tn"]].sum(axis=1) > 0)]
    # plot_forest orders rows by neckmatch's level names (IIA, not lyDATA's IIa): upper-case them for the plot
    shown = shown.assign(level=shown["level"].where(shown["level"] == "all", shown["level"].str.upper()))
    for path in [out / "accuracy.csv", *plot_forest(shown, out / "forest_mri_vs_pathology")]:
        print(f"wrote {path}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="neckmatch-lydata-")),
        Path(sys.argv[2]) if len(sys.argv) > 2 else LYDATA,
    )
