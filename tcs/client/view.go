package client

import (
	"context"
	"fmt"
	"iter"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// View is a read-only view of a tenant document as the client's cache
// holds it: serialised (tcs.v1.Tenant), each accessor reading the field it
// is asked for from the bytes, with no decode and no allocation. It is what
// LookupView returns; a View is one slice (24 bytes), passed by value.
//
// Strings a View returns (ID, hostnames, labels, database fields, ...) are
// not copied: they point into the cache's bytes. That is safe because a
// record in a table's bytes is written once, before its slot is published,
// and never again (a table that is rebuilt is replaced by a new one, not
// rewritten; see table), and because the View, and every string it returns,
// refer to those bytes, which keeps them alive after the entry is
// invalidated or evicted and the table replaced. The other side of that:
// a View or one of its strings kept beyond the request keeps its whole
// table's bytes (a few MB at a million tenants cached) from being
// collected. Copy (strings.Clone) what you keep, or keep Tenant's result.
//
// A View answers with the document its lookup returned, whatever happens
// to the cache afterwards: take a new one (LookupView again) for a newer
// answer.
//
// Reading the bytes. The cache writes each record with proto.Marshal,
// which writes every singular field once; a View takes the first
// occurrence of a field (a full decode takes the last, or merges two
// occurrences of a message), skips fields it does not know (and known
// numbers with another wire type, as a decode does), reads an enum value
// this build does not know as the zero value (a decode fails) and an
// invalid timestamp as the zero time (a decode fails). A malformed
// document, which the cache never holds, makes no accessor panic: each
// returns what it read before the damage, the zero value after it, and
// Tenant reports the error.
//
// The zero View (returned with an error) has no document: its accessors
// return zero values and Tenant returns nil.
type View struct {
	// doc is the serialised document; nil for the zero View. It is never
	// written through.
	doc []byte
}

// Field numbers of tcs.v1.Tenant and the messages in it (tenant.proto).
const (
	fTenantID        protowire.Number = 1
	fTenantHostnames protowire.Number = 2
	fTenantStatus    protowire.Number = 3
	fTenantProducts  protowire.Number = 4
	fTenantDatabase  protowire.Number = 5
	fTenantRegion    protowire.Number = 6
	fTenantLabels    protowire.Number = 7
	fTenantVersion   protowire.Number = 8
	fTenantUpdatedAt protowire.Number = 9
	fTenantUpdatedBy protowire.Number = 10
	fTenantMigration protowire.Number = 11

	fMapKey   protowire.Number = 1
	fMapValue protowire.Number = 2

	fProductState   protowire.Number = 1
	fProductUsers   protowire.Number = 2
	fProductEdition protowire.Number = 3

	fDatabaseEngine    protowire.Number = 1
	fDatabaseHost      protowire.Number = 2
	fDatabasePort      protowire.Number = 3
	fDatabaseName      protowire.Number = 4
	fDatabaseRegion    protowire.Number = 5
	fDatabaseSecretRef protowire.Number = 6

	fMigrationStep     protowire.Number = 1
	fMigrationReadOnly protowire.Number = 2
	fMigrationFrom     protowire.Number = 3
	fMigrationTo       protowire.Number = 4
	fMigrationStarted  protowire.Number = 5
	fMigrationBy       protowire.Number = 6

	fTimestampSeconds protowire.Number = 1
	fTimestampNanos   protowire.Number = 2
)

// wireField is one field of a message: its tag (number << 3 | wire type)
// and its value, v for a varint, b for length-delimited bytes.
type wireField struct {
	tag uint64
	v   uint64
	b   []byte
}

// tag is the tag of field num of wire type typ.
func tag(num protowire.Number, typ protowire.Type) uint64 { return protowire.EncodeTag(num, typ) }

// nextField reads the field at the start of msg and returns it and how
// many bytes it takes: 0 at the end of msg, < 0 if msg is malformed there.
// One-byte tags, varints and lengths (nearly all of a tenant document's)
// take a fast path; the rest is protowire's.
func nextField(msg []byte) (f wireField, n int) {
	if len(msg) == 0 {
		return f, 0
	}
	if msg[0] < 0x80 {
		f.tag, n = uint64(msg[0]), 1
	} else if f.tag, n = protowire.ConsumeVarint(msg); n < 0 {
		return f, n
	}
	if num := f.tag >> 3; num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return f, -1
	}
	switch typ := protowire.Type(f.tag & 7); typ {
	case protowire.VarintType:
		if n < len(msg) && msg[n] < 0x80 {
			f.v = uint64(msg[n])
			return f, n + 1
		}
		v, m := protowire.ConsumeVarint(msg[n:])
		if m < 0 {
			return f, m
		}
		f.v = v
		return f, n + m
	case protowire.BytesType:
		l, m := uint64(0), 1
		if n < len(msg) && msg[n] < 0x80 {
			l = uint64(msg[n])
		} else if l, m = protowire.ConsumeVarint(msg[n:]); m < 0 {
			return f, m
		}
		n += m
		if l > uint64(len(msg)-n) {
			return f, -1
		}
		end := n + int(l)
		f.b = msg[n:end:end] // no append can reach the bytes after it
		return f, end
	default:
		m := protowire.ConsumeFieldValue(protowire.Number(f.tag>>3), typ, msg[n:])
		if m < 0 {
			return f, m
		}
		return f, n + m
	}
}

