// Package placement summarises where tenants' data lives (their database
// hosts) and plans moves that bring every host under a load bound: the
// planning half of `tcsctl placement`, whose suggested moves are the input
// of `tcsctl move`. It is pure: it reads nothing and writes nothing, so the
// same tenants and options always give the same plan.
//
// A tenant has a weight (what it costs its host: users, 1, a label's
// number; the caller decides) and a host ("" for a tenant without a
// database, counted apart and never moved). A host's load is the sum of its
// tenants' weights.
//
// The planner is greedy, and deterministic:
//
//  1. Hosts over the bound are taken heaviest first (ties by name).
//  2. From such a host, tenants are moved heaviest first (ties by id), each
//     to the least-loaded other host (ties by name) if it stays within the
//     bound there; a tenant too heavy for that host is skipped for a lighter
//     one. When a single tenant would bring the host within the bound, the
//     lightest such tenant goes instead (as few moves, less data moved).
//     Tenants of weight 0 are never moved: they do not help.
//  3. A host that cannot be brought within the bound this way keeps its
//     tenants (no moves that leave it overloaded anyway, so that the room
//     they would take stays for hosts that can be fixed) and is reported
//     with the reason (see the Reason constants).
//
// A move never takes a host over the bound, a tenant moves at most once
// (a host that received tenants is within the bound and is never a source),
// and the total weight is what it was.
package placement

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Tenant is one tenant as the planner sees it.
type Tenant struct {
	ID string
	// Host is the tenant's database host; "" if it has no database.
	Host string
	// Weight is what the tenant costs its host, 0 or more.
	Weight int64
}

// Options say what to show and what to plan.
type Options struct {
	// Top is how many of its heaviest tenants each host lists (0: none).
	Top int
	// MaxLoad is the bound every host's load should be at or under; 0
	// plans nothing.
	MaxLoad int64
	// AddHosts are empty hosts that may take tenants (new servers). A name
	// that is already a host is that host.
	AddHosts []string
}

// TenantWeight is a tenant and its weight.
type TenantWeight struct {
	Tenant string `json:"tenant"`
	Weight int64  `json:"weight"`
}

// Host is one database host before and after the moves.
type Host struct {
	Host string `json:"host"`
	// Added is true for a host of Options.AddHosts that holds no tenant.
	Added   bool  `json:"added"`
	Tenants int   `json:"tenants"`
	Weight  int64 `json:"weight"`
	// Heaviest are its Options.Top heaviest tenants (before the moves),
	// heaviest first, ties by id.
	Heaviest     []TenantWeight `json:"heaviest"`
	TenantsAfter int            `json:"tenants_after"`
	WeightAfter  int64          `json:"weight_after"`
}

// Move is one suggested move of a tenant's data to another host.
type Move struct {
	Tenant string `json:"tenant"`
	From   string `json:"from"`
	To     string `json:"to"`
	Weight int64  `json:"weight"`
}

// Reasons a host cannot be brought within the bound.
const (
	// ReasonTenantTooHeavy: a tenant of the host weighs more than the bound
	// on its own; no host can take it, and it keeps its host over.
	ReasonTenantTooHeavy = "tenant_too_heavy"
	// ReasonNoTarget: there is no other host to move tenants to.
	ReasonNoTarget = "no_target"
	// ReasonNoRoom: the other hosts' room under the bound, all together, is
	// less than the host's excess.
	ReasonNoRoom = "no_room"
	// ReasonNoFit: there is room enough in total, but the greedy plan found
	// no way to fit the host's tenants into it (the room is split across
	// hosts in pieces smaller than its tenants). Moving other tenants first,
	// or a new host, may help.
	ReasonNoFit = "no_fit"
)

// Unresolved is a host the plan leaves over the bound, and why.
type Unresolved struct {
	Host string `json:"host"`
	// Weight is its load (unchanged: it keeps its tenants).
	Weight int64 `json:"weight"`
	// Excess is how far over the bound it is.
	Excess int64 `json:"excess"`
	// Reason is one of the Reason constants; Detail says it for people.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// Tenants are, for ReasonTenantTooHeavy, the tenants heavier than the
	// bound, heaviest first.
	Tenants []string `json:"tenants,omitempty"`
}

// Apart counts tenants without a database.
type Apart struct {
	Tenants int   `json:"tenants"`
	Weight  int64 `json:"weight"`
}

