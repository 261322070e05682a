// Package emulators starts the local stand-ins for AWS services that the AWS
// backends' tests run against. The stand-ins are installed into .emulators/
// at the repository root by infra/emulators/install.sh (CI runs it first);
// a test that needs one and does not find it fails, naming the script — it
// never skips, except under `go test -short` (below).
//
// StartDynamoDB, StartKinesis (kinesalite) and StartSNSSQS (fauxqs) start a
// private emulator for one test; SharedDynamoDB, SharedKinesis, SharedSNSSQS
// and SharedAWS start one per test binary, on first use, stopped by Main
// (call it from TestMain), or use the ones $TCS_EMULATORS names (EndpointsEnv:
// `make test` starts one set for every test binary with cmd/emulators).
// Tests sharing emulators isolate themselves by name (Name).
//
// Under `go test -short` every test that asks for an emulator (Start*,
// Shared*) is skipped, so that the short run needs no emulators and stays
// quick. Benchmarks are not: `go test -short -bench` is make bench-smoke's
// smoke run of every benchmark, the AWS backends' included.
//
// Start starts one outside a test (the chaos suite, cmd/emulators), on a
// port of the caller's choice, and refuses a port that something already
// listens on, rather than silently talking to an emulator left over from an
// earlier run.
//
// Every emulator is started with a parent-death signal (Linux): if whoever
// started it dies without stopping it (a panic, a timeout, SIGKILL), the
// kernel kills it too. The signal is tied to the OS thread that started the
// child; Go only ends a thread when a goroutine that locked it exits, so call
// Start from an ordinary goroutine, never from one that called
// runtime.LockOSThread. java and node are started directly (no wrapper
// script), so the signal reaches the emulator itself. An emulator that dies
// while in use says so on stderr.
package emulators

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tcs-dev/tcs/internal/freeport"
)

// DirEnv names the environment variable that overrides where install.sh put
// the emulators (default: <repo>/.emulators).
const DirEnv = "EMULATORS_DIR"

// StartTimeout bounds how long a start waits for the emulator's port.
const StartTimeout = 60 * time.Second

const installHint = "run infra/emulators/install.sh (from the repository root) to install the local AWS emulators"

// Dir returns the folder install.sh installs into: $EMULATORS_DIR, or
// .emulators at the root of the module that holds the working directory (go
// test runs a package's tests in the package's folder).
func Dir() (string, error) {
	if d := os.Getenv(DirEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the emulators: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".emulators"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find the emulators: no go.mod above %s; set %s", wd, DirEnv)
		}
		dir = parent
	}
}

// Process is a running emulator.
type Process struct {
	Endpoint string // http://127.0.0.1:port
	cmd      *exec.Cmd
	done     chan struct{}
	stderr   *syncBuffer
	// started is set once the emulator listens, stopping by Stop.
	started, stopping atomic.Bool
}

// Pid is the emulator's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the emulator (the chaos suite freezes one with SIGSTOP
// and thaws it with SIGCONT).
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the emulator has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Output returns the last 4 KiB of what the emulator wrote to stdout and
// stderr.
func (p *Process) Output() string {
	return p.stderr.tail(4096)
}

// syncBuffer collects a process's output; exec copies into it from its own
// goroutine while Output reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n bytes written.
func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf.Bytes()
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(out)
}

func (b *syncBuffer) String() string { return b.tail(1 << 20) }

// Stop kills the emulator and waits for it to exit.
func (p *Process) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.stopping.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// StartDynamoDB starts a private in-memory DynamoDB Local, waits until it
// accepts connections, and stops it when tb ends. It returns the endpoint URL.
func StartDynamoDB(tb testing.TB) (endpoint string) {
	tb.Helper()
	return startPrivate(tb, DynamoDB, startDynamoDB)
}

// short reports whether the tests run with -short; a variable so that the
// package's own tests can check both ways.
var short = testing.Short

// skipIfShort skips tb under -short if it is a test: the one place every
// emulator test passes through. A benchmark runs only when asked for
// (-bench), and under -short it is a smoke run (make bench-smoke) that
// should take the AWS backends' code paths too, so it gets its emulators.
func skipIfShort(tb testing.TB, kind Kind) {
	tb.Helper()
	if _, bench := tb.(*testing.B); short() && !bench {
		tb.Skipf("-short: skipping a test that needs %s (an AWS emulator)", kind)
	}
}

