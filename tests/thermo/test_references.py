"""Reference providers: local files, the MP API behind a maggma cache, campaign-internal entries."""

import copy
import gzip
import json

import pytest
from hull_helpers import decode
from maggma.stores import MemoryStore
from monty.json import MontyDecoder
from pymatgen.entries.computed_entries import ComputedEntry, ConstantEnergyAdjustment
from reference_data import shared_data_dir

from matris_flows.core.data_paths import resolve_data_path
from matris_flows.thermo.references import (
    DEFAULT_REFERENCE_FILE,
    MP_THERMO_TYPE,
    CampaignInternalReferences,
    LocalFileReferences,
    MissingReferenceError,
    MPApiReferences,
    ReferenceDataError,
    ReferenceProvider,
    default_reference_files,
    material_id_of,
)
from matris_flows.thermo.schemas import HullKind

ELEMENTAL_REFS = shared_data_dir() / "mp_elemental_refs_2023-02-07.json.gz"
OLD_LFO = shared_data_dir() / "mp_chemsys" / "Li-Fe-O.json.gz"  # an older MP snapshot (ids mp-13, not mp-13-GGA)


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
    assert prov.snapshot.startswith("Li-Fe-P-O.json.gz sha256:") and len(prov.snapshot.split("sha256:")[1]) == 12
    assert isinstance(refs, ReferenceProvider)


def test_missing_chemsys_is_an_error_naming_it(lfpo_path):
    # The elemental file is the same snapshot as Li-Fe-P-O for Li, Fe, P and O: they pool.
    refs = LocalFileReferences([lfpo_path, ELEMENTAL_REFS])
    with pytest.raises(MissingReferenceError, match="Cl-Na") as info:
        refs.get_entries("Na-Cl")  # elemental references alone do not make a Na-Cl hull
    assert info.value.chemsys == "Cl-Na"
    with pytest.raises(MissingReferenceError, match="Fe-Li-O-S"):
        refs.get_entries("Li-Fe-O-S")
    assert len(refs.get_entries("Na")) == 1  # the elemental file covers single elements


def test_default_references_are_the_packaged_li_fe_o_subsystem_of_the_li_fe_p_o_file(lfpo_path, monkeypatch):
    monkeypatch.setenv("MATRIS_FLOWS_SHARED_DATA", "/nonexistent")  # the package never looks there
    assert default_reference_files() == [f"package:{DEFAULT_REFERENCE_FILE}"]
    assert resolve_data_path(default_reference_files()[0]).is_file()
    packaged = LocalFileReferences()
    assert packaged.snapshot_date == "2024-11-21"
    entries = packaged.get_entries("Li-Fe-O")
    subsystem = LocalFileReferences([lfpo_path]).get_entries("Li-Fe-O")
    assert len(entries) == len(subsystem) == 378
    assert {e.entry_id: round(e.energy, 9) for e in entries} == {e.entry_id: round(e.energy, 9) for e in subsystem}
    assert packaged.provenance("Li-Fe-O", 378).snapshot.startswith(f"package:{DEFAULT_REFERENCE_FILE} sha256:")
    with pytest.raises(MissingReferenceError, match=r"Cl-Na.*hull.references.paths"):
        packaged.get_entries("Na-Cl")


def test_material_ids_ignore_the_run_type_suffix():
    assert material_id_of(ComputedEntry("Fe", -8.0, entry_id="mp-13-GGA")) == "mp-13"
    assert material_id_of(ComputedEntry("Fe2O3", -30.0, entry_id="mp-19770-GGA+U")) == "mp-19770"
    assert material_id_of(ComputedEntry("Fe", -9.0, entry_id="mp-13-r2SCAN")) == "mp-13"
    assert material_id_of(ComputedEntry("Fe", -8.0, entry_id="mp-13")) == "mp-13"


