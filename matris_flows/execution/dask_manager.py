"""Run a jobflow Flow on a ``dask.distributed`` cluster, with ``run_locally``'s semantics.

The driver (the process calling :func:`run_on_dask`) owns the flow graph and the
store.  Each Job becomes one Dask task, submitted once every parent of the job in
its flow has finished, including the parents' replacements, detours and additions
(``run_locally`` runs those depth-first before moving on, so children always see
the final output of a replaced job).

Store access.  The embedded store (SQLiteStore) takes one writer, so by default workers never
touch it (:mod:`matris_flows.execution.worker_tasks`: the driver resolves a job's references and
replays the writes the worker recorded).  Jobs with ``config.expose_store`` run on the driver,
because they may read or write anything in the store.  With a store that takes concurrent
writers (MongoDB) ``direct_writes=True`` lets workers run ``Job.run`` against the real store.

Resume.  After writing a job's output the driver journals it (:mod:`matris_flows.execution.journal`);
with ``resume=True`` a job whose journal record and output are present is not run, its
Response rebuilt from the record. Failed jobs are not journaled and run again on resume.

Write-only store access.  A job with ``expose_store=True`` whose
``config.manager_config`` holds :data:`WRITE_ONLY_STORE` (``{"store_access": "write"}``)
only writes to the store (e.g. publishes documents to an additional store) and never
reads it: it runs on a worker like any other job, its writes are recorded and replayed
by the driver, or made directly with ``direct_writes``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Job, JobStore, Response
from jobflow.core.reference import OnMissing
from maggma.stores import MemoryStore
from monty.json import MontyEncoder

from matris_flows.core.publishing import WRITE_ONLY_STORE
from matris_flows.execution.events import JobEvent, StalledError, exception_summary
from matris_flows.execution.journal import resumed_response, write_journal
from matris_flows.execution.kill_points import kill_point
from matris_flows.execution.worker_tasks import (
    RecentOutputs,
    StoreSpec,
    WorkerResult,
    execute_job,
    execute_job_direct,
    reset_current_job,
    resolve_inputs,
)
from matris_flows.stores.config import JOURNAL_STORE_NAME

if TYPE_CHECKING:
    from distributed import Client, Future
    from maggma.core import Store

logger = logging.getLogger(__name__)

_INFRASTRUCTURE_ERRORS = ("KilledWorker", "CancelledError", "FutureCancelledError")

def writes_only(job: Job) -> bool:
    """Whether ``job`` was declared to only write to the store it is exposed to."""
    return job.config.expose_store and job.config.manager_config.get("store_access") == WRITE_ONLY_STORE["store_access"]


class _FlowRun:
    """One ``run_locally._run(flow)``: start jobs as their parents finish."""

    def __init__(self, runner: _DaskRunner, flow: Flow, on_done: Callable[[bool], None]):
        self.runner = runner
        self.on_done = on_done
        # iterflow checks the graph is acyclic and gives the parents run_locally uses
        self.order = list(flow.iterflow())
        self.waiting_on = {job.uuid: set(parents) for job, parents in self.order}
        self.children: dict[str, list[tuple[Job, list[str]]]] = defaultdict(list)
        for job, parents in self.order:
            for parent in set(parents):
                self.children[parent].append((job, parents))
        self.n_finished = 0
        self.bad = False
        self.finished = False

    def start(self):
        if not self.order:
            self.finished = True
            self.on_done(True)
            return
        for job, parents in self.order:
            if not self.waiting_on[job.uuid]:
                self._start(job, parents)

    def _start(self, job, parents, urgent: bool = False):
        run = _JobRun(self.runner, job, parents, self._job_finished, urgent)
        self.runner.schedule(run.start)

    def _job_finished(self, job: Job, response: Response | None, stopped: bool):
        if self.finished:
            return
        if stopped:
            self.finished = True
            self.on_done(False)
            return
        self.bad = self.bad or response is None
        self.n_finished += 1
        for child, parents in self.children.get(job.uuid, ()):
            self.waiting_on[child.uuid].discard(job.uuid)
            if not self.waiting_on[child.uuid]:
                self._start(child, parents, urgent=True)
        if self.n_finished == len(self.order):
            self.finished = True
            self.on_done(not self.bad)


class _JobRun:
    """One ``run_locally._run_job(job, parents)``, split at the Dask task boundary."""

    def __init__(self, runner: _DaskRunner, job: Job, parents, on_done, urgent: bool = False):
        self.runner = runner
        # a child of a job that just finished goes ahead of fresh fan-out work, so that a
        # chunk's hull (and its published candidates) follows its relaxation
        self.urgent = urgent
        self.job = job
        self.parents = set(parents)
        self.on_done = on_done
        self.attempts = 0
        self.response: Response | None = None
        self.diversions: deque[Flow] = deque()
        self.diversions_ok = True

    def finish(self, response, stopped):
        self.on_done(self.job, response, stopped)

    def start(self):
        runner, job = self.runner, self.job
        if runner.stop_jobflow:
            self.finish(None, True)
            return
        if self.parents & runner.stopped_parents:
            logger.info(
                f"{job.name} is a child of a job with stop_children=True, skipping..."
            )
            runner.stopped_parents.add(job.uuid)
            runner.emit(job, "skipped")
            self.finish(None, False)
            return
        if (
            self.parents & runner.errored
            and job.config.on_missing_references == OnMissing.ERROR
        ):
            runner.errored.add(job.uuid)
            runner.emit(job, "skipped")
            self.finish(None, False)
            return
        if runner.resume:
            response = runner.resumed_response(job)
            if response is not None:
                runner.emit(job, "resumed")
                self.handle_response(response, journal=False)
                return
        runner.submit(self)

    def handle_failure(self, message: str):
        logger.info(f"{self.job.name} failed with exception:\n{message}")
        self.runner.errored.add(self.job.uuid)
        self.runner.emit(self.job, "failed", error=exception_summary(message))
        if self.runner.raise_immediately:
            raise RuntimeError(f"{self.job.name} failed:\n{message}")
        self.finish(None, False)

    def handle_response(self, response: Response, journal: bool = True, timeline: dict[str, Any] | None = None):
        runner, job = self.runner, self.job
        if runner.keep_responses:
            runner.responses[job.uuid][job.index] = response
        if journal:
            runner.write_journal(job, response, timeline)
            runner.emit(job, "completed", output=response.output)

        if response.stored_data is not None:
            logger.warning("Response.stored_data is not supported with the Dask manager.")
        if response.stop_children:
            runner.stopped_parents.add(job.uuid)
        if response.stop_jobflow:
            runner.stop()
            self.finish(None, True)
            return

        if not runner.keep_responses:
            response.output = None  # stored already; holding it until the diversions end grows with the campaign
        self.response = response
        # run_locally order: replacement first, then detour, then addition, each
        # run to completion before the next
        for diversion in (response.replace, response.detour, response.addition):
            if diversion is not None:
                self.diversions.append(diversion)
        self._next_diversion()

    def _next_diversion(self):
        if not self.diversions:
            if not self.diversions_ok:
                # Unlike run_locally, a job whose replacement failed counts as errored: its output was
                # never stored, so children that need it are skipped, not failed with "Could not resolve
                # reference" (one failure reported, not a cascade); resume reruns the failed work.
                self.runner.errored.add(self.job.uuid)
            self.finish(self.response if self.diversions_ok else None, False)
            return
        diversion = self.diversions.popleft()
        _FlowRun(self.runner, diversion, self._diversion_done).start()

    def _diversion_done(self, ok: bool):
        if self.runner.stop_jobflow:
            # run_locally: the outer _run sees stop_jobflow at its next job
            self.finish(None, True)
            return
        self.diversions_ok = self.diversions_ok and ok
        self._next_diversion()


class _DaskRunner:
    def __init__(
        self,
        store: JobStore,
        client: Client,
        journal: Store,
        *,
        resume: bool,
        raise_immediately: bool,
        direct_writes: bool | Callable[[], JobStore],
        worker_failure_retries: int,
        progress: Callable[[JobEvent], None] | None,
        keep_responses: bool = True,
        max_in_flight: int | None = None,
        stall_timeout: float | None = None,
        no_worker_timeout: float | None = None,
    ):
        self.store = store
        self.stall_timeout = stall_timeout
        self.no_worker_timeout = no_worker_timeout
        self._last_progress = self._last_worker_seen = self._workers_checked = time.monotonic()
        self.keep_responses = keep_responses
        self.client = client
        self.journal = journal
        self.resume = resume
        self.raise_immediately = raise_immediately
        self.direct_writes = direct_writes
        self.worker_failure_retries = worker_failure_retries
        self.progress = progress

        self.stopped_parents: set[str] = set()
        self.errored: set[str] = set()
        self.responses: dict[str, dict[int, Response]] = defaultdict(dict)
        self.stop_jobflow = False

        self._ready: deque[Callable[[], None]] = deque()
        self._waiting: deque[_JobRun] = deque()
        self.max_in_flight = max_in_flight
        self._capacity_checked = float("-inf")
        self._auto_capacity = 4
        self._in_flight: dict[Future, _JobRun] = {}
        self._outputs = RecentOutputs()
        self._store_spec = None
        if callable(direct_writes):
            self._store_spec = StoreSpec(key=secrets.token_hex(8), factory=direct_writes)
        elif direct_writes:
            self._store_spec = StoreSpec(key=secrets.token_hex(8), spec=json.dumps(store, cls=MontyEncoder))
        self._additional_store_names = list(store.additional_stores)

    # -- bookkeeping --------------------------------------------------------------
    def emit(self, job: Job, status: str, output: Any = None, error: str | None = None):
        if self.progress is not None:
            self.progress(
                JobEvent(job.uuid, job.index, job.name, status, output=output, error=error, job=job if status == "failed" else None)
            )

    def schedule(self, action: Callable[[], None]):
        # a queue rather than direct calls keeps long chains of skipped/resumed
        # jobs from recursing
        self._ready.append(action)

    def _capacity(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        now = time.monotonic()
        if now - self._capacity_checked > 5.0:  # workers come and go (adaptive clusters)
            self._capacity_checked = now
            self._auto_capacity = max(4, 2 * sum(self.client.nthreads().values()))
        return self._auto_capacity

    def _submit_waiting(self):
        while self._waiting and len(self._in_flight) < self._capacity():
            self.submit(self._waiting.popleft())

    def stop(self):
        self.stop_jobflow = True
        self._waiting.clear()
        if self._in_flight:
            self.client.cancel(list(self._in_flight))
        self._in_flight.clear()

    # -- resume -------------------------------------------------------------------
    def write_journal(self, job: Job, response: Response, timeline: dict[str, Any] | None = None):
        """Journal ``job`` as finished (:func:`~matris_flows.execution.journal.write_journal`)."""
        write_journal(self.journal, job, response, timeline)

    def resumed_response(self, job: Job) -> Response | None:
        """The Response of ``job`` rebuilt from its journal record, or None when it has to run."""
        return resumed_response(self.journal, self.store, job, load_output=self.keep_responses)

    # -- execution ----------------------------------------------------------------
    def submit(self, run: _JobRun):
        job = run.job
        if job.config.expose_store and not writes_only(job):
            # the job may query or write the whole store: run it here, the one writer
            self._run_on_driver(run)
            return
        if len(self._in_flight) >= self._capacity():
            # Submitting means loading the job's inputs and handing them to the scheduler:
            # hold back all but a few tasks per worker, or a fan-out of 10^5 candidates
            # sits in the driver's memory at once.
            (self._waiting.appendleft if run.urgent else self._waiting.append)(run)
            return
        submit_kwargs = dict(job.config.manager_config.get("dask", {}))
        if run.urgent:
            # Dask runs a worker's queued tasks in priority order, FIFO among equals: without
            # this, a relaxation's hull job waited behind every relaxation chunk queued before
            # it, and no candidate reached the store until the relaxations were done
            submit_kwargs.setdefault("priority", 1)
        key = f"{job.name}-{job.uuid}-{job.index}-{secrets.token_hex(4)}"
        if self.direct_writes:
            future = self.client.submit(
                execute_job_direct, job, self._store_spec, key=key, pure=False,
                **submit_kwargs,
            )
        else:
            try:
                resolved = resolve_inputs(job, self.store, self._outputs)
            except Exception:  # noqa: BLE001 - a missing output with on_missing ERROR fails the job, as Job.run would
                run.handle_failure(traceback.format_exc())
                return
            future = self.client.submit(
                execute_job, resolved, self._additional_store_names, key=key,
                pure=False, **submit_kwargs,
            )
        run.attempts += 1
        self._in_flight[future] = run
        self._completed.add(future)
        self.emit(job, "submitted")

    def _run_on_driver(self, run: _JobRun):
        started_at = time.time()
        try:
            response = run.job.run(store=self.store)
        except Exception:  # noqa: BLE001
            run.handle_failure(traceback.format_exc())
            return
        finally:
            reset_current_job()
        response.job_dir = os.getcwd()
        run.handle_response(
            response, timeline={"worker": "driver", "started_at": started_at, "finished_at": time.time()}
        )

    def _collect(self, future: Future, run: _JobRun):
        if future.status != "finished":
            # "error": the task raised outside Job.run (which the worker catches), e.g.
            # KilledWorker after its workers died; "cancelled": the scheduler lost it
            exc = future.exception() if future.status == "error" else None
            lost_worker = exc is None or type(exc).__name__ in _INFRASTRUCTURE_ERRORS
            if lost_worker and run.attempts <= self.worker_failure_retries:
                logger.warning(
                    f"{run.job.name} lost its worker ({exc!r}); resubmitting "
                    f"(attempt {run.attempts + 1})"
                )
                self.emit(run.job, "retrying")
                self.submit(run)
                return
            message = (
                f"task {future.status}"
                if exc is None
                else "".join(traceback.format_exception(exc))
            )
            run.handle_failure(message)
            return
        result: WorkerResult = future.result()
        if result.error is not None:
            run.handle_failure(result.error)
            return
        try:
            result.replay(self.store, after_each=lambda: kill_point("write", run.job.name, run.job.uuid))
        except Exception:  # noqa: BLE001
            run.handle_failure(traceback.format_exc())
            return
        result.response.job_dir = result.job_dir
        run.handle_response(result.response, timeline=result.timeline())

    def _next_completed(self) -> Future:
        """The next finished task, waiting with the stall watchdog on (see :class:`StalledError`)."""
        completed = self._completed
        while not completed.has_ready():
            self._check_stall()
            with completed.thread_condition:  # notified when a future lands in the queue
                if not completed.has_ready():
                    completed.thread_condition.wait(timeout=1.0)
        self._last_progress = time.monotonic()
        return next(completed)

    def _check_stall(self) -> None:
        """Raise :class:`StalledError` after ``stall_timeout`` s with no worker and no finished task.

        Batch workers that reach their walltime or are cancelled may never come back (a
        one-off ``scale``, a queue that no longer starts jobs); without this the driver
        would wait on the next future forever.
        """
        limits = [t for t in (self.stall_timeout, self.no_worker_timeout) if t is not None]
        if not limits:
            return
        now = time.monotonic()
        if now - self._workers_checked >= min(5.0, *(t / 5 for t in limits)):
            self._workers_checked = now
            if self.client.nthreads():
                self._last_worker_seen = now
        without_workers = now - self._last_worker_seen
        if self.no_worker_timeout is not None and without_workers >= self.no_worker_timeout:
            raise StalledError(
                f"the Dask cluster has had no live worker for {without_workers:.0f} s (no_worker_timeout "
                f"{self.no_worker_timeout:g} s): stopped; finished jobs are kept"
            )
        if self.stall_timeout is None:
            return
        idle = now - max(self._last_progress, self._last_worker_seen)
        if idle >= self.stall_timeout:
            raise StalledError(
                f"no Dask worker and no job finished for {idle:.0f} s (stall_timeout {self.stall_timeout:g} s): "
                "stopped; finished jobs are kept, resume once workers can start"
            )

    def run(self, flow: Flow) -> bool:
        from distributed import as_completed

        outcome: list[bool] = []
        self._completed = as_completed()
        self._last_progress = self._last_worker_seen = time.monotonic()
        _FlowRun(self, flow, outcome.append).start()
        try:
            while True:
                while self._ready or (self._waiting and len(self._in_flight) < self._capacity()):
                    while self._ready:
                        self._ready.popleft()()
                    self._submit_waiting()
                if self.stop_jobflow or not self._in_flight:
                    break
                future = self._next_completed()
                run = self._in_flight.pop(future, None)
                if run is not None:  # None: cancelled by stop_jobflow
                    self._collect(future, run)
        finally:
            if self._in_flight:  # raise_immediately or an interrupt
                self.client.cancel(list(self._in_flight))
                self._in_flight.clear()
        return bool(outcome) and outcome[0]


def run_on_dask(
    flow: Flow | Job | list[Job],
    store: JobStore | None = None,
    client: Client | None = None,
    *,
    ensure_success: bool = False,
    allow_external_references: bool = False,
    raise_immediately: bool = False,
    resume: bool = True,
    journal: Store | None = None,
    direct_writes: bool | Callable[[], JobStore] = False,
    worker_failure_retries: int = 2,
    progress: Callable[[JobEvent], None] | None = None,
    keep_responses: bool = True,
    max_in_flight: int | None = None,
    stall_timeout: float | None = None,
    no_worker_timeout: float | None = None,
) -> dict[str, dict[int, Response]]:
    """Run a Job or Flow on a Dask cluster, as ``jobflow.run_locally`` would.

    Parameters
    ----------
    flow
        A job, list of jobs or flow.
    store
        The job store; ``jobflow.SETTINGS.JOB_STORE`` if None.
    client
        A ``distributed.Client``; a default local cluster (see
        :func:`matris_flows.execution.clusters.open_client`) if None.
    ensure_success
        Raise if the flow did not finish successfully.
    allow_external_references
        Allow references to jobs outside ``flow``.
    raise_immediately
        Raise as soon as a job fails instead of carrying on with independent jobs.
    resume
        Skip jobs whose output and journal record are already in the store.
    journal
        Store for resume records; default the JobStore's additional store named
        ``"journal"``, else an in-memory store (resume then only within this call).
    direct_writes
        Workers run jobs against the store themselves (only for stores that take
        concurrent writers, i.e. MongoDB); otherwise the driver does all writes. A
        picklable callable returning a JobStore builds each worker's connection there
        (credentials from the worker's environment); ``True`` ships ``store`` as JSON.
    worker_failure_retries
        Times a job is resubmitted after Dask gives up on it because workers died
        (``KilledWorker``), on top of Dask's own ``allowed-failures`` retries.
    progress
        Called with a :class:`JobEvent` whenever a job changes state.
    keep_responses
        Keep every Response (with its output) to return it. Campaigns turn this off,
        so that the driver's memory does not grow with the number of jobs.
    max_in_flight
        Most tasks handed to Dask at once (default: twice the cluster's threads, at
        least 4); the rest wait in the driver without their inputs loaded.
    stall_timeout
        Seconds with no worker and no finished task after which :class:`StalledError`
        is raised (tasks in flight are cancelled, finished jobs stay journaled); None
        waits forever.
    no_worker_timeout
        Seconds the cluster may have no live worker at all, whatever is in flight, before
        :class:`StalledError` is raised (for clusters that replace lost workers at once,
        where a worker-less cluster is broken rather than waiting); None: no such limit.

    Returns
    -------
    dict[str, dict[int, Response]]
        The responses of the jobs, as ``{uuid: {index: response}}``.  Jobs skipped on
        resume have a Response rebuilt from the store (output as stored, blobs not
        loaded).
    """
    from jobflow import SETTINGS
    from jobflow.core.flow import get_flow

    if store is None:
        store = SETTINGS.JOB_STORE
    store.connect()
    if journal is None:
        journal = store.additional_stores.get(JOURNAL_STORE_NAME)
    if journal is None:
        journal = MemoryStore(collection_name=f"journal-{secrets.token_hex(4)}")
    journal.connect()

    flow = get_flow(flow, allow_external_references=allow_external_references)

    if client is None:
        from matris_flows.execution.clusters import open_client

        with open_client() as default_client:
            return run_on_dask(
                flow, store, default_client, ensure_success=ensure_success,
                allow_external_references=allow_external_references,
                raise_immediately=raise_immediately, resume=resume, journal=journal,
                direct_writes=direct_writes,
                worker_failure_retries=worker_failure_retries, progress=progress,
                keep_responses=keep_responses, max_in_flight=max_in_flight,
                stall_timeout=stall_timeout, no_worker_timeout=no_worker_timeout,
            )

    runner = _DaskRunner(
        store, client, journal, resume=resume, raise_immediately=raise_immediately,
        direct_writes=direct_writes, worker_failure_retries=worker_failure_retries,
        progress=progress, keep_responses=keep_responses, max_in_flight=max_in_flight,
        stall_timeout=stall_timeout, no_worker_timeout=no_worker_timeout,
    )
    logger.info("Started executing jobs on Dask")
    finished_successfully = runner.run(flow)
    logger.info("Finished executing jobs on Dask")

    if ensure_success and not finished_successfully:
        raise RuntimeError("Flow did not finish running successfully")
    return dict(runner.responses)
