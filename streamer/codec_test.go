package streamer_test

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/streamer"
)

func codecEvent() *tenant.ChangeEvent {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &tenant.ChangeEvent{TenantID: "acme", Version: 3,
		Tenant:      &tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Status: tenant.StatusActive, Version: 3, UpdatedAt: at, UpdatedBy: "admin"},
		Claims:      []tenant.Claim{{Hostname: "acme.example.com", Version: 1}},
		CommittedAt: at}
}

// TestEventTraceRoundTrip: an event's trace context survives the stream's
// encoding.
func TestEventTraceRoundTrip(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]tenant.TraceContext{
		"traceparent":            {Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"traceparent_tracestate": {Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", State: "vendor=abc,other=1"},
		"none":                   {},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := codecEvent()
			ev.Trace = tc
			b, err := streamer.EncodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := streamer.DecodeEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ev, got); diff != "" {
				t.Errorf("decoded event (-want +got):\n%s", diff)
			}
		})
	}
}

// oldEvent is codecEvent as EncodeEvent wrote it before events carried
// trace context (commit 7e0e70a).
const oldEvent = "0a0461636d6510031a2b0a0461636d65121061636d652e6578616d706c652e636f6d180140034a0608a5ebdcca06520561646d696e22140a1061636d652e6578616d706c652e636f6d1001320608a5ebdcca06"

// TestOldEventDecodes: an event written before trace context existed
// decodes as it did, with no trace context; an untraced event is still
// encoded byte for byte as before, so older readers see nothing new.
func TestOldEventDecodes(t *testing.T) {
	t.Parallel()
	b, err := hex.DecodeString(oldEvent)
	if err != nil {
		t.Fatal(err)
	}
	got, err := streamer.DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(codecEvent(), got); diff != "" {
		t.Errorf("decoded old event (-want +got):\n%s", diff)
	}
	if !got.Trace.IsZero() {
		t.Errorf("old event decoded with trace context %+v", got.Trace)
	}
	now, err := streamer.EncodeEvent(codecEvent())
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(now) != oldEvent {
		t.Errorf("an untraced event encodes as %x, want the old encoding %s", now, oldEvent)
	}
}
