"""The execution journal: what a finished job's Response said, so a rerun skips it.

After writing a job's output, the driver writes a *journal* record keyed
on (uuid, index) to the journal store (``journal=`` or the JobStore's additional
store named ``"journal"``).  It holds the dynamic part of the Response: the
replace/detour/addition flows (serialized with their uuids) and the stop flags, and a
``timeline`` ({worker, started_at, finished_at}: the Dask worker's name, or ``"driver"``, and
the Unix times around ``Job.run``) for profiling a run.
When ``resume=True`` a job whose journal record and output are present is not run;
its Response is rebuilt from the record, so replaced/added jobs are expanded with
the same uuids and are themselves skipped if finished.  A job that crashed between
its output write and its journal write is run again and overwrites its output
(updates are keyed on uuid and index), so a resumed campaign has no duplicates.
Failed jobs are not journaled and run again on resume. Journal records are decoded with
the class allowlist of :func:`matris_flows.core.serialization.safe_decode`: a record naming
any other module is refused before anything is imported.  A diversion with many jobs (a
fan-out of thousands of chunks) is journaled in pages written before the main record,
so no journal document grows with the campaign.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobflow import Job, JobStore, Response
from monty.json import MontyEncoder, jsanitize

from matris_flows.core.serialization import safe_decode
from matris_flows.execution.kill_points import kill_point

if TYPE_CHECKING:
    from maggma.core import Store

_JOURNAL_PAGE_BYTES = 16_000  # a journal page of diverted jobs stays far below any document limit


def _encode(obj) -> Any:
    return None if obj is None else json.loads(json.dumps(obj, cls=MontyEncoder))


def _decode(obj) -> Any:
    # journal records and stored outputs are files on disk: decoded with the class allowlist
    return None if obj is None else safe_decode(obj, "journal record")


_DIVERSIONS = ("replace", "detour", "addition")


def _paged(encoded: Any) -> tuple[Any, list[list[dict]]]:
    """Split the job list of an encoded Flow into pages of at most ``_JOURNAL_PAGE_BYTES``.

    Returns the Flow without its jobs (marked ``jobs_pages``) and the pages, or the
    encoded object unchanged and no pages when it is small.
    """
    jobs = encoded.get("jobs") if isinstance(encoded, dict) else None
    if not jobs:
        return encoded, []
    sizes = [len(json.dumps(j)) for j in jobs]
    if sum(sizes) <= _JOURNAL_PAGE_BYTES:
        return encoded, []
    pages: list[list[dict]] = [[]]
    page_bytes = 0
    for job_dict, size in zip(jobs, sizes, strict=True):
        if pages[-1] and page_bytes + size > _JOURNAL_PAGE_BYTES:
            pages.append([])
            page_bytes = 0
        pages[-1].append(job_dict)
        page_bytes += size
    return {**encoded, "jobs": [], "jobs_pages": len(pages)}, pages


def write_journal(journal: Store, job: Job, response: Response, timeline: dict[str, Any] | None = None) -> None:
    """Journal ``job`` as finished; ``timeline`` ({worker, started_at, finished_at}) where it is known."""
    kill_point("output", job.name, job.uuid)
    record = {
        "uuid": job.uuid,
        "index": job.index,
        "name": job.name,
        "metadata": jsanitize(job.metadata, strict=False, allow_bson=True),
        "completed_at": datetime.now(tz=UTC).isoformat(),
        "stop_children": response.stop_children,
        "stop_jobflow": response.stop_jobflow,
    }
    if timeline is not None:
        record["timeline"] = timeline
    pages = []
    for name in _DIVERSIONS:
        record[name], diversion_pages = _paged(_encode(getattr(response, name)))
        pages.extend({"parent": f"{job.uuid}:{job.index}", "diversion": name, "page": k, "jobs": jobs}
                     for k, jobs in enumerate(diversion_pages))
    if pages:  # pages first: the main record marks the whole entry as complete
        journal.update(pages, key=["parent", "diversion", "page"])
    journal.update(record, key=["uuid", "index"])
    kill_point("journal", job.name, job.uuid)


def resumed_response(journal: Store, store: JobStore, job: Job, load_output: bool = True) -> Response | None:
    """The Response of ``job`` rebuilt from its journal record and stored output; None when either is missing.

    ``load_output=False`` skips reading the output (a runner that keeps no responses needs only to know it exists).
    """
    record = journal.query_one({"uuid": job.uuid, "index": job.index})
    if record is None:
        return None
    doc = store.query_one(
        {"uuid": job.uuid, "index": job.index},
        properties=["output"] if load_output else ["uuid"],
        load=load_output,
    )
    if doc is None:
        return None
    diversions = {}
    for name in _DIVERSIONS:
        encoded = record.get(name)
        if isinstance(encoded, dict) and encoded.get("jobs_pages"):
            pages = journal.query(
                {"parent": f"{job.uuid}:{job.index}", "diversion": name}, sort={"page": 1}
            )
            encoded = {**encoded, "jobs": [j for page in pages for j in page["jobs"]]}
            encoded.pop("jobs_pages")
        diversions[name] = _decode(encoded)
    return Response(
        output=_decode(doc.get("output")),
        stop_children=record.get("stop_children", False),
        stop_jobflow=record.get("stop_jobflow", False),
        **diversions,
    )
