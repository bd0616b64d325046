#!/usr/bin/env python3
"""The local runner's container command inside a run's sandbox (`LOCAL_CONTAINERS=images`).

cwltool calls it as a user-space docker (`--user-space-docker-cmd`):
`container run --mount=type=bind,source=S,target=T[,readonly]... --workdir=W [--rm]
[--env=K=V]... IMAGE COMMAND...`. It runs COMMAND in IMAGE's root filesystem, taken read-only
from the runner's image store (`AQ_IMAGES`: per image, a directory with its files and a JSON
file with its configuration, exported from a container engine by `scripts/local-images.sh`), with a nested bubblewrap: the image's programs instead of the host's,
the step's directories bound at the paths cwltool chose, the environment cwltool gave it and
nothing else. No engine and no engine socket are involved: the step stays inside the run's
sandbox (its user, namespaces, network and limits), one level further in.
"""

import csv
import json
import os
import sys
import urllib.parse

# Where cwltool stages inputs: made a tmpfs so their mount points can be created there.
STAGING = "/var/lib/cwl"
# Where the sandbox's git configuration is bound in the step's image.
GIT_CONFIG = "/.aq-gitconfig"


def fail(message):
    sys.stderr.write("container: " + message + "\n")
    sys.exit(125)


def image_dir(store, image):
    """The image's directory in the store: its reference with a tag (`latest` when none), as
    `scripts/local-images.sh` names it."""
    name = image
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return os.path.join(store, urllib.parse.quote(name, safe=""))


def parse(args):
    mounts, env, workdir = [], [], None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg.startswith("--mount="):
            fields = next(csv.reader([arg[len("--mount="):]]))
            spec = dict(f.split("=", 1) if "=" in f else (f, "") for f in fields)
            if spec.get("type", "bind") != "bind" or "source" not in spec or "target" not in spec:
                fail("unsupported mount: " + arg)
            mounts.append((spec["source"], spec["target"], "readonly" in spec))
        elif arg.startswith("--volume="):
            source, _, target = arg[len("--volume="):].partition(":")
            mounts.append((source, target.split(":")[0], False))
        elif arg.startswith("--workdir="):
            workdir = arg[len("--workdir="):]
        elif arg.startswith("--env="):
            key, _, value = arg[len("--env="):].partition("=")
            env.append((key, value))
        elif arg in ("--rm", "-i"):
            pass
        else:
            fail("unsupported option: " + arg)
        i += 1
    if i >= len(args):
        fail("no image given")
    return mounts, env, workdir, args[i], args[i + 1:]


def main():
    if len(sys.argv) < 2 or sys.argv[1] != "run":
        fail("only `run` is supported (the images come from the runner's image store)")
    store = os.environ.get("AQ_IMAGES", "")
    mounts, env, workdir, image, command = parse(sys.argv[2:])
    root = image_dir(store, image)
    if not store or not os.path.isdir(os.path.join(root, "bin")) and not os.path.isdir(
        os.path.join(root, "usr")
    ):
        fail(f"the image {image} is not in the runner's image store")
    argv = [
        "bwrap",
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        # A tmpfs root with the image's entries bound read-only into it: cwltool mounts its
        # scratch directory at a new top-level path, which a read-only root could not take.
        "--tmpfs",
        "/",
    ]
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry in ("proc", "dev", "tmp"):
            continue
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), "/" + entry]
        else:
            argv += ["--ro-bind", path, "/" + entry]
    argv += [
        # The run's own /proc (its PID namespace: this run's processes only): a new procfs
        # cannot be mounted below the sandbox's, whose read-only parts cover it.
        "--bind",
        "/proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    if os.path.isdir(os.path.join(root, STAGING.lstrip("/"))):
        argv += ["--tmpfs", STAGING]
    for source, target, readonly in sorted(mounts, key=lambda m: m[1].count("/")):
        inside = os.path.join(root, target.lstrip("/"))
        top_level = os.path.dirname(target.rstrip("/")) == "/"
        if not (top_level or target.startswith(STAGING + "/") or os.path.exists(inside)):
            fail(f"the image {image} has no {target} to mount the step's files on")
        argv += ["--ro-bind" if readonly else "--bind", source, target]
    # The run's own `file://` repositories, read-only at their paths (as in the sandbox), so
    # that a clone step in an image reaches them as it would on the host.
    for repo in os.environ.get("AQ_REPOSITORIES", "").splitlines():
        if repo.startswith("/") and os.path.isdir(repo):
            argv += ["--ro-bind", repo, repo]
    # The sandbox's git configuration (repositories owned by another user are safe to read:
    # the run's are bound read-only), at a path of its own: the image's /etc is read-only.
    git_config = os.path.isfile("/etc/gitconfig")
    if git_config:
        argv += ["--ro-bind", "/etc/gitconfig", GIT_CONFIG]
    if workdir:
        argv += ["--chdir", workdir]
    argv.append("--clearenv")
    # The image's own environment first (its PATH above all: an export keeps the files, not
    # the image's configuration, so the store keeps it beside them), then cwltool's.
    try:
        with open(root + ".json", encoding="utf-8") as handle:
            config = json.load(handle)
        image_env = [e.partition("=")[::2] for e in config.get("Env") or []]
    except (OSError, ValueError, AttributeError):
        image_env = [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")]
    if git_config:
        env.append(("GIT_CONFIG_SYSTEM", GIT_CONFIG))
    for key, value in image_env + env:
        argv += ["--setenv", key, value]
    argv.append("--")
    argv += command
    os.execvp("bwrap", argv)


main()
