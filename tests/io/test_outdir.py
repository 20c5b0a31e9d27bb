"""Output folders: only empty ones or neckmatch's own; a user's files are never deleted; results carry the case
id and the inputs' fingerprint, and are refused for another case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from neckmatch.errors import InputError
from neckmatch.io.outdir import MARKER, check_results_for_case, inputs_fingerprint, read_marker, write_into
from neckmatch.pipeline import process_case

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


def test_a_new_folder_appears_whole_with_its_marker(tmp_path: Path) -> None:
    with write_into(tmp_path / "o", {"command": "t", "case_id": "P1"}) as stage:
        (stage / "a.csv").write_text("a")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.csv", MARKER]
    assert read_marker(tmp_path / "o") == {"format": "neckmatch-output/1", "command": "t", "case_id": "P1",
                                           "files": ["a.csv"], "complete": True}


def test_a_failure_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with write_into(out, {"case_id": "P1"}) as stage:
        (stage / "a.csv").write_text("first")
    with pytest.raises(RuntimeError), write_into(out, {"case_id": "P1"}) as stage:
        (stage / "a.csv").write_text("second")
        raise RuntimeError("crash")
    assert (out / "a.csv").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_own_stale_files_go_a_users_files_stay(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with write_into(out, {}) as stage:
        (stage / "old.csv").write_text("x")
    (out / "mine.txt").write_text("keep")
    with write_into(out, {}) as stage:
        (stage / "new.csv").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", MARKER, "new.csv"]


def test_a_foreign_folder_is_refused_and_force_replaces_only_own_names(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "constraints.csv").write_text("keep")
    (out / "a.csv").write_text("user's a")
    with pytest.raises(InputError, match="not empty and holds no earlier neckmatch output"), write_into(out, {}):
        pass
    with write_into(out, {}, force=True) as stage:
        (stage / "a.csv").write_text("ours")
    assert (out / "a.csv").read_text() == "ours" and (out / "constraints.csv").read_text() == "keep"


def test_results_are_refused_for_another_case_or_changed_inputs(tmp_path: Path) -> None:
    case = Path(shutil.copytree(EXAMPLE, tmp_path / "case"))
    process_case(case, tmp_path / "res")
    check_results_for_case(tmp_path / "res", case)  # its own case: fine
    other = Path(shutil.copytree(EXAMPLE, tmp_path / "other"))
    doc = json.loads((other / "case.json").read_text())
    (other / "case.json").write_text(json.dumps({**doc, "case_id": "OTHER1"}))
    with pytest.raises(InputError, match="results of case 'MIN01', not of 'OTHER1'"):
        check_results_for_case(tmp_path / "res", other)
    before = inputs_fingerprint(case)
    with (case / "mri" / "reads.csv").open("a") as fh:
        fh.write("3,R9,2,no\n")
    assert inputs_fingerprint(case) != before
    with pytest.raises(InputError, match="made from other input files"):
        check_results_for_case(tmp_path / "res", case)
    with pytest.raises(InputError, match="holds no neckmatch match output"):
        check_results_for_case(tmp_path, case)


def test_the_fingerprint_covers_the_specimen_blocks_files(tmp_path: Path) -> None:
    from neckmatch.synth import SynthParams, generate_cohort

    case = generate_cohort(1, 31, tmp_path / "c", SynthParams(specimen_fraction=1.0))[0]
    block = json.loads((case / "case.json").read_text())["specimen"]
    named = [block["links"]] + [img[key] for img in block["images"] for key in ("nodes", "orientation")]
    for rel in named:
        before = inputs_fingerprint(case)
        with (case / rel).open("ab") as fh:  # one byte more in a scan, a suture file or the links
            fh.write(b"\n")
        assert inputs_fingerprint(case) != before, rel
    before = inputs_fingerprint(case)
    (case / "notes.txt").write_text("not an input")
    assert inputs_fingerprint(case) == before


def test_a_case_output_an_older_neckmatch_wrote_without_a_marker_is_written_over(tmp_path: Path) -> None:
    out = tmp_path / "o"
    process_case(EXAMPLE, out)
    (out / MARKER).unlink()  # as an older neckmatch left it: its summary.json says so
    (out / "notes.txt").write_text("mine")
    process_case(EXAMPLE, out)
    assert (out / "notes.txt").read_text() == "mine" and "matches.csv" in read_marker(out)["files"]
    other = tmp_path / "p"
    other.mkdir()
    (other / "summary.json").write_text('{"study": "not neckmatch"}')
    with pytest.raises(InputError, match="holds no earlier neckmatch output"):
        process_case(EXAMPLE, other)
