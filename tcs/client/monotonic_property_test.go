package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
)

// world is the truth and what each fake region has applied of it, for
// TestMonotonicProperty. Its regions answer from it.
type world struct {
	mu      sync.Mutex
	history map[string][]*tenant.Tenant // tenant id → its documents, version v at v-1
	seq     map[*tenant.Tenant]int      // the order documents were written in
	regions []*fakeRegion
}

// Region modes.
const (
	regionOK = iota
	regionFailing
	regionSlow
)

// slowAnswer is how long a slow region takes: past the hedge delay of the
// property's clients, well within their lookup timeout.
const slowAnswer = 20 * time.Millisecond

// fakeRegion is a lookup server answering from what it has applied of its
// world: for each hostname, of the tenants whose applied document lists it,
// the one written last. It can fail or be slow, and sends what it is told
// to on its Watch streams.
type fakeRegion struct {
	tcsv1.UnimplementedTenantContextServiceServer
	w       *world
	name    string
	addr    string
	applied map[string]int // tenant id → version applied; under w.mu
	mode    int            // under w.mu
	subs    map[chan *tcsv1.WatchResponse]bool
}

func startFakeRegion(tb testing.TB, w *world, name string) *fakeRegion {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &fakeRegion{w: w, name: name, addr: lis.Addr().String(), applied: map[string]int{},
		subs: map[chan *tcsv1.WatchResponse]bool{}}
	srv := grpc.NewServer()
	tcsv1.RegisterTenantContextServiceServer(srv, r)
	go srv.Serve(lis)
	tb.Cleanup(srv.Stop)
	w.regions = append(w.regions, r)
	return r
}

// answer is the region's answer for h: the document, or nil. w.mu must be
// held.
func (r *fakeRegion) answer(h string) *tenant.Tenant {
	var best *tenant.Tenant
	for id, v := range r.applied {
		if v == 0 {
			continue
		}
		d := r.w.history[id][v-1]
		if slices.Contains(d.Hostnames, h) && (best == nil || r.w.seq[d] > r.w.seq[best]) {
			best = d
		}
	}
	return best
}

