package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// maxBatch is the most hostnames the server takes in one BatchLookup.
const maxBatch = 100

// Result is the outcome of one hostname of a BatchLookup: Tenant set and Err
// nil, or Err one of Lookup's errors.
type Result struct {
	// Hostname as it was asked.
	Hostname string
	// Tenant is shared with the cache: do not modify it.
	Tenant *tenant.Tenant
	Meta   Meta
	Err    error
}

// BatchLookup looks up several hostnames, answering what it can from the
// cache and the rest in BatchLookup RPCs of at most 100 hostnames, each sent
// as a Lookup is (hedged, failing over, bounded by the lookup timeout
// whatever ctx says). Its misses are collapsed with concurrent ones, of
// Lookups and of other BatchLookups: a hostname already being looked up is
// waited for, not asked again. It returns one Result per hostname, in
// order, holding one version of each tenant, none older than one returned
// before (see Monotonic reads); it fails as a whole only if ctx ends or the
// Client is closed.
func (c *Client) BatchLookup(ctx context.Context, hostnames []string) ([]Result, error) {
	results := make([]Result, len(hostnames))
	keys := make([]string, len(hostnames)) // normalised, for the answers with a tenant
	now := c.cache.fast()
	misses := map[string][]int{}
	var order []string
	for i, raw := range hostnames {
		res := &results[i]
		res.Hostname = raw
		if e, st := c.cache.get(raw, now); st == fresh {
			c.hooks.Hit()
			res.Tenant, res.Meta, res.Err = e.answer(now, false)
			keys[i] = raw // cache keys are normalised
			continue
		}
		h, err := tenant.NormalizeHostname(raw)
		if err != nil {
			res.Err = fmt.Errorf("%w %q: %s", ErrInvalidHostname, raw, tenant.ErrorMessage(err))
			continue
		}
		keys[i] = h
		if e, st := c.cache.get(h, now); st == fresh {
			c.hooks.Hit()
			res.Tenant, res.Meta, res.Err = e.answer(now, false)
			continue
		}
		c.hooks.Miss()
		if _, ok := misses[h]; !ok {
			order = append(order, h)
		}
		misses[h] = append(misses[h], i)
	}
	if len(order) == 0 {
		return results, nil
	}

	// Join the flights in progress; lead (in RPCs of maxBatch) the others.
	waits := make([]*flight, len(order))
	var lead []string
	var led []*flight
	for i, h := range order {
		f, l := c.flights.join(h)
		waits[i] = f
		if l {
			lead, led = append(lead, h), append(led, f)
		}
	}
	for len(lead) > 0 {
		n := min(maxBatch, len(lead))
		hs, fs := lead[:n], led[:n]
		lead, led = lead[n:], led[n:]
		go c.batch(ctx, hs, fs)
	}
	for i, h := range order {
		f := waits[i]
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if errors.Is(f.err, ErrClosed) {
			return nil, ErrClosed
		}
		for _, j := range misses[h] {
			res := &results[j]
			res.Tenant, res.Meta, res.Err = c.answer(f, h)
		}
	}
	// The answers of one call hold one version of each tenant: a hit read
	// before a fill of this call returned a newer version of its tenant
	// (for another hostname) gives way to it, as later lookups would.
	for i := range results {
		if res := &results[i]; res.Tenant != nil {
			res.Tenant, res.Meta, res.Err = c.notOlder(keys[i], res.Tenant, res.Meta)
		}
	}
	return results, nil
}

