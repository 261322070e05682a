package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/internal/busypoll"
	"github.com/tcs-dev/tcs/internal/testredis"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// BenchmarkSidecar measures tcs-sidecar (the binary, built and run as its
// own process, as a redis-server is, over the in-process system with one
// tenant: every lookup is a hit in the sidecar's client) on loopback at 1
// and 64 concurrent callers, beside the floors a caller could reach
// instead, all in the same run. Every floor is a process of its own too
// (this test binary run again: startFloors), so that each figure pays the
// same cross-process wake-ups:
//
//   - http: GET /v1/lookup/{hostname} over a kept-alive HTTP/1.1
//     connection per caller, with a minimal client (writes the request,
//     reads the headers and Content-Length bytes): what the sidecar costs;
//   - http-unix: the same over the --unix-socket;
//   - http-busypoll: http on a second sidecar run with --busy-poll
//     (benchSpin), the caller as http's: what a caller that sleeps for
//     its answer gets of a server that spins;
//   - http-busypoll-spin, http-unix-busypoll-spin: the same sidecar over
//     TCP and its Unix socket, with a caller whose reads spin too
//     (busypoll.Group.Wrap): the sidecar's best, no wake-up on either
//     side;
//   - http-stdlib: the same as http with Go's net/http client (a typical
//     client's own cost included);
//   - grpc: the sidecar's gRPC Lookup, one connection shared by the
//     callers;
//   - http-baseline, grpc-baseline: http and grpc on the tcs-sidecar binary
//     TCS_BENCH_SIDECAR_BASELINE names (unset: not run), for a before and
//     after in one run;
//   - tcp-floor, unix-floor: a ping-pong on TCP and on a Unix socket (the
//     caller writes the request's bytes, the server reads them and writes
//     the sidecar's answer's bytes back, nothing parsed): one loopback round
//     trip between two processes, the machine's floor for any server;
//   - tcp-floor-spin, unix-floor-spin: the same with both ends spinning:
//     the kernel's own part of a round trip, the floor of the -spin kinds;
//   - http-floor, fasthttp-floor: a bare net/http and a bare fasthttp
//     server answering every request with the tenant's JSON: the floors of
//     the two Go HTTP servers (the sidecar's own ~1.3 µs not included:
//     tcs/sidecar's BenchmarkServeFastHTTPHit);
//   - grpc-floor: a bare grpc-go server answering Lookup with a fixed
//     response holding the same tenant: the floor of any gRPC lookup;
//   - redis: a GET of the tenant's protobuf bytes from a redis-server on
//     loopback (go-redis), what a team would reach for instead;
//   - redis-raw: the same GET with a minimal RESP client, as http's;
//   - redis-raw-spin, redis-raw-unix, redis-raw-unix-spin: the same over
//     TCP with a spinning caller, and over redis-server's Unix socket with
//     a sleeping and a spinning one: Redis given every advantage the
//     sidecar's figures have but its own spinning, which redis-server
//     does not do.
//
// One run on a shared 2-core VM (load average 2.5-3), medians of -count 5,
// one caller p50 in µs: tcp-floor 51 (one-caller TCP figures move by 2×
// between rounds), tcp-floor-spin 12.9, unix-floor 25, unix-floor-spin 6.7,
// redis 40, redis-raw 44, redis-raw-spin 24, redis-raw-unix 21,
// redis-raw-unix-spin 21, fasthttp-floor 42, http-floor 66, http 36,
// http-unix 23, http-busypoll 36, http-busypoll-spin 15,
// http-unix-busypoll-spin 8.3, grpc-floor 187, grpc 198. The README's
// sidecar section has the whole table.
//
// TCS_BENCH_SIDECAR_GOMAXPROCS sets the GOMAXPROCS of the sidecar and floor
// processes (unset: the machine's). Each reports p50-ns and p99-ns (per
// call, as the caller sees it), req/s and server-cpu-ns/op (the CPU time
// of the answering process per call: what spinning costs); ns/op is the
// wall time per call across the callers. Needs redis-server on PATH
// (tcs/client/bench-deps.sh).
func BenchmarkSidecar(b *testing.B) {
	sys := startSystem(b)
	sock := filepath.Join(b.TempDir(), "tcs.sock")
	sc := startSidecarProcess(b, sys, "", "--unix-socket", sock)
	spinSock := filepath.Join(b.TempDir(), "spin.sock")
	spinning := startSidecarProcess(b, sys, "", "--busy-poll", benchSpin.String(), "--unix-socket", spinSock)
	var base *running
	if bin := os.Getenv("TCS_BENCH_SIDECAR_BASELINE"); bin != "" {
		base = startSidecarProcess(b, sys, bin)
	}
	created := sys.create(b, hooliDoc)
	sc.waitReady(b)
	sc.waitVersion(b, "hooli.example.com", created.Version)
	spinning.waitReady(b)
	spinning.waitVersion(b, "hooli.example.com", created.Version)
	if base != nil {
		base.waitReady(b)
		base.waitVersion(b, "hooli.example.com", created.Version)
	}
	tpb := sys.waitRegionVersion(b, "us-east-1", "hooli.example.com", created.Version).GetTenant()
	doc, err := proto.Marshal(tpb)
	if err != nil {
		b.Fatal(err)
	}
	rs := testredis.StartServer(b, 128)
	rdb := rs.Client
	if err := rdb.Set(context.Background(), "tenant:hooli.example.com", doc, 0).Err(); err != nil {
		b.Fatal(err)
	}
	const path = "/v1/lookup/hooli.example.com"
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: sidecar\r\n\r\n")
	res := rawResponse(b, sc.HTTP, req)
	fl := startFloors(b, tpb, req, res)
	sidecarConn := grpcDial(b, sc.GRPC)
	floorConn := grpcDial(b, fl.GRPC)
	stdlib := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	url := sc.url(path)

	// group is the spinning of the callers of the "-spin" kinds: one for
	// each run of a kind, its callers sharing the spinners, as a
	// process's connections would.
	var group *busypoll.Group
	kinds := []struct {
		name string
		// server is the process answering (its CPU time is measured).
		server int
		// caller makes one caller's lookup function.
		caller func(b *testing.B) func() error
	}{
		{"http", sc.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "tcp", sc.HTTP, nil, path).get
		}},
		{"http-unix", sc.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "unix", sock, nil, path).get
		}},
		{"http-busypoll", spinning.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "tcp", spinning.HTTP, nil, path).get
		}},
		{"http-busypoll-spin", spinning.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "tcp", spinning.HTTP, group, path).get
		}},
		{"http-unix-busypoll-spin", spinning.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "unix", spinSock, group, path).get
		}},
		{"http-stdlib", sc.pid, func(b *testing.B) func() error {
			return func() error {
				res, err := stdlib.Get(url)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					return fmt.Errorf("status %d", res.StatusCode)
				}
				return err
			}
		}},
		{"grpc", sc.pid, func(b *testing.B) func() error {
			api := tcsv1.NewTenantContextServiceClient(sidecarConn)
			req := &tcsv1.LookupRequest{Hostname: "hooli.example.com"}
			return func() error { _, err := api.Lookup(context.Background(), req); return err }
		}},
		{"tcp-floor", fl.pid, func(b *testing.B) func() error {
			return dialPingPong(b, "tcp", fl.TCP, nil, req, len(res)).roundTrip
		}},
		{"tcp-floor-spin", fl.pid, func(b *testing.B) func() error {
			return dialPingPong(b, "tcp", fl.TCPSpin, group, req, len(res)).roundTrip
		}},
		{"unix-floor", fl.pid, func(b *testing.B) func() error {
			return dialPingPong(b, "unix", fl.Unix, nil, req, len(res)).roundTrip
		}},
		{"unix-floor-spin", fl.pid, func(b *testing.B) func() error {
			return dialPingPong(b, "unix", fl.UnixSpin, group, req, len(res)).roundTrip
		}},
		{"http-floor", fl.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "tcp", fl.HTTP, nil, path).get
		}},
		{"fasthttp-floor", fl.pid, func(b *testing.B) func() error {
			return dialRawHTTP(b, "tcp", fl.Fast, nil, path).get
		}},
		{"grpc-floor", fl.pid, func(b *testing.B) func() error {
			api := tcsv1.NewTenantContextServiceClient(floorConn)
			req := &tcsv1.LookupRequest{Hostname: "hooli.example.com"}
			return func() error { _, err := api.Lookup(context.Background(), req); return err }
		}},
		{"redis", rs.Pid, func(b *testing.B) func() error {
			return func() error { return rdb.Get(context.Background(), "tenant:hooli.example.com").Err() }
		}},
		{"redis-raw", rs.Pid, func(b *testing.B) func() error {
			return dialRedisGet(b, "tcp", rs.Addr, nil, "tenant:hooli.example.com").get
		}},
		{"redis-raw-spin", rs.Pid, func(b *testing.B) func() error {
			return dialRedisGet(b, "tcp", rs.Addr, group, "tenant:hooli.example.com").get
		}},
		{"redis-raw-unix", rs.Pid, func(b *testing.B) func() error {
			return dialRedisGet(b, "unix", rs.Socket, nil, "tenant:hooli.example.com").get
		}},
		{"redis-raw-unix-spin", rs.Pid, func(b *testing.B) func() error {
			return dialRedisGet(b, "unix", rs.Socket, group, "tenant:hooli.example.com").get
		}},
	}
	if base != nil {
		baseConn := grpcDial(b, base.GRPC)
		kinds = append(kinds[:2:2], append([]struct {
			name   string
			server int
			caller func(b *testing.B) func() error
		}{
			{"http-baseline", base.pid, func(b *testing.B) func() error {
				return dialRawHTTP(b, "tcp", base.HTTP, nil, path).get
			}},
			{"grpc-baseline", base.pid, func(b *testing.B) func() error {
				api := tcsv1.NewTenantContextServiceClient(baseConn)
				req := &tcsv1.LookupRequest{Hostname: "hooli.example.com"}
				return func() error { _, err := api.Lookup(context.Background(), req); return err }
			}},
		}, kinds[2:]...)...)
	}
	for _, callers := range []int{1, 64} {
		for _, k := range kinds {
			b.Run(fmt.Sprintf("%s/callers=%d", k.name, callers), func(b *testing.B) {
				group = busypoll.New(busypoll.Options{Spin: benchSpin})
				fns := make([]func() error, callers)
				for i := range fns {
					fns[i] = k.caller(b)
				}
				var before [3]float64
				if k.server == spinning.pid {
					before = busyPollReads(b, spinning)
				}
				measure(b, k.server, fns)
				if k.server == spinning.pid {
					after := busyPollReads(b, spinning)
					for i, unit := range []string{"caught/op", "missed/op", "parked/op"} {
						b.ReportMetric((after[i]-before[i])/float64(b.N), unit)
					}
				}
			})
		}
	}
}

