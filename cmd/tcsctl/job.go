package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// openCheckpoint opens the checkpoint of command's work key as the job's
// flags say: --checkpoint is its path ("" for the default path, under
// TCS_CHECKPOINT_DIR if set; "off" for none, a nil checkpoint), --restart
// discards a saved one.
func openCheckpoint(job jobFlags, command, key string) (*jobrun.Checkpoint, error) {
	if job.checkpoint == "off" {
		return nil, nil
	}
	path := job.checkpoint
	if path == "" {
		path = jobrun.DefaultPath(job.checkpointDir, command, key)
	}
	c, err := jobrun.Open(path, command, key, job.restart)
	switch {
	case errors.Is(err, jobrun.ErrNotCheckpoint):
		return nil, fmt.Errorf("%w; remove it or pass --restart", err)
	case errors.Is(err, jobrun.ErrOtherWork):
		return nil, fmt.Errorf("%w: remove it, pass --restart, or choose another --checkpoint", err)
	}
	return c, err
}

// retry calls f until it succeeds, fails with an error that is not
// retryable (httpclient.Retryable), or attempts run out, backing off
// between attempts.
func retry(ctx context.Context, attempts int, f func() error) error {
	wait := backoff.New(100*time.Millisecond, 3*time.Second, backoff.UpTo)
	for i := 1; ; i++ {
		err := f()
		if err == nil || i >= attempts || !httpclient.Retryable(err) {
			return err
		}
		if wait.Wait(ctx) != nil {
			return err
		}
	}
}
