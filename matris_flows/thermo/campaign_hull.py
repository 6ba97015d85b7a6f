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

from matris_flows.core.chemsys import chemsys_of, elements_of, subsystems
from matris_flows.core.publishing import merge_fields
from matris_flows.thermo.assess import reference_hull, relaxation_converged, stability_allowed
from matris_flows.thermo.hull import PATCH_ABOVE_N_ELEMENTS, HullIndex
from matris_flows.thermo.references import MissingReferenceError, ReferenceProvider
from matris_flows.thermo.schemas import CampaignHullOutput, HullKind, ThermoStatus

_SLIM = [
    "candidate_id", "campaign", "formula", "chemsys", "thermo_status", "formation_energy_per_atom", "corrected_energy_per_atom",
    "spacegroup", "duplicate_of", "campaign_hull_fingerprint", "hull_kind", "e_above_hull", "e_above_hull_campaign",
    "is_stable_campaign", "relaxation.status", "relaxation.converged",
]
ON_HULL = 1e-6  # eV/atom: a point this close to a hull is one of its vertices


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
        # One system per chunk: a system's items are read after its subsystems' updates are written
        # (get_items reads their campaign-hull vertices from the store).
        super().__init__(sources=[candidates], targets=targets, chunk_size=1)
        self._n_systems = self._n_updated = 0  # counts for the summary: systems assessed, systems rewritten

    # -- Builder API (get_items reads, process_item computes, update_targets writes) ------
    def _campaign(self) -> dict[str, Any]:
        return {} if self.campaign is None else {"campaign": self.campaign}

    def _takes_part(self, doc: dict[str, Any]) -> bool:
        """Whether a candidate is on this campaign's hull: of the campaign, assessed, with a formation energy."""
        return (
            (self.campaign is None or doc.get("campaign") == self.campaign)
            and doc.get("thermo_status") == ThermoStatus.OK.value
            and doc.get("formation_energy_per_atom") is not None
        )

    def get_items(self) -> Iterator[dict[str, Any]]:
        """One item per chemical system whose inputs changed, smallest systems first.

        Reads one system at a time (never the whole campaign): its candidates (slim
        documents), the campaign-hull vertices of its subsystems (already written: they come
        first), the structures of its same-formula candidates and its reference phases. The
        queries select by indexed fields that few rows match (``chemsys``, ``e_above_hull_campaign``):
        with ``campaign`` or ``duplicate_of`` beside them (nearly every row matches) SQLite's planner
        may scan that index instead, and a 10k-candidate step took 3x longer. The rest is selected here.
        """
        campaign = self._campaign()
        systems = sorted({elements_of(chemsys) for chemsys in self.candidates.distinct("chemsys", campaign)},
                         key=lambda s: (len(s), chemsys_of(s)))
        self._n_systems = 0
        for system in systems:
            own = [d for d in self.candidates.query({"chemsys": chemsys_of(system)}, properties=_SLIM) if self._takes_part(d)]
            if not own:
                continue
            self._n_systems += 1
            below = self._subsystem_vertices(system)
            fingerprint = self._fingerprint(own, below, (self.stability_threshold, self.allow_unconverged))
            if all(doc.get("campaign_hull_fingerprint") == fingerprint for doc in own):
                continue  # unchanged since the last run (a resumed campaign)
            points, reference_rows = self._reference_points(system, own[0].get("hull_kind"))
            yield {
                "system": system, "own": own, "below": below, "fingerprint": fingerprint,
                "points": points, "reference_rows": reference_rows, "structures": self._duplicate_candidates(own),
            }

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """The campaign hull of one system: ``{"updates": {candidate_id: fields}, "references": rows}`` (no I/O)."""
        own = item["own"]
        duplicates = self._find_duplicates(own, item["structures"])
        points = list(item["points"])
        points += [formation_point(formula, energy) for _, formula, energy in item["below"]]
        points += [
            formation_point(d["formula"], d["formation_energy_per_atom"])
            for d in own
            if d["candidate_id"] not in duplicates and (d.get("e_above_hull") is None or d["e_above_hull"] <= ON_HULL)
        ]
        system = item["system"]
        # few points, so one plain hull even for many elements
        hull = HullIndex.from_entries(points, sorted(system), patch_above_n_elements=len(system))
        results = hull.evaluate(
            [Composition(d["formula"]) for d in own], [d["formation_energy_per_atom"] for d in own], with_decomposition=False
        )
        updates = {}
        for doc, result in zip(own, results, strict=True):
            duplicate_of = duplicates.get(doc["candidate_id"])
            stable = (
                duplicate_of is None
                and result.e_above_hull <= self.stability_threshold
                and stability_allowed(doc.get("relaxation"), self.allow_unconverged)
            )
            updates[doc["candidate_id"]] = {
                "e_above_hull_campaign": result.e_above_hull,
                "is_stable_campaign": stable,
                "duplicate_of": duplicate_of,
                "campaign_hull_fingerprint": item["fingerprint"],
            }
        return {"updates": updates, "references": self._reference_documents(item["reference_rows"])}

    def update_targets(self, items: list[dict[str, Any]]) -> None:
        """Write the updated fields into the full candidate documents, in bulk, and the reference phases."""
        merge_fields(self.candidates, {cid: fields for item in items for cid, fields in item["updates"].items()})
        references = [doc for item in items for doc in item["references"]]
        if references and self.references_store is not None:
            self.references_store.update(references, key="reference_id")
        self._n_updated += len(items)

    def build(self) -> CampaignHullOutput:
        """Run every item as maggma's serial runner would (chunks of one system), and return the counts.

        Not ``Builder.run``: that one configures the root logger for diagnostics.
        """
        self._n_updated = 0
        for item in self.get_items():
            self.update_targets([self.process_item(item)])
        criteria = self._campaign()
        return CampaignHullOutput(
            n_candidates=self.candidates.count(criteria),
            n_systems=self._n_systems,
            n_systems_updated=self._n_updated,
            n_duplicates=self.candidates.count({**criteria, "duplicate_of": {"$ne": None}}),
            n_stable_campaign=self.candidates.count({**criteria, "is_stable_campaign": True}),
            n_known_phases=self.candidates.count({**criteria, "matches_reference": {"$ne": None}}),
            n_new_stable=self.candidates.count(
                {**criteria, "is_stable_campaign": True, "matches_reference": None, "duplicate_of": None}
            ),
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

    @staticmethod
    def _buckets(own: list[dict]) -> list[list[dict]]:
        """Candidates that may be one crystal: same formula and space group, two or more of them."""
        buckets: dict[tuple[str, Any], list[dict]] = defaultdict(list)
        for doc in own:
            buckets[(doc["formula"], doc.get("spacegroup"))].append(doc)
        return [members for members in buckets.values() if len(members) > 1]

    def _duplicate_candidates(self, own: list[dict]) -> dict[str, dict]:
        """The structures (as dicts) of the candidates that share a bucket with another one."""
        ids = [doc["candidate_id"] for members in self._buckets(own) for doc in members]
        if not ids:
            return {}
        docs = self.candidates.query({"candidate_id": {"$in": ids}}, properties=["candidate_id", "structure"])
        return {d["candidate_id"]: d["structure"] for d in docs if d.get("structure")}

    def _find_duplicates(self, own: list[dict], structures: dict[str, dict]) -> dict[str, str]:
        """``{candidate_id: id of the lowest-energy match}`` within (formula, space group) buckets."""
        duplicates: dict[str, str] = {}
        for members in self._buckets(own):
            members.sort(key=lambda d: (d.get("corrected_energy_per_atom") or d["formation_energy_per_atom"], d["candidate_id"]))
            present = [d["candidate_id"] for d in members if d["candidate_id"] in structures]
            crystals = {cid: Structure.from_dict(structures[cid]) for cid in present}
            kept: list[str] = []
            for cid in present:
                match = next((k for k in kept if self.matcher.fit(crystals[k], crystals[cid])), None)
                if match is None:
                    kept.append(cid)
                else:
                    duplicates[cid] = match
        return duplicates

    def _subsystem_vertices(self, system: frozenset[str]) -> list[tuple[str, str, float]]:
        """Campaign-hull vertices (id, formula, formation energy) of the proper subsystems of ``system``, as stored."""
        smaller = [chemsys_of(s) for s in subsystems(system) if s != system]
        if not smaller:
            return []
        docs = self.candidates.query(
            {"chemsys": {"$in": smaller}, "e_above_hull_campaign": {"$lte": ON_HULL}},
            properties=["candidate_id", "campaign", "formula", "formation_energy_per_atom", "e_above_hull_campaign",
                        "thermo_status", "duplicate_of"],
        )
        return sorted(
            (d["candidate_id"], d["formula"], d["formation_energy_per_atom"])
            for d in docs
            if self._takes_part(d) and d.get("duplicate_of") is None
            and d.get("e_above_hull_campaign") is not None and d["e_above_hull_campaign"] <= ON_HULL
        )

    def _reference_points(self, system: frozenset[str], hull_kind: str | None) -> tuple[list[PDEntry], list[tuple]]:
        """Stable reference phases at their formation energies (the elements at zero at least), and every
        reference phase of the system as a row (entry id, formula, material id, E_form, E_hull) to publish."""
        points = [formation_point(el, 0.0) for el in sorted(system)]
        elements_only = [(el, el, None, 0.0, 0.0) for el in sorted(system)]
        if hull_kind != HullKind.MP.value and self.references.hull_kind is not HullKind.CAMPAIGN_INTERNAL:
            # campaign-internal candidates without their consistent references: the corners are the elements
            return points, elements_only
        try:
            index, _ = reference_hull(self.references, system, self.patch_above_n_elements)
        except MissingReferenceError:
            # outside the consistent reference set: the elements
            return points, (elements_only if hull_kind != HullKind.MP.value else [])
        pd = index.phase_diagram
        rows = [
            (str(e.entry_id), e.composition.reduced_formula, (getattr(e, "data", None) or {}).get("material_id"),
             pd.get_form_energy_per_atom(e), pd.get_e_above_hull(e, allow_negative=True))
            for e in pd.all_entries
        ]
        return formation_vertices(index, system), rows

    def _reference_documents(self, rows: list[tuple]) -> list[dict]:
        """One document per reference phase (``rows``: entry id, formula, material id, E_form, E_hull)."""
        docs = []
        for entry_id, formula, material_id, formation_energy, e_above_hull in rows:
            elements = sorted(el.symbol for el in Composition(formula).elements)
            docs.append({
                "reference_id": f"{self.campaign}:{entry_id}", "campaign": self.campaign, "entry_id": entry_id,
                "material_id": material_id, "formula": formula, "chemsys": "-".join(elements), "elements": elements,
                "formation_energy_per_atom": float(formation_energy), "e_above_hull": float(e_above_hull),
                "is_stable": bool(e_above_hull <= ON_HULL),
            })
        return docs


def formation_vertices(index: HullIndex, system: frozenset[str]) -> list[PDEntry]:
    """The vertices of a reference hull as points in formation-energy space: the elements at zero, the stable compounds."""
    pd = index.phase_diagram
    points = [formation_point(el, 0.0) for el in sorted(system)]
    for entry in pd.stable_entries:
        if len(entry.composition.elements) > 1:
            points.append(PDEntry(entry.composition, pd.get_form_energy_per_atom(entry) * entry.composition.num_atoms))
    return points


def formation_point(formula: str, formation_energy_per_atom: float) -> PDEntry:
    composition = Composition(formula)
    return PDEntry(composition, formation_energy_per_atom * composition.num_atoms)
