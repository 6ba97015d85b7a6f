"""jobflow Makers for the relaxation stage: one job relaxes a chunk of candidates."""

from dataclasses import dataclass, field
from typing import Any

from jobflow import Maker, job
from pymatgen.core import Structure

from matris_flows.potentials.naming import DEFAULT_POTENTIAL
from matris_flows.relax.isolated import relax_chunk
from matris_flows.relax.schemas import RelaxBatchOutput, RelaxSettings, RelaxStatus

# The relaxation records (structures, forces, stress) and trajectories go to the JobStore's
# "data" additional store, so the output document stays small whatever the chunk size
# (the atomate2 force-field convention, and MongoDB's 16 MB document limit).
_DATA_OBJECTS = ["documents", "trajectories"]


@dataclass
class RelaxMaker(Maker):
    """Relax a list of structures with one potential in one job.

    The relaxation records and trajectories are saved to the JobStore's ``data``
    additional store (as atomate2's force-field makers do), so the JobStore needs one:
    ``JobStore(docs, additional_stores={"data": ...})``; campaigns' stores have it.

    Parameters
    ----------
    name
        Job name.
    potential
        Potential name (see :mod:`matris_flows.potentials.naming`).
    settings
        Optimizer, filter, fmax, steps, cell relaxation, symmetry, engine.
    device
        ``auto`` (CUDA when present), ``cpu`` or ``cuda[:n]``.
    store_trajectories
        Keep every frame, stored under the ``data`` store key.
    potential_options
        Per-potential loader options (e.g. MatRIS ``mode``, ``tf32``).
    """

    name: str = "matris relax"
    potential: str = DEFAULT_POTENTIAL
    settings: RelaxSettings = field(default_factory=RelaxSettings)
    device: str = "auto"
    store_trajectories: bool = False
    potential_options: dict[str, Any] = field(default_factory=dict)

    @job(data=_DATA_OBJECTS, output_schema=RelaxBatchOutput)
    def make(self, structures: list[Structure], candidate_ids: list[str] | None = None) -> RelaxBatchOutput:
        """Relax ``structures`` (optionally keyed by ``candidate_ids``); one document per structure.

        Isolated in a child process (``settings.isolate``): a structure that kills, hangs or
        overfills it gets a FAILED document naming what happened; the others are relaxed.
        """
        result = relax_chunk(
            structures, candidate_ids, self.potential, self.settings, self.device, self.potential_options,
            keep_trajectories=self.store_trajectories,
        )
        documents = result.documents
        for document in documents:
            document.trajectory_stored = self.store_trajectories and document.status is not RelaxStatus.FAILED
        return RelaxBatchOutput(
            documents=documents,
            trajectories=result.trajectories,
            timings=result.timings,
            n_converged=sum(d.status is RelaxStatus.CONVERGED for d in documents),
            n_failed=sum(d.status is RelaxStatus.FAILED for d in documents),
        )
