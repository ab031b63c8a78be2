# meshproxy container images.
#   docker build -t meshproxy .                 # the proxy (static binary, uid 1337)
#   docker build -t meshproxy-init --target init .   # the init container (iptables)

# --- build: a static (musl) release binary -------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p meshproxy \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/meshproxy /out/meshproxy

# --- init: `meshproxy init` needs iptables (run with NET_ADMIN) ------------------------
FROM debian:bookworm-slim AS init
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/meshproxy /usr/local/bin/meshproxy
ENTRYPOINT ["/usr/local/bin/meshproxy", "init"]

# --- runtime: the proxy, as uid 1337 (the uid `meshproxy init` excludes) ---------------
# busybox (musl) adds a shell and wget for the health check and for debugging, ~1 MB.
FROM busybox:stable-musl AS runtime
COPY --from=build /out/meshproxy /usr/local/bin/meshproxy
USER 1337:1337
# admin, outbound capture, inbound capture
EXPOSE 15000 15001 15006
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:15000/ready || exit 1
ENTRYPOINT ["/usr/local/bin/meshproxy"]
CMD ["run", "-c", "/etc/meshproxy"]
