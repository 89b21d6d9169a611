# shellcheck shell=bash disable=SC2034  # sets variables for the script that sources it
# Set-up shared by the interop tests, which source it first (bash):
#
#   here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
#   source "$here/venv.sh" "$@"  # PARE_BINARY WORK_DIR
#
# It sets pare (the binary), work (the work directory), run (an empty $work/run) and python (Debian's
# python3, which has python3-torch), and defines
#   need_torch [MODULE...]          exits 1 unless $python imports torch (and every MODULE)
#   use_venv IMPORT,... PACKAGE...  sets py to the python of a venv in $work/venv that sees Debian's python3
#                                   packages, created with the PACKAGEs from PyPI once and reused while it
#                                   imports every IMPORT
pare=$1
work=$2
rm -rf "$work/run" && mkdir -p "$work/run"
run="$work/run"
python=/usr/bin/python3

need_torch() {
  local modules
  modules=$(IFS=,; echo "torch${*:+,$*}")
  if ! "$python" -c "import $modules" 2>/dev/null; then
    echo "FAIL: Debian's python3-torch is not importable by $python (make deps installs it)" >&2
    exit 1
  fi
}

use_venv() {
  local imports=$1
  shift
  local venv="$work/venv"
  if ! "$venv/bin/python" -c "import $imports" 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv --system-site-packages "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2
  fi
  py="$venv/bin/python"
}
