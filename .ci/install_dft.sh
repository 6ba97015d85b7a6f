#!/usr/bin/env bash
# Install the open DFT backend (GPAW + its PAW setups) for matris_flows.validation.
#
# Usage: .ci/install_dft.sh [PATH/TO/venv/bin/python]
#
# Idempotent and non-interactive: re-running it on a machine where GPAW already
# imports is a no-op.  Steps:
#   1. libxc headers/library from apt (GPAW's C extension links against libxc);
#   2. a GPAW siteconfig with `mpi = False`: the serial build is what we run
#      (two serial calculations side by side), and the MPI build fails to link
#      without an MPI toolchain;
#   3. `pip install gpaw gpaw-data` (pinned versions) (gpaw-data ships the PAW setups, so no
#      `gpaw install-data` download is needed).
set -euo pipefail

PYTHON="${1:-$(dirname "$0")/../.venv/bin/python}"
# Absolute path, but keep the venv's symlink (resolving it would install into
# the base interpreter instead of the venv).
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"

if "$PYTHON" -c "import gpaw, gpaw_data; from gpaw import GPAW" >/dev/null 2>&1 \
   && "$PYTHON" -c "import _gpaw" >/dev/null 2>&1; then
    echo "install_dft: GPAW already importable in $PYTHON; nothing to do"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi
if ! dpkg -s libxc-dev >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libxc-dev >/dev/null
fi

# The siteconfig lives outside the repo checkout so it never dirties git.
SITECONFIG_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/gpaw"
mkdir -p "$SITECONFIG_DIR"
SITECONFIG="$SITECONFIG_DIR/siteconfig_serial.py"
cat > "$SITECONFIG" <<'PY'
# GPAW build configuration written by matris-flows .ci/install_dft.sh.
# Serial build: MPI linking fails on the CI image and the validation stage runs
# independent single-process calculations in parallel instead.
mpi = False
# GPAW >= 26 is C++ (-std=c++17); without an explicit C++ compiler distutils
# compiles the sources with gcc as C and the build fails.
compiler = 'g++'
if 'xc' not in libraries:
    libraries += ['xc']
PY

export GPAW_CONFIG="$SITECONFIG"
# Pinned: the siteconfig above is written for this GPAW release.
"$PYTHON" -m pip install --no-cache-dir "gpaw==${GPAW_VERSION:-26.7.0}" "gpaw-data==${GPAW_DATA_VERSION:-1.2.1}"

"$PYTHON" -c "import gpaw, _gpaw, gpaw_data; print('install_dft: GPAW', gpaw.__version__, 'ok')"
