"""The reader study of a cohort run (docs/reader-study.md): every reading of every case's ``mri/reads.csv`` on the
trusted node pairs, the modalities compared by MRMC ROC, and each reader's learning curve.

Written into ``<results>/reader_study/`` by :func:`write_reader_study` (called by the cohort report):

* ``reads.csv``: one row per reading of a matched MR node whose pathology status is known (``case_id``,
  ``node``, the reading's columns, ``path_status``, ``level``, ``side``, ``decision``); the input of
  ``neckmatch score develop / validate``;
* ``mrmc.csv`` / ``mrmc_readers.csv``: the modalities compared (Obuchowski-Rockette, :mod:`neckmatch.stats.mrmc`)
  on the pilot readings, unit = matched node, jackknife by patient (clustered AUC);
* ``learning_curve_<reader>.csv`` and ``learning_curves.png/svg``: LC-CUSUM per reader on the first modality;
* ``summary.json``: what was analysed and why anything was not.

The figure is drawn by the caller's ``draw`` (the report passes :func:`neckmatch.viz.learning.learning_curve_figure`):
statistics do not import plotting.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neckmatch.errors import InputError
from neckmatch.io.atomic import atomic_files, write_csv, write_text
from neckmatch.io.case import read_manifest
from neckmatch.io.study_reads import feature_columns, read_study_reads
from neckmatch.stats.accuracy import _as_bool_array
from neckmatch.stats.learning import learning_curve
from neckmatch.stats.mrmc import mrmc_data, or_analysis, reader_aucs

__all__ = ["collect_study_reads", "mrmc_long_table", "write_reader_study", "reader_study_section"]

STUDY_DIR = "reader_study"


def collect_study_reads(records: Sequence[Any], nodes: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
    """Every reading of the finished cases joined to the node truth table; only trusted node pairs (matched MR
    nodes with a known pathology status) are kept. ``truth`` is 1.0 / 0.0 (positive / negative).

    A case whose reads break the reader-study spec is left out, with the error appended to ``notes``.
    """
    frames = []
    for rec in records:
        if rec.status == "failed":
            continue
        try:
            path = read_manifest(rec.case_dir)["files"].get("mri.reads")
            if path is not None:
                frames.append(read_study_reads(path).assign(case_id=rec.case_id))
        except InputError as exc:
            if notes is not None:
                notes.append(f"case {rec.case_id} left out of the reader study: {exc.field}: {exc.message}")
    if not frames or nodes.empty:
        return pd.DataFrame()
    reads = pd.concat(frames, ignore_index=True)
    info = nodes[nodes["mr_node"].notna() & (nodes["match_kind"] == "matched")]
    info = info[["case_id", "mr_node", "path_status", "level", "side", "decision"]].copy()
    info["mr_node"] = pd.to_numeric(info["mr_node"]).astype("Int64")
    info["case_id"] = info["case_id"].astype(str)
    out = reads.merge(info.rename(columns={"mr_node": "node"}), on=["case_id", "node"], how="inner")
    out["truth"] = _as_bool_array(out["path_status"].to_numpy(dtype=object))
    out = out[out["truth"].notna()]
    first = ["case_id", "node", "reader", "modality", "phase", "read_order", "read_at", "score", "malignant"]
    rest = [c for c in out.columns if c not in first]
    return out[first + rest].reset_index(drop=True)


def _is_study(reads: pd.DataFrame) -> bool:
    return bool(reads["modality"].ne("").any() or reads["read_order"].notna().any() or reads["read_at"].ne("").any()
                or feature_columns(reads) or reads["phase"].ne("pilot").any())


def _first_readings(reads: pd.DataFrame) -> pd.DataFrame:
    """Each (node, reader, modality) once: the earliest reading (repeat readings are for intra-reader agreement)."""
    key = reads["read_order"].fillna(np.inf)
    return (reads.assign(_k=key).sort_values("_k", kind="stable")
            .drop_duplicates(["case_id", "node", "reader", "modality"]).drop(columns="_k"))


def mrmc_long_table(reads: pd.DataFrame) -> pd.DataFrame:
    """The MRMC long table of the pilot readings (all readings where there is no pilot phase): ``reader, test,
    case, truth, score, cluster`` with ``test`` = modality, ``case`` = ``case_id:node``, ``cluster`` = patient;
    only nodes read by every reader under every modality (a fully crossed design)."""
    rows = reads[reads["phase"] == "pilot"] if (reads["phase"] == "pilot").any() else reads
    rows = _first_readings(rows[rows["score"].notna()])
    table = pd.DataFrame({"reader": rows["reader"], "test": rows["modality"],
                          "case": rows["case_id"].astype(str) + ":" + rows["node"].astype(str),
                          "truth": rows["truth"].astype(int), "score": rows["score"], "cluster": rows["case_id"]})
    need = table["reader"].nunique() * table["test"].nunique()
    complete = table.groupby("case")["reader"].transform("size") == need
    return table[complete].reset_index(drop=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "reader"


def _learning(reads: pd.DataFrame) -> dict[str, pd.DataFrame]:
    order = "read_order" if reads["read_order"].notna().any() else "read_at" if reads["read_at"].ne("").any() else ""
    if not order:
        return {}
    first_modality = reads["modality"].iloc[0]
    rows = reads[(reads["modality"] == first_modality) & reads["malignant"].notna()]
    rows = rows[rows[order].notna() & (rows[order] != "")]
    rows = rows.assign(correct=rows["malignant"].astype(bool) == (rows["truth"] == 1))
    return {str(r): learning_curve(g, order=order) for r, g in rows.groupby("reader", sort=True)}


def write_reader_study(out_dir: Path, records: Sequence[Any], tables: dict[str, pd.DataFrame],
                       draw: Callable[[Mapping[str, pd.DataFrame], Path], Any] | None = None) -> dict[str, Path]:
    """Write ``out_dir/reader_study/`` (see the module docstring); nothing where no reads carry reader-study
    columns (``modality``, ``read_order`` / ``read_at``, ``phase``, ``f_*``).

    ``records`` have ``case_id``, ``case_dir`` and ``status`` (cohort run records); ``tables["nodes"]`` is the
    stacked node truth table. ``draw(curves, stem)`` draws the learning-curve figure as ``stem.png`` / ``.svg``.
    """
    notes: list[str] = []
    reads = collect_study_reads(records, tables.get("nodes", pd.DataFrame()), notes)
    if reads.empty or not _is_study(reads):
        return {}
    summary: dict[str, Any] = {"readings": len(reads), "patients": int(reads["case_id"].nunique()),
                               "nodes": int(reads[["case_id", "node"]].drop_duplicates().shape[0]), "notes": notes}
    out = Path(out_dir) / STUDY_DIR
    with atomic_files(out) as tmp:
        write_csv(reads.drop(columns="truth"), tmp / "reads.csv")
        long = mrmc_long_table(reads)
        if long["test"].nunique() >= 2 and not long.empty:
            try:
                data = mrmc_data(long, "reader_study/reads.csv", cluster="cluster")
                write_csv(or_analysis(data), tmp / "mrmc.csv")
                write_csv(reader_aucs(data), tmp / "mrmc_readers.csv")
                summary["mrmc"] = {"tests": list(data.tests), "readers": len(data.readers), "nodes": len(data.cases),
                                   "patients": int(data.groups.max()) + 1}
            except InputError as exc:
                summary["notes"].append(f"MRMC not computed: {exc.message}")
        else:
            summary["notes"].append("MRMC not computed: the reads compare fewer than two modalities")
        curves = _learning(reads)
        for reader, curve in curves.items():
            write_csv(curve, tmp / f"learning_curve_{_safe(reader)}.csv")
        if curves:
            if draw is not None:
                draw(curves, tmp / "learning_curves")
            summary["learning"] = {r: {"readings": len(c), "accuracy": float(c["correct"].mean()),
                                       "limit": float(c["limit"].iloc[0]),
                                       "competent_at": int(c.loc[c["signal"], "index"].iloc[0]) if c["signal"].any()
                                       else None} for r, c in curves.items()}
        write_text(json.dumps(summary, indent=2) + "\n", tmp / "summary.json")
    return {f"{STUDY_DIR}/{p.name}": p for p in sorted(out.iterdir()) if p.is_file()}


def _fmt(v: Any, digits: int = 3) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))


def reader_study_section(out_dir: Path) -> str:
    """The report's reader-study section (empty string where the run wrote no reader study)."""
    folder = Path(out_dir) / STUDY_DIR
    if not (folder / "summary.json").is_file():
        return ""
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    parts = ["<h2>Reader study</h2>",
             f"<p>{summary['readings']} readings of {summary['nodes']} matched nodes with known pathology in "
             f"{summary['patients']} patients.</p>"]
    if (folder / "mrmc.csv").is_file():
        m = pd.read_csv(folder / "mrmc.csv", dtype={"test_a": str, "test_b": str}, keep_default_na=False,
                        na_values=[""])
        rrrc = m[m["analysis"] == "RRRC"] if (m["analysis"] == "RRRC").any() else m[m["analysis"] == "FRRC"]
        rows = "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in
                                        ("analysis", "test_a", "test_b", "estimate", "ci_low", "ci_high", "df", "p"))
                       + "</tr>" for _, r in rrrc.iterrows())
        head = "".join(f"<th>{h}</th>" for h in ("analysis", "test A", "test B", "AUC / difference", "95% low",
                                                  "95% high", "df", "p"))
        parts += ["<h3>Modalities compared (MRMC ROC)</h3>",
                  "<p>Obuchowski-Rockette analysis with Hillis' degrees of freedom, empirical AUC, pilot readings; "
                  "unit = matched node, covariance by the jackknife leaving out one patient at a time, so the "
                  "intervals account for the clustering of nodes within patients (random readers and cases "
                  "shown; FRRC and RRFC in <a href='reader_study/mrmc.csv'>mrmc.csv</a>).</p>",
                  f"<table class='t'><tr>{head}</tr>{rows}</table>",
                  f"<p class='meta'>{summary['mrmc']['nodes']} nodes of {summary['mrmc']['patients']} patients, "
                  f"{summary['mrmc']['readers']} readers: the covariances rest on {summary['mrmc']['patients']} "
                  "leave-one-patient-out estimates, imprecise with few patients.</p>"]
    parts += [f"<p class='meta'>{html.escape(n)}</p>" for n in summary.get("notes", [])]
    if (folder / "learning_curves.png").is_file():
        data = base64.b64encode((folder / "learning_curves.png").read_bytes()).decode("ascii")
        lines = "".join(f"<li>{html.escape(r)}: {v['readings']} readings, accuracy {v['accuracy']:.2f}, "
                        + (f"competence signalled at reading {v['competent_at']}" if v["competent_at"] else
                           "no competence signal") + "</li>" for r, v in summary.get("learning", {}).items())
        parts += ["<h3>Learning curves (LC-CUSUM)</h3>", f"<ul>{lines}</ul>",
                  f'<img alt="learning curves" src="data:image/png;base64,{data}">']
    return "\n".join(parts)


