package client_test

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

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	"github.com/tcs-dev/tcs/internal/testnet"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/work"
)

// workReplica is a scannable replica of ACTIVE tenants.
type workReplica struct {
	tcs.Replica
	docs []*tenant.Tenant
}

func (r *workReplica) GetTenant(_ context.Context, id string) (*tenant.Tenant, error) {
	for _, d := range r.docs {
		if d.ID == id {
			return d, nil
		}
	}
	return nil, &tenant.Error{Code: tenant.NotFound, Message: "no tenant " + id}
}

func (r *workReplica) ScanDocs(context.Context, string, int) ([]*tenant.Tenant, string, error) {
	return r.docs, "", nil
}

func (r *workReplica) ScanHosts(context.Context, string, int) ([]tcs.HostEntry, string, error) {
	return nil, "", nil
}

// startWorkNode serves tcs.v1.WorkService over table on a loopback port for
// tenants.
func startWorkNode(t *testing.T, table *memlease.Table, tenants []string) string {
	t.Helper()
	rep := &workReplica{}
	for _, id := range tenants {
		rep.docs = append(rep.docs, &tenant.Tenant{ID: id, Status: tenant.StatusActive})
	}
	n, err := work.NewNode(work.NodeConfig{Replica: rep, LeaseDuration: time.Second,
		Leases: work.StoresOf(func(pool, owner string) lease.Store { return table.Store(work.Group(pool), owner, nil) })})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.Run(ctx) })
	<-n.Index().Loaded()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	n.Register(gs)
	wg.Go(func() { _ = gs.Serve(ln) })
	t.Cleanup(func() { gs.Stop(); cancel(); wg.Wait() })
	return ln.Addr().String()
}

// runLog records RunPerTenant's runs.
type runLog struct {
	mu       sync.Mutex
	running  map[string]string // tenant → member running it
	runs     map[string]int    // member → runs
	tenants  map[string]map[string]bool
	now, top int // runs at once across members, the most seen
	errs     []string
}

func (l *runLog) fn(member string, hold time.Duration) client.TenantFunc {
	return func(ctx context.Context, id string, token uint64) error {
		l.mu.Lock()
		if other, ok := l.running[id]; ok {
			l.errs = append(l.errs, fmt.Sprintf("%s runs %s while %s does", member, id, other))
		}
		l.running[id] = member
		l.runs[member]++
		if l.tenants[member] == nil {
			l.tenants[member] = map[string]bool{}
		}
		l.tenants[member][id] = true
		l.now++
		l.top = max(l.top, l.now)
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		l.mu.Lock()
		delete(l.running, id)
		l.now--
		l.mu.Unlock()
		return nil
	}
}

// TestRunPerTenant: one member runs every tenant, never more than the
// pool's cap at once; when a second member joins they split the tenants,
// and no tenant ever runs on both at once (the loser's run is cancelled).
func TestRunPerTenant(t *testing.T) {
	t.Parallel()
	table := memlease.New(nil)
	ids := make([]string, 30)
	for i := range ids {
		ids[i] = fmt.Sprintf("tenant-%02d", i)
	}
	addr := startWorkNode(t, table, ids)
	log := &runLog{running: map[string]string{}, runs: map[string]int{}, tenants: map[string]map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(member string) {
		c, err := client.New(ctx, client.WithRegions(addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Go(func() {
			err := c.RunPerTenant(ctx, "reports", 1, 20*time.Millisecond, log.fn(member, 5*time.Millisecond), nil,
				client.WithMember(member), client.WithPoolMaxConcurrent(4))
			if err != nil {
				t.Error(err)
			}
		})
	}
	run("a")
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "member a to run every tenant", func() (bool, string) {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.tenants["a"]) == len(ids), fmt.Sprintf("%d of %d", len(log.tenants["a"]), len(ids))
	})
	run("b")
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "member b to run tenants", func() (bool, string) {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.tenants["b"]) >= len(ids)/4, fmt.Sprintf("b ran %v", slices.Sorted(maps.Keys(log.tenants["b"])))
	})
	cancel()
	wg.Wait()
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.errs) > 0 {
		t.Errorf("overlapping runs: %v", log.errs)
	}
	if log.top > 4 {
		t.Errorf("%d runs at once; the pool's cap is 4", log.top)
	}
}

