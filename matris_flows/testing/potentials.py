"""Small MatRIS checkpoints the project makes itself, for tests and throughput benchmarks.

Real weights cannot be downloaded everywhere (CI has no internet), so tests exercise
the real loading path with a checkpoint written in the official
``{"config": ..., "state_dict": ...}`` format.
"""

from pathlib import Path

TINY_CONFIG = {
    "num_layers": 2,
    "node_feat_dim": 32,
    "edge_feat_dim": 32,
    "three_body_feat_dim": 32,
    "mlp_hidden_dims": (32, 32),
}
# The published 10M models: 10 layers, 6 Å pair / 4.5 Å three-body cutoffs (for throughput only).
MATRIS_10M_CONFIG = {"num_layers": 10, "pairwise_cutoff": 6.0, "three_body_cutoff": 4.5}


def write_random_matris_checkpoint(
    path: str | Path,
    config: dict | None = None,
    seed: int = 0,
    known_elements: range | list[int] | None = None,
) -> Path:
    """Write a random-weight MatRIS checkpoint in the official format and return its path.

    ``known_elements`` (atomic numbers) get a fitted-looking reference energy, which is
    how a trained checkpoint marks the elements it has seen; others stay unfitted.
    """
    import torch
    from matris.model import MatRIS
    from matris.model.reference_energy import AtomRef

    torch.manual_seed(seed)
    model = MatRIS(**(TINY_CONFIG if config is None else config))
    if known_elements is not None:
        model.reference_energy = AtomRef(is_intensive=model.is_intensive)
        weight = torch.zeros_like(model.reference_energy.fc.weight)
        for z in known_elements:
            weight[0, z - 1] = -1.0 - 0.01 * z
        model.reference_energy.fc.weight.data.copy_(weight)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in model.config.items() if k != "reference_energy"}
    torch.save({"config": config, "state_dict": model.state_dict()}, path)
    return path
