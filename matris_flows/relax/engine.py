"""Relax a list of structures with the best engine available for the potential and device."""

import logging
from collections.abc import Sequence
from time import perf_counter

from pymatgen.core import Structure

from matris_flows.core.ids import candidate_id
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import DEFAULT_POTENTIAL, PotentialKind
from matris_flows.relax import ase_engine, torchsim_engine
from matris_flows.relax.checks import input_problem_for
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.documents import failed_document
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings, RelaxTrajectory

logger = logging.getLogger(__name__)


# Measured on 2 CPU cores (benchmarks/relax_throughput.py, 32 cells of 2-16 atoms): batched
# CHGNet relaxed 3.1x faster than per-structure ASE in one process, its per-call overhead
# dominating small cells. MatRIS-10M on CPU gains nothing from batching and needs GBs for it.
# The table is the choice without structures to measure on (see measured_engine).
_BATCHES_ON_CPU = {PotentialKind.CHGNET}
# The per-structure engine must beat the batched one per atom by this much to be measured faster:
# a margin against timing noise deciding between two engines that are about as fast.
_ASE_MARGIN = 0.9
_REPEATS = 3  # timed evaluations per engine; the fastest counts (the others met a busy core)


def _seconds(call) -> float:
    start = perf_counter()
    call()
    return perf_counter() - start


def choose_engine(settings: RelaxSettings, potential: Potential, sample: Sequence[Structure] = ()) -> str:
    """'torchsim' where batching pays and is supported, else 'ase'.

    ``auto`` batches on GPUs. On CPUs, given ``sample`` structures (the first of a campaign's
    queue), it times one model evaluation of them each way and takes the faster per atom
    (:func:`measured_engine`); without, it batches the potentials measured to gain from it.
    """
    if settings.engine == "ase":
        return "ase"
    batched_ok = torchsim_engine.supports(settings, potential)
    if settings.engine == "torchsim":
        if not batched_ok:
            logger.warning("torchsim engine cannot run these settings/potential; using ase")
        return "torchsim" if batched_ok else "ase"
    if not batched_ok:
        return "ase"
    if potential.device.startswith("cuda"):
        return "torchsim"
    if sample:
        return measured_engine(potential, settings, sample)[0]
    return "torchsim" if potential.spec.kind in _BATCHES_ON_CPU else "ase"


def measured_engine(potential: Potential, settings: RelaxSettings, sample: Sequence[Structure]) -> tuple[str, dict[str, float]]:
    """The faster engine on ``sample``, and each engine's seconds per atom of one energy/forces/stress evaluation.

    The batched model evaluates the sample in one call, the ASE calculator one structure at
    a time, each after a warm-up call; ``ase`` wins only if faster by more than the margin.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from matris_flows.core.quiet import import_torch_sim

    ts = import_torch_sim()
    sample = [s for s in sample if not input_problem_for(s, potential, settings)]
    if not sample:
        return ("torchsim" if potential.spec.kind in _BATCHES_ON_CPU else "ase"), {}
    n_atoms = sum(len(s) for s in sample)
    model = potential.batched_model()
    state = ts.io.structures_to_state(list(sample), model.device, model.dtype)
    model(state)  # warm-up: first-call allocations and lazy initialisation
    batched = min(_seconds(lambda: model(state)) for _ in range(_REPEATS)) / n_atoms
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in sample]
    properties = ["energy", "forces", "stress"] if settings.relax_cell else ["energy", "forces"]
    potential.calculator.calculate(atoms[0], properties)  # warm-up

    def one_by_one() -> None:
        for one in atoms:
            potential.calculator.calculate(one, properties)

    per_structure = min(_seconds(one_by_one) for _ in range(_REPEATS)) / n_atoms
    potential.calculator.reset()
    times = {"torchsim": batched, "ase": per_structure}
    engine = "ase" if per_structure < _ASE_MARGIN * batched else "torchsim"
    logger.info("engine %s by measurement on %d structures (%.2f ms/atom batched, %.2f ms/atom per structure)",
                engine, len(sample), 1e3 * batched, 1e3 * per_structure)
    return engine, times


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
        problem = input_problem_for(structure, potential, settings)
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
