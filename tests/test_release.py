"""Release metadata agrees with itself: one version (pyproject.toml) in the package, CITATION.cff and the
changelog; one licence (Apache-2.0) in LICENSE, pyproject.toml and CITATION.cff."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import neckmatch

REPO = Path(__file__).resolve().parents[1]


def _project() -> dict[str, object]:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


def _citation() -> dict[str, object]:
    return dict(yaml.safe_load((REPO / "CITATION.cff").read_text()))


def test_one_version_everywhere() -> None:
    version = _project()["version"]
    assert neckmatch.__version__ == version, "the installed metadata is stale: pip install -e . again"
    assert _citation()["version"] == version
    released = re.findall(r"^## \[(\d[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert released and released[0][0] == version, "the newest release in CHANGELOG.md is not pyproject's version"
    assert str(_citation()["date-released"]) == released[0][1]


def test_changelog_follows_keep_a_changelog() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "\n## [Unreleased]\n" in text
    headings = re.findall(r"^### (.+)$", text, re.M)
    assert headings and set(headings) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_one_licence_everywhere() -> None:
    head = (REPO / "LICENSE").read_text().split("\n", 3)[:2]
    assert head[0].strip() == "Apache License" and head[1].strip() == "Version 2.0, January 2004"
    assert _project()["license"] == "Apache-2.0" and _project()["license-files"] == ["LICENSE"]
    assert _citation()["license"] == "Apache-2.0"


def test_citation_has_what_github_and_zenodo_read() -> None:
    cff = _citation()
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert {"message", "title", "authors", "abstract", "keywords", "references"} <= set(cff)
    for ref in cff["references"]:  # type: ignore[attr-defined]
        assert {"type", "authors", "title", "year"} <= set(ref), ref
