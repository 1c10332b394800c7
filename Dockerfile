# The operator image: one static binary (x86_64-unknown-linux-musl) in an empty image, numeric
# non-root user, no shell, no libc, no CA bundle (in-cluster clients trust the ServiceAccount CA).
# The build context is a directory holding only that binary; hack/image.sh prepares it and builds this
# file, offline, with buildah (CI) or with Docker (--docker), so both give the same image:
#   hack/image.sh                    # buildah; writes target/image/cost-analysis-operator.tar
#   hack/image.sh --docker           # docker build -f Dockerfile target/image/context
FROM scratch
COPY cost-analysis-operator /cost-analysis-operator
USER 65532:65532
ENTRYPOINT ["/cost-analysis-operator"]
