//go:build linux

package chaos

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Report is what a run found, as written to report.json and report.md.
type Report struct {
	Variant         string        `json:"variant"`
	Started         time.Time     `json:"started"`
	DurationSeconds float64       `json:"duration_seconds"`
	Regions         []string      `json:"regions"`
	CacheTTLSeconds float64       `json:"cache_ttl_seconds"`
	LogDir          string        `json:"log_dir"`
	Totals          Totals        `json:"totals"`
	Faults          []FaultReport `json:"faults"`
	Thresholds      Thresholds    `json:"thresholds"`
	// Violations lists every bound exceeded; empty means the run passed.
	Violations []string `json:"violations"`
	// TimingViolations counts those of Violations that are timing bounds
	// (a fault's convergence time, a reader's availability while a process
	// was killed, the replication lag while SNS/SQS was frozen), as opposed
	// to the safety ones (writes lost or divergent,
	// regressions, resurrections, regions differing, a fault that never
	// converged, ...). See TimingOnly.
	TimingViolations int `json:"timing_violations"`

	// writes is the writer's log, written to writes.json.
	writes *writeLog
	// failures are failed lookups per fault, written to failures.json.
	failures []FaultFailures
}

// FaultFailures are a fault's failed lookups, as failures.json lists them:
// up to maxFailureSamples per reader, in the order they began, each with
// its error's message and what the reader had got for the hostname before
// (Sample.Detail and Sample.Prev).
type FaultFailures struct {
	Fault string `json:"fault"`
	// Failed counts every failed lookup per reader; NeverAnswered those of
	// hostnames the reader never had an answer for before.
	Failed        map[string]int `json:"failed"`
	NeverAnswered map[string]int `json:"never_answered"`
	Samples       []Sample       `json:"samples"`
}

// maxFailureSamples bounds the failed lookups failures.json lists per
// reader and fault.
const maxFailureSamples = 30

// writeLog is writes.json: every acknowledged write and every request.
type writeLog struct {
	Acknowledged []Ack          `json:"acknowledged"`
	Requests     []WriteAttempt `json:"requests"`
}

// Totals are the whole run's counts.
type Totals struct {
	WriteAttempts            int            `json:"write_attempts"`
	AcknowledgedWrites       int            `json:"acknowledged_writes"`
	WriteErrors              map[string]int `json:"write_errors"`
	Lookups                  int            `json:"lookups"`
	LostWrites               int            `json:"lost_writes"`
	DivergentWrites          int            `json:"divergent_writes"`
	RegionMismatches         int            `json:"region_mismatches"`
	Resurrections            int            `json:"resurrections"`
	ClientVersionRegressions int            `json:"client_version_regressions"`
	RegionVersionRegressions int            `json:"region_version_regressions"`
	VerifyClean              bool           `json:"verify_clean"`
	VerifyOutput             string         `json:"verify_output,omitempty"`
	NotRecovered             []string       `json:"not_recovered,omitempty"`
	FinalConvergeSeconds     float64        `json:"final_converge_seconds"`
	FinalConverged           bool           `json:"final_converged"`
	CatalogError             string         `json:"catalog_error,omitempty"`
	// Examples of each finding (at most 20 each).
	Examples map[string][]string `json:"examples,omitempty"`
}

// FaultReport is one fault's table.
type FaultReport struct {
	Name            string             `json:"name"`
	Kind            string             `json:"kind"`
	Start           time.Time          `json:"start"`
	WindowSeconds   float64            `json:"window_seconds"`
	RecoverSeconds  float64            `json:"recover_seconds"`
	ConvergeSeconds float64            `json:"converge_seconds"`
	Converged       bool               `json:"converged"`
	Unconverged     []string           `json:"unconverged,omitempty"`
	InjectError     string             `json:"inject_error,omitempty"`
	Crashed         []string           `json:"crashed,omitempty"`
	HealError       string             `json:"heal_error,omitempty"`
	Readers         []ReaderReport     `json:"readers"`
	Writes          WriteReport        `json:"writes"`
	LagP99Seconds   map[string]float64 `json:"lag_p99_seconds"`
	Violations      []string           `json:"violations,omitempty"`
	// Timing counts those of Violations that are timing bounds.
	Timing int `json:"timing_violations,omitempty"`
}

