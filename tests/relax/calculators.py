"""Deliberately broken ASE calculators for the relaxation stage's failure paths."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class NaNCalculator(Calculator):
    """Returns NaN energies and forces, like a model fed a configuration it cannot handle."""

    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": float("nan"), "forces": np.full((n, 3), np.nan), "stress": np.zeros(6)}


class ExpandingCalculator(Calculator):
    """Energy falls without bound as the cell grows (E = -k V): the cell explodes."""

    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        volume = self.atoms.get_volume()
        k = 0.05
        # stress = (1/V) dE/dstrain = -k on the diagonal: a constant tensile drive.
        self.results = {
            "energy": -k * volume,
            "forces": np.zeros((len(self.atoms), 3)),
            "stress": np.array([-k, -k, -k, 0.0, 0.0, 0.0]),
        }


class RaisingCalculator(Calculator):
    """Raises inside the model call, like a CUDA or graph-construction error."""

    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        raise RuntimeError("model exploded")


class CollapsingCalculator(Calculator):
    """Pulls atoms 0 and 1 onto each other (E = k d²/2, no repulsion): a model with an unphysical minimum."""

    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        k = 5.0
        d = self.atoms.positions[1] - self.atoms.positions[0]
        forces = np.zeros((len(self.atoms), 3))
        forces[0], forces[1] = k * d, -k * d
        self.results = {"energy": 0.5 * k * float(d @ d), "forces": forces, "stress": np.zeros(6)}
