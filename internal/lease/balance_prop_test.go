package lease_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
)

// The simulation's lease duration, in scans: every live worker renews what
// it holds and scans once a tick.
const simLease = 8

// simWorker runs lease.Balance as streamer/publease does: renew (handing
// over what Plan.Yield allows, declining the other requests), list,
// observe, plan, adopt, take, ask.
type simWorker struct {
	name   string
	weight float64
	store  lease.Store
	obs    *lease.Observer
	held   map[string]string // key → token
	plan   *lease.Plan
	dead   bool
	joined int
	killed int
	// lastCycle is the tick of its last scan: a membership list (sim's
	// members) keeps it for a lease duration after.
	lastCycle int
}

type sim struct {
	// changed is, by lease, its counter and owner and the tick they last
	// changed.
	changed map[string]change
	ctx     context.Context
	table   *memlease.Table
	now     int
	keys    int
	workers []*simWorker
	weights map[string]float64
	// members: pass a membership list to Balance (Input.Workers): every
	// worker that scanned within a lease duration.
	members bool
	plans   int
}

type change struct {
	owner   string
	counter int64
	at      int
}

func (s *sim) clock() time.Time { return time.Unix(int64(s.now), 0) }

func (s *sim) add(weight float64) *simWorker {
	name := "w" + strconv.Itoa(len(s.workers))
	w := &simWorker{
		name: name, weight: weight, joined: s.now, lastCycle: s.now,
		store: s.table.Store("g", name, nil),
		obs:   lease.NewObserver(name, simLease*time.Second),
		held:  map[string]string{},
	}
	s.weights[name] = weight
	s.workers = append(s.workers, w)
	return w
}

