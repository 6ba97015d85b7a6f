"""The energy convention follows the weights actually loaded; import-path potentials come from an allowlist."""

from importlib.metadata import EntryPoint

import pytest
from pymatgen.core import Lattice, Structure

from matris_flows.potentials import naming
from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import EnergyConvention, ImportNotAllowedError, check_import_allowed, parse_potential
from matris_flows.relax.engine import relax_structures
from matris_flows.relax.schemas import RelaxSettings

MP_CORRECTED, MP_UNCORRECTED, NOT_MP = (
    EnergyConvention.MP_CORRECTED,
    EnergyConvention.MP_UNCORRECTED,
    EnergyConvention.NOT_MP_COMPATIBLE,
)


@pytest.mark.parametrize(
    ("name", "options", "convention", "variant"),
    [
        ("chgnet", {}, MP_CORRECTED, "0.3.0"),
        ("chgnet", {"model_version": "0.2.0"}, MP_CORRECTED, "0.2.0"),
        ("chgnet", {"model_version": "r2scan"}, NOT_MP, "r2scan"),
        ("sevennet", {}, MP_UNCORRECTED, "7net-0"),
        ("sevennet", {"model": "7net-l3i5"}, MP_UNCORRECTED, "7net-l3i5"),
        ("sevennet", {"model": "7net-omat"}, NOT_MP, "7net-omat"),
        ("sevennet", {"model": "7net-mf-ompa", "modal": "mpa"}, MP_UNCORRECTED, "7net-mf-ompa (modal mpa)"),
        ("sevennet", {"model": "7net-mf-ompa", "modal": "omat24"}, NOT_MP, "7net-mf-ompa (modal omat24)"),
        ("hienet", {}, MP_UNCORRECTED, "HIENet-V3.pth"),
    ],
)
def test_known_variants_get_their_convention_without_warnings(name, options, convention, variant):
    spec = parse_potential(name, options)
    assert spec.energy_convention is convention
    assert spec.variant == variant
    assert spec.warnings == ()


@pytest.mark.parametrize(
    ("name", "options", "shown"),
    [
        ("chgnet", {"model_version": "0.4.0"}, "model_version='0.4.0'"),
        ("sevennet", {"model": "/home/me/finetuned_7net.pth"}, "finetuned_7net.pth"),
        ("sevennet", {"model": "7net-mf-ompa"}, "7net-mf-ompa"),  # no modal: which fidelity is unknown
        ("hienet", {"checkpoint": "/home/me/hienet_finetuned.pth"}, "hienet_finetuned.pth"),
    ],
)
def test_unknown_variants_get_the_internal_hull_and_a_warning(name, options, shown):
    spec = parse_potential(name, options)
    assert spec.energy_convention is NOT_MP
    [warning] = spec.warnings
    assert shown in warning and "campaign-internal hull" in warning


def test_loaded_chgnet_r2scan_is_not_on_the_mp_scale():
    r2scan = load_potential("chgnet", device="cpu", model_version="r2scan")
    info = r2scan.info()
    assert info.energy_convention is NOT_MP and info.variant == "r2scan" and info.warnings == []
    assert "r2scan" in info.checkpoint_path
    assert load_potential("chgnet", device="cpu").info().energy_convention is MP_CORRECTED


def test_the_warning_of_an_unknown_variant_is_in_every_document():
    emt = load_potential("ase.calculators.emt:EMT").calculator
    unknown = Potential(spec=parse_potential("chgnet", {"model_version": "my-finetune"}), calculator=emt, device="cpu")
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    [document] = relax_structures([copper], unknown, RelaxSettings(max_steps=3, engine="ase"))
    assert document.potential.energy_convention is NOT_MP
    assert document.potential.variant == "my-finetune"
    assert "my-finetune" in document.potential.warnings[0]
    assert document.summary().potential.warnings == document.potential.warnings


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """A module that leaves a file behind when it is imported: proves whether anything ran."""
    marker = tmp_path / "imported"
    (tmp_path / "mf_canary_calc.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nfrom ase.calculators.emt import EMT as Calc\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def test_imports_outside_the_allowlist_are_refused_before_anything_runs(canary):
    for name in ("subprocess:getoutput", "mf_canary_calc:Calc", "os.system"):
        with pytest.raises(ImportNotAllowedError, match="allow_import"):
            check_import_allowed(name)
    assert not canary.exists()


def test_ase_allowlist_takes_calculator_classes_only():
    check_import_allowed("ase.calculators.emt:EMT")
    check_import_allowed("ase.calculators.emt.EMT")
    assert load_potential("ase.calculators.emt:EMT").calculator.__class__.__name__ == "EMT"
    # A module in the allowlist can import other callables (numpy here; subprocess elsewhere).
    with pytest.raises(ImportNotAllowedError, match="not an ASE calculator class"):
        check_import_allowed("ase.calculators.emt:np")


def test_allow_import_lets_any_calculator_load(canary):
    check_import_allowed("mf_canary_calc:Calc", allow_import=True)
    assert not canary.exists()  # the check alone imports nothing
    assert load_potential("mf_canary_calc:Calc").calculator.__class__.__name__ == "EMT"  # the caller's code may
    assert canary.exists()


def test_registered_entry_points_are_allowed(canary, monkeypatch):
    registered = [EntryPoint(name="canary", value="mf_canary_calc:Calc", group=naming.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(naming, "entry_points", lambda group: registered if group == naming.ENTRY_POINT_GROUP else [])
    check_import_allowed("mf_canary_calc:Calc")