// Plan is the placement of a set of tenants and, with a bound, the moves
// suggested. Its JSON form is tcsctl placement's -o json.
type Plan struct {
	// MaxLoad is Options.MaxLoad (0: no plan was made).
	MaxLoad int64 `json:"max_load"`
	// Tenants and Weight count every tenant, with a database or not.
	Tenants int   `json:"tenants"`
	Weight  int64 `json:"total_weight"`
	// Hosts are heaviest first (by weight before the moves), ties by name;
	// added hosts come after the others of their weight.
	Hosts      []Host `json:"hosts"`
	NoDatabase Apart  `json:"no_database"`
	// Moves are in the order planned: source hosts heaviest first, each
	// host's moves in the order chosen.
	Moves []Move `json:"moves"`
	// Unresolved are the hosts left over the bound, heaviest first.
	Unresolved []Unresolved `json:"unresolved"`
}

// Resolved reports whether every host is within the bound after the moves
// (always, without a bound).
func (p *Plan) Resolved() bool { return len(p.Unresolved) == 0 }

// host is a host while planning.
type host struct {
	name    string
	added   bool
	tenants []Tenant // heaviest first, ties by id
	load    int64
	count   int
}

// Build groups tenants by host and, with opt.MaxLoad, plans moves. It
// refuses bad input: a tenant without an id or listed twice, a negative
// weight, a negative Top or MaxLoad, an empty added host name, or weights
// whose sum does not fit an int64.
func Build(tenants []Tenant, opt Options) (*Plan, error) {
	if opt.Top < 0 {
		return nil, fmt.Errorf("top %d: must not be negative", opt.Top)
	}
	if opt.MaxLoad < 0 {
		return nil, fmt.Errorf("max load %d: must not be negative", opt.MaxLoad)
	}
	p := &Plan{MaxLoad: opt.MaxLoad, Hosts: []Host{}, Moves: []Move{}, Unresolved: []Unresolved{}}
	byName := map[string]*host{}
	seen := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		switch {
		case t.ID == "":
			return nil, errors.New("a tenant has no id")
		case seen[t.ID]:
			return nil, fmt.Errorf("tenant %s: listed twice", t.ID)
		case t.Weight < 0:
			return nil, fmt.Errorf("tenant %s: weight %d: must not be negative", t.ID, t.Weight)
		}
		seen[t.ID] = true
		var ok bool
		if p.Weight, ok = add(p.Weight, t.Weight); !ok {
			return nil, errors.New("the total weight is too large to count")
		}
		p.Tenants++
		if t.Host == "" {
			p.NoDatabase.Tenants++
			p.NoDatabase.Weight += t.Weight
			continue
		}
		h := byName[t.Host]
		if h == nil {
			h = &host{name: t.Host}
			byName[t.Host] = h
		}
		h.tenants = append(h.tenants, t)
		h.load += t.Weight
		h.count++
	}
	for _, name := range opt.AddHosts {
		if name == "" {
			return nil, errors.New("an added host has no name")
		}
		if byName[name] == nil {
			byName[name] = &host{name: name, added: true}
		}
	}
	hosts := make([]*host, 0, len(byName))
	for _, h := range byName {
		slices.SortFunc(h.tenants, heavierFirst)
		hosts = append(hosts, h)
	}
	slices.SortFunc(hosts, func(a, b *host) int {
		if c := cmp.Compare(b.load, a.load); c != 0 {
			return c
		}
		if a.added != b.added {
			if a.added {
				return 1
			}
			return -1
		}
		return strings.Compare(a.name, b.name)
	})
	for _, h := range hosts {
		top := h.tenants[:min(opt.Top, len(h.tenants))]
		hw := make([]TenantWeight, len(top))
		for i, t := range top {
			hw[i] = TenantWeight{Tenant: t.ID, Weight: t.Weight}
		}
		p.Hosts = append(p.Hosts, Host{Host: h.name, Added: h.added, Tenants: h.count, Weight: h.load, Heaviest: hw})
	}
	if opt.MaxLoad > 0 {
		p.Moves, p.Unresolved = plan(hosts, opt.MaxLoad)
	}
	for i, h := range hosts { // hosts and p.Hosts are in the same order
		p.Hosts[i].TenantsAfter, p.Hosts[i].WeightAfter = h.count, h.load
	}
	return p, nil
}

