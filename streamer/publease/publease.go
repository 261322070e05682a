// Package publease shares the catalog outbox's shards among the processes
// running streamer publish, through a DynamoDB lease table
// (internal/leasetable, the table the Kinesis consumer groups use), so that
// any number of publishers run and none is a single point of failure. The
// lease rules (fencing, expiry by the observer's clock, the fair share,
// steal requests and polite handover) are internal/lease's, shared with the
// Kinesis consumers; this package runs them for the outbox shards.
//
// One lease per outbox shard (group "publish", shard = the shard number in
// decimal), in the home region's table <prefix>-publish-leases:
//
//   - A lease is free when its owner is "", expired when its counter has
//     not changed for Config.LeaseDuration as seen by the observing
//     publisher's own clock (lease.Observer). Every change is a conditional
//     write: two publishers never both take a lease, and one that lost a
//     lease can change nothing in it.
//   - Each publisher scans the table every LeaseDuration/8 (at most every
//     second), renews what it holds about every LeaseDuration/5, and plans
//     with lease.Balance: it takes free and expired leases up to a fair
//     share, ceil(shards / live publishers; a publisher asking for a lease
//     is live); one still short asks the most loaded publisher for what it
//     lacks (steal requests), which hands them over at its next renewal
//     unless that would leave it short itself (lease.Plan.Yield), and
//     otherwise declines them, so that the asker asks elsewhere. So a
//     publisher killed with -9 has its shards taken over about
//     LeaseDuration after its last renewal, and a new publisher gets its
//     share within a few scans.
//   - Fencing: Publisher asks Epoch before it appends a shard's entries and
//     before it acknowledges them. A shard counts as held only until
//     LeaseDuration·9/10 after the last renewal this publisher sent, and
//     not at all once a renewal finds the lease taken, so a publisher that
//     lost its lease (or cannot reach the table) stops appending and
//     acknowledging that shard before anyone else may take it. The outbox
//     itself is not conditioned on the lease: a publisher paused (say, by
//     the kernel) between its check and its append may still append what
//     it had read, which only duplicates events the new owner republishes;
//     appliers dedupe by version (delivery is at least once). Its
//     acknowledgement only ever names entries it appended.
//   - A clean stop releases the leases (after the publisher acknowledged
//     what it appended), so another publisher takes them at once.
package publease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/streamer"
)

var _ streamer.ShardLeases = (*Leases)(nil)

// Group is the lease table's group of the outbox publishers.
const Group = "publish"

// DefaultLeaseDuration is Config.LeaseDuration's default.
const DefaultLeaseDuration = 10 * time.Second

// releaseTimeout bounds the releases of a stopping publisher.
const releaseTimeout = 5 * time.Second

// leaseWrites is how many lease table calls a publisher has in flight at
// once when it renews, adopts, takes, creates or releases several leases.
// One after another, a publisher holding all 64 shards of a table answering
// in 50 ms (DynamoDB throttled, or an emulator under load) spent 3.2 s
// adopting them after a restart, and its renewals every LeaseDuration/5
// took longer than that interval.
const leaseWrites = 8

// each calls fn for every item, up to leaseWrites at once, and returns
// when every call has, with the first error.
func each[T any](items []T, fn func(T) error) error {
	var g errgroup.Group
	g.SetLimit(leaseWrites)
	for _, it := range items {
		g.Go(func() error { return fn(it) })
	}
	return g.Wait()
}

// API is the part of the DynamoDB client the publishers' lease table needs
// (no DeleteItem: a publisher never deletes a lease); *dynamodb.Client
// implements it.
type API = leasetable.KeeperAPI

// Open checks that the lease table exists (a missing one is an error
// naming it and the command that creates it) and returns New's Leases for
// publisher owner.
func Open(ctx context.Context, db API, table, owner string, cfg Config) (*Leases, error) {
	keeper, err := leasetable.OpenKeeper(ctx, db, table, "publish", "publease: publishers")
	if err != nil {
		return nil, err
	}
	cfg.Table = &leasetable.Table{DB: keeper, Name: table, Owner: owner}
	return New(cfg)
}

// Config configures New.
type Config struct {
	// Table is the lease table, as this publisher (Owner) writes it; its
	// Group is set to Group. Required.
	Table *leasetable.Table
	// Shards is how many outbox shards there are (catalog.Store's
	// OutboxShards). Required.
	Shards int
	// LeaseDuration is how long a lease lives without renewal before
	// another publisher may take it; 0 means DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Logger receives lease changes; nil discards.
	Logger *slog.Logger
	// Registerer receives the lease metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of expiry and validity; nil means time.Now.
	Now func() time.Time
}

