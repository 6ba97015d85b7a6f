"""What the web pages ask of a campaign's store, through its read-only collections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matris_flows.campaign.directory import read_activity
from matris_flows.campaign.reading import campaign_hull_data
from matris_flows.campaign.status import open_campaign_stores, status_of
from matris_flows.results.hull_data import MAX_PLOT_ELEMENTS, HullData
from matris_flows.results.query import CandidateQuery, query_candidates

PLOTTABLE_SYSTEMS_LIMIT = 5000
"""Chemical systems offered by the hull explorer's picker at most (the first in its order)."""


class CampaignReader:
    """One campaign's store, opened read-only once and shared by the server's threads.

    Every query is scoped to the campaign (:meth:`~matris_flows.campaign.status.CampaignStores.scope`),
    so a MongoDB database shared by several campaigns shows only this one.

    Raises (on construction): SpecError when ``directory`` holds no campaign, the store's
    errors (missing or damaged database, unreachable server) as they come.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.stores = open_campaign_stores(self.directory)
        self.spec = self.stores.spec
        self.name = self.spec.name
        # a first query: an unreachable server (a MongoStore connects lazily) fails here, not on the first page
        self.stores.candidates.count(self.stores.scope())

    def close(self) -> None:
        """Close the store's collections."""
        self.stores.close()

    @property
    def has_consensus(self) -> bool:
        """Whether the campaign's spec runs the consensus stage."""
        return self.spec.consensus is not None

    def status(self) -> dict[str, Any]:
        """``matris-flows status`` of the campaign, with ``in_flight`` (jobs handed to workers, while a driver runs)."""
        status = status_of(self.stores)
        status["in_flight"] = read_activity(self.directory) if status["running"] else 0
        return status

    def chemical_systems(self) -> list[str]:
        """The chemical systems of the campaign's candidates that a hull picture can draw (2-4 elements).

        Largest systems first (their hulls hold the subsystems' candidates too), then alphabetically.
        """
        systems = self.stores.candidates.distinct("chemsys", self.stores.scope())
        drawable = [s for s in systems if isinstance(s, str) and 2 <= len(s.split("-")) <= MAX_PLOT_ELEMENTS]
        return sorted(drawable, key=lambda s: (-len(s.split("-")), s))[:PLOTTABLE_SYSTEMS_LIMIT]

    def hull(self, chemsys: str, color_by: str = "e_above_hull") -> HullData:
        """The hull picture's data of ``chemsys`` (ValueError with one line when there is none)."""
        return campaign_hull_data(self.stores.candidates, self.stores.references, self.name, chemsys, color_by,
                                  self.stores.scope())

    def count(self, query: CandidateQuery) -> int:
        """Candidates of this campaign matching ``query``."""
        return self.stores.candidates.count(self._scoped(query).to_mongo())

    def candidates(self, query: CandidateQuery, properties: list[str] | None = None) -> list[dict[str, Any]]:
        """The matching candidates of this campaign, in the query's order, its skip and limit applied."""
        return query_candidates(self.stores.candidates, self._scoped(query), properties)

    def iter_candidates(self, query: CandidateQuery, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching candidate, read ``batch`` at a time (downloads of large selections)."""
        skip = query.skip
        while True:
            page = self.candidates(query.model_copy(update={"skip": skip, "limit": batch}))
            yield from page
            if len(page) < batch:
                return
            skip += batch

    def candidate(self, candidate_id: str) -> dict[str, Any] | None:
        """The candidate document with this id in this campaign (None when there is none)."""
        doc = self.stores.candidates.query_one({"candidate_id": candidate_id, **self.stores.scope()})
        if doc is not None:
            doc.pop("_id", None)
        return doc

    def duplicates_of(self, candidate_id: str) -> list[str]:
        """Ids of the candidates marked as duplicates of this one."""
        found = self.stores.candidates.query({"duplicate_of": candidate_id, **self.stores.scope()}, properties=["candidate_id"])
        return sorted(doc["candidate_id"] for doc in found)

    def _scoped(self, query: CandidateQuery) -> CandidateQuery:
        return query.model_copy(update={"campaign": self.name}) if self.stores.scope() else query