// add is a + b for non-negative a and b, and whether it fits an int64.
func add(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

func heavierFirst(a, b Tenant) int {
	if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// plan moves tenants off hosts over bound, changing the hosts' loads and
// counts to what they are after the moves. hosts are heaviest first, ties
// by name, the order in which overloaded hosts are taken.
func plan(hosts []*host, bound int64) ([]Move, []Unresolved) {
	moves, unresolved := []Move{}, []Unresolved{}
	for _, h := range hosts {
		if h.load <= bound {
			continue
		}
		ms, targets, ok := relieve(h, hosts, bound)
		if ok {
			moves = append(moves, ms...)
			continue
		}
		// Undo: it keeps its tenants, the targets their room.
		for i, m := range ms {
			targets[i].load -= m.Weight
			targets[i].count--
			h.load += m.Weight
			h.count++
		}
		unresolved = append(unresolved, why(h, hosts, bound))
	}
	return moves, unresolved
}

// relieve moves tenants off h until its load is within bound, as the
// package comment says, and reports whether it got there; the moves it made
// (and their targets) are applied to the hosts' loads either way.
func relieve(h *host, hosts []*host, bound int64) (moves []Move, targets []*host, ok bool) {
	// Candidates heaviest first, ties by id, weight 0 left out.
	cands := h.tenants
	for len(cands) > 0 && cands[len(cands)-1].Weight == 0 {
		cands = cands[:len(cands)-1]
	}
	// Within one call only targets gain load, so the room of the
	// least-loaded one only shrinks: a tenant too heavy for it now is too
	// heavy for good, and next is the first candidate not yet moved or
	// skipped.
	next := 0
	for h.load > bound {
		to := leastLoaded(hosts, h)
		if to == nil {
			return moves, targets, false
		}
		room := bound - to.load
		for next < len(cands) && cands[next].Weight > room {
			next++
		}
		if next == len(cands) {
			return moves, targets, false
		}
		excess := h.load - bound
		// [0, enough) weigh at least excess; [next, len) fit.
		enough := sort.Search(len(cands), func(i int) bool { return cands[i].Weight < excess })
		pick := next
		if enough > next {
			// The lightest tenant that alone is enough, the first id of its
			// weight.
			w := cands[enough-1].Weight
			pick = max(next, sort.Search(len(cands), func(i int) bool { return cands[i].Weight <= w }))
		} else {
			next++
		}
		t := cands[pick]
		h.load -= t.Weight
		h.count--
		to.load += t.Weight
		to.count++
		moves = append(moves, Move{Tenant: t.ID, From: h.name, To: to.name, Weight: t.Weight})
		targets = append(targets, to)
	}
	return moves, targets, true
}

// leastLoaded is the host other than h with the smallest load, ties by
// name; nil if there is none.
func leastLoaded(hosts []*host, h *host) *host {
	var best *host
	for _, o := range hosts {
		if o == h {
			continue
		}
		if best == nil || o.load < best.load || o.load == best.load && o.name < best.name {
			best = o
		}
	}
	return best
}

// why says why h cannot be brought within bound.
func why(h *host, hosts []*host, bound int64) Unresolved {
	u := Unresolved{Host: h.name, Weight: h.load, Excess: h.load - bound}
	for _, t := range h.tenants {
		if t.Weight > bound {
			u.Tenants = append(u.Tenants, t.ID)
		}
	}
	var room, largest int64
	others := 0
	for _, o := range hosts {
		if o == h {
			continue
		}
		others++
		if r := bound - o.load; r > 0 {
			room += r
			largest = max(largest, r)
		}
	}
	switch {
	case len(u.Tenants) > 0:
		u.Reason = ReasonTenantTooHeavy
		t := h.tenants[0]
		u.Detail = fmt.Sprintf("tenant %s weighs %d, more than the bound %d on its own: no host can take it", t.ID, t.Weight, bound)
		if n := len(u.Tenants); n > 1 {
			u.Detail = fmt.Sprintf("%d tenants weigh more than the bound %d on their own (the heaviest, %s, %d): no host can take them", n, bound, t.ID, t.Weight)
		}
	case others == 0:
		u.Reason = ReasonNoTarget
		u.Detail = "there is no other host to move tenants to: add a host"
	case room < u.Excess:
		u.Reason = ReasonNoRoom
		u.Detail = fmt.Sprintf("%d must move off it, but the other hosts have room for only %d under the bound %d: add a host", u.Excess, room, bound)
	default:
		u.Reason = ReasonNoFit
		u.Detail = fmt.Sprintf("%d must move off it and the other hosts have room for %d under the bound %d, but in pieces (the largest %d) its tenants do not fit: add a host, or move other tenants first", u.Excess, room, bound, largest)
	}
	return u
}
