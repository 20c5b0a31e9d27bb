"""The review workflow: items, blind decisions, agreement, adjudication, re-solve, audit (no web, no science).

Every function takes a SQLAlchemy session and runs inside the caller's transaction. A decision locks its case
row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE``), so the
decisions of one case are serialised; the client's item ``version`` must match the stored one, else
:class:`Conflict` (HTTP 409) and nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from neckmatch.errors import InputError
from neckmatch.review import solve as engine
from neckmatch.review.db import REVIEWER_ROLES, AuditEntry, Decision, Item, ReviewCase, User, utcnow

__all__ = ["ACTIONS", "Conflict", "Forbidden", "NotFound", "audit", "audit_entries", "case_state", "decide",
           "ensure_solution", "highlight_nodes", "import_results", "item_view", "progress", "queue", "settled_of"]

log = logging.getLogger("neckmatch.review")
ACTIONS = ("link", "unmatched", "cannot_tell", "undo")


class Conflict(Exception):
    """The item changed since the client saw it, or the decision contradicts a settled one (HTTP 409)."""


class Forbidden(Exception):
    """The user's role may not do this (HTTP 403)."""


class NotFound(Exception):
    """No such case or item (HTTP 404)."""


def audit(db: Session, user: User | None, event: str, case: ReviewCase | None = None, item_key: str = "",
          before: Any = "", after: Any = "", reason: str = "") -> None:
    """Append one audit row (the table refuses UPDATE and DELETE)."""
    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)

    db.add(AuditEntry(user_name=user.name if user else "system", role=user.role if user else "system",
                      case_pk=case.id if case else None, item_key=item_key, event=event, before=text(before),
                      after=text(after), reason=reason or ""))


def import_results(db: Session, results_dir: str | Path) -> int:
    """Register every case of a ``neckmatch run`` results folder (``<case>/run.json`` + ``matches.csv``) and its
    ``review`` decisions as items; cases already known are left as they are. Returns the number added."""
    import pandas as pd

    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(root, "", "results folder not found")
    known = set(db.scalars(select(ReviewCase.case_id)))
    added = 0
    for stamp_path in sorted(root.glob("*/run.json")):
        folder = stamp_path.parent
        if folder.name in known or not (folder / "matches.csv").is_file():
            continue
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        case_dir = stamp.get("case_dir")
        if not case_dir:
            raise InputError(stamp_path, "case_dir", "missing; rerun `neckmatch run --force` with this neckmatch")
        settings = (stamp.get("summary") or {}).get("settings") or {}
        case = ReviewCase(case_id=folder.name, case_dir=str(case_dir),
                          tolerance_mm=float(settings.get("tolerance_mm", 3.0)),
                          auto_threshold=settings.get("auto_threshold"), solves=0, version=1)
        db.add(case)
        db.flush()
        matches = pd.read_csv(folder / "matches.csv", dtype={"path_node": str})
        for key in _review_keys(matches.to_dict("records")):
            kind, node = key.split(":", 1)
            db.add(Item(case_pk=case.id, key=key, kind=kind, node=node, status="open", version=1))
        audit(db, None, "import", case, after={"items": len(_review_keys(matches.to_dict("records")))})
        added += 1
    return added


def _review_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        if r.get("decision") != "review":
            continue
        mr: Any = r.get("mr_node")
        has_mr = mr is not None and mr == mr  # NaN from a CSV
        key = f"mr:{int(mr)}" if has_mr else f"path:{r.get('path_node')}"
        if key not in keys:
            keys.append(key)
    return keys


def settled_of(db: Session, case: ReviewCase) -> list[tuple[str, str, str, str | None, str]]:
    """The settled items of a case as ``(kind, node, outcome, partner, provenance)``, in settling order."""
    items = db.scalars(select(Item).where(Item.case_pk == case.id, Item.status == "settled")
                       .order_by(Item.settled_at, Item.id))
    return [(i.kind, i.node, i.outcome or "", i.partner, i.provenance or "") for i in items]


def _solve(db: Session, case: ReviewCase) -> dict[str, Any]:
    settled = [s[:4] for s in settled_of(db, case)]
    try:
        return engine.solve(case.case_dir, case.tolerance_mm, case.auto_threshold, settled)
    except InputError as exc:
        raise Conflict(f"the decision contradicts a settled one: {exc}") from None


