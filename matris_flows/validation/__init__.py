"""DFT validation: confirm the most promising MLIP candidates with a real DFT code.

``ValidationMaker`` is the stage: it selects candidates (``selection.py``) and expands into
a backend flow, either consistent GPAW hulls computed offline (``flows.py``,
``gpaw_backend.py``, ``hull.py``) or MP-compatible VASP on the MP hull (``vasp.py``). The
result is a ``ValidationReport`` of ``ValidationDocument``s, joined into the candidate
documents by ``join.py``.

Exports are resolved lazily: importing atomate2's VASP machinery takes seconds, and code
that only needs the schemas or the selection should not pay for it.
"""

from matris_flows.core.lazy import lazy_exports

_EXPORTS = {
    "CONFIRMED_STABLE_QUERY": ".join",
    "VALIDATED_QUERY": ".join",
    "attach_validation": ".join",
    "attach_validations": ".join",
    "update_candidate_store": ".join",
    "DftCalculationDocument": ".schemas",
    "ValidationDocument": ".schemas",
    "ValidationReport": ".schemas",
    "ValidationStatus": ".schemas",
    "SelectionSettings": ".selection",
    "select_for_validation": ".selection",
    "GpawRelaxMaker": ".gpaw_backend",
    "GpawSettings": ".gpaw_backend",
    "GpawStaticMaker": ".gpaw_backend",
    "molecule_in_box": ".gpaw_backend",
    "GpawHullValidationMaker": ".flows",
    "ValidationMaker": ".jobs",
    "VaspValidationMaker": ".vasp",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
