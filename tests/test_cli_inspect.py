"""``neckmatch inspect`` and every bad input of issue 2 through the CLI: exit code 2, one line on stderr naming
file, field and value, no traceback."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from neckmatch import cli
from neckmatch.errors import InputError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minimal_case"
runner = CliRunner()


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "MIN01", ignore=shutil.ignore_patterns("*.py")))


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the console-script entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["neckmatch", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        sys.exit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_inspect_example_text() -> None:
    result = runner.invoke(cli.app, ["inspect", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "case MIN01" in result.output and "MR nodes: 4 (labels 1, 2, 3, 4)" in result.output
    assert "R-III" in result.output and "readers R1 (4), R2 (4)" in result.output


def test_inspect_example_json() -> None:
    result = runner.invoke(cli.app, ["inspect", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert (s["case_id"], s["nodes"]["count"], s["nodes"]["orientation"]) == ("MIN01", 4, "RAS")
    assert [c["container"] for c in s["containers"]] == ["R-II", "R-III", "R-IV", "L-II", "L-III+IV"]


def test_app_raises_input_error_for_bad_case(case_dir: Path) -> None:
    (case_dir / "case.json").write_text("{")
    result = runner.invoke(cli.app, ["inspect", str(case_dir)])
    assert isinstance(result.exception, InputError) and "case.json" in str(result.exception)


# ---- every bad input: a mutation of the example case and the one line it must print ---------------------------
def _edit_json(rel: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(case: Path) -> None:
        doc = json.loads((case / rel).read_text())
        fn(doc)
        (case / rel).write_text(json.dumps(doc))
    return apply


def _edit_csv(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(case: Path) -> None:
        text = (case / rel).read_text()
        assert old in text
        (case / rel).write_text(text.replace(old, new, 1))
    return apply


def _nifti(data: np.ndarray, affine: np.ndarray) -> Callable[[Path], None]:
    def apply(case: Path) -> None:
        img = nib.Nifti1Image(data, None)
        img.set_sform(affine, code=2)
        nib.save(img, case / "mri" / "nodes.nii.gz")
    return apply


def _truncate(case: Path) -> None:
    raw = (case / "mri" / "nodes.nii.gz").read_bytes()
    (case / "mri" / "nodes.nii.gz").write_bytes(raw[: len(raw) // 2])


def _corrupt(case: Path) -> None:
    (case / "mri" / "nodes.nii.gz").write_bytes(gzip.compress(b"\x00garbage" * 50))


def _drop_curve(doc: dict) -> None:
    doc["markups"] = [m for m in doc["markups"] if m.get("name") != "trapezius_anterior_R"]


def _one_point_curve(doc: dict) -> None:
    curve = next(m for m in doc["markups"] if m.get("name") == "SMG_posterior_L")
    curve["controlPoints"] = curve["controlPoints"][:1]


_FLOAT = np.zeros((4, 4, 4), dtype=np.float32)
_FLOAT[1, 1, 1] = 1.25
_LM = "mri/landmarks.mrk.json"
_PN = "pathology/nodes.csv"
BAD_INPUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing case.json": (lambda c: (c / "case.json").unlink(), r"MIN01/case\.json: missing"),
    "malformed case.json": (lambda c: (c / "case.json").write_text("{\"format\": "), r"case\.json: not valid JSON"),
    "case.json without case_id": (_edit_json("case.json", lambda d: d.pop("case_id")),
                                  r"case\.json: case_id: must be a non-empty string, got None"),
    "missing named file": (lambda c: (c / "mri" / "reads.csv").unlink(),
                           r"case\.json: mri\.reads: names 'mri/reads\.csv', which does not exist"),
    "corrupt nii.gz": (_corrupt, r"nodes\.nii\.gz: cannot read NIfTI \(corrupt or truncated\?\)"),
    "truncated nii.gz": (_truncate, r"nodes\.nii\.gz: cannot read NIfTI \(corrupt or truncated\?\)"),
    "non-integer label map": (_nifti(_FLOAT, np.eye(4)),
                              r"nodes\.nii\.gz: data: .*integer labels, got float32 values such as 1\.25\n"),
    "non-invertible affine": (_nifti(np.ones((4, 4, 4), np.uint8), np.diag([1.0, 0.0, 1.0, 1.0])),
                              r"nodes\.nii\.gz: affine: not invertible \(determinant 0\)"),
    "unknown coordinate system": (_edit_json(_LM, lambda d: d["markups"][3].update(coordinateSystem="XYZ")),
                                  r"mrk\.json: markups\[3\]\.coordinateSystem: must be LPS or RAS, got 'XYZ'"),
    "missing landmark": (_edit_json(_LM, _drop_curve),
                         r"landmarks\.mrk\.json: landmark 'trapezius_anterior_R': required landmark missing"),
    "curve with 1 point": (_edit_json(_LM, _one_point_curve),
                           r"landmarks\.mrk\.json: curve 'SMG_posterior_L': needs at least 2 control points, got 1"),
    "unknown level": (_edit_csv(_PN, "R-IV,R,IV,", "R-IV,R,IVb,"),
                      r"nodes\.csv: row 4: level: 'IVb' is not a surgical"),
    "unknown side": (_edit_csv(_PN, "L-II,L,II", "L-II,left,II"),
                     r"nodes\.csv: row 5: side: must be R or L, got 'left'"),
    "size zero": (_edit_csv(_PN, "II,4.0,", "II,0,"), r"nodes\.csv: row 2: size_mm: must be > 0, got 0"),
    "size not a number": (_edit_csv(_PN, "II,4.0,", "II,4mm,"),
                          r"nodes\.csv: row 2: size_mm: must be a number, got '4mm'"),
    "duplicate node id": (_edit_csv(_PN, "R-II-02,", "R-II-01,"),
                          r"nodes\.csv: row 2: node: duplicate node id 'R-II-01'"),
    "cc outside [0, 1]": (_edit_csv(_PN, "0.4,0.3", "1.4,0.3"),
                          r"nodes\.csv: row 1: cc: must lie in \[0, 1\], got 1\.4"),
    "ap outside [0, 1]": (_edit_csv(_PN, "0.4,0.3", "0.4,-3"),
                          r"nodes\.csv: row 1: ap: must lie in \[0, 1\], got -3"),
    "read of a missing label": (_edit_csv("mri/reads.csv", "4,R2,3,no", "44,R2,3,no"),
                                r"reads\.csv: row 8: node: label 44 does not exist in the label map"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(
    name: str, case_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, message = BAD_INPUTS[name]
    mutate(case_dir)
    code, out, err = _run_main(monkeypatch, capsys, "inspect", str(case_dir))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert re.search(message, err), err


def test_console_script_subprocess(case_dir: Path) -> None:
    """The installed ``neckmatch`` script: good case exit 0; bad pathology row exit 2, one line, no traceback."""
    exe = REPO / ".venv" / "bin" / "neckmatch"
    ok = subprocess.run([str(exe), "inspect", str(case_dir), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["case_id"] == "MIN01"
    _edit_csv(_PN, "R-IV,R,IV,", "R-IV,R,IIc,")(case_dir)
    bad = subprocess.run([str(exe), "inspect", str(case_dir)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "pathology/nodes.csv: row 4: level: 'IIc' is not a surgical level" in bad.stderr


def test_inspect_shows_the_specimen_block(case_dir: Path) -> None:
    from tests.io.test_specimen import _write

    _write(case_dir)  # one piece R (R-II, R-III): labels 1, 2, 5; sutures cranial, caudal, anterior, lateral
    result = runner.invoke(cli.app, ["inspect", str(case_dir)])
    assert result.exit_code == 0, result.output
    assert "specimen MRI: 1 piece; 2 of 6 pathology nodes linked (1 sure, 0 probable, 1 unrated) to 2 specimen " \
           "nodes" in result.output
    assert "R        side R  R-II, R-III: 3 specimen nodes, voxels 0.5 x 0.5 x 0.5 mm, sutures cranial, caudal, " \
           "anterior, lateral" in result.output
    s = json.loads(runner.invoke(cli.app, ["inspect", str(case_dir), "--json"]).output)
    assert s["specimen"]["links"] == {"count": 2, "sure": 1, "probable": 0, "unrated": 1, "specimen_nodes_linked": 2}
    assert s["specimen"]["pieces"][0]["specimen_nodes"] == 3
    assert json.loads(runner.invoke(cli.app, ["inspect", str(EXAMPLE), "--json"]).output)["specimen"] is None
    assert "specimen" not in runner.invoke(cli.app, ["inspect", str(EXAMPLE)]).output