func (s *sim) cycle(t *rapid.T, w *simWorker) {
	ctx := s.ctx
	for _, key := range slices.Sorted(maps.Keys(w.held)) {
		r, err := w.store.Renew(ctx, key, w.held[key])
		switch {
		case errors.Is(err, lease.ErrLost):
			delete(w.held, key)
		case err != nil:
			t.Fatalf("renew: %v", err)
		case r.Pending == "" || r.Pending == w.name:
		case w.plan.Yield(len(w.held), r.Pending):
			delete(w.held, key)
			if err := w.store.HandOver(ctx, key, r.Token, r.Pending); err != nil {
				t.Fatalf("%s hands %s over to %s: %v", w.name, key, r.Pending, err)
			}
		default:
			if err := w.store.Decline(ctx, key, r.Token, r.Pending); err != nil {
				t.Fatalf("%s declines %s to %s: %v", w.name, key, r.Pending, err)
			}
		}
	}
	leases, err := w.store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := s.clock()
	w.obs.Observe(now, leases)
	w.lastCycle = s.now
	var members []string
	if s.members {
		for _, m := range s.workers {
			if s.now-m.lastCycle < simLease {
				members = append(members, m.name)
			}
		}
	}
	p, err := lease.Balance(lease.Input{
		Workers: members,
		Me:      w.name,
		Leases:  leases,
		Expired: func(l lease.Lease) bool { return w.obs.Expired(now, l) },
		Holds: func(l lease.Lease) bool {
			tok, ok := w.held[l.Key]
			return ok && (l.Owner != w.name || tok == l.Token)
		},
		Weights: s.weights,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.plans++
	w.plan = p
	for _, l := range p.Lost {
		delete(w.held, l.Key)
	}
	for _, l := range p.Adopt {
		if _, err := w.store.Renew(ctx, l.Key, l.Token); err == nil {
			w.held[l.Key] = l.Token
		}
	}
	for _, l := range p.Take {
		if len(w.held) >= p.Target {
			break
		}
		if got, err := w.store.Take(ctx, l); err == nil {
			w.held[l.Key] = got.Token
		}
	}
	ask, from := p.Steals(len(w.held))
	for _, l := range from {
		if ask == 0 {
			break
		}
		if err := w.store.RequestSteal(ctx, l); err == nil {
			ask--
		}
	}
}

// tick runs one scan of every live worker, in an order rapid picks, and
// checks the invariants.
func (s *sim) tick(t *rapid.T) {
	var live []*simWorker
	for _, w := range s.workers {
		if !w.dead {
			live = append(live, w)
		}
	}
	idx := make([]int, len(live))
	for i := range idx {
		idx[i] = i
	}
	for _, i := range rapid.Permutation(idx).Draw(t, "order") {
		s.cycle(t, live[i])
	}
	s.check(t)
	s.now++
}

func (s *sim) owners(t *rapid.T) map[string]string {
	leases, err := s.table.Store("g", "observer", nil).List(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := map[string]string{}
	for _, l := range leases {
		o[l.Key] = l.Owner
		if c, ok := s.changed[l.Key]; !ok || c.owner != l.Owner || c.counter != l.Counter {
			s.changed[l.Key] = change{owner: l.Owner, counter: l.Counter, at: s.now}
		}
	}
	return o
}

func (s *sim) check(t *rapid.T) {
	owners := s.owners(t)
	// No lease is held by two live workers, and what a live worker holds
	// the table says is its.
	holder := map[string]string{}
	lastJoin := 0
	for _, w := range s.workers {
		if w.dead {
			continue
		}
		lastJoin = max(lastJoin, w.joined)
		for key := range w.held {
			if other, ok := holder[key]; ok {
				t.Fatalf("tick %d: %s held by %s and %s", s.now, key, other, w.name)
			}
			holder[key] = w.name
			if owners[key] != w.name {
				t.Fatalf("tick %d: %s holds %s, the table says %q", s.now, w.name, key, owners[key])
			}
		}
	}
	// Every lease of a dead worker is taken within one lease duration and
	// one scan of its death. Until then a dead worker counts as live, and
	// its share is kept from the others: so the bound runs from the last
	// death, and from the last join (a worker judges expiry from when it
	// first saw a lease). A worker that asked for leases before it died
	// may be handed them after (at the owners' next renewal, the same tick
	// here): they count as its last writes.
	if s.liveWeight() == 0 {
		return
	}
	lastKill := 0
	for _, w := range s.workers {
		if w.dead {
			lastKill = max(lastKill, w.killed)
		}
	}
	deadline := max(lastKill, lastJoin) + simLease + 1
	for key, o := range owners {
		if w := s.worker(o); w != nil && w.dead && s.now > deadline {
			t.Fatalf("tick %d: dead %s (killed at tick %d) still owns %s, unchanged since tick %d%s", s.now, o, w.killed, key, s.changed[key].at, s.dump())
		}
	}
}

func (s *sim) liveWeight() float64 {
	var total float64
	for _, w := range s.workers {
		if !w.dead {
			total += w.weight
		}
	}
	return total
}

// settle ticks until nothing moved for two lease durations.
func (s *sim) settle(t *rapid.T) {
	last, still := "", 0
	for i := 0; still < 2*simLease; i++ {
		if i > 40*simLease {
			t.Fatalf("not settled after %d ticks: %s", i, s.fingerprint())
		}
		s.tick(t)
		if f := s.fingerprint(); f == last {
			still++
		} else {
			last, still = f, 0
		}
	}
}

// settled checks shares once nothing moves: every lease is a live worker's
// and each holds within one of its weighted fair share.
func (s *sim) settled(t *rapid.T) {
	owners := s.owners(t)
	total := s.liveWeight()
	if total == 0 {
		return
	}
	for key, o := range owners {
		if w := s.worker(o); w == nil || w.dead {
			t.Fatalf("settled: %s owned by %q, not a live worker", key, o)
		}
	}
	for _, w := range s.workers {
		if w.dead {
			continue
		}
		fair := float64(s.keys) * w.weight / total
		if h := float64(len(w.held)); h > fair+1 || h < fair-1 {
			t.Fatalf("settled: %s (weight %v) holds %d of %d leases, fair share %.2f%s", w.name, w.weight, len(w.held), s.keys, fair, s.dump())
		}
	}
}

func (s *sim) worker(name string) *simWorker {
	for _, w := range s.workers {
		if w.name == name {
			return w
		}
	}
	return nil
}

func (s *sim) fingerprint() string {
	var b []byte
	for _, w := range s.workers {
		b = fmt.Appendf(b, "%s:%v;", w.name, slices.Sorted(maps.Keys(w.held)))
	}
	return string(b)
}

// dump shows the table, for failure messages.
func (s *sim) dump() string {
	leases, _ := s.table.Store("g", "observer", nil).List(s.ctx)
	var b []byte
	for _, l := range leases {
		b = fmt.Appendf(b, "\n  %s owner %q pending %q counter %d", l.Key, l.Owner, l.Pending, l.Counter)
	}
	for _, w := range s.workers {
		if w.plan != nil {
			b = fmt.Appendf(b, "\n  %s dead %v weight %v held %d target %d counts %v shares %v", w.name, w.dead, w.weight, len(w.held), w.plan.Target, w.plan.Counts, w.plan.Shares)
		}
	}
	return string(b)
}

// TestBalanceProperties runs workers that join and die at random over a
// shared table and checks, at every scan, that no lease is held by two
// live workers and a dead worker's leases are taken within one lease
// duration and one scan; and once nothing moves, that every worker holds
// its weighted fair share within one. Weighted workers (and some
// unweighted ones) pass a membership list that keeps a worker for a lease
// duration after its last scan.
func TestBalanceProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := &sim{ctx: context.Background(), weights: map[string]float64{}, changed: map[string]change{}}
		s.table = memlease.New(s.clock)
		s.keys = rapid.IntRange(0, 40).Draw(t, "leases")
		for i := range s.keys {
			if err := s.table.Store("g", "creator", nil).Create(s.ctx, fmt.Sprintf("k%02d", i), nil); err != nil {
				t.Fatal(err)
			}
		}
		weighted := rapid.Bool().Draw(t, "weighted")
		// Weighted shares need a membership list: without one, a worker
		// holding nothing and asking for nothing is unknown to the others,
		// which then keep its share (with equal weights, at most one each).
		s.members = weighted || rapid.Bool().Draw(t, "members")
		weight := func() float64 {
			if !weighted {
				return 1
			}
			return float64(rapid.IntRange(1, 4).Draw(t, "weight"))
		}
		for range rapid.IntRange(1, 4).Draw(t, "initial workers") {
			s.add(weight())
		}
		for range rapid.IntRange(0, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0:
				if len(s.workers) < 8 {
					s.add(weight())
				}
			case 1:
				w := s.workers[rapid.IntRange(0, len(s.workers)-1).Draw(t, "victim")]
				if !w.dead {
					w.dead, w.killed = true, s.now
				}
			default:
				s.tick(t)
			}
		}
		s.settle(t)
		s.settled(t)
	})
}

