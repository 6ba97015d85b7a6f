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
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from pymatgen.core import Structure

from matris_flows.core.isolation import Channel, IsolatedFailure, ItemFailure, Sandbox
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.relax.checks import input_problem_for
from matris_flows.relax.defaults import relax_timeout, resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.engine import choose_engine
from matris_flows.relax.progress import settings_fingerprint
from matris_flows.relax.schemas import RelaxationDocument, RelaxPlan, RelaxServiceStats, RelaxSettings

logger = logging.getLogger(__name__)

_LOAD_TIMEOUT_S = 900.0  # loading a potential (a checkpoint download, a cold file system)
_IDLE_CLOSE_S = 600.0  # a service without work this long gives its memory back
_STEAL_CHECK_S = 5.0  # how often a waiting job looks for idle workers
_SAMPLE_SIZE = 4  # structures the engine is measured on (engine: auto, CPU)


# ------------------------------------------------------------------------------------
# the child: load the model once, keep a batch in flight
# ------------------------------------------------------------------------------------
class _TimedModel:
    """Wraps a TorchSim model to count the seconds, calls, atoms and systems of its calls."""

    def __init__(self, model, stats: RelaxServiceStats):
        self.model = model
        self.stats = stats
        self._cuda = str(model.device).startswith("cuda")

    def __getattr__(self, name: str) -> Any:  # device, dtype, compute_stress, ...: the model's
        return getattr(self.model, name)

    def __call__(self, state, **kwargs):
        start = perf_counter()
        out = self.model(state, **kwargs)
        if self._cuda:  # kernels run asynchronously: their time is only known once they finished
            import torch

            torch.cuda.synchronize(self.model.device)
        self.stats.model_s += perf_counter() - start
        for field_name, counter in (("graph_s", "graph_seconds"), ("forward_s", "forward_seconds"), ("backward_s", "backward_seconds")):
            setattr(self.stats, field_name, getattr(self.model, counter, 0.0))
        self.stats.n_calls += 1
        self.stats.atoms_in_calls += int(state.n_atoms)
        self.stats.structures_in_calls += int(state.n_systems)
        self.stats.max_structures_in_call = max(self.stats.max_structures_in_call, int(state.n_systems))
        return out


@dataclass
class _Member:
    """A structure in the in-flight batch."""

    key: str
    structure: Structure
    candidate_id: str
    started: float = field(default_factory=perf_counter)
    steps: int = 0


