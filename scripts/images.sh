#!/usr/bin/env bash
# scripts/images.sh - the container images of the local node, made on this machine, offline.
#
# Nothing is pulled from a container registry. A Debian bookworm root filesystem (debootstrap
# from the Debian mirror apt already uses) is imported as the base of everything else:
#   aq-local/debian:bookworm      the base
#   aq-local/static:nonroot       a distroless-like runtime base: CA certificates, passwd, /tmp
#   aq-local/rust:<version>       a build image with this machine's Rust toolchain
#   k8s.gcr.io/pause:3.2          the pod sandbox, compiled from the Kubernetes source tree
#   aq-local/calrissian:<version> Calrissian from PyPI (+ Node.js for CWL expressions)
#   <the demo CWL's images>       one Debian image with git, Python 3, curl and the pinned tools, tagged with
#                                 every dockerPull name of the demo catalogue and of docs/reference-save-tool.json
#   application-quality-api:local the service, built by the repository's Dockerfile on the two
#                                 local bases above
#   <the reference's images>      `fixtures` (not in `all`): the tools image plus BusyBox's sh, a
#                                 conda stand-in and a curl that authenticates job reports
#                                 (scripts/images/fixtures.Dockerfile), tagged with the names
#                                 the reference's catalogue pulls (FIXTURE_IMAGES); with
#                                 AQ_NODE_REGISTRY set (scripts/kube.sh node), those pulled on
#                                 every start (no tag, `:latest`) are pushed to the node's registry
#
# Usage: scripts/images.sh [all|base|pause|calrissian|tools|service|fixtures]...   (default: all)
# Images already present are kept (AQ_IMAGES_REBUILD=1 rebuilds); the service is always
# rebuilt, incrementally (BuildKit cache mounts).
#
# Environment: DOCKER_HOST (the engine; scripts/kube.sh node prints it), DOCKER (the client,
# default Debian's /usr/bin/docker, which has BuildKit built in), AQ_KUBE_CACHE (as kube.sh),
# AQ_SERVICE_IMAGE (default application-quality-api:local).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

CACHE=${AQ_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube}
IMAGES=$CACHE/images
SRC=$CACHE/src/kubernetes-1.20.2
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
RUST_VERSION=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
BASE=aq-local/debian:bookworm
STATIC=aq-local/static:nonroot
RUST=aq-local/rust:$RUST_VERSION
PAUSE=k8s.gcr.io/pause:3.2
CALRISSIAN_VERSION=0.18.1
CALRISSIAN=aq-local/calrissian:$CALRISSIAN_VERSION
SERVICE=${AQ_SERVICE_IMAGE:-application-quality-api:local}
FIXTURE_TOOLS=aq-local/fixture-tools:1
# The images of the reference's catalogue (its fixtures' dockerPull names) this machine can make:
# each runs the commands and scripts its tool definitions call. The others (the EOEPCA notebook
# and Application Package validators, Trivy, the SonarQube scanner) have no program to be had
# from the registries reachable here: docs/fixtures.md.
FIXTURE_IMAGES=(alpine/git:latest alpine:latest curlimages/curl:latest cytopia/bandit:latest
  cytopia/pylint:latest eoepca/appquality-flake8-json:v0.1.0 ghcr.io/astral-sh/ruff:alpine
  continuumio/miniconda3:latest)
export DOCKER_BUILDKIT=1

