"""A small synthetic neck for the viz tests: box-shaped level regions on a 2 mm grid and spherical MR nodes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.model import LabelMap

# Level boxes per side: (level, |x| range, y range, z range), mm RAS; the right side has x > 0.
LEVEL_BOXES = [
    ("IA", (0, 10), (20, 40), (10, 30)),
    ("IB", (10, 35), (15, 40), (10, 30)),
    ("IIA", (20, 45), (-5, 15), (10, 40)),
    ("IIB", (25, 50), (-20, -5), (10, 40)),
    ("III", (20, 45), (-10, 15), (-20, 10)),
    ("IV", (20, 45), (-10, 15), (-50, -20)),
    ("VA", (45, 60), (-40, -10), (-20, 40)),
    ("VB", (45, 60), (-40, -10), (-50, -20)),
    ("VI", (0, 15), (15, 30), (-50, 10)),
]
# MR nodes: label -> (centre RAS mm, radius mm, side, level, outcome, match_kind)
NODES = {
    1: ((30.0, 5.0, 25.0), 7.0, "R", "IIA", "TP", "matched"),
    2: ((-30.0, 5.0, 25.0), 5.0, "L", "IIA", "TN", "matched"),
    3: ((32.0, 0.0, -5.0), 4.0, "R", "III", "FN", "level-only"),
    4: ((-33.0, 0.0, -35.0), 4.0, "L", "IV", "FP", "matched"),
    5: ((52.0, -25.0, 10.0), 3.5, "R", "VA", "", "unmatched"),
    6: ((-22.0, 28.0, 20.0), 3.5, "L", "IB", "TN", "matched"),
}


def _grid(spacing: float, lo: tuple[float, float, float], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = lo
    ijk = np.indices(shape).reshape(3, -1).T
    return aff, ijk * spacing + np.asarray(lo)


@pytest.fixture(scope="session")
def level_map() -> tuple[LabelMap, dict[int, str]]:
    """Level regions on a 2 mm grid: ndarray (65, 45, 51); names LN_Neck_<level>_<side>."""
    shape = (65, 45, 51)
    aff, ras = _grid(2.0, (-64.0, -44.0, -56.0), shape)
    data = np.zeros(len(ras), dtype=np.int16)
    names: dict[int, str] = {}
    value = 0
    for side, sign in (("R", 1.0), ("L", -1.0)):
        for level, xr, yr, zr in LEVEL_BOXES:
            value += 1
            x = sign * ras[:, 0]
            inside = (x >= xr[0]) & (x < xr[1]) & (ras[:, 1] >= yr[0]) & (ras[:, 1] < yr[1])
            inside &= (ras[:, 2] >= zr[0]) & (ras[:, 2] < zr[1]) & (data == 0)
            data[inside] = value
            names[value] = f"LN_Neck_{level}_{side}"
    return LabelMap(data.reshape(shape), aff, names), names


@pytest.fixture(scope="session")
def node_map() -> LabelMap:
    """MR nodes as balls on a 1 mm grid mirrored in x (affine with negative x step, like LPS-stored data)."""
    shape = (130, 90, 100)
    aff = np.diag([-1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = (65.0, -45.0, -55.0)
    ijk = np.indices(shape).reshape(3, -1).T
    ras = ijk @ aff[:3, :3].T + aff[:3, 3]
    data = np.zeros(len(ras), dtype=np.int16)
    for lab, (c, r, *_rest) in NODES.items():
        data[np.linalg.norm(ras - np.asarray(c), axis=1) <= r] = lab
    return LabelMap(data.reshape(shape), aff)


@pytest.fixture(scope="session")
def node_table() -> pd.DataFrame:
    """truth_nodes-like table: node, side, level, outcome, match_kind, x, y, z, short_axis_mm."""
    rows = [
        {"case_id": "SYN1", "node": lab, "side": s, "level": lv, "outcome": o or np.nan, "match_kind": k,
         "x": c[0], "y": c[1], "z": c[2], "short_axis_mm": 2 * r}
        for lab, (c, r, s, lv, o, k) in NODES.items()
    ]
    return pd.DataFrame(rows)


def _profile(x: float, z: tuple[float, float], y_ant: float, y_post: float) -> dict:
    zs = np.linspace(z[1], z[0], 5)
    return {"z": zs.tolist(), "y_ant": [y_ant] * 5, "y_post": [y_post] * 5, "x": [x] * 5}


@pytest.fixture(scope="session")
def containers() -> list[dict]:
    """Two reconstructed pathology containers as in specimen.json (RAS mm)."""
    return [
        {"container": "R-II", "side": "R", "level": "II", "source": "landmarks",
         "profile": _profile(35.0, (10.0, 40.0), 15.0, -20.0)},
        {"container": "L-III+IV", "side": "L", "level": "III+IV", "source": "landmarks",
         "profile": _profile(-32.0, (-50.0, 10.0), 15.0, -10.0)},
    ]
