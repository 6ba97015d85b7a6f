"""Relax a list of structures with the best engine available for the potential and device."""

import logging
from collections.abc import Sequence

from pymatgen.core import Structure

from matris_flows.core.ids import candidate_id
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import DEFAULT_POTENTIAL, PotentialKind
from matris_flows.relax import ase_engine, torchsim_engine
from matris_flows.relax.checks import input_problem
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings, RelaxTrajectory

logger = logging.getLogger(__name__)


# Measured on 2 CPU cores (benchmarks/relax_throughput.py, 32 cells of 2-16 atoms): batched
# CHGNet relaxed 3.1x faster than per-structure ASE in one process, its per-call overhead
# dominating small cells. MatRIS-10M on CPU gains nothing from batching and needs GBs for it.
_BATCHES_ON_CPU = {PotentialKind.CHGNET}


def choose_engine(settings: RelaxSettings, potential: Potential) -> str:
    """'torchsim' where batching pays and is supported, else 'ase'.

    ``auto`` batches on GPUs, and on CPUs only for potentials measured to gain from it.
    """
    if settings.engine == "ase":
        return "ase"
    batched_ok = torchsim_engine.supports(settings, potential)
    if settings.engine == "torchsim":
        if not batched_ok:
            logger.warning("torchsim engine cannot run these settings/potential; using ase")
        return "torchsim" if batched_ok else "ase"
    pays = potential.device.startswith("cuda") or potential.spec.kind in _BATCHES_ON_CPU
    return "torchsim" if batched_ok and pays else "ase"


def relax_with_trajectories(
    structures: Sequence[Structure],
    potential: str | Potential = DEFAULT_POTENTIAL,
    settings: RelaxSettings | None = None,
    candidate_ids: Sequence[str] | None = None,
    device: str = "auto",
    keep_trajectories: bool = False,
    engine: str | None = None,
) -> tuple[list[RelaxationDocument], list[RelaxTrajectory] | None]:
    """Relax ``structures``; return one document per structure (input order) and optional trajectories.

    Bad inputs and model failures become FAILED documents; the other structures finish.
    Trajectories are recorded by the per-structure engine only. ``engine`` ('ase' or
    'torchsim') overrides the choice of :func:`choose_engine` (as made by a caller that
    already chose).
    """
    potential = potential if isinstance(potential, Potential) else load_potential(potential, device=device)
    settings = resolve_settings(settings, potential.name)  # unset fmax/max_steps: the potential's benchmark values
    ids = list(candidate_ids) if candidate_ids is not None else [candidate_id(s) for s in structures]
    if len(ids) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(ids)} candidate ids")
    engine = "ase" if keep_trajectories else (engine or choose_engine(settings, potential))

    documents: list[RelaxationDocument | None] = [None] * len(structures)
    trajectories: list[RelaxTrajectory] = []
    batch: list[int] = []
    for index, structure in enumerate(structures):
        if engine == "ase":
            documents[index], trajectory = ase_engine.relax_one(structure, ids[index], potential, settings, keep_trajectories)
            if trajectory is not None:
                trajectories.append(trajectory)
            continue
        problem = input_problem(structure, potential.unsupported_elements([e.symbol for e in structure.composition]), settings)
        if problem:
            documents[index] = failed_document(ids[index], structure, problem, potential, settings, torchsim_engine.ENGINE)
        else:
            batch.append(index)

    if batch:
        try:
            batched = torchsim_engine.relax_batch([structures[i] for i in batch], [ids[i] for i in batch], potential, settings)
        except Exception as exc:  # noqa: BLE001 - one bad cell can break a whole batched call: redo the chunk one by one
            logger.warning("batched relaxation failed (%s: %s); relaxing one by one", type(exc).__name__, exc)
            batched = [ase_engine.relax_one(structures[i], ids[i], potential, settings)[0] for i in batch]
        for index, document in zip(batch, batched, strict=True):
            documents[index] = document
    return documents, (trajectories if keep_trajectories else None)


def relax_structures(
    structures: Sequence[Structure],
    potential: str | Potential = DEFAULT_POTENTIAL,
    settings: RelaxSettings | None = None,
    candidate_ids: Sequence[str] | None = None,
    device: str = "auto",
) -> list[RelaxationDocument]:
    """Relax ``structures`` and return one :class:`RelaxationDocument` per structure, in order."""
    return relax_with_trajectories(structures, potential, settings, candidate_ids, device)[0]
