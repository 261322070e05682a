package client

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// cache is the client's hostname → answer cache.
//
// Layout. Entries live in 2^k shards, each an open-addressed hash table
// (see table) that readers search without taking a lock or writing
// anything: a hit is one hash, a few atomic loads and a compare, with no
// allocation, and readers on two cores never bounce a cache line between
// them (a read lock's counter would, on every hit; a single lock far worse).
// Writers take their shard's mutex. The *tenant.Tenant a hit returns is
// shared by every hit and must not be modified (see Client.Lookup).
//
// What a hit touches. With a million entries and thousands of hot ones, a
// hit's cost is the cache lines and pages it touches, not its instructions:
// each distinct 4 KiB page is a TLB miss and a page walk (two-dimensional
// under virtualisation). A table's slot is one 64-byte cache line holding
// everything a hit reads to decide (hash tag, key length, key bytes inline,
// read time, generation, region, whether it is a tenant), in one flat array
// per shard, so a hit on a hostname of up to 32 bytes touches one line of
// one page of the table (plus the shard's header, which stays hot), and then
// the slot's entry in its table's small array of decoded tenants
// (table.held), whose index the slot's control word carries: an array of at
// most 255 entries per table, dense and hot, not a pointer per slot spread
// over as many lines and pages as the slots (which took a hit on 10,000 hot
// tenants of a million from one line to two scattered ones: about 1.7×).
//
// What the collector sees. Tenants are kept serialised (tcs.v1.Tenant), in
// each table's bytes, and slots and bytes hold no pointers, so the garbage
// collector neither scans nor marks what a million cached tenants take. A
// decoded document is dozens of objects to mark, so only the hot ones are
// held decoded: at most decodedTotal per cache, each the one object its
// slot's hits return (with no allocation); a hit on a tenant not held
// decodes it (allocating) and holds it, letting go of another picked at
// random (BenchmarkGC: scan-MB).
//
// Views. LookupView hands callers the record itself, not a decoded
// tenant: a View over the slot's serialised document in the table's bytes,
// which it parses field by field when asked (view.go). A hit through it
// allocates nothing and decodes nothing, held decoded or not, and touches
// the slot and the record's first cache line (the document's length, then
// its first fields), where a hit through Lookup on a tenant not held
// decoded decodes it. Strings of a View point into the bytes without a
// copy: safe because a record is never written again after its slot is
// published and tables are replaced, never rewritten, and the View's
// reference keeps the old bytes alive once the table is gone
// (BenchmarkLookupViewUniform, TestViewOutlivesEntry).
//
// Bound. Each shard holds at most size/shards entries, plus 10% so that
// uneven hashing does not evict before size entries are held; inserting into
// a full shard evicts an entry picked at random, which for the skewed
// popularity of hostnames keeps a hit ratio close to LRU's without LRU's
// write on every hit.
//
// Freshness. An entry is fresh while younger (counted from when its region
// read it) than its TTL, and, while the Watch stream is down, than the
// disconnected TTL; a Resync expires every entry at once by bumping a
// generation. An expired entry is kept for stale-if-error until max-stale.
// An invalidation deletes the entries it names (unless already as new), so
// an invalidated answer is never served, not even stale.
//
// No stale fill. Every fill takes a ticket (the invalidation sequence number
// and the generation) before it asks a region; its answer is installed only
// if no invalidation since the ticket says it is older, and with the ticket's
// generation (so a fill that raced with a Resync is installed already
// expired). Invalidations are remembered for window for that purpose.
//
// Monotonic reads. No entry is installed older than the newest version of
// its tenant the client has returned, and returning a newer one first drops
// the tenant's older entries (monotonic.go), so a hit needs no check.
type cache struct {
	seed     maphash.Seed
	shards   []shard
	mask     uint64
	perShard int
	epoch    time.Time
	now      func() time.Time

	ttl, negTTL, maxStale, discTTL int64 // nanoseconds

	// flags is the generation (bumped by each Resync) times two, plus one
	// while the Watch stream is up: one atomic load tells a hit both.
	flags atomic.Uint64
	// coarse is the clock, updated every millisecond by tick when the
	// clock is time.Now: reading an atomic costs a hit ~1 ns where
	// time.Now costs ~30 ns (kvm-clock).
	coarse  atomic.Int64
	ticking bool
	// regions names the regions that read entries; a slot holds an index
	// into it. Copied on write (under mu), read without a lock.
	regions atomic.Pointer[[]string]

	mu        sync.Mutex // serialises installs and invalidations
	seq       uint64     // invalidations so far; under mu
	forgotten uint64     // highest seq forgotten before its window ended
	hosts     map[string]mark
	tenants   map[string]mark
	order     []markRef
	window    int64
	maxMarks  int
	// known remembers the newest version returned of the tenants most
	// recently answered by a region, for monotonic reads (monotonic.go);
	// nil when they are off. Under mu.
	known *simplelru.LRU[string, *known]
}

