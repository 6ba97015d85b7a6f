"""The relaxation service's child process: the model loaded once, one batch kept in flight.

:func:`serve_relaxations` runs in a :class:`~matris_flows.core.isolation.Sandbox` child, driven
over a :class:`~matris_flows.core.isolation.Channel` by
:class:`matris_flows.relax.service.RelaxationService`. With the
batched engine (:class:`_InFlightBatch`) a structure joins the batch as soon as another converges,
whichever job it came from; with ``ase`` (:class:`_OneAtATime`) structures run one after another.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from pymatgen.core import Structure

from matris_flows.core.isolation import Channel
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.relax.checks import input_problem_for
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.engine import choose_engine
from matris_flows.relax.schemas import RelaxPlan, RelaxServiceStats, RelaxSettings

logger = logging.getLogger(__name__)

_SAMPLE_SIZE = 4  # structures the engine is measured on (engine: auto, CPU)


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


