"""An EMT calculator that misbehaves like broken native code on chosen compositions.

For fault tests and the chaos benchmark: a structure whose composition is listed dies the
way a segfault, an OOM kill or a CUDA fault kills a process (``os._exit`` / a signal), hangs
the way a native infinite loop does, or allocates memory until something stops it. Every
other structure gets plain EMT, so its results equal an unpoisoned run.
"""

from __future__ import annotations

import os
import signal
import time

from ase.calculators.emt import EMT


class PoisonEMT(EMT):
    """EMT, except for structures whose reduced formula is in one of the poison lists.

    Parameters
    ----------
    crash
        Reduced formulas that kill the process with ``os._exit(137)`` (what an OOM kill looks like).
    segfault
        Reduced formulas that kill the process with SIGSEGV.
    hang
        Reduced formulas that never return (a sleep loop).
    memory
        Reduced formulas that allocate (and touch) memory without end, 256 MiB at a time.
    delay_s
        Seconds every calculation sleeps first (a slower model, for tests that interrupt a chunk).
    """

    def __init__(self, crash=(), segfault=(), hang=(), memory=(), delay_s=0.0, **kwargs):
        super().__init__(**kwargs)
        self.poison = {"crash": set(crash), "segfault": set(segfault), "hang": set(hang), "memory": set(memory)}
        self.delay_s = delay_s

    def calculate(self, atoms=None, properties=None, system_changes=None):
        from pymatgen.core import Composition

        formula = Composition(atoms.get_chemical_formula()).reduced_formula
        if formula in self.poison["crash"]:
            os._exit(137)
        if formula in self.poison["segfault"]:
            os.kill(os.getpid(), signal.SIGSEGV)
        if formula in self.poison["hang"]:
            while True:
                time.sleep(1)
        if formula in self.poison["memory"]:
            hoard = []
            while True:
                block = bytearray(256 * 2**20)
                block[:: 4096] = b"\1" * len(block[:: 4096])  # touch every page: resident, not just reserved
                hoard.append(block)
        if self.delay_s:
            time.sleep(self.delay_s)
        if system_changes is None:
            super().calculate(atoms, properties)
        else:
            super().calculate(atoms, properties, system_changes)


def double_unless_poisoned(items: list[int], poison: dict[int, str] | None = None) -> list[int]:
    """``2 * item`` for each item, in one call; an item named in ``poison`` misbehaves as its value says.

    For :func:`matris_flows.core.isolation.map_isolated` tests: ``"exit"`` (``os._exit(137)``),
    ``"segfault"``, ``"hang"`` or ``"raise"`` (a ValueError).
    """
    results = []
    for item in items:
        action = (poison or {}).get(item)
        if action == "exit":
            os._exit(137)
        if action == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if action == "hang":
            while True:
                time.sleep(1)
        if action == "raise":
            raise ValueError(f"item {item} is bad")
        results.append(2 * item)
    return results


def allocate_gib(gib: float) -> int:
    """Allocate and touch ``gib`` GiB, hold it for a minute; return the bytes (for memory-limit tests)."""
    block = bytearray(int(gib * 2**30))
    block[:: 4096] = b"\1" * len(block[:: 4096])
    time.sleep(60)
    return len(block)
