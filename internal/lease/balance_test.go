package lease_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/internal/lease"
)

// leases builds a table from "key:owner[:pending]" specs.
func leases(specs ...string) []lease.Lease {
	var ls []lease.Lease
	for _, s := range specs {
		f := strings.Split(s, ":")
		l := lease.Lease{Key: f[0], Owner: f[1]}
		if len(f) > 2 {
			l.Pending = f[2]
		}
		ls = append(ls, l)
	}
	return ls
}

func keys(ls []lease.Lease) []string {
	var k []string
	for _, l := range ls {
		k = append(k, l.Key)
	}
	return k
}

func keySet(ks ...string) func(lease.Lease) bool {
	return func(l lease.Lease) bool {
		for _, k := range ks {
			if l.Key == k {
				return true
			}
		}
		return false
	}
}

func plan(t *testing.T, in lease.Input) *lease.Plan {
	t.Helper()
	p, err := lease.Balance(in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBalance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   lease.Input
		// want: the plan's lists (keys), target, counts, pending.
		adopt, lost, take []string
		target            int
		counts            map[string]int
		pendingForMe      bool
	}{
		{
			name:   "alone: take everything free",
			in:     lease.Input{Me: "a", Leases: leases("1:", "2:", "3:")},
			take:   []string{"1", "2", "3"},
			target: 3, counts: map[string]int{"a": 0},
		},
		{
			name: "free before expired, in read order; unexpired leases count for their owner",
			in: lease.Input{Me: "a", Leases: leases("1:b", "2:c", "3:", "4:c"),
				Expired: keySet("1")},
			take:   []string{"3", "1"},
			target: 2, counts: map[string]int{"a": 0, "c": 2},
		},
		{
			name: "adopt what the table says is mine and I do not hold; lost what I hold that is another's",
			in: lease.Input{Me: "a", Leases: leases("1:a", "2:a", "3:b", "4:"),
				Holds: keySet("2", "3", "4")},
			adopt: []string{"1"}, lost: []string{"3", "4"},
			target: 2, counts: map[string]int{"a": 0, "b": 1},
		},
		{
			name: "ineligible leases are neither taken nor counted",
			in: lease.Input{Me: "a", Leases: leases("1:", "2:", "3:b", "4:b"),
				Eligible: keySet("1", "3")},
			take:   []string{"1"},
			target: 1, counts: map[string]int{"a": 0, "b": 1},
		},
		{
			name: "a worker asking for a lease is live; not one asking a dead owner",
			in: lease.Input{Me: "a", Leases: leases("1:b:c", "2:d:e", "3:b:a", "4:"),
				Expired: keySet("2")},
			take:   []string{"4", "2"},
			target: 2, counts: map[string]int{"a": 0, "b": 2, "c": 0},
			pendingForMe: true,
		},
		{
			name:   "a membership list names live workers holding nothing",
			in:     lease.Input{Me: "a", Leases: leases("1:", "2:", "3:", "4:"), Workers: []string{"b", "c", ""}},
			take:   []string{"1", "2", "3", "4"},
			target: 2, counts: map[string]int{"a": 0, "b": 0, "c": 0},
		},
		{
			name: "weights: shares in proportion, rounded up",
			in: lease.Input{Me: "a", Leases: leases("1:", "2:", "3:", "4:", "5:", "6:", "7:b"),
				Weights: map[string]float64{"a": 2, "b": 1}},
			take:   []string{"1", "2", "3", "4", "5", "6"},
			target: 5, counts: map[string]int{"a": 0, "b": 1},
		},
		{
			name: "weight 0: no share",
			in: lease.Input{Me: "a", Leases: leases("1:", "2:b"),
				Weights: map[string]float64{"a": 0}},
			take:   []string{"1"},
			target: 0, counts: map[string]int{"a": 0, "b": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := plan(t, tt.in)
			got := map[string]any{"adopt": keys(p.Adopt), "lost": keys(p.Lost), "take": keys(p.Take),
				"target": p.Target, "counts": p.Counts, "pendingForMe": p.PendingForMe}
			want := map[string]any{"adopt": tt.adopt, "lost": tt.lost, "take": tt.take,
				"target": tt.target, "counts": tt.counts, "pendingForMe": tt.pendingForMe}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBalanceRefuses(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]lease.Input{
		"negative weight": {Me: "a", Weights: map[string]float64{"b": -1}},
		"NaN weight":      {Me: "a", Weights: map[string]float64{"b": math.NaN()}},
		"infinite weight": {Me: "a", Weights: map[string]float64{"b": math.Inf(1)}},
		"MaxSteals < 0":   {Me: "a", MaxSteals: -1},
	} {
		if _, err := lease.Balance(in); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "lease balance") {
			t.Errorf("%s: error %q does not say where", name, err)
		}
	}
}

func TestSteals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   lease.Input
		held int
		ask  int
		from []string
	}{
		{
			name: "none while at the share",
			in:   lease.Input{Me: "a", Leases: leases("1:a", "2:b")},
			held: 1,
		},
		{
			name: "ask the most loaded for what I lack, only leases nobody asked for",
			in:   lease.Input{Me: "a", Leases: leases("1:b", "2:b:x", "3:b", "4:b", "5:b", "6:c")},
			held: 0, ask: 2, from: []string{"1", "3", "4", "5"},
		},
		{
			name: "MaxSteals caps the asks",
			in:   lease.Input{Me: "a", Leases: leases("1:b", "2:b", "3:b", "4:b", "5:b", "6:b"), MaxSteals: 1},
			held: 0, ask: 1, from: []string{"1", "2", "3", "4", "5", "6"},
		},
		{
			name: "a worker at its share is asked only when I am two short",
			in:   lease.Input{Me: "a", Leases: leases("1:b", "2:b", "3:b", "4:c", "5:c", "6:c", "7:a")},
			held: 1, ask: 1, from: []string{"1", "2", "3"},
		},
		{
			name: "one short of a worker at its share: no ask (they would trade for ever)",
			in:   lease.Input{Me: "a", Leases: leases("1:b", "2:b", "3:b", "4:c", "5:c", "6:a", "7:a")},
			held: 2,
		},
		{
			name: "waiting for a handover: no other ask",
			in:   lease.Input{Me: "a", Leases: leases("1:b:a", "2:b", "3:b", "4:b")},
			held: 0,
		},
		{
			name: "ties go to the first name",
			in:   lease.Input{Me: "a", Leases: leases("1:c", "2:c", "3:b", "4:b")},
			held: 0, ask: 1, from: []string{"3", "4"},
		},
		{
			name: "weights: the largest excess over its own share, not the most leases",
			in: lease.Input{Me: "a", Leases: leases("1:b", "2:b", "3:b", "4:b", "5:c", "6:c", "7:c"),
				Weights: map[string]float64{"b": 4}},
			// Shares: a 2, b 5, c 2: c is 1 over, b 1 under.
			held: 0, ask: 1, from: []string{"5", "6", "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := plan(t, tt.in)
			ask, from := p.Steals(tt.held)
			if ask != tt.ask || !cmp.Equal(keys(from), tt.from, cmpopts.EquateEmpty()) {
				t.Errorf("Steals(%d) = %d, %v; want %d, %v", tt.held, ask, keys(from), tt.ask, tt.from)
			}
		})
	}
}

