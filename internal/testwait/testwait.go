// Package testwait waits in tests for a condition to hold, instead of
// sleeping for a guessed time, and bounds the calls a test makes (Context).
package testwait

import (
	"context"
	"testing"
	"time"
)

// ContextTimeout is how long a Context lasts.
const ContextTimeout = 30 * time.Second

// Context returns a context that ends ContextTimeout from now, or once tb's
// cleanups have run: a call under it that hangs fails the test, naming the
// call, instead of the whole test binary timing out. Unlike tb.Context it
// still holds while tb's cleanups run, so that they can use it.
func Context(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ContextTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// DefaultTimeout is how long For waits before failing the test.
const DefaultTimeout = 10 * time.Second

// For polls cond every millisecond until it holds, failing tb (naming what
// it waited for) after DefaultTimeout.
func For(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Within(tb, DefaultTimeout, what, cond)
}

// Within is For with its own timeout.
func Within(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Until polls cond every interval until it holds, failing tb after timeout
// with what it waited for and the reason cond last gave for not holding
// (for conditions that cost a request, and whose state explains a failure).
func Until(tb testing.TB, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(interval)
	}
}
