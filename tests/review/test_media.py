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
