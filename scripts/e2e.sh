#!/usr/bin/env bash
# scripts/e2e.sh - the whole path on a real node, in one command (root; about 40 minutes from
# a fresh machine, mostly building, a few minutes once the caches are warm).
#
#   a pipeline.execute CloudEvent -> the service (its own image, a pod under the ServiceAccount
#   and Role of knative/) -> a Job -> Calrissian -> step pods -> job reports posted with the
#   run's token -> the run `succeeded` from the Job's status (a relayed ApiServerSource-shaped
#   event, and reconcile-on-read) -> outputs and usage stored -> the run's objects collected
#   after their retention; every demo pipeline timed over repeated runs, with a breakdown of
#   where the time goes; a failing clone ends `failed` with its reason; cancel removes pods;
#   the reference's own catalogue (tests/fixtures/reference/backend.json) imported unchanged
#   and each of its pipelines run, with its findings and time, those whose tool images cannot
#   be had here failing at once with the image named (docs/fixtures.md); and every container
#   a run started, as the node's kernel saw it, ran as a non-root user (the Job's own container,
#   started as root to hand the node's hostPath volume over, is seen again as the run's user).
#
# Environment: AQ_E2E_REPEAT, AQ_E2E_PIPELINES, AQ_E2E_ONCE (scripts/e2e.py); AQ_E2E_FIXTURES
# (a fixture file to import instead of the reference's, or 0 to skip that stage);
# AQ_E2E_ONLY=fixtures runs that stage alone.
#
# It starts (and on success, failure or interrupt stops) a control plane and a node of its own
# (scripts/kube.sh node, with its own state directory and ports, so a control plane the test
# suite uses is left alone), builds the images offline (scripts/images.sh), serves a git
# repository from this machine on the node's bridge, and runs scripts/e2e.py, which prints
# each stage with its time and a closing `N passed, M failed`.
#
# Addresses used: 127.0.0.1 (etcd 23379-23380, the controller-manager 27444, the scheduler
# 27445, the kubelet's health 27454) and the bridge aq-br0, 10.213.0.1/24 (the API server
# 27443, the kubelet 27453, git 29418-29419, the pods). Nothing else is contacted but Debian's
# mirror and PyPI and crates.io while images are built.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "e2e.sh: needs root (a bridge, iptables rules, dockerd, kubelet)" >&2; exit 2; }
# Never silent: the step that failed, and why.
trap 'echo "e2e.sh: failed at line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

# What it uses before the node exists (scripts/kube.sh installs the rest).
want=()
for tool in iptables:iptables ip:iproute2 git:git python3:python3 curl:curl; do
  command -v "${tool%%:*}" >/dev/null || want+=("${tool#*:}")
