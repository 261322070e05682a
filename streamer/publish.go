package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/internal/spanctx"
)

// errLeaseLost ends the publish spans of entries dropped because the
// publisher lost their shard's lease (another publisher appends them).
var errLeaseLost = errors.New("outbox shard lease lost; another publisher appends the entry")

// Outbox is what the publisher needs of the source of truth: a sharded
// outbox (see catalog.Store), each shard read after a position and
// acknowledged up to an entry on its own.
type Outbox interface {
	OutboxShards() int
	OutboxHeads(ctx context.Context) ([]uint64, error)
	ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error)
	AckOutbox(ctx context.Context, shard int, upTo uint64) error
}

// ShardLeases tells a Publisher which outbox shards are its to publish,
// when several publishers share the outbox (streamer/publease). A nil
// PublisherConfig.Leases holds every shard for ever: a single publisher
// (the embedded catalog allows no other).
type ShardLeases interface {
	// Keep takes and renews leases until ctx ends, then releases them.
	// The Publisher runs it and ends it once it stopped publishing.
	Keep(ctx context.Context) error
	// Held returns the shards held now, in order.
	Held() []int
	// Epoch returns the epoch of the current holding of shard (it changes
	// with every take) and whether the shard is held now. The Publisher
	// asks before it appends a shard's entries (same epoch as when they
	// were read) and before it acknowledges them (held).
	Epoch(shard int) (uint64, bool)
}

// allShards is the ShardLeases of a publisher alone: every shard, held for
// ever.
type allShards struct{ shards []int }

func (a allShards) Keep(ctx context.Context) error { <-ctx.Done(); return nil }
func (a allShards) Held() []int                    { return a.shards }
func (a allShards) Epoch(int) (uint64, bool)       { return 1, true }

// maxShardCalls caps the outbox reads (or acknowledgements) of one batch
// that run at once, one per shard.
const maxShardCalls = 8

// OutboxNotifier is an optional capability of an Outbox: a channel closed
// when new entries may be waiting, so that the publisher wakes at once
// rather than at its next poll. The channel is taken before each read.
type OutboxNotifier interface {
	OutboxChanged() <-chan struct{}
}

// OutboxCounter is an optional capability of an Outbox: how many entries
// wait in it (counted up to max) and the commit time of the oldest, for the
// depth gauges. Both catalog stores have it.
type OutboxCounter interface {
	OutboxDepth(ctx context.Context, max int) (int, time.Time, error)
}

// DefaultDepthInterval is PublisherConfig.DepthInterval's default.
const DefaultDepthInterval = 15 * time.Second

// maxDepthCount caps an outbox count: on DynamoDB a count reads the
// entries' keys, so a huge backlog is reported as at least this.
const maxDepthCount = 100_000

// DefaultPublishBatch is PublisherConfig.BatchSize's default. With the
// embedded stream's 8 partitions an append of 2048 gives each about 256
// events, the most one apply batch takes: in BenchmarkResyncPipeline it
// resyncs 3.5 times as many tenants per second as appends of 256 did.
const DefaultPublishBatch = 2048

// DefaultMaxPollInterval is PublisherConfig.MaxPollInterval's default: the
// most an idle publisher adds to a change's way to the regions, for a fifth
// of the reads of polling every 10 ms (the DynamoDB catalog has no
// notifications, so every poll is a Query).
const DefaultMaxPollInterval = 50 * time.Millisecond

// maxPublishBackoff caps the publisher's waits between retries: low, so
// that once the outbox's store or the stream heals the backlog moves within
// about a second (the convergence target after a fault is 5 s), and one
// publisher trying once a second costs an ailing service nothing.
const maxPublishBackoff = time.Second

