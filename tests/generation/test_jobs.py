"""Makers as jobflow jobs: combined sources, and streamed chunks with per-chunk fan-out."""

from jobflow import Flow, job, run_locally

from matris_flows.generation.jobs import (
    ChunkedGenerationMaker,
    FileSourceMaker,
    GenerationMaker,
    PrototypeMaker,
    RandomSearchMaker,
)
from matris_flows.generation.schemas import GenerationChunk, GenerationOutput


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


def test_generation_maker_combines_sources(tmp_path):
    responses = run_locally(GenerationMaker(sources=_sources(tmp_path)).make(), ensure_success=True)
    (response,) = [r[1] for r in responses.values()]
    out = GenerationOutput.model_validate(response.output)
    by_source = out.report.accepted_by_source
    assert by_source["prototype"] == 12
    # pyxtal NaCl in Fm-3m with Z=4 is rocksalt: a duplicate of the decorated prototype
    assert by_source["random_search"] == 1
    assert out.report.rejected_counts["unparseable"] == 1
    assert out.report.rejected_counts["duplicate"] >= 6


def test_chunked_generation_streams_and_matches_the_single_job(tmp_path):
    sources = _sources(tmp_path)
    single = GenerationMaker(sources=sources).make()
    responses = run_locally(single, ensure_success=True)
    expected = GenerationOutput.model_validate(responses[single.uuid][1].output)

    chunked = ChunkedGenerationMaker(sources=sources, chunk_size=4)
    flow = Flow([chunked.make(chunk_maker=count_chunk)])
    responses = run_locally(flow, ensure_success=True)
    outputs = [r[1].output for r in responses.values()]
    chunks = sorted((GenerationChunk.model_validate(o) for o in outputs if isinstance(o, GenerationChunk)),
                    key=lambda c: c.chunk_index)
    downstream = [o for o in outputs if isinstance(o, dict) and "ids" in o]

    ids = [i for c in chunks for i in c.candidate_ids]
    assert ids == [c.candidate_id for c in expected.candidates]  # same candidates, same order
    assert all(len(c.candidate_ids) <= 4 for c in chunks)
    assert len(downstream) == sum(1 for c in chunks if c.candidate_ids)  # one downstream job per chunk
    assert sorted(i for d in downstream for i in d["ids"]) == sorted(ids)
    assert chunks[-1].is_last and not any(c.is_last for c in chunks[:-1])
    last = chunks[-1].report
    assert last.n_accepted == expected.report.n_accepted
    assert last.rejected_counts == expected.report.rejected_counts


def test_substitution_maker_takes_templates_from_an_upstream_job(nacl):
    from matris_flows.generation.jobs import SubstitutionMaker

    @job
    def upstream():
        return [nacl]

    up = upstream()
    sub = SubstitutionMaker(max_substituted_species=1, threshold=5e-3).make_from_templates(up.output)
    responses = run_locally(Flow([up, sub]), ensure_success=True)
    out = GenerationOutput.model_validate(responses[sub.uuid][1].output)
    formulas = {c.formula for c in out.candidates}
    assert "KCl" in formulas or "NaBr" in formulas
    assert all(c.provenance.parent_id == "template-0" for c in out.candidates)
