package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestPropagation: the catalog of tcs-dev knows its lookup servers, so a
// write can be waited for until every region serves it.
func TestPropagation(t *testing.T) {
	t.Parallel()
	s := start(t, "--seed=false")
	api := s.api(t, adm)
	ctx := testwait.Context(t)
	created, err := api.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com"]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.api(t, rdr).WaitPropagation(ctx, "acme", created.Version)
	if err != nil || !p.Done {
		t.Fatalf("wait: done %v, %v; lagging %q", p.Done, err, p.Lagging)
	}
	if len(p.Regions) != 3 {
		t.Fatalf("regions %+v, want three", p.Regions)
	}
	for _, r := range p.Regions {
		if len(r.Nodes) != 1 || r.Nodes[0].ID != "tcs-dev-"+r.Region || r.Nodes[0].Addr != s.ep.Regions[r.Region] || r.ReplicaVersion != 1 {
			t.Errorf("region %s: %+v", r.Region, r)
		}
	}
	// A version not written yet is not done: the answer says who lags.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	p, err = s.api(t, rdr).WaitPropagation(short, "acme", created.Version+1)
	if err == nil || p.Done || len(p.Lagging) != 3 || !strings.Contains(p.Lagging[0], "replica at version 1") {
		t.Errorf("unwritten version: done %v, %v, lagging %q", p.Done, err, p.Lagging)
	}
	if _, err := s.api(t, rdr).Propagation(ctx, "acme", 0, 0); httpclient.Status(err) != 400 {
		t.Errorf("version 0: %v, want 400", err)
	}
}
