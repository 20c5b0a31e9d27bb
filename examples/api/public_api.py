"""The public API end to end, with nothing but ``import neckmatch as nm``: a synthetic cohort, one case matched
step by step, the truth tables, the study statistics of the cohort, and the results written and read back.

Run:  .venv/bin/python examples/api/public_api.py [OUT_DIR]

Writes ``cohort/`` (3 synthetic cases), ``results/<case>/`` (every per-case output) and ``accuracy.csv``
(sensitivity, specificity, PPV, NPV per node / level / side / patient with intervals).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

import neckmatch as nm


def main(out: Path) -> None:
    cases = nm.generate_cohort(3, seed=11, out_dir=out / "cohort")

    # one case, stage by stage
    case = nm.read_case(cases[0])
    levels = nm.levels_table(case)
    res = nm.match_case(case, levels)
    decisions = res.matches["decision"].value_counts().to_dict()
    print(f"{case.case_id}: {len(levels)} MR nodes, {len(case.path_nodes)} pathology nodes, decisions {decisions}")
    print(res.truth_tables["levels"][["side", "level", "mr_call", "path_status", "outcome"]].head(6).to_string())

    # every case in one call each; the results folder reads back into the same object
    nodes = []
    for folder in cases:
        result = nm.run_case(nm.read_case(folder))
        written = nm.write_results(result, _mkdir(out / "results" / result.case_id))
        print(f"wrote {written[0]}")
        nodes.append(nm.read_results(out / "results" / result.case_id).truth)
    stacked = {k: pd.concat([t[k] for t in nodes], ignore_index=True) for k in nodes[0]}
    acc = nm.truth_accuracy(stacked, n_boot=200, seed=0)
    acc.to_csv(out / "accuracy.csv", index=False)
    print(f"wrote {out / 'accuracy.csv'}")
    pooled = acc[(acc["analysis"] == "main") & acc["level"].isin(["all", "any"]) & (acc["side"] == "both")]
    cols = ["unit", "n", "sensitivity", "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
            "specificity_high"]
    print(pooled[cols].round(3).to_string(index=False))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="neckmatch-api-")))
