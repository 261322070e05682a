package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

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
		seen:    map[string]observation{},
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
	seen     map[string]observation
	listed   map[string]bool // shard ids of the last ListShards
	listedAt time.Time
	relist   bool
	// mine are leases the table says this worker holds but no loop runs
	// (adopting them failed); a clean stop releases them too.
	mine []Lease
}

// observation is when this worker first saw a lease in its current state:
// a lease whose counter stays the same for LeaseDuration has expired.
type observation struct {
	owner   string
	counter int64
	since   time.Time
}

// shardWorker is a shard loop and what the manager shares with it.
type shardWorker struct {
	shard  string
	token  string
	cancel context.CancelFunc // the lease is lost: stop now
	// handover receives the worker that asked for the lease: hand it over
	// after the batch in hand.
	handover chan string
	// validUntil (Unix nanoseconds, Stream.now's clock) is when another
	// worker may take the lease: LeaseDuration after the last successful
	// write to it was sent. The loop delivers nothing after it.
	validUntil atomic.Int64
	done       chan struct{}
	finished   bool // read to SHARD_END; set before done is closed

	lastRenew time.Time // manager only
}

func (w *shardWorker) extend(until time.Time) {
	n := until.UnixNano()
	for {
		old := w.validUntil.Load()
		if n <= old || w.validUntil.CompareAndSwap(old, n) {
			return
		}
	}
}

func (w *shardWorker) valid(now time.Time) bool { return now.UnixNano() < w.validUntil.Load() }

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
		l, err := c.leases.renew(ctx, shard, w.token)
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

func (c *consumer) observe(leases []Lease) {
	now := c.s.now()
	for _, l := range leases {
		o, ok := c.seen[l.Shard]
		if !ok || o.owner != l.Owner || o.counter != l.Counter {
			c.seen[l.Shard] = observation{owner: l.Owner, counter: l.Counter, since: now}
		}
	}
}

func (c *consumer) expired(l Lease) bool {
	return l.Owner != "" && l.Owner != c.s.owner && c.s.now().Sub(c.seen[l.Shard].since) >= c.s.lease
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
	now := c.s.now()
	wait := c.s.scanInterval()
	for shard, o := range c.seen {
		if o.owner == "" || o.owner == c.s.owner || c.running[shard] != nil {
			continue
		}
		if d := o.since.Add(c.s.lease).Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	return wait
}

// eligible returns the leases that may be consumed now: not finished, and
// every parent finished (or gone from the stream: trimmed).
func (c *consumer) eligible(leases []Lease) []Lease {
	finished := map[string]bool{}
	for _, l := range leases {
		if l.Checkpoint == ShardEnd {
			finished[l.Shard] = true
		}
	}
	var ok []Lease
	for _, l := range leases {
		if l.Checkpoint == ShardEnd {
			continue
		}
		ready := true
		for _, p := range l.Parents {
			if !finished[p] && c.listed[p] {
				ready = false
			}
		}
		if ready {
			ok = append(ok, l)
		}
	}
	return ok
}

// balance adopts this worker's own leases that no loop runs, then takes free
// and expired leases up to a fair share, then asks the most loaded worker
// for one.
func (c *consumer) balance(ctx context.Context, leases []Lease) {
	eligible := c.eligible(leases)
	for _, l := range eligible {
		if l.Owner == c.s.owner && c.running[l.Shard] == nil && ctx.Err() == nil {
			// Ours in the table but not running: a take whose answer was
			// lost, a handover to us, a loop that stopped, or a previous
			// Consume that could not release it. Renew first: that gives
			// the loop a fresh validity.
			sent := c.s.now()
			if _, err := c.leases.renew(ctx, l.Shard, l.token); err != nil {
				if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
					c.log.Warn("adopting a lease failed", "shard", l.Shard, "err", err)
				}
				continue
			}
			c.start(ctx, l, l.token, sent, "adopt")
		}
	}

	workers := map[string]int{c.s.owner: 0}
	var free, expired []Lease
	pendingForMe := false
	for _, l := range eligible {
		switch {
		case l.Owner == c.s.owner:
		case l.Owner == "":
			free = append(free, l)
		case c.expired(l):
			expired = append(expired, l)
		default:
			workers[l.Owner]++
			if l.Pending == c.s.owner {
				pendingForMe = true
			}
		}
	}
	target := (len(eligible) + len(workers) - 1) / len(workers)
	for _, l := range slices.Concat(free, expired) {
		if len(c.running) >= target || ctx.Err() != nil {
			return
		}
		sent := c.s.now()
		taken, err := c.leases.take(ctx, l)
		switch {
		case errors.Is(err, errLeaseLost):
			continue // someone else was quicker
		case err != nil:
			if ctx.Err() == nil {
				c.log.Warn("taking a lease failed", "shard", l.Shard, "err", err)
			}
			continue
		}
		event := "take"
		if l.Owner != "" {
			event = "expired"
			c.log.Info("took an expired lease", "shard", l.Shard, "from", l.Owner)
		}
		c.start(ctx, taken, taken.token, sent, event)
	}
	held := len(c.running)
	if held >= target || pendingForMe || ctx.Err() != nil {
		return
	}
	// Still short, nothing free: ask the most loaded worker for a lease,
	// one at a time. Asking a worker that has exactly the target only when
	// this one is two short keeps workers from trading leases forever.
	victim, most := "", 0
	for owner, n := range workers {
		if owner != c.s.owner && (n > most || n == most && owner < victim) {
			victim, most = owner, n
		}
	}
	if victim == "" || !(most > target || most == target && held < target-1) {
		return
	}
	for _, l := range eligible {
		if l.Owner != victim || l.Pending != "" {
			continue
		}
		err := c.leases.requestSteal(ctx, l)
		if err == nil {
			c.log.Info("asked for a lease", "shard", l.Shard, "owner", victim, "held", held, "target", target)
			c.s.m.leaseEvents.WithLabelValues(c.group, "steal_request").Inc()
			return
		}
		if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
			c.log.Warn("asking for a lease failed", "shard", l.Shard, "err", err)
		}
		return
	}
}