def _study_reads_file(results: str | Path) -> Path:
    path = Path(results)
    if path.is_dir():
        path = path / STUDY_DIR / "reads.csv"
    if not path.is_file():
        raise InputError(results, "", "holds no reader_study/reads.csv: run `neckmatch run` on a cohort whose reads "
                                      "carry reader-study columns, or give that reads.csv")
    return path


def _phase_rows(results: str | Path, phase: str, modality: str | None) -> tuple[pd.DataFrame, Path, str]:
    path = _study_reads_file(results)
    reads = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("case_id", "path_status", "phase", "modality"):
        if col not in reads:
            raise InputError(path, "header", f"missing column '{col}'")
    if phase not in ("explorative", "pilot"):
        raise InputError("--phase", "", f"must be explorative or pilot, got '{phase}'")
    modality = reads["modality"].iloc[0] if modality is None and len(reads) else modality or ""
    rows = reads[(reads["phase"] == phase) & (reads["modality"] == modality)].copy()
    rows["truth"] = _as_bool_array(rows["path_status"].to_numpy(dtype=object))
    rows = rows[rows["truth"].notna()]
    if rows.empty:
        raise InputError(path, "phase", f"no readings in phase '{phase}' under modality '{modality}'")
    return rows, path, str(modality)


def run_score_develop(results: str | Path, out_dir: str | Path, *, phase: str = "explorative",
                      modality: str | None = None, unit: float = 1.0, n_boot: int = 100,
                      seed: int = 0, force: bool = False) -> dict[str, Path]:
    """``neckmatch score develop``: fit the points score on one phase's readings (default explorative) and write
    ``score.json`` and ``score_table.csv`` (the table for paper). An existing ``score.json`` is not replaced
    without ``force``: a score is frozen once developed, and validated as it is (``score_sha256``)."""
    from neckmatch.stats.score import develop_score, score_table

    if (Path(out_dir) / "score.json").exists() and not force:
        raise InputError(Path(out_dir) / "score.json", "", "exists: a developed score stays frozen for its "
                         "validation; refusing to replace it (another --out, or --force)")
    rows, path, modality = _phase_rows(results, phase, modality)
    features = [c for c in feature_columns(rows) if rows[c].ne("").all()]
    if not features:
        raise InputError(path, "f_*", "no visual-feature column is filled in every reading: nothing to score")
    score = develop_score(rows, features, unit=unit, n_boot=n_boot, seed=seed)
    score.update({"phase": phase, "modality": modality, "features": features, "source": path.name})
    with atomic_files(out_dir) as tmp:
        write_text(json.dumps(score, indent=2) + "\n", tmp / "score.json")
        write_csv(score_table(score), tmp / "score_table.csv")
    return {"score": Path(out_dir) / "score.json", "table": Path(out_dir) / "score_table.csv"}