// Leases keeps this publisher's outbox shard leases. It is a
// streamer.ShardLeases.
type Leases struct {
	cfg   Config
	table *leasetable.Table
	log   *slog.Logger
	now   func() time.Time

	held   prometheus.Gauge
	events *prometheus.CounterVec // event
	// lastScan is when the table was last read without error (Unix ns).
	lastScan prometheus.Gauge

	mu   sync.Mutex
	mine map[int]*holding // the shards held
	// plan is the last scan's (nil before the first): its fair share
	// decides the handovers.
	plan  *lease.Plan
	epoch uint64 // counts takes, for Epoch

	obs *lease.Observer // expiry as this publisher sees it
}

type holding struct {
	shard     string
	token     string
	epoch     uint64
	lastRenew time.Time // when the last successful renewal (or take) was sent
	validTo   time.Time
}

// New returns Leases for cfg; Keep takes and keeps them.
func New(cfg Config) (*Leases, error) {
	switch {
	case cfg.Table == nil:
		return nil, errors.New("publease: no lease table")
	case cfg.Table.Owner == "":
		return nil, errors.New("publease: the lease table has no owner (this publisher's name)")
	case cfg.Shards < 1:
		return nil, fmt.Errorf("publease: %d outbox shards: want at least 1", cfg.Shards)
	case cfg.LeaseDuration < 0:
		return nil, fmt.Errorf("publease: lease duration %v: want 0 (the default) or more", cfg.LeaseDuration)
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	t := *cfg.Table
	t.Group = Group
	t.Compare = compareShards
	l := &Leases{cfg: cfg, table: &t, log: cfg.Logger, now: cfg.Now, mine: map[int]*holding{}, obs: lease.NewObserver(t.Owner, cfg.LeaseDuration)}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if t.Now == nil {
		t.Now = l.now
	}
	l.held = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_publish_leases_held", Help: "Outbox shard leases this publisher holds (streamer publish on AWS; the publishers share the shards).",
	})
	l.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_publish_lease_events_total", Help: "Outbox shard lease changes by event: take (a free lease), takeover (an expired lease: its publisher died or lost the table), lost (a renewal found it taken), handover (given to a publisher that asked), decline (a request refused: handing over would leave this publisher short), steal_request, release (clean stop).",
	}, []string{"event"})
	l.lastScan = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_publish_lease_scan_timestamp_seconds", Help: "When the publish lease table was last read without error (Unix seconds; 0 before the first).",
	})
	for _, e := range []string{"take", "takeover", "lost", "handover", "decline", "steal_request", "release"} {
		l.events.WithLabelValues(e)
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(l.held), cfg.Registerer.Register(l.events), cfg.Registerer.Register(l.lastScan)); err != nil {
			return nil, fmt.Errorf("publease: register metrics: %w", err)
		}
	}
	return l, nil
}

// Held returns the shards held now (and valid), in order.
func (l *Leases) Held() []int {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var shards []int
	for sh, h := range l.mine {
		if now.Before(h.validTo) {
			shards = append(shards, sh)
		}
	}
	slices.Sort(shards)
	return shards
}

// Epoch returns the epoch of this publisher's holding of shard, and whether
// it holds it now. The epoch changes with every take, so an entry read
// under one holding is not appended under another.
func (l *Leases) Epoch(shard int) (uint64, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.mine[shard]
	if h == nil || !now.Before(h.validTo) {
		return 0, false
	}
	return h.epoch, true
}

