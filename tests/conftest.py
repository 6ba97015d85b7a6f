"""Shared fixtures: pinned threads, a tiny MatRIS checkpoint made on the spot, a private weights cache."""

import os

# Two cores: keep each test process to one native thread unless told otherwise.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_matris_checkpoint(tmp_path_factory):
    """A 2-layer random MatRIS checkpoint that knows elements H..Bi (Z 1-83)."""
    from matris_flows.testing.potentials import write_random_matris_checkpoint

    return write_random_matris_checkpoint(
        tmp_path_factory.mktemp("weights") / "tiny_matris.pth.tar", known_elements=range(1, 84)
    )


@pytest.fixture
def weights_cache(tmp_path, monkeypatch):
    """An empty MatRIS weights cache directory used instead of ~/.cache/matris."""
    cache = tmp_path / "matris-cache"
    cache.mkdir()
    monkeypatch.setenv("MATRIS_FLOWS_CACHE_DIR", str(cache))
    return cache
