"""Reference entries for convex hulls, from pluggable providers.

Every provider answers ``get_entries(chemsys)`` with the entries whose elements
are a subset of the requested system (a hull needs every sub-system), and raises
``MissingReferenceError`` naming the system when it cannot — a missing reference
must never turn into a silent zero above a hull built from too few phases.

Candidates are put on the GGA/GGA+U + MP2020 energy scale, so every provider
refuses (``ReferenceDataError``) entries on another scale — r2SCAN runs and MP's
mixed GGA/r2SCAN hull, whose GGA entries are shifted by mixing adjustments — and
entries of one material from two database snapshots, which move hull distances
by tens of meV/atom without any other sign.
"""

import contextlib
import datetime
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from maggma.core import Store
from monty.json import MontyDecoder, MSONable, jsanitize
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.core.chemsys import chemsys_of, elements_of, within
from matris_flows.core.data_paths import PACKAGE_PREFIX, resolve_data_path
from matris_flows.core.serialization import safe_loadfn
from matris_flows.thermo.schemas import HullKind, ReferenceProvenance

# Shipped in matris_flows/data (see its README.md): the Li-Fe-O subsystem of MP's Li-Fe-P-O
# system, one consistent snapshot. The only reference data the package has without a path.
DEFAULT_REFERENCE_FILE = "mp_Li-Fe-O_2024-11-21.json.gz"
DEFAULT_SNAPSHOT_DATE = "2024-11-21"

MP_THERMO_TYPE = "GGA_GGA+U"
"""The MP thermo type on the candidates' scale (mp-api's default is the mixed GGA_GGA+U_R2SCAN hull)."""
GGA_RUN_TYPES = frozenset({"GGA", "GGA+U", "GGA_U"})  # MP spells GGA+U "GGA_U" in entry.data
SAME_ENERGY_TOL = 1e-6
"""eV/atom: two entries of one material further apart than this come from different snapshots."""

# MP entry ids carry the thermo type of their calculation: mp-13-GGA, mp-19-GGA+U, mp-1-r2SCAN.
_RUN_TYPE_SUFFIX = re.compile(r"-(GGA\+U|GGA|R2SCAN)$", re.IGNORECASE)


def default_reference_files() -> list[str]:
    """The reference data shipped with the package: MP Li-Fe-O (snapshot of 2024-11-21), as a ``package:`` name.

    Other chemical systems need ``hull.references.paths`` (entry files) or the MP API
    provider; nothing outside the package is read by default.
    """
    return [PACKAGE_PREFIX + DEFAULT_REFERENCE_FILE]


class ReferenceDataError(ValueError):
    """Reference data that must not go on a hull: another energy scale, or a mix of snapshots."""


def material_id_of(entry: ComputedEntry) -> str | None:
    """The MP material id of ``entry``: ``data['material_id']``, else its entry id without ``-GGA``/``-GGA+U``/``-r2SCAN``."""
    raw = (entry.data or {}).get("material_id") or entry.entry_id
    return None if raw is None else _RUN_TYPE_SUFFIX.sub("", str(raw))


def scale_problem(entry: ComputedEntry) -> str | None:
    """Why ``entry`` is not on the GGA/GGA+U + MP2020 scale, or None.

    Entries that name no run type (hand-made files) are taken as they are.
    """
    for run_type in (entry.parameters.get("run_type"), (entry.data or {}).get("run_type")):
        if run_type is not None and str(run_type).upper() not in GGA_RUN_TYPES:
            return f"run type {run_type}"
    if entry.entry_id is not None and str(entry.entry_id).upper().endswith("-R2SCAN"):
        return "an r2SCAN entry id"
    for adjustment in entry.energy_adjustments:
        # MP2020's own "GGA/GGA+U mixing correction" is part of the scale; the r2SCAN mixing
        # scheme's "MP GGA(+U)/R2SCAN mixing adjustment" moves entries onto another one.
        name = str(getattr(adjustment, "name", "")).lower()
        if "r2scan" in name or "mixing adjustment" in name:
            return f"the energy adjustment {adjustment.name!r}"
    return None


