package tcs

import (
	"sort"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// HostRecord is a replica's entry for one hostname: the tenant that owns it
// ("" once released) and the claim version that decided it. Released
// hostnames keep their record, so an older claim arriving late cannot take
// the hostname back.
type HostRecord struct {
	TenantID     string `json:"tenant_id"`
	ClaimVersion int64  `json:"claim_version"`
}

// ApplyTxn is the view of a replica inside one atomic transaction, as
// ApplyEvent needs it. A backend implements it over its own transaction.
// ApplyEvent puts only what differs from what is stored: a resync of the
// stored document puts no document, at most the records it repairs.
type ApplyTxn interface {
	// Doc returns the stored document (tombstones included), or nil.
	Doc(id string) (*tenant.Tenant, error)
	PutDoc(t *tenant.Tenant) error
	// Host returns the hostname's record; ok is false if there is none.
	Host(hostname string) (rec HostRecord, ok bool, err error)
	PutHost(hostname string, rec HostRecord) error
}

// ApplyEvent applies one change event inside tx. These rules make a replica
// converge to the source of truth whatever the order, duplication or replay
// of events (docs/architecture.md, invariants 2 and 3):
//
//  1. The document is replaced only by a newer version (version-gated;
//     an event at or below the stored version is a no-op for the document).
//     A resync event also replaces an equal version, to repair content, but
//     never a newer one. Tombstones are documents too, so a stale create
//     cannot resurrect a deleted tenant.
//  2. A hostname's owner is decided by the highest claim version seen: a
//     claim or release with a higher claim version than the stored record
//     wins, whichever tenant's event carries it. Claims are taken only from
//     an event that replaced the document (the tenant's newest state): a
//     stale event's claims are superseded by the newer document's.
//     Releases are applied from every event, stale or not, because a later
//     version of the tenant does not repeat them.
//  3. When a document is replaced, hostnames the old document held and the
//     new one does not are unmapped if they still point at this tenant
//     (their release event may not have arrived yet), keeping the claim
//     version so any newer claim still wins.
//  4. A resync event repairs what an equal claim version cannot otherwise
//     fix: its claims also win at an equal claim version (a record naming
//     another tenant at that version is corrupt), and its releases also
//     unmap, at an equal claim version, a record that still names this
//     tenant (an orphan). Nothing is ever taken back to a lower version.
//
// ApplyResult.Hostnames are the hostnames whose lookup answer may have
// changed: those of the old and new document when the document was replaced
// by different content, and those whose record changed owner. A resync that
// finds its document already stored reports only the records it repaired,
// so resyncing a healthy region invalidates no cache entry. An ordinary event
// that finds its own version stored (a redelivery) reports its document's
// hostnames again, with Applied false: the broadcast of the first delivery
// may have been lost with the applier that made it.
func ApplyEvent(tx ApplyTxn, ev *tenant.ChangeEvent) (ApplyResult, error) {
	if err := CheckEvent(ev); err != nil {
		return ApplyResult{}, err
	}
	var res ApplyResult
	touched := map[string]bool{}

	stored, err := tx.Doc(ev.TenantID)
	if err != nil {
		return res, err
	}
	newer := stored == nil || ev.Version > stored.Version || (ev.Resync && ev.Version == stored.Version)
	if newer {
		// A resync finding the document it carries already stored (the
		// usual case: resyncing a healthy region) changes what lookups
		// answer only where it repairs a hostname record, so only those
		// hostnames are reported: a resync of every tenant must not flush
		// every lookup cache.
		if stored == nil || !tenant.Equal(stored, ev.Tenant) {
			if err := tx.PutDoc(ev.Tenant); err != nil {
				return res, err
			}
			for _, h := range ev.Tenant.Hostnames {
				touched[h] = true
			}
		}
		res.Applied = true
		if stored != nil {
			for _, h := range stored.Hostnames {
				if ev.Tenant.HasHostname(h) {
					continue
				}
				touched[h] = true
				rec, ok, err := tx.Host(h)
				if err != nil {
					return res, err
				}
				if ok && rec.TenantID == ev.TenantID {
					if err := tx.PutHost(h, HostRecord{ClaimVersion: rec.ClaimVersion}); err != nil {
						return res, err
					}
				}
			}
		}
		for _, c := range ev.Claims {
			rec, ok, err := tx.Host(c.Hostname)
			if err != nil {
				return res, err
			}
			want := HostRecord{TenantID: ev.TenantID, ClaimVersion: c.Version}
			if ok && rec == want {
				continue
			}
			if !ok || c.Version > rec.ClaimVersion || (ev.Resync && c.Version == rec.ClaimVersion) {
				if err := tx.PutHost(c.Hostname, want); err != nil {
					return res, err
				}
				touched[c.Hostname] = true
			}
		}
	}
	if !newer && !ev.Resync && ev.Version == stored.Version && tenant.Equal(stored, ev.Tenant) {
		// A redelivery of the stored version (streams deliver at least
		// once). Its hostnames are reported again, so that an invalidation
		// lost because an applier stopped between its apply and its
		// broadcast goes out with the redelivery; caches compare versions,
		// so entries already at this version stay.
		for _, h := range ev.Tenant.Hostnames {
			touched[h] = true
		}
	}
	for _, r := range ev.Released {
		rec, ok, err := tx.Host(r.Hostname)
		if err != nil {
			return res, err
		}
		want := HostRecord{ClaimVersion: r.Version}
		// A resync's release at the stored claim version clears a record
		// that maps the hostname to this tenant at that version: a claim
		// version names one state of the hostname, and the source of truth
		// says that state is "free", so the record is corrupt.
		orphan := ev.Resync && ok && r.Version == rec.ClaimVersion && rec.TenantID == ev.TenantID
		if !ok || r.Version > rec.ClaimVersion || orphan {
			if err := tx.PutHost(r.Hostname, want); err != nil {
				return res, err
			}
			if ok && rec.TenantID != "" {
				touched[r.Hostname] = true
			}
		}
	}
	for h := range touched {
		res.Hostnames = append(res.Hostnames, h)
	}
	sort.Strings(res.Hostnames)
	return res, nil
}

// CheckEvent returns an Invalid *tenant.Error if ev is malformed: no event,
// no tenant id, no document, a document of another tenant or version, or a
// version below 1. ApplyEvent rejects such events; an applier skips them,
// since no retry can ever apply them.
func CheckEvent(ev *tenant.ChangeEvent) error {
	if ev == nil {
		return tenant.Errorf(tenant.Invalid, "apply: nil event")
	}
	if ev.TenantID == "" || ev.Tenant == nil || ev.Tenant.ID != ev.TenantID || ev.Version != ev.Tenant.Version || ev.Version < 1 {
		return tenant.Errorf(tenant.Invalid, "apply: malformed event for tenant %q version %d", ev.TenantID, ev.Version)
	}
	return nil
}

// LookupIn resolves a hostname inside tx: the owner's live document, if the
// document still lists the hostname. The last check guards the window in
// which a newer claim has not reached the document (rule 2 keeps them in
// step; this makes a lookup safe even if a backend reads them separately).
func LookupIn(tx ApplyTxn, hostname string) (*tenant.Tenant, error) {
	rec, ok, err := tx.Host(hostname)
	if err != nil {
		return nil, err
	}
	if !ok || rec.TenantID == "" {
		return nil, tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", hostname)
	}
	doc, err := tx.Doc(rec.TenantID)
	if err != nil {
		return nil, err
	}
	if doc == nil || doc.Deleted() || !doc.HasHostname(hostname) {
		return nil, tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", hostname)
	}
	return doc, nil
}
