// Package regionlist parses the --regions flag the binaries that talk to
// the lookup regions share (tcsctl, tcs-sidecar): a comma-separated list of
// REGION=HOST:PORT, in order of preference (local region first).
package regionlist

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Default is the regions `make run` serves (cmd/tcs-dev).
const Default = "us-east-1=127.0.0.1:9001,eu-west-1=127.0.0.1:9002,ap-southeast-2=127.0.0.1:9003"

// Region is one region's name and the address of its tcs gRPC server.
type Region struct {
	Name string
	Addr string
}

// Parse parses s ("REGION=HOST:PORT,…"; spaces around an entry and empty
// entries are ignored). Every error names --regions and the entry at fault:
// an entry that is not REGION=HOST:PORT, a region listed twice, or none.
func Parse(s string) ([]Region, error) {
	var out []Region
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, addr, ok := strings.Cut(part, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--regions: %q is not REGION=HOST:PORT", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--regions: %s: %q is not HOST:PORT", name, addr)
		}
		if seen[name] {
			return nil, fmt.Errorf("--regions: region %s listed twice", name)
		}
		seen[name] = true
		out = append(out, Region{name, addr})
	}
	if len(out) == 0 {
		return nil, errors.New("--regions: no region given")
	}
	return out, nil
}

// Addrs returns the regions' addresses, in order.
func Addrs(rs []Region) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Addr
	}
	return out
}
