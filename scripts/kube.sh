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
# `node` also starts a node, so pods really run: kube-scheduler, a private dockerd (Debian's
# docker.io, its own data and socket under the state directory) and a kubelet driving it
# through the dockershim. Images come from scripts/images.sh, never from an outside registry:
# the engine's registry mirror is a registry of the node's own (Debian's docker-registry, on the
# bridge), which answers the pulls a kubelet makes for images named without a tag or `:latest`
# (pulled every time: `imagePullPolicy: Always`) with what was pushed to it. Network:
# a bridge of our own (AQ_NODE_BRIDGE, default aq-br0, 10.213.0.1/24) for the pods; the API
# server listens on the bridge address; one DNAT rule makes the `kubernetes` Service address
# (10.0.0.1:443, what in-cluster clients dial) reach it, as kube-proxy would; a FORWARD rule
# drops anything from the bridge that is not for the bridge, so pods reach this machine and
# each other and nothing else. `stop` removes all of it. A container engine that was already
# running is never touched: the node has its own.
#
# Usage:
#   scripts/kube.sh [start]   use KUBECONFIG, or build (once) and start; prints the export line
#   scripts/kube.sh node      the same without the KUBECONFIG shortcut, plus a node; prints the
#                             KUBECONFIG and DOCKER_HOST export lines
#   scripts/kube.sh env       print the export line(s)
#   scripts/kube.sh status    what is running
#   scripts/kube.sh stop      stop what this script started (node, engine, bridge, rules too)
#   scripts/kube.sh clean     stop, then delete the state (etcd data, certificates, images)
#
# Then:  eval "$(scripts/kube.sh)" && AQ_REQUIRE_KUBE=1 cargo test --test api k8s_
#
# Environment (optional):
#   AQ_KUBE_CACHE   cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube)
#   AQ_KUBE_BIN     directory holding kube-apiserver and kube-controller-manager already built
#                   (default $AQ_KUBE_CACHE/bin); nothing is built when both are there
#   AQ_KUBE_STATE   run directory: etcd data, certificates, logs, kubeconfig (default $AQ_KUBE_CACHE/run)
#   AQ_KUBE_PORT    API server port (default 26443); etcd uses AQ_ETCD_PORT (default 22379) and +1;
#                   the controller-manager +1, the scheduler +2, the kubelet +10 and +11 (healthz),
#                   the node's registry +12 (on the bridge)
#   AQ_NODE_BRIDGE, AQ_NODE_CIDR   the pods' bridge and its address (aq-br0, 10.213.0.1/24)
set -Eeuo pipefail

