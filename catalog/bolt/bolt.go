// Package bolt is the embedded source of truth: a catalog.Store kept in one
// bbolt file. Every write commits the tenant document, its hostname claims,
// an audit record and an outbox entry in a single bbolt transaction, so the
// outbox holds exactly the committed changes, in commit order. What a write
// stores is decided by catalog.PlanWrite; the store reads what the plan
// needs and writes what it returns, inside the transaction.
//
// Buckets:
//
//	tenants    id → JSON tenant; tombstones (status DELETED) are kept so that a
//	           re-created tenant continues the version sequence
//	hostnames  normalised hostname → JSON hostnameRecord; a released hostname
//	           keeps its record (owner "") so its claim version never goes back
//	audit      id + 0x00 + big-endian version → JSON catalog.AuditRecord,
//	           hash-chained per id (catalog.SealAudit); never overwritten.
//	           id catalog.AdminAuditID holds the resync records
//	audit_heads id → big-endian version (8 bytes) + hex hash of the id's
//	           newest audit record: the chain head, so that a write needs
//	           not read the previous record. A tenant without one (written
//	           before chaining) starts its chain at its next record
//	outbox     big-endian sequence (bucket.NextSequence) → JSON catalog.OutboxEntry
//	meta       schema version
//
// Writes commit in groups: a write that arrives while a commit is running
// waits for it and then runs, with every other write that arrived
// meanwhile, in the next transaction, one fsync for them all
// (boltfile.GroupCommit; a lone write commits at once). Each returns only
// after the commit holding it is on disk. A write plans (PlanWrite: encode,
// hash) from a read transaction before it joins a group, so that writers
// plan in parallel; in the group it only checks that the state it read is
// still stored, and plans again if not. A write that PlanWrite rejects
// writes nothing and does not fail its group; a write whose transaction
// fails for another reason is run again alone. The outbox is one shard
// (OutboxShards is 1), so List and Export run in id order.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/internal/boltfile"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

var _ catalog.Store = (*Store)(nil)

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = boltfile.DefaultTimeout

// schemaVersion is the layout of the buckets described in the package comment.
const schemaVersion = "1"

var (
	bucketTenants   = []byte("tenants")
	bucketHostnames = []byte("hostnames")
	bucketAudit     = []byte("audit")
	bucketOutbox    = []byte("outbox")
	bucketHeads     = []byte("audit_heads")
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Now is the clock stamped on tenants, audit records and events; nil
	// means time.Now.
	Now func() time.Time
	// Timeout is how long to wait for the file lock held by another process;
	// zero means DefaultTimeout.
	Timeout time.Duration
}

// Store is a catalog.Store in a bbolt file. It is safe for concurrent use;
// concurrent writes share commits (group commit), each returning once the
// commit holding it is on disk.
type Store struct {
	db    *bbolt.DB
	group *boltfile.GroupCommit
	now   func() time.Time

	mu sync.Mutex
	// changed is closed (and forgotten) by the next commit that adds an
	// outbox entry; see OutboxChanged.
	changed chan struct{}
}

// OutboxChanged returns a channel that is closed when a commit adds to the
// outbox, so that a publisher in this process can wake at once instead of
// waiting for its next poll. Take the channel before reading the outbox:
// a commit between the read and the wait then still wakes the waiter.
func (s *Store) OutboxChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

func (s *Store) outboxChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Open opens (creating if needed) the catalog file at path. If another
// process holds the file, Open fails after opts.Timeout instead of waiting
// forever.
func Open(path string, opts Options) (*Store, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db, err := boltfile.Open(path, boltfile.Spec{Kind: "catalog", Timeout: opts.Timeout, Schema: schemaVersion,
		Buckets: [][]byte{bucketTenants, bucketHostnames, bucketAudit, bucketOutbox, bucketHeads}})
	if err != nil {
		return nil, err
	}
	return &Store{db: db, group: boltfile.NewGroupCommit(db), now: now}, nil
}

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt close: %w", err)
	}
	return nil
}