// batch looks up the normalised hostnames, of which it leads the flights,
// in one BatchLookup RPC, and lands each flight with its outcome. A
// hostname answered with an older version of a tenant than the client has
// returned is set aside, and the batch sent to the next region, whose
// answers count for the hostnames still without one; each hostname left
// without one at the end falls back as a Lookup's fill does.
//
// caller is the context of the call that leads the flights: the RPC runs on
// the client's context (the flights' other callers share it), with what
// the carry of WithRPCStats or WithRPCInterceptor takes from caller.
func (c *Client) batch(caller context.Context, hostnames []string, flights []*flight) {
	// Answers put in the cache by a flight that landed just before these
	// started need no RPC.
	now := c.cache.clock()
	ask := hostnames[:0:0]
	var askFlights []*flight
	for i, h := range hostnames {
		if e, st := c.cache.get(h, now); st == fresh {
			c.flights.land(h, flights[i], fillResult{e: e, cached: true}, nil)
			continue
		}
		ask, askFlights = append(ask, h), append(askFlights, flights[i])
	}
	if len(ask) == 0 {
		return
	}
	tk := c.cache.begin()
	ctx, cancel := context.WithTimeout(c.callContext(caller), c.cfg.lookupTimeout)
	defer cancel()
	outs := make([]batchOutcome, len(ask))
	left := len(ask)
	var malformed error // an answer with as many results as hostnames asked
	_, _, err := call(c, ctx, func(ctx context.Context, api tcsv1.TenantContextServiceClient) (*tcsv1.BatchLookupResponse, error) {
		return api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: ask})
	}, func(resp *tcsv1.BatchLookupResponse, r *region) bool {
		results := resp.GetResults()
		if len(results) != len(ask) {
			malformed = fmt.Errorf("%d results for %d hostnames from %s", len(results), len(ask), r.label())
			return true
		}
		region := r.intern(resp.GetRegion())
		now := c.cache.clock()
		for i, res := range results {
			if o := &outs[i]; !o.done {
				o.take(c, ask[i], res, region, now)
				if o.done {
					left--
				}
			}
		}
		return left == 0
	})
	done := c.cache.clock()
	if c.ctx.Err() != nil {
		for i, h := range ask {
			c.flights.land(h, askFlights[i], fillResult{}, ErrClosed)
		}
		return
	}
	if malformed != nil {
		err = malformed
	}
	for i, h := range ask {
		o := &outs[i]
		var f fillResult
		var ferr error
		switch {
		case !o.done:
			f, ferr = c.fallback(h, done, o.behind, unavailable(h, o.behind, err))
		case o.fail != nil:
			f, ferr = c.staleOr(h, done, o.fail)
		case o.err != nil:
			ferr = o.err
		default:
			c.cache.put(h, o.res.e, tk)
			f = o.res
		}
		c.flights.land(h, askFlights[i], f, ferr)
	}
}

// batchOutcome is what the answers of a batch's regions say of one
// hostname.
type batchOutcome struct {
	done   bool       // it has an answer: res, err or fail
	res    fillResult // to cache and return
	err    error      // to return (ErrInvalidHostname)
	fail   error      // an answer that is no answer: fall back to stale
	behind []string   // the tenants of answers set aside as older than returned
}

// take records res, region's result for normalised hostname h, unless it
// is an older version of a tenant than the client has returned.
func (o *batchOutcome) take(c *Client, h string, res *tcsv1.BatchLookupResult, region string, now int64) {
	switch codes.Code(res.GetCode()) {
	case codes.OK:
		t, cerr := tcsv1.TenantFromProto(res.GetTenant())
		if cerr != nil || t == nil {
			c.log.Error("tcs batch lookup: bad tenant in answer", "region", region, "hostname", h, "err", cerr)
			o.done, o.fail = true, fmt.Errorf("%w: bad answer from %s", ErrUnavailable, region)
			return
		}
		// The server's age counts against our TTL, as for Lookup.
		age := res.GetAge().AsDuration()
		e := entry{t: t, readAt: now - int64(max(age, 0)), region: region}
		if !c.cache.accept(h, e) {
			o.behind = appendNew(o.behind, t.ID)
			return
		}
		o.done, o.res = true, fillResult{e: e, stale: res.GetStale()}
	case codes.NotFound:
		o.done, o.res = true, fillResult{e: entry{readAt: now, region: region}}
	case codes.InvalidArgument:
		o.done, o.err = true, fmt.Errorf("%w %q: %s", ErrInvalidHostname, h, res.GetMessage())
	default:
		o.done, o.fail = true, fmt.Errorf("%w: lookup %s: %s", ErrUnavailable, h,
			status.New(codes.Code(res.GetCode()), res.GetMessage()).Err())
	}
}