CACHE=${AQ_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube}
BIN=${AQ_KUBE_BIN:-$CACHE/bin}
STATE=${AQ_KUBE_STATE:-$CACHE/run}
API_PORT=${AQ_KUBE_PORT:-26443}
ETCD_PORT=${AQ_ETCD_PORT:-22379}
CM_PORT=$((API_PORT + 1))
SCHED_PORT=$((API_PORT + 2))
KUBELET_PORT=$((API_PORT + 10))
KUBELET_HEALTHZ=$((API_PORT + 11))
REGISTRY_PORT=$((API_PORT + 12))
BRIDGE=${AQ_NODE_BRIDGE:-aq-br0}
NODE_CIDR=${AQ_NODE_CIDR:-10.213.0.1/24}
NODE_IP=${NODE_CIDR%/*}
NODE_NAME=aq-node
# The first address of --service-cluster-ip-range: the `kubernetes` Service.
KUBERNETES_SERVICE_IP=10.0.0.1
DOCKER_SOCK=$STATE/docker.sock
# In node mode the API server listens on the bridge (pods dial it there), else on loopback.
API_HOST=127.0.0.1
[ -f "$STATE/node-mode" ] && API_HOST=$NODE_IP
GO=/usr/lib/go-1.19/bin
SRC_TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
SRC_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
SRC=$CACHE/src/kubernetes-1.20.2
KUBECONFIG_OUT=$STATE/admin.kubeconfig

say() { printf 'kube.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR

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
have_node_binaries() { [ -x "$BIN/kubelet" ] && [ -x "$BIN/kube-scheduler" ] && [ -x "$BIN/kubectl" ]; }

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

build() { # [node]
  local what=()
  have_binaries || what+=(kube-apiserver kube-controller-manager)
  if [ "${1:-}" = node ]; then
    local b
    for b in kubelet kube-scheduler kubectl; do [ -x "$BIN/$b" ] || what+=("$b"); done
  fi
  [ ${#what[@]} -eq 0 ] && return 0
  fetch_source
  say "building ${what[*]} (once; several minutes)"
  mkdir -p "$BIN" "$CACHE/home"
  (
    cd "$SRC"
    export PATH=$GO:$PATH GOCACHE=$CACHE/gocache GOPROXY=off GOFLAGS= HOME=$CACHE/home
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean \
           KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
    make WHAT="${what[*]/#/cmd/}" > "$CACHE/build.log" 2>&1 \
      || { tail -30 "$CACHE/build.log" >&2; exit 1; }
  )
  local b
  for b in "${what[@]}"; do install -m 0755 "$SRC/_output/local/bin/linux/amd64/$b" "$BIN/"; done
}

# --------------------------------------------------------------------------- certificates
certificates() {
  local p=$STATE/pki
  # Made again when the node's address changed (it is in the server certificate).
  # (Never under a running API server, which keeps the certificates it started with.)
  [ -f "$p/ready" ] && { [ "$(cat "$p/ready")" = "$NODE_IP" ] || alive kube-apiserver; } && return 0
  rm -rf "$p"; mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj /CN=aq-test-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:%s,IP:%s,DNS:localhost,DNS:kubernetes.default.svc\n' "$KUBERNETES_SERVICE_IP" "$NODE_IP" > server.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=kube-apiserver 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.crt 2>/dev/null
    # The controller-manager authenticates with a client certificate of its well-known user.
    openssl req -newkey rsa:2048 -nodes -keyout cm.key -out cm.csr -subj /CN=system:kube-controller-manager 2>/dev/null
    openssl x509 -req -in cm.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out cm.crt 2>/dev/null
    # The node's identities: scheduler, kubelet (Node authorizer), and the API server's own
    # client certificate for the kubelet (logs).
    local n subj
    for n in scheduler:/CN=system:kube-scheduler kubelet:/O=system:nodes/CN=system:node:$NODE_NAME \
             apiserver-kubelet:/O=system:masters/CN=kube-apiserver-kubelet-client; do
      subj=${n#*:}; n=${n%%:*}
      openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subj" 2>/dev/null
      openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out "$n.crt" 2>/dev/null
    done
    # Service account tokens are signed with this key pair.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # The admin is a static bearer token in system:masters.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > admin.token
    printf '%s,aq-admin,aq-admin,"system:masters"\n' "$(cat admin.token)" > tokens.csv
    chmod 600 ./*.key admin.token tokens.csv
    echo "$NODE_IP" > ready
  )
}

kubeconfig() { # file user-yaml
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aq-test
  cluster: {server: "https://$API_HOST:$API_PORT", certificate-authority: "$STATE/pki/ca.crt"}
users:
- name: u
  user: $2
contexts:
- name: aq-test
  context: {cluster: aq-test, user: u}
current-context: aq-test
EOF
  chmod 600 "$1"
}

kubeconfigs() {
  local p=$STATE/pki n
  kubeconfig "$KUBECONFIG_OUT" "{token: \"$(cat "$p/admin.token")\"}"
  for n in cm scheduler kubelet; do
    kubeconfig "$STATE/$n.kubeconfig" "{client-certificate: \"$p/$n.crt\", client-key: \"$p/$n.key\"}"
  done
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

admin_get() { curl -sf --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$STATE/pki/admin.token")" "https://$API_HOST:$API_PORT$1"; }

control_plane() {
  install_packages
  build "${1:-}"
  mkdir -p "$STATE"
  certificates
  kubeconfigs
  local p=$STATE/pki node_api=() node_cm=()
  local controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route'
  if [ "${1:-}" = node ]; then
    node_api=(--kubelet-client-certificate "$p/apiserver-kubelet.crt" --kubelet-client-key "$p/apiserver-kubelet.key"
              --kubelet-preferred-address-types InternalIP)
    # Dynamic hostPath volumes for the runs' ReadWriteMany claims (one node, so that is fine).
    node_cm=(--enable-hostpath-provisioner)
    # The node lifecycle controller lifts the not-ready taint a kubelet registers with.
    controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route'
  fi
  launch etcd /usr/bin/etcd --name aq-test --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "aq-test=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn --logger zap
  await etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  launch kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$API_HOST" --advertise-address "$API_HOST" --secure-port "$API_PORT" --insecure-port 0 \
    --tls-cert-file "$p/server.crt" --tls-private-key-file "$p/server.key" --client-ca-file "$p/ca.crt" \
    --token-auth-file "$p/tokens.csv" --authorization-mode Node,RBAC --anonymous-auth=false \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$p/sa.pub" \
    --service-account-signing-key-file "$p/sa.key" --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none --cert-dir "$STATE/apiserver" \
    --feature-gates TTLAfterFinished=true "${node_api[@]}" --v 1
  await kube-apiserver 120 admin_get /readyz
  launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/cm.kubeconfig" \
    --authentication-kubeconfig "$STATE/cm.kubeconfig" --authorization-kubeconfig "$STATE/cm.kubeconfig" \
    --address 127.0.0.1 --port "$CM_PORT" --secure-port 0 --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --controllers "$controllers" --feature-gates TTLAfterFinished=true "${node_cm[@]}" --v 1
  await kube-controller-manager 60 curl -sf "http://127.0.0.1:$CM_PORT/healthz"
  # Ready for tests once the ServiceAccount controller has run.
  await kube-controller-manager 60 admin_get /api/v1/namespaces/default/serviceaccounts/default
}

start() {
  if existing_cluster; then
    say "using the cluster of KUBECONFIG"
    echo "export KUBECONFIG=$KUBECONFIG"
    return 0
  fi
  if [ -f "$STATE/node-mode" ] && alive kube-apiserver; then
    say "the control plane runs in node mode; using it"
  else
    rm -f "$STATE/node-mode"
    control_plane
  fi
  say "ready (stop with: $0 stop)"
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
}

# --------------------------------------------------------------------------- the node
node_packages() {
  local want=()
  command -v dockerd >/dev/null || want+=(docker.io)
  command -v iptables >/dev/null || want+=(iptables)
  command -v ip >/dev/null || want+=(iproute2)
  command -v debootstrap >/dev/null || want+=(debootstrap)
  command -v gcc >/dev/null || want+=(gcc libc6-dev)
  if [ ${#want[@]} -gt 0 ]; then
    say "installing ${want[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  fi
  registry_binary
}

# The registry (Debian's docker-registry), taken out of its package into the cache: installing
# the package would register and start a system service.
registry_binary() {
  [ -x "$BIN/docker-registry" ] && return 0
  local d; d=$(mktemp -d)
  say "fetching Debian's docker-registry package"
  (cd "$d" && apt-get download -qq docker-registry >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$d" && apt-get download -qq docker-registry >/dev/null); } \
    || { rm -rf "$d"; die "cannot download Debian's docker-registry package"; }
  dpkg-deb -x "$d"/docker-registry_*.deb "$d/x"
  mkdir -p "$BIN"
  install -m 0755 "$d/x/usr/bin/docker-registry" "$BIN/docker-registry"
  rm -rf "$d"
}

# The node's registry: the engine's mirror for Docker Hub names, on the bridge, its data in the
# state directory.
registry() {
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$STATE/registry" "$NODE_IP:$REGISTRY_PORT" > "$STATE/registry.yml"
  launch registry "$BIN/docker-registry" serve "$STATE/registry.yml"
  await registry 30 curl -sf "http://$NODE_IP:$REGISTRY_PORT/v2/"
}

# The rules, each added once and removed by stop: the `kubernetes` Service address to the API
# server (for pods), and no forwarding out of the bridge.
RULES=("-t nat PREROUTING -i $BRIDGE -d $KUBERNETES_SERVICE_IP/32 -p tcp --dport 443 -j DNAT --to-destination $NODE_IP:$API_PORT"
       "-t filter FORWARD -i $BRIDGE ! -o $BRIDGE -j DROP")
rules() { # add|del
  local r t chain rest
  for r in "${RULES[@]}"; do
    read -r _ t chain rest <<< "$r"
    # shellcheck disable=SC2086
    if iptables -t "$t" -C "$chain" $rest -m comment --comment aq-kube 2>/dev/null; then
      [ "$1" = del ] && iptables -t "$t" -D "$chain" $rest -m comment --comment aq-kube
    else
      [ "$1" = add ] && iptables -t "$t" -I "$chain" $rest -m comment --comment aq-kube
    fi
  done
  return 0
}

network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_CIDR" dev "$BRIDGE"
    touch "$STATE/bridge-ours"
  fi
  ip link set "$BRIDGE" up
  rules add
}

iptables_chains() {
  local t
  for t in filter nat mangle; do iptables-save -t "$t" 2>/dev/null | sed -n "s/^:\([^ ]*\) .*/$t \1/p"; done
}

