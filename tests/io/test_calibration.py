"""Reading calibration files (``neckmatch-calibration/1``): the threshold, or one error naming file and field."""

from __future__ import annotations

import json

import pytest

from neckmatch.errors import InputError
from neckmatch.io.calibration import load_calibration


def test_threshold_is_read(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"format": "neckmatch-calibration/1", "auto_threshold": 0.95, "n_above": 120}))
    assert load_calibration(p) == 0.95


@pytest.mark.parametrize(("doc", "field"), [
    ({"format": "neckmatch-calibration/1", "auto_threshold": 1.5}, "auto_threshold"),
    ({"format": "neckmatch-calibration/1"}, "auto_threshold"),
    ({"format": "other/1", "auto_threshold": 0.9}, "format"),
])
def test_bad_file_names_the_field(tmp_path, doc, field):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=field):
        load_calibration(p)


def test_not_json_is_an_input_error(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{threshold")
    with pytest.raises(InputError, match="not JSON"):
        load_calibration(p)
