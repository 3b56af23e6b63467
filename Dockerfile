# kakaopay-worker: one binary for serve, api, work, sim, demo, queues and healthcheck.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# jemalloc, the service's allocator, is built from its C sources with make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: only a change of Cargo.toml or Cargo.lock rebuilds
# them. The workspace's own crates are stubs here (every target a manifest declares must exist).
COPY Cargo.toml Cargo.lock ./
COPY jobs/Cargo.toml jobs/
RUN mkdir -p src jobs/src jobs/benches jobs/examples \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs jobs/src/lib.rs \
 && echo 'fn main() {}' > jobs/benches/queue.rs \
 && echo 'fn main() {}' > jobs/examples/request_refund.rs \
 && cargo build --release --locked --bin kakaopay-worker \
 && rm -rf src jobs/src jobs/benches jobs/examples

# Then the code. COPY keeps the files' own times, which may be older than the stubs' build:
# touching them makes cargo rebuild our crates (and only those).
COPY src src
COPY jobs jobs
RUN touch src/main.rs src/lib.rs jobs/src/lib.rs \
 && cargo build --release --locked --bin kakaopay-worker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home kakaopay
COPY --from=build /src/target/release/kakaopay-worker /usr/local/bin/kakaopay-worker
USER kakaopay
ENV LOG_FORMAT=json
# /readyz at BIND (default 127.0.0.1:8080); compose overrides it for `sim` (`--sim`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["kakaopay-worker", "healthcheck"]
ENTRYPOINT ["kakaopay-worker"]
CMD ["serve"]
