# syntax=docker/dockerfile:1
# sendgate container image: build with the Rust toolchain, run on a slim
# Debian of the same release (same glibc and libstdc++).

FROM rust:1-bookworm AS build
# cmake builds the bundled librdkafka; libclang is what bindgen loads to
# generate the RocksDB bindings.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled C++ (RocksDB,
# librdkafka) between image builds; the binary is copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sendgate \
 && install -D -m 0755 target/release/sendgate /out/sendgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/sendgate --shell /usr/sbin/nologin sendgate \
 && mkdir -p /var/lib/sendgate \
 && chown sendgate:sendgate /var/lib/sendgate
COPY --from=build /out/sendgate /usr/local/bin/sendgate
# A named volume mounted here starts with this ownership.
ENV SENDGATE_STATE_DIR=/var/lib/sendgate
USER sendgate
WORKDIR /var/lib/sendgate
ENTRYPOINT ["/usr/local/bin/sendgate"]
CMD ["run"]
