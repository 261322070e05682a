package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testio"
)

// started is a tcs process run in the test: its gRPC address and its log.
type started struct {
	addr   string
	stderr *testio.SyncBuffer
	stop   func() error
}

// startTCS runs tcs with args and getenv (nil: no environment) and waits
// until it listens. stop ends it and returns what run returned (failing the
// test if it does not stop within 15 s); the test's cleanup calls it too.
func startTCS(t *testing.T, args []string, getenv func(string) string) started {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	s := started{stderr: &testio.SyncBuffer{}}
	go func() { done <- runWithReady(ctx, args, getenv, io.Discard, s.stderr, ready) }()
	select {
	case s.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("tcs exited: %v\n%s", err, s.stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("tcs did not start\n%s", s.stderr.String())
	}
	var stopped bool
	var result error
	s.stop = func() error {
		t.Helper()
		if stopped {
			return result
		}
		stopped = true
		cancel()
		select {
		case result = <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("tcs did not stop")
		}
		return result
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("tcs: %v", err)
		}
	})
	return s
}