// TimingOnly reports whether the run exceeded some bounds and all of them
// are timing bounds: the run was slow somewhere, but nothing it checked
// went wrong.
func (r *Report) TimingOnly() bool {
	return len(r.Violations) > 0 && r.TimingViolations == len(r.Violations)
}

// ReaderReport is one reader's lookups during a fault (from its injection
// until the faulty part served again).
type ReaderReport struct {
	Reader             string  `json:"reader"`
	Kind               string  `json:"kind"`
	Region             string  `json:"region"`
	Lookups            int     `json:"lookups"`
	Answered           int     `json:"answered"`
	Availability       float64 `json:"availability"`
	RecentLookups      int     `json:"recent_lookups"`
	RecentAnswered     int     `json:"recent_answered"`
	RecentAvailability float64 `json:"recent_availability"`
	Stale              int     `json:"stale"`
	MaxStaleAgeSeconds float64 `json:"max_stale_age_seconds"`
	// Outdated: answers not marked stale about a tenant of which a newer
	// version had been acknowledged before the lookup began; the largest
	// time since that acknowledgement.
	Outdated           int            `json:"outdated"`
	MaxOutdatedSeconds float64        `json:"max_outdated_seconds"`
	Errors             map[string]int `json:"errors,omitempty"`
}

// WriteReport is the writer's requests during a fault.
type WriteReport struct {
	Attempts          int            `json:"attempts"`
	OK                int            `json:"ok"`
	Errors            map[string]int `json:"errors,omitempty"`
	MaxLatencySeconds float64        `json:"max_latency_seconds"`
	// Hung: no answer within dynamodb_freeze.catalog_answer_within_seconds.
	Hung int `json:"hung"`
	// NoRetryAfter: 503 answers without a Retry-After header.
	NoRetryAfter int `json:"no_retry_after,omitempty"`
}

const maxExamples = 20

func addExample(m map[string][]string, key, format string, args ...any) {
	if len(m[key]) < maxExamples {
		m[key] = append(m[key], fmt.Sprintf(format, args...))
	}
}

