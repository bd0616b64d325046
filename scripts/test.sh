#!/usr/bin/env bash
# scripts/test.sh - install what the tests need (where possible) and run everything:
# formatting, clippy, and the whole test suite twice, on SQLite and on PostgreSQL.
#
# What it sets up:
#   PostgreSQL   TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test). When it is
#                not reachable: installs the distribution's `postgresql` package if missing
#                (apt), starts stopped clusters, creates the `test` database. Fails loudly
#                when no PostgreSQL can be had: the PostgreSQL half of the suite is never
#                skipped.
#   Python       .venv with cloudevents, requests and pytest (the CloudEvents SDK interop
#                test), exported as AQ_PYTHON; and the local runner's cwltool and the demo
#                tools (pinned in scripts/runner-requirements.txt), exported as AQ_CWLTOOL, with git, curl
#                and Node.js (cwltool's JavaScript engine), bubblewrap (the runs' sandbox) and
#                a static busybox (the test image of LOCAL_CONTAINERS=images)
#                from apt when missing.
#   Kubernetes   scripts/kube.sh start (a local API server, or the cluster KUBECONFIG points
#                at); exported as KUBECONFIG.
#   OpenID       tests/oidc-provider: a real OpenID provider (panva's oidc-provider, npm) for
#                the sign-in tests, installed with `npm ci` from its package-lock.json;
#                needs Node.js 20 or later (the distribution's nodejs/npm when missing).
#   Runner       cargo-nextest when installed, else cargo test.
#
# In CI (CI set, or AQ_REQUIRE_KUBE / AQ_REQUIRE_PYTHON / AQ_REQUIRE_CWLTOOL = 1) the Python,
# Kubernetes and local-runner tests are required; elsewhere a missing piece only skips those
# tests, with a note.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: error: %s\n' "$*" >&2; exit 1; }

export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
if [ -n "${CI:-}" ]; then
  export AQ_REQUIRE_KUBE=${AQ_REQUIRE_KUBE:-1} AQ_REQUIRE_PYTHON=${AQ_REQUIRE_PYTHON:-1}
  export AQ_REQUIRE_CWLTOOL=${AQ_REQUIRE_CWLTOOL:-1}
fi
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=(sudo -n); fi

apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing $* (apt)"
  "${SUDO[@]}" apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------- PostgreSQL
pg_url_db() { # the server URL with another database name (query string kept)
  local base=${TEST_DATABASE_URL%%\?*} query=""
  [ "$base" != "$TEST_DATABASE_URL" ] && query="?${TEST_DATABASE_URL#*\?}"
  printf '%s/%s%s\n' "${base%/*}" "$1" "$query"
}
pg_ok() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

ensure_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client || true
  command -v psql >/dev/null || die "psql is missing and could not be installed"
  local admin; admin=$(pg_url_db postgres)
  if ! pg_ok "$admin"; then
    local fresh=0
    if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
      apt_install postgresql && fresh=1 || die "no PostgreSQL at $TEST_DATABASE_URL and it could not be installed"
    fi
    if command -v pg_lsclusters >/dev/null; then
      while read -r ver name _port status _; do
        if [ "$status" != online ]; then
          say "starting PostgreSQL cluster $ver/$name"
          "${SUDO[@]}" pg_ctlcluster "$ver" "$name" start || true
        fi
        if [ "$fresh" = 1 ]; then
          # A cluster this script just installed: let local TCP clients in without a password,
          # as the test URL expects (never done to an existing installation).
          local hba; hba=$(pg_conftool -s "$ver" "$name" show hba_file 2>/dev/null || echo "/etc/postgresql/$ver/$name/pg_hba.conf")
          "${SUDO[@]}" sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
          "${SUDO[@]}" pg_ctlcluster "$ver" "$name" reload
        fi
      done < <(pg_lsclusters -h)
    elif command -v service >/dev/null; then
      "${SUDO[@]}" service postgresql start || true
    fi
    for _ in $(seq 1 30); do pg_ok "$admin" && break; sleep 1; done
    pg_ok "$admin" || die "PostgreSQL is not reachable at $admin (check that it runs and trusts local TCP connections)"
  fi
  if ! pg_ok "$TEST_DATABASE_URL"; then
    local db=${TEST_DATABASE_URL%%\?*}; db=${db##*/}
    say "creating database $db"
    psql "$admin" -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
  pg_ok "$TEST_DATABASE_URL" || die "cannot connect to TEST_DATABASE_URL=$TEST_DATABASE_URL"
  # Databases left by earlier runs (each test creates its own); in use ones are left alone.
  psql "$admin" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'aq\_test\_%'" |
    while read -r stale; do psql "$admin" -qc "DROP DATABASE IF EXISTS \"$stale\"" >/dev/null 2>&1 || true; done
  say "PostgreSQL ready: $TEST_DATABASE_URL"
}

