"""One model's opinion on a chunk of shortlisted candidates: energies, then each on that model's reference hull.

Single points run in the worker's isolated child process (:mod:`matris_flows.core.isolation`),
batched through the potential's TorchSim model where it has one (MatRIS, CHGNet), one cell at
a time through its ASE calculator otherwise. The child matters twice: a structure that crashes
native code, hangs or overfills memory fails alone (the others are retried one by one), and
the child runs with glibc's default allocator settings, not the Dask worker's
``MALLOC_TRIM_THRESHOLD_``, under which HIENet's single points took 2.5x as long. A model that
raises or returns a non-finite energy fails only that candidate, with the reason. ``relax``
mode goes through the relaxation stage's isolated engine.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.consensus.schemas import ModelOpinion
from matris_flows.consensus.settings import OpinionPotential
from matris_flows.core.isolation import ItemFailure, map_isolated, sandbox, worker_memory_limit
from matris_flows.core.quiet import silence_library_warnings
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import PotentialInfo
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.isolated import relax_chunk
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.thermo.assess import assess_entries
from matris_flows.thermo.consistent_references import potential_fingerprint, settings_hash
from matris_flows.thermo.mp_compat import build_computed_entry, correct_entry
from matris_flows.thermo.references import ReferenceProvider

logger = logging.getLogger(__name__)

_BATCH_ATOMS = 2000  # atoms per batched single-point call on a CPU (memory is not the limit there)
_LOAD_TIMEOUT_S = 600.0  # loading a model in the child (weights from disk, imports)
_CALL_FLOOR_S = 120.0  # a single-point call's deadline: this, plus per atom
_CALL_PER_ATOM_S = 2.0


def opinion_relax_settings(campaign: RelaxSettings, potential: str) -> RelaxSettings:
    """relax mode: the campaign's optimizer, filter and checks with ``potential``'s own benchmarked fmax and steps."""
    return resolve_settings(campaign.model_copy(update={"fmax": None, "max_steps": None, "defaults_source": None}), potential)


def opinion_key(opinion: OpinionPotential, mode: str, relax: RelaxSettings | None = None) -> str:
    """What makes two opinions the same: the weights and options, the mode and (relax mode) the settings."""
    parts = [potential_fingerprint(opinion.name, opinion.options), mode]
    if mode == "relax" and relax is not None:
        parts.append(settings_hash(relax, opinion.options))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def _one_by_one(potential: Potential, structures: Sequence[Structure]) -> list[tuple[float, float] | str]:
    """(total energy, max force) or the failure, per structure, through the ASE calculator."""
    import numpy as np

    results: list[tuple[float, float] | str] = []
    for structure in structures:
        try:
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = potential.calculator
            energy = float(atoms.get_potential_energy())
            forces = atoms.get_forces()
            max_force = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
        except Exception as exc:  # noqa: BLE001 - any model error fails this candidate only, with its reason
            results.append(f"{type(exc).__name__}: {exc}"[:500])
            continue
        results.append((energy, max_force) if _finite(energy) and _finite(max_force) else f"non-finite energy {energy}")
    return results


def _batched(model, structures: Sequence[Structure]) -> list[tuple[float, float] | str]:
    """The same through the potential's TorchSim model, cells grouped up to a number of atoms per call."""
    from matris_flows.core.quiet import import_torch_sim
    from matris_flows.relax.torchsim_engine import chunks_by_atoms

    ts = import_torch_sim()
    results: list[tuple[float, float] | str] = []
    for group in chunks_by_atoms(list(structures), _BATCH_ATOMS):
        state = ts.io.structures_to_state([structures[i] for i in group], model.device, model.dtype)
        out = model(state)
        energies = out["energy"].detach().reshape(-1).cpu().tolist()
        force_norms = out["forces"].detach().norm(dim=1).cpu()
        system = state.system_idx.cpu()
        for k, energy in enumerate(energies):
            norms = force_norms[system == k]
            max_force = float(norms.max()) if len(norms) else 0.0
            results.append((float(energy), max_force) if _finite(energy) and _finite(max_force) else f"non-finite energy {energy}")
    return results


def single_points(potential: Potential, structures: Sequence[Structure]) -> list[tuple[float, float] | str]:
    """(total energy eV, max force eV/Å) or the reason there is none, per structure, batched where the potential allows."""
    model = potential.batched_model()
    if model is not None:
        try:
            return _batched(model, structures)
        except Exception:  # noqa: BLE001 - a batch that fails is retried one cell at a time, where the culprit fails alone
            pass
    return _one_by_one(potential, structures)


def _load_in_child(name: str, device: str, options: dict, _: Sequence[Any]) -> list[dict]:
    """In the child: load (and keep) the model; its provenance, as a one-item list."""
    silence_library_warnings()  # a fresh process: the console gets the campaign's warnings, not the libraries' noise
    return [load_potential(name, device=device, **options).info().model_dump(mode="json")]


def _single_points_in_child(name: str, device: str, options: dict, structures: Sequence[Structure]) -> list:
    """In the child: :func:`single_points` with the model it keeps loaded."""
    return single_points(load_potential(name, device=device, **options), structures)


def _call_timeout(structures: Sequence[Structure]) -> float:
    return _CALL_FLOOR_S + _CALL_PER_ATOM_S * sum(len(s) for s in structures)


