"""The reader study of a cohort run: reads joined to trusted node pairs, MRMC of modalities clustered by
patient, learning curves, the report section, and `neckmatch score develop / validate` on its reads."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from neckmatch.cohort import CaseRecord
from neckmatch.stats.reader_study import mrmc_long_table, reader_study_section, write_reader_study
from neckmatch.synth.reads import StudyReadParams, draw_study_reads, reading_order
from neckmatch.viz.learning import learning_curve_figure
from tests.cli_helpers import run_main

N_CASES, N_NODES = 10, 24


def _case(root, k, rng, plain=False):
    cid = f"P{k:02d}"
    d = root / cid
    (d / "mri").mkdir(parents=True)
    (d / "pathology").mkdir()
    (d / "mri" / "nodes.nii.gz").write_bytes(b"")
    (d / "pathology" / "nodes.csv").write_text("id\n")
    doc = {"format": "neckmatch-case/1", "case_id": cid, "primary_side": "R", "dissected": {"R": ["II"]},
           "mri": {"nodes": "mri/nodes.nii.gz", "reads": "mri/reads.csv"},
           "pathology": {"nodes": "pathology/nodes.csv"}}
    (d / "case.json").write_text(json.dumps(doc))
    pos = rng.random(N_NODES) < 0.2
    pos[:2] = [True, False]
    phase, orders = reading_order(5, k, N_CASES + 1, StudyReadParams())
    reads = draw_study_reads(rng, pos, np.zeros(N_NODES, bool), rng.gamma(4, 1.2, N_NODES) + 2 * pos,
                             np.arange(1, N_NODES + 1), phase, orders)
    if plain:
        reads = reads[reads.modality == "T2star"][["node", "reader", "score", "malignant"]]
    reads.to_csv(d / "mri" / "reads.csv", index=False)
    nodes = pd.DataFrame({"case_id": cid, "mr_node": np.arange(1, N_NODES + 1),
                          "path_status": np.where(pos, "positive", "negative"), "level": "II", "side": "R",
                          "decision": "auto", "match_kind": ["unmatched"] + ["matched"] * (N_NODES - 1)})
    return CaseRecord(cid, str(d), "ok"), nodes


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    cases = [_case(tmp_path / "cohort", k, rng) for k in range(N_CASES + 1)]
    bad = tmp_path / "cohort" / f"P{N_CASES:02d}" / "mri" / "reads.csv"  # one case breaking the spec is left out
    bad.write_text(bad.read_text().replace(",pilot,", ",validation,", 1))
    records, nodes = [c[0] for c in cases], pd.concat([c[1] for c in cases], ignore_index=True)
    out = tmp_path / "results"
    files = write_reader_study(out, records, {"nodes": nodes}, draw=learning_curve_figure)
    return out, files


def test_writes_mrmc_learning_curves_and_reads(study):
    out, files = study
    names = {p.split("/")[-1] for p in files}
    assert {"reads.csv", "mrmc.csv", "mrmc_readers.csv", "learning_curves.png", "summary.json",
            "learning_curve_R1.csv", "learning_curve_R3.csv"} <= names
    reads = pd.read_csv(out / "reader_study" / "reads.csv")
    assert len(reads) == N_CASES * (N_NODES - 1) * 3 * 2  # unmatched node 1 of each case left out
    summary = json.loads((out / "reader_study" / "summary.json").read_text())
    assert summary["notes"] == ["case P10 left out of the reader study: row 1: phase: must be explorative or pilot, "
                                "got 'validation'"]
    assert summary["mrmc"] == {"tests": ["T2star", "T1"], "readers": 3, "nodes": 6 * (N_NODES - 1), "patients": 6}
    mrmc = pd.read_csv(out / "reader_study" / "mrmc.csv", keep_default_na=False, na_values=[""])
    diff = mrmc[(mrmc.analysis == "RRRC") & (mrmc.test_a == "T2star") & (mrmc.test_b == "T1")].iloc[0]
    assert diff.estimate > 0 and diff.ci_low < diff.estimate < diff.ci_high
    curve = pd.read_csv(out / "reader_study" / "learning_curve_R2.csv")
    assert len(curve) == N_CASES * (N_NODES - 1) and curve["read_order"].is_monotonic_increasing


def test_mrmc_unit_is_node_clustered_by_patient(study):
    out, _ = study
    reads = pd.read_csv(out / "reader_study" / "reads.csv", dtype={"modality": str}, keep_default_na=False)
    reads["truth"] = (reads["path_status"] == "positive").astype(float)
    reads["read_order"] = pd.to_numeric(reads["read_order"])
    long = mrmc_long_table(reads)
    assert long["cluster"].nunique() == 6 and long.groupby("case")["cluster"].nunique().eq(1).all()
    drop = (reads.reader == "R3") & (reads.modality == "T1") & (reads.node == 5) & (reads.case_id == "P05")
    incomplete = reads[~drop]
    assert mrmc_long_table(incomplete)["case"].nunique() == long["case"].nunique() - 1  # only fully crossed nodes


def test_report_section(study):
    out, _ = study
    html = reader_study_section(out)
    assert "<h2>Reader study</h2>" in html and "jackknife leaving out one patient" in html
    assert "data:image/png;base64," in html and "T2star" in html and "138 nodes of 6 patients" in html


def test_plain_reads_write_no_reader_study(tmp_path):
    rng = np.random.default_rng(1)
    rec, nodes = _case(tmp_path / "c", 0, rng, plain=True)
    assert write_reader_study(tmp_path / "r", [rec], {"nodes": nodes}) == {}
    assert reader_study_section(tmp_path / "r") == ""


def test_score_develop_then_validate(study, tmp_path, monkeypatch):
    out, _ = study
    assert run_main(monkeypatch, "score", "develop", str(out), "--n-boot", "5", "--out", str(tmp_path / "s")) == 0
    score = json.loads((tmp_path / "s" / "score.json").read_text())
    assert score["phase"] == "explorative" and score["development"]["patients"] == 4
    assert score["modality"] == "T2star"
    args = ["score", "validate", str(out), "--score", str(tmp_path / "s" / "score.json"), "--n-boot", "100"]
    assert run_main(monkeypatch, *args, "--out", str(tmp_path / "v")) == 0
    val = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert val["phase"] == "pilot" and val["patients"] == 6 and 0 <= val["auc"] <= 1
    # validating on the development phase is refused, and nothing is written
    assert run_main(monkeypatch, *args, "--phase", "explorative", "--out", str(tmp_path / "bad")) == 2
    assert not (tmp_path / "bad").exists()
    # the validation names the frozen score it validated, by content; the score is not replaced without --force
    digest = hashlib.sha256((tmp_path / "s" / "score.json").read_bytes()).hexdigest()
    assert (val["score"], val["score_sha256"]) == ("score.json", digest)
    develop = ["score", "develop", str(out), "--n-boot", "5", "--phase", "pilot", "--out", str(tmp_path / "s")]
    assert run_main(monkeypatch, *develop) == 2
    assert hashlib.sha256((tmp_path / "s" / "score.json").read_bytes()).hexdigest() == digest
    assert run_main(monkeypatch, *develop, "--force") == 0
    assert json.loads((tmp_path / "s" / "score.json").read_text())["phase"] == "pilot"


def test_score_without_reader_study_is_an_input_error(tmp_path, monkeypatch, capsys):
    assert run_main(monkeypatch, "score", "develop", str(tmp_path), "--out", str(tmp_path / "s")) == 2
    assert "holds no reader_study/reads.csv" in capsys.readouterr().err
