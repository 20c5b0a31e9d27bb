"""Make the tiny hand-made example case in this folder (run: ``.venv/bin/python examples/minimal_case/make_case.py``).

Four ellipsoid MR nodes in a 100 x 80 x 80 label map of 1.5 mm voxels (RAS axes), a full landmark set written
as 3D Slicer markups in LPS (as Slicer saves), two readers' reads and a pathology report with six nodes in four
containers. Coordinates are patient RAS mm; the anatomy is schematic (midline x = 0), not a real patient.
Deterministic: running it twice writes identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neckmatch.io.labelmap import write_label_map
from neckmatch.io.markups import write_markups
from neckmatch.model import Curve, LabelMap, Landmarks

HERE = Path(__file__).resolve().parent
SPACING = 1.5
SHAPE = (100, 80, 80)
ORIGIN = np.array([-74.25, -59.25, -59.25])

# label: (centre RAS mm, semi-axes mm)
NODES = {
    1: ((30.0, 8.0, 25.0), (6.0, 4.0, 5.0)),  # right IIA
    2: ((28.0, 5.0, -5.0), (4.0, 3.0, 4.0)),  # right III
    3: ((-30.0, 6.0, 30.0), (5.0, 4.0, 6.0)),  # left IIA
    4: ((-25.0, 5.0, -25.0), (3.0, 3.0, 3.0)),  # left IV
}
POINTS = {
    "skull_base": (0.0, -5.0, 55.0),
    "hyoid_body_inferior": (0.0, 25.0, 10.0),
    "cricoid_arch_inferior": (0.0, 15.0, -15.0),
    "manubrium_superior": (0.0, 10.0, -45.0),
    "clavicle_superior_L": (-40.0, 5.0, -38.0),
    "clavicle_superior_R": (40.0, 5.0, -38.0),
}
# curve stem: (|x| mm from the midline, y mm) at z = 55 and z = -50
CURVES = {
    "carotid_medial": ((14.0, 6.0), (16.0, 12.0)),
    "SMG_posterior": ((30.0, 20.0), (30.0, 20.0)),
    "SCM_posterior": ((50.0, -12.0), (45.0, -8.0)),
    "IJV_posterior": ((24.0, -2.0), (24.0, 2.0)),
    "digastric_anterior": ((10.0, 35.0), (10.0, 35.0)),
    "scalene_anterior": ((32.0, -6.0), (30.0, -4.0)),
    "trapezius_anterior": ((58.0, -42.0), (55.0, -38.0)),
}
PATHOLOGY = """node,container,side,level,size_mm,status,cc,ap,deposit_mm,ene,slide
R-II-01,R-II,R,II,10.5,negative,0.4,0.3,,,A1
R-II-02,R-II,R,II,4.0,negative,,,,,A2
R-III-01,R-III,R,III,7.0,positive,0.5,0.5,3.0,no,A3
R-IV-01,R-IV,R,IV,3.5,negative,,,,,A4
L-II-01,L-II,L,II,9.0,negative,0.2,0.4,,,B1
L-III+IV-01,L-III+IV,L,III+IV,5.5,negative,0.8,,,,B2
"""
READS = """node,reader,score,malignant
1,R1,1,no
1,R2,2,no
2,R1,5,yes
2,R2,4,yes
3,R1,1,no
3,R2,1,no
4,R1,2,no
4,R2,3,no
"""


def label_map() -> LabelMap:
    """The four ellipsoid nodes rasterised at voxel centres (uint8, RAS affine)."""
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    ijk = np.indices(SHAPE, dtype=np.float64).reshape(3, -1).T
    ras = ijk * SPACING + ORIGIN
    data = np.zeros(len(ras), dtype=np.uint8)
    for label, (centre, axes) in NODES.items():
        inside = (((ras - centre) / axes) ** 2).sum(axis=1) <= 1.0
        data[inside] = label
    return LabelMap(data.reshape(SHAPE), affine)


def landmarks() -> Landmarks:
    """The full ``som1999`` landmark set (RAS mm)."""
    curves = {}
    for stem, ((x_top, y_top), (x_bot, y_bot)) in CURVES.items():
        for side, sign in (("L", -1.0), ("R", 1.0)):
            pts = [[sign * x_top, y_top, 55.0], [sign * x_bot, y_bot, -50.0]]
            curves[f"{stem}_{side}"] = Curve(f"{stem}_{side}", pts)
    return Landmarks(points=POINTS, curves=curves)


def main() -> None:
    (HERE / "mri").mkdir(exist_ok=True)
    (HERE / "pathology").mkdir(exist_ok=True)
    write_label_map(HERE / "mri" / "nodes.nii.gz", label_map())
    write_markups(HERE / "mri" / "landmarks.mrk.json", landmarks(), coordinate_system="LPS")
    (HERE / "mri" / "reads.csv").write_text(READS)
    (HERE / "pathology" / "nodes.csv").write_text(PATHOLOGY)
    manifest = {
        "format": "neckmatch-case/1",
        "case_id": "MIN01",
        "primary_side": "R",
        "dissected": {"R": ["I", "II", "III", "IV", "V"], "L": ["II", "III", "IV"]},
        "mri": {"nodes": "mri/nodes.nii.gz", "landmarks": "mri/landmarks.mrk.json", "reads": "mri/reads.csv"},
        "pathology": {"nodes": "pathology/nodes.csv"},
    }
    (HERE / "case.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