def test_pooling_two_snapshots_is_refused_naming_both_files(lfpo_path):
    with pytest.raises(ReferenceDataError, match="two snapshots") as info:
        LocalFileReferences([OLD_LFO, lfpo_path]).get_entries("Li-Fe-O")
    message = str(info.value)
    assert str(OLD_LFO) in message and str(lfpo_path) in message
    assert "\n" not in message
    # Each file alone is one snapshot and loads.
    assert len(LocalFileReferences([lfpo_path]).get_entries("Li-Fe-O")) == 378
    assert len(LocalFileReferences([OLD_LFO]).get_entries("Li-Fe-O")) == 375


def write_entries(path, entries):
    with gzip.open(path, "wt") as handle:
        json.dump([e.as_dict() for e in entries], handle)
    return path


def r2scan_version(entry):
    """What the mixed GGA/r2SCAN hull serves for a material: an r2SCAN run of it."""
    twin = copy.deepcopy(entry)
    twin.entry_id = entry.entry_id.rsplit("-GGA", 1)[0] + "-r2SCAN"
    twin.parameters["run_type"] = "r2SCAN"
    twin.data["run_type"] = "r2SCAN"
    return twin


def gga_on_the_mixed_scale(entry):
    """A GGA entry as the mixed hull serves it: shifted by the mixing scheme's adjustment."""
    shifted = copy.deepcopy(entry)
    shifted.energy_adjustments.append(ConstantEnergyAdjustment(-0.12, name="MP GGA(+U)/R2SCAN mixing adjustment"))
    return shifted


def test_local_files_refuse_entries_not_on_the_gga_scale(tmp_path, li_fe_o_entries):
    r2scan = write_entries(tmp_path / "r2scan.json.gz", [*li_fe_o_entries[:5], r2scan_version(li_fe_o_entries[5])])
    with pytest.raises(ReferenceDataError, match=r"r2scan.json.gz.*1 entries.*run type r2SCAN"):
        LocalFileReferences([r2scan]).get_entries("Li-Fe-O")
    mixed = write_entries(tmp_path / "mixed.json.gz", [*li_fe_o_entries[:5], gga_on_the_mixed_scale(li_fe_o_entries[5])])
    with pytest.raises(ReferenceDataError, match="R2SCAN mixing adjustment"):
        LocalFileReferences([mixed]).get_entries("Li-Fe-O")
    # MP2020's own GGA/GGA+U mixing correction (Fe oxides) is on the candidates' scale.
    assert any("GGA/GGA+U mixing correction" in a.name for e in li_fe_o_entries for a in e.energy_adjustments)


class FakeRester:
    """Stands in for mp_api's MPRester: serves recorded MP entries, records every call's arguments.

    Like mp-api 0.47, it serves the mixed GGA/r2SCAN hull unless asked for a thermo type;
    ``mixed`` are the entries it serves then.
    """

    calls: list[list[str]] = []
    kwargs: list[dict] = []

    def __init__(self, entries, mixed=None):
        self.entries = entries
        self.mixed = mixed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_entries_in_chemsys(self, elements, compatible_only=True, additional_criteria=None, **kwargs):
        FakeRester.calls.append(list(elements))
        FakeRester.kwargs.append({"compatible_only": compatible_only, "additional_criteria": additional_criteria})
        assert compatible_only
        thermo_types = (additional_criteria or {}).get("thermo_types", ["GGA_GGA+U_R2SCAN"])
        served = self.entries if thermo_types == ["GGA_GGA+U"] or self.mixed is None else self.mixed
        return [e for e in served if {el.symbol for el in e.elements} <= set(elements)]

    def get_database_version(self):
        return "2025.09.25"


@pytest.fixture
def mp_entries(lfpo_raw):
    return [decode(raw) for raw in lfpo_raw[:400]] + [
        decode(raw) for raw in lfpo_raw[400:] if len({*raw["composition"]}) == 1
    ]


@pytest.fixture(scope="module")
def li_fe_o_entries(lfpo_raw):
    """The Li, Fe and O elements and 40 Li-Fe-O compounds of the MP file, as MP's API serves them (GGA_GGA+U)."""
    raws = [raw for raw in lfpo_raw if {*raw["composition"]} <= {"Li", "Fe", "O"}]
    raws.sort(key=lambda raw: len(raw["composition"]))
    return [decode(raw) for raw in raws[:60]]


