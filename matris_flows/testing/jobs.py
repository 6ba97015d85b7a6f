"""Tiny jobs exercising every jobflow Response path, for testing execution managers.

They live in the package (not under ``tests/``) so Dask worker processes can import
them by name when unpickling a job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobflow import Flow, JobConfig, OnMissing, Response, job


@job
def add(a, b):
    return a + b


@job(data="trajectory")
def add_with_trajectory(a, b):
    """Output with a large field saved to the additional store ``data``."""
    return {"sum": a + b, "trajectory": [float(i) for i in range(a + b)]}


@job
def fail(a):
    raise ValueError(f"deliberate failure with input {a}")


@job
def replace_with_job(a):
    """Returning a Job replaces this job with it."""
    return add(a, 10)


@job
def replace_with_flow(a):
    """Replace with a two-job flow whose output stands for this job's output."""
    first = add(a, 1)
    second = add(first.output, 2)
    return Response(replace=Flow([first, second], output=second.output))


@job
def detour_to_add(a):
    return Response(output=a, detour=add(a, 100))


@job
def fibonacci(smaller, larger, stop_point=30):
    """Jobflow's dynamic example: each step adds the next step to the flow."""
    total = smaller + larger
    if total > stop_point:
        return total
    new_job = fibonacci(larger, total, stop_point=stop_point)
    return Response(output=total, addition=new_job)


@job
def stop_children(a):
    return Response(output=a, stop_children=True)


@job
def stop_jobflow(a):
    return Response(output=a, stop_jobflow=True)


@job
def kill_worker(marker: str, value, times: int = 1):
    """Kill the worker process on the first ``times`` attempts (``marker`` counts)."""
    path = Path(marker)
    attempts = path.read_text().split() if path.exists() else []
    if len(attempts) < times:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        os._exit(1)
    return value


@job
def record_call(marker_dir: str, name: str, value, seconds: float = 0.0):
    """Append a line per execution, so a test can count how often a job ran."""
    time.sleep(seconds)
    with open(Path(marker_dir) / f"{name}.calls", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return value


@job
def record_start(marker_dir: str, name: str, value, seconds: float = 0.0):
    """Append ``name`` to ``marker_dir/starts`` when the job starts, so a test can read the order jobs ran in."""
    with open(Path(marker_dir) / "starts", "a") as fh:
        fh.write(f"{name}\n")
    time.sleep(seconds)
    return value


@job
def crash_if_marker(marker: str, value):
    """Fail while ``marker`` exists: simulates a campaign that crashed mid-way."""
    if Path(marker).exists():
        raise RuntimeError("simulated crash")
    return value


@job(config=JobConfig(on_missing_references=OnMissing.NONE))
def count_missing(*values):
    """Runs even when a parent failed: its missing outputs arrive as None."""
    return sum(value is None for value in values)
