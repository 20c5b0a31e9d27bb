"""Impossible landmarks: outside the field of view, wrong craniocaudal order, left and right swapped; specimen
sutures that cannot orient their piece."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.io.labelmap import read_label_map
from neckmatch.io.markups import read_markups
from neckmatch.io.sanity import MAX_OUTSIDE_MM, MIN_SUTURE_GAP_MM, check_landmarks, check_sutures, field_of_view
from neckmatch.model import Curve, LabelMap, Landmarks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal_case"


@pytest.fixture(scope="module")
def example() -> tuple[Landmarks, LabelMap]:
    return read_markups(EXAMPLE / "mri" / "landmarks.mrk.json"), read_label_map(EXAMPLE / "mri" / "nodes.nii.gz")


def _edit(lms: Landmarks, **points: np.ndarray) -> Landmarks:
    return Landmarks({**lms.points, **points}, lms.curves)


def test_the_example_is_plausible_and_its_field_of_view_is_the_grid(example) -> None:
    lms, lm = example
    check_landmarks("lm", lms, lm)
    low, high = field_of_view(lm)  # 100 x 80 x 80 voxels of 1.5 mm centred at 0
    assert np.allclose(low, [-74.25, -59.25, -59.25]) and np.allclose(high, [74.25, 59.25, 59.25])


@pytest.mark.parametrize(("name", "shift", "ok"), [
    ("skull_base", 5000.0, False), ("manubrium_superior", -400.0, False), ("manubrium_superior", -100.0, True)])
def test_points_far_outside_the_image_are_refused(example, name: str, shift: float, ok: bool) -> None:
    lms, lm = example
    moved = _edit(lms, **{name: lms.points[name] + np.array([0.0, 0.0, shift])})
    if ok:  # within MAX_OUTSIDE_MM of the grid: a landmark below a neck MRI's field of view is common
        check_landmarks("lm", moved, lm)
    else:
        with pytest.raises(InputError, match=rf"^lm: {name}: RAS .* outside the label map's field of view"):
            check_landmarks("lm", moved, lm)
    assert MAX_OUTSIDE_MM == 250.0


def test_a_lower_landmark_above_an_upper_one_is_refused(example) -> None:
    lms, lm = example
    swapped = _edit(lms, hyoid_body_inferior=lms.points["cricoid_arch_inferior"],
                    cricoid_arch_inferior=lms.points["hyoid_body_inferior"])
    with pytest.raises(InputError, match=r"^lm: cricoid_arch_inferior: z = 10 mm is not below hyoid_body_inferior"):
        check_landmarks("lm", swapped, lm)


def test_left_and_right_swapped_are_refused(example) -> None:
    lms, lm = example
    curves = dict(lms.curves)
    right, left = lms.curves["SCM_posterior_R"].points, lms.curves["SCM_posterior_L"].points
    curves["SCM_posterior_R"] = Curve("SCM_posterior_R", left)
    curves["SCM_posterior_L"] = Curve("SCM_posterior_L", right)
    with pytest.raises(InputError, match=r"^lm: SCM_posterior_R: x = -47.5 mm is not right of SCM_posterior_L "
                                         r"\(x = 47.5 mm\)"):
        check_landmarks("lm", Landmarks(lms.points, curves), lm)


SUTURES = {"cranial": np.array([0.0, 0.0, 40.0]), "caudal": np.array([0.0, 0.0, -40.0]),
           "anterior": np.array([0.0, 20.0, 0.0]), "posterior": np.array([0.0, -20.0, 5.0]),
           "medial": np.array([-8.0, 0.0, 0.0]), "lateral": np.array([8.0, 0.0, 0.0])}
PIECE = LabelMap(np.zeros((20, 20, 20), np.uint8), np.diag([0.5, 0.5, 0.5, 1.0]))  # grid 0-9.5 mm


@pytest.mark.parametrize(("name", "to", "ok"), [
    # opposite sutures: refused below MIN_SUTURE_GAP_MM (1 mm) apart, accepted from it
    ("caudal", [0.0, 0.0, 40.0], False), ("caudal", [0.6, 0.0, 40.6], False), ("caudal", [0.0, 0.0, 39.0], True),
    ("lateral", [-8.0, 0.9, 0.0], False), ("lateral", [-8.0, 0.0, 1.0], True),
    # the anterior suture across the cranio-caudal direction from the posterior one: its x and y offsets count,
    # its z offset (along the direction) does not
    ("anterior", [0.0, -20.0, 30.0], False), ("anterior", [0.5, -20.5, -7.0], False),
    ("anterior", [0.0, -19.0, 5.0], True),
    # far outside the piece's grid: refused beyond MAX_OUTSIDE_MM (250 mm)
    ("anterior", [0.0, 9.5 + 251.0, 0.0], False), ("anterior", [0.0, 9.5 + 249.0, 0.0], True),
])
def test_sutures_that_cannot_orient_their_piece_are_refused(name: str, to: list[float], ok: bool) -> None:
    sutures = {**SUTURES, name: np.array(to)}
    if ok:
        check_sutures("R.mrk.json", sutures, PIECE)
    else:
        with pytest.raises(InputError, match=rf"^R\.mrk\.json: {name}: RAS "):
            check_sutures("R.mrk.json", sutures, PIECE)
    assert MIN_SUTURE_GAP_MM == 1.0 and MAX_OUTSIDE_MM == 250.0  # the limits the cases above straddle


def test_without_a_posterior_suture_the_anterior_one_is_measured_from_the_cranio_caudal_line() -> None:
    three = {k: SUTURES[k] for k in ("cranial", "caudal", "anterior")}
    check_sutures("R.mrk.json", three, PIECE)
    on_line = {**three, "anterior": np.array([0.3, 0.4, 25.0])}  # 0.5 mm off the line x = y = 0
    with pytest.raises(InputError, match=r"anterior: .* lies 0\.5 mm off the cranio-caudal line"):
        check_sutures("R.mrk.json", on_line, PIECE)
    check_sutures("R.mrk.json", {**on_line, "posterior": np.array([0.0, -20.0, 0.0])}, PIECE)  # 20 mm off its line
