"""Relaxation defaults per potential: the settings each model was benchmarked with, and where that is written.

A converged relaxation means "forces below fmax", and the right fmax is the one a model's
hull accuracy was measured with: MatRIS-10M-OAM's Matbench Discovery run used 0.02 eV/Å,
most others 0.05. A spec's ``relax:`` values override this table; whatever was filled in
from it is named in ``RelaxSettings.defaults_source``, which every relaxation document
carries.
"""

from dataclasses import dataclass

from matris_flows.potentials.naming import PotentialKind, parse_potential
from matris_flows.relax.schemas import RelaxSettings

_MBD = "Matbench Discovery model card janosh/matbench-discovery"


@dataclass(frozen=True)
class RelaxDefaults:
    """Benchmark relaxation settings of one potential."""

    fmax: float
    """Force (and cell-force) convergence threshold, eV/Å."""
    max_steps: int
    """Optimizer step budget."""
    source: str
    """Where these numbers come from."""
    optimizer: str = "FIRE"
    """ASE optimizer of the benchmark (every entry so far: FIRE)."""
    cell_filter: str = "FrechetCellFilter"
    """ASE cell filter of the benchmark (every entry so far: FrechetCellFilter)."""


# MatRIS keys by name, the other named potentials by kind. Optimizer and cell filter are FIRE +
# FrechetCellFilter in every card below (RelaxSettings' own defaults).
POTENTIAL_DEFAULTS: dict[str, RelaxDefaults] = {
    "matris_10m_oam": RelaxDefaults(
        0.02, 500, f"{_MBD} models/matris/matris-10m-oam.yml (max_force 0.02, max_steps 500, FIRE, FrechetCellFilter)"
    ),
    "matris_10m_mp": RelaxDefaults(
        0.05, 500, f"{_MBD} models/matris/matris-10m-mp.yml (max_force 0.05, max_steps 500, FIRE, FrechetCellFilter)"
    ),
    PotentialKind.CHGNET.value: RelaxDefaults(
        0.05,
        500,
        f"{_MBD} models/chgnet/chgnet-0.3.0.yml (max_steps 500, FIRE, FrechetCellFilter) and its run script "
        "models/chgnet/test_chgnet_discovery.py (fmax 0.05)",
    ),
    PotentialKind.SEVENNET.value: RelaxDefaults(
        0.05, 500, f"{_MBD} models/sevennet/sevennet-0.yml (max_force 0.05, max_steps 500, FIRE)"
    ),
    # hienet.yml at janosh/matbench-discovery commit 8fc4f70f; its run script
    # models/hienet/test_hienet_discovery.py sets ase_filter "frechet" (FrechetCellFilter).
    PotentialKind.HIENET.value: RelaxDefaults(
        0.05, 500, f"{_MBD} models/hienet/hienet.yml (max_force 0.05, max_steps 500, FIRE; frechet cell filter)"
    ),
}

FALLBACK_DEFAULTS = RelaxDefaults(
    0.05, 500, "matris-flows default for potentials without a benchmark card (fmax 0.05, 500 steps, FIRE, FrechetCellFilter)"
)


def relax_defaults(potential: str) -> RelaxDefaults:
    """The benchmark settings of the potential named ``potential`` (the fallback when it has none)."""
    spec = parse_potential(potential)
    key = spec.name if spec.kind is PotentialKind.MATRIS_KEY else spec.kind.value
    return POTENTIAL_DEFAULTS.get(key, FALLBACK_DEFAULTS)


def resolve_settings(settings: RelaxSettings | None, potential: str) -> RelaxSettings:
    """``settings`` with every unset value (``fmax``, ``max_steps``) taken from ``potential``'s row of the table.

    Idempotent: settings already resolved (or fully explicit) come back unchanged.
    """
    settings = settings or RelaxSettings()
    missing = [name for name in ("fmax", "max_steps") if getattr(settings, name) is None]
    if not missing:
        return settings
    defaults = relax_defaults(potential)
    source = f"{', '.join(missing)} for {parse_potential(potential).name} from {defaults.source}"
    return settings.model_copy(update={**{name: getattr(defaults, name) for name in missing}, "defaults_source": source})


# Default per-structure limit (RelaxSettings.timeout_s): a floor for model loading and
# short runs, plus a per atom-step allowance ~3x MatRIS-10M's measured 0.06 s on one CPU core.
_TIMEOUT_FLOOR_S = 300.0
_TIMEOUT_PER_ATOM_STEP_S = 0.2


def relax_timeout(settings: RelaxSettings, n_atoms: int, n_structures: int = 1) -> float:
    """Wall-time limit of relaxing ``n_structures`` structures of ``n_atoms`` atoms in all in shared model calls.

    ``RelaxSettings.timeout_s`` is per structure: structures that share calls may take as long
    as their members in turn. Unset, the default grows with the atoms.
    """
    if settings.timeout_s is not None:
        return settings.timeout_s * max(1, n_structures)
    return _TIMEOUT_FLOOR_S + _TIMEOUT_PER_ATOM_STEP_S * n_atoms * (settings.max_steps or 500)
