"""Join validation documents into candidate documents and query them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from maggma.core import Store
from monty.json import jsanitize

from matris_flows.validation.schemas import ValidationDocument, ValidationStatus

# Queries on a candidate store after :func:`update_candidate_store` (MongoDB syntax, any maggma Store).
VALIDATED_QUERY: dict[str, Any] = {"validation.validated": True}
CONFIRMED_STABLE_QUERY: dict[str, Any] = {"validation.status": ValidationStatus.CONFIRMED_STABLE.value}
VALIDATION_FAILED_QUERY: dict[str, Any] = {"validation.status": ValidationStatus.VALIDATION_FAILED.value}


def validation_payload(validation: ValidationDocument) -> dict[str, Any]:
    """The validation as a JSON-ready dict (structures as pymatgen dicts, enums as their values)."""
    # pydantic cannot JSON-serialise pymatgen objects; monty's jsanitize is what jobflow uses too.
    return jsanitize(validation.model_dump(), strict=True, enum_values=True)


def attach_validation(candidate: Any, validation: ValidationDocument) -> Any:
    """Return a copy of ``candidate`` (pydantic document or dict) with ``validation`` set.

    The validation is stored as a JSON-ready dict: the candidate schema declares
    ``validation: dict | None`` so that it does not depend on this stage.
    """
    payload = validation_payload(validation)
    if isinstance(candidate, Mapping):
        return {**candidate, "validation": payload}
    return candidate.model_copy(update={"validation": payload})


def attach_validations(candidates: Iterable[Any], validations: Iterable[ValidationDocument]) -> list[Any]:
    """Attach each validation to its candidate (by candidate_id); others are returned unchanged."""
    by_id = {v.candidate_id: v for v in validations}
    joined = []
    for candidate in candidates:
        cid = candidate["candidate_id"] if isinstance(candidate, Mapping) else candidate.candidate_id
        joined.append(attach_validation(candidate, by_id[cid]) if cid in by_id else candidate)
    return joined


def update_candidate_store(
    store: Store, validations: Iterable[ValidationDocument], key: str = "candidate_id"
) -> int:
    """Write each validation into its candidate's document in ``store``; returns how many were joined.

    Works with any maggma Store (Memory, SQLite, Mongo). Candidates missing from the store
    are skipped: the validation documents stay the record of what was computed.
    """
    updated = []
    for validation in validations:
        doc = store.query_one({key: validation.candidate_id})
        if doc is None:
            continue
        doc.pop("_id", None)
        doc["validation"] = validation_payload(validation)
        updated.append(doc)
    if updated:
        store.update(updated, key=key)
    return len(updated)