func TestYield(t *testing.T) {
	t.Parallel()
	// Nine leases, four workers: shares 3; a and b hold 3, c 2, d 1.
	p := plan(t, lease.Input{Me: "a", Leases: leases("1:a", "2:a", "3:a", "4:b", "5:b", "6:b", "7:c", "8:c", "9:d")})
	if p.Target != 3 {
		t.Fatalf("target %d, want 3", p.Target)
	}
	tests := []struct {
		held int
		to   string
		want bool
	}{
		{4, "c", true},  // over the share
		{3, "d", true},  // at the share, d two short
		{3, "c", false}, // at the share, c one short: declined
		{2, "d", false}, // short myself
		{3, "e", true},  // e asked after the scan: five workers, shares 2, so 3 is over
	}
	for _, tt := range tests {
		if got := p.Yield(tt.held, tt.to); got != tt.want {
			t.Errorf("Yield(%d, %q) = %v, want %v", tt.held, tt.to, got, tt.want)
		}
	}
	var none *lease.Plan
	if !none.Yield(0, "x") {
		t.Error("a nil plan (no scan yet) does not yield")
	}
}

func TestObserver(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	o := lease.NewObserver("me", 10*time.Second)
	l := lease.Lease{Key: "k", Owner: "b", Counter: 1}
	mine := lease.Lease{Key: "m", Owner: "me", Counter: 1}
	free := lease.Lease{Key: "f"}
	o.Observe(t0, []lease.Lease{l, mine, free})
	for _, tt := range []struct {
		at   time.Duration
		l    lease.Lease
		want bool
	}{
		{9 * time.Second, l, false},
		{10 * time.Second, l, true},
		{time.Hour, mine, false},
		{time.Hour, free, false},
	} {
		if got := o.Expired(t0.Add(tt.at), tt.l); got != tt.want {
			t.Errorf("Expired(+%v, %s) = %v, want %v", tt.at, tt.l.Key, got, tt.want)
		}
	}
	if d := o.NextExpiry(t0.Add(4*time.Second), time.Minute, nil); d != 6*time.Second {
		t.Errorf("NextExpiry = %v, want 6s", d)
	}
	if d := o.NextExpiry(t0.Add(4*time.Second), time.Second, nil); d != time.Second {
		t.Errorf("NextExpiry under a 1s limit = %v, want 1s", d)
	}
	if d := o.NextExpiry(t0.Add(4*time.Second), time.Minute, func(k string) bool { return k == "k" }); d != time.Minute {
		t.Errorf("NextExpiry skipping k = %v, want the limit", d)
	}
	// A renewal (the counter moves) restarts the clock; so does a new owner.
	l.Counter = 2
	o.Observe(t0.Add(9*time.Second), []lease.Lease{l})
	if o.Expired(t0.Add(18*time.Second), l) {
		t.Error("expired 9s after a renewal seen")
	}
	if !o.Expired(t0.Add(19*time.Second), l) {
		t.Error("not expired 10s after the last renewal seen")
	}
	l.Owner = "c"
	o.Observe(t0.Add(20*time.Second), []lease.Lease{l})
	if o.Expired(t0.Add(25*time.Second), l) {
		t.Error("a new owner's lease expired 5s after it was first seen")
	}
}
