// Package e2e_test runs `make run-aws-local`'s script — the AWS topology on
// local emulators, every binary a separate process — and drives it with
// tcsctl as a user would: the one test of the real binaries talking to each
// other across processes on the AWS backends.
package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/freeport"
	"github.com/tcs-dev/tcs/internal/testio"
)

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s", dir)
	}
	return dir
}

// scriptRun is one run of infra/run-aws-local.sh on free ports.
type scriptRun struct {
	cmd     *exec.Cmd
	ports   map[string]int
	regions string // REGIONS
	catalog string // CATALOG_ADDR
	logs    string
	exited  chan error
	banner  chan struct{}
	out     *testio.SyncBuffer // written by the scanner goroutine, read by the test
	stderr  *testio.SyncBuffer // written by exec's copying goroutine
	stopped bool
}

// startScript starts infra/run-aws-local.sh on free ports, in its own process
// group (so that the test can signal it and its children like a terminal's
// Ctrl-C does); ports overrides some of them. The cleanup SIGKILLs the group
// if the test did not stop it.
func startScript(t *testing.T, ports map[string]int) *scriptRun {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs the AWS topology on the emulators, every binary a process")
	}
	root := repoRoot(t)
	p := map[string]int{}
	for _, name := range []string{"ddb", "kin", "sqs", "cat", "r1", "r2", "r3"} {
		p[name] = freePort(t)
		if v, ok := ports[name]; ok {
			p[name] = v
		}
	}
	// The binaries' metrics ports count from one base (see the script).
	metrics, err := freeport.Block(24)
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptRun{
		ports:   p,
		regions: fmt.Sprintf("us-east-1=127.0.0.1:%d,eu-west-1=127.0.0.1:%d,ap-southeast-2=127.0.0.1:%d", p["r1"], p["r2"], p["r3"]),
		catalog: fmt.Sprintf("127.0.0.1:%d", p["cat"]),
		logs:    t.TempDir(),
		exited:  make(chan error, 1),
		banner:  make(chan struct{}),
		out:     new(testio.SyncBuffer),
		stderr:  new(testio.SyncBuffer),
	}
	s.cmd = exec.Command("bash", filepath.Join(root, "infra/run-aws-local.sh"))
	s.cmd.Dir = root
	s.cmd.Env = append(os.Environ(),
		fmt.Sprintf("DYNAMODB_PORT=%d", p["ddb"]), fmt.Sprintf("KINESIS_PORT=%d", p["kin"]), fmt.Sprintf("SNSSQS_PORT=%d", p["sqs"]),
		"CATALOG_ADDR="+s.catalog, "REGIONS="+s.regions, fmt.Sprintf("METRICS_PORT=%d", metrics), "LOGS="+s.logs, "TCS_AWS_PREFIX=e2e",
		"TCS_ADMIN_TOKEN=dev-admin-token", "TCS_READER_TOKEN=dev-reader-token", "TCS_LOOKUP_TOKEN=dev-lookup-token", "TCS_SCAN_TOKEN=dev-scan-token")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			fmt.Fprintln(s.out, sc.Text())
			if !seen && strings.Contains(sc.Text(), "TCS is running on the AWS backends") {
				seen = true
				close(s.banner)
			}
		}
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if !s.stopped {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return s
}

// dump returns the script's output and the tail of every log, for failures.
// Call it only once the script has exited or printed its banner (the
// output buffers are written by the reading goroutine until then).
func (s *scriptRun) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stdout:\n%s\nstderr:\n%s\n", s.out.String(), s.stderr.String())
	entries, _ := os.ReadDir(s.logs)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(s.logs, e.Name()))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", e.Name(), data)
	}
	return b.String()
}

// waitReady waits for the banner.
func (s *scriptRun) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-s.banner:
	case err := <-s.exited:
		s.stopped = true
		t.Fatalf("run-aws-local.sh exited before it was ready: %v\n%s", err, s.dump())
	case <-time.After(5 * time.Minute):
		t.Fatalf("run-aws-local.sh not ready within 5 minutes\n%s", s.dump())
	}
}

