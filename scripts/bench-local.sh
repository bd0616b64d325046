#!/usr/bin/env bash
# Benchmark of the local runner with the release binary (not part of CI: timings on shared
# machines are noisy). Real cwltool, real git, the demo catalogue's tools on the host.
# Writes Markdown to stdout and target/bench/local.md:
#   - POST -> succeeded of the first run after start (cwltool's schemas not cached yet), then
#     of the lint and the notebook pipelines on a demo repository (sequential runs),
#   - the service's own overhead while runs are in flight (added RSS, CPU of the service
#     process itself, children excluded),
#   - runs per minute at the default concurrency (a burst of lint runs submitted at once),
#   - each demo pipeline's time per run (POST -> end, sequential) on a repository with clean
#     and faulty Python, notebooks that run, fail in a cell and have style problems, and CWL
#     packages with and without errors (BENCH_PIPELINE_RUNS each, 0 skips it).
#
#   scripts/bench-local.sh                       # BENCH_RUNS=5 sequential, BENCH_BURST=20
#   BENCH_BIN=path/to/application-quality-api scripts/bench-local.sh   # a binary built already
#   LOCAL_SANDBOX=off scripts/bench-local.sh     # without the runs' sandbox, to measure its cost
# Needs what scripts/dev.sh needs (git, curl, python3, Node.js; cwltool and the demo tools in
# .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
BURST=${BENCH_BURST:-20}
PIPELINE_RUNS=${BENCH_PIPELINE_RUNS:-3}
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill ${SERVER_PID:-} 2>/dev/null || true; wait ${SERVER_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ ! -x .venv/bin/cwltool ] || [ ! -f .venv/.runner-requirements ] ||
   [ scripts/runner-requirements.txt -nt .venv/.runner-requirements ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/runner-requirements.txt
  cp scripts/runner-requirements.txt .venv/.runner-requirements
fi
# BENCH_BIN: an already built binary (skips the build).
if [ -z "${BENCH_BIN:-}" ]; then
  echo "building release binary" >&2
  cargo build --release --locked --quiet
fi
BIN=${BENCH_BIN:-$PWD/target/release/application-quality-api}

# A demo repository: two notebooks (one clean, one with findings) and two Python files.
REPO=$WORK/repo
mkdir -p "$REPO/notebooks"
python3 - "$REPO" <<'PY'
import json, sys
root = sys.argv[1]
meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}
title = {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]}
def code(n, src, outputs=()):
    return {"cell_type": "code", "execution_count": n, "metadata": {}, "outputs": list(outputs), "source": [src]}
def nb(cells):
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": cells})
open(f"{root}/notebooks/clean.ipynb", "w").write(nb([title, code(1, "x = 1\n"), code(2, "print(x)\n")]))
open(f"{root}/notebooks/messy.ipynb", "w").write(nb([title, code(2, "y = 2\n"), code(1, "z = 3\n"), code(None, ""),
    code(3, "1 / 0\n", [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "", "traceback": []}])]))
