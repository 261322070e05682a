package main

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
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
	deadline := time.Now().Add(30 * time.Second) // heartbeats come every 5 s
	for {
		code, _, body := s.rest(t, "GET", "/metrics", rdr, "")
		if code != http.StatusOK {
			t.Fatalf("metrics: %d", code)
		}
		if value(beats, body) >= 1 {
			if u := value(up, body); u != 1 {
				t.Errorf("tcs_lookup_feed_up = %v after a heartbeat, want 1", u)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no feed heartbeat reached the eu-west-1 lookup server in 30s:\n%v", beats.FindString(body))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
