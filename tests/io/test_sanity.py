"""Impossible landmarks: outside the field of view, wrong craniocaudal order, left and right swapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.io.labelmap import read_label_map
from neckmatch.io.markups import read_markups
from neckmatch.io.sanity import MAX_OUTSIDE_MM, check_landmarks, field_of_view
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
