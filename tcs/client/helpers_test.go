package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// slowReplica delays its lookups by delay, to make a slow region.
type slowReplica struct {
	tcs.Replica
	delay atomic.Int64 // nanoseconds
}

func (s *slowReplica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Replica.LookupHostname(ctx, hostname)
}

// regionServer is a real lookup server of one region, over a bbolt replica
// and an in-process invalidation hub, that can be stopped and started again
// on the same port.
type regionServer struct {
	name    string
	replica *slowReplica
	hub     *fanout.Hub
	addr    string
	lookups atomic.Int64 // Lookup RPCs received
	batches atomic.Int64 // BatchLookup RPCs received

	mu         sync.Mutex
	stop       func()
	batchHosts [][]string // the hostnames of each BatchLookup received
}

// startRegion starts a region server on a free loopback port; it stops at
// the end of the test.
func startRegion(tb testing.TB, name string) *regionServer {
	tb.Helper()
	rep, err := boltreplica.Open(filepath.Join(tb.TempDir(), name+".db"), boltreplica.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rep.Close() })
	hub := fanout.New(fanout.Options{})
	tb.Cleanup(func() { hub.Close() })
	r := &regionServer{name: name, replica: &slowReplica{Replica: rep}, hub: hub, addr: "127.0.0.1:0"}
	r.start(tb)
	tb.Cleanup(r.down)
	return r
}

// start serves the region (again) on its port.
func (r *regionServer) start(tb testing.TB) {
	tb.Helper()
	var lis net.Listener
	// The port may take a moment to be free again.
	testwait.Until(tb, time.Second, 20*time.Millisecond, "to listen on "+r.addr, func() (bool, string) {
		var err error
		if lis, err = net.Listen("tcp", r.addr); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	r.addr = lis.Addr().String()
	srv := lookup.New(lookup.Config{
		Region:            r.name,
		Replica:           r.replica,
		Feed:              r.hub,
		Cache:             cache.Options{Size: 10_000, Shards: 4, ReadTimeout: 5 * time.Second},
		HeartbeatInterval: 100 * time.Millisecond,
	})
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch info.FullMethod {
		case tcsv1.TenantContextService_Lookup_FullMethodName:
			r.lookups.Add(1)
		case tcsv1.TenantContextService_BatchLookup_FullMethodName:
			r.mu.Lock()
			r.batchHosts = append(r.batchHosts, req.(*tcsv1.BatchLookupRequest).GetHostnames())
			r.mu.Unlock()
			r.batches.Add(1)
		}
		return handler(ctx, req)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- srv.Serve(ctx, lis, lookup.ServeOptions{
			ShutdownTimeout: time.Second,
			ServerOptions:   []grpc.ServerOption{grpc.ChainUnaryInterceptor(count)},
		})
	}()
	r.mu.Lock()
	r.stop = func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				tb.Errorf("%s Serve: %v", r.name, err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("%s did not stop", r.name)
		}
	}
	r.mu.Unlock()
	waitServing(tb, r.name, r.hub, r.addr, insecure.NewCredentials())
}

// waitServing waits until the lookup server at addr has subscribed to hub
// and reports SERVING through gRPC health (clients balance only over nodes
// that do): it sends heartbeats through hub meanwhile, as an applier does,
// since a node is not ready before its feed has delivered a message.
func waitServing(tb testing.TB, name string, hub *fanout.Hub, addr string, creds credentials.TransportCredentials) {
	tb.Helper()
	testwait.For(tb, name+" to subscribe to its hub", func() bool { return hub.Subscribers() == 1 })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	testwait.Until(tb, testwait.DefaultTimeout, 5*time.Millisecond, name+" to report SERVING", func() (bool, string) {
		if err := hub.Broadcast(context.Background(), tcs.Invalidation{CommittedAt: time.Now()}); err != nil {
			return false, fmt.Sprintf("heartbeat: %v", err)
		}
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: tcsv1.TenantContextService_ServiceDesc.ServiceName})
		if err != nil {
			return false, err.Error()
		}
		return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, resp.GetStatus().String()
	})
}

// batchRequests returns the hostnames of each BatchLookup received so far.
func (r *regionServer) batchRequests() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batchHosts)
}

// down stops the server (if it runs).
func (r *regionServer) down() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// apply applies a change to the region's replica and broadcasts its
// invalidation, as the streamer's applier does.
func (r *regionServer) apply(tb testing.TB, ev *tenant.ChangeEvent) {
	tb.Helper()
	res, err := r.replica.Apply(context.Background(), ev)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.hub.Broadcast(context.Background(), tcs.Invalidation{
		TenantID: ev.TenantID, Version: ev.Version, Hostnames: res.Hostnames,
	}); err != nil && !errors.Is(err, fanout.ErrClosed) {
		tb.Fatal(err)
	}
}

// put makes tenant id at version own hostnames in every region given.
func put(tb testing.TB, id string, version int64, hostnames []string, regions ...*regionServer) {
	tb.Helper()
	claims := map[string]int64{}
	for _, h := range hostnames {
		claims[h] = version
	}
	for _, r := range regions {
		r.apply(tb, replicatest.Event(id, version, claims, nil))
	}
}

func addrs(regions ...*regionServer) []string {
	var a []string
	for _, r := range regions {
		a = append(a, r.addr)
	}
	return a
}

// counter counts calls of a hook.
type counter struct{ n atomic.Int64 }

func (c *counter) inc()        { c.n.Add(1) }
func (c *counter) incS(string) { c.n.Add(1) }
func (c *counter) get() int64  { return c.n.Load() }

// clock is a settable clock for the cache.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }
