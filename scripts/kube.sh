#!/usr/bin/env bash
# scripts/kube.sh - a Kubernetes API server for the tests of application-quality-api.
#
# If KUBECONFIG already points at a reachable cluster, that cluster is used and nothing is
# started. Otherwise this starts a local control plane on 127.0.0.1: etcd, kube-apiserver and
# kube-controller-manager v1.20.2 (the Job, garbage-collector, TTL and token controllers are
# what the tests rely on). There is no kubelet and no scheduler: pods stay Pending, and the
# tests play the kubelet by setting a pod's phase through the status subresource.
#
# Everything comes from Debian packages: etcd-server, Go 1.19, and Debian bookworm's
# `kubernetes` source package, built once (about 5-10 minutes on 2 cores) into the cache.
#
# Usage:
#   scripts/kube.sh [start]   use KUBECONFIG, or build (once) and start; prints the export line
#   scripts/kube.sh env       print the export line of the local control plane
#   scripts/kube.sh status    what is running
#   scripts/kube.sh stop      stop what this script started
#   scripts/kube.sh clean     stop, then delete the state (etcd data, certificates)
#
# Then:  eval "$(scripts/kube.sh)" && AQ_REQUIRE_KUBE=1 cargo test --test api k8s_
#
# Environment (optional):
#   AQ_KUBE_CACHE   cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube)
#   AQ_KUBE_BIN     directory holding kube-apiserver and kube-controller-manager already built
#                   (default $AQ_KUBE_CACHE/bin); nothing is built when both are there
#   AQ_KUBE_STATE   run directory: etcd data, certificates, logs, kubeconfig (default $AQ_KUBE_CACHE/run)
#   AQ_KUBE_PORT    API server port (default 26443); etcd uses AQ_ETCD_PORT (default 22379) and +1
set -euo pipefail

CACHE=${AQ_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube}
BIN=${AQ_KUBE_BIN:-$CACHE/bin}
STATE=${AQ_KUBE_STATE:-$CACHE/run}
API_PORT=${AQ_KUBE_PORT:-26443}
ETCD_PORT=${AQ_ETCD_PORT:-22379}
CM_PORT=$((API_PORT + 1))
GO=/usr/lib/go-1.19/bin
SRC_TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
SRC_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
SRC=$CACHE/src/kubernetes-1.20.2
KUBECONFIG_OUT=$STATE/admin.kubeconfig