// TestWorkRefusals: Work and RunPerTenant refuse bad arguments, naming them.
func TestWorkRefusals(t *testing.T) {
	t.Parallel()
	c, err := client.New(context.Background(), client.WithRegions("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"pool", func() error { _, err := c.Work(ctx, "Bad Pool", 1); return err }(), `pool "Bad Pool"`},
		{"capacity", func() error { _, err := c.Work(ctx, "reports", -1); return err }(), "capacity -1"},
		{"cap", func() error { _, err := c.Work(ctx, "reports", 1, client.WithPoolMaxConcurrent(-1)); return err }(), "max concurrent -1"},
		{"interval", c.RunPerTenant(ctx, "reports", 1, 0, func(context.Context, string, uint64) error { return nil }, nil), "interval 0s"},
		{"fn", c.RunPerTenant(ctx, "reports", 1, time.Second, nil, nil), "no function"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error naming %q", tc.name, tc.err, tc.want)
		}
	}
}

// TestWorkLeave: when RunPerTenant's ctx ends it stops its runs, then
// leaves the pool: by the time it returns the node released every lease
// of the member, so the others take its tenants at their next round. A
// client closed instead (its stream cut) leaves its leases to lapse.
func TestWorkLeave(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"leave", true}, {"cut", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table := memlease.New(nil)
			ids := make([]string, 20)
			for i := range ids {
				ids[i] = fmt.Sprintf("tenant-%02d", i)
			}
			addr := startWorkNode(t, table, ids)
			log := &runLog{running: map[string]string{}, runs: map[string]int{}, tenants: map[string]map[string]bool{}}
			c, err := client.New(context.Background(), client.WithRegions(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			returned := make(chan error, 1)
			go func() {
				returned <- c.RunPerTenant(ctx, "reports", 1, 20*time.Millisecond, log.fn("a", time.Millisecond), nil, client.WithMember("a"))
			}()
			testwait.Until(t, 20*time.Second, 10*time.Millisecond, "member a to run every tenant", func() (bool, string) {
				log.mu.Lock()
				defer log.mu.Unlock()
				return len(log.tenants["a"]) == len(ids), fmt.Sprintf("%d of %d", len(log.tenants["a"]), len(ids))
			})
			if tc.clean {
				cancel()
			} else {
				c.Close()
			}
			if err := <-returned; err != nil {
				t.Fatal(err)
			}
			ls, err := table.Store(work.Group("reports"), "observer", nil).List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, l := range ls {
				if l.Owner == "a" {
					kept = append(kept, l.Key)
				}
			}
			if tc.clean && len(kept) > 0 {
				t.Errorf("after leaving, member a still owns %d leases: %v…", len(kept), kept[:min(3, len(kept))])
			}
			if !tc.clean && len(kept) == 0 {
				t.Error("right after its stream was cut member a owns nothing: its leases should lapse, not be released")
			}
		})
	}
}

// TestWorkNodeSilent: when the node a member joined through stops
// answering (its connection frozen, keepalive far off), the member does
// not wait for keepalive: after a lease duration of silence it joins
// through the next region and owns its tenants again.
func TestWorkNodeSilent(t *testing.T) {
	t.Parallel()
	table := memlease.New(nil)
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("tenant-%02d", i)
	}
	first := testnet.NewFreezer(t, startWorkNode(t, table, ids))
	second := startWorkNode(t, table, ids)
	c, err := client.New(context.Background(), client.WithRegions(first.Addr(), second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Work(ctx, "reports", 1)
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string, cond func(client.Assignment) bool) time.Time {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case a := <-ch:
				if cond(a) {
					return time.Now()
				}
			case <-deadline:
				t.Fatalf("no assignment %s within 20 s", what)
			}
		}
	}
	every := func(a client.Assignment) bool { return len(a.Tenants) == len(ids) }
	next("of every tenant", every)
	frozen := time.Now()
	first.Freeze()
	defer first.Thaw()
	lapsed := next("emptied once the frozen node stops renewing", func(a client.Assignment) bool { return len(a.Tenants) == 0 })
	back := next("of every tenant again, through the second node", every)
	t.Logf("lapsed %v after the freeze, every tenant again %v after", lapsed.Sub(frozen), back.Sub(frozen))
	// Keepalive (20 s + 10 s) would have taken 30 s.
	if d := back.Sub(frozen); d > 15*time.Second {
		t.Errorf("owned every tenant again %v after the freeze, want within a few lease durations (1 s)", d)
	}
}
