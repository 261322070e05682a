// Command emulators starts the local AWS emulators (DynamoDB Local,
// kinesalite, fauxqs) once, on free loopback ports, for many test binaries
// to share through $TCS_EMULATORS (see package infra/emulators).
//
//	emulators [--env-file FILE] -- command [args...]
//
// runs command with TCS_EMULATORS set in its environment, stops the
// emulators when it exits (even when it fails or is interrupted), and exits
// with its status: `make test` runs `go test ./...` this way. Without a
// command it prints TCS_EMULATORS=… and runs until interrupted (Ctrl-C), for
// a developer who wants to run `go test` against the same emulators many
// times. --env-file also writes that line to FILE.
//
// The emulators must be installed first (infra/emulators/install.sh).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcs-dev/tcs/infra/emulators"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		// The command said why it failed; pass its status on.
		code := exit.ExitCode()
		if code < 1 {
			code = 1 // killed by a signal
		}
		os.Exit(code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "emulators:", err)
		os.Exit(1)
	}
}

// commandStopGrace is how long an interrupted command has to exit after
// SIGTERM before it is killed.
const commandStopGrace = 10 * time.Second

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runWith(emulators.StartAll, ctx, args, stdin, stdout, stderr)
}

// runWith is run with the emulators started by startAll (tests wrap
// emulators.StartAll to see its stop called).
func runWith(startAll func() (emulators.AWS, func(), error), ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulators", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env-file", "", "also write the line TCS_EMULATORS=… to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: emulators [--env-file FILE] [-- command [args...]]")
		fmt.Fprintln(stderr, "Starts DynamoDB Local, kinesalite and fauxqs on loopback and runs command with TCS_EMULATORS set,")
		fmt.Fprintln(stderr, "or, without a command, prints TCS_EMULATORS=… and runs until interrupted.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	command := fs.Args()

	aws, stopEmulators, err := startAll()
	if err != nil {
		return err
	}
	defer stopEmulators()
	line := emulators.EndpointsEnv + "=" + aws.String()
	if *envFile != "" {
		if err := os.WriteFile(*envFile, []byte(line+"\n"), 0o644); err != nil {
			return fmt.Errorf("--env-file: %w", err)
		}
	}

	if len(command) == 0 {
		fmt.Fprintln(stdout, line)
		fmt.Fprintln(stderr, "emulators: running until interrupted (Ctrl-C)")
		<-ctx.Done()
		return nil
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = append(os.Environ(), line)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// Interrupted: ask the command to stop (go test writes what failed), then
	// kill it if it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = commandStopGrace
	return cmd.Run()
}