say() { printf 'kube.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --------------------------------------------------------------------------- an existing cluster
existing_cluster() {
  [ -n "${KUBECONFIG:-}" ] || return 1
  [ "$KUBECONFIG" = "$KUBECONFIG_OUT" ] && return 1
  [ -f "$KUBECONFIG" ] || return 1
  if ! command -v kubectl >/dev/null; then
    say "kubectl not found: using KUBECONFIG without checking that its cluster answers"
    return 0
  fi
  kubectl --request-timeout=5s version >/dev/null 2>&1
}

# --------------------------------------------------------------------------- packages and build
install_packages() {
  local want=()
  [ -x /usr/bin/etcd ] || want+=(etcd-server)
  command -v openssl >/dev/null || want+=(openssl)
  command -v curl >/dev/null || want+=(curl)
  if ! have_binaries; then
    [ -x $GO/go ] || want+=(golang-1.19-go)
    command -v make >/dev/null || want+=(make)
    command -v rsync >/dev/null || want+=(rsync)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || want+=(debian-archive-keyring)
    # Kubernetes 1.20 vendors reflect2 1.0.1, which crashes with Go >= 1.18; Debian has 1.0.2.
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || want+=(golang-github-modern-go-reflect2-dev)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  say "installing ${want[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

have_binaries() { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; }

fetch_source() {
  [ -f "$SRC/cmd/kube-apiserver/apiserver.go" ] && return 0
  mkdir -p "$CACHE/src"
  if [ ! -f "$CACHE/src/$SRC_TARBALL" ]; then
    # apt-get source with a private configuration holding one deb-src line, so the system's
    # apt sources are left alone. The mirror is the one this machine already uses.
    local apt=$CACHE/apt mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^\s*#' \
      | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
    [ -n "$mirror" ] || die "no Debian mirror in the apt sources; cannot fetch the kubernetes source package"
    mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm main" > "$apt/etc/sources.list"
    : > "$apt/status"
    local o=(-o "Dir::Etc=$apt/etc" -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
             -o "Dir::State::status=$apt/status" -o Acquire::Languages=none -o APT::Sandbox::User=root)
    say "downloading Debian's kubernetes source package"
    apt-get "${o[@]}" update -qq
    (cd "$CACHE/src" && apt-get "${o[@]}" source --download-only -qq kubernetes >/dev/null)
  fi
  echo "$SRC_SHA256  $CACHE/src/$SRC_TARBALL" | sha256sum -c --quiet - || die "checksum mismatch for $SRC_TARBALL"
  tar xzf "$CACHE/src/$SRC_TARBALL" -C "$CACHE/src"
  local r=$SRC/vendor/github.com/modern-go/reflect2
  rm -rf "$r" && mkdir -p "$r" && cp -a /usr/share/gocode/src/github.com/modern-go/reflect2/. "$r/"
}

build() {
  have_binaries && return 0
  fetch_source
  say "building kube-apiserver and kube-controller-manager (once; several minutes)"
  mkdir -p "$BIN" "$CACHE/home"
  (
    cd "$SRC"
    export PATH=$GO:$PATH GOCACHE=$CACHE/gocache GOPROXY=off GOFLAGS= HOME=$CACHE/home
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean \
           KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" > "$CACHE/build.log" 2>&1 \
      || { tail -30 "$CACHE/build.log" >&2; exit 1; }
  )
  install -m 0755 "$SRC/_output/local/bin/linux/amd64/kube-apiserver" "$SRC/_output/local/bin/linux/amd64/kube-controller-manager" "$BIN/"
}

# --------------------------------------------------------------------------- certificates
certificates() {
  local p=$STATE/pki
  [ -f "$p/ready" ] && return 0
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj /CN=aq-test-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > server.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=kube-apiserver 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.crt 2>/dev/null
    # The controller-manager authenticates with a client certificate of its well-known user.
    openssl req -newkey rsa:2048 -nodes -keyout cm.key -out cm.csr -subj /CN=system:kube-controller-manager 2>/dev/null
    openssl x509 -req -in cm.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out cm.crt 2>/dev/null
    # Service account tokens are signed with this key pair.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # The admin is a static bearer token in system:masters.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > admin.token
    printf '%s,aq-admin,aq-admin,"system:masters"\n' "$(cat admin.token)" > tokens.csv
    chmod 600 ./*.key admin.token tokens.csv
    touch ready
  )
}

kubeconfigs() {
  local p=$STATE/pki
  cat > "$KUBECONFIG_OUT" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aq-test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$p/ca.crt"}
users:
- name: aq-admin
  user: {token: "$(cat "$p/admin.token")"}
contexts:
- name: aq-test
  context: {cluster: aq-test, user: aq-admin}
current-context: aq-test
EOF
  chmod 600 "$KUBECONFIG_OUT"
  cat > "$STATE/cm.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aq-test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$p/ca.crt"}
users:
- name: cm
  user: {client-certificate: "$p/cm.crt", client-key: "$p/cm.key"}
contexts:
- name: cm
  context: {cluster: aq-test, user: cm}
current-context: cm
EOF
}

# --------------------------------------------------------------------------- processes
alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

launch() { # name command...
  local name=$1; shift
  alive "$name" && return 0
  setsid "$@" > "$STATE/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name.pid"
}

# Waits (bounded) until a check passes; fails early if the process died.
await() { # name seconds check...
  local name=$1 tries=$(($2 * 10)); shift 2
  while [ $tries -gt 0 ]; do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || { say "$name exited:"; tail -15 "$STATE/$name.log" >&2; return 1; }
    sleep 0.1; tries=$((tries - 1))
  done
  say "$name not ready in time; see $STATE/$name.log"; return 1
}

admin_get() { curl -sf --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$STATE/pki/admin.token")" "https://127.0.0.1:$API_PORT$1"; }

start() {
  if existing_cluster; then
    say "using the cluster of KUBECONFIG"
    echo "export KUBECONFIG=$KUBECONFIG"
    return 0
  fi
  install_packages
  build
  mkdir -p "$STATE"
  certificates
  kubeconfigs
  local p=$STATE/pki
  launch etcd /usr/bin/etcd --name aq-test --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "aq-test=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn --logger zap
  await etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  launch kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
    --tls-cert-file "$p/server.crt" --tls-private-key-file "$p/server.key" --client-ca-file "$p/ca.crt" \
    --token-auth-file "$p/tokens.csv" --authorization-mode RBAC --anonymous-auth=false \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$p/sa.pub" \
    --service-account-signing-key-file "$p/sa.key" --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none --cert-dir "$STATE/apiserver" \
    --feature-gates TTLAfterFinished=true --v 1
  await kube-apiserver 120 admin_get /readyz
  launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/cm.kubeconfig" \
    --authentication-kubeconfig "$STATE/cm.kubeconfig" --authorization-kubeconfig "$STATE/cm.kubeconfig" \
    --address 127.0.0.1 --port "$CM_PORT" --secure-port 0 --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route' \
    --feature-gates TTLAfterFinished=true --v 1
  await kube-controller-manager 60 curl -sf "http://127.0.0.1:$CM_PORT/healthz"
  # Ready for tests once the ServiceAccount controller has run.
  await kube-controller-manager 60 admin_get /api/v1/namespaces/default/serviceaccounts/default
  say "ready (stop with: $0 stop)"
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
}

stop() {
  local n pid
  for n in kube-controller-manager kube-apiserver etcd; do
    alive "$n" || { rm -f "$STATE/$n.pid"; continue; }
    pid=$(cat "$STATE/$n.pid")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$STATE/$n.pid"
    say "stopped $n"
  done
}

status() {
  local n
  for n in etcd kube-apiserver kube-controller-manager; do
    if alive "$n"; then echo "$n: running (pid $(cat "$STATE/$n.pid"))"; else echo "$n: stopped"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_OUT" ;;
  status) status ;;
  stop) stop ;;
  clean) stop; rm -rf "$STATE" ;;
  *) die "usage: $0 [start|env|status|stop|clean]" ;;
esac
