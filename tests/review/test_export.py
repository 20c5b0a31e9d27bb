"""The issue's end-to-end flow on a fresh results folder, on SQLite and PostgreSQL: `users add`, the service,
blind decisions, an adjudication, `review export`, and `neckmatch run --constraints` reproducing the reviewed
truth table."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pandas as pd
import pytest

from tests.cli_helpers import run_main
from tests.review.helpers import login

PASSWORDS = {"ray": "ray's long password", "patty": "patty's long password", "ada": "ada's long password"}


def _decide(client: Any, view: dict[str, Any], action: str, partner: str | None = None) -> dict[str, Any]:
    resp = client.post(f"/api/cases/{view['case']}/items/{view['item']}/decision",
                       json={"action": action, "partner": partner, "version": view["version"]})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _view(client: Any, case: int, item: int) -> dict[str, Any]:
    return client.get(f"/api/cases/{case}/items/{item}").json()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_option(request: pytest.FixtureRequest) -> list[str]:
    """No option (the results folder's own SQLite file) or ``--db`` with a fresh PostgreSQL database."""
    return [] if request.param == "sqlite" else ["--db", request.getfixturevalue("pg_database")]


def _review(app: Any) -> dict[str, tuple[str, str | None, str]]:
    """Reviewers decide the first case's first four MR items: three agreed, one adjudicated.
    Returns item key -> (action, partner, provenance)."""
    ray, patty, ada = (login(app, n, PASSWORDS[n]) for n in ("ray", "patty", "ada"))
    queue = [q for q in ray.get("/api/queue").json() if q["key"].startswith("mr:")]
    case = queue[0]["case"]
    todo = [q for q in queue if q["case"] == case][:4]
    done: dict[str, tuple[str, str | None, str]] = {}
    for k, q in enumerate(todo):
        view = _view(ray, case, q["item"])
        if not view["candidates"] or view["status"] != "open":
            continue
        action, partner = ("unmatched", None) if k == 1 else ("link", view["candidates"][-1]["partner"])
        _decide(ray, view, action, partner)
        view = _view(patty, case, q["item"])
        assert view["decisions"] == {}  # blind
        if k == 3:  # disagreement, settled by the adjudicator
            assert _decide(patty, view, "cannot_tell")["status"] == "adjudication"
            out = _decide(ada, _view(ada, case, q["item"]), action, partner)
            done[q["key"]] = (action, partner, "adjudicated")
        else:
            out = _decide(patty, view, action, partner)
            done[q["key"]] = (action, partner, "agreed")
        assert out["status"] == "settled"
    assert {p for *_, p in done.values()} == {"agreed", "adjudicated"}
    return done


def test_review_export_and_rerun_reproduce_the_reviewed_truth_table(tmp_path, results, db_option, monkeypatch):
    from neckmatch.review.app import create_app
    from neckmatch.review.commands import resolve_url

    res = tmp_path / "results"
    shutil.copytree(results, res)  # a results folder of its own: the default database is written into it
    roles = {"ray": "radiologist", "patty": "pathologist", "ada": "adjudicator"}
    for name, role in roles.items():
        (tmp_path / f"{name}.pw").write_text(PASSWORDS[name] + "\n", encoding="utf-8")
        code = run_main(monkeypatch, "users", "add", name, "--role", role, "--password-file",
                        str(tmp_path / f"{name}.pw"), "--results", str(res), *db_option)
        assert code == 0
    if not db_option:
        assert (res / "review.sqlite").is_file()
    app = create_app(res, resolve_url(db_option[1] if db_option else None, res))
    try:
        done = _review(app)
    finally:
        app.state.engine.dispose()

    out = tmp_path / "reviewed"
    assert run_main(monkeypatch, "review", "export", str(res), "--out", str(out), *db_option) == 0
    summary = pd.read_csv(out / "review_summary.csv")
    assert list(summary.columns[:6]) == ["case_id", "items", "decided", "agreed", "adjudicated", "pending"]
    case_id = summary.loc[summary["decided"] > 0, "case_id"].item()
    row = summary.set_index("case_id").loc[case_id]
    assert (row["decided"], row["agreed"], row["adjudicated"]) == (4, 3, 1)
    assert row["pending"] == row["items"] - 4
    doc = json.loads((out / case_id / "constraints.json").read_text())
    got = {(c["mr_node"], c["path_node"], c["action"], c["provenance"]) for c in doc["constraints"]}
    want = {(int(k[3:]), p if a == "link" else None, "must_link" if a == "link" else "unmatched", prov)
            for k, (a, p, prov) in done.items()}
    assert got == want
    other = set(summary["case_id"]) - {case_id}
    assert all(json.loads((out / c / "constraints.json").read_text())["constraints"] == [] for c in other)

    rerun = tmp_path / "rerun"
    code = run_main(monkeypatch, "run", str(results.parent / "cohort"), "--out", str(rerun), "--no-maps",
                    "--workers", "1", "--constraints", str(out))
    assert code == 0
    reviewed = pd.read_csv(out / case_id / "truth_nodes.csv")
    again = pd.read_csv(rerun / case_id / "truth_nodes.csv")
    pd.testing.assert_frame_equal(reviewed.drop(columns="provenance"), again)
    prov = dict(zip(reviewed["mr_node"].dropna().astype(int), reviewed.loc[reviewed["mr_node"].notna(),
                                                                           "provenance"], strict=True))
    assert {f"mr:{n}": prov[n] for n in (int(k[3:]) for k in done)} == {k: v[2] for k, v in done.items()}
    assert set(reviewed["provenance"]) <= {"auto", "agreed", "adjudicated", "review"}
    before = pd.read_csv(results / case_id / "truth_nodes.csv")
    assert not before.equals(again)  # the review changed the truth table
    m = pd.read_csv(rerun / case_id / "matches.csv")
    for key, (action, partner, _) in done.items():
        rows = m[m["mr_node"] == int(key[3:])]
        assert rows["constrained"].all()
        assert (rows["path_node"].tolist() == [partner]) if action == "link" else rows["path_node"].isna().all()
