// Package clienttest is an in-memory TCS region for the unit tests of code
// that uses tcs/client: load tenants into a Server, and the *client.Client
// it makes looks them up over the real gRPC API, on loopback, with its
// cache, its Watch stream and its invalidations working as in production.
//
// The Server is the real lookup server (tcs/lookup) over an in-memory
// replica, so what a Client sees (answers, NOT_FOUND, versions, ages,
// invalidations by version, read-your-writes) is what it would see from a
// region. Put and Delete change the replica as a catalog write followed by
// its apply would, and broadcast the invalidation; PauseInvalidations holds
// them back (to test what a caller does with an answer that is out of date)
// and Invalidate sends a tenant's again.
package clienttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// Region is the region name the Server answers as (Meta.Region).
const Region = "clienttest"

// heartbeat is how often the Server's feed and Watch streams carry a
// heartbeat: often enough that a Client's Watch stream never counts as
// silent, rarely enough to cost nothing.
const heartbeat = time.Second

// startTimeout bounds NewServer's wait for the server to serve.
const startTimeout = 10 * time.Second

// Server is one in-memory region serving the TCS lookup API on a loopback
// port. It is safe for concurrent use. Close it when done.
type Server struct {
	addr    string
	hub     *fanout.Hub
	rep     *memReplica
	lookups atomic.Int64
	paused  atomic.Bool

	cancel context.CancelFunc
	done   chan struct{} // closed when the gRPC server and the heartbeats stopped
	err    error         // Serve's error, set before done is closed
}

// NewServer starts a Server on a free 127.0.0.1 port holding tenants (put
// as Put does), and returns once it serves.
func NewServer(tenants ...*tenant.Tenant) (*Server, error) {
	s := &Server{rep: newMemReplica(), hub: fanout.New(fanout.Options{}), done: make(chan struct{})}
	for _, t := range tenants {
		if _, err := s.put(t); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("clienttest: listen: %w", err)
	}
	s.addr = lis.Addr().String()
	srv := lookup.New(lookup.Config{
		Region:            Region,
		Replica:           s.rep,
		Feed:              s.hub,
		Cache:             cache.Options{Size: 10_000},
		HeartbeatInterval: heartbeat,
		// Callers of a test are many and fast: no rate limits.
		LookupRate:        -1,
		MissRate:          -1,
		MissRatePerCaller: -1,
	})
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch info.FullMethod {
		case tcsv1.TenantContextService_Lookup_FullMethodName, tcsv1.TenantContextService_BatchLookup_FullMethodName:
			s.lookups.Add(1)
		}
		return handler(ctx, req)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() {
		s.err = srv.Serve(ctx, lis, lookup.ServeOptions{
			ShutdownTimeout: time.Second,
			ServerOptions:   []grpc.ServerOption{grpc.ChainUnaryInterceptor(count)},
		})
	})
	// The lookup server serves once its feed has delivered, and counts
	// the feed down when it stays silent: beat, as an applier does.
	wg.Go(func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			s.beat()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	go func() {
		wg.Wait()
		close(s.done)
	}()
	if err := s.waitServing(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// beat broadcasts a feed heartbeat.
func (s *Server) beat() {
	_ = s.hub.Broadcast(context.Background(), tcs.Invalidation{CommittedAt: time.Now()})
}

// waitServing waits until the server reports SERVING through gRPC health,
// as the Client's balancer requires.
func (s *Server) waitServing() error {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("clienttest: %w", err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: tcsv1.TenantContextService_ServiceDesc.ServiceName})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		s.beat()
		select {
		case <-ctx.Done():
			return fmt.Errorf("clienttest: server at %s not serving after %v (health: %v %v)", s.addr, startTimeout, resp.GetStatus(), err)
		case <-tick.C:
		}
	}
}

// Addr returns the server's address (127.0.0.1:port), for
// client.WithRegions.
func (s *Server) Addr() string { return s.addr }

// NewClient returns a Client of this Server (client.WithRegions(Addr())
// first, then opts), once its Watch stream is up (WaitReady), so that
// every change made after it returns reaches it. Close it when done.
func (s *Server) NewClient(ctx context.Context, opts ...client.Option) (*client.Client, error) {
	c, err := client.New(ctx, append([]client.Option{client.WithRegions(s.addr)}, opts...)...)
	if err != nil {
		return nil, err
	}
	ready, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := c.WaitReady(ready); err != nil {
		c.Close()
		return nil, fmt.Errorf("clienttest: %w", err)
	}
	return c, nil
}

// Close stops the server. Its Clients' lookups fail over to their other
// regions, if any, or serve stale answers, as when a region goes down.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	s.hub.Close()
	return s.err
}

// Put stores t (a copy of it) as the catalog would: normalised and checked
// (tenant.Prepare: a bad document is an *tenant.Error naming its fields),
// at the next version of its tenant (t.Version is ignored), owning its
// hostnames; a hostname another live tenant owns is an error (code
// HostnameTaken). It broadcasts the invalidation (unless paused) and
// returns the stored document.
//
// As in production, Clients see the change once its invalidation has
// reached them, a moment after Put returns: a test that must see it at
// once looks up with client.LookupAtLeast(ctx, hostname, stored.Version).
func (s *Server) Put(t *tenant.Tenant) (*tenant.Tenant, error) {
	inv, err := s.put(t)
	if err != nil {
		return nil, err
	}
	s.send(inv)
	return s.rep.get(inv.TenantID), nil
}

