//go:build linux

package chaos

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testwait"
)

// starterEnv makes the test binary, run again by TestProcDiesWithSuite,
// start a Proc, print its pid and wait to be killed.
const starterEnv = "CHAOS_TEST_STARTER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(starterEnv); dir != "" {
		p := sleeper(dir)
		if err := p.Start(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("started", p.Pid())
		select {}
	}
	os.Exit(m.Run())
}

func sleeper(dir string) *Proc {
	return &Proc{Name: "sleep", path: "/bin/sleep", args: []string{"300"}, logPath: filepath.Join(dir, "sleep.log"),
		ready: func(context.Context) error { return nil }}
}

func TestProcKillAndRestart(t *testing.T) {
	t.Parallel()
	p := sleeper(t.TempDir())
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	first := p.Pid()
	if err := p.Start(); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("Start of a running process: %v, want an already-running error", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Alive() || p.Pid() != 0 {
		t.Fatalf("after Kill: alive %v pid %d", p.Alive(), p.Pid())
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if !p.Alive() || p.Pid() == first || p.Pid() == 0 {
		t.Fatalf("after a restart: alive %v pid %d (first %d)", p.Alive(), p.Pid(), first)
	}
	log, err := os.ReadFile(p.logPath)
	if err != nil || strings.Count(string(log), "=== chaos: starting sleep") != 2 {
		t.Errorf("log %q (%v): want one start line per start", log, err)
	}
}

// TestProcDiesWithSuite: a process the suite started dies when the suite is
// killed with SIGKILL.
func TestProcDiesWithSuite(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), starterEnv+"="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		_ = cmd.Process.Kill()
		t.Fatalf("starter printed nothing: %v", sc.Err())
	}
	f := strings.Fields(sc.Text())
	pid, err := strconv.Atoi(f[len(f)-1])
	if len(f) != 2 || f[0] != "started" || err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("starter: %s", sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Cleanup(func() {
		if running(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testwait.Until(t, 10*time.Second, 20*time.Millisecond, fmt.Sprintf("pid %d to exit after the suite that started it was SIGKILLed", pid), func() (bool, string) {
		return !running(pid), "it still runs"
	})
}

// running: pid exists and is not a zombie (waiting for a reaper).
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
