"""Reference entries for convex hulls, from pluggable providers.

Every provider answers ``get_entries(chemsys)`` with the entries whose elements
are a subset of the requested system (a hull needs every sub-system), and raises
``MissingReferenceError`` naming the system when it cannot — a missing reference
must never turn into a silent zero above a hull built from too few phases.
"""

import contextlib
import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from maggma.core import Store
from monty.json import MontyDecoder, MSONable, jsanitize
from monty.serialization import loadfn
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.core.chemsys import chemsys_of, elements_of, within
from matris_flows.shared_data import SHARED_DATA_ENV, shared_data_dir  # noqa: F401 (re-exported)
from matris_flows.thermo.schemas import HullKind, ReferenceProvenance

MP_ELEMENTAL_REFS_FILE = "mp_elemental_refs_2023-02-07.json.gz"


def default_reference_files() -> list[Path]:
    """The MP chemical-system dumps and elemental references in the shared data folder."""
    root = shared_data_dir()
    return [*sorted((root / "mp_chemsys").glob("*.json*")), root / MP_ELEMENTAL_REFS_FILE]


class MissingReferenceError(LookupError):
    """No (complete) reference data for a chemical system."""

    def __init__(self, chemsys: str, detail: str = "") -> None:
        self.chemsys = chemsys
        super().__init__(f"No reference data for chemical system {chemsys}" + (f": {detail}" if detail else "."))


@runtime_checkable
class ReferenceProvider(Protocol):
    """What the hull stage needs from a source of reference entries."""

    hull_kind: HullKind

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Entries whose elements are a subset of ``chemsys``; raises MissingReferenceError."""
        ...

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Describe the entries returned for ``chemsys``."""
        ...


def entries_within(entries: Iterable[ComputedEntry], elements: frozenset[str]) -> list[ComputedEntry]:
    """Entries whose elements are all in ``elements``."""
    return [e for e in entries if {el.symbol for el in e.elements} <= elements]


def check_terminal_entries(entries: Sequence[ComputedEntry], chemsys: str, hint: str = "") -> None:
    """Raise MissingReferenceError unless every element of ``chemsys`` has an elemental entry."""
    have = {e.elements[0].symbol for e in entries if len(e.elements) == 1}
    if missing := sorted(elements_of(chemsys) - have):
        raise MissingReferenceError(chemsys, f"no elemental reference entry for {', '.join(missing)}{hint}")


def _dedupe(entries: Iterable[ComputedEntry]) -> list[ComputedEntry]:
    # The same MP entry can sit in a chemsys dump and in the elemental file.
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry.entry_id is not None:
            if entry.entry_id in seen:
                continue
            seen.add(entry.entry_id)
        out.append(entry)
    return out


def load_entry_file(path: str | Path) -> tuple[list[ComputedEntry], list[frozenset[str]]]:
    """Entries of a JSON(.gz) file and the chemical systems the file is complete for.

    A list of entries is a complete dump of the union of its elements (as in
    ``mp_chemsys/``); a ``{element: entry}`` dict (the elemental-reference file)
    is complete only for each single element.
    """
    data = loadfn(path)
    if isinstance(data, dict):
        entries = [e if isinstance(e, ComputedEntry) else MontyDecoder().process_decoded(e) for e in data.values()]
        return entries, [frozenset({e.elements[0].symbol}) for e in entries if len(e.elements) == 1]
    entries = [e if isinstance(e, ComputedEntry) else MontyDecoder().process_decoded(e) for e in data]
    elements = frozenset(el.symbol for e in entries for el in e.elements)
    return entries, [elements] if elements else []


@lru_cache(maxsize=4)
def _load_entry_files(paths: tuple[str, ...]) -> tuple[dict[frozenset[str], list[ComputedEntry]], tuple[frozenset[str], ...]]:
    # Every hull job of a campaign reads the same files: once per process (seconds for 1000 entries).
    entries: list[ComputedEntry] = []
    complete: list[frozenset[str]] = []
    for path in paths:
        file_entries, complete_for = load_entry_file(path)
        entries.extend(file_entries)
        complete.extend(complete_for)
    by_system: dict[frozenset[str], list[ComputedEntry]] = defaultdict(list)
    for entry in _dedupe(entries):
        by_system[frozenset(el.symbol for el in entry.elements)].append(entry)
    return dict(by_system), tuple(complete)


