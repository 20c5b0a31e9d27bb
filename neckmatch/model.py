"""The typed domain model: closed vocabularies (enums whose values are the file strings) and the objects of a case.

Coordinates: every position in neckmatch is patient **RAS millimetres** (+x patient Right, +y Anterior,
+z Superior), as nibabel's world space. Readers convert LPS on input; writers write each format's own convention.

Objects validate themselves in ``__post_init__``, so an object that exists is valid. They raise ``ValueError``
(or ``TypeError``) with the rule and the value; readers re-raise as :class:`neckmatch.errors.InputError` with the
file and field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Side",
    "Level",
    "MIDLINE_LEVELS",
    "SurgicalLevel",
    "ContainerLevel",
    "Status",
    "Decision",
    "Outcome",
    "MatchKind",
    "POINT_LANDMARKS",
    "CURVE_LANDMARKS",
    "REQUIRED_LANDMARKS",
    "Curve",
    "Landmarks",
    "LabelMap",
    "present_labels",
    "PathNode",
    "Container",
    "Read",
    "Case",
    "optional_float",
    "pn_status",
    "SUTURE_LABELS",
    "REQUIRED_SUTURES",
    "SpecimenPiece",
    "SpecimenLink",
    "SpecimenScan",
]

FloatArray = NDArray[np.float64]


class Side(StrEnum):
    """Patient side. Values are the file strings."""

    R = "R"
    L = "L"

    @property
    def other(self) -> Side:
        return Side.L if self is Side.R else Side.R


class Level(StrEnum):
    """Imaging neck levels of the ``som1999`` rule set (shared/spec/levels.md)."""

    IA = "IA"
    IB = "IB"
    IIA = "IIA"
    IIB = "IIB"
    III = "III"
    IV = "IV"
    VA = "VA"
    VB = "VB"
    VI = "VI"
    VII = "VII"
    RP = "RP"
    SC = "SC"


# Central levels: adjacent to the same level of the other side (shared/spec/levels.md); one container may hold both
# sides' nodes.
MIDLINE_LEVELS: frozenset[Level] = frozenset({Level.IA, Level.VI, Level.VII})


class SurgicalLevel(StrEnum):
    """Surgical levels a pathology container can carry (alone or joined with ``+``)."""

    I = "I"  # noqa: E741
    IA = "IA"
    IB = "IB"
    II = "II"
    IIA = "IIA"
    IIB = "IIB"
    III = "III"
    IV = "IV"
    V = "V"
    VA = "VA"
    VB = "VB"
    VI = "VI"
    VII = "VII"


# Which imaging levels each surgical level contains. An imaging SC node belongs with surgical IV or V / VB;
# RP is never part of a neck dissection.
_SURGICAL_TO_IMAGING: dict[SurgicalLevel, frozenset[Level]] = {
    SurgicalLevel.I: frozenset({Level.IA, Level.IB}),
    SurgicalLevel.IA: frozenset({Level.IA}),
    SurgicalLevel.IB: frozenset({Level.IB}),
    SurgicalLevel.II: frozenset({Level.IIA, Level.IIB}),
    SurgicalLevel.IIA: frozenset({Level.IIA}),
    SurgicalLevel.IIB: frozenset({Level.IIB}),
    SurgicalLevel.III: frozenset({Level.III}),
    SurgicalLevel.IV: frozenset({Level.IV, Level.SC}),
    SurgicalLevel.V: frozenset({Level.VA, Level.VB, Level.SC}),
    SurgicalLevel.VA: frozenset({Level.VA}),
    SurgicalLevel.VB: frozenset({Level.VB, Level.SC}),
    SurgicalLevel.VI: frozenset({Level.VI}),
    SurgicalLevel.VII: frozenset({Level.VII}),
}

_SURGICAL_NAMES = ", ".join(s.value for s in SurgicalLevel)


@dataclass(frozen=True)
class ContainerLevel:
    """The level of a specimen container: one surgical level or several merged (``"III+IV"``).

    ``parts`` are kept in :class:`SurgicalLevel` order, so ``IV+III`` and ``III+IV`` are one level.

    Examples
    --------
    >>> lv = ContainerLevel.parse("IV+III")
    >>> str(lv), sorted(x.value for x in lv.imaging_levels()), lv == ContainerLevel.parse("III+IV")
    ('III+IV', ['III', 'IV', 'SC'], True)
    """

    parts: tuple[SurgicalLevel, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a container level needs at least one surgical level")
        if len(set(self.parts)) != len(self.parts):
            raise ValueError(f"'{self}' names a level twice")
        order = list(SurgicalLevel)
        object.__setattr__(self, "parts", tuple(sorted(self.parts, key=order.index)))

    @classmethod
    def parse(cls, text: str) -> ContainerLevel:
        """Parse ``"IIA"``, ``"iii+iv"`` or lyDATA-style ``"Ib_to_III"`` (expanded to ``IB+II+III``)."""
        raw = str(text).strip()
        if "_to_" in raw.lower():
            lo, hi = raw.lower().split("_to_")
            coarse = ["IB", "II", "III", "IV", "V", "VI", "VII"]
            try:
                a, b = coarse.index(lo.upper()), coarse.index(hi.upper())
            except ValueError:
                raise ValueError(f"'{raw}' is not a surgical level ({_SURGICAL_NAMES}, or merged with '+')") from None
            return cls(tuple(SurgicalLevel(n) for n in coarse[a : b + 1]))
        parts = []
        for p in raw.split("+"):
            p = p.strip().upper()
            try:
                parts.append(SurgicalLevel(p))
            except ValueError:
                raise ValueError(f"'{raw}' is not a surgical level ({_SURGICAL_NAMES}, or merged with '+')") from None
        return cls(tuple(parts))

    def imaging_levels(self) -> frozenset[Level]:
        """The imaging levels whose nodes this container can hold."""
        out: set[Level] = set()
        for p in self.parts:
            out |= _SURGICAL_TO_IMAGING[p]
        return frozenset(out)

    def contains(self, level: Level | str) -> bool:
        """True where an imaging-level node belongs in this container."""
        return Level(level) in self.imaging_levels()

    def __str__(self) -> str:
        return "+".join(p.value for p in self.parts)


def surgical_contains(surgical: Iterable[SurgicalLevel | str], level: Level | str) -> bool:
    """True where imaging ``level`` lies in any of the ``surgical`` levels (e.g. the dissected levels)."""
    lv = Level(level)
    return any(lv in _SURGICAL_TO_IMAGING[SurgicalLevel(s)] for s in surgical)


class Status(StrEnum):
    """Histopathological status of a node or container."""

    POSITIVE = "positive"
    NEGATIVE = "negative"


_PN = re.compile(r"^(?:y?p)?N(X|[0-3](?:mi|[abc])?)(?:\s*\(.*\))?$", re.IGNORECASE)


def pn_status(value: object) -> Status | None:
    """Patient-level reference from a pathological N category: ``pN0`` negative, ``pN1`` ... ``pN3b`` positive,
    ``pNX`` or missing None.

    Raises
    ------
    ValueError
        For text that is not an N category.

    Examples
    --------
    >>> pn_status("pN0"), pn_status("pN2b"), pn_status("pN1mi"), pn_status("pNX"), pn_status(None)
    (<Status.NEGATIVE: 'negative'>, <Status.POSITIVE: 'positive'>, <Status.POSITIVE: 'positive'>, None, None)
    """
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    m = _PN.match(str(value).strip())
    if m is None:
        raise ValueError(f"not a pathological N category (pN0, pN1, pN2a ... pN3b, pNX): '{value}'")
    grade = m.group(1).upper()
    if grade == "X":
        return None
    return Status.NEGATIVE if grade == "0" else Status.POSITIVE


class Decision(StrEnum):
    """What a match decision needs: nothing (``auto``) or a person (``review``)."""

    AUTO = "auto"
    REVIEW = "review"


class Outcome(StrEnum):
    """Index test result against the reference, for one unit."""

    TP = "TP"
    FP = "FP"
    FN = "FN"
    TN = "TN"


class MatchKind(StrEnum):
    """How an MR node was correlated with pathology."""

    MATCHED = "matched"  # node-to-node, decided (auto or by a person): a node-level fact
    UNDECIDED = "undecided"  # node-to-node proposed, awaiting review: not a node-level fact
    LEVEL_ONLY = "level-only"  # only its level / container is known
    UNMATCHED = "unmatched"  # no pathology counterpart (not harvested, undissected level, ...)


POINT_LANDMARKS: tuple[str, ...] = (
    "skull_base",
    "hyoid_body_inferior",
    "cricoid_arch_inferior",
    "manubrium_superior",
    "clavicle_superior_L",
    "clavicle_superior_R",
)
_CURVE_STEMS = (
    "carotid_medial",
    "SMG_posterior",
    "SCM_posterior",
    "IJV_posterior",
    "digastric_anterior",
    "scalene_anterior",
    "trapezius_anterior",
)
CURVE_LANDMARKS: tuple[str, ...] = tuple(f"{s}_{side}" for s in _CURVE_STEMS for side in ("L", "R"))
REQUIRED_LANDMARKS: tuple[str, ...] = POINT_LANDMARKS + CURVE_LANDMARKS


def _as_points(value: Any, what: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{what}: expected points of shape (N, 3), got {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: coordinates must be finite")
    return arr


@dataclass(frozen=True)
class Curve:
    """A landmark curve: control points (ndarray of shape (N, 3), float, mm, RAS), N >= 2, distinct z.

    Evaluated at height z exactly as shared/spec/levels.md says: control points sorted by z, x and y
    interpolated linearly in z, clamped to the end points outside the z-range.

    Examples
    --------
    >>> c = Curve("SCM_posterior_R", [[30, -10, 0], [40, -20, 10]])
    >>> c.at(5.0).tolist(), c.at(99.0).tolist()
    ([35.0, -15.0], [40.0, -20.0])
    """

    name: str
    points: FloatArray

    def __post_init__(self) -> None:
        pts = _as_points(self.points, f"curve '{self.name}'")
        if len(pts) < 2:
            raise ValueError(f"curve '{self.name}' needs at least 2 control points, got {len(pts)}")
        pts = pts[np.argsort(pts[:, 2], kind="stable")]
        if np.any(np.diff(pts[:, 2]) == 0):
            # Points on one axial slice: keep the first of each z (spec: one control point per slice).
            keep = np.concatenate([[True], np.diff(pts[:, 2]) != 0])
            pts = pts[keep]
            if len(pts) < 2:
                raise ValueError(f"curve '{self.name}' needs control points on at least 2 axial planes")
        pts.setflags(write=False)
        object.__setattr__(self, "points", pts)

    def at(self, z: Any) -> FloatArray:
        """(x, y) of the curve at height(s) z: ndarray of shape z.shape + (2,), float, mm, RAS."""
        z = np.asarray(z, dtype=np.float64)
        x = np.interp(z, self.points[:, 2], self.points[:, 0])
        y = np.interp(z, self.points[:, 2], self.points[:, 1])
        return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class Landmarks:
    """Named point landmarks (each ndarray (3,), float, mm, RAS) and named curves.

    ``Landmarks.validate(required)`` checks that every required name is present.
    """

    points: Mapping[str, FloatArray] = field(default_factory=dict)
    curves: Mapping[str, Curve] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pts = {}
        for k, v in self.points.items():
            arr = _as_points(v, f"landmark '{k}'")
            if len(arr) != 1:
                raise ValueError(f"landmark '{k}' must be one point, got {len(arr)}")
            pts[k] = arr[0]
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "curves", dict(self.curves))

    def missing(self, required: Iterable[str] = REQUIRED_LANDMARKS) -> list[str]:
        """Required names that are neither a point nor a curve here."""
        return [n for n in required if n not in self.points and n not in self.curves]

    def point(self, name: str) -> FloatArray:
        return self.points[name]

    def curve(self, name: str) -> Curve:
        return self.curves[name]

    def midline_points(self) -> FloatArray:
        """The three midline points (hyoid, cricoid, manubrium) sorted by z: ndarray of shape (3, 3), mm, RAS."""
        mids = np.array(
            [self.points[n] for n in ("hyoid_body_inferior", "cricoid_arch_inferior", "manubrium_superior")]
        )
        return mids[np.argsort(mids[:, 2], kind="stable")]

    def x_mid(self, z: Any) -> FloatArray:
        """Midline x at height(s) z, from the three midline points, linear in z, clamped."""
        mids = self.midline_points()
        return np.interp(np.asarray(z, dtype=np.float64), mids[:, 2], mids[:, 0])

    def transformed(self, matrix: NDArray[np.float64]) -> Landmarks:
        """Landmarks moved by a 4x4 homogeneous RAS->RAS transform."""
        m = np.asarray(matrix, dtype=np.float64)

        def tf(p: FloatArray) -> FloatArray:
            p2 = np.atleast_2d(p)
            return (p2 @ m[:3, :3].T + m[:3, 3]).reshape(np.shape(p))

        return Landmarks(
            points={k: tf(v) for k, v in self.points.items()},
            curves={k: Curve(k, tf(c.points)) for k, c in self.curves.items()},
        )


def present_labels(data: NDArray[np.integer], chunk: int = 1 << 20) -> NDArray[np.int64]:
    """Sorted label values > 0 present in ``data`` (any shape), found ``chunk`` voxels at a time over the array as it
    lies in memory: only the non-zero voxels are sorted (a node map is mostly background) and no mask or copy as large
    as the map is made.

    Examples
    --------
    >>> present_labels(np.array([[0, 7, 2], [7, 0, 0]], dtype=np.uint8)).tolist()
    [2, 7]
    """
    flat = data.ravel(order="K")
    found = [np.unique(part[part != 0]) for part in (flat[i:i + chunk] for i in range(0, flat.size, chunk))]
    return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class LabelMap:
    """An integer label map and its voxel -> RAS mm affine.

    data : ndarray of shape (I, J, K), integer dtype; 0 = background, k > 0 = MR node k.
    affine : ndarray of shape (4, 4), float; maps voxel indices (i, j, k, 1) to RAS mm; invertible.
    """

    data: NDArray[np.integer]
    affine: FloatArray
    names: Mapping[int, str] = field(default_factory=dict)  # optional segment names (seg.nrrd)

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray) or self.data.ndim != 3:
            raise ValueError(f"label map must be a 3-D array, got shape {np.shape(self.data)}")
        if not np.issubdtype(self.data.dtype, np.integer):
            raise TypeError(f"label map must have an integer type, got {self.data.dtype}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}")
        det = np.linalg.det(aff[:3, :3])
        if not np.isfinite(det) or abs(det) < 1e-9:
            raise ValueError(f"affine is not invertible (determinant {det:.3g})")
        object.__setattr__(self, "affine", aff)

    @property
    def spacing(self) -> FloatArray:
        """Voxel size along each array axis, mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel, mm3."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def labels(self) -> NDArray[np.int64]:
        """Sorted label values present, background excluded (ndarray of shape (L,), int64).

        :func:`present_labels` of the map: only its non-zero voxels are sorted, no mask as large as the map is made.

        Examples
        --------
        >>> data = np.zeros((4, 4, 4), dtype=np.uint8); data[0, 0, 0] = 7; data[3, 1, 2] = 2; data[1, 1, 1] = 7
        >>> LabelMap(data, np.eye(4)).labels().tolist(), LabelMap(data * 0, np.eye(4)).labels().tolist()
        ([2, 7], [])
        """
        return present_labels(self.data)

    def to_ras(self, ijk: Any) -> FloatArray:
        """Voxel indices (N, 3) -> RAS mm (N, 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def to_ijk(self, ras: Any) -> FloatArray:
        """RAS mm (N, 3) -> continuous voxel indices (N, 3)."""
        inv = np.linalg.inv(self.affine)
        ras = np.asarray(ras, dtype=np.float64)
        return ras @ inv[:3, :3].T + inv[:3, 3]


def optional_float(
    value: Any, what: str, lo: float | None = None, hi: float | None = None, positive: bool = False
) -> float | None:
    """An optional number from a value or its text: None for None, NaN or blank text, else a finite float.

    Raises ValueError naming ``what`` and showing the value as given if it is not a finite number, not > 0
    (``positive``) or outside [``lo``, ``hi``].

    Examples
    --------
    >>> optional_float(" ", "cc"), optional_float("0.25", "cc", 0.0, 1.0)
    (None, 0.25)
    >>> optional_float("0", "size_mm", positive=True)
    Traceback (most recent call last):
    ...
    ValueError: size_mm must be > 0, got 0
    """
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and value.strip() == "")
    ):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got '{value}'") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got '{value}'")
    if positive and v <= 0:
        raise ValueError(f"{what} must be > 0, got {value}")
    if lo is not None and hi is not None and not (lo <= v <= hi):
        raise ValueError(f"{what} must lie in [{lo:g}, {hi:g}], got {value}")
    return v


@dataclass(frozen=True)
class PathNode:
    """One lymph node in the pathology report.

    ``cc`` / ``ap`` are rough relative positions within the container (0 = most cranial / anterior);
    ``size_mm`` is the largest diameter of the fixed node. ``extra`` carries every other column through.
    """

    node: str
    container: str
    side: Side
    level: ContainerLevel
    status: Status
    size_mm: float | None = None
    cc: float | None = None
    ap: float | None = None
    fragment_of: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.node).strip():
            raise ValueError("node id must not be empty")
        object.__setattr__(self, "side", Side(self.side))
        if not isinstance(self.level, ContainerLevel):
            object.__setattr__(self, "level", ContainerLevel.parse(str(self.level)))
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "size_mm", optional_float(self.size_mm, "size_mm", positive=True))
        object.__setattr__(self, "cc", optional_float(self.cc, "cc", 0.0, 1.0))
        object.__setattr__(self, "ap", optional_float(self.ap, "ap", 0.0, 1.0))
        frag = self.fragment_of
        if frag is not None and (str(frag).strip() == "" or str(frag) == "nan"):
            frag = None
        object.__setattr__(self, "fragment_of", None if frag is None else str(frag))

    @property
    def positive(self) -> bool:
        return self.status is Status.POSITIVE


@dataclass(frozen=True)
class Container:
    """A specimen container: one side and one (possibly merged) surgical level, with its node counts."""

    container: str
    side: Side
    level: ContainerLevel
    nodes_examined: int
    nodes_positive: int
    largest_deposit_mm: float | None = None
    ene: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", Side(self.side))
        if not isinstance(self.level, ContainerLevel):
            object.__setattr__(self, "level", ContainerLevel.parse(str(self.level)))
        if self.nodes_examined < 0 or self.nodes_positive < 0:
            raise ValueError(f"node counts must be >= 0, got {self.nodes_examined} / {self.nodes_positive}")
        if self.nodes_positive > self.nodes_examined:
            raise ValueError(f"nodes_positive ({self.nodes_positive}) exceeds nodes_examined ({self.nodes_examined})")

    @property
    def positive(self) -> bool:
        return self.nodes_positive > 0


@dataclass(frozen=True)
class Read:
    """One reader's assessment of one MR node (label value)."""

    node: int
    reader: str
    score: float | None
    malignant: bool | None