type shard struct {
	mu   sync.Mutex // writers; readers take no lock
	tab  atomic.Pointer[table]
	live int // live slots in tab; under mu
	used int // non-empty slots in tab (live and deleted); under mu
	// docs is the number of the last document stored in the shard; under
	// mu. Numbers are never reused (64 bits do not wrap).
	docs uint64
	// decoded is how many slots of tab have their document held decoded
	// (table.held), and maxDecoded how many may; under mu.
	decoded, maxDecoded int
	_                   [32]byte // keep neighbouring shards off one cache line
}

// decodedTotal is how many decoded documents the cache keeps (at least
// decodedMin per shard): the hot tenants, so that a hit on one allocates
// nothing; the others are kept serialised only, out of the collector's
// way.
const (
	decodedTotal = 32768
	decodedMin   = 64
	// maxHeld is the most a shard may hold decoded: a slot's index into
	// its table's held array is a byte of its control word (the bound never
	// binds: a cache has 256 shards, 128 each, or fewer shards holding
	// fewer than 255 entries).
	maxHeld = 255
)

// Slot layout.
const (
	// inlineKey is how many bytes of a key a slot holds; the rest of a
	// longer key sits in its table's overflow bytes.
	inlineKey = 32
	// maxKey is the longest key the cache holds (a normalised hostname is
	// at most 253 bytes); the key's length is a byte of the slot's control
	// word.
	maxKey = 255
	// maxRegions is how many region names the slots can tell apart;
	// entries read by regions beyond that report region "".
	maxRegions = 256

	ctrlEmpty   = 0
	ctrlDeleted = 1
	ctrlLive    = 0x80 // low byte of a live slot's control word
	ctrlRegion  = 0xff00
	ctrlKeyLen  = 16 // shift of the key length
	ctrlHeldAt  = 24 // shift of the slot's index into table.held, plus 1 (0: none)
	ctrlHeld    = 0xff << ctrlHeldAt
	ctrlTag     = 32 // shift of the hash tag

	// A table is rebuilt when more than maxUsed of its slots are not empty
	// (live or deleted), into one of which a fraction slack is live (less
	// while the shard is filling up: see rebuild).
	maxUsed = 0.85
	slack   = 0.625
)

// table is an open-addressed hash table (linear probing) of slots that
// readers search without a lock. A slot is written once: a writer (under
// the shard's lock) fills an empty slot and then publishes it with an
// atomic store of its control word, and never writes it again except to
// mark it deleted (another atomic store), so a reader that loaded a live
// control word reads a whole, unchanging slot. Replacing a key publishes a
// new slot further down the probe sequence before deleting the old one, so
// a reader sees the old answer or the new one, never neither. Deleted slots
// are reclaimed (and the tenants they point to released) by building a new
// table when more than maxUsed of the slots are used, and swapping it in;
// the old one is never written again, so readers still on it finish
// safely.
type table struct {
	slots []slot
	// bytes holds each slot's record: the bytes beyond inlineKey of its
	// key, then, for a tenant, its document serialised (tcs.v1.Tenant)
	// after a 4-byte length. A record is appended (under the shard's lock)
	// before the slot that refers to it is published, and never written
	// again. slots and bytes hold no pointers: the collector does not scan
	// them.
	bytes []byte
	used  int // bytes used; under the shard's lock
	// held holds, for some slots (at most the shard's maxDecoded), their
	// document decoded: the one object every hit on the slot returns. A
	// slot's control word names its entry (ctrlHeld). Set once a slot is
	// filled or first hit, let go of (under the shard's lock) to make room
	// for another; a hit that finds none decodes the slot's document
	// again. Only these and the pointers of this array are for the
	// collector to scan.
	held []heldDoc
}

