"""A cheap synthetic candidate source for campaign-scale tests and benchmarks.

Unit ``i`` is one structure of the ``i``-th composition (over EMT's metals, gcd 1, so
every candidate has its own reduced formula and dedup finds nothing to compare): the
atoms sit on a chain of simple-cubic sites 2.6 Å apart. Relaxed for a few steps with
ASE's EMT it costs milliseconds, which is what lets a test run hundreds of chunks and a
benchmark measure the data path of 10^5 candidates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pymatgen.core import Lattice, Structure

from matris_flows.generation.ids import build_candidate
from matris_flows.generation.jobs import CandidateSourceMaker
from matris_flows.generation.pipeline import Event
from matris_flows.generation.schemas import Provenance, SourceMethod

EMT_METALS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
SPACING = 2.6  # Å: about the nearest-neighbour distance of these metals


@lru_cache(maxsize=4)
def compositions(elements: tuple[str, ...], count: int, max_atoms: int = 24) -> tuple[tuple[int, ...], ...]:
    """The first ``count`` compositions (atom counts per element) with gcd 1, smallest cells first."""
    out: list[tuple[int, ...]] = []
    for n_atoms in range(1, max_atoms + 1):
        # stars and bars: every way to write n_atoms as an ordered sum over the elements
        for bars in itertools.combinations(range(n_atoms + len(elements) - 1), len(elements) - 1):
            counts = tuple(b - a - 1 for a, b in zip((-1, *bars), (*bars, n_atoms + len(elements) - 1), strict=True))
            if math.gcd(*counts) == 1:
                out.append(counts)
                if len(out) == count:
                    return tuple(out)
    raise ValueError(f"fewer than {count} compositions of at most {max_atoms} atoms over {len(elements)} elements")


def chain_structure(counts: Sequence[int], elements: Sequence[str] = EMT_METALS) -> Structure:
    """Atoms of ``counts`` on a chain of cubic sites, one per ``SPACING`` along a."""
    species = [el for el, n in zip(elements, counts, strict=True) for _ in range(n)]
    lattice = Lattice.orthorhombic(SPACING * len(species), SPACING, SPACING)
    coords = [[(i + 0.5) / len(species), 0.5, 0.5] for i in range(len(species))]
    return Structure(lattice, species, coords)


@dataclass
class SyntheticSourceMaker(CandidateSourceMaker):
    """``n`` synthetic candidates with distinct reduced formulas (see module docstring).

    ``bad_every`` turns every ``bad_every``-th unit into a structure with two atoms 0.3 Å
    apart, which the sanity filters reject (with the structure attached).
    """

    name: str = "synthetic candidates"
    n: int = 100
    elements: list[str] = field(default_factory=lambda: list(EMT_METALS))
    bad_every: int | None = None

    def work_units(self) -> Sequence[int]:
        """One unit per candidate."""
        return range(self.n)

    def run_unit(self, unit: int) -> Iterator[Event]:
        """The structure of composition ``unit`` (or a rejected, too-dense variant)."""
        counts = compositions(tuple(self.elements), self.n)[unit]
        structure = chain_structure(counts, self.elements)
        provenance = Provenance(source=SourceMethod.FILE, parent_id=f"synthetic#{unit}", file_index=unit)
        if self.bad_every and unit % self.bad_every == self.bad_every - 1:
            structure.append(structure[0].specie, structure[0].coords + [0.3, 0.0, 0.0], coords_are_cartesian=True)
        yield build_candidate(structure, provenance)


@dataclass
class CrashingSourceMaker(SyntheticSourceMaker):
    """Synthetic candidates whose listed units kill the process generating them (SIGSEGV), or hang.

    What a reader or generator hitting broken native code looks like to the shard job.
    """

    name: str = "crashing synthetic candidates"
    crash_units: list[int] = field(default_factory=list)
    hang_units: list[int] = field(default_factory=list)

    def run_unit(self, unit: int) -> Iterator[Event]:
        """The synthetic structure of ``unit``, unless the unit is poisoned."""
        import os
        import signal
        import time

        if unit in self.crash_units:
            os.kill(os.getpid(), signal.SIGSEGV)
        while unit in self.hang_units:
            time.sleep(1)
        yield from super().run_unit(unit)


EMT_POTENTIAL = "ase.calculators.emt:EMT"


def synthetic_screening(
    n: int,
    chunk_size: int = 200,
    parallelism: int = 2,
    max_steps: int = 3,
    bad_every: int | None = None,
    name: str = "synthetic",
    relax_cell: bool = True,
):
    """A ScreeningMaker over :class:`SyntheticSourceMaker` relaxed with EMT for ``max_steps`` FIRE steps.

    EMT energies are not on MP's scale, so the hull is campaign-internal (elements relaxed
    with EMT by the campaign's references job); nothing here needs reference data or model weights.
    """
    from matris_flows.campaign.flow import ScreeningMaker
    from matris_flows.generation.jobs import ShardedGenerationMaker
    from matris_flows.relax.jobs import RelaxMaker
    from matris_flows.relax.schemas import RelaxSettings
    from matris_flows.thermo.consistent_references import ConsistentReferencesMaker, copy_relax_maker
    from matris_flows.thermo.jobs import HullMaker
    from matris_flows.thermo.references import LocalFileReferences

    settings = RelaxSettings(max_steps=max_steps, engine="ase", relax_cell=relax_cell)
    relax = RelaxMaker(name=f"{name}: relax", potential=EMT_POTENTIAL, settings=settings, device="cpu")
    source = SyntheticSourceMaker(n=n, bad_every=bad_every)
    return ScreeningMaker(
        name=name,
        generation=ShardedGenerationMaker(
            name=f"{name}: generate",
            sources=[source],
            chunk_size=chunk_size,
            parallelism=parallelism,
        ),
        relax=relax,
        hull=HullMaker(name=f"{name}: hull", campaign=name),
        # no MP data for these elements: the hull is the tie-line of their ground states relaxed with EMT
        consistent_references=ConsistentReferencesMaker(
            name=f"{name}: consistent references",
            references=LocalFileReferences(),
            relax=copy_relax_maker(relax, f"{name}: consistent references relax"),
            elements=list(source.elements),
        ),
    )
