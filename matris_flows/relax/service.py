"""One relaxation service per worker: the model loaded once, one in-flight batch fed by every job.

A relaxation job is the unit Dask schedules, retries and streams results by; it is not the
unit the model should batch by. Real relaxations are long-tailed (median ~30 FIRE steps,
some 200), so a batch that only holds one chunk shrinks to its stragglers and is never
refilled. Here every relaxation job on a worker process hands its structures to that
process's :class:`RelaxationService`: a child process (a :class:`~matris_flows.core.isolation.Sandbox`
running :func:`serve_relaxations`) that keeps one batch of up to ``atoms_cap`` atoms in
flight, admitting the next queued structure, whichever job it came from, as soon as one
converges. Several jobs per worker (``execution.threads_per_worker``) keep its queue full
across chunk boundaries.

The service is watched like any isolated call: when its child dies, hangs on a structure
past that structure's limit, or passes the memory limit, the structures it had in flight
are handed back to their jobs as suspects (retried one per call, so only a real culprit
fails: :mod:`matris_flows.relax.isolated`), the queued ones go to a fresh child.

At the tail of a campaign, a job whose structures are still queued while another worker
sits idle hands half of them to that worker (a Dask task that feeds that worker's
service), so no core waits for another's stragglers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymatgen.core import Structure

from matris_flows.core.isolation import IsolatedFailure, ItemFailure, Sandbox
from matris_flows.relax.defaults import relax_timeout
from matris_flows.relax.progress import settings_fingerprint
from matris_flows.relax.schemas import RelaxationDocument, RelaxPlan, RelaxServiceStats, RelaxSettings
from matris_flows.relax.service_child import serve_relaxations

logger = logging.getLogger(__name__)

_LOAD_TIMEOUT_S = 900.0  # loading a potential (a checkpoint download, a cold file system)
_IDLE_CLOSE_S = 600.0  # a service without work this long gives its memory back
_STEAL_CHECK_S = 5.0  # how often a waiting job looks for idle workers


# ------------------------------------------------------------------------------------
# the worker: one service per process, shared by the relaxation jobs' threads
# ------------------------------------------------------------------------------------
@dataclass
class _Ticket:
    """A structure handed to the service: where its outcome goes."""

    structure: Structure
    candidate_id: str
    outcomes: queue.Queue
    position: int


class RelaxationService:
    """The worker side of a relaxation service: feeds its child, routes results to the jobs.

    Use :func:`relaxation_service` to get the process's service for a potential and settings.
    """

    def __init__(self, potential: str, device: str, options: dict[str, Any], settings: RelaxSettings,
                 memory_limit: int | None, on_close: Callable[[RelaxationService], None] | None = None):
        self.potential, self.device, self.options, self.settings = potential, device, options, settings
        self.memory_limit = memory_limit
        self.plan: RelaxPlan | None = None
        self.stats: RelaxServiceStats | None = None
        self.load_error: str | None = None
        self.closed = False
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._tickets: dict[str, _Ticket] = {}
        self._queued: set[str] = set()  # sent to the child, not started there yet
        self._in_flight: dict[str, float] = {}  # started -> monotonic start time
        self._limits: dict[str, float] = {}
        self._keys = itertools.count()
        self._on_close = on_close
        # The child dies with the thread that started it (PR_SET_PDEATHSIG): a thread of its own
        # that lives as long as the service.
        threading.Thread(target=self._run, name="relaxation-service", daemon=True).start()

    # -- jobs' side ---------------------------------------------------------------------
    def wait_ready(self) -> RelaxPlan:
        """The plan (engine, resolved settings, model identity); raises RuntimeError if the potential did not load."""
        self._ready.wait()
        if self.plan is None:
            raise RuntimeError(f"loading potential {self.potential!r}: {self.load_error}")
        return self.plan

    def submit(self, items: Sequence[tuple[Structure, str]], outcomes: queue.Queue, positions: Sequence[int]) -> list[str]:
        """Queue ``items``; each outcome arrives on ``outcomes`` as ``(position, document | ItemFailure | None)``.

        None means the structure was withdrawn (:meth:`withdraw`) before it started.
        """
        keys = []
        with self._lock:
            for (structure, candidate_id), position in zip(items, positions, strict=True):
                key = f"s{next(self._keys)}"
                self._tickets[key] = _Ticket(structure, candidate_id, outcomes, position)
                keys.append(key)
        self._outbox.put(("add", keys))
        return keys

    def queued(self, keys: Sequence[str]) -> list[str]:
        """Those of ``keys`` still waiting for room in the batch."""
        with self._lock:
            return [k for k in keys if k in self._tickets and k not in self._in_flight]

    def withdraw(self, keys: Sequence[str]) -> None:
        """Ask for queued ``keys`` back; each one still queued gets the outcome None."""
        self._outbox.put(("withdraw", list(keys)))

    # -- the service thread -------------------------------------------------------------
    def _run(self) -> None:
        box = Sandbox(self.memory_limit)
        try:
            while not self.closed:
                try:
                    stream = box.stream(serve_relaxations, self.potential, self.device, self.options, self.settings)
                    self._await_ready(stream)
                except Exception as exc:  # noqa: BLE001 - the potential cannot load (IsolatedFailure, StreamEnded, its error)
                    self.load_error = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                    break
                try:
                    self._serve(stream)
                except IsolatedFailure as failure:
                    box.close()
                    self._blame_in_flight(failure)
        finally:
            self.closed = True
            box.close()
            self._ready.set()
            with self._lock:
                orphans, self._tickets = self._tickets, {}
            reason = f"the relaxation service stopped ({self.load_error or 'closed'})"
            for ticket in orphans.values():  # not known to be at fault: their jobs retry them alone
                ticket.outcomes.put((ticket.position, Suspect(reason, "died")))
            if self._on_close is not None:
                self._on_close(self)

    def _await_ready(self, stream) -> None:
        with self._lock:  # what is queued goes first: the engine may be measured on it
            queued = [k for k in self._tickets if k not in self._in_flight]
            self._queued.clear()
        if queued:
            self._send_items(stream, queued)
        deadline = time.monotonic() + _LOAD_TIMEOUT_S
        while True:
            # Jobs keep submitting while the child loads, and a CPU child chooses its engine on the
            # first structures it gets: what they submit must reach it before it can say ready.
            self._forward_outbox(stream)
            with self._lock:
                waiting_for_work = not self._tickets  # every ticket has just been forwarded to the child
            if waiting_for_work:  # the load limit counts from the first structure, not from an idle start
                deadline = time.monotonic() + _LOAD_TIMEOUT_S
            message = stream.receive(min(0.05, max(0.0, deadline - time.monotonic())))
            if message is None:
                if time.monotonic() < deadline:
                    continue
                stream.box.close()
                raise IsolatedFailure(f"did not load within {_LOAD_TIMEOUT_S:.0f} s", "timeout")
            if message[0] == "ready":
                self.plan, self.stats = message[1], message[2]
                self._ready.set()
                return
            if message[0] == "withdrawn":
                self._handle(message)

    def _send_items(self, stream, keys: list[str]) -> None:
        with self._lock:  # each key once per child (a fresh child clears _queued)
            items = [
                (k, self._tickets[k].structure, self._tickets[k].candidate_id)
                for k in keys if k in self._tickets and k not in self._queued and k not in self._in_flight
            ]
            self._queued.update(k for k, _, _ in items)
        if items:
            stream.send(("add", items))

    def _forward_outbox(self, stream) -> None:
        """Send the child what the jobs asked for since the last look (structures, withdrawals)."""
        with contextlib.suppress(queue.Empty):
            while True:
                message = self._outbox.get_nowait()
                if message[0] == "add":
                    self._send_items(stream, message[1])
                else:
                    stream.send(message)

    def _serve(self, stream) -> None:
        last_work = time.monotonic()
        while True:
            self._forward_outbox(stream)
            message = stream.receive(0.05)
            if message is not None:
                self._handle(message)
            now = time.monotonic()
            with self._lock:
                busy = bool(self._tickets)
                overdue = [k for k, started in self._in_flight.items() if now - started > self._limits.get(k, float("inf"))]
            if busy:
                last_work = now
            elif now - last_work > _IDLE_CLOSE_S and self._outbox.empty():
                with contextlib.suppress(IsolatedFailure):
                    stream.send(("close",))
                self.closed = True
                return
            if overdue:
                stream.box.close()
                limit = min(self._limits[k] for k in overdue)
                raise IsolatedFailure(f"did not finish within {limit:.0f} s: the process was killed", "timeout")

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "started":
            now = time.monotonic()
            with self._lock:
                for key in message[1]:
                    self._queued.discard(key)
                    self._in_flight[key] = now
                n_in_flight = len(self._in_flight)
                atoms = sum(len(self._tickets[k].structure) for k in self._in_flight if k in self._tickets)
                for key in message[1]:  # a structure's limit grows with what shares its model calls
                    self._limits[key] = relax_timeout(self.plan.settings, atoms, n_in_flight)
        elif kind == "done":
            self.stats = message[2]
            for key, document in message[1]:
                self._resolve(key, document)
        elif kind == "withdrawn":
            for key in message[1]:
                self._resolve(key, None)

    def _resolve(self, key: str, outcome: Any) -> None:
        with self._lock:
            ticket = self._tickets.pop(key, None)
            self._queued.discard(key)
            self._in_flight.pop(key, None)
            self._limits.pop(key, None)
        if ticket is not None:
            ticket.outcomes.put((ticket.position, outcome))

    def _blame_in_flight(self, failure: IsolatedFailure) -> None:
        """The child died with structures in flight: one alone is the culprit, several are suspects."""
        with self._lock:
            in_flight = list(self._in_flight)
        alone = len(in_flight) == 1
        logger.warning("relaxation service failed (%s) with %d structures in flight", failure.reason, len(in_flight))
        for key in in_flight:
            self._resolve(key, ItemFailure(failure.reason, failure.kind) if alone else Suspect(failure.reason, failure.kind))


class Suspect(ItemFailure):
    """A structure that was in flight, with others, when the service failed: to be retried alone."""


# One service per (process, potential, settings): a cache like the potential cache (what it
# holds is rebuilt on demand), shared by the relaxation jobs' threads on this worker.
_services: dict[str, RelaxationService] = {}
_services_lock = threading.Lock()


def relaxation_service(
    potential: str, device: str, options: dict[str, Any], settings: RelaxSettings, memory_limit: int | None
) -> RelaxationService:
    """This process's service for ``potential`` and ``settings`` (started on first use)."""
    key = settings_fingerprint(potential, device, options, settings.model_dump(mode="json"))
    with _services_lock:
        service = _services.get(key)
        if service is None or service.closed:
            service = RelaxationService(potential, device, options, settings, memory_limit, on_close=_forget(key))
            _services[key] = service
        service.memory_limit = memory_limit
    return service


