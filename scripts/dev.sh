#!/usr/bin/env bash
# scripts/dev.sh - build and start the service locally, ready to try:
#   embedded SQLite (application-quality.db), the demo catalogue, a staff user `admin`.
#
# The admin password is ADMIN_PASSWORD when set; otherwise a random one is generated the first
# time and printed once. Any configuration variable of the README can be set in the
# environment (PORT, DATABASE_URL, KUBERNETES, LOG_FORMAT, ...). Runs are only recorded unless
# KUBERNETES=auto|on and a cluster is configured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PORT=${PORT:-8080}
export DATABASE_URL=${DATABASE_URL:-sqlite://application-quality.db?mode=rwc}
export PUBLIC_URL=${PUBLIC_URL:-http://localhost:$PORT}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
export KUBERNETES=${KUBERNETES:-off}
export RUST_LOG=${RUST_LOG:-info}

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

INFO
exec "$bin" serve
