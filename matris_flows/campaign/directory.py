"""The campaign directory: its files, the lock that admits one driver, the log and the failure record.

A campaign lives in one directory:

- ``spec.yaml``: the spec as run, its store config inlined (written atomically);
- ``flow.json``: the Flow as last run, with its job uuids; ``campaign.json``: the manifest
  (name and the uuids of the top-level jobs). A rerun rebuilds the Flow from the spec and
  the current environment and gives its jobs the recorded uuids, so finished jobs are skipped
  and failed ones rerun with rebuilt inputs (:func:`~matris_flows.campaign.resume.rebuild_flow`
  says how far this goes);
- ``campaign.log``: INFO and above of every run, with the tracebacks of failed jobs;
- ``failures.json``: the jobs that failed in the latest run, ``[{"uuid", "index", "name",
  "error"}]`` (``error`` is the first line of the exception), rewritten atomically at each
  failure, emptied when a run starts (``status`` reads it);
- ``campaign.lock``: the lock held by the driver running the campaign (:func:`campaign_lock`;
  the empty file stays after the run); ``campaign.driver``: ``<PID>\\n<host>`` of that driver,
  removed when it finishes;
- with the embedded default store, ``database/``.

The files are readable by their owner only (mode 0600). None holds a secret: the spec and
the Flow name stores by their config (environment variable names, see
:class:`~matris_flows.stores.campaign_store.CampaignStore`). ``flow.json`` is decoded with the class
allowlist of :mod:`matris_flows.core.serialization` (and only its job uuids are taken
from it), so a tampered file cannot make a resume import or run anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field

from matris_flows.campaign.spec import CampaignSpec, SpecError, SpecLike, load_spec, spec_and_path

if TYPE_CHECKING:
    from matris_flows.execution import JobEvent
    from matris_flows.stores.config import StoreConfig

logger = logging.getLogger(__name__)

SPEC_FILE, FLOW_FILE, MANIFEST_FILE = "spec.yaml", "flow.json", "campaign.json"
LOG_FILE, LOCK_FILE, DRIVER_FILE, FAILURES_FILE = "campaign.log", "campaign.lock", "campaign.driver", "failures.json"
ACTIVITY_FILE = "activity.json"


def campaign_dir_for(spec: CampaignSpec, root: str | Path = "campaigns") -> Path:
    """Default directory of a campaign: ``campaigns/<name>``."""
    return Path(root) / spec.name


class CampaignStart(NamedTuple):
    """What a run (or a plain-jobflow JobStore) starts from: see :func:`start_campaign_directory`."""

    spec: CampaignSpec
    spec_path: Path | None
    """The file the spec was read from (files it names are relative to it); None for a spec given in Python."""
    directory: Path
    store_config: StoreConfig


def start_campaign_directory(spec: SpecLike, directory: str | Path | None = None, *, check_files: bool = False) -> CampaignStart:
    """Validate ``spec``, reach its store's servers, then create the campaign directory (default ``campaigns/<name>``).

    In that order: a spec or a store that cannot work leaves no campaign directory behind.
    ``check_files`` as for :func:`~matris_flows.campaign.spec.load_spec`.
    """
    from matris_flows.stores.health import check_store

    spec, spec_path = spec_and_path(spec, check_files=check_files)
    directory = Path(directory) if directory is not None else campaign_dir_for(spec)
    store_config = spec.store_config(spec_path.parent if spec_path else None)
    check_store(store_config, directory)
    directory.mkdir(parents=True, exist_ok=True)
    return CampaignStart(spec, spec_path, directory, store_config)


def write_spec(directory: str | Path, spec: CampaignSpec) -> None:
    """Record ``spec`` (its store config inlined by the caller) as the directory's ``spec.yaml``."""
    import yaml

    write_atomic(Path(directory) / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


def recorded_spec_differs(directory: str | Path, spec: CampaignSpec) -> bool:
    """Whether the directory's ``spec.yaml`` holds another spec than ``spec`` (its store config inlined)."""
    return load_spec(Path(directory) / SPEC_FILE).model_dump(mode="json") != spec.model_dump(mode="json")


def campaign_spec_file(directory: str | Path) -> Path:
    """The ``spec.yaml`` of the campaign in ``directory``.

    Raises:
        SpecError: ``directory`` is not a campaign directory (it has no ``spec.yaml``).
    """
    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file():
        raise SpecError(f"{str(directory)!r} is not a campaign directory (it has no {SPEC_FILE})")
    return directory / SPEC_FILE


def write_atomic(path: str | Path, text: str, mode: int = 0o600, durable: bool = True) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    A reader (or a crash) never sees a half-written file. The file is readable by its
    owner only (``mode``): campaign files describe the user's stores and jobs. ``durable=False``
    skips the fsync, for a display hint rewritten at every job event that a crash may lose.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# -- the lock: one driver per campaign directory -----------------------------------


class CampaignLockedError(RuntimeError):
    """Another live driver runs the campaign in this directory."""


def lock_holder(directory: str | Path) -> tuple[int, str] | None:
    """``(pid, host)`` recorded in the campaign's driver file, or None when there is none (or it is unreadable)."""
    try:
        pid, _, host = (Path(directory) / DRIVER_FILE).read_text().partition("\n")
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def driver_alive(pid: int, host: str) -> bool:
    """Whether the driver ``pid`` on ``host`` (as :func:`lock_holder` returns them) still runs."""
    if host and host != socket.gethostname():
        return True  # a driver on another node of a shared file system: cannot tell, assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def campaign_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``campaign.lock`` while a driver runs the campaign in ``directory``; ``campaign.driver`` names the driver.

    The lock is a :class:`filelock.FileLock` (``flock`` on Linux), which the kernel releases
    when its process ends however it ends: a driver killed with SIGKILL leaves nothing that
    blocks a resume, only its ``campaign.driver``, which the next driver takes over. A second
    driver gets :class:`CampaignLockedError` naming the first one's PID (from
    ``campaign.driver``: the lock file itself only carries the lock). Best effort on shared
    file systems (where ``flock`` is missing, filelock falls back to a marker file).
    """
    directory = Path(directory)
    path = directory / DRIVER_FILE
    lock = FileLock(directory / LOCK_FILE, mode=0o644)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        holder = lock_holder(directory)
        # No record, or the record of a driver that is gone: the holder has not written its own yet.
        if holder is None or not driver_alive(*holder):
            raise CampaignLockedError(f"campaign directory {directory} is being opened by another driver") from None
        pid, host = holder
        raise CampaignLockedError(
            f"campaign directory {directory} is in use by another matris-flows driver "
            f"(PID {pid} on {host or 'this host'}); wait for it to finish or stop it"
        ) from None
    try:
        if (holder := lock_holder(directory)) is not None:  # its driver ended without removing it (killed)
            logger.warning(f"taking over the stale lock of a driver that is gone ({path}: {holder})")
        write_atomic(path, f"{os.getpid()}\n{socket.gethostname()}\n", mode=0o644)
        yield
    finally:
        try:
            # before the lock is released: afterwards the file may be the next driver's
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        finally:
            lock.release()


# -- the campaign log and the failure record ---------------------------------------


class _LogFileHandler(logging.FileHandler):
    """``campaign.log``: a line that cannot be written (disk full) is dropped without a traceback on the console.

    The full disk also stops the run with one error line; logging's own report of each
    failed write (a traceback per line, from every thread) would bury it.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if not isinstance(sys.exception(), OSError):
            super().handleError(record)


