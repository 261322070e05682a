package emulators_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestStartRefusesPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, kind := range []emulators.Kind{emulators.DynamoDB, emulators.Kinesis, emulators.SNSSQS} {
		p, err := emulators.Start(kind, port)
		if err == nil {
			p.Stop()
			t.Fatalf("Start(%s, %d) with the port taken: no error", kind, port)
		}
		if !errors.Is(err, emulators.ErrPortInUse) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
			t.Errorf("Start(%s, %d) with the port taken: %v; want ErrPortInUse naming the port", kind, port, err)
		}
	}
}

func TestStartUnknownKindOrBadPort(t *testing.T) {
	t.Parallel()
	if _, err := emulators.Start("redis", 0); err == nil || !strings.Contains(err.Error(), `unknown kind "redis"`) {
		t.Errorf("Start(redis): %v, want an unknown-kind error", err)
	}
	if _, err := emulators.Start(emulators.Kinesis, 70000); err == nil || !strings.Contains(err.Error(), "70000") {
		t.Errorf("Start(kinesalite, 70000): %v, want an out-of-range error naming the port", err)
	}
}

// starterEnv makes the test binary, run again by TestEmulatorsDieWithStarter,
// act as the starter: start every emulator, print their pids and ports, and
// wait to be killed.
const starterEnv = "EMULATORS_TEST_STARTER"

func TestMain(m *testing.M) {
	if os.Getenv(starterEnv) != "" {
		runStarter()
		return
	}
	os.Exit(emulators.Main(m))
}

func runStarter() {
	for _, kind := range []emulators.Kind{emulators.DynamoDB, emulators.Kinesis, emulators.SNSSQS} {
		p, err := emulators.Start(kind, 0)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("started", p.Pid(), strings.TrimPrefix(p.Endpoint, "http://"))
	}
	fmt.Println("ready")
	select {}
}

// TestEmulatorsDieWithStarter starts the emulators from another process, kills
// that process with SIGKILL (no chance to clean up) and checks that the
// kernel took the emulators down with it: the processes are gone and their
// ports closed.
func TestEmulatorsDieWithStarter(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts every emulator")
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), starterEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	type started struct {
		pid  int
		addr string
	}
	var emus []started
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "ready" {
			break
		}
		if len(f) != 3 || f[0] != "started" {
			_ = cmd.Process.Kill()
			t.Fatalf("starter: %s", sc.Text())
		}
		pid, _ := strconv.Atoi(f[1])
		emus = append(emus, started{pid, f[2]})
	}
	go func() { _ = cmd.Wait(); close(waited) }()
	if len(emus) != 3 {
		_ = cmd.Process.Kill()
		t.Fatalf("starter started %d emulators, want 3: %v", len(emus), sc.Err())
	}
	for _, e := range emus {
		if !alive(e.pid) {
			t.Fatalf("emulator pid %d not running before the starter was killed", e.pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-waited
	for _, e := range emus {
		t.Cleanup(func() {
			if alive(e.pid) {
				_ = syscall.Kill(e.pid, syscall.SIGKILL)
			}
		})
		testwait.Until(t, 10*time.Second, 20*time.Millisecond, fmt.Sprintf("emulator pid %d (%s) to exit after its starter was SIGKILLed", e.pid, e.addr), func() (bool, string) {
			a, open := alive(e.pid), accepts(e.addr)
			return !a && !open, fmt.Sprintf("alive %v, port open %v", a, open)
		})
	}
}

func accepts(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// alive reports whether pid runs: it exists and is not a zombie (an orphan
// waits to be reaped by init, which may take a moment or, in a container
// without a reaping init, forever). A multi-threaded process (java) shows its
// main thread as a zombie while the others still exit, so callers also wait
// for its port to close.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
