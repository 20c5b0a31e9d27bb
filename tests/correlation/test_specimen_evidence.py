"""Matching through the specimen scan: the specimen term, via = specimen, the matches contract, no status."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from neckmatch.correlation.evidence import mr_nodes, path_units
from neckmatch.correlation.matching import MATCH_COLUMNS, match_case
from neckmatch.correlation.specimen_evidence import (
    FEATURES,
    REGISTRATION_COLUMNS,
    SpecimenParams,
    confident_pairs,
    keep_held,
    merge_shares,
    specimen_evidence,
)
from neckmatch.geometry.levels import levels_table
from neckmatch.io.case import read_case
from neckmatch.model import PathNode, Status
from neckmatch.synth import SynthParams, generate_cohort


@pytest.fixture(scope="module")
def item(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("spec")
    d = generate_cohort(1, 2024, root, SynthParams(specimen_fraction=1.0))[0]
    case = read_case(d)
    return {"case": case, "levels": levels_table(case), "dir": d,
            "gt": pd.read_csv(d / "ground_truth.csv", dtype=str, keep_default_na=False),
            "st": pd.read_csv(d / "specimen_truth.csv", dtype=str, keep_default_na=False)}


def test_linked_true_pairs_get_positive_specimen_evidence(item: dict) -> None:
    case, gt = item["case"], item["gt"]
    mr, units = mr_nodes(case, item["levels"]), path_units(case)
    ev = specimen_evidence(case, mr, units)
    assert ev is not None and list(ev.table.columns) == REGISTRATION_COLUMNS
    row = {int(v): k for k, v in enumerate(mr.node)}
    pos = []
    for r in gt.itertuples():
        if r.mr_label and r.path_node and r.path_node in units.unit:
            j = units.unit.index(r.path_node)
            if ev.linked[j]:
                pos.append(ev.weights[row[int(r.mr_label)], j])
    assert len(pos) > 10 and np.mean(np.array(pos) > 0) > 0.8
    assert np.all(ev.weights[:, ~ev.linked] == 0.0)  # unlinked units: container evidence only


def test_matches_keep_their_contract_and_say_via(item: dict) -> None:
    res = match_case(item["case"], item["levels"])
    m = res.matches
    assert list(m.columns) == MATCH_COLUMNS
    assert sorted(m["path_node"].dropna()) == sorted(p.node for p in item["case"].path_nodes)
    assert set(m["mr_node"].dropna().astype(int)) == set(item["levels"]["node"].astype(int))
    pair = m["kind"] == "pair"
    assert set(m.loc[pair, "via"]) <= {"specimen", "containers"} and (m.loc[pair, "via"] == "specimen").sum() > 10
    assert (m.loc[~pair, "via"] == "").all()
    assert res.registration is not None and len(res.registration.table) > 0
    without = match_case(dataclasses.replace(item["case"], specimen=None), item["levels"])
    assert without.registration is None and (without.matches["via"] != "specimen").all()


def test_pathology_status_is_never_evidence(item: dict) -> None:
    case = item["case"]
    flipped = tuple(dataclasses.replace(p, status=Status.NEGATIVE if p.positive else Status.POSITIVE)
                    for p in case.path_nodes)
    a = match_case(case, item["levels"]).matches
    b = match_case(dataclasses.replace(case, path_nodes=flipped), item["levels"]).matches
    cols = ["mr_node", "path_node", "confidence", "decision", "via"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert isinstance(flipped[0], PathNode)


def test_exclusivity_only_weakens_evidence_and_features_are_in_range(item: dict) -> None:
    case = item["case"]
    mr, units = mr_nodes(case, item["levels"]), path_units(case)
    ev = specimen_evidence(case, mr, units)
    free = specimen_evidence(case, mr, units, SpecimenParams(exclusive=False))
    assert ev is not None and free is not None
    # an MR node that another specimen node explains better can only lose evidence, and some do
    assert np.all(ev.weights <= free.weights + 1e-12) and np.any(ev.weights < free.weights - 0.1)
    lk = ev.linked
    assert np.all((ev.share[:, lk] >= 0) & (ev.share[:, lk] <= 1 + 1e-9)) and np.all(ev.zdist[:, lk] >= 0)
    assert np.all(ev.sigma[lk] >= SpecimenParams().sigma_floor_mm) and np.all(ev.pose_gap[lk] >= 0)
    row = {int(v): k for k, v in enumerate(mr.node)}
    own = item["gt"]["mr_label"].map(item["gt"]["mr_label"].value_counts()) == 1
    shares = [ev.share[row[int(r.mr_label)], units.unit.index(r.path_node)] for r in item["gt"][own].itertuples()
              if r.mr_label and r.path_node in units.unit and ev.linked[units.unit.index(r.path_node)]]
    assert len(shares) > 10 and np.median(shares) > 0.9  # true partners: the linked node holds the MR node
    assert np.all(ev.size_misfit >= 0) and np.all(ev.warp[lk] >= 0) and np.all(ev.warp[~lk] == 0)
    true = {(row[int(r.mr_label)], units.unit.index(r.path_node)) for r in item["gt"][own].itertuples()
            if r.mr_label and r.path_node in units.unit and ev.linked[units.unit.index(r.path_node)]}
    fit = [ev.size_misfit[i, j] for i, j in true]
    other = [ev.size_misfit[i, j] for i in range(len(mr.node)) for j in np.flatnonzero(lk) if (i, j) not in true]
    assert np.median(fit) < 0.5 * np.median(other)  # a node and its specimen twin have about the same size
    assert len(ev.features(*next(iter(true)))) == len(FEATURES)


def test_merge_shares_give_a_merged_label_to_both_of_its_nodes_only_when_their_volume_fits() -> None:
    # hand-computed: equivalent diameters 5.0 mm (65 mm^3) and 6.3 mm (130 mm^3)
    C = np.array([[0.6, 0.0], [0.3, 0.1], [0.1, 0.9]])
    vol = np.array([65.0, 65.0, 65.0])
    fits = merge_shares(C, vol, np.array([6.6, 6.6]), np.array([True, False]))
    assert fits[:, 0].tolist() == pytest.approx([0.9, 0.9, 0.1])  # both holders of the merged label
    assert fits[:, 1].tolist() == pytest.approx([0.0, 0.1, 0.9])  # not a merge candidate: plain shares
    single = merge_shares(C, vol, np.array([5.2, 5.2]), np.array([True, True]))
    assert single[:, 0].tolist() == pytest.approx([0.6, 0.3, 0.1])  # one node's size: the runner-up stays weak
    assert np.all(fits >= merge_shares(C, vol, np.array([6.6, 6.6]), np.zeros(2, bool)) - 1e-12)


def test_second_pass_holds_the_confident_pairs_and_keeps_their_first_evidence(item: dict) -> None:
    case = item["case"]
    mr, units = mr_nodes(case, item["levels"]), path_units(case)
    first = specimen_evidence(case, mr, units)
    assert first is not None
    res = match_case(case, item["levels"])
    mr_rows = {int(v): k for k, v in enumerate(mr.node)}
    unit_of = {node: j for j, mem in enumerate(units.members) for node in mem}
    fixed = confident_pairs(res.matches, first, mr_rows, unit_of, 0.9)
    n_fixed = sum(len(v) for v in fixed.values())
    sel = (res.matches["via"] == "specimen") & (res.matches["confidence"] >= 0.9)
    assert 0 < n_fixed <= int(sel.sum())
    second = specimen_evidence(case, mr, units, fixed=fixed, previous=first)
    assert second is not None
    for reg, old in zip(second.registrations, first.registrations, strict=True):  # the pose is not searched again
        assert reg.pose == old.pose and reg.pose_log_lik == old.pose_log_lik
    kept = keep_held(second, first, fixed)
    held = [j for j, (img, lab, _) in first.links.items() if lab in fixed.get(img, {})]
    free = [j for j in first.links if j not in held]
    assert held and np.array_equal(kept.weights[:, held], first.weights[:, held])
    assert np.array_equal(kept.weights[:, free], second.weights[:, free])
    for image, pairs in fixed.items():  # a held pair stays paired in the refit
        reg = next(r for r in second.registrations if r.image == image)
        paired = {int(reg.specimen_nodes[m]): int(reg.mr_nodes[n]) for m, n, _ in reg.pairs()}
        agree = sum(paired.get(lab) == int(mr.node[i]) for lab, i in pairs.items())
        assert agree >= 0.9 * len(pairs)


def test_a_linked_node_inside_a_matted_mr_label_is_not_decided_unseen_automatically(tmp_path) -> None:
    """Seed 99, case 10: the 5-mm metastasis R-III-05 lies inside MR label 62, a 37-mm matted label whose other node
    (33 mm) holds the label's one registration partner. Its specimen twin, registered, lies 5.3 mm from the label's
    voxels. It was left unmatched 'auto' at 0.984 (not seen on MR); its confidence is now NEAR_MR_RIGHT, review."""
    from neckmatch.correlation.specimen_evidence import NEAR_MR_MM, NEAR_MR_RIGHT
    from neckmatch.geometry.specimen import reconstruct_specimen
    from neckmatch.synth.cohort import case_seed, generate_case

    generate_case("SYN010", case_seed(99, 9), tmp_path, SynthParams(specimen_fraction=1.0))
    case = read_case(tmp_path / "SYN010")
    gt = pd.read_csv(tmp_path / "SYN010" / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert gt.loc[gt["path_node"] == "R-III-05", ["mr_label", "status"]].values.tolist() == [["62", "positive"]]
    levels = levels_table(case)
    res = match_case(case, levels, reconstruct_specimen(case, levels))
    row = res.matches[res.matches["path_node"] == "R-III-05"].iloc[0]
    unit = path_units(case).unit.index("R-III-05")
    assert res.registration is not None
    gap, row_mr = res.registration.nearest_mr(unit, case.label_map, mr_nodes(case, levels))
    assert gap <= NEAR_MR_MM and int(mr_nodes(case, levels).node[row_mr]) == 62
    assert row["kind"] == "path-unmatched" and row["confidence"] <= NEAR_MR_RIGHT and row["decision"] == "review"


def test_second_nodes_by_hand() -> None:
    """Unit 1's twin lies 0.4 mm from label row 0, which holds a partner and has a second slot: proposed. Unit 2's
    label (row 1) holds no partner; unit 3's twin is 2.5 mm away; unit 4's label may not take it (a person's
    cannot-link, or no second slot): none of them is."""
    from neckmatch.correlation.specimen_evidence import SECOND_NODE_MM, second_nodes

    nearest = {1: (0.4, 0), 2: (0.2, 1), 3: (2.5, 0), 4: (1.0, 2)}
    assert SECOND_NODE_MM < 2.5
    assert second_nodes(nearest, {0, 2}, lambda i, j: not (i == 2 and j == 4)) == {1: 0}
    assert second_nodes(nearest, {0, 1, 2}, lambda i, j: True) == {1: 0, 2: 1, 4: 2}
    assert second_nodes(nearest, set(), lambda i, j: True) == {}  # a label without a partner takes no second node


@pytest.fixture(scope="module")
def matted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Seed 2024, case 5: L-II-16 (a 7-mm node) lies inside MR label 27, a 31-mm matted label whose other node
    L-II-05 holds the label's one registration partner."""
    from neckmatch.synth.cohort import case_seed, generate_case

    root = tmp_path_factory.mktemp("matted")
    generate_case("SYN005", case_seed(2024, 4), root, SynthParams(specimen_fraction=1.0))
    case = read_case(root / "SYN005")
    return {"case": case, "levels": levels_table(case),
            "gt": pd.read_csv(root / "SYN005" / "ground_truth.csv", dtype=str, keep_default_na=False)}