@contextlib.contextmanager
def campaign_log(directory: str | Path) -> Iterator[Path]:
    """Log INFO and above (the dask manager logs failed jobs' tracebacks at INFO) to ``campaign.log``."""
    path = Path(directory) / LOG_FILE
    os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))  # owner-only, like the other campaign files
    handler = _LogFileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    console = None
    if not root.handlers:  # Python API without logging set up: keep showing warnings as before
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        root.addHandler(console)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        with contextlib.suppress(OSError):  # a full disk: the error that stops the run says so
            handler.close()
        if console is not None:
            root.removeHandler(console)
        root.setLevel(previous_level)


class FailedJob(BaseModel):
    """A job that raised, as recorded in ``failures.json``."""

    uuid: str = Field(description="Job uuid.")
    index: int = Field(1, description="Job index.")
    name: str = Field(description="Job name.")
    error: str = Field(description="First line of the exception (full traceback in campaign.log).")


def read_failures(directory: str | Path) -> list[FailedJob]:
    """The jobs that failed in the campaign's latest run (``failures.json``)."""
    path = Path(directory) / FAILURES_FILE
    try:
        return [FailedJob.model_validate(item) for item in json.loads(path.read_text())]
    except (OSError, ValueError):
        return []


class FailureRecord:
    """``failures.json``, rewritten atomically at each failure so ``status`` sees it while the run goes on."""

    def __init__(self, directory: Path):
        """Start the record of ``directory``'s run empty (the previous run's failures are dropped)."""
        self.path = directory / FAILURES_FILE
        self.jobs: list[FailedJob] = []
        self._write()

    def add(self, event: JobEvent) -> None:
        """Record the failed job of ``event`` and rewrite the file."""
        self.jobs.append(FailedJob(uuid=event.uuid, index=event.index, name=event.name, error=event.error or "unknown error"))
        self._write()

    def _write(self) -> None:
        write_atomic(self.path, json.dumps([job.model_dump() for job in self.jobs], indent=2))


class JobActivity:
    """``activity.json``: how many jobs the running driver has handed to its workers and not yet had back.

    Rewritten (without fsync: it is a display hint) at every job event, so ``serve`` shows the
    jobs in flight while the campaign runs; a run on ``run_locally`` sends no ``submitted`` events.
    """

    def __init__(self, directory: Path):
        """Start the record of ``directory``'s run with nothing in flight."""
        self.path = directory / ACTIVITY_FILE
        self.in_flight: set[tuple[str, int]] = set()
        self._write()

    def __call__(self, event: JobEvent) -> None:
        """Count ``event``'s job in (submitted) or out (completed, failed, skipped)."""
        job = (event.uuid, event.index)
        if event.status == "submitted":
            self.in_flight.add(job)
        elif event.status in ("completed", "failed", "skipped") and job in self.in_flight:
            self.in_flight.discard(job)
        else:
            return
        self._write()

    def close(self) -> None:
        """The run is over: nothing is in flight."""
        self.in_flight.clear()
        self._write()

    def _write(self) -> None:
        try:
            write_atomic(self.path, json.dumps({"in_flight": len(self.in_flight), "pid": os.getpid()}), durable=False)
        except OSError as exc:  # a display hint: a full disk is reported by the store that needs the space, not here
            logger.debug(f"cannot update {self.path}: {exc}")


def read_activity(directory: str | Path) -> int | None:
    """Jobs in flight according to ``activity.json`` (None when there is no readable record)."""
    try:
        return int(json.loads((Path(directory) / ACTIVITY_FILE).read_text())["in_flight"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
