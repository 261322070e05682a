package drift

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/tcs"
)

// Truth pages through every tenant of the source of truth, tombstones
// included, each with the claim versions of the hostnames it holds, in id
// order. pageToken is "" for the first page, then the previous page's Next;
// a page with Next "" is the last. The catalog's REST client
// (catalog/httpclient) is one through a small adapter; StoreTruth makes one
// of a catalog.Store.
type Truth interface {
	Export(ctx context.Context, pageToken string, pageSize int) (catalog.ExportPage, error)
}

// Exporter is the part of catalog.Store that StoreTruth reads.
type Exporter interface {
	Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error)
}

// StoreTruth reads the source of truth straight from a catalog store.
func StoreTruth(s Exporter) Truth { return storeTruth{s} }

type storeTruth struct{ s Exporter }

func (t storeTruth) Export(ctx context.Context, pageToken string, pageSize int) (catalog.ExportPage, error) {
	return t.s.Export(ctx, catalog.ListOptions{After: pageToken, Limit: pageSize})
}

// Region is one region's replica, read page by page.
type Region struct {
	Name    string
	Scanner tcs.Scanner
}

// MaxPageSize is the most records a Verifier asks for per page: the
// catalog's export limit (catalog.MaxExportPageSize) and the replica admin
// API's.
const MaxPageSize = catalog.MaxExportPageSize

// Verifier compares the source of truth with regions' replicas. Its zero
// value (with Truth and Regions set) reports the first pass as is, reads
// pages of MaxPageSize and has no rate limit.
type Verifier struct {
	Truth   Truth
	Regions []Region
	// PageSize is the records asked for per page, 1 to MaxPageSize; 0
	// means MaxPageSize.
	PageSize int
	// Limiter bounds the records read per second, over the truth and
	// every region; nil means no limit.
	Limiter *rate.Limiter
	// Progress, if not nil, is told how many records each page held (the
	// truth's and the regions'). It is called from several goroutines.
	Progress func(records int)
	// Rechecks is how many more passes re-check findings (0: report the
	// first pass as is); Settle is the pause before each, for replication
	// to catch up.
	Rechecks int
	Settle   time.Duration
}

// Report is what Verify found.
type Report struct {
	// Clean is true when there are no Findings.
	Clean bool `json:"clean"`
	// Regions are the names of the regions compared, in Verifier order.
	Regions []string `json:"regions"`
	// Tenants and Hostnames are the sizes of the truth, at the last pass.
	Tenants   int `json:"tenants"`
	Hostnames int `json:"hostnames"`
	Passes    int `json:"passes"`
	// Findings are the confirmed differences, sorted by region, tenant,
	// kind and hostname; never nil.
	Findings []Finding `json:"findings"`
	// Unsettled lists tenants whose version kept moving through every
	// re-check: not judged (a later run will).
	Unsettled []string `json:"unsettled,omitempty"`
}

