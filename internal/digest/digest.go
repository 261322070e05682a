// Package digest summarises a set of tenants in 4,096 buckets, so that two
// copies of it (the source of truth and a region's replica) can be compared
// by exchanging 32 KiB instead of every record. The continuous reconciler
// (streamer/reconcile) keeps the source of truth's digests up to date from
// the stream and compares them with each region's.
//
// A tenant falls in bucket Bucket(id). A bucket's digest is the XOR of the
// hashes of what it holds: each tenant document (id, version and content:
// DocHash) and each hostname held by one of its tenants (hostname, owner and
// claim version: HostHash). Released hostname records (owner "") are not
// summarised: for lookups they are the same as no record. XOR makes a digest
// cheap to keep up to date (replacing an entry is two XORs) and independent
// of the order entries are added in. Hashes are FNV-1a 64 over a fixed
// encoding, finished with the SplitMix64 mixer: stable across processes and
// versions, so digests computed in different places compare.
//
// The rule a replica converges to (tcs.ApplyEvent) makes a region that
// agrees with the source of truth have exactly the truth's documents and
// held hostname records, so equal digests mean "no drift" up to a 2⁻⁶⁴
// chance per bucket, and a differing bucket names the ≈N/4,096 tenants to
// look at.
package digest

import (
	"encoding/binary"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Buckets is how many buckets tenants are spread over.
const Buckets = 4096

// Table holds the digest of every bucket.
type Table [Buckets]uint64

// Bucket returns the bucket of a tenant id.
func Bucket(id string) int {
	h := fnv.New64a()
	h.Write([]byte(id))
	return int(mix(h.Sum64()) % Buckets)
}

// mix is SplitMix64's finaliser: it spreads FNV's weak low bits so that
// XORs of many hashes do not cancel out.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// DocHash hashes a tenant document: its id, version and every field a
// replica stores. Two documents hash alike exactly when tenant.Equal holds
// (up to collisions). It encodes the fields by hand (maps in key order)
// rather than through encoding/json: a comparison hashes every document of
// a region, and this is most of its cost after decoding them.
// TestDocHashCoversEveryField fails when tenant.Tenant gains a field.
func DocHash(t *tenant.Tenant) uint64 {
	h := fnv.New64a()
	var buf []byte
	field := func(b []byte) {
		buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(b)))
		h.Write(buf)
		h.Write(b)
	}
	str := func(s string) { field([]byte(s)) }
	num := func(n int64) { field(binary.BigEndian.AppendUint64(nil, uint64(n))) }
	str("doc")
	str(t.ID)
	num(t.Version)
	str(string(t.Status))
	str(t.Region)
	num(int64(len(t.Hostnames)))
	for _, x := range t.Hostnames {
		str(x)
	}
	num(int64(len(t.Products)))
	for _, k := range slices.Sorted(maps.Keys(t.Products)) {
		p := t.Products[k]
		str(k)
		str(string(p.State))
		num(p.Users)
		str(p.Edition)
	}
	if d := t.Database; d == nil {
		num(0)
	} else {
		num(1)
		str(d.Engine)
		str(d.Host)
		num(int64(d.Port))
		str(d.Name)
		str(d.Region)
		str(d.SecretRef)
	}
	num(int64(len(t.Labels)))
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		str(k)
		str(t.Labels[k])
	}
	if t.UpdatedAt.IsZero() {
		num(0)
	} else {
		num(1)
		num(t.UpdatedAt.UnixNano())
	}
	str(t.UpdatedBy)
	// A migration is hashed only when present, so that the hashes of
	// documents that never moved stay what they were before moves existed.
	if m := t.Migration; m != nil {
		str("migration")
		str(string(m.Step))
		if m.ReadOnly {
			num(1)
		} else {
			num(0)
		}
		for _, d := range []tenant.Database{m.From, m.To} {
			str(d.Engine)
			str(d.Host)
			num(int64(d.Port))
			str(d.Name)
			str(d.Region)
			str(d.SecretRef)
		}
		num(m.Started.UnixNano())
		str(m.By)
	}
	return mix(h.Sum64())
}

// HostHash hashes a hostname record held by owner at a claim version.
func HostHash(hostname, owner string, claim int64) uint64 {
	h := fnv.New64a()
	h.Write([]byte("host\x00"))
	h.Write([]byte(hostname))
	h.Write([]byte{0})
	h.Write([]byte(owner))
	h.Write([]byte{0})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(claim)))
	return mix(h.Sum64())
}

// Entry is what the source of truth holds of one tenant, as the digest sees
// it: its document's version and hash, and the hostnames it holds with
// their claim versions (sorted by hostname).
type Entry struct {
	Version int64
	Deleted bool
	Doc     uint64
	Claims  []tenant.Claim
}

// NewEntry summarises a tenant document and the claims it holds (an export
// item, or a change event's document and claims).
func NewEntry(t *tenant.Tenant, claims []tenant.Claim) Entry {
	cs := make([]tenant.Claim, len(claims))
	copy(cs, claims)
	sortClaims(cs)
	return Entry{Version: t.Version, Deleted: t.Deleted(), Doc: DocHash(t), Claims: cs}
}

// Sum is the entry's contribution to its bucket's digest (0 for no entry).
func (e *Entry) Sum(id string) uint64 {
	if e == nil {
		return 0
	}
	s := e.Doc
	for _, c := range e.Claims {
		s ^= HostHash(c.Hostname, id, c.Version)
	}
	return s
}

// Claim returns the claim version at which the entry holds hostname.
func (e *Entry) Claim(hostname string) (int64, bool) {
	for _, c := range e.Claims {
		if c.Hostname == hostname {
			return c.Version, true
		}
	}
	return 0, false
}

func sortClaims(cs []tenant.Claim) {
	slices.SortFunc(cs, func(a, b tenant.Claim) int { return strings.Compare(a.Hostname, b.Hostname) })
}

// Diff returns the buckets whose digests differ.
func Diff(a, b *Table) []int {
	var out []int
	for i := range a {
		if a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}
