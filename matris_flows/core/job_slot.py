"""One jobflow job at a time per process, except while a job waits for work done elsewhere.

jobflow keeps the running job in one process-wide object (``jobflow.CURRENT_JOB``): ``Job.run``
sets it, the job's function may read it (a shard job names its own output with it, a
relaxation job its progress file), and ``Job.run`` clears it at the end. Two jobs running at
once in threads of one Dask worker (``threads_per_worker`` > 1) would read and clear each
other's. So a worker runs its jobs under one lock per process (:func:`job_slot`), and a job
that only waits, a relaxation job whose structures are in its worker's relaxation service,
hands the slot on for the wait (:func:`waiting_elsewhere`) and takes it and its
``CURRENT_JOB`` back before it goes on. That is how several relaxation jobs on a worker keep
one in-flight batch fed while every other job still runs alone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# A lock, not state: what it guards is jobflow's process-wide CURRENT_JOB.
_slot = threading.Lock()
_holder = threading.local()


@contextlib.contextmanager
def job_slot() -> Iterator[None]:
    """Hold this process's job slot while running a job (the body of a worker's task)."""
    with _slot:
        _holder.held = True
        try:
            yield
        finally:
            _holder.held = False


@contextlib.contextmanager
def waiting_elsewhere() -> Iterator[None]:
    """Let another job run while this one waits; its ``CURRENT_JOB`` is restored after.

    Outside :func:`job_slot` (``run_locally``, the driver, plain calls) it does nothing.
    """
    if not getattr(_holder, "held", False):
        yield
        return
    from jobflow import CURRENT_JOB

    job, store = CURRENT_JOB.job, CURRENT_JOB.store
    _holder.held = False
    _slot.release()
    try:
        yield
    finally:
        _slot.acquire()
        _holder.held = True
        CURRENT_JOB.job, CURRENT_JOB.store = job, store
