"""Makers as jobflow jobs: combined sources, and parallel shards with per-chunk fan-out."""

from jobflow import Flow, job, run_locally

from matris_flows.generation.jobs import (
    FileSourceMaker,
    PrototypeMaker,
    RandomSearchMaker,
    ShardedGenerationMaker,
    split_evenly,
)
from matris_flows.generation.pipeline import generate_candidates
from matris_flows.generation.schemas import GenerationPlan, GenerationShard


@job
def count_chunk(structures, candidate_ids):
    """Stand-in for the relaxation of one chunk."""
    assert len(structures) == len(candidate_ids)
    return {"ids": list(candidate_ids), "formulas": [s.composition.reduced_formula for s in structures]}


def _sources(tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif")
    return [
        PrototypeMaker(element_lists=[["Li", "Na", "K"], ["Cl", "Br"]], prototypes=["rocksalt", "cscl", "fluorite"]),
        RandomSearchMaker(compositions=["NaCl", "Li2O"], space_groups=[225], formula_units=[4], n_seeds=2),
        FileSourceMaker(paths=[str(bad)]),
    ]


def test_one_shard_combines_the_sources(tmp_path):
    # every unit in one shard, so duplicates across sources are found as within one source
    maker = ShardedGenerationMaker(sources=_sources(tmp_path), shards_per_worker=1, isolate=False)
    responses = run_locally(Flow([maker.make()]), ensure_success=True)
    (out,) = [r[1].output for r in responses.values() if isinstance(r[1].output, GenerationShard)]
    by_source = out.report.accepted_by_source
    assert by_source["prototype"] == 12
    # pyxtal NaCl in Fm-3m with Z=4 is rocksalt: a duplicate of the decorated prototype
    assert by_source["random_search"] == 1
    assert out.report.rejected_counts["unparseable"] == 1
    assert out.report.rejected_counts["duplicate"] >= 6


def test_sharded_generation_fans_out_flat_and_matches_the_unsharded_pipeline(tmp_path):
    sources = _sources(tmp_path)
    expected = generate_candidates(sources)

    sharded = ShardedGenerationMaker(sources=sources, chunk_size=4, parallelism=2)
    plan_job = sharded.make(chunk_maker=count_chunk)
    responses = run_locally(Flow([plan_job]), ensure_success=True)
    plan = GenerationPlan.model_validate(responses[plan_job.uuid][1].output)
    outputs = [r[1].output for r in responses.values()]
    shards = sorted((o for o in outputs if isinstance(o, GenerationShard)), key=lambda s: s.shard_index)
    downstream = [o for o in outputs if isinstance(o, dict) and "ids" in o]

    # every unit is in exactly one shard, and the shards run side by side (one job each)
    assert plan.n_shards == len(shards) > 1 and sum(plan.n_units) == shards[-1].units[1]
    assert [s.units[0] for s in shards] == [i * plan.units_per_shard for i in range(plan.n_shards)]
    ids = [i for s in shards for c in s.chunks for i in c.candidate_ids]
    assert len(ids) == len(set(ids)) and sum(s.n_candidates for s in shards) == len(ids)
    assert all(len(c.candidate_ids) <= 4 for s in shards for c in s.chunks)
    assert len(downstream) == sum(len(s.chunks) for s in shards)  # one downstream job per chunk
    assert sorted(i for d in downstream for i in d["ids"]) == sorted(ids)
    # Within a shard duplicates are removed as in the unsharded pipeline; across shards they
    # are left for the campaign-wide step after relaxation. So the shards keep every candidate
    # the pipeline keeps, plus only structures the pipeline called duplicates.
    kept = {c.candidate_id for c in expected.candidates}
    assert kept <= set(ids)
    extra = set(ids) - kept
    duplicates = {r.candidate_id for r in expected.report.rejected if r.reason.value == "duplicate"}
    assert extra <= duplicates
    totals = {"n_proposed": 0, "n_input_errors": 0}
    for shard in shards:
        for key in totals:
            totals[key] += getattr(shard.report, key)
    assert totals == {"n_proposed": expected.report.n_proposed, "n_input_errors": expected.report.n_input_errors}


def test_split_evenly_covers_everything_in_near_equal_parts():
    assert split_evenly(0, 4) == []
    assert split_evenly(10, 4) == [(0, 3), (3, 7), (7, 10)]
    assert split_evenly(8, 4) == [(0, 4), (4, 8)]
    assert split_evenly(3, 100) == [(0, 3)]

