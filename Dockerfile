# pgcoalesce container image.
#
# Build: docker build -t pgcoalesce .
# Run:   docker run -p 6432:6432 -v $PWD/config:/etc/pgcoalesce pgcoalesce
#        (or: docker run -p 6432:6432 pgcoalesce --upstream postgres://user:pw@db:5432/app --listen 0.0.0.0:6432)
#
# The build stage runs the same cargo build that CI runs (.ci/run).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY migrations migrations
COPY config config
RUN cargo build --release --locked -p pgcoalesce

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgcoalesce
COPY --from=build /src/target/release/pgcoalesce /usr/local/bin/pgcoalesce
COPY config/pgcoalesce.yaml /etc/pgcoalesce/pgcoalesce.yaml
USER pgcoalesce
EXPOSE 6432
ENTRYPOINT ["/usr/local/bin/pgcoalesce"]
CMD ["--config", "/etc/pgcoalesce/pgcoalesce.yaml", "--listen", "0.0.0.0:6432"]
