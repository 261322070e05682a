package testwait_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
)

// fatalTB records Fatalf and ends its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a fatalTB on its own goroutine and returns what it
// recorded.
func run(t *testing.T, f func(testing.TB)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(tb)
	}()
	<-done
	return tb.msg
}

func TestUntil(t *testing.T) {
	t.Parallel()
	calls := 0
	if msg := run(t, func(tb testing.TB) {
		testwait.Until(tb, time.Second, time.Millisecond, "the third call", func() (bool, string) {
			calls++
			return calls == 3, "not yet"
		})
	}); msg != "" || calls != 3 {
		t.Errorf("Until of a condition that holds on the third call: failed %q after %d calls", msg, calls)
	}
	msg := run(t, func(tb testing.TB) {
		testwait.Until(tb, 20*time.Millisecond, time.Millisecond, "the impossible", func() (bool, string) { return false, "state 42" })
	})
	if !strings.Contains(msg, "waiting for the impossible") || !strings.Contains(msg, "state 42") {
		t.Errorf("Until that times out: %q, want what it waited for and the last reason", msg)
	}
}

func TestWithin(t *testing.T) {
	t.Parallel()
	start := time.Now()
	msg := run(t, func(tb testing.TB) { testwait.Within(tb, 20*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(msg, "waiting for never") || time.Since(start) < 20*time.Millisecond {
		t.Errorf("Within that times out: %q after %v", msg, time.Since(start))
	}
}

// TestContext: the context ends ContextTimeout from now, and still holds
// while the test's cleanups run.
func TestContext(t *testing.T) {
	t.Parallel()
	var ctxErr error
	t.Run("inner", func(t *testing.T) {
		ctx := testwait.Context(t)
		deadline, ok := ctx.Deadline()
		if left := time.Until(deadline); !ok || left > testwait.ContextTimeout || left < testwait.ContextTimeout-5*time.Second {
			t.Errorf("deadline in %v (%v), want about %v", left, ok, testwait.ContextTimeout)
		}
		t.Cleanup(func() { ctxErr = ctx.Err() })
	})
	if ctxErr != nil {
		t.Errorf("the context had ended when the test's cleanup ran: %v", ctxErr)
	}
}
