"""A bad structure costs only itself: invalid structures, lying POSCARs, and files as work units by content."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from jobflow import Flow, run_locally
from monty.serialization import dumpfn
from pymatgen.core import DummySpecies, Lattice, Structure

from matris_flows.core.symmetry import symmetry
from matris_flows.core.validity import structure_problem
from matris_flows.generation.filters import FilterSettings, check_structure
from matris_flows.generation.jobs import FileSourceMaker, ShardedGenerationMaker
from matris_flows.generation.pipeline import generate_candidates
from matris_flows.generation.schemas import Candidate, GenerationShard, RejectedCandidate, RejectionReason


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _with_site_dict(structure: Structure, index: int, **site) -> Structure:
    data = structure.as_dict()
    data["sites"][index].update(site)
    data["sites"][index].pop("xyz", None)
    return Structure.from_dict(data)


def _write_nan_json(path):
    """A pymatgen JSON file whose first site sits at abc=[NaN, 0.5, 0] (JSON's NaN literal, as json.dump writes it)."""
    data = _nacl().as_dict()
    data["sites"][0]["abc"] = [float("nan"), 0.5, 0.0]
    data["sites"][0].pop("xyz", None)
    path.write_text(json.dumps(data))
    return path


def _good_folder(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    _nacl().to(filename=str(folder / "nacl.cif"))
    Structure(Lattice.cubic(3.8), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(folder / "POSCAR"), fmt="poscar")
    dumpfn(Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]), folder / "mgo.json")
    return folder