// PublisherConfig wires a Publisher.
type PublisherConfig struct {
	Outbox Outbox
	Stream Stream
	// Leases are this publisher's outbox shard leases, shared with other
	// publishers; nil means every shard (the only publisher).
	Leases ShardLeases
	// BatchSize is how many outbox entries one append carries; 0 means
	// DefaultPublishBatch. An append is spread over the stream's partitions,
	// and appliers commit what one partition got: big appends keep a flood
	// of events (tcsctl resync --all) in big, cheap apply batches.
	BatchSize int
	// PollInterval is the wait before an outbox found empty is read again;
	// 0 means 10ms. Each further empty read in a row doubles the wait, up
	// to MaxPollInterval, and a read that finds entries starts again from
	// PollInterval: a busy outbox is followed closely, an idle one costs
	// the store a read per MaxPollInterval rather than per PollInterval.
	// An Outbox that is an OutboxNotifier wakes the publisher sooner.
	PollInterval time.Duration
	// MaxPollInterval caps that wait; 0 means DefaultMaxPollInterval (or
	// PollInterval, if that is longer).
	MaxPollInterval time.Duration
	// DepthInterval is how often the outbox is counted for
	// tcs_publish_outbox_depth and tcs_publish_outbox_oldest_seconds (an
	// Outbox that is an OutboxCounter); 0 means DefaultDepthInterval,
	// negative never.
	DepthInterval time.Duration
	// RetryBackoff is the first wait after a failed read, append or ack; it
	// doubles up to 1 s (maxPublishBackoff). 0 means 100ms.
	RetryBackoff time.Duration
	Logger       *slog.Logger
	// Registerer receives the publisher's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// TracerProvider makes the "publish" span of each traced change (an
	// outbox entry that carries a trace context): the child of the catalog
	// write's span, from the read of its outbox entry until the append that
	// carries it succeeded. The event is appended with the publish span's
	// context, so that each region's "apply" span is its child. nil means
	// no spans (the trace context is passed on as it is).
	TracerProvider trace.TracerProvider
}

// Publisher moves committed changes from the outbox to the stream. An outbox
// entry is acknowledged only after the append that carries it succeeded, so
// a publisher killed at any point republishes, on restart, every change it
// had not acknowledged (at least once; appliers are idempotent).
type Publisher struct {
	cfg       PublisherConfig
	log       *slog.Logger
	tracer    trace.Tracer // nil without a TracerProvider
	published prometheus.Counter
	failures  prometheus.Counter
	lag       prometheus.Gauge
	failedLog logevery.Limiter

	// lastCommit is the commit time of the last event appended (a gauge
	// in Unix seconds); lastRead when the outbox was last read without
	// error, empty or not (Unix nanoseconds, 0 before the first).
	lastCommit prometheus.Gauge
	lastRead   atomic.Int64
	// pending holds the batches read and not yet appended, oldest first,
	// for the pending gauges.
	pendingMu sync.Mutex
	pending   []pendingBatch

	// depth is the last outbox count; oldestInOutbox the commit time of
	// the oldest entry it found (Unix nanoseconds, 0 when empty).
	depth          prometheus.Gauge
	oldestInOutbox atomic.Int64
}

// measureDepth counts the outbox every DepthInterval until ctx ends. A
// failed count leaves the gauges as they were (the failure shows in the
// publisher's other signals: reads fail too).
func (p *Publisher) measureDepth(ctx context.Context, c OutboxCounter) {
	for {
		mctx, cancel := context.WithTimeout(ctx, p.cfg.DepthInterval)
		n, oldest, err := c.OutboxDepth(mctx, maxDepthCount)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.log.Debug("counting the outbox failed", "err", err)
		default:
			p.depth.Set(float64(n))
			if n == 0 {
				oldest = time.Time{}
			}
			var at int64
			if !oldest.IsZero() {
				at = oldest.UnixNano()
			}
			p.oldestInOutbox.Store(at)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.cfg.DepthInterval):
		}
	}
}

// pendingBatch is a batch read from the outbox and not yet appended.
type pendingBatch struct {
	id     uint64
	oldest time.Time // commit time of its oldest entry
	n      int
}

