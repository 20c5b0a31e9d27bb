"""The engine adapter: what a solution holds, and that the MR reading and pathology status stay hidden."""

from __future__ import annotations

import json

import pandas as pd

from neckmatch.review import solve


def _case_dir(results):
    stamp = json.loads((results / "SYN001" / "run.json").read_text())
    return stamp["case_dir"]


def test_solution_matches_the_run_and_hides_reads_and_status(results):
    sol = solve.solve(_case_dir(results), 3.0, None, [])
    run = pd.read_csv(results / "SYN001" / "matches.csv")
    assert len(sol["rows"]) == len(run)
    assert [r["decision"] for r in sol["rows"]] == run["decision"].tolist()  # same engine, same answer
    assert sol["review"] and all(k.startswith(("mr:", "path:")) for k in sol["review"])
    text = json.dumps(sol)
    for hidden in ('"status"', '"malignant"', '"mr_score"', '"path_status"', '"reader"', '"call"'):
        assert hidden not in text  # (a candidate's "score" is the engine's pair weight, not a reader's score)
    assert all(set(p) == {"container", "side", "level", "size_mm", "cc", "ap", "unit"} for p in sol["path"].values())
    assert all(set(m) == {"side", "level", "long_mm", "xyz"} for m in sol["mr"].values())


def test_candidates_are_ranked_by_the_engines_weight_and_hold_the_proposal(results):
    sol = solve.solve(_case_dir(results), 3.0, None, [])
    for key in sol["review"]:
        cands = sol["candidates"][key]
        assert len(cands) <= solve.MAX_CANDIDATES
        proposed = {str(r["path_node"]) if key.startswith("mr:") else str(r["mr_node"]) for r in sol["rows"]
                    if solve.item_key(r) == key and r["kind"] == "pair" and r["decision"] == "review"}
        assert proposed <= {c["partner"] for c in cands}  # what the engine proposes can be confirmed
        ranked = [c["score"] for c in cands]
        if cands and cands[-1]["partner"] in proposed:  # a proposal the weights do not rank comes last
            ranked = ranked[:-1]
        assert ranked == sorted(ranked, reverse=True)


def test_a_settled_item_constrains_the_solution(results):
    case_dir = _case_dir(results)
    first = solve.solve(case_dir, 3.0, None, [])
    key = next(k for k in first["review"] if k.startswith("mr:") and first["candidates"][k])
    partner = first["candidates"][key][-1]["partner"]
    again = solve.solve(case_dir, 3.0, None, [("mr", key[3:], "link", partner)])
    rows = [r for r in again["rows"] if r["mr_node"] == int(key[3:])]
    assert [r["path_node"] for r in rows] == [partner] and rows[0]["constrained"] and key not in again["review"]


def test_the_specimen_registration_reaches_the_solution_with_the_pathologists_links(tmp_path):
    from neckmatch.io.case import read_case
    from neckmatch.synth import SynthParams, generate_cohort

    (case_dir,) = generate_cohort(1, 3, tmp_path, SynthParams(specimen_fraction=1.0))
    sol = solve.solve(str(case_dir), 3.0, None, [])
    case = read_case(case_dir)
    assert case.specimen is not None and sol["specimen"]
    n_spec = sum(len(set(p.label_map.labels())) for p in case.specimen.pieces)
    assert len(sol["specimen"]) == n_spec  # every specimen node of every piece
    links = {(lk.image, lk.specimen_node): lk.path_node for lk in case.specimen.links}
    for r in sol["specimen"]:
        assert r["path_nodes"] == ([links[(r["image"], r["specimen_node"])]]
                                   if (r["image"], r["specimen_node"]) in links else [])
        assert r["mr_node"] is None or str(r["mr_node"]) in sol["mr"]
    text = json.dumps(sol["specimen"])
    assert "status" not in text and "positive" not in text and "negative" not in text


def test_a_merged_labels_partners_are_reviewed_one_by_one_and_the_proposal_can_be_confirmed(tmp_path):
    """Seed 2024, case 5: the engine proposes L-II-16 as the second node of the matted MR label 27 (its first
    partner L-II-05 is decided auto). The item is the pathology node's, and label 27 is among its candidates
    though its pair weight ranks it low; confirming it keeps L-II-05 in the label (the link fixes one partner, not
    the label's every slot), and nothing about label 27 is left to review."""
    from neckmatch.synth import SynthParams
    from neckmatch.synth.cohort import case_seed, generate_case

    generate_case("SYN005", case_seed(2024, 4), tmp_path, SynthParams(specimen_fraction=1.0))
    case_dir = str(tmp_path / "SYN005")
    first = solve.solve(case_dir, 3.0, None, [])
    assert "path:L-II-16" in first["review"] and "mr:27" not in first["review"]
    assert "27" in [c["partner"] for c in first["candidates"]["path:L-II-16"]]
    assert len(first["candidates"]["path:L-II-16"]) <= solve.MAX_CANDIDATES
    second = solve.solve(case_dir, 3.0, None, [("path", "L-II-16", "link", "27")])
    rows = {r["path_node"]: r for r in second["rows"] if r["mr_node"] == 27}
    assert sorted(rows) == ["L-II-05", "L-II-16"] and rows["L-II-16"]["constrained"]
    assert rows["L-II-05"]["decision"] == "auto" and not rows["L-II-05"]["constrained"]
    assert not {"mr:27", "path:L-II-05", "path:L-II-16"} & set(second["review"])


def test_item_keys_of_rows() -> None:
    rows = [{"mr_node": 3, "path_node": "A", "merged": False}, {"mr_node": 3, "path_node": "B", "merged": True},
            {"mr_node": None, "path_node": "C"}, {"mr_node": 5, "path_node": None}]
    assert [solve.item_key(r) for r in rows] == ["mr:3", "path:B", "path:C", "mr:5"]
