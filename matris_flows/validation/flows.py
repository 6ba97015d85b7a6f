"""Flows of the offline backend: one consistent GPAW hull per chemical system."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobflow import Flow, Maker
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Element, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matris_flows.validation.gpaw_backend import (
    DIATOMIC_ELEMENTS,
    GpawRelaxMaker,
    diatomic_reference,
    load_element_structures,
)
from matris_flows.validation.hull import (
    DEFAULT_METASTABLE_THRESHOLD,
    DEFAULT_STABLE_TOLERANCE,
    consistent_dft_hull,
)
from matris_flows.validation.schemas import CalculationRole
from matris_flows.validation.utils import candidate_chemsys, slim_candidate


def _within(chemsys: str, elements: set[str]) -> bool:
    return set(chemsys.split("-")) <= elements


def stable_reference_structures(
    reference_entries: Sequence[ComputedEntry], elements: set[str]
) -> tuple[dict[str, Structure], dict[str, Structure]]:
    """(element structures, compound structures) of the stable reference entries inside a system.

    Only phases on the reference hull are recomputed with DFT: unstable references cannot
    change the hull of a consistent calculation more than the stable ones bound it.
    """
    relevant = [
        e for e in reference_entries
        if isinstance(e, ComputedStructureEntry) and _within(e.composition.chemical_system, elements)
    ]
    if not relevant:
        return {}, {}
    present = set().union(*(set(e.composition.chemical_system.split("-")) for e in relevant))
    if present != elements:
        # PhaseDiagram needs every terminal element; without one, use entries only as structures.
        stable = [e for e in relevant if len(e.composition.elements) > 1]
    else:
        stable = PhaseDiagram(relevant).stable_entries
    element_structures: dict[str, Structure] = {}
    compounds: dict[str, Structure] = {}
    for entry in sorted(stable, key=lambda e: (e.composition.reduced_formula, str(e.entry_id))):
        if len(entry.composition.elements) == 1:
            element_structures[entry.composition.elements[0].symbol] = entry.structure
        else:
            compounds[str(entry.entry_id or entry.composition.reduced_formula)] = entry.structure
    return element_structures, compounds


@dataclass
class GpawHullValidationMaker(Maker):
    """Validate candidates on consistent GPAW hulls, one per chemical system.

    Per system: the elements, the reference phases and every candidate are relaxed with the
    same :class:`GpawRelaxMaker` settings (one job each, so a Dask cluster runs them side by
    side); a hull job then builds the consistent hull and the validation documents.

    Parameters
    ----------
    name
        Flow name.
    relax_maker
        The GPAW relaxation (settings: cutoff, k-point density, smearing, spin, fmax).
    element_structures
        Element reference structures that win over everything else
        (e.g. ``{"Cl": molecule_in_box("Cl", 1.99)}``).
    diatomic_gas_references
        Use the isolated molecule for H, N, O, F, Cl, Br and I (``diatomic_reference``):
        their crystals are large molecular cells that cost far more and, without van der
        Waals terms, bind little. Next come the stable elemental reference entries.
    use_shared_element_structures
        Fall back to the lowest-energy MP polymorph in the shared data for elements that
        have no structure otherwise.
    stable_tolerance, metastable_threshold
        DFT e_above_hull limits of 'confirmed_stable' and 'confirmed_metastable', eV/atom.
    """

    backend: ClassVar[str] = "gpaw"

    name: str = "GPAW consistent-hull validation"
    relax_maker: GpawRelaxMaker = field(default_factory=GpawRelaxMaker)
    element_structures: dict[str, Structure] = field(default_factory=dict)
    diatomic_gas_references: bool = True
    use_shared_element_structures: bool = True
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD

    def make(
        self,
        candidates: Sequence[Any],
        reference_entries: Sequence[ComputedEntry] | Mapping[str, ComputedEntry] = (),
        reference_structures: Mapping[str, Structure] | None = None,
    ) -> Flow:
        """Build the relaxations and hull jobs of every chemical system among ``candidates``.

        Args:
            candidates: Selected candidates (hull-stage documents or dicts).
            reference_entries: MP entries with structures; their stable phases inside each
                system are recomputed as the hull's reference phases and elements.
            reference_structures: Extra reference phases ``{label: structure}``, used in each
                system whose elements they fit.

        Returns:
            A Flow whose output is a list (one per system) of lists of validation documents.
        """
        entries = list(reference_entries.values()) if isinstance(reference_entries, Mapping) else list(reference_entries)
        by_chemsys: dict[str, list[dict]] = defaultdict(list)
        for candidate in candidates:
            by_chemsys[candidate_chemsys(candidate)].append(slim_candidate(candidate))

        jobs, outputs = [], []
        for chemsys in sorted(by_chemsys):
            system_jobs, hull_job = self._chemsys_jobs(chemsys, by_chemsys[chemsys], entries, reference_structures or {})
            jobs.append(Flow([*system_jobs, hull_job], output=hull_job.output, name=f"{self.name} {chemsys}"))
            outputs.append(hull_job.output)
        return Flow(jobs, output=outputs, name=self.name)

    def _chemsys_jobs(
        self,
        chemsys: str,
        candidates: list[dict],
        entries: list[ComputedEntry],
        extra_references: Mapping[str, Structure],
    ) -> tuple[list, Any]:
        """Relaxation jobs and the hull job of one chemical system."""
        elements = set(chemsys.split("-"))
        element_structures, compounds = stable_reference_structures(entries, elements)
        compounds.update(
            {label: s for label, s in extra_references.items() if _within(s.composition.chemical_system, elements)}
        )
        if self.diatomic_gas_references:
            element_structures.update({el: diatomic_reference(el) for el in elements if el in DIATOMIC_ELEMENTS})
        element_structures.update({Element(k).symbol: v for k, v in self.element_structures.items() if k in elements})
        missing = sorted(elements - set(element_structures))
        if missing and self.use_shared_element_structures:
            element_structures.update(load_element_structures(missing))
        # One spin setting for the whole system: mixing spin treatments would break consistency.
        spin = self.relax_maker.settings.resolve_spin(chemsys)

        work = [(el, CalculationRole.ELEMENT, element_structures[el]) for el in sorted(element_structures)]
        work += [(label, CalculationRole.REFERENCE, s) for label, s in sorted(compounds.items())]
        work += [(c["candidate_id"], CalculationRole.CANDIDATE, c["structure"]) for c in candidates]
        relax_jobs = []
        for label, role, structure in work:
            relax_job = self.relax_maker.make(structure, label=label, role=role, spin_polarized=spin)
            relax_job.name = f"{self.relax_maker.name} {chemsys} {role.value} {label}"
            relax_jobs.append(relax_job)
        hull_job = consistent_dft_hull(
            candidates, [j.output for j in relax_jobs], self.stable_tolerance, self.metastable_threshold
        )
        hull_job.name = f"consistent DFT hull {chemsys}"
        return relax_jobs, hull_job
