// Package reconcile heals drift between the source of truth and the regions'
// replicas on its own: the continuous form of `tcsctl verify` + `tcsctl
// repair`.
//
// A Reconciler keeps the source of truth's digests (internal/digest: 4,096
// buckets by hash of tenant id, each the XOR of the hashes of its tenants'
// id, version, content and claims) in memory. It reads them once from the
// catalog (Export), keeps them up to date from the stream (its own consumer
// group, "reconcile"), and re-reads the catalog every Config.Rescan to
// correct whatever the stream view missed. Every Config.Interval it scans
// each region's replica (tcs.Scanner), computes the region's digests and
// compares them bucket by bucket.
//
// A bucket that differs is a suspect: the next scan keeps its records, and
// once it has differed for Config.Settle the reconciler narrows it to
// tenants, with the drift kinds `tcsctl verify` reports. A tenant is judged
// only if its state in the source of truth is older than Settle at the
// start of the scan and the region has applied something newer, so that a
// change still on its way to the region (the usual cause of a differing
// bucket under write load) or a region lagging as a whole is never taken
// for drift; and a tenant is drifted only when two comparisons in a row
// find it so. What resync can fix (missing_tenant, stale_version,
// content_mismatch, unmapped_hostname, wrong_owner, claim_version,
// orphaned_hostname) is re-emitted through the catalog's Resync, the path
// of `tcsctl repair`, to the drifted regions only, at most Config.RepairRate
// tenants a second, and not again for a Settle while its resync travels.
// What it cannot fix (ahead_version: the region is newer than the truth;
// unknown_tenant; a region's claim version above the truth's) is reported,
// never "repaired": a resync never takes a region back to an older version
// (tcs.ApplyEvent), and the reconciler does not try.
//
// A drifted tenant is repaired once a later comparison finds its bucket
// equal (or the tenant no longer different); the time from first finding
// to repaired is tcs_reconcile_repair_seconds. Drift is thus seen within one
// Interval of happening, judged once its bucket has differed for Settle,
// and resynced when the next comparison confirms it: within Settle plus two
// Intervals of happening, plus the resync's trip through the pipeline.
//
// Run one Reconciler per deployment: it needs every event of the stream
// (a second one in the same consumer group would see only some shards), and
// two would resync the same drift twice.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/digest"
	"github.com/tcs-dev/tcs/internal/spanctx"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// Source is what the reconciler needs of the source of truth: every tenant
// page by page, and the resync that re-emits tenants. catalog.Store
// implements it.
type Source interface {
	Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error)
	Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error)
}

// Region is one region's replica, as the reconciler reads it.
type Region struct {
	Name    string
	Scanner tcs.Scanner
}

// Defaults of Config.
const (
	DefaultInterval   = 5 * time.Minute
	DefaultSettle     = 2 * time.Minute
	DefaultRescan     = time.Hour
	DefaultRepairRate = 50
	DefaultGroup      = "reconcile"
	DefaultActor      = "reconciler"
)