// busyPollReads scrapes tcs_sidecar_busy_poll_reads_total of s: its
// caught, missed and parked counts.
func busyPollReads(tb testing.TB, s *running) (n [3]float64) {
	tb.Helper()
	_, _, body := httpGet(tb, s.http, s.url("/metrics"))
	for i, outcome := range []string{"caught", "missed", "parked"} {
		m := regexp.MustCompile(`(?m)^tcs_sidecar_busy_poll_reads_total\{component="sidecar",outcome="` + outcome + `"\} (\S+)$`).FindSubmatch(body)
		if m == nil {
			tb.Fatalf("/metrics has no busy-poll %s reads:\n%s", outcome, body)
		}
		var err error
		if n[i], err = strconv.ParseFloat(string(m[1]), 64); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// benchSpin is how long the spinning kinds' reads spin (--busy-poll).
const benchSpin = 200 * time.Microsecond

// startSidecarProcess builds tcs-sidecar and runs it on sys's regions with
// free loopback ports (and args) until b ends.
func startSidecarProcess(b *testing.B, sys *system, bin string, args ...string) *running {
	b.Helper()
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "tcs-sidecar")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(bin, append([]string{"--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--drain-delay", "0s", "--log-level", "warn"}, args...)...)
	cmd.Env = append(cmd.Environ(), "TCS_REGIONS="+sys.regions, "TCS_LOOKUP_TOKEN="+sysLookupToken)
	// "tcs-sidecar: HTTP 127.0.0.1:P, unix …, gRPC 127.0.0.1:Q; regions …"
	line, stderr, err := startBenchProcess(b, cmd)
	s := running{pid: cmd.Process.Pid}
	if _, serr := fmt.Sscanf(line, "tcs-sidecar: HTTP %s unix %s gRPC %s", &s.HTTP, &s.Unix, &s.GRPC); err != nil || serr != nil {
		b.Fatalf("tcs-sidecar's first line %q: %v %v\n%s", line, err, serr, stderr)
	}
	s.HTTP, s.Unix, s.GRPC = strings.TrimSuffix(s.HTTP, ","), strings.TrimSuffix(s.Unix, ","), strings.TrimSuffix(s.GRPC, ";")
	s.http = &http.Client{Timeout: 10 * time.Second}
	return &s
}

// startBenchProcess starts cmd with the sidecar's GOMAXPROCS
// (TCS_BENCH_SIDECAR_GOMAXPROCS), stops it (SIGTERM) when b ends, and
// returns the first line it prints, its stderr, and the error reading the line.
func startBenchProcess(b *testing.B, cmd *exec.Cmd) (string, *lockedBuffer, error) {
	b.Helper()
	cmd.Env = append(cmd.Env, "GOMAXPROCS="+os.Getenv("TCS_BENCH_SIDECAR_GOMAXPROCS"))
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	return line, stderr, err
}

// measure runs b.N calls spread over the callers, each timed, and reports
// their p50, p99, the calls per second and the CPU time the server process
// (pid) used per call.
func measure(b *testing.B, pid int, callers []func() error) {
	for _, f := range callers { // warm each connection
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	n := len(callers)
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	b.ReportAllocs()
	cpu0 := cpuTime(b, pid)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, f := range callers {
		count := b.N / n
		if i < b.N%n {
			count++
		}
		lat[i] = make([]time.Duration, 0, count)
		wg.Go(func() {
			for range count {
				t0 := time.Now()
				if err := f(); err != nil {
					errs[i] = err
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime(b, pid) - cpu0
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(all[min(len(all)-1, len(all)*99/100)].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(all)), "server-cpu-ns/op")
}

// cpuTime is the CPU time process pid has used (user and system, all its
// threads), from /proc/PID/stat: in 10 ms ticks, so a figure per call is
// good to some 10 ms over the run.
func cpuTime(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// pid (comm) state ppid … : utime and stime are the 14th and 15th
	// fields, the 12th and 13th after the command's closing parenthesis.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ
}

// rawHTTP is a minimal HTTP/1.1 client on one kept-alive connection: it
// writes a fixed GET and reads the answer's headers and Content-Length
// bytes, so that a benchmark measures the server rather than a client.
type rawHTTP struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	body []byte
}

func dialRawHTTP(b *testing.B, network, addr string, spin *busypoll.Group, path string) *rawHTTP {
	conn := benchDial(b, network, addr, spin)
	return &rawHTTP{conn: conn, r: bufio.NewReaderSize(conn, 16<<10), req: []byte("GET " + path + " HTTP/1.1\r\nHost: sidecar\r\n\r\n"), body: make([]byte, 16<<10)}
}

var contentLength = []byte("content-length:")

func (h *rawHTTP) get() error {
	if _, err := h.conn.Write(h.req); err != nil {
		return err
	}
	status, err := h.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", status)
	}
	n := -1
	for {
		line, err := h.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > len(contentLength) && bytes.EqualFold(line[:len(contentLength)], contentLength) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(line[len(contentLength):])))
			if err != nil {
				return err
			}
		}
	}
	if n < 0 || n > len(h.body) {
		return fmt.Errorf("content-length %d", n)
	}
	_, err = io.ReadFull(h.r, h.body[:n])
	return err
}

func grpcDial(b *testing.B, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// rawResponse sends req on a new connection to the HTTP server at addr
// and returns its answer byte for byte (headers and body).
func rawResponse(b *testing.B, addr string, req []byte) []byte {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		b.Fatal(err)
	}
	var raw bytes.Buffer
	res, err := http.ReadResponse(bufio.NewReader(io.TeeReader(conn, &raw)), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("GET from the sidecar: %s, %v", res.Status, err)
	}
	return raw.Bytes()
}
