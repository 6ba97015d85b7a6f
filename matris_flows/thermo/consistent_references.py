"""A consistent hull for potentials whose energies are not on the Materials Project scale.

For OMat24/MatPES models, user checkpoints and ASE calculators an MP hull is meaningless,
and a hull of relaxed elements alone turns ``e_above_hull`` into the formation energy.
Instead, the MP reference phases of each chemical system of the campaign that lie within a
window of the MP hull (elements included) are relaxed with the campaign's own potential and
settings, and their energies (on the potential's own scale, no MP2020) are the references of
its hull.

This is an explicit subflow of the campaign: :class:`ConsistentReferencesMaker` selects the
phases and looks them up in a cache collection of the campaign store (one document per
relaxed phase, keyed by potential + checkpoint hash + MP entry content + relax settings); only
the phases not found are relaxed, by ordinary relaxation jobs, and the result is one
:class:`ConsistentReferenceSet` whose size grows with the reference phases, never with the
candidates. The per-chunk hull jobs read it as :class:`ConsistentReferences`.

The same job relaxes the corners of the systems outside the set: the MP ground state of each
element the campaign can produce (every element of the package's ground-state file when the
sources do not say) that no selected phase already covers. A system outside the set then gets
the elements' tie-line (its ``e_above_hull`` is the formation energy, and its provenance says
so); no hull job relaxes anything itself.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from jobflow import Flow, Maker, Response, job
from jobflow.core.job import JobConfig
from maggma.core import Store
from pydantic import BaseModel, Field
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matris_flows.core.chemsys import chemsys_of, elements_of
from matris_flows.core.ids import canonical_structure_text
from matris_flows.potentials.naming import MATRIS_MODELS, PotentialKind, parse_potential
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings
from matris_flows.thermo.assess import flatten_relaxations, maximal_systems
from matris_flows.thermo.elemental import (
    ELEMENTAL_ID_PREFIX,
    ElementalReferences,
    elemental_ground_state,
    ground_state_elements,
    ground_state_energy_per_atom,
)
from matris_flows.thermo.references import CampaignInternalReferences, MissingReferenceError, ReferenceProvider
from matris_flows.thermo.schemas import ReferenceProvenance

logger = logging.getLogger(__name__)

CACHE_COLLECTION = "consistent_references"
"""Campaign-store collection holding one document per reference phase relaxed with some potential."""

DEFAULT_WINDOW_EV = 0.1
"""MP phases up to this far above the MP hull (eV/atom) are relaxed: metastable ones can become stable."""

_ON_WINDOW = 1e-9  # eV/atom: a phase at exactly the window edge is in it


class ReferencePhase(BaseModel):
    """One MP reference phase relaxed with the campaign's potential (what a hull needs of it: no structure)."""

    phase_key: str = Field(description="Cache key of the relaxed phase (potential, settings, MP entry content).")
    entry_id: str = Field(description="Entry id of the MP phase that was relaxed.")
    material_id: str | None = Field(None, description="MP material id of the phase.")
    formula: str = Field(description="Formula of the relaxed cell (not reduced).")
    energy: float | None = Field(None, description="Total energy of the relaxed cell with the campaign's potential, eV.")
    mp_e_above_hull: float = Field(description="Energy above the MP hull of the reference data, eV/atom.")
    relax_status: str = Field(description="converged, not_converged or failed.")
    failure_reason: str | None = Field(None, description="Why the relaxation failed.")

    @property
    def usable(self) -> bool:
        """True when the relaxation produced an energy."""
        return self.energy is not None and self.relax_status != "failed"


