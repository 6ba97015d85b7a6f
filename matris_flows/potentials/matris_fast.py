"""Faster MatRIS inference on CPU, with the same numbers as stock MatRIS.

Where the time goes (torch.profiler / FlopCounterMode on Si64, MatRIS-10M, 1 core): the
line-graph (three-body) GatedMLPs run once per *angle* (~430 per Si atom) on features
concatenated from the angle, its two bonds and its centre atom, i.e. a 384- or 512-wide
first layer per angle; angle-level work dominates the FLOPs (Si64: 27,770 angles for
2,856 edges) and, after the matmuls, the time goes to elementwise ops and softmax scatters.
Upstream MatRIS already avoids this on CUDA (``attn_line_projection`` /
``refine_line_projection``: project each bond/atom once, then gather), but only
through its CUDA extension; on CPU it falls back to concatenation.

This module gives the CPU the same algebra in plain torch ops::

    W [e_angle; n_target; n_source] = W_e e_angle + (W_t n)[target] + (W_s n)[source]

which is exact in real arithmetic (differences are float32 rounding, ~1e-7 relative),
and cuts an efs call on Si64 from 448 to 274 GFLOP. The attention softmax takes its
stabilising max without autograd (:func:`_dimwise_softmax`). Both run only inside
:func:`cpu_fast` (a context variable), so stock MatRIS in the same process is untouched.
They belong upstream (CPU branches of ``attn_line_projection``, ``refine_line_projection``
and ``Dimwise_softmax``); the project keeps only this wrapper. Also applied by
:func:`speed_up_calculator`: frozen parameters (``requires_grad_(False)``: forces need
autograd through positions only) and torch.compile of the tensor core for large models
(:func:`should_compile`). Measured (benchmarks/matris_inference.py, 1 thread, busy
machine, CPU s per call): Si8 1.53 -> 0.60, Si64 11.7 -> 3.9; energies agree to ~6e-7
relative, forces to ~1e-8 eV/Å; peak memory on Si64 ~9 GB -> ~3.7 GB.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence

logger = logging.getLogger(__name__)

_ACTIVE = contextvars.ContextVar("matris_cpu_fast", default=False)
_ORIGINALS: dict[str, object] = {}


@contextlib.contextmanager
def cpu_fast(enabled: bool = True) -> Iterator[None]:
    """Within this block, MatRIS line-graph projections on CPU use the split (gather-after-project) form."""
    install()
    token = _ACTIVE.set(enabled)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _split_gated_mlp(module, parts: Sequence[tuple]):
    """``module(cat([f[i] for f, i in parts], 1))`` for a GatedMLP, projecting each part before gathering.

    ``parts`` are ``(features, index)`` in the concatenation order; ``index=None`` means
    the features are already per row. Returns None when ``module`` is not a GatedMLP whose
    MLPs start with a Linear layer (the caller then concatenates as stock MatRIS does).
    """
    import torch
    from matris.model.functions import MLP, GatedMLP

    if not isinstance(module, GatedMLP):
        return None
    outputs = []
    for mlp in (module.mlp_core, module.mlp_gate):
        if not isinstance(mlp, MLP) or not isinstance(mlp.layers[0], torch.nn.Linear):
            return None
        first = mlp.layers[0]
        out, offset = None, 0
        for features, index in parts:
            width = features.shape[1]
            projected = torch.nn.functional.linear(features, first.weight[:, offset : offset + width])
            if index is not None:
                projected = projected.index_select(0, index)
            out = projected if out is None else out + projected
            offset += width
        if offset != first.in_features:
            return None
        if first.bias is not None:
            out = out + first.bias
        for layer in mlp.layers[1:]:
            out = layer(out)
        outputs.append(out)
    core, gate = outputs
    if module.gate_norm is not None:
        core, gate = module.core_norm(core), module.gate_norm(gate)
    return module.activation_func(core) * module.activation_gate(gate)


def _attn_line_projection(module, node_feat, edge_feat, source_index, target_index, *, tf32=False, fast=False, training=True):
    if fast or not _ACTIVE.get() or edge_feat.is_cuda:
        return _ORIGINALS["attn_line_projection"](
            module, node_feat, edge_feat, source_index, target_index, tf32=tf32, fast=fast, training=training
        )
    # Stock order: cat([angle, bond[target], bond[source]]).
    return _split_gated_mlp(module, [(edge_feat, None), (node_feat, target_index), (node_feat, source_index)])


def _refine_line_projection(
    module, edge_feat, atom_feat, node_feat, atom_index, source_index, target_index, *, tf32=False, fast=False, training=True
):
    if fast or not _ACTIVE.get() or edge_feat.is_cuda:
        return _ORIGINALS["refine_line_projection"](
            module, edge_feat, atom_feat, node_feat, atom_index, source_index, target_index,
            tf32=tf32, fast=fast, training=training,
        )
    # Stock order: cat([angle, atom[centre], bond[target], bond[source]]).
    return _split_gated_mlp(
        module, [(edge_feat, None), (atom_feat, atom_index), (node_feat, target_index), (node_feat, source_index)]
    )


def _dimwise_softmax(feas, segment, num_segment=None, *, fast=False):
    """Per-segment softmax; the stabilising max is taken without autograd.

    Softmax does not depend on the shift, so its gradient through the max is zero in
    exact arithmetic; stock MatRIS still back-propagates it (scatter-amax backward: eq,
    gather, scatter, div per call), which costs as much as the softmax itself on CPU.
    """
    if fast or not _ACTIVE.get() or feas.is_cuda:
        return _ORIGINALS["Dimwise_softmax"](feas, segment, num_segment, fast=fast)
    import torch

    if num_segment is None:
        num_segment = int(segment.max()) + 1
    with torch.no_grad():
        shift = feas.new_full((num_segment, feas.shape[1]), float("-inf"))
        shift = shift.index_reduce_(0, segment, feas, "amax").index_select(0, segment)
    out = (feas - shift).exp()
    total = out.new_zeros((num_segment, feas.shape[1])).index_add_(0, segment, out)
    return out / total.index_select(0, segment)


def install() -> None:
    """Route MatRIS's two line-graph projections through this module (idempotent; inert outside :func:`cpu_fast`)."""
    if _ORIGINALS:
        return
    import warnings

    from matris.model import interaction_block

    # index_reduce_ is "beta" only in its API; its amax is exact, and the warning would fire per call.
    warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta", category=UserWarning)

    _ORIGINALS["attn_line_projection"] = interaction_block.attn_line_projection
    _ORIGINALS["refine_line_projection"] = interaction_block.refine_line_projection
    _ORIGINALS["Dimwise_softmax"] = interaction_block.Dimwise_softmax
    interaction_block.Dimwise_softmax = _dimwise_softmax
    interaction_block.attn_line_projection = _attn_line_projection
    interaction_block.refine_line_projection = _refine_line_projection