// Ping runs an empty read transaction.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketTenants) == nil {
			return errors.New("tenants bucket missing")
		}
		return nil
	})
	return tenant.WrapOp(err, "bolt ping")
}

// hostnameRecord is the value of the hostnames bucket. TenantID "" means the
// hostname is free; ClaimVersion counts every change of owner.
type hostnameRecord struct {
	TenantID     string `json:"tenant_id"`
	ClaimVersion int64  `json:"claim_version"`
}

// Create stores a new tenant. See catalog.Store.
func (s *Store) Create(ctx context.Context, t *tenant.Tenant, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: t, Actor: actor})
}

// Update replaces a live tenant at expectedVersion. See catalog.Store.
func (s *Store) Update(ctx context.Context, t *tenant.Tenant, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: t, ExpectedVersion: expectedVersion, Actor: actor})
}

// Delete replaces a live tenant by a tombstone and releases its hostnames.
// See catalog.Store.
func (s *Store) Delete(ctx context.Context, id string, expectedVersion int64, actor string) (*tenant.Tenant, error) {
	return s.write(ctx, catalog.WriteRequest{Action: catalog.ActionDelete, ID: id, ExpectedVersion: expectedVersion, Actor: actor})
}

// write is the I/O shell around catalog.PlanWrite: in one bbolt transaction
// (shared with the writes that arrive while the previous commit runs: a
// group commit, see the package comment) it reads what the plan needs (the tenant, its audit head, the claims of
// the hostnames involved), plans, and stores what the plan returns — the
// document, the claims it moves, the audit record and its head, the outbox
// entry. A rejected plan rolls the transaction back, so it changes nothing.
func (s *Store) write(ctx context.Context, req catalog.WriteRequest) (*tenant.Tenant, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	id := req.TenantID()
	op := fmt.Sprintf("bolt %s tenant %s", req.Action, id)
	// The outbox entry carries the trace context of the request's span
	// (committed with the change), so that publish, apply and invalidation
	// join the write's trace.
	req.Trace = spanctx.Capture(ctx)
	// Plan first from a read transaction, outside the commit that writers
	// share, so that concurrent writers plan (encode, hash) in parallel; the
	// commit only checks that what the plan read is still what is stored,
	// and plans again inside if not. A plan rejected from the snapshot is
	// the answer: the state it was rejected on was committed while the
	// write ran.
	snap, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) (writeState, error) { return readWriteState(tx, &req) })
	if err != nil {
		return nil, tenant.WrapOp(err, op)
	}
	req.At = s.now()
	planned, err := catalog.PlanWrite(snap.st, req)
	if err != nil {
		return nil, tenant.WrapOp(err, op)
	}

	// out and rejected are set by the last run of fn: the group commit
	// may run it twice (see boltfile.GroupCommit).
	var out *tenant.Tenant
	var rejected error
	err = s.group.Update(func(tx *bbolt.Tx) error {
		out, rejected = nil, nil
		now, err := readWriteState(tx, &req)
		if err != nil {
			return err
		}
		p := planned
		if !now.same(snap) {
			req.At = s.now()
			p, err = catalog.PlanWrite(now.st, req)
			var domain *tenant.Error
			if errors.As(err, &domain) {
				// A rejected write has written nothing: it reports its
				// error without failing the round the other writers share.
				rejected = err
				return nil
			}
			if err != nil {
				return err
			}
		}

		tx.OnCommit(s.outboxChanged)
		hosts := tx.Bucket(bucketHostnames)
		for _, c := range p.Changes {
			if err := putJSON(hosts, []byte(c.Hostname), hostnameRecord{TenantID: c.To.Owner, ClaimVersion: c.To.Version}); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketTenants).Put([]byte(id), p.DocJSON); err != nil {
			return err
		}
		if err := putAudit(tx, &p.Audit, p.AuditJSON); err != nil {
			return err
		}
		outbox := tx.Bucket(bucketOutbox)
		seq, err := outbox.NextSequence()
		if err != nil {
			return err
		}
		if err := putJSON(outbox, seqKey(seq), catalog.OutboxEntry{Seq: seq, Event: p.Event}); err != nil {
			return err
		}
		out = p.Result
		return nil
	})
	if err == nil {
		err = rejected
	}
	if err != nil {
		return nil, tenant.WrapOp(err, op)
	}
	return out, nil
}

