package jobrun

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
// ErrInterrupted; a finished job removes the checkpoint.
func TestRunnerCheckpoint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ckpt.json")
	ckpt, err := Open(path, "test", WorkKey("a"), false)
	if err != nil {
		t.Fatal(err)
	}
	if ckpt.Resuming() || ckpt.Path() != path {
		t.Fatalf("new checkpoint: resuming %v, path %q", ckpt.Resuming(), ckpt.Path())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var finished atomic.Int64
	rn := &Runner{Workers: 1, Checkpoint: ckpt}
	err = rn.Run(ctx, func(ctx context.Context, emit func(Batch) bool) error {
		for i := 0; i < 100; i++ {
			b := Batch{Items: 10, Resume: strconv.Itoa(i + 1), Do: func(context.Context) error {
				if i == 3 {
					cancel() // Ctrl-C while batch 3 is in flight, which still finishes
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
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run: %v, want ErrInterrupted", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st State
	json.Unmarshal(raw, &st)
	if n := finished.Load(); n != 4 || st.Token != "4" || st.Done != 40 {
		t.Errorf("after %d batches: checkpoint %s", finished.Load(), raw)
	}

	// Resume: a new run starts from the token and removes the file at the end.
	ckpt, err = Open(path, "test", WorkKey("a"), false)
	if err != nil || !ckpt.Resuming() || ckpt.Token() != st.Token || ckpt.Done() != 40 {
		t.Fatalf("reopen: %v %+v", err, ckpt)
	}
	rn = &Runner{Workers: 2, Checkpoint: ckpt}
	start, _ := strconv.Atoi(ckpt.Token())
	var done atomic.Int64
	err = rn.Run(context.Background(), func(ctx context.Context, emit func(Batch) bool) error {
		for i := start; i < 100; i++ {
			emit(Batch{Items: 10, Resume: strconv.Itoa(i + 1), Do: func(context.Context) error {
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
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("checkpoint left after a complete run: %v", err)
	}

	// Another job's checkpoint is refused rather than misread; so is a
	// file that is no checkpoint.
	os.WriteFile(path, raw, 0o600)
	if _, err := Open(path, "test", WorkKey("b"), false); !errors.Is(err, ErrOtherWork) {
		t.Errorf("a checkpoint of other work: %v, want ErrOtherWork", err)
	}
	if _, err := Open(path, "other", WorkKey("a"), false); !errors.Is(err, ErrOtherWork) {
		t.Errorf("a checkpoint of another command: %v, want ErrOtherWork", err)
	}
	if c, err := Open(path, "test", WorkKey("b"), true); err != nil || c.Resuming() {
		t.Errorf("restart: %v", err)
	}
	os.WriteFile(path, []byte("not json"), 0o600)
	if _, err := Open(path, "test", WorkKey("a"), false); !errors.Is(err, ErrNotCheckpoint) {
		t.Errorf("a file that is no checkpoint: %v, want ErrNotCheckpoint", err)
	}
}

// TestRunnerFailure: a failing batch stops the job with its error, and no
// batch starts once the failure is recorded. The batches after the failing
// one hold their worker until the job stops, so the bound does not depend on
// how the scheduler treats the failing worker.
func TestRunnerFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	rn := &Runner{Workers: 2}
	var started atomic.Int64
	err := rn.Run(context.Background(), func(ctx context.Context, emit func(Batch) bool) error {
		for i := 0; i < 1000; i++ {
			if !emit(Batch{Items: 1, Do: func(context.Context) error {
				started.Add(1)
				switch {
				case i == 5:
					return boom
				case i > 5:
					select {
					case <-ctx.Done(): // the job stopped
					case <-time.After(10 * time.Second):
						t.Errorf("batch %d: the job did not stop after batch 5 failed", i)
					}
				}
				return nil
			}}) {
				return nil
			}
		}
		return nil
	})
	// Batches 0–5, and at most one held batch per other worker.
	if n := started.Load(); !errors.Is(err, boom) || n > int64(5+rn.Workers) {
		t.Errorf("run: %v after %d batches", err, n)
	}
}

// TestNilCheckpoint: a nil checkpoint resumes nothing and records nothing.
func TestNilCheckpoint(t *testing.T) {
	t.Parallel()
	var c *Checkpoint
	if c.Resuming() || c.Token() != "" || c.Done() != 0 || c.Offset() != 0 || c.Path() != "" {
		t.Error("a nil checkpoint says it has progress")
	}
	if err := c.Save("x", 1, 2, true); err != nil {
		t.Error(err)
	}
	if err := c.Remove(); err != nil {
		t.Error(err)
	}
}

// TestDefaultPath: named by command and key, under the directory given.
func TestDefaultPath(t *testing.T) {
	t.Parallel()
	key := WorkKey("resync", "http://x")
	if got, want := DefaultPath("/ckpt", "resync", key), filepath.Join("/ckpt", "resync-"+key[:16]+".json"); got != want {
		t.Errorf("DefaultPath = %q, want %q", got, want)
	}
	if WorkKey("a", "bc") == WorkKey("ab", "c") {
		t.Error("WorkKey does not separate its parts")
	}
}
