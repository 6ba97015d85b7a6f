"""Candidates of a chunk whose relaxation or hull job failed: published, marked with the reason.

A failed chunk job must not make its candidates vanish from the campaign store: the driver
publishes one ``job_failed`` document per candidate of the chunk that has none yet (the
failure's first line and where the traceback is), so ``query``/``status`` show them. The
rerun on ``resume`` upserts the real documents over them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from jobflow.core.reference import OnMissing, OutputReference

from matris_flows.core.serialization import json_document
from matris_flows.generation.jobs import CHUNK_METADATA
from matris_flows.potentials.naming import PotentialInfo, parse_potential
from matris_flows.relax.documents import failed_document
from matris_flows.thermo.assess import DocumentContext, unassessed_candidate
from matris_flows.thermo.schemas import CandidateDocument, ThermoStatus

if TYPE_CHECKING:
    from jobflow import Job, JobStore
    from maggma.core import Store

    from matris_flows.campaign.spec import CampaignSpec

logger = logging.getLogger(__name__)


def chunk_reference(job: Job) -> OutputReference | None:
    """The ``<shard>.chunks[k]`` output a chunk job takes its candidates from, or None (not a chunk job).

    Read from the metadata the shard job gives every job of a chunk (:data:`CHUNK_METADATA`).
    """
    chunk = (job.metadata or {}).get(CHUNK_METADATA)
    if not isinstance(chunk, dict) or "shard_job" not in chunk or "chunk" not in chunk:
        return None
    return OutputReference(chunk["shard_job"]).chunks[int(chunk["chunk"])]


def _resolve(chunk: OutputReference, name: str, store: JobStore, cache: dict) -> Any:
    # ``cache`` is jobflow's reference cache: the shard output is read from the store once
    return getattr(chunk, name).resolve(store, cache, on_missing=OnMissing.NONE)


def failed_chunk_documents(job: Job, reason: str, store: JobStore, spec: CampaignSpec) -> list[CandidateDocument]:
    """``job_failed`` documents of the candidates of the chunk ``job`` worked on (empty for other jobs)."""
    chunk = chunk_reference(job)
    if chunk is None:
        return []
    cache: dict = {}
    structures, candidate_ids = _resolve(chunk, "structures", store, cache), _resolve(chunk, "candidate_ids", store, cache)
    if not structures or not candidate_ids:
        return []
    provenance = _resolve(chunk, "provenance", store, cache) or [None] * len(candidate_ids)
    parsed = parse_potential(spec.potential.name, spec.potential.options)
    potential = PotentialInfo(
        name=parsed.name, kind=parsed.kind.value, device=spec.potential.device, energy_convention=parsed.energy_convention
    )
    settings = spec.relax
    context = DocumentContext(campaign=spec.name, provenance=dict(zip(candidate_ids, provenance, strict=False)))
    return [
        unassessed_candidate(
            failed_document(candidate_id, structure, reason, potential, settings, settings.engine), context,
            ThermoStatus.JOB_FAILED, reason,
        )
        for structure, candidate_id in zip(structures, candidate_ids, strict=False)
    ]


def publish_failed_chunk(job: Job, reason: str, store: JobStore, candidates: Store, spec: CampaignSpec) -> int:
    """Publish the failed chunk's candidates that have no document yet; returns how many.

    Never raises: marking is a courtesy of the report, the failure itself is already recorded.
    """
    try:
        documents = failed_chunk_documents(job, reason, store, spec)
        if not documents:
            return 0
        ids = [d.candidate_id for d in documents]
        present = {d["candidate_id"] for d in candidates.query({"candidate_id": {"$in": ids}}, properties=["candidate_id"])}
        new = [json_document(d) for d in documents if d.candidate_id not in present]
        if new:
            candidates.update(new, key="candidate_id")
        return len(new)
    except Exception as exc:  # noqa: BLE001 - the failure is recorded elsewhere; this only adds detail
        logger.warning(f"could not mark the candidates of failed job {job.name}: {type(exc).__name__}: {exc}")
        return 0
