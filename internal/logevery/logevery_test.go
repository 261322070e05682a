package logevery

import (
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	l := Limiter{Every: 10 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at       time.Duration
		wantOK   bool
		wantHeld int
	}{
		{0, true, 0},            // the first is logged
		{time.Second, false, 0}, // within the interval: held
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, // an interval later: logged, with the 2 held
		{11 * time.Second, false, 0},
		{time.Minute, true, 1},
	}
	for _, s := range steps {
		held, ok := l.Allow(t0.Add(s.at))
		if ok != s.wantOK || held != s.wantHeld {
			t.Errorf("at %v: Allow = %d, %v; want %d, %v", s.at, held, ok, s.wantHeld, s.wantOK)
		}
	}
}