_parsed: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
_parsed_lock = threading.Lock()


def ensure_solution(db: Session, case: ReviewCase) -> dict[str, Any]:
    """The case's current solution (read-only), solving it first if it never was (the first visit of a case).

    Parsed solutions are kept per process by the digest of their stored text.
    """
    if case.solution is None:
        _store(db, case, _solve(db, case))
    text = case.solution or "{}"
    key = hashlib.blake2b(text.encode(), digest_size=16).digest()
    with _parsed_lock:
        sol = _parsed.get(key)
    if sol is None:
        sol = json.loads(text)
        _remember(key, sol)
    return sol


def _remember(key: bytes, sol: dict[str, Any]) -> None:
    with _parsed_lock:
        _parsed[key] = sol
        while len(_parsed) > 256:
            _parsed.popitem(last=False)


def _store(db: Session, case: ReviewCase, sol: dict[str, Any]) -> None:
    """Keep a new solution and bring the items in line: a node the engine now decides by itself is withdrawn
    (unless somebody decided it already), a node newly under review becomes an item."""
    case.solution = json.dumps(sol)
    _remember(hashlib.blake2b(case.solution.encode(), digest_size=16).digest(), sol)
    case.solves = (case.solves or 0) + 1
    review = set(sol["review"])
    items = {key: (iid, status) for iid, key, status in
             db.execute(select(Item.id, Item.key, Item.status).where(Item.case_pk == case.id))}
    decided = set(db.scalars(select(Decision.item_id).join(Item).where(Item.case_pk == case.id)))
    withdraw = [iid for key, (iid, st) in items.items() if st == "open" and key not in review and iid not in decided]
    reopen = [iid for key, (iid, st) in items.items() if st == "withdrawn" and key in review]
    for ids, status in ((withdraw, "withdrawn"), (reopen, "open")):
        if ids:
            db.execute(update(Item).where(Item.id.in_(ids)).values(status=status, version=Item.version + 1)
                       .execution_options(synchronize_session="fetch"))
    for key in sol["review"]:
        if key not in items:
            kind, node = key.split(":", 1)
            db.add(Item(case_pk=case.id, key=key, kind=kind, node=node, status="open", version=1))
    db.flush()


def _case(db: Session, case_pk: int, lock: bool = False) -> ReviewCase:
    stmt = select(ReviewCase).where(ReviewCase.id == case_pk)
    case = db.scalar(stmt.with_for_update() if lock else stmt)
    if case is None:
        raise NotFound(f"no case {case_pk}")
    return case


def _item(db: Session, case: ReviewCase, item_id: int) -> Item:
    item = db.get(Item, item_id)
    if item is None or item.case_pk != case.id:
        raise NotFound(f"no item {item_id} in case {case.id}")
    return item


def _slot(user: User) -> str:
    if user.role not in (*REVIEWER_ROLES, "adjudicator"):
        raise Forbidden(f"role '{user.role}' does not decide items")
    return user.role


def _decisions(db: Session, item: Item) -> dict[str, Decision]:
    return {d.role: d for d in db.scalars(select(Decision).where(Decision.item_id == item.id))}


def _dec_doc(d: Decision | None) -> dict[str, Any] | None:
    return None if d is None else {"action": d.action, "partner": d.partner, "reason": d.reason}


def _check_partner(sol: dict[str, Any], item: Item, action: str, partner: str | None) -> str | None:
    if action != "link":
        if partner:
            raise InputError("decision", "partner", f"'{action}' takes no partner, got '{partner}'")
        return None
    nodes = sol["path"] if item.kind == "mr" else sol["mr"]
    if not partner or str(partner) not in nodes:
        raise InputError("decision", "partner", f"not a {'pathology' if item.kind == 'mr' else 'MR'} node of the "
                         f"case: '{partner}'")
    return str(partner)


def _bump(db: Session, item: Item, version: int) -> None:
    """Optimistic lock: the stored version must still be ``version``; it becomes ``version + 1``."""
    res = db.execute(update(Item).where(Item.id == item.id, Item.version == version)
                     .values(version=Item.version + 1).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"item {item.id} changed since version {version}; reload it")
    db.refresh(item)


