"""Review service: a decision with its re-solve, and concurrent reviewers, against the engine's own solve.

Run: ``.venv/bin/python benchmarks/review.py [--cases 3] [--reviewers 5] [--decisions 60] [--db URL]``
(the issue's load target: ``--cases 200 --reviewers 5``; generating and running 200 cases takes a while).

1. A synthetic cohort of ``--cases`` cases, ``neckmatch run --no-maps`` into a temporary results folder.
2. Baseline, in this process: the engine's ``match_case`` on the largest case (inputs read once), median of 7.
3. ``neckmatch serve`` as a real server (SQLite in the results folder, or ``--db``). On the largest case the
   radiologist and the pathologist agree on items one after the other; the pathologist's request settles the
   item and re-solves the case: median latency of those requests, and its ratio to the baseline (target:
   <= 200 ms median).
4. Load: ``--reviewers`` people (radiologists and pathologists alternating) decide from their queues at once,
   on every case, until ``--decisions`` decisions are in; a 409 (someone was faster) means reload and go on.
   Reports errors (any other non-200) and checks that every decision answered 200 is in the database (no lost
   decision).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PW = "benchmark password 123"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(base: str, name: str) -> Any:
    import httpx2 as httpx

    c = httpx.Client(base_url=base, follow_redirects=True, timeout=120)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"name": name, "password": PW, "csrf": token}).status_code == 200
    c.headers["X-CSRF-Token"] = c.get("/api/me").json()["csrf"]
    return c


def _decide(c: Any, case: int, item: int, action: str, partner: str | None) -> Any:
    view = c.get(f"/api/cases/{case}/items/{item}").json()
    body = {"action": action, "partner": partner, "version": view["version"]}
    return c.post(f"/api/cases/{case}/items/{item}/decision", json=body)


def baseline(case_dir: str) -> float:
    """Median seconds of the engine's match_case on the case (inputs read once)."""
    from neckmatch.correlation.matching import match_case
    from neckmatch.review.solve import case_inputs

    inp = case_inputs(case_dir, 3.0)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        match_case(inp.case, inp.levels, specimen=inp.specimen)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def latency(base: str, case: int, n: int) -> list[float]:
    """Seconds of the settling (second) request of ``n`` agreed decisions on ``case``."""
    rad, path = _client(base, "rad1"), _client(base, "path1")
    out: list[float] = []
    while len(out) < n:
        queue = [q for q in rad.get("/api/queue").json() if q["case"] == case and q["key"].startswith("mr:")]
        if not queue:
            break
        q = queue[0]
        r = _decide(rad, case, q["item"], "unmatched", None)
        assert r.status_code == 200, r.text
        view = path.get(f"/api/cases/{case}/items/{q['item']}").json()
        t0 = time.perf_counter()
        r = path.post(f"/api/cases/{case}/items/{q['item']}/decision",
                      json={"action": "unmatched", "partner": None, "version": view["version"]})
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200 and r.json()["settled"], r.text
    return out


def load(base: str, reviewers: int, decisions: int) -> dict[str, int]:
    """Reviewers decide from their queues at once; counts of ok, conflicts and errors."""
    names = [f"{'rad' if k % 2 == 0 else 'path'}{k // 2 + 2}" for k in range(reviewers)]
    counts = {"ok": 0, "conflict": 0, "error": 0}
    lock = threading.Lock()

    def work(name: str) -> None:
        c = _client(base, name)
        while True:
            with lock:
                if counts["ok"] >= decisions:
                    return
            queue = c.get("/api/queue").json()
            if not queue:
                return
            q = queue[hash(name) % len(queue)]  # spread the reviewers over the queue, with collisions
            r = _decide(c, q["case"], q["item"], "cannot_tell", None)
            key = "ok" if r.status_code == 200 else "conflict" if r.status_code == 409 else "error"
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts



@contextmanager
def serve(results: Path, db: str | None = None, wait_s: float = 120.0) -> Iterator[str]:
    """``neckmatch serve RESULTS`` in a subprocess on a free loopback port; yields its base URL once it answers
    (bounded wait), and stops it at exit."""
    import httpx2 as httpx

    port = _port()
    cmd = [sys.executable, "-m", "neckmatch.cli", "serve", str(results), "--port", str(port)]
    if db:
        cmd += ["--db", db]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(int(wait_s / 0.1)):
            try:
                httpx.get(base + "/login")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--reviewers", type=int, default=5)
    ap.add_argument("--decisions", type=int, default=60)
    ap.add_argument("--latency-items", type=int, default=15)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    from neckmatch.cohort import run_cohort
    from neckmatch.review.auth import add_user
    from neckmatch.review.commands import open_db, resolve_url
    from neckmatch.synth import generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_cohort(args.cases, 5, root / "cohort")
        run_cohort(root / "cohort", root / "results", workers=2, maps=False)
        url = resolve_url(args.db, root / "results")
        with open_db(url) as db:
            for k in range(1, args.reviewers // 2 + 3):
                add_user(db, f"rad{k}", "radiologist", PW)
                add_user(db, f"path{k}", "pathologist", PW)
        sizes = {p.parent.name: json.loads(p.read_text())["summary"]["mr_nodes"]
                 for p in (root / "results").glob("*/run.json")}
        biggest = max(sizes, key=lambda k: sizes[k])
        case_dir = json.loads((root / "results" / biggest / "run.json").read_text())["case_dir"]
        base_s = baseline(case_dir)
        with serve(root / "results", args.db) as base:
            c = _client(base, "rad1")
            case_pk = next(x["case"] for x in c.get("/api/cases").json() if x["case_id"] == biggest)
            c.get(f"/api/cases/{case_pk}/items/{c.get('/api/queue').json()[0]['item']}")  # first visit solves
            lat = latency(base, case_pk, args.latency_items)
            counts = load(base, args.reviewers, args.decisions)
        with open_db(url) as db:
            from sqlalchemy import func, select

            from neckmatch.review.db import Decision

            stored = db.scalar(select(func.count()).select_from(Decision))
        med = statistics.median(lat)
        print(f"case {biggest}: {sizes[biggest]} MR nodes; engine match_case median {base_s * 1000:.0f} ms")
        print(f"decision + re-solve (settling request): median {med * 1000:.0f} ms over {len(lat)} "
              f"(ratio to match_case {med / base_s:.2f}); target <= 200 ms")
        print(f"load: {args.reviewers} reviewers on {args.cases} cases: {counts['ok']} decisions, "
              f"{counts['conflict']} 409 (reloaded), {counts['error']} errors")
        expected = 2 * len(lat) + counts["ok"]
        print(f"decisions in the database: {stored} (answered 200: {expected}) -> "
              f"{'none lost' if stored == expected else 'MISMATCH'}")


if __name__ == "__main__":
    main()