@dataclass(frozen=True)
class Case:
    """One patient: the MR label map, landmarks, reads and the pathology report.

    ``dissected`` maps each dissected side to its surgical levels; an absent side was not dissected.
    ``containers`` always holds every container (derived from the node rows where no containers file exists).
    ``path_nodes`` is empty for count-only reports.
    """

    case_id: str
    primary_side: str  # "R", "L" or "midline"
    dissected: Mapping[Side, frozenset[SurgicalLevel]]
    label_map: LabelMap
    landmarks: Landmarks | None
    path_nodes: tuple[PathNode, ...]
    containers: tuple[Container, ...]
    reads: tuple[Read, ...] = ()
    root: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    specimen: SpecimenScan | None = None  # optional ex vivo specimen MRI (shared/spec/specimen-imaging.md)
    image_path: Path | None = None  # optional MR image (case.json mri.image): display only, never evidence

    def __post_init__(self) -> None:
        if self.primary_side not in ("R", "L", "midline"):
            raise ValueError(f"primary_side must be R, L or midline, got '{self.primary_side}'")
        ids = [p.node for p in self.path_nodes]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate pathology node id '{dup[0]}'")

    def is_dissected(self, side: Side | str, level: Level | str) -> bool:
        """True where imaging ``level`` on ``side`` lies inside the dissected surgical levels."""
        lv = self.dissected.get(Side(side))
        return lv is not None and len(lv) > 0 and surgical_contains(lv, level)


