package tcs

import (
	"slices"
	"sort"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Coalescible reports whether next may be folded into a run of events that
// ends with prev (see CoalesceEvents): both ordinary events (not resyncs) of
// the same tenant, next the version right after prev's.
func Coalescible(prev, next *tenant.ChangeEvent) bool {
	return prev != nil && next != nil && !prev.Resync && !next.Resync &&
		prev.TenantID == next.TenantID && next.Version == prev.Version+1
}

// Runs splits evs, in order, into maximal runs of events each Coalescible
// with the one before: what an applier merges with CoalesceEvents, one run
// at a time.
func Runs(evs []*tenant.ChangeEvent) [][]*tenant.ChangeEvent {
	var out [][]*tenant.ChangeEvent
	start := 0
	for i := 1; i <= len(evs); i++ {
		if i == len(evs) || !Coalescible(evs[i-1], evs[i]) {
			out = append(out, evs[start:i])
			start = i
		}
	}
	return out
}

// CoalesceEvents merges a run of events into one whose ApplyEvent leaves a
// replica exactly as applying the run's events one by one, in order, would
// (documents and hostname records alike). A run is one tenant's ordinary
// events at consecutive versions, oldest first (each Coalescible with the
// one before); anything else is an Invalid error. A run of one event is
// that event, returned as it is (a resync too).
//
// The merged event is the newest one (its document, claims, CommittedAt and
// version) with Released holding every event's releases (for a hostname
// released more than once, the highest claim version). Why that is exact,
// rule by rule of ApplyEvent:
//
//   - Documents: versions are gated, so the run's newest document is the
//     one left stored either way; a run at or below the stored version
//     leaves the document alone either way.
//   - Releases apply from every event, stale or not, and a record takes a
//     write only at a higher claim version: the highest release of each
//     hostname decides. A release that the newest event claimed back is
//     kept: a claim back has a higher claim version than the release (every
//     change of a hostname's owner takes a new one), so once the claim is
//     applied the release is a no-op, and when the claim is not applied (the
//     run is stale) applying the release is what the events one by one do.
//   - Claims of an event older than the newest: a hostname the newest event
//     holds at the same claim version is the same claim. Any other claim was
//     given up by a later event of the run (versions are consecutive, and
//     the change that drops a hostname carries its release, at a higher
//     claim version), so one by one that claim is overwritten by the
//     release, which the merged event carries.
//   - Unmapping (rule 3): what the events one by one unmap step by step is
//     either held by the newest document (and claimed by it), or dropped on
//     the way and released at a higher claim version than its record, or
//     dropped from the stored document and absent from the newest, which
//     the merged apply unmaps too.
//
// This needs the run's versions to be consecutive: across a gap, a hostname
// claimed before the gap and dropped in it has no release in the run. A
// tenant's versions are consecutive through deletes and re-creates (a
// re-created tenant continues its version sequence).
//
// ApplyEvent(merged).Hostnames can miss hostnames that only intermediate
// states held; CoalescedHostnames gives what to invalidate in addition.
func CoalesceEvents(evs []*tenant.ChangeEvent) (*tenant.ChangeEvent, error) {
	if len(evs) == 0 {
		return nil, tenant.Errorf(tenant.Invalid, "coalesce: no events")
	}
	for i, ev := range evs {
		if err := CheckEvent(ev); err != nil {
			return nil, err
		}
		if ev.Resync && len(evs) > 1 {
			return nil, tenant.Errorf(tenant.Invalid, "coalesce: %s@%d is a resync event", ev.TenantID, ev.Version)
		}
		if i > 0 && !Coalescible(evs[i-1], ev) {
			return nil, tenant.Errorf(tenant.Invalid, "coalesce: %s@%d does not follow %s@%d", ev.TenantID, ev.Version, evs[i-1].TenantID, evs[i-1].Version)
		}
	}
	newest := evs[len(evs)-1]
	if len(evs) == 1 {
		return newest, nil
	}
	released := map[string]int64{}
	for _, ev := range evs {
		for _, r := range ev.Released {
			if v, ok := released[r.Hostname]; !ok || r.Version > v {
				released[r.Hostname] = r.Version
			}
		}
	}
	merged := *newest
	merged.Claims = slices.Clone(newest.Claims)
	merged.Released = make([]tenant.Claim, 0, len(released))
	for h, v := range released {
		merged.Released = append(merged.Released, tenant.Claim{Hostname: h, Version: v})
	}
	sort.Slice(merged.Released, func(i, j int) bool { return merged.Released[i].Hostname < merged.Released[j].Hostname })
	return &merged, nil
}

// CoalescedHostnames returns, sorted, every hostname that the events'
// documents hold or that they release: a superset of the ApplyResult
// hostnames of applying them one by one. An applier that applied a merged
// event (CoalesceEvents) and changed something invalidates these too, since
// a lookup may have answered from a state that only the run's middle
// reached (on a replica that applied some of those events before).
func CoalescedHostnames(evs []*tenant.ChangeEvent) []string {
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Tenant != nil {
			for _, h := range ev.Tenant.Hostnames {
				seen[h] = true
			}
		}
		for _, r := range ev.Released {
			seen[r.Hostname] = true
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