def run_score_validate(results: str | Path, score_path: str | Path, out_dir: str | Path, *, phase: str = "pilot",
                       n_boot: int = 2000, seed: int = 0) -> dict[str, Path]:
    """``neckmatch score validate``: apply ``score.json`` to one phase's readings (default pilot) and write
    ``validation.json`` and ``calibration.csv``. Refused when the phase is the one the score was developed on."""
    from neckmatch.stats.score import validate_score

    try:
        raw = Path(score_path).read_bytes()
        score = json.loads(raw.decode("utf-8"))
        score["spec"], score["points"], score["development"]  # noqa: B018
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(score_path, "", f"not a score.json written by `neckmatch score develop` ({exc})") from None
    if phase == score.get("phase"):
        raise InputError("--phase", "", f"the score was developed on the '{phase}' readings: validate on others")
    rows, path, _ = _phase_rows(results, phase, score.get("modality"))
    result = validate_score(rows, score, n_boot=n_boot, seed=seed, source=str(path))
    result.update({"phase": phase, "modality": score.get("modality"), "score": Path(score_path).name,
                   "score_sha256": hashlib.sha256(raw).hexdigest()})  # which frozen score was validated
    with atomic_files(out_dir) as tmp:
        write_csv(pd.DataFrame(result["calibration"]["by_total"]), tmp / "calibration.csv")
        write_text(json.dumps(result, indent=2, default=float) + "\n", tmp / "validation.json")
    return {"validation": Path(out_dir) / "validation.json", "calibration": Path(out_dir) / "calibration.csv"}
