"""Chemical-system strings: one canonical spelling for every stage and store key."""

from collections.abc import Iterable

from pymatgen.core import Element


def chemsys_of(elements: Iterable[Element | str]) -> str:
    """Canonical chemical system: symbols sorted alphabetically, joined by '-' (pymatgen's, MP's)."""
    return "-".join(sorted({str(el) for el in elements}))


def elements_of(chemsys: str) -> frozenset[str]:
    """Element symbols of a chemical system such as ``"Li-Fe-O"`` (any order); validates them."""
    symbols = frozenset(sym.strip() for sym in chemsys.split("-") if sym.strip())
    if not symbols:
        raise ValueError(f"Empty chemical system {chemsys!r}.")
    for sym in symbols:
        Element(sym)  # raises ValueError on a typo such as "Xx"
    return symbols


def subsystems(elements: frozenset[str]) -> list[frozenset[str]]:
    """All non-empty subsets of a chemical system (2**n - 1 of them): index look-ups instead of scans."""
    symbols = sorted(elements)
    return [
        frozenset(sym for bit, sym in enumerate(symbols) if mask >> bit & 1) for mask in range(1, 1 << len(symbols))
    ]


def within(index: dict[frozenset[str], list], elements: frozenset[str]) -> list:
    """Items of an index keyed by element set whose key is a subset of ``elements``."""
    # enumerate subsets for small systems, scan the index when that is cheaper
    if (1 << len(elements)) < len(index):
        keys = [key for key in subsystems(elements) if key in index]
    else:
        keys = [key for key in index if key <= elements]
    return [item for key in keys for item in index[key]]