def decide(db: Session, user: User, case_pk: int, item_id: int, action: str, partner: str | None, version: int,
           reason: str = "") -> dict[str, Any]:
    """Record ``user``'s decision on an item and settle it when it can be settled.

    A reviewer (radiologist or pathologist) decides in their role's slot while the item is ``open`` (and may
    change or ``undo`` it until the other reviewer has decided); when both have decided, agreement settles the
    item (``agreed``) and disagreement sends it to ``adjudication``, where the adjudicator's decision settles it
    (``adjudicated``). Settling re-solves the case with every settled item as a constraint.

    Returns
    -------
    dict
        ``{"status", "version", "settled": bool}`` of the item after the decision.

    Raises
    ------
    Conflict
        Stale ``version``, the slot taken by another person, the item no longer open for this role, or a
        decision contradicting settled ones. ``Forbidden`` for a role that does not decide; ``InputError`` for
        a bad action or partner; ``NotFound``.
    """
    role = _slot(user)
    if action not in ACTIONS:
        raise InputError("decision", "action", f"must be one of {', '.join(ACTIONS)}, got '{action}'")
    case = _case(db, case_pk, lock=True)
    item = _item(db, case, item_id)
    if item.version != version:
        raise Conflict(f"item {item.id} changed since version {version} (now {item.version}); reload it")
    wanted = "adjudication" if role == "adjudicator" else "open"
    if item.status != wanted:
        raise Conflict(f"item {item.id} is {item.status}; a {role} cannot decide it now")
    sol = ensure_solution(db, case)
    decisions = _decisions(db, item)
    mine = decisions.get(role)
    if mine is not None and mine.user_id != user.id:
        raise Conflict(f"another {role} has decided item {item.id} already")
    before = _dec_doc(mine)
    if action == "undo":
        if mine is None:
            raise Conflict(f"no decision of yours on item {item.id} to undo")
        db.delete(mine)
        _bump(db, item, version)
        audit(db, user, "undo", case, item.key, before, None, reason)
        return {"status": item.status, "version": item.version, "settled": False}
    partner = _check_partner(sol, item, action, partner)
    if mine is None:
        mine = Decision(item_id=item.id, role=role, user_id=user.id, action=action, partner=partner, reason=reason)
        db.add(mine)
    else:
        mine.action, mine.partner, mine.reason, mine.decided_at = action, partner, reason, utcnow()
    _bump(db, item, version)
    audit(db, user, "decide", case, item.key, before, _dec_doc(mine), reason)
    db.flush()
    decisions[role] = mine
    return _advance(db, user, case, item, decisions, sol)


def _advance(db: Session, user: User, case: ReviewCase, item: Item, decisions: dict[str, Decision],
             sol: dict[str, Any]) -> dict[str, Any]:
    """Settle or escalate the item once its decisions are in."""
    if "adjudicator" in decisions:
        _settle(db, user, case, item, decisions["adjudicator"], "adjudicated", sol)
    elif all(r in decisions for r in REVIEWER_ROLES):
        a, b = (decisions[r] for r in REVIEWER_ROLES)
        if (a.action, a.partner) == (b.action, b.partner):
            _settle(db, user, case, item, a, "agreed", sol)
        else:
            item.status = "adjudication"
            audit(db, user, "disagree", case, item.key, None,
                  {r: _dec_doc(decisions[r]) for r in REVIEWER_ROLES})
            log.info("item %s of case %s goes to adjudication", item.id, case.id)
    db.flush()
    return {"status": item.status, "version": item.version, "settled": item.status == "settled"}


def _settle(db: Session, user: User, case: ReviewCase, item: Item, d: Decision, provenance: str,
            sol: dict[str, Any]) -> None:
    before = [r for r in sol["rows"] if engine.item_key(r) == item.key]
    item.status, item.outcome, item.partner = "settled", d.action, d.partner
    item.provenance, item.settled_at = provenance, utcnow()
    db.flush()
    _store(db, case, _solve(db, case))
    after = {"outcome": d.action, "partner": d.partner, "provenance": provenance}
    audit(db, user, "settle", case, item.key, before, after, d.reason)
    log.info("item %s of case %s settled (%s)", item.id, case.id, provenance)


