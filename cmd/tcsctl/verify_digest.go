package main

import (
	"context"
	"fmt"

	"github.com/tcs-dev/tcs/internal/digest"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// digester is a region whose tcs node computes its replica's digests
// (adminclient.Scanner).
type digester interface {
	Digests(ctx context.Context) (*digest.Table, int64, error)
}

// digestCheck compares the catalog's bucket digests with every selected
// region's. When all agree it returns a clean report, having read no
// document; when a region differs it says so on stderr and returns nil, for
// the full verify to find what differs (the digests cannot tell drift from
// a change still on its way).
func digestCheck(ctx context.Context, e *env, conn connFlags, vf verifyFlags) (*drift.Report, error) {
	c, err := conn.client(e)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rs, err := selectRegions(c.regions, vf.regions)
	if err != nil {
		return nil, err
	}
	truth, tenants, err := c.catalog.Digests(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, jobrun.ErrInterrupted
		}
		return nil, fmt.Errorf("catalog: %w", err)
	}
	rep := &drift.Report{Clean: true, Regions: regionNames(rs), Tenants: tenants, Passes: 1, Findings: []drift.Finding{}}
	differ := false
	for _, r := range rs {
		s, err := c.dialer.scanner(r)
		if err != nil {
			return nil, err
		}
		d, ok := s.(digester)
		if !ok {
			return nil, fmt.Errorf("region %s: its scanner cannot compute digests", r.Name)
		}
		got, _, err := d.Digests(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, jobrun.ErrInterrupted
			}
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
		if n := len(digest.Diff(truth, got)); n > 0 {
			fmt.Fprintf(e.stderr, "digest: %s differs from the source of truth in %d of %d buckets\n", r.Name, n, digest.Buckets)
			differ = true
		}
	}
	if differ {
		fmt.Fprintln(e.stderr, "digest: running the full verify to find what differs")
		return nil, nil
	}
	return rep, nil
}
