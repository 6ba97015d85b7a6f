"""Reference providers: local files, the MP API behind a maggma cache, campaign-internal entries."""

import pytest
from hull_helpers import decode
from maggma.stores import MemoryStore
from monty.json import MontyDecoder
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.thermo.references import (
    MP_ELEMENTAL_REFS_FILE,
    CampaignInternalReferences,
    LocalFileReferences,
    MissingReferenceError,
    MPApiReferences,
    ReferenceProvider,
    default_reference_files,
    shared_data_dir,
)
from matris_flows.thermo.schemas import HullKind


def element_sets(entries):
    return {frozenset(el.symbol for el in e.elements) for e in entries}


def test_local_files_return_every_subsystem_of_the_request(lfpo_path):
    refs = LocalFileReferences([lfpo_path], snapshot_date="2024-11-21")
    fe_o = refs.get_entries("O-Fe")
    assert element_sets(fe_o) == {frozenset({"Fe"}), frozenset({"O"}), frozenset({"Fe", "O"})}
    assert len(refs.get_entries("Fe-Li-O-P")) == 973
    prov = refs.provenance("Fe-O", len(fe_o))
    assert prov.provider == "local_files" and prov.chemsys == "Fe-O" and prov.n_entries == len(fe_o)
    assert prov.source == "Li-Fe-P-O.json.gz" and str(prov.snapshot_date) == "2024-11-21"
    assert isinstance(refs, ReferenceProvider)


def test_missing_chemsys_is_an_error_naming_it(lfpo_path):
    refs = LocalFileReferences([lfpo_path, shared_data_dir() / MP_ELEMENTAL_REFS_FILE])
    with pytest.raises(MissingReferenceError, match="Cl-Na") as info:
        refs.get_entries("Na-Cl")  # elemental references alone do not make a Na-Cl hull
    assert info.value.chemsys == "Cl-Na"
    with pytest.raises(MissingReferenceError, match="Fe-Li-O-S"):
        refs.get_entries("Li-Fe-O-S")
    assert len(refs.get_entries("Na")) == 1  # the elemental file covers single elements


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MATRIS_FLOWS_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    assert default_reference_files()[-1] == tmp_path / MP_ELEMENTAL_REFS_FILE


class FakeRester:
    """Stands in for mp_api's MPRester: serves entries of a local file, counts calls."""

    calls: list[list[str]] = []

    def __init__(self, entries):
        self.entries = entries

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_entries_in_chemsys(self, elements, compatible_only=True, **kwargs):
        FakeRester.calls.append(list(elements))
        assert compatible_only
        return [e for e in self.entries if {el.symbol for el in e.elements} <= set(elements)]

    def get_database_version(self):
        return "2025.09.25"


@pytest.fixture
def mp_entries(lfpo_raw):
    return [decode(raw) for raw in lfpo_raw[:400]] + [
        decode(raw) for raw in lfpo_raw[400:] if len({*raw["composition"]}) == 1
    ]


def test_mp_api_fetches_a_system_once_and_reuses_it_offline(mp_entries):
    FakeRester.calls = []
    store = MemoryStore(collection_name="mp_cache")
    online = MPApiReferences(store, api_key="secret", rester_factory=lambda key: FakeRester(mp_entries))
    first = online.get_entries("Li-Fe-O")
    again = online.get_entries("Fe-Li-O")
    assert FakeRester.calls == [["Fe", "Li", "O"]]
    assert {e.entry_id for e in first} == {e.entry_id for e in again}
    assert all(isinstance(e, ComputedEntry) for e in again)

    def offline(key):
        raise AssertionError("no network: must come from the cache")

    cached = MPApiReferences(store, rester_factory=offline)
    assert len(cached.get_entries("Li-Fe-O")) == len(first)
    sub = cached.get_entries("Fe-O")  # a subsystem of a cached system needs no new fetch
    assert element_sets(sub) <= {frozenset({"Fe"}), frozenset({"O"}), frozenset({"Fe", "O"})}
    prov = cached.provenance("Fe-O", len(sub))
    assert prov.provider == "mp_api" and str(prov.snapshot_date) == "2025-09-25" and "Fe-Li-O" in prov.source
    assert store.count() == 1


def test_mp_api_empty_answer_is_an_error_and_not_cached(mp_entries):
    FakeRester.calls = []
    store = MemoryStore()
    refs = MPApiReferences(store, rester_factory=lambda key: FakeRester([]))
    with pytest.raises(MissingReferenceError, match="Cl-Na"):
        refs.get_entries("Na-Cl")
    assert store.count() == 0


def test_mp_api_provider_never_serialises_the_api_key():
    refs = MPApiReferences(MemoryStore(), api_key="secret")
    dumped = refs.as_dict()
    assert "secret" not in str(dumped)
    restored = MontyDecoder().process_decoded(dumped)
    assert isinstance(restored, MPApiReferences) and restored.api_key is None


def test_campaign_internal_references_need_every_element(mp_entries):
    elements = [e for e in mp_entries if len(e.elements) == 1 and e.elements[0].symbol in ("Li", "O")]
    refs = CampaignInternalReferences(elements, potential="matris_10m_omat")
    assert refs.hull_kind is HullKind.CAMPAIGN_INTERNAL
    assert element_sets(refs.get_entries("Li-O")) == {frozenset({"Li"}), frozenset({"O"})}
    with pytest.raises(MissingReferenceError, match=r"Fe-O.*Fe.*matris_10m_omat"):
        refs.get_entries("Fe-O")
