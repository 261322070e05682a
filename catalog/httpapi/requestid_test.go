package httpapi

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/internal/testio"
)

// Every response carries X-Request-Id: the caller's if sane, else a fresh
// one; the request's log line names it.
func TestRequestID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, inbound string
		kept          bool
	}{
		{"none sent", "", false},
		{"sane id kept", "7f3c2a10-5b7e-4f7a-9d1e-2a8b3c4d5e6f", true},
		{"too long replaced", strings.Repeat("a", 129), false},
		{"control characters replaced", "abc\x01level=ERROR", false},
		{"space replaced", "a b", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs testio.SyncBuffer
			h := newHarnessConfig(t, func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			hdr := map[string]string{}
			if c.inbound != "" {
				hdr["X-Request-Id"] = c.inbound
			}
			res := h.mustDo(call{method: http.MethodGet, path: "/v1/tenants", token: readerToken, header: hdr}, http.StatusOK)
			got := res.header.Get("X-Request-Id")
			switch {
			case c.kept && got != c.inbound:
				t.Errorf("X-Request-Id = %q, want the inbound %q echoed", got, c.inbound)
			case !c.kept && (got == "" || got == c.inbound || len(got) != 32):
				t.Errorf("X-Request-Id = %q, want a fresh 32-character id (inbound %q)", got, c.inbound)
			}
			if n := logs.Count("request_id=" + got + " "); n != 1 {
				t.Errorf("log lines naming request_id=%s: %d, want 1; logs:\n%s", got, n, logs.String())
			}
		})
	}
}

// Two requests without ids get different ones; a failure's "request
// failed" line names its id too.
func TestRequestIDOnFailureLine(t *testing.T) {
	t.Parallel()
	var logs testio.SyncBuffer
	h := newHarnessConfig(t, func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	a := h.mustDo(call{method: http.MethodGet, path: "/v1/tenants", token: readerToken}, http.StatusOK).header.Get("X-Request-Id")
	b := h.mustDo(call{method: http.MethodGet, path: "/v1/tenants", token: readerToken}, http.StatusOK).header.Get("X-Request-Id")
	if a == b {
		t.Errorf("two requests got the same id %q", a)
	}
	h.store.Close() // every store call now fails: 500 or 503 and a "request failed" line
	res := h.do(call{method: http.MethodGet, path: "/v1/tenants", token: readerToken})
	if res.status < 500 {
		t.Fatalf("status %d with the store closed, want 5xx", res.status)
	}
	id := res.header.Get("X-Request-Id")
	for _, msg := range []string{"msg=\"request failed\" request_id=" + id, "msg=request request_id=" + id} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("no line %q; logs:\n%s", msg, logs.String())
		}
	}
}

// Scrapes and probes that succeed are logged at debug: absent at info,
// present at debug. Other requests are logged at info.
func TestProbesLoggedAtDebug(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			t.Parallel()
			var logs testio.SyncBuffer
			h := newHarnessConfig(t, func(cfg *Config) {
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
			})
			for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
				h.mustDo(call{method: http.MethodGet, path: p}, http.StatusOK)
			}
			h.mustDo(call{method: http.MethodGet, path: "/v1/tenants", token: readerToken}, http.StatusOK)
			probes := logs.Count("path=/metrics") + logs.Count("path=/healthz") + logs.Count("path=/readyz")
			want := 0
			if level == slog.LevelDebug {
				want = 3
			}
			if probes != want {
				t.Errorf("probe lines at level %v: %d, want %d; logs:\n%s", level, probes, want, logs.String())
			}
			if n := logs.Count("level=INFO msg=request"); n != 1 {
				t.Errorf("INFO request lines: %d, want 1 (the tenant list); logs:\n%s", n, logs.String())
			}
		})
	}
}
