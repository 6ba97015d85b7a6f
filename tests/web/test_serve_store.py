"""``matris-flows serve`` without a browser: read-only, one-line errors, paging, downloads, MongoDB alike.

The campaigns are synthetic finished ones (``matris_flows.testing.synthetic_store``): candidate
documents shaped as the hull stage writes them, some failed (null energies), each system's
reference phases, written through the product's own store factory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from maggma.core import StoreError
from sqlite_damage import overwrite_index_page

from matris_flows.campaign.reading import query_campaign
from matris_flows.results.query import CandidateQuery, QueryError, query_candidates
from matris_flows.stores.config import StoreConfig
from matris_flows.testing.synthetic_store import write_synthetic_campaign
from matris_flows.web.app import create_app
from matris_flows.web.filters import params_of, query_from_params
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views import candidate, hull, table


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serve") / "campaign"
    write_synthetic_campaign(directory, 330, per_system=30, name="serve-test")
    return directory


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matris_flows.cli", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _digests(directory: Path) -> dict[str, str]:
    """The database's content: the file and its write-ahead log (SQLite gives a reader an empty one; -shm is the
    readers' shared index, not data)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (directory / "database").iterdir()
            if not p.name.endswith("-shm") and p.stat().st_size}


def test_the_app_reads_every_page_and_writes_nothing(campaign):
    before = _digests(campaign)
    reader = CampaignReader(campaign)
    try:
        app = create_app(reader)
        client = app.server.test_client()
        assert client.get("/").status_code == 200
        status = reader.status()
        assert status["screened"] == status["generated"] == 330 and not status["running"]
        systems = reader.chemical_systems()
        assert systems and all(2 <= len(s.split("-")) <= 4 for s in systems)
        assert hull.body(reader, systems[0], "e_above_hull")[1].figure is not None
        campaign_coloured = hull.body(reader, systems[0], "campaign")[1].figure
        assert "campaign hull" in json.dumps(campaign_coloured.to_plotly_json()["data"], default=str)
        page = table.table_page(reader, lambda: CandidateQuery(stable_campaign_only=True), 0)
        assert page.error is None and page.rows and page.count.endswith("match")
        ident = query_campaign(campaign, CandidateQuery(limit=1))[0]["candidate_id"]
        assert "structure-3d" in str(candidate.layout(reader, ident))
        assert client.get("/download/candidates.json").status_code == 200
        assert client.get(f"/download/candidate/{ident}.cif").status_code == 200
        with pytest.raises(StoreError):  # the collections are open read-only: a write cannot happen by mistake
            reader.stores.candidates.update({"candidate_id": ident, "campaign": "x"})
    finally:
        reader.close()
    assert _digests(campaign) == before


def test_pages_of_the_table_are_the_query_in_order_nulls_last(campaign):
    everything = query_campaign(campaign)
    assert any(d["e_above_hull"] is None for d in everything)  # the failed ones close the list
    reader = CampaignReader(campaign)
    try:
        for sort in ("e_above_hull", "-formation_energy_per_atom", "chemsys"):
            paged = []
            for skip in range(0, len(everything) + 50, 50):  # the page that straddles the nulls included
                paged += reader.candidates(CandidateQuery(sort=sort, skip=skip, limit=50), properties=["candidate_id"])
            assert [d["candidate_id"] for d in paged] == [d["candidate_id"] for d in query_campaign(campaign, CandidateQuery(sort=sort))]
        n_pages = table.table_page(reader, lambda: CandidateQuery(), 0).n_pages
        last = table.table_page(reader, lambda: CandidateQuery(), n_pages - 1)
        assert [r["candidate_id"] for r in last.rows] == [f"[{d['candidate_id']}](/candidate/{d['candidate_id']})"
                                                         for d in everything[(n_pages - 1) * table.PAGE_SIZE:]]
        past = table.table_page(reader, lambda: CandidateQuery(), n_pages + 5)  # a page past the end shows the last one
        assert past.current == n_pages - 1 and past.rows == last.rows
    finally:
        reader.close()


def test_skip_pages_a_memory_store_alike():
    from maggma.stores import MemoryStore

    store = MemoryStore(key="candidate_id")
    store.connect()
    store.update([{"candidate_id": f"c{i:03d}", "e_above_hull": None if i % 7 == 0 else (i * 37 % 101) / 100} for i in range(120)])
    everything = query_candidates(store, CandidateQuery())
    paged = [d for skip in range(0, 130, 25) for d in query_candidates(store, CandidateQuery(skip=skip, limit=25))]
    assert paged == everything and everything[-1]["e_above_hull"] is None