// readOK notes a successful outbox read, and the batch it gave if any.
func (p *Publisher) readOK(b publishBatch) {
	p.lastRead.Store(time.Now().UnixNano())
	if len(b.records) == 0 {
		return
	}
	p.pendingMu.Lock()
	p.pending = append(p.pending, pendingBatch{id: b.id, oldest: b.oldest, n: len(b.records)})
	p.pendingMu.Unlock()
}

// appended notes that batch id (and every batch before it) is stored in
// the stream.
func (p *Publisher) appended(id uint64) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	i := 0
	for i < len(p.pending) && p.pending[i].id <= id {
		i++
	}
	p.pending = p.pending[i:]
}

// pendingState returns how many events are read and not yet appended, and
// the commit time of the oldest (zero if none).
func (p *Publisher) pendingState() (int, time.Time) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	n := 0
	for _, b := range p.pending {
		n += b.n
	}
	if n == 0 {
		return 0, time.Time{}
	}
	return n, p.pending[0].oldest
}

// warn logs a failure that is retried in backoff, at most every 10 s (a
// long outage retried every second is a few lines, not one a second).
func (p *Publisher) warn(err error, backoff time.Duration) {
	if n, ok := p.failedLog.Allow(time.Now()); ok {
		p.log.Warn("publish failed; retrying", "err", err, "in", backoff, "failures_since_last_warning", n)
	}
}

// NewPublisher returns a Publisher for cfg.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultPublishBatch
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.MaxPollInterval <= 0 {
		cfg.MaxPollInterval = DefaultMaxPollInterval
	}
	cfg.MaxPollInterval = max(cfg.MaxPollInterval, cfg.PollInterval)
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	if cfg.DepthInterval == 0 {
		cfg.DepthInterval = DefaultDepthInterval
	}
	if cfg.Leases == nil {
		all := allShards{shards: make([]int, cfg.Outbox.OutboxShards())}
		for i := range all.shards {
			all.shards[i] = i
		}
		cfg.Leases = all
	}
	p := &Publisher{cfg: cfg, log: cfg.Logger}
	if cfg.TracerProvider != nil {
		p.tracer = spanctx.Tracer(cfg.TracerProvider)
	}
	p.failedLog.Every = feedLogEvery
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_publish_events_total", Help: "Change events appended to the stream.",
	})
	p.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_publish_failures_total", Help: "Failed outbox reads, appends or acknowledgements (each retried).",
	})
	p.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_publish_lag_seconds", Help: "Age (now - commit time) of the last change published.",
	})
	p.lastCommit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_publish_last_commit_timestamp_seconds", Help: "Commit time of the last change appended to the stream (Unix seconds). A region whose tcs_apply_last_commit_timestamp_seconds trails it is behind.",
	})
	pendingEvents := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_publish_pending_events", Help: "Outbox entries read and not yet appended to the stream (the publisher reads at most two batches ahead, so a longer backlog shows as tcs_publish_oldest_pending_seconds).",
	}, func() float64 {
		n, _ := p.pendingState()
		return float64(n)
	})
	oldestPending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_publish_oldest_pending_seconds", Help: "Age (now - commit time) of the oldest outbox entry read and not yet appended; 0 when none. Grows while appends fail or hang.",
	}, func() float64 {
		_, oldest := p.pendingState()
		if oldest.IsZero() {
			return 0
		}
		return time.Since(oldest).Seconds()
	})
	lastRead := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_publish_last_read_timestamp_seconds", Help: "When the outbox was last read without error, empty or not (Unix seconds; 0 before the first read). Stops advancing while reads fail, or while appends hang (the publisher reads at most two batches ahead).",
	}, func() float64 {
		return float64(p.lastRead.Load()) / 1e9
	})
	p.depth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_publish_outbox_depth", Help: "Outbox entries not yet acknowledged (written by the catalog and not yet in the stream, or appended and not yet acknowledged), counted every DepthInterval (15 s by default) up to 100,000.",
	})
	oldestInOutbox := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_publish_outbox_oldest_seconds", Help: "Age (now - commit time) of the oldest outbox entry at the last count; 0 when the outbox was empty. Grows while nothing is published.",
	}, func() float64 {
		at := p.oldestInOutbox.Load()
		if at == 0 {
			return 0
		}
		return time.Since(time.Unix(0, at)).Seconds()
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(p.published, p.failures, p.lag, p.lastCommit, pendingEvents, oldestPending, lastRead, p.depth, oldestInOutbox)
	}
	return p
}