done
if [ ${#want[@]} -gt 0 ]; then
  echo "e2e.sh: installing ${want[*]} (apt)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

export AQ_KUBE_CACHE=${AQ_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/application-quality-api/kube}
export AQ_KUBE_STATE=${AQ_E2E_STATE:-$AQ_KUBE_CACHE/e2e-run}
export AQ_KUBE_PORT=${AQ_E2E_KUBE_PORT:-27443} AQ_ETCD_PORT=${AQ_E2E_ETCD_PORT:-23379}
# Never an outside cluster: this run starts its own.
unset KUBECONFIG

T0=$(date +%s)
stage() { printf '[%6ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# What the machine looks like before: its packet filter rules and chains (without counters).
# A table that did not exist and now only holds empty built-in chains with the default policy
# (which merely loading it creates) is no difference: those lines are left out. A machine with
# no table at all prints nothing, which is fine too.
netfilter() {
  { iptables-save 2>/dev/null || true; } |
    grep -E '^(:|-A)' |
    sed -E 's/ \[[0-9]+:[0-9]+\]$//' |
    grep -vE '^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT$' |
    sort || true
}
WORK=$(mktemp -d)
netfilter > "$WORK/netfilter.before"
cleanup() {
  local rc=$? left=()
  trap - EXIT INT TERM
  stage "cleaning up: the node, its engine, the control plane, the bridge and rules"
  scripts/kube.sh stop >&2 || true
  # Left as found? Processes, the bridge, packet filter rules, mounts.
  scripts/kube.sh status | grep -q running && left+=("processes: $(scripts/kube.sh status | grep running | tr '\n' ' ')")
  ip link show "${AQ_NODE_BRIDGE:-aq-br0}" >/dev/null 2>&1 && left+=("the bridge")
  netfilter | diff -q - "$WORK/netfilter.before" >/dev/null || left+=("iptables: $(netfilter | diff - "$WORK/netfilter.before" | grep '^[<>]' | head -5 | tr '\n' ' ')")
  grep -q " $AQ_KUBE_STATE/" /proc/mounts && left+=("mounts under $AQ_KUBE_STATE")
  rm -rf "$WORK"
  if [ ${#left[@]} -gt 0 ]; then
    printf 'e2e.sh: NOT left as found: %s\n' "${left[@]}" >&2
    [ "$rc" = 0 ] && rc=1
  else
    stage "the machine is as it was: no process, bridge, rule or mount of ours left"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stage "node: control plane, scheduler, dockerd, kubelet"
exports=$(scripts/kube.sh node)
eval "$exports"
export KUBECONFIG DOCKER_HOST
stage "node ready"

FIXTURES_FILE=${AQ_E2E_FIXTURES:-tests/fixtures/reference/backend.json}
[ "$FIXTURES_FILE" = 0 ] || FIXTURES_FILE=$(realpath "$FIXTURES_FILE")
stage "images (built here, offline)"
if [ "$FIXTURES_FILE" = 0 ]; then scripts/images.sh all; else scripts/images.sh all fixtures; fi
stage "images ready"

# The repository the pipelines clone: two Python files, one with findings of every linter
# (unused imports, an eval).
REPO=$WORK/git/demo.git
mkdir -p "$WORK/src"
printf 'import os\nimport sys\n\n\ndef f():\n    return 1\n\n\ndef g(text):\n    return eval(text)\n' > "$WORK/src/bad.py"
printf 'def good():\n    return 2\n' > "$WORK/src/good.py"
# A notebook for the notebook pipeline: a title, one executed cell, one unused import.
cat > "$WORK/src/demo.ipynb" <<'NB'
{"nbformat": 4, "nbformat_minor": 5,
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "cells": [
  {"id": "t", "cell_type": "markdown", "metadata": {}, "source": ["# Demo notebook"]},
  {"id": "c", "cell_type": "code", "metadata": {}, "execution_count": 1, "outputs": [],
   "source": ["import os\n", "print(1 + 1)"]}]}
NB
# An Application Package for the package validator: one valid CommandLineTool.
cat > "$WORK/src/tool.cwl" <<'CWL'
cwlVersion: v1.2
$namespaces:
  s: https://schema.org/
s:softwareVersion: 0.1.0
class: CommandLineTool
id: main
label: Echo
doc: Prints its message.
baseCommand: echo
inputs:
  message: {type: string, inputBinding: {position: 1}}
outputs: []
CWL
git -C "$WORK/src" init -q -b main
git -C "$WORK/src" -c user.name=e2e -c user.email=e2e@localhost add .
git -C "$WORK/src" -c user.name=e2e -c user.email=e2e@localhost commit -qm demo
git clone -q --bare "$WORK/src" "$REPO"

stage "end-to-end checks"
KUBECTL=$AQ_KUBE_CACHE/bin/kubectl
DOCKER=$(command -v /usr/bin/docker || command -v docker)
NODE_IP=$(AQ_NODE_CIDR=${AQ_NODE_CIDR:-10.213.0.1/24}; echo "${AQ_NODE_CIDR%/*}")
export KUBECTL DOCKER NODE_IP REPO_DIR=$REPO
export SERVICE_IMAGE=${AQ_SERVICE_IMAGE:-application-quality-api:local}
export CALRISSIAN_IMAGE=aq-local/calrissian:0.18.1
if [ "$FIXTURES_FILE" = 0 ]; then export AQ_E2E_FIXTURES=0; else export AQ_E2E_FIXTURES_FILE=$FIXTURES_FILE; fi
python3 scripts/e2e.py
