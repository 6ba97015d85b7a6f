"""What a relaxation job has finished so far, kept on the node, so a rerun after its worker died skips it.

A chunk is the unit Dask schedules and retries: when its worker is killed (a node lost, a
batch worker retired at its walltime, a SIGKILL), the whole job runs again elsewhere or
later. Without a record, every structure of the chunk is relaxed again, and a chunk that
takes longer than the time between two worker losses never finishes. So the job appends
each structure's finished document (a FAILED one included: a culprit that killed the
relaxation process is not run again) to a file named after the job and its settings, and
a rerun of the same job on the same node reads it back. When the job returns the file is
marked done and kept an hour (Dask recomputes a result lost with its worker before the driver
fetched it), then pruned; files of jobs that never came back go after a week.

The files live in a private folder (mode 0700, checked) under the node's temporary
directory, or ``$MATRIS_FLOWS_SCRATCH``; they hold documents as JSON, decoded by their
pydantic models, never unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from matris_flows.relax.schemas import RelaxationDocument, RelaxTrajectory

logger = logging.getLogger(__name__)

SCRATCH_ENV = "MATRIS_FLOWS_SCRATCH"
# A job that returns marks its file done rather than deleting it: Dask recomputes a result
# that was lost with its worker before the driver fetched it, and that rerun reuses the file.
# Done files go after an hour; files of jobs that never came back (an abandoned campaign) after a week.
_DONE_SUFFIX = ".done"
_DONE_KEPT_S = 3600
_STALE_AFTER_S = 7 * 24 * 3600


def progress_directory() -> Path | None:
    """The private folder for progress files, created if needed; None if it is not ours alone."""
    root = Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / f"matris-flows-{os.getuid()}")
    folder = root / "relax-progress"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        info = folder.stat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            logger.warning("%s is not private to this user: relaxation progress is not kept", folder)
            return None
    except OSError as exc:
        logger.warning("no folder for relaxation progress (%s): a rerun chunk starts over", exc)
        return None
    _forget_stale(folder)
    return folder


def _forget_stale(folder: Path) -> None:
    now = time.time()
    for path in folder.glob("*.jsonl*"):
        kept = _DONE_KEPT_S if path.name.endswith(_DONE_SUFFIX) else _STALE_AFTER_S
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > kept:
                path.unlink()


def settings_fingerprint(*parts: Any) -> str:
    """A short hash of what decides a relaxation's result (potential, options, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ChunkProgress:
    """The finished relaxations of one job, in an append-only JSON-lines file."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def for_current_job(cls, fingerprint: str) -> ChunkProgress | None:
        """The progress file of the jobflow job running now (None outside a job or without a private folder)."""
        from jobflow import CURRENT_JOB

        job = CURRENT_JOB.job
        folder = progress_directory() if job is not None else None
        if folder is None:
            return None
        return cls(folder / f"{job.uuid}-{job.index}-{fingerprint}.jsonl")

    def load(self) -> dict[str, tuple[RelaxationDocument, RelaxTrajectory | None]]:
        """Finished relaxations by candidate id; a line cut short by a kill is ignored."""
        done: dict[str, tuple[RelaxationDocument, RelaxTrajectory | None]] = {}
        finished = self.path.with_name(self.path.name + _DONE_SUFFIX)
        if finished.exists() and not self.path.exists():  # the job returned, but its result was lost: recomputed
            with contextlib.suppress(OSError):
                finished.rename(self.path)
        if not self.path.exists():
            return done
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
                document = RelaxationDocument.model_validate(record["document"])
                trajectory = None if record.get("trajectory") is None else RelaxTrajectory.model_validate(record["trajectory"])
            except (ValueError, KeyError, TypeError):
                continue
            done[document.candidate_id] = (document, trajectory)
        if done:
            logger.info("%s: %d relaxations finished by an earlier run of this job are reused", self.path.name, len(done))
        return done

    def record(self, document: RelaxationDocument, trajectory: RelaxTrajectory | None) -> None:
        """Append one finished relaxation (one write: a process killed after it keeps the line)."""
        line = json.dumps(
            {
                "document": document.model_dump(mode="json"),
                "trajectory": None if trajectory is None else trajectory.model_dump(mode="json"),
            }
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Mark the progress done (the job is returning its output); kept an hour for a recomputation, then pruned."""
        with contextlib.suppress(FileNotFoundError):
            self.path.replace(self.path.with_name(self.path.name + _DONE_SUFFIX))
