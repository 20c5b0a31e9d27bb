"""neckmatch.synth: the synthetic cohort (neck phantom, true nodes, MRI, pathology, ground truth).

See docs/synthetic.md for the generative model and each parameter's source.
"""

from neckmatch.synth.cohort import SynthCase, case_seed, generate_case, generate_cohort, simulate_case, write_case
from neckmatch.synth.params import SynthParams

__all__ = ["SynthParams", "SynthCase", "simulate_case", "write_case", "generate_case", "generate_cohort", "case_seed"]
