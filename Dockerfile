# The codecrafter binary (API nodes and workers) with the toolchains code runs use.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p codecrafter-api

FROM debian:bookworm-slim
# bubblewrap, util-linux (prlimit, setpriv) and perl-base (the supervisor, part of every
# Debian system) are the sandbox; the rest are the languages `languages` reports as available
# (.ci/run installs the same list).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bubblewrap util-linux ca-certificates \
      python3 nodejs node-typescript gcc g++ libc6-dev bash default-jdk-headless golang-go \
      rustc ruby \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/codecrafter /usr/local/bin/codecrafter
ENV BIND=0.0.0.0:8080 CODECRAFTER_DATA_DIR=/var/lib/codecrafter
EXPOSE 8080
ENTRYPOINT ["codecrafter"]
CMD ["serve"]