// serve waits as the region's mode says and reports whether it fails.
func (r *fakeRegion) serve(ctx context.Context) error {
	r.w.mu.Lock()
	mode := r.mode
	r.w.mu.Unlock()
	switch mode {
	case regionFailing:
		return status.Error(codes.Unavailable, "failing")
	case regionSlow:
		select {
		case <-time.After(slowAnswer):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *fakeRegion) Lookup(ctx context.Context, req *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	if err := r.serve(ctx); err != nil {
		return nil, err
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	d := r.answer(req.GetHostname())
	if d == nil {
		return nil, status.Error(codes.NotFound, "not found")
	}
	return &tcsv1.LookupResponse{Tenant: tcsv1.TenantToProto(d), Region: r.name, Age: durationpb.New(0)}, nil
}

func (r *fakeRegion) BatchLookup(ctx context.Context, req *tcsv1.BatchLookupRequest) (*tcsv1.BatchLookupResponse, error) {
	if err := r.serve(ctx); err != nil {
		return nil, err
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	resp := &tcsv1.BatchLookupResponse{Region: r.name}
	for _, h := range req.GetHostnames() {
		res := &tcsv1.BatchLookupResult{Hostname: h, Code: int32(codes.NotFound), Message: "not found"}
		if d := r.answer(h); d != nil {
			res = &tcsv1.BatchLookupResult{Hostname: h, Tenant: tcsv1.TenantToProto(d), Age: durationpb.New(0)}
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

func (r *fakeRegion) Watch(_ *tcsv1.WatchRequest, stream grpc.ServerStreamingServer[tcsv1.WatchResponse]) error {
	ch := make(chan *tcsv1.WatchResponse, 1000)
	r.w.mu.Lock()
	r.subs[ch] = true
	r.w.mu.Unlock()
	defer func() {
		r.w.mu.Lock()
		delete(r.subs, ch)
		r.w.mu.Unlock()
	}()
	if err := stream.Send(&tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Resync{Resync: &tcsv1.Resync{}}}); err != nil {
		return err
	}
	for {
		select {
		case msg := <-ch:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// broadcast sends msg on every Watch stream of the region. w.mu must be
// held.
func (r *fakeRegion) broadcast(msg *tcsv1.WatchResponse) {
	for ch := range r.subs {
		ch <- msg
	}
}

// apply makes the region hold tenant id at version v (if newer than what
// it holds), and broadcasts the invalidation unless lost.
func (w *world) apply(r *fakeRegion, id string, v int, lost bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := r.applied[id]
	if v <= old {
		return
	}
	r.applied[id] = v
	if lost {
		return
	}
	hosts := slices.Clone(w.history[id][v-1].Hostnames)
	if old > 0 {
		hosts = append(hosts, w.history[id][old-1].Hostnames...)
	}
	r.broadcast(&tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Invalidation{Invalidation: &tcsv1.Invalidation{
		TenantId: id, Version: int64(v), Hostnames: hosts,
	}}})
}

// TestMonotonicProperty: over random histories of three regions that
// apply writes at their own pace (some invalidations lost), fail, slow
// down (so lookups hedge and fail over), resync, with a small cache that
// evicts and a clock that expires entries, the versions of a tenant a
// client returns through Lookup and BatchLookup never go down. After every
// region has caught up, lookups give the truth again (the guarantee does
// not hold on to old answers).
func TestMonotonicProperty(t *testing.T) {
	t.Parallel()
	w := &world{}
	for _, name := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		startFakeRegion(t, w, name)
	}
	var addrs []string
	for _, r := range w.regions {
		addrs = append(addrs, r.addr)
	}
	tenants := []string{"t0", "t1"}
	hostnames := []string{"a.example.com", "b.example.com", "c.example.com"}
	const ttl = 10 * time.Second

	rapid.Check(t, func(rt *rapid.T) {
		w.mu.Lock()
		w.history = map[string][]*tenant.Tenant{}
		w.seq = map[*tenant.Tenant]int{}
		for _, r := range w.regions {
			r.applied, r.mode = map[string]int{}, regionOK
		}
		w.mu.Unlock()

		clk := newClock()
		var behind, remembered counter
		c, err := client.New(context.Background(), client.WithRegions(addrs...), client.WithClock(clk.Now),
			client.WithTTL(ttl), client.WithDisconnectedTTL(ttl),
			client.WithNegativeTTL(rapid.SampledFrom([]time.Duration{0, ttl}).Draw(rt, "negativeTTL")),
			client.WithMaxStale(rapid.SampledFrom([]time.Duration{0, time.Minute}).Draw(rt, "maxStale")),
			client.WithCacheSize(rapid.IntRange(0, 4).Draw(rt, "cacheSize")),
			client.WithHedgeDelay(rapid.SampledFrom([]time.Duration{0, 5 * time.Millisecond}).Draw(rt, "hedgeDelay")),
			client.WithLookupTimeout(2*time.Second), client.WithCircuitBreaker(1<<30, time.Second),
			client.WithMonotonicReads(len(tenants)),
			client.WithMetrics(client.Hooks{Behind: behind.incS, Remembered: remembered.inc}))
		if err != nil {
			rt.Fatal(err)
		}
		defer c.Close()
		testwait.For(t, "the watch stream", c.Watching)
		ctx := context.Background()

		newest := map[string]int64{} // tenant id → highest version returned
		// check checks the answers of one call: none older than a version
		// of its tenant returned before, one version of each tenant, and a
		// remembered one is the newest returned.
		type answer struct {
			h    string
			tn   *tenant.Tenant
			meta client.Meta
			err  error
		}
		check := func(answers ...answer) {
			versions := map[string]int64{}
			read := map[string]int64{} // tenant id → newest version read from a region by the call
			for _, a := range answers {
				switch {
				case errors.Is(a.err, client.ErrNotFound), errors.Is(a.err, client.ErrUnavailable):
					continue
				case a.err != nil:
					rt.Fatalf("lookup %s: %v", a.h, a.err)
				}
				id, v := a.tn.ID, a.tn.Version
				if v < newest[id] {
					rt.Fatalf("lookup %s: tenant %s at version %d (%+v), after version %d was returned", a.h, id, v, a.meta, newest[id])
				}
				if seen, ok := versions[id]; ok && seen != v {
					rt.Fatalf("lookup %s: tenant %s at version %d and %d in one call", a.h, id, seen, v)
				}
				versions[id] = v
				if !a.meta.Remembered {
					read[id] = max(read[id], v)
				}
				w.mu.Lock()
				latest := int64(len(w.history[id]))
				w.mu.Unlock()
				if v > latest {
					rt.Fatalf("lookup %s: version %d of %s, never written", a.h, v, id)
				}
			}
			for _, a := range answers {
				if a.err == nil && a.meta.Remembered {
					if id := a.tn.ID; a.tn.Version != max(newest[id], read[id]) {
						rt.Fatalf("lookup %s: remembered version %d of %s, but the newest returned is %d", a.h, a.tn.Version, id, max(newest[id], read[id]))
					}
				}
			}
			for id, v := range versions {
				newest[id] = v
			}
		}
		region := func(rt *rapid.T) *fakeRegion {
			return rapid.SampledFrom(w.regions).Draw(rt, "region")
		}

		rt.Repeat(map[string]func(*rapid.T){
			"write": func(rt *rapid.T) {
				id := rapid.SampledFrom(tenants).Draw(rt, "tenant")
				hosts := rapid.SliceOfNDistinct(rapid.SampledFrom(hostnames), 1, 2, rapid.ID[string]).Draw(rt, "hostnames")
				slices.Sort(hosts)
				w.mu.Lock()
				d := &tenant.Tenant{ID: id, Version: int64(len(w.history[id]) + 1), Hostnames: hosts,
					Status: tenant.StatusActive, UpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
				w.history[id] = append(w.history[id], d)
				w.seq[d] = len(w.seq) + 1
				w.mu.Unlock()
				for _, r := range w.regions {
					if rapid.Bool().Draw(rt, "appliedAt "+r.name) {
						w.apply(r, id, int(d.Version), rapid.Bool().Draw(rt, "lost"))
					}
				}
			},
			"catch up": func(rt *rapid.T) {
				r := region(rt)
				id := rapid.SampledFrom(tenants).Draw(rt, "tenant")
				w.mu.Lock()
				n := len(w.history[id])
				w.mu.Unlock()
				if n == 0 {
					rt.Skip("no writes")
				}
				w.apply(r, id, rapid.IntRange(1, n).Draw(rt, "version"), rapid.Bool().Draw(rt, "lost"))
			},
			"mode": func(rt *rapid.T) {
				r := region(rt)
				m := rapid.IntRange(regionOK, regionSlow).Draw(rt, "mode")
				w.mu.Lock()
				r.mode = m
				w.mu.Unlock()
			},
			"resync": func(rt *rapid.T) {
				r := region(rt)
				w.mu.Lock()
				r.broadcast(&tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Resync{Resync: &tcsv1.Resync{}}})
				w.mu.Unlock()
			},
			"lookup": func(rt *rapid.T) {
				if rapid.Bool().Draw(rt, "expire") {
					clk.Advance(ttl)
				}
				h := rapid.SampledFrom(hostnames).Draw(rt, "hostname")
				tn, meta, err := c.LookupMeta(ctx, h)
				check(answer{h, tn, meta, err})
			},
			"batch": func(rt *rapid.T) {
				if rapid.Bool().Draw(rt, "expire") {
					clk.Advance(ttl)
				}
				hs := rapid.SliceOfN(rapid.SampledFrom(hostnames), 1, 4).Draw(rt, "hostnames")
				res, err := c.BatchLookup(ctx, hs)
				if err != nil {
					rt.Fatal(err)
				}
				var answers []answer
				for _, r := range res {
					answers = append(answers, answer{r.Hostname, r.Tenant, r.Meta, r.Err})
				}
				check(answers...)
			},
			"heal": func(rt *rapid.T) {
				if rapid.IntRange(0, 4).Draw(rt, "heal") != 0 {
					rt.Skip("heal rarely")
				}
				w.mu.Lock()
				latest := map[string]int{}
				for id, docs := range w.history {
					latest[id] = len(docs)
				}
				for _, r := range w.regions {
					r.mode = regionOK
				}
				w.mu.Unlock()
				for _, r := range w.regions {
					for id, v := range latest {
						w.apply(r, id, v, false)
					}
				}
				clk.Advance(2 * ttl)
				for _, h := range hostnames {
					w.mu.Lock()
					want := w.regions[0].answer(h)
					w.mu.Unlock()
					tn, meta, err := c.LookupMeta(ctx, h)
					check(answer{h, tn, meta, err})
					if want == nil {
						if !errors.Is(err, client.ErrNotFound) {
							rt.Fatalf("healed: %s: %+v %+v %v; want not found", h, tn, meta, err)
						}
					} else if err != nil || tn.ID != want.ID || tn.Version != want.Version || meta.Remembered || meta.Stale {
						rt.Fatalf("healed: %s: %+v %+v %v; want %s at version %d", h, tn, meta, err, want.ID, want.Version)
					}
				}
			},
		})
	})
}

// TestMonotonicConcurrent: callers of one client that look up and batch
// the hostnames of a tenant while its version rises, in regions that apply
// it at their own pace, fail and slow down, never get an older version
// than one any of them had been given before their call began.
func TestMonotonicConcurrent(t *testing.T) {
	t.Parallel()
	w := &world{history: map[string][]*tenant.Tenant{}, seq: map[*tenant.Tenant]int{}}
	for _, name := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		startFakeRegion(t, w, name)
	}
	var addrs []string
	for _, r := range w.regions {
		addrs = append(addrs, r.addr)
	}
	hostnames := []string{"a.example.com", "b.example.com", "c.example.com"}
	write := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		d := &tenant.Tenant{ID: "t", Version: int64(len(w.history["t"]) + 1), Hostnames: hostnames,
			Status: tenant.StatusActive, UpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		w.history["t"] = append(w.history["t"], d)
		w.seq[d] = len(w.seq) + 1
		return int(d.Version)
	}
	write()
	for _, r := range w.regions {
		w.apply(r, "t", 1, false)
	}
	c := newFakeClient(t, addrs, client.WithTTL(2*time.Millisecond), client.WithHedgeDelay(time.Millisecond),
		client.WithCircuitBreaker(1<<30, time.Second), client.WithLookupTimeout(2*time.Second))

	var returned atomic.Int64 // the highest version returned to any caller
	saw := func(v int64) {
		for {
			old := returned.Load()
			if v <= old || returned.CompareAndSwap(old, v) {
				return
			}
		}
	}
	ctx := testwait.Context(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the writer, and regions applying at their own pace
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			v := write()
			for _, reg := range w.regions {
				if r.IntN(3) > 0 {
					w.apply(reg, "t", v-r.IntN(min(v, 5)), r.IntN(2) == 0)
				}
				if r.IntN(20) == 0 {
					w.mu.Lock()
					reg.mode = r.IntN(3)
					w.mu.Unlock()
				}
			}
		}
	})
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := returned.Load()
				var got []int64
				if g%2 == 0 {
					tn, err := c.Lookup(ctx, hostnames[r.IntN(len(hostnames))])
					if err == nil {
						got = append(got, tn.Version)
					} else if !errors.Is(err, client.ErrUnavailable) {
						errs <- err
						return
					}
				} else {
					res, err := c.BatchLookup(ctx, hostnames[:1+r.IntN(len(hostnames))])
					if err != nil {
						errs <- err
						return
					}
					for _, x := range res {
						if x.Err == nil {
							got = append(got, x.Tenant.Version)
						}
					}
				}
				for _, v := range got {
					if v < floor {
						errs <- fmt.Errorf("caller %d got version %d after version %d had been returned", g, v, floor)
						return
					}
					saw(v)
				}
			}
		})
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if returned.Load() < 2 {
		t.Errorf("the newest version returned is %d: the test did not exercise anything", returned.Load())
	}
}

// newFakeClient returns a client of the fake regions at addrs, closed at
// the end of the test, once its Watch stream is up.
func newFakeClient(tb testing.TB, addrs []string, opts ...client.Option) *client.Client {
	tb.Helper()
	c, err := client.New(context.Background(), append([]client.Option{client.WithRegions(addrs...)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	testwait.For(tb, "the watch stream", c.Watching)
	return c
}
