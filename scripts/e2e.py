#!/usr/bin/env python3
"""The end-to-end checks of scripts/e2e.sh, on a node that really runs pods.

Standard library only. Talks to the cluster with kubectl, to the container engine with the
docker client, and to the service over HTTP, as its users do. Prints each stage with its time
and ends with `N passed, M failed` (exit 1 when anything failed).

Environment (set by scripts/e2e.sh): KUBECTL, DOCKER, DOCKER_HOST, KUBECONFIG, NODE_IP,
SERVICE_IMAGE, CALRISSIAN_IMAGE, REPO_DIR (a bare git repository to serve), AQ_E2E_FIXTURES_FILE
(the reference's catalogue to import and run after the demo stages).
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

KUBECTL = os.environ["KUBECTL"]
DOCKER = os.environ["DOCKER"]
NODE_IP = os.environ["NODE_IP"]
SERVICE_IMAGE = os.environ["SERVICE_IMAGE"]
CALRISSIAN_IMAGE = os.environ["CALRISSIAN_IMAGE"]
REPO_DIR = os.environ["REPO_DIR"]
APP_NS = "application-quality"
RUNS_NS = "application-quality-runs"
USER, PASSWORD = "e2e", "e2e-password-1"
GIT_PORT = int(os.environ.get("E2E_GIT_PORT", "29418"))
HANG_PORT = GIT_PORT + 1
# No `?mode=rwc`: the file is created on a fresh volume, as an operator would write the URL.
DB_URL = os.environ.get("E2E_DATABASE_URL", "sqlite:///data/aq.db")
# Short retention, so the garbage collection of a finished run is seen within the test.
RETENTION_SECS = 5
# Runs per demo pipeline for the p50 of event -> succeeded.
REPEAT = int(os.environ.get("AQ_E2E_REPEAT", "5"))
PIPELINES = [n.strip() for n in os.environ.get("AQ_E2E_PIPELINES", "Python lint,Notebook static analysis,Notebook pipeline").split(",") if n.strip()]
# Every other demo pipeline runs once (AQ_E2E_ONCE=0 skips them).
ONCE = os.environ.get("AQ_E2E_ONCE", "1") != "0"
# The reference's catalogue (a Django fixture file) imported and run after the demo stages
# (AQ_E2E_FIXTURES=0 skips it; AQ_E2E_ONLY=fixtures runs it alone, for a quicker round).
FIXTURES_FILE = os.environ.get("AQ_E2E_FIXTURES_FILE", "")
FIXTURES = os.environ.get("AQ_E2E_FIXTURES", "1") != "0" and bool(FIXTURES_FILE)
ONLY = os.environ.get("AQ_E2E_ONLY", "")
PODS = None  # the PodWatch, once started

results = {"passed": 0, "failed": 0}
measures = []
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def stage(name):
    """Decorator: runs a stage, prints its time and outcome, counts it."""

    def wrap(fn):
        def run(*a, **kw):
            start = time.monotonic()
            log(f"stage {name} ...")
            try:
                out = fn(*a, **kw)
            except Exception as e:  # a failed stage is reported, the others still run
                results["failed"] += 1
                log(f"stage {name}: FAILED after {time.monotonic() - start:.1f}s: {e}")
                return None
            results["passed"] += 1
            log(f"stage {name}: ok in {time.monotonic() - start:.1f}s")
            return out

        return run

    return wrap


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def measure(name, value, unit):
    measures.append((name, value, unit))
    log(f"measure {name}: {value:.2f} {unit}" if isinstance(value, float) else f"measure {name}: {value} {unit}")


def sh(*args, stdin=None, check_rc=True):
    p = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.stdout


def kubectl(*args, stdin=None, check_rc=True):
    return sh(KUBECTL, *args, stdin=stdin, check_rc=check_rc)


def kget(*args):
    return json.loads(kubectl("get", "-o", "json", *args))


def wait_for(what, timeout, fn, interval=0.2):
    """Calls fn until it returns a truthy value; fails with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # not ready yet
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout}s (last: {str(last)[:300]})")


def http(method, url, body=None, headers=None, timeout=30):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None and not isinstance(body, bytes):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


class Service:
    def __init__(self, base):
        self.base = base
        self.token = None

    def login(self):
        st, body = http("POST", self.base + "/api/token/", {"username": USER, "password": PASSWORD})
        check(st == 200, f"login answered {st}: {body}")
        self.token = body["access"]

    def get(self, path):
        return http("GET", self.base + path, headers={"Authorization": "Bearer " + self.token})

    def post(self, path, body=None):
        return http("POST", self.base + path, body if body is not None else {},
                    headers={"Authorization": "Bearer " + self.token})

    def event(self, ty, data, **attrs):
        """A binary-mode CloudEvent, as a Knative Trigger delivers it."""
        headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": ty,
                   "ce-source": "e2e", "Content-Type": "application/json"}
        headers.update({"ce-" + k: v for k, v in attrs.items()})
        return http("POST", self.base + "/", json.dumps(data).encode(), headers)

    def run(self, pipeline, run_id):
        st, body = self.get(f"/api/pipelines/{pipeline}/runs/{run_id}/")
        check(st == 200, f"run {run_id} answered {st}: {body}")
        return body


# --------------------------------------------------------------------------- helpers on the side

def serve_git():
    """git daemon on the bridge: the pipelines clone from this machine, never from outside."""
    base = os.path.dirname(REPO_DIR)
    p = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
                          f"--listen={NODE_IP}", f"--port={GIT_PORT}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("git daemon", 10, lambda: socket.create_connection((NODE_IP, GIT_PORT), 1).close() or True)
    return p


def serve_hanging():
    """A TCP port that accepts and never answers: a clone from it runs until cancelled."""
    srv = socket.create_server((NODE_IP, HANG_PORT))
    held = []

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            held.append(c)

    threading.Thread(target=loop, daemon=True).start()
    return srv


def watch(proc):
    """The objects of a `kubectl get --watch -o json` process, one by one (its output is a
    stream of pretty-printed JSON documents, not one per line)."""
    dec, buf = json.JSONDecoder(), ""
    for line in proc.stdout:
        buf += line
        while buf.strip():
            try:
                obj, end = dec.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            yield obj


