"""Count the outcomes of the hostile-input corpus per class (before/after numbers of issue 12).

Run: ``.venv/bin/python -m tests.fuzz.measure [--timeout 60] [--verbose]``. Entries marked ``slow`` run in a
subprocess with a time limit (a hang counts as ``hang``); the others run in-process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.fuzz.corpus import REPO, Outcome, _snapshot, classify, corpus, materialise, run_entry

CLASSES = ("clean", "traceback", "multi-line", "exit-code", "hang", "partial", "accepted")


def _run_slow(entry, tmp: Path, timeout: float) -> Outcome:
    argv = materialise(entry, tmp)
    before = _snapshot(tmp)
    exe = Path(sys.executable).with_name("neckmatch")
    try:
        proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return Outcome("hang", -1, "")
    return classify(entry, tmp, proc.returncode, proc.stderr, None, before)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    entries = [e for e in corpus() if args.only in e.name]
    by_class: dict[str, Counter] = {}
    total: Counter = Counter()
    for entry in entries:
        with tempfile.TemporaryDirectory() as d:
            outcome = _run_slow(entry, Path(d), args.timeout) if entry.slow else run_entry(entry, Path(d))
        by_class.setdefault(entry.klass, Counter())[outcome.klass] += 1
        total[outcome.klass] += 1
        if args.verbose and outcome.klass != "clean":
            last = (outcome.stderr.strip().splitlines() or [""])[-1][:150]
            print(f"{outcome.klass:10} {entry.name}: exit {outcome.code} {outcome.detail} | {last}", flush=True)
    print(f"{len(entries)} hostile inputs")
    print(f"{'input class':14}" + "".join(f"{c:>11}" for c in CLASSES))
    for klass, counts in sorted(by_class.items()):
        print(f"{klass:14}" + "".join(f"{counts[c]:>11}" for c in CLASSES))
    print(f"{'total':14}" + "".join(f"{total[c]:>11}" for c in CLASSES))


if __name__ == "__main__":
    main()
