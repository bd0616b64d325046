"""The run's pod: Calrissian, then its results posted back, in one container.

PID 1 of the Job's only container, started as `python3 -c <this> <Calrissian's arguments>`.
One container instead of Calrissian followed by a posting container saves the second
container's start (about a second on a real node: the kubelet notices a container's end only
at its next relist), and it needs nothing but the Python that Calrissian itself runs on, so
any Calrissian image works.

1. Started as root (storage that ignores `fsGroup`: `AQBB_WORKDIR_CHOWN`), it gives the empty
   working volume to the run's user (`AQ_RUN_AS`, "uid:gid") and drops to that user for good
   before anything else runs; Calrissian never runs as root.
2. Calrissian runs as a child; SIGTERM and SIGINT (a cancelled run) are passed on to it.
3. When Calrissian succeeds, `{"output": ..., "usage_report": ...}` from the files it wrote
   (null when missing or empty) is posted to `AQ_RESULTS_URL` with the run's token, read from
   the step pods' environment file (so it is in no process environment here); connection
   failures, 408, 429 and 5xx are retried (a service scaled to zero wakes up), for at most
   five minutes.

The exit code is Calrissian's (its log's tail is the failed run's reason), or 1 when the
results could not be posted or the container was started wrongly.
"""

# Everything is imported before root is dropped (the run's user may not read every file of the
# image's Python), including what the standard library loads lazily: hostnames need `idna`.
import encodings.idna  # noqa: F401
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

WORKDIR = os.environ.get("AQ_WORKDIR", "/calrissian")
ENV_FILE = os.environ.get("AQ_POD_ENV_FILE", "/pod-env-vars/pod_env_vars.json")
RETRYABLE = (408, 429)
ATTEMPTS = 9
TOTAL_SECS = 300


def fail(message):
    print(f"results: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def drop_root():
    if os.getuid() != 0 and os.geteuid() != 0:
        return
    run_as = os.environ.get("AQ_RUN_AS", "")
    try:
        uid, gid = (int(part) for part in run_as.split(":"))
    except ValueError:
        fail(f"started as root without a user to become (AQ_RUN_AS={run_as!r}): Calrissian never runs as root")
    if uid <= 0 or gid <= 0:
        fail(f"AQ_RUN_AS={run_as!r} is not an unprivileged user and group")
    # The mode first: once the directory is the user's, root would need CAP_FOWNER to change it.
    os.chmod(WORKDIR, 0o770)
    os.chown(WORKDIR, uid, gid)
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if 0 in os.getresuid() or 0 in os.getresgid():
        fail("could not drop root")


def run_calrissian(args):
    child = None
    early = []

    def forward(signum, _frame):
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)

    # Before the child exists, so that a cancel arriving at once is not lost (PID 1 ignores
    # signals it has no handler for): Calrissian gets it as soon as it exists.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen(["calrissian", *args])
    for signum in early:
        child.send_signal(signum)
    code = child.wait()
    return 128 - code if code < 0 else code


def part(name):
    path = os.path.join(WORKDIR, name)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        fail(f"{path} is not JSON: {e}")


def token():
    try:
        with open(ENV_FILE, encoding="utf-8") as f:
            value = json.load(f).get("AQ_CALLBACK_TOKEN")
    except (OSError, ValueError) as e:
        fail(f"cannot read the run's token from {ENV_FILE}: {e}")
    if not isinstance(value, str) or not value:
        fail(f"{ENV_FILE} has no AQ_CALLBACK_TOKEN")
    return value


def post(url, bearer, body):
    deadline = time.monotonic() + TOTAL_SECS
    delay = 1.0
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
        )
        wait = delay
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                return
        except urllib.error.HTTPError as e:
            detail = e.read(2000).decode("utf-8", "replace").strip()
            if e.code not in RETRYABLE and e.code < 500:
                fail(f"the service refused the results ({e.code}): {detail}")
            why = f"{e.code} {detail}"
            retry_after = e.headers.get("Retry-After", "")
            if retry_after.isdigit():
                wait = max(wait, float(retry_after))
        except (urllib.error.URLError, OSError) as e:
            why = str(getattr(e, "reason", e))
        if attempt == ATTEMPTS or time.monotonic() + wait > deadline:
            fail(f"could not post the results after {attempt} attempts: {why}")
        print(f"results: {why}; trying again in {wait:.0f} s", file=sys.stderr, flush=True)
        time.sleep(wait)
        delay = min(delay * 2, 30.0)


def main():
    url = os.environ.get("AQ_RESULTS_URL", "")
    if not url.startswith(("http://", "https://")):
        fail(f"AQ_RESULTS_URL is not an http(s) URL: {url!r}")
    drop_root()
    code = run_calrissian(sys.argv[1:])
    if code != 0:
        sys.exit(code)
    body = json.dumps({"output": part("output.json"), "usage_report": part("report.json")})
    post(url, token(), body.encode("utf-8"))
    sys.exit(0)


main()