// Run publishes until ctx ends, retrying failures with backoff. It returns
// nil when ctx ends.
//
// Run overlaps the three steps of a batch: while one batch is appended,
// the next is read and encoded, and the acknowledgement of the last one
// appended commits in the background. Reads continue after the last entry
// read rather than after the last one acknowledged, so acknowledgements may
// trail; they only ever name an entry whose append succeeded (and every
// entry before it), and appends keep the outbox's order, retrying a failed
// batch until it is stored before the next one goes. A publisher killed
// anywhere republishes what it had not acknowledged, as PublishOnce does.
//
// With Leases, Run publishes only the shards it holds, and keeps the leases
// until it stopped (so that a clean stop acknowledges what it appended
// before another publisher takes its shards).
func (p *Publisher) Run(ctx context.Context) error {
	leaseCtx, endLeases := context.WithCancel(context.WithoutCancel(ctx))
	leasesDone := make(chan struct{})
	go func() {
		defer close(leasesDone)
		if err := p.cfg.Leases.Keep(leaseCtx); err != nil {
			p.log.Error("keeping the outbox shard leases failed", "err", err)
		}
	}()
	defer func() {
		endLeases()
		<-leasesDone
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan publishBatch, 1)
	acks := make(chan shardSeqs, 1)
	var wg sync.WaitGroup
	wg.Go(func() { p.ack(ctx, acks) })
	if c, ok := p.cfg.Outbox.(OutboxCounter); ok && p.cfg.DepthInterval > 0 {
		wg.Go(func() { p.measureDepth(ctx, c) })
	}
	wg.Go(func() {
		defer close(acks)
		p.appendAll(ctx, batches, acks)
	})
	p.read(ctx, batches)
	cancel()
	wg.Wait()
	return nil
}

// shardSeqs maps outbox shards to sequences.
type shardSeqs map[int]uint64

// merge raises each of m's sequences to o's where o's is higher.
func (m shardSeqs) merge(o shardSeqs) {
	for sh, seq := range o {
		m[sh] = max(m[sh], seq)
	}
}

// publishBatch is a batch of outbox entries, encoded for the stream.
type publishBatch struct {
	id        uint64 // counts the batches read, from 1
	records   []Record
	shards    []int          // records[i] is of outbox shard shards[i]
	epochs    map[int]uint64 // per shard: the lease epoch it was read under
	last      shardSeqs      // per shard: sequence of the last entry
	read      shardSeqs      // per shard: the position reading continues after
	committed time.Time      // commit time of the newest entry
	oldest    time.Time      // commit time of the oldest entry
	spans     []trace.Span   // the publish spans of its traced entries
}

