package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main with its dependencies passed in, so that tests call it. It
// returns the process exit code: 0 success, 1 a finding (drift, not found,
// rejected input), 2 an error, 130 interrupted.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newEnv(getenv, stdin, stdout, stderr).execute(ctx, args)
}
