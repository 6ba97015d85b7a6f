"""How documents are stored: compact JSON text (orjson); datetimes, NaN/±inf, ObjectIds and bytes as MongoDB extended JSON.

:func:`dumps` and :func:`loads` are the only way documents go into and come out of the file (the
format is described in :mod:`matris_flows.stores.sqlite`). :func:`path_kind` is the kind bit of
a value as it will be stored: the store tracks the kinds each indexed field has held, to know when
a query's SQL translation is exact (:mod:`matris_flows.stores.sqlite.translate`).
"""

from __future__ import annotations

import base64
import numbers
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
from bson import ObjectId
from monty.json import jsanitize

# Kinds of value seen at an indexed path (bit flags, OR-ed over the collection).
K_NULL = 1  # null or missing
K_BOOL = 2
K_NUM = 4
K_STR = 8
K_DATE = 16
K_OBJ = 32  # any other object
K_ARR = 64  # an array at the path or on the way to it
K_ODD = 128  # a parent that is neither object nor array: mongomock treats it unlike "missing"
K_NAN = 256  # NaN or +-inf
NO_PUSHDOWN = K_ARR | K_ODD
SORTABLE = (K_BOOL, K_NUM, K_STR, K_DATE)  # kinds that sort alike in SQL and mongomock, one at a time

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME


def date_text(value: datetime) -> str:
    """Fixed-width ISO text of the naive UTC millisecond, as MongoDB stores a datetime."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds")


def _nonfinite(value: float) -> dict[str, str]:
    return {"$numberDouble": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}


def _encode(obj: Any) -> Any:
    """``obj`` as MongoStore would store it, in JSON: non-finite floats, Enums, bytes and ObjectIds
    replaced (and objects orjson cannot write); copies only what changes."""
    t = type(obj)
    if t is dict or t is list or t is tuple:
        new = None
        for k, v in obj.items() if t is dict else enumerate(obj):
            tv = type(v)
            if tv is str or tv is int or tv is bool or v is None:  # leaves inline: most values, no call
                continue
            if tv is float:
                if v - v == 0:
                    continue
                e = _nonfinite(v)
            else:
                e = _encode(v)
                if e is v:
                    continue
            if new is None:
                new = dict(obj) if t is dict else list(obj)
            new[k] = e
        return obj if new is None else new
    if t is float:
        return obj if obj - obj == 0 else _nonfinite(obj)
    if t is str or t is int or t is bool or obj is None or isinstance(obj, datetime):
        return obj  # datetimes: written by _default
    if isinstance(obj, Enum):  # MongoStore's jsanitize(allow_bson=True) stores an Enum as its MSON dict
        return jsanitize(obj, allow_bson=True)
    if isinstance(obj, bytes):  # BSON binary, in MongoDB extended JSON
        return {"$binary": {"base64": base64.b64encode(obj).decode(), "subType": "00"}}
    if isinstance(obj, ObjectId):  # e.g. the _id of a document copied from MongoDB
        return {"$oid": str(obj)}
    if isinstance(obj, float):  # e.g. numpy.float64
        return obj if obj - obj == 0 else _nonfinite(obj)
    if isinstance(obj, dict):
        return _encode(dict(obj))
    if isinstance(obj, list | tuple):
        return _encode(list(obj))
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral) and not obj - obj == 0:
        return _nonfinite(float(obj))  # numpy.float32 NaN: orjson would write null
    return obj  # str/int subclasses, numpy: orjson; anything else: _default


def _default(obj: Any) -> Any:
    """orjson fallback: datetimes as ``{"$date": ...}``; other objects sanitised as MongoStore does."""
    if isinstance(obj, datetime):
        return {"$date": date_text(obj)}
    sanitized = jsanitize(obj, strict=False, allow_bson=True, recursive_msonable=True)
    return str(obj) if sanitized is obj else _encode(sanitized)


def dumps(doc: Any) -> str:
    """The stored JSON text of a document."""
    # walked first: orjson would write NaN/inf as null and an Enum as its value (MongoStore: its MSON dict)
    doc = _encode(doc)
    try:
        out = orjson.dumps(doc, default=_default, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError:
        # e.g. a dict with integer keys, which orjson refuses: sanitised as MongoStore.update does (keys
        # become strings), so one such document is written instead of failing its whole batch
        doc = _encode(jsanitize(doc, strict=False, allow_bson=True, recursive_msonable=True))
        out = orjson.dumps(doc, default=_default, option=_DUMPS_OPTIONS)
    return out.decode()


_REVIVED = ('{"$date":', '{"$numberDouble":', '{"$oid":', '{"$binary":')  # extended JSON that loads turns back


def _revive(obj: Any) -> Any:
    """Turn stored ``{"$date": ...}``, ``{"$numberDouble": ...}``, ``{"$oid": ...}`` and ``{"$binary": ...}``
    back into Python values, in place."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            if isinstance(value := obj.get("$date"), str):
                try:
                    return datetime.fromisoformat(value)
                except ValueError:
                    return obj
            if isinstance(value := obj.get("$numberDouble"), str):
                try:
                    return float(value)
                except ValueError:
                    return obj
            if isinstance(value := obj.get("$oid"), str) and ObjectId.is_valid(value):
                return ObjectId(value)
            if isinstance(value := obj.get("$binary"), dict) and isinstance(value.get("base64"), str):
                return base64.b64decode(value["base64"])
        for k, v in obj.items():
            if isinstance(v, dict | list):
                obj[k] = _revive(v)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, dict | list):
                obj[i] = _revive(v)
    return obj


def loads(text: str) -> Any:
    """A stored JSON text (a document or one of its values) back as Python values."""
    obj = orjson.loads(text)
    if '{"$' in text and any(marker in text for marker in _REVIVED):
        obj = _revive(obj)
    return obj


def _kind(value: Any) -> int:
    """The kind bit of one value as it will be stored."""
    t = type(value)
    if value is None:
        return K_NULL
    if t is bool:
        return K_BOOL
    if t is str:
        return K_STR
    if t is int:
        return K_NUM
    if t is float:
        return K_NUM if value - value == 0 else K_NAN
    if t is dict:
        if len(value) == 1 and ("$date" in value or "$numberDouble" in value):
            return K_DATE if "$date" in value else K_NAN
        return K_OBJ
    if t is list or t is tuple:
        return K_ARR
    if isinstance(value, datetime):
        return K_DATE
    if isinstance(value, Enum):  # stored as its MSON dict
        return K_OBJ
    if isinstance(value, str):
        return K_STR
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        try:
            return K_NUM if value - value == 0 else K_NAN
        except TypeError:
            return K_ODD
    if isinstance(value, dict):
        return K_OBJ
    if isinstance(value, list | tuple):
        return K_ARR
    return K_ODD  # numpy bools, ObjectIds, bytes, objects: never pushed down


def path_kind(doc: dict, parts: list[str]) -> int:
    """The kind bit of the value at a dotted path (split into ``parts``) of ``doc``, as it will be stored."""
    cur: Any = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                return K_NULL
            cur = cur[part]
        elif isinstance(cur, list | tuple):
            return K_ARR
        else:
            return K_ODD
    return _kind(cur)
