"""The example case shipped in the package (neckmatch.data, ``neckmatch example``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neckmatch.data import copy_example_case, example_case
from neckmatch.io.case import read_case
from tests.cli_helpers import run_main

REPO = Path(__file__).resolve().parents[1]


def test_the_packaged_case_is_the_examples_folder() -> None:
    assert example_case().resolve() == (REPO / "examples" / "minimal_case").resolve()


def test_example_command_copies_a_readable_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_main(monkeypatch, "example", "--out", str(tmp_path / "P1")) == 0
    copied = sorted(p.relative_to(tmp_path / "P1").as_posix() for p in (tmp_path / "P1").rglob("*") if p.is_file())
    assert copied == ["case.json", "mri/landmarks.mrk.json", "mri/nodes.nii.gz", "mri/reads.csv", "pathology/nodes.csv"]
    for rel in copied:
        assert (tmp_path / "P1" / rel).read_bytes() == (example_case() / rel).read_bytes()
    assert read_case(tmp_path / "P1").case_id == read_case(example_case()).case_id
    assert run_main(monkeypatch, "example", "--out", str(tmp_path / "P1")) == 2  # never overwrites


def test_copy_refuses_an_existing_folder(tmp_path: Path) -> None:
    from neckmatch.errors import InputError

    with pytest.raises(InputError, match="already exists"):
        copy_example_case(tmp_path)
