"""CHGNet behind TorchSim's ``ModelInterface``, so the batched engine can relax many cells per call.

TorchSim ships no CHGNet adapter. CHGNet's own ``forward`` already takes a list of
graphs and batches them, so the adapter only converts a ``SimState`` into CHGNet
graphs and the outputs into TorchSim's units (total eV, eV/Å, eV/Å³).

Forces and stress come from ONE backward pass. CHGNet's ``forward(task="efs")`` is
written for training: it runs two ``autograd.grad`` calls (positions, then strains),
each with ``create_graph=True``, which on CPU made the backward ~2/3 of a step.
Inference needs neither the second pass nor the double-backward graph; the energies
are the same and forces/stresses agree to float32 rounding.
"""

from time import perf_counter

import torch
from chgnet.model.model import BatchedGraph
from pymatgen.core import Lattice, Structure
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState


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
        # Forces need gradients with respect to positions only; frozen weights keep
        # autograd from saving inputs for weight gradients nobody asks for.
        model.requires_grad_(False)
        # Seconds spent building CHGNet graphs (neighbour lists, bond/angle lists: on the CPU,
        # per structure), in the forward pass and in the backward pass; read by the relaxation
        # service's timings (on a GPU the passes' kernels may finish after these clocks stop).
        self.graph_seconds = self.forward_seconds = self.backward_seconds = 0.0

    def _graphs(self, state: SimState) -> list:
        start_time = perf_counter()
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
        self.graph_seconds += perf_counter() - start_time
        return graphs

    def predict_magmoms(self, state: SimState) -> dict[str, torch.Tensor]:
        """Magnetic moments (μB) of every atom; kept out of ``forward`` so relaxation steps skip them."""
        with torch.no_grad():
            prediction = self.model(self._graphs(state), task="em")
        return {"magmoms": torch.cat([m.reshape(-1) for m in prediction["m"]]).detach()}

    def _energy_forces_stress(self, graphs: list) -> tuple[torch.Tensor, list, list]:
        """Total energies (eV), forces (eV/Å) and stresses (eV/Å³, ASE sign) with one backward pass."""
        model = self.model
        start = perf_counter()
        composition = 0 if model.composition_model is None else model.composition_model(graphs)
        with torch.enable_grad():
            batched = BatchedGraph.from_graphs(
                graphs,
                bond_basis_expansion=model.bond_basis_expansion,
                angle_basis_expansion=model.angle_basis_expansion,
                compute_stress=True,
            )
            # _compute is CHGNet.forward minus the graph assembly and the two training-style
            # gradient passes; forward adds the composition energy the same way.
            energy = model._compute(batched, compute_force=False, compute_stress=False)["e"]
            n_atoms = torch.tensor([len(g.atomic_number) for g in graphs], dtype=energy.dtype, device=energy.device)
            total = energy * n_atoms if model.is_intensive else energy
            backward_start = perf_counter()
            self.forward_seconds += backward_start - start
            grads = torch.autograd.grad(total.sum(), [*batched.atom_positions, *batched.strains])
            self.backward_seconds += perf_counter() - backward_start
        n = len(graphs)
        forces = [-g for g in grads[:n]]
        stresses = [s / v for s, v in zip(grads[n:], batched.volumes, strict=True)]
        energy = (energy.detach() + composition) * (n_atoms if model.is_intensive else 1)
        return energy, forces, stresses

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        """Energies, forces and stresses of every system in ``state`` from one CHGNet call."""
        energy, forces, stresses = self._energy_forces_stress(self._graphs(state))
        return {
            "energy": energy.to(self._dtype),
            "forces": torch.cat(forces).detach().to(self._dtype),
            "stress": torch.stack(stresses).detach().to(self._dtype),
        }
