"""JSON from disk (structure files, flow.json, journal records) is decoded with an allowlist of classes.

MontyDecoder imports any ``@module`` a document names (running the module's code) and a
decoded Job calls its ``@callable`` when it runs. The safe decoder refuses both with one
line before anything is imported.
"""

import json
import os

import pytest
from jobflow import Flow, Job, JobStore
from maggma.stores import MemoryStore
from monty.json import MontyDecoder
from pymatgen.core import Lattice, Structure

from matris_flows.campaign.resume import rebuild_flow
from matris_flows.campaign.spec import SpecError
from matris_flows.core.serialization import SafeDecoder, UnsafeJSONError, check_trusted, safe_decode, safe_loads
from matris_flows.generation.files import iter_one_file
from matris_flows.generation.schemas import RejectedCandidate, RejectionReason
from matris_flows.testing import jobs as tj


@pytest.fixture
def planted_module(tmp_path, monkeypatch):
    """A module on sys.path whose import writes a marker file: importing it is running code."""

    def plant(name: str):
        marker = tmp_path / f"{name}.ran"
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Payload:\n    pass\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        return marker

    return plant


def _one_line(message: str) -> bool:
    return "\n" not in message and len(message) < 400


def test_monty_imports_any_module_the_safe_decoder_none(planted_module):
    # the hazard: MontyDecoder imports what the document names
    ran = planted_module("planted_for_monty")
    MontyDecoder().process_decoded({"@module": "planted_for_monty", "@class": "Payload"})
    assert ran.exists()

    ran = planted_module("planted_for_safe")
    with pytest.raises(UnsafeJSONError, match="planted_for_safe.Payload") as error:
        safe_loads(json.dumps({"structure": {"@module": "planted_for_safe", "@class": "Payload"}}))
    assert not ran.exists(), "the module was imported"
    assert _one_line(str(error.value))


@pytest.mark.parametrize(
    "document",
    [
        {"@module": "os", "@callable": "system"},
        {"@module": "subprocess", "@class": "Popen", "args": ["id"]},
        {"@module": "builtins", "@callable": "eval"},
        [1, {"nested": {"@module": "posix", "@class": "system"}}],
        {"@module": "pymatgenx.evil", "@class": "Structure"},  # a look-alike of an allowed package
        {"@module": "os", "@callable": "system", "@bound": None},
        {"@module": "matris_flows.x", "@class": "X", "@bound": {"@module": "os", "@class": "environ"}},
        {"@module": "pymatgen.core", "@callable": "Structure.from_file"},  # classes of pymatgen, not its functions
    ],
)
def test_untrusted_classes_and_functions_are_refused(document):
    with pytest.raises(UnsafeJSONError) as error:
        json.loads(json.dumps(document), cls=SafeDecoder)
    assert "refusing to decode" in str(error.value) and _one_line(str(error.value))


def test_trusted_documents_decode_as_with_monty():
    structure = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    job = tj.add(1, 2)
    flow = Flow([job, tj.add(job.output, 3)])
    encoded = json.loads(flow.to_json())
    check_trusted(encoded)  # jobflow Flow/Job/OutputReference, matris_flows job functions
    decoded = safe_decode(encoded)
    assert isinstance(decoded, Flow) and [j.uuid for j in decoded] == [j.uuid for j in flow]
    assert decoded.jobs[0].function is tj.add
    assert safe_loads(json.dumps(structure.as_dict())) == structure
    # jobflow's blob placeholders name an empty @module: nothing to import
    assert safe_decode({"@module": "", "@class": "", "blob_uuid": "x"}) == {"@module": "", "@class": "", "blob_uuid": "x"}


def test_a_structure_file_naming_a_module_is_rejected_and_nothing_runs(tmp_path, planted_module):
    ran = planted_module("planted_in_structure_file")
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps([{"@module": "planted_in_structure_file", "@class": "Payload"}]))
    (rejected,) = iter_one_file(str(evil))
    assert isinstance(rejected, RejectedCandidate) and rejected.reason is RejectionReason.UNPARSEABLE
    assert "refusing to decode the class planted_in_structure_file.Payload" in rejected.message
    assert _one_line(rejected.message)
    assert not ran.exists()

    good = tmp_path / "good.json"
    good.write_text(json.dumps([Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]).as_dict()]))
    (candidate,) = iter_one_file(str(good))
    assert not isinstance(candidate, RejectedCandidate)


def test_flow_json_cannot_inject_json_through_a_uuid():
    flow = Flow([tj.add(1, 2), tj.add(3, 4)])
    recorded = json.loads(flow.to_json())
    rebuilt = rebuild_flow(Flow([tj.add(1, 2), tj.add(3, 4)]), recorded)
    assert [j.uuid for j in rebuilt] == [j.uuid for j in flow]

    recorded["jobs"][1]["uuid"] = 'x", "function": {"@module": "os", "@callable": "system"}, "y": "'
    with pytest.raises(SpecError, match="where a job uuid belongs"):
        rebuild_flow(Flow([tj.add(1, 2), tj.add(3, 4)]), recorded)


def test_a_tampered_journal_record_is_refused_before_anything_runs(tmp_path):
    from distributed import Client

    from matris_flows.execution import run_on_dask

    marker = tmp_path / "pwned"
    job = tj.add(1, 2)
    planted = Job(os.system, function_args=(f"touch {marker}",))
    store = JobStore(MemoryStore(), additional_stores={"journal": MemoryStore()})
    store.connect()
    store.docs_store.update({"uuid": job.uuid, "index": 1, "output": 3, "name": job.name}, key=["uuid", "index"])
    # the job "finished" and its journal record says it was replaced by a job running a shell command
    store.additional_stores["journal"].update(
        {"uuid": job.uuid, "index": 1, "name": job.name, "replace": json.loads(Flow([planted]).to_json())},
        key=["uuid", "index"],
    )
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        with pytest.raises(UnsafeJSONError, match=r"(os|posix)\.system") as error:
            run_on_dask(Flow([job]), store, client, resume=True)
    assert _one_line(str(error.value))
    assert not marker.exists()