// Analyse builds the report of a run and checks it against th.
func Analyse(r *Run, th Thresholds, logDir string) *Report {
	rep := &Report{
		Variant: r.Config.Variant, Started: r.Started, DurationSeconds: r.Ended.Sub(r.Started).Seconds(),
		Regions: r.Topology.Regions, CacheTTLSeconds: r.Config.CacheTTL.Seconds(), LogDir: logDir, Thresholds: th,
	}
	tot := &rep.Totals
	tot.Examples = map[string][]string{}
	acks := r.Writer.Acks()
	attempts := r.Writer.Attempts()
	tot.WriteAttempts, tot.AcknowledgedWrites = len(attempts), len(acks)
	rep.writes = &writeLog{Acknowledged: acks, Requests: attempts}
	tot.WriteErrors = map[string]int{}
	for _, a := range attempts {
		if !a.OK {
			tot.WriteErrors[a.Status]++
		}
	}

	// Acknowledged writes against the catalog.
	byTenant := map[string][]Ack{}
	for _, a := range acks {
		byTenant[a.ID] = append(byTenant[a.ID], a)
	}
	unknown := r.Writer.UnknownAfterAck()
	tot.CatalogError = r.Final.CatalogErr
	for id, as := range byTenant {
		last := slices.MaxFunc(as, func(a, b Ack) int { return cmp.Compare(a.Version, b.Version) })
		c, ok := r.Final.Catalog[id]
		switch {
		case r.Final.CatalogErr != "":
		case !ok || c.Version < last.Version:
			tot.LostWrites++
			addExample(tot.Examples, "lost", "%s: acknowledged v%d, catalog has v%d (present %v)", id, last.Version, c.Version, ok)
		case last.Deleted && !c.Deleted:
			tot.Resurrections++
			addExample(tot.Examples, "resurrected", "%s: delete acknowledged at v%d, catalog has it live at v%d", id, last.Version, c.Version)
		case c.Version == last.Version && !last.Deleted && (c.Deleted || !sameSet(c.Hostnames, last.Hostnames) || !maps.Equal(c.Labels, last.Labels)):
			tot.DivergentWrites++
			addExample(tot.Examples, "divergent", "%s v%d: acknowledged hostnames %v labels %v, catalog %v %v deleted %v", id, last.Version, last.Hostnames, last.Labels, c.Hostnames, c.Labels, c.Deleted)
		case c.Version > last.Version && !unknown[id]:
			tot.DivergentWrites++
			addExample(tot.Examples, "divergent", "%s: catalog has v%d, last acknowledged v%d and no write of unknown outcome followed it", id, c.Version, last.Version)
		}
	}
	tot.RegionMismatches = len(r.Final.RegionMismatches)
	for _, m := range r.Final.RegionMismatches {
		addExample(tot.Examples, "region_mismatch", "%s", m)
	}
	tot.VerifyClean = r.Final.VerifyClean
	if !tot.VerifyClean {
		tot.VerifyOutput = r.Final.VerifyOutput
	}
	tot.NotRecovered = r.Final.NotRecovered
	tot.FinalConvergeSeconds, tot.FinalConverged = r.Final.FinalConverge.Seconds(), r.Final.FinalConvergedOK

	// Every answer: resurrections, regressions, outdated answers.
	ackIndex := map[string][]Ack{} // by version
	for id, as := range byTenant {
		s := slices.Clone(as)
		slices.SortFunc(s, func(a, b Ack) int { return cmp.Compare(a.Version, b.Version) })
		ackIndex[id] = s
	}
	outdatedAge := func(s Sample) (time.Duration, bool) {
		for _, a := range ackIndex[s.TenantID] {
			if a.Version > s.Version {
				if a.At.Before(s.Start) {
					return s.Start.Sub(a.At), true
				}
				return 0, false
			}
		}
		return 0, false
	}
	samples := map[*Reader][]Sample{}
	for _, rd := range r.Readers {
		ss := rd.Samples()
		samples[rd] = ss
		tot.Lookups += len(ss)
		for _, s := range ss {
			if c, ok := r.Final.Catalog[s.TenantID]; ok && s.Outcome == OK && c.Deleted && s.Version >= c.Version {
				tot.Resurrections++
				addExample(tot.Examples, "resurrected", "%s at %s: %s answered %s v%d, deleted at v%d", rd.Name, s.Start.Format(time.StampMilli), s.Host, s.TenantID, s.Version, c.Version)
			}
		}
		// The client promises monotonic reads per tenant, whatever the
		// hostname; a region's node caches per hostname (each entry is
		// invalidated on its own), so there a regression is one
		// hostname answering an older version of its tenant.
		perHost := rd.Kind != "client"
		n := regressions(ss, perHost, func(format string, args ...any) { addExample(tot.Examples, "regression", rd.Name+": "+format, args...) })
		if rd.Kind == "client" {
			tot.ClientVersionRegressions += n
		} else {
			tot.RegionVersionRegressions += n
		}
	}

	lag := r.Lag.Samples()
	attemptsIn := func(from, to time.Time) []WriteAttempt {
		var out []WriteAttempt
		for _, a := range attempts {
			if !a.Start.Before(from) && a.Start.Before(to) {
				out = append(out, a)
			}
		}
		return out
	}
	var baselineLag map[string]float64
	for _, w := range r.Windows {
		// A fault lasts from its injection until the topology serves
		// again and every region has converged.
		end := w.Heal.Add(max(w.Recovered, w.Converged))
		f := FaultReport{Name: w.Name, Kind: w.Kind, Start: w.Start, WindowSeconds: w.Heal.Sub(w.Start).Seconds(),
			RecoverSeconds: w.Recovered.Seconds(), ConvergeSeconds: w.Converged.Seconds(), Converged: w.ConvergedOK,
			InjectError: w.InjectErr, HealError: w.HealErr, Crashed: w.Crashed, LagP99Seconds: map[string]float64{}}
		if len(w.convergeUnconverged) > 0 {
			f.Unconverged = w.convergeUnconverged[:min(len(w.convergeUnconverged), 10)]
		}
		ff := FaultFailures{Fault: w.Name, Failed: map[string]int{}, NeverAnswered: map[string]int{}, Samples: []Sample{}}
		for _, rd := range r.Readers {
			rr := ReaderReport{Reader: rd.Name, Kind: rd.Kind, Region: rd.Region, Errors: map[string]int{}}
			for _, s := range samples[rd] {
				if s.Start.Before(w.Start) || !s.Start.Before(end) {
					continue
				}
				rr.Lookups++
				if s.Recent {
					rr.RecentLookups++
				}
				if !s.Answered() {
					rr.Errors[s.Error]++
					if ff.Failed[rd.Name]++; ff.Failed[rd.Name] <= maxFailureSamples {
						ff.Samples = append(ff.Samples, s)
					}
					if strings.HasPrefix(s.Prev, "none") {
						ff.NeverAnswered[rd.Name]++
					}
					continue
				}
				rr.Answered++
				if s.Recent {
					rr.RecentAnswered++
				}
				if s.Stale {
					rr.Stale++
					rr.MaxStaleAgeSeconds = math.Max(rr.MaxStaleAgeSeconds, s.Age.Seconds())
				}
				// A stale-marked answer says it may be old; outdated counts
				// the answers that do not.
				if s.Outcome == OK && !s.Stale {
					if age, ok := outdatedAge(s); ok {
						rr.Outdated++
						rr.MaxOutdatedSeconds = math.Max(rr.MaxOutdatedSeconds, age.Seconds())
					}
				}
			}
			rr.Availability = share(rr.Answered, rr.Lookups)
			rr.RecentAvailability = share(rr.RecentAnswered, rr.RecentLookups)
			f.Readers = append(f.Readers, rr)
		}
		wr := WriteReport{Errors: map[string]int{}}
		for _, a := range attemptsIn(w.Start, end) {
			wr.Attempts++
			if a.OK {
				wr.OK++
			} else {
				wr.Errors[a.Status]++
			}
			if a.NoRetryAfter {
				wr.NoRetryAfter++
			}
			wr.MaxLatencySeconds = math.Max(wr.MaxLatencySeconds, a.Latency.Seconds())
			if a.Latency.Seconds() > th.DynamoDBFreeze.CatalogAnswerWithinSeconds || a.Status == "timeout" || a.Status == "conn" {
				wr.Hung++
			}
		}
		f.Writes = wr
		rep.failures = append(rep.failures, ff)
		for _, region := range r.Topology.Regions {
			var ls []time.Duration
			for _, l := range lag {
				if l.Region == region && !l.At.Before(w.Start) && l.At.Before(end) {
					ls = append(ls, l.Lag)
				}
			}
			f.LagP99Seconds[region] = p99(ls).Seconds()
		}
		if w.Kind == KindBaseline {
			baselineLag = f.LagP99Seconds
		}
		f.Violations, f.Timing = faultViolations(f, th, baselineLag, r.Config.CacheTTL)
		rep.Faults = append(rep.Faults, f)
	}

	// The run's bounds.
	v := &rep.Violations
	over := func(name string, got, limit int) {
		if got > limit {
			*v = append(*v, fmt.Sprintf("%s: %d, bound %d", name, got, limit))
		}
	}
	over("acknowledged writes lost", tot.LostWrites, th.LostWrites)
	over("acknowledged writes divergent", tot.DivergentWrites, th.DivergentWrites)
	over("regions differing from the catalog at the end", tot.RegionMismatches, th.RegionMismatches)
	over("resurrections", tot.Resurrections, th.Resurrections)
	over("client version regressions", tot.ClientVersionRegressions, th.ClientVersionRegressions)
	over("region version regressions", tot.RegionVersionRegressions, th.RegionVersionRegressions)
	if tot.CatalogError != "" {
		*v = append(*v, "the catalog could not be read at the end: "+tot.CatalogError)
	}
	if th.VerifyClean && !tot.VerifyClean {
		*v = append(*v, "tcsctl verify is not clean")
	}
	if th.ProcessesRecovered && len(tot.NotRecovered) > 0 {
		*v = append(*v, "processes not serving at the end: "+strings.Join(tot.NotRecovered, "; "))
	}
	if !tot.FinalConverged {
		*v = append(*v, fmt.Sprintf("the regions did not converge within %v of the last write", r.Config.ConvergeTimeout))
	}
	for _, f := range rep.Faults {
		for _, fv := range f.Violations {
			*v = append(*v, f.Name+": "+fv)
		}
		rep.TimingViolations += f.Timing
	}
	return rep
}