say() { printf 'images.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
have() { [ -z "${AQ_IMAGES_REBUILD:-}" ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
# Images built from files of this repository carry a hash of those files (a label), and are
# rebuilt when the files change: `have_built IMAGE HASH`, `inputs FILE...` prints the hash.
LABEL=org.eoepca.application-quality.inputs
inputs() { cat "$@" | sha256sum | cut -c1-16; }
have_built() {
  [ -z "${AQ_IMAGES_REBUILD:-}" ] &&
    [ "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$2" ]
}
# Builds need the host network only to reach Debian's mirror and PyPI.
# This machine's CA bundle goes in as a build secret (it may hold a TLS-inspecting proxy's CA);
# the Dockerfiles mount it for their downloads only.
CA_BUNDLE=${AQ_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[ -f "$CA_BUNDLE" ] && secret=(--secret "id=ca-certificates,src=$CA_BUNDLE")
build() { "$DOCKER" build --network host "${secret[@]}" --build-arg "BASE_IMAGE=$BASE" "$@"; }

# The Debian mirror apt uses (one-line or deb822 sources; /etc/apt/sources.list may not exist).
mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^\s*#' \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true
}

base() {
  have "$BASE" && return 0
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  local root=$IMAGES/rootfs m
  m=$(mirror); [ -n "$m" ] || die "no Debian mirror in the apt sources"
  say "debootstrap bookworm (minbase) from $m"
  rm -rf "$root"; mkdir -p "$IMAGES"
  debootstrap --variant=minbase bookworm "$root" "$m" > "$IMAGES/debootstrap.log" 2>&1 \
    || { tail -20 "$IMAGES/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
}

static_base() {
  have "$STATIC" && return 0
  local d=$IMAGES/static
  rm -rf "$d"; mkdir -p "$d/etc/ssl/certs" "$d/home/nonroot" "$d/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$d/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$d/etc/group"
  printf 'hosts: files dns\n' > "$d/etc/nsswitch.conf"
  # Debian's CA bundle, as on this machine (the ca-certificates package).
  [ -f /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
  cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  chown -R 65532:65532 "$d/home/nonroot"; chmod 1777 "$d/tmp"
  tar -C "$d" --numeric-owner -c . | "$DOCKER" import - "$STATIC" >/dev/null
  rm -rf "$d"
}

rust() {
  have "$RUST" && return 0
  local sysroot ctx=$IMAGES/rust-context
  sysroot=$(rustc --print sysroot)
  say "build image with the toolchain at $sysroot"
  rm -rf "$ctx"; mkdir -p "$ctx/toolchain"
  cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/toolchain/"
  cp scripts/images/rust.Dockerfile "$ctx/Dockerfile"
  build -t "$RUST" "$ctx"
  rm -rf "$ctx"
}

pause() {
  have "$PAUSE" && return 0
  [ -f "$SRC/build/pause/linux/pause.c" ] || die "no Kubernetes source tree at $SRC: run scripts/kube.sh build first"
  local d=$IMAGES/pause
  rm -rf "$d"; mkdir -p "$d"
  gcc -Os -static -o "$d/pause" "$SRC/build/pause/linux/pause.c"
  strip "$d/pause"
  tar -C "$d" -c pause | "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE" >/dev/null
  rm -rf "$d"
}

calrissian() {
  local h; h=$(inputs scripts/images/calrissian.Dockerfile scripts/images/calrissian-warm.py)
  have_built "$CALRISSIAN" "$h" && return 0
  build -t "$CALRISSIAN" --label "$LABEL=$h" --build-arg "CALRISSIAN_VERSION=$CALRISSIAN_VERSION" \
    -f scripts/images/calrissian.Dockerfile scripts/images
}

# Every image the demo CWL pulls, and the one of the replacement save tool for the reference's
# catalogue (docs/reference-save-tool.json, a JSON string: the name ends at a backslash).
tool_names() {
  { grep -rhoE 'dockerPull: *[^ ]+' src/catalogue/demo | sed 's/dockerPull: *//'
    grep -hoE 'dockerPull: *[^ \\]+' docs/reference-save-tool.json | sed 's/dockerPull: *//'; } | sort -u
}

tools() {
  local names n first
  mapfile -t names < <(tool_names)
  [ ${#names[@]} -gt 0 ] || die "no tool images found in src/catalogue/demo"
  first=${names[0]}
  # Built when the files it is built from changed, or when any of its names is missing (an
  # image from before a tool was added lacks one).
  local h n; h=$(inputs scripts/images/tools.Dockerfile scripts/runner-requirements.txt)
  for n in "${names[@]}"; do
    if ! have_built "$n" "$h"; then
      build -t "$first" --label "$LABEL=$h" -f scripts/images/tools.Dockerfile scripts
      break
    fi
  done
  for n in "${names[@]:1}"; do "$DOCKER" tag "$first" "$n"; done
}

fixtures() {
  tools
  local names h n
  mapfile -t names < <(tool_names)
  h=$(inputs scripts/images/tools.Dockerfile scripts/runner-requirements.txt \
    scripts/images/fixtures.Dockerfile scripts/images/stand-in/*)
  if ! have_built "$FIXTURE_TOOLS" "$h"; then
    build -t "$FIXTURE_TOOLS" --label "$LABEL=$h" --build-arg "TOOLS_IMAGE=${names[0]}" \
      -f scripts/images/fixtures.Dockerfile scripts/images
  fi
  for n in "${FIXTURE_IMAGES[@]}"; do "$DOCKER" tag "$FIXTURE_TOOLS" "$n"; done
  [ -n "${AQ_NODE_REGISTRY:-}" ] || return 0
  # A kubelet pulls an image named without a tag or `:latest` at every start; the node's
  # engine asks its registry mirror first, which must then hold it, under its Docker Hub path.
  local path
  for n in "${FIXTURE_IMAGES[@]}"; do
    [ "${n##*:}" = latest ] || continue
    path=${n%:latest}
    case "${path%%/*}" in *.*|*:*) continue ;; esac   # not a Docker Hub name
    case "$path" in */*) ;; *) path=library/$path ;; esac
    "$DOCKER" tag "$FIXTURE_TOOLS" "$AQ_NODE_REGISTRY/$path:latest"
    "$DOCKER" push -q "$AQ_NODE_REGISTRY/$path:latest" >/dev/null
    "$DOCKER" rmi "$AQ_NODE_REGISTRY/$path:latest" >/dev/null
  done
  say "pushed the reference's latest-tagged names to the node's registry $AQ_NODE_REGISTRY"
}

service() {
  static_base; rust
  say "building $SERVICE with the repository's Dockerfile"
  "$DOCKER" build --network host "${secret[@]}" --build-arg "BUILDER_IMAGE=$RUST" --build-arg "RUNTIME_IMAGE=$STATIC" -t "$SERVICE" .
}

sizes() {
  "$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E "^($BASE|$STATIC|$PAUSE|$CALRISSIAN|$SERVICE|alpine/git)[: ]" | sort -u >&2 || true
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case "$what" in
    all) base; pause; calrissian; tools; service ;;
    base) base ;;
    pause) pause ;;
    calrissian) base; calrissian ;;
    tools) base; tools ;;
    service) base; service ;;
    fixtures) base; fixtures ;;
    *) die "usage: $0 [all|base|pause|calrissian|tools|service|fixtures]..." ;;
  esac
done
sizes
