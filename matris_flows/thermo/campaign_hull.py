"""The campaign-wide step: the hull of references + every candidate, and post-relaxation duplicates.

Runs once all chunks are in, as a maggma ``Builder`` over the ``candidates`` store, one
chemical system at a time (smallest systems first, so the duplicates of a subsystem are
known before the systems that contain it). The campaign hull is built in formation-energy
space (the scale the candidates' ``formation_energy_per_atom`` is on) from few points: the
stable reference phases of the system, the campaign-hull vertices already found in its
subsystems, and its own non-duplicate candidates on or below the reference hull (one
above it can never be a vertex of a hull that contains the reference phases). Every
candidate of the system is then evaluated against that hull. A system whose inputs did
not change since the last run (same fingerprint) is skipped, so resuming a campaign only
recomputes what its new chunks touched.

``is_stable_campaign`` is False for duplicates and, unless ``allow_unconverged``, for
unconverged relaxations. An unconverged candidate still takes part in the hull: its
energy is an upper bound of its minimum, so it can only make the others look more
stable than they are by being left out. Known phases (``matches_reference``, set per
chunk) take part too: they are real phases on the model's energy scale.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from maggma.core import Builder, Store
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure

from matris_flows.core.chemsys import chemsys_of, elements_of, within
from matris_flows.thermo.assess import reference_hull, relaxation_converged, stability_allowed
from matris_flows.thermo.hull import PATCH_ABOVE_N_ELEMENTS, HullIndex
from matris_flows.thermo.references import MissingReferenceError, ReferenceProvider
from matris_flows.thermo.schemas import CampaignHullOutput, HullKind, ThermoStatus

_SLIM = [
    "candidate_id", "formula", "chemsys", "thermo_status", "formation_energy_per_atom", "corrected_energy_per_atom",
    "spacegroup", "duplicate_of", "campaign_hull_fingerprint", "hull_kind", "e_above_hull", "e_above_hull_campaign",
    "is_stable_campaign", "relaxation.status", "relaxation.converged",
]
_ON_HULL = 1e-6  # eV/atom: a point this close to a hull is one of its vertices
_FETCH_BATCH = 500


class CampaignHullBuilder(Builder):
    """Campaign hull and post-relaxation dedup over a candidates store (source and target)."""

    def __init__(
        self,
        candidates: Store,
        references: ReferenceProvider,
        campaign: str | None = None,
        stability_threshold: float = 0.0,
        patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS,
        matcher: StructureMatcher | None = None,
        references_store: Store | None = None,
        allow_unconverged: bool = False,
    ) -> None:
        """
        Args:
            candidates: The candidates store (read and updated in place).
            references: Provider of the reference entries the candidates were assessed on.
            campaign: Only candidates of this campaign (all when None).
            stability_threshold: ``is_stable_campaign`` means ``e_above_hull_campaign <=`` this, eV/atom.
            patch_above_n_elements: Use a PatchedPhaseDiagram above this many elements.
            matcher: StructureMatcher for duplicates (pymatgen defaults).
            references_store: Where to write one document per reference phase of every
                system (formation energy, e_above_hull), so that plots and reports read the
                campaign store instead of the reference files.
            allow_unconverged: Let unconverged relaxations be ``is_stable_campaign``.
        """
        self.candidates = candidates
        self.references = references
        self.campaign = campaign
        self.stability_threshold = stability_threshold
        self.patch_above_n_elements = patch_above_n_elements
        self.matcher = matcher or StructureMatcher()
        self.references_store = references_store
        self.allow_unconverged = allow_unconverged
        targets = [candidates] if references_store is None else [candidates, references_store]
        super().__init__(sources=[candidates], targets=targets)
        self._counts = CampaignHullOutput()
        self._vertices: dict[frozenset[str], list[tuple[str, str, float]]] = {}

    # -- Builder API ----------------------------------------------------------------------
    def get_items(self) -> Iterator[dict[str, Any]]:
        """One item per chemical system (smallest first): its own candidates (slim documents)."""
        criteria = {} if self.campaign is None else {"campaign": self.campaign}
        by_system: dict[frozenset[str], list[dict]] = defaultdict(list)
        n = 0
        for doc in self.candidates.query(criteria, properties=_SLIM):
            n += 1
            if doc.get("thermo_status") == ThermoStatus.OK.value and doc.get("formation_energy_per_atom") is not None:
                by_system[elements_of(doc["chemsys"])].append(doc)
        self._counts = CampaignHullOutput(n_candidates=n, n_systems=len(by_system))
        self._vertices: dict[frozenset[str], list[tuple[str, str, float]]] = {}
        for system in sorted(by_system, key=lambda s: (len(s), chemsys_of(s))):
            yield {"system": system, "own": by_system[system]}

    def process_item(self, item: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Updates ``{candidate_id: fields}`` for one system; empty when its inputs are unchanged."""
        system, own = item["system"], item["own"]
        below = within(self._vertices, system)  # campaign-hull vertices of the subsystems (all done: smaller first)
        fingerprint = self._fingerprint(own, below, (self.stability_threshold, self.allow_unconverged))
        if all(doc.get("campaign_hull_fingerprint") == fingerprint for doc in own):
            self._vertices[system] = [
                (d["candidate_id"], d["formula"], d["formation_energy_per_atom"])
                for d in own
                if d.get("duplicate_of") is None and (d.get("e_above_hull_campaign") or 0.0) <= _ON_HULL
            ]
            return {}
        duplicates = self._find_duplicates(own)
        points = self._reference_points(system, own[0].get("hull_kind"))
        points += [_point(formula, energy) for _, formula, energy in below]
        points += [
            _point(d["formula"], d["formation_energy_per_atom"])
            for d in own
            if d["candidate_id"] not in duplicates and (d.get("e_above_hull") is None or d["e_above_hull"] <= _ON_HULL)
        ]
        # few points, so one plain hull even for many elements
        hull = HullIndex.from_entries(points, sorted(system), patch_above_n_elements=len(system))
        results = hull.evaluate(
            [Composition(d["formula"]) for d in own], [d["formation_energy_per_atom"] for d in own], with_decomposition=False
        )
        updates = {}
        vertices = []
        for doc, result in zip(own, results, strict=True):
            duplicate_of = duplicates.get(doc["candidate_id"])
            if duplicate_of is None and result.e_above_hull <= _ON_HULL:
                vertices.append((doc["candidate_id"], doc["formula"], doc["formation_energy_per_atom"]))
            stable = (
                duplicate_of is None
                and result.e_above_hull <= self.stability_threshold
                and stability_allowed(doc.get("relaxation"), self.allow_unconverged)
            )
            updates[doc["candidate_id"]] = {
                "e_above_hull_campaign": result.e_above_hull,
                "is_stable_campaign": stable,
                "duplicate_of": duplicate_of,
                "campaign_hull_fingerprint": fingerprint,
            }
        self._vertices[system] = vertices
        return updates

    def update_targets(self, items: list[dict[str, dict[str, Any]]]) -> None:
        """Write the updated fields into the full candidate documents, in bulk."""
        updates = {cid: fields for item in items for cid, fields in item.items()}
        ids = list(updates)
        for start in range(0, len(ids), _FETCH_BATCH):
            batch = ids[start : start + _FETCH_BATCH]
            docs = []
            for doc in self.candidates.query({"candidate_id": {"$in": batch}}):
                doc.pop("_id", None)
                doc.update(updates[doc["candidate_id"]])
                docs.append(doc)
            if docs:
                self.candidates.update(docs, key="candidate_id")

    def build(self) -> CampaignHullOutput:
        """Run every item (skipping unchanged systems) and return the counts."""
        pending: list[dict[str, dict[str, Any]]] = []
        n_updated = 0
        for item in self.get_items():
            updates = self.process_item(item)
            if updates:
                n_updated += 1
                pending.append(updates)
            if sum(len(p) for p in pending) >= _FETCH_BATCH:
                self.update_targets(pending)
                pending = []
        if pending:
            self.update_targets(pending)
        criteria = {} if self.campaign is None else {"campaign": self.campaign}
        return self._counts.model_copy(
            update={
                "n_systems_updated": n_updated,
                "n_duplicates": self.candidates.count({**criteria, "duplicate_of": {"$ne": None}}),
                "n_stable_campaign": self.candidates.count({**criteria, "is_stable_campaign": True}),
                "n_known_phases": self.candidates.count({**criteria, "matches_reference": {"$ne": None}}),
                "n_new_stable": self.candidates.count(
                    {**criteria, "is_stable_campaign": True, "matches_reference": None, "duplicate_of": None}
                ),
            }
        )

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _fingerprint(own: list[dict], below: list[tuple[str, str, float]], settings: tuple = ()) -> str:
        rows = sorted(
            (
                d["candidate_id"],
                f"{d['formation_energy_per_atom']:.6f}",
                str(d.get("spacegroup")),
                relaxation_converged(d.get("relaxation")),
            )
            for d in own
        )
        subsystem_vertices = sorted((cid, f"{energy:.6f}") for cid, _, energy in below)
        return hashlib.sha256(repr((rows, subsystem_vertices, settings)).encode()).hexdigest()[:24]

    def _find_duplicates(self, own: list[dict]) -> dict[str, str]:
        """``{candidate_id: id of the lowest-energy match}`` within (formula, space group) buckets."""
        buckets: dict[tuple[str, Any], list[dict]] = defaultdict(list)
        for doc in own:
            buckets[(doc["formula"], doc.get("spacegroup"))].append(doc)
        duplicates: dict[str, str] = {}
        for members in buckets.values():
            if len(members) < 2:
                continue
            members.sort(key=lambda d: (d.get("corrected_energy_per_atom") or d["formation_energy_per_atom"], d["candidate_id"]))
            structures = self._structures([d["candidate_id"] for d in members])
            kept: list[str] = []
            for doc in members:
                cid = doc["candidate_id"]
                match = next((k for k in kept if self.matcher.fit(structures[k], structures[cid])), None)
                if match is None:
                    kept.append(cid)
                else:
                    duplicates[cid] = match
        return duplicates

    def _structures(self, ids: list[str]) -> dict[str, Structure]:
        docs = self.candidates.query({"candidate_id": {"$in": ids}}, properties=["candidate_id", "structure"])
        return {d["candidate_id"]: Structure.from_dict(d["structure"]) for d in docs if d.get("structure")}

    def _reference_points(self, system: frozenset[str], hull_kind: str | None) -> list[PDEntry]:
        """Stable reference phases at their formation energies (the elements at zero at least)."""
        points = [_point(el, 0.0) for el in sorted(system)]
        elements_only = [(el, el, None, 0.0, 0.0) for el in sorted(system)]
        if hull_kind != HullKind.MP.value and self.references.hull_kind is not HullKind.CAMPAIGN_INTERNAL:
            # campaign-internal candidates without their consistent references: the corners are the elements
            self._publish_references(system, elements_only)
            return points
        try:
            index, _ = reference_hull(self.references, system, self.patch_above_n_elements)
        except MissingReferenceError:
            if hull_kind != HullKind.MP.value:  # outside the consistent reference set: the elements
                self._publish_references(system, elements_only)
            return points
        pd = index.phase_diagram
        self._publish_references(
            system,
            [
                (str(e.entry_id), e.composition.reduced_formula, (getattr(e, "data", None) or {}).get("material_id"),
                 pd.get_form_energy_per_atom(e), pd.get_e_above_hull(e, allow_negative=True))
                for e in pd.all_entries
            ],
        )
        for entry in pd.stable_entries:
            if len(entry.composition.elements) > 1:
                points.append(PDEntry(entry.composition, pd.get_form_energy_per_atom(entry) * entry.composition.num_atoms))
        return points

    def _publish_references(self, system: frozenset[str], rows: list[tuple]) -> None:
        """One document per reference phase (``rows``: entry id, formula, material id, E_form, E_hull)."""
        if self.references_store is None:
            return
        docs = []
        for entry_id, formula, material_id, formation_energy, e_above_hull in rows:
            elements = sorted(el.symbol for el in Composition(formula).elements)
            docs.append({
                "reference_id": f"{self.campaign}:{entry_id}", "campaign": self.campaign, "entry_id": entry_id,
                "material_id": material_id, "formula": formula, "chemsys": "-".join(elements), "elements": elements,
                "formation_energy_per_atom": float(formation_energy), "e_above_hull": float(e_above_hull),
                "is_stable": bool(e_above_hull <= _ON_HULL),
            })
        self.references_store.update(docs, key="reference_id")


def _point(formula: str, formation_energy_per_atom: float) -> PDEntry:
    composition = Composition(formula)
    return PDEntry(composition, formation_energy_per_atom * composition.num_atoms)
