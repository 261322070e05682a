package lookup_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// fakeReplica is a tcs.Replica over a map, whose reads can be made to fail,
// or to block until released (or their context ends).
type fakeReplica struct {
	mu     sync.Mutex
	byHost map[string]*tenant.Tenant
	docs   map[string]*tenant.Tenant // by tenant id, for GetTenant
	err    error
	gate   chan struct{} // when set, reads wait for it to close
	calls  atomic.Int64
	// docCalls counts GetTenant calls.
	docCalls atomic.Int64
}

var _ tcs.Replica = (*fakeReplica)(nil)

func newFakeReplica(ts ...*tenant.Tenant) *fakeReplica {
	f := &fakeReplica{byHost: map[string]*tenant.Tenant{}, docs: map[string]*tenant.Tenant{}}
	for _, t := range ts {
		f.set(t)
	}
	return f
}

func (f *fakeReplica) set(t *tenant.Tenant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range t.Hostnames {
		f.byHost[h] = t.Clone()
	}
	f.docs[t.ID] = t.Clone()
}

// setDoc sets the document GetTenant returns for t's tenant, and no
// hostname.
func (f *fakeReplica) setDoc(t *tenant.Tenant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[t.ID] = t.Clone()
}

func (f *fakeReplica) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// block makes reads wait until the returned func is called.
func (f *fakeReplica) block() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

func (f *fakeReplica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate, err, t := f.gate, f.err, f.byHost[hostname]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", hostname)
	}
	return t.Clone(), nil
}

func (f *fakeReplica) Apply(context.Context, *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	return tcs.ApplyResult{}, errors.New("fakeReplica: Apply not supported")
}

func (f *fakeReplica) GetTenant(_ context.Context, id string) (*tenant.Tenant, error) {
	f.docCalls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	t, ok := f.docs[id]
	if !ok {
		return nil, tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
	}
	return t.Clone(), nil
}

func (f *fakeReplica) Ping(context.Context) error { return nil }
func (f *fakeReplica) Close() error               { return nil }

// clock is a settable clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// makeTenant returns a realistic tenant (about 220 bytes on the wire).
func makeTenant(id string, version int64, hostnames ...string) *tenant.Tenant {
	return replicatest.Doc(id, version, hostnames...)
}

// env is a lookup server serving on a loopback listener, fed by a Hub.
type env struct {
	srv     *lookup.Server
	replica *fakeReplica
	hub     *fanout.Hub
	clock   *clock
	addr    string
	client  tcsv1.TenantContextServiceClient
	conn    *grpc.ClientConn
	stop    func() error // stops the server and returns what Serve returned
}

// start serves a Server made from cfg (Replica, Feed and Now filled in when
// unset) on 127.0.0.1:0 and connects a client to it.
func start(tb testing.TB, cfg lookup.Config, opts lookup.ServeOptions, dial ...grpc.DialOption) *env {
	tb.Helper()
	e := &env{clock: newClock(), hub: fanout.New(fanout.Options{})}
	if cfg.Replica == nil {
		cfg.Replica = newFakeReplica()
	}
	e.replica, _ = cfg.Replica.(*fakeReplica)
	if cfg.Feed == nil {
		cfg.Feed = e.hub
	}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	if cfg.Region == "" {
		cfg.Region = "eu-west-1"
	}
	if cfg.FeedTimeout == 0 {
		// These tests move the clock by minutes with no heartbeats; the
		// feed liveness tests (feed_test.go) set their own timeout.
		cfg.FeedTimeout = -1
	}
	e.srv = lookup.New(cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, lis, opts) }()
	var once sync.Once
	var serveErr error
	e.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-served:
			case <-time.After(30 * time.Second):
				serveErr = errors.New("Serve did not return within 30s of its context ending")
			}
		})
		return serveErr
	}
	tb.Cleanup(func() {
		if err := e.stop(); err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	e.conn, err = grpc.NewClient(e.addr, dial...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.conn.Close() })
	e.client = tcsv1.NewTenantContextServiceClient(e.conn)
	// Wait until Run has subscribed to the hub, so that broadcasts from
	// here on reach the server.
	if cfg.Feed == e.hub {
		testwait.For(tb, "the server to subscribe to the feed", func() bool { return e.hub.Subscribers() == 1 })
	}
	return e
}
