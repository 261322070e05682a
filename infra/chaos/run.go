//go:build linux

package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tcs-dev/tcs/infra/emulators"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// Config sizes a run. ShortConfig is what CI runs; FullConfig is make chaos.
type Config struct {
	Variant string   // "short" or "full", for the report
	Regions []string // the first gets two appliers
	// WritesPerSecond over WriteWorkers workers; WriteTimeout bounds one
	// request (no answer by then: "timeout").
	WritesPerSecond float64
	WriteWorkers    int
	WriteTimeout    time.Duration
	// LookupsPerSecond per reader (one per region straight to its tcs
	// node, one per region through the client library); LookupTimeout
	// bounds one lookup (no answer by then: a failure).
	LookupsPerSecond float64
	LookupTimeout    time.Duration
	// CacheTTL is the tcs nodes' --cache-ttl and the clients' WithTTL.
	CacheTTL time.Duration
	// Warmup runs the load before the baseline window; Baseline is the
	// fault-free window the faults are compared with.
	Warmup, Baseline time.Duration
	// FaultWindow is how long a kill lasts before the restart, and a freeze
	// of kinesalite; SNSSQSFreeze and DynamoDBFreeze are those freezes.
	FaultWindow, SNSSQSFreeze, DynamoDBFreeze time.Duration
	// Quiet is the pause between faults, after convergence.
	Quiet time.Duration
	// ConvergeTimeout bounds the wait for convergence after a heal (a fault
	// that takes longer is reported with this time and fails its bound).
	ConvergeTimeout time.Duration
	// Faults, if set, runs only the faults whose name it matches (for
	// working on one fault; a run with it set proves nothing about the
	// others).
	Faults *regexp.Regexp
}

// ShortConfig is the CI variant: every fault, short windows (SNS/SQS frozen
// 10 s instead of 60 s, with a 5 s cache TTL so that the freeze outlasts it),
// about three minutes.
func ShortConfig() Config {
	return Config{
		Variant: "short", Regions: []string{"us-east-1", "eu-west-1", "ap-southeast-2"},
		WritesPerSecond: 20, WriteWorkers: 8, WriteTimeout: 10 * time.Second,
		LookupsPerSecond: 40, LookupTimeout: time.Second,
		CacheTTL: 5 * time.Second,
		Warmup:   3 * time.Second, Baseline: 6 * time.Second,
		FaultWindow: 5 * time.Second, SNSSQSFreeze: 10 * time.Second, DynamoDBFreeze: 10 * time.Second,
		Quiet: 2 * time.Second, ConvergeTimeout: 20 * time.Second,
	}
}

// FullConfig is make chaos: the windows (SNS/SQS frozen 60 s,
// DynamoDB 10 s), the default 30 s cache TTL, longer kills and quiet
// periods.
func FullConfig() Config {
	c := ShortConfig()
	c.Variant = "full"
	c.CacheTTL = 30 * time.Second
	c.Warmup, c.Baseline = 10*time.Second, 30*time.Second
	c.FaultWindow, c.SNSSQSFreeze = 20*time.Second, 60*time.Second
	c.Quiet, c.ConvergeTimeout = 10*time.Second, 60*time.Second
	return c
}

// Fault kinds, which select the bounds that apply.
const (
	KindBaseline      = "baseline"
	KindKill          = "process-kill"
	KindSNSSQSFreeze  = "sns-sqs-freeze"
	KindDynamoFreeze  = "dynamodb-freeze"
	KindKinesisFreeze = "kinesis-freeze"
)

// fault is one fault to inject: inject, wait its window, heal.
type fault struct {
	name, kind string
	window     time.Duration
	inject     func() error
	// heal undoes the fault; for a kill it restarts the process and
	// returns once it serves again.
	heal func(ctx context.Context) error
	// retires is the process the fault kills for good.
	retires *Proc
}

// window is a fault's timeline.
type window struct {
	Name, Kind         string
	Start, Heal        time.Time
	Recovered          time.Duration // heal → serving again (kills)
	Converged          time.Duration // heal → every region serves the acknowledged state
	ConvergedOK        bool
	InjectErr, HealErr string
	// Crashed lists processes that exited on their own during the fault
	// (the suite restarts them, so that later faults are measured on the
	// whole topology).
	Crashed             []string
	snapshotAtHeal      Snapshot
	convergeUnconverged []string
}

