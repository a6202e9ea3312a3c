# syntax=docker/dockerfile:1
#
# glimpse-server image: the edge binary, the demo site (www/) and the built
# browser SDK (sdk/pkg). Configuration is by the GLIMPSE_* environment
# variables (see `glimpse-server --help`); the defaults below suit a container.
#
#   docker build -t glimpse-server:local .
#   docker run --rm -p 8080:8080 -v glimpse-data:/var/lib/glimpse glimpse-server:local
#
# Not built on the machine this was written on (no container engine there):
# it is checked statically by deploy/check.sh (hadolint) and by the e2e test
# tests/tests/e2e/deploy_manifests.rs (env names and ports vs. the binary).

ARG RUST_VERSION=1.95

# --- builder: the SDK (wasm32 + wasm-bindgen) and the server ----------------
FROM rust:${RUST_VERSION}-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# npm lets `cargo xtask sdk` fetch binaryen's wasm-opt for a smaller SDK; the
# xtask skips that step with a warning when npm is missing. Versions are not
# pinned: Debian drops superseded ones, so pins would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock
# exactly; installing it in its own layer keeps it cached across source edits.
COPY Cargo.toml Cargo.lock ./
RUN rustup target add wasm32-unknown-unknown \
 && version="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;q;}' Cargo.lock)" \
 && test -n "$version" \
 && cargo install wasm-bindgen-cli --locked --version "$version"

COPY . .
RUN cargo xtask sdk \
 && cargo build --release --locked -p glimpse-server \
 && install -D -m 0755 target/release/glimpse-server /out/glimpse-server

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# curl is the only addition: HEALTHCHECK needs an HTTP client and the slim
# image has none. (distroless/cc would need a health subcommand in the
# server; Kubernetes ignores HEALTHCHECK and uses its own httpGet probes.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 glimpse \
 && useradd --system --uid 10001 --gid glimpse --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin glimpse \
 && install -d -m 0750 -o glimpse -g glimpse /var/lib/glimpse

WORKDIR /app
COPY --from=builder /out/glimpse-server /usr/local/bin/glimpse-server
COPY --from=builder /src/www /app/www
COPY --from=builder /src/sdk/pkg /app/sdk/pkg

# The redb store and the edge's identity file live in GLIMPSE_DATA_DIR:
# mount a writable volume there (the root filesystem may be read-only).
# NO_COLOR keeps ANSI escapes out of the container logs; RUST_LOG sets the level.
ENV GLIMPSE_LISTEN=0.0.0.0:8080 \
    GLIMPSE_DATA_DIR=/var/lib/glimpse \
    GLIMPSE_WWW_DIR=/app/www \
    GLIMPSE_SDK_DIR=/app/sdk/pkg \
    NO_COLOR=1 \
    RUST_LOG=info
VOLUME ["/var/lib/glimpse"]

USER 10001:10001
EXPOSE 8080
# SIGTERM makes the edge flush its pending counts, then exit: give it time
# (docker stop -t 45, compose stop_grace_period, k8s terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/glimpse-server"]
