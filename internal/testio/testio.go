// Package testio has small I/O helpers for tests: a buffer a logger and the
// test can share, and an atomic file replacement (what an operator's
// deploy does to a credentials or certificate file before a SIGHUP).
package testio

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a logger) and
// readers (the test).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Count returns how many times substr was written so far.
func (s *SyncBuffer) Count(substr string) int {
	return strings.Count(s.String(), substr)
}

// ReplaceFile replaces to with a copy of from, atomically (a new 0600 file
// renamed over it), failing tb on error.
func ReplaceFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		tb.Fatal(err)
	}
}