func (t *Topology) faults(cfg Config) []fault {
	kill := func(name string, p *Proc, window time.Duration) fault {
		return fault{name: name, kind: KindKill, window: window, inject: p.Kill,
			heal: func(ctx context.Context) error {
				if err := p.Start(); err != nil {
					return err
				}
				return p.WaitReady(ctx)
			}}
	}
	freeze := func(name, kind string, e *emulators.Process, window time.Duration) fault {
		return fault{name: name, kind: kind, window: window,
			inject: func() error { return e.Signal(syscall.SIGSTOP) },
			heal:   func(context.Context) error { return e.Signal(syscall.SIGCONT) }}
	}
	r0, r1 := t.Regions[0], t.Regions[len(t.Regions)-1]
	forGood := t.Appliers[r0][0]
	return []fault{
		kill("kill -9 streamer publish", t.Publish, cfg.FaultWindow),
		kill("kill -9 streamer apply "+r1, t.Appliers[r1][0], cfg.FaultWindow),
		kill("kill -9 tcs "+r0, t.TCS[r0], cfg.FaultWindow),
		kill("kill -9 catalog", t.Catalog, cfg.FaultWindow),
		freeze("SIGSTOP SNS/SQS (fauxqs)", KindSNSSQSFreeze, t.SNSSQS, cfg.SNSSQSFreeze),
		freeze("SIGSTOP DynamoDB Local", KindDynamoFreeze, t.DynamoDB, cfg.DynamoDBFreeze),
		freeze("SIGSTOP Kinesis (kinesalite)", KindKinesisFreeze, t.Kinesis, cfg.FaultWindow),
		// No restart heals this one: the survivor takes the dead applier's
		// shards over when their leases expire, so the fault lasts a lease
		// and convergence counts from its end.
		{name: "kill -9 " + forGood.Name + " for good (the other applier of " + r0 + " takes over)", kind: KindKill,
			window: kinesis.DefaultLeaseDuration, inject: forGood.Kill, heal: func(context.Context) error { return nil }, retires: forGood},
	}
}

// Run is one chaos run: topology, load, every fault in turn, final checks.
type Run struct {
	Config   Config
	Topology *Topology
	Writer   *Writer
	Readers  []*Reader
	Lag      *LagProbe
	Windows  []*window
	// Retired processes were killed for good on purpose.
	Retired map[*Proc]bool
	Final   FinalState
	Started time.Time
	Ended   time.Time
	logf    func(string, ...any)

	lookups map[string]tcsv1.TenantContextServiceClient
}

// FinalState is what the checks after the run found.
type FinalState struct {
	Catalog          map[string]catalogEntry
	CatalogErr       string
	RegionMismatches []string
	VerifyClean      bool
	VerifyOutput     string
	NotRecovered     []string
	FinalConverge    time.Duration
	FinalConvergedOK bool
}

type catalogEntry struct {
	Version   int64
	Deleted   bool
	Hostnames []string
	Labels    map[string]string
}