class Relay(threading.Thread):
    """Plays the ApiServerSource: watches the runs' Jobs and sends each change to the service as
    the event Knative would (type dev.knative.apiserver.resource.update, data = the Job)."""

    def __init__(self, svc):
        super().__init__(daemon=True)
        self.svc = svc
        self.enabled_runs = set()
        self.applied = {}  # run id -> time a relayed event moved it (answer "Run status updated.")
        self.proc = None

    def run(self):
        self.proc = subprocess.Popen([KUBECTL, "get", "jobs", "-n", RUNS_NS, "--watch", "-o", "json",
                                      "-l", "app.kubernetes.io/managed-by=application-quality-api"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for job in watch(self.proc):
            self.relay(job)

    def relay(self, job):
        run_id = int(job["metadata"]["labels"].get("application-quality.eoepca.org/run-id", "0"))
        if run_id not in self.enabled_runs:
            return
        st, body = self.svc.event("dev.knative.apiserver.resource.update", job,
                                  subject=f"/apis/batch/v1/namespaces/{RUNS_NS}/jobs/{job['metadata']['name']}")
        conds = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        if st == 200 and conds.get("Complete") == "True":
            self.applied.setdefault(run_id, time.monotonic())

    def stop(self):
        if self.proc:
            self.proc.terminate()


def proc_status(pid, container=None):
    """The kernel's view of a live process: uids, gids, effective capabilities, NoNewPrivs;
    with `container`, only while the process is still that container's (a pid may be reused)."""
    try:
        if container:
            with open(f"/proc/{pid}/cgroup") as f:
                if container not in f.read():
                    return None
        with open(f"/proc/{pid}/status") as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        return {"uid": st["Uid"].split(), "gid": st["Gid"].split(), "cap_eff": st["CapEff"].strip(),
                "no_new_privs": st.get("NoNewPrivs", "").strip()}
    except (OSError, KeyError):
        return None


class ContainerWatch(threading.Thread):
    """What the node's engine really ran: on every container start in the runs namespace, the
    container's configuration (user, capabilities, no-new-privileges, mounts) and, while its
    process lives, the kernel's view of that process (/proc/<pid>/status: uids, effective
    capabilities, NoNewPrivs). This is the proof that nothing of a run runs as root, not the
    pod specs we asked for."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen = []  # dicts, one per started container
        self.jobs = []  # (pid, record) of the runs' Job containers
        self.lock = threading.Lock()
        self.proc = None

    def run(self):
        self.proc = subprocess.Popen([DOCKER, "events", "--filter", "type=container", "--filter", "event=start",
                                      "--filter", f"label=io.kubernetes.pod.namespace={RUNS_NS}",
                                      "--format", "{{json .}}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            try:
                cid = json.loads(line)["id"]
                self.inspect(cid)
            except Exception as e:  # a container gone before it was inspected: noted, not fatal
                log(f"container watch: {e}")

    def inspect(self, cid):
        c = json.loads(sh(DOCKER, "inspect", cid))[0]
        labels = c["Config"].get("Labels") or {}
        if labels.get("io.kubernetes.docker.type") == "podsandbox":
            return  # the pause container
        rec = {"id": c["Id"], "pod": labels.get("io.kubernetes.pod.name", "?"),
               "container": labels.get("io.kubernetes.container.name", "?"),
               "user": c["Config"].get("User") or "",
               "cap_drop": c["HostConfig"].get("CapDrop") or [],
               "cap_add": c["HostConfig"].get("CapAdd") or [],
               "security_opt": c["HostConfig"].get("SecurityOpt") or [],
               "privileged": c["HostConfig"].get("Privileged", False),
               "token": any("serviceaccount" in (m.get("Destination") or "") for m in c.get("Mounts", [])),
               "proc": None}
        pid = c["State"].get("Pid") or 0
        # None: the process already ended (a step whose command takes milliseconds).
        rec["proc"] = proc_status(pid)
        with self.lock:
            self.seen.append(rec)
            if rec["pod"].startswith("aq-run-"):
                self.jobs.append((pid, rec))
            else:
                # A step pod of run N exists, so run N's Calrissian has started: how its Job
                # container's first process looks now (one started as root must have dropped it).
                run = PODS.run_of(rec["pod"]) if PODS else None
                for job_pid, job in self.jobs:
                    if run is None or not job["pod"].startswith(f"aq-run-{run}-"):
                        continue
                    later = proc_status(job_pid, job["id"])
                    if later:
                        job["proc_later"] = later

    def stop(self):
        if self.proc:
            self.proc.terminate()


class PodWatch(threading.Thread):
    """Times of the runs' pods as a watch sees them (milliseconds; the cluster's own timestamps
    have whole seconds): created, scheduled, and each container running and terminated."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pods = {}  # name -> {"created": t, "scheduled": t, "containers": {name: {"running": t, "done": t}}}
        self.lock = threading.Lock()
        self.proc = None

    def run(self):
        self.proc = subprocess.Popen([KUBECTL, "get", "pods", "-n", RUNS_NS, "--watch", "-o", "json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for pod in watch(self.proc):
            self.observe(pod, time.monotonic())

    def observe(self, pod, now):
        name = pod["metadata"]["name"]
        with self.lock:
            rec = self.pods.setdefault(name, {"created": now, "scheduled": None, "containers": {},
                                              "labels": pod["metadata"].get("labels") or {}})
            status = pod.get("status") or {}
            if rec["scheduled"] is None and any(c["type"] == "PodScheduled" and c["status"] == "True"
                                                for c in status.get("conditions", [])):
                rec["scheduled"] = now
            for cs in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
                c = rec["containers"].setdefault(cs["name"], {"running": None, "done": None})
                state = cs.get("state") or {}
                if ("running" in state or "terminated" in state) and c["running"] is None:
                    c["running"] = now
                if "terminated" in state and c["done"] is None:
                    c["done"] = now

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.pods))

    def run_of(self, pod):
        """The run id a pod's labels name (step pods carry it), or None."""
        with self.lock:
            return (self.pods.get(pod) or {}).get("labels", {}).get("application-quality.eoepca.org/run-id")

    def stop(self):
        if self.proc:
            self.proc.terminate()


def breakdown(pods, run_id, t0, t_job_complete, t_succeeded):
    """Where one run's time goes, from the pod watch: [(seconds after the event, what)]."""
    job_pods = [p for n, p in pods.items() if p["labels"].get("job-name") == f"aq-run-{run_id}"]
    if not job_pods:
        return []
    jp = job_pods[0]
    rows = [(jp["created"] - t0, "Job's pod created (the Job exists)")]
    if jp["scheduled"]:
        rows.append((jp["scheduled"] - t0, "Job's pod scheduled"))
    cal = jp["containers"].get("calrissian", {})
    if cal.get("running"):
        rows.append((cal["running"] - t0, "Calrissian's container running (its launcher)"))
    end = cal.get("done") or t_job_complete
    steps = sorted(((n, p) for n, p in pods.items() if not n.startswith("aq-run-")
                    and cal.get("running") and cal["running"] <= p["created"] <= (end or p["created"])),
                   key=lambda np: np[1]["created"])
    for i, (n, p) in enumerate(steps):
        c = next(iter(p["containers"].values()), {})
        what = f"step pod {n.rsplit('-pod-', 1)[0]} created"
        if i == 0 and cal.get("running"):
            what += f" (Calrissian start-up: load and validate the CWL, {p['created'] - cal['running']:.2f} s)"
        rows.append((p["created"] - t0, what))
        if c.get("running"):
            rows.append((c["running"] - t0, "  started (scheduled, container created)"))
        if c.get("done"):
            rows.append((c["done"] - t0, "  done"))
    if cal.get("done"):
        rows.append((cal["done"] - t0, "Calrissian's container done (outputs and usage report posted)"))
    if t_job_complete:
        rows.append((t_job_complete - t0, "Job complete, relayed to the service"))
    if t_succeeded:
        rows.append((t_succeeded - t0, "run `succeeded` read from the API"))
    return sorted(rows, key=lambda r: r[0])


def print_breakdown(title, rows):
    log(f"breakdown {title} (seconds after the event; a pod watch's times):")
    prev = 0.0
    for t, what in rows:
        print(f"    {t:7.2f}  (+{t - prev:5.2f})  {what}", flush=True)
        prev = t


def seconds_between(a, b):
    """Seconds between two RFC 3339 times with up to nanosecond fractions."""
    from datetime import datetime

    def parse(t):
        t = t.replace("Z", "+00:00")
        head, _, tail = t.partition(".")
        frac, tz = (tail[:tail.index("+")], tail[tail.index("+"):]) if "+" in tail else (tail, "")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}{tz}" if tail else head)

    return (parse(b) - parse(a)).total_seconds()


