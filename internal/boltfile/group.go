package boltfile

import (
	"sync"

	"go.etcd.io/bbolt"
)

// GroupCommit runs the write transactions of concurrent callers together:
// one bbolt commit (and one pair of fsyncs) for every call that arrived while
// the previous commit was running. Unlike bbolt's DB.Batch it never waits for
// company: a call that finds no commit running starts one at once, so an
// idle file commits with the latency of a lone Update. The stream log's
// checkpoints (every partition of every consumer group, after each batch)
// and a replica's applies (the applier's partitions call ApplyBatch
// concurrently) use it: during a bulk resync their commits become one per
// round, which also leaves the file's write lock free more of the time.
//
// A call's fn may run more than once (in a round that failed because of
// another call's fn, then alone), so it must reset whatever it records.
// Each caller returns only after the commit that contains its fn is durable,
// or with the error of a transaction that committed nothing of its own.
type GroupCommit struct {
	db *bbolt.DB

	mu      sync.Mutex
	pending []*groupCall
	leading bool // a caller is running rounds; new calls queue for it
}

// NewGroupCommit returns a GroupCommit of db's write transactions.
func NewGroupCommit(db *bbolt.DB) *GroupCommit { return &GroupCommit{db: db} }

type groupCall struct {
	fn   func(*bbolt.Tx) error
	done chan groupOutcome // buffered: 1
}

type groupOutcome struct {
	err  error
	lead bool // no result yet: the caller runs the next round itself
	solo bool // its fn failed in a shared round: run it alone
}

func (g *GroupCommit) Update(fn func(*bbolt.Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan groupOutcome, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.leading {
		g.mu.Unlock()
		out := <-c.done
		if !out.lead {
			return g.finish(c, out)
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	// This caller leads: commit everything queued so far (its own call
	// included, unless a previous round already took it), then hand the
	// lead to a caller still waiting, so no caller commits for others for
	// longer than one round.
	g.round()
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.leading = false
	} else {
		// Its own call stays pending: the round it runs takes it.
		g.pending[0].done <- groupOutcome{lead: true}
	}
	g.mu.Unlock()
	return g.finish(c, <-c.done)
}

// finish turns an outcome into the caller's result.
func (g *GroupCommit) finish(c *groupCall, out groupOutcome) error {
	if out.solo {
		return g.db.Update(c.fn)
	}
	return out.err
}

// round commits the calls pending now in one transaction. If a call's fn
// fails, that call is told to run alone and the rest are tried again.
func (g *GroupCommit) round() {
	g.mu.Lock()
	calls := g.pending
	g.pending = nil
	g.mu.Unlock()
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i, c := range calls {
				if err := c.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- groupOutcome{err: err}
			}
			return
		}
		calls[failed].done <- groupOutcome{solo: true}
		calls = append(calls[:failed], calls[failed+1:]...)
	}
}
