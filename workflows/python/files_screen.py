"""Screen a folder of structure files with plain jobflow: ``ScreeningMaker`` + ``run_locally`` + the campaign's JobStore.

Every CIF/POSCAR/extxyz/... in FOLDER becomes a candidate; each is relaxed with the potential,
put on the reference hull (packaged MP Li-Fe-O entries by default, ``--references`` for your own
files) and the stable ones are written as CIFs. The Flow is an ordinary jobflow Flow run in this
process by ``jobflow.run_locally`` (``matris-flows screen`` would run the same Flow on Dask)::

    python workflows/python/files_screen.py my_cifs/ --dir campaigns/my-cifs --out stable_cifs/

``ensure_success=True`` makes a failed job an exception here instead of a quiet partial result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobflow import run_locally

from matris_flows.api import (
    CandidateQuery,
    ScreeningMaker,
    campaign_job_store,
    candidates_dataframe,
    export_campaign,
    spec_from_dict,
)


def build_spec(args: argparse.Namespace) -> dict:
    """The spec as a dict with the YAML file's keys (validated by :func:`spec_from_dict`)."""
    potential = {"name": args.potential, "device": "cpu"}
    if args.allow_import:
        potential["allow_import"] = True
    return {
        "name": args.name,
        "generation": {"files": {"paths": [str(Path(args.folder).resolve())]}, "chunk_size": args.chunk_size},
        "potential": potential,
        "relax": {"max_steps": args.max_steps},
        "hull": {"references": {"paths": args.references}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder of structure files")
    parser.add_argument("--name", default="files-screen")
    parser.add_argument("--dir", default=None, help="campaign directory (default campaigns/<name>)")
    parser.add_argument("--out", default=None, help="write the stable candidates' CIFs here")
    parser.add_argument("--potential", default="chgnet")
    parser.add_argument("--allow-import", action="store_true", help="the potential is an import path outside the allowlist")
    parser.add_argument("--references", nargs="+", default=["package:mp_Li-Fe-O_2024-11-21.json.gz"])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=20)
    args = parser.parse_args(argv)

    spec = spec_from_dict(build_spec(args), check_files=True)
    directory = Path(args.dir) if args.dir else Path("campaigns") / spec.name
    flow = ScreeningMaker.from_spec(spec, directory).make()
    run_locally(flow, store=campaign_job_store(spec, directory), ensure_success=True, log=False)

    table = candidates_dataframe(directory, columns=["formula", "e_above_hull", "e_above_hull_campaign", "is_stable", "relax_status"])
    print(table.to_string())
    if args.out:
        written = export_campaign(directory, args.out, "cif", CandidateQuery(stable_only=True))
        print(f"{len(written)} stable candidates written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
