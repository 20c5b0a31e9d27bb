"""What the browser displays: the recoded label map, and a 3-D map without outcomes."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np

from neckmatch.review import media
from neckmatch.review.solve import case_inputs


def _case_dir(results):
    return json.loads((results / "SYN001" / "run.json").read_text())["case_dir"]


def test_highlight_labels_marks_the_node_and_its_candidates(results, tmp_path):
    case_dir = _case_dir(results)
    lm = case_inputs(case_dir, 3.0).case.label_map
    labels = [int(v) for v in np.unique(lm.data) if v > 0]
    node, cands = labels[0], labels[1:3]
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(media.highlight_labels(case_dir, 3.0, node, cands))
    img = nib.load(path)
    out = np.asarray(img.dataobj)
    np.testing.assert_allclose(img.affine, lm.affine)
    assert np.array_equal(out == 1, lm.data == node)
    assert np.array_equal(out == 2, lm.data == cands[0]) and np.array_equal(out == 3, lm.data == cands[1])
    others = (lm.data > 0) & ~np.isin(lm.data, [node, *cands])
    assert np.array_equal(out == media.OTHER, others) and np.array_equal(out == 0, lm.data == 0)
    assert gzip.decompress(path.read_bytes())[344:348] == b"n+1\0"  # a single-file NIfTI-1


def test_the_3d_map_shows_no_outcome_nor_status(results):
    glb = media.blind_map_glb(_case_dir(results), 3.0).read_bytes()
    assert glb[:4] == b"glTF"
    length = int.from_bytes(glb[12:16], "little")
    doc = json.loads(glb[20:20 + length])
    text = json.dumps(doc)
    assert doc["meshes"] and "LN_Neck_" in text
    for hidden in ("outcome", "path_status", "positive", "mr_score", "malignant", '"TP"', '"FP"'):
        assert hidden not in text


def test_a_large_volume_is_strided_and_a_crop_keeps_the_world_frame():
    sl, aff = media.crop_box((1000, 10, 10), np.diag([0.5, 1.0, 1.0, 1.0]), None)
    assert sl == (slice(0, 1000, 6), slice(0, 10, 1), slice(0, 10, 1))  # ceil(1000 / 192) = 6
    assert np.allclose(np.diag(aff)[:3], [3.0, 1.0, 1.0]) and np.allclose(aff[:3, 3], 0)
    rot = np.array([[0.0, -0.8, 0, 10], [0.9, 0, 0, -5], [0, 0, 1.2, 3], [0, 0, 0, 1]])
    sl, aff = media.crop_box((300, 300, 300), rot, [0.0, 40.0, 60.0])
    idx = np.array([7, 11, 13, 1.0])
    orig = np.array([s.start + s.step * i for s, i in zip(sl, idx[:3], strict=True)] + [1.0])
    np.testing.assert_allclose(aff @ idx, rot @ orig)  # a cropped voxel sits where the original voxel was
    edges = [(s.stop - s.start) * sp for s, sp in zip(sl, (0.9, 0.8, 1.2), strict=True)]
    assert all(e <= media.CROP_MM + 2 * sp for e, sp in zip(edges, (0.9, 0.8, 1.2), strict=True))


def test_the_image_is_served_around_the_node_blind_and_aligned_with_the_labels(results, tmp_path):
    from neckmatch.synth.mri import NODE_SIGNAL

    case_dir = json.loads((results / "SYN001" / "run.json").read_text())["case_dir"]
    case = case_inputs(case_dir, 3.0).case
    lm = case.label_map
    source = np.asarray(nib.load(case.image_path).dataobj)
    assert source.shape == lm.data.shape and source.max() == NODE_SIGNAL
    node = int(np.unique(lm.data)[-1])
    centre = (lm.affine @ np.append(np.argwhere(lm.data == node).mean(axis=0), 1.0))[:3]
    (tmp_path / "i.nii.gz").write_bytes(media.image_volume(case_dir, 3.0, centre.tolist()))
    (tmp_path / "l.nii.gz").write_bytes(media.highlight_labels(case_dir, 3.0, node, [], centre.tolist()))
    img, lab = nib.load(tmp_path / "i.nii.gz"), nib.load(tmp_path / "l.nii.gz")
    np.testing.assert_allclose(img.affine, lab.affine)  # one box for both layers
    assert img.get_data_dtype() == np.uint8 and img.shape == lab.shape
    extent = np.array(img.shape) * np.linalg.norm(img.affine[:3, :3], axis=0)
    assert np.all(extent <= media.CROP_MM + 2 * lm.spacing) and max(img.shape) <= media.MAX_EDGE
    values, labels = np.asarray(img.dataobj), np.asarray(lab.dataobj)
    assert np.any(labels == media.HIGHLIGHT)
    assert len(np.unique(values[labels > 0])) == 1  # every node one intensity: nothing of its status
    ijk = np.linalg.solve(lm.affine, img.affine @ np.array([0.0, 0, 0, 1]))[:3]
    assert np.allclose(ijk, np.round(ijk))  # the box starts on a voxel of the source grid
    i, j, k = np.round(ijk).astype(int)
    assert (lm.data[i, j, k] > 0) == (labels[0, 0, 0] > 0)


def test_a_case_without_an_image_serves_none(results):
    case_dir = json.loads((results / "SYN002" / "run.json").read_text())["case_dir"]
    assert case_inputs(case_dir, 3.0).case.image_path is None
    assert media.image_volume(case_dir, 3.0, [0.0, 0.0, 0.0]) is None