# ---------------------------------------------------------------------------------- Python
ensure_python() {
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import cloudevents, requests, pytest' 2>/dev/null; then
    command -v python3 >/dev/null || apt_install python3 python3-venv || true
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; } || {
      [ "${AQ_REQUIRE_PYTHON:-}" = 1 ] && die "cannot create the Python virtualenv .venv"
      say "note: no Python virtualenv; the CloudEvents SDK interop test will be skipped"
      return 0
    }
    say "installing cloudevents, requests, pytest into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check cloudevents requests pytest
  fi
  export AQ_PYTHON=$PWD/.venv/bin/python
}

# ---------------------------------------------------------------------------------- OpenID provider
ensure_oidc_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm ||
    die "Node.js and npm are needed for the sign-in tests (an OpenID provider runs on Node.js)"
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old for the sign-in tests' OpenID provider (20 or later)"
  if [ ! -d tests/oidc-provider/node_modules/oidc-provider ] ||
     [ tests/oidc-provider/package-lock.json -nt tests/oidc-provider/node_modules/.package-lock.json ]; then
    say "installing the OpenID provider for the sign-in tests (npm ci)"
    (cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error) ||
      die "npm ci in tests/oidc-provider failed"
  fi
}

# ---------------------------------------------------------------------------------- local runner
ensure_runner() {
  local missing=()
  command -v git >/dev/null || missing+=(git)
  command -v curl >/dev/null || missing+=(curl)
  command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
  # The local runner's sandbox (every run executes in it, as with scripts/dev.sh).
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  # A static busybox: the files of the test image of LOCAL_CONTAINERS=images.
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}" || true; fi
  if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip install -q --disable-pip-version-check \
      -r scripts/runner-requirements.txt; then
    [ "${AQ_REQUIRE_CWLTOOL:-}" = 1 ] && die "cannot install cwltool and the demo tools into .venv"
    say "note: cwltool could not be installed; the local-runner tests will be skipped"
    return 0
  fi
  [ -x .venv/bin/cwltool ] && export AQ_CWLTOOL=$PWD/.venv/bin/cwltool
}

# ---------------------------------------------------------------------------------- Kubernetes
ensure_kube() {
  if [ -x scripts/kube.sh ]; then
    say "starting the Kubernetes API server for the tests (scripts/kube.sh)"
    local exports before
    before=$(scripts/kube.sh status 2>/dev/null | grep -c ': running' || true)
    if exports=$(scripts/kube.sh start); then
      # A control plane this script started is stopped when it ends (success, failure or
      # interrupt); one that was already running, or an external cluster, is left alone.
      local after
      after=$(scripts/kube.sh status 2>/dev/null || true)
      if [ "$before" = 0 ] && [[ $after == *": running"* ]]; then
        trap 'say "stopping the Kubernetes API server it started"; scripts/kube.sh stop >/dev/null 2>&1 || true' EXIT
      fi
      eval "$exports"
      export KUBECONFIG
      return 0
    fi
    [ "${AQ_REQUIRE_KUBE:-}" = 1 ] && die "scripts/kube.sh could not provide a cluster"
  fi
  [ "${AQ_REQUIRE_KUBE:-}" = 1 ] && die "no Kubernetes API server for the tests"
  say "note: no Kubernetes API server; the cluster tests will be skipped"
}

# ---------------------------------------------------------------------------------- run
ensure_postgres
ensure_python
ensure_oidc_provider
ensure_runner
ensure_kube

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
if command -v kubectl >/dev/null; then
  say "kubectl kustomize knative/"
  kubectl kustomize knative/ >/dev/null
fi

if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --locked --no-fail-fast)
else
  runner=(cargo test --locked --no-fail-fast)
fi
# The runner's own summary is the last thing printed (PostgreSQL run last).
for backend in sqlite postgres; do
  say "test suite on $backend"
  TEST_BACKEND=$backend "${runner[@]}"
done
