package main

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestFeedHeartbeatsReachLookupServers: each region's applier sends feed
// heartbeats through the in-process hub, and its lookup server counts them
// and reports the feed up.
func TestFeedHeartbeatsReachLookupServers(t *testing.T) {
	t.Parallel()
	s := start(t)
	beats := regexp.MustCompile(`(?m)^tcs_lookup_feed_heartbeats_total\{component="tcs",region="eu-west-1"\} (\S+)$`)
	up := regexp.MustCompile(`(?m)^tcs_lookup_feed_up\{component="tcs",region="eu-west-1"\} (\S+)$`)
	value := func(re *regexp.Regexp, body string) float64 {
		m := re.FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	var body string
	// Heartbeats come every 5 s.
	testwait.Until(t, 30*time.Second, 50*time.Millisecond, "a feed heartbeat to reach the eu-west-1 lookup server", func() (bool, string) {
		var code int
		if code, _, body = s.rest(t, "GET", "/metrics", rdr, ""); code != http.StatusOK {
			t.Fatalf("metrics: %d", code)
		}
		return value(beats, body) >= 1, beats.FindString(body)
	})
	if u := value(up, body); u != 1 {
		t.Errorf("tcs_lookup_feed_up = %v after a heartbeat, want 1", u)
	}
}