// fields calls yield with each field of msg in order until it returns
// false, and reports whether msg is well formed up to there. The loop
// reads fields with a one-byte tag and a one-byte varint or length itself
// (nearly every field of a tenant document), and leaves the others to
// nextField.
func fields(msg []byte, yield func(wireField) bool) bool {
	for i := 0; i < len(msg); {
		var f wireField
		if i+1 < len(msg) && msg[i] < 0x80 && msg[i] >= 8 && msg[i+1] < 0x80 && (msg[i]&7 == byte(protowire.VarintType) || msg[i]&7 == byte(protowire.BytesType)) {
			f.tag = uint64(msg[i])
			if msg[i]&7 == byte(protowire.VarintType) {
				f.v = uint64(msg[i+1])
				i += 2
			} else {
				start := i + 2
				end := start + int(msg[i+1])
				if end > len(msg) {
					return false
				}
				f.b = msg[start:end:end] // no append can reach the bytes after it
				i = end
			}
		} else {
			var n int
			if f, n = nextField(msg[i:]); n <= 0 {
				return false
			}
			i += n
		}
		if !yield(f) {
			return true
		}
	}
	return true
}

// find returns the first field of msg with tag t.
func find(msg []byte, t uint64) (wireField, bool) {
	f, next := scan(msg, 0, t)
	return f, next >= 0
}

// scan returns the first field with tag t of msg[i:], and the offset in
// msg of the field after it; -1 if there is none (or msg is malformed
// before it). The loop skips fields with a one-byte tag and a one-byte
// varint or length itself (nearly every field of a tenant document), and
// leaves the others to nextField: a call per field would take twice the
// time.
func scan(msg []byte, i int, t uint64) (wireField, int) {
	for i < len(msg) {
		if i+1 < len(msg) && msg[i] < 0x80 && msg[i] >= 8 && msg[i+1] < 0x80 {
			switch msg[i] & 7 {
			case byte(protowire.VarintType):
				if uint64(msg[i]) == t {
					return wireField{tag: t, v: uint64(msg[i+1])}, i + 2
				}
				i += 2
				continue
			case byte(protowire.BytesType):
				start := i + 2
				end := start + int(msg[i+1])
				if end > len(msg) {
					return wireField{}, -1
				}
				if uint64(msg[i]) == t {
					return wireField{tag: t, b: msg[start:end:end]}, end
				}
				i = end
				continue
			}
		}
		f, n := nextField(msg[i:])
		if n <= 0 {
			return wireField{}, -1
		}
		i += n
		if f.tag == t {
			return f, i
		}
	}
	return wireField{}, -1
}

