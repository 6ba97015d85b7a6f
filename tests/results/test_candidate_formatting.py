"""Candidate listings: aligned table, JSON and CSV round trips."""

import csv
import io
import json

import pytest

from matris_flows.results import DEFAULT_COLUMNS, format_candidates, query_candidates


def test_table(docs):
    text = format_candidates(docs, "table")
    lines = text.splitlines()
    assert len(lines) == 2 + len(docs)
    header = lines[0]
    assert "e_above_hull (eV/atom)" in header and "e_form (eV/atom)" in header
    # columns are aligned: each header starts where its column starts in every row
    start = header.index("thermo_status")
    row = {line.split()[0]: line for line in lines[2:]}
    assert row["c01"][start:].startswith("ok")
    assert row["c08"][start:].startswith("relax_failed")
    assert "-0.010" in row["c01"] and "0.300" in row["c06"]
    assert row["c08"].split()[1:] == ["LiFeO2", "Fe-Li-O", "-", "-", "-", "relax_failed", "failed", "-"]
    assert row["c01"].split()[-1] == "confirmed_stable"
    # numbers right-aligned: decimal points line up
    col = header.index("e_above_hull (eV/atom)") + len("e_above_hull (eV/atom)")
    assert {row[cid][:col][-4] for cid in ("c01", "c02", "c06")} == {"."}


def test_csv_round_trip(docs):
    rows = list(csv.DictReader(io.StringIO(format_candidates(docs, "csv"))))
    assert list(rows[0]) == list(DEFAULT_COLUMNS)
    by_id = {r["candidate_id"]: r for r in rows}
    for doc in docs:
        row = by_id[doc["candidate_id"]]
        for key in ("e_above_hull", "formation_energy_per_atom"):
            assert (float(row[key]) if row[key] else None) == doc[key]
        assert row["thermo_status"] == doc["thermo_status"]
        assert row["relax_status"] == doc["relaxation"]["status"]
        assert row["validation_status"] == ((doc["validation"] or {}).get("status") or "")
    assert by_id["c05"]["is_stable"] == "True" and by_id["c09"]["is_stable"] == ""


def test_csv_custom_columns(docs):
    text = format_candidates(docs[:1], "csv", columns=["candidate_id", "relaxation.n_steps", "validation"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["candidate_id", "relaxation.n_steps", "validation"]
    assert rows[1][:2] == ["c01", "0"] and json.loads(rows[1][2])["status"] == "confirmed_stable"


def test_json_round_trip_from_store(candidates_store, docs):
    found = query_candidates(candidates_store)
    assert json.loads(format_candidates(found, "json")) == [
        next(d for d in docs if d["candidate_id"] == f["candidate_id"]) for f in found
    ]


def test_unknown_format(docs):
    with pytest.raises(ValueError, match="unknown format"):
        format_candidates(docs, "xml")
