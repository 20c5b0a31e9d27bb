"""`neckmatch render` on a synthetic case folder: every file written, reusing match outputs; bad input is one line."""

from __future__ import annotations

import pytest
import trimesh

from neckmatch.synth import generate_cohort
from tests.cli_helpers import run_main as _run


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return generate_cohort(1, 5, tmp_path_factory.mktemp("cohort"))[0]


def test_render_reuses_match_outputs_and_writes_every_map(case_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "maps"
    assert _run(monkeypatch, "match", str(case_dir), "--out", str(out)) == 0
    assert _run(monkeypatch, "render", str(case_dir), "--out", str(out)) == 0
    cid = case_dir.name
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.name.startswith(cid))
    assert names == sorted([f"{cid}_map.png", f"{cid}_scene.glb", f"{cid}_scene.vtm", f"{cid}_levels.seg.nrrd",
                            f"{cid}_nodes.mrk.json"])
    assert "wrote" in capsys.readouterr().out
    glb = trimesh.load(out / f"{cid}_scene.glb", file_type="glb")
    assert glb.metadata["node_coloring"] == "outcome"  # truth_nodes.csv in --out was reused
    nodes = [g for name, g in glb.geometry.items() if name.startswith("node_")]
    kinds = ("matched", "undecided", "level-only", "unmatched")
    assert nodes and all(g.metadata.get("match_kind") in kinds for g in nodes)


def test_render_of_a_missing_case_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    assert _run(monkeypatch, "render", str(tmp_path / "nope"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
