"""Synthetic ex vivo specimen scans: pieces, physics, sutures, links and families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neckmatch.io.case import read_case
from neckmatch.synth import SynthParams, generate_cohort
from neckmatch.synth.cohort import case_seed, simulate_case
from neckmatch.synth.specimen import FAMILIES, HELD_OUT, specimen_family


def test_specimen_fraction_zero_leaves_cases_unchanged() -> None:
    a = simulate_case("S", case_seed(11, 0), SynthParams(), raster=False)
    b = simulate_case("S", case_seed(11, 0), SynthParams(specimen_fraction=1.0), raster=False)
    assert a.specimen is None and b.specimen is not None
    pd.testing.assert_frame_equal(a.truth, b.truth)  # the specimen is drawn last: nothing else moves


def test_pieces_cover_the_dissected_sides_and_links_name_their_nodes() -> None:
    case = simulate_case("S", case_seed(12, 1), SynthParams(specimen_fraction=1.0), raster=False)
    spec = case.specimen
    assert spec is not None
    sides = {p.side for p in spec.pieces}
    assert sides == set(case.pathology.dissected)
    for p in spec.pieces:
        assert {"cranial", "caudal", "anterior"} <= set(p.sutures)
        assert set(p.label_map.labels().tolist()) == set(p.labels.tolist())
        # every label is one true node removed with one of the piece's containers
        assert set(case.pathology.container[p.true_index]) <= set(p.containers)
    truth = {(r.image, r.specimen_node): r.true_id for r in spec.truth.itertuples()}
    right = [truth[(r.image, r.specimen_node)] for r in spec.links.itertuples()]
    assert len(right) > 0.7 * len(case.pathology.report)


def test_flattening_shrinks_the_medio_lateral_spread() -> None:
    case = simulate_case("S", case_seed(13, 0), SynthParams(specimen_fraction=1.0, specimen_family="flat"),
                         raster=False)
    for p in case.specimen.pieces:
        if len(p.true_index) < 15:
            continue
        centres = case.nodes.centres[p.true_index]
        from neckmatch.geometry.registration import specimen_nodes

        spec = specimen_nodes(p.label_map).set_index("node").loc[p.labels, ["x", "y", "z"]].to_numpy()
        ev_patient = np.sort(np.linalg.eigvalsh(np.cov((centres - centres.mean(0)).T)))
        ev_spec = np.sort(np.linalg.eigvalsh(np.cov((spec - spec.mean(0)).T)))
        assert ev_spec[0] < ev_patient[0]  # the thinnest axis is thinner on the board
        assert ev_spec[2] > ev_patient[2] * 0.9  # the longest is not shorter (stretch)


def test_upside_down_swaps_the_cranial_and_caudal_sutures_of_one_piece() -> None:
    sp = specimen_family("upside-down")
    assert sp.upside_down and set(FAMILIES) >= {"default", "flat", "wrong-links", "no-optional-sutures", "upside-down"}
    with pytest.raises(ValueError, match="'nope' is not a specimen family"):
        specimen_family("nope")


def test_written_specimen_case_reads_back(tmp_path: Path) -> None:
    d = generate_cohort(1, 14, tmp_path, SynthParams(specimen_fraction=1.0))[0]
    case = read_case(d)
    assert case.specimen is not None and len(case.specimen.links) > 0
    st = pd.read_csv(d / "specimen_truth.csv")
    assert list(st.columns) == ["image", "specimen_node", "true_id"]
    for p in case.specimen.pieces:
        assert set(st.loc[st["image"] == p.id, "specimen_node"]) == set(p.label_map.labels().tolist())


def test_cli_synth_writes_specimen_cases_and_refuses_an_unknown_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli_helpers import run_main

    code = run_main(monkeypatch, "synth", "--cases", "1", "--seed", "3", "--out", str(tmp_path / "a"),
                    "--specimen", "1", "--specimen-family", "no-optional-sutures")
    assert code == 0 and (tmp_path / "a" / "SYN001" / "specimen" / "links.csv").is_file()
    code = run_main(monkeypatch, "synth", "--cases", "1", "--seed", "3", "--out", str(tmp_path / "b"),
                    "--specimen", "1", "--specimen-family", "bad")
    err = capsys.readouterr().err
    assert code == 2 and "--specimen-family: 'bad' is not a specimen family" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_pieces_list_only_containers_the_report_has() -> None:
    # seed 8, case 7: container L-IV held nodes but none was reported; a piece naming it made the case unreadable
    case = simulate_case("S", case_seed(8, 6), SynthParams(specimen_fraction=1.0), raster=False)
    reported = set(case.pathology.report["container"])
    assert case.specimen is not None and case.specimen.pieces
    assert set(case.pathology.container) - {""} - reported  # the situation: a container with nothing reported
    for p in case.specimen.pieces:
        assert p.containers and set(p.containers) <= reported
        assert set(case.pathology.container[p.true_index]) <= set(p.containers)


def _link_shares(family: str, cases: int = 4) -> tuple[float, float, int, int]:
    """Share of reported nodes linked, share of links naming another node than their own, pieces, pieces of one
    container, over ``cases`` simulated cases of ``family``."""
    reported = linked = wrong = pieces = single = 0
    for k in range(cases):
        case = simulate_case("S", case_seed(21, k), SynthParams(specimen_fraction=1.0, specimen_family=family),
                             raster=False)
        spec = case.specimen
        true_of_node = {pn: t.true_id for t in case.truth.itertuples()  # fragments: every piece's node
                        for pn in {t.path_node, *t.path_fragments.split(";")} - {""}}
        truth = {(r.image, r.specimen_node): r.true_id for r in spec.truth.itertuples()}
        reported += len(case.pathology.report)
        linked += len(spec.links)
        wrong += sum(truth[(r.image, r.specimen_node)] != true_of_node[r.path_node] for r in spec.links.itertuples())
        pieces += len(spec.pieces)
        single += sum(len(p.containers) == 1 for p in spec.pieces)
    return linked / reported, wrong / max(linked, 1), pieces, single


def test_the_held_out_families_break_what_they_say() -> None:
    base_linked, base_wrong, _, _ = _link_shares("default")
    linked, wrong, _, _ = _link_shares("sloppy-links")
    assert base_wrong < 0.08 and 0.15 < wrong < 0.4  # 2 % vs 25 % of the links name a neighbour
    linked, _, _, _ = _link_shares("few-links")
    assert base_linked > 0.8 and 0.35 < linked < 0.65  # 92 % vs 50 % of the reported nodes linked
    _, _, pieces, single = _link_shares("per-container")
    assert pieces > 8 and single == pieces  # no piece en bloc
    assert specimen_family("shrink-20").shrink == (0.15, 0.25) and specimen_family("jitter-3mm").jitter_mm == 3.0
    assert set(HELD_OUT) < set(FAMILIES) and "default" not in HELD_OUT
