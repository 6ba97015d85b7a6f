"""The offline DFT backend: GPAW (plane waves, PAW setups from ``gpaw-data``) through atomate2's ASE makers.

GPAW installs from PyPI (see ``.ci/install_dft.sh``) and needs no licence, so the
validation stage runs on any machine. Its energies are not on the MP (VASP + MP2020)
scale, so they are only compared within a consistent hull (see ``hull.py``).
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import units
from atomate2.ase.jobs import AseRelaxMaker
from atomate2.ase.utils import AseRelaxer
from jobflow import job
from monty.json import MontyDecoder
from pydantic import BaseModel, Field
from pymatgen.core import Element, Lattice, Structure

from matris_flows.core.data_paths import package_data_path
from matris_flows.validation.schemas import CalculationRole, DftCalculationDocument

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

# Elements whose compounds MP runs spin-polarised and that are routinely magnetic; a chemical
# system containing one is computed spin-polarised when ``spin_polarized`` is left on auto.
MAGNETIC_ELEMENTS = frozenset(
    "V Cr Mn Fe Co Ni Cu Mo Ru Rh W Re Os Ir Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb U Np Pu".split()
)
# High-spin ferromagnetic start, μB per atom: every d-block element of MAGNETIC_ELEMENTS starts at
# 5 μB (MP's MAGMOM for V, Cr, Mn, Fe, Ni, Mo, W; Co too, at its high-spin value rather than
# MP's low-spin 0.6), Eu and Gd at their 4f⁷ 7 μB, the other f elements at 5 μB. Any other
# element starts at GpawSettings.initial_magmom. One rule for every phase of a hull: a
# candidate's MLIP moments are never used, so candidates and references start alike.
HIGH_SPIN_MAGMOMS: dict[str, float] = {el: 5.0 for el in MAGNETIC_ELEMENTS} | {"Eu": 7.0, "Gd": 7.0}
# Elements whose gas-phase reference is open-shell (triplet O2): a system containing one is
# computed spin-polarised throughout, so the element and its compounds share one treatment.
OPEN_SHELL_REFERENCE_ELEMENTS = frozenset({"O"})
MAGNETIC_INITIALISATION = (
    "high-spin ferromagnetic: 5 μB per transition-metal/f atom (Eu, Gd 7), initial_magmom elsewhere, "
    "the same for every phase of a chemical system"
)
MOLECULE_IN_BOX = "molecule_in_box"
ELEMENT_STRUCTURES_FILE = "mp_elemental_small_polymorphs.json.gz"


class GpawSettings(BaseModel):
    """GPAW calculator settings; one instance is shared by every calculation of a hull."""

    xc: str = Field("PBE", description="Exchange-correlation functional.")
    ecut: float = Field(500.0, gt=0, description="Plane-wave cutoff, eV.")
    kpoint_density: float = Field(
        4.0, gt=0, description="Monkhorst-Pack density, k-points per Å⁻¹ (ASE 'density'); Γ-centred."
    )
    smearing: str = Field("fermi-dirac", description="Occupation smearing scheme (GPAW occupations name).")
    smearing_width: float = Field(0.05, ge=0, description="Smearing width, eV.")
    spin_polarized: bool | None = Field(
        None, description="Spin-polarised calculation; None decides per chemical system (magnetic elements)."
    )
    initial_magmom: float = Field(
        1.0, description="Initial moment of every atom that is not a magnetic transition metal or f element, μB."
    )
    scf_max_iterations: int = Field(333, ge=1, description="SCF iterations before GPAW reports non-convergence.")
    convergence: dict[str, float] = Field(default_factory=dict, description="GPAW convergence criteria overrides.")
    setups: str = Field("paw", description="GPAW setups (from gpaw-data).")
    log_file: str | None = Field(None, description="GPAW text log path (relative to the job dir); None for silence.")

    def calculator_kwargs(self, spin_polarized: bool, molecule_in_box: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``gpaw.GPAW`` for one structure."""
        from gpaw import PW

        kwargs: dict[str, Any] = {
            "mode": PW(self.ecut),
            "xc": self.xc,
            # An isolated molecule has no dispersion: Γ alone is exact and saves the k-mesh cost.
            "kpts": (1, 1, 1) if molecule_in_box else {"density": self.kpoint_density, "gamma": True},
            "occupations": {"name": self.smearing, "width": self.smearing_width},
            "spinpol": spin_polarized,
            "maxiter": self.scf_max_iterations,
            "setups": self.setups,
            "txt": self.log_file,
        }
        if self.convergence:
            kwargs["convergence"] = dict(self.convergence)
        return kwargs

    def resolve_spin(self, chemsys: str) -> bool:
        """Spin polarisation for a whole chemical system: the setting, or auto from its elements.

        Auto is on when the system holds a magnetic element or an element whose reference is
        open-shell (O: triplet O2), so every phase of the system gets the same treatment.
        """
        if self.spin_polarized is not None:
            return self.spin_polarized
        return any(el in MAGNETIC_ELEMENTS or el in OPEN_SHELL_REFERENCE_ELEMENTS for el in chemsys.split("-"))

    def initial_magmoms(self, structure: Structure) -> list[float]:
        """Initial moments of a spin-polarised calculation: high-spin ferromagnetic, one rule for every phase."""
        return [HIGH_SPIN_MAGMOMS.get(site.specie.symbol, self.initial_magmom) for site in structure]


