"""Every parameter of the synthetic cohort, with its source, in one dataclass.

Sources are abbreviated: **lyDATA** = shared/data/lydata (``2023-isb-multisite``, ``2021-clb-oropharynx``,
``2023-clb-multisite``), numbers computed by :mod:`neckmatch.synth.priors` (a test recomputes them);
**domain** = shared/docs/domain.md; **anatomy** = typical adult neck geometry (Som 1999 level figures,
standard anatomy texts), stated as a design choice. docs/synthetic.md explains the generative model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SynthParams", "COUNT_PRIORS", "INVOLVEMENT_PRIORS", "COHORT_PRIORS", "IMAGING_LEVELS"]

#: Imaging levels that receive nodes in proportion to lyDATA counts (others get a few, see ``extra_counts``).
IMAGING_LEVELS: tuple[str, ...] = ("IA", "IB", "IIA", "IIB", "III", "IV", "VA", "VB")

#: lyDATA ``total_dissected`` (counts > 0, both sides, three sets): (median, log-normal sigma from the IQR) per
#: imaging level; IIA/IIB and VA/VB split the pooled II / V median by isb's IIa:IIb and Va:Vb count shares.
COUNT_PRIORS: dict[str, tuple[float, float]] = {
    "IA": (2.0, 0.814),
    "IB": (4.0, 0.679),
    "IIA": (5.395, 0.628),
    "IIB": (3.605, 0.628),
    "III": (6.0, 1.193),
    "IV": (5.0, 0.727),
    "VA": (3.612, 0.649),
    "VB": (4.388, 0.649),
}

#: lyDATA ``pathology`` columns: per primary location and side, per coarse level, P(involved | upstream level
#: involved), P(involved | upstream not involved), Beta(1, 1) prior. Upstream: III<-II, IV<-III, V<-II;
#: I and II are roots (both numbers = the marginal).
INVOLVEMENT_PRIORS: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "hypopharynx": {
        "ipsi": {"I": (0.111, 0.111), "II": (0.66, 0.66), "III": (0.424, 0.333), "IV": (0.238, 0.129),
                 "V": (0.185, 0.267)},
        "contra": {"I": (0.25, 0.25), "II": (0.2, 0.2), "III": (0.375, 0.138), "IV": (0.286, 0.033),
                   "V": (0.143, 0.167)},
    },
    "larynx": {
        "ipsi": {"I": (0.125, 0.125), "II": (0.319, 0.319), "III": (0.297, 0.205), "IV": (0.077, 0.034),
                 "V": (0.355, 0.106)},
        "contra": {"I": (0.167, 0.167), "II": (0.106, 0.106), "III": (0.273, 0.098), "IV": (0.091, 0.033),
                   "V": (0.182, 0.092)},
    },
    "oral cavity": {
        "ipsi": {"I": (0.197, 0.197), "II": (0.278, 0.278), "III": (0.226, 0.078), "IV": (0.118, 0.025),
                 "V": (0.121, 0.035)},
        "contra": {"I": (0.135, 0.135), "II": (0.09, 0.09), "III": (0.231, 0.062), "IV": (0.111, 0.065),
                   "V": (0.273, 0.055)},
    },
    "oropharynx": {
        "ipsi": {"I": (0.089, 0.089), "II": (0.682, 0.682), "III": (0.292, 0.211), "IV": (0.2, 0.038),
                 "V": (0.139, 0.123)},
        "contra": {"I": (0.061, 0.061), "II": (0.292, 0.292), "III": (0.184, 0.044), "IV": (0.182, 0.035),
                   "V": (0.08, 0.043)},
    },
}  # fmt: skip

#: lyDATA patient-level frequencies (see priors.cohort_stats).
COHORT_PRIORS: dict[str, Any] = {
    "location_share": {"oropharynx": 0.448, "oral cavity": 0.368, "larynx": 0.127, "hypopharynx": 0.058},
    "midline_fraction": 0.067,
    "bilateral_fraction": 0.428,
    "positive_per_involved_level": 1.779,
}


@dataclass(frozen=True)
class SynthParams:
    """All knobs of the generator. Defaults are the realistic cohort; benchmarks sweep the difficulty knobs.

    Every field's comment names its source (see the module docstring for the abbreviations).
    """

    # --- anatomy (anatomy; patient variation is a design choice) -------------------------------------
    neck_length_sd: float = 0.08  # relative SD of the skull-base..manubrium length (scales every z)
    neck_width_sd: float = 0.08  # relative SD of lateral/AP dimensions (scales x and y)
    asymmetry_sd_mm: float = 2.0  # SD of independent per-side landmark shifts, mm
    tilt_sd_deg: float = 4.0  # SD of head tilt (roll about y) and flexion (pitch about x), degrees
    rotation_sd_deg: float = 5.0  # SD of head rotation about z, degrees
    # --- node counts (lyDATA) ----------------------------------------------------------------------
    count_priors: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(COUNT_PRIORS))
    count_max_factor: float = 3.0  # counts capped at this multiple of the median (placement feasibility)
    extra_counts: dict[str, float] = field(
        default_factory=lambda: {"RP": 0.3, "VI": 1.0, "VII": 0.2, "SC": 0.5}
    )  # Poisson means per side of levels lyDATA does not count (domain: not part of a neck dissection)
    # --- sizes (domain) ----------------------------------------------------------------------------
    benign_short_median_mm: float = 4.0  # domain: most benign nodes 2-6 mm short axis
    benign_short_sigma: float = 0.3  # log-normal sigma -> ~90 % in 2-6 mm
    macro_long_median_mm: float = 14.0  # macrometastases' long axis; with micro: ~40 % of metastatic < 10 mm
    macro_long_sigma: float = 0.45
    micro_fraction: float = 0.25  # domain: 26/67 positive nodes micrometastases in elective dissections
    elongation_median: float = 1.6  # long/short axis ratio (log-normal), long axis mostly cranio-caudal
    elongation_sigma: float = 0.2
    axis_tilt_sd_deg: float = 20.0  # SD of the long axis' angle from cranio-caudal
    min_gap_mm: float = 0.5  # minimum gap between nodes (support-function test)
    cluster_fraction: float = 0.08  # fraction of nodes placed touching a neighbour (merge candidates)
    # --- involvement (lyDATA) ----------------------------------------------------------------------
    involvement_priors: dict[str, Any] = field(default_factory=lambda: dict(INVOLVEMENT_PRIORS))
    cohort_priors: dict[str, Any] = field(default_factory=lambda: dict(COHORT_PRIORS))
    # --- MRI (case-format.md voxel sizes; domain USPIO reading) -------------------------------------
    voxel_min_mm: float = 0.6
    voxel_max_mm: float = 1.4
    anisotropic_fraction: float = 0.3  # slice axis 1.5-2x the in-plane size (e.g. 0.7 x 0.7 x 1.4)
    oblique_sd_deg: float = 4.0  # small oblique rotation of the grid
    visible_short_mm: float = 2.75  # domain: nodes under ~2.5-3 mm mostly not segmented
    visible_width_mm: float = 0.25  # logistic width of the visibility curve
    merge_gap_mm: float = 1.5  # touching nodes (gap below this) may merge into one label
    merge_prob: float = 0.35
    n_readers_max: int = 3  # 1-3 readers
    reader_noise: float = 0.15  # probability a reader's score differs by one step from the latent score
    # domain (Driessen 2022): benign mostly complete signal loss; metastatic mostly >= fat; micro often missed
    score_probs_benign: tuple[float, ...] = (0.80, 0.13, 0.04, 0.02, 0.01)
    score_probs_macro: tuple[float, ...] = (0.02, 0.04, 0.06, 0.30, 0.58)
    score_probs_micro: tuple[float, ...] = (0.50, 0.22, 0.10, 0.10, 0.08)
    malignant_threshold: int = 4  # domain reading rule: residual signal >= fat -> malignant
    mri_image: bool = False  # also write mri/image.nii.gz (synth_image: display only, status-blind)
    study_reads: bool = False  # reader-study reads instead (synth/reads.py): phases, order, T2star vs T1, f_*
    # --- surgery / pathology (domain; lyDATA for bilateral fraction) ---------------------------------
    dissection_types: dict[str, float] = field(
        default_factory=lambda: {"II-IV": 0.45, "I-III": 0.25, "I-V": 0.30}
    )  # selective lateral, supraomohyoid, comprehensive
    surgical_II_III_offset_mm: tuple[float, float] = (-5.0, 5.0)  # (mean, SD): bifurcation vs hyoid (domain)
    surgical_III_IV_offset_mm: tuple[float, float] = (0.0, 6.0)  # omohyoid vs cricoid (domain)
    container_error_rate: float = 0.3  # P(runner-up container) at a level boundary, decays with distance
    container_error_scale_mm: float = 3.0  # e-folding distance of that error
    subcontainer_II_fraction: float = 0.3  # II sent as IIA + IIB
    subcontainer_I_fraction: float = 0.2  # I sent as IA + IB
    merged_III_IV_fraction: float = 0.15  # III and IV in one container "III+IV"
    # ex vivo specimen MRI (shared/spec/specimen-imaging.md; model and families in neckmatch.synth.specimen)
    specimen_fraction: float = 0.0  # fraction of cases with a scanned specimen (a `specimen` block)
    specimen_family: str = "default"  # neckmatch.synth.specimen.FAMILIES: default, flat, wrong-links, ...
    harvest_miss_rate: float = 0.4  # max P(node not harvested) for the smallest nodes (domain: ~40-78 %)
    harvest_miss_size_mm: float = 4.0  # long axis at which the miss probability halves
    fragment_rate: float = 0.04  # nodes bisected and reported as two entries (domain pitfalls)
    shrinkage_mean: float = 0.15  # domain: formalin shrinkage ~10-20 %
    shrinkage_sd: float = 0.05  # per-node spread of the shrinkage
    positions_fraction: float = 0.5  # fraction of cases whose report has cc / ap
    position_noise: float = 0.08  # per-node SD of cc / ap (fraction of the container)
    stretch_sd: float = 0.15  # log-SD of each container's layout stretch
    shift_sd: float = 0.05  # SD of each container's layout shift

    def replace(self, **changes: Any) -> SynthParams:
        """A copy with some fields changed (``params.replace(fragment_rate=0.1)``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)
