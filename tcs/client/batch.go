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
// order; it fails as a whole only if ctx ends or the Client is closed.
func (c *Client) BatchLookup(ctx context.Context, hostnames []string) ([]Result, error) {
	results := make([]Result, len(hostnames))
	now := c.cache.fast()
	misses := map[string][]int{}
	var order []string
	for i, raw := range hostnames {
		res := &results[i]
		res.Hostname = raw
		if e, st := c.cache.get(raw, now); st == fresh {
			c.hooks.Hit()
			res.Tenant, res.Meta, res.Err = e.answer(now, false)
			continue
		}
		h, err := tenant.NormalizeHostname(raw)
		if err != nil {
			res.Err = fmt.Errorf("%w %q: %s", ErrInvalidHostname, raw, tenant.ErrorMessage(err))
			continue
		}
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
		go c.batch(hs, fs)
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
			res.Tenant, res.Meta, res.Err = f.answer(c.cache.clock())
		}
	}
	return results, nil
}

// batch looks up the normalised hostnames, of which it leads the flights,
// in one BatchLookup RPC, and lands each flight with its outcome.
func (c *Client) batch(hostnames []string, flights []*flight) {
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
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.lookupTimeout)
	defer cancel()
	resp, r, err := call(c, ctx, func(ctx context.Context, api tcsv1.TenantContextServiceClient) (*tcsv1.BatchLookupResponse, error) {
		return api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: ask})
	})
	done := c.cache.clock()
	if c.ctx.Err() != nil {
		for i, h := range ask {
			c.flights.land(h, askFlights[i], fillResult{}, ErrClosed)
		}
		return
	}
	if err != nil || len(resp.GetResults()) != len(ask) {
		if err == nil {
			err = fmt.Errorf("%d results for %d hostnames", len(resp.GetResults()), len(ask))
		}
		for i, h := range ask {
			res, ferr := c.staleOr(h, done, fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, h, err))
			c.flights.land(h, askFlights[i], res, ferr)
		}
		return
	}
	region := r.intern(resp.GetRegion())
	for i, res := range resp.GetResults() {
		h := ask[i]
		var f fillResult
		var ferr error
		switch codes.Code(res.GetCode()) {
		case codes.OK:
			t, cerr := tcsv1.TenantFromProto(res.GetTenant())
			if cerr != nil || t == nil {
				c.log.Error("tcs batch lookup: bad tenant in answer", "region", region, "hostname", h, "err", cerr)
				f, ferr = c.staleOr(h, done, fmt.Errorf("%w: bad answer from %s", ErrUnavailable, region))
				break
			}
			// The server's age counts against our TTL, as for Lookup.
			age := res.GetAge().AsDuration()
			e := entry{t: t, readAt: done - int64(max(age, 0)), region: region}
			c.cache.put(h, e, tk)
			f = fillResult{e: e, stale: res.GetStale()}
		case codes.NotFound:
			e := entry{readAt: done, region: region}
			c.cache.put(h, e, tk)
			f = fillResult{e: e}
		case codes.InvalidArgument:
			ferr = fmt.Errorf("%w %q: %s", ErrInvalidHostname, h, res.GetMessage())
		default:
			f, ferr = c.staleOr(h, done, fmt.Errorf("%w: lookup %s: %s", ErrUnavailable, h,
				status.New(codes.Code(res.GetCode()), res.GetMessage()).Err()))
		}
		c.flights.land(h, askFlights[i], f, ferr)
	}
}
