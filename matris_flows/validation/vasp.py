"""The production DFT backend: VASP with Materials Project settings through atomate2.

atomate2's MP GGA(+U) double-relax + static flow writes the same INCAR/KPOINTS/POTCAR as
MP, so the static energy, processed with ``MaterialsProject2020Compatibility``, lands on
the MP hull next to the reference entries. Building the flow and writing its inputs works
anywhere; running it needs the user's VASP (atomate2's ``VASP_CMD``) and POTCARs
(pymatgen's ``PMG_VASP_PSP_DIR``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from atomate2.vasp.files import write_vasp_input_set
from atomate2.vasp.flows.mp import MPGGADoubleRelaxStaticMaker
from emmet.core.tasks import TaskDoc
from jobflow import Flow, Maker, job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matris_flows.validation.hull import (
    DEFAULT_METASTABLE_THRESHOLD,
    DEFAULT_STABLE_TOLERANCE,
    DftValidationMaker,
    failed_validation_document,
    validation_document,
)
from matris_flows.validation.schemas import ValidationDocument
from matris_flows.validation.utils import (
    candidate_chemsys,
    candidate_field,
    candidate_structure,
    slim_candidate,
)

BACKEND = "vasp"


def mp_vasp_jobs(maker: Maker | None = None, structure: Structure | None = None) -> list[tuple[str, Maker]]:
    """(job name, job maker) of each VASP step of the MP flow, in run order."""
    maker = maker or MPGGADoubleRelaxStaticMaker()
    if structure is None:
        structure = Structure([[3, 0, 0], [0, 3, 0], [0, 0, 3]], ["Si"], [[0, 0, 0]])
    flow = maker.make(structure)
    return [(j.name, j.maker) for j, _ in flow.iterflow()]


def write_mp_vasp_inputs(
    structure: Structure,
    directory: str | Path,
    maker: Maker | None = None,
    potcar_spec: bool = False,
) -> dict[str, Path]:
    """Write the inputs of every step of the MP flow, one sub-folder per step, as MP would.

    The relaxation steps after the first take their structure from the previous step when
    they run; here every step is written for ``structure`` so the settings can be reviewed
    (or submitted by hand) before any VASP run.

    Args:
        structure: The structure to validate (the MLIP-relaxed candidate).
        directory: Parent folder; created if missing.
        maker: The MP flow maker; defaults to ``MPGGADoubleRelaxStaticMaker()``.
        potcar_spec: Write ``POTCAR.spec`` (symbols only) instead of ``POTCAR``; no
            POTCAR library needed (tests, machines without VASP).

    Returns:
        ``{step name: folder}`` in run order.
    """
    folders = {}
    for index, (name, job_maker) in enumerate(mp_vasp_jobs(maker, structure)):
        folder = Path(directory) / f"{index + 1}_{name.replace(' ', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        write_vasp_input_set(structure, job_maker.input_set_generator, folder, potcar_spec=potcar_spec)
        folders[name] = folder
    return folders


def parse_vasp_task(directory: str | Path, **kwargs: Any) -> TaskDoc:
    """Parse a finished VASP directory (gzipped files fine) into an emmet task document."""
    return TaskDoc.from_directory(directory, **kwargs)


def mp2020_corrected_entry(task_doc: TaskDoc) -> ComputedStructureEntry:
    """The task's structure entry with MP2020 corrections applied, ready for the MP hull.

    Raises:
        ValueError: When MP2020 rejects the entry (e.g. a run type MP does not mix).
    """
    entry = task_doc.structure_entry
    processed = MaterialsProject2020Compatibility().process_entry(entry, clean=True)
    if processed is None:
        raise ValueError(
            f"MaterialsProject2020Compatibility rejected the {entry.parameters.get('run_type')} entry "
            f"of {entry.composition.reduced_formula}"
        )
    return processed


def mp_hull_e_above_hull(
    entry: ComputedEntry, reference_entries: Sequence[ComputedEntry]
) -> tuple[float, float, list[str], PhaseDiagram]:
    """(e_above_hull, formation energy per atom, decomposition labels, diagram) on the MP hull.

    The reference entries must already carry MP2020 corrections (as MP's do); only those
    inside the entry's chemical system are used. The hull is the references' alone and the
    entry is placed against it from outside, negative allowed: the measure of the MLIP
    e_above_hull (an entry inside the diagram would read 0 when it lies below the hull).
    """
    elements = set(entry.composition.chemical_system.split("-"))
    relevant = [e for e in reference_entries if set(e.composition.chemical_system.split("-")) <= elements]
    diagram = PhaseDiagram(relevant)
    decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
    labels = [str(e.entry_id or e.composition.reduced_formula) for e in decomposition]
    return float(e_hull), float(diagram.get_form_energy_per_atom(entry)), sorted(labels), diagram


def _first_ionic_step_forces(task_doc: Any) -> tuple[float | None, float | None]:
    """(max |F| eV/Å, energy per atom) at the first ionic step of a relaxation task, if recorded."""
    try:
        first_calc = task_doc.calcs_reversed[-1]
        step = first_calc.output.ionic_steps[0]
        forces = np.asarray(step.forces, dtype=float)
        n_atoms = len(forces)
        return float(np.max(np.linalg.norm(forces, axis=1))), float(step.e_0_energy) / n_atoms
    except (AttributeError, IndexError, TypeError, ValueError):
        return None, None


def vasp_validation_from_task(
    candidate: Any,
    static_task: TaskDoc | None,
    reference_entries: Sequence[ComputedEntry],
    first_relax_task: TaskDoc | None = None,
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> ValidationDocument:
    """Validation document of one candidate from its MP-style VASP static (and first relax) task."""
    thresholds = {"stable_tolerance": stable_tolerance, "metastable_threshold": metastable_threshold}
    if static_task is None:
        return failed_validation_document(
            candidate, "VASP job failed or did not run (see its job output)", BACKEND, "VASP", **thresholds
        )
    code_version = getattr(static_task.calcs_reversed[0], "vasp_version", None) if static_task.calcs_reversed else None
    settings = {
        "calc_type": str(static_task.calc_type),
        "incar": dict(static_task.calcs_reversed[0].input.incar or {}) if static_task.calcs_reversed else {},
    }
    state = getattr(static_task, "state", None)
    state = "successful" if state is None else str(getattr(state, "value", state))
    if state != "successful":
        return failed_validation_document(
            candidate, f"VASP task state {state}", BACKEND, "VASP", code_version, settings, **thresholds
        )
    try:
        entry = mp2020_corrected_entry(static_task)
        e_hull, e_form, decomposition, diagram = mp_hull_e_above_hull(entry, reference_entries)
    except ValueError as exc:  # rejected by MP2020, or references without every element of the system
        return failed_validation_document(candidate, str(exc), BACKEND, "VASP", code_version, settings, **thresholds)
    residual_force, initial_energy = _first_ionic_step_forces(first_relax_task)
    chemsys = candidate_chemsys(candidate)
    return validation_document(
        candidate,
        backend=BACKEND,
        code="VASP",
        code_version=code_version,
        settings=settings,
        dft_energy_per_atom=entry.uncorrected_energy_per_atom,
        dft_corrected_energy_per_atom=entry.energy_per_atom,
        dft_structure=entry.structure,
        dft_e_above_hull=e_hull,
        dft_formation_energy_per_atom=e_form,
        hull_description=(
            f"MP hull of {chemsys} with MP2020 corrections ({len(diagram.all_entries)} reference entries; "
            "the candidate placed outside it)"
        ),
        hull_phases=sorted(str(e.entry_id or e.composition.reduced_formula) for e in diagram.stable_entries),
        dft_decomposes_to=decomposition,
        residual_max_force=residual_force,
        dft_energy_per_atom_on_mlip_structure=initial_energy,
        # Like with like only: MP2020-corrected DFT vs an MLIP formation energy on the MP hull.
        formation_energy_comparable=candidate_field(candidate, "hull_kind") == "mp",
        **thresholds,
    )


@job(output_schema=ValidationDocument, config=JobConfig(on_missing_references=OnMissing.NONE))
def vasp_validation_document(
    candidate: dict,
    static_task: TaskDoc | None,
    reference_entries: list[ComputedEntry],
    first_relax_task: TaskDoc | None = None,
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> ValidationDocument:
    """Job: MP2020-corrected VASP result of one candidate → validation document.

    Runs even when the VASP jobs failed (their outputs arrive as None) and reports
    'validation_failed' instead of stopping the campaign.
    """
    return vasp_validation_from_task(
        candidate, static_task, reference_entries, first_relax_task, stable_tolerance, metastable_threshold
    )


@dataclass
class VaspValidationMaker(DftValidationMaker):
    """Validate candidates with MP-compatible VASP (double relax + static) on the MP hull.

    Parameters
    ----------
    name
        Flow name.
    relax_static_maker
        The atomate2 MP flow maker run per candidate.
    stable_tolerance, metastable_threshold
        Keyword-only: the verdict limits of :class:`~matris_flows.validation.hull.DftValidationMaker`.
    """

    backend: ClassVar[str] = BACKEND

    name: str = "VASP MP validation"
    relax_static_maker: Maker = field(default_factory=MPGGADoubleRelaxStaticMaker)

    def make(
        self,
        candidates: Sequence[Any],
        reference_entries: Sequence[ComputedEntry] | Mapping[str, ComputedEntry] = (),
    ) -> Flow:
        """One MP VASP flow and one validation job per candidate.

        Args:
            candidates: Selected candidates (hull-stage documents or dicts).
            reference_entries: MP2020-corrected MP entries covering the candidates' systems.

        Returns:
            A Flow whose output is the list of validation documents, in candidate order.
        """
        references = self.entry_list(reference_entries)
        jobs, outputs = [], []
        for candidate in candidates:
            cid = str(candidate_field(candidate, "candidate_id"))
            dft_flow = self.relax_static_maker.make(candidate_structure(candidate))
            dft_flow.name = f"{dft_flow.name} {cid}"
            first_relax = next(j for j, _ in dft_flow.iterflow())
            elements = set(candidate_chemsys(candidate).split("-"))
            doc_job = vasp_validation_document(
                slim_candidate(candidate),
                dft_flow.output,
                [e for e in references if set(e.composition.chemical_system.split("-")) <= elements],
                first_relax.output,
                self.stable_tolerance,
                self.metastable_threshold,
            )
            doc_job.name = f"VASP validation {cid}"
            jobs += [dft_flow, doc_job]
            outputs.append(doc_job.output)
        return Flow(jobs, output=outputs, name=self.name)