// Keep takes and renews leases until ctx ends, then releases them, and
// returns nil. A failed cycle (the table unreachable, throttled) is logged
// and tried again at the next scan; meanwhile the leases held lapse as
// Epoch says.
func (l *Leases) Keep(ctx context.Context) error {
	defer l.releaseAll()
	interval := min(l.cfg.LeaseDuration/8, time.Second)
	created := false
	for {
		if err := l.cycle(ctx, &created); err != nil && ctx.Err() == nil {
			l.log.Warn("publish lease cycle failed; trying again", "err", err, "in", interval)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// cycle is one round: renew what is held, read the leases (creating the
// missing ones on the first round), take a fair share.
func (l *Leases) cycle(ctx context.Context, created *bool) error {
	l.renew(ctx)
	leases, err := l.table.List(ctx)
	if err != nil {
		return err
	}
	if !*created && len(leases) < l.cfg.Shards {
		have := map[string]bool{}
		for _, ls := range leases {
			have[ls.Key] = true
		}
		var missing []string
		for sh := range l.cfg.Shards {
			if id := strconv.Itoa(sh); !have[id] {
				missing = append(missing, id)
			}
		}
		if err := each(missing, func(id string) error { return l.table.Create(ctx, id, nil) }); err != nil {
			return err
		}
		if leases, err = l.table.List(ctx); err != nil {
			return err
		}
	}
	*created = true
	l.lastScan.Set(float64(l.now().UnixNano()) / 1e9)
	l.obs.Observe(l.now(), leases)
	l.balance(ctx, leases)
	l.mu.Lock()
	l.held.Set(float64(len(l.mine)))
	l.mu.Unlock()
	return nil
}

// renew renews the leases held about every LeaseDuration/5, drops those a
// renewal finds lost, and hands over those asked for that the last plan
// yields (declining the others).
func (l *Leases) renew(ctx context.Context) {
	l.mu.Lock()
	mine := maps.Clone(l.mine)
	l.mu.Unlock()
	_ = each(slices.Sorted(maps.Keys(mine)), func(sh int) error {
		h := mine[sh]
		sent := l.now()
		if sent.Sub(h.lastRenew) < l.cfg.LeaseDuration/5 {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, lease.RenewTimeout(l.cfg.LeaseDuration))
		got, err := l.table.Renew(rctx, h.shard, h.token)
		cancel()
		switch {
		case errors.Is(err, leasetable.ErrLost):
			l.log.Info("publish lease lost", "shard", sh)
			l.events.WithLabelValues("lost").Inc()
			l.drop(sh)
		case err != nil:
			if ctx.Err() == nil {
				l.log.Warn("publish lease renewal failed", "shard", sh, "err", err)
			}
		default:
			l.mu.Lock()
			if !l.now().Before(h.validTo) {
				// It lapsed meanwhile (Epoch said not held, and the
				// publisher may have dropped what it had read): a new
				// epoch, so that the shard is read again from its first
				// entry not acknowledged rather than after what was
				// dropped.
				l.epoch++
				h.epoch = l.epoch
			}
			h.lastRenew, h.validTo = sent, l.validTo(sent)
			asked := got.Pending != "" && got.Pending != l.table.Owner
			yield := asked && l.plan.Yield(len(l.mine), got.Pending)
			l.mu.Unlock()
			if asked {
				l.answer(ctx, sh, h, got.Pending, yield)
			}
		}
		return nil
	})
}

// validTo is how long a renewal sent at sent lets this publisher use the
// lease: a little less than the LeaseDuration after which others may take
// it.
func (l *Leases) validTo(sent time.Time) time.Time {
	return sent.Add(l.cfg.LeaseDuration * 9 / 10)
}

// answer answers who's request for shard: it hands the lease over (yield),
// having stopped using the shard (what this publisher had read of it and
// not acknowledged is published again by the new owner), or declines it,
// so that who asks elsewhere.
func (l *Leases) answer(ctx context.Context, sh int, h *holding, who string, yield bool) {
	write, event := l.table.Decline, "decline"
	if yield {
		l.drop(sh)
		write, event = l.table.HandOver, "handover"
	}
	if err := write(ctx, h.shard, h.token, who); err != nil {
		if !errors.Is(err, leasetable.ErrLost) && ctx.Err() == nil {
			l.log.Warn("answering a request for a publish lease failed", "shard", sh, "from", who, "answer", event, "err", err)
		}
		return
	}
	l.log.Info("answered a request for a publish lease", "shard", sh, "from", who, "answer", event)
	l.events.WithLabelValues(event).Inc()
}

func (l *Leases) drop(sh int) {
	l.mu.Lock()
	delete(l.mine, sh)
	l.held.Set(float64(len(l.mine)))
	l.mu.Unlock()
}

func (l *Leases) hold(ls leasetable.Lease, sent time.Time) {
	sh, _ := strconv.Atoi(ls.Key)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.mine[sh] = &holding{shard: ls.Key, token: ls.Token, epoch: l.epoch, lastRenew: sent, validTo: l.validTo(sent)}
	l.held.Set(float64(len(l.mine)))
}

// balance runs lease.Balance's plan: it adopts leases the table says are
// this publisher's and it does not hold (a take whose answer was lost, a
// handover to it), stops using those the table says are another's, takes
// free and expired leases up to a fair share, then asks the most loaded
// publisher for what it lacks.
func (l *Leases) balance(ctx context.Context, leases []leasetable.Lease) {
	me := l.table.Owner
	now := l.now()
	l.mu.Lock()
	mine := maps.Clone(l.mine)
	l.mu.Unlock()
	plan, err := lease.Balance(lease.Input{
		Me:      me,
		Leases:  leases,
		Expired: func(ls lease.Lease) bool { return l.obs.Expired(now, ls) },
		Holds: func(ls lease.Lease) bool {
			// A lease the table says is this publisher's is held only
			// under the token the table has.
			h := mine[l.shardOf(ls)]
			return h != nil && (ls.Owner != me || h.token == ls.Token)
		},
		// A lease that is not an outbox shard of this catalog: leave it be.
		Eligible: func(ls lease.Lease) bool { return l.shardOf(ls) >= 0 },
	})
	if err != nil {
		l.log.Warn("planning the publish leases failed", "err", err)
		return
	}
	l.mu.Lock()
	l.plan = plan
	l.mu.Unlock()
	for _, ls := range plan.Lost {
		// Stop using it now (a renewal would say so too, later).
		l.log.Info("publish lease lost", "shard", ls.Key, "to", ls.Owner)
		l.events.WithLabelValues("lost").Inc()
		l.drop(l.shardOf(ls))
	}
	_ = each(plan.Adopt, func(ls leasetable.Lease) error {
		sent := l.now()
		got, err := l.table.Renew(ctx, ls.Key, ls.Token)
		if err != nil {
			if !errors.Is(err, leasetable.ErrLost) && ctx.Err() == nil {
				l.log.Warn("adopting a publish lease failed", "shard", ls.Key, "err", err)
			}
			return nil
		}
		l.hold(got, sent)
		l.log.Info("adopted a publish lease", "shard", ls.Key)
		return nil
	})
	heldNow := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.mine)
	}
	take := func(ls leasetable.Lease) error {
		sent := l.now()
		taken, err := l.table.Take(ctx, ls)
		switch {
		case errors.Is(err, leasetable.ErrLost):
			return nil // someone else was quicker
		case err != nil:
			if ctx.Err() == nil {
				l.log.Warn("taking a publish lease failed", "shard", ls.Key, "err", err)
			}
			return nil
		}
		l.hold(taken, sent)
		if ls.Owner != "" {
			l.log.Info("took over an expired publish lease", "shard", ls.Key, "from", ls.Owner)
			l.events.WithLabelValues("takeover").Inc()
		} else {
			l.events.WithLabelValues("take").Inc()
		}
		return nil
	}
	// As many takes at once as would reach the fair share if all
	// succeeded; the next ones for those that did not.
	for cands := plan.Take; len(cands) > 0; {
		need := plan.Target - heldNow()
		if need <= 0 || ctx.Err() != nil {
			return
		}
		batch := cands[:min(need, len(cands))]
		cands = cands[len(batch):]
		_ = each(batch, take)
	}
	// Still short, nothing free: ask the most loaded publisher for as many
	// leases as it has over the share and this one lacks (a new publisher
	// gets its share of 64 shards in a few scans, not 32).
	held := heldNow()
	ask, from := plan.Steals(held)
	for _, ls := range from {
		if ask == 0 || ctx.Err() != nil {
			return
		}
		err := l.table.RequestSteal(ctx, ls)
		switch {
		case err == nil:
			ask--
			l.log.Info("asked for a publish lease", "shard", ls.Key, "owner", ls.Owner, "held", held, "target", plan.Target)
			l.events.WithLabelValues("steal_request").Inc()
		case !errors.Is(err, leasetable.ErrLost) && ctx.Err() == nil:
			l.log.Warn("asking for a publish lease failed", "shard", ls.Key, "err", err)
			return
		}
	}
}

// shardOf returns the outbox shard ls leases, or -1 if it is none of this
// catalog's.
func (l *Leases) shardOf(ls lease.Lease) int {
	sh, err := strconv.Atoi(ls.Key)
	if err != nil || sh < 0 || sh >= l.cfg.Shards {
		return -1
	}
	return sh
}

// releaseAll frees the leases held, so that another publisher takes them
// at once.
func (l *Leases) releaseAll() {
	l.mu.Lock()
	mine := l.mine
	l.mine = map[int]*holding{}
	l.held.Set(0)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	_ = each(slices.Sorted(maps.Keys(mine)), func(sh int) error {
		h := mine[sh]
		if err := l.table.Release(ctx, h.shard, h.token); err != nil {
			if !errors.Is(err, leasetable.ErrLost) {
				l.log.Warn("releasing a publish lease failed", "shard", sh, "err", err)
			}
			return nil
		}
		l.events.WithLabelValues("release").Inc()
		return nil
	})
}

// compareShards orders shard numbers numerically.
func compareShards(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