open(f"{root}/bad.py", "w").write("import os\n\n\ndef check(value):\n    return value == None\n")
open(f"{root}/clean.py", "w").write("def add(a, b):\n    return a + b\n")
PY
# The catalogue's repository: the same Python files, notebooks that run, fail in a cell and
# have style problems, and two CWL packages (one valid, one with errors).
CAT=$WORK/catalogue-repo
mkdir -p "$CAT/notebooks" "$CAT/packages"
cp "$REPO/bad.py" "$REPO/clean.py" "$CAT/"
python3 - "$CAT" <<'PY'
import json, sys
root = sys.argv[1]
meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}
title = {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]}
def code(src):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [src]}
def nb(cells):
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": cells})
open(f"{root}/notebooks/ok.ipynb", "w").write(nb([title, code("x = 1\n"), code("print(x + 1)\n")]))
open(f"{root}/notebooks/fail.ipynb", "w").write(nb([title, code("x = 1\n"), code("y = x / 0\n")]))
open(f"{root}/notebooks/style.ipynb", "w").write(nb([code("import os\n"), code("v = None\nprint(v == None)\n")]))
good = """cwlVersion: v1.2
$namespaces: {s: https://schema.org/}
s:softwareVersion: 1.0.0
$graph:
- class: Workflow
  id: echo-app
  label: Echo
  doc: Echoes a message.
  inputs:
    message: {type: string, label: Message, doc: The message.}
  outputs:
    result: {type: File, label: Result, doc: The text., outputSource: step/out}
  steps:
    step: {label: Echo, doc: Runs echo., run: '#echo', in: {message: message}, out: [out]}
- class: CommandLineTool
  id: echo
  requirements:
    DockerRequirement: {dockerPull: docker.io/library/alpine:3.21}
    ResourceRequirement: {coresMin: 1, coresMax: 1, ramMin: 256, ramMax: 256}
  baseCommand: echo
  stdout: out.txt
  inputs:
    message: {type: string, label: Message, doc: The message., inputBinding: {position: 1}}
  outputs:
    out: {type: stdout, label: Output, doc: The text.}
"""
open(f"{root}/packages/good.cwl", "w").write(good)
bad = good.replace("id: echo-app", "id: main").replace("  label: Echo\n  doc: Echoes a message.\n", "")
open(f"{root}/packages/bad.cwl", "w").write(bad)
PY
git -C "$CAT" init -q && git -C "$CAT" add . && git -C "$CAT" -c user.name=b -c user.email=b@example.org commit -qm demo
git -C "$REPO" init -q && git -C "$REPO" add . && git -C "$REPO" -c user.name=b -c user.email=b@example.org commit -qm demo

export DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" LOG_FORMAT=json EXECUTOR=local \
  CWLTOOL=$PWD/.venv/bin/cwltool LOCAL_CONTAINERS=off LOCAL_DATA_DIR=$WORK/data \
  REPO_URL_SCHEMES=https,file REPO_FILE_ROOTS=$WORK
unset RUST_LOG KUBECONFIG
"$BIN" migrate >/dev/null
"$BIN" seed >/dev/null
APPLICATION_QUALITY_PASSWORD=bench-password-1 "$BIN" user add bench >/dev/null 2>&1
PORT=18098
PORT=$PORT BIND_ADDRESS=127.0.0.1 "$BIN" serve 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/health/readiness" >/dev/null && break; sleep 0.05; done

SERVER_PID=$SERVER_PID BASE=http://127.0.0.1:$PORT REPO=$REPO CAT=$CAT RUNS=$RUNS BURST=$BURST \
  PIPELINE_RUNS=$PIPELINE_RUNS \
  CORES=$(nproc) python3 - <<'PY' | tee "$OUT/local.md"
import json, os, statistics, threading, time, urllib.request

load = os.getloadavg()[0]  # other work on the machine skews every time below
base, pid = os.environ["BASE"], int(os.environ["SERVER_PID"])
runs, burst, repo = int(os.environ["RUNS"]), int(os.environ["BURST"]), os.environ["REPO"]
tick = os.sysconf("SC_CLK_TCK")

def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req) as r:
        return json.load(r)

token = call("POST", "/api/token/", {"username": "bench", "password": "bench-password-1"})["access"]
pipelines = {p["name"]: p["id"] for p in call("GET", "/api/pipelines/", token=token)}
nb = pipelines["Notebook static analysis"]
lint = pipelines["Python lint"]
params = {"parameters": {"clone_subworkflow": {"clone": {"repo_url": "file://" + repo}}}}

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

def cpu_secs():  # the service process itself: utime + stime (children excluded)
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib()); time.sleep(0.01)

def wait(run_id, every=0.02):
    while True:
        r = call("GET", f"/api/pipelines/_/runs/{run_id}/", token=token)
        if r["status"] in ("succeeded", "failed", "killed"):
            return r
        time.sleep(every)

idle = rss_kib()
threading.Thread(target=sample, daemon=True).start()

def timed(pipeline):
    t0 = time.monotonic()
    run = call("POST", f"/api/pipelines/{pipeline}/runs/", params, token)
    assert wait(run["id"])["status"] == "succeeded"
    return time.monotonic() - t0