@cache
def gpaw_version() -> str | None:
    """Installed GPAW version, None when it is not installed."""
    try:
        return version("gpaw")
    except PackageNotFoundError:
        return None


def molecule_in_box(species: str, bond_length: float, box: tuple[float, float, float] = (7.0, 7.2, 7.5)) -> Structure:
    """A homonuclear diatomic (Cl2, O2, N2, ...) in a periodic box, flagged as an isolated molecule.

    Halogens and other molecular elements crystallise in large cells; the isolated molecule
    is a cheap element reference (the missing lattice energy is small without van der Waals
    terms). The box is slightly orthorhombic so that no symmetry ties the axes together.
    """
    a, b, c = box
    structure = Structure(
        Lattice.orthorhombic(a, b, c),
        [species, species],
        [[0.5 * a, 0.5 * b, 0.5 * (c - bond_length)], [0.5 * a, 0.5 * b, 0.5 * (c + bond_length)]],
        coords_are_cartesian=True,
        properties={MOLECULE_IN_BOX: True},
    )
    return structure


def is_molecule_in_box(structure: Structure) -> bool:
    """Whether a structure is flagged as an isolated molecule (fixed cell, Γ point)."""
    return bool((getattr(structure, "properties", None) or {}).get(MOLECULE_IN_BOX, False))


# PBE bond lengths (Å) of the diatomic gas-phase elements. O2 is a triplet: its systems are
# spin-polarised (OPEN_SHELL_REFERENCE_ELEMENTS); the others are closed-shell.
DIATOMIC_ELEMENTS: dict[str, float] = {"H": 0.75, "N": 1.10, "O": 1.23, "F": 1.42, "Cl": 1.99, "Br": 2.31, "I": 2.68}


def diatomic_reference(element: str) -> Structure:
    """The isolated-molecule element reference of a diatomic gas (H, N, O, F, Cl, Br, I)."""
    return molecule_in_box(element, DIATOMIC_ELEMENTS[element])


@cache
def packaged_element_data() -> dict[str, Any]:
    """The packaged elemental polymorphs (``matris_flows/data``, attribution in its README)."""
    with gzip.open(package_data_path(ELEMENT_STRUCTURES_FILE), "rt") as handle:
        return json.load(handle)


def load_element_structures(elements: list[str]) -> dict[str, Structure]:
    """A small MP ground-state polymorph of each element, from the package data.

    ``mp_elemental_small_polymorphs.json.gz`` holds, per element, the MP polymorph with the
    fewest sites among those within 0.02 eV/atom of the lowest (uncorrected MP GGA energies):
    MP's lowest is sometimes a large cell (Na: 29 atoms, 8 meV/atom below bcc), and DFT cost
    grows with the cell; the choice shifts formation energies by at most 0.02 eV/atom and
    leaves energies above the hull of a composition's polymorphs unchanged.

    Raises:
        KeyError: For an element the data does not cover.
    """
    data = packaged_element_data()
    decoder = MontyDecoder()
    structures = {}
    for element in elements:
        symbol = Element(element).symbol
        if symbol not in data:
            raise KeyError(f"no elemental reference structure for {symbol} in matris_flows/data/{ELEMENT_STRUCTURES_FILE}")
        structures[symbol] = decoder.process_decoded(data[symbol]["structure"])
    return structures


