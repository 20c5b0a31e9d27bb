"""The per-case pipeline on the bundled minimal case: every file with the spec columns, atomic output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from neckmatch import pipeline
from neckmatch.correlation.truth import LEVEL_COLUMNS, NODE_COLUMNS, PATIENT_COLUMNS, READ_COLUMNS, SIDE_COLUMNS
from neckmatch.errors import InputError
from neckmatch.io.outdir import MARKER
from neckmatch.io.results import RESULT_FILES, CaseResult, write_results
from neckmatch.pipeline import Settings, compute_case, process_case

MINIMAL = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"
LEVELS_SPEC = ["node", "side", "level", "boundary_mm", "runner_up", "x", "y", "z", "volume_mm3", "short_axis_mm",
               "long_axis_mm"]  # fmt: skip
MATCHES_SPEC = ["mr_node", "path_node", "confidence", "decision"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "MIN01"
    process_case(MINIMAL, folder)
    return folder


def _csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, keep_default_na=False, na_values=[""])


def _bad_case(tmp_path: Path) -> Path:
    case = tmp_path / "bad"
    shutil.copytree(MINIMAL, case, ignore=shutil.ignore_patterns("*.py"))
    nodes = case / "pathology" / "nodes.csv"
    nodes.write_text(nodes.read_text().replace("R-III,R,III,", "R-III,R,IIc,"))
    return case


def test_every_output_file_is_written(out):
    assert sorted(p.name for p in out.iterdir()) == sorted([*RESULT_FILES, MARKER])


def test_spec_columns(out):
    assert set(LEVELS_SPEC) <= set(_csv(out, "levels.csv").columns)
    assert set(MATCHES_SPEC) <= set(_csv(out, "matches.csv").columns)
    expected = {"truth_nodes.csv": NODE_COLUMNS, "truth_reads.csv": READ_COLUMNS, "truth_levels.csv": LEVEL_COLUMNS,
                "truth_sides.csv": SIDE_COLUMNS, "truth_patient.csv": PATIENT_COLUMNS}  # fmt: skip
    for name, cols in expected.items():
        written = list(_csv(out, name).columns)
        assert written[: len(cols)] == cols, name
        assert written[len(cols):] == (["path_deposit_mm", "path_ene", "path_slide"] if name == "truth_nodes.csv"
                                       else []), name  # fmt: skip
    for name in ("levels.csv", "matches.csv", "truth_nodes.csv", "truth_levels.csv"):
        assert (_csv(out, name)["case_id"] == "MIN01").all(), name


def test_matches_cover_every_node_once(out):
    m = _csv(out, "matches.csv")
    assert sorted(m["mr_node"].dropna().astype(int)) == [1, 2, 3, 4]
    path_ids = pd.read_csv(MINIMAL / "pathology" / "nodes.csv")["node"]
    assert sorted(m["path_node"].dropna()) == sorted(path_ids)
    assert m["decision"].isin(["auto", "review"]).all()
    assert m["confidence"].between(0, 1).all()


def test_booleans_are_written_lowercase(out):
    text = (out / "truth_levels.csv").read_text()
    assert ",true," in text and ",false," in text
    assert "True" not in text and "False" not in text


def test_level_side_patient_known_answers(out):
    # Only R-III-01 is positive; readers call MR node 2 (right III) malignant and nothing else.
    lv = _csv(out, "truth_levels.csv").set_index(["side", "level"])
    assert lv["outcome"].to_dict() == {("R", "I"): "TN", ("R", "II"): "TN", ("R", "III"): "TP", ("R", "IV"): "TN",
                                       ("R", "V"): "TN", ("L", "II"): "TN", ("L", "III+IV"): "TN"}  # fmt: skip
    assert _csv(out, "truth_sides.csv")["outcome"].tolist() == ["TP", "TN"]
    assert _csv(out, "truth_patient.csv")["outcome"].tolist() == ["TP"]


def test_node_outcomes_follow_call_and_partner(out):
    nodes = _csv(out, "truth_nodes.csv")
    mr = nodes[nodes["mr_node"].notna()]
    assert len(mr) == 4
    matched = mr[mr["match_kind"] == "matched"]
    expect = {(True, "positive"): "TP", (True, "negative"): "FP", (False, "positive"): "FN", (False, "negative"): "TN"}
    calls = [str(c).lower() == "true" for c in matched["mr_call"]]
    assert matched["outcome"].tolist() == [expect[k] for k in zip(calls, matched["path_status"], strict=True)]
    # The only right level III MR node and the only right level III pathology node: a unique answer.
    assert matched.set_index("mr_node").loc[2, ["path_node", "outcome"]].tolist() == ["R-III-01", "TP"]


def test_summary_counts_agree_with_the_tables(out):
    s = json.loads((out / "summary.json").read_text())
    m = _csv(out, "matches.csv")
    assert (s["case_id"], s["mr_nodes"], s["path_nodes"], s["containers"]) == ("MIN01", 4, 6, 5)
    assert s["pairs"] == int((m["kind"] == "pair").sum())
    assert sum(s["decisions"].values()) == len(m)
    assert s["patient_outcome"] == "TP"
    assert s["settings"]["fingerprint"] == Settings().fingerprint()


def test_specimen_json_has_every_container(out):
    spec = json.loads((out / "specimen.json").read_text())
    assert spec["case_id"] == "MIN01"
    assert sorted(c["container"] for c in spec["containers"]) == ["L-II", "L-III+IV", "R-II", "R-III", "R-IV"]


def test_rerun_replaces_its_own_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "o"
    process_case(MINIMAL, out)
    (out / "my_constraints.csv").write_text("mine")
    process_case(MINIMAL, out, Settings(auto_threshold=0.0))
    assert (out / "my_constraints.csv").read_text() == "mine"  # a file neckmatch did not write is never deleted
    assert set(_csv(out, "matches.csv")["decision"]) == {"auto"}


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_auto_threshold_decides_level_only_too(threshold: float) -> None:
    """A re-thresholded decision and its level_only flag come from one rule: nothing auto is level-only, and
    every undecided row with a container is."""
    matches = compute_case(MINIMAL, Settings(auto_threshold=threshold)).matches
    auto = matches["decision"] == "auto"
    assert (auto == (matches["confidence"] >= threshold)).all() and (auto.all() or threshold > 0.0)
    has_container = matches["container"].fillna("") != ""
    assert (matches["level_only"] == (~auto & has_container)).all()
    assert matches["level_only"].any() == (threshold == 1.0)  # the minimal case has undecided pairs at 1.0


def test_a_file_of_the_users_named_like_an_output_is_refused_without_force(tmp_path):
    out = tmp_path / "o"
    (out).mkdir()
    (out / "matches.csv").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        process_case(MINIMAL, out)
    assert (out / "matches.csv").read_text() == "mine" and [p.name for p in out.iterdir()] == ["matches.csv"]
    process_case(MINIMAL, out, force=True)
    assert "case_id" in (out / "matches.csv").read_text()


def test_bad_case_leaves_no_output(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(InputError, match="IIc"):
        process_case(_bad_case(tmp_path), out)
    assert not out.exists()


def test_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    def broken(outputs, folder):
        (folder / "levels.csv").write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_results", broken)
    out = tmp_path / "o"
    with pytest.raises(OSError, match="disk full"):
        process_case(MINIMAL, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind either


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty and holds no earlier neckmatch output"):
        process_case(MINIMAL, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_constraints_are_honoured(tmp_path):
    cons = tmp_path / "c.csv"
    cons.write_text("mr_node,path_node,action\n1,R-II-01,cannot_link\n2,,unmatched\n")
    out = tmp_path / "o"
    process_case(MINIMAL, out, Settings(constraints=str(cons)))
    m = _csv(out, "matches.csv")
    pairs = set(zip(m["mr_node"], m["path_node"], strict=True))
    assert (1.0, "R-II-01") not in pairs
    assert m.loc[m["mr_node"] == 2, "kind"].tolist() == ["mr-unmatched"]
    assert json.loads((out / "summary.json").read_text())["settings"]["constraints"] == "c.csv"  # no folders


def test_unknown_node_in_constraints_is_an_input_error(tmp_path):
    cons = tmp_path / "c.csv"
    cons.write_text("mr_node,path_node,action\n7,R-II-01,must_link\n")
    with pytest.raises(InputError, match="row 1: mr_node: case 'MIN01' has no MR node 7"):
        process_case(MINIMAL, tmp_path / "o", Settings(constraints=str(cons)))


def test_fingerprint_tracks_constraints_content_not_path(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("mr_node,path_node,action\n1,R-II-01,must_link\n")
    b.write_text(a.read_text())
    fa = Settings(constraints=str(a)).fingerprint()
    assert fa == Settings(constraints=str(b)).fingerprint()
    assert fa != Settings().fingerprint()
    b.write_text("mr_node,path_node,action\n1,R-II-01,cannot_link\n")
    assert fa != Settings(constraints=str(b)).fingerprint()


def test_settings_reject_negative_tolerance():
    with pytest.raises(InputError, match="tolerance_mm: must be a finite number >= 0, got -1"):
        Settings(tolerance_mm=-1.0)


def test_settings_reject_threshold_above_one():
    with pytest.raises(InputError, match=r"auto_threshold: must lie in \[0, 1\], got 1.5"):
        Settings(auto_threshold=1.5)


def test_count_only_report_gives_level_side_patient_tables(tmp_path):
    case = tmp_path / "counts"
    shutil.copytree(MINIMAL, case, ignore=shutil.ignore_patterns("*.py", "nodes.csv"))
    (case / "pathology" / "containers.csv").write_text(
        "container,side,level,nodes_examined,nodes_positive\nR-II,R,II,12,0\nR-III,R,III,8,1\nR-IV,R,IV,5,0\n"
        "L-II,L,II,9,0\nL-III+IV,L,III+IV,10,0\n"
    )
    manifest = json.loads((case / "case.json").read_text())
    manifest["pathology"] = {"containers": "pathology/containers.csv"}
    (case / "case.json").write_text(json.dumps(manifest))
    out = tmp_path / "o"
    s = process_case(case, out)
    assert (s["path_nodes"], s["pairs"], s["match_kinds"]) == (0, 0, {"level-only": 4})
    lv = _csv(out, "truth_levels.csv").set_index(["side", "level"])
    assert (lv.loc[("R", "III"), "path_nodes"], lv.loc[("R", "III"), "outcome"]) == (8, "TP")
    assert _csv(out, "truth_patient.csv")["outcome"].tolist() == ["TP"]


def _documented_columns(name: str) -> set[str]:
    """Every backticked identifier in the docs/outputs.md section whose heading names ``name``."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "outputs.md").read_text()
    section = next(s for s in doc.split("\n## ") if f"`{name}`" in s.splitlines()[0])
    ticked = re.findall(r"`([^`]+)`", section.split("\n", 1)[1])
    return {w.strip().replace("<", "").replace(">", "") for t in ticked for w in t.split(",")
            if re.fullmatch(r"[a-z][a-z0-9_<>]*|pN", w.strip())}


