"""Put model energies on the Materials Project's energy scale.

A model's total energy goes into a ``ComputedStructureEntry`` carrying the
parameters MP2020 needs (run type, Hubbard U, POTCAR symbols) chosen by MP's own
input-set rules, then the correction that the potential's energy convention
calls for is applied — following each model's Matbench Discovery submission:
MP2020 for models trained on raw MPtrj energies, nothing for CHGNet (trained on
corrected energies), and no MP comparison at all for OMat24/MatPES models.
"""

from dataclasses import dataclass
from functools import cache

from pymatgen.core import Composition, Structure
from pymatgen.entries.compatibility import CompatibilityError, MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.vasp.sets import MPRelaxSet

from matris_flows.potentials.naming import EnergyConvention


@dataclass(frozen=True)
class CorrectedEntry:
    """An entry after the convention's correction, or the reason it was rejected."""

    entry: ComputedStructureEntry
    rejected_reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the entry can go on a hull."""
        return self.rejected_reason is None


def mp_hubbard_u(composition: Composition) -> dict[str, float]:
    """Hubbard U values MP would use for ``composition`` (non-zero ones only).

    MPRelaxSet keys LDAUU by the most electronegative element: only O and F
    compounds of the listed transition metals get a U, so Fe2O3 gets U(Fe)=5.3
    and FeS none.
    """
    ldauu = MPRelaxSet.CONFIG["INCAR"]["LDAUU"]
    elements = [el for el in composition.elements if composition[el] > 0]
    most_electroneg = max(elements, key=lambda el: el.X).symbol
    table = ldauu.get(most_electroneg, {})
    return {el.symbol: float(table[el.symbol]) for el in elements if table.get(el.symbol, 0)}


def mp_run_parameters(composition: Composition) -> dict:
    """``ComputedEntry.parameters`` of an MP-style calculation of ``composition``.

    Elements MP has no POTCAR for get no symbol, so MP2020 rejects the entry with
    a POTCAR message instead of this function failing.
    """
    hubbards = mp_hubbard_u(composition)
    potcars = MPRelaxSet.CONFIG["POTCAR"]
    return {
        "run_type": "GGA+U" if hubbards else "GGA",
        "is_hubbard": bool(hubbards),
        "hubbards": hubbards,
        "potcar_symbols": [
            f"PBE {potcars[el.symbol]}" if el.symbol in potcars else None for el in sorted(composition.elements)
        ],
    }


def build_computed_entry(
    structure: Structure, energy: float, entry_id: str, data: dict | None = None
) -> ComputedStructureEntry:
    """Wrap a model's total energy (eV) and relaxed structure as an MP-style entry."""
    return ComputedStructureEntry(
        structure=structure,
        energy=energy,
        parameters=mp_run_parameters(structure.composition),
        entry_id=entry_id,
        data=dict(data or {}),
    )


@cache
def mp2020_compatibility() -> MaterialsProject2020Compatibility:
    """The MP2020 scheme with default settings, as Matbench Discovery applies it."""
    return MaterialsProject2020Compatibility()


def correct_entry(
    entry: ComputedStructureEntry,
    convention: EnergyConvention,
    compatibility: MaterialsProject2020Compatibility | None = None,
) -> CorrectedEntry:
    """Apply the correction the energy convention calls for (in place).

    MP_UNCORRECTED: MP2020; a CompatibilityError becomes ``rejected_reason``.
    MP_CORRECTED: nothing — the model already learned MP2020 (applying it again
    moved CHGNet's FeO 1.4 eV/atom too low). NOT_MP_COMPATIBLE: nothing; such
    entries belong on a campaign-internal hull only.
    """
    entry.energy_adjustments = []
    if convention is not EnergyConvention.MP_UNCORRECTED:
        return CorrectedEntry(entry)
    scheme = compatibility or mp2020_compatibility()
    try:
        scheme.process_entry(entry, on_error="raise")
    except (CompatibilityError, ValueError) as exc:  # ValueError: unusable POTCAR parameters
        return CorrectedEntry(entry, rejected_reason=f"MP2020 rejected the entry: {exc}")
    return CorrectedEntry(entry)


def uses_mp_hull(convention: EnergyConvention) -> bool:
    """Whether energies of this convention may be compared with MP reference entries."""
    return convention in (EnergyConvention.MP_UNCORRECTED, EnergyConvention.MP_CORRECTED)

