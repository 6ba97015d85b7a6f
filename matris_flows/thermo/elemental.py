"""Elemental references relaxed with the campaign's own potential.

For potentials whose energies are not on MP's scale the only valid hull is one
computed with the same potential; its corners start from the lowest-energy MP
polymorphs shipped as package data. Elements alone make the hull a tie-line (the
formation energy): campaigns relax the MP phases near the hull too, and the elemental
corners with them, in one explicit job (:mod:`matris_flows.thermo.consistent_references`);
elements alone serve only where no reference phases exist.
"""

import datetime
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from monty.serialization import loadfn
from pymatgen.core import Element, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from matris_flows.core.data_paths import package_data_path
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings
from matris_flows.thermo.mp_compat import build_computed_entry, correct_entry
from matris_flows.thermo.references import CampaignInternalReferences

if TYPE_CHECKING:  # torch-heavy
    from matris_flows.potentials.loader import Potential
from matris_flows.thermo.schemas import ReferenceProvenance

GROUND_STATES_FILE = "mp_elemental_ground_states.json.gz"
ELEMENTAL_ID_PREFIX = "elemental-ref"


@cache
def _ground_states() -> dict:
    return loadfn(package_data_path(GROUND_STATES_FILE))


def elemental_ground_state(element: str | Element) -> Structure:
    """Lowest-energy MP polymorph of ``element`` (raises KeyError naming the element if absent)."""
    symbol = Element(str(element)).symbol
    data = _ground_states()
    if symbol not in data:
        raise KeyError(f"No elemental ground-state structure for {symbol} in {GROUND_STATES_FILE}.")
    structure = data[symbol]["structure"]
    return structure if isinstance(structure, Structure) else Structure.from_dict(structure)


def ground_state_energy_per_atom(element: str | Element) -> float:
    """MP's (uncorrected) energy per atom of the ground-state polymorph of ``element``, eV/atom."""
    return float(_ground_states()[Element(str(element)).symbol]["energy_per_atom"])


def ground_state_elements() -> list[str]:
    """The elements the ground-state file has a structure for."""
    return sorted(_ground_states())


def relax_elemental_references(
    elements: Iterable[str | Element],
    potential: "str | Potential" = "matris_10m_oam",
    settings: RelaxSettings | None = None,
    device: str = "auto",
) -> list[RelaxationDocument]:
    """Relax the MP ground-state polymorph of each element with ``potential`` (a name or a loaded one).

    Candidate ids are ``elemental-ref-<El>``. Relaxed with the campaign's potential
    and settings, these are the corners of a campaign-internal hull.
    """
    from matris_flows.relax.engine import relax_structures  # heavy (torch): import on use

    symbols = sorted({Element(str(el)).symbol for el in elements})
    structures = [elemental_ground_state(sym) for sym in symbols]
    return relax_structures(
        structures,
        potential=potential,
        settings=settings,
        candidate_ids=[f"{ELEMENTAL_ID_PREFIX}-{sym}" for sym in symbols],
        device=device,
    )


def entries_from_relaxations(documents: Sequence[RelaxationDocument]) -> list[ComputedStructureEntry]:
    """Entries of successful relaxations, corrected as their potential's convention says."""
    entries = []
    for doc in documents:
        if not doc.succeeded:
            continue
        entry = build_computed_entry(doc.structure, doc.energy, doc.candidate_id, {"candidate_id": doc.candidate_id})
        corrected = correct_entry(entry, doc.potential.energy_convention)
        if corrected.ok:
            entries.append(corrected.entry)
    return entries


class ElementalReferences(CampaignInternalReferences):
    """Campaign-internal references that are relaxed elements only, and say so in their provenance.

    Without competing compounds the hull is the elements' tie-line: ``e_above_hull`` is then
    the formation energy. The campaign flow uses it only for systems outside its consistent
    reference set (:mod:`matris_flows.thermo.consistent_references`).
    """

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Potential and date of the elemental references, flagged as elements only."""
        compounds = sum(len(e.composition.elements) > 1 for e in self.get_entries(chemsys))
        if compounds:
            return super().provenance(chemsys, n_entries)
        return super().provenance(chemsys, n_entries).model_copy(
            update={
                "source": f"elemental ground states relaxed with {self.potential} only, no competing compounds "
                "(e_above_hull is the formation energy)"
            }
        )


def campaign_references_from_relaxations(
    documents: Sequence[RelaxationDocument], potential: str | None = None
) -> CampaignInternalReferences:
    """A campaign-internal reference provider from relaxed elemental (and other) references."""
    potential = potential or (documents[0].potential.name if documents else "unknown")
    return ElementalReferences(
        entries_from_relaxations(documents),
        potential=potential,
        snapshot_date=datetime.date.today().isoformat(),
    )
