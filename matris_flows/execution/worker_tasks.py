"""What runs on a Dask worker for one job, and what the driver does to get it there and back.

The embedded store (SQLiteStore) takes one writer, so by default
workers never touch it: the driver resolves a job's references with jobflow's own
resolution (``on_missing_references`` included) and ships the job with exactly the values
it references (one chunk of a generation shard, not the shard); the worker runs the
unmodified ``Job.run`` against a throwaway in-memory ``JobStore``, records the
``JobStore.update`` calls it makes, and returns them with the ``Response``; the driver
replays those updates on the real store.  Thus output schemas, additional-store
``save`` keys, ``prepare_replace`` and the metadata/config/name propagation are
jobflow's own code; ``JobStore.update`` (sanitising, blob splitting) runs on the worker
too, so the driver only inserts finished documents.  Jobs with ``config.expose_store`` run on the driver, because
they may read or write anything in the store.  With a store that takes concurrent
writers (MongoDB) ``direct_writes=True`` lets workers run ``Job.run`` against the
real store.
"""

from __future__ import annotations

import copy
import os
import secrets
import socket
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobflow import Job, JobStore, Response
from jobflow.core.reference import find_and_resolve_references
from maggma.stores import MemoryStore
from monty.json import MontyDecoder

from matris_flows.core.job_slot import job_slot


@dataclass
class StoreWrite:
    """One write a worker made, to replay on the real store: ``update`` of its docs store
    (target ``"__docs__"``) or of the additional store named ``target``."""

    target: str
    docs: Any
    key: Any = None


@dataclass
class WorkerResult:
    """What a worker returns for one job: the Response, the store writes to replay, and where
    and when ``Job.run`` ran (``worker``: the Dask worker's name or address; Unix times, s)."""

    response: Response | None
    updates: list[StoreWrite] = field(default_factory=list)
    error: str | None = None
    job_dir: str | None = None
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def replay(self, store: JobStore, after_each: Callable[[], None] = lambda: None) -> None:
        """Make the recorded writes on the real ``store`` (the driver, the one writer of an embedded store)."""
        for write in self.updates:
            if write.target == _DOCS_TARGET:
                store.docs_store.update(write.docs, key=write.key)
            else:
                store.additional_stores[write.target].update(write.docs, key=write.key)
            after_each()

    def timeline(self) -> dict[str, Any] | None:
        """The journal record's ``timeline``: where and when the job ran; None when not recorded."""
        if self.worker is None and self.started_at is None:
            return None
        return {"worker": self.worker, "started_at": self.started_at, "finished_at": self.finished_at}