class ConsistentReferenceSet(BaseModel):
    """The reference phases of a consistent hull: MP phases within a window, relaxed with one potential.

    Its size grows with the number of reference phases only; the relaxed structures are in
    the cache collection (``cache_collection``), found by ``phase_key``.
    """

    set_key: str = Field(description="Fingerprint of this set (potential, settings, phases): names the hull in provenance.")
    potential: str = Field(description="Potential the phases were relaxed with.")
    potential_fingerprint: str = Field(description="Potential name, weights identity (checkpoint SHA-256 or release) and options.")
    settings_hash: str = Field(description="Hash of the relaxation settings and potential options.")
    reference_source: str = Field(description="Where the MP phases came from (reference provider provenance).")
    snapshot_date: str | None = Field(None, description="Snapshot date of the MP reference data, where known.")
    window_ev: float = Field(description="Phases up to this far above the MP hull were relaxed, eV/atom.")
    systems: list[str] = Field(default_factory=list, description="Chemical systems the set is complete for (all subsystems).")
    missing_systems: list[str] = Field(default_factory=list, description="Requested systems without MP reference data.")
    elemental_corners: list[str] = Field(
        default_factory=list,
        description="Elements whose MP ground state was relaxed as a corner for the systems outside ``systems`` "
        "(their phases are in ``phases``, entry ids elemental-ref-<El>).",
    )
    phases: list[ReferencePhase] = Field(default_factory=list, description="Every selected phase, with its relaxed energy.")
    n_relaxed: int = Field(0, description="Phases relaxed by this run (0: everything came from the cache).")
    n_from_cache: int = Field(0, description="Phases found in the cache collection.")
    cache_collection: str | None = Field(None, description="Collection holding the relaxed phases (None: no cache).")
    created_at: str = Field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(), description="When built.")

    @property
    def n_failed(self) -> int:
        """Phases whose relaxation produced no energy (left out of the hull)."""
        return sum(not p.usable for p in self.phases)


# -- keys ----------------------------------------------------------------------------------
def _sha(text: str, length: int = 24) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _package_version(module: str) -> str:
    try:
        return version(module.split(".")[0])
    except PackageNotFoundError:
        return "unknown"


@cache
def _file_sha256(path: str, size: int, mtime: float) -> str:
    from matris_flows.potentials.matris_weights import file_sha256

    return file_sha256(path)


def potential_fingerprint(name: str, options: dict | None = None) -> str:
    """Identity of a potential's weights without loading it: what makes two energies comparable.

    A checkpoint file is identified by its SHA-256; a MatRIS key by its (immutable) release
    file; a packaged model or an ASE calculator by its package version. Loader options are
    part of it (they can change the energies: MatRIS ``mode``, CHGNet ``model_version``).
    """
    spec = parse_potential(name, options)
    if spec.kind is PotentialKind.MATRIS_CHECKPOINT:
        path = Path(spec.name).expanduser()
        stat = path.stat()
        weights = f"sha256:{_file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime)}"
    elif spec.kind is PotentialKind.MATRIS_KEY:
        weights = f"release:{MATRIS_MODELS[spec.name][0]}"
    elif spec.kind is PotentialKind.ASE:
        weights = f"{spec.name.replace(':', '.').split('.')[0]}=={_package_version(spec.name)}"
    else:
        weights = f"{spec.kind.value}=={_package_version(spec.kind.value)}"
    return json.dumps({"name": spec.name, "weights": weights, "options": options or {}}, sort_keys=True, default=str)


def settings_hash(settings: RelaxSettings, options: dict | None = None) -> str:
    """Hash of what changes a relaxed energy besides the weights: relax settings and loader options."""
    return _sha(json.dumps({"settings": settings.model_dump(mode="json"), "options": options or {}}, sort_keys=True, default=str), 16)


def entry_fingerprint(entry: ComputedStructureEntry) -> str:
    """Content hash of an MP entry (id, energies, structure): a new snapshot with changed data gets a new key."""
    text = json.dumps(
        [str(entry.entry_id), round(entry.uncorrected_energy, 6), round(entry.correction, 6), canonical_structure_text(entry.structure)],
        separators=(",", ":"),
    )
    return _sha(text)


def phase_key(fingerprint: str, settings_key: str, entry: ComputedStructureEntry) -> str:
    """Cache key of one relaxed reference phase."""
    return _sha(f"{fingerprint}|{settings_key}|{entry_fingerprint(entry)}", 32)


# -- selection -------------------------------------------------------------------------------
@dataclass
class PhaseSelection:
    """MP phases within the window of the MP hull, per requested system."""

    entries: list[ComputedStructureEntry] = field(default_factory=list)
    e_above_hull: dict[str, float] = field(default_factory=dict)
    systems: list[str] = field(default_factory=list)
    missing_systems: list[str] = field(default_factory=list)
    source: str = ""
    snapshot_date: str | None = None


