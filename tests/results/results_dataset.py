"""A known set of candidate documents in Li-Fe-O (MP structures, made-up energies) for the results tests.

Energies are set from the MP reference hull so that every document's numbers are
consistent: corrected_energy_per_atom = reference hull energy + e_above_hull.
"""

from functools import cache

from monty.json import jsanitize
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry
from reference_data import shared_data_dir

from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.schemas import PotentialInfo, RelaxationDocument, RelaxSettings, RelaxStatus
from matris_flows.thermo.hull import HullIndex, energy_above_hull
from matris_flows.thermo.references import LocalFileReferences
from matris_flows.thermo.schemas import CandidateDocument, ThermoStatus

LFO_PATH = shared_data_dir() / "mp_chemsys" / "Li-Fe-O.json.gz"

# candidate_id: (MP id of the structure, e_above_hull eV/atom or None, campaign, validation status or None)
SPEC = {
    "c01": ("mp-19419", -0.010, "alpha", "confirmed_stable"),  # LiFeO2, below the MP hull
    "c02": ("mp-1960", 0.050, "alpha", None),  # Li2O
    "c03": ("mp-19770", 0.120, "beta", "not_confirmed"),  # Fe2O3
    "c04": ("mp-764163", 0.030, "alpha", None),  # Li3FeO4
    "c05": ("mp-841", 0.000, "beta", "confirmed_stable"),  # Li2O2, exactly on the hull
    "c06": ("mp-18905", 0.300, "beta", None),  # FeO
    "c07": ("mp-33551", 0.050, "alpha", "validation_failed"),  # LiFe5O8, ties with c02
    "c08": ("mp-19419", None, "alpha", None),  # LiFeO2 whose relaxation failed
}
NACL_ID = "c09"  # NaCl: relaxed, but no reference data for Na-Cl


@cache
def reference_entries() -> list[ComputedEntry]:
    """MP2020-corrected Li-Fe-O entries of the shared data."""
    return LocalFileReferences([LFO_PATH]).get_entries("Li-Fe-O")


@cache
def reference_phase_diagram() -> PhaseDiagram:
    return PhaseDiagram(reference_entries())


def _structures() -> dict[str, Structure]:
    return {e.entry_id: e.structure for e in reference_entries() if hasattr(e, "structure")}


def _relaxation(cid: str, structure: Structure, energy_per_atom: float | None) -> RelaxationDocument:
    spec = parse_potential("matris_10m_mp")
    comp = structure.composition
    failed = energy_per_atom is None
    return RelaxationDocument(
        candidate_id=cid,
        formula=comp.reduced_formula,
        chemsys=comp.chemical_system,
        nsites=len(structure),
        status=RelaxStatus.FAILED if failed else RelaxStatus.CONVERGED,
        failure_reason="optimizer diverged" if failed else None,
        input_structure=structure,
        structure=None if failed else structure,
        energy=None if failed else energy_per_atom * len(structure),
        energy_per_atom=energy_per_atom,
        engine="ase",
        potential=PotentialInfo(
            name=spec.name, kind=spec.kind.value, device="cpu", energy_convention=spec.energy_convention
        ),
        settings=RelaxSettings(),
    )


def _validation(cid: str, status: str) -> dict:
    return {"candidate_id": cid, "status": status, "validated": status != "validation_failed", "backend": "gpaw"}


def _set_campaign_hull(docs: list[CandidateDocument]) -> None:
    """e_above_hull_campaign from the project's own hull code (references + all candidates)."""
    with_energy = [d for d in docs if d.corrected_energy_per_atom is not None and d.chemsys != "Cl-Na"]
    entries = [
        ComputedEntry(d.structure.composition, d.corrected_energy_per_atom * len(d.structure), entry_id=d.candidate_id)
        for d in with_energy
    ]
    hull = HullIndex.from_entries([*reference_entries(), *entries])
    for doc, result in zip(with_energy, energy_above_hull(hull, entries, with_decomposition=False), strict=True):
        doc.e_above_hull_campaign = max(0.0, result.e_above_hull)


def candidate_docs() -> list[dict]:
    """The stored form of the candidates: JSON-ready model dumps plus 'elements' and 'campaign'."""
    pd = reference_phase_diagram()
    structures = _structures()
    docs = []
    for cid, (mp_id, e_hull, _campaign, validation) in SPEC.items():
        structure = structures[mp_id]
        comp = structure.composition
        if e_hull is None:
            doc = CandidateDocument(
                candidate_id=cid,
                formula=comp.reduced_formula,
                chemsys=comp.chemical_system,
                thermo_status=ThermoStatus.RELAX_FAILED,
                thermo_failure_reason="relaxation failed",
                relaxation=_relaxation(cid, structure, None).summary(),
            )
        else:
            hull_e = pd.get_hull_energy_per_atom(comp)
            corrected = hull_e + e_hull
            doc = CandidateDocument(
                candidate_id=cid,
                formula=comp.reduced_formula,
                chemsys=comp.chemical_system,
                structure=structure,
                energy_per_atom=corrected + 0.1,  # pretend a constant correction of -0.1 eV/atom
                corrected_energy_per_atom=corrected,
                energy_correction_per_atom=-0.1,
                formation_energy_per_atom=pd.get_form_energy_per_atom(ComputedEntry(comp, corrected * comp.num_atoms)),
                e_above_hull=e_hull,
                is_stable=e_hull <= 0.0,
                thermo_status=ThermoStatus.OK,
                validation=_validation(cid, validation) if validation else None,
                relaxation=_relaxation(cid, structure, corrected + 0.1).summary(),
            )
        docs.append(doc)
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    docs.append(
        CandidateDocument(
            candidate_id=NACL_ID,
            formula="NaCl",
            chemsys="Cl-Na",
            structure=nacl,
            energy_per_atom=-3.4,
            thermo_status=ThermoStatus.NO_REFERENCE,
            thermo_failure_reason="No reference data for chemical system Cl-Na.",
            relaxation=_relaxation(NACL_ID, nacl, -3.4).summary(),
        )
    )
    _set_campaign_hull(docs)
    stored = []
    for doc in docs:
        data = jsanitize(doc.model_dump(), strict=True, enum_values=True)  # as jobflow stores outputs
        data["elements"] = sorted(data["chemsys"].split("-"))
        data["campaign"] = "beta" if doc.candidate_id == NACL_ID else SPEC[doc.candidate_id][2]
        stored.append(data)
    return stored