// faultViolations returns the bounds fault f exceeded, and how many of them
// are timing bounds (a convergence time, a reader's availability while a
// process was killed, the replication lag while SNS/SQS was frozen).
func faultViolations(f FaultReport, th Thresholds, baselineLag map[string]float64, ttl time.Duration) (v []string, timing int) {
	if f.InjectError != "" || f.HealError != "" {
		v = append(v, fmt.Sprintf("fault not injected or healed: %s %s", f.InjectError, f.HealError))
	}
	if len(f.Crashed) > 0 {
		v = append(v, "processes exited on their own (restarted by the suite): "+strings.Join(f.Crashed, ", "))
	}
	if f.Kind == KindBaseline {
		return v, 0
	}
	switch {
	case !f.Converged:
		why := ""
		if len(f.Unconverged) > 0 {
			why = ": " + f.Unconverged[0]
		}
		v = append(v, fmt.Sprintf("did not converge (gave up %.1fs after healing%s), bound %.1fs", f.ConvergeSeconds, why, th.ConvergenceSeconds))
	case f.ConvergeSeconds > th.ConvergenceSeconds:
		v = append(v, fmt.Sprintf("converged %.1fs after healing, bound %.1fs", f.ConvergeSeconds, th.ConvergenceSeconds))
		timing++
	}
	for _, rr := range f.Readers {
		switch f.Kind {
		case KindKill:
			if rr.Kind == "client" && rr.Lookups > 0 && rr.Availability < th.ProcessKill.ClientAvailability {
				v = append(v, fmt.Sprintf("%s answered %.2f%% of lookups (%d/%d), bound %.2f%%", rr.Reader, 100*rr.Availability, rr.Answered, rr.Lookups, 100*th.ProcessKill.ClientAvailability))
				timing++
			}
		case KindDynamoFreeze:
			if rr.RecentLookups > 0 && rr.RecentAvailability < th.DynamoDBFreeze.RecentLookupAvailability {
				v = append(v, fmt.Sprintf("%s answered %.2f%% of lookups of recently looked-up hostnames (%d/%d), bound %.2f%%", rr.Reader, 100*rr.RecentAvailability, rr.RecentAnswered, rr.RecentLookups, 100*th.DynamoDBFreeze.RecentLookupAvailability))
			}
		case KindSNSSQSFreeze:
			// An answer is outdated by its cache age plus the replication
			// lag of the version it missed: the cache's share is bounded by
			// the TTL, the lag's by the lag bound below.
			lag := f.LagP99Seconds[rr.Region]
			if rr.Kind == "client" {
				lag = slices.Max(slices.Collect(maps.Values(f.LagP99Seconds)))
			}
			if limit := ttl.Seconds() + th.SNSSQSFreeze.OutdatedOverTTLSeconds + lag; rr.MaxOutdatedSeconds > limit {
				v = append(v, fmt.Sprintf("%s served an answer outdated by %.1fs (not marked stale), bound %.1fs (cache TTL %.0fs + replication lag p99 %.2fs)",
					rr.Reader, rr.MaxOutdatedSeconds, limit, ttl.Seconds(), lag))
			}
		}
	}
	switch f.Kind {
	case KindDynamoFreeze:
		if f.Writes.Hung > 0 {
			v = append(v, fmt.Sprintf("%d writes got no answer within %.1fs (max latency %.1fs)", f.Writes.Hung, th.DynamoDBFreeze.CatalogAnswerWithinSeconds, f.Writes.MaxLatencySeconds))
		}
		if f.Writes.NoRetryAfter > 0 {
			v = append(v, fmt.Sprintf("%d writes got a 503 without Retry-After", f.Writes.NoRetryAfter))
		}
		for status, n := range f.Writes.Errors {
			if status != "503" {
				v = append(v, fmt.Sprintf("%d writes failed with %s, want 503 (with Retry-After)", n, status))
			}
		}
	case KindSNSSQSFreeze:
		for region, p := range f.LagP99Seconds {
			if limit := baselineLag[region] + th.SNSSQSFreeze.LagP99IncreaseSeconds; p > limit {
				v = append(v, fmt.Sprintf("replication lag p99 in %s %.2fs, baseline %.2fs + %.1fs", region, p, baselineLag[region], th.SNSSQSFreeze.LagP99IncreaseSeconds))
				timing++
			}
		}
	}
	slices.Sort(v)
	return v, timing
}

