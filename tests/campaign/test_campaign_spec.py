"""Campaign spec validation: errors name the file and the key."""

import pytest
from campaign_specs import prototype_generation, spec_yaml

from matris_flows.campaign.spec import CampaignSpec, SpecError, ValidationSpec, load_spec

MINIMAL = spec_yaml({"name": "t", "generation": prototype_generation(chunk_size=None)})


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_minimal_spec_gets_the_documented_defaults(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.potential.name == "matris_10m_oam"
    assert spec.relax.optimizer == "FIRE" and spec.relax.cell_filter == "FrechetCellFilter"
    # MatRIS-10M-OAM's Matbench Discovery settings (models/matris/matris-10m-oam.yml), not 0.05.
    assert spec.relax.fmax == 0.02 and spec.relax.max_steps == 500
    assert "matris-10m-oam.yml" in spec.relax.defaults_source
    assert spec.hull.allow_unconverged is False
    assert spec.potential.allow_import is False
    assert spec.hull.stability_threshold == 0.0
    assert spec.validation.enabled is False
    assert spec.store_config().type == "sqlite"
    assert spec.execution.kind == "local"


def test_the_shipped_workflow_specs_are_valid():
    from pathlib import Path

    specs = sorted(Path(__file__).resolve().parents[2].joinpath("workflows").rglob("*.yaml"))
    assert len(specs) >= 4
    for path in specs:
        assert isinstance(load_spec(path), CampaignSpec), path


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (MINIMAL + "relax:\n  fmx: 0.1\n", ["relax.fmx", "Extra inputs"]),
        (MINIMAL + "relax:\n  max_steps: many\n", ["relax.max_steps", "integer"]),
        (MINIMAL + "hull:\n  stability_threshold: -1\n", ["hull.stability_threshold"]),
        (MINIMAL + "colour: blue\n", ["colour"]),
        (MINIMAL + "potential:\n  name: not_a_potential\n", ["potential", "Unknown potential"]),
        (MINIMAL + "hull:\n  references:\n    provider: wikipedia\n", ["hull.references.provider"]),
        ("name: t\ngeneration: {}\n", ["generation", "at least one source"]),
        ("name: t\ngeneration:\n  prototypes:\n    element_lists: Cu\n", ["generation.prototypes.element_lists"]),
    ],
)
def test_bad_specs_name_the_key(tmp_path, text, names):
    with pytest.raises(SpecError) as error:
        load_spec(write(tmp_path, text))
    message = str(error.value)
    assert "spec.yaml" in message
    for name in names:
        assert name in message


def test_unreadable_specs_are_clear_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SpecError, match="mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_relax_defaults_follow_the_potential_and_the_spec_overrides_them(tmp_path):
    chgnet = load_spec(write(tmp_path, MINIMAL + "potential:\n  name: chgnet\n"))
    assert (chgnet.relax.fmax, chgnet.relax.max_steps) == (0.05, 500) and "models/chgnet/" in chgnet.relax.defaults_source
    explicit = load_spec(write(tmp_path, MINIMAL + "relax:\n  fmax: 0.1\n"))
    assert (explicit.relax.fmax, explicit.relax.max_steps) == (0.1, 500)
    assert explicit.relax.defaults_source.startswith("max_steps for matris_10m_oam")
    # What campaign.json keeps reloads to the same settings (a resumed campaign relaxes the same way).
    again = CampaignSpec.model_validate_json(explicit.model_dump_json())
    assert again.relax == explicit.relax


def test_import_paths_outside_the_allowlist_are_refused_at_spec_load(tmp_path):
    canary = tmp_path / "ran"
    text = MINIMAL + f"potential:\n  name: 'subprocess:getoutput'\n  options:\n    calculator_kwargs: {{cmd: 'touch {canary}'}}\n"
    with pytest.raises(SpecError, match="allow_import") as error:
        load_spec(write(tmp_path, text))
    assert "potential" in str(error.value) and "subprocess:getoutput" in str(error.value)
    assert not canary.exists()
    allowed = load_spec(write(tmp_path, text.replace("  options:", "  allow_import: true\n  options:")))
    assert allowed.potential.allow_import is True
    assert not canary.exists()  # loading the spec runs nothing, even when allowed
    emt = load_spec(write(tmp_path, MINIMAL + "potential:\n  name: 'ase.calculators.emt:EMT'\n"))
    assert emt.potential.name == "ase.calculators.emt:EMT"


def test_a_command_handed_to_an_allowlisted_ase_calculator_needs_allow_import(tmp_path):
    calculator = "potential:\n  name: 'ase.calculators.lammpsrun:LAMMPS'\n"
    text = MINIMAL + calculator + "  options:\n    calculator_kwargs: {command: 'id > pwned.txt'}\n"
    with pytest.raises(SpecError, match=r"options\.calculator_kwargs\.command would run a program"):
        load_spec(write(tmp_path, text))
    nested = MINIMAL + "potential:\n  name: 'ase.calculators.emt:EMT'\n  options:\n    calculator_kwargs: {profile: {binary: sh}}\n"
    with pytest.raises(SpecError, match="profile"):
        load_spec(write(tmp_path, nested))
    allowed = load_spec(write(tmp_path, text.replace("  options:", "  allow_import: true\n  options:")))
    assert allowed.potential.options["calculator_kwargs"]["command"] == "id > pwned.txt"


def test_validation_settings_reach_the_selection_and_the_gpaw_hull():
    from matris_flows.campaign.flow import _validation

    spec = CampaignSpec.model_validate(
        {
            "name": "v",
            "generation": {"files": {"paths": ["x.json"]}},
            "validation": {"enabled": True, "allow_unconverged": True, "reference_window": 0.05, "stable_tolerance": 0.01},
        }
    )
    maker = _validation(spec)
    assert maker.selection.allow_unconverged is True
    assert (maker.backend_maker.reference_window, maker.backend_maker.stable_tolerance) == (0.05, 0.01)
    default = _validation(spec.model_copy(update={"validation": ValidationSpec(enabled=True)}))
    assert default.selection.allow_unconverged is False and default.backend_maker.stable_tolerance == 0.005


def test_source_settings_a_spec_leaves_out_are_the_makers_defaults():
    from matris_flows.campaign.flow import _sources
    from matris_flows.generation.jobs import FileSourceMaker, PrototypeMaker, RandomSearchMaker, SubstitutionMaker

    spec = CampaignSpec.model_validate(
        {
            "name": "s",
            "generation": {
                "substitution": {"templates": ["t.json"]},
                "prototypes": {"element_lists": [["Cu"], ["Ni"]]},
                "random_search": {"compositions": ["NaCl"]},
                "files": {"paths": ["x.cif"]},
            },
        }
    )
    assert _sources(spec) == [
        SubstitutionMaker(templates=["t.json"]),
        PrototypeMaker(element_lists=[["Cu"], ["Ni"]]),
        RandomSearchMaker(compositions=["NaCl"]),
        FileSourceMaker(paths=["x.cif"]),
    ]