def select_reference_phases(references: ReferenceProvider, systems: Iterable[str], window_ev: float = DEFAULT_WINDOW_EV) -> PhaseSelection:
    """The reference phases of ``systems`` (and all their subsystems) within ``window_ev`` of the MP hull.

    Elemental phases are included (the ground states are on the hull). A system the provider
    has no data for is listed in ``missing_systems``; entries without a structure cannot be
    relaxed and are left out (the hull then fails loudly if an element has none).
    """
    selection = PhaseSelection()
    sources: list[str] = []
    seen: set[str] = set()
    for system in maximal_systems(elements_of(s) for s in systems):
        chemsys = chemsys_of(system)
        try:
            entries = references.get_entries(chemsys)
        except MissingReferenceError as exc:
            logger.warning("no consistent references for %s: %s", chemsys, exc)
            selection.missing_systems.append(chemsys)
            continue
        provenance = references.provenance(chemsys, len(entries))
        sources.append(provenance.source)
        selection.snapshot_date = selection.snapshot_date or provenance.snapshot_date
        selection.systems.append(chemsys)
        pd = PhaseDiagram(entries)
        for entry in entries:
            e_hull = pd.get_e_above_hull(entry, allow_negative=True)
            if e_hull > window_ev + _ON_WINDOW or not isinstance(entry, ComputedStructureEntry):
                continue
            entry_id = str(entry.entry_id)
            if entry_id in seen:
                continue
            seen.add(entry_id)
            selection.entries.append(entry)
            selection.e_above_hull[entry_id] = float(max(e_hull, 0.0))
    selection.source = "; ".join(dict.fromkeys(sources))
    return selection


def _phase_from_relaxation(item: dict, doc: RelaxationDocument) -> ReferencePhase:
    return ReferencePhase(
        **item,
        formula=(doc.structure or doc.input_structure).composition.formula,
        energy=doc.energy if doc.succeeded else None,
        relax_status=doc.status.value,
        failure_reason=doc.failure_reason,
    )


# -- provider --------------------------------------------------------------------------------
class ConsistentReferences(CampaignInternalReferences):
    """Reference provider of a consistent hull: the relaxed MP phases of a :class:`ConsistentReferenceSet`.

    A chemical system outside the set's systems is answered by ``fallback`` (a provider, or a
    zero-argument factory called on first need) when one is given, else by the set's own
    elemental phases (the elements' tie-line), else it raises MissingReferenceError;
    provenance says which hull each system got.
    """

    def __init__(
        self, reference_set: ConsistentReferenceSet, fallback: ReferenceProvider | Callable[[], ReferenceProvider] | None = None
    ) -> None:
        """
        Args:
            reference_set: The relaxed reference phases.
            fallback: Provider for systems the set does not cover.
        """
        entries = [
            ComputedEntry(
                Composition(p.formula), p.energy, entry_id=p.entry_id, data={"material_id": p.material_id, "phase_key": p.phase_key}
            )
            for p in reference_set.phases
            if p.usable
        ]
        super().__init__(entries, potential=reference_set.potential, snapshot_date=reference_set.snapshot_date)
        self.reference_set = reference_set
        self.cache_key = ("consistent", reference_set.set_key)  # per-process hull cache of assess.reference_hull
        self._systems = [elements_of(s) for s in reference_set.systems]
        self._fallback = fallback if fallback is not None else _corners(reference_set, entries)

    @classmethod
    def from_output(cls, output: Any, fallback: ReferenceProvider | Callable[[], ReferenceProvider] | None = None) -> ConsistentReferences:
        """From a :class:`ConsistentReferenceSet` or its dict (a job output)."""
        reference_set = output if isinstance(output, ConsistentReferenceSet) else ConsistentReferenceSet.model_validate(output)
        return cls(reference_set, fallback)

    def covers(self, chemsys: str) -> bool:
        """Whether ``chemsys`` is within one of the set's systems."""
        elements = elements_of(chemsys)
        return any(elements <= system for system in self._systems)

    def _fallback_provider(self) -> ReferenceProvider | None:
        if self._fallback is not None and not hasattr(self._fallback, "get_entries"):
            self._fallback = self._fallback()
        return self._fallback

    def get_entries(self, chemsys: str) -> list[ComputedEntry]:
        """Relaxed reference phases within ``chemsys``, or the fallback's entries outside the set."""
        if self.covers(chemsys):
            return super().get_entries(chemsys)
        fallback = self._fallback_provider()
        if fallback is None:
            covered = ", ".join(self.reference_set.systems) or "none"
            raise MissingReferenceError(chemsys, f"outside the consistent reference systems ({covered})")
        return fallback.get_entries(chemsys)

    def provenance(self, chemsys: str, n_entries: int) -> ReferenceProvenance:
        """Which reference set (potential, window, MP source) the hull of ``chemsys`` was built from."""
        if not self.covers(chemsys) and self._fallback_provider() is not None:
            return self._fallback_provider().provenance(chemsys, n_entries)
        s = self.reference_set
        return ReferenceProvenance(
            provider="campaign_internal",
            source=(
                f"consistent hull: MP phases within {s.window_ev:g} eV/atom of the MP hull ({s.reference_source}), "
                f"relaxed with {s.potential}; reference set {s.set_key} ({s.cache_collection or 'not cached'})"
            ),
            snapshot_date=s.snapshot_date,
            n_entries=n_entries,
            chemsys=chemsys_of(elements_of(chemsys)),
            reference_set=s.set_key,
        )


