# The service's image: a statically linked release binary on a minimal, non-root base.
#
# Both base images are build arguments, so a mirror or bases made locally can stand in for
# the public ones (scripts/images.sh builds this file offline that way):
#   docker build -t application-quality-api .
#   docker build --build-arg BUILDER_IMAGE=mirror.example/rust:1.95.0-slim-bookworm \
#                --build-arg RUNTIME_IMAGE=mirror.example/distroless/static-debian12:nonroot .
# Behind a TLS-inspecting proxy, give its CA bundle as a build secret; it is used for the crate
# downloads only and does not stay in the image:
#   docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt .
# Needs BuildKit (the default since Docker 23; DOCKER_BUILDKIT=1 before that) for the cache
# mounts, which keep the crates and the build directory between builds.
#
# The binary links glibc statically (crt-static), so the runtime base needs no C library:
# the image is the binary (about 21 MB) plus CA certificates and a passwd entry.

ARG BUILDER_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /build
# Everything the build reads, and nothing else (.dockerignore admits the same list):
# vendor/ holds a patched dependency ([patch.crates-io] in Cargo.toml).
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY vendor ./vendor
COPY src ./src
# An explicit --target keeps build scripts and proc-macros dynamic; only the binary is static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export CARGO_HTTP_CAINFO=/run/secrets/ca-certificates; fi \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/application-quality-api /application-quality-api

FROM ${RUNTIME_IMAGE}
COPY --from=build /application-quality-api /usr/local/bin/application-quality-api
# The numeric id of distroless's "nonroot", so runAsNonRoot can verify it.
USER 65532:65532
# The embedded SQLite default (application-quality.db) is created in the working directory;
# mount a volume and set DATABASE_URL (sqlite:///data/aq.db) to keep it.
WORKDIR /home/nonroot
# In a container the service must listen beyond loopback. Unauthenticated CloudEvents
# (EVENTS_AUTH=off, the default) are then refused at start-up: configure EVENTS_AUTH=oidc with
# its issuer and audience (as knative/service.yaml does), or, on a network whose every host is
# trusted, EVENTS_TRUST_NETWORK=true (docs/access.md).
ENV PORT=8080 \
    BIND_ADDRESS=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/application-quality-api"]
CMD ["serve"]
