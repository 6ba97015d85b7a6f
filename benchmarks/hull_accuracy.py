"""Hull accuracy: a campaign vs a plain CHGNet + pymatgen loop on perturbed MP Li-Fe-P-O phases.

A deterministic, seeded sample of ``--n`` (default 120) entries of at most 12 sites is drawn
from the complete MP Li-Fe-P-O system (``../shared/data/mp_chemsys/Li-Fe-P-O.json.gz``);
each structure is rattled (every site moved 0.05 Å in a random direction) and strained
(a random symmetric strain, components uniform in ±2 %). The same inputs then go through

- a campaign: ``files`` source (one pymatgen JSON per structure), CHGNet, default relax
  settings, the MP Li-Fe-P-O file as reference hull, a local Dask cluster of 2 workers.
  Generation dedup against references is off (every input *is* an MP phase; dedup would
  drop them all before relaxation);
- a plain loop: CHGNet ``StructOptimizer`` with the campaign's relax settings (fmax,
  max steps, read back from a candidate document) and one pymatgen ``PhaseDiagram`` of the
  MP entries; CHGNet energies are on the MP2020 scale, so no correction is applied. It runs
  in this process after the campaign, at default threads (nothing here pins them: the
  campaign's workers pin their own through the execution profile; what Dask's nannies set in
  this process's environment is undone first, see :class:`DefaultThreads`).

Both e_above_hull values are unclipped (negative below the MP hull) and compared with MP's
DFT ``e_above_hull`` (the file's key). Printed, for both: MAE and median absolute error over
the entries both relaxed, F1 of "stable" at 0 and at 0.05 eV/atom, failures, wall time, the
speedup (loop wall / campaign wall); the
inputs generation dropped, by reason; and the sampled MP phases the campaign recognises as
known, out of the whole sample: candidates whose document carries ``matches_reference``, plus
inputs that generation dedup merged into a recognised input (MP holds entries that are one
crystal under the dedup tolerances); "n/a" when the documents do not carry the field. The
last line is

    hull_mae_delta_vs_plain_loop: <|MAE_campaign - MAE_loop|>

    python benchmarks/hull_accuracy.py --n 10     # a few minutes on 2 cores
    python benchmarks/hull_accuracy.py            # 120 entries
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mp_chemsys" / "Li-Fe-P-O.json.gz"
RATTLE_A = 0.05
STRAIN = 0.02


class DefaultThreads:
    """This process's thread settings before a campaign, to run the plain loop at default threads after it.

    A local Dask cluster's nannies, which live in the driver, put ``OMP_NUM_THREADS=1`` (and the
    MKL/OpenBLAS ones) into the driver's environment when they spawn their workers (Dask's
    ``distributed.nanny.pre-spawn-environ``), so torch first used after a campaign would run on
    one thread. Taken before the campaign (imports torch), put back by :meth:`restore`.
    """

    _VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

    def __init__(self) -> None:
        import torch

        self.env = {var: os.environ.get(var) for var in self._VARS}
        self.torch_threads = torch.get_num_threads()

    def restore(self) -> int:
        """Put the environment and torch's intra-op threads back; returns torch's thread count."""
        import torch

        for var, value in self.env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        torch.set_num_threads(self.torch_threads)
        return torch.get_num_threads()


def load_sample(path: Path, n: int, max_sites: int, seed: int) -> list[tuple[object, float]]:
    """``n`` (ComputedStructureEntry, MP e_above_hull) of at most ``max_sites`` sites, drawn with ``seed``."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    with gzip.open(path, "rt") as handle:
        raw = json.load(handle)
    eligible = sorted(
        (d for d in raw if len(d["structure"]["sites"]) <= max_sites), key=lambda d: str(d["entry_id"])
    )
    if n > len(eligible):
        raise SystemExit(f"error: only {len(eligible)} entries of <= {max_sites} sites in {path}")
    picked = random.Random(seed).sample(eligible, n)
    return [(ComputedStructureEntry.from_dict(d), float(d["e_above_hull"])) for d in picked]


def all_entries(path: Path) -> list:
    """Every entry of the reference file (the MP hull)."""
    from monty.json import MontyDecoder

    with gzip.open(path, "rt") as handle:
        return json.load(handle, cls=MontyDecoder)