def test_downloads_are_the_selection_query_prints(campaign):
    reader = CampaignReader(campaign)
    try:
        client = create_app(reader).server.test_client()
        element = reader.chemical_systems()[0].split("-")[0]
        query = query_from_params({"stable_campaign_only": "1", "elements": element, "sort": "-e_above_hull_campaign"})
        assert query_from_params(dict(p.split("=") for p in params_of(query).replace("%2C", ",").split("&"))) == query
        expected = [d["candidate_id"] for d in query_campaign(campaign, query)]
        assert expected
        response = client.get(f"/download/candidates.csv?{params_of(query)}")
        assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
        assert [row["candidate_id"] for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))] == expected
        response = client.get(f"/download/candidates.json?{params_of(query)}")
        assert [doc["candidate_id"] for doc in json.loads(response.get_data(as_text=True))] == expected
        everything = json.loads(client.get("/download/candidates.json").get_data(as_text=True))
        assert len(everything) == 330  # more than one batch of the streamed reader would hold: all of them
        bad = client.get("/download/candidates.csv?elements=Xx")
        assert bad.status_code == 400 and bad.get_data(as_text=True).startswith("error: bad query: elements")
        assert bad.get_data(as_text=True).count("\n") == 1
        missing = client.get("/download/candidate/cand-nope.cif")
        assert missing.status_code == 404 and "no relaxed structure of candidate 'cand-nope'" in missing.get_data(as_text=True)
        failed = next(d for d in query_campaign(campaign) if d["structure"] is None)
        assert client.get(f"/download/candidate/{failed['candidate_id']}.poscar").status_code == 404
    finally:
        reader.close()


def test_a_bad_filter_is_one_line_above_the_table(campaign):
    reader = CampaignReader(campaign)
    try:
        from matris_flows.web.filters import build_query

        page = table.table_page(reader, lambda: build_query({"elements": "Li,Qq"}, {}, []), 0)
        assert page.rows == [] and "Qq" in str(page.error.children) and str(page.error.children).startswith("error: bad query")
        with pytest.raises(QueryError):
            build_query({}, {"max_e_above_hull": "lots"}, [])
    finally:
        reader.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_errors_are_one_line(campaign, tmp_path):
    cases = {
        "missing": ([str(tmp_path / "nowhere")], "is not a campaign directory"),
        "not a campaign": ([str(tmp_path)], "is not a campaign directory"),
    }
    damaged = tmp_path / "damaged"
    write_synthetic_campaign(damaged, 60, per_system=30, name="damaged")
    database = next((damaged / "database").glob("*.sqlite"))
    overwrite_index_page(database, _an_index(database))
    cases["damaged database"] = ([str(damaged)], "damaged")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases["port in use"] = ([str(campaign), "--port", str(busy.getsockname()[1])], "is in use: choose another with --port")
        for name, (args, expected) in cases.items():
            result = _serve(*args)
            assert result.returncode == 2, (name, result.stderr)
            assert result.stdout == "", name
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (name, result.stderr)


def _an_index(database: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(database)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'candidates'")]
    finally:
        conn.close()
    return sorted(names)[0]


def test_a_mongodb_campaign_is_served_alike(tmp_path, monkeypatch):
    """The same pages over maggma's MongoStore (mongomock behind it: no server installs offline)."""
    import maggma.stores.mongolike as mongolike
    import mongomock_ng

    server = mongomock_ng.MongoClient()
    server.close = lambda: None  # one server for every store of the test
    monkeypatch.setattr(mongolike, "MongoClient", lambda *args, **kwargs: server)
    monkeypatch.setenv("MATRIS_FLOWS_TEST_MONGO_URI", "mongodb://db.example.org:27017/matris")
    config = StoreConfig(type="mongo_uri", uri_env="MATRIS_FLOWS_TEST_MONGO_URI", database="matris")
    directory = tmp_path / "campaign"
    write_synthetic_campaign(directory, 90, per_system=30, name="mongo-web", store=config)
    write_synthetic_campaign(tmp_path / "other", 30, per_system=30, name="other-campaign", store=config)  # same database
    reader = CampaignReader(directory)
    try:
        assert reader.status()["screened"] == 90
        page = table.table_page(reader, lambda: CandidateQuery(), 0)
        assert page.count == "90 candidates match"  # the other campaign's candidates are not this one's
        client = create_app(reader).server.test_client()
        rows = list(csv.DictReader(io.StringIO(client.get("/download/candidates.csv?stable_only=1").get_data(as_text=True))))
        assert rows and all(row["is_stable"] == "True" for row in rows)
        assert hull.body(reader, reader.chemical_systems()[0], "e_above_hull")[0].id == "hull-caption"
    finally:
        reader.close()