// start runs a loop for the lease l, held under token since sent.
func (c *consumer) start(ctx context.Context, l Lease, token string, sent time.Time, event string) {
	sctx, cancel := context.WithCancel(ctx)
	w := &shardWorker{shard: l.Shard, token: token, cancel: cancel, handover: make(chan string, 1), done: make(chan struct{}), lastRenew: sent}
	w.extend(sent.Add(c.s.lease))
	c.running[l.Shard] = w
	c.s.m.leaseEvents.WithLabelValues(c.group, event).Inc()
	c.log.Debug("consuming shard", "shard", l.Shard, "checkpoint", l.Checkpoint, "how", event)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.wakeUp()
		defer close(w.done)
		defer cancel()
		defer c.s.m.iteratorAge.DeleteLabelValues(c.group, l.Shard)
		defer c.s.m.lastRead.DeleteLabelValues(c.group, l.Shard)
		if err := c.consumeShard(sctx, w, l.Checkpoint); err != nil {
			c.fail(err)
		}
	}()
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

// consumeShard delivers one shard from pos (a sequence number; "" for the
// oldest record) until ctx ends, the lease goes, or the shard is read to its
// end. It returns an error only for a handler failure or a permanent AWS
// error, which stop the whole Consume.
func (c *consumer) consumeShard(ctx context.Context, w *shardWorker, pos string) error {
	op := fmt.Sprintf("kinesis consume group %q shard %s", c.group, w.shard)
	log := c.log.With("shard", w.shard)
	var iter *string
	b := newBackoff(max(c.s.poll, 50*time.Millisecond), max(c.s.poll, maxBackoff))
	poll := time.NewTimer(0)
	defer poll.Stop()
	failures := 0 // GetRecords failures in a row
	for {
		if ctx.Err() != nil {
			return nil
		}
		select {
		case to := <-w.handover:
			return c.handOver(ctx, w, to)
		default:
		}
		if !w.valid(c.s.now()) {
			log.Warn("lease not renewed in time; stopping the shard until it is held again")
			c.s.m.leaseEvents.WithLabelValues(c.group, "expired_self").Inc()
			return nil
		}
		if iter == nil {
			it, err := c.iterator(ctx, w.shard, pos)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s: %w", op, err)
			}
			iter = it
		}
		out, err := c.s.kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(c.s.maxRecords)}, oneAttempt)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A timeout (the endpoint is frozen or unreachable) is
			// retried with the same iterator, like any transient failure.
			var expiredIter *ktypes.ExpiredIteratorException
			if errors.As(err, &expiredIter) {
				// Idle for 5 minutes (or stopped that long in a handler):
				// start again after the last record processed.
				iter = nil
				continue
			}
			switch classify(err) {
			case permanent:
				return fmt.Errorf("%s: get records: %w", op, err)
			case throttled:
				c.s.m.throttles.WithLabelValues("GetRecords").Inc()
			}
			c.s.m.retries.WithLabelValues("GetRecords").Inc()
			failures++
			c.s.logRetry(failures, "GetRecords failed; retrying", "group", c.group, "shard", w.shard, "err", err)
			if b.wait(ctx) != nil {
				return nil
			}
			continue
		}
		b.reset()
		failures = 0
		behind := aws.ToInt64(out.MillisBehindLatest)
		c.s.m.iteratorAge.WithLabelValues(c.group, w.shard).Set(float64(behind) / 1000)

		if len(out.Records) > 0 {
			batch := toMessages(out.Records, w.shard)
			if !w.valid(c.s.now()) {
				continue // reported at the top of the loop
			}
			start := time.Now()
			hctx, done := c.leaseContext(ctx, w)
			err := c.h(hctx, batch)
			done()
			c.s.m.handlerSeconds.WithLabelValues(c.group).Observe(time.Since(start).Seconds())
			if err != nil {
				if hctx.Err() != nil && isContextErr(err) {
					if ctx.Err() == nil {
						log.Warn("lease not renewed in time while the handler ran; it was cancelled, and the shard stops until it is held again (the batch is delivered again)")
						c.s.m.leaseEvents.WithLabelValues(c.group, "expired_self").Inc()
					}
					return nil // stopping or fenced: the batch is delivered again
				}
				return fmt.Errorf("%s: %w", op, err)
			}
			c.s.m.consumed.WithLabelValues(c.group).Add(float64(len(batch)))
			last := batch[len(batch)-1].Sequence
			if stop, err := c.saveCheckpoint(ctx, w, last); stop || err != nil {
				return err
			}
			pos = last
		}
		c.s.m.lastRead.WithLabelValues(c.group, w.shard).SetToCurrentTime()
		if out.NextShardIterator == nil {
			c.finish(ctx, w)
			return nil
		}
		iter = out.NextShardIterator
		if len(out.Records) > 0 && (len(out.Records) >= int(c.s.maxRecords) || behind > 0) {
			continue // more is waiting
		}
		poll.Reset(c.s.poll)
		select {
		case <-ctx.Done():
			return nil
		case to := <-w.handover:
			return c.handOver(ctx, w, to)
		case <-poll.C:
		}
	}
}

