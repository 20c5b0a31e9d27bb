"""Shared fixtures: the real public data in ../shared/data (CI has it there) and small synthetic helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public data. CI provides it; a missing folder is a broken checkout, not a skip."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real test data expected at {SHARED_DATA}")
    return SHARED_DATA
