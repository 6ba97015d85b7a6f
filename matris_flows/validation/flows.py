"""Flows of the offline backend: one consistent GPAW hull per chemical system."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobflow import Flow
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Element, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matris_flows.validation.gpaw_backend import (
    DIATOMIC_ELEMENTS,
    GpawRelaxMaker,
    diatomic_reference,
    load_element_structures,
    packaged_element_data,
)
from matris_flows.validation.hull import DftValidationMaker, consistent_dft_hull
from matris_flows.validation.schemas import CalculationRole
from matris_flows.validation.utils import candidate_chemsys, slim_candidate

DEFAULT_REFERENCE_WINDOW = 0.1


def _within(chemsys: str, elements: set[str]) -> bool:
    return set(chemsys.split("-")) <= elements


def _label(entry: ComputedEntry, index: int) -> str:
    return str(entry.entry_id) if entry.entry_id else f"{entry.composition.reduced_formula}-{index}"


def reference_structures_within_window(
    reference_entries: Sequence[ComputedEntry], elements: set[str], window: float = DEFAULT_REFERENCE_WINDOW
) -> tuple[dict[str, Structure], dict[str, Structure]]:
    """(element structures, other reference phases) of a system: the entries within ``window`` of its hull.

    Plain PBE (no +U, no MP2020 corrections) can reorder phases: an MP-metastable phase may
    be stable in the DFT hull, so every phase within ``window`` eV/atom of the reference
    hull is recomputed, not only the stable ones. The lowest entry of each element is its
    element reference; other elemental polymorphs within the window are reference phases.
    An element without an entry gets the packaged MP ground-state energy as the hull's
    terminal, so the window is still measured on a complete hull.

    Args:
        reference_entries: MP entries (with structures) covering the system, MP2020-corrected.
        elements: The system's elements.
        window: eV/atom above the reference hull; 0 keeps only the stable phases.

    Returns:
        ``({element: structure}, {label: structure})``, labels being the entry ids.
    """
    relevant = [
        e for e in reference_entries
        if isinstance(e, ComputedStructureEntry) and _within(e.composition.chemical_system, elements)
    ]
    if not relevant:
        return {}, {}
    labelled = {_label(e, i): e for i, e in enumerate(relevant)}
    # Terminal entries: the hull needs one per element.
    present = {e.composition.elements[0].symbol for e in relevant if len(e.composition.elements) == 1}
    packaged = packaged_element_data()
    terminals = [
        PDEntry(el, packaged[el]["energy_per_atom"] - packaged[el]["energy_above_lowest"], name=f"packaged-{el}")
        for el in sorted(elements - present) if el in packaged
    ]
    if present | {e.name.removeprefix("packaged-") for e in terminals} != elements:
        kept = {label: e for label, e in labelled.items() if len(e.composition.elements) > 1}  # no hull: every compound
    else:
        diagram = PhaseDiagram([*relevant, *terminals])
        kept = {
            label: e for label, e in labelled.items()
            if diagram.get_e_above_hull(e, allow_negative=True) <= window + 1e-9
        }
    element_structures: dict[str, Structure] = {}
    compounds: dict[str, Structure] = {}
    lowest: dict[str, tuple[float, str]] = {}
    for label, entry in kept.items():
        if len(entry.composition.elements) == 1:
            el = entry.composition.elements[0].symbol
            if el not in lowest or (entry.energy_per_atom, label) < lowest[el]:
                lowest[el] = (entry.energy_per_atom, label)
    for label, entry in sorted(kept.items()):
        if len(entry.composition.elements) == 1 and lowest[entry.composition.elements[0].symbol][1] == label:
            element_structures[entry.composition.elements[0].symbol] = entry.structure
        else:
            compounds[label] = entry.structure
    return element_structures, compounds


@dataclass
class GpawHullValidationMaker(DftValidationMaker):
    """Validate candidates on consistent GPAW hulls, one per chemical system.

    Per system: the elements, the reference phases within ``reference_window`` of the MP
    hull and every candidate are relaxed with the same :class:`GpawRelaxMaker` settings and
    the same spin treatment and initial moments (one job each, so a Dask cluster runs them
    side by side); a hull job then builds the consistent hull and the validation documents.

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
        Waals terms, bind little. Next come the lowest elemental reference entries.
    use_packaged_element_structures
        Fall back to a small MP ground-state polymorph from the package data
        (``mp_elemental_small_polymorphs.json.gz``) for elements without a structure otherwise.
    reference_window
        Reference phases within this distance of the MP hull are recomputed, eV/atom.
    stable_tolerance, metastable_threshold
        Keyword-only: the verdict limits of :class:`~matris_flows.validation.hull.DftValidationMaker`.
    """

    backend: ClassVar[str] = "gpaw"

    name: str = "GPAW consistent-hull validation"
    relax_maker: GpawRelaxMaker = field(default_factory=GpawRelaxMaker)
    element_structures: dict[str, Structure] = field(default_factory=dict)
    diatomic_gas_references: bool = True
    use_packaged_element_structures: bool = True
    reference_window: float = DEFAULT_REFERENCE_WINDOW

    def make(
        self,
        candidates: Sequence[Any],
        reference_entries: Sequence[ComputedEntry] | Mapping[str, ComputedEntry] = (),
        reference_structures: Mapping[str, Structure] | None = None,
    ) -> Flow:
        """Build the relaxations and hull jobs of every chemical system among ``candidates``.

        Args:
            candidates: Selected candidates (hull-stage documents or dicts).
            reference_entries: MP entries with structures; their phases within
                ``reference_window`` of the hull of each system are recomputed as the hull's
                reference phases and elements.
            reference_structures: Extra reference phases ``{label: structure}``, used in each
                system whose elements they fit.

        Returns:
            A Flow whose output is a list (one per system) of lists of validation documents.
        """
        entries = self.entry_list(reference_entries)
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
        element_structures, compounds = reference_structures_within_window(entries, elements, self.reference_window)
        compounds.update(
            {label: s for label, s in extra_references.items() if _within(s.composition.chemical_system, elements)}
        )
        if self.diatomic_gas_references:
            gases = {el for el in elements if el in DIATOMIC_ELEMENTS}
            element_structures.update({el: diatomic_reference(el) for el in gases})
            # The gas molecule is the element's reference; its molecular crystals barely bind
            # without van der Waals terms and cost large cells, so they are not recomputed.
            compounds = {k: v for k, v in compounds.items() if {e.symbol for e in v.composition.elements} - gases}
        element_structures.update({Element(k).symbol: v for k, v in self.element_structures.items() if k in elements})
        missing = sorted(elements - set(element_structures))
        if missing and self.use_packaged_element_structures:
            element_structures.update(load_element_structures(missing))
        # One spin setting and one initialisation (GpawSettings.initial_magmoms) for the whole
        # system: mixing spin treatments or starting moments would break consistency.
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
            candidates, [j.output for j in relax_jobs], self.stable_tolerance, self.metastable_threshold, sorted(compounds)
        )
        hull_job.name = f"consistent DFT hull {chemsys}"
        return relax_jobs, hull_job
