package sidecar

import (
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