class _InFlightBatch:
    """The batched engine's batch: structures join as others converge; one optimizer step per call."""

    def __init__(self, potential: Potential, settings: RelaxSettings, stats: RelaxServiceStats):
        from matris_flows.core.quiet import import_torch_sim
        from matris_flows.relax import torchsim_engine

        self.ts = import_torch_sim()
        self.engine = torchsim_engine
        self.potential, self.settings, self.stats = potential, settings, stats
        self.model = _TimedModel(potential.batched_model(), stats)
        self.optimizer = torchsim_engine.Optimizer(settings, self.ts)
        self.state = None
        self.members: list[_Member] = []
        self.atoms_cap: int | None = None

    @property
    def n_atoms(self) -> int:
        return sum(len(m.structure) for m in self.members)

    def admit(self, pending: deque, send: Callable[[Any], None]) -> None:
        """Move queued structures into the batch while they fit (at least one into an empty batch)."""
        if not pending:
            return
        if self.atoms_cap is None:  # sized once, on the first structures (probed on CUDA)
            first = [item[1] for item in itertools.islice(pending, 8)]
            self.atoms_cap = self.engine.atoms_cap_for(first, self.potential, self.model.model, self.ts)
            self.stats.atoms_cap = self.atoms_cap
        start, model_before = perf_counter(), self.stats.model_s
        room, joining = self.atoms_cap - self.n_atoms, []
        while pending and (len(pending[0][1]) <= room or not (self.members or joining)):
            key, structure, candidate_id = pending.popleft()
            problem = input_problem_for(structure, self.potential, self.settings)
            if problem:
                send(("done", [(key, failed_document(candidate_id, structure, problem, self.potential, self.settings, "torchsim"))]))
                continue
            joining.append(_Member(key, structure, candidate_id))
            room -= len(structure)
        if joining:
            send(("started", [m.key for m in joining]))
            fresh = self.optimizer.init(
                self.ts.io.structures_to_state([m.structure for m in joining], self.model.device, self.model.dtype), self.model
            )
            self.state = fresh if self.state is None else self.ts.concatenate_states([self.state, fresh])
            self.members.extend(joining)
        self.stats.batching_s += perf_counter() - start - (self.stats.model_s - model_before)

    def advance(self, send: Callable[[Any], None]) -> None:
        """Finish the converged (or out of steps) members, then step the rest once."""
        if self.state is None:
            return
        start = perf_counter()
        converged = self.optimizer.converged(self.state, None).cpu().tolist()
        out_of_steps = [m.steps >= self.settings.max_steps for m in self.members]
        finished = [i for i, (c, o) in enumerate(zip(converged, out_of_steps, strict=True)) if c or o]
        self.stats.optimizer_s += perf_counter() - start
        if finished:
            self._finish(finished, converged, send)
        if not self.members:
            self.state = None
            return
        start, model_before = perf_counter(), self.stats.model_s
        self.state = self.optimizer.step(self.state, self.model)
        for member in self.members:
            member.steps += 1
        self.stats.optimizer_s += perf_counter() - start - (self.stats.model_s - model_before)

    def _finish(self, indices: list[int], converged: list[bool], send: Callable[[Any], None]) -> None:
        start = perf_counter()
        popped = self.state.pop(indices)  # one single-system state per index, removed from the batch
        done = [self.members[i] for i in indices]
        for i in sorted(indices, reverse=True):
            del self.members[i]
        self.stats.batching_s += perf_counter() - start
        start, model_before = perf_counter(), self.stats.model_s
        now = perf_counter()
        documents = self.engine.documents_from_state(
            self.ts.concatenate_states(popped),
            [m.structure for m in done], [m.candidate_id for m in done],
            [converged[i] for i in indices], [m.steps for m in done], [now - m.started for m in done],
            self.potential, self.settings, self.atoms_cap,
        )
        self.stats.documents_s += perf_counter() - start - (self.stats.model_s - model_before)
        self.stats.n_structures += len(done)
        send(("done", [(m.key, d) for m, d in zip(done, documents, strict=True)]))

    def fall_back(self, error: Exception, send: Callable[[Any], None]) -> None:
        """The batched call failed (an exception, not a crash): relax the members one by one instead."""
        from matris_flows.relax import ase_engine

        logger.warning("batched relaxation failed (%s: %s); relaxing its %d structures one by one",
                       type(error).__name__, error, len(self.members))
        members, self.members, self.state = self.members, [], None
        for member in members:
            document, _ = ase_engine.relax_one(member.structure, member.candidate_id, self.potential, self.settings)
            self.stats.n_structures += 1
            send(("done", [(member.key, document)]))


class _OneAtATime:
    """The per-structure engine: ASE relaxes the next queued structure, whichever job sent it."""

    def __init__(self, potential: Potential, settings: RelaxSettings, stats: RelaxServiceStats):
        self.potential, self.settings, self.stats = potential, settings, stats
        self.members: list[_Member] = []
        self.state = None

    def admit(self, pending: deque, send: Callable[[Any], None]) -> None:
        if pending and not self.members:
            key, structure, candidate_id = pending.popleft()
            send(("started", [key]))
            self.members.append(_Member(key, structure, candidate_id))

    def advance(self, send: Callable[[Any], None]) -> None:
        from matris_flows.relax import ase_engine

        if not self.members:
            return
        member = self.members[0]
        start = perf_counter()
        document, _ = ase_engine.relax_one(member.structure, member.candidate_id, self.potential, self.settings)
        self.stats.model_s += perf_counter() - start  # the ASE loop's model calls and steps, not split
        self.stats.n_structures += 1
        self.members.clear()
        send(("done", [(member.key, document)]))

    def fall_back(self, error: Exception, send: Callable[[Any], None]) -> None:
        raise error  # relax_one turns every failure into a document: an exception here is a bug


