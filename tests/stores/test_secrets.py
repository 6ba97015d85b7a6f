"""No secrets on disk or on the wire: a MongoDB URI with a password never leaves the environment.

A campaign with a ``mongo_uri`` store and ``references.provider: mp_api`` (the MP cache is a
collection of that store) runs against an in-memory stand-in for the server (mongomock behind
maggma's ``MongoStore``, so the real store classes build and connect from the URI). The planted
password must not appear in the campaign directory (flow.json, spec.yaml, campaign.log, ...),
in any document written to the store (journal records included), in any log record, or in the
pickled arguments of any Dask task.
"""

import json
import logging
import pickle
import stat

import pytest
from campaign_specs import emt_spec, prototype_generation, spec_yaml

from matris_flows.stores.backends import make_collection_store
from matris_flows.stores.campaign_store import CampaignStore
from matris_flows.stores.config import StoreConfig

SECRET = "S3cretPlanted"
URI_ENV = "MATRIS_FLOWS_TEST_MONGO_URI"
URI = f"mongodb://matris:{SECRET}@db.example.org:27017/matris"
CONFIG = StoreConfig(type="mongo_uri", uri_env=URI_ENV, database="matris")


@pytest.fixture
def mongo_server(monkeypatch):
    """maggma's MongoStore connects to one in-memory mongomock server per URI; the URI is in the environment."""
    import maggma.stores.mongolike as mongolike
    import mongomock_ng

    class Server(mongomock_ng.MongoClient):
        def close(self):  # one server for every store of the test: a store closing its client leaves it up
            pass

    servers: dict[str, Server] = {}

    def client(host=None, *args, **kwargs):
        return servers.setdefault(str(host), Server())

    monkeypatch.setattr(mongolike, "MongoClient", client)
    monkeypatch.setenv(URI_ENV, URI)
    return servers


def test_a_backend_store_would_leak_the_password(mongo_server, tmp_path):
    # what the flow used to hold: the grep below would catch it
    store = make_collection_store(CONFIG, tmp_path, "mp_reference_cache")
    assert SECRET.encode() in pickle.dumps(store)
    assert SECRET in json.dumps(store.as_dict())


def test_a_campaign_store_holds_names_and_connects_from_the_environment(mongo_server, tmp_path, monkeypatch):
    store = CampaignStore(CONFIG, "mp_reference_cache", tmp_path, key="chemsys")
    store.connect()
    store.update([{"chemsys": "Cu-Ni", "n_entries": 2}])
    for serialised in (pickle.dumps(store), json.dumps(store.as_dict()).encode(), repr(store).encode(), store.name.encode()):
        assert SECRET.encode() not in serialised
    assert URI_ENV in json.dumps(store.as_dict())

    # what a worker gets: a copy that connects to the same server from its own environment
    copy = pickle.loads(pickle.dumps(store))
    copy.connect()
    assert copy.query_one({"chemsys": "Cu-Ni"})["n_entries"] == 2
    assert copy.distinct("chemsys") == ["Cu-Ni"] and copy.count() == 1

    monkeypatch.delenv(URI_ENV)
    from matris_flows.stores.config import StoreConfigError

    with pytest.raises(StoreConfigError, match=URI_ENV):
        pickle.loads(pickle.dumps(store)).connect()


SPEC = spec_yaml(
    emt_spec(
        "secrets", prototype_generation(), relax={"max_steps": 5, "engine": "ase"},
        hull={"references": {"provider": "mp_api"}},
        store={"type": "mongo_uri", "uri_env": URI_ENV, "database": "matris"},
        execution={"n_workers": 1},
    )
)


def _seed_mp_cache(servers) -> None:
    """The MP cache of Cu-Ni (elemental entries from the shared MP data), so no job needs the internet."""
    from monty.serialization import loadfn
    from reference_data import shared_data_dir

    from matris_flows.thermo.references import MP_THERMO_TYPE

    elements = loadfn(shared_data_dir() / "mp_elemental_refs_2023-02-07.json.gz")
    entries = [entry.as_dict() for symbol, entry in elements.items() if symbol in ("Cu", "Ni")]
    cache = CampaignStore(CONFIG, "mp_reference_cache", key="chemsys")
    cache.connect()
    cache.update([{"chemsys": "Cu-Ni", "thermo_type": MP_THERMO_TYPE, "elements": ["Cu", "Ni"], "entries": entries,
                   "n_entries": len(entries), "database_version": "2023.02.07", "fetched_at": "2023-02-07T00:00:00+00:00"}])


def test_no_password_in_the_campaign_directory_store_logs_or_tasks(mongo_server, tmp_path, caplog):
    from distributed import Client
    from distributed.protocol.pickle import dumps as dask_pickle

    from matris_flows.campaign.directory import FLOW_FILE, SPEC_FILE
    from matris_flows.campaign.runner import run_campaign

    _seed_mp_cache(mongo_server)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    directory = tmp_path / "campaign"

    tasks: list[bytes] = []
    # threads, not processes: the workers see this process's stand-in server, and write to it directly
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        submit = client.submit

        def recording_submit(func, *args, **kwargs):
            tasks.append(dask_pickle((func, args, kwargs)))  # what goes to the scheduler and the workers
            return submit(func, *args, **kwargs)

        client.submit = recording_submit
        with caplog.at_level(logging.DEBUG):
            summary = run_campaign(spec_path, directory, client=client)

    # the campaign ran on the stand-in server: candidates there, job tasks pickled with their inputs
    assert summary.candidates == 2, summary
    assert len(tasks) >= 4

    leaks = [f"task {i}" for i, task in enumerate(tasks) if SECRET.encode() in task]
    for path in directory.rglob("*"):
        if path.is_file() and SECRET.encode() in path.read_bytes():
            leaks.append(str(path))
    for server in mongo_server.values():
        for database in server.list_database_names():
            for name in server[database].list_collection_names():
                for doc in server[database][name].find({}):
                    if SECRET in json.dumps(doc, default=str):
                        leaks.append(f"{database}.{name} document {doc.get('_id')}")
    leaks += [f"log record {record.getMessage()[:100]!r}" for record in caplog.records if SECRET in record.getMessage()]
    assert not leaks, f"the planted password is in: {leaks}"
    assert any(b"MPApiReferences" in task and b"CampaignStore" in task for task in tasks), "the MP cache travelled by name"

    # campaign files are readable by their owner only
    for name in (FLOW_FILE, SPEC_FILE, "campaign.log"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