def pods_of_namespace():
    return kget("pods", "-n", RUNS_NS)["items"]


def run_objects(run_id):
    """Every object left of run `run_id`: its Job, ConfigMap, Secret, claim and Calrissian pod by
    name/label, and the step pods (Calrissian names them after the steps; any pod counts)."""
    name = f"aq-run-{run_id}"
    left = []
    for kind in ("job", "configmap", "secret", "pvc"):
        out = kubectl("get", kind, name, "-n", RUNS_NS, "--ignore-not-found", "-o", "name")
        if out.strip():
            left.append(out.strip())
    for p in pods_of_namespace():
        left.append("pod/" + p["metadata"]["name"])
    return left


# --------------------------------------------------------------------------- stages

def container_ip(name):
    """The container's address on the node's bridge; fails with its logs when it exited."""
    parts = sh(DOCKER, "inspect", "-f",
               "{{.State.Running}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).split()
    running, ip = parts[0], (parts[1] if len(parts) > 1 else "")
    if running != "true" or not ip:
        logs = subprocess.run([DOCKER, "logs", "--tail", "5", name], capture_output=True, text=True)
        raise RuntimeError(f"the container is not running: {(logs.stdout + logs.stderr).strip()[-500:]}")
    return ip


@stage("service image: size, user, cold start as a container, SQLite on a volume")
def container_checks():
    size = int(sh(DOCKER, "image", "inspect", "-f", "{{.Size}}", SERVICE_IMAGE).strip())
    measure("service image size", size / 1e6, "MB")
    check(size <= 30_000_000, f"the service image is {size / 1e6:.1f} MB, over 30 MB")
    user = sh(DOCKER, "image", "inspect", "-f", "{{.Config.User}}", SERVICE_IMAGE).strip()
    check(user and not user.startswith("0") and user != "root", f"the image runs as {user!r}")
    for img in (CALRISSIAN_IMAGE, "k8s.gcr.io/pause:3.2", "alpine/git:v2.47.2"):
        s = int(sh(DOCKER, "image", "inspect", "-f", "{{.Size}}", img).strip())
        measure(f"image {img}", s / 1e6, "MB")
    vol = "aq-e2e-data"
    name = "aq-e2e-container"
    sh(DOCKER, "rm", "-f", name, check_rc=False)
    sh(DOCKER, "volume", "rm", "-f", vol, check_rc=False)
    try:
        # A new volume is root-owned; as a Kubernetes fsGroup would, one step hands it to the
        # image's user (the service itself never runs as root).
        sh(DOCKER, "run", "--rm", "-v", f"{vol}:/data", "aq-local/debian:bookworm", "chown", "65532:65532", "/data")
        # The image listens on 0.0.0.0 with unauthenticated events, which it refuses unless
        # told the network is trusted: this node's private bridge is.
        sh(DOCKER, "create", "--name", name, "-v", f"{vol}:/data", "--read-only",
           "-e", "EVENTS_TRUST_NETWORK=true",
           "-e", "DATABASE_URL=" + DB_URL, "-e", "JWT_SECRET=" + uuid.uuid4().hex * 2,
           "-e", f"APPLICATION_QUALITY_PASSWORD={PASSWORD}", SERVICE_IMAGE)
        t = time.monotonic()
        sh(DOCKER, "start", name)
        ip = container_ip(name)
        wait_for("first 200 from the container", 30,
                 lambda: http("GET", f"http://{ip}:8080/health/liveness", timeout=1)[0] == 200, interval=0.002)
        measure("container cold start (docker start -> first 200, fresh volume: creates and migrates the database)",
                (time.monotonic() - t) * 1000, "ms")
        started = sh(DOCKER, "inspect", "-f", "{{.State.StartedAt}}", name).strip()
        logs = subprocess.run([DOCKER, "logs", name], capture_output=True, text=True)
        listening = next(json.loads(l)["timestamp"] for l in (logs.stdout + logs.stderr).splitlines()
                         if '"listening"' in l)
        measure("of which the service process (container started -> listening, with migrations)",
                seconds_between(started, listening) * 1000, "ms")
        st, _ = http("GET", f"http://{ip}:8080/health/readiness")
        check(st == 200, f"readiness answered {st}")
        uids = [line.split()[1] for line in sh(DOCKER, "top", name, "-o", "pid,uid").splitlines()[1:]]
        check(uids and "0" not in uids, f"a process of the container runs as root: uids {uids}")
        sh(DOCKER, "exec", name, "/usr/local/bin/application-quality-api", "user", "add", USER)
        sh(DOCKER, "stop", name)
        t = time.monotonic()
        sh(DOCKER, "start", name)
        ip = container_ip(name)
        wait_for("restart", 30, lambda: http("GET", f"http://{ip}:8080/health/liveness", timeout=1)[0] == 200,
                 interval=0.002)
        measure("container warm start (docker start -> first 200, database present)",
                (time.monotonic() - t) * 1000, "ms")
        # Addressed by name, as through a port mapping: the API answers only its allowed hosts
        # (PUBLIC_URL's, by default localhost).
        st, body = http("POST", f"http://{ip}:8080/api/token/", {"username": USER, "password": PASSWORD},
                        headers={"Host": "localhost"})
        check(st == 200, f"the user stored on the volume did not survive a restart: {st} {body}")
    finally:
        sh(DOCKER, "rm", "-f", name, check_rc=False)
        sh(DOCKER, "volume", "rm", "-f", vol, check_rc=False)


@stage("deploy: namespaces and RBAC from knative/, a storage class, the service as a pod")
def deploy(repo_root):
    svc, by_name = deploy_service(repo_root)
    check("Python lint" in by_name, f"no Python lint pipeline: {sorted(by_name)}")
    # The demo pipelines timed on the node (AQ_E2E_PIPELINES, comma-separated names); the
    # others under the key "others".
    timed = {n: by_name[n] for n in PIPELINES if n in by_name} | {"Python lint": by_name["Python lint"]}
    return svc, timed, {n: i for n, i in by_name.items() if n not in timed}


def deploy_service(repo_root, fixtures=None):
    """The service as a pod on a fresh database: seeded with the demo catalogue, or, with
    `fixtures` (a ConfigMap and the keys of the fixture files in it to import, in order), with
    those imported instead. Returns the logged-in client and the pipelines by name."""
    kubectl("apply", "-f", os.path.join(repo_root, "knative/namespace.yaml"))
    kubectl("apply", "-f", os.path.join(repo_root, "knative/rbac.yaml"))
    # Replaced, not patched: a node kept from an earlier run may hold another binding mode,
    # which is immutable.
    kubectl("delete", "storageclass", "standard", "--ignore-not-found")
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard"}, "provisioner": "kubernetes.io/host-path",
        # Bound when the Job's pod is scheduled, in one pass: with `Immediate` the scheduler
        # first finds the claim unbound and retries after its back-off (2.5 s per run).
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "application-quality-api", "namespace": APP_NS},
              "stringData": {"JWT_SECRET": uuid.uuid4().hex * 2, "DATABASE_URL": DB_URL,
                             "APPLICATION_QUALITY_PASSWORD": PASSWORD}}
    kubectl("apply", "-f", "-", stdin=json.dumps(secret))

    def from_secret(key):
        return {"name": key, "valueFrom": {"secretKeyRef": {"name": "application-quality-api", "key": key}}}

    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        from_secret("DATABASE_URL"), from_secret("JWT_SECRET"),
        {"name": "KUBERNETES", "value": "on"},
        # This script sends the events (it plays the Broker and the ApiServerSource) without
        # Knative's sender tokens, from the node's private bridge: trusted here, never in a
        # real cluster (knative/service.yaml authenticates senders).
        {"name": "EVENTS_TRUST_NETWORK", "value": "true"},
        # Callbacks (job reports, results) come to this pod: no Service or DNS here.
        {"name": "BACKEND_SERVICE_HOST", "value": "$(POD_IP)"},
        {"name": "BACKEND_SERVICE_PORT", "value": "8080"},
        {"name": "AQBB_CALRISSIANIMAGE", "value": CALRISSIAN_IMAGE},
        {"name": "AQBB_STORAGECLASS", "value": "standard"},
        {"name": "AQBB_VOLUMESIZE", "value": "1Gi"},
        {"name": "AQBB_MAXCORES", "value": "1.5"},
        {"name": "AQBB_MAXRAM", "value": "1536Mi"},
        {"name": "AQBB_SUCCEEDED_RETENTION_SECS", "value": str(RETENTION_SECS)},
        {"name": "AQBB_FAILED_RETENTION_SECS", "value": str(RETENTION_SECS)},
        # The hostPath provisioner makes each volume root-owned, mode 0750, and hostPath
        # ignores fsGroup: an init container gives it to the runs' (non-root) user.
        {"name": "AQBB_WORKDIR_CHOWN", "value": "true"},
        # The repository this machine serves is a git:// one (https stays allowed).
        {"name": "REPO_URL_SCHEMES", "value": "https,git"},
        # A step whose image cannot be pulled fails its run within seconds here (the default
        # gives a registry two minutes): the reference's catalogue has such images.
        {"name": "AQBB_IMAGE_PULL_GRACE_SECS", "value": "10"},
        {"name": "RUST_LOG", "value": "info"},
    ]
    security = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}

    def init(name, args, extra_env=(), mounts=()):
        return {"name": name, "image": SERVICE_IMAGE, "imagePullPolicy": "IfNotPresent", "args": args,
                "env": env + list(extra_env),
                "volumeMounts": [{"name": "data", "mountPath": "/data"}] + list(mounts),
                "securityContext": security}

    volumes = [{"name": "data", "emptyDir": {}}]
    if fixtures:
        cm, keys = fixtures
        catalogue = init("import", ["import-fixtures"] + [f"/fixtures/{k}" for k in keys],
                         mounts=[{"name": "fixtures", "mountPath": "/fixtures", "readOnly": True}])
        volumes.append({"name": "fixtures", "configMap": {"name": cm}})
    else:
        catalogue = init("seed", ["seed"])

    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "application-quality-api", "namespace": APP_NS,
                     "labels": {"app.kubernetes.io/name": "application-quality-api"}},
        "spec": {
            "serviceAccountName": "application-quality-api",
            "securityContext": {"fsGroup": 65532},
            "initContainers": [init("migrate", ["migrate"]), catalogue,
                               init("user", ["user", "add", USER, "--staff"], [from_secret("APPLICATION_QUALITY_PASSWORD")])],
            "containers": [dict(init("api", ["serve"]), ports=[{"containerPort": 8080}],
                                readinessProbe={"httpGet": {"path": "/health/readiness", "port": 8080},
                                                "periodSeconds": 1})],
            "volumes": volumes,
        },
    }
    kubectl("delete", "pod", "-n", APP_NS, "application-quality-api", "--ignore-not-found", "--wait=true")
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    kubectl("wait", "-n", APP_NS, "--for=condition=Ready", "pod/application-quality-api", "--timeout=120s")
    ip = kget("pod", "-n", APP_NS, "application-quality-api")["status"]["podIP"]
    svc = Service(f"http://{ip}:8080")
    svc.login()
    st, pipelines = svc.get("/api/pipelines/")
    check(st == 200, f"pipelines answered {st}")
    pipelines = pipelines.get("results", pipelines) if isinstance(pipelines, dict) else pipelines
    return svc, {p["name"]: p["id"] for p in pipelines}


