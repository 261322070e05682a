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

// isLoopback reports whether a region endpoint names a loopback host:
// "host:port", or "dns:///host:port" or "passthrough:///host:port" (any
// DNS authority). Other resolvers' targets are not known to be loopback.
func isLoopback(target string) bool {
	addr := target
	if scheme, rest, ok := strings.Cut(target, "://"); ok {
		switch strings.ToLower(scheme) {
		case "dns", "passthrough":
		default:
			return false
		}
		_, endpoint, ok := strings.Cut(rest, "/") // after the authority
		if !ok {
			return false
		}
		addr = endpoint
	}
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
