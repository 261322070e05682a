package lease

import (
	"fmt"
	"maps"
	"math"
	"time"
)

// Observer judges expiry as one worker sees it: a lease has expired when
// its owner and counter have stayed the same for Duration since this
// observer first saw them so, by its own clock. A dead owner's lease is
// therefore seen expired at most Duration plus one scan after its last
// write, whatever the clocks of the other workers say.
type Observer struct {
	// Me is the observing worker: its own leases never expire here.
	Me string
	// Duration is the lease duration.
	Duration time.Duration

	seen map[string]observation
}

type observation struct {
	owner   string
	counter int64
	since   time.Time
}

// NewObserver returns an Observer of worker me for leases of duration d.
func NewObserver(me string, d time.Duration) *Observer {
	return &Observer{Me: me, Duration: d, seen: map[string]observation{}}
}

// Observe records leases as read at now.
func (o *Observer) Observe(now time.Time, leases []Lease) {
	if o.seen == nil {
		o.seen = map[string]observation{}
	}
	for _, l := range leases {
		s, ok := o.seen[l.Key]
		if !ok || s.owner != l.Owner || s.counter != l.Counter {
			o.seen[l.Key] = observation{owner: l.Owner, counter: l.Counter, since: now}
		}
	}
}

// Expired reports whether l, held by another worker, has expired at now.
// A lease never observed counts as expired: observe before judging.
func (o *Observer) Expired(now time.Time, l Lease) bool {
	return l.Owner != "" && l.Owner != o.Me && now.Sub(o.seen[l.Key].since) >= o.Duration
}

