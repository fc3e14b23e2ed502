# syntax=docker/dockerfile:1
# One image for API nodes and workers: the codecrafter binary with the toolchains code runs
# use. The API runs as the unprivileged user `codecrafter`; the worker (compose: `user:
# root`, privileged) needs root for the sandbox's namespaces, cgroups and per-run uids.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory live in BuildKit caches: a source change rebuilds
# only the workspace's own crates, never the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p codecrafter-api \
 && cp target/release/codecrafter /usr/local/bin/codecrafter

FROM debian:bookworm-slim
# bubblewrap and perl-base (the launcher and the supervisor, part of every Debian system)
# are the sandbox; curl is for health checks; the rest are the languages
# `languages` reports as available (.ci/run installs the same list).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bubblewrap ca-certificates curl \
      python3 nodejs node-typescript gcc g++ libc6-dev bash default-jdk-headless golang-go \
      rustc ruby \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/codecrafter --create-home codecrafter
COPY --from=build /usr/local/bin/codecrafter /usr/local/bin/codecrafter
ENV BIND=0.0.0.0:8080 CODECRAFTER_DATA_DIR=/var/lib/codecrafter
USER codecrafter
EXPOSE 8080 9091
ENTRYPOINT ["codecrafter"]
CMD ["serve"]