// leaseContext returns the context of one handler call: ctx, cancelled also
// when w's lease validity runs out before the call returns (the owner could
// not renew, so another worker may take the lease and deliver the batch
// again: this one must stop applying it). done releases it.
func (c *consumer) leaseContext(ctx context.Context, w *shardWorker) (_ context.Context, done func()) {
	hctx, cancel := context.WithCancel(ctx)
	returned := make(chan struct{})
	go func() {
		left := func() time.Duration { return time.Duration(w.validUntil.Load() - c.s.now().UnixNano()) }
		t := time.NewTimer(left())
		defer t.Stop()
		for {
			if left() <= 0 {
				cancel()
				return
			}
			t.Reset(left())
			select {
			case <-returned:
				return
			case <-hctx.Done():
				return
			case <-t.C: // renewed meanwhile? look again
			}
		}
	}()
	return hctx, func() { close(returned); cancel() }
}

func (c *consumer) iterator(ctx context.Context, shard, pos string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: c.s.stream, ShardId: aws.String(shard), ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon}
	if pos != "" {
		in.ShardIteratorType = ktypes.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(pos)
	}
	var out *kinesis.GetShardIteratorOutput
	err := c.s.retryOp(ctx, "GetShardIterator", func() (err error) {
		out, err = c.s.kin.GetShardIterator(ctx, in, oneAttempt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get shard iterator after %q: %w", pos, err)
	}
	return out.ShardIterator, nil
}

// ownerWrite runs a write the owner must make even while stopping (a
// checkpoint of a batch the handler accepted, a release, a handover),
// bounded by stopTimeout.
func (c *consumer) ownerWrite(ctx context.Context, write func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	return write(wctx)
}

// saveCheckpoint checkpoints seq. stop reports that the loop must end: the
// lease is gone, the worker crashed, or the write failed (the batch will be
// delivered again); err is set only when Consume is stopping and so cannot
// redeliver it itself.
func (c *consumer) saveCheckpoint(ctx context.Context, w *shardWorker, seq string) (stop bool, err error) {
	if c.crashed() {
		return true, nil
	}
	sent := c.s.now()
	err = c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.checkpoint(ctx, w.shard, w.token, seq) })
	switch {
	case err == nil:
		w.extend(sent.Add(c.s.lease))
		return false, nil
	case errors.Is(err, errLeaseLost):
		c.log.Info("lease lost before checkpoint; the new owner delivers the batch again", "shard", w.shard, "sequence", seq)
		return true, nil
	case ctx.Err() != nil:
		return true, fmt.Errorf("kinesis consume group %q shard %s: checkpoint at %s not saved (the batch will be delivered again): %w", c.group, w.shard, seq, err)
	default:
		c.log.Warn("checkpoint failed; stopping the shard, it starts again from the last checkpoint", "shard", w.shard, "err", err)
		return true, nil
	}
}