@pytest.mark.parametrize("name", ["levels.csv", "matches.csv", "truth_nodes.csv", "truth_reads.csv",
                                  "truth_levels.csv", "truth_sides.csv", "truth_patient.csv"])
def test_every_written_column_is_documented(out: Path, name: str) -> None:
    """docs/outputs.md names every column `neckmatch match` writes (matches.csv had 7 undocumented ones)."""
    columns = list(pd.read_csv(out / name, nrows=0).columns)
    documented = _documented_columns(name)
    carried = {"path_deposit_mm", "path_ene", "path_slide"} if "path_column" in documented else set()
    undocumented = [c for c in columns if c not in documented | carried]
    assert undocumented == []


def test_other_pathology_columns_are_carried_to_truth_nodes(out: Path) -> None:
    """shared/spec/case-format.md: the report's other columns (deposit_mm, ene, slide) reach the outputs."""
    nodes = _csv(out, "truth_nodes.csv").set_index("path_node")
    assert nodes.loc["R-III-01", ["path_deposit_mm", "path_ene", "path_slide"]].tolist() == [3.0, "no", "A3"]
    assert nodes.loc["R-IV-01", "path_slide"] == "A4"  # an unmatched pathology node keeps its fields too
    assert pd.isna(nodes.loc["R-II-01", "path_ene"])  # an empty cell stays empty


def test_case_tables_write_booleans_as_true_false_or_empty_and_leave_the_input_alone(tmp_path: Path) -> None:
    frame = pd.DataFrame({"flag": [True, False, True], "call": pd.array([True, None, False], dtype="boolean"),
                          "n": [1, 2, 3]})
    write_results(CaseResult("P1", frame, pd.DataFrame(), {}, {}, {}), tmp_path)
    text = (tmp_path / "levels.csv").read_text()
    assert text.splitlines() == ["flag,call,n", "true,true,1", "false,,2", "true,false,3"]
    assert frame["flag"].dtype == bool and isinstance(frame["call"].dtype, pd.BooleanDtype)
