package work

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
)

// Buckets is the number of buckets of every pool: a tenant's bucket is
// Bucket(id). Every node must agree on it (it is part of the fencing
// token's meaning), so it is a constant.
const Buckets = 256

// DefaultLeaseDuration is the default lease duration of a pool's buckets.
const DefaultLeaseDuration = 10 * time.Second

// Bucket returns the bucket of tenant id: FNV-1a (32 bits) modulo Buckets.
func Bucket(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % Buckets)
}

// Group is the lease group of pool.
func Group(pool string) string { return "work/" + pool }

const (
	bucketPrefix = "b/"
	memberPrefix = "m/"
)

// bucketKey is bucket b's lease key: fixed width, so key order is bucket
// order.
func bucketKey(b int) string { return fmt.Sprintf("%s%03d", bucketPrefix, b) }

// bucketOf returns the bucket of a lease key, or -1 if it is not a bucket's.
func bucketOf(key string) int {
	s, ok := strings.CutPrefix(key, bucketPrefix)
	if !ok {
		return -1
	}
	b, err := strconv.Atoi(s)
	if err != nil || b < 0 || b >= Buckets {
		return -1
	}
	return b
}

// fence is what a bucket lease's checkpoint holds: the epoch (the lease's
// counter when its owner took it) and that owner. It is current only while
// the lease still names that owner: a handover changes the owner first, the
// new owner's epoch follows.
func fence(epoch int64, owner string) string { return strconv.FormatInt(epoch, 10) + " " + owner }

