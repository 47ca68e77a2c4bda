# cosigner-guard: a small, non-root image with no shell, built reproducibly from pinned versions.
#
#   docker build -t cosigner-guard:0.1.0 --build-arg GIT_REVISION=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -p 8443:8443 -p 127.0.0.1:9090:9090 \
#     -v $PWD/keys:/etc/cosigner-guard/keys:ro -v $PWD/tls:/etc/cosigner-guard/tls:ro \
#     -v cg-state:/var/lib/cosigner-guard cosigner-guard:0.1.0
#
# The image's layout and its configuration are examples/container/config.toml (tests/deploy.rs
# runs that exact layout, as user 65532, without Docker).
#
# No HEALTHCHECK: the image has no shell or HTTP client to run one. Probe the admin listener from
# outside instead — liveness GET /healthz, readiness GET /readyz (see the Kubernetes example).

# Build stage: the toolchain pinned to a release, dependencies pinned by Cargo.lock.
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
ARG GIT_REVISION=unknown
ENV COSIGNER_GUARD_GIT_REVISION=${GIT_REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
COPY examples examples
COPY tests tests
RUN cargo build --locked --profile dist --bin cosigner-guard
# The volume's directories, owned by the image's user: a new named volume is made from them.
RUN mkdir -p /out/var/lib/cosigner-guard/state /out/var/lib/cosigner-guard/log

# Run stage: glibc and CA roots only (no shell, no package manager), as user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/cosigner-guard /usr/local/bin/cosigner-guard
COPY policies /etc/cosigner-guard/policies
COPY examples/container/config.toml /etc/cosigner-guard/config.toml
COPY --from=build --chown=65532:65532 /out/var/lib/cosigner-guard /var/lib/cosigner-guard
USER 65532:65532
EXPOSE 8443 9090
VOLUME ["/var/lib/cosigner-guard"]
ENTRYPOINT ["/usr/local/bin/cosigner-guard", "--log-format", "json"]
CMD ["serve", "--config", "/etc/cosigner-guard/config.toml"]
