"""The CLI as a user meets it: one-line errors, clean and fast read-only commands, a lock,
``--fresh``, failures that say why, and a resume that completes once the cause is fixed."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from campaign_specs import EMT, emt_spec, prototype_generation, write_spec_file

from matris_flows.campaign.directory import DRIVER_FILE, FAILURES_FILE, LOG_FILE
from matris_flows.cli import main


def write_spec(path, a="Cu", b="Ni", potential=EMT, extra=""):
    spec = emt_spec("emt-ux", prototype_generation((a, b)), relax={"max_steps": 100}, potential=potential, execution={"n_workers": 1})
    return write_spec_file(path, spec, extra)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-candidate campaign (run_locally: no Dask start-up)."""
    root = tmp_path_factory.mktemp("finished")
    spec = write_spec(root / "spec.yaml")
    directory = root / "campaign"
    assert main(["screen", str(spec), "--dir", str(directory), "--local"]) == 0
    return directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The cases whose spec names a store file, and that file's text.
STORE_FILES = {
    "bad_store_yaml": "type: [mongo\n",
    "removed_monty_store": "type: monty\n",
    "unset_uri_env": "type: mongo_uri\nuri_env: MF_UX_UNSET_URI\n",
    "unset_password_env": "type: mongo\nusername_env: USER\npassword_env: MF_UX_UNSET_PASSWORD\n",
}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad_spec", "at least one source"),
        ("missing_store_file", "does not exist"),
        ("bad_store_yaml", "not valid YAML"),
        ("removed_monty_store", "'monty' store backend (montydb) was removed: use type: sqlite"),
        ("unset_uri_env", "MF_UX_UNSET_URI"),
        ("unset_password_env", "MF_UX_UNSET_PASSWORD"),
        ("unreachable_mongo", "MongoDB"),
        ("missing_checkpoint", "no such file"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(case, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MF_UX_UNSET_URI", raising=False)
    monkeypatch.delenv("MF_UX_UNSET_PASSWORD", raising=False)
    spec = tmp_path / "spec.yaml"
    if case == "bad_spec":
        spec.write_text("name: x\ngeneration: {}\npotential: {name: nonsense}\n")
    elif case == "missing_store_file":
        write_spec(spec, extra="store: no_such_store.yaml\n")
    elif case in STORE_FILES:
        (tmp_path / "store.yaml").write_text(STORE_FILES[case])
        monkeypatch.setenv("USER", "someone")  # the user name of unset_password_env is set: only the password is missing
        write_spec(spec, extra="store: store.yaml\n")
    elif case == "unreachable_mongo":
        write_spec(spec, extra=f"store: {{type: mongo, host: 127.0.0.1, port: {_free_port()}}}\n")
    elif case == "missing_checkpoint":
        write_spec(spec, potential=str(tmp_path / "weights" / "model.pth.tar"))
    start = time.perf_counter()
    assert main(["screen", str(spec), "--dir", str(tmp_path / "campaign"), "--local"]) == 2
    assert expected in one_error_line(capsys)
    assert time.perf_counter() - start < 15


def test_read_commands_on_a_missing_directory_are_one_line(tmp_path, capsys):
    for command in ("status", "query", "resume"):
        assert main([command, str(tmp_path / "nowhere")]) == 2
        assert "not a campaign directory" in one_error_line(capsys)


def _cli_in_subprocess(*args: str) -> tuple[subprocess.CompletedProcess, list[str], float]:
    """Run the CLI in a fresh interpreter; return it, the heavy modules it imported and its wall time."""
    code = (
        "import sys\n"
        "from matris_flows.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = [m for m in ('torch', 'torch_sim', 'warp', 'jobflow', 'distributed') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    wall = time.perf_counter() - start
    heavy = next(line for line in result.stderr.splitlines() if line.startswith("HEAVY=")).removeprefix("HEAVY=")
    return result, [m for m in heavy.split(",") if m], wall


@pytest.mark.parametrize("command", [["query", "--format", "json"], ["status"], ["export", "--out", "EXPORT"]])
def test_read_only_commands_print_only_their_output_and_import_no_torch(command, finished, tmp_path):
    args = [command[0], str(finished), *(str(tmp_path / "x") if a == "EXPORT" else a for a in command[1:])]
    result, heavy, wall = _cli_in_subprocess(*args)
    assert result.returncode == 0, result.stderr
    assert heavy == [], f"{command[0]} imported {heavy}"
    if command[0] == "export":
        assert result.stdout.startswith("wrote 2 structures")
    else:
        document = json.loads(result.stdout)  # stdout holds nothing else
        if command[0] == "query":
            assert len(document) == 2
        else:
            assert document["candidates"] == 2 and document["jobs_failed"] == 0 and not document["running"]
    print(f"{command[0]}: {wall:.2f} s")


def test_fresh_empties_the_campaign_store(tmp_path, capsys):
    directory = tmp_path / "campaign"
    assert main(["screen", str(write_spec(tmp_path / "a.yaml")), "--dir", str(directory), "--local"]) == 0
    pd_spec = write_spec(tmp_path / "b.yaml", a="Cu", b="Pd")
    assert main(["screen", str(pd_spec), "--dir", str(directory), "--local", "--fresh"]) == 0
    capsys.readouterr()
    assert main(["query", str(directory), "--format", "json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert {d["chemsys"] for d in docs} == {"Cu-Pd"}, "no candidate of the old campaign is left"


_HOLD_LOCK = """
import sys, time
from matris_flows.campaign.directory import campaign_lock
with campaign_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_driver_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml")
    directory = tmp_path / "campaign"
    directory.mkdir()
    live = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline() == "locked\n"
        assert main(["screen", str(spec), "--dir", str(directory), "--local"]) == 2
        assert f"PID {live.pid}" in one_error_line(capsys)
    finally:
        live.kill()  # SIGKILL, as a driver killed mid-run: nothing is cleaned up
        live.wait()
        live.stdout.close()
    assert (directory / DRIVER_FILE).read_text() == f"{live.pid}\n{socket.gethostname()}\n", "the dead driver's record stays"
    # the holder is gone now: the kernel released its lock, and the next driver takes over
    assert main(["screen", str(spec), "--dir", str(directory), "--local"]) == 0
    assert not (directory / DRIVER_FILE).exists()


def test_a_failed_job_says_why_and_resume_completes_after_the_fix(tmp_path, capsys, monkeypatch):
    # The potential's module does not exist yet: every relaxation fails with ModuleNotFoundError.
    modules = tmp_path / "modules"
    modules.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(modules))
    spec = write_spec(tmp_path / "spec.yaml", potential="mf_ux_late_calc:Calc")
    spec.write_text(spec.read_text().replace("  device: cpu\n", "  device: cpu\n  allow_import: true\n"))  # not allowlisted
    directory = tmp_path / "campaign"

    assert main(["screen", str(spec), "--dir", str(directory)]) == 1
    captured = capsys.readouterr()
    assert "mf_ux_late_calc" in captured.out, "the summary names each failed job's error"
    assert str(directory / LOG_FILE) in captured.out
    assert "error: job failed" in captured.err
    log = (directory / LOG_FILE).read_text()
    assert "Traceback" in log and "ModuleNotFoundError" in log
    assert main(["status", str(directory)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["jobs_failed"] >= 1
    # each failure names its cause: the relaxations the missing module, the campaign-wide step
    # (which runs whatever failed before it) the stage it had nothing from
    for job in status["failed_jobs"]:
        expected = "generation stage failed" if job["name"].endswith("campaign hull") else "mf_ux_late_calc"
        assert expected in job["error"], job

    # The fix: supply the module. Only the failed work reruns, and the campaign completes.
    (modules / "mf_ux_late_calc.py").write_text("from ase.calculators.emt import EMT as Calc\n")
    import importlib

    importlib.invalidate_caches()
    assert main(["resume", str(directory)]) == 0
    capsys.readouterr()
    assert json.loads((directory / FAILURES_FILE).read_text()) == []
    assert main(["query", str(directory), "--format", "json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert len(docs) == 2
    assert all(doc["e_above_hull"] is not None and doc["thermo_status"] == "ok" for doc in docs)


REFERENCE_SPEC = """
name: chgnet-missing-refs
generation:
  files:
    paths: [{candidates}]
  chunk_size: 1
potential:
  name: chgnet
  device: cpu
relax:
  max_steps: 60
hull:
  references:
    provider: local_files
    paths: [{references}]
execution:
  n_workers: 1
  threads_per_worker: 1
"""


def test_an_unreadable_reference_file_fails_its_jobs_and_resume_completes_once_it_is_replaced(tmp_path, capsys):
    """A missing reference file stops ``screen`` at once (test_environment_errors); one that exists but
    cannot be read is found by the hull jobs."""
    import gzip
    import shutil

    from matris_flows.core.data_paths import resolve_data_path

    references = tmp_path / "refs" / "Li-Fe-O.json.gz"  # a class the reference reader refuses, not entries
    references.parent.mkdir()
    references.write_bytes(gzip.compress(json.dumps([{"@module": "os", "@class": "system"}]).encode()))
    spec = tmp_path / "spec.yaml"
    spec.write_text(REFERENCE_SPEC.format(candidates=", ".join(_li_fe_o_candidates(tmp_path)), references=json.dumps(str(references))))
    directory = tmp_path / "campaign"

    assert main(["screen", str(spec), "--dir", str(directory)]) == 1
    captured = capsys.readouterr()
    assert "Li-Fe-O.json.gz" in captured.out, "the summary names the broken file"
    failures = json.loads((directory / FAILURES_FILE).read_text())
    assert failures and all("Li-Fe-O.json.gz" in f["error"] for f in failures)
    assert main(["query", str(directory), "--format", "json"]) == 0
    marked = {doc["formula"]: doc for doc in json.loads(capsys.readouterr().out)}
    assert set(marked) == {"Li2O", "LiFeO2"}, "the failed chunks' candidates stay visible"
    for doc in marked.values():
        assert doc["thermo_status"] == "job_failed" and doc["e_above_hull"] is None
        assert "Li-Fe-O.json.gz" in doc["thermo_failure_reason"] and str(directory / LOG_FILE) in doc["thermo_failure_reason"]

    shutil.copy(resolve_data_path("package:mp_Li-Fe-O_2024-11-21.json.gz"), references)
    assert main(["resume", str(directory)]) == 0
    capsys.readouterr()
    assert json.loads((directory / FAILURES_FILE).read_text()) == []
    assert main(["query", str(directory), "--format", "json"]) == 0
    docs = {doc["formula"]: doc for doc in json.loads(capsys.readouterr().out)}
    assert set(docs) == {"Li2O", "LiFeO2"}
    for doc in docs.values():  # MP ground states stay within CHGNet's error of the MP hull
        assert doc["thermo_status"] == "ok" and abs(doc["e_above_hull"]) < 0.1, doc


def _li_fe_o_candidates(tmp_path) -> list[str]:
    """Two MP ground states (Li2O, LiFeO2) as structure files, for short CHGNet campaigns."""
    import gzip

    from monty.json import MontyDecoder

    from matris_flows.core.data_paths import resolve_data_path

    packaged = resolve_data_path("package:mp_Li-Fe-O_2024-11-21.json.gz")
    entries = {e.entry_id: e for e in json.load(gzip.open(packaged, "rt"), cls=MontyDecoder)}
    paths = []
    for entry_id in ("mp-1960-GGA", "mp-18782-GGA+U"):
        path = tmp_path / f"{entry_id}.json"
        path.write_text(entries[entry_id].structure.to_json())
        paths.append(json.dumps(str(path)))
    return paths


def test_a_chgnet_campaign_console_shows_only_progress_and_the_summary(tmp_path):
    """What a user sees: no banners, warnings or Dask chatter from the driver or its workers."""
    spec = tmp_path / "spec.yaml"
    references = json.dumps("package:mp_Li-Fe-O_2024-11-21.json.gz")
    spec.write_text(REFERENCE_SPEC.format(candidates=", ".join(_li_fe_o_candidates(tmp_path)), references=references))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "matris_flows.cli", "screen", str(spec), "--dir", str(tmp_path / "campaign")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if not line.startswith("screened ")]
    assert noise == [], "\n".join(noise)
    assert result.stdout.startswith("campaign chgnet-missing-refs") and "relaxed" in result.stdout