def execute(svc, pipeline, repo_url):
    st, body = svc.event("org.eoepca.application-quality.events.pipeline.execute",
                         {"parameters": {"clone_subworkflow": {"clone": {"repo_url": repo_url}}}},
                         user=USER, subject=f"pipelines/{pipeline}")
    check(st in (200, 201, 202), f"pipeline.execute answered {st}: {body}")
    run_id = body.get("run_id") if isinstance(body, dict) else None
    check(isinstance(run_id, int), f"no run id in the answer: {body}")
    return run_id


@stage("a pipeline.execute event runs on the node and succeeds (relayed Job events)")
def success_by_events(svc, relay, pipeline):
    t0 = time.monotonic()
    run_id = execute(svc, pipeline, f"git://{NODE_IP}:{GIT_PORT}/demo.git")
    relay.enabled_runs.add(run_id)
    job = wait_for("the Job", 30, lambda: kubectl("get", "job", f"aq-run-{run_id}", "-n", RUNS_NS,
                                                    "--ignore-not-found", "-o", "json").strip())
    measure("event -> Job exists", time.monotonic() - t0, "s")
    del job
    wait_for("a relayed Job event marking the run succeeded", 600, lambda: run_id in relay.applied, interval=0.5)
    run = svc.run(pipeline, run_id)
    check(run["status"] == "succeeded", f"run {run_id} is {run['status']}: {run.get('status_message')}")
    job = kget("job", f"aq-run-{run_id}", "-n", RUNS_NS)
    measure("event -> all pods done (Job complete)", relay.applied[run_id] - t0, "s")
    t_read = time.monotonic()
    measure("event -> run succeeded", t_read - t0, "s")
    if PODS:
        print_breakdown(f"of run {run_id} (Python lint)", breakdown(PODS.snapshot(), run_id, t0, relay.applied[run_id], t_read))
    check(run["output"] is not None, "no output stored")
    usage = run["usage_report"]
    check(isinstance(usage, dict) and usage, f"no usage report stored: {usage!r}")
    st, reports = svc.get(f"/api/pipelines/{pipeline}/runs/{run_id}/jobreports/")
    reports = reports.get("results", reports) if isinstance(reports, dict) else reports
    check(st == 200 and reports, f"no job report posted by the step pods: {st} {reports}")
    check(run.get("job_reports_count", 0) >= 1, "job_reports_count is 0")
    # Where the time goes: the Job's wall time (its pod: Calrissian, then the report), the
    # workflow as Calrissian's usage report times it (first step's start to last step's end,
    # one pod per step), and the rest, Calrissian's own start-up (loading and validating the
    # CWL) plus the report container.
    try:
        total = seconds_between(job["status"]["startTime"], job["status"]["completionTime"])
        workflow = float(usage["elapsed_seconds"])
        tasks = int(usage.get("total_tasks") or len(usage.get("children", [])))
        measure("Job wall time (start -> complete)", total, "s")
        measure(f"workflow time in Calrissian's report ({tasks} step pods)", workflow, "s")
        measure("per step pod (create -> done, commands take ms)", workflow / max(tasks, 1), "s")
        measure("Calrissian start-up + report container (Job time - workflow)", total - workflow, "s")
    except (KeyError, ValueError, TypeError) as e:
        log(f"overhead not computed: {e}")
    return run_id


