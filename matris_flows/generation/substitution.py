"""Ionic substitution (Hautier et al., Inorg. Chem. 50, 656 (2011)) from template structures.

pymatgen's ``SubstitutionPredictor`` proposes species maps with data-mined probabilities
above a threshold; each charge-balanced map is applied to the template. Single-species
maps that keep the oxidation state can also be applied to a fraction of that site
class (e.g. half the Li by Na), ordered by Ewald energy.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pymatgen.core import Species, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from matris_flows.core.data_paths import resolve_data_path
from matris_flows.core.validity import structure_problem
from matris_flows.generation.files import order_structure
from matris_flows.generation.ids import build_candidate
from matris_flows.generation.schemas import (
    Candidate,
    Provenance,
    RejectedCandidate,
    RejectionReason,
    SourceMethod,
)

TemplateLike = Structure | ComputedStructureEntry | dict | str | Path


def _entry_id(entry: ComputedStructureEntry, fallback: str) -> str:
    return str(entry.data.get("material_id") or entry.entry_id or fallback)


def load_templates(templates: Sequence[TemplateLike] | TemplateLike) -> list[tuple[str, Structure]]:
    """Normalise templates to ``(template_id, structure)`` pairs in input order.

    Accepts structures, ``ComputedStructureEntry`` objects or their dicts, and paths to
    JSON / JSON.gz files holding one or a list of them (such as
    ``package:mp_Li-Fe-P-O_phosphate_templates_2024-11-21.json.gz`` in a spec). Ids are MP ids where known.
    """
    from matris_flows.core.serialization import SafeDecoder, safe_decode

    if isinstance(templates, (str, Path, Structure, ComputedStructureEntry, dict)):
        templates = [templates]
    out: list[tuple[str, Structure]] = []
    for i, item in enumerate(templates):
        if isinstance(item, (str, Path)):
            path = resolve_data_path(item)
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt") as handle:
                data = json.load(handle, cls=SafeDecoder)  # a user's file: classes from the allowlist only
            items = data if isinstance(data, list) else [data]
            for j, sub in enumerate(items):
                out.extend(load_templates([sub]) if not isinstance(sub, Structure) else [(f"{path.name}#{j}", sub)])
            continue
        if isinstance(item, dict):
            item = safe_decode(item, f"template {i}")
        if isinstance(item, ComputedStructureEntry):
            out.append((_entry_id(item, f"template-{i}"), item.structure))
        elif isinstance(item, Structure):
            out.append((f"template-{i}", item))
        else:
            raise TypeError(f"template {i} is a {type(item).__name__}; give a Structure, entry or file path")
    return out


@lru_cache(maxsize=256)
def _predictions(species: tuple[str, ...], threshold: float) -> tuple[tuple[tuple[tuple[str, str], ...], float], ...]:
    """Species maps with probability > threshold, cached: many templates share a species set."""
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionPredictor

    predictor = SubstitutionPredictor(threshold=threshold)
    raw = predictor.list_prediction([Species.from_str(s) for s in species], to_this_composition=False)
    out = []
    for pred in raw:
        subs = tuple(sorted((str(old), str(new)) for old, new in pred["substitutions"].items() if old != new))
        if subs:
            out.append((subs, float(pred["probability"])))
    # Most probable first; ties broken by the map itself so the order never depends on dict order.
    return tuple(sorted(out, key=lambda p: (-p[1], p[0])))


def decorate_oxidation_states(structure: Structure) -> Structure:
    """Return a copy with oxidation states (kept if present, else pymatgen's best guess)."""
    decorated = structure.copy()
    if all(getattr(site.specie, "oxi_state", None) is not None for site in decorated):
        return decorated
    decorated.remove_oxidation_states()
    guesses = decorated.composition.oxi_state_guesses(max_sites=-50)
    if not guesses:
        raise ValueError(f"{decorated.composition.reduced_formula} has no charge-balanced oxidation states")
    decorated.add_oxidation_state_by_element(guesses[0])
    return decorated


def _charge(structure_counts: dict[str, float], subs: dict[str, str]) -> float:
    return sum(Species.from_str(subs.get(sp, sp)).oxi_state * n for sp, n in structure_counts.items())


def iter_substitution_candidates(
    templates: Sequence[tuple[str, Structure]],
    threshold: float = 1e-3,
    max_substituted_species: int = 2,
    allowed_elements: Collection[str] | None = None,
    partial_fractions: Sequence[float] = (),
    max_partial_sites: int = 8,
    n_orderings: int = 1,
    max_per_template: int | None = None,
) -> Iterator[Candidate | RejectedCandidate]:
    """Substituted structures from each template, most probable first.

    Args:
        templates: ``(template_id, structure)`` pairs (see :func:`load_templates`).
        threshold: minimum Hautier probability of the whole species map.
        max_substituted_species: how many site classes (species) one map may change.
        allowed_elements: if given, new species must be of these elements.
        partial_fractions: for single-species maps that keep the charge, also replace this
            fraction of the site class (e.g. ``(0.5,)``), ordered by Ewald energy.
        max_partial_sites: skip partial substitution when the class has more sites (the
            number of orderings grows combinatorially).
        n_orderings: lowest-Ewald orderings kept per partial substitution.
        max_per_template: cap on full substitutions per template (after sorting).
    """
    allowed = set(allowed_elements) if allowed_elements is not None else None
    for template_id, template in templates:
        yield from _substitute_one(
            template_id, template, threshold, max_substituted_species, allowed, partial_fractions,
            max_partial_sites, n_orderings, max_per_template,
        )


def _substitute_one(
    template_id: str,
    template: Structure,
    threshold: float,
    max_substituted_species: int,
    allowed: set[str] | None,
    partial_fractions: Sequence[float],
    max_partial_sites: int,
    n_orderings: int,
    max_per_template: int | None,
) -> Iterator[Candidate | RejectedCandidate]:
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    def reject(message: str) -> RejectedCandidate:
        return RejectedCandidate(
            reason=RejectionReason.INVALID_INPUT, message=f"template {template_id}: {message}", input_name=template_id
        )

    if (problem := structure_problem(template)) is not None:  # before Ewald orderings run native code on it
        yield reject(f"invalid structure: {problem}")
        return
    if not template.is_ordered:
        yield reject("has partial occupancies; order it first (FileSourceMaker(order_disordered=True))")
        return
    try:
        decorated = decorate_oxidation_states(template)
    except ValueError as exc:
        yield reject(str(exc))
        return
    counts: dict[str, float] = {}
    for site in decorated:
        counts[str(site.specie)] = counts.get(str(site.specie), 0) + 1
    species = tuple(sorted(counts))
    known = {str(sp) for sp in SubstitutionProbability().species}
    unknown = [sp for sp in species if sp not in known]
    if unknown:
        yield reject(f"species {unknown} are outside the substitution probability model")
        return
    n_full = 0
    for subs_items, probability in _predictions(species, threshold):
        subs = dict(subs_items)
        if len(subs) > max_substituted_species:
            continue
        if allowed is not None and any(Species.from_str(new).symbol not in allowed for new in subs.values()):
            continue
        if abs(_charge(counts, subs)) > 1e-8:
            continue
        if max_per_template is not None and n_full >= max_per_template:
            break
        n_full += 1
        prob = float(f"{probability:.6g}")  # rounded so ids do not depend on the last float bit
        mapping = {Species.from_str(old): Species.from_str(new) for old, new in subs.items()}
        substituted = decorated.copy()
        # One simultaneous map, so swaps (A->B, B->A) do not chain.
        substituted.replace_species(mapping)
        provenance = Provenance(
            source=SourceMethod.SUBSTITUTION, parent_id=template_id, substitution=subs,
            substitution_probability=prob, substituted_fraction=1.0,
        )
        yield build_candidate(substituted, provenance)
        if len(subs) == 1 and partial_fractions:
            (old, new), = subs.items()
            if Species.from_str(old).oxi_state == Species.from_str(new).oxi_state and counts[old] <= max_partial_sites:
                yield from _partial(template_id, decorated, old, new, counts[old], prob, partial_fractions, n_orderings)


def _partial(
    template_id: str, decorated: Structure, old: str, new: str, n_sites: float, probability: float,
    fractions: Sequence[float], n_orderings: int,
) -> Iterator[Candidate | RejectedCandidate]:
    for fraction in sorted(set(fractions)):
        if not 0 < fraction < 1 or abs(fraction * n_sites - round(fraction * n_sites)) > 1e-6:
            continue  # the fraction cannot be realised on this cell's site count
        disordered = decorated.copy()
        old_sp, new_sp = Species.from_str(old), Species.from_str(new)
        disordered.replace_species({old_sp: {old_sp: 1 - fraction, new_sp: fraction}})
        base: dict[str, Any] = {
            "source": SourceMethod.SUBSTITUTION, "parent_id": template_id, "substitution": {old: new},
            "substitution_probability": probability, "substituted_fraction": fraction,
        }
        try:
            orderings = order_structure(disordered, n_orderings)
        except ValueError as exc:
            yield RejectedCandidate(
                reason=RejectionReason.GENERATION_FAILED,
                message=f"template {template_id}: partial {old}->{new} ({fraction}) failed: {exc}",
                input_name=template_id,
            )
            continue
        for rank, ordered in enumerate(orderings):
            yield build_candidate(ordered, Provenance(**base, ordering=f"ewald_rank_{rank}"))