# The first run after start parses cwltool's schemas itself; the runner caches them for the
# runs that follow.
first = timed(lint)
cache = os.path.join(os.environ["LOCAL_DATA_DIR"], "sandbox", "schemas.pickle")
deadline = time.monotonic() + 30
while os.environ.get("LOCAL_SANDBOX", "bwrap") != "off" and not os.path.exists(cache) and time.monotonic() < deadline:
    time.sleep(0.05)  # written in the background
lat = {}
cpu0 = cpu_secs()
for name, pipeline in (("Python lint", lint), ("Notebook static analysis", nb)):
    lat[name] = [timed(pipeline) for _ in range(runs)]
cpu_seq = cpu_secs() - cpu0

cpu0 = cpu_secs()
t0 = time.monotonic()
ids = [call("POST", f"/api/pipelines/{lint}/runs/", params, token)["id"] for _ in range(burst)]
# Polled rarely, so the service's CPU is its own work on the runs, not answering the poll.
done = [wait(i, every=0.25) for i in ids]
elapsed = time.monotonic() - t0
cpu_burst = cpu_secs() - cpu0
stop.set()
ok = sum(1 for r in done if r["status"] == "succeeded")
child_cpu = statistics.median(r["usage_report"]["cpu_user_seconds"] + r["usage_report"]["cpu_system_seconds"] for r in done)

build = "the binary BENCH_BIN" if os.environ.get("BENCH_BIN") else "release build"
print(f"## Local runner ({time.strftime('%Y-%m-%d')}, {os.environ['CORES']} cores, {build}, SQLite, host tools, sandbox: {os.environ.get('LOCAL_SANDBOX', 'bwrap')}, load average {load:.1f} at the start)\n")
print("| What | Result |\n|---|---|")
print(f"| First run after start (lint; cwltool parses its schemas) | {first*1000:.0f} ms |")
for name, l in lat.items():
    print(f"| {name}, POST -> `succeeded` ({runs} sequential runs) | median {statistics.median(l)*1000:.0f} ms, min {min(l)*1000:.0f} ms, max {max(l)*1000:.0f} ms |")
print(f"| CPU of one run's process tree (cwltool, git, python3, curl, node) | median {child_cpu:.2f} s |")
print(f"| The service's own CPU per run (process itself, children excluded) | {cpu_burst/burst*1000:.1f} ms in the burst (polled every 250 ms); {cpu_seq/(2*runs)*1000:.1f} ms sequential, where the benchmark polls every 20 ms |")
print(f"| The service's RSS | {idle/1024:.1f} MiB idle, peak {peak[0]/1024:.1f} MiB with runs in flight (+{(peak[0]-idle)/1024:.1f} MiB) |")
print(f"| Burst of {burst} lint runs at the default concurrency ({os.environ['CORES']}) | {ok}/{burst} succeeded in {elapsed:.1f} s: {burst/elapsed*60:.1f} runs/minute |")

pipeline_runs = int(os.environ["PIPELINE_RUNS"])
if pipeline_runs:
    cat = {"clone_subworkflow": {"clone": {"repo_url": "file://" + os.environ["CAT"]}}}
    print(f"\n### Each demo pipeline ({pipeline_runs} sequential runs each, on a repository with clean and faulty Python, 3 notebooks, 2 CWL packages)\n")
    print("| Pipeline | Reports | POST -> end, median (min-max) | CPU of the run's processes, median | Verdict |\n|---|---|---|---|---|")
    for name, pid_ in pipelines.items():
        times, cpus = [], []
        for _ in range(pipeline_runs):
            t0 = time.monotonic()
            run = wait(call("POST", f"/api/pipelines/{pid_}/runs/", {"parameters": cat}, token)["id"], every=0.05)
            times.append(time.monotonic() - t0)
            assert run["status"] == "succeeded", run
            cpus.append(run["usage_report"]["cpu_user_seconds"] + run["usage_report"]["cpu_system_seconds"])
        reports = call("GET", f"/api/pipelines/_/runs/{run['id']}/jobreports/", token=token)
        print(f"| {name} | {len(reports)} | {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f} s) | {statistics.median(cpus):.2f} s | {run['digest_quality']} |")
PY
