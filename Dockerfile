# rangeserve container image: a static binary, the default www/ and config.toml, nothing else.
#
#   docker build -t rangeserve .
#   docker run -p 8080:8080 -v "$PWD/files:/www:ro" rangeserve
#
# Every setting can also be given as RANGESERVE_* environment variables (see docs/configuration.md).

# ---- build: a statically linked release binary in /out/rangeserve ------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && mkdir -p /out \
 && cp target/x86_64-unknown-linux-gnu/release/rangeserve /out/rangeserve \
 && strip /out/rangeserve

# ---- final: scratch, non-root ------------------------------------------------------------------
FROM scratch
COPY --from=build /out/rangeserve /rangeserve
COPY www /www
COPY config.toml /etc/rangeserve/config.toml
ENV RANGESERVE_CONFIG=/etc/rangeserve/config.toml \
    RANGESERVE_LISTEN=0.0.0.0:8080 \
    RANGESERVE_ROOT=/www
USER 65532:65532
EXPOSE 8080
VOLUME ["/www"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/rangeserve", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/rangeserve"]