def item_view(db: Session, user: User, case_pk: int, item_id: int) -> dict[str, Any]:
    """What ``user`` may see of an item: the engine's current decision and candidates with their evidence, the
    user's own decision, and the others' decisions only when allowed (blind review): a reviewer sees the other
    reviewer's decision only once the item is settled, the adjudicator sees both from adjudication on, nobody
    sees another person's decision on an open item."""
    case = _case(db, case_pk)
    item = _item(db, case, item_id)
    sol = ensure_solution(db, case)
    decisions = _decisions(db, item)
    visible: dict[str, Any] = {}
    for role, d in decisions.items():
        own = d.user_id == user.id
        shown = own or item.status == "settled" or (item.status == "adjudication" and user.role == "adjudicator")
        if shown:
            visible[role] = _dec_doc(d)
    current = [r for r in sol["rows"] if engine.item_key(r) == item.key]
    if item.kind == "path":  # a pathology node may since have been paired with an MR node
        current = [r for r in sol["rows"] if r.get("path_node") == item.node]
    other = sol["path"] if item.kind == "mr" else sol["mr"]
    cands = [{**c, **other.get(c["partner"], {})} for c in sol["candidates"].get(item.key, [])]
    live = list(db.scalars(select(Item.id).where(Item.case_pk == case.id, Item.status != "withdrawn")
                           .order_by(Item.id)))
    pos = live.index(item.id) if item.id in live else -1
    return {"case": case.id, "case_id": case.case_id, "item": item.id, "key": item.key, "kind": item.kind,
            "node": item.node, "status": item.status, "version": item.version, "provenance": item.provenance,
            "outcome": item.outcome, "partner": item.partner, "current": current, "candidates": cands,
            "evidence": (sol["mr"] if item.kind == "mr" else sol["path"]).get(item.node, {}),
            "decisions": visible, "decided_by_me": any(d.user_id == user.id for d in decisions.values()),
            "decided_count": sum(r in decisions for r in REVIEWER_ROLES),
            "prev": live[pos - 1] if pos > 0 else None, "next": live[pos + 1] if 0 <= pos < len(live) - 1 else None,
            "position": pos + 1, "of": len(live), "containers": _containers(sol),
            "has_specimen": bool(sol.get("specimen")),
            "specimen": specimen_near(sol.get("specimen", []), item.kind, item.node,
                                      (sol["mr"] if item.kind == "mr" else sol["path"]).get(item.node, {}), cands)}


NEAR_MM = 20.0  # a registered specimen node this close to the node in hand is listed
MAX_SPECIMEN_ROWS = 12


