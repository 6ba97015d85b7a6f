"""Run, resume and inspect campaigns: the Python API behind the ``matris-flows`` CLI.

A campaign lives in one directory:

- ``spec.yaml``: the spec as run, its store config inlined (written atomically);
- ``flow.json``: the Flow as last run, with its job uuids; ``campaign.json``: the manifest
  (name and the uuids of the top-level jobs). A rerun rebuilds the Flow from the spec and
  the current environment and gives its jobs the recorded uuids, so finished jobs are skipped
  and failed ones rerun with rebuilt inputs (:func:`rebuild_flow` says how far this goes);
- ``campaign.log``: INFO and above of every run, with the tracebacks of failed jobs;
- ``failures.json``: the jobs that failed in the latest run, ``[{"uuid", "index", "name",
  "error"}]`` (``error`` is the first line of the exception), rewritten atomically at each
  failure, emptied when a run starts (``status`` reads it);
- ``campaign.lock``: ``<PID>\\n<host>`` of the driver running the campaign;
- with the embedded default store, ``database/``.

The files are readable by their owner only (mode 0600). None holds a secret: the spec and
the Flow name stores by their config (environment variable names, see
:class:`~matris_flows.stores.campaign_store.CampaignStore`). ``flow.json`` is decoded with the class
allowlist of :mod:`matris_flows.core.serialization` (and only its job uuids are taken
from it), so a tampered file cannot make a resume import or run anything.

Only the driver process writes to an embedded store. Heavy imports (jobflow, Dask, the
Makers) happen inside the functions that run a campaign, so ``status`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, Field

from matris_flows.campaign.spec import CampaignSpec, SpecError, check_spec_files, load_spec
from matris_flows.core.serialization import UnsafeJSONError, safe_loads
from matris_flows.stores.backends import (
    connect_job_store,
    make_candidates_store,
    make_collection_store,
    make_job_store,
)
from matris_flows.stores.config import StoreConfig
from matris_flows.stores.health import check_store

if TYPE_CHECKING:
    from jobflow import Flow, JobStore
    from maggma.core import Store

    from matris_flows.execution import JobEvent

logger = logging.getLogger(__name__)

SPEC_FILE, FLOW_FILE, MANIFEST_FILE = "spec.yaml", "flow.json", "campaign.json"
LOG_FILE, LOCK_FILE, FAILURES_FILE = "campaign.log", "campaign.lock", "failures.json"


class CampaignLockedError(RuntimeError):
    """Another live driver runs the campaign in this directory."""


class FailedJob(BaseModel):
    """A job that raised, as recorded in ``failures.json``."""

    uuid: str = Field(description="Job uuid.")
    index: int = Field(1, description="Job index.")
    name: str = Field(description="Job name.")
    error: str = Field(description="First line of the exception (full traceback in campaign.log).")


class CampaignSummary(BaseModel):
    """What a campaign produced."""

    name: str = Field(description="Campaign name.")
    directory: str = Field(description="Campaign directory.")
    generated: int = Field(0, description="Candidates accepted by generation.")
    rejected: int = Field(0, description="Structures filtered out during generation (with reasons).")
    duplicates: int = Field(0, description="Duplicates removed during generation.")
    candidates: int = Field(0, description="Candidate documents written.")
    relaxed: int = Field(0, description="Candidates with a relaxed energy.")
    failed: int = Field(0, description="Candidates that failed relaxation or had no usable hull.")
    stable: int = Field(0, description="Candidates with is_stable.")
    new_stable: int = Field(
        0,
        description="New materials: is_stable_campaign, no known reference phase, no duplicate (query --novel --stable-campaign).",
    )
    validated: int = Field(0, description="Candidates with a DFT validation document.")
    jobs_failed: int | None = Field(None, description="Jobs that raised (their dependants were skipped); not counted by run_locally.")
    failures: list[FailedJob] = Field(default_factory=list, description="The jobs that raised, with their errors.")
    log_file: str | None = Field(None, description="The campaign's log file (tracebacks of failed jobs).")
    wall_time_s: float = Field(0.0, description="Wall time of this run.")


def write_atomic(path: str | Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``.

    A reader (or a crash) never sees a half-written file. The file is readable by its
    owner only (``mode``): campaign files describe the user's stores and jobs.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# -- the lock: one driver per campaign directory -----------------------------------


def lock_holder(directory: str | Path) -> tuple[int, str] | None:
    """``(pid, host)`` recorded in the campaign's lock file, or None when there is none (or it is unreadable)."""
    try:
        pid, _, host = (Path(directory) / LOCK_FILE).read_text().partition("\n")
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def _alive(pid: int, host: str) -> bool:
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
    """Hold ``campaign.lock`` (PID and host) while a driver runs the campaign in ``directory``.

    A second driver gets :class:`CampaignLockedError` naming the first one's PID; a lock
    left by a dead process (same host) is taken over. Best effort on shared file systems.
    """
    directory = Path(directory)
    path = directory / LOCK_FILE
    mine = (os.getpid(), socket.gethostname())
    for _ in range(10):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(directory)
            if holder is None:
                age = time.time() - path.stat().st_mtime if path.exists() else 0.0
                if age < 5:  # being written by a driver that is starting right now
                    raise CampaignLockedError(f"campaign directory {directory} is being opened by another driver") from None
            elif _alive(*holder):
                pid, host = holder
                raise CampaignLockedError(
                    f"campaign directory {directory} is in use by another matris-flows driver "
                    f"(PID {pid} on {host or 'this host'}); wait for it to finish or stop it"
                ) from None
            logger.warning(f"taking over the stale lock of a driver that is gone ({path}: {holder})")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{mine[0]}\n{mine[1]}\n")
        break
    else:
        raise CampaignLockedError(f"could not take the lock {path}")
    try:
        yield
    finally:
        if lock_holder(directory) == mine:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# -- --fresh: empty the campaign's stores ------------------------------------------


