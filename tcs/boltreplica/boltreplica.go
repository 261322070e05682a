// Package boltreplica is the embedded regional replica table: a tcs.Replica
// kept in one bbolt file per region. Apply runs tcs.ApplyEvent inside a single
// bbolt write transaction, so an event is applied whole or not at all and is
// durable when Apply returns (ApplyBatch does the same for a batch of events
// in one transaction); lookups run tcs.LookupIn inside one read
// transaction.
//
// Buckets:
//
//	docs   tenant id → JSON tenant.Tenant; tombstones (status DELETED) are
//	       kept so that a stale event cannot resurrect a deleted tenant
//	hosts  normalised hostname → JSON tcs.HostRecord; a released hostname
//	       keeps its record (owner "") so an older claim cannot take it back
//	meta   schema version
package boltreplica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/internal/boltfile"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

var _ tcs.Replica = (*Replica)(nil)
var _ tcs.Scanner = (*Replica)(nil)
var _ tcs.BatchApplier = (*Replica)(nil)

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = boltfile.DefaultTimeout

// DefaultScanLimit is the page size of ScanDocs and ScanHosts when the
// caller asks for limit ≤ 0.
const DefaultScanLimit = 500

// schemaVersion is the layout of the buckets described in the package comment.
const schemaVersion = "1"

var (
	bucketDocs  = []byte("docs")
	bucketHosts = []byte("hosts")
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long to wait for the file lock held by another process;
	// zero means DefaultTimeout.
	Timeout time.Duration
}

// Replica is a tcs.Replica in a bbolt file. It is safe for concurrent use:
// bbolt serialises writes, and reads run in parallel with them.
type Replica struct {
	db *bbolt.DB
	// writes coalesces the commits of concurrent Apply and ApplyBatch calls.
	writes *boltfile.GroupCommit
}

// HostEntry is one record of the hosts bucket, as ScanHosts returns it.
type HostEntry = tcs.HostEntry

// Open opens (creating if needed) the replica file at path. If another
// process holds the file, Open fails after opts.Timeout with an error naming
// the file, instead of waiting forever.
func Open(path string, opts Options) (*Replica, error) {
	db, err := boltfile.Open(path, boltfile.Spec{Kind: "replica", Timeout: opts.Timeout, Schema: schemaVersion,
		Buckets: [][]byte{bucketDocs, bucketHosts}})
	if err != nil {
		return nil, err
	}
	return &Replica{db: db, writes: boltfile.NewGroupCommit(db)}, nil
}

// Close closes the file and releases its lock.
func (r *Replica) Close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("boltreplica close: %w", err)
	}
	return nil
}

// Ping runs a read transaction that finds the buckets.
func (r *Replica) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := r.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketDocs) == nil || tx.Bucket(bucketHosts) == nil {
			return errors.New("buckets missing")
		}
		return nil
	})
	return tenant.WrapOp(err, "boltreplica ping")
}

// Apply applies ev with tcs.ApplyEvent in one write transaction: all of its
// changes commit together, durably, or none do. See tcs.Replica.
func (r *Replica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	if ev == nil {
		return tcs.ApplyResult{}, tenant.Errorf(tenant.Invalid, "boltreplica apply: nil event")
	}
	if err := ctx.Err(); err != nil {
		return tcs.ApplyResult{}, err
	}
	var res tcs.ApplyResult
	err := r.writes.Update(func(tx *bbolt.Tx) error {
		var err error
		res, err = tcs.ApplyEvent(newTxn(tx), ev)
		return err
	})
	if err != nil {
		return tcs.ApplyResult{}, tenant.WrapOp(err, fmt.Sprintf("boltreplica apply tenant %q version %d", ev.TenantID, ev.Version))
	}
	return res, nil
}

