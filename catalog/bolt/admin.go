package bolt

import (
	"context"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/boltfile"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

// Resync appends one resync event per distinct tenant of reqs, all in one
// transaction. See catalog.Store.
func (s *Store) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	if err := catalog.CheckResync(reqs, regions); err != nil {
		return catalog.ResyncResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return catalog.ResyncResult{}, err
	}
	reqs = catalog.MergeResync(reqs)
	regions = catalog.SortedSet(regions)
	var res catalog.ResyncResult
	err := s.db.Update(func(tx *bbolt.Tx) error {
		res = catalog.ResyncResult{}
		e := s.newResyncer(tx, regions, spanctx.Capture(ctx))
		for _, r := range reqs {
			doc, err := getTenant(tx, r.ID)
			if err != nil {
				return err
			}
			if doc == nil {
				res.NotFound = append(res.NotFound, r.ID)
				continue
			}
			if err := e.emit(doc, r.Hostnames); err != nil {
				return err
			}
			res.Resynced = append(res.Resynced, catalog.ResyncedTenant{ID: doc.ID, Version: doc.Version})
		}
		if len(res.Resynced) > 0 {
			tx.OnCommit(s.outboxChanged)
		}
		ids := make([]string, len(reqs))
		for i, r := range reqs {
			ids[i] = r.ID
		}
		return s.auditResync(ctx, tx, catalog.ActionResync, catalog.ResyncAudit{Tenants: ids, Regions: regions}, e.at)
	})
	if err != nil {
		return catalog.ResyncResult{}, tenant.WrapOp(err, "bolt resync")
	}
	return res, nil
}

// ResyncAll resyncs the stored tenants after the id after, in id order, in
// one transaction. See catalog.Store.
func (s *Store) ResyncAll(ctx context.Context, after string, limit int, regions []string) (catalog.ResyncResult, string, error) {
	if err := catalog.CheckResyncAll(after, regions); err != nil {
		return catalog.ResyncResult{}, "", err
	}
	if err := ctx.Err(); err != nil {
		return catalog.ResyncResult{}, "", err
	}
	limit = catalog.ResyncAllLimit(limit)
	regions = catalog.SortedSet(regions)
	var (
		res  catalog.ResyncResult
		next string
	)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		res, next = catalog.ResyncResult{}, ""
		e := s.newResyncer(tx, regions, spanctx.Capture(ctx))
		c := tx.Bucket(bucketTenants).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(res.Resynced) == limit {
				next = res.Resynced[limit-1].ID
				break
			}
			doc := new(tenant.Tenant)
			if err := catalog.DecodeStored(v, doc, "tenant", string(k)); err != nil {
				return err
			}
			if err := e.emit(doc, nil); err != nil {
				return err
			}
			res.Resynced = append(res.Resynced, catalog.ResyncedTenant{ID: doc.ID, Version: doc.Version})
		}
		if len(res.Resynced) == 0 {
			return nil
		}
		tx.OnCommit(s.outboxChanged)
		ids := make([]string, len(res.Resynced))
		for i, r := range res.Resynced {
			ids[i] = r.ID
		}
		return s.auditResync(ctx, tx, catalog.ActionResyncAll, catalog.ResyncAudit{All: true, After: after, Tenants: ids, Regions: regions}, e.at)
	})
	if err != nil {
		return catalog.ResyncResult{}, "", tenant.WrapOp(err, "bolt resync all after "+after)
	}
	return res, next, nil
}

// auditResync appends the record of a resync to the catalog.AdminAuditID
// chain, naming the caller auth.FromContext(ctx) identifies.
func (s *Store) auditResync(ctx context.Context, tx *bbolt.Tx, action catalog.Action, what catalog.ResyncAudit, at time.Time) error {
	caller, _ := auth.FromContext(ctx)
	if len(what.Regions) == 0 {
		what.Regions = nil
	}
	return appendAudit(tx, &catalog.AuditRecord{TenantID: catalog.AdminAuditID, Action: action, Actor: caller.Name, At: at, Resync: &what})
}

