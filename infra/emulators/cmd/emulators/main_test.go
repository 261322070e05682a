package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tcs-dev/tcs/infra/emulators"
)

// TestRunCommand starts the emulators, runs a command that checks it sees
// them through TCS_EMULATORS and fails with status 3, and checks that run
// passes the status on, wrote the env file, and stopped the emulators
// (their stop, which kills each and waits for it to exit, had returned when
// run did). It does not dial the freed ports: another test binary running
// at the same time may listen on one by then.
func TestRunCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts every emulator")
	}
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), "emulators.env")
	// The command dials each endpoint (bash's /dev/tcp) and prints the variable.
	script := `set -e
for e in $(echo "$TCS_EMULATORS" | tr , ' '); do
	hp=${e#*=http://}
	exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}"
	exec 3>&-
done
echo "$TCS_EMULATORS"
exit 3`
	var stdout, stderr bytes.Buffer
	var stopped atomic.Bool
	startAll := func() (emulators.AWS, func(), error) {
		aws, stop, err := emulators.StartAll()
		if err != nil {
			return aws, stop, err
		}
		return aws, func() { stop(); stopped.Store(true) }, nil
	}
	err := runWith(startAll, t.Context(), []string{"--env-file", envFile, "--", "bash", "-c", script}, nil, &stdout, &stderr)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("run = %v, want the command's exit status 3\nstderr: %s", err, &stderr)
	}
	aws, err := emulators.ParseEndpoints(strings.TrimSpace(stdout.String()))
	if err != nil || aws.DynamoDB == "" || aws.Kinesis == "" || aws.SNSSQS == "" {
		t.Fatalf("the command saw TCS_EMULATORS=%q (%v), want all three emulators", stdout.String(), err)
	}
	file, err := os.ReadFile(envFile)
	if err != nil || string(file) != emulators.EndpointsEnv+"="+aws.String()+"\n" {
		t.Errorf("--env-file holds %q (%v), want the line the command saw", file, err)
	}
	if !stopped.Load() {
		t.Error("run returned without stopping the emulators")
	}
}

// TestRunUntilInterrupted: without a command, run prints the variable and
// returns, stopping the emulators, once its context ends.
func TestRunUntilInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts every emulator")
	}
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out := &lineWriter{lines: make(chan string, 1)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, nil, out, new(bytes.Buffer)) }()
	var line string
	select {
	case line = <-out.lines:
	case err := <-done:
		t.Fatalf("run returned before printing the endpoints: %v", err)
	}
	value, ok := strings.CutPrefix(line, emulators.EndpointsEnv+"=")
	if aws, err := emulators.ParseEndpoints(value); !ok || err != nil || aws.SNSSQS == "" {
		t.Fatalf("run printed %q (%v), want %s=<endpoints>", line, err, emulators.EndpointsEnv)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after its context ended: %v", err)
	}
}

// lineWriter sends each write (a line) on lines.
type lineWriter struct{ lines chan string }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.lines <- strings.TrimSpace(string(p))
	return len(p), nil
}

func TestRunBadFlag(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"--envfile", "x"}, nil, new(bytes.Buffer), &stderr); err == nil || errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-envfile") || !strings.Contains(stderr.String(), "usage: emulators") {
		t.Fatalf("run --envfile: %v, stderr %q; want an error naming the flag and the usage", err, stderr.String())
	}
}