def test_mp_api_asks_for_the_gga_gga_u_thermo_type(li_fe_o_entries):
    FakeRester.calls, FakeRester.kwargs = [], []
    mixed = [r2scan_version(e) if i % 7 == 0 else gga_on_the_mixed_scale(e) for i, e in enumerate(li_fe_o_entries)]
    refs = MPApiReferences(MemoryStore(), rester_factory=lambda key: FakeRester(li_fe_o_entries, mixed=mixed))
    entries = refs.get_entries("Li-Fe-O")
    assert FakeRester.kwargs == [{"compatible_only": True, "additional_criteria": {"thermo_types": [MP_THERMO_TYPE]}}]
    assert MP_THERMO_TYPE == "GGA_GGA+U"
    assert {e.parameters["run_type"] for e in entries} <= {"GGA", "GGA+U"}
    assert "GGA_GGA+U" in refs.provenance("Li-Fe-O", len(entries)).snapshot


class DefaultThermoTypeRester(FakeRester):
    """An MPRester that ignores the requested thermo type and serves the mixed hull."""

    def get_entries_in_chemsys(self, elements, compatible_only=True, additional_criteria=None, **kwargs):
        return super().get_entries_in_chemsys(elements, compatible_only)


def test_mp_api_refuses_a_mixed_answer_and_caches_nothing(li_fe_o_entries):
    for served in ([r2scan_version(e) for e in li_fe_o_entries], [gga_on_the_mixed_scale(e) for e in li_fe_o_entries]):
        store = MemoryStore()
        refs = MPApiReferences(store, rester_factory=lambda key, served=served: DefaultThermoTypeRester(li_fe_o_entries, mixed=served))
        with pytest.raises(ReferenceDataError, match="not on the GGA/GGA\\+U"):
            refs.get_entries("Li-Fe-O")
        assert store.count() == 0


def test_mp_api_refuses_two_energies_for_one_material(li_fe_o_entries):
    twin = copy.deepcopy(next(e for e in li_fe_o_entries if e.entry_id.endswith("-GGA+U")))
    twin.entry_id = twin.entry_id.replace("-GGA+U", "-GGA")
    twin.parameters.update(run_type="GGA", is_hubbard=False, hubbards={})
    twin._energy += 0.5
    refs = MPApiReferences(MemoryStore(), rester_factory=lambda key: FakeRester([*li_fe_o_entries, twin]))
    with pytest.raises(ReferenceDataError, match=f"two snapshots.*{material_id_of(twin)}"):
        refs.get_entries("Li-Fe-O")


def test_mp_api_cache_of_the_mixed_hull_is_not_used(li_fe_o_entries):
    # A cache document written before the thermo type was asked for (mixed hull): fetched again.
    FakeRester.calls = []
    store = MemoryStore()
    store.connect()
    stale = [gga_on_the_mixed_scale(e).as_dict() for e in li_fe_o_entries]
    store.update([{"chemsys": "Fe-Li-O", "entries": stale, "database_version": "2025.09.25"}], key="chemsys")
    refs = MPApiReferences(store, rester_factory=lambda key: FakeRester(li_fe_o_entries))
    entries = refs.get_entries("Li-Fe-O")
    assert FakeRester.calls == [["Fe", "Li", "O"]]
    assert not any("R2SCAN" in a.name for e in entries for a in e.energy_adjustments)
    assert store.count() == 1 and store.query_one({"chemsys": "Fe-Li-O"})["thermo_type"] == MP_THERMO_TYPE
    # A tampered cache document on the wrong scale is refused when read.
    store.update([{**store.query_one({"chemsys": "Fe-Li-O"}), "entries": stale}], key="chemsys")
    with pytest.raises(ReferenceDataError, match="cached MP entries of Fe-Li-O"):
        MPApiReferences(store, rester_factory=lambda key: pytest.fail("must come from the cache")).get_entries("Fe-O")


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
