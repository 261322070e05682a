package drift

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tcs-dev/tcs/catalog"
)

// Action is one tenant to resync, to some regions, with the hostnames to
// settle along with it, and why.
type Action struct {
	TenantID  string   `json:"tenant_id"`
	Regions   []string `json:"regions"`
	Hostnames []string `json:"hostnames,omitempty"`
	Reasons   []string `json:"reasons"`
}

// Unrepairable is a finding resync cannot fix, and why.
type Unrepairable struct {
	Finding
	Why string `json:"why"`
}

// PlanRepair turns findings into the resyncs that fix them: a tenant's
// document by resyncing the tenant; a hostname by resyncing the tenant that
// holds it in the source of truth (its claim is re-emitted) or, for an
// orphan, the tenant the region wrongly maps it to, settling the hostname
// (the catalog re-emits its release). Actions come sorted by tenant, one
// per tenant; what no resync can fix comes back as Unrepairable, in the
// order of fs.
func PlanRepair(fs []Finding) ([]Action, []Unrepairable) {
	byTenant := map[string]*Action{}
	var order []string
	var skipped []Unrepairable
	add := func(id, region, hostname, reason string) {
		a, ok := byTenant[id]
		if !ok {
			a = &Action{TenantID: id}
			byTenant[id] = a
			order = append(order, id)
		}
		if !slices.Contains(a.Regions, region) {
			a.Regions = append(a.Regions, region)
		}
		if hostname != "" && !slices.Contains(a.Hostnames, hostname) {
			a.Hostnames = append(a.Hostnames, hostname)
		}
		a.Reasons = append(a.Reasons, reason)
	}
	for _, f := range fs {
		reason := f.Region + " " + string(f.Kind)
		if f.Hostname != "" {
			reason += " " + f.Hostname
		}
		switch f.Kind {
		case MissingTenant, StaleVersion, ContentMismatch:
			add(f.TenantID, f.Region, "", reason)
		case AheadVersion:
			skipped = append(skipped, Unrepairable{f, "resync never rolls a version back: the region or the catalog was changed outside the pipeline"})
		case UnknownTenant:
			skipped = append(skipped, Unrepairable{f, "the source of truth has no such tenant, so there is nothing to resync"})
		case UnmappedHostname, WrongOwner, ClaimVersion:
			if f.RegionClaim > f.TruthClaim {
				skipped = append(skipped, Unrepairable{f, fmt.Sprintf("the region's claim version %d is above the source of truth's %d; a resync cannot lower it", f.RegionClaim, f.TruthClaim)})
				continue
			}
			add(f.TruthOwner, f.Region, "", reason)
		case OrphanedHostname:
			add(f.RegionOwner, f.Region, f.Hostname, reason)
		default:
			skipped = append(skipped, Unrepairable{f, "unknown kind of drift"})
		}
	}
	out := make([]Action, 0, len(order))
	for _, id := range order {
		a := byTenant[id]
		sort.Strings(a.Regions)
		sort.Strings(a.Hostnames)
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TenantID < out[j].TenantID })
	return out, skipped
}

// Batch is one catalog resync request (catalog.Store.Resync, or POST
// /v1/admin/resync): tenants to re-emit to regions.
type Batch struct {
	Tenants []catalog.ResyncRequest
	Regions []string
}

// Batches groups actions into resync requests: one group per set of target
// regions (in the order of the sets' names, comma-joined), each split into
// requests of at most catalog.MaxResyncTenants tenants. Sending them is
// idempotent (a resync re-emits the current state), so a failed batch may
// be sent again.
func Batches(actions []Action) []Batch {
	groups := map[string][]Action{}
	var keys []string
	for _, a := range actions {
		k := strings.Join(a.Regions, ",")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], a)
	}
	sort.Strings(keys)
	var out []Batch
	for _, k := range keys {
		group := groups[k]
		for i := 0; i < len(group); i += catalog.MaxResyncTenants {
			part := group[i:min(i+catalog.MaxResyncTenants, len(group))]
			b := Batch{Tenants: make([]catalog.ResyncRequest, len(part)), Regions: slices.Clone(part[0].Regions)}
			for j, a := range part {
				b.Tenants[j] = catalog.ResyncRequest{ID: a.TenantID, Hostnames: a.Hostnames}
			}
			out = append(out, b)
		}
	}
	return out
}
