"""``matris-flows``: screen, status, query, export, plot, resume, serve."""

import argparse
import errno
import json
import logging
import sys
from pathlib import Path


def _summary_table(summary) -> str:
    rows = [
        ("candidates generated", summary.generated),
        ("  rejected by filters", summary.rejected),
        ("  duplicates removed", summary.duplicates),
        ("candidate documents", summary.candidates),
        ("relaxed", summary.relaxed),
        ("failed (relax or hull)", summary.failed),
        ("stable (e_above_hull <= threshold)", summary.stable),
        ("  new (campaign hull, not known, no duplicate)", summary.new_stable),
        *(
            [("second opinions (consensus stage)", summary.second_opinions),
             ("  stable by consensus", summary.stable_consensus),
             ("  a model failed (marked)", summary.consensus_failed)]
            if summary.second_opinions or summary.consensus_failed else []
        ),
        ("DFT-validated", summary.validated),
        ("jobs failed", "-" if summary.jobs_failed is None else summary.jobs_failed),
        ("wall time", f"{summary.wall_time_s:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"campaign {summary.name}  ({summary.directory})"]
    lines += [f"  {label:<{width}}  {value:>10}" for label, value in rows]
    if summary.failures:
        lines.append("failed jobs (their dependants were skipped; fix the cause, then `matris-flows resume`):")
        lines += [f"  {failure.name}: {failure.error}" for failure in summary.failures]
    if summary.log_file:
        lines.append(f"log: {summary.log_file}")
    lines.append(f"browse it: matris-flows serve {summary.directory}  (then open http://127.0.0.1:8050/)")
    return "\n".join(lines)


def _where_value(text: str):
    """A ``--where`` value: JSON scalars (numbers, true, false, null) as such, anything else as a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, str | int | float | bool) else text


def _query_from_args(args):
    from pydantic import ValidationError

    from matris_flows.results.query import CandidateQuery, QueryError, query_error

    where = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise QueryError(f"--where needs KEY=VALUE, got {item!r}")
        where[key.strip()] = _where_value(value.strip())
    try:
        return CandidateQuery(
            chemsys=args.chemsys,
            formula=args.formula,
            elements=args.elements.split(",") if args.elements else None,
            max_e_above_hull=args.max_e_above_hull,
            stable_only=args.stable,
            max_e_above_hull_campaign=args.max_e_above_hull_campaign,
            stable_campaign_only=args.stable_campaign,
            stable_consensus_only=args.stable_consensus,
            max_consensus_spread=args.max_spread,
            novel_only=args.novel,
            source=args.source,
            parent=args.parent,
            where=where or None,
            validated_only=args.validated,
            confirmed_stable_only=args.confirmed_stable,
            sort=args.sort,
            limit=args.limit,
        )
    except ValidationError as exc:
        raise query_error(exc) from None


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", help="campaign directory (campaigns/<name>)")
    parser.add_argument("--chemsys", help="exact chemical system, e.g. Fe-Li-O")
    parser.add_argument("--formula", help="reduced formula, e.g. LiFeO2")
    parser.add_argument("--elements", help="comma-separated elements that must all be present")
    parser.add_argument("--max-e-above-hull", type=float, help="eV/atom above the reference hull")
    parser.add_argument("--stable", action="store_true", help="only is_stable candidates (reference hull: known phases only)")
    parser.add_argument("--max-e-above-hull-campaign", type=float, help="eV/atom above the campaign hull")
    parser.add_argument(
        "--stable-campaign",
        action="store_true",
        help="only is_stable_campaign candidates (hull of the references and all other candidates)",
    )
    parser.add_argument(
        "--stable-consensus",
        action="store_true",
        help="only is_stable_consensus candidates (the consensus stage's rule over the primary and the second opinions)",
    )
    parser.add_argument(
        "--max-spread", type=float, help="eV/atom: only candidates whose models' e_above_hull differ by at most this"
    )
    parser.add_argument(
        "--novel", action="store_true", help="only candidates that are no known reference phase and no duplicate"
    )
    parser.add_argument("--source", help="generation source: substitution, prototype, random_search or file")
    parser.add_argument("--parent", help="parent template id (provenance.parent_id), e.g. mp-19017")
    parser.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="equality filter on a field or dotted path; provenance fields by name (prototype=rocksalt); repeatable",
    )
    parser.add_argument("--validated", action="store_true", help="only DFT-validated candidates")
    parser.add_argument("--confirmed-stable", action="store_true", help="only candidates DFT confirmed stable")
    parser.add_argument("--sort", default="e_above_hull", help="field to sort on; prefix '-' for descending")
    parser.add_argument("--limit", type=int)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="matris-flows", description="High-throughput stability screening with MatRIS.")
    commands = parser.add_subparsers(dest="command", required=True)

    screen = commands.add_parser("screen", help="run a campaign spec end to end")
    screen.add_argument("spec", help="campaign spec (YAML)")
    screen.add_argument("--dir", help="campaign directory (default campaigns/<name>)")
    screen.add_argument("--local", action="store_true", help="run with jobflow's run_locally instead of Dask (debugging)")
    screen.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing directory")

    resume = commands.add_parser("resume", help="rerun a campaign; finished jobs are skipped")
    resume.add_argument("campaign", help="campaign directory")

    status = commands.add_parser("status", help="progress and counts of a campaign")
    status.add_argument("campaign", help="campaign directory")

    query = commands.add_parser("query", help="list screened candidates")
    _add_filters(query)
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument(
        "--columns",
        help="comma-separated columns for table/csv: names (e.g. e_above_hull_campaign, is_stable_campaign, "
        "matches_reference, duplicate_of, source, parent) or dotted paths",
    )

    export = commands.add_parser("export", help="write relaxed structures of selected candidates")
    _add_filters(export)
    export.add_argument("--format", choices=("cif", "poscar", "extxyz", "json"), default="cif")
    export.add_argument("--out", required=True, help="output directory")

    plot = commands.add_parser("plot", help="convex hull of a chemical system with the candidates")
    plot.add_argument("campaign", help="campaign directory")
    plot.add_argument("--chemsys", required=True, help="e.g. Fe-Li-O")
    plot.add_argument("--out", help="picture file (.png, .svg or .pdf)")
    plot.add_argument("--html", help="interactive plotly page (self-contained .html)")
    plot.add_argument(
        "--color-by", choices=("e_above_hull", "campaign", "consensus", "spread"), default="e_above_hull",
        help="colour candidates by their e_above_hull, that on the campaign hull, the consensus value or the models' spread "
        "(consensus stage)",
    )

    serve = commands.add_parser("serve", help="browse a campaign (running or finished) in a local web app")
    serve.add_argument("campaign", help="campaign directory")
    serve.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050; 0 picks a free one)")
    serve.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; on a cluster use an SSH tunnel, see the README)",
    )
    serve.add_argument("--refresh", type=float, default=2.0, help="seconds between progress updates (default 2)")
    return parser


def _one_line(exc: BaseException) -> str:
    """An exception's message as one line (spec errors list one bad key per line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_ENVIRONMENT_ERRNOS = _NO_SPACE | {errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE}
"""OSErrors of the machine, not of the code: no space or quota, no permission, read-only or failing disk, no file handles."""


def _resume(campaign: Path | None) -> str:
    """How to go on: resume the campaign, or (no campaign directory yet) run the command again."""
    return f"`matris-flows resume {campaign}`" if campaign is not None else "run the command again"


def _database_advice(exc, campaign: Path | None) -> str:
    """What to do about a campaign database that failed (see :class:`~matris_flows.stores.sqlite.errors.DatabaseFileError`)."""
    if exc.kind == "corrupt":
        fresh = f"`matris-flows screen {campaign / 'spec.yaml'} --dir {campaign} --fresh`" if campaign else "`screen --fresh`"
        return f"restore it from a backup, or start the campaign over with {fresh}"
    if exc.kind in ("full", "io"):
        return f"free space on its file system (or move the campaign), then {_resume(campaign)}"
    if exc.kind == "unwritten":
        return "the campaign has not written its store yet: wait for its start, or run it"
    if exc.kind == "busy":
        return "another process writes to it: wait for it to finish, or stop it"
    return "check the permissions of the file and of its folder"


def user_error(exc: BaseException, campaign: Path | None = None) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (which keeps its traceback).

    User errors are the user's input (spec, store config, query, paths) and the environment:
    store servers and their credentials, the campaign database (disk full, damaged file),
    the file system (no space, no permission). ``campaign`` is the campaign directory, when
    known, for the advice (``matris-flows resume DIR``).
    """
    import sqlite3

    from matris_flows.campaign.directory import CampaignLockedError
    from matris_flows.campaign.spec import SpecError
    from matris_flows.execution.events import StalledError
    from matris_flows.results.query import QueryError
    from matris_flows.stores.config import StoreConfigError
    from matris_flows.stores.health import unusable_reason
    from matris_flows.stores.sqlite.errors import database_file_error

    if isinstance(exc, SpecError | StoreConfigError | CampaignLockedError | StalledError | QueryError | FileNotFoundError):
        return _one_line(exc)
    if isinstance(exc, sqlite3.Error) and (database := database_file_error(exc)) is not None:
        return f"{_one_line(database)}; {_database_advice(database, campaign)}"
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        advice = f"; free space, then {_resume(campaign)}" if exc.errno in _NO_SPACE else ""
        return f"{exc.strerror or _one_line(exc)}{where}{advice}"
    module = type(exc).__module__
    if module.startswith("pymongo"):
        return f"cannot use the MongoDB store: {unusable_reason(exc)}"
    if module.startswith(("botocore", "boto3")):
        return f"cannot use the S3 store: {unusable_reason(exc)}"
    return None


def _campaign_dir(args) -> Path | None:
    """The campaign directory a command works on, once it holds a campaign (for advice in error messages)."""
    from matris_flows.campaign.directory import SPEC_FILE

    directory = getattr(args, "campaign", None) or getattr(args, "dir", None)
    if directory is None and args.command == "screen":
        try:
            from matris_flows.campaign.directory import campaign_dir_for
            from matris_flows.campaign.spec import load_spec

            directory = campaign_dir_for(load_spec(args.spec))
        except Exception:  # noqa: BLE001 - no spec, no directory: the advice does without
            return None
    if directory is None or not (Path(directory) / SPEC_FILE).is_file():
        return None
    return Path(directory)


def _setup_console() -> None:
    """Warnings and errors on stderr, no library noise; the campaign log gets INFO (see directory.campaign_log)."""
    from matris_flows.core.quiet import quiet_dask_shutdown, silence_library_warnings

    silence_library_warnings()
    quiet_dask_shutdown()
    root = logging.getLogger()
    if not root.handlers:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(console)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``matris-flows`` console script.

    Exit codes: 0 success, 1 a campaign ran but some jobs failed, 2 a user or environment
    error (one ``error: ...`` line on stderr, no traceback), 130 interrupted (Ctrl-C).
    """
    args = build_parser().parse_args(argv)
    _setup_console()
    try:
        return _run(args)
    except KeyboardInterrupt:
        campaign = _campaign_dir(args) if args.command in ("screen", "resume") else None
        print("error: interrupted" + (f"; {_resume(campaign)} continues" if campaign else ""), file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc, _campaign_dir(args))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command in ("screen", "resume"):
        from matris_flows.campaign.progress import ScreeningProgress
        from matris_flows.campaign.runner import resume_campaign, run_campaign

        progress = ScreeningProgress()
        try:
            if args.command == "screen":
                summary = run_campaign(
                    args.spec, args.dir, manager="local" if args.local else "dask", resume=not args.fresh, progress=progress
                )
            else:
                summary = resume_campaign(args.campaign, progress=progress)
        except BaseException:
            progress.close(last_line=False)  # the error line comes next, not a count that stopped
            raise
        progress.close()
        print(_summary_table(summary))
        return 0 if not summary.jobs_failed else 1
    if args.command == "status":
        from matris_flows.campaign.status import campaign_status

        print(json.dumps(campaign_status(args.campaign), indent=2))
        return 0
    if args.command == "query":
        from matris_flows.campaign.reading import query_campaign
        from matris_flows.results.formatting import default_columns, format_candidates

        docs = query_campaign(args.campaign, _query_from_args(args))
        columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else default_columns(docs)
        print(format_candidates(docs, args.format, columns))
        return 0
    if args.command == "export":
        from matris_flows.campaign.reading import export_campaign

        paths = export_campaign(args.campaign, args.out, args.format, _query_from_args(args))
        print(f"wrote {len(paths)} structures to {args.out}")
        return 0
    if args.command == "plot":
        from matris_flows.campaign.reading import plot_campaign

        if args.out is None and args.html is None:
            print("error: plot needs --out, --html or both", file=sys.stderr)
            return 2
        try:
            plot_campaign(args.campaign, args.chemsys, args.out, html=args.html, color_by=args.color_by)
        except ValueError as exc:  # bad chemical system or output: one line, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for written in (args.out, args.html):
            if written is not None:
                print(f"wrote {written}")
        return 0
    if args.command == "serve":
        return _serve(args)
    raise AssertionError(args.command)


def _serve(args) -> int:
    try:
        from matris_flows.web.server import ServeError, serve
    except ModuleNotFoundError as exc:  # dash (the web extra) is optional
        print(f"error: serve needs {exc.name}: pip install 'matris-flows[web]'", file=sys.stderr)
        return 2
    if args.refresh <= 0:
        print("error: --refresh must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        serve(args.campaign, args.host, args.port, args.refresh)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C is how the app is stopped
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