// writeState is what a write reads: the state PlanWrite takes, and the
// stored bytes of the tenant (a copy, valid after the transaction) to tell
// whether it moved.
type writeState struct {
	st  catalog.WriteState
	raw []byte
}

// same reports whether o is the state w was read from.
func (w writeState) same(o writeState) bool {
	return bytes.Equal(w.raw, o.raw) && w.st.AuditHead == o.st.AuditHead && maps.Equal(w.st.Claims, o.st.Claims)
}

// readWriteState reads, in tx, what PlanWrite needs for req: the tenant,
// its audit head, and the claims of the hostnames involved.
func readWriteState(tx *bbolt.Tx, req *catalog.WriteRequest) (writeState, error) {
	id := req.TenantID()
	var w writeState
	if v := tx.Bucket(bucketTenants).Get([]byte(id)); v != nil {
		w.raw = bytes.Clone(v)
		w.st.Current = new(tenant.Tenant)
		if err := catalog.DecodeStored(v, w.st.Current, "tenant", id); err != nil {
			return w, err
		}
	}
	hosts := tx.Bucket(bucketHostnames)
	needed := req.ClaimsNeeded(w.st.Current)
	w.st.Claims = make(map[string]catalog.HostnameClaim, len(needed))
	for _, h := range needed {
		rec, err := getHostname(hosts, h)
		if err != nil {
			return w, err
		}
		w.st.Claims[h] = catalog.HostnameClaim{Owner: rec.TenantID, Version: rec.ClaimVersion}
	}
	var err error
	_, w.st.AuditHead, err = auditHead(tx, id)
	return w, err
}

// Get returns the live tenant id. See catalog.Store.
func (s *Store) Get(ctx context.Context, id string) (*tenant.Tenant, error) {
	t, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) (*tenant.Tenant, error) { return getLive(tx, id) })
	return t, tenant.WrapOp(err, "bolt get tenant "+id)
}

// LookupHostname returns the live tenant holding hostname. See catalog.Store.
func (s *Store) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	t, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) (*tenant.Tenant, error) {
		rec, err := getHostname(tx.Bucket(bucketHostnames), hostname)
		if err != nil {
			return nil, err
		}
		var t *tenant.Tenant
		if rec.TenantID != "" {
			if t, err = getTenant(tx, rec.TenantID); err != nil {
				return nil, err
			}
		}
		if t == nil || t.Deleted() {
			return nil, tenant.Errorf(tenant.NotFound, "hostname %q not found", hostname)
		}
		return t, nil
	})
	return t, tenant.WrapOp(err, "bolt lookup hostname "+hostname)
}

// List returns a page of live tenants in id order, of opts' segment if it
// names one (the others are walked past). See catalog.Store.
func (s *Store) List(ctx context.Context, opts catalog.ListOptions) (catalog.Page, error) {
	if err := catalog.CheckSegment(opts); err != nil {
		return catalog.Page{}, err
	}
	limit := catalog.PageLimit(opts.Limit)
	page, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) (catalog.Page, error) {
		var page catalog.Page
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
		// Tombstones are small documents (no hostnames, products or labels),
		// so decoding them to skip them is cheap.
		for ; k != nil; k, v = c.Next() {
			if !opts.InSegment(string(k)) {
				continue
			}
			t := new(tenant.Tenant)
			if err := catalog.DecodeStored(v, t, "tenant", string(k)); err != nil {
				return page, err
			}
			if t.Deleted() {
				continue
			}
			if len(page.Tenants) == limit {
				// A further live tenant exists: there is a next page.
				page.Next = page.Tenants[limit-1].ID
				return page, nil
			}
			page.Tenants = append(page.Tenants, t)
		}
		return page, nil
	})
	return page, tenant.WrapOp(err, "bolt list tenants after "+opts.After)
}

