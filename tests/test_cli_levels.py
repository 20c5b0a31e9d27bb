"""``neckmatch levels`` on a case whose case.json names no landmarks: one line naming the file, exit 2, no output."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from neckmatch import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"


def test_levels_of_a_case_without_landmarks_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = Path(shutil.copytree(EXAMPLE, tmp_path / "MIN01", ignore=shutil.ignore_patterns("*.py")))
    doc = json.loads((case / "case.json").read_text())
    del doc["mri"]["landmarks"]
    (case / "case.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["neckmatch", "levels", str(case), "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "case.json" in err and "mri.landmarks" in err and "no landmarks" in err
    assert not (out / "levels.csv").exists()
