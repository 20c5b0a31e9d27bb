"""The hostile-input corpus (tests/fuzz/corpus.py) through ``neckmatch.cli.main``: every entry must end cleanly.

Bad input: exit code 2 (``run`` with failed cases: 1), one line on stderr (usage errors: an error line and a hint
line), no traceback, nothing written, no user file deleted, nothing outside ``--out``; good input: exit 0.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz.corpus import corpus, run_entry

ENTRIES = corpus()


def test_the_corpus_is_large_and_covers_every_class() -> None:
    assert len(ENTRIES) >= 200
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)
    counts = Counter(e.klass for e in ENTRIES)
    for klass in ("usage", "help", "case.json", "containment", "pathology", "reads", "landmarks", "labelmap",
                  "specimen", "huge", "constraints", "output", "exit-code", "escaping"):
        assert counts[klass] >= 2, klass


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_hostile_input_ends_cleanly(entry, tmp_path: Path) -> None:
    outcome = run_entry(entry, tmp_path)
    assert outcome.klass == "clean", (outcome.klass, outcome.code, outcome.detail, outcome.stderr[-600:])
