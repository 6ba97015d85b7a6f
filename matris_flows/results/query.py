"""Queries on the ``candidates`` collection: one filter model, any maggma Store.

Two hulls can be filtered on (see :class:`~matris_flows.thermo.schemas.CandidateDocument`):
the reference hull (``stable_only``, ``max_e_above_hull``) and the campaign hull, which
also holds every other candidate (``stable_campaign_only``, ``max_e_above_hull_campaign``).
``novel_only`` keeps what a screener would call new: assessed, not a known reference
phase, not a duplicate of another candidate.

Every operator used here ($and, $or, $nor, $all, $lte) behaves the same in MongoDB and
mongomock, whose matcher MemoryStore and SQLiteStore both apply. Documents whose sort field is
null or missing (failed candidates have ``e_above_hull = None``) are returned
after all others, whatever the direction: the databases disagree with screeners
about where "no number" belongs, so it is decided here and not by the backend.
"""

from __future__ import annotations

from typing import Any

from maggma.core import Store
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymatgen.core import Composition, Element

from matris_flows.core.chemsys import chemsys_of, elements_of
from matris_flows.generation.schemas import Provenance, SourceMethod
from matris_flows.thermo.schemas import CandidateDocument, ThermoStatus
from matris_flows.validation.join import CONFIRMED_STABLE_QUERY, VALIDATED_QUERY

TIE_BREAK_FIELD = "candidate_id"
"""Secondary sort key (always ascending), so equal values come back in a fixed order."""

class QueryError(ValueError):
    """A candidate query that cannot be run (bad option or value); the message is one line."""


