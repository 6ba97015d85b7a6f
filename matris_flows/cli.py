"""``matris-flows``: screen, status, query, export, plot, resume."""

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

_STAGES = (("generate", "generation"), ("relax", "relaxation"), ("hull", "hull"), ("validation", "validation"), ("DFT", "validation"))


class Progress:
    """Per-stage counts and rates of finished jobs, one line per change, on stderr."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.start = time.perf_counter()
        self.done: Counter = Counter()
        self.failed: Counter = Counter()
        self.running: Counter = Counter()

    @staticmethod
    def stage(name: str) -> str | None:
        for key, stage in _STAGES:
            if key in name:
                return stage
        return None  # jobflow's own bookkeeping jobs (store_inputs)

    def __call__(self, event) -> None:
        stage = self.stage(event.name)
        if stage is None:
            return
        if event.status == "submitted":
            self.running[stage] += 1
            return
        self.running[stage] = max(0, self.running[stage] - 1)
        if event.status in ("completed", "resumed", "skipped"):
            self.done[stage] += 1
        elif event.status == "failed":
            self.failed[stage] += 1
        else:
            return
        minutes = max(time.perf_counter() - self.start, 1e-9) / 60
        rate = self.done[stage] / minutes
        print(
            f"[{stage:<10}] {self.done[stage]:>5} jobs done  {self.running[stage]:>3} running  "
            f"{self.failed[stage]:>3} failed  {rate:7.1f} jobs/min  ({event.status}: {event.name})",
            file=self.stream,
            flush=True,
        )


def _summary_table(summary) -> str:
    rows = [
        ("candidates generated", summary.generated),
        ("  rejected by filters", summary.rejected),
        ("  duplicates removed", summary.duplicates),
        ("candidate documents", summary.candidates),
        ("relaxed", summary.relaxed),
        ("failed (relax or hull)", summary.failed),
        ("stable (e_above_hull <= threshold)", summary.stable),
        ("DFT-validated", summary.validated),
        ("jobs failed", "-" if summary.jobs_failed is None else summary.jobs_failed),
        ("wall time", f"{summary.wall_time_s:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"campaign {summary.name}  ({summary.directory})"]
    lines += [f"  {label:<{width}}  {value:>10}" for label, value in rows]
    return "\n".join(lines)


def _query_from_args(args):
    from matris_flows.results import CandidateQuery

    return CandidateQuery(
        chemsys=args.chemsys,
        formula=args.formula,
        elements=args.elements.split(",") if args.elements else None,
        max_e_above_hull=args.max_e_above_hull,
        stable_only=args.stable,
        validated_only=args.validated,
        confirmed_stable_only=args.confirmed_stable,
        sort=args.sort,
        limit=args.limit,
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", help="campaign directory (campaigns/<name>)")
    parser.add_argument("--chemsys", help="exact chemical system, e.g. Fe-Li-O")
    parser.add_argument("--formula", help="reduced formula, e.g. LiFeO2")
    parser.add_argument("--elements", help="comma-separated elements that must all be present")
    parser.add_argument("--max-e-above-hull", type=float, help="eV/atom")
    parser.add_argument("--stable", action="store_true", help="only is_stable candidates")
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

    export = commands.add_parser("export", help="write relaxed structures of selected candidates")
    _add_filters(export)
    export.add_argument("--format", choices=("cif", "poscar", "extxyz", "json"), default="cif")
    export.add_argument("--out", required=True, help="output directory")

    plot = commands.add_parser("plot", help="convex hull of a chemical system with the candidates")
    plot.add_argument("campaign", help="campaign directory")
    plot.add_argument("--chemsys", required=True, help="e.g. Fe-Li-O")
    plot.add_argument("--out", required=True, help="output file (.png or .svg)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``matris-flows`` console script."""
    args = build_parser().parse_args(argv)
    from matris_flows.campaign.spec import SpecError

    try:
        return _run(args)
    except (SpecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command in ("screen", "resume"):
        from matris_flows.campaign.runner import resume_campaign, run_campaign

        progress = Progress()
        if args.command == "screen":
            summary = run_campaign(
                args.spec, args.dir, manager="local" if args.local else "dask", resume=not args.fresh, progress=progress
            )
        else:
            summary = resume_campaign(args.campaign, progress=progress)
        print(_summary_table(summary))
        return 0 if not summary.jobs_failed else 1
    if args.command == "status":
        from matris_flows.campaign.runner import campaign_status

        print(json.dumps(campaign_status(args.campaign), indent=2))
        return 0
    if args.command == "query":
        from matris_flows.campaign.inspect import query_campaign
        from matris_flows.results import format_candidates

        print(format_candidates(query_campaign(args.campaign, _query_from_args(args)), args.format))
        return 0
    if args.command == "export":
        from matris_flows.campaign.inspect import export_campaign

        paths = export_campaign(args.campaign, args.out, args.format, _query_from_args(args))
        print(f"wrote {len(paths)} structures to {args.out}")
        return 0
    if args.command == "plot":
        from matris_flows.campaign.inspect import plot_campaign

        print(f"wrote {plot_campaign(args.campaign, args.chemsys, Path(args.out))}")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
