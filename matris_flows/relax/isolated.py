"""Relax a chunk in watched child processes: a structure that crashes, hangs or blows up memory fails alone.

The relaxation job's process (a Dask worker, or the driver with ``run_locally``) keeps
nothing but the bookkeeping. Its structures go to the process's relaxation service
(:mod:`matris_flows.relax.service`: the model loaded once, one in-flight batch shared with
the other relaxation jobs on the worker). If the service's child dies, passes a deadline
or its memory limit, the structures it had in flight are retried one per call in this
thread's own child (:mod:`matris_flows.core.isolation`), so the culprit is found and
recorded as a FAILED document whose reason names what happened, and the others are
relaxed as usual. Trajectories are recorded by the per-structure engine, one structure per
call in this thread's child.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymatgen.core import Structure

from matris_flows.core.ids import candidate_id
from matris_flows.core.isolation import IsolatedFailure, ItemFailure, map_isolated, sandbox, worker_memory_limit
from matris_flows.core.job_slot import waiting_elsewhere
from matris_flows.potentials.loader import load_potential
from matris_flows.relax.defaults import relax_timeout, resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.engine import relax_with_trajectories
from matris_flows.relax.progress import ChunkProgress, settings_fingerprint
from matris_flows.relax.schemas import RelaxationDocument, RelaxJobTimings, RelaxPlan, RelaxSettings, RelaxTrajectory
from matris_flows.relax.service import Suspect, relax_through_service, relaxation_service


def plan_per_structure(potential: str, device: str, options: dict[str, Any], settings: RelaxSettings) -> RelaxPlan:
    """Load the potential (in the child) for the per-structure engine, which records trajectories."""
    model = load_potential(potential, device=device, **options)
    return RelaxPlan(engine="ase", settings=resolve_settings(settings, model.name), potential=model.info())


def relax_items(
    items: Sequence[tuple[Structure, str]],
    *,
    potential: str,
    device: str,
    options: dict[str, Any],
    settings: RelaxSettings,
    engine: str,
    keep_trajectories: bool,
) -> list[tuple[RelaxationDocument, RelaxTrajectory | None]]:
    """Relax ``(structure, candidate_id)`` items (in the child); one (document, trajectory) per item."""
    model = load_potential(potential, device=device, **options)
    documents, trajectories = relax_with_trajectories(
        [s for s, _ in items], model, settings, [i for _, i in items], keep_trajectories=keep_trajectories, engine=engine
    )
    by_id = {t.candidate_id: t for t in trajectories or ()}
    return [(document, by_id.get(document.candidate_id)) for document in documents]


def _call_timeout(settings: RelaxSettings, items: Sequence[tuple[Structure, str]]) -> float:
    return relax_timeout(settings, sum(len(s) for s, _ in items), len(items))


@dataclass
class ChunkResult:
    """What relaxing a chunk gives: one document per structure, trajectories if asked, where the time went."""

    documents: list[RelaxationDocument]
    trajectories: list[RelaxTrajectory] | None
    timings: RelaxJobTimings | None = None


def relax_chunk(
    structures: Sequence[Structure],
    candidate_ids: Sequence[str] | None,
    potential: str,
    settings: RelaxSettings,
    device: str = "auto",
    potential_options: dict[str, Any] | None = None,
    keep_trajectories: bool = False,
) -> ChunkResult:
    """Relax a chunk, isolated in child processes unless ``settings.isolate`` is off.

    Returns one document per structure (input order) and, with ``keep_trajectories``, the
    trajectories. A structure whose call killed, hung or overfilled the child gets a FAILED
    document saying so; every other structure's result is what the engine gives in-process.
    """
    start = time.perf_counter()
    options = dict(potential_options or {})
    ids = list(candidate_ids) if candidate_ids is not None else [candidate_id(s) for s in structures]
    if not settings.isolate:
        model = load_potential(potential, device=device, **options)
        return ChunkResult(*relax_with_trajectories(structures, model, settings, ids, keep_trajectories=keep_trajectories))

    memory_limit = worker_memory_limit()
    service = None
    if keep_trajectories:  # frames come from the per-structure engine, one structure per call
        with sandbox(memory_limit) as box:
            try:
                plan = box.call(plan_per_structure, potential, device, options, settings)
            except IsolatedFailure as failure:  # no structure involved: the potential itself cannot load
                raise RuntimeError(f"loading potential {potential!r}: {failure.reason}") from None
    items = list(zip(structures, ids, strict=True))
    # a rerun of this job (its worker was lost) takes up where the last run stopped
    progress = ChunkProgress.for_current_job(
        settings_fingerprint(potential, device, options, settings.model_dump(mode="json"), keep_trajectories)
    )
    finished = progress.load() if progress is not None else {}
    todo = [k for k, (_, structure_id) in enumerate(items) if structure_id not in finished]
    if not keep_trajectories and todo:  # a rerun with nothing left to relax starts no service
        service = relaxation_service(potential, device, options, settings, memory_limit)
    suspects: list[int] = []

    def outcome(position: int, result: Any, among: list[int] = todo) -> None:
        if isinstance(result, Suspect):  # in flight with others when the service failed
            suspects.append(among[position])
            return
        structure, structure_id = items[among[position]]
        if isinstance(result, ItemFailure):
            result = (_failed(structure, structure_id, result, plan if service is None else service.plan), None)
        elif isinstance(result, RelaxationDocument):
            result = (result, None)
        finished[structure_id] = result
        if progress is not None:
            progress.record(*result)

    n_stolen = 0
    if service is not None:
        with waiting_elsewhere():  # another job on this worker may run, and feed the service, meanwhile
            n_stolen = relax_through_service(service, [items[k] for k in todo], outcome)
    alone = todo if service is None else sorted(suspects)
    if alone:
        plan = plan if service is None else service.plan
        call = partial(
            relax_items, potential=potential, device=device, options=options, settings=plan.settings,
            engine=plan.engine, keep_trajectories=keep_trajectories,
        )
        with sandbox(memory_limit) as box:
            map_isolated(
                box, call, [items[k] for k in alone], timeout_s=partial(_call_timeout, plan.settings),
                together=False, on_result=partial(outcome, among=alone),
            )

    documents = [finished[structure_id][0] for _, structure_id in items]
    trajectories = [finished[structure_id][1] for _, structure_id in items if finished[structure_id][1] is not None]
    if progress is not None:
        progress.remove()
    timings = RelaxJobTimings(
        wall_s=time.perf_counter() - start,
        service=service.stats if service is not None else None,
        n_stolen=n_stolen,
        n_retried_alone=len(suspects),
    )
    return ChunkResult(documents, trajectories if keep_trajectories else None, timings)


def _failed(structure: Structure, structure_id: str, failure: ItemFailure, plan: RelaxPlan) -> RelaxationDocument:
    """The FAILED document of a structure whose isolated call died, hung or overfilled memory."""
    reason = f"{failure.reason} while relaxing this structure ({structure.composition.reduced_formula}, {len(structure)} sites)"
    if failure.kind == "timeout":
        reason += "; relax.timeout_s sets the limit"
    return failed_document(structure_id, structure, reason, plan.potential, plan.settings, plan.engine)
