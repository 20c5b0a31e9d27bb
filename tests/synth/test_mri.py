"""Synthetic MRI: rasterisation, orientation, visibility by size, merges, shuffled labels and reads."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.synth import simulate_case
from neckmatch.synth.mri import rasterise
from neckmatch.synth.nodes import TrueNodes
from neckmatch.synth.params import SynthParams

P = SynthParams()


def _one_node(semi, centre=(1.0, 2.0, 3.0)):
    return TrueNodes(
        centres=np.array([centre]), axes=np.eye(3)[None], semi=np.array([semi]),
        side=np.array(["R"]), level=np.array(["III"]), positive=np.array([False]), micro=np.array([False]),
    )


@pytest.fixture(scope="module")
def cases():
    return [simulate_case(f"S{k}", 100 + k, P) for k in range(6)]


@pytest.fixture(scope="module")
def fast_cases():
    return [simulate_case(f"S{k}", 200 + k, P, raster=False) for k in range(40)]


def test_rasterised_ellipsoid_volume_and_centroid():
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [-10.0, -10.0, -10.0]
    data = rasterise((60, 60, 60), affine, _one_node([6.0, 4.0, 3.0]), np.array([7]))
    vox = np.argwhere(data == 7)
    assert len(vox) * 0.125 == pytest.approx(4 / 3 * np.pi * 6 * 4 * 3, rel=0.03)
    ras = vox * 0.5 - 10.0
    np.testing.assert_allclose(ras.mean(axis=0), [1.0, 2.0, 3.0], atol=0.05)
    assert np.ptp(ras[:, 0]) > np.ptp(ras[:, 2])  # long axis along x here


def test_grid_orientation_and_spacing_vary(cases):
    spacings = np.array([c.mri.label_map.spacing for c in cases])
    assert np.all((spacings >= 0.6 - 1e-9) & (spacings <= 1.4 + 1e-9))
    dominant = {tuple(np.argmax(np.abs(c.mri.label_map.affine[:3, :3]), axis=0)) for c in cases}
    assert len(dominant) > 1  # axis order differs between cases


def test_every_segmented_label_is_in_the_map(cases):
    for c in cases:
        want = np.unique(c.mri.mr_label[c.mri.mr_label > 0])
        np.testing.assert_array_equal(c.mri.label_map.labels(), want)
        np.testing.assert_array_equal(want, np.arange(1, len(want) + 1))


def test_labels_are_shuffled(cases):
    # label values must not follow the true-node order (which is sorted by side and level)
    ordered = 0
    for c in cases:
        lab = c.mri.mr_label[c.mri.mr_label > 0]
        ordered += bool(np.all(np.diff(lab) >= 0))
    assert ordered == 0


def test_visibility_by_size(fast_cases):
    short = np.concatenate([c.nodes.short_mm for c in fast_cases])
    seen = np.concatenate([c.mri.mr_label > 0 for c in fast_cases])
    assert seen[short < 2.2].mean() < 0.15
    assert seen[short > 3.5].mean() > 0.95
    assert 0.2 < seen[(short > 2.6) & (short < 2.9)].mean() < 0.8


def test_some_touching_nodes_merge(fast_cases):
    merged = sum(int(np.sum(np.bincount(c.mri.mr_label[c.mri.mr_label > 0]) > 1)) for c in fast_cases)
    labels = sum(len(np.unique(c.mri.mr_label[c.mri.mr_label > 0])) for c in fast_cases)
    assert 0 < merged < 0.1 * labels  # occasional


def test_reader_scores_are_realistic(fast_cases):
    benign, macro = [], []
    for c in fast_cases:
        r = c.mri.reads
        for lab, g in r.groupby("node"):
            m = c.mri.mr_label == lab
            if not c.nodes.positive[m].any():
                benign += g.score.tolist()
            elif (c.nodes.positive[m] & ~c.nodes.micro[m]).any():
                macro += g.score.tolist()
        assert set(r.malignant) <= {"yes", "no"}
        np.testing.assert_array_equal(r.malignant == "yes", r.score >= P.malignant_threshold)
    assert np.mean(np.array(benign) <= 2) > 0.85  # domain: benign mostly complete signal loss
    assert np.mean(np.array(macro) >= 4) > 0.75  # domain: metastatic mostly >= fat


def test_the_synthetic_image_is_off_by_default_and_blind_to_the_status(tmp_path):
    from neckmatch.io.case import read_case
    from neckmatch.synth import generate_case
    from neckmatch.synth.mri import NODE_SIGNAL

    plain = simulate_case("S0", 300, P)
    case = simulate_case("S0", 300, P.replace(mri_image=True))
    assert plain.mri.image is None and case.mri.image is not None
    assert plain.truth.equals(case.truth)  # no random draw: the rest of the case is unchanged
    labels = case.mri.label_map.data
    image = case.mri.image
    assert image.shape == labels.shape and image.dtype == np.int16
    assert np.all(image[labels > 0] == NODE_SIGNAL)  # one intensity for every node, positive or not
    back = image[labels == 0]
    assert back.max() < NODE_SIGNAL and back.std() > 10  # a smooth, varying background
    generate_case("S0", 300, tmp_path, P.replace(mri_image=True))
    read = read_case(tmp_path / "S0")
    assert read.image_path == tmp_path / "S0" / "mri" / "image.nii.gz"
    import nibabel as nib

    img = nib.load(read.image_path)
    np.testing.assert_allclose(img.affine, read.label_map.affine)
    assert np.array_equal(np.asarray(img.dataobj), image)
