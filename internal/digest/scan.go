package digest

import (
	"context"
	"fmt"
	"time"

	"github.com/tcs-dev/tcs/tcs"
)

// Doc is what a region scan keeps of one document.
type Doc struct {
	Version int64
	Deleted bool
	Hash    uint64
}

// RegionScan is a region's digests, with the records of the buckets the scan
// was asked to keep.
type RegionScan struct {
	Table Table
	// Docs are the documents of the kept buckets, by tenant id.
	Docs map[string]Doc
	// Hosts are the hostname records (released ones included) whose owner
	// is in a kept bucket, or whose hostname was asked for.
	Hosts map[string]tcs.HostRecord
	// Reads counts the records read.
	Reads int
	// Newest is the latest UpdatedAt of the region's documents: how far
	// its applier has come, roughly (each stream partition moves on its
	// own).
	Newest time.Time
}

// ScanOptions say how to scan a region.
type ScanOptions struct {
	// PageSize is the scan's page size; 0 means the backend's default.
	PageSize int
	// Keep names the buckets whose records the scan keeps; nil keeps none.
	Keep map[int]bool
	// KeepHosts names hostnames whose records the scan keeps whoever owns
	// them (the hostnames the truth assigns in the kept buckets, so that a
	// record now owned elsewhere is seen).
	KeepHosts map[string]bool
	// Wait, if not nil, is called after each page with the records it
	// held: a rate limit, or a progress count. Its error ends the scan.
	Wait func(ctx context.Context, n int) error
}

// ScanRegion reads every document and hostname record of a replica and
// returns its digests.
func ScanRegion(ctx context.Context, s tcs.Scanner, opts ScanOptions) (*RegionScan, error) {
	out := &RegionScan{Docs: map[string]Doc{}, Hosts: map[string]tcs.HostRecord{}}
	wait := func(n int) error {
		out.Reads += n
		if opts.Wait == nil {
			return ctx.Err()
		}
		return opts.Wait(ctx, n)
	}
	cursor := ""
	for {
		docs, next, err := s.ScanDocs(ctx, cursor, opts.PageSize)
		if err != nil {
			return nil, fmt.Errorf("scan documents: %w", err)
		}
		for _, d := range docs {
			b := Bucket(d.ID)
			h := DocHash(d)
			if d.UpdatedAt.After(out.Newest) {
				out.Newest = d.UpdatedAt
			}
			out.Table[b] ^= h
			if opts.Keep[b] {
				out.Docs[d.ID] = Doc{Version: d.Version, Deleted: d.Deleted(), Hash: h}
			}
		}
		if err := wait(len(docs)); err != nil {
			return nil, err
		}
		if next == "" {
			break
		}
		cursor = next
	}
	cursor = ""
	for {
		hosts, next, err := s.ScanHosts(ctx, cursor, opts.PageSize)
		if err != nil {
			return nil, fmt.Errorf("scan hostnames: %w", err)
		}
		for _, h := range hosts {
			keep := opts.KeepHosts[h.Hostname]
			if h.TenantID != "" {
				b := Bucket(h.TenantID)
				out.Table[b] ^= HostHash(h.Hostname, h.TenantID, h.ClaimVersion)
				keep = keep || opts.Keep[b]
			}
			if keep {
				out.Hosts[h.Hostname] = h.HostRecord
			}
		}
		if err := wait(len(hosts)); err != nil {
			return nil, err
		}
		if next == "" {
			break
		}
		cursor = next
	}
	return out, nil
}
