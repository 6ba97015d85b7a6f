"""Environment errors as a user meets them: the CLI (run as a subprocess) ends with one ``error:``
line on stderr and nothing on stdout, exit code 2 (130 for Ctrl-C), no traceback; and no campaign
directory is left behind by a spec or a store that cannot work.

The full disk is a real one: a tmpfs of a few hundred kB mounted for the test (root, as here and
in CI); the test is skipped where mounting is not possible.
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_specs import EMT, emt_spec, prototype_generation, write_spec_file
from sqlite_damage import overwrite_index_page

REPO = Path(__file__).resolve().parents[2]



def write_spec(path: Path, potential: str = EMT, extra: str = "") -> Path:
    """A one-worker Cu-Ni campaign with ``potential`` (imports allowed unless it is ASE's), plus ``extra`` YAML."""
    allow_import = not potential.startswith("ase.calculators.")
    spec = emt_spec(
        "emt-env", prototype_generation(), relax={"max_steps": 100}, potential=potential, allow_import=allow_import,
        execution={"n_workers": 1},
    )
    return write_spec_file(path, spec, extra)


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``matris-flows ARGS`` in a fresh interpreter, as a user runs it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "matris_flows.cli", *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=timeout,
    )


def one_error(result, code: int = 2, progress: bool = False) -> str:
    """The single ``error:`` line of a failed command (stdout empty, no traceback); ``progress``: a run's
    ``screened ...`` progress lines may come before it."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not (progress and line.startswith("screened "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "", result.stdout
    assert result.returncode == code, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-candidate EMT campaign (run_locally: no Dask start-up), to copy and damage.

    Run by the CLI in its own process, which closes (and checkpoints) the database when it exits.
    """
    root = tmp_path_factory.mktemp("finished")
    directory = root / "campaign"
    result = cli("screen", write_spec(root / "spec.yaml"), "--dir", directory, "--local")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def campaign(finished, tmp_path) -> Path:
    """A copy of the finished campaign (its database checkpointed: no -wal file)."""
    copy = tmp_path / "campaign"
    shutil.copytree(finished, copy)
    assert not (copy / "database" / "matris_flows.sqlite-wal").exists()
    return copy


def database(directory: Path) -> Path:
    return directory / "database" / "matris_flows.sqlite"


# -- the campaign database: damaged, full, private ---------------------------------


@pytest.mark.parametrize("command", ["query", "status", "resume"])
def test_a_truncated_database_is_one_line(command, campaign):
    path = database(campaign)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    message = one_error(cli(command, campaign))
    assert str(path) in message and "damaged" in message and "--fresh" in message


@pytest.mark.parametrize("command", ["query", "status", "resume"])
def test_random_bytes_in_the_database_are_found_when_it_is_opened(command, campaign):
    """A page no command reads (an index of the candidates, mid-file) overwritten: before the check
    ``query``, ``status`` and ``resume`` all exited 0 on the damaged file."""
    path = database(campaign)
    overwrite_index_page(path, "candidates::duplicate_of")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:
        pass  # so damaged that the check stops at once
    finally:
        conn.close()
    message = one_error(cli(command, campaign))
    assert str(path) in message and "damaged" in message and "quick_check" in message


def test_the_database_files_are_private(finished, tmp_path):
    assert stat.S_IMODE(database(finished).stat().st_mode) == 0o600
    from matris_flows.stores.sqlite.store import SQLiteStore

    store = SQLiteStore("docs", database_path=str(tmp_path / "db" / "x.sqlite"))
    store.connect()
    store.update({"task_id": 1})
    try:
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE((tmp_path / "db" / f"x.sqlite{suffix}").stat().st_mode)
            assert mode == 0o600, f"x.sqlite{suffix}: {oct(mode)}"
    finally:
        store.close()


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)``: a folder on a fresh tmpfs of ``size`` (e.g. "512k"), unmounted afterwards."""
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{size}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs for a real full disk (needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("a real full disk needs Linux tmpfs mounts")
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_full_disk_at_the_start_is_one_line(small_disk, tmp_path):
    """176 kB: the campaign files and the tables fit, the indexes of the candidates (ensure_index) do not."""
    directory = small_disk("176k") / "campaign"
    message = one_error(cli("screen", write_spec(tmp_path / "spec.yaml"), "--dir", directory, "--local"))
    assert "no space left" in message and str(database(directory)) in message
    assert f"matris-flows resume {directory}" in message


def test_a_full_disk_during_a_run_is_one_line(small_disk, tmp_path):
    """544 kB: the Dask run starts, then a job's output or journal record no longer fits (the first job, or
    generation: just after the start-up, which needs 480-512 kB with the opinions collection, the
    references' indexes and thermo_status's; 512-576 kB all fail during the run)."""
    directory = small_disk("544k") / "campaign"
    message = one_error(cli("screen", write_spec(tmp_path / "spec.yaml"), "--dir", directory), progress=True)
    assert "no space left" in message and str(database(directory)) in message
    assert f"matris-flows resume {directory}" in message
    assert "Started executing jobs on Dask" in (directory / "campaign.log").read_text(), "it failed during the run"


JOURNAL_FULL = """
import sys
from pathlib import Path

