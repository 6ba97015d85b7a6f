"""Downloads: the table's selection as CSV or JSON (streamed, any size), one candidate's structure as CIF or POSCAR.

Plain Flask routes on the Dash app's server, so the links work from the page, from ``curl`` and
from a script alike; the filters are the table's URL parameters (:mod:`matris_flows.web.filters`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Flask, Response, request
from monty.json import jsanitize

from matris_flows.results.export import structure_filename, structure_of
from matris_flows.results.formatting import format_csv
from matris_flows.web.filters import query_from_params
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views.common import error_message
from matris_flows.web.views.table import columns_of

STRUCTURE_FORMATS = {"cif": "chemical/x-cif", "poscar": "text/plain"}


def register(server: Flask, reader: CampaignReader) -> None:
    """Add the download routes to ``server``."""

    @server.route("/download/candidates.<fmt>")
    def selection(fmt: str) -> Response:
        if fmt not in ("csv", "json"):
            return _error(f"unknown format {fmt!r}: csv or json", 404)
        try:
            query = query_from_params(request.args)
            reader.count(query)  # a store that fails, fails here with its one line, not halfway through the file
        except Exception as exc:  # noqa: BLE001 - one line for the user
            return _error(error_message(exc), 400)
        docs = reader.iter_candidates(query)
        body = _csv(docs, columns_of(reader)) if fmt == "csv" else _json(docs)
        name = f"{reader.name}-candidates.{fmt}"
        return Response(body, mimetype="text/csv" if fmt == "csv" else "application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @server.route("/download/candidate/<candidate_id>.<fmt>")
    def structure(candidate_id: str, fmt: str) -> Response:
        if fmt not in STRUCTURE_FORMATS:
            return _error(f"unknown format {fmt!r}: cif or poscar", 404)
        try:
            doc = reader.candidate(candidate_id)
        except Exception as exc:  # noqa: BLE001 - one line for the user
            return _error(error_message(exc), 500)
        relaxed = structure_of(doc) if doc is not None else None
        if relaxed is None:
            return _error(f"campaign {reader.name} has no relaxed structure of candidate {candidate_id!r}", 404)
        text = relaxed.to(fmt=fmt)  # the writer of ``export`` (pymatgen's)
        return Response(text, mimetype=STRUCTURE_FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{structure_filename(doc, fmt)}"'})


def _csv(docs: Iterator[dict], columns: list[str]) -> Iterator[str]:
    """CSV rows as they are read, the header first (the ``query --format csv`` cells)."""
    yield format_csv([], columns)
    batch: list[dict] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == 1000:
            yield format_csv(batch, columns).split("\n", 1)[1]
            batch = []
    if batch:
        yield format_csv(batch, columns).split("\n", 1)[1]


def _json(docs: Iterator[dict]) -> Iterator[str]:
    """A JSON array of whole documents (``query --format json``), one document at a time."""
    yield "["
    for position, doc in enumerate(docs):
        yield ("," if position else "") + "\n" + json.dumps(jsanitize(doc, strict=True, enum_values=True))
    yield "\n]\n"


def _error(message: str, code: int) -> Response:
    return Response(f"error: {message}\n", status=code, mimetype="text/plain")
