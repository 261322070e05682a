package lookup_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// The load of BenchmarkLookupVsBare: benchCallers concurrent calls, over
// the benchHot of benchTenants tenants in the tcs server's cache, in
// benchRounds alternations of the two servers, after benchWarmup calls to
// each. -short: 2,000 tenants, a hot set of 1,000, 2 rounds, a smoke run:
// its figures mean nothing.
const benchCallers = 64

func benchTenants() int { return benchsize.Pick(100_000, 2_000) }
func benchHot() int     { return benchsize.Pick(10_000, 1_000) }
func benchRounds() int  { return benchsize.Pick(10, 2) }
func benchWarmup() int  { return benchsize.Pick(2000, 200) }

// benchServerEnv names the server a child process of BenchmarkLookupVsBare
// runs: "bare" or "tcs".
const benchServerEnv = "TCS_BENCH_SERVER"

func benchHost(i int) string { return fmt.Sprintf("t%06d.example.com", i) }

// bareServer is grpc-go with nothing else: Lookup returns one pre-built
// response of the size tcs answers with.
type bareServer struct {
	tcsv1.UnimplementedTenantContextServiceServer
	resp *tcsv1.LookupResponse
}

func (b *bareServer) Lookup(context.Context, *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	return b.resp, nil
}

func bareResponse() *tcsv1.LookupResponse {
	return &tcsv1.LookupResponse{
		Tenant: tcsv1.TenantToProto(makeTenant("t000000", 1, benchHost(0))),
		Region: "eu-west-1",
		Age:    durationpb.New(12*time.Second + 345*time.Millisecond),
	}
}