// TestBalanceEqualShareSettlesWithinOne: with equal weights, after
// settling, no worker holds more than ceil(n/k) or fewer than ceil(n/k)-1.
func TestBalanceEqualShareSettlesWithinOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ keys, workers int }{{10, 4}, {64, 3}, {7, 7}, {3, 5}, {64, 10}} {
		t.Run(fmt.Sprintf("%d leases %d workers", tc.keys, tc.workers), func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, func(t *rapid.T) {
				s := &sim{ctx: context.Background(), weights: map[string]float64{}, changed: map[string]change{}}
				s.table = memlease.New(s.clock)
				s.keys = tc.keys
				for i := range s.keys {
					if err := s.table.Store("g", "creator", nil).Create(s.ctx, fmt.Sprintf("k%02d", i), nil); err != nil {
						t.Fatal(err)
					}
				}
				// Workers join one at a time, a few scans apart.
				for range tc.workers {
					s.add(1)
					for range rapid.IntRange(0, 3).Draw(t, "scans") {
						s.tick(t)
					}
				}
				s.settle(t)
				target := int(math.Ceil(float64(tc.keys) / float64(tc.workers)))
				for _, w := range s.workers {
					if n := len(w.held); n > target || n < target-1 {
						t.Fatalf("%s holds %d, want %d or %d: %s%s", w.name, n, target-1, target, s.fingerprint(), s.dump())
					}
				}
			})
		})
	}
}
