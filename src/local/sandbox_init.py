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
# cwltool runs in this interpreter (it is cwltool's own): imported once, its CWL schemas read
# from the service's cache instead of parsed again (about a third of a run's CPU), then forked
# into the run's process. Without `cwltool` in the spec, `argv` is started as a program.
#
# Its single argument is a JSON object written by the service (`sandbox.rs`):
#   {"relays": [[port, unix_path], ...], "uid": n|null, "gid": n|null,
#    "limits": {"RLIMIT_NPROC": n, ...}, "cwd": path, "usage": path, "argv": [...],
#    "cwltool": {"args": [...], "schema_cache": path|null}}
# or, run by the service outside any sandbox before the first run, `{"schema_cache_out": path}`:
# parse cwltool's bundled schemas (no data of any run) and write the cache.
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


def schema_cache_key():
    from importlib.metadata import version

    return [sys.version, version("cwltool"), version("schema-salad"), version("ruamel.yaml")]


def pickler_setup():
    # schema-salad's NormDict keeps its key function in an attribute that pickle's default
    # for dict subclasses would lose.
    import copyreg

    from schema_salad.ref_resolver import NormDict

    copyreg.pickle(NormDict, lambda d: (NormDict, (d.normalize,), None, None, iter(dict(d).items())))


def write_schema_cache(out):
    import argparse
    import pickle

    import cwltool.main
    import cwltool.process

    pickler_setup()
    cwltool.main.setup_schema(argparse.Namespace(enable_ext=False), None)
    import cwltool.update

    # cwltool upgrades every document it loads to its internal version (v1.3.0-dev1) and
    # validates embedded processes against that schema too: without it in the cache, each run
    # still parsed one schema (about 0.3 s of CPU).
    for version in ("v1.0", "v1.1", "v1.2", cwltool.update.INTERNAL_VERSION):
        cwltool.process.get_schema(version)
    tmp = f"{out}.{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump({"key": schema_cache_key(), "schemas": dict(cwltool.process.SCHEMA_CACHE)}, f)
    os.chmod(tmp, 0o644)
    os.rename(tmp, out)


def load_cwltool(cache):
    """Imports cwltool; returns the callback that gives it the cached schemas (None when there
    is no usable cache: cwltool then parses them itself, as a cold start would)."""
    import argparse
    import pickle

    import cwltool.main
    import cwltool.process

    if not cache:
        return None
    try:
        pickler_setup()
        with open(cache, "rb") as f:
            data = pickle.load(f)
        if data.get("key") != schema_cache_key():
            return None
        schemas = data["schemas"]
    except Exception:  # another library version, a damaged file: parse them instead
        return None

    def use_cached():
        cwltool.main.setup_schema(argparse.Namespace(enable_ext=False), None)
        cwltool.process.SCHEMA_CACHE.update(schemas)

    return use_cached


def run_cwltool(args, schema_callback):
    """The child: cwltool's own entry point, in this (already warm) interpreter."""
    import cwltool.main

    sys.argv = ["cwltool"] + args
    code = 1
    try:
        code = cwltool.main.run(args, custom_schema_callback=schema_callback)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main():
    spec = json.loads(sys.argv[1])
    if "schema_cache_out" in spec:
        write_schema_cache(spec["schema_cache_out"])
        return
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
    engine = spec.get("cwltool")
    schemas = None
    if engine is not None:
        # Imported as the run's user, before the relays' threads exist (fork copies only
        # the calling thread).
        callback = load_cwltool(engine.get("schema_cache"))
        schemas = "parsed" if callback is None else "cached"
        pid = os.fork()
        if pid == 0:
            for s, _ in listeners:
                s.close()
            run_cwltool(engine["args"], callback)
        child = None
    else:
        child = subprocess.Popen(spec["argv"])
        pid = child.pid
    for s, path in listeners:
        threading.Thread(target=serve, args=(s, path), daemon=True).start()
    # A stop of the sandbox (bubblewrap is killed) ends this process and, as PID 1 of the
    # namespace, every process of the run with it.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    if child is not None:
        code = child.wait()
    else:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    # Bubblewrap's monitor does not reap this namespace's PID 1, so the service cannot get
    # the run's usage from wait4: it is written here, for the usage report only.
    try:
        # This process's own share too: cwltool was imported here.
        ru, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        with open(spec["usage"], "w") as out:
            json.dump({"user": ru.ru_utime + me.ru_utime, "system": ru.ru_stime + me.ru_stime,
                       "maxrss": max(ru.ru_maxrss, me.ru_maxrss), "schemas": schemas}, out)
    except (KeyError, OSError):
        pass
    sys.exit(code if code >= 0 else 128 - code)


main()
