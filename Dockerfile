# Builds the `stagedoor` binary, the `stagedoor-echo` upstream (the demo stack's services)
# and the wasm filter with Debian's Rust (which can target wasm32-wasip1 by building std
# from source). Validated with docker-compose config; no
# Docker engine runs on the project's build machines.
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends rustc-web cargo-web rust-web-src lld-22 wasi-libc \
      ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN /usr/bin/cargo build --release -p stagedoor-control-plane -p stagedoor-echo && scripts/build-filter.sh \
 && scripts/build-filter.sh --hmac-only

FROM debian:bookworm-slim
COPY --from=build /src/target/release/stagedoor /usr/local/bin/stagedoor
COPY --from=build /src/target/release/stagedoor-echo /usr/local/bin/stagedoor-echo
COPY --from=build /src/target/wasm32-wasip1/release/stagedoor_filter.wasm /opt/stagedoor/stagedoor_filter.wasm
COPY --from=build /src/target/wasm32-wasip1/release/stagedoor_filter_hmac.wasm /opt/stagedoor/stagedoor_filter_hmac.wasm
COPY registry /etc/stagedoor
ENTRYPOINT ["stagedoor"]
