# syntax=docker/dockerfile:1
# Slipway control plane: the server binary plus the built dashboard.
#   docker build -t slipway .
#   docker run -p 8080:8080 -v slipway-data:/data slipway
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-unknown-unknown \
 && apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# wasm-opt from npm binaryen (scripts/wasm-opt), never Debian's binaryen.
RUN npm ci --prefix scripts/wasm-opt --no-audit --no-fund \
 && cargo run --release -p xtask -- build-frontend --release \
 && cargo build --release -p slipway \
 && cp target/release/slipway /slipway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data slipway \
 && mkdir -p /data && chown slipway /data
COPY --from=build /slipway /usr/local/bin/slipway
COPY --from=build /src/static /usr/share/slipway/static
USER slipway
ENV SLIPWAY_BIND=0.0.0.0:8080 \
    SLIPWAY_DATA_DIR=/data \
    SLIPWAY_STATIC_DIR=/usr/share/slipway/static
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/ready || exit 1
ENTRYPOINT ["/usr/local/bin/slipway"]
CMD ["serve"]
