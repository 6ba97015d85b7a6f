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


def chunks_by_atoms(structures: list, max_atoms: int) -> list[list[int]]:
    """Consecutive index groups whose total atom count stays within ``max_atoms``."""
    chunks, current, atoms = [], [], 0
    for index, structure in enumerate(structures):
        if current and atoms + len(structure) > max_atoms:
            chunks.append(current)
            current, atoms = [], 0
        current.append(index)
        atoms += len(structure)
    return [*chunks, current] if current else chunks


class Optimizer:
    """TorchSim's counterpart of the ASE optimizer, cell filter and convergence rule in ``settings``."""

    def __init__(self, settings: RelaxSettings, ts):
        self.init_fn, step_fn = ts.OPTIM_REGISTRY[getattr(ts.Optimizer, _OPTIMIZERS[settings.optimizer])]
        self.init_kwargs = {"cell_filter": getattr(ts.CellFilter, _FILTERS[settings.cell_filter])} if settings.relax_cell else {}
        step_kwargs = {"fire_flavor": "ase_fire"} if settings.optimizer == "FIRE" else {}
        if settings.optimizer == "FIRE":
            self.init_kwargs["fire_flavor"] = "ase_fire"
        self._step_fn, self._step_kwargs = step_fn, step_kwargs
        # forces through the cell filter, as ASE judges convergence
        self.converged = ts.generate_force_convergence_fn(force_tol=settings.fmax, include_cell_forces=settings.relax_cell)

    def init(self, state, model):
        """The optimizer state of ``state`` (one model call)."""
        return self.init_fn(state, model, **self.init_kwargs)

    def step(self, state, model):
        """One optimizer step of every system in ``state`` (one model call)."""
        return self._step_fn(state=state, model=model, **self._step_kwargs)


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
        max_atoms_per_batch = atoms_cap_for(structures, potential, model, ts)
    optimizer = Optimizer(settings, ts)
    states = [
        optimizer.init(ts.io.structures_to_state([structures[i] for i in chunk], model.device, model.dtype), model)
        for chunk in chunks_by_atoms(structures, max_atoms_per_batch)
    ]
    batcher = InFlightAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=max_atoms_per_batch)
    batcher.load_states(ts.concatenate_states(states))
    steps = torch.zeros(len(structures), dtype=torch.long)
    converged = torch.zeros(len(structures), dtype=torch.bool)
    finished = []
    state, _ = batcher.next_batch(None, None)
    while state is not None:
        index = torch.as_tensor(batcher.current_idx)
        done = optimizer.converged(state, None).cpu()
        converged[index] = done
        state, completed = batcher.next_batch(state, done | (steps[index] >= settings.max_steps))
        finished.extend(completed)
        if state is None:
            break
        state = optimizer.step(state, model)
        steps[torch.as_tensor(batcher.current_idx)] += 1
    final = ts.concatenate_states(batcher.restore_original_order(finished))
    elapsed = (perf_counter() - start) / len(structures)  # shared model calls: split evenly
    return documents_from_state(
        final, structures, candidate_ids, converged.tolist(), steps.tolist(), [elapsed] * len(structures),
        potential, settings, max_atoms_per_batch,
    )


def documents_from_state(
    final,
    structures: list[Structure],
    candidate_ids: list[str],
    converged: list[bool],
    steps: list[int],
    wall_times: list[float],
    potential: Potential,
    settings: RelaxSettings,
    max_atoms_per_batch: int,
) -> list[RelaxationDocument]:
    """The documents of the relaxed systems of ``final`` (a TorchSim state, one system per structure, in order)."""
    ts = import_torch_sim()
    magmoms = _final_magmoms(final, potential.batched_model(), potential, max_atoms_per_batch)
    documents = []
    bounds = [0, *final.n_atoms_per_system.cumsum(0).tolist()]
    for i, (structure, relaxed) in enumerate(zip(structures, ts.io.state_to_structures(final), strict=True)):
        atoms = slice(bounds[i], bounds[i + 1])
        documents.append(
            finished_document(
                candidate_ids[i], structure, relaxed,
                energy=float(final.energy[i]),
                forces=final.forces[atoms].cpu().double().numpy(),
                stress_ev_a3=final.stress[i].cpu().double().numpy() if settings.relax_cell else None,
                magmoms=None if magmoms is None else magmoms[atoms],
                converged=bool(converged[i]),
                n_steps=int(steps[i]),
                wall_time_s=wall_times[i],
                potential=potential,
                settings=settings,
                engine=ENGINE,
            )
        )
    return documents


def atoms_cap_for(structures: list[Structure], potential: Potential, model, ts) -> int:
    """Memory-sized cap on atoms per batched call; on CUDA probed with the first few of ``structures``."""
    kind = potential.spec.kind.value
    if potential.spec.is_matris:
        kind = "matris_fast" if potential.options.get("fast_cpu_kernels", False) else "matris"
    probe = None
    if str(model.device).startswith("cuda"):
        first = chunks_by_atoms(structures, _PROBE_ATOMS)[0]
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
    for chunk in chunks_by_atoms([range(n) for n in counts], max_atoms):
        sub = state[chunk]
        out = model.predict_magmoms(sub) if hasattr(model, "predict_magmoms") else model(sub)
        if out is None or "magmoms" not in out:
            return None
        values.append(out["magmoms"].detach().cpu().double().numpy())
    return np.concatenate(values)