from matris_flows.stores.sqlite.errors import DatabaseFileError
from matris_flows.stores.sqlite.store import SQLiteStore

update = SQLiteStore.update


def journal_without_room(self, docs, key=None):
    # the journal's connection may not grow the file: SQLite's own SQLITE_FULL, at a journal commit only
    if self.collection_name == "execution_journal":
        writer = self._collection.connection
        writer.execute(f"PRAGMA max_page_count={writer.execute('PRAGMA page_count').fetchone()[0]}")
        try:
            return update(self, docs, key=key)
        except DatabaseFileError:
            Path(sys.argv[1]).write_text("the journal commit failed")
            raise
    return update(self, docs, key=key)


SQLiteStore.update = journal_without_room
from matris_flows.cli import main

sys.exit(main(sys.argv[2:]))
"""


def test_a_full_database_at_a_journal_commit_is_one_line(tmp_path):
    """The journal record of a finished job does not fit (``max_page_count`` on the journal's connection)."""
    marker, directory = tmp_path / "journal-failed", tmp_path / "campaign"
    result = subprocess.run(
        [sys.executable, "-c", JOURNAL_FULL, str(marker), "screen", str(write_spec(tmp_path / "spec.yaml")), "--dir", str(directory)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    message = one_error(result, progress=True)
    assert marker.exists(), "it was the journal commit that failed"
    assert "no space left" in message and str(database(directory)) in message
    assert f"matris-flows resume {directory}" in message


# -- Ctrl-C -------------------------------------------------------------------------

SLOW_CALCULATOR = """
import time

from ase.calculators.emt import EMT


class Calc(EMT):
    def calculate(self, *args, **kwargs):
        time.sleep(0.2)
        super().calculate(*args, **kwargs)
"""


def test_ctrl_c_during_a_run_is_one_line_and_exit_130(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the Dask workers get it too."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "mf_env_slow_calc.py").write_text(SLOW_CALCULATOR)
    spec = write_spec(tmp_path / "spec.yaml", potential="mf_env_slow_calc:Calc")
    directory = tmp_path / "campaign"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "matris_flows.cli", "screen", str(spec), "--dir", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        first = process.stderr.readline()  # the first progress line: generation done, relaxations running
        assert first.startswith("screened "), first + process.stderr.read()
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, first + stderr)
    assert one_error(result, code=130, progress=True) == f"error: interrupted; `matris-flows resume {directory}` continues"


# -- the spec and the stores are checked before anything is created ---------------


def test_a_missing_reference_file_is_found_before_the_campaign_starts(tmp_path):
    references = tmp_path / "refs" / "Cu-Ni.json.gz"
    spec = write_spec(tmp_path / "spec.yaml", extra=f"""
        hull:
          references:
            provider: local_files
            paths: [{json.dumps(str(references))}]
        """)
    directory = tmp_path / "campaign"
    start = time.perf_counter()
    message = one_error(cli("screen", spec, "--dir", directory))
    assert "hull.references.paths" in message and str(references) in message
    assert time.perf_counter() - start < 15
    assert not directory.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_aws(tmp_path) -> dict:
    """An environment without AWS credentials anywhere boto3 looks (and no instance metadata lookup)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    return {**env, "HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mongodb://matris:s3cret-pw@127.0.0.1:notaport", "Port contains non-digit characters"),  # ValueError in pymongo
        ("http://127.0.0.1", "Invalid URI scheme"),
        ("mongodb://127.0.0.1:{port}", "Unable to locate credentials"),  # the URI is fine: the S3 bucket has no credentials
    ],
)
def test_the_mongodb_uri_store_without_a_usable_uri_or_aws_credentials(uri, expected, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", extra=f"store: {REPO / 'stores' / 'mongodb_uri.yaml'}\n")
    directory = tmp_path / "campaign"
    uri = uri.format(port=_free_port())
    env = {**_no_aws(tmp_path), "OMP_NUM_THREADS": "1", "MATRIS_FLOWS_MONGO_URI": uri}
    result = subprocess.run(
        [sys.executable, "-m", "matris_flows.cli", "screen", str(spec), "--dir", str(directory)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    message = one_error(result)
    assert expected in message and "s3cret-pw" not in message
    assert not directory.exists(), "no campaign directory for a store that cannot work"


def test_an_unreachable_mongodb_leaves_no_campaign_directory(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", extra=f"store: {{type: mongo, host: 127.0.0.1, port: {_free_port()}}}\n")
    directory = tmp_path / "campaign"
    message = one_error(cli("screen", spec, "--dir", directory))
    assert "cannot use the MongoDB store" in message
    assert not directory.exists()
