#!/usr/bin/env bash
# scripts/dev.sh - build and start the service locally, ready to try:
#   embedded SQLite (application-quality.db), the demo catalogue, a staff user `admin`, and
#   the local runner: pipelines run on this machine with cwltool (installed with the demo
#   tools into .venv by pip), each run inside a bubblewrap sandbox; git, curl, python3,
#   Node.js and bubblewrap are installed with apt when missing.
#
# The admin password is ADMIN_PASSWORD when set; otherwise a random one is generated the first
# time and printed once. Any variable of docs/configuration.md can be set in the
# environment (PORT, DATABASE_URL, EXECUTOR, LOG_FORMAT, ...); EXECUTOR=kubernetes runs on the
# cluster KUBECONFIG points at instead, EXECUTOR=off only records runs.
#
# Local repositories: runs may clone file:// URLs below the directory this script is started
# from (REPO_FILE_ROOTS, with `file` added to REPO_URL_SCHEMES), so `file://$PWD` works from
# the clone the README starts it in. Started from / or from $HOME (too wide: keys and every
# other project would be readable by runs), it lists this project's clone instead. Set
# REPO_FILE_ROOTS (and REPO_URL_SCHEMES) yourself for anything else.
#
# It listens on 127.0.0.1 only (BIND_ADDRESS): events are unauthenticated here (EVENTS_AUTH=off),
# so the service accepts them from this machine only. To listen beyond it, configure
# EVENTS_AUTH=oidc, or set EVENTS_TRUST_NETWORK=true on a network whose every host you trust
# (the service refuses to start on another address otherwise; see docs/access.md).
set -euo pipefail
started_in=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${REPO_FILE_ROOTS:-}" ]; then
  case "$started_in" in
    / | "${HOME:-/}" | "${HOME:-/}/") REPO_FILE_ROOTS=$PWD ;;
    *) REPO_FILE_ROOTS=$started_in ;;
  esac
  export REPO_FILE_ROOTS
  export REPO_URL_SCHEMES=${REPO_URL_SCHEMES:-https,file}
fi

export PORT=${PORT:-8080}
export BIND_ADDRESS=${BIND_ADDRESS:-127.0.0.1}
export DATABASE_URL=${DATABASE_URL:-sqlite://application-quality.db?mode=rwc}
export PUBLIC_URL=${PUBLIC_URL:-http://localhost:$PORT}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
export EXECUTOR=${EXECUTOR:-local}
export RUST_LOG=${RUST_LOG:-info}

if [ "$EXECUTOR" = local ]; then
  # The local runner's tools, and bubblewrap: every run executes in its sandbox.
  missing=()
  for tool in git curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
  if [ "${LOCAL_SANDBOX:-bwrap}" = bwrap ] && ! command -v bwrap >/dev/null; then missing+=(bubblewrap); fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=(sudo); fi
    if command -v apt-get >/dev/null; then
      echo "==> installing ${missing[*]} (apt)" >&2
      "${SUDO[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "scripts/dev.sh: the local runner needs ${missing[*]}; install them with your package manager" >&2
      exit 1
    fi
  fi
  # Installed again whenever the pinned list is newer than the last install.
  if [ ! -x .venv/bin/cwltool ] || [ ! -f .venv/.runner-requirements ] ||
     [ scripts/runner-requirements.txt -nt .venv/.runner-requirements ]; then
    echo "==> installing cwltool and the demo tools into .venv (pip)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/runner-requirements.txt
    cp scripts/runner-requirements.txt .venv/.runner-requirements
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
    Repository URLs: ${REPO_URL_SCHEMES:-https}; file:// below ${REPO_FILE_ROOTS:-nothing}
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