// Verify runs a pass and re-checks what it found: a finding is reported only
// if the next pass finds it again while the versions of the tenants it is
// about stayed the same in the source of truth. A finding whose tenants
// moved is checked again in the pass after, up to Rechecks passes.
func (v *Verifier) Verify(ctx context.Context) (*Report, error) {
	if v.Truth == nil {
		return nil, errors.New("drift: Verifier has no Truth")
	}
	if v.PageSize < 0 || v.PageSize > MaxPageSize {
		return nil, fmt.Errorf("drift: page size %d: want 1 to %d (0: %[2]d)", v.PageSize, MaxPageSize)
	}
	if v.Rechecks < 0 {
		return nil, fmt.Errorf("drift: rechecks %d: want ≥ 0", v.Rechecks)
	}
	snap, found, err := v.pass(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Passes: 1, Tenants: len(snap.docs), Hostnames: len(snap.hosts)}
	for _, r := range v.Regions {
		rep.Regions = append(rep.Regions, r.Name)
	}
	candidates := found
	var confirmed []Finding
	for round := 0; round < v.Rechecks && len(candidates) > 0; round++ {
		if err := backoff.Sleep(ctx, v.Settle); err != nil {
			return nil, err
		}
		next, again, err := v.pass(ctx)
		if err != nil {
			return nil, err
		}
		rep.Passes++
		byKey := make(map[string]Finding, len(again))
		for _, f := range again {
			byKey[f.key()] = f
		}
		var moving []Finding
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
	if v.Rechecks == 0 {
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
		rep.Findings = []Finding{}
	}
	rep.Clean = len(rep.Findings) == 0
	return rep, nil
}

func (v *Verifier) pageSize() int {
	if v.PageSize == 0 {
		return MaxPageSize
	}
	return v.PageSize
}

// wait counts n records read and waits for the rate limit.
func (v *Verifier) wait(ctx context.Context, n int) error {
	if v.Progress != nil {
		v.Progress(n)
	}
	if v.Limiter == nil || n == 0 {
		return nil
	}
	return v.Limiter.WaitN(ctx, min(n, v.Limiter.Burst()))
}

// docFields are the parts of a document compared one by one, so that a
// content mismatch says which differ. Version is compared on its own.
var docFields = [...]string{"hostnames", "status", "products", "database", "region", "labels", "updated_at", "updated_by", "migration"}

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
		enc(t.Migration, t.Migration == nil),
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

// truthDoc is what a pass keeps of one tenant of the source of truth:
// enough to compare, small enough for millions.
type truthDoc struct {
	id      string
	version int64
	deleted bool
	fields  fieldHashes
}

type truthHost struct {
	owner int32 // index into snapshot.docs
	claim int64
}

// snapshot is the source of truth as one pass read it, page by page.
type snapshot struct {
	ids   map[string]int32
	docs  []truthDoc
	hosts map[string]truthHost
	hostN []string // hostnames, for the "not seen" check
}

func (t *snapshot) version(id string) int64 {
	if i, ok := t.ids[id]; ok {
		return t.docs[i].version
	}
	return 0
}

// pass reads the source of truth, then every region (in parallel), and
// compares. Reading the truth first means a write during the pass shows as
// a region ahead of (or equal to) the snapshot, never as a false "stale".
func (v *Verifier) pass(ctx context.Context) (*snapshot, []Finding, error) {
	snap, err := v.readTruth(ctx)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	var found []Finding
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range v.Regions {
		g.Go(func() error {
			fs, err := v.compareRegion(gctx, snap, r)
			if err != nil {
				return fmt.Errorf("region %s: %w", r.Name, err)
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

func (v *Verifier) readTruth(ctx context.Context) (*snapshot, error) {
	t := &snapshot{ids: map[string]int32{}, hosts: map[string]truthHost{}}
	token := ""
	for {
		page, err := v.Truth.Export(ctx, token, v.pageSize())
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
		if page.Next == "" {
			return t, nil
		}
		token = page.Next
	}
}

func (v *Verifier) compareRegion(ctx context.Context, snap *snapshot, r Region) ([]Finding, error) {
	var out []Finding
	seenDocs := make([]bool, len(snap.docs))
	cursor := ""
	for {
		docs, next, err := r.Scanner.ScanDocs(ctx, cursor, v.pageSize())
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			idx, ok := snap.ids[d.ID]
			if !ok {
				f := Finding{Region: r.Name, Kind: UnknownTenant, TenantID: d.ID, RegionVersion: d.Version,
					Detail: fmt.Sprintf("region holds %s version %d; the source of truth never had this tenant", docKind(d.Deleted()), d.Version)}
				out = append(out, f)
				continue
			}
			seenDocs[idx] = true
			td := snap.docs[idx]
			f := Finding{Region: r.Name, TenantID: d.ID, TruthVersion: td.version, RegionVersion: d.Version}
			switch {
			case d.Version < td.version:
				f.Kind, f.Detail = StaleVersion, fmt.Sprintf("region has version %d, source of truth %d", d.Version, td.version)
			case d.Version > td.version:
				f.Kind, f.Detail = AheadVersion, fmt.Sprintf("region has version %d, newer than the source of truth's %d", d.Version, td.version)
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
				f.Kind, f.Detail = ContentMismatch, "same version, different "+strings.Join(f.Fields, ", ")
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
			out = append(out, Finding{Region: r.Name, Kind: MissingTenant, TenantID: td.id, TruthVersion: td.version,
				Detail: fmt.Sprintf("region has no document; source of truth has %s version %d", docKind(td.deleted), td.version)})
		}
	}

	seenHosts := make(map[string]bool, len(snap.hosts))
	cursor = ""
	for {
		hosts, next, err := r.Scanner.ScanHosts(ctx, cursor, v.pageSize())
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			th, ok := snap.hosts[h.Hostname]
			if !ok {
				if h.TenantID != "" {
					out = append(out, Finding{Region: r.Name, Kind: OrphanedHostname, Hostname: h.Hostname,
						RegionOwner: h.TenantID, RegionClaim: h.ClaimVersion,
						Detail: fmt.Sprintf("region maps it to %s (claim %d); no tenant holds it in the source of truth", h.TenantID, h.ClaimVersion)})
				}
				continue
			}
			seenHosts[h.Hostname] = true
			owner := snap.docs[th.owner].id
			f := Finding{Region: r.Name, TenantID: owner, Hostname: h.Hostname, TruthOwner: owner, RegionOwner: h.TenantID,
				TruthClaim: th.claim, RegionClaim: h.ClaimVersion}
			switch {
			case h.TenantID == "":
				f.Kind, f.Detail = UnmappedHostname, fmt.Sprintf("region maps it to no tenant (claim %d); source of truth: %s (claim %d)", h.ClaimVersion, owner, th.claim)
			case h.TenantID != owner:
				f.Kind, f.Detail = WrongOwner, fmt.Sprintf("region maps it to %s (claim %d); source of truth: %s (claim %d)", h.TenantID, h.ClaimVersion, owner, th.claim)
			case h.ClaimVersion != th.claim:
				f.Kind, f.Detail = ClaimVersion, fmt.Sprintf("region has claim version %d, source of truth %d", h.ClaimVersion, th.claim)
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
		out = append(out, Finding{Region: r.Name, Kind: UnmappedHostname, TenantID: owner, Hostname: h, TruthOwner: owner, TruthClaim: th.claim,
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
