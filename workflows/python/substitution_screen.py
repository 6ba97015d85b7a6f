"""Substitution screen built in Python: typed spec sections, a local Dask cluster, results as a DataFrame.

Ionic substitution (SAPS) into the MP Li-Fe-P-O phosphates shipped with the package, relaxed with
CHGNet (weights in its wheel) and put on the MP Li-Fe-O/Li-Fe-P-O hull of the reference files given
(by default the packaged MP Li-Fe-O entries: the substitutions allowed by default land there).
Offline, a few minutes on 2 cores at the default size::

    python workflows/python/substitution_screen.py --dir campaigns/python-substitution
    python workflows/python/substitution_screen.py --allowed-elements Li Na Fe Mn P O --mp-api   # MP_API_KEY set

Rerunning with the same ``--dir`` resumes: finished jobs are skipped.
"""

from __future__ import annotations

import argparse
import sys

from matris_flows.api import (
    CampaignSpec,
    CandidateQuery,
    ExecutionProfile,
    GenerationSpec,
    HullSpec,
    PotentialSpecModel,
    ReferenceSpec,
    RelaxSettings,
    ScreeningProgress,
    SubstitutionSource,
    candidates_dataframe,
    run_campaign,
)

TEMPLATES = "package:mp_Li-Fe-P-O_phosphate_templates_2024-11-21.json.gz"
REFERENCES = "package:mp_Li-Fe-O_2024-11-21.json.gz"


def build_spec(args: argparse.Namespace) -> CampaignSpec:
    """The campaign, from typed sections: the same validation (and messages) as a YAML spec."""
    references = ReferenceSpec(provider="mp_api") if args.mp_api else ReferenceSpec(paths=args.references)
    return CampaignSpec(
        name=args.name,
        generation=GenerationSpec(
            substitution=SubstitutionSource(
                templates=[TEMPLATES],
                allowed_elements=args.allowed_elements,
                max_templates=args.max_templates,
                max_per_template=args.max_per_template,
                max_template_atoms=16,
            ),
            chunk_size=args.chunk_size,
        ),
        potential=PotentialSpecModel(name=args.potential, device=args.device),
        relax=RelaxSettings(max_steps=args.max_steps),  # fmax: the potential's benchmarked value
        hull=HullSpec(references=references),
        execution=ExecutionProfile(kind="local", n_workers=args.workers),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="python-substitution")
    parser.add_argument("--dir", default=None, help="campaign directory (default campaigns/<name>)")
    parser.add_argument("--potential", default="chgnet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--allowed-elements", nargs="+", default=["Li", "Fe", "P", "O"])
    parser.add_argument("--references", nargs="+", default=[REFERENCES], help="entry files of the reference hull")
    parser.add_argument("--mp-api", action="store_true", help="references from the Materials Project API instead")
    parser.add_argument("--max-templates", type=int, default=8)
    parser.add_argument("--max-per-template", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    summary = run_campaign(build_spec(args), args.dir, progress=ScreeningProgress())
    print(f"{summary.candidates} candidates, {summary.relaxed} relaxed, {summary.stable} stable, "
          f"{summary.jobs_failed} jobs failed ({summary.directory})", file=sys.stderr)
    table = candidates_dataframe(summary.directory, CandidateQuery())
    print(table[["formula", "e_above_hull", "is_stable", "parent", "relax_status"]].to_string())
    return 1 if summary.jobs_failed else 0


if __name__ == "__main__":
    sys.exit(main())
