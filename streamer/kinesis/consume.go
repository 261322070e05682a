package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/streamer"
)

// listEvery is how often a worker lists the stream's shards even when
// nothing suggests they changed (another worker usually creates the leases
// of new shards first).
const listEvery = 30 * time.Second

// Consume runs this worker of the consumer group: it takes its share of the
// group's shard leases (see the package comment) and runs one loop per
// shard it holds, delivering batches in shard order from the lease's
// checkpoint (or the oldest record) and checkpointing each batch after h
// returned nil for it. It returns nil when ctx ends, after checkpointing
// what h accepted and releasing its leases; the first handler error (or a
// permanent AWS error) otherwise, after stopping the other shards. Only one
// Consume per group may run at a time on one Stream; other workers of the
// group are other Streams with other Owners.
func (s *Stream) Consume(ctx context.Context, group string, h streamer.Handler) error {
	if group == "" {
		return errors.New("kinesis consume: empty group name")
	}
	if h == nil {
		return fmt.Errorf("kinesis consume group %q: nil handler", group)
	}
	if s.table == nil {
		return fmt.Errorf("kinesis consume group %q: the stream was opened without a lease table (append only)", group)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return fmt.Errorf("kinesis consume group %q: %w", group, ErrClosed)
	case s.consuming[group]:
		s.mu.Unlock()
		return fmt.Errorf("kinesis consume group %q: another Consume of this group is running on this Stream", group)
	}
	s.consuming[group] = true
	s.consumers.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.consuming, group)
		s.mu.Unlock()
		s.consumers.Done()
	}()
	if ctx.Err() != nil {
		return nil
	}
	c := &consumer{
		s:       s,
		group:   group,
		h:       h,
		leases:  s.leaseTable(group),
		log:     s.log.With("group", group),
		running: map[string]*shardWorker{},
		obs:     lease.NewObserver(s.owner, s.lease),
		listed:  map[string]bool{},
		wake:    make(chan struct{}, 1),
	}
	return c.run(ctx)
}

// consumer is one running Consume: a manager loop (run) that keeps the
// leases, and one goroutine per shard held.
type consumer struct {
	s      *Stream
	group  string
	h      streamer.Handler
	leases *leaseTable
	log    *slog.Logger

	// crash is closed when a test simulates this worker's death: from then
	// on it writes nothing (no checkpoint, release or handover). Nil but in
	// tests.
	crash <-chan struct{}

	cancel   context.CancelCauseFunc
	failOnce sync.Once
	failErr  error // read after every goroutine ended

	wake chan struct{} // a shard goroutine ended: look at the leases now
	wg   sync.WaitGroup

	// The manager loop's own state.
	running  map[string]*shardWorker
	obs      *lease.Observer // expiry as this worker sees it
	listed   map[string]bool // shard ids of the last ListShards
	listedAt time.Time
	relist   bool
	// mine are leases the table says this worker holds but no loop runs
	// (adopting them failed); a clean stop releases them too.
	mine []Lease
}

var errCrashed = errors.New("kinesis: worker crashed (test)")

func (c *consumer) run(ctx context.Context) error {
	run, cancel := context.WithCancelCause(ctx)
	c.cancel = cancel
	defer cancel(nil)
	stopOnClose := context.AfterFunc(c.s.closing, func() { cancel(ErrClosed) })
	defer stopOnClose()
	if c.crash = crashSignal(ctx); c.crash != nil {
		go func() {
			select {
			case <-c.crash:
				cancel(errCrashed)
			case <-run.Done():
			}
		}()
	}

	tick := time.NewTimer(0)
	defer tick.Stop()
	for run.Err() == nil {
		select {
		case <-run.Done():
			continue
		case <-c.wake:
		case <-tick.C:
		}
		if err := c.cycle(run); err != nil {
			c.fail(err)
			break
		}
		tick.Reset(c.nextCycle())
	}

	c.wg.Wait()
	if !c.crashed() {
		c.releaseAll()
	}
	c.s.m.leasesHeld.WithLabelValues(c.group).Set(0)
	switch {
	case c.failErr != nil:
		return c.failErr
	case ctx.Err() == nil && errors.Is(context.Cause(run), ErrClosed):
		return fmt.Errorf("kinesis consume group %q: %w", c.group, ErrClosed)
	}
	return nil
}

