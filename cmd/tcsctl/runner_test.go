package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunnerCheckpoint: the checkpoint moves only past batches done with
// all before them; Ctrl-C lets started batches finish, saves, and says
// errInterrupted; a finished job removes the checkpoint.
func TestRunnerCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := jobFlags{checkpoint: filepath.Join(dir, "ckpt.json")}
	ckpt, err := openCheckpoint(job, "test", workKey("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var finished atomic.Int64
	rn := &runner{workers: 1, ckpt: ckpt}
	err = rn.run(ctx, func(ctx context.Context, emit func(batch) bool) error {
		for i := 0; i < 100; i++ {
			b := batch{items: 10, resume: strconv.Itoa(i + 1), do: func(context.Context) error {
				if i == 3 {
					cancel() // Ctrl-C while batch 3 is in flight, which still finishes
					time.Sleep(20 * time.Millisecond)
				}
				finished.Add(1)
				return nil
			}}
			if !emit(b) {
				return nil
			}
		}
		return nil
	})
	if !errors.Is(err, errInterrupted) {
		t.Fatalf("run: %v, want errInterrupted", err)
	}
	raw, err := os.ReadFile(job.checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	var st checkpointState
	json.Unmarshal(raw, &st)
	if n := finished.Load(); n != 4 || st.Token != "4" || st.Done != 40 {
		t.Errorf("after %d batches: checkpoint %s", finished.Load(), raw)
	}

	// Resume: a new run starts from the token and removes the file at the end.
	ckpt, err = openCheckpoint(job, "test", workKey("a"))
	if err != nil || !ckpt.resuming() || ckpt.token() != st.Token {
		t.Fatalf("reopen: %v %+v", err, ckpt)
	}
	rn = &runner{workers: 2, ckpt: ckpt}
	start, _ := strconv.Atoi(ckpt.token())
	var done atomic.Int64
	err = rn.run(context.Background(), func(ctx context.Context, emit func(batch) bool) error {
		for i := start; i < 100; i++ {
			emit(batch{items: 10, resume: strconv.Itoa(i + 1), do: func(context.Context) error {
				time.Sleep(time.Duration(100-i) * 10 * time.Microsecond) // finish out of order
				done.Add(1)
				return nil
			}})
		}
		return nil
	})
	if err != nil || done.Load() != int64(100-start) {
		t.Fatalf("resumed run: %v, %d batches", err, done.Load())
	}
	if _, err := os.Stat(job.checkpoint); !os.IsNotExist(err) {
		t.Errorf("checkpoint left after a complete run: %v", err)
	}

	// Another job's checkpoint is refused rather than misread.
	os.WriteFile(job.checkpoint, raw, 0o600)
	if _, err := openCheckpoint(job, "test", workKey("b")); err == nil {
		t.Error("a checkpoint of other work was accepted")
	}
	job.restart = true
	if c, err := openCheckpoint(job, "test", workKey("b")); err != nil || c.resuming() {
		t.Errorf("--restart: %v", err)
	}
}

// TestRunnerFailure: a failing batch stops the job with its error.
func TestRunnerFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	rn := &runner{workers: 2}
	var started atomic.Int64
	err := rn.run(context.Background(), func(ctx context.Context, emit func(batch) bool) error {
		for i := 0; i < 1000; i++ {
			if !emit(batch{items: 1, do: func(context.Context) error {
				started.Add(1)
				if i == 5 {
					return boom
				}
				return nil
			}}) {
				return nil
			}
		}
		return nil
	})
	if !errors.Is(err, boom) || started.Load() > 20 {
		t.Errorf("run: %v after %d batches", err, started.Load())
	}
}
