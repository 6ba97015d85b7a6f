"""Candidate documents as text: an aligned table for people, JSON and CSV for programs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from monty.json import jsanitize
from pydantic import BaseModel, Field

OutputFormat = Literal["table", "json", "csv"]


class Column(BaseModel):
    """One column of a candidate listing."""

    name: str = Field(description="Column name: the CSV header and the key to ask for it by.")
    path: str = Field(description="Dotted path of the value in a candidate document.")
    header: str = Field(description="Table header, with the unit where the value has one.")
    decimals: int | None = Field(None, description="Decimals shown in the table for a float value.")


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column(name="candidate_id", path="candidate_id", header="candidate_id"),
        Column(name="formula", path="formula", header="formula"),
        Column(name="chemsys", path="chemsys", header="chemsys"),
        Column(name="e_above_hull", path="e_above_hull", header="e_above_hull (eV/atom)", decimals=3),
        Column(
            name="formation_energy_per_atom",
            path="formation_energy_per_atom",
            header="e_form (eV/atom)",
            decimals=3,
        ),
        Column(
            name="e_above_hull_campaign",
            path="e_above_hull_campaign",
            header="e_above_hull_campaign (eV/atom)",
            decimals=3,
        ),
        Column(name="e_above_hull_consensus", path="e_above_hull_consensus", header="consensus (eV/atom)", decimals=3),
        Column(name="consensus_spread", path="consensus_spread", header="spread (eV/atom)", decimals=3),
        Column(name="is_stable_consensus", path="is_stable_consensus", header="stable_consensus"),
        Column(name="is_stable", path="is_stable", header="stable"),
        Column(name="is_stable_campaign", path="is_stable_campaign", header="stable_campaign"),
        Column(name="matches_reference", path="matches_reference", header="known_phase"),
        Column(name="duplicate_of", path="duplicate_of", header="duplicate_of"),
        Column(name="source", path="provenance.source", header="source"),
        Column(name="parent", path="provenance.parent_id", header="parent"),
        Column(name="thermo_status", path="thermo_status", header="thermo_status"),
        Column(name="relax_status", path="relaxation.status", header="relax_status"),
        Column(name="validation_status", path="validation.status", header="validation_status"),
        Column(name="campaign", path="campaign", header="campaign"),
    )
}
"""Known columns by name; any other name is read as a dotted path into the document."""

DEFAULT_COLUMNS: tuple[str, ...] = (
    "candidate_id",
    "formula",
    "chemsys",
    "e_above_hull",
    "formation_energy_per_atom",
    "is_stable",
    "thermo_status",
    "relax_status",
    "validation_status",
)
"""Columns of a listing unless others are asked for."""

CONSENSUS_COLUMNS: tuple[str, ...] = ("e_above_hull_consensus", "consensus_spread", "is_stable_consensus")
"""Shown after e_above_hull by default when some listed candidate has a second opinion."""


def default_columns(docs: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """:data:`DEFAULT_COLUMNS`, with the consensus columns when any of ``docs`` has a consensus record."""
    if not any(doc.get("consensus") or doc.get("e_above_hull_consensus") is not None for doc in docs):
        return DEFAULT_COLUMNS
    at = DEFAULT_COLUMNS.index("e_above_hull") + 1
    return (*DEFAULT_COLUMNS[:at], *CONSENSUS_COLUMNS, *DEFAULT_COLUMNS[at:])

MISSING = "-"
"""What the table shows for a missing or null value (CSV leaves the cell empty)."""


def column(name: str) -> Column:
    """The :class:`Column` named ``name``, or an ad-hoc one reading the dotted path ``name``."""
    return COLUMNS.get(name) or Column(name=name, path=name, header=name)


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a nested document, None where any step is missing."""
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def cell_text(value: Any, decimals: int | None) -> str:
    """A value as the table shows it: floats at the column's decimals, enums by value, None as :data:`MISSING`."""
    if value is None:
        return MISSING
    if isinstance(value, float) and decimals is not None:
        return f"{value:.{decimals}f}"
    return str(getattr(value, "value", value))  # enums by their value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    if isinstance(value, Mapping | list):
        return json.dumps(jsanitize(value, strict=True, enum_values=True))
    return getattr(value, "value", value)


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def _is_numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def format_table(docs: Sequence[Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """Aligned plain-text columns, numbers right-aligned, one line per document."""
    cols = [column(name) for name in columns]
    rows = [[cell_text(get_path(doc, c.path), c.decimals) for c in cols] for doc in docs]
    widths = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(cols)]
    numeric = [_is_numeric([get_path(doc, c.path) for doc in docs]) for c in cols]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [line([c.header for c in cols]), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out) + "\n"


def format_json(docs: Iterable[Mapping[str, Any]]) -> str:
    """Whole documents (without the database ``_id``) as a JSON array."""
    return json.dumps(jsanitize([_plain(d) for d in docs], strict=True, enum_values=True), indent=2)


def format_csv(docs: Iterable[Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """CSV with column names as the header; floats at full precision, nulls as empty cells."""
    cols = [column(name) for name in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in cols])
    for doc in docs:
        writer.writerow([_csv_cell(get_path(doc, c.path)) for c in cols])
    return buffer.getvalue()


def format_candidates(
    docs: Iterable[Mapping[str, Any]], fmt: OutputFormat = "table", columns: Sequence[str] = DEFAULT_COLUMNS
) -> str:
    """Candidate documents as a table, JSON (whole documents; ``columns`` ignored) or CSV.

    Args:
        docs: Candidate documents as stored (e.g. from :func:`query_candidates`).
        fmt: 'table', 'json' or 'csv'.
        columns: Names from :data:`COLUMNS` or dotted paths, for 'table' and 'csv'.
    """
    docs = list(docs)
    if fmt == "table":
        return format_table(docs, columns)
    if fmt == "json":
        return format_json(docs)
    if fmt == "csv":
        return format_csv(docs, columns)
    raise ValueError(f"unknown format {fmt!r}: use 'table', 'json' or 'csv'")