class LocalFileReferences(MSONable):
    """Reference entries from local JSON(.gz) files of entry dicts.

    A request is answered only when some file is complete for a superset of the
    requested system, so a Na-Cl candidate is not put on a hull made of the
    elemental file alone.
    """

    hull_kind = HullKind.MP

    def __init__(
        self,
        paths: Sequence[str | Path] | None = None,
        snapshot_date: str | None = None,
        provider_name: str = "local_files",
    ) -> None:
        """
        Args:
            paths: Entry files; default: ``default_reference_files()``.
            snapshot_date: ISO date of the data, recorded in the provenance.
            provider_name: Name recorded in the provenance.
        """
        self.paths = [str(p) for p in (paths if paths is not None else default_reference_files())]
        self.snapshot_date = snapshot_date
        self.provider_name = provider_name
        self._by_system: dict[frozenset[str], list[ComputedEntry]] | None = None
        self._complete_for: list[frozenset[str]] = []

    @property
    def cache_key(self) -> tuple:
        """Identity of the reference data, for per-process hull caches."""
        return ("local_files", tuple(self.paths))

    def _load(self) -> dict[frozenset[str], list[ComputedEntry]]:
        if self._by_system is None:
            by_system, complete_for = _load_entry_files(tuple(self.paths))
            self._by_system = by_system
            self._complete_for = list(complete_for)
        return self._by_system

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Entries within ``chemsys``; raises MissingReferenceError if no file covers it."""
        elements = elements_of(chemsys)
        chemsys = chemsys_of(elements)
        by_system = self._load()
        if not any(elements <= complete for complete in self._complete_for):
            covered = ", ".join(sorted(chemsys_of(c) for c in self._complete_for if len(c) > 1)) or "none"
            raise MissingReferenceError(
                chemsys, f"no reference file covers it (multi-element systems covered: {covered}; files: {self.paths})"
            )
        entries = within(by_system, elements)
        check_terminal_entries(entries, chemsys)
        return entries

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Provider, files and snapshot date of the entries returned for ``chemsys``."""
        return ReferenceProvenance(
            provider=self.provider_name,
            source=", ".join(Path(p).name for p in self.paths),
            snapshot_date=self.snapshot_date,
            n_entries=n_entries,
            chemsys=chemsys_of(elements_of(chemsys)),
        )


def _default_rester_factory(api_key: str | None):
    from mp_api.client import MPRester

    return MPRester(api_key)


def _snapshot_from_version(version: str | None) -> datetime.date | None:
    # MP database versions are dates spelled "2025.09.25" (optionally with a suffix).
    if not version:
        return None
    try:
        return datetime.date(*(int(part) for part in str(version).split("_")[0].split(".")[:3]))
    except (TypeError, ValueError):
        return None


