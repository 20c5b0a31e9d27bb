"""The stored lyDATA priors must equal what the priors module computes from the real CSVs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neckmatch.synth import priors
from neckmatch.synth.params import COHORT_PRIORS, COUNT_PRIORS, INVOLVEMENT_PRIORS


@pytest.fixture(scope="module")
def frames(shared_data):
    return priors.read_lydata(shared_data / "lydata")


def test_count_priors_match_lydata(frames):
    got = priors.count_stats(frames)
    assert set(got) == set(COUNT_PRIORS)
    for lv, (med, sig) in COUNT_PRIORS.items():
        assert got[lv][0] == pytest.approx(med, abs=0.01), lv
        assert got[lv][1] == pytest.approx(sig, abs=0.01), lv


def test_count_priors_agree_with_domain_notes():
    # domain.md: level II 8-16, III 7-10 (isb/clb), IV 5-10, Ib 3-4, Ia ~2 (medians per side)
    assert 8 <= COUNT_PRIORS["IIA"][0] + COUNT_PRIORS["IIB"][0] <= 16
    assert COUNT_PRIORS["IA"][0] == 2.0
    assert 3 <= COUNT_PRIORS["IB"][0] <= 4


def test_involvement_priors_match_lydata(frames):
    got = priors.involvement_stats(frames)
    assert got == INVOLVEMENT_PRIORS


def test_involvement_is_rarely_skipping(frames):
    # III without II is rarer than III with II, for every site (lyDATA's known progression pattern)
    for site, sides in INVOLVEMENT_PRIORS.items():
        p_if_ii, p_if_not_ii = sides["ipsi"]["III"]
        assert p_if_ii > p_if_not_ii, site


def test_cohort_priors_match_lydata(frames):
    got = priors.cohort_stats(frames)
    assert got["location_share"] == pytest.approx(COHORT_PRIORS["location_share"], abs=0.001)
    for k in ("midline_fraction", "bilateral_fraction", "positive_per_involved_level"):
        assert got[k] == pytest.approx(COHORT_PRIORS[k], abs=0.001), k


def test_primary_location_from_icd_codes():
    cols = pd.MultiIndex.from_tuples([("tumor", "1", "subsite")])
    frame = pd.DataFrame([["C01"], ["C02.1"], ["C32.0"], ["C05.1"], ["C05.0"], ["C13.9"], ["C80"]], columns=cols)
    got = priors.primary_location(frame).tolist()
    assert got[:6] == ["oropharynx", "oral cavity", "larynx", "oropharynx", "oral cavity", "hypopharynx"]
    assert np.isnan(got[6])
