"""Queries by hull (reference vs campaign) and by generation provenance, on documents made by the hull stage.

The documents go through the real path: HullMaker (with generation provenance) publishes
them to a candidates store, the campaign-wide builder adds the campaign hull, and the
queries (and the CLI's flags) select from that store, in memory and in an indexed SQLite file.
"""

import pytest
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure
from reference_data import shared_data_dir

from matris_flows.cli import _query_from_args, build_parser, main
from matris_flows.generation.schemas import Provenance, SourceMethod
from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.schemas import PotentialInfo, RelaxationDocument, RelaxSettings, RelaxStatus
from matris_flows.results.query import CandidateQuery, QueryError, query_candidates, where_path
from matris_flows.stores.backends import index_candidates
from matris_flows.stores.sqlite.store import SQLiteStore
from matris_flows.thermo.assess import assess_candidates
from matris_flows.thermo.campaign_hull import CampaignHullBuilder
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.references import LocalFileReferences

LFPO_PATH = shared_data_dir() / "mp_chemsys" / "Li-Fe-P-O.json.gz"


def relaxed(cid: str, structure: Structure, energy_per_atom: float, converged: bool = True) -> RelaxationDocument:
    spec = parse_potential("chgnet")
    return RelaxationDocument(
        candidate_id=cid,
        formula=structure.composition.reduced_formula,
        chemsys=structure.composition.chemical_system,
        nsites=len(structure),
        status=RelaxStatus.CONVERGED if converged else RelaxStatus.NOT_CONVERGED,
        input_structure=structure,
        structure=structure,
        energy=energy_per_atom * len(structure),
        energy_per_atom=energy_per_atom,
        engine="ase",
        potential=PotentialInfo(name=spec.name, kind=spec.kind.value, device="cpu", energy_convention=spec.energy_convention),
        settings=RelaxSettings(),
    )


def lifeo2_a() -> Structure:
    return Structure(Lattice.cubic(4.2), ["Li", "Fe", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]])


def lifeo2_b() -> Structure:
    """Another LiFeO2 arrangement (another space group): a competitor of lifeo2_a, not a duplicate."""
    return Structure(
        Lattice.tetragonal(3.6, 7.4), ["Li", "Fe", "O", "O"], [[0, 0, 0], [0, 0, 0.5], [0.5, 0.5, 0.25], [0.5, 0.5, 0.75]]
    )


def li2o() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.6), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])


PROVENANCE = {
    "low": Provenance(source=SourceMethod.SUBSTITUTION, parent_id="mp-19419", substitution={"Na+": "Li+"}),
    "high": Provenance(source=SourceMethod.PROTOTYPE, prototype="rocksalt", decoration={"A": "Li", "B": "Fe"}),
    "li2o": Provenance(source=SourceMethod.FILE, parent_id="inputs/li2o.cif", file_path="inputs/li2o.cif", file_index=0),
}


@pytest.fixture(scope="module")
def refs():
    return LocalFileReferences([LFPO_PATH])


@pytest.fixture(scope="module")
def hull_energies(refs):
    """MP hull energy (eV/atom, corrected scale) at the compositions of the candidates."""
    probes = [relaxed("a", lifeo2_a(), -7.0), relaxed("l", li2o(), -4.0)]
    out = assess_candidates(probes, refs, match_references=False)
    return {d.formula: d.corrected_energy_per_atom - d.e_above_hull for d in out}


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def candidates(request, tmp_path_factory, refs, hull_energies):
    """Three candidates published by the hull job, then the campaign-wide step, in one backend (read-only in tests)."""
    if request.param == "memory":
        store = MemoryStore(collection_name="candidates", key="candidate_id")
    else:
        path = tmp_path_factory.mktemp("sqlite") / "db.sqlite"
        store = SQLiteStore("candidates", database_path=str(path), key="candidate_id")
    e = hull_energies
    docs = [
        relaxed("low", lifeo2_a(), e["LiFeO2"] - 0.05),  # both LiFeO2 are below the MP hull...
        relaxed("high", lifeo2_b(), e["LiFeO2"] - 0.02),  # ...but this one is 30 meV/atom above the other
        relaxed("li2o", li2o(), e["Li2O"] + 0.08),
    ]
    job_store = JobStore(MemoryStore(), additional_stores={"candidates": store})
    hull = HullMaker(references=refs, campaign="q", campaign_hull=False)
    job = hull.make(docs, provenance=[PROVENANCE[d.candidate_id] for d in docs])
    run_locally(job, store=job_store, ensure_success=True)
    with job_store:
        index_candidates(store)
        CampaignHullBuilder(store, refs, campaign="q").build()
        yield store