def _corners(reference_set: ConsistentReferenceSet, entries: list[ComputedEntry]) -> ElementalReferences | None:
    """The set's relaxed elemental phases as the elements' tie-line (None: the set relaxed no corners)."""
    if not reference_set.elemental_corners:
        return None
    corners = [e for e in entries if len(e.composition.elements) == 1]
    return ElementalReferences(corners, potential=reference_set.potential, snapshot_date=reference_set.created_at[:10])


def elemental_corner_entries(selection: PhaseSelection, elements: Iterable[str] | None) -> list[ComputedStructureEntry]:
    """MP ground states of ``elements`` (None: every element of the ground-state file) no selected phase covers.

    They are relaxed with the reference phases and serve as the corners of the systems outside
    the set. Their energy is MP's (uncorrected), so the cache key changes with the data file.
    """
    covered = {e.composition.elements[0].symbol for e in selection.entries if len(e.composition.elements) == 1}
    wanted = sorted(set(elements) if elements is not None else ground_state_elements())
    corners = []
    for symbol in wanted:
        if symbol in covered:
            continue
        structure, energy_per_atom = elemental_ground_state(symbol), ground_state_energy_per_atom(symbol)
        corners.append(
            ComputedStructureEntry(structure, energy_per_atom * len(structure), entry_id=f"{ELEMENTAL_ID_PREFIX}-{symbol}")
        )
    return corners


# -- jobs ------------------------------------------------------------------------------------
def _connected(store: Store | None) -> Store | None:
    if store is not None:
        store.connect()
    return store


def _set_key(fingerprint: str, settings_key: str, window_ev: float, phase_keys: Iterable[str]) -> str:
    return _sha(json.dumps([fingerprint, settings_key, window_ev, sorted(phase_keys)]))


