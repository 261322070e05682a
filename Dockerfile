# One image with every TCS binary (catalog, streamer, tcs, tcsctl, tcs-dev, tcs-sidecar);
# docker-compose.yml runs each as its own service.
#
#   docker build -t tcs --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) .
#
# Base images are pinned by digest (the tag is kept for reading). The digests
# were copied from public references, not pulled here (no Docker engine in
# this repository's CI); refresh one with
# `docker buildx imagetools inspect <image>:<tag>` (the Digest line).
FROM golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version and revision every binary prints for --version and exports
# as tcs_build_info{version,revision}:
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) .
# Unset: the module version Go records ("(devel)") and revision "unknown"
# (.dockerignore keeps .git out of the build context).
ARG VERSION=
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -X github.com/tcs-dev/tcs/internal/buildinfo.Version=${VERSION} -X github.com/tcs-dev/tcs/internal/buildinfo.Revision=${REVISION}" -o /out/ ./cmd/catalog ./cmd/streamer ./cmd/tcs ./cmd/tcsctl ./cmd/tcs-dev ./cmd/tcs-sidecar

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/ /usr/local/bin/
ENV TCS_LOG_FORMAT=json
USER nonroot
ENTRYPOINT []
