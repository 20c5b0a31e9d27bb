"""neckmatch: radiology-pathology correlation of neck lymph nodes.

Data flows one way, and the subpackages are its stages: files -> a typed case (:mod:`neckmatch.io`) -> levels
and the specimen (:mod:`neckmatch.geometry`) -> matches and truth tables (:mod:`neckmatch.correlation`) ->
study statistics (:mod:`neckmatch.stats`) and maps (:mod:`neckmatch.viz`). All geometry is patient RAS mm.

The names below are the public API: what notebooks, examples and other tools import. Everything else may change.

Examples
--------
>>> import neckmatch as nm
>>> case = nm.read_case(nm.EXAMPLE_CASE)
>>> levels = nm.levels_table(case)                 # one row per MR node: side, level, boundary, runner-up
>>> res = nm.match_case(case, levels)
>>> m = res.matches                                # one row per decision, with confidence and auto / review
>>> set(m["mr_node"].dropna()) == set(levels["node"]), set(m["decision"]) <= {"auto", "review"}
(True, True)
>>> tables = res.truth_tables                      # node / reads / level / side / patient
>>> sorted(tables)
['levels', 'nodes', 'patient', 'reads', 'sides']
>>> acc = nm.truth_accuracy(tables, n_boot=0)      # sensitivity, specificity, ... per unit
>>> sorted(acc["unit"].unique())
['level', 'node', 'patient', 'side']

The whole case in one call, and the same object back from its results folder:

>>> import tempfile
>>> result = nm.run_case(case)
>>> with tempfile.TemporaryDirectory() as out:
...     _ = nm.write_results(result, out)
...     nm.read_results(out).summary == result.summary
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from neckmatch._version import __version__
from neckmatch.data import example_case
from neckmatch.errors import InputError, NeckmatchError

if TYPE_CHECKING:  # the names resolve lazily at run time (see __getattr__), statically here
    from neckmatch.cohort import run_cohort
    from neckmatch.correlation.matching import MatchResult, match_case
    from neckmatch.correlation.truth import truth_tables
    from neckmatch.geometry.levels import assign_levels, levels_table
    from neckmatch.geometry.specimen import reconstruct_specimen
    from neckmatch.io.case import read_case
    from neckmatch.io.results import CaseResult, read_results, write_results
    from neckmatch.model import Case
    from neckmatch.pipeline import Settings, run_case
    from neckmatch.stats.report import run_stats, truth_accuracy
    from neckmatch.synth import generate_cohort
    from neckmatch.viz.maps import render_maps
    from neckmatch.viz.render import render_case

#: The small hand-made case shipped with the package (``examples/minimal_case`` in the source tree).
EXAMPLE_CASE = example_case()

# public name -> module that defines it; imported on first use so that ``import neckmatch`` stays fast
_LAZY: dict[str, str] = {
    "Case": "neckmatch.model",
    "read_case": "neckmatch.io.case",
    "CaseResult": "neckmatch.io.results",
    "read_results": "neckmatch.io.results",
    "write_results": "neckmatch.io.results",
    "assign_levels": "neckmatch.geometry.levels",
    "levels_table": "neckmatch.geometry.levels",
    "reconstruct_specimen": "neckmatch.geometry.specimen",
    "MatchResult": "neckmatch.correlation.matching",
    "match_case": "neckmatch.correlation.matching",
    "truth_tables": "neckmatch.correlation.truth",
    "Settings": "neckmatch.pipeline",
    "run_case": "neckmatch.pipeline",
    "truth_accuracy": "neckmatch.stats.report",
    "run_stats": "neckmatch.stats.report",
    "render_case": "neckmatch.viz.render",
    "render_maps": "neckmatch.viz.maps",
    "run_cohort": "neckmatch.cohort",
    "generate_cohort": "neckmatch.synth",
}

__all__ = [
    "__version__", "EXAMPLE_CASE", "InputError", "NeckmatchError",
    "Case", "read_case", "CaseResult", "read_results", "write_results",
    "assign_levels", "levels_table", "reconstruct_specimen",
    "MatchResult", "match_case", "truth_tables",
    "Settings", "run_case",
    "truth_accuracy", "run_stats",
    "render_maps", "render_case", "run_cohort", "generate_cohort",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neckmatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
