"""Projections (``properties``) as mongomock applies them, with a fast path for plain top-level fields."""

from __future__ import annotations

import mongomock_ng


def _mongomock_projection(doc: dict, fields: dict) -> dict:
    """mongomock's own projection (through its public find), so that ``properties`` behave exactly as in MemoryStore.

    A client of its own per call: nothing is shared between threads or processes. It costs about
    0.1 ms a document, and serves only projections the fast path of :func:`project` does not
    (dotted paths, exclusions, operators).
    """
    collection = mongomock_ng.MongoClient().db.projection
    collection.insert_one(dict(doc))  # doc has an _id (build_document), which find_one keeps unless excluded
    return collection.find_one({}, dict(fields))


def projection(properties: dict | list | None) -> tuple[dict | None, list[str] | None]:
    """(mongomock projection dict or None, plain top-level field names for the fast path or None)."""
    if properties is None:
        return None, None
    fields = {p: 1 for p in properties} if isinstance(properties, list | tuple) else dict(properties)
    if not fields:
        return None, None
    simple = all(
        isinstance(k, str) and "." not in k and not k.startswith("$") and k != "_id" and v in (1, True)
        for k, v in fields.items()
    )
    return fields, (list(fields) if simple else None)


def project(doc: dict, fields: dict | None, simple: list[str] | None) -> dict:
    """``doc`` projected on what :func:`projection` made of ``properties``."""
    if fields is None:
        return doc
    if simple is not None:
        out = {k: doc[k] for k in simple if k in doc}
        if "_id" in doc:
            out["_id"] = doc["_id"]
        return out
    return _mongomock_projection(doc, fields)


def projection_tops(fields: dict | None) -> set[str] | None:
    """Top-level fields a projection needs (None: the whole document)."""
    if fields is None:
        return None
    tops = set()
    for key, value in fields.items():
        if key == "_id":  # ``_id: 0`` excludes it and says nothing of the other fields
            if value:
                tops.add("_id")
            continue
        if isinstance(value, dict) or isinstance(value, str) or not value:
            return None  # exclusions, $slice/$elemMatch, computed fields
        tops.add(key.split(".")[0])
    # no field named but _id ({"_id": 0}: every field but _id): the whole document, projected by mongomock
    return tops if tops - {"_id"} else None
