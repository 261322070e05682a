package lease

import (
	"cmp"
	"maps"
	"math"
	"slices"
)

// Balance by weight: the rules of a plan made with Input.Weight. The
// numbers are the constants below and the package comment's statement.

// bandDivisor sets each worker's tolerance band: a worker within
// share/bandDivisor of its share (either way) neither asks nor is asked
// for a lease on its own account.
const bandDivisor = 20

// marginDivisor and minMargin set the margin m: a handover of weight w
// from a worker of deviation e (load minus share) to one of deviation d
// is made only if w ≤ e − d − m, so that it lowers Σ deviation² by at
// least 2·w·m and weights that drift by less than m do not undo it.
const (
	marginDivisor = 40
	minMargin     = 1
)

// weightShares gives each worker of counts its share of total: total·w/W.
func weightShares(total float64, counts map[string]int, weights map[string]float64) map[string]float64 {
	weight := func(w string) float64 {
		if x, ok := weights[w]; ok {
			return x
		}
		return 1
	}
	var sum float64
	for w := range counts {
		sum += weight(w)
	}
	s := make(map[string]float64, len(counts))
	for w := range counts {
		if sum > 0 {
			s[w] = total * weight(w) / sum
		} else {
			s[w] = 0
		}
	}
	return s
}

// margin is m for shares: max(minMargin, the smallest positive share /
// marginDivisor).
func margin(shares map[string]float64) float64 {
	low := math.Inf(1)
	for _, s := range shares {
		if s > 0 && s < low {
			low = s
		}
	}
	if math.IsInf(low, 1) {
		return minMargin
	}
	return max(minMargin, low/marginDivisor)
}

// Margin is the plan's margin m (Input.Weight): a handover of weight w
// from a worker of deviation e to one of deviation d needs w ≤ e − d − m.
func (p *Plan) Margin() float64 { return margin(p.WeightShares) }

// WeightOf returns the weight of the eligible lease key as planned: 1
// without Input.Weight, 0 for a key the plan does not know.
func (p *Plan) WeightOf(key string) float64 {
	if p.leaseWeight == nil {
		if slices.ContainsFunc(p.eligible, func(l Lease) bool { return l.Key == key }) {
			return 1
		}
		return 0
	}
	return p.leaseWeight[key]
}

// TakesByWeight returns what to take once this worker holds load (after
// its adoptions): the free and expired leases of weight 0 (they change
// nobody's load: whoever sees one first takes it, so that every lease is
// held), then others one by one while the load is below TargetWeight, each
// time the one that brings the load nearest the target (free before
// expired, then Input order, on ties), so that takers overshoot little and
// leave enough for the others. Those lost to a quicker worker are made up
// for at the next plan.
func (p *Plan) TakesByWeight(load float64) []Lease {
	var out, rest []Lease
	for _, l := range p.Take {
		if p.WeightOf(l.Key) == 0 {
			out = append(out, l)
		} else {
			rest = append(rest, l)
		}
	}
	for load < p.TargetWeight && len(rest) > 0 {
		best, bestGap := 0, math.Inf(1)
		for i, l := range rest {
			if gap := math.Abs(load + p.WeightOf(l.Key) - p.TargetWeight); gap < bestGap {
				best, bestGap = i, gap
			}
		}
		out = append(out, rest[best])
		load += p.WeightOf(rest[best].Key)
		rest = slices.Delete(rest, best, best+1)
	}
	return out
}

// StealsByWeight returns the steal requests to make once this worker holds
// load (after its adoptions and takes), in order: ask for each (one that
// finds the lease changed is ErrLost: skip it). It asks only when below
// its share, not already waiting for a handover, and when itself or the
// worker asked is outside its tolerance band (share/20 either way): of
// the worker furthest over its share that has a lease to give, leases of
// weight w ≤ e − d − m (e its deviation, d this worker's, both updated
// after each pick), picked one by one closest to (e − d)/2, so that both
// end near their shares.
func (p *Plan) StealsByWeight(load float64) []Lease {
	if p.Loads == nil || p.PendingForMe {
		return nil
	}
	mine := load - p.TargetWeight
	if mine >= 0 {
		return nil
	}
	m := p.Margin()
	victims := make([]string, 0, len(p.Loads))
	for w, l := range p.Loads {
		if w != p.me && l > 0 {
			victims = append(victims, w)
		}
	}
	dev := func(w string) float64 { return p.Loads[w] - p.WeightShares[w] }
	slices.SortFunc(victims, func(a, b string) int {
		if c := cmp.Compare(dev(b), dev(a)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, v := range victims {
		dv := dev(v)
		if dv <= 0 || !(-mine > p.TargetWeight/bandDivisor || dv > p.WeightShares[v]/bandDivisor) {
			continue
		}
		var cands []Lease
		for _, l := range p.eligible {
			if l.Owner == v && l.Pending == "" && !p.expired[l.Key] && p.leaseWeight[l.Key] > 0 {
				cands = append(cands, l)
			}
		}
		var picked []Lease
		d := mine
		for dv > 0 && d < 0 && (p.maxSteals == 0 || len(picked) < p.maxSteals) {
			best, bestScore := -1, math.Inf(1)
			for i, l := range cands {
				w := p.leaseWeight[l.Key]
				if w > dv-d-m {
					continue
				}
				if s := math.Abs(w - (dv-d)/2); s < bestScore {
					best, bestScore = i, s
				}
			}
			if best < 0 {
				break
			}
			w := p.leaseWeight[cands[best].Key]
			picked = append(picked, cands[best])
			cands = slices.Delete(cands, best, best+1)
			dv -= w
			d += w
		}
		if len(picked) > 0 {
			return picked
		}
	}
	return nil
}

// YieldByWeight reports whether this worker, holding load, should hand
// the lease key over to to, which asked for it: when to is below its share
// (as last read, plus what this plan handed it already) and the lease's
// weight w ≤ e − d − m (e this worker's deviation, d to's, m the margin):
// so this worker may end below its share, but only when to was shorter
// still. A handover it reports is counted as to's from
// then on. A worker this plan did not count (it asked after the scan)
// counts as live and holding nothing. A nil Plan (no scan yet) yields.
// The caller declines what it does not yield (Store.Decline).
func (p *Plan) YieldByWeight(load float64, key, to string) bool {
	if p == nil {
		return true
	}
	if p.Loads == nil {
		return p.Yield(int(load), to)
	}
	w := p.leaseWeight[key]
	if w == 0 {
		return false // moves nothing; the asker asks elsewhere
	}
	shares, loads := p.WeightShares, p.Loads
	if _, ok := loads[to]; !ok {
		counts := maps.Clone(p.Counts)
		counts[to] = 0
		shares = weightShares(p.totalWeight, counts, p.weights)
		loads = maps.Clone(loads)
		loads[to] = 0
	}
	mine := load - shares[p.me]
	theirs := loads[to] + p.handed[to] - shares[to]
	if theirs >= 0 || w > mine-theirs-margin(shares) {
		return false
	}
	p.handed[to] += w
	return true
}
