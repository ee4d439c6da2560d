# Multi-stage build of hapctl. The runtime image carries Debian's HAProxy
# too: hapctl runs `haproxy -c` on the config it writes, and the same image
# serves as the HAProxy container in docker-compose.yml, so both run the
# very same HAProxy.
#
#   docker build -t hapctl .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hapctl ./cmd/hapctl && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/sample-backend ./cmd/sample-backend

FROM debian:bookworm-slim
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy socat ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    mkdir -p /run/haproxy /var/lib/haproxy /etc/hapctl
COPY --from=build /out/hapctl /out/sample-backend /usr/local/bin/
COPY haproxy/haproxy.cfg /usr/share/hapctl/haproxy.cfg
COPY haproxy/hapctl.yaml /usr/share/hapctl/hapctl.yaml
EXPOSE 9680
ENTRYPOINT ["/usr/local/bin/hapctl"]
CMD ["daemon", "--config", "/etc/hapctl/hapctl.yaml"]