// History returns the audit records of id, newest first. See catalog.Store.
// A Before ≤ 0 starts at the newest record.
func (s *Store) History(ctx context.Context, id string, opts catalog.HistoryOptions) ([]catalog.AuditRecord, error) {
	limit := catalog.PageLimit(opts.Limit)
	out, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) ([]catalog.AuditRecord, error) {
		if id != catalog.AdminAuditID && tx.Bucket(bucketTenants).Get([]byte(id)) == nil {
			return nil, tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
		}
		prefix := auditPrefix(id)
		var seek []byte
		if opts.Before > 0 {
			seek = auditKey(id, opts.Before)
		} else {
			// Just past every key of id: the prefix with its 0x00 bumped to 0x01.
			seek = append([]byte(id), 0x01)
		}
		var out []catalog.AuditRecord
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if k, _ = c.Seek(seek); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
				break
			}
			var rec catalog.AuditRecord
			if err := catalog.DecodeStored(v, &rec, "audit record", fmt.Sprintf("%q", k)); err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
		return out, nil
	})
	return out, tenant.WrapOp(err, "bolt history of tenant "+id)
}

// OutboxShards returns 1: the bbolt outbox is one sequence.
func (s *Store) OutboxShards() int { return 1 }

// OutboxHeads returns the sequence of the last outbox entry appended. See
// catalog.Store.
func (s *Store) OutboxHeads(ctx context.Context) ([]uint64, error) {
	heads, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) ([]uint64, error) {
		return []uint64{tx.Bucket(bucketOutbox).Sequence()}, nil
	})
	return heads, tenant.WrapOp(err, "bolt outbox heads")
}

// checkShard rejects a shard other than 0, the only one.
func checkShard(shard int) error {
	if shard != 0 {
		return tenant.Errorf(tenant.Invalid, "outbox shard %d does not exist: the bbolt outbox has one shard, 0", shard)
	}
	return nil
}

// ReadOutbox returns up to limit entries after the sequence after, oldest
// first. A limit ≤ 0 means catalog.DefaultPageSize.
func (s *Store) ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkShard(shard); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = catalog.DefaultPageSize
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	out, err := boltfile.View(ctx, s.db, func(tx *bbolt.Tx) ([]catalog.OutboxEntry, error) {
		var out []catalog.OutboxEntry
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e catalog.OutboxEntry
			if err := catalog.DecodeStored(v, &e, "outbox entry", strconv.FormatUint(binary.BigEndian.Uint64(k), 10)); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	})
	return out, tenant.WrapOp(err, fmt.Sprintf("bolt read outbox after %d", after))
}

// OutboxDepth counts the outbox's entries up to max and decodes the oldest
// for its commit time. See catalog.Store.
func (s *Store) OutboxDepth(ctx context.Context, max int) (int, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	if max <= 0 {
		max = math.MaxInt // no cap
	}
	var (
		n      int
		oldest time.Time
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		k, v := c.First()
		if k == nil {
			return nil
		}
		var e catalog.OutboxEntry
		if err := catalog.DecodeStored(v, &e, "outbox entry", strconv.FormatUint(binary.BigEndian.Uint64(k), 10)); err != nil {
			return err
		}
		oldest = e.Event.CommittedAt
		for ; k != nil && n < max; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, tenant.WrapOp(err, "bolt outbox depth")
	}
	return n, oldest, nil
}

// AckOutbox deletes every entry up to and including upTo, in one
// transaction. The sequence keeps counting from where it was.
func (s *Store) AckOutbox(ctx context.Context, shard int, upTo uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkShard(shard); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		// Collect first: deleting under a moving cursor skips keys in bbolt.
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return tenant.WrapOp(err, fmt.Sprintf("bolt ack outbox up to %d", upTo))
}

// getTenant returns the stored document of id, tombstone or not, or nil.
func getTenant(tx *bbolt.Tx, id string) (*tenant.Tenant, error) {
	v := tx.Bucket(bucketTenants).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	t := new(tenant.Tenant)
	if err := catalog.DecodeStored(v, t, "tenant", id); err != nil {
		return nil, err
	}
	return t, nil
}