// ApplyBatch applies evs in order with tcs.ApplyEvent in one write
// transaction: one commit and one fsync for the whole batch, shared with
// the batches of concurrent callers that arrived while the previous commit
// ran. See tcs.BatchApplier.
func (r *Replica) ApplyBatch(ctx context.Context, evs []*tenant.ChangeEvent) ([]tcs.ApplyResult, error) {
	for _, ev := range evs {
		if err := tcs.CheckEvent(ev); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	var out []tcs.ApplyResult
	err := r.writes.Update(func(tx *bbolt.Tx) error {
		out = make([]tcs.ApplyResult, len(evs))
		x := newTxn(tx)
		for i, ev := range evs {
			res, err := tcs.ApplyEvent(x, ev)
			if err != nil {
				return fmt.Errorf("tenant %q version %d: %w", ev.TenantID, ev.Version, err)
			}
			out[i] = res
		}
		return nil
	})
	if err != nil {
		return nil, tenant.WrapOp(err, fmt.Sprintf("boltreplica apply batch of %d", len(evs)))
	}
	return out, nil
}

// LookupHostname returns the live tenant owning hostname, read with
// tcs.LookupIn in one read transaction, or a NotFound *tenant.Error. It is
// the lookup server's cache-miss path: the document is decoded once, straight
// from the mapped page.
func (r *Replica) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	t, err := boltfile.View(ctx, r.db, func(tx *bbolt.Tx) (*tenant.Tenant, error) { return tcs.LookupIn(newTxn(tx), hostname) })
	return t, tenant.WrapOp(err, "boltreplica lookup hostname "+hostname)
}

// GetTenant returns the stored document of id, tombstones included, or a
// NotFound *tenant.Error. See tcs.Replica.
func (r *Replica) GetTenant(ctx context.Context, id string) (*tenant.Tenant, error) {
	t, err := boltfile.View(ctx, r.db, func(tx *bbolt.Tx) (*tenant.Tenant, error) { return newTxn(tx).Doc(id) })
	if err == nil && t == nil {
		err = tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
	}
	return t, tenant.WrapOp(err, "boltreplica get tenant "+id)
}