// Execute runs the whole suite against a started topology; logf reports
// progress.
func Execute(ctx context.Context, cfg Config, topo *Topology, logf func(string, ...any)) (*Run, error) {
	r := &Run{Config: cfg, Topology: topo, Retired: map[*Proc]bool{}, Started: time.Now(), lookups: map[string]tcsv1.TenantContextServiceClient{}, logf: logf}
	for _, region := range topo.Regions {
		conn, err := DialProbe(topo.TCSAddrs[region])
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		r.lookups[region] = tcsv1.NewTenantContextServiceClient(conn)
	}
	r.Writer = NewWriter(topo.CatalogURL, cfg.WriteWorkers, cfg.WritesPerSecond, cfg.WriteTimeout)
	for i, region := range topo.Regions {
		rr, err := NewRegionReader(region, topo.TCSAddrs[region], cfg.LookupsPerSecond, cfg.LookupTimeout, r.Writer.Hosts)
		if err != nil {
			return nil, err
		}
		addrs := []string{topo.TCSAddrs[region]}
		for j, other := range topo.Regions {
			if j != i {
				addrs = append(addrs, topo.TCSAddrs[other])
			}
		}
		cr, err := NewClientReader(ctx, region, addrs, cfg.CacheTTL, cfg.LookupsPerSecond, cfg.LookupTimeout, r.Writer.Hosts)
		if err != nil {
			return nil, err
		}
		r.Readers = append(r.Readers, rr, cr)
	}
	defer func() {
		for _, rd := range r.Readers {
			_ = rd.Close()
		}
	}()
	r.Lag = NewLagProbe(topo, r.Writer)

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var writerWG, readersWG sync.WaitGroup
	writerWG.Go(func() { r.Writer.Run(loadCtx) })
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	for _, rd := range r.Readers {
		readersWG.Go(func() { rd.Run(readCtx) })
	}
	readersWG.Go(func() { r.Lag.Run(readCtx) })

	sleep(ctx, cfg.Warmup)
	base := &window{Name: "baseline (no fault)", Kind: KindBaseline, Start: time.Now()}
	sleep(ctx, cfg.Baseline)
	base.Heal = time.Now()
	base.ConvergedOK = true
	r.Windows = append(r.Windows, base)
	logf("baseline: %d writes acknowledged so far", len(r.Writer.Acks()))

	for _, f := range topo.faults(cfg) {
		if ctx.Err() != nil {
			break
		}
		if cfg.Faults != nil && !cfg.Faults.MatchString(f.name) {
			continue
		}
		w := &window{Name: f.name, Kind: f.kind, Start: time.Now()}
		r.Windows = append(r.Windows, w)
		if err := f.inject(); err != nil {
			w.InjectErr = err.Error()
		}
		sleep(ctx, f.window)
		w.Heal = time.Now()
		hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		if err := f.heal(hctx); err != nil {
			w.HealErr = err.Error()
		}
		cancel()
		w.Recovered = time.Since(w.Heal)
		r.restartCrashed(ctx, w, f.retires)
		if f.retires != nil {
			r.Retired[f.retires] = true
		}
		w.snapshotAtHeal = r.Writer.Snapshot()
		w.Converged, w.ConvergedOK, w.convergeUnconverged = r.converge(ctx, w.snapshotAtHeal, w.Heal, cfg.ConvergeTimeout)
		r.restartCrashed(ctx, w, nil)
		logf("%s: recovered in %v, converged %v in %v", f.name, w.Recovered.Round(time.Millisecond), w.ConvergedOK, w.Converged.Round(time.Millisecond))
		sleep(ctx, cfg.Quiet)
	}
	stopLoad()
	writerWG.Wait()
	end := time.Now()
	r.Final.FinalConverge, r.Final.FinalConvergedOK, _ = r.converge(ctx, r.Writer.Snapshot(), end, cfg.ConvergeTimeout)
	stopReaders()
	readersWG.Wait()
	r.finalChecks(ctx)
	r.Ended = time.Now()
	return r, ctx.Err()
}

// crashed names the processes that exited on their own.
func (r *Run) crashed() []string {
	var dead []string
	for _, p := range r.Topology.Processes() {
		if !p.Alive() && !r.Retired[p] {
			dead = append(dead, p.Name)
		}
	}
	return dead
}

