"""``package:`` data names: resolved in the job that reads them, never frozen into a job's inputs."""

from pathlib import Path

from matris_flows.campaign.flow import ScreeningMaker
from matris_flows.campaign.spec import CampaignSpec
from matris_flows.core.data_paths import resolve_data_path

DEMO_REFS = "package:mp_Li-Fe-O_2024-11-21.json.gz"


def test_package_names_resolve_to_the_installed_package_data():
    path = resolve_data_path(DEMO_REFS)
    assert path.is_file() and path.parent.name == "data" and path.parent.parent.name == "matris_flows"
    assert resolve_data_path("~/x.json") == Path.home() / "x.json"
    assert resolve_data_path("/abs/x.json") == Path("/abs/x.json")


def test_a_campaign_flow_keeps_package_names_as_written(tmp_path):
    spec = CampaignSpec.model_validate(
        {
            "name": "lazy-paths",
            "generation": {"files": {"paths": [str(tmp_path / "x.json")]}},
            "potential": {"name": "chgnet"},
            "hull": {"references": {"provider": "local_files", "paths": [DEMO_REFS]}},
        }
    )
    text = ScreeningMaker.from_spec(spec, tmp_path).make().to_json()
    assert DEMO_REFS in text
    assert str(resolve_data_path(DEMO_REFS)) not in text, "an install location in the inputs would break a resume elsewhere"