def ids(store, **query) -> list[str]:
    return [d["candidate_id"] for d in query_candidates(store, CandidateQuery(**query))]


def cli_ids(store, *flags) -> list[str]:
    query = _query_from_args(build_parser().parse_args(["query", "campaign-dir", *flags]))
    return [d["candidate_id"] for d in query_candidates(store, query)]


def test_competing_candidates_both_reference_stable_only_one_campaign_stable(candidates):
    by_id = {d["candidate_id"]: d for d in query_candidates(candidates)}
    assert by_id["low"]["e_above_hull"] == pytest.approx(-0.05, abs=1e-6)
    assert by_id["high"]["e_above_hull"] == pytest.approx(-0.02, abs=1e-6)
    assert by_id["high"]["e_above_hull_campaign"] == pytest.approx(0.03, abs=1e-6)
    assert by_id["low"]["e_above_hull_campaign"] == pytest.approx(0.0, abs=1e-6)
    assert ids(candidates, stable_only=True) == ["low", "high"]
    assert ids(candidates, stable_campaign_only=True) == ["low"]
    assert ids(candidates, max_e_above_hull_campaign=0.05) == ["low", "high"]
    assert ids(candidates, max_e_above_hull_campaign=0.01) == ["low"]
    # the CLI: one switch per hull
    assert cli_ids(candidates, "--stable") == ["low", "high"]
    assert cli_ids(candidates, "--stable-campaign") == ["low"]
    assert cli_ids(candidates, "--stable", "--stable-campaign") == ["low"]
    assert cli_ids(candidates, "--max-e-above-hull-campaign", "0.01", "--sort", "e_above_hull_campaign") == ["low"]
    assert cli_ids(candidates, "--novel", "--stable-campaign") == ["low"]


def test_provenance_is_stored_and_queryable(candidates):
    by_id = {d["candidate_id"]: d for d in query_candidates(candidates)}
    assert by_id["low"]["provenance"]["substitution"] == {"Na+": "Li+"}
    assert by_id["li2o"]["provenance"]["file_path"] == "inputs/li2o.cif"
    assert by_id["li2o"]["matches_reference"] == "mp-1960"  # anti-fluorite Li2O: a known phase
    assert ids(candidates, novel_only=True) == ["low", "high"]
    assert ids(candidates, source="substitution") == ["low"]
    assert ids(candidates, source="prototype") == ["high"]
    assert ids(candidates, parent="mp-19419") == ["low"]
    assert ids(candidates, where={"prototype": "rocksalt"}) == ["high"]
    assert ids(candidates, where={"provenance.file_index": 0}) == ["li2o"]
    assert ids(candidates, where={"decoration.B": "Fe"}) == []  # dotted paths are taken as given
    assert ids(candidates, where={"provenance.decoration.B": "Fe"}) == ["high"]
    assert ids(candidates, where={"formula": "Li2O"}) == ["li2o"]
    assert cli_ids(candidates, "--source", "file") == ["li2o"]
    assert cli_ids(candidates, "--parent", "inputs/li2o.cif") == ["li2o"]
    assert cli_ids(candidates, "--where", "prototype=rocksalt", "--where", "campaign=q") == ["high"]
    assert cli_ids(candidates, "--where", "file_index=0") == ["li2o"]  # a JSON number, not the string "0"


def test_where_keys_are_checked():
    assert where_path("seed") == "provenance.seed"
    assert where_path("spacegroup") == "spacegroup"  # a candidate field wins over the provenance field
    assert where_path("relaxation.status") == "relaxation.status"
    for bad in ("", "$where", "a..b", "prov.$gt", "no_such_field"):
        with pytest.raises(ValueError):
            where_path(bad)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--where", "prototype"], "--where needs KEY=VALUE"),
        (["--where", "no_such_field=1"], "unknown field 'no_such_field'"),
        (["--source", "alchemy"], "source"),
    ],
)
def test_bad_query_flags_are_one_error_line(tmp_path, capsys, flags, message):
    with pytest.raises(QueryError, match=message if "--" in message else None):
        _query_from_args(build_parser().parse_args(["query", str(tmp_path), *flags]))
    assert main(["query", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
