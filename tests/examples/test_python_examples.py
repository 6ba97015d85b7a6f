"""The Python examples in ``workflows/python/`` and the README's Python section, run as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from campaign_specs import FCC, write_fcc_references
from pymatgen.core import Lattice, Structure

from matris_flows.api import query_campaign

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "workflows" / "python"


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_files_screen_runs_a_folder_of_cifs_with_plain_jobflow(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for species in (["Cu", "Cu", "Cu", "Ni"], ["Cu", "Ni", "Ni", "Ni"], ["Cu", "Cu", "Ni", "Ni"]):
        name = "".join(species)
        Structure(Lattice.cubic(3.56), species, FCC).to(filename=str(folder / f"{name}.cif"))
    references = write_fcc_references(tmp_path / "fcc_refs.json")
    out = tmp_path / "stable"
    result = _run([str(EXAMPLES / "files_screen.py"), str(folder), "--dir", "files-campaign", "--out", str(out),
                   "--potential", "ase.calculators.emt:EMT", "--references", str(references), "--max-steps", "150"], tmp_path)
    docs = {d["candidate_id"]: d for d in query_campaign(tmp_path / "files-campaign")}
    assert len(docs) == 3 and all(d["thermo_status"] == "ok" for d in docs.values())
    assert all(candidate in result.stdout for candidate in docs)  # the printed table
    stable = sorted(out.glob("*.cif"))
    assert len(stable) == sum(d["is_stable"] for d in docs.values())
    assert all(Structure.from_file(path).composition.reduced_formula in {d["formula"] for d in docs.values()} for path in stable)


def test_substitution_screen_builds_its_spec_from_typed_sections(tmp_path):
    result = _run([str(EXAMPLES / "substitution_screen.py"), "--dir", "subst", "--max-templates", "2",
                   "--max-per-template", "2", "--max-steps", "60", "--workers", "1", "--device", "cpu"], tmp_path)
    docs = query_campaign(tmp_path / "subst")
    assert docs and all(d["provenance"]["source"] == "substitution" for d in docs)
    assert all(d["thermo_status"] == "ok" and d["relaxation"]["potential"]["name"] == "chgnet" for d in docs)
    assert all(d["formula"] in result.stdout for d in docs)
    assert "0 jobs failed" in result.stderr


def test_readme_python_section_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "readme_snippet.py").write_text(code)
    result = _run(["readme_snippet.py"], tmp_path)
    assert "6 candidates" in result.stdout and "0 jobs failed" in result.stdout
    plain = {d["candidate_id"]: d for d in query_campaign(tmp_path / "campaigns" / "readme-alloys-jobflow")}
    screened = {d["candidate_id"]: d for d in query_campaign(tmp_path / "campaigns" / "readme-alloys")}
    assert sorted(plain) == sorted(screened) and len(plain) == 6