// NextExpiry returns how long after now the first lease held by another
// worker will expire, if that is sooner than limit; limit otherwise. Keys
// for which skip returns true are left out.
func (o *Observer) NextExpiry(now time.Time, limit time.Duration, skip func(key string) bool) time.Duration {
	wait := limit
	for key, s := range o.seen {
		if s.owner == "" || s.owner == o.Me || skip != nil && skip(key) {
			continue
		}
		if d := s.since.Add(o.Duration).Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	return wait
}

// Input is what Balance decides from.
type Input struct {
	// Me is the worker planning.
	Me string
	// Leases are the group's leases as read, in the order to take them.
	Leases []Lease
	// Expired reports whether another worker's lease has expired
	// (Observer.Expired); nil: none has.
	Expired func(Lease) bool
	// Holds reports whether this worker works on l's key now. A lease the
	// table names this worker's that Holds denies is adopted; one the table
	// names another's (or free) that Holds claims is lost. Nil: holds
	// nothing.
	Holds func(Lease) bool
	// Eligible says which leases may be worked on now (Kinesis: not
	// finished and every parent finished); nil: all. The others are left
	// alone and do not count towards shares.
	Eligible func(Lease) bool
	// Workers are workers known to be live besides this one and those the
	// leases show (owners of unexpired leases, workers asking for one): a
	// membership list. Nil: the leases say who is live.
	Workers []string
	// Weights are the workers' capacities (their shares are in proportion);
	// a worker absent has weight 1. Weights must be finite and not
	// negative; a worker of weight 0 gets no share. Give Workers with
	// them: a worker holding nothing and asking for nothing is otherwise
	// unknown to the others, which keep its share (with equal weights
	// that costs at most one lease each; with weights, more).
	Weights map[string]float64
	// MaxSteals caps the steal requests of one plan; 0: as many as this
	// worker lacks and the most loaded worker has over its share.
	MaxSteals int
	// Weight, if set, is each eligible lease's weight (the tenants of a
	// work pool's bucket): a whole number, 0 or more. The plan then shares
	// weight instead of leases (see "Balance by weight" in the package
	// comment): use its TakesByWeight, StealsByWeight and YieldByWeight,
	// not Take's order with Target, Steals and Yield. Nil: every lease
	// weighs 1 and the plan shares leases, as without it.
	Weight func(Lease) float64
}

// Plan is Balance's answer: what this worker should do now.
type Plan struct {
	// Adopt are leases the table names this worker's that it does not
	// work on (a take whose answer was lost, a handover to it): renew,
	// then start them.
	Adopt []Lease
	// Lost are leases this worker works on that the table names another's
	// or free: stop them.
	Lost []Lease
	// Take are the free leases, then the expired ones, in Input order:
	// take them one by one while holding fewer than Target.
	Take []Lease
	// Target is this worker's share.
	Target int
	// Shares and Counts are each live worker's share, and how many
	// eligible leases the table says it holds; Counts[Me] is 0: what this
	// worker holds is the caller's to count (Steals' and Yield's held).
	Shares, Counts map[string]int
	// PendingForMe is whether this worker has asked for a lease already
	// and not got it: it asks for no other meanwhile.
	PendingForMe bool

	// With Input.Weight: TargetWeight is this worker's share of the
	// total weight; WeightShares and Loads are each live worker's share
	// and the weight the table says it holds (Loads[Me] is 0, as Counts).
	TargetWeight        float64
	WeightShares, Loads map[string]float64

	me        string
	eligible  []Lease
	maxSteals int
	weights   map[string]float64
	// With Input.Weight: the eligible leases' weights by key, the
	// expired ones, the total, and the weight handed over by this plan
	// (YieldByWeight) by receiver.
	leaseWeight map[string]float64
	expired     map[string]bool
	totalWeight float64
	handed      map[string]float64
}

// Balance plans this worker's next moves. It is deterministic: the same
// input gives the same plan.
func Balance(in Input) (*Plan, error) {
	for w, x := range in.Weights {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return nil, fmt.Errorf("lease balance: weight %v of worker %q: want a finite number, 0 or more", x, w)
		}
	}
	if in.MaxSteals < 0 {
		return nil, fmt.Errorf("lease balance: MaxSteals %d: want 0 (no cap) or more", in.MaxSteals)
	}
	var leaseWeight map[string]float64
	if in.Weight != nil {
		leaseWeight = map[string]float64{}
	}
	holds := in.Holds
	if holds == nil {
		holds = func(Lease) bool { return false }
	}
	expired := in.Expired
	if expired == nil {
		expired = func(Lease) bool { return false }
	}
	p := &Plan{me: in.Me, maxSteals: in.MaxSteals, weights: in.Weights, Counts: map[string]int{in.Me: 0}}
	p.eligible = in.Leases
	if in.Eligible != nil {
		p.eligible = nil
		for _, l := range in.Leases {
			if in.Eligible(l) {
				p.eligible = append(p.eligible, l)
			}
		}
	}
	for _, w := range in.Workers {
		if _, ok := p.Counts[w]; !ok && w != "" {
			p.Counts[w] = 0
		}
	}
	for _, l := range p.eligible {
		// A worker asking for a lease is alive, even holding none; but
		// not one that asked a dead owner: it may be dead itself, and a
		// take clears the request.
		if _, ok := p.Counts[l.Pending]; l.Pending != "" && !ok && l.Owner != "" && (l.Owner == in.Me || !expired(l)) {
			p.Counts[l.Pending] = 0
		}
	}
	if leaseWeight != nil {
		p.leaseWeight, p.expired, p.handed, p.Loads = leaseWeight, map[string]bool{}, map[string]float64{}, map[string]float64{in.Me: 0}
		for _, l := range p.eligible {
			w := in.Weight(l)
			if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
				return nil, fmt.Errorf("lease balance: weight %v of lease %q: want a finite number, 0 or more", w, l.Key)
			}
			leaseWeight[l.Key] = w
			p.totalWeight += w
		}
	}
	count := func(owner, key string) {
		p.Counts[owner]++
		if p.Loads != nil {
			p.Loads[owner] += leaseWeight[key]
		}
	}
	var free, exp []Lease
	for _, l := range p.eligible {
		switch {
		case l.Owner == in.Me:
			if !holds(l) {
				p.Adopt = append(p.Adopt, l)
			}
		case holds(l):
			p.Lost = append(p.Lost, l)
			if l.Owner != "" {
				count(l.Owner, l.Key)
			}
		case l.Owner == "":
			free = append(free, l)
		case expired(l):
			exp = append(exp, l)
			if p.expired != nil {
				p.expired[l.Key] = true
			}
		default:
			count(l.Owner, l.Key)
			if l.Pending == in.Me {
				p.PendingForMe = true
			}
		}
	}
	p.Take = append(free, exp...)
	p.Shares = shares(len(p.eligible), p.Counts, in.Weights)
	p.Target = p.Shares[in.Me]
	if p.Loads != nil {
		for w := range p.Counts {
			if _, ok := p.Loads[w]; !ok {
				p.Loads[w] = 0
			}
		}
		p.WeightShares = weightShares(p.totalWeight, p.Counts, in.Weights)
		p.TargetWeight = p.WeightShares[in.Me]
	}
	return p, nil
}

