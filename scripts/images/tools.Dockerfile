# The demo catalogue's tools, in one image that scripts/images.sh tags with every name the
# demo CWL pulls (alpine/git, python, curlimages/curl, ruff, alpine, aq-local/tools): git,
# Python 3, curl, and the pinned Python tools of scripts/runner-requirements.txt (Ruff, Bandit,
# Flake8, Pylint, Papermill with ipykernel, eoap-validator) first in PATH, on a Debian base
# made on this machine. A stand-in for the public images where no registry can be reached;
# the commands the CWL runs are the same as on the local runner.
# Build context: scripts/ (for runner-requirements.txt).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      git ca-certificates curl python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY runner-requirements.txt /opt/tools/requirements.txt
# A CA bundle given as the build secret "ca-certificates" (a TLS-inspecting proxy's) is used
# for the download only; it does not stay in the image.
RUN --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && python3 -m venv /opt/tools \
 && /opt/tools/bin/pip install --no-cache-dir -r /opt/tools/requirements.txt
# The virtualenv first: `python3` is then the one that has Papermill and ipykernel, as on the
# local runner (where cwltool's directory comes first in PATH).
ENV PATH=/opt/tools/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