def _forget(key: str) -> Callable[[RelaxationService], None]:
    def forget(service: RelaxationService) -> None:
        with _services_lock:
            if _services.get(key) is service:
                del _services[key]

    return forget


# ------------------------------------------------------------------------------------
# a job's wait: outcomes as they come, the queue handed to idle workers at the tail
# ------------------------------------------------------------------------------------
def relax_through_service(
    service: RelaxationService,
    items: Sequence[tuple[Structure, str]],
    on_result: Callable[[int, Any], None],
    steal: bool = True,
) -> int:
    """Relax ``items`` through ``service``; ``on_result(index, document | ItemFailure)`` per item as it finishes.

    A :class:`Suspect` outcome (in flight when the service failed) is the caller's to retry
    alone. With ``steal``, queued items go to idle Dask workers when there are any. Returns
    how many items other workers relaxed.
    """
    if not items:
        return 0
    outcomes: queue.Queue = queue.Queue()
    key_of = service.submit(items, outcomes, range(len(items)))  # item index -> its key in the service
    service.wait_ready()  # raises if the potential does not load
    remaining = set(range(len(items)))
    withdrawn: list[int] = []
    n_stolen, next_check = 0, time.monotonic() + _STEAL_CHECK_S
    while remaining:
        try:
            position, outcome = outcomes.get(timeout=1.0)
        except queue.Empty:
            position = None
        if position is not None and position in remaining:
            if outcome is None:  # withdrawn for another worker
                withdrawn.append(position)
                continue
            if isinstance(outcome, _Stolen):
                if outcome.error is not None:  # that worker failed them: back to our own service
                    logger.warning("structures handed to %s came back (%s); relaxing them here", outcome.worker, outcome.error)
                    for index in outcome.positions:
                        key_of[index] = service.submit([items[index]], outcomes, [index])[0]
                    continue
                n_stolen += len(outcome.positions)
                for index, result in zip(outcome.positions, outcome.results, strict=True):
                    remaining.discard(index)
                    on_result(index, result)
                continue
            remaining.discard(position)
            on_result(position, outcome)
        if withdrawn and outcomes.empty():  # the withdrawal's answer is in: send them in one task
            for index, key in _hand_over(service, [items[i] for i in withdrawn], list(withdrawn), outcomes).items():
                key_of[index] = key
            withdrawn = []
        if steal and time.monotonic() > next_check:
            next_check = time.monotonic() + _STEAL_CHECK_S
            queued = service.queued([key_of[i] for i in sorted(remaining)])
            if len(queued) >= 2 and _idle_worker() is not None:
                service.withdraw(queued[len(queued) // 2 :])
    return n_stolen


@dataclass
class _Stolen:
    """What came back from another worker: results in the order of ``positions``, or the error."""

    positions: list[int]
    results: list[Any]
    worker: str
    error: str | None = None


def _idle_worker() -> str | None:
    """Address of a Dask worker running nothing, when this runs on a Dask worker; else None."""
    try:
        from distributed import get_client, get_worker

        me = get_worker().address
        processing = get_client().processing()
    except Exception:  # noqa: BLE001 - not in a worker, or the scheduler is unreachable: no stealing
        return None
    idle = [address for address, tasks in processing.items() if not tasks and address != me]
    return idle[0] if idle else None


def _hand_over(
    service: RelaxationService, items: list[tuple[Structure, str]], positions: list[int], outcomes: queue.Queue
) -> dict[int, str]:
    """Run ``items`` on an idle worker's service; the results come back on ``outcomes`` as one :class:`_Stolen`.

    Returns the new service keys by position of the items queued here again (the idle worker got
    work meanwhile), so that they can be handed over later; empty when they were handed over.
    """
    worker = _idle_worker()
    if worker is None:
        return dict(zip(positions, service.submit(items, outcomes, positions), strict=True))
    from distributed import get_client

    future = get_client().submit(
        relax_on_worker, items, service.potential, service.device, service.options, service.settings,
        workers=[worker], allow_other_workers=True, pure=False,
    )

    def arrived(done) -> None:
        try:
            results = done.result()
        except BaseException as exc:  # noqa: BLE001 - a lost worker, a cancelled task: ours again
            outcomes.put((positions[0], _Stolen(positions, [], worker, error=f"{type(exc).__name__}: {exc}")))
        else:
            outcomes.put((positions[0], _Stolen(positions, results, worker)))

    future.add_done_callback(arrived)
    logger.info("handed %d queued structures to idle worker %s", len(items), worker)
    return {}


def relax_on_worker(
    items: list[tuple[Structure, str]], potential: str, device: str, options: dict[str, Any], settings: RelaxSettings
) -> list[RelaxationDocument | ItemFailure]:
    """A Dask task: relax ``items`` through this worker's service (structures handed over by a busy worker)."""
    from matris_flows.core.isolation import worker_memory_limit

    service = relaxation_service(potential, device, options, settings, worker_memory_limit())
    results: list[Any] = [None] * len(items)

    def keep(index: int, result: Any) -> None:
        results[index] = result

    relax_through_service(service, items, keep, steal=False)
    return results
