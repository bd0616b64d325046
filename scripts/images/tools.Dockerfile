# The demo catalogue's tools, in one image that scripts/images.sh tags with every name the
# demo CWL pulls (alpine/git, python, curlimages/curl, ruff, alpine): git, Python 3, curl and
# Ruff on a Debian base made on this machine. A stand-in for those public images where no
# registry can be reached; the commands the CWL runs are the same.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG RUFF_VERSION=0.8.6
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      git ca-certificates curl python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
# A CA bundle given as the build secret "ca-certificates" (a TLS-inspecting proxy's) is used
# for the download only; it does not stay in the image.
RUN --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && python3 -m venv /opt/ruff \
 && /opt/ruff/bin/pip install --no-cache-dir "ruff==${RUFF_VERSION}" \
 && ln -s /opt/ruff/bin/ruff /usr/local/bin/ruff
