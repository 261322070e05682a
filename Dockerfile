# One image with every TCS binary (catalog, streamer, tcs, tcsctl, tcs-dev);
# docker-compose.yml runs each as its own service.
#
#   docker build -t tcs .
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/ ./cmd/catalog ./cmd/streamer ./cmd/tcs ./cmd/tcsctl ./cmd/tcs-dev

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV TCS_LOG_FORMAT=json
USER nonroot
ENTRYPOINT []
