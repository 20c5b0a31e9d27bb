"""Label map readers/writers: every orientation, axis order, spacing and format gives the same nodes in RAS mm;
seg.nrrd names; real LPS NRRD masks; bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from neckmatch.errors import InputError
from neckmatch.geometry.measure import measure_nodes
from neckmatch.io.labelmap import Segment, read_label_map, segment_fields, write_label_map
from neckmatch.model import LabelMap

LPS = np.diag([-1.0, -1.0, 1.0])
_LIST_AXIS = np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # a 'list' axis has no direction


def _base() -> LabelMap:
    """Three ellipsoid nodes on an anisotropic (0.7 x 0.7 x 1.4 mm) RAS grid with an off-zero origin.

    The spacing of the issue (0.7 x 0.7 x 1.4 mm) is not exact in float32, as NIfTI stores its affine: the
    measurements must not care (the padded Feret diameter is continuous in the voxel positions).
    """
    shape = (28, 26, 16)
    affine = np.diag([0.7, 0.7, 1.4, 1.0])
    affine[:3, 3] = [-12.25, 40.125, -77.0]
    ras = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    data = np.zeros(len(ras), dtype=np.int16)
    nodes = [(3, (-6, 46, -68), (4, 3, 5)), (7, (-2, 50, -62), (2, 2, 3)), (12, (0, 54, -70), (3, 3, 3))]
    for label, centre, axes in nodes:
        data[(((ras - centre) / axes) ** 2).sum(axis=1) <= 1] = label
    return LabelMap(data.reshape(shape), affine)


def _centroids(lm: LabelMap) -> dict[int, np.ndarray]:
    return {int(k): lm.to_ras(np.argwhere(lm.data == k)).mean(axis=0) for k in lm.labels()}


def _flip_ij(lm: LabelMap) -> LabelMap:
    """Same voxels stored with the i and j axes reversed: an L-P-S oriented grid."""
    n_i, n_j = lm.data.shape[:2]
    f = np.eye(4)
    f[0, 0], f[0, 3], f[1, 1], f[1, 3] = -1, n_i - 1, -1, n_j - 1
    return LabelMap(np.ascontiguousarray(lm.data[::-1, ::-1, :]), lm.affine @ f)


def _permute(lm: LabelMap, order: tuple[int, int, int]) -> LabelMap:
    """Same voxels stored with the array axes in ``order``."""
    aff = lm.affine.copy()
    aff[:, :3] = lm.affine[:, list(order)]
    return LabelMap(np.ascontiguousarray(np.transpose(lm.data, order)), aff)


def _nifti(tmp: Path, name: str, lm: LabelMap, qform_only: bool = False) -> Path:
    img = nib.Nifti1Image(lm.data, None)
    if qform_only:
        img.set_qform(lm.affine, code=1)
        img.set_sform(None, code=0)
    else:
        img.set_sform(lm.affine, code=2)
        img.set_qform(None, code=0)
    nib.save(img, tmp / name)
    return tmp / name


def _nrrd(tmp: Path, name: str, lm: LabelMap, space: str) -> Path:
    """An NRRD written by pynrrd directly (not by neckmatch) in ``space``."""
    flip = {"left-posterior-superior": LPS, "right-anterior-superior": np.eye(3), "LPS": LPS}[space]
    header = {"space": space, "space directions": (flip @ lm.affine[:3, :3]).T,
              "space origin": flip @ lm.affine[:3, 3], "kinds": ["domain"] * 3, "encoding": "gzip"}
    nrrd.write(str(tmp / name), lm.data, header, index_order="F")
    return tmp / name


VARIANTS = {
    "nifti_ras": lambda t, b: _nifti(t, "ras.nii.gz", b),
    "nifti_lps": lambda t, b: _nifti(t, "lps.nii.gz", _flip_ij(b)),
    "nifti_qform_only": lambda t, b: _nifti(t, "q.nii", _flip_ij(b), qform_only=True),
    "nifti_permuted": lambda t, b: _nifti(t, "perm.nii.gz", _permute(b, (2, 0, 1))),
    "nifti_lps_permuted": lambda t, b: _nifti(t, "lpsperm.nii.gz", _permute(_flip_ij(b), (1, 2, 0))),
    "nrrd_lps": lambda t, b: _nrrd(t, "lps.nrrd", b, "left-posterior-superior"),
    "nrrd_lps_abbrev_flipped": lambda t, b: _nrrd(t, "lps2.nrrd", _flip_ij(b), "LPS"),
    "nrrd_ras_permuted": lambda t, b: _nrrd(t, "ras.nrrd", _permute(b, (1, 0, 2)), "right-anterior-superior"),
    "writer_nrrd": lambda t, b: write_label_map(t / "w.nrrd", _permute(b, (2, 1, 0))),
    "writer_seg_nrrd": lambda t, b: write_label_map(t / "w.seg.nrrd", _flip_ij(b)),
    "writer_nifti": lambda t, b: write_label_map(t / "w.nii.gz", _flip_ij(b)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_nodes_in_every_orientation(tmp_path: Path, variant: str) -> None:
    base = _base()
    lm = read_label_map(VARIANTS[variant](tmp_path, base))
    assert list(lm.labels()) == [3, 7, 12]
    want, got = _centroids(base), _centroids(lm)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    np.testing.assert_allclose(sorted(lm.spacing), sorted(base.spacing), atol=1e-9)
    np.testing.assert_allclose(
        measure_nodes(lm).to_numpy(dtype=float), measure_nodes(base).to_numpy(dtype=float), atol=1e-6
    )


def test_lps_nifti_has_lps_axis_codes(tmp_path: Path) -> None:
    lm = read_label_map(_nifti(tmp_path, "lps.nii.gz", _flip_ij(_base())))
    assert nib.aff2axcodes(lm.affine) == ("L", "P", "S")


def test_nrrd_lps_header_is_read_exactly(tmp_path: Path) -> None:
    """Hand-computed: LPS origin (10, 20, 30) and direction rows -> RAS affine with x, y negated."""
    header = {"space": "left-posterior-superior", "space origin": np.array([10.0, 20.0, 30.0]),
              "space directions": np.array([[0.0, 0.5, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]),
              "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "a.nrrd"), np.ones((2, 3, 4), dtype=np.uint8), header)
    lm = read_label_map(tmp_path / "a.nrrd")
    np.testing.assert_allclose(lm.to_ras([[1, 1, 1]]), [[-12.0, -20.5, 33.0]])


def test_seg_nrrd_round_trip_keeps_names_and_data(tmp_path: Path) -> None:
    base = _base()
    names = {3: "LN R IIA 1", 7: "node seven", 12: "LN_Neck_III_R"}
    write_label_map(tmp_path / "n.seg.nrrd", base, names=names)
    back = read_label_map(tmp_path / "n.seg.nrrd")
    assert dict(back.names) == names
    np.testing.assert_array_equal(back.data, base.data)
    np.testing.assert_allclose(back.affine, base.affine, atol=1e-12)


def test_seg_nrrd_colours_given_are_kept_and_marked_not_generated(tmp_path: Path) -> None:
    base = _base()
    write_label_map(tmp_path / "c.seg.nrrd", base, colors={7: (0.1, 0.2, 0.3)}, compression_level=1)
    _, header = nrrd.read(str(tmp_path / "c.seg.nrrd"))
    by_label = {int(header[k]): k.removesuffix("_LabelValue") for k in header if k.endswith("_LabelValue")}
    assert sorted(by_label) == [3, 7, 12]
    assert [float(c) for c in header[f"{by_label[7]}_Color"].split()] == pytest.approx([0.1, 0.2, 0.3])
    assert header[f"{by_label[7]}_ColorAutoGenerated"] == "0"
    assert header[f"{by_label[3]}_ColorAutoGenerated"] == "1"  # no colour given: a generated one, marked so
    np.testing.assert_array_equal(read_label_map(tmp_path / "c.seg.nrrd").data, base.data)


def test_segment_fields_of_a_crop_known_answer() -> None:
    """Two segments of a file that starts at voxel (10, 20, 30) of the reference grid, one without a colour."""
    fields = segment_fields([Segment(4, "node_4", "node_4 R IIA TP", (1.0, 0.5, 0.0), [(0, 2), (1, 3), (0, 0)], "t|"),
                             Segment(9, "node_9", "node_9 L IV", None, [(5, 6), (0, 1), (2, 4)])], (10, 20, 30))
    assert fields["Segmentation_ReferenceImageExtentOffset"] == "10 20 30"
    assert fields["Segment0_ID"] == "node_4" and fields["Segment0_LabelValue"] == "4"
    assert fields["Segment0_Color"] == "1.0000 0.5000 0.0000" and fields["Segment0_ColorAutoGenerated"] == "0"
    assert fields["Segment0_Extent"] == "0 2 1 3 0 0" and fields["Segment0_Tags"] == "t|"
    assert fields["Segment1_Name"] == "node_9 L IV" and fields["Segment1_Extent"] == "5 6 0 1 2 4"
    assert fields["Segment1_ColorAutoGenerated"] == "1" and fields["Segment1_Tags"] == "|"
    assert all(0.2 <= float(c) <= 1.0 for c in fields["Segment1_Color"].split())
    assert not any(k.startswith("Segment2_") for k in fields)


def test_slicer_style_seg_nrrd_single_layer_4d(tmp_path: Path) -> None:
    """A Slicer 4-D seg.nrrd with one layer on a 'list' axis: names from SegmentN_* fields, labels kept."""
    data = np.zeros((1, 4, 4, 4), dtype=np.uint8)
    data[0, 1, 1, 1], data[0, 2, 2, 2] = 5, 9
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": _LIST_AXIS, "space origin": [0.0, 0.0, 0.0],
              "Segment0_Name": "first", "Segment0_LabelValue": "5", "Segment0_Layer": "0",
              "Segment1_Name": "second", "Segment1_LabelValue": "9", "Segment1_Layer": "0"}
    nrrd.write(str(tmp_path / "s.seg.nrrd"), data, header)
    lm = read_label_map(tmp_path / "s.seg.nrrd")
    assert dict(lm.names) == {5: "first", 9: "second"}
    np.testing.assert_allclose(lm.to_ras(np.argwhere(lm.data == 9)), [[-2.0, -2.0, 2.0]])


def test_float_map_with_integral_values_is_accepted(tmp_path: Path) -> None:
    data = np.zeros((3, 3, 3), dtype=np.float32)
    data[1, 1, 1] = 4.0
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f.nii.gz")
    lm = read_label_map(tmp_path / "f.nii.gz")
    assert np.issubdtype(lm.data.dtype, np.integer) and list(lm.labels()) == [4]


def test_binary_mask_bool_nrrd(tmp_path: Path) -> None:
    header = {"space": "RAS", "space directions": np.eye(3), "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "m.nrrd"), np.eye(3, dtype=np.uint8)[:, :, None].repeat(2, axis=2), header)
    assert list(read_label_map(tmp_path / "m.nrrd").labels()) == [1]


# ---- real data: expert submandibular masks, LPS NRRD with a real origin --------------------------------------
@pytest.fixture(scope="module")
def real_centroids(shared_data: Path) -> dict[tuple[str, str], np.ndarray]:
    """Centroid (RAS mm) of each annotator's glands and the oncologist's spinal cord (read once: big maps)."""
    root = shared_data / "deepmind_tcia_0522c0057"
    out = {}
    for annotator, structure in [("oncologist", "Submandibular-Lt"), ("oncologist", "Submandibular-Rt"),
                                 ("radiographer", "Submandibular-Lt"), ("radiographer", "Submandibular-Rt"),
                                 ("oncologist", "Spinal-Cord")]:
        lm = read_label_map(root / annotator / f"{structure}.nrrd")
        assert lm.data.dtype == np.uint8 and lm.data.max() == 1
        assert nib.aff2axcodes(lm.affine) == ("L", "P", "S")  # identity LPS directions = an L-P-S grid in RAS
        out[annotator, structure] = lm.to_ras(np.stack(np.nonzero(lm.data), axis=1)).mean(axis=0)
    return out


def test_real_submandibular_glands_lie_on_their_sides(real_centroids: dict) -> None:
    midline_x = real_centroids["oncologist", "Spinal-Cord"][0]
    for annotator in ("oncologist", "radiographer"):
        left, right = real_centroids[annotator, "Submandibular-Lt"], real_centroids[annotator, "Submandibular-Rt"]
        assert left[0] < midline_x - 20 < midline_x + 20 < right[0]  # patient left = negative RAS x


def test_real_annotators_agree_on_gland_centroids(real_centroids: dict) -> None:
    for side in ("Lt", "Rt"):
        a = real_centroids["oncologist", f"Submandibular-{side}"]
        b = real_centroids["radiographer", f"Submandibular-{side}"]
        assert np.linalg.norm(a - b) < 3.0


def test_real_gland_is_anterior_to_spinal_cord(real_centroids: dict) -> None:
    cord = real_centroids["oncologist", "Spinal-Cord"]
    assert real_centroids["oncologist", "Submandibular-Lt"][1] > cord[1] + 30  # +y = anterior


# ---- bad input -----------------------------------------------------------------------------------------------
def _valid_nifti_bytes(tmp_path: Path) -> bytes:
    path = write_label_map(tmp_path / "ok.nii.gz", _base())
    return path.read_bytes()


def test_corrupt_nifti(tmp_path: Path) -> None:
    (tmp_path / "bad.nii.gz").write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    with pytest.raises(InputError, match=r"bad\.nii\.gz: cannot read NIfTI"):
        read_label_map(tmp_path / "bad.nii.gz")


def test_truncated_nifti(tmp_path: Path) -> None:
    raw = _valid_nifti_bytes(tmp_path)
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.nii\.gz: cannot read NIfTI \(corrupt or truncated\?\)"):
        read_label_map(tmp_path / "cut.nii.gz")


def test_truncated_nrrd(tmp_path: Path) -> None:
    raw = write_label_map(tmp_path / "ok.nrrd", _base()).read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(raw[: len(raw) - 200])
    with pytest.raises(InputError, match=r"cut\.nrrd: cannot read NRRD"):
        read_label_map(tmp_path / "cut.nrrd")


def test_non_integer_label_map(tmp_path: Path) -> None:
    data = np.zeros((3, 3, 3), dtype=np.float32)
    data[1, 1, 1] = 2.5
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f.nii.gz")
    with pytest.raises(InputError, match=r"f\.nii\.gz: data: label map must hold integer labels, got float32 .*2\.5"):
        read_label_map(tmp_path / "f.nii.gz")


@pytest.mark.parametrize("name", ["e.nii.gz", "e.nii", "e.nrrd"])
def test_label_map_without_voxels_is_refused(tmp_path: Path, name: str) -> None:
    data = np.zeros((0, 4, 0), dtype=np.uint8)
    if name.endswith(".nrrd"):
        nrrd.write(str(tmp_path / name), data, {"space": "right-anterior-superior", "space directions": np.eye(3),
                                                "space origin": np.zeros(3)}, index_order="F")
    else:
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
    expected = rf"{name.replace('.', '[.]')}: shape: label map has no voxels: shape \[0, 4, 0\]"
    with pytest.raises(InputError, match=expected):
        read_label_map(tmp_path / name)


def test_negative_labels(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), -3, dtype=np.int16), np.eye(4)), tmp_path / "n.nii")
    with pytest.raises(InputError, match=r"n\.nii: data: labels must be >= 0, got -3"):
        read_label_map(tmp_path / "n.nii")


def test_non_invertible_nifti_affine(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((2, 2, 2), dtype=np.uint8), None)
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)
    nib.save(img, tmp_path / "sing.nii.gz")
    with pytest.raises(InputError, match=r"sing\.nii\.gz: affine: not invertible \(determinant 0\)"):
        read_label_map(tmp_path / "sing.nii.gz")


def test_non_invertible_nrrd_directions(tmp_path: Path) -> None:
    header = {"space": "LPS", "space directions": np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]])}
    nrrd.write(str(tmp_path / "s.nrrd"), np.ones((2, 2, 2), dtype=np.uint8), header)
    with pytest.raises(InputError, match=r"s\.nrrd: affine: not invertible"):
        read_label_map(tmp_path / "s.nrrd")


def test_nrrd_without_anatomical_space(tmp_path: Path) -> None:
    header = {"space": "scanner-xyz", "space directions": np.eye(3)}
    nrrd.write(str(tmp_path / "x.nrrd"), np.ones((2, 2, 2), dtype=np.uint8), header)
    with pytest.raises(InputError, match=r"x\.nrrd: space: need an anatomical space .* got 'scanner-xyz'"):
        read_label_map(tmp_path / "x.nrrd")


def test_multilayer_seg_nrrd_is_refused(tmp_path: Path) -> None:
    header = {"space": "LPS", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": _LIST_AXIS}
    nrrd.write(str(tmp_path / "m.seg.nrrd"), np.zeros((3, 2, 2, 2), dtype=np.uint8), header)
    with pytest.raises(InputError, match=r"m\.seg\.nrrd: sizes: multi-layer segmentation with 3 layers"):
        read_label_map(tmp_path / "m.seg.nrrd")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.nii\.gz: file does not exist"):
        read_label_map(tmp_path / "nope.nii.gz")


def test_unsupported_format(tmp_path: Path) -> None:
    (tmp_path / "a.mha").write_bytes(b"x")
    with pytest.raises(InputError, match=r"unsupported label map format 'a\.mha'"):
        read_label_map(tmp_path / "a.mha")


@pytest.mark.parametrize(("shape", "dtype"), [((1200, 1200, 800), "int16"), ((700, 700, 700), "uint8")])
def test_a_huge_label_map_is_refused_by_its_header_before_reading(tmp_path: Path, shape, dtype) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.dtype(dtype))
    hdr.set_data_shape(shape)
    path = tmp_path / "nodes.nii.gz"
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 1028))  # a few bytes of data: reading would fail
    with pytest.raises(InputError, match=r"nodes\.nii\.gz: dim: .* voxels .*; at most 268435456 voxels"):
        read_label_map(path)


def test_a_huge_nrrd_is_refused_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "nodes.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4000 4000 4000\nencoding: raw\nendian: little\n"
                     b"space: RAS\n"
                     b"space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\n\n\0\0")
    with pytest.raises(InputError, match=r"nodes\.nrrd: sizes: \[4000, 4000, 4000\]"):
        read_label_map(path)


def test_more_labels_than_the_limit_are_refused(tmp_path: Path) -> None:
    from neckmatch.io.labelmap import MAX_LABELS

    data = np.arange(MAX_LABELS + 1, dtype=np.int32).reshape(1, 1, -1)
    write_label_map(tmp_path / "ok.nii.gz", LabelMap(data, np.eye(4)))
    assert len(read_label_map(tmp_path / "ok.nii.gz").labels()) == MAX_LABELS
    write_label_map(tmp_path / "many.nii.gz", LabelMap(np.arange(MAX_LABELS + 2, dtype=np.int32).reshape(1, 1, -1),
                                                       np.eye(4)))
    with pytest.raises(InputError, match=f"{MAX_LABELS + 1} labels"):
        read_label_map(tmp_path / "many.nii.gz")


# ---- memory: no second full copy ---------------------------------------------------------------------------------
def _big_map() -> LabelMap:
    """A 16 Mvoxel uint8 map (16 MB) of 40 box-shaped nodes: large enough that a copy stands out from the rest."""
    data = np.zeros((256, 256, 256), dtype=np.uint8)
    for k in range(40):
        i, j = 12 + (k % 8) * 30, 20 + (k // 8) * 45
        data[i:i + 10, j:j + 12, 100:140] = k + 1
    return LabelMap(data, np.diag([0.5, 0.5, 0.5, 1.0]))


def test_reading_a_gz_nifti_holds_one_copy_of_the_voxels(tmp_path: Path) -> None:
    import tracemalloc

    lm = _big_map()
    size = lm.data.nbytes
    path = write_label_map(tmp_path / "big.nii.gz", lm)
    tracemalloc.start()
    try:
        back = read_label_map(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(back.data, lm.data)
    assert peak < 1.6 * size  # the map + 8 MB of counting (nibabel's read: 3 maps)


def test_labels_makes_no_mask_as_large_as_the_map() -> None:
    import tracemalloc

    lm = _big_map()
    size = lm.data.nbytes
    tracemalloc.start()
    try:
        found = lm.labels()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.tolist() == list(range(1, 41))
    assert peak < 0.25 * size  # the whole-map mask of before: 1 x size


def test_a_truncated_gz_nifti_names_the_missing_bytes(tmp_path: Path) -> None:
    raw = write_label_map(tmp_path / "ok.nii.gz", _big_map()).read_bytes()
    cut = gzip.decompress(raw)[: 352 + 1000]  # the header and the first 1000 voxels only, as a valid gzip stream
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(cut))
    with pytest.raises(InputError, match=r"short\.nii\.gz: cannot read NIfTI .*EOFError: expected 16777216 bytes"):
        read_label_map(tmp_path / "short.nii.gz")
