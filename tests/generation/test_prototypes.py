"""Prototype decoration over element lists with charge balance."""

import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matris_flows.generation.filters import is_charge_balanced
from matris_flows.generation.jobs import PrototypeMaker
from matris_flows.generation.pipeline import generate_candidates
from matris_flows.generation.prototypes import load_prototype_library
from matris_flows.generation.schemas import Candidate, RejectedCandidate, RejectionReason

ALKALI_HALIDES = [["Li", "Na", "K"], ["Cl", "Br"]]
EXPECTED = {f"{a}{x}" for a in ("Li", "Na", "K") for x in ("Cl", "Br")}


def test_library_has_the_common_prototypes():
    library = load_prototype_library()
    for name in ("rocksalt", "zincblende", "wurtzite", "cscl", "l12", "perovskite", "spinel", "fluorite",
                 "rutile", "heusler", "layered_abo2", "olivine"):
        assert name in library
    assert library["spinel"]["spacegroup"] == 227
    assert len(library["spinel"]["labels"]) == 14  # primitive cell, AB2X4 x 2


@pytest.mark.parametrize("name", ["rocksalt", "cscl", "spinel", "perovskite", "wurtzite", "layered_abo2"])
def test_decorated_prototypes_keep_their_space_group(name):
    lists = {2: [["Mg"], ["O"]], 3: [["Sr"], ["Ti"], ["O"]]}
    library = load_prototype_library()
    n_labels = len(set(library[name]["labels"]))
    maker = PrototypeMaker(element_lists=lists[n_labels] if n_labels in lists else [["Mg"], ["Al"], ["O"]],
                           prototypes=[name], charge_balanced=False, permute_lists=False)
    candidate = next(e for e in maker.iter_events() if isinstance(e, Candidate))
    assert SpacegroupAnalyzer(candidate.structure, symprec=0.01).get_space_group_number() == library[name]["spacegroup"]


def test_alkali_halides_give_charge_balanced_rocksalt_and_cscl_only():
    maker = PrototypeMaker(element_lists=ALKALI_HALIDES, prototypes=["rocksalt", "cscl", "fluorite", "l12"])
    out = generate_candidates([maker])
    protos = {c.provenance.prototype for c in out.candidates}
    assert protos == {"rocksalt", "cscl"}
    for proto in protos:
        assert {c.formula for c in out.candidates if c.provenance.prototype == proto} == EXPECTED
    assert all(is_charge_balanced(c.structure.composition) for c in out.candidates)
    assert len(out.candidates) == 12
    # fluorite LiCl2 / L1_2 Li3Cl are dropped as unbalanced, the A<->X swaps of the two
    # symmetric prototypes as duplicates: all counted, none silently lost.
    counts = out.report.rejected_counts
    assert counts[RejectionReason.NOT_CHARGE_BALANCED] == 24
    assert counts[RejectionReason.DUPLICATE] == 12
    assert out.report.n_proposed == out.report.n_accepted + out.report.n_rejected


def test_whole_library_and_smact_rule():
    maker = PrototypeMaker(element_lists=ALKALI_HALIDES, charge_balance_method="smact")
    out = generate_candidates([maker])
    assert {c.formula for c in out.candidates} == EXPECTED
    assert {c.provenance.prototype for c in out.candidates} == {"rocksalt", "cscl", "zincblende", "wurtzite"}


def test_permuted_lists_give_antifluorite_li2o():
    out = generate_candidates([PrototypeMaker(element_lists=[["Li"], ["O"]], prototypes=["fluorite"])])
    assert [c.formula for c in out.candidates] == ["Li2O"]
    assert out.candidates[0].provenance.decoration == {"A": "O", "X": "Li"}


def test_scaled_cell_is_reasonable():
    out = generate_candidates([PrototypeMaker(element_lists=[["Na"], ["Cl"]], prototypes=["rocksalt"])])
    (nacl,) = out.candidates
    assert 2.5 < nacl.structure.get_distance(0, 1, jimage=None) < 3.2  # experiment: 2.82 Å


@pytest.mark.parametrize(
    ("element_lists", "needle"),
    [([], "no element lists"), ([["Li"], []], "element list 1 is empty"), ([["Li"], ["Xx"]], "unknown element")],
)
def test_bad_element_lists_are_reported(element_lists, needle):
    events = list(PrototypeMaker(element_lists=element_lists, prototypes=["rocksalt"]).iter_events())
    assert len(events) == 1 and isinstance(events[0], RejectedCandidate)
    assert events[0].reason is RejectionReason.INVALID_INPUT and needle in events[0].message


def test_unknown_prototype_is_reported_and_others_go_on():
    events = list(PrototypeMaker(element_lists=[["Na"], ["Cl"]], prototypes=["nope", "rocksalt"]).iter_events())
    assert any(isinstance(e, RejectedCandidate) and "nope" in e.message for e in events)
    assert any(isinstance(e, Candidate) and e.formula == "NaCl" for e in events)
