// Package worktest runs tcs/work nodes for tests: a WorkService on a
// loopback port over any lease backend, with a replica of tenants the test
// sets and a feed it delivers to by hand.
package worktest

import (
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/work"
)

// Replica is a replica of tenant documents only (no hostnames), scannable.
type Replica struct {
	tcs.Replica
	mu   sync.Mutex
	docs map[string]*tenant.Tenant
}

// Set stores tenant id with status st.
func (r *Replica) Set(id string, st tenant.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.docs[id] = &tenant.Tenant{ID: id, Status: st}
}

// GetTenant implements tcs.Replica.
func (r *Replica) GetTenant(_ context.Context, id string) (*tenant.Tenant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.docs[id]; ok {
		return t, nil
	}
	return nil, &tenant.Error{Code: tenant.NotFound, Message: "no tenant " + id}
}

// ScanDocs implements tcs.Scanner: everything in one page.
func (r *Replica) ScanDocs(context.Context, string, int) ([]*tenant.Tenant, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Values(r.docs)), "", nil
}

// ScanHosts implements tcs.Scanner: no hostnames.
func (r *Replica) ScanHosts(context.Context, string, int) ([]tcs.HostEntry, string, error) {
	return nil, "", nil
}

// Feed is a tcs.Feed the test delivers to with Deliver.
type Feed struct{ ch chan tcs.Invalidation }

// Deliver delivers inv to the subscriber (waiting for it).
func (f *Feed) Deliver(inv tcs.Invalidation) { f.ch <- inv }

// Subscribe implements tcs.Feed.
func (f *Feed) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case inv := <-f.ch:
			deliver(inv)
		}
	}
}

// Node is a running work node.
type Node struct {
	Addr    string
	Replica *Replica
	Feed    *Feed
	Work    tcsv1.WorkServiceClient
	// Metrics is the registry of the node's tcs_work_* metrics.
	Metrics *prometheus.Registry
}

// Mem returns work.Leases over a memlease table.
func Mem(table *memlease.Table) work.Leases {
	return work.StoresOf(func(pool, owner string) lease.Store { return table.Store(work.Group(pool), owner, nil) })
}

// Start serves a WorkService over leases with lease duration d on a
// loopback port, tenants ACTIVE in its replica, until the test ends.
func Start(t testing.TB, leases work.Leases, d time.Duration, tenants ...string) *Node {
	t.Helper()
	return StartWith(t, leases, d, nil, tenants...)
}

// StartWith is Start with the gRPC server's options (the authenticator's
// interceptors, as a tcs node serves them).
func StartWith(t testing.TB, leases work.Leases, d time.Duration, opts []grpc.ServerOption, tenants ...string) *Node {
	t.Helper()
	rep := &Replica{docs: map[string]*tenant.Tenant{}}
	for _, id := range tenants {
		rep.Set(id, tenant.StatusActive)
	}
	reg := prometheus.NewRegistry()
	n, err := work.NewNode(work.NodeConfig{Replica: rep, LeaseDuration: d, Leases: leases, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	f := &Feed{ch: make(chan tcs.Invalidation)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.Run(ctx) })
	wg.Go(func() { _ = n.Feed(f).Subscribe(ctx, func(tcs.Invalidation) {}, func() {}) })
	<-n.Index().Loaded()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	n.Register(gs)
	wg.Go(func() { _ = gs.Serve(ln) })
	t.Cleanup(func() { gs.Stop(); cancel(); wg.Wait() })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Node{Addr: ln.Addr().String(), Replica: rep, Feed: f, Work: tcsv1.NewWorkServiceClient(conn), Metrics: reg}
}
