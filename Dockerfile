# A static binary in a minimal non-root image.
#   docker build -t cost-analysis-operator:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin cost-analysis-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/cost-analysis-operator /cost-analysis-operator
USER 65532:65532
ENTRYPOINT ["/cost-analysis-operator"]
