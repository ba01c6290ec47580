#!/usr/bin/env bash
# Rehearse the whole Vault move on the local twin: two Kubernetes-compatible clusters whose Vault
# pods are real OpenBao processes. Installs OpenBao (once), builds planc/planx/twin, starts the
# vault-pair scenario, checks and applies plans/vault-transit-migration.yaml with planx, shows
# the run's status from another folder, reads a secret back through the old domain (now served by
# the new Vault through the proxy), and stops everything it started.
#
#   tests/twin/rehearse.sh              # bed in a temporary folder, removed at the end
#   KEEP=1 tests/twin/rehearse.sh       # leave the twin running; stop it with `twin down --dir DIR`
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

tests/twin/setup-openbao.sh >/dev/null
cargo build -q -p planc -p planx -p twin
bin="$root/target/debug"
bed="$(mktemp -d /tmp/planx-rehearsal.XXXXXX)"
cleanup() {
  if [[ "${KEEP:-0}" != 1 ]]; then
    "$bin/twin" down --dir "$bed/twin" >/dev/null 2>&1 || true
    rm -rf "$bed"
  else
    echo "the twin keeps running: $bin/twin down --dir $bed/twin"
  fi
}
trap cleanup EXIT

echo "== the twin: clusters old and new, real OpenBao"
"$bin/twin" up --dir "$bed/twin" | tail -1
# shellcheck disable=SC1091
. "$bed/twin/env"

echo "== planc check"
"$bin/planc" check plans/vault-transit-migration.yaml --params "$PARAMS_FILE"

echo "== planx apply"
resolve=()
for pair in $RESOLVE; do resolve+=(--resolve "$pair"); done
cd "$bed"
"$bin/planx" apply "$root/plans/vault-transit-migration.yaml" --params "$PARAMS_FILE" \
  --kubeconfig "$KUBECONFIG" "${resolve[@]}" --approve-all --yes

echo "== planx status, from another folder: the run directory holds everything it needs"
run="$(ls -d "$bed"/runs/*)"
(cd / && "$bin/planx" status "$run" | sed -n 1,4p && echo "  ...")

echo "== a secret of the old Vault, through the old domain, now served by the new Vault"
old_gateway="$(printf '%s\n' $RESOLVE | sed -n 's/^vault\.old\.test=//p')"
curl -sf --connect-to "vault.old.test:80:$old_gateway" -H "X-Vault-Token: $(cat "$OLD_ROOT_TOKEN_FILE")" \
  http://vault.old.test/v1/secret/data/app/s042 | python3 -c 'import json,sys; print("secret/app/s042 =", json.load(sys.stdin)["data"]["data"]["value"])'
