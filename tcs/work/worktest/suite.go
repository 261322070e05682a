package worktest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/work"
)

// Suite runs the work service's end-to-end tests over the lease backend
// newLeases opens (a fresh pool space per test): members joined through
// tcs/client on two nodes share every ACTIVE tenant once and fairly, follow
// the feed's changes, and a frozen member's tokens are refused by Validate
// once the other member took its tenants over. d is the lease duration:
// a round of a member (256 takes when it starts alone) must fit in well
// under it on the backend.
func Suite(t *testing.T, d time.Duration, newLeases func(t *testing.T) work.Leases) {
	t.Run("Shares", func(t *testing.T) { t.Parallel(); testShares(t, newLeases(t), d) })
	t.Run("FrozenMemberFenced", func(t *testing.T) { t.Parallel(); testFrozenMemberFenced(t, newLeases(t), d) })
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

// testShares: two members joined through two nodes own every ACTIVE
// tenant between them, none twice, about half each; a tenant suspended and
// one created are removed and added as the feed names them.
func testShares(t *testing.T, leases work.Leases, d time.Duration) {
	ids := tenantIDs(200)
	n1 := Start(t, leases, d, ids...)
	n2 := Start(t, leases, d, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wa, err := newClient(t, n1.Addr).Work(ctx, "reports", 1, client.WithMember("a"))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := newClient(t, n2.Addr).Work(ctx, "reports", 1, client.WithMember("b"))
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
	testwait.Until(t, patience(d), 10*time.Millisecond, "every tenant owned once, fairly", covered(ids, true))

	for _, n := range []*Node{n1, n2} {
		n.Replica.Set("tenant-007", tenant.StatusSuspended)
		n.Replica.Set("tenant-new", tenant.StatusActive)
		n.Feed.Deliver(tcs.Invalidation{TenantID: "tenant-007", Version: 2})
		n.Feed.Deliver(tcs.Invalidation{TenantID: "tenant-new", Version: 1})
	}
	want := append(slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "tenant-007" }), "tenant-new")
	slices.Sort(want)
	testwait.Until(t, patience(d), 10*time.Millisecond, "the suspended tenant removed, the new one added", covered(want, false))
}

// testFrozenMemberFenced: a member that stops heartbeating (its stream
// stays open) loses its tenants to the other member within about a lease
// duration, and Validate refuses its tokens from then on.
func testFrozenMemberFenced(t *testing.T, leases work.Leases, d time.Duration) {
	ids := tenantIDs(50)
	n1 := Start(t, leases, d, ids...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := n1.Work.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "frozen"}}}); err != nil {
		t.Fatal(err)
	}
	// Heartbeat every d/6 until it owns everything, then freeze (stop
	// heartbeating, keep the stream open).
	var (
		mu      sync.Mutex
		latest  = map[string]uint64{}
		beating = true
	)
	go func() {
		for seq := uint64(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d / 6):
			}
			mu.Lock()
			on := beating
			mu.Unlock()
			if on {
				_ = stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: seq}}})
			}
		}
	}()
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			if msg.Changed {
				mu.Lock()
				latest = map[string]uint64{}
				for _, o := range msg.Tenants {
					latest[o.TenantId] = o.Token
				}
				mu.Unlock()
			}
		}
	}()
	// Every tenant owned, and the tokens sent the current ones (a slow
	// round may have re-taken a bucket since: wait for the next message).
	var frozen map[string]uint64
	testwait.Until(t, patience(d), 10*time.Millisecond, "the frozen member to own every tenant under current tokens", func() (bool, string) {
		mu.Lock()
		snap := maps.Clone(latest)
		mu.Unlock()
		if len(snap) != len(ids) {
			return false, fmt.Sprintf("%d of %d", len(snap), len(ids))
		}
		for id, tok := range snap {
			res, err := n1.Work.Validate(ctx, &tcsv1.ValidateRequest{Pool: "reports", TenantId: id, Token: tok})
			if err != nil || !res.Valid {
				return false, fmt.Sprintf("Validate(%s, %d) while held = %v, %v", id, tok, res, err)
			}
		}
		frozen = snap
		return true, ""
	})
	mu.Lock()
	beating = false
	mu.Unlock()
	frozeAt := time.Now()
	n2 := Start(t, leases, d, ids...)
	w, err := newClient(t, n2.Addr).Work(ctx, "reports", 1, client.WithMember("live"))
	if err != nil {
		t.Fatal(err)
	}
	live := watch(w)
	testwait.Until(t, patience(d), 10*time.Millisecond, "the live member to own every tenant", func() (bool, string) {
		n := len(live.get().Tenants)
		return n == len(ids), fmt.Sprintf("%d of %d", n, len(ids))
	})
	t.Logf("takeover %v after the freeze (lease duration %v)", time.Since(frozeAt), d)
	for id, tok := range frozen {
		res, err := n1.Work.Validate(ctx, &tcsv1.ValidateRequest{Pool: "reports", TenantId: id, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid || res.Owner != "live" || res.CurrentToken <= tok || res.CurrentToken != live.get().Tenants[id] {
			t.Errorf("Validate(%s, frozen token %d) = %v; live token %d", id, tok, res, live.get().Tenants[id])
		}
	}
}

// patience is how long the suite waits for a pool to settle: a few lease
// durations, at least 20 s (race detector, a loaded machine).
func patience(d time.Duration) time.Duration { return max(20*time.Second, 6*d) }
