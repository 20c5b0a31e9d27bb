"""The ``neckmatch`` command line: parse, call one library function, print. No science here.

Every :class:`neckmatch.errors.NeckmatchError` (and bad-input ``ValueError`` raised by readers as
:class:`~neckmatch.errors.InputError`) and every ``OSError`` (a path that cannot be read or written) becomes one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from neckmatch._version import __version__


class _CleanHelp:
    """``--help`` that reads cleanly: flags without typer's ``<bool>`` type, arguments named in capitals
    (``CASE_DIR``) and shown in the usage line without typer's braces (``{case_dir}``)."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for p in self.params:  # type: ignore[attr-defined]
            if isinstance(p, typer.core.TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""
            elif isinstance(p, typer.core.TyperArgument) and p.metavar is None and p.name:
                p.metavar = p.name.upper()

    def get_help_option(self, ctx):  # type: ignore[no-untyped-def]
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option

    def collect_usage_pieces(self, ctx):  # type: ignore[no-untyped-def]
        pieces = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        return [p[1:].replace("}", "", 1) if p.startswith("{") and p.rstrip(".").endswith("}") else p for p in pieces]


class _Command(_CleanHelp, typer.core.TyperCommand):
    """A command with clean help (see :class:`_CleanHelp`); every command uses it: ``@app.command(cls=_Command)``."""


class _Group(_CleanHelp, typer.core.TyperGroup):
    """The root group with clean help."""


app = typer.Typer(
    cls=_Group,
    name="neckmatch",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Radiology-pathology correlation of neck lymph nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _wrote(paths: Iterable[object]) -> None:
    """One ``wrote <path>`` line per file written (plain text: a path is never read as rich markup)."""
    console.print("\n".join(f"wrote {p}" for p in paths), markup=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"neckmatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP045
        None, "-V", "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    allow_external_files: bool = typer.Option(
        False, "--allow-external-files", help="Let case.json name input files outside the case folder."
    ),
) -> None:
    """Radiology-pathology correlation of neck lymph nodes."""
    if allow_external_files:  # read by io.case (also in worker processes, which inherit the environment)
        import os

        os.environ["NECKMATCH_ALLOW_EXTERNAL_FILES"] = "1"


@app.command(cls=_Command)
def inspect(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print what was read from a case: nodes, landmarks, containers, reads, specimen MRI."""
    from neckmatch.io.case import read_case
    from neckmatch.io.summary import case_summary, format_case_summary

    summary = case_summary(read_case(case_dir))
    if as_json:
        import json

        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console.print(format_case_summary(summary), soft_wrap=True)


@app.command(cls=_Command)
def levels(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder; levels.csv is written there atomically."),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Borderline tolerance of the level assignment, mm."),
    level_map: bool = typer.Option(
        True, "--level-map/--no-level-map", help="Also write OUT/level_map.nii.gz and level_map.json (level regions)."
    ),
    meshes: bool = typer.Option(False, "--meshes", help="Also write OUT/level_meshes/<name>.ply per level region."),
) -> None:
    """Assign every MR node its side and som1999 neck level; write OUT/levels.csv and the level map."""
    from neckmatch.pipeline import write_levels

    table = write_levels(case_dir, out, tolerance_mm=tolerance, level_map=level_map, meshes=meshes)
    path = Path(out) / "levels.csv"
    counts = table.groupby(["side", "level"]).size()
    per_level = ", ".join(f"{s}-{lv or 'outside'}: {n}" for (s, lv), n in counts.items())
    console.print(f"wrote {path}: {len(table)} nodes ({int(table['borderline'].sum())} borderline); {per_level}",
                  markup=False, soft_wrap=True)


@app.command(cls=_Command)
def landmarks(
    masks_dir: Path = typer.Argument(..., help="Folder of per-structure masks (TotalSegmentator names or synonyms)."),
    out: Path = typer.Option(..., "--out", help="Markups file to write (3D Slicer .mrk.json, LPS)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file (its corrections are lost)."),
) -> None:
    """Derive the level landmarks from segmentation masks; write them as 3D Slicer markups to check and correct."""
    from neckmatch.errors import InputError
    from neckmatch.geometry.masks import landmarks_from_masks
    from neckmatch.io.markups import write_markups

    if out.is_dir() or (out.exists() and not force):  # the file a user corrected by hand, derived again
        raise InputError(out, "", "is a folder" if out.is_dir() else "exists (landmarks corrected by hand?); "
                         "refusing to replace it: choose another file, or --force")
    lms = landmarks_from_masks(masks_dir)
    path = write_markups(out, lms)
    console.print(f"wrote {path}: {len(lms.points)} points, {len(lms.curves)} curves", markup=False, soft_wrap=True)


@app.command(cls=_Command)
def match(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder: new, empty or an earlier neckmatch output (only "
                             "neckmatch's own files are replaced; never left half-written)."),
    constraints: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--constraints", metavar="CSV",
        help="People's matching decisions, a CSV with columns mr_node,path_node,action (other columns ignored); "
        "action: must_link (the two are the same node), cannot_link (they are not), unmatched (the one node given, "
        "other id empty, has no counterpart). Constrained decisions get confidence 1. A .json file from `neckmatch "
        "review export` (constraints.json) holds the same rows.",
    ),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Borderline tolerance of the level assignment, mm."),
    auto_threshold: Optional[float] = typer.Option(  # noqa: UP045
        None, "--auto-threshold", help="Confidence from which a decision is 'auto' (default: the matcher's)."
    ),
    calibration: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--calibration", metavar="JSON", help="Auto threshold from `neckmatch calibrate` (reviewed decisions)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder neckmatch did not make "
                               "(only the files neckmatch writes are replaced; other files are kept)."),
) -> None:
    """Match MR nodes to pathology nodes; write levels, matches, truth tables and the specimen."""
    from neckmatch.pipeline import Settings, format_summary, process_case

    settings = Settings(tolerance_mm=tolerance, auto_threshold=auto_threshold,
                        constraints=None if constraints is None else str(constraints),
                        calibration=None if calibration is None else str(calibration))  # fmt: skip
    summary = process_case(case_dir, out, settings, force=force)
    console.print(format_summary(summary, out), markup=False, soft_wrap=True)


@app.command(cls=_Command)
def synth(
    cases: int = typer.Option(..., "--cases", help="Number of synthetic cases."),
    seed: int = typer.Option(..., "--seed", help="Seed; case k is the same whatever --cases."),
    out: Path = typer.Option(..., "--out", help="Cohort folder (cases SYN001 ... and cohort.json)."),
    positions_fraction: Optional[float] = typer.Option(  # noqa: UP045
        None, "--positions-fraction", help="Fraction of cases whose pathology report has cc/ap positions."
    ),
    study_reads: bool = typer.Option(False, "--study-reads", help="Reader-study reads: phases, order, 2 modalities."),
    specimen: float = typer.Option(0.0, "--specimen", min=0.0, max=1.0, help="Fraction of cases with specimen MRI."),
    specimen_family: str = typer.Option("default", "--specimen-family", help="Specimen family (docs/synthetic.md)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder (replaces only neckmatch's own "
                               "files)."),
) -> None:
    """Write a synthetic cohort in the case format, with ground_truth.csv beside each case."""
    from neckmatch.synth import SynthParams, generate_cohort
    from neckmatch.synth.specimen import synth_family

    params = SynthParams(study_reads=study_reads)
    if positions_fraction is not None:
        if not 0.0 <= positions_fraction <= 1.0:
            from neckmatch.errors import InputError

            raise InputError("options", "--positions-fraction", f"must lie in [0, 1], got {positions_fraction}")
        params = params.replace(positions_fraction=positions_fraction)
    params = params.replace(specimen_fraction=specimen, specimen_family=synth_family(specimen_family))
    dirs = generate_cohort(cases, seed, out, params, force=force)
    console.print(f"wrote {len(dirs)} synthetic cases to {out}", markup=False, soft_wrap=True)


@app.command(cls=_Command)
def demo(
    out: Path = typer.Option(Path("neckmatch-demo"), "--out", help="Demo folder (cohort/ and results/)."),
    cases: int = typer.Option(6, "--cases", min=1, help="Number of synthetic cases."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),  # noqa: UP045
    maps: bool = typer.Option(True, "--maps/--no-maps", help="Render the per-case 3-D maps."),
) -> None:
    """Make a seeded synthetic demo cohort and run the whole study on it (`neckmatch run`); print the report."""
    from neckmatch.demo import format_demo_summary, run_demo

    summary = run_demo(out, n_cases=cases, workers=workers, maps=maps)
    console.print(format_demo_summary(summary), markup=False, soft_wrap=True)


@app.command(cls=_Command)
def render(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder for the PNG, GLB, .vtm, .seg.nrrd and markups."),
    results: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--results", help="Outputs of `neckmatch match` (default: --out if it holds truth_nodes.csv)."
    ),
) -> None:
    """3-D neck-level maps of a case: anterior and lateral views, GLB, ParaView and 3D Slicer files."""
    from neckmatch.io.case import read_case
    from neckmatch.viz.maps import render_maps

    if results is None and (out / "truth_nodes.csv").is_file():
        results = out
    result = None
    if results is not None:  # never draw another patient's results (or results of older inputs)
        from neckmatch.io.outdir import check_results_for_case
        from neckmatch.io.results import read_results

        check_results_for_case(results, case_dir)
        result = read_results(results)
    case = read_case(case_dir)
    paths = render_maps(case, out, result.tables if result else None, result.specimen if result else None)
    _wrote(paths.values())


class _StatsGroup(_CleanHelp, typer.core.TyperGroup):
    """``stats TRUTH_DIR`` runs the group itself; ``stats lydata FILE`` a subcommand. A subcommand name in the
    TRUTH_DIR position gets an empty placeholder argument first, so click does not read it as TRUTH_DIR;
    otherwise options may follow TRUTH_DIR."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] in self.commands:
            args = ["", *args]
        else:
            ctx.allow_interspersed_args = True  # `stats DIR --out X`: options may follow TRUTH_DIR
        return super().parse_args(ctx, args)

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        params = super().get_params(ctx)
        if ctx.command is not self:  # a subcommand's usage line reads `stats lydata`, not `stats [TRUTH_DIR] lydata`
            params = [p for p in params if not isinstance(p, typer.core.TyperArgument)]
        return params


stats_app = typer.Typer(cls=_StatsGroup, add_completion=False, pretty_exceptions_enable=False,
                        help="Diagnostic-accuracy statistics: from truth tables (stats TRUTH_DIR) or lyDATA.")
app.add_typer(stats_app, name="stats")


@stats_app.callback(invoke_without_command=True)
def stats(
    ctx: typer.Context,
    truth_dir: Optional[Path] = typer.Argument(None, help="Truth tables of one case or a cohort run."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for the statistics tables."),  # noqa: UP045
    seed: int = typer.Option(0, "--seed", help="Seed of the cluster bootstrap."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Cluster-bootstrap resamples."),
) -> None:
    """Accuracy (Wilson, bootstrap, GEE), ROC, agreement and STARD counts from truth_*.csv tables."""
    if ctx.invoked_subcommand is not None:
        return
    if truth_dir is None or out is None:
        import click

        raise click.UsageError("usage: neckmatch stats TRUTH_DIR --out DIR  (or: neckmatch stats lydata FILE ...)")
    from neckmatch.stats.report import run_stats

    result = run_stats(truth_dir, out, n_boot=n_boot, seed=seed)
    _wrote(result["files"])


@stats_app.command("lydata", cls=_Command)
def stats_lydata(
    file: Path = typer.Argument(..., help="A lyDATA CSV (three header rows)."),
    index: str = typer.Option("MRI", "--index", help="Modality under test (top header, e.g. MRI)."),
    reference: str = typer.Option("pathology", "--reference", help="Reference modality."),
    out: Path = typer.Option(..., "--out", help="Output folder for accuracy.csv."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cluster bootstrap."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Cluster-bootstrap resamples."),
) -> None:
    """Level-wise accuracy of one lyDATA modality against another (per level and side, pooled, patient)."""
    from neckmatch.stats.lydata import run_lydata_stats

    path = run_lydata_stats(file, out, index=index, reference=reference, n_boot=n_boot, seed=seed)
    _wrote([path])


@stats_app.command("mrmc", cls=_Command)
def stats_mrmc(
    file: Path = typer.Argument(..., help="A long CSV: one row per (reader, test, case) rating."),
    reader: str = typer.Option("reader", "--reader", help="Reader column."),
    test: str = typer.Option("test", "--test", help="Test (modality, treatment) column."),
    case: str = typer.Option("case", "--case", help="Case column."),
    truth: str = typer.Option("truth", "--truth", help="Truth column (0/1)."),
    score: str = typer.Option("score", "--score", help="Score column (higher = more suspicious)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Cluster column (patient): jackknife by cluster."),  # noqa: UP045
    method: str = typer.Option("jackknife", "--method", help="Covariance: jackknife or delong."),
    out: Path = typer.Option(..., "--out", help="Output folder for mrmc.csv and mrmc_readers.csv."),
) -> None:
    """Multi-reader multi-case ROC: Obuchowski-Rockette with Hillis' df (RRRC, FRRC, RRFC), empirical AUC."""
    from neckmatch.stats.mrmc import run_mrmc

    columns = {"reader": reader, "test": test, "case": case, "truth": truth, "score": score}
    paths = run_mrmc(file, out, columns | ({"cluster": cluster} if cluster else {}), method=method)
    _wrote(paths.values())


score_app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                        help="A points score from the readers' visual features: develop, then validate.")
app.add_typer(score_app, name="score")


@score_app.command("develop", cls=_Command)
def score_develop(
    results: Path = typer.Argument(..., help="A cohort results folder (reader_study/reads.csv) or that reads.csv."),
    phase: str = typer.Option("explorative", "--phase", help="Readings to develop on."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Modality (default: the first)."),  # noqa: UP045
    n_boot: int = typer.Option(100, "--n-boot", help="Bootstrap resamples for the optimism correction."),
    out: Path = typer.Option(..., "--out", help="Output folder for score.json and score_table.csv."),
    force: bool = typer.Option(False, "--force", help="Replace an existing score.json (a frozen score)."),
) -> None:
    """Fit a points score (penalised logistic regression, CV by patient, integer points) on one phase."""
    from neckmatch.stats.reader_study import run_score_develop

    paths = run_score_develop(results, out, phase=phase, modality=modality, n_boot=n_boot, force=force)
    _wrote(paths.values())


@score_app.command("validate", cls=_Command)
def score_validate(
    results: Path = typer.Argument(..., help="A cohort results folder (reader_study/reads.csv) or that reads.csv."),
    score: Path = typer.Option(..., "--score", help="score.json from `neckmatch score develop`."),
    phase: str = typer.Option("pilot", "--phase", help="Readings to validate on."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Cluster-bootstrap resamples."),
    out: Path = typer.Option(..., "--out", help="Output folder for validation.json and calibration.csv."),
) -> None:
    """Apply a developed score to other readings: AUC (clustered CI), calibration, sensitivity / specificity."""
    from neckmatch.stats.reader_study import run_score_validate

    paths = run_score_validate(results, score, out, phase=phase, n_boot=n_boot)
    _wrote(paths.values())


export_app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                         help="Export a results folder for other tools (lyDATA).")
app.add_typer(export_app, name="export")


@export_app.command("lydata", cls=_Command)
def export_lydata(
    results: Path = typer.Argument(..., help="Results of `neckmatch run` (or of `neckmatch match` for one case)."),
    out: Path = typer.Option(..., "--out", help="The lyDATA CSV to write."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="The case folders: primary side and lyDATA fields."),  # noqa: UP045
    patients: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--patients", help="CSV: case_id, primary_side and lyDATA patient/tumour fields (t_stage, n_stage ...)."
    ),
    modality: str = typer.Option("MRI", "--modality", help="lyDATA name of the MR calls (the index test)."),
    reference: str = typer.Option("pathology", "--reference", help="lyDATA name of the pathology reference."),
) -> None:
    """The cohort's level truth tables as a lyDATA CSV (lydata validates it, lymph-model loads it)."""
    from neckmatch.export import export_lydata as export

    path = export(results, out, cohort=cohort, patients=patients, modality=modality, reference=reference)
    _wrote([path])


@app.command(cls=_Command)
def example(
    out: Path = typer.Option(Path("minimal_case"), "--out", help="Folder to copy the example case into (new)."),
) -> None:
    """Copy the small example case shipped with neckmatch (to try `inspect`, `levels`, `match` on)."""
    from neckmatch.data import copy_example_case

    _wrote([copy_example_case(out)])


@app.command(cls=_Command)
def run(
    cohort_dir: Path = typer.Argument(..., help="A folder of case folders (each with case.json)."),
    out: Path = typer.Option(..., "--out", help="Results folder: one folder per case, tables, stats, report.html."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),  # noqa: UP045
    dask: Optional[str] = typer.Option(  # noqa: UP045
        None, "--dask", help="Run on a dask.distributed scheduler at this address, or 'local' for a LocalCluster."
    ),
    maps: bool = typer.Option(True, "--maps/--no-maps", help="Render the per-case 3-D maps."),
    force: bool = typer.Option(False, "--force", help="Redo every case, even those whose output is current."),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Borderline tolerance of the level assignment, mm."),
    calibration: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--calibration", metavar="JSON", help="Auto threshold from `neckmatch calibrate` (reviewed decisions)."
    ),
    constraints: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--constraints", metavar="DIR",
        help="People's decisions per case: DIR/<case_id>/constraints.json (from `neckmatch review export`).",
    ),
) -> None:
    """Run a whole cohort in parallel (resumable): per-case outputs, study statistics, figures, report.html."""
    from neckmatch.cohort import run_cohort
    from neckmatch.pipeline import Settings
    from neckmatch.progress import cohort_progress, format_cohort_summary

    settings = Settings(tolerance_mm=tolerance, calibration=None if calibration is None else str(calibration))
    with cohort_progress(console) as on_progress:
        result = run_cohort(cohort_dir, out, workers=workers, dask=dask, settings=settings,
                            maps=maps, force=force, on_progress=on_progress,
                            constraints_dir=constraints)  # fmt: skip
    console.print(format_cohort_summary(result), markup=False, soft_wrap=True)
    if result.n_failed:  # exit code 1: some or all cases failed (listed above, with why)
        failed = [r.case_id for r in result.records if r.status == "failed"]
        err_console.print(f"error: {len(failed)} of {len(result.records)} cases failed: {', '.join(failed[:10])}"
                          f"{' ...' if len(failed) > 10 else ''} (why: above and in cases.csv)",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command(cls=_Command)
def calibrate(
    results: list[Path] = typer.Argument(..., help="Result folders (matches.csv made without reviewers' constraints)."),
    decisions: list[Path] = typer.Option(  # noqa: B008
        [], "--decisions", metavar="CSV", help="Reviewed decisions (constraints format; a case_id column routes rows; "
        "constraints.csv / decisions.csv beside a matches.csv are read too). Repeatable."),
    target_precision: float = typer.Option(0.97, "--target-precision", help="Required precision of auto decisions."),
    delta: float = typer.Option(0.05, "--delta", help="Allowed probability that the guarantee fails."),
    out: Path = typer.Option(..., "--out", help="Calibration JSON to write (for match/run --calibration)."),
) -> None:
    """Learn the auto threshold from reviewed decisions, with a finite-sample precision guarantee."""
    from neckmatch.calibrate import calibrate_results

    c = calibrate_results(results, decisions, out, target_precision, delta)
    console.print(f"wrote {out}: auto threshold {c.threshold:.4f} ({c.n_above} of {c.n_decisions} reviewed decisions "
                  f"above it, {c.errors_above} wrong; error rate <= {c.upper_error:.3f} with {1 - delta:.0%} "
                  "confidence)", markup=False, soft_wrap=True)


from neckmatch.review.commands import register as _register_review  # noqa: E402

_register_review(app, _Command, _Group)  # users, db upgrade, review export, serve (neckmatch/review/commands.py)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; every outcome becomes an exit code (docs/cli.md), never a traceback.

    0 done; 1 some or all cases failed (``run``) or an internal error; 2 a usage or input error, one line (a usage
    error may add a hint line); 130 interrupted (Ctrl-C). Applies to every command and sub-command, also those
    registered later, because it wraps the whole app.
    """
    from neckmatch.clierrors import run_app

    sys.exit(run_app(app, sys.argv[1:] if argv is None else argv, err_console, __version__))


if __name__ == "__main__":  # pragma: no cover
    main()
