package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// Kinds of drift verify reports.
const (
	// The region has no document of a tenant the source of truth has.
	kindMissingTenant = "missing_tenant"
	// The region holds an older version than the source of truth.
	kindStaleVersion = "stale_version"
	// The region holds a newer version than the source of truth: only a
	// corrupted replica or a restored catalog gets there; resync never
	// rolls a version back, so repair cannot fix it.
	kindAheadVersion = "ahead_version"
	// Same version, different content.
	kindContentMismatch = "content_mismatch"
	// The region has a document of a tenant the source of truth never had.
	kindUnknownTenant = "unknown_tenant"
	// A hostname the source of truth assigns to a tenant maps to no tenant
	// in the region.
	kindUnmappedHostname = "unmapped_hostname"
	// A hostname maps to another tenant in the region than in the truth.
	kindWrongOwner = "wrong_owner"
	// Same owner, different claim version.
	kindClaimVersion = "claim_version"
	// The region maps a hostname that no tenant holds in the truth.
	kindOrphanedHostname = "orphaned_hostname"
)

// driftFinding is one difference between a region and the source of truth.
type driftFinding struct {
	Region        string   `json:"region"`
	Kind          string   `json:"kind"`
	TenantID      string   `json:"tenant_id,omitempty"`
	Hostname      string   `json:"hostname,omitempty"`
	TruthVersion  int64    `json:"truth_version,omitempty"`
	RegionVersion int64    `json:"region_version,omitempty"`
	TruthOwner    string   `json:"truth_owner,omitempty"`
	RegionOwner   string   `json:"region_owner,omitempty"`
	TruthClaim    int64    `json:"truth_claim_version,omitempty"`
	RegionClaim   int64    `json:"region_claim_version,omitempty"`
	Fields        []string `json:"fields,omitempty"`
	Detail        string   `json:"detail"`
}

func (f driftFinding) key() string {
	return f.Region + "\x00" + f.Kind + "\x00" + f.TenantID + "\x00" + f.Hostname
}