# Chains a kubelet made (KUBE-*), which outlive it: removed with the rules that jump to them,
# unless they were there before the node started.
kubelet_chains_down() {
  local before=$STATE/iptables-chains.before t c rule new rules
  [ -f "$before" ] || return 0
  new=$(iptables_chains | grep ' KUBE-' | grep -vxF -f "$before" || true)
  while read -r t c; do
    [ -n "$c" ] || continue
    rules=$(iptables-save -t "$t" | grep -E -- "^-A .* -j $c( |\$)" | sed 's/^-A/-D/' || true)
    while read -r rule; do
      [ -n "$rule" ] && { eval "iptables -t $t $rule" 2>/dev/null || true; }
    done <<< "$rules"
    iptables -t "$t" -F "$c" 2>/dev/null || true
  done <<< "$new"
  # Deleted once no rule jumps to them any more (chains may jump to each other).
  while read -r t c; do
    [ -n "$c" ] && { iptables -t "$t" -X "$c" 2>/dev/null || true; }
  done <<< "$new"
  rm -f "$before"
}

network_down() {
  rules del || true
  kubelet_chains_down || true
  if [ -f "$STATE/bridge-ours" ]; then
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -f "$STATE/bridge-ours"
  fi
}

# dockershim gives pod sandboxes oom_score_adj -998, which a root without CAP_SYS_RESOURCE
# (inside a container or a sandbox) cannot set: runc fails with "can't get final child's PID from pipe".
# This runtime, registered as the node's dockerd default, clamps it to 0 and calls runc.
runc_wrapper() {
  cat > "$STATE/runc-oom-clamp" <<'EOF'
#!/bin/sh
bundle=""; prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle=$a ;; esac
  case "$a" in --bundle=*) bundle=${a#--bundle=} ;; esac
  prev=$a
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec runc "$@"
EOF
  chmod 0755 "$STATE/runc-oom-clamp"
}

docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker -H "unix://$DOCKER_SOCK" "$@"; else docker -H "unix://$DOCKER_SOCK" "$@"; fi; }

node() {
  [ "$(id -u)" = 0 ] || die "the node needs root (a bridge, iptables rules, dockerd, kubelet)"
  if alive kube-apiserver && [ ! -f "$STATE/node-mode" ]; then
    die "a control plane without a node runs from $STATE: stop it first ($0 stop)"
  fi
  node_packages
  mkdir -p "$STATE"
  touch "$STATE/node-mode"
  [ -e /tmp/hostpath_pv ] || touch "$STATE/hostpath-ours"
  [ -f "$STATE/iptables-chains.before" ] || iptables_chains > "$STATE/iptables-chains.before"
  API_HOST=$NODE_IP
  network_up
  control_plane node
  runc_wrapper
  registry
  launch dockerd dockerd --data-root "$STATE/docker" --exec-root "$STATE/docker-exec" \
    --pidfile "$STATE/docker-exec/dockerd.pid" -H "unix://$DOCKER_SOCK" --bridge "$BRIDGE" \
    --iptables=false --ip-masq=false --ip-forward=false --storage-driver overlay2 \
    --registry-mirror "http://$NODE_IP:$REGISTRY_PORT" --insecure-registry "$NODE_IP:$REGISTRY_PORT" \
    --exec-opt native.cgroupdriver=cgroupfs --add-runtime "aq-runc=$STATE/runc-oom-clamp" --default-runtime aq-runc
  await dockerd 60 docker_cli version
  docker_cli image inspect k8s.gcr.io/pause:3.2 >/dev/null 2>&1 \
    || DOCKER_HOST="unix://$DOCKER_SOCK" "$(dirname "$0")/images.sh" pause
  launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --address 127.0.0.1 --port "$SCHED_PORT" --secure-port 0 --leader-elect=false --v 1
  await kube-scheduler 60 curl -sf "http://127.0.0.1:$SCHED_PORT/healthz"
  mkdir -p "$STATE/kubelet"
  # The API and event rates of today's kubelets: Kubernetes 1.27 raised the defaults from 5/10
  # to 50/100 because at 5 requests a second a kubelet starting several pods at once (status
  # updates, volumes, events) throttles itself; a run's parallel step pods are such a case.
  launch kubelet "$BIN/kubelet" --kubeconfig "$STATE/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
    --container-runtime docker --docker-endpoint "unix://$DOCKER_SOCK" --pod-infra-container-image k8s.gcr.io/pause:3.2 \
    --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --node-ip "$NODE_IP" --address "$NODE_IP" \
    --port "$KUBELET_PORT" --read-only-port 0 --healthz-bind-address 127.0.0.1 --healthz-port "$KUBELET_HEALTHZ" \
    --client-ca-file "$STATE/pki/ca.crt" --anonymous-auth=false --authorization-mode AlwaysAllow \
    --cgroup-driver cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= --eviction-hard= \
    --fail-swap-on=false --make-iptables-util-chains=false --image-gc-high-threshold 100 --image-gc-low-threshold 99 --resolv-conf= \
    --volume-plugin-dir "$STATE/kubelet/volume-plugins" --kube-api-qps 50 --kube-api-burst 100 \
    --event-qps 50 --event-burst 100 --v 1
  await kubelet 90 node_ready
  say "node $NODE_NAME ready at $NODE_IP (stop with: $0 stop)"
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
  echo "export DOCKER_HOST=unix://$DOCKER_SOCK"
  echo "export AQ_NODE_REGISTRY=$NODE_IP:$REGISTRY_PORT"
}