// str returns b as a string without copying it: b is record bytes (or a
// document made for one View), never written again (see View).
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func findString(msg []byte, num protowire.Number) string {
	f, _ := find(msg, tag(num, protowire.BytesType))
	return str(f.b)
}

func findVarint(msg []byte, num protowire.Number) uint64 {
	f, _ := find(msg, tag(num, protowire.VarintType))
	return f.v
}

func findMessage(msg []byte, num protowire.Number) ([]byte, bool) {
	f, ok := find(msg, tag(num, protowire.BytesType))
	return f.b, ok
}

// Tenant decodes the whole document into a *tenant.Tenant of the caller's
// own (what Lookup returns, but not shared: no string of it points into the
// cache). It fails if the document is malformed or holds a value this
// build cannot convert (see tcsv1.TenantFromProto). The zero View gives nil.
func (v View) Tenant() (*tenant.Tenant, error) {
	if v.doc == nil {
		return nil, nil
	}
	var p tcsv1.Tenant
	if err := proto.Unmarshal(v.doc, &p); err != nil {
		return nil, fmt.Errorf("tcs client: decode tenant view: %w", err)
	}
	t, err := tcsv1.TenantFromProto(&p)
	if err != nil {
		return nil, fmt.Errorf("tcs client: decode tenant view: %w", err)
	}
	return t, nil
}

// ID returns the tenant's ID (tenant.Tenant.ID).
func (v View) ID() string { return findString(v.doc, fTenantID) }

// Status returns the tenant's status; "" if unset or a value this build
// does not know.
func (v View) Status() tenant.Status {
	switch tcsv1.TenantStatus(int32(findVarint(v.doc, fTenantStatus))) {
	case tcsv1.TenantStatus_TENANT_STATUS_ACTIVE:
		return tenant.StatusActive
	case tcsv1.TenantStatus_TENANT_STATUS_SUSPENDED:
		return tenant.StatusSuspended
	case tcsv1.TenantStatus_TENANT_STATUS_DELETED:
		return tenant.StatusDeleted
	}
	return ""
}

// Deleted reports whether the document is a tombstone.
func (v View) Deleted() bool { return v.Status() == tenant.StatusDeleted }

// Version returns the tenant's version (its REST ETag).
func (v View) Version() int64 { return int64(findVarint(v.doc, fTenantVersion)) }

// Region returns the tenant's home region.
func (v View) Region() string { return findString(v.doc, fTenantRegion) }

// UpdatedAt returns when the version was committed, in UTC; the zero time
// if unset (or invalid).
func (v View) UpdatedAt() time.Time {
	b, ok := findMessage(v.doc, fTenantUpdatedAt)
	return timestamp(b, ok)
}

// UpdatedBy returns who made the change.
func (v View) UpdatedBy() string { return findString(v.doc, fTenantUpdatedBy) }

// Hostnames returns the tenant's hostnames, in order.
func (v View) Hostnames() iter.Seq[string] {
	return func(yield func(string) bool) {
		t := tag(fTenantHostnames, protowire.BytesType)
		for f, i := scan(v.doc, 0, t); i >= 0 && yield(str(f.b)); f, i = scan(v.doc, i, t) {
		}
	}
}

// HasHostname reports whether the tenant holds the (normalised) hostname h.
func (v View) HasHostname(h string) bool {
	t := tag(fTenantHostnames, protowire.BytesType)
	for f, i := scan(v.doc, 0, t); i >= 0; f, i = scan(v.doc, i, t) {
		if str(f.b) == h {
			return true
		}
	}
	return false
}

// Products returns the products the tenant has bought, by product key, in
// the document's order (which a map does not keep: no order to rely on).
func (v View) Products() iter.Seq2[string, tenant.Product] {
	return func(yield func(string, tenant.Product) bool) {
		t := tag(fTenantProducts, protowire.BytesType)
		for f, i := scan(v.doc, 0, t); i >= 0; f, i = scan(v.doc, i, t) {
			val, _ := findMessage(f.b, fMapValue)
			if !yield(findString(f.b, fMapKey), product(val)) {
				return
			}
		}
	}
}

