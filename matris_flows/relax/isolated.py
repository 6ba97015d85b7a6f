"""Relax a chunk in a watched child process: a structure that crashes, hangs or blows up memory fails alone.

The relaxation job's process (a Dask worker, or the driver with ``run_locally``) keeps
nothing but the bookkeeping: the model is loaded and run in the child of
:mod:`matris_flows.core.isolation`. A batched chunk goes in one call; if the child
dies, passes its deadline or its memory limit, the chunk's structures are retried one per
call, so the culprit is found and recorded as a FAILED document whose reason names what
happened, and its chunk-mates are relaxed as usual. The per-structure engine runs one
structure per call from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from matris_flows.core.ids import candidate_id
from matris_flows.core.isolation import IsolatedFailure, ItemFailure, map_isolated, sandbox, worker_memory_limit
from matris_flows.potentials.loader import load_potential
from matris_flows.potentials.naming import PotentialInfo
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.engine import choose_engine, relax_with_trajectories
from matris_flows.relax.progress import ChunkProgress, settings_fingerprint
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings, RelaxTrajectory

# Default per-structure limit (RelaxSettings.timeout_s): a floor for model loading and
# short runs, plus a per atom-step allowance ~3x MatRIS-10M's measured 0.06 s on one CPU core.
_TIMEOUT_FLOOR_S = 300.0
_TIMEOUT_PER_ATOM_STEP_S = 0.2


class RelaxPlan(BaseModel):
    """What the child decided once the potential was loaded: engine, resolved settings, model info."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: str = Field(description="'ase' (one structure per call) or 'torchsim' (the chunk in one batched call).")
    settings: RelaxSettings = Field(description="Settings with the potential's defaults filled in.")
    potential: PotentialInfo = Field(description="The loaded model's identity, for documents of failed structures.")


def plan_relaxation(
    potential: str, device: str, options: dict[str, Any], settings: RelaxSettings, keep_trajectories: bool
) -> RelaxPlan:
    """Load the potential (in the child) and choose the engine, as :func:`relax_with_trajectories` would."""
    model = load_potential(potential, device=device, **options)
    resolved = resolve_settings(settings, model.name)
    engine = "ase" if keep_trajectories else choose_engine(resolved, model)
    return RelaxPlan(engine=engine, settings=resolved, potential=model.info())


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


def relax_timeout(settings: RelaxSettings, n_atoms: int) -> float:
    """Wall-time limit of one isolated call relaxing ``n_atoms`` atoms in all (see ``RelaxSettings.timeout_s``)."""
    if settings.timeout_s is not None:
        return settings.timeout_s
    return _TIMEOUT_FLOOR_S + _TIMEOUT_PER_ATOM_STEP_S * n_atoms * (settings.max_steps or 500)


def _call_timeout(settings: RelaxSettings, items: Sequence[tuple[Structure, str]]) -> float:
    if settings.timeout_s is not None:  # a limit per structure: a batch may take as long as its members in turn
        return settings.timeout_s * len(items)
    return relax_timeout(settings, sum(len(s) for s, _ in items))


def relax_chunk(
    structures: Sequence[Structure],
    candidate_ids: Sequence[str] | None,
    potential: str,
    settings: RelaxSettings,
    device: str = "auto",
    potential_options: dict[str, Any] | None = None,
    keep_trajectories: bool = False,
) -> tuple[list[RelaxationDocument], list[RelaxTrajectory] | None]:
    """Relax a chunk, isolated in a child process unless ``settings.isolate`` is off.

    Returns one document per structure (input order) and, with ``keep_trajectories``, the
    trajectories. A structure whose call killed, hung or overfilled the child gets a FAILED
    document saying so; every other structure's result is what the engine gives in-process.
    """
    options = dict(potential_options or {})
    ids = list(candidate_ids) if candidate_ids is not None else [candidate_id(s) for s in structures]
    if not settings.isolate:
        model = load_potential(potential, device=device, **options)
        return relax_with_trajectories(structures, model, settings, ids, keep_trajectories=keep_trajectories)

    with sandbox(worker_memory_limit()) as box:
        try:
            plan = box.call(plan_relaxation, potential, device, options, settings, keep_trajectories)
        except IsolatedFailure as failure:  # no structure involved: the potential itself cannot load
            raise RuntimeError(f"loading potential {potential!r}: {failure.reason}") from None
        items = list(zip(structures, ids, strict=True))
        # a rerun of this job (its worker was lost) takes up where the last run stopped
        progress = ChunkProgress.for_current_job(
            settings_fingerprint(potential, device, options, plan.settings.model_dump(mode="json"), keep_trajectories)
        )
        finished = progress.load() if progress is not None else {}
        todo = [k for k, (_, structure_id) in enumerate(items) if structure_id not in finished]

        def outcome(position: int, result: Any) -> None:
            structure, structure_id = items[todo[position]]
            if isinstance(result, ItemFailure):
                result = (_failed(structure, structure_id, result, plan), None)
            finished[structure_id] = result
            if progress is not None:
                progress.record(*result)

        call = partial(
            relax_items, potential=potential, device=device, options=options, settings=plan.settings,
            engine=plan.engine, keep_trajectories=keep_trajectories,
        )
        map_isolated(
            box, call, [items[k] for k in todo], timeout_s=partial(_call_timeout, plan.settings),
            together=plan.engine == "torchsim", on_result=outcome,
        )

    documents = [finished[structure_id][0] for _, structure_id in items]
    trajectories = [finished[structure_id][1] for _, structure_id in items if finished[structure_id][1] is not None]
    if progress is not None:
        progress.remove()
    return documents, (trajectories if keep_trajectories else None)


def _failed(structure: Structure, structure_id: str, failure: ItemFailure, plan: RelaxPlan) -> RelaxationDocument:
    """The FAILED document of a structure whose isolated call died, hung or overfilled memory."""
    reason = f"{failure.reason} while relaxing this structure ({structure.composition.reduced_formula}, {len(structure)} sites)"
    if failure.kind == "timeout":
        reason += "; relax.timeout_s sets the limit"
    return failed_document(structure_id, structure, reason, plan.potential, plan.settings, plan.engine)
