"""The campaign spec: one YAML file, validated by pydantic (unknown keys and wrong types name the key)."""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from matris_flows.execution.profile import ExecutionProfile
from matris_flows.generation.filters import FilterSettings
from matris_flows.generation.pipeline import DedupSettings
from matris_flows.potentials.naming import DEFAULT_POTENTIAL, parse_potential
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.stores import StoreConfig, load_store_config

_STRICT = ConfigDict(extra="forbid")


class SpecError(ValueError):
    """A campaign spec that cannot be used; the message names the file and the key."""


class SubstitutionSource(BaseModel):
    """Ionic substitution (SAPS) from template structures."""

    model_config = _STRICT
    templates: list[str] = Field(description="Structure/entry files (JSON(.gz), CIF, POSCAR, ...) with templates.")
    threshold: float = Field(1e-3, gt=0, description="Minimum data-mined substitution probability.")
    max_substituted_species: int = Field(2, ge=1, description="At most this many species replaced at once.")
    allowed_elements: list[str] | None = Field(None, description="Only substitute in these elements.")
    max_per_template: int | None = Field(None, ge=1, description="Cap on candidates per template.")
    partial_fractions: list[float] = Field(default_factory=list, description="Partial substitution fractions of one site class.")
    max_templates: int | None = Field(None, ge=1, description="Use only the first N templates (smallest cells first).")
    max_template_atoms: int | None = Field(None, ge=1, description="Skip templates with more sites than this.")


class PrototypeSource(BaseModel):
    """Decorate common prototypes with the user's element lists."""

    model_config = _STRICT
    element_lists: list[list[str]] = Field(description="One element list per prototype site class.")
    prototypes: list[str] | None = Field(None, description="Prototype names (default: the whole library).")
    charge_balanced: bool = Field(True, description="Keep only charge-balanced compositions.")


class RandomSearchSource(BaseModel):
    """AIRSS-like random symmetric crystals with pyxtal."""

    model_config = _STRICT
    compositions: list[str] = Field(description="Formulas, e.g. ['NaCl', 'Li2O'].")
    space_groups: list[int] = Field(default_factory=lambda: list(range(2, 231)), description="Space groups to sample.")
    formula_units: list[int] = Field(default_factory=lambda: [1, 2, 4], description="Formula units per cell.")
    n_seeds: int = Field(1, ge=1, description="Random structures per (composition, space group, Z).")


class FileSource(BaseModel):
    """Candidates read from user files (CIF, POSCAR, extxyz, ASE db, pymatgen JSON; folders and globs)."""

    model_config = _STRICT
    paths: list[str] = Field(description="Files, folders or glob patterns.")
    order_disordered: bool = Field(False, description="Order partially occupied structures instead of flagging them.")


class GenerationSpec(BaseModel):
    """Where candidates come from and how they are cleaned."""

    model_config = _STRICT
    substitution: SubstitutionSource | None = None
    prototypes: PrototypeSource | None = None
    random_search: RandomSearchSource | None = None
    files: FileSource | None = None
    filters: FilterSettings = Field(default_factory=FilterSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    chunk_size: int = Field(200, ge=1, description="Candidates per relaxation job.")

    @model_validator(mode="after")
    def _needs_a_source(self):
        if not any((self.substitution, self.prototypes, self.random_search, self.files)):
            raise ValueError("generation needs at least one source: substitution, prototypes, random_search or files")
        return self


class PotentialSpecModel(BaseModel):
    """The interatomic potential and where it runs."""

    model_config = _STRICT
    name: str = Field(DEFAULT_POTENTIAL, description="MatRIS key, checkpoint path, chgnet, sevennet, hienet or ASE import path.")
    device: str = Field("auto", description="auto, cpu or cuda[:n].")
    options: dict = Field(default_factory=dict, description="Loader options (MatRIS mode, tf32, ...).")

    @model_validator(mode="after")
    def _known_name(self):
        parse_potential(self.name)
        return self


class ReferenceSpec(BaseModel):
    """Reference data for the hull."""

    model_config = _STRICT
    provider: Literal["local_files", "mp_api"] = Field(
        "local_files",
        description="Local entry files or the Materials Project API (cached in the campaign store). Potentials "
        "whose energies are not MP-compatible always get a campaign-internal hull instead.",
    )
    paths: list[str] | None = Field(None, description="Entry files for local_files (default: the shared MP data).")
    snapshot_date: str | None = Field(None, description="ISO date of the reference data, for provenance.")


class HullSpec(BaseModel):
    """Energy above hull settings."""

    model_config = _STRICT
    references: ReferenceSpec = Field(default_factory=ReferenceSpec)
    stability_threshold: float = Field(0.0, ge=0, description="is_stable when e_above_hull <= this, eV/atom.")


class ValidationSpec(BaseModel):
    """Optional DFT validation of the best candidates."""

    model_config = _STRICT
    enabled: bool = Field(False, description="Run DFT validation (off by default).")
    backend: Literal["gpaw", "vasp"] = Field("gpaw", description="gpaw (offline, consistent DFT hull) or vasp (MP settings).")
    top_k: int = Field(3, ge=1, description="Candidates per chemical system.")
    max_e_above_hull: float = Field(0.05, ge=0, description="Only candidates at most this far above the hull, eV/atom.")
    budget: int | None = Field(None, ge=1, description="Total number of DFT validations.")


class CampaignSpec(BaseModel):
    """A whole screening campaign."""

    model_config = _STRICT
    name: str = Field(description="Campaign name (also its directory name).", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    generation: GenerationSpec
    potential: PotentialSpecModel = Field(default_factory=PotentialSpecModel)
    relax: RelaxSettings = Field(default_factory=RelaxSettings)
    hull: HullSpec = Field(default_factory=HullSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    store: StoreConfig | str = Field(default_factory=StoreConfig, description="Store config, inline or a path to a stores/*.yaml file.")
    execution: ExecutionProfile = Field(default_factory=ExecutionProfile)

    def store_config(self, base: Path | None = None) -> StoreConfig:
        """The store configuration, loading it from a file when the spec names one."""
        if isinstance(self.store, StoreConfig):
            return self.store
        path = Path(self.store)
        return load_store_config(path if path.is_absolute() or base is None else base / path)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")


def check_spec_files(spec: CampaignSpec, source: str | Path = "the campaign spec") -> None:
    """Raise :class:`SpecError` when a file the run needs at once is missing.

    A ``potential.name`` that looks like a path (contains '/' or ends with .pth, .pt,
    .tar or .ckpt) must be an existing checkpoint: otherwise every relaxation would fail
    with the same error long after the campaign started. Reference and template files
    are not checked here: a missing one fails only its jobs, and ``resume`` reruns them.
    """
    name = spec.potential.name
    if "/" in name or name.lower().endswith(_CHECKPOINT_SUFFIXES):
        if not Path(name).expanduser().is_file():
            raise SpecError(
                f"campaign spec {str(source)!r}: potential.name {name!r} looks like a checkpoint file, but there is no such file"
            )


def load_spec(path: str | Path, *, check_files: bool = False) -> CampaignSpec:
    """Read and validate a YAML campaign spec; errors name the file and each bad key.

    With ``check_files`` (a run is about to start) the files the run needs at once must
    exist (:func:`check_spec_files`); reading a finished campaign never needs them.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"campaign spec {str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"campaign spec {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"campaign spec {str(path)!r} must be a mapping of keys to settings")
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"campaign spec {str(path)!r} is invalid:\n{_describe(exc)}") from None
    if check_files:
        check_spec_files(spec, path)
    return spec
