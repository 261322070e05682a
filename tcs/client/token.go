package client

import (
	"context"
	"net"
	"strings"
)

// bearerToken is the per-RPC credential of WithToken.
type bearerToken struct {
	token  string
	secure bool // over TLS: gRPC then refuses to send it on a plaintext connection
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// isLoopback reports whether a region address names a loopback host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