// resyncer appends resync events to the outbox inside one transaction.
type resyncer struct {
	hosts, outbox *bbolt.Bucket
	at            time.Time
	regions       []string
	trace         tenant.TraceContext              // of the request's span; zero when not traced
	claims        map[string]catalog.HostnameClaim // reused by each emit
}

func (s *Store) newResyncer(tx *bbolt.Tx, regions []string, trace tenant.TraceContext) *resyncer {
	return &resyncer{hosts: tx.Bucket(bucketHostnames), outbox: tx.Bucket(bucketOutbox),
		at: s.now().UTC().Truncate(time.Microsecond), regions: regions, trace: trace, claims: map[string]catalog.HostnameClaim{}}
}

// emit appends the resync event of doc, settling the hostnames settle (see
// catalog.ResyncRequest and catalog.ResyncEvent).
func (e *resyncer) emit(doc *tenant.Tenant, settle []string) error {
	if err := readClaims(e.hosts, e.claims, doc.Hostnames, settle); err != nil {
		return err
	}
	seq, err := e.outbox.NextSequence()
	if err != nil {
		return err
	}
	entry := catalog.OutboxEntry{Seq: seq, Event: catalog.ResyncEvent(doc, e.claims, settle, e.regions, e.at, e.trace)}
	return putJSON(e.outbox, seqKey(seq), entry)
}

// readClaims sets claims (cleared first: callers reuse one map per
// transaction) to the stored claims of the hostnames of each of lists.
func readClaims(hosts *bbolt.Bucket, claims map[string]catalog.HostnameClaim, lists ...[]string) error {
	clear(claims)
	for _, list := range lists {
		for _, h := range list {
			if _, ok := claims[h]; ok {
				continue
			}
			rec, err := getHostname(hosts, h)
			if err != nil {
				return err
			}
			claims[h] = catalog.HostnameClaim{Owner: rec.TenantID, Version: rec.ClaimVersion}
		}
	}
	return nil
}

// heldClaims returns the claims of the hostnames doc holds (see
// catalog.HeldClaims), reading them into claims.
func heldClaims(hosts *bbolt.Bucket, claims map[string]catalog.HostnameClaim, doc *tenant.Tenant) ([]tenant.Claim, error) {
	if err := readClaims(hosts, claims, doc.Hostnames); err != nil {
		return nil, err
	}
	return catalog.HeldClaims(doc, claims), nil
}

// Export returns a page of every stored tenant, tombstones included, with
// its claims, read in one transaction. See catalog.Store.
func (s *Store) Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error) {
	if err := catalog.CheckSegment(opts); err != nil {
		return catalog.ExportPage{}, err
	}
	limit := catalog.ExportLimit(opts.Limit)
	page, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) (catalog.ExportPage, error) {
		var page catalog.ExportPage
		hosts := tx.Bucket(bucketHostnames)
		held := map[string]catalog.HostnameClaim{} // reused by each tenant
		c := tx.Bucket(bucketTenants).Cursor()
		var k, v []byte
		if opts.After == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(opts.After))
			if k != nil && string(k) == opts.After {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if !opts.InSegment(string(k)) {
				continue
			}
			if len(page.Items) == limit {
				page.Next = page.Items[limit-1].Tenant.ID
				return page, nil
			}
			t := new(tenant.Tenant)
			if err := catalog.DecodeStored(v, t, "tenant", string(k)); err != nil {
				return page, err
			}
			claims, err := heldClaims(hosts, held, t)
			if err != nil {
				return page, err
			}
			page.Items = append(page.Items, catalog.ExportItem{Tenant: t, Claims: claims})
		}
		return page, nil
	})
	return page, tenant.WrapOp(err, "bolt export tenants after "+opts.After)
}