// finish checkpoints a shard read to its end and frees its lease, so that
// its children may be consumed.
func (c *consumer) finish(ctx context.Context, w *shardWorker) {
	if c.crashed() {
		return
	}
	err := c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.finish(ctx, w.shard, w.token) })
	switch {
	case err == nil:
		w.finished = true
		c.s.m.leaseEvents.WithLabelValues(c.group, "shard_end").Inc()
		c.log.Info("shard read to its end", "shard", w.shard)
	case errors.Is(err, errLeaseLost):
	default:
		// The next owner reads the (empty) rest again and finishes it.
		c.log.Warn("checkpointing the end of a shard failed", "shard", w.shard, "err", err)
	}
}

// handOver gives the lease to the worker that asked for it; the batch in
// hand is checkpointed already.
func (c *consumer) handOver(ctx context.Context, w *shardWorker, to string) error {
	if c.crashed() {
		return nil
	}
	err := c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.handOver(ctx, w.shard, w.token, to) })
	switch {
	case err == nil:
		c.s.m.leaseEvents.WithLabelValues(c.group, "handover").Inc()
		c.log.Info("handed a lease over", "shard", w.shard, "to", to)
	case errors.Is(err, errLeaseLost):
	default:
		c.log.Warn("handing a lease over failed", "shard", w.shard, "to", to, "err", err)
	}
	return nil
}

// toMessages returns the messages records hold, unpacking packed records
// (see pack.go): the messages of one share its Sequence and are numbered by
// Message.Sub.
func toMessages(records []ktypes.Record, shard string) []streamer.Message {
	msgs := make([]streamer.Message, 0, len(records))
	for _, r := range records {
		m := streamer.Message{
			PartitionKey: aws.ToString(r.PartitionKey),
			Data:         r.Data,
			Shard:        shard,
			Sequence:     aws.ToString(r.SequenceNumber),
			AppendedAt:   aws.ToTime(r.ApproximateArrivalTimestamp),
		}
		datas, ok := unpack(r.Data)
		if !ok {
			msgs = append(msgs, m)
			continue
		}
		for i, d := range datas {
			m.Data, m.Sub = d, i
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// crashKey marks a context whose channel, when closed, makes Consume stop as
// if its process died: no further checkpoint, release or handover. Only
// tests set it (export_test.go).
type crashKey struct{}

func crashSignal(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(crashKey{}).(<-chan struct{})
	return ch
}
