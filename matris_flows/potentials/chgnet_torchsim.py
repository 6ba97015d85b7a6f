"""CHGNet behind TorchSim's ``ModelInterface``, so the batched engine can relax many cells per call.

TorchSim ships no CHGNet adapter. CHGNet's own ``forward`` already takes a list of
graphs and batches them, so the adapter only converts a ``SimState`` into CHGNet
graphs and the outputs into TorchSim's units (total eV, eV/Å, eV/Å³).
"""

import torch
from pymatgen.core import Lattice, Structure
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

_GPA_PER_EV_A3 = 160.21766208


class CHGNetTorchSimModel(ModelInterface):
    """Evaluate a loaded CHGNet model on a batched TorchSim state."""

    def __init__(self, model, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_forces = True
        self._compute_stress = True
        self._memory_scales_with = "n_atoms"

    def _graphs(self, state: SimState) -> list:
        positions = state.positions.detach().cpu().double().numpy()
        cells = state.row_vector_cell.detach().cpu().double().numpy()
        numbers = state.atomic_numbers.cpu().numpy()
        graphs, start = [], 0
        for index, count in enumerate(state.n_atoms_per_system.tolist()):
            structure = Structure(
                Lattice(cells[index]),
                numbers[start : start + count],
                positions[start : start + count],
                coords_are_cartesian=True,
            )
            graphs.append(self.model.graph_converter(structure).to(self._device))
            start += count
        return graphs

    def predict_magmoms(self, state: SimState) -> dict[str, torch.Tensor]:
        """Magnetic moments (μB) of every atom; kept out of ``forward`` so relaxation steps skip them."""
        with torch.no_grad():
            prediction = self.model(self._graphs(state), task="em")
        return {"magmoms": torch.cat([m.reshape(-1) for m in prediction["m"]]).detach()}

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        """Energies, forces and stresses of every system in ``state`` from one CHGNet call."""
        with torch.enable_grad():
            prediction = self.model(self._graphs(state), task="efs")
        energy = prediction["e"].detach()
        if self.model.is_intensive:
            energy = energy * state.n_atoms_per_system.to(energy.dtype)
        return {
            "energy": energy.to(self._dtype),
            "forces": torch.cat(prediction["f"]).detach().to(self._dtype),
            # CHGNet reports GPa with ASE's sign convention; TorchSim wants eV/Å³.
            "stress": (torch.stack(prediction["s"]).detach() / _GPA_PER_EV_A3).to(self._dtype),
        }
