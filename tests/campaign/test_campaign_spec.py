"""Campaign spec validation: errors name the file and the key."""

import pytest

from matris_flows.campaign.spec import CampaignSpec, SpecError, load_spec

MINIMAL = """
name: t
generation:
  prototypes:
    element_lists: [[Cu, Ni], [Cu, Ni]]
    prototypes: [l12]
    charge_balanced: false
"""


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_minimal_spec_gets_the_documented_defaults(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.potential.name == "matris_10m_oam"
    assert spec.relax.optimizer == "FIRE" and spec.relax.cell_filter == "FrechetCellFilter"
    assert spec.relax.fmax == 0.05 and spec.relax.max_steps == 500
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
