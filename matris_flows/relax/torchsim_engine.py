"""Batched relaxation with TorchSim: many cells per model call, converged ones swapped out in flight.

The loop mirrors ``torch_sim.optimize`` but keeps a per-structure step counter
(``optimize`` does not return one) and checks convergence after every step, the
way ASE does, so both engines stop at the same point.
"""

from time import perf_counter

import numpy as np
from pymatgen.core import Structure

from matris_flows.core.quiet import import_torch_sim
from matris_flows.potentials.loader import Potential
from matris_flows.relax.batch_size import batch_atoms_cap
from matris_flows.relax.documents import finished_document
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings

ENGINE = "torchsim"

# ASE names -> torch_sim enum member names; torch and torch_sim are imported when a batch is
# relaxed, never when the engine is merely chosen (importing them takes seconds and prints).
_OPTIMIZERS = {"FIRE": "fire", "BFGS": "bfgs", "LBFGS": "lbfgs"}
_FILTERS = {"FrechetCellFilter": "frechet", "UnitCellFilter": "unit"}
# Atoms in the CUDA memory probe: big enough that per-atom memory dominates fixed buffers.
_PROBE_ATOMS = 64


def supports(settings: RelaxSettings, potential: Potential) -> bool:
    """Whether this engine can run ``settings`` with ``potential`` (else the ASE engine is used)."""
    return (
        settings.optimizer in _OPTIMIZERS
        and (not settings.relax_cell or settings.cell_filter in _FILTERS)
        and not settings.fix_symmetry
        and potential.batched_model() is not None
    )


def _chunks_by_atoms(structures: list, max_atoms: int) -> list[list[int]]:
    """Consecutive index groups whose total atom count stays within ``max_atoms``."""
    chunks, current, atoms = [], [], 0
    for index, structure in enumerate(structures):
        if current and atoms + len(structure) > max_atoms:
            chunks.append(current)
            current, atoms = [], 0
        current.append(index)
        atoms += len(structure)
    return [*chunks, current] if current else chunks


def relax_batch(
    structures: list[Structure],
    candidate_ids: list[str],
    potential: Potential,
    settings: RelaxSettings,
    max_atoms_per_batch: int | None = None,
) -> list[RelaxationDocument]:
    """Relax pre-checked structures together; raises if the batched model fails (caller falls back).

    ``max_atoms_per_batch`` defaults to :func:`batch_atoms_cap` (free memory / bytes per atom).
    """
    ts = import_torch_sim()
    import torch
    from torch_sim.autobatching import InFlightAutoBatcher

    model = potential.batched_model()
    start = perf_counter()
    if max_atoms_per_batch is None:
        max_atoms_per_batch = _atoms_cap(structures, potential, model, ts)
    init_fn, step_fn = ts.OPTIM_REGISTRY[getattr(ts.Optimizer, _OPTIMIZERS[settings.optimizer])]
    init_kwargs = {"cell_filter": getattr(ts.CellFilter, _FILTERS[settings.cell_filter])} if settings.relax_cell else {}
    step_kwargs = {"fire_flavor": "ase_fire"} if settings.optimizer == "FIRE" else {}
    if settings.optimizer == "FIRE":
        init_kwargs["fire_flavor"] = "ase_fire"

    states = [
        init_fn(ts.io.structures_to_state([structures[i] for i in chunk], model.device, model.dtype), model, **init_kwargs)
        for chunk in _chunks_by_atoms(structures, max_atoms_per_batch)
    ]
    batcher = InFlightAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=max_atoms_per_batch)
    batcher.load_states(ts.concatenate_states(states))
    steps = torch.zeros(len(structures), dtype=torch.long)
    converged = torch.zeros(len(structures), dtype=torch.bool)
    converged_fn = ts.generate_force_convergence_fn(force_tol=settings.fmax, include_cell_forces=settings.relax_cell)
    finished = []
    state, _ = batcher.next_batch(None, None)
    while state is not None:
        index = torch.as_tensor(batcher.current_idx)
        done = converged_fn(state, None).cpu()
        converged[index] = done
        state, completed = batcher.next_batch(state, done | (steps[index] >= settings.max_steps))
        finished.extend(completed)
        if state is None:
            break
        state = step_fn(state=state, model=model, **step_kwargs)
        steps[torch.as_tensor(batcher.current_idx)] += 1
    final = ts.concatenate_states(batcher.restore_original_order(finished))

    magmoms = _final_magmoms(final, model, potential, max_atoms_per_batch)
    elapsed = (perf_counter() - start) / len(structures)  # shared model calls: split evenly
    documents = []
    for i, (structure, relaxed) in enumerate(zip(structures, ts.io.state_to_structures(final), strict=True)):
        atoms = slice(int(final.n_atoms_per_system[:i].sum()), int(final.n_atoms_per_system[: i + 1].sum()))
        documents.append(
            finished_document(
                candidate_ids[i], structure, relaxed,
                energy=float(final.energy[i]),
                forces=final.forces[atoms].cpu().double().numpy(),
                stress_ev_a3=final.stress[i].cpu().double().numpy() if settings.relax_cell else None,
                magmoms=None if magmoms is None else magmoms[atoms],
                converged=bool(converged[i]),
                n_steps=int(steps[i]),
                wall_time_s=elapsed,
                potential=potential,
                settings=settings,
                engine=ENGINE,
            )
        )
    return documents


def _atoms_cap(structures: list[Structure], potential: Potential, model, ts) -> int:
    """Memory-sized cap on atoms per call; on CUDA probed with the first few cells."""
    kind = "matris" if potential.spec.is_matris else potential.spec.kind.value
    probe = None
    if str(model.device).startswith("cuda"):
        first = _chunks_by_atoms(structures, _PROBE_ATOMS)[0]
        probe = ts.io.structures_to_state([structures[i] for i in first], model.device, model.dtype)
    return batch_atoms_cap(model, probe, kind=kind)


def _final_magmoms(state, model, potential: Potential, max_atoms: int) -> np.ndarray | None:
    """One extra batched call on the relaxed cells for models that predict magnetic moments.

    Magnetic moments are not needed by the optimizer, so they are left out of the
    per-step calls and computed once at the end.
    """
    if not potential.spec.predicts_magmoms:
        return None
    counts = state.n_atoms_per_system.tolist()
    values = []
    for chunk in _chunks_by_atoms([range(n) for n in counts], max_atoms):
        sub = state[chunk]
        out = model.predict_magmoms(sub) if hasattr(model, "predict_magmoms") else model(sub)
        if out is None or "magmoms" not in out:
            return None
        values.append(out["magmoms"].detach().cpu().double().numpy())
    return np.concatenate(values)