// Product returns the product of key, and whether the tenant has it.
func (v View) Product(key string) (tenant.Product, bool) {
	for k, p := range v.Products() {
		if k == key {
			return p, true
		}
	}
	return tenant.Product{}, false
}

// Labels returns the tenant's labels, in the document's order (no order to
// rely on).
func (v View) Labels() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		t := tag(fTenantLabels, protowire.BytesType)
		for f, i := scan(v.doc, 0, t); i >= 0; f, i = scan(v.doc, i, t) {
			if !yield(findString(f.b, fMapKey), findString(f.b, fMapValue)) {
				return
			}
		}
	}
}

// Label returns the label of key, and whether the tenant has it.
func (v View) Label(key string) (string, bool) {
	for k, l := range v.Labels() {
		if k == key {
			return l, true
		}
	}
	return "", false
}

// Database returns where the tenant's data lives, and false if the tenant
// has no database (tenant.Tenant.Database is nil).
func (v View) Database() (tenant.Database, bool) {
	b, ok := findMessage(v.doc, fTenantDatabase)
	if !ok {
		return tenant.Database{}, false
	}
	return database(b), true
}

// Migration returns the state of the tenant's last move, and false if it
// never moved (tenant.Tenant.Migration is nil).
func (v View) Migration() (tenant.Migration, bool) {
	b, ok := findMessage(v.doc, fTenantMigration)
	if !ok {
		return tenant.Migration{}, false
	}
	from, _ := findMessage(b, fMigrationFrom)
	to, _ := findMessage(b, fMigrationTo)
	started, set := findMessage(b, fMigrationStarted)
	return tenant.Migration{
		Step:     moveStep(tcsv1.MoveStep(int32(findVarint(b, fMigrationStep)))),
		ReadOnly: findVarint(b, fMigrationReadOnly) != 0,
		From:     database(from),
		To:       database(to),
		Started:  timestamp(started, set),
		By:       findString(b, fMigrationBy),
	}, true
}

// ReadOnly reports whether compute nodes must not write to the tenant's
// database now (tenant.Tenant.ReadOnly): a move is copying it.
func (v View) ReadOnly() bool {
	b, ok := findMessage(v.doc, fTenantMigration)
	return ok && findVarint(b, fMigrationReadOnly) != 0
}

// Moving reports whether a move of the tenant is in progress
// (tenant.Tenant.Moving).
func (v View) Moving() bool {
	m, ok := v.Migration()
	return ok && m.Step.Active()
}

func product(b []byte) tenant.Product {
	p := tenant.Product{
		Users:   int64(findVarint(b, fProductUsers)),
		Edition: findString(b, fProductEdition),
	}
	switch tcsv1.ProductState(int32(findVarint(b, fProductState))) {
	case tcsv1.ProductState_PRODUCT_STATE_ACTIVE:
		p.State = tenant.ProductActive
	case tcsv1.ProductState_PRODUCT_STATE_DEACTIVATED:
		p.State = tenant.ProductDeactivated
	}
	return p
}