def check_gga_scale(entries: Iterable[ComputedEntry], source: str) -> None:
    """Raise ReferenceDataError when an entry of ``source`` is not on the GGA/GGA+U + MP2020 scale."""
    bad = [(entry, problem) for entry in entries if (problem := scale_problem(entry))]
    if bad:
        entry, problem = bad[0]
        raise ReferenceDataError(
            f"reference data {source}: {len(bad)} entries are not on the GGA/GGA+U (MP2020) energy scale of the "
            f"candidates, e.g. {entry.entry_id} ({entry.composition.reduced_formula}) with {problem}; use GGA/GGA+U "
            f"entries only (MP API thermo type {MP_THERMO_TYPE}, not the mixed GGA/r2SCAN hull)"
        )


def check_one_snapshot(sources: Iterable[tuple[str, Sequence[ComputedEntry]]]) -> None:
    """Raise ReferenceDataError when two entries of one material have different energies.

    ``sources`` are (file or answer name, entries). The same material from two sources is
    fine when its energy agrees (an elemental file beside a chemical-system dump of the same
    snapshot); otherwise the sources are different database snapshots and must not be pooled.
    """
    first: dict[str, tuple[str, ComputedEntry]] = {}
    conflicts: list[tuple[str, ComputedEntry, str, ComputedEntry]] = []
    for source, entries in sources:
        for entry in entries:
            material = material_id_of(entry)
            if material is None:
                continue
            if material not in first:
                first[material] = (source, entry)
                continue
            other_source, other = first[material]
            if abs(other.energy_per_atom - entry.energy_per_atom) > SAME_ENERGY_TOL:
                conflicts.append((other_source, other, source, entry))
    if not conflicts:
        return
    a_source, a, b_source, b = conflicts[0]
    where = f"{a_source!r} holds" if a_source == b_source else f"{a_source!r} and {b_source!r} hold"
    raise ReferenceDataError(
        f"reference data from two snapshots: {where} different energies for {len(conflicts)} entries of the same "
        f"materials, e.g. {material_id_of(a)} {a.composition.reduced_formula}: {a.energy_per_atom:.4f} ({a.entry_id}) vs "
        f"{b.energy_per_atom:.4f} ({b.entry_id}) eV/atom; use entries of one snapshot only"
    )


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
    is complete only for each single element. ``package:<file>`` names a file shipped with matris_flows.
    """
    data = safe_loadfn(resolve_data_path(path))  # a user's file: classes from the allowlist only
    if isinstance(data, dict):
        entries = [e if isinstance(e, ComputedEntry) else MontyDecoder().process_decoded(e) for e in data.values()]
        return entries, [frozenset({e.elements[0].symbol}) for e in entries if len(e.elements) == 1]
    entries = [e if isinstance(e, ComputedEntry) else MontyDecoder().process_decoded(e) for e in data]
    elements = frozenset(el.symbol for e in entries for el in e.elements)
    return entries, [elements] if elements else []


@dataclass(frozen=True)
class _LoadedFiles:
    by_system: dict[frozenset[str], list[ComputedEntry]]
    complete_for: tuple[frozenset[str], ...]
    snapshot: str


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(resolve_data_path(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@lru_cache(maxsize=4)
def _load_entry_files(paths: tuple[str, ...]) -> _LoadedFiles:
    # Every hull job of a campaign reads the same files: once per process (seconds for 1000 entries).
    entries: list[ComputedEntry] = []
    complete: list[frozenset[str]] = []
    per_file: list[tuple[str, list[ComputedEntry]]] = []
    for path in paths:
        file_entries, complete_for = load_entry_file(path)
        check_gga_scale(file_entries, repr(path))  # a wrong file fails here, not as a quietly shifted hull
        per_file.append((path, file_entries))
        entries.extend(file_entries)
        complete.extend(complete_for)
    check_one_snapshot(per_file)
    by_system: dict[frozenset[str], list[ComputedEntry]] = defaultdict(list)
    for entry in _dedupe(entries):
        by_system[frozenset(el.symbol for el in entry.elements)].append(entry)
    snapshot = ", ".join(f"{Path(p).name} sha256:{_file_digest(p)}" for p in paths)
    return _LoadedFiles(dict(by_system), tuple(complete), snapshot)


class LocalFileReferences(MSONable):
    """Reference entries from local JSON(.gz) files of entry dicts.

    A request is answered only when some file is complete for a superset of the
    requested system, so a Na-Cl candidate is not put on a hull made of the
    elemental file alone. Files are refused (``ReferenceDataError``, when first read)
    if an entry is not on the GGA/GGA+U scale or two files hold one material with
    different energies (two snapshots).
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
            paths: Entry files; default: ``default_reference_files()`` (the packaged MP Li-Fe-O data).
            snapshot_date: ISO date of the data, recorded in the provenance (known for the default).
            provider_name: Name recorded in the provenance.
        """
        if paths is None:
            paths, snapshot_date = default_reference_files(), snapshot_date or DEFAULT_SNAPSHOT_DATE
        self.paths = [str(p) for p in paths]
        self.snapshot_date = snapshot_date
        self.provider_name = provider_name
        self._by_system: dict[frozenset[str], list[ComputedEntry]] | None = None
        self._complete_for: list[frozenset[str]] = []
        self._snapshot: str | None = None

    @property
    def cache_key(self) -> tuple:
        """Identity of the reference data, for per-process hull caches."""
        return ("local_files", tuple(self.paths))

    def _load(self) -> dict[frozenset[str], list[ComputedEntry]]:
        if self._by_system is None:
            loaded = _load_entry_files(tuple(self.paths))
            self._by_system = loaded.by_system
            self._complete_for = list(loaded.complete_for)
            self._snapshot = loaded.snapshot
        return self._by_system

    def covered_systems(self) -> list[frozenset[str]]:
        """The chemical systems some file is complete for (each subsystem of one is complete too)."""
        self._load()
        return list(self._complete_for)

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Entries within ``chemsys``; raises MissingReferenceError if no file covers it."""
        elements = elements_of(chemsys)
        chemsys = chemsys_of(elements)
        by_system = self._load()
        if not any(elements <= complete for complete in self._complete_for):
            covered = ", ".join(sorted(chemsys_of(c) for c in self._complete_for if len(c) > 1)) or "none"
            raise MissingReferenceError(
                chemsys,
                f"no reference file covers it (multi-element systems covered: {covered}; files: {self.paths}); "
                "give entry files of it in hull.references.paths, or use provider mp_api",
            )
        entries = within(by_system, elements)
        check_terminal_entries(entries, chemsys)
        return entries

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Provider, files (with their hashes) and snapshot date of the entries returned for ``chemsys``."""
        self._load()
        return ReferenceProvenance(
            provider=self.provider_name,
            source=", ".join(Path(p).name for p in self.paths),
            snapshot_date=self.snapshot_date,
            snapshot=self._snapshot,
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

    MP is asked for thermo type ``GGA_GGA+U`` explicitly (mp-api's default is the
    mixed GGA/r2SCAN hull, on another scale than the candidates); an answer or cached
    document with entries of another scale, or two energies for one material, is
    refused with ``ReferenceDataError`` and never cached. Cache documents written
    without the thermo type (older versions) are not used.
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
        if doc := store.query_one({"chemsys": chemsys_of(elements), "thermo_type": MP_THERMO_TYPE}):
            return doc
        for system in store.distinct("chemsys", criteria={"thermo_type": MP_THERMO_TYPE}):
            if elements <= elements_of(system):
                return store.query_one({"chemsys": system, "thermo_type": MP_THERMO_TYPE})
        return None

    def _fetch(self, elements: frozenset[str]) -> dict:
        factory = self.rester_factory or _default_rester_factory
        rester = factory(self.api_key)
        # MPRester holds an HTTP session: close it through its context manager when it has one.
        with rester if hasattr(rester, "__enter__") else contextlib.nullcontext(rester) as mpr:
            entries = mpr.get_entries_in_chemsys(
                sorted(elements),
                compatible_only=self.compatible_only,
                additional_criteria={"thermo_types": [MP_THERMO_TYPE]},
            )
            get_version = getattr(mpr, "get_database_version", None)
            version = get_version() if callable(get_version) else None
        answer = f"the Materials Project API answer for {chemsys_of(elements)}"
        check_gga_scale(entries, answer)  # before caching: a refused answer is asked again next time
        check_one_snapshot([(answer, entries)])
        doc = {
            "chemsys": chemsys_of(elements),
            "thermo_type": MP_THERMO_TYPE,
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
        cached_as = f"cached MP entries of {doc['chemsys']} ({self.cache_store.name})"
        check_gga_scale(entries, cached_as)
        check_one_snapshot([(cached_as, entries)])
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
            source=f"Materials Project API, database {version or 'unknown'}, thermo type {MP_THERMO_TYPE}, "
            f"cached as {meta.get('chemsys', chemsys)}",
            snapshot_date=snapshot.isoformat() if snapshot else None,
            snapshot=f"Materials Project database {version or 'unknown'} ({MP_THERMO_TYPE}, fetched {meta.get('fetched_at')})",
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
