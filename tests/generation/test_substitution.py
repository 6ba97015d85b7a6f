"""Ionic substitution from the MP olivine LiFePO4."""

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matris_flows.generation.filters import is_charge_balanced
from matris_flows.generation.schemas import Candidate, RejectedCandidate, RejectionReason, SourceMethod
from matris_flows.generation.substitution import iter_substitution_candidates, load_templates

ALLOWED = ["Li", "Na", "Fe", "Mn", "P", "O"]


@pytest.fixture(scope="module")
def olivine_events(olivine_lifepo4):
    templates = load_templates([olivine_lifepo4])
    return list(
        iter_substitution_candidates(templates, threshold=1e-3, max_substituted_species=1, allowed_elements=ALLOWED,
                                     partial_fractions=(0.5,))
    )


def test_templates_keep_mp_ids(olivine_lifepo4):
    ((template_id, structure),) = load_templates([olivine_lifepo4])
    assert template_id == "mp-19017"
    assert structure.composition.reduced_formula == "LiFePO4"


def test_olivine_proposes_nafepo4_and_limnpo4_with_probabilities(olivine_events):
    candidates = {c.formula: c for c in olivine_events if isinstance(c, Candidate) and c.provenance.substituted_fraction == 1}
    assert {"NaFePO4", "LiMnPO4"} <= set(candidates)
    na, mn = candidates["NaFePO4"], candidates["LiMnPO4"]
    assert na.provenance.substitution == {"Li+": "Na+"}
    assert mn.provenance.substitution == {"Fe2+": "Mn2+"}
    for cand in (na, mn):
        assert cand.provenance.source is SourceMethod.SUBSTITUTION
        assert cand.provenance.parent_id == "mp-19017"
        assert 1e-3 < cand.provenance.substitution_probability < 1
        # the olivine framework is kept: same space group and cell size as the template
        assert SpacegroupAnalyzer(cand.structure, symprec=0.1).get_space_group_number() == 62
        assert cand.nsites == 28
        assert is_charge_balanced(cand.structure.composition)
    # most probable first
    probs = [c.provenance.substitution_probability for c in olivine_events
             if isinstance(c, Candidate) and c.provenance.substituted_fraction == 1]
    assert probs == sorted(probs, reverse=True)


def test_partial_substitution_of_one_site_class(olivine_events):
    half = [c for c in olivine_events if isinstance(c, Candidate) and c.provenance.substituted_fraction == 0.5]
    na_half = [c for c in half if c.provenance.substitution == {"Li+": "Na+"}]
    assert len(na_half) == 1
    comp = na_half[0].structure.composition
    assert (comp["Li"], comp["Na"], comp["Fe"]) == (2, 2, 4)
    assert na_half[0].provenance.ordering == "ewald_rank_0"


def test_threshold_limits_proposals(olivine_lifepo4):
    templates = load_templates([olivine_lifepo4])
    loose = list(iter_substitution_candidates(templates, threshold=1e-3, max_substituted_species=1))
    strict = list(iter_substitution_candidates(templates, threshold=5e-3, max_substituted_species=1))
    assert 0 < len(strict) < len(loose)
    assert all(c.provenance.substitution_probability > 5e-3 for c in strict)


def test_bad_templates_are_reported_by_name():
    disordered = Structure(Lattice.cubic(4.2), [{"Li": 0.5, "Na": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    noble = Structure(Lattice.cubic(5.0), ["Ar"], [[0, 0, 0]])
    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    events = list(iter_substitution_candidates(
        [("bad-disordered", disordered), ("bad-noble", noble), ("good", good)], max_substituted_species=1
    ))
    rejected = {e.input_name: e for e in events if isinstance(e, RejectedCandidate)}
    assert rejected["bad-disordered"].reason is RejectionReason.INVALID_INPUT
    assert "partial occupancies" in rejected["bad-disordered"].message
    assert rejected["bad-noble"].reason is RejectionReason.INVALID_INPUT
    assert "bad-noble" in rejected["bad-noble"].message
    assert any(isinstance(e, Candidate) and e.provenance.parent_id == "good" for e in events)