// ScanDocs returns up to limit stored documents (tombstones included) in id
// order; the cursor is the last id returned. See tcs.Scanner.
func (r *Replica) ScanDocs(ctx context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	var out []*tenant.Tenant
	next, err := r.scan(ctx, bucketDocs, cursor, limit, func(k, v []byte) error {
		t, err := decodeDoc(v)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", k, err)
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, "", tenant.WrapOp(err, "boltreplica scan docs after "+cursor)
	}
	return out, next, nil
}

// ScanHosts returns up to limit hostname records (released ones included)
// in hostname order; the cursor is the last hostname returned. See
// tcs.Scanner.
func (r *Replica) ScanHosts(ctx context.Context, cursor string, limit int) ([]HostEntry, string, error) {
	var out []HostEntry
	next, err := r.scan(ctx, bucketHosts, cursor, limit, func(k, v []byte) error {
		e := HostEntry{Hostname: string(k)}
		if err := json.Unmarshal(v, &e.HostRecord); err != nil {
			return fmt.Errorf("hostname %s: %w", k, err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, "", tenant.WrapOp(err, "boltreplica scan hosts after "+cursor)
	}
	return out, next, nil
}

// scan calls each for up to limit keys of bucket after the key after, in
// key order, in one read transaction. It returns the last key visited if
// more keys follow it, else "".
func (r *Replica) scan(ctx context.Context, bucket []byte, after string, limit int, each func(k, v []byte) error) (next string, err error) {
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	return boltfile.View(ctx, r.db, func(tx *bbolt.Tx) (string, error) {
		c := tx.Bucket(bucket).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		var last []byte
		for n := 0; k != nil && n < limit; k, v = c.Next() {
			if err := each(k, v); err != nil {
				return "", err
			}
			last = k
			n++
		}
		if k != nil && last != nil {
			return string(last), nil
		}
		return "", nil
	})
}

// txn is tcs.ApplyTxn over one bbolt transaction. Values it returns are
// decoded copies, valid after the transaction ends. ApplyEvent puts only
// what differs from what is stored, so a resync into a region that already
// holds the catalog dirties no page and commits next to nothing.
type txn struct {
	docs, hosts *bbolt.Bucket
}

var _ tcs.ApplyTxn = (*txn)(nil)

func newTxn(tx *bbolt.Tx) *txn {
	return &txn{docs: tx.Bucket(bucketDocs), hosts: tx.Bucket(bucketHosts)}
}

func (x *txn) Doc(id string) (*tenant.Tenant, error) {
	v := x.docs.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	t, err := decodeDoc(v)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", id, err)
	}
	return t, nil
}

func (x *txn) PutDoc(t *tenant.Tenant) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	return x.docs.Put([]byte(t.ID), raw)
}

func (x *txn) Host(hostname string) (tcs.HostRecord, bool, error) {
	v := x.hosts.Get([]byte(hostname))
	if v == nil {
		return tcs.HostRecord{}, false, nil
	}
	rec, err := decodeHost(v)
	if err != nil {
		return tcs.HostRecord{}, false, fmt.Errorf("hostname %s: %w", hostname, err)
	}
	return rec, true, nil
}

func (x *txn) PutHost(hostname string, rec tcs.HostRecord) error {
	raw, err := encodeHost(rec)
	if err != nil {
		return fmt.Errorf("hostname %s: %w", hostname, err)
	}
	return x.hosts.Put([]byte(hostname), raw)
}

// encodeHost encodes a hosts value as json.Marshal does; the form parseHost
// reads (a tenant id that needs no escaping) is written by hand.
func encodeHost(rec tcs.HostRecord) ([]byte, error) {
	for i := 0; i < len(rec.TenantID); i++ {
		if c := rec.TenantID[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return json.Marshal(rec)
		}
	}
	b := make([]byte, 0, len(`{"tenant_id":"","claim_version":}`)+len(rec.TenantID)+20)
	b = append(b, `{"tenant_id":"`...)
	b = append(b, rec.TenantID...)
	b = append(b, `","claim_version":`...)
	b = strconv.AppendInt(b, rec.ClaimVersion, 10)
	return append(b, '}'), nil
}

func decodeDoc(v []byte) (*tenant.Tenant, error) {
	t := new(tenant.Tenant)
	if err := json.Unmarshal(v, t); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeHost decodes a hosts value. Every lookup reads one, so the form
// PutHost writes for a valid tenant id ({"tenant_id":"acme","claim_version":3})
// is parsed by hand, which allocates only the id; anything else goes through
// encoding/json. FuzzParseHost holds the two to the same answers.
func decodeHost(v []byte) (tcs.HostRecord, error) {
	if rec, ok := parseHost(v); ok {
		return rec, nil
	}
	var rec tcs.HostRecord
	err := json.Unmarshal(v, &rec)
	return rec, err
}

func parseHost(v []byte) (tcs.HostRecord, bool) {
	const (
		head = `{"tenant_id":"`
		mid  = `","claim_version":`
	)
	if !bytes.HasPrefix(v, []byte(head)) {
		return tcs.HostRecord{}, false
	}
	v = v[len(head):]
	end := bytes.IndexByte(v, '"')
	if end < 0 {
		return tcs.HostRecord{}, false
	}
	id, v := v[:end], v[end:]
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return tcs.HostRecord{}, false // not a tenant id: let json decide
		}
	}
	if !bytes.HasPrefix(v, []byte(mid)) || !bytes.HasSuffix(v, []byte("}")) {
		return tcs.HostRecord{}, false
	}
	digits := v[len(mid) : len(v)-1]
	if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) { // 18 digits cannot overflow
		return tcs.HostRecord{}, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return tcs.HostRecord{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return tcs.HostRecord{TenantID: string(id), ClaimVersion: n}, true
}
