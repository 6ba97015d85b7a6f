"""pyxtal random search: requested space groups, determinism and bad compositions."""

import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matris_flows.generation.filters import min_interatomic_distance
from matris_flows.generation.jobs import RandomSearchMaker
from matris_flows.generation.schemas import Candidate, RejectedCandidate, RejectionReason


@pytest.fixture(scope="module")
def events():
    maker = RandomSearchMaker(compositions=["NaCl", "Li2O"], space_groups=[225, 221], formula_units=[1, 4],
                              n_seeds=2, seed=7)
    return list(maker.iter_events())


def test_valid_symmetric_cells_with_requested_space_groups(events):
    candidates = [e for e in events if isinstance(e, Candidate)]
    assert {c.formula for c in candidates} == {"NaCl", "Li2O"}
    for cand in candidates:
        prov = cand.provenance
        assert prov.spacegroup in (225, 221)
        found = SpacegroupAnalyzer(cand.structure, symprec=0.01).get_space_group_number()
        # Four NaCl on the special positions of Pm-3m are rocksalt: a supergroup, still the
        # requested symmetry. Every other case here keeps exactly the requested group.
        assert found == prov.spacegroup or (prov.spacegroup, found) == (221, 225)
        n_fu = cand.structure.composition.get_reduced_composition_and_factor()[1]
        assert n_fu == prov.formula_units
        assert min_interatomic_distance(cand.structure) > 1.0
        assert prov.seed is not None
    nacl_225 = [c for c in candidates if c.formula == "NaCl" and c.provenance.spacegroup == 225]
    li2o_225 = [c for c in candidates if c.formula == "Li2O" and c.provenance.spacegroup == 225]
    assert len(nacl_225) == 2 and len(li2o_225) == 2  # n_seeds per compatible (Z, space group)


def test_same_spec_same_candidates(events):
    again = list(RandomSearchMaker(compositions=["NaCl", "Li2O"], space_groups=[221, 225], formula_units=[4, 1],
                                   n_seeds=2, seed=7).iter_events())
    assert [e.candidate_id for e in again] == [e.candidate_id for e in events]
    other_seed = list(RandomSearchMaker(compositions=["NaCl"], space_groups=[221], formula_units=[4], n_seeds=1,
                                        seed=8).iter_events())
    assert other_seed[0].candidate_id not in {e.candidate_id for e in events}


def test_no_valid_space_group_is_reported_and_others_go_on():
    # Pm-3m has 1-, 3-, 6-fold sites but no 2-fold one: one Li2O cannot be placed.
    events = list(RandomSearchMaker(compositions=["Li2O", "NaCl"], space_groups=[221], formula_units=[1],
                                    n_seeds=1).iter_events())
    rejected = [e for e in events if isinstance(e, RejectedCandidate)]
    assert [r.reason for r in rejected] == [RejectionReason.NO_VALID_SPACE_GROUP]
    assert "Li2O" in rejected[0].message and "221" in rejected[0].message
    assert [e.formula for e in events if isinstance(e, Candidate)] == ["NaCl"]


@pytest.mark.parametrize("formula", ["Xx2O", "Li0.5O", "", "Li-2O"])
def test_impossible_compositions_are_reported(formula):
    events = list(RandomSearchMaker(compositions=[formula, "NaCl"], space_groups=[225], formula_units=[4]).iter_events())
    bad = [e for e in events if isinstance(e, RejectedCandidate)]
    assert len(bad) == 1 and bad[0].reason is RejectionReason.INVALID_INPUT
    assert bad[0].input_name == formula
    assert any(isinstance(e, Candidate) and e.formula == "NaCl" for e in events)
