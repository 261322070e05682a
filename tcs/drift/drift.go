// Package drift compares the source of truth (the catalog) with regions'
// replicas and plans the resyncs that repair what differs: the engine of
// `tcsctl verify` and `tcsctl repair`, usable by anything else that must
// tell whether the regions agree with the catalog.
//
// A Verifier reads the truth page by page through a Truth (the catalog's
// REST export, or a catalog.Store through StoreTruth), then every region
// through its tcs.Scanner (a replica in process, or a remote one through
// tcs/lookup/adminclient), and reports each difference as a Finding of one
// Kind. It re-checks what it found before reporting it, so that a write in
// flight (committed, not yet applied) is not taken for drift.
//
// PlanRepair turns findings into repair Actions (which tenants to resync to
// which regions, with which hostnames to settle) and the findings no resync
// can fix; Batches groups the actions into resync requests
// (catalog.Store.Resync, or POST /v1/admin/resync through catalog/httpclient).
// Sending them is the caller's: drift does no writes. What each kind gets:
//
//	missing_tenant, stale_version,        resync the tenant
//	content_mismatch
//	unmapped_hostname, wrong_owner,       resync the tenant that holds the hostname in the
//	claim_version                         truth (its claim is re-emitted); unrepairable when
//	                                      the region's claim version is above the truth's
//	orphaned_hostname                     resync the tenant the region maps it to, settling
//	                                      the hostname (the catalog re-emits its release)
//	ahead_version, unknown_tenant         unrepairable: a resync never rolls a region back,
//	                                      and cannot delete what the truth never had
package drift

import (
	"slices"
	"sort"
)

// Kind is a kind of drift.
type Kind string

// The kinds of drift a Verifier reports.
const (
	// MissingTenant: the region has no document of a tenant the source of
	// truth has.
	MissingTenant Kind = "missing_tenant"
	// StaleVersion: the region holds an older version than the source of
	// truth.
	StaleVersion Kind = "stale_version"
	// AheadVersion: the region holds a newer version than the source of
	// truth: only a corrupted replica or a restored catalog gets there;
	// resync never rolls a version back, so repair cannot fix it.
	AheadVersion Kind = "ahead_version"
	// ContentMismatch: same version, different content.
	ContentMismatch Kind = "content_mismatch"
	// UnknownTenant: the region has a document of a tenant the source of
	// truth never had.
	UnknownTenant Kind = "unknown_tenant"
	// UnmappedHostname: a hostname the source of truth assigns to a tenant
	// maps to no tenant in the region.
	UnmappedHostname Kind = "unmapped_hostname"
	// WrongOwner: a hostname maps to another tenant in the region than in
	// the truth.
	WrongOwner Kind = "wrong_owner"
	// ClaimVersion: same owner, different claim version.
	ClaimVersion Kind = "claim_version"
	// OrphanedHostname: the region maps a hostname that no tenant holds in
	// the truth.
	OrphanedHostname Kind = "orphaned_hostname"
)

// Finding is one difference between a region and the source of truth.
// Which fields are set depends on the Kind: document kinds set TenantID and
// the versions (Fields too for ContentMismatch), hostname kinds set
// Hostname, the owners and the claim versions.
type Finding struct {
	Region        string   `json:"region"`
	Kind          Kind     `json:"kind"`
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

func (f Finding) key() string {
	return f.Region + "\x00" + string(f.Kind) + "\x00" + f.TenantID + "\x00" + f.Hostname
}

// subjects are the tenants whose versions a finding depends on: if any of
// them moved between two passes, the finding is re-checked.
func (f Finding) subjects() []string {
	var out []string
	for _, id := range []string{f.TenantID, f.TruthOwner, f.RegionOwner} {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// sortFindings orders findings by region, tenant, kind and hostname.
func sortFindings(fs []Finding) {
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