def serve_relaxations(channel: Channel, potential: str, device: str, options: dict[str, Any], settings: RelaxSettings) -> None:
    """The service's loop, in its child process: relax what the parent sends until it says 'close'.

    Parent → child: ``("add", [(key, structure, candidate_id), ...])``, ``("withdraw", [key, ...])``,
    ``("close",)``. Child → parent: ``("ready", plan, stats)`` once (after the first structures
    where the engine is chosen by measuring on them), then ``("started", keys)``,
    ``("done", [(key, document), ...], stats)`` and ``("withdrawn", keys)`` (the queued ones of
    those asked for).
    """
    started = time.time()
    model = load_potential(potential, device=device, **options)
    resolved = resolve_settings(settings, model.name)
    pending: deque = deque()
    sample: list[Structure] = []
    if resolved.engine == "auto" and not model.device.startswith("cuda"):
        while not pending:  # the engine is measured on the first structures of the queue
            if not _take_messages(channel, pending, block=True):
                return
        sample = [item[1] for item in itertools.islice(pending, _SAMPLE_SIZE)]
    engine = choose_engine(resolved, model, sample)
    stats = RelaxServiceStats(
        worker=f"{socket.gethostname()}:{os.getppid()}", engine=engine, started_at=started, snapshot_at=started,
        load_s=time.time() - started,
    )
    channel.send(("ready", _plan(engine, resolved, model), stats))
    batch = (_InFlightBatch if engine == "torchsim" else _OneAtATime)(model, resolved, stats)

    def send(message: Any) -> None:
        if message[0] == "done":  # the figures travel with the results they include
            stats.snapshot_at = time.time()
            message = (*message, stats)
        channel.send(message)

    while True:
        idle = not pending and not batch.members
        wait_start = perf_counter()
        if not _take_messages(channel, pending, block=idle):
            return
        if idle:
            stats.idle_s += perf_counter() - wait_start
        try:
            batch.admit(pending, send)
            batch.advance(send)
        except Exception as exc:  # noqa: BLE001 - a model/optimizer exception costs the batch its batching, not its results
            batch.fall_back(exc, send)


def _take_messages(channel: Channel, pending: deque, block: bool) -> bool:
    """Apply the parent's messages (waiting for one if ``block``); False once it said 'close'."""
    message = channel.receive(None if block else 0.0)
    while message is not None:
        if message[0] == "close":
            return False
        if message[0] == "add":
            pending.extend(message[1])
        elif message[0] == "withdraw":
            wanted = set(message[1])
            taken = [item[0] for item in pending if item[0] in wanted]
            for item in [item for item in pending if item[0] in wanted]:
                pending.remove(item)
            channel.send(("withdrawn", taken))
        message = channel.receive(0.0)
    return True


def _plan(engine: str, settings: RelaxSettings, potential: Potential) -> RelaxPlan:
    return RelaxPlan(engine=engine, settings=settings, potential=potential.info())


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
            message = stream.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
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

    def _serve(self, stream) -> None:
        last_work = time.monotonic()
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    message = self._outbox.get_nowait()
                    if message[0] == "add":
                        self._send_items(stream, message[1])
                    else:
                        stream.send(message)
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
            _hand_over(service, [items[i] for i in withdrawn], list(withdrawn), outcomes)
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


def _hand_over(service: RelaxationService, items: list[tuple[Structure, str]], positions: list[int], outcomes: queue.Queue) -> None:
    """Run ``items`` on an idle worker's service; the results come back on ``outcomes`` as one :class:`_Stolen`."""
    worker = _idle_worker()
    if worker is None:  # the idle worker got work meanwhile: keep them
        for (structure, candidate_id), position in zip(items, positions, strict=True):
            service.submit([(structure, candidate_id)], outcomes, [position])
        return
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
