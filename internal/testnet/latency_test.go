package testnet_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/internal/testnet"
)

// TestLatencyProxy: a request reaches the upstream no sooner than the delay
// after it was sent, with its body, and its answer comes back; requests are
// counted by X-Amz-Target.
func TestLatencyProxy(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Target", r.Header.Get("X-Amz-Target"))
		io.WriteString(w, "echo "+string(b))
	}))
	t.Cleanup(up.Close)
	const delay = 50 * time.Millisecond
	p := testnet.NewLatencyProxy(t, up.URL, delay)
	send := func(target, body string) (string, time.Duration) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.URL()+"/", strings.NewReader(body))
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		start := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Seen-Target") != target {
			t.Fatalf("%s: status %d, upstream saw target %q", target, res.StatusCode, res.Header.Get("X-Seen-Target"))
		}
		return string(b), time.Since(start)
	}
	for _, target := range []string{"DynamoDB_20120810.GetItem", "DynamoDB_20120810.TransactWriteItems", "DynamoDB_20120810.GetItem", ""} {
		got, took := send(target, "hello")
		if got != "echo hello" {
			t.Errorf("%s: answer %q, want %q", target, got, "echo hello")
		}
		if took < delay {
			t.Errorf("%s: answered after %v, before the %v delay", target, took, delay)
		}
	}
	want := map[string]int64{"DynamoDB_20120810.GetItem": 2, "DynamoDB_20120810.TransactWriteItems": 1, "POST": 1}
	if diff := cmp.Diff(want, p.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	p.ResetCalls()
	if got := p.Calls(); len(got) != 0 {
		t.Errorf("calls after reset: %v", got)
	}
}

// TestLatencyProxyHoldsConcurrently: the delay is per request, not a queue:
// the upstream sees n requests at once (it answers none until all n have
// arrived), as callers of a remote service would.
func TestLatencyProxyHoldsConcurrently(t *testing.T) {
	t.Parallel()
	const n = 8
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		select {
		case <-all:
			io.WriteString(w, "ok")
		case <-time.After(20 * time.Second):
			http.Error(w, "the other requests never arrived", http.StatusGatewayTimeout)
		}
	}))
	t.Cleanup(up.Close)
	p := testnet.NewLatencyProxy(t, up.URL, 100*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			res, err := http.Post(p.URL()+"/", "text/plain", nil)
			if err != nil {
				errs <- err.Error()
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				errs <- res.Status
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestLatencyProxyBadUpstream: an upstream that is not an http:// URL is
// refused, naming it.
func TestLatencyProxyBadUpstream(t *testing.T) {
	t.Parallel()
	ft := &fatalTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		testnet.NewLatencyProxy(ft, "127.0.0.1:8000", 0)
	}()
	if !strings.Contains(ft.msg, `"127.0.0.1:8000"`) {
		t.Errorf("fatal message %q does not name the upstream", ft.msg)
	}
}

// fatalTB records Fatalf's message and stops the caller by panicking.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