// fail stops the consumer with err, the first failure.
// crashed reports whether a test made this worker crash.
func (c *consumer) crashed() bool {
	select {
	case <-c.crash:
		return true
	default:
		return false
	}
}

func (c *consumer) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		c.cancel(err)
	})
}

func (c *consumer) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// cycle is one round of lease keeping: renew what is held, read the leases,
// take a fair share. It returns only permanent errors (the stream or table
// is gone); it logs the others and tries again next time.
func (c *consumer) cycle(ctx context.Context) error {
	c.reap()
	c.renew(ctx)
	leases, err := c.leases.list(ctx)
	if err != nil {
		return c.cycleErr(ctx, err)
	}
	for _, l := range leases {
		if !c.listed[l.Shard] {
			c.relist = true // a shard this worker has not seen: resharded
		}
	}
	if c.relist || c.s.now().Sub(c.listedAt) >= listEvery {
		changed, err := c.syncShards(ctx, leases)
		if err != nil {
			return c.cycleErr(ctx, err)
		}
		if changed {
			if leases, err = c.leases.list(ctx); err != nil {
				return c.cycleErr(ctx, err)
			}
		}
	}
	c.observe(leases)
	c.balance(ctx, leases)
	c.mine = c.mine[:0]
	for _, l := range leases {
		if l.Owner == c.s.owner && c.running[l.Shard] == nil {
			c.mine = append(c.mine, l)
		}
	}
	c.s.m.leasesHeld.WithLabelValues(c.group).Set(float64(len(c.running)))
	return nil
}

func (c *consumer) cycleErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || isContextErr(err) {
		return nil
	}
	if classify(err) == permanent {
		return fmt.Errorf("kinesis consume group %q: %w", c.group, err)
	}
	c.log.Warn("lease cycle failed; trying again", "err", err)
	return nil
}

// reap forgets the shard loops that ended.
func (c *consumer) reap() {
	for shard, w := range c.running {
		select {
		case <-w.done:
			delete(c.running, shard)
			if w.finished {
				c.relist = true // its children may need leases
			}
		default:
		}
	}
}

// renew renews the leases held, hands a lease's steal request to its loop,
// and stops the loops whose lease was lost.
func (c *consumer) renew(ctx context.Context) {
	for _, shard := range slices.Sorted(maps.Keys(c.running)) {
		w := c.running[shard]
		sent := c.s.now()
		if sent.Sub(w.lastRenew) < c.s.lease/5 {
			continue
		}
		select {
		case <-w.done:
			continue // finished or handed over meanwhile: reaped next cycle
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, lease.RenewTimeout(c.s.lease))
		l, err := c.leases.renew(rctx, shard, w.token)
		cancel()
		switch {
		case errors.Is(err, errLeaseLost):
			c.log.Info("lease lost", "shard", shard)
			c.s.m.leaseEvents.WithLabelValues(c.group, "lost").Inc()
			w.cancel()
		case err != nil:
			if ctx.Err() == nil {
				c.log.Warn("lease renewal failed", "shard", shard, "err", err)
			}
		default:
			w.lastRenew = sent
			w.extend(sent.Add(c.s.lease))
			if l.Pending != "" && l.Pending != c.s.owner {
				select {
				case w.handover <- l.Pending:
				default:
				}
			}
		}
	}
}