// startPrivate starts an emulator for tb alone and stops it when tb ends.
func startPrivate(tb testing.TB, kind Kind, start func() (*Process, error)) (endpoint string) {
	tb.Helper()
	skipIfShort(tb, kind)
	p, err := start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p.Endpoint
}

// nodePackage finds node and the npm package name installed by install.sh,
// checking that file exists in it; errors say how to install what is
// missing.
func nodePackage(name, file string) (node, pkg string, err error) {
	dir, err := Dir()
	if err != nil {
		return "", "", err
	}
	pkg = filepath.Join(dir, "node", "node_modules", name)
	if _, err := os.Stat(filepath.Join(pkg, file)); err != nil {
		return "", "", fmt.Errorf("%s is not installed (%s: %v): %s", name, pkg, errors.Unwrap(err), installHint)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("%s needs node, which is not on PATH: install Node.js 20 or later, then %s", name, installHint)
	}
	return node, pkg, nil
}

// sharedProcess is one emulator shared by a whole test binary: the one
// EndpointsEnv names, or one started on first use and stopped by Main.
type sharedProcess struct {
	kind     Kind
	once     sync.Once
	start    func() (*Process, error)
	p        *Process // nil when EndpointsEnv names the emulator
	endpoint string
	err      error
}

// sharedProcesses lists every shared emulator, so that Main stops them all.
var sharedProcesses []*sharedProcess

func newShared(kind Kind, start func() (*Process, error)) *sharedProcess {
	s := &sharedProcess{kind: kind, start: start}
	sharedProcesses = append(sharedProcesses, s)
	return s
}

func (s *sharedProcess) get(tb testing.TB) string {
	tb.Helper()
	skipIfShort(tb, s.kind)
	s.once.Do(func() {
		if s.endpoint, s.err = fromEnv(s.kind); s.err != nil || s.endpoint != "" {
			return
		}
		if s.p, s.err = s.start(); s.err == nil {
			s.endpoint = s.p.Endpoint
		}
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.endpoint
}

var sharedDynamoDB = newShared(DynamoDB, startDynamoDB)

// SharedDynamoDB returns the endpoint of the test binary's DynamoDB Local:
// the one EndpointsEnv names, or one started on first use (~3 s for the
// JVM) that Main stops. Tests sharing it must use their own tables (Name).
func SharedDynamoDB(tb testing.TB) (endpoint string) {
	tb.Helper()
	return sharedDynamoDB.get(tb)
}

// Main runs the tests and stops the shared emulators. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	for _, s := range sharedProcesses {
		s.p.Stop()
	}
	return code
}

// Kind names an emulator.
type Kind string

// The emulators Start knows.
const (
	DynamoDB Kind = "DynamoDB Local"
	Kinesis  Kind = "kinesalite"
	SNSSQS   Kind = "fauxqs"
)

// ErrPortInUse is returned (wrapped, naming the port and what to do) by
// Start when something already accepts connections on the port it was asked
// to use.
var ErrPortInUse = errors.New("port already in use")

// Start starts the emulator kind on 127.0.0.1:port (0: a free port) and
// waits until it accepts connections; the caller stops it with Stop. A port
// that something already listens on is refused with ErrPortInUse: an
// emulator left over from an earlier run would otherwise answer in place of
// the new one, with its old state.
func Start(kind Kind, port int) (*Process, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("start %s: port %d out of range 0-65535", kind, port)
	}
	if port != 0 {
		if err := checkPortFree(port); err != nil {
			return nil, fmt.Errorf("start %s: %w", kind, err)
		}
	}
	switch kind {
	case DynamoDB:
		return startDynamoDBOn(port)
	case Kinesis:
		return startKinesisOn(port)
	case SNSSQS:
		return startFauxqsOn(port)
	}
	return nil, fmt.Errorf("start emulator: unknown kind %q (want %q, %q or %q)", kind, DynamoDB, Kinesis, SNSSQS)
}

// checkPortFree fails with ErrPortInUse when 127.0.0.1:port accepts
// connections.
func checkPortFree(port int) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return nil
	}
	conn.Close()
	return fmt.Errorf("127.0.0.1:%d: %w: another process listens on it (an emulator left over from an earlier run? see `ss -ltnp 'sport = :%d'`); stop it or choose another port", port, ErrPortInUse, port)
}

