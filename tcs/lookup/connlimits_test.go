package lookup_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// TestMaxConcurrentStreams: a connection carries at most
// ServeOptions.MaxConcurrentStreams calls at once; the next waits (here
// until its deadline) while another connection is served.
func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{MaxConcurrentStreams: 2})
	for range 2 {
		stream, err := e.client.Watch(testwait.Context(t), &tcsv1.WatchRequest{})
		if err == nil {
			_, err = stream.Recv() // its Resync
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(testwait.Context(t), 300*time.Millisecond)
	defer cancel()
	stream, err := e.client.Watch(ctx, &tcsv1.WatchRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a third call on the connection: %v, want it to wait until its deadline", err)
	}
	if _, err := dialFrom(t, e, "127.0.0.2").Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); status.Code(err) != codes.NotFound {
		t.Errorf("a call on another connection: %v, want NOT_FOUND", err)
	}
}

// TestMaxConnectionAge: a connection older than MaxConnectionAge is sent
// GOAWAY, and what still runs on it (a Watch stream) is ended after the
// grace; the client reconnects for its next call.
func TestMaxConnectionAge(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{Keepalive: keepalive.ServerParameters{
		MaxConnectionAge: 200 * time.Millisecond, MaxConnectionAgeGrace: 200 * time.Millisecond,
	}})
	w := openWatch(t, e)
	select {
	case err := <-w.err:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Watch past the connection's age ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a Watch stream outlived MaxConnectionAge + grace by 20 s")
	}
	if _, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: "acme.example.com"}); status.Code(err) != codes.NotFound {
		t.Errorf("a call after the GOAWAY: %v, want NOT_FOUND (on a new connection)", err)
	}
}
