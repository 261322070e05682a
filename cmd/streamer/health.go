package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Defaults of the health bounds.
const (
	defaultReadyMaxAge = 30 * time.Second
	defaultLiveMaxAge  = 10 * time.Minute
)

// health answers /healthz and /readyz from what the streamer's own metrics
// say about its work loop, so that the probes and the alerts read the same
// signals:
//
//   - publish: the outbox was last read without error (empty or not) at
//     tcs_publish_last_read_timestamp_seconds. On AWS, where publishers
//     share the outbox's shards through leases, that holds for a publisher
//     holding tcs_publish_leases_held > 0 leases; one holding none is a
//     standby, ready while it reads the lease table
//     (tcs_publish_lease_scan_timestamp_seconds), since it takes over the
//     shards of a publisher that dies. So two publishers are both ready,
//     and a rolling update or a PodDisruptionBudget counts the standby.
//   - apply on Kinesis: the worker holds tcs_kinesis_leases_held shard leases
//     of its consumer group, and a held shard was last read (and its batch
//     handled) at the newest tcs_kinesis_last_read_timestamp_seconds; a batch
//     whose apply keeps failing holds it back.
//   - apply on the embedded stream: the process owns the stream file (bbolt
//     locks it), so it holds all the work from the start.
//
// Ready: it holds work and its last successful cycle is at most readyMaxAge
// old. Alive: its loop has made progress within liveMaxAge (0: always
// alive); a publisher before its first read counts from its start, and an
// applier that holds no lease has nothing to make progress on.
type health struct {
	gather      prometheus.Gatherer
	cmd         string // publish or apply
	group       string // apply's consumer group
	leases      bool   // apply reads leased shards (Kinesis); publish shares leased outbox shards
	readyMaxAge time.Duration
	liveMaxAge  time.Duration
	started     time.Time
	now         func() time.Time
}

// state is what the metrics say: whether the streamer holds work, and when
// its loop last completed a cycle (zero: never).
func (h *health) state() (holds bool, last time.Time, err error) {
	families, err := h.gather.Gather()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("gather metrics: %w", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	newest := func(name string, match func(*dto.Metric) bool) time.Time {
		var max float64
		if f := byName[name]; f != nil {
			for _, m := range f.GetMetric() {
				if match(m) && m.GetGauge().GetValue() > max {
					max = m.GetGauge().GetValue()
				}
			}
		}
		if max <= 0 {
			return time.Time{}
		}
		return time.Unix(0, int64(max*1e9))
	}
	all := func(*dto.Metric) bool { return true }
	inGroup := func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "group" {
				return l.GetValue() == h.group
			}
		}
		return false
	}
	switch {
	case h.cmd == "publish" && !h.leases:
		return true, newest("tcs_publish_last_read_timestamp_seconds", all), nil
	case h.cmd == "publish":
		var held float64
		if f := byName["tcs_publish_leases_held"]; f != nil {
			for _, m := range f.GetMetric() {
				held += m.GetGauge().GetValue()
			}
		}
		if held > 0 {
			return true, newest("tcs_publish_last_read_timestamp_seconds", all), nil
		}
		// A standby: its work is to be ready to take over.
		return true, newest("tcs_publish_lease_scan_timestamp_seconds", all), nil
	case !h.leases:
		return true, h.now(), nil
	}
	var held float64
	if f := byName["tcs_kinesis_leases_held"]; f != nil {
		for _, m := range f.GetMetric() {
			if inGroup(m) {
				held += m.GetGauge().GetValue()
			}
		}
	}
	return held > 0, newest("tcs_kinesis_last_read_timestamp_seconds", inGroup), nil
}

// ready returns nil when the streamer holds work and cycled recently, else
// why not.
func (h *health) ready(context.Context) error {
	holds, last, err := h.state()
	switch {
	case err != nil:
		return err
	case !holds:
		return fmt.Errorf("holds no shard lease of %s", h.group)
	case last.IsZero():
		return fmt.Errorf("%s has not completed a cycle yet", h.cmd)
	}
	if age := h.now().Sub(last); age > h.readyMaxAge {
		return fmt.Errorf("last successful %s %v ago, over --ready-max-age %v", h.cycle(), age.Round(time.Second), h.readyMaxAge)
	}
	return nil
}

// alive returns nil while the loop makes progress, else why not.
func (h *health) alive(context.Context) error {
	if h.liveMaxAge <= 0 {
		return nil
	}
	holds, last, err := h.state()
	switch {
	case err != nil:
		return err
	case !holds:
		return nil
	case last.IsZero():
		last = h.started
	}
	if age := h.now().Sub(last); age > h.liveMaxAge {
		return fmt.Errorf("no successful %s for %v, over --live-max-age %v", h.cycle(), age.Round(time.Second), h.liveMaxAge)
	}
	return nil
}

func (h *health) cycle() string {
	if h.cmd == "publish" {
		return "outbox read"
	}
	return "read of a held shard"
}
