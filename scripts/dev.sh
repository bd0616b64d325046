#!/usr/bin/env bash
# scripts/dev.sh - build and start the service locally, ready to try:
#   embedded SQLite (application-quality.db), the demo catalogue, a staff user `admin`, and
#   the local runner: pipelines run on this machine with cwltool (installed with ruff into
#   .venv by pip; git, curl, python3 and Node.js come from the system).
#
# The admin password is ADMIN_PASSWORD when set; otherwise a random one is generated the first
# time and printed once. Any configuration variable of the README can be set in the
# environment (PORT, DATABASE_URL, EXECUTOR, LOG_FORMAT, ...); EXECUTOR=kubernetes runs on the
# cluster KUBECONFIG points at instead, EXECUTOR=off only records runs.
#
# It listens on 127.0.0.1 only (BIND_ADDRESS): events are unauthenticated here (EVENTS_AUTH=off),
# so the service accepts them from this machine only. To listen beyond it, configure
# EVENTS_AUTH=oidc, or set EVENTS_TRUST_NETWORK=true on a network whose every host you trust
# (the service refuses to start on another address otherwise; see docs/access.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PORT=${PORT:-8080}
export BIND_ADDRESS=${BIND_ADDRESS:-127.0.0.1}
export DATABASE_URL=${DATABASE_URL:-sqlite://application-quality.db?mode=rwc}
export PUBLIC_URL=${PUBLIC_URL:-http://localhost:$PORT}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
export EXECUTOR=${EXECUTOR:-local}
export RUST_LOG=${RUST_LOG:-info}

if [ "$EXECUTOR" = local ]; then
  missing=()
  for tool in git curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "scripts/dev.sh: the local runner needs ${missing[*]} (e.g. apt-get install ${missing[*]})" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/cwltool ] || [ ! -x .venv/bin/ruff ]; then
    echo "==> installing cwltool and ruff into .venv (pip)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/runner-requirements.txt
  fi
  export CWLTOOL=${CWLTOOL:-$PWD/.venv/bin/cwltool}
fi

echo "==> building (release)" >&2
cargo build --release --locked
bin=target/release/application-quality-api

# One-off commands log only warnings; their own output says what they did.
RUST_LOG=warn "$bin" migrate >/dev/null
echo "==> loading the demo catalogue" >&2
RUST_LOG=warn "$bin" seed

password=${ADMIN_PASSWORD:-}
generated=0
if [ -z "$password" ]; then
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
  generated=1
fi
if out=$(printf '%s\n' "$password" | RUST_LOG=warn "$bin" user add admin --staff --password-stdin 2>&1); then
  echo "==> created the staff user admin" >&2
  if [ "$generated" = 1 ]; then
    echo "    password (shown once): $password" >&2
  fi
elif grep -q 'already exists' <<<"$out"; then
  echo "==> the staff user admin already exists (its password is unchanged)" >&2
  [ "$generated" = 1 ] && password='<your admin password>'
else
  echo "$out" >&2
  exit 1
fi

base="http://localhost:$PORT"
cat >&2 <<INFO

==> serving on $base  (Ctrl-C to stop)
    Get a token and list the pipelines (the demo pipeline ids are printed by the seed above):

    TOKEN=\$(curl -s $base/api/token/ -H 'Content-Type: application/json' \\
      -d '{"username": "admin", "password": "$password"}' | sed -E 's/.*"access": ?"([^"]+)".*/\1/')
    curl -s -H "Authorization: Bearer \$TOKEN" $base/api/pipelines/

    Run the Python lint pipeline (id printed by the seed) on a local git repository, then read
    its status, its job reports and its log:

    curl -s -X POST $base/api/pipelines/2/runs/ -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{"parameters": {"clone_subworkflow": {"clone": {"repo_url": "file://$PWD"}}}}'
    curl -s -H "Authorization: Bearer \$TOKEN" $base/api/pipelines/_/runs/1/
    curl -s -H "Authorization: Bearer \$TOKEN" $base/api/pipelines/_/runs/1/jobreports/
    curl -s -H "Authorization: Bearer \$TOKEN" $base/api/pipelines/_/runs/1/log/

INFO
exec "$bin" serve
