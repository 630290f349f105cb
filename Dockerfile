# Multi-stage build of the sluice daemon.
#   docker build -t sluice .
#   docker run --rm -v $PWD/pipelines:/etc/sluice:ro sluice run -c /etc/sluice/quickstart.yaml
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libsasl2-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libsasl2-2 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/sluice --create-home sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
USER sluice
WORKDIR /var/lib/sluice
EXPOSE 8686
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "-c", "/etc/sluice/pipeline.yaml"]
