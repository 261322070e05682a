package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tcs-dev/tcs/catalog/httpclient"
)

// errInterrupted is returned by a job stopped by Ctrl-C (or SIGTERM) after
// it finished the requests in flight and saved its checkpoint.
var errInterrupted = errors.New("interrupted")

// batch is one unit of a job's work: done by one worker, counted as items
// for the rate limit and progress, and recorded in the checkpoint (as
// resume, with offset) once it and every batch before it are done.
type batch struct {
	items  int
	resume string
	offset int64
	do     func(ctx context.Context) error
}

// runner runs a job's batches on a pool of workers under a rate limit, with
// progress and a checkpoint.
//
// Stopping: when the job's context is cancelled (Ctrl-C), no new batch is
// started, batches already started run to the end with a context that is
// not cancelled (a request is never cut off half way), the checkpoint is
// saved, and run returns errInterrupted. A batch that fails stops the job
// the same way and run returns its error.
type runner struct {
	workers  int
	limiter  *rate.Limiter // per item; nil: no limit
	progress *progress
	ckpt     *checkpoint
}

// newLimiter returns a limiter of perSecond items (0: none) that lets
// batches of up to burst items through at once.
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
}

// run calls produce, which emits batches in order until it runs out (and
// returns nil) or emit returns false (the job is stopping). It returns nil
// when every batch is done.
func (r *runner) run(ctx context.Context, produce func(ctx context.Context, emit func(batch) bool) error) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()

	type queued struct {
		seq int
		batch
	}
	queue := make(chan queued)
	var (
		mu       sync.Mutex
		firstErr error
		finished = map[int]queued{}
		next     int // the first batch not yet done
		done     = r.ckpt.done()
		token    = r.ckpt.token()
		offset   int64
	)
	if r.ckpt != nil {
		offset = r.ckpt.state.Offset
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		stop()
	}
	complete := func(q queued) {
		mu.Lock()
		defer mu.Unlock()
		finished[q.seq] = q
		advanced := false
		for {
			f, ok := finished[next]
			if !ok {
				break
			}
			delete(finished, next)
			next++
			done += int64(f.items)
			token, offset = f.resume, f.offset
			advanced = true
		}
		if advanced {
			if err := r.ckpt.save(token, offset, done, false); err != nil && firstErr == nil {
				firstErr = err
				stop()
			}
		}
	}

	var wg sync.WaitGroup
	for range max(r.workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range queue {
				if stopCtx.Err() != nil {
					continue // stopping: do not start it
				}
				if r.limiter != nil {
					if err := r.limiter.WaitN(stopCtx, min(q.items, r.limiter.Burst())); err != nil {
						continue
					}
				}
				if err := q.do(workCtx); err != nil {
					fail(err)
					continue
				}
				r.progress.add(q.items)
				complete(q)
			}
		}()
	}

	seq := 0
	perr := produce(stopCtx, func(b batch) bool {
		select {
		case queue <- queued{seq, b}:
			seq++
			return true
		case <-stopCtx.Done():
			return false
		}
	})
	close(queue)
	wg.Wait()
	r.progress.stop()

	mu.Lock()
	err := firstErr
	mu.Unlock()
	if err == nil && perr != nil && !(errors.Is(perr, context.Canceled) && ctx.Err() != nil) {
		err = perr
	}
	if err == nil && ctx.Err() != nil {
		err = errInterrupted
	}
	if err != nil {
		save := func() error { return r.ckpt.save(token, offset, done, true) }
		if done == 0 && token == "" {
			save = r.ckpt.remove // nothing done: nothing to resume
		}
		if serr := save(); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	return r.ckpt.remove()
}

// retry calls f until it succeeds, fails with an error that is not
// retryable, or attempts run out, backing off between attempts.
func retry(ctx context.Context, attempts int, f func() error) error {
	backoff := 100 * time.Millisecond
	for i := 1; ; i++ {
		err := f()
		if err == nil || i >= attempts || !httpclient.Retryable(err) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(backoff*2, 3*time.Second)
	}
}
