"""lyDATA export of a results folder (neckmatch.export, ``neckmatch export lydata``): hand-computed values, the
round trip through ``neckmatch stats lydata``, validation by ``lydata`` and loading by ``lymph-model``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.export import export_lydata, patients_table
from neckmatch.stats.lydata import involvement, read_lydata
from tests.cli_helpers import run_main

# C1: primary right; IIA positive and called, III positive and missed, left II imaged only (not dissected).
# C2: primary left; IIA negative but called, III negative and not called.
LEVELS = [
    ("C1", "R", "IIA", True, True, "positive"), ("C1", "R", "III", True, False, "positive"),
    ("C1", "L", "II", False, True, None),
    ("C2", "L", "IIA", True, True, "negative"), ("C2", "L", "III", True, False, "negative"),
]  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A cohort run's results folder (only what the export reads) and the two case folders."""
    out = tmp_path / "results"
    (out / "tables").mkdir(parents=True)
    frame = pd.DataFrame(LEVELS, columns=["case_id", "side", "level", "dissected", "mr_call", "path_status"])
    frame.to_csv(out / "tables" / "truth_levels.csv", index=False)
    for cid, side, t_stage in (("C1", "R", 2), ("C2", "L", None)):
        (tmp_path / "cohort" / cid).mkdir(parents=True)
        doc = {"case_id": cid, "primary_side": side, **({"t_stage": t_stage, "pN": "pN2b"} if t_stage else {})}
        (tmp_path / "cohort" / cid / "case.json").write_text(json.dumps(doc))
    (tmp_path / "patients.csv").write_text("case_id,t_stage,n_stage\nC2,3,0\n")
    return out


def _values(path: Path, modality: str) -> pd.Series:
    return involvement(read_lydata(path), modality).set_index(["patient", "side", "level"])["value"]


def test_levels_land_in_the_named_modalities_ipsi_by_primary_side(results: Path, tmp_path: Path) -> None:
    path = export_lydata(results, tmp_path / "c.csv", cohort=tmp_path / "cohort", patients=tmp_path / "patients.csv",
                         modality="CT", reference="pathology")  # fmt: skip
    top = path.read_text().splitlines()[0].split(",")
    assert "MRI" not in top and {"patient", "tumor", "CT", "pathology"} == set(top)
    ct, pat = _values(path, "CT"), _values(path, "pathology")
    assert (ct["C1", "ipsi", "IIa"], pat["C1", "ipsi", "IIa"]) == (1.0, 1.0)
    assert (ct["C1", "ipsi", "III"], pat["C1", "ipsi", "III"]) == (0.0, 1.0)
    assert ct["C1", "contra", "II"] == 1.0 and pd.isna(pat["C1", "contra", "II"])  # imaged, not dissected
    assert (ct["C2", "ipsi", "IIa"], pat["C2", "ipsi", "IIa"]) == (1.0, 0.0)  # C2's ipsi is its left side
    raw = pd.read_csv(path, header=[0, 1, 2])
    t_stage = dict(zip(raw[("patient", "#", "id")], raw[("tumor", "1", "t_stage")], strict=True))
    assert t_stage == {"C1": 2, "C2": 3}  # from case.json and from the patients CSV
    n_stage = dict(zip(raw[("patient", "#", "id")], raw[("patient", "#", "n_stage")], strict=True))
    assert n_stage == {"C1": 2, "C2": 0}  # case.json's pN2b; the CSV's 0


def test_round_trip_through_stats_lydata(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = tmp_path / "c.csv"
    assert run_main(monkeypatch, "export", "lydata", str(results), "--out", str(csv), "--cohort",
                    str(tmp_path / "cohort"), "--modality", "USPIO", "--reference", "histology") == 0  # fmt: skip
    assert run_main(monkeypatch, "stats", "lydata", str(csv), "--index", "USPIO", "--reference", "histology",
                    "--out", str(tmp_path / "stats"), "--n-boot", "20") == 0  # fmt: skip
    acc = pd.read_csv(tmp_path / "stats" / "accuracy.csv").set_index(["unit", "level", "side"])
    counts = ["tp", "fp", "fn", "tn"]
    assert acc.loc[("level", "IIa", "ipsi"), counts].tolist() == [1, 1, 0, 0]  # C1 called positive, C2 false alarm
    assert acc.loc[("level", "III", "ipsi"), counts].tolist() == [0, 0, 1, 1]  # C1 missed, C2 correctly negative
    assert acc.loc[("level", "II", "contra"), "n"] == 0  # C1's left II was not dissected: no reference
    assert set(acc["index"]) == {"USPIO"}


def test_lydata_validates_it_and_lymph_model_loads_it(results: Path, tmp_path: Path) -> None:
    import lymph
    from lydata.utils import _new_from_old
    from lydata.validator import is_valid

    clinical = tmp_path / "clinical.csv"  # lyDATA's schema requires these patient and tumour fields
    clinical.write_text(
        "case_id,institution,sex,age,diagnose_date,alcohol_abuse,nicotine_abuse,n_stage,m_stage,location,subsite,"
        "t_stage\nC1,Site A,male,61,2024-03-01,False,True,1,0,oropharynx,C10.9,2\n"
        "C2,Site A,female,57,2024-05-12,False,False,0,0,oral cavity,C02.1,3\n"
    )
    path = export_lydata(results, tmp_path / "c.csv", cohort=tmp_path / "cohort", patients=clinical)
    data = pd.read_csv(path, header=[0, 1, 2])
    assert data[("patient", "#", "neck_dissection")].tolist() == [True, True]  # every case had one
    new = data.copy()
    new.columns = pd.MultiIndex.from_tuples([_new_from_old(c) for c in data.columns])
    assert is_valid(new)
    model = lymph.models.Unilateral(graph_dict={("tumor", "T"): ["II", "III"], ("lnl", "II"): ["III"],
                                                ("lnl", "III"): []})  # fmt: skip
    model.set_modality("MRI", spec=0.9, sens=0.8)
    model.load_patient_data(data, mapping=lambda t: "early" if t <= 2 else "late")
    assert len(model.patient_data) == 2
    assert sorted(model.patient_data[("_model", "core", "t_stage")]) == ["early", "late"]


def test_a_case_without_primary_side_or_clashing_names_is_refused(results: Path, tmp_path: Path) -> None:
    (tmp_path / "cohort" / "C2").rename(tmp_path / "C2-elsewhere")
    with pytest.raises(InputError, match="'C2' has no primary side"):
        export_lydata(results, tmp_path / "c.csv", cohort=tmp_path / "cohort")
    with pytest.raises(InputError, match="--reference: must differ from --modality"):
        export_lydata(results, tmp_path / "c.csv", patients=tmp_path / "patients.csv", modality="MRI",
                      reference="MRI")  # fmt: skip
    with pytest.raises(InputError, match="holds no level truth table"):
        export_lydata(tmp_path / "cohort", tmp_path / "c.csv", cohort=tmp_path / "cohort")
    assert not (tmp_path / "c.csv").exists()


def test_cli_without_patients_exits_2_with_one_line(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_main(monkeypatch, "export", "lydata", str(results), "--out", str(tmp_path / "c.csv"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "primary side" in err
    assert not (tmp_path / "c.csv").exists()


def test_patients_csv_wins_over_case_folders(results: Path, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("case_id,primary_side\nC1,midline\n")
    table = patients_table(tmp_path / "cohort", tmp_path / "p.csv").set_index("case_id")
    assert table.loc["C1", "primary_side"] == "midline" and table.loc["C2", "primary_side"] == "L"