// syncShards lists the stream's shards and creates the leases missing from
// leases, parents first. It removes the leases of finished shards that the
// stream no longer lists: trimmed once the retention period passed, they
// have nothing left to read (their children no longer wait for them), and
// would otherwise stay in the table for ever. It reports whether it changed
// the table.
func (c *consumer) syncShards(ctx context.Context, leases []Lease) (changed bool, err error) {
	shards, err := c.s.listShards(ctx)
	if err != nil {
		return false, err
	}
	have := map[string]bool{}
	for _, l := range leases {
		have[l.Shard] = true
	}
	listed := map[string]bool{}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		listed[id] = true
		if have[id] {
			continue
		}
		var parents []string
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if aws.ToString(p) != "" {
				parents = append(parents, *p)
			}
		}
		if err := c.leases.create(ctx, id, parents); err != nil {
			return changed, err
		}
		changed = true
	}
	c.listed, c.listedAt, c.relist = listed, c.s.now(), false
	for _, l := range leases {
		if l.Checkpoint != ShardEnd || listed[l.Shard] {
			continue
		}
		removed, err := c.leases.remove(ctx, l.Shard)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("removing the lease of a trimmed shard failed; it is tried again at the next listing", "shard", l.Shard, "err", err)
			}
			continue
		}
		if removed {
			changed = true
			c.log.Info("removed the lease of a finished shard the stream no longer lists (trimmed)", "shard", l.Shard)
		}
	}
	return changed, nil
}

func (s *Stream) listShards(ctx context.Context) ([]ktypes.Shard, error) {
	var shards []ktypes.Shard
	in := &kinesis.ListShardsInput{StreamName: s.stream}
	for {
		var out *kinesis.ListShardsOutput
		err := s.retryOp(ctx, "ListShards", func() (err error) {
			out, err = s.kin.ListShards(ctx, in, oneAttempt)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list shards of %s: %w", *s.stream, err)
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	// Parents before children: shard ids count up in creation order.
	slices.SortFunc(shards, func(a, b ktypes.Shard) int {
		return compareShardIDs(aws.ToString(a.ShardId), aws.ToString(b.ShardId))
	})
	return shards, nil
}

// scanInterval is the longest wait between two lease cycles: an eighth of
// the lease, at most scanEvery. A lease's expiry is judged from when a
// worker first saw its counter unchanged, so a dead owner's lease is seen
// expired at most LeaseDuration + scanInterval after its last write.
func (s *Stream) scanInterval() time.Duration { return min(s.lease/8, scanEvery) }

// scanEvery caps scanInterval.
const scanEvery = time.Second

// nextCycle is how long to wait before the next lease cycle: scanInterval,
// or less if another worker's lease expires sooner (so that it is taken
// over as soon as it may be, not up to a scan interval later).
func (c *consumer) nextCycle() time.Duration {
	return c.obs.NextExpiry(c.s.now(), c.s.scanInterval(), func(shard string) bool { return c.running[shard] != nil })
}

// releaseAll frees the leases of the loops that ended without finishing
// their shard or giving the lease away (those releases fail harmlessly: the
// token no longer matches).
func (c *consumer) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var wg sync.WaitGroup
	tokens := map[string]string{}
	for _, l := range c.mine {
		tokens[l.Shard] = l.token
	}
	for shard, w := range c.running {
		if !w.finished {
			tokens[shard] = w.token
		}
	}
	for shard, token := range tokens {
		wg.Go(func() {
			err := c.leases.release(ctx, shard, token)
			switch {
			case err == nil:
				c.s.m.leaseEvents.WithLabelValues(c.group, "release").Inc()
			case !errors.Is(err, errLeaseLost):
				c.log.Warn("releasing a lease failed; it expires instead", "shard", shard, "err", err)
			}
		})
	}
	wg.Wait()
	clear(c.running)
}

// crashKey marks a context whose channel, when closed, makes Consume stop as
// if its process died: no further checkpoint, release or handover. Only
// tests set it (export_test.go).
type crashKey struct{}

func crashSignal(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(crashKey{}).(<-chan struct{})
	return ch
}
