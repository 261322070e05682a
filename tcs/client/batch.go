package client

import (
	"context"
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
// as a Lookup is (hedged, failing over). It returns one Result per hostname,
// in order; it fails as a whole only if ctx ends or the Client is closed.
// Unlike Lookup, its misses are not collapsed with concurrent ones.
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
	for len(order) > 0 {
		chunk := order[:min(maxBatch, len(order))]
		order = order[len(chunk):]
		if err := c.batch(ctx, chunk, func(h string, f fillResult, err error) {
			for _, i := range misses[h] {
				res := &results[i]
				if err != nil {
					res.Err = err
					continue
				}
				res.Tenant, res.Meta, res.Err = f.e.answer(c.cache.clock(), f.stale)
				res.Meta.Cached = f.cached
			}
		}); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// batch looks up the normalised hostnames in one RPC and calls set with the
// outcome of each.
func (c *Client) batch(ctx context.Context, hostnames []string, set func(string, fillResult, error)) error {
	tk := c.cache.begin()
	rctx, cancel := context.WithTimeout(c.ctx, c.cfg.lookupTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, r, err := call(c, rctx, func(ctx context.Context, api tcsv1.TenantContextServiceClient) (*tcsv1.BatchLookupResponse, error) {
		return api.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: hostnames})
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	done := c.cache.clock()
	if err != nil || len(resp.GetResults()) != len(hostnames) {
		if err == nil {
			err = fmt.Errorf("%d results for %d hostnames", len(resp.GetResults()), len(hostnames))
		}
		for _, h := range hostnames {
			f, ferr := c.staleOr(h, done, fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, h, err))
			if ferr != nil {
				set(h, fillResult{}, ferr)
			} else {
				set(h, f.(fillResult), nil)
			}
		}
		return nil
	}
	region := r.intern(resp.GetRegion())
	for i, res := range resp.GetResults() {
		h := hostnames[i]
		switch codes.Code(res.GetCode()) {
		case codes.OK:
			t, cerr := tcsv1.TenantFromProto(res.GetTenant())
			if cerr != nil || t == nil {
				set(h, fillResult{}, fmt.Errorf("%w: bad answer from %s", ErrUnavailable, region))
				continue
			}
			e := entry{t: t, readAt: done, region: region}
			c.cache.put(h, e, tk)
			set(h, fillResult{e: e, stale: res.GetStale()}, nil)
		case codes.NotFound:
			e := entry{readAt: done, region: region}
			c.cache.put(h, e, tk)
			set(h, fillResult{e: e}, nil)
		case codes.InvalidArgument:
			set(h, fillResult{}, fmt.Errorf("%w %q: %s", ErrInvalidHostname, h, res.GetMessage()))
		default:
			f, ferr := c.staleOr(h, done, fmt.Errorf("%w: lookup %s: %s", ErrUnavailable, h,
				status.New(codes.Code(res.GetCode()), res.GetMessage()).Err()))
			if ferr != nil {
				set(h, fillResult{}, ferr)
			} else {
				set(h, f.(fillResult), nil)
			}
		}
	}
	return nil
}
