#!/usr/bin/env bash
# scripts/local-images.sh - fills the local runner's image store (LOCAL_CONTAINERS=images) from a
# container engine, so that pipelines whose tools require images (the reference's catalogue)
# run on the local runner, each step in its image's files, nested in the run's sandbox.
#
#   scripts/local-images.sh IMAGE...            # e.g. cytopia/bandit alpine/git:latest
#
# For each image: its files (`docker export` of a container created from it, never started)
# into <store>/<reference>/, and its configuration (`Env`, `WorkingDir`, `User`, `Entrypoint`,
# `Cmd`) into <store>/<reference>.json. <reference> is the image reference with its tag
# (`latest` when none), percent-encoded into one file name, as the runner looks it up; it is a
# link to <store>/.images/<image id>/, so names of one image share one copy. The mount points
# cwltool uses (/var/spool/cwl, /var/lib/cwl, /tmp) are created in the copy. A name is
# re-pointed atomically (a new link renamed over the old one).
#
# Environment: LOCAL_IMAGES_DIR (default: $LOCAL_DATA_DIR/images, LOCAL_DATA_DIR defaulting to
# application-quality-data, as the service), DOCKER (the client, default docker), DOCKER_HOST
# (the engine: any engine that has the images, the e2e node's private engine included).
# The store is read by the service's user: run this as that user.
set -euo pipefail

[ "$#" -gt 0 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
DOCKER=${DOCKER:-docker}
STORE=${LOCAL_IMAGES_DIR:-${LOCAL_DATA_DIR:-application-quality-data}/images}
for tool in "$DOCKER" python3 tar; do
  command -v "$tool" >/dev/null ||
    { echo "local-images.sh: $tool is missing (a container client, python3 and tar are needed)" >&2; exit 1; }
done
mkdir -p "$STORE"

encode() { # the store's name of an image reference
  python3 - "$1" <<'EOF'
import sys, urllib.parse
name = sys.argv[1]
last = name.rsplit("/", 1)[-1]
if "@" not in name and ":" not in last:
    name += ":latest"
print(urllib.parse.quote(name, safe=""))
EOF
}

for image in "$@"; do
  name=$(encode "$image")
  id=$("$DOCKER" image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
    { echo "local-images.sh: $image is not in the engine" >&2; exit 1; }
  id=${id#sha256:}
  # One copy of the files per image id: names of one image (tags) share it.
  files="$STORE/.images/$id"
  if [ ! -d "$files" ]; then
    tmp="$STORE/.images/.$id.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    container=$("$DOCKER" create "$image" /bin/true)
    # Extracted as the store's owner, without the image's owners: the runs read it as an
    # unprivileged user. Device files are left out (the steps get a /dev of their own); what
    # else tar could not make is said, not hidden.
    if ! "$DOCKER" export "$container" |
      tar -x -C "$tmp" --no-same-owner --no-same-permissions --exclude='dev/*' 2>"$tmp.log"; then
      echo "local-images.sh: warning: not every file of $image could be extracted:" >&2
      tail -n 5 "$tmp.log" >&2
    fi
    rm -f "$tmp.log"
    "$DOCKER" rm -f "$container" >/dev/null
    [ -d "$tmp/usr" ] || [ -d "$tmp/bin" ] || { echo "local-images.sh: $image exported no files" >&2; exit 1; }
    mkdir -p "$tmp/var/spool/cwl" "$tmp/var/lib/cwl" "$tmp/tmp" "$tmp/proc" "$tmp/dev"
    chmod -R u+rwX,go+rX,go-w "$tmp"
    mv "$tmp" "$files"
  fi
  "$DOCKER" image inspect -f '{{json .Config}}' "$image" > "$STORE/.$name.json.$$"
  ln -sfn ".images/$id" "$STORE/.$name.$$"
  mv -T "$STORE/.$name.$$" "$STORE/$name"
  mv "$STORE/.$name.json.$$" "$STORE/$name.json"
  echo "$image -> $STORE/$name"
done