// shares gives each worker of counts ceil(n·w/W): with equal weights,
// ceil(n/workers).
func shares(n int, counts map[string]int, weights map[string]float64) map[string]int {
	s := make(map[string]int, len(counts))
	if len(weights) == 0 {
		for w := range counts {
			s[w] = (n + len(counts) - 1) / len(counts)
		}
		return s
	}
	weight := func(w string) float64 {
		if x, ok := weights[w]; ok {
			return x
		}
		return 1
	}
	var total float64
	for w := range counts {
		total += weight(w)
	}
	for w := range counts {
		if total > 0 {
			// The epsilon keeps an exact share (n·w/W whole) from
			// rounding up over a float error.
			s[w] = int(math.Ceil(float64(n)*weight(w)/total - 1e-9))
		}
	}
	return s
}

// Steals returns the steal requests to make once this worker holds held
// leases (after its adoptions and takes): ask of them, trying from in
// order (a request that finds the lease changed is ErrLost: try the next).
// It asks only when short and not already waiting for a handover, and
// only the worker with the largest excess (leases held minus share; ties
// by name), when that excess is positive, or zero while this worker is two
// or more short: asking a worker at its share when one short would only
// make the two trade leases for ever.
func (p *Plan) Steals(held int) (ask int, from []Lease) {
	if held >= p.Target || p.PendingForMe {
		return 0, nil
	}
	victim, excess := "", 0
	for w, n := range p.Counts {
		if w == p.me || n == 0 {
			continue
		}
		e := n - p.Shares[w]
		if victim == "" || e > excess || e == excess && w < victim {
			victim, excess = w, e
		}
	}
	if victim == "" || !(excess > 0 || excess == 0 && held < p.Target-1) {
		return 0, nil
	}
	ask = max(1, min(p.Target-held, excess))
	if p.maxSteals > 0 {
		ask = min(ask, p.maxSteals)
	}
	for _, l := range p.eligible {
		if l.Owner == victim && l.Pending == "" {
			from = append(from, l)
		}
	}
	if len(from) == 0 {
		return 0, nil
	}
	return ask, from
}

// Yield reports whether this worker, holding held leases, should hand a
// lease over to to, which asked for it: when it holds more than its share,
// or exactly its share while to (as last read) is two or more short. A
// worker this plan did not count (it asked after the scan) counts as live
// and holding nothing. A nil Plan (no scan yet) yields. The caller declines
// what it does not yield (Store.Decline), so that to asks elsewhere.
func (p *Plan) Yield(held int, to string) bool {
	if p == nil {
		return true
	}
	counts, sh := p.Counts, p.Shares
	if _, ok := counts[to]; !ok {
		counts = maps.Clone(counts)
		counts[to] = 0
		sh = shares(len(p.eligible), counts, p.weights)
	}
	target := sh[p.me]
	return held > target || held == target && counts[to] < sh[to]-1
}