// endSpans ends the publish spans of b: appended, or not (err, e.g. the
// publisher stopped or lost the shard's lease; the entry is published again
// later, under a new span).
func (b *publishBatch) endSpans(err error) {
	for _, sp := range b.spans {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
	b.spans = nil
}

// read reads and encodes batches after the last entry read and hands them
// to appendAll, until ctx ends. An empty outbox is read again at the next
// poll (see PublisherConfig.PollInterval) or notification.
func (p *Publisher) read(ctx context.Context, out chan<- publishBatch) {
	defer close(out)
	backoff := p.cfg.RetryBackoff
	poll := p.cfg.PollInterval
	notifier, _ := p.cfg.Outbox.(OutboxNotifier)
	pos := make([]uint64, p.cfg.Outbox.OutboxShards())
	known := map[int]uint64{} // per shard: the lease epoch pos is of
	var id uint64
	for {
		var changed <-chan struct{} // nil: wait for the poll only
		if notifier != nil {
			changed = notifier.OutboxChanged()
		}
		held := map[int]uint64{}
		for _, sh := range p.cfg.Leases.Held() {
			e, ok := p.cfg.Leases.Epoch(sh)
			if !ok || sh < 0 || sh >= len(pos) {
				continue
			}
			if known[sh] != e {
				// Newly held: read from its first entry not acknowledged
				// (another publisher may have appended and not acked it;
				// appending it again is harmless).
				pos[sh], known[sh] = 0, e
			}
			held[sh] = e
		}
		if len(held) == 0 {
			// Standby: nothing to read until a lease is taken.
			timer := time.NewTimer(p.cfg.MaxPollInterval)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		b, err := p.readBatch(ctx, pos, held)
		if err == nil {
			id++
			b.id = id
			p.readOK(b)
			for sh, seq := range b.read {
				pos[sh] = max(pos[sh], seq)
			}
		}
		wait := poll
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.failures.Inc()
			p.warn(err, backoff)
			wait, backoff = backoff, min(2*backoff, maxPublishBackoff)
			changed = nil // back off even if writes continue
		case len(b.records) > 0:
			backoff, poll = p.cfg.RetryBackoff, p.cfg.PollInterval
			select {
			case out <- b:
			case <-ctx.Done():
				b.endSpans(ctx.Err())
				return
			}
			continue // more may be waiting
		default:
			backoff = p.cfg.RetryBackoff
			poll = min(2*poll, p.cfg.MaxPollInterval)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-changed:
			timer.Stop()
		}
	}
}

// readBatch reads up to BatchSize entries after the positions pos (one per
// shard): it reads the shards' heads, then the shards whose head is past
// their position, up to maxShardCalls at a time, each for an equal share
// of the batch. Entries keep their shard's order (all of a tenant's are in
// one shard), shards follow one another. A shard read to its end moves its
// position to the head read before it (what lies between was acknowledged
// already), so that it is not read again until a write moves its head.
//
// Only the shards of held are read (shard → lease epoch); the batch keeps
// their epochs.
func (p *Publisher) readBatch(ctx context.Context, pos []uint64, held map[int]uint64) (publishBatch, error) {
	heads, err := p.cfg.Outbox.OutboxHeads(ctx)
	if err != nil {
		return publishBatch{}, fmt.Errorf("read outbox heads: %w", err)
	}
	if len(heads) != len(pos) {
		return publishBatch{}, fmt.Errorf("read outbox heads: %d heads for %d shards", len(heads), len(pos))
	}
	var dirty []int
	for sh, head := range heads {
		if _, ok := held[sh]; ok && head > pos[sh] {
			dirty = append(dirty, sh)
		}
	}
	b := publishBatch{last: shardSeqs{}, read: shardSeqs{}, epochs: map[int]uint64{}}
	if len(dirty) == 0 {
		return b, nil
	}
	share := (p.cfg.BatchSize + len(dirty) - 1) / len(dirty)
	got := make([][]catalog.OutboxEntry, len(dirty))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxShardCalls)
	for i, sh := range dirty {
		g.Go(func() error {
			entries, err := p.cfg.Outbox.ReadOutbox(gctx, sh, pos[sh], share)
			if err != nil {
				return fmt.Errorf("read outbox shard %d: %w", sh, err)
			}
			got[i] = entries
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return publishBatch{}, err
	}
	var entries []catalog.OutboxEntry
	for i, sh := range dirty {
		es := got[i]
		entries = append(entries, es...)
		for range es {
			b.shards = append(b.shards, sh)
		}
		b.epochs[sh] = held[sh]
		if len(es) > 0 {
			b.last[sh] = es[len(es)-1].Seq
			b.read[sh] = b.last[sh]
		}
		if len(es) < share {
			b.read[sh] = max(b.read[sh], heads[sh])
		}
	}
	if len(entries) == 0 {
		return b, nil
	}
	if b.records, b.spans, err = p.encodeEntries(ctx, entries); err != nil {
		return publishBatch{}, err
	}
	b.oldest, b.committed = entries[0].Event.CommittedAt, entries[0].Event.CommittedAt
	for _, e := range entries[1:] {
		if at := e.Event.CommittedAt; at.Before(b.oldest) {
			b.oldest = at
		} else if at.After(b.committed) {
			b.committed = at
		}
	}
	return b, nil
}

// appendAll appends each batch in order, retrying one that fails until it
// is stored, and then asks for its acknowledgement.
func (p *Publisher) appendAll(ctx context.Context, in <-chan publishBatch, acks chan shardSeqs) {
	first := true
	for b := range in {
		backoff := p.cfg.RetryBackoff
		for {
			if !p.fence(&b) {
				b.endSpans(errLeaseLost)
				break // no shard of the batch is held any more
			}
			err := p.cfg.Stream.Append(ctx, b.records)
			if err == nil {
				b.endSpans(nil)
				break
			}
			if ctx.Err() != nil {
				b.endSpans(err)
				return
			}
			for _, sp := range b.spans {
				sp.AddEvent("append failed", trace.WithAttributes(attribute.String("error", err.Error())))
			}
			p.failures.Inc()
			p.warn(fmt.Errorf("append %d events: %w", len(b.records), err), backoff)
			if !sleep(ctx, backoff) {
				b.endSpans(ctx.Err())
				return
			}
			backoff = min(2*backoff, maxPublishBackoff)
		}
		p.appended(b.id)
		if len(b.records) == 0 {
			continue
		}
		p.published.Add(float64(len(b.records)))
		p.lag.Set(time.Since(b.committed).Seconds())
		p.lastCommit.Set(float64(b.committed.UnixNano()) / 1e9)
		if first {
			// How long a restart took to resume, and the backlog it found.
			p.log.Info("first append since start", "events", len(b.records), "lag", time.Since(b.committed).Round(time.Millisecond))
			first = false
		}
		// Acknowledgements coalesce: one not yet taken is merged into the
		// newer one.
		upTo := shardSeqs{}
		upTo.merge(b.last)
		select {
		case older := <-acks:
			upTo.merge(older)
		default:
		}
		acks <- upTo
	}
}

// fence drops from b the entries of shards whose lease this publisher no
// longer holds under the epoch they were read in, and reports whether any
// remain.
func (p *Publisher) fence(b *publishBatch) bool {
	lost := map[int]bool{}
	for sh, e := range b.epochs {
		if now, ok := p.cfg.Leases.Epoch(sh); !ok || now != e {
			lost[sh] = true
		}
	}
	if len(lost) == 0 {
		return len(b.records) > 0
	}
	keep := 0
	for i := range b.records {
		if !lost[b.shards[i]] {
			b.records[keep], b.shards[keep] = b.records[i], b.shards[i]
			keep++
		}
	}
	b.records, b.shards = b.records[:keep], b.shards[:keep]
	for sh := range lost {
		delete(b.epochs, sh)
		delete(b.last, sh)
	}
	p.log.Debug("dropped the entries of shards whose lease was lost", "shards", len(lost), "kept", keep)
	return keep > 0
}

// ack acknowledges the sequences appendAll sends, retrying failures until
// ctx ends, and returns when acks is closed. A call is not cut off when ctx
// ends (it gets ackGrace more), so that a clean stop leaves acknowledged
// what was appended and republishes nothing.
func (p *Publisher) ack(ctx context.Context, acks <-chan shardSeqs) {
	backoff := p.cfg.RetryBackoff
	for upTo := range acks {
		for {
			err := p.ackOnce(ctx, upTo)
			if err == nil || ctx.Err() != nil {
				backoff = p.cfg.RetryBackoff
				break
			}
			p.failures.Inc()
			p.warn(err, backoff)
			select {
			case newer, ok := <-acks:
				if !ok {
					return
				}
				upTo.merge(newer) // acking again what was acked is harmless
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, maxPublishBackoff)
		}
	}
}

// ackGrace is how long an acknowledgement may run on once Run is stopping.
const ackGrace = 5 * time.Second

func (p *Publisher) ackOnce(ctx context.Context, upTo shardSeqs) error {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(ackGrace, cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	defer stop()
	held := shardSeqs{}
	for sh, seq := range upTo {
		if _, ok := p.cfg.Leases.Epoch(sh); ok {
			held[sh] = seq
		}
	}
	return ackShards(actx, p.cfg.Outbox, held)
}

// ackShards acknowledges each shard of upTo up to its sequence, up to
// maxShardCalls at a time.
func ackShards(ctx context.Context, o Outbox, upTo shardSeqs) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxShardCalls)
	for sh, seq := range upTo {
		g.Go(func() error {
			if err := o.AckOutbox(gctx, sh, seq); err != nil {
				return fmt.Errorf("ack outbox shard %d up to %d: %w", sh, seq, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// PublishOnce reads one batch from the outbox (from the start of every
// shard, leased or not: it is for a publisher alone), appends it to the
// stream and acknowledges it. It returns how many entries it published.
func (p *Publisher) PublishOnce(ctx context.Context) (int, error) {
	all := map[int]uint64{}
	for sh := range p.cfg.Outbox.OutboxShards() {
		all[sh] = 1
	}
	b, err := p.readBatch(ctx, make([]uint64, p.cfg.Outbox.OutboxShards()), all)
	if err != nil {
		return 0, err
	}
	if len(b.records) == 0 {
		return 0, nil
	}
	if err := p.cfg.Stream.Append(ctx, b.records); err != nil {
		err = fmt.Errorf("append %d events: %w", len(b.records), err)
		b.endSpans(err)
		return 0, err
	}
	b.endSpans(nil)
	if err := ackShards(ctx, p.cfg.Outbox, b.last); err != nil {
		return 0, err
	}
	p.published.Add(float64(len(b.records)))
	p.lag.Set(time.Since(b.committed).Seconds())
	return len(b.records), nil
}

// encodeEntries encodes the entries' events as stream records. With a
// tracer, each entry that carries a trace context gets a "publish" span, the
// child of that context, and its event is encoded with the span's context
// instead; the spans are returned for the caller to end once the records
// are appended.
func (p *Publisher) encodeEntries(ctx context.Context, entries []catalog.OutboxEntry) ([]Record, []trace.Span, error) {
	records := make([]Record, len(entries))
	var spans []trace.Span
	for i := range entries {
		ev := &entries[i].Event
		if p.tracer != nil && !ev.Trace.IsZero() {
			_, sp := spanctx.Start(ctx, p.tracer, ev.Trace, "publish", trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithAttributes(attribute.String("tcs.tenant.id", ev.TenantID), attribute.Int64("tcs.tenant.version", ev.Version),
					attribute.Int("tcs.outbox.shard", entries[i].Shard), attribute.Int64("tcs.outbox.seq", int64(entries[i].Seq))))
			if sc := sp.SpanContext(); sc.IsValid() {
				traced := *ev
				traced.Trace = spanctx.Of(sc)
				ev = &traced
			}
			spans = append(spans, sp)
		}
		data, err := EncodeEvent(ev)
		if err != nil {
			// A committed change that cannot be encoded is a bug; stop here
			// rather than skip it, so that nothing is lost silently.
			err = fmt.Errorf("outbox shard %d entry %d: %w", entries[i].Shard, entries[i].Seq, err)
			(&publishBatch{spans: spans}).endSpans(err)
			return nil, nil, err
		}
		records[i] = Record{PartitionKey: ev.TenantID, Data: data}
	}
	return records, spans, nil
}
