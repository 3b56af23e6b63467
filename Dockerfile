# kakaopay-worker: one binary for serve, api, work, sim, demo and queues.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kakaopay-worker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home kakaopay
COPY --from=build /src/target/release/kakaopay-worker /usr/local/bin/kakaopay-worker
USER kakaopay
ENV LOG_FORMAT=json
ENTRYPOINT ["kakaopay-worker"]
CMD ["serve"]
