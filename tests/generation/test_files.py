"""User files: every format, folders, globs, and every kind of bad file."""

from pathlib import Path

import pytest
from ase.db import connect
from ase.io import write as ase_write
from monty.serialization import dumpfn
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.generation.jobs import FileSourceMaker
from matris_flows.generation.pipeline import generate_candidates
from matris_flows.generation.schemas import Candidate, RejectedCandidate, RejectionReason, SourceMethod


@pytest.fixture(scope="module")
def structure_files(tmp_path_factory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("files")
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure(Lattice.cubic(3.8), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mgo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    files = {
        "cif": tmp_path / "nacl.cif",
        "poscar": tmp_path / "POSCAR",
        "extxyz": tmp_path / "two.extxyz",
        "db": tmp_path / "one.db",
        "json": tmp_path / "list.json",
    }
    nacl.to(filename=str(files["cif"]))
    kcl.to(filename=str(files["poscar"]), fmt="poscar")
    ase_write(files["extxyz"], [AseAtomsAdaptor.get_atoms(s) for s in (kcl, mgo)], format="extxyz")
    with connect(files["db"]) as db:
        db.write(AseAtomsAdaptor.get_atoms(mgo))
    dumpfn([nacl, kcl], files["json"])
    return files


@pytest.mark.parametrize(("kind", "formulas"), [
    ("cif", ["NaCl"]), ("poscar", ["KCl"]), ("extxyz", ["KCl", "MgO"]), ("db", ["MgO"]), ("json", ["NaCl", "KCl"]),
])
def test_each_format(structure_files, kind, formulas):
    events = list(FileSourceMaker(paths=[str(structure_files[kind])]).iter_events())
    assert all(isinstance(e, Candidate) for e in events)
    assert [e.formula for e in events] == formulas
    assert [e.provenance.file_index for e in events] == list(range(len(formulas)))
    assert all(e.provenance.source is SourceMethod.FILE for e in events)


def test_pymatgen_entry_json(tmp_path, olivine_lifepo4):
    path = tmp_path / "entry.json.gz"
    dumpfn(olivine_lifepo4, path)
    (cand,) = FileSourceMaker(paths=[str(path)]).iter_events()
    assert cand.formula == "LiFePO4" and cand.nsites == 28


def test_folder_and_glob_in_sorted_order(structure_files):
    tmp_path = structure_files["cif"].parent
    folder = list(FileSourceMaker(paths=[str(tmp_path)]).iter_events())
    assert len(folder) == 7
    paths = [e.provenance.file_path for e in folder]
    assert paths == sorted(paths)
    globbed = list(FileSourceMaker(paths=[str(tmp_path / "*.json"), str(tmp_path / "*.cif")]).iter_events())
    assert [e.formula for e in globbed] == ["NaCl", "KCl", "NaCl"]


BAD_FILES = {
    "garbage.cif": "data_x\n_this is not a cif\n loop_ nonsense",
    "empty.vasp": "",
    "no_cell.extxyz": "1\nProperties=species:S:1:pos:R:3\nH 0 0 0\n",
    "notes.json": '{"hello": "world"}',
    "broken.json": '{"@module": "pymatgen.core.structure", "@class": "Structure", "lattice": ',
    "POSCAR_bad": "title\n1.0\nnot numbers\n",
    "random.db": "this is not sqlite",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_is_named_and_others_go_on(tmp_path, structure_files, name):
    bad = tmp_path / name
    bad.write_text(BAD_FILES[name])
    events = list(FileSourceMaker(paths=[str(bad), str(structure_files["cif"])]).iter_events())
    assert isinstance(events[0], RejectedCandidate)
    assert events[0].reason is RejectionReason.UNPARSEABLE
    assert events[0].input_name == str(bad) and str(bad) in events[0].message
    assert isinstance(events[1], Candidate) and events[1].formula == "NaCl"


def test_missing_path_empty_folder_and_empty_glob(tmp_path):
    (tmp_path / "empty").mkdir()
    events = list(FileSourceMaker(paths=[str(tmp_path / "nope.cif"), str(tmp_path / "empty"),
                                         str(tmp_path / "*.cif")]).iter_events())
    assert [e.reason for e in events] == [RejectionReason.INVALID_INPUT] * 3
    assert "does not exist" in events[0].message
    assert "no structure files" in events[1].message
    assert "matches no files" in events[2].message


def test_partial_occupancy_is_flagged_unless_ordering_is_asked(tmp_path):
    disordered = Structure(Lattice.cubic(4.2), [{"Li": 0.5, "Na": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path = tmp_path / "lina.cif"
    disordered.to(filename=str(path))
    (flagged,) = FileSourceMaker(paths=[str(path)]).iter_events()
    assert flagged.reason is RejectionReason.PARTIAL_OCCUPANCY
    assert str(path) in flagged.message and "order_disordered=True" in flagged.message
    ordered = list(FileSourceMaker(paths=[str(path)], order_disordered=True, n_orderings=2).iter_events())
    assert ordered and all(isinstance(c, Candidate) and c.structure.is_ordered for c in ordered)
    # one Li0.5Na0.5 site needs a doubled cell to hold whole atoms
    assert all(c.structure.composition.as_dict() == {"Li": 1, "Na": 1, "Cl": 2} for c in ordered)
    assert ordered[0].provenance.ordering == "ewald_rank_0"


def test_file_candidates_pass_through_the_pipeline(structure_files):
    tmp_path = structure_files["cif"].parent
    out = generate_candidates([FileSourceMaker(paths=[str(tmp_path)])])
    # nacl.cif == list.json[0] and POSCAR == list.json[1] == two.extxyz[0]; one.db == two.extxyz[1]
    assert sorted(c.formula for c in out.candidates) == ["KCl", "MgO", "NaCl"]
    assert out.report.rejected_counts == {"duplicate": 4}