def _max_force(forces: Any) -> float | None:
    """Largest atomic force norm, eV/Å."""
    if forces is None or len(forces) == 0:
        return None
    return float(np.max(np.linalg.norm(np.asarray(forces, dtype=float), axis=1)))


def _frame(trajectory: Any, index: int) -> tuple[float, Any, Any]:
    """(energy eV, forces eV/Å, Voigt stress eV/Å³ or None) of one frame of either atomate2 trajectory model."""
    if hasattr(trajectory, "frame_properties"):
        frame = trajectory.frame_properties[index]
        return frame["energy"], frame["forces"], frame.get("stress")
    stress = getattr(trajectory, "stress", None)
    return trajectory.energy[index], trajectory.forces[index], None if stress is None else stress[index]


def _max_stress_gpa(voigt: Any) -> float | None:
    """Largest absolute stress component, GPa, from an ASE Voigt stress in eV/Å³."""
    if voigt is None:
        return None
    return float(np.max(np.abs(np.asarray(voigt, dtype=float))) / units.GPa)


def _n_frames(trajectory: Any) -> int:
    """Number of ionic steps recorded."""
    return len(trajectory.frame_properties) if hasattr(trajectory, "frame_properties") else len(trajectory.energy)


def _failure_reason(exc: BaseException, max_iterations: int | None = None) -> str:
    """A short, queryable reason for a failed DFT calculation."""
    try:
        from gpaw import KohnShamConvergenceError
    except ImportError:  # the code is missing: every failure says so below
        KohnShamConvergenceError = ()  # noqa: N806
    if isinstance(exc, ImportError):
        return f"DFT code missing: {exc} (install with .ci/install_dft.sh)"
    if KohnShamConvergenceError and isinstance(exc, KohnShamConvergenceError):
        detail = str(exc) or f"KohnShamConvergenceError after {max_iterations} SCF iterations"
        return f"SCF not converged: {detail}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class GpawRelaxMaker(AseRelaxMaker):
    """Relax one structure with GPAW and report it as a :class:`DftCalculationDocument`.

    atomate2's :class:`AseRelaxMaker` does the relaxation; this subclass supplies the GPAW
    calculator and turns errors (SCF not converged, GPAW missing) into a failed document
    instead of a failed job, so one bad calculation never stops a campaign.

    The first ionic step is a single point on the input structure: for a candidate it gives
    the residual DFT forces on the MLIP-relaxed structure without an extra calculation.
    """

    name: str = "GPAW relax"
    settings: GpawSettings = field(default_factory=GpawSettings)
    steps: int = 60
    relax_kwargs: dict = field(default_factory=lambda: {"fmax": 0.05})
    optimizer_kwargs: dict = field(default_factory=lambda: {"optimizer": "BFGS"})

    def _get_calculator(self, spin_polarized: bool = False, molecule: bool = False) -> Calculator:
        """A fresh GPAW calculator (never reused: GPAW keeps state tied to one system)."""
        from gpaw import GPAW

        return GPAW(**self.settings.calculator_kwargs(spin_polarized, molecule_in_box=molecule))

    def recorded_settings(self, spin_polarized: bool) -> dict[str, Any]:
        """Settings stored with every result: calculator and relaxation."""
        return {
            **self.settings.model_dump(),
            "spin_polarized": spin_polarized,
            "magnetic_initialisation": MAGNETIC_INITIALISATION if spin_polarized else "none (spin-paired)",
            "relax_cell": self.relax_cell,
            "fmax": self.relax_kwargs.get("fmax", 0.1),
            "max_steps": self.steps,
            "optimizer": self.optimizer_kwargs.get("optimizer", "FIRE"),
            "fix_symmetry": self.fix_symmetry,
        }

    @job(output_schema=DftCalculationDocument)
    def make(
        self,
        structure: Structure,
        label: str,
        role: CalculationRole | str = CalculationRole.CANDIDATE,
        spin_polarized: bool | None = None,
    ) -> DftCalculationDocument:
        """Relax ``structure`` with GPAW.

        Args:
            structure: Starting structure; flagged molecules-in-box keep their cell and use Γ.
            label: Candidate id, element symbol or reference label.
            role: element, reference or candidate.
            spin_polarized: Spin polarisation, decided per chemical system by the caller (one
                setting for every phase of a hull); None resolves it from this structure's elements.

        Returns:
            The calculation document; ``succeeded`` is False with a reason on failure.
        """
        molecule = is_molecule_in_box(structure)
        if spin_polarized is None:
            spin_polarized = self.settings.resolve_spin(structure.composition.chemical_system)
        settings = self.recorded_settings(spin_polarized)
        common = {
            "label": label,
            "role": CalculationRole(role),
            "formula": structure.composition.reduced_formula,
            "input_structure": structure,
            "molecule_in_box": molecule,
            "code": "GPAW",
            "code_version": gpaw_version(),
            "settings": settings,
        }
        start = time.perf_counter()
        try:
            result = self.run_gpaw(structure, spin_polarized=spin_polarized, molecule=molecule)
        except Exception as exc:  # noqa: BLE001 - any DFT failure becomes a recorded failure
            return DftCalculationDocument(
                succeeded=False,
                failure_reason=_failure_reason(exc, self.settings.scf_max_iterations),
                elapsed_time_s=time.perf_counter() - start,
                **common,
            )
        e0, f0, s0 = _frame(result.trajectory, 0)
        e1, f1, _ = _frame(result.trajectory, -1)
        final = result.final_mol_or_struct
        # pymatgen copies atoms.calc onto the Structure: the GPAW calculator holds its open log file,
        # and a document carrying it cannot be pickled back from a Dask worker.
        final.calc = None
        final.properties = dict(structure.properties or {})
        n_atoms = len(final)
        return DftCalculationDocument(
            succeeded=True,
            structure=final,
            energy=float(e1),
            energy_per_atom=float(e1) / n_atoms,
            initial_energy_per_atom=float(e0) / n_atoms,
            initial_max_force=_max_force(f0),
            initial_max_stress=None if molecule else _max_stress_gpa(s0),
            final_max_force=_max_force(f1),
            relax_converged=bool(result.converged and result.is_force_converged) if self.steps > 1 else None,
            n_steps=_n_frames(result.trajectory),
            elapsed_time_s=time.perf_counter() - start,
            **common,
        )

    def run_gpaw(self, structure: Structure, spin_polarized: bool = False, molecule: bool = False) -> Any:
        """Relax with atomate2's :class:`AseRelaxer` and a fresh GPAW calculator (not a job).

        Incoming moments (a candidate's MLIP magmoms) are replaced: every phase starts from the
        same high-spin ferromagnetic rule, or from none when spin-paired.
        """
        structure = structure.copy()
        if "magmom" in structure.site_properties:
            structure.remove_site_property("magmom")
        if spin_polarized:
            # GPAW stays non-magnetic when started from zero moments.
            structure.add_site_property("magmom", self.settings.initial_magmoms(structure))
        relaxer = AseRelaxer(
            self._get_calculator(spin_polarized=spin_polarized, molecule=molecule),
            relax_cell=self.relax_cell and not molecule,
            relax_shape=self.relax_shape and not molecule,
            fix_symmetry=self.fix_symmetry,
            symprec=self.symprec,
            **self.optimizer_kwargs,
        )
        # final_atoms_object_file=None: atomate2 would otherwise append to an xyz in the cwd,
        # which jobs sharing a directory would interleave.
        kwargs = {"final_atoms_object_file": None, **self.relax_kwargs}
        return relaxer.relax(structure, steps=self.steps, **kwargs)


@dataclass
class GpawStaticMaker(GpawRelaxMaker):
    """Single point with GPAW (energy and forces on the given structure)."""

    name: str = "GPAW static"
    steps: int = 1
