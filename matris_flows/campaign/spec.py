"""The campaign spec: one YAML file, validated by pydantic (unknown keys and wrong types name the key)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from matris_flows.consensus.settings import ConsensusSettings
from matris_flows.execution.profile import ExecutionProfile
from matris_flows.generation.filters import FilterSettings
from matris_flows.generation.pipeline import DedupSettings
from matris_flows.generation.source_settings import FileSource, PrototypeSource, RandomSearchSource, SubstitutionSource
from matris_flows.potentials.naming import DEFAULT_POTENTIAL, check_import_allowed, parse_potential
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.stores.config import StoreConfig, load_store_config

_STRICT = ConfigDict(extra="forbid")


class SpecError(ValueError):
    """A campaign spec that cannot be used; the message names the file and the key."""


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
    options: dict = Field(
        default_factory=dict,
        description="Loader options (MatRIS mode, tf32, fast_cpu_kernels: opt-in CPU kernels, same numbers, ~3x faster; CHGNet "
        "model_version; SevenNet model, modal; ASE calculator_kwargs). "
        "The ones that choose weights also choose the energy convention.",
    )
    allow_import: bool = Field(
        False,
        description="Allow an import-path potential outside the allowlist (ase.calculators.* and calculators registered "
        "under the 'matris_flows.potentials' entry point). A spec with it is code: it runs what it names on every worker.",
    )

    @model_validator(mode="after")
    def _known_name(self):
        parse_potential(self.name, self.options)
        check_import_allowed(self.name, self.allow_import, self.options)  # imports nothing outside ASE's own modules
        return self


class ReferenceSpec(BaseModel):
    """Reference data for the hull."""

    model_config = _STRICT
    provider: Literal["local_files", "mp_api"] = Field(
        "local_files",
        description="Local entry files or the Materials Project API (cached in the campaign store). Potentials "
        "whose energies are not MP-compatible always get a campaign-internal hull instead.",
    )
    paths: list[str] | None = Field(
        None,
        description="Entry files for local_files ('package:<file>' names a packaged file). Default: the MP Li-Fe-O data "
        "shipped in the package; other systems need their own files.",
    )
    snapshot_date: str | None = Field(None, description="ISO date of the reference data, for provenance.")
    internal_window_ev: float = Field(
        0.1,
        ge=0,
        description="Potentials not on the MP energy scale: the MP phases up to this far above the MP hull (eV/atom, "
        "elements included) are relaxed with the campaign's potential and settings and make its consistent hull.",
    )
    internal_chemsys: list[str] | None = Field(
        None,
        description="Chemical systems of that consistent hull (default: the systems the reference files cover, "
        "restricted to the elements of prototype/random-search sources).",
    )
    internal_cache: bool = Field(
        True, description="Reuse (and keep) those relaxed phases in the store's consistent_references collection."
    )


class HullSpec(BaseModel):
    """Energy above hull settings."""

    model_config = _STRICT
    references: ReferenceSpec = Field(default_factory=ReferenceSpec)
    stability_threshold: float = Field(0.0, ge=0, description="is_stable when e_above_hull <= this, eV/atom.")
    allow_unconverged: bool = Field(
        False,
        description="Let unconverged relaxations (relaxation.converged false) be called stable and be selected for DFT "
        "validation. Off: they are reported with their numbers but never stable.",
    )


class ValidationSpec(BaseModel):
    """Optional DFT validation of the best candidates."""

    model_config = _STRICT
    enabled: bool = Field(False, description="Run DFT validation (off by default).")
    backend: Literal["gpaw", "vasp"] = Field("gpaw", description="gpaw (offline, consistent DFT hull) or vasp (MP settings).")
    top_k: int = Field(3, ge=1, description="Candidates per chemical system.")
    max_e_above_hull: float = Field(0.05, ge=0, description="Only candidates at most this far above the hull, eV/atom.")
    budget: int | None = Field(None, ge=1, description="Total number of DFT validations.")
    allow_unconverged: bool = Field(False, description="Also validate candidates whose MLIP relaxation did not converge.")
    acquisition: Literal["primary", "consensus"] = Field(
        "primary",
        description="Rank candidates by the primary model's e_above_hull, or by the consensus value (needs a consensus "
        "section; candidates without one keep the primary's).",
    )
    explore_fraction: float = Field(
        0.0, ge=0, le=1,
        description="Share of the picks for the candidates the models disagree on most (largest consensus_spread) among "
        "those near the hull that ranking left out.",
    )
    reference_window: float = Field(
        0.1, ge=0, description="gpaw: MP reference phases within this of the MP hull are recomputed, eV/atom (elements included)."
    )
    stable_tolerance: float = Field(
        0.005, gt=0, description="gpaw: DFT e_above_hull at or below this counts as confirmed stable, eV/atom (numerical noise)."
    )


class CampaignSpec(BaseModel):
    """A whole screening campaign."""

    model_config = _STRICT
    name: str = Field(description="Campaign name (also its directory name).", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    generation: GenerationSpec
    potential: PotentialSpecModel = Field(default_factory=PotentialSpecModel)
    relax: RelaxSettings = Field(
        default_factory=RelaxSettings,
        description="Relaxation settings; fmax and max_steps not given here are the potential's benchmark values "
        "(matris_flows/relax/defaults.py), filled in when the spec is loaded and recorded in every document.",
    )
    hull: HullSpec = Field(default_factory=HullSpec)
    consensus: ConsensusSettings | None = Field(
        None, description="Second opinions on the shortlist before validation (off when absent): potentials, mode, rule."
    )
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    store: StoreConfig | str = Field(default_factory=StoreConfig, description="Store config, inline or a path to a stores/*.yaml file.")
    execution: ExecutionProfile = Field(default_factory=ExecutionProfile)

    @model_validator(mode="after")
    def _consensus_needed(self):
        if self.validation.enabled and self.consensus is None and (
            self.validation.acquisition == "consensus" or self.validation.explore_fraction > 0
        ):
            raise ValueError("validation.acquisition 'consensus' and explore_fraction need a consensus section")
        if self.consensus is not None:
            primary = parse_potential(self.potential.name, self.potential.options)
            for opinion in self.consensus.potentials:
                same = parse_potential(opinion.name, opinion.options)
                if (same.name, same.variant) == (primary.name, primary.variant) and self.consensus.mode == "single_point":
                    raise ValueError(f"consensus.potentials: {opinion.label} is the campaign's potential (a single point "
                                     "at its own relaxed structure adds nothing)")
        return self

    @model_validator(mode="after")
    def _effective_relax_settings(self):
        # The spec's values win; the rest come from the potential's row of the defaults table.
        self.relax = resolve_settings(self.relax, self.potential.name)
        return self

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
    .tar or .ckpt) must be an existing checkpoint, and every ``hull.references.paths``
    file must exist: otherwise every relaxation or hull job would fail with the same
    error long after the campaign started. Template and candidate files are not checked
    here: a missing one fails only its generation job, and ``resume`` reruns it.
    """
    from matris_flows.core.data_paths import resolve_data_path

    name = spec.potential.name
    if "/" in name or name.lower().endswith(_CHECKPOINT_SUFFIXES):
        if not Path(name).expanduser().is_file():
            raise SpecError(
                f"campaign spec {str(source)!r}: potential.name {name!r} looks like a checkpoint file, but there is no such file"
            )
    references = spec.hull.references
    if references.provider == "local_files":
        for path in references.paths or []:
            try:
                found = resolve_data_path(path).is_file()  # where the hull jobs will look (package: names in the package)
            except (OSError, ValueError):
                found = False
            if not found:
                raise SpecError(f"campaign spec {str(source)!r}: hull.references.paths: there is no file {path!r}")


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
    return spec_from_dict(raw, source=path, check_files=check_files)


