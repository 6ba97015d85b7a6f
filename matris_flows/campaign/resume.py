"""What a run of a campaign directory starts from: the spec it was started with, and its Flow with the recorded uuids.

The first run writes the spec (its store config inlined); every run builds the Flow from
the spec and the current environment, and a rerun gives its jobs the uuids recorded in
``flow.json``, so the execution manager skips finished jobs and reruns failed ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from jobflow import OutputReference

from matris_flows.campaign.directory import FLOW_FILE, MANIFEST_FILE, recorded_spec_differs, write_atomic, write_spec
from matris_flows.campaign.spec import CampaignSpec, SpecError
from matris_flows.core.serialization import safe_loads

if TYPE_CHECKING:
    from jobflow import Flow


def _flow_uuids(encoded: dict) -> list[str]:
    """Uuids of an encoded Flow and of its jobs and subflows, depth first (a deterministic order)."""
    uuids = [encoded["uuid"]]
    for item in encoded.get("jobs", []):
        uuids.extend(_flow_uuids(item) if item.get("@class") == "Flow" else [item["uuid"]])
    return uuids


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def rebuild_flow(flow: Flow, recorded: dict) -> Flow:
    """``flow`` (freshly built from the spec) with the uuids of the Flow ``recorded`` in ``flow.json``.

    The Flow is deterministic given the spec except for its uuids, so the k-th uuid of
    one is the k-th of the other; uuids are unique random strings, so replacing them in
    the JSON also rewrites every reference and host list. Finished jobs keep their uuids
    (and are skipped on resume); a failed top-level job reruns with the rebuilt inputs.
    Jobs created while the campaign runs (generation shards, relaxation and hull chunks) are
    restored from the journal records of the jobs that created them. Their inputs are what
    the spec says and nothing the environment decided: data files keep their spec names
    (``package:`` ones resolve inside the job), stores are opened from the store config and
    the environment variables it names, potentials load by name. So a failed chunk reruns
    with the same inputs a rebuilt flow would give it, in the current environment (files
    supplied since, installed modules, environment variables).
    """
    text = flow.to_json()
    try:
        fresh, kept = _flow_uuids(json.loads(text)), _flow_uuids(recorded)
    except (KeyError, TypeError, AttributeError):
        raise SpecError(f"{FLOW_FILE} is not a saved matris-flows Flow; start over with --fresh or use another --dir") from None
    if len(fresh) != len(kept):
        raise SpecError(
            "the campaign's Flow does not have the shape it was started with (another matris-flows version?); "
            "start over with --fresh or use another --dir"
        )
    # Only uuids come from the file, and they are pasted into the JSON: anything but a uuid
    # could inject JSON (an @module to import) into the Flow.
    if bad := next((uuid for uuid in kept if not isinstance(uuid, str) or not _UUID.fullmatch(uuid)), None):
        raise SpecError(f"{FLOW_FILE} holds {str(bad)[:80]!r} where a job uuid belongs; it was not written by matris-flows")
    for new, old in zip(fresh, kept, strict=True):
        text = text.replace(new, old)
    return safe_loads(text, FLOW_FILE)


def prepare_flow(spec: CampaignSpec, directory: Path, spec_path: Path | None, fresh: bool) -> tuple[Flow, dict]:
    """Write the spec once; build the Flow from it on every run, with the recorded uuids on a rerun.

    ``spec_path`` is where ``spec`` was read from (files it names are relative to it), ``fresh``
    starts over. Returns the Flow and the manifest, both written to ``directory``.
    """
    from matris_flows.campaign.flow import ScreeningMaker

    directory.mkdir(parents=True, exist_ok=True)
    flow_file, manifest_file = directory / FLOW_FILE, directory / MANIFEST_FILE
    # The spec as run, with its store config inlined, so a resume needs nothing else.
    resolved = spec.model_copy(update={"store": spec.store_config(spec_path.parent if spec_path else None)})
    if not fresh and flow_file.exists():
        if recorded_spec_differs(directory, resolved):
            raise SpecError(
                f"campaign directory {str(directory)!r} was started with a different spec; "
                "resume it with its own spec.yaml, start over with --fresh, or use another --dir"
            )
    # from the resolved spec: a store file named relative to the spec is found whatever the working directory
    flow = ScreeningMaker.from_spec(resolved, directory).make()
    if fresh or not flow_file.exists():
        write_spec(directory, resolved)
    else:
        try:
            recorded = json.loads(flow_file.read_text())
        except ValueError:
            raise SpecError(f"{flow_file} is not valid JSON; start over with --fresh or use another --dir") from None
        flow = rebuild_flow(flow, recorded)
    # A stage's uuid is the job its output comes from (the Flow's output names them), not a position in
    # the job list: a consistent-references job comes before generation when the spec asks for one.
    stages = flow.output if isinstance(flow.output, dict) else {}
    manifest = {
        "name": spec.name,
        **{stage: ref.uuid for stage, ref in stages.items() if isinstance(ref, OutputReference)},
        "jobs": {job.name: job.uuid for job in flow.jobs},
    }
    write_atomic(flow_file, flow.to_json())
    write_atomic(manifest_file, json.dumps(manifest, indent=2))
    return flow, manifest
