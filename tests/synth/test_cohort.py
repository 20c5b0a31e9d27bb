"""Written cohorts: bit-for-bit determinism, readable by the case reader, ground truth consistent with the files
and with the level engine; the synth and demo commands."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neckmatch.cli import app
from neckmatch.errors import InputError
from neckmatch.geometry.levels import assign_levels
from neckmatch.io.case import read_case
from neckmatch.synth import generate_cohort
from neckmatch.synth.cohort import GROUND_TRUTH_COLUMNS, MAX_CASES


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return out, generate_cohort(3, 42, out)


def test_cohort_files_and_manifest(cohort):
    out, dirs = cohort
    assert [d.name for d in dirs] == ["SYN001", "SYN002", "SYN003"]
    doc = json.loads((out / "cohort.json").read_text())
    assert doc["seed"] == 42 and doc["cases"] == ["SYN001", "SYN002", "SYN003"]
    assert doc["params"]["shrinkage_mean"] == 0.15
    for d in dirs:
        assert (d / "ground_truth.csv").is_file() and (d / "mri" / "nodes.nii.gz").is_file()


def test_same_seed_same_bytes_and_case_k_independent_of_n(cohort, tmp_path):
    out, _ = cohort
    generate_cohort(2, 42, tmp_path / "again")
    a, b = _digest(out / "SYN002"), _digest(tmp_path / "again" / "SYN002")
    assert a == b and len(a) == 6
    generate_cohort(1, 43, tmp_path / "other")
    assert _digest(tmp_path / "other" / "SYN001") != _digest(out / "SYN001")


def test_every_case_is_readable_and_agrees_with_its_truth(cohort):
    _, dirs = cohort
    for d in dirs:
        case = read_case(d)
        truth = pd.read_csv(d / "ground_truth.csv", dtype={"path_node": str, "mr_label": "Int64"})
        assert list(truth.columns) == list(GROUND_TRUTH_COLUMNS)
        labels = sorted(truth["mr_label"].dropna().unique().tolist())
        assert case.label_map.labels().tolist() == labels
        ids = {p.node for p in case.path_nodes}
        assert set(truth["path_node"].dropna()) <= ids
        assert {r.node for r in case.reads} == set(labels)
        harvested = truth["path_node"].notna()
        status = {p.node: p.status.value for p in case.path_nodes}
        assert all(status[n] == s for n, s in zip(truth.path_node[harvested], truth.status[harvested], strict=True))


def test_truth_levels_agree_with_the_level_engine_on_read_landmarks(cohort):
    _, dirs = cohort
    for d in dirs:
        case = read_case(d)
        truth = pd.read_csv(d / "ground_truth.csv")
        a = assign_levels(truth[["x", "y", "z"]].to_numpy(), case.landmarks)
        assert np.array_equal(a.level, truth["level"].fillna("").to_numpy(dtype=str))
        assert np.array_equal(a.side, truth["side"].to_numpy(dtype=str))


def test_dissected_levels_hold_every_container(cohort):
    _, dirs = cohort
    for d in dirs:
        case = read_case(d)
        for c in case.containers:
            assert c.side in case.dissected
            assert {p.value for p in c.level.parts} <= {"I", "IA", "IB", "II", "IIA", "IIB", "III", "IV", "V"}


@pytest.mark.parametrize("n", [0, -3, MAX_CASES + 1])
def test_a_number_of_cases_out_of_range_is_an_input_error(tmp_path, n):
    with pytest.raises(InputError, match=f"cases: must be from 1 to {MAX_CASES}, got {n}"):
        generate_cohort(n, 1, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_a_smaller_cohort_over_an_earlier_one_leaves_none_of_its_cases(tmp_path):
    out = tmp_path / "c"
    generate_cohort(3, 7, out)
    (out / "my_notes.txt").write_text("kept")  # a user's file beside the cohort
    dirs = generate_cohort(2, 7, out)
    # before: SYN003 of the first cohort stayed, and a cohort run of the folder had three cases
    assert sorted(p.name for p in out.iterdir()) == ["SYN001", "SYN002", "cohort.json", "my_notes.txt",
                                                    "neckmatch-output.json"]
    assert [d.name for d in dirs] == json.loads((out / "cohort.json").read_text())["cases"] == ["SYN001", "SYN002"]


def test_synth_refuses_a_folder_it_did_not_write_and_writes_nothing_when_it_fails(tmp_path, monkeypatch):
    import neckmatch.synth.cohort as cohort_module

    user = tmp_path / "patients"
    user.mkdir()
    (user / "P001.txt").write_text("a user's file")
    with pytest.raises(InputError, match="output folder is not empty and holds no earlier neckmatch output"):
        generate_cohort(1, 7, user)
    assert sorted(p.name for p in user.iterdir()) == ["P001.txt"]
    real = cohort_module.generate_case
    calls = []

    def failing(*args, **kwargs):  # the second case fails (a full disk, a Ctrl-C)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_module, "generate_case", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(3, 7, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients"]  # no cohort, no staging folder left


def test_a_cohort_an_older_neckmatch_wrote_without_a_marker_is_replaced(tmp_path):
    out = tmp_path / "c"
    generate_cohort(3, 7, out)
    (out / "neckmatch-output.json").unlink()  # as neckmatch 0.1.0 wrote it
    generate_cohort(1, 7, out)
    assert sorted(p.name for p in out.iterdir()) == ["SYN001", "cohort.json", "neckmatch-output.json"]


def test_synth_command(tmp_path):
    res = CliRunner().invoke(app, ["synth", "--cases", "1", "--seed", "5", "--out", str(tmp_path / "c"),
                                   "--positions-fraction", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 synthetic cases" in res.output
    rep = pd.read_csv(tmp_path / "c" / "SYN001" / "pathology" / "nodes.csv")
    assert {"cc", "ap"} <= set(rep.columns)


def test_match_never_writes_into_a_synthetic_cohort_nor_synth_into_match_output(tmp_path):
    from neckmatch.pipeline import process_case

    cohort = tmp_path / "c"
    (case,) = generate_cohort(1, 7, cohort)
    with pytest.raises(InputError, match="holds the output of 'neckmatch synth'; refusing to write the output of "
                                         "'neckmatch match'"):
        process_case(case, cohort, force=True)  # the marker alone would let match in, and match removes its files
    assert sorted(p.name for p in cohort.iterdir()) == ["SYN001", "cohort.json", "neckmatch-output.json"]
    process_case(case, tmp_path / "results")
    with pytest.raises(InputError, match="holds the output of 'neckmatch match'"):
        generate_cohort(1, 7, tmp_path / "results", force=True)
    assert (tmp_path / "results" / "matches.csv").is_file()


def test_match_never_writes_into_a_case_folder_of_a_run(tmp_path):
    from neckmatch.cohort import run_cohort
    from neckmatch.pipeline import process_case

    generate_cohort(1, 7, tmp_path / "c")
    run_cohort(tmp_path / "c", tmp_path / "r", workers=1, maps=False)
    before = sorted(p.name for p in (tmp_path / "r" / "SYN001").iterdir())
    with pytest.raises(InputError, match="holds the output of 'neckmatch run'"):
        process_case(tmp_path / "c" / "SYN001", tmp_path / "r" / "SYN001", force=True)
    assert sorted(p.name for p in (tmp_path / "r" / "SYN001").iterdir()) == before and "run.json" in before