// heldDoc is one decoded document of a table (see table.held). Readers
// take no lock: a reader that found the entry's index in a slot's control
// word loads owner, then t, then owner again, and takes t only if owner
// named the slot both times, unchanged. Writers (under the shard's lock)
// change owner's version before they store another t, so t belongs to the
// slot owner names whenever owner has not changed around its load.
type heldDoc struct {
	// owner is a version (changed by every write) << 32 | the index of
	// the slot whose document t is, plus 1 (0: the entry is free).
	owner atomic.Uint64
	t     atomic.Pointer[tenant.Tenant]
}

// slot is one cache line: everything a hit reads.
type slot struct {
	// ctrl is ctrlEmpty, ctrlDeleted, or, for a live slot, the key's hash
	// tag << ctrlTag | its length << ctrlKeyLen | its region index << 8 |
	// ctrlLive.
	ctrl atomic.Uint64
	// seq is the number of the tenant's document in its shard (numbers
	// are never reused), 0 for a negative answer.
	seq    uint64
	readAt int64  // cache clock, when the region read it
	gen    uint32 // generation (low bits) of the fill's ticket
	off    uint32 // offset of the slot's record in the table's bytes
	key    [inlineKey]byte
}

// maxBytes bounds a table's bytes (offsets are 32-bit).
const maxBytes = 1<<32 - 1

func newTable(size, bytes, held int) *table {
	return &table{slots: make([]slot, size), bytes: make([]byte, bytes), held: make([]heldDoc, held)}
}

// heldOf returns the document held decoded for slot i, whose control word
// was w, or nil.
func (t *table) heldOf(i int, w uint64) *tenant.Tenant {
	j := int(w >> ctrlHeldAt & 0xff)
	if j == 0 || j > len(t.held) {
		return nil
	}
	h := &t.held[j-1]
	o := h.owner.Load()
	if uint32(o) != uint32(i+1) {
		return nil
	}
	d := h.t.Load()
	if h.owner.Load() != o {
		return nil
	}
	return d
}

// record is what a slot holds besides its key.
type record struct {
	seq    uint64
	readAt int64
	gen    uint32
	doc    []byte // the serialised document; nil for a negative answer
}

// recordSize is how many bytes a slot's record of a key of n bytes and a
// document takes.
func recordSize(n int, doc []byte) int {
	size := max(n-inlineKey, 0)
	if doc != nil {
		size += 4 + len(doc)
	}
	return size
}

// docOf returns the serialised document of live slot s, whose control word
// is w, or nil for a negative answer.
func (t *table) docOf(s *slot, w uint64) []byte {
	if s.seq == 0 {
		return nil
	}
	p := int(s.off) + max(int(w>>ctrlKeyLen&0xff)-inlineKey, 0)
	n := int(binary.LittleEndian.Uint32(t.bytes[p:]))
	return t.bytes[p+4 : p+4+n : p+4+n] // no append can reach the next record
}

// home returns the first slot of hash's probe sequence: the hash's low 32
// bits scaled to the table's size (tables need not be a power of two).
func (t *table) home(hash uint64) int {
	return int((hash & 0xffffffff) * uint64(len(t.slots)) >> 32)
}

// want is the control word of a live slot of a key of length n with hash,
// region bits clear.
func want(hash uint64, n int) uint64 {
	return hash>>ctrlTag<<ctrlTag | uint64(n)<<ctrlKeyLen | ctrlLive
}