func share(n, of int) float64 {
	if of == 0 {
		return 1
	}
	return float64(n) / float64(of)
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(math.Ceil(0.99*float64(len(s))))-1]
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// regressions counts answers of a reader older than an answer about the same
// tenant (and, if perHost, through the same hostname) that the reader had
// already received before it asked (answers to lookups in flight at the same
// time are not ordered).
func regressions(ss []Sample, perHost bool, example func(string, ...any)) int {
	key := func(s Sample) string {
		if perHost {
			return s.Host + " " + s.TenantID
		}
		return s.TenantID
	}
	type event struct {
		at     time.Time
		finish bool
		s      Sample
	}
	var evs []event
	for _, s := range ss {
		if s.Outcome != OK {
			continue
		}
		evs = append(evs, event{s.Start, false, s}, event{s.Start.Add(s.Duration), true, s})
	}
	// At equal times a start comes first: only answers received strictly
	// before a lookup began bind it.
	slices.SortStableFunc(evs, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		switch {
		case a.finish == b.finish:
			return 0
		case !a.finish:
			return -1
		}
		return 1
	})
	highest := map[string]int64{} // tenant → highest version answered so far
	var starts []Sample
	var floor []int64 // per start: the highest version answered before it
	for _, e := range evs {
		if e.finish {
			highest[key(e.s)] = max(highest[key(e.s)], e.s.Version)
			continue
		}
		starts = append(starts, e.s)
		floor = append(floor, highest[key(e.s)])
	}
	n := 0
	for i, s := range starts {
		if s.Version < floor[i] {
			n++
			example("%s at %s answered %s v%d after v%d had been answered", s.Host, s.Start.Format(time.StampMilli), s.TenantID, s.Version, floor[i])
		}
	}
	return n
}