def perturb(structure, rng: np.random.Generator):
    """Rattle every site by ``RATTLE_A`` in a random direction and apply a random symmetric strain (±``STRAIN``)."""
    from pymatgen.core import Lattice, Structure

    eps = rng.uniform(-STRAIN, STRAIN, size=(3, 3))
    eps = (eps + eps.T) / 2
    lattice = Lattice(structure.lattice.matrix @ (np.eye(3) + eps))
    directions = rng.normal(size=(len(structure), 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    cart = lattice.get_cartesian_coords(structure.frac_coords) + RATTLE_A * directions
    return Structure(lattice, structure.species, cart, coords_are_cartesian=True)


def f1(predicted: list[float], truth: list[float], threshold: float) -> float:
    """F1 of 'stable' (e_above_hull <= threshold) against the MP values."""
    pred = [p <= threshold + 1e-9 for p in predicted]
    true = [t <= threshold + 1e-9 for t in truth]
    tp = sum(p and t for p, t in zip(pred, true, strict=True))
    fp = sum(p and not t for p, t in zip(pred, true, strict=True))
    fn = sum(t and not p for p, t in zip(pred, true, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def entry_name(file_path: str | None) -> str:
    """The input's MP entry id, from the file a candidate (or a rejection) came from."""
    return Path((file_path or "").split("#")[0]).name.removesuffix(".json")


def open_collection(spec, directory: Path, collection: str):
    """A connected store of the campaign's ``collection`` (close it after use)."""
    from matris_flows.stores.backends import make_collection_store

    store = make_collection_store(spec.store_config(directory), directory, collection)
    store.connect()
    return store


def run_and_collect(spec, directory: Path) -> tuple[dict, float, dict | None]:
    """Run the campaign of ``spec``; ({input name: candidate document}, wall s, relax settings of a document)."""
    from matris_flows.campaign.runner import run_campaign
    from matris_flows.stores.backends import make_candidates_store

    start = time.perf_counter()
    summary = run_campaign(spec, directory, resume=False)
    wall = time.perf_counter() - start
    for failure in summary.failures:
        print(f"campaign job failed: {failure.name}: {failure.error}", file=sys.stderr)
    store = make_candidates_store(spec.store_config(), directory)
    try:
        docs = list(store.query({"campaign": spec.name}))
    finally:
        store.close()
    by_input, settings = {}, None
    for doc in docs:
        by_input[entry_name((doc.get("provenance") or {}).get("file_path"))] = doc
        settings = settings or (doc.get("relaxation") or {}).get("settings")
    return by_input, wall, settings


def generation_rejections(spec, directory: Path) -> dict[str, dict]:
    """{entry id: rejection record} of the inputs generation dropped, read from the shard outputs."""
    docs = open_collection(spec, directory, spec.store_config(directory).docs_collection)
    try:
        shards = list(docs.query({"output.shard_index": {"$exists": True}}, properties=["output.report.rejected"]))
    finally:
        docs.close()
    out = {}
    for shard in shards:
        for rejection in ((shard.get("output") or {}).get("report") or {}).get("rejected") or []:
            out[entry_name((rejection.get("provenance") or {}).get("file_path") or rejection.get("input_name"))] = rejection
    return out


def run_campaign_path(
    inputs: Path, references: Path, directory: Path, workers: int
) -> tuple[dict, float, dict | None, dict]:
    """Run the campaign; returns ({entry id: candidate document}, wall s, relax settings of a document,
    {entry id: generation rejection})."""
    from matris_flows.campaign.spec import CampaignSpec

    spec = CampaignSpec.model_validate(
        {
            "name": "hull-accuracy",
            "generation": {"files": {"paths": [str(inputs)]}, "dedup": {"against_references": False}},
            "potential": {"name": "chgnet", "device": "cpu"},
            "hull": {"references": {"provider": "local_files", "paths": [str(references)]}},
            "execution": {"kind": "local", "n_workers": workers},
        }
    )
    by_entry, wall, settings = run_and_collect(spec, directory)
    return by_entry, wall, settings, generation_rejections(spec, directory)


def known_phase_figures(structures: dict, docs: dict, rejections: dict, references: list) -> str:
    """How many sampled MP phases the campaign knows as MP phases, with the parts spelled out.

    A sampled input counts as recognised when its candidate document carries
    ``matches_reference``, or when generation dedup dropped it as a duplicate of another input
    whose candidate is recognised (the inputs include MP entries that are one crystal under the
    dedup tolerances: one of them is screened, the other is not lost but merged). "its own or an
    equivalent MP entry": the matched material is the input's own id, or an MP entry that the
    known-phase matcher finds identical to the input's own (unperturbed) MP structure. "by the
    relaxed structure": the relaxed structure matches the material (else only the structure the
    candidate was generated as did, see ``matris_flows.thermo.known_phases``).
    """
    from pymatgen.core import Structure

    from matris_flows.thermo.known_phases import known_phase_matcher

    def plain(mid: str) -> str:
        return str(mid).removesuffix("-GGA+U").removesuffix("-GGA")

    by_id = {plain(e.entry_id): e.structure for e in references}
    by_candidate = {doc["candidate_id"]: doc for doc in docs.values()}
    matcher = known_phase_matcher()
    recognised, merged, own, equivalent, by_relaxed, no_structure = 0, 0, 0, 0, 0, 0
    for eid in structures:
        doc = docs.get(eid)
        if doc is None:
            rejection = rejections.get(eid) or {}
            doc = by_candidate.get(rejection.get("duplicate_of") or "")
            if doc is None or doc.get("matches_reference") is None:
                continue
            merged += 1
        elif doc.get("matches_reference") is None:
            continue
        else:
            recognised += 1
        match = plain(doc["matches_reference"])
        # the relaxed structure's match wins over the generated one's: this tells which one matched
        relaxed = doc.get("structure")
        if relaxed is None:
            no_structure += 1
        elif match in by_id and matcher.fit(Structure.from_dict(relaxed), by_id[match]):
            by_relaxed += 1
        if match == plain(eid):
            own += 1
        elif match in by_id and matcher.fit(by_id[plain(eid)], by_id[match]):
            equivalent += 1
    total = recognised + merged
    return (
        f"{total}/{len(structures)} = {total / len(structures):.0%} (candidates matching an MP phase: {recognised}, "
        f"merged by dedup into a recognised input: {merged}; by the relaxed structure: {by_relaxed}, by the generated "
        f"one only: {total - by_relaxed - no_structure}{f', relaxed structure not stored: {no_structure}' if no_structure else ''}; "
        f"its own MP id: {own}, an equivalent MP entry: {equivalent})"
    )


def run_plain_loop(structures: dict, references: list, settings: dict | None) -> tuple[dict, float, int]:
    """CHGNet StructOptimizer + PhaseDiagram; returns ({entry id: e_above_hull or None}, wall s, unconverged)."""
    from chgnet.model import StructOptimizer
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    settings = settings or {}
    fmax, steps = float(settings.get("fmax", 0.05)), int(settings.get("max_steps", 500))
    start = time.perf_counter()
    optimizer = StructOptimizer(optimizer_class=settings.get("optimizer", "FIRE"), use_device="cpu")
    diagram = PhaseDiagram(references)
    results, unconverged = {}, 0
    for entry_id, structure in structures.items():
        try:
            out = optimizer.relax(structure, fmax=fmax, steps=steps, relax_cell=True, verbose=False)
            traj = out["trajectory"]
            energy = float(traj.energies[-1])  # total energy, eV (CHGNet: MP2020 scale)
            final = out["final_structure"]
            if len(traj.energies) > steps:
                unconverged += 1
            entry = PDEntry(final.composition, energy)
            results[entry_id] = float(diagram.get_e_above_hull(entry, allow_negative=True))
        except Exception as exc:  # noqa: BLE001 - a failure is a figure of the benchmark
            print(f"plain loop failed on {entry_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            results[entry_id] = None
    return results, time.perf_counter() - start, unconverged


def parse_benchmark_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, data_help: str, workdir_help: str
) -> argparse.Namespace:
    """Parse ``argv`` with the ``--data`` and ``--workdir`` options of the campaign benchmarks added.

    Warnings are silenced (the benchmarks print figures, and pymatgen's warnings would bury
    them); a missing reference file ends the run with a one-line error.
    """
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=data_help)
    parser.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not args.data.is_file():
        raise SystemExit(f"error: reference data {args.data} not found")
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="entries sampled (default 120)")
    parser.add_argument("--max-sites", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parse_benchmark_args(
        parser, argv, data_help="MP Li-Fe-P-O entries with e_above_hull", workdir_help="keep inputs and the campaign here"
    )

    sample = load_sample(args.data, args.n, args.max_sites, args.seed)
    rng = np.random.default_rng(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hull_accuracy_"))
    inputs = workdir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    structures, truth = {}, {}
    for entry, mp_e_hull in sample:
        entry_id = str(entry.entry_id)
        structures[entry_id] = perturb(entry.structure, rng)
        truth[entry_id] = mp_e_hull
        (inputs / f"{entry_id}.json").write_text(json.dumps(structures[entry_id].as_dict()))

    threads = DefaultThreads()
    docs, campaign_wall, settings, rejections = run_campaign_path(inputs, args.data, workdir / "campaign", args.workers)
    print(f"campaign finished: {len(docs)} candidate documents in {campaign_wall:.1f} s", file=sys.stderr, flush=True)
    print(f"plain loop at default threads: torch {threads.restore()}", file=sys.stderr, flush=True)
    references = all_entries(args.data)
    loop, loop_wall, loop_unconverged = run_plain_loop(structures, references, settings)

    campaign = {
        eid: (doc.get("e_above_hull") if doc.get("thermo_status") == "ok" else None) for eid, doc in docs.items()
    }
    # Inputs without a candidate document were dropped by generation (duplicates of another input
    # after perturbation, filters): not screened, so counted apart from the failures.
    not_screened = sum(eid not in docs for eid in structures)
    campaign_failures = sum(eid in docs and campaign[eid] is None for eid in structures)
    loop_failures = sum(loop.get(eid) is None for eid in structures)
    common = sorted(eid for eid in structures if campaign.get(eid) is not None and loop.get(eid) is not None)
    mp = [truth[e] for e in common]

    def figures(values: dict) -> dict:
        errors = [abs(values[e] - truth[e]) for e in common]
        pred = [values[e] for e in common]
        return {
            "mae": statistics.fmean(errors) if errors else float("nan"),
            "median": statistics.median(errors) if errors else float("nan"),
            "f1_0": f1(pred, mp, 0.0),
            "f1_005": f1(pred, mp, 0.05),
        }

    fc, fl = figures(campaign), figures(loop)
    if any("matches_reference" in doc for doc in docs.values()):
        known_text = known_phase_figures(structures, docs, rejections, references)
    else:
        known_text = "n/a"
    dropped = {}
    for eid in structures:
        if eid not in docs:
            reason = (rejections.get(eid) or {}).get("reason", "unrecorded")
            dropped[reason] = dropped.get(reason, 0) + 1
    unconverged = sum((doc.get("relaxation") or {}).get("status") == "not_converged" for doc in docs.values())
    deltas = [abs(campaign[e] - loop[e]) for e in common]

    print(f"sample: {len(structures)} MP Li-Fe-P-O entries <= {args.max_sites} sites, seed {args.seed}, "
          f"rattle {RATTLE_A} Å, strain ±{STRAIN:.0%}; both relaxed: {len(common)}; "
          f"relax settings fmax={settings and settings.get('fmax')} max_steps={settings and settings.get('max_steps')}; "
          f"dropped by the campaign's generation: {not_screened} {dropped or ''}")
    speedup = loop_wall / campaign_wall if campaign_wall > 0 else float("nan")
    print(f"{'':14}{'MAE':>8}{'median':>8}{'F1@0':>7}{'F1@.05':>8}{'failures':>10}{'unconv':>8}{'wall_s':>9}"
          f"{'speedup':>9}  known phases")
    print(f"{'campaign':14}{fc['mae']:8.4f}{fc['median']:8.4f}{fc['f1_0']:7.3f}{fc['f1_005']:8.3f}"
          f"{campaign_failures:10d}{unconverged:8d}{campaign_wall:9.1f}{speedup:9.2f}  {known_text}")
    print(f"{'plain loop':14}{fl['mae']:8.4f}{fl['median']:8.4f}{fl['f1_0']:7.3f}{fl['f1_005']:8.3f}"
          f"{loop_failures:10d}{loop_unconverged:8d}{loop_wall:9.1f}{1.0:9.2f}  -")
    print(f"speedup (plain loop wall / campaign wall, loop at default threads): {speedup:.2f}")
    if deltas:
        print(f"per-structure |campaign - loop| e_above_hull: mean {statistics.fmean(deltas):.4f}, "
              f"max {max(deltas):.4f} eV/atom")
    print(f"hull_mae_delta_vs_plain_loop: {abs(fc['mae'] - fl['mae']):.4f}")


if __name__ == "__main__":
    main()