@stage("a run nobody relays succeeds through reconcile-on-read")
def success_by_reading(svc, pipeline):
    t0 = time.monotonic()
    run_id = execute(svc, pipeline, f"git://{NODE_IP}:{GIT_PORT}/demo.git")
    run = wait_for("the run to succeed on read", 600,
                   lambda: (r := svc.run(pipeline, run_id))["status"] in ("succeeded", "failed") and r, interval=1)
    check(run["status"] == "succeeded", f"run {run_id} is {run['status']}: {run.get('status_message')}")
    check(run["output"] is not None, "no output stored")
    measure("event -> succeeded (read)", time.monotonic() - t0, "s")
    return run_id


@stage("every object of a finished run is garbage-collected after its retention")
def garbage_collected(run_ids):
    for run_id in run_ids:
        wait_for(f"the objects of run {run_id} to go", 120 + RETENTION_SECS,
                 lambda: not [o for o in run_objects(run_id) if not o.startswith("pod/")], interval=1)
    wait_for("the runs' pods to go", 120, lambda: not pods_of_namespace(), interval=1)
    wait_for("the runs' volumes to go", 60, lambda: not kget("pv")["items"], interval=1)


@stage("a pipeline whose clone fails ends failed, with the reason")
def failing_clone(svc, relay, pipeline):
    run_id = execute(svc, pipeline, f"git://{NODE_IP}:{GIT_PORT}/missing.git")
    relay.enabled_runs.add(run_id)
    run = wait_for("the run to end", 600,
                   lambda: (r := svc.run(pipeline, run_id))["status"] in ("succeeded", "failed", "error") and r,
                   interval=1)
    check(run["status"] == "failed", f"run {run_id} is {run['status']}")
    msg = run.get("status_message") or ""
    check("missing.git" in msg and "clone" in msg, f"the reason does not name the failed clone: {msg!r}")
    log(f"reason: {msg[:400]}")
    return run_id


@stage("cancel removes the run's pods")
def cancel(svc, pipeline):
    run_id = execute(svc, pipeline, f"git://{NODE_IP}:{HANG_PORT}/hangs.git")

    def step_running():
        pods = pods_of_namespace()
        steps = [p for p in pods if not p["metadata"]["name"].startswith(f"aq-run-{run_id}-")]
        return steps and all(p["status"].get("phase") == "Running" for p in steps)

    wait_for("a step pod running", 300, step_running, interval=0.5)
    t0 = time.monotonic()
    st, body = svc.post(f"/api/pipelines/{pipeline}/runs/{run_id}/cancel/")
    check(st == 200, f"cancel answered {st}: {body}")

    def step_pods():
        return [p for p in pods_of_namespace() if not p["metadata"]["name"].startswith("aq-run-")]

    wait_for("Calrissian to delete its step pods", 120,
             lambda: all(p["metadata"].get("deletionTimestamp") for p in step_pods()), interval=0.2)
    measure("cancel -> step pods being deleted (Calrissian got SIGTERM)", time.monotonic() - t0, "s")
    # Calrissian deletes them at once, each with its default 30 s grace (`sh` as PID 1 ignores
    # SIGTERM), after the garbage collector deleted Calrissian's pod: about a minute.
    wait_for("the step pods to go", 150, lambda: not step_pods(), interval=0.2)
    measure("cancel -> step pods deleted (by Calrissian)", time.monotonic() - t0, "s")
    wait_for("the pods of the cancelled run to go", 180, lambda: not pods_of_namespace(), interval=0.5)
    measure("cancel -> no pods left (Calrissian's pod ends with its 30 s grace period)", time.monotonic() - t0, "s")
    run = svc.run(pipeline, run_id)
    check(run["status"] == "killed", f"the cancelled run is {run['status']}")


