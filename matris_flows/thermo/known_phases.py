"""Known phases: which reference material, if any, a relaxed candidate is.

A substitution or a prototype can rebuild a phase the reference data already holds. Its
``e_above_hull`` is then E_model - E_DFT of one and the same phase, often negative, and
it would be listed as a stable "discovery". So every relaxed candidate is compared with
the reference structures of its own reduced formula (pymatgen ``StructureMatcher`` with
the generation stage's tolerances, volumes scaled: a model's lattice constants differ
from DFT's). Buckets are by reduced formula and primitive-cell size, not by space group:
a relaxation may lower the symmetry a little and must still be recognised.

A candidate whose relaxed structure matches no reference is still a known phase when the
structure it was *generated* as matches one: an MP phase given as input (or rebuilt by a
substitution) that the model relaxes somewhere else is that MP phase as this model sees it,
not a discovery. (Generation dedup against references drops those before relaxation when it
is on; this keeps them recognised when it is off.) On 120 rattled and strained MP Li-Fe-P-O
phases relaxed with CHGNet, the relaxed structure alone matches 104 (87 %): the others are
mostly high-energy O2, LiO2, P and Fe-O entries that CHGNet relaxes into another space group.
Looser tolerances (ltol 0.3, stol 0.5, angle 10°) would match 112, but they also merge 42
more pairs of distinct MP entries (fcc Fe with a bct Fe 0.13 eV/atom above it, O2 entries up
to 1.9 eV/atom apart), and space group + Wyckoff labels recognise only 49 (relaxations
change the space group); so the tolerances stay those of the generation dedup.

Cost: the Niggli/primitive reduction dominates a ``fit``, so every structure is reduced
once (reference structures once per process, for cacheable providers) and ``fit`` runs
only against references of the same primitive size. The work is per chunk, over the
formulas of that chunk, so it does not grow with the campaign.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.entries import Entry

from matris_flows.core.chemsys import chemsys_of
from matris_flows.thermo.references import MissingReferenceError, ReferenceProvider

logger = logging.getLogger(__name__)

_RUN_TYPE_SUFFIXES = ("-GGA+U", "-GGA", "-r2SCAN", "-R2SCAN")
_REDUCED_CACHE: OrderedDict[tuple, list[tuple[str, Structure]]] = OrderedDict()
_REDUCED_CACHE_SIZE = 1024  # formula buckets kept per process: a worker's chunks share their formulas


def known_phase_matcher() -> StructureMatcher:
    """The matcher: the generation dedup's tolerances, primitive cells, volumes scaled, no supercells."""
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5.0, primitive_cell=True, scale=True, attempt_supercell=False)


def material_id(entry: Entry) -> str:
    """The MP material id of a reference entry (``data['material_id']``, else its entry id without a run-type suffix)."""
    data = getattr(entry, "data", None) or {}
    if data.get("material_id"):
        return str(data["material_id"])
    entry_id = str(entry.entry_id)
    for suffix in _RUN_TYPE_SUFFIXES:
        if entry_id.endswith(suffix):
            return entry_id.removesuffix(suffix)
    return entry_id


def reduced(structure: Structure) -> Structure:
    """Niggli-reduced primitive cell without oxidation states: what ``StructureMatcher`` compares."""
    plain = structure.copy()
    plain.remove_oxidation_states()
    return plain.get_reduced_structure("niggli").get_primitive_structure()


def _reference_bucket(entries: Sequence[Entry], formula: str) -> list[tuple[str, Structure]]:
    """``(material id, reduced structure)`` of the references with ``formula``, lowest energy first."""
    wanted = [
        e for e in entries
        if getattr(e, "structure", None) is not None and e.structure.is_ordered and e.composition.reduced_formula == formula
    ]
    # lowest energy first: a candidate matching several MP duplicates of one phase gets the ground state
    wanted.sort(key=lambda e: (e.energy_per_atom, str(e.entry_id)))
    return [(material_id(e), reduced(e.structure)) for e in wanted]


def _bucket(references: ReferenceProvider, entries: Sequence[Entry], formula: str) -> list[tuple[str, Structure]]:
    cache_key = getattr(references, "cache_key", None)
    if cache_key is None:
        return _reference_bucket(entries, formula)
    key = (cache_key, formula)
    if key in _REDUCED_CACHE:
        _REDUCED_CACHE.move_to_end(key)
        return _REDUCED_CACHE[key]
    bucket = _reference_bucket(entries, formula)
    _REDUCED_CACHE[key] = bucket
    if len(_REDUCED_CACHE) > _REDUCED_CACHE_SIZE:
        _REDUCED_CACHE.popitem(last=False)
    return bucket


def _first_match(structure: Structure, bucket: list[tuple[str, Structure]], matcher: StructureMatcher) -> str | None:
    """Material id of the first reference of ``bucket`` (lowest energy first) that ``structure`` is."""
    candidate = reduced(structure)
    return next(
        (mid for mid, ref in bucket if len(ref) == len(candidate) and matcher.fit(candidate, ref, skip_structure_reduction=True)),
        None,
    )


def match_known_phases(
    structures: Sequence[tuple[str, Structure | None]],
    references: ReferenceProvider,
    matcher: StructureMatcher | None = None,
    generated: Mapping[str, Structure | None] | None = None,
) -> dict[str, str | None]:
    """``{candidate_id: material id of the reference phase it is, or None}`` for relaxed structures.

    Args:
        structures: ``(candidate_id, relaxed structure)`` pairs; a None structure (failed
            relaxation) maps to None.
        references: The reference provider; its entries of each candidate's own chemical
            system that carry a structure (``ComputedStructureEntry``) are the known phases.
            A system without reference data has no known phase.
        matcher: StructureMatcher to decide a match (default :func:`known_phase_matcher`;
            it must not attempt supercells: references are bucketed by primitive size).
        generated: ``{candidate_id: structure before relaxation}``; a candidate whose relaxed
            structure matches no reference is matched by its generated structure (see the
            module docstring). The relaxed structure's match, when there is one, wins.
    """
    matcher = matcher or known_phase_matcher()
    generated = generated or {}
    out: dict[str, str | None] = {cid: None for cid, _ in structures}
    by_system: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
    for cid, structure in structures:
        if structure is not None:
            by_system[chemsys_of(el.symbol for el in structure.composition.elements)].append((cid, structure))
    for chemsys, members in by_system.items():
        try:
            entries = references.get_entries(chemsys)
        except MissingReferenceError:
            continue  # reported by the hull itself (thermo_status no_reference)
        for cid, structure in members:
            bucket = _bucket(references, entries, structure.composition.reduced_formula)
            if not bucket:
                continue
            before = generated.get(cid)
            for attempt in (structure, before):
                # the generated structure only when it has the relaxed one's composition (it always should)
                if attempt is None or (attempt is before and attempt.composition.reduced_formula != structure.composition.reduced_formula):
                    continue
                try:
                    out[cid] = _first_match(attempt, bucket, matcher)
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    # a degenerate cell must not fail its chunk's hull job: no match, said in the log
                    logger.warning("known-phase match of %s failed: %s", cid, exc)
                if out[cid] is not None:
                    break
    return out