// portOrFree returns port, or a free port if it is 0.
func portOrFree(port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	return freeport.Port()
}

func startDynamoDB() (*Process, error) { return startDynamoDBOn(0) }

func startDynamoDBOn(port int) (*Process, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "dynamodb-local")
	jar := filepath.Join(home, "DynamoDBLocal.jar")
	if _, err := os.Stat(jar); err != nil {
		return nil, fmt.Errorf("DynamoDB Local is not installed (%s: %v): %s", jar, errors.Unwrap(err), installHint)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("DynamoDB Local needs java, which is not on PATH: %s (it installs a JRE when java is missing)", installHint)
	}
	port, err = portOrFree(port)
	if err != nil {
		return nil, err
	}
	// DynamoDB Local has no bind-address option (see -help): it listens on
	// every interface. Tests reach it on loopback only.
	cmd := exec.Command(java,
		"-Djava.library.path="+filepath.Join(home, "DynamoDBLocal_lib"),
		"-jar", jar, "-inMemory", "-sharedDb", "-disableTelemetry", "-port", fmt.Sprint(port))
	cmd.Dir = home
	return start(cmd, "DynamoDB Local", port)
}

// start runs cmd and waits until 127.0.0.1:port accepts connections, the
// process exits, or StartTimeout passes.
func start(cmd *exec.Cmd, name string, port int) (*Process, error) {
	stderr := new(syncBuffer)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{}), stderr: stderr}
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		// An emulator that dies while tests use it makes them fail with
		// "connection refused"; say why, once its output is complete.
		if p.started.Load() && !p.stopping.Load() {
			out := stderr.tail(4096)
			fmt.Fprintf(os.Stderr, "emulators: %s at %s exited while in use: %v\n%s\n", name, p.Endpoint, waitErr, out)
		}
		close(p.done)
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(StartTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			p.started.Store(true)
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before listening on %s: %v\n%s", name, addr, waitErr, stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s did not listen on %s within %v\n%s", name, addr, StartTimeout, stderr)
		}
	}
}

// AWS is the set of shared emulators standing in for the AWS services TCS
// uses.
type AWS struct {
	DynamoDB, Kinesis, SNSSQS string // endpoint URLs
}

// SharedAWS starts (on first use) the shared DynamoDB Local, kinesalite and
// fauxqs and returns their endpoints.
func SharedAWS(tb testing.TB) AWS {
	tb.Helper()
	return AWS{DynamoDB: SharedDynamoDB(tb), Kinesis: SharedKinesis(tb), SNSSQS: SharedSNSSQS(tb)}
}

// Env is the environment that points the AWS SDK's default configuration
// chain at the emulators (static credentials, us-east-1), as the binaries
// read it.
func (a AWS) Env() map[string]string {
	return map[string]string{
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"AWS_ENDPOINT_URL_DYNAMODB": a.DynamoDB,
		"AWS_ENDPOINT_URL_KINESIS":  a.Kinesis,
		"AWS_ENDPOINT_URL_SNS":      a.SNSSQS,
		"AWS_ENDPOINT_URL_SQS":      a.SNSSQS,
		// No shared config or credentials files of the machine's user.
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	}
}

// Setenv sets Env for the rest of the test (tb.Setenv: not with t.Parallel).
func (a AWS) Setenv(tb testing.TB) {
	tb.Helper()
	for k, v := range a.Env() {
		tb.Setenv(k, v)
	}
}

var dynamoDBClient struct {
	sync.Mutex
	c *dynamodb.Client
}

// SharedDynamoDBClient returns a client of the test binary's DynamoDB Local
// (SharedDynamoDB), made once: region us-east-1, static credentials, and no
// response checksum check (DynamoDB Local's error responses carry no CRC32
// the SDK accepts).
func SharedDynamoDBClient(tb testing.TB) *dynamodb.Client {
	tb.Helper()
	endpoint := SharedDynamoDB(tb)
	dynamoDBClient.Lock()
	defer dynamoDBClient.Unlock()
	if dynamoDBClient.c == nil {
		dynamoDBClient.c = dynamodb.New(dynamodb.Options{
			BaseEndpoint:                    aws.String(endpoint),
			Region:                          "us-east-1",
			Credentials:                     credentials.NewStaticCredentialsProvider("test", "test", ""),
			DisableValidateResponseChecksum: true,
		})
	}
	return dynamoDBClient.c
}