// Write writes report.json, report.md, writes.json (every acknowledged
// write and every request) and failures.json (failed lookups per fault, see
// FaultFailures) into dir.
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), data, 0o644); err != nil {
		return err
	}
	if rep.writes != nil {
		data, err := json.MarshalIndent(rep.writes, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "writes.json"), data, 0o644); err != nil {
			return err
		}
	}
	if rep.failures != nil {
		data, err := json.MarshalIndent(rep.failures, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "failures.json"), data, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(rep.Markdown()), 0o644)
}

// Markdown renders the report: the totals, then a table per fault.
func (rep *Report) Markdown() string {
	var b strings.Builder
	t := rep.Totals
	fmt.Fprintf(&b, "# Chaos run (%s variant), %s, %.0fs\n\n", rep.Variant, rep.Started.UTC().Format(time.RFC3339), rep.DurationSeconds)
	if len(rep.Violations) == 0 {
		b.WriteString("**Result: every bound held.**\n\n")
	} else {
		fmt.Fprintf(&b, "**Result: %d bounds exceeded.**\n\n", len(rep.Violations))
		for _, v := range rep.Violations {
			fmt.Fprintf(&b, "- %s\n", v)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Regions %s; cache TTL %.0fs; logs in `%s`.\n\n", strings.Join(rep.Regions, ", "), rep.CacheTTLSeconds, rep.LogDir)
	b.WriteString("| total | value |\n| --- | --- |\n")
	rows := [][2]string{
		{"write requests / acknowledged", fmt.Sprintf("%d / %d", t.WriteAttempts, t.AcknowledgedWrites)},
		{"write errors by status", formatCounts(t.WriteErrors)},
		{"lookups", fmt.Sprint(t.Lookups)},
		{"acknowledged writes lost / divergent", fmt.Sprintf("%d / %d", t.LostWrites, t.DivergentWrites)},
		{"regions differing from the catalog at the end", fmt.Sprint(t.RegionMismatches)},
		{"resurrections", fmt.Sprint(t.Resurrections)},
		{"version regressions: client / region", fmt.Sprintf("%d / %d", t.ClientVersionRegressions, t.RegionVersionRegressions)},
		{"tcsctl verify clean", fmt.Sprint(t.VerifyClean)},
		{"processes not serving at the end", orDash(strings.Join(t.NotRecovered, "; "))},
		{"final convergence", fmt.Sprintf("%.1fs (converged: %v)", t.FinalConvergeSeconds, t.FinalConverged)},
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	for _, k := range slices.Sorted(maps.Keys(t.Examples)) {
		fmt.Fprintf(&b, "\n%s (examples):\n", k)
		for _, e := range t.Examples[k] {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if t.VerifyOutput != "" {
		fmt.Fprintf(&b, "\ntcsctl verify:\n\n```\n%s\n```\n", strings.TrimSpace(t.VerifyOutput))
	}
	for _, f := range rep.Faults {
		fmt.Fprintf(&b, "\n## %s\n\n", f.Name)
		fmt.Fprintf(&b, "Kind %s; window %.1fs; serving again %.1fs after the heal; converged %.1fs after the heal (%v).",
			f.Kind, f.WindowSeconds, f.RecoverSeconds, f.ConvergeSeconds, f.Converged)
		var lags []string
		for _, r := range rep.Regions {
			lags = append(lags, fmt.Sprintf("%s %.2fs", r, f.LagP99Seconds[r]))
		}
		fmt.Fprintf(&b, " Replication lag p99: %s.\n", strings.Join(lags, ", "))
		fmt.Fprintf(&b, "Writes: %d requests, %d ok, errors %s, max latency %.2fs, %d without an answer in time, %d 503s without Retry-After.\n\n",
			f.Writes.Attempts, f.Writes.OK, formatCounts(f.Writes.Errors), f.Writes.MaxLatencySeconds, f.Writes.Hung, f.Writes.NoRetryAfter)
		b.WriteString("| reader | lookups | answered | recently looked-up answered | stale (max age) | outdated (max) | errors |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, r := range f.Readers {
			fmt.Fprintf(&b, "| %s | %d | %.2f%% | %.2f%% (%d/%d) | %d (%.1fs) | %d (%.1fs) | %s |\n",
				r.Reader, r.Lookups, 100*r.Availability, 100*r.RecentAvailability, r.RecentAnswered, r.RecentLookups,
				r.Stale, r.MaxStaleAgeSeconds, r.Outdated, r.MaxOutdatedSeconds, formatCounts(r.Errors))
		}
		if len(f.Violations) > 0 {
			b.WriteString("\nBounds exceeded:\n")
			for _, v := range f.Violations {
				fmt.Fprintf(&b, "- %s\n", v)
			}
		}
		if len(f.Unconverged) > 0 {
			fmt.Fprintf(&b, "\nNot converged (first %d): %s\n", len(f.Unconverged), strings.Join(f.Unconverged, ", "))
		}
	}
	return b.String()
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "–"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