// getLive returns the live tenant id, or NotFound.
func getLive(tx *bbolt.Tx, id string) (*tenant.Tenant, error) {
	t, err := getTenant(tx, id)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Deleted() {
		return nil, tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
	}
	return t, nil
}

// getHostname returns the record of h; a hostname never claimed is free at
// claim version 0.
func getHostname(b *bbolt.Bucket, h string) (hostnameRecord, error) {
	var rec hostnameRecord
	v := b.Get([]byte(h))
	if v == nil {
		return rec, nil
	}
	if rec, ok := parseHostname(v); ok {
		return rec, nil
	}
	if err := catalog.DecodeStored(v, &rec, "hostname", h); err != nil {
		return rec, err
	}
	return rec, nil
}

// parseHostname parses the form json.Marshal gives a hostnameRecord whose
// tenant id needs no escaping ({"tenant_id":"acme","claim_version":3}, or
// "" for a free hostname) without encoding/json: every resync and export
// reads one per hostname. Anything else is left to decode (ok false).
func parseHostname(v []byte) (hostnameRecord, bool) {
	const (
		head = `{"tenant_id":"`
		mid  = `","claim_version":`
	)
	if !bytes.HasPrefix(v, []byte(head)) {
		return hostnameRecord{}, false
	}
	v = v[len(head):]
	end := bytes.IndexByte(v, '"')
	if end < 0 {
		return hostnameRecord{}, false
	}
	id, v := v[:end], v[end:]
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return hostnameRecord{}, false
		}
	}
	if !bytes.HasPrefix(v, []byte(mid)) || !bytes.HasSuffix(v, []byte("}")) {
		return hostnameRecord{}, false
	}
	digits := v[len(mid) : len(v)-1]
	if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) { // 18 digits cannot overflow
		return hostnameRecord{}, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return hostnameRecord{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return hostnameRecord{TenantID: string(id), ClaimVersion: n}, true
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// auditHead returns the head of id's audit chain: the version and hash of
// its newest record (0 and "" if it has none, or none with a hash).
func auditHead(tx *bbolt.Tx, id string) (version int64, hash string, err error) {
	v := tx.Bucket(bucketHeads).Get([]byte(id))
	if v == nil {
		return 0, "", nil
	}
	if len(v) != 8+64 {
		return 0, "", fmt.Errorf("stored audit head of %s is %d bytes, not 72", id, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), string(v[8:]), nil
}

// appendAudit seals rec, a record of catalog.AdminAuditID, after the head
// of its chain, with the version after the head's, and stores it (putAudit).
func appendAudit(tx *bbolt.Tx, rec *catalog.AuditRecord) error {
	headVersion, prev, err := auditHead(tx, rec.TenantID)
	if err != nil {
		return err
	}
	rec.Version = headVersion + 1
	raw, err := catalog.SealAudit(rec, prev)
	if err != nil {
		return err
	}
	return putAudit(tx, rec, raw)
}

// putAudit stores the sealed record rec (raw, its JSON) under a key that
// must be new (audit records are append-only) and moves the chain head to
// it.
func putAudit(tx *bbolt.Tx, rec *catalog.AuditRecord, raw []byte) error {
	audit, k := tx.Bucket(bucketAudit), auditKey(rec.TenantID, rec.Version)
	if audit.Get(k) != nil {
		return fmt.Errorf("audit record %s/%d exists already: records are never overwritten", rec.TenantID, rec.Version)
	}
	if err := audit.Put(k, raw); err != nil {
		return err
	}
	head := binary.BigEndian.AppendUint64(nil, uint64(rec.Version))
	return tx.Bucket(bucketHeads).Put([]byte(rec.TenantID), append(head, rec.Hash...))
}

func auditPrefix(id string) []byte {
	return append([]byte(id), 0x00)
}

func auditKey(id string, version int64) []byte {
	return binary.BigEndian.AppendUint64(auditPrefix(id), uint64(version))
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}
