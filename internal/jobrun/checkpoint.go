package jobrun

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

// Version is the format of checkpoint files described by State.
const Version = 1

// State is what a checkpoint file holds (JSON):
//
//	{
//	  "version": 1,                  // format
//	  "command": "resync",           // the command that wrote it
//	  "key": "9f2c…",                // SHA-256 of what defines the work (command,
//	                                 // catalog URL, regions, selection, input)
//	  "token": "…",                  // where to continue; its meaning is the command's:
//	                                 //   resync --all, transform, export: the catalog page token
//	                                 //     of the first page not yet done ("" = from the start);
//	                                 //     transform by segment: "segments:" + JSON of each
//	                                 //     segment's page token and whether it is done
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
type State struct {
	Version   int       `json:"version"`
	Command   string    `json:"command"`
	Key       string    `json:"key"`
	Token     string    `json:"token"`
	Offset    int64     `json:"offset,omitempty"`
	Done      int64     `json:"done"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Checkpoint is a checkpoint file. A nil *Checkpoint records nothing and
// resumes nothing. Its methods are not safe for concurrent use (a Runner
// calls them under its lock).
type Checkpoint struct {
	path  string
	state State
	saved time.Time
}

// WorkKey identifies a piece of work, so that a checkpoint is resumed only
// by the same work.
func WorkKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DefaultPath is the checkpoint file of command's work key under dir, or,
// if dir is "", under the user's cache directory's tcsctl/, else ./.tcsctl.
func DefaultPath(dir, command, key string) string {
	if dir == "" {
		if cache, err := os.UserCacheDir(); err == nil && cache != "" {
			dir = filepath.Join(cache, "tcsctl")
		} else {
			dir = ".tcsctl"
		}
	}
	return filepath.Join(dir, command+"-"+key[:16]+".json")
}

// ErrNotCheckpoint and ErrOtherWork are the reasons Open refuses a file
// (test them with errors.Is): one it cannot read as a checkpoint, and one
// that records other work.
var (
	ErrNotCheckpoint = errors.New("not a tcsctl checkpoint")
	ErrOtherWork     = errors.New("belongs to other work")
)

// Open loads the checkpoint at path for command and its work key, or starts
// a new one if there is none (or restart is set: the saved one is then
// replaced at the first save).
func Open(path, command, key string, restart bool) (*Checkpoint, error) {
	c := &Checkpoint{path: path, state: State{Version: Version, Command: command, Key: key}}
	raw, err := safefile.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	case restart:
		return c, nil
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w (%v)", path, ErrNotCheckpoint, err)
	}
	if st.Version != Version || st.Command != command || st.Key != key {
		return nil, fmt.Errorf("checkpoint %s %w (%s, key %.12s…)", path, ErrOtherWork, st.Command, st.Key)
	}
	c.state = st
	return c, nil
}

// Path is the checkpoint's file ("" for a nil Checkpoint).
func (c *Checkpoint) Path() string {
	if c == nil {
		return ""
	}
	return c.path
}

// Resuming reports whether the checkpoint continues earlier work.
func (c *Checkpoint) Resuming() bool { return c != nil && (c.state.Token != "" || c.state.Done > 0) }

// Token is where to continue ("" from the start).
func (c *Checkpoint) Token() string {
	if c == nil {
		return ""
	}
	return c.state.Token
}

// Done is how many items were done before Token.
func (c *Checkpoint) Done() int64 {
	if c == nil {
		return 0
	}
	return c.state.Done
}

// Offset is the byte offset saved with Token (an export's output).
func (c *Checkpoint) Offset() int64 {
	if c == nil {
		return 0
	}
	return c.state.Offset
}

// Save records progress, at most every 200 ms unless force.
func (c *Checkpoint) Save(token string, offset, done int64, force bool) error {
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

// Remove deletes the checkpoint of finished work.
func (c *Checkpoint) Remove() error {
	if c == nil {
		return nil
	}
	if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
