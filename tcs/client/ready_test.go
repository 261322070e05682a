package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
)

func TestWaitReady(t *testing.T) {
	t.Parallel()
	r := startRegion(t, "eu-west-1")
	c, err := client.New(testwait.Context(t), client.WithRegions(r.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(testwait.Context(t)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if !c.Watching() {
		t.Error("WaitReady returned but Watching() is false")
	}
	// Ready already: at once, even with a context that has ended.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitReady(ended); err != nil {
		t.Errorf("WaitReady when ready, ctx ended: %v, want nil", err)
	}

	// The stream goes down with its region: not ready until it is back.
	r.down()
	testwait.For(t, "the watch stream to go down", func() bool { return !c.Watching() })
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady with the region down: %v, want DeadlineExceeded", err)
	}
	r.start(t)
	if err := c.WaitReady(testwait.Context(t)); err != nil {
		t.Fatalf("WaitReady after the region came back: %v", err)
	}
}

func TestWaitReadyNeverReady(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	c, err := client.New(testwait.Context(t), client.WithRegions("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until a stream has failed, so the error can say why.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady: %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "watch stream is not up (last failure: ") {
		t.Errorf("WaitReady: %q, want it to name the watch stream's last failure", err)
	}
}

func TestWaitReadyClosed(t *testing.T) {
	t.Parallel()
	c, err := client.New(testwait.Context(t), client.WithRegions("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.WaitReady(context.Background()) }()
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("WaitReady on a closed client: %v, want ErrClosed", err)
		}
	case <-testwait.Context(t).Done():
		t.Fatal("WaitReady did not return when the client was closed")
	}
}
