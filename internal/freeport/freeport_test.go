package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports are distinct, bindable, and below the ephemeral range where there is
// one to read.
func TestPortsDistinctAndBindable(t *testing.T) {
	seen := map[int]bool{}
	lo := ephemeralLow()
	for range 300 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if lo > lowest && (p < lowest || p >= lo) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, lo)
		}
	}
	a, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("listen on %s: %v", a, err)
	}
	defer l.Close()
	_, ps, _ := net.SplitHostPort(a)
	p, _ := strconv.Atoi(ps)
	if seen[p] {
		t.Fatalf("Addr gave %d, handed out before", p)
	}
}

// Every port handed out can be listened on while the earlier ones are held.
func TestPortsBindableTogether(t *testing.T) {
	var busy []net.Listener
	defer func() {
		for _, l := range busy {
			l.Close()
		}
	}()
	for range 50 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d handed out but not bindable: %v", p, err)
		}
		busy = append(busy, l)
	}
}
