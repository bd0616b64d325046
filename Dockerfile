# syntax=docker/dockerfile:1
#
# Two stages: build the release binary with the toolchain pinned in rust-toolchain.toml
# (the crates need Rust >= 1.94), then copy only that binary into a distroless image that
# runs as a non-root user. Build: docker build -t application-quality-api .

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /build
# Dependencies first, against stub sources, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
# The stubs' build artefacts are older than the real sources only by mtime; touch makes sure
# cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/application-quality-api /application-quality-api

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /application-quality-api /usr/local/bin/application-quality-api
USER nonroot:nonroot
# The embedded SQLite default (application-quality.db) is created in the working directory.
WORKDIR /home/nonroot
ENV PORT=8080 \
    BIND_ADDRESS=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/application-quality-api"]
CMD ["serve"]
