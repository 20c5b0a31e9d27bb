"""DICOM SEG label maps (highdicom): an oblique synthetic MR series and a BINARY SEG of a known label volume read
back as a LabelMap in RAS mm with the same node centroids and segment names; overlapping segments and a non-SEG
DICOM are refused."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from neckmatch.errors import InputError
from neckmatch.io.labelmap import read_label_map

SHAPE = (5, 12, 10)  # (slices, rows, columns)
_RZ = np.array([[np.cos(0.3), -np.sin(0.3), 0.0], [np.sin(0.3), np.cos(0.3), 0.0], [0.0, 0.0, 1.0]])
_RX = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.2), -np.sin(0.2)], [0.0, np.sin(0.2), np.cos(0.2)]])
ROW_DIR, COL_DIR = (_RZ @ _RX)[:, 0], (_RZ @ _RX)[:, 1]  # oblique LPS directions of increasing column / row index
PIXEL_SPACING = (0.8, 0.6)  # DICOM order: (between rows, between columns), mm
SLICE_SPACING = 1.5  # mm
ORIGIN = np.array([-31.25, 12.5, -80.0])  # LPS position of the first voxel of the first slice, mm
NAMES = {1: "node IIA-1", 2: "node III-1", 3: "node IV-1"}


def _positions() -> np.ndarray:
    """LPS centre of every voxel, ndarray of shape (*SHAPE, 3), mm, computed from the DICOM geometry by hand."""
    normal = np.cross(ROW_DIR, COL_DIR)
    k, i, j = np.indices(SHAPE)
    return (
        ORIGIN
        + k[..., None] * SLICE_SPACING * normal
        + i[..., None] * PIXEL_SPACING[0] * COL_DIR
        + j[..., None] * PIXEL_SPACING[1] * ROW_DIR
    )


def _mr_series() -> list[Dataset]:
    """A tiny oblique axial MR series, one Dataset per slice."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    normal = np.cross(ROW_DIR, COL_DIR)
    slices = []
    for k in range(SHAPE[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = MRImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = "MR", "SYN", "Synthetic^Case"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", "", "", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [*ROW_DIR.tolist(), *COL_DIR.tolist()]
        ds.ImagePositionPatient = (ORIGIN + k * SLICE_SPACING * normal).tolist()
        ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = list(PIXEL_SPACING), SLICE_SPACING, SLICE_SPACING
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.zeros(SHAPE[1:], dtype=np.uint16).tobytes()
        slices.append(ds)
    return slices


def _labels() -> np.ndarray:
    """Three asymmetric nodes, ndarray of shape SHAPE, uint8, label = segment number."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:3, 2:5, 1:3] = 1
    labels[0:4, 7:8, 6:10] = 2
    labels[4, 9:12, 0:2] = 3
    labels[3, 10, 2] = 3
    return labels


def _write_seg(path: Path, series: list[Dataset], pixels: np.ndarray) -> Path:
    """A BINARY SEG of ``pixels`` (label volume or (slices, rows, columns, segments) stack) on ``series``."""
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.LymphNode,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n, name in NAMES.items()
    ]
    seg = hd.seg.Segmentation(
        source_images=series, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="neckmatch tests",
        manufacturer_model_name="synthetic", software_versions="0", device_serial_number="0",
    )
    seg.save_as(path)
    return path


def _ras_centroids(data: np.ndarray, positions_ras: np.ndarray) -> dict[int, np.ndarray]:
    return {int(n): positions_ras[data == n].mean(axis=0) for n in np.unique(data) if n}


def test_dicom_seg_reads_back_centroids_in_ras_and_names(tmp_path: Path) -> None:
    series, labels = _mr_series(), _labels()
    lm = read_label_map(_write_seg(tmp_path / "nodes.dcm", series, labels))
    expected = _ras_centroids(labels, _positions() * [-1.0, -1.0, 1.0])  # LPS -> RAS
    ijk = np.indices(lm.data.shape).reshape(3, -1).T
    got = _ras_centroids(lm.data, (ijk @ lm.affine[:3, :3].T + lm.affine[:3, 3]).reshape(*lm.data.shape, 3))
    assert sorted(got) == [1, 2, 3]
    for n in expected:
        np.testing.assert_allclose(got[n], expected[n], atol=1e-6)
    assert {n: int((lm.data == n).sum()) for n in got} == {n: int((labels == n).sum()) for n in expected}
    assert dict(lm.names) == NAMES


def test_dicom_seg_folder_with_mr_slices_finds_the_one_seg(tmp_path: Path) -> None:
    series, labels = _mr_series(), _labels()
    for k, ds in enumerate(series):
        ds.save_as(tmp_path / f"mr{k}.dcm", enforce_file_format=True)
    _write_seg(tmp_path / "seg.dcm", series, labels)
    lm = read_label_map(tmp_path)
    assert sorted(int(n) for n in lm.labels()) == [1, 2, 3]
    np.testing.assert_allclose(lm.spacing, [SLICE_SPACING, *PIXEL_SPACING], atol=1e-9)  # (slice, row, column)


def test_dicom_seg_overlapping_segments_refused(tmp_path: Path) -> None:
    series, labels = _mr_series(), _labels()
    stack = np.stack([labels == n for n in NAMES], axis=-1).astype(np.uint8)
    stack[2, 3, 2, 2] = 1  # a voxel of node 1 also in segment 3
    path = _write_seg(tmp_path / "overlap.dcm", series, stack)
    with pytest.raises(InputError, match=r"overlap\.dcm: SegmentSequence: segments 1 and 3 overlap \(1 voxels"):
        read_label_map(path)


def test_dicom_non_seg_refused_naming_modality(tmp_path: Path) -> None:
    path = tmp_path / "mr.dcm"
    _mr_series()[0].save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match=r"mr\.dcm: Modality: not a DICOM SEG: Modality is 'MR'"):
        read_label_map(path)


def test_case_json_may_name_a_seg_folder(tmp_path: Path) -> None:
    """A case whose mri.nodes is a PACS-style export folder (MR slices + one SEG) reads like any other."""
    import json
    import shutil

    from neckmatch.io.case import read_case

    case = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "minimal_case", tmp_path / "P1"))
    export = case / "mri" / "seg_export"
    export.mkdir()
    series = _mr_series()
    for k, ds in enumerate(series):
        ds.save_as(export / f"mr{k}.dcm", enforce_file_format=True)
    _write_seg(export / "seg.dcm", series, _labels())
    manifest = json.loads((case / "case.json").read_text())
    manifest["mri"] = {k: v for k, v in manifest["mri"].items() if k != "reads"} | {"nodes": "mri/seg_export"}
    (case / "case.json").write_text(json.dumps(manifest))
    assert sorted(int(n) for n in read_case(case).label_map.labels()) == [1, 2, 3]


def test_a_specimen_piece_may_be_a_dicom_seg(tmp_path: Path) -> None:
    """specimen-imaging.md: a piece's label map in any format accepted for mri.nodes, DICOM SEG included."""
    import json
    import shutil

    from neckmatch.io.case import read_case
    from tests.io.test_specimen import _write

    case = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "minimal_case", tmp_path / "P1"))
    _write(case, links="path_node,image,specimen_node\nR-II-01,R,2\nR-III-01,R,3\n")
    _write_seg(case / "specimen" / "R.dcm", _mr_series(), _labels())
    manifest = json.loads((case / "case.json").read_text())
    manifest["specimen"]["images"][0]["nodes"] = "specimen/R.dcm"
    (case / "case.json").write_text(json.dumps(manifest))
    piece = read_case(case).specimen.pieces[0]
    assert sorted(int(n) for n in piece.label_map.labels()) == [1, 2, 3]
    assert dict(piece.label_map.names) == NAMES
