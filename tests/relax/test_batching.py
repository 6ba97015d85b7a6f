"""Batch sizing from free memory, and the batched CHGNet adapter's single backward pass."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matris_flows.relax import batch_size
from matris_flows.relax.batch_size import atoms_cap


def test_cap_is_free_memory_over_bytes_per_atom_on_gpu():
    assert atoms_cap(1e6, 10e9, device="cuda:0", fraction=0.5) == 5000
    assert atoms_cap(1e6, 10e9, device="cuda:0", fraction=0.5, processes=2) == 2500


def test_cpu_cap_is_bounded_and_never_zero():
    assert atoms_cap(1e3, 64e9, device="cpu") == batch_size.CPU_ATOMS_CAP  # RAM is not the limit on CPU
    assert atoms_cap(60e6, 6e9, device="cpu", fraction=0.5) == 50  # big model, little RAM
    assert atoms_cap(60e6, 0.0, device="cpu") == 1  # one cell is always tried


@pytest.mark.parametrize("args", [(0, 1e9), (1e6, -1.0)])
def test_cap_rejects_nonsense(args):
    with pytest.raises(ValueError, match="bytes_per_atom"):
        atoms_cap(*args)


def test_cpu_cap_uses_available_memory_and_model_estimate(monkeypatch):
    class Model:
        device = "cpu"

    monkeypatch.setattr(batch_size, "available_memory_bytes", lambda device: 12e9)
    assert batch_size.batch_atoms_cap(Model(), kind="matris") == int(0.7 * 12e9 // 180e6)  # stock MatRIS
    assert batch_size.batch_atoms_cap(Model(), kind="matris_fast") == int(0.7 * 12e9 // 60e6)  # opt-in fast kernels
    assert batch_size.batch_atoms_cap(Model(), kind="chgnet") == batch_size.CPU_ATOMS_CAP
    assert batch_size.measure_bytes_per_atom(Model(), state=None) is None  # nothing to probe on CPU


def test_available_memory_is_positive_on_cpu():
    assert batch_size.available_memory_bytes("cpu") > 0


def test_chgnet_adapter_single_backward_matches_chgnet():
    from matris_flows.core.quiet import import_torch_sim
    from matris_flows.potentials.loader import load_potential

    ts = import_torch_sim()
    potential = load_potential("chgnet", device="cpu")
    model = potential.batched_model()
    structures = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.7), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.5), ["Si"], [[0, 0, 0]]),
    ]
    structures[1].translate_sites([0], [0.05, -0.03, 0.02], frac_coords=False)
    reference = potential.calculator.model.predict_structure(structures, task="efs", batch_size=2)
    out = model(ts.io.structures_to_state(structures, model.device, model.dtype))
    energies = [r["e"] * len(s) for r, s in zip(reference, structures, strict=True)]
    assert np.allclose(out["energy"].numpy(), energies, rtol=1e-6, atol=1e-5)
    assert np.abs(out["forces"].numpy() - np.concatenate([r["f"] for r in reference])).max() < 1e-4
    assert np.abs(out["forces"].numpy()).max() > 1e-2  # the displaced Si really has forces
    stress_ev_a3 = np.array([r["s"] for r in reference]) / 160.21766208
    assert np.abs(out["stress"].numpy() - stress_ev_a3).max() < 1e-5
