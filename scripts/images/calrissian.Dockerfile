# Calrissian (the CWL runner of every run's Job) from PyPI on a Debian base. Node.js is there
# for the CWL expressions (InlineJavascriptRequirement) that cwltool evaluates itself.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG CALRISSIAN_VERSION=0.18.1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv nodejs ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A CA bundle given as the build secret "ca-certificates" (a TLS-inspecting proxy's) is used
# for the download only; it does not stay in the image.
RUN --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && python3 -m venv /opt/calrissian \
 && /opt/calrissian/bin/pip install --no-cache-dir "calrissian==${CALRISSIAN_VERSION}"

# `calrissian` (what every Job runs) reads cwltool's schemas parsed here, at build time,
# instead of parsing them at every start (see calrissian-warm.py).
COPY calrissian-warm.py /opt/calrissian/warm.py
RUN /opt/calrissian/bin/python /opt/calrissian/warm.py make \
 && printf '#!/bin/sh\nexec /opt/calrissian/bin/python /opt/calrissian/warm.py "$@"\n' > /usr/local/bin/calrissian \
 && chmod 0755 /usr/local/bin/calrissian
ENTRYPOINT ["calrissian"]
