"""JSON for documents that hold pymatgen objects.

pydantic cannot JSON-serialise pymatgen objects on its own; :data:`JsonStructure` teaches
it (``as_dict`` in JSON mode), so ``model_dump(mode="json")``/``model_dump_json`` work on
every document of the pipeline, a rejected candidate with its structure included.
"""

from typing import Annotated, Any

from monty.json import jsanitize
from pydantic import BaseModel, PlainSerializer
from pymatgen.core import Structure

JsonStructure = Annotated[Structure, PlainSerializer(lambda s: s.as_dict(), return_type=dict, when_used="json")]
"""A pymatgen ``Structure`` field that serialises to its ``as_dict()`` in JSON mode."""


def json_document(document: BaseModel) -> dict[str, Any]:
    """A pydantic document as a JSON-ready dict (pymatgen objects as their dicts, enums as values)."""
    return jsanitize(document.model_dump(mode="json"), strict=True, enum_values=True, allow_bson=True)