def worker_label() -> str:
    """The Dask worker running this task (its name, else its address); ``host:pid`` outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # ValueError: not in a Dask worker
        return f"{socket.gethostname()}:{os.getpid()}"
    return str(worker.name if worker.name is not None else worker.address)


_DOCS_TARGET = "__docs__"  # StoreWrite target of the JobStore's docs store


class _RecordingStore(MemoryStore):
    """A store whose ``update`` calls are recorded, not applied."""

    def __init__(self, target: str, recorded: list[StoreWrite]):
        super().__init__(collection_name=f"{target}-{secrets.token_hex(4)}")
        self.target = target
        self.recorded = recorded

    def update(self, docs, key=None, **kwargs):
        self.recorded.append(StoreWrite(self.target, docs, key))


class _RecordingJobStore(JobStore):
    """An in-memory JobStore that records every write.

    ``JobStore.update`` runs here, on the worker: sanitising the output and splitting blobs
    off to the additional stores is the costly part of a write, and the driver, the one
    writer of an embedded store, only inserts the finished documents.
    """

    def __init__(self, additional_store_names):
        recorded: list[StoreWrite] = []
        docs = _RecordingStore(_DOCS_TARGET, recorded)
        super().__init__(docs, additional_stores={name: _RecordingStore(name, recorded) for name in additional_store_names})
        self.connect()
        self.recorded = recorded


def execute_job(job: Job, additional_store_names: list[str]) -> WorkerResult:
    """Run ``job``, its references resolved (:func:`resolve_inputs`), on a worker without touching the real store (the Dask task body)."""
    store = _RecordingJobStore(additional_store_names)
    with job_slot():  # jobflow's CURRENT_JOB is one per process
        worker, started_at = worker_label(), time.time()
        try:
            response = job.run(store=store)
        except Exception:  # noqa: BLE001 - reported to the driver like run_locally logs it
            return WorkerResult(response=None, error=traceback.format_exc())
        finally:
            reset_current_job()
    return WorkerResult(
        response=response, updates=store.recorded, job_dir=os.getcwd(),
        worker=worker, started_at=started_at, finished_at=time.time(),
    )


@dataclass
class StoreSpec:
    """How a worker gets its own connection to a store that takes concurrent writers.

    Either a picklable ``factory`` (e.g. ``partial(connect_job_store, config, dir)``: the
    worker reads credentials from its own environment, none travel with the task) or,
    without one, the store's JSON (which carries what the store object holds).
    """

    key: str
    factory: Callable[[], JobStore] | None = field(default=None, repr=False)
    spec: str | None = field(default=None, repr=False)  # may hold credentials: never in reprs or logs


_WORKER_STORES: dict[str, JobStore] = {}


def execute_job_direct(job: Job, store_spec: StoreSpec) -> WorkerResult:
    """Run ``job`` on a worker against the real store (stores with concurrent writers)."""
    store = _WORKER_STORES.get(store_spec.key)
    if store is None:
        store = store_spec.factory() if store_spec.factory is not None else MontyDecoder().decode(store_spec.spec)
        store.connect()
        _WORKER_STORES[store_spec.key] = store
    with job_slot():
        worker, started_at = worker_label(), time.time()
        try:
            response = job.run(store=store)
        except Exception:  # noqa: BLE001
            return WorkerResult(response=None, error=traceback.format_exc())
        finally:
            reset_current_job()
    return WorkerResult(
        response=response, job_dir=os.getcwd(), worker=worker, started_at=started_at, finished_at=time.time()
    )


def reset_current_job() -> None:
    """Clear jobflow's process-wide ``CURRENT_JOB`` after a job, as ``Job.run`` leaves it set."""
    from jobflow import CURRENT_JOB

    CURRENT_JOB.reset()


class RecentOutputs(OrderedDict):
    """jobflow's reference cache (``{uuid: {index: output}}``) that keeps the last few jobs' outputs only.

    The chunk jobs of one generation shard reference that shard's output one after another, so
    the driver reads a shard once instead of once per chunk (and again for its hull job), while
    the cache stays the same size however many shards a campaign has.
    """

    def __init__(self, size: int = 4):
        super().__init__()
        self.size = size

    def __getitem__(self, uuid):
        self.move_to_end(uuid)
        return super().__getitem__(uuid)

    def __setitem__(self, uuid, outputs):
        super().__setitem__(uuid, outputs)
        self.move_to_end(uuid)
        while len(self) > self.size:
            self.popitem(last=False)


def resolve_inputs(job: Job, store: JobStore, cache: RecentOutputs) -> Job:
    """A copy of ``job`` whose references are replaced by the values they point to, as ``Job.run`` would.

    jobflow's own resolution (:func:`~jobflow.core.reference.find_and_resolve_references`, with the
    job's ``on_missing_references``) reads the referenced outputs from ``store``; the cache holds them
    undecoded and each job decodes only what it references, so jobs share no objects. The copy
    does not resolve again when it runs. ``job`` itself keeps its references (the journal, failure
    reports and resume read them).
    """
    config = job.config
    if not config.resolve_references:
        return job
    options = {
        "cache": cache, "on_missing": config.on_missing_references, "deserialize": False,
        "wrap_resolved": config.resolve_references == "both",
    }
    decoder = MontyDecoder()
    resolved = copy.copy(job)
    resolved.function_args = tuple(decoder.process_decoded(find_and_resolve_references(job.function_args, store, **options)))
    resolved.function_kwargs = decoder.process_decoded(find_and_resolve_references(job.function_kwargs, store, **options))
    resolved.config = copy.copy(config)
    resolved.config.resolve_references = False
    return resolved