def clear_campaign_stores(config: StoreConfig, directory: str | Path) -> None:
    """Empty every collection of the campaign's store (``--fresh``), so no old candidate remains.

    An embedded store inside the campaign directory is deleted with its folder; any other
    store (MongoDB, or an embedded one elsewhere) has every collection of the JobStore
    emptied: outputs, large data, journal, candidates, references. The MP API cache is kept.
    """
    directory = Path(directory)
    if config.type in ("sqlite", "monty"):
        folder = Path(config.path) if Path(config.path).is_absolute() else directory / config.path
        if folder.resolve().is_relative_to(directory.resolve()) and folder.resolve() != directory.resolve():
            shutil.rmtree(folder, ignore_errors=True)
            return
    if config.type == "memory":
        return
    job_store = make_job_store(config, directory)
    job_store.connect()
    try:
        for store in (job_store.docs_store, *job_store.additional_stores.values()):
            store.remove_docs({})
    finally:
        job_store.close()


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


def read_failures(directory: str | Path) -> list[FailedJob]:
    """The jobs that failed in the campaign's latest run (``failures.json``)."""
    path = Path(directory) / FAILURES_FILE
    try:
        return [FailedJob.model_validate(item) for item in json.loads(path.read_text())]
    except (OSError, ValueError):
        return []


class _FailureRecord:
    """``failures.json``, rewritten atomically at each failure so ``status`` sees it while the run goes on."""

    def __init__(self, directory: Path):
        self.path = directory / FAILURES_FILE
        self.jobs: list[FailedJob] = []
        self._write()

    def add(self, event: JobEvent) -> None:
        self.jobs.append(FailedJob(uuid=event.uuid, index=event.index, name=event.name, error=event.error or "unknown error"))
        self._write()

    def _write(self) -> None:
        write_atomic(self.path, json.dumps([job.model_dump() for job in self.jobs], indent=2))


def campaign_dir_for(spec: CampaignSpec, root: str | Path = "campaigns") -> Path:
    """Default directory of a campaign: ``campaigns/<name>``."""
    return Path(root) / spec.name