def test_a_linked_node_inside_a_matted_label_is_proposed_as_its_second_node(matted: dict) -> None:
    from neckmatch.correlation.specimen_evidence import SECOND_NODE_MM, SECOND_NODE_RIGHT

    case, gt = matted["case"], matted["gt"]
    assert gt.loc[gt["path_node"].isin(["L-II-05", "L-II-16"]), "mr_label"].tolist() == ["27", "27"]
    res = match_case(case, matted["levels"])
    m = res.matches
    rows = m[m["mr_node"] == 27].set_index("path_node")
    assert sorted(rows.index) == ["L-II-05", "L-II-16"] and rows["merged"].all()
    second = rows.loc["L-II-16"]
    assert (second["reason"], second["decision"], second["confidence"]) == ("second-node", "review",
                                                                              SECOND_NODE_RIGHT)
    # the proposal is a pair like any other but for the assignment's cost: the label's MR evidence, no cost
    first = rows.loc["L-II-05"]
    assert (second["kind"], second["via"], second["constrained"]) == ("pair", "specimen", False)
    assert (second["mr_level"], second["mr_side"], second["mr_long_mm"]) == (first["mr_level"], first["mr_side"],
                                                                             first["mr_long_mm"])
    assert second["size_ratio"] == pytest.approx(second["path_size_mm"] / second["mr_long_mm"])
    assert np.isnan(second["cost"]) and np.isnan(second["margin"]) and np.isnan(second["cost_level"])
    assert pd.isna(first["reason"]) and np.isfinite(first["cost"]) and first["confidence"] > SECOND_NODE_RIGHT
    unit = path_units(case).unit.index("L-II-16")
    assert res.registration is not None
    gap, _ = res.registration.nearest_mr(unit, case.label_map, mr_nodes(case, matted["levels"]))
    assert gap <= SECOND_NODE_MM
    assert m["path_node"].dropna().is_unique and set(m["path_node"].dropna()) == {p.node for p in case.path_nodes}
    truth = res.truth_tables["nodes"].set_index("mr_node").loc[27]
    # L-II-05, decided auto, is the metastasis: the label is positive whatever L-II-16 turns out to be
    assert (truth["match_kind"], truth["path_status"], truth["decided_by"]) == ("matched", "positive", "auto")


def test_people_decide_second_nodes(matted: dict) -> None:
    """A person's cannot-link keeps the node out of the label; a must-link of the second node keeps the label's
    other slot open, and the first node stays in it (the engine's decision)."""
    from neckmatch.correlation.matching import Constraints

    case, levels = matted["case"], matted["levels"]
    m = match_case(case, levels, constraints=Constraints(cannot_link=frozenset({(27, "L-II-16")}))).matches
    assert m[m["path_node"] == "L-II-16"].iloc[0]["kind"] == "path-unmatched"
    m = match_case(case, levels, constraints=Constraints(must_link=frozenset({(27, "L-II-16")}))).matches
    rows = m[m["mr_node"] == 27].set_index("path_node")
    assert rows.loc["L-II-16", "constrained"] and not rows.loc["L-II-05", "constrained"]
    assert rows.loc["L-II-05", "kind"] == "pair" and pd.isna(rows.loc["L-II-05", "reason"]) and rows["merged"].all()
