"""The review workflow without HTTP: blind decisions, agreement, adjudication, re-solve, optimistic locking."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import select

from neckmatch.review import service
from neckmatch.review.commands import open_db
from neckmatch.review.db import AuditEntry, Decision, Item, ReviewCase, User


@pytest.fixture
def url(review_db: str) -> str:
    return review_db


def _user(db: Any, name: str) -> User:
    return db.scalar(select(User).where(User.name == name))


def _mr_item(url: str, skip: int = 0) -> tuple[int, int, list[str]]:
    """(case pk, item id, candidate partners) of an open MR item of the first case."""
    with open_db(url) as db:
        rad = _user(db, "rad")
        mr = [q for q in service.queue(db, rad) if q["key"].startswith("mr:")][skip]
        view = service.item_view(db, rad, mr["case"], mr["item"])
        return mr["case"], mr["item"], [c["partner"] for c in view["candidates"]]


def _decide(url: str, name: str, case: int, item: int, action: str, partner: str | None = None,
            version: int | None = None, reason: str = "") -> dict[str, Any]:
    with open_db(url) as db:
        if version is None:
            version = db.get(Item, item).version
        return service.decide(db, _user(db, name), case, item, action, partner, version, reason)


def _view(url: str, name: str, case: int, item: int) -> dict[str, Any]:
    with open_db(url) as db:
        return service.item_view(db, _user(db, name), case, item)


def _solution_rows(url: str, case: int, mr_node: int) -> list[dict[str, Any]]:
    with open_db(url) as db:
        sol = json.loads(db.get(ReviewCase, case).solution)
    return [r for r in sol["rows"] if r["mr_node"] == mr_node]


def test_import_makes_an_item_per_review_node(url, results):
    import pandas as pd

    with open_db(url) as db:
        assert service.import_results(db, results) == 0  # the fixture registered both cases; known ones stay
        assert len(db.scalars(select(ReviewCase)).all()) == 2
        for case in db.scalars(select(ReviewCase)):
            m = pd.read_csv(results / case.case_id / "matches.csv")
            review = m[m["decision"] == "review"]
            keys = {f"mr:{int(v)}" for v in review["mr_node"].dropna()}
            keys |= {f"path:{p}" for p in review.loc[review["mr_node"].isna(), "path_node"]}
            items = set(db.scalars(select(Item.key).where(Item.case_pk == case.id)))
            assert items == keys and items


def test_reviewers_are_blind_until_the_item_settles(url):
    case, item, cands = _mr_item(url)
    _decide(url, "rad", case, item, "link", cands[0], reason="looks right")
    assert _view(url, "rad", case, item)["decisions"] == {
        "radiologist": {"action": "link", "partner": cands[0], "reason": "looks right"}}
    assert _view(url, "path", case, item)["decisions"] == {}
    assert _view(url, "adj", case, item)["decisions"] == {}  # not in adjudication: nothing to adjudicate yet
    out = _decide(url, "path", case, item, "link", cands[0])
    assert out["status"] == "settled"
    assert set(_view(url, "path", case, item)["decisions"]) == {"radiologist", "pathologist"}


def test_agreement_settles_and_resolves_the_case_with_the_constraint(url):
    case, item, cands = _mr_item(url)
    with open_db(url) as db:
        node = int(db.get(Item, item).node)
        solves = db.get(ReviewCase, case).solves
    choice = cands[-1]  # not the engine's favourite: the re-solve must follow the people
    _decide(url, "rad", case, item, "link", choice)
    assert _decide(url, "path", case, item, "link", choice)["status"] == "settled"
    rows = _solution_rows(url, case, node)
    assert [(r["path_node"], r["constrained"], r["confidence"], r["decision"]) for r in rows][0] == \
        (choice, True, 1.0, "auto")
    with open_db(url) as db:
        it = db.get(Item, item)
        assert (it.status, it.outcome, it.partner, it.provenance) == ("settled", "link", choice, "agreed")
        assert db.get(ReviewCase, case).solves == solves + 1
        events = [a.event for a in db.scalars(select(AuditEntry).where(AuditEntry.item_key == it.key))]
    assert events == ["decide", "decide", "settle"]


def test_disagreement_goes_to_the_adjudicator_who_settles_it(url):
    case, item, cands = _mr_item(url)
    _decide(url, "rad", case, item, "link", cands[0])
    assert _decide(url, "path", case, item, "unmatched")["status"] == "adjudication"
    with open_db(url) as db:
        assert item not in [q["item"] for q in service.queue(db, _user(db, "rad"))]
        assert item in [q["item"] for q in service.queue(db, _user(db, "adj"))]
    assert _view(url, "rad", case, item)["decisions"].keys() == {"radiologist"}  # still blind
    assert _view(url, "adj", case, item)["decisions"] == {
        "radiologist": {"action": "link", "partner": cands[0], "reason": ""},
        "pathologist": {"action": "unmatched", "partner": None, "reason": ""}}
    out = _decide(url, "adj", case, item, "unmatched", reason="not harvested")
    assert out["status"] == "settled"
    node = int(_view(url, "adj", case, item)["node"])
    assert [(r["kind"], r["constrained"]) for r in _solution_rows(url, case, node)] == [("mr-unmatched", True)]
    with open_db(url) as db:
        assert db.get(Item, item).provenance == "adjudicated"


def test_a_stale_version_is_a_conflict_and_changes_nothing(url):
    case, item, cands = _mr_item(url)
    _decide(url, "rad", case, item, "link", cands[0])
    with pytest.raises(service.Conflict, match="changed since version 1"):
        _decide(url, "path", case, item, "link", cands[0], version=1)
    with open_db(url) as db:
        assert [d.role for d in db.scalars(select(Decision).where(Decision.item_id == item))] == ["radiologist"]


def test_one_slot_per_role_and_admins_do_not_decide(url):
    case, item, cands = _mr_item(url)
    _decide(url, "rad", case, item, "link", cands[0])
    with pytest.raises(service.Conflict, match="another radiologist"):
        _decide(url, "rad2", case, item, "link", cands[1])
    with pytest.raises(service.Forbidden):
        _decide(url, "boss", case, item, "unmatched")
    with pytest.raises(service.Conflict, match="is open"):
        _decide(url, "adj", case, item, "unmatched")


def test_undo_before_settled(url):
    case, item, cands = _mr_item(url)
    _decide(url, "rad", case, item, "link", cands[0])
    _decide(url, "rad", case, item, "cannot_tell")  # a change of mind replaces the decision
    assert _view(url, "rad", case, item)["decisions"]["radiologist"]["action"] == "cannot_tell"
    _decide(url, "rad", case, item, "undo")
    assert _view(url, "rad", case, item)["decisions"] == {}
    with open_db(url) as db:
        assert item in [q["item"] for q in service.queue(db, _user(db, "rad"))]


def test_a_partner_must_be_a_node_of_the_case(url):
    from neckmatch.errors import InputError

    case, item, _ = _mr_item(url)
    with pytest.raises(InputError, match="not a pathology node"):
        _decide(url, "rad", case, item, "link", "no-such-node")


def test_a_decision_contradicting_a_settled_one_is_refused(url):
    case, first, cands = _mr_item(url, 0)
    partner = cands[0]
    for name in ("rad", "path"):
        _decide(url, name, case, first, "link", partner)
    case2, second, _ = _mr_item(url, 0)  # the next open MR item of the case
    assert (case2, second) != (case, first)
    _decide(url, "rad", case2, second, "link", partner)
    with pytest.raises(service.Conflict, match="contradicts"):
        _decide(url, "path", case2, second, "link", partner)
    with open_db(url) as db:  # the refused decision left nothing behind
        assert db.get(Item, second).status == "open"
        assert [d.role for d in db.scalars(select(Decision).where(Decision.item_id == second))] == ["radiologist"]


def _race(url: str, jobs: list[tuple[str, int, int, str, str | None, int]]) -> list[Any]:
    """Run the decisions at once, one thread and session each; each result is the outcome dict or the exception."""
    barrier = threading.Barrier(len(jobs))
    out: list[Any] = [None] * len(jobs)

    def run(k: int) -> None:
        name, case, item, action, partner, version = jobs[k]
        barrier.wait()
        try:
            out[k] = _decide(url, name, case, item, action, partner, version)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            out[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_decisions_on_one_item_never_lose_an_update(url):
    case, item, cands = _mr_item(url)
    jobs = [("rad", case, item, "link", cands[0], 1), ("path", case, item, "link", cands[0], 1),
            ("rad2", case, item, "unmatched", None, 1), ("adj", case, item, "unmatched", None, 1)]
    out = _race(url, jobs)
    ok = [k for k, r in enumerate(out) if isinstance(r, dict)]
    assert len(ok) == 1  # exactly one wins with version 1
    assert all(isinstance(r, service.Conflict) for k, r in enumerate(out) if k not in ok), out
    with open_db(url) as db:
        stored = [(d.role, d.action) for d in db.scalars(select(Decision).where(Decision.item_id == item))]
        assert db.get(Item, item).version == 2
    winner = jobs[ok[0]]
    assert stored == [(_user_role(winner[0]), winner[3])]


def _user_role(name: str) -> str:
    from tests.review.helpers import USERS

    return USERS[name]


def test_concurrent_settlements_in_one_case_all_reach_the_solution(url):
    items = []
    with open_db(url) as db:
        rad = _user(db, "rad")
        queue = [q for q in service.queue(db, rad) if q["key"].startswith("mr:")]
        case = queue[0]["case"]
        for q in [q for q in queue if q["case"] == case][:3]:
            items.append((q["item"], int(q["key"][3:])))
    for item, _ in items:
        _decide(url, "rad", case, item, "unmatched")
    out = _race(url, [("path", case, item, "unmatched", None, 2) for item, _ in items])
    assert all(isinstance(r, dict) and r["status"] == "settled" for r in out), out
    for _, node in items:  # every settled decision is a constraint of the final solution
        assert [(r["kind"], r["constrained"]) for r in _solution_rows(url, case, node)] == [("mr-unmatched", True)]


def test_the_specimen_panel_lists_near_registered_and_linked_specimen_nodes():
    from neckmatch.review.service import NEAR_MM, specimen_near

    def row(node, xyz, mr=None, path=()):
        return {"image": "R", "specimen_node": node, "mr_node": mr, "confidence": None, "xyz": xyz,
                "residual_mm": None, "path_nodes": list(path)}

    rows = [row(1, [3.0, 4.0, 0.0]),  # 5 mm away
            row(2, [0.0, 0.0, NEAR_MM + 1]),  # too far, nothing else
            row(3, [0.0, 0.0, 100.0], mr=7),  # far, but registered to MR node 7
            row(4, [0.0, 90.0, 0.0], path=["R-II-2", "R-II-9"]),  # far, linked to a candidate
            row(5, [0.0, 0.0, 0.0], path=["R-III-1"])]  # on the node
    cands = [{"partner": "R-II-2", "score": 1.0}]
    got = specimen_near(rows, "mr", "7", {"xyz": [0.0, 0.0, 0.0]}, cands)
    assert [r["specimen_node"] for r in got] == [5, 1, 4, 3]  # nearest first; node 2 left out
    assert [r["distance_mm"] for r in got] == [0.0, 5.0, 90.0, 100.0]
    assert got[2]["marked"] == ["R-II-2"] and got[0]["marked"] == []
    # a pathology item: centred on its first candidate MR node; a specimen node registered to a candidate counts
    got = specimen_near(rows, "path", "R-III-1", {}, [{"partner": "7", "xyz": [0.0, 0.0, 99.0]}])
    assert [r["specimen_node"] for r in got] == [3, 5] and got[1]["marked"] == ["R-III-1"]
    assert specimen_near(rows, "path", "X", {}, []) == []  # no centre, no link, nothing registered to a candidate