func (s *Server) put(t *tenant.Tenant) (tcs.Invalidation, error) {
	if t == nil {
		return tcs.Invalidation{}, errors.New("clienttest: Put: nil tenant")
	}
	t = t.Clone()
	if err := tenant.Prepare(t); err != nil {
		return tcs.Invalidation{}, fmt.Errorf("clienttest: Put %s: %w", t.ID, err)
	}
	if t.Deleted() {
		return tcs.Invalidation{}, fmt.Errorf("clienttest: Put %s: status DELETED: use Delete", t.ID)
	}
	return s.rep.put(t)
}

// Delete deletes tenant id (its hostnames are then owned by no one) and
// broadcasts the invalidation (unless paused). A tenant not there is an
// error with code NotFound.
func (s *Server) Delete(id string) error {
	inv, err := s.rep.delete(id)
	if err != nil {
		return err
	}
	s.send(inv)
	return nil
}

// PauseInvalidations holds back (true) or lets through again (false) the
// invalidations of Put and Delete: while paused, Clients keep serving what
// they cached until its TTL ends, as when a region's feed loses messages.
// Resuming does not send what was held back: Invalidate does.
func (s *Server) PauseInvalidations(pause bool) { s.paused.Store(pause) }

// Invalidate broadcasts the invalidation of tenant id at its current
// version (or deletion), whether paused or not: Clients drop every cached
// answer of its hostnames older than that.
func (s *Server) Invalidate(id string) error {
	inv, ok := s.rep.last(id)
	if !ok {
		return tenant.Errorf(tenant.NotFound, "clienttest: tenant %s was never put", id)
	}
	return s.hub.Broadcast(context.Background(), inv)
}

// Lookups returns how many Lookup and BatchLookup calls the server has
// answered: what the Clients' caches did not.
func (s *Server) Lookups() int64 { return s.lookups.Load() }

func (s *Server) send(inv tcs.Invalidation) {
	if !s.paused.Load() {
		_ = s.hub.Broadcast(context.Background(), inv)
	}
}

// memReplica is a replica in memory, changed only by the Server.
type memReplica struct {
	mu    sync.RWMutex
	docs  map[string]*tenant.Tenant // live and deleted, by id
	owner map[string]string         // hostname → id of the live tenant that owns it
	invs  map[string]tcs.Invalidation
}

var _ tcs.Replica = (*memReplica)(nil)

func newMemReplica() *memReplica {
	return &memReplica{docs: map[string]*tenant.Tenant{}, owner: map[string]string{}, invs: map[string]tcs.Invalidation{}}
}

func (r *memReplica) put(t *tenant.Tenant) (tcs.Invalidation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range t.Hostnames {
		if id, ok := r.owner[h]; ok && id != t.ID {
			return tcs.Invalidation{}, tenant.Errorf(tenant.HostnameTaken, "clienttest: Put %s: hostname %s is owned by tenant %s", t.ID, h, id)
		}
	}
	hosts := slices.Clone(t.Hostnames)
	if old := r.docs[t.ID]; old != nil {
		t.Version = old.Version + 1
		for _, h := range old.Hostnames {
			if !slices.Contains(t.Hostnames, h) {
				delete(r.owner, h)
				hosts = append(hosts, h)
			}
		}
	} else {
		t.Version = 1
	}
	t.UpdatedAt, t.UpdatedBy = time.Now().UTC(), "clienttest"
	for _, h := range t.Hostnames {
		r.owner[h] = t.ID
	}
	r.docs[t.ID] = t
	inv := tcs.Invalidation{TenantID: t.ID, Version: t.Version, Hostnames: hosts, CommittedAt: t.UpdatedAt}
	r.invs[t.ID] = inv
	return inv, nil
}

func (r *memReplica) delete(id string) (tcs.Invalidation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.docs[id]
	if old == nil || old.Deleted() {
		return tcs.Invalidation{}, tenant.Errorf(tenant.NotFound, "clienttest: Delete: no tenant %s", id)
	}
	for _, h := range old.Hostnames {
		delete(r.owner, h)
	}
	t := old.Clone()
	t.Status, t.Version, t.UpdatedAt = tenant.StatusDeleted, old.Version+1, time.Now().UTC()
	r.docs[id] = t
	inv := tcs.Invalidation{TenantID: id, Version: t.Version, Hostnames: slices.Clone(old.Hostnames), CommittedAt: t.UpdatedAt}
	r.invs[id] = inv
	return inv, nil
}

// get returns tenant id as stored (callers must not change it).
func (r *memReplica) get(id string) *tenant.Tenant {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.docs[id]
}

// last returns the invalidation of tenant id's last change.
func (r *memReplica) last(id string) (tcs.Invalidation, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	inv, ok := r.invs[id]
	return inv, ok
}

// Apply is not how the Server changes its replica (Put and Delete are).
func (r *memReplica) Apply(context.Context, *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	return tcs.ApplyResult{}, errors.New("clienttest: the replica is changed with Server.Put and Delete")
}

func (r *memReplica) LookupHostname(_ context.Context, hostname string) (*tenant.Tenant, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if id, ok := r.owner[hostname]; ok {
		return r.docs[id], nil
	}
	return nil, tenant.Errorf(tenant.NotFound, "no tenant owns hostname %s", hostname)
}

func (r *memReplica) GetTenant(_ context.Context, id string) (*tenant.Tenant, error) {
	if t := r.get(id); t != nil {
		return t, nil
	}
	return nil, tenant.Errorf(tenant.NotFound, "no tenant %s", id)
}

func (r *memReplica) Ping(context.Context) error { return nil }

func (r *memReplica) Close() error { return nil }