@dataclass
class ConsistentReferencesMaker(Maker):
    """Relax the MP reference phases near the MP hull with the campaign's potential (cached in the store).

    ``make()`` is a job that selects the phases of ``chemsys`` within ``window_ev`` of the MP
    hull and looks them up in ``cache_store``; when some are missing it is replaced by
    relaxation jobs (``relax``, the campaign's potential and settings, ``chunk_size`` phases
    each) and a job that caches their results. Its output is a
    :class:`ConsistentReferenceSet`. Both bookkeeping jobs run where the store is (they read
    the cache); the relaxations run anywhere.

    Parameters
    ----------
    name
        Job name.
    references
        Provider of the MP phases (ComputedStructureEntry-s: local files or the MP API).
    relax
        The campaign's relaxation Maker (same potential, settings and device).
    chemsys
        Chemical systems of the campaign (every subsystem is included); None: chosen by
        :func:`campaign_systems` from the reference provider and ``elements``.
    elements
        Elements the campaign's candidates can have, when known: they narrow the default
        systems, and each one gets a relaxed elemental corner (None: every element of the
        package's ground-state file does, for sources that can bring any).
    window_ev
        Phases up to this far above the MP hull are relaxed, eV/atom.
    cache_store
        Store of the relaxed phases (``consistent_references`` collection); None: no cache.
    chunk_size
        Phases per relaxation job.
    """

    name: str = "consistent references"
    references: Any = None
    relax: RelaxMaker = field(default_factory=RelaxMaker)
    chemsys: list[str] | None = None
    elements: list[str] | None = None
    window_ev: float = DEFAULT_WINDOW_EV
    cache_store: Store | None = None
    chunk_size: int = 50

    # No output_schema here: when replaced, jobflow stores a reference to ``finish``'s output under this job.
    @job(config=JobConfig(expose_store=True))
    def make(self) -> Response | ConsistentReferenceSet:
        """Select the phases, reuse the cached ones, and relax the others (replacing this job)."""
        from matris_flows.thermo.references import LocalFileReferences

        references = self.references or LocalFileReferences()
        systems = campaign_systems(self.chemsys, references, self.elements)
        selection = select_reference_phases(references, systems, self.window_ev)
        corners = elemental_corner_entries(selection, self.elements)
        for entry in corners:
            selection.entries.append(entry)
            selection.e_above_hull[str(entry.entry_id)] = 0.0
        fingerprint = potential_fingerprint(self.relax.potential, self.relax.potential_options)
        settings_key = settings_hash(self.relax.settings, self.relax.potential_options)
        keys = {str(e.entry_id): phase_key(fingerprint, settings_key, e) for e in selection.entries}

        cache_store = _connected(self.cache_store)
        cached: dict[str, ReferencePhase] = {}
        if cache_store is not None and keys:
            for doc in cache_store.query({"phase_key": {"$in": list(keys.values())}}, properties=list(ReferencePhase.model_fields)):
                doc.pop("_id", None)
                cached[doc["phase_key"]] = ReferencePhase.model_validate(doc)
        todo = [e for e in selection.entries if keys[str(e.entry_id)] not in cached]
        header = {
            "potential": self.relax.potential,
            "potential_fingerprint": fingerprint,
            "settings_hash": settings_key,
            "reference_source": selection.source or "none",
            "snapshot_date": selection.snapshot_date,
            "window_ev": self.window_ev,
            "systems": selection.systems,
            "missing_systems": selection.missing_systems,
            "elemental_corners": sorted(str(e.entry_id).removeprefix(f"{ELEMENTAL_ID_PREFIX}-") for e in corners),
            "cache_collection": None if cache_store is None else CACHE_COLLECTION,
            "set_key": _set_key(fingerprint, settings_key, self.window_ev, keys.values()),
        }
        logger.info(
            "consistent references for %s: %d phases within %g eV/atom and %d elemental corners, %d cached, %d to relax",
            ", ".join(systems) or "no systems", len(keys) - len(corners), self.window_ev, len(corners), len(cached), len(todo),
        )
        ordered = [keys[str(e.entry_id)] for e in selection.entries]
        if not todo:
            phases = [cached[k] for k in ordered]
            return ConsistentReferenceSet(**header, phases=phases, n_relaxed=0, n_from_cache=len(phases))

        # the elemental corners are small cells (an unsupported element fails at the input check):
        # one job for all of them, whatever the chunk size
        corner_ids = {str(e.entry_id) for e in corners}
        phases_todo = [e for e in todo if str(e.entry_id) not in corner_ids]
        size = max(1, self.chunk_size)
        parts = [phases_todo[start : start + size] for start in range(0, len(phases_todo), size)]
        parts += [corners_todo] if (corners_todo := [e for e in todo if str(e.entry_id) in corner_ids]) else []
        relax_jobs = []
        for index, part in enumerate(parts):
            relax_job = self.relax.make([e.structure for e in part], [str(e.entry_id) for e in part])
            relax_job.name = f"{self.name}: relax {index}"
            relax_jobs.append(relax_job)
        pending = [
            {
                "phase_key": keys[str(e.entry_id)],
                "entry_id": str(e.entry_id),
                "material_id": (e.data or {}).get("material_id"),
                "mp_e_above_hull": selection.e_above_hull[str(e.entry_id)],
            }
            for e in todo
        ]
        finish = self.finish([j.output for j in relax_jobs], pending, [p.model_dump() for p in cached.values()], ordered, header)
        finish.name = f"{self.name}: cache"
        return Response(replace=Flow([*relax_jobs, finish], output=finish.output, name=self.name))

    # Waits for every relaxation job: one that failed as a whole (a potential that cannot be loaded, a
    # lost worker; one bad structure only fails itself) fails the campaign loudly here, and ``resume``
    # reruns it and this job, instead of every hull job using a set with a hole in it.
    @job(output_schema=ConsistentReferenceSet, config=JobConfig(expose_store=True))
    def finish(
        self, relaxations: list, pending: list[dict], cached: list[dict], ordered: list[str], header: dict
    ) -> ConsistentReferenceSet:
        """Cache the new relaxed phases (with their structures) and return the whole set."""
        documents = {d.candidate_id: d for d in flatten_relaxations(relaxations)}
        phases = {p["phase_key"]: ReferencePhase.model_validate(p) for p in cached}
        rows = []
        now = datetime.datetime.now(datetime.UTC).isoformat()
        for item in pending:
            doc = documents.get(item["entry_id"])
            if doc is None:  # not in its relaxation job's output: reported, not cached (retried next time)
                failed = ReferencePhase(**item, formula="", relax_status="failed", failure_reason="the relaxation job failed")
                phases[failed.phase_key] = failed
                continue
            phase = _phase_from_relaxation(item, doc)
            phases[phase.phase_key] = phase
            rows.append(
                {
                    **phase.model_dump(),
                    "potential": header["potential"],
                    "potential_fingerprint": header["potential_fingerprint"],
                    "checkpoint_sha256": doc.potential.checkpoint_sha256,
                    "settings_hash": header["settings_hash"],
                    "reference_source": header["reference_source"],
                    "snapshot_date": header["snapshot_date"],
                    "chemsys": doc.chemsys,
                    "energy_per_atom": doc.energy_per_atom,
                    "structure": doc.structure.as_dict() if doc.structure is not None else None,
                    "relaxed_at": now,
                }
            )
        cache_store = _connected(self.cache_store)
        if cache_store is not None and rows:
            cache_store.update(rows, key="phase_key")
        return ConsistentReferenceSet(
            **header,
            phases=[phases[k] for k in ordered if k in phases],
            n_relaxed=len(rows),
            n_from_cache=len(cached),
        )


