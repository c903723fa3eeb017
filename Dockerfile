# rangeserve container image: a static binary, the default www/ and config.toml, nothing else.
#
#   docker build -t rangeserve .
#   docker run -p 8080:8080 -v "$PWD/files:/www:ro" rangeserve
#
# Every setting can also be given as RANGESERVE_* environment variables (see docs/configuration.md).

# ---- build: a statically linked release binary in /out/rangeserve ------------------------------
# For the platform the image is built for (buildah/docker set TARGETARCH: amd64, arm64).
FROM rust:1-bookworm AS build
ARG TARGETARCH
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN target=$(case "${TARGETARCH:-amd64}" in \
        amd64) echo x86_64-unknown-linux-gnu ;; \
        arm64) echo aarch64-unknown-linux-gnu ;; \
        *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac) \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" \
 && mkdir -p /out \
 && cp "target/$target/release/rangeserve" /out/rangeserve \
 && strip /out/rangeserve

# ---- final: scratch, non-root ------------------------------------------------------------------
FROM scratch
COPY --from=build /out/rangeserve /rangeserve
COPY www /www
COPY config.toml /etc/rangeserve/config.toml
# Listings off: a directory mounted at /www is served, not published as a browsable index
# (the landing page has its index.html). `-e RANGESERVE_LISTING=true` turns them on.
ENV RANGESERVE_CONFIG=/etc/rangeserve/config.toml \
    RANGESERVE_LISTEN=0.0.0.0:8080 \
    RANGESERVE_ROOT=/www \
    RANGESERVE_LISTING=false
USER 65532:65532
EXPOSE 8080
VOLUME ["/www"]
# `OPTIONS *` to the server itself (https when TLS is configured): no file is read or hashed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/rangeserve", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/rangeserve"]
