"""Synthetic reader-study reads (shared/spec/reader-study.md): phases, reading order with a learning effect, two
modalities and visual features whose rates follow the published reading rule (shared/docs/domain.md).

Each node's true appearance on iron-sensitive T2* MRI is drawn from its pathology (Driessen et al. 2022): benign
nodes mostly lose all signal (273/279 fully attenuated nodes benign), metastatic nodes keep signal at or above fat
(15/16), benign nodes with residual signal stay darker than fat (17/19); micrometastases mostly look benign.
Every reader reads every segmented node of every case under every modality (a fully crossed design). A reader
misperceives each feature with a probability that falls with the reader's case number (their learning curve);
on ``T1`` (no iron-sensitive contrast) the signal features are mostly guesses. The score (1-5) and the call
follow the reading rule on the perceived features: complete attenuation 1, residual below fat 2 (3 if focal),
equal to fat 4, brighter 5, one up for an irregular border; malignant when the score is >= 4.

The first ``explorative_fraction`` of a cohort's cases form the explorative phase, the rest the pilot; each
reader reads the explorative cases first, in an order of their own, then the pilot cases.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["StudyReadParams", "SIGNAL", "VS_FAT", "draw_study_reads", "reading_order", "with_study_reads"]

SIGNAL = ("dark", "heterogeneous", "focal_bright", "bright")
VS_FAT = ("darker", "equal", "brighter")
# P(true signal category | benign, micrometastasis, macrometastasis)
_SIGNAL_P = {"benign": (0.93, 0.065, 0.005, 0.0), "micro": (0.6, 0.15, 0.2, 0.05),
             "macro": (0.03, 0.03, 0.3, 0.64)}
# P(signal vs fat | signal category): residual signal of benign nodes mostly below fat, of metastases at / above
_VS_FAT_P = {"dark": (1.0, 0.0, 0.0), "heterogeneous": (0.95, 0.04, 0.01), "focal_bright": (0.05, 0.6, 0.35),
             "bright": (0.0, 0.25, 0.75)}
_IRREGULAR_P = {"benign": 0.05, "micro": 0.1, "macro": 0.35}
_HILUM_P = {"benign": 0.75, "micro": 0.6, "macro": 0.2}


@dataclass(frozen=True)
class StudyReadParams:
    """Knobs of the synthetic reader study (defaults: three readers, T2* against T1, 40 % explorative)."""

    readers: tuple[str, ...] = ("R1", "R2", "R3")
    modalities: tuple[str, ...] = ("T2star", "T1")
    explorative_fraction: float = 0.4
    misread_start: float = 0.35  # P(misperceiving a feature) at a reader's first case
    misread_final: float = 0.04  # ... once experienced
    learning_cases: float = 3.0  # e-folding number of cases of the learning effect
    t1_signal_guess: float = 0.7  # on T1, P(a signal feature is a guess)
    size_sd_mm: float = 0.5  # reader's short-axis measurement error

    def replace(self, **changes: Any) -> StudyReadParams:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def reading_order(seed: int, index: int, n_cases: int, p: StudyReadParams) -> tuple[str, dict[str, int]]:
    """The phase of case ``index`` of ``n_cases`` and each reader's reading number for it (1 = first case).

    Each reader's order is a permutation of their own (seeded by ``seed`` and the reader), explorative cases first.
    """
    n_expl = int(round(p.explorative_fraction * n_cases))
    phase = "explorative" if index < n_expl else "pilot"
    orders = {}
    for r, name in enumerate(p.readers):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(r, 2, 0)))
        perm = np.concatenate([rng.permutation(n_expl), n_expl + rng.permutation(n_cases - n_expl)])
        orders[name] = int(np.flatnonzero(perm == index)[0]) + 1
    return phase, orders


def _shift(rng: np.random.Generator, idx: int, n: int) -> int:
    return int(np.clip(idx + rng.choice([-1, 1]), 0, n - 1))


def _perceive(rng: np.random.Generator, true: dict[str, Any], p_err: float, guess: float) -> dict[str, Any]:
    """One reader's view of one node: each feature misperceived with ``p_err``; signal features guessed with
    ``guess`` (T1)."""
    sig, fat = SIGNAL.index(true["signal"]), VS_FAT.index(true["vs_fat"])
    if rng.random() < guess:
        sig = int(rng.integers(len(SIGNAL)))
        fat = 0 if sig == 0 else int(rng.integers(len(VS_FAT)))
    else:
        sig = _shift(rng, sig, len(SIGNAL)) if rng.random() < p_err else sig
        fat = 0 if sig == 0 else (_shift(rng, fat, len(VS_FAT)) if rng.random() < p_err else fat)
    border = true["border"] if rng.random() >= p_err / 2 else ("smooth" if true["border"] == "irregular" else
                                                               "irregular")
    hilum = true["hilum"] if rng.random() >= p_err / 2 else ("no" if true["hilum"] == "yes" else "yes")
    return {"signal": SIGNAL[sig], "vs_fat": VS_FAT[fat], "border": border, "hilum": hilum}


def _rule_score(view: dict[str, Any]) -> int:
    """The reading rule on perceived features: 1 attenuated, 2 (focal 3) below fat, 4 equal, 5 brighter; +1 for
    an irregular border (at most 5)."""
    if view["signal"] == "dark":
        base = 1
    elif view["vs_fat"] == "darker":
        base = 3 if view["signal"] == "focal_bright" else 2
    else:
        base = 4 if view["vs_fat"] == "equal" else 5
    return min(5, base + (view["border"] == "irregular"))


def _true_features(rng: np.random.Generator, state: str) -> dict[str, Any]:
    signal = SIGNAL[int(rng.choice(len(SIGNAL), p=_SIGNAL_P[state]))]
    return {"signal": signal, "vs_fat": VS_FAT[int(rng.choice(len(VS_FAT), p=_VS_FAT_P[signal]))],
            "border": "irregular" if rng.random() < _IRREGULAR_P[state] else "smooth",
            "hilum": "yes" if rng.random() < _HILUM_P[state] else "no"}


def draw_study_reads(rng: np.random.Generator, positive: NDArray[np.bool_], micro: NDArray[np.bool_],
                     short_mm: NDArray[np.float64], mr_label: NDArray[np.int64], phase: str,
                     orders: dict[str, int], p: StudyReadParams | None = None) -> pd.DataFrame:
    """Reads of one case: every label x reader x modality.

    Parameters
    ----------
    positive, micro, short_mm : ndarray of shape (N,)
        Each true node's status, micrometastasis flag and short axis (mm).
    mr_label : ndarray of shape (N,), int
        Each true node's MR label (0 = not segmented); a label's state is that of its worst node.
    phase : str
        ``explorative`` or ``pilot``.
    orders : dict
        Reader -> the reader's reading number for this case (:func:`reading_order`).

    Returns
    -------
    DataFrame
        ``node, reader, score, malignant, modality, phase, read_order, f_signal, f_signal_vs_fat, f_border,
        f_hilum, f_short_axis_mm``.
    """
    p = p or StudyReadParams()
    rows = []
    for lab in np.unique(mr_label[mr_label > 0]):
        members = mr_label == lab
        macro = bool(np.any(positive[members] & ~micro[members]))
        state = "macro" if macro else "micro" if bool(np.any(positive[members])) else "benign"
        true = _true_features(rng, state)
        size = float(short_mm[members].max())
        for reader in p.readers:
            n = orders[reader]
            p_err = p.misread_final + (p.misread_start - p.misread_final) * np.exp(-(n - 1) / p.learning_cases)
            measured = round(max(size + rng.normal(0, p.size_sd_mm), 0.5), 1)
            for modality in p.modalities:
                view = _perceive(rng, true, p_err, p.t1_signal_guess if modality == "T1" else 0.0)
                score = _rule_score(view)
                rows.append((int(lab), reader, score, "yes" if score >= 4 else "no", modality, phase, n,
                             view["signal"], view["vs_fat"], view["border"], view["hilum"], measured))
    return pd.DataFrame(rows, columns=["node", "reader", "score", "malignant", "modality", "phase", "read_order",
                                       "f_signal", "f_signal_vs_fat", "f_border", "f_hilum", "f_short_axis_mm"])


def with_study_reads(case: Any, seed: int, index: int, n_cases: int, p: StudyReadParams | None = None) -> Any:
    """``case`` (a :class:`neckmatch.synth.cohort.SynthCase`) with its reads replaced by reader-study reads.

    Drawn from their own random stream (``seed``, ``index``), so the rest of the case is unchanged.
    """
    p = p or StudyReadParams()
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), 1)))
    phase, orders = reading_order(seed, index, n_cases, p)
    reads = draw_study_reads(rng, case.nodes.positive, case.nodes.micro, case.nodes.short_mm, case.mri.mr_label,
                             phase, orders, p)
    return dataclasses.replace(case, mri=dataclasses.replace(case.mri, reads=reads))
