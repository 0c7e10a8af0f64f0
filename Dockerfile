# syntax=docker/dockerfile:1
# epro-ingest in a container: built with the `dist` profile, run from a distroless
# image (glibc and libgcc, no shell) as a non-root user. io_uring needs a seccomp
# profile that allows it and locked memory:
#
#   docker build -t epro-ingest .
#   docker run -d --name epro-ingest -p 8080:8080 \
#     --security-opt seccomp=deploy/seccomp-io_uring.json --ulimit memlock=-1 \
#     -v epro-data:/var/lib/epro-ingest \
#     -v "$PWD/config.toml:/etc/epro-ingest/config.toml:ro" epro-ingest
#
# See docs/operations.md, "Containers".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked --bin epro-ingest \
 && install -D -m 0755 target/dist/epro-ingest /out/epro-ingest \
 && install -d -m 0700 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/epro-ingest /usr/local/bin/epro-ingest
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/epro-ingest
VOLUME /var/lib/epro-ingest
EXPOSE 8080
USER nonroot
# Ready once every shard has recovered its log: give a large log time to scan.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15m --retries=3 \
  CMD ["/usr/local/bin/epro-ingest", "probe", "--addr", "127.0.0.1:8080", "--path", "/readyz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/epro-ingest"]
CMD ["serve", "--config", "/etc/epro-ingest/config.toml", "--listen", "0.0.0.0:8080", \
     "--data-dir", "/var/lib/epro-ingest"]
