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

// A block's ports are all bindable together, never handed out again (by
// Block or Port), and a bad size is refused.
func TestBlock(t *testing.T) {
	base, err := Block(24)
	if err != nil {
		t.Fatal(err)
	}
	var busy []net.Listener
	defer func() {
		for _, l := range busy {
			l.Close()
		}
	}()
	for p := base; p < base+24; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d of block %d not bindable: %v", p, base, err)
		}
		busy = append(busy, l)
	}
	for range 100 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p >= base && p < base+24 {
			t.Fatalf("Port gave %d, inside block [%d, %d)", p, base, base+24)
		}
	}
	other, err := Block(24)
	if err != nil {
		t.Fatal(err)
	}
	if other < base+24 && base < other+24 {
		t.Fatalf("blocks [%d, +24) and [%d, +24) overlap", base, other)
	}
	if _, err := Block(0); err == nil {
		t.Error("Block(0) = nil error, want a refusal")
	}
}