// subjects are the tenants whose versions a finding depends on: if any of
// them moved between two passes, the finding is re-checked.
func (f driftFinding) subjects() []string {
	var out []string
	for _, id := range []string{f.TenantID, f.TruthOwner, f.RegionOwner} {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// docFields are the parts of a document compared one by one, so that a
// content mismatch says which differ. Version is compared on its own.
var docFields = [...]string{"hostnames", "status", "products", "database", "region", "labels", "updated_at", "updated_by"}

type fieldHashes [len(docFields)]uint64

func hashFields(t *tenant.Tenant) fieldHashes {
	enc := func(v any, empty bool) []byte {
		if empty {
			return nil
		}
		b, _ := json.Marshal(v)
		return b
	}
	parts := [len(docFields)][]byte{
		[]byte(strings.Join(t.Hostnames, "\x00")),
		[]byte(t.Status),
		enc(t.Products, len(t.Products) == 0),
		enc(t.Database, t.Database == nil),
		[]byte(t.Region),
		enc(t.Labels, len(t.Labels) == 0),
		binary.BigEndian.AppendUint64(nil, uint64(t.UpdatedAt.UnixNano())),
		[]byte(t.UpdatedBy),
	}
	if t.UpdatedAt.IsZero() {
		parts[6] = nil
	}
	var out fieldHashes
	for i, p := range parts {
		h := fnv.New64a()
		h.Write(p)
		out[i] = h.Sum64()
	}
	return out
}

// truthDoc is what verify keeps of one tenant of the source of truth:
// enough to compare, small enough for millions.
type truthDoc struct {
	id      string
	version int64
	deleted bool
	fields  fieldHashes
}

type truthHost struct {
	owner int32 // index into truth.docs
	claim int64
}

// truth is a snapshot of the source of truth, read page by page.
type truth struct {
	ids   map[string]int32
	docs  []truthDoc
	hosts map[string]truthHost
	hostN []string // hostnames, for the "not seen" check
}

func (t *truth) version(id string) int64 {
	if i, ok := t.ids[id]; ok {
		return t.docs[i].version
	}
	return 0
}

// truthSource pages through every tenant of the source of truth,
// tombstones included, with the claim versions of their hostnames.
type truthSource interface {
	Export(ctx context.Context, pageToken string, pageSize int) (exportPage, error)
}

// regionReader is one region's replica, read page by page.
type regionReader struct {
	name string
	tcs.Scanner
}

// verifier compares the source of truth with regions' replicas.
type verifier struct {
	truth    truthSource
	regions  []regionReader
	pageSize int
	limiter  *rate.Limiter // records read per second; nil: no limit
	progress *progress
	// rechecks is how many more passes re-check findings (0: report the
	// first pass as is); settle is the pause before each.
	rechecks int
	settle   time.Duration
}

// verifyReport is verify's outcome.
type verifyReport struct {
	Clean     bool           `json:"clean"`
	Regions   []string       `json:"regions"`
	Tenants   int            `json:"tenants"`
	Hostnames int            `json:"hostnames"`
	Passes    int            `json:"passes"`
	Findings  []driftFinding `json:"findings"`
	// Unsettled lists tenants whose version kept moving through every
	// re-check: not judged (a later run will).
	Unsettled []string `json:"unsettled,omitempty"`
}

// verify runs a pass and re-checks what it found: a finding is reported only
// if the next pass finds it again while the versions of the tenants it is
// about stayed the same in the source of truth. A finding whose tenants
// moved is checked again in the pass after, up to rechecks passes.
func (v *verifier) verify(ctx context.Context) (*verifyReport, error) {
	snap, found, err := v.pass(ctx)
	if err != nil {
		return nil, err
	}
	rep := &verifyReport{Passes: 1, Tenants: len(snap.docs), Hostnames: len(snap.hosts)}
	for _, r := range v.regions {
		rep.Regions = append(rep.Regions, r.name)
	}
	candidates := found
	var confirmed []driftFinding
	for round := 0; round < v.rechecks && len(candidates) > 0; round++ {
		if err := sleep(ctx, v.settle); err != nil {
			return nil, err
		}
		next, again, err := v.pass(ctx)
		if err != nil {
			return nil, err
		}
		rep.Passes++
		byKey := make(map[string]driftFinding, len(again))
		for _, f := range again {
			byKey[f.key()] = f
		}
		var moving []driftFinding
		for _, c := range candidates {
			f, ok := byKey[c.key()]
			if !ok {
				continue // gone: replication caught up, or a write settled it
			}
			stable := true
			for _, id := range c.subjects() {
				if snap.version(id) != next.version(id) {
					stable = false
				}
			}
			if stable {
				confirmed = append(confirmed, f)
			} else {
				moving = append(moving, f)
			}
		}
		candidates, snap = moving, next
		rep.Tenants, rep.Hostnames = len(snap.docs), len(snap.hosts)
	}
	if v.rechecks == 0 {
		confirmed, candidates = candidates, nil
	}
	unsettled := map[string]bool{}
	for _, c := range candidates {
		for _, id := range c.subjects() {
			unsettled[id] = true
		}
	}
	for id := range unsettled {
		rep.Unsettled = append(rep.Unsettled, id)
	}
	sort.Strings(rep.Unsettled)
	sortFindings(confirmed)
	rep.Findings = confirmed
	if rep.Findings == nil {
		rep.Findings = []driftFinding{}
	}
	rep.Clean = len(rep.Findings) == 0
	return rep, nil
}

func sortFindings(fs []driftFinding) {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		if a.TenantID != b.TenantID {
			return a.TenantID < b.TenantID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Hostname < b.Hostname
	})
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (v *verifier) wait(ctx context.Context, n int) error {
	v.progress.add(n)
	if v.limiter == nil || n == 0 {
		return nil
	}
	return v.limiter.WaitN(ctx, min(n, v.limiter.Burst()))
}

// pass reads the source of truth, then every region (in parallel), and
// compares. Reading the truth first means a write during the pass shows as
// a region ahead of (or equal to) the snapshot, never as a false "stale".
func (v *verifier) pass(ctx context.Context) (*truth, []driftFinding, error) {
	snap, err := v.readTruth(ctx)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	var found []driftFinding
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range v.regions {
		g.Go(func() error {
			fs, err := v.compareRegion(gctx, snap, r)
			if err != nil {
				return fmt.Errorf("region %s: %w", r.name, err)
			}
			mu.Lock()
			found = append(found, fs...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return snap, found, nil
}

func (v *verifier) readTruth(ctx context.Context) (*truth, error) {
	t := &truth{ids: map[string]int32{}, hosts: map[string]truthHost{}}
	token := ""
	for {
		var page exportPage
		err := retry(ctx, 5, func() (err error) {
			page, err = v.truth.Export(ctx, token, v.pageSize)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("reading the source of truth: %w", err)
		}
		for _, it := range page.Items {
			d := it.Tenant
			idx := int32(len(t.docs))
			t.ids[d.ID] = idx
			t.docs = append(t.docs, truthDoc{id: d.ID, version: d.Version, deleted: d.Deleted(), fields: hashFields(d)})
			for _, c := range it.Claims {
				if _, dup := t.hosts[c.Hostname]; !dup {
					t.hostN = append(t.hostN, c.Hostname)
				}
				t.hosts[c.Hostname] = truthHost{owner: idx, claim: c.Version}
			}
		}
		if err := v.wait(ctx, len(page.Items)); err != nil {
			return nil, err
		}
		if page.NextPageToken == "" {
			return t, nil
		}
		token = page.NextPageToken
	}
}

func (v *verifier) compareRegion(ctx context.Context, snap *truth, r regionReader) ([]driftFinding, error) {
	var out []driftFinding
	seenDocs := make([]bool, len(snap.docs))
	cursor := ""
	for {
		docs, next, err := r.ScanDocs(ctx, cursor, v.pageSize)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			idx, ok := snap.ids[d.ID]
			if !ok {
				f := driftFinding{Region: r.name, Kind: kindUnknownTenant, TenantID: d.ID, RegionVersion: d.Version,
					Detail: fmt.Sprintf("region holds %s version %d; the source of truth never had this tenant", docKind(d.Deleted()), d.Version)}
				out = append(out, f)
				continue
			}
			seenDocs[idx] = true
			td := snap.docs[idx]
			f := driftFinding{Region: r.name, TenantID: d.ID, TruthVersion: td.version, RegionVersion: d.Version}
			switch {
			case d.Version < td.version:
				f.Kind, f.Detail = kindStaleVersion, fmt.Sprintf("region has version %d, source of truth %d", d.Version, td.version)
			case d.Version > td.version:
				f.Kind, f.Detail = kindAheadVersion, fmt.Sprintf("region has version %d, newer than the source of truth's %d", d.Version, td.version)
			default:
				got := hashFields(d)
				for i, name := range docFields {
					if got[i] != td.fields[i] {
						f.Fields = append(f.Fields, name)
					}
				}
				if len(f.Fields) == 0 {
					continue
				}
				f.Kind, f.Detail = kindContentMismatch, "same version, different "+strings.Join(f.Fields, ", ")
			}
			out = append(out, f)
		}
		if err := v.wait(ctx, len(docs)); err != nil {
			return nil, err
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for i, seen := range seenDocs {
		if !seen {
			td := snap.docs[i]
			out = append(out, driftFinding{Region: r.name, Kind: kindMissingTenant, TenantID: td.id, TruthVersion: td.version,
				Detail: fmt.Sprintf("region has no document; source of truth has %s version %d", docKind(td.deleted), td.version)})
		}
	}

	seenHosts := make(map[string]bool, len(snap.hosts))
	cursor = ""
	for {
		hosts, next, err := r.ScanHosts(ctx, cursor, v.pageSize)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			th, ok := snap.hosts[h.Hostname]
			if !ok {
				if h.TenantID != "" {
					out = append(out, driftFinding{Region: r.name, Kind: kindOrphanedHostname, Hostname: h.Hostname,
						RegionOwner: h.TenantID, RegionClaim: h.ClaimVersion,
						Detail: fmt.Sprintf("region maps it to %s (claim %d); no tenant holds it in the source of truth", h.TenantID, h.ClaimVersion)})
				}
				continue
			}
			seenHosts[h.Hostname] = true
			owner := snap.docs[th.owner].id
			f := driftFinding{Region: r.name, TenantID: owner, Hostname: h.Hostname, TruthOwner: owner, RegionOwner: h.TenantID,
				TruthClaim: th.claim, RegionClaim: h.ClaimVersion}
			switch {
			case h.TenantID == "":
				f.Kind, f.Detail = kindUnmappedHostname, fmt.Sprintf("region maps it to no tenant (claim %d); source of truth: %s (claim %d)", h.ClaimVersion, owner, th.claim)
			case h.TenantID != owner:
				f.Kind, f.Detail = kindWrongOwner, fmt.Sprintf("region maps it to %s (claim %d); source of truth: %s (claim %d)", h.TenantID, h.ClaimVersion, owner, th.claim)
			case h.ClaimVersion != th.claim:
				f.Kind, f.Detail = kindClaimVersion, fmt.Sprintf("region has claim version %d, source of truth %d", h.ClaimVersion, th.claim)
			default:
				continue
			}
			out = append(out, f)
		}
		if err := v.wait(ctx, len(hosts)); err != nil {
			return nil, err
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for _, h := range snap.hostN {
		if seenHosts[h] {
			continue
		}
		th := snap.hosts[h]
		owner := snap.docs[th.owner].id
		out = append(out, driftFinding{Region: r.name, Kind: kindUnmappedHostname, TenantID: owner, Hostname: h, TruthOwner: owner, TruthClaim: th.claim,
			Detail: fmt.Sprintf("region has no record of it; source of truth: %s (claim %d)", owner, th.claim)})
	}
	return out, nil
}

func docKind(deleted bool) string {
	if deleted {
		return "a tombstone at"
	}
	return "the document at"
}
