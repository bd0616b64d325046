# The images the reference's catalogue pulls (`import-fixtures`), as stand-ins made here: the
# tools image (scripts/images/tools.Dockerfile: git, Python 3, curl and the pinned tools of
# scripts/runner-requirements.txt) plus what the reference's tool definitions call beyond it.
# scripts/images.sh tags it with every name of FIXTURE_IMAGES there (alpine/git, alpine:latest,
# curlimages/curl, cytopia/bandit, cytopia/pylint, eoepca/appquality-flake8-json:v0.1.0,
# ghcr.io/astral-sh/ruff:alpine, continuumio/miniconda3). See docs/fixtures.md.
#
# - `sh` is BusyBox's ash, as in the Alpine images those names stand for: the reference's
#   scripts test with `[ "$x" == "true" ]`, which Debian's dash refuses.
# - `conda` is a stand-in (stand-in/conda) covering what the reference's Papermill tool calls
#   (`conda env create -f`, `conda run -n`) on the packages already in the image: runs reach no
#   package index. An environment asking for anything else fails, naming it.
# - `curl` adds the run's callback token (AQ_CALLBACK_TOKEN) to requests for the run's own
#   routes of the service (stand-in/curl): the reference's save tool sends none, and this
#   service refuses unauthenticated job reports.
# Build context: scripts/images/.
ARG TOOLS_IMAGE=aq-local/tools:1
FROM ${TOOLS_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /bin/busybox /bin/sh
COPY stand-in/conda stand-in/curl /usr/local/bin/
# pip never asks an index about its own version (runs have no network).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
