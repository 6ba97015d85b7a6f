"""The candidate table's filters: the ``query`` command's, from the page's form and from download URLs.

One set of names everywhere: a filter's URL parameter and form control are named after its
:class:`~matris_flows.results.query.CandidateQuery` field, so a download link carries exactly
the selection the table shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from matris_flows.results.query import CandidateQuery, QueryError, query_error

TEXT_FILTERS: dict[str, str] = {
    "chemsys": "chemical system (e.g. Fe-Li-O)",
    "formula": "formula (e.g. LiFeO2)",
    "elements": "contains all of the elements (e.g. Li,O)",
    "parent": "parent template (e.g. mp-19017)",
}
"""Free-text filters and their labels (an example in brackets)."""

NUMBER_FILTERS: dict[str, str] = {
    "max_e_above_hull": "max e_above_hull (eV/atom)",
    "max_e_above_hull_campaign": "max e_above_hull_campaign (eV/atom)",
    "max_consensus_spread": "max consensus spread (eV/atom)",
}
"""Upper bounds (inclusive) and their labels."""

FLAG_FILTERS: dict[str, str] = {
    "stable_only": "stable (reference hull)",
    "stable_campaign_only": "stable (campaign hull)",
    "stable_consensus_only": "stable by consensus",
    "novel_only": "novel",
    "validated_only": "DFT-validated",
    "confirmed_stable_only": "DFT-confirmed stable",
}
"""Yes/no filters (the ``query`` command's --stable, --stable-campaign, ...) and their labels."""

SOURCES = ("substitution", "prototype", "random_search", "file")
"""Generation sources the source filter offers."""


def build_query(
    text: Mapping[str, str | None], numbers: Mapping[str, float | str | None], flags: Iterable[str],
    source: str | None = None, sort: str = "e_above_hull", skip: int = 0, limit: int | None = None,
) -> CandidateQuery:
    """The query of the form's values; empty values set nothing.

    Raises:
        QueryError: one line naming the filter at fault (an unknown element, a bad number, ...).
    """
    values: dict[str, Any] = {}
    for name in TEXT_FILTERS:
        value = (text.get(name) or "").strip()
        if value:
            values[name] = [part.strip() for part in value.split(",") if part.strip()] if name == "elements" else value
    for name in NUMBER_FILTERS:
        value = numbers.get(name)
        if value not in (None, ""):
            values[name] = value
    for name in flags:
        if name not in FLAG_FILTERS:
            raise QueryError(f"unknown filter {name!r}")
        values[name] = True
    if source:
        values["source"] = source
    try:
        return CandidateQuery(**values, sort=sort, skip=skip, limit=limit)
    except ValidationError as exc:
        raise query_error(exc) from None


def query_from_params(params: Mapping[str, str]) -> CandidateQuery:
    """The query of a URL's parameters (those of :func:`params_of`), every match (no paging)."""
    truthy = {"1", "true", "yes", "on"}
    return build_query(
        text={name: params.get(name) for name in TEXT_FILTERS},
        numbers={name: params.get(name) for name in NUMBER_FILTERS},
        flags=[name for name in FLAG_FILTERS if str(params.get(name, "")).lower() in truthy],
        source=params.get("source") or None,
        sort=params.get("sort") or "e_above_hull",
    )


def params_of(query: CandidateQuery) -> str:
    """The URL query string of ``query``'s filters and order (what :func:`query_from_params` reads back)."""
    params: dict[str, str] = {}
    for name in (*TEXT_FILTERS, *NUMBER_FILTERS):
        value = getattr(query, name)
        if value is not None:
            params[name] = ",".join(value) if isinstance(value, list) else str(value)
    params.update({name: "1" for name in FLAG_FILTERS if getattr(query, name)})
    if query.source is not None:
        params["source"] = query.source.value
    if query.sort != "e_above_hull":
        params["sort"] = query.sort
    return urlencode(params)
