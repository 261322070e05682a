package jobrun

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/time/rate"
)

// ErrInterrupted is returned by a job stopped by its context (Ctrl-C,
// SIGTERM) after it finished the batches in flight and saved its
// checkpoint.
var ErrInterrupted = errors.New("interrupted")

// Batch is one unit of a job's work: done by one worker, counted as Items
// for the rate limit and progress, and recorded in the checkpoint (as
// Resume, with Offset) once it and every batch before it are done.
type Batch struct {
	Items  int
	Resume string
	Offset int64
	// Do does the work. Its context is not cancelled when the job stops:
	// a batch started runs to its end.
	Do func(ctx context.Context) error
}

// Runner runs a job's batches on a pool of workers under a rate limit, with
// progress and a checkpoint. Its zero value runs one worker with no limit,
// no progress and no checkpoint.
//
// Stopping: when the job's context is cancelled (Ctrl-C), no new batch is
// started, batches already started run to the end with a context that is
// not cancelled (a request is never cut off half way), the checkpoint is
// saved, and Run returns ErrInterrupted. A batch that fails stops the job
// the same way and Run returns its error.
type Runner struct {
	// Workers is how many batches run at once; less than 1 means 1.
	Workers int
	// Limiter bounds items per second; nil means no limit.
	Limiter *rate.Limiter
	// Progress shows items done; nil shows nothing. Run stops it.
	Progress *Progress
	// Checkpoint records how far the job got; nil records nothing.
	Checkpoint *Checkpoint
}

// NewLimiter returns a limiter of perSecond items (0: none) that lets
// batches of up to burst items through at once.
func NewLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
}

// Run calls produce, which emits batches in order until it runs out (and
// returns nil) or emit returns false (the job is stopping). It returns nil
// when every batch is done, and then removes the checkpoint.
func (r *Runner) Run(ctx context.Context, produce func(ctx context.Context, emit func(Batch) bool) error) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()

	type queued struct {
		seq int
		Batch
	}
	queue := make(chan queued)
	var (
		mu       sync.Mutex
		firstErr error
		finished = map[int]queued{}
		next     int // the first batch not yet done
		done     = r.Checkpoint.Done()
		token    = r.Checkpoint.Token()
		offset   int64
	)
	offset = r.Checkpoint.Offset()
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
			done += int64(f.Items)
			token, offset = f.Resume, f.Offset
			advanced = true
		}
		if advanced {
			if err := r.Checkpoint.Save(token, offset, done, false); err != nil && firstErr == nil {
				firstErr = err
				stop()
			}
		}
	}

	var wg sync.WaitGroup
	for range max(r.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range queue {
				if stopCtx.Err() != nil {
					continue // stopping: do not start it
				}
				if r.Limiter != nil {
					if err := r.Limiter.WaitN(stopCtx, min(q.Items, r.Limiter.Burst())); err != nil {
						continue
					}
				}
				if err := q.Do(workCtx); err != nil {
					fail(err)
					continue
				}
				r.Progress.Add(q.Items)
				complete(q)
			}
		}()
	}

	seq := 0
	perr := produce(stopCtx, func(b Batch) bool {
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
	r.Progress.Stop()

	mu.Lock()
	err := firstErr
	mu.Unlock()
	if err == nil && perr != nil && !(errors.Is(perr, context.Canceled) && ctx.Err() != nil) {
		err = perr
	}
	if err == nil && ctx.Err() != nil {
		err = ErrInterrupted
	}
	if err != nil {
		save := func() error { return r.Checkpoint.Save(token, offset, done, true) }
		if done == 0 && token == "" {
			save = r.Checkpoint.Remove // nothing done: nothing to resume
		}
		if serr := save(); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	return r.Checkpoint.Remove()
}