def isolated_single_points(
    opinion: OpinionPotential, structures: Sequence[Structure]
) -> tuple[PotentialInfo, list[tuple[float, float] | str]]:
    """The model's provenance and :func:`single_points` of ``structures``, in the worker's isolated child.

    Raises whatever loading the model raised (IsolatedFailure if the load killed the child).
    """
    with sandbox(worker_memory_limit()) as box:
        info = box.call(_load_in_child, opinion.name, opinion.device, opinion.options, [None], timeout_s=_LOAD_TIMEOUT_S)[0]
        call = partial(_single_points_in_child, opinion.name, opinion.device, opinion.options)
        results = map_isolated(box, call, list(structures), timeout_s=_call_timeout, together=True)
    out = [f"{r.kind}: {r.reason}" if isinstance(r, ItemFailure) else r for r in results]
    return PotentialInfo.model_validate(info), out


def score_chunk(
    opinion: OpinionPotential,
    mode: str,
    candidate_ids: Sequence[str],
    structures: Sequence[Structure],
    fingerprints: Sequence[str],
    references: ReferenceProvider,
    campaign: str | None = None,
    relax: RelaxSettings | None = None,
) -> list[ModelOpinion]:
    """One :class:`ModelOpinion` per candidate: ``opinion``'s energy (single point or relaxation) on its reference hull.

    ``references`` is the hull on that model's scale: MP entries for MP-compatible models
    (MP2020 applied where the model learned raw MPtrj energies), its consistent reference set
    otherwise. A model that cannot be loaded fails every candidate of the chunk, with the reason.
    """
    start = time.perf_counter()
    key = opinion_key(opinion, mode, relax)
    base = [
        {
            "opinion_id": f"{cid}:{key}", "opinion_key": key, "candidate_id": cid, "campaign": campaign,
            "chemsys": structure.composition.chemical_system, "formula": structure.composition.reduced_formula,
            "model": opinion.label, "mode": mode, "input_fingerprint": fingerprint,
        }
        for cid, structure, fingerprint in zip(candidate_ids, structures, fingerprints, strict=True)
    ]
    scored: dict[int, dict[str, Any]] = {}
    failures: dict[int, str] = {}
    try:
        if mode == "relax":
            info = load_potential(opinion.name, device=opinion.device, **opinion.options).info()
        else:
            info, points = isolated_single_points(opinion, structures)
    except Exception as exc:  # noqa: BLE001 - an unusable model (or a load that killed the child) marks its candidates
        reason = f"could not load {opinion.label}: {type(exc).__name__}: {exc}"[:500]
        now = datetime.datetime.now(datetime.UTC).isoformat()
        return [ModelOpinion(**b, status="failed", failure_reason=reason, scored_at=now) for b in base]
    loaded = time.perf_counter()
    if mode == "relax":
        settings = relax or opinion_relax_settings(RelaxSettings(), opinion.name)
        chunk = relax_chunk(structures, list(candidate_ids), opinion.name, settings, opinion.device, opinion.options)
        for i, doc in enumerate(chunk.documents):
            if not doc.succeeded:
                failures[i] = f"relaxation {doc.status.value}: {doc.failure_reason or 'no energy'}"
                continue
            scored[i] = {"energy": doc.energy, "structure": doc.structure, "max_force": doc.max_force,
                         "converged": doc.converged, "n_steps": doc.n_steps}
    else:
        for i, result in enumerate(points):
            if isinstance(result, str):
                failures[i] = result
            else:
                scored[i] = {"energy": result[0], "structure": structures[i], "max_force": result[1]}

    logger.info("%s: %d candidates scored (%s) in %.1f s", opinion.label, len(structures), mode, loaded - start)
    # onto that model's reference hull
    entries = {}
    for i, values in scored.items():
        entry = build_computed_entry(values["structure"], values["energy"], candidate_ids[i])
        corrected = correct_entry(entry, info.energy_convention)
        if corrected.ok:
            entries[i] = corrected.entry
        else:
            failures[i] = corrected.rejected_reason or "rejected"
    order = sorted(entries)
    assessments = assess_entries([entries[i] for i in order], references, campaign_hull=False)
    hulls = dict(zip(order, assessments, strict=True))

    share = (time.perf_counter() - start) / max(1, len(structures))
    now = datetime.datetime.now(datetime.UTC).isoformat()
    opinions = []
    for i, b in enumerate(base):
        result = hulls.get(i)
        if i in failures or result is None or result.error is not None:
            reason = failures.get(i) or (str(result.error) if result is not None else "no energy")
            opinions.append(ModelOpinion(**b, status="failed", failure_reason=reason, potential=info, elapsed_s=share, scored_at=now))
            continue
        values = scored[i]
        n_atoms = len(values["structure"])
        opinions.append(
            ModelOpinion(
                **b,
                status="ok",
                energy_per_atom=values["energy"] / n_atoms,
                corrected_energy_per_atom=entries[i].energy_per_atom,
                formation_energy_per_atom=result.reference.formation_energy_per_atom,
                e_above_hull=result.reference.e_above_hull,
                hull_kind=references.hull_kind,
                converged=values.get("converged"),
                n_steps=values.get("n_steps"),
                max_force=values["max_force"],
                structure=values["structure"] if mode == "relax" else None,
                potential=info,
                elapsed_s=share,
                scored_at=now,
            )
        )
    return opinions
