"""What the Dask manager reports: one event per change of a job's state, and why a run gave up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobflow import Job


class StalledError(RuntimeError):
    """The cluster had no worker for the no-worker timeout, or no worker and no finished job for
    the stall timeout: the run gave up.

    Finished jobs stay in the store and the journal, so the campaign resumes from there.
    """


@dataclass
class JobEvent:
    """A change of state of one job, passed to the ``progress`` callback."""

    uuid: str
    index: int
    name: str
    status: str  # submitted | completed | failed | skipped | resumed | retrying
    output: Any = field(default=None, repr=False, compare=False)  # completed: the job's output, for progress counts
    error: str | None = None  # failed: the first line of the exception, e.g. "ValueError: ..."
    job: Job | None = field(default=None, repr=False, compare=False)  # failed: the job, for its inputs


def exception_summary(message: str) -> str:
    """The first line of the exception in a formatted traceback (the line after the last frame)."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    for position in range(len(lines) - 1, -1, -1):
        if lines[position].startswith((" ", "\t")):
            return lines[position + 1] if position + 1 < len(lines) else lines[position].strip()
    return lines[0] if lines else "unknown error"
