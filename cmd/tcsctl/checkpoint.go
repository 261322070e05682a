package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tcs-dev/tcs/internal/safefile"
)

// checkpointVersion is the format of checkpoint files described below.
const checkpointVersion = 1

// checkpointState is what a checkpoint file holds (JSON):
//
//	{
//	  "version": 1,                  // format
//	  "command": "resync",           // the command that wrote it
//	  "key": "9f2c…",                // SHA-256 of what defines the work (command,
//	                                 // catalog URL, regions, selection, input)
//	  "token": "…",                  // where to continue; its meaning is the command's:
//	                                 //   resync --all, transform, export: the catalog page token
//	                                 //     of the first page not yet done ("" = from the start)
//	                                 //   resync --tenant/--file: index of the first id not yet done
//	                                 //   backfill: number of input lines done
//	  "offset": 0,                   // export: bytes of the output already written
//	  "done": 12000,                 // items done before token, for progress
//	  "updated_at": "2026-11-27T21:40:00Z"
//	}
//
// Work is handed out in batches and finishes out of order; the checkpoint
// moves only past the longest run of finished batches from the start, so
// resuming may redo a few batches (every command's writes are idempotent:
// a resync re-emits, a transform re-evaluates its condition, a backfill
// skips a tenant that already exists with the same document).
type checkpointState struct {
	Version   int       `json:"version"`
	Command   string    `json:"command"`
	Key       string    `json:"key"`
	Token     string    `json:"token"`
	Offset    int64     `json:"offset,omitempty"`
	Done      int64     `json:"done"`
	UpdatedAt time.Time `json:"updated_at"`
}

// checkpoint is a checkpoint file. A nil *checkpoint records nothing.
type checkpoint struct {
	path  string
	state checkpointState
	saved time.Time
}

// workKey identifies a piece of work, so that a checkpoint is resumed only
// by the same work.
func workKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// defaultCheckpointPath is under dir (TCS_CHECKPOINT_DIR), else the
// user's cache directory, else ./.tcsctl, named by command and work key.
func defaultCheckpointPath(dir, command, key string) string {
	if dir == "" {
		if cache, err := os.UserCacheDir(); err == nil && cache != "" {
			dir = filepath.Join(cache, "tcsctl")
		} else {
			dir = ".tcsctl"
		}
	}
	return filepath.Join(dir, command+"-"+key[:16]+".json")
}

// openCheckpoint loads the checkpoint for command and key, or starts a new
// one. The job's --checkpoint is the path: "" for the default path, "off"
// for none (a nil checkpoint); --restart discards a saved one.
func openCheckpoint(job jobFlags, command, key string) (*checkpoint, error) {
	if job.checkpoint == "off" {
		return nil, nil
	}
	path, restart := job.checkpoint, job.restart
	if path == "" {
		path = defaultCheckpointPath(job.checkpointDir, command, key)
	}
	c := &checkpoint{path: path, state: checkpointState{Version: checkpointVersion, Command: command, Key: key}}
	raw, err := safefile.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	case restart:
		return c, nil
	}
	var st checkpointState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: not a tcsctl checkpoint (%v); remove it or pass --restart", path, err)
	}
	if st.Version != checkpointVersion || st.Command != command || st.Key != key {
		return nil, fmt.Errorf("checkpoint %s belongs to other work (%s, key %.12s…): remove it, pass --restart, or choose another --checkpoint", path, st.Command, st.Key)
	}
	c.state = st
	return c, nil
}

// resuming reports whether the checkpoint continues earlier work.
func (c *checkpoint) resuming() bool { return c != nil && (c.state.Token != "" || c.state.Done > 0) }

func (c *checkpoint) token() string {
	if c == nil {
		return ""
	}
	return c.state.Token
}

func (c *checkpoint) done() int64 {
	if c == nil {
		return 0
	}
	return c.state.Done
}

// save records progress, at most every 200 ms unless force.
func (c *checkpoint) save(token string, offset, done int64, force bool) error {
	if c == nil {
		return nil
	}
	c.state.Token, c.state.Offset, c.state.Done = token, offset, done
	now := time.Now()
	if !force && now.Sub(c.saved) < 200*time.Millisecond {
		return nil
	}
	c.saved = now
	c.state.UpdatedAt = now.UTC()
	raw, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return err
	}
	// A new temporary file (0600, O_EXCL) renamed over the path: a file or
	// symbolic link someone placed there is replaced, never written through.
	if err := safefile.WriteAtomic(c.path, append(raw, '\n')); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// remove deletes the checkpoint of finished work.
func (c *checkpoint) remove() error {
	if c == nil {
		return nil
	}
	if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
