"""The examples gallery (examples/<topic>/*.py) runs as documented and writes what it says it writes.

Each script runs in a subprocess (the test's own interpreter, warnings as errors) with a fresh output folder
under ``tmp_path`` as its only argument and an empty working folder; the checks read its outputs back.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neckmatch.io.labelmap import read_label_map

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(script: Path, tmp_path: Path, *args: str) -> tuple[Path, str]:
    """Run ``script OUT [args]`` from an empty folder; return OUT and the script's stdout.

    Checks that the script exits 0, writes nothing into the working folder, and that every ``wrote PATH`` line
    it prints names a file that exists inside OUT.
    """
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", "-W",
           "ignore::PendingDeprecationWarning", str(script), str(out), *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []
    for line in proc.stdout.splitlines():
        if line.startswith("wrote "):
            path = Path(line.removeprefix("wrote ").strip())
            assert path.is_file(), line
            assert path.resolve().is_relative_to(out.resolve()), line
    return out, proc.stdout


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk; raises if the file is not a PNG."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def check_png(path: Path, min_width: int, min_kb: float) -> None:
    width, height = png_size(path)
    assert width >= min_width and height >= 300, (width, height)
    assert path.stat().st_size > min_kb * 1024


def test_levels_example(tmp_path: Path) -> None:
    out, stdout = run_example(EXAMPLES / "levels" / "level_map.py", tmp_path)
    levels = pd.read_csv(out / "levels.csv", keep_default_na=False)
    labels = read_label_map(out / "cohort" / "SYN001" / "mri" / "nodes.nii.gz").labels()
    # one row per MR label of the written case, in label order
    assert levels["node"].tolist() == labels.tolist()
    assert len(levels) >= 10
    assert set(levels["side"]) == {"R", "L"}
    # borderline is exactly boundary < 3 mm, and the printed count is the table's
    borderline = levels["borderline"].astype(str).str.lower() == "true"
    assert borderline.tolist() == (levels["boundary_mm"] < 3.0).tolist()
    n_border = int(borderline.sum())
    assert f"{len(levels)} MR nodes, {n_border} borderline" in stdout
    check_png(out / "level_slices.png", min_width=1500, min_kb=80)


def test_public_api_example_uses_only_nm_and_reproduces_the_pipeline(tmp_path: Path) -> None:
    script = EXAMPLES / "api" / "public_api.py"
    tree = ast.parse(script.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "neckmatch" in imported
    assert not [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and "neckmatch" in (n.module or "")]
    out, stdout = run_example(script, tmp_path)
    cases = sorted(p.name for p in (out / "cohort").iterdir() if p.is_dir())
    assert cases == ["SYN001", "SYN002", "SYN003"]
    for cid in cases:  # what the API wrote equals what the CLI pipeline writes for the same case
        from neckmatch.pipeline import process_case

        process_case(out / "cohort" / cid, tmp_path / "cli" / cid)
        for name in ("matches.csv", "truth_nodes.csv", "truth_patient.csv"):
            assert (out / "results" / cid / name).read_bytes() == (tmp_path / "cli" / cid / name).read_bytes()
    acc = pd.read_csv(out / "accuracy.csv")
    pooled = acc[(acc["analysis"] == "main") & acc["level"].isin(["all", "any"]) & (acc["side"] == "both")]
    assert sorted(pooled["unit"]) == ["level", "node", "patient", "side"]
    first = re.search(r"^(SYN001): (\d+) MR nodes", stdout, re.M)
    assert first is not None and int(first[2]) == len(pd.read_csv(out / "results" / "SYN001" / "levels.csv"))


def test_matching_example(tmp_path: Path) -> None:
    out, stdout = run_example(EXAMPLES / "matching" / "match_one_case.py", tmp_path)
    case_dir = out / "cohort" / "SYN001"
    report = pd.read_csv(case_dir / "pathology" / "nodes.csv")
    assert report[["cc", "ap"]].notna().all().all()  # the example asks for a case with positions
    matches = pd.read_csv(out / "results" / "matches.csv", dtype={"path_node": str})
    n_mr = len(read_label_map(case_dir / "mri" / "nodes.nii.gz").labels())
    # every MR node and every pathology node appears exactly once
    assert sorted(matches["mr_node"].dropna().astype(int)) == list(range(1, n_mr + 1))
    assert sorted(matches["path_node"].dropna()) == sorted(report["node"])
    found = re.search(r"pairs agreeing with the ground truth: (\d+)/(\d+)", stdout)
    assert found is not None, stdout
    hits, pairs = int(found[1]), int(found[2])
    assert pairs == int((matches["kind"] == "pair").sum())
    assert 0.5 * pairs < hits <= pairs  # far better than chance on a case with positions
    printed = re.search(r"decisions: (\{.*\})", stdout)
    assert printed is not None, stdout
    assert ast.literal_eval(printed[1]) == matches["decision"].value_counts().to_dict()
    summary = json.loads((out / "results" / "summary.json").read_text())
    assert summary["pairs"] == pairs
    check_png(out / "matches_by_container.png", min_width=1200, min_kb=80)


def test_lydata_example(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "lydata" / "2023-isb-multisite" / "data.csv"
    out, stdout = run_example(EXAMPLES / "statistics" / "lydata_accuracy.py", tmp_path, str(source))
    acc = pd.read_csv(out / "accuracy.csv", keep_default_na=False)
    assert len(acc) == 11 * 2 + 2  # 11 lyDATA levels x ipsi/contra, pooled, patient
    cells = ["tp", "fp", "fn", "tn"]
    per_level = acc[acc["level"].isin(["I", "II", "III", "IV", "V"]) & acc["side"].isin(["ipsi", "contra"])]
    pooled = acc[acc["level"] == "all"].iloc[0]
    # the pooled row is the sum of levels I-V of both sides
    assert pooled[cells].astype(int).tolist() == per_level[cells].astype(int).sum().tolist()
    assert pooled["tp"] / (pooled["tp"] + pooled["fn"]) == pytest.approx(float(pooled["sensitivity"]))
    assert float(pooled["sensitivity_low"]) < float(pooled["sensitivity"]) < float(pooled["sensitivity_high"])
    assert f"{float(pooled['sensitivity']):.3f}" in stdout
    assert "332 patients" in stdout
    check_png(out / "forest_mri_vs_pathology.png", min_width=1000, min_kb=40)
    assert (out / "forest_mri_vs_pathology.svg").is_file()


def test_maps_example(tmp_path: Path) -> None:
    out, stdout = run_example(EXAMPLES / "maps" / "render_case_map.py", tmp_path)
    results = out / "results"
    width, height = png_size(results / "SYN001_map.png")
    assert width >= 800 and height >= 300
    glb = (results / "SYN001_scene.glb").read_bytes()
    assert glb[:4] == b"glTF" and len(glb) > 10_000
    assert (results / "SYN001_levels.seg.nrrd").stat().st_size > 1000
    assert (results / "SYN001_scene.mrml").read_text().startswith("<MRML")
    assert "rendered in" in stdout


def test_minimal_case_is_what_make_case_makes(tmp_path: Path) -> None:
    # make_case.py writes beside itself: run a copy and compare with the bundled case
    shutil.copy(EXAMPLES / "minimal_case" / "make_case.py", tmp_path / "make_case.py")
    proc = subprocess.run([sys.executable, "-W", "error", str(tmp_path / "make_case.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundled = EXAMPLES / "minimal_case"
    for rel in ("case.json", "mri/landmarks.mrk.json", "mri/reads.csv", "pathology/nodes.csv"):
        assert (tmp_path / rel).read_text() == (bundled / rel).read_text(), rel
    made, ref = read_label_map(tmp_path / "mri" / "nodes.nii.gz"), read_label_map(bundled / "mri" / "nodes.nii.gz")
    np.testing.assert_array_equal(made.data, ref.data)
    np.testing.assert_allclose(made.affine, ref.affine)
    assert ref.labels().tolist() == [1, 2, 3, 4]


def test_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.py"))
    assert len(scripts) >= 5
    missing = [s for s in scripts if s not in readme]
    assert missing == []
