package client

import (
	"testing"
	"time"
)

func TestHedgerAdapts(t *testing.T) {
	t.Parallel()
	h := newHedger(DefaultHedgeDelay, false)
	for i := range 200 {
		d := 5 * time.Millisecond
		if i%100 == 0 {
			d = time.Second // outliers above the p95
		}
		h.observe(d)
	}
	if got := h.get(); got != 5*time.Millisecond {
		t.Errorf("adaptive delay %v, want the p95, 5ms", got)
	}
	for range 256 {
		h.observe(time.Microsecond)
	}
	if got := h.get(); got != minHedgeDelay {
		t.Errorf("adaptive delay %v, want the floor %v", got, minHedgeDelay)
	}
	fixed := newHedger(30*time.Millisecond, true)
	for range 256 {
		fixed.observe(time.Millisecond)
	}
	if got := fixed.get(); got != 30*time.Millisecond {
		t.Errorf("fixed delay moved to %v", got)
	}
}