// TestBenchServerProcess is not a test: it is the server process of
// BenchmarkLookupVsBare, run as a child of the benchmark so that each server
// has its own heap and garbage collector, as in production (a cache's cost is
// mostly its collector's, which would otherwise be shared with the load
// generator and the other server). It prints its address and serves until
// its stdin closes.
func TestBenchServerProcess(t *testing.T) {
	kind := os.Getenv(benchServerEnv)
	if kind == "" {
		t.Skip("only run by BenchmarkLookupVsBare")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	// To see where a server spends its time under load (not while it
	// warms up): TCS_BENCH_PROFILE_DIR=dir go test -bench LookupVsBare.
	profile := func() {
		dir := os.Getenv("TCS_BENCH_PROFILE_DIR")
		if dir == "" {
			return
		}
		f, err := os.Create(filepath.Join(dir, kind+".cpu"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	switch kind {
	case "bare":
		gs := grpc.NewServer()
		tcsv1.RegisterTenantContextServiceServer(gs, &bareServer{resp: bareResponse()})
		go func() {
			<-ctx.Done()
			gs.Stop()
		}()
		profile()
		fmt.Printf("ADDR %s\n", lis.Addr())
		_ = gs.Serve(lis)
	case "tcs":
		replica := newFakeReplica()
		for i := range benchTenants() {
			replica.set(makeTenant(fmt.Sprintf("t%06d", i), 1, benchHost(i)))
		}
		srv := lookup.New(lookup.Config{
			Region:  "eu-west-1",
			Replica: replica,
			Cache:   cache.Options{TTL: time.Hour},
			// The per-caller rate limit runs (its cost is tcs's) but
			// never refuses: the load comes from one address.
			LookupRate: 1e9,
		})
		for i := range benchTenants() { // warm the cache
			if _, err := srv.Cache().Lookup(ctx, benchHost(i)); err != nil {
				t.Fatal(err)
			}
		}
		// A real replica lives off this heap (a bbolt mmap, or DynamoDB).
		replica.mu.Lock()
		replica.byHost = nil
		replica.mu.Unlock()
		runtime.GC()
		profile()
		fmt.Printf("ADDR %s\n", lis.Addr())
		workers := 0
		if os.Getenv("TCS_BENCH_NO_WORKERS") != "" {
			workers = -1
		}
		if err := srv.Serve(ctx, lis, lookup.ServeOptions{ShutdownTimeout: time.Second, StreamWorkers: workers}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("%s=%q: want bare or tcs", benchServerEnv, kind)
	}
}

// benchServer is a server child process and a client connection to it.
type benchServer struct {
	name   string
	pid    int
	client tcsv1.TenantContextServiceClient
	// What the load measured, over all its rounds.
	calls     int
	elapsed   time.Duration
	cpu       time.Duration // the server process's, while loaded
	latencies []time.Duration
	respBytes int
}

func startBenchServer(b *testing.B, kind string) *benchServer {
	b.Helper()
	// -test.short: the child fills its cache with the same benchTenants.
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.count=1", "-test.short="+strconv.FormatBool(testing.Short()))
	cmd.Env = append(os.Environ(), benchServerEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(stdout)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatalf("%s server did not start: %v", kind, sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return &benchServer{name: kind, pid: cmd.Process.Pid, client: tcsv1.NewTenantContextServiceClient(conn)}
}

// load makes n Lookup calls from benchCallers concurrent callers, over the
// hot set, and records their latencies.
func (s *benchServer) load(b *testing.B, n int) {
	var next atomic.Int64
	lat := make([][]time.Duration, benchCallers)
	hot, stride := benchHot(), benchTenants()/benchHot()
	var wg sync.WaitGroup
	cpu0 := processCPU(b, s.pid)
	start := time.Now()
	for w := range benchCallers {
		wg.Go(func() {
			ctx := context.Background()
			reqs := make([]*tcsv1.LookupRequest, hot)
			mine := make([]time.Duration, 0, n/benchCallers+1)
			for {
				i := int(next.Add(1))
				if i > n {
					break
				}
				h := (i*7919 + w) % hot
				if reqs[h] == nil {
					reqs[h] = &tcsv1.LookupRequest{Hostname: benchHost(h * stride)}
				}
				t0 := time.Now()
				resp, err := s.client.Lookup(ctx, reqs[h])
				mine = append(mine, time.Since(t0))
				if err != nil {
					b.Errorf("%s: Lookup: %v", s.name, err)
					return
				}
				if s.respBytes == 0 && w == 0 {
					s.respBytes = proto.Size(resp)
				}
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	s.elapsed += time.Since(start)
	s.cpu += processCPU(b, s.pid) - cpu0
	s.calls += n
	for _, l := range lat {
		s.latencies = append(s.latencies, l...)
	}
}

func (s *benchServer) report(b *testing.B) (rps float64) {
	slices.Sort(s.latencies)
	q := func(p float64) float64 {
		return float64(s.latencies[int(p*float64(len(s.latencies)-1))].Microseconds())
	}
	rps = float64(s.calls) / s.elapsed.Seconds()
	b.ReportMetric(rps, s.name+"-req/s")
	b.ReportMetric(q(0.50), s.name+"-p50-µs")
	b.ReportMetric(q(0.99), s.name+"-p99-µs")
	b.ReportMetric(float64(s.respBytes), s.name+"-resp-bytes")
	b.ReportMetric(float64(s.cpu.Microseconds())/float64(s.calls), s.name+"-server-cpu-µs/call")
	return rps
}

// BenchmarkLookupVsBare drives a bare grpc-go server and the tcs server
// (cache hits over a hot set of benchHot of benchTenants cached tenants),
// each in its own child process, with the same load: benchCallers
// concurrent Lookup calls over one loopback TCP connection. The two take
// turns (benchRounds each, b.N calls per server in all), so that the
// machine's drift affects both alike. It reports each server's req/s, p50
// and p99, and tcs/bare, the ratio of their throughputs (target ≥ 0.95).
// -short: see benchTenants, a smoke run.
func BenchmarkLookupVsBare(b *testing.B) {
	bare := startBenchServer(b, "bare")
	tcs := startBenchServer(b, "tcs")
	for _, s := range []*benchServer{bare, tcs} { // connect and warm up
		s.load(b, benchWarmup())
		*s = benchServer{name: s.name, pid: s.pid, client: s.client, respBytes: s.respBytes}
	}
	b.ResetTimer()
	per := max(b.N/benchRounds(), benchCallers)
	for range benchRounds() {
		bare.load(b, per)
		tcs.load(b, per)
	}
	b.StopTimer()
	ratio := tcs.report(b) / bare.report(b)
	b.ReportMetric(ratio, "tcs/bare")
}

// processCPU returns the CPU time (user and system, all threads) process pid
// has used, from /proc (10 ms resolution: meaningful summed over a run).
func processCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		b.Fatal(err)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}
