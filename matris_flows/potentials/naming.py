"""One way to name a potential, used by the spec, the CLI and the Python API.

A name is one of:

* a MatRIS model key (``matris_10m_oam`` — the default — ``matris_10m_mp``,
  ``matris_10m_omat``, ``matris_4m_matpes_*``);
* a path to a local MatRIS checkpoint (``{"config": ..., "state_dict": ...}``);
* ``chgnet``, ``sevennet`` or ``hienet`` (optional potentials behind the same interface);
* an ASE calculator by import path, ``package.module:ClassName`` (or ``package.module.ClassName``).
"""

from enum import StrEnum
from pathlib import Path

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

    @property
    def is_matris(self) -> bool:
        """True for MatRIS keys and MatRIS checkpoint files."""
        return self.kind in (PotentialKind.MATRIS_KEY, PotentialKind.MATRIS_CHECKPOINT)


def parse_potential(name: str) -> PotentialSpec:
    """Parse a potential name; raise ``ValueError`` naming the valid forms if it is none."""
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


class PotentialInfo(BaseModel):
    """Provenance of the potential that produced a result."""

    name: str = Field(description="Potential name as given (MatRIS key, checkpoint path, chgnet, import path).")
    kind: str = Field(description="How it was loaded (matris_key, matris_checkpoint, chgnet, ase, ...).")
    checkpoint_path: str | None = Field(None, description="Weights file that was loaded, if any.")
    checkpoint_sha256: str | None = Field(None, description="SHA-256 of the weights file.")
    device: str = Field(description="Torch device the model ran on.")
    energy_convention: EnergyConvention = Field(description="Whether MP2020 corrections apply to its energies.")
    package_versions: dict[str, str] = Field(default_factory=dict, description="Versions of the packages involved.")