def spec_from_dict(data: Mapping[str, Any], *, source: str | Path = "<dict>", check_files: bool = False) -> CampaignSpec:
    """Validate a campaign spec given as a mapping (a YAML file's content, or a dict built in Python).

    The same rules and messages as :func:`load_spec`: a :class:`SpecError` names ``source``
    and each bad key. ``check_files`` as for :func:`load_spec`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"campaign spec {str(source)!r} must be a mapping of keys to settings")
    try:
        spec = CampaignSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(f"campaign spec {str(source)!r} is invalid:\n{_describe(exc)}") from None
    if check_files:
        check_spec_files(spec, source)
    return spec


SpecLike = CampaignSpec | Mapping[str, Any] | str | Path
"""A campaign spec as the Python API takes it: validated, a mapping, or the path of a YAML file."""


def spec_and_path(spec: SpecLike, *, check_files: bool = False) -> tuple[CampaignSpec, Path | None]:
    """``spec`` validated, and the file it was read from (None unless a path was given).

    Files named in a spec (store config, references, candidate files) are relative to that
    file, or to the working directory for a spec given in Python.
    """
    if isinstance(spec, CampaignSpec):
        if check_files:
            check_spec_files(spec)
        return spec, None
    if isinstance(spec, Mapping):
        return spec_from_dict(spec, check_files=check_files), None
    return load_spec(spec, check_files=check_files), Path(spec)
