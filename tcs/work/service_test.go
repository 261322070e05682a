package work_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/work"
)

// fakeReplica is a replica of tenant documents only, scannable.
type fakeReplica struct {
	tcs.Replica
	mu   sync.Mutex
	docs map[string]*tenant.Tenant
}

func (r *fakeReplica) set(id string, st tenant.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.docs[id] = &tenant.Tenant{ID: id, Status: st}
}

func (r *fakeReplica) GetTenant(_ context.Context, id string) (*tenant.Tenant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.docs[id]; ok {
		return t, nil
	}
	return nil, &tenant.Error{Code: tenant.NotFound, Message: "no tenant " + id}
}

func (r *fakeReplica) ScanDocs(context.Context, string, int) ([]*tenant.Tenant, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Values(r.docs)), "", nil
}

func (r *fakeReplica) ScanHosts(context.Context, string, int) ([]tcs.HostEntry, string, error) {
	return nil, "", nil
}

// feed is a Feed the test delivers to by hand.
type feed struct{ deliver chan tcs.Invalidation }

func (f *feed) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case inv := <-f.deliver:
			deliver(inv)
		}
	}
}

type node struct {
	addr string
	rep  *fakeReplica
	feed *feed
	ws   tcsv1.WorkServiceClient
}

// startNode serves a WorkService over table on a loopback port, with
// tenants ACTIVE in its replica.
func startNode(t *testing.T, table *memlease.Table, d time.Duration, tenants ...string) *node {
	t.Helper()
	rep := &fakeReplica{docs: map[string]*tenant.Tenant{}}
	for _, id := range tenants {
		rep.set(id, tenant.StatusActive)
	}
	n, err := work.NewNode(work.NodeConfig{Replica: rep, LeaseDuration: d,
		Leases: work.StoresOf(func(pool, owner string) lease.Store { return table.Store(work.Group(pool), owner, nil) })})
	if err != nil {
		t.Fatal(err)
	}
	f := &feed{deliver: make(chan tcs.Invalidation)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.Run(ctx) })
	wg.Go(func() { _ = n.Feed(f).Subscribe(ctx, func(tcs.Invalidation) {}, func() {}) })
	<-n.Index().Loaded()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	n.Register(gs)
	wg.Go(func() { _ = gs.Serve(ln) })
	t.Cleanup(func() { gs.Stop(); cancel(); wg.Wait() })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &node{addr: ln.Addr().String(), rep: rep, feed: f, ws: tcsv1.NewWorkServiceClient(conn)}
}

// watcher keeps the latest assignment of a Work channel.
type watcher struct {
	mu     sync.Mutex
	latest client.Assignment
	done   chan struct{}
}

func watch(as <-chan client.Assignment) *watcher {
	w := &watcher{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for a := range as {
			w.mu.Lock()
			w.latest = a
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) get() client.Assignment {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.WithRegions(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tenantIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("tenant-%03d", i)
	}
	return ids
}

// TestServiceShares: two members joined through two nodes own every ACTIVE
// tenant between them, none twice, about half each; a tenant suspended and
// one created are removed and added as the feed names them.
func TestServiceShares(t *testing.T) {
	t.Parallel()
	table := memlease.New(nil)
	ids := tenantIDs(200)
	n1 := startNode(t, table, time.Second, ids...)
	n2 := startNode(t, table, time.Second, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wa, err := newClient(t, n1.addr).Work(ctx, "reports", 1, client.WithMember("a"))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := newClient(t, n2.addr).Work(ctx, "reports", 1, client.WithMember("b"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := watch(wa), watch(wb)
	covered := func(want []string, fair bool) func() (bool, string) {
		return func() (bool, string) {
			ta, tb := a.get().Tenants, b.get().Tenants
			var got []string
			for id := range ta {
				if _, ok := tb[id]; ok {
					return false, id + " owned twice"
				}
				got = append(got, id)
			}
			got = append(got, slices.Collect(maps.Keys(tb))...)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return false, fmt.Sprintf("%d owned (a %d, b %d), want %d", len(got), len(ta), len(tb), len(want))
			}
			if fair && (len(ta) < len(want)/4 || len(tb) < len(want)/4) {
				return false, fmt.Sprintf("unfair: a %d, b %d", len(ta), len(tb))
			}
			return true, ""
		}
	}
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "every tenant owned once, fairly", covered(ids, true))

	for _, n := range []*node{n1, n2} {
		n.rep.set("tenant-007", tenant.StatusSuspended)
		n.rep.set("tenant-new", tenant.StatusActive)
		n.feed.deliver <- tcs.Invalidation{TenantID: "tenant-007", Version: 2}
		n.feed.deliver <- tcs.Invalidation{TenantID: "tenant-new", Version: 1}
	}
	want := append(slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "tenant-007" }), "tenant-new")
	slices.Sort(want)
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "the suspended tenant removed, the new one added", covered(want, false))
}

