"""process_case on a case with specimen scans writes specimen_registration.csv / .json; without, it does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.geometry.registration import specimen_nodes
from neckmatch.io.case import read_case
from neckmatch.pipeline import format_summary, process_case
from neckmatch.synth import SynthParams, generate_cohort

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "minimal_case"


def test_specimen_outputs_map_every_specimen_node(tmp_path: Path) -> None:
    d = generate_cohort(1, 31, tmp_path / "c", SynthParams(specimen_fraction=1.0))[0]
    process_case(d, tmp_path / "out")
    reg = pd.read_csv(tmp_path / "out" / "specimen_registration.csv")
    doc = json.loads((tmp_path / "out" / "specimen_registration.json").read_text())
    case = read_case(d)
    assert len(reg) == sum(len(p.label_map.labels()) for p in case.specimen.pieces)
    assert set(reg.columns) == {"case_id", "image", "specimen_node", "mr_node", "confidence", "x", "y", "z",
                                "residual_mm"}
    paired = reg["mr_node"].notna()
    assert reg.loc[paired, "residual_mm"].notna().all() and reg.loc[~paired, "residual_mm"].isna().all()
    # the JSON transform maps the specimen centroids onto the CSV's patient positions
    for img in doc["images"]:
        t = {k: np.asarray(v, float) for k, v in img["transform"].items()}
        piece = next(p for p in case.specimen.pieces if p.id == img["image"])
        nodes = specimen_nodes(piece.label_map)
        q = ((nodes[["x", "y", "z"]].to_numpy() - t["spec_centre"]) @ t["rotation"].T) / t["spec_scale"]
        q = q @ t["affine"].T + t["bend"] * q[:, 2:3] ** 2 + t["shift"]
        g = np.exp(-((q[:, None] - t["ctrl"][None]) ** 2).sum(axis=2) / (2 * float(t["beta"]) ** 2))
        x = (q + g @ t["coef"]) * float(t["pat_scale"]) + t["pat_centre"]
        rows = reg[reg["image"] == img["image"]]
        assert np.allclose(x, rows[["x", "y", "z"]].to_numpy(), atol=2e-3)
        assert img["paired_nodes"] == int(rows["mr_node"].notna().sum())
    matches = pd.read_csv(tmp_path / "out" / "matches.csv")
    assert (matches["via"] == "specimen").any()
    # summary.json and the command line's summary say what the specimen did, per piece as in the JSON
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["specimen"]
    assert summary["pairs_via_specimen"] == int((matches["via"] == "specimen").sum())
    assert summary["second_nodes"] == int((matches["reason"] == "second-node").sum())
    assert [(p["image"], p["paired_nodes"], p["specimen_nodes"]) for p in summary["pieces"]] == [
        (img["image"], img["paired_nodes"], img["specimen_nodes"]) for img in doc["images"]]
    text = format_summary(json.loads((tmp_path / "out" / "summary.json").read_text()))
    first = doc["images"][0]
    assert f"specimen MRI: {summary['pairs_via_specimen']} pairs matched through it" in text
    assert f"  {first['image']}: {first['paired_nodes']} of {first['specimen_nodes']} specimen nodes paired" in text


def test_no_specimen_files_without_a_block(tmp_path: Path) -> None:
    assert "specimen" not in process_case(EXAMPLE, tmp_path / "out")
    assert not (tmp_path / "out" / "specimen_registration.csv").exists()
    assert not (tmp_path / "out" / "specimen_registration.json").exists()


def test_the_summary_names_a_piece_lying_otherwise_than_its_sutures_say(tmp_path: Path) -> None:
    from neckmatch.pipeline import compute_case

    poses = {}
    for family in ("default", "upside-down"):  # the same patients; one piece per case turned over in the second
        cases = generate_cohort(3, 2024, tmp_path / family, SynthParams(specimen_fraction=1.0, specimen_family=family))
        summaries = [compute_case(d).summary for d in cases]
        poses[family] = [p["pose"] for s in summaries for p in s["specimen"]["pieces"]]
        texts = [format_summary(s) for s in summaries]
    assert all(p.startswith("sutures") for p in poses["default"])
    turned = [p for p in poses["upside-down"] if not p.startswith("sutures")]
    assert turned and sum("not the sutures' frame: check them" in t for t in texts) == len(turned)


def test_the_summary_counts_the_second_nodes_proposed(tmp_path: Path) -> None:
    """Seed 2024, case 5: L-II-16 is proposed as the second node of MR label 27 (tests/correlation)."""
    from neckmatch.pipeline import compute_case
    from neckmatch.synth.cohort import case_seed, generate_case

    generate_case("SYN005", case_seed(2024, 4), tmp_path, SynthParams(specimen_fraction=1.0))
    result = compute_case(tmp_path / "SYN005")
    assert result.summary["specimen"]["second_nodes"] == 1
    assert "(1 proposed as the second node of a matted MR label: review)" in format_summary(result.summary)
