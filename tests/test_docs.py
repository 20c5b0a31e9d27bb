"""The documentation site builds with ``mkdocs build --strict`` (every page in the nav, every link and anchor
resolving, every documented public function and class with a docstring), and the strict settings do catch a
broken link and a missing docstring."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d",
                           str(site)], cwd=config.parent, env=env, capture_output=True, text=True)  # fmt: skip


def _hooks():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("neckmatch_docs_hooks", REPO / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strict(tmp_path: Path) -> None:
    res = _mkdocs(REPO / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stderr
    api = (tmp_path / "site" / "api" / "modules" / "index.html").read_text(encoding="utf-8")
    assert 'id="neckmatch.cohort.run_cohort"' in api and 'id="neckmatch.export.export_lydata"' in api
    tutorial = (tmp_path / "site" / "tutorial" / "index.html").read_text(encoding="utf-8")
    assert "neckmatch export lydata" in tutorial
    assert (tmp_path / "site" / "references" / "index.html").is_file()
    assert not (tmp_path / "site" / "hooks.py").exists()


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    config = config[: config.index("hooks:")] + "nav:\n  - Home: index.md\n"  # the repo's validation settings
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [outputs](outputs.md).\n", encoding="utf-8")
    res = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert res.returncode != 0 and "outputs.md" in res.stderr
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nNo links.\n", encoding="utf-8")
    assert _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site").returncode == 0


def test_docstring_hook_names_what_is_undocumented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nm_doc_probe.py").write_text(
        '"""A module."""\n__all__ = ["documented", "bare", "Bare"]\n'
        'def documented():\n    """Yes."""\n'
        "def bare():\n    pass\n"
        "class Bare:\n    pass\n"
        "def _private():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _hooks().undocumented("nm_doc_probe") == ["nm_doc_probe.bare", "nm_doc_probe.Bare"]
    assert _hooks().undocumented("neckmatch.cluster") == []
