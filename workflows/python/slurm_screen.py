"""Submit a campaign to SLURM from Python: a spec file, its execution replaced by a SLURM profile built here.

The driver runs where this script runs (a login node, or a job of its own: see
``workflows/slurm/submit.sh``); the Dask workers are SLURM jobs started through dask-jobqueue,
replaced when they end (scancel, node failure, walltime)::

    python workflows/python/slurm_screen.py workflows/demo_li_fe_o.yaml --workers 4 --cores 4 \\
        --memory 16GB --walltime 02:00:00 --queue cpu --account my_project \\
        --prologue "source $HOME/matris-flows/.venv/bin/activate"

Interrupted (Ctrl-C, the driver's job ended)? Run it again with the same ``--dir``: it resumes.
"""

from __future__ import annotations

import argparse
import sys

from matris_flows.api import CandidateQuery, ExecutionProfile, ScreeningProgress, candidates_dataframe, load_spec, run_campaign


def slurm_profile(args: argparse.Namespace) -> ExecutionProfile:
    """One SLURM job per Dask worker (see ``ExecutionProfile`` for GPUs, TLS, lifetimes)."""
    return ExecutionProfile(
        kind="slurm", n_workers=args.workers, cores=args.cores, memory=args.memory, walltime=args.walltime,
        queue=args.queue, account=args.account, job_script_prologue=args.prologue or [],
        local_directory=args.local_directory, stall_timeout=args.stall_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="campaign spec file")
    parser.add_argument("--dir", default=None, help="campaign directory (default campaigns/<name>)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="4GB")
    parser.add_argument("--walltime", default="01:00:00")
    parser.add_argument("--queue", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--prologue", action="append", help="a line run before each worker starts (repeatable)")
    parser.add_argument("--local-directory", default=None, help="worker scratch space on the nodes")
    parser.add_argument("--stall-timeout", type=float, default=3600)
    args = parser.parse_args(argv)

    spec = load_spec(args.spec, check_files=True)
    spec = spec.model_copy(update={"execution": slurm_profile(args)})
    summary = run_campaign(spec, args.dir, progress=ScreeningProgress())
    print(f"{summary.candidates} candidates, {summary.stable} stable, {summary.jobs_failed} jobs failed "
          f"in {summary.wall_time_s:.0f} s ({summary.directory})", file=sys.stderr)
    print(candidates_dataframe(summary.directory, CandidateQuery(stable_only=True)).to_string())
    return 1 if summary.jobs_failed else 0


if __name__ == "__main__":
    sys.exit(main())
