"""CandidateQuery filters and sort orders: the same ids, in the same order, on MemoryStore and SQLiteStore."""

import pytest
from pydantic import ValidationError

from matris_flows.results import CandidateQuery, query_candidates

ALL_BY_E_HULL = ["c01", "c05", "c04", "c02", "c07", "c03", "c06", "c08", "c09"]


def ids(store, **query) -> list[str]:
    return [d["candidate_id"] for d in query_candidates(store, CandidateQuery(**query))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ALL_BY_E_HULL),
        ({"sort": "-e_above_hull"}, ["c06", "c03", "c02", "c07", "c04", "c05", "c01", "c08", "c09"]),
        ({"chemsys": "O-Li"}, ["c05", "c02"]),
        ({"chemsys": "Li-Fe-O"}, ["c01", "c04", "c07", "c08"]),
        ({"chemsys": "Li"}, []),
        ({"formula": "LiFeO2"}, ["c01", "c08"]),
        ({"formula": "Fe4O6"}, ["c03"]),
        ({"elements": ["Fe"]}, ["c01", "c04", "c07", "c03", "c06", "c08"]),
        ({"elements": ["O", "Li"]}, ["c01", "c05", "c04", "c02", "c07", "c08"]),
        ({"elements": ["Fe", "Li", "O"]}, ["c01", "c04", "c07", "c08"]),
        ({"max_e_above_hull": 0.05}, ["c01", "c05", "c04", "c02", "c07"]),
        ({"max_e_above_hull": 0.0}, ["c01", "c05"]),
        ({"max_e_above_hull": 1e9}, ALL_BY_E_HULL[:-2]),  # failed candidates never match
        ({"stable_only": True}, ["c01", "c05"]),
        ({"validated_only": True}, ["c01", "c05", "c03"]),
        ({"confirmed_stable_only": True}, ["c01", "c05"]),
        ({"status": "relax_failed"}, ["c08"]),
        ({"status": "no_reference"}, ["c09"]),
        ({"campaign": "beta"}, ["c05", "c03", "c06", "c09"]),
        ({"elements": ["Fe"], "max_e_above_hull": 0.1, "campaign": "alpha"}, ["c01", "c04", "c07"]),
        ({"chemsys": "Fe-O", "stable_only": True}, []),
        ({"limit": 3}, ["c01", "c05", "c04"]),
        ({"limit": 8}, ALL_BY_E_HULL[:8]),  # the limit reaches into the null group
        ({"sort": "-e_above_hull", "limit": 4}, ["c06", "c03", "c02", "c07"]),
        (
            {"sort": "formation_energy_per_atom"},
            ["c02", "c01", "c04", "c07", "c05", "c03", "c06", "c08", "c09"],
        ),
        ({"sort": "-candidate_id", "limit": 3}, ["c09", "c08", "c07"]),
        # nested field, null parent (validation None) sorted with the missing ones
        ({"sort": "validation.status"}, ["c01", "c05", "c03", "c07", "c02", "c04", "c06", "c08", "c09"]),
        ({"sort": "-validation.status", "limit": 5}, ["c07", "c03", "c01", "c05", "c02"]),
    ],
)
def test_query_ids(candidates_store, query, expected):
    assert ids(candidates_store, **query) == expected


def test_query_without_filter_returns_whole_documents(candidates_store, docs):
    found = query_candidates(candidates_store)
    assert {d["candidate_id"]: d for d in found} == {d["candidate_id"]: d for d in docs}


def test_query_properties(candidates_store):
    found = query_candidates(
        candidates_store, CandidateQuery(max_e_above_hull=0.0), properties=["candidate_id", "e_above_hull"]
    )
    assert found == [{"candidate_id": "c01", "e_above_hull": -0.01}, {"candidate_id": "c05", "e_above_hull": 0.0}]


def test_normalisation():
    query = CandidateQuery(chemsys="O-Li-Fe", formula="O4 Fe2 Li2", elements=["O", "Fe", "O"])
    assert (query.chemsys, query.formula, query.elements) == ("Fe-Li-O", "LiFeO2", ["Fe", "O"])


def test_to_mongo():
    assert CandidateQuery().to_mongo() == {}
    assert CandidateQuery(chemsys="O-Li").to_mongo() == {"chemsys": "Li-O"}
    assert CandidateQuery(elements=["O"], max_e_above_hull=0.1, confirmed_stable_only=True).to_mongo() == {
        "$and": [
            {"elements": {"$all": ["O"]}},
            {"e_above_hull": {"$lte": 0.1}},
            {"validation.status": "confirmed_stable"},
        ]
    }


@pytest.mark.parametrize(
    "bad",
    [{"chemsys": "Li-Xx"}, {"elements": ["Qq"]}, {"status": "great"}, {"sort": "-"}, {"sort": "$where"}, {"limit": 0}],
)
def test_invalid_queries(bad):
    with pytest.raises(ValidationError):
        CandidateQuery(**bad)