// find returns the index of key's live slot, or -1, and its control word.
func (t *table) find(key string, hash uint64) (int, uint64) {
	w := want(hash, len(key))
	for i := t.home(hash); ; {
		s := &t.slots[i]
		c := s.ctrl.Load()
		if c == ctrlEmpty {
			return -1, 0
		}
		if c&^(ctrlRegion|ctrlHeld) == w && t.keyIs(s, key) {
			return i, c
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// keyIs reports whether live slot s holds key (whose length its control
// word matched).
func (t *table) keyIs(s *slot, key string) bool {
	if len(key) <= inlineKey {
		return string(s.key[:len(key)]) == key
	}
	return string(s.key[:]) == key[:inlineKey] &&
		string(t.bytes[s.off:int(s.off)+len(key)-inlineKey]) == key[inlineKey:]
}

// keyOf returns the key of live slot s, using buf.
func (t *table) keyOf(s *slot, buf []byte) []byte {
	n := int(s.ctrl.Load() >> ctrlKeyLen & 0xff)
	buf = append(buf[:0], s.key[:min(n, inlineKey)]...)
	if n > inlineKey {
		buf = append(buf, t.bytes[s.off:int(s.off)+n-inlineKey]...)
	}
	return buf
}

// put publishes key's slot in the first empty slot of its probe sequence,
// and returns its index. The caller has made sure that one exists and that
// bytes has room.
func (t *table) put(key string, hash uint64, ctrl uint64, r *record) int {
	i := t.home(hash)
	for t.slots[i].ctrl.Load() != ctrlEmpty {
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	s := &t.slots[i]
	s.seq, s.readAt, s.gen = r.seq, r.readAt, r.gen
	copy(s.key[:], key)
	s.off = uint32(t.used)
	if len(key) > inlineKey {
		t.used += copy(t.bytes[t.used:], key[inlineKey:])
	}
	if r.doc != nil {
		binary.LittleEndian.PutUint32(t.bytes[t.used:], uint32(len(r.doc)))
		t.used += 4
		t.used += copy(t.bytes[t.used:], r.doc)
	}
	s.ctrl.Store(ctrl)
	return i
}

// ref is a live slot found by lookup: s is nil if none was.
type ref struct {
	s  *slot
	w  uint64 // its control word
	i  int    // its index in t
	t  *table
	sh *shard
}

// lookup returns the live slot of hostname h, or a ref whose s is nil. The
// slot does not change (see table): a hit reads it in place, so that
// nothing is copied but what the caller asks for.
func (c *cache) lookup(h string) ref {
	if c.perShard <= 0 || len(h) > maxKey {
		return ref{}
	}
	hash := maphash.String(c.seed, h)
	sh := &c.shards[(hash>>56)&c.mask]
	t := sh.tab.Load()
	if i, w := t.find(h, hash); i >= 0 {
		return ref{s: &t.slots[i], w: w, i: i, t: t, sh: sh}
	}
	return ref{}
}

// tenant returns the tenant of r's slot, nil for a negative answer: the
// slot's decoded document, or else its document decoded, which the slot
// then holds decoded if it is still in the shard's table (see
// table.held). The shard's lock must not be held.
func (r ref) tenant() *tenant.Tenant {
	if r.s.seq == 0 {
		return nil
	}
	if t := r.t.heldOf(r.i, r.w); t != nil {
		return t
	}
	t := decodeDoc(r.t.docOf(r.s, r.w))
	r.sh.mu.Lock()
	defer r.sh.mu.Unlock()
	w := r.s.ctrl.Load()
	if held := r.t.heldOf(r.i, w); held != nil {
		return held // another caller decoded it first
	}
	if r.t == r.sh.tab.Load() && w > ctrlDeleted {
		r.sh.hold(r.t, r.i, t)
	}
	return t
}

// peek returns the tenant of live slot i of table t of the shard, whose
// control word is w (nil for a negative answer), decoding it if it is not
// held decoded, without holding it. For writers: sh.mu may be held.
func (sh *shard) peek(t *table, i int, w uint64) *tenant.Tenant {
	s := &t.slots[i]
	if s.seq == 0 {
		return nil
	}
	if d := t.heldOf(i, s.ctrl.Load()); d != nil {
		return d
	}
	return decodeDoc(t.docOf(s, w))
}

// hold makes live slot i of the shard's table t hold tn, its document
// decoded, first letting go of another slot's, picked at random, if the
// shard holds as many as it may. sh.mu must be held.
func (sh *shard) hold(t *table, i int, tn *tenant.Tenant) {
	if sh.maxDecoded <= 0 || len(t.held) == 0 {
		return
	}
	s := &t.slots[i]
	w := s.ctrl.Load()
	if j := int(w >> ctrlHeldAt & 0xff); j != 0 {
		t.held[j-1].set(i, tn) // held already: the newer decoding
		return
	}
	if sh.decoded >= min(sh.maxDecoded, len(t.held)) {
		for n, j := 0, rand.IntN(len(t.held)); n < len(t.held); n++ {
			if uint32(t.held[j].owner.Load()) != 0 {
				sh.letGo(t, j)
				break
			}
			if j++; j == len(t.held) {
				j = 0
			}
		}
	}
	for j := range t.held {
		if uint32(t.held[j].owner.Load()) == 0 {
			t.held[j].set(i, tn)
			s.ctrl.Store(w&^ctrlHeld | uint64(j+1)<<ctrlHeldAt)
			sh.decoded++
			return
		}
	}
}

// set makes h hold tn for slot i. The shard's lock must be held.
func (h *heldDoc) set(i int, tn *tenant.Tenant) {
	v := h.owner.Load()>>32 + 1
	h.owner.Store(v << 32) // first a new version, so no reader takes tn for the slot before
	h.t.Store(tn)
	h.owner.Store((v+1)<<32 | uint64(i+1))
}

// letGo frees entry j of t's held documents, if taken, clearing the held
// index of its slot's control word (unless the slot is deleted). sh.mu
// must be held.
func (sh *shard) letGo(t *table, j int) {
	h := &t.held[j]
	o := h.owner.Load()
	if uint32(o) == 0 {
		return
	}
	s := &t.slots[uint32(o)-1]
	if w := s.ctrl.Load(); w > ctrlDeleted {
		s.ctrl.Store(w &^ ctrlHeld)
	}
	h.owner.Store((o>>32 + 1) << 32)
	h.t.Store(nil)
	sh.decoded--
}

// letGoOf lets go of the document slot i of t holds decoded, if any.
// sh.mu must be held.
func (sh *shard) letGoOf(t *table, i int) {
	if j := int(t.slots[i].ctrl.Load() >> ctrlHeldAt & 0xff); j != 0 {
		sh.letGo(t, j-1)
	}
}

// encodeDoc serialises t for the cache.
func encodeDoc(t *tenant.Tenant) ([]byte, error) {
	return proto.Marshal(tcsv1.TenantToProto(t))
}

// decodeDoc decodes what encodeDoc made.
func decodeDoc(doc []byte) *tenant.Tenant {
	var p tcsv1.Tenant
	if err := proto.Unmarshal(doc, &p); err != nil {
		panic("tcs client: a cached document does not decode: " + err.Error())
	}
	t, err := tcsv1.TenantFromProto(&p)
	if err != nil || t == nil {
		panic(fmt.Sprintf("tcs client: a cached document does not decode: %v", err))
	}
	return t
}

// coarseSlack is how close to the end of its TTL (or disconnected TTL) an
// entry must be for fresh to check the precise clock: the coarse clock is
// only as current as its ticker goroutine, which a starved scheduler can
// run tens of milliseconds late, and an entry must not outlive its TTL by
// that much. Hits on entries further from their end (nearly all) read only
// the coarse clock.
const coarseSlack = int64(250 * time.Millisecond)

// fresh reports whether slot s may be served at now without asking a
// region.
func (c *cache) fresh(s *slot, now int64) bool {
	ok, left := c.freshAt(s, now)
	if ok && c.ticking && left < coarseSlack {
		ok, _ = c.freshAt(s, c.clock())
	}
	return ok
}

// freshAt reports whether slot s may be served at now, and for how much
// longer.
func (c *cache) freshAt(s *slot, now int64) (bool, int64) {
	age := now - s.readAt
	ttl := c.ttl
	if s.seq == 0 {
		ttl = c.negTTL
	}
	f := c.flags.Load()
	left := ttl - age
	if f&1 == 0 {
		left = min(left, c.discTTL-age)
	}
	return left > 0 && s.gen == uint32(f>>1), left
}

// regionOf returns the region name of control word w.
func (c *cache) regionOf(w uint64) string {
	return (*c.regions.Load())[w&ctrlRegion>>8]
}

// store sets the entry of key, its document doc (nil for a negative
// answer), evicting a random other entry if the shard holds limit already;
// it reports false, storing nothing, if the table's bytes cannot grow to
// hold it. sh.mu must be held.
func (c *cache) store(sh *shard, key string, hash uint64, e *entry, doc []byte, region int, limit int) bool {
	t := sh.tab.Load()
	old, _ := t.find(key, hash)
	need := recordSize(len(key), doc)
	if old < 0 && sh.live >= limit {
		sh.evict(t)
	}
	if float64(sh.used+1) > maxUsed*float64(len(t.slots)) || t.used+need > len(t.bytes) {
		if !c.rebuild(sh, limit, need) {
			return false
		}
		t = sh.tab.Load()
		old, _ = t.find(key, hash)
	}
	r := record{readAt: e.readAt, gen: uint32(e.gen), doc: doc}
	if e.t != nil {
		sh.docs++
		r.seq = sh.docs
	}
	i := t.put(key, hash, want(hash, len(key))|uint64(region)<<8, &r)
	if e.t != nil {
		// The caller returns e.t: hits until it is let go of return it
		// too.
		sh.hold(t, i, e.t)
	}
	sh.used++
	if old >= 0 {
		sh.letGoOf(t, old)
		t.slots[old].ctrl.Store(ctrlDeleted)
	} else {
		sh.live++
	}
	return true
}

// evict deletes a live slot picked at random. sh.mu must be held.
func (sh *shard) evict(t *table) {
	start := rand.IntN(len(t.slots))
	for n := range len(t.slots) {
		i := (start + n) % len(t.slots)
		if t.slots[i].ctrl.Load() > ctrlDeleted {
			sh.delete(i)
			return
		}
	}
}

// delete deletes slot i of the current table, and lets go of its decoded
// document. sh.mu must be held.
func (sh *shard) delete(i int) {
	t := sh.tab.Load()
	sh.letGoOf(t, i)
	t.slots[i].ctrl.Store(ctrlDeleted)
	sh.live--
}

// rebuild swaps in a new table holding the live slots, sized for them (for
// twice as many while the shard is below limit, so that a filling cache
// rebuilds log(limit) times) and with room for another need bytes of
// records (and as many as the live ones take: the bytes of deleted slots
// are reclaimed). It reports false, changing nothing, if the bytes would
// exceed maxBytes. sh.mu must be held.
func (c *cache) rebuild(sh *shard, limit, need int) bool {
	old := sh.tab.Load()
	n := min(max(2*sh.live, 8), limit) + 1
	bytes := need
	for i := range old.slots {
		s := &old.slots[i]
		if w := s.ctrl.Load(); w > ctrlDeleted {
			bytes += recordSize(int(w>>ctrlKeyLen&0xff), old.docOf(s, w))
		}
	}
	if bytes > 0 {
		bytes = max(2*bytes, 1024)
	}
	if bytes > maxBytes {
		if bytes/2 > maxBytes {
			return false
		}
		bytes = maxBytes
	}
	t := newTable(int(float64(n)/slack)+1, bytes, sh.maxDecoded)
	var buf []byte
	sh.decoded = 0
	for i := range old.slots {
		s := &old.slots[i]
		w := s.ctrl.Load()
		if w <= ctrlDeleted {
			continue
		}
		buf = old.keyOf(s, buf)
		r := record{seq: s.seq, readAt: s.readAt, gen: s.gen, doc: old.docOf(s, w)}
		j := t.put(string(buf), maphash.Bytes(c.seed, buf), w&^ctrlHeld, &r)
		if d := old.heldOf(i, w); d != nil {
			sh.hold(t, j, d)
		}
	}
	sh.used = sh.live
	sh.tab.Store(t)
	return true
}

// entry is one cached answer. A nil t is a negative answer (no tenant owns
// the hostname).
type entry struct {
	t      *tenant.Tenant
	readAt int64 // cache clock, when the region read it
	gen    uint64
	region string
}

// mark remembers one invalidation of a hostname or a tenant.
type mark struct {
	seq      uint64
	tenantID string
	version  int64
	at       int64
}

type markRef struct {
	host bool
	key  string
	seq  uint64
	at   int64
}

// ticket is taken before a fill asks a region.
type ticket struct {
	seq uint64
	gen uint64
}

// state is what the cache knows of a hostname.
type state int

const (
	absent  state = iota
	fresh         // serve it
	expired       // ask a region; serve it only if every region fails (and it is within max-stale)
)

type cacheConfig struct {
	size                           int
	ttl, negTTL, maxStale, discTTL time.Duration
	window                         time.Duration
	now                            func() time.Time
	// monotonic is how many tenants to remember for monotonic reads; 0:
	// off.
	monotonic int
}

func newCache(cfg cacheConfig) *cache {
	n := 256
	for n > 1 && cfg.size/n < 64 {
		n /= 2
	}
	// Hostnames spread over shards a little unevenly (a standard
	// deviation of about 1.6% of a shard at a million entries): 10% of room
	// keeps a cache of size entries from evicting before it holds them.
	per := (cfg.size + n - 1) / n
	if n > 1 {
		per += per / 10
	}
	c := &cache{
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		perShard: per,
		now:      cfg.now,
		epoch:    cfg.now(),
		ttl:      int64(cfg.ttl),
		negTTL:   int64(cfg.negTTL),
		maxStale: int64(cfg.maxStale),
		discTTL:  int64(cfg.discTTL),
		hosts:    make(map[string]mark),
		tenants:  make(map[string]mark),
		window:   int64(cfg.window),
		maxMarks: 100_000,
		known:    newKnown(cfg.monotonic),
	}
	for i := range c.shards {
		c.shards[i].maxDecoded = min(max(decodedTotal/n, decodedMin), maxHeld)
		c.shards[i].tab.Store(newTable(16, 0, c.shards[i].maxDecoded))
	}
	c.regions.Store(&[]string{""})
	return c
}

// clock returns the cache's time in nanoseconds since it was made
// (monotonic when the clock is time.Now).
func (c *cache) clock() int64 { return int64(c.now().Sub(c.epoch)) }

// fast returns the clock to the millisecond, cheaply.
func (c *cache) fast() int64 {
	if c.ticking {
		return c.coarse.Load()
	}
	return c.clock()
}

// tick keeps the coarse clock running until done is closed.
func (c *cache) tick(done <-chan struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			c.coarse.Store(c.clock())
		}
	}
}

func (c *cache) gen() uint64 { return c.flags.Load() >> 1 }

func (c *cache) watching() bool { return c.flags.Load()&1 == 1 }

// setWatching records whether the Watch stream is up, and reports whether
// that changed.
func (c *cache) setWatching(up bool) bool {
	for {
		old := c.flags.Load()
		nu := old &^ 1
		if up {
			nu |= 1
		}
		if old == nu {
			return false
		}
		if c.flags.CompareAndSwap(old, nu) {
			return true
		}
	}
}

// shard returns the shard of key and the key's hash: its high bits pick the
// shard, its low bits the slot.
func (c *cache) shard(key string) (*shard, uint64) {
	h := maphash.String(c.seed, key)
	return &c.shards[(h>>56)&c.mask], h
}

// region returns the index of region name in c.regions, adding it if
// there is room (0, "", if not). c.mu must be held.
func (c *cache) region(name string) int {
	names := *c.regions.Load()
	for i, n := range names {
		if n == name {
			return i
		}
	}
	if len(names) == maxRegions {
		return 0
	}
	grown := append(names[:len(names):len(names)], name)
	c.regions.Store(&grown)
	return len(grown) - 1
}

// get returns the entry of hostname h and its state at now.
func (c *cache) get(h string, now int64) (entry, state) {
	r := c.lookup(h)
	if r.s == nil {
		return entry{}, absent
	}
	e := entry{t: r.tenant(), readAt: r.s.readAt, gen: uint64(r.s.gen), region: c.regionOf(r.w)}
	if c.fresh(r.s, now) {
		return e, fresh
	}
	return e, expired
}

// staleOK reports whether e may be served when every region fails.
func (c *cache) staleOK(e entry, now int64) bool {
	return now-e.readAt < c.maxStale
}

func (c *cache) begin() ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ticket{seq: c.seq, gen: c.gen()}
}

// put installs e for hostname h unless an invalidation since tk says it is
// out of date, the client has returned a newer version of its tenant, or
// h's entry is a newer version of its tenant; it reports whether it did. A tenant it installs becomes (or stays) the
// newest version remembered for monotonic reads (see raise).
func (c *cache) put(h string, e entry, tk ticket) bool {
	if c.perShard <= 0 {
		return false
	}
	if (e.t == nil && c.negTTL <= 0) || len(h) > maxKey {
		return false
	}
	e.gen = tk.gen
	var doc []byte
	if e.t != nil {
		var err error
		if doc, err = encodeDoc(e.t); err != nil {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tk.seq < c.forgotten {
		return false // an invalidation it raced with may have been forgotten
	}
	if e.t != nil {
		if m, ok := c.tenants[e.t.ID]; ok && m.version > e.t.Version {
			return false
		}
	}
	if m, ok := c.hosts[h]; ok && m.seq > tk.seq && !e.asNewAs(m.tenantID, m.version) {
		return false
	}
	if !c.raise(h, e) {
		return false // older than a version of the tenant returned
	}
	sh, hash := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.t != nil {
		// Never back: an answer older than the entry of its tenant held
		// for h (fresh or kept for stale-if-error) does not replace it,
		// whatever path brought it (a hedge, a failover, a fill that
		// raced with a newer one), with monotonic reads off too.
		t := sh.tab.Load()
		if i, w := t.find(h, hash); i >= 0 {
			if old := sh.peek(t, i, w); old != nil && old.ID == e.t.ID && old.Version > e.t.Version {
				return false
			}
		}
	}
	return c.store(sh, h, hash, &e, doc, c.region(e.region), c.perShard)
}

// asNewAs reports whether e is tenant id at version or newer.
func (e entry) asNewAs(id string, version int64) bool {
	return e.t != nil && e.t.ID == id && e.t.Version >= version
}

// invalidate applies an invalidation by version (tcs.proto, Invalidation):
// each named hostname's entry is dropped unless it is already tenant id at
// version or newer, and so is every entry of the tenant below version that
// the cached documents of those hostnames lead to.
func (c *cache) invalidate(id string, version int64, hostnames []string) {
	now := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for _, h := range hostnames {
		c.hosts[h] = mark{seq: c.seq, tenantID: id, version: version, at: now}
		c.order = append(c.order, markRef{host: true, key: h, seq: c.seq, at: now})
	}
	if m, ok := c.tenants[id]; !ok || m.version < version {
		c.tenants[id] = mark{seq: c.seq, tenantID: id, version: version, at: now}
		c.order = append(c.order, markRef{key: id, seq: c.seq, at: now})
	}
	c.prune(now)

	var more []string
	for _, h := range hostnames {
		if e, ok := c.drop(h, id, version); ok && e.t != nil && e.t.ID == id {
			more = append(more, e.t.Hostnames...)
		}
	}
	for _, h := range more {
		sh, hash := c.shard(h)
		sh.mu.Lock()
		tab := sh.tab.Load()
		if i, w := tab.find(h, hash); i >= 0 {
			if t := sh.peek(tab, i, w); t != nil && t.ID == id && t.Version < version {
				sh.delete(i)
			}
		}
		sh.mu.Unlock()
	}
}

// drop deletes h's entry unless it is tenant id at version or newer, and
// returns what was there.
func (c *cache) drop(h, id string, version int64) (entry, bool) {
	sh, hash := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := sh.tab.Load()
	i, w := t.find(h, hash)
	if i < 0 {
		return entry{}, false
	}
	e := entry{t: sh.peek(t, i, w)}
	if !e.asNewAs(id, version) {
		sh.delete(i)
	}
	return e, true
}

// prune forgets invalidations older than the window, or the oldest beyond
// maxMarks. c.mu must be held.
func (c *cache) prune(now int64) {
	i := 0
	for ; i < len(c.order); i++ {
		r := c.order[i]
		if now-r.at < c.window && len(c.order)-i <= c.maxMarks {
			break
		}
		if now-r.at < c.window {
			c.forgotten = max(c.forgotten, r.seq)
		}
		m := c.tenants
		if r.host {
			m = c.hosts
		}
		if cur, ok := m[r.key]; ok && cur.seq == r.seq {
			delete(m, r.key)
		}
	}
	c.order = c.order[i:] // append reallocates (keeping only these) when it fills up
}

// resync expires every entry: invalidations may have been missed.
func (c *cache) resync() {
	c.mu.Lock()
	c.flags.Add(2)
	c.mu.Unlock()
}

// len returns the number of entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.live
		sh.mu.Unlock()
	}
	return n
}