// parseFence returns the epoch a bucket lease's checkpoint holds if it is
// current (written by the lease's owner), and 0 otherwise.
func parseFence(l lease.Lease) uint64 {
	e, owner, ok := strings.Cut(l.Checkpoint, " ")
	if !ok || l.Owner == "" || owner != l.Owner {
		return 0
	}
	n, err := strconv.ParseUint(e, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// memberInfo is what a member's record (its "m/<id>" lease's checkpoint)
// says: its capacity and the pool cap it asks for.
func memberInfo(capacity float64, maxConcurrent int) string {
	return strconv.FormatFloat(capacity, 'g', -1, 64) + " " + strconv.Itoa(maxConcurrent)
}

func parseMemberInfo(s string) (capacity float64, maxConcurrent int) {
	c, m, _ := strings.Cut(s, " ")
	capacity, err := strconv.ParseFloat(c, 64)
	if err != nil || math.IsNaN(capacity) || math.IsInf(capacity, 0) || capacity < 0 {
		capacity = 1
	}
	maxConcurrent, _ = strconv.Atoi(m)
	return capacity, max(maxConcurrent, 0)
}

// MemberConfig configures a Member.
type MemberConfig struct {
	// Store is the pool's lease group, written as the member (its owner).
	Store lease.Store
	// Member is the member's id (the Store's owner).
	Member string
	// Capacity is the member's weight; 0 means 1.
	Capacity float64
	// MaxConcurrent is the pool cap the member asks for; 0: none.
	MaxConcurrent int
	// LeaseDuration is the pool's lease duration. Default
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Now, if set, stamps each write as it is sent (a round of hundreds
	// of writes can take a while on DynamoDB, and a lease counts from the
	// sending of its own last write); nil stamps them with the round's now.
	Now func() time.Time
	// Tenants, if set, is the number of ACTIVE tenants of bucket b
	// (Index.Count): the bucket's weight, so that members share tenants,
	// not buckets (lease.Input.Weight). Every node of a pool must count
	// the same tenants, give or take a few (their regions' replicas may
	// lag). Nil: every bucket weighs 1.
	Tenants func(b int) int
}

// Member holds a pool's bucket leases on behalf of one member: Step takes,
// hands over and drops them, and renews the member's record, but renews and
// takes only while the member's heartbeats arrive (within LeaseDuration/2).
//
// The bucket leases are not renewed: the member's record is their
// liveness. A bucket is held while its lease names the member and the
// member's record is renewed; the others judge it expired when its owner's
// record has not changed for LeaseDuration (by their own clocks), so a
// settled pool writes one renewal per member every LeaseDuration/4, not one
// per bucket. A Member is driven by its caller's loop (Service.Join) with
// the caller's clock, so that tests drive it with a fake one; it is safe
// for concurrent use.
type Member struct {
	cfg MemberConfig
	obs *lease.Observer

	renewing sync.Mutex // held while the record is renewed

	mu       sync.Mutex
	held     map[int]*holding
	retiring map[int]*retiring // buckets being handed over, no longer held
	beats    []beat            // heartbeats received, oldest first (pruned)
	record   *holding
	slots    int
	released bool
	sentSeq  uint64 // the latest assignment sent (Sent)
	applied  uint64 // the latest assignment the member applied (Applied)
	unowned  int    // tenants in buckets no live member holds, at the last Step
	counted  bool   // unowned was counted
}

type holding struct {
	key, token string
	epoch      uint64
	lastRenew  time.Time // the record's: when its last renewal (or take) was sent
}

// retiring is a bucket this member yielded: it left the member's assignment
// at once, and is handed over (to) once the member no longer counts on it,
// so that two members never count on it at once: as soon as the member
// applied an assignment sent without it (droppedAt, 0 until one was sent),
// or else once it can no longer count on any assignment with it (until: the
// record's last renewal when it was yielded, plus LeaseDuration). Meanwhile
// the record keeps it the member's.
type retiring struct {
	h         *holding
	to        string
	until     time.Time
	droppedAt uint64
}

type beat struct {
	seq uint64
	at  time.Time
}

// NewMember returns a Member; it holds nothing until its first Heartbeat
// and Step.
func NewMember(cfg MemberConfig) (*Member, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("work member: no lease store")
	case cfg.Member == "":
		return nil, errors.New("work member: empty member id")
	case math.IsNaN(cfg.Capacity) || math.IsInf(cfg.Capacity, 0) || cfg.Capacity < 0:
		return nil, fmt.Errorf("work member %s: capacity %v: want a finite number, 0 or more", cfg.Member, cfg.Capacity)
	case cfg.MaxConcurrent < 0:
		return nil, fmt.Errorf("work member %s: max concurrent %d: want 0 (no cap) or more", cfg.Member, cfg.MaxConcurrent)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 1
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	return &Member{cfg: cfg, obs: lease.NewObserver(cfg.Member, cfg.LeaseDuration), held: map[int]*holding{}, retiring: map[int]*retiring{}}, nil
}

// Heartbeat records heartbeat seq of the member, received at now.
func (m *Member) Heartbeat(now time.Time, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.beats = append(m.beats, beat{seq: seq, at: now})
}

// Sent records that assignment seq (numbered 1, 2, 3… on the member's
// stream) was sent, made from Held after the last Step: every bucket
// yielded so far is absent from it. Call it from the goroutine that runs
// Step.
func (m *Member) Sent(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sentSeq = max(m.sentSeq, seq)
	for _, r := range m.retiring {
		if r.droppedAt == 0 {
			r.droppedAt = seq
		}
	}
}

// Yielding reports whether a yielded bucket waits for an assignment to be
// sent without it (Sent): send one even if the tenants did not change (the
// bucket may have had none), so that the member can apply it.
func (m *Member) Yielding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.retiring {
		if r.droppedAt == 0 {
			return true
		}
	}
	return false
}

// Applied records that the member applied assignment seq: it no longer
// counts on any tenant absent from it. It reports whether that lets a
// yielded bucket be handed over now (run a Step), and refuses a seq beyond
// the latest assignment sent. 0 (older clients) changes nothing.
func (m *Member) Applied(seq uint64) (handOver bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq > m.sentSeq {
		return false, fmt.Errorf("applied_seq %d: only %d assignments were sent", seq, m.sentSeq)
	}
	if seq <= m.applied {
		return false, nil
	}
	m.applied = seq
	for _, r := range m.retiring {
		if r.droppedAt != 0 && r.droppedAt <= seq {
			handOver = true
		}
	}
	return handOver, nil
}

// alive reports whether the member's last heartbeat is recent enough at now
// to act for it. Called with mu held.
func (m *Member) aliveLocked(now time.Time) bool {
	return len(m.beats) > 0 && now.Sub(m.beats[len(m.beats)-1].at) < m.cfg.LeaseDuration/2
}

// sent returns when a write is being sent: Now, or the round's now.
func (m *Member) sent(now time.Time) time.Time {
	if m.cfg.Now != nil {
		return m.cfg.Now()
	}
	return now
}

// validFor is how long after a renewal is sent the member may count on the
// lease: a little less than the LeaseDuration after which others may take
// it, for clocks that run at slightly different rates.
func (m *Member) validFor() time.Duration { return m.cfg.LeaseDuration * 9 / 10 }

// Held returns the buckets held and valid at now (the member's record
// renewed less than validFor ago), with their epochs (the fencing tokens).
func (m *Member) Held(now time.Time) map[int]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.record == nil || !now.Before(m.record.lastRenew.Add(m.validFor())) {
		return map[int]uint64{}
	}
	out := make(map[int]uint64, len(m.held))
	for b, h := range m.held {
		out[b] = h.epoch
	}
	return out
}

// Acked returns the latest heartbeat received no later than the last
// renewal of the member's record (the liveness of every bucket it holds),
// so that the member may count on its assignment until that heartbeat's
// send time plus validFor by its own clock: the record was renewed after
// the heartbeat was received, hence after it was sent. 0 when none
// qualifies.
func (m *Member) Acked() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.record == nil {
		return 0
	}
	oldest := m.record.lastRenew
	var seq uint64
	keep := 0
	for i, bt := range m.beats {
		if bt.at.After(oldest) {
			break
		}
		seq, keep = bt.seq, i
	}
	m.beats = m.beats[keep:] // older heartbeats can never be the answer again
	return seq
}

