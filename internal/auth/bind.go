package auth

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
)

// IsLoopback reports whether a listen or dial address ("host:port") names
// a loopback host. An empty host (all interfaces) is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Bind is one server's listen address and what protects it.
type Bind struct {
	Flag string // the flag that sets Addr, for messages
	Addr string
	TLS  bool // served over TLS
	Auth bool // every call but health needs credentials
}

// CheckBinds refuses to serve a non-loopback address without TLS and
// authentication, and to accept a development token on one, naming the
// flag to set. insecure (--insecure-i-know) turns the refusals into a
// warning logged for each bind.
func CheckBinds(binds []Bind, dev bool, insecure bool, log *slog.Logger) error {
	for _, b := range binds {
		if IsLoopback(b.Addr) {
			continue
		}
		var problem string
		switch {
		case !b.TLS && !b.Auth:
			problem = "without TLS and authentication: set --tls-cert and --tls-key, and --tokens-file"
		case !b.TLS:
			problem = "without TLS (bearer tokens would cross the network in clear): set --tls-cert and --tls-key"
		case !b.Auth:
			problem = "without authentication: set --tokens-file (token digests or a client certificate allow-list)"
		case dev:
			problem = "with a development token (dev-…-token), which everybody knows: configure your own in --tokens-file (tcsctl token new)"
		}
		if problem == "" {
			continue
		}
		if !insecure {
			return fmt.Errorf("refusing to serve %s %s %s; or pass --insecure-i-know to accept the risk", b.Flag, b.Addr, problem)
		}
		log.Warn("INSECURE: serving a non-loopback address unprotected because of --insecure-i-know",
			"flag", b.Flag, "addr", b.Addr, "tls", b.TLS, "auth", b.Auth, "dev_token", dev)
	}
	return nil
}