node_ready() {
  local n
  n=$(admin_get "/api/v1/nodes/$NODE_NAME" | tr -d ' \n') || return 1
  [[ $n == *'"type":"Ready","status":"True"'* ]]
}

stop_one() {
  local n=$1 pid
  alive "$n" || { rm -f "$STATE/$n.pid"; return 0; }
  pid=$(cat "$STATE/$n.pid")
  kill "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$STATE/$n.pid"
  say "stopped $n"
}

stop() {
  local n m
  stop_one kubelet
  if alive dockerd; then
    # The pods' containers go before their engine.
    local ids
    ids=$(docker_cli ps -aq 2>/dev/null || true)
    # shellcheck disable=SC2086
    if [ -n "$ids" ]; then docker_cli rm -f $ids >/dev/null 2>&1 || true; fi
  fi
  for n in kube-scheduler dockerd registry kube-controller-manager kube-apiserver etcd; do stop_one "$n"; done
  # Mounts the kubelet and the engine leave behind (secret volumes, overlays), deepest first.
  if [ -d "$STATE" ]; then
    for m in $(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/mounts | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  fi
  if [ -f "$STATE/node-mode" ]; then
    network_down
    # What the hostPath provisioner made for the runs' volumes.
    if [ -f "$STATE/hostpath-ours" ]; then rm -rf /tmp/hostpath_pv "$STATE/hostpath-ours"; fi
    rm -f "$STATE/node-mode"
  fi
}

status() {
  local n
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler registry dockerd kubelet; do
    if alive "$n"; then echo "$n: running (pid $(cat "$STATE/$n.pid"))"; else echo "$n: stopped"; fi
  done
}

env_lines() {
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
  [ -f "$STATE/node-mode" ] && echo "export DOCKER_HOST=unix://$DOCKER_SOCK" \
    && echo "export AQ_NODE_REGISTRY=$NODE_IP:$REGISTRY_PORT"
  return 0
}

case "${1:-start}" in
  start) start ;;
  node) node ;;
  env) env_lines ;;
  status) status ;;
  stop) stop ;;
  clean) stop; rm -rf "$STATE" "$CACHE/images" ;;
  build) install_packages; build "${2:-}" ;;
  *) die "usage: $0 [start|node|env|status|stop|clean]" ;;
esac
