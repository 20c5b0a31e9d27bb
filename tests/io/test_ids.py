"""Case ids that become folder and file names."""

from __future__ import annotations

import pytest

from neckmatch.errors import InputError
from neckmatch.io.ids import is_valid_case_id, safe_join, validate_case_id


@pytest.mark.parametrize("cid", ["SYN001", "H7000", "MIN01", "P-17", "a.b_c", "A" * 64])
def test_synthetic_and_plain_ids_are_valid(cid: str) -> None:
    assert is_valid_case_id(cid) and validate_case_id(cid, "case.json") == cid


@pytest.mark.parametrize("cid", ["", ".", "..", "../x", "/abs", "a\\b", "a b", "A" * 65, "x\n", "é", None, 3])
def test_unsafe_ids_are_refused_naming_file_and_field(cid: object) -> None:
    assert not is_valid_case_id(cid)
    with pytest.raises(InputError, match=r"^P/case\.json: case_id: must use"):
        validate_case_id(cid, "P/case.json")


def test_safe_join_never_leaves_the_root(tmp_path) -> None:
    assert safe_join(tmp_path, "P1", "maps") == tmp_path / "P1" / "maps"
    for bad in ("..", "../x", "/etc", "a/../../b"):
        with pytest.raises(InputError, match="would leave the output folder"):
            safe_join(tmp_path, bad)
