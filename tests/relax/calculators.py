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