def freeze(model) -> None:
    """Inference settings: eval mode, no parameter gradients (forces differentiate positions only)."""
    model.eval()
    model.requires_grad_(False)


# torch.compile (inductor, C++ on CPU) fuses MatRIS's many elementwise ops (norms, SiLU,
# gates, softmax) into loops: 1.5x per call on Si8/Si64 on one core, for ~1 min of compile
# per process and shape class. That pays for the 10M models over a relaxation, not for
# test-sized checkpoints, hence "auto" compiles models of at least this many parameters.
COMPILE_MIN_PARAMETERS = 1_000_000


def should_compile(model, compile: bool | str = "auto") -> bool:
    """Whether to torch.compile ``model``'s tensor core on CPU (``compile``: True, False or 'auto')."""
    if compile == "auto":
        return sum(p.numel() for p in model.parameters()) >= COMPILE_MIN_PARAMETERS
    return bool(compile)


def compile_core(model) -> None:
    """Replace ``model.forward_core`` by a torch.compile'd one that falls back to eager if compiling fails."""
    import torch

    eager = model.forward_core
    current = {"fn": torch.compile(eager, dynamic=True)}

    def forward_core(*args, **kwargs):
        try:
            return current["fn"](*args, **kwargs)
        except Exception as exc:  # no C++ compiler, unsupported op, ...: eager gives the same numbers
            if current["fn"] is eager:
                raise
            logger.warning("torch.compile of MatRIS failed (%s: %s); running eager", type(exc).__name__, exc)
            current["fn"] = eager
            return eager(*args, **kwargs)

    model.forward_core = forward_core  # instance attribute: MatRIS.forward calls self.forward_core on CPU


def speed_up_calculator(calculator, compile: bool | str = "auto") -> None:
    """Make a ``MatRISCalculator`` on CPU evaluate faster with the same numbers.

    Freezes the weights, wraps the model call in :func:`cpu_fast` and (see
    :func:`should_compile`) compiles its tensor core. On CUDA only the first applies:
    MatRIS's own fast mode handles the rest there. (Activation checkpointing is the
    loader's choice: off on CPU by default.)
    """
    freeze(calculator.model)
    model = calculator.model
    if str(calculator.device).startswith("cuda") or getattr(model, "_matris_flows_cpu_fast", False):
        return
    install()
    stock_forward = model.forward

    def forward(*args, **kwargs):
        with cpu_fast():
            return stock_forward(*args, **kwargs)

    model.forward = forward  # instance attribute: nn.Module.__call__ dispatches to it
    if should_compile(model, compile):
        compile_core(model)
    model._matris_flows_cpu_fast = True