def _flow_uuids(encoded: dict) -> list[str]:
    """Uuids of an encoded Flow and of its jobs and subflows, depth first (a deterministic order)."""
    uuids = [encoded["uuid"]]
    for item in encoded.get("jobs", []):
        uuids.extend(_flow_uuids(item) if item.get("@class") == "Flow" else [item["uuid"]])
    return uuids


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def rebuild_flow(flow: Flow, recorded: dict) -> Flow:
    """``flow`` (freshly built from the spec) with the uuids of the Flow ``recorded`` in ``flow.json``.

    The Flow is deterministic given the spec except for its uuids, so the k-th uuid of
    one is the k-th of the other; uuids are unique random strings, so replacing them in
    the JSON also rewrites every reference and host list. Finished jobs keep their uuids
    (and are skipped on resume); a failed top-level job reruns with the rebuilt inputs.
    Jobs created while the campaign runs (generation shards, relaxation and hull chunks) are
    restored from the journal records of the jobs that created them. Their inputs are what
    the spec says and nothing the environment decided: data files keep their spec names
    (``package:`` ones resolve inside the job), stores are opened from the store config and
    the environment variables it names, potentials load by name. So a failed chunk reruns
    with the same inputs a rebuilt flow would give it, in the current environment (files
    supplied since, installed modules, environment variables).
    """
    text = flow.to_json()
    try:
        fresh, kept = _flow_uuids(json.loads(text)), _flow_uuids(recorded)
    except (KeyError, TypeError, AttributeError):
        raise SpecError(f"{FLOW_FILE} is not a saved matris-flows Flow; start over with --fresh or use another --dir") from None
    if len(fresh) != len(kept):
        raise SpecError(
            "the campaign's Flow does not have the shape it was started with (another matris-flows version?); "
            "start over with --fresh or use another --dir"
        )
    # Only uuids come from the file, and they are pasted into the JSON: anything but a uuid
    # could inject JSON (an @module to import) into the Flow.
    if bad := next((uuid for uuid in kept if not isinstance(uuid, str) or not _UUID.fullmatch(uuid)), None):
        raise SpecError(f"{FLOW_FILE} holds {str(bad)[:80]!r} where a job uuid belongs; it was not written by matris-flows")
    for new, old in zip(fresh, kept, strict=True):
        text = text.replace(new, old)
    return safe_loads(text, FLOW_FILE)


