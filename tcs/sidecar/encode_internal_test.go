package sidecar

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// TestEncodingsReuse: a document is encoded once while it stays in the
// table; another document (even of the same tenant and version) is
// encoded on its own.
func TestEncodingsReuse(t *testing.T) {
	s := New(Config{Client: nopClient{}})
	a := &tenant.Tenant{ID: "acme", Version: 3, Hostnames: []string{"a.example.com"}}
	e1, err := s.enc.of(a)
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := s.enc.of(a)
	if e1 != e2 {
		t.Error("the same document was encoded twice")
	}
	if got := e1.etag.s[0]; got != `"3"` {
		t.Errorf("etag %s", got)
	}
	b := a.Clone()
	b.Labels = map[string]string{"x": "y"}
	e3, _ := s.enc.of(b)
	if e3 == e1 || string(e3.json) == string(e1.json) {
		t.Errorf("another document got the first one's encoding: %s", e3.json)
	}
	if n := testing.AllocsPerRun(100, func() { s.enc.of(a) }); n != 0 {
		t.Errorf("a reused encoding allocates %v times", n)
	}
}

type nopClient struct{ Lookuper }

func (nopClient) Watching() bool { return false }

// TestHostnamesOf: a hostname from fasthttp's request bytes comes back as
// a string of its own (the bytes reused for the next request change
// nothing), from the table without allocating once it is there, and right
// when another hostname has taken its slot or it is too long to keep.
func TestHostnamesOf(t *testing.T) {
	s := New(Config{Client: nopClient{}})
	buf := []byte("acme.example.com")
	name := s.names.of(buf)
	copy(buf, "XXXX")
	if name != "acme.example.com" {
		t.Errorf("after the request's bytes changed, the hostname is %q", name)
	}
	buf = []byte("acme.example.com")
	if n := testing.AllocsPerRun(100, func() { name = s.names.of(buf) }); n != 0 || name != "acme.example.com" {
		t.Errorf("a hostname in the table: %q, %v allocations", name, n)
	}
	for i := range 3 * nameSlots { // every slot taken, most more than once
		want := fmt.Sprintf("host-%d.example.com", i)
		if got := s.names.of([]byte(want)); got != want {
			t.Fatalf("of(%q) = %q", want, got)
		}
	}
	if got := s.names.of(buf); got != "acme.example.com" {
		t.Errorf("a hostname pushed out: %q", got)
	}
	long := strings.Repeat("a", maxNameLen+1)
	if got := s.names.of([]byte(long)); got != long {
		t.Errorf("a name over %d bytes: %q", maxNameLen, got)
	}
}