def specimen_near(rows: list[dict[str, Any]], kind: str, node: str, evidence: dict[str, Any],
                  cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The specimen panel of an item: registered specimen nodes within :data:`NEAR_MM` of the node in hand (a
    pathology item: of its first candidate), registered to it, or linked to it or to a candidate; nearest first,
    at most :data:`MAX_SPECIMEN_ROWS`. Each row gains ``distance_mm`` (None without a centre) and ``marked``
    (the pathology nodes among ``path_nodes`` that are the item's node or a candidate)."""
    partners = {str(c["partner"]) for c in cands}
    xyz = evidence.get("xyz") or (cands[0].get("xyz") if cands else None)
    out = []
    for r in rows:
        dist = round(float(np.linalg.norm(np.subtract(r["xyz"], xyz))), 1) if xyz else None
        marked = [p for p in r["path_nodes"] if p == node or p in partners]
        mine = str(r["mr_node"]) == node if kind == "mr" else str(r["mr_node"]) in partners
        if (dist is not None and dist <= NEAR_MM) or marked or mine:
            out.append({**r, "distance_mm": dist, "marked": marked})
    out.sort(key=lambda r: (r["distance_mm"] is None, r["distance_mm"] or 0.0, r["image"], r["specimen_node"]))
    return out[:MAX_SPECIMEN_ROWS]


def _containers(sol: dict[str, Any]) -> list[dict[str, Any]]:
    """The pathology panel: every container with its nodes (size, position; never the status)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for node, ev in sol["path"].items():
        out.setdefault(ev["container"], []).append({"node": node, **ev})
    return [{"container": c, "nodes": nodes} for c, nodes in sorted(out.items())]


def highlight_nodes(view: dict[str, Any]) -> tuple[int | None, list[int]]:
    """The MR node under review and the candidate MR nodes of an item view (for the label-map overlay)."""
    if view["kind"] == "mr":
        return int(view["node"]), []
    return None, [int(c["partner"]) for c in view["candidates"]]


def item_centre(view: dict[str, Any]) -> list[float] | None:
    """Where the viewer centres an item (RAS mm): the MR node's centre, a pathology item's first candidate's."""
    xyz = view["evidence"].get("xyz")
    if not xyz and view["candidates"]:
        xyz = view["candidates"][0].get("xyz")
    return [float(v) for v in xyz] if xyz else None


def case_state(db: Session, user: User, case_pk: int) -> dict[str, Any]:
    """A case's items with their status, and for a reviewer whether they have decided each."""
    case = _case(db, case_pk)
    items = list(db.scalars(select(Item).where(Item.case_pk == case.id).order_by(Item.id)))
    mine = set(db.scalars(select(Decision.item_id).join(Item)
                          .where(Item.case_pk == case.id, Decision.user_id == user.id)))
    return {"case": case.id, "case_id": case.case_id, "solves": case.solves,
            "items": [{"item": i.id, "key": i.key, "status": i.status, "version": i.version,
                       "provenance": i.provenance, "decided_by_me": i.id in mine} for i in items]}


def queue(db: Session, user: User) -> list[dict[str, Any]]:
    """The items waiting for ``user``: a reviewer's open items whose role slot is free or theirs and not yet
    decided by them; the adjudicator's items in adjudication. Ordered by case, then item."""
    rows = db.execute(select(Item, ReviewCase.case_id).join(ReviewCase, ReviewCase.id == Item.case_pk)
                      .order_by(Item.case_pk, Item.id))
    if user.role == "adjudicator":
        disputed = [(i, cid) for i, cid in rows if i.status == "adjudication"]
        both: dict[int, dict[str, Any]] = {}
        if disputed:
            for d in db.scalars(select(Decision).where(Decision.item_id.in_([i.id for i, _ in disputed]))):
                both.setdefault(d.item_id, {})[d.role] = _dec_doc(d)
        return [{"case": i.case_pk, "case_id": cid, "item": i.id, "key": i.key, "decisions": both.get(i.id, {})}
                for i, cid in disputed]
    if user.role not in REVIEWER_ROLES:
        return []
    taken = set(db.scalars(select(Decision.item_id).where(Decision.role == user.role)))
    return [{"case": i.case_pk, "case_id": cid, "item": i.id, "key": i.key} for i, cid in rows
            if i.status == "open" and i.id not in taken]


def progress(db: Session, user: User) -> list[dict[str, Any]]:
    """Per case: live items, settled, in adjudication, and how many of them ``user`` has decided."""
    mine = set(db.scalars(select(Decision.item_id).where(Decision.user_id == user.id)))
    out: dict[int, dict[str, Any]] = {}
    rows = db.execute(select(Item.id, Item.case_pk, Item.status, ReviewCase.case_id)
                      .join(ReviewCase, ReviewCase.id == Item.case_pk).order_by(ReviewCase.case_id))
    for iid, pk, status, cid in rows:
        if status == "withdrawn":
            continue
        p = out.setdefault(pk, {"case": pk, "case_id": cid, "items": 0, "settled": 0, "adjudication": 0,
                                "mine": 0})
        p["items"] += 1
        p["settled"] += status == "settled"
        p["adjudication"] += status == "adjudication"
        p["mine"] += iid in mine
    return list(out.values())


def audit_entries(db: Session, case_pk: int) -> list[dict[str, Any]]:
    """The audit trail of a case, oldest first."""
    case = _case(db, case_pk)
    rows = db.scalars(select(AuditEntry).where(AuditEntry.case_pk == case.id).order_by(AuditEntry.id))
    return [{"id": a.id, "at": a.at.isoformat(), "user": a.user_name, "role": a.role, "item": a.item_key,
             "event": a.event, "before": a.before, "after": a.after, "reason": a.reason} for a in rows]
