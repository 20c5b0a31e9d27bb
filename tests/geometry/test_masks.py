"""Landmarks from per-structure masks: synthetic boxes with known edges, orientations, errors, real expert masks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.geometry.masks import find_masks, landmarks_from_masks, read_mask
from neckmatch.model import REQUIRED_LANDMARKS
from tests.cli_helpers import run_main as _run_cli

# Right-side boxes (x0, x1, y0, y1, z0, z1), RAS mm, inclusive; the left side is the mirror image in x.
SIDED = {
    "sternocleidomastoid": [(25, 35, -10, 10, -5, 45)],
    "internal_jugular_vein": [(15, 20, -5, 0, 0, 45)],
    "common_carotid_artery": [(10, 14, 0, 4, -5, 25)],
    "internal_carotid_artery": [(12, 15, -2, 1, 20, 40)],
    # anterior belly near the midline, posterior belly lateral and posterior
    "digastric": [(5, 10, 15, 30, 22, 30), (20, 30, -5, 5, 25, 40)],
    "anterior_scalene": [(15, 20, -15, -10, -5, 20)],
    "submandibular_gland": [(15, 25, 10, 20, 22, 35)],
    "trapezius": [(20, 45, -39, -25, -5, 40)],
    "clavicula": [(10, 40, 5, 15, -5, 2)],
}
MIDLINE = {
    # body in the midline; greater horns lateral, reaching lower than the body
    "hyoid": [(-8, 8, 20, 25, 20, 22), (9, 20, 5, 20, 18, 24), (-20, -9, 5, 20, 18, 24)],
    # anterior arch above a posterior lamina that reaches lower
    "cricoid_cartilage": [(-6, 6, 10, 13, 5, 8), (-6, 6, 0, 3, 3, 12)],
    "sternum": [(-10, 10, 10, 20, -10, 0)],
}


def _boxes() -> dict[str, list[tuple[int, ...]]]:
    out = dict(MIDLINE)
    for name, boxes in SIDED.items():
        out[f"{name}_right"] = boxes
        out[f"{name}_left"] = [(-b[1], -b[0], *b[2:]) for b in boxes]
    return out


def _inside(ras: np.ndarray, boxes: list[tuple[int, ...]], tol: float = 1e-6) -> np.ndarray:
    hit = np.zeros(len(ras), dtype=bool)
    for x0, x1, y0, y1, z0, z1 in boxes:
        lo, hi = np.array([x0, y0, z0]) - tol, np.array([x1, y1, z1]) + tol
        hit |= np.all((ras >= lo) & (ras <= hi), axis=1)
    return hit


def _grid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


AXIAL = np.array([[1.0, 0, 0, -50], [0, 1, 0, -40], [0, 0, 1, -10], [0, 0, 0, 1]])
SHAPE = (100, 80, 60)


def _write(folder: Path, name: str, data: np.ndarray, affine: np.ndarray, fmt: str) -> None:
    if fmt == "nrrd":
        lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3]
        header = {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]}
        nrrd.write(str(folder / f"{name}.nrrd"), data.astype(np.uint8), header)
    else:
        nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(folder / f"{name}.nii.gz"))


def _make(folder: Path, affine: np.ndarray = AXIAL, shape=SHAPE, fmt: str = "nii", skip=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ras = _grid(affine, shape)
    for name, boxes in _boxes().items():
        if name not in skip:
            _write(folder, name, _inside(ras, boxes).reshape(shape), affine, fmt)
    return folder


@pytest.fixture(scope="module")
def axial_dir(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("masks") / "axial")


@pytest.fixture(scope="module")
def axial(axial_dir):
    return landmarks_from_masks(axial_dir)


def test_all_required_landmarks_derived(axial):
    assert axial.missing(REQUIRED_LANDMARKS) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hyoid_body_inferior", [0.0, 22.5, 20.0]),  # body bottom, not the lower lateral horns
        ("cricoid_arch_inferior", [0.0, 11.5, 5.0]),  # arch bottom, not the lower posterior lamina
        ("manubrium_superior", [0.0, 15.0, 0.0]),
        ("clavicle_superior_R", [25.0, 10.0, 2.0]),
        ("clavicle_superior_L", [-25.0, 10.0, 2.0]),
        ("skull_base", [0.0, -2.5, 45.0]),  # top of both internal jugular veins
    ],
)
def test_point_landmarks(axial, name, expected):
    np.testing.assert_allclose(axial.point(name), expected, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "z", "xy"),
    [
        ("SCM_posterior_R", 10.0, [30.0, -10.0]),
        ("SCM_posterior_L", 10.0, [-30.0, -10.0]),
        ("IJV_posterior_R", 30.0, [17.5, -5.0]),
        ("SMG_posterior_L", 30.0, [-20.0, 10.0]),
        ("trapezius_anterior_R", 0.0, [32.5, -25.0]),
        ("scalene_anterior_R", 0.0, [20.0, -15.0]),  # postero-lateral corner
        ("scalene_anterior_L", 0.0, [-20.0, -15.0]),
        ("digastric_anterior_R", 26.0, [5.0, 22.5]),  # anterior belly, medial edge
        ("carotid_medial_R", 22.0, [10.0, 2.0]),  # common carotid at and below its top (z 25)
        ("carotid_medial_R", 30.0, [12.0, -0.5]),  # internal carotid above the bifurcation
        ("carotid_medial_L", 30.0, [-12.0, -0.5]),
    ],
)
def test_curve_edges(axial, name, z, xy):
    np.testing.assert_allclose(axial.curve(name).at(z), xy, atol=1e-9)


def test_curve_has_one_control_point_per_slice(axial):
    pts = axial.curve("SCM_posterior_R").points
    np.testing.assert_allclose(pts[:, 2], np.arange(-5.0, 46.0))
    assert axial.curve("digastric_anterior_R").points[:, 2].max() == 30.0  # posterior belly (to z 40) excluded


def test_reoriented_and_lps_nrrd_give_same_landmarks(tmp_path, axial):
    # permute and flip the voxel axes (new ijk -> old ijk) and store as LPS NRRD: the RAS geometry is unchanged
    m = np.array([[0, -1, 0, SHAPE[0] - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    lms = landmarks_from_masks(_make(tmp_path / "lps", AXIAL @ m, (SHAPE[2], SHAPE[0], SHAPE[1]), fmt="nrrd"))
    for name, p in axial.points.items():
        np.testing.assert_allclose(lms.point(name), p, atol=1e-6)
    for name, c in axial.curves.items():
        np.testing.assert_allclose(lms.curve(name).points, c.points, atol=1e-6)


def test_tilted_grid_edges_within_a_voxel_diagonal(tmp_path):
    # grid tilted 15 degrees about x (a tilted acquisition): slabs of constant RAS z still find the edges
    a = np.deg2rad(15)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    aff = np.eye(4)
    aff[:3, :3] = rot
    aff[:3, 3] = [-50, -45, -25]
    lms = landmarks_from_masks(
        _make(tmp_path / "tilt", aff, (100, 90, 80)), required=("SCM_posterior_R", "trapezius_anterior_L")
    )
    zs = np.arange(0.0, 40.0)
    # voxel centres lie at most a voxel diagonal inside the true edge, on average well under a voxel
    err_scm = lms.curve("SCM_posterior_R").at(zs)[:, 1] + 10.0
    err_trap = -25.0 - lms.curve("trapezius_anterior_L").at(zs)[:, 1]
    for err in (err_scm, err_trap):
        assert np.all(err > -1e-6) and err.max() < np.sqrt(2) and err.mean() < 1.0


def test_missing_structure_names_landmark_and_mask(tmp_path):
    folder = _make(tmp_path / "m", skip=("trapezius_left",))
    with pytest.raises(InputError, match=r"trapezius_anterior_L.*'trapezius_left\.nii\.gz'"):
        landmarks_from_masks(folder)


def test_carotid_from_common_carotid_alone(tmp_path):
    folder = _make(tmp_path / "m", skip=("internal_carotid_artery_right",))
    curve = landmarks_from_masks(folder, required=("carotid_medial_R",)).curve("carotid_medial_R")
    assert curve.points[:, 2].max() == 25.0  # the common carotid's top
    np.testing.assert_allclose(curve.at(30.0), [10.0, 2.0])  # clamped above it


def test_carotid_needs_one_artery(tmp_path):
    folder = _make(tmp_path / "m", skip=("internal_carotid_artery_left", "common_carotid_artery_left"))
    with pytest.raises(InputError, match=r"carotid_medial_L.*neither 'internal_carotid_artery_left\.nii\.gz'"):
        landmarks_from_masks(folder)


def test_missing_structure_not_required_is_skipped(tmp_path):
    folder = _make(tmp_path / "m", skip=("trapezius_left",))
    lms = landmarks_from_masks(folder, required=("SCM_posterior_R",))
    assert "trapezius_anterior_L" not in lms.curves and "trapezius_anterior_R" in lms.curves


def test_empty_mask_is_reported(tmp_path):
    folder = _make(tmp_path / "m", skip=("hyoid",))
    _write(folder, "hyoid", np.zeros(SHAPE, dtype=bool), AXIAL, "nii")
    with pytest.raises(InputError, match=r"hyoid_body_inferior.*'hyoid' is empty"):
        landmarks_from_masks(folder)


def test_synonym_file_names(tmp_path):
    for name in ("SCM_R.nii.gz", "Submandibular-Lt.nrrd", "scalenus_anterior_left.nii", "manubrium.nii.gz", "x.nii"):
        (tmp_path / name).write_bytes(b"")
    keys = find_masks(tmp_path)
    assert sorted(keys) == ["anterior_scalene_left", "sternocleidomastoid_right", "sternum", "submandibular_gland_left"]


def test_two_masks_for_one_structure_rejected(tmp_path):
    (tmp_path / "SCM_R.nii.gz").write_bytes(b"")
    (tmp_path / "sternocleidomastoid_right.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="two masks for one structure"):
        find_masks(tmp_path)


def test_real_nrrd_is_lps_converted(shared_data):
    mask, affine = read_mask(shared_data / "deepmind_tcia_0522c0057" / "oncologist" / "Submandibular-Lt.nrrd")
    assert mask.shape == (512, 512, 145) and mask.sum() > 1000
    centre = np.argwhere(mask).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]
    assert centre[0] < 0  # the left gland lies at patient-left: negative RAS x


def test_real_submandibular_annotators_agree(shared_data):
    root = shared_data / "deepmind_tcia_0522c0057"
    names = ("SMG_posterior_L", "SMG_posterior_R")
    a = landmarks_from_masks(root / "oncologist", required=names)
    b = landmarks_from_masks(root / "radiographer", required=names)
    for name in names:
        ca, cb = a.curve(name), b.curve(name)
        assert len(ca.points) >= 10  # ~2.5 mm slices over a gland several cm tall
        z = np.intersect1d(ca.points[:, 2], cb.points[:, 2])
        dist = np.linalg.norm(ca.at(z) - cb.at(z), axis=1)
        dy = np.abs(ca.at(z)[:, 1] - cb.at(z)[:, 1])
        print(
            f"{name}: {len(z)} slices, xy mean {dist.mean():.2f} max {dist.max():.2f} mm; "
            f"y (the rule's term) mean {dy.mean():.2f} max {dy.max():.2f} mm"
        )
        assert len(z) >= 10
        assert dist.mean() < 3.0 and dist.max() < 6.0
        assert dy.max() < 3.0  # the spread the 3 mm borderline tolerance is meant to cover
        assert np.all(np.sign(ca.points[:, 0]) == (-1 if name.endswith("_L") else 1))


def test_cli_landmarks_writes_markups(monkeypatch, tmp_path, capsys, axial_dir, axial):
    from neckmatch.io.markups import read_markups

    out = tmp_path / "landmarks.mrk.json"
    assert _run_cli(monkeypatch, "landmarks", str(axial_dir), "--out", str(out)) == 0
    back = read_markups(out)
    for name, p in axial.points.items():
        np.testing.assert_allclose(back.point(name), p, atol=1e-6)
    for name, c in axial.curves.items():
        np.testing.assert_allclose(back.curve(name).points, c.points, atol=1e-6)
    assert "6 points, 14 curves" in capsys.readouterr().out


def test_cli_landmarks_missing_mask_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    folder = _make(tmp_path / "m", skip=("hyoid",))
    assert _run_cli(monkeypatch, "landmarks", str(folder), "--out", str(tmp_path / "x.mrk.json")) == 2
    err = capsys.readouterr().err
    assert "hyoid_body_inferior" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mrk.json").exists()


def test_cli_landmarks_never_replaces_an_existing_file_without_force(monkeypatch, tmp_path, capsys, axial_dir):
    out = tmp_path / "landmarks.mrk.json"
    out.write_text("corrected by hand in 3D Slicer")
    assert _run_cli(monkeypatch, "landmarks", str(axial_dir), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "landmarks.mrk.json: exists (landmarks corrected by hand?); refusing to replace it" in err
    assert len(err.strip().splitlines()) == 1 and out.read_text() == "corrected by hand in 3D Slicer"
    assert _run_cli(monkeypatch, "landmarks", str(axial_dir), "--out", str(out), "--force") == 0
    assert out.read_text().lstrip().startswith("{")  # replaced by the markups
