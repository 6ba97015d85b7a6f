"""Consensus: does a second and third opinion before DFT pay? CHGNet relaxes, HIENet and SevenNet-0 re-score.

The same seeded sample as ``hull_accuracy.py``: ``--n`` (default 120) MP Li-Fe-P-O phases of at
most 12 sites from ``../shared/data/mp_chemsys/Li-Fe-P-O.json.gz``, each rattled (0.05 Å) and
strained (±2 %). One campaign on a local Dask cluster of 2 workers relaxes them with CHGNet
(the primary) against the MP Li-Fe-P-O hull and runs the consensus stage as a user's spec
would: the default shortlist (e_above_hull <= 0.1 eV/atom by CHGNet, per system), HIENet and
SevenNet-0 as opinions, one single point each at CHGNet's relaxed structure, MP2020 applied
to both (they learned raw MPtrj energies).

Against MP's DFT e_above_hull (the file's key), printed:

- per model on the shortlist (the candidates every model scored): MAE, median |error|, and
  F1 / precision / recall of "stable" at 0 and at 0.05 eV/atom;
- the same for each consensus rule over the whole sample, as the campaign decides it (a
  candidate off the shortlist keeps CHGNet's value): primary, median (the default), mean,
  max, and "all models say stable";
- the Spearman rank correlation between the spread of the three models and the |error| of
  their mean, on the shortlist, and the MAE of the half with the larger spread vs the other;
- the stage's wall time (campaign hull finished to the last consensus job finished) against the
  whole campaign's.

The last line is ``consensus_f1_gain: <F1(median consensus) - F1(CHGNet)>`` at 0.05 eV/atom.

    python benchmarks/consensus.py --n 20     # a few minutes on 2 cores
    python benchmarks/consensus.py            # 120 phases
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hull_accuracy import entry_name, load_sample, parse_benchmark_args, perturb  # noqa: E402

THRESHOLDS = (0.0, 0.05)


def scores(predicted: list[float], truth: list[float], threshold: float) -> tuple[float, float, float]:
    """F1, precision and recall of 'stable' (e_above_hull <= threshold) against the DFT values."""
    pred = [p <= threshold + 1e-9 for p in predicted]
    true = [t <= threshold + 1e-9 for t in truth]
    tp = sum(p and t for p, t in zip(pred, true, strict=True))
    fp = sum(p and not t for p, t in zip(pred, true, strict=True))
    fn = sum(t and not p for p, t in zip(pred, true, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return (2 * tp / (2 * tp + fp + fn) if tp else 0.0), precision, recall


def line(label: str, predicted: list[float], truth: list[float]) -> str:
    errors = [abs(p - t) for p, t in zip(predicted, truth, strict=True)]
    parts = [f"{label:<34} n={len(predicted):>3}  MAE {statistics.fmean(errors):.3f}  median {statistics.median(errors):.3f}"]
    for threshold in THRESHOLDS:
        f1, precision, recall = scores(predicted, truth, threshold)
        parts.append(f"@{threshold:g}: F1 {f1:.3f} P {precision:.3f} R {recall:.3f}")
    return "  ".join(parts)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


class StageClock:
    """Progress callback: when the campaign hull finished (the stage starts) and when each consensus job finished.

    Jobs that run on the driver report only their completion, so a job's span runs from the
    previous consensus event (or the campaign hull's completion) to its own completion.
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.spans: dict[str, list[float]] = {}
        self._last: float | None = None

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if event.name.endswith(": campaign hull") and event.status == "completed":
            self.start = self._last = now
        if ": consensus" not in event.name:
            return
        span = self.spans.setdefault(event.name, [self._last or now, now])
        if event.status == "submitted":
            span[0] = now
        if event.status in ("completed", "failed"):
            span[1] = self._last = now

    def stage(self) -> float:
        """Seconds from the campaign hull's completion to the last consensus job's."""
        return max(s[1] for s in self.spans.values()) - self.start if self.spans and self.start else float("nan")

    def window(self, part: str) -> float:
        """Seconds spanned by the consensus jobs whose name contains ``part``."""
        spans = [s for name, s in self.spans.items() if part in name]
        return max(s[1] for s in spans) - min(s[0] for s in spans) if spans else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="phases sampled (default 120)")
    parser.add_argument("--max-sites", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parse_benchmark_args(parser, argv, data_help="MP Li-Fe-P-O entries with e_above_hull",
                                workdir_help="keep inputs and the campaign here")

    from matris_flows.api import query_campaign, run_campaign

    sample = load_sample(args.data, args.n, args.max_sites, args.seed)
    rng = np.random.default_rng(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="consensus_"))
    inputs = workdir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    truth = {}
    for entry, mp_e_hull in sample:
        truth[str(entry.entry_id)] = mp_e_hull
        (inputs / f"{entry.entry_id}.json").write_text(json.dumps(perturb(entry.structure, rng).as_dict()))

    spec = {
        "name": "consensus-bench",
        "generation": {"files": {"paths": [str(inputs)]}, "dedup": {"against_references": False}},
        "potential": {"name": "chgnet", "device": "cpu"},
        "hull": {"references": {"provider": "local_files", "paths": [str(args.data)]}},
        "consensus": {"potentials": ["hienet", "sevennet"], "mode": "single_point"},
        "execution": {"kind": "local", "n_workers": args.workers},
    }
    clock = StageClock()
    start = time.perf_counter()
    summary = run_campaign(spec, workdir / "campaign", resume=False, progress=clock)
    wall = time.perf_counter() - start
    for failure in summary.failures:
        print(f"campaign job failed: {failure.name}: {failure.error}", file=sys.stderr)
    docs = {entry_name((d.get("provenance") or {}).get("file_path")): d for d in query_campaign(workdir / "campaign")}
    ok = {eid: d for eid, d in docs.items() if d.get("thermo_status") == "ok" and eid in truth}
    print(f"inputs {len(truth)}  assessed {len(ok)}  shortlisted {sum(bool(d.get('consensus')) for d in ok.values())}  "
          f"campaign wall {wall:.1f} s")

    # per model, on the shortlist every model scored
    models = ["chgnet", "hienet", "sevennet"]
    complete = {eid: {v["model"]: v["e_above_hull"] for v in d["consensus"]["models"] if v["status"] == "ok"}
                for eid, d in ok.items() if d.get("consensus")}
    complete = {eid: votes for eid, votes in complete.items() if all(m in votes for m in models)}
    ids = sorted(complete)
    dft = [truth[e] for e in ids]
    print(f"-- each model on the shortlist ({len(ids)} candidates all three scored)")
    for model in models:
        print(line(model if model == "chgnet" else f"{model} single point", [complete[e][model] for e in ids], dft))

    # each rule over the whole sample, as the campaign decides (off the shortlist: CHGNet's value)
    every = sorted(ok)
    dft_all = [truth[e] for e in every]

    def rule(statistic):
        out = []
        for eid in every:
            votes = list((complete.get(eid) or {}).values())
            out.append(statistic(votes) if votes else ok[eid]["e_above_hull"])
        return out

    print(f"-- consensus rules over the whole sample ({len(every)} candidates; off the shortlist CHGNet's value)")
    primary = [ok[e]["e_above_hull"] for e in every]
    stored = [ok[e]["e_above_hull_consensus"] if ok[e].get("e_above_hull_consensus") is not None else ok[e]["e_above_hull"]
              for e in every]
    print(line("primary (CHGNet)", primary, dft_all))
    print(line("median of three (stored)", stored, dft_all))
    print(line("mean of three", rule(statistics.fmean), dft_all))
    print(line("max of three", rule(max), dft_all))
    # 'all say stable' as a value: the largest of the three decides (stable iff every model is)
    for threshold in THRESHOLDS:
        f1, precision, recall = scores(rule(max), dft_all, threshold)
        print(f"all three say stable @{threshold:g}: F1 {f1:.3f} P {precision:.3f} R {recall:.3f}")

    spreads = [max(complete[e].values()) - min(complete[e].values()) for e in ids]
    errors = [abs(statistics.fmean(complete[e].values()) - truth[e]) for e in ids]
    rho = spearman(spreads, errors)
    order = sorted(range(len(ids)), key=spreads.__getitem__)
    low, high = order[: len(order) // 2], order[len(order) // 2 :]
    print(f"spread vs |error of the mean|: Spearman {rho:.3f}; larger-spread half MAE "
          f"{statistics.fmean(errors[i] for i in high):.3f} median {statistics.median(errors[i] for i in high):.3f}, "
          f"smaller-spread half MAE {statistics.fmean(errors[i] for i in low):.3f} median {statistics.median(errors[i] for i in low):.3f}")
    stage = clock.stage()
    n_scoring = sum("shortlist" not in name and "combine" not in name for name in clock.spans)
    print(f"consensus stage wall {stage:.1f} s of campaign {wall:.1f} s: {100 * stage / wall:.1f} %  (shortlist "
          f"{clock.window('shortlist'):.1f} s; {n_scoring} scoring jobs: hienet {clock.window('consensus: hienet'):.1f} s, "
          f"sevennet {clock.window('consensus: sevennet'):.1f} s; combine {clock.window('combine'):.1f} s)")
    gain = scores(stored, dft_all, 0.05)[0] - scores(primary, dft_all, 0.05)[0]
    print(f"consensus_f1_gain: {gain:+.3f}")


if __name__ == "__main__":
    main()
