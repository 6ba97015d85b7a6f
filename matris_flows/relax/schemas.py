"""Output documents of the relaxation stage (emmet style: every field described)."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from matris_flows.core.serialization import JsonStructure
from matris_flows.generation.schemas import CandidateIdentity
from matris_flows.potentials.naming import PotentialInfo


class RelaxStatus(StrEnum):
    """Outcome of one structure's relaxation."""

    CONVERGED = "converged"
    NOT_CONVERGED = "not_converged"
    FAILED = "failed"


class RelaxSettings(BaseModel):
    """Relaxation settings, recorded with every result.

    FIRE + FrechetCellFilter, as in the Matbench Discovery runs. ``fmax`` and ``max_steps``
    left unset (None) take the potential's benchmark values from
    :mod:`matris_flows.relax.defaults` (MatRIS-10M-OAM: 0.02 eV/Å; CHGNet, SevenNet,
    HIENet, MatRIS-10M-MP: 0.05; 500 steps) when the relaxation starts; the documents
    record the values used and ``defaults_source``.
    """

    model_config = ConfigDict(extra="forbid")

    optimizer: str = Field("FIRE", description="ASE optimizer name (FIRE, BFGS, LBFGS, ...).")
    cell_filter: str = Field("FrechetCellFilter", description="ASE filter used when the cell relaxes.")
    relax_cell: bool = Field(True, description="Relax lattice vectors as well as positions.")
    fmax: float | None = Field(
        None, gt=0, description="Force (and cell-force) convergence threshold, eV/Å; None: the potential's benchmark value."
    )
    max_steps: int | None = Field(None, ge=0, description="Maximum number of optimizer steps; None: the potential's benchmark value.")
    fix_symmetry: bool = Field(False, description="Keep the input space group (ASE FixSymmetry).")
    symprec: float = Field(1e-3, gt=0, description="Symmetry tolerance for fix_symmetry, Å.")
    engine: str = Field(
        "auto",
        description="'ase' (per structure), 'torchsim' (batched) or 'auto': batched on GPUs; on CPUs the faster of the two per "
        "atom, timed on the first structures a worker's relaxation service receives.",
    )
    min_distance: float = Field(0.5, gt=0, description="Interatomic distances below this (Å) fail the input.")
    max_volume_ratio: float = Field(
        3.0, gt=1, description="A relaxation whose volume changes by more than this factor is failed."
    )
    collapse_fraction: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="A relaxed structure with two atoms closer than this fraction of the sum of their covalent radii "
        "has collapsed: the relaxation is failed with the pair named.",
    )
    isolate: bool = Field(
        True,
        description="Relax in a child process watched from outside, so a structure that crashes native code, hangs or "
        "blows up memory fails alone (with the reason) instead of killing the worker and its chunk-mates.",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        description="Wall-time limit per structure, s (isolated runs only); None: 300 s + 0.2 s per atom and allowed step "
        "(generous for MatRIS-10M on one CPU core, ~0.06 s per atom-step). A batch gets the limit of its summed atoms.",
    )
    defaults_source: str | None = Field(
        None, description="Which values came from the per-potential defaults table, and that table's source (model card)."
    )


class RelaxationOutcome(BaseModel):
    """What every record of a relaxation holds: status, numbers and provenance, no arrays.

    The full record (:class:`RelaxationDocument`) and the one a candidate document keeps
    (:class:`RelaxationSummary`) share these fields, so they mean the same in both.
    """

    status: RelaxStatus = Field(description="converged, not_converged or failed.")
    converged: bool = Field(
        False,
        description="Whether the forces fell below fmax within max_steps (status converged). Unconverged results are never "
        "called stable or sent to DFT unless the spec allows it (hull.allow_unconverged).",
    )
    failure_reason: str | None = Field(None, description="Why the relaxation failed or did not converge.")
    energy: float | None = Field(None, description="Total energy of the relaxed structure, eV (model convention).")
    energy_per_atom: float | None = Field(None, description="Energy per atom, eV/atom.")
    max_force: float | None = Field(None, description="Largest final atomic force norm, eV/Å.")
    volume_ratio: float | None = Field(None, description="Relaxed over input volume.")
    n_steps: int = Field(0, description="Optimizer steps taken.")
    wall_time_s: float = Field(0.0, description="Wall time spent on this structure, s (shared time split evenly when batched).")
    engine: str = Field(description="Engine that relaxed it: 'ase' or 'torchsim'.")
    potential: PotentialInfo = Field(description="Model, checkpoint hash and package versions.")
    settings: RelaxSettings = Field(description="Relaxation settings used.")
    trajectory_stored: bool = Field(False, description="Whether the trajectory went to the data store.")

    @model_validator(mode="after")
    def _converged_follows_status(self):
        # One source of truth: the flag is the status, spelled as a queryable boolean.
        self.converged = self.status is RelaxStatus.CONVERGED
        return self


