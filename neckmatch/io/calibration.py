"""Calibration files of ``neckmatch calibrate`` (``neckmatch-calibration/1`` JSON): reading the auto threshold.

Written by :func:`neckmatch.calibrate.calibrate_results`; read here so that ``pipeline.Settings`` can take
``--calibration`` without importing the command.
"""

from __future__ import annotations

import json
from pathlib import Path

from neckmatch.errors import InputError

__all__ = ["FORMAT", "load_calibration"]

FORMAT = "neckmatch-calibration/1"


def load_calibration(path: str | Path) -> float:
    """The auto threshold (0-1) of a calibration file written by :func:`neckmatch.calibrate.calibrate_results`.

    Raises
    ------
    InputError
        Missing file, not JSON, another format, or a threshold outside [0, 1] (naming the file and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "", "calibration file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, "", f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else doc
        raise InputError(path, "format", f"must be '{FORMAT}', got {got!r}")
    thr = doc.get("auto_threshold")
    if not isinstance(thr, (int, float)) or not 0.0 <= float(thr) <= 1.0:
        raise InputError(path, "auto_threshold", f"must be a number in [0, 1], got {thr!r}")
    return float(thr)