// restartCrashed restarts every process that exited on its own (not
// retired, not the one the fault retires), noting it in w.
func (r *Run) restartCrashed(ctx context.Context, w *window, retires *Proc) {
	for _, p := range r.Topology.Processes() {
		if p.Alive() || r.Retired[p] || p == retires {
			continue
		}
		w.Crashed = append(w.Crashed, fmt.Sprintf("%s (log: %s)", p.Name, p.logPath))
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := p.Start(); err == nil {
			_ = p.WaitReady(rctx)
		}
		cancel()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// converge waits until every region answers, for every tenant of snap, its
// primary hostname at the snapshot's version or later (not found for a
// deleted tenant), through each region's tcs node (cache included: what
// callers see). It returns how long after since that was.
func (r *Run) converge(ctx context.Context, snap Snapshot, since time.Time, timeout time.Duration) (time.Duration, bool, []string) {
	deadline := since.Add(timeout)
	ids := make([]string, 0, len(snap))
	for id := range snap {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	pending := map[string][]string{} // region → ids not yet right
	why := map[string][]string{}     // region → what they answer
	for _, region := range r.Topology.Regions {
		pending[region] = ids
	}
	var lastTrace time.Time
	for {
		// The regions are checked at once, so that one slow to answer does
		// not delay noticing that the others (or it) converged.
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, region := range r.Topology.Regions {
			ids := pending[region]
			wg.Go(func() {
				left, w := r.unconverged(ctx, region, snap, ids)
				mu.Lock()
				pending[region], why[region] = left, w
				mu.Unlock()
			})
		}
		wg.Wait()
		done := true
		for _, region := range r.Topology.Regions {
			if len(pending[region]) > 0 {
				done = false
			}
		}
		if !done && time.Since(lastTrace) >= 500*time.Millisecond {
			// Where a slow convergence spends its time, in the test log.
			lastTrace = time.Now()
			var b strings.Builder
			lag := map[string]time.Duration{}
			if r.Lag != nil {
				for _, ls := range r.Lag.Samples() {
					lag[ls.Region] = ls.Lag // the newest last
				}
			}
			for _, region := range r.Topology.Regions {
				fmt.Fprintf(&b, " %s:%d lag %v", region, len(pending[region]), lag[region].Round(time.Millisecond))
				if len(why[region]) > 0 {
					fmt.Fprintf(&b, " (e.g. %s)", why[region][0])
				}
			}
			r.logf("converging %v after the heal, unconverged per region:%s", time.Since(since).Round(time.Millisecond), b.String())
		}
		if done {
			return time.Since(since), true, nil
		}
		// A process that died will not converge anything: stop waiting,
		// so that the caller restarts it.
		if dead := r.crashed(); len(dead) > 0 {
			return time.Since(since), false, []string{"stopped waiting: exited on their own: " + strings.Join(dead, ", ")}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			var left []string
			for _, region := range r.Topology.Regions {
				for _, w := range why[region] {
					left = append(left, region+": "+w)
				}
			}
			return timeout, false, left
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// unconverged returns the ids whose primary hostname region does not yet
// answer as snap says, and what it answers for each.
func (r *Run) unconverged(ctx context.Context, region string, snap Snapshot, ids []string) (left, why []string) {
	for chunk := range slices.Chunk(ids, 100) {
		hosts := make([]string, len(chunk))
		for i, id := range chunk {
			hosts[i] = primaryHost(id)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := r.lookups[region].BatchLookup(cctx, &tcsv1.BatchLookupRequest{Hostnames: hosts})
		cancel()
		if err != nil || len(res.GetResults()) != len(chunk) {
			left = append(left, chunk...)
			for _, id := range chunk {
				why = append(why, fmt.Sprintf("%s (BatchLookup: %v)", id, err))
			}
			continue
		}
		for i, id := range chunk {
			want, got := snap[id], res.GetResults()[i]
			notFound := codes.Code(got.GetCode()) == codes.NotFound
			var ok bool
			switch {
			case want.Deleted:
				ok = notFound
			case notFound:
				// Deleted after the snapshot: as good as any later version.
				ok = r.Writer.DeleteSent(id)
			default:
				ok = got.GetCode() == 0 && got.GetTenant().GetId() == id && got.GetTenant().GetVersion() >= want.Version
			}
			if !ok {
				left = append(left, id)
				why = append(why, fmt.Sprintf("%s (answers %s v%d, code %d; want v%d deleted %v)",
					id, got.GetTenant().GetId(), got.GetTenant().GetVersion(), got.GetCode(), want.Version, want.Deleted))
			}
		}
	}
	return left, why
}

// LagProbe samples each region's replication lag: from each applier's
// tcs_apply_last_commit_timestamp_seconds (the newest commit applied; the
// region's is the newest over its appliers and over time), the lag at a
// moment is how long ago the oldest acknowledged write not yet applied was
// committed (0 when every acknowledged write is applied). A stalled shard
// is hidden while the region's other shard advances.
type LagProbe struct {
	topo *Topology
	w    *Writer

	mu        sync.Mutex
	maxCommit map[string]float64
	samples   []LagSample
}

// LagSample is one region's lag at one moment.
type LagSample struct {
	Region string
	At     time.Time
	Lag    time.Duration
}

// NewLagProbe returns a probe of topo's appliers against w's writes.
func NewLagProbe(topo *Topology, w *Writer) *LagProbe {
	return &LagProbe{topo: topo, w: w, maxCommit: map[string]float64{}}
}

// Run samples every 250 ms until ctx ends.
func (l *LagProbe) Run(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		acks := l.w.Acks()
		now := time.Now()
		for _, region := range l.topo.Regions {
			for _, p := range l.topo.Appliers[region] {
				if v, ok := scrapeGauge(ctx, client, l.topo.applierMetrics[p], "tcs_apply_last_commit_timestamp_seconds"); ok && v > l.maxCommit[region] {
					l.maxCommit[region] = v
				}
			}
			applied := time.Unix(0, int64(l.maxCommit[region]*1e9))
			lag := time.Duration(0)
			for _, a := range acks {
				if !a.Committed.IsZero() && a.Committed.After(applied) {
					lag = now.Sub(a.Committed)
					break
				}
			}
			l.mu.Lock()
			l.samples = append(l.samples, LagSample{Region: region, At: now, Lag: lag})
			l.mu.Unlock()
		}
	}
}

// Samples returns every sample so far.
func (l *LagProbe) Samples() []LagSample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.samples)
}

// scrapeGauge reads the first sample of a metric from a Prometheus text
// page.
func scrapeGauge(ctx context.Context, c *http.Client, url, name string) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// finalChecks compares the catalog with the acknowledged writes and every
// region with the catalog, runs tcsctl verify, and checks that every
// process serves.
func (r *Run) finalChecks(ctx context.Context) {
	cat, err := Catalog(ctx, r.Topology.CatalogURL)
	if err != nil {
		r.Final.CatalogErr = err.Error()
	}
	r.Final.Catalog = map[string]catalogEntry{}
	for id, t := range cat {
		r.Final.Catalog[id] = catalogEntry{Version: t.Version, Deleted: t.Deleted(), Hostnames: t.Hostnames, Labels: t.Labels}
	}
	r.Final.RegionMismatches = r.regionsMatchCatalog(ctx)

	verify := exec.CommandContext(ctx, r.Topology.BinDir+"/tcsctl", "verify",
		"--catalog", r.Topology.CatalogURL, "--regions", r.Topology.RegionsFlag(), "--token", AdminToken)
	verify.Env = r.Topology.Env
	out, err := verify.CombinedOutput()
	r.Final.VerifyOutput = string(out)
	r.Final.VerifyClean = err == nil

	for _, p := range r.Topology.Processes() {
		if r.Retired[p] {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if !p.Alive() {
			r.Final.NotRecovered = append(r.Final.NotRecovered, p.Name+": not running")
		} else if err := p.WaitReady(rctx); err != nil {
			r.Final.NotRecovered = append(r.Final.NotRecovered, err.Error())
		}
		cancel()
	}
	for _, e := range []struct {
		name string
		p    *emulators.Process
	}{{"DynamoDB Local", r.Topology.DynamoDB}, {"kinesalite", r.Topology.Kinesis}, {"fauxqs", r.Topology.SNSSQS}} {
		select {
		case <-e.p.Done():
			out := e.p.Output()
			r.Final.NotRecovered = append(r.Final.NotRecovered, e.name+": exited: "+out[max(0, len(out)-300):])
		default:
		}
	}
}

// regionsMatchCatalog looks every hostname the run ever used up in every
// region until each answers what the catalog says (its live owner at the
// catalog's version, or not found), for at most ConvergeTimeout; it returns
// what still differs.
func (r *Run) regionsMatchCatalog(ctx context.Context) []string {
	type want struct {
		id      string
		version int64
	}
	expect := map[string]want{}
	for _, a := range r.Writer.Acks() {
		expect[primaryHost(a.ID)] = want{}
		for _, h := range a.Hostnames {
			expect[h] = want{}
		}
	}
	for id, t := range r.Final.Catalog {
		if t.Deleted {
			continue
		}
		for _, h := range t.Hostnames {
			expect[h] = want{id, t.Version}
		}
	}
	hosts := make([]string, 0, len(expect))
	for h := range expect {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	deadline := time.Now().Add(r.Config.ConvergeTimeout)
	var all []string
	for _, region := range r.Topology.Regions {
		left := hosts
		var diffs []string
		for {
			diffs = diffs[:0:0]
			var again []string
			for chunk := range slices.Chunk(left, 100) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				res, err := r.lookups[region].BatchLookup(cctx, &tcsv1.BatchLookupRequest{Hostnames: chunk})
				cancel()
				if err != nil || len(res.GetResults()) != len(chunk) {
					again = append(again, chunk...)
					diffs = append(diffs, fmt.Sprintf("%s: BatchLookup: %v", region, err))
					continue
				}
				for i, h := range chunk {
					w, got := expect[h], res.GetResults()[i]
					switch {
					case w.id == "" && codes.Code(got.GetCode()) == codes.NotFound:
					case w.id != "" && got.GetCode() == 0 && got.GetTenant().GetId() == w.id && got.GetTenant().GetVersion() == w.version:
					default:
						again = append(again, h)
						diffs = append(diffs, fmt.Sprintf("%s: %s answers %s v%d (code %d), catalog says %s v%d",
							region, h, got.GetTenant().GetId(), got.GetTenant().GetVersion(), got.GetCode(), orNone(w.id), w.version))
					}
				}
			}
			if len(again) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			left = again
			sleep(ctx, 200*time.Millisecond)
		}
		all = append(all, diffs...)
	}
	return all
}

func orNone(id string) string {
	if id == "" {
		return "no tenant"
	}
	return id
}
