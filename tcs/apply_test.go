package tcs_test

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// memTxn is tcs.ApplyTxn over two maps: the apply rules with nothing else
// around them.
type memTxn struct {
	docs  map[string]*tenant.Tenant
	hosts map[string]tcs.HostRecord
}

func newMemTxn() *memTxn {
	return &memTxn{docs: map[string]*tenant.Tenant{}, hosts: map[string]tcs.HostRecord{}}
}

func (m *memTxn) Doc(id string) (*tenant.Tenant, error) { return m.docs[id].Clone(), nil }

func (m *memTxn) PutDoc(t *tenant.Tenant) error {
	m.docs[t.ID] = t.Clone()
	return nil
}

func (m *memTxn) Host(hostname string) (tcs.HostRecord, bool, error) {
	rec, ok := m.hosts[hostname]
	return rec, ok, nil
}

func (m *memTxn) PutHost(hostname string, rec tcs.HostRecord) error {
	m.hosts[hostname] = rec
	return nil
}

// memReplica is a tcs.Replica over a memTxn. Apply works on a copy and
// swaps it in on success, so an event is applied whole or not at all.
type memReplica struct {
	mu    sync.RWMutex
	state *memTxn
}

var _ tcs.Replica = (*memReplica)(nil)

func newMemReplica() *memReplica { return &memReplica{state: newMemTxn()} }

func (r *memReplica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	if ev == nil {
		return tcs.ApplyResult{}, tenant.Errorf(tenant.Invalid, "nil event")
	}
	if err := ctx.Err(); err != nil {
		return tcs.ApplyResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Documents are never changed in place (PutDoc stores a clone), so a
	// shallow copy of the maps is a snapshot.
	next := &memTxn{docs: maps.Clone(r.state.docs), hosts: maps.Clone(r.state.hosts)}
	res, err := tcs.ApplyEvent(next, ev)
	if err != nil {
		return tcs.ApplyResult{}, err
	}
	r.state = next
	return res, nil
}

func (r *memReplica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return tcs.LookupIn(r.state, hostname)
}

func (r *memReplica) GetTenant(ctx context.Context, id string) (*tenant.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if d, _ := r.state.Doc(id); d != nil {
		return d, nil
	}
	return nil, tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
}

func (r *memReplica) Ping(context.Context) error { return nil }
func (r *memReplica) Close() error               { return nil }

// TestApplyRulesConformance runs the replica conformance suite against the
// bare rules: a failure here is a bug in ApplyEvent or LookupIn, not in a
// backend.
func TestApplyRulesConformance(t *testing.T) {
	t.Parallel()
	replicatest.Run(t, func(t *testing.T) tcs.Replica { return newMemReplica() })
}

// TestApplyRulesConverge is the convergence property over the bare rules:
// 500 histories committed to a real source of truth, each delivered in 40
// random orders, 20,000 deliveries in all (-rapid.checks=N: N histories).
// A history costs about as much as 50 deliveries to the in-memory replica,
// so many orders per history is where this test's cases are cheap.
func TestApplyRulesConverge(t *testing.T) {
	t.Parallel()
	replicatest.Convergence(t, func(t *rapid.T) tcs.Replica { return newMemReplica() },
		replicatest.ConvergenceOptions{Checks: 500, Orders: 40})
}

// TestReleasedHostnameKeepsItsRecord checks what only the rules' own state
// shows: a released or unmapped hostname keeps its claim version, so that an
// older claim arriving late cannot take it back.
func TestReleasedHostnameKeepsItsRecord(t *testing.T) {
	t.Parallel()
	tx := newMemTxn()
	for _, ev := range []*tenant.ChangeEvent{
		replicatest.Event("acme", 1, map[string]int64{"a.example.com": 1, "b.example.com": 1}, nil),
		// acme@2 dropped b (its release is late) and acme@3 deletes acme.
		replicatest.Tombstone("acme", 3, map[string]int64{"a.example.com": 2}),
		// Another tenant, whose records must stay as they are.
		replicatest.Event("beta", 1, map[string]int64{"beta.example.com": 1}, nil),
	} {
		if _, err := tcs.ApplyEvent(tx, ev); err != nil {
			t.Fatalf("ApplyEvent(%s@%d): %v", ev.TenantID, ev.Version, err)
		}
	}
	want := map[string]tcs.HostRecord{
		"a.example.com":    {ClaimVersion: 2},
		"b.example.com":    {ClaimVersion: 1},
		"beta.example.com": {TenantID: "beta", ClaimVersion: 1},
	}
	if diff := cmp.Diff(want, tx.hosts); diff != "" {
		t.Fatalf("host records (-want +got):\n%s", diff)
	}

	// acme's late release of b, and a stale claim of a, change nothing.
	for _, ev := range []*tenant.ChangeEvent{
		replicatest.Event("acme", 2, map[string]int64{"a.example.com": 1}, map[string]int64{"b.example.com": 2}),
		replicatest.Event("acme", 1, map[string]int64{"a.example.com": 1, "b.example.com": 1}, nil),
	} {
		res, err := tcs.ApplyEvent(tx, ev)
		if err != nil {
			t.Fatalf("ApplyEvent(%s@%d): %v", ev.TenantID, ev.Version, err)
		}
		if res.Applied || len(res.Hostnames) != 0 {
			t.Errorf("ApplyEvent(%s@%d) = %+v, want a no-op", ev.TenantID, ev.Version, res)
		}
	}
	want["b.example.com"] = tcs.HostRecord{ClaimVersion: 2}
	if diff := cmp.Diff(want, tx.hosts); diff != "" {
		t.Fatalf("host records after late events (-want +got):\n%s", diff)
	}
	if _, err := tcs.LookupIn(tx, "a.example.com"); tenant.ErrorCode(err) != tenant.NotFound {
		t.Fatalf("LookupIn(a.example.com) = %v, want NotFound", err)
	}
}