// TestFrozenMemberFenced: a member that stops heartbeating (its stream
// stays open) loses its tenants to the other member within about a lease
// duration, and Validate refuses its tokens from then on.
func TestFrozenMemberFenced(t *testing.T) {
	t.Parallel()
	table := memlease.New(nil)
	ids := tenantIDs(50)
	n1 := startNode(t, table, time.Second, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := n1.ws.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "frozen"}}}); err != nil {
		t.Fatal(err)
	}
	// Heartbeat until it owns everything, then freeze.
	frozen := map[string]uint64{}
	for seq := uint64(1); len(frozen) < len(ids); seq++ {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Changed {
			clear(frozen)
			for _, o := range msg.Tenants {
				frozen[o.TenantId] = o.Token
			}
		}
		if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: seq}}}); err != nil {
			t.Fatal(err)
		}
	}
	for id, tok := range frozen {
		if res, err := n1.ws.Validate(ctx, &tcsv1.ValidateRequest{Pool: "reports", TenantId: id, Token: tok}); err != nil || !res.Valid {
			t.Fatalf("Validate(%s, %d) while held = %v, %v", id, tok, res, err)
		}
	}
	frozeAt := time.Now()
	n2 := startNode(t, table, time.Second, ids...)
	w, err := newClient(t, n2.addr).Work(ctx, "reports", 1, client.WithMember("live"))
	if err != nil {
		t.Fatal(err)
	}
	live := watch(w)
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "the live member to own every tenant", func() (bool, string) {
		n := len(live.get().Tenants)
		return n == len(ids), fmt.Sprintf("%d of %d", n, len(ids))
	})
	t.Logf("takeover %v after the freeze (lease duration 1s)", time.Since(frozeAt))
	for id, tok := range frozen {
		res, err := n1.ws.Validate(ctx, &tcsv1.ValidateRequest{Pool: "reports", TenantId: id, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid || res.Owner != "live" || res.CurrentToken <= tok || res.CurrentToken != live.get().Tenants[id] {
			t.Errorf("Validate(%s, frozen token %d) = %v; live token %d", id, tok, res, live.get().Tenants[id])
		}
	}
}

// TestJoinRefusals: malformed joins are refused naming the field.
func TestJoinRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, memlease.New(nil), time.Second)
	for _, c := range []struct {
		name string
		req  *tcsv1.JoinRequest
		code codes.Code
		want string
	}{
		{"heartbeat first", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: 1}}}, codes.FailedPrecondition, "first message"},
		{"bad pool", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "Reports!", Member: "m"}}}, codes.InvalidArgument, `pool "Reports!"`},
		{"no member", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports"}}}, codes.InvalidArgument, `member ""`},
		{"negative capacity", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m", Capacity: -1}}}, codes.InvalidArgument, "capacity -1"},
		{"negative cap", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m", MaxConcurrent: -2}}}, codes.InvalidArgument, "max_concurrent -2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stream, err := n.ws.Join(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(c.req); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.want) {
				t.Errorf("Join(%v) = %v; want %v naming %q", c.req, err, c.code, c.want)
			}
		})
	}
	if _, err := n.ws.Validate(context.Background(), &tcsv1.ValidateRequest{Pool: "reports"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Validate without a tenant = %v; want InvalidArgument", err)
	}
}