// TestRunAWSLocal starts infra/run-aws-local.sh on free ports, writes a
// tenant through the catalog, waits for every region to serve it (tcsctl
// lookup), checks that verify finds the regions clean, kills one of the two
// publishers with -9 (the script reports it and keeps running; a second
// write still reaches every region), then stops the script with SIGINT as
// Ctrl-C would and checks that everything it started exited.
func TestRunAWSLocal(t *testing.T) {
	root := repoRoot(t)
	s := startScript(t, nil)
	p, regions, catalog, logs := s.ports, s.regions, s.catalog, s.logs
	exited, dump := s.exited, s.dump
	s.waitReady(t)

	// A write through the catalog process...
	api, err := httpclient.New("http://"+catalog, httpclient.WithToken("dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(context.Background(), json.RawMessage(`{"id":"acme","hostnames":["acme.example.com"]}`)); err != nil {
		t.Fatalf("create: %v\n%s", err, dump())
	}

	// ...reaches every region's tcs process, through Kinesis and the
	// appliers' processes; tcsctl is the client.
	tcsctl := filepath.Join(root, ".bin", "tcsctl")
	env := append(os.Environ(), "TCS_CATALOG_URL=http://"+catalog, "TCS_REGIONS="+regions,
		"TCS_ADMIN_TOKEN=dev-admin-token", "TCS_LOOKUP_TOKEN=dev-lookup-token", "TCS_SCAN_TOKEN=dev-scan-token")
	servedEverywhere := func(id string, within time.Duration) {
		t.Helper()
		for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
			deadline := time.Now().Add(within)
			for {
				c := exec.Command(tcsctl, "lookup", id+".example.com", "--region", r)
				c.Env = env
				got, err := c.CombinedOutput()
				if err == nil && strings.Contains(string(got), `"id": "`+id+`"`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never served %s: %v %s\n%s", r, id, err, got, dump())
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	servedEverywhere("acme", 30*time.Second)
	// The catalog's propagation status finds the tcs processes in the
	// tcs-nodes table and asks them (TCS_SCAN_TOKEN): every region has it.
	c := exec.Command(tcsctl, "wait", "acme", "--version", "1", "--timeout", "30s")
	c.Env = env
	if got, err := c.CombinedOutput(); err != nil {
		t.Errorf("tcsctl wait acme --version 1: %v\n%s\n%s", err, got, dump())
	}
	c = exec.Command(tcsctl, "verify")
	c.Env = env
	if got, err := c.CombinedOutput(); err != nil || !strings.Contains(string(got), "clean") {
		t.Errorf("tcsctl verify: %v\n%s", err, got)
	}

	// A publisher killed with -9 is reported, not a reason to stop: the
	// other takes its shards over (lease duration 10 s) and a write still
	// reaches every region.
	pub := scriptChild(t, s.cmd.Process.Pid, "--worker-id publish-1")
	if err := syscall.Kill(pub, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(context.Background(), json.RawMessage(`{"id":"globex","hostnames":["globex.example.com"]}`)); err != nil {
		t.Fatalf("create after a publisher died: %v\n%s", err, dump())
	}
	servedEverywhere("globex", time.Minute)
	select {
	case err := <-exited:
		s.stopped = true
		t.Fatalf("run-aws-local.sh exited when a publisher died: %v\n%s", err, dump())
	default:
	}
	if msg := s.stderr.String(); !strings.Contains(msg, fmt.Sprintf("publish-1 (pid %d) died; the other publisher takes its outbox shards over", pub)) {
		t.Errorf("the script did not report the publisher's death; stderr:\n%s", msg)
	}

	// Ctrl-C stops everything; tcs nodes remove their queues first (the
	// script keeps the emulators up until the binaries are gone).
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		s.stopped = true
	case <-time.After(2 * time.Minute):
		t.Fatalf("run-aws-local.sh did not stop within 2 minutes of SIGINT\n%s", dump())
	}
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		data, _ := os.ReadFile(filepath.Join(logs, "tcs-"+r+".log"))
		if !bytes.Contains(data, []byte("removed the invalidation queue")) {
			t.Errorf("tcs %s did not remove its queue at the stop:\n%s", r, data)
		}
	}
	// Nothing it started still listens.
	for name, port := range p {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			conn.Close()
			t.Errorf("%s port %d still accepts connections after the stop", name, port)
		}
	}
}

// scriptChild returns the pid of the process of the script's process group
// pgid whose command line contains arg.
func scriptChild(t *testing.T, pgid int, arg string) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), arg) && strings.Contains(string(cmdline), "streamer") {
			return pid
		}
	}
	t.Fatalf("no process with %q in its command line in process group %d", arg, pgid)
	return 0
}

// TestRunAWSLocalDiesWithItsScript kills the script alone with SIGKILL (no
// trap runs, its children are not signalled) and checks that every process
// it started died with it: nothing listens on any of its ports.
func TestRunAWSLocalDiesWithItsScript(t *testing.T) {
	s := startScript(t, nil)
	s.waitReady(t)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	for name, port := range s.ports {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(15 * time.Second)
		for {
			conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err != nil {
				break
			}
			conn.Close()
			if time.Now().After(deadline) {
				t.Errorf("%s (%s) still accepts connections 15s after run-aws-local.sh was SIGKILLed", name, addr)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s.stopped = !t.Failed()
}

// TestRunAWSLocalRefusesPortInUse: a port that something already listens on
// stops the script before it starts anything, with a message naming the port
// and the variable that moves it.
func TestRunAWSLocalRefusesPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s := startScript(t, map[string]int{"kin": port})
	select {
	case err := <-s.exited:
		s.stopped = true
		if err == nil {
			t.Fatalf("run-aws-local.sh with the Kinesis port taken exited 0\n%s", s.dump())
		}
	case <-s.banner:
		t.Fatalf("run-aws-local.sh started with the Kinesis port %d taken\n%s", port, s.dump())
	case <-time.After(time.Minute):
		t.Fatalf("run-aws-local.sh with the Kinesis port taken still runs after a minute")
	}
	msg := s.stderr.String()
	if !strings.Contains(msg, fmt.Sprintf("port %d (Kinesis) is already in use", port)) || !strings.Contains(msg, "KINESIS_PORT") {
		t.Errorf("stderr %q; want it to name port %d and KINESIS_PORT", msg, port)
	}
	entries, _ := os.ReadDir(s.logs)
	if len(entries) != 0 {
		t.Errorf("it started processes before refusing (logs: %v)", entries)
	}
}
