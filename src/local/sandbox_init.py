# The first process inside a run's sandbox (bubblewrap has already made the private mount,
# PID, network, IPC and UTS namespaces). It runs with the interpreter of cwltool, which every
# local run needs anyway, so the sandbox holds no program of the service's own.
#
# In order, before any code of the run exists:
#   1. listens on the sandbox's own loopback for the two ways out (the service's callback
#      port and the egress proxy), relaying each connection to a Unix socket the service
#      bound into the sandbox: the run has no other network;
#   2. drops to the run's unprivileged user (when started as root) and sets the limits;
#   3. starts the command (cwltool) and relays until it ends, then exits with its status.
#
# Its single argument is a JSON object written by the service (`sandbox.rs`):
#   {"relays": [[port, unix_path], ...], "uid": n|null, "gid": n|null,
#    "limits": {"RLIMIT_NPROC": n, ...}, "cwd": path, "usage": path, "argv": [...]}
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(listener, path):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(path)
        except OSError:
            conn.close()
            continue
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def main():
    spec = json.loads(sys.argv[1])
    listeners = []
    for port, path in spec["relays"]:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(64)
            except OSError:
                if family == socket.AF_INET:
                    raise
                continue
            listeners.append((s, path))
    if spec.get("gid") is not None:
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    if spec.get("uid") is not None:
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    if os.geteuid() == 0 and spec.get("uid") is not None:
        sys.exit("sandbox: still root after dropping privileges")
    for name, value in spec.get("limits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.chdir(spec["cwd"])
    for s, path in listeners:
        threading.Thread(target=serve, args=(s, path), daemon=True).start()
    child = subprocess.Popen(spec["argv"])
    # A stop of the sandbox (bubblewrap is killed) ends this process and, as PID 1 of the
    # namespace, every process of the run with it.
    signal.signal(signal.SIGTERM, lambda *_: child.kill())
    code = child.wait()
    # Bubblewrap's monitor does not reap this namespace's PID 1, so the service cannot get
    # the run's usage from wait4: it is written here, for the usage report only.
    try:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(spec["usage"], "w") as out:
            json.dump({"user": ru.ru_utime, "system": ru.ru_stime, "maxrss": ru.ru_maxrss}, out)
    except (KeyError, OSError):
        pass
    sys.exit(code if code >= 0 else 128 - code)


main()
