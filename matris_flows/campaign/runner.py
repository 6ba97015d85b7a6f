"""Run and resume campaigns: the Python API behind ``matris-flows screen`` and ``resume``.

A run takes the campaign directory's lock, logs to its ``campaign.log``, builds the Flow
(:mod:`matris_flows.campaign.resume`), executes it on Dask (or ``run_locally``) and counts
what the campaign produced; :mod:`matris_flows.campaign.directory` says what the directory
holds.

Only the driver process writes to an embedded store. Heavy imports (jobflow, Dask, the
Makers) happen inside the functions that run a campaign: importing this module starts none of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from matris_flows.campaign.directory import (
    ACTIVITY_FILE,
    FAILURES_FILE,
    LOG_FILE,
    FailedJob,
    FailureRecord,
    JobActivity,
    campaign_lock,
    campaign_log,
    campaign_spec_file,
    start_campaign_directory,
)
from matris_flows.campaign.resume import prepare_flow
from matris_flows.campaign.spec import CampaignSpec, SpecError, SpecLike
from matris_flows.campaign.status import generation_totals
from matris_flows.core.serialization import UnsafeJSONError
from matris_flows.stores.backends import connect_job_store, make_candidates_store, make_job_store
from matris_flows.stores.config import StoreConfig

if TYPE_CHECKING:
    from jobflow import JobStore
    from maggma.core import Store

    from matris_flows.execution import JobEvent

logger = logging.getLogger(__name__)


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
    second_opinions: int = Field(0, description="Candidates with a consensus record (shortlisted and re-scored).")
    stable_consensus: int = Field(0, description="Candidates with is_stable_consensus (query --stable-consensus).")
    consensus_failed: int = Field(0, description="Shortlisted candidates where some second-opinion model failed (marked partial/failed).")
    validated: int = Field(0, description="Candidates with a DFT validation document.")
    jobs_failed: int | None = Field(None, description="Jobs that raised (their dependants were skipped); not counted by run_locally.")
    failures: list[FailedJob] = Field(default_factory=list, description="The jobs that raised, with their errors.")
    log_file: str | None = Field(None, description="The campaign's log file (tracebacks of failed jobs).")
    wall_time_s: float = Field(0.0, description="Wall time of this run.")


# -- --fresh: empty the campaign's stores ------------------------------------------


def clear_campaign_stores(config: StoreConfig, directory: str | Path) -> None:
    """Empty every collection of the campaign's store (``--fresh``), so no old candidate remains.

    An embedded store inside the campaign directory is deleted with its folder; any other
    store (MongoDB, or an embedded one elsewhere) has every collection of the JobStore
    emptied: outputs, large data, journal, candidates, references. The MP API cache is kept.
    """
    directory = Path(directory)
    if config.type == "sqlite":
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


def run_campaign(
    spec: SpecLike,
    directory: str | Path | None = None,
    *,
    manager: str = "dask",
    resume: bool = True,
    progress: Callable[[JobEvent], None] | None = None,
    client=None,
) -> CampaignSummary:
    """Run a campaign end to end and write one document per candidate to the candidates store.

    What ``matris-flows screen`` runs.

    Args:
        spec: A :class:`CampaignSpec`, a mapping with the YAML file's keys, or the path of a spec file.
        directory: The campaign directory (spec, flow, log, embedded database); default ``campaigns/<name>``.
        manager: ``dask``: on the Dask cluster of the spec's ``execution`` profile (local, SLURM, PBS,
            a scheduler address), or on ``client``; ``local``: jobflow's ``run_locally`` in this
            process (for debugging: no isolation; failed jobs read from jobflow's log).
        resume: Rerun in the same directory, skipping finished jobs (failed ones rerun); False
            empties the campaign's stores and starts over.
        progress: Called with every :class:`~matris_flows.execution.JobEvent`; if it has a
            ``begin(generated, screened)`` method, that is called first with the counts of earlier
            runs. :class:`~matris_flows.campaign.progress.ScreeningProgress` is the CLI's.
        client: A connected ``distributed.Client`` to run on instead of the spec's profile.

    Returns:
        The campaign's counts, with the jobs that failed and the log file.

    Raises:
        SpecError: a spec that is invalid, names missing files, or differs from the one the directory was started with.
        CampaignLockedError: another driver runs the same directory.
        StalledError: no worker and no finished job for ``execution.stall_timeout`` seconds.
    """
    if manager not in ("dask", "local"):
        raise ValueError(f"manager must be 'dask' or 'local', not {manager!r}")
    from matris_flows.core.quiet import silence_library_warnings

    silence_library_warnings()  # the libraries' known noise (torch, jobflow, CHGNet), as the CLI and the workers do
    spec, spec_path, directory, store_config = start_campaign_directory(spec, directory, check_files=True)
    with campaign_lock(directory):
        if not resume:
            clear_campaign_stores(store_config, directory)
            for name in (LOG_FILE, FAILURES_FILE, ACTIVITY_FILE):
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

    from matris_flows.execution import JobEvent, StalledError, open_client, run_on_dask

    flow, _ = prepare_flow(spec, directory, spec_path, fresh=not resume)
    job_store = connect_job_store(store_config, directory)
    begin = getattr(progress, "begin", None)
    if resume and callable(begin):
        begin(*_screened_so_far(spec.name, job_store))
    failures = FailureRecord(directory)
    activity = JobActivity(directory)
    from matris_flows.campaign.failed_chunks import publish_failed_chunk
    from matris_flows.core.publishing import CANDIDATES_STORE_NAME
    from matris_flows.stores.sqlite.errors import DatabaseFileError

    def on_event(event: JobEvent) -> None:
        activity(event)
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
        with _local_failures() as failed:
            responses = run_locally(flow, store=job_store, create_folders=False, log=False)
        for job, _ in flow.iterflow():  # the Flow's own jobs (those it creates while running are not in it)
            if job.uuid not in responses:  # it raised, or a job it needs did (jobflow then skips it)
                error = failed.get(job.name, "skipped: a job it needs failed")
                failures.add(JobEvent(job.uuid, job.index, job.name, "failed", error=error))
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
        finally:
            activity.close()
    wall = time.perf_counter() - start

    candidates_store = make_candidates_store(store_config, directory)
    try:
        summary = _collect(spec.name, directory, job_store, candidates_store)
    finally:
        candidates_store.close()
    summary.wall_time_s = wall
    summary.jobs_failed = len(failures.jobs)
    summary.failures = list(failures.jobs)
    return summary


@contextlib.contextmanager
def _local_failures() -> Iterator[dict[str, str]]:
    """The jobs ``run_locally`` reports as failed, by name: the last line of each one's traceback.

    jobflow tells of a job that raised only in its log (``<name> failed with exception:``, at
    INFO on ``jobflow.managers.local``); this listens there while the flow runs.
    """
    from matris_flows.execution.events import exception_summary

    failed: dict[str, str] = {}
    marker = " failed with exception:\n"

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if marker in message:
                name, _, trace = message.partition(marker)
                failed[name] = exception_summary(trace)

    jobflow_logger = logging.getLogger("jobflow.managers.local")
    listener, level = Listener(logging.INFO), jobflow_logger.level
    jobflow_logger.addHandler(listener)
    jobflow_logger.setLevel(logging.INFO)
    try:
        yield failed
    finally:
        jobflow_logger.removeHandler(listener)
        jobflow_logger.setLevel(level)


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
        generated = generation_totals(job_store.docs_store)["n_accepted"]
        # job_failed placeholders are not screened: their rerun counts them
        screened = job_store.additional_stores["candidates"].count({"campaign": name, "thermo_status": {"$ne": "job_failed"}})
        return generated, screened
    return 0, 0


def resume_campaign(directory: str | Path, **kwargs: Any) -> CampaignSummary:
    """Rerun a campaign from its directory: finished jobs are skipped, failed ones rerun with rebuilt inputs."""
    directory = Path(directory)
    return run_campaign(campaign_spec_file(directory), directory, resume=True, **kwargs)


def _collect(name: str, directory: Path, job_store: JobStore, candidates_store: Store) -> CampaignSummary:
    """Counts of a campaign, read from its stores (candidates are already published by the hull jobs)."""
    with job_store:
        report = generation_totals(job_store.docs_store)
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
        second_opinions=candidates_store.count({**campaign, "consensus": {"$ne": None}}),
        stable_consensus=candidates_store.count({**campaign, "is_stable_consensus": True}),
        consensus_failed=candidates_store.count({**campaign, "consensus.status": {"$in": ["partial", "failed"]}}),
        validated=candidates_store.count({**campaign, "validation": {"$ne": None}}),
    )