// Config wires a Reconciler.
type Config struct {
	Source  Source
	Regions []Region
	// Stream keeps the truth's digests up to date between rescans; nil
	// means rescanning the catalog before every comparison instead.
	Stream streamer.Stream
	// Group is the stream consumer group; "" means DefaultGroup.
	Group string
	// Interval is the time between two comparisons (a scan of every
	// region); 0 means DefaultInterval. A comparison reads every record of
	// every region: about 18 CPU seconds per region of 1,000,000 tenants
	// (BenchmarkCycle), so the default keeps a 1M-tenant, three-region
	// system under a fifth of a core.
	Interval time.Duration
	// Settle is how long a bucket must differ, and how old a tenant's
	// state in the truth must be, before the tenant is judged drifted; it
	// is also the least time between two resyncs of a tenant. Keep it well
	// above the replication lag. 0 means DefaultSettle.
	Settle time.Duration
	// Rescan is how often the truth's digests are re-read from the catalog;
	// 0 means DefaultRescan.
	Rescan time.Duration
	// RepairRate is the most tenants re-emitted per second; 0 means
	// DefaultRepairRate.
	RepairRate float64
	// ReadRate caps the records read per second from the catalog and from
	// each region; 0 means no cap.
	ReadRate float64
	// PageSize is the page size of scans and exports; 0 means the
	// backends' defaults (exports: catalog.MaxExportPageSize).
	PageSize int
	// Actor names the reconciler in the catalog's audit records of its
	// resyncs; "" means DefaultActor.
	Actor      string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// TracerProvider makes a "reconcile resync" span around each resync,
	// whose context the catalog stores with the outbox entries it appends
	// (so the repair is traced through publish, apply and invalidation as
	// a write is); nil means no spans, and resync events carry no trace
	// context.
	TracerProvider trace.TracerProvider
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Finding is one drifted tenant of a region.
type Finding struct {
	Region   string
	TenantID string
	// Kind is the kind of drift, as `tcsctl verify` names it.
	Kind drift.Kind
	// Hostname is the hostname concerned, for the hostname kinds.
	Hostname string
	// Repairable is false for what a resync cannot fix.
	Repairable bool
}

// truthEntry is the reconciler's view of one tenant of the source of truth.
type truthEntry struct {
	digest.Entry
	sum     uint64
	updated time.Time // the document's UpdatedAt: its commit time
	changed time.Time // when the entry last changed here
	// streamed is false for an entry a rescan found ahead of the stream:
	// its change may still wait in the outbox, so it is not judged until
	// it is seen on the stream or has been known for a Rescan.
	streamed bool
}

// pending is a drifted tenant of a region, not yet seen repaired.
type pending struct {
	found   time.Time
	emitted time.Time // last resync; zero if none
	kinds   []drift.Kind
	sighted int // comparisons that found it
}

type regionState struct {
	Region
	suspect map[int]time.Time   // differing bucket → first seen differing
	pending map[string]*pending // tenant id → drift
}

// Reconciler compares the source of truth with every region and repairs
// drift. Run runs it; Cycle runs one comparison.
type Reconciler struct {
	cfg     Config
	log     *slog.Logger
	limiter *rate.Limiter
	tracer  trace.Tracer // nil without a TracerProvider

	mu         sync.Mutex
	truth      map[string]*truthEntry
	table      digest.Table
	loaded     bool
	lastRescan time.Time

	regions   []*regionState
	m         metrics
	lastCycle time.Time // end of the last comparison that succeeded
}

// New returns a Reconciler for cfg, or an error naming what is missing.
func New(cfg Config) (*Reconciler, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("reconcile: no source of truth")
	case len(cfg.Regions) == 0:
		return nil, errors.New("reconcile: no region to compare")
	case cfg.Interval < 0 || cfg.Settle < 0 || cfg.Rescan < 0 || cfg.RepairRate < 0 || cfg.ReadRate < 0 || cfg.PageSize < 0:
		return nil, fmt.Errorf("reconcile: negative setting (interval %v, settle %v, rescan %v, repair rate %v, read rate %v, page size %d)",
			cfg.Interval, cfg.Settle, cfg.Rescan, cfg.RepairRate, cfg.ReadRate, cfg.PageSize)
	}
	seen := map[string]bool{}
	for _, r := range cfg.Regions {
		if r.Name == "" || r.Scanner == nil || seen[r.Name] {
			return nil, fmt.Errorf("reconcile: region %q: want a distinct name and a scanner", r.Name)
		}
		seen[r.Name] = true
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.RepairRate == 0 {
		cfg.RepairRate = DefaultRepairRate
	}
	if cfg.Actor == "" {
		cfg.Actor = DefaultActor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg, log: cfg.Logger, truth: map[string]*truthEntry{},
		limiter: rate.NewLimiter(rate.Limit(cfg.RepairRate), max(1, int(cfg.RepairRate)))}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider != nil {
		r.tracer = spanctx.Tracer(cfg.TracerProvider)
	}
	for _, reg := range cfg.Regions {
		r.regions = append(r.regions, &regionState{Region: reg, suspect: map[int]time.Time{}, pending: map[string]*pending{}})
	}
	r.m = newMetrics(cfg.Registerer, slices.Collect(maps.Keys(seen)))
	return r, nil
}

// Run consumes the stream (if any) and compares every Interval until ctx
// ends (returns nil). A failed comparison is logged, counted and tried
// again at the next Interval; a failing stream ends Run with its error.
func (r *Reconciler) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if r.cfg.Stream != nil {
		g.Go(func() error {
			if err := r.cfg.Stream.Consume(ctx, r.cfg.Group, r.HandleBatch); err != nil {
				return fmt.Errorf("reconcile: consume stream: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			if _, err := r.Cycle(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("reconcile cycle failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	return g.Wait()
}

// HandleBatch updates the truth's digests from stream messages: the
// streamer.Handler of the reconciler's consumer group. A newer version of a
// tenant replaces its entry; a resync at the same version too (it re-read
// the source of truth). Undecodable records are skipped.
func (r *Reconciler) HandleBatch(_ context.Context, batch []streamer.Message) error {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range batch {
		ev, err := streamer.DecodeEvent(m.Data)
		if err == nil {
			err = tcs.CheckEvent(ev)
		}
		if err != nil {
			r.log.Warn("reconcile: skipping undecodable stream record", "shard", m.Shard, "sequence", m.Sequence, "err", err)
			continue
		}
		cur := r.truth[ev.TenantID]
		switch {
		case cur == nil || ev.Version > cur.Version || (ev.Resync && ev.Version == cur.Version):
			r.put(ev.TenantID, ev.Tenant, digest.NewEntry(ev.Tenant, ev.Claims), now, true)
		case ev.Version == cur.Version:
			cur.streamed = true
		}
	}
	return nil
}

// put replaces a tenant's truth entry (r.mu held).
func (r *Reconciler) put(id string, t *tenant.Tenant, e digest.Entry, now time.Time, streamed bool) {
	cur := r.truth[id]
	sum := e.Sum(id)
	if cur != nil && cur.sum == sum && cur.Version == e.Version {
		cur.streamed = cur.streamed || streamed
		return
	}
	b := digest.Bucket(id)
	if cur != nil {
		r.table[b] ^= cur.sum
	}
	r.table[b] ^= sum
	r.truth[id] = &truthEntry{Entry: e, sum: sum, updated: t.UpdatedAt, changed: now, streamed: streamed}
}

// Rescan re-reads every tenant of the source of truth and corrects the
// truth's digests: an entry the catalog has newer, or different at the same
// version, replaces the reconciler's.
func (r *Reconciler) Rescan(ctx context.Context) error {
	first := !r.loadedNow()
	var limit func(ctx context.Context, n int) error
	if r.cfg.ReadRate > 0 {
		lim := rate.NewLimiter(rate.Limit(r.cfg.ReadRate), max(1, int(r.cfg.ReadRate)))
		limit = func(ctx context.Context, n int) error { return waitN(ctx, lim, n) }
	}
	after := ""
	size := r.cfg.PageSize
	if size == 0 {
		size = catalog.MaxExportPageSize
	}
	for {
		page, err := r.cfg.Source.Export(ctx, catalog.ListOptions{After: after, Limit: size})
		if err != nil {
			return fmt.Errorf("reconcile: export after %q: %w", after, err)
		}
		now := r.cfg.Now()
		r.mu.Lock()
		for _, it := range page.Items {
			id := it.Tenant.ID
			e := digest.NewEntry(it.Tenant, it.Claims)
			cur := r.truth[id]
			if cur == nil || e.Version > cur.Version || (e.Version == cur.Version && e.Sum(id) != cur.sum) {
				// At the first load the stream is assumed to carry
				// what the catalog holds; later, an entry the stream
				// has not shown may still wait in the outbox.
				r.put(id, it.Tenant, e, now, first || cur == nil)
			}
		}
		r.mu.Unlock()
		r.m.truthReads.Add(float64(len(page.Items)))
		if limit != nil {
			if err := limit(ctx, len(page.Items)); err != nil {
				return err
			}
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	r.mu.Lock()
	r.loaded, r.lastRescan = true, r.cfg.Now()
	r.mu.Unlock()
	return nil
}

func (r *Reconciler) loadedNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loaded
}

// Report is what one comparison found and did.
type Report struct {
	// Differing counts, per region, the buckets whose digests differed.
	Differing map[string]int
	// Findings are the drifted tenants judged in this comparison.
	Findings []Finding
	// Resynced counts, per region, the tenants re-emitted.
	Resynced map[string]int
	// Repaired counts, per region, the drifted tenants seen repaired.
	Repaired map[string]int
	// Reads counts the records read from the replicas.
	Reads int
}

// Cycle runs one comparison: a rescan of the truth if due (always without
// a stream), a scan of every region, the judgement of the buckets that have
// differed for Settle, and the resyncs.
func (r *Reconciler) Cycle(ctx context.Context) (*Report, error) {
	rep, err := r.cycle(ctx)
	if err != nil {
		r.m.cycles.WithLabelValues("error").Inc()
		return nil, err
	}
	r.m.cycles.WithLabelValues("ok").Inc()
	now := r.cfg.Now()
	r.m.lastCycle.Set(float64(now.UnixNano()) / 1e9)
	r.mu.Lock()
	r.lastCycle = now
	r.mu.Unlock()
	return rep, nil
}

func (r *Reconciler) cycle(ctx context.Context) (*Report, error) {
	r.mu.Lock()
	rescan := !r.loaded || r.cfg.Stream == nil || r.cfg.Now().Sub(r.lastRescan) >= r.cfg.Rescan
	r.mu.Unlock()
	if rescan {
		if err := r.Rescan(ctx); err != nil {
			return nil, err
		}
	}
	rep := &Report{Differing: map[string]int{}, Resynced: map[string]int{}, Repaired: map[string]int{}}
	resync := map[string]*catalog.ResyncRequest{} // tenant → request
	regionsOf := map[string][]string{}            // tenant → regions to resync
	for _, reg := range r.regions {
		fs, due, err := r.compareRegion(ctx, reg, rep)
		if err != nil {
			return nil, fmt.Errorf("reconcile: region %s: %w", reg.Name, err)
		}
		rep.Findings = append(rep.Findings, fs...)
		for _, f := range due {
			req := resync[f.TenantID]
			if req == nil {
				req = &catalog.ResyncRequest{ID: f.TenantID}
				resync[f.TenantID] = req
			}
			if f.Kind == drift.OrphanedHostname && !slices.Contains(req.Hostnames, f.Hostname) {
				req.Hostnames = append(req.Hostnames, f.Hostname)
			}
			if !slices.Contains(regionsOf[f.TenantID], reg.Name) {
				regionsOf[f.TenantID] = append(regionsOf[f.TenantID], reg.Name)
			}
		}
	}
	if err := r.resync(ctx, resync, regionsOf, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// compareRegion scans one region, compares and judges; it updates the
// region's suspects and pending drift and returns the findings judged, and
// those to resync now (repairable, and not resynced within a Settle).
func (r *Reconciler) compareRegion(ctx context.Context, reg *regionState, rep *Report) (fs, due []Finding, err error) {
	keep := make(map[int]bool, len(reg.suspect))
	for b := range reg.suspect {
		keep[b] = true
	}
	keepHosts := map[string]bool{}
	if len(keep) > 0 {
		r.mu.Lock()
		for id, e := range r.truth {
			if keep[digest.Bucket(id)] {
				for _, c := range e.Claims {
					keepHosts[c.Hostname] = true
				}
			}
		}
		r.mu.Unlock()
	}
	opts := digest.ScanOptions{PageSize: r.cfg.PageSize, Keep: keep, KeepHosts: keepHosts}
	if r.cfg.ReadRate > 0 {
		lim := rate.NewLimiter(rate.Limit(r.cfg.ReadRate), max(1, int(r.cfg.ReadRate)))
		opts.Wait = func(ctx context.Context, n int) error { return waitN(ctx, lim, n) }
	}
	start := r.cfg.Now()
	scan, err := digest.ScanRegion(ctx, reg.Scanner, opts)
	if err != nil {
		return nil, nil, err
	}
	rep.Reads += scan.Reads
	r.m.regionReads.WithLabelValues(reg.Name).Add(float64(scan.Reads))
	now := r.cfg.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	diff := digest.Diff(&r.table, &scan.Table)
	r.m.compared.WithLabelValues(reg.Name).Add(digest.Buckets)
	r.m.differing.WithLabelValues(reg.Name).Set(float64(len(diff)))
	rep.Differing[reg.Name] = len(diff)

	suspect := make(map[int]time.Time, len(diff))
	judge := map[int]bool{}
	for _, b := range diff {
		first, ok := reg.suspect[b]
		if !ok {
			first = start
		}
		suspect[b] = first
		if keep[b] && now.Sub(first) >= r.cfg.Settle {
			judge[b] = true
		}
	}
	reg.suspect = suspect

	cutoff := start.Add(-r.cfg.Settle)
	judged := r.judge(reg.Name, judge, scan, cutoff, now)
	drifted := map[string]bool{}
	for _, f := range judged {
		p := reg.pending[f.TenantID]
		if p == nil {
			p = &pending{found: now}
			reg.pending[f.TenantID] = p
		}
		if !drifted[f.TenantID] {
			drifted[f.TenantID] = true
			p.sighted++
		}
	}
	// A finding counts from its second comparison in a row: a first one
	// may be a region catching up (one stream partition ahead of another
	// makes scan.Newest an imperfect guide) or the stream view lagging the
	// region, and either is gone by the next comparison.
	for _, f := range judged {
		p := reg.pending[f.TenantID]
		if p.sighted < 2 {
			continue
		}
		fs = append(fs, f)
		if !slices.Contains(p.kinds, f.Kind) {
			p.kinds = append(p.kinds, f.Kind)
			r.m.found.WithLabelValues(reg.Name, string(f.Kind)).Inc()
			r.log.Warn("reconcile: drift found", "region", reg.Name, "tenant", f.TenantID, "kind", f.Kind, "hostname", f.Hostname, "repairable", f.Repairable)
		}
		if f.Repairable && (p.emitted.IsZero() || now.Sub(p.emitted) >= r.cfg.Settle) {
			due = append(due, f)
		}
	}
	// A drifted tenant is repaired once its bucket agrees, or a judgement
	// of its bucket finds it no longer different. One seen once and never
	// resynced was a passing difference, not drift: it is dropped uncounted.
	for id, p := range reg.pending {
		b := digest.Bucket(id)
		_, differs := suspect[b]
		if drifted[id] || (differs && !judge[b]) {
			continue
		}
		delete(reg.pending, id)
		if p.sighted < 2 && p.emitted.IsZero() {
			continue
		}
		rep.Repaired[reg.Name]++
		r.m.repaired.WithLabelValues(reg.Name).Inc()
		r.m.repairSeconds.WithLabelValues(reg.Name).Observe(now.Sub(p.found).Seconds())
	}
	confirmed := 0
	for _, p := range reg.pending {
		if p.sighted >= 2 {
			confirmed++
		}
	}
	r.m.drifted.WithLabelValues(reg.Name).Set(float64(confirmed))
	return fs, due, nil
}

// judge narrows the buckets to judge to drifted tenants (r.mu held).
//
// A tenant is judged only once its change cannot still be on its way: its
// entry here changed before cutoff (a Settle before the scan started), and
// the region has applied a document committed after it (scan.Newest), so
// that a region whose applier lags as a whole is seen as lagging, not as
// drifted, unless the entry is older than five Settles (a region emptied
// while no writes come). A region holding a newer version of a tenant than
// the stream has shown here is ahead of this view, not of the truth: only
// ahead_version is reported for it, and only from its second sighting.
func (r *Reconciler) judge(region string, buckets map[int]bool, scan *digest.RegionScan, cutoff, now time.Time) []Finding {
	if len(buckets) == 0 {
		return nil
	}
	longAgo := cutoff.Add(-4 * r.cfg.Settle)
	settled := func(e *truthEntry) bool {
		if e.changed.After(cutoff) {
			return false
		}
		if e.updated.After(scan.Newest) && e.changed.After(longAgo) {
			return false
		}
		return e.streamed || r.cfg.Stream == nil || now.Sub(e.changed) >= r.cfg.Rescan
	}
	var out []Finding
	add := func(id string, kind drift.Kind, host string, repairable bool) {
		out = append(out, Finding{Region: region, TenantID: id, Kind: kind, Hostname: host, Repairable: repairable})
	}
	owners := map[string]string{} // hostname → truth owner, in the judged buckets
	for id, e := range r.truth {
		if !buckets[digest.Bucket(id)] {
			continue
		}
		for _, c := range e.Claims {
			owners[c.Hostname] = id
		}
		if !settled(e) {
			continue
		}
		d, ok := scan.Docs[id]
		switch {
		case !ok:
			add(id, drift.MissingTenant, "", true)
		case d.Version < e.Version:
			add(id, drift.StaleVersion, "", true)
		case d.Version > e.Version:
			add(id, drift.AheadVersion, "", false)
			continue // its hostnames are those of a version not seen here
		case d.Hash != e.Doc:
			add(id, drift.ContentMismatch, "", true)
		}
		for _, c := range e.Claims {
			rec, ok := scan.Hosts[c.Hostname]
			var kind drift.Kind
			switch {
			case !ok || rec.TenantID == "":
				kind = drift.UnmappedHostname
			case rec.TenantID != id:
				kind = drift.WrongOwner
			case rec.ClaimVersion != c.Version:
				kind = drift.ClaimVersion
			default:
				continue
			}
			add(id, kind, c.Hostname, !ok || rec.ClaimVersion <= c.Version)
		}
	}
	for id := range scan.Docs {
		if _, ok := r.truth[id]; !ok && buckets[digest.Bucket(id)] {
			add(id, drift.UnknownTenant, "", false)
		}
	}
	hosts := slices.Sorted(maps.Keys(scan.Hosts))
	for _, h := range hosts {
		rec := scan.Hosts[h]
		if rec.TenantID == "" || !buckets[digest.Bucket(rec.TenantID)] {
			continue
		}
		e := r.truth[rec.TenantID]
		if e != nil {
			if _, held := e.Claim(h); held {
				continue // a claim_version, found from the truth's side
			}
			if !settled(e) || scan.Docs[rec.TenantID].Version > e.Version {
				continue
			}
		}
		if _, owned := owners[h]; owned {
			continue // a wrong_owner, found from the truth owner's side
		}
		// Resyncing the tenant the region names, settling the hostname,
		// re-emits the hostname's release.
		add(rec.TenantID, drift.OrphanedHostname, h, e != nil)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.TenantID != b.TenantID {
			return a.TenantID < b.TenantID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Hostname < b.Hostname
	})
	return out
}

// resync re-emits the tenants, grouped by the regions they drifted in, at
// most RepairRate a second.
func (r *Reconciler) resync(ctx context.Context, reqs map[string]*catalog.ResyncRequest, regionsOf map[string][]string, rep *Report) error {
	if len(reqs) == 0 {
		return nil
	}
	groups := map[string][]catalog.ResyncRequest{}
	for _, id := range slices.Sorted(maps.Keys(reqs)) {
		regs := regionsOf[id]
		sort.Strings(regs)
		k := fmt.Sprint(regs)
		groups[k] = append(groups[k], *reqs[id])
	}
	actx := auth.NewContext(ctx, auth.Identity{Name: r.cfg.Actor, Role: auth.Admin})
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		group := groups[k]
		regs := regionsOf[group[0].ID]
		for i := 0; i < len(group); i += catalog.MaxResyncTenants {
			part := group[i:min(i+catalog.MaxResyncTenants, len(group))]
			if err := waitN(ctx, r.limiter, len(part)); err != nil {
				return err
			}
			if err := r.resyncPart(actx, part, regs); err != nil {
				return fmt.Errorf("reconcile: resync %d tenant(s) to %v: %w", len(part), regs, err)
			}
			now := r.cfg.Now()
			r.mu.Lock()
			for _, q := range part {
				for _, reg := range r.regions {
					if !slices.Contains(regs, reg.Name) {
						continue
					}
					rep.Resynced[reg.Name]++
					r.m.resynced.WithLabelValues(reg.Name).Inc()
					if p := reg.pending[q.ID]; p != nil {
						p.emitted = now
					}
				}
			}
			r.mu.Unlock()
			r.log.Info("reconcile: re-emitted drifted tenants", "tenants", len(part), "regions", regs)
		}
	}
	return nil
}

// resyncPart re-emits part to regs (all regions if empty), under a span of
// its own when tracing.
func (r *Reconciler) resyncPart(ctx context.Context, part []catalog.ResyncRequest, regs []string) error {
	if r.tracer == nil {
		_, err := r.cfg.Source.Resync(ctx, part, regs)
		return err
	}
	ctx, sp := r.tracer.Start(ctx, "reconcile resync", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.Int("tcs.tenants", len(part)), attribute.StringSlice("tcs.regions", regs)))
	defer sp.End()
	_, err := r.cfg.Source.Resync(ctx, part, regs)
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, "resync failed")
	}
	return err
}

// waitN waits for n tokens, in pieces no bigger than the burst.
func waitN(ctx context.Context, lim *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, lim.Burst())
		if err := lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Digests returns a copy of the truth's bucket digests and how many tenants
// they cover.
func (r *Reconciler) Digests() (digest.Table, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.table, len(r.truth)
}

// LastCycle returns when the last comparison that succeeded ended (zero:
// none yet).
func (r *Reconciler) LastCycle() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastCycle
}

// Pending returns, per region, the drifted tenants not yet seen repaired,
// sorted.
func (r *Reconciler) Pending() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, reg := range r.regions {
		for id := range reg.pending {
			out[reg.Name] = append(out[reg.Name], id)
		}
		sort.Strings(out[reg.Name])
	}
	return out
}
