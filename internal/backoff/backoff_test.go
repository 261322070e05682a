package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/backoff"
)

func TestDelaysDoubleUpToMax(t *testing.T) {
	t.Parallel()
	for _, spread := range []backoff.Spread{backoff.Around, backoff.UpTo} {
		b := backoff.New(10*time.Millisecond, 75*time.Millisecond, spread)
		ms := time.Millisecond
		for i, d := range []time.Duration{10 * ms, 20 * ms, 40 * ms, 75 * ms, 75 * ms} {
			if got := b.Current(); got != d {
				t.Fatalf("spread %d, wait %d: delay %v, want %v", spread, i, got, d)
			}
			hi := d + d/2
			if spread == backoff.UpTo {
				hi = d + 1
			}
			for range 200 {
				c := *b
				if w := c.Next(); w < d/2 || w >= hi {
					t.Fatalf("spread %d: wait %v around %v, want in [%v, %v)", spread, w, d, d/2, hi)
				}
			}
			b.Next()
		}
		b.Reset()
		if got := b.Current(); got != 10*time.Millisecond {
			t.Errorf("after Reset: delay %v, want the minimum", got)
		}
	}
}

func TestNewBounds(t *testing.T) {
	t.Parallel()
	b := backoff.New(0, 0, backoff.Around)
	if got := b.Current(); got != time.Millisecond {
		t.Errorf("min 0: delay %v, want 1ms", got)
	}
	b = backoff.New(50*time.Millisecond, 10*time.Millisecond, backoff.Around)
	b.Next()
	if got := b.Current(); got != 50*time.Millisecond {
		t.Errorf("max below min: delay %v after a wait, want the minimum 50ms", got)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a cancelled context: %v, want context.Canceled", err)
	}
	if err := backoff.New(time.Hour, time.Hour, backoff.UpTo).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled sleeps took %v", took)
	}
	if err := backoff.Sleep(context.Background(), 0); err != nil {
		t.Errorf("Sleep(0): %v", err)
	}
	if err := backoff.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms): %v", err)
	}
}
