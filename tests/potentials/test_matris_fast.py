"""The project's faster MatRIS CPU path gives stock MatRIS's numbers and leaves stock MatRIS alone."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import all_changes

from matris_flows.potentials import matris_fast


def _calculator(path):
    from matris.applications.base import MatRISCalculator

    return MatRISCalculator(model=str(path), task="efs", device="cpu", activation_checkpoint=False)


def _efs(calculator, atoms):
    calculator.calculate(atoms, ["energy", "forces", "stress"], all_changes)
    return calculator.results["energy"], np.array(calculator.results["forces"]), np.array(calculator.results["stress"])


@pytest.fixture(scope="module")
def silicon():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=0)
    return atoms


def test_fast_path_matches_stock_and_cuts_flops(tiny_matris_checkpoint, silicon):
    from torch.utils.flop_counter import FlopCounterMode

    stock, fast = _calculator(tiny_matris_checkpoint), _calculator(tiny_matris_checkpoint)
    matris_fast.speed_up_calculator(fast, compile=False)
    e0, f0, s0 = _efs(stock, silicon)
    e1, f1, s1 = _efs(fast, silicon)
    assert abs(e1 - e0) <= 1e-5 * abs(e0)
    assert np.abs(f1 - f0).max() <= 1e-4
    assert np.abs(s1 - s0).max() <= 1e-4
    counts = []
    for calculator in (stock, fast):
        counter = FlopCounterMode(display=False)
        with counter:
            _efs(calculator, silicon)
        counts.append(counter.get_total_flops())
    assert counts[1] < 0.8 * counts[0]  # the split projections really ran


def test_stock_matris_is_untouched_outside_the_fast_context(tiny_matris_checkpoint, silicon):
    stock = _calculator(tiny_matris_checkpoint)
    before = _efs(stock, silicon)
    matris_fast.install()
    after = _efs(stock, silicon)
    assert before[0] == after[0] and np.array_equal(before[1], after[1])  # bit-identical
    with matris_fast.cpu_fast():
        inside = _efs(stock, silicon)
    assert inside[0] != before[0] or not np.array_equal(inside[1], before[1])  # the patched path did run


def test_compile_only_where_it_pays_and_falls_back_to_eager(tiny_matris_checkpoint, silicon, monkeypatch):
    import torch

    calculator = _calculator(tiny_matris_checkpoint)
    assert not matris_fast.should_compile(calculator.model, "auto")  # tiny test model: compile would not pay
    assert matris_fast.should_compile(calculator.model, True)
    reference = _efs(calculator, silicon)

    def broken_compile(fn, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    matris_fast.compile_core(calculator.model)
    energy, forces, _ = _efs(calculator, silicon)  # first call fails to compile, runs eager
    assert energy == reference[0] and np.array_equal(forces, reference[1])


def test_the_fast_kernels_are_opt_in(tiny_matris_checkpoint, silicon):
    """Stock MatRIS unless the potential's options ask for ``fast_cpu_kernels``; both give the same numbers."""
    from matris_flows.potentials.loader import load_potential

    stock = load_potential(str(tiny_matris_checkpoint), device="cpu").calculator.model
    fast_potential = load_potential(str(tiny_matris_checkpoint), device="cpu", fast_cpu_kernels=True, compile=False)
    fast = fast_potential.calculator.model
    assert not getattr(stock, "_matris_flows_cpu_fast", False) and getattr(fast, "_matris_flows_cpu_fast", False)
    assert not any(p.requires_grad for model in (stock, fast) for p in model.parameters())
    stock_efs = _efs(load_potential(str(tiny_matris_checkpoint), device="cpu").calculator, silicon)
    fast_efs = _efs(fast_potential.calculator, silicon)
    assert fast_efs[0] == pytest.approx(stock_efs[0], rel=1e-5)
    assert np.abs(fast_efs[1] - stock_efs[1]).max() < 1e-4