// Unowned returns the ACTIVE tenants (with Tenants; otherwise buckets) in
// the buckets no live member held at the last Step, by this member's
// observation: free, or their owner's record expired. False before a Step
// that read every bucket.
func (m *Member) Unowned() (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unowned, m.counted
}

// countUnowned counts what Unowned returns among leases at now. The
// member's own buckets count while its record has lapsed (its heartbeats
// stopped): nobody works on them until another member takes them.
func (m *Member) countUnowned(now time.Time, leases []lease.Lease) {
	records := recordsOf(leases)
	m.mu.Lock()
	lapsed := m.record == nil || !now.Before(m.record.lastRenew.Add(m.validFor()))
	m.mu.Unlock()
	n, buckets := 0, 0
	for _, l := range leases {
		if bucketOf(l.Key) < 0 {
			continue
		}
		buckets++
		if l.Owner == "" || l.Owner == m.cfg.Member && lapsed || m.expired(now, l, records) {
			n += int(m.weight(l))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if buckets == Buckets {
		m.unowned, m.counted = n, true
	}
}

// recordsOf returns the member records among leases, by member id.
func recordsOf(leases []lease.Lease) map[string]lease.Lease {
	records := map[string]lease.Lease{}
	for _, l := range leases {
		if id, ok := strings.CutPrefix(l.Key, memberPrefix); ok {
			records[id] = l
		}
	}
	return records
}

// Slots is the member's share of the pool's cap on concurrent runs (0: no
// cap), as of the last Step.
func (m *Member) Slots() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slots
}

// Step runs one round at now over the pool's leases as read (List): it
// keeps the member's record (renewing it about every LeaseDuration/4),
// drops what the table says is lost, answers steal requests, and takes,
// adopts and asks for buckets up to the member's share. It does nothing
// but drop lapsed leases while the member's heartbeats are late.
func (m *Member) Step(ctx context.Context, now time.Time, leases []lease.Lease) error {
	m.obs.Observe(now, leases)
	m.countUnowned(now, leases)
	m.mu.Lock()
	alive := m.aliveLocked(now) && !m.released
	if m.record != nil && !now.Before(m.record.lastRenew.Add(m.validFor())) {
		// Lapsed: others may take the buckets soon.
		m.record = nil
		m.held, m.retiring = map[int]*holding{}, map[int]*retiring{}
	}
	m.mu.Unlock()
	if !alive {
		return nil
	}
	if err := m.keepRecord(ctx, now, leases); err != nil {
		return err // without a live record it may hold nothing
	}
	return m.balance(ctx, now, leases)
}

// keepRecord creates, takes and renews the member's record: the lease
// "m/<id>" whose owner is the member while it is live and whose checkpoint
// holds its capacity and cap, so that members served by other nodes count
// it (lease.Input.Workers and Weights).
func (m *Member) keepRecord(ctx context.Context, now time.Time, leases []lease.Lease) error {
	key := memberPrefix + m.cfg.Member
	info := memberInfo(m.cfg.Capacity, m.cfg.MaxConcurrent)
	m.mu.Lock()
	rec := m.record
	m.mu.Unlock()
	if rec != nil {
		return m.renewRecord(ctx, now)
	}
	i := slices.IndexFunc(leases, func(l lease.Lease) bool { return l.Key == key })
	var l lease.Lease
	if i < 0 {
		if err := m.cfg.Store.Create(ctx, key, nil); err != nil {
			return fmt.Errorf("create member record %s: %w", m.cfg.Member, err)
		}
		got, err := m.cfg.Store.List(ctx)
		if err != nil {
			return err
		}
		i = slices.IndexFunc(got, func(l lease.Lease) bool { return l.Key == key })
		if i < 0 {
			return fmt.Errorf("member record %s vanished after its creation", m.cfg.Member)
		}
		l = got[i]
	} else {
		l = leases[i]
	}
	// Free, or held under the same id by a former stream of this member
	// (its node may not know yet that it ended): take it, with a new token,
	// so that the former stream's writes fail from now on.
	sent := m.sent(now)
	taken, err := m.cfg.Store.Take(ctx, l)
	if err != nil {
		return fmt.Errorf("take member record %s: %w", m.cfg.Member, err)
	}
	token := taken.Token
	if err := m.cfg.Store.Checkpoint(ctx, key, token, info); err != nil {
		return fmt.Errorf("write member record %s: %w", m.cfg.Member, err)
	}
	m.mu.Lock()
	m.record = &holding{key: key, token: token, lastRenew: sent}
	m.mu.Unlock()
	return nil
}

// renewRecord renews the member's record if LeaseDuration/4 has passed
// since its last renewal at now. One renewal runs at a time.
func (m *Member) renewRecord(ctx context.Context, now time.Time) error {
	m.renewing.Lock()
	defer m.renewing.Unlock()
	m.mu.Lock()
	rec := m.record
	m.mu.Unlock()
	if rec == nil || now.Sub(rec.lastRenew) < m.cfg.LeaseDuration/4 {
		return nil
	}
	sent := m.sent(now)
	if err := m.cfg.Store.Checkpoint(ctx, rec.key, rec.token, memberInfo(m.cfg.Capacity, m.cfg.MaxConcurrent)); err != nil {
		if errors.Is(err, lease.ErrLost) {
			// Another stream of the member took the record: it adopts
			// the buckets.
			m.mu.Lock()
			m.record = nil
			m.held, m.retiring = map[int]*holding{}, map[int]*retiring{}
			m.mu.Unlock()
		}
		return fmt.Errorf("renew member record %s: %w", m.cfg.Member, err)
	}
	m.mu.Lock()
	rec.lastRenew = sent
	m.mu.Unlock()
	return nil
}

// renewDuringRound renews the member's record in the middle of a round, if
// due by the clock writes are stamped with (MemberConfig.Now): a round of
// hundreds of takes can outlast a renewal interval on DynamoDB, and the
// record is the liveness of every bucket held. Without Now nothing is due
// within a round. Failures are left to the next round.
func (m *Member) renewDuringRound(ctx context.Context) {
	if m.cfg.Now == nil {
		return
	}
	_ = m.renewRecord(ctx, m.cfg.Now())
}

// maxParallel bounds the lease writes of one member in flight at once: a
// round of hundreds of writes (a member alone takes all 256 buckets) fits
// in a fraction of the lease duration on DynamoDB.
const maxParallel = 16

// parallel runs f(0..n-1), at most maxParallel at once, and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallel)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

func (m *Member) drop(b int) {
	m.mu.Lock()
	delete(m.held, b)
	m.mu.Unlock()
}

// acquire makes a bucket lease the member's (l as taken) by writing its
// fence, and holds it.
func (m *Member) acquire(ctx context.Context, l lease.Lease) error {
	if err := m.cfg.Store.Checkpoint(ctx, l.Key, l.Token, fence(l.Counter, m.cfg.Member)); err != nil {
		return err
	}
	m.mu.Lock()
	m.held[bucketOf(l.Key)] = &holding{key: l.Key, token: l.Token, epoch: uint64(l.Counter)}
	m.mu.Unlock()
	return nil
}

// weight is bucket lease l's weight: its ACTIVE tenants, or 1.
func (m *Member) weight(l lease.Lease) float64 {
	if m.cfg.Tenants == nil {
		return 1
	}
	return float64(m.cfg.Tenants(bucketOf(l.Key)))
}

// expired reports whether bucket lease l, held by another member, has
// expired at now by this member's observation: its owner's record has not
// changed for LeaseDuration, or was released (the owner left; it released
// its buckets first). A bucket whose owner has no record at all (never
// written by a Member) expires as a lease of its own.
func (m *Member) expired(now time.Time, l lease.Lease, records map[string]lease.Lease) bool {
	if l.Owner == "" || l.Owner == m.cfg.Member {
		return false
	}
	rec, ok := records[l.Owner]
	if !ok {
		return m.obs.Expired(now, l)
	}
	return rec.Owner != l.Owner || m.obs.Expired(now, rec)
}

// balance plans with lease.Balance over the bucket leases, the live
// members' records as the membership list and their capacities as weights.
func (m *Member) balance(ctx context.Context, now time.Time, leases []lease.Lease) error {
	me := m.cfg.Member
	var workers []string
	weights := map[string]float64{me: m.cfg.Capacity}
	caps := map[string]int{}
	if m.cfg.MaxConcurrent > 0 {
		caps[me] = m.cfg.MaxConcurrent
	}
	var missing []int
	have := make([]bool, Buckets)
	records := recordsOf(leases)
	for _, l := range leases {
		if b := bucketOf(l.Key); b >= 0 {
			have[b] = true
			continue
		}
		id, ok := strings.CutPrefix(l.Key, memberPrefix)
		if !ok || id == me || l.Owner != id || m.obs.Expired(now, l) {
			continue
		}
		workers = append(workers, id)
		w, c := parseMemberInfo(l.Checkpoint)
		weights[id] = w
		if c > 0 {
			caps[id] = c
		}
	}
	for b, ok := range have {
		if !ok {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		for _, b := range missing {
			if err := m.cfg.Store.Create(ctx, bucketKey(b), nil); err != nil {
				return fmt.Errorf("create bucket lease %d: %w", b, err)
			}
		}
		return nil // taken from the next List
	}
	m.mu.Lock()
	mine := maps.Clone(m.held)
	retire := maps.Clone(m.retiring)
	m.mu.Unlock()
	plan, err := lease.Balance(lease.Input{
		Me:      me,
		Leases:  leases,
		Expired: func(l lease.Lease) bool { return m.expired(now, l, records) },
		Holds: func(l lease.Lease) bool {
			h := mine[bucketOf(l.Key)]
			if r := retire[bucketOf(l.Key)]; r != nil {
				h = r.h
			}
			return h != nil && (l.Owner != me || h.token == l.Token)
		},
		Eligible: func(l lease.Lease) bool { return bucketOf(l.Key) >= 0 },
		Workers:  workers,
		Weights:  weights,
		Weight:   m.weight,
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.slots = slotsOf(me, caps, weights)
	m.mu.Unlock()
	for _, l := range plan.Lost {
		m.drop(bucketOf(l.Key))
	}
	// Yielded buckets whose time has come: hand them over. One whose
	// asker gave up (HandOver fails) is adopted again next round.
	m.mu.Lock()
	applied := m.applied
	m.mu.Unlock()
	for b, r := range retire {
		m.mu.Lock()
		dropped := r.droppedAt != 0 && r.droppedAt <= applied
		m.mu.Unlock()
		if now.Before(r.until) && !dropped {
			continue
		}
		_ = m.cfg.Store.HandOver(ctx, r.h.key, r.h.token, r.to)
		m.mu.Lock()
		delete(m.retiring, b)
		m.mu.Unlock()
	}
	load := func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		var n float64
		for _, h := range m.held {
			n += plan.WeightOf(h.key)
		}
		return n
	}
	// Steal requests for the buckets held, one by one (each handover
	// changes what the next may yield): when the plan yields, the bucket
	// retires (it leaves the assignment now, and is handed over once the
	// member can no longer count on it), otherwise a decline, so that the
	// asker asks elsewhere.
	for _, l := range leases {
		b := bucketOf(l.Key)
		h := mine[b]
		if b < 0 || h == nil || l.Owner != me || l.Token != h.token || l.Pending == "" || l.Pending == me {
			continue
		}
		if plan.YieldByWeight(load(), l.Key, l.Pending) {
			m.mu.Lock()
			if m.record != nil && m.held[b] == h {
				delete(m.held, b)
				m.retiring[b] = &retiring{h: h, to: l.Pending, until: m.record.lastRenew.Add(m.cfg.LeaseDuration)}
			}
			m.mu.Unlock()
		} else {
			_ = m.cfg.Store.Decline(ctx, l.Key, l.Token, l.Pending)
		}
	}
	var (
		emu  sync.Mutex
		errs []error
	)
	fail := func(err error) {
		emu.Lock()
		errs = append(errs, err)
		emu.Unlock()
	}
	parallel(len(plan.Adopt), func(i int) {
		// Handed over to this member, or held by a former stream of it:
		// take it with a new token (conditioned on the counter as read),
		// so that the former stream's renewals and releases fail.
		l := plan.Adopt[i]
		m.renewDuringRound(ctx)
		got, err := m.cfg.Store.Take(ctx, l)
		if err == nil {
			err = m.acquire(ctx, got)
		}
		if err != nil && !errors.Is(err, lease.ErrLost) {
			fail(fmt.Errorf("adopt bucket %s: %w", l.Key, err))
		}
	})
	// Free, then expired, up to the share; those lost to a quicker member
	// are made up for next round.
	takes := plan.TakesByWeight(load())
	parallel(len(takes), func(i int) {
		l := takes[i]
		m.renewDuringRound(ctx)
		got, err := m.cfg.Store.Take(ctx, l)
		if err == nil {
			err = m.acquire(ctx, got)
		}
		if err != nil && !errors.Is(err, lease.ErrLost) {
			fail(fmt.Errorf("take bucket %s: %w", l.Key, err))
		}
	})
	for _, l := range plan.StealsByWeight(load()) {
		if ctx.Err() != nil {
			break
		}
		if err := m.cfg.Store.RequestSteal(ctx, l); err != nil && !errors.Is(err, lease.ErrLost) {
			errs = append(errs, fmt.Errorf("ask for bucket %s: %w", l.Key, err))
			break
		}
	}
	return errors.Join(errs...)
}

// slotsOf is me's share of the pool's cap on concurrent runs: the smallest
// cap any live member asks for, split by capacity with the largest
// remainders (ties by id), so that the shares add up to the cap. 0: no cap.
// A member whose share rounds to 0 runs nothing while the cap is below the
// number of members.
func slotsOf(me string, caps map[string]int, weights map[string]float64) int {
	limit := 0
	for _, c := range caps {
		if limit == 0 || c < limit {
			limit = c
		}
	}
	if limit == 0 {
		return 0
	}
	var total float64
	ids := slices.Sorted(maps.Keys(weights))
	for _, id := range ids {
		total += weights[id]
	}
	if total == 0 {
		return 0
	}
	type part struct {
		id   string
		n    int
		frac float64
	}
	parts := make([]part, 0, len(ids))
	given := 0
	for _, id := range ids {
		x := float64(limit) * weights[id] / total
		n := int(math.Floor(x + 1e-9))
		parts = append(parts, part{id, n, x - float64(n)})
		given += n
	}
	slices.SortStableFunc(parts, func(a, b part) int {
		switch {
		case a.frac > b.frac:
			return -1
		case a.frac < b.frac:
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	for i := 0; given < limit && i < len(parts); i++ {
		parts[i].n++
		given++
	}
	for _, p := range parts {
		if p.id == me {
			return p.n
		}
	}
	return 0
}

// Release frees the member's buckets and record, so that the others take
// them at once, and the Member does nothing afterwards. Call it only when
// the member is known to count on none of its tenants any more (it sent
// Leave): a member whose stream merely ended may still count on its last
// assignment until it lapses (Service.Join then lets the record expire, as
// after a crash). Do not run it alongside Step.
func (m *Member) Release(ctx context.Context) {
	m.mu.Lock()
	m.released = true
	mine := maps.Clone(m.held)
	rec := m.record
	m.held, m.retiring, m.record = map[int]*holding{}, map[int]*retiring{}, nil
	m.mu.Unlock()
	for _, h := range mine {
		_ = m.cfg.Store.Release(ctx, h.key, h.token)
	}
	// Buckets handed over to the member and not adopted yet: free them too.
	if ls, err := m.cfg.Store.List(ctx); err == nil {
		for _, l := range ls {
			if l.Owner == m.cfg.Member && bucketOf(l.Key) >= 0 && mine[bucketOf(l.Key)] == nil {
				_ = m.cfg.Store.Release(ctx, l.Key, l.Token)
			}
		}
	}
	if rec != nil {
		_ = m.cfg.Store.Release(ctx, rec.key, rec.token)
	}
}

// Current returns the current fencing token of tenant id's bucket among
// leases as read, and its owner; 0 and "" when the bucket is not held (or
// its owner has not written its fence yet).
func Current(leases []lease.Lease, id string) (uint64, string) {
	key := bucketKey(Bucket(id))
	for _, l := range leases {
		if l.Key == key {
			if f := parseFence(l); f != 0 {
				return f, l.Owner
			}
			return 0, ""
		}
	}
	return 0, ""
}
