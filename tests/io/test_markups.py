"""3D Slicer markups: LPS and RAS files give the same RAS landmarks; writers round-trip; bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.io.markups import read_markups, write_markups, write_point_list
from neckmatch.model import CURVE_LANDMARKS, POINT_LANDMARKS, REQUIRED_LANDMARKS, Curve, Landmarks


def _cp(label: str, pos: list[float], status: str = "defined") -> dict[str, Any]:
    return {"id": label, "label": label, "position": pos, "orientation": [-1, 0, 0, 0, -1, 0, 0, 0, 1],
            "positionStatus": status}


def _doc(system: str, sign: float, curve_points: int = 2) -> dict[str, Any]:
    """A full landmark set as Slicer writes it; ``sign`` = -1 writes the RAS positions negated in x, y (LPS)."""
    s = np.array([sign, sign, 1.0])
    points = [_cp(n, list(s * [float(i), 10.0 + i, 50.0 - 5 * i])) for i, n in enumerate(POINT_LANDMARKS)]
    fid = {"type": "Fiducial", "coordinateSystem": system, "coordinateUnits": "mm", "name": "F",
           "controlPoints": points}
    curves = [
        {"type": "Curve", "coordinateSystem": system, "name": n,
         "controlPoints": [_cp(f"{n}-{j}", list(s * [20.0 + i, -3.0 * j, 40.0 - 20.0 * j]))
                           for j in range(curve_points)]}
        for i, n in enumerate(CURVE_LANDMARKS)
    ]
    return {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
            "Schema/markups-schema-v1.0.3.json#", "markups": [fid, *curves]}


def _write(tmp: Path, name: str, doc: dict[str, Any]) -> Path:
    (tmp / name).write_text(json.dumps(doc))
    return tmp / name


def test_lps_and_ras_files_give_the_same_landmarks(tmp_path: Path) -> None:
    ras = read_markups(_write(tmp_path, "ras.mrk.json", _doc("RAS", 1.0)))
    lps = read_markups(_write(tmp_path, "lps.mrk.json", _doc("LPS", -1.0)))
    assert ras.missing() == [] and sorted(lps.points) == sorted(POINT_LANDMARKS)
    for n in POINT_LANDMARKS:
        np.testing.assert_allclose(lps.point(n), ras.point(n), atol=1e-12)
    for n in CURVE_LANDMARKS:
        np.testing.assert_allclose(lps.curve(n).points, ras.curve(n).points, atol=1e-12)
    # hand-computed: the 3rd point landmark was written at RAS (2, 12, 40)
    np.testing.assert_allclose(lps.point(POINT_LANDMARKS[2]), [2.0, 12.0, 40.0])


def test_lps_position_is_negated_in_x_and_y(tmp_path: Path) -> None:
    doc = {"markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
                        "controlPoints": [_cp("skull_base", [3.0, -4.0, 5.0])]}]}
    lm = read_markups(_write(tmp_path, "a.mrk.json", doc), required=["skull_base"])
    np.testing.assert_allclose(lm.point("skull_base"), [-3.0, 4.0, 5.0])


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_write_markups_round_trip(tmp_path: Path, system: str) -> None:
    lm = read_markups(_write(tmp_path, "in.mrk.json", _doc("RAS", 1.0, curve_points=3)))
    write_markups(tmp_path / "out.mrk.json", lm, coordinate_system=system)
    doc = json.loads((tmp_path / "out.mrk.json").read_text())
    assert {m["coordinateSystem"] for m in doc["markups"]} == {system}
    assert [m["name"] for m in doc["markups"] if m["type"] == "Curve"] == list(CURVE_LANDMARKS)
    back = read_markups(tmp_path / "out.mrk.json")
    for n in REQUIRED_LANDMARKS:
        want = lm.points.get(n, lm.curves[n].points if n in lm.curves else None)
        got = back.points.get(n, back.curves[n].points if n in back.curves else None)
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_written_lps_positions_are_lps(tmp_path: Path) -> None:
    write_markups(tmp_path / "o.mrk.json", Landmarks(points={"skull_base": [1.0, 2.0, 3.0]}))
    cp = json.loads((tmp_path / "o.mrk.json").read_text())["markups"][0]["controlPoints"][0]
    assert cp["label"] == "skull_base" and cp["position"] == [-1.0, -2.0, 3.0]


def test_write_point_list_round_trip(tmp_path: Path) -> None:
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])
    write_point_list(tmp_path / "p.mrk.json", "nodes", ["n1", "n2"], pts, descriptions=["a", "b"],
                     coordinate_system="RAS")
    doc = json.loads((tmp_path / "p.mrk.json").read_text())
    assert doc["markups"][0]["name"] == "nodes" and doc["markups"][0]["controlPoints"][1]["description"] == "b"
    back = read_markups(tmp_path / "p.mrk.json", required=["n1", "n2"])
    np.testing.assert_allclose([back.point("n1"), back.point("n2")], pts)


def test_compact_markups_hold_the_same_document_on_one_line(tmp_path: Path) -> None:
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])
    lm = Landmarks(points={"skull_base": pts[0]}, curves={"c": Curve("c", pts)})
    for indent in (2, None):
        write_point_list(tmp_path / f"p{indent}.mrk.json", "nodes", ["n1", "n2"], pts, indent=indent)
        write_markups(tmp_path / f"l{indent}.mrk.json", lm, indent=indent)
    for stem in ("p", "l"):
        pretty, compact = ((tmp_path / f"{stem}{i}.mrk.json").read_text() for i in (2, None))
        assert compact.count("\n") == 1 and pretty.count("\n") > 10
        assert json.loads(compact) == json.loads(pretty)


def test_unplaced_point_counts_as_missing(tmp_path: Path) -> None:
    doc = _doc("LPS", -1.0)
    doc["markups"][0]["controlPoints"][0]["positionStatus"] = "undefined"
    with pytest.raises(InputError, match=r"landmark 'skull_base': required landmark missing \(1 missing"):
        read_markups(_write(tmp_path, "u.mrk.json", doc))


def test_partial_set_with_required_parameter(tmp_path: Path) -> None:
    doc = _doc("LPS", -1.0)
    doc["markups"] = doc["markups"][:1]
    lm = read_markups(_write(tmp_path, "p.mrk.json", doc), required=POINT_LANDMARKS)
    assert lm.curves == {} and len(lm.points) == len(POINT_LANDMARKS)


def test_clamped_curve_from_file_evaluates_per_spec(tmp_path: Path) -> None:
    doc = {"markups": [{"type": "Curve", "coordinateSystem": "RAS", "name": "SCM_posterior_R",
                        "controlPoints": [_cp("a", [40.0, -20.0, 10.0]), _cp("b", [30.0, -10.0, 0.0])]}]}
    c = read_markups(_write(tmp_path, "c.mrk.json", doc), required=None).curve("SCM_posterior_R")
    np.testing.assert_allclose(c.at([5.0, 50.0]), [[35.0, -15.0], [40.0, -20.0]])


# ---- bad input -----------------------------------------------------------------------------------------------
def test_unknown_coordinate_system(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.mrk.json", _doc("IJK", 1.0))
    with pytest.raises(InputError, match=r"x\.mrk\.json: markups\[0\]\.coordinateSystem: must be LPS or RAS, got 'IJK"):
        read_markups(path)


def test_missing_required_landmark(tmp_path: Path) -> None:
    doc = _doc("LPS", -1.0)
    doc["markups"] = [m for m in doc["markups"] if m["name"] != "SCM_posterior_L"]
    with pytest.raises(InputError, match=r"m\.mrk\.json: landmark 'SCM_posterior_L': required landmark missing"):
        read_markups(_write(tmp_path, "m.mrk.json", doc))


def test_curve_with_one_point(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.mrk.json", _doc("LPS", -1.0, curve_points=1))
    with pytest.raises(InputError, match=r"c\.mrk\.json: curve 'carotid_medial_L': .*at least 2 control points, got 1"):
        read_markups(path)


def test_curve_on_one_axial_plane(tmp_path: Path) -> None:
    doc = {"markups": [{"type": "Curve", "coordinateSystem": "LPS", "name": "IJV_posterior_R",
                        "controlPoints": [_cp("a", [1.0, 2.0, 7.0]), _cp("b", [3.0, 4.0, 7.0])]}]}
    with pytest.raises(InputError, match=r"curve 'IJV_posterior_R': .*at least 2 axial planes"):
        read_markups(_write(tmp_path, "p.mrk.json", doc), required=())


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "b.mrk.json").write_text("{ not json")
    with pytest.raises(InputError, match=r"b\.mrk\.json: not valid markups JSON"):
        read_markups(tmp_path / "b.mrk.json")


def test_bad_position(tmp_path: Path) -> None:
    doc = {"markups": [{"type": "Fiducial", "controlPoints": [_cp("skull_base", [1.0, "x", 3.0])]}]}
    msg = r"markups\[0\]\.controlPoints\[0\]\.position: need 3 finite numbers, got \[1\.0, 'x', 3\.0\]"
    with pytest.raises(InputError, match=msg):
        read_markups(_write(tmp_path, "b.mrk.json", doc), required=())


def test_point_landmark_given_twice(tmp_path: Path) -> None:
    twice = [_cp("skull_base", [0, 0, 1]), _cp("skull_base", [0, 0, 2])]
    doc = {"markups": [{"type": "Fiducial", "controlPoints": twice}]}
    with pytest.raises(InputError, match=r"point landmark 'skull_base' is given twice"):
        read_markups(_write(tmp_path, "d.mrk.json", doc), required=())


def test_units_other_than_mm(tmp_path: Path) -> None:
    doc = {"markups": [{"type": "Fiducial", "coordinateUnits": "cm", "controlPoints": [_cp("a", [0, 0, 1])]}]}
    with pytest.raises(InputError, match=r"markups\[0\]\.coordinateUnits: must be mm, got 'cm'"):
        read_markups(_write(tmp_path, "u.mrk.json", doc), required=())


def test_writer_refuses_unknown_system(tmp_path: Path) -> None:
    lm = Landmarks(curves={"a": Curve("a", [[0, 0, 0], [0, 0, 1]])})
    with pytest.raises(InputError, match=r"coordinateSystem: must be LPS or RAS, got 'XYZ'"):
        write_markups(tmp_path / "w.mrk.json", lm, coordinate_system="XYZ")


@pytest.mark.parametrize(("bad", "shown"), [([1.0, 2.0], r"\[1\.0, 2\.0\]"), ([1.0, float("nan"), 3.0], r"\[1\.0, nan"),
                                            (None, "None")])  # fmt: skip
def test_bad_position_among_good_ones_names_its_own_index(tmp_path: Path, bad: Any, shown: str) -> None:
    """Positions are read all at once; the one bad point (after an unplaced one) is still reported by index."""
    cps = [_cp("skull_base", [0.0, 0.0, 1.0]), _cp("hyoid_body_inferior", [9.0, 9.0, 9.0], "undefined"),
           _cp("cricoid_arch_inferior", [0.0, 1.0, 2.0]), _cp("manubrium_superior", bad)]
    if bad is None:
        del cps[3]["position"]
    doc = {"markups": [{"type": "Fiducial", "controlPoints": cps}]}
    msg = rf"markups\[0\]\.controlPoints\[3\]\.position: need 3 finite numbers, got {shown}"
    with pytest.raises(InputError, match=msg):
        read_markups(_write(tmp_path, "b.mrk.json", doc), required=())


def test_curve_given_twice(tmp_path: Path) -> None:
    """A second Curve of the same name is an error (it silently replaced the first)."""
    doc = _doc("RAS", 1.0)
    doc["markups"].append(json.loads(json.dumps(doc["markups"][1])))
    name = doc["markups"][1]["name"]
    with pytest.raises(InputError, match=rf"markups\[{len(doc['markups']) - 1}\]\.name: curve '{name}' is given twice"):
        read_markups(_write(tmp_path, "c.mrk.json", doc))


@pytest.mark.parametrize(("control_points", "shown"), [(["x"], r"\['x'\]"), ({"a": 1}, r"\{'a': 1\}")])
def test_control_points_not_a_list_of_objects(tmp_path: Path, control_points: Any, shown: str) -> None:
    doc = {"markups": [{"type": "Fiducial", "controlPoints": control_points}]}
    msg = rf"markups\[0\]\.controlPoints: expected a list of control point objects, got {shown}"
    with pytest.raises(InputError, match=msg):
        read_markups(_write(tmp_path, "p.mrk.json", doc), required=())
