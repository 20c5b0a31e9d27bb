"""The ``neckmatch`` command line: parse, call one library function, print. No science here.

Every :class:`neckmatch.errors.NeckmatchError` (and bad-input ``ValueError`` raised by readers as
:class:`~neckmatch.errors.InputError`) and every ``OSError`` (a path that cannot be read or written) becomes one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from neckmatch import __version__
from neckmatch.errors import NeckmatchError


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
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


class _Command(_CleanHelp, typer.core.TyperCommand):
    """A command with clean help (see :class:`_CleanHelp`); every command uses it: ``@app.command(cls=_Command)``."""


class _Group(_CleanHelp, typer.core.TyperGroup):
    """The root group with clean help."""


app = typer.Typer(
    cls=_Group,
    name="neckmatch",
    help="Radiology-pathology correlation of neck lymph nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"neckmatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP045
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Radiology-pathology correlation of neck lymph nodes."""


@app.command(cls=_Command)
def inspect(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print what was read from a case: nodes, landmarks, containers, reads."""
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
) -> None:
    """Derive the level landmarks from segmentation masks; write them as 3D Slicer markups to check and correct."""
    from neckmatch.geometry.masks import landmarks_from_masks
    from neckmatch.io.markups import write_markups

    lms = landmarks_from_masks(masks_dir)
    path = write_markups(out, lms)
    console.print(f"wrote {path}: {len(lms.points)} points, {len(lms.curves)} curves", markup=False, soft_wrap=True)


@app.command(cls=_Command)
def match(
    case_dir: Path = typer.Argument(..., help="A case folder (with case.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created or replaced whole; never left half-written)."),
    constraints: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--constraints", metavar="CSV",
        help="People's matching decisions, a CSV with columns mr_node,path_node,action (other columns ignored); "
        "action: must_link (the two are the same node), cannot_link (they are not), unmatched (the one node given, "
        "other id empty, has no counterpart). Constrained decisions get confidence 1.",
    ),
    tolerance: float = typer.Option(3.0, "--tolerance", help="Borderline tolerance of the level assignment, mm."),
    auto_threshold: Optional[float] = typer.Option(  # noqa: UP045
        None, "--auto-threshold", help="Confidence from which a decision is 'auto' (default: the matcher's)."
    ),
) -> None:
    """Match MR nodes to pathology nodes; write levels, matches, truth tables and the specimen."""
    from neckmatch.pipeline import Settings, format_summary, process_case

    settings = Settings(tolerance_mm=tolerance, auto_threshold=auto_threshold,
                        constraints=None if constraints is None else str(constraints))  # fmt: skip
    summary = process_case(case_dir, out, settings)
    console.print(format_summary(summary, out), markup=False, soft_wrap=True)


@app.command(cls=_Command)
def synth(
    cases: int = typer.Option(..., "--cases", help="Number of synthetic cases."),
    seed: int = typer.Option(..., "--seed", help="Seed; case k is the same whatever --cases."),
    out: Path = typer.Option(..., "--out", help="Cohort folder (cases SYN001 ... and cohort.json)."),
    positions_fraction: Optional[float] = typer.Option(  # noqa: UP045
        None, "--positions-fraction", help="Fraction of cases whose pathology report has cc/ap positions."
    ),
) -> None:
    """Write a synthetic cohort in the case format, with ground_truth.csv beside each case."""
    from neckmatch.synth import SynthParams, generate_cohort

    params = SynthParams()
    if positions_fraction is not None:
        if not 0.0 <= positions_fraction <= 1.0:
            from neckmatch.errors import InputError

            raise InputError("options", "--positions-fraction", f"must lie in [0, 1], got {positions_fraction}")
        params = params.replace(positions_fraction=positions_fraction)
    dirs = generate_cohort(cases, seed, out, params)
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
    from neckmatch.io.render_inputs import read_case_results
    from neckmatch.viz.maps import render_maps

    if results is None and (out / "truth_nodes.csv").is_file():
        results = out
    tables, specimen = read_case_results(results) if results is not None else ({}, {})
    paths = render_maps(read_case(case_dir), out, tables, specimen)
    console.print("\n".join(f"wrote {p}" for p in paths.values()), markup=False, soft_wrap=True)


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
    console.print("\n".join(f"wrote {f}" for f in result["files"]), markup=False, soft_wrap=True)


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
    console.print(f"wrote {path}", markup=False, soft_wrap=True)


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
) -> None:
    """Run a whole cohort in parallel (resumable): per-case outputs, study statistics, figures, report.html."""
    from neckmatch.cohort import run_cohort
    from neckmatch.pipeline import Settings
    from neckmatch.progress import cohort_progress, format_cohort_summary

    with cohort_progress(console) as on_progress:
        result = run_cohort(cohort_dir, out, workers=workers, dask=dask, settings=Settings(tolerance_mm=tolerance),
                            maps=maps, force=force, on_progress=on_progress)  # fmt: skip
    console.print(format_cohort_summary(result), markup=False, soft_wrap=True)
    if result.n_failed == len(result.records):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: run the app, turning neckmatch errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except NeckmatchError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # a file or folder that cannot be read or written (permissions, a file in the way ...)
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"error: {where}{exc.strerror or exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors come as ClickException
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