# --- ex vivo specimen MRI (shared/spec/specimen-imaging.md) -------------------------------------------------
SUTURE_LABELS: tuple[str, ...] = ("cranial", "caudal", "anterior", "posterior", "medial", "lateral")
REQUIRED_SUTURES: tuple[str, ...] = ("cranial", "caudal", "anterior")


@dataclass(frozen=True)
class SpecimenPiece:
    """One scanned specimen piece: its label map (label k = specimen node k) and orientation sutures, both in the
    ex vivo scanner's frame (RAS mm of that scanner, unrelated to the patient).

    ``sutures`` maps a label of :data:`SUTURE_LABELS` (cranial, caudal and anterior always) to ndarray (3,).
    ``containers`` are the pathology containers cut from this piece.
    """

    id: str
    side: Side
    containers: tuple[str, ...]
    label_map: LabelMap
    sutures: Mapping[str, FloatArray]

    def __post_init__(self) -> None:
        if not str(self.id).strip():
            raise ValueError("a specimen image id must not be empty")
        object.__setattr__(self, "side", Side(self.side))
        missing = [s for s in REQUIRED_SUTURES if s not in self.sutures]
        if missing:
            raise ValueError(f"sutures {missing} missing (required: {', '.join(REQUIRED_SUTURES)})")


@dataclass(frozen=True)
class SpecimenLink:
    """The pathologist's statement that pathology node ``path_node`` was cut from specimen node ``specimen_node``
    of image ``image``; ``certainty`` is ``sure`` or ``probable`` (None if not given)."""

    path_node: str
    image: str
    specimen_node: int
    certainty: str | None = None


@dataclass(frozen=True)
class SpecimenScan:
    """The optional ``specimen`` block of a case: scanned pieces and links (validated by the reader)."""

    pieces: tuple[SpecimenPiece, ...]
    links: tuple[SpecimenLink, ...] = ()

    def piece(self, image_id: str) -> SpecimenPiece:
        return next(p for p in self.pieces if p.id == image_id)