def consistent_provider(
    output: Any, fallback: ReferenceProvider | Callable[[], ReferenceProvider] | None = None
) -> ConsistentReferences | ReferenceProvider | Callable[[], ReferenceProvider] | None:
    """The provider a hull job uses: the consistent set when there is one, else ``fallback``."""
    if output is None:
        return fallback
    return ConsistentReferences.from_output(output, fallback)


def campaign_systems(
    explicit: Sequence[str] | None, references: ReferenceProvider, elements: Iterable[str] | None, max_elements: int = 4
) -> list[str]:
    """The chemical systems whose reference phases a campaign relaxes.

    ``explicit`` systems when given. Otherwise, for reference files: each system a file is
    complete for, restricted to the campaign's ``elements`` when they are known from the
    spec (None: not known, e.g. candidates from files). Other providers (the MP API) get the
    system of the campaign's elements when known and at most ``max_elements`` large, else none.
    """
    if explicit:
        return [chemsys_of(elements_of(s)) for s in explicit]
    wanted = frozenset(elements) if elements is not None else None
    covered = getattr(references, "covered_systems", None)
    if callable(covered):
        systems = [system if wanted is None else system & wanted for system in covered()]
        return [chemsys_of(s) for s in maximal_systems(s for s in systems if len(s) > 1)]
    if wanted is not None and 1 < len(wanted) <= max_elements:
        return [chemsys_of(wanted)]
    logger.warning("no chemical systems for the consistent hull: list them in hull.references.internal_chemsys")
    return []


def copy_relax_maker(relax: RelaxMaker, name: str) -> RelaxMaker:
    """The campaign's relaxation Maker under another name (same potential, settings, device)."""
    return replace(relax, name=name, store_trajectories=False)
