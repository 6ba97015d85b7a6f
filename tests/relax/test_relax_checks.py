"""Per-potential relaxation defaults and post-relaxation sanity: overlaps, collapse, the converged flag."""

import pytest
from calculators import CollapsingCalculator
from pymatgen.core import Lattice, Structure

from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.checks import collapse_problem, input_problem
from matris_flows.relax.defaults import FALLBACK_DEFAULTS, relax_defaults, resolve_settings
from matris_flows.relax.engine import relax_structures
from matris_flows.relax.schemas import RelaxSettings, RelaxStatus


def copper(a=3.7):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Cu"], [[0, 0, 0]])


def pair(distance, species=("Cu", "Cu"), box=8.0):
    return Structure(Lattice.cubic(box), list(species), [[0, 0, 0], [distance, 0, 0]], coords_are_cartesian=True)


@pytest.mark.parametrize(
    ("name", "fmax", "card"),
    [
        ("matris_10m_oam", 0.02, "models/matris/matris-10m-oam.yml"),
        ("matris_10m_mp", 0.05, "models/matris/matris-10m-mp.yml"),
        ("chgnet", 0.05, "models/chgnet/"),
        ("sevennet", 0.05, "models/sevennet/sevennet-0.yml"),
        ("hienet", 0.05, "models/hienet/hienet.yml"),
    ],
)
def test_each_potential_has_its_benchmark_defaults_with_their_source(name, fmax, card):
    defaults = relax_defaults(name)
    assert defaults.fmax == fmax and defaults.max_steps == 500
    assert defaults.optimizer == "FIRE" and defaults.cell_filter == "FrechetCellFilter"
    assert card in defaults.source


def test_potentials_without_a_card_get_the_fallback():
    assert relax_defaults("ase.calculators.emt:EMT") is FALLBACK_DEFAULTS
    assert relax_defaults("matris_10m_omat") is FALLBACK_DEFAULTS
    assert relax_defaults("/some/where/model.pth.tar") is FALLBACK_DEFAULTS


def test_explicit_settings_override_the_table_and_the_rest_is_recorded():
    resolved = resolve_settings(RelaxSettings(), "matris_10m_oam")
    assert (resolved.fmax, resolved.max_steps) == (0.02, 500)
    assert "fmax, max_steps for matris_10m_oam" in resolved.defaults_source and "matris-10m-oam.yml" in resolved.defaults_source
    assert resolve_settings(resolved, "chgnet") == resolved  # idempotent: resolved values are explicit now
    partial = resolve_settings(RelaxSettings(fmax=0.1), "matris_10m_oam")
    assert (partial.fmax, partial.max_steps) == (0.1, 500) and partial.defaults_source.startswith("max_steps for")
    explicit = RelaxSettings(fmax=0.1, max_steps=7)
    assert resolve_settings(explicit, "matris_10m_oam") == explicit and explicit.defaults_source is None


def test_relaxation_documents_record_the_effective_settings():
    # What the MatRIS-10M-OAM benchmark used, whatever calculator stands in for it here.
    emt = load_potential("ase.calculators.emt:EMT").calculator
    stand_in = Potential(spec=parse_potential("matris_10m_oam"), calculator=emt, device="cpu")
    [document] = relax_structures([copper()], stand_in, RelaxSettings(engine="ase"))
    assert document.settings.fmax == 0.02 and document.settings.max_steps == 500
    assert "matris-10m-oam.yml" in document.settings.defaults_source
    assert document.summary().settings.fmax == 0.02
    [emt] = relax_structures([copper()], load_potential("ase.calculators.emt:EMT"), RelaxSettings(max_steps=3))
    assert emt.settings.fmax == 0.05 and emt.settings.max_steps == 3


def test_min_distance_above_one_angstrom_triggers():
    settings = RelaxSettings(min_distance=1.5)
    problem = input_problem(pair(1.2), [], settings)
    assert problem == "overlapping atoms: closest pair 1.200 Å < 1.5 Å"
    assert input_problem(pair(1.6), [], settings) is None
    # One atom overlapping its own periodic image counts too.
    assert "overlapping" in input_problem(Structure(Lattice.cubic(1.2), ["Cu"], [[0, 0, 0]]), [], settings)


def test_collapse_is_measured_against_covalent_radii():
    settings = RelaxSettings()
    # Cu covalent radius 1.32 Å: collapsed below 0.5 x 2.64 = 1.32 Å.
    assert collapse_problem(pair(2.5), settings) is None
    problem = collapse_problem(pair(1.0), settings)
    assert problem.startswith("collapsed structure: Cu-Cu (sites 0, 1) 1.000 Å apart") and "2.64 Å" in problem
    # H-H at 0.74 Å is a real bond (0.5 x 0.62 Å = 0.31 Å); 0.2 Å is not.
    assert collapse_problem(pair(0.74, ("H", "H")), settings) is None
    assert "H-H" in collapse_problem(pair(0.2, ("H", "H")), settings)
    assert collapse_problem(pair(1.0), RelaxSettings(collapse_fraction=0.3)) is None


def test_a_relaxation_that_collapses_is_failed_with_the_reason():
    collapsing = Potential(spec=parse_potential("ase.calculators.emt:EMT"), calculator=CollapsingCalculator(), device="cpu")
    [document] = relax_structures([pair(2.6)], collapsing, RelaxSettings(relax_cell=False, max_steps=300))
    assert document.status is RelaxStatus.FAILED and document.converged is False
    assert document.failure_reason.startswith("collapsed structure: Cu-Cu")
    assert document.energy is None


def test_converged_flag_on_documents_and_summaries():
    emt = load_potential("ase.calculators.emt:EMT")
    rattled = copper(3.8)
    rattled.perturb(0.1)
    [done] = relax_structures([rattled], emt, RelaxSettings(max_steps=500))
    [short] = relax_structures([rattled], emt, RelaxSettings(max_steps=2))
    assert done.status is RelaxStatus.CONVERGED and done.converged is True and done.summary().converged is True
    assert short.status is RelaxStatus.NOT_CONVERGED and short.converged is False and short.summary().converged is False
    assert short.summary().model_dump()["converged"] is False  # stored and queryable as relaxation.converged