func database(b []byte) tenant.Database {
	// One pass, the first of each field winning, rather than a find per
	// field (a third of the time).
	var d tenant.Database
	var seen uint8
	first := func(num protowire.Number) bool {
		bit := uint8(1) << num
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	fields(b, func(f wireField) bool {
		switch f.tag {
		case tag(fDatabaseEngine, protowire.BytesType):
			if first(fDatabaseEngine) {
				d.Engine = str(f.b)
			}
		case tag(fDatabaseHost, protowire.BytesType):
			if first(fDatabaseHost) {
				d.Host = str(f.b)
			}
		case tag(fDatabasePort, protowire.VarintType):
			if first(fDatabasePort) {
				d.Port = int(int32(f.v))
			}
		case tag(fDatabaseName, protowire.BytesType):
			if first(fDatabaseName) {
				d.Name = str(f.b)
			}
		case tag(fDatabaseRegion, protowire.BytesType):
			if first(fDatabaseRegion) {
				d.Region = str(f.b)
			}
		case tag(fDatabaseSecretRef, protowire.BytesType):
			if first(fDatabaseSecretRef) {
				d.SecretRef = str(f.b)
			}
		}
		return true
	})
	return d
}

func moveStep(s tcsv1.MoveStep) tenant.MoveStep {
	switch s {
	case tcsv1.MoveStep_MOVE_STEP_PREPARED:
		return tenant.MovePrepared
	case tcsv1.MoveStep_MOVE_STEP_COPIED:
		return tenant.MoveCopied
	case tcsv1.MoveStep_MOVE_STEP_SWITCHED:
		return tenant.MoveSwitched
	case tcsv1.MoveStep_MOVE_STEP_COMPLETE:
		return tenant.MoveComplete
	case tcsv1.MoveStep_MOVE_STEP_CANCELLED:
		return tenant.MoveCancelled
	case tcsv1.MoveStep_MOVE_STEP_REVERSED:
		return tenant.MoveReversed
	}
	return ""
}

// Bounds of a valid google.protobuf.Timestamp (timestamppb CheckValid):
// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

// timestamp returns google.protobuf.Timestamp b in UTC: the zero time if
// it is not set or not valid.
func timestamp(b []byte, set bool) time.Time {
	if !set {
		return time.Time{}
	}
	s := int64(findVarint(b, fTimestampSeconds))
	n := int32(findVarint(b, fTimestampNanos))
	if s < minTimestamp || s > maxTimestamp || n < 0 || n >= 1e9 {
		return time.Time{}
	}
	return time.Unix(s, int64(n)).UTC()
}

// LookupView is Lookup returning a View of the answer instead of a
// *tenant.Tenant: a hit reads the cache's serialised document in place, so
// that it allocates nothing and decodes nothing, whether or not the tenant
// is one the cache holds decoded (Lookup decodes the others on their hit,
// at a microsecond and a few allocations each). Use it where hits spread
// over many more tenants than that (tens of thousands) and the request
// reads a few fields.
//
// A miss, a stale or remembered answer, and every error are exactly
// Lookup's (the same path: one RPC per hostname, hedging, failover,
// monotonic reads); the tenant then answered is encoded for its View (a
// few allocations, beside the RPC's). A hostname that needs normalising is
// a hit too once normalised. On an error the View is the zero View.
func (c *Client) LookupView(ctx context.Context, hostname string) (View, error) {
	if r := c.cache.lookup(hostname); r.s != nil && c.cache.fresh(r.s, c.cache.fast()) {
		c.hooks.Hit()
		return r.view()
	}
	v, _, err := c.LookupViewMeta(ctx, hostname)
	return v, err
}

// view is the View of fresh cache slot r: ErrNotFound for a negative
// answer.
func (r ref) view() (View, error) {
	if r.s.seq == 0 {
		return View{}, ErrNotFound
	}
	return View{doc: r.t.docOf(r.s, r.w)}, nil
}

// LookupViewMeta is LookupView, also saying where the answer came from (as
// LookupMeta does).
func (c *Client) LookupViewMeta(ctx context.Context, hostname string) (View, Meta, error) {
	r, now, f, h, err := c.find(ctx, hostname)
	if r.s != nil {
		v, err := r.view()
		return v, c.cache.meta(r, now), err
	}
	if err != nil {
		return View{}, Meta{}, err
	}
	t, m, err := c.answer(f, h)
	if t == nil {
		return View{}, m, err
	}
	doc, err := encodeDoc(t)
	if err != nil {
		// Not for a tenant that came from the wire (its strings are
		// valid UTF-8); Lookup would have returned it.
		return View{}, Meta{}, fmt.Errorf("%w: lookup %s: encode tenant %s for its view: %v", ErrUnavailable, h, t.ID, err)
	}
	if doc == nil {
		doc = []byte{} // an empty document, not the zero View
	}
	return View{doc: doc}, m, nil
}
