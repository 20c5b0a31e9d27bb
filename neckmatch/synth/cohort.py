"""Synthetic cases and cohorts: draw one patient end to end (:func:`simulate_case`), write it in the case format
with its ground truth (:func:`write_case`), and many of them (:func:`generate_cohort`).

Every random choice flows from one seed: case k of a cohort uses ``SeedSequence(seed, spawn_key=(k,))``, so
case k is the same whatever the number of cases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from neckmatch.geometry.levels import assign_levels
from neckmatch.io.atomic import atomic_dir, write_csv, write_text
from neckmatch.synth.anatomy import Phantom, make_phantom
from neckmatch.synth.mri import MRI, make_mri, synth_image
from neckmatch.synth.nodes import TrueNodes, draw_counts, draw_involvement, draw_nodes
from neckmatch.synth.params import SynthParams
from neckmatch.synth.pathology import Pathology, make_pathology
from neckmatch.synth.specimen import SynthSpecimen, make_specimen, specimen_block, specimen_family, write_specimen

__all__ = ["SynthCase", "simulate_case", "write_case", "generate_case", "generate_cohort", "case_seed", "MAX_CASES"]

GROUND_TRUTH_COLUMNS = (
    "true_id", "side", "level", "boundary_mm", "runner_up", "x", "y", "z", "long_mm", "short_mm", "status",
    "micrometastasis", "mr_label", "path_node", "path_fragments", "container",
)  # fmt: skip


@dataclass(frozen=True)
class SynthCase:
    """One simulated patient in memory: anatomy, true nodes, MRI, pathology and the ground-truth table."""

    case_id: str
    primary_side: str
    location: str
    with_positions: bool
    phantom: Phantom
    nodes: TrueNodes
    mri: MRI
    pathology: Pathology
    truth: pd.DataFrame
    specimen: SynthSpecimen | None = None  # ex vivo specimen MRI (params.specimen_fraction)


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of case ``index`` of a cohort seeded ``seed`` (independent of the cohort size)."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


def _truth(nodes: TrueNodes, phantom: Phantom, mri: MRI, path: Pathology) -> pd.DataFrame:
    a = assign_levels(nodes.centres, phantom.landmarks) if len(nodes) else None
    return pd.DataFrame({
        "true_id": [f"T{i + 1:03d}" for i in range(len(nodes))],
        "side": nodes.side, "level": nodes.level,
        "boundary_mm": np.round(a.boundary_mm, 2) if a is not None else [],
        "runner_up": a.runner_up if a is not None else [],
        "x": np.round(nodes.centres[:, 0], 3), "y": np.round(nodes.centres[:, 1], 3),
        "z": np.round(nodes.centres[:, 2], 3),
        "long_mm": np.round(nodes.long_mm, 2), "short_mm": np.round(nodes.short_mm, 2),
        "status": np.where(nodes.positive, "positive", "negative"),
        "micrometastasis": nodes.micro,
        "mr_label": [str(v) if v else "" for v in mri.mr_label],
        "path_node": path.path_node, "path_fragments": path.path_fragments, "container": path.container,
    }, columns=list(GROUND_TRUTH_COLUMNS))  # fmt: skip


def simulate_case(
    case_id: str, seed: int | np.random.SeedSequence, params: SynthParams | None = None, raster: bool = True
) -> SynthCase:
    """Draw one patient in memory. ``raster=False`` skips the label-map rasterisation (fast statistics)."""
    params = params or SynthParams()
    rng = np.random.default_rng(seed)
    share = params.cohort_priors["location_share"]
    names = sorted(share)
    probs = np.array([share[k] for k in names], float)
    location = str(rng.choice(names, p=probs / probs.sum()))
    primary = "midline" if rng.random() < params.cohort_priors["midline_fraction"] else str(rng.choice(["R", "L"]))
    with_positions = bool(rng.random() < params.positions_fraction)
    phantom = make_phantom(rng, params)
    counts = draw_counts(rng, params)
    positives = draw_involvement(rng, params, location, primary)
    nodes = draw_nodes(rng, phantom, params, counts, positives)
    mri = make_mri(rng, params, nodes, raster=raster)
    if params.mri_image and raster:  # deterministic: no draw, the rest of the case is unchanged
        mri = replace(mri, image=synth_image(mri.label_map))
    path = make_pathology(rng, params, phantom, nodes, primary, with_positions)
    truth = _truth(nodes, phantom, mri, path)
    specimen = None
    if params.specimen_fraction > 0 and rng.random() < params.specimen_fraction:  # drawn last: other draws unchanged
        specimen = make_specimen(rng, specimen_family(params.specimen_family), phantom, nodes, path.container,
                                 path.report, path.path_node, path.path_fragments)
    return SynthCase(case_id, primary, location, with_positions, phantom, nodes, mri, path, truth, specimen)


def write_case(case: SynthCase, case_dir: str | Path) -> list[Path]:
    """Write ``case`` in the case format (shared/spec/case-format.md) plus ``ground_truth.csv``, atomically.

    Returns the files written (paths inside ``case_dir``).
    """
    from neckmatch.io.labelmap import write_label_map
    from neckmatch.io.markups import write_markups

    case_dir = Path(case_dir)
    rel = ["case.json", "mri/nodes.nii.gz", "mri/landmarks.mrk.json", "mri/reads.csv", "pathology/nodes.csv",
           "ground_truth.csv"]
    mri_files = {"nodes": rel[1], "landmarks": rel[2], "reads": rel[3]}
    if case.mri.image is not None:
        mri_files["image"] = "mri/image.nii.gz"
    manifest = {
        "format": "neckmatch-case/1", "case_id": case.case_id, "primary_side": case.primary_side,
        "dissected": case.pathology.dissected,
        "mri": mri_files,
        "pathology": {"nodes": rel[4]},
        "synthetic": True, "primary_site": case.location,
    }  # fmt: skip
    if case.specimen is not None:
        manifest["specimen"] = specimen_block(case.specimen)
    with atomic_dir(case_dir) as tmp:
        write_text(json.dumps(manifest, indent=2) + "\n", tmp / rel[0])
        write_label_map(tmp / rel[1], case.mri.label_map)
        write_markups(tmp / rel[2], case.phantom.landmarks)
        write_csv(case.mri.reads, tmp / rel[3])
        write_csv(case.pathology.report, tmp / rel[4])
        write_csv(case.truth, tmp / rel[5])
        if case.specimen is not None:
            rel += write_specimen(case.specimen, tmp)
        if case.mri.image is not None:
            rel.append(_write_image(case.mri.image, case.mri.label_map.affine, tmp / "mri" / "image.nii.gz"))
    return [case_dir / r for r in rel]


def _write_image(data: np.ndarray, affine: np.ndarray, path: Path) -> str:
    """Write the synthetic MR image (int16 NIfTI-1, mm); its path relative to the case folder."""
    import nibabel as nib

    img = nib.Nifti1Image(data, np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return "mri/image.nii.gz"


def generate_case(
    case_id: str, seed: int | np.random.SeedSequence, out_dir: str | Path, params: SynthParams | None = None
) -> list[Path]:
    """Simulate one case and write it to ``out_dir/<case_id>``; returns the files written."""
    return write_case(simulate_case(case_id, seed, params), Path(out_dir) / case_id)


MAX_CASES = 10_000  # a cohort of ~0.5 MB cases; a typo of extra zeros would otherwise fill the disk


def generate_cohort(n_cases: int, seed: int, out_dir: str | Path, params: SynthParams | None = None,
                    force: bool = False) -> list[Path]:
    """Write ``n_cases`` synthetic cases ``SYN001`` ... into ``out_dir`` and ``out_dir/cohort.json``.

    All or nothing, as every output of neckmatch (:func:`neckmatch.io.outdir.write_into`): the cohort is made in
    a staging folder beside ``out_dir`` and moved in when complete; ``out_dir`` must be empty or a cohort
    neckmatch wrote (an earlier one's cases that this one does not have are removed), else ``force`` replaces
    only neckmatch's own files there.

    Returns
    -------
    list of Path
        The case folders, in order.

    Raises
    ------
    InputError
        ``n_cases`` outside 1 to :data:`MAX_CASES`; ``out_dir`` a file, or a folder with other files.
    """
    from neckmatch.errors import InputError
    from neckmatch.io.outdir import write_into

    if not 1 <= int(n_cases) <= MAX_CASES:
        raise InputError("options", "cases", f"must be from 1 to {MAX_CASES}, got {n_cases}")
    params = params or SynthParams()
    out = Path(out_dir)
    names = [f"SYN{k + 1:03d}" for k in range(int(n_cases))]
    with write_into(out, {"command": "synth", "seed": int(seed), "n_cases": int(n_cases)}, force,
                    legacy=_older_cohort) as stage:
        for k, cid in enumerate(names):
            if params.study_reads:
                from neckmatch.synth.reads import with_study_reads

                case = with_study_reads(simulate_case(cid, case_seed(seed, k), params), seed, k, int(n_cases))
                write_case(case, stage / cid)
            else:
                generate_case(cid, case_seed(seed, k), stage, params)
        doc = {"generator": "neckmatch.synth", "seed": int(seed), "n_cases": int(n_cases), "cases": names,
               "params": params.to_dict()}
        write_text(json.dumps(doc, indent=2) + "\n", stage / "cohort.json")
    return [out / cid for cid in names]


def _older_cohort(folder: Path) -> list[str] | None:
    """The files of a cohort an older neckmatch wrote without a marker (``cohort.json`` of ``neckmatch.synth`` and
    the case folders it lists), or None for any other folder."""
    try:
        doc = json.loads((folder / "cohort.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("generator") != "neckmatch.synth" or not isinstance(doc.get("cases"), list):
        return None
    cases = [c for c in doc["cases"] if isinstance(c, str) and Path(c).name == c and c not in ("", ".", "..")]
    return ["cohort.json", *(c for c in cases if (folder / c).is_dir())]
