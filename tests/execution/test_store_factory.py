"""The store factory: configs, persistence, candidates, credentials."""

import logging
import pickle
import time
from functools import partial
from pathlib import Path

import pytest

from matris_flows.stores.backends import CANDIDATE_INDEXES, connect_job_store, make_candidates_store, make_job_store
from matris_flows.stores.config import StoreConfig, StoreConfigError, describe_store, load_store_config

STORES = Path(__file__).parents[2] / "stores"


def test_default_job_store_persists_across_reconnect(tmp_path):
    store = make_job_store(StoreConfig(), tmp_path)
    store.connect()
    store.update(
        {"uuid": "u1", "index": 1, "output": {"trajectory": [1.0, 2.0]}},
        save={"data": ["trajectory"]},
    )
    store.close()

    reopened = make_job_store(load_store_config(STORES / "local.yaml"), tmp_path)
    reopened.connect()
    assert reopened.count() == 1
    assert reopened.get_output("u1", load=True) == {"trajectory": [1.0, 2.0]}
    assert reopened.additional_stores["data"].count() == 1
    assert (tmp_path / "database" / "matris_flows.sqlite").is_file()


@pytest.mark.parametrize("name", ["local.yaml", "mongodb.yaml", "mongodb_uri.yaml"])
def test_example_configs_load(name):
    config = load_store_config(STORES / name)
    assert config.concurrent_writers == (config.type in ("mongo", "mongo_uri"))


def test_mongo_configs_build_without_a_server(monkeypatch, tmp_path):
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_USER", "alice")
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_PASSWORD", "pw")
    store = make_job_store(load_store_config(STORES / "mongodb.yaml"), tmp_path)
    assert type(store.additional_stores["data"]).__name__ == "GridFSStore"
    assert store.docs_store.username == "alice"

    monkeypatch.setenv("MATRIS_FLOWS_MONGO_URI", "mongodb+srv://alice:pw@example.org")
    store = make_job_store(load_store_config(STORES / "mongodb_uri.yaml"), tmp_path)
    assert type(store.additional_stores["data"]).__name__ == "S3Store"


def test_mongo_server_timeout_travels_with_the_config(tmp_path):
    """A Dask worker unpickles the store factory: an unreachable server fails there after the config's timeout."""
    from pymongo.errors import ServerSelectionTimeoutError

    config = StoreConfig(type="mongo", port=1, server_selection_timeout_s=0.5)  # nothing listens on port 1
    factory = pickle.loads(pickle.dumps(partial(connect_job_store, config, tmp_path)))
    started = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError):
        factory()
    assert time.monotonic() - started < 5  # pymongo's own default is 30 s


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.yaml", None, "does not exist"),
        ("bad.yaml", "type: [sqlite\n", "bad.yaml is not valid YAML"),
        ("typo.yaml", "type: sqlite\ndatabse: x\n", "databse"),
        ("wrong.yaml", "type: postgres\n", "type"),
        ("no_uri.yaml", "type: mongo_uri\n", "uri_env"),
    ],
)
def test_config_errors_are_clear(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:  # None: the file does not exist
        path.write_text(text)
    with pytest.raises(StoreConfigError, match=message):
        load_store_config(path)


def test_the_removed_monty_backend_is_a_one_line_error(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("type: monty\npath: database\nmonty_storage: sqlite\n")
    with pytest.raises(StoreConfigError) as error:
        load_store_config(old)
    message = str(error.value)
    assert message.endswith(
        "old.yaml is invalid: type: the 'monty' store backend (montydb) was removed: "
        "use type: sqlite, the embedded store that replaced it"
    )
    assert "\n" not in message
    # Earlier versions saved monty_storage in every store config they wrote (spec.yaml, flow.json).
    saved = tmp_path / "saved.yaml"
    saved.write_text("type: sqlite\nmonty_storage: sqlite\n")
    assert load_store_config(saved).model_dump() == StoreConfig().model_dump()


def test_missing_credentials_name_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("MATRIS_FLOWS_MONGO_PASSWORD", raising=False)
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_USER", "alice")
    config = load_store_config(STORES / "mongodb.yaml")
    with pytest.raises(StoreConfigError, match="MATRIS_FLOWS_MONGO_PASSWORD"):
        make_job_store(config, tmp_path)


def test_password_never_in_repr_or_logs(monkeypatch, tmp_path, caplog):
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_USER", "alice")
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_PASSWORD", secret)
    monkeypatch.setenv("MATRIS_FLOWS_MONGO_URI", f"mongodb+srv://alice:{secret}@h")
    caplog.set_level(logging.DEBUG)
    for name in ("mongodb.yaml", "mongodb_uri.yaml"):
        config = load_store_config(STORES / name)
        make_job_store(config, tmp_path)
        make_candidates_store  # noqa: B018 - connecting needs a server
        for text in (repr(config), str(config), config.model_dump_json(),
                     describe_store(config, tmp_path)):
            assert secret not in text
    assert secret not in caplog.text


def test_candidates_store_indexed_and_queryable(tmp_path):
    store = make_candidates_store(StoreConfig(type="memory"), tmp_path)
    indexed = {
        key for info in store._collection.index_information().values()
        for key, _ in info["key"]
    }
    assert set(CANDIDATE_INDEXES) <= indexed
    store.update([
        {"candidate_id": "c1", "chemsys": "Li-O", "formula": "Li2O",
         "e_above_hull": 0.0, "is_stable": True},
        {"candidate_id": "c2", "chemsys": "Li-O", "formula": "LiO2",
         "e_above_hull": 0.12, "is_stable": False},
    ])
    assert [d["candidate_id"] for d in store.query({"is_stable": True})] == ["c1"]


def test_candidates_store_on_the_default_backend(tmp_path):
    store = make_candidates_store(StoreConfig(), tmp_path)
    store.update([{"candidate_id": "c1", "chemsys": "Li-O", "e_above_hull": 0.0}])
    store.close()
    store = make_candidates_store(StoreConfig(), tmp_path)
    assert store.count({"chemsys": "Li-O"}) == 1
