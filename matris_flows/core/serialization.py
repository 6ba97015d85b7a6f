"""JSON for documents that hold pymatgen objects, and decoding JSON with an allowlist of classes.

pydantic cannot JSON-serialise pymatgen objects on its own; :data:`JsonStructure` teaches
it (``as_dict`` in JSON mode), so ``model_dump(mode="json")``/``model_dump_json`` work on
every document of the pipeline, a rejected candidate with its structure included.
"""

import json
from pathlib import Path
from typing import Annotated, Any

from monty.json import jsanitize
from pydantic import BaseModel, PlainSerializer
from pymatgen.core import Structure

JsonStructure = Annotated[Structure, PlainSerializer(lambda s: s.as_dict(), return_type=dict, when_used="json")]
"""A pymatgen ``Structure`` field that serialises to its ``as_dict()`` in JSON mode."""


def json_document(document: BaseModel) -> dict[str, Any]:
    """A pydantic document as a JSON-ready dict (pymatgen objects as their dicts, enums as values)."""
    return jsanitize(document.model_dump(mode="json"), strict=True, enum_values=True, allow_bson=True)


# -- decoding with an allowlist ----------------------------------------------------
#
# MontyDecoder imports whatever ``@module`` a JSON document names and calls its
# ``from_dict``/constructor; a jobflow Job decoded from JSON calls its ``@callable``
# when it runs. Journal records, flow.json and users' structure files are files on
# disk that someone else may have written, so they are decoded only after every
# ``@module`` in them was checked against these lists: import nothing, run nothing else.

TRUSTED_CLASS_MODULES: tuple[str, ...] = ("pymatgen", "jobflow", "matris_flows", "emmet", "atomate2")
"""Packages (and their submodules) whose classes JSON documents may name: documents, Makers, entries."""

TRUSTED_CALLABLE_MODULES: tuple[str, ...] = ("matris_flows", "jobflow", "atomate2")
"""Packages whose functions a decoded Job may call (``@callable``): the job functions of the campaign's flows."""

TRUSTED_VALUE_MODULES: frozenset[str] = frozenset({"datetime", "uuid", "pathlib", "numpy", "bson.objectid", "bson.dbref"})
"""Modules of plain values monty encodes (dates, uuids, paths, arrays, ObjectIds); exact names only."""


class UnsafeJSONError(ValueError):
    """A JSON document names a class or function outside the allowlist; nothing of it was decoded."""


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def check_trusted(obj: Any, source: str = "JSON document") -> None:
    """Raise :class:`UnsafeJSONError` (one line) unless every ``@module`` in ``obj`` is allowed.

    ``@class`` entries may name classes of :data:`TRUSTED_CLASS_MODULES` or the value
    types of :data:`TRUSTED_VALUE_MODULES`; ``@callable`` entries (job functions, output
    schemas) only names in :data:`TRUSTED_CALLABLE_MODULES`. ``@module`` without either
    (jobflow's blob placeholders) imports nothing and passes.
    """
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module = item.get("@module")
            if module and ("@class" in item or "@callable" in item):
                if not isinstance(module, str):
                    raise UnsafeJSONError(f"{source}: refusing to decode an @module that is not a string: {module!r}")
                callable_ = "@callable" in item and "@class" not in item
                name = item.get("@callable") if callable_ else item.get("@class")
                allowed = (
                    _within(module, TRUSTED_CALLABLE_MODULES)
                    if callable_
                    else _within(module, TRUSTED_CLASS_MODULES) or module in TRUSTED_VALUE_MODULES
                )
                if not allowed:
                    kind, packages = ("function", TRUSTED_CALLABLE_MODULES) if callable_ else ("class", TRUSTED_CLASS_MODULES)
                    raise UnsafeJSONError(
                        f"{source}: refusing to decode the {kind} {module}.{name}: only those of "
                        f"{', '.join(packages)} are decoded (was the file tampered with?)"
                    )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def safe_decode(obj: Any, source: str = "JSON document") -> Any:
    """``MontyDecoder().process_decoded(obj)`` after :func:`check_trusted` passed on the whole of ``obj``."""
    from monty.json import MontyDecoder

    check_trusted(obj, source)
    return MontyDecoder().process_decoded(obj)


def safe_loads(text: str | bytes, source: str = "JSON document") -> Any:
    """Parse JSON and decode its MSON objects with the allowlist (:func:`safe_decode`)."""
    return safe_decode(json.loads(text), source)


def safe_loadfn(path: str | Path) -> Any:
    """Read a JSON file (``.json``, ``.json.gz``, ``.bz2``, ...) and decode it with the allowlist.

    The safe counterpart of ``monty.serialization.loadfn`` for JSON; errors name the file.
    """
    from monty.io import zopen

    with zopen(path, mode="rt", encoding="utf-8") as handle:
        return safe_loads(handle.read(), source=str(path))


class SafeDecoder(json.JSONDecoder):
    """``json.loads(text, cls=SafeDecoder)``: MontyDecoder with the allowlist of :func:`check_trusted`."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return safe_decode(super().decode(s, *args, **kwargs))