class RelaxationDocument(CandidateIdentity, RelaxationOutcome):
    """One structure's relaxation: input, result, status and provenance (formula and sites of the input structure)."""

    input_structure: JsonStructure = Field(description="Structure before relaxation.")
    structure: JsonStructure | None = Field(None, description="Relaxed structure (last frame if not converged).")
    forces: list[list[float]] | None = Field(None, description="Final forces, eV/Å.")
    stress: list[list[float]] | None = Field(None, description="Final stress tensor, GPa (ASE sign convention).")
    magmoms: list[float] | None = Field(None, description="Final magnetic moments, μB, where the model predicts them.")

    @property
    def succeeded(self) -> bool:
        """True when a relaxed structure and energy exist (converged or not)."""
        return self.status is not RelaxStatus.FAILED and self.energy is not None

    def summary(self, relax_job: str | None = None) -> "RelaxationSummary":
        """The scalar part of this record, for documents that must stay small."""
        return RelaxationSummary(**self.model_dump(include=set(RelaxationOutcome.model_fields)), relax_job=relax_job)


class RelaxationSummary(RelaxationOutcome):
    """What a candidate document keeps of its relaxation: status, numbers and provenance, no arrays.

    The full record (input structure, forces, stress, magnetic moments) stays in the
    relaxation job's output, in the job store's ``data`` store, found by ``relax_job``.
    """

    relax_job: str | None = Field(None, description="uuid of the relaxation job whose output holds the full record.")


class RelaxTrajectory(BaseModel):
    """Relaxation frames of one candidate; large, so stored under the 'data' store key."""

    candidate_id: str = Field(description="Candidate the frames belong to.")
    energies: list[float] = Field(description="Total energy per frame, eV.")
    cells: list[list[list[float]]] = Field(description="Lattice matrix per frame, Å.")
    positions: list[list[list[float]]] = Field(description="Cartesian positions per frame, Å.")


class RelaxPlan(BaseModel):
    """What a relaxation process decided once the potential was loaded: engine, resolved settings, model info."""

    engine: str = Field(description="'ase' (one structure at a time) or 'torchsim' (in-flight batches).")
    settings: RelaxSettings = Field(description="Settings with the potential's defaults filled in.")
    potential: PotentialInfo = Field(description="The loaded model's identity, for documents of failed structures.")


class RelaxServiceStats(BaseModel):
    """Where a worker's relaxation service spent its time, cumulated since it started.

    One service (a child process holding the model) runs per worker process and relaxes the
    structures of every relaxation job on that worker; each job's output carries the
    snapshot taken when its last structure finished, so the newest snapshot per ``worker``
    describes the whole run of that service.
    """

    worker: str = Field(description="host:pid of the service's process.")
    engine: str = Field(description="'torchsim' (in-flight batch) or 'ase' (one structure at a time).")
    started_at: float = Field(description="When the service started (Unix time, s).")
    snapshot_at: float = Field(description="When these figures were taken (Unix time, s).")
    load_s: float = Field(0.0, description="Loading the potential, s.")
    model_s: float = Field(0.0, description="Model calls (graph building, forward and backward pass), s.")
    graph_s: float = Field(0.0, description="Part of model_s spent building neighbour lists/graphs, s (where the model reports it).")
    forward_s: float = Field(0.0, description="Part of model_s in the forward pass, s (where the model reports it).")
    backward_s: float = Field(0.0, description="Part of model_s in the backward pass (forces, stress), s (where the model reports it).")
    optimizer_s: float = Field(0.0, description="Optimizer and cell-filter updates and convergence checks, s.")
    batching_s: float = Field(0.0, description="Adding structures to and removing them from the in-flight batch, s.")
    documents_s: float = Field(0.0, description="Building the result documents (final magnetic moments, checks), s.")
    idle_s: float = Field(0.0, description="Waiting for structures with nothing in flight, s.")
    n_calls: int = Field(0, description="Model calls made.")
    atoms_in_calls: int = Field(0, description="Sum over model calls of the atoms in the call.")
    structures_in_calls: int = Field(0, description="Sum over model calls of the structures in the call.")
    max_structures_in_call: int = Field(0, description="Most structures one model call held.")
    atoms_cap: int = Field(0, description="Most atoms one model call may hold (the batch's capacity).")
    n_structures: int = Field(0, description="Structures finished by the service.")


class RelaxJobTimings(BaseModel):
    """What one relaxation job waited for and where its structures ran."""

    wall_s: float = Field(description="The job's wall time, s.")
    service: RelaxServiceStats | None = Field(None, description="The worker's relaxation service after this job's last structure.")
    n_stolen: int = Field(0, description="Structures of this job relaxed by another worker's service (tail work-stealing).")
    n_retried_alone: int = Field(0, description="Structures retried one per call after the service failed with them in flight.")


class RelaxBatchOutput(BaseModel):
    """Output of one relaxation job: a chunk of candidates."""

    documents: list[RelaxationDocument] = Field(description="One document per input structure, in input order.")
    trajectories: list[RelaxTrajectory] | None = Field(
        None, description="Per-candidate trajectories (stored in the 'data' additional store)."
    )
    n_converged: int = Field(0, description="How many converged.")
    n_failed: int = Field(0, description="How many failed.")
    timings: RelaxJobTimings | None = Field(None, description="Where the job's time went (None for jobs run without the service).")