def _prepare(spec: CampaignSpec, directory: Path, spec_path: Path | None, fresh: bool) -> tuple[Flow, dict]:
    """Write the spec once; build the Flow from it on every run, with the recorded uuids on a rerun."""
    from matris_flows.campaign.flow import ScreeningMaker

    directory.mkdir(parents=True, exist_ok=True)
    flow_file, manifest_file = directory / FLOW_FILE, directory / MANIFEST_FILE
    # The spec as run, with its store config inlined, so a resume needs nothing else.
    resolved = spec.model_copy(update={"store": spec.store_config(spec_path.parent if spec_path else None)})
    if not fresh and flow_file.exists():
        previous = load_spec(directory / SPEC_FILE)
        if previous.model_dump(mode="json") != resolved.model_dump(mode="json"):
            raise SpecError(
                f"campaign directory {str(directory)!r} was started with a different spec; "
                "resume it with its own spec.yaml, start over with --fresh, or use another --dir"
            )
    # from the resolved spec: a store file named relative to the spec is found whatever the working directory
    flow = ScreeningMaker.from_spec(resolved, directory).make()
    if fresh or not flow_file.exists():
        write_atomic(directory / SPEC_FILE, yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
    else:
        try:
            recorded = json.loads(flow_file.read_text())
        except ValueError:
            raise SpecError(f"{flow_file} is not valid JSON; start over with --fresh or use another --dir") from None
        flow = rebuild_flow(flow, recorded)
    stages = ("generation", "campaign_hull", "validation", "publish_validation")
    manifest = {"name": spec.name, **{key: job.uuid for key, job in zip(stages, flow.jobs, strict=False)}}
    write_atomic(flow_file, flow.to_json())
    write_atomic(manifest_file, json.dumps(manifest, indent=2))
    return flow, manifest


def run_campaign(
    spec: CampaignSpec | str | Path,
    directory: str | Path | None = None,
    *,
    manager: str = "dask",
    resume: bool = True,
    progress: Callable[[JobEvent], None] | None = None,
    client=None,
) -> CampaignSummary:
    """Run a campaign end to end and write one document per candidate to the candidates store.

    ``manager`` is ``dask`` (the spec's execution profile, or ``client``) or ``local``
    (jobflow's ``run_locally``, for debugging). With ``resume`` a rerun in the same
    directory skips finished jobs; without it the campaign's stores are emptied and it
    starts over. ``progress`` gets every :class:`~matris_flows.execution.JobEvent`; if it
    has a ``begin(generated, screened)`` method, that is called first with the candidates
    generated and screened (relaxed and assessed) by earlier runs.

    Raises :class:`CampaignLockedError` when another driver runs the same directory.
    """
    spec_path = None
    if not isinstance(spec, CampaignSpec):
        spec_path = Path(spec)
        spec = load_spec(spec_path, check_files=True)
    else:
        check_spec_files(spec)
    directory = Path(directory) if directory is not None else campaign_dir_for(spec)
    store_config = spec.store_config(spec_path.parent if spec_path else None)
    check_store(store_config, directory)  # a store that cannot work leaves no campaign directory behind
    directory.mkdir(parents=True, exist_ok=True)
    with campaign_lock(directory):
        if not resume:
            clear_campaign_stores(store_config, directory)
            for name in (LOG_FILE, FAILURES_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
        with campaign_log(directory) as log_file:
            logger.info(f"campaign {spec.name}: {'resuming' if resume else 'starting'} in {directory} (driver PID {os.getpid()})")
            summary = _run(spec, directory, spec_path, store_config, manager, resume, progress, client)
            summary.log_file = str(log_file)
            for failure in summary.failures:
                logger.error(f"job failed: {failure.name} ({failure.uuid}): {failure.error}")
    return summary


def _run(
    spec: CampaignSpec,
    directory: Path,
    spec_path: Path | None,
    store_config: StoreConfig,
    manager: str,
    resume: bool,
    progress: Callable[[JobEvent], None] | None,
    client,
) -> CampaignSummary:
    from jobflow import run_locally

    from matris_flows.execution import StalledError, open_client, run_on_dask

    flow, _ = _prepare(spec, directory, spec_path, fresh=not resume)
    job_store = connect_job_store(store_config, directory)
    begin = getattr(progress, "begin", None)
    if resume and callable(begin):
        begin(*_screened_so_far(spec.name, job_store))
    failures = _FailureRecord(directory)
    from matris_flows.campaign.failed_chunks import publish_failed_chunk
    from matris_flows.core.publishing import CANDIDATES_STORE_NAME
    from matris_flows.stores.sqlite.errors import DatabaseFileError

    def on_event(event: JobEvent) -> None:
        if event.status == "failed":
            if isinstance(error := sys.exception(), DatabaseFileError):
                # The campaign's own database failed (disk full, damaged file) while the manager stored this
                # job's output or record: every further job would fail alike, so stop the run with that error.
                raise error
            failures.add(event)
            if event.job is not None and CANDIDATES_STORE_NAME in job_store.additional_stores:
                # the chunk's candidates stay visible, marked with why (resume replaces them)
                reason = f"{event.name} failed: {event.error or 'unknown error'} (traceback in {directory / LOG_FILE})"
                publish_failed_chunk(event.job, reason, job_store, job_store.additional_stores[CANDIDATES_STORE_NAME], spec)
        if progress is not None:
            progress(event)

    start = time.perf_counter()
    if manager == "local":
        run_locally(flow, store=job_store, create_folders=False, log=False)
    else:
        # Workers write directly where the store takes concurrent writers (MongoDB), each
        # connecting from the store config and its own environment; else the driver writes.
        direct = partial(connect_job_store, store_config, directory) if store_config.concurrent_writers else False
        options = {"resume": resume, "progress": on_event, "keep_responses": False, "direct_writes": direct,
                   "stall_timeout": spec.execution.stall_timeout, "no_worker_timeout": spec.execution.no_worker_seconds()}
        try:
            if client is not None:
                run_on_dask(flow, job_store, client, **options)
            else:
                with contextlib.ExitStack() as stack:
                    with _workers_ignore_ctrl_c():
                        own_client = stack.enter_context(open_client(spec.execution))
                    run_on_dask(flow, job_store, own_client, **options)
        except UnsafeJSONError as exc:  # a tampered journal record: one line, nothing of it ran
            raise SpecError(f"campaign directory {str(directory)!r}: {exc}") from None
        except StalledError as exc:
            raise StalledError(f"{exc}; `matris-flows resume {directory}` continues") from None
    wall = time.perf_counter() - start

    candidates_store = make_candidates_store(store_config, directory)
    try:
        summary = _collect(spec.name, directory, job_store, candidates_store)
    finally:
        candidates_store.close()
    summary.wall_time_s = wall
    summary.jobs_failed = None if manager == "local" else len(failures.jobs)
    summary.failures = list(failures.jobs)
    return summary


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT while a local cluster starts, so that its worker processes inherit "ignore".

    Ctrl-C in a terminal signals the whole process group, workers included: each would
    print its own KeyboardInterrupt traceback. The driver alone handles it (and closes the
    cluster); a Ctrl-C during these seconds of start-up is lost. Only the main thread may
    change signal handlers: elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _screened_so_far(name: str, job_store: JobStore) -> tuple[int, int]:
    """Candidates generated by finished shards and candidate documents published, before this run."""
    with contextlib.suppress(Exception):  # only for the progress display
        generated = generation_totals(job_store)["n_accepted"]
        # job_failed placeholders are not screened: their rerun counts them
        screened = job_store.additional_stores["candidates"].count({"campaign": name, "thermo_status": {"$ne": "job_failed"}})
        return generated, screened
    return 0, 0


def resume_campaign(directory: str | Path, **kwargs: Any) -> CampaignSummary:
    """Rerun a campaign from its directory: finished jobs are skipped, failed ones rerun with rebuilt inputs."""
    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file():
        raise SpecError(f"{str(directory)!r} is not a campaign directory (it has no {SPEC_FILE})")
    return run_campaign(directory / SPEC_FILE, directory, resume=True, **kwargs)


def _collect(name: str, directory: Path, job_store: JobStore, candidates_store: Store) -> CampaignSummary:
    """Counts of a campaign, read from its stores (candidates are already published by the hull jobs)."""
    with job_store:
        report = generation_totals(job_store)
    from matris_flows.results.query import NOVEL_QUERY

    campaign = {"campaign": name}
    n_candidates = candidates_store.count(campaign)
    return CampaignSummary(
        name=name,
        directory=str(directory),
        generated=report["n_accepted"],
        rejected=report["n_rejected"],
        duplicates=report["n_duplicates"],
        candidates=n_candidates,
        relaxed=candidates_store.count({**campaign, "relaxation.status": {"$in": ["converged", "not_converged"]}}),
        failed=n_candidates - candidates_store.count({**campaign, "thermo_status": "ok"}),
        stable=candidates_store.count({**campaign, "is_stable": True}),
        new_stable=candidates_store.count({"$and": [campaign, {"is_stable_campaign": True}, NOVEL_QUERY]}),
        validated=candidates_store.count({**campaign, "validation": {"$ne": None}}),
    )


def generation_totals(job_store: JobStore) -> dict[str, int]:
    """Generation counts summed over the shard outputs (each shard reports only its own units)."""
    totals = {"n_accepted": 0, "n_rejected": 0, "n_duplicates": 0, "n_shards": 0}
    shards = job_store.docs_store.query(
        criteria={"output.shard_index": {"$exists": True}},
        properties=["output.report.n_accepted", "output.report.n_rejected", "output.report.rejected_counts"],
    )
    for doc in shards:
        report = doc["output"]["report"]
        totals["n_shards"] += 1
        totals["n_accepted"] += report.get("n_accepted", 0)
        totals["n_rejected"] += report.get("n_rejected", 0)
        totals["n_duplicates"] += sum(
            count for reason, count in (report.get("rejected_counts") or {}).items() if reason.startswith("duplicate")
        )
    return totals


def campaign_status(directory: str | Path) -> dict[str, Any]:
    """Jobs finished/expected, failed jobs with their errors and candidate counts of a campaign directory.

    Read-only and light: no jobflow or Dask import, the Flow is read as plain JSON.
    """
    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file():
        raise SpecError(f"{str(directory)!r} is not a campaign directory (it has no {SPEC_FILE})")
    spec = load_spec(directory / SPEC_FILE)
    flow = json.loads((directory / FLOW_FILE).read_text()) if (directory / FLOW_FILE).is_file() else {}
    store_config = spec.store_config(directory)
    docs_store = make_collection_store(store_config, directory, store_config.docs_collection)
    docs_store.connect()
    try:
        outputs = docs_store.query(properties=["name", "uuid", "index"])
        names = Counter(_stage(doc.get("name", "")) for doc in outputs)
        finished = docs_store.count()
    finally:
        docs_store.close()
    candidates_store = make_candidates_store(store_config, directory)
    try:
        n_candidates = candidates_store.count({"campaign": spec.name})
        n_stable = candidates_store.count({"campaign": spec.name, "is_stable": True})
    finally:
        candidates_store.close()
    holder = lock_holder(directory)
    failures = read_failures(directory)
    return {
        "name": spec.name,
        "directory": str(directory),
        "running": holder is not None and _alive(*holder),
        "driver_pid": holder[0] if holder is not None else None,
        "jobs_in_initial_flow": len(flow.get("jobs", [])),
        "jobs_finished": finished,
        "finished_by_stage": dict(names),
        "jobs_failed": len(failures),
        "failed_jobs": [failure.model_dump() for failure in failures],
        "candidates": n_candidates,
        "stable": n_stable,
        "log_file": str(directory / LOG_FILE),
    }


def _stage(job_name: str) -> str:
    for stage in ("campaign hull", "generate", "relax", "hull", "validation", "DFT"):
        if stage in job_name:
            return stage
    return "other"