def query_error(exc: ValidationError) -> QueryError:
    """A :class:`QueryError` of one line naming the filter(s) at fault, from pydantic's error."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "query"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return QueryError("bad query: " + "; ".join(parts))


NOVEL_QUERY: dict[str, Any] = {
    "$and": [{"thermo_status": ThermoStatus.OK.value}, {"matches_reference": None}, {"duplicate_of": None}]
}
"""Assessed candidates that are neither a known reference phase nor a duplicate of another candidate."""

WhereValue = str | int | float | bool | None


def where_path(key: str) -> str:
    """The document path a ``where`` key names: a candidate field or dotted path as given, a provenance field under ``provenance.``.

    Raises ValueError for an operator, an empty part, or a plain name that is neither.
    """
    if not key or key.startswith("$") or any(not part or part.startswith("$") for part in key.split(".")):
        raise ValueError(f"where keys must be field names or dotted paths, not {key!r}")
    if "." in key or key in CandidateDocument.model_fields:
        return key
    if key in Provenance.model_fields:
        return f"provenance.{key}"
    raise ValueError(f"unknown field {key!r}: use a candidate field, a provenance field or a dotted path")


class CandidateQuery(BaseModel):
    """A filter on the candidates collection; every set field narrows the result (logical AND)."""

    model_config = ConfigDict(extra="forbid")

    chemsys: str | None = Field(
        None, description="Exact chemical system, elements in any order ('Li-Fe-O'); normalised to sorted."
    )
    formula: str | None = Field(None, description="Formula in any spelling ('Li2 O2'); normalised to the reduced formula.")
    elements: list[str] | None = Field(
        None, description="Candidates containing all of these elements (and possibly others)."
    )
    max_e_above_hull: float | None = Field(
        None, description="Largest energy above the reference hull, eV/atom (inclusive); failed candidates never match."
    )
    stable_only: bool = Field(False, description="Only candidates with is_stable true (reference hull).")
    max_e_above_hull_campaign: float | None = Field(
        None,
        description="Largest energy above the campaign hull (references + all candidates), eV/atom (inclusive); "
        "candidates the campaign-wide step has not assessed never match.",
    )
    stable_campaign_only: bool = Field(
        False, description="Only candidates with is_stable_campaign true (campaign hull: competing candidates included)."
    )
    stable_consensus_only: bool = Field(
        False, description="Only candidates with is_stable_consensus true (the consensus stage's rule over every model)."
    )
    max_consensus_spread: float | None = Field(
        None,
        description="Largest spread of the models' e_above_hull, eV/atom (inclusive): where they agree; candidates "
        "without a second opinion never match.",
    )
    novel_only: bool = Field(
        False, description="Only assessed candidates that match no reference phase and duplicate no other candidate."
    )
    source: SourceMethod | None = Field(
        None, description="Generation source (provenance.source): substitution, prototype, random_search or file."
    )
    parent: str | None = Field(None, description="Parent template id (provenance.parent_id), e.g. an MP id or a file path.")
    where: dict[str, WhereValue] | None = Field(
        None,
        description="Equality filters {path: value}; a plain provenance field name (prototype, file_path, seed, ...) "
        "means provenance.<name>.",
    )
    validated_only: bool = Field(False, description="Only candidates with a DFT verdict (validation.validated true).")
    confirmed_stable_only: bool = Field(False, description="Only candidates DFT confirmed stable.")
    status: ThermoStatus | None = Field(None, description="thermo_status: ok, rejected, relax_failed or no_reference.")
    campaign: str | None = Field(None, description="Name of the campaign that wrote the candidate.")
    sort: str = Field(
        "e_above_hull",
        description="Field to sort on (dotted paths allowed); prefix '-' for descending. Nulls come last.",
    )
    limit: int | None = Field(None, ge=1, description="Largest number of documents returned; None for all.")
    skip: int = Field(0, ge=0, description="Matching documents passed over (in the sorted order) before the first returned: paging.")

    @field_validator("chemsys")
    @classmethod
    def _normalise_chemsys(cls, value: str | None) -> str | None:
        return None if value is None else chemsys_of(elements_of(value))

    @field_validator("formula")
    @classmethod
    def _normalise_formula(cls, value: str | None) -> str | None:
        return None if value is None else Composition(value).reduced_formula

    @field_validator("elements")
    @classmethod
    def _normalise_elements(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({Element(sym.strip()).symbol for sym in value})

    @field_validator("where")
    @classmethod
    def _normalise_where(cls, value: dict[str, WhereValue] | None) -> dict[str, WhereValue] | None:
        return None if value is None else {where_path(key): v for key, v in value.items()}

    @field_validator("sort")
    @classmethod
    def _check_sort(cls, value: str) -> str:
        field = value.removeprefix("-")
        if not field or field.startswith("$") or any(not part for part in field.split(".")):
            raise ValueError(f"sort must be a field name, optionally prefixed by '-', not {value!r}")
        return value

    @property
    def sort_field(self) -> str:
        """The field sorted on, without the direction prefix."""
        return self.sort.removeprefix("-")

    @property
    def sort_direction(self) -> int:
        """1 for ascending, -1 for descending."""
        return -1 if self.sort.startswith("-") else 1

    def to_mongo(self) -> dict[str, Any]:
        """MongoDB criteria (``{}`` when nothing is set) that MemoryStore and SQLiteStore also understand."""
        clauses: list[dict[str, Any]] = []
        if self.chemsys is not None:
            clauses.append({"chemsys": self.chemsys})
        if self.formula is not None:
            clauses.append({"formula": self.formula})
        if self.elements:
            clauses.append({"elements": {"$all": self.elements}})
        if self.max_e_above_hull is not None:
            # $lte never matches null or a missing field: failed candidates stay out
            clauses.append({"e_above_hull": {"$lte": self.max_e_above_hull}})
        if self.stable_only:
            clauses.append({"is_stable": True})
        if self.max_e_above_hull_campaign is not None:
            clauses.append({"e_above_hull_campaign": {"$lte": self.max_e_above_hull_campaign}})
        if self.stable_campaign_only:
            clauses.append({"is_stable_campaign": True})
        if self.stable_consensus_only:
            clauses.append({"is_stable_consensus": True})
        if self.max_consensus_spread is not None:
            clauses.append({"consensus_spread": {"$lte": self.max_consensus_spread}})
        if self.novel_only:
            clauses.extend(NOVEL_QUERY["$and"])
        if self.source is not None:
            clauses.append({"provenance.source": self.source.value})
        if self.parent is not None:
            clauses.append({"provenance.parent_id": self.parent})
        for path, value in (self.where or {}).items():
            clauses.append({path: value})
        if self.validated_only:
            clauses.append(dict(VALIDATED_QUERY))
        if self.confirmed_stable_only:
            clauses.append(dict(CONFIRMED_STABLE_QUERY))
        if self.status is not None:
            clauses.append({"thermo_status": self.status.value})
        if self.campaign is not None:
            clauses.append({"campaign": self.campaign})
        return _and(clauses)


def _and(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    # $and rather than merged dicts: two clauses on one field must not overwrite each other
    if not clauses:
        return {}
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


def null_criteria(field: str) -> dict[str, Any]:
    """Criteria matching documents where ``field`` (a dotted path) is null or missing.

    Every parent of a dotted path is tested too: ``{"validation.status": None}``
    disagrees between backends when ``validation`` itself is null (mongomock, and so
    MemoryStore and SQLiteStore, does not match it; MongoDB does).
    """
    parts = field.split(".")
    clauses = [{".".join(parts[: i + 1]): None} for i in range(len(parts))]
    return _or(clauses)


def _or(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def query_candidates(
    store: Store, query: CandidateQuery | None = None, properties: list[str] | None = None
) -> list[dict[str, Any]]:
    """Candidate documents matching ``query``, sorted, nulls last, at most ``query.limit``.

    Args:
        store: A connected maggma Store holding the candidates collection.
        query: The filter; None returns every candidate sorted by e_above_hull.
        properties: Fields to return (dotted paths allowed); None for whole documents.

    Returns:
        Documents without the database's ``_id``.
    """
    query = query or CandidateQuery()
    criteria = query.to_mongo()
    field = query.sort_field
    sort = {field: query.sort_direction}
    if field != TIE_BREAK_FIELD:
        sort[TIE_BREAK_FIELD] = 1
    limit = query.limit or 0  # maggma: 0 means no limit

    missing = null_criteria(field)
    # $nor of the null test rather than $ne: the two groups partition the documents on every backend
    valued = _and([c for c in (criteria, {"$nor": [missing]}) if c])
    docs = list(store.query(criteria=valued, properties=properties, sort=sort, skip=query.skip, limit=limit))
    if not limit or len(docs) < limit:
        # the page reaches the documents without a value: skip what the valued ones did not use up
        skip = max(query.skip - store.count(valued), 0) if query.skip and not docs else 0
        docs += store.query(
            criteria=_and([c for c in (criteria, missing) if c]),
            properties=properties,
            sort={TIE_BREAK_FIELD: 1},
            skip=skip,
            limit=limit - len(docs) if limit else 0,
        )
    for doc in docs:
        doc.pop("_id", None)
    return docs