class MPApiReferences(MSONable):
    """Materials Project entries through ``mp-api``, cached in a maggma store.

    A chemical system is fetched once per cache store (one document per system,
    keyed by ``chemsys``); afterwards it, and every sub-system of it, is answered
    from the store, offline. The API key is never serialised with the provider:
    pass it at run time or set ``MP_API_KEY`` where the job runs.
    """

    hull_kind = HullKind.MP

    def __init__(
        self,
        cache_store: Store,
        api_key: str | None = None,
        rester_factory: Callable[[str | None], object] | None = None,
        compatible_only: bool = True,
    ) -> None:
        """
        Args:
            cache_store: Any maggma Store; holds one document per fetched chemical system.
            api_key: MP API key; None lets MPRester read ``MP_API_KEY``.
            rester_factory: Callable ``api_key -> MPRester``-like object (for tests and proxies).
            compatible_only: Ask MP for MP2020-compatible entries only (as the hull needs).
        """
        self.cache_store = cache_store
        self.api_key = api_key
        self.rester_factory = rester_factory
        self.compatible_only = compatible_only
        self._connected = False
        self._meta: dict[str, dict] = {}

    def as_dict(self) -> dict:
        """Serialise without the API key (job documents are stored and shared)."""
        return {
            "@module": type(self).__module__,
            "@class": type(self).__name__,
            "cache_store": self.cache_store.as_dict(),
            "api_key": None,
            "rester_factory": None,
            "compatible_only": self.compatible_only,
        }

    def _store(self) -> Store:
        if not self._connected:
            self.cache_store.connect()
            self._connected = True
        return self.cache_store

    def _cached(self, elements: frozenset[str]) -> dict | None:
        store = self._store()
        if doc := store.query_one({"chemsys": chemsys_of(elements)}):
            return doc
        for system in store.distinct("chemsys"):
            if elements <= elements_of(system):
                return store.query_one({"chemsys": system})
        return None

    def _fetch(self, elements: frozenset[str]) -> dict:
        factory = self.rester_factory or _default_rester_factory
        rester = factory(self.api_key)
        # MPRester holds an HTTP session: close it through its context manager when it has one.
        with rester if hasattr(rester, "__enter__") else contextlib.nullcontext(rester) as mpr:
            entries = mpr.get_entries_in_chemsys(sorted(elements), compatible_only=self.compatible_only)
            get_version = getattr(mpr, "get_database_version", None)
            version = get_version() if callable(get_version) else None
        doc = {
            "chemsys": chemsys_of(elements),
            "elements": sorted(elements),
            "entries": jsanitize([e.as_dict() for e in entries], strict=True),
            "n_entries": len(entries),
            "database_version": version,
            "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        if entries:  # an empty answer is an error now, and asked again next time
            self._store().update([doc], key="chemsys")
        return doc

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Entries within ``chemsys``, from the cache or (once) from the MP API."""
        elements = elements_of(chemsys)
        chemsys = chemsys_of(elements)
        doc = self._cached(elements) or self._fetch(elements)
        decoder = MontyDecoder()
        entries = entries_within((decoder.process_decoded(d) for d in doc["entries"]), elements)
        if not entries:
            raise MissingReferenceError(chemsys, "the Materials Project returned no entries")
        check_terminal_entries(entries, chemsys)
        self._meta[chemsys] = {k: doc.get(k) for k in ("database_version", "fetched_at", "chemsys")}
        return entries

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """MP database version (as the snapshot date) and the cached system the entries came from."""
        chemsys = chemsys_of(elements_of(chemsys))
        meta = self._meta.get(chemsys, {})
        version = meta.get("database_version")
        snapshot = _snapshot_from_version(version)
        if snapshot is None and meta.get("fetched_at"):
            snapshot = datetime.date.fromisoformat(meta["fetched_at"][:10])
        return ReferenceProvenance(
            provider="mp_api",
            source=f"Materials Project API, database {version or 'unknown'}, cached as {meta.get('chemsys', chemsys)}",
            snapshot_date=snapshot.isoformat() if snapshot else None,
            n_entries=n_entries,
            chemsys=chemsys,
        )


class CampaignInternalReferences(MSONable):
    """Entries computed with the campaign's own potential: elemental references and earlier phases.

    The only valid hull for potentials whose energies are not on MP's scale
    (OMat24, MatPES, unknown checkpoints).
    """

    hull_kind = HullKind.CAMPAIGN_INTERNAL

    def __init__(self, entries: Sequence[ComputedEntry], potential: str, snapshot_date: str | None = None) -> None:
        """
        Args:
            entries: Reference entries with energies from ``potential`` (elemental ones at least).
            potential: Name of the potential that produced the energies.
            snapshot_date: ISO date of the reference relaxations.
        """
        self.entries = list(entries)
        self.potential = potential
        self.snapshot_date = snapshot_date
        self._by_system: dict[frozenset[str], list[ComputedEntry]] = defaultdict(list)
        for entry in self.entries:
            self._by_system[frozenset(el.symbol for el in entry.elements)].append(entry)

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Entries within ``chemsys``; raises MissingReferenceError if an element has no reference."""
        elements = elements_of(chemsys)
        chemsys = chemsys_of(elements)
        entries = within(self._by_system, elements)
        check_terminal_entries(
            entries, chemsys, f" relaxed with {self.potential} (see relax_elemental_references)"
        )
        return entries

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Potential and relaxation date of the campaign-internal references."""
        return ReferenceProvenance(
            provider="campaign_internal",
            source=f"elemental references and campaign entries relaxed with {self.potential}",
            snapshot_date=self.snapshot_date,
            n_entries=n_entries,
            chemsys=chemsys_of(elements_of(chemsys)),
        )
