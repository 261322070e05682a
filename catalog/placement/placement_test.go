package placement

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/internal/benchsize"
)

// on lists tenants "id:weight" on host.
func on(host string, specs ...string) []Tenant {
	var out []Tenant
	for _, s := range specs {
		var id string
		var w int64
		if _, err := fmt.Sscanf(strings.Replace(s, ":", " ", 1), "%s %d", &id, &w); err != nil {
			panic(s)
		}
		out = append(out, Tenant{ID: id, Host: host, Weight: w})
	}
	return out
}

func join(ts ...[]Tenant) []Tenant {
	var out []Tenant
	for _, t := range ts {
		out = append(out, t...)
	}
	return out
}

// TestBuildView: without a bound, Build groups by host (heaviest first,
// ties by name), lists each host's Top heaviest tenants (ties by id),
// counts tenants without a database apart and plans nothing.
func TestBuildView(t *testing.T) {
	t.Parallel()
	in := join(on("db-b", "b1:5", "b2:7", "b3:7"), on("db-a", "a1:19"), on("db-c", "c1:0"), on("", "n1:4", "n2:0"))
	got, err := Build(in, Options{Top: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Tenants: 7, Weight: 42,
		Hosts: []Host{
			{Host: "db-a", Tenants: 1, Weight: 19, Heaviest: []TenantWeight{{"a1", 19}}, TenantsAfter: 1, WeightAfter: 19},
			{Host: "db-b", Tenants: 3, Weight: 19, Heaviest: []TenantWeight{{"b2", 7}, {"b3", 7}}, TenantsAfter: 3, WeightAfter: 19},
			{Host: "db-c", Tenants: 1, Weight: 0, Heaviest: []TenantWeight{{"c1", 0}}, TenantsAfter: 1, WeightAfter: 0},
		},
		NoDatabase: Apart{Tenants: 2, Weight: 4},
		Moves:      []Move{}, Unresolved: []Unresolved{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Build (-want +got):\n%s", diff)
	}
	if !got.Resolved() {
		t.Error("a view without a bound is not resolved")
	}
	// Top 0 lists no tenant, as an empty list (stable JSON).
	got, err = Build(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range got.Hosts {
		if h.Heaviest == nil || len(h.Heaviest) != 0 {
			t.Errorf("Top 0: host %s lists %v", h.Host, h.Heaviest)
		}
	}
	// No tenants at all: empty lists, not nil.
	got, err = Build(nil, Options{Top: 3, MaxLoad: 10})
	if err != nil || got.Hosts == nil || got.Moves == nil || got.Unresolved == nil || got.Tenants != 0 {
		t.Errorf("Build(nil) = %+v, %v", got, err)
	}
}

// TestBuildPlan: the moves and unresolved hosts of the greedy plan, case
// by case.
func TestBuildPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		in         []Tenant
		max        int64
		add        []string
		moves      []Move
		unresolved []Unresolved
		after      map[string]int64
	}{
		{
			name:  "all within the bound: nothing moves",
			in:    join(on("db-1", "a:50", "b:50"), on("db-2", "c:10")),
			max:   100,
			moves: []Move{}, after: map[string]int64{"db-1": 100, "db-2": 10},
		},
		{
			name: "one tenant is enough: the lightest such moves",
			in:   join(on("db-1", "a:70", "b:30", "c:20", "d:5"), on("db-2", "e:10")),
			max:  100,
			// excess 25: b (30) is the lightest tenant that alone is enough.
			moves: []Move{{"b", "db-1", "db-2", 30}}, after: map[string]int64{"db-1": 95, "db-2": 40},
		},
		{
			name: "none is enough alone: heaviest first, to the least-loaded hosts",
			in:   join(on("db-1", "a:40", "b:40", "c:40"), on("db-4", "x:5")),
			max:  50,
			add:  []string{"db-3", "db-2"},
			// excess 70: a (heaviest, first id) to db-2 (empty, first name);
			// then excess 30: b, the lightest enough, to db-3 (empty).
			moves: []Move{{"a", "db-1", "db-2", 40}, {"b", "db-1", "db-3", 40}},
			after: map[string]int64{"db-1": 40, "db-2": 40, "db-3": 40, "db-4": 5},
		},
		{
			name: "a tenant too heavy for the least-loaded host is skipped for a lighter one",
			in:   join(on("db-1", "a:60", "b:30", "c:25"), on("db-2", "y:60")),
			max:  100,
			// excess 15: room on db-2 is 40, so a (60) cannot go; b and c
			// are enough alone, c the lightest.
			moves: []Move{{"c", "db-1", "db-2", 25}}, after: map[string]int64{"db-1": 90, "db-2": 85},
		},
		{
			name: "heaviest overloaded host first; an added host takes tenants",
			in:   join(on("db-1", "a:80", "b:60"), on("db-2", "c:70", "d:35")),
			max:  100,
			add:  []string{"db-new"},
			// db-1 (140) first: excess 40, b (60) to db-new; then db-2
			// (105): excess 5, db-new (60) is the least loaded, c (70) does
			// not fit there, d (35) does.
			moves: []Move{{"b", "db-1", "db-new", 60}, {"d", "db-2", "db-new", 35}},
			after: map[string]int64{"db-1": 80, "db-2": 70, "db-new": 95},
		},
		{
			name:  "a tenant heavier than the bound",
			in:    on("db-1", "big:150", "s:10"),
			max:   100,
			add:   []string{"db-2"},
			moves: []Move{},
			unresolved: []Unresolved{{Host: "db-1", Weight: 160, Excess: 60, Reason: ReasonTenantTooHeavy, Tenants: []string{"big"},
				Detail: "tenant big weighs 150, more than the bound 100 on its own: no host can take it"}},
			after: map[string]int64{"db-1": 160, "db-2": 0},
		},
		{
			name:  "one host, nowhere to go",
			in:    on("db-1", "a:60", "b:60"),
			max:   100,
			moves: []Move{},
			unresolved: []Unresolved{{Host: "db-1", Weight: 120, Excess: 20, Reason: ReasonNoTarget,
				Detail: "there is no other host to move tenants to: add a host"}},
			after: map[string]int64{"db-1": 120},
		},
		{
			name:  "one host and an added one",
			in:    on("db-1", "a:60", "b:60"),
			max:   100,
			add:   []string{"db-9", "db-1"}, // db-1 is a host already
			moves: []Move{{"a", "db-1", "db-9", 60}},
			after: map[string]int64{"db-1": 60, "db-9": 60},
		},
		{
			name:  "not enough room in total",
			in:    join(on("db-1", "a:30", "b:30", "c:30", "d:30"), on("db-2", "e:90")),
			max:   100,
			moves: []Move{},
			unresolved: []Unresolved{{Host: "db-1", Weight: 120, Excess: 20, Reason: ReasonNoRoom,
				Detail: "20 must move off it, but the other hosts have room for only 10 under the bound 100: add a host"}},
			after: map[string]int64{"db-1": 120, "db-2": 90},
		},
		{
			name:  "room enough but in pieces too small",
			in:    join(on("db-1", "a:60", "b:60"), on("db-2", "c:50"), on("db-3", "d:50")),
			max:   100,
			moves: []Move{},
			unresolved: []Unresolved{{Host: "db-1", Weight: 120, Excess: 20, Reason: ReasonNoFit,
				Detail: "20 must move off it and the other hosts have room for 100 under the bound 100, but in pieces (the largest 50) its tenants do not fit: add a host, or move other tenants first"}},
			after: map[string]int64{"db-1": 120, "db-2": 50, "db-3": 50},
		},
		{
			name: "a host that cannot be fixed keeps its tenants and leaves the room to one that can",
			in:   join(on("db-1", "a:60", "b:60", "c:60"), on("db-2", "d:80", "e:30"), on("db-3", "f:40")),
			max:  100,
			// db-1 (180, excess 80) first: a would fill db-3, then nothing
			// fits: undone. db-2 (110, excess 10): e (30) to db-3.
			moves: []Move{{"e", "db-2", "db-3", 30}},
			unresolved: []Unresolved{{Host: "db-1", Weight: 180, Excess: 80, Reason: ReasonNoRoom,
				Detail: "80 must move off it, but the other hosts have room for only 60 under the bound 100: add a host"}},
			after: map[string]int64{"db-1": 180, "db-2": 80, "db-3": 70},
		},
		{
			name:  "tenants of weight 0 never move",
			in:    on("db-1", "z0:0", "z1:0", "a:101"),
			max:   100,
			add:   []string{"db-2"},
			moves: []Move{},
			unresolved: []Unresolved{{Host: "db-1", Weight: 101, Excess: 1, Reason: ReasonTenantTooHeavy, Tenants: []string{"a"},
				Detail: "tenant a weighs 101, more than the bound 100 on its own: no host can take it"}},
			after: map[string]int64{"db-1": 101, "db-2": 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Build(tc.in, Options{MaxLoad: tc.max, AddHosts: tc.add})
			if err != nil {
				t.Fatal(err)
			}
			if tc.unresolved == nil {
				tc.unresolved = []Unresolved{}
			}
			if diff := cmp.Diff(tc.moves, p.Moves); diff != "" {
				t.Errorf("moves (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.unresolved, p.Unresolved); diff != "" {
				t.Errorf("unresolved (-want +got):\n%s", diff)
			}
			after := map[string]int64{}
			for _, h := range p.Hosts {
				after[h.Host] = h.WeightAfter
			}
			if diff := cmp.Diff(tc.after, after); diff != "" {
				t.Errorf("weights after (-want +got):\n%s", diff)
			}
			if p.Resolved() != (len(tc.unresolved) == 0) {
				t.Errorf("Resolved() = %v with %d unresolved", p.Resolved(), len(tc.unresolved))
			}
		})
	}
}

// TestBuildAddedHosts: an added host is listed (Added, after the hosts of
// its weight) even when nothing moves to it; an added name that is already
// a host is that host.
func TestBuildAddedHosts(t *testing.T) {
	t.Parallel()
	p, err := Build(on("db-1", "a:10"), Options{AddHosts: []string{"db-z", "db-1", "db-0", "db-z"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range p.Hosts {
		got = append(got, fmt.Sprintf("%s:%d:%v", h.Host, h.Weight, h.Added))
	}
	if diff := cmp.Diff([]string{"db-1:10:false", "db-0:0:true", "db-z:0:true"}, got); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
}

// TestBuildRefuses: bad input is an error naming what is wrong.
func TestBuildRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []Tenant
		opt  Options
		want string
	}{
		{[]Tenant{{ID: "", Host: "h"}}, Options{}, "a tenant has no id"},
		{[]Tenant{{ID: "a", Host: "h"}, {ID: "a", Host: "g"}}, Options{}, "tenant a: listed twice"},
		{[]Tenant{{ID: "a", Host: "h", Weight: -1}}, Options{}, "tenant a: weight -1: must not be negative"},
		{[]Tenant{{ID: "a", Host: "h", Weight: 1 << 62}, {ID: "b", Weight: 1 << 62}}, Options{}, "the total weight is too large to count"},
		{nil, Options{Top: -1}, "top -1: must not be negative"},
		{nil, Options{MaxLoad: -5}, "max load -5: must not be negative"},
		{nil, Options{AddHosts: []string{""}}, "an added host has no name"},
	} {
		_, err := Build(tc.in, tc.opt)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Build(%v, %+v) = %v, want %q", tc.in, tc.opt, err, tc.want)
		}
	}
}

// TestBuildProperties: for random tenants, hosts and bounds, the plan is
// sound: each move takes a tenant from where it is to another host that
// stays within the bound, no tenant moves twice, weight is conserved and
// the hosts' after-figures are what the moves give; every host is within
// the bound after the moves unless reported unresolved, and then it kept
// its tenants and its reason holds; hosts within the bound are never
// sources; and the plan does not depend on the order of its input.
func TestBuildProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		hostNames := []string{"db-a", "db-b", "db-c", "db-d", "db-e"}[:rapid.IntRange(1, 5).Draw(rt, "hosts")]
		n := rapid.IntRange(0, 40).Draw(rt, "tenants")
		bound := rapid.Int64Range(1, 300).Draw(rt, "max")
		var in []Tenant
		for i := range n {
			h := rapid.SampledFrom(append([]string{""}, hostNames...)).Draw(rt, "host")
			w := rapid.Int64Range(0, 120).Draw(rt, "weight")
			in = append(in, Tenant{ID: fmt.Sprintf("t%02d", i), Host: h, Weight: w})
		}
		add := rapid.SliceOfN(rapid.SampledFrom([]string{"db-new1", "db-new2", "db-a"}), 0, 2).Draw(rt, "add")
		opt := Options{Top: rapid.IntRange(0, 3).Draw(rt, "top"), MaxLoad: bound, AddHosts: add}
		p, err := Build(in, opt)
		if err != nil {
			rt.Fatal(err)
		}

		// Replay the moves.
		where := map[string]string{}
		weight := map[string]int64{}
		load := map[string]int64{}
		count := map[string]int{}
		var total int64
		for _, t := range in {
			where[t.ID], weight[t.ID] = t.Host, t.Weight
			total += t.Weight
			if t.Host != "" {
				load[t.Host] += t.Weight
				count[t.Host]++
			}
		}
		known := map[string]bool{}
		for _, h := range p.Hosts {
			known[h.Host] = true
		}
		before := map[string]int64{}
		for h, l := range load {
			before[h] = l
		}
		moved := map[string]bool{}
		sources := map[string]bool{}
		for _, m := range p.Moves {
			switch {
			case moved[m.Tenant]:
				rt.Fatalf("tenant %s moves twice", m.Tenant)
			case where[m.Tenant] != m.From:
				rt.Fatalf("move %+v: the tenant is on %q", m, where[m.Tenant])
			case m.To == m.From || !known[m.To]:
				rt.Fatalf("move %+v: bad target", m)
			case m.Weight != weight[m.Tenant] || m.Weight == 0:
				rt.Fatalf("move %+v: the tenant weighs %d", m, weight[m.Tenant])
			case load[m.To]+m.Weight > bound:
				rt.Fatalf("move %+v takes %s to %d, over the bound %d", m, m.To, load[m.To]+m.Weight, bound)
			case before[m.From] <= bound:
				rt.Fatalf("move %+v: from a host within the bound", m)
			}
			moved[m.Tenant], sources[m.From] = true, true
			where[m.Tenant] = m.To
			load[m.From] -= m.Weight
			load[m.To] += m.Weight
			count[m.From]--
			count[m.To]++
		}
		var sum int64
		for _, h := range p.Hosts {
			sum += h.WeightAfter
			if h.WeightAfter != load[h.Host] || h.TenantsAfter != count[h.Host] {
				rt.Fatalf("host %s: after %d/%d, the moves give %d/%d", h.Host, h.WeightAfter, h.TenantsAfter, load[h.Host], count[h.Host])
			}
		}
		if sum+p.NoDatabase.Weight != total || p.Weight != total {
			rt.Fatalf("weight not conserved: %d on hosts + %d apart, total %d, input %d", sum, p.NoDatabase.Weight, p.Weight, total)
		}

		// Within the bound, or reported.
		unresolved := map[string]Unresolved{}
		for _, u := range p.Unresolved {
			unresolved[u.Host] = u
		}
		for _, host := range p.Hosts {
			h, l := host.Host, load[host.Host]
			u, reported := unresolved[h]
			switch {
			case !reported && l > bound:
				rt.Fatalf("host %s at %d, over the bound %d, not reported", h, l, bound)
			case reported && (sources[h] || l != before[h] || u.Weight != l || u.Excess != l-bound || l <= bound):
				rt.Fatalf("unresolved %+v: moved from %v, load %d (was %d)", u, sources[h], l, before[h])
			}
		}
		if p.Resolved() != (len(p.Unresolved) == 0) {
			rt.Fatal("Resolved() disagrees with Unresolved")
		}
		// The reasons that claim impossibility hold.
		for _, u := range p.Unresolved {
			switch u.Reason {
			case ReasonTenantTooHeavy:
				for _, id := range u.Tenants {
					if weight[id] <= bound || where[id] != u.Host {
						rt.Fatalf("%+v: %s weighs %d on %s", u, id, weight[id], where[id])
					}
				}
			case ReasonNoTarget:
				if len(p.Hosts) != 1 {
					rt.Fatalf("%+v with %d hosts", u, len(p.Hosts))
				}
			case ReasonNoRoom:
				// Later moves only take room, so the room left at the end
				// is at most what there was when it was judged.
				var room int64
				for _, h := range p.Hosts {
					if l := load[h.Host]; h.Host != u.Host && l < bound {
						room += bound - l
					}
				}
				if room >= u.Excess {
					rt.Fatalf("%+v, yet the other hosts have room for %d", u, room)
				}
			case ReasonNoFit:
			default:
				rt.Fatalf("%+v: unknown reason", u)
			}
		}

		// Deterministic: the same plan from the input in another order.
		shuffled := rapid.Permutation(in).Draw(rt, "shuffled")
		q, err := Build(shuffled, opt)
		if err != nil {
			rt.Fatal(err)
		}
		if diff := cmp.Diff(p, q); diff != "" {
			rt.Fatalf("another input order, another plan (-first +second):\n%s", diff)
		}
	})
}

// BenchmarkBuild plans 1,000,000 tenants on 100 hosts, ten of them 30%
// over the bound, by users-like weights. -short: 10,000 tenants, a smoke
// run: its figures mean nothing.
func BenchmarkBuild(b *testing.B) {
	const hosts = 100
	n := benchsize.Pick(1_000_000, 10_000)
	in := make([]Tenant, n)
	var total int64
	for i := range in {
		h := i % hosts
		if i%7 == 0 { // ten hosts get extra tenants
			h = i % 10
		}
		w := int64(1 + (i*7919)%500)
		in[i] = Tenant{ID: fmt.Sprintf("t%07d", i), Host: fmt.Sprintf("db-%03d", h), Weight: w}
		total += w
	}
	opt := Options{Top: 3, MaxLoad: total / hosts * 13 / 10}
	b.ReportAllocs()
	for b.Loop() {
		p, err := Build(in, opt)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(p.Moves)), "moves")
	}
}