@stage("event -> succeeded over repeated runs of each demo pipeline on the node (p50, breakdown)")
def repeated(svc, relay, pipelines, n):
    for name, pipeline in pipelines.items():
        runs = []
        for _ in range(n):
            t0 = time.monotonic()
            run_id = execute(svc, pipeline, f"git://{NODE_IP}:{GIT_PORT}/demo.git")
            relay.enabled_runs.add(run_id)
            wait_for(f"run {run_id} to complete", 600, lambda: run_id in relay.applied, interval=0.1)
            run = svc.run(pipeline, run_id)
            t1 = time.monotonic()
            check(run["status"] == "succeeded", f"{name} run {run_id} is {run['status']}: {run.get('status_message')}")
            check(run.get("job_reports_count", 0) >= 1, f"{name} run {run_id} has no job report")
            runs.append((t1 - t0, run_id, t0, relay.applied[run_id], t1))
        times = sorted(r[0] for r in runs)
        measure(f"{name}: event -> succeeded, p50 of {n}", statistics.median(times), "s")
        measure(f"{name}: event -> succeeded, min / max", f"{times[0]:.2f} / {times[-1]:.2f}", "s")
        if PODS:
            _, run_id, t0, t_done, t_read = sorted(runs)[len(runs) // 2]
            print_breakdown(f"of the median {name} run ({run_id})", breakdown(PODS.snapshot(), run_id, t0, t_done, t_read))


@stage("every other demo pipeline runs once on the node, with its reports and verdict")
def each_once(svc, relay, pipelines):
    failed = []
    for name, pipeline in sorted(pipelines.items()):
        t0 = time.monotonic()
        run_id = execute(svc, pipeline, f"git://{NODE_IP}:{GIT_PORT}/demo.git")
        relay.enabled_runs.add(run_id)
        run = wait_for(f"{name} run {run_id} to end", 900,
                       lambda: (r := svc.run(pipeline, run_id))["status"] in ("succeeded", "failed", "error") and r,
                       interval=0.2)
        took = time.monotonic() - t0
        st, reports = svc.get(f"/api/pipelines/{pipeline}/runs/{run_id}/jobreports/")
        reports = reports.get("results", reports) if isinstance(reports, dict) else reports
        names = sorted({r.get("name", "?") for r in reports}) if st == 200 and isinstance(reports, list) else []
        measure(f"{name}: event -> {run['status']}", took, "s")
        log(f"  {name}: {run['status']}, reports {names}, verdict {run.get('digest_quality')}"
            + ("" if run["status"] == "succeeded" else f": {(run.get('status_message') or '')[:400]}"))
        if run["status"] != "succeeded" or not names:
            failed.append(name)
    check(not failed, f"did not succeed with reports on the node: {failed}")


def norm_caps(caps):
    return {c.upper().removeprefix("CAP_") for c in caps}


@stage("nothing of a run runs as root: every container the node started, as its kernel saw it")
def contained(watch):
    with watch.lock:
        seen = list(watch.seen)
    job = [r for r in seen if r["pod"].startswith("aq-run-")]
    steps = [r for r in seen if not r["pod"].startswith("aq-run-")]
    check(job and steps, f"containers seen: {len(job)} of Jobs, {len(steps)} of steps")
    dropped = []
    for r in seen:
        where = f"{r['pod']}/{r['container']}"
        check(not r["privileged"], f"{where} is privileged")
        if r["pod"].startswith("aq-run-") and r["user"].split(":")[0] in ("0", "root"):
            # AQBB_WORKDIR_CHOWN: the one container started as root, with CHOWN, SETUID and
            # SETGID only, to hand the empty volume to the run's user and become that user
            # before Calrissian starts. Seen again once its steps run: no root, no capability.
            check(norm_caps(r["cap_add"]) <= {"CHOWN", "SETUID", "SETGID"} and "ALL" in norm_caps(r["cap_drop"]),
                  f"{where} has capabilities {r['cap_add']} (drop {r['cap_drop']})")
            later = r.get("proc_later")
            if later:
                check("0" not in later["uid"] and "0" not in later["gid"],
                      f"{where}: still root while its steps run (uids {later['uid']}, gids {later['gid']})")
                check(int(later["cap_eff"], 16) == 0, f"{where}: effective capabilities {later['cap_eff']}")
                dropped.append(where)
            continue
        user = r["user"].split(":")[0]
        check(user not in ("", "0", "root"), f"{where} runs as user {r['user']!r}")
        if r["proc"]:
            check("0" not in r["proc"]["uid"], f"{where}: the process has uids {r['proc']['uid']}")
            check(int(r["proc"]["cap_eff"], 16) == 0, f"{where}: effective capabilities {r['proc']['cap_eff']}")
    for r in job:
        where = f"{r['pod']}/{r['container']}"
        check("ALL" in norm_caps(r["cap_drop"]), f"{where} keeps capabilities (drop {r['cap_drop']})")
        check(any(o.startswith("no-new-privileges") for o in r["security_opt"]),
              f"{where} may gain privileges (security options {r['security_opt']})")
        if r["proc"]:
            check(r["proc"]["no_new_privs"] == "1", f"{where}: NoNewPrivs is {r['proc']['no_new_privs']}")
    for r in steps:
        check(not r["token"], f"step {r['pod']}/{r['container']} has a service account token mounted")
    alive = [r for r in steps if r["proc"]]
    check(alive, "no step process was seen alive (the cancel stage's clone should have been)")
    rooted = [r for r in job if r["user"].split(":")[0] in ("0", "root")]
    check(not rooted or dropped, "no Job container started as root was seen again as the run's user")
    if rooted:
        measure("Job containers started as root (AQBB_WORKDIR_CHOWN) / seen again as the run's user",
                f"{len(rooted)} / {len(dropped)}", "")
    users = sorted({r["user"] for r in seen})
    measure("containers of runs seen (Job pods / step pods)", f"{len(job)} / {len(steps)}", "")
    measure("their users", ", ".join(users), "")
    measure("step processes seen alive: uids / effective capabilities",
            "; ".join(f"{r['proc']['uid'][0]} / {r['proc']['cap_eff']}" for r in alive[:3]), "")
    measure("service account token in step pods / in Calrissian's pod",
            f"{sum(r['token'] for r in steps)} / {sum(r['token'] for r in job if r['container'] == 'calrissian')}", "")


# --------------------------------------------------------------------------- the reference's catalogue

# Images of the reference's catalogue that cannot be had from the registries this machine
# reaches, and why (README, docs/fixtures.md). Every other dockerPull name of the fixtures must
# be an image of the node (scripts/images.sh fixtures).
UNAVAILABLE = {
    "eoepca/notebook-bp-validator:2025-05-12.1":
        "the EOEPCA notebook best-practice validator (nb-validator) is published only as this image: "
        "not on PyPI, not in Debian",
    "nexus.spaceapplications.com/repository/docker-eoepca/ap_validator:2025-03-05.1":
        "the EOEPCA Application Package validator (ap-validator) is published only as this image, in its own "
        "registry (eoap-validator on PyPI has another command line)",
    "aquasec/trivy:latest":
        "Trivy is on neither PyPI nor Debian bookworm, and needs its vulnerability database and the image it "
        "scans from registries",
    "sonarsource/sonar-scanner-cli":
        "SonarQube needs a SonarQube server (and its scanner image)",
}


class Catalogue:
    """The reference's fixture file, read here to know what each pipeline pulls and posts."""

    def __init__(self, path):
        with open(path) as f:
            objects = json.load(f)
        self.pipelines = {o["pk"]: o["fields"] for o in objects if o["model"] == "backend.pipeline"}
        self.subworkflows = {o["pk"]: o["fields"] for o in objects if o["model"] == "backend.subworkflow"}
        self.tools = {o["pk"]: o["fields"] for o in objects if o["model"] == "backend.commandlinetool"}

    def images_of_subworkflow(self, slug):
        import re
        return {m for t in self.subworkflows[slug].get("tools", [])
                for m in re.findall(r"dockerPull:\s*([^\s\\]+)", self.tools[t]["definition"])}

    def images(self):
        return set().union(*(self.images_of_subworkflow(s) for s in self.subworkflows))

    def report_name(self, slug):
        """The `name` a subworkflow's save step posts under (its `name` input's default)."""
        import re
        m = re.search(r"\n\s+name:\s*\r?\n\s+type: string\s*\r?\n\s+default:\s*(\S+)",
                      self.subworkflows[slug]["definition"])
        return m.group(1) if m else None


def findings_of(output):
    """What a report found, counted the way each tool reports (None: not a known shape)."""
    if isinstance(output, list):  # Ruff, Pylint: one entry per message
        return f"{len(output)} findings"
    if isinstance(output, dict):
        if isinstance(output.get("results"), list):  # Bandit
            return f"{len(output['results'])} findings"
        if isinstance(output.get("cells"), list):  # an executed notebook (Papermill)
            errors = [o for c in output["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
            executed = sum(1 for c in output["cells"] if c.get("cell_type") == "code" and c.get("execution_count"))
            return f"{executed} cells executed, {len(errors)} errors"
        if output and all(isinstance(v, list) for v in output.values()):  # Flake8 (flake8-json)
            return f"{sum(len(v) for v in output.values())} findings"
    return "?"


@stage("the reference's catalogue: images, deploy with it imported (import-fixtures)")
def deploy_reference(repo_root, cat):
    present = {img for img in cat.images() if subprocess.run(
        [DOCKER, "image", "inspect", img if ":" in img.rsplit("/", 1)[-1] else img + ":latest"],
        capture_output=True).returncode == 0}
    unknown = cat.images() - present - set(UNAVAILABLE)
    check(not unknown, f"images of the fixtures neither made here nor known to be unavailable: {sorted(unknown)}")
    measure("the fixtures' images made here / that cannot be had", f"{len(present)} / {len(cat.images()) - len(present)}", "")
    # A fresh database holding only the reference's catalogue, as a user moving from the
    # reference has: the demo runs' Jobs must be gone first (run ids start again at 1).
    wait_for("the earlier runs' Jobs to go", 240, lambda: not kget("jobs", "-n", RUNS_NS)["items"], interval=1)
    kubectl("apply", "-f", os.path.join(repo_root, "knative/namespace.yaml"))
    cm = kubectl("create", "configmap", "aq-e2e-fixtures", "-n", APP_NS,
                 f"--from-file=backend.json={FIXTURES_FILE}",
                 f"--from-file=save-tool.json={os.path.join(repo_root, 'docs/reference-save-tool.json')}",
                 "--dry-run=client", "-o", "json")
    kubectl("apply", "-f", "-", stdin=cm)
    svc, by_name = deploy_service(repo_root, fixtures=("aq-e2e-fixtures", ["backend.json"]))
    check(len(by_name) == len(cat.pipelines), f"pipelines after the import: {sorted(by_name)}")
    return svc


def run_to_end(svc, relay, pipeline, params, timeout=900):
    # Timed alone, as on an idle node: the pods of an earlier run (a stopped run's Calrissian
    # pod has its 30 s grace period) no longer hold the node's CPU.
    wait_for("the earlier runs' pods to go", 180, lambda: not pods_of_namespace(), interval=0.5)
    t0 = time.monotonic()
    st, body = svc.event("org.eoepca.application-quality.events.pipeline.execute", {"parameters": params},
                         user=USER, subject=f"pipelines/{pipeline}")
    check(st in (200, 201, 202) and isinstance(body, dict) and isinstance(body.get("run_id"), int),
          f"pipeline.execute of {pipeline} answered {st}: {body}")
    run_id = body["run_id"]
    relay.enabled_runs.add(run_id)
    run = wait_for(f"run {run_id} of pipeline {pipeline} to end", timeout,
                   lambda: (r := svc.run(pipeline, run_id))["status"] in ("succeeded", "failed", "error", "killed") and r,
                   interval=0.2)
    took = time.monotonic() - t0
    st, reports = svc.get(f"/api/pipelines/{pipeline}/runs/{run_id}/jobreports/")
    reports = reports.get("results", reports) if isinstance(reports, dict) else reports
    return run, took, (reports if st == 200 and isinstance(reports, list) else [])


@stage("the reference's pipelines run on the node, unchanged: findings and times per pipeline")
def reference_pipelines(svc, relay, cat):
    clone = {"clone_subworkflow": {"clone": {"repo_url": f"git://{NODE_IP}:{GIT_PORT}/demo.git"}}}
    problems, partial = [], []
    for pk in sorted(cat.pipelines):
        p = cat.pipelines[pk]
        subs = p["tools"]
        missing = sorted({img for s in subs for img in cat.images_of_subworkflow(s) if img in UNAVAILABLE})
        run, took, reports = run_to_end(svc, relay, pk, clone if "clone_subworkflow" in subs else {})
        listed = ", ".join(f"{r['name']}{' ' + r['instance'] if r.get('instance') else ''}: {findings_of(r.get('output'))}"
                           for r in sorted(reports, key=lambda r: (r["name"], r.get("instance") or "")))
        measure(f"reference {p['name']} ({pk}): event -> {run['status']}", took, "s")
        log(f"  {p['name']} ({pk}) [{', '.join(subs)}]: {run['status']} in {took:.1f} s; "
            f"reports: {listed or 'none'}; verdict {run.get('digest_quality')}")
        if missing:
            msg = run.get("status_message") or ""
            for img in missing:
                log(f"    cannot run here: {img}: {UNAVAILABLE[img]}")
            log(f"    the run says: {msg[:400]}")
            if run["status"] != "failed" or not any(img in msg for img in missing):
                problems.append(f"{p['name']}: {run['status']}, not failed naming {missing}: {msg[:200]}")
            runnable = [s for s in subs if not (cat.images_of_subworkflow(s) & set(UNAVAILABLE))]
            if [s for s in runnable if s != "clone_subworkflow"]:
                partial.append((p, runnable, [s for s in subs if s not in runnable]))
            continue
        want = {cat.report_name(s) for s in subs if s != "clone_subworkflow"}
        got = {r["name"] for r in reports}
        if run["status"] != "succeeded" or not want <= got:
            problems.append(f"{p['name']}: {run['status']}, reports {sorted(got)} (want {sorted(want)}): "
                            f"{(run.get('status_message') or '')[:300]}")
    # The rest of a pipeline one of whose tools cannot run here: the same template and
    # subworkflows, imported unchanged, without it.
    for p, runnable, left_out in partial:
        name = f"{p['name']} (runnable part)"
        st, created = svc.post("/api/pipelines/", {"name": name,
                                                   "description": f"{p['name']} without {', '.join(left_out)}, "
                                                                  "whose images cannot be had here",
                                                   "template": p["template"], "version": p.get("version") or "0.1",
                                                   "tools": runnable})
        check(st == 201, f"creating {name!r} answered {st}: {created}")
        run, took, reports = run_to_end(svc, relay, created["id"], clone)
        listed = ", ".join(f"{r['name']}{' ' + r['instance'] if r.get('instance') else ''}: {findings_of(r.get('output'))}"
                           for r in sorted(reports, key=lambda r: (r["name"], r.get("instance") or "")))
        measure(f"reference {name}: event -> {run['status']}", took, "s")
        log(f"  {name}, without {', '.join(left_out)} [{', '.join(runnable)}]: {run['status']} in {took:.1f} s; "
            f"reports: {listed or 'none'}; "
            f"verdict {run.get('digest_quality')}")
        want = {cat.report_name(s) for s in runnable if s != "clone_subworkflow"}
        got = {r["name"] for r in reports}
        if run["status"] != "succeeded" or not want <= got:
            problems.append(f"{name}: {run['status']}, reports {sorted(got)} (want {sorted(want)}): "
                            f"{(run.get('status_message') or '')[:300]}")
    check(not problems, "; ".join(problems))


@stage("with docs/reference-save-tool.json imported too, the reference's pipelines post their reports with plain curl")
def reference_with_save_tool(repo_root, cat):
    """What an operator whose nodes pull the public images does: the reference's `save` tool
    replaced by one that sends the run's token (here in the demo catalogue's curl image, whose
    curl adds nothing)."""
    wait_for("the earlier runs' Jobs to go", 240, lambda: not kget("jobs", "-n", RUNS_NS)["items"], interval=1)
    svc, by_name = deploy_service(repo_root, fixtures=("aq-e2e-fixtures", ["backend.json", "save-tool.json"]))
    relay = Relay(svc)
    relay.start()
    try:
        pk = by_name["Ruff for python"]
        clone = {"clone_subworkflow": {"clone": {"repo_url": f"git://{NODE_IP}:{GIT_PORT}/demo.git"}}}
        run, took, reports = run_to_end(svc, relay, pk, clone)
        measure(f"reference Ruff for python, save tool replaced: event -> {run['status']}", took, "s")
        log(f"  Ruff for python ({pk}), save tool replaced: {run['status']} in {took:.1f} s; reports: "
            + ", ".join(f"{r['name']}: {findings_of(r.get('output'))}" for r in reports))
        check(run["status"] == "succeeded" and [r["name"] for r in reports] == ["ruff"],
              f"{run['status']}: {reports} {(run.get('status_message') or '')[:300]}")
    finally:
        relay.stop()


def dump_diagnostics():
    for args in (("get", "pods,jobs,pvc,pv", "-A", "-o", "wide"), ("get", "events", "-A")):
        log(kubectl(*args, check_rc=False)[-4000:])
    log(kubectl("logs", "-n", APP_NS, "application-quality-api", "--tail", "60", check_rc=False))


def main():
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = serve_git()
    hang = serve_hanging()
    global PODS
    containers = ContainerWatch()
    containers.start()
    PODS = PodWatch()
    PODS.start()
    try:
        relay = None
        if ONLY != "fixtures":
            container_checks()
            deployed = deploy(repo_root)
            if not deployed:
                # The stages that need the deployed service count as failed too.
                results["failed"] += 8
                dump_diagnostics()
                return
            svc, pipelines, others = deployed
            lint = pipelines["Python lint"]
            relay = Relay(svc)
            relay.start()
            a = success_by_events(svc, relay, lint)
            b = success_by_reading(svc, lint)
            garbage_collected([r for r in (a, b) if r])
            repeated(svc, relay, pipelines, REPEAT)
            if ONCE and others:
                each_once(svc, relay, others)
            failing_clone(svc, relay, lint)
            cancel(svc, lint)
        if FIXTURES or ONLY == "fixtures":
            cat = Catalogue(FIXTURES_FILE)
            svc = deploy_reference(repo_root, cat)
            if svc:
                # Run ids start again on the new database: a relay of its own.
                if relay:
                    relay.stop()
                relay = Relay(svc)
                relay.start()
                reference_pipelines(svc, relay, cat)
                relay.stop()
                relay = None
                reference_with_save_tool(repo_root, cat)
            else:
                results["failed"] += 1
        contained(containers)
        if relay:
            relay.stop()
        if results["failed"]:
            dump_diagnostics()
    finally:
        containers.stop()
        PODS.stop()
        git.terminate()
        hang.close()
        print("\nmeasures:")
        for name, value, unit in measures:
            print(f"  {name}: {value:.2f} {unit}" if isinstance(value, float) else f"  {name}: {value} {unit}")
        print(f"\n{results['passed']} passed, {results['failed']} failed", flush=True)


if __name__ == "__main__":
    main()
    sys.exit(1 if results["failed"] or not results["passed"] else 0)
