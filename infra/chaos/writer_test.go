//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// fakeCatalog is the catalog's tenant routes in memory; every fifth write
// is committed but answered 503, as a store that timed out after committing.
type fakeCatalog struct {
	mu      sync.Mutex
	tenants map[string]*tenant.Tenant
	writes  int
}

func (f *fakeCatalog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := strings.TrimPrefix(r.URL.Path, "/v1/tenants/")
	t := f.tenants[id]
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		if t == nil || t.Deleted() {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("If-Match") != etag(t.Version) {
			http.Error(w, "precondition failed", http.StatusPreconditionFailed)
			return
		}
	}
	var body struct {
		ID        string            `json:"id"`
		Hostnames []string          `json:"hostnames"`
		Labels    map[string]string `json:"labels"`
	}
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	switch r.Method {
	case http.MethodGet:
		if t == nil || t.Deleted() {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(t)
		return
	case http.MethodPost:
		if f.tenants[body.ID] != nil {
			http.Error(w, "exists", http.StatusConflict)
			return
		}
		t = &tenant.Tenant{ID: body.ID, Hostnames: body.Hostnames, Labels: body.Labels, Status: tenant.StatusActive}
		f.tenants[body.ID] = t
	case http.MethodPatch:
		if body.Hostnames != nil {
			t.Hostnames = body.Hostnames
		}
		if body.Labels != nil {
			t.Labels = body.Labels
		}
	case http.MethodDelete:
		t.Status = tenant.StatusDeleted
	}
	t.Version++
	t.UpdatedAt = time.Now()
	f.writes++
	if f.writes%5 == 0 {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "outcome unknown", http.StatusServiceUnavailable)
		return
	}
	switch r.Method {
	case http.MethodPost:
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
		return
	}
	_ = json.NewEncoder(w).Encode(t)
}

// TestWriterBookkeeping: against a catalog that commits writes it answers
// 503, the writer's acknowledged writes are all in the catalog, and the
// catalog holds a later version than the last acknowledged one only for
// tenants the writer reports as UnknownAfterAck.
func TestWriterBookkeeping(t *testing.T) {
	t.Parallel()
	fake := &fakeCatalog{tenants: map[string]*tenant.Tenant{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	w := NewWriter(srv.URL, 2, 400, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	w.Run(ctx)

	acks, attempts := w.Acks(), w.Attempts()
	if len(acks) < 50 {
		t.Fatalf("%d writes acknowledged in 1.5s at 400/s, want at least 50", len(acks))
	}
	statuses := map[string]int{}
	ops := map[string]int{}
	for _, a := range attempts {
		statuses[a.Status]++
		ops[a.Op]++
	}
	for _, op := range []string{"create", "update", "add-hostname", "move-release", "move-claim", "delete"} {
		if ops[op] == 0 {
			t.Errorf("no %s request among %v", op, ops)
		}
	}
	if statuses["503"] == 0 {
		t.Errorf("no 503 among %v", statuses)
	}
	last := map[string]Ack{}
	for _, a := range acks {
		if a.Version > last[a.ID].Version {
			last[a.ID] = a
		}
	}
	unknown := w.UnknownAfterAck()
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for id, a := range last {
		c := fake.tenants[id]
		switch {
		case c == nil || c.Version < a.Version:
			t.Errorf("%s: acknowledged v%d, catalog has %v", id, a.Version, c)
		case c.Version > a.Version && !unknown[id]:
			t.Errorf("%s: catalog v%d after acknowledged v%d, but the writer does not report an unknown outcome", id, c.Version, a.Version)
		case c.Version == a.Version && (a.Deleted != c.Deleted() ||
			(!a.Deleted && (!slices.Equal(a.Hostnames, c.Hostnames) || !maps.Equal(a.Labels, c.Labels)))):
			t.Errorf("%s v%d: acknowledged %+v, catalog %+v", id, a.Version, a, c)
		}
	}
	// Readers are given the live tenants' hostnames.
	hosts := w.Hosts()
	for id, c := range fake.tenants {
		if !c.Deleted() && !unknown[id] && last[id].Version == c.Version && !slices.Contains(hosts, primaryHost(id)) {
			t.Errorf("Hosts lacks live tenant %s's %s", id, primaryHost(id))
		}
	}
}
