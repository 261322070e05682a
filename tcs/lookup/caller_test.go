package lookup_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc/peer"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

func TestCallerOf(t *testing.T) {
	t.Parallel()
	from := func(addr net.Addr) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: addr})
	}
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	tests := []struct {
		name string
		ctx  context.Context
		want lookup.Caller
		str  string
	}{
		{"identity wins over address", auth.NewContext(from(tcp("10.0.0.1")), auth.Identity{Name: "checkout", Role: auth.Lookup}),
			lookup.Caller{Name: "checkout"}, "identity checkout"},
		{"IPv4", from(tcp("10.0.0.1")), lookup.Caller{IP: netip.MustParseAddr("10.0.0.1")}, "address 10.0.0.1"},
		{"IPv4 in IPv6", from(tcp("::ffff:10.0.0.1")), lookup.Caller{IP: netip.MustParseAddr("10.0.0.1")}, "address 10.0.0.1"},
		{"IPv6: its /64", from(tcp("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), lookup.Caller{IP: netip.MustParseAddr("2001:db8:1:2::")}, "address 2001:db8:1:2::/64"},
		{"another address type", from(&net.UDPAddr{IP: net.ParseIP("10.0.0.2"), Port: 1}), lookup.Caller{IP: netip.MustParseAddr("10.0.0.2")}, "address 10.0.0.2"},
		{"in process", context.Background(), lookup.Caller{}, "in-process caller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := lookup.CallerOf(tt.ctx)
			if got != tt.want || got.String() != tt.str {
				t.Errorf("CallerOf = %#v (%s), want %#v (%s)", got, got, tt.want, tt.str)
			}
		})
	}
	// One /64 is one caller.
	a := lookup.CallerOf(from(tcp("2001:db8::1")))
	b := lookup.CallerOf(from(tcp("2001:db8::ffff:1")))
	if a != b {
		t.Errorf("two addresses of one /64 are callers %s and %s", a, b)
	}
}
