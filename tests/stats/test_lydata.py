"""lyDATA: superlevel inference, ISB counts against a plain crosstab, writing a lyDATA CSV that lydata / lymph read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.stats.lydata import involvement, lydata_accuracy, patient_reference, read_lydata, write_lydata

ISB = "lydata/2023-isb-multisite/data.csv"


def _tiny_csv(path):
    cols = [("patient", "#", "id")] + [(m, "ipsi", lv) for m in ("MRI", "pathology")
                                       for lv in ("I", "Ia", "Ib", "II", "IIa", "IIb")]
    rows = [["p1", "", "False", "True", "", "False", "False", "False", "False", "False", "False", "False", "False"],
            ["p2", "", "False", "", "True", "", "", "", "", "", "", "", ""],
            ["p3", "", "False", "False", "", "", "False", "", "", "", "", "", ""]]
    df = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(cols))
    df.to_csv(path, index=False)
    return path


def test_superlevels_inferred_from_sublevels(tmp_path):
    frame = read_lydata(_tiny_csv(tmp_path / "t.csv"))
    mri = involvement(frame, "MRI").set_index(["patient", "side", "level"])["value"]
    assert mri["p1", "ipsi", "I"] == 1.0  # Ib positive
    assert mri["p3", "ipsi", "I"] == 0.0  # Ia and Ib known negative
    assert np.isnan(mri["p2", "ipsi", "I"])  # Ia negative, Ib unknown
    assert mri["p2", "ipsi", "II"] == 1.0  # own value kept
    assert np.isnan(mri["p1", "contra", "II"])  # no contra columns at all


def test_unknown_modality_is_input_error(tmp_path):
    frame = read_lydata(_tiny_csv(tmp_path / "t.csv"))
    with pytest.raises(InputError, match="'CT' is not in the file"):
        involvement(frame, "CT", tmp_path / "t.csv")


def _independent_levels(raw: pd.DataFrame, modality: str, side: str, level: str) -> pd.Series:
    """Plain pandas recomputation of one level with superlevel inference (test oracle)."""
    def col(lv):
        key = (modality, side, lv)
        s = raw[key] if key in raw.columns else pd.Series([None] * len(raw))
        return s.map({True: True, False: False, "True": True, "False": False})
    own = col(level)
    subs = {"I": ("Ia", "Ib"), "II": ("IIa", "IIb"), "V": ("Va", "Vb")}.get(level)
    if subs is None:
        return own
    a, b = col(subs[0]), col(subs[1])
    inferred = pd.Series(pd.NA, index=raw.index, dtype=object)
    inferred[(a == False) & (b == False)] = False  # noqa: E712
    inferred[(a == True) | (b == True)] = True  # noqa: E712
    return own.where(own.notna(), inferred)


def test_isb_counts_equal_plain_crosstab(shared_data):
    raw = pd.read_csv(shared_data / ISB, header=[0, 1, 2], low_memory=False)
    raw = raw.sort_index(axis=1)
    table = lydata_accuracy(read_lydata(shared_data / ISB), n_boot=200, seed=1)
    total = np.zeros(4, int)
    for level in ("I", "Ia", "Ib", "II", "IIa", "IIb", "III", "IV", "V", "Va", "Vb"):
        for side in ("ipsi", "contra"):
            mri, path = _independent_levels(raw, "MRI", side, level), _independent_levels(raw, "pathology", side, level)
            ok = mri.notna() & path.notna()
            ct = pd.crosstab(mri[ok].astype(bool), path[ok].astype(bool)).reindex(
                index=[True, False], columns=[True, False], fill_value=0)
            expected = [ct.loc[True, True], ct.loc[True, False], ct.loc[False, True], ct.loc[False, False]]
            row = table[(table["level"] == level) & (table["side"] == side)].iloc[0]
            assert [row.tp, row.fp, row.fn, row.tn] == expected, (level, side)
            if level in ("I", "II", "III", "IV", "V"):
                total += expected
    pooled = table[table["level"] == "all"].iloc[0]
    assert [pooled.tp, pooled.fp, pooled.fn, pooled.tn] == total.tolist()
    assert pooled.n_patients == 275  # ISB patients with both MRI and pathology
    assert pooled.sensitivity_low_gee < pooled.sensitivity < pooled.sensitivity_high_gee
    assert pooled.sensitivity_low_boot < pooled.sensitivity < pooled.sensitivity_high_boot
    patient = table[table["unit"] == "patient"].iloc[0]
    assert (patient.level, patient.side, patient.n) == ("any", "both", 275)


def test_isb_patient_row_uses_the_pathological_n_category(shared_data):
    """Independent computation from the raw file: MRI positive if any level is, reference pN > 0 (n_stage), for
    patients with MRI and pathology assessed; every ISB patient had a neck dissection."""
    raw = pd.read_csv(shared_data / ISB, header=[0, 1, 2], low_memory=False)
    mri = raw.loc[:, [c for c in raw.columns if c[0] == "MRI" and c[1] in ("ipsi", "contra")]]
    path = raw.loc[:, [c for c in raw.columns if c[0] == "pathology" and c[1] in ("ipsi", "contra")]]
    ok = mri.notna().any(axis=1) & path.notna().any(axis=1)
    call = (mri == True).any(axis=1)  # noqa: E712
    pn_pos = raw[("patient", "#", "n_stage")] > 0
    assert raw[("patient", "#", "neck_dissection")].all()
    ct = [int((ok & call & pn_pos).sum()), int((ok & call & ~pn_pos).sum()), int((ok & ~call & pn_pos).sum()),
          int((ok & ~call & ~pn_pos).sum())]
    assert ct == [111, 35, 41, 88]
    # the old reference (no assessed level positive = negative) calls 23 pN+ patients negative
    old_negative = ok & ~(path == True).any(axis=1)  # noqa: E712
    assert int((old_negative & pn_pos).sum()) == 23 and int(old_negative.sum()) == 146
    row = lydata_accuracy(read_lydata(shared_data / ISB), n_boot=50).iloc[-1]
    assert (row.unit, row.reference) == ("patient", "pathology N category (patient/#/n_stage)")
    assert [row.tp, row.fp, row.fn, row.tn] == ct
    got = [round(v, 3) for v in (row.sensitivity, row.sensitivity_low, row.sensitivity_high, row.specificity,
                                 row.specificity_low, row.specificity_high)]
    assert got == [0.730, 0.655, 0.794, 0.715, 0.630, 0.788]
    assert row.ci_method == "wilson"  # one unit per patient


def test_patient_reference_without_n_stage_needs_every_level_known():
    ids = ["a", "b", "c"]
    table = pd.DataFrame({"patient": np.repeat(ids, 2), "level": ["II", "III"] * 3,
                          "reference": [1.0, np.nan, 0.0, np.nan, 0.0, 0.0]})
    frame = pd.DataFrame({"patient|#|id": ids})
    ref, name = patient_reference(frame, table, "pathology")
    assert ref.to_dict() == pytest.approx({"a": 1.0, "b": np.nan, "c": 0.0}, nan_ok=True)
    assert name == "pathology (levels)"
    frame["patient|#|n_stage"], frame["patient|#|neck_dissection"] = [0, 2, "N1"], [True, True, False]
    ref, name = patient_reference(frame, table, "pathology")
    # a: pN0 overrides its positive level; b: N2; c: no neck dissection, so its N category is not pathological
    assert ref.to_dict() == pytest.approx({"a": 0.0, "b": 1.0, "c": np.nan}, nan_ok=True)


def _truth_levels():
    rows = [("C1", "R", "IIA", True, True, "positive"), ("C1", "R", "IIB", True, False, "negative"),
            ("C1", "R", "III+IV", True, False, "negative"), ("C1", "L", "II", True, False, "negative"),
            ("C1", "L", "III", False, True, None),
            ("C2", "L", "IA", True, False, "negative"), ("C2", "L", "IB", True, True, "positive"),
            ("C2", "R", "IIA+IIB", True, True, "positive")]
    return pd.DataFrame(rows, columns=["case_id", "side", "level", "dissected", "mr_call", "path_status"])


def _patients():
    return pd.DataFrame({"case_id": ["C1", "C2"], "primary_side": ["R", "midline"], "institution": "X",
                         "sex": "male", "age": [60, 70], "diagnose_date": "2020-01-01", "alcohol_abuse": False,
                         "nicotine_abuse": True, "neck_dissection": True, "n_stage": [1, 2], "m_stage": 0,
                         "location": "oropharynx", "subsite": "C10.9", "t_stage": [2, 3]})


def test_write_lydata_roundtrip(tmp_path):
    path = write_lydata(_truth_levels(), _patients(), tmp_path / "cohort.csv")
    header = path.read_text().splitlines()[:3]
    assert header[0].startswith("patient,") and ",1," in header[1] and "t_stage" in header[2]
    frame = read_lydata(path)
    path_inv = involvement(frame, "pathology").set_index(["patient", "side", "level"])["value"]
    mri_inv = involvement(frame, "MRI").set_index(["patient", "side", "level"])["value"]
    assert path_inv["C1", "ipsi", "IIa"] == 1.0 and path_inv["C1", "ipsi", "II"] == 1.0
    assert path_inv["C1", "ipsi", "III"] == 0.0 and path_inv["C1", "ipsi", "IV"] == 0.0  # merged negative
    assert np.isnan(path_inv["C1", "contra", "III"])  # not dissected: no reference
    assert mri_inv["C1", "contra", "III"] == 1.0  # but imaged
    # midline primary: ipsi is the side with more positive pathology levels (L: IB; R: II) -> tie -> R
    assert path_inv["C2", "ipsi", "II"] == 1.0 and np.isnan(path_inv["C2", "ipsi", "IIa"])
    assert path_inv["C2", "contra", "I"] == 1.0


def test_written_csv_validates_with_lydata_and_loads_in_lymph(tmp_path):
    import lymph
    from lydata.utils import _new_from_old
    from lydata.validator import is_valid

    path = write_lydata(_truth_levels(), _patients(), tmp_path / "cohort.csv")
    data = pd.read_csv(path, header=[0, 1, 2])
    new = data.copy()
    new.columns = pd.MultiIndex.from_tuples([_new_from_old(c) for c in data.columns])
    assert is_valid(new)
    model = lymph.models.Unilateral(graph_dict={("tumor", "T"): ["II", "III"], ("lnl", "II"): ["III"],
                                                ("lnl", "III"): []})
    model.set_modality("pathology", spec=1.0, sens=1.0)
    model.load_patient_data(data, mapping=lambda t: "early" if t <= 2 else "late")
    assert len(model.patient_data) == 2


def test_write_lydata_skips_imaging_only_levels(tmp_path):
    # truth_levels holds undissected imaged levels by their imaging name: RP and SC have no lyDATA column
    lv = pd.DataFrame([("C1", "R", "II", True, True, "positive"), ("C1", "R", "RP", False, True, None),
                       ("C1", "L", "SC", False, True, None), ("C1", "L", "IIA", False, True, None)],
                      columns=["case_id", "side", "level", "dissected", "mr_call", "path_status"])
    path = write_lydata(lv, pd.DataFrame({"case_id": ["C1"], "primary_side": ["R"]}), tmp_path / "c.csv")
    mri = involvement(read_lydata(path), "MRI").set_index(["patient", "side", "level"])["value"]
    assert mri["C1", "ipsi", "II"] == 1.0 and mri["C1", "contra", "IIa"] == 1.0
    assert np.isnan(mri["C1", "contra", "IV"]) and np.isnan(mri["C1", "contra", "Vb"])