INVALID = {
    "nan coordinate": (lambda: _with_site_dict(_nacl(), 0, abc=[float("nan"), 0.5, 0.0]), "non-finite coordinates at site 0"),
    "infinite lattice": (lambda: Structure(Lattice([[np.inf, 0, 0], [0, 4, 0], [0, 0, 4]]), ["Na"], [[0, 0, 0]]), "non-finite lattice"),
    "coplanar lattice": (lambda: Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0]]), ["Na"], [[0, 0, 0]]), "singular lattice"),
    "flat cell": (lambda: Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 1e-3]]), ["Na"], [[0, 0, 0]]), "degenerate cell"),
    "huge cell": (lambda: Structure(Lattice.orthorhombic(4, 4, 2000), ["Na"], [[0, 0, 0]]), "longer than 1000"),
    "far-away site": (lambda: Structure(Lattice.cubic(4), ["Na"], [[1e6, 0, 0]]), "far outside the cell"),
    "dummy species": (
        lambda: Structure(Lattice.cubic(4), [DummySpecies("X"), "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "not a chemical element"
    ),
    "vacancy": (lambda: _with_site_dict(_nacl(), 1, species=[], abc=[0.5, 0.5, 0.5]), "site 1 is empty"),
    "no sites": (lambda: Structure(Lattice.cubic(4), [], []), "no sites"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_structures_are_rejected_first_with_their_reason(case):
    build, reason = INVALID[case]
    structure = build()
    assert reason in structure_problem(structure)
    # the first filter: before density (a zero volume divides by zero) or the neighbour search
    rejected, message = check_structure(structure, FilterSettings(), supported_elements={"Na"})
    assert rejected is RejectionReason.INVALID_STRUCTURE and reason in message


def test_real_structures_are_valid(nacl):
    assert structure_problem(nacl) is None
    assert structure_problem(Structure(Lattice.cubic(4.0), [{"Li": 0.5, "Na": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])) is None
    # a skewed, unreduced basis of a fine lattice (fcc Cu with 10 Å vectors) is a crystal, not a degenerate cell
    fcc = Lattice([[0, 1.805, 1.805], [1.805, 0, 1.805], [1.805, 1.805, 0]])
    skewed = Lattice(np.array([[1, 0, 0], [3, 1, 0], [0, 3, 1]]) @ fcc.matrix)
    assert structure_problem(Structure(skewed, ["Cu"], [[0, 0, 0]])) is None


def test_symmetry_refuses_non_finite_input_with_an_exception():
    with pytest.raises(ValueError, match="non-finite coordinates"):
        symmetry(_with_site_dict(_nacl(), 0, abc=[float("nan"), 0.5, 0.0]))


def test_a_nan_file_among_good_files_is_rejected_by_name_and_the_others_screened(tmp_path):
    folder = _good_folder(tmp_path)
    bad = _write_nan_json(folder / "broken.json")
    out = generate_candidates([FileSourceMaker(paths=[str(folder)])])
    assert sorted(c.formula for c in out.candidates) == ["KCl", "MgO", "NaCl"]
    (rejected,) = out.report.rejected
    assert rejected.reason is RejectionReason.INVALID_STRUCTURE and out.report.rejected_counts == {"invalid_structure": 1}
    assert rejected.input_name == f"{bad}#0" and str(bad) in rejected.message and "non-finite coordinates" in rejected.message
    assert rejected.structure is None  # NaN is kept out of the report documents


def test_the_crash_risk_is_gone(tmp_path):
    """In a child process (a segfault there cannot take pytest down): the NaN file no longer reaches spglib.

    spglib itself still segfaults on the same numbers, which is what the guard is for.
    """
    folder = _good_folder(tmp_path)
    _write_nan_json(folder / "broken.json")
    screen = textwrap.dedent(f"""
        from matris_flows.generation.jobs import FileSourceMaker
        from matris_flows.generation.pipeline import generate_candidates
        out = generate_candidates([FileSourceMaker(paths=[{str(folder)!r}])])
        print(out.report.n_accepted, out.report.rejected_counts)
    """)
    raw = textwrap.dedent(f"""
        import spglib
        from matris_flows.generation.files import read_structures
        (s,) = read_structures({str(folder / "broken.json")!r})
        spglib.get_symmetry_dataset((s.lattice.matrix, s.frac_coords, [11, 17]), symprec=0.1)
    """)
    env = {"OMP_NUM_THREADS": "1", "PATH": ""}
    screened = subprocess.run([sys.executable, "-c", screen], capture_output=True, text=True, timeout=300, env=env)
    assert screened.returncode == 0, screened.stderr[-2000:]
    assert screened.stdout.split()[0] == "3" and "invalid_structure" in screened.stdout
    unguarded = subprocess.run([sys.executable, "-c", raw], capture_output=True, text=True, timeout=300, env=env)
    assert unguarded.returncode != 0  # SIGSEGV today; any failure shows the numbers are poison for native code


POSCAR_HEAD = "NaCl\n1.0\n5.64 0 0\n0 5.64 0\n0 0 5.64\nNa Cl\n{counts}\nDirect\n"
SITES = ["0 0 0", "0.5 0.5 0.5", "0.5 0 0", "0 0.5 0"]


@pytest.mark.parametrize(("counts", "n_lines", "says"), [
    ("1 1", 3, "declares 2 atoms (counts 1 1) but lists 3 coordinate lines"),  # pymatgen reads 2 of them, silently
    ("2 2", 3, "declares 4 atoms (counts 2 2) but lists 3 coordinate lines"),
])
def test_a_poscar_whose_counts_disagree_with_its_coordinates_is_rejected(tmp_path, counts, n_lines, says):
    path = tmp_path / "POSCAR_lying"
    path.write_text(POSCAR_HEAD.format(counts=counts) + "\n".join(SITES[:n_lines]) + "\n")
    events = list(FileSourceMaker(paths=[str(path), str(tmp_path / "*.cif")]).iter_events())
    assert isinstance(events[0], RejectedCandidate) and events[0].reason is RejectionReason.UNPARSEABLE
    assert events[0].input_name == str(path) and str(path) in events[0].message and says in events[0].message


def test_poscars_with_velocities_selective_dynamics_or_no_species_line(tmp_path):
    from pymatgen.io.vasp import Poscar

    nacl = _nacl()
    with_velocities = tmp_path / "CONTCAR"
    with_velocities.write_text(Poscar(nacl, velocities=[[0.1, 0, 0], [0, 0.1, 0]]).get_str())
    selective = tmp_path / "selective.vasp"
    selective.write_text(Poscar(nacl, selective_dynamics=[[True] * 3, [False] * 3]).get_str())
    vasp4 = tmp_path / "vasp4.vasp"
    vasp4.write_text("NaCl\n1.0\n5.64 0 0\n0 5.64 0\n0 0 5.64\n1 1\nDirect\n0 0 0\n0.5 0.5 0.5\n")
    velocities_read, selective_read, no_species = (
        list(FileSourceMaker(paths=[str(p)]).iter_events()) for p in (with_velocities, selective, vasp4)
    )
    assert [c.formula for c in velocities_read + selective_read] == ["NaCl", "NaCl"]
    (rejected,) = no_species
    # pymatgen would call the two species H and He
    assert rejected.reason is RejectionReason.UNPARSEABLE and "names no elements" in rejected.message


def test_shards_process_the_files_they_were_planned_with(tmp_path):
    """Files deleted or added after planning shift nothing: each shard job holds its own (path, digest) units."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    elements = ["Cu", "Ni", "Pd", "Ag", "Au", "Pt"]
    for k, element in enumerate(elements):
        Structure(Lattice.cubic(3.6 + 0.05 * k), [element] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]).to(
            filename=str(folder / f"s{k}.cif")
        )
    source = FileSourceMaker(paths=[str(folder)])
    ids = {e.provenance.file_path: e.candidate_id for e in source.iter_events()}
    maker = ShardedGenerationMaker(sources=[source], chunk_size=1)
    plan, shard_units = maker.plan()
    assert plan.n_shards == 6 and [len(u) for u in shard_units] == [1] * 6
    assert shard_units[0] == [[0, [str(folder / "s0.cif"), source.work_units()[0][1], None]]]
    json.dumps(shard_units)  # job arguments: plain JSON

    def run_shard(index) -> GenerationShard:
        shard = maker.make_shard(plan, index, units=shard_units[index])
        responses = run_locally(Flow([shard]), ensure_success=True)
        return GenerationShard.model_validate(responses[shard.uuid][1].output)

    done = [run_shard(0), run_shard(1)]
    (folder / "s0.cif").unlink()  # in a finished shard
    (folder / "s4.cif").unlink()  # in a shard still to run
    Structure(Lattice.cubic(4.0), ["Al"] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]).to(
        filename=str(folder / "a_new.cif")  # sorts first: would shift every position by one
    )
    (folder / "s5.cif").write_text((folder / "s5.cif").read_text().replace("Pt", "Au"))  # edited
    done += [run_shard(index) for index in range(2, 6)]
    generated = [i for shard in done for i in _shard_ids(shard)]
    assert generated == [ids[str(folder / f"s{k}.cif")] for k in (0, 1, 2, 3)]  # each once, in plan order
    reasons = {r.input_name: r.message for shard in done for r in shard.report.rejected}
    assert reasons.keys() == {str(folder / "s4.cif"), str(folder / "s5.cif")}
    assert "no longer exists" in reasons[str(folder / "s4.cif")]
    assert "changed since the campaign was planned" in reasons[str(folder / "s5.cif")]
    assert all(r.reason is RejectionReason.INVALID_INPUT for shard in done for r in shard.report.rejected)


def _shard_ids(shard: GenerationShard) -> list[str]:
    return [i for chunk in shard.chunks for i in chunk.candidate_ids]


def test_other_sources_keep_their_positions_as_units():
    from matris_flows.generation.jobs import PrototypeMaker, RandomSearchMaker

    prototypes = PrototypeMaker(element_lists=[["Li", "Na"], ["Cl"]], prototypes=["rocksalt", "cscl"])
    random = RandomSearchMaker(compositions=["NaCl", "Xx2"], space_groups=[225], formula_units=[4])
    maker = ShardedGenerationMaker(sources=[prototypes, random], chunk_size=2)
    plan, shard_units = maker.plan()
    flat = [unit for units in shard_units for unit in units]
    assert flat == [[0, 0], [0, 1]] + [[1, k] for k in range(len(random.work_units()))]
    resolved = maker.resolve_units(flat)
    assert [unit for _, unit in resolved[:2]] == ["rocksalt", "cscl"]
    events = [e for source, unit in resolved for e in source.run_unit(unit)]
    assert any(isinstance(e, Candidate) for e in events) and any(isinstance(e, RejectedCandidate) for e in events)


def test_a_unit_that_crashes_or_hangs_costs_only_itself():
    """A generation shard whose units segfault or hang the generating process: those units are named, the rest generated."""
    from matris_flows.testing.synthetic import CrashingSourceMaker, SyntheticSourceMaker

    def run_shard(source) -> GenerationShard:
        maker = ShardedGenerationMaker(sources=[source], chunk_size=50, shards_per_worker=1, unit_timeout_s=3)
        plan, shard_units = maker.plan()
        assert plan.n_shards == 1
        shard = maker.make_shard(plan, 0, units=shard_units[0])
        responses = run_locally(Flow([shard]), ensure_success=True)
        return GenerationShard.model_validate(responses[shard.uuid][1].output)

    source = CrashingSourceMaker(n=8, crash_units=[2, 5], hang_units=[6])
    poisoned = {e.candidate_id for unit in (2, 5, 6) for e in SyntheticSourceMaker.run_unit(source, unit)}
    clean = _shard_ids(run_shard(SyntheticSourceMaker(n=8)))
    output = run_shard(source)
    assert _shard_ids(output) == [i for i in clean if i not in poisoned] and len(clean) - len(_shard_ids(output)) == 3
    crashed = {r.input_name: r.message for r in output.report.rejected if r.reason is RejectionReason.CRASHED}
    assert set(crashed) == {f"crashing synthetic candidates unit {k}" for k in (2, 5, 6)}
    assert "signal 11 (SIGSEGV)" in crashed["crashing synthetic candidates unit 2"]
    assert "did not finish within 3 s" in crashed["crashing synthetic candidates unit 6"]
